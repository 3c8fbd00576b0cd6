//! Keep-alive HTTP/1.1 connections from the router to one cell endpoint, over mutual TLS or (in
//! development) plain TCP, on hyper's connection API.
//!
//! Why not hyper-util's pooled `Client`: on `router bench` it cost about a tenth of the router's
//! CPU per request on top of hyper's own connection work. Each request cloned the connector (TLS
//! configuration included) for a connect it almost never made, hashed a pool key of scheme and
//! authority, rebuilt the `Host` header from the URI and boxed its future. An endpoint here is one
//! address with one TLS identity, so its pool is a stack of idle connections behind a mutex held
//! for a push or a pop.
//!
//! One pool per serving thread: a socket belongs to the runtime (epoll instance) of the thread
//! that opened it, and its readiness is reported there. A connection opened on one thread and
//! used on another costs a cross-thread wake-up (an eventfd write and a futex) for every read;
//! measured with `strace` on `router bench`, that was half a syscall more per request.
//!
//! Why no task per connection: hyper's connection future (the socket's reads and writes) is
//! driven by the request using the connection, inside that request's own task. A spawned
//! connection task costs two task wake-ups and two channel hand-offs per request, often across
//! threads; here the bytes go to the cell and the answer comes back in the task that asked.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{HeaderValue, HOST};
use rustls::pki_types::ServerName;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// Idle connections kept per endpoint and pool (so per serving thread). More than a thread's
/// usual concurrency toward one cell; a connection coming back to a full pool is closed rather
/// than held open.
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

/// hyper's connection future: the socket's reads and writes, with the TLS session if any.
type Io = Pin<Box<dyn Future<Output = hyper::Result<()>> + Send>>;

/// One HTTP/1.1 connection to the cell, with no task of its own: its I/O advances only while a
/// request polls it ([`Connection::drive`]), which is enough for a client that speaks only when
/// asked. Idle, it is polled only by [`Upstream::close_idle`]'s sweep; a close by the cell is
/// otherwise seen on the next request's first poll.
struct Connection {
    sender: SendRequest<Body>,
    /// `None` once the connection has ended (closed by the cell, or broken).
    io: Option<Io>,
}

impl Connection {
    fn is_closed(&self) -> bool {
        self.io.is_none() || self.sender.is_closed()
    }

    /// Runs `exchange` (which uses `sender`) while driving the connection's I/O.
    async fn drive<T>(&mut self, exchange: impl AsyncFnOnce(&mut SendRequest<Body>) -> T) -> T {
        let Connection { sender, io } = self;
        let mut exchange = std::pin::pin!(exchange(sender));
        std::future::poll_fn(|cx| {
            poll_io(io, cx);
            exchange.as_mut().poll(cx)
        })
        .await
    }
}

/// Advances a connection's I/O as far as it goes without waiting; `io` becomes `None` when the
/// connection has ended, which drops hyper's dispatcher and so fails whatever still waits on it.
fn poll_io(io: &mut Option<Io>, cx: &mut Context<'_>) {
    if let Some(running) = io.as_mut() {
        if let Poll::Ready(ended) = running.as_mut().poll(cx) {
            if let Err(e) = ended {
                tracing::debug!(error = %e, "connection to a cell ended");
            }
            *io = None;
        }
    }
}

struct Idle {
    connection: Connection,
    since: Instant,
}

thread_local! {
    /// Which pool this thread's requests take connections from and give them back to.
    static POOL: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Pools per endpoint: one per serving thread, and pool 0 for every other thread (health checks).
pub fn pool_count() -> usize {
    // Fixed at first use: the serving threads and every endpoint's pools must agree on it.
    static POOLS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *POOLS.get_or_init(|| 1 + std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Makes this thread use pool `pool` (1 to `pool_count() - 1` for serving threads).
pub fn use_pool(pool: usize) {
    POOL.set(pool);
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
    /// Idle connections, one pool per serving thread ([`use_pool`]); most recently used last,
    /// so busy periods reuse warm connections and the oldest age out.
    pools: Box<[Mutex<Vec<Idle>>]>,
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
            pools: (0..pool_count()).map(|_| Mutex::new(Vec::new())).collect(),
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
        loop {
            let (mut connection, pooled) = match self.checkout() {
                Some(connection) => (connection, true),
                None => (self.connect().await?, false),
            };
            let exchanged = connection
                .drive(async |sender| {
                    if let Err(e) = sender.ready().await {
                        return Err(Exchange::NotSent(Box::new(request), e));
                    }
                    let response = match sender.try_send_request(request).await {
                        Ok(response) => response,
                        Err(mut failed) => {
                            return Err(match failed.take_message() {
                                // Never written: safe to send again, on another connection.
                                Some(unsent) => Exchange::NotSent(Box::new(unsent), failed.into_error()),
                                None => Exchange::Failed(UpstreamError::Request(failed.into_error())),
                            });
                        }
                    };
                    let (head, incoming) = response.into_parts();
                    match http_body_util::Limited::new(incoming, body_bytes_max).collect().await {
                        Ok(collected) => Ok(Answer { head, body: collected.to_bytes() }),
                        // The connection is dropped with the rest of the body unread.
                        Err(e) => Err(Exchange::Failed(match e.downcast::<hyper::Error>() {
                            Ok(e) => UpstreamError::Body(*e),
                            Err(_) => UpstreamError::BodyTooLarge { limit: body_bytes_max },
                        })),
                    }
                })
                .await;
            match exchanged {
                Ok(answer) => {
                    self.give_back(connection);
                    return Ok(answer);
                }
                Err(Exchange::NotSent(unsent, _)) if pooled => request = *unsent,
                Err(Exchange::NotSent(_, e)) => return Err(UpstreamError::Request(e)),
                Err(Exchange::Failed(e)) => return Err(e),
            }
        }
    }

    /// This thread's pool.
    fn pool(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        let pool = &self.pools[POOL.get() % self.pools.len()];
        pool.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn checkout(&self) -> Option<Connection> {
        let mut idle = self.pool();
        while let Some(c) = idle.pop() {
            if !c.connection.is_closed() {
                return Some(c.connection);
            }
        }
        None
    }

    fn give_back(&self, connection: Connection) {
        if connection.is_closed() {
            return;
        }
        let mut idle = self.pool();
        if idle.len() < IDLE_CONNECTIONS_MAX {
            idle.push(Idle { connection, since: Instant::now() });
        }
    }

    /// Closes connections idle for longer than [`IDLE_TIMEOUT`] or closed by the cell (seen by
    /// polling each one's I/O once, as nothing else polls an idle connection).
    pub fn close_idle(&self) {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        for pool in &self.pools {
            let mut idle = pool.lock().unwrap_or_else(|p| p.into_inner());
            idle.retain_mut(|c| {
                poll_io(&mut c.connection.io, &mut cx);
                !c.connection.is_closed() && c.since.elapsed() < IDLE_TIMEOUT
            });
        }
    }

    async fn connect(&self) -> Result<Connection, UpstreamError> {
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

/// How one exchange on a connection failed.
enum Exchange {
    /// The request was never written (the connection had closed): it may go on another.
    NotSent(Box<hyper::Request<Body>>, hyper::Error),
    /// The request may have reached the cell.
    Failed(UpstreamError),
}

async fn handshake<T>(io: T) -> Result<Connection, UpstreamError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    // Requests are small: one flat buffer per write (see `server::serve_connection`).
    let (sender, io) = http1::Builder::new()
        .writev(false)
        .handshake(hyper_util::rt::TokioIo::new(io))
        .await
        .map_err(UpstreamError::Handshake)?;
    Ok(Connection { sender, io: Some(Box::pin(io)) })
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
