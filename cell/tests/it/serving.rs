//! `cell::http::serve` on its own, over real TCP and mutual TLS: a client that stalls its TLS
//! handshake holds up nobody else, and shutdown answers the request in flight, then stops.

use axum::routing::get;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A tiny app: `/ping` answers at once, `/slow` after 300 ms.
fn app() -> axum::Router {
    axum::Router::new().route("/ping", get(|| async { "pong" })).route(
        "/slow",
        get(|| async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            "done"
        }),
    )
}

/// Starts `serve` with mutual TLS; the sender stops it.
async fn start(tls: &Path) -> (SocketAddr, tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    replication::tls::generate(tls, &["uk".to_owned(), "router".to_owned()]).unwrap();
    let server = replication::tls::server_config(tls, "uk").unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(cell::http::serve(listener, Some(server), app(), async {
        let _ = stopped.await;
    }));
    (address, stop, serving)
}

/// One GET over a fresh mutual-TLS connection (as the router); the whole answer as text.
async fn get_tls(tls: &Path, address: SocketAddr, path: &str) -> String {
    let config = Arc::new(replication::tls::client_config(tls, "router", "uk").unwrap());
    let tcp = TcpStream::connect(address).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("uk").unwrap();
    let mut stream = tokio_rustls::TlsConnector::from(config).connect(name, tcp).await.unwrap();
    stream.write_all(format!("GET {path} HTTP/1.1\r\nhost: uk\r\nconnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut answer = String::new();
    // The server closes without a TLS close_notify when it drops the connection: what was read is enough.
    let _ = stream.read_to_string(&mut answer).await;
    answer
}

#[tokio::test]
async fn a_stalled_tls_handshake_holds_up_no_other_client() {
    let tls = tempfile::tempdir().unwrap();
    let (address, stop, serving) = start(tls.path()).await;
    // Connects and says nothing: its handshake waits for up to HANDSHAKE_TIMEOUT (5 s).
    let staller = TcpStream::connect(address).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let answer = get_tls(tls.path(), address, "/ping").await;
    assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("pong"), "{answer}");
    // Served while the staller's handshake is still pending: were handshakes done one after
    // another, this answer would have come only after the staller had been timed out and closed.
    let mut byte = [0u8; 1];
    match staller.try_read(&mut byte) {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the stalled connection should still be waiting, got {other:?}"),
    }
    let _ = stop.send(());
    serving.await.unwrap();
}

#[tokio::test]
async fn shutdown_answers_the_request_in_flight_then_stops() {
    let tls = tempfile::tempdir().unwrap();
    let (address, stop, serving) = start(tls.path()).await;
    let in_flight = tokio::spawn({
        let tls = tls.path().to_owned();
        async move { get_tls(&tls, address, "/slow").await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _ = stop.send(());
    let answer = in_flight.await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("done"), "{answer}");
    serving.await.unwrap();
    assert!(TcpStream::connect(address).await.is_err(), "a stopped server takes no new connection");
}

#[tokio::test]
async fn shutdown_closes_an_idle_keep_alive_connection_at_once() {
    let tls = tempfile::tempdir().unwrap();
    let (address, stop, serving) = start(tls.path()).await;
    let config = Arc::new(replication::tls::client_config(tls.path(), "router", "uk").unwrap());
    let tcp = TcpStream::connect(address).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("uk").unwrap();
    let mut stream = tokio_rustls::TlsConnector::from(config).connect(name, tcp).await.unwrap();
    stream.write_all(b"GET /ping HTTP/1.1\r\nhost: uk\r\n\r\n").await.unwrap();
    let mut answer = vec![0u8; 1024];
    let n = stream.read(&mut answer).await.unwrap();
    assert!(String::from_utf8_lossy(&answer[..n]).ends_with("pong"));
    // Kept alive and idle: the stop closes it rather than waiting for the client or a timeout.
    let _ = stop.send(());
    let closed = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut answer)).await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "the idle connection should be closed: {closed:?}");
    tokio::time::timeout(Duration::from_secs(10), serving).await.expect("serve returns once drained").unwrap();
}

/// 2,000 idle connections and 200 that drip a request head a byte a second do not keep a normal
/// client from being served (`chaos::probes::served_beside_idle_and_dripping`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_dripping_connections_do_not_stop_a_normal_client() {
    let cell = crate::harness::TestCell::start("uk").await;
    let slowest = chaos::probes::served_beside_idle_and_dripping(cell.address, "/readyz").await.unwrap();
    println!("cell: slowest of 10 requests beside 2,000 idle and 200 dripping connections: {slowest:?}");
}
