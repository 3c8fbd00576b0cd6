//! Serving client connections: one acceptor deals each to the serving thread with the fewest,
//! under a cap on open connections; each thread serves its connections to their end.

use super::*;

/// Longest the router waits, once told to stop, for its connections to finish their requests in
/// flight (a cell has `CELL_TIMEOUT` to answer); a client still sending its request or not
/// reading its answer by then is cut off.
pub(super) const DRAIN_MAX: Duration = Duration::from_secs(15);

/// How long a client connection may sit idle between requests, or take to send a request's
/// head, before the router closes it (hyper times both with one timer). Longer than the usual
/// idle timeout of a proxy or load balancer in front (60 s), so that they close first and never
/// send a request on a connection the router is closing.
pub const CLIENT_IDLE_MAX: Duration = Duration::from_secs(75);

/// An accepted connection on its way to a serving thread, with its place under the cap.
pub(super) type Dealt = (std::net::TcpStream, SocketAddr, tokio::sync::OwnedSemaphorePermit);

/// Most client connections open at once. Clients arrive through a load balancer or proxy that
/// pools them; 10,000 is far above that, below the process's 20,000 descriptors (each client
/// connection may also hold an upstream one to a cell), and keeps a flood of idle connections
/// from exhausting them: past it the router stops accepting until a connection ends.
pub const CLIENT_CONNECTIONS_MAX: usize = 10_000;

/// A serving thread, as the acceptor sees it.
pub(super) struct ServingThread {
    pub(super) to_thread: tokio::sync::mpsc::Sender<Dealt>,
    /// Connections it is serving (`router_client_connections`); [`GONE`] once it has stopped
    /// taking them.
    pub(super) open: Gauge,
    pub(super) thread: std::thread::JoinHandle<()>,
}

/// What a serving thread that has stopped counts as: never the one with the fewest.
pub(super) const GONE: i64 = 1 << 62;

/// Hands a new connection to the serving thread with the fewest. Each thread serves its
/// connections to the end, so an uneven deal stays uneven: with both threads taking turns at one
/// listening socket, `router bench`'s 32 keep-alive clients once loaded them 66% to 34% (their
/// CPU time at the fixed rate), and the busier thread saturated (p50 59 ms) while the other
/// idled; dealt by count, the split is 50/50 and the p50 about 1 ms.
pub(super) fn deal(
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
pub(super) struct Served {
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
pub(super) async fn serve_thread(mut dealt: tokio::sync::mpsc::Receiver<Dealt>, open: Gauge, state: Arc<AppState>) {
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

pub(super) async fn serve_connection(
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
