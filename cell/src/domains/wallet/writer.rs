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
//!
//! Here: the writer's state and its ledger core (the view, postings, house accounts, events).
//! [`pipeline`]: the three threads, batches, panics and epochs. [`wallet_ops`]: credit, debit,
//! hold and settle. [`game_rounds`]: providers' rounds (the gaming domain's, until the money
//! kernel gives it a room of its own). [`reads`]: what is read from the store outside the writer.

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
mod pipeline;
mod reads;
mod wallet_ops;

pub(super) use game_rounds::game_rounds_open_before;
use pipeline::panic_message;
pub(super) use reads::{balance_as_of, balance_read, ledger_totals};

use super::{keys, ledger_add, ledger_sub, Command, Fault, PlayerBalances, SettlePart, WalletError};
use crate::audit::AuditChain;
use crate::clock::Clock;
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
    // ---- loading the view ----------------------------------------------------------------

    fn player_known(&mut self, tx: &mut dyn Transaction, player: &PlayerId) -> Result<bool, StoreError> {
        if self.cache.players.contains(player) {
            return Ok(true);
        }
        let known = crate::players::get(tx, player)?.is_some();
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
}
