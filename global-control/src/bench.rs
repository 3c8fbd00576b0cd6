//! `global-control bench flags`: flag propagation from the control API's 200 to the change
//! applied by every subscriber, over real QUIC with real mutual TLS, on loopback.
//!
//! Subscribers are in-process [`replication::sync::run_client`] tasks, each with its own UDP
//! socket, certificate and in-memory sink (the sink records when each version was applied), plus
//! real cells: `cell serve --control` processes (the `cell` binary beside this one), each applying
//! the change to its own store; a cell's time is when its `GET /flags/evaluate` first shows the
//! new version (polled over a kept-alive mutual-TLS connection, so it includes up to one poll of
//! delay). The control plane is the real one: fjall store with a synced commit per change, HTTP
//! API, QUIC sync server.

use crate::server::{ControlConfig, ControlPlane};
use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use replication::sync::{run_client, ChangeSet, ClientConfig, SyncSink};
use replication::tls::QuicTimeouts;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, clap::Args)]
pub struct FlagsBenchArgs {
    /// QUIC subscribers.
    #[arg(long, default_value_t = 100)]
    pub subscribers: usize,
    /// Flag changes to time, one after the other.
    #[arg(long, default_value_t = 100)]
    pub changes: usize,
    /// Real cells to start as subscribers too, by region file (`none` for none).
    #[arg(long, value_delimiter = ',', default_value = "uk,mt,dk,se,es")]
    pub cells: Vec<String>,
    /// Where the region files are.
    #[arg(long, default_value = "config/regions")]
    pub regions: std::path::PathBuf,
}

/// A `cell serve --control` process and a kept-alive mutual-TLS connection to its API.
struct CellSubscriber {
    id: String,
    child: std::process::Child,
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    address: std::net::SocketAddr,
    client: Arc<rustls::ClientConfig>,
}

/// A keep-alive HTTP/1.1 connection to a cell, over TLS as the router.
async fn connect(
    address: std::net::SocketAddr,
    client: &Arc<rustls::ClientConfig>,
) -> anyhow::Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(address).await?;
    stream.set_nodelay(true)?;
    let name = rustls::pki_types::ServerName::try_from("localhost")?;
    let stream = tokio_rustls::TlsConnector::from(client.clone()).connect(name, stream).await?;
    let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

impl CellSubscriber {
    async fn start(
        id: &str,
        regions: &std::path::Path,
        dir: &std::path::Path,
        tls: &std::path::Path,
        quic: SocketAddr,
    ) -> anyhow::Result<CellSubscriber> {
        let binary = std::env::current_exe()?.with_file_name("cell");
        anyhow::ensure!(
            binary.exists(),
            "{} is missing: build it (cargo build --release -p cell), or pass --cells none",
            binary.display()
        );
        let address: SocketAddr = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
            probe.local_addr()?
        };
        let child = std::process::Command::new(binary)
            .args(["serve", "--listen", &address.to_string(), "--region"])
            .arg(regions.join(format!("{id}.toml")))
            .arg("--data")
            .arg(dir.join(id))
            .arg("--tls-dir")
            .arg(tls)
            .args(["--control", &quic.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .with_context(|| format!("start cell {id}"))?;
        let client = Arc::new(replication::tls::client_config(tls, "router", id)?);
        let deadline = Instant::now() + Duration::from_secs(30);
        // Listening comes first, the store opens after: connect, then wait for an answer.
        let sender = loop {
            match connect(address, &client).await {
                Ok(sender) => break sender,
                Err(e) if Instant::now() >= deadline => return Err(e.context(format!("connect to cell {id}"))),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        let mut cell = CellSubscriber { id: id.to_owned(), child, sender, address, client };
        while let Err(e) = cell.flag_version().await {
            anyhow::ensure!(Instant::now() < deadline, "cell {id} did not become ready within 30 s: {e}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(cell)
    }

    /// The version of flag `bench` this cell serves (0 while it has none).
    async fn flag_version(&mut self) -> anyhow::Result<u64> {
        // A connection the cell closed (idle, or between two polls) is opened again.
        if self.sender.ready().await.is_err() {
            self.sender = connect(self.address, &self.client).await?;
        }
        let request =
            hyper::Request::get("/flags/evaluate?flag=bench").header("host", "cell").body(Full::new(Bytes::new()))?;
        let response = self.sender.send_request(request).await?;
        anyhow::ensure!(response.status().is_success(), "cell {} answered {}", self.id, response.status());
        let body: serde_json::Value = serde_json::from_slice(&response.into_body().collect().await?.to_bytes())?;
        Ok(body["version"].as_u64().unwrap_or(0))
    }
}

impl Drop for CellSubscriber {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request on a fresh connection: what the benchmark and the tests use to call the
/// control API like any client would.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<serde_json::Value>,
) -> anyhow::Result<(u16, serde_json::Value)> {
    let stream = tokio::net::TcpStream::connect(addr).await.with_context(|| format!("connect to {addr}"))?;
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let mut builder = hyper::Request::builder().method(method).uri(path).header("host", addr.to_string());
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    let bytes = body.map(|b| serde_json::to_vec(&b)).transpose()?.unwrap_or_default();
    if !bytes.is_empty() {
        builder = builder.header("content-type", "application/json");
    }
    let response = sender.send_request(builder.body(Full::new(Bytes::from(bytes)))?).await?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    let value = if body.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&body)
            .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&body).into()))
    };
    Ok((status, value))
}

/// A subscriber's store: the applied version and when each version arrived.
#[derive(Default)]
struct TimingSink {
    inner: Mutex<(u64, Vec<(u64, Instant)>)>,
}

impl SyncSink for TimingSink {
    type Error = Infallible;

    fn applied_version(&self) -> Result<u64, Infallible> {
        Ok(self.inner.lock().unwrap_or_else(|p| p.into_inner()).0)
    }

    fn apply(&self, set: &ChangeSet) -> Result<(), Infallible> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.0 = set.version;
        inner.1.push((set.version, Instant::now()));
        Ok(())
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub async fn flags(args: FlagsBenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.subscribers > 0 && args.changes > 0, "need at least one subscriber and one change");
    let dir = tempfile::tempdir().context("temp dir")?;
    let tls = dir.path().join("tls");
    let cells: Vec<String> = args.cells.iter().filter(|c| c.as_str() != "none").cloned().collect();
    let mut names = vec!["control".to_owned()];
    names.extend((0..args.subscribers).map(|i| format!("sub{i:03}")));
    let mut with_cells = names.clone();
    with_cells.push("router".to_owned());
    with_cells.extend(cells.iter().cloned());
    replication::tls::generate(&tls, &with_cells)?;
    let admin = crate::rbac::new_secret();
    let control = ControlPlane::open(ControlConfig {
        data_dir: dir.path().join("control"),
        regions: Vec::new(),
        tls_dir: tls.clone(),
        quic_listen: "127.0.0.1:0".parse()?,
        any_cell: true,
        timeouts: QuicTimeouts::default(),
        admin_token: Some(admin.clone()),
        wrong_tokens_per_minute: crate::api::TOKEN_FAILURES_MAX,
        export_every: None,
    })
    .await?;
    let quic = control.quic_addr()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let http = listener.local_addr()?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stop = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let server = tokio::spawn(control.serve(listener, stop(stop_rx.clone())));

    let mut sinks = Vec::new();
    let mut statuses = Vec::new();
    let mut clients = Vec::new();
    for name in &names[1..] {
        let quic_config = replication::tls::quic_client_config(&tls, name, "control", QuicTimeouts::default())?;
        let sink = Arc::new(TimingSink::default());
        let (handle, status) =
            run_client(ClientConfig::new(name.clone(), quic, quic_config), sink.clone(), stop(stop_rx.clone()));
        sinks.push(sink);
        statuses.push(status);
        clients.push(handle);
    }
    let mut cell_subscribers = Vec::new();
    for id in &cells {
        cell_subscribers.push(CellSubscriber::start(id, &args.regions, dir.path(), &tls, quic).await?);
    }
    let flag = |enabled: bool, i: usize| {
        serde_json::json!({
            "definition": {
                "kind": "boolean", "variants": {"on": true, "off": false}, "offVariant": "off",
                "fallthrough": {"variant": "on"}, "enabled": enabled
            },
            "reason": format!("benchmark change {i}")
        })
    };
    // Warm up: every subscriber connected and at the same version before timing starts.
    let (status, _) = request(http, "PUT", "/flags/bench", Some(&admin), Some(flag(true, 0))).await?;
    anyhow::ensure!(status == 200, "warm-up change answered {status}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while statuses.iter().any(|s| s.snapshot().applied_version < 1) {
        anyhow::ensure!(Instant::now() < deadline, "subscribers did not all connect within 60 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for cell in &mut cell_subscribers {
        while cell.flag_version().await? < 1 {
            anyhow::ensure!(Instant::now() < deadline, "cell {} did not sync within 60 s", cell.id);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let mut latencies_ms = Vec::with_capacity(args.subscribers * args.changes);
    let mut cell_latencies_ms = Vec::with_capacity(cells.len() * args.changes);
    for i in 1..=args.changes {
        let (status, body) = request(http, "PUT", "/flags/bench", Some(&admin), Some(flag(i % 2 == 0, i))).await?;
        let answered = Instant::now();
        anyhow::ensure!(status == 200, "change {i} answered {status}: {body}");
        let version = body["version"].as_u64().context("the answer carries the flag's version")?;
        let deadline = answered + Duration::from_secs(10);
        for sink in &sinks {
            loop {
                let applied_at = {
                    let inner = sink.inner.lock().unwrap_or_else(|p| p.into_inner());
                    inner.1.iter().find(|(v, _)| *v >= version).map(|(_, at)| *at)
                };
                if let Some(at) = applied_at {
                    latencies_ms.push(at.saturating_duration_since(answered).as_secs_f64() * 1000.0);
                    break;
                }
                anyhow::ensure!(Instant::now() < deadline, "version {version} not applied everywhere within 10 s");
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
        }
        // Cells are polled together, so one slow cell does not delay seeing the others.
        let mut pending: Vec<usize> = (0..cell_subscribers.len()).collect();
        while !pending.is_empty() {
            let mut still = Vec::new();
            for &i in &pending {
                if cell_subscribers[i].flag_version().await? >= version {
                    let ms = answered.elapsed().as_secs_f64() * 1000.0;
                    latencies_ms.push(ms);
                    cell_latencies_ms.push(ms);
                } else {
                    still.push(i);
                }
            }
            pending = still;
            anyhow::ensure!(Instant::now() < deadline, "version {version} not applied by every cell within 10 s");
        }
    }
    drop(cell_subscribers);
    latencies_ms.sort_by(|a, b| a.total_cmp(b));
    cell_latencies_ms.sort_by(|a, b| a.total_cmp(b));
    let _ = stop_tx.send(true);
    for client in clients {
        let _ = client.await;
    }
    server.await.context("server task")??;
    println!("flag_changes={}", args.changes);
    println!("flag_propagation_p50_ms={:.2}", percentile(&latencies_ms, 50.0));
    println!("flag_propagation_p99_ms={:.2}", percentile(&latencies_ms, 99.0));
    println!("flag_propagation_max_ms={:.2}", latencies_ms.last().copied().unwrap_or(0.0));
    if !cell_latencies_ms.is_empty() {
        println!("cell_propagation_p50_ms={:.2}", percentile(&cell_latencies_ms, 50.0));
        println!("cell_propagation_p99_ms={:.2}", percentile(&cell_latencies_ms, 99.0));
    }
    println!("cells={}", cells.len());
    println!("subscribers={}", args.subscribers + cells.len());
    Ok(())
}
