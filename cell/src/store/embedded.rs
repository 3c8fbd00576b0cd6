//! The default backend: fjall on local disk, with serializable optimistic transactions and group
//! commit.
//!
//! A transaction reads a fjall snapshot (plus its own buffered writes) and records what it read;
//! at commit, under one short commit lock, it is refused if a transaction that committed after
//! its snapshot wrote anything it read (FoundationDB's resolver does the same), and otherwise its
//! writes go to fjall as one atomic `WriteBatch`. The same lock assigns each commit the next
//! version (for versionstamped keys; persisted with the commit so versions keep increasing across
//! restarts) and applies atomic adds to the latest committed value, so adds never conflict.
//!
//! Why not fjall's own `OptimisticTxDatabase`: it buffers each write in a per-transaction memtable
//! and a conflict set, then inserts it again at commit. Measured on this machine with 10,000-key
//! transactions (one read per write), it commits about 211,000 keys/s against 361,000 for a
//! snapshot plus `WriteBatch`; the wallet's batches are exactly that shape.
//!
//! A commit is acknowledged only once it is durable. Writes reach fjall's journal without a sync;
//! each committer then waits for a shared sync that began after its commit. The first waiter to
//! find no sync running leads one for everyone committed so far, so under load one fsync releases
//! many commits (DESIGN.md section 3). The sync runs outside fjall's journal lock
//! ([`super::journal_sync`]), so commits keep entering the journal while it is in flight. A failed
//! sync poisons the store: after it, what the page cache holds is unknown (PostgreSQL's
//! "fsyncgate"), so every later commit is refused until the cell restarts and recovers.

mod replica;
pub use replica::{decode as decode_write_set, encode as encode_write_set, WriteSet};

use super::journal_sync::JournalSync;
use super::memtable_reaper::MemtableReaper;
use super::trickle_delete::TrickleDelete;
use super::{
    limits, versionstamp_offset, Committed, DeletedFiles, Durable, KeyValue, PendingCommit, Store, StoreError,
    Transaction, WriteBudget,
};
use fjall::config::CompressionPolicy;
use fjall::{CompressionType, Database, Keyspace, KeyspaceCreateOptions, Readable, Snapshot};
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

/// Where the last commit version is kept. `0xff` sorts after every tuple-encoded key, as
/// FoundationDB's system keys do, so no domain range ever reads it.
const VERSION_KEY: &[u8] = b"\xff/commit_version";

/// When a commit is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// After a sync shared with every other commit that finished before it began (the default).
    GroupSync,
    /// After a sync of its own: the baseline `cell bench wallet` compares group commit against.
    SyncPerCommit,
}

pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// Frees flushed memtables outside fjall's locks; held for its thread. First, so that thread
    /// stops (and lets go of the keyspace it watches) before the database is dropped.
    _reaper: MemtableReaper,
    /// Frees the space of files fjall deletes a chunk at a time.
    trickle: TrickleDelete,
    db: Database,
    data: Keyspace,
    durability: Durability,
    /// Serialises conflict checks, version assignment, atomic-add resolution and the write.
    commit_lock: Mutex<()>,
    /// Highest version whose writes are in fjall (not necessarily synced).
    committed_version: AtomicU64,
    /// Read versions of live transactions, and the write sets of commits they may conflict with.
    tracking: Mutex<Tracking>,
    sync: Mutex<SyncState>,
    synced: Condvar,
    /// Held by whoever runs a sync.
    journal: Mutex<JournalSync>,
    /// Set when a sync failed: nothing more may be acknowledged.
    poisoned: AtomicBool,
    /// Each commit's write set by version, for standbys ([`replica`]); none unless asked for.
    replication: Option<replica::ReplicationLog>,
    /// The epoch and the fence, whatever the configuration.
    epochs: replica::Epochs,
}

#[derive(Default)]
struct Tracking {
    /// Read version -> number of live transactions that began at it.
    live: BTreeMap<u64, usize>,
    /// Recent commits' written keys (sorted), kept while a live transaction began before them.
    log: VecDeque<(u64, Arc<Vec<Vec<u8>>>)>,
}

#[derive(Default)]
struct SyncState {
    /// Every version up to this one is on disk.
    durable_version: u64,
    /// A sync is in flight; waiters sleep on `synced` rather than start another.
    syncing: bool,
}

fn io(context: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Io(format!("{context}: {e}"))
}

/// The process holding the `flock` on `path`, as `/proc/locks` tells (Linux), if it does.
fn lock_holder(path: &Path) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    let inode = std::fs::metadata(path).ok()?.ino();
    // `1: FLOCK  ADVISORY  WRITE 12345 08:01:1234567 0 EOF`: the pid, then device:inode.
    std::fs::read_to_string("/proc/locks").ok()?.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (pid, file) = (fields.get(4)?, fields.get(5)?);
        (file.rsplit(':').next()? == inode.to_string()).then(|| pid.parse().ok()).flatten()
    })
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // No partial state survives a panic under these locks (a WriteBatch is atomic), so a
    // poisoned lock is still safe to use.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Opens fjall as the store runs it. One background worker: with two, fjall 3.1's worker 0 hands
/// every compaction message back to the queue and takes it again while worker 1 compacts
/// (`worker_tick`), a busy loop worth about a tenth of all CPU samples under `cell bench wallet`.
/// One worker flushes and compacts in turn, which a cell's write rate allows.
pub(super) fn open_fjall(dir: &Path) -> fjall::Result<Database> {
    Database::builder(dir).worker_threads(1).open()
}

/// The data keyspace's options. fjall stores them with the keyspace when it is created and uses
/// the stored ones at every later open, so a store created before a change keeps its options.
///
/// LZ4 on level 0, which fjall leaves uncompressed by default: a flushed table shrinks from about
/// 41 MiB to 17 under `cell bench rounds`, and so does the fsync that ends each flush, which every
/// journal sync issued meanwhile waits behind. With the trickle delete beside it, the round p99.9
/// went from 100-125 ms to 40-59 ms (three runs each, alternated); the trickle delete alone left it
/// at 104-121 ms. Level 1 stays uncompressed, so compaction out of level 0 only decompresses: the
/// flush worker's CPU per operation moved within the noise (`cell bench wallet` in process:
/// 7-9 µs before, 8-11 after).
pub(super) fn keyspace_options() -> KeyspaceCreateOptions {
    KeyspaceCreateOptions::default().data_block_compression_policy(CompressionPolicy::new([
        CompressionType::Lz4,
        CompressionType::None,
        CompressionType::Lz4,
    ]))
}

impl EmbeddedStore {
    /// Opens (or creates) the store under `dir`.
    pub fn open(dir: &Path, durability: Durability) -> Result<EmbeddedStore, StoreError> {
        let db = open_fjall(dir).map_err(|e| match e {
            fjall::Error::Locked => {
                let holder = lock_holder(&dir.join("lock")).map(|pid| format!(" (pid {pid})")).unwrap_or_default();
                StoreError::Io(format!(
                    "another process{holder} is using the store in {}: stop it first (one process per data directory)",
                    dir.display()
                ))
            }
            e => io("open fjall database", e),
        })?;
        let data = db.keyspace("kv", keyspace_options).map_err(|e| io("open keyspace", e))?;
        let version = match data.get(VERSION_KEY).map_err(|e| io("read commit version", e))? {
            Some(v) => u64::from_be_bytes(v.as_ref().try_into().map_err(|_| io("read commit version", "not 8 bytes"))?),
            None => 0,
        };
        let journal = JournalSync::open(dir).map_err(|e| io("find the journal", e))?;
        let epochs = replica::Epochs::load(&data)?;
        Ok(EmbeddedStore {
            inner: Arc::new(Inner {
                _reaper: MemtableReaper::start(data.clone()).map_err(|e| io("start the memtable reaper", e))?,
                trickle: TrickleDelete::start(dir).map_err(|e| io("start the trickle delete", e))?,
                db,
                data,
                durability,
                commit_lock: Mutex::new(()),
                committed_version: AtomicU64::new(version),
                tracking: Mutex::new(Tracking::default()),
                sync: Mutex::new(SyncState { durable_version: version, syncing: false }),
                synced: Condvar::new(),
                journal: Mutex::new(journal),
                poisoned: AtomicBool::new(false),
                replication: None,
                epochs,
            }),
        })
    }

    /// The trickle delete's counts, live: for `/metrics`.
    pub fn deleted_files(&self) -> Arc<DeletedFiles> {
        self.inner.trickle.counters()
    }
}

impl Store for EmbeddedStore {
    fn begin(&self) -> Result<Box<dyn Transaction>, StoreError> {
        self.begin_tracking(true)
    }

    fn begin_snapshot_reads(&self) -> Result<Box<dyn Transaction>, StoreError> {
        self.begin_tracking(false)
    }
}

impl EmbeddedStore {
    fn begin_tracking(&self, read_conflicts: bool) -> Result<Box<dyn Transaction>, StoreError> {
        let read_version = {
            // Registered under the same lock a commit uses to decide whether to log its writes,
            // so no commit after `read_version` can miss this transaction.
            let mut tracking = lock(&self.inner.tracking);
            let v = self.inner.committed_version.load(Ordering::Acquire);
            *tracking.live.entry(v).or_insert(0) += 1;
            v
        };
        // Taken after the version: it sees every commit up to `read_version`, and perhaps later
        // ones too, which at worst makes a conflict check refuse a commit it could have allowed.
        let snapshot = self.inner.db.snapshot();
        Ok(Box::new(EmbeddedTx {
            inner: self.inner.clone(),
            snapshot,
            read_version,
            started: Instant::now(),
            budget: WriteBudget::default(),
            writes: HashMap::default(),
            read_conflicts,
            read_keys: HashSet::default(),
            read_ranges: Vec::new(),
            adds: BTreeMap::new(),
            stamped: Vec::new(),
        }))
    }
}

/// One of a transaction's buffered writes: `Some(value)` to set, `None` to clear.
type OwnWrite<'a> = (&'a Vec<u8>, &'a Option<Vec<u8>>);

struct EmbeddedTx {
    inner: Arc<Inner>,
    snapshot: Snapshot,
    read_version: u64,
    started: Instant,
    /// What has been written so far, against FoundationDB's limits.
    budget: WriteBudget,
    /// Buffered writes: `Some(value)` to set, `None` to clear. Hashed, not ordered: the wallet's
    /// batches buffer thousands of writes and read them back by key, and a tree's comparisons of
    /// long shared key prefixes were a visible share of the writer's time. A range read sorts the
    /// few own writes in its range.
    writes: HashMap<Vec<u8>, Option<Vec<u8>>>,
    /// Whether reads are recorded for the conflict check (not for snapshot-read transactions).
    read_conflicts: bool,
    /// Keys read, and ranges read, from the snapshot: what a later commit may have changed.
    read_keys: HashSet<Vec<u8>>,
    read_ranges: Vec<(Vec<u8>, Vec<u8>)>,
    /// Atomic adds to apply at commit on top of the latest committed value.
    adds: BTreeMap<Vec<u8>, i64>,
    /// Versionstamped writes: key with placeholder, placeholder offset, value.
    stamped: Vec<(Vec<u8>, usize, Vec<u8>)>,
}

impl Drop for EmbeddedTx {
    fn drop(&mut self) {
        let mut tracking = lock(&self.inner.tracking);
        if let Some(n) = tracking.live.get_mut(&self.read_version) {
            *n -= 1;
            if *n == 0 {
                tracking.live.remove(&self.read_version);
            }
        }
        // Commits older than every live transaction can no longer conflict with anything.
        let oldest = tracking.live.keys().next().copied().unwrap_or(u64::MAX);
        while tracking.log.front().is_some_and(|(v, _)| *v <= oldest) {
            tracking.log.pop_front();
        }
    }
}

fn decode_i64(value: Option<&[u8]>) -> i64 {
    // FoundationDB's add treats a shorter value as zero-extended; we store exactly 8 bytes.
    let mut buf = [0u8; 8];
    if let Some(v) = value {
        let n = v.len().min(8);
        buf[..n].copy_from_slice(&v[..n]);
    }
    i64::from_le_bytes(buf)
}

impl EmbeddedTx {
    /// Whether a commit's sorted write set touches anything this transaction read.
    /// Whether a commit that wrote `written` touched anything this transaction read. Walks the
    /// (unsorted) written keys against the reads, so a transaction that read nothing costs nothing.
    fn conflicts_with(&self, written: &[Vec<u8>]) -> bool {
        if self.read_keys.is_empty() && self.read_ranges.is_empty() {
            return false;
        }
        written
            .iter()
            .any(|k| self.read_keys.contains(k) || self.read_ranges.iter().any(|(begin, end)| begin <= k && k < end))
    }
}

impl Transaction for EmbeddedTx {
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let value = match self.writes.get(key) {
            Some(own) => own.clone(),
            None => {
                if self.read_conflicts {
                    self.read_keys.insert(key.to_vec());
                }
                self.snapshot.get(&self.inner.data, key).map_err(|e| io("read", e))?.map(|v| v.to_vec())
            }
        };
        match self.adds.get(key) {
            Some(delta) => Ok(Some(decode_i64(value.as_deref()).wrapping_add(*delta).to_le_bytes().to_vec())),
            None => Ok(value),
        }
    }

    fn get_range(
        &mut self,
        begin: &[u8],
        end: &[u8],
        limit: usize,
        reverse: bool,
    ) -> Result<Vec<KeyValue>, StoreError> {
        if begin >= end || limit == 0 {
            return Ok(Vec::new());
        }
        if self.read_conflicts {
            self.read_ranges.push((begin.to_vec(), end.to_vec()));
        }
        // Merge the snapshot with this transaction's own writes, in the requested order.
        let stored = self.snapshot.range(&self.inner.data, begin..end);
        let mut own: Vec<OwnWrite<'_>> =
            self.writes.iter().filter(|(k, _)| begin <= k.as_slice() && k.as_slice() < end).collect();
        own.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let mut stored: Box<dyn Iterator<Item = fjall::Guard>> =
            if reverse { Box::new(stored.rev()) } else { Box::new(stored) };
        let mut own: Box<dyn Iterator<Item = OwnWrite<'_>>> =
            if reverse { Box::new(own.into_iter().rev()) } else { Box::new(own.into_iter()) };
        let mut next_stored = || -> Result<Option<KeyValue>, StoreError> {
            match stored.next() {
                Some(guard) => {
                    let (k, v) = guard.into_inner().map_err(|e| io("range read", e))?;
                    Ok(Some((k.to_vec(), v.to_vec())))
                }
                None => Ok(None),
            }
        };
        let before = |a: &[u8], b: &[u8]| if reverse { a > b } else { a < b };
        let mut out = Vec::new();
        let mut s = next_stored()?;
        let mut o = own.next();
        while out.len() < limit {
            match (&s, o) {
                (None, None) => break,
                (Some((sk, _)), Some((ok, _))) if before(sk, ok) => {
                    out.push(s.take().expect("matched Some"));
                    s = next_stored()?;
                }
                (_, Some((ok, ov))) => {
                    if s.as_ref().is_some_and(|(sk, _)| sk == ok) {
                        s = next_stored()?; // own write shadows the stored value
                    }
                    if let Some(v) = ov {
                        out.push((ok.clone(), v.clone()));
                    }
                    o = own.next();
                }
                (Some(_), None) => {
                    out.push(s.take().expect("matched Some"));
                    s = next_stored()?;
                }
            }
        }
        Ok(out)
    }

    fn set(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.budget.charge(key, value)?;
        self.adds.remove(key);
        self.writes.insert(key.to_vec(), Some(value.to_vec()));
        Ok(())
    }

    fn clear(&mut self, key: &[u8]) -> Result<(), StoreError> {
        self.budget.charge(key, &[])?;
        self.adds.remove(key);
        self.writes.insert(key.to_vec(), None);
        Ok(())
    }

    fn atomic_add(&mut self, key: &[u8], delta: i64) -> Result<(), StoreError> {
        self.budget.charge(key, &[0; 8])?;
        match self.writes.get_mut(key) {
            // Set or cleared earlier in this transaction: add to that value now.
            Some(own) => *own = Some(decode_i64(own.as_deref()).wrapping_add(delta).to_le_bytes().to_vec()),
            None => *self.adds.entry(key.to_vec()).or_insert(0) += delta,
        }
        Ok(())
    }

    fn set_versionstamped_key(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let (body, offset) = versionstamp_offset(key)?;
        self.budget.charge(body, value)?;
        self.stamped.push((body.to_vec(), offset, value.to_vec()));
        Ok(())
    }

    fn commit_pipelined(mut self: Box<Self>) -> Result<Box<dyn PendingCommit>, StoreError> {
        if self.budget.is_empty() {
            return Ok(Box::new(Durable(Committed::default()))); // read-only: nothing to make durable
        }
        if self.started.elapsed() > limits::TRANSACTION_AGE_MAX {
            return Err(StoreError::TransactionTooOld);
        }
        self.inner.refuse_if_poisoned()?;
        let inner = self.inner.clone();
        let writes = std::mem::take(&mut self.writes);
        let adds = std::mem::take(&mut self.adds);
        let stamped = std::mem::take(&mut self.stamped);
        let stamped_any = !stamped.is_empty();
        let version = {
            let _commit = lock(&inner.commit_lock);
            inner.refuse_unless_writer()?;
            {
                let tracking = lock(&inner.tracking);
                let conflict = tracking
                    .log
                    .iter()
                    .filter(|(v, _)| *v > self.read_version)
                    .any(|(_, written)| self.conflicts_with(written));
                if conflict {
                    return Err(StoreError::Conflict);
                }
            }
            let version = inner.committed_version.load(Ordering::Acquire) + 1;
            let stamp = versionstamp(version);
            let mut batch = inner.db.batch();
            // In key order: consecutive inserts then land near each other in fjall's memtable
            // skiplist, which is much kinder to the cache than the hash map's order.
            let mut writes: Vec<(Vec<u8>, Option<Vec<u8>>)> = writes.into_iter().collect();
            writes.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            for (key, value) in &writes {
                match value {
                    Some(v) => batch.insert(&inner.data, key.as_slice(), v.as_slice()),
                    None => batch.remove(&inner.data, key.as_slice()),
                }
            }
            let mut stamped_keys = Vec::with_capacity(stamped.len());
            for (key, offset, value) in &stamped {
                let mut key = key.clone();
                key[*offset..*offset + 10].copy_from_slice(&stamp);
                batch.insert(&inner.data, key.as_slice(), value.as_slice());
                stamped_keys.push(key);
            }
            let mut resolved = Vec::new(); // filled only when the commit is logged
            for (key, delta) in &adds {
                // Under the commit lock the latest committed value cannot move.
                let current = inner.data.get(key).map_err(|e| io("read for atomic add", e))?;
                let sum = decode_i64(current.as_deref()).wrapping_add(*delta);
                batch.insert(&inner.data, key.as_slice(), sum.to_le_bytes());
                if inner.replication.is_some() {
                    resolved.push((key.clone(), sum.to_le_bytes()));
                }
            }
            batch.insert(&inner.data, VERSION_KEY, version.to_be_bytes());
            let logged = inner.replication.is_some().then(|| {
                let mut logged: WriteSet = writes.clone();
                logged.extend(stamped_keys.iter().zip(&stamped).map(|(k, (_, _, v))| (k.clone(), Some(v.clone()))));
                // The sums just resolved: a standby applies values, never deltas.
                logged.extend(resolved.iter().map(|(k, v)| (k.clone(), Some(v.to_vec()))));
                logged
            });
            batch.commit().map_err(|e| io("commit", e))?;
            if let Some(logged) = logged {
                inner.log_commit(version, logged);
            }
            // Another live transaction began before this commit was visible and may have read what
            // it wrote: keep the written keys for its conflict check. Any transaction that begins
            // from here on sees this commit in its snapshot.
            let mut tracking = lock(&inner.tracking);
            if tracking.live.values().sum::<usize>() > 1 {
                let written: Vec<Vec<u8>> =
                    writes.into_iter().map(|(k, _)| k).chain(adds.into_keys()).chain(stamped_keys).collect();
                tracking.log.push_back((version, Arc::new(written)));
            }
            inner.committed_version.store(version, Ordering::Release);
            version
        };
        let versionstamp = stamped_any.then(|| versionstamp(version));
        Ok(Box::new(EmbeddedPending { inner, version, committed: Committed { versionstamp } }))
    }
}

/// A commit in the journal, durable once a sync that began after it completes.
struct EmbeddedPending {
    inner: Arc<Inner>,
    version: u64,
    committed: Committed,
}

impl PendingCommit for EmbeddedPending {
    fn wait(self: Box<Self>) -> Result<Committed, StoreError> {
        self.inner.wait_durable(self.version)?;
        self.inner.wait_standby(self.version)?;
        Ok(self.committed)
    }
}

/// FoundationDB's 10-byte commit version: 8 bytes of version, big-endian, then a 2-byte batch
/// number (always 0 here: each commit has its own version).
fn versionstamp(version: u64) -> [u8; 10] {
    let mut stamp = [0u8; 10];
    stamp[..8].copy_from_slice(&version.to_be_bytes());
    stamp
}

impl Inner {
    fn refuse_if_poisoned(&self) -> Result<(), StoreError> {
        if self.poisoned.load(Ordering::Acquire) {
            return Err(StoreError::Io("an earlier journal sync failed: restart the cell to recover".into()));
        }
        Ok(())
    }

    /// Syncs everything in the journal so far.
    fn sync_journal(&self) -> Result<(), StoreError> {
        self.refuse_if_poisoned()?;
        let synced = lock(&self.journal).sync(&self.db);
        synced.map_err(|e| {
            self.poisoned.store(true, Ordering::Release);
            tracing::error!(error = %e, "journal sync failed: the store refuses every further commit");
            io("sync journal", e)
        })
    }

    /// Returns once `version` is on disk.
    fn wait_durable(&self, version: u64) -> Result<(), StoreError> {
        if self.durability == Durability::SyncPerCommit {
            let target = self.committed_version.load(Ordering::Acquire);
            self.sync_journal()?;
            let mut state = lock(&self.sync);
            state.durable_version = state.durable_version.max(target);
            self.announce(state.durable_version);
            return Ok(());
        }
        let mut state = lock(&self.sync);
        loop {
            if state.durable_version >= version {
                return Ok(());
            }
            if state.syncing {
                state = self.synced.wait(state).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            // Lead a sync for every commit in the journal so far.
            state.syncing = true;
            let target = self.committed_version.load(Ordering::Acquire);
            drop(state);
            let result = self.sync_journal();
            state = lock(&self.sync);
            state.syncing = false;
            if result.is_ok() {
                state.durable_version = state.durable_version.max(target);
                // Standbys are shipped only what is on this disk: a primary that dies before a
                // sync must not leave a standby holding commits it lost.
                self.announce(state.durable_version);
            }
            self.synced.notify_all();
            result?;
        }
    }
}
