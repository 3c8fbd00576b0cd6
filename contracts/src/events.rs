//! Event envelope and payloads (DESIGN.md section 5). Each event name has its own version; a
//! payload change bumps it (expand, migrate, contract), and `tests/schemas.rs` enforces that.

use crate::{Amount, BetId, Currency, PlayerId, RoundId};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `{event, v, id, ts, traceId, cell, payload}`: MessagePack in the store, JSON over HTTP.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Envelope<P> {
    pub event: String,
    pub v: String,
    /// Unique id of this event (UUIDv7), for consumers' deduplication.
    pub id: String,
    pub ts: chrono::DateTime<chrono::Utc>,
    pub trace_id: String,
    pub cell: String,
    pub payload: P,
}

/// A stored event as `GET /events` serves it: the envelope plus its position in the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventRecord {
    /// Opaque, ordered position of this event; pass it back as `after`.
    pub cursor: String,
    #[serde(flatten)]
    pub envelope: Envelope<serde_json::Value>,
}

/// Answer to `GET /events?after=CURSOR&limit=N`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventPage {
    pub events: Vec<EventRecord>,
    /// Cursor to continue from (the last event's), or the request's `after` when there was none.
    pub next: Option<String>,
}

/// Every payload type, with its event name and version. A payload is written only by the domain
/// that owns its name's prefix.
pub trait EventPayload: Serialize + JsonSchema {
    const NAME: &'static str;
    const VERSION: &'static str;
}

/// `wallet.credited`: money entered a player's cash (deposit, adjustment).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WalletCredited {
    pub player_id: PlayerId,
    pub currency: Currency,
    pub amount: Amount,
    pub reason: crate::wallet::MovementReason,
    pub entry_id: String,
    /// The operator whose token made this back-office write (none when a domain made it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<crate::operators::OperatorRef>,
}
impl EventPayload for WalletCredited {
    const NAME: &'static str = "wallet.credited";
    const VERSION: &'static str = "2";
}

/// `wallet.debited`: money left a player's cash (withdrawal, adjustment).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WalletDebited {
    pub player_id: PlayerId,
    pub currency: Currency,
    pub amount: Amount,
    pub reason: crate::wallet::MovementReason,
    pub entry_id: String,
    /// The operator whose token made this back-office write (none when a domain made it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<crate::operators::OperatorRef>,
}
impl EventPayload for WalletDebited {
    const NAME: &'static str = "wallet.debited";
    const VERSION: &'static str = "2";
}

/// `wallet.hold`: a stake moved from cash to held.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WalletHold {
    pub hold_id: String,
    pub player_id: PlayerId,
    pub round_id: RoundId,
    pub bet_id: BetId,
    pub currency: Currency,
    pub amount: Amount,
    /// The operator whose token made this back-office write (none when a domain made it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<crate::operators::OperatorRef>,
}
impl EventPayload for WalletHold {
    const NAME: &'static str = "wallet.hold";
    const VERSION: &'static str = "2";
}

/// One player's part of a settled round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SettledPart {
    pub player_id: PlayerId,
    pub currency: Currency,
    /// Total stake released from held.
    pub stake: Amount,
    /// Paid to cash: `stake + delta`.
    pub payout: Amount,
    pub bet_ids: Vec<BetId>,
}

/// `wallet.settled`: a round's holds released and payouts posted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WalletSettled {
    pub round_id: RoundId,
    pub parts: Vec<SettledPart>,
    /// The operator whose token made this back-office write (none when a domain made it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<crate::operators::OperatorRef>,
}
impl EventPayload for WalletSettled {
    const NAME: &'static str = "wallet.settled";
    const VERSION: &'static str = "2";
}

/// `player.registered`: a player opened an account in this cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlayerRegistered {
    pub player: crate::players::Player,
}
impl EventPayload for PlayerRegistered {
    const NAME: &'static str = "player.registered";
    const VERSION: &'static str = "2";
}

/// `player.login`: a player logged in (a new session).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlayerLogin {
    pub player_id: crate::PlayerId,
    pub session_id: String,
    /// The client's address as the cell saw it (the router's `X-Forwarded-For` hop), if known.
    pub address: Option<String>,
}
impl EventPayload for PlayerLogin {
    const NAME: &'static str = "player.login";
    const VERSION: &'static str = "1";
}

/// `player.login_failed`: a login was refused (a wrong password, an unknown player, or
/// throttled).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlayerLoginFailed {
    pub player_id: crate::PlayerId,
    pub address: Option<String>,
    /// `INVALID_CREDENTIALS` or `LOGIN_THROTTLED`.
    pub reason: String,
}
impl EventPayload for PlayerLoginFailed {
    const NAME: &'static str = "player.login_failed";
    const VERSION: &'static str = "1";
}

/// `rg.limit_set`: a limit took effect at once (a new one, a decrease).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RgLimitSet {
    pub player_id: PlayerId,
    pub kind: crate::limits::LimitKind,
    pub period: crate::region::LimitPeriod,
    /// `null`: no limit.
    pub amount: Option<Amount>,
}
impl EventPayload for RgLimitSet {
    const NAME: &'static str = "rg.limit_set";
    const VERSION: &'static str = "1";
}

/// `rg.limit_pending`: an increase (or removal) waits for the region's cooling-off period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RgLimitPending {
    pub player_id: PlayerId,
    pub kind: crate::limits::LimitKind,
    pub period: crate::region::LimitPeriod,
    pub amount: Option<Amount>,
    pub effective_at: chrono::DateTime<chrono::Utc>,
}
impl EventPayload for RgLimitPending {
    const NAME: &'static str = "rg.limit_pending";
    const VERSION: &'static str = "1";
}

/// `rg.timeout_started`: no deposit and no bet until `until`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RgTimeoutStarted {
    pub player_id: PlayerId,
    pub until: chrono::DateTime<chrono::Utc>,
}
impl EventPayload for RgTimeoutStarted {
    const NAME: &'static str = "rg.timeout_started";
    const VERSION: &'static str = "1";
}

/// `rg.self_exclusion_started`: the player excluded themselves here until `until`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RgSelfExclusionStarted {
    pub player_id: PlayerId,
    pub until: chrono::DateTime<chrono::Utc>,
}
impl EventPayload for RgSelfExclusionStarted {
    const NAME: &'static str = "rg.self_exclusion_started";
    const VERSION: &'static str = "1";
}

/// `self_exclusion.checked`: what a self-exclusion register said of a player, and when it was
/// asked (`registration`, `login`, `deposit`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SelfExclusionChecked {
    pub player_id: PlayerId,
    /// GAMSTOP, ROFUS, SPELPAUS, RGIAJ.
    pub register: String,
    /// `excluded`, `notExcluded`, `previouslyExcluded`.
    pub answer: String,
    pub at: String,
}
impl EventPayload for SelfExclusionChecked {
    const NAME: &'static str = "self_exclusion.checked";
    const VERSION: &'static str = "1";
}

/// `aml.alert`: screening or a rule opened a case; the player's withdrawals are held.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AmlAlert {
    pub player_id: PlayerId,
    pub case_id: String,
    pub rule: String,
}
impl EventPayload for AmlAlert {
    const NAME: &'static str = "aml.alert";
    const VERSION: &'static str = "1";
}

/// `aml.case_decided`: the compliance role decided a case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AmlCaseDecided {
    pub player_id: PlayerId,
    pub case_id: String,
    pub decision: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<crate::operators::OperatorRef>,
}
impl EventPayload for AmlCaseDecided {
    const NAME: &'static str = "aml.case_decided";
    const VERSION: &'static str = "1";
}

/// `kyc.requested`: the cell asked its KYC vendor to verify a new player's identity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KycRequested {
    pub player_id: PlayerId,
    /// The vendor's id of the check.
    pub check_id: String,
    pub vendor: String,
}
impl EventPayload for KycRequested {
    const NAME: &'static str = "kyc.requested";
    const VERSION: &'static str = "1";
}

/// `kyc.verified`: the vendor's signed webhook says the player is who they said.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KycVerified {
    pub player_id: PlayerId,
    pub check_id: String,
    pub vendor: String,
}
impl EventPayload for KycVerified {
    const NAME: &'static str = "kyc.verified";
    const VERSION: &'static str = "1";
}

/// `kyc.failed`: the vendor could not verify the player; they may not deposit or play.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KycFailed {
    pub player_id: PlayerId,
    pub check_id: String,
    pub vendor: String,
    /// The vendor's reason, as it gave it.
    pub reason: String,
}
impl EventPayload for KycFailed {
    const NAME: &'static str = "kyc.failed";
    const VERSION: &'static str = "1";
}
