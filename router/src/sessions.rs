//! Verifying the session tokens cells sign. The router never trusts a token it cannot verify:
//! keys come from each cell's `GET /sessions/key` (fetched once an endpoint is healthy), and a
//! token must be well-formed, signed by its cell's key, and unexpired.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use contracts::sessions::{SessionClaims, SessionKey};
use ed25519_dalek::VerifyingKey;
use std::collections::HashMap;
use std::sync::RwLock;

pub use contracts::sessions::TOKEN_BYTES_MAX;

#[derive(Default)]
pub struct SessionKeys {
    /// Tokens already verified (keys are only ever added, so a verified token stays valid until
    /// it expires).
    verified: contracts::sessions::VerifiedTokens,
    /// Cell id -> the keys of its endpoints (a standby signs with its own key).
    by_cell: RwLock<HashMap<String, Vec<VerifyingKey>>>,
    /// Endpoints whose key is known, so each is fetched once.
    fetched: RwLock<Vec<String>>,
}

impl SessionKeys {
    pub fn knows(&self, endpoint: &str) -> bool {
        self.fetched.read().unwrap_or_else(|p| p.into_inner()).iter().any(|e| e == endpoint)
    }

    /// Records the key an endpoint of `cell` published.
    pub fn add(&self, endpoint: &str, cell: &str, key: &SessionKey) -> Result<(), String> {
        if key.cell != cell || key.alg != "EdDSA" {
            return Err(format!(
                "{endpoint} published a key for `{}` ({}), expected `{cell}` (EdDSA)",
                key.cell, key.alg
            ));
        }
        let bytes: [u8; 32] = B64
            .decode(&key.public_key)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| format!("{endpoint} published a malformed key"))?;
        let key = VerifyingKey::from_bytes(&bytes).map_err(|e| format!("{endpoint}: {e}"))?;
        self.by_cell.write().unwrap_or_else(|p| p.into_inner()).entry(cell.to_owned()).or_default().push(key);
        self.fetched.write().unwrap_or_else(|p| p.into_inner()).push(endpoint.to_owned());
        Ok(())
    }

    /// The claims of a valid, unexpired token signed by a key of the cell it names.
    pub fn verify(&self, token: &str, now: i64) -> Result<SessionClaims, &'static str> {
        self.verified.get_or_verify(token, now, || {
            let keys = self.by_cell.read().unwrap_or_else(|p| p.into_inner());
            contracts::sessions::verify_token(token, now, |cell, signed, signature| {
                keys.get(cell).is_some_and(|keys| keys.iter().any(|k| k.verify_strict(signed, signature).is_ok()))
            })
        })
    }
}
