//! Who may call what. Two credentials, checked here for every request:
//!
//! - **A certificate is an identity, not a pass.** Over mutual TLS every client holds a certificate
//!   from the platform CA, and the name it carries decides which kinds of route it reaches: the
//!   router's, player routes; another cell's, the open routes only (nothing that moves money);
//!   an outside party's (a game provider, the KYC vendor), its calls; an operator tool's (`control`, `drill`, `ops`), the back office.
//! - **The back office needs an operator token besides**: a short-lived token global-control signs
//!   for one role (`POST /operator-tokens` there). [`ROUTES`] says which roles reach which route;
//!   `admin` reaches all of them. A cell served in the clear (local development) has no
//!   certificates to tell apart, but still needs the token.
//!
//! [`ROUTES`] is the one table: it is printed in the README (a test keeps the two equal) and a
//! route missing from it is the back office's, for `admin` only.

use super::{ApiError, AppState};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use contracts::operators::{OperatorRef, Role};
use contracts::CellCode;
use replication::http::PeerCertificate;
use std::sync::Arc;

/// Certificate names with the back office's reach (with an operator token).
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
    /// A certificate from the CA with none of the platform's names: a game provider, the KYC
    /// vendor.
    Other,
}

/// Who the back office lets in, besides `admin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    Role(Role),
    /// `regulator:<this cell's jurisdiction>`.
    ThisRegulator,
}

/// What a route is, as authorisation sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Health, readiness, metrics, the API description, the session key: anyone.
    Open,
    /// A player's own calls (each checks the player's session itself): through the router.
    Player,
    /// An outside party's calls: a game provider's, the KYC vendor's webhook (HMAC-signed besides).
    Provider,
    /// An operator tool's certificate and an operator token for one of these roles (or admin).
    BackOffice(&'static [Grant]),
    /// An operator tool's certificate alone: answered by a standby too, which holds no tokens'
    /// key (`/replication/digest`: hashes, no data).
    OperatorTool,
}

use Grant::ThisRegulator;
const FINANCE: Grant = Grant::Role(Role::Finance);
const COMPLIANCE: Grant = Grant::Role(Role::Compliance);
const OPS: Grant = Grant::Role(Role::Ops);

/// Every route of the cell, by method and pattern, with who reaches it.
pub const ROUTES: &[(&str, &str, Access)] = &[
    ("GET", "/healthz", Access::Open),
    ("GET", "/readyz", Access::Open),
    ("GET", "/metrics", Access::Open),
    ("GET", "/openapi.json", Access::Open),
    ("GET", "/sessions/key", Access::Open),
    ("GET", "/replication/digest", Access::OperatorTool),
    ("POST", "/players", Access::Player),
    ("POST", "/sessions", Access::Player),
    ("DELETE", "/sessions", Access::Player),
    ("POST", "/sessions/refresh", Access::Player),
    ("POST", "/players/{player_id}/totp", Access::Player),
    ("GET", "/players/{player_id}/limits", Access::Player),
    ("PUT", "/players/{player_id}/limits", Access::Player),
    ("POST", "/players/{player_id}/timeout", Access::Player),
    ("POST", "/players/{player_id}/self-exclusion", Access::Player),
    ("GET", "/players/{player_id}/kyc", Access::Player),
    ("GET", "/players/{player_id}/session", Access::Player),
    ("PUT", "/players/{player_id}/session-limits", Access::Player),
    ("POST", "/players/{player_id}/reality-check", Access::Player),
    ("GET", "/wallet/{player_id}/balance", Access::Player),
    ("GET", "/lobby", Access::Player),
    ("GET", "/flags/evaluate", Access::Player),
    ("POST", "/gaming/{provider}/{call}", Access::Provider),
    ("POST", "/kyc/webhook", Access::Provider),
    ("POST", "/cashier/webhooks/{psp}", Access::Provider),
    ("POST", "/cashier/deposits", Access::Player),
    ("GET", "/cashier/players/{player_id}/transactions", Access::Player),
    ("POST", "/cashier/withdrawals", Access::Player),
    ("GET", "/cashier/payments/{payment_id}", Access::Player),
    ("POST", "/cashier/withdrawals/{payment_id}/cancel", Access::Player),
    ("GET", "/cashier/withdrawals", Access::BackOffice(&[FINANCE])),
    ("POST", "/cashier/payments/{payment_id}/refund", Access::BackOffice(&[FINANCE])),
    ("GET", "/ops/reconciliation", Access::BackOffice(&[FINANCE, OPS])),
    ("GET", "/cashier/withdrawals/{payment_id}", Access::BackOffice(&[FINANCE])),
    ("POST", "/cashier/withdrawals/{payment_id}/approve", Access::BackOffice(&[FINANCE])),
    ("POST", "/cashier/withdrawals/{payment_id}/reject", Access::BackOffice(&[FINANCE])),
    ("POST", "/wallet/credit", Access::BackOffice(&[FINANCE])),
    ("POST", "/wallet/debit", Access::BackOffice(&[FINANCE])),
    ("POST", "/wallet/hold", Access::BackOffice(&[FINANCE])),
    ("POST", "/wallet/settle", Access::BackOffice(&[FINANCE])),
    ("GET", "/ops/players/{player_id}/balance", Access::BackOffice(&[FINANCE, COMPLIANCE, OPS])),
    ("GET", "/ops/ledger", Access::BackOffice(&[FINANCE, OPS, ThisRegulator])),
    ("GET", "/ops/providers", Access::BackOffice(&[OPS])),
    ("POST", "/ops/providers/{provider}/maintenance", Access::BackOffice(&[OPS])),
    ("GET", "/audit/verify", Access::BackOffice(&[COMPLIANCE, OPS, ThisRegulator])),
    ("GET", "/audit/records", Access::BackOffice(&[COMPLIANCE, ThisRegulator])),
    ("GET", "/audit/checkpoints", Access::BackOffice(&[COMPLIANCE, OPS, ThisRegulator])),
    ("GET", "/exports", Access::BackOffice(&[COMPLIANCE, OPS, ThisRegulator])),
    ("POST", "/exports", Access::BackOffice(&[COMPLIANCE, OPS])),
    ("GET", "/exports/{export_id}", Access::BackOffice(&[COMPLIANCE, OPS, ThisRegulator])),
    ("GET", "/exports/{export_id}/proof", Access::BackOffice(&[COMPLIANCE, OPS, ThisRegulator])),
    ("GET", "/exports/{export_id}/files/{*file}", Access::BackOffice(&[COMPLIANCE, ThisRegulator])),
    ("POST", "/audit/checkpoints", Access::BackOffice(&[COMPLIANCE, OPS])),
    ("GET", "/events", Access::BackOffice(&[COMPLIANCE, OPS])),
    ("GET", "/compliance/players/{player_id}/decisions", Access::BackOffice(&[COMPLIANCE, ThisRegulator])),
    ("GET", "/compliance/cases", Access::BackOffice(&[COMPLIANCE, ThisRegulator])),
    ("POST", "/compliance/cases/{case_id}", Access::BackOffice(&[COMPLIANCE])),
];

/// Who the certificate says the caller is (the certificate is parsed once per request).
pub fn identify(certificate: &PeerCertificate) -> Caller {
    match certificate.first_name_of(&KNOWN_NAMES) {
        Some("router") => Caller::Router,
        Some(name) if OPERATOR_NAMES.contains(&name) => Caller::Operator(name),
        Some(cell) => Caller::Cell(cell.to_owned()),
        None => Caller::Other,
    }
}

/// The access of the route `pattern` (as the router matched it) for `method`. A pattern not in
/// [`ROUTES`] is the back office's, for `admin` only: a new route is closed until it is listed.
/// `None`: a listed pattern without that method, which the router answers 405 (a test sends every
/// method to every pattern to keep it so).
pub fn access(method: &Method, pattern: &str) -> Option<Access> {
    // The router answers HEAD with the GET handler (without the body): it is a GET here too.
    let method = if method == Method::HEAD { &Method::GET } else { method };
    let mut listed = ROUTES.iter().filter(|(_, p, _)| *p == pattern).peekable();
    if listed.peek().is_none() {
        return Some(Access::BackOffice(&[]));
    }
    listed.find(|(m, _, _)| method.as_str() == *m).map(|(_, _, access)| *access)
}

/// Whether a certificate's holder may reach a kind of route at all.
pub fn reaches(caller: &Caller, access: Access) -> bool {
    matches!(
        (caller, access),
        (_, Access::Open)
            | (Caller::Operator(_), _)
            | (Caller::Router, Access::Player)
            | (Caller::Other, Access::Provider)
    )
}

/// Whether `role` is granted by `grants` in the cell `cell` (admin always is).
pub fn granted(role: Role, grants: &[Grant], cell: &str) -> bool {
    role == Role::Admin
        || grants.iter().any(|g| match g {
            Grant::Role(r) => *r == role,
            ThisRegulator => matches!(role, Role::Regulator(j) if j.to_string().eq_ignore_ascii_case(cell)),
        })
}

/// Refuses a request its certificate may not make (403 `FORBIDDEN`), a back-office request
/// without a valid operator token (401 `INVALID_OPERATOR_TOKEN`) or whose token's role the route
/// does not grant (403 `FORBIDDEN`). A back-office request that passes carries its operator
/// ([`OperatorRef`]) in its extensions, for its events.
pub async fn authorise(State(s): State<Arc<AppState>>, mut request: Request, next: Next) -> Response {
    // Unmatched paths have no pattern: they get the router's 404, whoever asks.
    let Some(pattern) = request.extensions().get::<MatchedPath>().map(|p| p.as_str()) else {
        return next.run(request).await;
    };
    let Some(access) = access(request.method(), pattern) else {
        return next.run(request).await;
    };
    if let Some(certificate) = request.extensions().get::<PeerCertificate>() {
        let caller = identify(certificate);
        if !reaches(&caller, access) {
            tracing::warn!(?caller, method = %request.method(), path = request.uri().path(), cell = %s.cell, "a certificate tried a route it may not reach");
            return certificate_refused(&caller).into_response();
        }
    }
    if let Access::BackOffice(grants) = access {
        match operator(&s, &request, grants) {
            Ok(operator) => {
                request.extensions_mut().insert(operator);
            }
            Err(refusal) => return *refusal,
        }
    }
    next.run(request).await
}

fn certificate_refused(caller: &Caller) -> ApiError {
    let what = match caller {
        Caller::Router => "the router's certificate reaches player routes only".to_owned(),
        Caller::Cell(cell) => {
            format!("cell {cell}'s certificate reaches no route of another cell that moves money or runs it")
        }
        Caller::Other => "this certificate reaches game provider calls only".to_owned(),
        Caller::Operator(_) => unreachable!("operators' certificates reach every route"),
    };
    ApiError::new(StatusCode::FORBIDDEN, CellCode::Forbidden, what)
}

/// The operator of a back-office request, if its token is valid and its role granted.
fn operator(s: &AppState, request: &Request, grants: &[Grant]) -> Result<OperatorRef, Box<Response>> {
    let d = s.domains().map_err(|e| Box::new(e.into_response()))?;
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let claims = match token.map(|t| d.operators.verify(t, d.clock.now().timestamp())) {
        Some(Ok(claims)) => claims,
        failed => {
            let why = match failed {
                Some(Err(why)) => why,
                _ => "no Authorization: Bearer header",
            };
            tracing::warn!(method = %request.method(), path = request.uri().path(), why, "back-office request without a valid operator token");
            let message =
                format!("the back office needs an operator token from global-control (POST /operator-tokens): {why}");
            let mut response =
                ApiError::new(StatusCode::UNAUTHORIZED, CellCode::InvalidOperatorToken, message).into_response();
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return Err(Box::new(response));
        }
    };
    if !granted(claims.role, grants, &s.cell) {
        tracing::warn!(token = %claims.jti, role = %claims.role, method = %request.method(), path = request.uri().path(), "an operator token's role does not reach this route");
        let message =
            format!("a `{}` operator token does not reach this route: it takes {}", claims.role, names(grants));
        return Err(Box::new(ApiError::new(StatusCode::FORBIDDEN, CellCode::Forbidden, message).into_response()));
    }
    Ok(OperatorRef { token_id: claims.jti, role: claims.role })
}

/// The roles `grants` lets in, in words.
fn names(grants: &[Grant]) -> String {
    let mut names: Vec<String> = grants
        .iter()
        .map(|g| match g {
            Grant::Role(role) => role.to_string(),
            ThisRegulator => "regulator:<this cell>".to_owned(),
        })
        .collect();
    names.push("admin".into());
    names.join(", ")
}

/// [`ROUTES`] as the README's Markdown table.
pub fn markdown_table() -> String {
    let mut out = String::from("| route | who reaches it |\n|---|---|\n");
    for (method, pattern, access) in ROUTES {
        let who = match access {
            Access::Open => "anyone".to_owned(),
            Access::Player => {
                "the player, through the router (player session token where the route needs one)".to_owned()
            }
            Access::Provider => {
                "an outside party: a game provider, the KYC vendor, a PSP (its certificate, HMAC-signed body)"
                    .to_owned()
            }
            Access::BackOffice(grants) => format!("operator certificate + operator token: {}", names(grants)),
            Access::OperatorTool => "an operator tool's certificate (a standby answers it too)".to_owned(),
        };
        out.push_str(&format!("| `{method} {pattern}` | {who} |\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use contracts::Jurisdiction;

    #[test]
    fn the_known_cell_names_are_the_jurisdictions() {
        let cells: Vec<String> = contracts::Jurisdiction::ALL.iter().map(|j| j.to_string().to_lowercase()).collect();
        assert_eq!(KNOWN_NAMES[4..].iter().map(|n| n.to_string()).collect::<Vec<_>>(), cells);
    }

    #[test]
    fn each_caller_reaches_its_own_routes_and_each_role_its_own() {
        assert_eq!(access(&Method::GET, "/wallet/{player_id}/balance"), Some(Access::Player));
        assert_eq!(access(&Method::POST, "/gaming/{provider}/{call}"), Some(Access::Provider));
        assert_eq!(access(&Method::GET, "/readyz"), Some(Access::Open));
        assert_eq!(access(&Method::PUT, "/readyz"), None, "the router's 405");
        assert_eq!(access(&Method::HEAD, "/ops/ledger"), access(&Method::GET, "/ops/ledger"), "HEAD is GET");
        assert_eq!(access(&Method::GET, "/ops/new"), Some(Access::BackOffice(&[])), "unlisted: admin only");
        let Some(Access::BackOffice(credit)) = access(&Method::POST, "/wallet/credit") else { panic!("back office") };
        assert!(granted(Role::Finance, credit, "uk") && granted(Role::Admin, credit, "uk"));
        assert!(!granted(Role::Ops, credit, "uk") && !granted(Role::Compliance, credit, "uk"));
        let Some(Access::BackOffice(audit)) = access(&Method::GET, "/audit/records") else { panic!("back office") };
        assert!(granted(Role::Regulator(Jurisdiction::Uk), audit, "uk"));
        assert!(!granted(Role::Regulator(Jurisdiction::Dk), audit, "uk"), "another jurisdiction's regulator");
        assert!(!granted(Role::Finance, audit, "uk"));
        let back_office = Access::BackOffice(&[]);
        assert!(reaches(&Caller::Router, Access::Player) && !reaches(&Caller::Router, back_office));
        assert!(!reaches(&Caller::Cell("dk".into()), back_office));
        assert!(!reaches(&Caller::Cell("dk".into()), Access::Provider));
        assert!(reaches(&Caller::Operator("drill"), back_office));
        assert!(reaches(&Caller::Other, Access::Provider) && !reaches(&Caller::Other, Access::Player));
    }

    #[test]
    fn the_readme_prints_the_table_that_is_enforced() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
        assert!(
            readme.contains(&markdown_table()),
            "README.md's table of the cell's routes differs from cell::api::callers::ROUTES; paste this:\n{}",
            markdown_table()
        );
    }
}
