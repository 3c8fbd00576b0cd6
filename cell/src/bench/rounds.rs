//! `cell bench rounds`: game rounds through the provider protocol, as a provider drives them.
//!
//! Workload (issue #3): a round is a signed `seamless-v1` bet then a signed closing win (a loss,
//! a refund or a win, at random) for a random player of 10,000, over 64 keep-alive HTTP
//! connections to a real cell with group commit. Every call is authenticated (HMAC-SHA256),
//! idempotent on its transaction id, stake-limit checked, journaled, and chained into the audit
//! log. Prints `rounds_per_s` and `round_p99_ms` (the time of both calls of a round), with the
//! CPU per round and the p99.9 beside them. The load generator runs on a thread of its own in the
//! same process (`bench-client` in the CPU split).

use super::{at_least_one, config, report, settle_disk, setup, wait_ready, Client, Phase, PhaseStart, Stages};
use crate::domains::gaming::adapters::seamless_sign;
use crate::domains::gaming::providers::{load_dir_with, Provider};
use crate::ledger::WriterConfig;
use crate::metrics::Metrics;
use crate::server::OpenCell;
use crate::store::embedded::Durability;
use anyhow::{bail, Context};
use rand::Rng;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, clap::Args)]
pub struct RoundsBenchArgs {
    /// Seconds the measured phase runs.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Seconds of rounds played before measuring, so the cell is warm.
    #[arg(long, default_value_t = 2)]
    pub warmup_seconds: u64,
    /// Players registered and funded before measuring.
    #[arg(long, default_value_t = 10_000, value_parser = at_least_one())]
    pub players: usize,
    /// Keep-alive HTTP connections, each playing rounds back to back.
    #[arg(long, default_value_t = 64, value_parser = at_least_one())]
    pub connections: usize,
}

const SECRET: &str = "bench-provider-secret";

/// The shipped `demo` provider's file, with a secret made up for the run.
fn demo_provider(dir: &std::path::Path) -> anyhow::Result<Vec<Provider>> {
    let providers_dir = dir.join("providers");
    std::fs::create_dir_all(&providers_dir)?;
    std::fs::write(providers_dir.join("demo.toml"), include_str!("../../../config/providers/demo.toml"))?;
    let providers = load_dir_with(&providers_dir, |_| Some(SECRET.to_owned()))?;
    Ok(providers)
}

/// Sends one signed `seamless-v1` call.
#[allow(clippy::disallowed_methods)] // the bench plays a provider, who signs with its own wall clock
async fn call(client: &mut Client, call: &str, body: String) -> anyhow::Result<()> {
    let ts = chrono::Utc::now().timestamp();
    let signature = seamless_sign(SECRET.as_bytes(), ts, body.as_bytes());
    let ts = ts.to_string();
    client.post(&format!("/gaming/demo/{call}"), &[("x-timestamp", &ts), ("x-signature", &signature)], &body).await
}

async fn play(
    address: std::net::SocketAddr,
    players: usize,
    connections: usize,
    duration: Duration,
    tag: &'static str,
) -> anyhow::Result<Phase> {
    let deadline = Instant::now() + duration;
    let started = PhaseStart::now();
    let rounds = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..connections {
        let rounds = rounds.clone();
        tasks.spawn(async move {
            let mut client = Client::connect(address).await?;
            let mut latencies = Vec::new();
            let mut failures = 0u64;
            while Instant::now() < deadline {
                let n = rounds.fetch_add(1, Ordering::Relaxed);
                let p = rand::rng().random_range(0..players);
                let win = ["0.00", "1.00", "2.00"][rand::rng().random_range(0..3)];
                let bet = format!(
                    r#"{{"transactionId":"{tag}bet-{n}","playerId":"uk-bench-{p}","roundId":"{tag}round-{n}","gameId":"demo-slot","amount":"1.00","currency":"GBP"}}"#
                );
                let win = format!(
                    r#"{{"transactionId":"{tag}win-{n}","playerId":"uk-bench-{p}","roundId":"{tag}round-{n}","amount":"{win}","currency":"GBP","closeRound":true}}"#
                );
                let t = Instant::now();
                let played = match call(&mut client, "bet", bet).await {
                    Ok(()) => call(&mut client, "win", win).await,
                    Err(e) => Err(e),
                };
                latencies.push(t.elapsed().as_micros() as u32);
                if let Err(e) = played {
                    failures += 1;
                    if failures == 1 {
                        tracing::warn!(error = %e, "round failed");
                    }
                }
            }
            anyhow::Ok((latencies, failures))
        });
    }
    Phase::gather(tasks, started).await
}

pub async fn rounds(args: RoundsBenchArgs) -> anyhow::Result<()> {
    let temp = tempfile::tempdir().context("create temporary directory")?;
    let dir = temp.path().to_owned();
    let providers = demo_provider(&dir)?;
    let cell = {
        let config = config(&dir, Durability::GroupSync, WriterConfig::default(), providers.clone())?;
        tokio::task::spawn_blocking(move || OpenCell::open(&config, Arc::new(Metrics::default()))).await??
    };
    setup(&cell, args.players).await?;
    tokio::task::spawn_blocking(move || cell.close()).await?;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(crate::server::run(
        config(&dir, Durability::GroupSync, WriterConfig::default(), providers)?,
        listener,
        async {
            let _ = stopped.await;
        },
    ));
    wait_ready(address).await?;
    settle_disk().await?;
    // Unmeasured first: the cell starts cold, and each player's first round reads their balance
    // and registration from the store; a cell in service has them cached.
    // The load generator gets a runtime of its own, one thread (`bench-client`): the cell's
    // workers then serve only the cell, as in service, and the CPU split tells their time apart.
    let client = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("bench-client")
        .enable_all()
        .build()?;
    let played = async {
        let warmup = client
            .spawn(play(address, args.players, args.connections, Duration::from_secs(args.warmup_seconds), "w"))
            .await??;
        let before = Stages::scrape(address).await?;
        let phase = client
            .spawn(play(address, args.players, args.connections, Duration::from_secs(args.seconds), ""))
            .await??;
        anyhow::Ok((warmup, before, phase))
    }
    .await;
    // Dropping a runtime blocks, which a task may not: let it go in the background, error or not.
    client.shutdown_background();
    let (warmup, before, mut phase) = played?;
    let failures = warmup.failures + phase.failures;
    report("rounds over HTTP (bet + win)", &mut phase);
    eprintln!("{}", Stages::scrape(address).await?.since(&before));
    let _ = stop.send(());
    server.await??;
    if failures > 0 {
        bail!("{failures} rounds failed during the benchmark");
    }
    // CPU per round (server and load generator alike): steadier than throughput on a shared machine.
    println!("round_cpu_us={:.1}", phase.cpu_us_per_op());
    // The tail beside the target's figures: a change that moves the p99.9 and not the p99 (a
    // stall every few seconds) shows here first.
    println!("round_p999_ms={:.2}", phase.quantile_ms(0.999));
    println!("rounds_per_s={:.0}", phase.ops_per_s());
    println!("round_p99_ms={:.2}", phase.p99_ms());
    Ok(())
}
