//! `cell bench replication`: what a standby costs the writer. `cell bench wallet`'s HTTP phase
//! (hold then settle over keep-alive connections) against the same primary store three times, in
//! one run: with no standby, with an `async` standby and with a `sync` one (a second cell in this
//! process, on its own runtime whose threads are named `standby`, following over QUIC with mutual
//! TLS on loopback), and the standby's lag sampled from its `/metrics` under that load. Prints
//! the ratios the issue sets targets for, and the CPU per operation the primary spent beside what
//! the standby did: on this two-core machine the standby's work comes out of the primary's cores,
//! where in service it runs on its own machine.

use super::{at_least_one, config, get, report, settle_disk, setup, wait_ready, Phase};
use crate::ledger::WriterConfig;
use crate::metrics::Metrics;
use crate::replica::{ReplicationConfig, Role};
use crate::server::OpenCell;
use crate::store::embedded::Durability;
use anyhow::Context;
use contracts::region::ReplicaDurability;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, clap::Args)]
pub struct ReplicationBenchArgs {
    /// Seconds each measured phase runs.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Seconds of load before each measured phase.
    #[arg(long, default_value_t = 2)]
    pub warmup_seconds: u64,
    /// Players registered and funded before measuring.
    #[arg(long, default_value_t = 10_000, value_parser = at_least_one())]
    pub players: usize,
    /// Keep-alive HTTP connections, each doing hold then settle.
    #[arg(long, default_value_t = 64, value_parser = at_least_one())]
    pub connections: usize,
    /// Run only this phase (`none`, `async` or `sync`): to profile one; the ratios need all three.
    #[arg(long)]
    pub only: Option<String>,
}

/// A cell served in this process until `stop` is sent.
struct Served {
    address: std::net::SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    /// The standby's own runtime (its threads named `standby`), shut down after it.
    runtime: Option<tokio::runtime::Runtime>,
}

/// Serves `config` on `runtime` (the current one when `None`).
async fn serve(config: crate::server::CellConfig, runtime: Option<tokio::runtime::Runtime>) -> anyhow::Result<Served> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let address = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        crate::server::run(config, listener, async {
            let _ = stopped.await;
        })
        .await
    };
    let task = match &runtime {
        Some(runtime) => runtime.spawn(run),
        None => tokio::spawn(run),
    };
    Ok(Served { address, stop, task, runtime })
}

impl Served {
    async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        let stopped = self.task.await?;
        if let Some(runtime) = self.runtime {
            runtime.shutdown_background();
        }
        stopped
    }
}

/// A runtime for the standby, its threads named apart from the primary's.
fn standby_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().worker_threads(2).thread_name("standby").enable_all().build()?)
}

/// A gauge from a cell's `/metrics`.
async fn gauge(address: std::net::SocketAddr, name: &str) -> Option<f64> {
    let (_, body) = get(address, "/metrics").await.ok()?;
    let text = String::from_utf8_lossy(&body).into_owned();
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// The measured phase of one mode, and the standby's lag sampled every 100 ms meanwhile.
struct Measured {
    phase: Phase,
    lag_versions_max: f64,
    lag_seconds_max: f64,
}

pub async fn replication(args: ReplicationBenchArgs) -> anyhow::Result<()> {
    let temp = tempfile::tempdir().context("create temporary directory")?;
    let primary_dir = temp.path().join("primary");
    let tls = temp.path().join("tls");
    replication::tls::generate(&tls, &["uk".to_owned()])?;
    let duration = Duration::from_secs(args.seconds);
    {
        let config = config(&primary_dir, Durability::GroupSync, WriterConfig::default(), Vec::new())?;
        let cell = tokio::task::spawn_blocking(move || OpenCell::open(&config, Arc::new(Metrics::default()))).await??;
        setup(&cell, args.players).await?;
        tokio::task::spawn_blocking(move || cell.close()).await?;
    }
    let authorization = super::operator_authorization(&primary_dir)?;
    let timeouts = replication::tls::QuicTimeouts::default();
    let mut results = Vec::new();
    for mode in [None, Some(ReplicaDurability::Async), Some(ReplicaDurability::Sync)] {
        let name = mode.map_or("none".to_owned(), |d| format!("{d:?}").to_lowercase());
        if args.only.as_ref().is_some_and(|only| *only != name) {
            continue;
        }
        let mut config = config(&primary_dir, Durability::GroupSync, WriterConfig::default(), Vec::new())?;
        let mut standby = None;
        if let Some(durability) = mode {
            let shipping = std::net::UdpSocket::bind("127.0.0.1:0")?.local_addr()?;
            config.region.replication.durability = durability;
            let site = config.region.replication.standby_sites.first().cloned().unwrap_or_default();
            config.replication = Some(ReplicationConfig {
                role: Role::Primary { listen: Some(shipping), peer: None },
                site: "primary".into(),
                server: Some(replication::tls::quic_server_config(&tls, "uk", timeouts)?),
                client: replication::tls::quic_client_config(&tls, "uk", "uk", timeouts)?,
            });
            // A fresh standby each time: it takes a snapshot of the primary, then follows.
            let dir = temp.path().join(format!("standby-{durability:?}"));
            let mut follower = super::config(&dir, Durability::GroupSync, WriterConfig::default(), Vec::new())?;
            follower.replication = Some(ReplicationConfig {
                role: Role::Standby { primary: shipping },
                site,
                server: None,
                client: replication::tls::quic_client_config(&tls, "uk", "uk", timeouts)?,
            });
            standby = Some(follower);
        }
        let primary = serve(config, None).await?;
        wait_ready(primary.address).await?;
        let standby = match standby {
            Some(follower) => {
                let served = serve(follower, Some(standby_runtime()?)).await?;
                let mut following = false;
                for _ in 0..600 {
                    let lag = gauge(served.address, "cell_replication_lag_versions").await;
                    if gauge(served.address, "cell_replication_following").await == Some(1.0) && lag == Some(0.0) {
                        following = true;
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                anyhow::ensure!(following, "the standby did not catch up with the primary within 60 s");
                Some(served)
            }
            None => None,
        };
        settle_disk().await?;
        let warmup = Duration::from_secs(args.warmup_seconds);
        super::wallet::http(primary.address, &authorization, args.players, args.connections, warmup, "w").await?;
        let maxima = Arc::new(std::sync::Mutex::new((0f64, 0f64)));
        let sampler = standby.as_ref().map(|s| {
            let (address, maxima) = (s.address, maxima.clone());
            tokio::spawn(async move {
                loop {
                    let v = gauge(address, "cell_replication_lag_versions").await.unwrap_or(0.0);
                    let t = gauge(address, "cell_replication_lag_seconds").await.unwrap_or(0.0);
                    if let Ok(mut m) = maxima.lock() {
                        *m = (m.0.max(v), m.1.max(t));
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        });
        let tag: &'static str = match mode {
            None => "n",
            Some(ReplicaDurability::Async) => "a",
            Some(ReplicaDurability::Sync) => "s",
        };
        let mut phase =
            super::wallet::http(primary.address, &authorization, args.players, args.connections, duration, tag).await?;
        report(&format!("over HTTP, standby: {name}"), &mut phase);
        if let Some(sampler) = sampler {
            sampler.abort();
        }
        let (lag_versions_max, lag_seconds_max) = maxima.lock().map(|m| *m).unwrap_or_default();
        anyhow::ensure!(phase.failures == 0, "{} operations failed with standby {name}", phase.failures);
        results.push((name, Measured { phase, lag_versions_max, lag_seconds_max }));
        primary.stop().await?;
        if let Some(s) = standby {
            s.stop().await?;
        }
    }
    for (name, m) in &mut results {
        println!("{name}_ops_per_s={:.0}", m.phase.ops_per_s());
        println!("{name}_p50_ms={:.2}", m.phase.quantile_ms(0.5));
        println!("{name}_p99_ms={:.2}", m.phase.p99_ms());
        if name != "none" {
            println!("{name}_lag_versions_max={:.0}", m.lag_versions_max);
            println!("{name}_lag_seconds_max={:.2}", m.lag_seconds_max);
        }
    }
    let by = |n: &str| results.iter().position(|(name, _)| name == n);
    let (Some(none), Some(asynchronous), Some(sync)) = (by("none"), by("async"), by("sync")) else {
        return Ok(()); // one phase: no ratios
    };
    let ops = |i: usize| results[i].1.phase.ops_per_s();
    let p50 = |i: usize, results: &mut Vec<(String, Measured)>| results[i].1.phase.quantile_ms(0.5);
    println!("async_throughput_ratio={:.3}", ops(asynchronous) / ops(none));
    println!("sync_throughput_ratio={:.3}", ops(sync) / ops(none));
    let added = p50(sync, &mut results) - p50(none, &mut results);
    println!("sync_added_p50_ms={added:.2}");
    Ok(())
}
