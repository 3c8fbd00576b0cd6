//! Every schema that crosses a boundary, named `<name>.v<version>.json`. A shape's version is part
//! of its file name, so changing a shape without bumping its version changes a committed file,
//! which `tests/schemas.rs` refuses.

use crate::events::{self, EventPayload};
use crate::{audit, cashier, gaming, players, sessions, wallet, CellCode, ControlCode, ErrorBody, RouterCode};
use crate::{catalog, changes, exports, flags, limits, operators};
use schemars::{schema_for, JsonSchema, Schema};

/// One generated schema with the file name it is committed under.
pub struct NamedSchema {
    pub file_name: String,
    pub schema: Schema,
}

fn event<P: EventPayload>() -> NamedSchema {
    NamedSchema {
        file_name: format!("event.{}.v{}.json", P::NAME, P::VERSION),
        schema: schema_for!(events::Envelope<P>),
    }
}

fn api<T: JsonSchema>(name: &str, version: &str) -> NamedSchema {
    NamedSchema { file_name: format!("api.{name}.v{version}.json"), schema: schema_for!(T) }
}

/// All schemas, in a stable order.
pub fn all() -> Vec<NamedSchema> {
    let w = wallet::WALLET_API_VERSION;
    vec![
        event::<events::WalletCredited>(),
        event::<events::WalletDebited>(),
        event::<events::WalletHold>(),
        event::<events::WalletSettled>(),
        event::<events::PlayerRegistered>(),
        event::<events::PlayerLogin>(),
        event::<events::PlayerLoginFailed>(),
        event::<events::RgLimitSet>(),
        event::<events::RgLimitPending>(),
        event::<events::RgTimeoutStarted>(),
        event::<events::RgSelfExclusionStarted>(),
        event::<events::SelfExclusionChecked>(),
        event::<events::AmlAlert>(),
        event::<events::AmlCaseDecided>(),
        event::<events::KycRequested>(),
        event::<events::KycVerified>(),
        event::<events::KycFailed>(),
        event::<cashier::PaymentIntentCreated>(),
        event::<cashier::PaymentConfirmed>(),
        event::<cashier::PaymentFailed>(),
        event::<cashier::CashierWebhookReceived>(),
        event::<cashier::PayoutRequested>(),
        event::<cashier::PayoutApproved>(),
        event::<cashier::PayoutPaid>(),
        event::<cashier::PayoutFailed>(),
        event::<cashier::ChargebackReceived>(),
        event::<cashier::PaymentRefunded>(),
        event::<exports::ExportBuilt>(),
        event::<exports::ExportDownloaded>(),
        api::<exports::BuildRequest>("exports.build.request", exports::EXPORTS_VERSION),
        api::<exports::ExportSummary>("exports.summary", exports::EXPORTS_VERSION),
        api::<exports::ExportManifest>("exports.manifest", exports::EXPORTS_VERSION),
        api::<exports::InclusionProof>("exports.proof", exports::EXPORTS_VERSION),
        api::<exports::ExportList>("exports.list", exports::EXPORTS_VERSION),
        api::<cashier::WithdrawalRequest>("cashier.withdrawal.request", cashier::CASHIER_VERSION),
        api::<cashier::WithdrawalDecision>("cashier.withdrawal.decision", cashier::CASHIER_VERSION),
        api::<cashier::WithdrawalQueue>("cashier.withdrawals", cashier::CASHIER_VERSION),
        api::<cashier::Reconciliation>("cashier.reconciliation", cashier::CASHIER_VERSION),
        api::<cashier::DepositRequest>("cashier.deposit.request", cashier::CASHIER_VERSION),
        api::<cashier::Payment>("cashier.payment", cashier::CASHIER_VERSION),
        api::<cashier::Transactions>("cashier.transactions", cashier::CASHIER_VERSION),
        event::<gaming::BetPlaced>(),
        event::<gaming::BetWon>(),
        event::<gaming::BetRolledBack>(),
        event::<gaming::RoundSettled>(),
        api::<gaming::SeamlessBet>("gaming.seamless-v1.bet.request", gaming::SEAMLESS_V1_VERSION),
        api::<gaming::SeamlessWin>("gaming.seamless-v1.win.request", gaming::SEAMLESS_V1_VERSION),
        api::<gaming::SeamlessRollback>("gaming.seamless-v1.rollback.request", gaming::SEAMLESS_V1_VERSION),
        api::<gaming::SeamlessBalance>("gaming.seamless-v1.balance.request", gaming::SEAMLESS_V1_VERSION),
        api::<gaming::SeamlessResponse>("gaming.seamless-v1.response", gaming::SEAMLESS_V1_VERSION),
        api::<gaming::PulseDebit>("gaming.pulse.debit.request", gaming::PULSE_VERSION),
        api::<gaming::PulseCredit>("gaming.pulse.credit.request", gaming::PULSE_VERSION),
        api::<gaming::PulseCancel>("gaming.pulse.cancel.request", gaming::PULSE_VERSION),
        api::<gaming::PulseEndRound>("gaming.pulse.endRound.request", gaming::PULSE_VERSION),
        api::<gaming::PulseGetBalance>("gaming.pulse.getBalance.request", gaming::PULSE_VERSION),
        api::<gaming::PulseResponse>("gaming.pulse.response", gaming::PULSE_VERSION),
        api::<gaming::MaintenanceRequest>("gaming.maintenance.request", "2"),
        api::<gaming::ProviderStatus>("gaming.provider.status", "2"),
        api::<audit::AuditRecordPage>("audit.records.page", "1"),
        api::<audit::VerifyReport>("audit.verify.report", "1"),
        api::<audit::CheckpointList>("audit.checkpoints", "1"),
        api::<events::EventPage>("events.page", "1"),
        api::<ErrorBody>("error", "1"),
        api::<CellCode>("cell.error-codes", "11"),
        api::<limits::LimitsRequest>("limits.request", limits::LIMITS_VERSION),
        api::<limits::LimitsView>("limits.view", limits::LIMITS_VERSION),
        api::<limits::TimeoutRequest>("limits.timeout.request", limits::LIMITS_VERSION),
        api::<limits::SelfExclusionRequest>("limits.self-exclusion.request", limits::LIMITS_VERSION),
        api::<players::KycView>("players.kyc", players::KYC_VERSION),
        api::<limits::SessionLimitsRequest>("limits.session.request", limits::LIMITS_VERSION),
        api::<limits::SessionView>("limits.session.view", limits::LIMITS_VERSION),
        api::<limits::DecisionLog>("compliance.decisions", "1"),
        api::<limits::CaseList>("compliance.cases", "1"),
        api::<limits::CaseDecision>("compliance.case-decision", "1"),
        api::<RouterCode>("router.error-codes", "1"),
        api::<ControlCode>("control.error-codes", "3"),
        api::<operators::OperatorClaims>("operators.claims", operators::OPERATORS_VERSION),
        api::<operators::OperatorKey>("operators.key", operators::OPERATORS_VERSION),
        api::<operators::OperatorTokenRequest>("operators.token.request", operators::OPERATORS_VERSION),
        api::<operators::OperatorTokenResponse>("operators.token.response", operators::OPERATORS_VERSION),
        api::<wallet::MovementRequest>("wallet.movement.request", w),
        api::<wallet::MovementResponse>("wallet.movement.response", w),
        api::<wallet::HoldRequest>("wallet.hold.request", w),
        api::<wallet::HoldResponse>("wallet.hold.response", w),
        api::<wallet::SettleRequest>("wallet.settle.request", w),
        api::<wallet::SettleResponse>("wallet.settle.response", w),
        api::<wallet::BalanceResponse>("wallet.balance.response", w),
        api::<players::RegisterPlayerRequest>("players.register.request", players::REGISTER_VERSION),
        api::<players::Player>("players.player", "2"),
        api::<sessions::SessionRequest>("sessions.request", sessions::SESSIONS_VERSION),
        api::<sessions::RefreshRequest>("sessions.refresh.request", sessions::SESSIONS_VERSION),
        api::<sessions::SessionResponse>("sessions.response", sessions::SESSIONS_VERSION),
        api::<sessions::SessionKey>("sessions.key", "1"),
        api::<sessions::TotpEnrolment>("sessions.totp.enrolment", "1"),
        api::<sessions::SessionClaims>("sessions.claims", sessions::SESSIONS_VERSION),
        api::<flags::Flag>("flags.flag", flags::FLAGS_API_VERSION),
        api::<flags::FlagPutRequest>("flags.put.request", flags::FLAGS_API_VERSION),
        api::<flags::ChangeReason>("flags.change-reason", flags::FLAGS_API_VERSION),
        api::<flags::EvaluationContext>("flags.evaluation.context", flags::FLAGS_API_VERSION),
        api::<flags::EvaluationResult>("flags.evaluation.result", flags::FLAGS_API_VERSION),
        api::<flags::FlagLock>("flags.lock", flags::FLAGS_API_VERSION),
        api::<changes::ChangeRecord>("flags.change-record", changes::CHANGES_API_VERSION),
        api::<changes::ChangePage>("flags.change-page", changes::CHANGES_API_VERSION),
        api::<catalog::Provider>("catalog.provider", catalog::CATALOG_API_VERSION),
        api::<catalog::Game>("catalog.game", catalog::CATALOG_API_VERSION),
        api::<catalog::ProviderPutRequest>("catalog.provider.put.request", catalog::CATALOG_API_VERSION),
        api::<catalog::GamePutRequest>("catalog.game.put.request", catalog::CATALOG_API_VERSION),
    ]
}
