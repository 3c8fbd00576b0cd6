//! The error body every HTTP boundary answers with, and the closed set of codes each boundary
//! answers in it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `{code, message}`: `code` is stable and machine-readable (`INSUFFICIENT_FUNDS`), `message` is for
/// people and may change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
}

/// A closed enum of error codes, each with its stable wire spelling.
macro_rules! error_codes {
    ($(#[$doc:meta])* $name:ident { $($variant:ident = $code:literal,)* }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
        pub enum $name {
            $(#[serde(rename = $code)] $variant,)*
        }

        impl $name {
            /// Every code, in order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            /// The code as answered (`INSUFFICIENT_FUNDS`).
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $code,)*
                }
            }

            /// The code answered as `text`, if it is one of this boundary's.
            pub fn parse(text: &str) -> Option<$name> {
                $name::ALL.iter().copied().find(|code| code.as_str() == text)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

error_codes!(
    /// Every code a cell answers in an error body (its HTTP API and its providers' dialects), and
    /// the only ones. `BAD_REQUEST` and `HEADERS_TOO_LARGE` come from the serving layer, before any
    /// route.
    CellCode {
        TotpRequired = "TOTP_REQUIRED",
        TotpAlreadyEnrolled = "TOTP_ALREADY_ENROLLED",
        Forbidden = "FORBIDDEN",
        NotYourAccount = "NOT_YOUR_ACCOUNT",
        InvalidSession = "INVALID_SESSION",
        InvalidOperatorToken = "INVALID_OPERATOR_TOKEN",
        DepositLimitExceeded = "DEPOSIT_LIMIT_EXCEEDED",
        LossLimitExceeded = "LOSS_LIMIT_EXCEEDED",
        DepositLimitsRequired = "DEPOSIT_LIMITS_REQUIRED",
        SelfExcluded = "SELF_EXCLUDED",
        SelfExclusionCheckUnavailable = "SELF_EXCLUSION_CHECK_UNAVAILABLE",
        ProfileIncomplete = "PROFILE_INCOMPLETE",
        AmlReview = "AML_REVIEW",
        KycRequired = "KYC_REQUIRED",
        PspNotFound = "PSP_NOT_FOUND",
        PspUnavailable = "PSP_UNAVAILABLE",
        PaymentNotFound = "PAYMENT_NOT_FOUND",
        WithdrawalNotPending = "WITHDRAWAL_NOT_PENDING",
        DebtOutstanding = "DEBT_OUTSTANDING",
        ExportNotFound = "EXPORT_NOT_FOUND",
        ExportRefused = "EXPORT_REFUSED",
        CellStandby = "CELL_STANDBY",
        CellFenced = "CELL_FENCED",
        CellLeaseExpired = "CELL_LEASE_EXPIRED",
        SessionTimeLimitReached = "SESSION_TIME_LIMIT_REACHED",
        RealityCheckDue = "REALITY_CHECK_DUE",
        KycUnavailable = "KYC_UNAVAILABLE",
        ScreeningUnavailable = "SCREENING_UNAVAILABLE",
        CaseNotFound = "CASE_NOT_FOUND",
        PlayerTimedOut = "PLAYER_TIMED_OUT",
        LoginThrottled = "LOGIN_THROTTLED",
        InvalidCredentials = "INVALID_CREDENTIALS",
        WeakPassword = "WEAK_PASSWORD",
        AmountNegative = "AMOUNT_NEGATIVE",
        AmountOverflow = "AMOUNT_OVERFLOW",
        AmountScale = "AMOUNT_SCALE",
        AmountTooLarge = "AMOUNT_TOO_LARGE",
        AmountZero = "AMOUNT_ZERO",
        AuditChainEmpty = "AUDIT_CHAIN_EMPTY",
        BadRequest = "BAD_REQUEST",
        BadSignature = "BAD_SIGNATURE",
        BalanceLimit = "BALANCE_LIMIT",
        BetAlreadyHeld = "BET_ALREADY_HELD",
        BetAlreadyPaid = "BET_ALREADY_PAID",
        BetAlreadySettled = "BET_ALREADY_SETTLED",
        BetNotFound = "BET_NOT_FOUND",
        BetRolledBack = "BET_ROLLED_BACK",
        BodyTooLarge = "BODY_TOO_LARGE",
        BodyUnreadable = "BODY_UNREADABLE",
        CountryNotLicensed = "COUNTRY_NOT_LICENSED",
        CurrencyMismatch = "CURRENCY_MISMATCH",
        CurrencyNotBooked = "CURRENCY_NOT_BOOKED",
        DateOfBirthInvalid = "DATE_OF_BIRTH_INVALID",
        DeltaBelowStake = "DELTA_BELOW_STAKE",
        DuplicateTransaction = "DUPLICATE_TRANSACTION",
        EventCorrupt = "EVENT_CORRUPT",
        FlagMissing = "FLAG_MISSING",
        HeadersTooLarge = "HEADERS_TOO_LARGE",
        HoldNotFound = "HOLD_NOT_FOUND",
        IdempotencyKeyInvalid = "IDEMPOTENCY_KEY_INVALID",
        IdempotencyKeyMissing = "IDEMPOTENCY_KEY_MISSING",
        IdempotencyKeyReused = "IDEMPOTENCY_KEY_REUSED",
        InsufficientFunds = "INSUFFICIENT_FUNDS",
        Internal = "INTERNAL",
        InternalRefusal = "INTERNAL_REFUSAL",
        InvalidAsOf = "INVALID_AS_OF",
        InvalidCursor = "INVALID_CURSOR",
        InvalidLimit = "INVALID_LIMIT",
        InvalidPlayerId = "INVALID_PLAYER_ID",
        InvalidQuery = "INVALID_QUERY",
        InvalidRequest = "INVALID_REQUEST",
        InvalidType = "INVALID_TYPE",
        LocationNotLicensed = "LOCATION_NOT_LICENSED",
        MalformedJson = "MALFORMED_JSON",
        MethodNotAllowed = "METHOD_NOT_ALLOWED",
        NotFound = "NOT_FOUND",
        NotReady = "NOT_READY",
        PlayerExists = "PLAYER_EXISTS",
        PlayerIdWrongCell = "PLAYER_ID_WRONG_CELL",
        PlayerMismatch = "PLAYER_MISMATCH",
        PlayerNotFound = "PLAYER_NOT_FOUND",
        ProviderMaintenance = "PROVIDER_MAINTENANCE",
        ProviderNotConfigured = "PROVIDER_NOT_CONFIGURED",
        ProviderNotFound = "PROVIDER_NOT_FOUND",
        ReasonMissing = "REASON_MISSING",
        RoundAlreadySettled = "ROUND_ALREADY_SETTLED",
        RoundFull = "ROUND_FULL",
        RoundHoldsUnsettled = "ROUND_HOLDS_UNSETTLED",
        RoundVoided = "ROUND_VOIDED",
        SettleOperationsInvalid = "SETTLE_OPERATIONS_INVALID",
        StakeLimitExceeded = "STAKE_LIMIT_EXCEEDED",
        StaleRequest = "STALE_REQUEST",
        StoreUnavailable = "STORE_UNAVAILABLE",
        TransactionIdReused = "TRANSACTION_ID_REUSED",
        Underage = "UNDERAGE",
        UnknownCall = "UNKNOWN_CALL",
        UnknownCurrency = "UNKNOWN_CURRENCY",
        WinLimitExceeded = "WIN_LIMIT_EXCEEDED",
    }
);

error_codes!(
    /// Every code the router answers itself (`X-Cell: router`); a cell's answers pass through
    /// unchanged. `BAD_REQUEST` and `HEADERS_TOO_LARGE` come from the serving layer.
    RouterCode {
        BadPath = "BAD_PATH",
        BadRequest = "BAD_REQUEST",
        BodyTooLarge = "BODY_TOO_LARGE",
        BodyUnreadable = "BODY_UNREADABLE",
        CellAnswerInvalid = "CELL_ANSWER_INVALID",
        CellTimeout = "CELL_TIMEOUT",
        CellUnavailable = "CELL_UNAVAILABLE",
        CellUnreachable = "CELL_UNREACHABLE",
        GeolocationUnknown = "GEOLOCATION_UNKNOWN",
        HeadersTooLarge = "HEADERS_TOO_LARGE",
        InvalidRequest = "INVALID_REQUEST",
        InvalidSession = "INVALID_SESSION",
        JurisdictionNotLicensed = "JURISDICTION_NOT_LICENSED",
        MalformedJson = "MALFORMED_JSON",
        MethodNotAllowed = "METHOD_NOT_ALLOWED",
        NotFound = "NOT_FOUND",
        RateLimited = "RATE_LIMITED",
    }
);

error_codes!(
    /// Every code the control plane's API answers. `BAD_REQUEST` and `HEADERS_TOO_LARGE` come from
    /// the serving layer.
    ControlCode {
        AuthThrottled = "AUTH_THROTTLED",
        BadRequest = "BAD_REQUEST",
        BodyTooLarge = "BODY_TOO_LARGE",
        BodyUnreadable = "BODY_UNREADABLE",
        CellUnavailable = "CELL_UNAVAILABLE",
        FlagNotFound = "FLAG_NOT_FOUND",
        Forbidden = "FORBIDDEN",
        GameNotFound = "GAME_NOT_FOUND",
        HeadersTooLarge = "HEADERS_TOO_LARGE",
        Internal = "INTERNAL",
        InvalidLimit = "INVALID_LIMIT",
        InvalidQuery = "INVALID_QUERY",
        InvalidRequest = "INVALID_REQUEST",
        JurisdictionNotFound = "JURISDICTION_NOT_FOUND",
        MalformedJson = "MALFORMED_JSON",
        MethodNotAllowed = "METHOD_NOT_ALLOWED",
        NotFound = "NOT_FOUND",
        NotImplemented = "NOT_IMPLEMENTED",
        ProviderNotFound = "PROVIDER_NOT_FOUND",
        RegulatoryLock = "REGULATORY_LOCK",
        StoreCorrupt = "STORE_CORRUPT",
        StoreUnavailable = "STORE_UNAVAILABLE",
        TokenNotFound = "TOKEN_NOT_FOUND",
        Unauthenticated = "UNAUTHENTICATED",
        UnknownProvider = "UNKNOWN_PROVIDER",
        VersionConflict = "VERSION_CONFLICT",
    }
);

impl CellCode {
    /// The code of a money refusal.
    pub fn of_money(e: &crate::MoneyError) -> CellCode {
        match e {
            crate::MoneyError::UnknownCurrency(_) => CellCode::UnknownCurrency,
            crate::MoneyError::TooManyDecimals { .. } => CellCode::AmountScale,
            crate::MoneyError::Negative(_) => CellCode::AmountNegative,
            crate::MoneyError::Zero => CellCode::AmountZero,
            crate::MoneyError::TooLarge { .. } => CellCode::AmountTooLarge,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cell_codes_spell_as_answered_and_cover_money_refusals() {
        for code in CellCode::ALL {
            assert_eq!(CellCode::parse(code.as_str()), Some(*code));
            assert_eq!(serde_json::to_value(code).unwrap(), code.as_str());
        }
        let zero = crate::MoneyError::Zero;
        assert_eq!(CellCode::of_money(&zero).as_str(), zero.code());
    }
}
