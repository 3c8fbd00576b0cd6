//! The cell's HTTP API as a client uses it: real server, real store, loopback.

use crate::harness::{behind_the_api, TestCell, PASSWORD};
use serde_json::json;

const ADULT: &str = "1990-04-01";

#[tokio::test]
async fn credit_replay_and_key_reuse() {
    let cell = TestCell::start("uk").await;
    let c = cell.client();
    assert_eq!(c.register("uk-alice", ADULT, "GB", "GBP").await.status, 201);

    let first = c.credit("uk-alice", "10.00", "dep-1").await;
    assert_eq!(first.status, 200, "{:?}", first.body);
    assert_eq!(first.json()["balance"]["cash"], "10.00");
    assert_eq!(first.header("x-cell"), Some("uk"));
    assert_eq!(first.header("idempotent-replay"), None);

    // Same key, same body (keys in another order): the original answer, marked as a replay.
    let body = json!({ "reason": "deposit", "amount": "10.00", "currency": "GBP", "playerId": "uk-alice" });
    let replay = c.post("/wallet/credit", "dep-1", body).await;
    assert_eq!(replay.status, 200);
    assert_eq!(replay.body, first.body);
    assert_eq!(replay.header("idempotent-replay"), Some("true"));
    assert_eq!(c.balance("uk-alice").await["cash"], "10.00", "a replay moves no money");

    // Same key, different body.
    let reused = c.credit("uk-alice", "11.00", "dep-1").await;
    assert_eq!((reused.status, reused.code().as_str()), (409, "IDEMPOTENCY_KEY_REUSED"));
    // Same key on another route is a different request too.
    let other = c
        .post(
            "/wallet/debit",
            "dep-1",
            json!({ "playerId": "uk-alice", "currency": "GBP", "amount": "10.00", "reason": "withdrawal" }),
        )
        .await;
    assert_eq!((other.status, other.code().as_str()), (409, "IDEMPOTENCY_KEY_REUSED"));
    assert_eq!(c.balance("uk-alice").await["cash"], "10.00");
    // Keys starting `g|` belong to game providers' transaction ids.
    let provider_space = c.credit("uk-alice", "1.00", "g|demo|tx-1").await;
    assert_eq!((provider_space.status, provider_space.code().as_str()), (400, "IDEMPOTENCY_KEY_INVALID"));
}

#[tokio::test]
async fn bad_input_is_refused_and_writes_nothing() {
    let cell = TestCell::start("uk").await;
    let c = cell.client();
    c.register("uk-bob", ADULT, "GB", "GBP").await;
    c.credit("uk-bob", "5.00", "seed").await;
    let events_before = c.events().await.len();

    let credit = |amount: serde_json::Value, currency: &str| json!({ "playerId": "uk-bob", "currency": currency, "amount": amount, "reason": "deposit" });
    let cases: Vec<(u16, &str, crate::harness::Reply)> = vec![
        (
            400,
            "MALFORMED_JSON",
            c.raw("POST", "/wallet/credit", &[("x-idempotency-key", "k1")], b"{not json".to_vec()).await.unwrap(),
        ),
        (400, "INVALID_REQUEST", c.post("/wallet/credit", "k2", credit(json!(10), "GBP")).await),
        (400, "INVALID_REQUEST", c.post("/wallet/credit", "k3", json!({ "playerId": "uk-bob" })).await),
        (
            400,
            "INVALID_REQUEST",
            c.post(
                "/wallet/credit",
                "k4",
                json!({ "playerId": "uk-bob", "currency": "GBP", "amount": "1.00", "reason": "deposit", "extra": 1 }),
            )
            .await,
        ),
        (400, "AMOUNT_SCALE", c.post("/wallet/credit", "k5", credit(json!("10.001"), "GBP")).await),
        (400, "AMOUNT_NEGATIVE", c.post("/wallet/credit", "k6", credit(json!("-5"), "GBP")).await),
        (400, "AMOUNT_ZERO", c.post("/wallet/credit", "k7", credit(json!("0.00"), "GBP")).await),
        (400, "UNKNOWN_CURRENCY", c.post("/wallet/credit", "k8", credit(json!("1.00"), "XXX")).await),
        (422, "CURRENCY_NOT_BOOKED", c.post("/wallet/credit", "k9", credit(json!("1.00"), "EUR")).await),
        (400, "INVALID_REQUEST", c.post("/wallet/credit", "k10", credit(json!("1e3"), "GBP")).await),
        (
            400,
            "IDEMPOTENCY_KEY_MISSING",
            c.raw("POST", "/wallet/credit", &[], credit(json!("1.00"), "GBP").to_string().into_bytes()).await.unwrap(),
        ),
        (
            413,
            "BODY_TOO_LARGE",
            c.raw("POST", "/wallet/credit", &[("x-idempotency-key", "k11")], vec![b' '; 200 * 1024]).await.unwrap(),
        ),
        (
            404,
            "PLAYER_NOT_FOUND",
            c.post(
                "/wallet/credit",
                "k12",
                json!({ "playerId": "uk-nobody", "currency": "GBP", "amount": "1.00", "reason": "deposit" }),
            )
            .await,
        ),
        (
            422,
            "INSUFFICIENT_FUNDS",
            c.post(
                "/wallet/debit",
                "k13",
                json!({ "playerId": "uk-bob", "currency": "GBP", "amount": "5.01", "reason": "withdrawal" }),
            )
            .await,
        ),
        (404, "NOT_FOUND", c.get("/wallet/nothing-here").await),
    ];
    for (status, code, reply) in &cases {
        assert_eq!(
            (reply.status, reply.code().as_str()),
            (*status, *code),
            "body: {}",
            String::from_utf8_lossy(&reply.body)
        );
        assert!(!reply.json()["message"].as_str().unwrap().is_empty(), "every refusal explains itself");
    }
    assert_eq!(c.balance("uk-bob").await["cash"], "5.00");
    assert_eq!(c.events().await.len(), events_before, "refused requests write no events");
    // A refused key was not consumed: the same key works once the request is right.
    let ok = c.post("/wallet/credit", "k5", credit(json!("10.00"), "GBP")).await;
    assert_eq!(ok.status, 200);
}

#[tokio::test]
async fn registration_rules() {
    let cell = TestCell::start("uk").await;
    let c = cell.client();
    let under = chrono::Utc::now().date_naive() - chrono::Days::new(17 * 365);
    let r = c.register("uk-kid", &under.to_string(), "GB", "GBP").await;
    assert_eq!((r.status, r.code().as_str()), (422, "UNDERAGE"));
    let r = c.register("uk-abroad", ADULT, "FR", "GBP").await;
    assert_eq!((r.status, r.code().as_str()), (422, "COUNTRY_NOT_LICENSED"));
    let r = c.register("dk-someone", ADULT, "GB", "GBP").await;
    assert_eq!((r.status, r.code().as_str()), (422, "PLAYER_ID_WRONG_CELL"));
    let r = c.register("uk-eve", ADULT, "GB", "GBP").await;
    assert_eq!(r.status, 201);
    assert_eq!(r.json()["cell"], "uk");
    let again = c.register("uk-eve", ADULT, "GB", "GBP").await;
    assert_eq!((again.status, again.header("idempotent-replay")), (201, Some("true")));
    let dup = c
        .post(
            "/players",
            "another-key",
            json!({ "playerId": "uk-eve", "dateOfBirth": ADULT, "country": "GB", "currency": "GBP", "password": PASSWORD }),
        )
        .await;
    assert_eq!((dup.status, dup.code().as_str()), (409, "PLAYER_EXISTS"));
}

#[tokio::test]
async fn hold_and_settle_a_shared_round() {
    let cell = TestCell::start("uk").await;
    let c = cell.client();
    for p in ["uk-p1", "uk-p2"] {
        c.register(p, ADULT, "GB", "GBP").await;
        c.credit(p, "100.00", &format!("fund-{p}")).await;
    }
    let hold = |p: &str, bet: &str, amount: &str| json!({ "playerId": p, "roundId": "r1", "betId": bet, "currency": "GBP", "amount": amount });
    let h = c.post("/wallet/hold", "h1", hold("uk-p1", "b1", "10.00")).await;
    assert_eq!(h.status, 200, "{:?}", h.body);
    assert_eq!(h.json()["balance"]["cash"], "90.00");
    assert_eq!(h.json()["balance"]["held"], "10.00");
    assert!(h.json()["holdId"].as_str().is_some());
    assert_eq!(c.post("/wallet/hold", "h2", hold("uk-p1", "b2", "5.00")).await.status, 200);
    assert_eq!(c.post("/wallet/hold", "h3", hold("uk-p2", "b3", "20.00")).await.status, 200);
    let dup = c.post("/wallet/hold", "h4", hold("uk-p2", "b3", "20.00")).await;
    assert_eq!((dup.status, dup.code().as_str()), (409, "BET_ALREADY_HELD"));
    let broke = c.post("/wallet/hold", "h5", hold("uk-p2", "b9", "80.01")).await;
    assert_eq!((broke.status, broke.code().as_str()), (422, "INSUFFICIENT_FUNDS"));

    let settle = |ops: serde_json::Value| json!({ "roundId": "r1", "operations": ops });
    // A settle must release every hold of the round.
    let partial = c
        .post("/wallet/settle", "s0", settle(json!([{ "playerId": "uk-p1", "delta": "0.00", "currency": "GBP" }])))
        .await;
    assert_eq!((partial.status, partial.code().as_str()), (422, "ROUND_HOLDS_UNSETTLED"));
    let below = c
        .post("/wallet/settle", "s1", settle(json!([{ "playerId": "uk-p1", "delta": "-15.01", "currency": "GBP" }, { "playerId": "uk-p2", "delta": "0", "currency": "GBP" }])))
        .await;
    assert_eq!((below.status, below.code().as_str()), (422, "DELTA_BELOW_STAKE"));
    // p1 wins 30 over a 15 stake; p2 loses the whole stake.
    let ops = json!([{ "playerId": "uk-p1", "delta": "30.00", "currency": "GBP" }, { "playerId": "uk-p2", "delta": "-20.00", "currency": "GBP" }]);
    let done = c.post("/wallet/settle", "s2", settle(ops.clone())).await;
    assert_eq!(done.status, 200, "{}", String::from_utf8_lossy(&done.body));
    let balances = done.json()["balances"].clone();
    assert_eq!(balances[0]["cash"], "130.00");
    assert_eq!(balances[0]["held"], "0.00");
    assert_eq!(balances[1]["cash"], "80.00");
    // The same settle replays; a different one is refused.
    let replay = c.post("/wallet/settle", "s2", settle(ops)).await;
    assert_eq!((replay.status, replay.header("idempotent-replay")), (200, Some("true")));
    let again = c
        .post("/wallet/settle", "s3", settle(json!([{ "playerId": "uk-p1", "delta": "1.00", "currency": "GBP" }])))
        .await;
    assert_eq!((again.status, again.code().as_str()), (409, "ROUND_ALREADY_SETTLED"));
    let late = c.post("/wallet/hold", "h6", hold("uk-p1", "b7", "1.00")).await;
    assert_eq!((late.status, late.code().as_str()), (409, "ROUND_ALREADY_SETTLED"));
    assert_eq!(c.balance("uk-p1").await["cash"], "130.00");
    assert_eq!(c.balance("uk-p2").await["cash"], "80.00");

    // Events: the holds and the settle, in order, with the envelope's fields.
    let events = c.events().await;
    let names: Vec<&str> = events.iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(names.iter().filter(|n| **n == "wallet.hold").count(), 3);
    assert_eq!(names.last(), Some(&"wallet.settled"));
    let settled = events.last().unwrap();
    for field in ["v", "id", "ts", "traceId", "cell", "payload", "cursor"] {
        assert!(!settled[field].is_null(), "envelope has {field}");
    }
    assert_eq!(settled["cell"], "uk");
    assert_eq!(settled["payload"]["parts"][0]["payout"], "45.00");
}

#[tokio::test]
async fn balance_as_of_a_past_instant() {
    let cell = TestCell::start("uk").await;
    let c = cell.client();
    c.register("uk-tim", ADULT, "GB", "GBP").await;
    let before_any = chrono::Utc::now();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    c.credit("uk-tim", "10.00", "t1").await;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let between = chrono::Utc::now();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    c.credit("uk-tim", "5.00", "t2").await;
    let at = |t: chrono::DateTime<chrono::Utc>| {
        format!("/ops/players/uk-tim/balance?as_of={}", t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
    };
    assert_eq!(c.get(&at(before_any)).await.json()["cash"], "0.00");
    assert_eq!(c.get(&at(between)).await.json()["cash"], "10.00");
    assert_eq!(c.get(&at(chrono::Utc::now())).await.json()["cash"], "15.00");
    let bad = c.get("/ops/players/uk-tim/balance?as_of=yesterday").await;
    assert_eq!((bad.status, bad.code().as_str()), (400, "INVALID_AS_OF"));
    let currency = c.get("/ops/players/uk-tim/balance?currency=GBP").await;
    assert_eq!(currency.json()["currency"], "GBP");
}

/// A wall clock set back across a restart (an NTP step, a host moved): the journal's order is its
/// keys' (timestamp, sequence), so new entries must not be stamped before the old ones, or a
/// point-in-time balance would skip them. The writer keeps its last timestamp with the sequence.
#[tokio::test]
async fn entries_after_a_clock_set_back_over_a_restart_stay_after_the_old_ones() {
    let mut cell = TestCell::start("uk").await;
    let c = cell.client();
    c.register("uk-clock", ADULT, "GB", "GBP").await;
    c.credit("uk-clock", "10.00", "c1").await;
    cell.stop().await;
    // As if the last entry had been stamped an hour ahead of the clock the cell now restarts with.
    let hour_ahead = chrono::Utc::now() + chrono::Duration::hours(1);
    let meta = cell::store::subspaces::wallet().pack(&("meta", "seq"));
    behind_the_api(cell.dir.path(), |tx| {
        let (seq, _): (u64, i64) = rmp_serde::from_slice(&tx.get(&meta).unwrap().unwrap()).unwrap();
        tx.set(&meta, &rmp_serde::to_vec(&(seq, hour_ahead.timestamp_micros())).unwrap()).unwrap();
    });
    cell.restart("uk").await;
    let c = cell.client();
    c.credit("uk-clock", "5.00", "c2").await;
    let at = |t: chrono::DateTime<chrono::Utc>| {
        format!("/ops/players/uk-clock/balance?as_of={}", t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
    };
    assert_eq!(c.get(&at(chrono::Utc::now())).await.json()["cash"], "10.00", "the new entry is not before the old");
    assert_eq!(c.get(&at(hour_ahead)).await.json()["cash"], "15.00");
    assert_eq!(c.balance("uk-clock").await["cash"], "15.00");
}

#[tokio::test]
async fn events_page_after_a_cursor() {
    let cell = TestCell::start("uk").await;
    let c = cell.client();
    c.register("uk-ev", ADULT, "GB", "GBP").await;
    for i in 0..5 {
        c.credit("uk-ev", "1.00", &format!("e{i}")).await;
    }
    let page = c.get("/events?limit=2").await.json();
    assert_eq!(page["events"].as_array().unwrap().len(), 2);
    let next = page["next"].as_str().unwrap();
    let rest = c.get(&format!("/events?after={next}&limit=100")).await.json();
    assert_eq!(rest["events"].as_array().unwrap().len(), 4, "1 registration + 5 credits - 2 already read");
    let cursors: Vec<String> = c.events().await.iter().map(|e| e["cursor"].as_str().unwrap().to_owned()).collect();
    assert!(cursors.windows(2).all(|w| w[0] < w[1]), "cursors increase");
    let bad = c.get("/events?after=zz").await;
    assert_eq!((bad.status, bad.code().as_str()), (400, "INVALID_CURSOR"));
}

#[tokio::test]
async fn ops_routes_and_durability_across_restart() {
    let mut cell = TestCell::start("uk").await;
    let c = cell.client();
    assert_eq!(c.get("/healthz").await.status, 200);
    assert_eq!(c.get("/readyz").await.status, 200);
    c.register("uk-dur", ADULT, "GB", "GBP").await;
    c.credit("uk-dur", "7.00", "d1").await;
    let metrics = String::from_utf8(c.get("/metrics").await.body.to_vec()).unwrap();
    assert!(metrics.contains("cell_http_requests_total"), "{metrics}");
    assert!(metrics.contains("cell_wallet_operations_total"), "{metrics}");
    // The credit went through every stage of the writer's pipeline once.
    for stage in ["queued", "applied", "waited_commit", "committed", "waited_sync", "synced", "answered"] {
        assert!(
            metrics.contains(&format!("cell_wallet_stage_seconds_count{{stage=\"{stage}\"}} 1")),
            "{stage}: {metrics}"
        );
    }
    // The store's deleted-file counts: it holds its journal at least, and has deleted nothing.
    let figure = |name: &str| -> Option<f64> {
        metrics.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
    };
    assert!(figure("cell_store_held_files").is_some_and(|n| n >= 1.0), "{metrics}");
    for name in ["cell_store_deleted_withheld_bytes", "cell_store_deleted_let_go_at_once_total"] {
        assert_eq!(figure(name), Some(0.0), "{name}: {metrics}");
    }
    assert!(figure("cell_store_deleted_freed_bytes_total").is_some(), "{metrics}");
    let openapi = c.get("/openapi.json").await.json();
    assert_eq!(openapi["openapi"], "3.1.0");
    assert!(openapi["paths"]["/wallet/settle"]["post"].is_object());
    assert!(openapi["components"]["schemas"]["SettleRequest"].is_object());

    cell.restart("uk").await;
    let c = cell.client();
    assert_eq!(c.balance("uk-dur").await["cash"], "7.00");
    let replay = c.credit("uk-dur", "7.00", "d1").await;
    assert_eq!(replay.header("idempotent-replay"), Some("true"), "idempotency records survive a restart");
    assert_eq!(c.balance("uk-dur").await["cash"], "7.00");
    cell.stop().await;
}

#[tokio::test]
async fn sessions_and_the_location_gate() {
    let cell = TestCell::start("uk").await;
    let c = cell.client();
    c.register("uk-tr", ADULT, "GB", "GBP").await;
    let login = json!({ "playerId": "uk-tr", "password": PASSWORD }).to_string();
    let s = c.raw("POST", "/sessions", &[], login.into_bytes()).await.unwrap();
    assert_eq!(s.status, 201, "{}", String::from_utf8_lossy(&s.body));
    let token = s.json()["accessToken"].as_str().unwrap().to_owned();
    assert_eq!(token.split('.').count(), 3, "a compact JWT");
    assert_eq!((s.json()["cell"].as_str(), s.json()["expiresIn"].as_i64()), (Some("uk"), Some(900)));
    let unknown = json!({ "playerId": "uk-nobody", "password": PASSWORD }).to_string();
    let unknown = c.raw("POST", "/sessions", &[], unknown.into_bytes()).await.unwrap();
    assert_eq!(
        (unknown.status, unknown.code().as_str()),
        (401, "INVALID_CREDENTIALS"),
        "an unknown id looks like a wrong password"
    );
    let key = c.get("/sessions/key").await.json();
    assert_eq!((key["cell"].as_str(), key["alg"].as_str()), (Some("uk"), Some("EdDSA")));

    // A player travelling outside the licence: deposits and wagering refused, the rest open.
    let abroad = [("x-client-country", "US"), ("content-type", "application/json")];
    let deposit = json!({ "playerId": "uk-tr", "currency": "GBP", "amount": "5.00", "reason": "deposit" }).to_string();
    let r = c
        .raw(
            "POST",
            "/wallet/credit",
            &[abroad[0], abroad[1], ("x-idempotency-key", "loc-1")],
            deposit.clone().into_bytes(),
        )
        .await
        .unwrap();
    assert_eq!((r.status, r.code().as_str()), (451, "LOCATION_NOT_LICENSED"));
    let home = c
        .raw(
            "POST",
            "/wallet/credit",
            &[("x-client-country", "GB"), ("x-idempotency-key", "loc-2")],
            deposit.into_bytes(),
        )
        .await
        .unwrap();
    assert_eq!(home.status, 200);
    let bet =
        json!({ "playerId": "uk-tr", "roundId": "lr", "betId": "b", "currency": "GBP", "amount": "1.00" }).to_string();
    let r =
        c.raw("POST", "/wallet/hold", &[abroad[0], ("x-idempotency-key", "loc-3")], bet.into_bytes()).await.unwrap();
    assert_eq!((r.status, r.code().as_str()), (451, "LOCATION_NOT_LICENSED"));
    let withdraw =
        json!({ "playerId": "uk-tr", "currency": "GBP", "amount": "1.00", "reason": "withdrawal" }).to_string();
    let r = c
        .raw("POST", "/wallet/debit", &[abroad[0], ("x-idempotency-key", "loc-4")], withdraw.into_bytes())
        .await
        .unwrap();
    assert_eq!(r.status, 200, "withdrawals stay open abroad");
    assert_eq!(c.balance("uk-tr").await["cash"], "4.00");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_log_reads_newest_first_too() {
    let cell = TestCell::start("uk").await;
    let c = cell.client();
    assert_eq!(c.register("uk-eve", "1990-04-01", "GB", "GBP").await.status, 201);
    for n in 1..=3 {
        assert_eq!(c.credit("uk-eve", &format!("{n}.00"), &format!("dep-{n}")).await.status, 200);
    }
    let oldest_first = c.get("/events?limit=10").await.json();
    let all: Vec<&str> =
        oldest_first["events"].as_array().unwrap().iter().map(|e| e["cursor"].as_str().unwrap()).collect();
    let newest = c.get("/events?order=desc&limit=2").await.json();
    let page: Vec<&str> = newest["events"].as_array().unwrap().iter().map(|e| e["cursor"].as_str().unwrap()).collect();
    assert_eq!(page, [all[all.len() - 1], all[all.len() - 2]], "newest first");
    assert_eq!(newest["events"][0]["payload"]["amount"], "3.00");
    let next = newest["next"].as_str().unwrap();
    let older = c.get(&format!("/events?order=desc&limit=10&before={next}")).await.json();
    let rest: Vec<&str> = older["events"].as_array().unwrap().iter().map(|e| e["cursor"].as_str().unwrap()).collect();
    let mut expected: Vec<&str> = all[..all.len() - 2].to_vec();
    expected.reverse();
    assert_eq!(rest, expected, "the page before continues where the first stopped");
    assert_eq!(c.get("/events?before=00").await.code(), "INVALID_CURSOR");
    // `after` and `before` bound a window, read from either end.
    let window = |order: &str| format!("/events?order={order}&after={}&before={}", all[0], all[3]);
    let cursors = |page: serde_json::Value| -> Vec<String> {
        page["events"].as_array().unwrap().iter().map(|e| e["cursor"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(cursors(c.get(&window("asc")).await.json()), [all[1], all[2]]);
    assert_eq!(cursors(c.get(&window("desc")).await.json()), [all[2], all[1]]);
    assert_eq!(c.get("/events?order=sideways").await.code(), "INVALID_QUERY");
}

#[tokio::test]
async fn flag_context_is_the_servers_not_the_clients() {
    let cell = TestCell::start("uk").await;
    let c = cell.client();
    let forged = c.get("/flags/evaluate?flag=any&country=GB").await;
    assert_eq!((forged.status, forged.code().as_str()), (400, "INVALID_QUERY"), "country comes from the router");
    assert!(String::from_utf8_lossy(&forged.body).contains("platform"), "the refusal names what a client may set");
    let vip = c.get("/lobby?vipTier=gold").await;
    assert_eq!((vip.status, vip.code().as_str()), (400, "INVALID_QUERY"));
    let allowed = c.get("/flags/evaluate?flag=any&platform=ios&playerId=uk-anon").await;
    assert_eq!(allowed.status, 200, "{}", String::from_utf8_lossy(&allowed.body));
    let bad_session = c.raw("GET", "/lobby", &[("authorization", "Bearer not.a.token")], Vec::new()).await.unwrap();
    assert_eq!((bad_session.status, bad_session.code().as_str()), (401, "INVALID_SESSION"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_records_expire_after_their_window_and_a_later_replay_is_a_new_request() {
    let clock = cell::clock::ManualClock::new(chrono::Utc::now());
    let intervals =
        cell::server::Intervals { idempotency_purge: std::time::Duration::from_millis(100), ..Default::default() };
    let cell = TestCell::start_with_clock("uk", Vec::new(), intervals, clock.clone()).await;
    let c = cell.client();
    assert_eq!(c.register("uk-kim", ADULT, "GB", "GBP").await.status, 201);
    assert_eq!(c.credit("uk-kim", "5.00", "dep-kim").await.status, 200);
    // Within the window (23 hours on), a replay is the recorded answer.
    clock.advance(chrono::Duration::hours(23));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let replay = c.credit("uk-kim", "5.00", "dep-kim").await;
    assert_eq!(replay.header("idempotent-replay"), Some("true"));
    assert_eq!(c.balance("uk-kim").await["cash"], "5.00");
    // Past it, the purger deletes both domains' records: the same key is a new request.
    clock.advance(chrono::Duration::hours(2));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let again = c.register("uk-kim", ADULT, "GB", "GBP").await;
        if again.status == 409 {
            assert_eq!(again.code(), "PLAYER_EXISTS", "decided afresh, not replayed");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the registration's record was never purged");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let late = c.credit("uk-kim", "5.00", "dep-kim").await;
    assert_eq!((late.status, late.header("idempotent-replay")), (200, None));
    assert_eq!(c.balance("uk-kim").await["cash"], "10.00", "a replay after the window moves money again");
}

/// `cell::api::callers::ROUTES` is the table authorisation reads: every method it does not list
/// for a pattern must not exist (405, never served without the table's check), and HEAD is
/// checked as GET.
#[tokio::test]
async fn every_route_is_in_the_authorisation_table() {
    use cell::api::callers::{Access, ROUTES};
    let cell = TestCell::start("uk").await;
    let c = cell.client();
    let concrete = |pattern: &str| {
        pattern.split('/').map(|s| if s.starts_with('{') { "uk-x" } else { s }).collect::<Vec<_>>().join("/")
    };
    for (_, pattern, _) in ROUTES {
        let listed: Vec<&str> = ROUTES.iter().filter(|(_, p, _)| p == pattern).map(|(m, _, _)| *m).collect();
        for method in ["GET", "POST", "PUT", "DELETE", "PATCH"].into_iter().filter(|m| !listed.contains(m)) {
            let r = c.raw(method, &concrete(pattern), &[("authorization", "Bearer none")], Vec::new()).await.unwrap();
            assert_eq!(r.status, 405, "{method} {pattern}: {}", String::from_utf8_lossy(&r.body));
        }
    }
    for (method, pattern, access) in ROUTES {
        let back_office = matches!(access, Access::BackOffice(_));
        assert_eq!(
            chaos::client::is_back_office(method, &concrete(pattern)),
            back_office,
            "{method} {pattern}: tools' view"
        );
        if *method == "GET" && back_office {
            let r = c.raw("HEAD", &concrete(pattern), &[("authorization", "Bearer none")], Vec::new()).await.unwrap();
            assert_eq!(r.status, 401, "HEAD {pattern} is the back office's GET");
        }
    }
}
