//! Gates: limits as ledger invariants. The kernel runs every registered gate on every journal entry
//! a command posts, before anything changes and in the same batch, so a rule holds whichever
//! domain moves the money. A gate sees what kind of movement the entry is, the player's context
//! and, for a stake, the round it is staked in; it passes the entry or refuses it with its rule id
//! and policy version. Compliance registers its rules here (the UK stake cap, deposit and loss
//! limits, time-outs and self-exclusion) without touching the domains that move money.
//!
//! A gate that counts (a deposit limit) keeps its state in a room ([`GateState::room`]): cached on
//! the writer thread, written with the batch that changed it, so its counters change in the same
//! transaction as the postings they count, and the single writer orders every check.

use crate::store::StoreError;
use chrono::NaiveDate;
use contracts::catalog::GameType;
use contracts::{CountryCode, Currency, PlayerId};
use rust_decimal::Decimal;

/// What an entry is, as rules see it (and as the journal records it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
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
    /// A manual adjustment or correction by the operator, or money moving between house accounts
    /// for the player (a payout settling, a withdrawal returned).
    Adjustment,
    /// A deposit the PSP took back (a chargeback, a refund).
    Chargeback,
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
    /// When the batch is applied, in the cell's clock (its date draws age bands and periods).
    pub now: chrono::DateTime<chrono::Utc>,
    /// What earlier entries of the same command, for this player, currency and kind, move: a
    /// command's entries are checked before any is counted.
    pub earlier: Decimal,
    /// A deposit's or withdrawal's payment method, when the domain knows it.
    pub payment_method: Option<&'a str>,
}

/// What a gate may read and keep: its room (found by type, the same one the domain's commands
/// reach with `KernelTx::room`) and the batch's transaction, to load what the room has not cached;
/// and the AML alerts it raises, which the kernel appends to the command's events (a refused
/// command's too: the alert stands whatever became of the entry that raised it).
pub struct GateState<'a> {
    pub(super) rooms: &'a mut super::command::Rooms,
    pub(super) tx: &'a mut dyn crate::store::Transaction,
    pub(super) alerts: &'a mut Vec<contracts::events::AmlAlert>,
}

impl GateState<'_> {
    pub fn room<R: super::Room + Default>(&mut self) -> (&mut R, &mut dyn crate::store::Transaction) {
        (self.rooms.get::<R>(), &mut *self.tx)
    }

    /// Raises an AML alert (`aml.alert`), appended by the kernel to the command's events.
    pub fn alert(&mut self, alert: contracts::events::AmlAlert) {
        self.alerts.push(alert);
    }
}

/// One journal entry of a player as a counting gate rebuilds its counters from: when, what kind,
/// and what it moved into and out of the player's cash.
#[derive(Debug, Clone, PartialEq)]
pub struct JournalFact {
    pub at: chrono::DateTime<chrono::Utc>,
    pub kind: PostingKind,
    pub cash_in: Decimal,
    pub cash_out: Decimal,
    pub payment_method: Option<String>,
}

/// A player's journal in `currency` from `since` on, as facts (entries written before the journal
/// recorded kinds are left out). What is in the store: a gate calls it only for a player it has
/// not cached, and the writer keeps every player touched by a batch in flight cached, so nothing
/// of theirs is in flight.
pub fn journal_since(
    tx: &mut dyn crate::store::Transaction,
    player: &PlayerId,
    currency: Currency,
    since: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<JournalFact>, StoreError> {
    let (begin, end) = super::keys::entries_since(player, currency, since.timestamp_micros());
    // What came into the player's own accounts: their cash, or their debt being repaid.
    let (cash, debt) = (format!("cash:{player}"), format!("debt:{player}"));
    let mut facts = Vec::new();
    for (key, value) in tx.get_range(&begin, &end, usize::MAX, false)? {
        let record: super::kernel::JournalRecord = super::writer::decode(&key, &value)?;
        let Some(kind) = record.posting_kind else { continue };
        let (mut cash_in, mut cash_out) = (Decimal::ZERO, Decimal::ZERO);
        let corrupt = |e: super::LedgerRefusal| StoreError::corrupt(&key, e);
        for (from, to, amount) in &record.postings {
            if *to == cash || *to == debt {
                cash_in = super::ledger_add(cash_in, *amount).map_err(corrupt)?;
            }
            if *from == cash {
                cash_out = super::ledger_add(cash_out, *amount).map_err(corrupt)?;
            }
        }
        facts.push(JournalFact { at: record.ts, kind, cash_in, cash_out, payment_method: record.payment_method });
    }
    Ok(facts)
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
    /// Passes or refuses `entry`, before anything of its command changes.
    fn check(&self, entry: &GatedEntry<'_>, state: &mut GateState<'_>) -> Result<Result<(), GateRefusal>, StoreError>;
    /// Counts `entry`, once every entry of its command has passed every gate, in the batch that
    /// applies it.
    fn record(&self, _entry: &GatedEntry<'_>, _state: &mut GateState<'_>) -> Result<(), StoreError> {
        Ok(())
    }
}
