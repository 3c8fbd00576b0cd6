//! The writer's pipeline: the writer thread takes batches from its queue and applies them into
//! one transaction each (catching a panic per operation), the commit thread commits them in order,
//! the durability thread answers each batch once it is durable; a failed commit or batch makes
//! the writer reload its view in a new epoch.

use super::reads::sequence_decode;
use super::*;

/// An applied batch on its way to the committer.
pub(super) struct ToCommit {
    batch: u64,
    epoch: u64,
    tx: Box<dyn Transaction>,
    replies: Vec<Reply>,
    /// When the writer handed it on, for the `waited_commit` stage metric.
    handed: Instant,
}

/// What the committer tells the writer about each batch, in order.
pub(super) enum Ack {
    Committed(u64),
    Failed(u64),
}

/// A committed batch waiting to be durable, with the answers it will release.
pub(super) struct InFlight {
    pending: Box<dyn PendingCommit>,
    replies: Vec<Reply>,
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

/// The JSON body of a refusal, as answered and as stored under its key.
pub(super) fn refusal_body(refused: &WalletError) -> String {
    let body = contracts::ErrorBody { code: refused.code().to_owned(), message: refused.to_string() };
    serde_json::to_string(&body).expect("an error body serialises")
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
                if durable.send(InFlight { pending, replies: c.replies, handed: Instant::now() }).is_err() {
                    return;
                }
            }
            Err(e) => {
                tracing::error!(error = %e, batch = c.batch, "wallet batch commit failed");
                failed_epoch = Some(c.epoch);
                for (reply, _) in c.replies {
                    let _ = reply.send(Err(WalletError::Unavailable(e.to_string())));
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
        for (reply, result) in flight.replies {
            let result = match &durable {
                Ok(_) => result,
                // The batch is in the journal but not known durable: the callers retry with their
                // keys, and get the stored answer if it did reach the disk.
                Err(e) => Err(WalletError::Unavailable(e.to_string())),
            };
            let _ = reply.send(result);
        }
    }
}

impl Writer {
    /// Drops the view and reloads what the writer keeps across batches from the store.
    pub(super) fn reload(&mut self) -> Result<(), StoreError> {
        self.cache = Cache::default();
        let mut tx = self.store.begin()?;
        let (seq, last_us) = match tx.get(&keys::sequence())? {
            Some(bytes) => sequence_decode(&bytes)?,
            None => (0, None),
        };
        self.seq = seq;
        // The journal's order is its keys' (timestamp, sequence): a clock set back across a
        // restart must not stamp new entries before the old ones.
        if let Some(us) = last_us {
            let last = DateTime::<Utc>::from_timestamp_micros(us)
                .ok_or_else(|| StoreError::Io(format!("the journal's last timestamp ({us} µs) is out of range")))?;
            let ahead = last.signed_duration_since(self.clock.now());
            if ahead > chrono::Duration::minutes(1) {
                tracing::warn!(
                    ahead_s = ahead.num_seconds(),
                    "the journal's last entry is stamped ahead of this clock: new entries take its \
                     timestamp until the clock catches up"
                );
            }
            self.last_ts = self.last_ts.max(last);
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
            .name("wallet-durable".into())
            .spawn(move || answer_when_durable(in_flight, &metrics))
            .expect("spawn the wallet's durability thread");
        let committer = std::thread::Builder::new()
            .name("wallet-commit".into())
            .spawn(move || commit_in_order(commits, to_durable, ack, &commit_metrics))
            .expect("spawn the wallet's commit thread");
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
                self.fault.raise(format!("the wallet {name} thread panicked: {}", panic_message(panic.as_ref())));
            }
        }
        tracing::info!("wallet writer stopped: no more submissions");
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
            self.cache.rounds.retain(|_, r| !(r.settled && r.written_in <= n));
            self.cache.games.retain(|_, g| !g.evictable(n));
        }
        if failed {
            self.epoch = next(self.epoch);
            if let Err(e) = self.reload() {
                tracing::error!(error = %e, "reload the wallet view after a failed commit");
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
        if self.cache.balances.len() > CACHED_BALANCES_MAX
            || self.cache.rounds.len() > CACHED_ROUNDS_MAX
            || self.cache.games.len() > CACHED_ROUNDS_MAX
        {
            // Only once nothing in flight depends on the view.
            self.acks_take(acks, true);
            self.cache.balances.clear();
            self.cache.rounds.clear();
            self.cache.games.clear();
        }
        loop {
            self.batch = next(self.batch);
            let tried = self.batch_try(batch);
            self.metrics.wallet_stage(Stage::Applied, started);
            match tried {
                Ok((tx, results, answers)) => {
                    self.pipeline.push_back((self.batch, answers));
                    let replies = batch.drain(..).map(|s| s.reply).zip(results).collect();
                    return Some(ToCommit {
                        batch: self.batch,
                        epoch: self.epoch,
                        tx,
                        replies,
                        handed: Instant::now(),
                    });
                }
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

    /// An operation panicked while it was applied. Its batch's transaction was dropped unwritten;
    /// the view, which may hold part of it, is reloaded once nothing in flight needs it. The
    /// operation is refused (`INTERNAL_REFUSAL`) and that refusal recorded under its key, so a
    /// retry replays the refusal rather than the panic; then the writer's fault is raised, so
    /// the cell stops being ready, fails over and exits non-zero for its supervisor.
    pub(super) fn poisoned(&mut self, poisoned: Submission, message: String, acks: &std::sync::mpsc::Receiver<Ack>) {
        tracing::error!(
            op = poisoned.command.kind(),
            key = poisoned.key.as_ref().map(|k| k.key.as_str()),
            panic = %message,
            "the wallet writer panicked applying an operation: it is refused and the cell stops"
        );
        self.acks_take(acks, true);
        self.epoch = next(self.epoch);
        let refusal = WalletError::InternalRefusal(message.clone());
        let recorded = self.reload().and_then(|()| match &poisoned.key {
            Some(key) => {
                let record = IdempotencyRecord {
                    request_hash: key.request_hash,
                    status: refusal.status(),
                    body: refusal_body(&refusal),
                };
                let mut tx = self.store.begin()?;
                tx.set(&keys::idempotency(&key.key), &record.encode())?;
                tx.commit().map(|_| ())
            }
            None => Ok(()),
        });
        let answer = match recorded {
            Ok(()) => Err(refusal),
            Err(e) => {
                tracing::error!(error = %e, "record the refusal of the operation that panicked");
                Err(WalletError::Unavailable(e.to_string()))
            }
        };
        let _ = poisoned.reply.send(answer);
        self.fault
            .raise(format!("the wallet writer panicked applying a {} operation: {message}", poisoned.command.kind()));
    }

    /// The store failed a batch: its callers are told to retry with their keys.
    pub(super) fn batch_failed(
        &mut self,
        batch: &mut Vec<Submission>,
        e: StoreError,
        acks: &std::sync::mpsc::Receiver<Ack>,
    ) -> Option<ToCommit> {
        tracing::error!(error = %e, ops = batch.len(), "wallet batch failed");
        let err = WalletError::Unavailable(e.to_string());
        for submission in batch.drain(..) {
            // A caller that gave up waiting is no reason to stop.
            let _ = submission.reply.send(Err(err.clone()));
        }
        // The view may hold part of the batch: forget it once nothing in flight needs it.
        self.acks_take(acks, true);
        self.epoch = next(self.epoch);
        if let Err(e) = self.reload() {
            tracing::error!(error = %e, "reload the wallet view after a failed batch");
        }
        None
    }

    /// Applies every operation of the batch into one transaction, and writes what the batch
    /// changed in the view.
    #[allow(clippy::type_complexity)]
    pub(super) fn batch_try(
        &mut self,
        batch: &[Submission],
    ) -> Result<(Box<dyn Transaction>, Vec<Outcome>, HashMap<String, IdempotencyRecord>), BatchFailure> {
        // Snapshot reads: this thread alone writes the wallet, and a player record is never
        // rewritten, so nothing another transaction commits can invalidate what a batch read.
        let mut tx = self.store.begin_snapshot_reads()?;
        let mut b = Batch::new(self.chain, self.clock.now().max(self.last_ts));
        let mut results = Vec::with_capacity(batch.len());
        for (index, s) in batch.iter().enumerate() {
            // A panic is caught here, per operation, so it costs that operation alone (see
            // `poisoned`); the batch's transaction is dropped with whatever it held.
            let applied = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.apply(tx.as_mut(), &mut b, s)));
            match applied {
                Ok(outcome) => results.push(outcome?),
                Err(panic) => return Err(BatchFailure::Panicked { index, message: panic_message(panic.as_ref()) }),
            }
        }
        for key in &b.dirty_balances {
            let balances = self.cache.balances[key];
            balances.assert_valid(&key.0);
            tx.set(&keys::balance(&key.0, key.1), &encode(&balances))?;
        }
        for round in &b.dirty_rounds {
            let state = self.cache.rounds.get_mut(round).expect("a dirty round is in the view");
            state.written_in = self.batch;
            tx.set(&keys::round(round), &encode(&*state))?;
        }
        for key in &b.dirty_games {
            let state = self.cache.games.get_mut(key).expect("a dirty game round is in the view");
            state.written_in = self.batch;
            tx.set(&keys::game_round(&key.0, &key.1), &encode(&*state))?;
        }
        for key in &b.dirty_house {
            tx.set(&keys::house(key.0.name(), key.1), &encode(&self.cache.house[key]))?;
        }
        tx.set(&keys::sequence(), &encode(&(self.seq, self.last_ts.timestamp_micros())))?;
        if b.chain != self.chain {
            b.chain.write_head(tx.as_mut())?;
            self.chain = b.chain;
        }
        Ok((tx, results, b.answers))
    }

    pub(super) fn apply(
        &mut self,
        tx: &mut dyn Transaction,
        b: &mut Batch,
        s: &Submission,
    ) -> Result<Result<Answer, WalletError>, StoreError> {
        if let Some(key) = &s.key {
            let in_flight = || self.pipeline.iter().rev().find_map(|(_, answers)| answers.get(&key.key));
            let earlier = match b.answers.get(&key.key).or_else(in_flight) {
                Some(record) => Some(record.clone()),
                None => match tx.get(&keys::idempotency(&key.key))? {
                    Some(bytes) => Some(
                        IdempotencyRecord::decode(&bytes)
                            .map_err(|e| StoreError::Io(format!("decode idempotency record: {e}")))?,
                    ),
                    None => None,
                },
            };
            if let Some(record) = earlier {
                return Ok(record.replay_for(key).ok_or(WalletError::IdempotencyKeyReused));
            }
        }
        let body = match &s.command {
            Command::Credit { player, money, reason } => self.movement(tx, b, &s.ctx, player, *money, *reason, true)?,
            Command::Debit { player, money, reason } => self.movement(tx, b, &s.ctx, player, *money, *reason, false)?,
            Command::Hold { player, round, bet, money } => self.hold(tx, b, &s.ctx, player, round, bet, *money)?,
            Command::Settle { round, parts } => self.settle(tx, b, &s.ctx, round, parts)?,
            Command::Game(game) => self.game(tx, b, &s.ctx, game)?,
        };
        // A decision, accepted or refused, is recorded under the key, so a retry gets the same
        // answer (as Stripe does): a new attempt after a refusal takes a new key. A transient
        // refusal (a provider in maintenance) is not a decision about the request: not recorded.
        let (status, body, result) = match body {
            Ok(body) => (200, body, Ok(())),
            Err(refused) if refused.is_transient() => return Ok(Err(refused)),
            Err(refused) => (refused.status(), refusal_body(&refused), Err(refused)),
        };
        let answer = Answer { status, body: body.clone().into(), replayed: false };
        if let Some(key) = &s.key {
            let record = IdempotencyRecord { request_hash: key.request_hash, status, body };
            tx.set(&keys::idempotency(&key.key), &record.encode())?;
            b.answers.insert(key.key.clone(), record);
        }
        Ok(result.map(|()| answer))
    }
}
