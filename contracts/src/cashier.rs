//! The cashier's shapes: a player's deposits through a payment provider (PSP), the payments as
//! the player and the back office see them, and the cashier's events.

use crate::{Amount, Currency, PlayerId};
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Version of the cashier's API shapes and events.
pub const CASHIER_VERSION: &str = "1";

/// `POST /cashier/deposits`: the player asks to pay `amount` in through `psp` with a payment
/// method the PSP tokenised (`card:tok_...`); nothing is credited until the PSP confirms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(transform = crate::money::positive_amount_rules)]
pub struct DepositRequest {
    pub player_id: PlayerId,
    /// A PSP of this cell (`config/psps`).
    #[schemars(length(min = 1, max = 40))]
    pub psp: String,
    pub amount: Amount,
    #[schemars(with = "crate::Currency")]
    pub currency: String,
    /// The PSP's token for the card or account (never a card number).
    #[schemars(length(min = 1, max = 64))]
    pub payment_method: String,
}

/// `POST /cashier/withdrawals`: the player asks to be paid `amount` out through `psp`, to a
/// payment method they deposited with. The amount leaves their cash at once (held for the
/// withdrawal) and comes back if the payout fails or is refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(transform = crate::money::positive_amount_rules)]
pub struct WithdrawalRequest {
    pub player_id: PlayerId,
    #[schemars(length(min = 1, max = 40))]
    pub psp: String,
    pub amount: Amount,
    #[schemars(with = "crate::Currency")]
    pub currency: String,
    #[schemars(length(min = 1, max = 64))]
    pub payment_method: String,
}

/// `POST /cashier/withdrawals/{id}/approve|reject` (the finance role): why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WithdrawalDecision {
    #[schemars(length(min = 1, max = 500))]
    pub reason: String,
}

/// `GET /cashier/withdrawals`: the withdrawals waiting for the finance role, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WithdrawalQueue {
    pub withdrawals: Vec<Payment>,
}

/// Where a payment stands. A deposit: `pending` (the PSP has it), `authorised`, `captured` (the
/// wallet is credited, once), or `failed`. A withdrawal: `pending_approval` (the finance role
/// decides), `approved` (the payout is with the PSP), `paid`, `failed` (the PSP could not pay:
/// the money is back in cash), `rejected` or `cancelled` (back in cash too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    Pending,
    Authorised,
    Captured,
    Failed,
    PendingApproval,
    Approved,
    Paid,
    Rejected,
    Cancelled,
    /// A captured deposit the PSP took back: the amount left the player's cash, and what their
    /// cash could not cover is their debt.
    ChargedBack,
    /// A captured deposit the operator gave back through the PSP (the same entry as a chargeback).
    Refunded,
}

/// A payment as the player and the back office see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Payment {
    /// The cell's id of the payment (`dep_...`), the PSP's merchant reference.
    pub id: String,
    pub player_id: PlayerId,
    pub kind: PaymentKind,
    pub psp: String,
    /// The PSP's reference, once it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub psp_reference: Option<String>,
    pub amount: Amount,
    pub currency: Currency,
    pub payment_method: String,
    pub status: PaymentStatus,
    /// Why it failed, as the PSP said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The ledger entry that credited it (a deposit) or held it (a withdrawal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry_id: Option<String>,
    /// Bank push: where the player approves the deposit at their bank.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_url: Option<String>,
    /// Why a withdrawal waits for the finance role, or how they decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaymentKind {
    Deposit,
    Withdrawal,
}

/// `GET /cashier/players/{id}/transactions`: the player's payments, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Transactions {
    pub player_id: PlayerId,
    pub payments: Vec<Payment>,
}

/// `payment.intent_created`: a deposit was handed to its PSP.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentIntentCreated {
    pub player_id: PlayerId,
    pub payment_id: String,
    pub psp: String,
    pub psp_reference: String,
    pub amount: Amount,
    pub currency: Currency,
}
impl crate::events::EventPayload for PaymentIntentCreated {
    const NAME: &'static str = "payment.intent_created";
    const VERSION: &'static str = CASHIER_VERSION;
}

/// `payment.confirmed`: the PSP captured a deposit and the wallet was credited (once).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentConfirmed {
    pub player_id: PlayerId,
    pub payment_id: String,
    pub psp: String,
    pub amount: Amount,
    pub currency: Currency,
    pub entry_id: String,
}
impl crate::events::EventPayload for PaymentConfirmed {
    const NAME: &'static str = "payment.confirmed";
    const VERSION: &'static str = CASHIER_VERSION;
}

/// `payment.failed`: the PSP refused the payment (or the cell refused to take it); nothing moved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentFailed {
    pub player_id: PlayerId,
    pub payment_id: String,
    pub psp: String,
    pub reason: String,
}
impl crate::events::EventPayload for PaymentFailed {
    const NAME: &'static str = "payment.failed";
    const VERSION: &'static str = CASHIER_VERSION;
}

/// `cashier.webhook.received`: a PSP's notification, verified, exactly as it came (its raw body),
/// chained in the audit log before anything acts on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CashierWebhookReceived {
    pub psp: String,
    /// The PSP's event id (deduplication is by it).
    pub event_id: String,
    /// The notification's body, as received.
    pub body: String,
}
impl crate::events::EventPayload for CashierWebhookReceived {
    const NAME: &'static str = "cashier.webhook.received";
    const VERSION: &'static str = CASHIER_VERSION;
}

/// `payout.requested`: a player asked for a withdrawal; the amount left their cash, held.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PayoutRequested {
    pub player_id: PlayerId,
    pub payment_id: String,
    pub psp: String,
    pub amount: Amount,
    pub currency: Currency,
    /// Why it waits for the finance role, when it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<String>,
}
impl crate::events::EventPayload for PayoutRequested {
    const NAME: &'static str = "payout.requested";
    const VERSION: &'static str = CASHIER_VERSION;
}

/// `payout.approved`: the checks passed (or the finance role approved); the PSP is asked to pay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PayoutApproved {
    pub player_id: PlayerId,
    pub payment_id: String,
    /// `automatic`, or the operator's role and token id.
    pub by: String,
}
impl crate::events::EventPayload for PayoutApproved {
    const NAME: &'static str = "payout.approved";
    const VERSION: &'static str = CASHIER_VERSION;
}

/// `payout.paid`: the PSP paid the player; the held amount went to its clearing account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PayoutPaid {
    pub player_id: PlayerId,
    pub payment_id: String,
    pub psp: String,
    pub amount: Amount,
    pub currency: Currency,
}
impl crate::events::EventPayload for PayoutPaid {
    const NAME: &'static str = "payout.paid";
    const VERSION: &'static str = CASHIER_VERSION;
}

/// `payout.failed`: the PSP could not pay, the finance role rejected it or the player cancelled
/// it; the held amount is back in the player's cash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PayoutFailed {
    pub player_id: PlayerId,
    pub payment_id: String,
    pub status: PaymentStatus,
    pub reason: String,
}
impl crate::events::EventPayload for PayoutFailed {
    const NAME: &'static str = "payout.failed";
    const VERSION: &'static str = CASHIER_VERSION;
}

/// `chargeback.received`: the PSP took a captured deposit back; a compensating entry moved it out
/// of the player's cash, and into their debt for what the cash could not cover.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChargebackReceived {
    pub player_id: PlayerId,
    pub payment_id: String,
    pub psp: String,
    pub amount: Amount,
    pub currency: Currency,
    /// What the player owes after it.
    pub debt: Amount,
    pub entry_id: String,
}
impl crate::events::EventPayload for ChargebackReceived {
    const NAME: &'static str = "chargeback.received";
    const VERSION: &'static str = CASHIER_VERSION;
}

/// One difference between a PSP's settlement report and the cell's books for a day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReconciliationDifference {
    /// `missing_in_ledger`, `missing_at_psp`, `amount_mismatch` or `duplicate_at_psp`.
    pub kind: String,
    /// `CAPTURE`, `PAYOUT` or `CHARGEBACK`.
    #[serde(rename = "type")]
    pub line_type: String,
    /// The cell's payment id.
    pub payment_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub psp_amount: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ledger_amount: Option<String>,
}

/// `GET /ops/reconciliation?psp=ID&date=YYYY-MM-DD` and `cell cashier reconcile`: a PSP's
/// settlement report for a day against what the cell booked that day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Reconciliation {
    pub psp: String,
    pub date: chrono::NaiveDate,
    /// Lines on both sides, equal.
    pub matched: usize,
    pub differences: Vec<ReconciliationDifference>,
}

/// `payment.refunded`: a captured deposit went back to the player through the PSP (the operator
/// refunded it, or the cell could not credit it); the amount left their cash (or never reached it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRefunded {
    pub player_id: PlayerId,
    pub payment_id: String,
    pub psp: String,
    pub amount: Amount,
    pub currency: Currency,
    /// What the player owes after it.
    pub debt: Amount,
    /// The compensating entry, when the deposit had been credited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry_id: Option<String>,
}
impl crate::events::EventPayload for PaymentRefunded {
    const NAME: &'static str = "payment.refunded";
    const VERSION: &'static str = CASHIER_VERSION;
}
