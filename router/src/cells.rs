//! The cells the router can send to: each jurisdiction's primary and optional standby, which
//! countries it is licensed for, and whether each endpoint answers its health check.
//!
//! A jurisdiction's traffic goes to its primary while it is healthy, else to its standby, and
//! never to another jurisdiction's cell.

use crate::sessions::SessionKeys;
use contracts::region::RegionConfig;
use contracts::CountryCode;
use hyper_util::client::legacy::Client;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How often every endpoint is checked. A dead primary (connection refused) loses its traffic
/// within about `HEALTH_INTERVAL`; a silent one within `HEALTH_TIMEOUTS_TO_DOWN` checks, about
/// 1.5 s: both under the 2 s the failover requirement allows.
pub const HEALTH_INTERVAL: Duration = Duration::from_millis(500);
/// A health check slower than this counts as failed.
pub const HEALTH_TIMEOUT: Duration = Duration::from_millis(400);
/// Timed-out checks in a row before an endpoint is marked down. A refused connection or an error
/// answer marks it down at once (the process is gone or unready); a slow answer may only be a
/// busy machine, and one slow check must not move a jurisdiction's traffic. Two in a row keeps a
/// dead-but-silent primary's failover within about 1.5 s.
pub const HEALTH_TIMEOUTS_TO_DOWN: u32 = 2;

/// A pooled keep-alive client to one cell (HTTPS with mutual TLS, or plain HTTP in development).
pub type HttpClient = Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    http_body_util::Full<bytes::Bytes>,
>;

/// How the router reaches cells.
#[derive(Clone, Debug)]
pub enum Transport {
    /// Mutual TLS with the certificates in this directory (`global-control certs`).
    MutualTls(std::path::PathBuf),
    /// Plain HTTP, for local development only.
    InsecurePlainHttp,
}

/// A client whose TLS accepts only `cell`'s certificate.
fn client_for(cell: &str, transport: &Transport) -> Result<HttpClient, CellsError> {
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.set_nodelay(true);
    http.enforce_http(false);
    let builder = match transport {
        Transport::MutualTls(dir) => {
            let config =
                replication::tls::client_config(dir, "router", cell).map_err(|e| CellsError::Tls(e.to_string()))?;
            hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(config).https_only()
        }
        Transport::InsecurePlainHttp => hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(replication::tls::no_tls_client_config())
            .https_or_http(),
    };
    let connector = builder.enable_http1().wrap_connector(http);
    Ok(Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_idle_timeout(std::time::Duration::from_secs(30))
        .build(connector))
}

#[derive(Debug)]
pub struct Endpoint {
    /// Base URL, without a trailing slash: `http://127.0.0.1:7101`.
    pub url: String,
    healthy: AtomicBool,
    /// Health checks timed out in a row.
    timeouts: std::sync::atomic::AtomicU32,
}

impl Endpoint {
    fn new(url: &str) -> Endpoint {
        Endpoint {
            url: url.trim_end_matches('/').to_owned(),
            healthy: AtomicBool::new(false),
            timeouts: std::sync::atomic::AtomicU32::new(0),
        }
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }
}

pub struct CellRoute {
    pub cell_id: String,
    /// Talks only to this cell (its TLS checks the certificate names `cell_id`).
    pub client: HttpClient,
    pub countries: Vec<CountryCode>,
    pub primary: Endpoint,
    pub standby: Option<Endpoint>,
}

/// Which endpoint of a cell served a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Primary,
    Standby,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Standby => "standby",
        }
    }
}

impl CellRoute {
    /// The primary if healthy, else the standby if healthy.
    pub fn pick(&self) -> Option<(&Endpoint, Role)> {
        if self.primary.is_healthy() {
            return Some((&self.primary, Role::Primary));
        }
        self.standby.as_ref().filter(|s| s.is_healthy()).map(|s| (s, Role::Standby))
    }
}

pub struct Cells {
    pub routes: Vec<CellRoute>,
}

#[derive(Debug, thiserror::Error)]
pub enum CellsError {
    #[error("--{flag} names cell `{cell}`, which has no region file")]
    UnknownCell { flag: &'static str, cell: String },
    #[error("TLS to cells: {0}")]
    Tls(String),
    #[error("country {country} is licensed by both `{first}` and `{second}`: a country must have one cell")]
    CountryTwice { country: CountryCode, first: String, second: String },
}

impl Cells {
    /// Builds the table from the region files, with `--cell`/`--standby` overriding endpoints.
    pub fn new(
        regions: &[RegionConfig],
        primaries: &HashMap<String, String>,
        standbys: &HashMap<String, String>,
        transport: &Transport,
    ) -> Result<Cells, CellsError> {
        for (flag, overrides) in [("cell", primaries), ("standby", standbys)] {
            if let Some(cell) = overrides.keys().find(|id| !regions.iter().any(|r| &r.cell_id == *id)) {
                return Err(CellsError::UnknownCell { flag, cell: cell.clone() });
            }
        }
        let mut routes: Vec<CellRoute> = Vec::new();
        for r in regions {
            for c in &r.licensed_countries {
                if let Some(other) = routes.iter().find(|o| o.countries.contains(c)) {
                    return Err(CellsError::CountryTwice {
                        country: *c,
                        first: other.cell_id.clone(),
                        second: r.cell_id.clone(),
                    });
                }
            }
            let primary = primaries.get(&r.cell_id).unwrap_or(&r.primary_endpoint);
            let standby = standbys.get(&r.cell_id).or(r.standby_endpoint.as_ref());
            routes.push(CellRoute {
                client: client_for(&r.cell_id, transport)?,
                cell_id: r.cell_id.clone(),
                countries: r.licensed_countries.clone(),
                primary: Endpoint::new(primary),
                standby: standby.map(|s| Endpoint::new(s)),
            });
        }
        Ok(Cells { routes })
    }

    /// A cell by id.
    pub fn by_id(&self, cell: &str) -> Option<&CellRoute> {
        self.routes.iter().find(|r| r.cell_id == cell)
    }

    /// The cell licensed for players connecting from `country`.
    pub fn for_country(&self, country: CountryCode) -> Option<&CellRoute> {
        self.routes.iter().find(|r| r.countries.contains(&country))
    }

    /// Checks every endpoint once, concurrently, and fetches the session key of each healthy
    /// endpoint whose key is not known yet.
    pub async fn check_all(&self, keys: &SessionKeys) {
        let endpoints =
            self.routes.iter().flat_map(|r| std::iter::once((&r.primary, r)).chain(r.standby.as_ref().map(|s| (s, r))));
        let checks = endpoints.map(|(e, route)| async move {
            let (client, cell) = (&route.client, &route.cell_id);
            let answered = match format!("{}/readyz", e.url).parse::<hyper::Uri>() {
                Ok(uri) => match tokio::time::timeout(HEALTH_TIMEOUT, client.get_empty(uri)).await {
                    Ok(Ok(response)) => Some(response.status().is_success()),
                    Ok(Err(_)) => Some(false),
                    Err(_) => None,
                },
                Err(_) => Some(false),
            };
            let ok = match answered {
                Some(ok) => {
                    e.timeouts.store(0, Ordering::Release);
                    ok
                }
                // Slow: down only after several in a row, and only if it was up.
                None => e.timeouts.fetch_add(1, Ordering::AcqRel) + 1 < HEALTH_TIMEOUTS_TO_DOWN && e.is_healthy(),
            };
            let was = e.healthy.swap(ok, Ordering::AcqRel);
            match (was, ok) {
                (false, true) => tracing::info!(cell = %cell, endpoint = %e.url, "cell endpoint healthy"),
                (true, false) => tracing::warn!(cell = %cell, endpoint = %e.url, "cell endpoint down"),
                _ => {}
            }
            if ok && !keys.knows(&e.url) {
                if let Err(problem) = fetch_key(client, &e.url, cell, keys).await {
                    tracing::error!(endpoint = %e.url, %problem, "cannot learn the cell's session key");
                }
            }
        });
        futures::future::join_all(checks).await;
    }
}

async fn fetch_key(client: &HttpClient, url: &str, cell: &str, keys: &SessionKeys) -> Result<(), String> {
    use http_body_util::BodyExt;
    let uri: hyper::Uri = format!("{url}/sessions/key").parse().map_err(|e| format!("{e}"))?;
    let response = tokio::time::timeout(HEALTH_TIMEOUT, client.get_empty(uri))
        .await
        .map_err(|_| "timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("answered {}", response.status()));
    }
    let body = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    let key: contracts::sessions::SessionKey = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
    keys.add(url, cell, &key)
}

/// Checks every endpoint every `HEALTH_INTERVAL` until `shutdown`.
pub async fn health_loop(cells: Arc<Cells>, keys: Arc<SessionKeys>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(HEALTH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => cells.check_all(&keys).await,
            _ = shutdown.changed() => return,
        }
    }
}

/// GET with an empty body, on the client type the router uses for everything.
trait GetEmpty {
    fn get_empty(&self, uri: hyper::Uri) -> hyper_util::client::legacy::ResponseFuture;
}

impl GetEmpty for HttpClient {
    fn get_empty(&self, uri: hyper::Uri) -> hyper_util::client::legacy::ResponseFuture {
        let mut request = hyper::Request::new(http_body_util::Full::new(bytes::Bytes::new()));
        *request.uri_mut() = uri;
        self.request(request)
    }
}
