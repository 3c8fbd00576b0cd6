//! `/compliance/*`: the back office's reads of compliance (the `compliance` role and this
//! jurisdiction's regulator); a player's own identity check; the KYC vendor's webhook.

use super::{blocking, json_body, ApiError, AppState, TraceId};
use crate::domains::compliance::kyc::{WebhookError, WebhookNews};
use crate::domains::compliance::limits::{DecideCase, RecordKyc};
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use bytes::Bytes;
use contracts::limits::{AmlCase, CaseDecision, CaseList, DecisionLog};
use contracts::operators::OperatorRef;
use contracts::{CellCode, PlayerId};
use std::sync::Arc;

/// `GET /compliance/players/{id}/decisions`: every compliance decision about the player, oldest
/// first: the register's answers, limit changes, time-outs and self-exclusions, each with its rule
/// and policy version.
pub async fn decisions(
    State(s): State<Arc<AppState>>,
    Path(player): Path<String>,
) -> Result<Json<DecisionLog>, ApiError> {
    let d = s.domains()?;
    let player = PlayerId::new(player).map_err(|e| ApiError::bad_request(CellCode::InvalidPlayerId, e.to_string()))?;
    let (compliance, id) = (d.compliance.clone(), player.clone());
    let decisions = blocking(move || compliance.decisions(&id)).await?;
    Ok(Json(DecisionLog { player_id: player, decisions }))
}

/// `GET /compliance/cases`: every AML case, open ones first.
pub async fn cases(State(s): State<Arc<AppState>>) -> Result<Json<CaseList>, ApiError> {
    let compliance = s.domains()?.compliance.clone();
    Ok(Json(CaseList { cases: blocking(move || compliance.cases()).await? }))
}

/// `POST /compliance/cases/{id}`: the compliance role decides a case (`cleared` lifts the
/// player's withdrawal hold).
pub async fn decide(
    State(s): State<Arc<AppState>>,
    Extension(t): Extension<TraceId>,
    operator: Option<Extension<OperatorRef>>,
    Path(case_id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<AmlCase>, ApiError> {
    let d = s.domains()?;
    let (request, _) = json_body::<CaseDecision>(body)?;
    if !matches!(request.decision.as_str(), "cleared" | "confirmed") || request.reason.trim().is_empty() {
        return Err(ApiError::bad_request(CellCode::InvalidRequest, "decision: cleared or confirmed, with a reason"));
    }
    let compliance = d.compliance.clone();
    let case = blocking(move || compliance.case(&case_id))
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, CellCode::CaseNotFound, "no AML case has this id"))?;
    let command = DecideCase { region: d.region.clone(), case, decision: request.decision, reason: request.reason };
    let answered = d.ledger.execute_unkeyed(command, s.event_context(&t, operator.map(|o| o.0))).await?;
    Ok(Json(answered.value))
}

/// `GET /players/{id}/kyc`: the player's own identity check, and what they may do until it is
/// complete.
pub async fn kyc_status(
    State(s): State<Arc<AppState>>,
    Path(player): Path<String>,
    headers: HeaderMap,
) -> Result<Json<contracts::players::KycView>, ApiError> {
    let player = super::limits::own(&s, &headers, &player).await?;
    let compliance = s.domains()?.compliance.clone();
    let view = blocking(move || compliance.kyc_status(&player)).await?;
    view.map(Json).ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, CellCode::PlayerNotFound, "no such player here"))
}

/// `POST /kyc/webhook`: the KYC vendor's result, signed with the account's secret (401
/// `BAD_SIGNATURE` otherwise). 200 once recorded or when there is nothing to record (a
/// `check.started`, a duplicate); 404 for a check this cell did not ask for yet (the vendor
/// retries: its webhook can overtake the registration's commit).
pub async fn kyc_webhook(
    State(s): State<Arc<AppState>>,
    Extension(t): Extension<TraceId>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, ApiError> {
    let d = s.domains()?;
    let signature = headers.get("x-signature").and_then(|v| v.to_str().ok());
    if signature.is_none() {
        let message = "X-Signature is missing: sha256= and the hex HMAC-SHA256 of the body";
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, CellCode::BadSignature, message));
    }
    let vendor = d.compliance.kyc_vendor().ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, CellCode::NotFound, "this cell has no KYC vendor (cell serve --kyc-url)")
    })?;
    let body = body.map_err(|e| ApiError::bad_request(CellCode::BodyUnreadable, e.body_text()))?;
    let news = vendor.read_webhook(signature, &body).map_err(|e| match e {
        WebhookError::BadSignature => ApiError::new(StatusCode::UNAUTHORIZED, CellCode::BadSignature, e.to_string()),
        WebhookError::Malformed(_) => ApiError::bad_request(CellCode::InvalidRequest, e.to_string()),
    })?;
    let WebhookNews::Completed { check_id, player, outcome } = news else { return Ok(StatusCode::OK) };
    let command = RecordKyc { region: d.region.clone(), player, check_id, outcome };
    d.ledger.execute_unkeyed(command, s.event_context(&t, None)).await?;
    Ok(StatusCode::OK)
}
