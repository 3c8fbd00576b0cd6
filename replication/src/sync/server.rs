//! The control plane's end of sync: accepts cells over QUIC, checks who they are, brings each up
//! to date (snapshot or records since its version) and streams every new record.

use super::wire::{self, FrameError, Message};
use super::{ChangeSource, SyncError};
use crate::tls::certificate_names;
use rustls::pki_types::CertificateDer;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::watch;

/// Records read from the log per batch while catching a cell up: big enough that catching up is
/// a few round trips, small enough that one batch is a few frames at most.
pub const SYNC_BATCH_RECORDS_MAX: usize = 256;

/// Connection close codes (QUIC application error codes), stable for logs on both sides.
pub mod close_code {
    pub const SHUTDOWN: u32 = 0;
    pub const REFUSED: u32 = 1;
    pub const BAD_FRAME: u32 = 2;
    pub const INTERNAL: u32 = 3;
}

/// Who records each cell's writer and confirms its lease (global-control).
pub trait Arbiter: Send + Sync + std::fmt::Debug {
    /// Confirms `writer` writing for `cell` at `epoch`: whether that raised the recorded epoch, or
    /// the refusal `(code, message, recorded epoch)`.
    fn confirm(&self, cell: &str, epoch: u64, writer: &str) -> Result<bool, (String, String, u64)>;
}

/// How the server behaves.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Cell ids allowed to sync (from the region files); `None` allows any id its certificate
    /// names (benchmarks with many synthetic subscribers).
    pub allowed_cells: Option<BTreeSet<String>>,
    /// A cell this many records behind gets a snapshot instead: one consistent read is cheaper
    /// than replaying a long history, and the cell applies it in one transaction either way.
    pub snapshot_after_records: u64,
    /// Sent when there is nothing else to say, so a cell knows the control plane is alive (its
    /// "last contact", which decides `STALE`) and how far behind it is.
    pub heartbeat: Duration,
    /// A client must open its stream and say hello within this.
    pub hello_timeout: Duration,
    /// Concurrent connections: five cells with standbys need ten; the benchmark a hundred.
    pub connections_max: usize,
    /// The key of QUIC stateless resets. Kept across restarts (in the control plane's data
    /// directory), a restarted control plane answers a cell's packets for a connection it no
    /// longer has with a reset the cell recognises, so the cell reconnects at once instead of
    /// waiting out the idle timeout. `None`: a random key per process.
    pub reset_key: Option<[u8; 32]>,
    /// Confirms replicated primaries' leases; `None` refuses them (`NO_ARBITER`).
    pub arbiter: Option<Arc<dyn Arbiter>>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            allowed_cells: None,
            snapshot_after_records: 1_000,
            heartbeat: Duration::from_secs(1),
            hello_timeout: Duration::from_secs(5),
            connections_max: 1_024,
            reset_key: None,
            arbiter: None,
        }
    }
}

/// A connected cell, as ops sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct CellSession {
    pub session: u64,
    pub cell: String,
    pub remote: SocketAddr,
    pub connected_at: SystemTime,
    /// The last version sent to it.
    pub sent_version: u64,
    /// The last version it said it applied.
    pub acked_version: u64,
    pub last_ack_at: Option<SystemTime>,
}

/// The sync endpoint and its connected cells.
pub struct SyncServer {
    endpoint: quinn::Endpoint,
    config: ServerConfig,
    sessions: Mutex<BTreeMap<u64, CellSession>>,
}

impl SyncServer {
    /// Binds the UDP socket. Call within a tokio runtime.
    pub fn bind(addr: SocketAddr, quic: quinn::ServerConfig, config: ServerConfig) -> std::io::Result<Arc<SyncServer>> {
        let endpoint = match config.reset_key {
            None => quinn::Endpoint::server(quic, addr)?,
            Some(key) => {
                let reset = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key);
                let runtime = quinn::default_runtime()
                    .ok_or_else(|| std::io::Error::other("no async runtime to bind the QUIC endpoint in"))?;
                let mut endpoint = quinn::EndpointConfig::new(Arc::new(reset));
                // Connection ids carry a keyed hash the endpoint checks before anything else; with
                // a fresh key a restarted control plane would drop the cells' packets as forged
                // rather than reset them. Derive it from the persisted key too.
                let cid_key = u64::from_le_bytes(key[..8].try_into().expect("8 bytes"));
                endpoint.cid_generator(move || Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key)));
                quinn::Endpoint::new(endpoint, Some(quic), std::net::UdpSocket::bind(addr)?, runtime)?
            }
        };
        Ok(Arc::new(SyncServer { endpoint, config, sessions: Mutex::new(BTreeMap::new()) }))
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    /// Connected cells, oldest session first.
    pub fn sessions(&self) -> Vec<CellSession> {
        self.lock_sessions().values().cloned().collect()
    }

    fn lock_sessions(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, CellSession>> {
        // A panic while holding this lock leaves plain data; keep serving.
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn update(&self, session: u64, f: impl FnOnce(&mut CellSession)) {
        if let Some(s) = self.lock_sessions().get_mut(&session) {
            f(s);
        }
    }

    /// Accepts cells until `shutdown`, then closes every connection and waits (briefly) for the
    /// close to reach the peers.
    pub async fn run<S: ChangeSource>(self: Arc<Self>, source: Arc<S>, shutdown: impl Future<Output = ()> + Send) {
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut next_session = 0u64;
        tokio::pin!(shutdown);
        loop {
            let incoming = tokio::select! {
                _ = &mut shutdown => break,
                incoming = self.endpoint.accept() => match incoming {
                    Some(incoming) => incoming,
                    None => break,
                },
            };
            if self.endpoint.open_connections() > self.config.connections_max {
                tracing::warn!(remote = %incoming.remote_address(), "sync: too many connections; refusing");
                incoming.refuse();
                continue;
            }
            next_session += 1;
            let (server, source, stop) = (self.clone(), source.clone(), stop_rx.clone());
            let session = next_session;
            tokio::spawn(async move {
                let remote = incoming.remote_address();
                let conn = match incoming.await {
                    Ok(conn) => conn,
                    Err(e) => {
                        tracing::warn!(%remote, error = %e, "sync: handshake failed");
                        return;
                    }
                };
                let result = server.session(session, &conn, source, stop).await;
                server.lock_sessions().remove(&session);
                match result {
                    Ok(()) => tracing::debug!(%remote, session, "sync: session closed"),
                    // The cell went away (restart, shutdown, network): routine, it reconnects.
                    Err(SyncError::Connection(e)) => {
                        tracing::info!(%remote, session, error = %e, "sync: cell disconnected")
                    }
                    Err(e) => {
                        tracing::warn!(%remote, session, error = %e, "sync: session ended");
                        conn.close(close_code::INTERNAL.into(), b"session ended");
                    }
                }
            });
        }
        let _ = stop_tx.send(true);
        self.endpoint.close(close_code::SHUTDOWN.into(), b"control plane shutting down");
        let _ = tokio::time::timeout(Duration::from_secs(1), self.endpoint.wait_idle()).await;
    }

    /// One lease request: the arbiter's answer, then the stream ends.
    async fn lease(
        &self,
        conn: &quinn::Connection,
        send: &mut quinn::SendStream,
        cell: &str,
        epoch: u64,
        writer: &str,
    ) -> Result<(), SyncError> {
        if let Err(problem) = self.check_identity(conn, cell) {
            return refuse(conn, send, problem.0, &problem.1).await;
        }
        let answer = match &self.config.arbiter {
            None => Message::LeaseRefused {
                code: "NO_ARBITER".into(),
                message: "this control plane confirms no leases".into(),
                epoch: 0,
            },
            Some(arbiter) => match arbiter.confirm(cell, epoch, writer) {
                Ok(raised) => Message::LeaseGranted { epoch, raised },
                Err((code, message, recorded)) => {
                    tracing::warn!(cell, epoch, writer, %code, %message, "sync: lease refused");
                    Message::LeaseRefused { code, message, epoch: recorded }
                }
            },
        };
        wire::write_frame(send, &answer).await.map_err(SyncError::Frame)?;
        let _ = send.finish();
        let _ = tokio::time::timeout(Duration::from_millis(500), send.stopped()).await;
        Ok(())
    }

    async fn session<S: ChangeSource>(
        &self,
        session: u64,
        conn: &quinn::Connection,
        source: Arc<S>,
        mut stop: watch::Receiver<bool>,
    ) -> Result<(), SyncError> {
        let hello_timeout = self.config.hello_timeout;
        let (mut send, mut recv) = tokio::time::timeout(hello_timeout, conn.accept_bi())
            .await
            .map_err(|_| SyncError::Protocol("no stream opened in time".into()))?
            .map_err(|e| SyncError::Connection(e.to_string()))?;
        let hello = tokio::time::timeout(hello_timeout, wire::read_frame(&mut recv))
            .await
            .map_err(|_| SyncError::Protocol("no hello in time".into()))?;
        let (cell, applied, applied_digest) = match hello {
            Ok(Message::Hello { cell, applied_version, applied_digest }) => (cell, applied_version, applied_digest),
            Ok(Message::Lease { cell, epoch, writer }) => {
                return self.lease(conn, &mut send, &cell, epoch, &writer).await
            }
            Ok(other) => {
                return refuse(conn, &mut send, "PROTOCOL", &format!("expected hello, got {}", kind(&other))).await;
            }
            Err(e) => return bad_frame(conn, &e),
        };
        if let Err(problem) = self.check_identity(conn, &cell) {
            return refuse(conn, &mut send, problem.0, &problem.1).await;
        }
        tracing::info!(cell = %cell, remote = %conn.remote_address(), applied, session, "sync: cell connected");
        self.lock_sessions().insert(
            session,
            CellSession {
                session,
                cell: cell.clone(),
                remote: conn.remote_address(),
                connected_at: SystemTime::now(),
                sent_version: applied,
                acked_version: applied,
                last_ack_at: None,
            },
        );
        // Subscribe before reading the current version, so no commit can fall between the two.
        let mut versions = source.subscribe();
        let mut latest = source.current_version();
        let mut sent = applied;
        let mut frames = Vec::new();
        // Another history at the cell's version: records from here would not follow its copy.
        let diverged = match (&applied_digest, applied > 0 && applied <= latest) {
            (Some(theirs), true) => digest_at(&source, applied).await?.as_deref() != Some(theirs.as_str()),
            _ => false,
        };
        if diverged {
            tracing::warn!(cell = %cell, applied, "sync: the cell's copy follows another history; sending a snapshot");
        }
        if diverged || applied == 0 || applied > latest || latest - applied > self.config.snapshot_after_records {
            let reader = source.clone();
            let (version, changes) = tokio::task::spawn_blocking(move || reader.snapshot())
                .await
                .map_err(|e| SyncError::Protocol(e.to_string()))?
                .map_err(SyncError::Protocol)?;
            let digest = if version == 0 { None } else { digest_at(&source, version).await? };
            wire::encode_snapshot(version, digest.as_deref(), &changes, &mut frames).map_err(SyncError::Frame)?;
            write_all(&mut send, &mut frames).await?;
            sent = version;
            latest = latest.max(version);
            self.update(session, |s| s.sent_version = sent);
        }
        // Acks are read on their own task, so a slow reader never delays sending, and reach this
        // loop through a channel to update the session.
        let (ack_tx, mut ack_rx) = tokio::sync::mpsc::channel::<u64>(64);
        let mut acks = {
            let conn = conn.clone();
            let cell = cell.clone();
            tokio::spawn(async move { read_acks(recv, conn, cell, ack_tx).await })
        };
        let mut heartbeat = tokio::time::interval(self.config.heartbeat);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            while sent < latest {
                let reader = source.clone();
                let after = sent;
                let records = tokio::task::spawn_blocking(move || reader.records_after(after, SYNC_BATCH_RECORDS_MAX))
                    .await
                    .map_err(|e| SyncError::Protocol(e.to_string()))?
                    .map_err(SyncError::Protocol)?;
                let Some(last) = records.last().map(|r| r.version) else { break };
                if records.first().map(|r| r.version) != Some(sent + 1) {
                    return Err(SyncError::Protocol(format!("the log has a gap after version {sent}")));
                }
                wire::encode_records(&records, &mut frames).map_err(SyncError::Frame)?;
                write_all(&mut send, &mut frames).await?;
                sent = last;
                self.update(session, |s| s.sent_version = sent);
            }
            tokio::select! {
                changed = versions.changed() => {
                    if changed.is_err() {
                        return Ok(()); // the source is gone: shutting down
                    }
                    latest = *versions.borrow_and_update();
                }
                _ = heartbeat.tick() => {
                    let frame = wire::encode(&Message::Heartbeat { version: latest }).map_err(SyncError::Frame)?;
                    send.write_all(&frame).await.map_err(|e| SyncError::Connection(e.to_string()))?;
                }
                ended = &mut acks => {
                    return match ended {
                        Ok(Ok(())) => Ok(()),
                        Ok(Err(e)) => Err(e),
                        Err(e) => Err(SyncError::Protocol(e.to_string())),
                    };
                }
                Some(version) = ack_rx.recv() => {
                    self.update(session, |s| { s.acked_version = version; s.last_ack_at = Some(SystemTime::now()); });
                }
                _ = stop.changed() => {
                    conn.close(close_code::SHUTDOWN.into(), b"control plane shutting down");
                    return Ok(());
                }
            }
        }
    }

    /// The claimed cell id must be well-formed, allowed, and named by the client's certificate.
    fn check_identity(&self, conn: &quinn::Connection, cell: &str) -> Result<(), (&'static str, String)> {
        let well_formed = !cell.is_empty()
            && cell.len() <= 16
            && cell.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            && cell != "control"
            && cell != "router";
        if !well_formed {
            return Err(("UNKNOWN_CELL", format!("`{cell}` is not a cell id")));
        }
        if self.config.allowed_cells.as_ref().is_some_and(|allowed| !allowed.contains(cell)) {
            return Err(("UNKNOWN_CELL", format!("no region file names cell `{cell}`")));
        }
        let certs = conn.peer_identity().and_then(|any| any.downcast::<Vec<CertificateDer<'static>>>().ok());
        let named = certs.as_ref().and_then(|c| c.first()).is_some_and(|cert| certificate_names(cert, cell));
        if !named {
            return Err(("CERTIFICATE_MISMATCH", format!("the client certificate does not name cell `{cell}`")));
        }
        Ok(())
    }
}

fn kind(msg: &Message) -> &'static str {
    match msg {
        Message::Lease { .. } => "lease",
        Message::LeaseGranted { .. } => "lease granted",
        Message::LeaseRefused { .. } => "lease refused",
        Message::Hello { .. } => "hello",
        Message::Snapshot { .. } => "snapshot",
        Message::Records { .. } => "records",
        Message::Ack { .. } => "ack",
        Message::Heartbeat { .. } => "heartbeat",
        Message::Refused { .. } => "refused",
    }
}

async fn write_all(send: &mut quinn::SendStream, frames: &mut Vec<Vec<u8>>) -> Result<(), SyncError> {
    for frame in frames.drain(..) {
        send.write_all(&frame).await.map_err(|e| SyncError::Connection(e.to_string()))?;
    }
    Ok(())
}

async fn refuse(
    conn: &quinn::Connection,
    send: &mut quinn::SendStream,
    code: &str,
    message: &str,
) -> Result<(), SyncError> {
    tracing::warn!(remote = %conn.remote_address(), code, message, "sync: refusing client");
    if let Ok(frame) = wire::encode(&Message::Refused { code: code.to_owned(), message: message.to_owned() }) {
        let _ = send.write_all(&frame).await;
        let _ = send.finish();
        // Give the refusal a moment to leave before the close overtakes it.
        let _ = tokio::time::timeout(Duration::from_millis(500), send.stopped()).await;
    }
    conn.close(close_code::REFUSED.into(), code.as_bytes());
    Ok(())
}

fn bad_frame(conn: &quinn::Connection, e: &FrameError) -> Result<(), SyncError> {
    conn.close(close_code::BAD_FRAME.into(), e.code().as_bytes());
    Err(SyncError::Frame(FrameError::Malformed(e.to_string())))
}

/// Reads the client's acks until it finishes; anything else, or a bad frame, ends the session.
async fn read_acks(
    mut recv: quinn::RecvStream,
    conn: quinn::Connection,
    cell: String,
    acks: tokio::sync::mpsc::Sender<u64>,
) -> Result<(), SyncError> {
    loop {
        match wire::read_frame(&mut recv).await {
            Ok(Message::Ack { version }) => {
                tracing::trace!(cell = %cell, version, "sync: ack");
                if acks.send(version).await.is_err() {
                    return Ok(()); // the session is over
                }
            }
            Ok(other) => {
                conn.close(close_code::BAD_FRAME.into(), b"PROTOCOL");
                return Err(SyncError::Protocol(format!("cell {cell} sent {} after hello", kind(&other))));
            }
            Err(FrameError::Finished) => return Ok(()),
            Err(e @ FrameError::Stream(_)) => return Err(SyncError::Connection(e.to_string())),
            Err(e) => return bad_frame(&conn, &e),
        }
    }
}

/// The digest of the record at `version`, if the log has it.
async fn digest_at<S: ChangeSource>(source: &Arc<S>, version: u64) -> Result<Option<String>, SyncError> {
    let reader = source.clone();
    let records = tokio::task::spawn_blocking(move || reader.records_after(version.saturating_sub(1), 1))
        .await
        .map_err(|e| SyncError::Protocol(e.to_string()))?
        .map_err(SyncError::Protocol)?;
    Ok(records.first().filter(|r| r.version == version).map(super::record_digest))
}
