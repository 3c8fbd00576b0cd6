//! Frees fjall's flushed memtables on a thread of our own, outside fjall's locks.
//!
//! fjall 3.1 drops a flushed memtable when it retires old tree versions (after a flush, a
//! compaction or a memtable rotation), which it does while holding the tree's version lock
//! (`SuperVersions::maintenance`). Every write into the memtable and every read takes that lock,
//! so all of them wait while a 64 MiB memtable (about 200,000 entries, each a skiplist node with
//! its key and value) is freed: measured under `cell bench rounds`, a stall of about 110 ms once
//! per rotation, one of the few events a flush brings that set the round p99.
//!
//! So the store keeps its own reference to every memtable it sees active after a commit. fjall's
//! drop then only decrements a count, and this thread frees each memtable once it holds the last
//! reference. If a memtable were ever missed, fjall would free it as before: this changes where
//! memory is freed, never what the store holds.

use fjall::{AbstractTree, Keyspace};
use lsm_tree::{Memtable, MemtableId};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// How often held memtables are checked. fjall rotates a full memtable every few seconds at most.
const CHECK_INTERVAL: Duration = Duration::from_millis(20);

pub(super) struct MemtableReaper {
    /// The memtable last handed to the thread, so a commit usually sends each one once.
    seen: AtomicU64,
    to_thread: Option<Sender<Arc<Memtable>>>,
    thread: Option<JoinHandle<()>>,
    /// Memtables the thread freed itself (it held the last reference), for the test.
    #[cfg(test)]
    freed: Arc<AtomicUsize>,
}

impl MemtableReaper {
    pub fn start() -> std::io::Result<MemtableReaper> {
        let (to_thread, memtables) = channel::<Arc<Memtable>>();
        let freed = Arc::new(AtomicUsize::new(0));
        let counted = freed.clone();
        let thread = std::thread::Builder::new().name("store-reaper".into()).spawn(move || {
            let mut held: Vec<Arc<Memtable>> = Vec::new();
            loop {
                match memtables.recv_timeout(CHECK_INTERVAL) {
                    // Held once: two references of ours would keep each other's count above 1.
                    Ok(memtable) if !held.iter().any(|h| Arc::ptr_eq(h, &memtable)) => held.push(memtable),
                    Ok(_) | Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => return,
                }
                // Only this thread can still reach a memtable whose count is 1: it is freed here.
                let mut kept = Vec::with_capacity(held.len());
                for memtable in held.drain(..) {
                    if Arc::strong_count(&memtable) > 1 {
                        kept.push(memtable);
                    } else if Arc::into_inner(memtable).is_some() {
                        counted.fetch_add(1, Ordering::Relaxed);
                    }
                }
                held = kept;
            }
        })?;
        Ok(MemtableReaper {
            seen: AtomicU64::new(MemtableId::MAX),
            to_thread: Some(to_thread),
            thread: Some(thread),
            #[cfg(test)]
            freed,
        })
    }

    /// Called after each commit: takes a reference to the active memtable the first time it is seen.
    /// (Cheap: fjall's read lock and a clone of its current version.)
    pub fn observe(&self, data: &Keyspace) {
        let active = data.tree.active_memtable();
        if self.seen.swap(active.id(), Ordering::Relaxed) != active.id() {
            if let Some(to_thread) = &self.to_thread {
                let _ = to_thread.send(active);
            }
        }
    }

    /// How many memtables this thread freed itself.
    #[cfg(test)]
    fn freed(&self) -> usize {
        self.freed.load(Ordering::Relaxed)
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

    /// A rotated, flushed memtable ends up held by the reaper alone, which then frees it.
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
        // fjall, the reaper, and perhaps a version fjall is cloning at this moment.
        assert!(first.strong_count() >= 2, "the reaper holds the active memtable too");
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
        assert!(reaper.freed() >= 1, "fjall let the memtable go first, and the reaper freed it");
        assert_eq!(data.get("first").unwrap().as_deref(), Some(&b"1"[..]), "the data is in a table now");
    }
}
