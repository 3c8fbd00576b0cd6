//! Cells following the control plane, as processes: the real `global-control serve` and five real
//! `cell serve --control` processes over mutual TLS (HTTP) and QUIC (sync). A flag change reaches
//! every cell; the control plane is killed (flags keep being served, then `STALE`) and restarted
//! (cells converge); a cell restarted while the control plane is down serves what it had; UK's
//! regulatory lock holds; the lobby is the catalog filtered by jurisdiction and flags.

use crate::harness::{region_path, Reply};
use bytes::Bytes;
use chaos::ports::{free_tcp, free_udp};
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ADMIN: &str = "control-test-admin-token-0123456789abcdef";
const CELLS: [&str; 5] = ["uk", "mt", "dk", "se", "es"];

use crate::harness::binary;

fn kill9(child: &mut Child) {
    let _ = Command::new("kill").args(["-9", &child.id().to_string()]).status();
    let _ = child.wait();
}

/// A GET or PUT over HTTP(S) with this test's client certificate (`router`'s) when `tls` is set.
async fn request(
    address: SocketAddr,
    tls: Option<Arc<rustls::ClientConfig>>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> anyhow::Result<Reply> {
    let stream = tokio::net::TcpStream::connect(address).await?;
    let body = Full::new(Bytes::from(body.map(|b| b.to_string()).unwrap_or_default()));
    let mut builder = hyper::Request::builder().method(method).uri(path).header("host", "test");
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let request = builder.header("content-type", "application/json").body(body)?;
    let response = match tls {
        Some(config) => {
            let name = rustls::pki_types::ServerName::try_from("localhost")?;
            let stream = tokio_rustls::TlsConnector::from(config).connect(name, stream).await?;
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
            tokio::spawn(conn);
            sender.send_request(request).await?
        }
        None => {
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
            tokio::spawn(conn);
            sender.send_request(request).await?
        }
    };
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await?.to_bytes();
    Ok(Reply { status, headers, body })
}

struct ControlPlane {
    http: SocketAddr,
    quic: SocketAddr,
    data: PathBuf,
    tls: PathBuf,
    child: Option<Child>,
}

impl ControlPlane {
    async fn start(root: &Path, tls: &Path) -> ControlPlane {
        let (http, quic) = (free_tcp().unwrap(), free_udp().unwrap());
        let mut plane = ControlPlane { http, quic, data: root.join("control"), tls: tls.to_owned(), child: None };
        plane.restart().await;
        plane
    }

    async fn restart(&mut self) {
        let child = Command::new(binary("global-control"))
            .args(["serve", "--listen", &self.http.to_string(), "--quic", &self.quic.to_string(), "--data"])
            .arg(&self.data)
            .arg("--tls-dir")
            .arg(&self.tls)
            .arg("--regions")
            .arg(region_path("uk").parent().unwrap())
            .env("GLOBAL_CONTROL_ADMIN_TOKEN", ADMIN)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        for _ in 0..1000 {
            if matches!(request(self.http, None, "GET", "/readyz", &[], None).await, Ok(r) if r.status == 200) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("global-control did not become ready");
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill9(&mut child);
        }
    }

    async fn call(&self, method: &str, path: &str, body: Value) -> Reply {
        let auth = format!("Bearer {ADMIN}");
        request(self.http, None, method, path, &[("authorization", &auth)], Some(body)).await.unwrap()
    }

    /// Creates or replaces a boolean flag; returns the change's version.
    async fn put_flag(&self, key: &str, enabled: bool, rules: Value) -> u64 {
        let definition = json!({
            "kind": "boolean",
            "variants": { "on": true, "off": false },
            "offVariant": "off",
            "fallthrough": { "variant": "on" },
            "enabled": enabled,
            "rules": rules,
        });
        let r = self.call("PUT", &format!("/flags/{key}"), json!({ "definition": definition, "reason": "test" })).await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        r.json()["version"].as_u64().unwrap()
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.kill();
    }
}

struct CellProcess {
    id: &'static str,
    address: SocketAddr,
    data: PathBuf,
    tls: Arc<rustls::ClientConfig>,
    child: Option<Child>,
}

impl CellProcess {
    async fn start(id: &'static str, root: &Path, tls: &Path, control: SocketAddr) -> CellProcess {
        let client = replication::tls::client_config(tls, "router", id).unwrap();
        let address = free_tcp().unwrap();
        let mut cell = CellProcess { id, address, data: root.join(id), tls: Arc::new(client), child: None };
        cell.restart(tls, control).await;
        cell
    }

    async fn restart(&mut self, tls: &Path, control: SocketAddr) {
        let child = Command::new(binary("cell"))
            .args(["serve", "--listen", &self.address.to_string(), "--region"])
            .arg(region_path(self.id))
            .arg("--data")
            .arg(&self.data)
            .arg("--tls-dir")
            .arg(tls)
            .args(["--control", &control.to_string(), "--control-stale-after-seconds", "2"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        for _ in 0..1000 {
            if matches!(self.get("/readyz").await, Ok(r) if r.status == 200) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("cell {} did not become ready", self.id);
    }

    async fn get(&self, path: &str) -> anyhow::Result<Reply> {
        request(self.address, Some(self.tls.clone()), "GET", path, &[], None).await
    }

    async fn evaluate(&self, query: &str) -> Value {
        self.get(&format!("/flags/evaluate?{query}")).await.unwrap().json()
    }

    /// Polls until `check` holds for the evaluation of `query`, or panics after 15 s.
    async fn until(&self, query: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let v = self.evaluate(query).await;
            if check(&v) {
                return v;
            }
            assert!(Instant::now() < deadline, "cell {}: {what} never happened; last answer {v}", self.id);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill9(&mut child);
        }
    }
}

impl Drop for CellProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Development certificates for the control plane, the router and `cells`, made by the real
/// `global-control certs`, under `root/tls`.
fn certificates(root: &Path, cells: &[&str]) -> PathBuf {
    let tls = root.join("tls");
    let status = Command::new(binary("global-control"))
        .args(["certs", "--out"])
        .arg(&tls)
        .args(["--cells", &cells.join(",")])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    tls
}

async fn platform() -> (tempfile::TempDir, PathBuf, ControlPlane, Vec<CellProcess>) {
    let root = tempfile::tempdir().unwrap();
    let tls = certificates(root.path(), &CELLS);
    let control = ControlPlane::start(root.path(), &tls).await;
    let mut cells = Vec::new();
    for id in CELLS {
        cells.push(CellProcess::start(id, root.path(), &tls, control.quic).await);
    }
    (root, tls, control, cells)
}

#[tokio::test]
async fn flags_reach_every_cell_survive_the_control_plane_and_converge() {
    let (_root, tls, mut control, mut cells) = platform().await;

    // A flag change reaches every cell.
    let v1 = control.put_flag("new-lobby", true, json!([])).await;
    for cell in &cells {
        let got = cell.until("flag=new-lobby&playerId=p1", "the new flag", |v| v["version"] == v1).await;
        assert_eq!((got["value"].clone(), got["reason"].clone()), (json!(true), json!("STATIC")), "{}", cell.id);
    }
    // A targeting rule by region.
    let rules = json!([{ "id": "nordics-off", "clauses": [{ "attribute": "region", "op": "in", "values": ["dk", "se"] }], "serve": { "variant": "off" } }]);
    let v2 = control.put_flag("new-lobby", true, rules).await;
    for cell in &cells {
        let got = cell.until("flag=new-lobby&playerId=p1", "the rule", |v| v["version"] == v2).await;
        let expected = !matches!(cell.id, "dk" | "se");
        assert_eq!(got["value"], json!(expected), "{}: {got}", cell.id);
    }

    // The control plane dies: cells keep answering from their copy, then say it may be stale.
    control.kill();
    for cell in &cells {
        let got = cell.until("flag=new-lobby&playerId=p1", "STALE", |v| v["reason"] == "STALE").await;
        assert_eq!(got["version"], v2);
    }
    // A cell restarted while the control plane is down serves the flags it had.
    cells[0].kill();
    cells[0].restart(&tls, control.quic).await;
    let got = cells[0].evaluate("flag=new-lobby&playerId=p1").await;
    assert_eq!((got["value"].clone(), got["version"].clone()), (json!(true), json!(v2)), "{got}");

    // Back: the kill switch reaches every cell, no longer stale.
    control.restart().await;
    let killed = control.call("POST", "/flags/new-lobby/kill", json!({ "reason": "incident 7" })).await;
    assert_eq!(killed.status, 200, "{}", String::from_utf8_lossy(&killed.body));
    for cell in &cells {
        let got = cell.until("flag=new-lobby&playerId=p1", "the kill switch", |v| v["reason"] == "DISABLED").await;
        assert_eq!(got["value"], json!(false));
    }
}

#[tokio::test]
async fn regulatory_lock_and_lobby() {
    let (_root, _tls, control, cells) = platform().await;
    let (uk, mt) = (&cells[0], &cells[1]);

    // `autoplay` is locked off in the UK: the control plane refuses to turn it on there...
    let definition = json!({ "kind": "boolean", "variants": { "on": true, "off": false }, "offVariant": "off", "fallthrough": { "variant": "on" }, "enabled": true });
    let refused = control.call("PUT", "/flags/autoplay", json!({ "definition": definition, "reason": "try" })).await;
    assert_eq!((refused.status, refused.code().as_str()), (409, "REGULATORY_LOCK"));
    // ... allows it everywhere else, and the UK cell still serves the lock's value.
    let outside_uk = json!([{ "id": "not-uk", "clauses": [{ "attribute": "region", "op": "in", "values": ["uk"] }], "serve": { "variant": "off" } }]);
    let version = control.put_flag("autoplay", true, outside_uk).await;
    mt.until("flag=autoplay", "autoplay on in Malta", |v| v["version"] == version && v["value"] == true).await;
    let got = uk.until("flag=autoplay", "the lock", |v| v["version"] == version).await;
    assert_eq!((got["value"].clone(), got["rule"].clone()), (json!(false), json!("UKGC-RTS14-AUTOPLAY")), "{got}");

    // The lobby: certified and offered here, provider up, flag on for this player.
    let provider = json!({ "provider": { "id": "demo", "name": "Demo Studio" }, "reason": "onboard" });
    assert_eq!(control.call("PUT", "/catalog/providers/demo", provider).await.status, 200);
    let game = |id: &str, certified: Value, flag: Option<&str>| {
        let mut g = json!({ "id": id, "providerId": "demo", "name": id, "type": "slots", "rtp": "96.50", "certifiedJurisdictions": certified, "availableJurisdictions": certified });
        if let Some(flag) = flag {
            g["flag"] = json!(flag);
        }
        json!({ "game": g, "reason": "certified" })
    };
    for (id, certified, flag) in [
        ("demo:everywhere", json!(["UK", "MT"]), None),
        ("demo:malta-only", json!(["MT"]), None),
        ("demo:beta", json!(["UK"]), Some("beta-games")),
    ] {
        let r = control.call("PUT", &format!("/catalog/games/{id}"), game(id, certified, flag)).await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    }
    // `beta-games` is off unless the client is the beta app (an attribute a client may set; a
    // player's own attributes come from their record, never from the query).
    let definition = json!({ "kind": "boolean", "variants": { "on": true, "off": false }, "offVariant": "off", "fallthrough": { "variant": "off" }, "enabled": true,
        "rules": [{ "id": "beta-app", "clauses": [{ "attribute": "platform", "op": "in", "values": ["beta-app"] }], "serve": { "variant": "on" } }] });
    let r = control.call("PUT", "/flags/beta-games", json!({ "definition": definition, "reason": "vip beta" })).await;
    let last = r.json()["version"].as_u64().unwrap();
    uk.until("flag=beta-games", "the beta flag", |v| v["version"] == last).await;

    let ids = |lobby: Value| -> Vec<String> {
        lobby["games"].as_array().unwrap().iter().map(|g| g["id"].as_str().unwrap().to_owned()).collect()
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let lobby = uk.get("/lobby?playerId=uk-1").await.unwrap().json();
        if lobby["version"].as_u64().unwrap() >= last {
            assert_eq!(ids(lobby), vec!["demo:everywhere"]);
            break;
        }
        assert!(Instant::now() < deadline, "the UK lobby never caught up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let beta = uk.get("/lobby?playerId=uk-1&platform=beta-app").await.unwrap().json();
    assert_eq!(ids(beta), vec!["demo:beta", "demo:everywhere"]);
    let malta = mt.get("/lobby").await.unwrap().json();
    assert_eq!(ids(malta), vec!["demo:everywhere", "demo:malta-only"]);
}

/// A UDP relay between one client and `upstream` that can black-hole every datagram, both ways.
struct UdpFaultProxy {
    address: SocketAddr,
    blackhole: Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl UdpFaultProxy {
    async fn start(upstream: SocketAddr) -> UdpFaultProxy {
        let front = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let back = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
        back.connect(upstream).await.unwrap();
        let address = front.local_addr().unwrap();
        let blackhole = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (cut, client) = (blackhole.clone(), Arc::new(std::sync::Mutex::new(None::<SocketAddr>)));
        let task = tokio::spawn(async move {
            let (mut up, mut down) = (vec![0u8; 65_536], vec![0u8; 65_536]);
            loop {
                tokio::select! {
                    Ok((n, from)) = front.recv_from(&mut up) => {
                        *client.lock().unwrap() = Some(from);
                        if !cut.load(std::sync::atomic::Ordering::SeqCst) {
                            let _ = back.send(&up[..n]).await;
                        }
                    }
                    Ok(n) = back.recv(&mut down) => {
                        let to = *client.lock().unwrap();
                        if let (Some(to), false) = (to, cut.load(std::sync::atomic::Ordering::SeqCst)) {
                            let _ = front.send_to(&down[..n], to).await;
                        }
                    }
                }
            }
        });
        UdpFaultProxy { address, blackhole, task }
    }

    fn cut(&self, on: bool) {
        self.blackhole.store(on, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for UdpFaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test]
async fn a_cell_cut_off_by_a_udp_fault_proxy_converges_once_healed() {
    let root = tempfile::tempdir().unwrap();
    let tls = certificates(root.path(), &["uk", "mt"]);
    let control = ControlPlane::start(root.path(), &tls).await;
    let proxy = UdpFaultProxy::start(control.quic).await;
    let cut_off = CellProcess::start("uk", root.path(), &tls, proxy.address).await;
    let direct = CellProcess::start("mt", root.path(), &tls, control.quic).await;

    let v1 = control.put_flag("promo-banner", true, json!([])).await;
    cut_off.until("flag=promo-banner", "v1 through the proxy", |v| v["version"] == v1).await;

    proxy.cut(true);
    let v2 = control.put_flag("promo-banner", false, json!([])).await;
    direct.until("flag=promo-banner", "v2 directly", |v| v["version"] == v2).await;
    // Cut off: it keeps serving v1, and after the stale time says so.
    let stale = cut_off.until("flag=promo-banner", "STALE while cut off", |v| v["reason"] == "STALE").await;
    assert_eq!((stale["version"].clone(), stale["value"].clone()), (json!(v1), json!(true)));

    proxy.cut(false);
    let healed = cut_off.until("flag=promo-banner", "v2 once healed", |v| v["version"] == v2).await;
    assert_eq!((healed["reason"].clone(), healed["value"].clone()), (json!("DISABLED"), json!(false)));
}

/// The synced catalog tells the stake rules what a game is, but only for the provider that owns it.
#[test]
fn a_game_type_and_multiplier_count_only_for_their_own_provider() {
    use cell::domains::catalog::{Catalog, CatalogSink};
    use replication::sync::{ChangeSet, SyncSink};
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn cell::store::Store> = Arc::new(
        cell::store::embedded::EmbeddedStore::open(dir.path(), cell::store::embedded::Durability::GroupSync).unwrap(),
    );
    let region = Arc::new(contracts::region::RegionConfig::from_file(&region_path("uk")).unwrap());
    let catalog = Arc::new(Catalog::open(store.clone(), region.clone()).unwrap());
    let game: contracts::catalog::Game = serde_json::from_value(json!({
        "id": "demo-roulette", "providerId": "demo", "name": "Roulette", "type": "live", "rtp": "97.30",
        "certifiedJurisdictions": ["UK"], "availableJurisdictions": ["UK"], "maxMultiplier": "36"
    }))
    .unwrap();
    let set = ChangeSet {
        base_version: 0,
        version: 1,
        snapshot: true,
        changes: vec![contracts::changes::Change::GamePut { game }],
        digest: None,
    };
    CatalogSink(catalog.clone()).apply(&set).unwrap();
    assert_eq!(catalog.game_type("demo", "demo-roulette"), Some(contracts::catalog::GameType::Live));
    assert_eq!(catalog.game_type("pulsar", "demo-roulette"), None, "another provider's game says nothing");
    let multiplier = catalog.max_multiplier("demo", "demo-roulette").map(|m| m.value());
    assert_eq!((multiplier, catalog.max_multiplier("pulsar", "demo-roulette")), (Some(36.into()), None));
    // The copy is in the store: a reopened cell knows it.
    let reopened = Catalog::open(store, region).unwrap();
    assert_eq!(
        (reopened.version(), reopened.game_type("demo", "demo-roulette")),
        (1, Some(contracts::catalog::GameType::Live))
    );
}

/// A control plane replaced by one with another history (here: a fresh one, as from an older
/// backup) that has moved past the cell's version: the cell's copy must not take the new records
/// on top of the old ones; it gets a snapshot.
#[tokio::test]
async fn a_cell_takes_a_snapshot_from_a_control_plane_with_another_history() {
    let root = tempfile::tempdir().unwrap();
    let tls = certificates(root.path(), &["uk"]);
    let mut first = ControlPlane::start(root.path(), &tls).await;
    let uk = CellProcess::start("uk", root.path(), &tls, first.quic).await;
    let mut first_last = 0;
    for key in ["old-a", "old-b"] {
        first_last = first.put_flag(key, true, json!([])).await;
    }
    uk.until("flag=old-b", "the first history", |v| v["version"] == first_last).await;
    first.kill();

    let mut second = ControlPlane {
        http: first.http,
        quic: first.quic,
        data: root.path().join("control-other"),
        tls: tls.clone(),
        child: None,
    };
    second.restart().await;
    let mut last = 0;
    for key in ["new-a", "new-b", "new-c"] {
        last = second.put_flag(key, true, json!([])).await;
    }
    let got = uk.until("flag=new-c", "the second history", |v| v["version"] == last).await;
    assert_eq!(got["value"], true);
    let old = uk.evaluate("flag=old-a").await;
    assert_eq!(old["errorCode"], "FLAG_NOT_FOUND", "a flag of the replaced history survived: {old}");
}

/// Operator tokens: a cell that has never synced and has no bootstrap key refuses every one; once
/// synced it accepts those global-control issues (its key came over the sync), and still refuses
/// one signed with any other key.
#[tokio::test]
async fn the_back_office_takes_the_operator_tokens_of_the_control_plane_it_syncs_with() {
    let root = tempfile::tempdir().unwrap();
    let tls = certificates(root.path(), &["uk"]);
    let control = ControlPlane::start(root.path(), &tls).await;
    let uk = CellProcess::start("uk", root.path(), &tls, control.quic).await;
    let issued = control.call("POST", "/operator-tokens", json!({ "role": "finance" })).await;
    assert_eq!(issued.status, 201, "{}", String::from_utf8_lossy(&issued.body));
    let token = issued.json()["token"].as_str().unwrap().to_owned();
    // The control plane's certificate is an operator tool's: with a token, it reaches the back office.
    let back_office = Arc::new(replication::tls::client_config(&tls, "control", "uk").unwrap());
    let ledger = |token: String| {
        let back_office = back_office.clone();
        async move {
            let bearer = format!("Bearer {token}");
            request(uk.address, Some(back_office), "GET", "/ops/ledger", &[("authorization", &bearer)], None)
                .await
                .unwrap()
        }
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = ledger(token.clone()).await;
        if r.status == 200 {
            break;
        }
        assert_eq!(r.json()["code"], "INVALID_OPERATOR_TOKEN", "before the key arrives");
        assert!(Instant::now() < deadline, "the synced key never verified the token");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stranger = crate::harness::operator_token(contracts::operators::Role::Admin);
    let r = ledger(stranger).await;
    assert_eq!((r.status, r.json()["code"].as_str()), (401, Some("INVALID_OPERATOR_TOKEN")));
}
