//! AML monitoring rules from the region file, in the ledger's gate: deposits over a threshold in a
//! window open a case for enhanced due diligence, a withdrawal after deposits hardly played opens
//! one and waits; each case holds withdrawals until the compliance role decides it.

use crate::harness::{Client, TestCell};
use crate::limits::deposit;
use serde_json::{json, Value};

fn withdrawal(player: &str, amount: &str) -> Value {
    json!({ "playerId": player, "currency": "EUR", "amount": amount, "reason": "withdrawal" })
}

async fn decide(c: &Client, case: &str, decision: &str) {
    let body = json!({ "decision": decision, "reason": "source of funds documented" }).to_string();
    let path = format!("/compliance/cases/{case}");
    let decided = c.raw("POST", &path, &[("content-type", "application/json")], body.into_bytes()).await.unwrap();
    assert_eq!(decided.status, 200, "{}", String::from_utf8_lossy(&decided.body));
}

async fn open_cases(c: &Client, player: &str) -> Vec<Value> {
    let cases = c.get("/compliance/cases").await.json();
    cases["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|case| case["playerId"] == player && case["status"] == "open")
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitoring_rules_open_cases_that_hold_withdrawals_until_decided() {
    let cell = TestCell::start("mt").await;
    let c = cell.client();
    assert_eq!(c.register("mt-eve", "1990-04-01", "MT", "EUR").await.status, 201);
    assert_eq!(deposit(&c, "mt-eve", "EUR", "1500.00", "e-d1").await.status, 200);
    assert!(open_cases(&c, "mt-eve").await.is_empty());
    // Over EUR 2,000 in a day: the deposit stands, and a case opens for due diligence.
    assert_eq!(deposit(&c, "mt-eve", "EUR", "600.00", "e-d2").await.status, 200);
    let cases = open_cases(&c, "mt-eve").await;
    assert_eq!(cases.len(), 1, "{cases:?}");
    assert_eq!(cases[0]["rule"], "MGA-AML-EDD-DEPOSITS-DAY");
    assert!(cases[0]["reason"].as_str().unwrap().contains("2100.00 EUR"), "{}", cases[0]);
    let held = c.post("/wallet/debit", "e-w1", withdrawal("mt-eve", "10.00")).await;
    assert_eq!((held.status, held.code().as_str()), (422, "AML_REVIEW"), "{}", held.json());
    // One case per rule and window, however many deposits follow.
    assert_eq!(deposit(&c, "mt-eve", "EUR", "100.00", "e-d3").await.status, 200);
    assert_eq!(open_cases(&c, "mt-eve").await.len(), 1);
    // Decided by eight requests at once (a double click, two officers): one decision applies, the
    // others are refused whatever the API read of the case before the writer.
    let path = format!("/compliance/cases/{}", cases[0]["id"].as_str().unwrap());
    let body = json!({ "decision": "cleared", "reason": "source of funds documented" }).to_string();
    let mut decisions = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (path, body) = (path.clone(), body.clone().into_bytes());
        decisions.spawn(async move { c.raw("POST", &path, &[("content-type", "application/json")], body).await });
    }
    let statuses: Vec<u16> = decisions.join_all().await.into_iter().map(|r| r.unwrap().status).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    assert!(statuses.iter().all(|s| matches!(s, 200 | 400)), "{statuses:?}");
    let decided = c.events().await.into_iter().filter(|e| e["event"] == "aml.case_decided").count();
    assert_eq!(decided, 1, "one decision chained");

    // Cleared; but EUR 2,200 deposited this week and nothing staked: the withdrawal opens a case
    // of its own and waits for it.
    let flagged = c.post("/wallet/debit", "e-w2", withdrawal("mt-eve", "2000.00")).await;
    assert_eq!((flagged.status, flagged.code().as_str()), (422, "AML_REVIEW"), "{}", flagged.json());
    assert!(flagged.json()["message"].as_str().unwrap().contains("MGA-AML-DEPOSIT-WITHDRAW-LITTLE-PLAY"));
    let cases = open_cases(&c, "mt-eve").await;
    assert_eq!(cases.len(), 1, "{cases:?}");
    assert!(cases[0]["reason"].as_str().unwrap().contains("0.00 EUR staked"), "{}", cases[0]);
    assert_eq!(c.balance("mt-eve").await["cash"], "2200.00", "nothing moved");
    decide(&c, cases[0]["id"].as_str().unwrap(), "cleared").await;
    assert_eq!(c.post("/wallet/debit", "e-w3", withdrawal("mt-eve", "2000.00")).await.status, 200);

    // The decision log and the events tell the story; a small player is never flagged.
    let log = c.get("/compliance/players/mt-eve/decisions").await.json();
    let opened: Vec<&str> = log["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["kind"] == "aml_case_opened")
        .map(|d| d["rule"].as_str().unwrap())
        .collect();
    assert_eq!(opened, ["MGA-AML-EDD-DEPOSITS-DAY", "MGA-AML-DEPOSIT-WITHDRAW-LITTLE-PLAY"], "{log}");
    let alerts = c.events().await.into_iter().filter(|e| e["event"] == "aml.alert").count();
    assert_eq!(alerts, 2);
    assert_eq!(c.register("mt-sam", "1990-04-01", "MT", "EUR").await.status, 201);
    assert_eq!(deposit(&c, "mt-sam", "EUR", "100.00", "s-d1").await.status, 200);
    assert_eq!(c.post("/wallet/debit", "s-w1", withdrawal("mt-sam", "100.00")).await.status, 200);
}

/// Deposits from more payment methods in 30 days than the region allows open a case; the
/// methods are counted again from the journal after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_payment_methods_open_a_case() {
    let mut cell = TestCell::start("mt").await;
    assert_eq!(cell.client().register("mt-pat", "1990-04-01", "MT", "EUR").await.status, 201);
    let with_method = |method: &str| json!({ "playerId": "mt-pat", "currency": "EUR", "amount": "20.00", "reason": "deposit", "paymentMethod": method });
    let c = cell.client();
    for (i, method) in ["card:tok_1111", "card:tok_2222", "card:tok_1111", "bank:GB29-0001"].iter().enumerate() {
        assert_eq!(c.post("/wallet/credit", &format!("p-d{i}"), with_method(method)).await.status, 200);
    }
    assert!(open_cases(&c, "mt-pat").await.is_empty(), "three methods are allowed");
    cell.restart("mt").await;
    let c = cell.client();
    assert_eq!(c.post("/wallet/credit", "p-d9", with_method("card:tok_3333")).await.status, 200);
    let cases = open_cases(&c, "mt-pat").await;
    assert_eq!(cases.len(), 1, "{cases:?}");
    assert_eq!(cases[0]["rule"], "MGA-AML-PAYMENT-METHODS");
    assert!(cases[0]["reason"].as_str().unwrap().contains("4 payment methods"), "{}", cases[0]);
    let card_number = c.post("/wallet/credit", "p-pan", with_method("card:4111111111111111")).await;
    assert_eq!((card_number.status, card_number.code().as_str()), (400, "INVALID_REQUEST"), "{}", card_number.json());
}
