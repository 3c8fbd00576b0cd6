//! Gates: limits as ledger invariants. The kernel runs every registered gate on every journal entry
//! a command posts, before anything changes and in the same batch, so a rule holds whichever
//! domain moves the money. A gate sees what kind of movement the entry is, the player's context
//! and, for a stake, the round it is staked in; it passes the entry or refuses it with its rule id
//! and policy version. Compliance registers its rules here (the UK stake cap today; deposit, loss
//! and self-exclusion limits next) without touching the domains that move money.

use chrono::NaiveDate;
use contracts::catalog::GameType;
use contracts::{CountryCode, Currency, PlayerId};
use rust_decimal::Decimal;

/// What an entry is, as rules see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostingKind {
    /// Money in from a payment provider.
    Deposit,
    /// Money out to a payment provider.
    Withdrawal,
    /// A stake taken from cash for a bet.
    Stake,
    /// A bet's result: its stake settled, and any payout.
    Win,
    /// A stake given back (a rollback, a voided round).
    Refund,
    /// A manual adjustment or correction by the operator.
    Adjustment,
}

/// The round a stake is placed in, as the domain that takes it knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StakeContext {
    /// The game's product (a slot, a live table...): rules are per product.
    pub product: GameType,
    /// The player's open stakes in this round, this one included: a stake cap is per spin.
    pub round_stake: Decimal,
}

/// Who is moving money, as rules see them: from the registry, and the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlayerContext<'a> {
    pub player: &'a PlayerId,
    pub date_of_birth: NaiveDate,
    /// Whole years on the batch's date: age bands are drawn from it.
    pub age: u32,
    /// The country of residence the player registered with.
    pub residence: CountryCode,
    /// The jurisdiction (cell) whose licence the money moves under.
    pub jurisdiction: &'a str,
    /// Where the request came from, when the domain knows it (`X-Client-Country`).
    pub location: Option<CountryCode>,
}

/// One journal entry as a gate sees it, before it is applied.
#[derive(Debug, Clone, Copy)]
pub struct GatedEntry<'a> {
    pub kind: PostingKind,
    pub player: &'a PlayerContext<'a>,
    pub currency: Currency,
    /// The money the entry moves out of (stake, withdrawal) or into (deposit, win) the player's
    /// cash: the larger of the two sides, never negative.
    pub amount: Decimal,
    /// For a stake, its round.
    pub stake: Option<StakeContext>,
    /// The batch's date, in the cell's clock.
    pub today: NaiveDate,
}

/// A gate's refusal: which rule, under which policy version, and why in words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct GateRefusal {
    /// The stable code answered (e.g. `STAKE_LIMIT_EXCEEDED`); HTTP 422.
    pub code: contracts::CellCode,
    pub rule: String,
    pub policy_version: String,
    pub message: String,
}

/// A rule the kernel checks on every entry.
pub trait Gate: Send + Sync {
    /// A name for logs and metrics.
    fn name(&self) -> &'static str;
    fn check(&self, entry: &GatedEntry<'_>) -> Result<(), GateRefusal>;
}
