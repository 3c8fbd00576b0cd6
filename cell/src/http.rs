//! Serves the cell's API over HTTP/1.1, in the clear or over mutual TLS (then only clients with a
//! certificate from the platform's CA get a connection: the router, the control plane), as every
//! deployable serves (`replication::http::serve`). The cell speaks HTTP/1.1 only.

use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// Longest a connection may go without sending a whole request head. hyper's header-read timer
/// also runs while a keep-alive connection waits for its next request, so this is the idle limit
/// too: it must stay well above the idle time of the router's pooled connections to cells (30 s,
/// `router::upstream`), or the router could send a request on a connection the cell is closing
/// (a 502 for a request the cell never saw).
const HEADER_READ_MAX: Duration = Duration::from_secs(90);

/// Most connections open at once. A cell's clients are the router (a pool per serving thread),
/// the control plane and game providers: hundreds of connections, not thousands. The cap leaves
/// most of the process's 20,000 descriptors to the store (fjall keeps up to 900 tables open) and
/// keeps a flood of idle connections from exhausting them.
const CONNECTIONS_MAX: usize = 8_192;

/// Serves `app` on `listener` until `shutdown` resolves, then drains.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    app: axum::Router,
    shutdown: impl Future<Output = ()>,
) {
    let service = TowerToHyperService::new(app);
    replication::http::serve(listener, tls, service, HEADER_READ_MAX, CONNECTIONS_MAX, shutdown).await
}
