//! `/cashier/*`: a player's deposits and payments (with their own bearer token, through the
//! router), and the PSPs' signed notifications (`/cashier/webhooks/{psp}`, B2B).

use super::{mutating, ApiError, AppState, TraceId};
use crate::domains::cashier::psps::NotificationError;
use crate::domains::cashier::{
    self, CancelWithdrawal, CashierError, CreateDeposit, CreateWithdrawal, DecideWithdrawal, RecordPspAnswer,
};
use crate::ledger::Refusal;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use bytes::Bytes;
use contracts::cashier::{
    DepositRequest, Payment, PaymentStatus, Transactions, WithdrawalDecision, WithdrawalQueue, WithdrawalRequest,
};
use contracts::operators::OperatorRef;
use contracts::{CellCode, CountryCode};
use std::sync::Arc;

/// `POST /cashier/deposits`: compliance's gates (location, register, limits, KYC, exclusion) run
/// first; the payment is recorded `pending` and handed to its PSP; nothing is credited until the
/// PSP confirms. Idempotent: a retry with the same key answers the same payment, asks no PSP.
pub async fn deposit(
    State(s): State<Arc<AppState>>,
    Extension(t): Extension<TraceId>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Payment>), ApiError> {
    let d = s.domains()?;
    let (request, key) = mutating::<DepositRequest>("cashier.deposit", &headers, body)?;
    let player = super::limits::own(&s, &headers, request.player_id.as_str()).await?;
    super::wallet::location_gate(&s, &headers, super::wallet::Activity::Deposit)?;
    let ctx = s.event_context(&t, None);
    d.compliance.screen_player(&player, contracts::region::ExclusionCheckPoint::Deposit, &ctx, &d.ledger).await?;
    let (psp, money) = transfer_terms(d, &request.psp, &request.currency, request.amount, &request.payment_method)?;
    let location = headers.get("x-client-country").and_then(|v| CountryCode::new(v.to_str().ok()?).ok());
    let command = CreateDeposit {
        id: format!("dep_{}", hex::encode(rand::random::<[u8; 10]>())),
        player,
        psp: psp.config.id.clone(),
        clearing: psp.clearing,
        money,
        payment_method: request.payment_method.clone(),
        location,
    };
    let created = d.ledger.execute(command, key, ctx.clone()).await?;
    if created.replayed {
        // The first request's payment, as it stands now.
        let (store_cashier, id) = (d.cashier.clone(), created.value.id.clone());
        let current = super::blocking(move || store_cashier.payment(&id)).await?.unwrap_or(created.value);
        return Ok((StatusCode::OK, Json(current)));
    }
    let payment = created.value;
    let amount = payment.amount.to_string();
    let url = d.cashier.notification_url(&payment.psp);
    let answer = psp.create_payment(&payment.id, &amount, payment.currency.code(), &payment.payment_method, &url).await;
    let failed = answer.as_ref().err().cloned();
    let recorded = d.ledger.execute_unkeyed(RecordPspAnswer { id: payment.id.clone(), answer }, ctx).await?;
    if let Some(why) = failed {
        tracing::warn!(payment = %payment.id, error = %why, "PSP unavailable: the deposit failed, nothing moved");
        return Err(refused(CashierError::PspUnavailable(why)));
    }
    Ok((StatusCode::CREATED, Json(recorded.value)))
}

/// `POST /cashier/webhooks/{psp}`: a PSP's notification. 401 `BAD_SIGNATURE` (writes nothing)
/// unless signed with its secret within its time window; otherwise 200, whatever it said: a
/// duplicate changes nothing, one about an unknown payment is parked and tried again.
pub async fn webhook(
    State(s): State<Arc<AppState>>,
    Extension(t): Extension<TraceId>,
    Path(psp): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    let d = s.domains()?;
    if !headers.contains_key("x-psp-signature") && !headers.contains_key("x-bank-signature") {
        let message = "the signature header is missing (X-Psp-Signature or X-Bank-Signature, by the PSP's dialect)";
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, CellCode::BadSignature, message));
    }
    let psp = d
        .cashier
        .psp(&psp)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, CellCode::PspNotFound, format!("no PSP `{psp}` here")))?;
    let body = body.map_err(|e| ApiError::bad_request(CellCode::BodyUnreadable, e.body_text()))?;
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let notification = psp.read_notification(header, &body, d.clock.now()).map_err(|e| match e {
        NotificationError::BadSignature => {
            ApiError::new(StatusCode::UNAUTHORIZED, CellCode::BadSignature, e.to_string())
        }
        NotificationError::Malformed(_) => ApiError::bad_request(CellCode::InvalidRequest, e.to_string()),
    })?;
    let raw = String::from_utf8_lossy(&body).into_owned();
    let ctx = s.event_context(&t, None);
    cashier::take_notification(&d.cashier, &d.ledger, psp, notification, raw, false, ctx).await?;
    Ok(StatusCode::OK)
}

/// `GET /cashier/players/{id}/transactions`: the player's own payments, newest first.
pub async fn transactions(
    State(s): State<Arc<AppState>>,
    Path(player): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Transactions>, ApiError> {
    let player = super::limits::own(&s, &headers, &player).await?;
    let cashier = s.domains()?.cashier.clone();
    let id = player.clone();
    let payments = super::blocking(move || cashier.transactions(&id)).await?;
    Ok(Json(Transactions { player_id: player, payments }))
}

/// `POST /cashier/withdrawals`: the amount leaves the player's cash at once (held, through
/// compliance's gates); paid out by the PSP when the automatic checks pass, else waiting for the
/// finance role. Open from anywhere. Idempotent.
pub async fn withdraw(
    State(s): State<Arc<AppState>>,
    Extension(t): Extension<TraceId>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Payment>), ApiError> {
    let d = s.domains()?;
    let (request, key) = mutating::<WithdrawalRequest>("cashier.withdrawal", &headers, body)?;
    let player = super::limits::own(&s, &headers, request.player_id.as_str()).await?;
    let (psp, money) = transfer_terms(d, &request.psp, &request.currency, request.amount, &request.payment_method)?;
    let command = CreateWithdrawal {
        id: format!("wdr_{}", hex::encode(rand::random::<[u8; 10]>())),
        player,
        psp: psp.config.id.clone(),
        money,
        payment_method: request.payment_method.clone(),
        review_above: d.region.cashier.withdrawal_review_above,
    };
    let created = d.ledger.execute(command, key, s.event_context(&t, None)).await?;
    let payment = created.value;
    if !created.replayed && payment.status == PaymentStatus::Approved {
        cashier::pay_out(&d.cashier, &d.ledger, s.event_context(&t, None), psp, &payment).await;
    }
    let (store_cashier, id) = (d.cashier.clone(), payment.id.clone());
    let current = super::blocking(move || store_cashier.payment(&id)).await?.unwrap_or(payment);
    let status = if created.replayed { StatusCode::OK } else { StatusCode::CREATED };
    Ok((status, Json(current)))
}

/// `POST /cashier/withdrawals/{id}/cancel`: the player takes back a withdrawal waiting for
/// approval, where the region allows it (the UK bans reversing withdrawals: 403).
pub async fn cancel(
    State(s): State<Arc<AppState>>,
    Extension(t): Extension<TraceId>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Payment>, ApiError> {
    let d = s.domains()?;
    let claims = super::sessions::session(&s, &headers).await?;
    if !d.region.cashier.withdrawals_cancellable {
        let message = format!("withdrawals cannot be cancelled here ({})", d.region.cashier.source);
        return Err(ApiError::new(StatusCode::FORBIDDEN, CellCode::Forbidden, message));
    }
    let payment = d.cashier.payment_of(&id).await?;
    let clearing = d
        .cashier
        .psp(&payment.psp)
        .map(|p| p.clearing)
        .ok_or_else(|| refused(CashierError::UnknownPsp(payment.psp.clone())))?;
    let command = CancelWithdrawal { id, player: claims.sub, clearing };
    Ok(Json(d.ledger.execute_unkeyed(command, s.event_context(&t, None)).await?.value))
}

/// `GET /cashier/withdrawals`: the finance role's queue, oldest first.
pub async fn queue(State(s): State<Arc<AppState>>) -> Result<Json<WithdrawalQueue>, ApiError> {
    let cashier = s.domains()?.cashier.clone();
    Ok(Json(WithdrawalQueue { withdrawals: super::blocking(move || cashier.review_queue()).await? }))
}

/// `GET /cashier/withdrawals/{id}`: one withdrawal, for the finance role.
pub async fn withdrawal(State(s): State<Arc<AppState>>, Path(id): Path<String>) -> Result<Json<Payment>, ApiError> {
    Ok(Json(s.domains()?.cashier.payment_of(&id).await?))
}

/// `POST /cashier/withdrawals/{id}/approve` and `/reject`: the finance role decides, with a
/// reason; an approved withdrawal is paid out at once, a rejected one returned to cash.
pub async fn approve(
    State(s): State<Arc<AppState>>,
    Extension(t): Extension<TraceId>,
    operator: Option<Extension<OperatorRef>>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Payment>, ApiError> {
    decide(&s, &t, operator, id, true, body).await
}

pub async fn reject(
    State(s): State<Arc<AppState>>,
    Extension(t): Extension<TraceId>,
    operator: Option<Extension<OperatorRef>>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Payment>, ApiError> {
    decide(&s, &t, operator, id, false, body).await
}

async fn decide(
    s: &AppState,
    t: &TraceId,
    operator: Option<Extension<OperatorRef>>,
    id: String,
    approve: bool,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Payment>, ApiError> {
    let d = s.domains()?;
    let (request, _) = super::json_body::<WithdrawalDecision>(body)?;
    if request.reason.trim().is_empty() {
        return Err(ApiError::bad_request(CellCode::InvalidRequest, "reason: say why"));
    }
    let payment = d.cashier.payment_of(&id).await?;
    let psp = d.cashier.psp(&payment.psp).ok_or_else(|| refused(CashierError::UnknownPsp(payment.psp.clone())))?;
    let command = DecideWithdrawal { id, approve, reason: request.reason, clearing: psp.clearing };
    let decided = d.ledger.execute_unkeyed(command, s.event_context(t, operator.map(|o| o.0))).await?.value;
    if decided.status == PaymentStatus::Approved {
        cashier::pay_out(&d.cashier, &d.ledger, s.event_context(t, None), psp, &decided).await;
    }
    Ok(Json(decided))
}

/// What a deposit and a withdrawal check alike before the writer: a PSP of this cell that takes
/// the currency, a payment method that is a token, an amount the cell books.
fn transfer_terms<'d>(
    d: &'d super::Domains,
    psp: &str,
    currency: &str,
    amount: contracts::Amount,
    method: &str,
) -> Result<(&'d crate::domains::cashier::psps::Psp, contracts::Money), ApiError> {
    let found = d.cashier.psp(psp).ok_or_else(|| refused(CashierError::UnknownPsp(psp.to_owned())))?;
    if !found.config.currencies.iter().any(|c| c == currency) {
        return Err(refused(CashierError::CurrencyNotTaken { psp: psp.to_owned(), currency: currency.to_owned() }));
    }
    crate::domains::wallet::check_payment_method(Some(method))?;
    let money = d.ledger.money(amount.0, currency, false).map_err(|e| refused(e.into()))?;
    Ok((found, money))
}

fn refused(e: CashierError) -> ApiError {
    ApiError::new(super::status(Refusal::status(&e)), Refusal::code(&e), e.to_string())
}

#[derive(serde::Deserialize)]
pub struct ReconciliationQuery {
    psp: String,
    date: chrono::NaiveDate,
}

/// `GET /ops/reconciliation?psp=ID&date=YYYY-MM-DD`: the PSP's settlement report for the day
/// against what the cell booked: every difference listed (none when the books agree).
pub async fn reconciliation(
    State(s): State<Arc<AppState>>,
    query: Result<axum::extract::Query<ReconciliationQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<contracts::cashier::Reconciliation>, ApiError> {
    let axum::extract::Query(q) =
        query.map_err(|e| ApiError::bad_request(CellCode::InvalidQuery, format!("psp=ID&date=YYYY-MM-DD: {e}")))?;
    let cashier = s.domains()?.cashier.clone();
    if cashier.psp(&q.psp).is_none() {
        return Err(refused(CashierError::UnknownPsp(q.psp)));
    }
    cashier.reconcile(&q.psp, q.date).await.map(Json).map_err(|e| refused(CashierError::PspUnavailable(e)))
}

/// `GET /cashier/payments/{id}`: one of the player's own payments (an app polls its deposit).
pub async fn payment(
    State(s): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Payment>, ApiError> {
    let claims = super::sessions::session(&s, &headers).await?;
    let payment = s.domains()?.cashier.payment_of(&id).await?;
    if payment.player_id != claims.sub {
        return Err(refused(CashierError::UnknownPayment(id)));
    }
    Ok(Json(payment))
}

/// `POST /cashier/payments/{id}/refund {reason}`: the finance role gives a captured deposit back
/// through its PSP (202): a refund (card) or a payout to the account it came from (bank push).
/// The PSP's notification books the compensating entry (`payment.refunded`), from the player's
/// cash and, past it, their debt.
pub async fn refund(
    State(s): State<Arc<AppState>>,
    operator: Option<Extension<OperatorRef>>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Payment>), ApiError> {
    let d = s.domains()?;
    let (request, _) = super::json_body::<WithdrawalDecision>(body)?;
    if request.reason.trim().is_empty() {
        return Err(ApiError::bad_request(CellCode::InvalidRequest, "reason: say why"));
    }
    let payment = d.cashier.payment_of(&id).await?;
    if payment.kind != contracts::cashier::PaymentKind::Deposit || payment.status != PaymentStatus::Captured {
        let what = "only a captured deposit is refunded";
        return Err(refused(CashierError::NotPending { id, status: payment.status, what }));
    }
    let psp = d.cashier.psp(&payment.psp).ok_or_else(|| refused(CashierError::UnknownPsp(payment.psp.clone())))?;
    let by = operator.map_or_else(|| "finance".to_owned(), |o| format!("{} ({})", o.0.role, o.0.token_id));
    tracing::info!(payment = %payment.id, %by, reason = %request.reason, "refund asked");
    if !cashier::refund(&d.cashier, psp, &payment).await {
        return Err(refused(CashierError::PspUnavailable(format!("PSP {} did not take the refund", psp.config.id))));
    }
    Ok((StatusCode::ACCEPTED, Json(payment)))
}
