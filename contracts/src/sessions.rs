//! Player sessions: short-lived tokens a cell signs (Ed25519, JWT compact form with `alg: EdDSA`)
//! and the router verifies with the cell's public key, to send a player to their home cell from
//! wherever they connect.

use crate::PlayerId;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How long a session token lives.
pub const SESSION_TTL_SECONDS: i64 = 15 * 60;

/// The signed claims: who, which cell holds them, and when the token expires (unix seconds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SessionClaims {
    pub sub: PlayerId,
    pub cell: String,
    pub iat: i64,
    pub exp: i64,
}

/// `POST /sessions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SessionRequest {
    pub player_id: PlayerId,
}

/// Answer to `POST /sessions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionResponse {
    /// `Authorization: Bearer <token>` on later requests.
    pub token: String,
    pub expires_at: chrono::DateTime<chrono::Utc>,
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
