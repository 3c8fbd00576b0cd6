//! Tokens, connected cells, regulator exports, and the operational routes.

use super::{authorize, blocking, json_body, ApiError, AppState};
use crate::error::ControlError;
use crate::rbac::{self, Permission, Principal, Role};
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use contracts::operators::{OperatorTokenRequest, OperatorTokenResponse};
use contracts::ControlCode;
use contracts::Jurisdiction;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// `POST /tokens`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenRequest {
    name: String,
    roles: Vec<Role>,
}

/// The created token: the secret is in this answer and nowhere else, ever.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenCreated {
    token: String,
    #[serde(flatten)]
    principal: Principal,
}

pub async fn token_create(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<TokenCreated>), ApiError> {
    let who = authorize(&s, &headers, Permission::TokensAdmin)?;
    let request: TokenRequest = json_body(body)?;
    if request.name.trim().is_empty() || request.name.len() > 128 || request.roles.is_empty() {
        return Err(ControlError::Invalid("a token needs a name (1 to 128 bytes) and at least one role".into()).into());
    }
    let secret = rbac::new_secret();
    let store = s.store.clone();
    let (secret_for_store, actor) = (secret.clone(), who.actor());
    let principal =
        blocking(move || Ok(rbac::token_create(&store, &secret_for_store, &request.name, request.roles, &actor)?))
            .await?;
    tracing::info!(token = %principal.id, name = %principal.name, by = %who.actor(), "token created");
    Ok((StatusCode::CREATED, Json(TokenCreated { token: secret, principal })))
}

pub async fn token_list(State(s): State<Arc<AppState>>, headers: HeaderMap) -> Result<Json<Vec<Principal>>, ApiError> {
    authorize(&s, &headers, Permission::TokensAdmin)?;
    let store = s.store.clone();
    Ok(Json(blocking(move || Ok(rbac::token_list(&store)?)).await?))
}

pub async fn token_revoke(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let who = authorize(&s, &headers, Permission::TokensAdmin)?;
    let store = s.store.clone();
    let target = id.clone();
    if blocking(move || Ok(rbac::token_revoke(&store, &target)?)).await? {
        tracing::info!(token = %id, by = %who.actor(), "token revoked");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ControlError::NotFound { code: ControlCode::TokenNotFound, what: "token", id }.into())
    }
}

/// `POST /operator-tokens {role}`: a short-lived token for a cell's back office, signed with
/// global-control's key. The caller's API token must hold the role (or admin); the token is logged
/// by its id, never itself.
pub async fn operator_token(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<OperatorTokenResponse>), ApiError> {
    // Authenticate before reading the body, so a caller without a token learns nothing from it.
    super::authenticate(&s, &headers)?;
    let request: OperatorTokenRequest = json_body(body)?;
    let who = authorize(&s, &headers, Permission::OperatorToken(request.role))?;
    let (claims, token) = contracts::operators::issue(&s.operator_key, request.role, &who.id, super::unix_now());
    tracing::info!(token = %claims.jti, role = %claims.role, by = %who.actor(), "operator token issued");
    let response =
        OperatorTokenResponse { token, token_id: claims.jti, role: claims.role, expires_in: claims.exp - claims.iat };
    Ok((StatusCode::CREATED, Json(response)))
}

/// A connected cell's sync session.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CellView {
    cell: String,
    remote: String,
    connected_at: chrono::DateTime<chrono::Utc>,
    sent_version: u64,
    acked_version: u64,
    last_ack_at: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CellsView {
    version: u64,
    cells: Vec<CellView>,
}

pub async fn cells(State(s): State<Arc<AppState>>, headers: HeaderMap) -> Result<Json<CellsView>, ApiError> {
    authorize(&s, &headers, Permission::OpsRead)?;
    let cells = s
        .sync
        .sessions()
        .into_iter()
        .map(|c| CellView {
            cell: c.cell,
            remote: c.remote.to_string(),
            connected_at: c.connected_at.into(),
            sent_version: c.sent_version,
            acked_version: c.acked_version,
            last_ack_at: c.last_ack_at.map(Into::into),
        })
        .collect();
    Ok(Json(CellsView { version: s.store.version(), cells }))
}

fn jurisdiction_of(jurisdiction: &str) -> Result<Jurisdiction, ApiError> {
    serde_json::from_value(jurisdiction.to_ascii_uppercase().into()).map_err(|_| {
        let all: Vec<String> = Jurisdiction::ALL.iter().map(|j| j.to_string()).collect();
        // Players' countries and jurisdictions share codes but one: Great Britain's is UK.
        let hint = if jurisdiction.eq_ignore_ascii_case("GB") { " (Great Britain's jurisdiction is UK)" } else { "" };
        ApiError::new(
            StatusCode::NOT_FOUND,
            ControlCode::JurisdictionNotFound,
            format!("`{jurisdiction}` is not a jurisdiction: one of {}{hint}", all.join(", ")),
        )
    })
}

/// `GET /exports/{jurisdiction}`: the jurisdiction's scheduled exports and where each stands,
/// with the signed manifest of each one built (the files stay in the cell).
pub async fn exports(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(jurisdiction): Path<String>,
) -> Result<Json<crate::exports::ExportsView>, ApiError> {
    let j = jurisdiction_of(&jurisdiction)?;
    authorize(&s, &headers, Permission::Exports(j))?;
    Ok(Json(s.exports.view(j)))
}

/// `GET /exports/{jurisdiction}/{exportId}/files/{path}`: one file of an export, streamed from
/// the cell that holds it, asked for with an operator token of the caller's role (the regulator's
/// or admin's) and id, so the cell chains who downloaded it (`export.downloaded`).
pub async fn export_file(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Path((jurisdiction, export_id, file)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let j = jurisdiction_of(&jurisdiction)?;
    let who = authorize(&s, &headers, Permission::Exports(j))?;
    let cell = s.exports.cell_of(j).ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, ControlCode::JurisdictionNotFound, format!("no cell serves {j} here"))
    })?;
    let path = format!("/exports/{export_id}/files/{file}");
    // The cell chains the download under the caller's own role: the regulator's, or admin's.
    let regulator = who.roles.iter().any(|r| matches!(r, Role::Regulator(x) if *x == j));
    let role = if regulator { contracts::operators::Role::Regulator(j) } else { contracts::operators::Role::Admin };
    let answer = s.exports.call(cell, "GET", &path, Some((role, &who.id)), None).await.map_err(|e| {
        ApiError::new(StatusCode::BAD_GATEWAY, ControlCode::CellUnavailable, format!("cell {cell}: {e:#}"))
    })?;
    tracing::info!(export = %export_id, %file, by = %who.actor(), status = answer.0, "export download");
    let status = StatusCode::from_u16(answer.0).unwrap_or(StatusCode::BAD_GATEWAY);
    Ok((status, [(header::CONTENT_TYPE, "application/octet-stream")], answer.1).into_response())
}

pub async fn healthz() -> &'static str {
    "ok"
}

/// Ready once the store is open and the sync endpoint bound (both happen before the HTTP
/// listener starts, so a listening control plane is ready).
pub async fn readyz(State(s): State<Arc<AppState>>) -> Response {
    (StatusCode::OK, format!("ready at version {}", s.store.version())).into_response()
}

pub async fn metrics(State(s): State<Arc<AppState>>) -> Response {
    s.metrics.version.set(s.store.version() as i64);
    s.metrics.sync_sessions.set(s.sync.sessions().len() as i64);
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], s.metrics.render())
        .into_response()
}
