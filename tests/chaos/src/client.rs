//! HTTP on loopback, as each party of the platform speaks it: plain HTTP to the router and the
//! control API, mutual TLS to cells (the drill presents its own certificate from the platform CA
//! and checks that the cell's certificate names the cell it meant to reach).

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Longest one request may take. A killed process resets its connections at once; this only
/// bounds a peer that accepted the request and then hung (or a black-holed path).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// Name of the drill's own certificate in the TLS directory (added beside `global-control
/// certs`'s, signed by the same CA): cells see an ops client, not an impostor router.
pub const DRILL_CERT_NAME: &str = "drill";

type Plain = Client<HttpConnector, Full<Bytes>>;
type Tls = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// One answer, read in full.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The stable refusal code of a `{code, message}` body, or "".
    pub fn code(&self) -> String {
        self.json()["code"].as_str().unwrap_or_default().to_owned()
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    /// Who answered: the router's `X-Cell` (`router` for its own refusals).
    pub fn cell(&self) -> &str {
        self.header("x-cell")
    }

    pub fn replayed(&self) -> bool {
        self.header("idempotent-replay") == "true"
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A pooled client per peer: one for plain HTTP, one per cell id over mutual TLS (each checks
/// that the server's certificate names that cell).
#[derive(Clone)]
pub struct Http {
    plain: Plain,
    cells: Arc<BTreeMap<String, Tls>>,
    /// Where the back office's operator token comes from, once known ([`Http::operator_tokens`]).
    operator: Arc<tokio::sync::Mutex<Option<OperatorTokens>>>,
}

/// An admin operator token from global-control, asked for with the drill's API token and asked
/// for again a minute before it expires.
struct OperatorTokens {
    control: String,
    api_token: String,
    current: Option<(String, tokio::time::Instant)>,
}

/// Whether `method path` (the path with its query) is one of a cell's back-office routes, which
/// take an operator token: `cell::api::callers::ROUTES` says which, and a cell test keeps this in
/// step with it.
pub fn is_back_office(method: &str, path: &str) -> bool {
    let path = path.split('?').next().unwrap_or(path);
    let prefixed = [
        "/wallet/credit",
        "/wallet/debit",
        "/wallet/hold",
        "/wallet/settle",
        "/ops/",
        "/audit/",
        "/events",
        "/compliance/",
        "/exports",
    ]
    .iter()
    .any(|prefix| path.starts_with(prefix));
    // The finance role's withdrawal queue and decisions; players ask for and cancel theirs.
    let withdrawals = match path.strip_prefix("/cashier/withdrawals") {
        Some("") => method == "GET",
        Some(rest) => method == "GET" || rest.ends_with("/approve") || rest.ends_with("/reject"),
        None => false,
    };
    let refund = path.starts_with("/cashier/payments/") && path.ends_with("/refund");
    prefixed || withdrawals || refund
}

/// How long before its expiry an operator token is replaced.
const OPERATOR_TOKEN_MARGIN: Duration = Duration::from_secs(60);

impl Http {
    /// `tls_dir`: `None` when cells serve plain HTTP.
    pub fn new(tls_dir: Option<&Path>, cell_ids: &[String]) -> anyhow::Result<Http> {
        let plain = Client::builder(TokioExecutor::new()).build(connector());
        let mut cells = BTreeMap::new();
        if let Some(dir) = tls_dir {
            for id in cell_ids {
                let config = replication::tls::client_config(dir, DRILL_CERT_NAME, id)
                    .with_context(|| format!("load the drill's TLS configuration for cell {id}"))?;
                let https = hyper_rustls::HttpsConnectorBuilder::new()
                    .with_tls_config(config)
                    .https_only()
                    .enable_http1()
                    .wrap_connector(connector());
                cells.insert(id.clone(), Client::builder(TokioExecutor::new()).build(https));
            }
        }
        Ok(Http { plain, cells: Arc::new(cells), operator: Default::default() })
    }

    /// From now on, requests to cells without their own `Authorization` carry an `admin` operator
    /// token that global-control at `control` (its base URL) issues for the API token `api_token`.
    pub async fn operator_tokens(&self, control: &str, api_token: &str) {
        let source = OperatorTokens { control: control.to_owned(), api_token: api_token.to_owned(), current: None };
        *self.operator.lock().await = Some(source);
    }

    /// `Authorization` for the back office: the current operator token, asked for anew when it
    /// is about to expire.
    async fn operator_authorization(&self) -> anyhow::Result<Option<String>> {
        let mut guard = self.operator.lock().await;
        let Some(source) = guard.as_mut() else { return Ok(None) };
        let now = tokio::time::Instant::now();
        if let Some((token, renew_at)) = &source.current {
            if now < *renew_at {
                return Ok(Some(format!("Bearer {token}")));
            }
        }
        let bearer = format!("Bearer {}", source.api_token);
        let body = serde_json::to_vec(&contracts::operators::OperatorTokenRequest {
            role: contracts::operators::Role::Admin,
        })?;
        let request = hyper::Request::builder()
            .method("POST")
            .uri(format!("{}/operator-tokens", source.control))
            .header("authorization", bearer)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))?;
        let response = tokio::time::timeout(REQUEST_TIMEOUT, self.plain.request(request))
            .await
            .context("global-control did not answer POST /operator-tokens in time")??;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        anyhow::ensure!(
            status == hyper::StatusCode::CREATED,
            "POST /operator-tokens answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
        let issued: contracts::operators::OperatorTokenResponse = serde_json::from_slice(&body)?;
        let lifetime = Duration::from_secs(issued.expires_in.max(0) as u64);
        source.current = Some((issued.token.clone(), now + lifetime.saturating_sub(OPERATOR_TOKEN_MARGIN)));
        Ok(Some(format!("Bearer {}", issued.token)))
    }

    /// Sends one request. `cell`: the cell id an `https://` URL must belong to.
    pub async fn send(
        &self,
        cell: Option<&str>,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<Reply> {
        let mut builder = hyper::Request::builder().method(method).uri(url);
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        // A cell's back office takes the drill's certificate and an operator token.
        let path = url.strip_prefix("https://").and_then(|rest| rest.find('/').map(|i| &rest[i..]));
        let back_office = path.is_some_and(|path| is_back_office(method, path));
        if back_office && !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("authorization")) {
            if let Some(authorization) = self.operator_authorization().await? {
                builder = builder.header("authorization", authorization);
            }
        }
        if body.is_some() {
            builder = builder.header("content-type", "application/json");
        }
        let request = builder.body(Full::new(Bytes::from(body.unwrap_or_default()))).context("build request")?;
        let exchange = async {
            let response = match (url.starts_with("https://"), cell) {
                (true, Some(id)) => {
                    let client = self.cells.get(id).with_context(|| format!("no TLS client for cell {id}"))?;
                    client.request(request).await?
                }
                (true, None) => anyhow::bail!("{url}: https needs the cell id its certificate must name"),
                (false, _) => self.plain.request(request).await?,
            };
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let body = response.into_body().collect().await?.to_bytes();
            Ok(Reply { status, headers, body })
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .with_context(|| format!("{method} {url}: no answer within {REQUEST_TIMEOUT:?}"))?
            .with_context(|| format!("{method} {url}"))
    }

    pub async fn get(&self, cell: Option<&str>, url: &str) -> anyhow::Result<Reply> {
        self.send(cell, "GET", url, &[], None).await
    }
}

fn connector() -> HttpConnector {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(Duration::from_secs(2)));
    http
}
