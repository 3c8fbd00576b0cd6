//! Audit: the cell's WORM archive. Every money and round event is appended to a hash-chained log
//! in the same store transaction as the event itself (the wallet's writer does it, so the chain
//! has one writer and one order). The format is `contracts::audit`'s; nothing here updates or
//! deletes a record, and no route does.
//!
//! Signed checkpoints: the cell signs the chain head with its audit key (`audit-ed25519.key` in
//! the data directory), periodically and on demand, so a third party holding the public key can
//! check the records up to a checkpoint without trusting this code.
//!
//! Key layout of the audit subspace:
//! ```text
//! ("rec", seq)   -> StoredRecord   the chain, from 1
//! ("head",)      -> (seq, hash)    the last record, written with it
//! ("cp", seq)    -> Checkpoint     signed heads
//! ```

use crate::store::{subspaces, transact_writes, Store, StoreError, Transaction};
use contracts::audit::{AuditRecord, AuditRecordPage, ChainVerifier, Checkpoint, CheckpointList, VerifyReport};
use ed25519_dalek::{Signer, SigningKey};
use serde::{Deserialize, Serialize};

/// Most records one page of `GET /audit/records` returns.
pub const PAGE_RECORDS_MAX: usize = 1_000;
/// Records read per store transaction while verifying.
const VERIFY_PAGE: usize = 1_000;

fn record_key(seq: u64) -> Vec<u8> {
    subspaces::audit().pack(&("rec", seq))
}

/// The position a record or checkpoint key names (its second element).
fn key_seq(key: &[u8]) -> Result<u64, foundationdb_tuple::PackError> {
    subspaces::audit().unpack::<(String, u64)>(key).map(|(_, seq)| seq)
}

fn records_range(after: u64) -> (Vec<u8>, Vec<u8>) {
    let space = subspaces::audit().subspace(&"rec");
    // After the last position there is nothing: an empty range, not an overflow.
    let begin = after.checked_add(1).map_or_else(|| space.range().1, |first| space.pack(&(first,)));
    (begin, space.range().1)
}

fn head_key() -> Vec<u8> {
    subspaces::audit().pack(&("head",))
}

fn checkpoint_key(seq: u64) -> Vec<u8> {
    subspaces::audit().pack(&("cp", seq))
}

/// A record as stored: the hashes as bytes, the event as the exact JSON text hashed (a string,
/// so MessagePack keeps it as one compact run of bytes).
#[derive(Debug, Serialize, Deserialize)]
struct StoredRecord {
    prev: [u8; 32],
    hash: [u8; 32],
    event: String,
}

fn decode<T: for<'de> Deserialize<'de>>(what: &str, bytes: &[u8]) -> Result<T, StoreError> {
    rmp_serde::from_slice(bytes).map_err(|e| StoreError::Corrupt { key: what.to_owned(), why: e.to_string() })
}

/// The chain's end as its one writer sees it: append records, then write the head once. The
/// default is the empty chain (its head is `contracts::audit::GENESIS`, all zeros).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AuditChain {
    seq: u64,
    head: [u8; 32],
}

impl AuditChain {
    /// Reads the chain's end from the store.
    pub fn load(tx: &mut dyn Transaction) -> Result<AuditChain, StoreError> {
        AuditChain::decode(tx.get(&head_key())?.as_deref()).map_err(|e| StoreError::corrupt(&head_key(), e))
    }

    /// The chain's head a commit's write set leaves (`seq:hash` in hex), if it moved it: what a
    /// standby checks its own chain against once it applied the commit.
    pub fn head_written(writes: &[(Vec<u8>, Option<Vec<u8>>)]) -> Option<String> {
        let key = head_key();
        let (_, value) = writes.iter().find(|(k, _)| *k == key)?;
        let chain = AuditChain::decode(value.as_deref()).ok()?;
        Some(chain.describe())
    }

    /// Whether a commit's write set continues this chain: the first record it appends (the
    /// lowest position) sits right after this head and links to it. `Err` names the break; a
    /// write set that appends nothing continues any chain.
    pub fn continued_by(&self, writes: &[(Vec<u8>, Option<Vec<u8>>)]) -> Result<(), String> {
        let first = writes
            .iter()
            .filter_map(|(k, v)| {
                let (kind, seq): (String, u64) = subspaces::audit().unpack(k).ok()?;
                (kind == "rec").then_some((seq, v.as_deref()?))
            })
            .min_by_key(|(seq, _)| *seq);
        let Some((seq, value)) = first else { return Ok(()) };
        let record: StoredRecord = decode("audit record", value).map_err(|e| e.to_string())?;
        if seq != self.seq + 1 || record.prev != self.head {
            return Err(format!(
                "record {seq} links to {} but this chain ends at {}",
                hex::encode(record.prev),
                self.describe()
            ));
        }
        Ok(())
    }

    /// The chain's head if `key` is where it is kept and `value` decodes.
    pub fn head_at(key: &[u8], value: &[u8]) -> Option<AuditChain> {
        (key == head_key().as_slice()).then(|| AuditChain::decode(Some(value)).ok()).flatten()
    }

    /// The position of its last record, and its hash.
    pub fn end(&self) -> (u64, [u8; 32]) {
        (self.seq, self.head)
    }

    /// `seq:hash`, hex.
    pub fn describe(&self) -> String {
        format!("{}:{}", self.seq, hex::encode(self.head))
    }

    /// The chain's end from the stored head (`None`: the empty chain).
    fn decode(head: Option<&[u8]>) -> Result<AuditChain, rmp_serde::decode::Error> {
        let Some(bytes) = head else { return Ok(AuditChain::default()) };
        let (seq, head): (u64, [u8; 32]) = rmp_serde::from_slice(bytes)?;
        Ok(AuditChain { seq, head })
    }

    /// Appends `event` (an envelope's JSON text) as the next record, in `tx`, and returns its
    /// position.
    pub fn append(&mut self, tx: &mut dyn Transaction, event: String) -> Result<u64, StoreError> {
        let seq = self.seq + 1;
        let hash = contracts::audit::record_hash(seq, &self.head, event.as_bytes());
        let record = StoredRecord { prev: self.head, hash, event };
        let mut value = Vec::with_capacity(record.event.len() + 96);
        rmp_serde::encode::write(&mut value, &record).expect("an audit record encodes");
        tx.set(&record_key(seq), &value)?;
        self.seq = seq;
        self.head = hash;
        Ok(seq)
    }

    /// Writes the chain's end, once per transaction that appended.
    pub fn write_head(&self, tx: &mut dyn Transaction) -> Result<(), StoreError> {
        tx.set(&head_key(), &rmp_serde::to_vec(&(self.seq, self.head)).expect("a head encodes"))
    }
}

fn wire(seq: u64, r: StoredRecord) -> AuditRecord {
    AuditRecord { seq, prev_hash: hex::encode(r.prev), hash: hex::encode(r.hash), event: r.event }
}

/// The events (each its exact JSON text) of the records at `positions`, by position, for the
/// outbox to serve. `Err` says why one cannot be served: missing, not decodable, or changed since
/// it was written (its text no longer gives its stored hash). A page's chained events are
/// consecutive records, read in one range read; scattered positions, which only a damaged outbox
/// holds, are read one by one.
pub fn record_events(
    tx: &mut dyn Transaction,
    positions: &[u64],
) -> Result<std::collections::HashMap<u64, Result<String, String>>, StoreError> {
    let mut found = std::collections::HashMap::with_capacity(positions.len());
    let (Some(&first), Some(&last)) = (positions.iter().min(), positions.iter().max()) else { return Ok(found) };
    let span = (last - first).saturating_add(1);
    let rows = if span <= PAGE_RECORDS_MAX as u64 {
        let begin = record_key(first);
        let end = last.checked_add(1).map_or_else(|| records_range(0).1, record_key);
        tx.get_range(&begin, &end, span as usize, false)?
            .into_iter()
            .map(|(key, value)| Ok((key_seq(&key).map_err(|e| StoreError::corrupt(&key, e))?, value)))
            .collect::<Result<Vec<_>, StoreError>>()?
    } else {
        let mut rows = Vec::with_capacity(positions.len());
        for &seq in positions {
            if let Some(value) = tx.get(&record_key(seq))? {
                rows.push((seq, value));
            }
        }
        rows
    };
    for (seq, value) in rows {
        let event = match rmp_serde::from_slice::<StoredRecord>(&value) {
            Err(e) => Err(format!("audit record {seq} does not decode: {e}")),
            Ok(r) if contracts::audit::record_hash(seq, &r.prev, r.event.as_bytes()) != r.hash => {
                Err(format!("audit record {seq} does not match its hash: changed since it was written"))
            }
            Ok(r) => Ok(r.event),
        };
        found.insert(seq, event);
    }
    for &seq in positions {
        found.entry(seq).or_insert_with(|| Err(format!("audit record {seq} is missing")));
    }
    Ok(found)
}

/// One record read back for an export: its position, hashes and event text, its hash checked.
#[derive(Debug, Clone)]
pub struct ChainRecord {
    pub seq: u64,
    pub prev: [u8; 32],
    pub hash: [u8; 32],
    pub event: String,
}

/// The chain's length (0 when empty) and its head hash.
pub fn head(store: &dyn Store) -> Result<(u64, [u8; 32]), StoreError> {
    let chain = AuditChain::load(store.begin_snapshot_reads()?.as_mut())?;
    Ok((chain.seq, chain.head))
}

/// The record at `seq`, its hash checked against its text. `None` past the head.
pub fn record(store: &dyn Store, seq: u64) -> Result<Option<ChainRecord>, StoreError> {
    let mut tx = store.begin_snapshot_reads()?;
    let Some(value) = tx.get(&record_key(seq))? else { return Ok(None) };
    checked(seq, decode("audit record", &value)?).map(Some)
}

fn checked(seq: u64, r: StoredRecord) -> Result<ChainRecord, StoreError> {
    if contracts::audit::record_hash(seq, &r.prev, r.event.as_bytes()) != r.hash {
        return Err(StoreError::Corrupt {
            key: format!("audit record {seq}"),
            why: "its text no longer gives its hash: changed since it was written".into(),
        });
    }
    Ok(ChainRecord { seq, prev: r.prev, hash: r.hash, event: r.event })
}

/// Calls `each` with the records `first..=last`, in order, a page at a time (memory does not grow
/// with the range), each hash and link to the one before checked. A gap, a changed record or a
/// broken link is an error: nothing is read past it.
pub fn scan(
    store: &dyn Store,
    first: u64,
    last: u64,
    mut each: impl FnMut(ChainRecord) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut after = first.saturating_sub(1);
    let mut prev: Option<[u8; 32]> = None;
    while after < last {
        let mut tx = store.begin_snapshot_reads()?;
        let (begin, _) = records_range(after);
        let end = record_key(last.saturating_add(1));
        let page = usize::try_from((last - after).min(VERIFY_PAGE as u64)).unwrap_or(VERIFY_PAGE);
        let rows = tx.get_range(&begin, &end, page, false)?;
        if rows.is_empty() {
            return Err(StoreError::Corrupt { key: format!("audit record {}", after + 1), why: "missing".into() });
        }
        for (key, value) in rows {
            let seq = key_seq(&key).map_err(|e| StoreError::corrupt(&key, e))?;
            if seq != after + 1 {
                return Err(StoreError::Corrupt { key: format!("audit record {}", after + 1), why: "missing".into() });
            }
            let record = checked(seq, decode("audit record", &value)?)?;
            if prev.is_some_and(|p| p != record.prev) {
                return Err(StoreError::Corrupt {
                    key: format!("audit record {seq}"),
                    why: "does not link to the record before it".into(),
                });
            }
            prev = Some(record.hash);
            after = seq;
            each(record)?;
        }
    }
    Ok(())
}

/// Up to `limit` records after position `after`.
pub fn records_page(store: &dyn Store, after: u64, limit: usize) -> Result<AuditRecordPage, StoreError> {
    let mut tx = store.begin()?;
    let head_seq = AuditChain::load(tx.as_mut())?.seq;
    let (begin, end) = records_range(after);
    let mut records = Vec::new();
    for (key, value) in tx.get_range(&begin, &end, limit.clamp(1, PAGE_RECORDS_MAX), false)? {
        let seq = key_seq(&key).map_err(|e| StoreError::corrupt(&key, e))?;
        records.push(wire(seq, decode("audit record", &value)?));
    }
    Ok(AuditRecordPage { records, head_seq })
}

/// Checks every record against the one before it, the chain against its stored head, and every
/// checkpoint against the records and `public_key`. Reads page by page: the chain only grows, so
/// records up to the head read first are stable.
/// A stored head or checkpoint that does not decode is a broken chain, not a failure to check.
pub fn verify(store: &dyn Store, public_key: &str) -> Result<VerifyReport, StoreError> {
    let broken = |seq: u64, problem: String| VerifyReport {
        ok: false,
        records: 0,
        head: String::new(),
        first_bad: Some(contracts::audit::BadRecord { seq, problem }),
        checkpoints_verified: 0,
    };
    let (head, checkpoints) = {
        let mut tx = store.begin()?;
        (tx.get(&head_key())?, checkpoint_rows(tx.as_mut())?)
    };
    let head = match AuditChain::decode(head.as_deref()) {
        Ok(head) => head,
        Err(e) => return Ok(broken(0, format!("the stored head does not decode: {e}"))),
    };
    let checkpoints = match checkpoints_decode(checkpoints) {
        Ok(checkpoints) => checkpoints,
        Err((seq, e)) => return Ok(broken(seq, format!("the checkpoint of record {seq} does not decode: {e}"))),
    };
    let mut chain = ChainVerifier::default();
    let mut after = 0;
    'pages: while after < head.seq {
        let mut tx = store.begin()?;
        let (begin, end) = records_range(after);
        let rows = tx.get_range(&begin, &end, VERIFY_PAGE, false)?;
        if rows.is_empty() {
            break;
        }
        for (key, value) in rows {
            let expected = chain.good() + 1;
            let seq = match key_seq(&key) {
                Ok(seq) => seq,
                Err(e) => {
                    chain.fail(expected, format!("a key in the chain does not decode: {e}"));
                    break 'pages;
                }
            };
            if seq > head.seq {
                break 'pages; // appended after the head was read
            }
            let record: StoredRecord = match rmp_serde::from_slice(&value) {
                Ok(r) => r,
                Err(e) => {
                    chain.fail(expected, format!("record {seq} does not decode: {e}"));
                    break 'pages;
                }
            };
            if chain.check(seq, &hex::encode(record.prev), &hex::encode(record.hash), record.event.as_bytes()).is_none()
            {
                break 'pages;
            }
            after = seq;
        }
    }
    if chain.good() < head.seq {
        chain.fail(
            chain.good() + 1,
            format!("the chain ends at record {} but its head is record {}", chain.good(), head.seq),
        );
    }
    let mut report = chain.finish(&checkpoints, public_key);
    if report.ok && report.head != hex::encode(head.head) {
        report.ok = false;
        report.first_bad = Some(contracts::audit::BadRecord {
            seq: head.seq,
            problem: "the last record's hash is not the stored head".into(),
        });
    }
    Ok(report)
}

fn checkpoint_rows(tx: &mut dyn Transaction) -> Result<Vec<crate::store::KeyValue>, StoreError> {
    let (begin, end) = subspaces::audit().subspace(&"cp").range();
    tx.get_range(&begin, &end, usize::MAX, false)
}

/// The stored checkpoints; one that does not decode is named by the record it signs.
fn checkpoints_decode(rows: Vec<crate::store::KeyValue>) -> Result<Vec<Checkpoint>, (u64, rmp_serde::decode::Error)> {
    rows.into_iter()
        .map(|(key, value)| rmp_serde::from_slice(&value).map_err(|e| (key_seq(&key).unwrap_or(0), e)))
        .collect()
}

fn checkpoints_read(tx: &mut dyn Transaction) -> Result<Vec<Checkpoint>, StoreError> {
    checkpoints_decode(checkpoint_rows(tx)?)
        .map_err(|(seq, e)| StoreError::Corrupt { key: format!("the checkpoint of record {seq}"), why: e.to_string() })
}

/// Signs chain heads with the cell's audit key.
pub struct Checkpointer {
    cell: String,
    key: SigningKey,
    clock: std::sync::Arc<dyn crate::clock::Clock>,
}

impl Checkpointer {
    pub fn new(cell: &str, key: SigningKey, clock: std::sync::Arc<dyn crate::clock::Clock>) -> Checkpointer {
        Checkpointer { cell: cell.to_owned(), key, clock }
    }

    /// Hex Ed25519 public key: what a third party needs to verify.
    pub fn public_key(&self) -> String {
        hex::encode(self.key.verifying_key().as_bytes())
    }

    /// The audit key, which also signs export manifests.
    pub fn key(&self) -> &SigningKey {
        &self.key
    }

    /// Signs the current head unless it is already signed; returns the newest checkpoint, or
    /// `None` while the chain is empty.
    pub fn checkpoint(&self, store: &dyn Store) -> Result<Option<Checkpoint>, StoreError> {
        transact_writes(store, |tx| {
            let head = AuditChain::load(tx)?;
            if head.seq == 0 {
                return Ok(None);
            }
            if let Some(bytes) = tx.get(&checkpoint_key(head.seq))? {
                return Ok(Some(decode("checkpoint", &bytes)?));
            }
            let signed_at = self.clock.now();
            let head_hex = hex::encode(head.head);
            let signature = self.key.sign(&Checkpoint::message(&self.cell, head.seq, &head_hex, &signed_at));
            let cp = Checkpoint {
                cell: self.cell.clone(),
                seq: head.seq,
                head: head_hex,
                signed_at,
                signature: hex::encode(signature.to_bytes()),
            };
            tx.set(&checkpoint_key(head.seq), &rmp_serde::to_vec(&cp).expect("a checkpoint encodes"))?;
            Ok(Some(cp))
        })
    }

    pub fn list(&self, store: &dyn Store) -> Result<CheckpointList, StoreError> {
        let mut tx = store.begin()?;
        Ok(CheckpointList { public_key: self.public_key(), checkpoints: checkpoints_read(tx.as_mut())? })
    }
}

/// Verifies the chain of a stopped cell from its data directory, checking checkpoints against
/// `public_key` (hex), or else against the audit key found in the directory.
pub fn verify_offline(data_dir: &std::path::Path, public_key: Option<&str>) -> anyhow::Result<VerifyReport> {
    use anyhow::Context;
    let key_path = data_dir.join("audit-ed25519.key");
    if !key_path.exists() {
        anyhow::bail!("{} has no audit key: is it a cell's data directory?", data_dir.display());
    }
    let public_key = match public_key {
        Some(text) => {
            // A key that is no Ed25519 key is a mistake in the command, not a finding about the chain.
            contracts::audit::verifying_key(text).map_err(|e| anyhow::anyhow!("--public-key {e}"))?;
            text.to_owned()
        }
        None => hex::encode(crate::signing_key::load_or_create(&key_path)?.verifying_key().as_bytes()),
    };
    let store = crate::store::embedded::EmbeddedStore::open(
        &data_dir.join("store"),
        crate::store::embedded::Durability::GroupSync,
    )
    .with_context(|| format!("open the store under {} (is the cell still running?)", data_dir.display()))?;
    Ok(verify(&store, &public_key)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::embedded::{Durability, EmbeddedStore};

    /// The write set of a commit appending `event` to the chain at `from`.
    fn appended(store: &EmbeddedStore, from: &mut AuditChain, event: &str) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        let mut tx = store.begin().unwrap();
        let seq = from.append(tx.as_mut(), event.to_owned()).unwrap();
        let value = tx.get(&record_key(seq)).unwrap();
        vec![(record_key(seq), value)]
    }

    #[test]
    fn a_commit_continues_only_the_chain_its_first_record_links_to() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path(), Durability::GroupSync).unwrap();
        let ours = AuditChain::default();
        let mut theirs = AuditChain::default();
        let first = appended(&store, &mut theirs, "{\"event\":\"one\"}");
        assert!(ours.continued_by(&first).is_ok());
        // A copy that holds another first record does not continue into their second.
        let mut other = AuditChain::default();
        appended(&store, &mut other, "{\"event\":\"another\"}");
        let second = appended(&store, &mut theirs, "{\"event\":\"two\"}");
        assert!(other.continued_by(&second).unwrap_err().contains("links to"));
        assert!(ours.continued_by(&[]).is_ok(), "a commit that appends nothing continues any chain");
    }
}
