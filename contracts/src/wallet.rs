//! Wallet API shapes (DESIGN.md section 4). Amounts are decimal strings.

use crate::{Amount, BetId, Currency, PlayerId, RoundId};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Version of the wallet API shapes; bump with any change to them.
pub const WALLET_API_VERSION: &str = "3";
/// Most operations one settle carries.
pub const SETTLE_OPERATIONS_MAX: usize = 500;

/// Why money is credited or debited outside a bet: what a ledger reader sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MovementReason {
    Deposit,
    Withdrawal,
    Adjustment,
    Correction,
}

/// `POST /wallet/credit` and `POST /wallet/debit`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(transform = crate::money::positive_amount_rules)]
pub struct MovementRequest {
    pub player_id: PlayerId,
    #[schemars(with = "crate::Currency")]
    pub currency: String,
    pub amount: Amount,
    pub reason: MovementReason,
    /// The payment method a deposit came from or a withdrawal goes to, as the payment provider
    /// names it (a token such as `card:tok_4242` or `bank:GB29…1234`, never a full card number):
    /// AML rules count the methods a player uses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub payment_method: Option<String>,
}

/// `POST /wallet/hold`: move a stake from cash to held for an open bet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(transform = crate::money::positive_amount_rules)]
pub struct HoldRequest {
    pub player_id: PlayerId,
    pub round_id: RoundId,
    pub bet_id: BetId,
    #[schemars(with = "crate::Currency")]
    pub currency: String,
    pub amount: Amount,
}

/// One player's outcome in `POST /wallet/settle`: their held stake goes back to cash plus `delta`
/// (so `delta = -stake` is a loss, `0` a refund, `+x` a win of `x` over the stake).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(transform = crate::money::signed_delta_rules)]
pub struct SettleOperation {
    pub player_id: PlayerId,
    /// Settles only this bet's hold; without it, all of the player's open holds in the round.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bet_id: Option<BetId>,
    pub delta: Amount,
    #[schemars(with = "crate::Currency")]
    pub currency: String,
}

/// `POST /wallet/settle`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SettleRequest {
    pub round_id: RoundId,
    /// 1 to [`SETTLE_OPERATIONS_MAX`], each hold settled at most once.
    #[schemars(length(min = 1, max = 500))]
    pub operations: Vec<SettleOperation>,
}

/// A player's balances in one currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Balance {
    pub player_id: PlayerId,
    pub currency: Currency,
    pub cash: Amount,
    pub bonus: Amount,
    pub held: Amount,
}

/// Answer to credit and debit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MovementResponse {
    pub balance: Balance,
}

/// Answer to hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HoldResponse {
    pub hold_id: String,
    pub balance: Balance,
}

/// Answer to settle: the balances of every player in the round after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SettleResponse {
    pub balances: Vec<Balance>,
}

/// Answer to `GET /wallet/{playerId}/balance`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BalanceResponse {
    pub player_id: PlayerId,
    pub currency: Currency,
    pub cash: Amount,
    pub bonus: Amount,
    pub held: Amount,
    /// What the player owes after a chargeback larger than their cash (0 otherwise); their next
    /// deposits repay it first.
    pub debt: Amount,
    /// The instant the balance was computed for, when `as_of` was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_of: Option<chrono::DateTime<chrono::Utc>>,
}
