//! `/players/{id}/limits`, `/timeout`, `/self-exclusion`, `/session`, `/session-limits`,
//! `/reality-check`: a player's responsible-gambling limits, with their own bearer token. Each runs on the ledger's writer, beside the deposits and bets the
//! limits bound.

use super::{json_body, ApiError, AppState, TraceId};
use crate::domains::compliance::limits::{ReadLimits, SelfExclude, Session, SessionCommand, SetLimits, StartTimeout};
use crate::ledger::LedgerCommand;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use bytes::Bytes;
use contracts::limits::{
    LimitsRequest, LimitsView, SelfExclusionRequest, SessionLimitsRequest, SessionView, TimeoutRequest,
};
use contracts::{CellCode, PlayerId};
use std::sync::Arc;

/// The player of the bearer token, who must be `player`.
pub(super) async fn own(s: &AppState, headers: &HeaderMap, player: &str) -> Result<PlayerId, ApiError> {
    let claims = super::sessions::session(s, headers).await?;
    if claims.sub.as_str() != player {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            CellCode::NotYourAccount,
            "this session is another player's: a player sees and sets only their own",
        ));
    }
    Ok(claims.sub)
}

/// A limit route: the player's own token, the body as `R`, then the command `make` builds from
/// the region, the player and the request, run on the writer.
async fn handle<R: serde::de::DeserializeOwned, C: LedgerCommand>(
    s: &AppState,
    trace: &TraceId,
    player: &str,
    headers: &HeaderMap,
    body: Option<Result<Bytes, BytesRejection>>,
    make: impl FnOnce(Arc<contracts::region::RegionConfig>, PlayerId, Option<R>) -> Result<C, ApiError>,
) -> Result<Json<C::Answer>, ApiError> {
    let player = own(s, headers, player).await?;
    let request = match body {
        Some(body) => Some(json_body::<R>(body)?.0),
        None => None,
    };
    let command = make(s.domains()?.region.clone(), player, request)?;
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
    handle::<(), _>(&s, &t, &player, &headers, None, |region, player, _| Ok(ReadLimits { region, player })).await
}

pub async fn put(
    State(s): State<Arc<AppState>>,
    Extension(t): Extension<TraceId>,
    Path(player): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<LimitsView>, ApiError> {
    handle(&s, &t, &player, &headers, Some(body), |region, player, request: Option<LimitsRequest>| {
        let changes = request.map(|r| r.changes).unwrap_or_default();
        if changes.is_empty() || changes.len() > 6 {
            return Err(ApiError::bad_request(CellCode::InvalidRequest, "changes: 1 to 6 of them"));
        }
        Ok(SetLimits { region, player, changes })
    })
    .await
}

pub async fn timeout(
    State(s): State<Arc<AppState>>,
    Extension(t): Extension<TraceId>,
    Path(player): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<LimitsView>, ApiError> {
    handle(&s, &t, &player, &headers, Some(body), |region, player, request: Option<TimeoutRequest>| {
        Ok(StartTimeout { region, player, hours: request.map_or(0, |r| r.hours) })
    })
    .await
}

pub async fn self_exclusion(
    State(s): State<Arc<AppState>>,
    Extension(t): Extension<TraceId>,
    Path(player): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<LimitsView>, ApiError> {
    handle(&s, &t, &player, &headers, Some(body), |region, player, request: Option<SelfExclusionRequest>| {
        Ok(SelfExclude { region, player, months: request.map_or(0, |r| r.months) })
    })
    .await
}

/// `GET /players/{id}/session`: the play session since the last login, its limits, when it ends
/// and when the next reality check is due, with what was staked and won in it.
pub async fn session(
    State(s): State<Arc<AppState>>,
    Extension(t): Extension<TraceId>,
    Path(player): Path<String>,
    headers: HeaderMap,
) -> Result<Json<SessionView>, ApiError> {
    handle::<(), _>(&s, &t, &player, &headers, None, |region, player, _| {
        Ok(Session { region, player, command: SessionCommand::Read })
    })
    .await
}

/// `PUT /players/{id}/session-limits`.
pub async fn session_limits(
    State(s): State<Arc<AppState>>,
    Extension(t): Extension<TraceId>,
    Path(player): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<SessionView>, ApiError> {
    handle(&s, &t, &player, &headers, Some(body), |region, player, request: Option<SessionLimitsRequest>| {
        let request = request.ok_or_else(|| ApiError::bad_request(CellCode::InvalidRequest, "a body is required"))?;
        Ok(Session { region, player, command: SessionCommand::SetLimits(request) })
    })
    .await
}

/// `POST /players/{id}/reality-check`: the player saw how long they played and what they won and
/// lost, and plays on until the next one.
pub async fn reality_check(
    State(s): State<Arc<AppState>>,
    Extension(t): Extension<TraceId>,
    Path(player): Path<String>,
    headers: HeaderMap,
) -> Result<Json<SessionView>, ApiError> {
    handle::<(), _>(&s, &t, &player, &headers, None, |region, player, _| {
        Ok(Session { region, player, command: SessionCommand::AcknowledgeRealityCheck })
    })
    .await
}
