//! Calls to outside parties (self-exclusion registers, the KYC vendor, PSPs) over plain HTTP/1.1:
//! in development, tests and drills the sandbox, in service a local egress proxy that holds the
//! TLS and the network route to each party.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};

/// `host:port` of an outside party's base URL given as `flag` (`http://HOST:PORT`: plain HTTP,
/// the sandbox or a local egress proxy).
pub fn authority(flag: &str, base: &str) -> Result<String, String> {
    base.strip_prefix("http://")
        .map(|rest| rest.trim_end_matches('/'))
        .filter(|a| !a.is_empty() && !a.contains('/'))
        .map(str::to_owned)
        .ok_or_else(|| format!("{flag} {base}: use http://HOST:PORT"))
}

/// One HTTP/1.1 exchange with an outside party at `authority`: status, headers and body.
pub async fn exchange(
    authority: &str,
    method: &str,
    path: &str,
    content_type: &str,
    body: String,
) -> Result<(u16, hyper::HeaderMap, Bytes), String> {
    let stream = tokio::net::TcpStream::connect(authority).await.map_err(|e| e.to_string())?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let request = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", authority)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let response = sender.send_request(request).await.map_err(|e| e.to_string())?;
    let (status, headers) = (response.status().as_u16(), response.headers().clone());
    let body = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok((status, headers, body))
}
