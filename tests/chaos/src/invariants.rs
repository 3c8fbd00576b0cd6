//! The invariants every drill checks once its faults are over and every parked request has a
//! definite answer. Each check reads the platform only through its public routes
//! (`/ops/ledger`, `/audit/verify`, `/events`, balances), as an auditor would.

use crate::load::{decimal, Journal, Outcome, StepKind, StepRecord};
use crate::platform::{Platform, Role};
use crate::report::Check;
use contracts::events::EventPage;
use rust_decimal::Decimal;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// Events read per page (the cell's maximum).
const EVENTS_PAGE: usize = 1_000;
/// Balance reads in flight at once while checking players.
const BALANCE_READS_CONCURRENT: usize = 16;

/// A standby that follows its writer answers every domain read with `503 CELL_STANDBY`: its data
/// is the writer's, checked there.
fn following(reply: &crate::client::Reply) -> bool {
    reply.status == 503 && reply.code() == "CELL_STANDBY"
}

/// Per currency, the books of every cell process sum to zero.
pub async fn ledger_sums_to_zero(platform: &Platform) -> Check {
    let mut problems = Vec::new();
    let mut currencies = 0;
    for role in platform.cell_roles() {
        match platform.get(&role, "/ops/ledger").await {
            Ok(reply) if reply.status == 200 => {
                let totals: BTreeMap<String, String> = serde_json::from_slice(&reply.body).unwrap_or_default();
                for (currency, total) in totals {
                    currencies += 1;
                    if total.parse::<Decimal>().map_or(true, |t| !t.is_zero()) {
                        problems.push(format!("{role}: {currency} sums to {total}"));
                    }
                }
            }
            Ok(reply) if following(&reply) => {}
            Ok(reply) => problems.push(format!("{role}: /ops/ledger answered {} {}", reply.status, reply.text())),
            Err(e) => problems.push(format!("{role}: {e:#}")),
        }
    }
    Check::new(
        "ledger sums to zero per currency",
        problems,
        format!("{} cell processes, {currencies} currency books", platform.cell_roles().len()),
    )
}

/// The WORM audit chain of every cell process verifies.
pub async fn audit_chain_verifies(platform: &Platform) -> Check {
    let mut problems = Vec::new();
    let mut records = 0;
    for role in platform.cell_roles() {
        match platform.get(&role, "/audit/verify").await {
            Ok(reply) if reply.status == 200 && reply.json()["ok"] == Value::Bool(true) => {
                records += reply.json()["records"].as_u64().unwrap_or(0);
            }
            Ok(reply) if following(&reply) => {}
            Ok(reply) => problems.push(format!("{role}: {} {}", reply.status, reply.text())),
            Err(e) => problems.push(format!("{role}: {e:#}")),
        }
    }
    Check::new("audit chain verifies", problems, format!("{records} chained records"))
}

/// No player was served by a cell outside their licence; every unlicensed client got the
/// router's 451.
pub fn served_within_licence(journal: &Journal) -> Check {
    let problems = journal
        .violations
        .iter()
        .map(|v| {
            format!(
                "{} ({}): expected {}, answered by `{}` with {}",
                v.player, v.step, v.expected, v.served_by, v.status
            )
        })
        .collect();
    let mut check = Check::new(
        "no player served outside their licence",
        problems,
        format!("{} routed answers checked (X-Cell)", journal.routed_checked),
    );
    check.count = journal.violation_count;
    if journal.routed_checked == 0 {
        check.fail("no routed answer was seen");
    }
    check
}

/// Every write sent got a definite answer in the end.
pub fn no_outcome_left_unknown(journal: &Journal) -> Check {
    let problems = journal
        .records
        .iter()
        .filter(|r| r.step.kind.writes() && matches!(r.outcome, Outcome::Unknown { .. }))
        .map(|r| {
            format!("{} {} {}: still unknown after {} attempts", r.player, r.step.kind.name(), r.step.key, r.attempts)
        })
        .collect();
    Check::new("every request got a definite answer", problems, format!("{} writes", writes(journal).count()))
}

fn writes(journal: &Journal) -> impl Iterator<Item = &StepRecord> {
    journal.records.iter().filter(|r| r.step.kind.writes())
}

/// An acknowledged write an asynchronous failover may have lost (acknowledged within its loss
/// window, on its jurisdiction).
fn may_be_lost(journal: &Journal, r: &StepRecord) -> bool {
    let Some(w) = &journal.loss_window else { return false };
    r.outcome == Outcome::Acked && r.cell == w.cell && r.acked_at.is_some_and(|at| at >= w.from && at <= w.to)
}

/// What a write leaves in its cell's event log, as the drill can recognise it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Effect {
    /// `player.registered` of the player.
    Registered(String),
    /// `wallet.credited` of (player, amount): deposits of equal amounts count together.
    Credited(String, Decimal),
    /// `bet.placed` of (player, round).
    Bet(String, String),
    /// A `round.settled` part of (player, round).
    Settled(String, String),
}

impl Effect {
    fn of(r: &StepRecord) -> Option<Effect> {
        let (p, round) = (r.player.clone(), r.step.round.clone());
        match r.step.kind {
            StepKind::Register => Some(Effect::Registered(p)),
            StepKind::Deposit => Some(Effect::Credited(p, r.step.amount)),
            StepKind::Bet => Some(Effect::Bet(p, round)),
            StepKind::Win => Some(Effect::Settled(p, round)),
            _ => None,
        }
    }

    fn player(&self) -> &str {
        match self {
            Effect::Registered(p) | Effect::Credited(p, _) | Effect::Bet(p, _) | Effect::Settled(p, _) => p,
        }
    }

    fn from_event(event: &str, payload: &Value) -> Vec<Effect> {
        let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        match event {
            "player.registered" => vec![Effect::Registered(s(&payload["player"]["playerId"]))],
            "wallet.credited" => decimal(&payload["amount"])
                .map(|amount| Effect::Credited(s(&payload["playerId"]), amount))
                .into_iter()
                .collect(),
            "bet.placed" => vec![Effect::Bet(s(&payload["playerId"]), s(&payload["roundId"]))],
            "round.settled" => payload["parts"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|part| Effect::Settled(s(&part["playerId"]), s(&payload["roundId"])))
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// Per jurisdiction, how many times each effect is in the event logs of its cell processes
/// (primary and standby pooled: an effect on either counts, and one request's effect on both is
/// a double effect).
#[derive(Default)]
struct EventIndex {
    effects: BTreeMap<(String, Effect), u32>,
    events: u64,
    /// Effects on a player whose id names another cell: a cell serving outside its licence.
    foreign: Vec<String>,
}

async fn read_events(platform: &Platform, role: &Role, cell: &str, index: &mut EventIndex) -> Result<(), String> {
    let mut after: Option<String> = None;
    loop {
        let path = match &after {
            Some(cursor) => format!("/events?limit={EVENTS_PAGE}&after={cursor}"),
            None => format!("/events?limit={EVENTS_PAGE}"),
        };
        let reply = platform.get(role, &path).await.map_err(|e| format!("{role}: {e:#}"))?;
        // A standby's log is its writer's, copied: read once, from the writer.
        if following(&reply) {
            return Ok(());
        }
        if reply.status != 200 {
            return Err(format!("{role}: /events answered {} {}", reply.status, reply.text()));
        }
        let page: EventPage = serde_json::from_slice(&reply.body).map_err(|e| format!("{role}: /events: {e}"))?;
        if page.events.is_empty() {
            return Ok(());
        }
        for e in &page.events {
            index.events += 1;
            for effect in Effect::from_event(&e.envelope.event, &e.envelope.payload) {
                if effect.player().split_once('-').map(|(home, _)| home) != Some(cell) {
                    index.foreign.push(format!("{role}: {} of {}", e.envelope.event, effect.player()));
                }
                *index.effects.entry((cell.to_owned(), effect)).or_default() += 1;
            }
        }
        after = page.next;
    }
}

/// The acknowledged writes in the event logs and balances, retries included.
pub struct Reflection {
    pub events: Check,
    pub retries: Check,
    pub balances: Check,
    /// Writes acknowledged within an asynchronous failover's loss window, and how many of them
    /// are missing from the event logs.
    pub at_risk: u64,
    pub lost: u64,
}

/// Every acknowledged write is reflected exactly once in its cell's event log, and every refused
/// one not at all; every request retried after an unknown outcome had exactly one effect; every
/// registered player lives on exactly one process of their jurisdiction, with the balance the
/// acknowledged deposits, bets and wins add up to.
pub async fn acknowledged_writes_reflected(platform: &Platform, journal: &Journal) -> Reflection {
    let mut index = EventIndex::default();
    let mut read_problems = Vec::new();
    for role in platform.cell_roles() {
        let (Role::Primary(id) | Role::Standby(id)) = &role else { continue };
        if let Err(problem) = read_events(platform, &role, id, &mut index).await {
            read_problems.push(problem);
        }
    }
    // How many times each effect should be there: once per acknowledged write causing it, less
    // at most those an asynchronous failover may have lost.
    let mut expected: BTreeMap<(String, Effect), u32> = BTreeMap::new();
    let mut losable: BTreeMap<(String, Effect), u32> = BTreeMap::new();
    for r in writes(journal) {
        if let Some(effect) = Effect::of(r) {
            let key = (r.cell.clone(), effect);
            *losable.entry(key.clone()).or_default() += u32::from(may_be_lost(journal, r));
            *expected.entry(key).or_default() += u32::from(r.outcome == Outcome::Acked);
        }
    }
    let reflected = |key: &(String, Effect), have: u32, want: u32| {
        let may_lose = losable.get(key).copied().unwrap_or(0);
        have <= want && have + may_lose >= want
    };
    let mut lost = 0u64;
    let mut event_problems = read_problems.clone();
    event_problems.extend(index.foreign.iter().map(|f| format!("a player of another cell in the log: {f}")));
    let mut retry_problems = read_problems;
    for (key, want) in &expected {
        let have = index.effects.get(key).copied().unwrap_or(0);
        if reflected(key, have, *want) {
            lost += u64::from(want - have);
        } else {
            let (cell, effect) = key;
            event_problems
                .push(format!("{cell}: {effect:?} is in the event log {have} times, acknowledged {want} times"));
        }
    }
    // And nothing more: an effect on one of the journal's players that no request of theirs
    // was acknowledged for (a double effect, or an effect of a refused request).
    let known: BTreeSet<&str> = journal.records.iter().map(|r| r.player.as_str()).collect();
    for ((cell, effect), have) in &index.effects {
        if known.contains(effect.player()) && !expected.contains_key(&(cell.clone(), effect.clone())) {
            event_problems.push(format!("{cell}: {effect:?} is in the event log {have} times, acknowledged 0 times"));
        }
    }
    let (mut retried, mut replays, mut cut) = (0u64, 0u64, 0u64);
    let mut first_errors: BTreeMap<String, u32> = BTreeMap::new();
    for r in writes(journal).filter(|r| r.retried_after_unknown) {
        retried += 1;
        let kind = error_kind(r.first_error.as_deref().unwrap_or_default());
        // A refused connection or a router's 503 never reached a cell; anything else may have.
        cut += u64::from(!kind.contains("os error 111") && !kind.contains("CELL_UNAVAILABLE"));
        *first_errors.entry(kind).or_default() += 1;
        replays += u64::from(r.replayed);
        let Some(effect) = Effect::of(r) else { continue };
        let key = (r.cell.clone(), effect);
        let (have, want) = (index.effects.get(&key).copied().unwrap_or(0), expected.get(&key).copied().unwrap_or(0));
        if !reflected(&key, have, want) {
            retry_problems.push(format!(
                "{} {} {} ({}, first attempt: {}): {have} effects, expected {want}",
                r.player,
                r.step.kind.name(),
                r.step.key,
                outcome_text(&r.outcome),
                r.first_error.clone().unwrap_or_default()
            ));
        }
    }
    let acked = writes(journal).filter(|r| r.outcome == Outcome::Acked).count();
    let of_load: u64 =
        index.effects.iter().filter(|((_, e), _)| known.contains(e.player())).map(|(_, n)| u64::from(*n)).sum();
    let events = Check::new(
        "every acknowledged write is in the event log once",
        event_problems,
        format!(
            "{acked} writes acknowledged to the load, one event each: {of_load} events of its players; the logs' \
             other {} events come from requests outside the load (the drill's own probes)",
            index.events.saturating_sub(of_load)
        ),
    );
    let retries = Check::new(
        "every retried in-flight request had exactly one effect",
        retry_problems,
        format!(
            "{retried} requests sent again with their key after an unknown outcome ({cut} of them possibly cut \
             mid-flight): {replays} answered as replays, {} executed on retry; first errors: {first_errors:?}",
            retried - replays
        ),
    );
    let balances = balances_match(platform, journal).await;
    let at_risk = writes(journal).filter(|r| may_be_lost(journal, r)).count() as u64;
    Reflection { events, retries, balances, at_risk, lost }
}

/// The gist of a transport error or status, to group them: the innermost cause.
fn error_kind(error: &str) -> String {
    // rustls appends a link to its manual after the cause: skip such segments.
    let cause = error.rsplit(": ").find(|s| !s.is_empty() && !s.contains("docs.rs")).unwrap_or(error);
    cause.chars().take(60).collect()
}

fn outcome_text(o: &Outcome) -> String {
    match o {
        Outcome::Acked => "acknowledged".into(),
        Outcome::Refused { status, code } => format!("refused {status} {code}"),
        Outcome::Unknown { error } => format!("unknown: {error}"),
    }
}

/// A player's expected balance from the journal: cash and held.
#[derive(Debug, Default, Clone, Copy)]
struct Expected {
    cash: Decimal,
    held: Decimal,
}

/// `into += amount`, checked: an expected balance the books could not hold is a finding, never a
/// panic of the drill or a rounded figure.
fn add_to(into: &mut Decimal, amount: Decimal, overflowed: &mut bool) {
    match into.checked_add(amount) {
        Some(sum) => *into = sum,
        None => *overflowed = true,
    }
}

async fn balances_match(platform: &Platform, journal: &Journal) -> Check {
    // A closing win releases the round's stake from held (to game revenue).
    let stakes: BTreeMap<(&str, &str), Decimal> = writes(journal)
        .filter(|b| b.step.kind == StepKind::Bet && b.outcome == Outcome::Acked)
        .map(|b| ((b.player.as_str(), b.step.round.as_str()), b.step.amount))
        .collect();
    let mut expected: BTreeMap<(String, String), Expected> = BTreeMap::new();
    // Per player, what each acknowledged write an asynchronous failover may have lost did to
    // their (cash, held), in order: the promoted standby lacks at most a suffix of them.
    let mut losable: BTreeMap<(String, String), Vec<(Decimal, Decimal)>> = BTreeMap::new();
    let mut overflowed = false;
    let mut registered: BTreeSet<(String, String)> = BTreeSet::new();
    for r in writes(journal).filter(|r| r.outcome == Outcome::Acked) {
        let key = (r.cell.clone(), r.player.clone());
        let (cash, held) = match r.step.kind {
            StepKind::Register => {
                registered.insert(key.clone());
                (Decimal::ZERO, Decimal::ZERO)
            }
            StepKind::Deposit => (r.step.amount, Decimal::ZERO),
            StepKind::Bet => (-r.step.amount, r.step.amount),
            StepKind::Win => {
                let stake = stakes.get(&(r.player.as_str(), r.step.round.as_str())).copied();
                (r.step.amount, -stake.unwrap_or_default())
            }
            _ => (Decimal::ZERO, Decimal::ZERO),
        };
        let e = expected.entry(key.clone()).or_default();
        add_to(&mut e.cash, cash, &mut overflowed);
        add_to(&mut e.held, held, &mut overflowed);
        if may_be_lost(journal, r) {
            losable.entry(key).or_default().push((cash, held));
        }
    }
    // What a player's balances may be: all their acknowledged writes, or all but the last few of
    // those a failover may have lost.
    let acceptable = |key: &(String, String), want: &Expected| {
        let mut states = vec![(want.cash, want.held)];
        let (mut cash, mut held) = (want.cash, want.held);
        for (c, h) in losable.get(key).into_iter().flatten().rev() {
            let (Some(c), Some(h)) = (cash.checked_sub(*c), held.checked_sub(*h)) else { break };
            (cash, held) = (c, h);
            states.push((cash, held));
        }
        states
    };
    // A registration the failover may have lost: the player may be nowhere.
    let registration_losable: BTreeSet<(String, String)> = writes(journal)
        .filter(|r| r.step.kind == StepKind::Register && may_be_lost(journal, r))
        .map(|r| (r.cell.clone(), r.player.clone()))
        .collect();
    let players: Vec<(String, String)> = registered.into_iter().collect();
    let mut problems = Vec::new();
    if overflowed {
        problems.push("the acknowledged requests add up to more than a Decimal holds".to_owned());
    }
    let mut on_standby = 0u64;
    for chunk in players.chunks(BALANCE_READS_CONCURRENT) {
        let reads = chunk.iter().map(|(cell, player)| {
            let roles = [Role::Primary(cell.clone()), Role::Standby(cell.clone())];
            async move {
                let mut found = Vec::new();
                for role in roles.into_iter().filter(|r| platform.processes.contains_key(r)) {
                    match platform.get(&role, &format!("/ops/players/{player}/balance")).await {
                        Ok(reply) if reply.status == 200 => found.push((role, reply.json())),
                        Ok(reply) if reply.status == 404 => {}
                        // A following standby: what it holds is its writer's.
                        Ok(reply) if following(&reply) => {}
                        Ok(reply) => return Err(format!("{player} on {role}: {} {}", reply.status, reply.text())),
                        Err(e) => return Err(format!("{player} on {role}: {e:#}")),
                    }
                }
                Ok(found)
            }
        });
        let results = futures::future::join_all(reads).await;
        for ((cell, player), result) in chunk.iter().zip(results) {
            let found = match result {
                Ok(found) => found,
                Err(problem) => {
                    problems.push(problem);
                    continue;
                }
            };
            let key = (cell.clone(), player.clone());
            let want = expected.get(&key).copied().unwrap_or_default();
            match found.as_slice() {
                [] if registration_losable.contains(&key) => {}
                [] => problems.push(format!("{player}: registration acknowledged but no {cell} process knows them")),
                [(role, balance)] => {
                    on_standby += u64::from(matches!(role, Role::Standby(_)));
                    let found = decimal(&balance["cash"]).zip(decimal(&balance["held"]));
                    if !found.is_some_and(|found| acceptable(&key, &want).contains(&found)) {
                        problems.push(format!(
                            "{player} on {role}: cash {} held {}, acknowledged requests add up to cash {} held {}",
                            balance["cash"], balance["held"], want.cash, want.held
                        ));
                    }
                }
                _ => problems.push(format!("{player}: registered on both {cell} primary and standby")),
            }
        }
    }
    let detail = if on_standby > 0 {
        format!("{} players ({on_standby} of them on a standby)", players.len())
    } else {
        format!("{} players", players.len())
    };
    Check::new("every acknowledged write is in the balances", problems, detail)
}

/// Every process's log file is plain text: colour codes are for a terminal, and in a file they
/// only get in the way of reading and searching it.
pub fn logs_are_plain_text(platform: &Platform) -> Check {
    let logs = platform.spec.data_dir.join("logs");
    let mut problems = Vec::new();
    let mut files = 0;
    match std::fs::read_dir(&logs) {
        Ok(entries) => {
            for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
                files += 1;
                match std::fs::read(&path) {
                    Ok(bytes) if bytes.contains(&0x1b) => {
                        problems.push(format!("{} holds terminal escape codes", path.display()))
                    }
                    Ok(_) => {}
                    Err(e) => problems.push(format!("{}: {e}", path.display())),
                }
            }
        }
        Err(e) => problems.push(format!("{}: {e}", logs.display())),
    }
    Check::new("process logs are plain text (no colour codes)", problems, format!("{files} log files"))
}

/// No process's log holds a secret the drill used: the players' password, the control plane's
/// admin token, a provider's secret, or any access token (a JWT's text begins `eyJhbGci`, the
/// encoding of `{"alg`).
pub fn logs_hold_no_secrets(platform: &Platform) -> Check {
    let secrets = [
        ("the players' password", crate::load::DRILL_PASSWORD),
        ("the admin token", platform.spec.admin_token.as_str()),
        ("the demo provider's secret", crate::platform::DEMO_PROVIDER_SECRET),
        ("the KYC webhook secret", crate::platform::DRILL_KYC_WEBHOOK_SECRET),
        ("the card PSP's secret", crate::platform::DRILL_PSP_CARD_SECRET),
        ("the bank PSP's secret", crate::platform::DRILL_PSP_BANK_SECRET),
        ("an access token", "eyJhbGci"),
    ];
    let (files, problems) = secrets_in(&platform.spec.data_dir.join("logs"), &secrets);
    Check::new("process logs hold no password, token or secret", problems, format!("{files} log files"))
}

/// The files of `dir` read, and which of `secrets` (what, text) each holds.
fn secrets_in(dir: &std::path::Path, secrets: &[(&str, &str)]) -> (usize, Vec<String>) {
    let mut problems = Vec::new();
    let mut files = 0;
    for path in std::fs::read_dir(dir).into_iter().flatten().filter_map(|e| e.ok().map(|e| e.path())) {
        files += 1;
        let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap_or_default()).into_owned();
        for (what, secret) in secrets {
            if text.contains(secret) {
                problems.push(format!("{} holds {what}", path.display()));
            }
        }
    }
    (files, problems)
}

/// The load's refused writes, by code, for the report: a refusal is a decision (a stake over a
/// limit, a deposit from an unlicensed place), not a fault.
pub fn refusals_by_code(journal: &Journal) -> BTreeMap<String, u64> {
    let mut by_code = BTreeMap::new();
    for r in writes(journal) {
        if let Outcome::Refused { status, code } = &r.outcome {
            *by_code.entry(format!("{status} {code}")).or_default() += 1;
        }
    }
    by_code
}

/// What responsible gambling promised, read from each primary cell's event log in commit order,
/// as an auditor would: no deposit and no bet by a player while they are self-excluded or timed
/// out, and no day's deposits past the day limit in force when each was made.
pub async fn responsible_gambling_held(platform: &Platform) -> Check {
    let name = "no excluded player bet or deposited; no deposit limit passed; no unverified player past the KYC rule";
    let mut problems = Vec::new();
    let (mut players, mut limited, mut excluded, mut deposits) = (BTreeSet::new(), 0, 0, 0);
    let (mut checked, mut failed_kyc) = (0, 0);
    for role in platform.cell_roles() {
        let (Role::Primary(id) | Role::Standby(id)) = &role else { continue };
        // The writer's log (a standby's is a copy; an unreplicated standby holds only its own).
        if platform.writer(id) != role {
            continue;
        }
        let Some(region) = platform.regions.iter().find(|r| &r.cell_id == id) else { continue };
        // Per player whose identity check is pending: what they deposited meanwhile; and those
        // whose check failed.
        let mut unverified: BTreeMap<String, Decimal> = BTreeMap::new();
        let mut kyc_failed: BTreeSet<String> = BTreeSet::new();
        let allowance = region.kyc.deposit_allowance.map(|a| a.amount());
        // Per player: until when they may not play, the day limit and that day's deposits.
        let mut barred: BTreeMap<String, chrono::DateTime<chrono::Utc>> = BTreeMap::new();
        let mut day_limit: BTreeMap<String, Decimal> = BTreeMap::new();
        let mut day_sums: BTreeMap<(String, chrono::NaiveDate), Decimal> = BTreeMap::new();
        let mut after: Option<String> = None;
        loop {
            let path = match &after {
                Some(cursor) => format!("/events?limit={EVENTS_PAGE}&after={cursor}"),
                None => format!("/events?limit={EVENTS_PAGE}"),
            };
            let page = match platform.get(&role, &path).await {
                Ok(reply) if reply.status == 200 => match serde_json::from_slice::<EventPage>(&reply.body) {
                    Ok(page) => page,
                    Err(e) => return Check::new(name, vec![format!("{role}: /events: {e}")], String::new()),
                },
                Ok(reply) => {
                    let problem = format!("{role}: /events answered {} {}", reply.status, reply.text());
                    return Check::new(name, vec![problem], String::new());
                }
                Err(e) => return Check::new(name, vec![format!("{role}: {e:#}")], String::new()),
            };
            if page.events.is_empty() {
                break;
            }
            for e in &page.events {
                let (event, p, at) = (e.envelope.event.as_str(), &e.envelope.payload, e.envelope.ts);
                let player = p["playerId"].as_str().unwrap_or_default().to_owned();
                match event {
                    "kyc.requested" => {
                        checked += 1;
                        unverified.insert(player, Decimal::ZERO);
                    }
                    "kyc.verified" | "kyc.failed" => {
                        unverified.remove(&player);
                        if event == "kyc.failed" {
                            failed_kyc += 1;
                            kyc_failed.insert(player);
                        }
                    }
                    "rg.self_exclusion_started" | "rg.timeout_started" => {
                        excluded += 1;
                        if let Some(until) = p["until"].as_str().and_then(|u| u.parse().ok()) {
                            barred.insert(player, until);
                        }
                    }
                    "rg.limit_set" if p["kind"] == "deposit" && p["period"] == "day" => {
                        limited += 1;
                        match p["amount"].as_str().and_then(|a| a.parse().ok()) {
                            Some(limit) => day_limit.insert(player, limit),
                            None => day_limit.remove(&player),
                        };
                    }
                    "wallet.credited" | "bet.placed" | "wallet.hold" => {
                        let deposit = event == "wallet.credited";
                        if deposit && p["reason"] != "deposit" {
                            continue;
                        }
                        players.insert(player.clone());
                        if barred.get(&player).is_some_and(|until| at < *until) {
                            problems.push(format!("{role}: {event} of {player} at {at} while barred"));
                        }
                        if kyc_failed.contains(&player) {
                            problems.push(format!("{role}: {event} of {player} at {at} after their KYC check failed"));
                        }
                        if let Some(sum) = unverified.get_mut(&player) {
                            match allowance {
                                None => problems.push(format!("{role}: {event} of {player} at {at} before KYC")),
                                Some(allowance) if deposit => {
                                    *sum += p["amount"]
                                        .as_str()
                                        .and_then(|a| a.parse::<Decimal>().ok())
                                        .unwrap_or_default();
                                    if *sum > allowance {
                                        problems.push(format!(
                                            "{role}: {player} deposited {sum} before KYC, over the {allowance} allowance"
                                        ));
                                    }
                                }
                                Some(_) => {}
                            }
                        }
                        if deposit {
                            deposits += 1;
                            let amount: Decimal = p["amount"].as_str().and_then(|a| a.parse().ok()).unwrap_or_default();
                            let sum = day_sums.entry((player.clone(), at.date_naive())).or_default();
                            *sum += amount;
                            if day_limit.get(&player).is_some_and(|limit| *sum > *limit) {
                                problems.push(format!(
                                    "{role}: {player}'s deposits on {} reached {sum}, over the day limit",
                                    at.date_naive()
                                ));
                            }
                        }
                    }
                    _ => {}
                }
            }
            after = page.next;
        }
    }
    Check::new(
        name,
        problems,
        format!(
            "{} players' deposits and bets ({deposits} deposits) against {limited} day limits, {excluded} exclusions or time-outs and {checked} identity checks ({failed_kyc} failed)",
            players.len()
        ),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_secret_in_a_log_file_is_found() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cell-uk.log"), "INFO login token=eyJhbGciOiJFZERTQSJ9.x.y\n").unwrap();
        std::fs::write(dir.path().join("router.log"), "INFO nothing to see\n").unwrap();
        let (files, problems) = super::secrets_in(dir.path(), &[("an access token", "eyJhbGci")]);
        assert_eq!(files, 2);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("cell-uk.log"));
    }
}
