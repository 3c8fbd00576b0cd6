//! Syncs fjall's journal to disk without holding fjall's journal lock.
//!
//! `Database::persist(SyncAll)` runs the fsync while holding the lock every commit needs to write
//! the journal, so no commit can enter the journal while a sync is in flight: with group commit,
//! the writer's pipeline then alternates between committing and syncing instead of overlapping
//! them. Here the lock is held only to move fjall's buffer into the operating system
//! (`persist(Buffer)`, a memory copy), and the fsync runs on our own handle to the journal file
//! while later commits carry on.
//!
//! Why this is enough (fjall 3.1): the journal is `<db>/<id>.jnl`, the active one has the highest
//! id, and rotation syncs the sealed file (`SyncAll`) before it creates `<id + 1>.jnl`. So a write
//! that reached journal `n` is durable once `n` is synced, or once `n + 1` exists. The file is
//! preallocated at creation, so appends do not change its size and `fdatasync` suffices. A store
//! whose directory does not look like that fails to open rather than guess.

use fjall::{Database, PersistMode};
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

pub(super) struct JournalSync {
    dir: PathBuf,
    /// The newest journal found, and a handle to it.
    active: (u64, File),
}

fn journal_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id}.jnl"))
}

/// The highest journal id in `dir`.
fn newest(dir: &Path) -> io::Result<u64> {
    let mut newest = None;
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let id = name.to_str().and_then(|n| n.strip_suffix(".jnl")).and_then(|n| n.parse::<u64>().ok());
        newest = newest.max(id);
    }
    newest.ok_or_else(|| {
        io::Error::new(io::ErrorKind::NotFound, format!("no fjall journal (<id>.jnl) in {}", dir.display()))
    })
}

impl JournalSync {
    /// Finds the active journal of the database at `dir`.
    pub fn open(dir: &Path) -> io::Result<JournalSync> {
        let id = newest(dir)?;
        let file = File::open(journal_path(dir, id))?;
        Ok(JournalSync { dir: dir.to_owned(), active: (id, file) })
    }

    /// Makes durable every write fjall put in its journal before this call.
    pub fn sync(&mut self, db: &Database) -> io::Result<()> {
        db.persist(PersistMode::Buffer).map_err(io::Error::other)?;
        self.follow_rotation()?;
        self.active.1.sync_data()
    }

    /// Moves to the newest journal: every older one was synced when it was sealed.
    fn follow_rotation(&mut self) -> io::Result<()> {
        let mut id = self.active.0;
        while journal_path(&self.dir, id + 1).exists() {
            id += 1;
        }
        if id == self.active.0 {
            return Ok(());
        }
        // A journal this new is not garbage-collected before it is sealed, and sealing makes the
        // next one exist: rescan if it vanished anyway.
        let file = match File::open(journal_path(&self.dir, id)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                id = newest(&self.dir)?;
                File::open(journal_path(&self.dir, id))?
            }
            opened => opened?,
        };
        self.active = (id, file);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fjall::KeyspaceCreateOptions;
    use std::time::{Duration, Instant};

    /// The layout this module relies on, checked against the fjall version we build with: a
    /// journal past 64 MB is rotated to `<id + 1>.jnl` at the next flush, and the sync follows it.
    #[test]
    fn follows_the_journal_across_rotations() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let db = crate::store::embedded::open_fjall(dir.path()).expect("open fjall");
        let small = || KeyspaceCreateOptions::default().max_memtable_size(1 << 20);
        let keyspace = db.keyspace("kv", small).expect("keyspace");
        let mut journal = JournalSync::open(dir.path()).expect("a journal");
        assert_eq!(journal.active.0, 0);
        // Incompressible, so the journal grows by what is written (fjall compresses it).
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut value = || -> Vec<u8> {
            (0..8 * 1024)
                .flat_map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state.to_le_bytes()
                })
                .collect()
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut i = 0u32;
        while newest(dir.path()).expect("a journal") == 0 {
            assert!(Instant::now() < deadline, "fjall never rotated its journal after {i} inserts");
            keyspace.insert(i.to_be_bytes(), value()).expect("insert");
            i += 1;
            if i.is_multiple_of(64) {
                journal.sync(&db).expect("sync");
            }
        }
        keyspace.insert(u32::MAX.to_be_bytes(), value()).expect("insert");
        journal.sync(&db).expect("sync");
        assert_eq!(journal.active.0, newest(dir.path()).expect("a journal"));
        assert!(journal.active.0 >= 1);
    }
}
