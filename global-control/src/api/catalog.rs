//! Catalog routes.

use super::{authorize, blocking, json_body, ApiError, AppState};
use crate::rbac::Permission;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use bytes::Bytes;
use contracts::catalog::{Game, GamePutRequest, Provider, ProviderPutRequest};
use contracts::changes::ChangeRecord;
use contracts::flags::ChangeReason;
use contracts::ControlCode;
use contracts::Jurisdiction;
use serde::Deserialize;
use std::sync::Arc;

pub async fn providers(State(s): State<Arc<AppState>>, headers: HeaderMap) -> Result<Json<Vec<Provider>>, ApiError> {
    authorize(&s, &headers, Permission::CatalogRead)?;
    Ok(Json(s.store.read(|st| st.providers.values().cloned().collect())))
}

pub async fn provider_get(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Provider>, ApiError> {
    authorize(&s, &headers, Permission::CatalogRead)?;
    Ok(Json(crate::catalog::provider_get(&s.store, &id)?))
}

pub async fn provider_put(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Provider>, ApiError> {
    let who = authorize(&s, &headers, Permission::CatalogWrite)?;
    let request: ProviderPutRequest = json_body(body)?;
    let store = s.store.clone();
    let provider = blocking(move || crate::catalog::provider_put(&store, &who.actor(), &id, request)).await?;
    s.metrics.changes.inc();
    Ok(Json(provider))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GamesQuery {
    /// Only games offered there (certified and available).
    jurisdiction: Option<Jurisdiction>,
}

pub async fn games(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    query: Result<Query<GamesQuery>, QueryRejection>,
) -> Result<Json<Vec<Game>>, ApiError> {
    authorize(&s, &headers, Permission::CatalogRead)?;
    let Query(q) =
        query.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, ControlCode::InvalidQuery, e.body_text()))?;
    Ok(Json(
        s.store
            .read(|st| st.games.values().filter(|g| q.jurisdiction.is_none_or(|j| g.offered_in(j))).cloned().collect()),
    ))
}

pub async fn game_get(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Game>, ApiError> {
    authorize(&s, &headers, Permission::CatalogRead)?;
    Ok(Json(crate::catalog::game_get(&s.store, &id)?))
}

pub async fn game_put(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Game>, ApiError> {
    let who = authorize(&s, &headers, Permission::CatalogWrite)?;
    let request: GamePutRequest = json_body(body)?;
    let store = s.store.clone();
    let game = blocking(move || crate::catalog::game_put(&store, &who.actor(), &id, request)).await?;
    s.metrics.changes.inc();
    Ok(Json(game))
}

pub async fn game_delete(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ChangeRecord>, ApiError> {
    let who = authorize(&s, &headers, Permission::CatalogWrite)?;
    let ChangeReason { reason } = json_body(body)?;
    let store = s.store.clone();
    let record = blocking(move || crate::catalog::game_delete(&store, &who.actor(), &id, &reason)).await?;
    s.metrics.changes.inc();
    Ok(Json(record))
}
