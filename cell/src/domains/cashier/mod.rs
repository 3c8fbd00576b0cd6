//! The cashier: players' deposits through payment providers (PSPs), credited to the wallet exactly
//! once, when the PSP confirms, and their withdrawals, held at once and paid out by the PSP (or
//! returned); chargebacks and refunds as compensating entries; each day's reconciliation with the
//! PSP's settlement report.
//!
//! A deposit, step by step:
//! 1. `CreateDeposit` on the writer checks the entry it will end in against compliance's gates
//!    (limits, KYC, exclusion, location), then records the payment `pending`, under the player's
//!    idempotency key.
//! 2. The PSP is asked to take it ([`psps::Psp::create_payment`]); `AttachReference` records its
//!    reference (`payment.intent_created`), or `FailPayment` its failure.
//! 3. The PSP's signed notifications (`POST /cashier/webhooks/{psp}`) are verified, then
//!    `HandleNotification` on the writer deduplicates them by event id, chains each one as it came
//!    (`cashier.webhook.received`) and moves the payment on: `AUTHORISATION` → `authorised` (and
//!    the cell captures it), `CAPTURE` → the deposit entry is posted (`payment.confirmed`), a
//!    refusal → `failed` (`payment.failed`). A notification about a payment the cell does not know
//!    is parked and tried again, never dropped.
//! 4. The sweeper ([`sweeper`]) redoes what did not happen: it asks the PSP about a deposit whose
//!    answer was lost, captures what is authorised, gives back what the ledger refused after the
//!    PSP captured it, pays out approved withdrawals and retries parked notifications.
//!
//! A withdrawal: `CreateWithdrawal` posts its hold (cash → `withdrawals-pending`, a `withdrawal`
//! entry, so compliance's gates run on it: AML holds, KYC, little play) and checks it: to a method
//! the player deposited with (closed loop), under the region's review amount. If both hold it is
//! `approved` and the PSP is asked to pay; otherwise it waits for the finance role
//! (`DecideWithdrawal`), or the player cancels it where the region allows (`CancelWithdrawal`).
//! `PAYOUT_PAID` moves the held amount to the PSP's clearing account; `PAYOUT_FAILED`, a rejection
//! or a cancellation returns it to cash. Nothing is rewritten: each step is an entry.

mod keys;
pub mod psps;
mod room;
mod sweeper;

pub use room::CashierRoom;
pub use sweeper::{spawn_sweeper, SweepTimes};

use crate::ledger::{
    or_refuse, Account, Entry, HouseAccount, KernelTx, LedgerCommand, LedgerRefusal, Posting, PostingKind, Refusal,
};
use crate::store::{Store, StoreError, Transaction};
use contracts::cashier::{
    CashierWebhookReceived, Payment, PaymentConfirmed, PaymentFailed, PaymentIntentCreated, PaymentKind, PaymentStatus,
};
use contracts::{Amount, CellCode, CountryCode, Money, PlayerId};
use psps::{Notification, Psp};
use std::sync::Arc;

/// Why the cashier refused.
#[derive(Debug, thiserror::Error)]
pub enum CashierError {
    #[error("no PSP `{0}` here")]
    UnknownPsp(String),
    #[error("PSP {psp} does not take {currency}")]
    CurrencyNotTaken { psp: String, currency: String },
    #[error("player {player}'s account is in {account}, the deposit in {requested}")]
    AccountCurrency { player: String, account: &'static str, requested: &'static str },
    #[error("no payment `{0}`")]
    UnknownPayment(String),
    #[error("{0}; nothing was done: try again shortly")]
    PspUnavailable(String),
    #[error("player {player} owes {owed}: a deposit settles it before any withdrawal")]
    DebtOutstanding { player: String, owed: String },
    #[error("withdrawal {id} is {status:?}: {what}")]
    NotPending { id: String, status: PaymentStatus, what: &'static str },
    #[error(transparent)]
    Ledger(#[from] LedgerRefusal),
}

impl Refusal for CashierError {
    fn code(&self) -> CellCode {
        match self {
            CashierError::UnknownPsp(_) => CellCode::PspNotFound,
            CashierError::CurrencyNotTaken { .. } | CashierError::AccountCurrency { .. } => CellCode::CurrencyMismatch,
            CashierError::UnknownPayment(_) => CellCode::PaymentNotFound,
            CashierError::PspUnavailable(_) => CellCode::PspUnavailable,
            CashierError::NotPending { .. } => CellCode::WithdrawalNotPending,
            CashierError::DebtOutstanding { .. } => CellCode::DebtOutstanding,
            CashierError::Ledger(e) => e.code(),
        }
    }
    fn status(&self) -> u16 {
        match self {
            CashierError::UnknownPsp(_) | CashierError::UnknownPayment(_) => 404,
            CashierError::CurrencyNotTaken { .. } | CashierError::AccountCurrency { .. } => 422,
            CashierError::PspUnavailable(_) => 503,
            CashierError::NotPending { .. } => 409,
            CashierError::DebtOutstanding { .. } => 422,
            CashierError::Ledger(e) => e.status(),
        }
    }
}

/// The cashier of one cell: its PSPs, and the URL they call back.
pub struct Cashier {
    psps: Vec<Psp>,
    /// This cell's base URL as PSPs reach it (`https://127.0.0.1:7101`).
    callback_base: String,
    store: Arc<dyn Store>,
}

impl Cashier {
    pub fn new(psps: Vec<Psp>, callback_base: String, store: Arc<dyn Store>) -> Cashier {
        Cashier { psps, callback_base, store }
    }

    pub fn psp(&self, id: &str) -> Option<&Psp> {
        self.psps.iter().find(|p| p.config.id == id)
    }

    /// Where `psp` sends its notifications.
    pub fn notification_url(&self, psp: &str) -> String {
        format!("{}/cashier/webhooks/{psp}", self.callback_base.trim_end_matches('/'))
    }

    /// A player's payments, newest first. Blocking.
    pub fn transactions(&self, player: &PlayerId) -> Result<Vec<Payment>, StoreError> {
        player_payments(self.store.begin_snapshot_reads()?.as_mut(), player)
    }
}

/// A notification kept until its payment is known.
#[derive(serde::Serialize, serde::Deserialize)]
struct Parked {
    psp: String,
    notification: Notification,
    raw: String,
    /// Why: an unknown payment, or what the ledger refused.
    #[serde(default)]
    why: String,
}

fn read_payment(tx: &mut dyn Transaction, id: &str) -> Result<Option<Payment>, StoreError> {
    let key = keys::payment(id);
    match tx.get(&key)? {
        Some(bytes) => rmp_serde::from_slice(&bytes).map(Some).map_err(|e| StoreError::corrupt(&key, e)),
        None => Ok(None),
    }
}

/// The ids of a player's payments the store lists, newest first (the newest 1,000).
fn player_payment_ids(tx: &mut dyn Transaction, player: &PlayerId) -> Result<Vec<String>, StoreError> {
    let (begin, end) = keys::player_payments(player.as_str());
    let mut ids = Vec::new();
    for (key, _) in tx.get_range(&begin, &end, 1000, true)? {
        let (_, _, _, id): (String, String, i64, String) =
            crate::store::subspaces::cashier().unpack(&key).map_err(|e| StoreError::corrupt(&key, e))?;
        ids.push(id);
    }
    Ok(ids)
}

/// A player's payments, newest first (the newest 1,000), as the store holds them.
fn player_payments(tx: &mut dyn Transaction, player: &PlayerId) -> Result<Vec<Payment>, StoreError> {
    let mut payments = Vec::new();
    for id in player_payment_ids(tx, player)? {
        if let Some(payment) = read_payment(tx, &id)? {
            payments.push(payment);
        }
    }
    Ok(payments)
}

/// A new payment of `kind` for `money`, as of `now`.
#[allow(clippy::too_many_arguments)]
fn new_payment(
    id: &str,
    player: &PlayerId,
    kind: PaymentKind,
    psp: &str,
    money: Money,
    payment_method: &str,
    status: PaymentStatus,
    now: chrono::DateTime<chrono::Utc>,
) -> Payment {
    Payment {
        id: id.to_owned(),
        player_id: player.clone(),
        kind,
        psp: psp.to_owned(),
        psp_reference: None,
        amount: money.wire(),
        currency: money.currency(),
        payment_method: payment_method.to_owned(),
        status,
        reason: None,
        created_at: now,
        updated_at: now,
        entry_id: None,
        redirect_url: None,
        review: None,
    }
}

/// A payment moves money in the player's own currency only.
fn account_currency(
    tx: &mut KernelTx<'_>,
    player: &PlayerId,
    money: Money,
) -> Result<Result<(), CashierError>, StoreError> {
    let registered = match tx.registered(player)? {
        Ok(registered) => registered,
        Err(refused) => return Ok(Err(refused.into())),
    };
    if registered.currency != money.currency() {
        return Ok(Err(CashierError::AccountCurrency {
            player: player.to_string(),
            account: registered.currency.code(),
            requested: money.currency().code(),
        }));
    }
    Ok(Ok(()))
}

fn write_payment(tx: &mut dyn Transaction, payment: &Payment) -> Result<(), StoreError> {
    tx.set(&keys::payment(&payment.id), &rmp_serde::to_vec_named(payment).expect("a payment encodes"))
}

/// The entry a deposit ends in: from the PSP's clearing account to the player, repaying what they
/// `owe` first (a chargeback's debt), the rest to their cash.
fn deposit_entry<'a>(
    payment: &'a Payment,
    clearing: HouseAccount,
    location: Option<CountryCode>,
    owed: rust_decimal::Decimal,
) -> Entry<'a> {
    let amount = payment.amount.0;
    let repaid = owed.min(amount).max(rust_decimal::Decimal::ZERO);
    let mut postings = Vec::with_capacity(2);
    if !repaid.is_zero() {
        postings.push(Posting { from: Account::House(clearing), to: Account::Debt, amount: repaid });
    }
    if repaid < amount {
        postings.push(Posting { from: Account::House(clearing), to: Account::Cash, amount: amount - repaid });
    }
    Entry {
        player: &payment.player_id,
        currency: payment.currency,
        kind: PostingKind::Deposit,
        label: "deposit",
        reference: format!("{}/{}", payment.psp, payment.id),
        postings,
        stake: None,
        location,
        payment_method: Some(payment.payment_method.clone()),
    }
}

/// A chargeback's compensating entry: the amount back to the PSP's clearing account, from the
/// player's cash as far as it goes and from their debt for the rest.
fn chargeback_entry(
    payment: &Payment,
    clearing: HouseAccount,
    cash: rust_decimal::Decimal,
    amount: rust_decimal::Decimal,
) -> Entry<'_> {
    let from_cash = cash.min(amount).max(rust_decimal::Decimal::ZERO);
    let mut postings = Vec::with_capacity(2);
    if !from_cash.is_zero() {
        postings.push(Posting { from: Account::Cash, to: Account::House(clearing), amount: from_cash });
    }
    if from_cash < amount {
        postings.push(Posting { from: Account::Debt, to: Account::House(clearing), amount: amount - from_cash });
    }
    Entry {
        player: &payment.player_id,
        currency: payment.currency,
        kind: PostingKind::Chargeback,
        label: "chargeback",
        reference: format!("{}/{}", payment.psp, payment.id),
        postings,
        stake: None,
        location: None,
        payment_method: Some(payment.payment_method.clone()),
    }
}

/// `POST /cashier/deposits`, first step: the gates the deposit will pass, then the payment,
/// `pending`. Idempotent under the player's key: a retry answers the same payment.
pub struct CreateDeposit {
    pub id: String,
    pub player: PlayerId,
    pub psp: String,
    pub clearing: HouseAccount,
    pub money: Money,
    pub payment_method: String,
    pub location: Option<CountryCode>,
}

impl LedgerCommand for CreateDeposit {
    type Room = CashierRoom;
    type Answer = Payment;
    type Refusal = CashierError;
    fn kind(&self) -> &'static str {
        "cashier_deposit"
    }
    fn apply(
        &self,
        room: &mut CashierRoom,
        tx: &mut KernelTx<'_>,
    ) -> Result<Result<Payment, CashierError>, StoreError> {
        or_refuse!(account_currency(tx, &self.player, self.money)?);
        let (kind, status) = (PaymentKind::Deposit, PaymentStatus::Pending);
        let payment =
            new_payment(&self.id, &self.player, kind, &self.psp, self.money, &self.payment_method, status, tx.now());
        // Compliance's gates first: a deposit the player may not make never reaches the PSP.
        or_refuse!(tx.would_pass(&deposit_entry(
            &payment,
            self.clearing,
            self.location,
            rust_decimal::Decimal::ZERO
        ))?);
        room.put_new(&payment);
        // Until the PSP's answer is recorded: a cell that stops before it leaves the payment on
        // this list, and the sweeper asks the PSP what became of it.
        tx.store().set(&keys::to_answer(&payment.id), &[])?;
        // Until the PSP's last word on it: past a while, the sweeper asks the PSP.
        tx.store().set(&keys::to_confirm(&payment.id), &[])?;
        Ok(Ok(payment))
    }
}

/// The PSP's answer to a new payment: its reference (`payment.intent_created`), or its failure
/// (`payment.failed`).
pub struct RecordPspAnswer {
    pub id: String,
    pub answer: Result<psps::Created, String>,
}

impl LedgerCommand for RecordPspAnswer {
    type Room = CashierRoom;
    type Answer = Payment;
    type Refusal = CashierError;
    fn kind(&self) -> &'static str {
        "cashier_psp_answer"
    }
    fn apply(
        &self,
        room: &mut CashierRoom,
        tx: &mut KernelTx<'_>,
    ) -> Result<Result<Payment, CashierError>, StoreError> {
        let Some(mut payment) = room.payment(tx.store(), &self.id)? else {
            return Ok(Err(CashierError::UnknownPayment(self.id.clone())));
        };
        payment.updated_at = tx.now();
        tx.store().clear(&keys::to_answer(&payment.id))?;
        match &self.answer {
            Ok(created) => {
                let reference = &created.reference;
                // A notification may have come first and set it: the PSP's word is the same.
                payment.psp_reference.get_or_insert_with(|| reference.clone());
                payment.redirect_url.clone_from(&created.redirect_url);
                tx.event(PaymentIntentCreated {
                    player_id: payment.player_id.clone(),
                    payment_id: payment.id.clone(),
                    psp: payment.psp.clone(),
                    psp_reference: reference.clone(),
                    amount: payment.amount,
                    currency: payment.currency,
                })?;
            }
            Err(why) if payment.status == PaymentStatus::Pending => fail(tx, &mut payment, why.clone())?,
            Err(_) => {}
        }
        off_inquiry_once_final(tx, &payment)?;
        room.put(&payment);
        Ok(Ok(payment))
    }
}

/// A deposit its PSP has had its last word on (captured, refused) leaves the sweeper's inquiry
/// list.
fn off_inquiry_once_final(tx: &mut KernelTx<'_>, payment: &Payment) -> Result<(), StoreError> {
    let waiting = matches!(payment.status, PaymentStatus::Pending | PaymentStatus::Authorised);
    if payment.kind == PaymentKind::Deposit && !waiting {
        tx.store().clear(&keys::to_confirm(&payment.id))?;
    }
    Ok(())
}

/// Books a line with the payment's PSP on `day` (the day the PSP dates it), for reconciliation.
fn book(
    tx: &mut KernelTx<'_>,
    payment: &Payment,
    kind: &str,
    amount: rust_decimal::Decimal,
    day: chrono::NaiveDate,
) -> Result<(), StoreError> {
    let amount = Amount::at_scale(amount, payment.currency.scale());
    tx.store().set(&keys::settled(&day.to_string(), &payment.psp, kind, &payment.id), amount.to_string().as_bytes())
}

/// What a notification says moved, when it says it in the payment's currency: `None` when it
/// names another currency or no amount that parses.
fn notified_amount(n: &Notification, payment: &Payment) -> Option<rust_decimal::Decimal> {
    if n.currency.as_deref().is_some_and(|c| c != payment.currency.code()) {
        return None;
    }
    match &n.amount {
        Some(text) => text.parse().ok(),
        None => Some(payment.amount.0),
    }
}

/// Marks a payment failed, with the PSP's reason (`payment.failed`).
fn fail(tx: &mut KernelTx<'_>, payment: &mut Payment, reason: String) -> Result<(), StoreError> {
    payment.status = PaymentStatus::Failed;
    payment.reason = Some(reason.clone());
    tx.store().clear(&keys::to_capture(&payment.id))?;
    tx.event(PaymentFailed {
        player_id: payment.player_id.clone(),
        payment_id: payment.id.clone(),
        psp: payment.psp.clone(),
        reason,
    })
}

/// What a notification did.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum NotificationOutcome {
    /// Seen before: nothing.
    Duplicate,
    /// About a payment the cell does not know (yet), or a step the ledger refused: kept, tried
    /// again.
    Parked,
    /// Taken, and nothing to do (a late or unknown event code).
    Noted,
    /// Authorised: the cell captures it now.
    Capture(Payment),
    Credited(Payment),
    Failed(Payment),
    /// A withdrawal paid out.
    Paid(Payment),
    /// A deposit taken back.
    ChargedBack(Payment),
    /// A capture the cell could not credit: the cell asks the PSP to give it back.
    RefundDue(Payment),
}

/// A verified notification, on the writer: deduplicated, chained, then applied.
pub struct HandleNotification {
    pub psp: String,
    pub clearing: HouseAccount,
    pub notification: Notification,
    pub raw: String,
    /// A parked notification tried again (already seen and chained).
    pub from_park: bool,
}

impl LedgerCommand for HandleNotification {
    type Room = CashierRoom;
    type Answer = NotificationOutcome;
    type Refusal = CashierError;
    fn kind(&self) -> &'static str {
        "cashier_notification"
    }
    fn apply(
        &self,
        room: &mut CashierRoom,
        tx: &mut KernelTx<'_>,
    ) -> Result<Result<NotificationOutcome, CashierError>, StoreError> {
        let n = &self.notification;
        let parked_key = keys::parked(&self.psp, &n.event_id);
        if !self.from_park {
            if room.seen_before(tx.store(), &self.psp, &n.event_id)? {
                return Ok(Ok(NotificationOutcome::Duplicate));
            }
            tx.event(CashierWebhookReceived {
                psp: self.psp.clone(),
                event_id: n.event_id.clone(),
                body: self.raw.clone(),
            })?;
        }
        // From here on nothing is refused: the notification is seen, so a refusal would lose it.
        // What the ledger refuses is parked with its reason and tried again.
        let park = |tx: &mut KernelTx<'_>, why: String| -> Result<NotificationOutcome, StoreError> {
            let kept = Parked { psp: self.psp.clone(), notification: n.clone(), raw: self.raw.clone(), why };
            tx.store().set(&parked_key, &rmp_serde::to_vec_named(&kept).expect("a notification encodes"))?;
            Ok(NotificationOutcome::Parked)
        };
        let payment = room.payment(tx.store(), &n.merchant_reference)?.filter(|p| p.psp == self.psp);
        let Some(payment) = payment else {
            if !self.from_park {
                tracing::warn!(psp = %self.psp, event = %n.event_id, payment = %n.merchant_reference, "notification about an unknown payment: parked");
                return Ok(Ok(park(tx, "unknown payment".into())?));
            }
            return Ok(Ok(NotificationOutcome::Parked));
        };
        // A take-back that overtook its capture waits for it (a parked capture, a late one).
        let take_back = matches!(n.code.as_str(), "CHARGEBACK" | "REFUND") && n.success;
        let uncaptured = matches!(payment.status, PaymentStatus::Pending | PaymentStatus::Authorised);
        if take_back && payment.kind == PaymentKind::Deposit && uncaptured {
            if !self.from_park {
                return Ok(Ok(park(tx, "a take-back before its capture".into())?));
            }
            return Ok(Ok(NotificationOutcome::Parked));
        }
        if self.from_park {
            tx.store().clear(&parked_key)?;
        }
        match self.apply_to(tx, payment)? {
            Ok((outcome, payment)) => {
                off_inquiry_once_final(tx, &payment)?;
                room.put(&payment);
                Ok(Ok(outcome))
            }
            Err(refused) => {
                tracing::error!(psp = %self.psp, event = %n.event_id, payment = %n.merchant_reference, code = %refused.code(), error = %refused, "the ledger refused a notification's step: parked, tried again");
                Ok(Ok(park(tx, format!("refused: {refused}"))?))
            }
        }
    }
}

impl HandleNotification {
    /// Moves `payment` on as the notification says. Each arm posts before it writes anything
    /// else, so a refusal leaves nothing behind (the caller parks the notification).
    fn apply_to(
        &self,
        tx: &mut KernelTx<'_>,
        mut payment: Payment,
    ) -> Result<Result<(NotificationOutcome, Payment), CashierError>, StoreError> {
        let n = &self.notification;
        // The PSP's settlement report lists the event on the day the PSP says it happened.
        let day = n.event_date.unwrap_or_else(|| tx.now()).date_naive();
        tx.store().clear(&keys::to_answer(&payment.id))?;
        payment.psp_reference.get_or_insert_with(|| n.psp_reference.clone());
        payment.updated_at = tx.now();
        let deposit = payment.kind == PaymentKind::Deposit;
        use PaymentStatus::{Approved, Authorised, Captured, Failed, Paid, Pending};
        let outcome = match (n.code.as_str(), n.success, payment.status) {
            ("AUTHORISATION", true, Pending) => {
                payment.status = Authorised;
                tx.store().set(&keys::to_capture(&payment.id), &[])?;
                NotificationOutcome::Capture(payment.clone())
            }
            ("AUTHORISATION" | "CAPTURE", false, Pending | Authorised) => {
                let reason = n.reason.clone().unwrap_or_else(|| format!("{} refused by the PSP", n.code));
                fail(tx, &mut payment, reason)?;
                NotificationOutcome::Failed(payment.clone())
            }
            // A capture of another amount than the payment's is not credited: the day's
            // reconciliation shows it (missing in the ledger) for finance to settle.
            ("CAPTURE", true, Pending | Authorised) if notified_amount(n, &payment) != Some(payment.amount.0) => {
                tracing::error!(payment = %payment.id, amount = ?n.amount, currency = ?n.currency, "capture of another amount than the payment's: not credited");
                fail(tx, &mut payment, "the PSP captured another amount: not credited".into())?;
                payment.review = Some(format!(
                    "the PSP captured {} {} for a payment of {}: not credited, see the reconciliation",
                    n.amount.as_deref().unwrap_or("?"),
                    n.currency.as_deref().unwrap_or("?"),
                    payment.amount
                ));
                NotificationOutcome::Noted
            }
            // The PSP has the money: credit it, once (a capture can overtake its authorisation).
            ("CAPTURE", true, Pending | Authorised) => {
                let owed = tx.balances(&payment.player_id, payment.currency)?.owed();
                let posted = tx.post_one(deposit_entry(&payment, self.clearing, None, owed))?;
                tx.store().clear(&keys::to_capture(&payment.id))?;
                book(tx, &payment, "CAPTURE", payment.amount.0, day)?;
                match posted {
                    Ok(posted) => {
                        payment.status = Captured;
                        payment.entry_id = Some(posted.seq.to_string());
                        tx.event(PaymentConfirmed {
                            player_id: payment.player_id.clone(),
                            payment_id: payment.id.clone(),
                            psp: payment.psp.clone(),
                            amount: payment.amount,
                            currency: payment.currency,
                            entry_id: posted.seq.to_string(),
                        })?;
                        NotificationOutcome::Credited(payment.clone())
                    }
                    Err(refused) => {
                        // Captured by the PSP, refused here (a limit another deposit reached
                        // meanwhile): not credited; the money goes back to the player, by a
                        // refund (card) or a payout to the account it came from (bank push),
                        // asked for again by the sweeper until the PSP says it is done.
                        let reason = format!("captured, then refused ({}): {refused}; given back", refused.code());
                        tracing::warn!(payment = %payment.id, %reason, "captured deposit not credited: giving it back");
                        fail(tx, &mut payment, reason)?;
                        tx.store().set(&keys::to_refund(&payment.id), &[])?;
                        NotificationOutcome::RefundDue(payment.clone())
                    }
                }
            }
            // Taken back: a chargeback, or a refund the operator asked for (a bank-push deposit
            // is given back by a payout of the deposit itself). A compensating entry.
            ("CHARGEBACK" | "REFUND", true, Captured) | ("PAYOUT_PAID", true, Captured) if deposit => {
                // What the PSP takes back: the notification's amount (part of the payment, at
                // most all of it).
                let taken = notified_amount(n, &payment)
                    .unwrap_or(payment.amount.0)
                    .min(payment.amount.0)
                    .max(rust_decimal::Decimal::ZERO);
                let cash = tx.balances(&payment.player_id, payment.currency)?.cash;
                let posted = or_refuse!(tx.post_one(chargeback_entry(&payment, self.clearing, cash, taken))?);
                let refund = n.code != "CHARGEBACK";
                book(tx, &payment, line_kind(&n.code), taken, day)?;
                payment.status = if refund { PaymentStatus::Refunded } else { PaymentStatus::ChargedBack };
                payment.reason =
                    n.reason.clone().or_else(|| Some(if refund { "refunded" } else { "chargeback" }.into()));
                let (player_id, payment_id, psp) = (payment.player_id.clone(), payment.id.clone(), payment.psp.clone());
                let (amount, currency, entry_id) =
                    (Amount::at_scale(taken, payment.currency.scale()), payment.currency, posted.seq.to_string());
                let debt = Amount::at_scale(posted.after.owed(), payment.currency.scale());
                if refund {
                    tx.event(contracts::cashier::PaymentRefunded {
                        player_id,
                        payment_id,
                        psp,
                        amount,
                        currency,
                        debt,
                        entry_id: Some(entry_id),
                    })?;
                } else {
                    tx.event(contracts::cashier::ChargebackReceived {
                        player_id,
                        payment_id,
                        psp,
                        amount,
                        currency,
                        debt,
                        entry_id,
                    })?;
                }
                NotificationOutcome::ChargedBack(payment.clone())
            }
            // The money of a capture this cell refused, given back (or taken back by the card
            // holder's bank first: no refund is due any more): it never reached the wallet.
            ("REFUND" | "CHARGEBACK", true, Failed) | ("PAYOUT_PAID", true, Failed) if deposit => {
                tx.store().clear(&keys::to_refund(&payment.id))?;
                book(tx, &payment, line_kind(&n.code), payment.amount.0, day)?;
                payment.status =
                    if n.code == "CHARGEBACK" { PaymentStatus::ChargedBack } else { PaymentStatus::Refunded };
                tx.event(contracts::cashier::PaymentRefunded {
                    player_id: payment.player_id.clone(),
                    payment_id: payment.id.clone(),
                    psp: payment.psp.clone(),
                    amount: payment.amount,
                    currency: payment.currency,
                    debt: Amount::at_scale(rust_decimal::Decimal::ZERO, payment.currency.scale()),
                    entry_id: None,
                })?;
                NotificationOutcome::Noted
            }
            // The payout giving a deposit back failed (the account is closed): asking again pays
            // nothing more, so finance takes it from here.
            ("PAYOUT_FAILED", _, Failed | Captured) if deposit => {
                tx.store().clear(&keys::to_refund(&payment.id))?;
                tracing::error!(payment = %payment.id, reason = ?n.reason, "the payout giving a deposit back failed: finance must return it by hand");
                payment.review = Some(format!(
                    "giving it back by payout failed ({}): to return by hand",
                    n.reason.as_deref().unwrap_or("no reason given")
                ));
                NotificationOutcome::Noted
            }
            ("PAYOUT_PAID", true, Approved) => {
                or_refuse!(tx.post_one(settlement_entry(&payment, self.clearing, false))?);
                tx.store().clear(&keys::to_pay_out(&payment.id))?;
                book(tx, &payment, "PAYOUT", payment.amount.0, day)?;
                payment.status = Paid;
                tx.event(contracts::cashier::PayoutPaid {
                    player_id: payment.player_id.clone(),
                    payment_id: payment.id.clone(),
                    psp: payment.psp.clone(),
                    amount: payment.amount,
                    currency: payment.currency,
                })?;
                NotificationOutcome::Paid(payment.clone())
            }
            ("PAYOUT_PAID" | "PAYOUT_FAILED", _, Approved) => {
                let reason = n.reason.clone().unwrap_or_else(|| "the PSP could not pay".into());
                or_refuse!(give_back(tx, &mut payment, self.clearing, Failed, reason)?);
                tx.store().clear(&keys::to_pay_out(&payment.id))?;
                NotificationOutcome::Failed(payment.clone())
            }
            // Money the PSP says moved against a payment already decided the other way (a capture
            // of a failed deposit, a payout of a returned withdrawal, a failure of a paid one, a
            // second take-back of a deposit already taken back): never applied silently. The
            // payment says so for finance; reconciliation shows it.
            ("CAPTURE", true, Failed)
            | ("PAYOUT_PAID", true, Failed)
            | ("PAYOUT_FAILED", _, Paid)
            | ("CHARGEBACK" | "REFUND", true, PaymentStatus::ChargedBack | PaymentStatus::Refunded) => {
                tracing::error!(payment = %payment.id, code = %n.code, status = ?payment.status, "a PSP notification contradicts the payment's state: finance must settle it");
                payment.review = Some(format!(
                    "the PSP said {} ({}) after the payment was {:?}: to settle by hand",
                    n.code, n.event_id, payment.status
                ));
                NotificationOutcome::Noted
            }
            // Late, repeated in another event, or about a payment already decided.
            _ => NotificationOutcome::Noted,
        };
        Ok(Ok((outcome, payment)))
    }
}

/// The settlement report's line type for a notification's code (a payout giving a deposit back
/// is a `PAYOUT` line).
fn line_kind(code: &str) -> &str {
    if code == "PAYOUT_PAID" {
        "PAYOUT"
    } else {
        code
    }
}

/// Captures `payment` at its PSP, a few times with backoff: whether it took. What is not
/// captured stays on the sweeper's list.
pub async fn capture(psp: &Psp, payment: &Payment) -> bool {
    let Some(reference) = &payment.psp_reference else { return false };
    let (amount, currency) = (payment.amount.to_string(), payment.currency.code());
    let mut backoff = std::time::Duration::from_millis(100);
    for attempt in 1..=3 {
        match psp.capture(reference, &amount, currency).await {
            Ok(()) => return true,
            Err(e) => tracing::warn!(payment = %payment.id, attempt, error = %e, "capture failed; trying again"),
        }
        tokio::time::sleep(backoff).await;
        backoff *= 4;
    }
    false
}

/// Asks the PSP to give a captured deposit back (a refund, or a payout for bank push): whether
/// it took. Its notification books it.
pub async fn refund(cashier: &Cashier, psp: &Psp, payment: &Payment) -> bool {
    match psp.refund(payment, &cashier.notification_url(&psp.config.id)).await {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(payment = %payment.id, error = %e, "refund not taken; asked again while it is due");
            false
        }
    }
}

/// Applies a verified notification on the writer, then does what it asks next in the background
/// (a capture, a refund): what fails stays on the sweeper's list.
pub async fn take_notification(
    cashier: &Arc<Cashier>,
    ledger: &crate::ledger::Ledger,
    psp: &Psp,
    notification: Notification,
    raw: String,
    from_park: bool,
    ctx: crate::events::EventContext,
) -> Result<NotificationOutcome, crate::ledger::Failed<CashierError>> {
    let command =
        HandleNotification { psp: psp.config.id.clone(), clearing: psp.clearing, notification, raw, from_park };
    let outcome = ledger.execute_unkeyed(command, ctx).await?.value;
    match &outcome {
        NotificationOutcome::Capture(payment) => {
            let (psp, payment) = (psp.clone(), payment.clone());
            tokio::spawn(async move { capture(&psp, &payment).await });
        }
        NotificationOutcome::RefundDue(payment) => {
            let (cashier, psp, payment) = (cashier.clone(), psp.clone(), payment.clone());
            tokio::spawn(async move { refund(&cashier, &psp, &payment).await });
        }
        _ => {}
    }
    Ok(outcome)
}

/// The house account a withdrawal's amount waits in between the player's cash and the PSP.
pub const WITHDRAWALS_PENDING: HouseAccount = HouseAccount("withdrawals-pending");

/// A withdrawal's hold: the player's cash to `withdrawals-pending`, a `withdrawal` for the gates.
fn hold_entry(payment: &Payment) -> Entry<'_> {
    Entry {
        player: &payment.player_id,
        currency: payment.currency,
        kind: PostingKind::Withdrawal,
        label: "withdrawal",
        reference: format!("{}/{}", payment.psp, payment.id),
        postings: vec![Posting {
            from: Account::Cash,
            to: Account::House(WITHDRAWALS_PENDING),
            amount: payment.amount.0,
        }],
        stake: None,
        location: None,
        payment_method: Some(payment.payment_method.clone()),
    }
}

/// Where a withdrawal's held amount goes: to the PSP's clearing account once paid, or back to the
/// player's cash (`returned`).
fn settlement_entry(payment: &Payment, clearing: HouseAccount, returned: bool) -> Entry<'_> {
    let (to, label) =
        if returned { (Account::Cash, "withdrawal-returned") } else { (Account::House(clearing), "payout") };
    Entry {
        player: &payment.player_id,
        currency: payment.currency,
        kind: PostingKind::Adjustment,
        label,
        reference: format!("{}/{}", payment.psp, payment.id),
        postings: vec![Posting { from: Account::House(WITHDRAWALS_PENDING), to, amount: payment.amount.0 }],
        stake: None,
        location: None,
        payment_method: None,
    }
}

/// Returns a withdrawal's held amount to the player's cash and closes it as `status`
/// (`payout.failed`).
fn give_back(
    tx: &mut KernelTx<'_>,
    payment: &mut Payment,
    clearing: HouseAccount,
    status: PaymentStatus,
    reason: String,
) -> Result<Result<(), LedgerRefusal>, StoreError> {
    if let Err(refused) = tx.post_one(settlement_entry(payment, clearing, true))? {
        return Ok(Err(refused));
    }
    tx.store().clear(&keys::to_review(&payment.id))?;
    payment.status = status;
    payment.reason = Some(reason.clone());
    tx.event(contracts::cashier::PayoutFailed {
        player_id: payment.player_id.clone(),
        payment_id: payment.id.clone(),
        status,
        reason,
    })?;
    Ok(Ok(()))
}

/// `POST /cashier/withdrawals`: the hold (through compliance's gates) and the automatic checks.
/// Idempotent under the player's key.
pub struct CreateWithdrawal {
    pub id: String,
    pub player: PlayerId,
    pub psp: String,
    pub money: Money,
    pub payment_method: String,
    /// Above this, the finance role decides (the region's `[cashier] withdrawal_review_above`).
    pub review_above: Money,
}

impl LedgerCommand for CreateWithdrawal {
    type Room = CashierRoom;
    type Answer = Payment;
    type Refusal = CashierError;
    fn kind(&self) -> &'static str {
        "cashier_withdrawal"
    }
    fn apply(
        &self,
        room: &mut CashierRoom,
        tx: &mut KernelTx<'_>,
    ) -> Result<Result<Payment, CashierError>, StoreError> {
        or_refuse!(account_currency(tx, &self.player, self.money)?);
        or_refuse!(no_debt(tx, &self.player, self.money.currency())?);
        // Closed loop: money goes back the way it came in.
        let deposited_with = room.player_payments(tx.store(), &self.player)?.iter().any(|p| {
            p.kind == PaymentKind::Deposit
                && p.status == PaymentStatus::Captured
                && p.psp == self.psp
                && p.payment_method == self.payment_method
        });
        let review = if !deposited_with {
            Some(format!("closed loop: {} is not a method the player deposited with", self.payment_method))
        } else if self.review_above.currency() == self.money.currency()
            && self.money.amount() > self.review_above.amount()
        {
            Some(format!("above the region's review amount of {}", self.review_above.wire()))
        } else {
            None
        };
        let status = if review.is_some() { PaymentStatus::PendingApproval } else { PaymentStatus::Approved };
        let kind = PaymentKind::Withdrawal;
        let mut payment =
            new_payment(&self.id, &self.player, kind, &self.psp, self.money, &self.payment_method, status, tx.now());
        payment.review.clone_from(&review);
        let posted = or_refuse!(tx.post_one(hold_entry(&payment))?);
        payment.entry_id = Some(posted.seq.to_string());
        room.put_new(&payment);
        tx.event(contracts::cashier::PayoutRequested {
            player_id: payment.player_id.clone(),
            payment_id: payment.id.clone(),
            psp: payment.psp.clone(),
            amount: payment.amount,
            currency: payment.currency,
            review,
        })?;
        if payment.status == PaymentStatus::Approved {
            approve(tx, &payment, "automatic".into())?;
        } else {
            tx.store().set(&keys::to_review(&payment.id), &[])?;
        }
        Ok(Ok(payment))
    }
}

/// A player who owes (a chargeback past their cash) settles that before taking money out.
fn no_debt(
    tx: &mut KernelTx<'_>,
    player: &PlayerId,
    currency: contracts::Currency,
) -> Result<Result<(), CashierError>, StoreError> {
    let owed = tx.balances(player, currency)?.owed();
    if owed > rust_decimal::Decimal::ZERO {
        let owed = Amount::at_scale(owed, currency.scale()).to_string();
        return Ok(Err(CashierError::DebtOutstanding { player: player.to_string(), owed }));
    }
    Ok(Ok(()))
}

/// Marks an approved withdrawal for payout (`payout.approved`).
fn approve(tx: &mut KernelTx<'_>, payment: &Payment, by: String) -> Result<(), StoreError> {
    tx.store().set(&keys::to_pay_out(&payment.id), &[])?;
    tx.event(contracts::cashier::PayoutApproved {
        player_id: payment.player_id.clone(),
        payment_id: payment.id.clone(),
        by,
    })
}

/// The finance role approves or rejects a withdrawal waiting for them; a rejection returns the
/// money to the player's cash.
pub struct DecideWithdrawal {
    pub id: String,
    pub approve: bool,
    pub reason: String,
    pub clearing: HouseAccount,
}

impl LedgerCommand for DecideWithdrawal {
    type Room = CashierRoom;
    type Answer = Payment;
    type Refusal = CashierError;
    fn kind(&self) -> &'static str {
        "cashier_withdrawal_decision"
    }
    fn apply(
        &self,
        room: &mut CashierRoom,
        tx: &mut KernelTx<'_>,
    ) -> Result<Result<Payment, CashierError>, StoreError> {
        let Some(mut payment) = room.payment(tx.store(), &self.id)?.filter(|p| p.kind == PaymentKind::Withdrawal)
        else {
            return Ok(Err(CashierError::UnknownPayment(self.id.clone())));
        };
        if payment.status != PaymentStatus::PendingApproval {
            let what = "only a withdrawal waiting for approval is decided";
            return Ok(Err(CashierError::NotPending { id: payment.id.clone(), status: payment.status, what }));
        }
        let by = tx.operator().map_or_else(|| "finance".to_owned(), |o| format!("{} ({})", o.role, o.token_id));
        payment.updated_at = tx.now();
        payment.review =
            Some(format!("{} by {by}: {}", if self.approve { "approved" } else { "rejected" }, self.reason));
        if self.approve {
            // The checks again, as they stand now: since the amount was held the player may have
            // come to owe (a chargeback), an AML case may have opened or the identity check lapsed.
            or_refuse!(no_debt(tx, &payment.player_id, payment.currency)?);
            or_refuse!(tx.would_pass(&hold_entry(&payment))?);
            tx.store().clear(&keys::to_review(&payment.id))?;
            payment.status = PaymentStatus::Approved;
            approve(tx, &payment, by)?;
        } else {
            let reason = format!("rejected: {}", self.reason);
            or_refuse!(give_back(tx, &mut payment, self.clearing, PaymentStatus::Rejected, reason)?);
        }
        room.put(&payment);
        Ok(Ok(payment))
    }
}

/// The player cancels a withdrawal waiting for approval, where the region allows it: the money is
/// back in their cash.
pub struct CancelWithdrawal {
    pub id: String,
    pub player: PlayerId,
    pub clearing: HouseAccount,
}

impl LedgerCommand for CancelWithdrawal {
    type Room = CashierRoom;
    type Answer = Payment;
    type Refusal = CashierError;
    fn kind(&self) -> &'static str {
        "cashier_withdrawal_cancel"
    }
    fn apply(
        &self,
        room: &mut CashierRoom,
        tx: &mut KernelTx<'_>,
    ) -> Result<Result<Payment, CashierError>, StoreError> {
        let found = room.payment(tx.store(), &self.id)?;
        let Some(mut payment) = found.filter(|p| p.kind == PaymentKind::Withdrawal && p.player_id == self.player)
        else {
            return Ok(Err(CashierError::UnknownPayment(self.id.clone())));
        };
        if payment.status != PaymentStatus::PendingApproval {
            let what = "only a withdrawal waiting for approval can be cancelled";
            return Ok(Err(CashierError::NotPending { id: payment.id.clone(), status: payment.status, what }));
        }
        payment.updated_at = tx.now();
        or_refuse!(give_back(
            tx,
            &mut payment,
            self.clearing,
            PaymentStatus::Cancelled,
            "cancelled by the player".into()
        )?);
        room.put(&payment);
        Ok(Ok(payment))
    }
}

impl Cashier {
    /// Withdrawals waiting for the finance role, oldest first. Blocking.
    pub fn review_queue(&self) -> Result<Vec<Payment>, StoreError> {
        let mut tx = self.store.begin_snapshot_reads()?;
        let (begin, end) = keys::to_review_all();
        let mut queue = Vec::new();
        for (key, _) in tx.get_range(&begin, &end, 1000, false)? {
            let (_, id): (String, String) =
                crate::store::subspaces::cashier().unpack(&key).map_err(|e| StoreError::corrupt(&key, e))?;
            if let Some(payment) = read_payment(tx.as_mut(), &id)? {
                queue.push(payment);
            }
        }
        queue.sort_by_key(|p| p.created_at);
        Ok(queue)
    }

    /// One payment by id. Blocking.
    pub fn payment(&self, id: &str) -> Result<Option<Payment>, StoreError> {
        read_payment(self.store.begin_snapshot_reads()?.as_mut(), id)
    }

    /// One payment by id, read off the async threads: `PAYMENT_NOT_FOUND` when there is none.
    pub async fn payment_of(&self, id: &str) -> Result<Payment, crate::ledger::Failed<CashierError>> {
        let (store, key) = (self.store.clone(), id.to_owned());
        let found = tokio::task::spawn_blocking(move || read_payment(store.begin_snapshot_reads()?.as_mut(), &key))
            .await
            .map_err(|e| crate::ledger::Failed::Unavailable(e.to_string()))?
            .map_err(|e| crate::ledger::Failed::Unavailable(e.to_string()))?;
        found.ok_or_else(|| crate::ledger::Failed::Refused(CashierError::UnknownPayment(id.to_owned())))
    }
}

/// Asks the PSP to pay an approved withdrawal out (idempotent on its id): whether it took. What
/// the PSP could not take stays on the sweeper's list; what it refused outright is returned to
/// the player's cash ([`RefusedPayout`]).
pub async fn pay_out(
    cashier: &Arc<Cashier>,
    ledger: &crate::ledger::Ledger,
    ctx: crate::events::EventContext,
    psp: &Psp,
    payment: &Payment,
) -> bool {
    let url = cashier.notification_url(&psp.config.id);
    let (amount, currency) = (payment.amount.to_string(), payment.currency.code());
    match psp.payout(&payment.id, &amount, currency, &payment.payment_method, &url).await {
        Ok(_) => true,
        Err(psps::CallError::Unavailable(e)) => {
            tracing::warn!(payment = %payment.id, error = %e, "payout not taken; the sweeper asks again");
            false
        }
        Err(psps::CallError::Refused(e)) => {
            // Believed only once the PSP says it holds no payout under this reference: a refusal
            // of a second call (a duplicate, one in progress) must not return money it is paying.
            match psp.inquire(payment).await {
                Ok(psps::Inquiry::Unknown) => {}
                Ok(psps::Inquiry::Final(notification, raw)) => {
                    let taken = take_notification(cashier, ledger, psp, *notification, raw, false, ctx).await;
                    return taken.is_ok();
                }
                Ok(psps::Inquiry::Pending) => return false,
                Err(inquiry) => {
                    tracing::warn!(payment = %payment.id, refused = %e, %inquiry, "payout refused, and the PSP cannot say whether it holds one: asked again");
                    return false;
                }
            }
            tracing::warn!(payment = %payment.id, error = %e, "payout refused by the PSP, which holds none: the money goes back");
            let command = RefusedPayout { id: payment.id.clone(), reason: e, clearing: psp.clearing };
            match ledger.execute_unkeyed(command, ctx).await {
                Ok(_) => true,
                Err(e) => {
                    tracing::error!(payment = %payment.id, error = %e, "a refused payout's money could not go back yet; asked again");
                    false
                }
            }
        }
    }
}

/// Asks the PSP where `payment` stands and applies a final answer as the notification it amounts
/// to: what it did, or `None` when the PSP had nothing final to say (or did not answer).
pub async fn inquire_and_apply(
    cashier: &Arc<Cashier>,
    ledger: &crate::ledger::Ledger,
    ctx: crate::events::EventContext,
    psp: &Psp,
    payment: &Payment,
) -> Option<NotificationOutcome> {
    let (notification, raw) = match psp.inquire(payment).await {
        Ok(psps::Inquiry::Final(notification, raw)) => (*notification, raw),
        Ok(psps::Inquiry::Unknown | psps::Inquiry::Pending) => return None,
        Err(e) => {
            tracing::warn!(payment = %payment.id, error = %e, "cannot ask the PSP where a payment stands");
            return None;
        }
    };
    tracing::warn!(payment = %payment.id, code = %notification.code, "a PSP notification was overdue: applied from the PSP's answer to an inquiry");
    take_notification(cashier, ledger, psp, notification, raw, false, ctx).await.ok()
}

/// The PSP refused to pay an approved withdrawal out (the account it names is not one it pays):
/// the held amount goes back to the player's cash (`payout.failed`). Nothing when it was decided
/// otherwise since.
pub struct RefusedPayout {
    pub id: String,
    pub reason: String,
    pub clearing: HouseAccount,
}

impl LedgerCommand for RefusedPayout {
    type Room = CashierRoom;
    type Answer = Payment;
    type Refusal = CashierError;
    fn kind(&self) -> &'static str {
        "cashier_payout_refused"
    }
    fn apply(
        &self,
        room: &mut CashierRoom,
        tx: &mut KernelTx<'_>,
    ) -> Result<Result<Payment, CashierError>, StoreError> {
        let Some(mut payment) = room.payment(tx.store(), &self.id)? else {
            return Ok(Err(CashierError::UnknownPayment(self.id.clone())));
        };
        if payment.kind != PaymentKind::Withdrawal || payment.status != PaymentStatus::Approved {
            return Ok(Ok(payment));
        }
        payment.updated_at = tx.now();
        let reason = format!("refused by the PSP: {}", self.reason);
        or_refuse!(give_back(tx, &mut payment, self.clearing, PaymentStatus::Failed, reason)?);
        tx.store().clear(&keys::to_pay_out(&payment.id))?;
        room.put(&payment);
        Ok(Ok(payment))
    }
}

impl Cashier {
    /// Compares `psp`'s settlement report for `date` with the lines the cell booked that day:
    /// every line on one side only, every amount that differs, every line the PSP lists twice.
    pub async fn reconcile(
        &self,
        psp: &str,
        date: chrono::NaiveDate,
    ) -> Result<contracts::cashier::Reconciliation, String> {
        use contracts::cashier::ReconciliationDifference as Difference;
        let psp_config = self.psp(psp).ok_or_else(|| format!("no PSP `{psp}` here"))?;
        let report = psp_config.settlement_report(date).await?;
        let (store, id, day) = (self.store.clone(), psp.to_owned(), date.to_string());
        let booked = tokio::task::spawn_blocking(move || -> Result<Vec<(String, String, String)>, StoreError> {
            let mut tx = store.begin_snapshot_reads()?;
            let (begin, end) = keys::settled_on(&id, &day);
            let mut lines = Vec::new();
            for (key, value) in tx.get_range(&begin, &end, usize::MAX, false)? {
                let (_, _, _, kind, payment): (String, String, String, String, String) =
                    crate::store::subspaces::cashier().unpack(&key).map_err(|e| StoreError::corrupt(&key, e))?;
                lines.push((kind, payment, String::from_utf8_lossy(&value).into_owned()));
            }
            Ok(lines)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
        let mut ours: std::collections::BTreeMap<(String, String), String> =
            booked.into_iter().map(|(kind, payment, amount)| ((kind, payment), amount)).collect();
        let mut seen = std::collections::BTreeSet::new();
        let (mut matched, mut differences) = (0, Vec::new());
        let difference =
            |kind: &str, key: &(String, String), psp_amount: Option<String>, ledger_amount: Option<String>| {
                Difference {
                    kind: kind.into(),
                    line_type: key.0.clone(),
                    payment_id: key.1.clone(),
                    psp_amount,
                    ledger_amount,
                }
            };
        for line in report {
            let key = (line.kind.clone(), line.payment.clone());
            if !seen.insert(key.clone()) {
                differences.push(difference("duplicate_at_psp", &key, Some(line.amount), None));
                continue;
            }
            match ours.remove(&key) {
                None => differences.push(difference("missing_in_ledger", &key, Some(line.amount), None)),
                Some(amount) if same_amount(&amount, &line.amount) => matched += 1,
                Some(amount) => differences.push(difference("amount_mismatch", &key, Some(line.amount), Some(amount))),
            }
        }
        for (key, amount) in ours {
            differences.push(difference("missing_at_psp", &key, None, Some(amount)));
        }
        Ok(contracts::cashier::Reconciliation { psp: psp.to_owned(), date, matched, differences })
    }
}

/// Two amounts as written by two parties: equal as decimals (`10.0` is `10.00`).
fn same_amount(a: &str, b: &str) -> bool {
    match (a.parse::<rust_decimal::Decimal>(), b.parse::<rust_decimal::Decimal>()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}
