//! The wallet: a double-entry ledger of player cash, bonus and held money against house accounts,
//! per currency (DESIGN.md section 4).
//!
//! Every movement is an entry debiting one account and crediting another, so per currency all
//! balances sum to zero. Bets take two phases: `hold` moves a stake from cash to held; `settle`
//! releases a round's holds and posts the payouts, once. Nothing is rewritten: a correction is a
//! new entry.
//!
//! One writer for money: all mutations go through a single writer thread ([`writer`]) that applies
//! operations in order against its in-memory view and commits them in batches, each operation
//! atomic and acknowledged only once its batch is durable (as TigerBeetle does). Reads go to the
//! store directly.

// Money is summed here: an overflowing or rounding operator would panic the writer (a poison pill
// for every player of the cell) or silently round the books. Every sum goes through the checked
// `ledger_*` functions instead; the lint keeps a plain `+` from creeping back in.
#![deny(clippy::arithmetic_side_effects)]

mod keys;
mod writer;

use crate::events::EventContext;
use crate::idempotency::{Answer, IdempotencyKey};
use crate::metrics::Metrics;
use crate::store::{Store, StoreError};
use chrono::{DateTime, Utc};
use contracts::region::RegionConfig;
use contracts::wallet::{BalanceResponse, HoldRequest, MovementReason, MovementRequest, SettleRequest};
use contracts::{Amount, BetId, Currency, Money, MoneyError, PlayerId, RoundId};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

pub use writer::WriterConfig;

/// Most operations one settle may carry: bounds the transaction and the stored answer.
pub const SETTLE_OPERATIONS_MAX: usize = 500;

/// Why a wallet operation was refused. Each variant has a stable code and HTTP status.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WalletError {
    #[error("player {0} is not registered in this cell")]
    PlayerNotFound(String),
    #[error("player {player} has {available} {currency} cash, {requested} needed")]
    InsufficientFunds { player: String, currency: &'static str, available: Decimal, requested: Decimal },
    #[error("{0}")]
    Money(#[from] MoneyError),
    #[error("currency {currency} is not booked by this cell (it books {booked})")]
    CurrencyNotBooked { currency: &'static str, booked: String },
    #[error("bet {bet} of round {round} already has a hold")]
    BetAlreadyHeld { round: String, bet: String },
    #[error("round {round} already holds {holds_max} bets, the most one round may")]
    RoundFull { round: String, holds_max: usize },
    #[error("round {0} is already settled")]
    RoundAlreadySettled(String),
    #[error("player {player} has no open hold{} in round {round}", bet.as_ref().map(|b| format!(" for bet {b}")).unwrap_or_default())]
    HoldNotFound { player: String, round: String, bet: Option<String> },
    #[error("round {round} would keep open holds of {players}: a settle must release every hold")]
    RoundHoldsUnsettled { round: String, players: String },
    #[error("delta {delta} for player {player} is below minus the held stake {stake}")]
    DeltaBelowStake { player: String, stake: Decimal, delta: Decimal },
    #[error("player {player}'s hold is in {held}, the settle says {given}")]
    SettleCurrencyMismatch { player: String, held: &'static str, given: &'static str },
    #[error("settle must carry 1 to {SETTLE_OPERATIONS_MAX} operations, each hold at most once")]
    SettleOperationsInvalid,
    #[error("bet {bet} of round {round} was rolled back: it cannot be placed or paid")]
    BetRolledBack { round: String, bet: String },
    #[error("player {player} has no bet in round {round}")]
    BetNotFound { player: String, round: String },
    #[error("bet {bet} of round {round} is already settled")]
    BetAlreadySettled { round: String, bet: String },
    #[error("round {0} was voided after its timeout: its stakes were refunded")]
    RoundVoided(String),
    #[error("bet {bet} belongs to player {owner}, not {player}")]
    PlayerMismatch { bet: String, owner: String, player: String },
    #[error("bet {bet} of round {round} already had a payout credited: it can no longer be rolled back")]
    BetAlreadyPaid { round: String, bet: String },
    #[error("stake {stake} {currency} in this round is over the {max} {currency} limit of rule {rule} (policy {policy_version})")]
    StakeLimitExceeded { rule: String, policy_version: String, max: Decimal, stake: Decimal, currency: &'static str },
    #[error("provider {provider} is in maintenance ({reason}): new bets are refused, wins and rollbacks still settle")]
    ProviderMaintenance { provider: String, reason: String },
    #[error("player {player} would hold {would_be} {currency}, over the {max} {currency} one player may hold")]
    BalanceLimit { player: String, currency: &'static str, max: Decimal, would_be: Decimal },
    #[error("payouts of {won} {currency} on stakes of {stake} {currency} in round {round} are over the game's {max} {currency} (its maximum multiplier)")]
    WinLimitExceeded { round: String, currency: &'static str, stake: Decimal, won: Decimal, max: Decimal },
    /// An arithmetic bound was reached that the amount and balance limits should make
    /// unreachable: refused rather than rounded or wrapped.
    #[error("the ledger cannot represent this operation's amounts exactly")]
    AmountOverflow,
    /// The writer failed (panicked) applying this request. It is recorded under the request's
    /// key, so a retry gets this answer again instead of failing the writer again.
    #[error("the wallet failed while applying this request; it moved no money ({0})")]
    InternalRefusal(String),
    #[error("X-Idempotency-Key was already used for a different request")]
    IdempotencyKeyReused,
    #[error("the wallet writer has stopped")]
    Stopped,
    #[error("store unavailable: {0}; retry with the same X-Idempotency-Key")]
    Unavailable(String),
}

impl WalletError {
    /// A refusal that says nothing lasting about the request: it is not stored under the
    /// idempotency key, so a retry is decided afresh (after maintenance ends, say).
    pub fn is_transient(&self) -> bool {
        matches!(self, WalletError::ProviderMaintenance { .. } | WalletError::Stopped | WalletError::Unavailable(_))
    }

    pub fn code(&self) -> &'static str {
        match self {
            WalletError::PlayerNotFound(_) => "PLAYER_NOT_FOUND",
            WalletError::InsufficientFunds { .. } => "INSUFFICIENT_FUNDS",
            WalletError::Money(e) => e.code(),
            WalletError::CurrencyNotBooked { .. } => "CURRENCY_NOT_BOOKED",
            WalletError::BetAlreadyHeld { .. } => "BET_ALREADY_HELD",
            WalletError::RoundAlreadySettled(_) => "ROUND_ALREADY_SETTLED",
            WalletError::RoundFull { .. } => "ROUND_FULL",
            WalletError::HoldNotFound { .. } => "HOLD_NOT_FOUND",
            WalletError::RoundHoldsUnsettled { .. } => "ROUND_HOLDS_UNSETTLED",
            WalletError::DeltaBelowStake { .. } => "DELTA_BELOW_STAKE",
            WalletError::SettleCurrencyMismatch { .. } => "CURRENCY_MISMATCH",
            WalletError::SettleOperationsInvalid => "SETTLE_OPERATIONS_INVALID",
            WalletError::BetRolledBack { .. } => "BET_ROLLED_BACK",
            WalletError::BetNotFound { .. } => "BET_NOT_FOUND",
            WalletError::BetAlreadySettled { .. } => "BET_ALREADY_SETTLED",
            WalletError::RoundVoided(_) => "ROUND_VOIDED",
            WalletError::PlayerMismatch { .. } => "PLAYER_MISMATCH",
            WalletError::BetAlreadyPaid { .. } => "BET_ALREADY_PAID",
            WalletError::StakeLimitExceeded { .. } => "STAKE_LIMIT_EXCEEDED",
            WalletError::ProviderMaintenance { .. } => "PROVIDER_MAINTENANCE",
            WalletError::BalanceLimit { .. } => "BALANCE_LIMIT",
            WalletError::WinLimitExceeded { .. } => "WIN_LIMIT_EXCEEDED",
            WalletError::AmountOverflow => "AMOUNT_OVERFLOW",
            WalletError::InternalRefusal(_) => "INTERNAL_REFUSAL",
            WalletError::IdempotencyKeyReused => "IDEMPOTENCY_KEY_REUSED",
            WalletError::Stopped | WalletError::Unavailable(_) => "STORE_UNAVAILABLE",
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            WalletError::PlayerNotFound(_) | WalletError::BetNotFound { .. } => 404,
            WalletError::Money(_) | WalletError::SettleOperationsInvalid => 400,
            WalletError::CurrencyNotBooked { .. } => 422,
            WalletError::InsufficientFunds { .. }
            | WalletError::HoldNotFound { .. }
            | WalletError::RoundFull { .. }
            | WalletError::RoundHoldsUnsettled { .. }
            | WalletError::DeltaBelowStake { .. }
            | WalletError::SettleCurrencyMismatch { .. }
            | WalletError::PlayerMismatch { .. }
            | WalletError::StakeLimitExceeded { .. }
            | WalletError::BalanceLimit { .. }
            | WalletError::WinLimitExceeded { .. }
            | WalletError::AmountOverflow => 422,
            WalletError::InternalRefusal(_) => 500,
            WalletError::BetAlreadyHeld { .. }
            | WalletError::RoundAlreadySettled(_)
            | WalletError::BetRolledBack { .. }
            | WalletError::BetAlreadySettled { .. }
            | WalletError::RoundVoided(_)
            | WalletError::BetAlreadyPaid { .. }
            | WalletError::IdempotencyKeyReused => 409,
            WalletError::ProviderMaintenance { .. } | WalletError::Stopped | WalletError::Unavailable(_) => 503,
        }
    }
}

/// One player's part of a settle, checked.
#[derive(Debug, Clone)]
pub struct SettlePart {
    pub player: PlayerId,
    pub bet: Option<BetId>,
    pub delta: Money,
}

/// A checked wallet operation: money has its currency's scale and the right sign.
#[derive(Debug, Clone)]
pub enum Command {
    Credit {
        player: PlayerId,
        money: Money,
        reason: MovementReason,
    },
    Debit {
        player: PlayerId,
        money: Money,
        reason: MovementReason,
    },
    Hold {
        player: PlayerId,
        round: RoundId,
        bet: BetId,
        money: Money,
    },
    Settle {
        round: RoundId,
        parts: Vec<SettlePart>,
    },
    /// Game rounds (the gaming domain's operations, applied here because they move money).
    Game(GameCommand),
}

/// A provider's round operation, normalised from any dialect. Rounds are per provider.
#[derive(Debug, Clone)]
pub enum GameCommand {
    /// Hold a stake for a new bet (`bet` is the provider's transaction id). The gaming domain
    /// decides what does not depend on the round (the provider's state, the player's stake cap);
    /// the writer applies it after looking for a stored answer, so a retry of an accepted bet is
    /// answered as before whatever has changed since.
    Bet {
        provider: String,
        player: PlayerId,
        round: RoundId,
        bet: BetId,
        game: String,
        money: Money,
        /// `Some(reason)` when the provider is in maintenance: a new bet is refused (not stored).
        maintenance: Option<String>,
        /// The most the player may stake in one round (one spin) of this game, if a rule caps it.
        stake_cap: Option<contracts::region::StakeCap>,
        /// The game's maximum multiplier, when its provider file gives one: the bet may win at
        /// most its stake times this (`WIN_LIMIT_EXCEEDED` past it).
        max_multiplier: Option<Decimal>,
    },
    /// Credit a payout (zero allowed) to the player's open bets; `close` ends the player's part.
    Win { provider: String, player: PlayerId, round: RoundId, transaction: BetId, money: Money, close: bool },
    /// Refund bet `bet` once; before the bet arrives, leave a tombstone that refuses it.
    Rollback { provider: String, player: PlayerId, round: RoundId, transaction: BetId, bet: BetId },
    /// End the player's part of the round with no further payout.
    EndRound { provider: String, player: PlayerId, round: RoundId },
    /// End a round open since `open_since_us` past its timeout (the sweeper): a part whose
    /// result was reported settles, a part with none is refunded (voided).
    TimeOut { provider: String, round: RoundId, open_since_us: i64 },
}

impl Command {
    pub fn kind(&self) -> &'static str {
        match self {
            Command::Credit { .. } => "credit",
            Command::Debit { .. } => "debit",
            Command::Hold { .. } => "hold",
            Command::Settle { .. } => "settle",
            Command::Game(GameCommand::Bet { .. }) => "game_bet",
            Command::Game(GameCommand::Win { .. }) => "game_win",
            Command::Game(GameCommand::Rollback { .. }) => "game_rollback",
            Command::Game(GameCommand::EndRound { .. }) => "game_end_round",
            Command::Game(GameCommand::TimeOut { .. }) => "game_time_out",
        }
    }
}

/// A player's balances in one currency, as stored and as entries record them after each change.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlayerBalances {
    pub cash: Decimal,
    pub bonus: Decimal,
    pub held: Decimal,
}

impl PlayerBalances {
    /// These balances with `cash` and `held` changed by the signed deltas, checked: refused when
    /// the player's total (cash + bonus + held) would pass the currency's maximum balance, or when a
    /// sum cannot be exact. Going below zero is the caller's refusal to make (with its own code)
    /// and [`PlayerBalances::assert_valid`]'s to catch.
    pub fn moved(
        self,
        player: &PlayerId,
        currency: Currency,
        cash: Decimal,
        held: Decimal,
    ) -> Result<PlayerBalances, WalletError> {
        let after = PlayerBalances {
            cash: ledger_add(self.cash, cash)?,
            bonus: self.bonus,
            held: ledger_add(self.held, held)?,
        };
        let total = ledger_add(ledger_add(after.cash, after.bonus)?, after.held)?;
        if total > currency.balance_max() && total > self.total()? {
            return Err(WalletError::BalanceLimit {
                player: player.to_string(),
                currency: currency.code(),
                max: currency.balance_max(),
                would_be: Amount::at_scale(total, currency.scale()).0,
            });
        }
        Ok(after)
    }

    /// Refused `INSUFFICIENT_FUNDS` unless the player's cash covers `money`.
    pub fn covers(&self, player: &PlayerId, money: Money) -> Result<(), WalletError> {
        if self.cash >= money.amount() {
            return Ok(());
        }
        let currency = money.currency();
        Err(WalletError::InsufficientFunds {
            player: player.to_string(),
            currency: currency.code(),
            available: Amount::at_scale(self.cash, currency.scale()).0,
            requested: money.wire().0,
        })
    }

    /// These balances with `money` moved from cash to held, for a stake: refused when the cash
    /// does not cover it.
    pub fn staked(self, player: &PlayerId, money: Money) -> Result<PlayerBalances, WalletError> {
        self.covers(player, money)?;
        self.moved(player, money.currency(), -money.amount(), money.amount())
    }

    fn total(&self) -> Result<Decimal, WalletError> {
        ledger_add(ledger_add(self.cash, self.bonus)?, self.held)
    }

    /// Money the platform owes the player never goes below zero.
    pub fn assert_valid(&self, player: &PlayerId) {
        assert!(
            !self.cash.is_sign_negative() && !self.bonus.is_sign_negative() && !self.held.is_sign_negative(),
            "wallet invariant broken: negative balance for {player}: {self:?}"
        );
    }
}

/// The largest magnitude any ledger sum may take: 10^20 whole units. Amounts and balances are
/// bounded far below it (`contracts::money`: at most 10^12 minor units a balance), and the sum of
/// two values within it, at a scale of at most 8 (BTC's), needs under 2^96 of mantissa, so it is
/// exact: a sum that `Decimal` would round or overflow is refused instead.
pub const LEDGER_MAGNITUDE_MAX: Decimal = Decimal::from_parts(1_661_992_960, 1_808_227_885, 5, false, 0);

/// `a + b`, exactly, or [`WalletError::AmountOverflow`].
pub fn ledger_add(a: Decimal, b: Decimal) -> Result<Decimal, WalletError> {
    a.checked_add(b).filter(|sum| sum.abs() <= LEDGER_MAGNITUDE_MAX).ok_or(WalletError::AmountOverflow)
}

/// `a - b`, exactly, or [`WalletError::AmountOverflow`].
pub fn ledger_sub(a: Decimal, b: Decimal) -> Result<Decimal, WalletError> {
    a.checked_sub(b).filter(|diff| diff.abs() <= LEDGER_MAGNITUDE_MAX).ok_or(WalletError::AmountOverflow)
}

/// The exact sum of `amounts`, or [`WalletError::AmountOverflow`].
pub fn ledger_sum(amounts: impl IntoIterator<Item = Decimal>) -> Result<Decimal, WalletError> {
    amounts.into_iter().try_fold(Decimal::ZERO, ledger_add)
}

/// Whether the writer has failed, and why: raised once, never lowered. A cell whose writer failed
/// is not ready (`/readyz` 503, so the router fails over) and stops, exiting non-zero so that its
/// supervisor restarts it.
#[derive(Clone)]
pub struct Fault(Arc<tokio::sync::watch::Sender<Option<String>>>);

impl Default for Fault {
    fn default() -> Self {
        Fault(Arc::new(tokio::sync::watch::channel(None).0))
    }
}

impl Fault {
    /// Records the first failure (later ones are logged only).
    pub fn raise(&self, why: String) {
        tracing::error!(fault = %why, "the wallet has failed: the cell is no longer ready and stops");
        self.0.send_if_modified(|fault| fault.is_none() && fault.replace(why).is_none());
    }

    /// Why the writer failed, if it has.
    pub fn get(&self) -> Option<String> {
        self.0.borrow().clone()
    }

    /// Resolves once the writer has failed.
    pub async fn raised(&self) {
        let mut watching = self.0.subscribe();
        let _ = watching.wait_for(Option::is_some).await;
    }
}

/// The wallet domain of one cell: the front door to its single writer and its reads.
#[derive(Clone)]
pub struct Wallet {
    /// The writer's queue; `None` once `shutdown` closed it.
    submissions: Arc<std::sync::RwLock<Option<mpsc::Sender<writer::Submission>>>>,
    store: Arc<dyn Store>,
    region: Arc<RegionConfig>,
    metrics: Arc<Metrics>,
    fault: Fault,
}

impl Wallet {
    /// Starts the wallet's writer thread. It stops once every `Wallet` clone is dropped, after
    /// answering what it was given.
    pub fn start(
        store: Arc<dyn Store>,
        region: Arc<RegionConfig>,
        metrics: Arc<Metrics>,
        config: WriterConfig,
        clock: Arc<dyn crate::clock::Clock>,
    ) -> Result<(Wallet, std::thread::JoinHandle<()>), StoreError> {
        let fault = Fault::default();
        let (submissions, handle) = writer::spawn(store.clone(), metrics.clone(), config, fault.clone(), clock)?;
        let submissions = Arc::new(std::sync::RwLock::new(Some(submissions)));
        Ok((Wallet { submissions, store, region, metrics, fault }, handle))
    }

    /// Whether the writer has failed (see [`Fault`]).
    pub fn fault(&self) -> &Fault {
        &self.fault
    }

    /// Closes the writer's queue: operations already queued are still committed and answered,
    /// new ones are refused, and the writer thread then ends.
    pub fn shutdown(&self) {
        self.submissions.write().unwrap_or_else(|p| p.into_inner()).take();
    }

    fn booked(&self, code: &str) -> Result<Currency, WalletError> {
        let currency = Currency::from_code(code)?;
        if !self.region.books(currency) {
            let booked = self.region.currencies.iter().map(|c| c.code()).collect::<Vec<_>>().join(", ");
            return Err(WalletError::CurrencyNotBooked { currency: currency.code(), booked });
        }
        Ok(currency)
    }

    fn positive(&self, amount: Amount, currency: &str) -> Result<Money, WalletError> {
        Ok(Money::positive(amount.0, self.booked(currency)?)?)
    }

    /// Money in a currency this cell books: strictly positive, or (`zero_ok`) zero or more.
    pub fn money(&self, amount: Decimal, currency: &str, zero_ok: bool) -> Result<Money, WalletError> {
        let currency = self.booked(currency)?;
        if zero_ok && amount.is_zero() {
            return Ok(Money::signed(amount, currency)?);
        }
        Ok(Money::positive(amount, currency)?)
    }

    pub fn credit_command(&self, r: MovementRequest) -> Result<Command, WalletError> {
        Ok(Command::Credit { money: self.positive(r.amount, &r.currency)?, player: r.player_id, reason: r.reason })
    }

    pub fn debit_command(&self, r: MovementRequest) -> Result<Command, WalletError> {
        Ok(Command::Debit { money: self.positive(r.amount, &r.currency)?, player: r.player_id, reason: r.reason })
    }

    pub fn hold_command(&self, r: HoldRequest) -> Result<Command, WalletError> {
        Ok(Command::Hold {
            money: self.positive(r.amount, &r.currency)?,
            player: r.player_id,
            round: r.round_id,
            bet: r.bet_id,
        })
    }

    pub fn settle_command(&self, r: SettleRequest) -> Result<Command, WalletError> {
        if r.operations.is_empty() || r.operations.len() > SETTLE_OPERATIONS_MAX {
            return Err(WalletError::SettleOperationsInvalid);
        }
        let parts = r
            .operations
            .into_iter()
            .map(|op| {
                let delta = Money::signed(op.delta.0, self.booked(&op.currency)?)?;
                Ok(SettlePart { player: op.player_id, bet: op.bet_id, delta })
            })
            .collect::<Result<Vec<_>, WalletError>>()?;
        Ok(Command::Settle { round: r.round_id, parts })
    }

    /// Runs `command` through the writer; answers once it is durable (or refused).
    pub async fn execute(
        &self,
        command: Command,
        key: IdempotencyKey,
        ctx: EventContext,
    ) -> Result<Answer, WalletError> {
        self.submit(command, Some(key), ctx).await
    }

    /// Runs a command that is idempotent by its own checks (ending a round, voiding one), with no
    /// idempotency record: a repeat is decided against the state and moves nothing twice.
    pub async fn execute_unkeyed(&self, command: Command, ctx: EventContext) -> Result<Answer, WalletError> {
        self.submit(command, None, ctx).await
    }

    async fn submit(
        &self,
        command: Command,
        key: Option<IdempotencyKey>,
        ctx: EventContext,
    ) -> Result<Answer, WalletError> {
        let kind = command.kind();
        let submitted = std::time::Instant::now();
        let (reply, answer) = oneshot::channel();
        self.metrics.wallet_queue_depth.inc();
        let sender = self.submissions.read().unwrap_or_else(|p| p.into_inner()).clone();
        let sent = match sender {
            Some(sender) => sender.send(writer::Submission { command, key, ctx, reply, submitted }).await.is_ok(),
            None => false,
        };
        if !sent {
            self.metrics.wallet_queue_depth.dec();
            return Err(WalletError::Stopped);
        }
        let result = answer.await.unwrap_or(Err(WalletError::Stopped));
        self.metrics.wallet_stage(crate::metrics::Stage::Answered, submitted);
        let outcome = match &result {
            Ok(a) if a.replayed => "replayed",
            Ok(_) => "ok",
            Err(_) => "refused",
        };
        self.metrics.wallet_ops.get_or_create(&crate::metrics::WalletOpLabels { op: kind, outcome }).inc();
        result
    }

    /// A player's balances now, or as of a past instant (recomputed from the journal). Blocking.
    pub fn balance(
        &self,
        player: &PlayerId,
        currency: Option<&str>,
        as_of: Option<DateTime<Utc>>,
    ) -> Result<BalanceResponse, WalletError> {
        let mut tx = self.store.begin().map_err(unavailable)?;
        let Some(registered) = crate::players::get(tx.as_mut(), player).map_err(unavailable)? else {
            return Err(WalletError::PlayerNotFound(player.to_string()));
        };
        let currency = match currency {
            Some(code) => self.booked(code)?,
            None => registered.currency,
        };
        let balances = match as_of {
            None => writer::balance_read(tx.as_mut(), player, currency).map_err(unavailable)?,
            Some(instant) => writer::balance_as_of(tx.as_mut(), player, currency, instant).map_err(unavailable)?,
        };
        let s = currency.scale();
        Ok(BalanceResponse {
            player_id: player.clone(),
            currency,
            cash: Amount::at_scale(balances.cash, s),
            bonus: Amount::at_scale(balances.bonus, s),
            held: Amount::at_scale(balances.held, s),
            as_of,
        })
    }

    /// A player's cash in `currency` as the wallet's store holds it now. Blocking.
    pub fn cash(&self, player: &PlayerId, currency: &str) -> Result<(Currency, Decimal), WalletError> {
        let currency = self.booked(currency)?;
        let mut tx = self.store.begin().map_err(unavailable)?;
        if crate::players::get(tx.as_mut(), player).map_err(unavailable)?.is_none() {
            return Err(WalletError::PlayerNotFound(player.to_string()));
        }
        Ok((currency, writer::balance_read(tx.as_mut(), player, currency).map_err(unavailable)?.cash))
    }

    /// Rounds of `provider` that have had an open bet since before `before_us`, oldest first, with
    /// the instant each opened. Blocking.
    pub fn game_rounds_open_before(
        &self,
        provider: &str,
        before_us: i64,
        limit: usize,
    ) -> Result<Vec<(RoundId, i64)>, WalletError> {
        writer::game_rounds_open_before(self.store.as_ref(), provider, before_us, limit).map_err(unavailable)
    }

    /// The sum of every account, player and house, per currency: zero when the books balance.
    pub fn ledger_totals(&self) -> Result<BTreeMap<Currency, Decimal>, WalletError> {
        writer::ledger_totals(self.store.as_ref()).map_err(unavailable)
    }
}

fn unavailable(e: StoreError) -> WalletError {
    WalletError::Unavailable(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn the_ledger_bound_is_ten_to_the_twentieth_and_sums_within_it_are_exact() {
        assert_eq!(LEDGER_MAGNITUDE_MAX, Decimal::from_str("100000000000000000000").unwrap());
        let tiny = Decimal::new(1, 8);
        let sum = ledger_add(LEDGER_MAGNITUDE_MAX - tiny, tiny).unwrap();
        assert_eq!(ledger_sub(sum, tiny).unwrap(), LEDGER_MAGNITUDE_MAX - tiny, "exact at the bound");
        assert_eq!(ledger_add(LEDGER_MAGNITUDE_MAX, tiny), Err(WalletError::AmountOverflow));
        assert_eq!(ledger_add(Decimal::MAX, Decimal::MAX), Err(WalletError::AmountOverflow));
        assert_eq!(ledger_sum([Decimal::ONE; 3]), Ok(Decimal::from(3)));
    }

    #[test]
    fn a_balance_may_not_grow_past_the_currency_maximum() {
        let gbp = Currency::from_code("GBP").unwrap();
        let player = PlayerId::new("uk-max").unwrap();
        let full = PlayerBalances { cash: gbp.balance_max(), ..Default::default() };
        let refused = full.moved(&player, gbp, Decimal::new(1, 2), Decimal::ZERO).unwrap_err();
        assert_eq!(refused.code(), "BALANCE_LIMIT");
        // Moving cash to held keeps the total: allowed at the maximum.
        let one = Decimal::ONE;
        assert!(full.moved(&player, gbp, -one, one).is_ok());
    }
}
