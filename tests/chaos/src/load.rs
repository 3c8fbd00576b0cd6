//! The load generator: players' journeys through the platform as each party makes them.
//!
//! A journey is one player's life in a few steps: register through the router from their
//! country; deposit (a wallet credit, sent to the home cell as the cashier will); play rounds
//! through the `demo` provider (signed `seamless-v1` bet, then a closing win, sent straight to
//! the home cell: providers call cells directly); log in from abroad and read the balance with
//! the session token from anywhere; read it again from home. Some clients in unlicensed
//! countries try to register too and must be refused by the router.
//!
//! Every write step has a fixed idempotency key (or provider transaction id) and body, chosen
//! before it is first sent. When its outcome is unknown (the connection died, or a 5xx: the
//! process was killed mid-request), the journey is *parked* at that step; [`Load::recover`] later
//! sends the very same request again until it gets a definite answer, then finishes the journey.
//! The [`Journal`] keeps every step's outcome: what the invariants check balances and events
//! against.

use crate::client::{Http, Reply};
use anyhow::Context;
use contracts::region::RegionConfig;
use hmac::{Hmac, Mac};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Public addresses the pinned geo-whois-asn-country database places in each country. With
/// `--trusted-proxy 127.0.0.1/32` the router believes `X-Forwarded-For` from loopback, which is
/// how one local generator appears to come from each country.
pub const COUNTRY_ADDRESSES: &[(&str, &str)] = &[
    ("GB", "81.2.69.142"),
    ("DK", "194.255.0.1"),
    ("SE", "62.20.0.1"),
    ("MT", "212.56.128.1"),
    ("ES", "77.209.0.1"),
    ("US", "8.8.8.8"),
];

/// Rounds a journey plays, at most.
const ROUNDS_PER_JOURNEY_MAX: u32 = 3;
/// The password the drill's players register and log in with.
pub const DRILL_PASSWORD: &str = "drill players' passphrase";

/// Share of journeys that are a client in an unlicensed country trying to register.
const UNLICENSED_SHARE: f64 = 0.1;
/// How often a parked step is sent again during recovery.
const RECOVERY_RETRY_INTERVAL: Duration = Duration::from_millis(200);
/// Licence violations kept verbatim for the report (all are counted).
const VIOLATIONS_KEPT_MAX: usize = 20;

/// What a step does, and through which door.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum StepKind {
    /// `POST /players` through the router, from the player's country.
    Register,
    /// `POST /wallet/credit` on the home cell (the cashier's call).
    Deposit,
    /// `POST /gaming/demo/bet` on the home cell (the provider's call).
    Bet,
    /// `POST /gaming/demo/win` with `closeRound`, on the home cell.
    Win,
    /// `POST /sessions` through the router, from abroad.
    Login,
    /// `GET /wallet/{id}/balance` through the router (with the session token when there is one).
    Balance,
    /// `POST /players` through the router from an unlicensed country: must be a 451.
    Unlicensed,
    /// `GET /lobby?playerId=` through the router, from home: the games the player may play.
    Lobby,
    /// A new player logs in from home and sets deposit limits for a day, a week and a month
    /// (`PUT /players/{id}/limits` through the router): Sweden and Denmark take no deposit before.
    Limits,
}

impl StepKind {
    /// Writes change state and are retried with their key when their outcome is unknown.
    pub fn writes(self) -> bool {
        matches!(self, StepKind::Register | StepKind::Deposit | StepKind::Bet | StepKind::Win)
    }

    pub fn name(self) -> &'static str {
        match self {
            StepKind::Register => "register",
            StepKind::Deposit => "deposit",
            StepKind::Bet => "bet",
            StepKind::Win => "win",
            StepKind::Login => "login",
            StepKind::Balance => "balance",
            StepKind::Unlicensed => "unlicensed",
            StepKind::Lobby => "lobby",
            StepKind::Limits => "limits",
        }
    }
}

/// The deposit limit every new drill player sets for each period: far above what a journey
/// deposits, in every currency the regions book.
const DRILL_DEPOSIT_LIMIT: &str = "100000.00";
/// A tight day limit some players set: one journey's deposit (100.00 to 100.99) fits, two do not.
const DRILL_TIGHT_DAY_LIMIT: &str = "150.00";
/// Marks (in the step's amount) a `Limits` step that sets the tight day limit...
const LIMIT_BOUND: Decimal = Decimal::ONE;
/// ...or that self-excludes the player after setting limits.
const SELF_EXCLUDING: Decimal = Decimal::TWO;
/// Shares of new players who bind themselves tighter.
const LIMIT_BOUND_SHARE: f64 = 0.15;
const SELF_EXCLUDING_SHARE: f64 = 0.05;

/// Marks (in the step's amount) a registration as one the self-exclusion register refuses.
const REGISTER_EXCLUDED: Decimal = Decimal::ONE;
/// Share of new players whose register says they are excluded (the sandbox's family name
/// `Excluded`): their registration is refused, and their journey ends there.
const REGISTER_EXCLUDED_SHARE: f64 = 0.03;

/// Marks (in the step's amount) a registration whose identity document fails KYC (the sandbox's
/// `FAIL` numbers): the player registers, but may never deposit or bet.
const REGISTER_KYC_FAILING: Decimal = Decimal::TWO;
const KYC_FAILING_SHARE: f64 = 0.02;
/// Longest a journey waits for the KYC vendor's verdict before depositing (it comes in ~0.5 s).
const KYC_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The personal data a drill player registers with: what the region requires and its register
/// is asked with (a national number in Denmark, Sweden and Spain), derived from the player id;
/// `excluded`: a name every register excludes; `kyc_fails`: a document KYC fails.
pub fn profile(player: &str, cell: &str, country: &str, excluded: bool, kyc_fails: bool) -> serde_json::Value {
    let digits: String = {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        player.hash(&mut h);
        format!("{:012}", h.finish() % 1_000_000_000_000)
    };
    let document = match cell {
        "dk" => Some(("CPR", format!("0104{}", &digits[..6]))),
        "se" => Some(("PERSONNUMMER", format!("1990{}", &digits[..8]))),
        "es" => Some(("DNI", format!("{}Z", &digits[..8]))),
        _ if kyc_fails => Some(("PASSPORT", String::new())),
        _ => None,
    };
    let mut profile = json!({
        "givenName": "Drill", "familyName": if excluded { "Excluded" } else { "Player" },
        "email": format!("{player}@drill.example"), "phone": "+447700900000",
        "address": { "street": "1 Drill Street", "city": "Drilltown", "postcode": "D1 1LL", "country": country }
    });
    if let Some((kind, number)) = document {
        let number = if kyc_fails { format!("FAIL{number}") } else { number };
        profile["identityDocument"] = json!({ "kind": kind, "number": number, "issuingCountry": country });
    }
    profile["nationality"] = json!(country);
    if cell == "es" {
        profile["fiscalRegion"] = json!("13");
        profile["sex"] = json!(if digits.as_bytes()[0].is_multiple_of(2) { "female" } else { "male" });
    }
    profile
}

/// One request of a journey, fixed before it is first sent.
#[derive(Debug, Clone)]
pub struct Step {
    pub kind: StepKind,
    /// Idempotency key, or the provider's transaction id.
    pub key: String,
    pub amount: Decimal,
    pub round: String,
    /// For a balance read: the address it comes from, and whether it carries the session token.
    pub from_ip: &'static str,
    pub with_token: bool,
}

/// How a request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx: the platform said it happened.
    Acked,
    /// A definite refusal (4xx): nothing happened.
    Refused { status: u16, code: String },
    /// No definite answer: connection lost, timeout, or 5xx.
    Unknown { error: String },
}

/// A step's record in the journal.
#[derive(Debug, Clone)]
pub struct StepRecord {
    pub player: String,
    pub cell: String,
    pub currency: String,
    pub step: Step,
    pub outcome: Outcome,
    pub attempts: u32,
    /// The first attempt's outcome was unknown and the same request was sent again.
    pub retried_after_unknown: bool,
    /// The first error seen, for the report.
    pub first_error: Option<String>,
    /// The final answer carried `Idempotent-Replay: true`.
    pub replayed: bool,
    /// When the load had the acknowledgement (acknowledged writes only).
    pub acked_at: Option<std::time::Instant>,
}

/// Writes of `cell` acknowledged within `from..=to` may be lost: an asynchronous standby was
/// promoted after its primary was killed, and held what the primary had acknowledged up to its
/// lag then, not after.
#[derive(Debug, Clone)]
pub struct LossWindow {
    pub cell: String,
    pub from: std::time::Instant,
    pub to: std::time::Instant,
}

/// A player and what is left to do.
#[derive(Debug, Clone)]
pub struct Journey {
    pub player: String,
    pub cell: String,
    pub country: &'static str,
    pub ip: &'static str,
    pub currency: String,
    pub steps: Vec<Step>,
    pub next: usize,
    /// Journal indices of the steps taken so far (one record per step, updated on retries).
    records: Vec<usize>,
    token: Option<String>,
    /// The step at `next` already had an unknown outcome.
    parked_unknown: bool,
}

/// A registered player who may come back for another journey.
#[derive(Debug, Clone)]
struct Returning {
    player: String,
    cell: String,
    country: &'static str,
    ip: &'static str,
    currency: String,
}

/// Share of journeys, once players exist, made by a returning player (deposit and play, no
/// registration): they keep direct cell traffic going while the router is down.
const RETURNING_SHARE: f64 = 0.5;

/// Where requests go.
#[derive(Debug, Clone)]
pub struct Targets {
    pub router: String,
    /// Each cell's primary URL (`https://...`), for the direct calls of PSPs and providers.
    pub cells: BTreeMap<String, String>,
    pub provider_secret: String,
}

/// One router answer that broke the licence rule.
#[derive(Debug, Clone)]
pub struct Violation {
    pub player: String,
    pub step: &'static str,
    pub expected: String,
    pub served_by: String,
    pub status: u16,
}

/// Counters the status screen and the drills read while load runs.
#[derive(Debug, Default)]
pub struct Counters {
    pub acked: AtomicU64,
    pub refused: AtomicU64,
    pub unknown: AtomicU64,
    pub reads_ok: AtomicU64,
    pub reads_failed: AtomicU64,
    pub registered: AtomicU64,
    pub deposits: AtomicU64,
    pub rounds: AtomicU64,
    pub unlicensed_refused: AtomicU64,
    pub parked: AtomicU64,
}

/// Per-cell counters of acknowledged writes and unknown outcomes.
#[derive(Debug, Default)]
pub struct CellCounters {
    pub acked: AtomicU64,
    pub unknown: AtomicU64,
}

/// Everything the load saw, for the invariants.
#[derive(Debug, Default)]
pub struct Journal {
    pub records: Vec<StepRecord>,
    /// Router answers checked against the licence rule.
    pub routed_checked: u64,
    pub violations: Vec<Violation>,
    pub violation_count: u64,
    /// Balance reads of a player answered `404 PLAYER_NOT_FOUND` by their jurisdiction's cell
    /// (a fresh standby knows no one).
    pub unknown_player_reads: u64,
    /// Set by an asynchronous failover: acknowledged writes it may have lost.
    pub loss_window: Option<LossWindow>,
}

/// Shared state of a running load.
pub struct Shared {
    pub http: Http,
    pub targets: Targets,
    pub counters: Counters,
    pub per_cell: BTreeMap<String, CellCounters>,
    pub journal: Mutex<Journal>,
    pub parked: Mutex<Vec<Journey>>,
    /// Cells whose writer moved (a standby promoted): where PSPs and providers call them now.
    moved: Mutex<BTreeMap<String, String>>,
    stop: AtomicBool,
    /// Countries with a licensed cell, with that cell's id and currency.
    licensed: Vec<(&'static str, &'static str, String, String)>,
    /// Registered players not in a journey now: returning players are drawn from here, one
    /// journey at a time per player, so a player's requests never race each other.
    idle_players: Mutex<Vec<Returning>>,
    /// Distinguishes this run's players from earlier runs on the same data.
    run_tag: String,
    /// When set, requests are spread to at most this many a second across every worker.
    pace: Option<Pace>,
}

/// A running load generator.
pub struct Load {
    pub shared: Arc<Shared>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// Starts `workers` concurrent players' journeys, seeded by `seed`.
    /// Starts `workers` workers; with `rate`, they send at most that many requests a second in
    /// all, else as fast as the platform answers.
    pub fn start(
        http: Http,
        targets: Targets,
        regions: &[RegionConfig],
        seed: u64,
        workers: usize,
        rate: Option<std::num::NonZeroU32>,
    ) -> Load {
        let mut licensed = Vec::new();
        for (country, ip) in COUNTRY_ADDRESSES {
            if let Some(r) = regions.iter().find(|r| r.licensed_countries.iter().any(|c| c.as_str() == *country)) {
                licensed.push((*country, *ip, r.cell_id.clone(), r.default_currency.code().to_owned()));
            }
        }
        let per_cell = regions.iter().map(|r| (r.cell_id.clone(), CellCounters::default())).collect();
        let run_tag = format!("{:x}", chrono::Utc::now().timestamp_millis() % 0xff_ffff);
        let shared = Arc::new(Shared {
            http,
            targets,
            counters: Counters::default(),
            per_cell,
            journal: Mutex::new(Journal::default()),
            parked: Mutex::new(Vec::new()),
            moved: Mutex::new(BTreeMap::new()),
            stop: AtomicBool::new(false),
            licensed,
            idle_players: Mutex::new(Vec::new()),
            run_tag,
            pace: rate.map(Pace::new),
        });
        let workers = (0..workers)
            .map(|w| {
                let shared = shared.clone();
                let rng = StdRng::seed_from_u64(seed.wrapping_mul(0x9e37_79b9).wrapping_add(w as u64));
                tokio::spawn(async move { worker(shared, rng, w).await })
            })
            .collect();
        Load { shared, workers }
    }

    /// Stops starting journeys and waits for the workers to finish or park the ones they run.
    pub async fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for w in self.workers.drain(..) {
            let _ = w.await;
        }
    }

    /// Sends every parked step again, with its original key and body, until each gets a definite
    /// answer or `deadline` passes; then finishes those journeys. Returns how many are still
    /// parked (kept for a later call).
    pub async fn recover(&self, deadline: tokio::time::Instant) -> usize {
        let parked: Vec<Journey> = std::mem::take(&mut *self.shared.parked.lock().expect("parked lock"));
        let mut tasks = Vec::new();
        for mut journey in parked {
            let shared = self.shared.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    match run_journey(&shared, &mut journey).await {
                        JourneyEnd::Done => {
                            release_player(&shared, &journey);
                            return None;
                        }
                        JourneyEnd::Parked if tokio::time::Instant::now() > deadline => return Some(journey),
                        JourneyEnd::Parked => tokio::time::sleep(RECOVERY_RETRY_INTERVAL).await,
                    }
                }
            }));
        }
        let mut still_parked = Vec::new();
        for t in tasks {
            if let Ok(Some(journey)) = t.await {
                still_parked.push(journey);
            }
        }
        let unresolved = still_parked.len();
        self.shared.counters.parked.store(unresolved as u64, Ordering::Relaxed);
        self.shared.parked.lock().expect("parked lock").extend(still_parked);
        unresolved
    }

    /// Acknowledged writes so far, on one cell or all.
    pub fn acked(&self, cell: Option<&str>) -> u64 {
        match cell {
            Some(c) => self.shared.per_cell.get(c).map_or(0, |c| c.acked.load(Ordering::Relaxed)),
            None => self.shared.counters.acked.load(Ordering::Relaxed),
        }
    }

    /// Acknowledged writes on every cell but `cell`.
    pub fn acked_elsewhere(&self, cell: &str) -> u64 {
        self.shared.per_cell.iter().filter(|(id, _)| *id != cell).map(|(_, c)| c.acked.load(Ordering::Relaxed)).sum()
    }

    pub fn unknown(&self) -> u64 {
        self.shared.counters.unknown.load(Ordering::Relaxed)
    }

    /// Waits until `condition` holds (checked every 20 ms) or `within` passes; false on timeout.
    /// The limit only stops a drill whose platform never recovers; no result depends on speed.
    pub async fn wait_until(&self, within: Duration, mut condition: impl FnMut(&Load) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        while !condition(self) {
            if tokio::time::Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for w in &self.workers {
            w.abort();
        }
    }
}

enum JourneyEnd {
    Done,
    Parked,
}

/// Spreads requests evenly at a fixed rate: each takes the next free slot, `1/rate` after the
/// previous one, and waits for it (a slot in the past is taken at once, without bursting to
/// catch up).
struct Pace {
    interval: std::time::Duration,
    next: tokio::sync::Mutex<tokio::time::Instant>,
}

impl Pace {
    fn new(rate: std::num::NonZeroU32) -> Pace {
        let interval = std::time::Duration::from_secs(1) / rate.get();
        Pace { interval, next: tokio::sync::Mutex::new(tokio::time::Instant::now()) }
    }

    async fn wait(&self) {
        let slot = {
            let mut next = self.next.lock().await;
            let slot = (*next).max(tokio::time::Instant::now());
            *next = slot + self.interval;
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}

async fn worker(shared: Arc<Shared>, mut rng: StdRng, worker: usize) {
    let mut n = 0u64;
    while !shared.stop.load(Ordering::SeqCst) && !shared.licensed.is_empty() {
        n += 1;
        let mut journey = new_journey(&shared, &mut rng, worker, n);
        match run_journey(&shared, &mut journey).await {
            JourneyEnd::Parked => {
                shared.counters.parked.fetch_add(1, Ordering::Relaxed);
                shared.parked.lock().expect("parked lock").push(journey);
            }
            JourneyEnd::Done => release_player(&shared, &journey),
        }
    }
}

/// Puts a player whose journey ended back in the pool of returning players, if registered.
fn release_player(shared: &Shared, j: &Journey) {
    let registered = j.steps.iter().zip(&j.records).any(|(s, &i)| {
        s.kind == StepKind::Register
            && shared.journal.lock().expect("journal lock").records.get(i).is_some_and(|r| r.outcome == Outcome::Acked)
    });
    let returning = !j.steps.iter().any(|s| s.kind == StepKind::Register || s.kind == StepKind::Unlicensed);
    if registered || returning {
        shared.idle_players.lock().expect("players lock").push(Returning {
            player: j.player.clone(),
            cell: j.cell.clone(),
            country: j.country,
            ip: j.ip,
            currency: j.currency.clone(),
        });
    }
}

fn new_journey(shared: &Shared, rng: &mut StdRng, worker: usize, n: u64) -> Journey {
    let step = |kind, key: String, amount: Decimal, round: &str, ip: &'static str| Step {
        kind,
        key,
        amount,
        round: round.to_owned(),
        from_ip: ip,
        with_token: false,
    };
    let returning = {
        let mut idle = shared.idle_players.lock().expect("players lock");
        if !idle.is_empty() && rng.random_bool(RETURNING_SHARE) {
            let i = rng.random_range(0..idle.len());
            Some(idle.swap_remove(i))
        } else {
            None
        }
    };
    let mut j = match returning {
        Some(p) => Journey::new(p, Vec::new()),
        None => {
            let (country, ip, cell, currency) = shared.licensed[rng.random_range(0..shared.licensed.len())].clone();
            let player = format!("{cell}-d{}-w{worker}-{n}", shared.run_tag);
            let key = format!("{player}-reg");
            if rng.random_bool(UNLICENSED_SHARE) {
                let us = COUNTRY_ADDRESSES.iter().find(|(c, _)| *c == "US").map_or("8.8.8.8", |(_, ip)| *ip);
                let steps = vec![step(StepKind::Unlicensed, key, Decimal::ZERO, "", us)];
                return Journey::new(Returning { player, cell, country: "US", ip: us, currency }, steps);
            }
            if rng.random_bool(REGISTER_EXCLUDED_SHARE) {
                let steps = vec![step(StepKind::Register, key, REGISTER_EXCLUDED, "", ip)];
                return Journey::new(Returning { player, cell, country, ip, currency }, steps);
            }
            let registration = if rng.random_bool(KYC_FAILING_SHARE) { REGISTER_KYC_FAILING } else { Decimal::ZERO };
            let binding = match rng.random_range(0.0..1.0) {
                x if x < SELF_EXCLUDING_SHARE => SELF_EXCLUDING,
                x if x < SELF_EXCLUDING_SHARE + LIMIT_BOUND_SHARE => LIMIT_BOUND,
                _ => Decimal::ZERO,
            };
            let steps = vec![
                step(StepKind::Register, key, registration, "", ip),
                step(StepKind::Limits, String::new(), binding, "", ip),
            ];
            Journey::new(Returning { player, cell, country, ip, currency }, steps)
        }
    };
    let ip = j.ip;
    // Keys and rounds carry the worker and its journey number: unique across returning visits.
    let visit = format!("{}-w{worker}n{n}", j.player);
    // Deposits get varied amounts; the event check matches them by (player, amount) and count.
    let deposit = Decimal::new(10_000 + rng.random_range(0..100), 2);
    j.steps.push(step(StepKind::Deposit, format!("{visit}-dep"), deposit, "", ip));
    j.steps.push(step(StepKind::Lobby, String::new(), Decimal::ZERO, "", ip));
    for r in 0..rng.random_range(1..=ROUNDS_PER_JOURNEY_MAX) {
        let round = format!("{visit}-r{r}");
        // At most 2.00: under every stake limit of every region (UK: GBP 2.00 for ages 18-24).
        let stake = Decimal::new(rng.random_range(10..=200), 2);
        let win = match rng.random_range(0..3) {
            0 => Decimal::ZERO,
            1 => stake,
            _ => stake * Decimal::from(2),
        };
        j.steps.push(step(StepKind::Bet, format!("{round}-bet"), stake, &round, ip));
        j.steps.push(step(StepKind::Win, format!("{round}-win"), win, &round, ip));
    }
    // A trip abroad: log in from another country, read the balance with the session token from
    // anywhere (even an unlicensed country), then from home (a balance is read only with one).
    let abroad = COUNTRY_ADDRESSES[rng.random_range(0..COUNTRY_ADDRESSES.len())].1;
    let with_token =
        |from| Step { with_token: true, ..step(StepKind::Balance, String::new(), Decimal::ZERO, "", from) };
    j.steps.extend([
        step(StepKind::Login, String::new(), Decimal::ZERO, "", abroad),
        with_token(abroad),
        with_token(ip),
    ]);
    j
}

impl Journey {
    fn new(p: Returning, steps: Vec<Step>) -> Journey {
        Journey {
            player: p.player,
            cell: p.cell,
            country: p.country,
            ip: p.ip,
            currency: p.currency,
            steps,
            next: 0,
            records: Vec::new(),
            token: None,
            parked_unknown: false,
        }
    }
}

/// Runs a journey from its next step until it ends or a write's outcome is unknown.
async fn run_journey(shared: &Shared, j: &mut Journey) -> JourneyEnd {
    while j.next < j.steps.len() {
        let step = j.steps[j.next].clone();
        if let Some(pace) = &shared.pace {
            pace.wait().await;
        }
        let result = send_step(shared, j, &step).await;
        let outcome = classify(&step, &result);
        if let Ok(reply) = &result {
            check_route(shared, j, &step, reply);
        }
        let cell_counters = shared.per_cell.get(&j.cell);
        if !step.kind.writes() {
            if step.kind == StepKind::Unlicensed {
                record(shared, j, &step, &outcome, &result);
                if matches!(&result, Ok(r) if r.status == 451) {
                    shared.counters.unlicensed_refused.fetch_add(1, Ordering::Relaxed);
                }
            }
            match (&outcome, step.kind, &result) {
                (Outcome::Acked, StepKind::Login, Ok(reply)) => {
                    j.token = reply.json()["accessToken"].as_str().map(str::to_owned);
                }
                // A standby that replication does not feed yet knows neither the player nor the
                // session (and signs with its own key).
                (Outcome::Refused { code, .. }, StepKind::Balance, _)
                    if code == "PLAYER_NOT_FOUND" || code == "INVALID_SESSION" =>
                {
                    shared.journal.lock().expect("journal lock").unknown_player_reads += 1;
                }
                _ => {}
            }
            let counter = if matches!(outcome, Outcome::Unknown { .. }) {
                &shared.counters.reads_failed
            } else {
                &shared.counters.reads_ok
            };
            counter.fetch_add(1, Ordering::Relaxed);
            j.next += 1;
            continue;
        }
        match &outcome {
            Outcome::Unknown { .. } => {
                record(shared, j, &step, &outcome, &result);
                shared.counters.unknown.fetch_add(1, Ordering::Relaxed);
                if let Some(c) = cell_counters {
                    c.unknown.fetch_add(1, Ordering::Relaxed);
                }
                j.parked_unknown = true;
                return JourneyEnd::Parked;
            }
            Outcome::Acked => {
                record(shared, j, &step, &outcome, &result);
                shared.counters.acked.fetch_add(1, Ordering::Relaxed);
                if let Some(c) = cell_counters {
                    c.acked.fetch_add(1, Ordering::Relaxed);
                }
                let counter = match step.kind {
                    StepKind::Register => &shared.counters.registered,
                    StepKind::Deposit => &shared.counters.deposits,
                    _ => &shared.counters.rounds,
                };
                if step.kind != StepKind::Bet {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                j.next += 1;
            }
            Outcome::Refused { .. } => {
                record(shared, j, &step, &outcome, &result);
                shared.counters.refused.fetch_add(1, Ordering::Relaxed);
                // A refused registration or deposit ends the journey; a refused bet skips its win.
                match step.kind {
                    StepKind::Bet => j.next += 2,
                    StepKind::Win => j.next += 1,
                    _ => j.next = j.steps.len(),
                }
            }
        }
    }
    JourneyEnd::Done
}

/// Adds the step's outcome to the journal, or updates its record when it was sent before.
fn record(shared: &Shared, j: &mut Journey, step: &Step, outcome: &Outcome, result: &anyhow::Result<Reply>) {
    let mut journal = shared.journal.lock().expect("journal lock");
    let replayed = matches!(result, Ok(r) if r.replayed());
    let acked_at = (*outcome == Outcome::Acked).then(std::time::Instant::now);
    let error = match outcome {
        Outcome::Unknown { error } => Some(error.clone()),
        _ => None,
    };
    if j.parked_unknown && j.records.len() > j.next {
        let index = j.records[j.next];
        let r = &mut journal.records[index];
        r.attempts += 1;
        r.retried_after_unknown = true;
        r.outcome = outcome.clone();
        r.replayed = replayed;
        r.acked_at = acked_at;
        if !matches!(outcome, Outcome::Unknown { .. }) {
            j.parked_unknown = false;
        }
        return;
    }
    journal.records.push(StepRecord {
        player: j.player.clone(),
        cell: j.cell.clone(),
        currency: j.currency.clone(),
        step: step.clone(),
        outcome: outcome.clone(),
        attempts: 1,
        retried_after_unknown: false,
        first_error: error,
        replayed,
        acked_at,
    });
    // Only writes are ever retried, so only they need their index kept by step.
    if step.kind.writes() {
        while j.records.len() < j.next {
            j.records.push(usize::MAX);
        }
        j.records.push(journal.records.len() - 1);
    }
}

fn classify(step: &Step, result: &anyhow::Result<Reply>) -> Outcome {
    match result {
        Err(e) => Outcome::Unknown { error: format!("{e:#}") },
        Ok(r) if (200..300).contains(&r.status) => Outcome::Acked,
        // The router's own 451 to an unlicensed client is the expected answer, not a failure.
        Ok(r) if r.status == 451 && step.kind == StepKind::Unlicensed => Outcome::Acked,
        Ok(r) if (400..500).contains(&r.status) => Outcome::Refused { status: r.status, code: r.code() },
        Ok(r) => Outcome::Unknown { error: format!("{} {}", r.status, r.code()) },
    }
}

/// Checks who answered a routed request: the player's own jurisdiction, or the router itself.
fn check_route(shared: &Shared, j: &Journey, step: &Step, reply: &Reply) {
    let routed = matches!(
        step.kind,
        StepKind::Register
            | StepKind::Login
            | StepKind::Balance
            | StepKind::Unlicensed
            | StepKind::Lobby
            | StepKind::Limits
    );
    if !routed {
        return;
    }
    let served_by = reply.cell().to_owned();
    let ok = match step.kind {
        StepKind::Unlicensed => served_by == "router" && reply.status == 451,
        _ => served_by == j.cell || served_by == "router",
    };
    let mut journal = shared.journal.lock().expect("journal lock");
    journal.routed_checked += 1;
    if !ok {
        journal.violation_count += 1;
        if journal.violations.len() < VIOLATIONS_KEPT_MAX {
            journal.violations.push(Violation {
                player: j.player.clone(),
                step: step.kind.name(),
                expected: if step.kind == StepKind::Unlicensed { "router (451)".into() } else { j.cell.clone() },
                served_by,
                status: reply.status,
            });
        }
    }
}

async fn send_step(shared: &Shared, j: &Journey, step: &Step) -> anyhow::Result<Reply> {
    let t = &shared.targets;
    let router = |path: &str| format!("{}{path}", t.router);
    let moved = shared.moved.lock().ok().and_then(|m| m.get(&j.cell).cloned());
    let cell_url = match moved {
        Some(url) => url,
        None => t.cells.get(&j.cell).with_context(|| format!("no URL for cell {}", j.cell))?.clone(),
    };
    let cell_url = &cell_url;
    match step.kind {
        StepKind::Register | StepKind::Unlicensed => {
            let country = if step.kind == StepKind::Unlicensed { "GB" } else { j.country };
            let mut body = json!({
                "playerId": j.player, "dateOfBirth": "1990-04-01", "country": country, "currency": j.currency,
                "password": DRILL_PASSWORD, "profile": profile(&j.player, &j.cell, j.country, step.amount == REGISTER_EXCLUDED, step.amount == REGISTER_KYC_FAILING)
            });
            if step.kind == StepKind::Unlicensed {
                body.as_object_mut().map(|b| b.remove("profile"));
            }
            let headers = [("x-forwarded-for", step.from_ip), ("x-idempotency-key", step.key.as_str())];
            shared.http.send(None, "POST", &router("/players"), &headers, Some(body.to_string().into_bytes())).await
        }
        StepKind::Limits => {
            let body = json!({"playerId": j.player, "password": DRILL_PASSWORD}).to_string().into_bytes();
            let login = shared
                .http
                .send(None, "POST", &router("/sessions"), &[("x-forwarded-for", step.from_ip)], Some(body))
                .await?;
            let Some(token) = login.json()["accessToken"].as_str().map(str::to_owned) else { return Ok(login) };
            // Some players bind themselves tighter: a day limit a second deposit passes, or a
            // self-exclusion (their later deposits and bets are refused).
            let day = if step.amount == LIMIT_BOUND { DRILL_TIGHT_DAY_LIMIT } else { DRILL_DEPOSIT_LIMIT };
            let changes: Vec<_> = [("day", day), ("week", DRILL_DEPOSIT_LIMIT), ("month", DRILL_DEPOSIT_LIMIT)]
                .iter()
                .map(|(period, amount)| json!({"kind": "deposit", "period": period, "amount": amount}))
                .collect();
            let body = json!({ "changes": changes }).to_string().into_bytes();
            let bearer = format!("Bearer {token}");
            let headers = [("x-forwarded-for", step.from_ip), ("authorization", bearer.as_str())];
            let url = router(&format!("/players/{}/limits", j.player));
            let set = shared.http.send(None, "PUT", &url, &headers, Some(body)).await?;
            // The KYC vendor's verdict comes by webhook about half a second after registering:
            // wait for it, as a player's app would, so the deposit meets a decided check.
            let kyc = router(&format!("/players/{}/kyc", j.player));
            let waited = tokio::time::Instant::now();
            while waited.elapsed() < KYC_WAIT {
                let view = shared.http.send(None, "GET", &kyc, &headers, None).await?;
                if view.status != 200 || view.json()["status"] != "pending" {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            if step.amount != SELF_EXCLUDING || set.status != 200 {
                return Ok(set);
            }
            let url = router(&format!("/players/{}/self-exclusion", j.player));
            let body = json!({ "months": 6 }).to_string().into_bytes();
            shared.http.send(None, "POST", &url, &headers, Some(body)).await
        }
        StepKind::Deposit => {
            let body = json!({"playerId": j.player, "currency": j.currency, "amount": step.amount.to_string(), "reason": "deposit"});
            let headers = [("x-idempotency-key", step.key.as_str())];
            let url = format!("{cell_url}/wallet/credit");
            shared.http.send(Some(&j.cell), "POST", &url, &headers, Some(body.to_string().into_bytes())).await
        }
        StepKind::Bet | StepKind::Win => {
            let (call, body) = if step.kind == StepKind::Bet {
                let body = json!({"transactionId": step.key, "playerId": j.player, "roundId": step.round, "gameId": "demo-slot", "amount": step.amount.to_string(), "currency": j.currency});
                ("bet", body)
            } else {
                let body = json!({"transactionId": step.key, "playerId": j.player, "roundId": step.round, "amount": step.amount.to_string(), "currency": j.currency, "closeRound": true});
                ("win", body)
            };
            let body = body.to_string().into_bytes();
            // A resend is signed afresh (the provider would): the cell fingerprints the operation,
            // not the timestamp, so it is still the same request.
            let timestamp = chrono::Utc::now().timestamp();
            let signature = seamless_signature(t.provider_secret.as_bytes(), timestamp, &body);
            let ts = timestamp.to_string();
            let headers = [("x-timestamp", ts.as_str()), ("x-signature", signature.as_str())];
            let url = format!("{cell_url}/gaming/demo/{call}");
            shared.http.send(Some(&j.cell), "POST", &url, &headers, Some(body)).await
        }
        StepKind::Login => {
            let body = json!({"playerId": j.player, "password": DRILL_PASSWORD}).to_string().into_bytes();
            shared.http.send(None, "POST", &router("/sessions"), &[("x-forwarded-for", step.from_ip)], Some(body)).await
        }
        StepKind::Lobby => {
            let url = router(&format!("/lobby?playerId={}", j.player));
            shared.http.send(None, "GET", &url, &[("x-forwarded-for", step.from_ip)], None).await
        }
        StepKind::Balance => {
            let url = router(&format!("/wallet/{}/balance", j.player));
            match (&j.token, step.with_token) {
                (Some(token), true) => {
                    let bearer = format!("Bearer {token}");
                    let headers = [("x-forwarded-for", step.from_ip), ("authorization", bearer.as_str())];
                    shared.http.send(None, "GET", &url, &headers, None).await
                }
                _ => shared.http.send(None, "GET", &url, &[("x-forwarded-for", j.ip)], None).await,
            }
        }
    }
}

/// `seamless-v1`: `sha256=<hex HMAC-SHA256 of "<timestamp>.<raw body>">` (README "Game
/// providers"). Written here from the contract rather than imported from the cell, so the drill
/// checks the cell's reading of it too.
pub fn seamless_signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A snapshot of the counters, for progress lines.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    pub acked: u64,
    pub refused: u64,
    pub unknown: u64,
    pub reads_ok: u64,
    pub reads_failed: u64,
    pub registered: u64,
    pub deposits: u64,
    pub rounds: u64,
    pub unlicensed_refused: u64,
    pub parked: u64,
    pub violations: u64,
}

impl Shared {
    /// PSPs and providers call `cell` at `url` from now on (its standby was promoted).
    pub fn move_cell(&self, cell: &str, url: String) {
        if let Ok(mut moved) = self.moved.lock() {
            moved.insert(cell.to_owned(), url);
        }
    }

    pub fn progress(&self) -> Progress {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Progress {
            acked: get(&c.acked),
            refused: get(&c.refused),
            unknown: get(&c.unknown),
            reads_ok: get(&c.reads_ok),
            reads_failed: get(&c.reads_failed),
            registered: get(&c.registered),
            deposits: get(&c.deposits),
            rounds: get(&c.rounds),
            unlicensed_refused: get(&c.unlicensed_refused),
            parked: get(&c.parked),
            violations: self.journal.lock().map(|j| j.violation_count).unwrap_or(0),
        }
    }
}

/// Parses a decimal string from an API answer.
pub fn decimal(value: &Value) -> Option<Decimal> {
    value.as_str().and_then(|s| s.parse().ok())
}
