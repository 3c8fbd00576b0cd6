//! `cell bench cashier`: deposits end to end, as players make them: `POST /cashier/deposits`, the
//! sandbox's card PSP authorises it and notifies the cell, the cell captures it, the PSP's capture
//! notification credits the wallet; each deposit is timed from the player's request until the
//! player's poll sees it `captured`. Beside it, in the same run on the same cell, the back office's
//! `POST /wallet/credit` at the same concurrency: the cashier's figure as a ratio of the wallet's.
//! Prints `cashier_deposits_per_s`, `cashier_deposit_p99_ms`, `wallet_credits_per_s` and
//! `cashier_to_wallet_ratio`.
//!
//! The sandbox (`sandbox serve`, from the directory of this binary unless `--sandbox` names it)
//! runs as its own process; its notifications wait 150 ms each by design, so the latency is mostly
//! the PSP's, and the throughput is what many players in flight at once reach.

use super::{at_least_one, config, operator_authorization, settle_disk, wait_ready, Phase, PhaseStart};
use crate::ledger::WriterConfig;
use crate::store::embedded::Durability;
use anyhow::{bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, clap::Args)]
pub struct CashierBenchArgs {
    /// Seconds each measured phase runs.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Players depositing at once, each one deposit at a time.
    #[arg(long, default_value_t = 64, value_parser = at_least_one())]
    pub players: usize,
    /// The sandbox binary; by default `sandbox` beside this one.
    #[arg(long)]
    pub sandbox: Option<std::path::PathBuf>,
}

const SECRET: &str = "bench-psp-card-secret";
const PASSWORD: &str = "bench players' passphrase";

/// One HTTP/1.1 exchange on a fresh connection: status and JSON body.
async fn exchange(
    address: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> anyhow::Result<(u16, Value)> {
    let stream = tokio::net::TcpStream::connect(address).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake::<_, Full<Bytes>>(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let mut request = hyper::Request::builder().method(method).uri(path).header("host", "bench");
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let body = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
    let response =
        sender.send_request(request.header("content-type", "application/json").body(Full::new(body))?).await?;
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await?.to_bytes();
    Ok((status, serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
}

/// A sandbox process on a free port, killed when dropped.
struct Sandbox(std::process::Child, u16);

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_sandbox(binary: &std::path::Path, dir: &std::path::Path) -> anyhow::Result<Sandbox> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let child = std::process::Command::new(binary)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data"])
        .arg(dir.join("sandbox"))
        .env("PSP_CARD_SECRET", SECRET)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .with_context(|| format!("start {} (build it: cargo build --release -p sandbox)", binary.display()))?;
    Ok(Sandbox(child, port))
}

pub async fn cashier(args: CashierBenchArgs) -> anyhow::Result<()> {
    let sandbox_bin = match &args.sandbox {
        Some(path) => path.clone(),
        None => std::env::current_exe()?.with_file_name("sandbox"),
    };
    let temp = tempfile::tempdir().context("create temporary directory")?;
    let dir = temp.path().to_owned();
    let sandbox = start_sandbox(&sandbox_bin, &dir)?;
    let sandbox_addr: std::net::SocketAddr = ([127, 0, 0, 1], sandbox.1).into();
    wait_ready(sandbox_addr).await.context("the sandbox did not start")?;

    let psps_dir = dir.join("psps");
    std::fs::create_dir_all(&psps_dir)?;
    std::fs::write(psps_dir.join("card.toml"), include_str!("../../../config/psps/card.toml"))?;
    let urls = [("card".to_owned(), format!("http://{sandbox_addr}"))];
    let psps = crate::domains::cashier::psps::load_dir_with(&psps_dir, &urls, |_| Some(SECRET.to_owned()))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let finance = operator_authorization(&dir)?;
    let mut cell_config = config(&dir, Durability::GroupSync, WriterConfig::default(), Vec::new())?;
    cell_config.psps = psps;
    cell_config.callback_base = format!("http://{address}");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(crate::server::run(cell_config, listener, async {
        let _ = stopped.await;
    }));
    wait_ready(address).await?;

    // Players who log in: registered over HTTP, with a password.
    let mut tokens = Vec::new();
    for i in 0..args.players {
        let id = format!("uk-cashier-{i}");
        let body = json!({ "playerId": id, "dateOfBirth": "1980-01-01", "country": "GB", "currency": "GBP", "password": PASSWORD });
        let (status, answer) =
            exchange(address, "POST", "/players", &[("x-idempotency-key", &format!("reg-{i}"))], Some(body)).await?;
        if status != 201 {
            bail!("register {id}: {status} {answer}");
        }
        let (_, login) =
            exchange(address, "POST", "/sessions", &[], Some(json!({ "playerId": id, "password": PASSWORD }))).await?;
        let token = login["accessToken"].as_str().context("a token")?.to_owned();
        tokens.push((id, format!("Bearer {token}")));
    }
    settle_disk().await?;
    eprintln!("setup: {} players registered and logged in", args.players);

    let duration = Duration::from_secs(args.seconds);
    let mut deposits = deposit_phase(address, &tokens, duration).await?;
    let mut credits = credit_phase(address, &tokens, &finance, duration).await?;
    let _ = stop.send(());
    server.await??;
    drop(sandbox);
    if deposits.failures > 0 || credits.failures > 0 {
        bail!("{} deposits and {} credits failed during the benchmark", deposits.failures, credits.failures);
    }
    super::report("cashier deposits end to end (request -> PSP -> notification -> capture -> credit)", &mut deposits);
    super::report("wallet credits over HTTP (the back office's POST /wallet/credit)", &mut credits);
    println!("cashier_deposits_per_s={:.1}", deposits.ops_per_s());
    println!("cashier_deposit_p99_ms={:.1}", deposits.p99_ms());
    println!("wallet_credits_per_s={:.0}", credits.ops_per_s());
    println!("cashier_to_wallet_ratio={:.4}", deposits.ops_per_s() / credits.ops_per_s());
    Ok(())
}

/// Each player deposits, waits until the deposit is credited, and deposits again.
async fn deposit_phase(
    address: std::net::SocketAddr,
    tokens: &[(String, String)],
    duration: Duration,
) -> anyhow::Result<Phase> {
    let deadline = Instant::now() + duration;
    let started = PhaseStart::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (n, (player, bearer)) in tokens.iter().cloned().enumerate() {
        tasks.spawn(async move {
            let (mut latencies, mut failures, mut k) = (Vec::new(), 0u64, 0u64);
            while Instant::now() < deadline {
                k += 1;
                let t = Instant::now();
                let key = format!("dep-{n}-{k}");
                let body = json!({ "playerId": player, "psp": "card", "amount": "10.00", "currency": "GBP", "paymentMethod": "card:tok_visa_4242" });
                let headers = [("authorization", bearer.as_str()), ("x-idempotency-key", key.as_str())];
                let (status, payment) = exchange(address, "POST", "/cashier/deposits", &headers, Some(body)).await?;
                let Some(id) = payment["id"].as_str().filter(|_| status == 201).map(str::to_owned) else {
                    failures += 1;
                    continue;
                };
                let path = format!("/cashier/payments/{id}");
                let credited = loop {
                    let (_, now) = exchange(address, "GET", &path, &[("authorization", bearer.as_str())], None).await?;
                    match now["status"].as_str() {
                        Some("captured") => break true,
                        Some("failed") => break false,
                        _ if t.elapsed() > Duration::from_secs(30) => break false,
                        _ => tokio::time::sleep(Duration::from_millis(10)).await,
                    }
                };
                if credited {
                    latencies.push(u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX));
                } else {
                    failures += 1;
                }
            }
            anyhow::Ok((latencies, failures))
        });
    }
    Phase::gather(tasks, started).await
}

/// The back office credits the same players, at the same concurrency.
async fn credit_phase(
    address: std::net::SocketAddr,
    tokens: &[(String, String)],
    finance: &str,
    duration: Duration,
) -> anyhow::Result<Phase> {
    let deadline = Instant::now() + duration;
    let started = PhaseStart::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (n, (player, _)) in tokens.iter().cloned().enumerate() {
        let finance = finance.to_owned();
        tasks.spawn(async move {
            let (mut latencies, mut failures, mut k) = (Vec::new(), 0u64, 0u64);
            while Instant::now() < deadline {
                k += 1;
                let t = Instant::now();
                let key = format!("credit-{n}-{k}");
                let body = json!({ "playerId": player, "currency": "GBP", "amount": "1.00", "reason": "adjustment" });
                let headers = [("authorization", finance.as_str()), ("x-idempotency-key", key.as_str())];
                match exchange(address, "POST", "/wallet/credit", &headers, Some(body)).await? {
                    (200, _) => latencies.push(u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX)),
                    _ => failures += 1,
                }
            }
            anyhow::Ok((latencies, failures))
        });
    }
    Phase::gather(tasks, started).await
}
