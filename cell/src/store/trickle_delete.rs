//! Frees the disk space of fjall's deleted files a little at a time, so a journal sync never waits
//! behind one large discard.
//!
//! A commit is acknowledged after an `fdatasync` of fjall's journal, a few kilobytes. On this
//! machine's disk (a virtual disk, ext4 mounted with `discard`), deleting a 40 MiB file discards
//! its blocks at once, and a journal sync issued meanwhile waited up to 30 ms instead of 0.3
//! (`scripts/fsync-stalls.py`). fjall deletes the old journal after each flush (111 MB under
//! `cell bench rounds`) and tables after each compaction, and every connection waits for the same
//! sync.
//!
//! So a thread of the store's holds a handle to each journal and table. When fjall deletes one,
//! the handle keeps its blocks, and the thread shrinks the file a chunk per tick before closing
//! it: the discards come in small pieces, and syncs meanwhile take what they take with nothing
//! beside them (the script: 2 ms at worst, median 0.3 ms). RocksDB's `DeleteScheduler` does the
//! same (`bytes_max_delete_chunk`).
//!
//! Only a file that no longer has a name (its link count is zero, so nothing can open it again) is
//! ever shrunk: this changes when disk space is freed, never what the database holds. That relies
//! on fjall deleting only what it no longer reads: a journal once flushed, a table once no version
//! or snapshot refers to it (fjall 3.1.13 and lsm-tree 3.1.10, pinned in the workspace for this and
//! for `journal_sync`). A reader outside the store that opened a file before fjall deleted it (a
//! backup copying the live directory) sees it shrink. Errors are logged and the file is let go,
//! which frees it as fjall's delete would have.
//!
//! Freed space comes back at 128 MiB/s at most, and never more than 1 GiB of deleted files is
//! withheld: a file that would take the backlog past that is let go at once, trading one large
//! discard for a disk that cannot fill up with files the database no longer has. `/metrics`
//! shows what is withheld and how often the bound was hit (`cell_store_deleted_*`).

use super::background::Background;
use super::DeletedFiles;
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a deleted file is shrunk by each tick, across all deleted files: 128 MiB/s freed. With
/// 1 MiB pieces the longest sync meanwhile was about as short, but the median 0.4 ms.
const CHUNK: u64 = 256 << 10;
/// How often a deleted file is shrunk by a chunk.
const TICK: Duration = Duration::from_millis(2);
/// How often the directories are listed for new and deleted files. A file created and deleted
/// within one interval is freed by fjall's delete as before.
const SCAN_INTERVAL: Duration = Duration::from_millis(20);
/// Most tables held at once. fjall keeps up to 900 descriptors of its own and a process commonly
/// gets 1,024, so a database of many tables must not double them; tables beyond this are left to
/// fjall. Journals (a few at a time, and the largest deletions) are always held.
const TABLES_MAX: usize = 128;
/// Most bytes of deleted files withheld at once: eight seconds of shrinking. Under
/// `cell bench rounds` a flush deletes a journal of about 111 MB every 4 to 5 s, and the backlog
/// stays far below this; it bounds what a burst of compactions could withhold.
const WITHHELD_MAX: u64 = 1 << 30;

pub(super) struct TrickleDelete {
    thread: Background<()>,
    counters: Arc<DeletedFiles>,
}

/// One journal or table the thread holds.
struct Held {
    file: File,
    is_table: bool,
    /// Its name was gone from the last listing: deleted, or renamed.
    unlisted: bool,
}

/// The files fjall deletes, each with whether it is a table: `<db>/<id>.jnl` and
/// `<db>/keyspaces/<id>/tables/<id>` (fjall 3.1's layout).
fn list(dir: &Path) -> Vec<(PathBuf, bool)> {
    let files = |d: &Path| {
        std::fs::read_dir(d)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .map(|e| e.path())
            .collect::<Vec<_>>()
    };
    let keyspaces = std::fs::read_dir(dir.join("keyspaces")).into_iter().flatten().flatten();
    let tables = keyspaces.flat_map(|keyspace| files(&keyspace.path().join("tables")));
    let journals = files(dir).into_iter().filter(|p| p.extension().is_some_and(|e| e == "jnl"));
    journals.map(|p| (p, false)).chain(tables.map(|p| (p, true))).collect()
}

struct Trickle {
    dir: PathBuf,
    held: HashMap<PathBuf, Held>,
    counters: Arc<DeletedFiles>,
    withheld_max: u64,
}

impl Trickle {
    /// Lists the directories: holds new files, marks the ones whose name is gone.
    fn scan(&mut self) {
        let listed = list(&self.dir);
        for held in self.held.values_mut() {
            held.unlisted = true;
        }
        let mut tables = self.held.values().filter(|held| held.is_table).count();
        for (path, is_table) in listed {
            if let Some(held) = self.held.get_mut(&path) {
                held.unlisted = false;
            } else if !is_table || tables < TABLES_MAX {
                // Writable, to shrink it once deleted; never truncated or created here.
                if let Ok(file) = OpenOptions::new().write(true).open(&path) {
                    self.held.insert(path, Held { file, is_table, unlisted: false });
                    tables += usize::from(is_table);
                }
            }
        }
        self.counters.held_files.store(self.held.len() as u64, Ordering::Relaxed);
    }

    /// Shrinks one deleted file by a chunk; lets go of renamed files and emptied ones, and of
    /// deleted ones beyond the withheld bound.
    fn shrink(&mut self) {
        let mut budget = CHUNK;
        let mut withheld = 0u64;
        let (counters, withheld_max) = (&self.counters, self.withheld_max);
        self.held.retain(|path, held| {
            if !held.unlisted {
                return true;
            }
            let meta = match held.file.metadata() {
                Ok(meta) => meta,
                Err(e) => {
                    tracing::debug!(path = %path.display(), error = %e, "stat a deleted store file; letting it go");
                    return false;
                }
            };
            if meta.nlink() != 0 {
                return false; // renamed, not deleted: never touched
            }
            if withheld + meta.len() > withheld_max {
                tracing::warn!(path = %path.display(), withheld_mib = withheld >> 20, "too much deleted store data withheld: freeing a file at once");
                counters.let_go_at_once.fetch_add(1, Ordering::Relaxed);
                return false;
            }
            let mut len = meta.len();
            if budget > 0 {
                len = len.saturating_sub(budget);
                if let Err(e) = held.file.set_len(len) {
                    tracing::debug!(path = %path.display(), error = %e, "shrink a deleted store file; letting it go");
                    return false;
                }
                counters.freed_bytes.fetch_add(meta.len() - len, Ordering::Relaxed);
                budget = 0;
            }
            withheld += len;
            len > 0
        });
        counters.withheld_bytes.store(withheld, Ordering::Relaxed);
        counters.held_files.store(self.held.len() as u64, Ordering::Relaxed);
    }

    fn shrinking(&self) -> bool {
        self.held.values().any(|held| held.unlisted)
    }
}

impl TrickleDelete {
    /// Starts the thread on the database at `dir`.
    pub fn start(dir: &Path) -> std::io::Result<TrickleDelete> {
        TrickleDelete::start_with(dir, WITHHELD_MAX)
    }

    fn start_with(dir: &Path, withheld_max: u64) -> std::io::Result<TrickleDelete> {
        let counters = Arc::new(DeletedFiles::default());
        let mut trickle =
            Trickle { dir: dir.to_owned(), held: HashMap::new(), counters: counters.clone(), withheld_max };
        trickle.scan();
        let thread = Background::spawn("store-trickle", move |stop| {
            let mut scanned = Instant::now();
            loop {
                let wait = if trickle.shrinking() { TICK } else { SCAN_INTERVAL.saturating_sub(scanned.elapsed()) };
                if !stop.sleep(wait) {
                    break;
                }
                if scanned.elapsed() >= SCAN_INTERVAL {
                    trickle.scan();
                    scanned = Instant::now();
                }
                trickle.shrink();
            }
        })?;
        Ok(TrickleDelete { thread, counters })
    }

    /// What the thread has done so far, updated as it goes.
    pub fn counters(&self) -> Arc<DeletedFiles> {
        self.counters.clone()
    }
}

impl Drop for TrickleDelete {
    /// Stops the thread; the files it still holds are let go, and so freed at once.
    fn drop(&mut self) {
        self.thread.stop();
        tracing::debug!(
            freed_mib = self.counters.freed_bytes.load(Ordering::Relaxed) >> 20,
            "store trickle delete stopped"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            std::thread::sleep(TICK);
        }
    }

    fn held(trickle: &TrickleDelete) -> u64 {
        trickle.counters.held_files.load(Ordering::Relaxed)
    }

    #[test]
    fn a_deleted_journal_is_shrunk_to_nothing_before_it_is_let_go() {
        let db = tempfile::tempdir().unwrap();
        let path = db.path().join("4.jnl");
        std::fs::write(&path, vec![1u8; 3 * CHUNK as usize + 100]).unwrap();
        let trickle = TrickleDelete::start(db.path()).unwrap();
        assert_eq!(held(&trickle), 1, "files present at start are held");
        // Our own handle, to see the file after its name is gone.
        let ours = File::open(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        wait_until("the journal is let go", || held(&trickle) == 0);
        assert_eq!(ours.metadata().unwrap().len(), 0);
        assert_eq!(trickle.counters.freed_bytes.load(Ordering::Relaxed), 3 * CHUNK + 100);
    }

    #[test]
    fn a_table_created_later_is_held_and_shrunk_once_deleted() {
        let db = tempfile::tempdir().unwrap();
        let tables = db.path().join("keyspaces").join("1").join("tables");
        std::fs::create_dir_all(&tables).unwrap();
        let trickle = TrickleDelete::start(db.path()).unwrap();
        std::fs::write(tables.join("9"), vec![9u8; 2 * CHUNK as usize]).unwrap();
        wait_until("the table is held", || held(&trickle) == 1);
        let ours = File::open(tables.join("9")).unwrap();
        std::fs::remove_file(tables.join("9")).unwrap();
        wait_until("the table is let go", || held(&trickle) == 0);
        assert_eq!(ours.metadata().unwrap().len(), 0);
    }

    #[test]
    fn a_deleted_file_beyond_the_withheld_bound_is_let_go_at_once() {
        let db = tempfile::tempdir().unwrap();
        let paths = [db.path().join("1.jnl"), db.path().join("2.jnl")];
        for path in &paths {
            std::fs::write(path, vec![1u8; 2 * CHUNK as usize]).unwrap();
        }
        let trickle = TrickleDelete::start_with(db.path(), 2 * CHUNK).unwrap();
        let ours: Vec<File> = paths.iter().map(|p| File::open(p).unwrap()).collect();
        for path in &paths {
            std::fs::remove_file(path).unwrap();
        }
        wait_until("both are let go", || held(&trickle) == 0);
        let mut lens: Vec<u64> = ours.iter().map(|f| f.metadata().unwrap().len()).collect();
        lens.sort();
        assert_eq!(lens, [0, 2 * CHUNK], "one shrunk away, the other let go whole");
        assert_eq!(trickle.counters.let_go_at_once.load(Ordering::Relaxed), 1);
        assert_eq!(trickle.counters.withheld_bytes.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn every_journal_is_held_but_only_so_many_tables() {
        let db = tempfile::tempdir().unwrap();
        let tables = db.path().join("keyspaces").join("1").join("tables");
        std::fs::create_dir_all(&tables).unwrap();
        for id in 0..TABLES_MAX + 5 {
            File::create_new(tables.join(id.to_string())).unwrap();
        }
        File::create_new(db.path().join("7.jnl")).unwrap();
        File::create_new(db.path().join("8.jnl")).unwrap();
        let trickle = TrickleDelete::start(db.path()).unwrap();
        assert_eq!(held(&trickle), TABLES_MAX as u64 + 2);
    }

    #[test]
    fn a_file_renamed_away_is_let_go_untouched() {
        let db = tempfile::tempdir().unwrap();
        let tables = db.path().join("keyspaces").join("1").join("tables");
        std::fs::create_dir_all(&tables).unwrap();
        std::fs::write(tables.join("3"), vec![3u8; 2 * CHUNK as usize]).unwrap();
        let trickle = TrickleDelete::start(db.path()).unwrap();
        assert_eq!(held(&trickle), 1);
        let elsewhere = db.path().join("elsewhere");
        std::fs::rename(tables.join("3"), &elsewhere).unwrap();
        wait_until("the table is let go", || held(&trickle) == 0);
        assert_eq!(std::fs::metadata(&elsewhere).unwrap().len(), 2 * CHUNK);
        assert_eq!(trickle.counters.freed_bytes.load(Ordering::Relaxed), 0);
    }
}
