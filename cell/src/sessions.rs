//! Access tokens: the cell signs a short-lived token naming the player, their home cell and their
//! session (JWT compact form, `alg: EdDSA`); routers verify it with the key `GET /sessions/key`
//! publishes, and the cell verifies it again before it serves a player route.
//! The signing key lives in the data directory, created on first start, readable by its owner only.

use crate::signing_key::KeyError;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use contracts::sessions::{SessionClaims, SessionKey, SESSION_TTL_SECONDS};
use contracts::PlayerId;
use ed25519_dalek::SigningKey;
use std::path::Path;

pub struct SessionSigner {
    cell: String,
    key: SigningKey,
    /// Tokens already verified: the signature is checked once per token, not per request.
    verified: contracts::sessions::VerifiedTokens,
}

impl SessionSigner {
    /// Loads the key at `path`, or creates it there.
    pub fn load_or_create(path: &Path, cell: &str) -> Result<SessionSigner, KeyError> {
        Ok(SessionSigner {
            cell: cell.to_owned(),
            key: crate::signing_key::load_or_create(path)?,
            verified: Default::default(),
        })
    }

    /// A token for `player`'s session `sid`, valid from `now` for `SESSION_TTL_SECONDS`.
    pub fn issue(&self, player: &PlayerId, sid: &str, now: i64) -> (String, i64) {
        let claims = SessionClaims {
            sub: player.clone(),
            cell: self.cell.clone(),
            sid: sid.to_owned(),
            iat: now,
            exp: now + SESSION_TTL_SECONDS,
        };
        (contracts::sessions::sign_jwt(&claims, &self.cell, &self.key), claims.exp)
    }

    /// The claims of a token this cell signed, unexpired at `now`.
    pub fn verify(&self, token: &str, now: i64) -> Result<SessionClaims, &'static str> {
        self.verified.get_or_verify(token, now, || {
            let key = self.key.verifying_key();
            contracts::sessions::verify_token(token, now, |cell, signed, signature| {
                cell == self.cell && key.verify_strict(signed, signature).is_ok()
            })
        })
    }

    pub fn public_key(&self) -> SessionKey {
        SessionKey {
            cell: self.cell.clone(),
            alg: "EdDSA".into(),
            public_key: B64.encode(self.key.verifying_key().to_bytes()),
        }
    }
}
