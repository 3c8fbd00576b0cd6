//! The `psp-chaos` drill: players of one jurisdiction deposit through the sandbox's card PSP while
//! every notification fault it has takes its turn (duplicated, overtaking the API's answers, late,
//! about an unknown payment, badly signed, a capture answered 500) and the cell is killed with
//! `kill -9` halfway; then they withdraw, on and off the closed loop. Checked: every payment the
//! PSP captured is credited exactly once, and nothing it did not; no withdrawal was paid without
//! passing its checks; the day reconciles with the PSP's settlement report.

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
    let settled = settle(http, &router, ip, &payers).await?;
    report.step(format!("every deposit settled: {settled:?}"));

    // Withdrawals: on the closed loop (paid out), off it (waits for the finance role, never paid).
    for (n, payer) in payers.iter().enumerate() {
        for (method, key) in [("card:tok_visa_4242", "on"), ("card:tok_elsewhere_9999", "off")] {
            let body = json!({ "playerId": payer.id, "psp": "card", "amount": "1.00", "currency": currency, "paymentMethod": method });
            let key = format!("{}-w{n}{key}", payer.id);
            let reply = until_answered(http, &router, ip, payer, "/cashier/withdrawals", body, &key).await?;
            if reply.status != 201 {
                bail!("withdrawal {key} of {}: {} {}", payer.id, reply.status, reply.text());
            }
        }
    }
    let settled = settle(http, &router, ip, &payers).await?;
    report.step(format!("withdrawals asked for and settled: {settled:?}"));

    // What the PSP captured, against what the cell credited.
    let psp_reply = http.send(None, "GET", &format!("{sandbox}/admin/psp/payments"), &[], None).await?;
    let captured_at_psp: BTreeSet<String> = psp_reply.json()["payments"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["captured"] == true)
        .filter_map(|p| p["merchantReference"].as_str().map(str::to_owned))
        .filter(|r| deposits.iter().any(|(_, id)| id == r))
        .collect();
    let events = events(platform, &cell).await?;
    let mut confirmed: BTreeMap<String, u32> = BTreeMap::new();
    let (mut approved, mut paid) = (BTreeSet::new(), Vec::new());
    for (name, payload) in &events {
        let id = payload["paymentId"].as_str().unwrap_or_default().to_owned();
        match name.as_str() {
            "payment.confirmed" => *confirmed.entry(id).or_default() += 1,
            "payout.approved" => {
                approved.insert(id);
            }
            "payout.paid" => paid.push(id),
            _ => {}
        }
    }
    let mut problems = Vec::new();
    for id in &captured_at_psp {
        match confirmed.get(id) {
            Some(1) => {}
            Some(n) => problems.push(format!("{id} captured once, credited {n} times")),
            None => problems.push(format!("{id} captured by the PSP, never credited")),
        }
    }
    for id in confirmed.keys().filter(|id| !captured_at_psp.contains(*id) && deposits.iter().any(|(_, d)| d == *id)) {
        problems.push(format!("{id} credited, never captured by the PSP"));
    }
    report.check(Check::new(
        "every PSP-captured payment is credited exactly once, and nothing else",
        problems,
        format!("{} payments captured at the PSP, {} credited", captured_at_psp.len(), confirmed.len()),
    ));
    let unchecked: Vec<String> = paid.iter().filter(|id| !approved.contains(*id)).cloned().collect();
    report.check(Check::new(
        "no withdrawal was paid without passing its checks",
        unchecked,
        format!(
            "{} paid, each approved first; {} withdrawals off the closed loop wait for finance",
            paid.len(),
            players
        ),
    ));
    let today = chrono::Utc::now().date_naive();
    let recon = platform.get(&cell, &format!("/ops/reconciliation?psp=card&date={today}")).await?;
    let differences: Vec<String> =
        recon.json()["differences"].as_array().into_iter().flatten().map(|d| d.to_string()).collect();
    report.check(Check::new(
        "the day reconciles with the PSP's settlement report",
        differences,
        format!("{} lines matched", recon.json()["matched"]),
    ));
    Ok(())
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
    // The player at their bank approves the pay-in.
    let redirect = created.json()["redirectUrl"].as_str().context("a bank redirect")?.to_owned();
    let path = redirect.split_once("://").and_then(|(_, rest)| rest.split_once('/')).map(|(_, p)| format!("/{p}"));
    http.send(None, "GET", &format!("{sandbox}{}", path.unwrap_or_default()), &[], None).await?;
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
