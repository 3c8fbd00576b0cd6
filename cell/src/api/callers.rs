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
use contracts::{CellCode, Jurisdiction};
use replication::http::PeerCertificate;
use std::sync::Arc;

/// Certificate names with the back office's reach.
const OPERATOR_NAMES: [&str; 3] = ["control", "drill", "ops"];

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

pub fn identify(certificate: &PeerCertificate) -> Caller {
    if certificate.names("router") {
        return Caller::Router;
    }
    if let Some(name) = OPERATOR_NAMES.into_iter().find(|name| certificate.names(name)) {
        return Caller::Operator(name);
    }
    Jurisdiction::ALL
        .iter()
        .map(|j| j.to_string().to_lowercase())
        .find(|cell| certificate.names(cell))
        .map_or(Caller::Other, Caller::Cell)
}

pub fn classify(method: &Method, path: &str) -> RouteClass {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method, segments.as_slice()) {
        (_, ["healthz" | "readyz" | "metrics" | "openapi.json"]) | (&Method::GET, ["sessions", "key"]) => {
            RouteClass::Open
        }
        (&Method::POST, ["players"])
        | (&Method::POST | &Method::DELETE, ["sessions"])
        | (&Method::POST, ["sessions", "refresh"])
        | (&Method::POST, ["players", _, "totp"])
        | (&Method::GET, ["wallet", _, "balance"])
        | (&Method::GET, ["lobby"] | ["flags", "evaluate"]) => RouteClass::Player,
        (&Method::POST, ["gaming", _, _]) => RouteClass::Provider,
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
