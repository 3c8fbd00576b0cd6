//! Verifying the session tokens cells sign. The router never trusts a token it cannot verify:
//! keys come from each cell's `GET /sessions/key` (fetched once an endpoint is healthy), and a
//! token must be well-formed, signed by its cell's key, and unexpired.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use contracts::sessions::{SessionClaims, SessionKey};
use ed25519_dalek::{Signature, VerifyingKey};
use std::collections::HashMap;
use std::sync::RwLock;

/// Longest token accepted, in bytes: bounds the work an attacker can ask for.
pub const TOKEN_BYTES_MAX: usize = 2_048;

#[derive(Default)]
pub struct SessionKeys {
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

    /// The claims of a valid, unexpired token signed by the key of the cell it names.
    pub fn verify(&self, token: &str, now: i64) -> Result<SessionClaims, &'static str> {
        if token.len() > TOKEN_BYTES_MAX {
            return Err("token too long");
        }
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err("not a compact JWT");
        };
        // Plain parsing is enough here: the signature covers these exact bytes, so a token with
        // a repeated key was signed that way by a cell; the claims' type refuses repeated fields.
        let header: serde_json::Value =
            B64.decode(header).ok().and_then(|h| serde_json::from_slice(&h).ok()).ok_or("bad header")?;
        if header["alg"] != "EdDSA" {
            return Err("not signed with EdDSA");
        }
        let claims: SessionClaims =
            B64.decode(payload).ok().and_then(|p| serde_json::from_slice(&p).ok()).ok_or("bad claims")?;
        let signature: [u8; 64] =
            B64.decode(signature).ok().and_then(|s| s.try_into().ok()).ok_or("bad signature encoding")?;
        let signature = Signature::from_bytes(&signature);
        let signed = &token[..header_and_payload_len(token)];
        let keys = self.by_cell.read().unwrap_or_else(|p| p.into_inner());
        let cell_keys = keys.get(&claims.cell).ok_or("no key known for the token's cell")?;
        if !cell_keys.iter().any(|k| k.verify_strict(signed.as_bytes(), &signature).is_ok()) {
            return Err("signature does not verify");
        }
        if claims.exp <= now {
            return Err("expired");
        }
        if claims.sub.home_cell() != Some(claims.cell.as_str()) {
            return Err("player id does not belong to the token's cell");
        }
        Ok(claims)
    }
}

fn header_and_payload_len(token: &str) -> usize {
    token.rfind('.').unwrap_or(0)
}
