//! The control plane's change log: every change, to flags, to the catalog or to the operator-token
//! keys, is one record with
//! one global version, and the same records are what the history API shows and what cells
//! receive over sync. It depends on both `flags` and `catalog`, which depend on neither it nor
//! each other's change shapes: no cycle.

use crate::catalog::{Game, GameId, Provider, ProviderId};
use crate::flags::{Flag, FlagKey};
use crate::operators::OperatorKey;
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Version of the change log's shapes (`ChangeRecord`, `ChangePage`): they carry flag and
/// catalog shapes, so they move with `flags::FLAGS_API_VERSION` and
/// `catalog::CATALOG_API_VERSION` as well as on their own.
pub const CHANGES_API_VERSION: &str = "3";

/// One effect of a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", tag = "op")]
pub enum Change {
    FlagPut {
        flag: Flag,
    },
    FlagDelete {
        key: FlagKey,
    },
    ProviderPut {
        provider: Provider,
    },
    ProviderDelete {
        id: ProviderId,
    },
    GamePut {
        game: Game,
    },
    GameDelete {
        id: GameId,
    },
    /// A key global-control signs operator tokens with; cells accept tokens signed by any key put
    /// and not deleted.
    OperatorKeyPut {
        key: OperatorKey,
    },
    OperatorKeyDelete {
        id: String,
    },
}

/// One versioned, audited change: who, when, why, and what. Versions are global, gapless and
/// increase by one per record, so "everything after version N" is well defined for every cell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChangeRecord {
    pub version: u64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub reason: String,
    pub changes: Vec<Change>,
}

/// A page of the change log (`GET /changes`, `GET /flags/{key}/history`), oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChangePage {
    pub records: Vec<ChangeRecord>,
    /// Pass as `after` for the next page; `null` at the end.
    pub next_after: Option<u64>,
}
