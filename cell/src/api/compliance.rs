//! `/compliance/*`: the back office's reads of compliance (the `compliance` role and this
//! jurisdiction's regulator).

use super::{blocking, ApiError, AppState};
use axum::extract::{Path, State};
use axum::Json;
use contracts::limits::DecisionLog;
use contracts::{CellCode, PlayerId};
use std::sync::Arc;

/// `GET /compliance/players/{id}/decisions`: every compliance decision about the player, oldest
/// first: the register's answers, limit changes, time-outs and self-exclusions, each with its rule
/// and policy version.
pub async fn decisions(
    State(s): State<Arc<AppState>>,
    Path(player): Path<String>,
) -> Result<Json<DecisionLog>, ApiError> {
    let d = s.domains()?;
    let player = PlayerId::new(player).map_err(|e| ApiError::bad_request(CellCode::InvalidPlayerId, e.to_string()))?;
    let (compliance, id) = (d.compliance.clone(), player.clone());
    let decisions = blocking(move || compliance.decisions(&id)).await?;
    Ok(Json(DecisionLog { player_id: player, decisions }))
}
