//! Player sessions: a login with a password gives a short-lived access token a cell signs (Ed25519,
//! JWT compact form with `alg: EdDSA`), which the router and the cell verify with the cell's public
//! key, and an opaque refresh token that rotates on every use.

use crate::players::Password;
use crate::PlayerId;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How long an access token lives.
pub const SESSION_TTL_SECONDS: i64 = 15 * 60;
/// Version of the session shapes (2: a login takes a password and answers an access token and a
/// refresh token; the claims name the session. 3: a login may carry a TOTP code).
pub const SESSIONS_VERSION: &str = "3";

/// The signed claims: who, which cell holds them, which session, and when the token expires
/// (unix seconds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SessionClaims {
    pub sub: PlayerId,
    pub cell: String,
    /// The session (the login) this token belongs to: a logout or a reused refresh token ends it.
    pub sid: String,
    pub iat: i64,
    pub exp: i64,
}

/// `POST /sessions`: a login.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SessionRequest {
    pub player_id: PlayerId,
    pub password: Password,
    /// The current code of the player's authenticator, once they have enrolled one
    /// (`POST /players/{id}/totp`): 401 `TOTP_REQUIRED` without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub totp: Option<String>,
}

/// Answer to `POST /players/{id}/totp`: the secret to put in an authenticator app (RFC 6238:
/// SHA-1, 6 digits, 30-second steps), as base32 and as an `otpauth://` URL for a QR code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TotpEnrolment {
    pub secret: String,
    pub otpauth_url: String,
}

/// `POST /sessions/refresh`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

/// Answer to `POST /sessions` and `POST /sessions/refresh`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionResponse {
    /// `Authorization: Bearer <token>` on later requests, for `expiresIn` seconds.
    pub access_token: String,
    /// Opaque; use it once, on `POST /sessions/refresh`, for a new pair. Its prefix names the
    /// home cell (`uk.`), so the router can send it there.
    pub refresh_token: String,
    pub expires_in: i64,
    pub cell: String,
}

/// Answer to `GET /sessions/key`: what a router needs to verify this cell's tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionKey {
    pub cell: String,
    /// Always `EdDSA` (Ed25519).
    pub alg: String,
    /// The 32-byte public key, base64url without padding.
    pub public_key: String,
}

/// Longest token accepted, in bytes: bounds the work an attacker can ask for.
pub const TOKEN_BYTES_MAX: usize = 2_048;

/// The claims of a well-formed, unexpired token whose signature `signed_by` accepts for the cell
/// the token names (`signed_by(cell, signed bytes, signature)`). The rule every party that
/// verifies tokens applies alike: the router before forwarding, the cell before serving.
pub fn verify_token(
    token: &str,
    now: i64,
    signed_by: impl FnOnce(&str, &[u8], &ed25519_dalek::Signature) -> bool,
) -> Result<SessionClaims, &'static str> {
    let claims: SessionClaims =
        verify_jwt(token, |claims: &SessionClaims, signed, signature| signed_by(&claims.cell, signed, signature))?;
    if claims.exp <= now {
        return Err("expired");
    }
    if claims.sub.home_cell() != Some(claims.cell.as_str()) {
        return Err("player id does not belong to the token's cell");
    }
    Ok(claims)
}

/// The claims of a well-formed compact JWT (`alg: EdDSA`, at most [`TOKEN_BYTES_MAX`] bytes)
/// whose signature `signed_by(claims, signed bytes, signature)` accepts. Expiry is the caller's
/// to check, on its own claims.
pub fn verify_jwt<C: serde::de::DeserializeOwned>(
    token: &str,
    signed_by: impl FnOnce(&C, &[u8], &ed25519_dalek::Signature) -> bool,
) -> Result<C, &'static str> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use base64::Engine;
    if token.len() > TOKEN_BYTES_MAX {
        return Err("token too long");
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("not a compact JWT");
    };
    // Plain parsing is enough here: the signature covers these exact bytes, so a token with a
    // repeated key was signed that way; the claims' type refuses repeated fields.
    let header: serde_json::Value =
        B64.decode(header).ok().and_then(|h| serde_json::from_slice(&h).ok()).ok_or("bad header")?;
    if header["alg"] != "EdDSA" {
        return Err("not signed with EdDSA");
    }
    let claims: C = B64.decode(payload).ok().and_then(|p| serde_json::from_slice(&p).ok()).ok_or("bad claims")?;
    let signature: [u8; 64] =
        B64.decode(signature).ok().and_then(|s| s.try_into().ok()).ok_or("bad signature encoding")?;
    let signature = ed25519_dalek::Signature::from_bytes(&signature);
    let signed = &token.as_bytes()[..token.rfind('.').unwrap_or(0)];
    if !signed_by(&claims, signed, &signature) {
        return Err("not signed by the expected key");
    }
    Ok(claims)
}

/// A compact JWT of `claims`, signed with `key` (`alg: EdDSA`).
pub fn sign_jwt<C: Serialize>(claims: &C, kid: &str, key: &ed25519_dalek::SigningKey) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use base64::Engine;
    use ed25519_dalek::Signer;
    let header = serde_json::json!({ "alg": "EdDSA", "typ": "JWT", "kid": kid });
    let signed = format!(
        "{}.{}",
        B64.encode(header.to_string()),
        B64.encode(serde_json::to_vec(claims).expect("claims serialise"))
    );
    let signature = key.sign(signed.as_bytes());
    format!("{signed}.{}", B64.encode(signature.to_bytes()))
}

/// Most tokens a [`VerifiedTokens`] remembers before it starts afresh: a token is 300 bytes of
/// claims, so this bounds it to a few tens of megabytes.
pub const VERIFIED_TOKENS_MAX: usize = 100_000;

/// Tokens already verified, by the SHA-256 of their text, with their claims: a player's token is
/// presented on every request of its 15 minutes, and an Ed25519 verification costs tens of
/// microseconds where a hash and a lookup cost one. Keyed by a hash, so a lookup compares digests
/// of what a client sent, never the token itself; a hit is still checked for expiry.
/// The same holds for operator tokens (`VerifiedTokens<OperatorClaims>`).
pub struct VerifiedTokens<C = SessionClaims> {
    claims: std::sync::RwLock<std::collections::HashMap<[u8; 32], C>>,
}

/// Claims that say when their token expires (unix seconds).
pub trait Expiring: Clone {
    fn exp(&self) -> i64;
}

impl Expiring for SessionClaims {
    fn exp(&self) -> i64 {
        self.exp
    }
}

impl Expiring for crate::operators::OperatorClaims {
    fn exp(&self) -> i64 {
        self.exp
    }
}

impl<C> Default for VerifiedTokens<C> {
    fn default() -> Self {
        VerifiedTokens { claims: Default::default() }
    }
}

impl<C: Expiring> VerifiedTokens<C> {
    /// The claims of `token`: remembered, or verified by `verify` (then remembered).
    pub fn get_or_verify(
        &self,
        token: &str,
        now: i64,
        verify: impl FnOnce() -> Result<C, &'static str>,
    ) -> Result<C, &'static str> {
        use sha2::Digest;
        let digest: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
        if let Some(claims) = self.claims.read().unwrap_or_else(|p| p.into_inner()).get(&digest) {
            return if claims.exp() > now { Ok(claims.clone()) } else { Err("expired") };
        }
        let claims = verify()?;
        let mut remembered = self.claims.write().unwrap_or_else(|p| p.into_inner());
        if remembered.len() >= VERIFIED_TOKENS_MAX {
            remembered.retain(|_, c| c.exp() > now);
            if remembered.len() >= VERIFIED_TOKENS_MAX {
                remembered.clear();
            }
        }
        remembered.insert(digest, claims.clone());
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_verified_once_and_its_expiry_still_holds() {
        let cache = VerifiedTokens::<SessionClaims>::default();
        let claims = SessionClaims {
            sub: PlayerId::new("uk-ann").unwrap(),
            cell: "uk".into(),
            sid: "s".into(),
            iat: 0,
            exp: 100,
        };
        let calls = std::cell::Cell::new(0);
        let verify = || {
            calls.set(calls.get() + 1);
            Ok(claims.clone())
        };
        assert_eq!(cache.get_or_verify("t1", 10, verify), Ok(claims.clone()));
        assert_eq!(cache.get_or_verify("t1", 20, || Err("not called")), Ok(claims.clone()));
        assert_eq!(calls.get(), 1, "verified once");
        assert_eq!(cache.get_or_verify("t1", 100, || Ok(claims.clone())), Err("expired"));
        assert_eq!(
            cache.get_or_verify("t2", 20, || Err("bad signature")),
            Err("bad signature"),
            "another token is verified"
        );
    }
}
