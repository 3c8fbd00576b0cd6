//! `cell`: serve one jurisdiction's cell, or measure it.

use anyhow::Context;
use cell::ledger::WriterConfig;
use cell::server::CellConfig;
use cell::store::embedded::Durability;
use clap::{Parser, Subcommand};
use contracts::region::RegionConfig;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// The wallet's hot path allocates many small, short-lived buffers (keys, encoded records); glibc's
/// allocator spent about a quarter of the benchmark's CPU on them, mimalloc far less.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "cell", about = "A jurisdiction's cell: every domain against its own store")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the cell's HTTP API.
    Serve(Box<ServeArgs>),
    /// The cashier's offline tools.
    Cashier {
        #[command(subcommand)]
        what: CashierTool,
    },
    /// The WORM audit chain.
    Audit {
        #[command(subcommand)]
        what: Audit,
    },
    /// Regulator exports, from a stopped cell's data directory.
    Export {
        #[command(subcommand)]
        what: Export,
    },
    /// Replication checks.
    Replica {
        #[command(subcommand)]
        what: ReplicaTool,
    },
    /// Make a stopped standby the writer of its jurisdiction: bumps its store's epoch above any
    /// it has seen, so the deposed primary is fenced when it meets it. Start it again with
    /// `cell serve` (without --standby-of). Prints `{epoch, version}`.
    Promote {
        /// The standby's data directory.
        #[arg(long)]
        data: PathBuf,
        /// Promote a store that was fenced (after two primaries at one epoch both stopped): ops
        /// decide that this store's data is the jurisdiction's; re-seed the other from it.
        #[arg(long)]
        over_fence: bool,
    },
    /// Measure a part of the cell and print key=value figures.
    Bench {
        #[command(subcommand)]
        what: Bench,
    },
}

/// `cell serve`'s flags.
#[derive(clap::Args)]
struct ServeArgs {
    /// The region file of this cell, e.g. config/regions/uk.toml.
    #[arg(long)]
    region: PathBuf,
    /// Address to listen on, e.g. 127.0.0.1:7101 (port 0 picks one).
    #[arg(long)]
    listen: SocketAddr,
    /// Directory for the store; created if missing.
    #[arg(long)]
    data: PathBuf,
    /// Serve over mutual TLS with the certificates in this directory (`global-control certs`);
    /// without it, plain HTTP for local use.
    #[arg(long)]
    tls_dir: Option<PathBuf>,
    /// Directory of game provider files (e.g. config/providers); each names the environment
    /// variable holding its secret. Without it, the cell serves no provider.
    #[arg(long)]
    providers: Option<PathBuf>,
    /// Follow the control plane's flags and catalog over QUIC at this address (needs
    /// `--tls-dir`: mutual TLS as this cell). Without it the cell serves the copy it has.
    #[arg(long, requires = "tls_dir")]
    control: Option<SocketAddr>,
    /// Flag answers say `STALE` once the control plane has been unreachable this long.
    #[arg(long, default_value_t = 30)]
    control_stale_after_seconds: u64,
    /// Where the data lives: `embedded` (fjall under --data), or `foundationdb[:CLUSTER_FILE]`
    /// (a build with the `foundationdb` feature; keys stay under --data).
    #[arg(long, default_value = "embedded")]
    store: cell::server::StoreBackend,
    /// Hours an idempotency record is kept (a replay after it is a new request): at least 24,
    /// longer where the regulator asks.
    #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(u64).range(24..))]
    idempotency_window_hours: u64,
    /// Where the self-exclusion registers answer, `http://HOST:PORT` (in development, tests and
    /// drills: `sandbox serve`). Without it players are not checked against the region's
    /// register (a warning at start).
    #[arg(long)]
    registers_url: Option<String>,
    /// Where the KYC vendor answers, `http://HOST:PORT` (in development, tests and drills:
    /// `sandbox serve`); its webhooks are checked with the secret in `KYC_WEBHOOK_SECRET`.
    /// Without it identities are not verified (a warning at start).
    #[arg(long)]
    kyc_url: Option<String>,
    /// This cell's base URL as outside parties reach it (the KYC vendor's webhooks, the PSPs'
    /// notifications); by default the listening address, over HTTPS with --tls-dir.
    #[arg(long)]
    public_url: Option<String>,
    /// Directory of PSP files (e.g. config/psps); each names the environment variable holding
    /// its notification secret. Without it, the cashier takes no payment.
    #[arg(long)]
    psps: Option<PathBuf>,
    /// Where a PSP answers, `ID=http://HOST:PORT` (repeat per PSP; in development, tests and
    /// drills: `sandbox serve`).
    #[arg(long = "psp-url", value_parser = parse_psp_url)]
    psp_urls: Vec<(String, String)>,
    /// The regulator's TamperToken service (`http://HOST:PORT`; in drills, the sandbox): Denmark's
    /// exports chain their files' MACs under its tokens.
    #[arg(long)]
    tamper_token_url: Option<String>,
    /// Ship this cell's commits to its standbys from this QUIC address (needs --tls-dir).
    #[arg(long, requires = "tls_dir", conflicts_with = "standby_of")]
    replication_listen: Option<SocketAddr>,
    /// Run as a standby of the primary whose --replication-listen is at this address: follow its
    /// commits, serve nothing that moves money until promoted (needs --tls-dir).
    #[arg(long, requires = "tls_dir")]
    standby_of: Option<SocketAddr>,
    /// As a primary: the shipping address of this cell's standby (where a promoted standby
    /// listens), asked at start and every few seconds whether it holds a higher epoch.
    #[arg(long, requires = "tls_dir", conflicts_with = "standby_of")]
    peer: Option<SocketAddr>,
    /// Where this process runs; a primary refuses a standby at a site its region file's
    /// `[replication] standby_sites` does not name.
    #[arg(long, default_value = "primary")]
    site: String,
}

#[derive(Subcommand)]
enum ReplicaTool {
    /// Compare a primary's and its standby's stores at one version (their keyspaces' hashes,
    /// epoch and audit chain head), naming the first difference. Prints a JSON report; exits 0
    /// when they agree, 1 when they differ, 2 when it could not compare.
    Verify {
        /// The primary's base URL (`https://HOST:PORT`).
        #[arg(long)]
        primary: String,
        /// The standby's base URL.
        #[arg(long)]
        standby: String,
        /// The platform's certificates (`global-control certs`).
        #[arg(long)]
        tls_dir: PathBuf,
        /// The operator tool's certificate to present (`<name>.pem` in --tls-dir).
        #[arg(long, default_value = "ops")]
        cert: String,
    },
}

#[derive(Subcommand)]
enum Audit {
    /// Verify a stopped cell's audit chain and checkpoints from its data directory; prints
    /// `{ok, records, head, firstBad, checkpointsVerified}` as JSON. Exits 0 when the chain and
    /// its checkpoints verify, 1 when they do not, 2 when they could not be checked (no such
    /// cell, the cell still running, a malformed `--public-key`).
    Verify {
        /// The cell's data directory (as given to `cell serve --data`).
        #[arg(long)]
        data: PathBuf,
        /// Check checkpoints against this public key (hex, from `GET /audit/checkpoints` when the
        /// cell was trusted) rather than the key file in the data directory, which whoever could
        /// rewrite the chain could also replace.
        #[arg(long)]
        public_key: Option<String>,
    },
}

#[derive(Subcommand)]
enum Export {
    /// Build one export into the cell's vault and copy it to `--out`: the files named as the
    /// regulator requires, `events.csv`, `manifest.json` and `manifest.sig`. Prints the manifest.
    Build {
        /// The cell's data directory (as given to `cell serve --data`).
        #[arg(long)]
        data: PathBuf,
        /// The jurisdiction (`ES`); its region file is `config/regions/<es>.toml` unless `--region`.
        #[arg(long)]
        jurisdiction: String,
        #[arg(long)]
        region: Option<PathBuf>,
        /// The regulator's record name: `RUD`, `RUT`, `CJD`, `CJT`, `JUC`, `OPT` for ES; `KasinospilPrSession`, `EndOfDayRapport` for DK; the modelled returns elsewhere.
        #[arg(long = "type")]
        kind: String,
        /// `YYYY-MM-DD`, `YYYY-MM` or `YYYY-Qn` (UTC).
        #[arg(long)]
        period: String,
        #[arg(long)]
        out: PathBuf,
        /// Also write each zip's XML beside it, for inspection.
        #[arg(long)]
        unzipped: bool,
        /// The regulator's TamperToken service, for Denmark's files (`http://HOST:PORT`).
        #[arg(long)]
        tamper_token_url: Option<String>,
    },
    /// List the exports in a stopped cell's vault.
    List {
        #[arg(long)]
        data: PathBuf,
    },
}

#[derive(Subcommand)]
enum CashierTool {
    /// Reconcile a stopped cell's books for a day with a PSP's settlement report: prints the
    /// report as JSON; exit 0 when they agree, 1 when they differ, 2 when it could not be done.
    Reconcile {
        /// The cell's data directory (as given to `cell serve --data`).
        #[arg(long)]
        data: PathBuf,
        /// Directory of PSP files (e.g. config/psps).
        #[arg(long)]
        psps: PathBuf,
        /// Where the PSP answers, `ID=http://HOST:PORT`.
        #[arg(long = "psp-url", value_parser = parse_psp_url)]
        psp_urls: Vec<(String, String)>,
        /// The PSP to reconcile with.
        #[arg(long)]
        psp: String,
        /// The day, `YYYY-MM-DD` (UTC).
        #[arg(long)]
        date: chrono::NaiveDate,
    },
}

#[derive(Subcommand)]
enum Bench {
    /// Wallet operations (hold, settle) in process and over HTTP, with group commit and without.
    ///
    /// Prints key=value lines: inprocess_cpu_us_per_op, inprocess_store_cpu_us_per_op,
    /// http_cpu_us_per_op, inprocess_p999_ms, http_p999_ms, inprocess_ops_per_s, inprocess_p99_ms,
    /// http_ops_per_s, http_p99_ms, sync_per_commit_ops_per_s, group_commit_speedup. Stderr has each
    /// phase's latency distribution and CPU split per thread.
    Wallet(cell::bench::WalletBenchArgs),
    /// Game rounds (signed bet + closing win) through the provider protocol over HTTP.
    ///
    /// Prints key=value lines: round_cpu_us, round_p999_ms, rounds_per_s, round_p99_ms. Stderr has
    /// the latency distribution, the CPU split per thread (the load generator is `bench-client`)
    /// and the mean time per wallet stage.
    Rounds(cell::bench::RoundsBenchArgs),
    /// Deposits end to end through the sandbox's card PSP (request, PSP, notification, capture,
    /// credit), beside the back office's wallet credits in the same run.
    ///
    /// Prints key=value lines: cashier_deposits_per_s, cashier_deposit_p99_ms,
    /// wallet_credits_per_s, cashier_to_wallet_ratio. Needs the `sandbox` binary (beside this one,
    /// or --sandbox).
    Cashier(cell::bench::CashierBenchArgs),
    /// A month of Spain's regulator exports from a synthetic chain (100,000 players and 10
    /// million rounds by default): records per second and each build's peak memory, which must
    /// not grow with the rounds (run two sizes).
    Export(cell::bench::ExportBenchArgs),
    /// The wallet's HTTP phase with no standby, an async and a sync standby, and the lag.
    Replication(cell::bench::ReplicationBenchArgs),
}

/// `--psp-url ID=URL`.
fn parse_psp_url(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .filter(|(id, url)| !id.is_empty() && !url.is_empty())
        .map(|(id, url)| (id.to_owned(), url.to_owned()))
        .ok_or_else(|| format!("`{text}`: use ID=http://HOST:PORT"))
}

fn main() -> anyhow::Result<ExitCode> {
    replication::logs::init("info,lsm_tree=warn,fjall=warn");
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("start runtime")?;
    let done = match cli.command {
        Command::Serve(args) if !args.store.available() => {
            let store = &args.store;
            eprintln!(
                "Error: --store {store} needs a cell built with the `foundationdb` feature \
                 (cargo build --release -p cell --features foundationdb; see README, FoundationDB)"
            );
            return Ok(ExitCode::from(2));
        }
        Command::Serve(args) => runtime.block_on(async move {
            let ServeArgs {
                region,
                listen,
                data,
                tls_dir,
                providers,
                control,
                control_stale_after_seconds,
                store,
                idempotency_window_hours,
                registers_url,
                kyc_url,
                public_url,
                psps,
                psp_urls,
                tamper_token_url,
                replication_listen,
                standby_of,
                peer,
                site,
            } = *args;
            let region = RegionConfig::from_file(&region)?;
            let tls = match &tls_dir {
                Some(dir) => Some(replication::tls::server_config(dir, &region.cell_id)?),
                None => None,
            };
            let control = match (control, &tls_dir) {
                (Some(quic), Some(dir)) => Some(cell::server::ControlConfig {
                    quic,
                    client: replication::tls::quic_client_config(
                        dir,
                        &region.cell_id,
                        "control",
                        replication::tls::QuicTimeouts::default(),
                    )?,
                    stale_after: std::time::Duration::from_secs(control_stale_after_seconds),
                }),
                _ => None,
            };
            let providers = match &providers {
                Some(dir) => cell::domains::gaming::providers::load_dir(dir)?,
                None => Vec::new(),
            };
            let role = match (standby_of, replication_listen, peer) {
                (Some(primary), _, _) => Some(cell::replica::Role::Standby { primary }),
                (None, None, None) => None,
                (None, listen, peer) => Some(cell::replica::Role::Primary { listen, peer }),
            };
            let replication = match (role, &tls_dir) {
                (Some(role), Some(dir)) => {
                    let timeouts = replication::tls::QuicTimeouts::default();
                    Some(cell::replica::ReplicationConfig {
                        role,
                        site,
                        server: Some(replication::tls::quic_server_config(dir, &region.cell_id, timeouts)?),
                        client: replication::tls::quic_client_config(dir, &region.cell_id, &region.cell_id, timeouts)?,
                    })
                }
                _ => None,
            };
            let listener =
                tokio::net::TcpListener::bind(listen).await.with_context(|| format!("listen on {listen}"))?;
            let scheme = if tls.is_some() { "https" } else { "http" };
            let public_url =
                public_url.unwrap_or_else(|| format!("{scheme}://{}", listener.local_addr().unwrap_or(listen)));
            let kyc = match kyc_url {
                Some(url) => {
                    let secret = std::env::var("KYC_WEBHOOK_SECRET")
                        .context("--kyc-url needs the webhook secret in KYC_WEBHOOK_SECRET")?;
                    let callback = format!("{}/kyc/webhook", public_url.trim_end_matches('/'));
                    let vendor = cell::domains::compliance::kyc::KycVendor::new(&url, callback, secret.into_bytes());
                    Some(vendor.map_err(anyhow::Error::msg)?)
                }
                None => None,
            };
            let psps = match &psps {
                Some(dir) => cell::domains::cashier::psps::load_dir(dir, &psp_urls)?,
                None => Vec::new(),
            };
            let config = CellConfig {
                region,
                data_dir: data,
                store,
                durability: Durability::GroupSync,
                writer: WriterConfig::default(),
                tls,
                providers,
                control,
                intervals: cell::server::Intervals {
                    idempotency_window: std::time::Duration::from_secs(idempotency_window_hours * 3600),
                    ..Default::default()
                },
                store_faults: None,
                registers: registers_url,
                kyc,
                psps,
                callback_base: public_url,
                tamper_token_url,
                clock: cell::clock::system(),
                replication,
            };
            cell::server::run(config, listener, shutdown_signal()).await
        }),
        Command::Replica { what: ReplicaTool::Verify { primary, standby, tls_dir, cert } } => {
            // A development platform holds the drill's operator certificate rather than `ops`.
            let cert = if cert == "ops" && !tls_dir.join("ops.pem").exists() { "drill".to_owned() } else { cert };
            return Ok(match runtime.block_on(cell::replica::verify(&primary, &standby, &tls_dir, &cert)) {
                Ok(report) => {
                    println!("{}", serde_json::to_string_pretty(&report)?);
                    if report.ok {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    }
                }
                Err(e) => {
                    eprintln!("Error: {e}");
                    ExitCode::from(2)
                }
            });
        }
        Command::Promote { data, over_fence } => {
            let (epoch, version) = cell::replica::promote(&data, over_fence)?;
            println!("{}", serde_json::json!({ "epoch": epoch, "version": version }));
            Ok(())
        }
        Command::Audit { what: Audit::Verify { data, public_key } } => {
            // The status alone tells a script what happened: 1 is a broken chain, 2 no verdict.
            let report = match cell::audit::verify_offline(&data, public_key.as_deref()) {
                Ok(report) => report,
                Err(e) => {
                    eprintln!("Error: {e:#}");
                    return Ok(ExitCode::from(2));
                }
            };
            println!("{}", serde_json::to_string_pretty(&report)?);
            return Ok(if report.ok { ExitCode::SUCCESS } else { ExitCode::FAILURE });
        }
        Command::Cashier { what: CashierTool::Reconcile { data, psps, psp_urls, psp, date } } => {
            let report = runtime.block_on(async move {
                let psps = cell::domains::cashier::psps::load_dir(&psps, &psp_urls)?;
                let store = cell::store::embedded::EmbeddedStore::open(&data.join("store"), Durability::GroupSync)
                    .with_context(|| format!("open the store under {} (is the cell still running?)", data.display()))?;
                let cashier = cell::domains::cashier::Cashier::new(psps, String::new(), std::sync::Arc::new(store));
                cashier.reconcile(&psp, date).await.map_err(anyhow::Error::msg)
            });
            match report {
                Ok(report) => {
                    println!("{}", serde_json::to_string_pretty(&report)?);
                    return Ok(if report.differences.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE });
                }
                Err(e) => {
                    eprintln!("Error: {e:#}");
                    return Ok(ExitCode::from(2));
                }
            }
        }
        Command::Export {
            what: Export::Build { data, jurisdiction, region, kind, period, out, unzipped, tamper_token_url },
        } => {
            // On a blocking thread of the runtime: Denmark's build calls the TamperToken service.
            let built = runtime
                .block_on(async move {
                    tokio::task::spawn_blocking(move || -> anyhow::Result<cell::exports::vault::Stored> {
                        let region = region.unwrap_or_else(|| {
                            PathBuf::from(format!("config/regions/{}.toml", jurisdiction.to_lowercase()))
                        });
                        let region = RegionConfig::from_file(&region)?;
                        if !region.jurisdiction.to_string().eq_ignore_ascii_case(&jurisdiction) {
                            anyhow::bail!(
                                "{} is the region file of {}, not {jurisdiction}",
                                region.cell_id,
                                region.jurisdiction
                            );
                        }
                        let key = cell::signing_key::load_or_create(&data.join("audit-ed25519.key"))?;
                        let store =
                            cell::store::embedded::EmbeddedStore::open(&data.join("store"), Durability::GroupSync)
                                .with_context(|| {
                                    format!("open the store under {} (is the cell still running?)", data.display())
                                })?;
                        let exporter = cell::exports::Exporter {
                            data_dir: &data,
                            region: &region,
                            audit_key: &key,
                            tamper_token_url: tamper_token_url.as_deref(),
                        };
                        let stored = exporter.build(
                            &store,
                            &kind,
                            &period,
                            cell::clock::Clock::now(cell::clock::system().as_ref()),
                        )?;
                        let password = cell::exports::vault::Vault::new(&data).zip_password()?;
                        cell::exports::vault::copy_out(&stored, &out, unzipped.then_some(password.as_str()))?;
                        Ok(stored)
                    })
                    .await
                })
                .map_err(anyhow::Error::from)
                .and_then(|built| built);
            match built {
                Ok(stored) => {
                    println!("{}", serde_json::to_string_pretty(&stored.manifest)?);
                    return Ok(ExitCode::SUCCESS);
                }
                Err(e) => {
                    eprintln!("Error: {e:#}");
                    return Ok(ExitCode::from(2));
                }
            }
        }
        Command::Export { what: Export::List { data } } => {
            let list = cell::exports::vault::Vault::new(&data).list()?;
            for s in list {
                let m = &s.manifest;
                println!(
                    "{}\t{}\t{}\t{} files\t{} events\tchain {}..={}",
                    m.export_id,
                    m.kind,
                    m.period.label,
                    m.files.len(),
                    m.event_count,
                    m.chain.first_seq,
                    m.chain.last_seq
                );
            }
            return Ok(ExitCode::SUCCESS);
        }
        Command::Bench { what: Bench::Wallet(args) } => runtime.block_on(cell::bench::wallet(args)),
        Command::Bench { what: Bench::Rounds(args) } => runtime.block_on(cell::bench::rounds(args)),
        Command::Bench { what: Bench::Cashier(args) } => runtime.block_on(cell::bench::cashier(args)),
        Command::Bench { what: Bench::Export(args) } => runtime.block_on(cell::bench::export(args)),
        Command::Bench { what: Bench::Replication(args) } => runtime.block_on(cell::bench::replication(args)),
    };
    done.map(|()| ExitCode::SUCCESS)
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the cell");
            let _ = ctrl_c.await;
        }
    }
    tracing::info!("shutdown requested");
}
