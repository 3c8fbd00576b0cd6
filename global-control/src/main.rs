//! `global-control`: the control plane's command line.

use anyhow::Context;
use clap::{Parser, Subcommand};
use global_control::server::{ControlConfig, ControlPlane};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "global-control", about = "The platform's global control plane")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a development CA and certificates for the control plane, each cell and the router
    /// (existing files are kept; missing ones are added).
    Certs {
        /// Directory for the CA and certificates (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// Cell ids, comma-separated: uk,mt,dk,se,es.
        #[arg(long, value_delimiter = ',', required = true, value_parser = cell_id)]
        cells: Vec<String>,
    },
    /// Serve the control API (HTTP) and cell sync (QUIC, mutual TLS).
    Serve {
        /// HTTP address of the control API, e.g. 127.0.0.1:7000.
        #[arg(long)]
        listen: SocketAddr,
        /// UDP address cells sync from, e.g. 127.0.0.1:7001.
        #[arg(long)]
        quic: SocketAddr,
        /// Directory for the store (created if missing).
        #[arg(long)]
        data: PathBuf,
        /// Certificates from `global-control certs` (the control plane's, and the CA cells' are checked against).
        #[arg(long)]
        tls_dir: PathBuf,
        /// Region files: which cells may sync, and the regulatory flag locks.
        #[arg(long, default_value = "config/regions")]
        regions: PathBuf,
        /// Wrong API tokens one address may present in a minute before it is refused (429
        /// AUTH_THROTTLED) until its oldest failure is a minute old.
        #[arg(long, default_value_t = global_control::api::TOKEN_FAILURES_MAX, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
        wrong_tokens_per_minute: usize,
        /// How often the regulator-export schedule runs: each cell builds what its region file's
        /// `[exports]` cadence makes due (the last quarter of an hour, yesterday, last month, last
        /// quarter), retried until built.
        #[arg(long, default_value_t = 60, value_parser = clap::builder::RangedU64ValueParser::<u64>::new().range(1..))]
        export_every_seconds: u64,
        /// Where a cell answers, `ID=https://HOST:PORT`, instead of its region file's primary
        /// endpoint (repeatable): global-control calls cells there to build exports.
        #[arg(long = "cell", value_parser = cell_url)]
        cells: Vec<(String, String)>,
    },
    /// Measure and print key=value figures.
    Bench {
        #[command(subcommand)]
        what: Bench,
    },
}

#[derive(Subcommand)]
enum Bench {
    /// Flag propagation: control API 200 to the change applied by every QUIC subscriber.
    Flags(global_control::bench::FlagsBenchArgs),
}

/// A cell id as region files name them: 1 to 16 lower-case letters or digits.
fn cell_id(text: &str) -> Result<String, String> {
    let ok = !text.is_empty() && text.len() <= 16 && text.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    ok.then(|| text.to_owned())
        .ok_or_else(|| format!("`{text}` is not a cell id (1 to 16 lower-case letters or digits)"))
}

/// `ID=URL`.
fn cell_url(text: &str) -> Result<(String, String), String> {
    let (id, url) = text.split_once('=').ok_or("expected ID=https://HOST:PORT")?;
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err(format!("{url}: expected an http(s) URL"));
    }
    Ok((id.to_owned(), url.to_owned()))
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // A benchmark's figures are its output; its servers' request logs would only cost time.
    let default_filter = match cli.command {
        Command::Bench { .. } => "warn,lsm_tree=warn,fjall=warn",
        _ => "info,lsm_tree=warn,fjall=warn",
    };
    replication::logs::init(default_filter);
    match cli.command {
        Command::Certs { out, cells } => {
            let mut names = vec!["control".to_owned(), "router".to_owned()];
            names.extend(cells);
            let written = replication::tls::generate(&out, &names)?;
            for path in &written {
                println!("wrote {}", path.display());
            }
            if written.is_empty() {
                println!("{} already holds every certificate asked for", out.display());
            }
            Ok(())
        }
        Command::Serve {
            listen,
            quic,
            data,
            tls_dir,
            regions,
            wrong_tokens_per_minute,
            export_every_seconds,
            cells,
        } => {
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("start runtime")?;
            runtime.block_on(async move {
                let mut regions = contracts::region::RegionConfig::load_dir(&regions)?;
                for (id, url) in cells {
                    let region = regions.iter_mut().find(|r| r.cell_id == id);
                    region.with_context(|| format!("--cell {id}: no region file names this cell"))?.primary_endpoint =
                        url;
                }
                let config = ControlConfig {
                    data_dir: data,
                    regions,
                    tls_dir,
                    quic_listen: quic,
                    any_cell: false,
                    timeouts: replication::tls::QuicTimeouts::default(),
                    admin_token: std::env::var(global_control::rbac::ADMIN_TOKEN_ENV).ok(),
                    wrong_tokens_per_minute,
                    export_every: Some(std::time::Duration::from_secs(export_every_seconds)),
                };
                let listener =
                    tokio::net::TcpListener::bind(listen).await.with_context(|| format!("listen on {listen}"))?;
                ControlPlane::open(config).await?.serve(listener, shutdown_signal()).await
            })
        }
        Command::Bench { what: Bench::Flags(args) } => {
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("start runtime")?;
            runtime.block_on(global_control::bench::flags(args))
        }
    }
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
            tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the control plane");
            let _ = ctrl_c.await;
        }
    }
    tracing::info!("shutdown requested");
}
