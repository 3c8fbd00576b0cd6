//! The WORM audit chain as regulators and ops use it: every money and round event chained in the
//! same transaction, verified by the cell, by `cell audit verify`, and by a third party holding
//! only the public key; a record changed behind the API's back is named exactly.

use crate::gaming::{providers, Dialect, Provider};
use crate::harness::{behind_the_api, Client, TestCell};
use cell::store::subspaces;
use contracts::audit::{AuditRecord, CheckpointList};
use serde_json::{json, Value};

async fn some_activity(c: &Client) {
    assert_eq!(c.register("uk-aud", "1980-01-01", "GB", "GBP").await.status, 201);
    for i in 0..5 {
        assert_eq!(c.credit("uk-aud", "1.00", &format!("c{i}")).await.status, 200);
    }
    let hold = json!({ "playerId": "uk-aud", "roundId": "wr1", "betId": "wb1", "currency": "GBP", "amount": "2.00" });
    assert_eq!(c.post("/wallet/hold", "h1", hold).await.status, 200);
    let settle =
        json!({ "roundId": "wr1", "operations": [{ "playerId": "uk-aud", "delta": "1.00", "currency": "GBP" }] });
    assert_eq!(c.post("/wallet/settle", "s1", settle).await.status, 200);
    let p = Provider::new(Dialect::Seamless, false, *c);
    assert_eq!(
        p.bet("g1", "uk-aud", "gr1", "slot-1", "1.00").await,
        crate::gaming::Outcome::Ok { balance: "5.00".parse().unwrap() }
    );
    assert_eq!(
        p.win("g2", "uk-aud", "gr1", "2.00", true).await,
        crate::gaming::Outcome::Ok { balance: "7.00".parse().unwrap() }
    );
}

async fn all_records(c: &Client) -> Vec<AuditRecord> {
    let mut records = Vec::new();
    loop {
        let page = c.get(&format!("/audit/records?after={}&limit=3", records.len())).await;
        assert_eq!(page.status, 200);
        let page: contracts::audit::AuditRecordPage = serde_json::from_slice(&page.body).unwrap();
        if page.records.is_empty() {
            return records;
        }
        records.extend(page.records);
    }
}

/// Money and round events are chained; registrations are not money.
fn audited(event: &Value) -> bool {
    let name = event["event"].as_str().unwrap();
    ["wallet.", "bet.", "round."].iter().any(|prefix| name.starts_with(prefix))
}

#[tokio::test]
async fn a_third_party_verifies_checkpoints_and_records_with_the_public_key_alone() {
    let cell = TestCell::start_with_providers("uk", providers()).await;
    let c = cell.client();
    let empty = c.raw("POST", "/audit/checkpoints", &[], Vec::new()).await.unwrap();
    assert_eq!((empty.status, empty.code().as_str()), (409, "AUDIT_CHAIN_EMPTY"));
    some_activity(&c).await;

    let checkpoint = c.raw("POST", "/audit/checkpoints", &[], Vec::new()).await.unwrap();
    assert_eq!(checkpoint.status, 200);
    let records = all_records(&c).await;
    let events: Vec<Value> = c.events().await.into_iter().filter(audited).collect();
    assert_eq!(records.len(), events.len(), "every money and round event is chained, once");
    for (record, event) in records.iter().zip(&events) {
        let chained: Value = serde_json::from_str(&record.event).unwrap();
        assert_eq!(chained["id"], event["id"], "the chain is in the outbox's order");
    }
    let list: CheckpointList = serde_json::from_slice(&c.get("/audit/checkpoints").await.body).unwrap();
    assert_eq!(list.checkpoints.len(), 1);
    assert_eq!(list.checkpoints[0].seq, records.len() as u64);

    let report = contracts::audit::verify_records(&records, &list.checkpoints, &list.public_key);
    assert!(report.ok, "{report:?}");
    assert_eq!((report.records, report.checkpoints_verified), (records.len() as u64, 1));

    // Another key, or a record changed on the way, and the third party sees it.
    let other_key = hex::encode([9u8; 32]);
    assert!(!contracts::audit::verify_records(&records, &list.checkpoints, &other_key).ok);
    let mut changed = records.clone();
    changed[4].event = changed[4].event.replace("1.00", "9.00");
    let report = contracts::audit::verify_records(&changed, &list.checkpoints, &list.public_key);
    assert_eq!(report.first_bad.unwrap().seq, 5);

    let own = c.get("/audit/verify").await.json();
    assert_eq!(own["ok"], true);
    assert_eq!(own["records"], records.len());
    assert_eq!(own["head"], records.last().unwrap().hash.as_str());
    assert_eq!(own["checkpointsVerified"], 1);
}

/// `cell audit verify` with `args` after `--data DIR`: its exit status and stderr.
fn cell_audit_verify_status(dir: &std::path::Path, args: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cell"))
        .args(["audit", "verify", "--data"])
        .arg(dir)
        .args(args)
        .output()
        .unwrap();
    (out.status.code().unwrap(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[tokio::test]
async fn audit_verify_tells_no_verdict_from_a_broken_chain() {
    let mut cell = TestCell::start_with_providers("uk", providers()).await;
    some_activity(&cell.client()).await;
    // Still running: the store is locked, so there is no verdict.
    let (code, stderr) = cell_audit_verify_status(cell.dir.path(), &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("still running"), "{stderr}");
    cell.stop().await;
    let (code, stderr) = cell_audit_verify_status(cell.dir.path(), &["--public-key", &"ab".repeat(33)]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--public-key must be 32 bytes"), "{stderr}");
    let nowhere = tempfile::tempdir().unwrap();
    assert_eq!(cell_audit_verify_status(nowhere.path(), &[]).0, 2);
    assert_eq!(cell_audit_verify_status(cell.dir.path(), &[]).0, 0);
}

#[tokio::test]
async fn a_head_that_does_not_decode_is_a_broken_chain() {
    let mut cell = TestCell::start_with_providers("uk", providers()).await;
    some_activity(&cell.client()).await;
    cell.stop().await;
    behind_the_api(cell.dir.path(), |tx| tx.set(&subspaces::audit().pack(&("head",)), b"not a head").unwrap());
    let (code, report) = cell_audit_verify(cell.dir.path());
    assert_eq!((code, report["ok"].clone()), (1, json!(false)), "{report}");
    assert!(report["firstBad"]["problem"].as_str().unwrap().contains("head does not decode"), "{report}");
}

fn cell_audit_verify(dir: &std::path::Path) -> (i32, Value) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cell"))
        .args(["audit", "verify", "--data"])
        .arg(dir)
        .output()
        .unwrap();
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    });
    (out.status.code().unwrap(), report)
}

/// Changes one byte run of a stored record behind the API.
fn tamper(dir: &std::path::Path, seq: u64, from: &str, to: &str) {
    let key = subspaces::audit().pack(&("rec", seq));
    behind_the_api(dir, |tx| {
        let value = tx.get(&key).unwrap().expect("the record exists");
        let text = String::from_utf8_lossy(&value).into_owned();
        assert!(text.contains(from), "record {seq} has no `{from}`");
        let position = value.windows(from.len()).position(|w| w == from.as_bytes()).unwrap();
        let mut changed = value.clone();
        changed[position..position + to.len()].copy_from_slice(to.as_bytes());
        tx.set(&key, &changed).unwrap();
    });
}

#[tokio::test]
async fn a_record_changed_behind_the_api_is_named_exactly() {
    let mut cell = TestCell::start_with_providers("uk", providers()).await;
    some_activity(&cell.client()).await;
    let records = all_records(&cell.client()).await.len() as u64;
    assert!(records >= 9);
    cell.stop().await;

    let (code, report) = cell_audit_verify(cell.dir.path());
    assert_eq!((code, report["ok"].clone()), (0, json!(true)), "{report}");
    assert_eq!(report["records"], records);

    // Record 3 is the third credit: its amount becomes 9.00.
    tamper(cell.dir.path(), 3, "\"amount\":\"1.00\"", "\"amount\":\"9.00\"");
    let (code, report) = cell_audit_verify(cell.dir.path());
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["ok"], false);
    assert_eq!(report["firstBad"]["seq"], 3, "{report}");
    assert_eq!(report["records"], 2);

    // The running cell's verifier says the same.
    cell.restart("uk").await;
    let live = cell.client().get("/audit/verify").await.json();
    assert_eq!(live["ok"], false);
    assert_eq!(live["firstBad"]["seq"], 3);
}

#[tokio::test]
async fn a_removed_record_is_a_gap() {
    let mut cell = TestCell::start_with_providers("uk", providers()).await;
    some_activity(&cell.client()).await;
    cell.stop().await;
    behind_the_api(cell.dir.path(), |tx| tx.clear(&subspaces::audit().pack(&("rec", 6u64))).unwrap());
    let (code, report) = cell_audit_verify(cell.dir.path());
    assert_eq!(code, 1);
    assert_eq!(report["firstBad"]["seq"], 6, "{report}");
}

#[tokio::test]
async fn the_head_is_signed_periodically_once_the_chain_grows() {
    let intervals = cell::server::Intervals {
        round_sweep: std::time::Duration::from_secs(1),
        audit_checkpoint: std::time::Duration::from_millis(300),
        ..Default::default()
    };
    let cell = TestCell::start_with("uk", providers(), intervals).await;
    let c = cell.client();
    let list = |c: Client| async move {
        serde_json::from_slice::<CheckpointList>(&c.get("/audit/checkpoints").await.body).unwrap()
    };
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    assert!(list(c).await.checkpoints.is_empty(), "nothing to sign while the chain is empty");
    some_activity(&c).await;
    let head = all_records(&c).await.len() as u64;
    let mut signed = Vec::new();
    for _ in 0..50 {
        signed = list(c).await.checkpoints;
        if signed.iter().any(|cp| cp.seq == head) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(signed.iter().any(|cp| cp.seq == head), "no periodic checkpoint of head {head}: {signed:?}");
    let public_key = list(c).await.public_key;
    let report = contracts::audit::verify_records(&all_records(&c).await, &signed, &public_key);
    assert!(report.ok, "{report:?}");
}
