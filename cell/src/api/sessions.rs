//! `/sessions`: short-lived session tokens for registered players, and the key to verify them.

use super::{json_body, ApiError, AppState};
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use bytes::Bytes;
use contracts::sessions::{SessionKey, SessionRequest, SessionResponse};
use contracts::CellCode;
use std::sync::Arc;

/// Issues a token. It changes nothing in the store, so it needs no idempotency key. (Player
/// authentication itself is not built yet: any registered player id gets a token.)
pub async fn create(
    State(s): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<SessionResponse>), ApiError> {
    let d = s.domains()?;
    let (request, _) = json_body::<SessionRequest>(body)?;
    let compliance = d.compliance.clone();
    let id = request.player_id.clone();
    let player = tokio::task::spawn_blocking(move || compliance.player(&id))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, CellCode::Internal, e.to_string()))?
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, CellCode::StoreUnavailable, e.to_string()))?;
    if player.is_none() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            CellCode::PlayerNotFound,
            format!("player {} is not registered in this cell", request.player_id),
        ));
    }
    let (token, exp) = d.sessions.issue(&request.player_id, d.clock.now().timestamp());
    let expires_at = chrono::DateTime::from_timestamp(exp, 0).unwrap_or_default();
    Ok((StatusCode::CREATED, Json(SessionResponse { token, expires_at, cell: s.cell.clone() })))
}

pub async fn key(State(s): State<Arc<AppState>>) -> Result<Json<SessionKey>, ApiError> {
    Ok(Json(s.domains()?.sessions.public_key()))
}
