//! Catalog and flags: this cell's copy of what the control plane publishes (flags, providers,
//! games, and the keys of its operator tokens), kept in its own store so the cell goes on serving them when the control plane is gone.
//!
//! The copy is written only by sync ([`CatalogSink`], driven by `replication::sync::run_client`):
//! each change set is applied in one transaction together with the version it brings the copy
//! to, so after a crash the copy is at one version exactly, and the next connection resumes there.
//! Reads go to an in-memory view of the copy, replaced whole after each applied set.
//!
//! Key layout of the catalog subspace:
//! ```text
//! ("version",)      -> u64        the control-plane version the copy is at
//! ("digest",)       -> String     the digest of the control plane's record at that version
//! ("flag", key)     -> Flag
//! ("provider", id)  -> Provider
//! ("game", id)      -> Game
//! ("operator-key", id) -> OperatorKey
//! ```

use crate::store::{subspaces, transact, Store, StoreError, Transaction};
use chrono::{DateTime, Utc};
use contracts::catalog::{Game, Provider};
use contracts::changes::Change;
use contracts::flags::{self, EvaluationContext, EvaluationResult, Flag, FlagKind};
use contracts::operators::OperatorKey;
use contracts::region::RegionConfig;
use replication::sync::{ChangeSet, SyncSink, SyncStatus};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

/// The kind under which operator-token keys are kept.
const OPERATOR_KEY: &str = "operator-key";

fn version_key() -> Vec<u8> {
    subspaces::catalog().pack(&("version",))
}

fn digest_key() -> Vec<u8> {
    subspaces::catalog().pack(&("digest",))
}

fn key(kind: &str, id: &str) -> Vec<u8> {
    subspaces::catalog().pack(&(kind, id))
}

fn decode<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, StoreError> {
    rmp_serde::from_slice(bytes).map_err(|e| StoreError::Corrupt { key: what.to_owned(), why: e.to_string() })
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Named fields: a copy written by an older cell stays readable when fields are added.
    rmp_serde::to_vec_named(value).expect("catalog records always encode")
}

/// The copy in memory.
#[derive(Debug, Default, Clone)]
struct View {
    version: u64,
    flags: BTreeMap<String, Flag>,
    providers: BTreeMap<String, Provider>,
    games: BTreeMap<String, Game>,
    operator_keys: BTreeMap<String, OperatorKey>,
}

impl View {
    /// The view after `set`, as the store holds it once `set` is applied.
    fn after(&self, set: &ChangeSet) -> View {
        let mut next = if set.snapshot { View::default() } else { self.clone() };
        for change in &set.changes {
            match change {
                Change::FlagPut { flag } => {
                    next.flags.insert(flag.key.as_str().to_owned(), flag.clone());
                }
                Change::FlagDelete { key } => {
                    next.flags.remove(key.as_str());
                }
                Change::ProviderPut { provider } => {
                    next.providers.insert(provider.id.as_str().to_owned(), provider.clone());
                }
                Change::ProviderDelete { id } => {
                    next.providers.remove(id.as_str());
                }
                Change::GamePut { game } => {
                    next.games.insert(game.id.as_str().to_owned(), game.clone());
                }
                Change::GameDelete { id } => {
                    next.games.remove(id.as_str());
                }
                Change::OperatorKeyPut { key } => {
                    next.operator_keys.insert(key.id.clone(), key.clone());
                }
                Change::OperatorKeyDelete { id } => {
                    next.operator_keys.remove(id);
                }
            }
        }
        next.version = set.version;
        next
    }

    fn load(tx: &mut dyn Transaction) -> Result<View, StoreError> {
        let mut view = View {
            version: match tx.get(&version_key())? {
                Some(bytes) => decode("catalog version", &bytes)?,
                None => 0,
            },
            ..View::default()
        };
        for (kind, what) in
            [("flag", "flag"), ("provider", "provider"), ("game", "game"), (OPERATOR_KEY, "operator key")]
        {
            let (begin, end) = subspaces::catalog().subspace(&kind).range();
            for (_, value) in tx.get_range(&begin, &end, usize::MAX, false)? {
                match kind {
                    "flag" => {
                        let f: Flag = decode(what, &value)?;
                        view.flags.insert(f.key.as_str().to_owned(), f);
                    }
                    "provider" => {
                        let p: Provider = decode(what, &value)?;
                        view.providers.insert(p.id.as_str().to_owned(), p);
                    }
                    OPERATOR_KEY => {
                        let k: OperatorKey = decode(what, &value)?;
                        view.operator_keys.insert(k.id.clone(), k);
                    }
                    _ => {
                        let g: Game = decode(what, &value)?;
                        view.games.insert(g.id.as_str().to_owned(), g);
                    }
                }
            }
        }
        Ok(view)
    }
}

/// Why a change set was not applied.
#[derive(Debug, thiserror::Error)]
pub enum SyncApplyError {
    #[error("change set from version {base} does not follow the copy's version {have}")]
    OutOfOrder { base: u64, have: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The catalog domain of one cell.
pub struct Catalog {
    store: Arc<dyn Store>,
    region: Arc<RegionConfig>,
    view: RwLock<Arc<View>>,
    /// Set when the cell follows a control plane.
    sync: OnceLock<(SyncStatus, Duration)>,
}

/// A lobby: the games this player may see here, from the copy at `version`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Lobby {
    pub games: Vec<Game>,
    pub version: u64,
    /// The copy may be out of date: the cell has been cut off from the control plane too long.
    pub stale: bool,
}

impl Catalog {
    /// Loads the copy the store holds (what the last run applied).
    pub fn open(store: Arc<dyn Store>, region: Arc<RegionConfig>) -> Result<Catalog, StoreError> {
        let view = {
            let mut tx = store.begin()?;
            View::load(tx.as_mut())?
        };
        Ok(Catalog { store, region, view: RwLock::new(Arc::new(view)), sync: OnceLock::new() })
    }

    /// From now on, answers are `STALE` when `status` has not heard from the control plane for
    /// longer than `stale_after`.
    pub fn follow(&self, status: SyncStatus, stale_after: Duration) {
        let _ = self.sync.set((status, stale_after));
    }

    fn view(&self) -> Arc<View> {
        self.view.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Cut off from the control plane for too long (never, for a cell that follows none).
    pub fn stale(&self) -> bool {
        self.sync.get().is_some_and(|(status, after)| status.is_stale(*after))
    }

    pub fn version(&self) -> u64 {
        self.view().version
    }

    /// The keys the control plane signs operator tokens with, once this cell has synced (`None`
    /// before: the caller falls back to the bootstrap key in the data directory).
    pub fn operator_keys(&self) -> Option<Vec<OperatorKey>> {
        let view = self.view();
        (view.version > 0).then(|| view.operator_keys.values().cloned().collect())
    }

    /// Evaluates `flag` locally for `ctx`; the region is always this cell, whatever the caller said.
    pub fn evaluate(
        &self,
        flag: &str,
        mut ctx: EvaluationContext,
        expected: Option<FlagKind>,
        now: DateTime<Utc>,
    ) -> EvaluationResult {
        ctx.region = Some(self.region.cell_id.clone());
        let view = self.view();
        let result = flags::evaluate(flag, view.flags.get(flag), &ctx, expected, now, &self.region.flag_locks);
        // A locked value comes from the region file, not the copy: it cannot be out of date.
        let locked = self.region.flag_locks.iter().any(|l| l.flag.as_str() == flag);
        if self.stale() && !locked {
            result.into_stale()
        } else {
            result
        }
    }

    /// The games certified and offered in this jurisdiction, whose provider is not in maintenance
    /// and whose flag (if any) is on for this player.
    pub fn lobby(&self, ctx: EvaluationContext, now: DateTime<Utc>) -> Lobby {
        let view = self.view();
        let games = view
            .games
            .values()
            .filter(|g| g.offered_in(self.region.jurisdiction))
            .filter(|g| view.providers.get(g.provider_id.as_str()).is_some_and(|p| !p.maintenance))
            .filter(|g| match &g.flag {
                None => true,
                Some(flag) => {
                    let result = self.evaluate(flag.as_str(), ctx.clone(), Some(FlagKind::Boolean), now);
                    result.value == Some(flags::FlagValue::Bool(true))
                }
            })
            .cloned()
            .collect();
        Lobby { games, version: view.version, stale: self.stale() }
    }

    /// The product (`slots`, `live`...) of `provider`'s game `game`, if the catalog lists it, for
    /// stake rules. Only that provider's game: a bet naming another provider's game learns nothing.
    pub fn game_type(&self, provider: &str, game: &str) -> Option<contracts::catalog::GameType> {
        self.view().games.get(game).filter(|g| g.provider_id.as_str() == provider).map(|g| g.game_type)
    }

    /// The maximum multiplier the synced catalog gives `provider`'s `game`, if it gives one.
    pub fn max_multiplier(&self, provider: &str, game: &str) -> Option<contracts::catalog::Multiplier> {
        self.view().games.get(game).filter(|g| g.provider_id.as_str() == provider).and_then(|g| g.max_multiplier)
    }

    fn apply_in(tx: &mut dyn Transaction, set: &ChangeSet) -> Result<Result<(), SyncApplyError>, StoreError> {
        let have: u64 = match tx.get(&version_key())? {
            Some(bytes) => decode("catalog version", &bytes)?,
            None => 0,
        };
        if set.snapshot {
            // The store has no range clear (FoundationDB's has; ours keeps the interface small),
            // and a catalog is thousands of keys, not millions.
            for kind in ["flag", "provider", "game", OPERATOR_KEY] {
                let (begin, end) = subspaces::catalog().subspace(&kind).range();
                for (k, _) in tx.get_range(&begin, &end, usize::MAX, false)? {
                    tx.clear(&k)?;
                }
            }
        } else if set.base_version != have {
            // A retry after an unknown commit outcome lands here when the first attempt did
            // commit: the copy is already at `set.version`, which is success.
            if have == set.version {
                return Ok(Ok(()));
            }
            return Ok(Err(SyncApplyError::OutOfOrder { base: set.base_version, have }));
        }
        for change in &set.changes {
            match change {
                Change::FlagPut { flag } => tx.set(&key("flag", flag.key.as_str()), &encode(flag))?,
                Change::FlagDelete { key: k } => tx.clear(&key("flag", k.as_str()))?,
                Change::ProviderPut { provider } => {
                    tx.set(&key("provider", provider.id.as_str()), &encode(provider))?
                }
                Change::ProviderDelete { id } => tx.clear(&key("provider", id.as_str()))?,
                Change::GamePut { game } => tx.set(&key("game", game.id.as_str()), &encode(game))?,
                Change::GameDelete { id } => tx.clear(&key("game", id.as_str()))?,
                Change::OperatorKeyPut { key: k } => tx.set(&key(OPERATOR_KEY, &k.id), &encode(k))?,
                Change::OperatorKeyDelete { id } => tx.clear(&key(OPERATOR_KEY, id))?,
            }
        }
        tx.set(&version_key(), &encode(&set.version))?;
        match &set.digest {
            Some(digest) => tx.set(&digest_key(), &encode(digest))?,
            None => tx.clear(&digest_key())?,
        }
        Ok(Ok(()))
    }
}

/// Sync's way into the cell's store.
pub struct CatalogSink(pub Arc<Catalog>);

impl SyncSink for CatalogSink {
    type Error = SyncApplyError;

    fn applied_version(&self) -> Result<u64, SyncApplyError> {
        let mut tx = self.0.store.begin()?;
        Ok(match tx.get(&version_key())? {
            Some(bytes) => decode("catalog version", &bytes)?,
            None => 0,
        })
    }

    fn applied_digest(&self) -> Result<Option<String>, SyncApplyError> {
        let mut tx = self.0.store.begin()?;
        Ok(match tx.get(&digest_key())? {
            Some(bytes) => Some(decode("catalog digest", &bytes)?),
            None => None,
        })
    }

    fn apply(&self, set: &ChangeSet) -> Result<(), SyncApplyError> {
        let catalog = &self.0;
        transact(catalog.store.as_ref(), |tx| Catalog::apply_in(tx, set))??;
        // Only sync writes the copy, one set at a time, so the view follows the store exactly.
        let mut view = catalog.view.write().unwrap_or_else(|p| p.into_inner());
        if set.snapshot || view.version != set.version {
            *view = Arc::new(view.after(set));
        }
        tracing::info!(
            version = set.version,
            changes = set.changes.len(),
            snapshot = set.snapshot,
            "catalog copy updated"
        );
        Ok(())
    }
}
