//! Money safety against a real cell: amounts past a currency's maximum, balances past its maximum
//! balance, sums that would round, repeated JSON keys, and a writer that panics on one operation.
//! Each was a way to take a cell's wallet down or to move the books (issue #19); each test fails
//! on the code before the fix.

use crate::harness::{Client, TestCell};
use cell::store::fault::FaultConfig;
use rust_decimal::Decimal;
use serde_json::json;

/// Per currency the books sum to exactly zero, and the cell is ready.
async fn books_balance(c: &Client) {
    let totals = c.get("/ops/ledger").await.json();
    for (currency, total) in totals.as_object().unwrap() {
        assert_eq!(total, "0.00", "{currency} sums to {total}");
    }
    assert_eq!(c.get("/readyz").await.status, 200);
}

async fn movement(c: &Client, route: &str, player: &str, amount: &str, key: &str) -> crate::harness::Reply {
    let body = json!({ "playerId": player, "currency": "GBP", "amount": amount, "reason": "deposit" });
    c.post(route, key, body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_amount_past_the_currency_maximum_is_refused_before_it_is_queued() {
    let cell = TestCell::start("uk").await;
    let c = cell.client();
    assert_eq!(c.register("uk-alice", "1990-04-01", "GB", "GBP").await.status, 201);
    assert_eq!(c.credit("uk-alice", "50.00", "dep-1").await.status, 200);
    // The largest Decimal: it overflowed the writer's addition and panicked it, for every player.
    for (route, amount) in [
        ("/wallet/credit", "79228162514264337593543950335"),
        ("/wallet/credit", "100000000.01"),
        ("/wallet/debit", "100000000.01"),
        // 28 significant digits: accepted before, and its sums were silently rounded.
        ("/wallet/credit", "1234567890123456789012345.67"),
    ] {
        let refused = movement(&c, route, "uk-alice", amount, &format!("big-{route}-{amount}")).await;
        assert_eq!((refused.status, refused.code()), (400, "AMOUNT_TOO_LARGE".into()), "{route} {amount}");
    }
    let hold =
        json!({ "playerId": "uk-alice", "roundId": "r1", "betId": "b1", "currency": "GBP", "amount": "100000000.01" });
    assert_eq!(c.post("/wallet/hold", "hold-big", hold).await.code(), "AMOUNT_TOO_LARGE");
    let settle = json!({ "roundId": "r1", "operations": [{ "playerId": "uk-alice", "delta": "-100000000.01", "currency": "GBP" }] });
    assert_eq!(c.post("/wallet/settle", "settle-big", settle).await.code(), "AMOUNT_TOO_LARGE");
    // The largest amount itself is accepted, and the wallet keeps serving everyone.
    assert_eq!(movement(&c, "/wallet/credit", "uk-alice", "100000000.00", "dep-max").await.status, 200);
    assert_eq!(c.credit("uk-alice", "10.00", "dep-2").await.status, 200);
    assert_eq!(c.balance("uk-alice").await["cash"], "100000060.00");
    books_balance(&c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_balance_never_passes_the_currency_maximum() {
    let cell = TestCell::start("uk").await;
    let c = cell.client();
    assert_eq!(c.register("uk-whale", "1990-04-01", "GB", "GBP").await.status, 201);
    for n in 0..10 {
        assert_eq!(c.credit("uk-whale", "100000000.00", &format!("dep-{n}")).await.status, 200);
    }
    assert_eq!(c.balance("uk-whale").await["cash"], "1000000000.00");
    let refused = c.credit("uk-whale", "0.01", "dep-over").await;
    assert_eq!((refused.status, refused.code()), (422, "BALANCE_LIMIT".into()), "{:?}", refused.json());
    // A refusal is a decision: the retry is answered the same, and nothing moved.
    let again = c.credit("uk-whale", "0.01", "dep-over").await;
    assert_eq!((again.status, again.header("idempotent-replay")), (422, Some("true")));
    assert_eq!(c.balance("uk-whale").await["cash"], "1000000000.00");
    // Money leaving is always allowed; then there is room again. (A correction: the whale's
    // deposits opened an AML case that holds their withdrawals.)
    let correction = json!({ "playerId": "uk-whale", "currency": "GBP", "amount": "0.01", "reason": "correction" });
    assert_eq!(c.post("/wallet/debit", "out-1", correction).await.status, 200);
    assert_eq!(c.credit("uk-whale", "0.01", "dep-back").await.status, 200);
    // A hold moves cash to held: the total stays at the maximum, so it is allowed.
    let hold = json!({ "playerId": "uk-whale", "roundId": "r1", "betId": "b1", "currency": "GBP", "amount": "5.00" });
    assert_eq!(c.post("/wallet/hold", "hold-1", hold).await.status, 200);
    // A payout past the maximum is refused whole: the hold stays open, nothing is settled.
    let settle =
        json!({ "roundId": "r1", "operations": [{ "playerId": "uk-whale", "delta": "1.00", "currency": "GBP" }] });
    assert_eq!(c.post("/wallet/settle", "settle-win", settle).await.code(), "BALANCE_LIMIT");
    assert_eq!(c.balance("uk-whale").await["held"], "5.00");
    let settle =
        json!({ "roundId": "r1", "operations": [{ "playerId": "uk-whale", "delta": "-5.00", "currency": "GBP" }] });
    assert_eq!(c.post("/wallet/settle", "settle-loss", settle).await.status, 200);
    assert_eq!(c.balance("uk-whale").await["cash"], "999999995.00");
    books_balance(&c).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_json_key_is_malformed_and_moves_nothing() {
    let cell = TestCell::start("uk").await;
    let c = cell.client();
    assert_eq!(c.register("uk-alice", "1990-04-01", "GB", "GBP").await.status, 201);
    let body = br#"{"playerId":"uk-alice","currency":"GBP","amount":"1.00","amount":"1000.00","reason":"deposit"}"#;
    let headers = [("x-idempotency-key", "dup-1"), ("content-type", "application/json")];
    let refused = c.raw("POST", "/wallet/credit", &headers, body.to_vec()).await.unwrap();
    assert_eq!((refused.status, refused.code()), (400, "MALFORMED_JSON".into()));
    assert!(refused.json()["message"].as_str().unwrap().contains("`amount` appears twice"), "{:?}", refused.json());
    let register =
        br#"{"playerId":"uk-bob","playerId":"uk-eve","dateOfBirth":"1990-04-01","country":"GB","currency":"GBP"}"#;
    let headers = [("x-idempotency-key", "dup-2"), ("content-type", "application/json")];
    assert_eq!(c.raw("POST", "/players", &headers, register.to_vec()).await.unwrap().code(), "MALFORMED_JSON");
    assert_eq!(c.balance("uk-alice").await["cash"], "0.00");
    assert!(c.events().await.iter().all(|e| e["event"] != "wallet.credited"), "nothing was credited");
}

/// The journal entry key of player `uk-poison` (tuple-encoded `("entry", "uk-poison", ...)`): only
/// the writer writes it, while applying an operation.
const POISON_ENTRY: &[u8] = b"\x02entry\x00\x02uk-poison\x00";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_the_writer_costs_one_operation_and_stops_the_cell() {
    let faults = FaultConfig { panic_on_key: Some(POISON_ENTRY), ..Default::default() };
    let mut cell = TestCell::start_with_faults("uk", faults).await;
    let c = cell.client();
    for player in ["uk-alice", "uk-poison"] {
        assert_eq!(c.register(player, "1990-04-01", "GB", "GBP").await.status, 201);
    }
    assert_eq!(c.credit("uk-alice", "5.00", "dep-alice").await.status, 200);
    let refused = c.credit("uk-poison", "5.00", "dep-poison").await;
    assert_eq!((refused.status, refused.code()), (500, "INTERNAL_REFUSAL".into()), "{:?}", refused.json());
    // From the fault on, the cell is never ready again (503, or already gone): the router fails
    // over, and the process ends with an error for its supervisor to restart it.
    if let Ok(ready) = c.try_get("/readyz").await {
        assert_eq!(ready.status, 503, "{}", String::from_utf8_lossy(&ready.body));
    }
    let ended = cell.ended().await.expect_err("a cell whose writer failed exits with an error");
    assert!(format!("{ended:#}").contains("injected panic"), "{ended:#}");

    // Restarted (the bug still there), the retry of the same request replays the refusal instead
    // of panicking the writer again: no poison pill. Nothing else was lost.
    cell.restart("uk").await;
    let c = cell.client();
    let replayed = c.credit("uk-poison", "5.00", "dep-poison").await;
    assert_eq!((replayed.status, replayed.code()), (500, "INTERNAL_REFUSAL".into()));
    assert_eq!(replayed.header("idempotent-replay"), Some("true"));
    assert_eq!(c.balance("uk-alice").await["cash"], "5.00");
    assert_eq!(c.balance("uk-poison").await["cash"], "0.00");
    books_balance(&c).await;
    assert_eq!(c.get("/audit/verify").await.json()["ok"], true);
}

/// In process: operations batched with one that panics are applied as if it had not been there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_batched_with_a_panicking_one_are_not_lost() {
    use cell::domains::wallet::Movement;
    use cell::idempotency::IdempotencyKey;
    use cell::ledger::Failed;
    use cell::store::embedded::{Durability, EmbeddedStore};
    use cell::store::fault::FaultyStore;
    use cell::store::Store;
    use contracts::{Currency, Money, PlayerId};
    use std::sync::Arc;

    let dir = tempfile::tempdir().unwrap();
    let embedded: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path(), Durability::GroupSync).unwrap());
    crate::harness::register_in_store(&embedded, &["uk-alice", "uk-poison"]);
    let faults = FaultConfig { panic_on_key: Some(POISON_ENTRY), ..Default::default() };
    let faulty: Arc<dyn Store> = Arc::new(FaultyStore::new(embedded, faults, 1));
    let (wallet, writer) = crate::harness::ledger(faulty, Vec::new());
    let gbp = Currency::from_code("GBP").unwrap();
    let credit = |player: &str| Movement {
        player: PlayerId::new(player).unwrap(),
        money: Money::positive(Decimal::ONE, gbp).unwrap(),
        reason: contracts::wallet::MovementReason::Deposit,
        inward: true,
        location: None,
        payment_method: None,
    };
    let submit = |command: Movement, key: String| {
        let wallet = wallet.clone();
        let ctx = cell::events::EventContext { cell: "uk".into(), trace_id: "t".into(), operator: None };
        let key = IdempotencyKey::new(&key, "credit", &serde_json::Value::String(format!("{command:?}"))).unwrap();
        async move { wallet.execute(command, key, ctx).await }
    };
    // Many at once, so that the poison shares its batch with others (the queue fills while the
    // writer applies the batch before).
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..200 {
        let poison = n == 100;
        let task = submit(credit(if poison { "uk-poison" } else { "uk-alice" }), format!("k-{n}"));
        tasks.spawn(async move { (poison, task.await) });
    }
    let mut refused = 0;
    while let Some(joined) = tasks.join_next().await {
        match joined.unwrap() {
            (false, outcome) => assert!(!outcome.unwrap().replayed),
            (true, outcome) => {
                assert!(matches!(outcome, Err(Failed::Internal(_))), "{outcome:?}");
                refused += 1;
            }
        }
    }
    assert_eq!(refused, 1);
    assert!(wallet.fault().get().is_some(), "the writer's fault is raised");
    // The writer still answers (the cell is stopping, not stopped): the poison replays refused.
    let replay = submit(credit("uk-poison"), "k-100".into()).await.unwrap_err();
    assert_eq!((replay.status(), replay.code().as_str(), replay.replayed()), (500, "INTERNAL_REFUSAL", true));
    let w = wallet.clone();
    let alice = tokio::task::spawn_blocking(move || w.balance(&PlayerId::new("uk-alice").unwrap(), None, None))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(alice.cash.0, Decimal::from(199), "every other credit applied once");
    for (currency, total) in wallet.ledger_totals().unwrap() {
        assert!(total.is_zero(), "{currency} sums to {total}");
    }
    crate::harness::ledger_stop(wallet, writer).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_beneath_the_routes_are_json_too() {
    let cell = TestCell::start("uk").await;
    let probed = chaos::probes::refusals_beneath_routes_are_json(
        cell.address,
        Some(("DELETE", "/wallet/credit")),
        "/wallet/credit",
        &format!("Authorization: {}\r\n", crate::harness::admin_authorization()),
    )
    .await;
    assert_eq!(probed, Ok(()));
}
