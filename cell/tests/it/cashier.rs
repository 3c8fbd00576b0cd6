//! Deposits through the sandbox's card PSP, with real processes: the wallet is credited exactly
//! once per captured payment, never for a refused one, whatever the PSP's notifications do
//! (duplicated, overtaking the API's answers, late, badly signed, about an unknown payment) and
//! when a capture fails for a while.

use crate::harness::{Client, Reply, TestCell};
use crate::kyc::settled_kyc;
use crate::limits::login;
use crate::registers::{profile, register, Sandbox};
use serde_json::{json, Value};
use std::time::Duration;

/// A verified UK player, logged in: their token.
pub(crate) async fn verified_player(c: &Client, player: &str) -> String {
    assert_eq!(register(c, player, "GB", "GBP", Some(profile("Payer", None))).await.status, 201);
    let token = login(c, player).await;
    assert_eq!(settled_kyc(c, player, &token).await["status"], "verified");
    token
}

async fn deposit(c: &Client, player: &str, token: &str, amount: &str, method: &str, key: &str) -> Reply {
    let body =
        json!({ "playerId": player, "psp": "card", "amount": amount, "currency": "GBP", "paymentMethod": method });
    let bearer = format!("Bearer {token}");
    let headers =
        [("authorization", bearer.as_str()), ("x-idempotency-key", key), ("content-type", "application/json")];
    c.raw("POST", "/cashier/deposits", &headers, body.to_string().into_bytes()).await.unwrap()
}

/// The player's payment `id` once it leaves `pending`, `authorised` and `approved`, or after 10 s.
pub(crate) async fn settled(c: &Client, player: &str, token: &str, id: &str) -> Value {
    let bearer = format!("Bearer {token}");
    let mut last = Value::Null;
    for _ in 0..200 {
        let path = format!("/cashier/players/{player}/transactions");
        let list = c.raw("GET", &path, &[("authorization", bearer.as_str())], Vec::new()).await.unwrap().json();
        last = list["payments"].as_array().unwrap().iter().find(|p| p["id"] == id).cloned().unwrap_or(Value::Null);
        if !matches!(last["status"].as_str(), Some("pending" | "authorised" | "approved") | None) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("payment {id} never settled: {last}");
}

pub(crate) fn count(events: &[Value], name: &str) -> usize {
    events.iter().filter(|e| e["event"] == name).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposit_is_credited_once_when_the_psp_captures_it() {
    let sandbox = Sandbox::start().await;
    let cell = TestCell::start_with_sandbox("uk", &sandbox.url, cell::clock::system()).await;
    let c = cell.client();
    let token = verified_player(&c, "uk-dee").await;
    let created = deposit(&c, "uk-dee", &token, "25.00", "card:tok_visa_4242", "dee-1").await;
    assert_eq!(created.status, 201, "{}", String::from_utf8_lossy(&created.body));
    let id = created.json()["id"].as_str().unwrap().to_owned();
    assert!(created.json()["pspReference"].as_str().unwrap().starts_with("pay_"), "{}", created.json());
    let payment = settled(&c, "uk-dee", &token, &id).await;
    assert_eq!((payment["status"].as_str(), payment["amount"].as_str()), (Some("captured"), Some("25.00")));
    assert_eq!(c.balance("uk-dee").await["cash"], "25.00");
    // The same request again: the same payment, no second PSP payment, nothing more credited.
    let again = deposit(&c, "uk-dee", &token, "25.00", "card:tok_visa_4242", "dee-1").await;
    assert_eq!((again.status, again.json()["id"].as_str()), (200, Some(id.as_str())));
    let psp = sandbox_payments(&sandbox).await;
    assert_eq!(psp.len(), 1, "{psp:?}");
    assert_eq!(c.balance("uk-dee").await["cash"], "25.00");
    // Every notification is chained as it came; the credit is one event.
    let events = c.events().await;
    assert_eq!((count(&events, "payment.intent_created"), count(&events, "payment.confirmed")), (1, 1));
    assert_eq!(count(&events, "cashier.webhook.received"), 2, "AUTHORISATION and CAPTURE");
    let chain = c.get("/audit/records?limit=1000").await.json();
    assert!(chain["records"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["event"].as_str().unwrap().contains("cashier.webhook.received")));
    // A refused card: failed, never credited.
    let refused = deposit(&c, "uk-dee", &token, "10.00", "card:tok_decline", "dee-2").await;
    let id = refused.json()["id"].as_str().unwrap().to_owned();
    let payment = settled(&c, "uk-dee", &token, &id).await;
    assert_eq!((payment["status"].as_str(), payment["reason"].as_str()), (Some("failed"), Some("Refused")));
    assert_eq!(c.balance("uk-dee").await["cash"], "25.00");
    assert_eq!(count(&c.events().await, "payment.failed"), 1);
}

async fn sandbox_payments(sandbox: &Sandbox) -> Vec<Value> {
    let port: u16 = sandbox.url.rsplit(':').next().unwrap().parse().unwrap();
    let client = Client { address: ([127, 0, 0, 1], port).into() };
    client.get("/admin/psp/payments").await.json()["payments"].as_array().unwrap().clone()
}

/// Each notification fault of the sandbox, one deposit each: credited exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notification_faults_never_credit_twice_or_not_at_all() {
    let sandbox = Sandbox::start().await;
    let cell = TestCell::start_with_sandbox("uk", &sandbox.url, cell::clock::system()).await;
    let c = cell.client();
    let token = verified_player(&c, "uk-fay").await;
    let mut credited = 0;
    for (i, mode) in ["duplicate", "reorder", "late", "bad-signature", "unknown"].iter().enumerate() {
        sandbox
            .admin("POST", "/admin/faults", json!({ "party": "card-webhook", "mode": mode, "latencyMs": 800 }))
            .await;
        let created = deposit(&c, "uk-fay", &token, "10.00", "card:tok_visa_4242", &format!("fay-{i}")).await;
        assert!(matches!(created.status, 201 | 200), "{mode}: {}", String::from_utf8_lossy(&created.body));
        let id = created.json()["id"].as_str().unwrap().to_owned();
        let payment = settled(&c, "uk-fay", &token, &id).await;
        assert_eq!(payment["status"], "captured", "{mode}: {payment}");
        sandbox.admin("DELETE", "/admin/faults", json!({})).await;
        credited += 10;
        assert_eq!(c.balance("uk-fay").await["cash"], format!("{credited}.00"), "after {mode}");
    }
    // Give any straggling copy time to arrive: still credited once each.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(c.balance("uk-fay").await["cash"], "50.00");
    assert_eq!(count(&c.events().await, "payment.confirmed"), 5);
}

/// A capture the PSP answers 500 is tried again until it takes: credited once, then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_capture_is_retried_until_it_takes() {
    let sandbox = Sandbox::start().await;
    let cell = TestCell::start_with_sandbox("uk", &sandbox.url, cell::clock::system()).await;
    let c = cell.client();
    let token = verified_player(&c, "uk-gus").await;
    sandbox.admin("POST", "/admin/faults", json!({ "party": "card-capture", "status": 500 })).await;
    let created = deposit(&c, "uk-gus", &token, "40.00", "card:tok_visa_4242", "gus-1").await;
    let id = created.json()["id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(c.balance("uk-gus").await["cash"], "0.00", "not captured: not credited");
    sandbox.admin("DELETE", "/admin/faults", json!({})).await;
    assert_eq!(settled(&c, "uk-gus", &token, &id).await["status"], "captured");
    assert_eq!(c.balance("uk-gus").await["cash"], "40.00");
}

/// Compliance's gates run before the PSP is asked: a deposit past the player's limit never
/// reaches it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposit_past_a_limit_never_reaches_the_psp() {
    let sandbox = Sandbox::start().await;
    let cell = TestCell::start_with_sandbox("uk", &sandbox.url, cell::clock::system()).await;
    let c = cell.client();
    let token = verified_player(&c, "uk-hal").await;
    let limit = json!({ "changes": [{ "kind": "deposit", "period": "day", "amount": "30.00" }] });
    let set = crate::limits::as_player(&c, "PUT", "/players/uk-hal/limits", &token, Some(limit)).await;
    assert_eq!(set.status, 200);
    let refused = deposit(&c, "uk-hal", &token, "31.00", "card:tok_visa_4242", "hal-1").await;
    assert_eq!((refused.status, refused.code().as_str()), (422, "DEPOSIT_LIMIT_EXCEEDED"), "{}", refused.json());
    assert!(sandbox_payments(&sandbox).await.is_empty(), "the PSP never heard of it");
}

async fn withdraw(c: &Client, player: &str, token: &str, amount: &str, method: &str, key: &str) -> Reply {
    let body =
        json!({ "playerId": player, "psp": "card", "amount": amount, "currency": "GBP", "paymentMethod": method });
    let bearer = format!("Bearer {token}");
    let headers =
        [("authorization", bearer.as_str()), ("x-idempotency-key", key), ("content-type", "application/json")];
    c.raw("POST", "/cashier/withdrawals", &headers, body.to_string().into_bytes()).await.unwrap()
}

/// A funded, verified UK player: their token, with `amount` deposited by card `tok_visa_4242`.
pub(crate) async fn funded(c: &Client, player: &str, amount: &str) -> String {
    let token = verified_player(c, player).await;
    let created = deposit(c, player, &token, amount, "card:tok_visa_4242", &format!("{player}-fund")).await;
    let id = created.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(settled(c, player, &token, &id).await["status"], "captured");
    token
}

pub(crate) async fn books_balance(c: &Client) {
    let sums = c.get("/ops/ledger").await.json();
    assert!(
        sums.as_object().unwrap().values().all(|v| v.as_str().unwrap().trim_start_matches(['0', '.']).is_empty()),
        "{sums}"
    );
}

/// A chargeback larger than the player's cash: the cash goes, the rest is debt the balance shows,
/// and the next deposit repays it first. The books balance throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chargeback_past_the_cash_becomes_debt_the_next_deposit_repays() {
    let sandbox = Sandbox::start().await;
    let cell = TestCell::start_with_sandbox("uk", &sandbox.url, cell::clock::system()).await;
    let c = cell.client();
    let token = funded(&c, "uk-kim", "30.00").await;
    let correction = json!({ "playerId": "uk-kim", "currency": "GBP", "amount": "25.00", "reason": "correction" });
    assert_eq!(c.post("/wallet/debit", "kim-spent", correction).await.status, 200, "25.00 of it is gone");
    let reference = sandbox_payments(&sandbox).await[0]["pspReference"].as_str().unwrap().to_owned();
    sandbox.admin("POST", "/admin/psp/chargeback", json!({ "pspReference": reference })).await;
    let mut balance = Value::Null;
    for _ in 0..100 {
        balance = c.balance("uk-kim").await;
        if balance["debt"] != "0.00" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!((balance["cash"].as_str(), balance["debt"].as_str()), (Some("0.00"), Some("25.00")), "{balance}");
    books_balance(&c).await;
    let events = c.events().await;
    let charged = events.iter().find(|e| e["event"] == "chargeback.received").unwrap();
    assert_eq!(charged["payload"]["debt"], "25.00");
    // Owing, the player withdraws nothing until a deposit settles it.
    let out = withdraw(&c, "uk-kim", &token, "1.00", "card:tok_visa_4242", "kim-out").await;
    assert_eq!((out.status, out.code().as_str()), (422, "DEBT_OUTSTANDING"), "{}", out.json());
    // The next deposit repays the debt first.
    let created = deposit(&c, "uk-kim", &token, "40.00", "card:tok_visa_4242", "kim-2").await;
    let id = created.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(settled(&c, "uk-kim", &token, &id).await["status"], "captured");
    let balance = c.balance("uk-kim").await;
    assert_eq!((balance["cash"].as_str(), balance["debt"].as_str()), (Some("15.00"), Some("0.00")), "{balance}");
    books_balance(&c).await;
}

/// A withdrawal to the card the player deposited with is paid out; one whose payout fails comes
/// back to cash. The books balance throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_withdrawal_is_paid_out_or_returned() {
    let sandbox = Sandbox::start().await;
    let cell = TestCell::start_with_sandbox("uk", &sandbox.url, cell::clock::system()).await;
    let c = cell.client();
    let token = funded(&c, "uk-ida", "50.00").await;
    let asked = withdraw(&c, "uk-ida", &token, "20.00", "card:tok_visa_4242", "ida-w1").await;
    assert_eq!(asked.status, 201, "{}", String::from_utf8_lossy(&asked.body));
    assert_eq!(c.balance("uk-ida").await["cash"], "30.00", "held at once");
    let id = asked.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(settled(&c, "uk-ida", &token, &id).await["status"], "paid");
    assert_eq!(c.balance("uk-ida").await["cash"], "30.00");
    books_balance(&c).await;
    // The PSP accepts the payout, then fails it: the money comes back.
    sandbox.admin("POST", "/admin/faults", json!({ "party": "card-payout", "mode": "fail" })).await;
    let asked = withdraw(&c, "uk-ida", &token, "10.00", "card:tok_visa_4242", "ida-w2").await;
    let id = asked.json()["id"].as_str().unwrap().to_owned();
    let failed = settled(&c, "uk-ida", &token, &id).await;
    assert_eq!(
        (failed["status"].as_str(), failed["reason"].as_str()),
        (Some("failed"), Some("Beneficiary account closed"))
    );
    assert_eq!(c.balance("uk-ida").await["cash"], "30.00", "returned");
    books_balance(&c).await;
    // The PSP refuses the payout outright (it will never pay that account): the money comes back
    // at once, rather than the payout being asked for again forever.
    sandbox.admin("DELETE", "/admin/faults", Value::Null).await;
    sandbox.admin("POST", "/admin/faults", json!({ "party": "card-payout", "status": 422 })).await;
    let asked = withdraw(&c, "uk-ida", &token, "5.00", "card:tok_visa_4242", "ida-w3").await;
    let refused = asked.json();
    assert_eq!(refused["status"], "failed", "{refused}");
    assert!(refused["reason"].as_str().unwrap().starts_with("refused by the PSP: PSP card answered 422"), "{refused}");
    assert_eq!(c.balance("uk-ida").await["cash"], "30.00", "returned");
    books_balance(&c).await;
    let events = c.events().await;
    for (name, n) in [("payout.requested", 3), ("payout.approved", 3), ("payout.paid", 1), ("payout.failed", 2)] {
        assert_eq!(count(&events, name), n, "{name}");
    }
}

/// Off the closed loop (a card the player never deposited with), a withdrawal waits for the
/// finance role: rejected, the money is back; approved, it is paid. The UK bans cancelling it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_withdrawal_off_the_closed_loop_waits_for_finance() {
    let sandbox = Sandbox::start().await;
    let cell = TestCell::start_with_sandbox("uk", &sandbox.url, cell::clock::system()).await;
    let c = cell.client();
    let token = funded(&c, "uk-jon", "60.00").await;
    let asked = withdraw(&c, "uk-jon", &token, "25.00", "card:tok_other_1111", "jon-w1").await;
    let waiting = asked.json();
    assert_eq!(waiting["status"], "pending_approval", "{waiting}");
    assert!(waiting["review"].as_str().unwrap().contains("closed loop"), "{waiting}");
    let id = waiting["id"].as_str().unwrap().to_owned();
    let queue = c.get("/cashier/withdrawals").await.json();
    assert_eq!(queue["withdrawals"][0]["id"], id.as_str(), "{queue}");
    let bearer = format!("Bearer {token}");
    let cancel = c
        .raw("POST", &format!("/cashier/withdrawals/{id}/cancel"), &[("authorization", bearer.as_str())], Vec::new())
        .await
        .unwrap();
    assert_eq!(cancel.status, 403, "the UK bans reversing withdrawals");
    let decide = |what: &str| {
        let path = format!("/cashier/withdrawals/{id}/{what}");
        async move {
            let body = json!({ "reason": "source of funds checked" }).to_string().into_bytes();
            c.raw("POST", &path, &[("content-type", "application/json")], body).await.unwrap()
        }
    };
    let rejected = decide("reject").await;
    assert_eq!((rejected.status, rejected.json()["status"].as_str()), (200, Some("rejected")));
    assert_eq!(c.balance("uk-jon").await["cash"], "60.00", "back in cash");
    assert_eq!(decide("approve").await.code(), "WITHDRAWAL_NOT_PENDING");
    let asked = withdraw(&c, "uk-jon", &token, "15.00", "card:tok_other_1111", "jon-w2").await;
    let id = asked.json()["id"].as_str().unwrap().to_owned();
    let path = format!("/cashier/withdrawals/{id}/approve");
    let body = json!({ "reason": "the card is the player's" }).to_string().into_bytes();
    let approved = c.raw("POST", &path, &[("content-type", "application/json")], body).await.unwrap();
    assert!(matches!(approved.json()["status"].as_str(), Some("approved" | "paid")), "{}", approved.json());
    assert_eq!(settled(&c, "uk-jon", &token, &id).await["status"], "paid");
    assert_eq!(c.balance("uk-jon").await["cash"], "45.00");
    books_balance(&c).await;
}

/// After a day of deposits (through notification faults), a payout, a failed payout and a
/// chargeback, the PSP's settlement report and the cell's books agree; a line the PSP lists twice
/// is reported; the offline command agrees with the route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciliation_reports_zero_differences_after_a_faulty_day() {
    let sandbox = Sandbox::start().await;
    let mut cell = TestCell::start_with_sandbox("uk", &sandbox.url, cell::clock::system()).await;
    let c = cell.client();
    let token = funded(&c, "uk-lea", "80.00").await;
    for (i, mode) in ["duplicate", "reorder", "unknown"].iter().enumerate() {
        sandbox.admin("POST", "/admin/faults", json!({ "party": "card-webhook", "mode": mode })).await;
        let created = deposit(&c, "uk-lea", &token, "5.00", "card:tok_visa_4242", &format!("lea-{i}")).await;
        let id = created.json()["id"].as_str().unwrap().to_owned();
        assert_eq!(settled(&c, "uk-lea", &token, &id).await["status"], "captured");
        sandbox.admin("DELETE", "/admin/faults", json!({})).await;
    }
    let paid = withdraw(&c, "uk-lea", &token, "20.00", "card:tok_visa_4242", "lea-w1").await;
    let id = paid.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(settled(&c, "uk-lea", &token, &id).await["status"], "paid");
    sandbox.admin("POST", "/admin/faults", json!({ "party": "card-payout", "mode": "fail" })).await;
    let failed = withdraw(&c, "uk-lea", &token, "10.00", "card:tok_visa_4242", "lea-w2").await;
    let id = failed.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(settled(&c, "uk-lea", &token, &id).await["status"], "failed");
    sandbox.admin("DELETE", "/admin/faults", json!({})).await;
    let first = sandbox_payments(&sandbox).await[0]["pspReference"].as_str().unwrap().to_owned();
    sandbox.admin("POST", "/admin/psp/chargeback", json!({ "pspReference": first })).await;
    for _ in 0..100 {
        if count(&c.events().await, "chargeback.received") == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let today = chrono::Utc::now().date_naive();
    let path = format!("/ops/reconciliation?psp=card&date={today}");
    let report = c.get(&path).await.json();
    assert_eq!(report["differences"], json!([]), "{report}");
    assert_eq!(report["matched"], 6, "4 captures, 1 payout, 1 chargeback: {report}");
    sandbox.admin("POST", "/admin/faults", json!({ "party": "card-report", "mode": "duplicate" })).await;
    let report = c.get(&path).await.json();
    assert_eq!(report["differences"][0]["kind"], "duplicate_at_psp", "{report}");
    sandbox.admin("DELETE", "/admin/faults", json!({})).await;
    // The same, offline, from the stopped cell's data directory.
    cell.stop().await;
    let out = std::process::Command::new(crate::harness::binary("cell"))
        .args(["cashier", "reconcile", "--data"])
        .arg(cell.dir.path())
        .args(["--psps", concat!(env!("CARGO_MANIFEST_DIR"), "/../config/psps")])
        .args(["--psp-url", &format!("card={}", sandbox.url), "--psp", "card", "--date", &today.to_string()])
        .env("PSP_CARD_SECRET", crate::harness::PSP_CARD_SECRET)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let offline: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((offline["matched"].as_u64(), offline["differences"].as_array().map(Vec::len)), (Some(6), Some(0)));
}

/// Bank push: the deposit answers a redirect to the player's bank; once they approve there, the
/// bank's signed callback credits it, once; a pay-in cancelled at the bank is failed; a payout
/// goes to the account they paid in from. The day reconciles.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bank_push_deposit_is_credited_when_the_player_approves_it_at_their_bank() {
    let sandbox = Sandbox::start().await;
    let cell = TestCell::start_with_sandbox("uk", &sandbox.url, cell::clock::system()).await;
    let c = cell.client();
    let token = verified_player(&c, "uk-mia").await;
    let bearer = format!("Bearer {token}");
    let bank_deposit = |amount: &str, account: &str, key: &str| {
        let body = json!({ "playerId": "uk-mia", "psp": "bank", "amount": amount, "currency": "GBP", "paymentMethod": account });
        let headers = [
            ("authorization", bearer.clone()),
            ("x-idempotency-key", key.to_owned()),
            ("content-type", "application/json".to_owned()),
        ];
        async move {
            let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            c.raw("POST", "/cashier/deposits", &headers, body.to_string().into_bytes()).await.unwrap()
        }
    };
    let created = bank_deposit("35.00", "bank:acct_nwbk_6819", "mia-1").await;
    assert_eq!(created.status, 201, "{}", String::from_utf8_lossy(&created.body));
    let payment = created.json();
    let redirect = payment["redirectUrl"].as_str().unwrap().to_owned();
    assert_eq!(payment["status"], "pending");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(c.balance("uk-mia").await["cash"], "0.00", "nothing before the bank says so");
    // The player at their bank.
    let path =
        redirect.split_once("://").and_then(|(_, rest)| rest.split_once('/')).map(|(_, p)| format!("/{p}")).unwrap();
    let port: u16 = sandbox.url.rsplit(':').next().unwrap().parse().unwrap();
    let bank = Client { address: ([127, 0, 0, 1], port).into() };
    assert_eq!(bank.get(&path).await.status, 200);
    let id = payment["id"].as_str().unwrap().to_owned();
    assert_eq!(settled(&c, "uk-mia", &token, &id).await["status"], "captured");
    assert_eq!(c.balance("uk-mia").await["cash"], "35.00");
    // Cancelled at the bank: failed, nothing credited.
    let cancelled = bank_deposit("5.00", "bank:acct_nwbk_6819", "mia-2").await.json();
    let path = cancelled["redirectUrl"]
        .as_str()
        .unwrap()
        .split_once("://")
        .and_then(|(_, r)| r.split_once('/'))
        .map(|(_, p)| format!("/{p}?decision=cancel"))
        .unwrap();
    assert_eq!(bank.get(&path).await.status, 200);
    let id = cancelled["id"].as_str().unwrap().to_owned();
    assert_eq!(settled(&c, "uk-mia", &token, &id).await["status"], "failed");
    // A payout to the account the money came from.
    let body = json!({ "playerId": "uk-mia", "psp": "bank", "amount": "10.00", "currency": "GBP", "paymentMethod": "bank:acct_nwbk_6819" });
    let headers =
        [("authorization", bearer.as_str()), ("x-idempotency-key", "mia-w1"), ("content-type", "application/json")];
    let asked = c.raw("POST", "/cashier/withdrawals", &headers, body.to_string().into_bytes()).await.unwrap();
    // The bank's callback may already have come: approved, or paid.
    assert!(matches!(asked.json()["status"].as_str(), Some("approved" | "paid")), "{}", asked.json());
    let id = asked.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(settled(&c, "uk-mia", &token, &id).await["status"], "paid");
    assert_eq!(c.balance("uk-mia").await["cash"], "25.00");
    books_balance(&c).await;
    let today = chrono::Utc::now().date_naive();
    let report = c.get(&format!("/ops/reconciliation?psp=bank&date={today}")).await.json();
    assert_eq!(
        (report["matched"].as_u64(), report["differences"].as_array().map(Vec::len)),
        (Some(2), Some(0)),
        "{report}"
    );
}

/// The finance role refunds a captured card deposit: the PSP's REFUND notification takes it back
/// out of the player's cash, once, and the day still reconciles.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refund_takes_a_deposit_back_once() {
    let sandbox = Sandbox::start().await;
    let cell = TestCell::start_with_sandbox("uk", &sandbox.url, cell::clock::system()).await;
    let c = cell.client();
    let token = funded(&c, "uk-ned", "30.00").await;
    let bearer = format!("Bearer {token}");
    let list = c
        .raw("GET", "/cashier/players/uk-ned/transactions", &[("authorization", bearer.as_str())], Vec::new())
        .await
        .unwrap()
        .json();
    let id = list["payments"][0]["id"].as_str().unwrap().to_owned();
    let body = json!({ "reason": "the player asked within the cooling-off" }).to_string().into_bytes();
    let asked = c
        .raw("POST", &format!("/cashier/payments/{id}/refund"), &[("content-type", "application/json")], body.clone())
        .await
        .unwrap();
    assert_eq!(asked.status, 202, "{}", String::from_utf8_lossy(&asked.body));
    let mut status = Value::Null;
    for _ in 0..100 {
        let path = format!("/cashier/payments/{id}");
        status = c.raw("GET", &path, &[("authorization", bearer.as_str())], Vec::new()).await.unwrap().json()["status"]
            .clone();
        if status == "refunded" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, "refunded");
    assert_eq!(c.balance("uk-ned").await["cash"], "0.00");
    let again = c
        .raw("POST", &format!("/cashier/payments/{id}/refund"), &[("content-type", "application/json")], body)
        .await
        .unwrap();
    assert_eq!(again.code(), "WITHDRAWAL_NOT_PENDING", "refunded once");
    assert_eq!(count(&c.events().await, "payment.refunded"), 1);
    books_balance(&c).await;
    let today = chrono::Utc::now().date_naive();
    let report = c.get(&format!("/ops/reconciliation?psp=card&date={today}")).await.json();
    assert_eq!(report["differences"], json!([]), "{report}");
}

/// From outside the licence a deposit is refused (451), a withdrawal is not: the router's
/// `X-Client-Country` says where the player is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deposits_stop_abroad_withdrawals_do_not() {
    let sandbox = Sandbox::start().await;
    let cell = TestCell::start_with_sandbox("uk", &sandbox.url, cell::clock::system()).await;
    let c = cell.client();
    let token = funded(&c, "uk-ola", "20.00").await;
    let bearer = format!("Bearer {token}");
    let from_us = |path: &str, key: &str, body: Value| {
        let headers = [
            ("authorization", bearer.clone()),
            ("x-idempotency-key", key.to_owned()),
            ("content-type", "application/json".to_owned()),
            ("x-client-country", "US".to_owned()),
        ];
        let path = path.to_owned();
        async move {
            let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            c.raw("POST", &path, &headers, body.to_string().into_bytes()).await.unwrap()
        }
    };
    let body = json!({ "playerId": "uk-ola", "psp": "card", "amount": "5.00", "currency": "GBP", "paymentMethod": "card:tok_visa_4242" });
    let refused = from_us("/cashier/deposits", "ola-abroad-d", body.clone()).await;
    assert_eq!((refused.status, refused.code().as_str()), (451, "LOCATION_NOT_LICENSED"), "{}", refused.json());
    let out = from_us("/cashier/withdrawals", "ola-abroad-w", body).await;
    assert_eq!(out.status, 201, "{}", String::from_utf8_lossy(&out.body));
}

/// A capture notification of another amount than the payment's is not credited; the day's
/// reconciliation shows it for finance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capture_of_another_amount_is_not_credited() {
    let sandbox = Sandbox::start().await;
    let cell = TestCell::start_with_sandbox("uk", &sandbox.url, cell::clock::system()).await;
    let c = cell.client();
    let token = verified_player(&c, "uk-pat").await;
    sandbox.admin("POST", "/admin/faults", json!({ "party": "card-webhook", "mode": "wrong-amount" })).await;
    let created = deposit(&c, "uk-pat", &token, "20.00", "card:tok_visa_4242", "pat-1").await;
    let id = created.json()["id"].as_str().unwrap().to_owned();
    let bearer = format!("Bearer {token}");
    let mut payment = Value::Null;
    for _ in 0..100 {
        let path = format!("/cashier/payments/{id}");
        payment = c.raw("GET", &path, &[("authorization", bearer.as_str())], Vec::new()).await.unwrap().json();
        if payment.get("review").is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(payment["review"].as_str().unwrap_or_default().contains("21.00"), "{payment}");
    assert_eq!(c.balance("uk-pat").await["cash"], "0.00", "not credited");
    let today = chrono::Utc::now().date_naive();
    let report = c.get(&format!("/ops/reconciliation?psp=card&date={today}")).await.json();
    assert_eq!(report["differences"][0]["kind"], "missing_in_ledger", "{report}");
}
