//! Flag routes.

use super::{authorize, blocking, json_body, ApiError, AppState};
use crate::error::ControlError;
use crate::rbac::Permission;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use bytes::Bytes;
use contracts::changes::{ChangePage, ChangeRecord};
use contracts::flags::{
    evaluate as flag_evaluate, ChangeReason, EvaluationContext, EvaluationResult, Flag, FlagKey, FlagLock,
    FlagPutRequest,
};
use contracts::ControlCode;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Default and largest page of the change log.
const PAGE_RECORDS_DEFAULT: usize = 100;
const PAGE_RECORDS_MAX: usize = 1_000;

pub async fn list(State(s): State<Arc<AppState>>, headers: HeaderMap) -> Result<Json<Vec<Flag>>, ApiError> {
    authorize(&s, &headers, Permission::FlagsRead)?;
    Ok(Json(s.store.read(|st| st.flags.values().cloned().collect())))
}

pub async fn get(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(key): Path<String>,
) -> Result<Json<Flag>, ApiError> {
    authorize(&s, &headers, Permission::FlagsRead)?;
    Ok(Json(crate::flags::flag_get(&s.store, &key)?))
}

pub async fn put(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(key): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Flag>, ApiError> {
    let who = authorize(&s, &headers, Permission::FlagsWrite)?;
    let request: FlagPutRequest = json_body(body)?;
    let state = s.clone();
    let flag =
        blocking(move || crate::flags::flag_put(&state.store, &state.locks, &who.actor(), &key, request)).await?;
    s.metrics.changes.inc();
    tracing::info!(flag = %flag.key, version = flag.version, by = %flag.updated_by, "flag changed");
    Ok(Json(flag))
}

pub async fn kill(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(key): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Flag>, ApiError> {
    let who = authorize(&s, &headers, Permission::FlagsWrite)?;
    let ChangeReason { reason } = json_body(body)?;
    let state = s.clone();
    let flag =
        blocking(move || crate::flags::flag_kill(&state.store, &state.locks, &who.actor(), &key, &reason)).await?;
    s.metrics.changes.inc();
    tracing::warn!(flag = %flag.key, version = flag.version, by = %flag.updated_by, "kill switch: flag off everywhere");
    Ok(Json(flag))
}

pub async fn delete(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(key): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ChangeRecord>, ApiError> {
    let who = authorize(&s, &headers, Permission::FlagsWrite)?;
    let ChangeReason { reason } = json_body(body)?;
    let state = s.clone();
    let record = blocking(move || crate::flags::flag_delete(&state.store, &who.actor(), &key, &reason)).await?;
    s.metrics.changes.inc();
    Ok(Json(record))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    after: Option<u64>,
    limit: Option<usize>,
}

fn page_limit(q: &PageQuery) -> Result<usize, ApiError> {
    let limit = q.limit.unwrap_or(PAGE_RECORDS_DEFAULT);
    if limit == 0 || limit > PAGE_RECORDS_MAX {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            ControlCode::InvalidLimit,
            format!("limit must be 1 to {PAGE_RECORDS_MAX}"),
        ));
    }
    Ok(limit)
}

async fn page(
    s: &Arc<AppState>,
    query: Result<Query<PageQuery>, QueryRejection>,
    flag: Option<FlagKey>,
) -> Result<Json<ChangePage>, ApiError> {
    let Query(q) =
        query.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, ControlCode::InvalidQuery, e.body_text()))?;
    let limit = page_limit(&q)?;
    let after = q.after.unwrap_or(0);
    let store = s.store.clone();
    let records = blocking(move || Ok(store.records_after(after, limit, flag.as_ref())?)).await?;
    let next_after = (records.len() == limit).then(|| records.last().map(|r| r.version)).flatten();
    Ok(Json(ChangePage { records, next_after }))
}

/// The whole change log (flags and catalog), oldest first.
pub async fn changes(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Json<ChangePage>, ApiError> {
    authorize(&s, &headers, Permission::FlagsRead)?;
    page(&s, query, None).await
}

/// One flag's history: every record that wrote or deleted it.
pub async fn history(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(key): Path<String>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Json<ChangePage>, ApiError> {
    authorize(&s, &headers, Permission::FlagsRead)?;
    let key = FlagKey::new(key).map_err(ControlError::Invalid)?;
    page(&s, query, Some(key)).await
}

/// What a player would get, with the same function the cells use (locks of `context.region`
/// included): lets product check targeting before rolling out.
pub async fn evaluate(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(key): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<EvaluationResult>, ApiError> {
    authorize(&s, &headers, Permission::FlagsRead)?;
    let ctx: EvaluationContext = json_body(body)?;
    let locks = ctx.region.as_ref().and_then(|r| s.locks.0.get(r)).cloned().unwrap_or_default();
    let flag = FlagKey::new(key.clone()).ok().and_then(|k| s.store.read(|st| st.flags.get(&k).cloned()));
    Ok(Json(flag_evaluate(&key, flag.as_ref(), &ctx, None, chrono::Utc::now(), &locks)))
}

/// Every region's regulatory locks.
pub async fn locks(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<BTreeMap<String, Vec<FlagLock>>>, ApiError> {
    authorize(&s, &headers, Permission::FlagsRead)?;
    Ok(Json(s.locks.0.clone()))
}
