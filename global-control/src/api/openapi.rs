//! `/openapi.json`: the control API as OpenAPI 3.1, its schemas generated from the `contracts` types.

use axum::Json;
use contracts::catalog::{Game, GamePutRequest, Provider, ProviderPutRequest};
use contracts::changes::{ChangePage, ChangeRecord};
use contracts::flags::{ChangeReason, EvaluationContext, EvaluationResult, Flag, FlagLock, FlagPutRequest};
use contracts::operators::{OperatorTokenRequest, OperatorTokenResponse};
use contracts::ErrorBody;
use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, SchemaGenerator};
use serde_json::{json, Value};
use std::sync::OnceLock;

fn schema<T: JsonSchema>(g: &mut SchemaGenerator) -> Value {
    g.subschema_for::<T>().to_value()
}

/// One operation: who may call it, what it takes, what it answers, how it refuses.
fn op(summary: &str, roles: &str, request: Option<Value>, ok: (&str, Value), errors: &[&str], error: &Value) -> Value {
    let mut codes = vec!["401", "403", "429"];
    codes.extend(errors);
    let responses = refused(
        json!({ ok.0: { "description": "done", "content": { "application/json": { "schema": ok.1 } } } }),
        &codes,
        error,
    );
    let mut operation = json!({
        "summary": summary,
        "description": format!("Roles: {roles}."),
        "security": [{ "bearer": [] }],
        "responses": responses
    });
    if let Some(request) = request {
        operation["requestBody"] =
            json!({ "required": true, "content": { "application/json": { "schema": request } } });
    }
    operation
}

/// `responses` with a `{code, message}` refusal under each of `codes`.
fn refused(mut responses: Value, codes: &[&str], error: &Value) -> Value {
    for code in codes {
        responses[*code] = json!({ "description": "refused; `code` says why", "content": { "application/json": { "schema": error.clone() } } });
    }
    responses
}

fn path_param(name: &str) -> Value {
    json!([{ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }])
}

fn build() -> Value {
    let mut settings = SchemaSettings::draft2020_12();
    settings.definitions_path = "/components/schemas".into();
    let mut g = settings.into_generator();
    let e = schema::<ErrorBody>(&mut g);
    let flag = schema::<Flag>(&mut g);
    let flags = json!({ "type": "array", "items": flag.clone() });
    let flag_put = schema::<FlagPutRequest>(&mut g);
    let reason = schema::<ChangeReason>(&mut g);
    let record = schema::<ChangeRecord>(&mut g);
    let page = schema::<ChangePage>(&mut g);
    let ctx = schema::<EvaluationContext>(&mut g);
    let result = schema::<EvaluationResult>(&mut g);
    let locks =
        json!({ "type": "object", "additionalProperties": { "type": "array", "items": schema::<FlagLock>(&mut g) } });
    let provider = schema::<Provider>(&mut g);
    let provider_put = schema::<ProviderPutRequest>(&mut g);
    let game = schema::<Game>(&mut g);
    let game_put = schema::<GamePutRequest>(&mut g);
    let operator_request = schema::<OperatorTokenRequest>(&mut g);
    let operator_response = schema::<OperatorTokenResponse>(&mut g);
    let any = json!({ "type": "object" });
    let list = |item: &Value| json!({ "type": "array", "items": item });
    let paged = json!([
        { "name": "after", "in": "query", "schema": { "type": "integer", "minimum": 0, "maximum": u64::MAX } },
        { "name": "limit", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": 1000 } }
    ]);
    let (fr, fw, cr, cw) =
        ("product, catalog, ops, admin", "product, admin", "product, catalog, ops, admin", "catalog, admin");
    let mut revoke = op("Revoke a token", "admin", None, ("204", any.clone()), &["404"], &e);
    revoke["responses"]["204"] = json!({ "description": "revoked" });
    let paths = json!({
        "/flags": { "get": op("Every flag", fr, None, ("200", flags), &[], &e) },
        "/flags/{key}": {
            "parameters": path_param("key"),
            "get": op("One flag", fr, None, ("200", flag.clone()), &["404"], &e),
            "put": op("Create or replace a flag (validated, checked against every region's regulatory locks, versioned with actor and reason)", fw, Some(flag_put), ("200", flag.clone()), &["400", "409", "413"], &e),
            "delete": op("Delete a flag", fw, Some(reason.clone()), ("200", record), &["400", "404"], &e)
        },
        "/flags/{key}/kill": { "parameters": path_param("key"), "post": op("Kill switch: the flag serves its off variant in every region", fw, Some(reason.clone()), ("200", flag), &["400", "404", "409"], &e) },
        "/flags/{key}/history": { "parameters": path_param("key"), "get": op("Every change to one flag, oldest first", fr, None, ("200", page.clone()), &["400"], &e) },
        "/flags/{key}/evaluate": { "parameters": path_param("key"), "post": op("Evaluate as a cell would (the region's locks included)", fr, Some(ctx), ("200", result), &["400"], &e) },
        "/changes": { "get": { "parameters": paged, "summary": "The change log (flags, catalog, operator-token keys), oldest first", "security": [{ "bearer": [] }], "responses": refused(json!({ "200": { "description": "a page", "content": { "application/json": { "schema": page } } } }), &["400", "401", "403", "429"], &e) } },
        "/locks": { "get": op("Regulatory flag locks by region, from the region files", fr, None, ("200", locks), &[], &e) },
        "/catalog/providers": { "get": op("Every provider", cr, None, ("200", list(&provider)), &[], &e) },
        "/catalog/providers/{id}": {
            "parameters": path_param("id"),
            "get": op("One provider", cr, None, ("200", provider.clone()), &["404"], &e),
            "put": op("Create or replace a provider", cw, Some(provider_put), ("200", provider), &["400", "413"], &e)
        },
        "/catalog/games": { "get": op("Every game; `?jurisdiction=UK` for those offered there", cr, None, ("200", list(&game)), &["400"], &e) },
        "/catalog/games/{id}": {
            "parameters": path_param("id"),
            "get": op("One game", cr, None, ("200", game.clone()), &["404"], &e),
            "put": op("Create or replace a game (available only where certified; its provider must exist)", cw, Some(game_put), ("200", game), &["400", "413", "422"], &e),
            "delete": op("Delete a game", cw, Some(reason), ("200", any.clone()), &["404"], &e)
        },
        "/cells": { "get": op("Cells connected over QUIC sync, with the versions sent and acknowledged", "ops, admin", None, ("200", any.clone()), &[], &e) },
        "/exports/{jurisdiction}": { "parameters": path_param("jurisdiction"), "get": op("A jurisdiction's scheduled exports, newest period first: each one's state (pending, built, failed), attempts and last error, and once built the cell's signed manifest (the files stay in the cell)", "regulator:<that jurisdiction>, admin", None, ("200", any.clone()), &["404"], &e) },
        "/exports/{jurisdiction}/{exportId}/files/{file}": {
            "parameters": [
                { "name": "jurisdiction", "in": "path", "required": true, "schema": { "type": "string" } },
                { "name": "exportId", "in": "path", "required": true, "schema": { "type": "string" } },
                { "name": "file", "in": "path", "required": true, "schema": { "type": "string" } }
            ],
            "get": {
                "summary": "One file of an export, streamed from the cell that holds it; the cell chains the download with the caller's regulator role (export.downloaded)",
                "description": "Roles: regulator:<that jurisdiction>, admin.",
                "security": [{ "bearer": [] }],
                "responses": {
                    "200": { "description": "the file", "content": { "application/octet-stream": {} } },
                    "401": { "description": "UNAUTHENTICATED", "content": { "application/json": { "schema": e.clone() } } },
                    "403": { "description": "FORBIDDEN (another jurisdiction's)", "content": { "application/json": { "schema": e.clone() } } },
                    "404": { "description": "JURISDICTION_NOT_FOUND, or the cell's EXPORT_NOT_FOUND", "content": { "application/json": { "schema": e.clone() } } },
                    "429": { "description": "AUTH_THROTTLED", "content": { "application/json": { "schema": e.clone() } } },
                    "502": { "description": "CELL_UNAVAILABLE", "content": { "application/json": { "schema": e.clone() } } }
                }
            }
        },
        "/tokens": {
            "post": op("Create an API token; the secret appears only in this answer", "admin", Some(json!({ "type": "object", "required": ["name", "roles"], "properties": { "name": { "type": "string" }, "roles": { "type": "array", "items": { "type": "string", "description": "admin | product | catalog | ops | finance | compliance | regulator:<UK|MT|DK|SE|ES>" } } } })), ("201", any.clone()), &["400"], &e),
            "get": op("Every token (never a secret)", "admin", None, ("200", list(&any)), &[], &e)
        },
        "/operator-tokens": { "post": op("A 15-minute operator token for a cell's back office, for one role, signed with global-control's Ed25519 key", "that role, admin", Some(operator_request), ("201", operator_response), &["400"], &e) },
        "/tokens/{id}": { "parameters": path_param("id"), "delete": revoke },
        "/healthz": { "get": { "summary": "Liveness", "responses": { "200": { "description": "alive" } } } },
        "/readyz": { "get": { "summary": "Readiness", "responses": { "200": { "description": "ready" } } } },
        "/metrics": { "get": { "summary": "Prometheus metrics", "responses": { "200": { "description": "metrics" } } } }
    });
    json!({
        "openapi": "3.1.0",
        "info": { "title": "global-control API", "version": contracts::flags::FLAGS_API_VERSION },
        "paths": paths,
        "components": {
            "schemas": g.take_definitions(true),
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer", "description": "an API token (`gct_...`)" } }
        }
    })
}

pub async fn document() -> Json<Value> {
    static DOCUMENT: OnceLock<Value> = OnceLock::new();
    Json(DOCUMENT.get_or_init(build).clone())
}
