//! Which requests pass and to which cell: the public routes, rate limits, the choice of cell
//! (session, login, country), and the router's own refusals (`{code, message}`, `X-Cell: router`).

use super::*;
use contracts::RouterCode;

/// A refusal the router makes itself: `{code, message}` (plus context fields), `X-Cell: router`.
pub(super) fn refuse(
    state: &AppState,
    status: StatusCode,
    code: RouterCode,
    message: String,
    extra: serde_json::Value,
) -> Response {
    state.metrics.refused.get_or_create(&RefusalLabels { code: code.as_str() }).inc();
    let mut body = serde_json::json!({ "code": code, "message": message });
    if let (Some(body), serde_json::Value::Object(extra)) = (body.as_object_mut(), extra) {
        body.extend(extra);
    }
    let mut response = (status, axum::Json(body)).into_response();
    response.headers_mut().insert(X_CELL.clone(), HeaderValue::from_static("router"));
    response
}

/// Player-facing routes: the only ones reachable through the router. Internal and operator
/// routes of a cell (`/wallet/credit`, `/events`, `/metrics`...) are not.
pub(super) fn is_public(method: &Method, path: &str) -> bool {
    // Up to five segments without collecting them (this runs for every request); a fifth means
    // the path is longer than any public route.
    let mut segments = path.trim_start_matches('/').split('/');
    let segments = [segments.next(), segments.next(), segments.next(), segments.next(), segments.next()];
    matches!(
        (method, segments),
        (&Method::POST, [Some("players"), None, None, None, None])
            | (&Method::POST | &Method::DELETE, [Some("sessions"), None, None, None, None])
            | (&Method::POST, [Some("sessions"), Some("refresh"), None, None, None])
            | (&Method::POST, [Some("players"), Some(_), Some("totp" | "timeout" | "self-exclusion"), None, None])
            | (&Method::GET | &Method::PUT, [Some("players"), Some(_), Some("limits"), None, None])
            | (&Method::GET, [Some("players"), Some(_), Some("kyc" | "session"), None, None])
            | (&Method::PUT, [Some("players"), Some(_), Some("session-limits"), None, None])
            | (&Method::POST, [Some("players"), Some(_), Some("reality-check"), None, None])
            | (&Method::POST, [Some("cashier"), Some("deposits" | "withdrawals"), None, None, None])
            | (&Method::POST, [Some("cashier"), Some("withdrawals"), Some(_), Some("cancel"), None])
            | (&Method::GET, [Some("cashier"), Some("payments"), Some(_), None, None])
            | (&Method::GET, [Some("cashier"), Some("players"), Some(_), Some("transactions"), None])
            | (&Method::GET, [Some("wallet"), Some(_), Some("balance"), None, None])
            | (&Method::GET, [Some("lobby"), None, None, None, None])
            | (&Method::GET, [Some("flags"), Some("evaluate"), None, None, None])
    )
}

/// Adds `Retry-After` (whole seconds, at least 1) to a refusal the client may retry.
pub(super) fn retry_after(mut response: Response, seconds: u64) -> Response {
    if let Ok(v) = HeaderValue::from_str(&seconds.max(1).to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, v);
    }
    response
}

/// Admits one request for `key`, or answers 429 with `Retry-After` in whole seconds.
#[allow(clippy::result_large_err)]
pub(super) fn rate_limit<K: Clone + std::hash::Hash + Eq>(
    s: &AppState,
    limiter: &Limiter<K>,
    key: &K,
) -> Result<(), Response> {
    use governor::clock::Clock;
    match limiter.check_key(key) {
        Ok(()) => Ok(()),
        Err(not_until) => {
            let wait = not_until.wait_time_from(governor::clock::DefaultClock::default().now());
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            let message = format!("too many requests; retry in {seconds} s");
            Err(retry_after(
                refuse(s, StatusCode::TOO_MANY_REQUESTS, RouterCode::RateLimited, message, serde_json::Value::Null),
                seconds,
            ))
        }
    }
}

/// What `X-Client-Country` says when no country is known (ISO 3166 user-assigned, never licensed).
pub(super) const UNKNOWN_COUNTRY: &str = "ZZ";

/// Which cell a request goes to:
/// - registration, the lobby and flags: the cell licensed for the client's country, whatever
///   token the client holds (a session is no licence for where the client is);
/// - with a session token, the player's home cell, always (401 when the token does not verify);
/// - a login (`POST /sessions`), the home cell named by the player id, from anywhere; a refresh
///   (`POST /sessions/refresh`), the home cell its refresh token names;
/// - otherwise the cell licensed for the client's country (451 when none, or unknown).
#[allow(clippy::result_large_err)]
pub(super) fn choose_cell<'a>(
    s: &'a AppState,
    parts: &axum::http::request::Parts,
    body: &[u8],
    country: Option<contracts::CountryCode>,
    ip: std::net::IpAddr,
) -> Result<&'a cells::CellRoute, Response> {
    let placed_by_location = matches!(
        (&parts.method, parts.uri.path()),
        (&Method::POST, "/players") | (&Method::GET, "/lobby") | (&Method::GET, "/flags/evaluate")
    );
    let bearer = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .filter(|_| !placed_by_location);
    if let Some(token) = bearer {
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
        return match s.keys.verify(token.trim(), now) {
            Ok(claims) => {
                rate_limit(s, &s.per_player, &claims.sub.to_string())?;
                s.cells.by_id(&claims.cell).ok_or_else(|| {
                    refuse(
                        s,
                        StatusCode::UNAUTHORIZED,
                        RouterCode::InvalidSession,
                        "the session names no known cell".into(),
                        serde_json::Value::Null,
                    )
                })
            }
            Err(why) => Err(refuse(
                s,
                StatusCode::UNAUTHORIZED,
                RouterCode::InvalidSession,
                format!("session token refused: {why}"),
                serde_json::Value::Null,
            )),
        };
    }
    let login = parts.uri.path() == "/sessions";
    if parts.method == axum::http::Method::POST && (login || parts.uri.path() == "/sessions/refresh") {
        // Strict, as the cell reads it: a repeated key cannot route one way and log in another.
        let value = contracts::json::parse_strict(body).map_err(|e| {
            let message = format!("request body is not JSON: {e}");
            refuse(s, StatusCode::BAD_REQUEST, RouterCode::MalformedJson, message, serde_json::Value::Null)
        })?;
        let home_cell: Option<String> = if login {
            serde_json::from_value::<contracts::sessions::SessionRequest>(value)
                .ok()
                .and_then(|r| r.player_id.home_cell().map(str::to_owned))
        } else {
            serde_json::from_value::<contracts::sessions::RefreshRequest>(value)
                .ok()
                .and_then(|r| r.refresh_token.split_once('.').map(|(cell, _)| cell.to_owned()))
        };
        return home_cell.as_deref().and_then(|cell| s.cells.by_id(cell)).ok_or_else(|| {
            let what = if login { "a login needs a playerId" } else { "a refresh needs a refreshToken" };
            refuse(
                s,
                StatusCode::BAD_REQUEST,
                RouterCode::InvalidRequest,
                format!("{what} whose prefix names a cell"),
                serde_json::Value::Null,
            )
        });
    }
    let Some(country) = country else {
        // A private or loopback address is most often a client behind a proxy (or a developer on
        // this machine): say how a client is placed.
        let behind_a_proxy = if crate::geo::is_public(ip) {
            ""
        } else {
            " (a private or loopback address: a proxy in front of the router places its client with \
             X-Forwarded-For, which the router trusts only from the addresses given with --trusted-proxy)"
        };
        let message = format!(
            "no country is known for address {ip}{behind_a_proxy}: service is refused where the location is unknown"
        );
        return Err(refuse(
            s,
            StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS,
            RouterCode::GeolocationUnknown,
            message,
            serde_json::Value::Null,
        ));
    };
    s.cells.for_country(country).ok_or_else(|| {
        let message = format!("the operator holds no licence covering {country}");
        refuse(
            s,
            StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS,
            RouterCode::JurisdictionNotLicensed,
            message,
            serde_json::json!({ "country": country }),
        )
    })
}
