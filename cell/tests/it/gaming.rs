//! The provider conformance kit: the same scenarios, signed and spoken in each dialect, against a
//! real cell over HTTP. Duplicates, out-of-order calls, rollback before bet, a late win after the
//! round timeout, timeouts with retries, bad signatures; then what only gaming does: stake limits,
//! maintenance, live tables with several players.

use crate::harness::{Client, Reply, TestCell};
use cell::domains::gaming::adapters::{pulse_sign, seamless_sign};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use std::str::FromStr;
use std::time::Duration;

pub const SECRET: &str = "conformance-secret";
const ADULT: &str = "1980-01-01";

/// The test providers: each dialect with a long timeout, and with a one-second one.
pub fn providers() -> Vec<cell::domains::gaming::providers::Provider> {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let files = [
            ("demo", "seamless-v1", 300, "replay"),
            ("demo-quick", "seamless-v1", 1, "replay"),
            ("pulsar", "pulse", 300, "error"),
            ("pulsar-quick", "pulse", 1, "error"),
        ];
        for (id, dialect, timeout, duplicates) in files {
            write_provider_file(dir.path(), id, dialect, timeout, duplicates, SECRET_ENV);
        }
        dir
    });
    load_providers(dir.path())
}

/// The environment variable the test provider files name; [`load_providers`] gives it `SECRET`.
const SECRET_ENV: &str = "CONFORMANCE_PROVIDER_SECRET";

/// Writes `<dir>/<id>.toml`, a provider whose games are `slot-1` (slots), `live-1` (live) and
/// `capped-1` (table, a bet wins at most ten times its stake).
fn write_provider_file(
    dir: &std::path::Path,
    id: &str,
    dialect: &str,
    timeout: u64,
    duplicates: &str,
    secret_env: &str,
) {
    let text = format!(
        "id = \"{id}\"\ndialect = \"{dialect}\"\nsecret_env = \"{secret_env}\"\nstate = \"enabled\"\n\
         round_timeout_seconds = {timeout}\nduplicates = \"{duplicates}\"\n\n\
         [[games]]\nid = \"slot-1\"\ntype = \"slots\"\n\n[[games]]\nid = \"live-1\"\ntype = \"live\"\n\n\
         [[games]]\nid = \"capped-1\"\ntype = \"table\"\nmax_multiplier = \"10\"\n"
    );
    std::fs::write(dir.join(format!("{id}.toml")), text).unwrap();
}

/// The provider files under `dir`, with `SECRET` for [`SECRET_ENV`] and no other secret set.
fn load_providers(dir: &std::path::Path) -> Vec<cell::domains::gaming::providers::Provider> {
    let secret = |name: &str| (name == SECRET_ENV).then(|| SECRET.to_owned());
    cell::domains::gaming::providers::load_dir_with(dir, secret).unwrap()
}

/// A dialect-neutral outcome, as the kit compares them.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Ok { balance: Decimal },
    Refused { code: String },
}

impl Outcome {
    fn code(&self) -> &str {
        match self {
            Outcome::Ok { .. } => "OK",
            Outcome::Refused { code } => code,
        }
    }
}

/// A provider as the kit drives it.
#[derive(Clone, Copy, Debug)]
pub enum Dialect {
    Seamless,
    Pulse,
}

#[derive(Clone, Copy)]
pub struct Provider {
    pub dialect: Dialect,
    pub id: &'static str,
    pub client: Client,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Provider {
    pub fn new(dialect: Dialect, quick: bool, client: Client) -> Provider {
        let id = match (dialect, quick) {
            (Dialect::Seamless, false) => "demo",
            (Dialect::Seamless, true) => "demo-quick",
            (Dialect::Pulse, false) => "pulsar",
            (Dialect::Pulse, true) => "pulsar-quick",
        };
        Provider { dialect, id, client }
    }

    /// Sends a call signed with `secret`, its timestamp shifted by `skew_s`.
    pub async fn send_signed(&self, call: &str, mut body: Value, secret: &str, skew_s: i64) -> Reply {
        let path = format!("/gaming/{}/{call}", self.id);
        match self.dialect {
            Dialect::Seamless => {
                let ts = now_ms() / 1000 + skew_s;
                let bytes = body.to_string().into_bytes();
                let signature = seamless_sign(secret.as_bytes(), ts, &bytes);
                let ts = ts.to_string();
                let headers = [
                    ("x-timestamp", ts.as_str()),
                    ("x-signature", signature.as_str()),
                    ("content-type", "application/json"),
                ];
                self.client.raw("POST", &path, &headers, bytes).await.unwrap()
            }
            Dialect::Pulse => {
                body["timestamp"] = json!(now_ms() + skew_s * 1000);
                let hash = pulse_sign(body.as_object().unwrap(), secret.as_bytes());
                body["hash"] = json!(hash);
                let headers = [("content-type", "application/json")];
                self.client.raw("POST", &path, &headers, body.to_string().into_bytes()).await.unwrap()
            }
        }
    }

    fn outcome(&self, r: &Reply) -> Outcome {
        let v = r.json();
        match self.dialect {
            Dialect::Seamless if r.status == 200 => {
                Outcome::Ok { balance: Decimal::from_str(v["balance"].as_str().unwrap()).unwrap() }
            }
            Dialect::Seamless => Outcome::Refused { code: v["code"].as_str().unwrap().to_owned() },
            Dialect::Pulse if v["error"] == 0 => {
                assert_eq!(r.status, 200);
                Outcome::Ok { balance: Decimal::new(v["balanceMinor"].as_i64().unwrap(), 2) }
            }
            Dialect::Pulse => Outcome::Refused { code: v["code"].as_str().unwrap().to_owned() },
        }
    }

    async fn send(&self, call: &str, body: Value) -> Outcome {
        let r = self.send_signed(call, body, SECRET, 0).await;
        self.outcome(&r)
    }

    fn minor(amount: &str) -> i64 {
        (Decimal::from_str(amount).unwrap() * Decimal::from(100)).try_into().unwrap()
    }

    pub async fn bet(&self, tx: &str, player: &str, round: &str, game: &str, amount: &str) -> Outcome {
        let r = self.bet_reply(tx, player, round, game, amount).await;
        self.outcome(&r)
    }

    /// A signed bet, answered as the cell answered it (status, headers, body).
    pub async fn bet_reply(&self, tx: &str, player: &str, round: &str, game: &str, amount: &str) -> Reply {
        match self.dialect {
            Dialect::Seamless => {
                let body = json!({ "transactionId": tx, "playerId": player, "roundId": round, "gameId": game, "amount": amount, "currency": "GBP" });
                self.send_signed("bet", body, SECRET, 0).await
            }
            Dialect::Pulse => {
                let body = json!({ "txId": tx, "customerId": player, "roundRef": round, "gameRef": game, "amountMinor": Self::minor(amount), "currencyCode": "GBP" });
                self.send_signed("debit", body, SECRET, 0).await
            }
        }
    }

    /// A payout; `close` ends the player's part (pulse: a separate `endRound`).
    pub async fn win(&self, tx: &str, player: &str, round: &str, amount: &str, close: bool) -> Outcome {
        match self.dialect {
            Dialect::Seamless => {
                let body = json!({ "transactionId": tx, "playerId": player, "roundId": round, "amount": amount, "currency": "GBP", "closeRound": close });
                self.send("win", body).await
            }
            Dialect::Pulse => {
                let body = json!({ "txId": tx, "customerId": player, "roundRef": round, "amountMinor": Self::minor(amount), "currencyCode": "GBP" });
                let credited = self.send("credit", body).await;
                if !close || credited.code() != "OK" {
                    return credited;
                }
                self.end_round(player, round).await
            }
        }
    }

    pub async fn end_round(&self, player: &str, round: &str) -> Outcome {
        match self.dialect {
            Dialect::Seamless => {
                // Every provider call has its own transaction id.
                let tx = format!("end-{round}-{player}-{}", rand::random::<u32>());
                let body = json!({ "transactionId": tx, "playerId": player, "roundId": round, "amount": "0.00", "currency": "GBP", "closeRound": true });
                self.send("win", body).await
            }
            Dialect::Pulse => self.send("endRound", json!({ "customerId": player, "roundRef": round })).await,
        }
    }

    pub async fn rollback(&self, tx: &str, player: &str, round: &str, reference: &str) -> Outcome {
        match self.dialect {
            Dialect::Seamless => {
                let body =
                    json!({ "transactionId": tx, "playerId": player, "roundId": round, "refTransactionId": reference });
                self.send("rollback", body).await
            }
            Dialect::Pulse => {
                let body = json!({ "txId": tx, "customerId": player, "roundRef": round, "originalTxId": reference });
                self.send("cancel", body).await
            }
        }
    }

    pub async fn balance(&self, player: &str) -> Outcome {
        match self.dialect {
            Dialect::Seamless => self.send("balance", json!({ "playerId": player, "currency": "GBP" })).await,
            Dialect::Pulse => self.send("getBalance", json!({ "customerId": player, "currencyCode": "GBP" })).await,
        }
    }

    /// What a repeated transaction id with the same body answers in this dialect.
    fn duplicate_of(&self, original: &Outcome) -> Outcome {
        match self.dialect {
            Dialect::Seamless => original.clone(),
            Dialect::Pulse => Outcome::Refused { code: "DUPLICATE_TRANSACTION".into() },
        }
    }
}

fn ok(balance: &str) -> Outcome {
    Outcome::Ok { balance: Decimal::from_str(balance).unwrap() }
}

fn refused(code: &str) -> Outcome {
    Outcome::Refused { code: code.into() }
}

async fn cell_with_player(player: &str, deposit: &str) -> TestCell {
    let cell = TestCell::start_with_providers("uk", providers()).await;
    let c = cell.client();
    assert_eq!(c.register(player, ADULT, "GB", "GBP").await.status, 201);
    assert_eq!(c.credit(player, deposit, &format!("seed-{player}")).await.status, 200);
    cell
}

/// Per currency the ledger sums to zero, and the audit chain verifies.
async fn books_balance_and_chain_verifies(c: &Client) {
    let totals = c.get("/ops/ledger").await;
    assert_eq!(totals.status, 200);
    for (currency, total) in totals.json().as_object().unwrap() {
        assert!(Decimal::from_str(total.as_str().unwrap()).unwrap().is_zero(), "{currency} sums to {total}");
        // At the currency's scale, like every amount answered.
        assert_eq!(
            total.as_str().unwrap().split_once('.').map(|(_, cents)| cents.len()),
            Some(2),
            "{currency}: {total}"
        );
    }
    let verify = c.get("/audit/verify").await.json();
    assert_eq!(verify["ok"], true, "{verify}");
}

async fn events_named(c: &Client, name: &str) -> Vec<Value> {
    c.events().await.into_iter().filter(|e| e["event"] == name).collect()
}

// ---- the scenarios, each run for every dialect ----------------------------------------------------

async fn round_trip(d: Dialect) {
    let cell = cell_with_player("uk-p1", "20.00").await;
    let p = Provider::new(d, false, cell.client());
    assert_eq!(p.bet("b1", "uk-p1", "r1", "slot-1", "1.50").await, ok("18.50"));
    assert_eq!(p.win("w1", "uk-p1", "r1", "4.00", true).await, ok("22.50"));
    assert_eq!(p.balance("uk-p1").await, ok("22.50"));
    let c = cell.client();
    assert_eq!(c.balance("uk-p1").await["held"], "0.00");
    let placed = events_named(&c, "bet.placed").await;
    assert_eq!(placed.len(), 1);
    assert_eq!(placed[0]["payload"]["status"], "OPEN");
    assert_eq!(placed[0]["payload"]["betId"], "b1");
    let settled = events_named(&c, "round.settled").await;
    assert_eq!(settled.len(), 1);
    assert_eq!(settled[0]["payload"]["roundId"], "r1");
    assert_eq!(settled[0]["payload"]["status"], "SETTLED");
    assert_eq!(settled[0]["payload"]["parts"][0]["won"], "4.00");
    books_balance_and_chain_verifies(&c).await;
}

async fn duplicates(d: Dialect) {
    let cell = cell_with_player("uk-p1", "10.00").await;
    let p = Provider::new(d, false, cell.client());
    let first = p.bet("b1", "uk-p1", "r1", "slot-1", "1.00").await;
    assert_eq!(first, ok("9.00"));
    // The same call again (a new timestamp and signature): no second hold.
    assert_eq!(p.bet("b1", "uk-p1", "r1", "slot-1", "1.00").await, p.duplicate_of(&first));
    // The same transaction id with another body.
    assert_eq!(p.bet("b1", "uk-p1", "r1", "slot-1", "2.00").await, refused("TRANSACTION_ID_REUSED"));
    let win = p.win("w1", "uk-p1", "r1", "3.00", false).await;
    assert_eq!(win, ok("12.00"));
    assert_eq!(p.win("w1", "uk-p1", "r1", "3.00", false).await, p.duplicate_of(&win));
    assert_eq!(p.balance("uk-p1").await, ok("12.00"));
    assert_eq!(events_named(&cell.client(), "bet.placed").await.len(), 1);
    // A repeated refusal is answered as the refusal it was, whatever the duplicate policy: a
    // provider must never read "duplicate" (done) for a bet that was refused.
    assert_eq!(p.bet("b9", "uk-p1", "r9", "live-1", "100.00").await, refused("INSUFFICIENT_FUNDS"));
    assert_eq!(p.bet("b9", "uk-p1", "r9", "live-1", "100.00").await, refused("INSUFFICIENT_FUNDS"));
    books_balance_and_chain_verifies(&cell.client()).await;
}

async fn out_of_order(d: Dialect) {
    let cell = cell_with_player("uk-p1", "10.00").await;
    let p = Provider::new(d, false, cell.client());
    // A win before any bet: nothing to pay.
    assert_eq!(p.win("w0", "uk-p1", "r1", "5.00", true).await, refused("BET_NOT_FOUND"));
    assert_eq!(p.end_round("uk-p1", "r1").await, refused("BET_NOT_FOUND"));
    // Rollback before its bet: success, then the late bet is refused and moves no money.
    assert_eq!(p.rollback("rb1", "uk-p1", "r2", "b2").await, ok("10.00"));
    assert_eq!(p.bet("b2", "uk-p1", "r2", "slot-1", "1.00").await, refused("BET_ROLLED_BACK"));
    assert_eq!(p.balance("uk-p1").await, ok("10.00"));
    // Rollback refunds exactly once, even under another rollback transaction id.
    assert_eq!(p.bet("b3", "uk-p1", "r3", "slot-1", "2.00").await, ok("8.00"));
    assert_eq!(p.rollback("rb3", "uk-p1", "r3", "b3").await, ok("10.00"));
    assert_eq!(p.rollback("rb3-again", "uk-p1", "r3", "b3").await, ok("10.00"));
    // A win for a rolled-back bet; a rollback of a settled bet.
    assert_eq!(p.win("w3", "uk-p1", "r3", "5.00", true).await, refused("BET_ROLLED_BACK"));
    assert_eq!(p.bet("b4", "uk-p1", "r4", "slot-1", "1.00").await, ok("9.00"));
    assert_eq!(p.win("w4", "uk-p1", "r4", "0.00", true).await, ok("9.00"));
    assert_eq!(p.rollback("rb4", "uk-p1", "r4", "b4").await, refused("BET_ALREADY_SETTLED"));
    // A second win after the part closed.
    assert_eq!(p.win("w4b", "uk-p1", "r4", "1.00", true).await, refused("BET_ALREADY_SETTLED"));
    // Someone else's bet cannot be rolled back in their name.
    let c = cell.client();
    assert_eq!(c.register("uk-p2", ADULT, "GB", "GBP").await.status, 201);
    assert_eq!(p.bet("b5", "uk-p1", "r5", "slot-1", "1.00").await, ok("8.00"));
    assert_eq!(p.rollback("rb5", "uk-p2", "r5", "b5").await, refused("PLAYER_MISMATCH"));
    assert_eq!(p.balance("uk-p1").await, ok("8.00"));
    // A bet whose round already paid out cannot be rolled back (the player would be paid twice).
    assert_eq!(p.bet("b6", "uk-p1", "r6", "slot-1", "1.00").await, ok("7.00"));
    assert_eq!(p.win("w6", "uk-p1", "r6", "5.00", false).await, ok("12.00"));
    assert_eq!(p.rollback("rb6", "uk-p1", "r6", "b6").await, refused("BET_ALREADY_PAID"));
    // An end of round before its bet changes nothing and is not remembered: the round still
    // closes when the provider ends it after the bet.
    assert_eq!(p.end_round("uk-p1", "r7").await, refused("BET_NOT_FOUND"));
    assert_eq!(p.bet("b7", "uk-p1", "r7", "slot-1", "1.00").await, ok("11.00"));
    assert_eq!(p.end_round("uk-p1", "r7").await, ok("11.00"));
    assert_eq!(c.balance("uk-p1").await["held"], "2.00", "only r5's and r6's stakes are still held");
    books_balance_and_chain_verifies(&c).await;
}

async fn late_win_after_timeout(d: Dialect) {
    let cell = cell_with_player("uk-p1", "10.00").await;
    let p = Provider::new(d, true, cell.client());
    assert_eq!(p.bet("b1", "uk-p1", "r1", "slot-1", "2.00").await, ok("8.00"));
    // The quick providers time out after 1 s; the sweeper runs every 200 ms.
    let c = cell.client();
    let mut voided = Vec::new();
    for _ in 0..100 {
        voided = events_named(&c, "round.settled").await;
        if !voided.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(voided.len(), 1, "the round was not voided");
    assert_eq!(voided[0]["payload"]["status"], "VOIDED");
    assert_eq!(voided[0]["payload"]["parts"][0]["refunded"], "2.00");
    assert_eq!(p.balance("uk-p1").await, ok("10.00"));
    assert_eq!(p.win("w1", "uk-p1", "r1", "50.00", true).await, refused("ROUND_VOIDED"));
    assert_eq!(p.bet("b2", "uk-p1", "r1", "slot-1", "1.00").await, refused("ROUND_VOIDED"));
    assert_eq!(p.balance("uk-p1").await, ok("10.00"));
    books_balance_and_chain_verifies(&c).await;
}

async fn a_timed_out_round_settles_a_reported_result(d: Dialect) {
    let cell = cell_with_player("uk-p1", "10.00").await;
    let c = cell.client();
    assert_eq!(c.register("uk-p2", ADULT, "GB", "GBP").await.status, 201);
    assert_eq!(c.credit("uk-p2", "10.00", "seed-p2").await.status, 200);
    let p = Provider::new(d, true, c);
    // p1 lost (a win of zero, never followed by the closing call); p2 has no result at all.
    assert_eq!(p.bet("b1", "uk-p1", "r1", "live-1", "2.00").await, ok("8.00"));
    assert_eq!(p.bet("b2", "uk-p2", "r1", "live-1", "3.00").await, ok("7.00"));
    assert_eq!(p.win("w1", "uk-p1", "r1", "0.00", false).await, ok("8.00"));
    let mut ended = Vec::new();
    for _ in 0..100 {
        ended = events_named(&c, "round.settled").await;
        if ended.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(ended.len(), 2, "{ended:?}");
    let (settled, voided) = (&ended[0]["payload"], &ended[1]["payload"]);
    assert_eq!(
        (settled["status"].clone(), settled["parts"][0]["playerId"].clone()),
        (json!("SETTLED"), json!("uk-p1"))
    );
    assert_eq!((voided["status"].clone(), voided["parts"][0]["playerId"].clone()), (json!("VOIDED"), json!("uk-p2")));
    assert_eq!(p.balance("uk-p1").await, ok("8.00"), "a reported loss stays a loss");
    assert_eq!(p.balance("uk-p2").await, ok("10.00"), "no result: the stake comes back");
    // The round is over for everyone.
    assert_eq!(c.register("uk-p3", ADULT, "GB", "GBP").await.status, 201);
    assert_eq!(c.credit("uk-p3", "5.00", "seed-p3").await.status, 200);
    assert_eq!(p.bet("b3", "uk-p3", "r1", "live-1", "1.00").await, refused("ROUND_VOIDED"));
    books_balance_and_chain_verifies(&c).await;
}

async fn timeouts_with_retries(d: Dialect) {
    let cell = cell_with_player("uk-p1", "10.00").await;
    let p = Provider::new(d, false, cell.client());
    // The provider gives up waiting (here: drops the request almost at once) and retries with the
    // same transaction id, several times and concurrently: one effect.
    for _ in 0..3 {
        // Whether it was answered in time does not matter: the retries below must find one effect.
        let _ = tokio::time::timeout(Duration::from_micros(200), p.bet("b1", "uk-p1", "r1", "slot-1", "1.00")).await;
    }
    let retries = futures_join(&p, 4).await;
    for r in &retries {
        assert!(*r == ok("9.00") || *r == p.duplicate_of(&ok("9.00")), "{r:?}");
    }
    assert_eq!(p.balance("uk-p1").await, ok("9.00"));
    assert_eq!(events_named(&cell.client(), "bet.placed").await.len(), 1);
}

async fn futures_join(p: &Provider, n: usize) -> Vec<Outcome> {
    let calls: Vec<_> = (0..n)
        .map(|_| {
            let p = *p;
            tokio::spawn(async move { p.bet("b1", "uk-p1", "r1", "slot-1", "1.00").await })
        })
        .collect();
    let mut out = Vec::new();
    for call in calls {
        out.push(call.await.unwrap());
    }
    out
}

async fn bad_signatures(d: Dialect) {
    let cell = cell_with_player("uk-p1", "10.00").await;
    let p = Provider::new(d, false, cell.client());
    let c = cell.client();
    let events_before = c.events().await.len();
    let bet = match d {
        Dialect::Seamless => {
            json!({ "transactionId": "b1", "playerId": "uk-p1", "roundId": "r1", "gameId": "slot-1", "amount": "1.00", "currency": "GBP" })
        }
        Dialect::Pulse => {
            json!({ "txId": "b1", "customerId": "uk-p1", "roundRef": "r1", "gameRef": "slot-1", "amountMinor": 100, "currencyCode": "GBP" })
        }
    };
    let call = match d {
        Dialect::Seamless => "bet",
        Dialect::Pulse => "debit",
    };
    let wrong = p.send_signed(call, bet.clone(), "not-the-secret", 0).await;
    assert_eq!(p.outcome(&wrong), refused("BAD_SIGNATURE"));
    let stale = p.send_signed(call, bet.clone(), SECRET, -301).await;
    assert_eq!(p.outcome(&stale), refused("STALE_REQUEST"));
    let future = p.send_signed(call, bet.clone(), SECRET, 400).await;
    assert_eq!(p.outcome(&future), refused("STALE_REQUEST"));
    if let Dialect::Seamless = d {
        assert_eq!((wrong.status, stale.status), (401, 401));
        let unsigned = c.raw("POST", "/gaming/demo/bet", &[], bet.to_string().into_bytes()).await.unwrap();
        assert_eq!((unsigned.status, unsigned.code().as_str()), (401, "BAD_SIGNATURE"));
    }
    assert_eq!(c.events().await.len(), events_before, "a refused signature writes nothing");
    // The real thing still goes through, once: nothing was recorded under its id.
    assert_eq!(p.bet("b1", "uk-p1", "r1", "slot-1", "1.00").await, ok("9.00"));
}

macro_rules! conformance {
    ($($scenario:ident),* $(,)?) => {
        mod seamless_v1 {
            $(#[tokio::test] async fn $scenario() { super::$scenario(super::Dialect::Seamless).await })*
        }
        mod pulse {
            $(#[tokio::test] async fn $scenario() { super::$scenario(super::Dialect::Pulse).await })*
        }
    };
}

/// A win is bounded by the currency's maximum amount, and by the game's maximum multiplier when
/// it has one; an amount no check bounded used to panic the writer (seamless) or the handler
/// after the money moved (pulse's minor units).
async fn wins_are_bounded(d: Dialect) {
    let cell = cell_with_player("uk-p1", "50.00").await;
    let p = Provider::new(d, false, cell.client());
    assert_eq!(p.bet("b1", "uk-p1", "r1", "live-1", "10.00").await, ok("40.00"));
    assert_eq!(p.win("w1", "uk-p1", "r1", "1000000000000.00", false).await, refused("AMOUNT_TOO_LARGE"));
    let largest = match d {
        Dialect::Seamless => {
            let body = json!({ "transactionId": "w2", "playerId": "uk-p1", "roundId": "r1", "amount": "79228162514264337593543950335", "currency": "GBP", "closeRound": false });
            p.send_signed("win", body, SECRET, 0).await
        }
        Dialect::Pulse => {
            let body = json!({ "txId": "w2", "customerId": "uk-p1", "roundRef": "r1", "amountMinor": i64::MAX, "currencyCode": "GBP" });
            p.send_signed("credit", body, SECRET, 0).await
        }
    };
    assert_eq!(p.outcome(&largest), refused("AMOUNT_TOO_LARGE"));
    // The player's calls are still answered, with the balance unchanged.
    assert_eq!(p.balance("uk-p1").await, ok("40.00"));
    assert_eq!(p.end_round("uk-p1", "r1").await, ok("40.00"));
    // A game with a maximum multiplier of 10: a 2.00 bet wins at most 20.00 in all.
    assert_eq!(p.bet("b3", "uk-p1", "r2", "capped-1", "2.00").await, ok("38.00"));
    assert_eq!(p.win("w3", "uk-p1", "r2", "20.00", false).await, ok("58.00"));
    assert_eq!(p.win("w4", "uk-p1", "r2", "0.01", false).await, refused("WIN_LIMIT_EXCEEDED"));
    assert_eq!(p.end_round("uk-p1", "r2").await, ok("58.00"));
    books_balance_and_chain_verifies(&cell.client()).await;
}

conformance!(
    wins_are_bounded,
    round_trip,
    duplicates,
    out_of_order,
    late_win_after_timeout,
    a_timed_out_round_settles_a_reported_result,
    timeouts_with_retries,
    bad_signatures
);

// ---- what only the gaming domain does ---------------------------------------------------------

#[tokio::test]
async fn uk_stake_limits_by_age_and_product() {
    let cell = cell_with_player("uk-adult", "50.00").await;
    let c = cell.client();
    let young = (chrono::Utc::now().date_naive() - chrono::Days::new(20 * 366)).to_string();
    assert_eq!(c.register("uk-young", &young, "GB", "GBP").await.status, 201);
    assert_eq!(c.credit("uk-young", "50.00", "seed-young").await.status, 200);
    let p = Provider::new(Dialect::Seamless, false, c);

    assert_eq!(p.bet("a1", "uk-adult", "r1", "slot-1", "5.00").await, ok("45.00"));
    let over = p.bet_reply("a2", "uk-adult", "r2", "slot-1", "5.01").await;
    assert_eq!((over.status, over.code().as_str()), (422, "STAKE_LIMIT_EXCEEDED"));
    let message = over.json()["message"].as_str().unwrap().to_owned();
    assert!(message.contains("UKGC-SLOT-STAKE-25PLUS") && message.contains("uk-2026-12-06"), "{message}");

    // 18 to 24: £2 on slots; the slot rules do not cover a live game.
    assert_eq!(p.bet("y1", "uk-young", "r3", "slot-1", "2.00").await, ok("48.00"));
    let young_over = p.bet_reply("y2", "uk-young", "r4", "slot-1", "2.50").await;
    assert_eq!(young_over.code(), "STAKE_LIMIT_EXCEEDED");
    assert!(young_over.json()["message"].as_str().unwrap().contains("UKGC-SLOT-STAKE-18-24"));
    assert_eq!(p.bet("y3", "uk-young", "r5", "live-1", "10.00").await, ok("38.00"));
    // The cap is per spin: two stakes in one slot round count together.
    assert_eq!(p.bet("a3", "uk-adult", "r7", "slot-1", "3.00").await, ok("42.00"));
    assert_eq!(p.bet("a4", "uk-adult", "r7", "slot-1", "3.00").await, refused("STAKE_LIMIT_EXCEEDED"));
    assert_eq!(p.bet("a5", "uk-adult", "r7", "slot-1", "2.00").await, ok("40.00"));
    // A game the provider file does not list counts as a slot.
    assert_eq!(p.bet("y4", "uk-young", "r6", "mystery-game", "3.00").await, refused("STAKE_LIMIT_EXCEEDED"));
    assert_eq!(c.balance("uk-young").await["cash"], "38.00");
}

#[tokio::test]
async fn maintenance_stops_new_bets_of_one_provider_only() {
    let cell = cell_with_player("uk-p1", "20.00").await;
    let c = cell.client();
    let demo = Provider::new(Dialect::Seamless, false, c);
    let pulsar = Provider::new(Dialect::Pulse, false, c);
    assert_eq!(demo.bet("b1", "uk-p1", "r1", "slot-1", "1.00").await, ok("19.00"));
    assert_eq!(demo.bet("b2", "uk-p1", "r2", "slot-1", "1.00").await, ok("18.00"));

    let set = c
        .raw(
            "POST",
            "/ops/providers/demo/maintenance",
            &[],
            json!({ "maintenance": true, "reason": "provider incident 42" }).to_string().into_bytes(),
        )
        .await
        .unwrap();
    assert_eq!(set.status, 200, "{:?}", set.body);
    assert_eq!(set.json()["maintenance"], true);

    let refused_bet = demo.bet_reply("b3", "uk-p1", "r3", "slot-1", "1.00").await;
    assert_eq!((refused_bet.status, refused_bet.code().as_str()), (503, "PROVIDER_MAINTENANCE"));
    // A retry of a bet accepted before maintenance gets its original answer, not a 503.
    let retried = demo.bet_reply("b2", "uk-p1", "r2", "slot-1", "1.00").await;
    assert_eq!((retried.status, retried.header("idempotent-replay")), (200, Some("true")));
    // No money is stuck: its wins and rollbacks still settle.
    assert_eq!(demo.win("w1", "uk-p1", "r1", "3.00", true).await, ok("21.00"));
    assert_eq!(demo.rollback("rb2", "uk-p1", "r2", "b2").await, ok("22.00"));
    // Every other provider is untouched.
    assert_eq!(pulsar.bet("p1", "uk-p1", "r9", "slot-1", "1.00").await, ok("21.00"));

    let listed = c.get("/ops/providers").await.json();
    let demo_state = listed.as_array().unwrap().iter().find(|p| p["provider"] == "demo").unwrap().clone();
    assert_eq!(demo_state["maintenance"], true);
    assert_eq!(demo_state["reason"], "provider incident 42");
    let unknown = c
        .raw(
            "POST",
            "/ops/providers/nope/maintenance",
            &[],
            json!({ "maintenance": true, "reason": "x" }).to_string().into_bytes(),
        )
        .await
        .unwrap();
    assert_eq!((unknown.status, unknown.code().as_str()), (404, "PROVIDER_NOT_FOUND"));

    // Maintenance survives a restart; taking it out lets bets in again.
    let mut cell = cell;
    cell.restart("uk").await;
    let demo = Provider::new(Dialect::Seamless, false, cell.client());
    assert_eq!(demo.bet("b4", "uk-p1", "r4", "slot-1", "1.00").await, refused("PROVIDER_MAINTENANCE"));
    let c = cell.client();
    c.raw(
        "POST",
        "/ops/providers/demo/maintenance",
        &[],
        json!({ "maintenance": false, "reason": "fixed" }).to_string().into_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(demo.bet("b4", "uk-p1", "r4", "slot-1", "1.00").await, ok("20.00"));
}

#[tokio::test]
async fn a_live_table_round_with_several_players() {
    let cell = cell_with_player("uk-a", "10.00").await;
    let c = cell.client();
    assert_eq!(c.register("uk-b", ADULT, "GB", "GBP").await.status, 201);
    assert_eq!(c.credit("uk-b", "10.00", "seed-b").await.status, 200);
    let p = Provider::new(Dialect::Seamless, false, c);
    assert_eq!(p.bet("a1", "uk-a", "table-7", "live-1", "1.00").await, ok("9.00"));
    assert_eq!(p.bet("a2", "uk-a", "table-7", "live-1", "2.00").await, ok("7.00"));
    assert_eq!(p.bet("b1", "uk-b", "table-7", "live-1", "4.00").await, ok("6.00"));
    // A wins 6.00 on both bets; B's bet stays open and can still be paid.
    assert_eq!(p.win("wa", "uk-a", "table-7", "6.00", true).await, ok("13.00"));
    assert_eq!(c.balance("uk-b").await["held"], "4.00");
    assert_eq!(p.bet("a3", "uk-a", "table-7", "live-1", "1.00").await, refused("ROUND_ALREADY_SETTLED"));
    assert_eq!(p.win("wb", "uk-b", "table-7", "0.00", true).await, ok("6.00"));
    let settled = events_named(&c, "round.settled").await;
    assert_eq!(settled.len(), 2);
    assert_eq!(settled[0]["payload"]["parts"][0]["betIds"], json!(["a1", "a2"]));
    assert_eq!(settled[0]["payload"]["parts"][0]["stake"], "3.00");
    books_balance_and_chain_verifies(&c).await;
}

#[tokio::test]
async fn unknown_provider_and_call() {
    let cell = cell_with_player("uk-p1", "10.00").await;
    let c = cell.client();
    let r = c.raw("POST", "/gaming/nobody/bet", &[], b"{}".to_vec()).await.unwrap();
    assert_eq!((r.status, r.code().as_str()), (404, "PROVIDER_NOT_FOUND"));
    let p = Provider::new(Dialect::Seamless, false, c);
    let r = p.send_signed("jackpot", json!({}), SECRET, 0).await;
    assert_eq!((r.status, r.code().as_str()), (404, "UNKNOWN_CALL"));
    let r = p.send_signed("bet", json!({ "transactionId": "x" }), SECRET, 0).await;
    assert_eq!((r.status, r.code().as_str()), (400, "INVALID_REQUEST"));
}

/// An amount written with fewer places than its currency has is the same amount: a retry that
/// writes it another way replays the original answer instead of being refused as another request.
#[tokio::test]
async fn a_retry_may_write_the_amount_with_other_places() {
    let cell = cell_with_player("uk-p1", "10.00").await;
    let p = Provider::new(Dialect::Seamless, false, cell.client());
    let first = p.bet_reply("b1", "uk-p1", "r1", "slot-1", "1").await;
    assert_eq!((first.status, first.json()["balance"].clone()), (200, json!("9.00")));
    for amount in ["1.00", "1.0"] {
        let again = p.bet_reply("b1", "uk-p1", "r1", "slot-1", amount).await;
        assert_eq!((again.status, again.json()), (200, first.json()), "bet of {amount}");
        assert_eq!(again.header("idempotent-replay"), Some("true"), "bet of {amount}");
    }
    // More places than the currency has are bad input, as they were; another value is another
    // request.
    assert_eq!(p.bet("b1", "uk-p1", "r1", "slot-1", "1.001").await, refused("AMOUNT_SCALE"));
    assert_eq!(p.bet("b1", "uk-p1", "r1", "slot-1", "1.01").await, refused("TRANSACTION_ID_REUSED"));
    assert_eq!(p.win("w1", "uk-p1", "r1", "3.5", true).await, ok("12.50"));
    assert_eq!(p.win("w1", "uk-p1", "r1", "3.50", true).await, ok("12.50"));
    assert_eq!(p.balance("uk-p1").await, ok("12.50"));
    assert_eq!(events_named(&cell.client(), "bet.placed").await.len(), 1);
    books_balance_and_chain_verifies(&cell.client()).await;
}

/// A provider whose secret this cell lacks is listed as not configured, and each of its calls is
/// refused before anything is read or written; the others serve as usual.
#[tokio::test]
async fn a_provider_without_its_secret_is_listed_and_refused() {
    let dir = tempfile::tempdir().unwrap();
    write_provider_file(dir.path(), "demo", "seamless-v1", 300, "replay", SECRET_ENV);
    write_provider_file(dir.path(), "nosecret", "seamless-v1", 300, "replay", "UNSET_PROVIDER_SECRET");
    let cell = TestCell::start_with_providers("uk", load_providers(dir.path())).await;
    let c = cell.client();
    assert_eq!(c.register("uk-p1", ADULT, "GB", "GBP").await.status, 201);
    assert_eq!(c.credit("uk-p1", "10.00", "seed-uk-p1").await.status, 200);

    let listed = c.get("/ops/providers").await.json();
    let configured =
        |id: &str| listed.as_array().unwrap().iter().find(|p| p["provider"] == id).unwrap()["configured"].clone();
    assert_eq!((configured("demo"), configured("nosecret")), (json!(true), json!(false)));

    let unconfigured = Provider { dialect: Dialect::Seamless, id: "nosecret", client: c };
    let r = unconfigured.bet_reply("b1", "uk-p1", "r1", "slot-1", "1.00").await;
    assert_eq!((r.status, r.code().as_str()), (503, "PROVIDER_NOT_CONFIGURED"));
    let demo = Provider::new(Dialect::Seamless, false, c);
    assert_eq!(demo.bet("b1", "uk-p1", "r1", "slot-1", "1.00").await, ok("9.00"));
    books_balance_and_chain_verifies(&c).await;
}

/// Time is an input: a round left open is voided once the cell's clock passes its provider's
/// timeout, with the clock moved ten minutes on rather than waited for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_times_out_when_the_clock_moves_past_it_without_waiting() {
    let clock = cell::clock::ManualClock::new(chrono::Utc::now());
    let intervals = cell::server::Intervals {
        round_sweep: Duration::from_millis(100),
        audit_checkpoint: Duration::from_secs(60),
        ..Default::default()
    };
    let cell = TestCell::start_with_clock("uk", providers(), intervals, clock.clone()).await;
    let c = cell.client();
    assert_eq!(c.register("uk-p1", ADULT, "GB", "GBP").await.status, 201);
    assert_eq!(c.credit("uk-p1", "10.00", "seed").await.status, 200);
    let p = Provider::new(Dialect::Seamless, false, cell.client());
    assert_eq!(p.bet("b1", "uk-p1", "r1", "live-1", "4.00").await, ok("6.00"));
    // The demo provider's timeout is 300 s: a few sweeps later nothing has moved.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(c.balance("uk-p1").await["held"], "4.00");
    clock.advance(chrono::Duration::minutes(10));
    let mut voided = false;
    for _ in 0..50 {
        if c.balance("uk-p1").await["held"] == "0.00" {
            voided = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(voided, "the sweeper voids the round once the clock is past its timeout");
    assert_eq!(c.balance("uk-p1").await["cash"], "10.00");
    let settled = events_named(&c, "round.settled").await;
    assert_eq!(settled[0]["payload"]["status"], "VOIDED");
}
