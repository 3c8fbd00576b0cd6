//! Operational routes: health, readiness, metrics, and the event log.

use super::{ApiError, AppState};
use crate::events;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use contracts::events::EventPage;
use contracts::CellCode;
use serde::Deserialize;
use std::sync::Arc;

/// Alive: the process answers.
pub async fn healthz() -> &'static str {
    "ok"
}

/// Ready: the store is open and the domains are serving.
pub async fn readyz(State(s): State<Arc<AppState>>) -> Response {
    // A standby not promoted, or a deposed primary: the router sends it nothing.
    if let Some((code, why)) = s.replica.get().and_then(|r| r.refusal()) {
        return (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {code}: {why}")).into_response();
    }
    match s.domains.get() {
        Some(d) => match d.ledger.fault().get() {
            // The router fails over; the cell is stopping.
            Some(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}")).into_response(),
            None => (StatusCode::OK, "ready").into_response(),
        },
        None => (StatusCode::SERVICE_UNAVAILABLE, "opening store").into_response(),
    }
}

pub async fn metrics(State(s): State<Arc<AppState>>) -> Response {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], s.metrics.render())
        .into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    after: Option<String>,
    before: Option<String>,
    /// `asc` (oldest first, the default; continue with `after`) or `desc` (newest first; continue
    /// with `before`). `after` and `before` bound the window either way.
    order: Option<String>,
    limit: Option<usize>,
}

/// Default page size of `/events`.
const PAGE_EVENTS_DEFAULT: usize = 100;

pub async fn events(
    State(s): State<Arc<AppState>>,
    query: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<EventPage>, ApiError> {
    let d = s.domains()?;
    let Query(q) = query.map_err(|e| ApiError::bad_request(CellCode::InvalidQuery, e.body_text()))?;
    let limit = q.limit.unwrap_or(PAGE_EVENTS_DEFAULT);
    if limit == 0 || limit > events::PAGE_EVENTS_MAX {
        return Err(ApiError::bad_request(
            CellCode::InvalidLimit,
            format!("limit must be 1 to {}", events::PAGE_EVENTS_MAX),
        ));
    }
    let newest_first = match q.order.as_deref() {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(other) => {
            return Err(ApiError::bad_request(CellCode::InvalidQuery, format!("order `{other}`: asc or desc")));
        }
    };
    let store = d.store.clone();
    let page = super::blocking(move || {
        let from = events::PageFrom { after: q.after.as_deref(), before: q.before.as_deref(), newest_first };
        events::read_page(store.as_ref(), from, limit)
    })
    .await?;
    Ok(Json(page))
}

/// Per currency, the sum of every account, player and house: zero ("0.00" for GBP) when the books balance. What
/// drills and ops check after a fault.
pub async fn ledger(
    State(s): State<Arc<AppState>>,
) -> Result<Json<std::collections::BTreeMap<String, String>>, ApiError> {
    let wallet = s.domains()?.ledger.clone();
    let totals = super::blocking(move || wallet.ledger_totals()).await?;
    // At the currency's scale, as every amount the API answers ("0.00" for GBP), but never rounded:
    // a sum with more digits than the currency has is shown whole, so no imbalance hides.
    let at_scale = |c: contracts::Currency, total: rust_decimal::Decimal| {
        let mut total = total.normalize();
        if total.scale() <= c.scale() {
            total.rescale(c.scale());
        }
        total.to_string()
    };
    Ok(Json(totals.into_iter().map(|(c, total)| (c.code().to_owned(), at_scale(c, total))).collect()))
}

/// `GET /replication/digest`: the store's keyspaces hashed at one version, on a primary or its
/// standby alike, for `cell replica verify`.
pub async fn replication_digest(
    State(s): State<Arc<AppState>>,
) -> Result<axum::Json<contracts::replication::ReplicaDigest>, super::ApiError> {
    let Some(replica) = s.replica.get().cloned() else {
        return Err(super::ApiError::new(
            StatusCode::NOT_FOUND,
            contracts::CellCode::NotFound,
            "this cell replicates nothing (no --replication-listen, --peer or --standby-of)",
        ));
    };
    let cell = s.cell.clone();
    let digest = tokio::task::spawn_blocking(move || crate::replica::digest(&replica, &cell))
        .await
        .map_err(|e| internal(e.to_string()))?
        .map_err(|e| internal(e.to_string()))?;
    Ok(axum::Json(digest))
}

fn internal(message: String) -> super::ApiError {
    super::ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, contracts::CellCode::Internal, message)
}
