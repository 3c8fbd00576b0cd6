//! The self-exclusion registers, played by a real `sandbox` process over HTTP: an excluded GAMSTOP
//! identity refused at registration, a register outage failing closed with nothing written, and a
//! player ROFUS excluded after registering refused at login.

use crate::harness::{binary, Client, TestCell, PASSWORD};
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A sandbox process on a free port; killed when dropped.
pub struct Sandbox {
    child: Child,
    pub url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Sandbox {
    pub async fn start() -> Sandbox {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(binary("sandbox"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data"])
            .arg(dir.path())
            .env("KYC_WEBHOOK_SECRET", crate::harness::KYC_WEBHOOK_SECRET)
            .env("PSP_CARD_SECRET", crate::harness::PSP_CARD_SECRET)
            .env("PSP_BANK_SECRET", crate::harness::PSP_BANK_SECRET)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let sandbox = Sandbox { child, url: format!("http://127.0.0.1:{port}"), _dir: dir };
        let client = Client { address: ([127, 0, 0, 1], port).into() };
        for _ in 0..500 {
            if matches!(client.try_get("/healthz").await, Ok(r) if r.status == 200) {
                return sandbox;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the sandbox did not start");
    }

    pub async fn admin(&self, method: &str, path: &str, body: Value) {
        let port: u16 = self.url.rsplit(':').next().unwrap().parse().unwrap();
        let client = Client { address: ([127, 0, 0, 1], port).into() };
        let r = client.raw(method, path, &[("content-type", "application/json")], body.to_string().into_bytes()).await;
        assert_eq!(r.unwrap().status, 204);
    }
}

pub fn profile(family: &str, document: Option<(&str, &str)>) -> Value {
    let mut p = json!({
        "givenName": "Ann", "familyName": family, "email": "ann@example.com", "phone": "+447700900123",
        "address": { "street": "1 High Street", "city": "Leeds", "postcode": "LS1 1AA", "country": "GB" }
    });
    if let Some((kind, number)) = document {
        p["identityDocument"] = json!({ "kind": kind, "number": number, "issuingCountry": "DK" });
    }
    p
}

pub async fn register(
    c: &Client,
    player: &str,
    country: &str,
    currency: &str,
    profile: Option<Value>,
) -> crate::harness::Reply {
    let mut body = json!({
        "playerId": player, "dateOfBirth": "1990-04-01", "country": country, "currency": currency, "password": PASSWORD
    });
    if let Some(p) = profile {
        body["profile"] = p;
    }
    c.post("/players", &format!("reg-{player}"), body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gamstop_excludes_at_registration_and_an_outage_fails_closed() {
    let sandbox = Sandbox::start().await;
    let cell = TestCell::start_with_registers("uk", &sandbox.url, cell::clock::system()).await;
    let c = cell.client();
    let refused = register(&c, "uk-ex", "GB", "GBP", Some(profile("Excluded", None))).await;
    assert_eq!((refused.status, refused.code().as_str()), (403, "SELF_EXCLUDED"), "{}", refused.json());
    assert_eq!(c.get("/ops/players/uk-ex/balance").await.code(), "PLAYER_NOT_FOUND", "nothing registered");
    assert_eq!(register(&c, "uk-ok", "GB", "GBP", Some(profile("Smith", None))).await.status, 201);
    let bare = register(&c, "uk-bare", "GB", "GBP", None).await;
    assert_eq!((bare.status, bare.code().as_str()), (400, "PROFILE_INCOMPLETE"));
    // GAMSTOP down: refused, with Retry-After, and nothing written.
    sandbox.admin("POST", "/admin/faults", json!({ "party": "gamstop", "status": 503 })).await;
    let down = register(&c, "uk-down", "GB", "GBP", Some(profile("Jones", None))).await;
    assert_eq!((down.status, down.code().as_str()), (503, "SELF_EXCLUSION_CHECK_UNAVAILABLE"));
    assert!(down.header("retry-after").is_some());
    assert_eq!(c.get("/ops/players/uk-down/balance").await.code(), "PLAYER_NOT_FOUND");
    sandbox.admin("DELETE", "/admin/faults", json!({})).await;
    assert_eq!(register(&c, "uk-down", "GB", "GBP", Some(profile("Jones", None))).await.status, 201, "once it answers");
    // Every answer is recorded, with the register and when it was asked; no personal data.
    let checked: Vec<Value> = c
        .events()
        .await
        .into_iter()
        .filter(|e| e["event"] == "self_exclusion.checked")
        .map(|e| e["payload"].clone())
        .collect();
    assert_eq!(checked.len(), 3, "{checked:?}");
    assert_eq!(
        checked[0],
        json!({ "playerId": "uk-ex", "register": "GAMSTOP", "answer": "excluded", "at": "registration" })
    );
    assert!(!serde_json::to_string(&checked).unwrap().contains("Smith"));
    // The compliance officer reads each player's decisions, with the rule, policy and register.
    let log = c.get("/compliance/players/uk-ex/decisions").await.json();
    let first = &log["decisions"][0];
    assert_eq!(
        (first["kind"].as_str(), first["rule"].as_str(), first["source"].as_str()),
        (Some("self_exclusion_check"), Some("UK-SELF-EXCLUSION-REGISTER"), Some("GAMSTOP")),
        "{log}"
    );
    assert_eq!(first["outcome"], "excluded (asked at registration)");
    assert!(first["policyVersion"].as_str().unwrap().starts_with("uk-"));
}

/// A player excluded in ROFUS after registering is refused at their next login, once the kept
/// answer is older than the region's window; the session the login opened is ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rofus_exclusion_after_registering_refuses_the_next_login() {
    let sandbox = Sandbox::start().await;
    let clock = cell::clock::ManualClock::new(chrono::Utc::now());
    let cell = TestCell::start_with_registers("dk", &sandbox.url, clock.clone()).await;
    let c = cell.client();
    let no_cpr = register(&c, "dk-anna", "DK", "DKK", Some(profile("Jensen", None))).await;
    assert_eq!(no_cpr.code(), "PROFILE_INCOMPLETE", "ROFUS is asked with a CPR number");
    let anna = Some(profile("Jensen", Some(("CPR", "0104901234"))));
    assert_eq!(register(&c, "dk-anna", "DK", "DKK", anna).await.status, 201);
    let login = || async {
        let body = json!({ "playerId": "dk-anna", "password": PASSWORD }).to_string();
        c.raw("POST", "/sessions", &[], body.into_bytes()).await.unwrap()
    };
    assert_eq!(login().await.status, 201);
    sandbox.admin("POST", "/admin/excluded", json!({ "number": "0104901234" })).await;
    assert_eq!(login().await.status, 201, "within the window the kept answer stands");
    clock.advance(chrono::Duration::hours(2));
    let refused = login().await;
    assert_eq!((refused.status, refused.code().as_str()), (403, "SELF_EXCLUDED"), "{}", refused.json());
}

/// A sanctions-list hit at registration opens an AML case that holds withdrawals until the
/// compliance role clears it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sanctioned_name_opens_a_case_that_holds_withdrawals() {
    let sandbox = Sandbox::start().await;
    let cell = TestCell::start_with_registers("uk", &sandbox.url, cell::clock::system()).await;
    let c = cell.client();
    assert_eq!(register(&c, "uk-san", "GB", "GBP", Some(profile("Sanctioned", None))).await.status, 201);
    assert_eq!(register(&c, "uk-clean", "GB", "GBP", Some(profile("Brown", None))).await.status, 201);
    let cases = c.get("/compliance/cases").await.json();
    assert_eq!(cases["cases"].as_array().unwrap().len(), 1, "{cases}");
    let case = &cases["cases"][0];
    assert_eq!((case["playerId"].as_str(), case["status"].as_str()), (Some("uk-san"), Some("open")));
    assert!(case["reason"].as_str().unwrap().contains("UN-SC-1267"), "{case}");
    let credit = json!({ "playerId": "uk-san", "currency": "GBP", "amount": "50.00", "reason": "deposit" });
    assert_eq!(c.post("/wallet/credit", "san-d1", credit).await.status, 200, "deposits and play go on");
    let withdrawal = json!({ "playerId": "uk-san", "currency": "GBP", "amount": "10.00", "reason": "withdrawal" });
    let held = c.post("/wallet/debit", "san-w1", withdrawal.clone()).await;
    assert_eq!((held.status, held.code().as_str()), (422, "AML_REVIEW"), "{}", held.json());
    // The compliance officer clears it: withdrawals flow again, and the decision is recorded.
    let id = case["id"].as_str().unwrap().to_owned();
    let decision = json!({ "decision": "cleared", "reason": "a different person: date of birth differs" });
    let decided = c
        .raw(
            "POST",
            &format!("/compliance/cases/{id}"),
            &[("content-type", "application/json")],
            decision.to_string().into_bytes(),
        )
        .await
        .unwrap();
    assert_eq!(decided.status, 200, "{}", String::from_utf8_lossy(&decided.body));
    assert_eq!(decided.json()["status"], "cleared");
    assert_eq!(c.post("/wallet/debit", "san-w2", withdrawal).await.status, 200);
    let log = c.get("/compliance/players/uk-san/decisions").await.json();
    let kinds: Vec<&str> = log["decisions"].as_array().unwrap().iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"aml_case_opened") && kinds.contains(&"aml_case_decided"), "{kinds:?}");
    let events: Vec<String> = c.events().await.iter().map(|e| e["event"].as_str().unwrap().to_owned()).collect();
    assert!(events.contains(&"aml.alert".to_owned()) && events.contains(&"aml.case_decided".to_owned()));
    // Every step of the case is in the audit chain, the alert its registration opened included.
    let chain = c.get("/audit/records?limit=1000").await.json();
    let chained: Vec<String> = chain["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            serde_json::from_str::<Value>(r["event"].as_str().unwrap()).unwrap()["event"].as_str().unwrap().to_owned()
        })
        .collect();
    for step in ["aml.alert", "aml.case_decided"] {
        assert_eq!(chained.iter().filter(|e| *e == step).count(), 1, "{step} in {chained:?}");
    }
}

/// Spain asks RGIAJ before each deposit too: a player excluded since their last answer cannot
/// deposit once that answer is older than the window, and an outage refuses the deposit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rgiaj_is_asked_before_a_deposit() {
    let sandbox = Sandbox::start().await;
    let clock = cell::clock::ManualClock::new(chrono::Utc::now());
    let cell = TestCell::start_with_registers("es", &sandbox.url, clock.clone()).await;
    let c = cell.client();
    let mut ana = profile("Garcia", Some(("DNI", "12345678Z")));
    ana["identityDocument"]["issuingCountry"] = json!("ES");
    ana["address"]["country"] = json!("ES");
    let incomplete = register(&c, "es-ana", "ES", "EUR", Some(ana.clone())).await;
    assert_eq!(incomplete.code(), "PROFILE_INCOMPLETE", "Spain requires nationality and fiscal region");
    assert!(incomplete.json()["message"].as_str().unwrap().contains("nationality"), "{}", incomplete.json());
    ana["nationality"] = json!("ES");
    ana["fiscalRegion"] = json!("13");
    ana["sex"] = json!("female");
    assert_eq!(register(&c, "es-ana", "ES", "EUR", Some(ana)).await.status, 201);
    let deposit = |key: &str| {
        let body = json!({ "playerId": "es-ana", "currency": "EUR", "amount": "10.00", "reason": "deposit" });
        let key = key.to_owned();
        async move { c.post("/wallet/credit", &key, body).await }
    };
    assert_eq!(deposit("d1").await.status, 200);
    sandbox.admin("POST", "/admin/excluded", json!({ "number": "12345678Z" })).await;
    assert_eq!(deposit("d2").await.status, 200, "within the window the kept answer stands");
    clock.advance(chrono::Duration::hours(2));
    let refused = deposit("d3").await;
    assert_eq!((refused.status, refused.code().as_str()), (403, "SELF_EXCLUDED"), "{}", refused.json());
    assert_eq!(c.balance("es-ana").await["cash"], "20.00", "nothing moved");
    // The answer reached the ledger's gate: a bet from a session opened before is refused too.
    let hold = json!({ "playerId": "es-ana", "roundId": "r1", "betId": "b1", "currency": "EUR", "amount": "1.00" });
    let bet = c.post("/wallet/hold", "es-bet-1", hold).await;
    assert_eq!((bet.status, bet.code().as_str()), (422, "SELF_EXCLUDED"), "{}", bet.json());
    assert!(bet.json()["message"].as_str().unwrap().contains("RGIAJ"), "{}", bet.json());
    sandbox.admin("POST", "/admin/faults", json!({ "party": "rgiaj", "status": 503 })).await;
    clock.advance(chrono::Duration::hours(2));
    assert_eq!(deposit("d4").await.code(), "SELF_EXCLUSION_CHECK_UNAVAILABLE");
}

/// A name added to the sanctions list after its player registered: the cell screens every player
/// again when the list's version changes, and the hit opens a case that holds withdrawals; the
/// next change does not open it twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_sanctions_listing_opens_a_case_for_a_registered_player() {
    let sandbox = Sandbox::start().await;
    let cell = TestCell::start_with_registers("uk", &sandbox.url, cell::clock::system()).await;
    let c = cell.client();
    let mut ivan = profile("Listedlater", None);
    ivan["givenName"] = json!("Ivan");
    assert_eq!(register(&c, "uk-ivan", "GB", "GBP", Some(ivan)).await.status, 201);
    assert_eq!(register(&c, "uk-jane", "GB", "GBP", Some(profile("Clean", None))).await.status, 201);
    let credit = json!({ "playerId": "uk-ivan", "currency": "GBP", "amount": "50.00", "reason": "deposit" });
    assert_eq!(c.post("/wallet/credit", "ivan-d1", credit).await.status, 200);
    assert!(c.get("/compliance/cases").await.json()["cases"].as_array().unwrap().is_empty());
    let listing = json!({ "givenName": "Ivan", "familyName": "Listed-Later", "program": "OFAC-SDN" });
    sandbox.admin("POST", "/admin/sanctions", listing).await;
    let mut cases = Vec::new();
    for _ in 0..100 {
        cases = c.get("/compliance/cases").await.json()["cases"].as_array().unwrap().clone();
        if !cases.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(cases.len(), 1, "{cases:?}");
    assert_eq!(
        (cases[0]["playerId"].as_str(), cases[0]["rule"].as_str()),
        (Some("uk-ivan"), Some("UK-SANCTIONS-SCREENING"))
    );
    assert!(cases[0]["reason"].as_str().unwrap().contains("OFAC-SDN"), "{}", cases[0]);
    let withdrawal = json!({ "playerId": "uk-ivan", "currency": "GBP", "amount": "10.00", "reason": "withdrawal" });
    assert_eq!(c.post("/wallet/debit", "ivan-w1", withdrawal).await.code(), "AML_REVIEW");
    // Another listing, another version: Ivan's case is not opened twice.
    let other = json!({ "givenName": "", "familyName": "Someoneelse", "program": "UN" });
    sandbox.admin("POST", "/admin/sanctions", other).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(c.get("/compliance/cases").await.json()["cases"].as_array().unwrap().len(), 1);
    let alerts = c.events().await.into_iter().filter(|e| e["event"] == "aml.alert").count();
    assert_eq!(alerts, 1);
}
