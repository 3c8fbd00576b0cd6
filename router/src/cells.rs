//! The cells the router can send to: each jurisdiction's primary and optional standby, which
//! countries it is licensed for, and whether each endpoint answers its health check.
//!
//! A jurisdiction's traffic goes to its primary while it is healthy, else to its standby, and
//! never to another jurisdiction's cell.

use crate::sessions::SessionKeys;
use crate::upstream::{Upstream, UpstreamError};
use contracts::region::RegionConfig;
use contracts::CountryCode;
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

/// How the router reaches cells.
#[derive(Clone, Debug)]
pub enum Transport {
    /// Mutual TLS with the certificates in this directory (`global-control certs`).
    MutualTls(std::path::PathBuf),
    /// Plain HTTP, for local development only.
    InsecurePlainHttp,
}

/// The TLS configuration for `cell`'s endpoints (one that accepts only `cell`'s certificate), and
/// whether plain http endpoints may be used.
fn tls_for(cell: &str, transport: &Transport) -> Result<(Arc<rustls::ClientConfig>, bool), CellsError> {
    Ok(match transport {
        Transport::MutualTls(dir) => {
            let config =
                replication::tls::client_config(dir, "router", cell).map_err(|e| CellsError::Tls(e.to_string()))?;
            (Arc::new(config), false)
        }
        // An https endpoint in development gets a TLS configuration that trusts nobody: it fails,
        // as it should without certificates.
        Transport::InsecurePlainHttp => (Arc::new(replication::tls::no_tls_client_config()), true),
    })
}

pub struct Endpoint {
    /// Base URL, without a trailing slash: `http://127.0.0.1:7101`.
    pub url: String,
    /// The connections to this endpoint (its TLS checks the certificate names the cell).
    pub upstream: Upstream,
    healthy: AtomicBool,
    /// Health checks timed out in a row.
    timeouts: std::sync::atomic::AtomicU32,
}

impl Endpoint {
    fn new(url: &str, cell: &str, transport: &Transport) -> Result<Endpoint, CellsError> {
        let url = url.trim_end_matches('/').to_owned();
        let (tls, plain_allowed) = tls_for(cell, transport)?;
        let upstream = Upstream::new(&url, tls, plain_allowed)
            .map_err(|e| CellsError::Endpoint { cell: cell.to_owned(), reason: e.to_string() })?;
        Ok(Endpoint { url, upstream, healthy: AtomicBool::new(false), timeouts: std::sync::atomic::AtomicU32::new(0) })
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }
}

pub struct CellRoute {
    pub cell_id: String,
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
    #[error("cell `{cell}`: {reason}")]
    Endpoint { cell: String, reason: String },
    #[error("country {country} is licensed by both `{first}` and `{second}`: a country must have one cell")]
    CountryTwice { country: CountryCode, first: String, second: String },
}

impl Cells {
    /// Builds the table from the region files, with `--cell`/`--standby` overriding endpoints.
    /// Without `region_standbys`, only the standbys given with `--standby` are used.
    pub fn new(
        regions: &[RegionConfig],
        primaries: &HashMap<String, String>,
        standbys: &HashMap<String, String>,
        region_standbys: bool,
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
            let from_region = r.standby_endpoint.as_ref().filter(|_| region_standbys);
            let standby = standbys.get(&r.cell_id).or(from_region);
            routes.push(CellRoute {
                cell_id: r.cell_id.clone(),
                countries: r.licensed_countries.clone(),
                primary: Endpoint::new(primary, &r.cell_id, transport)?,
                standby: standby.map(|s| Endpoint::new(s, &r.cell_id, transport)).transpose()?,
            });
        }
        Ok(Cells { routes })
    }

    /// Every endpoint, primaries and standbys.
    pub fn endpoints(&self) -> impl Iterator<Item = &Endpoint> {
        self.routes.iter().flat_map(|r| std::iter::once(&r.primary).chain(r.standby.as_ref()))
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
            let cell = &route.cell_id;
            let answered = match tokio::time::timeout(HEALTH_TIMEOUT, get(&e.upstream, "/readyz")).await {
                Ok(Ok(answer)) => Some(answer.head.status.is_success()),
                Ok(Err(_)) => Some(false),
                Err(_) => None,
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
                if let Err(problem) = fetch_key(e, cell, keys).await {
                    tracing::error!(endpoint = %e.url, %problem, "cannot learn the cell's session key");
                }
            }
        });
        futures::future::join_all(checks).await;
    }
}

/// Largest answer a health check or key fetch reads: both are a few bytes of text or JSON.
const CHECK_ANSWER_BYTES_MAX: usize = 64 * 1024;

async fn get(upstream: &Upstream, path: &'static str) -> Result<crate::upstream::Answer, UpstreamError> {
    let request =
        hyper::Request::get(path).body(crate::upstream::Body::default()).expect("a static path is a valid URI");
    upstream.request(request, CHECK_ANSWER_BYTES_MAX).await
}

async fn fetch_key(endpoint: &Endpoint, cell: &str, keys: &SessionKeys) -> Result<(), String> {
    let answer = tokio::time::timeout(HEALTH_TIMEOUT, get(&endpoint.upstream, "/sessions/key"))
        .await
        .map_err(|_| "timed out".to_owned())?
        .map_err(|e| crate::upstream::error_chain(&e))?;
    if !answer.head.status.is_success() {
        return Err(format!("answered {}", answer.head.status));
    }
    let key: contracts::sessions::SessionKey = serde_json::from_slice(&answer.body).map_err(|e| e.to_string())?;
    keys.add(&endpoint.url, cell, &key)
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
