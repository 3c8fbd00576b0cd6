//! The sandbox as the cells see it: each register answers in its own shape, the seeded identity
//! is excluded everywhere, and injected faults take effect until cleared.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

/// One HTTP/1.1 exchange; the answer's head and body as text.
fn exchange(port: u16, method: &str, path: &str, content_type: &str, body: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nhost: sandbox\r\nconnection: close\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
}

#[test]
fn each_register_answers_in_its_shape_and_faults_take_effect() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sandbox"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data"])
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..500 {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let form = |last: &str| {
        format!(
            "firstName=Ann&lastName={last}&dateOfBirth=1990-04-01&email=a%40b.c&postcode=LS1+1AA&mobile=07700900123"
        )
    };
    let gamstop = |last: &str| exchange(port, "POST", "/gamstop/v2", "application/x-www-form-urlencoded", &form(last));
    assert!(gamstop("Excluded").to_lowercase().contains("x-exclusion: y"));
    assert!(gamstop("Previously").to_lowercase().contains("x-exclusion: p"));
    assert!(gamstop("Smith").to_lowercase().contains("x-exclusion: n"));
    let json = "application/json";
    assert!(exchange(port, "POST", "/rofus/v1/lookup", json, r#"{"cpr":"0101901234","familyName":"Excluded"}"#)
        .contains(r#""status":"Excluded""#));
    assert!(exchange(port, "POST", "/spelpaus/v1/is-blocked", json, r#"{"personalNumber":"199001011234"}"#)
        .contains(r#""isBlocked":false"#));
    // Someone excluded from now on, by number.
    assert!(exchange(port, "POST", "/admin/excluded", json, r#"{"number":"12345678Z"}"#).starts_with("HTTP/1.1 204"));
    assert!(exchange(port, "POST", "/rgiaj/v1/check", json, r#"{"documentNumber":"12345678Z"}"#)
        .contains(r#""registered":true"#));
    // A fault until cleared.
    assert!(
        exchange(port, "POST", "/admin/faults", json, r#"{"party":"rofus","status":503}"#).starts_with("HTTP/1.1 204")
    );
    assert!(exchange(port, "POST", "/rofus/v1/lookup", json, r#"{"cpr":"1"}"#).starts_with("HTTP/1.1 503"));
    assert!(exchange(port, "DELETE", "/admin/faults", json, "").starts_with("HTTP/1.1 204"));
    assert!(exchange(port, "POST", "/rofus/v1/lookup", json, r#"{"cpr":"1"}"#).starts_with("HTTP/1.1 200"));
    // Every call is logged.
    let log = std::fs::read_to_string(dir.path().join("requests.jsonl")).unwrap();
    assert!(log.lines().count() >= 7, "{log}");
    let _ = child.kill();
    let _ = child.wait();
}
