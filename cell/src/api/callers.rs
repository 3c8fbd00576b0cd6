//! Who may call what: a certificate is an identity, not a pass. Over mutual TLS every client holds
//! a certificate from the platform CA, and the name it carries decides which routes it reaches:
//!
//! | caller (certificate name)        | reaches                                                   |
//! |----------------------------------|-----------------------------------------------------------|
//! | `router`                         | player routes, and the open ones                         |
//! | another cell (`mt`, `dk`, ...)   | the open routes only: nothing that moves money           |
//! | `control`, `drill`, `ops`        | everything (until operator tokens, issue #22)            |
//! | any other name (a game provider) | game provider calls (HMAC-signed besides), and the open ones |
//!
//! Open routes are health, readiness, metrics, the API description and the session key. A cell
//! served in the clear (local development) has no callers to tell apart and refuses nothing here.

use super::{ApiError, AppState};
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use contracts::CellCode;
use replication::http::PeerCertificate;
use std::sync::Arc;

/// Certificate names with the back office's reach.
const OPERATOR_NAMES: [&str; 3] = ["control", "drill", "ops"];
/// Every name a caller is told apart by, in the order they are tried: the router's, the
/// operators', the cells'.
const KNOWN_NAMES: [&str; 9] = ["router", "control", "drill", "ops", "uk", "mt", "dk", "se", "es"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Router,
    /// Another cell (or this one's own name, which no other process holds).
    Cell(String),
    Operator(&'static str),
    /// A certificate from the CA with none of the platform's names: a game provider.
    Other,
}

/// What a route is, as authorisation sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteClass {
    Open,
    Player,
    Provider,
    /// Everything else: money moved by the back office, operations, audit, events.
    BackOffice,
}

/// Who the certificate says the caller is (the certificate is parsed once per request).
pub fn identify(certificate: &PeerCertificate) -> Caller {
    match certificate.first_name_of(&KNOWN_NAMES) {
        Some("router") => Caller::Router,
        Some(name) if OPERATOR_NAMES.contains(&name) => Caller::Operator(name),
        Some(cell) => Caller::Cell(cell.to_owned()),
        None => Caller::Other,
    }
}

pub fn classify(method: &Method, path: &str) -> RouteClass {
    // Up to four segments without collecting them (this runs for every request); a fourth means
    // the path is longer than any route named below.
    let mut parts = path.trim_start_matches('/').split('/');
    let segments = [parts.next(), parts.next(), parts.next(), parts.next()];
    match (method, segments) {
        (_, [Some("healthz" | "readyz" | "metrics" | "openapi.json"), None, None, None])
        | (&Method::GET, [Some("sessions"), Some("key"), None, None]) => RouteClass::Open,
        (&Method::POST, [Some("players"), None, None, None])
        | (&Method::POST | &Method::DELETE, [Some("sessions"), None, None, None])
        | (&Method::POST, [Some("sessions"), Some("refresh"), None, None])
        | (&Method::POST, [Some("players"), Some(_), Some("totp"), None])
        | (&Method::GET, [Some("wallet"), Some(_), Some("balance"), None])
        | (&Method::GET, [Some("lobby"), None, None, None] | [Some("flags"), Some("evaluate"), None, None]) => {
            RouteClass::Player
        }
        (&Method::POST, [Some("gaming"), Some(_), Some(_), None]) => RouteClass::Provider,
        _ => RouteClass::BackOffice,
    }
}

pub fn allowed(caller: &Caller, route: RouteClass) -> bool {
    matches!(
        (caller, route),
        (_, RouteClass::Open)
            | (Caller::Operator(_), _)
            | (Caller::Router, RouteClass::Player)
            | (Caller::Other, RouteClass::Provider)
    )
}

/// Refuses, 403 `FORBIDDEN`, a route the calling certificate may not reach.
pub async fn authorise(State(s): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let Some(certificate) = request.extensions().get::<PeerCertificate>() else {
        return next.run(request).await;
    };
    let caller = identify(certificate);
    let route = classify(request.method(), request.uri().path());
    if allowed(&caller, route) {
        return next.run(request).await;
    }
    tracing::warn!(?caller, method = %request.method(), path = request.uri().path(), cell = %s.cell, "a certificate tried a route it may not reach");
    let what = match &caller {
        Caller::Router => "the router's certificate reaches player routes only".to_owned(),
        Caller::Cell(cell) => {
            format!("cell {cell}'s certificate reaches no route of another cell that moves money or runs it")
        }
        Caller::Other => "this certificate reaches game provider calls only".to_owned(),
        Caller::Operator(_) => unreachable!("operators reach every route"),
    };
    ApiError::new(StatusCode::FORBIDDEN, CellCode::Forbidden, what).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_known_cell_names_are_the_jurisdictions() {
        let cells: Vec<String> = contracts::Jurisdiction::ALL.iter().map(|j| j.to_string().to_lowercase()).collect();
        assert_eq!(KNOWN_NAMES[4..].iter().map(|n| n.to_string()).collect::<Vec<_>>(), cells);
    }

    #[test]
    fn routes_fall_in_their_class_and_each_caller_reaches_its_own() {
        assert_eq!(classify(&Method::GET, "/wallet/uk-1/balance"), RouteClass::Player);
        assert_eq!(classify(&Method::POST, "/wallet/credit"), RouteClass::BackOffice);
        assert_eq!(classify(&Method::GET, "/ops/players/uk-1/balance"), RouteClass::BackOffice);
        assert_eq!(classify(&Method::POST, "/gaming/demo/bet"), RouteClass::Provider);
        assert_eq!(classify(&Method::GET, "/readyz"), RouteClass::Open);
        assert!(allowed(&Caller::Router, RouteClass::Player) && !allowed(&Caller::Router, RouteClass::BackOffice));
        assert!(!allowed(&Caller::Cell("dk".into()), RouteClass::BackOffice));
        assert!(!allowed(&Caller::Cell("dk".into()), RouteClass::Provider));
        assert!(allowed(&Caller::Operator("drill"), RouteClass::BackOffice));
        assert!(allowed(&Caller::Other, RouteClass::Provider) && !allowed(&Caller::Other, RouteClass::Player));
    }
}
