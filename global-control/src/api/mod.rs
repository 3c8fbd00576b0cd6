//! The control API: JSON over HTTP, every refusal `{code, message}` with a stable code, every
//! route but health, readiness, metrics and the OpenAPI document behind an API token whose roles
//! grant the route's [`Permission`].

mod admin;
mod catalog;
mod flags;
mod openapi;

use crate::error::ControlError;
use crate::flags::Locks;
use crate::metrics::{HttpLabels, Metrics, RouteLabels};
use crate::rbac::{self, Permission, Principal};
use crate::store::ControlStore;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use contracts::ControlCode;
use contracts::ErrorBody;
use replication::sync::SyncServer;
use serde::de::DeserializeOwned;
use std::sync::Arc;
use std::time::Instant;
use tracing::Instrument;

/// Largest request body: the largest flag the limits allow in practice (a few hundred rule
/// values) is tens of kilobytes; this also bounds one change record on the sync wire.
pub const REQUEST_BODY_BYTES_MAX: usize = 256 * 1024;

/// What every handler shares.
pub struct AppState {
    pub store: Arc<ControlStore>,
    pub locks: Locks,
    pub sync: Arc<SyncServer>,
    pub metrics: Arc<Metrics>,
    /// Wrong or missing tokens, per address (see [`throttle_token_failures`]).
    pub token_failures: TokenFailures,
    /// Signs operator tokens (`POST /operator-tokens`).
    pub operator_key: ed25519_dalek::SigningKey,
    /// The regulator exports the cells build on schedule.
    pub exports: Arc<crate::exports::Exports>,
}

/// Failed authentications per client address: past a limit in a minute ([`TOKEN_FAILURES_MAX`]
/// unless the operator sets another), the
/// address is refused (429 `AUTH_THROTTLED`) until its oldest failure is a minute old. Each
/// failure is logged, at most one line a second (with how many were not).
pub struct TokenFailures {
    window: std::sync::Mutex<replication::throttle::FailureWindow>,
    logged: std::sync::Mutex<(Option<Instant>, u64)>,
}

/// Wrong tokens one address may present in a minute: an operator mistypes a few, a scanner
/// thousands.
pub const TOKEN_FAILURES_MAX: usize = 20;

impl TokenFailures {
    /// At most `per_minute` wrong tokens a minute from one address.
    pub fn new(per_minute: usize) -> TokenFailures {
        TokenFailures {
            window: std::sync::Mutex::new(replication::throttle::FailureWindow::new(per_minute, 60)),
            logged: std::sync::Mutex::new((None, 0)),
        }
    }
}

/// Unix seconds, for the failure window (the control plane reads the wall clock).
fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// Refuses an address that has presented too many wrong tokens; counts and logs each new one.
async fn throttle_token_failures(
    State(state): State<Arc<AppState>>,
    request: axum::extract::Request,
    next: Next,
) -> Response {
    let peer = request.extensions().get::<replication::http::PeerAddr>().map(|p| p.0.ip().to_string());
    let failures = &state.token_failures;
    if let Some(peer) = &peer {
        let refused = failures.window.lock().unwrap_or_else(|p| p.into_inner()).refused(peer, unix_now());
        if let Some(seconds) = refused {
            let message = format!("too many wrong tokens from this address; retry in {seconds} s");
            let mut response =
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, ControlCode::AuthThrottled, message).into_response();
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            return response;
        }
    }
    let response = next.run(request).await;
    if response.status() == StatusCode::UNAUTHORIZED {
        let peer = peer.unwrap_or_else(|| "unknown".into());
        failures.window.lock().unwrap_or_else(|p| p.into_inner()).failed(&peer, unix_now());
        let mut logged = failures.logged.lock().unwrap_or_else(|p| p.into_inner());
        let due = logged.0.is_none_or(|at| at.elapsed() >= std::time::Duration::from_secs(1));
        if due {
            tracing::warn!(%peer, unlogged_since = logged.1, "a request with a wrong or missing token was refused");
            *logged = (Some(Instant::now()), 0);
        } else {
            logged.1 += 1;
        }
    }
    response
}

/// A refusal as HTTP.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: ControlCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: ControlCode, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into() }
    }
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> ApiError {
        if let ControlError::Store(inner) = &e {
            tracing::error!(error = %inner, "store");
        }
        let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        ApiError::new(status, e.code(), e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(ErrorBody { code: self.code.as_str().to_owned(), message: self.message }))
            .into_response()
    }
}

/// The caller, if its token grants `permission`: 401 without a (known) token, 403 without the role.
fn authorize(state: &AppState, headers: &HeaderMap, permission: Permission) -> Result<Principal, ApiError> {
    let principal = authenticate(state, headers)?;
    if !principal.may(permission) {
        let roles: Vec<String> = principal.roles.iter().map(|r| r.to_string()).collect();
        let needed = permission.granted_by().join(", ");
        let message = format!(
            "this token may not {}: that takes {needed} (it holds {})",
            permission.describe(),
            roles.join(", ")
        );
        return Err(ControlError::Forbidden(message).into());
    }
    Ok(principal)
}

/// The caller its bearer token names: 401 without a (known) token.
fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Principal, ApiError> {
    let secret = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or(ControlError::Unauthenticated)?;
    Ok(rbac::authenticate(&state.store, secret).map_err(ControlError::from)?.ok_or(ControlError::Unauthenticated)?)
}

/// Parses a JSON body into `T`, refusing with a precise message (and writing nothing).
fn json_body<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    let bytes = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ControlCode::BodyTooLarge,
                format!("request body is over {REQUEST_BODY_BYTES_MAX} bytes"),
            )
        } else {
            ApiError::new(StatusCode::BAD_REQUEST, ControlCode::BodyUnreadable, rejection.body_text())
        }
    })?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        // A DELETE or a kill with no body, typically: every change says why.
        let message = "this call takes a JSON body; every change carries its \"reason\"";
        return Err(ApiError::new(StatusCode::BAD_REQUEST, ControlCode::MalformedJson, message));
    }
    // Strict: a repeated key is refused rather than resolved (`contracts::json`).
    let value = contracts::json::parse_strict(&bytes).map_err(|e| {
        ApiError::new(StatusCode::BAD_REQUEST, ControlCode::MalformedJson, format!("request body is not JSON: {e}"))
    })?;
    serde_json::from_value(value)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, ControlCode::InvalidRequest, e.to_string()))
}

/// Runs a blocking store operation (writes sync to disk) off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ControlError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, ControlCode::Internal, e.to_string()))?
        .map_err(ApiError::from)
}

/// Every request: a span, latency and status metrics.
async fn observe(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route =
        request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "unmatched".into());
    let span = tracing::info_span!("request", method = %request.method(), route = %route);
    let response = next.run(request).instrument(span.clone()).await;
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    span.in_scope(|| tracing::debug!(status, elapsed_us = elapsed.as_micros() as u64, "answered"));
    state.metrics.http_requests.get_or_create(&HttpLabels { route: route.clone(), status }).inc();
    state.metrics.http_seconds.get_or_create(&RouteLabels { route }).observe(elapsed.as_secs_f64());
    response
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, ControlCode::NotFound, "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, ControlCode::MethodNotAllowed, "this route does not take that method")
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/flags", get(flags::list))
        .route("/flags/{key}", get(flags::get).put(flags::put).delete(flags::delete))
        .route("/flags/{key}/kill", post(flags::kill))
        .route("/flags/{key}/history", get(flags::history))
        .route("/flags/{key}/evaluate", post(flags::evaluate))
        .route("/changes", get(flags::changes))
        .route("/locks", get(flags::locks))
        .route("/catalog/providers", get(catalog::providers))
        .route("/catalog/providers/{id}", get(catalog::provider_get).put(catalog::provider_put))
        .route("/catalog/games", get(catalog::games))
        .route("/catalog/games/{id}", get(catalog::game_get).put(catalog::game_put).delete(catalog::game_delete))
        .route("/cells", get(admin::cells))
        .route("/exports/{jurisdiction}", get(admin::exports))
        .route("/exports/{jurisdiction}/{export_id}/files/{*file}", get(admin::export_file))
        .route("/tokens", post(admin::token_create).get(admin::token_list))
        .route("/tokens/{id}", axum::routing::delete(admin::token_revoke))
        .route("/operator-tokens", post(admin::operator_token))
        .route("/healthz", get(admin::healthz))
        .route("/readyz", get(admin::readyz))
        .route("/metrics", get(admin::metrics))
        .route("/openapi.json", get(openapi::document))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(state.clone(), throttle_token_failures))
        .layer(axum::middleware::from_fn_with_state(state.clone(), observe))
        .layer(DefaultBodyLimit::max(REQUEST_BODY_BYTES_MAX))
        .with_state(state)
}
