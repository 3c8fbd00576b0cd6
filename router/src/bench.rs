//! `router bench`: what the router adds in front of a cell, beside nginx doing the same job.
//!
//! One real `cell` process (from the same target directory) with one registered player; the
//! request is the player's balance (`GET /wallet/{id}/balance`, a public route). Three paths to the
//! same cell: direct, through this router (as a GB client behind a trusted proxy), and through
//! nginx from Debian's packages as a plain reverse proxy with keep-alive upstreams. First each
//! path's saturation throughput; then each path's latency at a fixed rate of half the direct
//! saturation, from which the added p50/p99 are the differences to direct.

use anyhow::{bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
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
    /// nginx binary.
    #[arg(long, default_value = "/usr/sbin/nginx")]
    pub nginx: PathBuf,
}

/// A client in Great Britain, as the trusted proxy in front of the router reports it.
const CLIENT_IP: &str = "81.2.69.142";
const PLAYER: &str = "uk-bench";

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

async fn get(sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>, path: &str) -> anyhow::Result<u16> {
    sender.ready().await?;
    let request = hyper::Request::get(path)
        .header("host", "bench")
        .header("x-forwarded-for", CLIENT_IP)
        .body(Full::new(Bytes::new()))?;
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

/// Requests per second with every connection sending back to back.
async fn saturate(address: SocketAddr, connections: usize, duration: Duration) -> anyhow::Result<f64> {
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..connections {
        let done = done.clone();
        tasks.spawn(async move {
            let mut s = connect(address).await?;
            while Instant::now() < deadline {
                if get(&mut s, &format!("/wallet/{PLAYER}/balance")).await? != 200 {
                    bail!("a request failed");
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(())
        });
    }
    while let Some(t) = tasks.join_next().await {
        t??;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
}

/// Latencies (µs, sorted) at a fixed total rate spread over the connections.
async fn at_rate(address: SocketAddr, connections: usize, rate: f64, duration: Duration) -> anyhow::Result<Vec<u32>> {
    let per_connection = Duration::from_secs_f64(connections as f64 / rate.max(1.0));
    let deadline = Instant::now() + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..connections {
        tasks.spawn(async move {
            let mut s = connect(address).await?;
            // Stagger the connections across one period.
            tokio::time::sleep(per_connection.mul_f64(i as f64 / connections as f64)).await;
            let mut tick = tokio::time::interval(per_connection);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                tick.tick().await;
                let t = Instant::now();
                if get(&mut s, &format!("/wallet/{PLAYER}/balance")).await? != 200 {
                    bail!("a request failed");
                }
                latencies.push(t.elapsed().as_micros() as u32);
            }
            anyhow::Ok(latencies)
        });
    }
    let mut all = Vec::new();
    while let Some(t) = tasks.join_next().await {
        all.extend(t??);
    }
    all.sort_unstable();
    Ok(all)
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
    let body = format!(r#"{{"playerId":"{PLAYER}","dateOfBirth":"1980-01-01","country":"GB","currency":"GBP"}}"#);
    let request = hyper::Request::post("/players")
        .header("host", "bench")
        .header("x-idempotency-key", "bench-register")
        .body(Full::new(Bytes::from(body)))?;
    let status = s.send_request(request).await?.status();
    if !status.is_success() {
        bail!("registering the bench player answered {status}");
    }

    // The router.
    let router_port = free_port()?;
    let router_address: SocketAddr = ([127, 0, 0, 1], router_port).into();
    let _router = Process(
        Command::new(std::env::current_exe()?)
            .args([
                "serve",
                "--insecure-dev",
                "--trusted-proxy",
                "127.0.0.1/32",
                "--client-rps",
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
    let _nginx = Process(
        Command::new(&args.nginx)
            .arg("-c")
            .arg(&conf)
            .args(["-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("start {} (apt-get install nginx)", args.nginx.display()))?,
    );
    wait_for(nginx_address, &format!("/wallet/{PLAYER}/balance")).await?;

    let direct_rps = saturate(cell_address, args.connections, duration).await.context("direct at saturation")?;
    eprintln!("direct: {direct_rps:.0} requests/s at saturation");
    let routed_rps = saturate(router_address, args.connections, duration).await.context("router at saturation")?;
    eprintln!("through the router: {routed_rps:.0} requests/s at saturation");
    let nginx_rps = saturate(nginx_address, args.connections, duration).await.context("nginx at saturation")?;
    eprintln!("through nginx: {nginx_rps:.0} requests/s at saturation");
    let rate = direct_rps / 2.0;
    let direct = at_rate(cell_address, args.connections, rate, duration).await.context("direct at a fixed rate")?;
    let routed = at_rate(router_address, args.connections, rate, duration).await.context("router at a fixed rate")?;
    let nginx = at_rate(nginx_address, args.connections, rate, duration).await.context("nginx at a fixed rate")?;
    for (name, l) in [("direct", &direct), ("router", &routed), ("nginx", &nginx)] {
        eprintln!(
            "{name} at {rate:.0}/s: p50 {:.3} ms, p99 {:.3} ms, {} requests",
            percentile_ms(l, 0.5),
            percentile_ms(l, 0.99),
            l.len()
        );
    }
    let added = |l: &[u32], p: f64| (percentile_ms(l, p) - percentile_ms(&direct, p)).max(0.0);
    println!("direct_rps={direct_rps:.0}");
    println!("routed_rps={routed_rps:.0}");
    println!("nginx_rps={nginx_rps:.0}");
    println!("added_p50_ms={:.3}", added(&routed, 0.5));
    println!("added_p99_ms={:.3}", added(&routed, 0.99));
    println!("nginx_added_p50_ms={:.3}", added(&nginx, 0.5));
    println!("nginx_added_p99_ms={:.3}", added(&nginx, 0.99));
    Ok(())
}
