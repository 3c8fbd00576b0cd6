//! `/openapi.json`: the cell's API as OpenAPI 3.1, its schemas generated from the `contracts` types.

use axum::Json;
use contracts::events::EventPage;
use contracts::players::{Player, RegisterPlayerRequest};
use contracts::sessions::{SessionKey, SessionRequest, SessionResponse};
use contracts::wallet::{
    BalanceResponse, HoldRequest, HoldResponse, MovementRequest, MovementResponse, SettleRequest, SettleResponse,
};
use contracts::ErrorBody;
use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, SchemaGenerator};
use serde_json::{json, Value};
use std::sync::OnceLock;

fn schema<T: JsonSchema>(g: &mut SchemaGenerator) -> Value {
    g.subschema_for::<T>().to_value()
}

fn mutating(error: &Value, summary: &str, request: Value, ok_status: &str, response: Value, errors: &[&str]) -> Value {
    let mut responses = json!({ ok_status: { "description": "done (or the stored answer of a replay, with Idempotent-Replay: true)", "content": { "application/json": { "schema": response } } } });
    for code in errors {
        responses[*code] = json!({ "description": "refused; `code` says why", "content": { "application/json": { "schema": error.clone() } } });
    }
    json!({
        "post": {
            "summary": summary,
            "parameters": [{ "name": "X-Idempotency-Key", "in": "header", "required": true, "schema": { "type": "string", "maxLength": 128 } }],
            "requestBody": { "required": true, "content": { "application/json": { "schema": request } } },
            "responses": responses
        }
    })
}

fn build() -> Value {
    let mut settings = SchemaSettings::draft2020_12();
    settings.definitions_path = "/components/schemas".into();
    let mut g = settings.into_generator();
    let error = schema::<ErrorBody>(&mut g);
    let (movement_req, movement_res) = (schema::<MovementRequest>(&mut g), schema::<MovementResponse>(&mut g));
    let (player_req, player_res) = (schema::<RegisterPlayerRequest>(&mut g), schema::<Player>(&mut g));
    let (hold_req, hold_res) = (schema::<HoldRequest>(&mut g), schema::<HoldResponse>(&mut g));
    let (settle_req, settle_res) = (schema::<SettleRequest>(&mut g), schema::<SettleResponse>(&mut g));
    let (balance, page) = (schema::<BalanceResponse>(&mut g), schema::<EventPage>(&mut g));
    let (session_req, session_res, session_key) =
        (schema::<SessionRequest>(&mut g), schema::<SessionResponse>(&mut g), schema::<SessionKey>(&mut g));
    let paths = json!({
        "/players": mutating(&error, "Register a player in this cell", player_req, "201", player_res, &["400", "409", "413", "422"]),
        "/wallet/credit": mutating(&error, "Credit a player's cash", movement_req.clone(), "200", movement_res.clone(), &["400", "404", "409", "413", "422", "503"]),
        "/wallet/debit": mutating(&error, "Debit a player's cash", movement_req, "200", movement_res, &["400", "404", "409", "413", "422", "503"]),
        "/wallet/hold": mutating(&error, "Hold a stake for an open bet", hold_req, "200", hold_res, &["400", "404", "409", "413", "422", "503"]),
        "/wallet/settle": mutating(&error, "Settle a round: release its holds and post payouts, once", settle_req, "200", settle_res, &["400", "404", "409", "413", "422", "503"]),
        "/wallet/{playerId}/balance": { "get": {
            "summary": "A player's balances, now or as of a past instant",
            "parameters": [
                { "name": "playerId", "in": "path", "required": true, "schema": { "type": "string" } },
                { "name": "currency", "in": "query", "schema": { "type": "string" } },
                { "name": "as_of", "in": "query", "schema": { "type": "string", "format": "date-time" } }
            ],
            "responses": { "200": { "description": "balances", "content": { "application/json": { "schema": balance } } } }
        } },
        "/events": { "get": {
            "summary": "The cell's event log after a cursor",
            "parameters": [
                { "name": "after", "in": "query", "schema": { "type": "string" } },
                { "name": "limit", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": crate::events::PAGE_EVENTS_MAX } }
            ],
            "responses": { "200": { "description": "a page of events", "content": { "application/json": { "schema": page } } } }
        } },
        "/sessions": { "post": {
            "summary": "A 15-minute session token for a registered player (stores nothing, so no idempotency key)",
            "requestBody": { "required": true, "content": { "application/json": { "schema": session_req } } },
            "responses": {
                "201": { "description": "token", "content": { "application/json": { "schema": session_res } } },
                "404": { "description": "PLAYER_NOT_FOUND", "content": { "application/json": { "schema": error.clone() } } }
            }
        } },
        "/sessions/key": { "get": {
            "summary": "The public key that verifies this cell's session tokens",
            "responses": { "200": { "description": "key", "content": { "application/json": { "schema": session_key } } } }
        } },
        "/healthz": { "get": { "summary": "Liveness", "responses": { "200": { "description": "alive" } } } },
        "/readyz": { "get": { "summary": "Readiness: 200 once the store is open", "responses": { "200": { "description": "ready" }, "503": { "description": "opening" } } } },
        "/metrics": { "get": { "summary": "Prometheus metrics", "responses": { "200": { "description": "metrics" } } } }
    });
    json!({
        "openapi": "3.1.0",
        "info": { "title": "cell API", "version": contracts::wallet::WALLET_API_VERSION },
        "paths": paths,
        "components": { "schemas": g.take_definitions(true) }
    })
}

pub async fn document() -> Json<Value> {
    static DOCUMENT: OnceLock<Value> = OnceLock::new();
    Json(DOCUMENT.get_or_init(build).clone())
}
