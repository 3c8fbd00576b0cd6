//! Control-plane sync over QUIC (DESIGN.md section 8): every cell follows the control plane's
//! change log and applies it to its own store, so it keeps serving flags and the catalog from its
//! local copy when the control plane is gone.
//!
//! - **Identity.** Mutual TLS from the platform CA both ways. The cell accepts only a server
//!   certificate naming `control`; the control plane accepts a cell only if its certificate
//!   names the cell id its `Hello` claims ([`crate::tls::certificate_names`]).
//! - **Resume.** The cell says the last version it applied; the control plane answers with a
//!   snapshot (version 0, too far behind, or ahead of the control plane) or the records since,
//!   then streams each new record as it commits.
//! - **Exactly once.** Each [`ChangeSet`] goes to the [`SyncSink`] whole; the sink applies it in
//!   one transaction together with its new version, and only then is it acked. A set whose base
//!   is not the sink's version is never applied: a record already applied is skipped, a gap
//!   drops the connection and the next one resumes from the persisted version.
//! - **Bounded.** Frames are length-prefixed, versioned MessagePack ([`wire`]), at most
//!   [`wire::FRAME_BYTES_MAX`]; a malformed or oversized frame closes the connection and
//!   changes nothing.

pub mod client;
pub mod server;
pub mod wire;

pub use client::{ask_lease, run_client, ClientConfig, LeaseAnswer, SyncStatus, SyncStatusSnapshot};
pub use server::{Arbiter, CellSession, ServerConfig, SyncServer};

use contracts::changes::{Change, ChangeRecord};

/// What the sink applies in one transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeSet {
    /// The version the sink must be at for this set to apply (0 for a snapshot).
    pub base_version: u64,
    /// The version the sink is at once the set is applied; persist it in the same transaction.
    pub version: u64,
    /// `true`: forget every flag, provider and game held, then apply `changes` (a full state).
    pub snapshot: bool,
    /// In order; for a snapshot, only `*Put` changes.
    pub changes: Vec<Change>,
    /// [`record_digest`] of the record at `version` (`None` at version 0): persist it with the
    /// version. A cell says it when it reconnects, so a control plane whose record at that version
    /// differs (a different history: restored from an older backup, replaced) sends a snapshot
    /// rather than its records on top of a copy they do not follow.
    pub digest: Option<String>,
}

/// Hex SHA-256 of a change record's JSON: what tells two histories apart at the same version.
pub fn record_digest(record: &ChangeRecord) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(serde_json::to_vec(record).expect("a change record serialises")))
}

impl ChangeSet {
    /// Consecutive records as one set (`records` must be gapless and follow `base_version`).
    pub fn from_records(base_version: u64, records: &[ChangeRecord]) -> ChangeSet {
        ChangeSet {
            base_version,
            version: records.last().map_or(base_version, |r| r.version),
            snapshot: false,
            changes: records.iter().flat_map(|r| r.changes.iter().cloned()).collect(),
            digest: records.last().map(record_digest),
        }
    }
}

/// Where a cell keeps what it synced: its own store. Both methods block (the cell's store does);
/// the client calls them on the blocking pool, one at a time.
pub trait SyncSink: Send + Sync + 'static {
    type Error: std::error::Error + Send + Sync + 'static;

    /// The version of the last set applied, as persisted (0: nothing yet).
    fn applied_version(&self) -> Result<u64, Self::Error>;

    /// The digest persisted with that version ([`ChangeSet::digest`]); `None` if not kept, which
    /// skips the history check.
    fn applied_digest(&self) -> Result<Option<String>, Self::Error> {
        Ok(None)
    }

    /// Applies `set` atomically with its version: after a crash either all of it and
    /// `set.version` are there, or none of it and the old version. Called only when
    /// `set.base_version` is the applied version (or for a snapshot).
    fn apply(&self, set: &ChangeSet) -> Result<(), Self::Error>;
}

/// The control plane's side: its change log and state. Blocking; called on the blocking pool.
pub trait ChangeSource: Send + Sync + 'static {
    /// The latest committed version.
    fn current_version(&self) -> u64;

    /// Up to `limit` records after `version`, oldest first, gapless.
    fn records_after(&self, version: u64, limit: usize) -> Result<Vec<ChangeRecord>, String>;

    /// The whole state as `*Put` changes, with the version it is at, read consistently.
    fn snapshot(&self) -> Result<(u64, Vec<Change>), String>;

    /// Wakes whenever `current_version` grows.
    fn subscribe(&self) -> tokio::sync::watch::Receiver<u64>;
}

/// Why a sync session ended.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("connect to {addr}: {message}")]
    Connect { addr: std::net::SocketAddr, message: String },
    #[error("connection: {0}")]
    Connection(String),
    #[error("frame: {0}")]
    Frame(#[source] wire::FrameError),
    #[error("refused by the control plane: {code}: {message}")]
    Refused { code: String, message: String },
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("change set from version {got} does not follow the applied version {applied}")]
    Gap { applied: u64, got: u64 },
    #[error("sink: {0}")]
    Sink(String),
}
