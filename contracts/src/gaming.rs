//! Gaming shapes: the platform's provider protocol (`seamless-v1`), the second dialect (`pulse`),
//! and the operations every dialect normalises into (DESIGN.md section 6, gaming).
//!
//! Providers run the rounds; the cell is the seamless wallet they call. Every dialect's call
//! becomes one of a few domain operations (bet, win, rollback, end of round, balance) on the same
//! round lifecycle, and produces the same events.

use crate::{Amount, BetId, Currency, PlayerId, RoundId, TransactionId};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Version of the `seamless-v1` request and response shapes (2: a transaction id is its own
/// `TransactionId`, no longer a `BetId`; the JSON is unchanged. 3: an amount has no leading zeros,
/// at most 12 digits and 8 decimals).
pub const SEAMLESS_V1_VERSION: &str = "3";
/// Version of the `pulse` request and response shapes (2: as seamless-v1's).
pub const PULSE_VERSION: &str = "2";

/// Where a bet is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BetStatus {
    /// Stake held, outcome pending.
    Open,
    /// The player's part of the round closed: the stake went to game revenue.
    Settled,
    /// Refunded at the provider's request.
    RolledBack,
    /// Refunded because the round outlived the provider's timeout.
    Voided,
}

/// How a player's part of a round ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RoundStatus {
    Settled,
    Voided,
}

// ---- seamless-v1 ------------------------------------------------------------------------------

/// `POST /gaming/{provider}/bet`: hold the stake.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeamlessBet {
    pub transaction_id: TransactionId,
    pub player_id: PlayerId,
    pub round_id: RoundId,
    pub game_id: String,
    pub amount: Amount,
    pub currency: String,
}

/// `POST /gaming/{provider}/win`: credit a payout (may be `"0.00"`); `closeRound` settles the
/// player's part of the round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeamlessWin {
    pub transaction_id: TransactionId,
    pub player_id: PlayerId,
    pub round_id: RoundId,
    pub amount: Amount,
    pub currency: String,
    #[serde(default)]
    pub close_round: bool,
}

/// `POST /gaming/{provider}/rollback`: refund the bet `refTransactionId`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeamlessRollback {
    pub transaction_id: TransactionId,
    pub player_id: PlayerId,
    pub round_id: RoundId,
    pub ref_transaction_id: TransactionId,
}

/// `POST /gaming/{provider}/balance`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeamlessBalance {
    pub player_id: PlayerId,
    pub currency: String,
}

/// Every successful `seamless-v1` answer. `transactionId` is absent for `balance`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SeamlessResponse {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<TransactionId>,
    /// The player's cash after the call.
    pub balance: Amount,
    pub currency: Currency,
}

// ---- pulse ------------------------------------------------------------------------------------
// Modelled on how aggregator-style seamless wallets (Pragmatic Play, Relax Gaming) differ from
// ours: other call and field names, integer minor units, a signature inside the body over the
// sorted parameters, a separate `endRound`, and every domain outcome answered as HTTP 200 with a
// numeric error code.

/// `POST /gaming/{provider}/debit`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PulseDebit {
    pub tx_id: TransactionId,
    pub customer_id: PlayerId,
    pub round_ref: RoundId,
    pub game_ref: String,
    pub amount_minor: i64,
    pub currency_code: String,
    /// Unix milliseconds.
    pub timestamp: i64,
    pub hash: String,
}

/// `POST /gaming/{provider}/credit`: a payout; the round stays open until `endRound`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PulseCredit {
    pub tx_id: TransactionId,
    pub customer_id: PlayerId,
    pub round_ref: RoundId,
    pub amount_minor: i64,
    pub currency_code: String,
    pub timestamp: i64,
    pub hash: String,
}

/// `POST /gaming/{provider}/cancel`: refund the debit `originalTxId`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PulseCancel {
    pub tx_id: TransactionId,
    pub customer_id: PlayerId,
    pub round_ref: RoundId,
    pub original_tx_id: TransactionId,
    pub timestamp: i64,
    pub hash: String,
}

/// `POST /gaming/{provider}/endRound`: the player's part of the round is over.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PulseEndRound {
    pub customer_id: PlayerId,
    pub round_ref: RoundId,
    pub timestamp: i64,
    pub hash: String,
}

/// `POST /gaming/{provider}/getBalance`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PulseGetBalance {
    pub customer_id: PlayerId,
    pub currency_code: String,
    pub timestamp: i64,
    pub hash: String,
}

/// Every `pulse` answer: `error` 0 is success; otherwise `error` and `description` say why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PulseResponse {
    pub error: u16,
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tx_id: Option<TransactionId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balance_minor: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency_code: Option<Currency>,
    /// The platform's stable code for the refusal (ours, not the dialect's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

// ---- ops --------------------------------------------------------------------------------------

/// `POST /ops/providers/{provider}/maintenance`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MaintenanceRequest {
    pub maintenance: bool,
    /// Why, for the log: not blank.
    #[schemars(length(min = 1, max = 500), regex(pattern = r"\S"))]
    pub reason: String,
}

/// A provider as `GET /ops/providers` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProviderStatus {
    pub provider: String,
    pub dialect: String,
    /// Whether this cell has the provider's secret: without it every call is refused with 503
    /// `PROVIDER_NOT_CONFIGURED` (version 2).
    pub configured: bool,
    pub maintenance: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub round_timeout_seconds: u64,
}

// ---- events -----------------------------------------------------------------------------------

/// `bet.placed`: a provider's bet was accepted and its stake held.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BetPlaced {
    pub provider: String,
    pub round_id: RoundId,
    pub bet_id: BetId,
    pub player_id: PlayerId,
    pub game_id: String,
    pub currency: Currency,
    pub amount: Amount,
    pub status: BetStatus,
}
impl crate::events::EventPayload for BetPlaced {
    const NAME: &'static str = "bet.placed";
    const VERSION: &'static str = "2";
}

/// `bet.won`: a payout credited to a player's open bets of a round (the round may stay open).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BetWon {
    pub provider: String,
    pub round_id: RoundId,
    pub transaction_id: TransactionId,
    pub player_id: PlayerId,
    pub bet_ids: Vec<BetId>,
    pub currency: Currency,
    pub amount: Amount,
    pub status: BetStatus,
}
impl crate::events::EventPayload for BetWon {
    const NAME: &'static str = "bet.won";
    /// 2: `transactionId` is a `TransactionId` (the JSON is unchanged).
    const VERSION: &'static str = "3";
}

/// `bet.rolled_back`: a bet refunded at the provider's request, once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BetRolledBack {
    pub provider: String,
    pub round_id: RoundId,
    pub bet_id: BetId,
    pub transaction_id: TransactionId,
    pub player_id: PlayerId,
    pub currency: Currency,
    pub amount: Amount,
    pub status: BetStatus,
}
impl crate::events::EventPayload for BetRolledBack {
    const NAME: &'static str = "bet.rolled_back";
    /// 2: `transactionId` is a `TransactionId` (the JSON is unchanged).
    const VERSION: &'static str = "3";
}

/// One player's part of a round when it ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoundPart {
    pub player_id: PlayerId,
    pub bet_ids: Vec<BetId>,
    pub currency: Currency,
    /// Stakes of the bets that ended here.
    pub stake: Amount,
    /// Payouts credited to these bets during the round.
    pub won: Amount,
    /// Stakes given back (a void).
    pub refunded: Amount,
}

/// `round.settled`: one or more players' parts of a round ended, settled or voided.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoundSettled {
    pub provider: String,
    pub round_id: RoundId,
    pub status: RoundStatus,
    pub parts: Vec<RoundPart>,
}
impl crate::events::EventPayload for RoundSettled {
    const NAME: &'static str = "round.settled";
    const VERSION: &'static str = "2";
}
