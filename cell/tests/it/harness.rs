//! A real cell on a loopback port, with a temporary data directory, and a small HTTP client.

use bytes::Bytes;
use cell::domains::gaming::providers::Provider;
use cell::ledger::WriterConfig;
use cell::server::CellConfig;
use cell::store::embedded::Durability;
use contracts::region::RegionConfig;
use http_body_util::{BodyExt, Full};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The password every test player registers with.
pub const PASSWORD: &str = "correct horse battery staple";

pub fn region_path(cell: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../config/regions/{cell}.toml"))
}

/// The secret test sandboxes sign KYC webhooks with.
pub const KYC_WEBHOOK_SECRET: &str = "test-kyc-webhook-secret";
/// The secret test sandboxes' card PSP signs its notifications with.
pub const PSP_CARD_SECRET: &str = "test-psp-card-secret";
/// The secret test sandboxes' bank-push PSP signs its callbacks with.
pub const PSP_BANK_SECRET: &str = "test-psp-bank-secret";

/// A sandbox a test cell asks: its base URL, and whether the cell verifies identities with it
/// (besides asking its registers and sanctions list).
#[derive(Clone)]
pub struct SandboxUse {
    pub url: String,
    pub kyc: bool,
}

/// A sandboxed cell's background work: the sanctions list is looked at every 200 ms, the
/// cashier's sweep runs every 300 ms, and asks the PSP about a notification 3 s overdue.
fn sandbox_intervals() -> cell::server::Intervals {
    cell::server::Intervals {
        sanctions_rescreen: std::time::Duration::from_millis(200),
        cashier_sweep: std::time::Duration::from_millis(300),
        psp_answer_wait: std::time::Duration::from_secs(1),
        psp_inquiry_wait: std::time::Duration::from_secs(3),
        ..Default::default()
    }
}

pub struct TestCell {
    pub address: SocketAddr,
    pub dir: tempfile::TempDir,
    providers: Vec<Provider>,
    intervals: cell::server::Intervals,
    store_faults: Option<(cell::store::fault::FaultConfig, u64)>,
    clock: std::sync::Arc<dyn cell::clock::Clock>,
    sandbox: Option<SandboxUse>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl TestCell {
    pub async fn start(cell: &str) -> TestCell {
        TestCell::start_with_providers(cell, Vec::new()).await
    }

    /// A cell serving `providers`.
    pub async fn start_with_providers(cell: &str, providers: Vec<Provider>) -> TestCell {
        let intervals = cell::server::Intervals {
            round_sweep: std::time::Duration::from_millis(200),
            audit_checkpoint: std::time::Duration::from_secs(60),
            ..Default::default()
        };
        TestCell::start_with(cell, providers, intervals).await
    }

    /// A cell serving `providers`, its background work on `intervals`.
    pub async fn start_with(cell: &str, providers: Vec<Provider>, intervals: cell::server::Intervals) -> TestCell {
        TestCell::start_full(cell, providers, intervals, None, cell::clock::system(), None).await
    }

    /// A cell serving `providers` that reads the time from `clock` (a test moves it).
    pub async fn start_with_clock(
        cell: &str,
        providers: Vec<Provider>,
        intervals: cell::server::Intervals,
        clock: std::sync::Arc<dyn cell::clock::Clock>,
    ) -> TestCell {
        TestCell::start_full(cell, providers, intervals, None, clock, None).await
    }

    /// A cell whose store injects `faults` (from seed 1).
    pub async fn start_with_faults(cell: &str, faults: cell::store::fault::FaultConfig) -> TestCell {
        TestCell::start_full(cell, Vec::new(), Default::default(), Some((faults, 1)), cell::clock::system(), None).await
    }

    /// A cell that asks the self-exclusion registers at `registers` (a sandbox), on `clock`.
    pub async fn start_with_registers(
        cell: &str,
        registers: &str,
        clock: std::sync::Arc<dyn cell::clock::Clock>,
    ) -> TestCell {
        let sandbox = SandboxUse { url: registers.to_owned(), kyc: false };
        TestCell::start_full(cell, Vec::new(), sandbox_intervals(), None, clock, Some(sandbox)).await
    }

    /// A cell that asks the sandbox at `url` everything: registers, sanctions list, KYC (whose
    /// webhooks it signs with [`KYC_WEBHOOK_SECRET`]) and its card PSP ([`PSP_CARD_SECRET`]).
    pub async fn start_with_sandbox(cell: &str, url: &str, clock: std::sync::Arc<dyn cell::clock::Clock>) -> TestCell {
        let sandbox = SandboxUse { url: url.to_owned(), kyc: true };
        TestCell::start_full(cell, Vec::new(), sandbox_intervals(), None, clock, Some(sandbox)).await
    }

    async fn start_full(
        cell: &str,
        providers: Vec<Provider>,
        intervals: cell::server::Intervals,
        store_faults: Option<(cell::store::fault::FaultConfig, u64)>,
        clock: std::sync::Arc<dyn cell::clock::Clock>,
        sandbox: Option<SandboxUse>,
    ) -> TestCell {
        let dir = tempfile::tempdir().unwrap();
        let (address, stop, server) = serve(
            ([127, 0, 0, 1], 0).into(),
            cell,
            dir.path(),
            providers.clone(),
            intervals,
            store_faults,
            clock.clone(),
            sandbox.clone(),
        )
        .await;
        TestCell {
            address,
            dir,
            providers,
            intervals,
            store_faults,
            clock,
            sandbox,
            stop: Some(stop),
            server: Some(server),
        }
    }

    /// How the server ended, once it has (without being asked to stop).
    pub async fn ended(&mut self) -> anyhow::Result<()> {
        let server = self.server.take().expect("the server is running");
        tokio::time::timeout(std::time::Duration::from_secs(30), server).await.expect("the server stops").unwrap()
    }

    /// Stops the server gracefully and starts a new one on the same data and address (what
    /// outside parties were told to call still reaches it).
    pub async fn restart(&mut self, cell: &str) {
        self.stop().await;
        let (address, stop, server) = serve(
            self.address,
            cell,
            self.dir.path(),
            self.providers.clone(),
            self.intervals,
            self.store_faults,
            self.clock.clone(),
            self.sandbox.clone(),
        )
        .await;
        self.address = address;
        self.stop = Some(stop);
        self.server = Some(server);
    }

    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap().unwrap();
        }
    }

    pub fn client(&self) -> Client {
        Client { address: self.address }
    }
}

/// The key the tests' global-control signs operator tokens with: every test cell's data directory
/// holds its public half as the bootstrap key.
pub fn operator_signing_key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[42; 32])
}

/// An operator token for `role` signed with the tests' key, valid at any time a test's clock
/// reaches (tests move clocks by years).
pub fn operator_token(role: contracts::operators::Role) -> String {
    let claims = contracts::operators::OperatorClaims {
        iss: contracts::operators::ISSUER.into(),
        sub: "tok_tests".into(),
        jti: format!("opt_tests_{role}"),
        role,
        iat: 0,
        exp: i64::MAX / 2,
    };
    let key = operator_signing_key();
    contracts::sessions::sign_jwt(&claims, &contracts::operators::OperatorKey::of(&key).id, &key)
}

/// Makes the cell whose data directory is `dir` accept [`operator_token`]s (its bootstrap key).
pub fn trust_test_operator_key(dir: &Path) {
    let key = contracts::operators::OperatorKey::of(&operator_signing_key());
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(contracts::operators::KEY_FILE), serde_json::to_vec(&key).unwrap()).unwrap();
}

/// `Authorization` with the tests' admin operator token.
pub fn admin_authorization() -> &'static str {
    static HEADER: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HEADER.get_or_init(|| format!("Bearer {}", operator_token(contracts::operators::Role::Admin)))
}

#[allow(clippy::too_many_arguments)]
async fn serve(
    at: SocketAddr,
    cell: &str,
    dir: &Path,
    providers: Vec<Provider>,
    intervals: cell::server::Intervals,
    store_faults: Option<(cell::store::fault::FaultConfig, u64)>,
    clock: std::sync::Arc<dyn cell::clock::Clock>,
    sandbox: Option<SandboxUse>,
) -> (SocketAddr, tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<anyhow::Result<()>>) {
    let listener = tokio::net::TcpListener::bind(at).await.unwrap();
    let address = listener.local_addr().unwrap();
    trust_test_operator_key(dir);
    let config = CellConfig {
        region: RegionConfig::from_file(&region_path(cell)).unwrap(),
        data_dir: dir.to_owned(),
        store: Default::default(),
        durability: Durability::GroupSync,
        writer: WriterConfig::default(),
        tls: None,
        providers,
        control: None,
        intervals,
        store_faults,
        registers: sandbox.as_ref().map(|s| s.url.clone()),
        kyc: sandbox.clone().filter(|s| s.kyc).map(|s| {
            let callback = format!("http://{address}/kyc/webhook");
            let secret = KYC_WEBHOOK_SECRET.as_bytes().to_vec();
            cell::domains::compliance::kyc::KycVendor::new(&s.url, callback, secret).unwrap()
        }),
        psps: match sandbox.filter(|s| s.kyc) {
            Some(s) => {
                let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/psps");
                let urls = [("card".to_owned(), s.url.clone()), ("bank".to_owned(), s.url.clone())];
                let secret = |name: &str| {
                    Some(if name == "PSP_BANK_SECRET" { PSP_BANK_SECRET } else { PSP_CARD_SECRET }.to_owned())
                };
                cell::domains::cashier::psps::load_dir_with(&dir, &urls, secret).unwrap()
            }
            None => Vec::new(),
        },
        callback_base: format!("http://{address}"),
        tamper_token_url: None,
        replication: None,
        clock,
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(cell::server::run(config, listener, async {
        let _ = stopped.await;
    }));
    let client = Client { address };
    for _ in 0..500 {
        if let Ok(r) = client.try_get("/readyz").await {
            if r.status == 200 {
                return (address, stop, server);
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("cell did not become ready");
}

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    pub fn code(&self) -> String {
        self.json()["code"].as_str().unwrap_or_default().to_owned()
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Sends the tests' admin operator token on every back-office request that does not carry its
/// own `Authorization` (a test's chosen token).
#[derive(Clone, Copy)]
pub struct Client {
    pub address: SocketAddr,
}

impl Client {
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> anyhow::Result<Reply> {
        let stream = tokio::net::TcpStream::connect(self.address).await?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        let mut request = hyper::Request::builder().method(method).uri(path).header("host", "cell");
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        if chaos::client::is_back_office(method, path)
            && !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("authorization"))
        {
            request = request.header("authorization", admin_authorization());
        }
        let response = sender.send_request(request.body(Full::new(Bytes::from(body)))?).await?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await?.to_bytes();
        Ok(Reply { status, headers, body })
    }

    pub async fn try_get(&self, path: &str) -> anyhow::Result<Reply> {
        self.raw("GET", path, &[], Vec::new()).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.try_get(path).await.unwrap()
    }

    /// A mutating POST with an idempotency key.
    pub async fn post(&self, path: &str, key: &str, body: Value) -> Reply {
        self.raw(
            "POST",
            path,
            &[("x-idempotency-key", key), ("content-type", "application/json")],
            body.to_string().into_bytes(),
        )
        .await
        .unwrap()
    }

    pub async fn register(&self, player: &str, born: &str, country: &str, currency: &str) -> Reply {
        let body = serde_json::json!({
            "playerId": player, "dateOfBirth": born, "country": country, "currency": currency, "password": PASSWORD
        });
        self.post("/players", &format!("reg-{player}"), body).await
    }

    pub async fn credit(&self, player: &str, amount: &str, key: &str) -> Reply {
        let body = serde_json::json!({ "playerId": player, "currency": "GBP", "amount": amount, "reason": "deposit" });
        self.post("/wallet/credit", key, body).await
    }

    pub async fn balance(&self, player: &str) -> Value {
        let r = self.get(&format!("/ops/players/{player}/balance")).await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        r.json()
    }

    /// Every event in the log.
    pub async fn events(&self) -> Vec<Value> {
        let mut all = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let path = match &after {
                Some(c) => format!("/events?after={c}&limit=1000"),
                None => "/events?limit=1000".to_owned(),
            };
            let page = self.get(&path).await.json();
            let events = page["events"].as_array().unwrap().clone();
            if events.is_empty() {
                return all;
            }
            after = page["next"].as_str().map(str::to_owned);
            all.extend(events);
        }
    }
}

/// Changes a stopped cell's store directly, as an intruder with disk access would: no API can.
pub fn behind_the_api(dir: &std::path::Path, change: impl FnOnce(&mut dyn cell::store::Transaction)) {
    use cell::store::embedded::{Durability, EmbeddedStore};
    use cell::store::Store;
    let store = EmbeddedStore::open(&dir.join("store"), Durability::SyncPerCommit).unwrap();
    let mut tx = store.begin().unwrap();
    change(tx.as_mut());
    tx.commit().unwrap();
}

/// A bare ledger over `store`, as a uk cell starts it (its region, the system clock), with
/// `gates`.
pub fn ledger(
    store: std::sync::Arc<dyn cell::store::Store>,
    gates: Vec<Box<dyn cell::ledger::Gate>>,
) -> (cell::ledger::Ledger, std::thread::JoinHandle<()>) {
    let region = std::sync::Arc::new(RegionConfig::from_file(&region_path("uk")).unwrap());
    let metrics = std::sync::Arc::new(cell::metrics::Metrics::default());
    cell::ledger::Ledger::start(store, region, metrics, WriterConfig::default(), cell::clock::system(), gates).unwrap()
}

/// Registers UK players (born 1990, in GBP) straight in `store`, without a cell: for tests of
/// the writer in process.
pub fn register_in_store(store: &std::sync::Arc<dyn cell::store::Store>, players: &[&str]) {
    let region = std::sync::Arc::new(RegionConfig::from_file(&region_path("uk")).unwrap());
    let compliance =
        cell::domains::compliance::Compliance::new(store.clone(), region, cell::clock::system(), None, None);
    for (i, player) in players.iter().enumerate() {
        let request = contracts::players::RegisterPlayerRequest {
            player_id: contracts::PlayerId::new(*player).unwrap(),
            date_of_birth: chrono::NaiveDate::from_ymd_opt(1990, 1, 1).unwrap(),
            country: contracts::CountryCode::new("GB").unwrap(),
            currency: "GBP".into(),
            password: contracts::players::Password(String::new()),
            profile: None,
        };
        let key =
            cell::idempotency::IdempotencyKey::new(&format!("reg-{i}"), "players.register", &serde_json::Value::Null)
                .unwrap();
        let ctx = cell::events::EventContext { cell: "uk".into(), trace_id: "t".into(), operator: None };
        compliance.player_register(request, None, &key, &ctx, None, None).unwrap();
    }
}

/// Stops a ledger from [`ledger`]: what was queued is answered, then its writer thread is joined.
pub async fn ledger_stop(ledger: cell::ledger::Ledger, writer: std::thread::JoinHandle<()>) {
    ledger.shutdown();
    drop(ledger);
    tokio::task::spawn_blocking(move || writer.join().unwrap()).await.unwrap();
}

/// A binary of the workspace, built beside this test's `cell` (`cargo test --workspace` builds
/// them all).
pub fn binary(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_cell")).with_file_name(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo test --workspace` (or `cargo build -p {name}`) first",
        path.display()
    );
    path
}
