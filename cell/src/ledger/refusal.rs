//! What the kernel refuses, and how a submitted command fails: the kernel's own refusals
//! ([`LedgerRefusal`]), a domain's ([`Refusal`], each domain's enum), and the outcome of a
//! submission that did not succeed ([`Failed`]), each with a stable code and HTTP status.

use super::gate::GateRefusal;
use contracts::{ErrorBody, MoneyError};
use rust_decimal::Decimal;

/// A domain's refusal enum: what its commands decide against a request, with a stable code and
/// HTTP status. A refusal is recorded under the request's idempotency key (so a retry gets it
/// again) unless it is transient.
pub trait Refusal: std::error::Error + Send + 'static {
    fn code(&self) -> &'static str;
    fn status(&self) -> u16;
    /// A refusal that says nothing lasting about the request (a provider in maintenance): not
    /// recorded, so a retry is decided afresh.
    fn is_transient(&self) -> bool {
        false
    }
}

/// Failures that carry no domain refusal (the kernel's own: a key reused, a panic, the store).
impl Refusal for std::convert::Infallible {
    fn code(&self) -> &'static str {
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
    fn code(&self) -> &'static str {
        match self {
            LedgerRefusal::PlayerNotFound(_) => "PLAYER_NOT_FOUND",
            LedgerRefusal::InsufficientFunds { .. } => "INSUFFICIENT_FUNDS",
            LedgerRefusal::BalanceLimit { .. } => "BALANCE_LIMIT",
            LedgerRefusal::AmountOverflow => "AMOUNT_OVERFLOW",
            LedgerRefusal::CurrencyNotBooked { .. } => "CURRENCY_NOT_BOOKED",
            LedgerRefusal::Money(e) => e.code(),
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
    #[error("{}", .0.message)]
    Replayed(ErrorBody, u16),
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
            Failed::Replayed(body, status) => Failed::Replayed(body, status),
            Failed::KeyReused => Failed::KeyReused,
            Failed::Internal(why) => Failed::Internal(why),
            Failed::Unavailable(why) => Failed::Unavailable(why),
            Failed::Stopped => Failed::Stopped,
        }
    }
}

impl<R: Refusal> Failed<R> {
    pub fn code(&self) -> &str {
        match self {
            Failed::Refused(r) => r.code(),
            Failed::Replayed(body, _) => &body.code,
            Failed::KeyReused => "IDEMPOTENCY_KEY_REUSED",
            Failed::Internal(_) => "INTERNAL_REFUSAL",
            Failed::Unavailable(_) | Failed::Stopped => "STORE_UNAVAILABLE",
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            Failed::Refused(r) => r.status(),
            Failed::Replayed(_, status) => *status,
            Failed::KeyReused => 409,
            Failed::Internal(_) => 500,
            Failed::Unavailable(_) | Failed::Stopped => 503,
        }
    }

    /// Whether this answer was recorded for an earlier request with the same key.
    pub fn replayed(&self) -> bool {
        matches!(self, Failed::Replayed(..))
    }

    /// The answer's body, as answered and as recorded under the key.
    pub fn body(&self) -> ErrorBody {
        match self {
            Failed::Replayed(body, _) => body.clone(),
            other => ErrorBody { code: other.code().to_owned(), message: other.to_string() },
        }
    }
}
