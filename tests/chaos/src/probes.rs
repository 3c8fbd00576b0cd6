//! Probes of the HTTP layer beneath every route: what a server answers to a request it cannot
//! parse (bad framing, a head too large), a method a route does not take and a body too large.
//! Every such answer must be the `{code, message}` JSON every other refusal is, in each process.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Longest a probe waits for the server's answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// What a server answered: its status, and its body as JSON (`Null` if it was not JSON).
#[derive(Debug)]
pub struct Probed {
    pub status: u16,
    pub json: serde_json::Value,
    pub raw: String,
}

/// Sends `request` as is on a new connection and reads one answer (until the server closes the
/// connection or its announced body has arrived).
pub async fn exchange(address: SocketAddr, request: &[u8]) -> anyhow::Result<Probed> {
    let mut tcp = tokio::net::TcpStream::connect(address).await?;
    // The server may answer and close before it has read everything (a head too large): a
    // write error then is expected, and the answer is still there to read.
    let _ = tcp.write_all(request).await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(PROBE_TIMEOUT, async {
        let mut buf = [0u8; 16 * 1024];
        loop {
            let n = tcp.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                return;
            }
            answer.extend_from_slice(&buf[..n]);
            if complete(&answer) {
                return;
            }
        }
    });
    read.await.map_err(|_| anyhow::anyhow!("no whole answer within {PROBE_TIMEOUT:?}"))?;
    let raw = String::from_utf8_lossy(&answer).into_owned();
    let status =
        raw.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| anyhow::anyhow!("no status: {raw:?}"))?;
    let body = raw.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    let json = serde_json::from_str(body).unwrap_or(serde_json::Value::Null);
    Ok(Probed { status, json, raw })
}

/// Whether `answer` holds a whole head and the body its `content-length` announces.
fn complete(answer: &[u8]) -> bool {
    let text = String::from_utf8_lossy(answer);
    let Some((head, body)) = text.split_once("\r\n\r\n") else { return false };
    let length = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok());
    length.is_some_and(|n| body.len() >= n)
}

/// Checks that `address` answers with `{code, message}` JSON to a request it cannot parse (400),
/// to a head over its limit (431), to `method` on `path` when the route does not take it (405),
/// and to a body over its limit POSTed to `post_path` (413). `headers` (whole lines, each ending
/// in CRLF) go with the last two, such as a router's `X-Forwarded-For`. The problems found, if any.
pub async fn refusals_beneath_routes_are_json(
    address: SocketAddr,
    wrong_method: Option<(&str, &str)>,
    post_path: &str,
    headers: &str,
) -> Result<(), Vec<String>> {
    let big_header = "a".repeat(600 * 1024);
    let big_body = "a".repeat(1024 * 1024);
    let mut probes: Vec<(String, u16, Vec<u8>)> = vec![
        ("bad Content-Length".into(), 400, b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n".to_vec()),
        ("no request line".into(), 400, b"GARBAGE\r\n\r\n".to_vec()),
        (
            "a 600 kB header".into(),
            431,
            format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {big_header}\r\n\r\n").into_bytes(),
        ),
        (
            "a 1 MB body".into(),
            413,
            format!(
                "POST {post_path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Idempotency-Key: probe\r\n\
                 {headers}Content-Length: {}\r\n\r\n{big_body}",
                big_body.len()
            )
            .into_bytes(),
        ),
    ];
    if let Some((method, path)) = wrong_method {
        let request = format!("{method} {path} HTTP/1.1\r\nHost: x\r\n{headers}Content-Length: 0\r\n\r\n");
        probes.push((format!("{method} {path}"), 405, request.into_bytes()));
    }
    let mut problems = Vec::new();
    for (what, expected, request) in probes {
        match exchange(address, &request).await {
            Ok(p) if p.status == expected && p.json["code"].is_string() && p.json["message"].is_string() => {}
            Ok(p) => problems.push(format!("{what}: expected {expected} with {{code, message}}, got {:?}", p.raw)),
            Err(e) => problems.push(format!("{what}: {e}")),
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// Opens 2,000 idle connections to `address` and 200 that drip a request head a byte a second,
/// then sends ten plain `GET path` requests (each on a fresh connection, as a new client would):
/// the slowest one's time, or why a request was not answered within five seconds (a server that
/// waits behind the attackers would take until its head-read timeout, 90 s or more).
pub async fn served_beside_idle_and_dripping(address: SocketAddr, path: &str) -> anyhow::Result<Duration> {
    let mut idle = Vec::new();
    for _ in 0..2_000 {
        idle.push(tokio::net::TcpStream::connect(address).await?);
    }
    let mut drippers = tokio::task::JoinSet::new();
    for _ in 0..200 {
        drippers.spawn(async move {
            let Ok(mut stream) = tokio::net::TcpStream::connect(address).await else { return };
            for byte in b"GET /healthz HTTP/1.1\r\nhost: probe\r\nx-slow: ".iter().cycle() {
                if stream.write_all(&[*byte]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut slowest = Duration::ZERO;
    let request =
        format!("GET {path} HTTP/1.1\r\nhost: probe\r\nx-forwarded-for: 81.2.69.142\r\nconnection: close\r\n\r\n");
    for _ in 0..10 {
        let started = std::time::Instant::now();
        let answer = tokio::time::timeout(Duration::from_secs(5), exchange(address, request.as_bytes()))
            .await
            .map_err(|_| anyhow::anyhow!("no answer within 5 s beside the idle and dripping connections"))??;
        if answer.status >= 500 {
            anyhow::bail!("answered {} beside the idle and dripping connections", answer.status);
        }
        slowest = slowest.max(started.elapsed());
    }
    drippers.abort_all();
    drop(idle);
    Ok(slowest)
}
