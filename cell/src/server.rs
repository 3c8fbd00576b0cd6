//! Wiring: opens the store, starts the domains, serves the API until shutdown, then drains.

use crate::api::{self, AppState, Domains};
use crate::audit::Checkpointer;
use crate::domains::catalog::{Catalog, CatalogSink};
use crate::domains::compliance::{Compliance, StakeCapGate};
use crate::domains::gaming::providers::Provider;
use crate::domains::gaming::{GameFacts, Gaming};
use crate::ledger::{Ledger, WriterConfig};
use crate::metrics::Metrics;
use crate::sessions::SessionSigner;
use crate::store::embedded::{Durability, EmbeddedStore};
use crate::store::Store;
use anyhow::Context;
use contracts::region::RegionConfig;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Gaming reads what the synced catalog says of a game through its own trait: the two domains
/// meet here, where the cell is wired, not by importing each other.
impl GameFacts for Catalog {
    fn game_type(&self, provider: &str, game: &str) -> Option<contracts::catalog::GameType> {
        Catalog::game_type(self, provider, game)
    }

    fn max_multiplier(&self, provider: &str, game: &str) -> Option<contracts::catalog::Multiplier> {
        Catalog::max_multiplier(self, provider, game)
    }
}

/// Which store backend holds the cell's data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum StoreBackend {
    /// fjall under the data directory (the default).
    #[default]
    Embedded,
    /// A FoundationDB cluster, through this cluster file (FoundationDB's default when `None`).
    /// Only in a build with the `foundationdb` feature.
    FoundationDb { cluster_file: Option<PathBuf> },
}

impl StoreBackend {
    /// Whether this build can open it.
    pub fn available(&self) -> bool {
        matches!(self, StoreBackend::Embedded) || cfg!(feature = "foundationdb")
    }
}

impl std::fmt::Display for StoreBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreBackend::Embedded => f.write_str("embedded"),
            StoreBackend::FoundationDb { cluster_file: None } => f.write_str("foundationdb"),
            StoreBackend::FoundationDb { cluster_file: Some(file) } => write!(f, "foundationdb:{}", file.display()),
        }
    }
}

impl std::str::FromStr for StoreBackend {
    type Err = String;
    /// `embedded`, `foundationdb` or `foundationdb:CLUSTER_FILE`.
    fn from_str(text: &str) -> Result<StoreBackend, String> {
        match text.split_once(':') {
            None if text == "embedded" => Ok(StoreBackend::Embedded),
            None if text == "foundationdb" => Ok(StoreBackend::FoundationDb { cluster_file: None }),
            Some(("foundationdb", file)) if !file.is_empty() => {
                Ok(StoreBackend::FoundationDb { cluster_file: Some(file.into()) })
            }
            _ => Err(format!("`{text}`: embedded, foundationdb or foundationdb:CLUSTER_FILE")),
        }
    }
}

/// Everything `run` needs.
pub struct CellConfig {
    pub region: RegionConfig,
    /// Keys (sessions, audit) and, with the embedded backend, the store.
    pub data_dir: PathBuf,
    pub store: StoreBackend,
    pub durability: Durability,
    pub writer: WriterConfig,
    /// Serve over mutual TLS with this configuration; plain HTTP when `None` (local use).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The game providers this cell serves (`gaming::providers::load_dir`).
    pub providers: Vec<Provider>,
    /// Follow this control plane's flags and catalog; without it the cell serves the copy it has.
    pub control: Option<ControlConfig>,
    pub intervals: Intervals,
    /// Where every domain reads the time: the wall clock in service, a manual one in tests.
    pub clock: Arc<dyn crate::clock::Clock>,
    /// Faults to inject into the store, from a seed (tests); `None` in service.
    pub store_faults: Option<(crate::store::fault::FaultConfig, u64)>,
    /// Where the self-exclusion registers answer (`http://HOST:PORT`); `None`: not asked.
    pub registers: Option<String>,
    /// The KYC vendor (`cell serve --kyc-url`); `None`: identities are not checked.
    pub kyc: Option<crate::domains::compliance::kyc::KycVendor>,
    /// The PSPs deposits go through (`cell serve --psps DIR --psp-url ID=URL`).
    pub psps: Vec<crate::domains::cashier::psps::Psp>,
    /// This cell's base URL as outside parties reach it (PSPs' notifications).
    pub callback_base: String,
    /// The regulator's TamperToken service (Denmark's exports), `http://HOST:PORT`.
    pub tamper_token_url: Option<String>,
    /// Standbys and promotion (embedded store only); `None`: this cell replicates nothing.
    pub replication: Option<crate::replica::ReplicationConfig>,
}

/// Where the control plane is and how to reach it.
#[derive(Clone)]
pub struct ControlConfig {
    /// Its QUIC sync address.
    pub quic: std::net::SocketAddr,
    /// Mutual TLS as this cell, accepting only a server certificate naming `control`.
    pub client: quinn::ClientConfig,
    /// Answers are `STALE` once the cell has not heard from the control plane for this long.
    pub stale_after: Duration,
}

/// How often the cell's background work runs.
#[derive(Debug, Clone, Copy)]
pub struct Intervals {
    /// The round sweeper: voids rounds open past their provider's timeout.
    pub round_sweep: Duration,
    /// Signed audit checkpoints (only when the chain has grown).
    pub audit_checkpoint: Duration,
    /// How long idempotency records are kept (at least `idempotency::WINDOW_MIN`).
    pub idempotency_window: Duration,
    /// How often records past that window are purged.
    pub idempotency_purge: Duration,
    /// How often the sanctions list is fetched to see whether it changed (every player is
    /// screened again when it did).
    pub sanctions_rescreen: Duration,
    /// How often the cashier captures what is authorised and retries parked notifications.
    pub cashier_sweep: Duration,
    /// How long a deposit waits for its PSP's answer before the sweeper asks the PSP what became
    /// of it (well past the PSP call's own timeout, so a call in flight is never overtaken).
    pub psp_answer_wait: Duration,
    /// How long a payment waits for its PSP's last notification (a capture, a payout's outcome)
    /// before the sweeper asks the PSP where it stands: PSPs retry for hours, then give up.
    pub psp_inquiry_wait: Duration,
}

impl Default for Intervals {
    fn default() -> Self {
        Intervals {
            round_sweep: Duration::from_secs(1),
            audit_checkpoint: Duration::from_secs(60),
            idempotency_window: crate::idempotency::WINDOW_MIN,
            idempotency_purge: Duration::from_secs(3600),
            sanctions_rescreen: Duration::from_secs(60),
            cashier_sweep: Duration::from_secs(2),
            psp_answer_wait: Duration::from_secs(60),
            psp_inquiry_wait: Duration::from_secs(10 * 60),
        }
    }
}

/// A cell's domains over an open store, and the ledger writer thread to join on close.
pub struct OpenCell {
    pub domains: Domains,
    writer: std::thread::JoinHandle<()>,
    /// The embedded store, when the cell replicates (its log, epoch and fence).
    pub replicated: Option<Arc<EmbeddedStore>>,
}

impl OpenCell {
    /// Opens the embedded store under `data_dir` and starts the domains. Blocking.
    pub fn open(config: &CellConfig, metrics: Arc<Metrics>) -> anyhow::Result<OpenCell> {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("create data dir {}", config.data_dir.display()))?;
        let mut replicated = None;
        let mut store: Arc<dyn Store> = match &config.store {
            StoreBackend::Embedded if config.replication.is_some() => {
                let embedded = open_replicated(config, &metrics)?;
                replicated = Some(embedded.clone());
                embedded
            }
            StoreBackend::Embedded => {
                let embedded = EmbeddedStore::open(&config.data_dir.join("store"), config.durability)
                    .with_context(|| format!("open store under {}", config.data_dir.display()))?;
                if let Some(by) = embedded.fenced_by() {
                    anyhow::bail!(
                        "this store was deposed (a peer holds epoch {by}): re-seed it as a standby \
                         (--standby-of), or ops choose its data (cell promote --over-fence)"
                    );
                }
                metrics.watch_deleted_files(embedded.deleted_files());
                Arc::new(embedded)
            }
            #[cfg(feature = "foundationdb")]
            StoreBackend::FoundationDb { cluster_file } => {
                let file = cluster_file.as_deref().map(|f| f.to_string_lossy().into_owned());
                Arc::new(crate::store::fdb::FdbStore::open(file.as_deref()).context("connect to FoundationDB")?)
            }
            #[cfg(not(feature = "foundationdb"))]
            StoreBackend::FoundationDb { .. } => {
                anyhow::bail!(
                    "this cell was built without the `foundationdb` feature (cargo build --features foundationdb)"
                )
            }
        };
        if let Some((faults, seed)) = config.store_faults {
            tracing::warn!(seed, ?faults, "the store injects faults");
            store = Arc::new(crate::store::fault::FaultyStore::new(store, faults, seed));
        }
        let region = Arc::new(config.region.clone());
        // Every entry the ledger posts passes compliance's rules first.
        let gates: Vec<Box<dyn crate::ledger::Gate>> = vec![
            Box::new(StakeCapGate::new(region.clone())),
            Box::new(crate::domains::compliance::limits::RgGate::new(region.clone())),
        ];
        let (ledger, writer) =
            Ledger::start(store.clone(), region.clone(), metrics, config.writer, config.clock.clone(), gates)
                .context("start the ledger writer")?;
        let registers = match &config.registers {
            Some(url) => Some(crate::domains::compliance::registers::Registers::new(url).map_err(anyhow::Error::msg)?),
            None => {
                if region.self_exclusion_register != contracts::region::SelfExclusionRegister::Operator {
                    tracing::warn!(
                        register = %region.self_exclusion_register,
                        "no --registers-url: players are not checked against the self-exclusion register (development only)"
                    );
                }
                None
            }
        };
        if config.kyc.is_none() {
            tracing::warn!("no --kyc-url: players' identities are not verified (development only)");
        }
        let compliance =
            Compliance::new(store.clone(), region.clone(), config.clock.clone(), registers, config.kyc.clone());
        let sessions = Arc::new(
            SessionSigner::load_or_create(&config.data_dir.join("session-ed25519.key"), &region.cell_id)
                .context("load the session signing key")?,
        );
        let audit_key = crate::signing_key::load_or_create(&config.data_dir.join("audit-ed25519.key"))
            .context("load the audit signing key")?;
        let audit = Arc::new(Checkpointer::new(&region.cell_id, audit_key, config.clock.clone()));
        let catalog = Arc::new(Catalog::open(store.clone(), region.clone()).context("load the catalog copy")?);
        let gaming = Arc::new(
            Gaming::new(config.providers.clone(), ledger.clone(), store.clone(), catalog.clone(), config.clock.clone())
                .context("load provider states")?,
        );
        let identity = Arc::new(crate::domains::identity::Identity::new(
            store.clone(),
            sessions.clone(),
            config.clock.clone(),
            &region.cell_id,
        ));
        let operators = Arc::new(
            crate::operators::OperatorTokens::open(&config.data_dir, catalog.clone())
                .context("load the bootstrap operator key")?,
        );
        let cashier = Arc::new(crate::domains::cashier::Cashier::new(
            config.psps.clone(),
            config.callback_base.clone(),
            store.clone(),
        ));
        Ok(OpenCell {
            domains: Domains {
                cashier,
                operators,
                store,
                ledger,
                compliance,
                gaming,
                catalog,
                audit,
                identity,
                sessions,
                region,
                clock: config.clock.clone(),
                data_dir: config.data_dir.clone(),
                tamper_token_url: config.tamper_token_url.clone(),
            },
            writer,
            replicated,
        })
    }

    /// Lets the ledger writer finish what it was given, then waits for it. Blocking.
    pub fn close(self) {
        self.domains.ledger.shutdown();
        let OpenCell { domains, writer, .. } = self;
        drop(domains);
        if writer.join().is_err() {
            tracing::error!("ledger writer panicked");
        }
    }
}

/// Serves the cell on `listener` until `shutdown` resolves, then stops taking connections, lets
/// in-flight requests finish, and closes the store. `/healthz` answers at once; `/readyz` and the
/// domain routes once the store is open.
pub async fn run(
    config: CellConfig,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::default());
    let state = Arc::new(AppState {
        cell: config.region.cell_id.clone(),
        cell_header: axum::http::HeaderValue::from_str(&config.region.cell_id).ok(),
        metrics: metrics.clone(),
        domains: OnceLock::new(),
        replica: OnceLock::new(),
    });
    let address = listener.local_addr().context("read listening address")?;
    let app = api::router(state.clone());
    // The cell stops when asked to, or by itself once its ledger writer has failed.
    let (stop, mut stopping) = tokio::sync::watch::channel(false);
    let stop_requested = async move {
        tokio::select! {
            () = shutdown => {}
            _ = stopping.wait_for(|stop| *stop) => {}
        }
    };
    let server = tokio::spawn(crate::http::serve(listener, config.tls.clone(), app, stop_requested));
    tracing::info!(cell = %config.region.cell_id, %address, data = %config.data_dir.display(), "listening; opening store");
    let (cell, intervals, control) = (config.region.cell_id.clone(), config.intervals, config.control.clone());
    let (replication, region, data_dir) = (config.replication.clone(), config.region.clone(), config.data_dir.clone());
    if let Some(rep) = &replication {
        if let crate::replica::Role::Standby { primary } = rep.role {
            return run_standby(config, state, rep.clone(), primary, server).await;
        }
    }
    let opened = tokio::task::spawn_blocking(move || OpenCell::open(&config, metrics)).await.context("open task")??;
    let OpenCell { domains, writer, replicated } = opened;
    let mut replica_tasks = Vec::new();
    if let (Some(rep), Some(store)) = (replication, replicated) {
        // Before the domains serve: a deposed primary must not take one write.
        replica_tasks = start_primary(&state, &region, rep, store, control.as_ref(), &data_dir).await?;
    }
    if state.domains.set(domains).is_err() {
        unreachable!("domains are set once");
    }
    let background = {
        let d = state.domains.get().expect("set above");
        let fault = d.ledger.fault().clone();
        let mut tasks = vec![
            d.gaming.clone().spawn_sweeper(cell.clone(), intervals.round_sweep),
            spawn_checkpoints(d, intervals.audit_checkpoint),
            crate::idempotency::spawn_purger(
                d.store.clone(),
                vec![crate::store::subspaces::wallet(), crate::store::subspaces::compliance()],
                intervals.idempotency_window,
                intervals.idempotency_purge,
                d.clock.clone(),
            ),
            tokio::spawn(async move {
                fault.raised().await;
                let _ = stop.send(true);
            }),
        ];
        if let Some(task) = d.compliance.clone().spawn_rescreening(d.ledger.clone(), intervals.sanctions_rescreen) {
            tasks.push(task);
        }
        tasks.push(crate::domains::cashier::spawn_sweeper(
            d.cashier.clone(),
            d.ledger.clone(),
            cell.clone(),
            d.clock.clone(),
            crate::domains::cashier::SweepTimes {
                interval: intervals.cashier_sweep,
                answer_wait: intervals.psp_answer_wait,
                inquiry_wait: intervals.psp_inquiry_wait,
            },
            state.metrics.clone(),
        ));
        tasks.append(&mut replica_tasks);
        if let Some(control) = control {
            tracing::info!(control = %control.quic, version = d.catalog.version(), "following the control plane");
            let client = replication::sync::ClientConfig::new(cell, control.quic, control.client);
            let (task, status) = replication::sync::run_client(
                client,
                Arc::new(CatalogSink(d.catalog.clone())),
                std::future::pending::<()>(),
            );
            d.catalog.follow(status, control.stale_after);
            tasks.push(task);
        }
        tasks
    };
    tracing::info!("store open; ready");
    server.await.context("server task")?;
    for task in background {
        task.abort();
    }
    tracing::info!("stopped taking requests; draining the ledger writer");
    if let Some(domains) = state.domains.get() {
        domains.ledger.shutdown();
    }
    // The writer thread catches its own panics (and raises the fault), so a join error is only
    // what escaped that: it is a fault all the same.
    let joined = tokio::task::spawn_blocking(move || writer.join()).await.context("join")?;
    // The chain is final now: a last checkpoint covers what was written since the previous tick,
    // so a third party can check every record with the public key alone. The store holds only
    // committed batches whatever the writer did, so this holds after a fault too.
    let fault = match state.domains.get() {
        Some(d) => {
            if let Some(seq) = sign_checkpoint(d.store.clone(), d.audit.clone()).await {
                tracing::info!(seq, "audit checkpoint signed on the way out");
            }
            d.ledger.fault().get()
        }
        None => None,
    };
    match (fault, joined) {
        (Some(why), _) => anyhow::bail!("stopped: {why}"),
        (None, Err(_)) => anyhow::bail!("stopped: the ledger writer panicked"),
        (None, Ok(())) => {
            tracing::info!("stopped");
            Ok(())
        }
    }
}

/// Signs the audit chain's head every `interval` (nothing to do while it has not grown).
fn spawn_checkpoints(d: &Domains, interval: Duration) -> tokio::task::JoinHandle<()> {
    let (store, signer) = (d.store.clone(), d.audit.clone());
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await; // the first tick is immediate; the chain has not grown yet
        loop {
            ticks.tick().await;
            if let Some(seq) = sign_checkpoint(store.clone(), signer.clone()).await {
                tracing::debug!(seq, "audit checkpoint signed");
            }
        }
    })
}

/// Signs the chain's head if it has grown since the last checkpoint: the position signed, if one
/// was. A failure is logged; the next attempt tries again.
async fn sign_checkpoint(store: Arc<dyn Store>, signer: Arc<Checkpointer>) -> Option<u64> {
    match tokio::task::spawn_blocking(move || signer.checkpoint(store.as_ref())).await {
        Ok(Ok(Some(cp))) => Some(cp.seq),
        Ok(Ok(None)) => None,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "audit checkpoint failed; it is tried again later");
            None
        }
        Err(e) => {
            tracing::error!(error = %e, "audit checkpoint task failed");
            None
        }
    }
}

/// Opens the embedded store with its replication log.
fn open_replicated(config: &CellConfig, metrics: &Metrics) -> anyhow::Result<Arc<EmbeddedStore>> {
    let embedded = EmbeddedStore::open_replicated(&config.data_dir.join("store"), config.durability)
        .with_context(|| format!("open store under {}", config.data_dir.display()))?;
    metrics.watch_deleted_files(embedded.deleted_files());
    Ok(Arc::new(embedded))
}

/// A primary's replication: asks its peer whether it is still the writer (now, before it serves,
/// and every few seconds), ships its log to standbys, and in `sync` durability holds each commit's
/// answer until a standby has it. With a control plane it writes only under a lease
/// ([`replication::lease`]), which its standbys and the control plane confirm.
async fn start_primary(
    state: &Arc<AppState>,
    region: &RegionConfig,
    rep: crate::replica::ReplicationConfig,
    store: Arc<EmbeddedStore>,
    control: Option<&ControlConfig>,
    data_dir: &std::path::Path,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    use crate::replica::{ReplicaState, Role, StoreSource};
    use replication::shipping::{check_writer, FollowConfig, Shipper, ShipperConfig};
    let Role::Primary { listen, peer } = rep.role else { return Ok(Vec::new()) };
    let lease = Arc::new(replication::lease::Lease::default());
    let replica = Arc::new(ReplicaState {
        store: store.clone(),
        standby: false,
        follow: tokio::sync::watch::channel(Default::default()).1,
        shipper: OnceLock::new(),
        lease: lease.clone(),
    });
    let _ = state.replica.set(replica.clone());
    state.metrics.watch_replica(replica.clone());
    let mut tasks = Vec::new();
    if let Some(control) = control {
        // The control plane is the arbiter: from now on this cell writes only under a lease.
        let writer = crate::replica::writer_id(data_dir).context("the writer id")?;
        lease.require();
        store.set_lease(lease.clone());
        tasks.push(spawn_lease_keeper(control, &region.cell_id, store.clone(), lease.clone(), writer)?);
    }
    if let Some(peer) = peer {
        let ask =
            FollowConfig { cell: region.cell_id.clone(), site: rep.site.clone(), primary: peer, quic: rep.client };
        let check = |ask: FollowConfig, store: Arc<EmbeddedStore>| async move {
            let epoch = store.epoch();
            if let Some((why, peer_epoch)) = check_writer(&ask, epoch).await {
                tracing::error!(%why, peer_epoch, "deposed: this cell is fenced and writes nothing");
                fence(store, peer_epoch).await;
            }
        };
        check(ask.clone(), store.clone()).await;
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(2));
            loop {
                every.tick().await;
                if store.fenced_by().is_none() {
                    check(ask.clone(), store.clone()).await;
                }
            }
        }));
    }
    if let (Some(listen), Some(server)) = (listen, rep.server) {
        let config = ShipperConfig {
            cell: region.cell_id.clone(),
            allowed_sites: region.replication.standby_sites.clone(),
            residency_source: region.replication.source.clone(),
            heartbeat: replication::shipping::HEARTBEAT,
            lease: lease.clone(),
        };
        let shipper =
            Shipper::bind(listen, server, config).with_context(|| format!("listen for standbys on {listen}"))?;
        let _ = replica.shipper.set(shipper.clone());
        let sync = region.replication.durability == contracts::region::ReplicaDurability::Sync;
        tracing::info!(%listen, durability = ?region.replication.durability, "shipping commits to standbys");
        // `sync` holds each answer for a standby while one follows; with none (before the first
        // connects, or after a failover until the old primary is re-seeded) the cell writes alone
        // rather than stop, says so, and `cell_replication_standbys` is 0 for the alarm.
        let (sync_store, mut following) = (store.clone(), shipper.following());
        tasks.push(tokio::spawn(async move {
            loop {
                let standbys = *following.borrow_and_update();
                let _ = sync_store.require_standby(sync && standbys > 0);
                if sync && standbys == 0 {
                    tracing::warn!("sync durability with no standby following: commits are held by this cell alone");
                }
                if following.changed().await.is_err() {
                    return;
                }
            }
        }));
        tasks.push(tokio::spawn(shipper.clone().run(Arc::new(StoreSource(store.clone())), std::future::pending())));
        let (acked_store, mut acked) = (store.clone(), shipper.acked());
        tasks.push(tokio::spawn(async move {
            while acked.changed().await.is_ok() {
                let version = *acked.borrow_and_update();
                acked_store.standby_acked(version);
            }
        }));
    }
    Ok(tasks)
}

/// Fences `store` (a higher epoch writes), off the runtime's threads; a fence that cannot be
/// persisted still holds in memory until a restart.
async fn fence(store: Arc<EmbeddedStore>, epoch: u64) {
    match tokio::task::spawn_blocking(move || store.fence(epoch)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "the fence is not persisted: it holds until a restart"),
        Err(e) => tracing::error!(error = %e, "fencing failed"),
    }
}

/// Renews a primary's lease at the control plane every second. A first confirmation that raised
/// the recorded epoch (this cell was just promoted) counts only after the deposed writer's last
/// lease has run out; a control plane that names a higher epoch fences this cell.
fn spawn_lease_keeper(
    control: &ControlConfig,
    cell: &str,
    store: Arc<EmbeddedStore>,
    lease: Arc<replication::lease::Lease>,
    writer: String,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    use replication::lease::{LEASE, RENEW_EVERY};
    use replication::sync::{ask_lease, LeaseAnswer};
    let endpoint = quinn::Endpoint::client((std::net::Ipv4Addr::UNSPECIFIED, 0).into())
        .context("a UDP socket to ask the control plane for a lease")?;
    let mut config = replication::sync::ClientConfig::new(cell, control.quic, control.client.clone());
    config.connect_timeout = RENEW_EVERY * 2;
    Ok(tokio::spawn(async move {
        let mut reachable = true;
        loop {
            if store.fenced_by().is_some() {
                return;
            }
            let asked = lease.now();
            match ask_lease(&endpoint, &config, store.epoch(), &writer).await {
                Ok(LeaseAnswer::Granted { raised }) => {
                    if raised {
                        let wait = LEASE + Duration::from_millis(500);
                        tracing::warn!(
                            epoch = store.epoch(),
                            ?wait,
                            "promoted: waiting out the deposed writer's lease before writing"
                        );
                        lease.wait_out(wait);
                    }
                    lease.confirmed(asked);
                    reachable = true;
                }
                Ok(LeaseAnswer::Refused { code, message, epoch }) if code == "SUPERSEDED" => {
                    tracing::error!(%message, epoch, "deposed (the control plane records a higher epoch): this cell is fenced and writes nothing");
                    fence(store.clone(), epoch).await;
                    return;
                }
                Ok(LeaseAnswer::Refused { code, message, .. }) => {
                    tracing::error!(%code, %message, "the control plane does not confirm this cell as the writer");
                }
                Err(e) => {
                    if std::mem::replace(&mut reachable, false) {
                        tracing::warn!(error = %e, "the control plane does not answer: the lease rests on the standby");
                    }
                }
            }
            tokio::time::sleep(RENEW_EVERY).await;
        }
    }))
}

/// A standby: follows its primary into its own store and serves only health, readiness (not
/// ready: the router sends it nothing) and metrics, until it stops. Promotion is `cell promote`
/// on its data directory, then `cell serve` as the primary.
async fn run_standby(
    config: CellConfig,
    state: Arc<AppState>,
    rep: crate::replica::ReplicationConfig,
    primary: std::net::SocketAddr,
    server: tokio::task::JoinHandle<()>,
) -> anyhow::Result<()> {
    use crate::replica::{ReplicaState, StoreSink};
    use replication::shipping::{follow, FollowConfig};
    let metrics = state.metrics.clone();
    let store = {
        let config = CellConfig { replication: None, ..config };
        tokio::task::spawn_blocking(move || open_replicated(&config, &metrics)).await.context("open task")??
    };
    let (status, follow_status) = tokio::sync::watch::channel(Default::default());
    let replica = Arc::new(ReplicaState {
        store: store.clone(),
        standby: true,
        follow: follow_status,
        shipper: OnceLock::new(),
        lease: Default::default(),
    });
    let _ = state.replica.set(replica.clone());
    state.metrics.watch_replica(replica);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let to = FollowConfig { cell: state.cell.clone(), site: rep.site.clone(), primary, quic: rep.client };
    tracing::info!(%primary, site = %rep.site, version = store.committed_version(), "standby: following the primary");
    let follower = tokio::spawn(follow(to, Arc::new(StoreSink(store)), status, stopped));
    server.await.context("server task")?;
    let _ = stop.send(true);
    let _ = follower.await;
    tracing::info!("standby stopped");
    Ok(())
}
