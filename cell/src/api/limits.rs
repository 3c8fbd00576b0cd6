//! `/players/{id}/limits`, `/timeout`, `/self-exclusion`: a player's responsible-gambling limits,
//! with their own bearer token. Each runs on the ledger's writer, beside the deposits and bets the
//! limits bound.

use super::{json_body, ApiError, AppState, TraceId};
use crate::domains::compliance::limits::{ReadLimits, SelfExclude, SetLimits, StartTimeout};
use crate::ledger::LedgerCommand;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use bytes::Bytes;
use contracts::limits::{LimitsRequest, LimitsView, SelfExclusionRequest, TimeoutRequest};
use contracts::{CellCode, PlayerId};
use std::sync::Arc;

/// The player of the bearer token, who must be `player`.
async fn own(s: &AppState, headers: &HeaderMap, player: &str) -> Result<PlayerId, ApiError> {
    let claims = super::sessions::session(s, headers).await?;
    if claims.sub.as_str() != player {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            CellCode::NotYourAccount,
            "this session is another player's: a player sets only their own limits",
        ));
    }
    Ok(claims.sub)
}

async fn run<C: LedgerCommand<Answer = LimitsView>>(
    s: &AppState,
    trace: &TraceId,
    command: C,
) -> Result<Json<LimitsView>, ApiError> {
    let d = s.domains()?;
    let answered = d.ledger.execute_unkeyed(command, s.event_context(trace, None)).await?;
    Ok(Json(answered.value))
}

pub async fn get(
    State(s): State<Arc<AppState>>,
    Extension(t): Extension<TraceId>,
    Path(player): Path<String>,
    headers: HeaderMap,
) -> Result<Json<LimitsView>, ApiError> {
    let player = own(&s, &headers, &player).await?;
    let region = s.domains()?.region.clone();
    run(&s, &t, ReadLimits { region, player }).await
}

pub async fn put(
    State(s): State<Arc<AppState>>,
    Extension(t): Extension<TraceId>,
    Path(player): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<LimitsView>, ApiError> {
    let player = own(&s, &headers, &player).await?;
    let (request, _) = json_body::<LimitsRequest>(body)?;
    if request.changes.is_empty() || request.changes.len() > 6 {
        return Err(ApiError::bad_request(CellCode::InvalidRequest, "changes: 1 to 6 of them"));
    }
    let region = s.domains()?.region.clone();
    run(&s, &t, SetLimits { region, player, changes: request.changes }).await
}

pub async fn timeout(
    State(s): State<Arc<AppState>>,
    Extension(t): Extension<TraceId>,
    Path(player): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<LimitsView>, ApiError> {
    let player = own(&s, &headers, &player).await?;
    let (request, _) = json_body::<TimeoutRequest>(body)?;
    let region = s.domains()?.region.clone();
    run(&s, &t, StartTimeout { region, player, hours: request.hours }).await
}

pub async fn self_exclusion(
    State(s): State<Arc<AppState>>,
    Extension(t): Extension<TraceId>,
    Path(player): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<LimitsView>, ApiError> {
    let player = own(&s, &headers, &player).await?;
    let (request, _) = json_body::<SelfExclusionRequest>(body)?;
    let region = s.domains()?.region.clone();
    run(&s, &t, SelfExclude { region, player, months: request.months }).await
}
