//! The control plane's own store: fjall on disk, one writer, every change durable before it is
//! acknowledged.
//!
//! Three keyspaces: `state` (flags, providers, games, operator-token keys: the current value of
//! everything synced),
//! `log` (the change records by version, big-endian, so the log reads in order) and `auth` (API
//! tokens by the SHA-256 of their secret; never synced). A change writes its record, the state it
//! changes and the new version in one atomic batch and syncs it before returning, so after a
//! `kill -9` the log, the state and the version agree.
//!
//! The state is small (flags and a catalog) and read on every sync snapshot and API read, so it is
//! also held in memory, updated only after its batch is durable.

use contracts::catalog::{Game, GameId, Provider, ProviderId};
use contracts::changes::{Change, ChangeRecord};
use contracts::flags::{Flag, FlagKey};
use contracts::operators::OperatorKey;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use serde::{de::DeserializeOwned, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Mutex, RwLock};
use tokio::sync::watch;

const VERSION_KEY: &[u8] = b"meta\0version";

/// A stored key and its value.
pub type KeyValue = (Vec<u8>, Vec<u8>);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{action}: {message}")]
    Io { action: &'static str, message: String },
    #[error("stored record {key} does not decode: {message}")]
    Corrupt { key: String, message: String },
}

fn io(action: &'static str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Io { action, message: e.to_string() }
}

/// Everything synced to cells, as of one version.
#[derive(Debug, Clone, Default)]
pub struct State {
    pub version: u64,
    pub flags: BTreeMap<FlagKey, Flag>,
    pub providers: BTreeMap<ProviderId, Provider>,
    pub games: BTreeMap<GameId, Game>,
    /// The public keys cells accept operator tokens from, by id.
    pub operator_keys: BTreeMap<String, OperatorKey>,
}

impl State {
    fn apply(&mut self, change: &Change) {
        match change {
            Change::FlagPut { flag } => {
                self.flags.insert(flag.key.clone(), flag.clone());
            }
            Change::FlagDelete { key } => {
                self.flags.remove(key);
            }
            Change::ProviderPut { provider } => {
                self.providers.insert(provider.id.clone(), provider.clone());
            }
            Change::ProviderDelete { id } => {
                self.providers.remove(id);
            }
            Change::GamePut { game } => {
                self.games.insert(game.id.clone(), game.clone());
            }
            Change::GameDelete { id } => {
                self.games.remove(id);
            }
            Change::OperatorKeyPut { key } => {
                self.operator_keys.insert(key.id.clone(), key.clone());
            }
            Change::OperatorKeyDelete { id } => {
                self.operator_keys.remove(id);
            }
        }
    }

    /// The whole state as `*Put` changes: what a snapshot sends.
    pub fn as_changes(&self) -> Vec<Change> {
        let flags = self.flags.values().map(|f| Change::FlagPut { flag: f.clone() });
        let providers = self.providers.values().map(|p| Change::ProviderPut { provider: p.clone() });
        let games = self.games.values().map(|g| Change::GamePut { game: g.clone() });
        let keys = self.operator_keys.values().map(|k| Change::OperatorKeyPut { key: k.clone() });
        providers.chain(games).chain(flags).chain(keys).collect()
    }
}

fn state_key(change: &Change) -> Vec<u8> {
    let (kind, id) = match change {
        Change::FlagPut { flag } => ("flag", flag.key.as_str()),
        Change::FlagDelete { key } => ("flag", key.as_str()),
        Change::ProviderPut { provider } => ("provider", provider.id.as_str()),
        Change::ProviderDelete { id } => ("provider", id.as_str()),
        Change::GamePut { game } => ("game", game.id.as_str()),
        Change::GameDelete { id } => ("game", id.as_str()),
        Change::OperatorKeyPut { key } => ("operator-key", key.id.as_str()),
        Change::OperatorKeyDelete { id } => ("operator-key", id.as_str()),
    };
    [kind.as_bytes(), b"\0", id.as_bytes()].concat()
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    rmp_serde::to_vec_named(value).expect("control-plane records always encode")
}

fn decode<T: DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T, StoreError> {
    rmp_serde::from_slice(bytes)
        .map_err(|e| StoreError::Corrupt { key: String::from_utf8_lossy(key).into_owned(), message: e.to_string() })
}

pub struct ControlStore {
    db: Database,
    state_ks: Keyspace,
    log: Keyspace,
    auth: Keyspace,
    /// One writer: versions are assigned and committed in order, so the log is gapless.
    writer: Mutex<()>,
    state: RwLock<State>,
    version_tx: watch::Sender<u64>,
}

impl ControlStore {
    /// Opens (or creates) the store under `dir` and loads the state into memory. Blocking.
    pub fn open(dir: &Path) -> Result<ControlStore, StoreError> {
        // One background worker, as in the cells (`cell::store::embedded::open_fjall`): with two,
        // fjall 3.1's first worker busy-loops re-queuing compaction messages while the second
        // compacts. The control plane's write rate needs no more than one.
        let db = Database::builder(dir).worker_threads(1).open().map_err(|e| match e {
            fjall::Error::Locked => io(
                "open the store",
                format!("another process is using {}: stop it first (one process per data directory)", dir.display()),
            ),
            e => io("open fjall database", e),
        })?;
        let state_ks = db.keyspace("state", KeyspaceCreateOptions::default).map_err(|e| io("open state", e))?;
        let log = db.keyspace("log", KeyspaceCreateOptions::default).map_err(|e| io("open log", e))?;
        let auth = db.keyspace("auth", KeyspaceCreateOptions::default).map_err(|e| io("open auth", e))?;
        let mut state = State::default();
        for guard in state_ks.iter() {
            let (k, v) = guard.into_inner().map_err(|e| io("read state", e))?;
            if k.as_ref() == VERSION_KEY {
                let bytes: [u8; 8] = v.as_ref().try_into().map_err(|_| StoreError::Corrupt {
                    key: "meta version".into(),
                    message: format!("{} bytes, not 8", v.len()),
                })?;
                state.version = u64::from_be_bytes(bytes);
            } else if k.starts_with(b"flag\0") {
                let flag: Flag = decode(&k, &v)?;
                state.flags.insert(flag.key.clone(), flag);
            } else if k.starts_with(b"provider\0") {
                let p: Provider = decode(&k, &v)?;
                state.providers.insert(p.id.clone(), p);
            } else if k.starts_with(b"game\0") {
                let g: Game = decode(&k, &v)?;
                state.games.insert(g.id.clone(), g);
            } else if k.starts_with(b"operator-key\0") {
                let key: OperatorKey = decode(&k, &v)?;
                state.operator_keys.insert(key.id.clone(), key);
            }
        }
        // The log's last record and the stored version are written in one batch; check it.
        if let Some(last) = log.last_key_value() {
            let key = last.key().map_err(|e| io("read log", e))?;
            let last_version = u64::from_be_bytes(key.as_ref().try_into().unwrap_or([0; 8]));
            assert_eq!(last_version, state.version, "the log's last record and the stored version disagree");
        }
        let (version_tx, _) = watch::channel(state.version);
        Ok(ControlStore { db, state_ks, log, auth, writer: Mutex::new(()), state: RwLock::new(state), version_tx })
    }

    pub fn version(&self) -> u64 {
        *self.version_tx.borrow()
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version_tx.subscribe()
    }

    /// Reads the current state.
    pub fn read<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        f(&self.state.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// The one way to change synced state: `build` sees the current state and returns the
    /// changes (or refuses); they are written as one record with the next version, durably, and
    /// only then visible. Blocking.
    pub fn commit<E: From<StoreError>>(
        &self,
        actor: &str,
        reason: &str,
        build: impl FnOnce(&State, u64, chrono::DateTime<chrono::Utc>) -> Result<Vec<Change>, E>,
    ) -> Result<ChangeRecord, E> {
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let version = self.version() + 1;
        let at = chrono::Utc::now();
        let changes = self.read(|state| build(state, version, at))?;
        let record = ChangeRecord { version, at, actor: actor.to_owned(), reason: reason.to_owned(), changes };
        let mut batch = self.db.batch();
        batch.insert(&self.log, version.to_be_bytes(), encode(&record));
        for change in &record.changes {
            let key = state_key(change);
            match change {
                Change::FlagPut { flag } => batch.insert(&self.state_ks, key, encode(flag)),
                Change::ProviderPut { provider } => batch.insert(&self.state_ks, key, encode(provider)),
                Change::GamePut { game } => batch.insert(&self.state_ks, key, encode(game)),
                Change::OperatorKeyPut { key: k } => batch.insert(&self.state_ks, key, encode(k)),
                Change::FlagDelete { .. }
                | Change::ProviderDelete { .. }
                | Change::GameDelete { .. }
                | Change::OperatorKeyDelete { .. } => batch.remove(&self.state_ks, key),
            }
        }
        batch.insert(&self.state_ks, VERSION_KEY, version.to_be_bytes());
        batch.commit().map_err(|e| io("commit change", e))?;
        // Committed: the state in memory follows at once, so the next change takes the next
        // version even if the sync below fails (its caller then hears an error, as for any
        // outcome it cannot be sure of, and the record goes out with the next change).
        {
            let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
            for change in &record.changes {
                state.apply(change);
            }
            state.version = version;
        }
        self.db.persist(PersistMode::SyncAll).map_err(|e| io("sync change", e))?;
        self.version_tx.send_replace(version);
        Ok(record)
    }

    /// Up to `limit` records after `after`, oldest first; with `flag`, only those touching it.
    pub fn records_after(
        &self,
        after: u64,
        limit: usize,
        flag: Option<&FlagKey>,
    ) -> Result<Vec<ChangeRecord>, StoreError> {
        let mut out = Vec::new();
        let start = after.saturating_add(1).to_be_bytes();
        for guard in self.log.range(start..) {
            let (k, v) = guard.into_inner().map_err(|e| io("read log", e))?;
            let record: ChangeRecord = decode(&k, &v)?;
            let touches = |c: &Change| match c {
                Change::FlagPut { flag: f } => Some(&f.key) == flag,
                Change::FlagDelete { key } => Some(key) == flag,
                _ => false,
            };
            if flag.is_none() || record.changes.iter().any(touches) {
                out.push(record);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// A consistent snapshot: the state and its version, read under one lock.
    pub fn snapshot(&self) -> (u64, Vec<Change>) {
        self.read(|s| (s.version, s.as_changes()))
    }

    // ---- auth keyspace (tokens; not synced, not versioned) ------------------------------------

    pub fn auth_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.auth.get(key).map_err(|e| io("read token", e))?.map(|v| v.to_vec()))
    }

    pub fn auth_all(&self) -> Result<Vec<KeyValue>, StoreError> {
        self.auth
            .iter()
            .map(|g| g.into_inner().map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(|e| io("read tokens", e)))
            .collect()
    }

    /// Writes (or with `None` removes) a token record durably.
    pub fn auth_put(&self, key: &[u8], value: Option<&[u8]>) -> Result<(), StoreError> {
        let mut batch = self.db.batch();
        match value {
            Some(v) => batch.insert(&self.auth, key, v),
            None => batch.remove(&self.auth, key),
        }
        batch.commit().map_err(|e| io("write token", e))?;
        self.db.persist(PersistMode::SyncAll).map_err(|e| io("sync token", e))
    }
}

/// What replication reads to bring cells up to date.
pub struct SyncSource(pub std::sync::Arc<ControlStore>);

impl replication::sync::ChangeSource for SyncSource {
    fn current_version(&self) -> u64 {
        self.0.version()
    }

    fn records_after(&self, version: u64, limit: usize) -> Result<Vec<ChangeRecord>, String> {
        self.0.records_after(version, limit, None).map_err(|e| e.to_string())
    }

    fn snapshot(&self) -> Result<(u64, Vec<Change>), String> {
        Ok(self.0.snapshot())
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.0.subscribe()
    }
}
