//! `/flags/evaluate` and `/lobby`: answered from the cell's own copy of the control plane's flags
//! and catalog, so they keep working when the control plane is unreachable (then `STALE`).

use super::{ApiError, AppState};
use crate::domains::catalog::{ContextQuery, Lobby};
use axum::extract::{Query, State};
use axum::Json;
use contracts::flags::{EvaluationResult, FlagKind};
use contracts::CellCode;
use std::collections::BTreeMap;
use std::sync::Arc;

type RawQuery = Result<Query<BTreeMap<String, String>>, axum::extract::rejection::QueryRejection>;

fn context(query: BTreeMap<String, String>) -> ContextQuery {
    let mut attributes = query;
    let player_id = attributes.remove("playerId");
    ContextQuery { player_id, attributes }
}

/// `GET /flags/evaluate?flag=KEY[&type=boolean|variant][&playerId=...][&attribute=value...]`:
/// OpenFeature-style `{value, variant, reason, errorCode?, version}`. Every other parameter is an
/// attribute of the evaluation context (`country`, `ageBand`, `vipTier`, ...).
pub async fn evaluate(State(s): State<Arc<AppState>>, query: RawQuery) -> Result<Json<EvaluationResult>, ApiError> {
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
    let ctx = context(query).into_context();
    Ok(Json(d.catalog.evaluate(&flag, ctx, expected, d.clock.now())))
}

/// `GET /lobby[?playerId=...][&attribute=value...]`: the games certified and offered in this
/// jurisdiction and enabled by flags for this player.
pub async fn lobby(State(s): State<Arc<AppState>>, query: RawQuery) -> Result<Json<Lobby>, ApiError> {
    let d = s.domains()?;
    let Query(query) = query.map_err(|e| ApiError::bad_request(CellCode::InvalidQuery, e.body_text()))?;
    Ok(Json(d.catalog.lobby(context(query).into_context(), d.clock.now())))
}
