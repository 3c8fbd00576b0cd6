//! The drills: each starts its own platform in a temporary directory, drives load, injects its
//! faults, lets everything settle, checks the invariants and returns a [`Report`].
//!
//! Progress is measured in acknowledged requests, never in elapsed time: a drill waits "until 40
//! more writes were acknowledged on uk", with a generous bound that only stops a drill whose
//! platform never recovers. Nothing passes or fails on speed.

use crate::control::{ControlApi, DRILL_FLAG};
use crate::faults::UdpFaultProxy;
use crate::invariants;
use crate::load::{Load, Targets, COUNTRY_ADDRESSES};
use crate::platform::{Binaries, Platform, PlatformSpec, Ports, Role, DEMO_PROVIDER_SECRET};
use crate::report::{Check, Report};
use anyhow::{bail, Context};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Longest a drill waits for any one sign of progress (acknowledged requests, readiness,
/// convergence) before it gives up and reports it. A bound for a stuck platform, not a target.
pub const PROGRESS_WAIT_MAX: Duration = Duration::from_secs(90);
/// Longest recovery keeps resending requests whose outcome is unknown.
pub const RECOVERY_WAIT_MAX: Duration = Duration::from_secs(90);

/// A drill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    KillCell,
    KillControl,
    PartitionControl,
    KillRouter,
    Failover,
    FailoverAsync,
    PspChaos,
    ExportChaos,
    KillStandby,
    PartitionReplica,
    DoublePrimary,
}

impl Scenario {
    pub const ALL: [Scenario; 11] = [
        Scenario::KillCell,
        Scenario::KillControl,
        Scenario::PartitionControl,
        Scenario::KillRouter,
        Scenario::Failover,
        Scenario::FailoverAsync,
        Scenario::PspChaos,
        Scenario::ExportChaos,
        Scenario::KillStandby,
        Scenario::PartitionReplica,
        Scenario::DoublePrimary,
    ];

    /// Whether the drill runs its target with a replicating standby.
    fn needs_standby(self) -> bool {
        matches!(
            self,
            Scenario::Failover
                | Scenario::FailoverAsync
                | Scenario::KillStandby
                | Scenario::PartitionReplica
                | Scenario::DoublePrimary
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            Scenario::KillCell => "kill-cell",
            Scenario::KillControl => "kill-control",
            Scenario::PartitionControl => "partition-control",
            Scenario::KillRouter => "kill-router",
            Scenario::Failover => "failover",
            Scenario::FailoverAsync => "failover-async",
            Scenario::PspChaos => "psp-chaos",
            Scenario::ExportChaos => "export-chaos",
            Scenario::KillStandby => "kill-standby",
            Scenario::PartitionReplica => "partition-replica",
            Scenario::DoublePrimary => "double-primary",
        }
    }

    pub fn parse(text: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().find(|s| s.name() == text)
    }

    pub fn about(self) -> &'static str {
        match self {
            Scenario::KillCell => "kill -9 a cell under load, restart it on the same data",
            Scenario::KillControl => {
                "kill -9 global-control, flip nothing, restart it; cells keep serving, then converge"
            }
            Scenario::PartitionControl => {
                "cut the QUIC path between global-control and one cell (UDP fault proxy), change a flag, heal"
            }
            Scenario::KillRouter => "kill -9 the router under load, restart it",
            Scenario::Failover => {
                "kill -9 the primary of a jurisdiction with a sync standby; promote it; nothing acknowledged is lost"
            }
            Scenario::FailoverAsync => {
                "the same with an async standby: what is lost was acknowledged within the lag reported at the kill"
            }
            Scenario::PspChaos => {
                "deposits and withdrawals through the card PSP under every notification fault, a kill -9 midway"
            }
            Scenario::ExportChaos => {
                "a month of Spain's regulator exports built at once, kill -9 of the cell mid-build, twice; all verify"
            }
            Scenario::KillStandby => {
                "kill -9 a jurisdiction's standby under load; the primary keeps serving; it catches up"
            }
            Scenario::PartitionReplica => {
                "cut the shipping path between a primary and its standby (UDP fault proxy), then heal; it catches up"
            }
            Scenario::DoublePrimary => {
                "promote a standby and its live primary both: neither may write beside the other; ops re-seed one"
            }
        }
    }
}

/// How to run drills.
#[derive(Debug, Clone)]
pub struct DrillOptions {
    pub quick: bool,
    pub seed: u64,
    pub bins: Binaries,
    /// The directory holding `config/regions` and `config/providers`.
    pub config_root: PathBuf,
    pub geoip: PathBuf,
    /// Keep the temporary data directory (stores, logs) after the drill.
    pub keep: bool,
}

/// How much load and how many repetitions: `--quick` for tests and CI, the default for ops.
#[derive(Debug, Clone, Copy)]
struct Sizes {
    workers: usize,
    /// Acknowledged writes on the target before each fault.
    warmup: u64,
    /// Acknowledged writes elsewhere while the fault lasts.
    during: u64,
    /// Acknowledged writes on the target after it is back.
    after: u64,
    /// How many times the fault is repeated.
    rounds: u32,
}

impl Sizes {
    fn of(quick: bool) -> Sizes {
        if quick {
            Sizes { workers: 6, warmup: 30, during: 15, after: 15, rounds: 1 }
        } else {
            Sizes { workers: 16, warmup: 300, during: 150, after: 150, rounds: 3 }
        }
    }
}

/// Runs one scenario to its report. Never panics on a platform problem: a drill that cannot
/// set up or gets stuck says so in `aborted`.
pub async fn run(scenario: Scenario, options: &DrillOptions) -> Report {
    let mut report = Report::new(scenario.name(), options.seed, options.quick);
    let dir = tempfile::Builder::new().prefix(&format!("drill-{}-", scenario.name())).tempdir();
    match dir {
        Err(e) => report.aborted = Some(format!("create a temporary directory: {e}")),
        Ok(dir) => {
            if let Err(e) = run_in(scenario, options, dir.path().to_owned(), &mut report).await {
                report.aborted = Some(format!("{e:#}"));
            }
            if options.keep || !report.passed() {
                report.data_dir = Some(dir.keep().display().to_string());
            }
        }
    }
    report.finished = Some(chrono::Utc::now());
    report
}

/// A platform with load on it, for one scenario.
struct Drill {
    platform: Platform,
    load: Load,
    control: ControlApi,
    sizes: Sizes,
    rng: StdRng,
    /// The drill flag's value as last set.
    flag_on: bool,
}

async fn run_in(scenario: Scenario, options: &DrillOptions, dir: PathBuf, report: &mut Report) -> anyhow::Result<()> {
    let mut rng = StdRng::seed_from_u64(options.seed);
    let regions = contracts::region::RegionConfig::load_dir(&options.config_root.join("config/regions"))
        .context("load region files")?;
    let cell_ids: Vec<String> = regions.iter().map(|r| r.cell_id.clone()).collect();
    // The jurisdiction each drill aims at, chosen by the seed.
    // The replication drills aim at a jurisdiction whose standby is synchronous, where nothing
    // acknowledged may be lost; failover-async at an asynchronous one, which loses up to its lag.
    let durability = match scenario {
        Scenario::FailoverAsync => contracts::region::ReplicaDurability::Async,
        _ => contracts::region::ReplicaDurability::Sync,
    };
    let with_standby: Vec<String> = regions
        .iter()
        .filter(|r| r.standby_endpoint.is_some())
        .filter(|r| !scenario.needs_standby() || r.replication.durability == durability)
        .map(|r| r.cell_id.clone())
        .collect();
    let target = match scenario {
        s if s.needs_standby() => {
            if with_standby.is_empty() {
                bail!("no region file names a standby endpoint with {durability:?} durability");
            }
            with_standby[rng.random_range(0..with_standby.len())].clone()
        }
        _ => cell_ids[rng.random_range(0..cell_ids.len())].clone(),
    };
    let standbys = if scenario.needs_standby() { vec![target.clone()] } else { Vec::new() };
    let ports = Ports::free(&regions, &standbys)?;
    let proxy = match scenario {
        Scenario::PartitionControl => Some(UdpFaultProxy::start(ports.control_quic).await?),
        Scenario::PartitionReplica => {
            let shipping = ports.shipping.get(&Role::Primary(target.clone())).context("the primary's shipping port")?;
            Some(UdpFaultProxy::start(*shipping).await?)
        }
        _ => None,
    };
    let (mut control_via, mut shipping_via) = (BTreeMap::new(), BTreeMap::new());
    match (&proxy, scenario) {
        (Some(p), Scenario::PartitionReplica) => {
            shipping_via.insert(target.clone(), p.addr);
        }
        (Some(p), _) => {
            control_via.insert(target.clone(), p.addr);
        }
        _ => {}
    }
    let admin_token = format!("gct_drill_{}", hex::encode(rng.random::<[u8; 24]>()));
    let spec = PlatformSpec {
        config_root: options.config_root.clone(),
        data_dir: dir.clone(),
        bins: options.bins.clone(),
        geoip: options.geoip.clone(),
        ports,
        control_via,
        shipping_via,
        admin_token: admin_token.clone(),
    };
    report.step(format!(
        "starting global-control, {} cells{}, router in {}",
        cell_ids.len(),
        if standbys.is_empty() { String::new() } else { format!(" (+ {} standby)", standbys.join(",")) },
        dir.display()
    ));
    let platform = Platform::start(spec).await?;
    report.step("platform ready".to_owned());
    let control = ControlApi { http: platform.http.clone(), base: platform.url(&Role::Control), token: admin_token };
    let targets = Targets {
        router: platform.url(&Role::Router),
        cells: cell_ids.iter().map(|id| (id.clone(), platform.url(&Role::Primary(id.clone())))).collect(),
        provider_secret: DEMO_PROVIDER_SECRET.to_owned(),
    };
    let sizes = Sizes::of(options.quick);
    let load = Load::start(platform.http.clone(), targets, &regions, rng.random(), sizes.workers, None);
    let flag_on = rng.random_bool(0.5);
    let mut drill = Drill { platform, load, control, sizes, rng, flag_on };
    let outcome = match scenario {
        Scenario::KillCell => kill_cell(&mut drill, &target, report).await,
        Scenario::KillRouter => kill_router(&mut drill, report).await,
        Scenario::KillControl => kill_control(&mut drill, report).await,
        Scenario::PartitionControl => partition_control(&mut drill, &target, proxy.as_ref(), report).await,
        Scenario::Failover | Scenario::FailoverAsync => failover(&mut drill, &target, report).await,
        Scenario::PspChaos => crate::psp_chaos::run(&mut drill.platform, &target, options.quick, report).await,
        Scenario::ExportChaos => {
            crate::export_chaos::run(&mut drill.platform, &drill.control, options.quick, report).await
        }
        Scenario::KillStandby => kill_standby(&mut drill, &target, report).await,
        Scenario::PartitionReplica => partition_replica(&mut drill, &target, proxy.as_ref(), report).await,
        Scenario::DoublePrimary => double_primary(&mut drill, &target, report).await,
    };
    // Whatever happened, settle and check what can be checked, then stop cleanly.
    let settled = settle_and_check(&mut drill, report).await;
    let ended = drill.platform.stop().await;
    let unclean: Vec<String> =
        ended.iter().filter(|(_, how)| how != "exited with 0").map(|(who, how)| format!("{who}: {how}")).collect();
    report.check(Check::new("every process stops cleanly on SIGTERM", unclean, format!("{} processes", ended.len())));
    outcome.and(settled)
}

/// Waits until the load has acknowledged `count` more writes on `cell` (or anywhere).
async fn progress(drill: &Drill, cell: Option<&str>, count: u64, what: &str) -> anyhow::Result<()> {
    let start = drill.load.acked(cell);
    if !drill.load.wait_until(PROGRESS_WAIT_MAX, |l| l.acked(cell) >= start + count).await {
        bail!("{what}: fewer than {count} writes acknowledged{} within {PROGRESS_WAIT_MAX:?}", on(cell));
    }
    Ok(())
}

/// " [2/3]" when a fault repeats, so each repetition's checks are told apart.
fn rounds_label(round: u32, rounds: u32) -> String {
    if rounds > 1 {
        format!(" [{round}/{rounds}]")
    } else {
        String::new()
    }
}

fn on(cell: Option<&str>) -> String {
    cell.map(|c| format!(" on {c}")).unwrap_or_default()
}

/// Waits for `count` writes acknowledged on other cells than `down`, and records the check that
/// they kept serving.
async fn others_keep_serving(drill: &Drill, down: &str, count: u64, label: &str, report: &mut Report) {
    let start = drill.load.acked_elsewhere(down);
    let ok = drill.load.wait_until(PROGRESS_WAIT_MAX, |l| l.acked_elsewhere(down) >= start + count).await;
    let got = drill.load.acked_elsewhere(down) - start;
    report.check(Check::holds(
        &format!("other cells keep serving while {down} is down{label}"),
        ok,
        format!("{got} writes acknowledged elsewhere during the outage"),
    ));
}

async fn kill_cell(drill: &mut Drill, target: &str, report: &mut Report) -> anyhow::Result<()> {
    let role = Role::Primary(target.to_owned());
    for round in 1..=drill.sizes.rounds {
        progress(drill, Some(target), drill.sizes.warmup, "warm-up").await?;
        let pid = drill.platform.process(&role)?.pid().unwrap_or(0);
        drill.platform.kill9(&role)?;
        report.fault(format!("kill -9 cell {target} (pid {pid}) under load [{round}/{}]", drill.sizes.rounds));
        let label = rounds_label(round, drill.sizes.rounds);
        others_keep_serving(drill, target, drill.sizes.during, &label, report).await;
        drill.platform.restart(&role).await?;
        report.step(format!("cell {target} restarted on the same data, ready"));
        progress(drill, Some(target), drill.sizes.after, "after restart").await?;
        report.step(format!("{target} acknowledging writes again"));
    }
    Ok(())
}

async fn kill_router(drill: &mut Drill, report: &mut Report) -> anyhow::Result<()> {
    for round in 1..=drill.sizes.rounds {
        progress(drill, None, drill.sizes.warmup, "warm-up").await?;
        let pid = drill.platform.process(&Role::Router)?.pid().unwrap_or(0);
        drill.platform.kill9(&Role::Router)?;
        report.fault(format!("kill -9 router (pid {pid}) under load [{round}/{}]", drill.sizes.rounds));
        // Providers and PSPs call cells directly: money keeps moving without the router.
        let start = drill.load.acked(None);
        let ok = drill.load.wait_until(PROGRESS_WAIT_MAX, |l| l.acked(None) >= start + drill.sizes.during).await;
        report.check(Check::holds(
            &format!(
                "cells keep serving their direct callers while the router is down{}",
                rounds_label(round, drill.sizes.rounds)
            ),
            ok,
            format!("{} writes acknowledged by cells during the outage", drill.load.acked(None) - start),
        ));
        drill.platform.restart(&Role::Router).await?;
        report.step("router restarted, ready".to_owned());
        let reads = drill.load.shared.progress().reads_ok;
        if !drill
            .load
            .wait_until(PROGRESS_WAIT_MAX, |l| l.shared.progress().reads_ok >= reads + drill.sizes.after)
            .await
        {
            bail!("no routed request answered after the router restarted");
        }
        report.step("router answering players again".to_owned());
    }
    Ok(())
}

/// Sets the drill flag and, when cells follow the control plane, waits until `cells` applied it
/// and checks that each of them now evaluates it to the new value. Returns (version, value).
async fn flag_change(
    drill: &mut Drill,
    cells: &[String],
    label: &str,
    report: &mut Report,
) -> anyhow::Result<(u64, bool)> {
    // Alternate, so every change is visible in what the cells serve.
    drill.flag_on = !drill.flag_on;
    let on = drill.flag_on;
    let version = drill.control.flag_set(DRILL_FLAG, on, &format!("drill: {label}")).await?;
    report.step(format!("flag {DRILL_FLAG} set {} (change-log version {version})", if on { "on" } else { "off" }));
    if !drill.platform.cells_follow_control {
        return Ok((version, on));
    }
    let changed = tokio::time::Instant::now();
    let (acked, state) = drill.control.converged(cells, version, PROGRESS_WAIT_MAX).await;
    let took_ms = changed.elapsed().as_millis();
    let served = cell_flag_values(drill, cells).await;
    let wrong: Vec<&String> = served.iter().filter(|(_, v)| **v != Some(on)).map(|(c, _)| c).collect();
    report.check(Check::holds(
        &format!("cells converge on the flag change ({label})"),
        acked && wrong.is_empty(),
        format!(
            "version {version} acked by every cell after {took_ms} ms: {:?}; each cell evaluates {DRILL_FLAG}: {served:?}",
            state.acked
        ),
    ));
    Ok((version, on))
}

/// What each cell's own `GET /flags/evaluate` answers for the drill flag (`None`: no value).
async fn cell_flag_values(drill: &Drill, cells: &[String]) -> BTreeMap<String, Option<bool>> {
    let mut values = BTreeMap::new();
    for cell in cells {
        let path = format!("/flags/evaluate?flag={DRILL_FLAG}&playerId={cell}-drill");
        let value = match drill.platform.get(&Role::Primary(cell.clone()), &path).await {
            Ok(reply) if reply.status == 200 => reply.json()["value"].as_bool(),
            _ => None,
        };
        values.insert(cell.clone(), value);
    }
    values
}

fn control_missing(report: &mut Report, what: &[&str]) {
    for name in what {
        report.check(Check::skipped(
            name,
            "`cell serve` has no --control flag yet (issue 5, cell side): cells do not follow the control plane",
        ));
    }
}

async fn kill_control(drill: &mut Drill, report: &mut Report) -> anyhow::Result<()> {
    let cells = drill.platform.cell_ids();
    for round in 1..=drill.sizes.rounds {
        progress(drill, None, drill.sizes.warmup, "warm-up").await?;
        flag_change(drill, &cells, "before the outage", report).await?;
        let pid = drill.platform.process(&Role::Control)?.pid().unwrap_or(0);
        drill.platform.kill9(&Role::Control)?;
        report.fault(format!("kill -9 global-control (pid {pid}) under load [{round}/{}]", drill.sizes.rounds));
        let start = drill.load.acked(None);
        let unknown = drill.load.unknown();
        let ok = drill.load.wait_until(PROGRESS_WAIT_MAX, |l| l.acked(None) >= start + drill.sizes.during).await;
        report.check(Check::holds(
            &format!("cells keep serving without the control plane{}", rounds_label(round, drill.sizes.rounds)),
            ok,
            format!(
                "{} writes acknowledged, {} without an answer during the outage",
                drill.load.acked(None) - start,
                drill.load.unknown() - unknown
            ),
        ));
        drill.platform.restart(&Role::Control).await?;
        report.step("global-control restarted on the same data, ready".to_owned());
        flag_change(drill, &cells, "after the restart", report).await?;
    }
    if !drill.platform.cells_follow_control {
        control_missing(report, &["cells converge on flag changes before and after the outage"]);
    }
    Ok(())
}

async fn partition_control(
    drill: &mut Drill,
    target: &str,
    proxy: Option<&UdpFaultProxy>,
    report: &mut Report,
) -> anyhow::Result<()> {
    let proxy = proxy.context("the partition drill needs its fault proxy")?;
    let cells = drill.platform.cell_ids();
    let others: Vec<String> = cells.iter().filter(|c| *c != target).cloned().collect();
    for round in 1..=drill.sizes.rounds {
        progress(drill, None, drill.sizes.warmup, "warm-up").await?;
        flag_change(drill, &cells, "before the partition", report).await?;
        proxy.set_cut(true);
        report.fault(format!(
            "cut the QUIC path global-control <-> {target} (fault proxy {} drops every datagram) [{round}/{}]",
            proxy.addr, drill.sizes.rounds
        ));
        let (version, on) = flag_change(drill, &others, "during the partition, other cells", report).await?;
        if drill.platform.cells_follow_control {
            let state = drill.control.sync_state().await?;
            let acked = state.acked.get(target).copied().unwrap_or(0);
            let served = cell_flag_values(drill, &[target.to_owned()]).await.remove(target).flatten();
            report.check(Check::holds(
                &format!("the partition holds: {target} has not applied the change and serves its copy"),
                acked < version && served.is_some() && served != Some(on),
                format!("{target} acked version {acked} of {version}; it evaluates {DRILL_FLAG} to {served:?}"),
            ));
        }
        keeps_acknowledging(
            drill,
            target,
            &format!("{target} keeps serving while cut off from the control plane"),
            "during the partition",
            report,
        )
        .await;
        proxy.set_cut(false);
        let (forwarded, dropped) = proxy.counts();
        report.step(format!("healed the path ({forwarded} datagrams forwarded, {dropped} dropped so far)"));
        if drill.platform.cells_follow_control {
            let (ok, state) = drill.control.converged(&cells, version, PROGRESS_WAIT_MAX).await;
            let served = cell_flag_values(drill, &[target.to_owned()]).await.remove(target).flatten();
            report.check(Check::holds(
                &format!("{target} converges after the partition heals"),
                ok && served == Some(on),
                format!(
                    "acked per cell {:?} of version {version}; {target} evaluates {DRILL_FLAG} to {served:?}",
                    state.acked
                ),
            ));
        }
    }
    if !drill.platform.cells_follow_control {
        control_missing(
            report,
            &[
                "cells converge on flag changes",
                "the partition holds (the cut-off cell misses the change)",
                "the cut-off cell converges after the partition heals",
            ],
        );
    }
    Ok(())
}

async fn failover(drill: &mut Drill, target: &str, report: &mut Report) -> anyhow::Result<()> {
    use crate::platform::{replication_args, without_replication_args};
    let primary = Role::Primary(target.to_owned());
    let standby = Role::Standby(target.to_owned());
    let region = drill.platform.region(target).context("target region")?.clone();
    let ip = COUNTRY_ADDRESSES
        .iter()
        .find(|(c, _)| region.licensed_countries.iter().any(|l| l.as_str() == *c))
        .map(|(_, ip)| *ip)
        .with_context(|| format!("no test address for a country of {target}"))?;
    let router = drill.platform.url(&Role::Router);
    progress(drill, Some(target), drill.sizes.warmup, "warm-up").await?;
    let lag = metric(drill, &standby, "cell_replication_lag_versions").await;
    let lag_seconds: Option<f64> = metric_as(drill, &standby, "cell_replication_lag_seconds").await;
    let sampled = std::time::Instant::now();
    let acked = drill.load.acked(Some(target));
    let pid = drill.platform.process(&primary)?.pid().unwrap_or(0);
    drill.platform.kill9(&primary)?;
    let killed = std::time::Instant::now();
    report.fault(format!(
        "kill -9 primary of {target} (pid {pid}) after {acked} acknowledged writes; its standby was {} commits \
         ({} s) behind ({:?} durability)",
        lag.map_or("an unknown number of".into(), |l| l.to_string()),
        lag_seconds.map_or("?".into(), |s| format!("{s:.3}")),
        region.replication.durability
    ));
    if region.replication.durability == contracts::region::ReplicaDurability::Async {
        // What the standby may lack: writes acknowledged since it was last caught up (its lag
        // then), or since the lag was read, widened by one heartbeat (how late a standby can
        // learn the primary's latest version). Anything lost before that fails the checks.
        let behind = Duration::from_secs_f64(lag_seconds.unwrap_or(0.0).max(0.0)) + replication::shipping::HEARTBEAT;
        let from = sampled.checked_sub(behind).unwrap_or(sampled);
        drill.load.shared.journal.lock().expect("journal lock").loss_window =
            Some(crate::load::LossWindow { cell: target.to_owned(), from, to: killed });
    }

    // Promotion: the standby stops, `cell promote` bumps its epoch, it starts as the writer.
    let shipping = drill.platform.spec.ports.shipping.clone();
    let data = drill.platform.spec.data_dir.join(standby.to_string());
    drill.platform.process(&standby)?.terminate().await?;
    let promoted = std::process::Command::new(&drill.platform.spec.bins.cell)
        .args(["promote", "--data"])
        .arg(&data)
        .output()
        .context("run cell promote")?;
    anyhow::ensure!(promoted.status.success(), "cell promote: {}", String::from_utf8_lossy(&promoted.stderr));
    report.step(format!("promoted the standby: {}", String::from_utf8_lossy(&promoted.stdout).trim()));
    {
        let process = drill.platform.process(&standby)?;
        let mut args = without_replication_args(process.args());
        args.extend(replication_args(&shipping, &standby, true, &region));
        process.set_args(args);
        process.follower = false;
    }
    drill.platform.restart(&standby).await?;
    drill.platform.writers.insert(target.to_owned(), standby.clone());
    drill.load.shared.move_cell(target, drill.platform.url(&standby));

    // A new player of the jurisdiction registers through the router until it answers: the
    // router must take them to the promoted standby, and nobody else may answer.
    let probe = format!("{target}-failover-{}", drill.rng.random::<u32>());
    let body = json!({
        "playerId": probe, "dateOfBirth": "1990-04-01", "country": region.licensed_countries[0].as_str(),
        "currency": region.default_currency.code(), "password": crate::load::DRILL_PASSWORD,
        "profile": crate::load::profile(&probe, target, region.licensed_countries[0].as_str(), false, false)
    });
    let key = format!("{probe}-reg");
    let headers = [("x-forwarded-for", ip), ("x-idempotency-key", key.as_str())];
    let deadline = tokio::time::Instant::now() + PROGRESS_WAIT_MAX;
    let mut answers: BTreeMap<String, u32> = BTreeMap::new();
    let mut foreign = Vec::new();
    let registered = loop {
        let reply = drill
            .platform
            .http
            .send(None, "POST", &format!("{router}/players"), &headers, Some(body.to_string().into_bytes()))
            .await;
        if let Ok(r) = &reply {
            *answers.entry(format!("{} from {}", r.status, r.cell())).or_default() += 1;
            if r.cell() != target && r.cell() != "router" {
                foreign.push(format!("{} answered by {}", r.status, r.cell()));
            }
            if r.status == 201 {
                break true;
            }
        }
        if tokio::time::Instant::now() > deadline {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    report.step(format!("router answers for {target} after the promotion: {answers:?}"));
    report.check(Check::new(
        &format!("no other jurisdiction's cell served {target}'s traffic"),
        foreign,
        format!("{} probe answers", answers.values().sum::<u32>()),
    ));
    let on_standby = drill.platform.get(&standby, &format!("/ops/players/{probe}/balance")).await.map(|r| r.status);
    report.check(Check::holds(
        &format!("the router moved {target}'s traffic to the promoted standby"),
        registered && matches!(on_standby, Ok(200)),
        format!("registration through the router answered: {registered}; the standby knows the player: {on_standby:?}"),
    ));
    progress(drill, Some(target), drill.sizes.after, "on the promoted standby").await?;
    report.step(format!("{target} acknowledging writes on the promoted standby"));
    let chain = drill.platform.get(&standby, "/audit/verify").await.map(|r| (r.status, r.json()["ok"].clone()));
    report.check(Check::holds(
        "the promoted standby's audit chain verifies (the primary's records, then its own)",
        matches!(&chain, Ok((200, ok)) if ok == &json!(true)),
        format!("{chain:?}"),
    ));

    // The deposed primary comes back on its data: its standby (now the writer) holds a higher
    // epoch, so it is fenced, answers no write and is not ready (the router sends it nothing).
    drill.platform.process(&primary)?.spawn()?;
    let deadline = tokio::time::Instant::now() + PROGRESS_WAIT_MAX;
    let fenced = loop {
        let credit = json!({ "playerId": probe, "currency": region.default_currency.code(), "amount": "1.00", "reason": "deposit" });
        let url = format!("{}/wallet/credit", drill.platform.url(&primary));
        let headers = [("x-idempotency-key", "failover-fenced-credit"), ("content-type", "application/json")];
        let reply =
            drill.platform.http.send(Some(target), "POST", &url, &headers, Some(credit.to_string().into_bytes())).await;
        let ready = drill.platform.get(&primary, "/readyz").await.map(|r| r.status).ok();
        if let Ok(r) = &reply {
            if r.status == 503 && r.code() == "CELL_FENCED" && ready == Some(503) {
                break Some(r.code());
            }
        }
        if tokio::time::Instant::now() > deadline {
            break reply.ok().map(|r| format!("{} {}", r.status, r.code()));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    report.check(Check::holds(
        "the restarted old primary is fenced: it refuses writes (503 CELL_FENCED) and is not ready",
        fenced.as_deref() == Some("CELL_FENCED"),
        format!("its answer to a credit: {fenced:?}"),
    ));

    // Re-seeded as the new standby: it takes a snapshot of the writer and follows it.
    {
        drill.platform.process(&primary)?.terminate().await?;
        let process = drill.platform.process(&primary)?;
        let mut args = without_replication_args(process.args());
        args.extend(replication_args(&shipping, &primary, true, &region));
        process.set_args(args);
        process.follower = true;
    }
    drill.platform.restart(&primary).await?;
    let deadline = tokio::time::Instant::now() + PROGRESS_WAIT_MAX;
    let caught_up = loop {
        let lag = metric(drill, &primary, "cell_replication_lag_versions").await;
        let epoch = metric(drill, &primary, "cell_epoch").await;
        let writer_epoch = metric(drill, &standby, "cell_epoch").await;
        if lag == Some(0) && epoch.is_some() && epoch == writer_epoch {
            break Ok(epoch);
        }
        if tokio::time::Instant::now() > deadline {
            break Err(format!("lag {lag:?}, epoch {epoch:?}, the writer's {writer_epoch:?}"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    report.check(Check::holds(
        "the old primary, re-seeded as the standby, caught up with the writer under its epoch",
        caught_up.is_ok(),
        format!("{caught_up:?}"),
    ));
    Ok(())
}

/// Checks that `target` acknowledges `sizes.during` more writes within the wait (`during` says
/// while what).
async fn keeps_acknowledging(drill: &Drill, target: &str, name: &str, during: &str, report: &mut Report) {
    let start = drill.load.acked(Some(target));
    let ok = drill.load.wait_until(PROGRESS_WAIT_MAX, |l| l.acked(Some(target)) >= start + drill.sizes.during).await;
    let acked = drill.load.acked(Some(target)) - start;
    report.check(Check::holds(name, ok, format!("{acked} writes acknowledged on {target} {during}")));
}

/// Waits until `role` follows its writer with nothing outstanding: its lag, or why not.
async fn caught_up(drill: &Drill, role: &Role) -> Result<u64, String> {
    let deadline = tokio::time::Instant::now() + PROGRESS_WAIT_MAX;
    loop {
        let following = metric(drill, role, "cell_replication_following").await;
        let lag = metric(drill, role, "cell_replication_lag_versions").await;
        if following == Some(1) && lag == Some(0) {
            return Ok(0);
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("following {following:?}, lag {lag:?} after {PROGRESS_WAIT_MAX:?}"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn kill_standby(drill: &mut Drill, target: &str, report: &mut Report) -> anyhow::Result<()> {
    let standby = Role::Standby(target.to_owned());
    progress(drill, Some(target), drill.sizes.warmup, "warm-up").await?;
    let pid = drill.platform.process(&standby)?.pid().unwrap_or(0);
    drill.platform.kill9(&standby)?;
    report.fault(format!("kill -9 the standby of {target} (pid {pid}) under load"));
    let name = format!("{target}'s primary keeps acknowledging writes without its standby");
    keeps_acknowledging(drill, target, &name, "while the standby was down", report).await;
    drill.platform.restart(&standby).await?;
    report.step(format!("standby of {target} restarted on its data, following"));
    progress(drill, Some(target), drill.sizes.after, "after the standby's restart").await?;
    let lag = caught_up(drill, &standby).await;
    report.check(Check::holds("the standby caught up with its primary", lag.is_ok(), format!("{lag:?}")));
    Ok(())
}

async fn partition_replica(
    drill: &mut Drill,
    target: &str,
    proxy: Option<&UdpFaultProxy>,
    report: &mut Report,
) -> anyhow::Result<()> {
    let proxy = proxy.context("the partition drill needs its fault proxy")?;
    let standby = Role::Standby(target.to_owned());
    progress(drill, Some(target), drill.sizes.warmup, "warm-up").await?;
    proxy.set_cut(true);
    report.fault(format!(
        "cut the shipping path {target} primary <-> standby (fault proxy {} drops every datagram)",
        proxy.addr
    ));
    // In `sync` durability a write waits for the standby's ack at most 5 s; after one such wait
    // the primary writes alone, and says so, until the standby has caught up.
    keeps_acknowledging(
        drill,
        target,
        &format!("{target} acknowledges writes while its standby is cut off"),
        "during the partition",
        report,
    )
    .await;
    // Cut off from global-control as well, nothing confirms its epoch any more (and a promotion
    // may be under way where it cannot see): its lease runs out and it stops writing, until
    // global-control answers again.
    let primary = Role::Primary(target.to_owned());
    let currency = drill.platform.region(target).context("target region")?.default_currency.code().to_owned();
    drill.platform.process(&Role::Control)?.terminate().await?;
    report.fault(format!(
        "stopped global-control: {target}'s primary is cut off from both parties that confirm its lease"
    ));
    let lease = replication::lease::LEASE;
    let stopped = until_answer(drill, &primary, target, &currency, "503 CELL_LEASE_EXPIRED", lease * 3).await;
    let ready = drill.platform.get(&primary, "/readyz").await.map(|r| r.status).ok();
    report.check(Check::holds(
        &format!("cut off from its standby and global-control, {target}'s primary stops writing once its {} s lease runs out, and is not ready", lease.as_secs()),
        stopped.0 && ready == Some(503),
        format!("its answer to a credit: {} after {:.1} s; /readyz {ready:?}", stopped.1, stopped.2.as_secs_f64()),
    ));
    drill.platform.restart(&Role::Control).await?;
    keeps_acknowledging(
        drill,
        target,
        &format!("with global-control back (its standby still cut off), {target} acknowledges writes again"),
        "with global-control back",
        report,
    )
    .await;
    proxy.set_cut(false);
    let (forwarded, dropped) = proxy.counts();
    report.step(format!("healed the path ({forwarded} datagrams forwarded, {dropped} dropped)"));
    let lag = caught_up(drill, &standby).await;
    report.check(Check::holds("the standby caught up after the partition healed", lag.is_ok(), format!("{lag:?}")));
    Ok(())
}

/// Runs `cell promote` on a stopped role's data.
fn promote(drill: &Drill, role: &Role, over_fence: bool) -> anyhow::Result<String> {
    let data = drill.platform.spec.data_dir.join(role.to_string());
    let mut command = std::process::Command::new(&drill.platform.spec.bins.cell);
    command.args(["promote", "--data"]).arg(&data);
    if over_fence {
        command.arg("--over-fence");
    }
    let out = command.output().context("run cell promote")?;
    anyhow::ensure!(out.status.success(), "cell promote {role}: {}", String::from_utf8_lossy(&out.stderr));
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Restarts `role` as its cell's writer (`writer`) or as the follower of the other role.
async fn restart_as(drill: &mut Drill, role: &Role, target: &str, writer: bool) -> anyhow::Result<()> {
    use crate::platform::{replication_args, without_replication_args};
    let region = drill.platform.region(target).context("target region")?.clone();
    let shipping = drill.platform.spec.ports.shipping.clone();
    // `replication_args` gives the primary the writer's flags unless swapped, the standby the
    // follower's unless swapped.
    let swapped = matches!(role, Role::Primary(_)) != writer;
    let process = drill.platform.process(role)?;
    let mut args = without_replication_args(process.args());
    args.extend(replication_args(&shipping, role, swapped, &region));
    process.set_args(args);
    process.follower = !writer;
    process.spawn()
}

/// Credits `role` (a fresh key each time) until its answer starts with `wanted` or `within`
/// passes: whether it did, the last answer, and how long it took.
async fn until_answer(
    drill: &Drill,
    role: &Role,
    target: &str,
    currency: &str,
    wanted: &str,
    within: Duration,
) -> (bool, String, Duration) {
    let started = tokio::time::Instant::now();
    let mut n = 0u32;
    loop {
        n += 1;
        let credit = json!({ "playerId": format!("{target}-nobody"), "currency": currency, "amount": "1.00", "reason": "deposit" });
        let url = format!("{}/wallet/credit", drill.platform.url(role));
        let key = format!("lease-probe-{}-{n}", std::process::id());
        let headers = [("x-idempotency-key", key.as_str()), ("content-type", "application/json")];
        let reply =
            drill.platform.http.send(Some(target), "POST", &url, &headers, Some(credit.to_string().into_bytes())).await;
        let answer = match reply {
            Ok(r) => format!("{} {}", r.status, if r.status == 200 { String::new() } else { r.code() }),
            Err(e) => e.to_string(),
        };
        if answer.starts_with(wanted) || started.elapsed() > within {
            return (answer.starts_with(wanted), answer, started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Whether `role` refuses a write with 503 CELL_FENCED.
async fn refuses_writes(drill: &Drill, role: &Role, target: &str, currency: &str) -> Option<String> {
    let credit =
        json!({ "playerId": format!("{target}-nobody"), "currency": currency, "amount": "1.00", "reason": "deposit" });
    let url = format!("{}/wallet/credit", drill.platform.url(role));
    let headers = [("x-idempotency-key", "double-primary-probe"), ("content-type", "application/json")];
    let reply =
        drill.platform.http.send(Some(target), "POST", &url, &headers, Some(credit.to_string().into_bytes())).await;
    reply.ok().map(|r| format!("{} {}", r.status, r.code()))
}

async fn double_primary(drill: &mut Drill, target: &str, report: &mut Report) -> anyhow::Result<()> {
    let (primary, standby) = (Role::Primary(target.to_owned()), Role::Standby(target.to_owned()));
    let currency = drill.platform.region(target).context("target region")?.default_currency.code().to_owned();
    progress(drill, Some(target), drill.sizes.warmup, "warm-up").await?;
    // The deliberate mistake: both stopped and promoted, so both hold the same new epoch; the
    // primary starts as a writer, then the standby does too.
    for role in [&standby, &primary] {
        drill.platform.process(role)?.terminate().await?;
    }
    let epochs = (promote(drill, &primary, false)?, promote(drill, &standby, false)?);
    report.fault(format!("promoted both of {target}'s cells: primary {}, standby {}", epochs.0, epochs.1));
    restart_as(drill, &primary, target, true).await?;
    drill.platform.wait_ready(&primary).await?;
    restart_as(drill, &standby, target, true).await?;
    report.fault(format!("started both as writers of {target}"));
    // They meet (the standby asks at its start, each every 2 s after): both must stop.
    let deadline = tokio::time::Instant::now() + PROGRESS_WAIT_MAX;
    let answers = loop {
        let a = refuses_writes(drill, &primary, target, &currency).await;
        let b = refuses_writes(drill, &standby, target, &currency).await;
        let fenced = |x: &Option<String>| x.as_deref() == Some("503 CELL_FENCED");
        if (fenced(&a) && fenced(&b)) || tokio::time::Instant::now() > deadline {
            break (a, b);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    report.check(Check::holds(
        "two writers at one epoch both stop: each refuses writes (503 CELL_FENCED)",
        answers.0.as_deref() == Some("503 CELL_FENCED") && answers.1.as_deref() == Some("503 CELL_FENCED"),
        format!("primary: {:?}; standby: {:?}", answers.0, answers.1),
    ));
    for role in [&primary, &standby] {
        drill.platform.process(role)?.terminate().await?;
    }
    let refused = promote(drill, &standby, false).err().map(|e| e.to_string());
    report.check(Check::holds(
        "a fenced cell cannot simply be promoted again",
        refused.as_deref().is_some_and(|e| e.contains("re-seed")),
        format!("cell promote on the fenced standby: {refused:?}"),
    ));
    // Ops decide: the primary's data stands (the standby was fenced before it served anything);
    // the standby is re-seeded from it.
    let decided = promote(drill, &primary, true)?;
    report.step(format!("ops promoted the primary over the fence ({decided}); re-seeding the standby from it"));
    restart_as(drill, &primary, target, true).await?;
    drill.platform.wait_ready(&primary).await?;
    restart_as(drill, &standby, target, false).await?;
    drill.platform.wait_ready(&standby).await?;
    progress(drill, Some(target), drill.sizes.after, "after ops chose the writer").await?;
    let lag = caught_up(drill, &standby).await;
    report.check(Check::holds("the re-seeded standby follows the chosen writer", lag.is_ok(), format!("{lag:?}")));
    Ok(())
}

/// Each cell with a standby: `cell replica verify` compares its writer's store with the
/// standby's at one version, now that the load is stopped.
async fn replicas_agree(drill: &mut Drill, report: &mut Report) {
    let cells: Vec<String> = drill.platform.spec.ports.standbys.keys().cloned().collect();
    for cell in cells {
        let writer = drill.platform.writer(&cell);
        let follower = if writer == Role::Primary(cell.clone()) {
            Role::Standby(cell.clone())
        } else {
            Role::Primary(cell.clone())
        };
        let mut command = std::process::Command::new(&drill.platform.spec.bins.cell);
        command
            .args(["replica", "verify", "--primary", &drill.platform.url(&writer)])
            .args(["--standby", &drill.platform.url(&follower)])
            .arg("--tls-dir")
            .arg(&drill.platform.tls_dir);
        // It may wait up to 30 s for a quiet moment: off the runtime's threads.
        let out =
            tokio::task::spawn_blocking(move || command.output()).await.map_err(std::io::Error::other).and_then(|r| r);
        let (ok, detail) = match out {
            Ok(out) => (
                out.status.success(),
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout).split_whitespace().collect::<Vec<_>>().join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            ),
            Err(e) => (false, format!("run cell replica verify: {e}")),
        };
        report.check(Check::holds(
            &format!("cell replica verify: {cell}'s {follower} holds exactly its writer's store"),
            ok,
            detail,
        ));
    }
}

/// A gauge of a role's `/metrics`, if it reports it.
async fn metric(drill: &Drill, role: &Role, name: &str) -> Option<u64> {
    metric_as(drill, role, name).await
}

async fn metric_as<T: std::str::FromStr>(drill: &Drill, role: &Role, name: &str) -> Option<T> {
    let text = drill.platform.get(role, "/metrics").await.ok()?.text();
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Stops the load, resends every request whose outcome is unknown until it has a definite
/// answer, and checks every invariant.
async fn settle_and_check(drill: &mut Drill, report: &mut Report) -> anyhow::Result<()> {
    // Bring back anything a failed step left down, so recovery and the checks can reach it.
    let roles: Vec<Role> = drill.platform.processes.keys().cloned().collect();
    for role in roles {
        if !drill.platform.process(&role)?.is_up() {
            drill.platform.restart(&role).await?;
            report.step(format!("{role} was down at the end: restarted"));
        }
    }
    drill.load.stop().await;
    let parked = drill.load.shared.progress().parked;
    report.step(format!("load stopped; {parked} journeys waiting on a request with an unknown outcome"));
    let unresolved = drill.load.recover(tokio::time::Instant::now() + RECOVERY_WAIT_MAX).await;
    report.step(format!("recovery: parked requests resent with their keys; {unresolved} still unresolved"));
    report.load = drill.load.shared.progress();
    replicas_agree(drill, report).await;
    let journal = std::mem::take(&mut *drill.load.shared.journal.lock().expect("journal lock"));
    let refusals = invariants::refusals_by_code(&journal);
    if !refusals.is_empty() {
        let list: Vec<String> = refusals.iter().map(|(code, n)| format!("{n} {code}")).collect();
        report.note(format!("writes refused, by answer: {}", list.join(", ")));
    }
    report.check(invariants::no_outcome_left_unknown(&journal));
    report.check(invariants::ledger_sums_to_zero(&drill.platform).await);
    let reflected = invariants::acknowledged_writes_reflected(&drill.platform, &journal).await;
    if let Some(w) = &journal.loss_window {
        report.note(format!(
            "asynchronous failover of {}: {} acknowledged writes lost, of {} acknowledged in the {} ms before the \
             kill that the standby's lag then allowed it to lack (the checks fail on any other loss)",
            w.cell,
            reflected.lost,
            reflected.at_risk,
            w.to.duration_since(w.from).as_millis()
        ));
    }
    report.check(reflected.balances);
    report.check(reflected.events);
    report.check(reflected.retries);
    report.check(invariants::served_within_licence(&journal));
    report.check(invariants::responsible_gambling_held(&drill.platform).await);
    report.check(invariants::audit_chain_verifies(&drill.platform).await);
    report.check(invariants::logs_are_plain_text(&drill.platform));
    report.check(invariants::logs_hold_no_secrets(&drill.platform));
    Ok(())
}
