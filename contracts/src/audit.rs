//! The audit chain's format (DESIGN.md section 6, audit): what a cell's WORM log holds, how each
//! record's hash is computed, and how a signed checkpoint is checked. This is the contract with
//! third parties (regulators, auditors): with a cell's public key and the records alone they can
//! verify a checkpoint and every record up to it, without trusting the cell's own verifier.
//!
//! Record `n` (from 1) carries `hash(n) = SHA-256("casino-audit-v1" ‖ n as u64 BE ‖ hash(n-1) ‖
//! len(event) as u32 BE ‖ event)`, where `event` is the exact JSON text of the event envelope and
//! `hash(0)` is 32 zero bytes. Changing, removing or reordering any record changes every hash
//! after it, so the first record whose hash does not recompute is where the log was altered.

use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

fn hex_decode_opt(text: &str) -> Option<Vec<u8>> {
    hex::decode(text).ok()
}

/// An Ed25519 public key from its hex text; the error says what is wrong with it.
pub fn verifying_key(hex: &str) -> Result<VerifyingKey, String> {
    let key: [u8; 32] = hex_decode_opt(hex)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| "must be 32 bytes in hex (64 digits)".to_owned())?;
    VerifyingKey::from_bytes(&key).map_err(|e| format!("is not an Ed25519 public key: {e}"))
}

/// The hash before the first record.
pub const GENESIS: [u8; 32] = [0; 32];

/// Computes record `seq`'s hash from its predecessor's and its event text.
pub fn record_hash(seq: u64, prev: &[u8; 32], event: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"casino-audit-v1");
    h.update(seq.to_be_bytes());
    h.update(prev);
    h.update((event.len() as u32).to_be_bytes());
    h.update(event);
    h.finalize().into()
}

/// One record of the chain as `GET /audit/records` serves it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    /// Position in the chain, from 1, without gaps.
    pub seq: u64,
    /// Hex SHA-256 of the previous record (zeros for the first).
    pub prev_hash: String,
    /// Hex SHA-256 of this record.
    pub hash: String,
    /// The event envelope's exact JSON text, as hashed.
    pub event: String,
}

/// Answer to `GET /audit/records?after=SEQ&limit=N`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecordPage {
    pub records: Vec<AuditRecord>,
    /// The chain's length when read.
    pub head_seq: u64,
}

/// Answer to `GET /audit/verify` and `cell audit verify`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerifyReport {
    pub ok: bool,
    /// Records checked.
    pub records: u64,
    /// Hex hash of the last good record (of the head when `ok`).
    pub head: String,
    /// The first record that fails, when the chain is broken.
    pub first_bad: Option<BadRecord>,
    /// Signed checkpoints whose signature and head were checked against the records.
    pub checkpoints_verified: u64,
}

/// Where and how the chain breaks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BadRecord {
    /// The position the verifier expected there.
    pub seq: u64,
    pub problem: String,
}

/// A cell's signature over its chain head at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Checkpoint {
    pub cell: String,
    /// The chain length signed.
    pub seq: u64,
    /// Hex hash of record `seq`.
    pub head: String,
    pub signed_at: chrono::DateTime<chrono::Utc>,
    /// Hex Ed25519 signature over [`Checkpoint::message`].
    pub signature: String,
}

/// Answer to `GET /audit/checkpoints`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointList {
    /// Hex Ed25519 public key that signs this cell's checkpoints.
    pub public_key: String,
    pub checkpoints: Vec<Checkpoint>,
}

impl Checkpoint {
    /// The exact bytes signed: `casino-audit-checkpoint-v1`, `cell`, `seq`, `head` and `signedAt`
    /// as served (RFC 3339 in UTC with `Z`, as many fraction digits as needed), one per line.
    pub fn message(cell: &str, seq: u64, head: &str, signed_at: &chrono::DateTime<chrono::Utc>) -> Vec<u8> {
        let at = signed_at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
        format!("casino-audit-checkpoint-v1\n{cell}\n{seq}\n{head}\n{at}").into_bytes()
    }

    /// Checks the signature with `public_key` (32 bytes, hex).
    pub fn verify_signature(&self, public_key: &str) -> Result<(), String> {
        let key = verifying_key(public_key).map_err(|e| format!("public key {e}"))?;
        let signature: [u8; 64] = hex_decode_opt(&self.signature)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| "signature is not 64 bytes of hex".to_owned())?;
        let message = Checkpoint::message(&self.cell, self.seq, &self.head, &self.signed_at);
        key.verify(&message, &Signature::from_bytes(&signature))
            .map_err(|_| format!("checkpoint at record {} is not signed by this key", self.seq))
    }
}

/// Checks records (in order, from record 1) against each other and against `checkpoints`, whose
/// signatures are checked with `public_key`. This is all a third party needs.
pub fn verify_records<'a>(
    records: impl IntoIterator<Item = &'a AuditRecord>,
    checkpoints: &[Checkpoint],
    public_key: &str,
) -> VerifyReport {
    let mut chain = ChainVerifier::default();
    for r in records {
        if chain.check(r.seq, &r.prev_hash, &r.hash, r.event.as_bytes()).is_none() {
            break;
        }
    }
    chain.finish(checkpoints, public_key)
}

/// Walks a chain record by record; used by the cell's own verifier and by [`verify_records`].
#[derive(Debug)]
pub struct ChainVerifier {
    expected: u64,
    prev: [u8; 32],
    heads: std::collections::BTreeMap<u64, [u8; 32]>,
    first_bad: Option<BadRecord>,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        ChainVerifier { expected: 1, prev: GENESIS, heads: Default::default(), first_bad: None }
    }
}

/// Hashes of records at checkpoints are kept to check them at the end; every hash is 32 bytes, so
/// keeping them all is cheaper than a second pass (a million records is 32 MB).
impl ChainVerifier {
    /// Checks the next record. Returns `None`, and remembers why, at the first bad one.
    pub fn check(&mut self, seq: u64, prev_hash: &str, hash: &str, event: &[u8]) -> Option<()> {
        if self.first_bad.is_some() {
            return None;
        }
        let problem = if seq != self.expected {
            Some(format!("record {seq} found where record {} was expected (a gap or a reorder)", self.expected))
        } else if hex_decode_opt(prev_hash).as_deref() != Some(&self.prev[..]) {
            Some("its previous hash is not the hash of the record before it".to_owned())
        } else {
            let computed = record_hash(seq, &self.prev, event);
            if hex_decode_opt(hash).as_deref() != Some(&computed[..]) {
                Some("its content does not match its hash (the record was changed)".to_owned())
            } else {
                self.prev = computed;
                self.heads.insert(seq, computed);
                None
            }
        };
        match problem {
            Some(problem) => {
                self.first_bad = Some(BadRecord { seq: self.expected, problem });
                None
            }
            None => {
                self.expected += 1;
                Some(())
            }
        }
    }

    /// Records as a broken one at `seq`, found by the caller (for example, a record that does not
    /// decode, or a chain shorter than its head says).
    pub fn fail(&mut self, seq: u64, problem: String) {
        if self.first_bad.is_none() {
            self.first_bad = Some(BadRecord { seq, problem });
        }
    }

    /// Records checked so far without fault.
    pub fn good(&self) -> u64 {
        self.expected - 1
    }

    /// The report, after checking each checkpoint's signature and that its head is the hash of
    /// the record it names.
    pub fn finish(mut self, checkpoints: &[Checkpoint], public_key: &str) -> VerifyReport {
        let mut verified = 0;
        for cp in checkpoints {
            let problem = if let Err(e) = cp.verify_signature(public_key) {
                Some(e)
            } else {
                match self.heads.get(&cp.seq) {
                    Some(h) if hex::encode(h) == cp.head => None,
                    Some(_) => Some(format!("checkpoint at record {} signs another head", cp.seq)),
                    None if self.first_bad.is_none() => {
                        Some(format!("checkpoint at record {} is beyond the chain's end", cp.seq))
                    }
                    None => None, // past the break, already reported
                }
            };
            match problem {
                Some(p) => self.fail(cp.seq, p),
                None if self.heads.contains_key(&cp.seq) => verified += 1,
                None => {}
            }
        }
        VerifyReport {
            ok: self.first_bad.is_none(),
            records: self.good(),
            head: hex::encode(self.prev),
            first_bad: self.first_bad,
            checkpoints_verified: verified,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    fn chain(events: &[&str]) -> Vec<AuditRecord> {
        let mut prev = GENESIS;
        let mut out = Vec::new();
        for (i, e) in events.iter().enumerate() {
            let seq = i as u64 + 1;
            let hash = record_hash(seq, &prev, e.as_bytes());
            out.push(AuditRecord {
                seq,
                prev_hash: hex::encode(prev),
                hash: hex::encode(hash),
                event: (*e).to_owned(),
            });
            prev = hash;
        }
        out
    }

    fn checkpoint(key: &SigningKey, r: &AuditRecord) -> Checkpoint {
        let signed_at = chrono::Utc::now();
        let sig = key.sign(&Checkpoint::message("uk", r.seq, &r.hash, &signed_at));
        Checkpoint {
            cell: "uk".into(),
            seq: r.seq,
            head: r.hash.clone(),
            signed_at,
            signature: hex::encode(sig.to_bytes()),
        }
    }

    #[test]
    fn a_good_chain_and_its_checkpoints_verify() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let public = hex::encode(key.verifying_key().as_bytes());
        let records = chain(&["{\"a\":1}", "{\"b\":2}", "{\"c\":3}"]);
        let cps = vec![checkpoint(&key, &records[1])];
        let report = verify_records(&records, &cps, &public);
        assert!(report.ok, "{report:?}");
        assert_eq!((report.records, report.checkpoints_verified), (3, 1));
        assert_eq!(report.head, records[2].hash);
    }

    #[test]
    fn the_signed_time_is_the_served_time() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let records = chain(&["{\"a\":1}"]);
        let cp = checkpoint(&key, &records[0]);
        let served = serde_json::to_value(&cp).unwrap()["signedAt"].as_str().unwrap().to_owned();
        let message = String::from_utf8(Checkpoint::message(&cp.cell, cp.seq, &cp.head, &cp.signed_at)).unwrap();
        assert_eq!(message.lines().last(), Some(served.as_str()));
    }

    #[test]
    fn the_first_changed_record_is_named() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let public = hex::encode(key.verifying_key().as_bytes());
        let mut records = chain(&["{\"a\":1}", "{\"b\":2}", "{\"c\":3}", "{\"d\":4}"]);
        records[2].event = "{\"c\":30}".into();
        let report = verify_records(&records, &[], &public);
        assert!(!report.ok);
        assert_eq!(report.first_bad.unwrap().seq, 3);
        assert_eq!(report.records, 2);

        let mut records = chain(&["{\"a\":1}", "{\"b\":2}", "{\"c\":3}"]);
        records.remove(1);
        assert_eq!(verify_records(&records, &[], &public).first_bad.unwrap().seq, 2);
    }

    #[test]
    fn a_checkpoint_from_another_key_or_head_fails() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let other = SigningKey::from_bytes(&[8; 32]);
        let public = hex::encode(key.verifying_key().as_bytes());
        let records = chain(&["{\"a\":1}", "{\"b\":2}"]);
        let forged = checkpoint(&other, &records[1]);
        let report = verify_records(&records, &[forged], &public);
        assert!(!report.ok);
        assert_eq!(report.first_bad.unwrap().seq, 2);
        let mut wrong_head = checkpoint(&key, &records[1]);
        wrong_head.head = records[0].hash.clone();
        assert!(!verify_records(&records, &[wrong_head], &public).ok);
    }
}
