//! `cell bench wallet`: the wallet's throughput and latency, in process and over HTTP, and the
//! gain of group commit over one sync per commit, all on one store under a temporary directory.
//!
//! Workload (issue #2): 10,000 players; random players; rounds of hold then settle, each its own
//! durable operation; every bet moves money through the same house account (a hot account).
//! Figures are printed as `key=value` lines at the end.

use crate::domains::wallet::{Command, SettlePart, Wallet, WriterConfig};
use crate::events::EventContext;
use crate::idempotency::IdempotencyKey;
use crate::metrics::Metrics;
use crate::server::{CellConfig, OpenCell};
use crate::store::embedded::Durability;
use anyhow::{bail, Context};
use bytes::Bytes;
use contracts::players::RegisterPlayerRequest;
use contracts::region::RegionConfig;
use contracts::wallet::MovementReason;
use contracts::{BetId, Currency, Money, PlayerId, RoundId};
use http_body_util::{BodyExt, Full};
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
    /// Players registered and funded before measuring.
    #[arg(long, default_value_t = 10_000)]
    pub players: usize,
    /// Rounds in flight at once in process (each a task doing hold then settle).
    #[arg(long, default_value_t = 1_024)]
    pub inprocess_concurrency: usize,
    /// Keep-alive HTTP connections, each doing hold then settle.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Keep the data here instead of a temporary directory.
    #[arg(long)]
    pub data: Option<std::path::PathBuf>,
}

const UK_REGION: &str = include_str!("../../config/regions/uk.toml");

fn ctx() -> EventContext {
    EventContext { cell: "uk".into(), trace_id: "bench".into() }
}

fn key(text: &str, route: &str) -> IdempotencyKey {
    IdempotencyKey::new(text, route, &serde_json::Value::String(text.to_owned())).expect("bench keys are valid")
}

fn player(i: usize) -> PlayerId {
    PlayerId::new(format!("uk-bench-{i}")).expect("valid id")
}

/// Latencies of one phase, in microseconds.
struct Phase {
    ops: u64,
    elapsed: Duration,
    latencies_us: Vec<u32>,
    failures: u64,
}

impl Phase {
    fn ops_per_s(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }
    fn p99_ms(&mut self) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        self.latencies_us.sort_unstable();
        let i = ((self.latencies_us.len() as f64) * 0.99) as usize;
        f64::from(self.latencies_us[i.min(self.latencies_us.len() - 1)]) / 1000.0
    }
}

fn config(dir: &std::path::Path, durability: Durability, writer: WriterConfig) -> anyhow::Result<CellConfig> {
    Ok(CellConfig {
        region: RegionConfig::from_toml(UK_REGION)?,
        data_dir: dir.to_owned(),
        durability,
        writer,
        tls: None,
        providers_dir: None,
        intervals: Default::default(),
    })
}

/// Registers and funds the players, concurrently so group commit shares the syncs.
async fn setup(cell: &OpenCell, players: usize) -> anyhow::Result<()> {
    let started = Instant::now();
    let gbp = Currency::from_code("GBP")?;
    let chunks: Vec<Vec<usize>> =
        (0..players).collect::<Vec<_>>().chunks(players.div_ceil(64).max(1)).map(<[usize]>::to_vec).collect();
    let mut tasks = Vec::new();
    for chunk in chunks {
        let compliance = cell.domains.compliance.clone();
        tasks.push(tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            for i in chunk {
                let request = RegisterPlayerRequest {
                    player_id: player(i),
                    date_of_birth: chrono::NaiveDate::from_ymd_opt(1980, 1, 1).expect("valid date"),
                    country: contracts::CountryCode::new("GB").map_err(anyhow::Error::msg)?,
                    currency: "GBP".into(),
                };
                compliance.player_register(request, &key(&format!("register-{i}"), "players.register"), &ctx())?;
            }
            Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let mut credits = tokio::task::JoinSet::new();
    for i in 0..players {
        let wallet = cell.domains.wallet.clone();
        credits.spawn(async move {
            let command = Command::Credit {
                player: player(i),
                money: Money::positive(Decimal::from(1_000_000), gbp)?,
                reason: MovementReason::Deposit,
            };
            wallet.execute(command, key(&format!("fund-{i}"), "wallet.credit"), ctx()).await?;
            anyhow::Ok(())
        });
    }
    while let Some(done) = credits.join_next().await {
        done??;
    }
    eprintln!("setup: {players} players registered and funded in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Hold then settle, from `concurrency` tasks, for `duration`.
async fn inprocess(
    wallet: &Wallet,
    players: usize,
    concurrency: usize,
    duration: Duration,
    tag: &str,
) -> anyhow::Result<Phase> {
    let gbp = Currency::from_code("GBP")?;
    let stake = Money::positive(Decimal::ONE, gbp)?;
    let deadline = Instant::now() + duration;
    let started = Instant::now();
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
                let hold = Command::Hold {
                    player: p.clone(),
                    round: round.clone(),
                    bet: BetId::new("b1").expect("valid"),
                    money: stake,
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
                let settle = Command::Settle { round, parts: vec![SettlePart { player: p, bet: None, delta }] };
                let t = Instant::now();
                let settled = wallet.execute(settle, key(&format!("{tag}-s{n}"), "wallet.settle"), ctx()).await;
                latencies.push(t.elapsed().as_micros() as u32);
                failures += u64::from(settled.is_err());
            }
            (latencies, failures)
        });
    }
    let mut phase = Phase { ops: 0, elapsed: Duration::ZERO, latencies_us: Vec::new(), failures: 0 };
    while let Some(done) = tasks.join_next().await {
        let (latencies, failures) = done?;
        phase.ops += latencies.len() as u64;
        phase.latencies_us.extend(latencies);
        phase.failures += failures;
    }
    phase.elapsed = started.elapsed();
    Ok(phase)
}

/// One keep-alive HTTP/1.1 connection's request.
async fn post(
    sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    path: &str,
    key: &str,
    body: String,
) -> anyhow::Result<()> {
    let request = hyper::Request::post(path)
        .header("host", "bench")
        .header("content-type", "application/json")
        .header("x-idempotency-key", key)
        .body(Full::new(Bytes::from(body)))?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    if !status.is_success() {
        bail!("{path} answered {status}: {}", String::from_utf8_lossy(&body));
    }
    Ok(())
}

async fn http(
    address: std::net::SocketAddr,
    players: usize,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<Phase> {
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let rounds = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..connections {
        let rounds = rounds.clone();
        tasks.spawn(async move {
            let stream = tokio::net::TcpStream::connect(address).await?;
            stream.set_nodelay(true)?;
            let (mut sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
            tokio::spawn(connection);
            let mut latencies = Vec::new();
            let mut failures = 0u64;
            while Instant::now() < deadline {
                let n = rounds.fetch_add(1, Ordering::Relaxed);
                let p = rand::rng().random_range(0..players);
                let hold = format!(r#"{{"playerId":"uk-bench-{p}","roundId":"http-r{n}","betId":"b1","currency":"GBP","amount":"1.00"}}"#);
                let t = Instant::now();
                let held = post(&mut sender, "/wallet/hold", &format!("http-h{n}"), hold).await;
                latencies.push(t.elapsed().as_micros() as u32);
                if held.is_err() {
                    failures += 1;
                    continue;
                }
                let delta = ["-1.00", "0.00", "1.00"][rand::rng().random_range(0..3)];
                let settle = format!(r#"{{"roundId":"http-r{n}","operations":[{{"playerId":"uk-bench-{p}","delta":"{delta}","currency":"GBP"}}]}}"#);
                let t = Instant::now();
                let settled = post(&mut sender, "/wallet/settle", &format!("http-s{n}"), settle).await;
                latencies.push(t.elapsed().as_micros() as u32);
                failures += u64::from(settled.is_err());
            }
            anyhow::Ok((latencies, failures))
        });
    }
    let mut phase = Phase { ops: 0, elapsed: Duration::ZERO, latencies_us: Vec::new(), failures: 0 };
    while let Some(done) = tasks.join_next().await {
        let (latencies, failures) = done??;
        phase.ops += latencies.len() as u64;
        phase.latencies_us.extend(latencies);
        phase.failures += failures;
    }
    phase.elapsed = started.elapsed();
    Ok(phase)
}

fn report(name: &str, phase: &mut Phase) {
    let p99_ms = phase.p99_ms();
    eprintln!(
        "{name}: {} ops in {:.1} s = {:.0} ops/s, p99 {:.2} ms, {} failed",
        phase.ops,
        phase.elapsed.as_secs_f64(),
        phase.ops_per_s(),
        p99_ms,
        phase.failures
    );
}

pub async fn wallet(args: WalletBenchArgs) -> anyhow::Result<()> {
    let temp = tempfile::tempdir().context("create temporary directory")?;
    let dir = args.data.clone().unwrap_or_else(|| temp.path().to_owned());
    let duration = Duration::from_secs(args.seconds);

    // 1. In process, group commit.
    let cell = {
        let config = config(&dir, Durability::GroupSync, WriterConfig::default())?;
        tokio::task::spawn_blocking(move || OpenCell::open(&config, Arc::new(Metrics::default()))).await??
    };
    setup(&cell, args.players).await?;
    let mut grouped =
        inprocess(&cell.domains.wallet, args.players, args.inprocess_concurrency, duration, "grouped").await?;
    report("in process, group commit", &mut grouped);
    tokio::task::spawn_blocking(move || cell.close()).await?;

    // 2. In process, one operation per commit and one sync per commit: the baseline.
    let cell = {
        let config =
            config(&dir, Durability::SyncPerCommit, WriterConfig { batch_ops_max: 1, ..WriterConfig::default() })?;
        tokio::task::spawn_blocking(move || OpenCell::open(&config, Arc::new(Metrics::default()))).await??
    };
    let mut single =
        inprocess(&cell.domains.wallet, args.players, args.inprocess_concurrency, duration, "single").await?;
    report("in process, sync per commit", &mut single);
    tokio::task::spawn_blocking(move || cell.close()).await?;

    // 3. Over HTTP, the real server, group commit.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(crate::server::run(
        config(&dir, Durability::GroupSync, WriterConfig::default())?,
        listener,
        async {
            let _ = stopped.await;
        },
    ));
    wait_ready(address).await?;
    let mut over_http = http(address, args.players, args.connections, duration).await?;
    report("over HTTP", &mut over_http);
    let _ = stop.send(());
    server.await??;

    let failures = grouped.failures + single.failures + over_http.failures;
    if failures > 0 {
        bail!("{failures} operations failed during the benchmark");
    }
    println!("inprocess_ops_per_s={:.0}", grouped.ops_per_s());
    println!("inprocess_p99_ms={:.2}", grouped.p99_ms());
    println!("http_ops_per_s={:.0}", over_http.ops_per_s());
    println!("http_p99_ms={:.2}", over_http.p99_ms());
    println!("sync_per_commit_ops_per_s={:.0}", single.ops_per_s());
    println!("group_commit_speedup={:.1}", grouped.ops_per_s() / single.ops_per_s());
    Ok(())
}

async fn wait_ready(address: std::net::SocketAddr) -> anyhow::Result<()> {
    for _ in 0..500 {
        if let Ok(stream) = tokio::net::TcpStream::connect(address).await {
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake::<_, Full<Bytes>>(hyper_util::rt::TokioIo::new(stream)).await?;
            tokio::spawn(connection);
            let request = hyper::Request::get("/readyz").header("host", "bench").body(Full::new(Bytes::new()))?;
            if sender.send_request(request).await?.status().is_success() {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bail!("the cell at {address} did not become ready")
}
