//! `router bench`: what the router adds in front of a cell, beside nginx doing the same job.
//!
//! One real `cell` process (from the same target directory) with one registered, logged-in player;
//! the request is the player's balance (`GET /wallet/{id}/balance` with the player's access token:
//! the router verifies the token on every request, and the cell again). Three paths to the
//! same cell: direct, through this router (as a GB client behind a trusted proxy), and through
//! nginx from Debian's packages as a plain reverse proxy with keep-alive upstreams. First each
//! path's saturation throughput; then each path's latency at a fixed rate of half the direct
//! saturation, from which the added p50/p99 are the differences to direct. The three paths take
//! turns in one-second slices, so a noisy neighbour on a shared machine weighs on all of them
//! alike. The load generator is this process, on the same cores, for all three paths.

use anyhow::{bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Seconds each measured phase runs.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// Keep-alive connections of the load generator.
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// The region files (the router's configuration).
    #[arg(long, default_value = "config/regions")]
    pub regions: PathBuf,
    #[arg(long, default_value = ".cache/geoip/geo-whois-asn-country.mmdb")]
    pub geoip: PathBuf,
    /// Requests per second of the latency phase (default: half the direct saturation).
    #[arg(long)]
    pub rate: Option<f64>,
    /// nginx binary.
    #[arg(long, default_value = "/usr/sbin/nginx")]
    pub nginx: PathBuf,
}

/// A client in Great Britain, as the trusted proxy in front of the router reports it.
const CLIENT_IP: &str = "81.2.69.142";
const PLAYER: &str = "uk-bench";
const PASSWORD: &str = "the bench player's passphrase";

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// nginx's master process. Killing it would orphan its workers, which keep the port and a core
/// busy after the bench; `nginx -s stop` makes the master stop them first.
struct Nginx {
    master: Child,
    binary: PathBuf,
    conf: PathBuf,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let stopped = Command::new(&self.binary)
            .arg("-c")
            .arg(&self.conf)
            .args(["-s", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !stopped {
            let _ = self.master.kill();
        }
        let _ = self.master.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// `Authorization: Bearer <the bench player's access token>`, once logged in.
static BEARER: std::sync::OnceLock<String> = std::sync::OnceLock::new();

async fn get(sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>, path: &str) -> anyhow::Result<u16> {
    sender.ready().await?;
    let mut request = hyper::Request::get(path).header("host", "bench").header("x-forwarded-for", CLIENT_IP);
    if let Some(bearer) = BEARER.get() {
        request = request.header("authorization", bearer);
    }
    let request = request.body(Full::new(Bytes::new()))?;
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    response.into_body().collect().await?;
    Ok(status)
}

async fn connect(address: SocketAddr) -> anyhow::Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(address).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

async fn wait_for(address: SocketAddr, path: &str) -> anyhow::Result<()> {
    for _ in 0..500 {
        if let Ok(mut s) = connect(address).await {
            if matches!(get(&mut s, path).await, Ok(200)) {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bail!("{address}{path} never answered 200")
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// One path to the cell, with its load generator's keep-alive connections, opened once so every
/// slice of a phase measures requests rather than TCP handshakes.
struct Target {
    name: &'static str,
    senders: Vec<Sender>,
    /// The processes between the load generator and the cell (none for the direct path), whose
    /// CPU time per request is measured.
    proxy: Vec<u32>,
}

impl Target {
    async fn open(
        name: &'static str,
        address: SocketAddr,
        connections: usize,
        proxy: Vec<u32>,
    ) -> anyhow::Result<Target> {
        let mut senders = Vec::with_capacity(connections);
        for _ in 0..connections {
            senders.push(connect(address).await.with_context(|| format!("connect to {name}"))?);
        }
        Ok(Target { name, senders, proxy })
    }
}

/// On-CPU time of every thread of the processes `pids`, from Linux's
/// `/proc/<pid>/task/*/schedstat` (nanoseconds, first field); zero where `/proc` has none.
fn processes_cpu(pids: &[u32]) -> Duration {
    let mut total = Duration::ZERO;
    for pid in pids {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { continue };
        for task in tasks.flatten() {
            let stat = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
            if let Some(ns) = stat.split_whitespace().next().and_then(|n| n.parse().ok()) {
                total += Duration::from_nanos(ns);
            }
        }
    }
    total
}

/// nginx's worker processes: the children of its master (Linux `/proc/<pid>/task/<pid>/children`).
fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// What one slice of load measured on one target.
#[derive(Default)]
struct Measured {
    requests: u64,
    elapsed: Duration,
    /// CPU time of the target's proxy processes.
    proxy_cpu: Duration,
    /// Microseconds per request (only at a fixed rate).
    latencies_us: Vec<u32>,
}

/// How a slice sends: back to back (saturation) or at a fixed total rate.
#[derive(Clone, Copy)]
enum Load {
    Saturate,
    Rate(f64),
}

/// The schedule of a fixed-rate slice: request `n` is due at `start + n / rate` and goes to
/// connection `n % connections`. A plain OS thread keeps it because tokio's timer wheel has a
/// 1 ms resolution: per-connection `interval`s of a 3 ms period fire together at each
/// millisecond tick, turning 10,000 requests/s into bursts of ten every millisecond, and a
/// proxy's added latency is then mostly the queue of its own burst. Each request is timed from
/// when it was due, so a connection still busy with its previous request, or a late load
/// generator, counts against the path under test instead of being hidden (coordinated
/// omission).
fn pace(
    rate: f64,
    duration: Duration,
    connections: Vec<tokio::sync::mpsc::UnboundedSender<Instant>>,
) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("bench-pacer".into())
        .spawn(move || {
            let start = Instant::now();
            let period = Duration::from_secs_f64(1.0 / rate.max(1.0));
            let mut n: u32 = 0;
            loop {
                let due = start + period * n;
                if due >= start + duration {
                    return;
                }
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
                // A receiver gone means its connection failed; the slice reports that error.
                let _ = connections[n as usize % connections.len()].send(due);
                n += 1;
            }
        })
        .expect("spawn the pacer thread")
}

/// Runs `load` on every connection of `target` for `duration`; the connections come back.
async fn slice(target: &mut Target, load: Load, duration: Duration) -> anyhow::Result<Measured> {
    let cpu_before = processes_cpu(&target.proxy);
    let started = Instant::now();
    let deadline = started + duration;
    let path = format!("/wallet/{PLAYER}/balance");
    let mut schedules = Vec::new();
    let mut tasks = tokio::task::JoinSet::new();
    for mut s in target.senders.drain(..) {
        let path = path.clone();
        let mut schedule = match load {
            Load::Saturate => None,
            Load::Rate(_) => {
                let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
                schedules.push(tx);
                Some(rx)
            }
        };
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            let mut requests = 0u64;
            loop {
                let sent = match schedule.as_mut() {
                    Some(schedule) => match schedule.recv().await {
                        Some(due) => due,
                        None => break,
                    },
                    None if Instant::now() < deadline => Instant::now(),
                    None => break,
                };
                if get(&mut s, &path).await? != 200 {
                    bail!("a request failed");
                }
                requests += 1;
                if schedule.is_some() {
                    latencies.push(sent.elapsed().as_micros() as u32);
                }
            }
            anyhow::Ok((s, requests, latencies))
        });
    }
    let pacer = match load {
        Load::Saturate => None,
        Load::Rate(rate) => Some(pace(rate, duration, schedules)),
    };
    let mut measured = Measured::default();
    while let Some(t) = tasks.join_next().await {
        let (sender, requests, latencies) = t??;
        target.senders.push(sender);
        measured.requests += requests;
        measured.latencies_us.extend(latencies);
    }
    if let Some(pacer) = pacer {
        pacer.join().map_err(|_| anyhow::anyhow!("the pacer thread panicked"))?;
    }
    measured.elapsed = started.elapsed();
    measured.proxy_cpu = processes_cpu(&target.proxy).saturating_sub(cpu_before);
    Ok(measured)
}

/// Runs `load` on every target for `duration` each, in slices of `SLICE` that take turns (the
/// order rotating every round), so a neighbour's burst on this shared machine lands on all
/// three paths alike instead of on whichever phase it happened to overlap.
async fn interleaved(targets: &mut [Target], load: Load, duration: Duration) -> anyhow::Result<Vec<Measured>> {
    const SLICE: Duration = Duration::from_secs(1);
    let rounds = (duration.as_secs_f64() / SLICE.as_secs_f64()).ceil().max(1.0) as usize;
    let mut totals: Vec<Measured> = targets.iter().map(|_| Measured::default()).collect();
    for round in 0..rounds {
        for k in 0..targets.len() {
            let i = (round + k) % targets.len();
            let m = slice(&mut targets[i], load, SLICE).await.with_context(|| format!("load {}", targets[i].name))?;
            totals[i].requests += m.requests;
            totals[i].elapsed += m.elapsed;
            totals[i].proxy_cpu += m.proxy_cpu;
            totals[i].latencies_us.extend(m.latencies_us);
        }
    }
    for t in &mut totals {
        t.latencies_us.sort_unstable();
    }
    Ok(totals)
}

impl Measured {
    fn rps(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    /// Microseconds of the proxy's CPU per request.
    fn proxy_cpu_us(&self) -> f64 {
        self.proxy_cpu.as_secs_f64() * 1e6 / self.requests.max(1) as f64
    }
}

fn percentile_ms(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

fn sibling_binary(name: &str) -> anyhow::Result<PathBuf> {
    let path = std::env::current_exe()?.with_file_name(name);
    if !path.exists() {
        bail!("{} is missing: build it first (cargo build --release -p cell)", path.display());
    }
    Ok(path)
}

fn nginx_config(dir: &Path, listen: u16, upstream: SocketAddr) -> String {
    format!(
        "worker_processes auto;\npid {dir}/nginx.pid;\nerror_log {dir}/error.log warn;\nevents {{ worker_connections 1024; }}\nhttp {{\n  access_log off;\n  keepalive_requests 10000000;\n  keepalive_timeout 300s;\n  client_body_temp_path {dir}/body;\n  proxy_temp_path {dir}/proxy;\n  fastcgi_temp_path {dir}/fastcgi;\n  uwsgi_temp_path {dir}/uwsgi;\n  scgi_temp_path {dir}/scgi;\n  upstream cell {{ server {upstream}; keepalive 64; keepalive_requests 10000000; }}\n  server {{\n    listen 127.0.0.1:{listen};\n    location / {{\n      proxy_pass http://cell;\n      proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n    }}\n  }}\n}}\n",
        dir = dir.display()
    )
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    if args.connections == 0 {
        bail!("--connections must be at least 1");
    }
    let dir = tempfile::tempdir()?;
    let duration = Duration::from_secs(args.seconds);

    // The cell.
    let cell_port = free_port()?;
    let cell_address: SocketAddr = ([127, 0, 0, 1], cell_port).into();
    let _cell = Process(
        Command::new(sibling_binary("cell")?)
            .args(["serve", "--listen", &cell_address.to_string(), "--region"])
            .arg(args.regions.join("uk.toml"))
            .arg("--data")
            .arg(dir.path().join("cell"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("start the cell")?,
    );
    wait_for(cell_address, "/readyz").await?;
    let mut s = connect(cell_address).await?;
    let body = format!(
        r#"{{"playerId":"{PLAYER}","dateOfBirth":"1980-01-01","country":"GB","currency":"GBP","password":"{PASSWORD}"}}"#
    );
    let request = hyper::Request::post("/players")
        .header("host", "bench")
        .header("x-idempotency-key", "bench-register")
        .body(Full::new(Bytes::from(body)))?;
    let status = s.send_request(request).await?.status();
    if !status.is_success() {
        bail!("registering the bench player answered {status}");
    }
    s.ready().await?;
    let login = format!(r#"{{"playerId":"{PLAYER}","password":"{PASSWORD}"}}"#);
    let request = hyper::Request::post("/sessions").header("host", "bench").body(Full::new(Bytes::from(login)))?;
    let answer = s.send_request(request).await?;
    let status = answer.status();
    let body = answer.into_body().collect().await?.to_bytes();
    let session: contracts::sessions::SessionResponse = serde_json::from_slice(&body).with_context(|| {
        format!("logging the bench player in answered {status}: {}", String::from_utf8_lossy(&body))
    })?;
    let _ = BEARER.set(format!("Bearer {}", session.access_token));

    // The router.
    let router_port = free_port()?;
    let router_address: SocketAddr = ([127, 0, 0, 1], router_port).into();
    let router = Process(
        Command::new(std::env::current_exe()?)
            .args([
                "serve",
                "--insecure-dev",
                "--trusted-proxy",
                "127.0.0.1/32",
                "--client-rps",
                "10000000",
                "--player-rps",
                "10000000",
                "--listen",
                &router_address.to_string(),
            ])
            .arg("--regions")
            .arg(&args.regions)
            .arg("--geoip")
            .arg(&args.geoip)
            .args(["--cell", &format!("uk=http://{cell_address}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("start the router")?,
    );
    wait_for(router_address, &format!("/wallet/{PLAYER}/balance")).await?;

    // nginx.
    let nginx_port = free_port()?;
    let nginx_address: SocketAddr = ([127, 0, 0, 1], nginx_port).into();
    let conf = dir.path().join("nginx.conf");
    std::fs::write(&conf, nginx_config(dir.path(), nginx_port, cell_address))?;
    let nginx = Nginx {
        master: Command::new(&args.nginx)
            .arg("-c")
            .arg(&conf)
            .args(["-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("start {} (apt-get install nginx)", args.nginx.display()))?,
        binary: args.nginx.clone(),
        conf: conf.clone(),
    };
    wait_for(nginx_address, &format!("/wallet/{PLAYER}/balance")).await?;

    let mut targets = [
        Target::open("direct", cell_address, args.connections, Vec::new()).await?,
        Target::open("router", router_address, args.connections, vec![router.0.id()]).await?,
        Target::open("nginx", nginx_address, args.connections, children(nginx.master.id())).await?,
    ];
    eprintln!(
        "all three reach the cell over plain HTTP/1.1 keep-alive on loopback (the router with \
         --insecure-dev, nginx with proxy_pass http://): the same transport work for both proxies"
    );
    let saturated = interleaved(&mut targets, Load::Saturate, duration).await.context("saturation")?;
    for (t, m) in targets.iter().zip(&saturated) {
        eprintln!("{}: {:.0} requests/s at saturation, {:.1} us of proxy CPU each", t.name, m.rps(), m.proxy_cpu_us());
    }
    let rate = args.rate.unwrap_or(saturated[0].rps() / 2.0);
    let timed = interleaved(&mut targets, Load::Rate(rate), duration).await.context("fixed rate")?;
    for (t, m) in targets.iter().zip(&timed) {
        eprintln!(
            "{} at {rate:.0}/s: p50 {:.3} ms, p99 {:.3} ms, {} requests",
            t.name,
            percentile_ms(&m.latencies_us, 0.5),
            percentile_ms(&m.latencies_us, 0.99),
            m.latencies_us.len()
        );
    }
    let direct = &timed[0].latencies_us;
    let added = |l: &[u32], p: f64| (percentile_ms(l, p) - percentile_ms(direct, p)).max(0.0);
    // CPU per request of each proxy at saturation: steadier than throughput on a shared machine.
    println!("router_cpu_us_per_request={:.1}", saturated[1].proxy_cpu_us());
    println!("nginx_cpu_us_per_request={:.1}", saturated[2].proxy_cpu_us());
    println!("direct_rps={:.0}", saturated[0].rps());
    println!("routed_rps={:.0}", saturated[1].rps());
    println!("nginx_rps={:.0}", saturated[2].rps());
    println!("added_p50_ms={:.3}", added(&timed[1].latencies_us, 0.5));
    println!("added_p99_ms={:.3}", added(&timed[1].latencies_us, 0.99));
    println!("nginx_added_p50_ms={:.3}", added(&timed[2].latencies_us, 0.5));
    println!("nginx_added_p99_ms={:.3}", added(&timed[2].latencies_us, 0.99));
    Ok(())
}
