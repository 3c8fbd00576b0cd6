//! Keep-alive HTTP/1.1 connections from the router to one cell endpoint, over mutual TLS or (in
//! development) plain TCP, on hyper's connection API.
//!
//! Why not hyper-util's pooled `Client`: on `router bench` it cost about a tenth of the router's
//! CPU per request on top of hyper's own connection work. Each request cloned the connector (TLS
//! configuration included) for a connect it almost never made, hashed a pool key of scheme and
//! authority, rebuilt the `Host` header from the URI and boxed its future. An endpoint here is one
//! address with one TLS identity, so its pool is a stack of idle connections behind a mutex held
//! for a push or a pop.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{HeaderValue, HOST};
use rustls::pki_types::ServerName;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Idle connections kept per endpoint. More than the router's usual concurrency toward one cell;
/// a connection coming back to a full pool is closed rather than held open.
pub const IDLE_CONNECTIONS_MAX: usize = 256;
/// An idle connection older than this is closed by [`Upstream::close_idle`], so a burst's
/// connections do not stay open on the cell forever.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// A request on the wire to a cell; bodies are small and already in memory.
pub type Body = Full<Bytes>;

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("`{url}` is not an http(s) URL with a host")]
    BadUrl { url: String },
    #[error("plain HTTP to a cell is refused when the router talks mutual TLS")]
    PlainHttpRefused,
    #[error("connect to {address}")]
    Connect {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS handshake with {address}")]
    Tls {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("HTTP/1.1 handshake")]
    Handshake(#[source] hyper::Error),
    #[error("send the request or read the answer's head")]
    Request(#[source] hyper::Error),
    #[error("read the answer's body")]
    Body(#[source] hyper::Error),
    #[error("the answer's body is over {limit} bytes")]
    BodyTooLarge { limit: usize },
}

impl UpstreamError {
    /// Whether the cell answered (its body could not be passed on), as opposed to not answering.
    pub fn is_answer_invalid(&self) -> bool {
        matches!(self, UpstreamError::Body(_) | UpstreamError::BodyTooLarge { .. })
    }
}

/// A cell's answer, its body read in full.
pub struct Answer {
    pub head: hyper::http::response::Parts,
    pub body: Bytes,
}

struct Idle {
    sender: SendRequest<Body>,
    since: Instant,
}

/// How one endpoint is reached.
enum Transport {
    Plain,
    Tls {
        connector: tokio_rustls::TlsConnector,
        server_name: ServerName<'static>,
    },
    /// An `http://` endpoint while the router talks mutual TLS: every request fails, as the
    /// router must not send players' traffic in the clear.
    Refused,
}

/// The connections to one endpoint.
pub struct Upstream {
    /// `host:port`, resolved at each connect.
    address: String,
    transport: Transport,
    /// Sent as `Host` on every request (the URI sent is the origin form, path and query).
    host: HeaderValue,
    /// Most recently used last, so busy periods reuse warm connections and the oldest age out.
    idle: Mutex<Vec<Idle>>,
}

impl Upstream {
    /// `url` is `http://host:port` or `https://host:port`. With `tls` (mutual TLS, or in
    /// development the TLS configuration that https URLs get), https URLs use it; `plain_allowed`
    /// says whether http URLs may be used at all.
    pub fn new(url: &str, tls: Arc<rustls::ClientConfig>, plain_allowed: bool) -> Result<Upstream, UpstreamError> {
        let bad = || UpstreamError::BadUrl { url: url.to_owned() };
        let uri: hyper::Uri = url.parse().map_err(|_| bad())?;
        let authority = uri.authority().ok_or_else(bad)?;
        let host = authority.host();
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(bad()),
        };
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let transport = if https {
            let name = host.trim_start_matches('[').trim_end_matches(']').to_owned();
            let server_name = ServerName::try_from(name).map_err(|_| bad())?;
            Transport::Tls { connector: tokio_rustls::TlsConnector::from(tls), server_name }
        } else if plain_allowed {
            Transport::Plain
        } else {
            Transport::Refused
        };
        Ok(Upstream {
            address: format!("{host}:{port}"),
            transport,
            host: HeaderValue::from_str(authority.as_str()).map_err(|_| bad())?,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Sends `request` (its URI in origin form: path and query) and reads the answer, whose body
    /// may be at most `body_bytes_max`. A pooled connection that turns out closed before the
    /// request was written is replaced; a request that may have reached the cell is never resent.
    pub async fn request(
        &self,
        mut request: hyper::Request<Body>,
        body_bytes_max: usize,
    ) -> Result<Answer, UpstreamError> {
        request.headers_mut().insert(HOST, self.host.clone());
        let response = loop {
            let (mut sender, pooled) = match self.checkout() {
                Some(sender) => (sender, true),
                None => (self.connect().await?, false),
            };
            if let Err(e) = sender.ready().await {
                if pooled {
                    continue;
                }
                return Err(UpstreamError::Request(e));
            }
            match sender.try_send_request(request).await {
                Ok(response) => break (response, sender),
                Err(mut failed) => match failed.take_message() {
                    // Never written: safe to send again, on another connection.
                    Some(unsent) if pooled => request = unsent,
                    _ => return Err(UpstreamError::Request(failed.into_error())),
                },
            }
        };
        let (response, sender) = response;
        let (head, incoming) = response.into_parts();
        let body = match http_body_util::Limited::new(incoming, body_bytes_max).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) => {
                // The connection is dropped with the rest of the body unread.
                return Err(match e.downcast::<hyper::Error>() {
                    Ok(e) => UpstreamError::Body(*e),
                    Err(_) => UpstreamError::BodyTooLarge { limit: body_bytes_max },
                });
            }
        };
        self.give_back(sender);
        Ok(Answer { head, body })
    }

    fn checkout(&self) -> Option<SendRequest<Body>> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(c) = idle.pop() {
            if !c.sender.is_closed() {
                return Some(c.sender);
            }
        }
        None
    }

    fn give_back(&self, sender: SendRequest<Body>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < IDLE_CONNECTIONS_MAX {
            idle.push(Idle { sender, since: Instant::now() });
        }
    }

    /// Closes connections idle for longer than [`IDLE_TIMEOUT`] or closed by the cell.
    pub fn close_idle(&self) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.retain(|c| !c.sender.is_closed() && c.since.elapsed() < IDLE_TIMEOUT);
    }

    async fn connect(&self) -> Result<SendRequest<Body>, UpstreamError> {
        if matches!(self.transport, Transport::Refused) {
            return Err(UpstreamError::PlainHttpRefused);
        }
        let connect_error = |source| UpstreamError::Connect { address: self.address.clone(), source };
        let tcp = tokio::net::TcpStream::connect(self.address.as_str()).await.map_err(connect_error)?;
        // Requests and answers are single small writes: send them now, not after an ACK.
        tcp.set_nodelay(true).map_err(connect_error)?;
        match &self.transport {
            Transport::Plain => handshake(tcp).await,
            Transport::Tls { connector, server_name } => {
                let tls = connector
                    .connect(server_name.clone(), tcp)
                    .await
                    .map_err(|source| UpstreamError::Tls { address: self.address.clone(), source })?;
                handshake(tls).await
            }
            Transport::Refused => unreachable!("refused before connecting"),
        }
    }
}

async fn handshake<T>(io: T) -> Result<SendRequest<Body>, UpstreamError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) =
        http1::handshake(hyper_util::rt::TokioIo::new(io)).await.map_err(UpstreamError::Handshake)?;
    // The connection's task ends when the cell closes it or its sender is dropped (pool full,
    // idle too long, a broken answer).
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "connection to a cell ended");
        }
    });
    Ok(sender)
}

/// `error: cause: cause...`, for logs (each error's `Display` leaves its source out).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
