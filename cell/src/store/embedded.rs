//! The default backend: fjall's optimistic transactional database on local disk, with group commit.
//!
//! A commit is acknowledged only once it is durable. Transactions commit to fjall's journal
//! without syncing; then each committer waits for a shared `persist(SyncAll)` that began after its
//! commit. The first waiter to find no sync running leads one for everyone committed so far, so
//! under load one fsync releases many commits (DESIGN.md section 3).
//!
//! fjall gives snapshot reads, buffered writes and conflict detection at commit. What FoundationDB
//! does in its resolver and fjall does not, this backend does under one short commit lock: it
//! assigns each commit the next version (for versionstamped keys, persisted so versions keep
//! increasing across restarts) and applies atomic adds to the latest committed value, so adds
//! never conflict.

use super::{
    check_write, limits, versionstamp_offset, Committed, Durable, KeyValue, PendingCommit, Store, StoreError,
    Transaction,
};
use fjall::{KeyspaceCreateOptions, OptimisticTxDatabase, OptimisticTxKeyspace, PersistMode, Readable};
use std::collections::{BTreeMap, HashSet};
use std::hash::BuildHasher;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
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
    db: OptimisticTxDatabase,
    data: OptimisticTxKeyspace,
    durability: Durability,
    /// Serialises version assignment, atomic-add resolution and the fjall commit.
    commit_lock: Mutex<()>,
    /// Highest version whose commit is in the journal (not necessarily synced).
    committed_version: AtomicU64,
    sync: Mutex<SyncState>,
    synced: Condvar,
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

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding these locks leaves no partial state behind (the fjall commit is
    // atomic), so a poisoned lock is still safe to use.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl EmbeddedStore {
    /// Opens (or creates) the store under `dir`.
    pub fn open(dir: &Path, durability: Durability) -> Result<EmbeddedStore, StoreError> {
        let db = OptimisticTxDatabase::builder(dir).open().map_err(|e| io("open fjall database", e))?;
        let data = db.keyspace("kv", KeyspaceCreateOptions::default).map_err(|e| io("open keyspace", e))?;
        let version = match data.get(VERSION_KEY).map_err(|e| io("read commit version", e))? {
            Some(v) => u64::from_be_bytes(v.as_ref().try_into().map_err(|_| io("read commit version", "not 8 bytes"))?),
            None => 0,
        };
        Ok(EmbeddedStore {
            inner: Arc::new(Inner {
                db,
                data,
                durability,
                commit_lock: Mutex::new(()),
                committed_version: AtomicU64::new(version),
                sync: Mutex::new(SyncState { durable_version: version, syncing: false }),
                synced: Condvar::new(),
            }),
        })
    }
}

impl Store for EmbeddedStore {
    fn begin(&self) -> Result<Box<dyn Transaction>, StoreError> {
        let tx = self.inner.db.write_tx().map_err(|e| io("begin transaction", e))?;
        Ok(Box::new(EmbeddedTx {
            inner: self.inner.clone(),
            tx,
            started: Instant::now(),
            bytes: 0,
            written: HashSet::default(),
            adds: BTreeMap::new(),
            stamped: Vec::new(),
        }))
    }

    fn backend_name(&self) -> &'static str {
        "embedded"
    }
}

struct EmbeddedTx {
    inner: Arc<Inner>,
    tx: fjall::OptimisticWriteTx,
    started: Instant,
    /// Bytes written so far, against `TRANSACTION_BYTES_MAX`.
    bytes: usize,
    /// Hashes of the keys set or cleared here, so an atomic add after them applies to this
    /// transaction's value. A hash collision only sends an add down the read path, which is
    /// correct too (it reads under a conflict check), so hashes are enough.
    written: HashSet<u64, rustc_hash::FxBuildHasher>,
    /// Atomic adds to apply at commit on top of the latest committed value.
    adds: BTreeMap<Vec<u8>, i64>,
    /// Versionstamped writes: key with placeholder, placeholder offset, value.
    stamped: Vec<(Vec<u8>, usize, Vec<u8>)>,
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
    fn account(&mut self, bytes: usize) -> Result<(), StoreError> {
        self.bytes += bytes;
        if self.bytes > limits::TRANSACTION_BYTES_MAX {
            return Err(StoreError::TransactionTooLarge { bytes: self.bytes });
        }
        Ok(())
    }
}

impl Transaction for EmbeddedTx {
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let value = self.tx.get(&self.inner.data, key).map_err(|e| io("read", e))?;
        match self.adds.get(key) {
            Some(delta) => {
                let sum = decode_i64(value.as_deref()).wrapping_add(*delta);
                Ok(Some(sum.to_le_bytes().to_vec()))
            }
            None => Ok(value.map(|v| v.to_vec())),
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
        let iter = self.tx.range(&self.inner.data, begin..end);
        let mut out = Vec::new();
        let mut push = |guard: fjall::Guard| -> Result<bool, StoreError> {
            let (k, v) = guard.into_inner().map_err(|e| io("range read", e))?;
            out.push((k.to_vec(), v.to_vec()));
            Ok(out.len() < limit)
        };
        if reverse {
            for g in iter.rev() {
                if !push(g)? {
                    break;
                }
            }
        } else {
            for g in iter {
                if !push(g)? {
                    break;
                }
            }
        }
        Ok(out)
    }

    fn set(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let bytes = check_write(key, value)?;
        self.account(bytes)?;
        self.adds.remove(key);
        self.written.insert(rustc_hash::FxBuildHasher.hash_one(key));
        self.tx.insert(&self.inner.data, key, value);
        Ok(())
    }

    fn clear(&mut self, key: &[u8]) -> Result<(), StoreError> {
        let bytes = check_write(key, &[])?;
        self.account(bytes)?;
        self.adds.remove(key);
        self.written.insert(rustc_hash::FxBuildHasher.hash_one(key));
        self.tx.remove(&self.inner.data, key);
        Ok(())
    }

    fn atomic_add(&mut self, key: &[u8], delta: i64) -> Result<(), StoreError> {
        let bytes = check_write(key, &[0; 8])?;
        self.account(bytes)?;
        if self.written.contains(&rustc_hash::FxBuildHasher.hash_one(key)) {
            // Set earlier in this transaction: add to that value now.
            let current = self.tx.get(&self.inner.data, key).map_err(|e| io("read", e))?;
            let sum = decode_i64(current.as_deref()).wrapping_add(delta);
            self.tx.insert(&self.inner.data, key, sum.to_le_bytes());
        } else {
            *self.adds.entry(key.to_vec()).or_insert(0) += delta;
        }
        Ok(())
    }

    fn set_versionstamped_key(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let (body, offset) = versionstamp_offset(key)?;
        let bytes = check_write(body, value)?;
        self.account(bytes)?;
        self.stamped.push((body.to_vec(), offset, value.to_vec()));
        Ok(())
    }

    fn commit_pipelined(self: Box<Self>) -> Result<Box<dyn PendingCommit>, StoreError> {
        let EmbeddedTx { inner, mut tx, started, bytes, adds, stamped, .. } = *self;
        if bytes == 0 {
            return Ok(Box::new(Durable(Committed::default()))); // read-only: nothing to make durable
        }
        if started.elapsed() > limits::TRANSACTION_AGE_MAX {
            return Err(StoreError::TransactionTooOld);
        }
        let version = {
            let _commit = lock(&inner.commit_lock);
            let version = inner.committed_version.load(Ordering::Acquire) + 1;
            let stamp = versionstamp(version);
            for (mut key, offset, value) in stamped.iter().cloned() {
                key[offset..offset + 10].copy_from_slice(&stamp);
                tx.insert(&inner.data, key, value);
            }
            for (key, delta) in &adds {
                // Under the commit lock the latest committed value cannot move.
                let current = inner.data.get(key).map_err(|e| io("read for atomic add", e))?;
                let sum = decode_i64(current.as_deref()).wrapping_add(*delta);
                tx.insert(&inner.data, key.as_slice(), sum.to_le_bytes());
            }
            tx.insert(&inner.data, VERSION_KEY, version.to_be_bytes());
            match tx.commit() {
                Ok(Ok(())) => {}
                Ok(Err(fjall::Conflict)) => return Err(StoreError::Conflict),
                Err(e) => return Err(io("commit", e)),
            }
            inner.committed_version.store(version, Ordering::Release);
            version
        };
        let versionstamp = (!stamped.is_empty()).then(|| versionstamp(version));
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
    /// Returns once `version` is on disk.
    fn wait_durable(&self, version: u64) -> Result<(), StoreError> {
        if self.durability == Durability::SyncPerCommit {
            return self.db.persist(PersistMode::SyncAll).map_err(|e| io("sync journal", e));
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
            let result = self.db.persist(PersistMode::SyncAll);
            state = lock(&self.sync);
            state.syncing = false;
            if result.is_ok() {
                state.durable_version = state.durable_version.max(target);
            }
            self.synced.notify_all();
            // A failed sync fails only its leader; the next waiter leads a new attempt.
            result.map_err(|e| io("sync journal", e))?;
        }
    }
}
