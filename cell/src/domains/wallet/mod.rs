//! The wallet API's money domain (DESIGN.md section 4): credits and debits against PSP clearing,
//! and generic rounds in two phases: `hold` moves a stake from cash to held, `settle` releases a
//! round's holds and posts the payouts, once.
//!
//! Its commands run on the ledger's writer ([`crate::ledger`]); its state there is the rounds'
//! holds ([`commands::Rounds`]); its refusals are [`WalletError`].

// Money is summed here: see `crate::ledger`.
#![deny(clippy::arithmetic_side_effects)]

mod commands;
mod keys;

pub use commands::{Hold, Movement, Rounds, Settle, SettlePart, ROUND_HOLDS_MAX};

use crate::ledger::{Ledger, LedgerRefusal, Refusal};
use contracts::wallet::{HoldRequest, MovementRequest, SettleRequest};
use contracts::CellCode;
use contracts::{CountryCode, Money};
use rust_decimal::Decimal;

/// Most operations one settle may carry: bounds the transaction and the stored answer.
pub use contracts::wallet::SETTLE_OPERATIONS_MAX;

/// Why the wallet refused an operation. Each variant has a stable code and HTTP status.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WalletError {
    #[error("{0}")]
    Ledger(#[from] LedgerRefusal),
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
    #[error("paymentMethod: {0}")]
    PaymentMethodInvalid(&'static str),
}

/// A payment method as the PSP names it: 1 to 64 visible characters, and never what looks like a
/// card number (a run of 12 digits or more): the ledger keeps tokens, not card data.
pub fn check_payment_method(method: Option<&str>) -> Result<(), WalletError> {
    let Some(method) = method else { return Ok(()) };
    if method.is_empty() || method.len() > 64 || !method.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(WalletError::PaymentMethodInvalid("1 to 64 visible ASCII characters"));
    }
    let longest_digits = method.split(|c: char| !c.is_ascii_digit()).map(str::len).max().unwrap_or(0);
    if longest_digits >= 12 {
        return Err(WalletError::PaymentMethodInvalid(
            "looks like a card number: send the PSP's token, never the number",
        ));
    }
    Ok(())
}

impl From<contracts::MoneyError> for WalletError {
    fn from(e: contracts::MoneyError) -> WalletError {
        WalletError::Ledger(e.into())
    }
}

impl Refusal for WalletError {
    fn code(&self) -> CellCode {
        match self {
            WalletError::Ledger(e) => e.code(),
            WalletError::BetAlreadyHeld { .. } => CellCode::BetAlreadyHeld,
            WalletError::RoundAlreadySettled(_) => CellCode::RoundAlreadySettled,
            WalletError::RoundFull { .. } => CellCode::RoundFull,
            WalletError::HoldNotFound { .. } => CellCode::HoldNotFound,
            WalletError::RoundHoldsUnsettled { .. } => CellCode::RoundHoldsUnsettled,
            WalletError::DeltaBelowStake { .. } => CellCode::DeltaBelowStake,
            WalletError::SettleCurrencyMismatch { .. } => CellCode::CurrencyMismatch,
            WalletError::SettleOperationsInvalid => CellCode::SettleOperationsInvalid,
            WalletError::PaymentMethodInvalid(_) => CellCode::InvalidRequest,
        }
    }

    fn status(&self) -> u16 {
        match self {
            WalletError::Ledger(e) => e.status(),
            WalletError::SettleOperationsInvalid | WalletError::PaymentMethodInvalid(_) => 400,
            WalletError::HoldNotFound { .. }
            | WalletError::RoundFull { .. }
            | WalletError::RoundHoldsUnsettled { .. }
            | WalletError::DeltaBelowStake { .. }
            | WalletError::SettleCurrencyMismatch { .. } => 422,
            WalletError::BetAlreadyHeld { .. } | WalletError::RoundAlreadySettled(_) => 409,
        }
    }
}

/// `POST /wallet/credit`, checked: money in from PSP clearing.
pub fn credit(ledger: &Ledger, r: MovementRequest, location: Option<CountryCode>) -> Result<Movement, WalletError> {
    let money = ledger.money(r.amount.0, &r.currency, false)?;
    check_payment_method(r.payment_method.as_deref())?;
    Ok(Movement {
        player: r.player_id,
        money,
        reason: r.reason,
        inward: true,
        location,
        payment_method: r.payment_method,
    })
}

/// `POST /wallet/debit`, checked: money out to PSP clearing.
pub fn debit(ledger: &Ledger, r: MovementRequest, location: Option<CountryCode>) -> Result<Movement, WalletError> {
    let money = ledger.money(r.amount.0, &r.currency, false)?;
    check_payment_method(r.payment_method.as_deref())?;
    Ok(Movement {
        player: r.player_id,
        money,
        reason: r.reason,
        inward: false,
        location,
        payment_method: r.payment_method,
    })
}

/// `POST /wallet/hold`, checked.
pub fn hold(ledger: &Ledger, r: HoldRequest, location: Option<CountryCode>) -> Result<Hold, WalletError> {
    let money = ledger.money(r.amount.0, &r.currency, false)?;
    Ok(Hold { player: r.player_id, round: r.round_id, bet: r.bet_id, money, location })
}

/// `POST /wallet/settle`, checked.
pub fn settle(ledger: &Ledger, r: SettleRequest, _location: Option<CountryCode>) -> Result<Settle, WalletError> {
    if r.operations.is_empty() || r.operations.len() > SETTLE_OPERATIONS_MAX {
        return Err(WalletError::SettleOperationsInvalid);
    }
    let parts = r
        .operations
        .into_iter()
        .map(|op| {
            let delta = Money::signed(op.delta.0, ledger.booked(&op.currency)?)?;
            Ok(SettlePart { player: op.player_id, bet: op.bet_id, delta })
        })
        .collect::<Result<Vec<_>, WalletError>>()?;
    Ok(Settle { round: r.round_id, parts })
}
