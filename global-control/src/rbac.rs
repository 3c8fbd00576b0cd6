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
use std::fmt;
use std::path::{Path, PathBuf};

/// Environment variable that sets the first admin token (otherwise one is generated).
pub const ADMIN_TOKEN_ENV: &str = "GLOBAL_CONTROL_ADMIN_TOKEN";
/// File in the data directory holding a generated first admin token.
pub const ADMIN_TOKEN_FILE: &str = "admin-token";
/// Shortest secret accepted from the environment: 128 bits of hex.
const ENV_TOKEN_CHARS_MIN: usize = 32;

/// A role. Each grants a set of [`Permission`]s; a token may hold several roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Creates and revokes tokens, and may do everything else.
    Admin,
    /// Flags: create, change, roll out, kill.
    Product,
    /// Providers and games.
    Catalog,
    /// Cells and their sync state, drills; reads flags and the catalog.
    Ops,
    /// A regulator reads its own jurisdiction's exports and nothing else.
    Regulator(Jurisdiction),
}

impl Role {
    pub fn parse(text: &str) -> Result<Role, String> {
        match text {
            "admin" => Ok(Role::Admin),
            "product" => Ok(Role::Product),
            "catalog" => Ok(Role::Catalog),
            "ops" => Ok(Role::Ops),
            other => {
                let j = other
                    .strip_prefix("regulator:")
                    .and_then(|j| serde_json::from_value::<Jurisdiction>(j.to_ascii_uppercase().into()).ok())
                    .ok_or_else(|| {
                        format!("`{other}` is not a role: admin, product, catalog, ops or regulator:<UK|MT|DK|SE|ES>")
                    })?;
                Ok(Role::Regulator(j))
            }
        }
    }

    fn allows(&self, p: Permission) -> bool {
        use Permission::*;
        match self {
            Role::Admin => true,
            Role::Product => matches!(p, FlagsRead | FlagsWrite | CatalogRead),
            Role::Catalog => matches!(p, CatalogRead | CatalogWrite | FlagsRead),
            Role::Ops => matches!(p, FlagsRead | CatalogRead | OpsRead),
            Role::Regulator(mine) => matches!(p, Exports(j) if j == *mine),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Role::Admin => f.write_str("admin"),
            Role::Product => f.write_str("product"),
            Role::Catalog => f.write_str("catalog"),
            Role::Ops => f.write_str("ops"),
            Role::Regulator(j) => write!(f, "regulator:{j}"),
        }
    }
}

impl Serialize for Role {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Role {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Role::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
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
        }
    }

    /// The roles that grant it, by name.
    pub fn granted_by(&self) -> Vec<String> {
        let mut roles = vec![Role::Admin, Role::Product, Role::Catalog, Role::Ops];
        roles.extend(Jurisdiction::ALL.map(Role::Regulator));
        roles.into_iter().filter(|r| r.allows(*self)).map(|r| r.to_string()).collect()
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
        self.roles.iter().any(|r| r.allows(p))
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
        assert!(Role::Regulator(Jurisdiction::Uk).allows(Permission::Exports(Jurisdiction::Uk)));
        assert!(!Role::Regulator(Jurisdiction::Uk).allows(Permission::Exports(Jurisdiction::Mt)));
        assert!(!Role::Product.allows(Permission::CatalogWrite) && Role::Product.allows(Permission::FlagsWrite));
    }
}
