//! `cell bench wallet`: the wallet's throughput and latency, in process and over HTTP, and the
//! gain of group commit over one sync per commit, all on one store under a temporary directory.
//!
//! Workload (issue #2): 10,000 players; random players; rounds of hold then settle, each its own
//! durable operation; every bet moves money through the same house account (a hot account).
//! Figures are printed as `key=value` lines at the end.

use super::{
    at_least_one, config, ctx, key, player, report, settle_disk, setup, wait_ready, Client, Phase, PhaseStart, Stages,
};
use crate::domains::wallet::{Hold, Settle, SettlePart};
use crate::ledger::{Ledger, WriterConfig};
use crate::metrics::Metrics;
use crate::server::OpenCell;
use crate::store::embedded::Durability;
use anyhow::{bail, Context};
use contracts::{BetId, Currency, Money, RoundId};
use rand::Rng;
use rust_decimal::Decimal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, clap::Args)]
pub struct WalletBenchArgs {
    /// Seconds each measured phase runs.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Seconds of HTTP load before measuring it, so the freshly opened server is warm.
    #[arg(long, default_value_t = 2)]
    pub warmup_seconds: u64,
    /// Players registered and funded before measuring.
    #[arg(long, default_value_t = 10_000, value_parser = at_least_one())]
    pub players: usize,
    /// Rounds in flight at once in process (each a task doing hold then settle).
    #[arg(long, default_value_t = 1_024, value_parser = at_least_one())]
    pub inprocess_concurrency: usize,
    /// Keep-alive HTTP connections, each doing hold then settle.
    #[arg(long, default_value_t = 64, value_parser = at_least_one())]
    pub connections: usize,
    /// Keep the data here instead of a temporary directory.
    #[arg(long)]
    pub data: Option<std::path::PathBuf>,
}

/// Hold then settle, from `concurrency` tasks, for `duration`.
async fn inprocess(
    wallet: &Ledger,
    players: usize,
    concurrency: usize,
    duration: Duration,
    tag: &str,
) -> anyhow::Result<Phase> {
    let gbp = Currency::from_code("GBP")?;
    let stake = Money::positive(Decimal::ONE, gbp)?;
    let deadline = Instant::now() + duration;
    let started = PhaseStart::now();
    let rounds = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (wallet, rounds, tag) = (wallet.clone(), rounds.clone(), tag.to_owned());
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            let mut failures = 0u64;
            while Instant::now() < deadline {
                let n = rounds.fetch_add(1, Ordering::Relaxed);
                let p = player(rand::rng().random_range(0..players));
                let round = RoundId::new(format!("{tag}-r{n}")).expect("valid");
                let hold = Hold {
                    player: p.clone(),
                    round: round.clone(),
                    bet: BetId::new("b1").expect("valid"),
                    money: stake,
                    location: None,
                };
                let t = Instant::now();
                let held = wallet.execute(hold, key(&format!("{tag}-h{n}"), "wallet.hold"), ctx()).await;
                latencies.push(t.elapsed().as_micros() as u32);
                if held.is_err() {
                    failures += 1;
                    continue;
                }
                // Lose, refund or win, at random.
                let delta = Money::signed(Decimal::from(rand::rng().random_range(-1..=1)), gbp).expect("valid");
                let settle = Settle { round, parts: vec![SettlePart { player: p, bet: None, delta }] };
                let t = Instant::now();
                let settled = wallet.execute(settle, key(&format!("{tag}-s{n}"), "wallet.settle"), ctx()).await;
                latencies.push(t.elapsed().as_micros() as u32);
                failures += u64::from(settled.is_err());
            }
            anyhow::Ok((latencies, failures))
        });
    }
    Phase::gather(tasks, started).await
}

pub(super) async fn http(
    address: std::net::SocketAddr,
    authorization: &str,
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
        let authorization = authorization.to_owned();
        tasks.spawn(async move {
            let mut client = Client::connect(address).await?;
            let mut latencies = Vec::new();
            let mut failures = 0u64;
            while Instant::now() < deadline {
                let n = rounds.fetch_add(1, Ordering::Relaxed);
                let p = rand::rng().random_range(0..players);
                let hold = format!(r#"{{"playerId":"uk-bench-{p}","roundId":"{tag}http-r{n}","betId":"b1","currency":"GBP","amount":"1.00"}}"#);
                let t = Instant::now();
                let held = client.post("/wallet/hold", &[("x-idempotency-key", &format!("{tag}http-h{n}")), ("authorization", &authorization)], &hold).await;
                latencies.push(t.elapsed().as_micros() as u32);
                if held.is_err() {
                    failures += 1;
                    continue;
                }
                let delta = ["-1.00", "0.00", "1.00"][rand::rng().random_range(0..3)];
                let settle = format!(r#"{{"roundId":"{tag}http-r{n}","operations":[{{"playerId":"uk-bench-{p}","delta":"{delta}","currency":"GBP"}}]}}"#);
                let t = Instant::now();
                let settled = client.post("/wallet/settle", &[("x-idempotency-key", &format!("{tag}http-s{n}")), ("authorization", &authorization)], &settle).await;
                latencies.push(t.elapsed().as_micros() as u32);
                failures += u64::from(settled.is_err());
            }
            anyhow::Ok((latencies, failures))
        });
    }
    Phase::gather(tasks, started).await
}

pub async fn wallet(args: WalletBenchArgs) -> anyhow::Result<()> {
    let temp = tempfile::tempdir().context("create temporary directory")?;
    let dir = args.data.clone().unwrap_or_else(|| temp.path().to_owned());
    let duration = Duration::from_secs(args.seconds);

    // 1. In process, group commit.
    let cell = {
        let config = config(&dir, Durability::GroupSync, WriterConfig::default(), Vec::new())?;
        tokio::task::spawn_blocking(move || OpenCell::open(&config, Arc::new(Metrics::default()))).await??
    };
    setup(&cell, args.players).await?;
    settle_disk().await?;
    let mut grouped =
        inprocess(&cell.domains.ledger, args.players, args.inprocess_concurrency, duration, "grouped").await?;
    report("in process, group commit", &mut grouped);
    tokio::task::spawn_blocking(move || cell.close()).await?;

    // 2. In process, one operation per commit and one sync per commit: the baseline.
    let cell = {
        let config = config(
            &dir,
            Durability::SyncPerCommit,
            WriterConfig { batch_ops_max: 1, ..WriterConfig::default() },
            Vec::new(),
        )?;
        tokio::task::spawn_blocking(move || OpenCell::open(&config, Arc::new(Metrics::default()))).await??
    };
    settle_disk().await?;
    let mut single =
        inprocess(&cell.domains.ledger, args.players, args.inprocess_concurrency, duration, "single").await?;
    report("in process, sync per commit", &mut single);
    tokio::task::spawn_blocking(move || cell.close()).await?;

    // 3. Over HTTP, the real server, group commit.
    let authorization = super::operator_authorization(&dir)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(crate::server::run(
        config(&dir, Durability::GroupSync, WriterConfig::default(), Vec::new())?,
        listener,
        async {
            let _ = stopped.await;
        },
    ));
    wait_ready(address).await?;
    settle_disk().await?;
    // Unmeasured first: the server opened the store cold (see `cell bench rounds`).
    let warmup =
        http(address, &authorization, args.players, args.connections, Duration::from_secs(args.warmup_seconds), "w")
            .await?;
    let before = Stages::scrape(address).await?;
    let mut over_http = http(address, &authorization, args.players, args.connections, duration, "").await?;
    report("over HTTP", &mut over_http);
    eprintln!("{}", Stages::scrape(address).await?.since(&before));
    let _ = stop.send(());
    server.await??;

    let failures = grouped.failures + single.failures + warmup.failures + over_http.failures;
    if failures > 0 {
        bail!("{failures} operations failed during the benchmark");
    }
    // CPU per operation (the whole process: the load tasks too): steadier than throughput on a
    // shared machine, so the figure to compare changes to the hot path by.
    println!("inprocess_cpu_us_per_op={:.1}", grouped.cpu_us_per_op());
    println!("inprocess_store_cpu_us_per_op={:.1}", grouped.store_cpu_us_per_op());
    println!("http_cpu_us_per_op={:.1}", over_http.cpu_us_per_op());
    println!("inprocess_p999_ms={:.2}", grouped.quantile_ms(0.999));
    println!("http_p999_ms={:.2}", over_http.quantile_ms(0.999));
    println!("inprocess_ops_per_s={:.0}", grouped.ops_per_s());
    println!("inprocess_p99_ms={:.2}", grouped.p99_ms());
    println!("http_ops_per_s={:.0}", over_http.ops_per_s());
    println!("http_p99_ms={:.2}", over_http.p99_ms());
    println!("sync_per_commit_ops_per_s={:.0}", single.ops_per_s());
    println!("group_commit_speedup={:.1}", grouped.ops_per_s() / single.ops_per_s());
    Ok(())
}
