//! Responsible-gambling limits, as a player sets and reads them (`/players/{id}/limits`,
//! `/timeout`, `/self-exclusion`). Amounts are in the player's currency.

use crate::region::LimitPeriod;
use crate::{Amount, Currency, PlayerId};
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Version of the limit shapes and their events.
pub const LIMITS_VERSION: &str = "1";
/// Shortest and longest time-out a player may take, in hours (24 hours to 6 weeks).
pub const TIMEOUT_HOURS: std::ops::RangeInclusive<u32> = 24..=1008;
/// Shortest and longest self-exclusion a player may take here, in months (6 months to 5 years).
pub const SELF_EXCLUSION_MONTHS: std::ops::RangeInclusive<u32> = 6..=60;

/// What a limit bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LimitKind {
    /// Money deposited in the period.
    Deposit,
    /// Stakes minus what came back (wins, refunds) in the period.
    Loss,
}

/// One change a player asks for: `amount: null` removes the limit (an increase).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LimitChange {
    pub kind: LimitKind,
    /// `day`, `week` or `month`: calendar periods in UTC, weeks from Monday.
    pub period: LimitPeriod,
    pub amount: Option<Amount>,
}

/// `PUT /players/{id}/limits`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LimitsRequest {
    /// A decrease (or a new limit) takes effect at once; an increase (or a removal) after the
    /// region's cooling-off period.
    #[schemars(length(min = 1, max = 6))]
    pub changes: Vec<LimitChange>,
}

/// A limit in force.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LimitInForce {
    pub kind: LimitKind,
    pub period: LimitPeriod,
    pub amount: Amount,
    /// What the period has used so far, and what is left.
    pub used: Amount,
    pub left: Amount,
    /// `player` when the player set it, or the region's rule id for a default.
    pub source: String,
}

/// An increase waiting for its cooling-off period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PendingLimit {
    pub kind: LimitKind,
    pub period: LimitPeriod,
    /// `null`: the limit goes.
    pub amount: Option<Amount>,
    pub effective_at: DateTime<Utc>,
}

/// Answer to the limit routes: the player's limits, pending increases, time-out and exclusion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LimitsView {
    pub player_id: PlayerId,
    pub currency: Currency,
    pub limits: Vec<LimitInForce>,
    pub pending: Vec<PendingLimit>,
    pub timeout_until: Option<DateTime<Utc>>,
    pub self_excluded_until: Option<DateTime<Utc>>,
}

/// Shortest and longest session a player may allow themselves, in minutes (10 minutes to 24 hours).
pub const SESSION_MINUTES: std::ops::RangeInclusive<u32> = 10..=1440;
/// Shortest and longest interval between reality checks, in minutes.
pub const REALITY_CHECK_MINUTES: std::ops::RangeInclusive<u32> = 5..=120;

/// `PUT /players/{id}/session-limits`: how long one play session (from a login) may last, and
/// how often play stops for a reality check. `null` removes one. A tighter setting takes effect at
/// once; a looser one after the region's cooling-off period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SessionLimitsRequest {
    /// 10 to 1440.
    #[schemars(range(min = 10, max = 1440))]
    pub session_minutes: Option<u32>,
    /// 5 to 120.
    #[schemars(range(min = 5, max = 120))]
    pub reality_check_minutes: Option<u32>,
}

/// Looser session limits waiting for the cooling-off period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PendingSessionLimits {
    pub session_minutes: Option<u32>,
    pub reality_check_minutes: Option<u32>,
    pub effective_at: DateTime<Utc>,
}

/// `GET /players/{id}/session` (and the answer of the session routes): the play session since
/// the last login, its limits, when it ends, when the next reality check is due, and what was
/// staked and won in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionView {
    pub player_id: PlayerId,
    pub currency: Currency,
    pub session_minutes: Option<u32>,
    pub reality_check_minutes: Option<u32>,
    pub pending: Option<PendingSessionLimits>,
    /// The last login; `null` before the first.
    pub started_at: Option<DateTime<Utc>>,
    /// When play stops for this session (`SESSION_TIME_LIMIT_REACHED` after).
    pub ends_at: Option<DateTime<Utc>>,
    /// When play stops until the player acknowledges a reality check (`REALITY_CHECK_DUE` after).
    pub reality_check_due_at: Option<DateTime<Utc>>,
    pub staked: Amount,
    pub returned: Amount,
    /// What came back minus what was staked in this session.
    pub net: Amount,
}

/// `POST /players/{id}/timeout`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TimeoutRequest {
    /// 24 to 1008 (six weeks).
    #[schemars(range(min = 24, max = 1008))]
    pub hours: u32,
}

/// `POST /players/{id}/self-exclusion`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SelfExclusionRequest {
    /// 6 to 60.
    #[schemars(range(min = 6, max = 60))]
    pub months: u32,
}

/// One compliance decision about a player, allowed or refused: which rule, under which policy
/// version, who answered (a register, the player), and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    pub at: DateTime<Utc>,
    /// `self_exclusion_check`, `limit_set`, `limit_pending`, `timeout`, `self_exclusion`.
    pub kind: String,
    /// The rule the decision applies (`UK-PLAYER-DEPOSIT-LIMIT-DAY`, `UK-SELF-EXCLUSION-REGISTER`).
    pub rule: String,
    pub policy_version: String,
    /// Who answered or asked: the register (`GAMSTOP`), or `player`.
    pub source: String,
    /// What was decided, in words (`excluded`, `deposit day 100.00 GBP`, `until 2027-06-06T…`).
    pub outcome: String,
}

/// Answer to `GET /compliance/players/{id}/decisions`: oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DecisionLog {
    pub player_id: PlayerId,
    pub decisions: Vec<Decision>,
}

/// An anti-money-laundering case: opened by a screening hit or a rule, decided by the compliance
/// role. While one is open, the player's withdrawals are held (`AML_REVIEW`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AmlCase {
    pub id: String,
    pub player_id: PlayerId,
    pub opened_at: DateTime<Utc>,
    /// The rule that opened it (`UK-SANCTIONS-SCREENING`).
    pub rule: String,
    /// Why, in words (the list entry matched and the score).
    pub reason: String,
    /// `open`, `cleared` (a false positive: withdrawals flow again) or `confirmed`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision_reason: Option<String>,
}

/// `POST /compliance/cases/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CaseDecision {
    /// `cleared` or `confirmed`.
    #[schemars(regex(pattern = "^(cleared|confirmed)$"))]
    pub decision: String,
    #[schemars(length(min = 1, max = 500), regex(pattern = r"\S"))]
    pub reason: String,
}

/// Answer to `GET /compliance/cases`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CaseList {
    pub cases: Vec<AmlCase>,
}
