//! The embedded store's side of log shipping (DESIGN.md section 8): a primary keeps its latest
//! commits' write sets by version in memory (pushed under the commit lock once the commit is in,
//! so the log holds exactly what committed, in commit order), bounded by size; a standby applies
//! those write sets at the same versions, or loads a consistent snapshot and follows the log from
//! its version. A primary that restarts starts with an empty log: a standby that had caught up
//! goes on from its version, one behind takes a snapshot. The store's epoch, which promotion
//! bumps and which fences a deposed primary, lives here too: it is the store's own, never shipped.

use super::{io, lock, EmbeddedStore, Inner, VERSION_KEY};
use crate::store::StoreError;
use fjall::{Keyspace, Readable};
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// The epoch this store's cell writes under.
const EPOCH_KEY: &[u8] = b"\xff/epoch";
/// The epoch of the peer that fenced this store, kept so a deposed primary stays fenced across
/// restarts until it is re-seeded as a standby.
const FENCED_KEY: &[u8] = b"\xff/fenced_by";
/// Set while a snapshot is being loaded: a standby that stops half way holds no usable state.
const LOADING_KEY: &[u8] = b"\xff/snapshot_loading";

/// One commit's writes, in key order: `Some(value)` sets, `None` clears.
pub type WriteSet = Vec<(Vec<u8>, Option<Vec<u8>>)>;

/// Bytes of log a primary keeps in memory for a standby that is briefly away; one further behind
/// takes a snapshot.
pub const LOG_BYTES_MAX: u64 = 256 * 1024 * 1024;
/// What a write set's pair costs in memory beyond its bytes, roughly: two vectors and an option
/// (56 bytes) and the allocator's two chunks around its key and value.
const PAIR_OVERHEAD: usize = 120;
/// The keyspace the log lived in on disk before it moved to memory: dropped at open.
const OLD_LOG_KEYSPACE: &str = "replication-log";

/// The latest commits' write sets, by version, oldest first.
#[derive(Default)]
struct Entries {
    commits: VecDeque<(u64, Arc<WriteSet>, usize)>,
}

/// The replication log a primary keeps in memory.
pub(super) struct ReplicationLog {
    entries: std::sync::Mutex<Entries>,
    /// Bytes the log holds (keys, values and their overhead), for the bound and `/metrics`.
    pub(super) bytes: std::sync::atomic::AtomicU64,
    /// Wakes the shippers at each commit (the committed version).
    pub(super) committed: tokio::sync::watch::Sender<u64>,
    /// `sync` durability: a commit is acknowledged once a standby holds it too.
    sync_standby: std::sync::atomic::AtomicBool,
    /// A `sync` wait timed out at this version (0: none): commits are answered without waiting
    /// until a standby acks it, so one lagging standby does not hold every write 5 s.
    sync_suspended_at: std::sync::atomic::AtomicU64,
    /// The highest version a standby said it holds durably.
    standby_acked: std::sync::Mutex<u64>,
    standby_acked_cv: std::sync::Condvar,
}

/// How long a `sync` commit waits for a standby before it is answered as of unknown outcome (it
/// is durable here; a retry with its idempotency key gets its result).
const STANDBY_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

impl ReplicationLog {
    pub(super) fn open(version: u64) -> ReplicationLog {
        let (committed, _) = tokio::sync::watch::channel(version);
        ReplicationLog {
            entries: std::sync::Mutex::default(),
            bytes: 0.into(),
            committed,
            sync_standby: false.into(),
            sync_suspended_at: 0.into(),
            standby_acked: std::sync::Mutex::new(0),
            standby_acked_cv: std::sync::Condvar::new(),
        }
    }
}

/// The store's epoch and fence, read at every open whatever the configuration (a deposed store
/// opened without replication flags stays fenced) and kept in memory.
pub(super) struct Epochs {
    epoch: std::sync::atomic::AtomicU64,
    /// Non-zero once a peer with this epoch deposed this store: no commit is taken from then on.
    fenced_by: std::sync::atomic::AtomicU64,
    /// A replicated primary's lease: no commit is taken while it has run out.
    lease: std::sync::OnceLock<std::sync::Arc<replication::lease::Lease>>,
}

impl Epochs {
    pub(super) fn load(data: &Keyspace) -> Result<Epochs, StoreError> {
        let read = |key: &[u8], default: u64| -> Result<u64, StoreError> {
            match data.get(key).map_err(|e| io("read the epoch and fence", e))? {
                Some(v) => {
                    Ok(u64::from_be_bytes(v.as_ref().try_into().map_err(|_| io("epoch or fence", "not 8 bytes"))?))
                }
                None => Ok(default),
            }
        };
        Ok(Epochs {
            epoch: read(EPOCH_KEY, 1)?.into(),
            fenced_by: read(FENCED_KEY, 0)?.into(),
            lease: std::sync::OnceLock::new(),
        })
    }
}

/// Encodes a write set for the log and the wire: MessagePack, keys and values as binary (a byte
/// array as an array of integers cost a call per byte each way).
pub fn encode(writes: &WriteSet) -> Vec<u8> {
    use serde_bytes::Bytes;
    let wire: Vec<(&Bytes, Option<&Bytes>)> =
        writes.iter().map(|(k, v)| (Bytes::new(k), v.as_deref().map(Bytes::new))).collect();
    rmp_serde::to_vec(&wire).expect("a write set encodes")
}

/// Decodes a write set (binary keys and values; arrays of integers, as written before, too).
pub fn decode(bytes: &[u8]) -> Result<WriteSet, StoreError> {
    use serde_bytes::ByteBuf;
    let wire: Vec<(ByteBuf, Option<ByteBuf>)> = rmp_serde::from_slice(bytes)
        .map_err(|e| StoreError::Corrupt { key: "replicated write set".into(), why: e.to_string() })?;
    Ok(wire.into_iter().map(|(k, v)| (k.into_vec(), v.map(ByteBuf::into_vec))).collect())
}

impl EmbeddedStore {
    /// Opens the store keeping a replication log (a primary with standbys, or a standby that may
    /// be promoted and then feed the old primary).
    pub fn open_replicated(dir: &std::path::Path, durability: super::Durability) -> Result<EmbeddedStore, StoreError> {
        let mut store = EmbeddedStore::open(dir, durability)?;
        let inner = std::sync::Arc::get_mut(&mut store.inner).expect("just opened: the only handle");
        let version = inner.committed_version.load(Ordering::Acquire);
        inner.replication = Some(ReplicationLog::open(version));
        if inner.db.keyspace_exists(OLD_LOG_KEYSPACE) {
            let old = inner
                .db
                .keyspace(OLD_LOG_KEYSPACE, fjall::KeyspaceCreateOptions::default)
                .map_err(|e| io("open the old replication log", e))?;
            inner.db.delete_keyspace(old).map_err(|e| io("drop the old replication log", e))?;
            tracing::info!("dropped the replication log kept on disk by an earlier version (it lives in memory now)");
        }
        Ok(store)
    }

    fn log(&self) -> Result<&ReplicationLog, StoreError> {
        self.inner
            .replication
            .as_ref()
            .ok_or_else(|| StoreError::Unavailable("this store keeps no replication log".into()))
    }

    /// The highest committed version.
    pub fn committed_version(&self) -> u64 {
        self.inner.committed_version.load(Ordering::Acquire)
    }

    /// The highest version on disk: what may be shipped.
    pub fn durable_version(&self) -> u64 {
        lock(&self.inner.sync).durable_version
    }

    /// Wakes at each commit with the committed version.
    pub fn subscribe_commits(&self) -> Result<tokio::sync::watch::Receiver<u64>, StoreError> {
        Ok(self.log()?.committed.subscribe())
    }

    /// The bytes the replication log holds.
    pub fn log_bytes(&self) -> u64 {
        self.inner.replication.as_ref().map_or(0, |l| l.bytes.load(Ordering::Relaxed))
    }

    /// The oldest version the log still holds (`None`: it is empty).
    pub fn oldest_logged(&self) -> Result<Option<u64>, StoreError> {
        Ok(lock(&self.log()?.entries).commits.front().map(|(v, _, _)| *v))
    }

    /// Up to `max_bytes` (at least one) of the logged write sets after `version`, oldest first,
    /// durable ones only.
    pub fn logged_after(&self, version: u64, max_bytes: usize) -> Result<Vec<(u64, Arc<WriteSet>)>, StoreError> {
        let log = self.log()?;
        let durable = self.durable_version();
        let entries = lock(&log.entries);
        let Some(&(oldest, _, _)) = entries.commits.front() else { return Ok(Vec::new()) };
        let (mut out, mut size) = (Vec::new(), 0usize);
        let first = usize::try_from(version.saturating_add(1).saturating_sub(oldest)).unwrap_or(usize::MAX);
        for (at, writes, bytes) in entries.commits.iter().skip(first) {
            if *at > durable || size >= max_bytes {
                break;
            }
            size += bytes;
            out.push((*at, writes.clone()));
        }
        Ok(out)
    }

    /// A consistent copy of the data at one version, read `chunk_bytes` at a time: `f` gets each
    /// chunk of pairs in key order. The store's own keys (version, epoch) are not part of it.
    pub fn snapshot_chunks(
        &self,
        chunk_bytes: usize,
        mut f: impl FnMut(u64, Vec<(Vec<u8>, Vec<u8>)>) -> Result<(), StoreError>,
    ) -> Result<u64, StoreError> {
        let (version, snapshot) = {
            let _commit = lock(&self.inner.commit_lock);
            (self.committed_version(), self.inner.db.snapshot())
        };
        // Only what is on disk leaves this store.
        self.inner.wait_durable(version)?;
        let mut chunk = Vec::new();
        let mut size = 0usize;
        for guard in snapshot.range(&self.inner.data, ..b"\xff".as_slice()) {
            let (k, v) = guard.into_inner().map_err(|e| io("read a snapshot", e))?;
            size += k.len() + v.len();
            chunk.push((k.to_vec(), v.to_vec()));
            if size >= chunk_bytes {
                f(version, std::mem::take(&mut chunk))?;
                size = 0;
            }
        }
        f(version, chunk)?;
        Ok(version)
    }

    /// A standby applies the primary's commit at `version` (its write set, decoded), atomically
    /// with the version. Durable once [`Self::sync_applied`] returns: a standby syncs once per
    /// frame of commits, not per commit.
    pub fn apply_decoded(&self, version: u64, writes: &WriteSet) -> Result<(), StoreError> {
        self.inner.refuse_if_poisoned()?;
        {
            let _commit = lock(&self.inner.commit_lock);
            let current = self.committed_version();
            if version != current + 1 {
                return Err(StoreError::Unavailable(format!(
                    "replicated commit {version} does not follow the applied version {current}"
                )));
            }
            let mut batch = self.inner.db.batch();
            for (key, value) in writes {
                match value {
                    Some(v) => batch.insert(&self.inner.data, key.as_slice(), v.as_slice()),
                    None => batch.remove(&self.inner.data, key.as_slice()),
                }
            }
            batch.insert(&self.inner.data, VERSION_KEY, version.to_be_bytes());
            // Not logged: a standby ships nothing (promoted, it restarts with an empty log).
            batch.commit().map_err(|e| io("apply a replicated commit", e))?;
            self.inner.committed_version.store(version, Ordering::Release);
        }
        Ok(())
    }

    /// Returns once every commit applied so far is durable.
    pub fn sync_applied(&self) -> Result<(), StoreError> {
        self.inner.wait_durable(self.committed_version())
    }

    /// Starts loading a snapshot: marks the store as loading and clears its data (a standby that
    /// stops half way starts over).
    pub fn begin_snapshot_load(&self) -> Result<(), StoreError> {
        let _commit = lock(&self.inner.commit_lock);
        self.inner.data.insert(LOADING_KEY, [1u8]).map_err(|e| io("mark a snapshot load", e))?;
        let mut batch = self.inner.db.batch();
        let mut n = 0usize;
        for guard in self.inner.data.range(..b"\xff".as_slice()) {
            let (k, _) = guard.into_inner().map_err(|e| io("clear for a snapshot", e))?;
            batch.remove(&self.inner.data, k.as_ref());
            n += 1;
            if n.is_multiple_of(10_000) {
                std::mem::replace(&mut batch, self.inner.db.batch()).commit().map_err(|e| io("clear", e))?;
            }
        }
        if let Some(log) = &self.inner.replication {
            lock(&log.entries).commits.clear();
            log.bytes.store(0, Ordering::Relaxed);
        }
        batch.commit().map_err(|e| io("clear for a snapshot", e))?;
        self.inner.committed_version.store(0, Ordering::Release);
        // What was durable before is gone: nothing of the new copy is on disk yet.
        lock(&self.inner.sync).durable_version = 0;
        Ok(())
    }

    /// Loads one chunk of a snapshot.
    pub fn load_snapshot_chunk(&self, pairs: &[(Vec<u8>, Vec<u8>)]) -> Result<(), StoreError> {
        let mut batch = self.inner.db.batch();
        for (k, v) in pairs {
            batch.insert(&self.inner.data, k.as_slice(), v.as_slice());
        }
        batch.commit().map_err(|e| io("load a snapshot chunk", e))
    }

    /// Ends a snapshot load at `version`, durably. A store re-seeded this way is a standby again:
    /// no longer fenced.
    pub fn finish_snapshot_load(&self, version: u64) -> Result<(), StoreError> {
        {
            let _commit = lock(&self.inner.commit_lock);
            let mut batch = self.inner.db.batch();
            batch.insert(&self.inner.data, VERSION_KEY, version.to_be_bytes());
            batch.remove(&self.inner.data, LOADING_KEY);
            batch.remove(&self.inner.data, FENCED_KEY);
            self.inner.epochs.fenced_by.store(0, Ordering::Release);
            batch.commit().map_err(|e| io("finish a snapshot load", e))?;
            self.inner.committed_version.store(version, Ordering::Release);
        }
        self.inner.sync_journal()?;
        let mut state = lock(&self.inner.sync);
        state.durable_version = version;
        self.inner.announce(version);
        Ok(())
    }

    /// Marks this copy unusable (it diverged from its primary): the standby takes a snapshot at
    /// its next connection.
    pub fn mark_unusable(&self) -> Result<(), StoreError> {
        self.inner.data.insert(LOADING_KEY, [1u8]).map_err(|e| io("mark the copy unusable", e))?;
        self.inner.sync_journal()
    }

    /// Whether a snapshot load was cut short (the data is not a usable copy).
    pub fn snapshot_load_unfinished(&self) -> Result<bool, StoreError> {
        Ok(self.inner.data.get(LOADING_KEY).map_err(|e| io("read", e))?.is_some())
    }

    /// The epoch this store's cell writes under (1 until a promotion).
    pub fn epoch(&self) -> u64 {
        self.inner.epochs.epoch.load(Ordering::Acquire)
    }

    /// Persists `epoch` durably.
    pub fn set_epoch(&self, epoch: u64) -> Result<(), StoreError> {
        self.inner.data.insert(EPOCH_KEY, epoch.to_be_bytes()).map_err(|e| io("write the epoch", e))?;
        self.inner.sync_journal()?;
        self.inner.epochs.epoch.store(epoch, Ordering::Release);
        Ok(())
    }
}

impl EmbeddedStore {
    /// Fences this store: a peer holds `peer_epoch`, higher than (or, two primaries at once, equal
    /// to) this one's. Every later commit is refused, across restarts, until a snapshot re-seeds
    /// it as a standby.
    pub fn fence(&self, peer_epoch: u64) -> Result<(), StoreError> {
        {
            // Under the commit lock: no commit straddles the fence.
            let _commit = lock(&self.inner.commit_lock);
            self.inner.epochs.fenced_by.store(peer_epoch.max(1), Ordering::Release);
        }
        self.inner.data.insert(FENCED_KEY, peer_epoch.max(1).to_be_bytes()).map_err(|e| io("write the fence", e))?;
        self.inner.sync_journal()
    }

    /// Lifts the fence (`cell promote --over-fence`: ops chose this store's data).
    pub fn unfence(&self) -> Result<(), StoreError> {
        self.inner.data.remove(FENCED_KEY).map_err(|e| io("lift the fence", e))?;
        self.inner.sync_journal()?;
        self.inner.epochs.fenced_by.store(0, Ordering::Release);
        Ok(())
    }

    /// From now on a commit needs `lease` to hold (a replicated primary's; set once).
    pub fn set_lease(&self, lease: std::sync::Arc<replication::lease::Lease>) {
        let _ = self.inner.epochs.lease.set(lease);
    }

    /// The epoch of the peer that fenced this store, if one did.
    pub fn fenced_by(&self) -> Option<u64> {
        let by = self.inner.epochs.fenced_by.load(Ordering::Acquire);
        (by != 0).then_some(by)
    }

    /// `sync` durability: from now on a commit waits for a standby to hold it.
    pub fn require_standby(&self, on: bool) -> Result<(), StoreError> {
        self.log()?.sync_standby.store(on, Ordering::Release);
        Ok(())
    }

    /// A standby holds every version up to `version` durably.
    pub fn standby_acked(&self, version: u64) {
        if let Some(log) = &self.inner.replication {
            let mut acked = lock(&log.standby_acked);
            if version > *acked {
                *acked = version;
                log.standby_acked_cv.notify_all();
            }
            let suspended = log.sync_suspended_at.load(Ordering::Acquire);
            if suspended != 0 && version >= suspended {
                log.sync_suspended_at.store(0, Ordering::Release);
                tracing::info!(version, "a standby caught up: writes wait for it again");
            }
        }
    }
}

impl Inner {
    /// Refuses a commit on a fenced store, or on one whose lease has run out.
    pub(super) fn refuse_unless_writer(&self) -> Result<(), StoreError> {
        match self.epochs.fenced_by.load(Ordering::Acquire) {
            0 => {}
            by => {
                return Err(StoreError::Unavailable(format!(
                    "this cell is fenced: a peer holds epoch {by}; it commits nothing until re-seeded as a standby"
                )))
            }
        }
        match self.epochs.lease.get() {
            Some(lease) if !lease.holds() => Err(StoreError::Unavailable(
                "this cell's lease has run out: neither its standby nor the control plane confirmed its epoch".into(),
            )),
            _ => Ok(()),
        }
    }

    /// In `sync` durability, waits until a standby holds `version`.
    pub(super) fn wait_standby(&self, version: u64) -> Result<(), StoreError> {
        let Some(log) = self.replication.as_ref().filter(|l| l.sync_standby.load(Ordering::Acquire)) else {
            return Ok(());
        };
        if log.sync_suspended_at.load(Ordering::Acquire) != 0 {
            return Ok(());
        }
        let acked = lock(&log.standby_acked);
        let (acked, timeout) = log
            .standby_acked_cv
            .wait_timeout_while(acked, STANDBY_WAIT, |acked| *acked < version)
            .unwrap_or_else(|p| p.into_inner());
        if timeout.timed_out() && *acked < version {
            // This write's answer is unknown (it is durable here); the next ones go without the
            // standby until it has caught up with this one.
            if log.sync_suspended_at.compare_exchange(0, version, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                tracing::warn!(
                    version,
                    "no standby acked within 5 s: writes no longer wait for it until it catches up"
                );
            }
            return Err(StoreError::CommitUnknownResult);
        }
        Ok(())
    }

    /// Logs a commit's final writes, once it is in (when this store keeps a log; under the
    /// commit lock, so in version order), dropping the oldest past [`LOG_BYTES_MAX`].
    pub(super) fn log_commit(&self, version: u64, writes: WriteSet) {
        let Some(log) = &self.replication else { return };
        let bytes: usize = writes.iter().map(|(k, v)| k.len() + v.as_ref().map_or(0, Vec::len) + PAIR_OVERHEAD).sum();
        let mut entries = lock(&log.entries);
        entries.commits.push_back((version, Arc::new(writes), bytes));
        let mut held = log.bytes.fetch_add(bytes as u64, Ordering::Relaxed) + bytes as u64;
        while held > LOG_BYTES_MAX && entries.commits.len() > 1 {
            let Some((_, _, dropped)) = entries.commits.pop_front() else { break };
            held = log.bytes.fetch_sub(dropped as u64, Ordering::Relaxed) - dropped as u64;
        }
    }

    /// Tells the shippers a commit is in (after the batch).
    pub(super) fn announce(&self, version: u64) {
        if let Some(log) = &self.replication {
            log.committed.send_replace(version);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Durability, EmbeddedStore};
    use crate::store::{Store, StoreError};

    /// Keys and values travel as binary; a write set logged before (bytes as integers) decodes.
    #[test]
    fn write_sets_round_trip_as_binary_and_old_ones_still_decode() {
        let writes: super::WriteSet = vec![(b"k1".to_vec(), Some(vec![0, 255, 7])), (b"k2".to_vec(), None)];
        let encoded = super::encode(&writes);
        assert_eq!(super::decode(&encoded).unwrap(), writes);
        assert!(encoded.len() < rmp_serde::to_vec(&writes).unwrap().len() + 8);
        let old = rmp_serde::to_vec(&writes).unwrap();
        assert_eq!(super::decode(&old).unwrap(), writes);
    }

    fn put(store: &EmbeddedStore, key: &[u8]) -> Result<(), StoreError> {
        let mut tx = store.begin()?;
        tx.set(key, b"v")?;
        tx.commit().map(|_| ())
    }

    #[test]
    fn the_log_an_earlier_version_kept_on_disk_is_dropped_at_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = EmbeddedStore::open(dir.path(), Durability::GroupSync).unwrap();
            let old = store.inner.db.keyspace(super::OLD_LOG_KEYSPACE, fjall::KeyspaceCreateOptions::default).unwrap();
            old.insert(1u64.to_be_bytes(), b"a write set").unwrap();
        }
        let store = EmbeddedStore::open_replicated(dir.path(), Durability::GroupSync).unwrap();
        assert!(!store.inner.db.keyspace_exists(super::OLD_LOG_KEYSPACE));
        put(&store, b"a").unwrap();
        assert_eq!(store.oldest_logged().unwrap(), Some(1), "the log is in memory");
    }

    #[test]
    fn a_fence_holds_across_a_restart_without_replication_and_only_durable_commits_ship() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = EmbeddedStore::open_replicated(dir.path(), Durability::GroupSync).unwrap();
            put(&store, b"a").unwrap();
            assert_eq!(store.durable_version(), store.committed_version());
            assert_eq!(store.logged_after(0, 1 << 20).unwrap().len(), 1, "the committed write set is logged");
            assert_eq!(store.oldest_logged().unwrap(), Some(1));
            store.fence(2).unwrap();
            assert!(matches!(put(&store, b"b"), Err(StoreError::Unavailable(_))), "a fenced store commits nothing");
        }
        // Opened again without a replication log (a deposed primary started with no flags).
        let store = EmbeddedStore::open(dir.path(), Durability::GroupSync).unwrap();
        assert_eq!(store.fenced_by(), Some(2));
        assert!(put(&store, b"c").is_err(), "still fenced after a restart");
        store.unfence().unwrap();
        put(&store, b"c").unwrap();
    }
}
