//! `/audit/*`: the WORM chain, read-only: verify it, read its records, list and make signed
//! checkpoints. No route changes or deletes a record.

use super::{blocking, ApiError, AppState};
use crate::audit;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use contracts::audit::{AuditRecordPage, Checkpoint, CheckpointList, VerifyReport};
use contracts::CellCode;
use serde::Deserialize;
use std::sync::Arc;

/// `{ok, records, head}` and, when broken, the first bad record.
pub async fn verify(State(s): State<Arc<AppState>>) -> Result<Json<VerifyReport>, ApiError> {
    let d = s.domains()?;
    let (store, key) = (d.store.clone(), d.audit.public_key());
    Ok(Json(blocking(move || audit::verify(store.as_ref(), &key)).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordsQuery {
    after: Option<u64>,
    limit: Option<usize>,
}

pub async fn records(
    State(s): State<Arc<AppState>>,
    query: Result<Query<RecordsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<AuditRecordPage>, ApiError> {
    let d = s.domains()?;
    let Query(q) = query.map_err(|e| ApiError::bad_request(CellCode::InvalidQuery, e.body_text()))?;
    let limit = q.limit.unwrap_or(100);
    if limit == 0 || limit > audit::PAGE_RECORDS_MAX {
        return Err(ApiError::bad_request(
            CellCode::InvalidLimit,
            format!("limit must be 1 to {}", audit::PAGE_RECORDS_MAX),
        ));
    }
    let store = d.store.clone();
    Ok(Json(blocking(move || audit::records_page(store.as_ref(), q.after.unwrap_or(0), limit)).await?))
}

pub async fn checkpoints(State(s): State<Arc<AppState>>) -> Result<Json<CheckpointList>, ApiError> {
    let d = s.domains()?;
    let (store, signer) = (d.store.clone(), d.audit.clone());
    Ok(Json(blocking(move || signer.list(store.as_ref())).await?))
}

/// Signs the current head now (or answers the checkpoint that already signs it).
pub async fn checkpoint_now(State(s): State<Arc<AppState>>) -> Result<Json<Checkpoint>, ApiError> {
    let d = s.domains()?;
    let (store, signer) = (d.store.clone(), d.audit.clone());
    blocking(move || signer.checkpoint(store.as_ref())).await?.map(Json).ok_or_else(|| {
        ApiError::new(StatusCode::CONFLICT, CellCode::AuditChainEmpty, "the chain has no record to sign yet")
    })
}
