//! Test support: the real `global-control` binary as a process, file-backed sync subscribers, a
//! fault-injecting UDP proxy, and certificates.

use replication::sync::{run_client, ChangeSet, ClientConfig, SyncSink, SyncStatus};
use replication::tls::QuicTimeouts;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const ADMIN: &str = "gct_test_admin_0123456789abcdef0123456789abcdef";

pub fn regions_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config/regions")
}

/// Certificates for the control plane, the router and every cell, from one CA.
pub fn certs(dir: &Path) -> PathBuf {
    let tls = dir.join("tls");
    let names: Vec<String> =
        ["control", "router", "uk", "mt", "dk", "se", "es"].iter().map(|s| s.to_string()).collect();
    replication::tls::generate(&tls, &names).unwrap();
    tls
}

/// A `global-control serve` process.
pub struct Control {
    child: Option<Child>,
    pub http: SocketAddr,
    pub quic: SocketAddr,
    data: PathBuf,
    tls: PathBuf,
}

impl Control {
    pub fn start(data: &Path, tls: &Path) -> Control {
        let (http, quic) = (chaos::ports::free_tcp().unwrap(), chaos::ports::free_udp().unwrap());
        let mut control = Control { child: None, http, quic, data: data.to_owned(), tls: tls.to_owned() };
        control.spawn();
        control
    }

    fn spawn(&mut self) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_global-control"))
            .args(["serve", "--listen", &self.http.to_string(), "--quic", &self.quic.to_string()])
            .arg("--data")
            .arg(&self.data)
            .arg("--tls-dir")
            .arg(&self.tls)
            .arg("--regions")
            .arg(regions_dir())
            .env("GLOBAL_CONTROL_ADMIN_TOKEN", ADMIN)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .expect("start global-control");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        assert!(line.starts_with("listening "), "global-control did not start: {line:?}");
        self.child = Some(child);
    }

    /// `kill -9`: no chance to flush or close anything.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Starts again on the same ports and data.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// SIGTERM and wait: the exit status of a graceful shutdown.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().unwrap();
        Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
        child.wait().unwrap()
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        global_control::bench::request(self.http, method, path, token, body).await.unwrap()
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A subscriber's store: one JSON file, replaced atomically (write, fsync, rename) per set, so a
/// set and its version land together or not at all.
pub struct FileSink {
    path: PathBuf,
    /// Every set applied: (base, version, snapshot), to prove nothing was applied twice or skipped.
    pub applied: Mutex<Vec<(u64, u64, bool)>>,
}

impl FileSink {
    pub fn new(path: PathBuf) -> Arc<FileSink> {
        Arc::new(FileSink { path, applied: Mutex::new(Vec::new()) })
    }

    pub fn read(&self) -> serde_json::Value {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap(),
            Err(_) => serde_json::json!({"version": 0, "flags": {}, "games": {}, "providers": {}}),
        }
    }

    pub fn version(&self) -> u64 {
        self.read()["version"].as_u64().unwrap()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SinkError(String);

impl SyncSink for FileSink {
    type Error = SinkError;

    fn applied_version(&self) -> Result<u64, SinkError> {
        Ok(self.version())
    }

    fn apply(&self, set: &ChangeSet) -> Result<(), SinkError> {
        let mut state = if set.snapshot {
            serde_json::json!({"version": 0, "flags": {}, "games": {}, "providers": {}})
        } else {
            self.read()
        };
        let current = self.version();
        if !set.snapshot && set.base_version != current {
            return Err(SinkError(format!("set from {} does not follow {current}", set.base_version)));
        }
        for change in &set.changes {
            let c = serde_json::to_value(change).unwrap();
            match c["op"].as_str().unwrap() {
                "flagPut" => state["flags"][c["flag"]["key"].as_str().unwrap()] = c["flag"].clone(),
                "flagDelete" => {
                    state["flags"].as_object_mut().unwrap().remove(c["key"].as_str().unwrap());
                }
                "gamePut" => state["games"][c["game"]["id"].as_str().unwrap()] = c["game"].clone(),
                "gameDelete" => {
                    state["games"].as_object_mut().unwrap().remove(c["id"].as_str().unwrap());
                }
                "providerPut" => state["providers"][c["provider"]["id"].as_str().unwrap()] = c["provider"].clone(),
                "providerDelete" => {
                    state["providers"].as_object_mut().unwrap().remove(c["id"].as_str().unwrap());
                }
                "operatorKeyPut" => state["operatorKeys"][c["key"]["id"].as_str().unwrap()] = c["key"].clone(),
                "operatorKeyDelete" => {
                    state["operatorKeys"].as_object_mut().unwrap().remove(c["id"].as_str().unwrap());
                }
                other => return Err(SinkError(format!("unknown change {other}"))),
            }
        }
        state["version"] = set.version.into();
        let tmp = self.path.with_extension("tmp");
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp).map_err(|e| SinkError(e.to_string()))?;
            f.write_all(&serde_json::to_vec(&state).unwrap()).map_err(|e| SinkError(e.to_string()))?;
            f.sync_all().map_err(|e| SinkError(e.to_string()))?;
        }
        std::fs::rename(&tmp, &self.path).map_err(|e| SinkError(e.to_string()))?;
        self.applied.lock().unwrap().push((set.base_version, set.version, set.snapshot));
        Ok(())
    }
}

/// A subscriber: a sync client as cell `cell`, presenting `cert`'s certificate.
pub struct Subscriber {
    pub sink: Arc<FileSink>,
    pub status: SyncStatus,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

pub fn quick_timeouts() -> QuicTimeouts {
    QuicTimeouts { idle: Duration::from_secs(2), keep_alive: Duration::from_millis(500) }
}

impl Subscriber {
    pub fn start(tls: &Path, cell: &str, cert: &str, server: SocketAddr, file: PathBuf) -> Subscriber {
        Subscriber::start_with(tls, cell, cert, server, FileSink::new(file))
    }

    pub fn start_with(tls: &Path, cell: &str, cert: &str, server: SocketAddr, sink: Arc<FileSink>) -> Subscriber {
        let quic = replication::tls::quic_client_config(tls, cert, "control", quick_timeouts()).unwrap();
        let mut config = ClientConfig::new(cell, server, quic);
        config.backoff_max = Duration::from_millis(500);
        config.connect_timeout = Duration::from_secs(2);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (task, status) = run_client(config, sink.clone(), async move {
            let _ = rx.await;
        });
        Subscriber { sink, status, stop: Some(tx), task: Some(task) }
    }

    pub async fn stop(mut self) -> Arc<FileSink> {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap();
        self.sink.clone()
    }

    /// Waits until the sink holds `version` (or panics after `within`).
    pub async fn converged(&self, version: u64, within: Duration) {
        let deadline = Instant::now() + within;
        while self.sink.version() < version {
            assert!(
                Instant::now() < deadline,
                "subscriber at {} not {version} after {within:?}: {:?}",
                self.sink.version(),
                self.status.snapshot()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until the last error names `code` (or panics after `within`).
    pub async fn refused(&self, code: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while !self.status.snapshot().last_error.unwrap_or_default().contains(code) {
            assert!(
                Instant::now() < deadline,
                "never refused with {code} after {within:?}: {:?}",
                self.status.snapshot()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Nothing applied twice, nothing skipped: each delta follows the previous set.
    pub fn assert_exactly_once(&self) {
        let applied = self.sink.applied.lock().unwrap();
        let mut at = None;
        for (base, version, snapshot) in applied.iter() {
            if !snapshot {
                if let Some(at) = at {
                    assert_eq!(*base, at, "a set was skipped or applied twice: {applied:?}");
                }
            }
            assert!(version > base || *snapshot, "{applied:?}");
            at = Some(*version);
        }
    }
}

/// A UDP proxy between subscribers and the control plane that can black-hole every datagram.
pub struct UdpProxy {
    pub addr: SocketAddr,
    blackhole: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl UdpProxy {
    pub async fn start(upstream: SocketAddr) -> UdpProxy {
        let front = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let back = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
        back.connect(upstream).await.unwrap();
        let addr = front.local_addr().unwrap();
        let blackhole = Arc::new(AtomicBool::new(false));
        let hole = blackhole.clone();
        let task = tokio::spawn(async move {
            let mut client: Option<SocketAddr> = None;
            let (mut a, mut b) = (vec![0u8; 65_536], vec![0u8; 65_536]);
            loop {
                tokio::select! {
                    r = front.recv_from(&mut a) => {
                        let Ok((n, from)) = r else { continue };
                        client = Some(from);
                        if !hole.load(Ordering::SeqCst) {
                            let _ = back.send(&a[..n]).await;
                        }
                    }
                    r = back.recv(&mut b) => {
                        let Ok(n) = r else { continue };
                        if let (Some(to), false) = (client, hole.load(Ordering::SeqCst)) {
                            let _ = front.send_to(&b[..n], to).await;
                        }
                    }
                }
            }
        });
        UdpProxy { addr, blackhole, task }
    }

    pub fn blackhole(&self, on: bool) {
        self.blackhole.store(on, Ordering::SeqCst);
    }
}

impl Drop for UdpProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A boolean flag definition, enabled, serving `fallthrough`, with optional rules.
pub fn boolean_flag(fallthrough: &str, rules: serde_json::Value, reason: &str) -> serde_json::Value {
    serde_json::json!({
        "definition": {
            "kind": "boolean", "variants": {"on": true, "off": false}, "offVariant": "off",
            "fallthrough": {"variant": fallthrough}, "enabled": true, "rules": rules
        },
        "reason": reason
    })
}
