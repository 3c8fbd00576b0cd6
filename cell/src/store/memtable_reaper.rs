//! Frees fjall's flushed memtables on a thread of our own, outside fjall's locks.
//!
//! fjall 3.1 drops a flushed memtable when it retires old tree versions (after a flush, a
//! compaction or a memtable rotation), which it does while holding the tree's version lock
//! (`SuperVersions::maintenance`). Every write into the memtable and every read takes that lock,
//! so all of them wait while a 64 MiB memtable (about 200,000 entries, each a skiplist node with
//! its key and value) is freed: measured under `cell bench rounds`, a stall of about 110 ms once
//! per rotation, one of the few events a flush brings that set the round p99.
//!
//! So a thread of the store's looks at fjall's active memtable every few milliseconds and keeps a
//! reference to each one it sees. fjall's drop then only decrements a count, and the thread frees
//! each memtable once it holds the last reference. Nothing of this is on the commit path. A
//! memtable the thread never saw (one that lived less than a check interval, or was rebuilt from
//! the journal at open and flushed at once) is freed by fjall as before: this changes where memory
//! is freed, never what the store holds.

use super::background::Background;
use fjall::{AbstractTree, Keyspace};
use lsm_tree::Memtable;
use std::sync::Arc;
use std::time::Duration;

/// How often the active memtable is looked at and the held ones checked. A full 64 MiB memtable
/// lives for seconds.
const CHECK_INTERVAL: Duration = Duration::from_millis(20);

pub(super) struct MemtableReaper {
    /// Held for the thread, which returns how many memtables it freed itself (it held the last
    /// reference).
    _thread: Background<usize>,
}

impl MemtableReaper {
    /// Starts the thread on `data`'s tree.
    pub fn start(data: Keyspace) -> std::io::Result<MemtableReaper> {
        let thread = Background::spawn("store-reaper", move |stop| {
            let mut held: Vec<Arc<Memtable>> = Vec::new();
            let mut freed = 0;
            while stop.sleep(CHECK_INTERVAL) {
                let active = data.tree.active_memtable();
                if !held.iter().any(|h| Arc::ptr_eq(h, &active)) {
                    held.push(active);
                }
                // Only this thread can still reach a memtable whose count is 1: it is freed here.
                let mut kept = Vec::with_capacity(held.len());
                for memtable in held.drain(..) {
                    if Arc::strong_count(&memtable) > 1 {
                        kept.push(memtable);
                    } else if Arc::into_inner(memtable).is_some() {
                        freed += 1;
                    }
                }
                held = kept;
            }
            freed
        })?;
        Ok(MemtableReaper { _thread: thread })
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
        let mut reaper = MemtableReaper::start(data.clone()).unwrap();
        data.insert("first", "1").unwrap();
        // Weak, so that this test does not keep the memtable alive itself.
        let first = Arc::downgrade(&data.tree.active_memtable());
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        // fjall's reference, then the reaper's within a check interval.
        while first.strong_count() < 2 {
            assert!(std::time::Instant::now() < deadline, "the reaper never took the active memtable");
            std::thread::sleep(CHECK_INTERVAL);
        }
        // fjall lets a flushed memtable go once later rotations have retired the versions that
        // named it; the reaper follows within a check interval.
        for i in 0.. {
            if first.strong_count() == 0 {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "the flushed memtable was never let go");
            data.insert(format!("k{i}"), "v").unwrap();
            data.rotate_memtable_and_wait().unwrap();
            std::thread::sleep(CHECK_INTERVAL * 2);
        }
        assert!(reaper._thread.stop().unwrap_or(0) >= 1, "fjall let the memtable go first, and the reaper freed it");
        assert_eq!(data.get("first").unwrap().as_deref(), Some(&b"1"[..]), "the data is in a table now");
    }
}
