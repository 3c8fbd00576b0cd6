//! `/wallet/*`: credit, debit, hold, settle, balance.

use super::{answer, mutating, ApiError, AppState, TraceId};
use crate::domains::wallet::{Command, Wallet, WalletError};
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::{Extension, Json};
use bytes::Bytes;
use contracts::wallet::{BalanceResponse, HoldRequest, MovementRequest, SettleRequest};
use contracts::PlayerId;
use serde::Deserialize;
use std::sync::Arc;

type Body = Result<Bytes, BytesRejection>;

/// Every mutating wallet route: parse, check into a `Command`, run it through the writer.
async fn mutation<T: serde::de::DeserializeOwned>(
    s: &AppState,
    trace: &TraceId,
    route: &str,
    headers: &HeaderMap,
    body: Body,
    command: fn(&Wallet, T) -> Result<Command, WalletError>,
) -> Result<Response, ApiError> {
    let d = s.domains()?;
    let (request, key) = mutating::<T>(route, headers, body)?;
    let command = command(&d.wallet, request)?;
    Ok(answer(d.wallet.execute(command, key, s.event_context(trace)).await?))
}

pub async fn credit(
    State(s): State<Arc<AppState>>,
    Extension(t): Extension<TraceId>,
    h: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    mutation::<MovementRequest>(&s, &t, "wallet.credit", &h, body, Wallet::credit_command).await
}

pub async fn debit(
    State(s): State<Arc<AppState>>,
    Extension(t): Extension<TraceId>,
    h: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    mutation::<MovementRequest>(&s, &t, "wallet.debit", &h, body, Wallet::debit_command).await
}

pub async fn hold(
    State(s): State<Arc<AppState>>,
    Extension(t): Extension<TraceId>,
    h: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    mutation::<HoldRequest>(&s, &t, "wallet.hold", &h, body, Wallet::hold_command).await
}

pub async fn settle(
    State(s): State<Arc<AppState>>,
    Extension(t): Extension<TraceId>,
    h: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    mutation::<SettleRequest>(&s, &t, "wallet.settle", &h, body, Wallet::settle_command).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BalanceQuery {
    currency: Option<String>,
    as_of: Option<String>,
}

pub async fn balance(
    State(s): State<Arc<AppState>>,
    Path(player): Path<String>,
    query: Result<Query<BalanceQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<BalanceResponse>, ApiError> {
    let d = s.domains()?;
    let Query(query) = query.map_err(|e| ApiError::bad_request("INVALID_QUERY", e.body_text()))?;
    let player = PlayerId::new(player).map_err(|e| ApiError::bad_request("INVALID_PLAYER_ID", e.to_string()))?;
    let as_of = match &query.as_of {
        None => None,
        Some(text) => Some(
            chrono::DateTime::parse_from_rfc3339(text)
                .map_err(|e| {
                    ApiError::bad_request("INVALID_AS_OF", format!("as_of `{text}` is not an RFC 3339 instant: {e}"))
                })?
                .with_timezone(&chrono::Utc),
        ),
    };
    let wallet = d.wallet.clone();
    let response = tokio::task::spawn_blocking(move || wallet.balance(&player, query.currency.as_deref(), as_of))
        .await
        .map_err(|e| ApiError::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", e.to_string()))??;
    Ok(Json(response))
}
