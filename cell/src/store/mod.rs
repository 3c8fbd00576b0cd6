//! Storage shaped like FoundationDB: ordered byte keys, serializable optimistic transactions with
//! buffered writes, range reads, atomic add, versionstamped keys, and a retry loop.
//!
//! Backends: [`embedded::EmbeddedStore`] (fjall, the default) and, behind the `foundationdb` cargo
//! feature, [`fdb::FdbStore`]. [`fault::FaultyStore`] wraps either to inject errors, unknown commit
//! outcomes and delays from a seed. All of them pass `tests/store_conformance.rs`.
//!
//! Keys are tuple-encoded (`foundationdb-tuple`) under one subspace per domain; the subspaces are
//! declared in [`subspaces`] so no two domains can collide.

mod background;
pub mod embedded;
pub mod fault;
#[cfg(feature = "foundationdb")]
#[allow(unsafe_code)]
pub mod fdb;
mod journal_sync;
mod memtable_reaper;
mod trickle_delete;

use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

/// FoundationDB's limits, enforced by every backend so code that works on one works on the other.
pub mod limits {
    use std::time::Duration;
    /// Largest key, in bytes.
    pub const KEY_BYTES_MAX: usize = 10_000;
    /// Largest value, in bytes.
    pub const VALUE_BYTES_MAX: usize = 100_000;
    /// Largest transaction: the bytes of every key and value it writes.
    pub const TRANSACTION_BYTES_MAX: usize = 10_000_000;
    /// Longest a transaction may live between begin and commit.
    pub const TRANSACTION_AGE_MAX: Duration = Duration::from_secs(5);
}

/// Why a store operation failed. `is_retryable` says whether `transact` may run the closure again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("transaction conflicted with a concurrent commit")]
    Conflict,
    /// The commit may or may not have been applied (FoundationDB's `commit_unknown_result`): a retry
    /// must be idempotent, which every transaction here makes sure of.
    #[error("commit outcome unknown")]
    CommitUnknownResult,
    #[error("key of {bytes} bytes is over the {} byte limit", limits::KEY_BYTES_MAX)]
    KeyTooLarge { bytes: usize },
    #[error("value of {bytes} bytes is over the {} byte limit", limits::VALUE_BYTES_MAX)]
    ValueTooLarge { bytes: usize },
    #[error("transaction of {bytes} bytes is over the {} byte limit", limits::TRANSACTION_BYTES_MAX)]
    TransactionTooLarge { bytes: usize },
    #[error("transaction is older than {:?}", limits::TRANSACTION_AGE_MAX)]
    TransactionTooOld,
    #[error("versionstamped key is malformed: {0}")]
    BadVersionstampKey(&'static str),
    /// A transient failure of the storage service (injected by the fault wrapper, or a backend
    /// that is briefly unavailable).
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("store I/O failed: {0}")]
    Io(String),
    /// A stored record does not decode: damage, or a record written by something else. Retrying
    /// cannot help; the record needs an operator.
    #[error("the record at key {key} is corrupt: {why}")]
    Corrupt { key: String, why: String },
}

impl StoreError {
    /// The record at `key` (printed with non-printable bytes escaped) does not decode.
    pub fn corrupt(key: &[u8], why: impl std::fmt::Display) -> StoreError {
        StoreError::Corrupt { key: key.escape_ascii().to_string(), why: why.to_string() }
    }

    /// The stable code and HTTP status a request that met this failure answers: a corrupt record
    /// is the operator's to mend (500 `INTERNAL`); anything else may pass on a retry (503
    /// `STORE_UNAVAILABLE`).
    pub fn answer(&self) -> (contracts::CellCode, u16) {
        match self {
            StoreError::Corrupt { .. } => (contracts::CellCode::Internal, 500),
            _ => (contracts::CellCode::StoreUnavailable, 503),
        }
    }

    /// Whether running the transaction again can succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            StoreError::Conflict
                | StoreError::CommitUnknownResult
                | StoreError::TransactionTooOld
                | StoreError::Unavailable(_)
        )
    }
}

/// A key-value pair as range reads return it.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// What a successful commit tells the caller.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Committed {
    /// The 10-byte commit version that completed this transaction's versionstamped keys, if it
    /// wrote any.
    pub versionstamp: Option<[u8; 10]>,
}

/// One transaction: reads see a snapshot plus this transaction's own writes; writes are buffered
/// until `commit`, which returns only once the transaction is durable.
pub trait Transaction: Send {
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Keys in `[begin, end)`, ascending (or descending when `reverse`), at most `limit` of them.
    fn get_range(&mut self, begin: &[u8], end: &[u8], limit: usize, reverse: bool)
        -> Result<Vec<KeyValue>, StoreError>;
    fn set(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError>;
    fn clear(&mut self, key: &[u8]) -> Result<(), StoreError>;
    /// Adds `delta` to the little-endian i64 at `key` (absent counts as 0) without a read conflict:
    /// concurrent adds to one key never conflict.
    fn atomic_add(&mut self, key: &[u8], delta: i64) -> Result<(), StoreError>;
    /// FoundationDB's `SetVersionstampedKey`: `key` ends with a 4-byte little-endian offset of a
    /// 10-byte placeholder that the commit fills with its version (`Subspace::pack_with_versionstamp`
    /// produces such keys). Keys written by later commits sort after earlier ones.
    fn set_versionstamped_key(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError>;
    /// Commits: once this returns, the transaction is ordered before every transaction that
    /// begins afterwards and visible to them, but it may not be durable yet; nothing may be
    /// acknowledged to anyone before `PendingCommit::wait` returns. This lets a single writer
    /// apply its next batch while the previous one syncs (FoundationDB's commit is a future too).
    fn commit_pipelined(self: Box<Self>) -> Result<Box<dyn PendingCommit>, StoreError>;
    /// Commits and returns once the transaction is durable.
    fn commit(self: Box<Self>) -> Result<Committed, StoreError> {
        self.commit_pipelined()?.wait()
    }
}

/// A commit that is ordered and visible, waiting to be durable.
pub trait PendingCommit: Send {
    /// Returns once the commit is durable.
    fn wait(self: Box<Self>) -> Result<Committed, StoreError>;
}

/// A commit that was durable when it returned.
pub struct Durable(pub Committed);

impl PendingCommit for Durable {
    fn wait(self: Box<Self>) -> Result<Committed, StoreError> {
        Ok(self.0)
    }
}

/// The embedded store's deleted files still held for the trickle delete, as it counts them.
#[derive(Debug, Default)]
pub struct DeletedFiles {
    /// Bytes of deleted files freed a chunk at a time.
    pub freed_bytes: AtomicU64,
    /// Bytes of deleted files not freed yet.
    pub withheld_bytes: AtomicU64,
    /// Files held (live or deleted).
    pub held_files: AtomicU64,
    /// Deleted files freed whole because the backlog would have passed its bound.
    pub let_go_at_once: AtomicU64,
}

/// A store: a factory of transactions.
pub trait Store: Send + Sync + 'static {
    fn begin(&self) -> Result<Box<dyn Transaction>, StoreError>;

    /// A transaction whose every read is a snapshot read (FoundationDB's `snapshot = true`): it
    /// adds no read conflict, so its commit is never refused for what others wrote meanwhile.
    /// Only for a single writer of every key it reads, or reads whose staleness cannot matter
    /// (the wallet's writer: it alone writes the wallet, and players are never rewritten).
    fn begin_snapshot_reads(&self) -> Result<Box<dyn Transaction>, StoreError>;
}

/// Most attempts `transact` makes before giving up on a retryable error.
pub const TRANSACT_ATTEMPTS_MAX: u32 = 64;
/// Longest back-off between attempts; keeps a retry storm from outliving the 5 s transaction limit.
const RETRY_BACKOFF_MAX: Duration = Duration::from_millis(20);

/// [`transact`] for a body that refuses nothing (it only reads and writes): its value, or the
/// store's error once retrying is done.
pub fn transact_writes<T>(
    store: &dyn Store,
    mut body: impl FnMut(&mut dyn Transaction) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    transact(store, |tx| body(tx).map(Ok::<T, std::convert::Infallible>))?.map_err(|never| match never {})
}

/// Runs `body` in a transaction and commits it, retrying on retryable errors as FoundationDB's
/// `run` does. `body` answers `Ok(Ok(t))` to commit, `Ok(Err(e))` to abort with a domain error
/// (nothing written), `Err(store_error)` when a store call failed. Because a retry follows an
/// unknown commit outcome, `body` must be idempotent: check a marker it writes.
pub fn transact<T, E>(
    store: &dyn Store,
    mut body: impl FnMut(&mut dyn Transaction) -> Result<Result<T, E>, StoreError>,
) -> Result<Result<T, E>, StoreError> {
    let started = Instant::now();
    let mut backoff = Duration::from_micros(100);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let outcome = (|| -> Result<Result<T, E>, StoreError> {
            let mut tx = store.begin()?;
            match body(tx.as_mut())? {
                Ok(value) => {
                    tx.commit()?;
                    Ok(Ok(value))
                }
                Err(domain) => Ok(Err(domain)),
            }
        })();
        match outcome {
            Err(e) if e.is_retryable() && attempt < TRANSACT_ATTEMPTS_MAX => {
                tracing::debug!(error = %e, attempt, elapsed_ms = started.elapsed().as_millis() as u64, "retry transaction");
                std::thread::sleep(backoff.mul_f64(rand::random::<f64>() + 0.5));
                backoff = (backoff * 2).min(RETRY_BACKOFF_MAX);
            }
            other => return other,
        }
    }
}

/// The bytes a transaction has written, checked against FoundationDB's limits on every write, so
/// every backend refuses the same transactions with the same errors.
#[derive(Debug, Default)]
pub(crate) struct WriteBudget {
    bytes: usize,
}

impl WriteBudget {
    /// Charges one write of `key` and `value`.
    pub(crate) fn charge(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        if key.len() > limits::KEY_BYTES_MAX {
            return Err(StoreError::KeyTooLarge { bytes: key.len() });
        }
        if value.len() > limits::VALUE_BYTES_MAX {
            return Err(StoreError::ValueTooLarge { bytes: value.len() });
        }
        self.bytes += key.len() + value.len();
        if self.bytes > limits::TRANSACTION_BYTES_MAX {
            return Err(StoreError::TransactionTooLarge { bytes: self.bytes });
        }
        Ok(())
    }

    /// Nothing written yet: the transaction is read-only.
    pub(crate) fn is_empty(&self) -> bool {
        self.bytes == 0
    }
}

/// Splits a versionstamped key into the key with its placeholder and the placeholder's offset.
pub(crate) fn versionstamp_offset(key: &[u8]) -> Result<(&[u8], usize), StoreError> {
    let split = key.len().checked_sub(4).ok_or(StoreError::BadVersionstampKey("shorter than its 4-byte offset"))?;
    let (body, offset) = key.split_at(split);
    let offset = u32::from_le_bytes([offset[0], offset[1], offset[2], offset[3]]) as usize;
    if offset + 10 > body.len() {
        return Err(StoreError::BadVersionstampKey("offset points past the key"));
    }
    Ok((body, offset))
}

/// The subspaces of the store, one per domain (and one for the outbox). A domain reads and writes
/// only its own; its key layout lives in its `keys.rs`.
pub mod subspaces {
    use foundationdb_tuple::Subspace;

    pub fn wallet() -> Subspace {
        Subspace::all().subspace(&"wallet")
    }
    pub fn compliance() -> Subspace {
        Subspace::all().subspace(&"compliance")
    }
    /// Payments through PSPs.
    pub fn cashier() -> Subspace {
        Subspace::all().subspace(&"cashier")
    }
    /// Player logins: sessions and their refresh tokens.
    pub fn identity() -> Subspace {
        Subspace::all().subspace(&"identity")
    }
    pub fn events() -> Subspace {
        Subspace::all().subspace(&"events")
    }
    pub fn audit() -> Subspace {
        Subspace::all().subspace(&"audit")
    }
    pub fn gaming() -> Subspace {
        Subspace::all().subspace(&"gaming")
    }
    pub fn catalog() -> Subspace {
        Subspace::all().subspace(&"catalog")
    }
    /// Used only by the store conformance suite and benchmarks.
    pub fn test() -> Subspace {
        Subspace::all().subspace(&"test")
    }
}
