//! Who may do what on the control API: API tokens carrying roles.
//!
//! A token is `gct_` + 64 hex digits of randomness, shown once, at creation. Only its SHA-256 is
//! stored, so a copy of the data directory gives no one a working token. A token is found by
//! the hash of what the caller presents; a SHA-256 preimage is not guessable, so a plain lookup
//! leaks nothing a comparison in constant time would protect.

use crate::store::{ControlStore, StoreError};
use chrono::{DateTime, Utc};
use contracts::Jurisdiction;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Environment variable that sets the first admin token (otherwise one is generated).
pub const ADMIN_TOKEN_ENV: &str = "GLOBAL_CONTROL_ADMIN_TOKEN";
/// File in the data directory holding a generated first admin token.
pub const ADMIN_TOKEN_FILE: &str = "admin-token";
/// Shortest secret accepted from the environment: 128 bits of hex.
const ENV_TOKEN_CHARS_MIN: usize = 32;

pub use contracts::operators::Role;

/// What `role` grants on the control API. `finance` and `compliance` grant nothing here: they exist
/// for operator tokens, which reach a cell's back office (`POST /operator-tokens`).
fn allows(role: &Role, p: Permission) -> bool {
    use Permission::*;
    match role {
        Role::Admin => true,
        _ if p == OperatorToken(*role) => true,
        Role::Product => matches!(p, FlagsRead | FlagsWrite | CatalogRead),
        Role::Catalog => matches!(p, CatalogRead | CatalogWrite | FlagsRead),
        Role::Ops => matches!(p, FlagsRead | CatalogRead | OpsRead),
        Role::Finance | Role::Compliance => false,
        Role::Regulator(mine) => matches!(p, Exports(j) if j == *mine),
    }
}

/// What an endpoint needs: each route belongs to one class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    FlagsRead,
    FlagsWrite,
    CatalogRead,
    CatalogWrite,
    OpsRead,
    TokensAdmin,
    Exports(Jurisdiction),
    /// Ask for an operator token for this role: a token holding the role (or admin) may.
    OperatorToken(Role),
}

impl Permission {
    /// What it lets a token do, in words.
    pub fn describe(&self) -> String {
        match self {
            Permission::FlagsRead => "read flags".into(),
            Permission::FlagsWrite => "change flags".into(),
            Permission::CatalogRead => "read the catalog".into(),
            Permission::CatalogWrite => "change the catalog".into(),
            Permission::OpsRead => "read the cells' state".into(),
            Permission::TokensAdmin => "manage API tokens".into(),
            Permission::Exports(j) => format!("download {j}'s regulator exports"),
            Permission::OperatorToken(role) => format!("ask for a `{role}` operator token"),
        }
    }

    /// The roles that grant it, by name.
    pub fn granted_by(&self) -> Vec<String> {
        Role::all().into_iter().filter(|r| allows(r, *self)).map(|r| r.to_string()).collect()
    }
}

/// A stored token: never the secret, only its hash (the key).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Principal {
    pub id: String,
    pub name: String,
    pub roles: Vec<Role>,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
}

impl Principal {
    pub fn may(&self, p: Permission) -> bool {
        self.roles.iter().any(|r| allows(r, p))
    }

    /// How changes name their author: `name (id)`.
    pub fn actor(&self) -> String {
        format!("{} ({})", self.name, self.id)
    }
}

fn hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

fn key_of(secret: &str) -> Vec<u8> {
    [b"token\0".as_slice(), &hash(secret)].concat()
}

/// The token's public id: the first 12 hex digits of its hash (safe to log and show).
fn id_of(secret: &str) -> String {
    format!("tok_{}", &hex::encode(hash(secret))[..12])
}

pub fn new_secret() -> String {
    format!("gct_{}", hex::encode(rand::random::<[u8; 32]>()))
}

/// Resolves a presented secret. `Ok(None)`: no such token.
pub fn authenticate(store: &ControlStore, secret: &str) -> Result<Option<Principal>, StoreError> {
    match store.auth_get(&key_of(secret))? {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StoreError::Corrupt { key: id_of(secret), message: e.to_string() }),
    }
}

/// Stores a new token for `secret`. Blocking.
pub fn token_create(
    store: &ControlStore,
    secret: &str,
    name: &str,
    roles: Vec<Role>,
    created_by: &str,
) -> Result<Principal, StoreError> {
    let principal = Principal {
        id: id_of(secret),
        name: name.to_owned(),
        roles,
        created_at: Utc::now(),
        created_by: created_by.into(),
    };
    let bytes = serde_json::to_vec(&principal).expect("a principal encodes");
    store.auth_put(&key_of(secret), Some(&bytes))?;
    Ok(principal)
}

pub fn token_list(store: &ControlStore) -> Result<Vec<Principal>, StoreError> {
    store
        .auth_all()?
        .into_iter()
        .map(|(k, v)| {
            serde_json::from_slice(&v).map_err(|e| StoreError::Corrupt { key: hex::encode(&k), message: e.to_string() })
        })
        .collect()
}

/// Revokes the token with public id `id`. `Ok(false)`: none.
pub fn token_revoke(store: &ControlStore, id: &str) -> Result<bool, StoreError> {
    for (k, v) in store.auth_all()? {
        let p: Principal = serde_json::from_slice(&v)
            .map_err(|e| StoreError::Corrupt { key: hex::encode(&k), message: e.to_string() })?;
        if p.id == id {
            store.auth_put(&k, None)?;
            return Ok(true);
        }
    }
    Ok(false)
}

/// Where the first admin token came from, for the startup log.
pub enum Bootstrap {
    FromEnv,
    Generated(PathBuf),
    Existing,
}

/// Makes sure an admin can log in: the token in `GLOBAL_CONTROL_ADMIN_TOKEN` if set (added if
/// new), otherwise, when no token exists at all, a generated one written to
/// `<data>/admin-token` (mode 0600). Blocking.
pub fn bootstrap_admin(store: &ControlStore, data_dir: &Path, env: Option<String>) -> anyhow::Result<Bootstrap> {
    if let Some(secret) = env {
        anyhow::ensure!(
            secret.len() >= ENV_TOKEN_CHARS_MIN && secret.bytes().all(|b| b.is_ascii_graphic()),
            "{ADMIN_TOKEN_ENV} must be at least {ENV_TOKEN_CHARS_MIN} printable characters"
        );
        if authenticate(store, &secret)?.is_none() {
            token_create(store, &secret, "bootstrap admin (environment)", vec![Role::Admin], "startup")?;
        }
        return Ok(Bootstrap::FromEnv);
    }
    if !token_list(store)?.is_empty() {
        return Ok(Bootstrap::Existing);
    }
    let secret = new_secret();
    let path = data_dir.join(ADMIN_TOKEN_FILE);
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| anyhow::anyhow!("write {}: {e}", path.display()))?;
        writeln!(file, "{secret}").map_err(|e| anyhow::anyhow!("write {}: {e}", path.display()))?;
        file.sync_all()?;
    }
    token_create(store, &secret, "bootstrap admin (generated)", vec![Role::Admin], "startup")?;
    Ok(Bootstrap::Generated(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_parse_and_grant() {
        assert_eq!(Role::parse("regulator:uk").unwrap(), Role::Regulator(Jurisdiction::Uk));
        assert_eq!(Role::parse("regulator:DK").unwrap().to_string(), "regulator:DK");
        assert!(Role::parse("regulator:FR").is_err() && Role::parse("root").is_err());
        assert!(allows(&Role::Regulator(Jurisdiction::Uk), Permission::Exports(Jurisdiction::Uk)));
        assert!(!allows(&Role::Regulator(Jurisdiction::Uk), Permission::Exports(Jurisdiction::Mt)));
        assert!(!allows(&Role::Product, Permission::CatalogWrite) && allows(&Role::Product, Permission::FlagsWrite));
        assert!(!allows(&Role::Finance, Permission::FlagsRead) && !allows(&Role::Compliance, Permission::OpsRead));
    }
}
