//! Log shipping over QUIC (DESIGN.md section 8): a jurisdiction's standby follows its primary's
//! commits, in commit order, and applies each atomically to its own store.
//!
//! - **Identity.** Mutual TLS from the platform CA both ways; a primary accepts a standby only if
//!   its certificate names the primary's own cell id (the same jurisdiction), and only from a
//!   site its region file allows (data residency: personal data and money never leave it).
//! - **Resume.** The standby says the last version it holds durably; the primary answers with
//!   the commits since, or, when its log no longer reaches back that far (or the standby holds
//!   nothing), a consistent snapshot, compressed and sent a chunk at a time, then the commits
//!   from the snapshot's version. Each frame names its commit's version.
//! - **Durability.** The standby acks the last version it holds durably; a primary in `sync`
//!   mode acknowledges a write only once a standby has acked its version.
//! - **Epochs.** Each side says its epoch. A peer with a higher epoch was promoted after this one
//!   was deposed: this side is fenced, and is told so (`Refused {code: FENCED}`), so a deposed
//!   primary that comes back learns it from its old standby and never commits money again.
//! - **Lease.** A standby answers each heartbeat with an ack naming the heartbeat's time: that
//!   confirms the primary's epoch, which renews its [`Lease`](crate::lease::Lease).
//!
//! ```text
//! standby (or a restarted primary checking)      primary
//! Hello {cell, site, role, epoch, appliedVersion} ->
//!                                               <-  Snapshot {version, chunk, last}...   (when the log does not reach back)
//!                                               <-  Commits [{version, writes, chainHead}...] (the commits since, then each new one)
//! Ack {version, lease?}                         ->  (once durable; lease: a heartbeat's `at`, answered)
//!                                               <-  Heartbeat {version, epoch, at}       (every 200 ms)
//!                                               <-  Refused {code, message, epoch}       (then the connection closes)
//! ```

use crate::sync::server::close_code;
use crate::sync::wire::{encode_as, read_frame_as, FrameError};
use crate::tls::certificate_names;
use rustls::pki_types::CertificateDer;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::watch;

/// Version of the log-shipping protocol; bump it with any change to [`Message`].
pub const PROTOCOL_VERSION: u16 = 3;

/// How often a primary tells its standbys its latest version (and asks them to confirm its
/// lease): the longest a standby may not know how far behind it is.
pub const HEARTBEAT: Duration = Duration::from_millis(200);

/// Commits per `Commits` frame, at most, and the bytes read from the log per frame.
const FRAME_COMMIT_BYTES: usize = 512 * 1024;
/// Bytes of uncompressed pairs per snapshot chunk.
const SNAPSHOT_CHUNK_BYTES: usize = 512 * 1024;

/// Which side says hello.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PeerRole {
    /// A standby asking to follow.
    Standby,
    /// A primary starting up, asking whether it is still the writer.
    Primary,
}

/// One commit: its version and its write set (the store's encoding).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Commit {
    pub version: u64,
    #[serde(with = "serde_bytes")]
    pub writes: Vec<u8>,
    /// The audit chain's head after this commit (`seq:hash`), when it moved the chain: the
    /// standby checks its own chain against it once applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain_head: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum Message {
    #[serde(rename_all = "camelCase")]
    Hello { cell: String, site: String, role: PeerRole, epoch: u64, applied_version: u64 },
    /// A chunk of the state at `version`: LZ4 of the MessagePack pairs.
    #[serde(rename_all = "camelCase")]
    Snapshot {
        version: u64,
        #[serde(with = "serde_bytes")]
        chunk: Vec<u8>,
        last: bool,
    },
    #[serde(rename_all = "camelCase")]
    Commits { commits: Vec<Commit> },
    #[serde(rename_all = "camelCase")]
    Ack {
        version: u64,
        /// The `at` of the heartbeat this answers: the standby confirms the primary's epoch.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        lease: Option<u64>,
    },
    /// `at`: when it was sent, on the primary's lease clock.
    #[serde(rename_all = "camelCase")]
    Heartbeat { version: u64, epoch: u64, at: u64 },
    #[serde(rename_all = "camelCase")]
    Refused { code: String, message: String, epoch: u64 },
}

/// Largest frame: one commit may reach the store's transaction limit (10 MB), and a frame carries
/// at least one whole commit.
const FRAME_BYTES_MAX: usize = 16 * 1024 * 1024;

fn encode(msg: &Message) -> Result<Vec<u8>, FrameError> {
    encode_as(PROTOCOL_VERSION, FRAME_BYTES_MAX, msg)
}

async fn read(recv: &mut quinn::RecvStream) -> Result<Message, FrameError> {
    read_frame_as(PROTOCOL_VERSION, FRAME_BYTES_MAX, recv).await
}

async fn write(send: &mut quinn::SendStream, msg: &Message) -> Result<(), ShipError> {
    let frame = encode(msg).map_err(ShipError::Frame)?;
    send.write_all(&frame).await.map_err(|e| ShipError::Connection(e.to_string()))
}

/// Keys and values of a snapshot chunk, in key order.
pub type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// Pairs of a snapshot chunk, compressed.
pub fn pack_chunk(pairs: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    use serde_bytes::Bytes;
    // Keys and values as MessagePack binary, not arrays of integers.
    let wire: Vec<(&Bytes, &Bytes)> = pairs.iter().map(|(k, v)| (Bytes::new(k), Bytes::new(v))).collect();
    lz4_flex::compress_prepend_size(&rmp_serde::to_vec(&wire).expect("pairs encode"))
}

pub fn unpack_chunk(chunk: &[u8]) -> Result<Pairs, ShipError> {
    use serde_bytes::ByteBuf;
    let bytes = lz4_flex::decompress_size_prepended(chunk).map_err(|e| ShipError::Protocol(format!("chunk: {e}")))?;
    let wire: Vec<(ByteBuf, ByteBuf)> =
        rmp_serde::from_slice(&bytes).map_err(|e| ShipError::Protocol(format!("chunk: {e}")))?;
    Ok(wire.into_iter().map(|(k, v)| (k.into_vec(), v.into_vec())).collect())
}

#[derive(Debug, thiserror::Error)]
pub enum ShipError {
    #[error("connect to {addr}: {message}")]
    Connect { addr: SocketAddr, message: String },
    #[error("connection: {0}")]
    Connection(String),
    #[error("frame: {0}")]
    Frame(#[source] FrameError),
    #[error("refused: {code}: {message}")]
    Refused { code: String, message: String, epoch: u64 },
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("store: {0}")]
    Store(String),
}

/// The primary's store, as the shipper reads it. Blocking (called on the blocking pool), but for
/// [`LogSource::logged_after`], which reads the log in memory and is called inline.
pub trait LogSource: Send + Sync + 'static {
    /// The latest version that may be shipped (on the primary's disk).
    fn committed_version(&self) -> u64;
    fn epoch(&self) -> u64;
    /// The oldest version the log holds (`None`: empty).
    fn oldest_logged(&self) -> Result<Option<u64>, String>;
    /// Logged commits after `version`, oldest first, about `max_bytes` of them (at least one).
    /// From memory: cheap enough for the runtime's threads (a hop to the blocking pool per frame
    /// cost more than the read).
    fn logged_after(&self, version: u64, max_bytes: usize) -> Result<Vec<Commit>, String>;
    /// A consistent copy of the state, chunk by chunk; its version.
    fn snapshot(&self, chunk_bytes: usize, f: &mut dyn FnMut(u64, Pairs) -> Result<(), String>) -> Result<u64, String>;
    /// Wakes at each commit.
    fn subscribe(&self) -> watch::Receiver<u64>;
    /// A peer with a higher epoch exists: this primary must never commit again.
    fn fence(&self, peer_epoch: u64);
}

/// The standby's store. Blocking; called on the blocking pool, one call at a time.
pub trait LogSink: Send + Sync + 'static {
    fn applied_version(&self) -> Result<u64, String>;
    fn epoch(&self) -> u64;
    /// Applies `commit` atomically (durable at the next [`LogSink::sync`]); refuses it when the
    /// audit chain's head it then holds is not the one the primary said.
    fn apply(&self, commit: &Commit) -> Result<(), String>;
    /// Makes every commit applied so far durable (before they are acked).
    fn sync(&self) -> Result<(), String>;
    fn begin_snapshot(&self) -> Result<(), String>;
    fn load_chunk(&self, pairs: &[(Vec<u8>, Vec<u8>)]) -> Result<(), String>;
    fn finish_snapshot(&self, version: u64) -> Result<(), String>;
    /// The primary holds a higher epoch: persist it (this store follows that writer now).
    fn adopt_epoch(&self, epoch: u64) -> Result<(), String>;
}

/// A connected standby, as ops and `/metrics` see it.
#[derive(Debug, Clone, PartialEq)]
pub struct StandbySession {
    pub site: String,
    pub remote: SocketAddr,
    pub connected_at: SystemTime,
    pub sent_version: u64,
    pub acked_version: u64,
    pub last_ack_at: Option<SystemTime>,
    /// It has acked everything there was at some point (it follows, rather than catches up).
    pub caught_up: bool,
}

/// How the primary's shipper behaves.
#[derive(Debug, Clone)]
pub struct ShipperConfig {
    /// This cell's id: a standby's certificate must name it.
    pub cell: String,
    /// Sites the region file allows standbys at (`[hosting] standby_sites`); empty allows none.
    pub allowed_sites: Vec<String>,
    /// Where the rule comes from, for the refusal.
    pub residency_source: String,
    pub heartbeat: Duration,
    /// The primary's lease, which each standby's answer to a heartbeat renews.
    pub lease: Arc<crate::lease::Lease>,
}

/// The primary's end: accepts standbys and ships its log to each.
pub struct Shipper {
    endpoint: quinn::Endpoint,
    config: ShipperConfig,
    sessions: Mutex<BTreeMap<u64, StandbySession>>,
    /// The highest version any standby acked, for `sync` durability.
    acked: watch::Sender<u64>,
    /// Standbys following now (acked at least once, still connected).
    connected: watch::Sender<usize>,
}

impl Shipper {
    pub fn bind(addr: SocketAddr, quic: quinn::ServerConfig, config: ShipperConfig) -> std::io::Result<Arc<Shipper>> {
        let endpoint = quinn::Endpoint::server(quic, addr)?;
        Ok(Arc::new(Shipper {
            endpoint,
            config,
            sessions: Mutex::new(BTreeMap::new()),
            acked: watch::channel(0).0,
            connected: watch::channel(0).0,
        }))
    }

    /// The lease its standbys' answers renew.
    pub fn lease(&self) -> Arc<crate::lease::Lease> {
        self.config.lease.clone()
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    pub fn sessions(&self) -> Vec<StandbySession> {
        self.lock().values().cloned().collect()
    }

    /// The highest version a standby holds durably, as it changes.
    pub fn acked(&self) -> watch::Receiver<u64> {
        self.acked.subscribe()
    }

    /// How many standbys follow now, as it changes.
    pub fn following(&self) -> watch::Receiver<usize> {
        self.connected.subscribe()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, StandbySession>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn update(&self, id: u64, f: impl FnOnce(&mut StandbySession)) {
        if let Some(s) = self.lock().get_mut(&id) {
            f(s);
        }
    }

    /// Accepts standbys until `shutdown`.
    pub async fn run<S: LogSource>(self: Arc<Self>, source: Arc<S>, shutdown: impl Future<Output = ()> + Send) {
        tokio::pin!(shutdown);
        let mut next = 0u64;
        loop {
            let incoming = tokio::select! {
                _ = &mut shutdown => break,
                incoming = self.endpoint.accept() => match incoming { Some(i) => i, None => break },
            };
            next += 1;
            let (shipper, source, id) = (self.clone(), source.clone(), next);
            tokio::spawn(async move {
                let remote = incoming.remote_address();
                let conn = match incoming.await {
                    Ok(conn) => conn,
                    Err(e) => return tracing::warn!(%remote, error = %e, "shipping: handshake failed"),
                };
                let result = shipper.session(id, &conn, source).await;
                if shipper.lock().remove(&id).is_some_and(|s| s.caught_up) {
                    shipper.connected.send_modify(|n| *n -= 1);
                }
                match result {
                    Ok(()) | Err(ShipError::Connection(_)) => tracing::info!(%remote, "shipping: standby disconnected"),
                    Err(e) => {
                        tracing::warn!(%remote, error = %e, "shipping: session ended");
                        conn.close(close_code::INTERNAL.into(), b"session ended");
                    }
                }
            });
        }
        self.endpoint.close(close_code::SHUTDOWN.into(), b"primary shutting down");
        let _ = tokio::time::timeout(Duration::from_secs(1), self.endpoint.wait_idle()).await;
    }

    async fn session<S: LogSource>(&self, id: u64, conn: &quinn::Connection, source: Arc<S>) -> Result<(), ShipError> {
        let (mut send, mut recv) = tokio::time::timeout(Duration::from_secs(5), conn.accept_bi())
            .await
            .map_err(|_| ShipError::Protocol("no stream opened in time".into()))?
            .map_err(|e| ShipError::Connection(e.to_string()))?;
        let hello = tokio::time::timeout(Duration::from_secs(5), read(&mut recv))
            .await
            .map_err(|_| ShipError::Protocol("no hello in time".into()))?
            .map_err(ShipError::Frame)?;
        let Message::Hello { cell, site, role, epoch, applied_version } = hello else {
            return refuse(conn, &mut send, "PROTOCOL", "expected hello", source.epoch()).await;
        };
        let certs = conn.peer_identity().and_then(|any| any.downcast::<Vec<CertificateDer<'static>>>().ok());
        let named = certs.as_ref().and_then(|c| c.first()).is_some_and(|c| certificate_names(c, &self.config.cell));
        if cell != self.config.cell || !named {
            let message = format!("this is cell `{}`: only its own standbys follow it", self.config.cell);
            return refuse(conn, &mut send, "CERTIFICATE_MISMATCH", &message, source.epoch()).await;
        }
        let ours = source.epoch();
        if epoch > ours {
            // The peer was promoted after this primary: it is the writer now.
            fence(&source, epoch).await;
            let message = format!("this primary holds epoch {ours} and the peer {epoch}: it is fenced");
            return refuse(conn, &mut send, "FENCED", &message, ours).await;
        }
        if role == PeerRole::Primary {
            let (code, message) = if epoch == ours {
                ("DOUBLE_PRIMARY", format!("both sides claim epoch {ours}: neither may write until ops re-seeds one"))
            } else {
                ("FENCED", format!("the writer holds epoch {ours}; epoch {epoch} was deposed"))
            };
            if epoch == ours {
                fence(&source, ours).await;
            }
            return refuse(conn, &mut send, code, &message, ours).await;
        }
        if !self.config.allowed_sites.contains(&site) {
            let message = format!(
                "site `{site}` is not one where {}'s standbys may run ({}; allowed: {})",
                self.config.cell,
                self.config.residency_source,
                self.config.allowed_sites.join(", ")
            );
            return refuse(conn, &mut send, "RESIDENCY", &message, ours).await;
        }
        tracing::info!(%site, applied_version, "shipping: standby connected");
        self.lock().insert(
            id,
            StandbySession {
                site,
                remote: conn.remote_address(),
                connected_at: SystemTime::now(),
                sent_version: applied_version,
                acked_version: applied_version,
                last_ack_at: None,
                caught_up: false,
            },
        );
        let mut commits = source.subscribe();
        let mut latest = source.committed_version();
        let mut sent = applied_version;
        let reader = source.clone();
        let oldest = blocking(move || reader.oldest_logged()).await?;
        // The log reaches back to the standby's version when it holds the next commit (or the
        // standby is already at the latest).
        // A standby from an older epoch (a deposed primary being re-seeded) may hold commits this
        // writer never had: it starts again from a snapshot whatever its version.
        // A standby ahead of this primary holds commits it does not (a primary that lost its
        // disk's tail): a snapshot too.
        let reaches = applied_version > 0
            && epoch == ours
            && applied_version <= latest
            && (applied_version == latest || oldest.is_some_and(|o| o <= applied_version + 1));
        if !reaches {
            sent = self.send_snapshot(source.clone(), &mut send).await?;
            self.update(id, |s| s.sent_version = sent);
        }
        let (ack_tx, mut ack_rx) = tokio::sync::mpsc::channel::<(u64, Option<u64>)>(64);
        let mut acks = tokio::spawn(read_acks(recv, ack_tx));
        let mut heartbeat = tokio::time::interval(self.config.heartbeat);
        loop {
            while sent < latest {
                let batch = source.logged_after(sent, FRAME_COMMIT_BYTES).map_err(ShipError::Store)?;
                if batch.first().map(|c| c.version) != Some(sent + 1) {
                    // Trimmed meanwhile: the standby starts again from a snapshot.
                    return Err(ShipError::Protocol(format!("the log no longer holds version {}", sent + 1)));
                }
                sent = batch.last().map_or(sent, |c| c.version);
                write(&mut send, &Message::Commits { commits: batch }).await?;
                self.update(id, |s| s.sent_version = sent);
            }
            tokio::select! {
                changed = commits.changed() => {
                    if changed.is_err() { return Ok(()); }
                    latest = *commits.borrow_and_update();
                }
                _ = heartbeat.tick() => {
                    let at = self.config.lease.now();
                    write(&mut send, &Message::Heartbeat { version: latest, epoch: source.epoch(), at }).await?;
                }
                Some((version, lease)) = ack_rx.recv() => {
                    if let Some(asked) = lease {
                        self.config.lease.confirmed(asked);
                    }
                    // Counted as following (which `sync` waits for) once it has caught up, not
                    // while it works through a backlog.
                    let caught_up = version >= latest && self.lock().get_mut(&id).is_some_and(|s| !std::mem::replace(&mut s.caught_up, true));
                    if caught_up {
                        self.connected.send_modify(|n| *n += 1);
                    }
                    self.update(id, |s| { s.acked_version = version; s.last_ack_at = Some(SystemTime::now()); });
                    self.acked.send_if_modified(|a| if version > *a { *a = version; true } else { false });
                }
                ended = &mut acks => {
                    return ended.map_err(|e| ShipError::Protocol(e.to_string()))?;
                }
            }
        }
    }

    /// Streams a consistent snapshot, a compressed chunk at a time: the reader blocks while two
    /// chunks wait to be sent, so memory holds a few chunks whatever the store's size.
    async fn send_snapshot<S: LogSource>(
        &self,
        source: Arc<S>,
        send: &mut quinn::SendStream,
    ) -> Result<u64, ShipError> {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<(u64, Vec<u8>)>(2);
        let reader = tokio::task::spawn_blocking(move || {
            let mut f = |version: u64, pairs: Pairs| {
                tx.blocking_send((version, pack_chunk(&pairs))).map_err(|_| "the standby went away".to_owned())
            };
            source.snapshot(SNAPSHOT_CHUNK_BYTES, &mut f)
        });
        let mut pending: Option<(u64, Vec<u8>)> = None;
        while let Some(chunk) = rx.recv().await {
            if let Some((version, chunk)) = pending.replace(chunk) {
                write(send, &Message::Snapshot { version, chunk, last: false }).await?;
            }
        }
        let version = reader.await.map_err(|e| ShipError::Store(e.to_string()))?.map_err(ShipError::Store)?;
        let (_, chunk) = pending.unwrap_or((version, pack_chunk(&[])));
        write(send, &Message::Snapshot { version, chunk, last: true }).await?;
        tracing::info!(version, "shipping: snapshot sent");
        Ok(version)
    }
}

/// Fences `source` (a durable write: off the runtime's threads).
async fn fence<S: LogSource>(source: &Arc<S>, epoch: u64) {
    let source = source.clone();
    if tokio::task::spawn_blocking(move || source.fence(epoch)).await.is_err() {
        tracing::error!("shipping: fencing this store failed");
    }
}

async fn read_acks(
    mut recv: quinn::RecvStream,
    acks: tokio::sync::mpsc::Sender<(u64, Option<u64>)>,
) -> Result<(), ShipError> {
    loop {
        match read(&mut recv).await {
            Ok(Message::Ack { version, lease }) => {
                if acks.send((version, lease)).await.is_err() {
                    return Ok(());
                }
            }
            Ok(_) => return Err(ShipError::Protocol("a standby may only ack".into())),
            Err(FrameError::Finished) => return Ok(()),
            Err(e @ FrameError::Stream(_)) => return Err(ShipError::Connection(e.to_string())),
            Err(e) => return Err(ShipError::Frame(e)),
        }
    }
}

async fn refuse(
    conn: &quinn::Connection,
    send: &mut quinn::SendStream,
    code: &str,
    message: &str,
    epoch: u64,
) -> Result<(), ShipError> {
    tracing::warn!(remote = %conn.remote_address(), code, message, "shipping: refusing");
    let _ = write(send, &Message::Refused { code: code.into(), message: message.into(), epoch }).await;
    let _ = send.finish();
    let _ = tokio::time::timeout(Duration::from_millis(500), send.stopped()).await;
    conn.close(close_code::REFUSED.into(), code.as_bytes());
    Ok(())
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, String> + Send + 'static) -> Result<T, ShipError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| ShipError::Store(e.to_string()))?.map_err(ShipError::Store)
}

/// Where a standby connects and as whom.
#[derive(Clone)]
pub struct FollowConfig {
    pub cell: String,
    pub site: String,
    pub primary: SocketAddr,
    /// From [`crate::tls::quic_client_config`] with `peer` = the cell id.
    pub quic: quinn::ClientConfig,
}

/// What a standby knows of its primary, for `/metrics` and readiness.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FollowStatus {
    pub connected: bool,
    pub applied_version: u64,
    /// The primary's latest version, as its last frame said.
    pub primary_version: u64,
    pub primary_epoch: u64,
    /// When the primary last said anything.
    pub last_contact: Option<SystemTime>,
    /// When the standby last held every version the primary had told it of.
    pub caught_up_at: Option<SystemTime>,
    pub last_error: Option<String>,
}

/// Asks the peer at `config.primary` whether this store, as a primary at `epoch`, may write:
/// `Ok(None)` when the peer holds no higher epoch (or cannot be reached: a primary that cannot
/// reach its standby keeps writing in `async` mode), `Ok(Some(reason))` when it must not.
pub async fn check_writer(config: &FollowConfig, epoch: u64) -> Option<(String, u64)> {
    let endpoint = quinn::Endpoint::client((std::net::Ipv4Addr::UNSPECIFIED, 0).into()).ok()?;
    let outcome = async {
        let conn = endpoint.connect_with(config.quic.clone(), config.primary, &config.cell).ok()?.await.ok()?;
        let (mut send, mut recv) = conn.open_bi().await.ok()?;
        let hello = Message::Hello {
            cell: config.cell.clone(),
            site: config.site.clone(),
            role: PeerRole::Primary,
            epoch,
            applied_version: 0,
        };
        write(&mut send, &hello).await.ok()?;
        match read(&mut recv).await.ok()? {
            // The peer writes under a higher epoch: this side was deposed. (A peer with a lower
            // one answers FENCED too, about itself: it was the deposed one.)
            Message::Refused { code, message, epoch: theirs } if code == "FENCED" && theirs > epoch => {
                Some((format!("{code}: {message}"), theirs))
            }
            Message::Refused { code, message, epoch: theirs } if code == "DOUBLE_PRIMARY" => {
                Some((format!("{code}: {message}"), theirs))
            }
            _ => None,
        }
    };
    let answer = tokio::time::timeout(Duration::from_secs(3), outcome).await.ok().flatten();
    endpoint.close(0u32.into(), b"checked");
    answer
}

/// Follows the primary until `shutdown`, reconnecting after any failure.
pub async fn follow<S: LogSink>(
    config: FollowConfig,
    sink: Arc<S>,
    status: watch::Sender<FollowStatus>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(100);
    let endpoint = match quinn::Endpoint::client((std::net::Ipv4Addr::UNSPECIFIED, 0).into()) {
        Ok(ep) => ep,
        Err(e) => return tracing::error!(error = %e, "shipping: no UDP socket for the standby"),
    };
    loop {
        let result = tokio::select! {
            _ = shutdown.changed() => break,
            r = follow_once(&endpoint, &config, sink.clone(), &status) => r,
        };
        status.send_modify(|s| {
            s.connected = false;
            if let Err(e) = &result {
                s.last_error = Some(e.to_string());
            }
        });
        match &result {
            Err(ShipError::Refused { code, message, .. }) => {
                tracing::error!(%code, %message, "shipping: refused by the primary")
            }
            Err(e) => tracing::warn!(error = %e, "shipping: following ended"),
            Ok(()) => tracing::info!("shipping: the primary closed the stream"),
        }
        tokio::select! {
            _ = shutdown.changed() => break,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
    endpoint.close(0u32.into(), b"standby shutting down");
}

async fn follow_once<S: LogSink>(
    endpoint: &quinn::Endpoint,
    config: &FollowConfig,
    sink: Arc<S>,
    status: &watch::Sender<FollowStatus>,
) -> Result<(), ShipError> {
    let connect = |message: String| ShipError::Connect { addr: config.primary, message };
    let connecting =
        endpoint.connect_with(config.quic.clone(), config.primary, &config.cell).map_err(|e| connect(e.to_string()))?;
    // Short: a primary not listening yet (still opening its store) answers nothing at all, and
    // the standby should be following within a moment of it.
    let conn = tokio::time::timeout(Duration::from_secs(1), connecting)
        .await
        .map_err(|_| connect("handshake timed out".into()))?
        .map_err(|e| connect(e.to_string()))?;
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| ShipError::Connection(e.to_string()))?;
    // What it says it holds must be on its disk: a session that ended between an apply and its
    // sync (the sync failed, the connection dropped) left commits applied and not yet durable.
    let reader = sink.clone();
    let mut applied = blocking(move || {
        reader.sync()?;
        reader.applied_version()
    })
    .await?;
    let hello = Message::Hello {
        cell: config.cell.clone(),
        site: config.site.clone(),
        role: PeerRole::Standby,
        epoch: sink.epoch(),
        applied_version: applied,
    };
    write(&mut send, &hello).await?;
    // Frames are read as they come, while the last ones are applied: commits that arrived
    // meanwhile are applied together, with one sync and one ack.
    let (frames_in, mut frames) = tokio::sync::mpsc::channel::<Result<Message, FrameError>>(FRAMES_AHEAD);
    // Stopped when this session ends, by any return.
    let _reader = Reader(tokio::spawn(async move {
        loop {
            let frame = read(&mut recv).await;
            let ended = frame.is_err();
            if frames_in.send(frame).await.is_err() || ended {
                return;
            }
        }
    }));
    let mut loading: Option<u64> = None;
    let mut held: Option<Result<Message, FrameError>> = None;
    loop {
        let frame = match held.take() {
            Some(frame) => frame,
            None => frames.recv().await.unwrap_or_else(|| Err(FrameError::Stream("the frame reader stopped".into()))),
        };
        let msg = match frame {
            Ok(msg) => msg,
            Err(FrameError::Finished) => return Ok(()),
            Err(e) => return Err(ShipError::Connection(e.to_string())),
        };
        let now = SystemTime::now();
        status.send_modify(|s| {
            s.connected = true;
            s.last_contact = Some(now);
            s.last_error = None;
        });
        match msg {
            Message::Refused { code, message, epoch } => return Err(ShipError::Refused { code, message, epoch }),
            Message::Heartbeat { version, epoch, at } => {
                if epoch > sink.epoch() {
                    let writer = sink.clone();
                    blocking(move || writer.adopt_epoch(epoch)).await?;
                }
                // Following this primary at its epoch: its lease is confirmed.
                write(&mut send, &Message::Ack { version: applied, lease: Some(at) }).await?;
                status.send_modify(|s| {
                    s.primary_version = version;
                    s.primary_epoch = epoch;
                    if applied >= version {
                        s.caught_up_at = Some(now);
                    }
                })
            }
            Message::Snapshot { version, chunk, last } => {
                let pairs = unpack_chunk(&chunk)?;
                let (writer, first) = (sink.clone(), loading.is_none());
                blocking(move || {
                    if first {
                        writer.begin_snapshot()?;
                    }
                    writer.load_chunk(&pairs)?;
                    if last {
                        writer.finish_snapshot(version)?;
                    }
                    Ok(())
                })
                .await?;
                loading = Some(version);
                if last {
                    applied = version;
                    loading = None;
                    tracing::info!(version, "shipping: snapshot loaded");
                    write(&mut send, &Message::Ack { version, lease: None }).await?;
                    status.send_modify(|s| s.applied_version = version);
                }
            }
            Message::Commits { mut commits } => {
                let mut bytes: usize = commits.iter().map(|c| c.writes.len()).sum();
                while bytes < APPLY_BYTES_MAX {
                    let Ok(next) = frames.try_recv() else { break };
                    match next {
                        Ok(Message::Commits { commits: more }) => {
                            bytes += more.iter().map(|c| c.writes.len()).sum::<usize>();
                            commits.extend(more);
                        }
                        other => {
                            held = Some(other);
                            break;
                        }
                    }
                }
                let Some(last) = commits.last().map(|c| c.version) else { continue };
                let (writer, base) = (sink.clone(), applied);
                blocking(move || {
                    let mut at = base;
                    for c in &commits {
                        if c.version <= at {
                            continue; // already held
                        }
                        if c.version != at + 1 {
                            return Err(format!("commit {} does not follow the applied version {at}", c.version));
                        }
                        writer.apply(c)?;
                        at = c.version;
                    }
                    // One sync for the frame's commits, then the ack.
                    writer.sync()
                })
                .await?;
                applied = applied.max(last);
                write(&mut send, &Message::Ack { version: applied, lease: None }).await?;
                status.send_modify(|s| {
                    s.applied_version = applied;
                    s.primary_version = s.primary_version.max(applied);
                    if applied >= s.primary_version {
                        s.caught_up_at = Some(SystemTime::now());
                    }
                });
            }
            Message::Hello { .. } | Message::Ack { .. } => {
                return Err(ShipError::Protocol("the primary sent what only a standby says".into()))
            }
        }
    }
}

/// Frames a standby reads ahead of what it has applied (frames are usually a few commits).
const FRAMES_AHEAD: usize = 16;
/// Bytes of write sets a standby applies in one go (then syncs and acks) when frames pile up.
const APPLY_BYTES_MAX: usize = 8 * 1024 * 1024;

/// The standby's frame reader: stopped when the session ends.
struct Reader(tokio::task::JoinHandle<()>);

impl Drop for Reader {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_carry_bytes_as_binary_and_chunks_round_trip() {
        let commit = Commit { version: 7, writes: vec![0xAB; 1000], chain_head: None };
        let msg = Message::Commits { commits: vec![commit] };
        let frame = encode(&msg).unwrap();
        assert!(frame.len() < 1100, "bytes are binary, not an array of numbers: {}", frame.len());
        let pairs = vec![(b"k".to_vec(), vec![1u8; 4096]), (b"l".to_vec(), Vec::new())];
        let chunk = pack_chunk(&pairs);
        assert!(chunk.len() < 200, "compressed: {}", chunk.len());
        assert_eq!(unpack_chunk(&chunk).unwrap(), pairs);
        assert!(unpack_chunk(b"garbage").is_err());
    }
}
