//! Keeps fjall's large file writes and deletions from stalling the journal's fsync.
//!
//! A commit is acknowledged after an `fdatasync` of fjall's journal, a few kilobytes. On this
//! machine's disk (a virtual disk, ext4 mounted with `discard`), that sync waits for whatever the
//! disk was asked to do before it. Measured by `scripts/fsync-stalls.py` (a 3 KB write and
//! `fdatasync` in a loop beside one other file):
//! - while a new 40 MiB file is fsynced, as fjall does with each table at the end of a flush, each
//!   sync waits for all of it: about 75 ms instead of 0.3 ms;
//! - when a 40 MiB file is deleted, as fjall does with a journal after each flush and with tables
//!   after a compaction, its blocks are discarded at once and syncs wait about 30 ms.
//!
//! Under `cell bench rounds` those were the longest stalls, since every connection waits for the
//! same sync (with this thread the round p99.9 went from 124-153 ms to 48-52 ms). So a thread of the store's breaks both into 1 MiB pieces (the same 75 ms
//! became 5-10 ms, and the 30 ms became 2 ms):
//! - **Writeback.** Each table fjall writes is written back to disk a chunk at a time as it grows
//!   (`sync_file_range`, waiting for each chunk), so at most a chunk is queued ahead of a journal
//!   sync and fjall's own fsync at the end finds almost nothing left to write.
//! - **Deletion.** The thread keeps a handle to each journal and table. When fjall deletes one,
//!   the handle keeps its blocks allocated, and the thread shrinks the file a chunk per tick
//!   before letting go, so the discards come in small pieces. RocksDB's `DeleteScheduler` does
//!   the same (`bytes_max_delete_chunk`).
//!
//! This changes when bytes reach the disk, never what is written: only a file that no longer has a
//! name (its link count is zero, so nothing can open it again) is ever shrunk. Errors are logged
//! and the file is left to fjall, as without this thread.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The piece a file is written back or shrunk by: small enough that a journal sync queued behind
/// it waits a few milliseconds.
const CHUNK: u64 = 1 << 20;
/// How often a file being written or shrunk is looked at. A flush writes a table at tens of MiB
/// per second, so a tick finds about a chunk.
const TICK: Duration = Duration::from_millis(2);
/// How often the directories are listed for new and deleted files, and every file looked at.
const SCAN_INTERVAL: Duration = Duration::from_millis(20);
/// A table that has not grown for this long is done being written.
const QUIET: Duration = Duration::from_millis(50);
/// Most files held at once, so that a database of many tables does not double fjall's open files.
/// Files beyond this are left to fjall.
const FILES_MAX: usize = 512;

/// What the thread has done, readable while it runs.
#[derive(Debug, Default)]
pub(super) struct Counters {
    /// Bytes of tables written back ahead of fjall's fsync.
    pub written_back: AtomicU64,
    /// Bytes of deleted files shrunk away.
    pub released: AtomicU64,
    /// Files currently held.
    pub held: AtomicU64,
}

pub(super) struct WritebackPacer {
    /// Dropped to stop the thread.
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
    counters: Arc<Counters>,
}

/// One journal or table the thread holds.
struct Held {
    file: File,
    /// Bytes from the start already written back; `None` for a file not paced (a journal, which
    /// the store syncs itself, or a table that was complete when the thread first saw it).
    written_back: Option<u64>,
    len: u64,
    grew_at: Instant,
    /// Its name is gone from the directory listing.
    unlisted: bool,
}

impl Held {
    /// Whether it needs a look every tick rather than every scan.
    fn busy(&self, now: Instant) -> bool {
        self.unlisted || (self.written_back.is_some() && now.duration_since(self.grew_at) < QUIET)
    }
}

/// The files the thread watches: `<db>/<id>.jnl` and `<db>/keyspaces/<id>/tables/<id>` (fjall
/// 3.1's layout). Journals are not paced: the store syncs them itself.
fn list(dir: &Path) -> Vec<(PathBuf, bool)> {
    let entries = |d: &Path| std::fs::read_dir(d).into_iter().flatten().flatten().map(|e| e.path());
    let journals = entries(dir).filter(|p| p.extension().is_some_and(|e| e == "jnl")).map(|p| (p, false));
    let tables = entries(&dir.join("keyspaces"))
        .flat_map(|keyspace| entries(&keyspace.join("tables")).collect::<Vec<_>>())
        .filter(|p| p.is_file())
        .map(|p| (p, true));
    journals.chain(tables).collect()
}

/// The one system call std does not wrap, hence the crate's only `unsafe` outside the FoundationDB
/// bindings.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn write_back(file: &File, offset: u64, len: u64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let flags = libc::SYNC_FILE_RANGE_WAIT_BEFORE | libc::SYNC_FILE_RANGE_WRITE | libc::SYNC_FILE_RANGE_WAIT_AFTER;
    // SAFETY: a plain system call on an open descriptor, with no memory passed.
    let done = unsafe { libc::sync_file_range(file.as_raw_fd(), offset as i64, len as i64, flags) };
    if done == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Elsewhere the table is left for fjall's fsync, as without this thread.
#[cfg(not(target_os = "linux"))]
fn write_back(_file: &File, _offset: u64, _len: u64) -> std::io::Result<()> {
    Ok(())
}

struct Pacer {
    dir: PathBuf,
    held: HashMap<PathBuf, Held>,
    counters: Arc<Counters>,
}

impl Pacer {
    /// Lists the directories: holds new files, marks the ones whose name is gone. At the first
    /// scan, when the store opens, every table is complete (fjall syncs a table before the
    /// database lists it), so only tables that appear later are paced.
    fn scan(&mut self, first: bool) {
        let listed = list(&self.dir);
        for held in self.held.values_mut() {
            held.unlisted = true;
        }
        for (path, is_table) in listed {
            if let Some(held) = self.held.get_mut(&path) {
                held.unlisted = false;
                continue;
            }
            if self.held.len() >= FILES_MAX {
                continue;
            }
            // Writable, to shrink it once deleted; never truncated or created here.
            let Ok(file) = OpenOptions::new().write(true).open(&path) else { continue };
            let Ok(meta) = file.metadata() else { continue };
            let written_back = (is_table && !first).then_some(0);
            let held = Held { file, written_back, len: meta.len(), grew_at: Instant::now(), unlisted: false };
            self.held.insert(path, held);
        }
        self.counters.held.store(self.held.len() as u64, Ordering::Relaxed);
    }

    /// Looks at every held file (or only the busy ones): writes back what a growing table added,
    /// shrinks a deleted file by a chunk, lets go of what is done.
    fn step(&mut self, all: bool) {
        let now = Instant::now();
        let counters = &self.counters;
        // One chunk of discards per tick at most, whatever was deleted together.
        let mut shrink_budget = CHUNK;
        self.held.retain(|path, held| {
            if !all && !held.busy(now) {
                return true;
            }
            let meta = match held.file.metadata() {
                Ok(meta) => meta,
                Err(e) => {
                    tracing::debug!(path = %path.display(), error = %e, "stat a store file; leaving it to fjall");
                    return false;
                }
            };
            if held.unlisted {
                if meta.nlink() != 0 {
                    return false; // renamed, not deleted: never touched
                }
                if shrink_budget == 0 {
                    return true;
                }
                let len = meta.len().saturating_sub(CHUNK);
                if let Err(e) = held.file.set_len(len) {
                    tracing::debug!(path = %path.display(), error = %e, "shrink a deleted store file");
                    return false;
                }
                counters.released.fetch_add(meta.len() - len, Ordering::Relaxed);
                shrink_budget -= CHUNK.min(shrink_budget);
                return len > 0;
            }
            if meta.len() != held.len {
                held.len = meta.len();
                held.grew_at = now;
            }
            if let Some(done) = held.written_back.as_mut() {
                while *done + CHUNK <= held.len {
                    if let Err(e) = write_back(&held.file, *done, CHUNK) {
                        tracing::debug!(path = %path.display(), error = %e, "write back a table");
                        held.written_back = None;
                        break;
                    }
                    *done += CHUNK;
                    counters.written_back.fetch_add(CHUNK, Ordering::Relaxed);
                }
            }
            true
        });
        counters.held.store(self.held.len() as u64, Ordering::Relaxed);
    }

    fn busy(&self) -> bool {
        let now = Instant::now();
        self.held.values().any(|held| held.busy(now))
    }
}

impl WritebackPacer {
    /// Starts the thread on the database at `dir`.
    pub fn start(dir: &Path) -> std::io::Result<WritebackPacer> {
        let (stop, stopped) = channel::<()>();
        let counters = Arc::new(Counters::default());
        let mut pacer = Pacer { dir: dir.to_owned(), held: HashMap::new(), counters: counters.clone() };
        // Here rather than on the thread: what exists when the store starts is complete.
        pacer.scan(true);
        let thread = std::thread::Builder::new().name("store-writeback".into()).spawn(move || {
            let mut scanned = Instant::now();
            loop {
                let wait = if pacer.busy() { TICK } else { SCAN_INTERVAL.saturating_sub(scanned.elapsed()) };
                match stopped.recv_timeout(wait) {
                    Err(RecvTimeoutError::Timeout) => {}
                    _ => break,
                }
                let scan = scanned.elapsed() >= SCAN_INTERVAL;
                if scan {
                    pacer.scan(false);
                    scanned = Instant::now();
                }
                pacer.step(scan);
            }
        })?;
        Ok(WritebackPacer { stop: Some(stop), thread: Some(thread), counters })
    }

    #[cfg(test)]
    fn counters(&self) -> &Counters {
        &self.counters
    }
}

impl Drop for WritebackPacer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let mib = |bytes: &AtomicU64| bytes.load(Ordering::Relaxed) / CHUNK;
        tracing::info!(
            written_back_mib = mib(&self.counters.written_back),
            released_mib = mib(&self.counters.released),
            "store writeback pacer stopped"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            std::thread::sleep(TICK);
        }
    }

    fn tables_dir(db: &Path) -> PathBuf {
        let dir = db.join("keyspaces").join("1").join("tables");
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_table_written_after_start_is_written_back_in_whole_chunks() {
        let db = tempfile::tempdir().unwrap();
        let tables = tables_dir(db.path());
        let pacer = WritebackPacer::start(db.path()).unwrap();
        let mut table = File::create_new(tables.join("7")).unwrap();
        table.write_all(&vec![7u8; 3 * CHUNK as usize + 100]).unwrap();
        let written_back = || pacer.counters().written_back.load(Ordering::Relaxed);
        wait_until("three chunks are written back", || written_back() >= 3 * CHUNK);
        std::thread::sleep(QUIET + SCAN_INTERVAL);
        assert_eq!(written_back(), 3 * CHUNK, "the partial last chunk is left to fjall's fsync");
    }

    #[test]
    fn a_deleted_file_is_shrunk_to_nothing_before_it_is_let_go() {
        let db = tempfile::tempdir().unwrap();
        let path = db.path().join("4.jnl");
        std::fs::write(&path, vec![1u8; 3 * CHUNK as usize + 100]).unwrap();
        let pacer = WritebackPacer::start(db.path()).unwrap();
        wait_until("the journal is held", || pacer.counters().held.load(Ordering::Relaxed) == 1);
        // Our own handle, to see the file after its name is gone.
        let ours = File::open(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        wait_until("the journal is let go", || pacer.counters().held.load(Ordering::Relaxed) == 0);
        assert_eq!(ours.metadata().unwrap().len(), 0);
        assert_eq!(pacer.counters().released.load(Ordering::Relaxed), 3 * CHUNK + 100);
    }

    #[test]
    fn a_file_renamed_away_is_let_go_untouched() {
        let db = tempfile::tempdir().unwrap();
        let tables = tables_dir(db.path());
        std::fs::write(tables.join("3"), vec![3u8; 2 * CHUNK as usize]).unwrap();
        let pacer = WritebackPacer::start(db.path()).unwrap();
        wait_until("the table is held", || pacer.counters().held.load(Ordering::Relaxed) == 1);
        let elsewhere = db.path().join("elsewhere");
        std::fs::rename(tables.join("3"), &elsewhere).unwrap();
        wait_until("the table is let go", || pacer.counters().held.load(Ordering::Relaxed) == 0);
        assert_eq!(std::fs::metadata(&elsewhere).unwrap().len(), 2 * CHUNK);
        assert_eq!(pacer.counters().released.load(Ordering::Relaxed), 0);
    }
}
