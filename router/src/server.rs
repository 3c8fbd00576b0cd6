//! The router's HTTP front: decides where each request goes, forwards it, and refuses what must
//! not pass (RFC 7725 451s fail closed; internal routes are not reachable from outside).
//!
//! Here: its configuration, state, metrics, operational routes and `run`. [`policy`]: which
//! requests pass and to which cell, and the router's own refusals. [`forward`]: a request's trip
//! to its cell and back. [`serve`]: serving threads, connections and their cap.

mod forward;
mod policy;
mod serve;

use contracts::RouterCode;
#[cfg(test)]
use forward::traceparent;
use forward::{forward, Request};
use policy::{choose_cell, is_public, rate_limit, refuse, retry_after, UNKNOWN_COUNTRY};
use serve::{deal, serve_thread, ServingThread};
pub use serve::{CLIENT_CONNECTIONS_MAX, CLIENT_IDLE_MAX};

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
/// The client's address as the router placed it, for the cell (login throttling per address).
static X_CLIENT_IP: HeaderName = HeaderName::from_static("x-client-ip");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

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
            let mut refused = refuse(
                s,
                StatusCode::METHOD_NOT_ALLOWED,
                RouterCode::MethodNotAllowed,
                message,
                serde_json::Value::Null,
            );
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
