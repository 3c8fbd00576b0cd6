//! What a cell says of its replicated store (`GET /replication/digest`), for `cell replica verify`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Version of `GET /replication/digest`'s answer.
pub const DIGEST_VERSION: &str = "2";

/// A cell's store at one version: enough to tell whether a standby holds exactly its primary's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaDigest {
    pub cell: String,
    /// The commit version the digests are of.
    pub version: u64,
    /// The epoch this store writes (or follows) under.
    pub epoch: u64,
    /// A standby following its primary.
    pub standby: bool,
    /// The epoch of the peer that fenced this store, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fenced_by: Option<u64>,
    /// The audit chain's last record and its hash (hex), at the same version.
    pub chain_seq: u64,
    pub chain_head: String,
    /// Per keyspace (each key's first tuple element: `wallet`, `gaming`, `audit`...): its keys
    /// and the SHA-256 (hex) over its keys and values in key order.
    pub keyspaces: BTreeMap<String, KeyspaceDigest>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyspaceDigest {
    pub keys: u64,
    pub sha256: String,
}
