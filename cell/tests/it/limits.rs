//! Responsible-gambling limits against a real cell over HTTP: limits in the money transaction,
//! cooling-off on the cell's clock, Sweden's mandatory limits, time-outs and self-exclusion.

use crate::harness::{Client, Reply, TestCell, PASSWORD};
use cell::clock::Clock;
use serde_json::{json, Value};
use std::time::Duration;

const ADULT: &str = "1990-04-01";

/// Registers `player` and logs them in: their token.
async fn player(c: &Client, player: &str, country: &str, currency: &str) -> String {
    assert_eq!(c.register(player, ADULT, country, currency).await.status, 201);
    login(c, player).await
}

pub async fn login(c: &Client, player: &str) -> String {
    let body = json!({ "playerId": player, "password": PASSWORD }).to_string();
    let login = c.raw("POST", "/sessions", &[], body.into_bytes()).await.unwrap();
    assert_eq!(login.status, 201, "{}", String::from_utf8_lossy(&login.body));
    login.json()["accessToken"].as_str().unwrap().to_owned()
}

pub async fn as_player(c: &Client, method: &str, path: &str, token: &str, body: Option<Value>) -> Reply {
    let bearer = format!("Bearer {token}");
    let body = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
    c.raw(method, path, &[("authorization", &bearer), ("content-type", "application/json")], body).await.unwrap()
}

async fn set_limits(c: &Client, player: &str, token: &str, changes: Value) -> Reply {
    as_player(c, "PUT", &format!("/players/{player}/limits"), token, Some(json!({ "changes": changes }))).await
}

pub async fn deposit(c: &Client, player: &str, currency: &str, amount: &str, key: &str) -> Reply {
    let body = json!({ "playerId": player, "currency": currency, "amount": amount, "reason": "deposit" });
    c.post("/wallet/credit", key, body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposit_limit_holds_in_the_money_transaction_and_names_what_is_left() {
    let cell = TestCell::start("uk").await;
    let c = cell.client();
    let token = player(&c, "uk-ann", "GB", "GBP").await;
    let other = player(&c, "uk-bob", "GB", "GBP").await;
    assert_eq!(set_limits(&c, "uk-ann", &other, json!([])).await.code(), "NOT_YOUR_ACCOUNT");
    let set =
        set_limits(&c, "uk-ann", &token, json!([{ "kind": "deposit", "period": "day", "amount": "100.00" }])).await;
    assert_eq!(set.status, 200, "{}", String::from_utf8_lossy(&set.body));
    assert_eq!(set.json()["limits"][0]["left"], "100.00");
    assert_eq!(deposit(&c, "uk-ann", "GBP", "60.00", "d1").await.status, 200);
    let refused = deposit(&c, "uk-ann", "GBP", "50.00", "d2").await;
    assert_eq!((refused.status, refused.code().as_str()), (422, "DEPOSIT_LIMIT_EXCEEDED"));
    let message = refused.json()["message"].as_str().unwrap().to_owned();
    assert!(message.contains("40.00 GBP left") && message.contains("UK-PLAYER-DEPOSIT-LIMIT-DAY"), "{message}");
    // An operator's credit that is not a deposit (an adjustment) is not one; withdrawals pass.
    let adjustment = json!({ "playerId": "uk-ann", "currency": "GBP", "amount": "500.00", "reason": "adjustment" });
    assert_eq!(c.post("/wallet/credit", "a1", adjustment).await.status, 200);
    let withdrawal = json!({ "playerId": "uk-ann", "currency": "GBP", "amount": "10.00", "reason": "withdrawal" });
    assert_eq!(c.post("/wallet/debit", "w1", withdrawal).await.status, 200);
    let view = as_player(&c, "GET", "/players/uk-ann/limits", &token, None).await.json();
    assert_eq!(
        (view["limits"][0]["used"].as_str(), view["limits"][0]["left"].as_str()),
        (Some("60.00"), Some("40.00"))
    );
    // The counters are rebuilt from the journal after a restart: the limit still binds.
    let mut cell = cell;
    cell.restart("uk").await;
    let c = cell.client();
    let view = as_player(&c, "GET", "/players/uk-ann/limits", &token, None).await.json();
    assert_eq!(view["limits"][0]["used"], "60.00", "{view}");
    assert_eq!(deposit(&c, "uk-ann", "GBP", "40.01", "d3").await.code(), "DEPOSIT_LIMIT_EXCEEDED");
    assert_eq!(deposit(&c, "uk-ann", "GBP", "40.00", "d4").await.status, 200);
    let events = c.events().await;
    assert!(events.iter().any(|e| e["event"] == "rg.limit_set" && e["payload"]["amount"] == "100.00"));
    let log = c.get("/compliance/players/uk-ann/decisions").await.json();
    let set = &log["decisions"][0];
    assert_eq!((set["kind"].as_str(), set["rule"].as_str()), (Some("limit_set"), Some("UK-PLAYER-DEPOSIT-LIMIT-DAY")));
    assert_eq!((set["source"].as_str(), set["outcome"].as_str()), (Some("player"), Some("100.00 GBP")));
}

/// 200 deposits at once against a limit: the single writer orders the checks, so they never pass
/// it together.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_deposits_never_pass_the_limit() {
    let cell = TestCell::start("uk").await;
    let c = cell.client();
    let token = player(&c, "uk-race", "GB", "GBP").await;
    let set =
        set_limits(&c, "uk-race", &token, json!([{ "kind": "deposit", "period": "day", "amount": "50.00" }])).await;
    assert_eq!(set.status, 200);
    let deposits = (0..200)
        .map(|i| tokio::spawn(async move { deposit(&c, "uk-race", "GBP", "1.00", &format!("race-{i}")).await.status }));
    let statuses: Vec<u16> = futures_join(deposits).await;
    let accepted = statuses.iter().filter(|s| **s == 200).count();
    let refused = statuses.iter().filter(|s| **s == 422).count();
    assert_eq!((accepted, refused), (50, 150), "{statuses:?}");
    assert_eq!(c.balance("uk-race").await["cash"], "50.00");
}

async fn futures_join(tasks: impl Iterator<Item = tokio::task::JoinHandle<u16>>) -> Vec<u16> {
    let mut out = Vec::new();
    for task in tasks.collect::<Vec<_>>() {
        out.push(task.await.unwrap());
    }
    out
}

/// UK: an increase waits 24 hours on the cell's clock (moved, not slept), a decrease is at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_increase_waits_the_cooling_off_and_a_decrease_does_not() {
    // A Monday noon: a day later is still the same week.
    let clock = cell::clock::ManualClock::new("2026-12-07T12:00:00Z".parse().unwrap());
    let intervals = cell::server::Intervals { round_sweep: Duration::from_secs(60), ..Default::default() };
    let cell = TestCell::start_with_clock("uk", Vec::new(), intervals, clock.clone()).await;
    let c = cell.client();
    let token = player(&c, "uk-cool", "GB", "GBP").await;
    let week = |amount: &str| json!([{ "kind": "deposit", "period": "week", "amount": amount }]);
    assert_eq!(set_limits(&c, "uk-cool", &token, week("100.00")).await.status, 200);
    let raised = set_limits(&c, "uk-cool", &token, week("300.00")).await.json();
    assert_eq!(raised["limits"][0]["amount"], "100.00", "still the old limit: {raised}");
    let effective: chrono::DateTime<chrono::Utc> =
        raised["pending"][0]["effectiveAt"].as_str().unwrap().parse().unwrap();
    assert_eq!(effective - clock.now(), chrono::Duration::hours(24));
    assert_eq!(deposit(&c, "uk-cool", "GBP", "150.00", "c1").await.code(), "DEPOSIT_LIMIT_EXCEEDED");
    clock.advance(chrono::Duration::hours(24) + chrono::Duration::seconds(1));
    assert_eq!(deposit(&c, "uk-cool", "GBP", "150.00", "c2").await.status, 200, "the increase is in force");
    // A day later the access token has long expired: log in again.
    let token = login(&c, "uk-cool").await;
    let view = as_player(&c, "GET", "/players/uk-cool/limits", &token, None).await.json();
    assert_eq!((view["limits"][0]["amount"].as_str(), view["pending"].as_array().unwrap().len()), (Some("300.00"), 0));
    // A decrease below what the week has used: at once, and nothing more this week.
    assert_eq!(set_limits(&c, "uk-cool", &token, week("100.00")).await.status, 200);
    assert_eq!(deposit(&c, "uk-cool", "GBP", "1.00", "c3").await.code(), "DEPOSIT_LIMIT_EXCEEDED");
    let kinds: Vec<String> = c.events().await.iter().map(|e| e["event"].as_str().unwrap().to_owned()).collect();
    assert!(kinds.contains(&"rg.limit_pending".to_owned()), "{kinds:?}");
}

/// Sweden: no deposit before all three deposit limits are set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swedish_deposit_waits_for_all_three_limits() {
    let cell = TestCell::start("se").await;
    let c = cell.client();
    let token = player(&c, "se-sven", "SE", "SEK").await;
    let refused = deposit(&c, "se-sven", "SEK", "100.00", "s1").await;
    assert_eq!((refused.status, refused.code().as_str()), (422, "DEPOSIT_LIMITS_REQUIRED"));
    assert!(refused.json()["message"].as_str().unwrap().contains("day, week, month"));
    let some = json!([{ "kind": "deposit", "period": "day", "amount": "1000.00" }]);
    assert_eq!(set_limits(&c, "se-sven", &token, some).await.status, 200);
    assert_eq!(deposit(&c, "se-sven", "SEK", "100.00", "s2").await.code(), "DEPOSIT_LIMITS_REQUIRED");
    let rest = json!([
        { "kind": "deposit", "period": "week", "amount": "5000.00" },
        { "kind": "deposit", "period": "month", "amount": "10000.00" }
    ]);
    assert_eq!(set_limits(&c, "se-sven", &token, rest).await.status, 200);
    assert_eq!(deposit(&c, "se-sven", "SEK", "100.00", "s3").await.status, 200);
}

/// A loss limit bounds stakes net of what came back; a time-out and a self-exclusion stop deposits
/// and bets, never withdrawals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loss_limits_time_outs_and_self_exclusion_stop_play_but_not_withdrawals() {
    let cell = TestCell::start("uk").await;
    let c = cell.client();
    let token = player(&c, "uk-lou", "GB", "GBP").await;
    assert_eq!(deposit(&c, "uk-lou", "GBP", "100.00", "l0").await.status, 200);
    let loss = json!([{ "kind": "loss", "period": "day", "amount": "10.00" }]);
    assert_eq!(set_limits(&c, "uk-lou", &token, loss).await.status, 200);
    let hold = |round: &str, amount: &str| json!({ "playerId": "uk-lou", "roundId": round, "betId": "b1", "currency": "GBP", "amount": amount });
    let settle_lost = |round: &str, stake: &str| json!({ "roundId": round, "operations": [{ "playerId": "uk-lou", "delta": format!("-{stake}"), "currency": "GBP" }] });
    assert_eq!(c.post("/wallet/hold", "h1", hold("r1", "6.00")).await.status, 200);
    assert_eq!(c.post("/wallet/settle", "s1", settle_lost("r1", "6.00")).await.status, 200);
    let refused = c.post("/wallet/hold", "h2", hold("r2", "5.00")).await;
    assert_eq!((refused.status, refused.code().as_str()), (422, "LOSS_LIMIT_EXCEEDED"), "{}", refused.json());
    assert_eq!(c.post("/wallet/hold", "h3", hold("r3", "4.00")).await.status, 200, "exactly the 4.00 left");

    let timeout = as_player(&c, "POST", "/players/uk-lou/timeout", &token, Some(json!({ "hours": 24 }))).await;
    assert_eq!(timeout.status, 200, "{}", String::from_utf8_lossy(&timeout.body));
    assert_eq!(deposit(&c, "uk-lou", "GBP", "1.00", "l1").await.code(), "PLAYER_TIMED_OUT");
    let withdrawal = json!({ "playerId": "uk-lou", "currency": "GBP", "amount": "1.00", "reason": "withdrawal" });
    assert_eq!(c.post("/wallet/debit", "w1", withdrawal.clone()).await.status, 200, "withdrawals stay open");
    let short = as_player(&c, "POST", "/players/uk-lou/timeout", &token, Some(json!({ "hours": 2 }))).await;
    assert_eq!(short.code(), "INVALID_REQUEST");

    let excluded = as_player(&c, "POST", "/players/uk-lou/self-exclusion", &token, Some(json!({ "months": 6 }))).await;
    assert_eq!(excluded.status, 200);
    assert!(excluded.json()["selfExcludedUntil"].is_string());
    assert_eq!(deposit(&c, "uk-lou", "GBP", "1.00", "l2").await.code(), "SELF_EXCLUDED");
    assert_eq!(c.post("/wallet/hold", "h4", hold("r4", "1.00")).await.code(), "SELF_EXCLUDED");
    assert_eq!(c.post("/wallet/debit", "w2", withdrawal).await.status, 200, "withdrawals stay open");
}

/// Spain: the region file's default limits apply from registration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spanish_default_limits_apply_from_registration() {
    let cell = TestCell::start("es").await;
    let c = cell.client();
    let token = player(&c, "es-ana", "ES", "EUR").await;
    let view = as_player(&c, "GET", "/players/es-ana/limits", &token, None).await.json();
    let day = &view["limits"][0];
    assert_eq!((day["period"].as_str(), day["amount"].as_str()), (Some("day"), Some("600.00")));
    assert!(day["source"].as_str().unwrap().starts_with("ES-DEFAULT-DEPOSIT-LIMIT"), "{day}");
    assert_eq!(deposit(&c, "es-ana", "EUR", "600.00", "e1").await.status, 200);
    assert_eq!(deposit(&c, "es-ana", "EUR", "0.01", "e2").await.code(), "DEPOSIT_LIMIT_EXCEEDED");
}

/// Access tokens last 15 minutes on the cell's clock: a fresh one from the refresh token (which,
/// unlike a login, keeps the play session going).
async fn refreshed(c: &Client, refresh_token: &mut String) -> String {
    let body = json!({ "refreshToken": refresh_token }).to_string();
    let tokens = c.raw("POST", "/sessions/refresh", &[], body.into_bytes()).await.unwrap().json();
    *refresh_token = tokens["refreshToken"].as_str().unwrap().to_owned();
    tokens["accessToken"].as_str().unwrap().to_owned()
}

/// A session time limit and reality checks on the cell's clock: bets stop when a reality check
/// is due until the player acknowledges it, and when the session's time is up until they log in
/// again; a longer limit waits the cooling-off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_time_limit_and_reality_checks_pause_play() {
    let clock = cell::clock::ManualClock::new(chrono::Utc::now());
    let cell = TestCell::start_with_clock("uk", Vec::new(), Default::default(), clock.clone()).await;
    let c = cell.client();
    assert_eq!(c.register("uk-rita", ADULT, "GB", "GBP").await.status, 201);
    let body = json!({ "playerId": "uk-rita", "password": PASSWORD }).to_string();
    let tokens = c.raw("POST", "/sessions", &[], body.into_bytes()).await.unwrap().json();
    let mut refresh_token = tokens["refreshToken"].as_str().unwrap().to_owned();
    let token = tokens["accessToken"].as_str().unwrap().to_owned();
    assert_eq!(deposit(&c, "uk-rita", "GBP", "100.00", "rita-d1").await.status, 200);
    let limits = json!({ "sessionMinutes": 60, "realityCheckMinutes": 20 });
    let set = as_player(&c, "PUT", "/players/uk-rita/session-limits", &token, Some(limits)).await;
    assert_eq!(set.status, 200, "{}", String::from_utf8_lossy(&set.body));
    let view = set.json();
    assert_eq!((view["sessionMinutes"].as_u64(), view["realityCheckMinutes"].as_u64()), (Some(60), Some(20)));
    let mut bets = 0;
    let mut bet = || {
        bets += 1;
        let hold = json!({ "playerId": "uk-rita", "roundId": format!("r{bets}"), "betId": format!("b{bets}"), "currency": "GBP", "amount": "1.00" });
        let key = format!("rita-bet-{bets}");
        async move { c.post("/wallet/hold", &key, hold).await }
    };
    assert_eq!(bet().await.status, 200);
    clock.advance(chrono::Duration::minutes(21));
    let due = bet().await;
    assert_eq!((due.status, due.code().as_str()), (422, "REALITY_CHECK_DUE"), "{}", due.json());
    let token = refreshed(&c, &mut refresh_token).await;
    let session = as_player(&c, "GET", "/players/uk-rita/session", &token, None).await.json();
    assert_eq!((session["staked"].as_str(), session["net"].as_str()), (Some("1.00"), Some("-1.00")), "{session}");
    let seen = as_player(&c, "POST", "/players/uk-rita/reality-check", &token, None).await;
    assert_eq!(seen.status, 200);
    assert_eq!(bet().await.status, 200, "acknowledged: play goes on");
    // A longer session waits the UK's 24 hours; the 60 minutes stand meanwhile.
    let longer = json!({ "sessionMinutes": 120, "realityCheckMinutes": 20 });
    let pending = as_player(&c, "PUT", "/players/uk-rita/session-limits", &token, Some(longer)).await.json();
    assert_eq!(
        (pending["sessionMinutes"].as_u64(), pending["pending"]["sessionMinutes"].as_u64()),
        (Some(60), Some(120))
    );
    clock.advance(chrono::Duration::minutes(19));
    assert_eq!(bet().await.status, 200);
    clock.advance(chrono::Duration::minutes(21));
    let token = refreshed(&c, &mut refresh_token).await;
    let seen = as_player(&c, "POST", "/players/uk-rita/reality-check", &token, None).await;
    assert_eq!(seen.status, 200);
    let over = bet().await;
    assert_eq!((over.status, over.code().as_str()), (422, "SESSION_TIME_LIMIT_REACHED"), "{}", over.json());
    // Logging in again does not start a new session before a break of an hour.
    let token = login(&c, "uk-rita").await;
    assert_eq!(bet().await.code(), "SESSION_TIME_LIMIT_REACHED");
    clock.advance(chrono::Duration::minutes(61));
    let token = {
        let _ = token;
        login(&c, "uk-rita").await
    };
    assert_eq!(bet().await.status, 200, "after the break, a login starts a new session");
    let log = c.get("/compliance/players/uk-rita/decisions").await.json();
    let kinds: Vec<&str> = log["decisions"].as_array().unwrap().iter().map(|d| d["kind"].as_str().unwrap()).collect();
    for kind in ["session_limits_set", "reality_check", "session_limits_pending", "refused"] {
        assert!(kinds.contains(&kind), "{kind} missing: {kinds:?}");
    }
    let _ = token;
}
