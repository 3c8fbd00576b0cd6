//! The wallet's single writer: one thread that owns every change to money in this cell.
//!
//! It takes the operations waiting in its queue (up to `batch_ops_max`), applies each in order
//! against its in-memory view of balances and rounds (loaded from the store on first use), and
//! writes each operation's journal entry, idempotency record and event into one store transaction
//! for the batch. An operation is atomic: it is checked in full before it changes anything, so a
//! refused operation leaves no trace.
//!
//! Three threads form a pipeline, so the writer applies batch N+1 while batch N is written to the
//! store and batch N-1 syncs:
//! - the **writer** applies batches and hands each transaction on;
//! - the **committer** commits them in order (`commit_pipelined`) and tells the writer;
//! - the **durability** thread waits for each commit to be durable, then answers its operations.
//!
//! Nothing is answered before it is durable. Batch N+1's transaction begins before batch N is in
//! the store, which is safe because everything N wrote that N+1 could need is in the writer's view:
//! balances, rounds and house accounts are cached until N is committed, and N's idempotency answers
//! stay in memory until then. If a commit fails, the committer refuses every later batch of the
//! same epoch, the writer waits for the pipeline to empty, reloads its view from the store and
//! starts a new epoch; the refused callers retry with their keys.
//!
//! Because only this thread writes the wallet subspace, a hot house account costs nothing extra:
//! its balance is updated in memory and written once per batch.

/// Unwraps a checked step of an operation, or answers its refusal. Every operation checks
/// everything before it changes anything, so a refusal here leaves no trace.
macro_rules! or_refuse {
    ($checked:expr) => {
        match $checked {
            Ok(value) => value,
            Err(refused) => return Ok(Err(refused)),
        }
    };
}

mod game_rounds;

pub(super) use game_rounds::game_rounds_open_before;

use super::{keys, ledger_add, ledger_sub, Command, Fault, PlayerBalances, SettlePart, WalletError};
use crate::audit::AuditChain;
use crate::clock::Clock;
use crate::domains::compliance;
use crate::events::{self, EventContext};
use crate::idempotency::{Answer, IdempotencyKey, IdempotencyRecord};
use crate::metrics::{Metrics, Stage};
use crate::store::{PendingCommit, Store, StoreError, Transaction};
use chrono::{DateTime, Utc};
use contracts::events::{SettledPart, WalletCredited, WalletDebited, WalletHold, WalletSettled};
use contracts::wallet::{Balance, HoldResponse, MovementResponse, SettleResponse};
use contracts::{Amount, BetId, Currency, Money, PlayerId, RoundId};
use rust_decimal::Decimal;
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};

/// Tuning of the writer.
#[derive(Debug, Clone, Copy)]
pub struct WriterConfig {
    /// Most operations per store commit. Bounded by the store's 10 MB transaction limit (an
    /// operation writes well under 2 kB) and by the 65,536 events one commit can order.
    pub batch_ops_max: usize,
    /// Operations that may wait for the writer; callers wait (back-pressure) beyond it.
    pub queue_ops_max: usize,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig { batch_ops_max: 2_048, queue_ops_max: 16_384 }
    }
}

/// Batches committed but not yet durable at once: the writer applies the next batch while these
/// sync. A few are enough to keep the disk busy; more would only hold more answers back.
const PIPELINE_BATCHES_MAX: usize = 4;
/// Cached balances kept between batches before the cache is dropped and reloaded on demand.
const CACHED_BALANCES_MAX: usize = 1_000_000;
/// Open rounds cached between batches, likewise.
const CACHED_ROUNDS_MAX: usize = 200_000;

/// House accounts: the platform's side of every entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum House {
    /// Stakes lost and payouts won: game revenue.
    GameRevenue,
    /// Money in transit with payment providers: the other side of deposits and withdrawals.
    PspClearing,
}

impl House {
    fn name(self) -> &'static str {
        match self {
            House::GameRevenue => "game_revenue",
            House::PspClearing => "psp_clearing",
        }
    }
}

pub(super) struct Submission {
    pub command: Command,
    /// `None` for commands idempotent by their own checks: nothing stored, nothing replayed.
    pub key: Option<IdempotencyKey>,
    pub ctx: EventContext,
    pub reply: oneshot::Sender<Result<Answer, WalletError>>,
    /// When the caller submitted it, for the `queued` stage metric.
    pub submitted: Instant,
}

/// An open hold, as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Hold {
    hold_id: String,
    player: PlayerId,
    bet: BetId,
    currency: String,
    amount: Decimal,
}

/// A round as stored: one record, so loading a round is one point read and a batch writes each
/// round it touched once.
#[derive(Debug, Default, Serialize, Deserialize)]
struct RoundState {
    settled: bool,
    holds: Vec<Hold>,
    /// The last batch that wrote this round; a settled round leaves the view once that batch is
    /// in the store.
    #[serde(skip)]
    written_in: u64,
}

/// Most bets one round may hold open: a busy live table, and a round record well under the
/// store's 100 kB value limit (a hold encodes to about 100 bytes).
pub const ROUND_HOLDS_MAX: usize = 500;

/// One journal record: an operation's postings for one player, with the balances after it.
#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    seq: u64,
    ts: DateTime<Utc>,
    kind: String,
    reference: String,
    currency: String,
    /// (debit account, credit account, amount): each posting moves `amount` from one to the other.
    postings: Vec<(String, String, Decimal)>,
    after: PlayerBalances,
}

/// The writer's view of the wallet, authoritative for everything it holds.
#[derive(Default)]
struct Cache {
    balances: HashMap<(PlayerId, Currency), PlayerBalances>,
    house: HashMap<(House, Currency), Decimal>,
    rounds: HashMap<RoundId, RoundState>,
    /// Providers' rounds, by (provider, round).
    games: HashMap<(String, RoundId), game_rounds::GameRound>,
    players: HashSet<PlayerId>,
}

/// What one batch has changed, written just before its commit.
struct Batch {
    dirty_balances: HashSet<(PlayerId, Currency)>,
    dirty_house: HashSet<(House, Currency)>,
    dirty_rounds: HashSet<RoundId>,
    dirty_games: HashSet<(String, RoundId)>,
    answers: HashMap<String, IdempotencyRecord>,
    events: u16,
    /// The audit chain's end as this batch leaves it: every event is appended to it.
    chain: AuditChain,
    /// When the batch was applied: its events' time.
    at: DateTime<Utc>,
}

impl Batch {
    fn new(chain: AuditChain, at: DateTime<Utc>) -> Batch {
        Batch {
            at,
            dirty_balances: HashSet::default(),
            dirty_house: HashSet::default(),
            dirty_rounds: HashSet::default(),
            dirty_games: HashSet::default(),
            answers: HashMap::default(),
            events: 0,
            chain,
        }
    }
}

/// What an operation answers.
type Outcome = Result<Answer, WalletError>;
/// Where an operation's outcome goes, and the outcome.
type Reply = (oneshot::Sender<Outcome>, Outcome);

/// An applied batch on its way to the committer.
struct ToCommit {
    batch: u64,
    epoch: u64,
    tx: Box<dyn Transaction>,
    replies: Vec<Reply>,
    /// When the writer handed it on, for the `waited_commit` stage metric.
    handed: Instant,
}

/// What the committer tells the writer about each batch, in order.
enum Ack {
    Committed(u64),
    Failed(u64),
}

/// A committed batch waiting to be durable, with the answers it will release.
struct InFlight {
    pending: Box<dyn PendingCommit>,
    replies: Vec<Reply>,
    /// When the committer handed it on, for the `waited_sync` stage metric.
    handed: Instant,
}

/// Why a batch could not be applied.
enum BatchFailure {
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
fn next(counter: u64) -> u64 {
    counter.checked_add(1).expect("a batch or epoch counter never wraps")
}

/// A panic's message, as `std` prints it.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    match (panic.downcast_ref::<&str>(), panic.downcast_ref::<String>()) {
        (Some(text), _) => (*text).to_owned(),
        (_, Some(text)) => text.clone(),
        _ => "a panic without a message".to_owned(),
    }
}

/// The JSON body of a refusal, as answered and as stored under its key.
fn refusal_body(refused: &WalletError) -> String {
    let body = contracts::ErrorBody { code: refused.code().to_owned(), message: refused.to_string() };
    serde_json::to_string(&body).expect("an error body serialises")
}

struct Writer {
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    /// Raised when this writer fails: the cell then stops being ready and exits.
    fault: Fault,
    clock: Arc<dyn Clock>,
    cache: Cache,
    /// Last journal sequence number used.
    seq: u64,
    /// The audit chain's end after the last batch applied.
    chain: AuditChain,
    /// Journal timestamps never go backwards, whatever the wall clock does.
    last_ts: DateTime<Utc>,
    /// Number of the last batch applied.
    batch: u64,
    /// Bumped when a failed commit forces a reload; the committer refuses the rest of an epoch.
    epoch: u64,
    /// Batches handed to the committer and not yet acknowledged, with their idempotency answers.
    pipeline: VecDeque<(u64, HashMap<String, IdempotencyRecord>)>,
}

pub(super) fn spawn(
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    config: WriterConfig,
    fault: Fault,
    clock: Arc<dyn Clock>,
) -> Result<(mpsc::Sender<Submission>, std::thread::JoinHandle<()>), StoreError> {
    let (sender, receiver) = mpsc::channel(config.queue_ops_max);
    let mut writer = Writer {
        store,
        metrics,
        fault: fault.clone(),
        clock,
        cache: Cache::default(),
        seq: 0,
        chain: AuditChain::default(),
        last_ts: DateTime::<Utc>::MIN_UTC,
        batch: 0,
        epoch: 0,
        pipeline: VecDeque::new(),
    };
    writer.reload()?;
    let handle = std::thread::Builder::new()
        .name("wallet-writer".into())
        .spawn(move || {
            // A panic that escapes one operation's (see `batch_apply`) ends the writer: never
            // silently, the cell stops being ready and exits non-zero.
            let run = std::panic::AssertUnwindSafe(move || writer.run(receiver, config));
            if let Err(panic) = std::panic::catch_unwind(run) {
                fault.raise(format!("the wallet writer panicked: {}", panic_message(panic.as_ref())));
            }
        })
        .map_err(|e| StoreError::Io(format!("spawn wallet writer: {e}")))?;
    Ok((sender, handle))
}

/// The commit thread: commits batches in order, hands each to the durability thread, and tells the
/// writer. After a failure it refuses the rest of that epoch: those batches were applied on top of
/// one that is not in the store.
fn commit_in_order(
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
fn answer_when_durable(in_flight: std::sync::mpsc::Receiver<InFlight>, metrics: &Metrics) {
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

fn decode<T: for<'de> Deserialize<'de>>(what: &str, bytes: &[u8]) -> Result<T, StoreError> {
    rmp_serde::from_slice(bytes).map_err(|e| StoreError::Io(format!("decode {what}: {e}")))
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Sized for a typical record up front: growing the buffer was a visible share of the
    // writer's time.
    let mut buf = Vec::with_capacity(256);
    rmp_serde::encode::write(&mut buf, value).expect("wallet records always encode");
    buf
}

/// The journal's last sequence number and, unless the store was written before it was kept, the
/// last entry's timestamp in microseconds.
fn sequence_decode(bytes: &[u8]) -> Result<(u64, Option<i64>), StoreError> {
    // A two-element MessagePack array (0x92) since the timestamp is kept; a bare integer before.
    if bytes.first() == Some(&0x92) {
        let (seq, last_us) = decode("sequence", bytes)?;
        Ok((seq, Some(last_us)))
    } else {
        Ok((decode("sequence", bytes)?, None))
    }
}

/// Reads a player's stored balances (zero if none) and checks them.
pub(super) fn balance_read(
    tx: &mut dyn Transaction,
    player: &PlayerId,
    currency: Currency,
) -> Result<PlayerBalances, StoreError> {
    let balances = match tx.get(&keys::balance(player, currency))? {
        Some(bytes) => decode("balance", &bytes)?,
        None => PlayerBalances::default(),
    };
    balances.assert_valid(player);
    Ok(balances)
}

/// A player's balances as of `instant`: those recorded by their last entry at or before it.
pub(super) fn balance_as_of(
    tx: &mut dyn Transaction,
    player: &PlayerId,
    currency: Currency,
    instant: DateTime<Utc>,
) -> Result<PlayerBalances, StoreError> {
    let (begin, end) = keys::entries_until(player, currency, instant.timestamp_micros());
    let last = tx.get_range(&begin, &end, 1, true)?;
    match last.first() {
        Some((_, bytes)) => {
            let entry: Entry = decode("entry", bytes)?;
            entry.after.assert_valid(player);
            Ok(entry.after)
        }
        None => Ok(PlayerBalances::default()),
    }
}

/// Sum of every balance, player and house, per currency.
pub(super) fn ledger_totals(store: &dyn Store) -> Result<BTreeMap<Currency, Decimal>, StoreError> {
    let mut totals: BTreeMap<Currency, Decimal> = BTreeMap::new();
    let mut tx = store.begin()?;
    let wallet = crate::store::subspaces::wallet();
    let (begin, end) = keys::balances_range();
    for (key, value) in tx.get_range(&begin, &end, usize::MAX, false)? {
        let (_, _, code): (String, String, String) = wallet.unpack(&key).map_err(|e| StoreError::Io(e.to_string()))?;
        let b: PlayerBalances = decode("balance", &value)?;
        let currency = Currency::from_code(&code).map_err(|e| StoreError::Io(e.to_string()))?;
        total_add(&mut totals, currency, b.cash)?;
        total_add(&mut totals, currency, b.bonus)?;
        total_add(&mut totals, currency, b.held)?;
    }
    let (begin, end) = keys::house_range();
    for (key, value) in tx.get_range(&begin, &end, usize::MAX, false)? {
        let (_, _, code): (String, String, String) = wallet.unpack(&key).map_err(|e| StoreError::Io(e.to_string()))?;
        let amount: Decimal = decode("house balance", &value)?;
        let currency = Currency::from_code(&code).map_err(|e| StoreError::Io(e.to_string()))?;
        total_add(&mut totals, currency, amount)?;
    }
    Ok(totals)
}

/// Adds `amount` to `currency`'s total, exactly: a sum the ledger cannot hold means a stored
/// balance is out of every bound, which only a damaged store can do.
fn total_add(totals: &mut BTreeMap<Currency, Decimal>, currency: Currency, amount: Decimal) -> Result<(), StoreError> {
    let total = totals.entry(currency).or_default();
    *total = ledger_add(*total, amount).map_err(|_| {
        StoreError::Io(format!("the {currency} ledger totals are past every bound: a stored balance is damaged"))
    })?;
    Ok(())
}

fn wire_balance(player: &PlayerId, currency: Currency, b: &PlayerBalances) -> Balance {
    let s = currency.scale();
    Balance {
        player_id: player.clone(),
        currency,
        cash: Amount::at_scale(b.cash, s),
        bonus: Amount::at_scale(b.bonus, s),
        held: Amount::at_scale(b.held, s),
    }
}

fn cash(p: &PlayerId) -> String {
    format!("cash:{p}")
}

fn held(p: &PlayerId) -> String {
    format!("held:{p}")
}

fn house(h: House) -> String {
    format!("house:{}", h.name())
}

impl Writer {
    /// Drops the view and reloads what the writer keeps across batches from the store.
    fn reload(&mut self) -> Result<(), StoreError> {
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

    fn run(mut self, mut receiver: mpsc::Receiver<Submission>, config: WriterConfig) {
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
    fn acks_take(&mut self, acks: &std::sync::mpsc::Receiver<Ack>, drain: bool) {
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
    fn batch_apply(&mut self, batch: &mut Vec<Submission>, acks: &std::sync::mpsc::Receiver<Ack>) -> Option<ToCommit> {
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
    fn poisoned(&mut self, poisoned: Submission, message: String, acks: &std::sync::mpsc::Receiver<Ack>) {
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
    fn batch_failed(
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
    fn batch_try(
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

    fn apply(
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

    // ---- loading the view ----------------------------------------------------------------

    fn player_known(&mut self, tx: &mut dyn Transaction, player: &PlayerId) -> Result<bool, StoreError> {
        if self.cache.players.contains(player) {
            return Ok(true);
        }
        let known = compliance::player_get(tx, player)?.is_some();
        if known {
            self.cache.players.insert(player.clone());
        }
        Ok(known)
    }

    fn balances(
        &mut self,
        tx: &mut dyn Transaction,
        player: &PlayerId,
        currency: Currency,
    ) -> Result<PlayerBalances, StoreError> {
        let key = (player.clone(), currency);
        if let Some(b) = self.cache.balances.get(&key) {
            return Ok(*b);
        }
        let b = balance_read(tx, player, currency)?;
        self.cache.balances.insert(key, b);
        Ok(b)
    }

    fn house_balance(
        &mut self,
        tx: &mut dyn Transaction,
        account: House,
        currency: Currency,
    ) -> Result<Decimal, StoreError> {
        if let Some(v) = self.cache.house.get(&(account, currency)) {
            return Ok(*v);
        }
        let v = match tx.get(&keys::house(account.name(), currency))? {
            Some(bytes) => decode("house balance", &bytes)?,
            None => Decimal::ZERO,
        };
        self.cache.house.insert((account, currency), v);
        Ok(v)
    }

    fn round(&mut self, tx: &mut dyn Transaction, round: &RoundId) -> Result<&mut RoundState, StoreError> {
        if !self.cache.rounds.contains_key(round) {
            let state = match tx.get(&keys::round(round))? {
                Some(bytes) => decode("round", &bytes)?,
                None => RoundState::default(),
            };
            self.cache.rounds.insert(round.clone(), state);
        }
        Ok(self.cache.rounds.get_mut(round).expect("inserted above"))
    }

    // ---- changing it -----------------------------------------------------------------------

    fn next_entry(&mut self) -> (u64, DateTime<Utc>) {
        // At a million entries a second, u64 lasts 584,000 years.
        self.seq = self.seq.checked_add(1).expect("the journal sequence never wraps");
        self.last_ts = self.clock.now().max(self.last_ts);
        (self.seq, self.last_ts)
    }

    /// Sets a player's balances in the view and journals the postings that got them there.
    #[allow(clippy::too_many_arguments)]
    fn post(
        &mut self,
        tx: &mut dyn Transaction,
        b: &mut Batch,
        player: &PlayerId,
        currency: Currency,
        after: PlayerBalances,
        kind: &str,
        reference: String,
        postings: Vec<(String, String, Decimal)>,
    ) -> Result<u64, StoreError> {
        after.assert_valid(player);
        for (debit, credit, amount) in &postings {
            assert!(
                debit != credit && amount.is_sign_positive() && !amount.is_zero(),
                "malformed posting {debit} -> {credit}: {amount}"
            );
        }
        let (seq, ts) = self.next_entry();
        let entry =
            Entry { seq, ts, kind: kind.to_owned(), reference, currency: currency.code().to_owned(), postings, after };
        tx.set(&keys::entry(player, currency, ts.timestamp_micros(), seq), &encode(&entry))?;
        self.cache.balances.insert((player.clone(), currency), after);
        b.dirty_balances.insert((player.clone(), currency));
        Ok(seq)
    }

    /// Sets a house account's balance, computed (and checked) by the operation before it changed
    /// anything.
    fn house_set(&mut self, b: &mut Batch, account: House, currency: Currency, balance: Decimal) {
        self.cache.house.insert((account, currency), balance);
        b.dirty_house.insert((account, currency));
    }

    /// Appends an event to the audit chain and to the outbox, in the batch's transaction. The
    /// chain keeps the event's JSON; the outbox entry points at that record.
    fn event<P: contracts::events::EventPayload>(
        tx: &mut dyn Transaction,
        b: &mut Batch,
        ctx: &EventContext,
        payload: P,
    ) -> Result<(), StoreError> {
        let order = b.events;
        b.events = b.events.checked_add(1).expect("a batch orders at most 65,536 events");
        let json = events::encode(&events::envelope(ctx, payload, b.at));
        let record = b.chain.append(tx, json)?;
        events::append_chained(tx, order, record)
    }

    /// Credit (`inward`) or debit a player's cash against PSP clearing.
    #[allow(clippy::too_many_arguments)]
    fn movement(
        &mut self,
        tx: &mut dyn Transaction,
        b: &mut Batch,
        ctx: &EventContext,
        player: &PlayerId,
        money: Money,
        reason: contracts::wallet::MovementReason,
        inward: bool,
    ) -> Result<Result<String, WalletError>, StoreError> {
        if !self.player_known(tx, player)? {
            return Ok(Err(WalletError::PlayerNotFound(player.to_string())));
        }
        let currency = money.currency();
        let amount = money.amount();
        let after = self.balances(tx, player, currency)?;
        if !inward && after.cash < amount {
            return Ok(Err(WalletError::InsufficientFunds {
                player: player.to_string(),
                currency: currency.code(),
                available: Amount::at_scale(after.cash, currency.scale()).0,
                requested: Amount::at_scale(amount, currency.scale()).0,
            }));
        }
        let clearing = self.house_balance(tx, House::PspClearing, currency)?;
        let (kind, posting, signed) = if inward {
            ("credit", (house(House::PspClearing), cash(player), amount), amount)
        } else {
            ("debit", (cash(player), house(House::PspClearing), amount), -amount)
        };
        let after = or_refuse!(after.moved(player, currency, signed, Decimal::ZERO));
        let clearing = or_refuse!(ledger_sub(clearing, signed));
        let seq = self.post(tx, b, player, currency, after, kind, format!("{reason:?}"), vec![posting])?;
        self.house_set(b, House::PspClearing, currency, clearing);
        let (player_id, amount, entry_id) = (player.clone(), money.wire(), seq.to_string());
        if inward {
            Self::event(tx, b, ctx, WalletCredited { player_id, currency, amount, reason, entry_id })?;
        } else {
            Self::event(tx, b, ctx, WalletDebited { player_id, currency, amount, reason, entry_id })?;
        }
        let body = MovementResponse { balance: wire_balance(player, currency, &after) };
        Ok(Ok(serde_json::to_string(&body).expect("serialises")))
    }

    #[allow(clippy::too_many_arguments)]
    fn hold(
        &mut self,
        tx: &mut dyn Transaction,
        b: &mut Batch,
        ctx: &EventContext,
        player: &PlayerId,
        round: &RoundId,
        bet: &BetId,
        money: Money,
    ) -> Result<Result<String, WalletError>, StoreError> {
        if !self.player_known(tx, player)? {
            return Ok(Err(WalletError::PlayerNotFound(player.to_string())));
        }
        let state = self.round(tx, round)?;
        if state.settled {
            return Ok(Err(WalletError::RoundAlreadySettled(round.to_string())));
        }
        if state.holds.iter().any(|h| &h.bet == bet) {
            return Ok(Err(WalletError::BetAlreadyHeld { round: round.to_string(), bet: bet.to_string() }));
        }
        if state.holds.len() >= ROUND_HOLDS_MAX {
            return Ok(Err(WalletError::RoundFull { round: round.to_string(), holds_max: ROUND_HOLDS_MAX }));
        }
        let currency = money.currency();
        let before = self.balances(tx, player, currency)?;
        if before.cash < money.amount() {
            return Ok(Err(WalletError::InsufficientFunds {
                player: player.to_string(),
                currency: currency.code(),
                available: Amount::at_scale(before.cash, currency.scale()).0,
                requested: Amount::at_scale(money.amount(), currency.scale()).0,
            }));
        }
        let after = or_refuse!(before.moved(player, currency, -money.amount(), money.amount()));
        let postings = vec![(cash(player), held(player), money.amount())];
        let seq = self.post(tx, b, player, currency, after, "hold", format!("{round}/{bet}"), postings)?;
        let hold = Hold {
            hold_id: format!("h{seq}"),
            player: player.clone(),
            bet: bet.clone(),
            currency: currency.code().to_owned(),
            amount: money.amount(),
        };
        self.round(tx, round)?.holds.push(hold.clone());
        b.dirty_rounds.insert(round.clone());
        let payload = WalletHold {
            hold_id: hold.hold_id.clone(),
            player_id: player.clone(),
            round_id: round.clone(),
            bet_id: bet.clone(),
            currency,
            amount: money.wire(),
        };
        Self::event(tx, b, ctx, payload)?;
        let body = HoldResponse { hold_id: hold.hold_id, balance: wire_balance(player, currency, &after) };
        Ok(Ok(serde_json::to_string(&body).expect("serialises")))
    }

    fn settle(
        &mut self,
        tx: &mut dyn Transaction,
        b: &mut Batch,
        ctx: &EventContext,
        round: &RoundId,
        parts: &[SettlePart],
    ) -> Result<Result<String, WalletError>, StoreError> {
        // Check everything before changing anything.
        let state = self.round(tx, round)?;
        if state.settled {
            return Ok(Err(WalletError::RoundAlreadySettled(round.to_string())));
        }
        let mut taken = vec![false; state.holds.len()];
        let mut plan: Vec<(&SettlePart, Vec<usize>, Decimal)> = Vec::with_capacity(parts.len());
        for part in parts {
            let chosen: Vec<usize> = state
                .holds
                .iter()
                .enumerate()
                .filter(|(i, h)| {
                    !taken[*i] && h.player == part.player && part.bet.as_ref().is_none_or(|bet| &h.bet == bet)
                })
                .map(|(i, _)| i)
                .collect();
            if chosen.is_empty() {
                let already = state.holds.iter().enumerate().any(|(i, h)| taken[i] && h.player == part.player);
                if already {
                    return Ok(Err(WalletError::SettleOperationsInvalid));
                }
                return Ok(Err(WalletError::HoldNotFound {
                    player: part.player.to_string(),
                    round: round.to_string(),
                    bet: part.bet.as_ref().map(|b| b.to_string()),
                }));
            }
            let mut stake = Decimal::ZERO;
            for &i in &chosen {
                let h = &state.holds[i];
                if h.currency != part.delta.currency().code() {
                    let held = Currency::from_code(&h.currency).map(|c| c.code()).unwrap_or("???");
                    return Ok(Err(WalletError::SettleCurrencyMismatch {
                        player: part.player.to_string(),
                        held,
                        given: part.delta.currency().code(),
                    }));
                }
                taken[i] = true;
                stake = or_refuse!(ledger_add(stake, h.amount));
            }
            if part.delta.amount() < -stake {
                return Ok(Err(WalletError::DeltaBelowStake {
                    player: part.player.to_string(),
                    stake,
                    delta: part.delta.amount(),
                }));
            }
            plan.push((part, chosen, stake));
        }
        let unsettled: Vec<String> = state
            .holds
            .iter()
            .enumerate()
            .filter(|(i, _)| !taken[*i])
            .map(|(_, h)| format!("{}/{}", h.player, h.bet))
            .collect();
        if !unsettled.is_empty() {
            return Ok(Err(WalletError::RoundHoldsUnsettled {
                round: round.to_string(),
                players: unsettled.join(", "),
            }));
        }

        // The amounts, per part: the player's balances after it (after the player's earlier parts
        // in this settle) and game revenue's, each checked before anything changes.
        let mut amounts: Vec<(Decimal, PlayerBalances)> = Vec::with_capacity(plan.len());
        let mut revenue: Vec<(Currency, Decimal)> = Vec::new();
        for (i, (part, _, stake)) in plan.iter().enumerate() {
            let currency = part.delta.currency();
            let payout = or_refuse!(ledger_add(*stake, part.delta.amount()));
            let earlier = plan[..i]
                .iter()
                .zip(&amounts)
                .rev()
                .find(|((p, _, _), _)| p.player == part.player && p.delta.currency() == currency)
                .map(|(_, (_, after))| *after);
            let before = match earlier {
                Some(after) => after,
                None => self.balances(tx, &part.player, currency)?,
            };
            amounts.push((payout, or_refuse!(before.moved(&part.player, currency, payout, -*stake))));
            let house = match revenue.iter().position(|(c, _)| *c == currency) {
                Some(at) => at,
                None => {
                    revenue.push((currency, self.house_balance(tx, House::GameRevenue, currency)?));
                    revenue.len().saturating_sub(1)
                }
            };
            let balance = or_refuse!(ledger_add(revenue[house].1, *stake).and_then(|v| ledger_sub(v, payout)));
            revenue[house].1 = balance;
        }
        let state = self.round(tx, round)?;
        let holds = std::mem::take(&mut state.holds);
        state.settled = true;
        b.dirty_rounds.insert(round.clone());

        // Apply: per player, held -> game revenue (the stake), game revenue -> cash (the payout).
        let mut settled_parts = Vec::with_capacity(plan.len());
        let mut balances = Vec::with_capacity(plan.len());
        for ((part, chosen, stake), (payout, after)) in plan.into_iter().zip(amounts) {
            let currency = part.delta.currency();
            let mut postings = vec![(held(&part.player), house(House::GameRevenue), stake)];
            if !payout.is_zero() {
                postings.push((house(House::GameRevenue), cash(&part.player), payout));
            }
            self.post(tx, b, &part.player, currency, after, "settle", round.to_string(), postings)?;
            let bet_ids: Vec<BetId> = chosen.iter().map(|&i| holds[i].bet.clone()).collect();
            let s = currency.scale();
            settled_parts.push(SettledPart {
                player_id: part.player.clone(),
                currency,
                stake: Amount::at_scale(stake, s),
                payout: Amount::at_scale(payout, s),
                bet_ids,
            });
            balances.push(wire_balance(&part.player, currency, &after));
        }
        for (currency, balance) in revenue {
            self.house_set(b, House::GameRevenue, currency, balance);
        }
        Self::event(tx, b, ctx, WalletSettled { round_id: round.clone(), parts: settled_parts })?;
        let body = SettleResponse { balances };
        Ok(Ok(serde_json::to_string(&body).expect("serialises")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sequence_record_reads_with_its_timestamp_and_as_stored_before_it_had_one() {
        assert_eq!(sequence_decode(&encode(&(5u64, -7i64))).unwrap(), (5, Some(-7)));
        assert_eq!(sequence_decode(&encode(&5u64)).unwrap(), (5, None));
        assert!(sequence_decode(b"\xc1").is_err(), "bytes of neither form are an error, not sequence zero");
    }
}
