//! Every drill in its quick form, against the real binaries `cargo test --workspace` builds
//! (target/debug/cell, router, global-control). A failing drill prints its whole report,
//! seed included: `drill run SCENARIO --quick --seed N` replays its choices.

use chaos::platform::Binaries;
use chaos::scenarios::{self, DrillOptions, Scenario};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// One drill at a time: each starts seven or eight processes, and the machine has two cores.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn options() -> DrillOptions {
    let dir = Path::new(env!("CARGO_BIN_EXE_drill")).parent().expect("target directory").to_owned();
    let bins = Binaries::in_dir(&dir).unwrap_or_else(|e| {
        panic!("{e:#}\n(`cargo test --workspace` builds them; with `-p chaos` alone, build them first)")
    });
    let geoip = repo().join(".cache/geoip/geo-whois-asn-country.mmdb");
    assert!(geoip.exists(), "{} is missing: run scripts/fetch-geoip.sh first", geoip.display());
    // A new seed each run covers more ground; CHAOS_SEED pins one to replay a failure.
    let seed = std::env::var("CHAOS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random::<u32>);
    DrillOptions { quick: true, seed: seed.into(), bins, config_root: repo(), geoip, keep: false }
}

fn drill(scenario: Scenario) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let options = options();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let report = runtime.block_on(scenarios::run(scenario, &options));
    println!("{report}");
    assert!(report.passed(), "drill {} failed:\n{report}", scenario.name());
}

#[test]
fn kill_cell() {
    drill(Scenario::KillCell);
}

#[test]
fn kill_control() {
    drill(Scenario::KillControl);
}

#[test]
fn partition_control() {
    drill(Scenario::PartitionControl);
}

#[test]
fn kill_router() {
    drill(Scenario::KillRouter);
}

#[test]
fn failover() {
    drill(Scenario::Failover);
}

#[test]
fn failover_async() {
    drill(Scenario::FailoverAsync);
}

#[test]
fn psp_chaos() {
    drill(Scenario::PspChaos);
}

/// The checks can fail: a credit nobody in the journal acknowledged (a double effect, as a
/// broken idempotency layer would leave) is caught by the balance and event checks, while the
/// books still balance and the chain still verifies (the credit is a well-formed posting).
#[test]
fn invariants_catch_an_effect_nobody_acknowledged() {
    use chaos::invariants;
    use chaos::load::{Load, Outcome, StepKind, Targets};
    use chaos::platform::{Platform, PlatformSpec, Ports, Role, DEMO_PROVIDER_SECRET};
    use std::time::Duration;

    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let options = options();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let regions = contracts::region::RegionConfig::load_dir(&repo().join("config/regions")).unwrap();
        let spec = PlatformSpec {
            config_root: repo(),
            data_dir: dir.path().to_owned(),
            bins: options.bins.clone(),
            geoip: options.geoip.clone(),
            ports: Ports::free(&regions, &[]).unwrap(),
            control_via: Default::default(),
            shipping_via: Default::default(),
            admin_token: "gct_test_admin_0123456789abcdef0123456789abcdef".to_owned(),
        };
        let mut platform = Platform::start(spec).await.unwrap();
        let targets = Targets {
            router: platform.url(&Role::Router),
            cells: platform.cell_ids().into_iter().map(|id| (id.clone(), platform.url(&Role::Primary(id)))).collect(),
            provider_secret: DEMO_PROVIDER_SECRET.to_owned(),
        };
        let mut load = Load::start(platform.http.clone(), targets, &regions, options.seed, 2, None);
        assert!(load.wait_until(Duration::from_secs(60), |l| l.acked(None) >= 20).await, "no load progress");
        load.stop().await;
        load.recover(tokio::time::Instant::now() + Duration::from_secs(60)).await;
        let journal = std::mem::take(&mut *load.shared.journal.lock().unwrap());

        let honest = invariants::acknowledged_writes_reflected(&platform, &journal).await;
        assert!(honest.balances.ok() && honest.events.ok(), "{:?}\n{:?}", honest.balances, honest.events);

        // A deposit acknowledged and then lost (as an asynchronous failover may lose one): caught,
        // unless it was acknowledged within the failover's loss window, which then counts it.
        let mut lost = journal
            .records
            .iter()
            .find(|r| r.step.kind == StepKind::Deposit && r.outcome == Outcome::Acked)
            .expect("an acknowledged deposit")
            .clone();
        lost.step.key = format!("{}-lost", lost.step.key);
        lost.step.amount = rust_decimal::Decimal::new(333, 2);
        lost.acked_at = Some(std::time::Instant::now());
        let with_lost = |window: Option<chaos::load::LossWindow>| chaos::load::Journal {
            records: journal.records.iter().cloned().chain([lost.clone()]).collect(),
            loss_window: window,
            ..Default::default()
        };
        let at = lost.acked_at.unwrap();
        let window = |from, to| Some(chaos::load::LossWindow { cell: lost.cell.clone(), from, to });
        let second = Duration::from_secs(1);
        for (name, journal) in [("no failover", with_lost(None)), ("before the window", with_lost(window(at + second, at + 2 * second)))] {
            let r = invariants::acknowledged_writes_reflected(&platform, &journal).await;
            assert!(!r.balances.ok() && !r.events.ok(), "{name}: a lost write went unnoticed");
        }
        // The window holds that write alone (the load's own writes were all acknowledged before).
        let r = invariants::acknowledged_writes_reflected(&platform, &with_lost(window(at, at))).await;
        assert!(r.balances.ok() && r.events.ok(), "{:?}\n{:?}", r.balances, r.events);
        assert_eq!((r.lost, r.at_risk), (1, 1), "the lost deposit is counted");

        // A player whose limits leave room for the rogue credit: one deposit acknowledged, nothing
        // of theirs refused (a tight day limit passed, a self-exclusion would refuse it).
        let free = |player: &str| {
            let theirs = || journal.records.iter().filter(|r| r.player == player);
            theirs().any(|r| r.step.kind == StepKind::Deposit && r.outcome == Outcome::Acked)
                && !theirs().any(|r| matches!(r.outcome, Outcome::Refused { .. }))
        };
        let victim = journal
            .records
            .iter()
            .find(|r| r.step.kind == StepKind::Register && r.outcome == Outcome::Acked && free(&r.player))
            .expect("a registered player")
            .clone();
        let body = serde_json::json!({"playerId": victim.player, "currency": victim.currency, "amount": "7.77", "reason": "deposit"});
        let url = format!("{}/wallet/credit", platform.url(&Role::Primary(victim.cell.clone())));
        let reply = platform
            .http
            .send(Some(&victim.cell), "POST", &url, &[("x-idempotency-key", "rogue")], Some(body.to_string().into_bytes()))
            .await
            .unwrap();
        assert_eq!(reply.status, 200, "{}", reply.text());

        let caught = invariants::acknowledged_writes_reflected(&platform, &journal).await;
        assert!(!caught.balances.ok(), "the balance check missed the rogue credit");
        assert!(caught.balances.problems.iter().any(|p| p.contains(&victim.player)), "{:?}", caught.balances);
        assert!(!caught.events.ok(), "the event check missed the rogue credit");
        assert!(invariants::ledger_sums_to_zero(&platform).await.ok());
        assert!(invariants::audit_chain_verifies(&platform).await.ok());
        platform.stop().await;
    });
}

#[test]
fn export_chaos() {
    drill(Scenario::ExportChaos);
}

#[test]
fn kill_standby() {
    drill(Scenario::KillStandby);
}

#[test]
fn partition_replica() {
    drill(Scenario::PartitionReplica);
}

#[test]
fn double_primary() {
    drill(Scenario::DoublePrimary);
}
