//! `router`: the geo-aware edge in front of the cells.

use anyhow::Context;
use clap::{Parser, Subcommand};
use contracts::region::RegionConfig;
use router::server::RouterConfig;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Forwarding allocates small buffers per request (headers, URIs); mimalloc serves them faster.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "router", about = "Sends each player to the cell licensed for them")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Route player traffic to the cells licensed for it.
    Serve {
        /// Directory of region files (config/regions).
        #[arg(long)]
        regions: PathBuf,
        /// Address to listen on for players, e.g. 127.0.0.1:8080.
        #[arg(long)]
        listen: SocketAddr,
        /// MaxMind-format country database (scripts/fetch-geoip.sh fetches the default one).
        #[arg(long, default_value = ".cache/geoip/geo-whois-asn-country.mmdb")]
        geoip: PathBuf,
        /// A proxy whose X-Forwarded-For is believed (CIDR); repeatable.
        #[arg(long = "trusted-proxy")]
        trusted_proxies: Vec<ipnet::IpNet>,
        /// Override a cell's primary endpoint: ID=URL; repeatable.
        #[arg(long = "cell", value_parser = id_url)]
        cells: Vec<(String, String)>,
        /// Override a cell's standby endpoint: ID=URL; repeatable.
        #[arg(long = "standby", value_parser = id_url)]
        standbys: Vec<(String, String)>,
        /// Ignore the standby endpoints the region files name (a platform that runs none, such as
        /// `drill up` without --standbys); those given with --standby still count.
        #[arg(long)]
        no_region_standbys: bool,
        /// Requests per second allowed per client address (bursts of twice that).
        #[arg(long, default_value_t = 100)]
        client_rps: u32,
        /// Requests per second allowed per player with a session (bursts of twice that).
        #[arg(long, default_value_t = 20)]
        player_rps: u32,
        /// Mutual TLS to cells with the certificates in this directory (`global-control certs`);
        /// takes precedence over --insecure-dev.
        #[arg(long)]
        tls_dir: Option<PathBuf>,
        /// Plain HTTP to cells (local use only); without it the router talks to cells over mutual
        /// TLS only.
        #[arg(long)]
        insecure_dev: bool,
    },
    /// Measure the router's added latency and throughput against a direct call and nginx.
    Bench(router::bench::BenchArgs),
}

fn id_url(text: &str) -> Result<(String, String), String> {
    let (id, url) = text.split_once('=').ok_or_else(|| format!("`{text}` is not ID=URL"))?;
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(format!("`{url}` is not an http(s) URL"));
    }
    Ok((id.to_owned(), url.to_owned()))
}

fn main() -> anyhow::Result<()> {
    replication::logs::init("info");
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("start runtime")?;
    let serve = match Cli::parse().command {
        Command::Bench(args) => return runtime.block_on(router::bench::run(args)),
        serve => serve,
    };
    let Command::Serve {
        regions,
        listen,
        geoip,
        trusted_proxies,
        cells,
        standbys,
        no_region_standbys,
        client_rps,
        player_rps,
        tls_dir,
        insecure_dev,
    } = serve
    else {
        unreachable!("bench returned above");
    };
    runtime.block_on(async move {
        let config = RouterConfig {
            regions: RegionConfig::load_dir(&regions)?,
            geoip,
            trusted_proxies,
            primaries: cells.into_iter().collect::<HashMap<_, _>>(),
            standbys: standbys.into_iter().collect::<HashMap<_, _>>(),
            region_standbys: !no_region_standbys,
            client_rps,
            player_rps,
            transport: match (tls_dir, insecure_dev) {
                (Some(dir), _) => router::cells::Transport::MutualTls(dir),
                (None, true) => router::cells::Transport::InsecurePlainHttp,
                (None, false) => anyhow::bail!("the router talks to cells over mutual TLS: pass --tls-dir DIR (global-control certs), or --insecure-dev for plain HTTP on a trusted machine"),
            },
        };
        let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("listen on {listen}"))?;
        router::server::run(config, listener, shutdown_signal()).await
    })
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
}
