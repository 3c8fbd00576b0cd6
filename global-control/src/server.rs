//! Wiring: opens the store, makes sure an admin can log in, binds the QUIC sync endpoint, serves
//! the control API until shutdown, then closes sync sessions and drains HTTP.

use crate::api::{self, AppState};
use crate::flags::Locks;
use crate::metrics::Metrics;
use crate::rbac::{self, Bootstrap};
use crate::store::{ControlStore, SyncSource};
use anyhow::Context;
use contracts::region::RegionConfig;
use replication::sync::{ServerConfig, SyncServer};
use replication::tls::QuicTimeouts;
use std::future::Future;

/// Longest a client may take to send a request's head, and so also how long a keep-alive
/// connection may sit idle (`replication::http::serve_connection`): operators' tools and the
/// drills' clients reuse connections for seconds, not minutes.
const HEADER_READ_MAX: std::time::Duration = std::time::Duration::from_secs(60);

/// Most connections open at once. The control API's clients are operators' tools, drills and
/// regulators, a handful at a time, but a cap that low would let a few thousand idle connections
/// lock them all out (at the cap new clients wait for one to end, up to `HEADER_READ_MAX`): 8,192
/// outlasts such a flood (tested with 2,000) and still leaves most of the process's 20,000 file
/// descriptors to the store and the QUIC endpoint.
const CONNECTIONS_MAX: usize = 8_192;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// Everything `ControlPlane::open` needs.
pub struct ControlConfig {
    pub data_dir: PathBuf,
    /// The region files: their cell ids are the cells allowed to sync, their locks are enforced.
    pub regions: Vec<RegionConfig>,
    pub tls_dir: PathBuf,
    pub quic_listen: SocketAddr,
    /// Let any cell id its certificate names sync, not only the region files' (benchmarks).
    pub any_cell: bool,
    pub timeouts: QuicTimeouts,
    /// `GLOBAL_CONTROL_ADMIN_TOKEN`, if set.
    pub admin_token: Option<String>,
    /// Wrong API tokens one address may present in a minute before 429 `AUTH_THROTTLED`.
    pub wrong_tokens_per_minute: usize,
    /// How often the export schedule runs (`None`: never; a benchmark's control plane).
    pub export_every: Option<std::time::Duration>,
}

/// An open control plane, not yet serving.
pub struct ControlPlane {
    pub state: Arc<AppState>,
    pub sync: Arc<SyncServer>,
    export_every: Option<std::time::Duration>,
}

impl ControlPlane {
    /// Opens the store and binds the sync endpoint. Call within a tokio runtime.
    pub async fn open(config: ControlConfig) -> anyhow::Result<ControlPlane> {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("create data dir {}", config.data_dir.display()))?;
        let (dir, env) = (config.data_dir.clone(), config.admin_token.clone());
        let (store, bootstrap, operator_key) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            let store = ControlStore::open(&dir.join("store"))
                .with_context(|| format!("open store under {}", dir.display()))?;
            let bootstrap = rbac::bootstrap_admin(&store, &dir, env).context("bootstrap the admin token")?;
            let operator_key = crate::operators::open(&store, &dir).context("open the operator-token key")?;
            Ok((store, bootstrap, operator_key))
        })
        .await
        .context("open task")??;
        match bootstrap {
            Bootstrap::FromEnv => tracing::info!("admin token: from {}", rbac::ADMIN_TOKEN_ENV),
            Bootstrap::Generated(path) => {
                tracing::warn!(path = %path.display(), "first start: generated an admin token; read it from this file")
            }
            Bootstrap::Existing => {}
        }
        let locks = Locks::from_regions(&config.regions);
        let store = Arc::new(store);
        for (key, flag) in store.read(|s| s.flags.clone()) {
            if let Err(e) = locks.check(&key, &flag.definition) {
                // A lock added to a region file after the flag was set: cells still serve the
                // locked value (evaluation applies locks); the next change must comply.
                tracing::warn!(flag = %key, problem = %e, "stored flag conflicts with a regulatory lock");
            }
        }
        let quic = replication::tls::quic_server_config(&config.tls_dir, "control", config.timeouts)
            .context("load the control plane's TLS certificate")?;
        let allowed = (!config.any_cell).then(|| config.regions.iter().map(|r| r.cell_id.clone()).collect());
        let sync = SyncServer::bind(
            config.quic_listen,
            quic,
            ServerConfig {
                allowed_cells: allowed,
                reset_key: Some(reset_key(&config.data_dir).context("load the QUIC reset key")?),
                arbiter: Some(Arc::new(
                    crate::writers::Writers::open(&config.data_dir).context("open the writers' record")?,
                )),
                ..ServerConfig::default()
            },
        )
        .with_context(|| format!("bind QUIC sync on {}", config.quic_listen))?;
        let exports = crate::exports::Exports::open(
            &config.data_dir,
            config.regions.clone(),
            config.tls_dir.clone(),
            operator_key.clone(),
        )
        .context("open the export schedule")?;
        let state = Arc::new(AppState {
            store,
            locks,
            sync: sync.clone(),
            metrics: Arc::new(Metrics::default()),
            token_failures: api::TokenFailures::new(config.wrong_tokens_per_minute),
            operator_key,
            exports: Arc::new(exports),
        });
        Ok(ControlPlane { state, sync, export_every: config.export_every })
    }

    pub fn quic_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.sync.local_addr()?)
    }

    /// Serves HTTP on `listener` and sync on the bound endpoint until `shutdown`.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let http = listener.local_addr().context("read listening address")?;
        let quic = self.quic_addr()?;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let source = Arc::new(SyncSource(self.state.store.clone()));
        let sync_stop = {
            let mut rx = stop_rx.clone();
            async move {
                let _ = rx.wait_for(|s| *s).await;
            }
        };
        let sync_task = tokio::spawn(self.sync.clone().run(source, sync_stop));
        let schedule = self.export_every.map(|every| self.state.exports.clone().spawn(every));
        let http_stop = {
            let mut rx = stop_rx;
            async move {
                let _ = rx.wait_for(|s| *s).await;
            }
        };
        let service = hyper_util::service::TowerToHyperService::new(api::router(self.state.clone()));
        let serve = replication::http::serve(listener, None, service, HEADER_READ_MAX, CONNECTIONS_MAX, http_stop);
        let server = tokio::spawn(serve);
        tracing::info!(%http, %quic, version = self.state.store.version(), "global-control listening");
        // Tests and scripts read this line to know both ports.
        println!("listening http={http} quic={quic}");
        shutdown.await;
        tracing::info!("shutting down: closing sync sessions, draining HTTP");
        let _ = stop_tx.send(true);
        if let Some(schedule) = schedule {
            schedule.abort();
        }
        sync_task.await.context("sync task")?;
        server.await.context("server task")?;
        tracing::info!("stopped");
        Ok(())
    }
}

/// The QUIC stateless-reset key in the data directory (`quic-reset.key`): the same key across
/// restarts lets cells notice a restart at once.
fn reset_key(data_dir: &std::path::Path) -> anyhow::Result<[u8; 32]> {
    secret_file(data_dir, "quic-reset.key")
}

/// A 32-byte secret kept in the data directory as `name`: created on first start (owner-only),
/// read after.
pub fn secret_file(data_dir: &std::path::Path, name: &str) -> anyhow::Result<[u8; 32]> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = data_dir.join(name);
    match std::fs::read(&path) {
        Ok(bytes) => bytes.try_into().map_err(|_| anyhow::anyhow!("{} is not 32 bytes", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(data_dir)?;
            let key: [u8; 32] = rand::random();
            let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path)?;
            file.write_all(&key)?;
            file.sync_all()?;
            Ok(key)
        }
        Err(e) => Err(anyhow::anyhow!("read {}: {e}", path.display())),
    }
}
