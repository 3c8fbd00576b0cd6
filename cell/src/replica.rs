//! This cell's place in its jurisdiction's replication (DESIGN.md section 8): a primary ships its
//! store's commits to its standbys ([`replication::shipping`]); a standby follows its primary and
//! serves nothing that moves money until it is promoted (`cell promote`, which bumps the epoch);
//! a primary that finds a peer with a higher epoch is fenced and commits nothing again until it
//! is re-seeded as a standby.

use crate::store::embedded::EmbeddedStore;
use replication::shipping::{FollowStatus, LogSink, LogSource};
use std::net::SocketAddr;
use std::sync::Arc;

/// What this process is.
#[derive(Debug, Clone)]
pub enum Role {
    /// The writer. Ships its log to standbys at `listen`; with `peer` (its standby's shipping
    /// address, which a promoted standby listens on), asks at start and then every few seconds
    /// whether a peer holds a higher epoch.
    Primary { listen: Option<SocketAddr>, peer: Option<SocketAddr> },
    /// Follows the primary at `primary` (its shipping address).
    Standby { primary: SocketAddr },
}

/// `cell serve --replication-listen/--standby-of/--peer/--site`, with the QUIC configurations
/// (mutual TLS as this cell, accepting only this cell's certificate).
#[derive(Clone)]
pub struct ReplicationConfig {
    pub role: Role,
    /// Where this process runs (`--site`); a primary refuses a standby at a site the region file
    /// does not allow.
    pub site: String,
    pub server: Option<quinn::ServerConfig>,
    pub client: quinn::ClientConfig,
}

/// What `/metrics`, `/readyz` and the API guard read of replication.
pub struct ReplicaState {
    pub store: Arc<EmbeddedStore>,
    pub standby: bool,
    /// The standby's view of its primary (a primary: default).
    pub follow: tokio::sync::watch::Receiver<FollowStatus>,
    /// A primary's shipper, for its standbys' lag.
    pub shipper: std::sync::OnceLock<Arc<replication::shipping::Shipper>>,
}

impl ReplicaState {
    /// Why this cell may not take a write, if it may not: a standby not promoted, or fenced.
    pub fn refusal(&self) -> Option<(&'static str, String)> {
        if self.standby {
            return Some((
                "CELL_STANDBY",
                "this is a standby: it serves nothing that moves money until it is promoted (cell promote)".into(),
            ));
        }
        self.store.fenced_by().map(|by| {
            (
                "CELL_FENCED",
                format!("this cell was deposed: a peer holds epoch {by}; it writes nothing until re-seeded"),
            )
        })
    }

    /// Versions and seconds a standby is behind its primary (a primary: its furthest standby).
    pub fn lag(&self) -> (u64, f64) {
        if self.standby {
            let s = self.follow.borrow();
            let versions = s.primary_version.saturating_sub(s.applied_version);
            let seconds = match (versions, s.caught_up_at) {
                (0, _) => 0.0,
                // Replication lag is wall time between two machines, not the domain's clock.
                (_, Some(at)) => at.elapsed().map(|d| d.as_secs_f64()).unwrap_or(0.0),
                (_, None) => f64::INFINITY,
            };
            return (versions, seconds);
        }
        let committed = self.store.committed_version();
        let Some(shipper) = self.shipper.get() else { return (0, 0.0) };
        let sessions = shipper.sessions();
        let behind = sessions.iter().map(|s| committed.saturating_sub(s.acked_version)).max().unwrap_or(0);
        let seconds = sessions
            .iter()
            .filter(|s| s.acked_version < committed)
            .filter_map(|s| s.last_ack_at)
            .filter_map(|at| at.elapsed().ok())
            .map(|d| d.as_secs_f64())
            .fold(0.0, f64::max);
        (behind, seconds)
    }
}

/// The primary's store as the shipper reads it.
pub struct StoreSource(pub Arc<EmbeddedStore>);

impl LogSource for StoreSource {
    fn committed_version(&self) -> u64 {
        self.0.committed_version()
    }

    fn epoch(&self) -> u64 {
        self.0.epoch().unwrap_or(1)
    }

    fn oldest_logged(&self) -> Result<Option<u64>, String> {
        self.0.oldest_logged().map_err(|e| e.to_string())
    }

    fn logged_after(&self, version: u64, max_bytes: usize) -> Result<Vec<(u64, Vec<u8>)>, String> {
        self.0.logged_after(version, max_bytes).map_err(|e| e.to_string())
    }

    fn snapshot(
        &self,
        chunk_bytes: usize,
        f: &mut dyn FnMut(u64, replication::shipping::Pairs) -> Result<(), String>,
    ) -> Result<u64, String> {
        self.0
            .snapshot_chunks(chunk_bytes, |v, pairs| f(v, pairs).map_err(crate::store::StoreError::Unavailable))
            .map_err(|e| e.to_string())
    }

    fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.0.subscribe_commits().expect("a primary with standbys keeps a replication log")
    }

    fn fence(&self, peer_epoch: u64) {
        if self.0.fenced_by().is_some_and(|by| by >= peer_epoch) {
            return;
        }
        tracing::error!(peer_epoch, "a peer holds a higher epoch: this cell is fenced and writes nothing");
        if let Err(e) = self.0.fence(peer_epoch) {
            tracing::error!(error = %e, "could not persist the fence; refusing writes in memory only");
        }
    }
}

/// The standby's store as the follower writes it.
pub struct StoreSink(pub Arc<EmbeddedStore>);

impl LogSink for StoreSink {
    fn applied_version(&self) -> Result<u64, String> {
        // A snapshot load cut short holds no usable copy: start over.
        match self.0.snapshot_load_unfinished() {
            Ok(true) => Ok(0),
            Ok(false) => Ok(self.0.committed_version()),
            Err(e) => Err(e.to_string()),
        }
    }

    fn epoch(&self) -> u64 {
        self.0.epoch().unwrap_or(1)
    }

    fn apply(&self, version: u64, writes: &[u8]) -> Result<(), String> {
        self.0.apply_replicated(version, writes).map_err(|e| e.to_string())
    }

    fn begin_snapshot(&self) -> Result<(), String> {
        self.0.begin_snapshot_load().map_err(|e| e.to_string())
    }

    fn load_chunk(&self, pairs: &[(Vec<u8>, Vec<u8>)]) -> Result<(), String> {
        self.0.load_snapshot_chunk(pairs).map_err(|e| e.to_string())
    }

    fn finish_snapshot(&self, version: u64) -> Result<(), String> {
        self.0.finish_snapshot_load(version).map_err(|e| e.to_string())
    }

    fn adopt_epoch(&self, epoch: u64) -> Result<(), String> {
        if epoch > self.epoch() {
            self.0.set_epoch(epoch).map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

/// Bytes of log a primary keeps for a standby that is briefly away; one further behind takes a
/// snapshot.
pub const LOG_BYTES_MAX: u64 = 256 * 1024 * 1024;

/// `cell promote`: makes a stopped standby's store the writer's, one epoch above any it has seen.
/// Returns the new epoch and the version it holds.
pub fn promote(data_dir: &std::path::Path, over_fence: bool) -> anyhow::Result<(u64, u64)> {
    use anyhow::Context;
    let store = EmbeddedStore::open_replicated(&data_dir.join("store"), crate::store::embedded::Durability::GroupSync)
        .with_context(|| format!("open the store under {}", data_dir.display()))?;
    if let Some(by) = store.fenced_by().filter(|_| !over_fence) {
        anyhow::bail!(
            "this store was deposed (a peer holds epoch {by}): re-seed it as a standby (cell serve --standby-of) before it can be promoted"
        );
    }
    if store.snapshot_load_unfinished()? {
        anyhow::bail!("this standby was loading a snapshot when it stopped: it holds no usable copy to promote");
    }
    let epoch = store.epoch()?.max(store.fenced_by().unwrap_or(0)) + 1;
    store.set_epoch(epoch)?;
    store.unfence()?;
    Ok((epoch, store.committed_version()))
}
