//! The router as a player reaches it: a real `router` process in front of real cells on loopback,
//! clients placed in countries through a trusted proxy's `X-Forwarded-For`.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn geoip() -> PathBuf {
    let path = root().join(".cache/geoip/geo-whois-asn-country.mmdb");
    assert!(path.exists(), "{} is missing: run scripts/fetch-geoip.sh first", path.display());
    path
}

/// Addresses the pinned geo-whois-asn-country database places in each country.
const GB: &str = "81.2.69.142";
const DK: &str = "194.255.0.1";
const SE: &str = "62.20.0.1";
const MT: &str = "212.56.128.1";
const ES: &str = "77.209.0.1";
const US: &str = "8.8.8.8";
const PRIVATE: &str = "10.1.2.3";
/// Public, but in no record of the database.
const UNLISTED: &str = "102.199.102.127";

/// A real `cell serve` process (the binary `cargo test --workspace` builds beside the router's).
struct Cell {
    address: SocketAddr,
    child: Option<Child>,
    _dir: tempfile::TempDir,
}

fn cell_binary() -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_router")).with_file_name("cell");
    assert!(
        path.exists(),
        "{} is missing: run `cargo test --workspace` (or `cargo build -p cell`) first",
        path.display()
    );
    path
}

/// The key the tests' global-control would sign operator tokens with.
fn operator_key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[42; 32])
}

/// `Authorization` with an admin operator token of [`operator_key`], for a cell's back office.
fn operator_authorization() -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let (_, token) = contracts::operators::issue(&operator_key(), contracts::operators::Role::Admin, "tok_tests", now);
    format!("Bearer {token}")
}

impl Cell {
    async fn start(id: &str) -> Cell {
        Cell::start_with(id, None).await
    }

    /// A cell serving over mutual TLS with the certificates in `tls_dir`.
    async fn start_with(id: &str, tls_dir: Option<&Path>) -> Cell {
        let dir = tempfile::tempdir().unwrap();
        // The cell trusts the tests' operator-token key (`operator_authorization`).
        let key = contracts::operators::OperatorKey::of(&operator_key());
        std::fs::write(dir.path().join(contracts::operators::KEY_FILE), serde_json::to_vec(&key).unwrap()).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let address: SocketAddr = ([127, 0, 0, 1], port).into();
        let mut command = Command::new(cell_binary());
        command
            .args(["serve", "--listen", &address.to_string(), "--region"])
            .arg(root().join(format!("config/regions/{id}.toml")))
            .arg("--data")
            .arg(dir.path());
        if let Some(tls) = tls_dir {
            command.arg("--tls-dir").arg(tls);
        }
        let child = command.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        let cell = Cell { address, child: Some(child), _dir: dir };
        match tls_dir {
            None => wait_ready(address).await,
            // Plain HTTP cannot ask a mutual-TLS cell; wait for its port instead.
            Some(_) => {
                for _ in 0..500 {
                    if tokio::net::TcpStream::connect(address).await.is_ok() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
        cell
    }

    fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// `kill -9`: no chance to drain or say goodbye.
    async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
}

impl Drop for Cell {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

struct Reply {
    status: u16,
    headers: hyper::HeaderMap,
    body: Bytes,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    fn code(&self) -> String {
        self.json()["code"].as_str().unwrap_or_default().to_owned()
    }
    fn cell(&self) -> &str {
        self.headers.get("x-cell").and_then(|v| v.to_str().ok()).unwrap_or("")
    }
}

async fn request(
    address: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> anyhow::Result<Reply> {
    let stream = tokio::net::TcpStream::connect(address).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let mut builder = hyper::Request::builder().method(method).uri(path).header("host", "router");
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let response = sender.send_request(builder.body(Full::new(Bytes::from(body)))?).await?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await?.to_bytes();
    Ok(Reply { status, headers, body })
}

async fn wait_ready(address: SocketAddr) {
    for _ in 0..500 {
        if matches!(request(address, "GET", "/readyz", &[], None).await, Ok(r) if r.status == 200) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{address} did not become ready");
}

struct Router {
    address: SocketAddr,
    child: Child,
}

impl Drop for Router {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Router {
    async fn start(cells: &[(&str, String)], standbys: &[(&str, String)]) -> Router {
        Router::start_with(cells, standbys, &[]).await
    }

    async fn start_with(cells: &[(&str, String)], standbys: &[(&str, String)], extra: &[&str]) -> Router {
        let mut args = vec!["--insecure-dev"];
        args.extend_from_slice(extra);
        Router::spawn(cells, standbys, &args).await
    }

    async fn spawn(cells: &[(&str, String)], standbys: &[(&str, String)], extra: &[&str]) -> Router {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut command = Command::new(env!("CARGO_BIN_EXE_router"));
        command
            .args(["serve", "--trusted-proxy", "127.0.0.1/32", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--regions")
            .arg(root().join("config/regions"))
            .arg("--geoip")
            .arg(geoip());
        for (id, url) in cells {
            command.args(["--cell", &format!("{id}={url}")]);
        }
        for (id, url) in standbys {
            command.args(["--standby", &format!("{id}={url}")]);
        }
        command.args(extra);
        let child = command.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        let router = Router { address: ([127, 0, 0, 1], port).into(), child };
        wait_ready(router.address).await;
        router
    }

    /// A request from a client at `ip`, as a trusted proxy in front of the router reports it.
    async fn from(&self, ip: &str, method: &str, path: &str, body: Option<Value>) -> Reply {
        let key = format!("k-{}", rand::random::<u64>());
        let headers = [("x-forwarded-for", ip), ("x-idempotency-key", key.as_str())];
        request(self.address, method, path, &headers, body).await.unwrap()
    }
}

const PASSWORD: &str = "correct horse battery staple";

fn registration(player: &str, country: &str, currency: &str) -> Option<Value> {
    Some(json!({
        "playerId": player, "dateOfBirth": "1990-01-01", "country": country, "currency": currency, "password": PASSWORD
    }))
}

fn login(player: &str) -> Option<Value> {
    Some(json!({ "playerId": player, "password": PASSWORD }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn players_reach_their_licensed_cell_and_nothing_else_passes() {
    let uk = Cell::start("uk").await;
    let uk_standby = Cell::start("uk").await;
    let mut dk = Cell::start("dk").await;
    let se = Cell::start("se").await;
    let mt = Cell::start("mt").await;
    let es = Cell::start("es").await;
    let mut uk = uk;
    let router = Router::start(
        &[("uk", uk.url()), ("dk", dk.url()), ("se", se.url()), ("mt", mt.url()), ("es", es.url())],
        &[("uk", uk_standby.url())],
    )
    .await;

    // Each licensed country reaches its own cell.
    for (ip, cell, player, country, currency) in [
        (GB, "uk", "uk-gb1", "GB", "GBP"),
        (DK, "dk", "dk-dk1", "DK", "DKK"),
        (SE, "se", "se-se1", "SE", "SEK"),
        (MT, "mt", "mt-mt1", "MT", "EUR"),
        (ES, "es", "es-es1", "ES", "EUR"),
    ] {
        let r = router.from(ip, "POST", "/players", registration(player, country, currency)).await;
        assert_eq!((r.status, r.cell()), (201, cell), "{ip}: {}", String::from_utf8_lossy(&r.body));
        let anonymous = router.from(ip, "GET", &format!("/wallet/{player}/balance"), None).await;
        assert_eq!(
            (anonymous.status, anonymous.code().as_str()),
            (401, "INVALID_SESSION"),
            "a balance needs a session"
        );
        let session = router.from(ip, "POST", "/sessions", login(player)).await;
        assert_eq!((session.status, session.cell()), (201, cell), "{}", String::from_utf8_lossy(&session.body));
        let bearer = format!("Bearer {}", session.json()["accessToken"].as_str().unwrap());
        let path = format!("/wallet/{player}/balance");
        let b = request(router.address, "GET", &path, &[("x-forwarded-for", ip), ("authorization", &bearer)], None)
            .await
            .unwrap();
        assert_eq!((b.status, b.cell()), (200, cell));
    }

    // No licence, no service; unknown location fails closed; nothing is forwarded.
    let r = router.from(US, "POST", "/players", registration("uk-us1", "GB", "GBP")).await;
    assert_eq!((r.status, r.code().as_str(), r.cell()), (451, "JURISDICTION_NOT_LICENSED", "router"));
    assert_eq!(r.json()["country"], "US");
    for ip in [PRIVATE, UNLISTED] {
        let r = router.from(ip, "POST", "/players", registration("uk-x", "GB", "GBP")).await;
        assert_eq!((r.status, r.code().as_str(), r.cell()), (451, "GEOLOCATION_UNKNOWN", "router"), "{ip}");
    }
    // Internal routes are not reachable through the router.
    for (method, path) in
        [("POST", "/wallet/credit"), ("POST", "/wallet/hold"), ("GET", "/events"), ("GET", "/players")]
    {
        let body = Some(json!({ "playerId": "uk-gb1", "currency": "GBP", "amount": "100.00", "reason": "deposit" }));
        let r = router.from(GB, method, path, body).await;
        assert_eq!((r.status, r.code().as_str(), r.cell()), (404, "NOT_FOUND", "router"), "{method} {path}");
    }
    let operator = operator_authorization();
    let r =
        request(uk.address, "GET", "/ops/players/uk-gb1/balance", &[("authorization", &operator)], None).await.unwrap();
    assert_eq!(r.json()["cash"], "0.00", "the refused credit never reached the cell");

    // A travelling player: login from abroad reaches the home cell (named by the player id), and a
    // valid session token sends them home from anywhere, even from an unlicensed country.
    let abroad = router.from(US, "POST", "/sessions", login("uk-gb1")).await;
    assert_eq!((abroad.status, abroad.cell()), (201, "uk"), "{}", String::from_utf8_lossy(&abroad.body));
    let token = abroad.json()["accessToken"].as_str().unwrap().to_owned();
    // A refresh goes home too, by the cell its token names.
    let refresh = json!({ "refreshToken": abroad.json()["refreshToken"] });
    let refreshed = router.from(US, "POST", "/sessions/refresh", Some(refresh)).await;
    assert_eq!((refreshed.status, refreshed.cell()), (200, "uk"), "{}", String::from_utf8_lossy(&refreshed.body));
    let bearer = format!("Bearer {token}");
    let with_token = |ip: &'static str, token: String| {
        let address = router.address;
        async move {
            request(
                address,
                "GET",
                "/wallet/uk-gb1/balance",
                &[("x-forwarded-for", ip), ("authorization", token.as_str())],
                None,
            )
            .await
            .unwrap()
        }
    };
    for ip in [US, DK, PRIVATE] {
        let r = with_token(ip, bearer.clone()).await;
        assert_eq!((r.status, r.cell()), (200, "uk"), "balance from {ip} with a session");
    }
    // A session is no licence for where the client is: registration from the US is refused with
    // a token too.
    let headers = [("x-forwarded-for", US), ("authorization", bearer.as_str()), ("x-idempotency-key", "us-token")];
    let r = request(router.address, "POST", "/players", &headers, registration("uk-us2", "GB", "GBP")).await.unwrap();
    assert_eq!((r.status, r.code().as_str(), r.cell()), (451, "JURISDICTION_NOT_LICENSED", "router"));
    // Every X-Forwarded-For line counts: a second line cannot hide the client's real hop.
    let headers = [("x-forwarded-for", GB), ("x-forwarded-for", US), ("x-idempotency-key", "two-lines")];
    let r = request(router.address, "POST", "/players", &headers, registration("uk-us3", "GB", "GBP")).await.unwrap();
    assert_eq!((r.status, r.code().as_str()), (451, "JURISDICTION_NOT_LICENSED"), "the rightmost hop is the US");
    // A forged or garbled token is never trusted.
    let mut forged = token.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    for bad in [format!("Bearer {forged}"), "Bearer not.a.token".to_owned(), "Bearer x".to_owned()] {
        let r = with_token(GB, bad).await;
        assert_eq!((r.status, r.code().as_str(), r.cell()), (401, "INVALID_SESSION", "router"));
    }
    // A token signed by one cell cannot claim another cell's player.
    let dk_login = router.from(DK, "POST", "/sessions", login("dk-dk1")).await;
    assert_eq!((dk_login.status, dk_login.cell()), (201, "dk"));

    // A killed primary with a standby: the jurisdiction's traffic moves to its standby within 2 s,
    // and never to another jurisdiction's cell. (The standby is not fed by replication yet, so it
    // knows neither the player nor their session: its 401 is how we see it answered.)
    uk.kill().await;
    let killed = Instant::now();
    loop {
        let r = with_token(GB, bearer.clone()).await;
        assert_eq!(r.cell(), if r.status == 502 || r.status == 503 { "router" } else { "uk" });
        if r.status == 401 && r.code() == "INVALID_SESSION" && r.cell() == "uk" {
            break;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(2),
            "no failover to the standby within 2 s: {} {}",
            r.status,
            r.code()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = router.from(GB, "POST", "/players", registration("uk-gb2", "GB", "GBP")).await;
    assert_eq!((r.status, r.cell()), (201, "uk"), "the standby serves the jurisdiction");

    // A killed primary without a standby: 503 with Retry-After, never another cell.
    dk.kill().await;
    let killed = Instant::now();
    loop {
        let r = router.from(DK, "GET", "/wallet/dk-dk1/balance", None).await;
        if r.status == 503 {
            assert_eq!((r.code().as_str(), r.cell()), ("CELL_UNAVAILABLE", "router"));
            assert_eq!(r.headers.get("retry-after").and_then(|v| v.to_str().ok()), Some("1"));
            break;
        }
        assert_eq!(r.status, 502, "only the router's own refusals while the primary is going down");
        assert!(killed.elapsed() < Duration::from_secs(2), "no 503 within 2 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(router);
    drop((uk_standby, se, mt, es));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_per_client_address() {
    let uk = Cell::start("uk").await;
    let router = Router::start_with(&[("uk", uk.url())], &[], &["--client-rps", "2"]).await;
    let mut limited = None;
    for _ in 0..20 {
        let r = router.from(GB, "GET", "/wallet/uk-nobody/balance", None).await;
        if r.status == 429 {
            limited = Some(r);
            break;
        }
        assert_eq!(r.status, 401, "INVALID_SESSION from the cell (no token) until the limit");
    }
    let r = limited.expect("a client over its rate is refused");
    assert_eq!((r.code().as_str(), r.cell()), ("RATE_LIMITED", "router"));
    let retry: u64 = r.headers.get("retry-after").unwrap().to_str().unwrap().parse().unwrap();
    assert!(retry >= 1);
    // Another client is not affected.
    let other = router.from(DK, "GET", "/wallet/uk-nobody/balance", None).await;
    assert_ne!(other.status, 429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_and_cells_speak_mutual_tls_and_refuse_the_wrong_certificate() {
    let certs = tempfile::tempdir().unwrap();
    let names: Vec<String> = ["router", "uk", "dk"].iter().map(|s| s.to_string()).collect();
    replication::tls::generate(certs.path(), &names).unwrap();
    let uk = Cell::start_with("uk", Some(certs.path())).await;
    // A "dk" cell that presents uk's certificate: the router must not accept it as dk.
    let impostor_certs = tempfile::tempdir().unwrap();
    for file in ["ca.pem", "ca.key"] {
        std::fs::copy(certs.path().join(file), impostor_certs.path().join(file)).unwrap();
    }
    for ext in ["pem", "key"] {
        std::fs::copy(certs.path().join(format!("uk.{ext}")), impostor_certs.path().join(format!("dk.{ext}"))).unwrap();
    }
    let impostor = Cell::start_with("dk", Some(impostor_certs.path())).await;
    let tls_dir = certs.path().to_str().unwrap().to_owned();
    let router = Router::spawn(
        &[("uk", format!("https://{}", uk.address)), ("dk", format!("https://{}", impostor.address))],
        &[],
        &["--tls-dir", &tls_dir],
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = router.from(GB, "POST", "/players", registration("uk-tls1", "GB", "GBP")).await;
        if r.status == 201 {
            assert_eq!(r.cell(), "uk");
            break;
        }
        assert!(Instant::now() < deadline, "no answer over mutual TLS: {} {}", r.status, r.code());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = router.from(DK, "POST", "/players", registration("dk-tls1", "DK", "DKK")).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (503, "CELL_UNAVAILABLE"),
        "a cell with another cell's certificate is never used"
    );
    // Plain HTTP to a mutual-TLS cell gets nothing.
    assert!(request(uk.address, "GET", "/readyz", &[], None).await.is_err());
}

#[test]
fn the_router_refuses_to_start_without_mutual_tls_or_an_explicit_development_flag() {
    let output = Command::new(env!("CARGO_BIN_EXE_router"))
        .args(["serve", "--listen", "127.0.0.1:0", "--regions"])
        .arg(root().join("config/regions"))
        .arg("--geoip")
        .arg(geoip())
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("--tls-dir"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A stand-in cell that answers its health check at once and a balance after `delay`: a slow
/// request to be in flight when the router is told to stop.
async fn slow_cell(delay: Duration) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let service =
                hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| async move {
                    if request.uri().path().ends_with("/balance") {
                        tokio::time::sleep(delay).await;
                    }
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::from_static(
                        b"{\"slow\":true}",
                    ))))
                });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(tcp), service),
            );
        }
    });
    address
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_router_answers_requests_in_flight_and_takes_no_new_ones() {
    let cell = slow_cell(Duration::from_millis(1500)).await;
    let mut router = Router::start(&[("uk", format!("http://{cell}"))], &[]).await;
    let address = router.address;
    // A slow request in flight, then an idle keep-alive client: the router deals connections to
    // the serving thread with the fewest, so on two cores these are served by different threads.
    let in_flight =
        tokio::spawn(
            async move { request(address, "GET", "/wallet/uk-1/balance", &[("x-forwarded-for", GB)], None).await },
        );
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let (mut idle, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
    tokio::spawn(connection);
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Dealt by count, one to each serving thread (one per core): `/metrics` shows the two, and
    // the connection asking for it, spread as evenly as they can be.
    let metrics = request(address, "GET", "/metrics", &[], None).await.unwrap();
    let text = String::from_utf8(metrics.body.to_vec()).unwrap();
    let open: Vec<i64> = text
        .lines()
        .filter(|l| l.starts_with("router_client_connections{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(open.len(), std::thread::available_parallelism().unwrap().get(), "{text}");
    assert_eq!(open.iter().sum::<i64>(), 3, "{text}");
    assert!(open.iter().max().unwrap() - open.iter().min().unwrap() <= 1, "{text}");
    let term = Command::new("kill").args(["-TERM", &router.child.id().to_string()]).status().unwrap();
    assert!(term.success());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(tokio::net::TcpStream::connect(address).await.is_err(), "a stopping router accepts no new connection");
    // Every serving thread stops at once: the idle client's connection is closed while the slow
    // request is still in flight, not served a new request.
    let get = hyper::Request::get("/wallet/uk-1/balance")
        .header("host", "router")
        .header("x-forwarded-for", GB)
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert!(idle.send_request(get).await.is_err(), "an idle connection of a stopping router takes no new request");
    let answered = in_flight.await.unwrap().expect("the request in flight is answered");
    assert_eq!((answered.status, answered.body.as_ref()), (200, b"{\"slow\":true}".as_ref()));
    // Then it exits on its own, successfully.
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = router.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the router did not exit after its last request");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_beneath_the_routes_are_json_too() {
    let uk = Cell::start("uk").await;
    let router = Router::start(&[("uk", uk.url())], &[]).await;
    let from_gb = format!("X-Forwarded-For: {GB}\r\n");
    let probed = chaos::probes::refusals_beneath_routes_are_json(
        router.address,
        Some(("POST", "/healthz")),
        "/players",
        &from_gb,
    )
    .await;
    assert_eq!(probed, Ok(()));
    // A login whose body repeats a key is refused before it is routed anywhere.
    let body = r#"{"playerId":"uk-a","playerId":"dk-b"}"#;
    let request =
        format!("POST /sessions HTTP/1.1\r\nHost: x\r\n{from_gb}Content-Length: {}\r\n\r\n{body}", body.len());
    let answer = chaos::probes::exchange(router.address, request.as_bytes()).await.unwrap();
    assert_eq!((answer.status, answer.json["code"].as_str()), (400, Some("MALFORMED_JSON")), "{}", answer.raw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_dripping_connections_do_not_stop_a_normal_client() {
    let uk = Cell::start("uk").await;
    let router = Router::start(&[("uk", uk.url())], &[]).await;
    let slowest = chaos::probes::served_beside_idle_and_dripping(router.address, "/healthz").await.unwrap();
    println!("router: slowest of 10 requests beside 2,000 idle and 200 dripping connections: {slowest:?}");
}
