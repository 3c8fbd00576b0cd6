//! `drill`: the whole platform in one command (`drill up`), and chaos drills (`drill run`).
#![forbid(unsafe_code)]

use anyhow::Context;
use chaos::platform::{repo_root_from, Binaries};
use chaos::scenarios::{self, DrillOptions, Scenario};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "drill", about = "Run the whole platform locally, and chaos drills against it")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the whole platform locally (global-control, one cell per region file, the router) on
    /// its documented ports, with a live status screen; Ctrl-C stops it, and running it again
    /// resumes with the same data.
    Up {
        /// Also drive realistic load through it: registrations from every licensed country and
        /// some unlicensed ones, deposits, provider rounds, logins from abroad, a flag flipped
        /// every 15 s.
        #[arg(long)]
        traffic: bool,
        /// With --traffic, at most this many requests a second, spread evenly (0: as fast as the
        /// platform answers, which takes both cores of a small machine and grows .data by about
        /// 1 MB/s).
        #[arg(long, default_value_t = 200)]
        rate: u32,
        /// Where the stores, certificates, logs and admin token live [default: .data in the repository]
        #[arg(long)]
        data: Option<PathBuf>,
        /// Also start the standby cells the region files name (fresh: not fed by replication yet).
        #[arg(long)]
        standbys: bool,
        #[command(flatten)]
        setup: Setup,
    },
    /// Run a drill (or all) on a platform of its own in a temporary directory; print its report.
    /// Exits 1 when any invariant fails.
    Run {
        /// kill-cell, kill-control, partition-control, kill-router, failover, or all.
        scenario: String,
        /// The short form (one fault, a few hundred requests): what `cargo test -p chaos` runs.
        #[arg(long)]
        quick: bool,
        /// Seed of every random choice (target cell, players, amounts); printed in the report.
        #[arg(long)]
        seed: Option<u64>,
        #[command(flatten)]
        setup: Setup,
        /// Keep the temporary data directory (stores and process logs) after a passing drill.
        #[arg(long)]
        keep: bool,
    },
}

/// Where the binaries and configuration come from.
#[derive(clap::Args)]
struct Setup {
    /// Directory holding cell, router and global-control [default: this executable's directory]
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Do not run `cargo build` for them first (it runs only from inside the repository).
    #[arg(long)]
    no_build: bool,
    /// The repository (config/regions, config/providers, scripts) [default: found from the
    /// current directory]
    #[arg(long)]
    repo: Option<PathBuf>,
    /// The router's GeoIP database (MaxMind format) [default: .cache/geoip in the repository,
    /// fetched by scripts/fetch-geoip.sh when missing]
    #[arg(long)]
    geoip: Option<PathBuf>,
}

impl Setup {
    fn resolve(&self) -> anyhow::Result<(Binaries, PathBuf)> {
        let cwd = std::env::current_dir().context("read the current directory")?;
        let repo = match &self.repo {
            Some(r) => r.clone(),
            None => repo_root_from(&cwd).context("run drill from inside the repository (or pass --repo)")?,
        };
        let dir = match &self.bin_dir {
            Some(d) => d.clone(),
            None => std::env::current_exe()
                .context("locate the drill executable")?
                .parent()
                .context("the drill executable has no directory")?
                .to_owned(),
        };
        if !self.no_build && repo.join("Cargo.toml").is_file() && repo.join("cell").is_dir() {
            Binaries::build(&repo, &dir)?;
        }
        Ok((Binaries::in_dir(&dir)?, repo))
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("drill: start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("drill: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Up { traffic, rate, data, standbys, setup } => {
            let (bins, repo) = setup.resolve()?;
            let geoip = ensure_geoip(&repo, setup.geoip.as_deref())?;
            let data_dir = data.unwrap_or_else(|| repo.join(".data"));
            let rate = std::num::NonZeroU32::new(rate);
            chaos::up::up(chaos::up::UpOptions { data_dir, traffic, rate, standbys, bins, repo, geoip }).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Run { scenario, quick, seed, setup, keep } => {
            let scenarios: Vec<Scenario> = if scenario == "all" {
                Scenario::ALL.to_vec()
            } else {
                vec![Scenario::parse(&scenario).with_context(|| {
                    let names: Vec<&str> = Scenario::ALL.iter().map(|s| s.name()).collect();
                    format!("no scenario `{scenario}`: {} or all", names.join(", "))
                })?]
            };
            let (bins, repo) = setup.resolve()?;
            let geoip = ensure_geoip(&repo, setup.geoip.as_deref())?;
            let seed = seed.unwrap_or_else(|| rand::random::<u32>().into());
            let options = DrillOptions { quick, seed, bins, config_root: repo, geoip, keep };
            let mut failed = Vec::new();
            let mut reports = Vec::new();
            for s in scenarios {
                eprintln!("drill: {} ({}), seed {seed}", s.name(), s.about());
                let report = scenarios::run(s, &options).await;
                println!("{report}");
                if !report.passed() {
                    failed.push(s.name());
                }
                reports.push(report);
            }
            if reports.len() > 1 {
                print!("{}", chaos::report::summary(&reports));
            }
            if failed.is_empty() {
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("drill: FAILED: {}", failed.join(", "));
                Ok(ExitCode::FAILURE)
            }
        }
    }
}

/// Longest the GeoIP fetch may take: npm answers in seconds when it can reach its registry, and
/// hangs for minutes when it cannot.
const GEOIP_FETCH_MAX: std::time::Duration = std::time::Duration::from_secs(60);

/// The GeoIP database the router needs: `given`, else the repository's copy, fetched with
/// scripts/fetch-geoip.sh when missing (for at most [`GEOIP_FETCH_MAX`]).
fn ensure_geoip(repo: &std::path::Path, given: Option<&std::path::Path>) -> anyhow::Result<PathBuf> {
    if let Some(path) = given {
        anyhow::ensure!(path.is_file(), "--geoip {}: no such file", path.display());
        return Ok(path.to_owned());
    }
    let path = repo.join(".cache/geoip/geo-whois-asn-country.mmdb");
    if path.exists() {
        return Ok(path);
    }
    let script = repo.join("scripts/fetch-geoip.sh");
    eprintln!(
        "drill: fetching the GeoIP database with {} (npm, at most {} s)",
        script.display(),
        GEOIP_FETCH_MAX.as_secs()
    );
    let how_else = format!(
        "the router needs a GeoIP database in MaxMind format. Without access to the npm registry, copy one \
         (the npm package @ip-location-db/geo-whois-asn-country-mmdb holds it) to {} or pass --geoip FILE",
        path.display()
    );
    let mut child =
        std::process::Command::new(&script).spawn().with_context(|| format!("run {}; {how_else}", script.display()))?;
    let started = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().context("wait for the GeoIP fetch")? {
            anyhow::ensure!(status.success(), "{} failed ({status}); {how_else}", script.display());
            return Ok(path);
        }
        if started.elapsed() > GEOIP_FETCH_MAX {
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!(
                "{} had no answer within {} s (is the npm registry reachable?); {how_else}",
                script.display(),
                GEOIP_FETCH_MAX.as_secs()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}
