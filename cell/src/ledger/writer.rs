//! The single writer: one thread that owns every change to money in this cell.
//!
//! It takes the commands waiting in its queue (up to `batch_ops_max`), applies each in order
//! against its in-memory view (the kernel's balances and house accounts, and each domain's room),
//! and writes each command's journal entries, idempotency record and events into one store
//! transaction for the batch. A command is atomic: it is checked in full before it changes
//! anything, so a refused command leaves no trace.
//!
//! Three threads form a pipeline ([`super::pipeline`]), so the writer applies batch N+1 while
//! batch N is written to the store and batch N-1 syncs. Nothing is answered before it is durable.
//! Batch N+1's transaction begins before batch N is in the store, which is safe because
//! everything N wrote that N+1 could need is in the writer's view: balances, house accounts and
//! rooms are cached until N is committed, and N's idempotency answers stay in memory until then.
//! If a commit fails, the committer refuses every later batch of the same epoch, the writer waits
//! for the pipeline to empty, reloads its view from the store and starts a new epoch; the refused
//! callers retry with their keys.
//!
//! Because only this thread writes the ledger, a hot house account costs nothing extra: its
//! balance is updated in memory and written once per batch.

use super::command::{Job, Rooms};
use super::kernel::{HouseAccount, KernelTx, Registered};
use super::money::PlayerBalances;
use super::pipeline::{panic_message, ToCommit};
use super::refusal::Failed;
use super::{keys, Fault, Gate};
use crate::audit::AuditChain;
use crate::clock::Clock;
use crate::events::EventContext;
use crate::idempotency::{IdempotencyKey, IdempotencyRecord};
use crate::metrics::Metrics;
use crate::store::{Store, StoreError, Transaction};
use chrono::{DateTime, Utc};
use contracts::{Currency, PlayerId};
use rust_decimal::Decimal;
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;

/// Tuning of the writer.
#[derive(Debug, Clone, Copy)]
pub struct WriterConfig {
    /// Most commands per store commit. Bounded by the store's 10 MB transaction limit (a command
    /// writes well under 2 kB) and by the 65,536 events one commit can order.
    pub batch_ops_max: usize,
    /// Commands that may wait for the writer; callers wait (back-pressure) beyond it.
    pub queue_ops_max: usize,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig { batch_ops_max: 2_048, queue_ops_max: 16_384 }
    }
}

/// Batches committed but not yet durable at once: the writer applies the next batch while these
/// sync. A few are enough to keep the disk busy; more would only hold more answers back.
pub(super) const PIPELINE_BATCHES_MAX: usize = 4;
/// Cached balances kept between batches before the cache is dropped and reloaded on demand.
pub(super) const CACHED_BALANCES_MAX: usize = 1_000_000;
/// Records the domains' rooms may cache between batches, likewise.
pub(super) const CACHED_ROOM_RECORDS_MAX: usize = 200_000;

pub(super) struct Submission {
    pub job: Box<dyn Job>,
    /// `None` for commands idempotent by their own checks: nothing stored, nothing replayed.
    pub key: Option<IdempotencyKey>,
    pub ctx: EventContext,
    /// When the caller submitted it, for the `queued` stage metric.
    pub submitted: Instant,
}

/// The kernel's view of the ledger, authoritative for everything it holds.
#[derive(Default)]
pub(super) struct View {
    pub balances: HashMap<(PlayerId, Currency), PlayerBalances>,
    pub house: HashMap<(HouseAccount, Currency), Decimal>,
    pub players: HashMap<PlayerId, Registered>,
    /// Last journal sequence number used.
    pub seq: u64,
    /// Journal timestamps never go backwards, whatever the wall clock does.
    pub last_ts: DateTime<Utc>,
}

/// What one batch has changed, written just before its commit.
pub(super) struct Batch {
    pub dirty_balances: HashSet<(PlayerId, Currency)>,
    pub dirty_house: HashSet<(HouseAccount, Currency)>,
    pub answers: HashMap<String, IdempotencyRecord>,
    pub events: u16,
    /// The audit chain's end as this batch leaves it: every event is appended to it.
    pub chain: AuditChain,
    /// When the batch was applied: its events' time.
    pub at: DateTime<Utc>,
}

impl Batch {
    fn new(chain: AuditChain, at: DateTime<Utc>) -> Batch {
        Batch {
            at,
            dirty_balances: HashSet::default(),
            dirty_house: HashSet::default(),
            answers: HashMap::default(),
            events: 0,
            chain,
        }
    }
}

/// A batch applied into its transaction, with the idempotency answers it records.
pub(super) type AppliedBatch = (Box<dyn Transaction>, HashMap<String, IdempotencyRecord>);

pub(super) struct Writer {
    pub store: Arc<dyn Store>,
    pub metrics: Arc<Metrics>,
    /// Raised when this writer fails: the cell then stops being ready and exits.
    pub fault: Fault,
    pub clock: Arc<dyn Clock>,
    pub gates: Vec<Box<dyn Gate>>,
    /// The jurisdiction (cell) whose licence the money moves under, for gates.
    pub jurisdiction: String,
    pub view: View,
    pub rooms: Rooms,
    /// The audit chain's end after the last batch applied.
    pub chain: AuditChain,
    /// Number of the last batch applied.
    pub batch: u64,
    /// Bumped when a failed commit forces a reload; the committer refuses the rest of an epoch.
    pub epoch: u64,
    /// Batches handed to the committer and not yet acknowledged, with their idempotency answers.
    pub pipeline: VecDeque<(u64, HashMap<String, IdempotencyRecord>)>,
}

pub(super) fn spawn(
    mut writer: Writer,
    config: WriterConfig,
) -> Result<(mpsc::Sender<Submission>, std::thread::JoinHandle<()>), StoreError> {
    let (sender, receiver) = mpsc::channel(config.queue_ops_max);
    let fault = writer.fault.clone();
    writer.reload()?;
    let handle = std::thread::Builder::new()
        .name("ledger-writer".into())
        .spawn(move || {
            // A panic that escapes one command's (see `batch_apply`) ends the writer: never
            // silently, the cell stops being ready and exits non-zero.
            let run = std::panic::AssertUnwindSafe(move || writer.run(receiver, config));
            if let Err(panic) = std::panic::catch_unwind(run) {
                fault.raise(format!("the ledger writer panicked: {}", panic_message(panic.as_ref())));
            }
        })
        .map_err(|e| StoreError::Io(format!("spawn the ledger writer: {e}")))?;
    Ok((sender, handle))
}

/// Decodes the record stored at `key` (MessagePack, as the ledger and its domains store records).
pub fn decode<T: for<'de> Deserialize<'de>>(key: &[u8], bytes: &[u8]) -> Result<T, StoreError> {
    rmp_serde::from_slice(bytes).map_err(|e| StoreError::corrupt(key, e))
}

/// Encodes a record as the ledger and its domains store it.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Sized for a typical record up front: growing the buffer was a visible share of the
    // writer's time.
    let mut buf = Vec::with_capacity(256);
    rmp_serde::encode::write(&mut buf, value).expect("ledger records always encode");
    buf
}

/// How a store failure reaches a caller: a corrupt record is the operator's (500), anything else
/// is worth a retry with the same key (503).
pub(super) fn store_failed(e: &StoreError) -> Failed<std::convert::Infallible> {
    match e {
        StoreError::Corrupt { .. } => Failed::Internal(e.to_string()),
        _ => Failed::Unavailable(e.to_string()),
    }
}

impl Writer {
    /// Applies every command of the batch into one transaction, and writes what the batch changed
    /// in the view.
    pub(super) fn batch_try(
        &mut self,
        batch: &mut [Submission],
    ) -> Result<AppliedBatch, super::pipeline::BatchFailure> {
        // Snapshot reads: this thread alone writes the ledger, and a player record is never
        // rewritten, so nothing another transaction commits can invalidate what a batch read.
        let mut tx = self.store.begin_snapshot_reads()?;
        let mut b = Batch::new(self.chain, self.clock.now().max(self.view.last_ts));
        for (index, s) in batch.iter_mut().enumerate() {
            // A panic is caught here, per command, so it costs that command alone (see
            // `poisoned`); the batch's transaction is dropped with whatever it held.
            let applied = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.apply(tx.as_mut(), &mut b, s)));
            match applied {
                Ok(applied) => applied?,
                Err(panic) => {
                    let message = panic_message(panic.as_ref());
                    return Err(super::pipeline::BatchFailure::Panicked { index, message });
                }
            }
        }
        for key in &b.dirty_balances {
            let balances = self.view.balances[key];
            balances.assert_valid(&key.0);
            tx.set(&keys::balance(&key.0, key.1), &encode(&balances))?;
        }
        for key in &b.dirty_house {
            tx.set(&keys::house(key.0 .0, key.1), &encode(&self.view.house[key]))?;
        }
        for room in self.rooms.iter_mut() {
            room.write(tx.as_mut(), self.batch)?;
        }
        tx.set(&keys::sequence(), &encode(&(self.view.seq, self.view.last_ts.timestamp_micros())))?;
        if b.chain != self.chain {
            b.chain.write_head(tx.as_mut())?;
            self.chain = b.chain;
        }
        Ok((tx, b.answers))
    }

    /// Applies one command, unless its key has an answer already: then that answer is replayed.
    fn apply(&mut self, tx: &mut dyn Transaction, b: &mut Batch, s: &mut Submission) -> Result<(), StoreError> {
        if let Some(key) = &s.key {
            let in_flight = || self.pipeline.iter().rev().find_map(|(_, answers)| answers.get(&key.key));
            let earlier = match b.answers.get(&key.key).or_else(in_flight) {
                Some(record) => Some(record.clone()),
                None => {
                    let at = keys::idempotency(&key.key);
                    match tx.get(&at)? {
                        Some(bytes) => {
                            Some(IdempotencyRecord::decode(&bytes).map_err(|e| StoreError::corrupt(&at, e))?)
                        }
                        None => None,
                    }
                }
            };
            if let Some(record) = earlier {
                s.job.replay(&record, key);
                return Ok(());
            }
        }
        let mut kernel = KernelTx {
            tx,
            view: &mut self.view,
            batch: b,
            ctx: &s.ctx,
            gates: &self.gates,
            rooms: &mut self.rooms,
            jurisdiction: &self.jurisdiction,
            clock: self.clock.as_ref(),
        };
        let record = s.job.apply(&mut kernel)?;
        // A decision, accepted or refused, is recorded under the key, so a retry gets the same
        // answer (as Stripe does): a new attempt after a refusal takes a new key.
        if let (Some(key), Some((status, body))) = (&s.key, record) {
            let record = IdempotencyRecord { request_hash: key.request_hash, status, body, at: b.at.timestamp() };
            tx.set(&keys::idempotency(&key.key), &record.encode())?;
            b.answers.insert(key.key.clone(), record);
        }
        Ok(())
    }

    /// Hands an applied batch on to the committer.
    pub(super) fn hand_on(
        &mut self,
        tx: Box<dyn Transaction>,
        answers: HashMap<String, IdempotencyRecord>,
        batch: &mut Vec<Submission>,
    ) -> ToCommit {
        self.pipeline.push_back((self.batch, answers));
        let jobs = batch.drain(..).map(|s| s.job).collect();
        ToCommit { batch: self.batch, epoch: self.epoch, tx, jobs, handed: Instant::now() }
    }
}
