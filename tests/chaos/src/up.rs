//! `drill up`: the whole platform on this machine in one command, optionally with realistic
//! traffic, a live status screen, and a clean stop on Ctrl-C. Running it again on the same data
//! directory resumes where it stopped (same stores, certificates and admin token).

use crate::control::{ControlApi, DRILL_FLAG};
use crate::load::{Load, Targets};
use crate::platform::{Binaries, Platform, PlatformSpec, Ports, Role, DEMO_PROVIDER_SECRET};
use crate::status::Screen;
use anyhow::Context;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Load generator workers with `--traffic`: enough to show every cell busy, few enough to leave
/// the machine usable.
const TRAFFIC_WORKERS: usize = 8;
/// How often `--traffic` flips the drill flag on the control plane.
const FLAG_FLIP_INTERVAL: Duration = Duration::from_secs(15);
/// How often requests whose outcome was unknown are sent again (after a process you killed by
/// hand comes back), and for how long each time.
const RECOVERY_INTERVAL: Duration = Duration::from_secs(5);
const RECOVERY_ATTEMPT: Duration = Duration::from_secs(2);
/// How often the status asks global-control where the regulator exports stand.
const EXPORTS_INTERVAL: Duration = Duration::from_secs(10);
/// Without a terminal, a status line this often instead of a screen.
const PLAIN_STATUS_INTERVAL: Duration = Duration::from_secs(10);

pub struct UpOptions {
    pub data_dir: PathBuf,
    pub traffic: bool,
    /// With `traffic`: at most this many requests a second (`None`: as fast as it is answered).
    pub rate: Option<std::num::NonZeroU32>,
    pub standbys: bool,
    pub bins: Binaries,
    pub repo: PathBuf,
    pub geoip: PathBuf,
}

/// The first admin token of global-control, created once per data directory (mode 0600).
fn admin_token(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join("admin-token");
    if let Ok(text) = std::fs::read_to_string(&path) {
        return Ok(text.trim().to_owned());
    }
    use std::os::unix::fs::OpenOptionsExt;
    let token = format!("gct_{}", hex::encode(rand::random::<[u8; 32]>()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("create {}", path.display()))?;
    writeln!(file, "{token}")?;
    Ok(token)
}

/// Fails early, naming the port, when something already listens where a process must.
fn ports_free(ports: &Ports) -> anyhow::Result<()> {
    let tcp = [ports.control_http, ports.router].into_iter().chain(ports.cells.values().copied());
    for addr in tcp.chain(ports.standbys.values().copied()) {
        std::net::TcpListener::bind(addr)
            .with_context(|| format!("{addr} is taken: is another `drill up` (or a cell) running?"))?;
    }
    std::net::UdpSocket::bind(ports.control_quic).with_context(|| format!("UDP {} is taken", ports.control_quic))?;
    Ok(())
}

pub async fn up(options: UpOptions) -> anyhow::Result<()> {
    std::fs::create_dir_all(&options.data_dir).with_context(|| format!("create {}", options.data_dir.display()))?;
    let data_dir = options.data_dir.canonicalize()?;
    let regions =
        contracts::region::RegionConfig::load_dir(&options.repo.join("config/regions")).context("load region files")?;
    let standbys: Vec<String> = match options.standbys {
        true => regions.iter().filter(|r| r.standby_endpoint.is_some()).map(|r| r.cell_id.clone()).collect(),
        false => Vec::new(),
    };
    let ports = Ports::documented(&regions, &standbys)?;
    ports_free(&ports)?;
    let token = admin_token(&data_dir)?;
    let resumed = data_dir.join("control").exists();
    let spec = PlatformSpec {
        config_root: options.repo.clone(),
        data_dir: data_dir.clone(),
        bins: options.bins.clone(),
        geoip: options.geoip.clone(),
        ports,
        control_via: Default::default(),
        shipping_via: Default::default(),
        admin_token: token.clone(),
    };
    eprintln!("drill: starting the platform in {}{}", data_dir.display(), if resumed { " (resuming)" } else { "" });
    let mut platform = Platform::start(spec).await?;
    let router = platform.url(&Role::Router);
    let control_url = platform.url(&Role::Control);
    let tls = platform.tls_dir.display().to_string();
    let header = vec![
        format!(
            "casino platform: drill up{}   data {}   Ctrl-C stops everything",
            if options.traffic { " --traffic" } else { "" },
            data_dir.display()
        ),
        format!("players, through the router: {router}   (cells over mutual TLS, certificates in {tls})"),
        format!("control API: {control_url}   admin token: {token}"),
        format!("logs: {}/logs/<process>.log", data_dir.display()),
    ];
    for h in &header {
        println!("{h}");
    }
    let control = ControlApi { http: platform.http.clone(), base: control_url, token };
    match control.catalog_seed_demo(&options.repo.join("config/providers")).await {
        Ok(0) => {}
        Ok(games) => eprintln!("drill: catalog: the demo providers' {games} games, certified in every jurisdiction"),
        Err(e) => eprintln!("drill: could not seed the demo catalog (the lobby stays empty): {e:#}"),
    }
    let mut load = options.traffic.then(|| {
        let targets = Targets {
            router: router.clone(),
            cells: platform.cell_ids().into_iter().map(|id| (id.clone(), platform.url(&Role::Primary(id)))).collect(),
            provider_secret: DEMO_PROVIDER_SECRET.to_owned(),
        };
        Load::start(platform.http.clone(), targets, &platform.regions, rand::random(), TRAFFIC_WORKERS, options.rate)
    });
    // Players paying in and out through both PSPs, beside the load's operator deposits.
    let cashier = options.traffic.then(|| {
        let sandbox = platform.url(&Role::Sandbox);
        crate::psp_chaos::spawn_traffic(platform.http.clone(), router.clone(), sandbox, platform.regions.clone())
    });
    let cashier_line = cashier.as_ref().map(|(_, traffic)| traffic.clone());
    let result = supervise(&mut platform, load.as_ref(), &control, header, cashier_line).await;
    if let Some((task, _)) = cashier {
        task.abort();
    }
    eprintln!("\ndrill: stopping");
    if let Some(load) = load.as_mut() {
        load.stop().await;
    }
    for (who, how) in platform.stop().await {
        eprintln!("drill: {who}: {how}");
    }
    eprintln!("drill: stopped; `drill up` again resumes with the same data ({})", data_dir.display());
    result
}

/// Refreshes the status every second, flips the flag and resends unknown requests with
/// `--traffic`, until Ctrl-C or SIGTERM.
async fn supervise(
    platform: &mut Platform,
    load: Option<&Load>,
    control: &ControlApi,
    header: Vec<String>,
    cashier: Option<std::sync::Arc<crate::psp_chaos::CashierTraffic>>,
) -> anyhow::Result<()> {
    let mut screen = Screen::new(header);
    let terminal = std::io::stdout().is_terminal();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).context("listen for SIGTERM")?;
    let (mut flips, mut flag_on, mut flag_line) = (0u64, false, "not flipped yet".to_owned());
    let mut last_flip = tokio::time::Instant::now();
    let mut last_recovery = tokio::time::Instant::now();
    let mut last_plain = tokio::time::Instant::now();
    let (mut last_exports, mut exports_line) = (None::<tokio::time::Instant>, String::new());
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = term.recv() => return Ok(()),
            _ = tick.tick() => {}
        }
        if let Some(load) = load {
            if last_flip.elapsed() >= FLAG_FLIP_INTERVAL {
                last_flip = tokio::time::Instant::now();
                flag_on = !flag_on;
                match control.flag_set(DRILL_FLAG, flag_on, "drill up --traffic: flipped mid-run").await {
                    Ok(version) => {
                        flips += 1;
                        flag_line = format!(
                            "{DRILL_FLAG} flipped {flips}x, now {} at version {version}",
                            if flag_on { "on" } else { "off" }
                        );
                    }
                    Err(e) => flag_line = format!("{DRILL_FLAG}: flip failed: {e:#}"),
                }
            }
            if last_recovery.elapsed() >= RECOVERY_INTERVAL && load.shared.progress().parked > 0 {
                last_recovery = tokio::time::Instant::now();
                load.recover(tokio::time::Instant::now() + RECOVERY_ATTEMPT).await;
            }
        }
        let sync = match control.sync_state().await {
            Ok(s) => format!("; change log at version {}, cells acked {:?}", s.version, s.acked),
            Err(_) => "; control plane unreachable".to_owned(),
        };
        let progress = load.map(|l| l.shared.progress());
        let cashier_line = cashier.as_ref().map(|c| format!("\n{}", c.line())).unwrap_or_default();
        let flags = format!("{flag_line}{sync}{cashier_line}");
        if last_exports.is_none_or(|t| t.elapsed() >= EXPORTS_INTERVAL) {
            last_exports = Some(tokio::time::Instant::now());
            exports_line = control.exports_line().await;
        }
        let mut text = screen.render(platform, progress.as_ref().map(|p| (p, flags.as_str()))).await;
        text.push_str(&format!("{exports_line}\n"));
        if terminal {
            print!("\x1b[H\x1b[2J{text}");
            let _ = std::io::stdout().flush();
        } else if last_plain.elapsed() >= PLAIN_STATUS_INTERVAL {
            last_plain = tokio::time::Instant::now();
            println!("{text}");
        }
    }
}
