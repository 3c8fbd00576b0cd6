//! The router's HTTP front: decides where each request goes, forwards it, and refuses what must
//! not pass (RFC 7725 451s fail closed; internal routes are not reachable from outside).

use crate::cells::{self, Cells};
use crate::client_ip::client_ip;
use crate::geo::{self, GeoDb};
use crate::sessions::SessionKeys;
use crate::upstream::error_chain;
use anyhow::Context;
use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use contracts::region::RegionConfig;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use ipnet::IpNet;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Largest request body forwarded: the cells' own limit.
pub const REQUEST_BODY_BYTES_MAX: usize = 128 * 1024;
/// Largest cell answer passed on; player-facing answers are small JSON documents.
pub const RESPONSE_BODY_BYTES_MAX: usize = 1024 * 1024;
/// Longest a cell may take to answer before the router gives up (504).
pub const CELL_TIMEOUT: Duration = Duration::from_secs(10);

static X_CELL: HeaderName = HeaderName::from_static("x-cell");
static X_CLIENT_COUNTRY: HeaderName = HeaderName::from_static("x-client-country");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// Hop-by-hop headers (RFC 9110 section 7.6.1), never forwarded.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

pub struct RouterConfig {
    pub regions: Vec<RegionConfig>,
    pub geoip: PathBuf,
    pub trusted_proxies: Vec<IpNet>,
    pub primaries: HashMap<String, String>,
    pub standbys: HashMap<String, String>,
    /// Whether the standby endpoints the region files name are used (else only `standbys`).
    pub region_standbys: bool,
    /// Requests per second one client address may make (and twice that in a burst).
    pub client_rps: u32,
    /// Requests per second one player (by session) may make, wherever they come from.
    pub player_rps: u32,
    /// How to reach cells: mutual TLS, or plain HTTP for local use.
    pub transport: cells::Transport,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ForwardLabels {
    cell: String,
    role: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusalLabels {
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CellLabels {
    cell: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServingLabels {
    thread: u64,
}

struct Metrics {
    registry: Registry,
    forwarded: Family<ForwardLabels, Counter>,
    refused: Family<RefusalLabels, Counter>,
    cell_seconds: Family<CellLabels, Histogram, fn() -> Histogram>,
    client_connections: Family<ServingLabels, Gauge>,
}

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_05, 2.0, 18))
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("router");
        let forwarded = Family::<ForwardLabels, Counter>::default();
        let refused = Family::<RefusalLabels, Counter>::default();
        let cell_seconds = Family::<CellLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        registry.register(
            "forwarded",
            "Requests forwarded to a cell, by cell, endpoint role and status",
            forwarded.clone(),
        );
        registry.register("refused", "Requests the router answered itself, by code", refused.clone());
        registry.register(
            "cell_request_seconds",
            "Time a cell took to answer a forwarded request",
            cell_seconds.clone(),
        );
        let client_connections = Family::<ServingLabels, Gauge>::default();
        registry.register(
            "client_connections",
            "Client connections open, by serving thread (a stopped thread shows 2^62)",
            client_connections.clone(),
        );
        Metrics { registry, forwarded, refused, cell_seconds, client_connections }
    }
}

type Limiter<K> = governor::DefaultKeyedRateLimiter<K>;

struct AppState {
    per_client: Limiter<std::net::IpAddr>,
    per_player: Limiter<String>,
    cells: Arc<Cells>,
    keys: Arc<SessionKeys>,
    geo: Arc<GeoDb>,
    trusted: Vec<IpNet>,
    metrics: Metrics,
    /// Each cell's `cell_request_seconds`, looked up once rather than by label for every request.
    cell_seconds: HashMap<String, Histogram>,
    /// Set after the first round of health checks.
    ready: AtomicBool,
}

/// A refusal the router makes itself: `{code, message}` (plus context fields), `X-Cell: router`.
fn refuse(
    state: &AppState,
    status: StatusCode,
    code: &'static str,
    message: String,
    extra: serde_json::Value,
) -> Response {
    state.metrics.refused.get_or_create(&RefusalLabels { code }).inc();
    let mut body = serde_json::json!({ "code": code, "message": message });
    if let (Some(body), serde_json::Value::Object(extra)) = (body.as_object_mut(), extra) {
        body.extend(extra);
    }
    let mut response = (status, axum::Json(body)).into_response();
    response.headers_mut().insert(X_CELL.clone(), HeaderValue::from_static("router"));
    response
}

/// Player-facing routes: the only ones reachable through the router. Internal and operator
/// routes of a cell (`/wallet/credit`, `/events`, `/metrics`...) are not.
fn is_public(method: &Method, path: &str) -> bool {
    // Up to four segments without collecting them (this runs for every request); a fourth means
    // the path is longer than any public route.
    let mut segments = path.trim_start_matches('/').split('/');
    let segments = [segments.next(), segments.next(), segments.next(), segments.next()];
    matches!(
        (method, segments),
        (&Method::POST, [Some("players"), None, None, None])
            | (&Method::POST, [Some("sessions"), None, None, None])
            | (&Method::GET, [Some("wallet"), Some(_), Some("balance"), None])
            | (&Method::GET, [Some("lobby"), None, None, None])
            | (&Method::GET, [Some("flags"), Some("evaluate"), None, None])
    )
}

/// The request's trace context: the caller's `traceparent` when well-formed, else a new one.
fn traceparent(headers: &HeaderMap) -> HeaderValue {
    // Built in one buffer, without `format!` or hex strings: this runs for every request.
    let mut span = [0u8; 16];
    hex::encode_to_slice(rand::random::<[u8; 8]>(), &mut span).expect("16 hex digits for 8 bytes");
    let span = std::str::from_utf8(&span).expect("hex is ASCII");
    let mut value = String::with_capacity(64);
    let caller = headers.get(&TRACEPARENT).and_then(|v| v.to_str().ok()).and_then(|v| {
        let mut parts = v.split('-');
        match (parts.next(), parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(_version), Some(trace), Some(parent), Some(flags), None)
                if trace.len() == 32
                    && parent.len() == 16
                    && trace.bytes().chain(parent.bytes()).all(|b| b.is_ascii_hexdigit())
                    && trace.bytes().any(|b| b != b'0') =>
            {
                Some((trace, flags))
            }
            _ => None,
        }
    });
    match caller {
        // Same trace, a new span for this hop.
        Some((trace, flags)) => {
            for part in ["00-", trace, "-", span, "-", flags] {
                value.push_str(part);
            }
        }
        None => {
            let mut trace = [0u8; 32];
            hex::encode_to_slice(rand::random::<[u8; 16]>(), &mut trace).expect("32 hex digits for 16 bytes");
            let trace = std::str::from_utf8(&trace).expect("hex is ASCII");
            for part in ["00-", trace, "-", span, "-01"] {
                value.push_str(part);
            }
        }
    }
    // The caller's parts came from a valid header value and the rest is hex.
    HeaderValue::from_maybe_shared(bytes::Bytes::from(value)).expect("a header value's parts and hex")
}

/// Adds `Retry-After` (whole seconds, at least 1) to a refusal the client may retry.
fn retry_after(mut response: Response, seconds: u64) -> Response {
    if let Ok(v) = HeaderValue::from_str(&seconds.max(1).to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, v);
    }
    response
}

/// Admits one request for `key`, or answers 429 with `Retry-After` in whole seconds.
#[allow(clippy::result_large_err)]
fn rate_limit<K: Clone + std::hash::Hash + Eq>(s: &AppState, limiter: &Limiter<K>, key: &K) -> Result<(), Response> {
    use governor::clock::Clock;
    match limiter.check_key(key) {
        Ok(()) => Ok(()),
        Err(not_until) => {
            let wait = not_until.wait_time_from(governor::clock::DefaultClock::default().now());
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            let message = format!("too many requests; retry in {seconds} s");
            Err(retry_after(
                refuse(s, StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED", message, serde_json::Value::Null),
                seconds,
            ))
        }
    }
}

/// What `X-Client-Country` says when no country is known (ISO 3166 user-assigned, never licensed).
const UNKNOWN_COUNTRY: &str = "ZZ";

/// Which cell a request goes to:
/// - with a session token, the player's home cell, always (401 when the token does not verify);
/// - a login (`POST /sessions`), the home cell named by the player id, from anywhere;
/// - otherwise the cell licensed for the client's country (451 when none, or unknown).
#[allow(clippy::result_large_err)]
fn choose_cell<'a>(
    s: &'a AppState,
    parts: &axum::http::request::Parts,
    body: &[u8],
    country: Option<contracts::CountryCode>,
    ip: std::net::IpAddr,
) -> Result<&'a cells::CellRoute, Response> {
    let bearer =
        parts.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    if let Some(token) = bearer {
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
        return match s.keys.verify(token.trim(), now) {
            Ok(claims) => {
                rate_limit(s, &s.per_player, &claims.sub.to_string())?;
                s.cells.by_id(&claims.cell).ok_or_else(|| {
                    refuse(
                        s,
                        StatusCode::UNAUTHORIZED,
                        "INVALID_SESSION",
                        "the session names no known cell".into(),
                        serde_json::Value::Null,
                    )
                })
            }
            Err(why) => Err(refuse(
                s,
                StatusCode::UNAUTHORIZED,
                "INVALID_SESSION",
                format!("session token refused: {why}"),
                serde_json::Value::Null,
            )),
        };
    }
    if parts.method == axum::http::Method::POST && parts.uri.path() == "/sessions" {
        // Strict, as the cell reads it: a repeated key cannot route one way and log in another.
        let value = contracts::json::parse_strict(body).map_err(|e| {
            let message = format!("request body is not JSON: {e}");
            refuse(s, StatusCode::BAD_REQUEST, "MALFORMED_JSON", message, serde_json::Value::Null)
        })?;
        let player = serde_json::from_value::<contracts::sessions::SessionRequest>(value).map(|r| r.player_id);
        let home = player.as_ref().ok().and_then(|p| p.home_cell()).and_then(|cell| s.cells.by_id(cell));
        return home.ok_or_else(|| {
            refuse(
                s,
                StatusCode::BAD_REQUEST,
                "INVALID_REQUEST",
                "a login needs a playerId whose prefix names a cell".into(),
                serde_json::Value::Null,
            )
        });
    }
    let Some(country) = country else {
        // A private or loopback address is most often a client behind a proxy (or a developer on
        // this machine): say how a client is placed.
        let behind_a_proxy = if crate::geo::is_public(ip) {
            ""
        } else {
            " (a private or loopback address: a proxy in front of the router places its client with \
             X-Forwarded-For, which the router trusts only from the addresses given with --trusted-proxy)"
        };
        let message = format!(
            "no country is known for address {ip}{behind_a_proxy}: service is refused where the location is unknown"
        );
        return Err(refuse(
            s,
            StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS,
            "GEOLOCATION_UNKNOWN",
            message,
            serde_json::Value::Null,
        ));
    };
    s.cells.for_country(country).ok_or_else(|| {
        let message = format!("the operator holds no licence covering {country}");
        refuse(
            s,
            StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS,
            "JURISDICTION_NOT_LICENSED",
            message,
            serde_json::json!({ "country": country }),
        )
    })
}

/// A request as a client sent it.
type Request = hyper::Request<Incoming>;

async fn forward(s: &AppState, peer: SocketAddr, request: Request) -> Response {
    let (mut parts, body) = request.into_parts();
    if !is_public(&parts.method, parts.uri.path()) {
        return refuse(s, StatusCode::NOT_FOUND, "NOT_FOUND", "no such route".into(), serde_json::Value::Null);
    }
    let forwarded_for = parts.headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok());
    let ip = client_ip(peer.ip(), forwarded_for, &s.trusted);
    if let Err(refusal) = rate_limit(s, &s.per_client, &ip) {
        return refusal;
    }
    let country = s.geo.country(ip);
    let body = match http_body_util::Limited::new(body, REQUEST_BODY_BYTES_MAX).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            let message = format!("request body is over {REQUEST_BODY_BYTES_MAX} bytes");
            return refuse(s, StatusCode::PAYLOAD_TOO_LARGE, "BODY_TOO_LARGE", message, serde_json::Value::Null);
        }
        // The client stopped sending, or sent a malformed chunked body.
        Err(e) => {
            let message = format!("request body unreadable: {e}");
            return refuse(s, StatusCode::BAD_REQUEST, "BODY_UNREADABLE", message, serde_json::Value::Null);
        }
    };
    let route = match choose_cell(s, &parts, &body, country, ip) {
        Ok(route) => route,
        Err(refusal) => return refusal,
    };
    let Some((endpoint, role)) = route.pick() else {
        let message = format!("no healthy cell for jurisdiction `{}`; retry shortly", route.cell_id);
        let refusal = refuse(
            s,
            StatusCode::SERVICE_UNAVAILABLE,
            "CELL_UNAVAILABLE",
            message,
            serde_json::json!({ "cell": route.cell_id }),
        );
        return retry_after(refusal, 1);
    };
    // Origin form (path and query): the connection already goes to the endpoint, which gets its
    // own Host header from `Upstream`.
    let Some(path) = parts.uri.path_and_query().cloned() else {
        return refuse(
            s,
            StatusCode::BAD_REQUEST,
            "BAD_PATH",
            "the request path cannot be forwarded".into(),
            serde_json::Value::Null,
        );
    };
    let trace = traceparent(&parts.headers);
    let chain = match forwarded_for {
        Some(previous) if s.trusted.iter().any(|n| n.contains(&peer.ip())) => format!("{previous}, {}", peer.ip()),
        _ => peer.ip().to_string(),
    };
    let chain = HeaderValue::from_str(&chain);
    // The client's headers move to the cell's request rather than being copied, less those that
    // are the router's to say.
    let mut headers = std::mem::take(&mut parts.headers);
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    headers.remove(header::HOST);
    headers.remove(&X_CLIENT_COUNTRY); // only the router says where a client is
    headers.remove(&X_FORWARDED_FOR);
    if let Ok(v) = chain {
        headers.insert(X_FORWARDED_FOR.clone(), v);
    }
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("http"));
    // `ZZ` (no country) when the location is unknown: the home cell then refuses what the
    // location gates, fail closed.
    let country_code = HeaderValue::from_str(country.as_ref().map_or(UNKNOWN_COUNTRY, |c| c.as_str()));
    headers.insert(X_CLIENT_COUNTRY.clone(), country_code.expect("two ASCII letters"));
    headers.insert(TRACEPARENT.clone(), trace);
    let mut upstream = hyper::Request::new(http_body_util::Full::new(body));
    *upstream.method_mut() = parts.method;
    *upstream.uri_mut() = hyper::Uri::from(path);
    *upstream.headers_mut() = headers;
    let started = Instant::now();
    let answered =
        tokio::time::timeout(CELL_TIMEOUT, endpoint.upstream.request(upstream, RESPONSE_BODY_BYTES_MAX)).await;
    if let Some(histogram) = s.cell_seconds.get(route.cell_id.as_str()) {
        histogram.observe(started.elapsed().as_secs_f64());
    }
    let answer = match answered {
        Ok(Ok(answer)) => answer,
        Ok(Err(e)) if e.is_answer_invalid() => {
            tracing::warn!(cell = %route.cell_id, error = %error_chain(&e), "cell answer unreadable or too large");
            return refuse(
                s,
                StatusCode::BAD_GATEWAY,
                "CELL_ANSWER_INVALID",
                format!("cell `{}` sent an answer the router cannot pass on", route.cell_id),
                serde_json::Value::Null,
            );
        }
        Ok(Err(e)) => {
            tracing::warn!(cell = %route.cell_id, endpoint = %endpoint.url, error = %error_chain(&e), "cell unreachable");
            let message = format!("cell `{}` did not answer; retry shortly", route.cell_id);
            let refusal = refuse(
                s,
                StatusCode::BAD_GATEWAY,
                "CELL_UNREACHABLE",
                message,
                serde_json::json!({ "cell": route.cell_id }),
            );
            return retry_after(refusal, 1);
        }
        Err(_) => {
            let message = format!("cell `{}` took longer than {CELL_TIMEOUT:?}", route.cell_id);
            return refuse(
                s,
                StatusCode::GATEWAY_TIMEOUT,
                "CELL_TIMEOUT",
                message,
                serde_json::json!({ "cell": route.cell_id }),
            );
        }
    };
    let mut head = answer.head;
    s.metrics
        .forwarded
        .get_or_create(&ForwardLabels { cell: route.cell_id.clone(), role: role.name(), status: head.status.as_u16() })
        .inc();
    for name in HOP_BY_HOP {
        head.headers.remove(name);
    }
    if !head.headers.contains_key(&X_CELL) {
        if let Ok(v) = HeaderValue::from_str(&route.cell_id) {
            head.headers.insert(X_CELL.clone(), v);
        }
    }
    // Cells answer small JSON, read in full (bounded) by `Upstream`: the answer goes out in one
    // write with the Content-Length of what was read.
    head.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(head, Body::from(answer.body))
}

/// The router's whole HTTP surface: three operational routes, everything else forwarded or
/// refused. A match rather than an axum `Router`: every player request passes here, and the
/// `Router`'s boxed handler future and connection-info extension were measurable per request in
/// `router bench`.
async fn route(s: &AppState, peer: SocketAddr, request: Request) -> Response {
    let operational = match request.uri().path() {
        "/healthz" => Some(healthz as fn(&AppState) -> Response),
        "/readyz" => Some(readyz as fn(&AppState) -> Response),
        "/metrics" => Some(metrics as fn(&AppState) -> Response),
        _ => None,
    };
    match operational {
        Some(answer) if matches!(*request.method(), Method::GET | Method::HEAD) => answer(s),
        Some(_) => {
            let message = format!("{} takes GET or HEAD", request.uri().path());
            let mut refused =
                refuse(s, StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED", message, serde_json::Value::Null);
            refused.headers_mut().insert(header::ALLOW, header::HeaderValue::from_static("GET,HEAD"));
            refused
        }
        None => forward(s, peer, request).await,
    }
}

fn healthz(_: &AppState) -> Response {
    "ok".into_response()
}

fn readyz(s: &AppState) -> Response {
    if s.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "checking cells").into_response()
    }
}

fn metrics(s: &AppState) -> Response {
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, &s.metrics.registry).is_err() {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], out).into_response()
}

fn housekeep(state: &AppState, geo: &GeoDb) {
    state.per_client.retain_recent();
    state.per_player.retain_recent();
    for endpoint in state.cells.endpoints() {
        endpoint.upstream.close_idle();
    }
    match geo.reload_if_changed() {
        Ok(true) => tracing::info!("GeoIP database reloaded"),
        Ok(false) => {}
        Err(e) => tracing::error!(error = %e, "GeoIP database changed but does not load; keeping the old one"),
    }
}

/// Serves until `shutdown` resolves, then drains in-flight requests.
pub async fn run(
    config: RouterConfig,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let cells = Arc::new(Cells::new(
        &config.regions,
        &config.primaries,
        &config.standbys,
        config.region_standbys,
        &config.transport,
    )?);
    let geo = Arc::new(GeoDb::open(&config.geoip).context("open the GeoIP database (run scripts/fetch-geoip.sh)")?);
    let keys = Arc::new(SessionKeys::default());
    let quota = |rps: u32| {
        let rps = std::num::NonZeroU32::new(rps.max(1)).expect("at least 1");
        governor::Quota::per_second(rps).allow_burst(rps.saturating_mul(std::num::NonZeroU32::new(2).expect("2")))
    };
    let metrics = Metrics::new();
    let state = Arc::new(AppState {
        per_client: governor::RateLimiter::keyed(quota(config.client_rps)),
        per_player: governor::RateLimiter::keyed(quota(config.player_rps)),
        cells: cells.clone(),
        keys: keys.clone(),
        geo: geo.clone(),
        trusted: config.trusted_proxies,
        cell_seconds: cells
            .routes
            .iter()
            .map(|r| {
                (r.cell_id.clone(), metrics.cell_seconds.get_or_create(&CellLabels { cell: r.cell_id.clone() }).clone())
            })
            .collect(),
        metrics,
        ready: AtomicBool::new(false),
    });
    let (stop_tasks, tasks_stopped) = tokio::sync::watch::channel(false);
    // First round of health checks before declaring readiness.
    cells.check_all(&keys).await;
    for route in &cells.routes {
        for (endpoint, role) in
            std::iter::once((&route.primary, "primary")).chain(route.standby.as_ref().map(|s| (s, "standby")))
        {
            if !endpoint.is_healthy() {
                tracing::warn!(cell = %route.cell_id, role, endpoint = %endpoint.url, "cell endpoint not answering its health check (503 for its players until it does)");
            }
        }
    }
    state.ready.store(true, Ordering::Release);
    let health = tokio::spawn(cells::health_loop(cells.clone(), keys.clone(), tasks_stopped.clone()));
    // Housekeeping: forget idle rate-limit state, close idle connections to cells, and reload the
    // GeoIP database when it changes.
    let housekeeping = tokio::spawn({
        let mut stopped = tasks_stopped;
        let state = state.clone();
        async move {
            let mut tick = tokio::time::interval(geo::RELOAD_CHECK_INTERVAL);
            loop {
                tokio::select! {
                    _ = tick.tick() => housekeep(&state, &geo),
                    _ = stopped.changed() => return,
                }
            }
        }
    });
    tracing::info!(address = %listener.local_addr()?, "router listening");
    // One serving thread per core; this task accepts and deals each connection to the thread
    // serving the fewest. Their runtimes are built here, so a failure stops the start.
    let mut threads = Vec::new();
    for i in 1..crate::upstream::pool_count() {
        let runtime =
            tokio::runtime::Builder::new_current_thread().enable_all().build().context("start a serving runtime")?;
        // Bounded by the cap: every connection in a channel holds a permit.
        let (to_thread, dealt) = tokio::sync::mpsc::channel(CLIENT_CONNECTIONS_MAX);
        let open = state.metrics.client_connections.get_or_create(&ServingLabels { thread: i as u64 }).clone();
        let (state, counted) = (state.clone(), open.clone());
        let thread = std::thread::Builder::new()
            .name(format!("router-serve-{i}"))
            .spawn(move || {
                crate::upstream::use_pool(i);
                runtime.block_on(serve_thread(dealt, counted, state))
            })
            .context("start a serving thread")?;
        threads.push(ServingThread { to_thread, open, thread });
    }
    let mut shutdown = std::pin::pin!(shutdown);
    let cap = Arc::new(tokio::sync::Semaphore::new(CLIENT_CONNECTIONS_MAX));
    let mut at_cap = false;
    loop {
        let permit = match cap.clone().try_acquire_owned() {
            Ok(permit) => {
                at_cap = false;
                permit
            }
            Err(_) => {
                if !at_cap {
                    tracing::warn!(CLIENT_CONNECTIONS_MAX, "at the connection cap: new clients wait until one ends");
                }
                at_cap = true;
                tokio::select! {
                    permit = cap.clone().acquire_owned() => permit.expect("the cap is never closed"),
                    _ = &mut shutdown => break,
                }
            }
        };
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => deal(&threads, tcp, peer, permit),
                // Out of file descriptors, or a connection reset while queued: not fatal.
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    tracing::info!("router draining in-flight requests");
    // Every thread is told at once (its channel ends), then each is waited for.
    let (senders, joins): (Vec<_>, Vec<_>) = threads.into_iter().map(|t| (t.to_thread, t.thread)).unzip();
    drop(senders);
    let joined = tokio::task::spawn_blocking(move || {
        for thread in joins {
            if thread.join().is_err() {
                tracing::error!("a serving thread panicked");
            }
        }
    })
    .await;
    let _ = stop_tasks.send(true);
    let _ = tokio::join!(health, housekeeping);
    joined.context("join the serving threads")?;
    tracing::info!("router stopped");
    Ok(())
}

/// Longest the router waits, once told to stop, for its connections to finish their requests in
/// flight (a cell has `CELL_TIMEOUT` to answer); a client still sending its request or not
/// reading its answer by then is cut off.
const DRAIN_MAX: Duration = Duration::from_secs(15);

/// How long a client connection may sit idle between requests, or take to send a request's
/// head, before the router closes it (hyper times both with one timer). Longer than the usual
/// idle timeout of a proxy or load balancer in front (60 s), so that they close first and never
/// send a request on a connection the router is closing.
pub const CLIENT_IDLE_MAX: Duration = Duration::from_secs(75);

/// A connection on its way to a serving thread.
/// An accepted connection on its way to a serving thread, with its place under the cap.
type Dealt = (std::net::TcpStream, SocketAddr, tokio::sync::OwnedSemaphorePermit);

/// Most client connections open at once. Clients arrive through a load balancer or proxy that
/// pools them; 10,000 is far above that, below the process's 20,000 descriptors (each client
/// connection may also hold an upstream one to a cell), and keeps a flood of idle connections
/// from exhausting them: past it the router stops accepting until a connection ends.
pub const CLIENT_CONNECTIONS_MAX: usize = 10_000;

/// A serving thread, as the acceptor sees it.
struct ServingThread {
    to_thread: tokio::sync::mpsc::Sender<Dealt>,
    /// Connections it is serving (`router_client_connections`); [`GONE`] once it has stopped
    /// taking them.
    open: Gauge,
    thread: std::thread::JoinHandle<()>,
}

/// What a serving thread that has stopped counts as: never the one with the fewest.
const GONE: i64 = 1 << 62;

/// Hands a new connection to the serving thread with the fewest. Each thread serves its
/// connections to the end, so an uneven deal stays uneven: with both threads taking turns at one
/// listening socket, `router bench`'s 32 keep-alive clients once loaded them 66% to 34% (their
/// CPU time at the fixed rate), and the busier thread saturated (p50 59 ms) while the other
/// idled; dealt by count, the split is 50/50 and the p50 about 1 ms.
fn deal(
    threads: &[ServingThread],
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    let Some(thread) = threads.iter().min_by_key(|t| t.open.get()) else { return };
    // Off this runtime's reactor, to be registered with the serving thread's own.
    let tcp = match tcp.into_std() {
        Ok(tcp) => tcp,
        Err(e) => return tracing::warn!(error = %e, %peer, "could not hand a connection on"),
    };
    thread.open.inc();
    if thread.to_thread.try_send((tcp, peer, permit)).is_err() {
        // Only a panic ends a serving thread before its channel does.
        thread.open.set(GONE);
        tracing::error!(%peer, "a serving thread has stopped: connection dropped, later ones go to the others");
    }
}

/// Counts a connection out of its thread's `open`, and frees its place under the cap, when its
/// task ends, however it ends.
struct Served {
    open: Gauge,
    _place: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.open.dec();
    }
}

/// One serving thread (on a single-threaded runtime): serves each connection dealt to it to its
/// end, so a request is read, forwarded to its cell, and answered on one thread with no hand-off
/// between threads, the way nginx's worker processes run. On `router bench`, one single-threaded
/// runtime measured about 10% less CPU per request than tokio's work-stealing one (no sibling
/// worker woken, no task moved), but saturated on its one core. When the acceptor closes the
/// channel, each connection finishes its request in flight (for at most [`DRAIN_MAX`]).
async fn serve_thread(mut dealt: tokio::sync::mpsc::Receiver<Dealt>, open: Gauge, state: Arc<AppState>) {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            next = dealt.recv() => match next {
                Some((tcp, peer, permit)) => {
                    let served = Served { open: open.clone(), _place: permit };
                    match tokio::net::TcpStream::from_std(tcp) {
                        Ok(tcp) => {
                            let (state, stopped) = (state.clone(), stopped.clone());
                            connections.spawn(async move {
                                let _served = served;
                                serve_connection(state, tcp, peer, stopped).await;
                            });
                        }
                        Err(e) => tracing::warn!(error = %e, %peer, "could not register a connection"),
                    }
                }
                None => break,
            },
            Some(joined) = connections.join_next(), if !connections.is_empty() => replication::http::ended(joined),
        }
    }
    let _ = stop.send(true);
    replication::http::drain(&mut connections, DRAIN_MAX).await;
}

async fn serve_connection(
    state: Arc<AppState>,
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    stopped: tokio::sync::watch::Receiver<bool>,
) {
    // Answers are single small writes: send them at once rather than after the client's ACK.
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(error = %e, "TCP_NODELAY not set on a client connection");
    }
    let service = hyper::service::service_fn(move |request: Request| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(route(&state, peer, request).await) }
    });
    let served =
        replication::http::serve_connection(hyper_util::rt::TokioIo::new(tcp), service, CLIENT_IDLE_MAX, stopped).await;
    if let Err(e) = served {
        tracing::debug!(error = %e, %peer, "client connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_player_routes_are_public() {
        assert!(is_public(&Method::POST, "/players"));
        assert!(is_public(&Method::GET, "/wallet/uk-1/balance"));
        assert!(is_public(&Method::GET, "/lobby"));
        assert!(is_public(&Method::GET, "/flags/evaluate"));
        for (m, p) in [
            (Method::POST, "/wallet/credit"),
            (Method::POST, "/wallet/hold"),
            (Method::GET, "/events"),
            (Method::GET, "/metrics"),
            (Method::GET, "/players"),
        ] {
            assert!(!is_public(&m, p), "{m} {p} must not pass");
        }
    }

    #[test]
    fn traceparent_is_propagated_or_started() {
        let mut h = HeaderMap::new();
        h.insert("traceparent", HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
        let hop = traceparent(&h);
        let hop = hop.to_str().unwrap();
        assert!(hop.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"), "{hop}");
        assert!(hop.ends_with("-01") && hop.len() == 55 && !hop.contains("00f067aa0ba902b7"), "{hop}");
        let fresh = traceparent(&HeaderMap::new());
        assert_eq!(fresh.len(), 55);
        for invalid in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473x-00f067aa0ba902b7-01",
        ] {
            h.insert("traceparent", HeaderValue::from_static(invalid));
            let fresh = traceparent(&h);
            assert!(!fresh.to_str().unwrap().contains(&invalid[3..35]), "{invalid} starts a new trace");
        }
    }
}
