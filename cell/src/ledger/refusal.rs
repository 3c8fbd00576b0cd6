//! What the kernel refuses, and how a submitted command fails: the kernel's own refusals
//! ([`LedgerRefusal`]), a domain's ([`Refusal`], each domain's enum), and the outcome of a
//! submission that did not succeed ([`Failed`]), each with a stable code and HTTP status.

use super::gate::GateRefusal;
use contracts::{CellCode, ErrorBody, MoneyError};
use rust_decimal::Decimal;

/// A domain's refusal enum: what its commands decide against a request, with a stable code and
/// HTTP status. A refusal is recorded under the request's idempotency key (so a retry gets it
/// again) unless it is transient.
pub trait Refusal: std::error::Error + Send + 'static {
    fn code(&self) -> CellCode;
    fn status(&self) -> u16;
    /// A refusal that says nothing lasting about the request (a provider in maintenance): not
    /// recorded, so a retry is decided afresh.
    fn is_transient(&self) -> bool {
        false
    }
}

/// Failures that carry no domain refusal (the kernel's own: a key reused, a panic, the store).
impl Refusal for std::convert::Infallible {
    fn code(&self) -> CellCode {
        match *self {}
    }
    fn status(&self) -> u16 {
        match *self {}
    }
}

/// What the kernel itself refuses, whichever domain's command asked.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LedgerRefusal {
    #[error("player {0} is not registered in this cell")]
    PlayerNotFound(String),
    #[error("player {player} has {available} {currency} cash, {requested} needed")]
    InsufficientFunds { player: String, currency: &'static str, available: Decimal, requested: Decimal },
    #[error("player {player} would hold {would_be} {currency}, over the {max} {currency} one player may hold")]
    BalanceLimit { player: String, currency: &'static str, max: Decimal, would_be: Decimal },
    /// An arithmetic bound was reached that the amount and balance limits should make
    /// unreachable: refused rather than rounded or wrapped.
    #[error("the ledger cannot represent this operation's amounts exactly")]
    AmountOverflow,
    #[error("currency {currency} is not booked by this cell (it books {booked})")]
    CurrencyNotBooked { currency: &'static str, booked: String },
    #[error("{0}")]
    Money(#[from] MoneyError),
    /// A registered gate (a compliance rule) refused a posting.
    #[error("{0}")]
    Gate(GateRefusal),
}

impl Refusal for LedgerRefusal {
    fn code(&self) -> CellCode {
        match self {
            LedgerRefusal::PlayerNotFound(_) => CellCode::PlayerNotFound,
            LedgerRefusal::InsufficientFunds { .. } => CellCode::InsufficientFunds,
            LedgerRefusal::BalanceLimit { .. } => CellCode::BalanceLimit,
            LedgerRefusal::AmountOverflow => CellCode::AmountOverflow,
            LedgerRefusal::CurrencyNotBooked { .. } => CellCode::CurrencyNotBooked,
            LedgerRefusal::Money(e) => CellCode::of_money(e),
            LedgerRefusal::Gate(g) => g.code,
        }
    }

    fn status(&self) -> u16 {
        match self {
            LedgerRefusal::PlayerNotFound(_) => 404,
            LedgerRefusal::Money(_) => 400,
            LedgerRefusal::InsufficientFunds { .. }
            | LedgerRefusal::BalanceLimit { .. }
            | LedgerRefusal::AmountOverflow
            | LedgerRefusal::CurrencyNotBooked { .. }
            | LedgerRefusal::Gate(_) => 422,
        }
    }
}

/// Why a submitted command did not succeed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Failed<R> {
    /// The command refused the request, now.
    #[error("{0}")]
    Refused(R),
    /// An earlier request with this key was refused: its answer, as recorded.
    #[error("{message}")]
    Replayed { code: CellCode, message: String, status: u16 },
    #[error("X-Idempotency-Key was already used for a different request")]
    KeyReused,
    /// The writer failed (panicked) applying this request. It is recorded under the request's
    /// key, so a retry gets this answer again instead of failing the writer again.
    #[error("the ledger failed while applying this request; it moved no money ({0})")]
    Internal(String),
    /// The store failed, or the writer has stopped: retry with the same key.
    #[error("store unavailable: {0}; retry with the same X-Idempotency-Key")]
    Unavailable(String),
    /// The writer has stopped (the cell is shutting down): retry with the same key elsewhere or
    /// later.
    #[error("the ledger writer has stopped; retry with the same X-Idempotency-Key")]
    Stopped,
}

impl<R> Failed<R> {
    /// The same failure with the refusal converted (a domain wrapping the kernel's, say).
    pub fn map<S>(self, f: impl FnOnce(R) -> S) -> Failed<S> {
        match self {
            Failed::Refused(r) => Failed::Refused(f(r)),
            Failed::Replayed { code, message, status } => Failed::Replayed { code, message, status },
            Failed::KeyReused => Failed::KeyReused,
            Failed::Internal(why) => Failed::Internal(why),
            Failed::Unavailable(why) => Failed::Unavailable(why),
            Failed::Stopped => Failed::Stopped,
        }
    }
}

impl<R: Refusal> Failed<R> {
    pub fn code(&self) -> CellCode {
        match self {
            Failed::Refused(r) => r.code(),
            Failed::Replayed { code, .. } => *code,
            Failed::KeyReused => CellCode::IdempotencyKeyReused,
            Failed::Internal(_) => CellCode::InternalRefusal,
            Failed::Unavailable(_) | Failed::Stopped => CellCode::StoreUnavailable,
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            Failed::Refused(r) => r.status(),
            Failed::Replayed { status, .. } => *status,
            Failed::KeyReused => 409,
            Failed::Internal(_) => 500,
            Failed::Unavailable(_) | Failed::Stopped => 503,
        }
    }

    /// Whether this answer was recorded for an earlier request with the same key.
    pub fn replayed(&self) -> bool {
        matches!(self, Failed::Replayed { .. })
    }

    /// The answer's body, as answered and as recorded under the key.
    pub fn body(&self) -> ErrorBody {
        ErrorBody { code: self.code().as_str().to_owned(), message: self.to_string() }
    }
}
