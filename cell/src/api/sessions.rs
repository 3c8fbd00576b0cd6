//! `/sessions`: logins (a password for an access token and a refresh token), refresh, logout, and
//! the key that verifies this cell's access tokens.

use super::{blocking, client_address, json_body, ApiError, AppState, TraceId};
use crate::domains::identity::IdentityError;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use bytes::Bytes;
use contracts::sessions::{RefreshRequest, SessionClaims, SessionKey, SessionRequest, SessionResponse};
use contracts::CellCode;
use std::sync::Arc;

impl From<IdentityError> for ApiError {
    fn from(e: IdentityError) -> ApiError {
        let retry_after = match &e {
            IdentityError::Throttled { retry_after } => Some(*retry_after),
            _ => None,
        };
        let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        ApiError { retry_after, ..ApiError::new(status, e.code(), e.to_string()) }
    }
}

/// A login. It stores a session, but a retry is simply another login: no idempotency key.
pub async fn create(
    State(s): State<Arc<AppState>>,
    Extension(t): Extension<TraceId>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<SessionResponse>), ApiError> {
    let d = s.domains()?;
    let (request, _) = json_body::<SessionRequest>(body)?;
    let (identity, ctx, address) = (d.identity.clone(), s.event_context(&t, None), client_address(&headers));
    let player = request.player_id.clone();
    let tokens = blocking(move || {
        let code = request.totp.as_deref();
        identity.login(&request.player_id, request.password.expose(), code, address.as_deref(), &ctx)
    })
    .await?;
    // Only once the password is right (so nobody learns who is excluded from a guess): the
    // self-exclusion register, where the region asks at login. A refusal ends the new session.
    let point = contracts::region::ExclusionCheckPoint::Login;
    if let Err(refused) = d.compliance.screen_player(&player, point, &s.event_context(&t, None), &d.ledger).await {
        let (identity, token) = (d.identity.clone(), tokens.access_token.clone());
        blocking(move || identity.verify(&token).and_then(|claims| identity.logout(&claims))).await?;
        return Err(refused.into());
    }
    // A login starts a play session: its time limit and reality checks count from now.
    let start = crate::domains::compliance::limits::Session {
        region: d.region.clone(),
        player,
        command: crate::domains::compliance::limits::SessionCommand::Start,
    };
    d.ledger.execute_unkeyed(start, s.event_context(&t, None)).await?;
    Ok((StatusCode::CREATED, Json(tokens)))
}

pub async fn refresh(
    State(s): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<SessionResponse>, ApiError> {
    let d = s.domains()?;
    let (request, _) = json_body::<RefreshRequest>(body)?;
    let identity = d.identity.clone();
    Ok(Json(blocking(move || identity.refresh(&request.refresh_token)).await?))
}

/// Logout: ends the session the bearer token names.
pub async fn logout(State(s): State<Arc<AppState>>, headers: HeaderMap) -> Result<StatusCode, ApiError> {
    let d = s.domains()?;
    let claims = session(&s, &headers).await?;
    let identity = d.identity.clone();
    blocking(move || identity.logout(&claims)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The claims of the request's `Authorization: Bearer` token, for a session that has not ended:
/// 401 `INVALID_SESSION` otherwise.
pub async fn session(s: &AppState, headers: &HeaderMap) -> Result<SessionClaims, ApiError> {
    let d = s.domains()?;
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                CellCode::InvalidSession,
                "this route needs Authorization: Bearer <access token>",
            )
        })?
        .to_owned();
    let identity = d.identity.clone();
    blocking(move || identity.verify(&token)).await
}

/// `POST /players/{id}/totp`: enrols an authenticator for the player of the bearer token.
pub async fn enrol_totp(
    State(s): State<Arc<AppState>>,
    axum::extract::Path(player): axum::extract::Path<String>,
    headers: HeaderMap,
) -> Result<(StatusCode, Json<contracts::sessions::TotpEnrolment>), ApiError> {
    let d = s.domains()?;
    let claims = session(&s, &headers).await?;
    if claims.sub.as_str() != player {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            CellCode::NotYourAccount,
            "a player enrols only their own authenticator",
        ));
    }
    let identity = d.identity.clone();
    Ok((StatusCode::CREATED, Json(blocking(move || identity.enrol_totp(&claims)).await?)))
}

pub async fn key(State(s): State<Arc<AppState>>) -> Result<Json<SessionKey>, ApiError> {
    Ok(Json(s.domains()?.sessions.public_key()))
}
