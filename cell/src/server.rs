//! Wiring: opens the store, starts the domains, serves the API until shutdown, then drains.

use crate::api::{self, AppState, Domains};
use crate::domains::compliance::Compliance;
use crate::domains::wallet::{Wallet, WriterConfig};
use crate::metrics::Metrics;
use crate::sessions::SessionSigner;
use crate::store::embedded::{Durability, EmbeddedStore};
use crate::store::Store;
use anyhow::Context;
use contracts::region::RegionConfig;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

/// Everything `run` needs.
pub struct CellConfig {
    pub region: RegionConfig,
    pub data_dir: PathBuf,
    pub durability: Durability,
    pub writer: WriterConfig,
    /// Serve over mutual TLS with this configuration; plain HTTP when `None` (local use).
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// A cell's domains over an open store, and the wallet writer thread to join on close.
pub struct OpenCell {
    pub domains: Domains,
    writer: std::thread::JoinHandle<()>,
}

impl OpenCell {
    /// Opens the embedded store under `data_dir` and starts the domains. Blocking.
    pub fn open(config: &CellConfig, metrics: Arc<Metrics>) -> anyhow::Result<OpenCell> {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("create data dir {}", config.data_dir.display()))?;
        let store: Arc<dyn Store> = Arc::new(
            EmbeddedStore::open(&config.data_dir.join("store"), config.durability)
                .with_context(|| format!("open store under {}", config.data_dir.display()))?,
        );
        let region = Arc::new(config.region.clone());
        let (wallet, writer) =
            Wallet::start(store.clone(), region.clone(), metrics, config.writer).context("start wallet writer")?;
        let compliance = Compliance::new(store.clone(), region.clone());
        let sessions = Arc::new(
            SessionSigner::load_or_create(&config.data_dir.join("session-ed25519.key"), &region.cell_id)
                .context("load the session signing key")?,
        );
        Ok(OpenCell { domains: Domains { store, wallet, compliance, sessions, region }, writer })
    }

    /// Lets the wallet writer finish what it was given, then waits for it. Blocking.
    pub fn close(self) {
        self.domains.wallet.shutdown();
        let OpenCell { domains, writer } = self;
        drop(domains);
        if writer.join().is_err() {
            tracing::error!("wallet writer panicked");
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
    let state =
        Arc::new(AppState { cell: config.region.cell_id.clone(), metrics: metrics.clone(), domains: OnceLock::new() });
    let address = listener.local_addr().context("read listening address")?;
    let app = api::router(state.clone());
    let server = match config.tls.clone() {
        Some(tls) => {
            let serve = axum::serve(crate::tls::TlsListener::new(listener, tls), app).with_graceful_shutdown(shutdown);
            tokio::spawn(async move { serve.await })
        }
        None => {
            // Small requests and answers: send each at once rather than wait for the peer's ACK.
            let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
                let _ = tcp.set_nodelay(true);
            });
            let serve = axum::serve(listener, app).with_graceful_shutdown(shutdown);
            tokio::spawn(async move { serve.await })
        }
    };
    tracing::info!(cell = %config.region.cell_id, %address, data = %config.data_dir.display(), "listening; opening store");
    let opened = tokio::task::spawn_blocking(move || OpenCell::open(&config, metrics)).await.context("open task")??;
    let OpenCell { domains, writer } = opened;
    if state.domains.set(domains).is_err() {
        unreachable!("domains are set once");
    }
    tracing::info!("store open; ready");
    server.await.context("server task")?.context("serve")?;
    tracing::info!("stopped taking requests; draining the wallet writer");
    if let Some(domains) = state.domains.get() {
        domains.wallet.shutdown();
    }
    tokio::task::spawn_blocking(move || writer.join())
        .await
        .context("join")?
        .map_err(|_| anyhow::anyhow!("wallet writer panicked"))?;
    tracing::info!("stopped");
    Ok(())
}
