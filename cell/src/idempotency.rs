//! Idempotency records: what a mutating request answered, kept under its `X-Idempotency-Key` in the
//! owning domain's subspace and written in the same store transaction as the request's effect, so
//! a crash can never leave one without the other.
//!
//! A replay with the same key and the same request gets the stored answer back; the same key with
//! a different request is refused (`IDEMPOTENCY_KEY_REUSED`). Requests refused as bad input (400)
//! never reach a domain and store nothing; what a domain decides, accepted or refused, is stored.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Longest idempotency key accepted, in bytes.
pub const KEY_BYTES_MAX: usize = 128;

/// Keys starting with this are derived by the platform from game providers' transaction ids
/// (`g|<provider>|<transaction>`): no client key may start with it, so the two never meet.
pub const PROVIDER_KEY_PREFIX: &str = "g|";

/// The client's key for one logical request, and the fingerprint of the request it was first
/// used with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    pub key: String,
    pub request_hash: [u8; 32],
}

impl IdempotencyKey {
    /// Fingerprints `route` plus the request's JSON in canonical form (object keys sorted, no
    /// whitespace), so the same request with keys in another order or other spacing is the same.
    pub fn new(key: &str, route: &str, request: &serde_json::Value) -> Result<IdempotencyKey, String> {
        if key.is_empty() || key.len() > KEY_BYTES_MAX || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!("X-Idempotency-Key must be 1 to {KEY_BYTES_MAX} printable ASCII characters"));
        }
        if key.starts_with(PROVIDER_KEY_PREFIX) {
            return Err(format!(
                "X-Idempotency-Key may not start with `{PROVIDER_KEY_PREFIX}`: that space is game providers' transaction ids"
            ));
        }
        Ok(IdempotencyKey::internal(key.to_owned(), route, request))
    }

    /// A key the platform derives itself (from a provider's transaction id, say) rather than takes
    /// from a client header: no header rules apply.
    pub fn internal(key: String, route: &str, request: &serde_json::Value) -> IdempotencyKey {
        // serde_json's map is ordered by key, so this is canonical.
        IdempotencyKey::fingerprinted(key, route, request.to_string().as_bytes())
    }

    /// A key whose request is already in a canonical byte form (a typed request serialised).
    pub fn fingerprinted(key: String, route: &str, canonical: &[u8]) -> IdempotencyKey {
        let mut hasher = Sha256::new();
        hasher.update(route.as_bytes());
        hasher.update([0]);
        hasher.update(canonical);
        IdempotencyKey { key, request_hash: hasher.finalize().into() }
    }
}

/// The stored answer of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    pub request_hash: [u8; 32],
    pub status: u16,
    /// The JSON body answered.
    pub body: String,
}

/// What a domain answers for a request that carries a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: bytes::Bytes,
    /// True when this is the stored answer of an earlier request with the same key.
    pub replayed: bool,
}

impl IdempotencyRecord {
    pub fn encode(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(self.body.len() + 64);
        rmp_serde::encode::write(&mut buf, self).expect("an idempotency record always encodes");
        buf
    }

    pub fn decode(bytes: &[u8]) -> Result<IdempotencyRecord, rmp_serde::decode::Error> {
        rmp_serde::from_slice(bytes)
    }

    /// Matches a new request against this record: the stored answer for the same request, or
    /// `None` when the key was used for a different one.
    pub fn replay_for(&self, key: &IdempotencyKey) -> Option<Answer> {
        (self.request_hash == key.request_hash).then(|| Answer {
            status: self.status,
            body: bytes::Bytes::from(self.body.clone().into_bytes()),
            replayed: true,
        })
    }
}
