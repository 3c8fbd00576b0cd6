//! The `cell` binary as ops run it: a real process, stopped with SIGTERM or killed with SIGKILL.

use crate::harness::{region_path, Client};
use serde_json::json;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn spawn(dir: &std::path::Path, port: u16) -> Child {
    crate::harness::trust_test_operator_key(dir);
    Command::new(env!("CARGO_BIN_EXE_cell"))
        .args(["serve", "--region"])
        .arg(region_path("uk"))
        .args(["--listen", &format!("127.0.0.1:{port}"), "--data"])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

async fn ready(client: &Client) {
    for _ in 0..1000 {
        if matches!(client.try_get("/readyz").await, Ok(r) if r.status == 200) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("cell process did not become ready");
}

/// A credit of 1.00, or `None` when the connection failed.
async fn credit(client: &Client, key: &str) -> Option<u16> {
    let body = json!({ "playerId": "uk-proc", "currency": "GBP", "amount": "1.00", "reason": "deposit" }).to_string();
    let headers = [("x-idempotency-key", key), ("content-type", "application/json")];
    client.raw("POST", "/wallet/credit", &headers, body.into_bytes()).await.ok().map(|r| r.status)
}

fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill").args([sig, &child.id().to_string()]).status().unwrap();
    assert!(status.success());
}

/// A cell process on a fresh data directory and port, ready, with the player `uk-proc`.
async fn started_with_a_player() -> (tempfile::TempDir, u16, Child, Client) {
    let dir = tempfile::tempdir().unwrap();
    let port = chaos::ports::free_tcp().unwrap().port();
    let child = spawn(dir.path(), port);
    let client = Client { address: ([127, 0, 0, 1], port).into() };
    ready(&client).await;
    assert_eq!(client.register("uk-proc", "1980-01-01", "GB", "GBP").await.status, 201);
    (dir, port, child, client)
}

#[tokio::test]
async fn sigterm_drains_and_exits_zero_and_sigkill_loses_nothing_acknowledged() {
    let (dir, port, mut child, client) = started_with_a_player().await;

    // Requests in flight when SIGTERM arrives are answered before the process exits.
    let in_flight: Vec<_> =
        (0..50).map(|i| tokio::spawn(async move { credit(&client, &format!("term-{i}")).await })).collect();
    tokio::time::sleep(Duration::from_millis(2)).await;
    signal(&child, "-TERM");
    let mut acknowledged = 0;
    for r in in_flight {
        // A request whose connection was not yet accepted when the listener closed is refused
        // (connection reset); one that was accepted is answered.
        if r.await.unwrap() == Some(200) {
            acknowledged += 1;
        }
    }
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap()).await.unwrap();
    assert!(status.success(), "SIGTERM exits 0, got {status:?}");

    // Restart, load, SIGKILL mid-load: everything acknowledged is still there.
    let mut child = spawn(dir.path(), port);
    ready(&client).await;
    let cash: rust_decimal::Decimal = client.balance("uk-proc").await["cash"].as_str().unwrap().parse().unwrap();
    assert_eq!(cash, rust_decimal::Decimal::from(acknowledged), "every credit acknowledged before SIGTERM is kept");
    let load: Vec<_> =
        (0..200).map(|i| tokio::spawn(async move { credit(&client, &format!("kill-{i}")).await })).collect();
    tokio::time::sleep(Duration::from_millis(20)).await;
    signal(&child, "-KILL");
    let _ = child.wait();
    let mut acked_before_kill = 0;
    for r in load {
        if r.await.unwrap() == Some(200) {
            acked_before_kill += 1;
        }
    }
    let mut child = spawn(dir.path(), port);
    ready(&client).await;
    let after: rust_decimal::Decimal = client.balance("uk-proc").await["cash"].as_str().unwrap().parse().unwrap();
    assert!(
        after >= cash + rust_decimal::Decimal::from(acked_before_kill),
        "acknowledged credits survive SIGKILL: {after} < {cash} + {acked_before_kill}"
    );
    // Retrying every request of the killed run applies each exactly once.
    for i in 0..200 {
        let r = client
            .post(
                "/wallet/credit",
                &format!("kill-{i}"),
                json!({ "playerId": "uk-proc", "currency": "GBP", "amount": "1.00", "reason": "deposit" }),
            )
            .await;
        assert_eq!(r.status, 200);
    }
    let last: rust_decimal::Decimal = client.balance("uk-proc").await["cash"].as_str().unwrap().parse().unwrap();
    assert_eq!(last, cash + rust_decimal::Decimal::from(200));
    signal(&child, "-TERM");
    assert!(child.wait().unwrap().success());
}

/// A graceful stop signs the chain's final head, so every record is covered by a checkpoint even
/// when the cell stops between two periodic ones (a minute apart; this test takes less).
#[tokio::test]
async fn sigterm_signs_a_last_audit_checkpoint() {
    let (dir, port, mut child, client) = started_with_a_player().await;
    assert_eq!(credit(&client, "cp-1").await, Some(200));
    signal(&child, "-TERM");
    assert!(child.wait().unwrap().success());

    let mut child = spawn(dir.path(), port);
    ready(&client).await;
    let records = client.get("/audit/verify").await.json()["records"].as_u64().unwrap();
    assert!(records >= 1, "the credit is in the chain");
    let list: contracts::audit::CheckpointList =
        serde_json::from_slice(&client.get("/audit/checkpoints").await.body).unwrap();
    assert_eq!(list.checkpoints.last().map(|cp| cp.seq), Some(records), "the last checkpoint signs the last record");
    signal(&child, "-TERM");
    assert!(child.wait().unwrap().success());
}

/// `--store foundationdb` in a build without the feature says so and exits 2, touching nothing.
#[cfg(not(feature = "foundationdb"))]
#[test]
fn a_foundationdb_store_without_the_feature_exits_2_saying_why() {
    let dir = tempfile::tempdir().unwrap();
    let region = crate::harness::region_path("uk");
    let out = Command::new(env!("CARGO_BIN_EXE_cell"))
        .args(["serve", "--listen", "127.0.0.1:0", "--store", "foundationdb:/etc/foundationdb/fdb.cluster"])
        .arg("--region")
        .arg(&region)
        .arg("--data")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(
        said.contains("--store foundationdb:/etc/foundationdb/fdb.cluster") && said.contains("`foundationdb` feature"),
        "{said}"
    );
    assert!(!dir.path().join("data").exists(), "nothing was created");
}
