//! Denmark's TamperToken service (SAFE), as the Spillemyndigheden runs it for operators: the
//! operator opens a token before writing a batch of game files, chains an HMAC-SHA256 over them
//! (each file's MAC keyed by the previous MAC; the first by the token's key) and closes the token
//! with the last MAC, which the regulator then holds against the files it reads.
//!
//! - `POST /tamper-token/v1/tokens {safeId}` → 201 `{tokenId, key}` (key: 32 bytes, hex).
//! - `POST /tamper-token/v1/tokens/{tokenId}/close {mac, files}` → 200; a token closes once (409).
//! - `GET /tamper-token/v1/tokens/{tokenId}` → `{tokenId, safeId, key, closed, mac, files}`: what
//!   the regulator knows of it (its key included: the regulator checks the chain with it).

use super::Sandbox;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone)]
struct Token {
    safe_id: String,
    key: String,
    closed: Option<(String, u64)>,
}

#[derive(Default)]
pub struct TamperTokens {
    tokens: Mutex<BTreeMap<String, Token>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Open {
    safe_id: String,
}

pub async fn open(
    State(s): State<Arc<Sandbox>>,
    body: Result<Json<Open>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(Json(open)) = body else {
        return (StatusCode::BAD_REQUEST, Json(json!({ "error": "safeId" }))).into_response();
    };
    if let Some(fault) = s.enter("tamper-token", json!({ "open": open.safe_id })).await {
        return fault;
    }
    let token_id = format!("TT{}", hex::encode(rand::random::<[u8; 8]>()).to_uppercase());
    let key = hex::encode(rand::random::<[u8; 32]>());
    let token = Token { safe_id: open.safe_id, key: key.clone(), closed: None };
    s.tamper.tokens.lock().unwrap_or_else(|e| e.into_inner()).insert(token_id.clone(), token);
    (StatusCode::CREATED, Json(json!({ "tokenId": token_id, "key": key }))).into_response()
}

#[derive(Debug, Deserialize)]
pub struct Close {
    mac: String,
    files: u64,
}

pub async fn close(
    State(s): State<Arc<Sandbox>>,
    Path(id): Path<String>,
    body: Result<Json<Close>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(Json(close)) = body else {
        return (StatusCode::BAD_REQUEST, Json(json!({ "error": "mac, files" }))).into_response();
    };
    let mut tokens = s.tamper.tokens.lock().unwrap_or_else(|e| e.into_inner());
    let Some(token) = tokens.get_mut(&id) else {
        return (StatusCode::NOT_FOUND, Json(json!({ "error": "no such token" }))).into_response();
    };
    if token.closed.is_some() {
        return (StatusCode::CONFLICT, Json(json!({ "error": "already closed" }))).into_response();
    }
    token.closed = Some((close.mac, close.files));
    (StatusCode::OK, Json(json!({ "closed": true }))).into_response()
}

pub async fn get(State(s): State<Arc<Sandbox>>, Path(id): Path<String>) -> Response {
    let tokens = s.tamper.tokens.lock().unwrap_or_else(|e| e.into_inner());
    let Some(t) = tokens.get(&id) else {
        return (StatusCode::NOT_FOUND, Json(json!({ "error": "no such token" }))).into_response();
    };
    let (mac, files) = t.closed.clone().map_or((None, None), |(m, f)| (Some(m), Some(f)));
    Json(json!({ "tokenId": id, "safeId": t.safe_id, "key": t.key, "closed": t.closed.is_some(), "mac": mac, "files": files }))
        .into_response()
}
