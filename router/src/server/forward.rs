//! A request's trip to its cell and back: hop-by-hop headers dropped, the client's country and
//! trace context added, the answer read in full (bounded) and passed on.

use super::*;
use contracts::RouterCode;

/// Hop-by-hop headers (RFC 9110 section 7.6.1), never forwarded.
pub(super) const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// The request's trace context: the caller's `traceparent` when well-formed, else a new one.
pub(super) fn traceparent(headers: &HeaderMap) -> HeaderValue {
    // Built in one buffer, without `format!` or hex strings: this runs for every request.
    let mut span = [0u8; 16];
    hex::encode_to_slice(rand::random::<[u8; 8]>(), &mut span).expect("16 hex digits for 8 bytes");
    let span = std::str::from_utf8(&span).expect("hex is ASCII");
    let mut value = String::with_capacity(64);
    let caller = headers.get(&TRACEPARENT).and_then(|v| v.to_str().ok()).and_then(|v| {
        let mut parts = v.split('-');
        match (parts.next(), parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(_version), Some(trace), Some(parent), Some(flags), None)
                if trace.len() == 32
                    && parent.len() == 16
                    && trace.bytes().chain(parent.bytes()).all(|b| b.is_ascii_hexdigit())
                    && trace.bytes().any(|b| b != b'0') =>
            {
                Some((trace, flags))
            }
            _ => None,
        }
    });
    match caller {
        // Same trace, a new span for this hop.
        Some((trace, flags)) => {
            for part in ["00-", trace, "-", span, "-", flags] {
                value.push_str(part);
            }
        }
        None => {
            let mut trace = [0u8; 32];
            hex::encode_to_slice(rand::random::<[u8; 16]>(), &mut trace).expect("32 hex digits for 16 bytes");
            let trace = std::str::from_utf8(&trace).expect("hex is ASCII");
            for part in ["00-", trace, "-", span, "-01"] {
                value.push_str(part);
            }
        }
    }
    // The caller's parts came from a valid header value and the rest is hex.
    HeaderValue::from_maybe_shared(bytes::Bytes::from(value)).expect("a header value's parts and hex")
}

/// The `X-Forwarded-For` lines joined into one list (borrowed when there is one line).
fn forwarded_for(headers: &axum::http::HeaderMap) -> Option<std::borrow::Cow<'_, str>> {
    let mut lines = headers.get_all(&X_FORWARDED_FOR).iter();
    let first = lines.next()?.to_str().ok()?;
    let rest: Vec<&str> = lines.filter_map(|v| v.to_str().ok()).collect();
    if rest.is_empty() {
        return Some(std::borrow::Cow::Borrowed(first));
    }
    Some(std::borrow::Cow::Owned(std::iter::once(first).chain(rest).collect::<Vec<_>>().join(", ")))
}

/// A request as a client sent it.
pub(super) type Request = hyper::Request<Incoming>;

pub(super) async fn forward(s: &AppState, peer: SocketAddr, request: Request) -> Response {
    let (mut parts, body) = request.into_parts();
    if !is_public(&parts.method, parts.uri.path()) {
        return refuse(s, StatusCode::NOT_FOUND, RouterCode::NotFound, "no such route".into(), serde_json::Value::Null);
    }
    // Every `X-Forwarded-For` line counts (RFC 9110 5.3: lines of a list header join with
    // commas); reading the first only would let a client choose its address with a second line.
    let forwarded_for = forwarded_for(&parts.headers);
    let forwarded_for = forwarded_for.as_deref();
    let ip = client_ip(peer.ip(), forwarded_for, &s.trusted);
    if let Err(refusal) = rate_limit(s, &s.per_client, &ip) {
        return refusal;
    }
    let country = s.geo.country(ip);
    let body = match http_body_util::Limited::new(body, REQUEST_BODY_BYTES_MAX).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            let message = format!("request body is over {REQUEST_BODY_BYTES_MAX} bytes");
            return refuse(
                s,
                StatusCode::PAYLOAD_TOO_LARGE,
                RouterCode::BodyTooLarge,
                message,
                serde_json::Value::Null,
            );
        }
        // The client stopped sending, or sent a malformed chunked body.
        Err(e) => {
            let message = format!("request body unreadable: {e}");
            return refuse(s, StatusCode::BAD_REQUEST, RouterCode::BodyUnreadable, message, serde_json::Value::Null);
        }
    };
    let route = match choose_cell(s, &parts, &body, country, ip) {
        Ok(route) => route,
        Err(refusal) => return refusal,
    };
    let Some((endpoint, role)) = route.pick() else {
        let message = format!("no healthy cell for jurisdiction `{}`; retry shortly", route.cell_id);
        let refusal = refuse(
            s,
            StatusCode::SERVICE_UNAVAILABLE,
            RouterCode::CellUnavailable,
            message,
            serde_json::json!({ "cell": route.cell_id }),
        );
        return retry_after(refusal, 1);
    };
    // Origin form (path and query): the connection already goes to the endpoint, which gets its
    // own Host header from `Upstream`.
    let Some(path) = parts.uri.path_and_query().cloned() else {
        return refuse(
            s,
            StatusCode::BAD_REQUEST,
            RouterCode::BadPath,
            "the request path cannot be forwarded".into(),
            serde_json::Value::Null,
        );
    };
    let trace = traceparent(&parts.headers);
    let chain = match forwarded_for {
        Some(previous) if s.trusted.iter().any(|n| n.contains(&peer.ip())) => format!("{previous}, {}", peer.ip()),
        _ => peer.ip().to_string(),
    };
    let chain = HeaderValue::from_str(&chain);
    // The client's headers move to the cell's request rather than being copied, less those that
    // are the router's to say.
    let mut headers = std::mem::take(&mut parts.headers);
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    headers.remove(header::HOST);
    headers.remove(&X_CLIENT_COUNTRY); // only the router says where a client is
    headers.insert(X_CLIENT_IP.clone(), HeaderValue::from_str(&ip.to_string()).expect("an address is a header value"));
    headers.remove(&X_FORWARDED_FOR);
    if let Ok(v) = chain {
        headers.insert(X_FORWARDED_FOR.clone(), v);
    }
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("http"));
    // `ZZ` (no country) when the location is unknown: the home cell then refuses what the
    // location gates, fail closed.
    let country_code = HeaderValue::from_str(country.as_ref().map_or(UNKNOWN_COUNTRY, |c| c.as_str()));
    headers.insert(X_CLIENT_COUNTRY.clone(), country_code.expect("two ASCII letters"));
    headers.insert(TRACEPARENT.clone(), trace);
    let mut upstream = hyper::Request::new(http_body_util::Full::new(body));
    *upstream.method_mut() = parts.method;
    *upstream.uri_mut() = hyper::Uri::from(path);
    *upstream.headers_mut() = headers;
    let started = Instant::now();
    let answered =
        tokio::time::timeout(CELL_TIMEOUT, endpoint.upstream.request(upstream, RESPONSE_BODY_BYTES_MAX)).await;
    if let Some(histogram) = s.cell_seconds.get(route.cell_id.as_str()) {
        histogram.observe(started.elapsed().as_secs_f64());
    }
    let answer = match answered {
        Ok(Ok(answer)) => answer,
        Ok(Err(e)) if e.is_answer_invalid() => {
            tracing::warn!(cell = %route.cell_id, error = %error_chain(&e), "cell answer unreadable or too large");
            return refuse(
                s,
                StatusCode::BAD_GATEWAY,
                RouterCode::CellAnswerInvalid,
                format!("cell `{}` sent an answer the router cannot pass on", route.cell_id),
                serde_json::Value::Null,
            );
        }
        Ok(Err(e)) => {
            tracing::warn!(cell = %route.cell_id, endpoint = %endpoint.url, error = %error_chain(&e), "cell unreachable");
            let message = format!("cell `{}` did not answer; retry shortly", route.cell_id);
            let refusal = refuse(
                s,
                StatusCode::BAD_GATEWAY,
                RouterCode::CellUnreachable,
                message,
                serde_json::json!({ "cell": route.cell_id }),
            );
            return retry_after(refusal, 1);
        }
        Err(_) => {
            let message = format!("cell `{}` took longer than {CELL_TIMEOUT:?}", route.cell_id);
            return refuse(
                s,
                StatusCode::GATEWAY_TIMEOUT,
                RouterCode::CellTimeout,
                message,
                serde_json::json!({ "cell": route.cell_id }),
            );
        }
    };
    let mut head = answer.head;
    s.metrics
        .forwarded
        .get_or_create(&ForwardLabels { cell: route.cell_id.clone(), role: role.name(), status: head.status.as_u16() })
        .inc();
    for name in HOP_BY_HOP {
        head.headers.remove(name);
    }
    if !head.headers.contains_key(&X_CELL) {
        if let Ok(v) = HeaderValue::from_str(&route.cell_id) {
            head.headers.insert(X_CELL.clone(), v);
        }
    }
    // Cells answer small JSON, read in full (bounded) by `Upstream`: the answer goes out in one
    // write with the Content-Length of what was read.
    head.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(head, Body::from(answer.body))
}
