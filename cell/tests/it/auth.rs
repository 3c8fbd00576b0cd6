//! Player authentication against a real cell over HTTP: passwords, logins, the bearer check on a
//! player route, forged tokens, refresh rotation and reuse, logout, throttling, events.

use crate::harness::{TestCell, PASSWORD};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use ed25519_dalek::Signer;
use serde_json::{json, Value};
use std::time::Duration;

const ADULT: &str = "1990-04-01";

async fn login(c: &crate::harness::Client, player: &str, password: &str) -> crate::harness::Reply {
    let body = json!({ "playerId": player, "password": password }).to_string();
    c.raw("POST", "/sessions", &[("x-client-ip", "198.51.100.7")], body.into_bytes()).await.unwrap()
}

async fn balance(c: &crate::harness::Client, player: &str, token: Option<&str>) -> crate::harness::Reply {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = bearer.iter().map(|b| ("authorization", b.as_str())).collect();
    c.raw("GET", &format!("/wallet/{player}/balance"), &headers, Vec::new()).await.unwrap()
}

fn token_of(reply: &crate::harness::Reply, field: &str) -> String {
    reply.json()[field].as_str().unwrap_or_else(|| panic!("{field} in {}", String::from_utf8_lossy(&reply.body))).into()
}

/// A token with these claims, signed by `key` (`alg` as given).
fn forge(key: &ed25519_dalek::SigningKey, alg: &str, claims: &Value) -> String {
    let signed =
        format!("{}.{}", B64.encode(json!({ "alg": alg, "typ": "JWT" }).to_string()), B64.encode(claims.to_string()));
    format!("{signed}.{}", B64.encode(key.sign(signed.as_bytes()).to_bytes()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_player_reads_their_account_and_forged_tokens_do_not() {
    let clock = cell::clock::ManualClock::new(chrono::Utc::now());
    let intervals = cell::server::Intervals {
        round_sweep: Duration::from_secs(60),
        audit_checkpoint: Duration::from_secs(60),
        ..Default::default()
    };
    let cell = TestCell::start_with_clock("uk", Vec::new(), intervals, clock.clone()).await;
    let c = cell.client();

    // Weak passwords are refused before anything is stored.
    for weak in ["short", "password1234", "uk-ann-forever-and-ever"] {
        let body =
            json!({ "playerId": "uk-ann", "dateOfBirth": ADULT, "country": "GB", "currency": "GBP", "password": weak });
        let r = c.post("/players", &format!("weak-{weak}"), body).await;
        assert_eq!((r.status, r.code().as_str()), (400, "WEAK_PASSWORD"), "{weak}");
    }
    for p in ["uk-ann", "uk-bob"] {
        assert_eq!(c.register(p, ADULT, "GB", "GBP").await.status, 201);
    }
    assert_eq!(c.credit("uk-ann", "12.00", "fund-ann").await.status, 200);

    let ann = login(&c, "uk-ann", PASSWORD).await;
    assert_eq!(ann.status, 201, "{}", String::from_utf8_lossy(&ann.body));
    let ann_token = token_of(&ann, "accessToken");
    let bob_token = token_of(&login(&c, "uk-bob", PASSWORD).await, "accessToken");

    let own = balance(&c, "uk-ann", Some(&ann_token)).await;
    assert_eq!((own.status, own.json()["cash"].as_str()), (200, Some("12.00")));
    let other = balance(&c, "uk-ann", Some(&bob_token)).await;
    assert_eq!((other.status, other.code().as_str()), (403, "NOT_YOUR_ACCOUNT"));
    let none = balance(&c, "uk-ann", None).await;
    assert_eq!((none.status, none.code().as_str()), (401, "INVALID_SESSION"));

    // Forgeries: another key, `alg: none`, a tampered payload, an expired token.
    let claims = |exp: i64| json!({ "sub": "uk-ann", "cell": "uk", "sid": "x", "iat": 0, "exp": exp });
    let later = chrono::Utc::now().timestamp() + 3_600;
    let stranger = ed25519_dalek::SigningKey::from_bytes(&rand::random::<[u8; 32]>());
    let mut tampered = ann_token.split('.').map(str::to_owned).collect::<Vec<_>>();
    tampered[1] = B64.encode(claims(later + 86_400).to_string());
    let unsigned = format!("{}.{}.", B64.encode(r#"{"alg":"none"}"#), B64.encode(claims(later).to_string()));
    for forged in [
        forge(&stranger, "EdDSA", &claims(later)),
        forge(&stranger, "none", &claims(later)),
        unsigned,
        tampered.join("."),
    ] {
        let r = balance(&c, "uk-ann", Some(&forged)).await;
        assert_eq!((r.status, r.code().as_str()), (401, "INVALID_SESSION"), "{forged}");
    }
    clock.advance(chrono::Duration::minutes(16));
    let expired = balance(&c, "uk-ann", Some(&ann_token)).await;
    assert_eq!((expired.status, expired.code().as_str()), (401, "INVALID_SESSION"), "15 minutes, then expired");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_rotates_a_reused_token_ends_the_session_and_logout_ends_it_too() {
    let cell = TestCell::start("uk").await;
    let c = cell.client();
    assert_eq!(c.register("uk-ann", ADULT, "GB", "GBP").await.status, 201);
    let first = login(&c, "uk-ann", PASSWORD).await;
    let refresh = token_of(&first, "refreshToken");
    assert!(refresh.starts_with("uk."), "the refresh token names its cell: {refresh}");

    let refresh_with = |token: &str| json!({ "refreshToken": token }).to_string().into_bytes();
    let second = c.raw("POST", "/sessions/refresh", &[], refresh_with(&refresh)).await.unwrap();
    assert_eq!(second.status, 200, "{}", String::from_utf8_lossy(&second.body));
    let (access, next) = (token_of(&second, "accessToken"), token_of(&second, "refreshToken"));
    assert_ne!(next, refresh, "a refresh token is used once");
    assert_eq!(balance(&c, "uk-ann", Some(&access)).await.status, 200);

    // The first refresh token again: a copy was stolen, so the session ends for everyone.
    let reused = c.raw("POST", "/sessions/refresh", &[], refresh_with(&refresh)).await.unwrap();
    assert_eq!((reused.status, reused.code().as_str()), (401, "INVALID_SESSION"));
    assert_eq!(balance(&c, "uk-ann", Some(&access)).await.status, 401, "the session's access token stops");
    let after = c.raw("POST", "/sessions/refresh", &[], refresh_with(&next)).await.unwrap();
    assert_eq!(after.status, 401, "and so does its newest refresh token");

    // Logout ends a session the same way.
    let access = token_of(&login(&c, "uk-ann", PASSWORD).await, "accessToken");
    let bearer = format!("Bearer {access}");
    let out = c.raw("DELETE", "/sessions", &[("authorization", &bearer)], Vec::new()).await.unwrap();
    assert_eq!(out.status, 204);
    assert_eq!(balance(&c, "uk-ann", Some(&access)).await.status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_wrong_passwords_throttle_the_player_and_every_attempt_is_an_event() {
    let cell = TestCell::start("uk").await;
    let c = cell.client();
    assert_eq!(c.register("uk-ann", ADULT, "GB", "GBP").await.status, 201);
    for _ in 0..5 {
        let wrong = login(&c, "uk-ann", "not the password at all").await;
        assert_eq!((wrong.status, wrong.code().as_str()), (401, "INVALID_CREDENTIALS"));
    }
    let throttled = login(&c, "uk-ann", PASSWORD).await;
    assert_eq!((throttled.status, throttled.code().as_str()), (429, "LOGIN_THROTTLED"), "even with the right password");
    let retry: u64 = throttled.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=900).contains(&retry), "Retry-After {retry}");

    let events = c.events().await;
    let named = |name: &str| events.iter().filter(|e| e["event"] == name).count();
    assert_eq!((named("player.login_failed"), named("player.login")), (6, 0));
    let last = events.iter().rev().find(|e| e["event"] == "player.login_failed").unwrap();
    assert_eq!(
        (last["payload"]["reason"].as_str(), last["payload"]["address"].as_str()),
        (Some("LOGIN_THROTTLED"), Some("198.51.100.7"))
    );
    let text = serde_json::to_string(&events).unwrap();
    assert!(!text.contains(PASSWORD) && !text.contains("not the password"), "no password in any event");
}

/// One request over a fresh mutual-TLS connection as `name`; the status line and body.
async fn tls_request(tls: &std::path::Path, address: std::net::SocketAddr, name: &str, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let config = std::sync::Arc::new(replication::tls::client_config(tls, name, "uk").unwrap());
    let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
    let server = rustls::pki_types::ServerName::try_from("uk").unwrap();
    let mut stream = tokio_rustls::TlsConnector::from(config).connect(server, tcp).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer).await;
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_is_an_identity_not_a_pass() {
    let tls = tempfile::tempdir().unwrap();
    let names = ["uk", "router", "dk", "drill", "provider-x"].map(str::to_owned);
    replication::tls::generate(tls.path(), &names).unwrap();
    let data = tempfile::tempdir().unwrap();
    crate::harness::trust_test_operator_key(data.path());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let config = cell::server::CellConfig {
        region: contracts::region::RegionConfig::from_file(&crate::harness::region_path("uk")).unwrap(),
        data_dir: data.path().to_owned(),
        store: Default::default(),
        durability: cell::store::embedded::Durability::GroupSync,
        writer: Default::default(),
        tls: Some(replication::tls::server_config(tls.path(), "uk").unwrap()),
        providers: Vec::new(),
        control: None,
        intervals: Default::default(),
        store_faults: None,
        registers: None,
        kyc: None,
        psps: Vec::new(),
        callback_base: String::new(),
        tamper_token_url: None,
        replication: None,
        clock: cell::clock::system(),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(cell::server::run(config, listener, async {
        let _ = stopped.await;
    }));
    let post_as = |path: &str, key: &str, body: Value, authorization: &str| {
        let body = body.to_string();
        format!(
            "POST {path} HTTP/1.1\r\nhost: uk\r\nconnection: close\r\nx-idempotency-key: {key}\r\n{authorization}content-length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let post = |path: &str, key: &str, body: Value| post_as(path, key, body, "");
    let bearer = |token: &str| format!("authorization: Bearer {token}\r\n");
    let admin = format!("authorization: {}\r\n", crate::harness::admin_authorization());
    let ready = "GET /readyz HTTP/1.1\r\nhost: uk\r\nconnection: close\r\n\r\n";
    for _ in 0..500 {
        if tls_request(tls.path(), address, "router", ready).await.starts_with("HTTP/1.1 200") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let register =
        json!({ "playerId": "uk-ann", "dateOfBirth": ADULT, "country": "GB", "currency": "GBP", "password": PASSWORD });
    let credit = json!({ "playerId": "uk-ann", "currency": "GBP", "amount": "1.00", "reason": "deposit" });
    // The router reaches player routes, and no further, whatever token it carries.
    assert!(tls_request(tls.path(), address, "router", &post("/players", "r1", register))
        .await
        .starts_with("HTTP/1.1 201"));
    let by_router =
        tls_request(tls.path(), address, "router", &post_as("/wallet/credit", "c1", credit.clone(), &admin)).await;
    assert!(by_router.starts_with("HTTP/1.1 403") && by_router.contains("FORBIDDEN"), "{by_router}");
    // Another cell moves no money here; a provider's certificate reaches provider calls only.
    for name in ["dk", "provider-x"] {
        let answer =
            tls_request(tls.path(), address, name, &post_as("/wallet/credit", "c2", credit.clone(), &admin)).await;
        assert!(answer.starts_with("HTTP/1.1 403"), "{name}: {answer}");
    }
    // The back office's certificate needs an operator token besides: none, a forged one (another
    // key, `alg: none`, tampered, expired, a player's) is 401 and moves nothing.
    let no_token = tls_request(tls.path(), address, "drill", &post("/wallet/credit", "c3", credit.clone())).await;
    assert!(no_token.starts_with("HTTP/1.1 401") && no_token.contains("INVALID_OPERATOR_TOKEN"), "{no_token}");
    let claims = |role: &str, exp: i64| json!({ "iss": "global-control", "sub": "tok_x", "jti": "opt_x", "role": role, "iat": 0, "exp": exp });
    let ours = crate::harness::operator_signing_key();
    let stranger = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
    let valid = forge(&ours, "EdDSA", &claims("finance", i64::MAX / 2));
    let (head, rest) = valid.split_once('.').unwrap();
    let (_, signature) = rest.split_once('.').unwrap();
    let tampered = format!("{head}.{}.{signature}", B64.encode(claims("admin", i64::MAX / 2).to_string()));
    let forged = [
        forge(&stranger, "EdDSA", &claims("admin", i64::MAX / 2)),
        forge(&ours, "none", &claims("admin", i64::MAX / 2)),
        tampered,
        forge(&ours, "EdDSA", &claims("admin", 1)),
        forge(&ours, "EdDSA", &json!({ "sub": "uk-ann", "cell": "uk", "sid": "s", "iat": 0, "exp": i64::MAX / 2 })),
    ];
    for (n, token) in forged.iter().enumerate() {
        let answer =
            tls_request(tls.path(), address, "drill", &post_as("/wallet/credit", "c4", credit.clone(), &bearer(token)))
                .await;
        assert!(
            answer.starts_with("HTTP/1.1 401") && answer.contains("INVALID_OPERATOR_TOKEN"),
            "forged #{n}: {answer}"
        );
    }
    // A valid token of a role the route does not grant: 403.
    let ops = crate::harness::operator_token(contracts::operators::Role::Ops);
    let wrong_role =
        tls_request(tls.path(), address, "drill", &post_as("/wallet/credit", "c5", credit.clone(), &bearer(&ops)))
            .await;
    assert!(wrong_role.starts_with("HTTP/1.1 403") && wrong_role.contains("finance"), "{wrong_role}");
    // Finance moves money, and its event names the token and the role.
    let by_finance =
        tls_request(tls.path(), address, "drill", &post_as("/wallet/credit", "c6", credit, &bearer(&valid))).await;
    assert!(by_finance.starts_with("HTTP/1.1 200"), "{by_finance}");
    let get_as = |path: &str, token: &str| {
        format!("GET {path} HTTP/1.1\r\nhost: uk\r\nconnection: close\r\nauthorization: Bearer {token}\r\n\r\n")
    };
    let events = tls_request(tls.path(), address, "drill", &get_as("/events?limit=100", &ops)).await;
    let body: Value = serde_json::from_str(events.split_once("\r\n\r\n").unwrap().1).unwrap();
    let credited: Vec<&Value> =
        body["events"].as_array().unwrap().iter().filter(|e| e["event"] == "wallet.credited").collect();
    assert_eq!(credited.len(), 1, "one credit moved: {body}");
    assert_eq!(credited[0]["payload"]["operator"], json!({ "tokenId": "opt_x", "role": "finance" }));
    // A regulator reads its own jurisdiction's audit trail, not another's.
    for (regulator, status) in [("regulator:UK", "200"), ("regulator:DK", "403")] {
        let token = crate::harness::operator_token(contracts::operators::Role::parse(regulator).unwrap());
        let answer = tls_request(tls.path(), address, "drill", &get_as("/audit/verify", &token)).await;
        assert!(answer.starts_with(&format!("HTTP/1.1 {status}")), "{regulator}: {answer}");
    }
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enrolled_authenticator_is_needed_at_every_login() {
    let cell = TestCell::start("uk").await;
    let c = cell.client();
    assert_eq!(c.register("uk-ann", ADULT, "GB", "GBP").await.status, 201);
    assert_eq!(c.register("uk-bob", ADULT, "GB", "GBP").await.status, 201);
    let bearer = format!("Bearer {}", token_of(&login(&c, "uk-ann", PASSWORD).await, "accessToken"));
    let bob = format!("Bearer {}", token_of(&login(&c, "uk-bob", PASSWORD).await, "accessToken"));
    let not_hers = c.raw("POST", "/players/uk-ann/totp", &[("authorization", &bob)], Vec::new()).await.unwrap();
    assert_eq!((not_hers.status, not_hers.code().as_str()), (403, "NOT_YOUR_ACCOUNT"));
    let enrolled = c.raw("POST", "/players/uk-ann/totp", &[("authorization", &bearer)], Vec::new()).await.unwrap();
    assert_eq!(enrolled.status, 201, "{}", String::from_utf8_lossy(&enrolled.body));
    let secret = token_of(&enrolled, "secret");
    assert!(token_of(&enrolled, "otpauthUrl").starts_with("otpauth://totp/"));
    let again = c.raw("POST", "/players/uk-ann/totp", &[("authorization", &bearer)], Vec::new()).await.unwrap();
    assert_eq!((again.status, again.code().as_str()), (409, "TOTP_ALREADY_ENROLLED"));

    let without = login(&c, "uk-ann", PASSWORD).await;
    assert_eq!((without.status, without.code().as_str()), (401, "TOTP_REQUIRED"));
    // The player's authenticator, played by the same RFC 6238 implementation.
    let bytes = totp_rs::Secret::Encoded(secret).to_bytes().unwrap();
    let authenticator = totp_rs::TOTP::new(totp_rs::Algorithm::SHA1, 6, 1, 30, bytes).unwrap();
    let now = chrono::Utc::now().timestamp() as u64;
    let with_code = |code: String| json!({ "playerId": "uk-ann", "password": PASSWORD, "totp": code }).to_string();
    let wrong = c.raw("POST", "/sessions", &[], with_code("000000".into()).into_bytes()).await.unwrap();
    let right = c.raw("POST", "/sessions", &[], with_code(authenticator.generate(now)).into_bytes()).await.unwrap();
    assert!(wrong.status == 401 || authenticator.generate(now) == "000000");
    assert_eq!(right.status, 201, "{}", String::from_utf8_lossy(&right.body));
}
