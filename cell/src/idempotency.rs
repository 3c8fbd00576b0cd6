//! Idempotency records: what a mutating request answered, kept under its `X-Idempotency-Key` in the
//! owning domain's subspace and written in the same store transaction as the request's effect, so
//! a crash can never leave one without the other.
//!
//! A replay with the same key and the same request gets the stored answer back; the same key with
//! a different request is refused (`IDEMPOTENCY_KEY_REUSED`). Requests refused as bad input (400)
//! never reach a domain and store nothing; what a domain decides, accepted or refused, is stored.
//!
//! Records are kept for a window (24 hours at least, longer where a regulator asks: `cell serve
//! --idempotency-window-hours`), then [`spawn_purger`] deletes them in the background. A request
//! replayed after its window is a new request.

use crate::store::{Store, StoreError};
use foundationdb_tuple::Subspace;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;

/// The shortest window a cell may keep records for: a client's retries of one request span
/// minutes, a provider's hours.
pub const WINDOW_MIN: Duration = Duration::from_secs(24 * 3600);
/// Records examined per purge transaction: bounds one transaction well under the store's limits.
const PURGE_BATCH: usize = 1_000;

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
    /// When it was decided (unix seconds); 0 in records stored before records expired, which the
    /// first purge removes.
    #[serde(default)]
    pub at: i64,
}

/// The key of `key`'s record in a domain's subspace.
pub fn key_in(space: &Subspace, key: &str) -> Vec<u8> {
    space.pack(&("idem", key))
}

/// Deletes the records in `space` decided before `before` (unix seconds), from `from` (a key to
/// resume at), at most [`PURGE_BATCH`] examined: returns how many were deleted and where to resume
/// (`None` once the subspace's records are all examined). Blocking.
pub fn purge(
    store: &dyn Store,
    space: &Subspace,
    from: Option<Vec<u8>>,
    before: i64,
) -> Result<(usize, Option<Vec<u8>>), StoreError> {
    let (begin, end) = space.subspace(&"idem").range();
    let begin = from.unwrap_or(begin);
    // Snapshot reads: a record is written once and never rewritten, so clearing one that
    // expired cannot undo anyone's write, and the writer adding new records inside the range
    // (every operation does) must not make this transaction conflict, or under load the purge
    // would retry for ever.
    let mut tx = store.begin_snapshot_reads()?;
    let page = tx.get_range(&begin, &end, PURGE_BATCH, false)?;
    let mut purged = 0;
    for (key, value) in &page {
        let record = IdempotencyRecord::decode(value).map_err(|e| StoreError::corrupt(key, e))?;
        if record.at < before {
            tx.clear(key)?;
            purged += 1;
        }
    }
    tx.commit()?;
    let next = (page.len() == PURGE_BATCH).then(|| page.last().map(|(k, _)| [k.as_slice(), &[0]].concat())).flatten();
    Ok((purged, next))
}

/// Purges expired records of every domain's subspace every `every`, a batch at a time (so the
/// store is never held long), logging how many went.
pub fn spawn_purger(
    store: Arc<dyn Store>,
    spaces: Vec<Subspace>,
    window: Duration,
    every: Duration,
    clock: Arc<dyn crate::clock::Clock>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let before = clock.now().timestamp() - i64::try_from(window.as_secs()).unwrap_or(i64::MAX);
            let (store, spaces) = (store.clone(), spaces.clone());
            let purged = tokio::task::spawn_blocking(move || {
                let mut total = 0;
                for space in &spaces {
                    let mut from = None;
                    loop {
                        let (purged, next) = purge(store.as_ref(), space, from, before)?;
                        total += purged;
                        match next {
                            Some(next) => from = Some(next),
                            None => break,
                        }
                    }
                }
                Ok::<_, StoreError>(total)
            })
            .await;
            match purged {
                Ok(Ok(0)) => {}
                Ok(Ok(n)) => tracing::info!(purged = n, "idempotency records past their window deleted"),
                Ok(Err(e)) => tracing::warn!(error = %e, "idempotency purge failed; next tick"),
                Err(e) => tracing::warn!(error = %e, "idempotency purge task failed; next tick"),
            }
        }
    })
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
