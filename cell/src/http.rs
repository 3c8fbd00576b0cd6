//! Serves the cell's API over HTTP/1.1, in the clear or over mutual TLS (then only clients with a
//! certificate from the platform's CA get a connection: the router, the control plane).
//!
//! Each connection is served on its own task from the moment it is accepted, TLS handshake
//! included, so a client that stalls its handshake holds up nobody else (it is dropped after
//! [`HANDSHAKE_TIMEOUT`]). Each connection is served as the router serves its own
//! (`replication::http`), rather than through `axum::serve`'s protocol-sniffing builder: the cell
//! speaks HTTP/1.1 only.
//!
//! On shutdown it stops accepting, lets every connection finish the request it is serving (an
//! idle keep-alive connection closes at once), and returns when all are done, or after
//! [`DRAIN_MAX`] by cutting off what is left.

use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

/// Longest a TLS handshake may take before the connection is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a connection may go without sending a whole request head. hyper's header-read timer
/// also runs while a keep-alive connection waits for its next request, so this is the idle limit
/// too: it must stay well above the idle time of the router's pooled connections to cells (30 s,
/// `router::upstream`), or the router could send a request on a connection the cell is closing
/// (a 502 for a request the cell never saw).
const HEADER_READ_MAX: Duration = Duration::from_secs(90);
/// Longest the requests in flight at shutdown may take before their connections are cut.
pub const DRAIN_MAX: Duration = Duration::from_secs(30);

/// Serves `app` on `listener` until `shutdown` resolves, then drains (see the module's doc).
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    app: axum::Router,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = tls.map(TlsAcceptor::from);
    let (stop, stopped) = watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let (acceptor, app, stopped) = (acceptor.clone(), app.clone(), stopped.clone());
                    connections.spawn(connection(tcp, peer, acceptor, app, stopped));
                }
                // A connection that failed before it was accepted (reset, aborted): the next one.
                Err(e) if connection_error(&e) => tracing::debug!(error = %e, "a connection failed before accept"),
                Err(e) => {
                    // Out of file descriptors and the like: back off rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(joined) = connections.join_next(), if !connections.is_empty() => replication::http::ended(joined),
        }
    }
    drop(listener);
    let _ = stop.send(true);
    replication::http::drain(&mut connections, DRAIN_MAX).await;
}

/// An accept error about one connection, not about the listener or the process.
fn connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(e.kind(), ConnectionAborted | ConnectionRefused | ConnectionReset)
}

async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    acceptor: Option<TlsAcceptor>,
    app: axum::Router,
    mut stopped: watch::Receiver<bool>,
) {
    // Small requests and answers: send each at once rather than wait for the peer's ACK.
    let _ = tcp.set_nodelay(true);
    let Some(acceptor) = acceptor else {
        return serve_http(TokioIo::new(tcp), peer, app, stopped).await;
    };
    let handshake = tokio::select! {
        handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)) => handshake,
        () = replication::http::until_stopped(&mut stopped) => return,
    };
    match handshake {
        Ok(Ok(tls)) => serve_http(TokioIo::new(tls), peer, app, stopped).await,
        Ok(Err(e)) => tracing::info!(%peer, error = %e, "TLS handshake refused"),
        Err(_) => tracing::info!(%peer, "TLS handshake timed out"),
    }
}

async fn serve_http<I>(io: I, peer: SocketAddr, app: axum::Router, stopped: watch::Receiver<bool>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = TowerToHyperService::new(app);
    if let Err(e) = replication::http::serve_connection(io, service, HEADER_READ_MAX, stopped).await {
        tracing::debug!(error = %e, %peer, "connection ended with an error");
    }
}
