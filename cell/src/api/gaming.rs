//! `/gaming/{provider}/{call}`: providers' seamless-wallet calls, in their own dialect; and the ops
//! routes that list providers and put one in maintenance.

use super::{json_body, ApiError, AppState, HeadersAndBody, TraceId, IDEMPOTENT_REPLAY};
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use bytes::Bytes;
use contracts::gaming::{MaintenanceRequest, ProviderStatus};
use contracts::CellCode;
use std::sync::Arc;

pub async fn call(
    State(s): State<Arc<AppState>>,
    Extension(t): Extension<TraceId>,
    Path((provider, call)): Path<(String, String)>,
    HeadersAndBody { headers, body }: HeadersAndBody,
) -> Result<Response, ApiError> {
    let d = s.domains()?;
    let body = body.map_err(|r| {
        let code =
            if r.status() == StatusCode::PAYLOAD_TOO_LARGE { CellCode::BodyTooLarge } else { CellCode::BodyUnreadable };
        ApiError::new(r.status(), code, r.body_text())
    })?;
    let rendered = d.gaming.call(&provider, &call, &headers, &body, s.event_context(&t, None)).await;
    let status = StatusCode::from_u16(rendered.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, [(header::CONTENT_TYPE, "application/json")], rendered.body).into_response();
    if rendered.replayed {
        response.headers_mut().insert(IDEMPOTENT_REPLAY.clone(), HeaderValue::from_static("true"));
    }
    Ok(response)
}

pub async fn providers(State(s): State<Arc<AppState>>) -> Result<Json<Vec<ProviderStatus>>, ApiError> {
    Ok(Json(s.domains()?.gaming.statuses()))
}

/// Longest maintenance reason (the schema's `maxLength`).
const MAINTENANCE_REASON_CHARS_MAX: usize = 500;

/// Puts one provider in maintenance (its new bets get 503, its wins and rollbacks still settle) or
/// takes it out. Setting a state is idempotent by nature, so no idempotency key.
pub async fn maintenance(
    State(s): State<Arc<AppState>>,
    Path(provider): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ProviderStatus>, ApiError> {
    let d = s.domains()?;
    let (request, _) = json_body::<MaintenanceRequest>(body)?;
    // Blank as the schema's `\S` has it (Unicode white space, and the separators U+001C to U+001F).
    let blank = |c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c);
    if request.reason.chars().all(blank) {
        return Err(ApiError::bad_request(CellCode::ReasonMissing, "say why the provider's state changes (reason)"));
    }
    if request.reason.chars().count() > MAINTENANCE_REASON_CHARS_MAX {
        let message = format!("a reason of at most {MAINTENANCE_REASON_CHARS_MAX} characters");
        return Err(ApiError::bad_request(CellCode::InvalidRequest, message));
    }
    let gaming = d.gaming.clone();
    let status =
        super::blocking(move || gaming.set_maintenance(&provider, request.maintenance, request.reason)).await?;
    Ok(Json(status))
}
