//! Frees fjall's flushed memtables on a thread of our own, outside fjall's locks.
//!
//! fjall 3.1 drops a flushed memtable when it garbage-collects old tree versions, which it does
//! while holding the tree's version lock (`SuperVersions::maintenance`, at the next memtable
//! rotation). Every commit takes that lock to find the active memtable, so all of them wait while
//! a 64 MiB memtable (about 200,000 entries, each a skiplist node with its key and value) is
//! freed: measured under `cell bench rounds`, a stall of about 110 ms once per rotation, one of
//! the few events a flush brings that set the round p99.
//!
//! So the store keeps its own reference to every memtable it has written into. fjall's drop then
//! only decrements a count, and this thread frees each memtable once it holds the last reference.
//! If a memtable were ever missed, fjall would free it as before: this changes where memory is
//! freed, never what the store holds.

use fjall::{AbstractTree, Keyspace};
use lsm_tree::{Memtable, MemtableId};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// How often held memtables are checked. fjall rotates a full memtable every few seconds at most.
const CHECK_INTERVAL: Duration = Duration::from_millis(20);

pub(super) struct MemtableReaper {
    /// The memtable last handed to the thread, so a commit sends each one once.
    seen: AtomicU64,
    to_thread: Option<Sender<Arc<Memtable>>>,
    thread: Option<JoinHandle<()>>,
}

impl MemtableReaper {
    pub fn start() -> std::io::Result<MemtableReaper> {
        let (to_thread, memtables) = channel::<Arc<Memtable>>();
        let thread = std::thread::Builder::new().name("store-reaper".into()).spawn(move || {
            let mut held: Vec<Arc<Memtable>> = Vec::new();
            loop {
                match memtables.recv_timeout(CHECK_INTERVAL) {
                    Ok(memtable) => held.push(memtable),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => return,
                }
                // Only this thread can still reach a memtable whose count is 1: dropping it frees it.
                held.retain(|m| Arc::strong_count(m) > 1);
            }
        })?;
        Ok(MemtableReaper { seen: AtomicU64::new(MemtableId::MAX), to_thread: Some(to_thread), thread: Some(thread) })
    }

    /// Called after each commit: takes a reference to the active memtable the first time it is seen.
    pub fn observe(&self, data: &Keyspace) {
        let active = data.tree.active_memtable();
        if self.seen.swap(active.id(), Ordering::Relaxed) != active.id() {
            if let Some(to_thread) = &self.to_thread {
                let _ = to_thread.send(active);
            }
        }
    }
}

impl Drop for MemtableReaper {
    fn drop(&mut self) {
        drop(self.to_thread.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A rotated, flushed memtable ends up held by the reaper alone, which then lets it go.
    #[test]
    fn the_reaper_holds_each_memtable_until_fjall_lets_it_go_then_frees_it() {
        let dir = tempfile::tempdir().unwrap();
        let db = super::super::embedded::open_fjall(dir.path()).unwrap();
        let data = db.keyspace("kv", fjall::KeyspaceCreateOptions::default).unwrap();
        let reaper = MemtableReaper::start().unwrap();
        data.insert("first", "1").unwrap();
        reaper.observe(&data);
        // Weak, so that this test does not keep the memtable alive itself.
        let first = Arc::downgrade(&data.tree.active_memtable());
        assert_eq!(first.strong_count(), 2, "fjall and the reaper hold the active memtable");
        // fjall lets a flushed memtable go once later rotations have retired the versions that
        // named it; the reaper follows within a check interval.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        for i in 0.. {
            if first.strong_count() == 0 {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "the flushed memtable was never let go");
            data.insert(format!("k{i}"), "v").unwrap();
            reaper.observe(&data);
            data.rotate_memtable_and_wait().unwrap();
            std::thread::sleep(CHECK_INTERVAL * 2);
        }
        assert_eq!(data.get("first").unwrap().as_deref(), Some(&b"1"[..]), "the data is in a table now");
    }
}
