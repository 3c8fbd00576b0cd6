//! The cell's HTTP API: JSON in and out, every refusal a `{code, message}` body with a stable code.
//!
//! Handlers are thin: parse and check the request here, then call the owning domain. Mutating
//! routes require `X-Idempotency-Key`; bad input is refused before any domain sees it, so it
//! writes nothing.

mod audit;
pub mod callers;
mod cashier;
mod catalog;
mod compliance;
mod exports;
mod gaming;
mod limits;
mod openapi;
mod ops;
mod players;
mod sessions;
mod wallet;

use crate::domains::compliance::{Compliance, ComplianceError};
use crate::events::EventContext;
use crate::idempotency::{Answer, IdempotencyKey};
use crate::ledger::{Failed, Ledger, Refusal};
use crate::metrics::{HttpLabels, Metrics, RouteLabels};
use crate::store::Store;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, MatchedPath, Request};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use bytes::Bytes;
use contracts::operators::OperatorRef;
use contracts::CellCode;
use contracts::ErrorBody;
use serde::de::DeserializeOwned;
use std::sync::{Arc, OnceLock};
use std::time::Instant;
use tracing::Instrument;

/// Largest request body accepted. The biggest legitimate body, a settle of
/// `SETTLE_OPERATIONS_MAX` operations, is about 75 kB.
pub const REQUEST_BODY_BYTES_MAX: usize = 128 * 1024;

pub static IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("x-idempotency-key");
pub static IDEMPOTENT_REPLAY: HeaderName = HeaderName::from_static("idempotent-replay");
pub static X_CELL: HeaderName = HeaderName::from_static("x-cell");

/// The domains, available once the store is open.
pub struct Domains {
    pub store: Arc<dyn Store>,
    pub ledger: Ledger,
    pub compliance: Compliance,
    pub cashier: Arc<crate::domains::cashier::Cashier>,
    pub gaming: Arc<crate::domains::gaming::Gaming>,
    pub catalog: Arc<crate::domains::catalog::Catalog>,
    pub audit: Arc<crate::audit::Checkpointer>,
    pub sessions: Arc<crate::sessions::SessionSigner>,
    pub identity: Arc<crate::domains::identity::Identity>,
    /// Checks the back office's operator tokens.
    pub operators: Arc<crate::operators::OperatorTokens>,
    pub region: Arc<contracts::region::RegionConfig>,
    /// Where every domain reads the time.
    pub clock: Arc<dyn crate::clock::Clock>,
    /// The cell's data directory (keys, the export vault).
    pub data_dir: std::path::PathBuf,
    /// The regulator's TamperToken service (Denmark's exports), `http://HOST:PORT`.
    pub tamper_token_url: Option<String>,
}

/// What every handler shares.
pub struct AppState {
    pub cell: String,
    /// `X-Cell` on every answer: this cell's id, made once (`None` if the id is no header value).
    pub cell_header: Option<HeaderValue>,
    pub metrics: Arc<Metrics>,
    /// Set once the store is open; until then only `/healthz`, `/readyz` and `/metrics` answer.
    /// A standby never sets it until promoted: it serves nothing that moves money.
    pub domains: OnceLock<Domains>,
    /// This cell's part in replication, when it has standbys or is one.
    pub replica: OnceLock<Arc<crate::replica::ReplicaState>>,
}

impl AppState {
    fn domains(&self) -> Result<&Domains, ApiError> {
        self.domains.get().ok_or_else(|| match self.refusal() {
            Some(refused) => refused,
            None => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                CellCode::NotReady,
                "the cell is still opening its store",
            ),
        })
    }

    /// Why this cell takes no write (a standby, a fenced primary), if it takes none.
    fn refusal(&self) -> Option<ApiError> {
        let (code, message) = self.replica.get()?.refusal()?;
        let code = match code {
            "CELL_STANDBY" => CellCode::CellStandby,
            "CELL_LEASE_EXPIRED" => CellCode::CellLeaseExpired,
            _ => CellCode::CellFenced,
        };
        Some(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, message))
    }

    /// What the events of a request carry: this cell, the trace, and on a back-office request the
    /// operator (`callers::authorise` puts it in the request's extensions).
    fn event_context(&self, trace: &TraceId, operator: Option<OperatorRef>) -> EventContext {
        EventContext { cell: self.cell.clone(), trace_id: trace.0.clone(), operator }
    }
}

/// The request's W3C trace id (from `traceparent`, or new).
#[derive(Debug, Clone)]
pub struct TraceId(pub String);

/// A refusal: HTTP status, stable code, human message.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: CellCode,
    pub message: String,
    /// `Retry-After`, in seconds, for a refusal that ends by itself (a throttled login).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: CellCode, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), retry_after: None }
    }

    pub fn bad_request(code: CellCode, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody { code: self.code.as_str().to_owned(), message: self.message };
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> ApiError {
        let (code, status_code) = e.answer();
        ApiError::new(status(status_code), code, e.to_string())
    }
}

impl<R: Refusal> From<Failed<R>> for ApiError {
    fn from(e: Failed<R>) -> ApiError {
        ApiError::new(status(e.status()), e.code(), e.to_string())
    }
}

/// Runs blocking work (the store, a password hash) off the async runtime; its refusal as an
/// [`ApiError`].
async fn blocking<T, E>(work: impl FnOnce() -> Result<T, E> + Send + 'static) -> Result<T, ApiError>
where
    T: Send + 'static,
    E: Send + 'static,
    ApiError: From<E>,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, CellCode::Internal, e.to_string()))?
        .map_err(ApiError::from)
}

impl From<crate::domains::gaming::GamingError> for ApiError {
    fn from(e: crate::domains::gaming::GamingError) -> ApiError {
        ApiError::new(status(e.status()), e.code(), e.to_string())
    }
}

impl From<crate::events::ReadError> for ApiError {
    fn from(e: crate::events::ReadError) -> ApiError {
        match e {
            crate::events::ReadError::Cursor(e) => ApiError::bad_request(CellCode::InvalidCursor, e.to_string()),
            crate::events::ReadError::Store(e) => e.into(),
            e @ crate::events::ReadError::Corrupt { .. } => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, CellCode::EventCorrupt, e.to_string())
            }
        }
    }
}

/// A ledger command's outcome as the HTTP answer: its recorded body, with `Idempotent-Replay`
/// when it is an earlier request's answer under the same key.
fn ledger_answer<A, R: Refusal>(outcome: Result<crate::ledger::Answered<A>, Failed<R>>) -> Result<Response, ApiError> {
    match outcome {
        Ok(a) => Ok(answer(Answer { status: 200, body: a.body, replayed: a.replayed })),
        Err(replayed @ Failed::Replayed { .. }) => {
            let body = serde_json::to_vec(&replayed.body()).expect("an error body serialises").into();
            Ok(answer(Answer { status: replayed.status(), body, replayed: true }))
        }
        Err(failed) => Err(failed.into()),
    }
}

impl From<crate::domains::wallet::WalletError> for ApiError {
    fn from(e: crate::domains::wallet::WalletError) -> ApiError {
        ApiError::new(status(e.status()), e.code(), e.to_string())
    }
}

impl From<ComplianceError> for ApiError {
    fn from(e: ComplianceError) -> ApiError {
        // A register that did not answer may well answer in half a minute.
        let retry_after = matches!(
            e,
            ComplianceError::RegisterUnavailable(_)
                | ComplianceError::ScreeningUnavailable(_)
                | ComplianceError::KycUnavailable(_)
        )
        .then_some(30);
        ApiError { retry_after, ..ApiError::new(status(e.status()), e.code(), e.to_string()) }
    }
}

/// The client's address as the router placed it (`X-Client-IP`, which only the router sets), if
/// the request came through one.
fn client_address(headers: &HeaderMap) -> Option<String> {
    headers.get("x-client-ip").and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// Parses a JSON body into `T`, refusing with a precise message.
fn json_body<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<(T, serde_json::Value), ApiError> {
    let bytes = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                CellCode::BodyTooLarge,
                format!("request body is over {REQUEST_BODY_BYTES_MAX} bytes"),
            )
        } else {
            ApiError::bad_request(CellCode::BodyUnreadable, rejection.body_text())
        }
    })?;
    // Strict: a repeated key is refused, so the fingerprint and the request read the same body.
    let value = contracts::json::parse_strict(&bytes)
        .map_err(|e| ApiError::bad_request(CellCode::MalformedJson, format!("request body is not JSON: {e}")))?;
    let request = T::deserialize(&value).map_err(|e| ApiError::bad_request(CellCode::InvalidRequest, e.to_string()))?;
    Ok((request, value))
}

/// A request's headers and body. axum's `HeaderMap` extractor clones the headers; this takes them.
pub struct HeadersAndBody {
    pub headers: HeaderMap,
    pub body: Result<Bytes, BytesRejection>,
}

impl<S: Send + Sync> FromRequest<S> for HeadersAndBody {
    type Rejection = std::convert::Infallible;

    async fn from_request(mut request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let headers = std::mem::take(request.headers_mut());
        // Read within `DefaultBodyLimit`, which the request's extensions carry.
        let body = Bytes::from_request(request, state).await;
        Ok(HeadersAndBody { headers, body })
    }
}

/// Parses a mutating request: its body and its idempotency key, fingerprinted with `route`.
fn mutating<T: DeserializeOwned>(
    route: &str,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(T, IdempotencyKey), ApiError> {
    let key = headers
        .get(&IDEMPOTENCY_KEY)
        .ok_or_else(|| {
            ApiError::bad_request(CellCode::IdempotencyKeyMissing, "mutating requests need an X-Idempotency-Key header")
        })?
        .to_str()
        .map_err(|_| {
            ApiError::bad_request(CellCode::IdempotencyKeyInvalid, "X-Idempotency-Key must be printable ASCII")
        })?
        .to_owned();
    let (request, mut value) = json_body::<T>(body)?;
    // A password is never part of a fingerprint: the fingerprint is stored, and a fast hash of a
    // password is as good as the password to whoever reads it.
    if let Some(fields) = value.as_object_mut() {
        fields.remove("password");
    }
    let key = IdempotencyKey::new(&key, route, &value)
        .map_err(|m| ApiError::bad_request(CellCode::IdempotencyKeyInvalid, m))?;
    Ok((request, key))
}

/// A domain's answer as an HTTP response.
fn answer(a: Answer) -> Response {
    let mut response =
        (status(a.status), [(axum::http::header::CONTENT_TYPE, "application/json")], a.body).into_response();
    if a.replayed {
        response.headers_mut().insert(IDEMPOTENT_REPLAY.clone(), HeaderValue::from_static("true"));
    }
    response
}

/// Trace id of a W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`), if well-formed.
fn trace_id_from(headers: &HeaderMap) -> Option<String> {
    let value = headers.get("traceparent")?.to_str().ok()?;
    let mut parts = value.split('-');
    let (_version, trace) = (parts.next()?, parts.next()?);
    let valid = trace.len() == 32 && trace.bytes().all(|b| b.is_ascii_hexdigit()) && trace != "0".repeat(32);
    valid.then(|| trace.to_ascii_lowercase())
}

/// Every request: a span carrying its `traceId`, latency and status metrics, and `X-Cell`.
async fn observe(state: axum::extract::State<Arc<AppState>>, mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let trace = trace_id_from(request.headers()).unwrap_or_else(|| hex::encode(rand::random::<[u8; 16]>()));
    let route =
        request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "unmatched".into());
    request.extensions_mut().insert(TraceId(trace.clone()));
    let span = tracing::info_span!("request", traceId = %trace, method = %request.method(), route = %route);
    let mut response = next.run(request).instrument(span.clone()).await;
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    span.in_scope(|| tracing::debug!(status, elapsed_us = elapsed.as_micros() as u64, "answered"));
    state.metrics.http_requests.get_or_create(&HttpLabels { route: route.clone(), status }).inc();
    state.metrics.http_seconds.get_or_create(&RouteLabels { route }).observe(elapsed.as_secs_f64());
    if let Some(cell) = &state.cell_header {
        response.headers_mut().insert(X_CELL.clone(), cell.clone());
    }
    response
}

/// Unknown routes answer in the same `{code, message}` shape as every other refusal.
async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, CellCode::NotFound, "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, CellCode::MethodNotAllowed, "this route does not take that method")
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/players", post(players::register))
        .route("/sessions", post(sessions::create).delete(sessions::logout))
        .route("/sessions/refresh", post(sessions::refresh))
        .route("/players/{player_id}/totp", post(sessions::enrol_totp))
        .route("/players/{player_id}/limits", get(limits::get).put(limits::put))
        .route("/players/{player_id}/timeout", post(limits::timeout))
        .route("/players/{player_id}/self-exclusion", post(limits::self_exclusion))
        .route("/players/{player_id}/kyc", get(compliance::kyc_status))
        .route("/players/{player_id}/session", get(limits::session))
        .route("/players/{player_id}/session-limits", put(limits::session_limits))
        .route("/players/{player_id}/reality-check", post(limits::reality_check))
        .route("/kyc/webhook", post(compliance::kyc_webhook))
        .route("/cashier/deposits", post(cashier::deposit))
        .route("/cashier/webhooks/{psp}", post(cashier::webhook))
        .route("/cashier/players/{player_id}/transactions", get(cashier::transactions))
        .route("/cashier/payments/{payment_id}", get(cashier::payment))
        .route("/cashier/payments/{payment_id}/refund", post(cashier::refund))
        .route("/cashier/withdrawals", post(cashier::withdraw).get(cashier::queue))
        .route("/ops/reconciliation", get(cashier::reconciliation))
        .route("/cashier/withdrawals/{payment_id}", get(cashier::withdrawal))
        .route("/cashier/withdrawals/{payment_id}/cancel", post(cashier::cancel))
        .route("/cashier/withdrawals/{payment_id}/approve", post(cashier::approve))
        .route("/cashier/withdrawals/{payment_id}/reject", post(cashier::reject))
        .route("/compliance/players/{player_id}/decisions", get(compliance::decisions))
        .route("/compliance/cases", get(compliance::cases))
        .route("/compliance/cases/{case_id}", post(compliance::decide))
        .route("/sessions/key", get(sessions::key))
        .route("/wallet/credit", post(wallet::credit))
        .route("/wallet/debit", post(wallet::debit))
        .route("/wallet/hold", post(wallet::hold))
        .route("/wallet/settle", post(wallet::settle))
        .route("/wallet/{player_id}/balance", get(wallet::balance))
        .route("/ops/players/{player_id}/balance", get(wallet::ops_balance))
        .route("/flags/evaluate", get(catalog::evaluate))
        .route("/lobby", get(catalog::lobby))
        .route("/gaming/{provider}/{call}", post(gaming::call))
        .route("/ops/providers", get(gaming::providers))
        .route("/ops/ledger", get(ops::ledger))
        .route("/ops/providers/{provider}/maintenance", post(gaming::maintenance))
        .route("/audit/verify", get(audit::verify))
        .route("/audit/records", get(audit::records))
        .route("/exports", get(exports::list).post(exports::build))
        .route("/exports/{export_id}", get(exports::get))
        .route("/exports/{export_id}/proof", get(exports::proof))
        .route("/exports/{export_id}/files/{*file}", get(exports::file))
        .route("/audit/checkpoints", get(audit::checkpoints).post(audit::checkpoint_now))
        .route("/events", get(ops::events))
        .route("/replication/digest", get(ops::replication_digest))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(openapi::document))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(state.clone(), refuse_writes_when_deposed))
        .layer(axum::middleware::from_fn_with_state(state.clone(), callers::authorise))
        .layer(axum::middleware::from_fn_with_state(state.clone(), observe))
        .layer(DefaultBodyLimit::max(REQUEST_BODY_BYTES_MAX))
        .with_state(state)
}

/// A fenced primary (or a standby) takes no write: every request but a read answers 503 with why,
/// before anything runs. The store refuses the commit too; this answers first and clearly.
async fn refuse_writes_when_deposed(
    axum::extract::State(state): axum::extract::State<Arc<AppState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if request.method() != axum::http::Method::GET {
        if let Some(refused) = state.refusal() {
            return refused.into_response();
        }
    }
    next.run(request).await
}
