//! The cashier finishing what was interrupted: a deposit whose PSP answer was lost when the cell
//! stopped, a notification step the ledger refused, a captured pay-in the cell could not credit
//! (given back by the PSP), and settlement lines dated as the PSP dates them.

use crate::cashier::{books_balance, count, funded, verified_player};
use crate::harness::{Client, TestCell};
use crate::registers::Sandbox;
use cell::domains::cashier::psps::Notification;
use cell::domains::cashier::{CreateDeposit, HandleNotification, NotificationOutcome};
use cell::events::EventContext;
use cell::idempotency::IdempotencyKey;
use cell::ledger::{Gate, GateRefusal, GatedEntry, HouseAccount, PostingKind};
use contracts::{CellCode, Currency, Money, PlayerId};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn ctx() -> EventContext {
    EventContext { cell: "uk".into(), trace_id: "cashier-recovery".into(), operator: None }
}

fn key(name: &str) -> IdempotencyKey {
    IdempotencyKey::new(name, "cashier-recovery", &Value::Null).unwrap()
}

fn gbp(amount: i64) -> Money {
    Money::signed(Decimal::from(amount), Currency::from_code("GBP").unwrap()).unwrap()
}

/// A card deposit of `amount` pounds by `player`, through the writer alone (no PSP here).
fn card_deposit(id: &str, player: &str, amount: i64) -> CreateDeposit {
    CreateDeposit {
        id: id.into(),
        player: PlayerId::new(player).unwrap(),
        psp: "card".into(),
        clearing: HouseAccount("psp-clearing:card"),
        money: gbp(amount),
        payment_method: "card:tok_visa_4242".into(),
        location: None,
    }
}

/// Per currency, the books sum to zero.
fn books_sum_to_zero(ledger: &cell::ledger::Ledger) {
    for (currency, total) in ledger.ledger_totals().unwrap() {
        assert!(total.is_zero(), "{currency} sums to {total}");
    }
}

/// Payment `id` as its player sees it, once its status is `want` (or after 15 s).
async fn payment_becomes(c: &Client, token: &str, id: &str, want: &str) -> Value {
    let bearer = format!("Bearer {token}");
    let mut last = Value::Null;
    for _ in 0..300 {
        let path = format!("/cashier/payments/{id}");
        last = c.raw("GET", &path, &[("authorization", bearer.as_str())], Vec::new()).await.unwrap().json();
        if last["status"] == want {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("payment {id} never became {want}: {last}");
}

/// The cell stopped after recording two deposits and before their PSP answered: one never reached
/// the PSP, one did. After the restart the sweeper asks the PSP about both: the first fails
/// (nothing moved), the second goes on and is credited once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposit_whose_psp_answer_was_lost_is_asked_about() {
    let sandbox = Sandbox::start().await;
    let mut cell = TestCell::start_with_sandbox("uk", &sandbox.url, cell::clock::system()).await;
    let token = verified_player(&cell.client(), "uk-lou").await;
    cell.stop().await;
    // What the cell had written when it stopped: the two payments, `pending`, no PSP reference.
    {
        use cell::store::embedded::{Durability, EmbeddedStore};
        let store = Arc::new(EmbeddedStore::open(&cell.dir.path().join("store"), Durability::SyncPerCommit).unwrap());
        let (ledger, writer) = crate::harness::ledger(store, Vec::new());
        for (id, amount) in [("dep_lost_never", 20), ("dep_lost_taken", 15)] {
            let command = card_deposit(id, "uk-lou", amount);
            ledger.execute(command, key(id), ctx()).await.unwrap();
        }
        crate::harness::ledger_stop(ledger, writer).await;
    }
    // The PSP took the second; its notifications come late (after the cell has asked).
    sandbox.admin("POST", "/admin/faults", json!({ "party": "card-webhook", "mode": "late", "latencyMs": 4000 })).await;
    let port: u16 = sandbox.url.rsplit(':').next().unwrap().parse().unwrap();
    let psp = Client { address: ([127, 0, 0, 1], port).into() };
    let body = json!({
        "merchantReference": "dep_lost_taken", "amount": "15.00", "currency": "GBP",
        "paymentMethod": "card:tok_visa_4242",
        "notificationUrl": format!("http://{}/cashier/webhooks/card", cell.address),
    });
    assert_eq!(psp.post("/psp/card/v1/payments", "unused", body).await.status, 201);
    cell.restart("uk").await;
    let c = cell.client();

    let never = payment_becomes(&c, &token, "dep_lost_never", "failed").await;
    assert!(never["reason"].as_str().unwrap().contains("never received it"), "{never}");
    let taken = payment_becomes(&c, &token, "dep_lost_taken", "captured").await;
    assert!(taken["pspReference"].as_str().unwrap().starts_with("pay_"), "{taken}");
    assert_eq!(c.balance("uk-lou").await["cash"], "15.00", "the one the PSP took, once");
    let events = c.events().await;
    let intent = |id: &str| {
        events.iter().filter(|e| e["event"] == "payment.intent_created" && e["payload"]["paymentId"] == id).count()
    };
    assert_eq!(intent("dep_lost_taken"), 1, "its reference came from the inquiry, before any notification");
    assert_eq!(intent("dep_lost_never"), 0);
    assert_eq!(count(&events, "payment.confirmed"), 1);
    books_balance(&c).await;
}

/// Refuses chargebacks while `refusing` is set: a ledger refusal after the notification was
/// seen and chained.
/// A test rule: entries of `kind` are refused while `refusing` holds.
struct Refuses {
    kind: PostingKind,
    refusing: Arc<AtomicBool>,
}

impl Gate for Refuses {
    fn name(&self) -> &'static str {
        "test-refuses"
    }

    fn check(
        &self,
        e: &GatedEntry<'_>,
        _: &mut cell::ledger::GateState<'_>,
    ) -> Result<Result<(), GateRefusal>, cell::store::StoreError> {
        if e.kind == self.kind && self.refusing.load(Ordering::SeqCst) {
            return Ok(Err(GateRefusal {
                code: CellCode::StakeLimitExceeded,
                rule: "test-refuses".into(),
                policy_version: "t1".into(),
                message: format!("no {:?} for now (a test rule)", self.kind),
            }));
        }
        Ok(Ok(()))
    }
}

fn notification(event: &str, code: &str, payment: &str) -> Notification {
    Notification {
        event_id: event.into(),
        code: code.into(),
        psp_reference: "pay_1".into(),
        merchant_reference: payment.into(),
        success: true,
        reason: None,
        amount: Some("40.00".into()),
        currency: Some("GBP".into()),
        event_date: None,
    }
}

/// A notification the ledger refuses a step of is not lost to its own deduplication: it is
/// parked and, tried again once the ledger takes it, applied once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_whose_step_is_refused_is_parked_not_lost() {
    use cell::store::embedded::{Durability, EmbeddedStore};
    use cell::store::Store;
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path(), Durability::GroupSync).unwrap());
    crate::harness::register_in_store(&store, &["uk-cy"]);
    let player = PlayerId::new("uk-cy").unwrap();
    let refusing = Arc::new(AtomicBool::new(true));
    let (ledger, writer) = crate::harness::ledger(
        store,
        vec![Box::new(Refuses { kind: PostingKind::Chargeback, refusing: refusing.clone() })],
    );
    let clearing = HouseAccount("psp-clearing:card");
    let command = card_deposit("dep_cy", "uk-cy", 40);
    ledger.execute(command, key("dep"), ctx()).await.unwrap();
    let handle = |n: Notification, from_park: bool| HandleNotification {
        psp: "card".into(),
        clearing,
        raw: serde_json::to_string(&n).unwrap(),
        notification: n,
        from_park,
    };
    let take = |n, from_park| {
        let ledger = ledger.clone();
        let command = handle(n, from_park);
        async move { ledger.execute_unkeyed(command, ctx()).await.unwrap().value }
    };
    let captured = take(notification("evt_1", "CAPTURE", "dep_cy"), false).await;
    assert!(matches!(captured, NotificationOutcome::Credited(_)), "{captured:?}");

    let chargeback = notification("evt_2", "CHARGEBACK", "dep_cy");
    assert_eq!(take(chargeback.clone(), false).await, NotificationOutcome::Parked, "refused: parked");
    assert_eq!(take(chargeback.clone(), false).await, NotificationOutcome::Duplicate, "seen once, chained once");
    assert_eq!(ledger.balance(&player, None, None).unwrap().cash.0, Decimal::from(40), "nothing moved yet");
    // Still refused when tried again from the park: still parked.
    assert_eq!(take(chargeback.clone(), true).await, NotificationOutcome::Parked);
    refusing.store(false, Ordering::SeqCst);
    let applied = take(chargeback.clone(), true).await;
    assert!(matches!(applied, NotificationOutcome::ChargedBack(_)), "{applied:?}");
    assert_eq!(ledger.balance(&player, None, None).unwrap().cash.0, Decimal::ZERO, "taken back once");
    // Out of the park: trying it again finds nothing to do.
    assert_eq!(take(chargeback, true).await, NotificationOutcome::Noted);
    assert_eq!(ledger.balance(&player, None, None).unwrap().cash.0, Decimal::ZERO);
    crate::harness::ledger_stop(ledger, writer).await;
}

/// The writer applies a batch while the one before it still commits (each commit slowed here, so
/// several are in flight): what a batch did to a payment is what the next one reads, not the
/// store's older copy. A capture sent again and again (under one event id and under new ones) is
/// credited once; a withdrawal cancelled by many requests at once is given back once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_in_flight_read_what_the_one_before_did_to_a_payment() {
    use cell::domains::cashier::{CancelWithdrawal, CashierError, CreateWithdrawal};
    use cell::ledger::Failed;
    use cell::store::embedded::{Durability, EmbeddedStore};
    use cell::store::fault::{FaultConfig, FaultyStore};
    use cell::store::Store;
    let dir = tempfile::tempdir().unwrap();
    let embedded: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path(), Durability::GroupSync).unwrap());
    crate::harness::register_in_store(&embedded, &["uk-pip"]);
    let faults = FaultConfig { commit_delay_max: Duration::from_millis(30), ..Default::default() };
    let (ledger, writer) = crate::harness::ledger(Arc::new(FaultyStore::new(embedded, faults, 7)), Vec::new());
    let player = PlayerId::new("uk-pip").unwrap();
    let clearing = HouseAccount("psp-clearing:card");
    ledger.execute(card_deposit("dep_pip", "uk-pip", 40), key("dep"), ctx()).await.unwrap();
    // Each sent a moment after the one before, so they land in successive batches.
    let mut captures = tokio::task::JoinSet::new();
    for n in 0..24 {
        let event = if n % 2 == 0 { "evt_cap".to_owned() } else { format!("evt_cap_{n}") };
        let n = notification(&event, "CAPTURE", "dep_pip");
        let command = HandleNotification {
            psp: "card".into(),
            clearing,
            raw: serde_json::to_string(&n).unwrap(),
            notification: n,
            from_park: false,
        };
        let ledger = ledger.clone();
        captures.spawn(async move { ledger.execute_unkeyed(command, ctx()).await.unwrap().value });
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    let outcomes = captures.join_all().await;
    let credited = outcomes.iter().filter(|o| matches!(o, NotificationOutcome::Credited(_))).count();
    assert_eq!(credited, 1, "{outcomes:?}");
    assert_eq!(ledger.balance(&player, None, None).unwrap().cash.0, Decimal::from(40), "credited once");

    // Off the closed loop: it waits for finance, and the player may cancel it.
    let withdrawal = CreateWithdrawal {
        id: "wd_pip".into(),
        player: player.clone(),
        psp: "card".into(),
        money: gbp(25),
        payment_method: "card:tok_elsewhere_9999".into(),
        review_above: gbp(1000),
    };
    ledger.execute(withdrawal, key("wd"), ctx()).await.unwrap();
    assert_eq!(ledger.balance(&player, None, None).unwrap().cash.0, Decimal::from(15), "held");
    let mut cancels = tokio::task::JoinSet::new();
    for _ in 0..24 {
        let command = CancelWithdrawal { id: "wd_pip".into(), player: player.clone(), clearing };
        let ledger = ledger.clone();
        cancels.spawn(async move { ledger.execute_unkeyed(command, ctx()).await.map(|_| ()) });
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    let outcomes = cancels.join_all().await;
    assert_eq!(outcomes.iter().filter(|o| o.is_ok()).count(), 1, "{outcomes:?}");
    for outcome in outcomes.iter().filter_map(|o| o.as_ref().err()) {
        assert!(matches!(outcome, Failed::Refused(CashierError::NotPending { .. })), "{outcome:?}");
    }
    assert_eq!(ledger.balance(&player, None, None).unwrap().cash.0, Decimal::from(40), "given back once");
    books_sum_to_zero(&ledger);
    crate::harness::ledger_stop(ledger, writer).await;
}

/// A chargeback that overtakes its deposit's capture is parked until the capture is in, then
/// taken back once; a withdrawal held before the player came to owe (that chargeback, past their
/// cash) is not approved by finance: the checks run again at approval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_take_back_waits_for_its_capture_and_approval_checks_again() {
    use cell::domains::cashier::{CashierError, CreateWithdrawal, DecideWithdrawal};
    use cell::ledger::Failed;
    use cell::store::embedded::{Durability, EmbeddedStore};
    use cell::store::Store;
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path(), Durability::GroupSync).unwrap());
    crate::harness::register_in_store(&store, &["uk-tb"]);
    let refusing = Arc::new(AtomicBool::new(false));
    let gate = Refuses { kind: PostingKind::Deposit, refusing: refusing.clone() };
    let (ledger, writer) = crate::harness::ledger(store.clone(), vec![Box::new(gate)]);
    let player = PlayerId::new("uk-tb").unwrap();
    let clearing = HouseAccount("psp-clearing:card");
    ledger.execute(card_deposit("dep_tb", "uk-tb", 40), key("dep"), ctx()).await.unwrap();
    let take = |n: Notification, from_park: bool| {
        let ledger = ledger.clone();
        let raw = serde_json::to_string(&n).unwrap();
        let command = HandleNotification { psp: "card".into(), clearing, raw, notification: n, from_park };
        async move { ledger.execute_unkeyed(command, ctx()).await.unwrap().value }
    };
    let chargeback = notification("evt_cb", "CHARGEBACK", "dep_tb");
    assert_eq!(take(chargeback.clone(), false).await, NotificationOutcome::Parked, "before its capture");
    assert_eq!(take(chargeback.clone(), true).await, NotificationOutcome::Parked, "still before it");
    let captured = take(notification("evt_cap", "CAPTURE", "dep_tb"), false).await;
    assert!(matches!(captured, NotificationOutcome::Credited(_)), "{captured:?}");
    let cash = |ledger: &cell::ledger::Ledger| ledger.balance(&player, None, None).unwrap();
    assert_eq!(cash(&ledger).cash.0, Decimal::from(40));

    // Held for finance (off the closed loop), then the parked chargeback goes through.
    let withdrawal = CreateWithdrawal {
        id: "wd_tb".into(),
        player: player.clone(),
        psp: "card".into(),
        money: gbp(30),
        payment_method: "card:tok_elsewhere_9999".into(),
        review_above: gbp(1000),
    };
    ledger.execute(withdrawal, key("wd"), ctx()).await.unwrap();
    let applied = take(chargeback.clone(), true).await;
    assert!(matches!(applied, NotificationOutcome::ChargedBack(_)), "{applied:?}");
    let after = cash(&ledger);
    assert_eq!((after.cash.0, after.debt.0), (Decimal::ZERO, Decimal::from(30)), "10 from cash, 30 owed");
    assert_eq!(take(chargeback, true).await, NotificationOutcome::Noted, "taken back once");

    let decide = |approve: bool| DecideWithdrawal { id: "wd_tb".into(), approve, reason: "checked".into(), clearing };
    let refused = ledger.execute_unkeyed(decide(true), ctx()).await.unwrap_err();
    assert!(matches!(refused, Failed::Refused(CashierError::DebtOutstanding { .. })), "{refused:?}");
    ledger.execute_unkeyed(decide(false), ctx()).await.unwrap();
    let after = cash(&ledger);
    assert_eq!((after.cash.0, after.debt.0), (Decimal::from(30), Decimal::from(30)), "the hold came back");

    // A capture the ledger refuses is due back to the player; the card holder's bank takes it
    // back first: no refund is due any more, and nothing moves in the wallet.
    ledger.execute(card_deposit("dep_tb2", "uk-tb", 40), key("dep2"), ctx()).await.unwrap();
    refusing.store(true, Ordering::SeqCst);
    let captured = take(notification("evt_cap2", "CAPTURE", "dep_tb2"), false).await;
    assert!(matches!(captured, NotificationOutcome::RefundDue(_)), "{captured:?}");
    refusing.store(false, Ordering::SeqCst);
    assert_eq!(take(notification("evt_cb2", "CHARGEBACK", "dep_tb2"), false).await, NotificationOutcome::Noted);
    let cashier = cell::domains::cashier::Cashier::new(Vec::new(), String::new(), store);
    let payment = cashier.payment("dep_tb2").unwrap().unwrap();
    assert_eq!(payment.status, contracts::cashier::PaymentStatus::ChargedBack, "no refund due: {payment:?}");
    let after = cash(&ledger);
    assert_eq!((after.cash.0, after.debt.0), (Decimal::from(30), Decimal::from(30)), "nothing moved");
    books_sum_to_zero(&ledger);
    crate::harness::ledger_stop(ledger, writer).await;
}

/// Both PSPs stop delivering notifications (they gave up retrying the cell's endpoint): once one
/// is overdue the cell asks the PSP where the payment stands and applies the answer. A card
/// deposit is authorised, captured and credited that way, a card payout settles, a bank pay-in
/// approved at the bank is credited; nothing twice, and the day reconciles.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overdue_notifications_are_asked_for() {
    let sandbox = Sandbox::start().await;
    let cell = TestCell::start_with_sandbox("uk", &sandbox.url, cell::clock::system()).await;
    let c = cell.client();
    let token = verified_player(&c, "uk-dru").await;
    for party in ["card-webhook", "bank-webhook"] {
        sandbox.admin("POST", "/admin/faults", json!({ "party": party, "mode": "drop" })).await;
    }
    let bearer = format!("Bearer {token}");
    let post = |path: &'static str, body: Value, key: &'static str| {
        let bearer = bearer.clone();
        async move {
            let headers =
                [("authorization", bearer.as_str()), ("x-idempotency-key", key), ("content-type", "application/json")];
            c.raw("POST", path, &headers, body.to_string().into_bytes()).await.unwrap().json()
        }
    };
    let card = json!({ "playerId": "uk-dru", "psp": "card", "amount": "40.00", "currency": "GBP", "paymentMethod": "card:tok_visa_4242" });
    let id = post("/cashier/deposits", card, "dru-1").await["id"].as_str().unwrap().to_owned();
    // Ops see it waiting for its PSP's word.
    assert_eq!(work_items(&c, "to_confirm", 1).await, 1);
    assert_eq!(payment_becomes(&c, &token, &id, "captured").await["status"], "captured");
    assert_eq!(c.balance("uk-dru").await["cash"], "40.00");

    let out = json!({ "playerId": "uk-dru", "psp": "card", "amount": "10.00", "currency": "GBP", "paymentMethod": "card:tok_visa_4242" });
    let id = post("/cashier/withdrawals", out, "dru-2").await["id"].as_str().unwrap().to_owned();
    assert_eq!(payment_becomes(&c, &token, &id, "paid").await["status"], "paid");
    assert_eq!(c.balance("uk-dru").await["cash"], "30.00");
    // The PSP took the payout; the cell's next call is refused (a duplicate): the PSP holds a
    // payout under the reference, so the money is not given back, and the payout settles.
    let out = json!({ "playerId": "uk-dru", "psp": "card", "amount": "5.00", "currency": "GBP", "paymentMethod": "card:tok_visa_4242" });
    let id = post("/cashier/withdrawals", out, "dru-2b").await["id"].as_str().unwrap().to_owned();
    sandbox.admin("POST", "/admin/faults", json!({ "party": "card-payout", "status": 409 })).await;
    assert_eq!(payment_becomes(&c, &token, &id, "paid").await["status"], "paid");
    assert_eq!(c.balance("uk-dru").await["cash"], "25.00", "paid once, never given back");

    let bank = json!({ "playerId": "uk-dru", "psp": "bank", "amount": "20.00", "currency": "GBP", "paymentMethod": "bank:acct_dru_1" });
    let created = post("/cashier/deposits", bank, "dru-3").await;
    let redirect = created["redirectUrl"].as_str().unwrap();
    let path = redirect.split_once("/psp/").map(|(_, p)| format!("/psp/{p}")).unwrap();
    let port: u16 = sandbox.url.rsplit(':').next().unwrap().parse().unwrap();
    assert_eq!(Client { address: ([127, 0, 0, 1], port).into() }.get(&path).await.status, 200);
    let id = created["id"].as_str().unwrap();
    assert_eq!(payment_becomes(&c, &token, id, "captured").await["status"], "captured");
    assert_eq!(c.balance("uk-dru").await["cash"], "45.00");

    let events = c.events().await;
    assert_eq!(count(&events, "payment.confirmed"), 2);
    assert_eq!(count(&events, "payout.paid"), 2);
    assert_eq!(count(&events, "payout.failed"), 0);
    books_balance(&c).await;
    let today = chrono::Utc::now().date_naive();
    for (psp, lines) in [("card", 3), ("bank", 1)] {
        let report = c.get(&format!("/ops/reconciliation?psp={psp}&date={today}")).await.json();
        let found = (report["matched"].as_u64(), report["differences"].as_array().map(Vec::len));
        assert_eq!(found, (Some(lines), Some(0)), "{psp}: {report}");
    }
    for list in ["to_confirm", "to_pay_out", "parked"] {
        assert_eq!(work_items(&c, list, 0).await, 0, "{list}: nothing left waiting");
    }
}

/// `cell_cashier_work_items{list}` once it reads `want` (or what it read after 10 s).
async fn work_items(c: &Client, list: &str, want: u64) -> u64 {
    let gauge = format!("cell_cashier_work_items{{list=\"{list}\"}} ");
    let mut last = u64::MAX;
    for _ in 0..100 {
        let metrics = String::from_utf8_lossy(&c.get("/metrics").await.body).into_owned();
        last = metrics.lines().find_map(|l| l.strip_prefix(&gauge)?.trim().parse().ok()).unwrap_or(u64::MAX);
        if last == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    last
}

/// Two bank pay-ins, each under the player's deposit limit and together over it, both approved at
/// the bank: the second is captured and refused by the ledger, and given back by a payout to the
/// account it came from, without finance. Finance then gives the first back too. The books and
/// the bank's settlement report agree throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bank_pay_in_the_ledger_refuses_is_given_back_by_payout() {
    let sandbox = Sandbox::start().await;
    let cell = TestCell::start_with_sandbox("uk", &sandbox.url, cell::clock::system()).await;
    let c = cell.client();
    let token = verified_player(&c, "uk-bo").await;
    let limit = json!({ "changes": [{ "kind": "deposit", "period": "day", "amount": "50.00" }] });
    let set = crate::limits::as_player(&c, "PUT", "/players/uk-bo/limits", &token, Some(limit)).await;
    assert_eq!(set.status, 200);
    let bearer = format!("Bearer {token}");
    let port: u16 = sandbox.url.rsplit(':').next().unwrap().parse().unwrap();
    let bank = Client { address: ([127, 0, 0, 1], port).into() };
    let mut ids = Vec::new();
    for key in ["bo-1", "bo-2"] {
        let body = json!({ "playerId": "uk-bo", "psp": "bank", "amount": "30.00", "currency": "GBP", "paymentMethod": "bank:acct_bo_1" });
        let headers =
            [("authorization", bearer.as_str()), ("x-idempotency-key", key), ("content-type", "application/json")];
        let created = c.raw("POST", "/cashier/deposits", &headers, body.to_string().into_bytes()).await.unwrap();
        assert_eq!(created.status, 201, "{}", String::from_utf8_lossy(&created.body));
        ids.push((created.json()["id"].as_str().unwrap().to_owned(), created.json()["redirectUrl"].clone()));
    }
    for (id, redirect) in &ids {
        let path = redirect.as_str().unwrap().split_once("/psp/").map(|(_, p)| format!("/psp/{p}")).unwrap();
        assert_eq!(bank.get(&path).await.status, 200);
        // One at a time: which of the two the limit refuses is then known.
        if id == &ids[0].0 {
            payment_becomes(&c, &token, id, "captured").await;
        }
    }
    let given_back = payment_becomes(&c, &token, &ids[1].0, "refunded").await;
    assert!(given_back["reason"].as_str().unwrap().contains("DEPOSIT_LIMIT_EXCEEDED"), "{given_back}");
    assert_eq!(c.balance("uk-bo").await["cash"], "30.00", "only the first is credited");
    let today = chrono::Utc::now().date_naive();
    let report = c.get(&format!("/ops/reconciliation?psp=bank&date={today}")).await.json();
    assert_eq!((report["matched"].as_u64(), report["differences"].clone()), (Some(3), json!([])), "{report}");

    // Finance gives the first back: a payout of the deposit to its account, then its entry.
    let body = json!({ "reason": "the player asked" }).to_string().into_bytes();
    let path = format!("/cashier/payments/{}/refund", ids[0].0);
    let asked = c.raw("POST", &path, &[("content-type", "application/json")], body).await.unwrap();
    assert_eq!(asked.status, 202, "{}", String::from_utf8_lossy(&asked.body));
    payment_becomes(&c, &token, &ids[0].0, "refunded").await;
    assert_eq!(c.balance("uk-bo").await["cash"], "0.00");
    assert_eq!(count(&c.events().await, "payment.refunded"), 2);
    books_balance(&c).await;
    let report = c.get(&format!("/ops/reconciliation?psp=bank&date={today}")).await.json();
    assert_eq!((report["matched"].as_u64(), report["differences"].clone()), (Some(4), json!([])), "{report}");
}

/// A notification dated yesterday by the PSP (it reached the cell after midnight) is booked on
/// yesterday's settlement day, as the PSP's report lists it, not on the day it arrived.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settlement_lines_are_dated_as_the_psp_dates_them() {
    use hmac::{Hmac, Mac};
    let sandbox = Sandbox::start().await;
    let cell = TestCell::start_with_sandbox("uk", &sandbox.url, cell::clock::system()).await;
    let c = cell.client();
    let token = funded(&c, "uk-dot", "20.00").await;
    let bearer = format!("Bearer {token}");
    let headers = [("authorization", bearer.as_str())];
    let list = c.raw("GET", "/cashier/players/uk-dot/transactions", &headers, Vec::new()).await.unwrap().json();
    let payment = list["payments"][0].clone();
    let yesterday = chrono::Utc::now() - chrono::Duration::days(1);
    // The PSP's chargeback of yesterday, delivered now (signed now, as a retry is).
    let body = json!({
        "eventId": "evt_late_cb", "eventCode": "CHARGEBACK", "pspReference": payment["pspReference"],
        "merchantReference": payment["id"], "amount": "20.00", "currency": "GBP", "success": true,
        "eventDate": yesterday.timestamp(),
    })
    .to_string();
    let t = chrono::Utc::now().timestamp();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(crate::harness::PSP_CARD_SECRET.as_bytes()).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    let signature = format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()));
    let headers = [("x-psp-signature", signature.as_str()), ("content-type", "application/json")];
    assert_eq!(c.raw("POST", "/cashier/webhooks/card", &headers, body.into_bytes()).await.unwrap().status, 200);
    let id = payment["id"].as_str().unwrap();
    payment_becomes(&c, &token, id, "charged_back").await;

    let reconcile = |date: chrono::NaiveDate| format!("/ops/reconciliation?psp=card&date={date}");
    let today = c.get(&reconcile(chrono::Utc::now().date_naive())).await.json();
    assert_eq!(today["differences"], json!([]), "today holds the capture only: {today}");
    let before = c.get(&reconcile(yesterday.date_naive())).await.json();
    // The sandbox never settled this chargeback (the test played the PSP): the cell's line is on
    // yesterday's day, alone.
    assert_eq!(
        before["differences"],
        json!([{ "kind": "missing_at_psp", "type": "CHARGEBACK", "paymentId": id, "ledgerAmount": "20.00" }]),
        "{before}"
    );
}
