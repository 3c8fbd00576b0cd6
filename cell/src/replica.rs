//! This cell's place in its jurisdiction's replication (DESIGN.md section 8): a primary ships its
//! store's commits to its standbys ([`replication::shipping`]); a standby follows its primary and
//! serves nothing that moves money until it is promoted (`cell promote`, which bumps the epoch);
//! a primary that finds a peer with a higher epoch is fenced and commits nothing again until it
//! is re-seeded as a standby.

use crate::store::embedded::EmbeddedStore;
use crate::store::Store;
use replication::shipping::{Commit, FollowStatus, LogSink, LogSource};
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
    /// A primary's lease (required once it has an arbiter).
    pub lease: Arc<replication::lease::Lease>,
}

impl ReplicaState {
    /// Why this cell may not take a write, if it may not: a standby not promoted, fenced, or its
    /// lease run out.
    pub fn refusal(&self) -> Option<(&'static str, String)> {
        if self.standby {
            return Some((
                "CELL_STANDBY",
                "this is a standby: it serves nothing that moves money until it is promoted (cell promote)".into(),
            ));
        }
        if let Some(by) = self.store.fenced_by() {
            return Some((
                "CELL_FENCED",
                format!("this cell was deposed: a peer holds epoch {by}; it writes nothing until re-seeded"),
            ));
        }
        (!self.lease.holds()).then(|| {
            (
                "CELL_LEASE_EXPIRED",
                format!(
                    "neither this cell's standby nor the control plane has confirmed its epoch within {} s (cut off \
                     from both, or just promoted and waiting out its predecessor's lease): it writes nothing until \
                     one does",
                    replication::lease::LEASE.as_secs()
                ),
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
    /// What may be shipped: the durable version, never a commit still only in memory.
    fn committed_version(&self) -> u64 {
        self.0.durable_version()
    }

    fn epoch(&self) -> u64 {
        self.0.epoch()
    }

    fn oldest_logged(&self) -> Result<Option<u64>, String> {
        self.0.oldest_logged().map_err(|e| e.to_string())
    }

    fn logged_after(&self, version: u64, max_bytes: usize) -> Result<Vec<Commit>, String> {
        let logged = self.0.logged_after(version, max_bytes).map_err(|e| e.to_string())?;
        Ok(logged
            .into_iter()
            .map(|(version, set)| Commit {
                version,
                chain_head: crate::audit::AuditChain::head_written(&set),
                writes: crate::store::embedded::encode_write_set(&set),
            })
            .collect())
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
        self.0.epoch()
    }

    fn apply(&self, commit: &Commit) -> Result<(), String> {
        // A commit that extends the audit chain must extend this copy's: its first record links
        // to the head held here. Otherwise the copies diverged; never follow one that is not the
        // primary's: start over from a snapshot.
        let writes = crate::store::embedded::decode_write_set(&commit.writes).map_err(|e| e.to_string())?;
        if commit.chain_head.is_some() {
            let mut tx = self.0.begin_snapshot_reads().map_err(|e| e.to_string())?;
            let ours = crate::audit::AuditChain::load(tx.as_mut()).map_err(|e| e.to_string())?;
            if let Err(broken) = ours.continued_by(&writes) {
                self.0.mark_unusable().map_err(|e| e.to_string())?;
                return Err(format!("commit {}: {broken}: this copy diverged from its primary", commit.version));
            }
        }
        // Decoded once, for the check and the apply.
        self.0.apply_decoded(commit.version, &writes).map_err(|e| e.to_string())
    }

    fn sync(&self) -> Result<(), String> {
        self.0.sync_applied().map_err(|e| e.to_string())
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
    let epoch = store.epoch().max(store.fenced_by().unwrap_or(0)) + 1;
    store.set_epoch(epoch)?;
    store.unfence()?;
    Ok((epoch, store.committed_version()))
}

/// The name of this data directory's store as a writer (`<data>/writer-id`, made at first use):
/// what the control plane records beside a cell's epoch, so two stores promoted to one epoch are
/// told apart. Not in the store: a snapshot does not carry it to a standby.
pub fn writer_id(data_dir: &std::path::Path) -> std::io::Result<String> {
    let path = data_dir.join("writer-id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let id = hex::encode(rand::random::<[u8; 16]>());
    std::fs::create_dir_all(data_dir)?;
    std::fs::write(&path, &id)?;
    Ok(id)
}

/// The keyspace a key belongs to: its first tuple element (`wallet`, `audit`...).
fn keyspace_of(key: &[u8]) -> String {
    match key.split_first() {
        // A tuple-encoded string: 0x02, its bytes, 0x00.
        Some((0x02, rest)) => {
            let end = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
            String::from_utf8_lossy(&rest[..end]).into_owned()
        }
        _ => "other".into(),
    }
}

/// The store's keyspaces hashed at one version (a consistent snapshot), with its epoch and chain.
pub fn digest(state: &ReplicaState, cell: &str) -> anyhow::Result<contracts::replication::ReplicaDigest> {
    use sha2::{Digest, Sha256};
    let mut groups: std::collections::BTreeMap<String, (u64, Sha256)> = Default::default();
    let mut chain = crate::audit::AuditChain::default();
    let version = state.store.snapshot_chunks(1 << 20, |_, pairs| {
        for (k, v) in pairs {
            if let Some(head) = crate::audit::AuditChain::head_at(&k, &v) {
                chain = head;
            }
            let (keys, hash) = groups.entry(keyspace_of(&k)).or_insert_with(|| (0, Sha256::new()));
            *keys += 1;
            for part in [&k, &v] {
                hash.update((part.len() as u64).to_be_bytes());
                hash.update(part);
            }
        }
        Ok(())
    })?;
    // From the same snapshot as the hashes.
    let (chain_seq, head) = chain.end();
    Ok(contracts::replication::ReplicaDigest {
        cell: cell.to_owned(),
        version,
        epoch: state.store.epoch(),
        standby: state.standby,
        fenced_by: state.store.fenced_by(),
        chain_seq,
        chain_head: hex::encode(head),
        keyspaces: groups
            .into_iter()
            .map(|(name, (keys, hash))| {
                (name, contracts::replication::KeyspaceDigest { keys, sha256: hex::encode(hash.finalize()) })
            })
            .collect(),
    })
}

/// What `cell replica verify` found.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyReport {
    pub ok: bool,
    /// The version both sides were compared at.
    pub version: u64,
    pub keyspaces: usize,
    pub chain_seq: u64,
    /// The first difference, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_difference: Option<String>,
}

/// Compares a primary's and its standby's stores at one version: asks both for their digests
/// until they stand at the same version (a quiet moment; it tries for up to 30 s), then names the
/// first keyspace (or the epoch, or the chain) that differs.
pub async fn verify(
    primary: &str,
    standby: &str,
    tls_dir: &std::path::Path,
    cert: &str,
) -> Result<VerifyReport, String> {
    // `Err`: it could not compare (a cell unreachable, or never at one version with the other).
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let p = fetch_digest(primary, tls_dir, cert).await.map_err(|e| format!("{primary}: {e:#}"))?;
        let s = fetch_digest(standby, tls_dir, cert).await.map_err(|e| format!("{standby}: {e:#}"))?;
        if p.version == s.version {
            return Ok(compare(&p, &s));
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!(
                "the two never stood at one version within 30 s (last: the primary at {}, the standby at {})",
                p.version, s.version
            ));
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

fn compare(p: &contracts::replication::ReplicaDigest, s: &contracts::replication::ReplicaDigest) -> VerifyReport {
    let mut first = None;
    if p.cell != s.cell {
        first = Some(format!("cells: the primary is {}, the standby {}", p.cell, s.cell));
    } else if p.epoch != s.epoch {
        first = Some(format!("epoch: the primary writes under {}, the standby follows {}", p.epoch, s.epoch));
    } else {
        let names: std::collections::BTreeSet<&String> = p.keyspaces.keys().chain(s.keyspaces.keys()).collect();
        for name in names {
            match (p.keyspaces.get(name), s.keyspaces.get(name)) {
                (Some(a), Some(b)) if a == b => continue,
                (a, b) => {
                    let keys = |d: Option<&contracts::replication::KeyspaceDigest>| d.map_or(0, |d| d.keys);
                    first = Some(format!(
                        "keyspace `{name}`: the primary holds {} keys, the standby {}; their hashes differ",
                        keys(a),
                        keys(b)
                    ));
                    break;
                }
            }
        }
        if first.is_none() && (p.chain_seq, &p.chain_head) != (s.chain_seq, &s.chain_head) {
            first = Some(format!(
                "audit chain: the primary's head is {} at {}, the standby's {} at {}",
                p.chain_head, p.chain_seq, s.chain_head, s.chain_seq
            ));
        }
    }
    VerifyReport {
        ok: first.is_none(),
        version: p.version,
        keyspaces: p.keyspaces.len(),
        chain_seq: p.chain_seq,
        first_difference: first,
    }
}

/// `GET {base}/replication/digest` over mutual TLS as the operator tool `cert`.
async fn fetch_digest(
    base: &str,
    tls_dir: &std::path::Path,
    cert: &str,
) -> anyhow::Result<contracts::replication::ReplicaDigest> {
    use anyhow::Context;
    use http_body_util::BodyExt;
    let authority = base.trim_end_matches('/').strip_prefix("https://").context("a cell URL is https://HOST:PORT")?;
    let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h).to_owned();
    let stream = tokio::time::timeout(std::time::Duration::from_secs(10), tokio::net::TcpStream::connect(authority))
        .await
        .context("connect: timed out")??;
    let config = replication::tls::client_config_by_url_host(tls_dir, cert)?;
    let server = rustls::pki_types::ServerName::try_from(host)?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(server, stream).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls)).await?;
    tokio::spawn(conn);
    let request = hyper::Request::builder()
        .uri("/replication/digest")
        .header("host", authority)
        .body(http_body_util::Empty::<bytes::Bytes>::new())?;
    let response = tokio::time::timeout(std::time::Duration::from_secs(120), sender.send_request(request))
        .await
        .context("no answer within 120 s")??;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    anyhow::ensure!(status.is_success(), "answered {status}: {}", String::from_utf8_lossy(&body));
    Ok(serde_json::from_slice(&body)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use contracts::replication::{KeyspaceDigest, ReplicaDigest};

    fn digest(wallet: &str) -> ReplicaDigest {
        let ks = |h: &str| KeyspaceDigest { keys: 2, sha256: h.to_owned() };
        ReplicaDigest {
            cell: "uk".into(),
            version: 7,
            epoch: 2,
            standby: false,
            fenced_by: None,
            chain_seq: 3,
            chain_head: "ab".into(),
            keyspaces: [("audit".to_owned(), ks("aa")), ("wallet".to_owned(), ks(wallet))].into(),
        }
    }

    #[test]
    fn verify_names_the_first_difference() {
        assert!(compare(&digest("w"), &digest("w")).ok);
        let report = compare(&digest("w"), &digest("x"));
        assert!(!report.ok);
        assert!(report.first_difference.unwrap().starts_with("keyspace `wallet`"));
        let mut behind = digest("w");
        behind.epoch = 1;
        assert!(compare(&digest("w"), &behind).first_difference.unwrap().starts_with("epoch"));
        assert_eq!(keyspace_of(&crate::store::subspaces::wallet().pack(&("x",))), "wallet");
    }
}
