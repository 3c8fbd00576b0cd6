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
