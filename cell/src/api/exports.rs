//! `/exports/*`: the cell's regulator exports, for the compliance team, ops, global-control and
//! this cell's own regulator: build one now, list the vault, read a manifest, prove an event is in
//! an export, download a file. Every build and every download is chained (`export.built`,
//! `export.downloaded`).

use super::{blocking, ApiError, AppState, TraceId};
use crate::exports::vault::{Stored, Vault};
use crate::exports::{ExportError, Exporter};
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::Response;
use axum::{Extension, Json};
use bytes::Bytes;
use contracts::exports::{BuildRequest, ExportDownloaded, ExportList, ExportSummary, InclusionProof};
use contracts::operators::OperatorRef;
use contracts::CellCode;
use std::sync::Arc;

impl From<ExportError> for ApiError {
    fn from(e: ExportError) -> ApiError {
        refused(e)
    }
}

fn refused(e: ExportError) -> ApiError {
    match e {
        ExportError::Store(_)
        | ExportError::Io { .. }
        | ExportError::Sign(_)
        | ExportError::Zip(_)
        | ExportError::TokenService(_) => {
            tracing::error!(error = %e, "export failed");
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, CellCode::ExportRefused, e.to_string())
        }
        // Asked a moment early (a clock a little behind the asker's): a retry will do.
        e @ ExportError::PeriodNotOver(_) => {
            ApiError::new(StatusCode::CONFLICT, CellCode::ExportRefused, e.to_string())
        }
        e => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, CellCode::ExportRefused, e.to_string()),
    }
}

fn name_of(path: &std::path::Path) -> String {
    path.display().to_string()
}

fn summary(s: Stored) -> ExportSummary {
    ExportSummary { manifest: s.manifest, signature: s.signature }
}

/// Chains an export's event through the writer.
struct Chain<P>(P);

impl<P: contracts::events::EventPayload + serde::Serialize + Clone + Send + Sync + 'static> crate::ledger::LedgerCommand
    for Chain<P>
{
    type Room = ();
    type Answer = ();
    type Refusal = crate::ledger::LedgerRefusal;
    fn kind(&self) -> &'static str {
        "export_event"
    }
    fn apply(
        &self,
        _: &mut (),
        tx: &mut crate::ledger::KernelTx<'_>,
    ) -> Result<Result<(), crate::ledger::LedgerRefusal>, crate::store::StoreError> {
        tx.event(self.0.clone())?;
        Ok(Ok(()))
    }
}

/// `POST /exports {type, period}`: builds one export of this cell now (the period must be over)
/// and answers its signed manifest (201); when one of that type and period is in the vault
/// already, answers the latest (200): asking again builds nothing (a rebuild is by hand, with
/// `cell export build`).
pub async fn build(
    State(s): State<Arc<AppState>>,
    Extension(t): Extension<TraceId>,
    operator: Option<Extension<OperatorRef>>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<(StatusCode, Json<ExportSummary>), ApiError> {
    let d = s.domains()?;
    let (request, _) = super::json_body::<BuildRequest>(body)?;
    let (store, region, clock, audit) = (d.store.clone(), d.region.clone(), d.clock.clone(), d.audit.clone());
    // One build at a time in a cell: two of the same export would share its id and scratch.
    static BUILDS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _building = BUILDS.lock().await;
    let data_dir = d.data_dir.clone();
    let tamper_token_url = d.tamper_token_url.clone();
    let (vault, wanted) = (Vault::new(&data_dir), (request.kind.clone(), request.period.clone()));
    let cell = region.cell_id.clone();
    let existing = blocking(move || vault.latest(&cell, &wanted.0, &wanted.1)).await?;
    if let Some(existing) = existing {
        return Ok((StatusCode::OK, Json(summary(existing))));
    }
    let built = blocking(move || {
        let exporter = Exporter {
            data_dir: &data_dir,
            region: &region,
            audit_key: audit.key(),
            tamper_token_url: tamper_token_url.as_deref(),
        };
        exporter.build(store.as_ref(), &request.kind, &request.period, clock.now())
    })
    .await?;
    let json = std::fs::read(built.dir.join("manifest.json")).unwrap_or_default();
    let event = contracts::exports::ExportBuilt {
        export_id: built.manifest.export_id.clone(),
        kind: built.manifest.kind.clone(),
        period: built.manifest.period.label.clone(),
        manifest_sha256: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&json)),
        merkle_root: built.manifest.merkle_root.clone(),
        operator: operator.clone().map(|o| o.0),
    };
    let ctx = s.event_context(&t, operator.map(|o| o.0));
    d.ledger.execute_unkeyed(Chain(event), ctx).await?;
    tracing::info!(export = %built.manifest.export_id, events = built.manifest.event_count, "export built");
    Ok((StatusCode::CREATED, Json(summary(built))))
}

fn vault(s: &AppState) -> Result<Vault, ApiError> {
    Ok(Vault::new(&s.domains()?.data_dir))
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[serde(rename = "type")]
    kind: Option<String>,
    /// A period, or its start: `2026-11-29` lists the day's exports and its quarters' batches.
    period: Option<String>,
}

/// `GET /exports[?type=T][&period=P]`: the exports in the vault, oldest first (manifests and
/// signatures), of type `T`, of periods starting with `P` (a day's batches come 96 a day).
pub async fn list(
    State(s): State<Arc<AppState>>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<ExportList>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(CellCode::InvalidQuery, e.body_text()))?;
    let vault = vault(&s)?;
    let stored = blocking(move || vault.list()).await?;
    let wanted = |m: &contracts::exports::ExportManifest| {
        q.kind.as_ref().is_none_or(|k| *k == m.kind) && q.period.as_ref().is_none_or(|p| m.period.label.starts_with(p))
    };
    Ok(Json(ExportList { exports: stored.into_iter().filter(|s| wanted(&s.manifest)).map(summary).collect() }))
}

async fn stored(s: &AppState, id: String) -> Result<Stored, ApiError> {
    let vault = vault(s)?;
    let key = id.clone();
    blocking(move || vault.get(&key)).await?.ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, CellCode::ExportNotFound, format!("no export `{id}` in this cell"))
    })
}

/// `GET /exports/{id}`: one export's manifest and signature.
pub async fn get(State(s): State<Arc<AppState>>, Path(id): Path<String>) -> Result<Json<ExportSummary>, ApiError> {
    Ok(Json(summary(stored(&s, id).await?)))
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProofQuery {
    seq: u64,
}

/// `GET /exports/{id}/proof?seq=N`: the Merkle path from event N to the export's root (404 when
/// the export does not include it).
pub async fn proof(
    State(s): State<Arc<AppState>>,
    Path(id): Path<String>,
    query: Result<Query<ProofQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<InclusionProof>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(CellCode::InvalidQuery, e.body_text()))?;
    let export = stored(&s, id.clone()).await?;
    let csv = std::fs::read_to_string(export.dir.join("events.csv")).unwrap_or_default();
    let mut leaves = Vec::new();
    let mut index = None;
    for line in csv.lines().skip(1) {
        let mut parts = line.split(',');
        let (Some(seq), Some(hash)) = (parts.next().and_then(|x| x.parse::<u64>().ok()), parts.next()) else {
            continue;
        };
        let hash: [u8; 32] = hex::decode(hash).ok().and_then(|h| h.try_into().ok()).unwrap_or_default();
        if seq == q.seq {
            index = Some(leaves.len());
        }
        leaves.push(hash);
    }
    let Some(index) = index else {
        let message = format!("export `{id}` does not include event {}", q.seq);
        return Err(ApiError::new(StatusCode::NOT_FOUND, CellCode::ExportNotFound, message));
    };
    let path = crate::exports::merkle::path(&leaves, index);
    Ok(Json(InclusionProof {
        export_id: id,
        seq: q.seq,
        record_hash: hex::encode(leaves[index]),
        leaf_index: index as u64,
        leaf_count: leaves.len() as u64,
        path: path.iter().map(hex::encode).collect(),
        merkle_root: export.manifest.merkle_root,
    }))
}

/// `GET /exports/{id}/files/{path}`: one file of an export (its path as the manifest names it);
/// the download is chained first (`export.downloaded`, with who took it).
pub async fn file(
    State(s): State<Arc<AppState>>,
    Extension(t): Extension<TraceId>,
    operator: Option<Extension<OperatorRef>>,
    Path((id, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let d = s.domains()?;
    let export = stored(&s, id.clone()).await?;
    let named = ["manifest.json", "manifest.sig"].contains(&name.as_str());
    let listed = export.manifest.files.iter().find(|f| f.name == name);
    if listed.is_none() && !named {
        let message = format!("export `{id}` has no file `{name}`");
        return Err(ApiError::new(StatusCode::NOT_FOUND, CellCode::ExportNotFound, message));
    }
    // A file is one `Lote` (at most 10 sub-records of 1,000 players): read whole.
    let path = export.dir.join(&name);
    let bytes =
        blocking(move || std::fs::read(&path).map_err(|e| ExportError::Io { path: name_of(&path), error: e })).await?;
    let event = ExportDownloaded {
        export_id: id,
        file: name.clone(),
        sha256: listed.map(|f| f.sha256.clone()).unwrap_or_default(),
        operator: operator.clone().map(|o| o.0),
    };
    d.ledger.execute_unkeyed(Chain(event), s.event_context(&t, operator.map(|o| o.0))).await?;
    let content_type = if name.ends_with(".json") { "application/json" } else { "application/octet-stream" };
    Response::builder()
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(bytes))
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, CellCode::ExportRefused, e.to_string()))
}
