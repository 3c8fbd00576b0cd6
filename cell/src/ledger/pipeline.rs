//! The writer's pipeline: the writer thread takes batches from its queue and applies them into
//! one transaction each (catching a panic per command), the commit thread commits them in order,
//! the durability thread answers each batch once it is durable; a failed commit or batch makes
//! the writer reload its view in a new epoch.

use super::command::Job;
use super::keys;
use super::reads::sequence_decode;
use super::refusal::Failed;
use super::writer::{
    store_failed, Submission, View, Writer, WriterConfig, CACHED_BALANCES_MAX, CACHED_ROOM_RECORDS_MAX,
    PIPELINE_BATCHES_MAX,
};
use crate::audit::AuditChain;
use crate::idempotency::IdempotencyRecord;
use crate::metrics::{Metrics, Stage};
use crate::store::{PendingCommit, StoreError, Transaction};
use chrono::{DateTime, Utc};
use std::time::Instant;
use tokio::sync::mpsc;

/// An applied batch on its way to the committer.
pub(super) struct ToCommit {
    pub batch: u64,
    pub epoch: u64,
    pub tx: Box<dyn Transaction>,
    pub jobs: Vec<Box<dyn Job>>,
    /// When the writer handed it on, for the `waited_commit` stage metric.
    pub handed: Instant,
}

/// What the committer tells the writer about each batch, in order.
pub(super) enum Ack {
    Committed(u64),
    Failed(u64),
}

/// A committed batch waiting to be durable, with the answers it will release.
pub(super) struct InFlight {
    pending: Box<dyn PendingCommit>,
    jobs: Vec<Box<dyn Job>>,
    /// When the committer handed it on, for the `waited_sync` stage metric.
    handed: Instant,
}

/// Why a batch could not be applied.
pub(super) enum BatchFailure {
    Store(StoreError),
    /// Applying the operation at `index` panicked: a bug, or an input that no check refused.
    Panicked {
        index: usize,
        message: String,
    },
}

impl From<StoreError> for BatchFailure {
    fn from(e: StoreError) -> BatchFailure {
        BatchFailure::Store(e)
    }
}

/// The next value of a counter of batches or epochs: at a million a second, 584,000 years away
/// from wrapping.
pub(super) fn next(counter: u64) -> u64 {
    counter.checked_add(1).expect("a batch or epoch counter never wraps")
}

/// A panic's message, as `std` prints it.
pub(super) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    match (panic.downcast_ref::<&str>(), panic.downcast_ref::<String>()) {
        (Some(text), _) => (*text).to_owned(),
        (_, Some(text)) => text.clone(),
        _ => "a panic without a message".to_owned(),
    }
}

/// The commit thread: commits batches in order, hands each to the durability thread, and tells the
/// writer. After a failure it refuses the rest of that epoch: those batches were applied on top of
/// one that is not in the store.
pub(super) fn commit_in_order(
    commits: std::sync::mpsc::Receiver<ToCommit>,
    durable: std::sync::mpsc::SyncSender<InFlight>,
    acks: std::sync::mpsc::Sender<Ack>,
    metrics: &Metrics,
) {
    let mut failed_epoch = None;
    for c in commits {
        let committing = Instant::now();
        metrics.wallet_stage(Stage::WaitedCommit, c.handed);
        let committed = if failed_epoch == Some(c.epoch) {
            Err(StoreError::Unavailable("an earlier batch failed to commit".into()))
        } else {
            c.tx.commit_pipelined()
        };
        metrics.wallet_stage(Stage::Committed, committing);
        match committed {
            Ok(pending) => {
                let _ = acks.send(Ack::Committed(c.batch));
                if durable.send(InFlight { pending, jobs: c.jobs, handed: Instant::now() }).is_err() {
                    return;
                }
            }
            Err(e) => {
                tracing::error!(error = %e, batch = c.batch, "ledger batch commit failed");
                failed_epoch = Some(c.epoch);
                for job in c.jobs {
                    job.send(Err(e.to_string()));
                }
                let _ = acks.send(Ack::Failed(c.batch));
            }
        }
    }
}

/// The durability thread: answers each committed batch, in commit order, once it is durable.
pub(super) fn answer_when_durable(in_flight: std::sync::mpsc::Receiver<InFlight>, metrics: &Metrics) {
    for flight in in_flight {
        let syncing = Instant::now();
        metrics.wallet_stage(Stage::WaitedSync, flight.handed);
        let durable = flight.pending.wait();
        metrics.wallet_stage(Stage::Synced, syncing);
        let durable = durable.map(|_| ()).map_err(|e| e.to_string());
        for job in flight.jobs {
            job.send(durable.clone());
        }
    }
}

impl Writer {
    /// Drops the view and reloads what the writer keeps across batches from the store.
    pub(super) fn reload(&mut self) -> Result<(), StoreError> {
        let last_ts = self.view.last_ts;
        self.view = View { last_ts, ..View::default() };
        for room in self.rooms.iter_mut() {
            room.forget();
        }
        let mut tx = self.store.begin()?;
        let (seq, last_us) = match tx.get(&keys::sequence())? {
            Some(bytes) => sequence_decode(&bytes)?,
            None => (0, None),
        };
        self.view.seq = seq;
        // The journal's order is its keys' (timestamp, sequence): a clock set back across a
        // restart must not stamp new entries before the old ones.
        if let Some(us) = last_us {
            let last = DateTime::<Utc>::from_timestamp_micros(us)
                .ok_or_else(|| StoreError::corrupt(&keys::sequence(), format!("a timestamp out of range ({us} µs)")))?;
            let ahead = last.signed_duration_since(self.clock.now());
            if ahead > chrono::Duration::minutes(1) {
                tracing::warn!(
                    ahead_s = ahead.num_seconds(),
                    "the journal's last entry is stamped ahead of this clock: new entries take its \
                     timestamp until the clock catches up"
                );
            }
            self.view.last_ts = self.view.last_ts.max(last);
        }
        self.chain = AuditChain::load(tx.as_mut())?;
        Ok(())
    }

    pub(super) fn run(mut self, mut receiver: mpsc::Receiver<Submission>, config: WriterConfig) {
        let (to_durable, in_flight) = std::sync::mpsc::sync_channel::<InFlight>(PIPELINE_BATCHES_MAX);
        let (to_commit, commits) = std::sync::mpsc::sync_channel::<ToCommit>(PIPELINE_BATCHES_MAX);
        let (ack, acks) = std::sync::mpsc::channel::<Ack>();
        let (metrics, commit_metrics) = (self.metrics.clone(), self.metrics.clone());
        let answerer = std::thread::Builder::new()
            .name("ledger-durable".into())
            .spawn(move || answer_when_durable(in_flight, &metrics))
            .expect("spawn the ledger's durability thread");
        let committer = std::thread::Builder::new()
            .name("ledger-commit".into())
            .spawn(move || commit_in_order(commits, to_durable, ack, &commit_metrics))
            .expect("spawn the ledger's commit thread");
        let mut batch = Vec::with_capacity(config.batch_ops_max);
        while let Some(first) = receiver.blocking_recv() {
            batch.push(first);
            while batch.len() < config.batch_ops_max {
                match receiver.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
            self.metrics.wallet_queue_depth.dec_by(batch.len() as i64);
            for s in &batch {
                self.metrics.wallet_stage(Stage::Queued, s.submitted);
            }
            self.acks_take(&acks, false);
            if let Some(applied) = self.batch_apply(&mut batch, &acks) {
                if to_commit.send(applied).is_err() {
                    break; // the committer is gone: nothing more can be acknowledged
                }
            }
        }
        drop(to_commit);
        for (name, thread) in [("commit", committer), ("durability", answerer)] {
            if let Err(panic) = thread.join() {
                self.fault.raise(format!("the ledger {name} thread panicked: {}", panic_message(panic.as_ref())));
            }
        }
        tracing::info!("ledger writer stopped: no more submissions");
    }

    /// Takes the committer's acknowledgements (waiting for all of them when `drain`). After a
    /// failed commit it waits for the pipeline to empty, then reloads the view in a new epoch.
    pub(super) fn acks_take(&mut self, acks: &std::sync::mpsc::Receiver<Ack>, drain: bool) {
        let mut failed = false;
        loop {
            let next =
                if (drain || failed) && !self.pipeline.is_empty() { acks.recv().ok() } else { acks.try_recv().ok() };
            let Some(ack) = next else { break };
            let (Ack::Committed(n) | Ack::Failed(n)) = ack;
            failed |= matches!(ack, Ack::Failed(_));
            while self.pipeline.front().is_some_and(|(batch, _)| *batch <= n) {
                self.pipeline.pop_front();
            }
            for room in self.rooms.iter_mut() {
                room.committed(n);
            }
        }
        if failed {
            self.epoch = next(self.epoch);
            if let Err(e) = self.reload() {
                tracing::error!(error = %e, "reload the ledger view after a failed commit");
            }
        }
    }

    /// Applies one batch into a transaction for the committer. Returns `None` when the batch
    /// failed and its callers were already answered.
    pub(super) fn batch_apply(
        &mut self,
        batch: &mut Vec<Submission>,
        acks: &std::sync::mpsc::Receiver<Ack>,
    ) -> Option<ToCommit> {
        let started = Instant::now();
        self.metrics.wallet_batch_ops.observe(batch.len() as f64);
        if self.view.balances.len() > CACHED_BALANCES_MAX || self.rooms.cached() > CACHED_ROOM_RECORDS_MAX {
            // Only once nothing in flight depends on the view.
            self.acks_take(acks, true);
            self.view.balances.clear();
            for room in self.rooms.iter_mut() {
                room.forget();
            }
        }
        loop {
            self.batch = next(self.batch);
            let tried = self.batch_try(batch);
            self.metrics.wallet_stage(Stage::Applied, started);
            match tried {
                Ok((tx, answers)) => return Some(self.hand_on(tx, answers, batch)),
                Err(BatchFailure::Panicked { index, message }) => {
                    let poisoned = batch.remove(index);
                    self.poisoned(poisoned, message, acks);
                    if batch.is_empty() {
                        return None;
                    }
                    // The rest of the batch is applied again, without it: nothing else is lost.
                }
                Err(BatchFailure::Store(e)) => return self.batch_failed(batch, e, acks),
            }
        }
    }

    /// A command panicked while it was applied. Its batch's transaction was dropped unwritten;
    /// the view, which may hold part of it, is reloaded once nothing in flight needs it. The
    /// command is refused (`INTERNAL_REFUSAL`) and that refusal recorded under its key, so a
    /// retry replays the refusal rather than the panic; then the writer's fault is raised, so
    /// the cell stops being ready, fails over and exits non-zero for its supervisor.
    pub(super) fn poisoned(
        &mut self,
        mut poisoned: Submission,
        message: String,
        acks: &std::sync::mpsc::Receiver<Ack>,
    ) {
        tracing::error!(
            op = poisoned.job.kind(),
            key = poisoned.key.as_ref().map(|k| k.key.as_str()),
            panic = %message,
            "the ledger writer panicked applying a command: it is refused and the cell stops"
        );
        self.acks_take(acks, true);
        self.epoch = next(self.epoch);
        let refusal = Failed::<std::convert::Infallible>::Internal(message.clone());
        let recorded = self.reload().and_then(|()| match &poisoned.key {
            Some(key) => {
                let body = serde_json::to_string(&refusal.body()).expect("an error body serialises");
                let at = self.clock.now().timestamp();
                let record = IdempotencyRecord { request_hash: key.request_hash, status: refusal.status(), body, at };
                let mut tx = self.store.begin()?;
                tx.set(&keys::idempotency(&key.key), &record.encode())?;
                tx.commit().map(|_| ())
            }
            None => Ok(()),
        });
        match recorded {
            Ok(()) => poisoned.job.fail(refusal),
            Err(e) => {
                tracing::error!(error = %e, "record the refusal of the command that panicked");
                poisoned.job.fail(store_failed(&e));
            }
        }
        // The fault first: whoever hears of the refusal must find the cell already not ready.
        self.fault.raise(format!("the ledger writer panicked applying a {} command: {message}", poisoned.job.kind()));
        poisoned.job.send(Ok(()));
    }

    /// The store failed a batch: its callers are told to retry with their keys.
    pub(super) fn batch_failed(
        &mut self,
        batch: &mut Vec<Submission>,
        e: StoreError,
        acks: &std::sync::mpsc::Receiver<Ack>,
    ) -> Option<ToCommit> {
        tracing::error!(error = %e, ops = batch.len(), "ledger batch failed");
        for mut submission in batch.drain(..) {
            submission.job.fail(store_failed(&e));
            submission.job.send(Ok(()));
        }
        // The view may hold part of the batch: forget it once nothing in flight needs it.
        self.acks_take(acks, true);
        self.epoch = next(self.epoch);
        if let Err(e) = self.reload() {
            tracing::error!(error = %e, "reload the ledger view after a failed batch");
        }
        None
    }
}
