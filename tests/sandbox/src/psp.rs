//! A card acquirer, modelled on the common authorise/capture APIs: the merchant creates a payment
//! with the player's tokenised card, the acquirer authorises it and says so in a notification, the
//! merchant captures it, and a second notification confirms the capture. Notifications are signed
//! over the raw body with a timestamp: `X-Psp-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of
//! "{t}.{body}">`, with the merchant account's secret (`PSP_CARD_SECRET`), and retried until
//! answered 2xx.
//!
//! - `POST /psp/card/v1/payments {merchantReference, amount, currency, paymentMethod,
//!   notificationUrl}` → 201 `{pspReference, status: "received"}`, then an `AUTHORISATION`
//!   notification (`success: false`, `reason: "Refused"` for a method containing `decline`).
//! - `POST /psp/card/v1/payments/{pspReference}/captures {amount, currency}` → 201, then a
//!   `CAPTURE` notification. Capturing twice captures once.
//! - `POST /psp/card/v1/payouts` (same body) → 201, then `PAYOUT_PAID` (or `PAYOUT_FAILED`).
//! - `GET /psp/card/v1/payments?merchantReference=` → 200 `{pspReference, status, amount,
//!   currency, eventDate?}` (`refused`, `authorised`, `captured`; `eventDate` once captured) or
//!   404: what became of a payment whose create call's answer, or whose notifications, were lost.
//!   `GET /psp/card/v1/payouts?merchantReference=` → `{pspReference, status, eventDate}` (`paid`,
//!   `failed`) or 404, the same for a payout.
//! - A notification: `{eventId, eventCode, pspReference, merchantReference, amount, currency,
//!   success, reason?, eventDate}` (unix seconds; the settlement report dates the line by it).
//!
//! Faults: `{"party": "card"}`, `"card-capture"` and `"card-payout"` (latency, a status such as
//! 500, a hang) on the API calls, and `{"party": "card-payout", "mode": "fail"}` (a payout accepted,
//! then failed); `{"party": "card-webhook", "mode": ...}` on notifications: `duplicate`
//! (each sent twice), `reorder` (each sent before the API call that caused it answers), `late`
//! (`latencyMs` more), `unknown` (also one about a payment nobody created), `bad-signature` (a
//! wrongly signed copy first), `wrong-amount` (a capture of one more unit than asked), `drop`
//! (never delivered: the acquirer gave up retrying, and the merchant must ask).

use super::Sandbox;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long after the call its notification is sent.
const NOTIFY_DELAY: Duration = Duration::from_millis(150);

pub struct CardPsp {
    secret: Option<Vec<u8>>,
    next_id: AtomicU64,
    payments: Mutex<BTreeMap<String, CardPayment>>,
    /// Payouts by the merchant's reference (asking twice pays once): their reference, whether
    /// they were paid, and when.
    payouts: super::Payouts,
    /// What it settled, day by day: `(date, type, pspReference, merchantReference, amount,
    /// currency)`, the settlement report's rows.
    settled: Mutex<Vec<[String; 6]>>,
}

#[derive(Debug, Clone)]
struct CardPayment {
    merchant_reference: String,
    amount: String,
    currency: String,
    method: String,
    notification_url: String,
    authorised: bool,
    captured: bool,
    /// When it was captured (its settlement report's day).
    captured_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl CardPsp {
    pub fn new(secret: Option<Vec<u8>>) -> CardPsp {
        CardPsp {
            secret,
            next_id: AtomicU64::new(1),
            payments: Mutex::default(),
            payouts: Mutex::default(),
            settled: Mutex::default(),
        }
    }

    /// A row of the settlement report of the day `at` falls on (the day its notification's
    /// `eventDate` names).
    fn settle(&self, kind: &str, reference: &str, p: &CardPayment, at: chrono::DateTime<chrono::Utc>) {
        let today = at.date_naive().to_string();
        let row =
            [today, kind.into(), reference.into(), p.merchant_reference.clone(), p.amount.clone(), p.currency.clone()];
        self.settled.lock().unwrap_or_else(|e| e.into_inner()).push(row);
    }

    fn next(&self, prefix: &str) -> String {
        format!("{prefix}_{:08}", self.next_id.fetch_add(1, Ordering::Relaxed))
    }

    fn signature(secret: &[u8], body: &str) -> String {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
        mac.update(format!("{t}.{body}").as_bytes());
        format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
    }

    #[allow(clippy::too_many_arguments)]
    fn notification(
        &self,
        code: &str,
        reference: &str,
        p: &CardPayment,
        success: bool,
        reason: Option<&str>,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Value {
        let mut n = json!({
            "eventId": self.next("evt"),
            "eventCode": code,
            "pspReference": reference,
            "merchantReference": p.merchant_reference,
            "amount": p.amount,
            "currency": p.currency,
            "success": success,
            "eventDate": at.timestamp(),
        });
        if let Some(reason) = reason {
            n["reason"] = json!(reason);
        }
        n
    }
}

/// Sends `notification` as the `card-webhook` fault says: signed, maybe late, twice, after a
/// badly signed copy, or with one about an unknown payment.
async fn notify(s: &Sandbox, url: &str, notification: Value) {
    let Some(secret) = s.psp.secret.clone() else { return };
    let fault = s.fault_of("card-webhook");
    let mode = fault.as_ref().and_then(|f| f.mode.clone()).unwrap_or_default();
    if mode == "late" {
        tokio::time::sleep(Duration::from_millis(fault.as_ref().map_or(0, |f| f.latency_ms))).await;
    }
    if mode == "drop" {
        return; // the acquirer gave up on this endpoint: the merchant must ask
    }
    let mut notification = notification;
    if mode == "wrong-amount" && notification["eventCode"] == "CAPTURE" {
        // A capture of another amount than was asked: the merchant must not credit it.
        let asked: f64 = notification["amount"].as_str().and_then(|a| a.parse().ok()).unwrap_or(0.0);
        notification["amount"] = json!(format!("{:.2}", asked + 1.0));
    }
    let body = notification.to_string();
    if mode == "bad-signature" {
        let forged = CardPsp::signature(b"not the merchant's secret", &body);
        s.webhooks.deliver(url, &body, &[("x-psp-signature", forged)]).await;
    }
    if mode == "unknown" {
        let mut stray = notification.clone();
        stray["eventId"] = json!(s.psp.next("evt"));
        stray["pspReference"] = json!(s.psp.next("pay"));
        stray["merchantReference"] = json!(format!("dep_unknown_{}", s.psp.next("ref")));
        let stray = stray.to_string();
        s.webhooks.deliver(url, &stray, &[("x-psp-signature", CardPsp::signature(&secret, &stray))]).await;
    }
    let copies = if mode == "duplicate" { 2 } else { 1 };
    for _ in 0..copies {
        // Signed at each delivery, as a PSP re-signs a retry.
        s.webhooks.deliver(url, &body, &[("x-psp-signature", CardPsp::signature(&secret, &body))]).await;
    }
}

/// Sends the notification in the background after a short delay, or (`reorder`) before the
/// caller's answer.
async fn send(s: &Arc<Sandbox>, url: String, notification: Value) {
    let reorder = s.fault_of("card-webhook").and_then(|f| f.mode).is_some_and(|m| m == "reorder");
    if reorder {
        notify(s, &url, notification).await;
        return;
    }
    let sandbox = s.clone();
    tokio::spawn(async move {
        tokio::time::sleep(NOTIFY_DELAY).await;
        notify(&sandbox, &url, notification).await;
    });
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequest {
    merchant_reference: String,
    amount: String,
    currency: String,
    payment_method: String,
    notification_url: String,
}

fn bad_request(message: &str) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": message }))).into_response()
}

pub async fn create_payment(
    State(s): State<Arc<Sandbox>>,
    body: Result<Json<PaymentRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(Json(r)) = body else {
        return bad_request("merchantReference, amount, currency, paymentMethod and notificationUrl");
    };
    if !(r.notification_url.starts_with("http://") || r.notification_url.starts_with("https://")) {
        return bad_request("notificationUrl must be an http(s) URL");
    }
    let call = json!({ "merchantReference": r.merchant_reference, "amount": r.amount, "currency": r.currency });
    if let Some(fault) = s.enter("card", call).await {
        return fault;
    }
    if s.psp.secret.is_none() {
        let message = "the sandbox has no PSP_CARD_SECRET: it cannot sign notifications";
        return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "error": message }))).into_response();
    }
    let reference = s.psp.next("pay");
    let declined = r.payment_method.contains("decline");
    let payment = CardPayment {
        merchant_reference: r.merchant_reference,
        amount: r.amount,
        currency: r.currency,
        method: r.payment_method,
        notification_url: r.notification_url,
        authorised: !declined,
        captured: false,
        captured_at: None,
    };
    s.psp.payments.lock().unwrap_or_else(|p| p.into_inner()).insert(reference.clone(), payment.clone());
    let reason = declined.then_some("Refused");
    let notification = s.psp.notification("AUTHORISATION", &reference, &payment, !declined, reason, chrono::Utc::now());
    send(&s, payment.notification_url.clone(), notification).await;
    (StatusCode::CREATED, Json(json!({ "pspReference": reference, "status": "received" }))).into_response()
}

pub async fn capture(State(s): State<Arc<Sandbox>>, Path(reference): Path<String>) -> Response {
    if let Some(fault) = s.enter("card-capture", json!({ "pspReference": reference })).await {
        return fault;
    }
    let payment = {
        let mut payments = s.psp.payments.lock().unwrap_or_else(|p| p.into_inner());
        let Some(payment) = payments.get_mut(&reference) else {
            return (StatusCode::NOT_FOUND, Json(json!({ "error": "no such payment" }))).into_response();
        };
        if !payment.authorised {
            return (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({ "error": "the payment was refused" })))
                .into_response();
        }
        let first = !payment.captured;
        payment.captured = true;
        let at = *payment.captured_at.get_or_insert_with(chrono::Utc::now);
        first.then(|| (payment.clone(), at))
    };
    // A second capture of the same payment captures nothing more, and says nothing more.
    if let Some((payment, at)) = payment {
        s.psp.settle("CAPTURE", &reference, &payment, at);
        let notification = s.psp.notification("CAPTURE", &reference, &payment, true, None, at);
        send(&s, payment.notification_url.clone(), notification).await;
    }
    (StatusCode::CREATED, Json(json!({ "pspReference": reference, "status": "received" }))).into_response()
}

/// `POST /psp/card/v1/payouts {merchantReference, amount, currency, paymentMethod,
/// notificationUrl}` → 201 `{pspReference}`, then `PAYOUT_PAID`, or with the `card-payout` fault
/// `{"mode": "fail"}` a `PAYOUT_FAILED` after accepting it. The same merchant reference again is
/// the same payout.
pub async fn payout(
    State(s): State<Arc<Sandbox>>,
    body: Result<Json<PaymentRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(Json(r)) = body else {
        return bad_request("merchantReference, amount, currency, paymentMethod and notificationUrl");
    };
    let call = json!({ "merchantReference": r.merchant_reference, "amount": r.amount, "payout": true });
    if let Some(fault) = s.enter("card-payout", call).await {
        return fault;
    }
    let (reference, first) = {
        let mut payouts = s.psp.payouts.lock().unwrap_or_else(|p| p.into_inner());
        match payouts.get(&r.merchant_reference) {
            Some((reference, _, _)) => (reference.clone(), false),
            None => {
                let reference = s.psp.next("po");
                let fails = s.fault_of("card-payout").and_then(|f| f.mode).is_some_and(|m| m == "fail");
                payouts.insert(r.merchant_reference.clone(), (reference.clone(), !fails, chrono::Utc::now()));
                (reference, true)
            }
        }
    };
    if first {
        let payouts = s.psp.payouts.lock().unwrap_or_else(|p| p.into_inner()).get(&r.merchant_reference).cloned();
        let (fails, at) = payouts.map_or((true, chrono::Utc::now()), |(_, paid, at)| (!paid, at));
        let payment = CardPayment {
            merchant_reference: r.merchant_reference,
            amount: r.amount,
            currency: r.currency,
            method: r.payment_method,
            notification_url: r.notification_url,
            authorised: true,
            captured: false,
            captured_at: None,
        };
        let (code, reason) =
            if fails { ("PAYOUT_FAILED", Some("Beneficiary account closed")) } else { ("PAYOUT_PAID", None) };
        if !fails {
            s.psp.settle("PAYOUT", &reference, &payment, at);
        }
        let notification = s.psp.notification(code, &reference, &payment, !fails, reason, at);
        send(&s, payment.notification_url.clone(), notification).await;
    }
    (StatusCode::CREATED, Json(json!({ "pspReference": reference, "status": "received" }))).into_response()
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Dispute {
    psp_reference: String,
    reason: Option<String>,
}

/// `POST /admin/psp/chargeback {pspReference, reason?}`: the card holder disputes a captured
/// payment (weeks later, in life): a `CHARGEBACK` notification for its amount.
pub async fn chargeback(State(s): State<Arc<Sandbox>>, Json(d): Json<Dispute>) -> Response {
    let payment = s.psp.payments.lock().unwrap_or_else(|p| p.into_inner()).get(&d.psp_reference).cloned();
    let Some(payment) = payment.filter(|p| p.captured) else {
        return (StatusCode::NOT_FOUND, Json(json!({ "error": "no captured payment with this reference" })))
            .into_response();
    };
    let reason = d.reason.unwrap_or_else(|| "Fraudulent transaction".into());
    let at = chrono::Utc::now();
    s.psp.settle("CHARGEBACK", &d.psp_reference, &payment, at);
    let notification = s.psp.notification("CHARGEBACK", &d.psp_reference, &payment, true, Some(&reason), at);
    send(&s, payment.notification_url.clone(), notification).await;
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Debug, Deserialize)]
pub struct ReportQuery {
    date: String,
}

/// `GET /psp/card/v1/reports/settlement?date=YYYY-MM-DD`: what the acquirer settled that day, as
/// CSV: `date,type,pspReference,merchantReference,amount,currency`, one row per capture, payout
/// paid and chargeback. The `card-report` fault `{"mode": "duplicate"}` repeats the first row.
pub async fn settlement_report(
    State(s): State<Arc<Sandbox>>,
    query: Result<axum::extract::Query<ReportQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(axum::extract::Query(q)) = query else { return bad_request("date=YYYY-MM-DD") };
    if let Some(fault) = s.enter("card-report", json!({ "date": q.date })).await {
        return fault;
    }
    let rows: Vec<[String; 6]> =
        s.psp.settled.lock().unwrap_or_else(|e| e.into_inner()).iter().filter(|r| r[0] == q.date).cloned().collect();
    let duplicate = s.fault_of("card-report").and_then(|f| f.mode).is_some_and(|m| m == "duplicate");
    let mut csv = String::from("date,type,pspReference,merchantReference,amount,currency\n");
    for row in rows.iter().chain(rows.first().filter(|_| duplicate)) {
        csv.push_str(&row.join(","));
        csv.push('\n');
    }
    ([(axum::http::header::CONTENT_TYPE, "text/csv")], csv).into_response()
}

/// `POST /psp/card/v1/payments/{pspReference}/refunds {amount, currency}` → 201, then a `REFUND`
/// notification (the whole payment; refunding twice refunds once).
pub async fn refund(State(s): State<Arc<Sandbox>>, Path(reference): Path<String>) -> Response {
    if let Some(fault) = s.enter("card-refund", json!({ "pspReference": reference })).await {
        return fault;
    }
    let payment = {
        let mut payments = s.psp.payments.lock().unwrap_or_else(|p| p.into_inner());
        let Some(payment) = payments.get_mut(&reference).filter(|p| p.captured) else {
            return (StatusCode::NOT_FOUND, Json(json!({ "error": "no captured payment with this reference" })))
                .into_response();
        };
        // Refunded: no longer captured, so a second refund finds nothing to give back.
        payment.captured = false;
        payment.clone()
    };
    let at = chrono::Utc::now();
    s.psp.settle("REFUND", &reference, &payment, at);
    let notification = s.psp.notification("REFUND", &reference, &payment, true, None, at);
    send(&s, payment.notification_url.clone(), notification).await;
    (StatusCode::CREATED, Json(json!({ "pspReference": reference, "status": "received" }))).into_response()
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Inquiry {
    merchant_reference: String,
}

/// `GET /psp/card/v1/payments?merchantReference=` → 200 `{pspReference, status}` for the payment
/// the merchant created with that reference, 404 when it never reached the acquirer: how a
/// merchant that lost the answer to its create call learns what became of it.
pub async fn find_payment(
    State(s): State<Arc<Sandbox>>,
    query: Result<axum::extract::Query<Inquiry>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(axum::extract::Query(q)) = query else { return bad_request("merchantReference") };
    if let Some(fault) = s.enter("card", json!({ "inquiry": q.merchant_reference })).await {
        return fault;
    }
    let payments = s.psp.payments.lock().unwrap_or_else(|p| p.into_inner());
    let found = payments.iter().find(|(_, p)| p.merchant_reference == q.merchant_reference);
    match found {
        Some((reference, p)) => {
            let status = match (p.authorised, p.captured) {
                (false, _) => "refused",
                (true, false) => "authorised",
                (true, true) => "captured",
            };
            let mut answer =
                json!({ "pspReference": reference, "status": status, "amount": p.amount, "currency": p.currency });
            if let Some(at) = p.captured_at {
                answer["eventDate"] = json!(at.timestamp());
            }
            Json(answer).into_response()
        }
        None => {
            (StatusCode::NOT_FOUND, Json(json!({ "error": "no payment with this merchant reference" }))).into_response()
        }
    }
}

/// `GET /psp/card/v1/payouts?merchantReference=` → 200 `{pspReference, status}` (`paid`,
/// `failed`), 404 when no payout was asked for with that reference.
pub async fn find_payout(
    State(s): State<Arc<Sandbox>>,
    query: Result<axum::extract::Query<Inquiry>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(axum::extract::Query(q)) = query else { return bad_request("merchantReference") };
    if let Some(fault) = s.enter("card", json!({ "payoutInquiry": q.merchant_reference })).await {
        return fault;
    }
    let payouts = s.psp.payouts.lock().unwrap_or_else(|p| p.into_inner());
    match payouts.get(&q.merchant_reference) {
        Some((reference, paid, at)) => {
            let status = if *paid { "paid" } else { "failed" };
            Json(json!({ "pspReference": reference, "status": status, "eventDate": at.timestamp() })).into_response()
        }
        None => {
            (StatusCode::NOT_FOUND, Json(json!({ "error": "no payout with this merchant reference" }))).into_response()
        }
    }
}

/// `GET /admin/psp/payments`: every card payment and whether it was captured (what the PSP would
/// settle), for tests and reconciliation.
pub async fn payments(State(s): State<Arc<Sandbox>>) -> Json<Value> {
    let payments = s.psp.payments.lock().unwrap_or_else(|p| p.into_inner());
    let list: Vec<Value> = payments
        .iter()
        .map(|(reference, p)| {
            json!({
                "pspReference": reference, "merchantReference": p.merchant_reference, "amount": p.amount,
                "currency": p.currency, "paymentMethod": p.method, "authorised": p.authorised, "captured": p.captured
            })
        })
        .collect();
    Json(json!({ "payments": list }))
}
