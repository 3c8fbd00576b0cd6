//! `/flags/evaluate` and `/lobby`: answered from the cell's own copy of the control plane's flags
//! and catalog, so they keep working when the control plane is unreachable (then `STALE`).

use super::{ApiError, AppState};
use crate::domains::catalog::Lobby;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::Json;
use contracts::flags::{EvaluationContext, EvaluationResult, FlagKind};
use contracts::CellCode;
use std::collections::BTreeMap;
use std::sync::Arc;

type RawQuery = Result<Query<BTreeMap<String, String>>, axum::extract::rejection::QueryRejection>;

/// The context attributes a client may set itself. Everything rules gate on (`country`,
/// `ageBand`, `vipTier`, `region`) comes from the server: the router's placement and the player's
/// record.
pub const CLIENT_ATTRIBUTES: [&str; 3] = ["platform", "locale", "appVersion"];

/// An age band as flags see it, from the player's age.
fn age_band(age: u32) -> &'static str {
    match age {
        0..=24 => "18-24",
        25..=34 => "25-34",
        35..=44 => "35-44",
        45..=54 => "45-54",
        55..=64 => "55-64",
        _ => "65+",
    }
}

/// The evaluation context of a request, built by the server:
/// - `country` from the router's `X-Client-Country`, never from the query;
/// - with a session (`Authorization: Bearer`), the player and their `ageBand` from their record;
///   without one, `playerId` from the query is only a targeting key (splits hash it);
/// - from the query, only the client-settable attributes ([`CLIENT_ATTRIBUTES`]): any other is
///   400 `INVALID_QUERY`, naming what the server sets.
async fn context(
    s: &AppState,
    headers: &HeaderMap,
    mut query: BTreeMap<String, String>,
) -> Result<EvaluationContext, ApiError> {
    let mut player_id = query.remove("playerId");
    if let Some(name) = query.keys().find(|k| !CLIENT_ATTRIBUTES.contains(&k.as_str())) {
        return Err(ApiError::bad_request(
            CellCode::InvalidQuery,
            format!(
                "`{name}` is not an attribute a client may set (only {}): country comes from where the client is, \
                 player attributes from the player's record",
                CLIENT_ATTRIBUTES.join(", ")
            ),
        ));
    }
    let mut attributes = query;
    if let Some(country) = headers.get("x-client-country").and_then(|v| v.to_str().ok()) {
        attributes.insert("country".into(), country.to_owned());
    }
    if headers.contains_key(axum::http::header::AUTHORIZATION) {
        let claims = super::sessions::session(s, headers).await?;
        let d = s.domains()?;
        let (store, id) = (d.store.clone(), claims.sub.clone());
        let player = super::blocking(move || {
            let mut tx = store.begin()?;
            crate::players::get(tx.as_mut(), &id)
        })
        .await?;
        if let Some(player) = player {
            let age = crate::players::age_on(player.date_of_birth, d.clock.now().date_naive());
            attributes.insert("ageBand".into(), age_band(age).into());
        }
        player_id = Some(claims.sub.to_string());
    }
    Ok(EvaluationContext { player_id, region: None, attributes })
}

/// `GET /flags/evaluate?flag=KEY[&type=boolean|variant][&playerId=...][&platform=...]`:
/// OpenFeature-style `{value, variant, reason, errorCode?, version}`, in a context the server
/// builds (see [`context`]).
pub async fn evaluate(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    query: RawQuery,
) -> Result<Json<EvaluationResult>, ApiError> {
    let d = s.domains()?;
    let Query(mut query) = query.map_err(|e| ApiError::bad_request(CellCode::InvalidQuery, e.body_text()))?;
    let flag =
        query.remove("flag").ok_or_else(|| ApiError::bad_request(CellCode::FlagMissing, "name the flag: ?flag=KEY"))?;
    let expected = match query.remove("type").as_deref() {
        None => None,
        Some("boolean") => Some(FlagKind::Boolean),
        Some("variant") => Some(FlagKind::Variant),
        Some(other) => {
            return Err(ApiError::bad_request(
                CellCode::InvalidType,
                format!("type `{other}`: use boolean or variant"),
            ));
        }
    };
    let ctx = context(&s, &headers, query).await?;
    Ok(Json(d.catalog.evaluate(&flag, ctx, expected, d.clock.now())))
}

/// `GET /lobby[?playerId=...][&platform=...]`: the games certified and offered in this
/// jurisdiction and enabled by flags for this player, in the context the server builds.
pub async fn lobby(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    query: RawQuery,
) -> Result<Json<Lobby>, ApiError> {
    let d = s.domains()?;
    let Query(query) = query.map_err(|e| ApiError::bad_request(CellCode::InvalidQuery, e.body_text()))?;
    let ctx = context(&s, &headers, query).await?;
    Ok(Json(d.catalog.lobby(ctx, d.clock.now())))
}
