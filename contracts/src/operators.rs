//! Operators: people who run the platform hold roles from global-control. For a cell's back office
//! they present an operator token: a short-lived JWT (`alg: EdDSA`) that global-control signs for
//! one role, and that cells verify with global-control's public key, received over the sync (or,
//! before a cell first syncs, from a bootstrap file in its data directory).

use crate::sessions::{sign_jwt, verify_jwt};
use crate::Jurisdiction;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Version of the operator-token shapes.
pub const OPERATORS_VERSION: &str = "1";
/// How long an operator token lives.
pub const OPERATOR_TOKEN_TTL_SECONDS: i64 = 15 * 60;
/// global-control's public key as a file (an [`OperatorKey`] in JSON): global-control writes it
/// in its data directory; copied into a cell's, the cell accepts tokens it signs before the first
/// sync brings the key.
pub const KEY_FILE: &str = "operator-key.json";
/// The issuer every operator token names.
pub const ISSUER: &str = "global-control";

/// A role. On the control API each grants a set of permissions; in a cell's back office, the routes
/// of one table (`cell::api::callers::roles_for`). `admin` may do everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Admin,
    /// Flags (control API).
    Product,
    /// Providers and games (control API).
    Catalog,
    /// Cells, drills, the cells' operational routes.
    Ops,
    /// Money moved by hand, balances, the ledger.
    Finance,
    /// Audit chain, events, player records.
    Compliance,
    /// A regulator reads its own jurisdiction's exports and audit trail, and nothing else.
    Regulator(Jurisdiction),
}

impl Role {
    /// Every role, regulators included: for tables and help texts.
    pub fn all() -> Vec<Role> {
        let mut roles = vec![Role::Admin, Role::Product, Role::Catalog, Role::Ops, Role::Finance, Role::Compliance];
        roles.extend(Jurisdiction::ALL.map(Role::Regulator));
        roles
    }

    pub fn parse(text: &str) -> Result<Role, String> {
        match text {
            "admin" => Ok(Role::Admin),
            "product" => Ok(Role::Product),
            "catalog" => Ok(Role::Catalog),
            "ops" => Ok(Role::Ops),
            "finance" => Ok(Role::Finance),
            "compliance" => Ok(Role::Compliance),
            other => other
                .strip_prefix("regulator:")
                .and_then(|j| serde_json::from_value::<Jurisdiction>(j.to_ascii_uppercase().into()).ok())
                .map(Role::Regulator)
                .ok_or_else(|| {
                    format!(
                        "`{other}` is not a role: admin, product, catalog, ops, finance, compliance or \
                         regulator:<UK|MT|DK|SE|ES>"
                    )
                }),
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
            Role::Finance => f.write_str("finance"),
            Role::Compliance => f.write_str("compliance"),
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

impl JsonSchema for Role {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Role".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "admin, product, catalog, ops, finance, compliance or regulator:<UK|MT|DK|SE|ES>",
            "pattern": "^(admin|product|catalog|ops|finance|compliance|regulator:(UK|MT|DK|SE|ES|uk|mt|dk|se|es))$"
        })
    }
}

/// What an operator token says: who asked (the control-API token's public id), for which role,
/// its own id, and when it expires (unix seconds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OperatorClaims {
    pub iss: String,
    /// The control-API token that asked for it (`tok_…`).
    pub sub: String,
    /// This token's id (`opt_…`): what the back office's events record.
    pub jti: String,
    pub role: Role,
    pub iat: i64,
    pub exp: i64,
}

/// One of global-control's operator-token keys, as cells hold it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OperatorKey {
    /// The `kid` of the tokens it signs.
    pub id: String,
    /// Always `EdDSA` (Ed25519).
    pub alg: String,
    /// The 32-byte public key, base64url without padding.
    pub public_key: String,
}

impl OperatorKey {
    /// The public half of `key`, named by a digest of it.
    pub fn of(key: &ed25519_dalek::SigningKey) -> OperatorKey {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
        use base64::Engine;
        use sha2::{Digest, Sha256};
        let public = key.verifying_key().to_bytes();
        OperatorKey {
            id: format!("gc-{}", &hex::encode(Sha256::digest(public))[..12]),
            alg: "EdDSA".into(),
            public_key: B64.encode(public),
        }
    }

    fn verifying_key(&self) -> Option<ed25519_dalek::VerifyingKey> {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
        use base64::Engine;
        let bytes: [u8; 32] = B64.decode(&self.public_key).ok()?.try_into().ok()?;
        ed25519_dalek::VerifyingKey::from_bytes(&bytes).ok()
    }
}

/// `POST /operator-tokens` on global-control.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OperatorTokenRequest {
    pub role: Role,
}

/// Answer to `POST /operator-tokens`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OperatorTokenResponse {
    /// `Authorization: Bearer <token>` on a cell's back-office routes, for `expiresIn` seconds.
    pub token: String,
    pub token_id: String,
    pub role: Role,
    pub expires_in: i64,
}

/// Who did a back-office write, as its event records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OperatorRef {
    pub token_id: String,
    pub role: Role,
}

/// A new token for `role`, asked for by the control-API token `asked_by`, issued `now` (unix
/// seconds), signed with global-control's `key`.
pub fn issue(key: &ed25519_dalek::SigningKey, role: Role, asked_by: &str, now: i64) -> (OperatorClaims, String) {
    let claims = OperatorClaims {
        iss: ISSUER.into(),
        sub: asked_by.into(),
        jti: format!("opt_{}", hex::encode(rand::random::<[u8; 12]>())),
        role,
        iat: now,
        exp: now + OPERATOR_TOKEN_TTL_SECONDS,
    };
    let token = sign_jwt(&claims, &OperatorKey::of(key).id, key);
    (claims, token)
}

/// The claims of an unexpired operator token signed by one of `keys`.
pub fn verify(token: &str, now: i64, keys: &[OperatorKey]) -> Result<OperatorClaims, &'static str> {
    let claims: OperatorClaims = verify_jwt(token, |claims: &OperatorClaims, signed, signature| {
        claims.iss == ISSUER
            && keys.iter().filter_map(OperatorKey::verifying_key).any(|k| k.verify_strict(signed, signature).is_ok())
    })?;
    if claims.exp <= now {
        return Err("expired");
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_parse_and_print_alike() {
        for role in Role::all() {
            assert_eq!(Role::parse(&role.to_string()), Ok(role));
        }
        assert_eq!(Role::parse("regulator:uk"), Ok(Role::Regulator(Jurisdiction::Uk)));
        assert!(Role::parse("regulator:FR").is_err() && Role::parse("root").is_err());
    }

    #[test]
    fn a_token_verifies_with_its_key_only_and_until_it_expires() {
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let other = ed25519_dalek::SigningKey::from_bytes(&[8; 32]);
        let (claims, token) = issue(&key, Role::Finance, "tok_1", 1_000);
        assert_eq!(verify(&token, 1_001, &[OperatorKey::of(&other), OperatorKey::of(&key)]), Ok(claims.clone()));
        assert_eq!(verify(&token, 1_001, &[OperatorKey::of(&other)]), Err("not signed by the expected key"));
        assert_eq!(verify(&token, claims.exp, &[OperatorKey::of(&key)]), Err("expired"));
        assert!(verify(&token, 1_001, &[]).is_err());
        // A player's session token is not an operator token, whoever signed it.
        let player = crate::sessions::sign_jwt(&serde_json::json!({"sub": "uk-1"}), "k", &key);
        assert_eq!(verify(&player, 1_001, &[OperatorKey::of(&key)]), Err("bad claims"));
    }
}
