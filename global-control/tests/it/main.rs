//! Integration tests: the real `global-control` binary, real HTTP, real QUIC with mutual TLS,
//! real files. One test binary (support shared).

mod support;

use serde_json::json;
use std::time::Duration;
use support::*;

const CONVERGE: Duration = Duration::from_secs(20);

/// An endpoint class of the RBAC matrix: name, method, path, body, the roles allowed.
type EndpointClass = (&'static str, &'static str, &'static str, Option<serde_json::Value>, &'static [&'static str]);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flag_changes_reach_subscribers_across_kill_9_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let tls = certs(dir.path());
    let mut control = Control::start(&dir.path().join("control"), &tls);
    let (status, flag) =
        control.call("PUT", "/flags/new-lobby", Some(ADMIN), Some(boolean_flag("on", json!([]), "launch"))).await;
    assert_eq!(status, 200, "{flag}");
    let v1 = flag["version"].as_u64().unwrap();
    let subs: Vec<Subscriber> = ["uk", "mt", "dk"]
        .iter()
        .map(|c| Subscriber::start(&tls, c, c, control.quic, dir.path().join(format!("{c}.json"))))
        .collect();
    for s in &subs {
        s.converged(v1, CONVERGE).await;
        assert_eq!(s.sink.read()["flags"]["new-lobby"]["definition"]["enabled"], true);
    }
    // A change while connected is streamed.
    let (status, killed) =
        control.call("POST", "/flags/new-lobby/kill", Some(ADMIN), Some(json!({"reason": "incident 42"}))).await;
    assert_eq!(status, 200, "{killed}");
    let v2 = killed["version"].as_u64().unwrap();
    for s in &subs {
        s.converged(v2, CONVERGE).await;
        assert_eq!(s.sink.read()["flags"]["new-lobby"]["definition"]["enabled"], false);
    }
    // kill -9 and restart: the acknowledged change is still there, subscribers reconnect.
    control.kill9();
    control.restart();
    let (status, history) = control.call("GET", "/flags/new-lobby/history", Some(ADMIN), None).await;
    assert_eq!(status, 200);
    let records = history["records"].as_array().unwrap();
    assert_eq!(records.len(), 2, "{history}");
    assert_eq!(records[1]["reason"], "incident 42");
    assert!(records[1]["actor"].as_str().unwrap().contains("bootstrap admin"));
    let (status, flag) =
        control.call("PUT", "/flags/new-lobby", Some(ADMIN), Some(boolean_flag("off", json!([]), "relaunch"))).await;
    assert_eq!(status, 200, "{flag}");
    let v3 = flag["version"].as_u64().unwrap();
    assert_eq!(v3, v2 + 1, "versions continue across the crash");
    for s in &subs {
        s.converged(v3, CONVERGE).await;
    }
    // A subscriber restarted resumes from its file: no snapshot, nothing twice.
    let mut subs = subs;
    let uk = subs.remove(0).stop().await;
    let (status, _) =
        control.call("PUT", "/flags/second", Some(ADMIN), Some(boolean_flag("on", json!([]), "second"))).await;
    assert_eq!(status, 200);
    let uk = Subscriber::start_with(&tls, "uk", "uk", control.quic, uk);
    uk.converged(v3 + 1, CONVERGE).await;
    let applied = uk.sink.applied.lock().unwrap().clone();
    assert_eq!(applied.iter().filter(|(_, _, snapshot)| *snapshot).count(), 1, "one snapshot, at first: {applied:?}");
    uk.assert_exactly_once();
    for s in &subs {
        s.converged(v3 + 1, CONVERGE).await;
        s.assert_exactly_once();
    }
    // Graceful shutdown exits 0.
    assert!(control.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_converge_after_the_quic_path_is_blackholed_and_healed() {
    let dir = tempfile::tempdir().unwrap();
    let tls = certs(dir.path());
    let control = Control::start(&dir.path().join("control"), &tls);
    let proxy = UdpProxy::start(control.quic).await;
    let sub = Subscriber::start(&tls, "se", "se", proxy.addr, dir.path().join("se.json"));
    let (_, flag) = control.call("PUT", "/flags/a", Some(ADMIN), Some(boolean_flag("on", json!([]), "a"))).await;
    sub.converged(flag["version"].as_u64().unwrap(), CONVERGE).await;
    proxy.blackhole(true);
    let mut last = 0;
    for i in 0..3 {
        let (status, flag) = control
            .call("PUT", "/flags/a", Some(ADMIN), Some(boolean_flag("off", json!([]), &format!("cut {i}"))))
            .await;
        assert_eq!(status, 200);
        last = flag["version"].as_u64().unwrap();
    }
    // Longer than the idle timeout: the connection dies, the client keeps retrying into the hole.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(sub.sink.version() < last, "nothing crosses a black hole");
    assert!(!sub.status.snapshot().connected);
    assert!(sub.status.is_stale(Duration::from_secs(2)), "cut off for 3 s reads as stale");
    proxy.blackhole(false);
    sub.converged(last, CONVERGE).await;
    sub.assert_exactly_once();
    assert!(!sub.status.is_stale(Duration::from_secs(2)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_certificates_are_refused_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let tls = certs(dir.path());
    let control = Control::start(&dir.path().join("control"), &tls);
    control.call("PUT", "/flags/a", Some(ADMIN), Some(boolean_flag("on", json!([]), "a"))).await;
    // mt's certificate claiming to be uk.
    let liar = Subscriber::start(&tls, "uk", "mt", control.quic, dir.path().join("liar.json"));
    // A certificate from another CA.
    let rogue_dir = tempfile::tempdir().unwrap();
    let rogue_tls = certs(rogue_dir.path());
    std::fs::copy(tls.join("ca.pem"), rogue_tls.join("ca.pem")).unwrap(); // trusts the real CA, presents a rogue cert
    let rogue = Subscriber::start(&rogue_tls, "dk", "dk", control.quic, dir.path().join("rogue.json"));
    // A server that is not the control plane: same CA, but it presents cell uk's certificate.
    let fake_tls = dir.path().join("fake-tls");
    std::fs::create_dir_all(&fake_tls).unwrap();
    for (from, to) in [("ca.pem", "ca.pem"), ("ca.key", "ca.key"), ("uk.pem", "control.pem"), ("uk.key", "control.key")]
    {
        std::fs::copy(tls.join(from), fake_tls.join(to)).unwrap();
    }
    let fake = Control::start(&dir.path().join("fake"), &fake_tls);
    fake.call("PUT", "/flags/evil", Some(ADMIN), Some(boolean_flag("on", json!([]), "evil"))).await;
    let fooled = Subscriber::start(&tls, "es", "es", fake.quic, dir.path().join("fooled.json"));
    tokio::time::sleep(Duration::from_secs(3)).await;
    for (name, s) in [("liar", &liar), ("rogue", &rogue), ("fooled", &fooled)] {
        assert_eq!(s.sink.version(), 0, "{name} got data: {:?}", s.status.snapshot());
    }
    // The liar passes the TLS handshake (its certificate is the CA's) and is refused after its
    // hello: wait for the refusal.
    liar.refused("CERTIFICATE_MISMATCH", Duration::from_secs(20)).await;
    assert_eq!(liar.sink.version(), 0, "the liar got data");
    let liar_status = liar.status.snapshot();
    assert!(
        !liar_status.connected && liar_status.connections == 0,
        "a refused cell never shows as connected: {liar_status:?}"
    );
    assert!(
        fooled.status.snapshot().last_error.unwrap_or_default().contains("certificate"),
        "{:?}",
        fooled.status.snapshot()
    );
    // The honest cell still syncs.
    let honest = Subscriber::start(&tls, "uk", "uk", control.quic, dir.path().join("uk.json"));
    honest.converged(1, CONVERGE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rbac_matrix() {
    let dir = tempfile::tempdir().unwrap();
    let tls = certs(dir.path());
    let control = Control::start(&dir.path().join("control"), &tls);
    let mut tokens = std::collections::BTreeMap::new();
    for role in ["product", "catalog", "ops", "finance", "compliance", "regulator:UK", "admin"] {
        let (status, created) =
            control.call("POST", "/tokens", Some(ADMIN), Some(json!({"name": role, "roles": [role]}))).await;
        assert_eq!(status, 201, "{created}");
        assert!(created["token"].as_str().unwrap().starts_with("gct_"));
        tokens.insert(role, created["token"].as_str().unwrap().to_owned());
    }
    let provider = json!({"provider": {"id": "pragmatic", "name": "Pragmatic Play"}, "reason": "onboard"});
    // (endpoint class, method, path, body, roles allowed)
    let classes: Vec<EndpointClass> = vec![
        ("flags read", "GET", "/flags", None, &["product", "catalog", "ops", "admin"]),
        ("flags write", "PUT", "/flags/x", Some(boolean_flag("on", json!([]), "rbac")), &["product", "admin"]),
        ("catalog read", "GET", "/catalog/games", None, &["product", "catalog", "ops", "admin"]),
        ("catalog write", "PUT", "/catalog/providers/pragmatic", Some(provider), &["catalog", "admin"]),
        ("ops", "GET", "/cells", None, &["ops", "admin"]),
        ("exports UK", "GET", "/exports/UK", None, &["regulator:UK", "admin"]),
        ("exports MT", "GET", "/exports/MT", None, &["admin"]),
        ("tokens", "GET", "/tokens", None, &["admin"]),
        (
            "operator token: finance",
            "POST",
            "/operator-tokens",
            Some(json!({"role": "finance"})),
            &["finance", "admin"],
        ),
        ("operator token: ops", "POST", "/operator-tokens", Some(json!({"role": "ops"})), &["ops", "admin"]),
        ("operator token: admin", "POST", "/operator-tokens", Some(json!({"role": "admin"})), &["admin"]),
        (
            "operator token: UK's regulator",
            "POST",
            "/operator-tokens",
            Some(json!({"role": "regulator:UK"})),
            &["regulator:UK", "admin"],
        ),
    ];
    for (n, (class, method, path, body, allowed)) in classes.iter().enumerate() {
        // No token, or an unknown one, by turns: more than 20 a minute from one address would be
        // throttled (429 AUTH_THROTTLED).
        let (token, what) =
            if n % 2 == 0 { (None, "without a token") } else { (Some("gct_not_a_token"), "with an unknown token") };
        let (status, error) = control.call(method, path, token, body.clone()).await;
        assert_eq!((status, error["code"].as_str()), (401, Some("UNAUTHENTICATED")), "{class} {what}");
        for (role, token) in &tokens {
            let (status, answer) = control.call(method, path, Some(token), body.clone()).await;
            if allowed.contains(role) {
                let created = *method == "POST";
                assert!(status == if created { 201 } else { 200 }, "{class} as {role}: {status} {answer}");
            } else {
                assert_eq!((status, answer["code"].as_str()), (403, Some("FORBIDDEN")), "{class} as {role}: {answer}");
                let message = answer["message"].as_str().unwrap();
                assert!(message.contains(&format!("(it holds {role})")), "{message}");
                assert!(!message.contains("Exports(") && !message.contains("Read"), "internal names: {message}");
            }
        }
    }
    // An operator token verifies with the public key global-control wrote beside its data, for
    // the role asked, for 15 minutes; a role that does not exist is 400.
    let (status, issued) =
        control.call("POST", "/operator-tokens", Some(&tokens["finance"]), Some(json!({"role": "finance"}))).await;
    assert_eq!(status, 201, "{issued}");
    let key_file = dir.path().join("control").join(contracts::operators::KEY_FILE);
    let key: contracts::operators::OperatorKey = serde_json::from_slice(&std::fs::read(&key_file).unwrap()).unwrap();
    let now = chrono::Utc::now().timestamp();
    let claims = contracts::operators::verify(issued["token"].as_str().unwrap(), now, &[key]).unwrap();
    assert_eq!(claims.role, contracts::operators::Role::Finance);
    assert_eq!((claims.jti.as_str(), issued["expiresIn"].as_i64()), (issued["tokenId"].as_str().unwrap(), Some(900)));
    let (status, error) = control.call("POST", "/operator-tokens", Some(ADMIN), Some(json!({"role": "root"}))).await;
    assert_eq!((status, error["code"].as_str()), (400, Some("INVALID_REQUEST")), "{error}");
    // A country code is not a jurisdiction; the one that differs is named.
    let (status, error) = control.call("GET", "/exports/GB", Some(ADMIN), None).await;
    assert_eq!((status, error["code"].as_str()), (404, Some("JURISDICTION_NOT_FOUND")));
    assert!(error["message"].as_str().unwrap().contains("Great Britain's jurisdiction is UK"), "{error}");
    // Revoked tokens stop working.
    let (_, list) = control.call("GET", "/tokens", Some(ADMIN), None).await;
    let ops = list.as_array().unwrap().iter().find(|t| t["name"] == "ops").unwrap()["id"].as_str().unwrap().to_owned();
    assert_eq!(control.call("DELETE", &format!("/tokens/{ops}"), Some(ADMIN), None).await.0, 204);
    assert_eq!(control.call("GET", "/cells", Some(&tokens["ops"]), None).await.0, 401);
    // Public routes.
    for path in ["/healthz", "/readyz", "/metrics", "/openapi.json"] {
        assert_eq!(control.call("GET", path, None, None).await.0, 200, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regulatory_locks_refuse_changes_and_bad_input_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let tls = certs(dir.path());
    let control = Control::start(&dir.path().join("control"), &tls);
    let (status, refused) = control
        .call("PUT", "/flags/autoplay", Some(ADMIN), Some(boolean_flag("on", json!([]), "autoplay for all")))
        .await;
    assert_eq!((status, refused["code"].as_str()), (409, Some("REGULATORY_LOCK")), "{refused}");
    let message = refused["message"].as_str().unwrap();
    assert!(message.contains("UKGC-RTS14-AUTOPLAY") && message.contains("uk"), "{message}");
    // A targeting rule for VIPs is not enough: it could still reach UK VIPs.
    let vip = json!([{"id": "vip", "clauses": [{"attribute": "vipTier", "op": "in", "values": ["gold"]}], "serve": {"variant": "on"}}]);
    let (status, _) =
        control.call("PUT", "/flags/autoplay", Some(ADMIN), Some(boolean_flag("off", vip, "vip autoplay"))).await;
    assert_eq!(status, 409);
    // Off in the UK first, on elsewhere: allowed.
    let uk_off = json!([{"id": "uk-off", "clauses": [{"attribute": "region", "op": "in", "values": ["uk"]}], "serve": {"variant": "off"}}]);
    let (status, flag) = control
        .call("PUT", "/flags/autoplay", Some(ADMIN), Some(boolean_flag("on", uk_off, "autoplay outside the UK")))
        .await;
    assert_eq!(status, 200, "{flag}");
    // Version 1 is the operator-token key global-control publishes at its first start.
    assert_eq!(flag["version"], 2, "refusals wrote nothing");
    let (_, uk) = control
        .call("POST", "/flags/autoplay/evaluate", Some(ADMIN), Some(json!({"region": "uk", "playerId": "p"})))
        .await;
    let (_, mt) = control
        .call("POST", "/flags/autoplay/evaluate", Some(ADMIN), Some(json!({"region": "mt", "playerId": "p"})))
        .await;
    assert_eq!((uk["value"].clone(), mt["value"].clone()), (json!(false), json!(true)), "{uk} {mt}");
    // Bad input: 400 with a code, nothing written.
    for (body, code) in [
        (json!({"definition": {}, "reason": "x"}), "INVALID_REQUEST"),
        (boolean_flag("maybe", json!([]), "x"), "INVALID_REQUEST"),
        (boolean_flag("on", json!([]), " "), "INVALID_REQUEST"),
    ] {
        let (status, error) = control.call("PUT", "/flags/other", Some(ADMIN), Some(body)).await;
        assert_eq!((status, error["code"].as_str()), (400, Some(code)), "{error}");
    }
    let (status, error) =
        control.call("PUT", "/flags/Bad_Key", Some(ADMIN), Some(boolean_flag("on", json!([]), "x"))).await;
    assert_eq!((status, error["code"].as_str()), (400, Some("INVALID_REQUEST")), "{error}");
    // A DELETE without its body is told what it lacks.
    let (status, error) = control.call("DELETE", "/flags/autoplay", Some(ADMIN), None).await;
    assert_eq!((status, error["code"].as_str()), (400, Some("MALFORMED_JSON")), "{error}");
    assert!(error["message"].as_str().unwrap().contains("\"reason\""), "{error}");
    let (_, changes) = control.call("GET", "/changes", Some(ADMIN), None).await;
    assert_eq!(changes["records"].as_array().unwrap().len(), 2, "the operator key and the flag: {changes}");
    // Catalog: only where certified; provider must exist.
    let game = |available: &str| json!({"game": {"id": "pragmatic:sweet-bonanza", "providerId": "pragmatic", "name": "Sweet Bonanza", "type": "slots", "rtp": "96.48", "certifiedJurisdictions": ["UK", "MT"], "availableJurisdictions": [available]}, "reason": "launch"});
    let (status, e) =
        control.call("PUT", "/catalog/games/pragmatic:sweet-bonanza", Some(ADMIN), Some(game("UK"))).await;
    assert_eq!((status, e["code"].as_str()), (422, Some("UNKNOWN_PROVIDER")));
    control
        .call(
            "PUT",
            "/catalog/providers/pragmatic",
            Some(ADMIN),
            Some(json!({"provider": {"id": "pragmatic", "name": "Pragmatic Play"}, "reason": "onboard"})),
        )
        .await;
    let (status, _) =
        control.call("PUT", "/catalog/games/pragmatic:sweet-bonanza", Some(ADMIN), Some(game("DK"))).await;
    assert_eq!(status, 400, "not certified in DK");
    let (status, _) =
        control.call("PUT", "/catalog/games/pragmatic:sweet-bonanza", Some(ADMIN), Some(game("UK"))).await;
    assert_eq!(status, 200);
    let (_, uk_games) = control.call("GET", "/catalog/games?jurisdiction=UK", Some(ADMIN), None).await;
    let (_, mt_games) = control.call("GET", "/catalog/games?jurisdiction=MT", Some(ADMIN), None).await;
    assert_eq!((uk_games.as_array().unwrap().len(), mt_games.as_array().unwrap().len()), (1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_frames_close_the_stream_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let tls = certs(dir.path());
    let control = Control::start(&dir.path().join("control"), &tls);
    control.call("PUT", "/flags/a", Some(ADMIN), Some(boolean_flag("on", json!([]), "a"))).await;
    let quic = replication::tls::quic_client_config(&tls, "uk", "control", quick_timeouts()).unwrap();
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(quic);
    let garbage: Vec<Vec<u8>> = vec![
        [&5u32.to_be_bytes()[..], b"\xc1\xc1\xc1\xc1\xc1"].concat(), // 5 bytes that are not MessagePack
        u32::MAX.to_be_bytes().to_vec(),                             // a 4 GiB frame announced
    ];
    for bytes in garbage {
        let conn = endpoint.connect(control.quic, "control").unwrap().await.unwrap();
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        let hello = replication::sync::wire::encode(&replication::sync::wire::Message::Hello {
            cell: "uk".into(),
            applied_version: 0,
            applied_digest: None,
        })
        .unwrap();
        send.write_all(&hello).await.unwrap();
        // The snapshot arrives; then the client sends garbage.
        let first = replication::sync::wire::read_frame(&mut recv).await.unwrap();
        assert!(matches!(first, replication::sync::wire::Message::Snapshot { .. }), "{first:?}");
        send.write_all(&bytes).await.unwrap();
        let closed = tokio::time::timeout(Duration::from_secs(5), conn.closed()).await.expect("the server closes");
        assert!(closed.to_string().contains("FRAME_"), "{closed}");
    }
    // Nothing changed, and an honest subscriber still syncs.
    let (_, changes) = control.call("GET", "/changes", Some(ADMIN), None).await;
    assert_eq!(changes["records"].as_array().unwrap().len(), 2, "the operator key and the flag");
    let sub = Subscriber::start(&tls, "uk", "uk", control.quic, dir.path().join("uk.json"));
    sub.converged(1, CONVERGE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_beneath_the_routes_are_json_too() {
    let dir = tempfile::tempdir().unwrap();
    let tls = certs(dir.path());
    let control = Control::start(&dir.path().join("control"), &tls);
    let admin = format!("Authorization: Bearer {ADMIN}\r\n");
    let probed = chaos::probes::refusals_beneath_routes_are_json(
        control.http,
        Some(("PATCH", "/flags")),
        "/flags/autoplay/evaluate",
        &admin,
    )
    .await;
    assert_eq!(probed, Ok(()));
    // A repeated key is refused, not resolved one way or the other.
    let body = r#"{"definition":{},"reason":"a","reason":"b"}"#;
    let request = format!(
        "PUT /flags/probe HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let answer = chaos::probes::exchange(control.http, request.as_bytes()).await.unwrap();
    assert_eq!((answer.status, answer.json["code"].as_str()), (400, Some("MALFORMED_JSON")), "{}", answer.raw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_tokens_from_one_address_are_throttled() {
    let dir = tempfile::tempdir().unwrap();
    let tls = certs(dir.path());
    let control = Control::start(&dir.path().join("control"), &tls);
    let mut answers = Vec::new();
    for i in 0..global_control::api::TOKEN_FAILURES_MAX + 5 {
        let (status, error) = control.call("GET", "/flags", Some(&format!("gct_guess_{i}")), None).await;
        answers.push((status, error["code"].as_str().unwrap_or_default().to_owned()));
    }
    let unauthenticated = answers.iter().filter(|(s, c)| *s == 401 && c == "UNAUTHENTICATED").count();
    assert_eq!(unauthenticated, global_control::api::TOKEN_FAILURES_MAX, "{answers:?}");
    assert!(answers.iter().skip(unauthenticated).all(|(s, c)| *s == 429 && c == "AUTH_THROTTLED"), "{answers:?}");
    // Until the window passes, the address is refused whatever it presents.
    let (status, _) = control.call("GET", "/flags", Some(ADMIN), None).await;
    assert_eq!(status, 429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_dripping_connections_do_not_stop_a_normal_client() {
    let dir = tempfile::tempdir().unwrap();
    let tls = certs(dir.path());
    let control = Control::start(&dir.path().join("control"), &tls);
    let slowest = chaos::probes::served_beside_idle_and_dripping(control.http, "/healthz").await.unwrap();
    println!("global-control: slowest of 10 requests beside 2,000 idle and 200 dripping connections: {slowest:?}");
}

/// The control plane as the arbiter of who writes: a first writer is confirmed; another store at
/// its epoch is refused; a promotion (a higher epoch) is confirmed as raised, and the deposed
/// epoch is refused from then on, across a restart of the control plane; a cell may ask only for
/// itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_are_confirmed_for_the_recorded_writer_only_across_a_restart() {
    use replication::sync::{ask_lease, ClientConfig, LeaseAnswer};
    let dir = tempfile::tempdir().unwrap();
    let tls = certs(dir.path());
    let mut control = Control::start(&dir.path().join("control"), &tls);
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let server = control.quic;
    let as_cell = |cell: &str, cert: &str| {
        let quic = replication::tls::quic_client_config(&tls, cert, "control", quick_timeouts()).unwrap();
        ClientConfig::new(cell, server, quic)
    };
    let uk = as_cell("uk", "uk");
    let ask = |epoch: u64, writer: &'static str| {
        let (endpoint, uk) = (endpoint.clone(), uk.clone());
        async move { ask_lease(&endpoint, &uk, epoch, writer).await.unwrap() }
    };
    let refused = |answer: LeaseAnswer| match answer {
        LeaseAnswer::Refused { code, epoch, .. } => (code, epoch),
        granted => panic!("expected a refusal: {granted:?}"),
    };
    assert_eq!(ask(1, "primary").await, LeaseAnswer::Granted { raised: false });
    assert_eq!(refused(ask(1, "standby").await), ("DOUBLE_PRIMARY".to_owned(), 1));
    assert_eq!(ask(2, "standby").await, LeaseAnswer::Granted { raised: true });
    assert_eq!(refused(ask(1, "primary").await), ("SUPERSEDED".to_owned(), 2));
    control.restart();
    let mut again = ask_lease(&endpoint, &uk, 1, "primary").await;
    for _ in 0..100 {
        if again.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        again = ask_lease(&endpoint, &uk, 1, "primary").await;
    }
    assert_eq!(refused(again.unwrap()), ("SUPERSEDED".to_owned(), 2), "remembered across a restart");
    assert_eq!(ask(2, "standby").await, LeaseAnswer::Granted { raised: false });
    // A cell's certificate asks for that cell only.
    let posing = as_cell("es", "uk");
    let answer = ask_lease(&endpoint, &posing, 9, "x").await.unwrap();
    assert!(matches!(answer, LeaseAnswer::Refused { epoch: 0, .. }), "{answer:?}");
}
