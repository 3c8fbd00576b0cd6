//! A bank-push (open banking) PSP, modelled on pay-in/pay-out APIs with redirect flows: the
//! merchant creates a pay-in and sends the player to its `redirectUrl`; the player approves (or
//! cancels) at their bank; a signed callback confirms or cancels it. Payouts go to the account the
//! merchant names. Callbacks carry `X-Bank-Timestamp: <unix seconds>` and `X-Bank-Signature: <hex
//! HMAC-SHA256 of "{timestamp}.{body}">` with the merchant's secret (`PSP_BANK_SECRET`), retried
//! until answered 2xx.
//!
//! - `POST /psp/bank/v1/payins {merchantReference, amount, currency, account, callbackUrl}` → 201
//!   `{id, redirectUrl}`; `GET /psp/bank/v1/authorise/{id}?decision=approve|cancel` is the
//!   player's visit to their bank (a cancel for an account containing `cancel`), then a
//!   `payin.settled` or `payin.cancelled` callback.
//! - `POST /psp/bank/v1/payouts {merchantReference, amount, currency, account, callbackUrl}` → 201
//!   `{id}`, then `payout.executed` (or `payout.rejected` with the `bank-payout` fault
//!   `{"mode": "fail"}`). The same merchant reference again is the same payout.
//! - `GET /psp/bank/v1/reports/settlement?date=` → CSV `date,type,id,merchantReference,amount,
//!   currency` (`PAYIN`, `PAYOUT`).
//! - `GET /psp/bank/v1/payins?merchantReference=` → 200 `{id, redirectUrl, status, amount,
//!   currency, createdAt?}` (`waiting`, `settled`, `cancelled`; `createdAt` once decided) or 404:
//!   what became of a pay-in whose create call's answer, or whose callbacks, were lost.
//!   `GET /psp/bank/v1/payouts?merchantReference=` → `{id, status, createdAt}` (`executed`,
//!   `rejected`) or 404, the same for a payout.
//! - The `bank-webhook` fault `{"mode": "drop"}`: callbacks are never delivered (the bank gave
//!   up retrying); the merchant must ask.
//! - A callback: `{eventId, type, id, merchantReference, amount, currency, createdAt, reason?}`
//!   (the settlement report dates the line by `createdAt`).

use super::Sandbox;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

pub struct BankPsp {
    secret: Option<Vec<u8>>,
    next_id: AtomicU64,
    payins: Mutex<BTreeMap<String, Transfer>>,
    /// Payouts by the merchant's reference: their id, whether they were executed, and when.
    payouts: super::Payouts,
    settled: Mutex<Vec<[String; 6]>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Transfer {
    merchant_reference: String,
    amount: String,
    currency: String,
    account: String,
    callback_url: String,
    #[serde(skip)]
    decided: bool,
    /// What the payer decided (`settled` or `cancelled`), and when.
    #[serde(skip)]
    outcome: Option<(&'static str, chrono::DateTime<chrono::Utc>)>,
}

impl BankPsp {
    pub fn new(secret: Option<Vec<u8>>) -> BankPsp {
        BankPsp {
            secret,
            next_id: AtomicU64::new(1),
            payins: Mutex::default(),
            payouts: Mutex::default(),
            settled: Mutex::default(),
        }
    }

    fn next(&self, prefix: &str) -> String {
        format!("{prefix}_{:08}", self.next_id.fetch_add(1, Ordering::Relaxed))
    }

    /// A row of the settlement report of the day `at` falls on (its callback's `createdAt`).
    fn settle(&self, kind: &str, id: &str, t: &Transfer, at: chrono::DateTime<chrono::Utc>) {
        let today = at.date_naive().to_string();
        let row = [today, kind.into(), id.into(), t.merchant_reference.clone(), t.amount.clone(), t.currency.clone()];
        self.settled.lock().unwrap_or_else(|e| e.into_inner()).push(row);
    }
}

/// Signs and sends a callback (in the background).
fn callback(
    s: &Arc<Sandbox>,
    kind: &str,
    id: &str,
    t: &Transfer,
    reason: Option<&str>,
    at: chrono::DateTime<chrono::Utc>,
) {
    let Some(secret) = s.bank.secret.clone() else { return };
    if s.fault_of("bank-webhook").and_then(|f| f.mode).is_some_and(|m| m == "drop") {
        return; // the bank gave up on this endpoint: the merchant must ask
    }
    let mut body = json!({
        "eventId": s.bank.next("bev"), "type": kind, "id": id, "merchantReference": t.merchant_reference,
        "amount": t.amount, "currency": t.currency,
        "createdAt": at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    });
    if let Some(reason) = reason {
        body["reason"] = json!(reason);
    }
    let (sandbox, url, body) = (s.clone(), t.callback_url.clone(), body.to_string());
    tokio::spawn(async move {
        let timestamp = chrono::Utc::now().timestamp().to_string();
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&secret).expect("HMAC takes any key length");
        mac.update(format!("{timestamp}.{body}").as_bytes());
        let signature = hex::encode(mac.finalize().into_bytes());
        let headers = [("x-bank-timestamp", timestamp), ("x-bank-signature", signature)];
        sandbox.webhooks.deliver(&url, &body, &headers).await;
    });
}

fn bad_request(message: &str) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": message }))).into_response()
}

pub async fn create_payin(
    State(s): State<Arc<Sandbox>>,
    body: Result<Json<Transfer>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(Json(t)) = body else { return bad_request("merchantReference, amount, currency, account, callbackUrl") };
    if let Some(fault) = s.enter("bank", json!({ "merchantReference": t.merchant_reference, "amount": t.amount })).await
    {
        return fault;
    }
    if s.bank.secret.is_none() {
        return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "error": "no PSP_BANK_SECRET" }))).into_response();
    }
    let id = s.bank.next("pin");
    s.bank.payins.lock().unwrap_or_else(|e| e.into_inner()).insert(id.clone(), t);
    let redirect = format!("{}/psp/bank/v1/authorise/{id}", s.public_url);
    (StatusCode::CREATED, Json(json!({ "id": id, "redirectUrl": redirect }))).into_response()
}

#[derive(Debug, Deserialize)]
pub struct Visit {
    decision: Option<String>,
}

/// The player at their bank: approves (or cancels) the pay-in; the callback follows.
pub async fn authorise(State(s): State<Arc<Sandbox>>, Path(id): Path<String>, Query(v): Query<Visit>) -> Response {
    let transfer = {
        let mut payins = s.bank.payins.lock().unwrap_or_else(|e| e.into_inner());
        let Some(t) = payins.get_mut(&id) else {
            return (StatusCode::NOT_FOUND, "no such pay-in").into_response();
        };
        if t.decided {
            return (StatusCode::OK, "already decided").into_response();
        }
        t.decided = true;
        let cancel = v.decision.as_deref() == Some("cancel") || t.account.contains("cancel");
        t.outcome = Some((if cancel { "cancelled" } else { "settled" }, chrono::Utc::now()));
        t.clone()
    };
    let Some((outcome, at)) = transfer.outcome else { unreachable!("decided above") };
    if outcome == "cancelled" {
        callback(&s, "payin.cancelled", &id, &transfer, Some("Cancelled by the payer"), at);
        return (StatusCode::OK, "cancelled").into_response();
    }
    s.bank.settle("PAYIN", &id, &transfer, at);
    callback(&s, "payin.settled", &id, &transfer, None, at);
    (StatusCode::OK, "approved: you may return to the merchant").into_response()
}

pub async fn payout(
    State(s): State<Arc<Sandbox>>,
    body: Result<Json<Transfer>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(Json(t)) = body else { return bad_request("merchantReference, amount, currency, account, callbackUrl") };
    if let Some(fault) = s.enter("bank-payout", json!({ "merchantReference": t.merchant_reference })).await {
        return fault;
    }
    let (id, first) = {
        let mut payouts = s.bank.payouts.lock().unwrap_or_else(|e| e.into_inner());
        match payouts.get(&t.merchant_reference) {
            Some((id, _, _)) => (id.clone(), false),
            None => {
                let id = s.bank.next("pou");
                let fails = s.fault_of("bank-payout").and_then(|f| f.mode).is_some_and(|m| m == "fail");
                payouts.insert(t.merchant_reference.clone(), (id.clone(), !fails, chrono::Utc::now()));
                (id, true)
            }
        }
    };
    if first {
        let payouts = s.bank.payouts.lock().unwrap_or_else(|e| e.into_inner()).get(&t.merchant_reference).cloned();
        let (fails, at) = payouts.map_or((true, chrono::Utc::now()), |(_, executed, at)| (!executed, at));
        if fails {
            callback(&s, "payout.rejected", &id, &t, Some("Account closed"), at);
        } else {
            s.bank.settle("PAYOUT", &id, &t, at);
            callback(&s, "payout.executed", &id, &t, None, at);
        }
    }
    (StatusCode::CREATED, Json(json!({ "id": id }))).into_response()
}

#[derive(Debug, Deserialize)]
pub struct ReportQuery {
    date: String,
}

pub async fn settlement_report(State(s): State<Arc<Sandbox>>, Query(q): Query<ReportQuery>) -> Response {
    let rows: Vec<[String; 6]> =
        s.bank.settled.lock().unwrap_or_else(|e| e.into_inner()).iter().filter(|r| r[0] == q.date).cloned().collect();
    let mut csv = String::from("date,type,id,merchantReference,amount,currency\n");
    for row in rows {
        csv.push_str(&row.join(","));
        csv.push('\n');
    }
    ([(axum::http::header::CONTENT_TYPE, "text/csv")], csv).into_response()
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Inquiry {
    merchant_reference: String,
}

/// `GET /psp/bank/v1/payins?merchantReference=` → 200 `{id, redirectUrl, status}` for the pay-in
/// the merchant created with that reference, 404 when it never reached the bank.
pub async fn find_payin(State(s): State<Arc<Sandbox>>, Query(q): Query<Inquiry>) -> Response {
    if let Some(fault) = s.enter("bank", json!({ "inquiry": q.merchant_reference })).await {
        return fault;
    }
    let payins = s.bank.payins.lock().unwrap_or_else(|e| e.into_inner());
    match payins.iter().find(|(_, t)| t.merchant_reference == q.merchant_reference) {
        Some((id, t)) => {
            let redirect = format!("{}/psp/bank/v1/authorise/{id}", s.public_url);
            let status = t.outcome.map_or("waiting", |(outcome, _)| outcome);
            let mut answer = json!({ "id": id, "redirectUrl": redirect, "status": status, "amount": t.amount, "currency": t.currency });
            if let Some((_, at)) = t.outcome {
                answer["createdAt"] = json!(at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
            }
            Json(answer).into_response()
        }
        None => {
            (StatusCode::NOT_FOUND, Json(json!({ "error": "no pay-in with this merchant reference" }))).into_response()
        }
    }
}

/// `GET /psp/bank/v1/payouts?merchantReference=` → 200 `{id, status}` (`executed`, `rejected`),
/// 404 when no payout was asked for with that reference.
pub async fn find_payout(State(s): State<Arc<Sandbox>>, Query(q): Query<Inquiry>) -> Response {
    if let Some(fault) = s.enter("bank", json!({ "payoutInquiry": q.merchant_reference })).await {
        return fault;
    }
    let payouts = s.bank.payouts.lock().unwrap_or_else(|e| e.into_inner());
    match payouts.get(&q.merchant_reference) {
        Some((id, executed, at)) => {
            let status = if *executed { "executed" } else { "rejected" };
            let created = at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            Json(json!({ "id": id, "status": status, "createdAt": created })).into_response()
        }
        None => {
            (StatusCode::NOT_FOUND, Json(json!({ "error": "no payout with this merchant reference" }))).into_response()
        }
    }
}

/// `GET /admin/psp/bank`: every pay-in, for tests.
pub async fn payins(State(s): State<Arc<Sandbox>>) -> Json<Value> {
    let payins = s.bank.payins.lock().unwrap_or_else(|e| e.into_inner());
    let list: Vec<Value> = payins
        .iter()
        .map(|(id, t)| json!({ "id": id, "merchantReference": t.merchant_reference, "amount": t.amount, "decided": t.decided }))
        .collect();
    Json(json!({ "payins": list }))
}
