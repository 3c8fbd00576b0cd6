//! The FoundationDB backend (cargo feature `foundationdb`). It links `libfdb_c` from FoundationDB's
//! own client packages; point `FDB_CLUSTER_FILE` at a live cluster to use it (README says how).
//!
//! The `Store` interface is synchronous, so each FoundationDB future is driven to completion on
//! the calling thread; FoundationDB's own network thread does the I/O.

use super::{
    limits, versionstamp_offset, Committed, Durable, KeyValue, PendingCommit, Store, StoreError, Transaction,
    WriteBudget,
};
use foundationdb::options::{MutationType, StreamingMode};
use foundationdb::{Database, FdbError, KeySelector, RangeOption};
use futures::executor::block_on;
use std::sync::OnceLock;
use std::time::Instant;

/// FoundationDB's error codes this backend maps by number.
const NOT_COMMITTED: i32 = 1020;
const TRANSACTION_TOO_OLD: i32 = 1007;

/// Starts FoundationDB's network thread once per process. The client library allows exactly one
/// network per process, for the life of the process, so its guard is kept forever.
fn network() {
    static NETWORK: OnceLock<()> = OnceLock::new();
    NETWORK.get_or_init(|| {
        // SAFETY: called once per process (guarded by the OnceLock) and the guard is never dropped,
        // so the network is never stopped while a database handle is alive.
        let guard = unsafe { foundationdb::boot() };
        std::mem::forget(guard);
    });
}

fn map_error(e: FdbError) -> StoreError {
    match e.code() {
        NOT_COMMITTED => StoreError::Conflict,
        TRANSACTION_TOO_OLD => StoreError::TransactionTooOld,
        _ if e.is_maybe_committed() => StoreError::CommitUnknownResult,
        _ if e.is_retryable() => StoreError::Unavailable(e.to_string()),
        _ => StoreError::Io(e.to_string()),
    }
}

pub struct FdbStore {
    db: Database,
}

impl FdbStore {
    /// Connects with the cluster file at `cluster_file` (FoundationDB's default path when `None`).
    pub fn open(cluster_file: Option<&str>) -> Result<FdbStore, StoreError> {
        network();
        let db = Database::new(cluster_file).map_err(map_error)?;
        Ok(FdbStore { db })
    }
}

impl Store for FdbStore {
    fn begin(&self) -> Result<Box<dyn Transaction>, StoreError> {
        self.begin_with(false)
    }

    fn begin_snapshot_reads(&self) -> Result<Box<dyn Transaction>, StoreError> {
        self.begin_with(true)
    }
}

impl FdbStore {
    fn begin_with(&self, snapshot: bool) -> Result<Box<dyn Transaction>, StoreError> {
        let trx = self.db.create_trx().map_err(map_error)?;
        Ok(Box::new(FdbTx { trx, snapshot, budget: WriteBudget::default(), stamped: false, started: Instant::now() }))
    }
}

struct FdbTx {
    trx: foundationdb::Transaction,
    /// Every read is a snapshot read: no read conflict ranges.
    snapshot: bool,
    budget: WriteBudget,
    stamped: bool,
    started: Instant,
}

impl FdbTx {}

impl Transaction for FdbTx {
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let value = block_on(self.trx.get(key, self.snapshot)).map_err(map_error)?;
        Ok(value.map(|v| v.to_vec()))
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
        let mut option = RangeOption {
            begin: KeySelector::first_greater_or_equal(begin.to_vec()),
            end: KeySelector::first_greater_or_equal(end.to_vec()),
            limit: Some(limit),
            mode: StreamingMode::WantAll,
            reverse,
            ..RangeOption::from((begin, end))
        };
        let mut out = Vec::new();
        loop {
            let values = block_on(self.trx.get_range(&option, 1, self.snapshot)).map_err(map_error)?;
            out.extend(values.iter().map(|kv| (kv.key().to_vec(), kv.value().to_vec())));
            if out.len() >= limit {
                out.truncate(limit);
                return Ok(out);
            }
            match option.next_range(&values) {
                Some(next) => option = next,
                None => return Ok(out),
            }
        }
    }

    fn set(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.budget.charge(key, value)?;
        self.trx.set(key, value);
        Ok(())
    }

    fn clear(&mut self, key: &[u8]) -> Result<(), StoreError> {
        self.budget.charge(key, &[])?;
        self.trx.clear(key);
        Ok(())
    }

    fn atomic_add(&mut self, key: &[u8], delta: i64) -> Result<(), StoreError> {
        self.budget.charge(key, &[0; 8])?;
        self.trx.atomic_op(key, &delta.to_le_bytes(), MutationType::Add);
        Ok(())
    }

    fn set_versionstamped_key(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let (body, _) = versionstamp_offset(key)?;
        self.budget.charge(body, value)?;
        self.stamped = true;
        self.trx.atomic_op(key, value, MutationType::SetVersionstampedKey);
        Ok(())
    }

    /// FoundationDB acknowledges a commit once it is durable, so the commit is complete here.
    fn commit_pipelined(self: Box<Self>) -> Result<Box<dyn PendingCommit>, StoreError> {
        if self.started.elapsed() > limits::TRANSACTION_AGE_MAX {
            return Err(StoreError::TransactionTooOld);
        }
        let stamp = self.stamped.then(|| self.trx.get_versionstamp());
        block_on(self.trx.commit()).map_err(|e| map_error(*e))?;
        let versionstamp = match stamp {
            Some(future) => {
                let bytes = block_on(future).map_err(map_error)?;
                let mut stamp = [0u8; 10];
                stamp.copy_from_slice(&bytes[..10]);
                Some(stamp)
            }
            None => None,
        };
        Ok(Box::new(Durable(Committed { versionstamp })))
    }
}
