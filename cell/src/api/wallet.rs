//! `/wallet/*`: credit, debit, hold, settle, balance.

use super::{ledger_answer, mutating, ApiError, AppState, HeadersAndBody, TraceId};
use crate::domains::wallet::{self, WalletError};
use crate::ledger::{Ledger, LedgerCommand};
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::{Extension, Json};
use bytes::Bytes;
use contracts::operators::OperatorRef;
use contracts::wallet::{BalanceResponse, HoldRequest, MovementReason, MovementRequest, SettleRequest};
use contracts::CellCode;
use contracts::{CountryCode, PlayerId};
use serde::Deserialize;
use std::sync::Arc;

type Body = Result<Bytes, BytesRejection>;

/// What a player does with a request, as far as their current location matters.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Activity {
    Wagering,
    Deposit,
    Other,
}

/// The home cell owns the player; their current location (`X-Client-Country`, set by the router)
/// gates wagering and deposits. Login, balance, limits, exclusion and withdrawals stay open.
pub(super) fn location_gate(s: &AppState, headers: &HeaderMap, activity: Activity) -> Result<(), ApiError> {
    let Some(country) = headers.get("x-client-country").and_then(|v| v.to_str().ok()) else { return Ok(()) };
    let Some(d) = s.domains.get() else { return Ok(()) };
    let licensed = contracts::CountryCode::new(country).map(|c| d.region.is_licensed_for(c)).unwrap_or(false);
    let allowed = match activity {
        Activity::Wagering => d.region.wagering_abroad,
        Activity::Deposit => d.region.deposits_abroad,
        Activity::Other => true,
    };
    if licensed || allowed {
        return Ok(());
    }
    let what = if activity == Activity::Wagering { "wagering from" } else { "deposits from" };
    Err(ApiError::new(
        axum::http::StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS,
        CellCode::LocationNotLicensed,
        format!(
            "{what} {country}: not covered by cell {}'s licence; balance, limits and withdrawals stay available",
            s.cell
        ),
    ))
}

/// Every mutating wallet route: parse, check into its command, run it through the ledger.
async fn mutation<T: serde::de::DeserializeOwned, C: LedgerCommand<Refusal = WalletError>>(
    s: &AppState,
    ctx: crate::events::EventContext,
    route: &str,
    headers: &HeaderMap,
    body: Body,
    activity: fn(&T) -> (Activity, Option<PlayerId>),
    command: fn(&Ledger, T, Option<CountryCode>) -> Result<C, WalletError>,
) -> Result<Response, ApiError> {
    let d = s.domains()?;
    let (request, key) = mutating::<T>(route, headers, body)?;
    let (activity, player) = activity(&request);
    location_gate(s, headers, activity)?;
    if let (Activity::Deposit, Some(player)) = (activity, player) {
        // Where the region asks its self-exclusion register before each deposit.
        d.compliance.screen_player(&player, contracts::region::ExclusionCheckPoint::Deposit, &ctx, &d.ledger).await?;
    }
    let location = headers.get("x-client-country").and_then(|v| CountryCode::new(v.to_str().ok()?).ok());
    let command = command(&d.ledger, request, location)?;
    ledger_answer(d.ledger.execute(command, key, ctx).await)
}

pub async fn credit(
    State(s): State<Arc<AppState>>,
    Extension(t): Extension<TraceId>,
    operator: Option<Extension<OperatorRef>>,
    HeadersAndBody { headers: h, body }: HeadersAndBody,
) -> Result<Response, ApiError> {
    let deposit = |r: &MovementRequest| {
        let activity = if r.reason == MovementReason::Deposit { Activity::Deposit } else { Activity::Other };
        (activity, Some(r.player_id.clone()))
    };
    mutation::<MovementRequest, _>(
        &s,
        s.event_context(&t, operator.map(|o| o.0)),
        "wallet.credit",
        &h,
        body,
        deposit,
        wallet::credit,
    )
    .await
}

pub async fn debit(
    State(s): State<Arc<AppState>>,
    Extension(t): Extension<TraceId>,
    operator: Option<Extension<OperatorRef>>,
    HeadersAndBody { headers: h, body }: HeadersAndBody,
) -> Result<Response, ApiError> {
    mutation::<MovementRequest, _>(
        &s,
        s.event_context(&t, operator.map(|o| o.0)),
        "wallet.debit",
        &h,
        body,
        |_| (Activity::Other, None),
        wallet::debit,
    )
    .await
}

pub async fn hold(
    State(s): State<Arc<AppState>>,
    Extension(t): Extension<TraceId>,
    operator: Option<Extension<OperatorRef>>,
    HeadersAndBody { headers: h, body }: HeadersAndBody,
) -> Result<Response, ApiError> {
    mutation::<HoldRequest, _>(
        &s,
        s.event_context(&t, operator.map(|o| o.0)),
        "wallet.hold",
        &h,
        body,
        |_| (Activity::Wagering, None),
        wallet::hold,
    )
    .await
}

pub async fn settle(
    State(s): State<Arc<AppState>>,
    Extension(t): Extension<TraceId>,
    operator: Option<Extension<OperatorRef>>,
    HeadersAndBody { headers: h, body }: HeadersAndBody,
) -> Result<Response, ApiError> {
    mutation::<SettleRequest, _>(
        &s,
        s.event_context(&t, operator.map(|o| o.0)),
        "wallet.settle",
        &h,
        body,
        |_| (Activity::Other, None),
        wallet::settle,
    )
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BalanceQuery {
    currency: Option<String>,
    as_of: Option<String>,
}

/// `GET /wallet/{id}/balance`, a player route: the bearer token must be the player's own.
pub async fn balance(
    State(s): State<Arc<AppState>>,
    Path(player): Path<String>,
    headers: HeaderMap,
    query: Result<Query<BalanceQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<BalanceResponse>, ApiError> {
    let claims = super::sessions::session(&s, &headers).await?;
    if claims.sub.as_str() != player {
        return Err(ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            CellCode::NotYourAccount,
            "this session is another player's: a player reads only their own account",
        ));
    }
    balance_of(&s, player, query).await
}

/// `GET /ops/players/{id}/balance`, the back office's read of any player's balance.
pub async fn ops_balance(
    State(s): State<Arc<AppState>>,
    Path(player): Path<String>,
    query: Result<Query<BalanceQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<BalanceResponse>, ApiError> {
    balance_of(&s, player, query).await
}

async fn balance_of(
    s: &AppState,
    player: String,
    query: Result<Query<BalanceQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<BalanceResponse>, ApiError> {
    let d = s.domains()?;
    let Query(query) = query.map_err(|e| ApiError::bad_request(CellCode::InvalidQuery, e.body_text()))?;
    let player = PlayerId::new(player).map_err(|e| ApiError::bad_request(CellCode::InvalidPlayerId, e.to_string()))?;
    let as_of = match &query.as_of {
        None => None,
        Some(text) => Some(
            chrono::DateTime::parse_from_rfc3339(text)
                .map_err(|e| {
                    ApiError::bad_request(
                        CellCode::InvalidAsOf,
                        format!("as_of `{text}` is not an RFC 3339 instant: {e}"),
                    )
                })?
                .with_timezone(&chrono::Utc),
        ),
    };
    let ledger = d.ledger.clone();
    let response = super::blocking(move || ledger.balance(&player, query.currency.as_deref(), as_of)).await?;
    Ok(Json(response))
}
