//! Identity checks by the KYC vendor, played by a real `sandbox` process: the check asked at
//! registration, its result by a signed webhook (duplicated, reordered or late), and what an
//! unverified player may do under each region's rules, enforced by the ledger's gate.

use crate::harness::{TestCell, KYC_WEBHOOK_SECRET};
use crate::limits::{as_player, deposit, login};
use crate::registers::{profile, register, Sandbox};
use serde_json::{json, Value};
use std::time::Duration;

/// Polls the player's own view of their check until it leaves `pending` (the sandbox answers
/// in about half a second), or 10 s.
pub async fn settled_kyc(c: &crate::harness::Client, player: &str, token: &str) -> Value {
    for _ in 0..200 {
        let view = as_player(c, "GET", &format!("/players/{player}/kyc"), token, None).await;
        assert_eq!(view.status, 200, "{}", String::from_utf8_lossy(&view.body));
        let view = view.json();
        if view["status"] != "pending" {
            return view;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the check of {player} never completed");
}

fn events_named(events: &[Value], name: &str) -> Vec<Value> {
    events.iter().filter(|e| e["event"] == name).map(|e| e["payload"].clone()).collect()
}

/// UK: no deposit and no play before verification; once the vendor's webhook says `clear`, the
/// player deposits. A document starting `FAIL` fails, and the player never deposits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_uk_player_deposits_only_once_verified() {
    let sandbox = Sandbox::start().await;
    let cell = TestCell::start_with_sandbox("uk", &sandbox.url, cell::clock::system()).await;
    let c = cell.client();
    // A check the webhook answers late: the player stays pending meanwhile.
    sandbox.admin("POST", "/admin/faults", json!({ "party": "kyc-webhook", "mode": "late", "latencyMs": 1500 })).await;
    assert_eq!(register(&c, "uk-kate", "GB", "GBP", Some(profile("Smith", None))).await.status, 201);
    sandbox.admin("DELETE", "/admin/faults", json!({})).await;
    let token = login(&c, "uk-kate").await;
    let pending = as_player(&c, "GET", "/players/uk-kate/kyc", &token, None).await.json();
    assert_eq!(pending["status"], "pending", "{pending}");
    assert!(pending.get("depositAllowanceLeft").is_none(), "nothing before verification in the UK: {pending}");
    let refused = deposit(&c, "uk-kate", "GBP", "10.00", "kate-d1").await;
    assert_eq!((refused.status, refused.code().as_str()), (422, "KYC_REQUIRED"), "{}", refused.json());
    assert!(refused.json()["message"].as_str().unwrap().contains("UK-KYC"), "{}", refused.json());
    assert_eq!(c.balance("uk-kate").await["cash"], "0.00");
    let verified = settled_kyc(&c, "uk-kate", &token).await;
    assert_eq!((verified["status"].as_str(), verified["vendor"].as_str()), (Some("verified"), Some("sandbox-kyc")));
    assert_eq!(deposit(&c, "uk-kate", "GBP", "10.00", "kate-d2").await.status, 200);

    let failing = profile("Doe", Some(("PASSPORT", "FAIL-0001")));
    assert_eq!(register(&c, "uk-fail", "GB", "GBP", Some(failing)).await.status, 201);
    let token = login(&c, "uk-fail").await;
    let failed = settled_kyc(&c, "uk-fail", &token).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert!(failed["reason"].as_str().unwrap().contains("FAIL-0001"), "{failed}");
    assert_eq!(deposit(&c, "uk-fail", "GBP", "10.00", "fail-d1").await.code(), "KYC_REQUIRED");

    // Events carry the check, never the personal data; the decision log has each step.
    let events = c.events().await;
    let requested = events_named(&events, "kyc.requested");
    assert_eq!(requested.len(), 2, "{requested:?}");
    assert_eq!(events_named(&events, "kyc.verified").len(), 1);
    let failed = events_named(&events, "kyc.failed");
    assert_eq!(failed[0]["playerId"], "uk-fail");
    assert!(!serde_json::to_string(&requested).unwrap().contains("Smith"));
    let log = c.get("/compliance/players/uk-kate/decisions").await.json();
    let kyc: Vec<(&str, &str)> = log["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["rule"] == "UK-KYC")
        .map(|d| (d["kind"].as_str().unwrap(), d["source"].as_str().unwrap()))
        .collect();
    assert_eq!(kyc, [("kyc", "sandbox-kyc"), ("refused", "ledger gate"), ("kyc", "sandbox-kyc")], "{log}");
}

/// Malta lets an unverified player deposit up to EUR 2,000 for 30 days from the check; past
/// either, deposits and bets wait for the verification.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unverified_maltese_player_deposits_under_the_allowance_within_the_window() {
    let sandbox = Sandbox::start().await;
    let clock = cell::clock::ManualClock::new(chrono::Utc::now());
    let cell = TestCell::start_with_sandbox("mt", &sandbox.url, clock.clone()).await;
    let c = cell.client();
    sandbox
        .admin("POST", "/admin/faults", json!({ "party": "kyc-webhook", "mode": "late", "latencyMs": 600000 }))
        .await;
    let mut marco = profile("Borg", None);
    marco["address"]["country"] = json!("MT");
    assert_eq!(register(&c, "mt-marco", "MT", "EUR", Some(marco)).await.status, 201);
    assert_eq!(deposit(&c, "mt-marco", "EUR", "100.00", "m-d0").await.status, 200);
    // Malta pays nothing out before due diligence.
    let withdrawal = json!({ "playerId": "mt-marco", "currency": "EUR", "amount": "50.00", "reason": "withdrawal" });
    assert_eq!(c.post("/wallet/debit", "m-w1", withdrawal).await.code(), "KYC_REQUIRED");
    assert_eq!(deposit(&c, "mt-marco", "EUR", "1400.00", "m-d1").await.status, 200);
    // Verification is due once deposits reach EUR 2,000: an unverified player stays under it.
    let over = deposit(&c, "mt-marco", "EUR", "500.00", "m-d2").await;
    assert_eq!((over.status, over.code().as_str()), (422, "KYC_REQUIRED"), "{}", over.json());
    assert!(over.json()["message"].as_str().unwrap().contains("under 500.00 EUR left"), "{}", over.json());
    assert_eq!(deposit(&c, "mt-marco", "EUR", "499.99", "m-d3").await.status, 200, "just under the allowance");
    let token = login(&c, "mt-marco").await;
    let view = as_player(&c, "GET", "/players/mt-marco/kyc", &token, None).await.json();
    assert_eq!((view["status"].as_str(), view["depositAllowanceLeft"].as_str()), (Some("pending"), Some("0.01")));
    // After 30 days, no deposit at all.
    clock.advance(chrono::Duration::days(31));
    let late = deposit(&c, "mt-marco", "EUR", "1.00", "m-d4").await;
    assert_eq!(late.code(), "KYC_REQUIRED");
    assert!(late.json()["message"].as_str().unwrap().contains("30 days"), "{}", late.json());
}

/// The vendor's webhook delivered twice, out of order, forged, or about a check this cell never
/// asked for: one verification, one event, and nothing from a forgery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicated_reordered_and_forged_webhooks_change_nothing_twice() {
    let sandbox = Sandbox::start().await;
    let cell = TestCell::start_with_sandbox("uk", &sandbox.url, cell::clock::system()).await;
    let c = cell.client();
    sandbox.admin("POST", "/admin/faults", json!({ "party": "kyc-webhook", "mode": "duplicate" })).await;
    assert_eq!(register(&c, "uk-dup", "GB", "GBP", Some(profile("Twice", None))).await.status, 201);
    sandbox.admin("DELETE", "/admin/faults", json!({})).await;
    sandbox.admin("POST", "/admin/faults", json!({ "party": "kyc-webhook", "mode": "reorder" })).await;
    assert_eq!(register(&c, "uk-ord", "GB", "GBP", Some(profile("Backwards", None))).await.status, 201);
    for player in ["uk-dup", "uk-ord"] {
        let token = login(&c, player).await;
        assert_eq!(settled_kyc(&c, player, &token).await["status"], "verified");
    }
    // Every webhook has been delivered (four for the duplicated check, two for the other).
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(events_named(&c.events().await, "kyc.verified").len(), 2);

    let forged =
        json!({ "type": "check.completed", "check": { "id": "chk_x", "reference": "uk-dup", "result": "consider" } });
    let body = forged.to_string().into_bytes();
    let headers = [("content-type", "application/json"), ("x-signature", "sha256=00")];
    let refused = c.raw("POST", "/kyc/webhook", &headers, body.clone()).await.unwrap();
    assert_eq!((refused.status, refused.code().as_str()), (401, "BAD_SIGNATURE"));
    // Signed, but about a check this player was never given.
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(KYC_WEBHOOK_SECRET.as_bytes()).unwrap();
    mac.update(&body);
    let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    let headers = [("content-type", "application/json"), ("x-signature", signature.as_str())];
    let unknown = c.raw("POST", "/kyc/webhook", &headers, body).await.unwrap();
    assert_eq!((unknown.status, unknown.code().as_str()), (404, "NOT_FOUND"));
    let token = login(&c, "uk-dup").await;
    assert_eq!(as_player(&c, "GET", "/players/uk-dup/kyc", &token, None).await.json()["status"], "verified");
}

/// A vendor that does not take the check fails the registration closed: 503 `KYC_UNAVAILABLE`
/// with `Retry-After`, nothing written; the same registration passes once it answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vendor_outage_fails_registration_closed() {
    let sandbox = Sandbox::start().await;
    let cell = TestCell::start_with_sandbox("uk", &sandbox.url, cell::clock::system()).await;
    let c = cell.client();
    sandbox.admin("POST", "/admin/faults", json!({ "party": "kyc", "status": 503 })).await;
    let down = register(&c, "uk-wait", "GB", "GBP", Some(profile("Patel", None))).await;
    assert_eq!((down.status, down.code().as_str()), (503, "KYC_UNAVAILABLE"), "{}", down.json());
    assert!(down.header("retry-after").is_some());
    assert_eq!(c.get("/ops/players/uk-wait/balance").await.code(), "PLAYER_NOT_FOUND");
    sandbox.admin("DELETE", "/admin/faults", json!({})).await;
    assert_eq!(register(&c, "uk-wait", "GB", "GBP", Some(profile("Patel", None))).await.status, 201);
    let bare = register(&c, "uk-bare", "GB", "GBP", None).await;
    assert_eq!((bare.status, bare.code().as_str()), (400, "PROFILE_INCOMPLETE"));
}
