//! Starts, stops, kills and restarts the platform's real processes on loopback: global-control,
//! one cell per region file (plus standbys where asked), and the router, all under one data
//! directory with their embedded stores. Nothing here drives traffic or judges results.

use crate::client::{Http, DRILL_CERT_NAME};
use anyhow::{bail, Context};
use contracts::region::RegionConfig;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

/// Longest a process may take to answer `/readyz` after it starts (debug builds on a loaded
/// 2-core machine open their stores slowly; this bounds a process that will never come up).
pub const READY_WAIT_MAX: Duration = Duration::from_secs(60);
/// How long SIGTERM gets before SIGKILL when stopping: a cell drains in-flight requests and
/// closes its store well within this.
pub const TERMINATE_GRACE: Duration = Duration::from_secs(15);
/// The demo provider's HMAC secret in development (the drill is the provider).
pub const DEMO_PROVIDER_SECRET: &str = "dev-demo-secret";
/// What the sandbox's KYC vendor signs its webhooks with, and cells check them with.
pub const DRILL_KYC_WEBHOOK_SECRET: &str = "dev-kyc-webhook-secret";
/// What the sandbox's card PSP signs its notifications with, and cells check them with.
pub const DRILL_PSP_CARD_SECRET: &str = "dev-psp-card-secret";
/// What the sandbox's bank-push PSP signs its callbacks with.
pub const DRILL_PSP_BANK_SECRET: &str = "dev-psp-bank-secret";
/// Rates high enough that the load generator (many players behind one address per country)
/// is never the one being rate limited: drills test faults, not the limiter.
const DRILL_CLIENT_RPS: &str = "1000000";

/// The three deployables' executables.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub cell: PathBuf,
    pub router: PathBuf,
    pub control: PathBuf,
    /// Plays the outside parties (the self-exclusion registers).
    pub sandbox: PathBuf,
}

/// What cargo sets for the crate it runs or tests (`CARGO_MANIFEST_DIR`, `CARGO_PKG_*`, ...), as
/// opposed to a user's settings of cargo itself, which a nested build keeps.
fn set_by_cargo_for_a_crate(name: &str) -> bool {
    const USER_SETTINGS: [&str; 11] = [
        "CARGO_HOME",
        "CARGO_TARGET_DIR",
        "CARGO_TERM_",
        "CARGO_BUILD_",
        "CARGO_PROFILE_",
        "CARGO_NET_",
        "CARGO_HTTP_",
        "CARGO_REGISTRIES_",
        "CARGO_REGISTRY_",
        "CARGO_INCREMENTAL",
        "CARGO_LOG",
    ];
    name == "CARGO" || (name.starts_with("CARGO_") && !USER_SETTINGS.iter().any(|s| name.starts_with(s)))
}

/// `cargo` in `repo`, with the environment of a shell rather than of the crate that runs it.
///
/// `drill` usually runs under `cargo run`, which sets `CARGO_MANIFEST_DIR`, `CARGO_PKG_NAME` and
/// the like for it. Build scripts (ring's among them) declare that they depend on those
/// variables, so a nested build that inherited them would see them changed since the last plain
/// `cargo build`, and rebuild ring and everything above it; then the next `cargo run` would
/// rebuild it all back. Without them, a nested build finds everything fresh.
pub fn cargo(repo: &Path) -> Command {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.current_dir(repo);
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(set_by_cargo_for_a_crate) {
            command.env_remove(&name);
        }
    }
    command
}

impl Binaries {
    /// The binaries in `dir` (a cargo target profile directory such as `target/release`).
    pub fn in_dir(dir: &Path) -> anyhow::Result<Binaries> {
        let bins = Binaries {
            cell: dir.join("cell"),
            router: dir.join("router"),
            control: dir.join("global-control"),
            sandbox: dir.join("sandbox"),
        };
        for path in [&bins.cell, &bins.router, &bins.control, &bins.sandbox] {
            if !path.exists() {
                bail!(
                    "{} is missing: build it with `cargo build{} -p cell -p router -p global-control -p sandbox`",
                    path.display(),
                    if dir.ends_with("release") { " --release" } else { "" }
                );
            }
        }
        Ok(bins)
    }

    /// Builds the three binaries with cargo from the repository at `repo`, in the profile of
    /// `dir` (`release` or `debug`), so a drill never runs stale code by accident.
    pub fn build(repo: &Path, dir: &Path) -> anyhow::Result<()> {
        let mut command = cargo(repo);
        command.args(["build", "-p", "cell", "-p", "router", "-p", "global-control", "-p", "sandbox"]);
        if dir.ends_with("release") {
            command.arg("--release");
        }
        eprintln!("drill: building cell, router, global-control and sandbox ({})", dir.display());
        let status = command.status().context("run cargo build")?;
        if !status.success() {
            bail!("cargo build failed ({status})");
        }
        Ok(())
    }

    /// Whether this `cell` knows `--control` (the cell side of the control-plane sync). Drills
    /// that need it check this rather than fail on an unknown flag.
    pub fn cell_supports_control(&self) -> bool {
        Command::new(&self.cell)
            .args(["serve", "--help"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).contains("--control"))
            .unwrap_or(false)
    }
}

/// The repository holding `config/regions`: the current directory or one of its parents.
pub fn repo_root_from(start: &Path) -> Option<PathBuf> {
    start.ancestors().find(|p| p.join("config/regions").is_dir() && p.join("Cargo.toml").is_file()).map(Path::to_owned)
}

/// What each process listens on.
#[derive(Debug, Clone)]
pub struct Ports {
    pub control_http: SocketAddr,
    pub control_quic: SocketAddr,
    pub router: SocketAddr,
    pub cells: BTreeMap<String, SocketAddr>,
    pub standbys: BTreeMap<String, SocketAddr>,
    /// Log shipping (QUIC), for each cell with a standby: where its primary and its standby
    /// listen (a standby listens once promoted).
    pub shipping: BTreeMap<Role, SocketAddr>,
    /// The sandbox (the outside parties).
    pub sandbox: SocketAddr,
}

impl Ports {
    /// The documented scheme of `drill up`: cells on their region files' endpoints (7101..,
    /// standbys 72xx), global-control on 7000 (HTTP) and 7001 (QUIC), the router on 8080, the
    /// sandbox on 7300.
    pub fn documented(regions: &[RegionConfig], standbys: &[String]) -> anyhow::Result<Ports> {
        let mut cells = BTreeMap::new();
        let mut standby_ports = BTreeMap::new();
        for r in regions {
            cells.insert(r.cell_id.clone(), endpoint_address(&r.primary_endpoint)?);
            if standbys.contains(&r.cell_id) {
                let url = r.standby_endpoint.as_deref().with_context(|| format!("{} has no standby", r.cell_id))?;
                standby_ports.insert(r.cell_id.clone(), endpoint_address(url)?);
            }
        }
        // Shipping on the HTTP port + 200 (UDP): the primary 7301.., the standby 7401...
        let mut shipping = BTreeMap::new();
        for (id, addr) in &standby_ports {
            let primary = cells[id];
            shipping.insert(Role::Primary(id.clone()), SocketAddr::new(primary.ip(), primary.port() + 200));
            shipping.insert(Role::Standby(id.clone()), SocketAddr::new(addr.ip(), addr.port() + 200));
        }
        Ok(Ports {
            control_http: ([127, 0, 0, 1], 7000).into(),
            control_quic: ([127, 0, 0, 1], 7001).into(),
            router: ([127, 0, 0, 1], 8080).into(),
            cells,
            standbys: standby_ports,
            shipping,
            sandbox: ([127, 0, 0, 1], 7300).into(),
        })
    }

    /// Free ports, so drills run beside `drill up` and beside each other (see [`crate::ports`]).
    pub fn free(regions: &[RegionConfig], standbys: &[String]) -> anyhow::Result<Ports> {
        use crate::ports::{free_tcp, free_udp};
        let mut cells = BTreeMap::new();
        let mut standby_ports = BTreeMap::new();
        for r in regions {
            cells.insert(r.cell_id.clone(), free_tcp()?);
            if standbys.contains(&r.cell_id) {
                standby_ports.insert(r.cell_id.clone(), free_tcp()?);
            }
        }
        let mut shipping = BTreeMap::new();
        for id in standby_ports.keys() {
            shipping.insert(Role::Primary(id.clone()), free_udp()?);
            shipping.insert(Role::Standby(id.clone()), free_udp()?);
        }
        Ok(Ports {
            control_http: free_tcp()?,
            control_quic: free_udp()?,
            router: free_tcp()?,
            cells,
            standbys: standby_ports,
            shipping,
            sandbox: free_tcp()?,
        })
    }
}

fn endpoint_address(url: &str) -> anyhow::Result<SocketAddr> {
    let host_port = url.split("://").nth(1).unwrap_or(url).trim_end_matches('/');
    host_port.parse().with_context(|| format!("endpoint `{url}` is not http(s)://IP:PORT"))
}

/// Everything needed to start a platform.
#[derive(Debug, Clone)]
pub struct PlatformSpec {
    /// The repository (or any directory) holding `config/regions` and `config/providers`.
    pub config_root: PathBuf,
    /// Stores, logs, certificates and the admin token live under here.
    pub data_dir: PathBuf,
    pub bins: Binaries,
    pub geoip: PathBuf,
    pub ports: Ports,
    /// Where each cell reaches the control plane's QUIC port, when not directly (a fault proxy).
    pub control_via: BTreeMap<String, SocketAddr>,
    /// Where each cell's standby reaches its primary's shipping port, when not directly.
    pub shipping_via: BTreeMap<String, SocketAddr>,
    /// The first admin token of global-control.
    pub admin_token: String,
}

/// A child process the platform supervises.
pub struct Process {
    pub name: String,
    program: PathBuf,
    args: Vec<OsString>,
    env: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
    /// How the process last ended, if it is not running.
    pub exited: Option<String>,
    pub starts: u32,
    /// A standby following its primary: up when `/healthz` answers (it is never ready).
    pub follower: bool,
}

impl Process {
    fn new(name: &str, program: &Path, args: Vec<OsString>, env: Vec<(String, String)>, logs: &Path) -> Process {
        Process {
            name: name.to_owned(),
            program: program.to_owned(),
            args,
            env,
            log: logs.join(format!("{name}.log")),
            child: None,
            exited: None,
            starts: 0,
            follower: false,
        }
    }

    /// Runs with `args` from the next start on (a standby promoted, a primary re-seeded).
    pub fn set_args(&mut self, args: Vec<OsString>) {
        self.args = args;
    }

    pub fn args(&self) -> &[OsString] {
        &self.args
    }

    /// Starts the process (again) with the same arguments and data. Its stdout and stderr append
    /// to `<data>/logs/<name>.log`, so every run and restart stays readable after a drill.
    pub fn spawn(&mut self) -> anyhow::Result<()> {
        anyhow::ensure!(self.child.is_none(), "{} is already running", self.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("open {}", self.log.display()))?;
        let mut command = Command::new(&self.program);
        command.args(&self.args).stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
        for (k, v) in &self.env {
            command.env(k, v);
        }
        if std::env::var_os("RUST_LOG").is_none() {
            command.env("RUST_LOG", "info,lsm_tree=warn,fjall=warn");
        }
        let child = command.spawn().with_context(|| format!("start {} ({})", self.name, self.program.display()))?;
        self.child = Some(child);
        self.exited = None;
        self.starts += 1;
        Ok(())
    }

    /// `kill -9`: the process gets no chance to drain, flush or say goodbye.
    pub fn kill9(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().with_context(|| format!("kill -9 {}", self.name))?;
            let status = child.wait()?;
            self.exited = Some(describe(status));
        }
        Ok(())
    }

    /// SIGTERM, then wait up to [`TERMINATE_GRACE`] for a clean exit; SIGKILL after that.
    pub async fn terminate(&mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else { return Ok(()) };
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let deadline = tokio::time::Instant::now() + TERMINATE_GRACE;
        loop {
            if let Some(status) = child.try_wait()? {
                self.exited = Some(describe(status));
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                let _ = child.kill();
                let status = child.wait()?;
                self.exited = Some(format!("{} after SIGKILL (no exit within {TERMINATE_GRACE:?})", describe(status)));
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether the process is running now (reaps it if it died on its own).
    pub fn is_up(&mut self) -> bool {
        let Some(child) = self.child.as_mut() else { return false };
        match child.try_wait() {
            Ok(None) => true,
            Ok(Some(status)) => {
                self.exited = Some(describe(status));
                self.child = None;
                false
            }
            Err(_) => false,
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last lines of its log, for an error message.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with {code}"),
        (None, Some(9)) => "killed (SIGKILL)".to_owned(),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        _ => "ended".to_owned(),
    }
}

/// Which process: the control plane, a cell's primary or standby, or the router.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Control,
    Primary(String),
    Standby(String),
    Router,
    /// The outside parties.
    Sandbox,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Role::Control => f.write_str("global-control"),
            Role::Primary(id) => f.write_str(id),
            Role::Standby(id) => write!(f, "{id}-standby"),
            Role::Router => f.write_str("router"),
            Role::Sandbox => f.write_str("sandbox"),
        }
    }
}

/// A running platform.
pub struct Platform {
    pub spec: PlatformSpec,
    pub regions: Vec<RegionConfig>,
    pub processes: BTreeMap<Role, Process>,
    pub http: Http,
    pub tls_dir: PathBuf,
    /// Whether cells were started with `--control` (the cell side of control-plane sync exists).
    pub cells_follow_control: bool,
    /// Cells whose writer is not their primary (a standby promoted).
    pub writers: BTreeMap<String, Role>,
}

impl Platform {
    /// Prepares certificates and starts every process, waiting until each answers `/readyz`:
    /// global-control first (cells connect to it), then the cells, then the router (it
    /// health-checks the cells).
    pub async fn start(spec: PlatformSpec) -> anyhow::Result<Platform> {
        let regions = RegionConfig::load_dir(&spec.config_root.join("config/regions")).context("load region files")?;
        let cell_ids: Vec<String> = regions.iter().map(|r| r.cell_id.clone()).collect();
        for dir in ["logs", "control"] {
            std::fs::create_dir_all(spec.data_dir.join(dir))
                .with_context(|| format!("create {}", spec.data_dir.join(dir).display()))?;
        }
        let tls_dir = spec.data_dir.join("tls");
        dev_certificates(&spec.bins, &tls_dir, &cell_ids)?;
        let http = Http::new(Some(&tls_dir), &cell_ids)?;
        let cells_follow_control = spec.bins.cell_supports_control();
        let logs = spec.data_dir.join("logs");
        let regions_dir = spec.config_root.join("config/regions");
        let p = &spec.ports;

        let mut processes = BTreeMap::new();
        let mut control_args: Vec<OsString> = vec![
            "serve".into(),
            "--listen".into(),
            p.control_http.to_string().into(),
            "--quic".into(),
            p.control_quic.to_string().into(),
            "--data".into(),
            spec.data_dir.join("control").into(),
            "--tls-dir".into(),
            tls_dir.clone().into(),
            "--regions".into(),
            regions_dir.clone().into(),
            // Drills see exports scheduled within seconds, not minutes.
            "--export-every-seconds".into(),
            "15".into(),
        ];
        // Where global-control reaches each cell (for exports): the drill's ports, not the
        // region files' endpoints.
        for r in &regions {
            control_args.extend(["--cell".into(), format!("{}=https://{}", r.cell_id, p.cells[&r.cell_id]).into()]);
        }
        let control_env = vec![("GLOBAL_CONTROL_ADMIN_TOKEN".to_owned(), spec.admin_token.clone())];
        processes.insert(
            Role::Control,
            Process::new("global-control", &spec.bins.control, control_args, control_env, &logs),
        );

        let sandbox_args: Vec<OsString> = vec![
            "serve".into(),
            "--listen".into(),
            p.sandbox.to_string().into(),
            "--data".into(),
            spec.data_dir.join("sandbox").into(),
            "--tls-dir".into(),
            tls_dir.clone().into(),
        ];
        let kyc_env = ("KYC_WEBHOOK_SECRET".to_owned(), DRILL_KYC_WEBHOOK_SECRET.to_owned());
        let psp_env = ("PSP_CARD_SECRET".to_owned(), DRILL_PSP_CARD_SECRET.to_owned());
        let bank_env = ("PSP_BANK_SECRET".to_owned(), DRILL_PSP_BANK_SECRET.to_owned());
        let sandbox_env = vec![kyc_env.clone(), psp_env.clone(), bank_env.clone()];
        processes.insert(Role::Sandbox, Process::new("sandbox", &spec.bins.sandbox, sandbox_args, sandbox_env, &logs));

        let cell_env = vec![
            ("PROVIDER_DEMO_SECRET".to_owned(), DEMO_PROVIDER_SECRET.to_owned()),
            ("PROVIDER_PULSAR_SECRET".to_owned(), "dev-pulsar-secret".to_owned()),
            kyc_env,
            psp_env,
            bank_env,
        ];
        let mut router_args: Vec<OsString> = vec![
            "serve".into(),
            "--regions".into(),
            regions_dir.clone().into(),
            "--listen".into(),
            p.router.to_string().into(),
            "--geoip".into(),
            spec.geoip.clone().into(),
            "--trusted-proxy".into(),
            "127.0.0.1/32".into(),
            // The platform names every standby it runs (`--standby`): the region files' others
            // are not running here.
            "--no-region-standbys".into(),
            "--tls-dir".into(),
            tls_dir.clone().into(),
            "--client-rps".into(),
            DRILL_CLIENT_RPS.into(),
            "--player-rps".into(),
            DRILL_CLIENT_RPS.into(),
        ];
        for r in &regions {
            let id = &r.cell_id;
            let region_file = regions_dir.join(format!("{id}.toml"));
            let control = spec.control_via.get(id).copied().unwrap_or(p.control_quic);
            let mut roles = vec![(Role::Primary(id.clone()), p.cells[id])];
            if let Some(addr) = p.standbys.get(id) {
                roles.push((Role::Standby(id.clone()), *addr));
            }
            for (role, addr) in roles {
                let mut args: Vec<OsString> = vec![
                    "serve".into(),
                    "--region".into(),
                    region_file.clone().into(),
                    "--listen".into(),
                    addr.to_string().into(),
                    "--data".into(),
                    spec.data_dir.join(role.to_string()).into(),
                    "--tls-dir".into(),
                    tls_dir.clone().into(),
                    "--providers".into(),
                    spec.config_root.join("config/providers").into(),
                    "--registers-url".into(),
                    format!("http://{}", p.sandbox).into(),
                    "--kyc-url".into(),
                    format!("http://{}", p.sandbox).into(),
                    "--psps".into(),
                    spec.config_root.join("config/psps").into(),
                    "--psp-url".into(),
                    format!("card=http://{}", p.sandbox).into(),
                    "--psp-url".into(),
                    format!("bank=http://{}", p.sandbox).into(),
                    "--tamper-token-url".into(),
                    format!("http://{}", p.sandbox).into(),
                ];
                // A standby follows no control plane while it follows its primary; it has the
                // address for when it is promoted (the control plane confirms a writer's lease).
                if cells_follow_control {
                    args.extend(["--control".into(), control.to_string().into()]);
                }
                let flag = if matches!(role, Role::Primary(_)) { "--cell" } else { "--standby" };
                router_args.extend([flag.into(), format!("{id}=https://{addr}").into()]);
                let mut shipping = p.shipping.clone();
                if let (Role::Standby(_), Some(via)) = (&role, spec.shipping_via.get(id)) {
                    shipping.insert(Role::Primary(id.clone()), *via);
                }
                args.extend(replication_args(&shipping, &role, false, r));
                let name = role.to_string();
                let mut process = Process::new(&name, &spec.bins.cell, args, cell_env.clone(), &logs);
                process.follower = matches!(role, Role::Standby(_)) && p.shipping.contains_key(&role);
                processes.insert(role, process);
            }
        }
        processes.insert(Role::Router, Process::new("router", &spec.bins.router, router_args, vec![], &logs));

        let mut platform =
            Platform { spec, regions, processes, http, tls_dir, cells_follow_control, writers: BTreeMap::new() };
        // Global-control first: its operator-token key goes into every cell's data directory, so
        // cells take the drill's operator tokens before their first sync (standbys follow no
        // control plane yet, so for them it is the only key).
        for role in [Role::Sandbox, Role::Control] {
            platform.process(&role)?.spawn()?;
        }
        for role in [Role::Sandbox, Role::Control] {
            platform.wait_ready(&role).await?;
        }
        let key = platform.spec.data_dir.join("control").join(contracts::operators::KEY_FILE);
        let cells = platform.cell_roles();
        for role in &cells {
            let dir = platform.spec.data_dir.join(role.to_string());
            std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
            std::fs::copy(&key, dir.join(contracts::operators::KEY_FILE)).with_context(|| {
                format!("copy global-control's operator key {} to {}", key.display(), dir.display())
            })?;
        }
        platform.http.operator_tokens(&platform.url(&Role::Control), &platform.spec.admin_token).await;
        for role in &cells {
            platform.process(role)?.spawn()?;
        }
        for role in &cells {
            platform.wait_ready(role).await?;
        }
        // The router last, once every cell is ready: its first health checks then find them up,
        // and no player gets a 503 while the platform is still starting.
        platform.process(&Role::Router)?.spawn()?;
        platform.wait_ready(&Role::Router).await?;
        Ok(platform)
    }

    pub fn process(&mut self, role: &Role) -> anyhow::Result<&mut Process> {
        self.processes.get_mut(role).with_context(|| format!("no process {role}"))
    }

    pub fn cell_ids(&self) -> Vec<String> {
        self.regions.iter().map(|r| r.cell_id.clone()).collect()
    }

    pub fn region(&self, cell: &str) -> Option<&RegionConfig> {
        self.regions.iter().find(|r| r.cell_id == cell)
    }

    /// The base URL a role answers on.
    pub fn url(&self, role: &Role) -> String {
        let p = &self.spec.ports;
        match role {
            Role::Control => format!("http://{}", p.control_http),
            Role::Router => format!("http://{}", p.router),
            Role::Sandbox => format!("http://{}", p.sandbox),
            Role::Primary(id) => format!("https://{}", p.cells[id]),
            Role::Standby(id) => format!("https://{}", p.standbys[id]),
        }
    }

    /// The cell id whose certificate an `https` role must present (none for plain HTTP).
    pub fn cert_name(role: &Role) -> Option<&str> {
        match role {
            Role::Primary(id) | Role::Standby(id) => Some(id),
            _ => None,
        }
    }

    /// The process that writes for `cell`: its primary, or its standby once promoted.
    pub fn writer(&self, cell: &str) -> Role {
        self.writers.get(cell).cloned().unwrap_or_else(|| Role::Primary(cell.to_owned()))
    }

    /// Every cell process, primaries and standbys.
    pub fn cell_roles(&self) -> Vec<Role> {
        self.processes.keys().filter(|r| matches!(r, Role::Primary(_) | Role::Standby(_))).cloned().collect()
    }

    /// GET `path` on a role.
    pub async fn get(&self, role: &Role, path: &str) -> anyhow::Result<crate::client::Reply> {
        self.http.get(Self::cert_name(role), &format!("{}{path}", self.url(role))).await
    }

    /// Waits until the role answers `GET /readyz` with 200 (a following standby: `/healthz`), or
    /// fails with its log's tail.
    pub async fn wait_ready(&mut self, role: &Role) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + READY_WAIT_MAX;
        let follower = self.process(role)?.follower;
        loop {
            if follower {
                // A standby is never ready; it is up once it follows its primary.
                if let Ok(reply) = self.get(role, "/metrics").await {
                    if reply.status == 200 && reply.text().lines().any(|l| l == "cell_replication_following 1") {
                        return Ok(());
                    }
                }
            } else if let Ok(reply) = self.get(role, "/readyz").await {
                if reply.status == 200 {
                    return Ok(());
                }
            }
            let process = self.process(role)?;
            if !process.is_up() {
                bail!(
                    "{role} stopped while starting ({}); its log {} ends with:\n{}",
                    process.exited.clone().unwrap_or_default(),
                    process.log_path().display(),
                    process.log_tail(20)
                );
            }
            if tokio::time::Instant::now() > deadline {
                bail!("{role} not ready within {READY_WAIT_MAX:?}; its log ends with:\n{}", process.log_tail(20));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn kill9(&mut self, role: &Role) -> anyhow::Result<()> {
        self.process(role)?.kill9()
    }

    /// Starts a stopped role again on the same port and data, and waits until it is ready.
    pub async fn restart(&mut self, role: &Role) -> anyhow::Result<()> {
        self.process(role)?.spawn()?;
        self.wait_ready(role).await
    }

    /// Stops everything cleanly: the router first (no new player traffic), then the cells, then
    /// the control plane. Returns how each process ended.
    pub async fn stop(&mut self) -> Vec<(String, String)> {
        let mut order: Vec<Role> = vec![Role::Router];
        order.extend(self.cell_roles());
        order.push(Role::Control);
        order.push(Role::Sandbox);
        let mut ended = Vec::new();
        for role in order {
            if let Some(process) = self.processes.get_mut(&role) {
                if let Err(e) = process.terminate().await {
                    ended.push((role.to_string(), format!("stop failed: {e:#}")));
                    continue;
                }
                // Already gone (Ctrl-C reaches the whole process group) or stopped now.
                if let Some(how) = process.exited.clone() {
                    ended.push((role.to_string(), how));
                }
            }
        }
        ended
    }
}

/// The development CA and certificates (`global-control certs`, kept when present), plus the
/// drill's own client certificate from the same CA.
pub fn dev_certificates(bins: &Binaries, tls_dir: &Path, cell_ids: &[String]) -> anyhow::Result<()> {
    let output = Command::new(&bins.control)
        .arg("certs")
        .arg("--out")
        .arg(tls_dir)
        .arg("--cells")
        .arg(cell_ids.join(","))
        .output()
        .context("run global-control certs")?;
    if !output.status.success() {
        bail!("global-control certs failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    // The sandbox calls cells back (the KYC vendor's webhooks) as an outside party of the CA.
    replication::tls::generate(tls_dir, &[DRILL_CERT_NAME.to_owned(), "sandbox".to_owned()])
        .context("create the drill's and the sandbox's certificates")?;
    Ok(())
}

/// The flags of a cell's part in log shipping: a primary ships from its shipping port and asks
/// its standby's whether it was deposed; a standby follows its primary's (a role `promoted` swaps
/// the two: the standby ships and asks, the old primary follows).
pub fn replication_args(
    shipping: &BTreeMap<Role, SocketAddr>,
    role: &Role,
    swapped: bool,
    region: &RegionConfig,
) -> Vec<OsString> {
    let (Role::Primary(id) | Role::Standby(id)) = role else { return Vec::new() };
    let (primary, standby) = (Role::Primary(id.clone()), Role::Standby(id.clone()));
    let (Some(p), Some(s)) = (shipping.get(&primary), shipping.get(&standby)) else { return Vec::new() };
    let (writer, follower) = if swapped { ((s, p), (p, s)) } else { ((p, s), (s, p)) };
    let writes = matches!(role, Role::Primary(_)) != swapped;
    if writes {
        vec!["--replication-listen".into(), writer.0.to_string().into(), "--peer".into(), writer.1.to_string().into()]
    } else {
        // A site the region allows standbys at (the second, if any, once the roles swapped).
        let sites = &region.replication.standby_sites;
        let site = sites.get(usize::from(swapped)).or(sites.first()).cloned().unwrap_or_else(|| "unlisted".into());
        vec!["--standby-of".into(), follower.1.to_string().into(), "--site".into(), site.into()]
    }
}

/// A cell's arguments without its replication flags.
pub fn without_replication_args(args: &[OsString]) -> Vec<OsString> {
    let mut out = Vec::new();
    let mut skip = false;
    for a in args {
        if skip {
            skip = false;
            continue;
        }
        if ["--replication-listen", "--peer", "--standby-of", "--site"].iter().any(|f| a == *f) {
            skip = true;
            continue;
        }
        out.push(a.clone());
    }
    out
}
