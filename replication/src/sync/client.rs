//! A cell's end of sync: connects to the control plane, resumes from the version its sink
//! persisted, applies each change set through the sink, acks, and reconnects with backoff
//! whenever anything goes wrong. [`SyncStatus`] says whether it is connected and when it last
//! heard from the control plane, which is what decides `STALE`.

use super::wire::{self, FrameError, Message};
use super::{ChangeSet, SyncError, SyncSink};
use contracts::changes::Change;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Frames a snapshot may span: with [`wire::FRAME_BYTES_MAX`], 256 MiB, far beyond any real catalog,
/// and a bound on what a broken server can make a cell buffer.
pub const SNAPSHOT_FRAMES_MAX: usize = 256;

/// Where to connect and as whom.
#[derive(Clone)]
pub struct ClientConfig {
    /// The cell id this client claims; its certificate must name it.
    pub cell: String,
    /// The control plane's QUIC address.
    pub server: SocketAddr,
    /// From [`crate::tls::quic_client_config`] with `peer = "control"`.
    pub quic: quinn::ClientConfig,
    /// First delay before reconnecting; doubled per failure (with jitter) up to `backoff_max`.
    pub backoff_min: Duration,
    /// Longest delay between attempts: a cell back in contact within this of the control
    /// plane's return.
    pub backoff_max: Duration,
    /// A handshake not done by then is abandoned (the path may be black-holed).
    pub connect_timeout: Duration,
}

impl ClientConfig {
    pub fn new(cell: impl Into<String>, server: SocketAddr, quic: quinn::ClientConfig) -> ClientConfig {
        ClientConfig {
            cell: cell.into(),
            server,
            quic,
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(3),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// A point-in-time view of the client.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncStatusSnapshot {
    pub connected: bool,
    /// When a frame last arrived from the control plane (heartbeats come every second).
    pub last_contact: Option<Instant>,
    pub last_contact_at: Option<SystemTime>,
    /// The version the sink has applied.
    pub applied_version: u64,
    /// The latest version the control plane announced.
    pub server_version: Option<u64>,
    pub last_error: Option<String>,
    /// Sessions the control plane accepted so far (a refused one never counts).
    pub connections: u64,
}

struct StatusInner {
    started: Instant,
    state: Mutex<SyncStatusSnapshot>,
    applied: watch::Sender<u64>,
}

/// Shared, cheap to clone: the cell reads it on every evaluation.
#[derive(Clone)]
pub struct SyncStatus(Arc<StatusInner>);

impl SyncStatus {
    fn new(applied: u64) -> SyncStatus {
        SyncStatus(Arc::new(StatusInner {
            started: Instant::now(),
            state: Mutex::new(SyncStatusSnapshot {
                connected: false,
                last_contact: None,
                last_contact_at: None,
                applied_version: applied,
                server_version: None,
                last_error: None,
                connections: 0,
            }),
            applied: watch::channel(applied).0,
        }))
    }

    fn with<R>(&self, f: impl FnOnce(&mut SyncStatusSnapshot) -> R) -> R {
        f(&mut self.0.state.lock().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn snapshot(&self) -> SyncStatusSnapshot {
        self.with(|s| s.clone())
    }

    /// Whether the control plane has not been heard from for longer than `max_age` (counting
    /// from the client's start if it never was): the cell then answers `STALE`.
    pub fn is_stale(&self, max_age: Duration) -> bool {
        let since = self.with(|s| s.last_contact).unwrap_or(self.0.started);
        since.elapsed() > max_age
    }

    /// Follows the applied version (for tests and benchmarks that wait for convergence).
    pub fn applied(&self) -> watch::Receiver<u64> {
        self.0.applied.subscribe()
    }

    fn contact(&self) {
        self.with(|s| {
            s.last_contact = Some(Instant::now());
            s.last_contact_at = Some(SystemTime::now());
        });
    }

    fn set_applied(&self, version: u64) {
        self.with(|s| s.applied_version = version);
        self.0.applied.send_replace(version);
    }
}

/// Longest delay between attempts of a cell the control plane refuses (an unknown cell, a
/// certificate that names another): waiting will not fix it, an operator will, and the attempts
/// should not flood either side's log meanwhile.
pub const REFUSED_BACKOFF_MAX: Duration = Duration::from_secs(60);

/// The delay after `current`: doubled, up to `max`, or up to [`REFUSED_BACKOFF_MAX`] after a
/// refusal.
fn next_backoff(current: Duration, refused: bool, max: Duration) -> Duration {
    (current * 2).min(if refused { REFUSED_BACKOFF_MAX.max(max) } else { max })
}

/// Starts following the control plane: returns the task (it ends after `shutdown`) and the
/// status. The sink's persisted version is where it resumes, every time it reconnects.
pub fn run_client<S: SyncSink>(
    config: ClientConfig,
    sink: Arc<S>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> (JoinHandle<()>, SyncStatus) {
    let status = SyncStatus::new(0);
    let task_status = status.clone();
    let handle = tokio::spawn(async move {
        tokio::pin!(shutdown);
        let mut backoff = config.backoff_min;
        let mut endpoint: Option<quinn::Endpoint> = None;
        loop {
            let session = async {
                let ep = match &endpoint {
                    Some(ep) => ep.clone(),
                    None => {
                        let local: SocketAddr = if config.server.is_ipv4() {
                            (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
                        } else {
                            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
                        };
                        match quinn::Endpoint::client(local) {
                            Ok(ep) => {
                                endpoint = Some(ep.clone());
                                ep
                            }
                            Err(e) => {
                                let message = format!("bind a UDP socket: {e}");
                                return (Err(SyncError::Connect { addr: config.server, message }), false);
                            }
                        }
                    }
                };
                session(&ep, &config, sink.clone(), &task_status).await
            };
            let (result, heard) = tokio::select! {
                _ = &mut shutdown => break,
                r = session => r,
            };
            task_status.with(|s| {
                s.connected = false;
                if let Err(e) = &result {
                    s.last_error = Some(e.to_string());
                }
            });
            match &result {
                Ok(()) => tracing::info!(cell = %config.cell, "sync: control plane closed the session"),
                Err(e) => tracing::warn!(cell = %config.cell, error = %e, "sync: session ended"),
            }
            if heard {
                backoff = config.backoff_min;
            }
            // Full jitter: cells cut off together do not all come back in the same instant.
            let delay = backoff.mul_f64(0.5 + rand::random::<f64>() / 2.0);
            let refused = matches!(result, Err(SyncError::Refused { .. }));
            backoff = next_backoff(backoff, refused, config.backoff_max);
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tokio::time::sleep(delay) => {}
            }
        }
        if let Some(ep) = endpoint {
            ep.close(0u32.into(), b"cell shutting down");
            let _ = tokio::time::timeout(Duration::from_millis(500), ep.wait_idle()).await;
        }
    });
    (handle, status)
}

/// One connection, from handshake to failure. Returns whether anything was heard from the server
/// (which resets the backoff).
async fn session<S: SyncSink>(
    endpoint: &quinn::Endpoint,
    config: &ClientConfig,
    sink: Arc<S>,
    status: &SyncStatus,
) -> (Result<(), SyncError>, bool) {
    let mut heard = false;
    let result = session_inner(endpoint, config, sink, status, &mut heard).await;
    (result, heard)
}

async fn blocking<T: Send + 'static, E: std::fmt::Display + Send + 'static>(
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, SyncError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| SyncError::Sink(e.to_string()))?
        .map_err(|e| SyncError::Sink(e.to_string()))
}

async fn session_inner<S: SyncSink>(
    endpoint: &quinn::Endpoint,
    config: &ClientConfig,
    sink: Arc<S>,
    status: &SyncStatus,
    heard: &mut bool,
) -> Result<(), SyncError> {
    let connect_error = |message: String| SyncError::Connect { addr: config.server, message };
    let connecting = endpoint
        .connect_with(config.quic.clone(), config.server, "control")
        .map_err(|e| connect_error(e.to_string()))?;
    let conn = tokio::time::timeout(config.connect_timeout, connecting)
        .await
        .map_err(|_| connect_error("handshake timed out".into()))?
        .map_err(|e| connect_error(e.to_string()))?;
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| SyncError::Connection(e.to_string()))?;
    let reader = sink.clone();
    let (mut applied, applied_digest) =
        blocking(move || Ok::<_, S::Error>((reader.applied_version()?, reader.applied_digest()?))).await?;
    status.set_applied(applied);
    let hello = Message::Hello { cell: config.cell.clone(), applied_version: applied, applied_digest };
    wire::write_frame(&mut send, &hello).await.map_err(SyncError::Frame)?;
    // Connected once the server has accepted the hello (its first frame that is not a refusal; it
    // sends a heartbeat at once), so a refused cell never shows as connected without its error.
    let mut accepted = false;
    let mut snapshot: Option<(u64, Vec<Change>, usize, Option<String>)> = None;
    loop {
        let msg = match wire::read_frame(&mut recv).await {
            Ok(msg) => msg,
            Err(e @ (FrameError::TooLarge { .. } | FrameError::Malformed(_) | FrameError::UnsupportedVersion(_))) => {
                conn.close(super::server::close_code::BAD_FRAME.into(), e.code().as_bytes());
                return Err(SyncError::Frame(e));
            }
            Err(FrameError::Finished) => return Ok(()),
            Err(e) => {
                return Err(match conn.close_reason() {
                    Some(reason) => SyncError::Connection(reason.to_string()),
                    None => SyncError::Frame(e),
                })
            }
        };
        status.contact();
        // A refusal is no contact worth resetting the backoff for: a refused cell would otherwise
        // come back ten times a second, logging each time on both sides.
        *heard |= !matches!(msg, Message::Refused { .. });
        if !accepted && !matches!(msg, Message::Refused { .. }) {
            accepted = true;
            status.with(|s| {
                s.connected = true;
                s.connections += 1;
                s.last_error = None;
            });
            tracing::info!(cell = %config.cell, server = %config.server, applied, "sync: connected");
        }
        let set = match msg {
            Message::Heartbeat { version } => {
                status.with(|s| s.server_version = Some(version));
                continue;
            }
            Message::Refused { code, message } => return Err(SyncError::Refused { code, message }),
            Message::Snapshot { version, changes, last, digest } => {
                let (v, held, frames, _) = snapshot.get_or_insert_with(|| (version, Vec::new(), 0, digest));
                *frames += 1;
                if *v != version || *frames > SNAPSHOT_FRAMES_MAX {
                    return Err(SyncError::Protocol("snapshot chunks disagree or exceed the limit".into()));
                }
                held.extend(changes);
                if !last {
                    continue;
                }
                let (version, changes, _, digest) = snapshot.take().expect("just inserted");
                ChangeSet { base_version: 0, version, snapshot: true, changes, digest }
            }
            Message::Records { records } => {
                if snapshot.is_some() {
                    return Err(SyncError::Protocol("records in the middle of a snapshot".into()));
                }
                // Records already applied (a resend after reconnecting) are skipped, never reapplied.
                let fresh: Vec<_> = records.into_iter().filter(|r| r.version > applied).collect();
                let Some(first) = fresh.first() else { continue };
                let gapless = fresh.iter().enumerate().all(|(i, r)| r.version == first.version + i as u64);
                if first.version != applied + 1 || !gapless {
                    return Err(SyncError::Gap { applied, got: first.version });
                }
                ChangeSet::from_records(applied, &fresh)
            }
            other @ (Message::Hello { .. }
            | Message::Ack { .. }
            | Message::Lease { .. }
            | Message::LeaseGranted { .. }
            | Message::LeaseRefused { .. }) => {
                conn.close(super::server::close_code::BAD_FRAME.into(), b"PROTOCOL");
                return Err(SyncError::Protocol(format!("the server sent {other:?}")));
            }
        };
        let version = set.version;
        let writer = sink.clone();
        blocking(move || writer.apply(&set)).await?;
        applied = version;
        status.set_applied(applied);
        wire::write_frame(&mut send, &Message::Ack { version }).await.map_err(SyncError::Frame)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_cell_backs_off_to_a_minute_and_a_cut_off_one_to_its_maximum() {
        let max = Duration::from_secs(3);
        let mut refused = Duration::from_millis(100);
        let mut cut_off = refused;
        for _ in 0..20 {
            refused = next_backoff(refused, true, max);
            cut_off = next_backoff(cut_off, false, max);
        }
        assert_eq!((refused, cut_off), (REFUSED_BACKOFF_MAX, max));
    }
}

/// The control plane's answer to a lease request.
#[derive(Debug, Clone, PartialEq)]
pub enum LeaseAnswer {
    /// Confirmed; `raised` when this request recorded a higher epoch.
    Granted { raised: bool },
    /// `SUPERSEDED` (`epoch`, higher, writes) or `DOUBLE_PRIMARY`, `NO_ARBITER`.
    Refused { code: String, message: String, epoch: u64 },
}

/// Asks the control plane to confirm that `writer` writes for this cell at `epoch`: one exchange
/// on a connection of its own, within `config.connect_timeout`.
pub async fn ask_lease(
    endpoint: &quinn::Endpoint,
    config: &ClientConfig,
    epoch: u64,
    writer: &str,
) -> Result<LeaseAnswer, SyncError> {
    let exchange = async {
        let connect_error = |message: String| SyncError::Connect { addr: config.server, message };
        let conn = endpoint
            .connect_with(config.quic.clone(), config.server, "control")
            .map_err(|e| connect_error(e.to_string()))?
            .await
            .map_err(|e| connect_error(e.to_string()))?;
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| SyncError::Connection(e.to_string()))?;
        let ask = Message::Lease { cell: config.cell.clone(), epoch, writer: writer.to_owned() };
        wire::write_frame(&mut send, &ask).await.map_err(SyncError::Frame)?;
        let answer = match wire::read_frame(&mut recv).await.map_err(SyncError::Frame)? {
            Message::LeaseGranted { raised, .. } => LeaseAnswer::Granted { raised },
            Message::LeaseRefused { code, message, epoch } => LeaseAnswer::Refused { code, message, epoch },
            Message::Refused { code, message } => LeaseAnswer::Refused { code, message, epoch: 0 },
            other => return Err(SyncError::Protocol(format!("a lease answered with {other:?}"))),
        };
        conn.close(0u32.into(), b"lease");
        Ok(answer)
    };
    tokio::time::timeout(config.connect_timeout, exchange)
        .await
        .map_err(|_| SyncError::Connect { addr: config.server, message: "no answer in time".into() })?
}
