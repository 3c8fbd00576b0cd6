//! Benchmarks that print `key=value` figures: `cell bench wallet` ([`wallet`]), `cell bench
//! rounds` ([`rounds`]) and `cell bench cashier` ([`cashier`]). Each runs a real cell on a store under a temporary directory; this module
//! holds what they share (players, phases, the cell's configuration, an HTTP client).

mod cashier;
mod cpu;
mod export;
mod replication;
mod rounds;
mod wallet;

pub use cashier::{cashier, CashierBenchArgs};
pub use export::{export, ExportBenchArgs};
pub use replication::{replication, ReplicationBenchArgs};
pub use rounds::{rounds, RoundsBenchArgs};
pub use wallet::{wallet, WalletBenchArgs};

use crate::domains::compliance::limits::SetLimits;
use crate::domains::gaming::providers::Provider;
use crate::domains::wallet::Movement;
use crate::events::EventContext;
use crate::idempotency::IdempotencyKey;
use crate::ledger::WriterConfig;
use crate::server::{CellConfig, OpenCell};
use crate::store::embedded::Durability;
use anyhow::bail;
use bytes::Bytes;
use contracts::limits::{LimitChange, LimitKind};
use contracts::players::RegisterPlayerRequest;
use contracts::region::LimitPeriod;
use contracts::region::RegionConfig;
use contracts::wallet::MovementReason;
use contracts::{Currency, Money, PlayerId};
use http_body_util::Full;
use rust_decimal::Decimal;
use std::time::{Duration, Instant};

const UK_REGION: &str = include_str!("../../../config/regions/uk.toml");

pub(super) fn ctx() -> EventContext {
    EventContext { cell: "uk".into(), trace_id: "bench".into(), operator: None }
}

pub(super) fn key(text: &str, route: &str) -> IdempotencyKey {
    IdempotencyKey::new(text, route, &serde_json::Value::String(text.to_owned())).expect("bench keys are valid")
}

pub(super) fn player(i: usize) -> PlayerId {
    PlayerId::new(format!("uk-bench-{i}")).expect("valid id")
}

/// Latencies of one phase, in microseconds, and the CPU time the process used meanwhile.
pub(super) struct Phase {
    pub ops: u64,
    pub elapsed: Duration,
    pub latencies_us: Vec<u32>,
    pub failures: u64,
    pub cpu: cpu::CpuUse,
}

/// When a phase started: its wall clock and its threads' CPU time.
pub(super) struct PhaseStart {
    at: Instant,
    cpu: cpu::CpuSnapshot,
}

impl PhaseStart {
    pub fn now() -> PhaseStart {
        PhaseStart { cpu: cpu::CpuSnapshot::now(), at: Instant::now() }
    }
}

impl Phase {
    /// Waits for every load task (each answering its latencies and failures) and adds them up.
    pub async fn gather(
        mut tasks: tokio::task::JoinSet<anyhow::Result<(Vec<u32>, u64)>>,
        started: PhaseStart,
    ) -> anyhow::Result<Phase> {
        let mut phase =
            Phase { ops: 0, elapsed: Duration::ZERO, latencies_us: Vec::new(), failures: 0, cpu: Default::default() };
        while let Some(done) = tasks.join_next().await {
            let (latencies, failures) = done??;
            phase.ops += latencies.len() as u64;
            phase.latencies_us.extend(latencies);
            phase.failures += failures;
        }
        phase.elapsed = started.at.elapsed();
        phase.cpu = cpu::CpuSnapshot::now().since(&started.cpu);
        Ok(phase)
    }

    /// CPU microseconds per operation, or NaN where it could not be measured.
    pub fn cpu_us_per_op(&self) -> f64 {
        self.cpu.us_per_op(self.ops).unwrap_or(f64::NAN)
    }

    /// CPU microseconds per operation of the store's own threads: the commit and durability
    /// threads of the wallet's pipeline, fjall's flush and compaction worker, and the store's
    /// housekeeping. What storing each operation's records costs, beside the writer that makes them.
    pub fn store_cpu_us_per_op(&self) -> f64 {
        let is_store = |name: &str| {
            ["ledger-commit", "ledger-durable", "fjall", "store-"].iter().any(|prefix| name.starts_with(prefix))
        };
        self.cpu.us_per_op_of(self.ops, is_store).unwrap_or(f64::NAN)
    }

    pub fn ops_per_s(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }
    pub fn p99_ms(&mut self) -> f64 {
        self.quantile_ms(0.99)
    }

    /// The latency below which a fraction `q` of operations finished, in milliseconds.
    pub fn quantile_ms(&mut self, q: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        // Sorting an already sorted vector is linear, so asking for several quantiles is cheap.
        self.latencies_us.sort_unstable();
        let i = ((self.latencies_us.len() as f64) * q) as usize;
        f64::from(self.latencies_us[i.min(self.latencies_us.len() - 1)]) / 1000.0
    }
}

pub(super) fn config(
    dir: &std::path::Path,
    durability: Durability,
    writer: WriterConfig,
    providers: Vec<Provider>,
) -> anyhow::Result<CellConfig> {
    Ok(CellConfig {
        region: RegionConfig::from_toml(UK_REGION)?,
        data_dir: dir.to_owned(),
        store: Default::default(),
        durability,
        writer,
        tls: None,
        providers,
        control: None,
        intervals: Default::default(),
        store_faults: None,
        registers: None,
        kyc: None,
        psps: Vec::new(),
        callback_base: String::new(),
        tamper_token_url: None,
        replication: None,
        clock: crate::clock::system(),
    })
}

/// Makes the cell in `dir` trust a fresh operator-token key, as if global-control had issued it,
/// and returns `Authorization` with an `finance` token of that key: the benchmarks drive the back
/// office's wallet routes over HTTP as the back office would.
pub(super) fn operator_authorization(dir: &std::path::Path) -> anyhow::Result<String> {
    let key = ed25519_dalek::SigningKey::from_bytes(&rand::random());
    let public = contracts::operators::OperatorKey::of(&key);
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join(contracts::operators::KEY_FILE), serde_json::to_vec(&public)?)?;
    let now = crate::clock::system().now().timestamp();
    let (_, token) = contracts::operators::issue(&key, contracts::operators::Role::Finance, "tok_bench", now);
    Ok(format!("Bearer {token}"))
}

/// Parses a count that must be at least 1 (players, connections, tasks): zero would leave nothing
/// to measure, so clap refuses it with the option's name.
pub(super) fn at_least_one() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::new().range(1..)
}

/// Registers and funds the players, concurrently so group commit shares the syncs, and gives each
/// a deposit and a loss limit for every period, so the responsible-gambling gate checks and counts
/// every stake and deposit it measures (limits far above what the benchmark moves).
pub(super) async fn setup(cell: &OpenCell, players: usize) -> anyhow::Result<()> {
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
                    // The bench's players never log in: no credential is stored.
                    password: contracts::players::Password(String::new()),
                    profile: None,
                };
                let key = key(&format!("register-{i}"), "players.register");
                compliance.player_register(request, None, &key, &ctx(), None, None)?;
            }
            Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let mut credits = tokio::task::JoinSet::new();
    for i in 0..players {
        let wallet = cell.domains.ledger.clone();
        credits.spawn(async move {
            let command = Movement {
                player: player(i),
                money: Money::positive(Decimal::from(1_000_000), gbp)?,
                reason: MovementReason::Deposit,
                inward: true,
                location: None,
                payment_method: None,
            };
            wallet.execute(command, key(&format!("fund-{i}"), "wallet.credit"), ctx()).await?;
            anyhow::Ok(())
        });
    }
    while let Some(done) = credits.join_next().await {
        done??;
    }
    let mut limits = tokio::task::JoinSet::new();
    for i in 0..players {
        let (ledger, region) = (cell.domains.ledger.clone(), cell.domains.region.clone());
        limits.spawn(async move {
            let changes = [LimitKind::Deposit, LimitKind::Loss]
                .into_iter()
                .flat_map(|kind| {
                    [LimitPeriod::Day, LimitPeriod::Week, LimitPeriod::Month].map(|period| LimitChange {
                        kind,
                        period,
                        amount: Some(contracts::Amount(Decimal::from(50_000_000))),
                    })
                })
                .collect();
            let command = SetLimits { region, player: player(i), changes };
            ledger.execute_unkeyed(command, ctx()).await.map_err(|e| anyhow::anyhow!("set limits: {e:?}"))?;
            anyhow::Ok(())
        });
    }
    while let Some(done) = limits.join_next().await {
        done??;
    }
    eprintln!(
        "setup: {players} players registered, funded and given limits in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// A keep-alive HTTP/1.1 client as lean as a load generator should be (as wrk is): each request
/// goes out in one write, and only the status line and `content-length` of the answer are read.
/// The client shares the machine's two cores with the server it measures; hyper's client took
/// about a third of the tokio workers' time here, which the server then did not get.
pub(super) struct Client {
    stream: tokio::net::TcpStream,
    request: Vec<u8>,
    /// What was read and not yet consumed.
    read: Vec<u8>,
}

impl Client {
    pub async fn connect(address: std::net::SocketAddr) -> anyhow::Result<Client> {
        let stream = tokio::net::TcpStream::connect(address).await?;
        stream.set_nodelay(true)?;
        Ok(Client { stream, request: Vec::with_capacity(1024), read: Vec::with_capacity(4096) })
    }

    /// One POST with a JSON body; an answer other than 2xx is an error carrying its body.
    pub async fn post(&mut self, path: &str, headers: &[(&str, &str)], body: &str) -> anyhow::Result<()> {
        use std::io::Write;
        use tokio::io::AsyncWriteExt;
        self.request.clear();
        write!(
            self.request,
            "POST {path} HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
            body.len()
        )?;
        for (name, value) in headers {
            write!(self.request, "{name}: {value}\r\n")?;
        }
        self.request.extend_from_slice(b"\r\n");
        self.request.extend_from_slice(body.as_bytes());
        self.stream.write_all(&self.request).await?;
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 16];
            let mut response = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(head) = response.parse(&self.read)? {
                let status = response.code.unwrap_or(0);
                let mut length = 0;
                for h in response.headers.iter() {
                    if h.name.eq_ignore_ascii_case("content-length") {
                        length = std::str::from_utf8(h.value)?.parse::<usize>()?;
                    } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                        bail!("{path}: chunked answers are not expected from the cell");
                    }
                }
                while self.read.len() < head + length {
                    self.fill().await?;
                }
                let outcome = if (200..300).contains(&status) {
                    Ok(())
                } else {
                    Err(anyhow::anyhow!(
                        "{path} answered {status}: {}",
                        String::from_utf8_lossy(&self.read[head..head + length])
                    ))
                };
                self.read.drain(..head + length);
                return outcome;
            }
            self.fill().await?;
        }
    }

    async fn fill(&mut self) -> anyhow::Result<()> {
        use tokio::io::AsyncReadExt;
        self.read.reserve(4096);
        if self.stream.read_buf(&mut self.read).await? == 0 {
            bail!("the cell closed the connection");
        }
        Ok(())
    }
}

/// One stderr line per phase. The whole latency distribution is there because a p99 on this
/// machine is often set by a few stalls that hold every connection at once (a storage flush): a
/// p99.9 and a maximum far above the p99 say so, a p50 close to the p99 says the load is even.
pub(super) fn report(name: &str, phase: &mut Phase) {
    let [p50, p90, p99, p999, max] = [0.5, 0.9, 0.99, 0.999, 1.0].map(|q| phase.quantile_ms(q));
    eprintln!(
        "{name}: {} ops in {:.1} s = {:.0} ops/s, latency p50 {p50:.2} ms, p90 {p90:.2}, p99 {p99:.2}, \
         p99.9 {p999:.2}, max {max:.2}, {} failed; CPU {}",
        phase.ops,
        phase.elapsed.as_secs_f64(),
        phase.ops_per_s(),
        phase.failures,
        phase.cpu.breakdown(phase.ops)
    );
}

/// Waits until the disk has finished earlier work: dirty pages written, and the filesystem's
/// journal committed, with the discards of whatever was deleted. A benchmark deletes its data
/// directory when it ends; on this machine's ext4 (mounted with `discard`) those discards go out
/// at the next journal commit, within five seconds, and they held the next run's journal syncs for
/// 80-130 ms, right in its measurement (round p99.9 150-400 ms in back-to-back runs). Called before
/// each measured phase, so a run measures its own work.
pub(super) async fn settle_disk() -> anyhow::Result<()> {
    tokio::task::spawn_blocking(rustix::fs::sync).await?;
    Ok(())
}

/// The wallet pipeline's stage histograms (`cell_wallet_stage_seconds`), as the cell's own
/// `/metrics` shows them: per stage, the sum of seconds and the count.
pub(super) struct Stages(std::collections::BTreeMap<String, (f64, f64)>);

impl Stages {
    pub async fn scrape(address: std::net::SocketAddr) -> anyhow::Result<Stages> {
        let (_, body) = get(address, "/metrics").await?;
        Stages::parse(std::str::from_utf8(&body)?)
    }

    fn parse(metrics: &str) -> anyhow::Result<Stages> {
        let mut stages = std::collections::BTreeMap::new();
        for line in metrics.lines() {
            let Some(rest) = line.strip_prefix("cell_wallet_stage_seconds_") else { continue };
            let Some((what, rest)) = rest.split_once("{stage=\"") else { continue };
            let Some((stage, value)) = rest.split_once("\"} ") else { continue };
            let entry: &mut (f64, f64) = stages.entry(stage.to_owned()).or_default();
            match what {
                "sum" => entry.0 = value.trim().parse()?,
                "count" => entry.1 = value.trim().parse()?,
                _ => {}
            }
        }
        Ok(Stages(stages))
    }

    /// One line: the mean time of each stage between `before` and `self`, in milliseconds, in
    /// pipeline order. Says whether a phase waited on its syncs, its commits or its writer.
    pub fn since(&self, before: &Stages) -> String {
        let mut parts = Vec::new();
        for stage in crate::metrics::Stage::ALL.map(crate::metrics::Stage::label) {
            let (sum, count) = self.0.get(stage).copied().unwrap_or_default();
            let (sum0, count0) = before.0.get(stage).copied().unwrap_or_default();
            if count > count0 {
                parts.push(format!("{stage} {:.2}", (sum - sum0) / (count - count0) * 1e3));
            }
        }
        format!("mean ms by wallet stage: {}", parts.join(", "))
    }
}

/// One GET on a new connection: the answer's status and body.
pub(super) async fn get(address: std::net::SocketAddr, path: &str) -> anyhow::Result<(hyper::StatusCode, Bytes)> {
    use http_body_util::BodyExt;
    let stream = tokio::net::TcpStream::connect(address).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake::<_, Full<Bytes>>(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let request = hyper::Request::get(path).header("host", "bench").body(Full::new(Bytes::new()))?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    Ok((status, response.into_body().collect().await?.to_bytes()))
}

pub(super) async fn wait_ready(address: std::net::SocketAddr) -> anyhow::Result<()> {
    for _ in 0..500 {
        if get(address, "/readyz").await.is_ok_and(|(status, _)| status.is_success()) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bail!("the cell at {address} did not become ready")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Metrics, Stage};

    #[test]
    fn stage_means_come_from_the_metrics_text_the_cell_serves() {
        let metrics = Metrics::default();
        let before = Stages::parse(&metrics.render()).unwrap();
        let long_ago = Instant::now().checked_sub(Duration::from_millis(40)).unwrap();
        metrics.wallet_stage(Stage::Synced, long_ago);
        metrics.wallet_stage(Stage::Synced, long_ago);
        let line = Stages::parse(&metrics.render()).unwrap().since(&before);
        let synced: f64 = line.split("synced ").nth(1).expect("the synced stage is listed").parse().unwrap();
        assert!((40.0..1_000.0).contains(&synced), "{line}");
        assert!(!line.contains("queued"), "a stage with nothing new is left out: {line}");
    }
}
