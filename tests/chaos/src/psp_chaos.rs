//! The `psp-chaos` drill: players of one jurisdiction deposit through the sandbox's card PSP while
//! every notification fault it has takes its turn (duplicated, overtaking the API's answers, late,
//! about an unknown payment, badly signed, a capture answered 500) and the cell is killed with
//! `kill -9` halfway; they pay in through their bank too; then they withdraw to the card and the
//! bank account, on and off the closed loop, one payout failing after the PSP accepted it; then
//! two card holders dispute a deposit, one past the player's cash. Checked: every payment the
//! PSPs captured is credited exactly once, and nothing they did not; no withdrawal was paid
//! without passing its checks; the failed payout's money came back once; each chargeback is one
//! compensating entry; each player's cash less their debt is what their payments say; the day
//! reconciles with both PSPs' settlement reports.

use crate::client::{Http, Reply};
use crate::load::{profile, COUNTRY_ADDRESSES, DRILL_PASSWORD};
use crate::platform::{Platform, Role};
use crate::report::{Check, Report};
use anyhow::{bail, Context};
use contracts::events::EventPage;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// The faults deposits take turns under (`capture-500` is the `card-capture` party's).
const MODES: [&str; 6] = ["duplicate", "reorder", "late", "unknown", "bad-signature", "capture-500"];
/// Longest the drill waits for the PSP's word on every payment.
const SETTLE_WAIT_MAX: Duration = Duration::from_secs(60);

/// One drill player: id and session token.
struct Payer {
    id: String,
    token: String,
}

pub async fn run(platform: &mut Platform, target: &str, quick: bool, report: &mut Report) -> anyhow::Result<()> {
    let region = platform.regions.iter().find(|r| r.cell_id == target).context("the target's region")?.clone();
    let country = region.licensed_countries[0].as_str().to_owned();
    let ip = COUNTRY_ADDRESSES.iter().find(|(c, _)| *c == country).map(|(_, ip)| *ip).context("a test address")?;
    let currency = region.default_currency.code();
    let router = platform.url(&Role::Router);
    let sandbox = platform.url(&Role::Sandbox);
    let cell = Role::Primary(target.to_owned());
    let (players, deposits_each) = if quick { (3, 4) } else { (8, 6) };
    let http = platform.http.clone();
    let http = &http;

    let mut payers = Vec::new();
    for n in 0..players {
        let id = format!("{target}-psp-{n}-{}", rand::random::<u32>());
        payers.push(register(http, &router, ip, &id, target, &country, currency).await?);
    }
    report.step(format!("{players} players of {target} registered and verified"));

    let mut deposits: Vec<(String, String)> = Vec::new();
    let total = players * deposits_each;
    for k in 0..total {
        if k == total / 2 {
            let pid = platform.process(&cell)?.pid().unwrap_or(0);
            platform.kill9(&cell)?;
            report.fault(format!("kill -9 cell {target} (pid {pid}) with notifications in flight"));
            platform.restart(&cell).await?;
            report.step(format!("cell {target} restarted on the same data, ready"));
        }
        let payer = &payers[k % players];
        let mode = MODES[k % MODES.len()];
        let fault = match mode {
            "capture-500" => json!({ "party": "card-capture", "status": 500 }),
            mode => json!({ "party": "card-webhook", "mode": mode, "latencyMs": 700 }),
        };
        admin(http, &sandbox, "POST", "/admin/faults", Some(fault)).await?;
        let amount = format!("{}.{:02}", 10 + k, k % 100);
        let body = json!({ "playerId": payer.id, "psp": "card", "amount": amount, "currency": currency, "paymentMethod": "card:tok_visa_4242" });
        let key = format!("{}-d{k}", payer.id);
        let reply = until_answered(http, &router, ip, payer, "/cashier/deposits", body, &key).await?;
        if reply.status != 201 {
            bail!("deposit {k} under {mode}: {} {}", reply.status, reply.text());
        }
        deposits.push((payer.id.clone(), reply.json()["id"].as_str().unwrap_or_default().to_owned()));
        tokio::time::sleep(Duration::from_millis(300)).await;
        admin(http, &sandbox, "DELETE", "/admin/faults", None).await?;
    }
    report.step(format!("{total} deposits asked for, each under a fault: {}", MODES.join(", ")));
    // Each player also pays in through their bank, and approves the pay-in there.
    for payer in &payers {
        let method = bank_account(payer);
        let body = json!({ "playerId": payer.id, "psp": "bank", "amount": "30.00", "currency": currency, "paymentMethod": method });
        let key = format!("{}-bank", payer.id);
        let reply = until_answered(http, &router, ip, payer, "/cashier/deposits", body, &key).await?;
        if reply.status != 201 {
            bail!("bank deposit of {}: {} {}", payer.id, reply.status, reply.text());
        }
        approve_at_bank(http, &sandbox, &reply).await?;
        deposits.push((payer.id.clone(), reply.json()["id"].as_str().unwrap_or_default().to_owned()));
    }
    let settled = settle(http, &router, ip, &payers).await?;
    report.step(format!("{players} bank pay-ins approved; every deposit settled: {settled:?}"));

    // Withdrawals: on the closed loop to the card and to the bank account (paid out), off it
    // (waits for the finance role, never paid); the first player's card payout is accepted by
    // the PSP and then fails (the money must come back).
    for (n, payer) in payers.iter().enumerate() {
        let failing = n == 0;
        if failing {
            admin(http, &sandbox, "POST", "/admin/faults", Some(json!({ "party": "card-payout", "mode": "fail" })))
                .await?;
        }
        let bank = bank_account(payer);
        for (psp, method, key) in
            [("card", "card:tok_visa_4242", "on"), ("card", "card:tok_elsewhere_9999", "off"), ("bank", &bank, "bank")]
        {
            let body = json!({ "playerId": payer.id, "psp": psp, "amount": "1.00", "currency": currency, "paymentMethod": method });
            let key = format!("{}-w{n}{key}", payer.id);
            let reply = until_answered(http, &router, ip, payer, "/cashier/withdrawals", body, &key).await?;
            if reply.status != 201 {
                bail!("withdrawal {key} of {}: {} {}", payer.id, reply.status, reply.text());
            }
            if failing && key.ends_with("on") {
                settle(http, &router, ip, std::slice::from_ref(payer)).await?;
                admin(http, &sandbox, "DELETE", "/admin/faults", None).await?;
            }
        }
    }
    let settled = settle(http, &router, ip, &payers).await?;
    report.step(format!("withdrawals asked for and settled (one payout failed after being accepted): {settled:?}"));

    // Chargebacks: the first player's card holder disputes a deposit their cash covers; the last
    // player first withdraws all but 1.00 of their cash, so theirs becomes debt.
    let last = payers.last().context("a player")?;
    let cash = balance(platform, &cell, &last.id).await?.0;
    let rest = cash - rust_decimal::Decimal::ONE;
    if rest > rust_decimal::Decimal::ZERO {
        let body = json!({ "playerId": last.id, "psp": "card", "amount": rest.to_string(), "currency": currency, "paymentMethod": "card:tok_visa_4242" });
        let reply =
            until_answered(http, &router, ip, last, "/cashier/withdrawals", body, &format!("{}-wall", last.id)).await?;
        if reply.status != 201 {
            bail!("{} withdrawing {rest}: {} {}", last.id, reply.status, reply.text());
        }
        settle(http, &router, ip, std::slice::from_ref(last)).await?;
    }
    let mut disputed = Vec::new();
    for payer in [&payers[0], last] {
        let payment = largest_card_deposit(http, &router, ip, payer).await?;
        let reference = payment["pspReference"].as_str().context("a captured deposit's PSP reference")?;
        admin(http, &sandbox, "POST", "/admin/psp/chargeback", Some(json!({ "pspReference": reference }))).await?;
        disputed.push(payment["id"].as_str().unwrap_or_default().to_owned());
    }
    charged_back(http, &router, ip, &payers, &disputed).await?;
    report.step(format!("{} deposits charged back by the card holders (one past the player's cash)", disputed.len()));

    // What the PSPs took, against what the cell credited.
    let card_reply = http.send(None, "GET", &format!("{sandbox}/admin/psp/payments"), &[], None).await?;
    let bank_reply = http.send(None, "GET", &format!("{sandbox}/admin/psp/bank"), &[], None).await?;
    let card_captured = card_reply.json()["payments"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["captured"] == true)
        .filter_map(|p| p["merchantReference"].as_str().map(str::to_owned))
        .collect::<Vec<_>>();
    let bank_settled = bank_reply.json()["payins"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["decided"] == true)
        .filter_map(|p| p["merchantReference"].as_str().map(str::to_owned))
        .collect::<Vec<_>>();
    let captured_at_psp: BTreeSet<String> =
        card_captured.into_iter().chain(bank_settled).filter(|r| deposits.iter().any(|(_, id)| id == r)).collect();
    let events = events(platform, &cell).await?;
    let mut count: BTreeMap<(&str, String), u32> = BTreeMap::new();
    for (name, payload) in &events {
        let id = payload["paymentId"].as_str().unwrap_or_default().to_owned();
        *count.entry((name.as_str(), id)).or_default() += 1;
    }
    let times = |event: &str, id: &str| count.get(&(event, id.to_owned())).copied().unwrap_or(0);
    let ids_of = |event: &str| count.keys().filter(|(e, _)| *e == event).map(|(_, id)| id.clone()).collect::<Vec<_>>();
    let mut problems = Vec::new();
    for id in &captured_at_psp {
        match times("payment.confirmed", id) {
            1 => {}
            0 => problems.push(format!("{id} captured by the PSP, never credited")),
            n => problems.push(format!("{id} captured once, credited {n} times")),
        }
    }
    let confirmed = ids_of("payment.confirmed");
    for id in confirmed.iter().filter(|id| !captured_at_psp.contains(*id) && deposits.iter().any(|(_, d)| d == *id)) {
        problems.push(format!("{id} credited, never captured by the PSP"));
    }
    report.check(Check::new(
        "every PSP-captured payment is credited exactly once, and nothing else",
        problems,
        format!(
            "{} payments captured at the PSPs (card and bank), {} credited",
            captured_at_psp.len(),
            confirmed.len()
        ),
    ));
    let paid = ids_of("payout.paid");
    let unchecked: Vec<String> = paid.iter().filter(|id| times("payout.approved", id) != 1).cloned().collect();
    report.check(Check::new(
        "no withdrawal was paid without passing its checks",
        unchecked,
        format!(
            "{} paid, each approved first; {} withdrawals off the closed loop wait for finance",
            paid.len(),
            players
        ),
    ));
    let failed = ids_of("payout.failed");
    let mut problems: Vec<String> = failed
        .iter()
        .filter(|id| times("payout.failed", id) != 1 || times("payout.paid", id) != 0)
        .map(|id| format!("{id}: failed {} times, paid {} times", times("payout.failed", id), times("payout.paid", id)))
        .collect();
    if failed.is_empty() {
        problems.push("the PSP's failed payout never reached the cell".into());
    }
    report.check(Check::new(
        "a payout the PSP failed after accepting it gave the money back once",
        problems,
        format!("{} payout failed, its amount returned to the player's cash", failed.len()),
    ));
    let problems: Vec<String> = disputed
        .iter()
        .filter(|id| times("chargeback.received", id) != 1)
        .map(|id| format!("{id}: charged back {} times", times("chargeback.received", id)))
        .collect();
    report.check(Check::new(
        "every chargeback is one compensating entry",
        problems,
        format!("{} chargebacks, each booked once", disputed.len()),
    ));
    let mut problems = Vec::new();
    let mut owing = 0;
    for payer in &payers {
        let (cash, debt) = balance(platform, &cell, &payer.id).await?;
        let expected = expected_balance(http, &router, ip, payer).await?;
        if cash - debt != expected {
            problems.push(format!("{}: cash {cash} and debt {debt}, but the payments say {expected}", payer.id));
        }
        owing += u32::from(debt > rust_decimal::Decimal::ZERO);
    }
    if owing == 0 {
        problems.push("no player owes after a chargeback past their cash".into());
    }
    report.check(Check::new(
        "every player's cash less their debt is what their payments say",
        problems,
        format!("{players} players; {owing} owing after a chargeback past their cash"),
    ));
    let today = chrono::Utc::now().date_naive();
    let (mut differences, mut matched) = (Vec::new(), 0);
    for psp in ["card", "bank"] {
        let recon = platform.get(&cell, &format!("/ops/reconciliation?psp={psp}&date={today}")).await?;
        if recon.status != 200 {
            bail!("reconciliation of {psp}: {} {}", recon.status, recon.text());
        }
        matched += recon.json()["matched"].as_u64().unwrap_or(0);
        differences.extend(recon.json()["differences"].as_array().into_iter().flatten().map(|d| format!("{psp}: {d}")));
    }
    report.check(Check::new(
        "the day reconciles with both PSPs' settlement reports",
        differences,
        format!("{matched} lines matched (card and bank)"),
    ));
    Ok(())
}

/// The bank account a drill player pays in from and is paid out to.
fn bank_account(payer: &Payer) -> String {
    format!("bank:acct_{}", payer.id)
}

/// The player, at their bank, approves the pay-in `created` answered.
async fn approve_at_bank(http: &Http, sandbox: &str, created: &Reply) -> anyhow::Result<()> {
    let redirect = created.json()["redirectUrl"].as_str().context("a bank redirect")?.to_owned();
    let path = redirect.split_once("://").and_then(|(_, rest)| rest.split_once('/')).map(|(_, p)| format!("/{p}"));
    let reply = http.send(None, "GET", &format!("{sandbox}{}", path.unwrap_or_default()), &[], None).await?;
    if reply.status != 200 {
        bail!("the bank's approval page: {} {}", reply.status, reply.text());
    }
    Ok(())
}

/// A player's payments, as they see them.
async fn payments(http: &Http, router: &str, ip: &str, payer: &Payer) -> anyhow::Result<Vec<Value>> {
    let path = format!("/cashier/players/{}/transactions", payer.id);
    let list = as_player(http, router, ip, payer, "GET", &path, None, None).await?;
    if list.status != 200 {
        bail!("{}'s payments: {} {}", payer.id, list.status, list.text());
    }
    Ok(list.json()["payments"].as_array().cloned().unwrap_or_default())
}

fn amount_of(payment: &Value) -> rust_decimal::Decimal {
    payment["amount"].as_str().and_then(|a| a.parse().ok()).unwrap_or_default()
}

/// The player's captured card deposit of the largest amount.
async fn largest_card_deposit(http: &Http, router: &str, ip: &str, payer: &Payer) -> anyhow::Result<Value> {
    let list = payments(http, router, ip, payer).await?;
    list.into_iter()
        .filter(|p| p["kind"] == "deposit" && p["psp"] == "card" && p["status"] == "captured")
        .max_by_key(amount_of)
        .with_context(|| format!("{} has no captured card deposit", payer.id))
}

/// What a player's cash less their debt must be: their captured deposits, less their withdrawals
/// still held or paid (a failed, rejected or cancelled one came back; a charged-back deposit went).
async fn expected_balance(http: &Http, router: &str, ip: &str, payer: &Payer) -> anyhow::Result<rust_decimal::Decimal> {
    let mut sum = rust_decimal::Decimal::ZERO;
    for p in payments(http, router, ip, payer).await? {
        match (p["kind"].as_str(), p["status"].as_str()) {
            (Some("deposit"), Some("captured")) => sum += amount_of(&p),
            (Some("withdrawal"), Some("pending_approval" | "approved" | "paid")) => sum -= amount_of(&p),
            _ => {}
        }
    }
    Ok(sum)
}

/// A player's cash and debt, as the cell's books hold them.
async fn balance(
    platform: &Platform,
    cell: &Role,
    player: &str,
) -> anyhow::Result<(rust_decimal::Decimal, rust_decimal::Decimal)> {
    let reply = platform.get(cell, &format!("/ops/players/{player}/balance")).await?;
    if reply.status != 200 {
        bail!("{player}'s balance: {} {}", reply.status, reply.text());
    }
    let field = |name: &str| reply.json()[name].as_str().and_then(|a| a.parse().ok()).unwrap_or_default();
    Ok((field("cash"), field("debt")))
}

/// Waits until every payment of `ids` is charged back.
async fn charged_back(http: &Http, router: &str, ip: &str, payers: &[Payer], ids: &[String]) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + SETTLE_WAIT_MAX;
    loop {
        let mut done = 0;
        for payer in payers {
            done += payments(http, router, ip, payer)
                .await?
                .iter()
                .filter(|p| p["status"] == "charged_back" && ids.iter().any(|id| p["id"] == id.as_str()))
                .count();
        }
        if done == ids.len() {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("{done} of {} chargebacks booked after {SETTLE_WAIT_MAX:?}", ids.len());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn register(
    http: &Http,
    router: &str,
    ip: &str,
    id: &str,
    cell: &str,
    country: &str,
    currency: &str,
) -> anyhow::Result<Payer> {
    let body = json!({
        "playerId": id, "dateOfBirth": "1990-04-01", "country": country, "currency": currency,
        "password": DRILL_PASSWORD, "profile": profile(id, cell, country, false, false)
    });
    let key = format!("{id}-reg");
    let headers = [("x-forwarded-for", ip), ("x-idempotency-key", key.as_str())];
    let reply =
        http.send(None, "POST", &format!("{router}/players"), &headers, Some(body.to_string().into_bytes())).await?;
    if reply.status != 201 {
        bail!("register {id}: {} {}", reply.status, reply.text());
    }
    let login = json!({ "playerId": id, "password": DRILL_PASSWORD }).to_string().into_bytes();
    let reply = http.send(None, "POST", &format!("{router}/sessions"), &[("x-forwarded-for", ip)], Some(login)).await?;
    let token = reply.json()["accessToken"].as_str().context("a login token")?.to_owned();
    let payer = Payer { id: id.to_owned(), token };
    // Deposit limits for every period (Sweden takes no deposit before them).
    let changes: Vec<Value> = ["day", "week", "month"]
        .iter()
        .map(|period| json!({ "kind": "deposit", "period": period, "amount": "100000.00" }))
        .collect();
    let limits = json!({ "changes": changes });
    let set = as_player(http, router, ip, &payer, "PUT", &format!("/players/{id}/limits"), Some(limits), None).await?;
    if set.status != 200 {
        bail!("{id}'s limits: {} {}", set.status, set.text());
    }
    let deadline = tokio::time::Instant::now() + SETTLE_WAIT_MAX;
    loop {
        let kyc = as_player(http, router, ip, &payer, "GET", &format!("/players/{id}/kyc"), None, None).await?;
        if kyc.json()["status"] == "verified" {
            return Ok(payer);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("{id}'s identity check never completed: {}", kyc.text());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[allow(clippy::too_many_arguments)]
async fn as_player(
    http: &Http,
    router: &str,
    ip: &str,
    payer: &Payer,
    method: &str,
    path: &str,
    body: Option<Value>,
    key: Option<&str>,
) -> anyhow::Result<Reply> {
    let bearer = format!("Bearer {}", payer.token);
    let mut headers =
        vec![("x-forwarded-for", ip), ("authorization", bearer.as_str()), ("content-type", "application/json")];
    if let Some(key) = key {
        headers.push(("x-idempotency-key", key));
    }
    let body = body.map(|b| b.to_string().into_bytes());
    http.send(None, method, &format!("{router}{path}"), &headers, body).await
}

/// Sends a player's write until the cell answers it (with its idempotency key, so a retry after
/// a cell restart has one effect): 502 and 503 mean try again.
async fn until_answered(
    http: &Http,
    router: &str,
    ip: &str,
    payer: &Payer,
    path: &str,
    body: Value,
    key: &str,
) -> anyhow::Result<Reply> {
    let deadline = tokio::time::Instant::now() + SETTLE_WAIT_MAX;
    loop {
        let reply = as_player(http, router, ip, payer, "POST", path, Some(body.clone()), Some(key)).await;
        match reply {
            Ok(reply) if !matches!(reply.status, 502 | 503) => return Ok(reply),
            _ if tokio::time::Instant::now() > deadline => bail!("{path} for {} never answered", payer.id),
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

async fn admin(http: &Http, sandbox: &str, method: &str, path: &str, body: Option<Value>) -> anyhow::Result<()> {
    let headers = [("content-type", "application/json")];
    let body = body.map(|b| b.to_string().into_bytes());
    let reply = http.send(None, method, &format!("{sandbox}{path}"), &headers, body).await?;
    if reply.status != 204 {
        bail!("sandbox {method} {path}: {} {}", reply.status, reply.text());
    }
    Ok(())
}

/// Waits until none of the players' payments waits for the PSP: their statuses, counted.
async fn settle(http: &Http, router: &str, ip: &str, payers: &[Payer]) -> anyhow::Result<BTreeMap<String, u32>> {
    let deadline = tokio::time::Instant::now() + SETTLE_WAIT_MAX;
    loop {
        let mut statuses: BTreeMap<String, u32> = BTreeMap::new();
        for payer in payers {
            let path = format!("/cashier/players/{}/transactions", payer.id);
            let Ok(list) = as_player(http, router, ip, payer, "GET", &path, None, None).await else {
                statuses.insert("unreachable".into(), 1);
                continue;
            };
            for p in list.json()["payments"].as_array().into_iter().flatten() {
                *statuses.entry(p["status"].as_str().unwrap_or("?").to_owned()).or_default() += 1;
            }
        }
        let waiting = ["pending", "authorised", "approved", "unreachable"].iter().any(|s| statuses.contains_key(*s));
        if !waiting {
            return Ok(statuses);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("payments still waiting for the PSP after {SETTLE_WAIT_MAX:?}: {statuses:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every event of the cell: (name, payload).
async fn events(platform: &Platform, cell: &Role) -> anyhow::Result<Vec<(String, Value)>> {
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let path = match &after {
            Some(cursor) => format!("/events?limit=1000&after={cursor}"),
            None => "/events?limit=1000".to_owned(),
        };
        let reply = platform.get(cell, &path).await?;
        let page: EventPage = serde_json::from_slice(&reply.body).context("an events page")?;
        if page.events.is_empty() {
            return Ok(all);
        }
        all.extend(page.events.into_iter().map(|e| (e.envelope.event, e.envelope.payload)));
        after = page.next;
    }
}

/// What `drill up --traffic`'s cashier players did so far.
#[derive(Default)]
pub struct CashierTraffic {
    pub card_deposits: std::sync::atomic::AtomicU64,
    pub bank_deposits: std::sync::atomic::AtomicU64,
    pub withdrawals_paid: std::sync::atomic::AtomicU64,
    pub errors: std::sync::atomic::AtomicU64,
    pub last_error: std::sync::Mutex<Option<String>>,
}

impl CashierTraffic {
    /// One line for the status screen.
    pub fn line(&self) -> String {
        use std::sync::atomic::Ordering::Relaxed;
        let last = self.last_error.lock().map(|e| e.clone()).unwrap_or_default();
        format!(
            "cashier: {} card deposits, {} bank deposits, {} withdrawals paid, {} errors{}",
            self.card_deposits.load(Relaxed),
            self.bank_deposits.load(Relaxed),
            self.withdrawals_paid.load(Relaxed),
            self.errors.load(Relaxed),
            last.map(|e| format!(" (last: {e})")).unwrap_or_default()
        )
    }
}

/// `drill up --traffic`'s cashier: every few seconds a new player of a random jurisdiction pays in
/// by card and through their bank (approving the redirect), then withdraws to the card, through
/// the router, until the task is aborted.
pub fn spawn_traffic(
    http: Http,
    router: String,
    sandbox: String,
    regions: Vec<contracts::region::RegionConfig>,
) -> (tokio::task::JoinHandle<()>, std::sync::Arc<CashierTraffic>) {
    use std::sync::atomic::Ordering::Relaxed;
    let traffic = std::sync::Arc::new(CashierTraffic::default());
    let counters = traffic.clone();
    let task = tokio::spawn(async move {
        for n in 0u64.. {
            let region = &regions[usize::try_from(n).unwrap_or(0) % regions.len()];
            if let Err(e) = journey(&http, &router, &sandbox, region, n, &counters).await {
                counters.errors.fetch_add(1, Relaxed);
                if let Ok(mut last) = counters.last_error.lock() {
                    *last = Some(format!("{e:#}"));
                }
            }
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
    });
    (task, traffic)
}

async fn journey(
    http: &Http,
    router: &str,
    sandbox: &str,
    region: &contracts::region::RegionConfig,
    n: u64,
    counters: &CashierTraffic,
) -> anyhow::Result<()> {
    use std::sync::atomic::Ordering::Relaxed;
    let cell = region.cell_id.as_str();
    let country = region.licensed_countries[0].as_str().to_owned();
    let ip = COUNTRY_ADDRESSES.iter().find(|(c, _)| *c == country).map(|(_, ip)| *ip).context("a test address")?;
    let currency = region.default_currency.code();
    let id = format!("{cell}-cashier-{n}-{}", rand::random::<u32>());
    let payer = register(http, router, ip, &id, cell, &country, currency).await?;
    let card = json!({ "playerId": id, "psp": "card", "amount": "40.00", "currency": currency, "paymentMethod": "card:tok_visa_4242" });
    until_answered(http, router, ip, &payer, "/cashier/deposits", card, &format!("{id}-card")).await?;
    let bank = json!({ "playerId": id, "psp": "bank", "amount": "25.00", "currency": currency, "paymentMethod": "bank:acct_drill_1" });
    let created = until_answered(http, router, ip, &payer, "/cashier/deposits", bank, &format!("{id}-bank")).await?;
    approve_at_bank(http, sandbox, &created).await?;
    let statuses = settle(http, router, ip, std::slice::from_ref(&payer)).await?;
    if statuses.get("captured") != Some(&2) {
        bail!("{id}'s deposits: {statuses:?}");
    }
    counters.card_deposits.fetch_add(1, Relaxed);
    counters.bank_deposits.fetch_add(1, Relaxed);
    let out = json!({ "playerId": id, "psp": "card", "amount": "15.00", "currency": currency, "paymentMethod": "card:tok_visa_4242" });
    until_answered(http, router, ip, &payer, "/cashier/withdrawals", out, &format!("{id}-out")).await?;
    let statuses = settle(http, router, ip, std::slice::from_ref(&payer)).await?;
    if statuses.get("paid") == Some(&1) {
        counters.withdrawals_paid.fetch_add(1, Relaxed);
    }
    Ok(())
}
