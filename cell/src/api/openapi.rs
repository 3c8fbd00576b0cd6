//! `/openapi.json`: the cell's API as OpenAPI 3.1, its schemas generated from the `contracts` types.

use super::callers::Access;
use axum::Json;
use contracts::audit::{AuditRecordPage, Checkpoint, CheckpointList, VerifyReport};
use contracts::events::EventPage;
use contracts::flags::EvaluationResult;
use contracts::gaming::{
    MaintenanceRequest, ProviderStatus, PulseCancel, PulseCredit, PulseDebit, PulseEndRound, PulseGetBalance,
    PulseResponse, SeamlessBalance, SeamlessBet, SeamlessResponse, SeamlessRollback, SeamlessWin,
};
use contracts::players::{Player, RegisterPlayerRequest};
use contracts::sessions::{RefreshRequest, SessionKey, SessionRequest, SessionResponse};
use contracts::wallet::{
    BalanceResponse, HoldRequest, HoldResponse, MovementRequest, MovementResponse, SettleRequest, SettleResponse,
};
use contracts::ErrorBody;
use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, SchemaGenerator};
use serde_json::{json, Value};
use std::sync::OnceLock;

/// `X-Idempotency-Key`: 1 to 128 printable ASCII characters, not starting `g|` (game providers'
/// transaction ids, `idempotency::PROVIDER_KEY_PREFIX`).
const IDEMPOTENCY_KEY_PATTERN: &str = "^([!-fh-~][!-~]{0,127}|g([!-{}~][!-~]{0,126})?)$";

/// Routes that answer before the store is open: never `NOT_READY`.
const OPS_PATHS: [&str; 4] = ["/healthz", "/readyz", "/metrics", "/openapi.json"];

fn schema<T: JsonSchema>(g: &mut SchemaGenerator) -> Value {
    g.subschema_for::<T>().to_value()
}

fn json_answer(description: &str, schema: Value) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": schema } } })
}

/// `responses` with a `{code, message}` refusal under each of `errors`.
fn refusals(mut responses: Value, error: &Value, errors: &[&str]) -> Value {
    for code in errors {
        responses[*code] = json_answer("refused; `code` says why", error.clone());
    }
    responses
}

/// A GET answering `schema`, refusing with `errors`.
fn read(error: &Value, summary: &str, parameters: Value, schema: Value, errors: &[&str]) -> Value {
    let responses = refusals(json!({ "200": json_answer("done", schema) }), error, errors);
    json!({ "summary": summary, "parameters": parameters, "responses": responses })
}

fn mutating(error: &Value, summary: &str, request: Value, ok_status: &str, response: Value, errors: &[&str]) -> Value {
    let done = json_answer("done (or the stored answer of a replay, with Idempotent-Replay: true)", response);
    let responses = refusals(json!({ ok_status: done }), error, errors);
    json!({
        "post": {
            "summary": summary,
            "parameters": [{ "name": "X-Idempotency-Key", "in": "header", "required": true, "schema": { "type": "string", "pattern": IDEMPOTENCY_KEY_PATTERN } }],
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
    let refresh_req = schema::<RefreshRequest>(&mut g);
    let totp_enrolment = schema::<contracts::sessions::TotpEnrolment>(&mut g);
    let player_id = schema::<contracts::PlayerId>(&mut g);
    let limits_view = schema::<contracts::limits::LimitsView>(&mut g);
    let balance_parameters = json!([
        { "name": "playerId", "in": "path", "required": true, "schema": player_id.clone() },
        { "name": "currency", "in": "query", "schema": schema::<contracts::Currency>(&mut g) },
        { "name": "as_of", "in": "query", "schema": { "type": "string", "format": "date-time" } }
    ]);
    let paths = json!({
        "/players": mutating(&error, "Register a player in this cell: the profile the region requires (PROFILE_INCOMPLETE), its self-exclusion register (SELF_EXCLUDED), the sanctions list (a hit opens an AML case), the KYC vendor's check (its result comes by webhook); an outside party that does not answer fails it closed with 503 and Retry-After, nothing written", player_req, "201", player_res, &["400", "403", "409", "413", "422", "503"]),
        "/wallet/credit": mutating(&error, "Credit a player's cash", movement_req.clone(), "200", movement_res.clone(), &["400", "404", "409", "413", "422", "500", "503"]),
        "/wallet/debit": mutating(&error, "Debit a player's cash", movement_req, "200", movement_res, &["400", "404", "409", "413", "422", "500", "503"]),
        "/wallet/hold": mutating(&error, "Hold a stake for an open bet", hold_req, "200", hold_res, &["400", "404", "409", "413", "422", "500", "503"]),
        "/wallet/settle": mutating(&error, "Settle a round: release its holds and post payouts, once", settle_req, "200", settle_res, &["400", "404", "409", "413", "422", "500", "503"]),
        "/wallet/{playerId}/balance": { "get": {
            "summary": "A player's balances, now or as of a past instant, with the player's own Authorization: Bearer access token",
            "parameters": balance_parameters.clone(),
            "responses": {
                "200": { "description": "balances", "content": { "application/json": { "schema": balance.clone() } } },
                "401": { "description": "INVALID_SESSION: no valid access token", "content": { "application/json": { "schema": error.clone() } } },
                "403": { "description": "NOT_YOUR_ACCOUNT: another player's token", "content": { "application/json": { "schema": error.clone() } } }
            }
        } },
        "/ops/players/{playerId}/balance": { "get": {
            "summary": "Any player's balances, for the back office",
            "parameters": balance_parameters,
            "responses": {
                "200": { "description": "balances", "content": { "application/json": { "schema": balance } } },
                "400": json_answer("INVALID_QUERY, INVALID_PLAYER_ID, INVALID_AS_OF", error.clone()),
                "404": json_answer("PLAYER_NOT_FOUND", error.clone())
            }
        } },
        "/events": { "get": {
            "summary": "The cell's event log: oldest first after a cursor, or (order=desc) newest first before one",
            "parameters": [
                { "name": "after", "in": "query", "description": "a cursor: only events after it", "schema": { "type": "string", "pattern": "^[0-9a-fA-F]{24}$" } },
                { "name": "before", "in": "query", "description": "a cursor: only events before it", "schema": { "type": "string", "pattern": "^[0-9a-fA-F]{24}$" } },
                { "name": "order", "in": "query", "schema": { "type": "string", "enum": ["asc", "desc"] } },
                { "name": "limit", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": crate::events::PAGE_EVENTS_MAX } }
            ],
            "responses": {
                "200": { "description": "a page of events", "content": { "application/json": { "schema": page } } },
                "400": json_answer("INVALID_QUERY, INVALID_LIMIT, INVALID_CURSOR", error.clone())
            }
        } },
        "/sessions": {
            "post": {
                "summary": "A login: a 15-minute access token naming the session, and a refresh token (no idempotency key: a retry is another login)",
                "requestBody": { "required": true, "content": { "application/json": { "schema": session_req } } },
                "responses": {
                    "201": { "description": "tokens", "content": { "application/json": { "schema": session_res.clone() } } },
                    "400": { "description": "MALFORMED_JSON, INVALID_REQUEST", "content": { "application/json": { "schema": error.clone() } } },
                    "401": { "description": "INVALID_CREDENTIALS (alike for an unknown player id), TOTP_REQUIRED", "content": { "application/json": { "schema": error.clone() } } },
                    "429": { "description": "LOGIN_THROTTLED, with Retry-After", "content": { "application/json": { "schema": error.clone() } } }
                }
            },
            "delete": {
                "summary": "Logout: ends the session of the Authorization: Bearer access token",
                "responses": {
                    "204": { "description": "the session has ended" },
                    "401": { "description": "INVALID_SESSION", "content": { "application/json": { "schema": error.clone() } } }
                }
            }
        },
        "/players/{playerId}/totp": { "post": {
            "summary": "Enrol an authenticator (RFC 6238) for the bearer token's player: logins then need its code",
            "parameters": [{ "name": "playerId", "in": "path", "required": true, "schema": player_id.clone() }],
            "responses": {
                "201": { "description": "the secret, as base32 and an otpauth:// URL", "content": { "application/json": { "schema": totp_enrolment } } },
                "401": { "description": "INVALID_SESSION", "content": { "application/json": { "schema": error.clone() } } },
                "403": { "description": "NOT_YOUR_ACCOUNT", "content": { "application/json": { "schema": error.clone() } } },
                "409": { "description": "TOTP_ALREADY_ENROLLED", "content": { "application/json": { "schema": error.clone() } } }
            }
        } },
        "/players/{playerId}/limits": {
            "get": {
                "summary": "The bearer token's player's limits in force (used and left this period), pending increases, time-out and self-exclusion",
                "security": [{ "sessionToken": [] }],
                "parameters": [{ "name": "playerId", "in": "path", "required": true, "schema": player_id.clone() }],
                "responses": {
                    "200": json_answer("limits", limits_view.clone()),
                    "401": json_answer("INVALID_SESSION", error.clone()),
                    "404": json_answer("PLAYER_NOT_FOUND", error.clone())
                }
            },
            "put": {
                "summary": "Change deposit or loss limits (day, week, month): a decrease or a new limit at once, an increase or a removal after the region's cooling-off period (pending until effectiveAt)",
                "security": [{ "sessionToken": [] }],
                "parameters": [{ "name": "playerId", "in": "path", "required": true, "schema": player_id.clone() }],
                "requestBody": { "required": true, "content": { "application/json": { "schema": schema::<contracts::limits::LimitsRequest>(&mut g) } } },
                "responses": {
                    "200": json_answer("limits", limits_view.clone()),
                    "400": json_answer("MALFORMED_JSON, INVALID_REQUEST (an amount not positive or not at the currency's scale, a limit changed twice)", error.clone()),
                    "401": json_answer("INVALID_SESSION", error.clone()),
                    "404": json_answer("PLAYER_NOT_FOUND", error.clone())
                }
            }
        },
        "/players/{playerId}/timeout": { "post": {
            "summary": "A time-out of 24 hours to six weeks: no deposit and no bet until it ends; a shorter one never shortens a longer one",
            "security": [{ "sessionToken": [] }],
            "parameters": [{ "name": "playerId", "in": "path", "required": true, "schema": player_id.clone() }],
            "requestBody": { "required": true, "content": { "application/json": { "schema": schema::<contracts::limits::TimeoutRequest>(&mut g) } } },
            "responses": {
                "200": json_answer("limits", limits_view.clone()),
                "400": json_answer("MALFORMED_JSON, INVALID_REQUEST", error.clone()),
                "401": json_answer("INVALID_SESSION", error.clone()),
                "404": json_answer("PLAYER_NOT_FOUND", error.clone())
            }
        } },
        "/players/{playerId}/self-exclusion": { "post": {
            "summary": "Self-exclusion from this operator for 6 months to 5 years: no deposit and no bet until it ends (withdrawals stay open); nothing shortens it",
            "security": [{ "sessionToken": [] }],
            "parameters": [{ "name": "playerId", "in": "path", "required": true, "schema": player_id.clone() }],
            "requestBody": { "required": true, "content": { "application/json": { "schema": schema::<contracts::limits::SelfExclusionRequest>(&mut g) } } },
            "responses": {
                "200": json_answer("limits", limits_view),
                "400": json_answer("MALFORMED_JSON, INVALID_REQUEST", error.clone()),
                "401": json_answer("INVALID_SESSION", error.clone()),
                "404": json_answer("PLAYER_NOT_FOUND", error.clone())
            }
        } },
        "/compliance/players/{playerId}/decisions": { "get": {
            "summary": "Every compliance decision about a player, oldest first: the self-exclusion register's answers, limit changes, time-outs and self-exclusions, each with its rule, policy version, source and time",
            "parameters": [{ "name": "playerId", "in": "path", "required": true, "schema": player_id.clone() }],
            "responses": {
                "200": json_answer("the decisions", schema::<contracts::limits::DecisionLog>(&mut g)),
                "400": json_answer("INVALID_PLAYER_ID", error.clone())
            }
        } },
        "/compliance/cases": { "get": {
            "summary": "Every anti-money-laundering case, open ones first (a sanctions-list hit at registration opens one and holds the player's withdrawals: AML_REVIEW)",
            "responses": { "200": json_answer("the cases", schema::<contracts::limits::CaseList>(&mut g)) }
        } },
        "/compliance/cases/{caseId}": { "post": {
            "summary": "Decide a case: cleared (a false positive: withdrawals flow again) or confirmed, with a reason; recorded with the operator in the decision log and an aml.case_decided event",
            "parameters": [{ "name": "caseId", "in": "path", "required": true, "schema": { "type": "string" } }],
            "requestBody": { "required": true, "content": { "application/json": { "schema": schema::<contracts::limits::CaseDecision>(&mut g) } } },
            "responses": {
                "200": json_answer("the case as decided", schema::<contracts::limits::AmlCase>(&mut g)),
                "400": json_answer("MALFORMED_JSON, INVALID_REQUEST (the case is already decided)", error.clone()),
                "404": json_answer("CASE_NOT_FOUND, PLAYER_NOT_FOUND", error.clone())
            }
        } },
        "/sessions/refresh": { "post": {
            "summary": "A new token pair for a refresh token, which works once (presented again, it ends its session)",
            "requestBody": { "required": true, "content": { "application/json": { "schema": refresh_req } } },
            "responses": {
                "200": { "description": "tokens", "content": { "application/json": { "schema": session_res } } },
                "400": json_answer("MALFORMED_JSON, INVALID_REQUEST", error.clone()),
                "401": { "description": "INVALID_SESSION", "content": { "application/json": { "schema": error.clone() } } }
            }
        } },
        "/sessions/key": { "get": {
            "summary": "The public key that verifies this cell's session tokens",
            "responses": { "200": { "description": "key", "content": { "application/json": { "schema": session_key } } } }
        } },
        "/gaming/{provider}/{call}": { "post": {
            "summary": "A game provider's seamless-wallet call, in the provider's own dialect (seamless-v1: bet, win, rollback, endRound, balance; pulse: debit, credit, cancel, endRound, getBalance), authenticated by its HMAC-SHA256 signature and idempotent on its transaction id",
            "parameters": [
                { "name": "provider", "in": "path", "required": true, "schema": { "type": "string" } },
                { "name": "call", "in": "path", "required": true, "schema": { "type": "string" } },
                { "name": "X-Timestamp", "in": "header", "description": "seamless-v1: Unix seconds, signed with the body", "schema": { "type": "string" } },
                { "name": "X-Signature", "in": "header", "description": "seamless-v1: `sha256=` then the hex HMAC-SHA256 of `{timestamp}.{body}`", "schema": { "type": "string" } }
            ],
            "requestBody": { "required": true, "content": { "application/json": { "schema": { "oneOf": [
                schema::<SeamlessBet>(&mut g), schema::<SeamlessWin>(&mut g), schema::<SeamlessRollback>(&mut g), schema::<SeamlessBalance>(&mut g),
                schema::<PulseDebit>(&mut g), schema::<PulseCredit>(&mut g), schema::<PulseCancel>(&mut g), schema::<PulseEndRound>(&mut g), schema::<PulseGetBalance>(&mut g)
            ] } } } },
            "responses": {
                "200": json_answer("the call's answer in the provider's dialect (pulse answers its refusals, a malformed body included, with 200 and its own error fields)", json!({ "oneOf": [schema::<SeamlessResponse>(&mut g), schema::<PulseResponse>(&mut g)] })),
                "400": json_answer("malformed call (MALFORMED_JSON, a repeated key included), AMOUNT_TOO_LARGE, AMOUNT_SCALE and the like", error.clone()),
                "401": json_answer("BAD_SIGNATURE, STALE_REQUEST", error.clone()),
                "404": json_answer("PROVIDER_NOT_FOUND, UNKNOWN_CALL, PLAYER_NOT_FOUND, BET_NOT_FOUND", error.clone()),
                "409": json_answer("TRANSACTION_ID_REUSED and round state refusals", error.clone()),
                "422": json_answer("INSUFFICIENT_FUNDS, STAKE_LIMIT_EXCEEDED, WIN_LIMIT_EXCEEDED, BALANCE_LIMIT and the like", error.clone()),
                "500": json_answer("INTERNAL_REFUSAL: the wallet failed applying this call and refused it (the answer stays recorded under its transaction id)", error.clone()),
                "503": json_answer("PROVIDER_MAINTENANCE, PROVIDER_NOT_CONFIGURED, STORE_UNAVAILABLE", error.clone())
            }
        } },
        "/ops/providers": { "get": read(&error, "Each provider of this cell: dialect, whether its secret is set (`configured`), maintenance state", json!([]), json!({ "type": "array", "items": schema::<ProviderStatus>(&mut g) }), &[]) },
        "/ops/providers/{provider}/maintenance": { "post": {
            "summary": "Put a provider in maintenance (its new bets get 503; wins and rollbacks still settle) or take it out; a state, so no idempotency key; `reason` is required either way",
            "parameters": [{ "name": "provider", "in": "path", "required": true, "schema": { "type": "string" } }],
            "requestBody": { "required": true, "content": { "application/json": { "schema": schema::<MaintenanceRequest>(&mut g) } } },
            "responses": {
                "200": json_answer("the provider's state now", schema::<ProviderStatus>(&mut g)),
                "400": json_answer("REASON_MISSING, MALFORMED_JSON, INVALID_REQUEST", error.clone()),
                "404": json_answer("PROVIDER_NOT_FOUND", error.clone())
            }
        } },
        "/ops/ledger": { "get": read(&error, "Per currency, the sum of every account, player and house, at the currency's scale: zero (\"0.00\" for GBP) when the books balance", json!([]), json!({ "type": "object", "additionalProperties": { "type": "string" } }), &["503"]) },
        "/audit/verify": { "get": read(&error, "Check the whole audit chain and every signed checkpoint", json!([]), schema::<VerifyReport>(&mut g), &["503"]) },
        "/audit/records": { "get": read(&error, "Audit records after a position", json!([
            { "name": "after", "in": "query", "schema": { "type": "integer", "minimum": 0, "maximum": u64::MAX } },
            { "name": "limit", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": crate::audit::PAGE_RECORDS_MAX } }
        ]), schema::<AuditRecordPage>(&mut g), &["400", "503"]) },
        "/audit/checkpoints": {
            "get": read(&error, "The signed checkpoints of the audit chain", json!([]), schema::<CheckpointList>(&mut g), &["503"]),
            "post": {
                "summary": "Sign the chain's head now (signing the same head again is harmless, so no idempotency key)",
                "responses": {
                    "200": json_answer("the checkpoint", schema::<Checkpoint>(&mut g)),
                    "409": json_answer("AUDIT_CHAIN_EMPTY", error.clone()),
                    "503": json_answer("STORE_UNAVAILABLE", error.clone())
                }
            }
        },
        "/flags/evaluate": { "get": read(&error, "Evaluate a flag from this cell's synced copy, OpenFeature-style (STALE when cut off from the control plane); other query parameters are the evaluation context", json!([
            { "name": "flag", "in": "query", "required": true, "schema": { "type": "string" } },
            { "name": "type", "in": "query", "schema": { "type": "string", "enum": ["boolean", "variant"] } },
            { "name": "playerId", "in": "query", "schema": { "type": "string" } }
        ]), schema::<EvaluationResult>(&mut g), &["400", "401"]) },
        "/lobby": { "get": read(&error, "The games this player may see in this jurisdiction, from the synced catalog and flags", json!([
            { "name": "playerId", "in": "query", "schema": { "type": "string" } }
        ]), schema::<crate::domains::catalog::Lobby>(&mut g), &["400", "401"]) },
        "/openapi.json": { "get": { "summary": "This document", "responses": { "200": { "description": "OpenAPI 3.1" } } } },
        "/healthz": { "get": { "summary": "Liveness", "responses": { "200": { "description": "alive" } } } },
        "/readyz": { "get": { "summary": "Readiness: 200 once the store is open (a standby, or a fenced cell: 503)", "responses": { "200": { "description": "ready" }, "503": { "description": "opening, a standby or fenced" } } } },
        "/replication/digest": { "get": read(&error, "This cell's store hashed per keyspace at one version, with its epoch and audit chain head (cell replica verify); a standby answers it too", json!([]), schema::<contracts::replication::ReplicaDigest>(&mut g), &["404"]) },
        "/metrics": { "get": { "summary": "Prometheus metrics", "responses": { "200": { "description": "metrics" } } } }
    });
    // A second literal: one `json!` of every path passes the macro's recursion limit.
    let players_compliance = json!({
        "/players/{playerId}/kyc": { "get": {
            "summary": "The bearer token's player's identity check (notRequested, pending, verified, failed) and, pending where the region allows play before verification, the deposits left and until when",
            "security": [{ "sessionToken": [] }],
            "parameters": [{ "name": "playerId", "in": "path", "required": true, "schema": player_id.clone() }],
            "responses": {
                "200": json_answer("the check", schema::<contracts::players::KycView>(&mut g)),
                "401": json_answer("INVALID_SESSION", error.clone()),
                "403": json_answer("NOT_YOUR_ACCOUNT", error.clone()),
                "404": json_answer("PLAYER_NOT_FOUND", error.clone())
            }
        } },
        "/players/{playerId}/session": { "get": {
            "summary": "The bearer token's player's play session (from their last login): its time limit and reality-check interval, when it ends, when the next reality check is due, and what was staked and returned in it",
            "security": [{ "sessionToken": [] }],
            "parameters": [{ "name": "playerId", "in": "path", "required": true, "schema": player_id.clone() }],
            "responses": {
                "200": json_answer("the session", schema::<contracts::limits::SessionView>(&mut g)),
                "401": json_answer("INVALID_SESSION", error.clone()),
                "403": json_answer("NOT_YOUR_ACCOUNT", error.clone())
            }
        } },
        "/players/{playerId}/session-limits": { "put": {
            "summary": "Set how long a play session may last (10 to 1440 minutes; bets after it: SESSION_TIME_LIMIT_REACHED until the next login) and how often play stops for a reality check (5 to 120 minutes; REALITY_CHECK_DUE until acknowledged); tighter at once, looser after the region's cooling-off",
            "security": [{ "sessionToken": [] }],
            "parameters": [{ "name": "playerId", "in": "path", "required": true, "schema": player_id.clone() }],
            "requestBody": { "required": true, "content": { "application/json": { "schema": schema::<contracts::limits::SessionLimitsRequest>(&mut g) } } },
            "responses": {
                "200": json_answer("the session", schema::<contracts::limits::SessionView>(&mut g)),
                "400": json_answer("MALFORMED_JSON, INVALID_REQUEST", error.clone()),
                "401": json_answer("INVALID_SESSION", error.clone()),
                "403": json_answer("NOT_YOUR_ACCOUNT", error.clone())
            }
        } },
        "/players/{playerId}/reality-check": { "post": {
            "summary": "Acknowledge a reality check (the app showed the time played and the session's result): play goes on until the next one",
            "security": [{ "sessionToken": [] }],
            "parameters": [{ "name": "playerId", "in": "path", "required": true, "schema": player_id.clone() }],
            "responses": {
                "200": json_answer("the session", schema::<contracts::limits::SessionView>(&mut g)),
                "401": json_answer("INVALID_SESSION", error.clone()),
                "403": json_answer("NOT_YOUR_ACCOUNT", error.clone())
            }
        } },
        "/cashier/deposits": { "post": {
            "summary": "Pay in through a PSP: compliance's gates first (location 451, register, limits, KYC, exclusion: 422), then the payment is recorded pending and handed to the PSP; the wallet is credited once, when the PSP confirms the capture. Idempotent on X-Idempotency-Key (a retry answers the same payment, 200)",
            "security": [{ "sessionToken": [] }],
            "parameters": [{ "name": "X-Idempotency-Key", "in": "header", "required": true, "schema": { "type": "string", "pattern": IDEMPOTENCY_KEY_PATTERN } }],
            "requestBody": { "required": true, "content": { "application/json": { "schema": schema::<contracts::cashier::DepositRequest>(&mut g) } } },
            "responses": {
                "201": json_answer("the payment, pending at the PSP", schema::<contracts::cashier::Payment>(&mut g)),
                "200": json_answer("the payment of an earlier request with this key", schema::<contracts::cashier::Payment>(&mut g)),
                "400": json_answer("MALFORMED_JSON, INVALID_REQUEST, IDEMPOTENCY_KEY_MISSING, AMOUNT_SCALE and the like", error.clone()),
                "401": json_answer("INVALID_SESSION", error.clone()),
                "403": json_answer("NOT_YOUR_ACCOUNT, SELF_EXCLUDED", error.clone()),
                "404": json_answer("PSP_NOT_FOUND, PLAYER_NOT_FOUND", error.clone()),
                "409": json_answer("IDEMPOTENCY_KEY_REUSED", error.clone()),
                "413": json_answer("BODY_TOO_LARGE", error.clone()),
                "422": json_answer("DEPOSIT_LIMIT_EXCEEDED, KYC_REQUIRED, SELF_EXCLUDED, CURRENCY_MISMATCH and the like", error.clone()),
                "451": json_answer("LOCATION_NOT_LICENSED", error.clone()),
                "503": json_answer("PSP_UNAVAILABLE (the payment is recorded failed, nothing moved), SELF_EXCLUSION_CHECK_UNAVAILABLE", error.clone())
            }
        } },
        "/cashier/webhooks/{psp}": { "post": {
            "summary": "A PSP's notification (card: AUTHORISATION, CAPTURE), signed `X-Psp-Signature: t=<unix>,v1=<hex HMAC-SHA256 of \"{t}.{body}\">` within the PSP's time window; deduplicated by its eventId and chained as it came (cashier.webhook.received); one about an unknown payment is parked and tried again",
            "parameters": [
                { "name": "psp", "in": "path", "required": true, "schema": { "type": "string" } },
                { "name": "X-Psp-Signature", "in": "header", "required": true, "schema": { "type": "string" } }
            ],
            "requestBody": { "required": true, "content": { "application/json": { "schema": { "type": "object" } } } },
            "responses": {
                "200": { "description": "taken (a duplicate, a parked one, a late one included)" },
                "400": json_answer("BODY_UNREADABLE, INVALID_REQUEST", error.clone()),
                "401": json_answer("BAD_SIGNATURE: writes nothing", error.clone()),
                "404": json_answer("PSP_NOT_FOUND", error.clone())
            }
        } },
        "/cashier/withdrawals": {
            "post": {
                "summary": "Pay out through a PSP to a method the player deposited with: the amount leaves cash at once (held; compliance's gates: AML_REVIEW, KYC_REQUIRED), then the PSP pays it (payout.paid) or it comes back (payout.failed); a withdrawal off the closed loop or above the region's review amount waits for the finance role. Open from anywhere. Idempotent on X-Idempotency-Key",
                "security": [{ "sessionToken": [] }],
                "parameters": [{ "name": "X-Idempotency-Key", "in": "header", "required": true, "schema": { "type": "string", "pattern": IDEMPOTENCY_KEY_PATTERN } }],
                "requestBody": { "required": true, "content": { "application/json": { "schema": schema::<contracts::cashier::WithdrawalRequest>(&mut g) } } },
                "responses": {
                    "201": json_answer("the withdrawal (approved, or pending_approval)", schema::<contracts::cashier::Payment>(&mut g)),
                    "200": json_answer("the withdrawal of an earlier request with this key", schema::<contracts::cashier::Payment>(&mut g)),
                    "400": json_answer("MALFORMED_JSON, INVALID_REQUEST, IDEMPOTENCY_KEY_MISSING and the like", error.clone()),
                    "401": json_answer("INVALID_SESSION", error.clone()),
                    "403": json_answer("NOT_YOUR_ACCOUNT", error.clone()),
                    "404": json_answer("PSP_NOT_FOUND, PLAYER_NOT_FOUND", error.clone()),
                    "409": json_answer("IDEMPOTENCY_KEY_REUSED", error.clone()),
                    "413": json_answer("BODY_TOO_LARGE", error.clone()),
                    "422": json_answer("INSUFFICIENT_FUNDS, AML_REVIEW, KYC_REQUIRED, CURRENCY_MISMATCH and the like", error.clone())
                }
            },
            "get": read(&error, "The finance role's queue: withdrawals waiting for approval, oldest first", json!([]), schema::<contracts::cashier::WithdrawalQueue>(&mut g), &[])
        },
        "/cashier/withdrawals/{paymentId}": { "get": read(&error, "One withdrawal, for the finance role", json!([{ "name": "paymentId", "in": "path", "required": true, "schema": { "type": "string" } }]), schema::<contracts::cashier::Payment>(&mut g), &["404"]) },
        "/cashier/withdrawals/{paymentId}/cancel": { "post": {
            "summary": "The player takes back a withdrawal waiting for approval, where the region allows it (403 in the UK, which bans reversing withdrawals); the money is back in cash",
            "security": [{ "sessionToken": [] }],
            "parameters": [{ "name": "paymentId", "in": "path", "required": true, "schema": { "type": "string" } }],
            "responses": {
                "200": json_answer("the withdrawal, cancelled", schema::<contracts::cashier::Payment>(&mut g)),
                "401": json_answer("INVALID_SESSION", error.clone()),
                "403": json_answer("FORBIDDEN: not cancellable here", error.clone()),
                "404": json_answer("PAYMENT_NOT_FOUND", error.clone()),
                "409": json_answer("WITHDRAWAL_NOT_PENDING", error.clone())
            }
        } },
        "/cashier/withdrawals/{paymentId}/approve": { "post": {
            "summary": "The finance role approves a withdrawal waiting for it, with a reason: the PSP is asked to pay it",
            "parameters": [{ "name": "paymentId", "in": "path", "required": true, "schema": { "type": "string" } }],
            "requestBody": { "required": true, "content": { "application/json": { "schema": schema::<contracts::cashier::WithdrawalDecision>(&mut g) } } },
            "responses": {
                "200": json_answer("the withdrawal, approved", schema::<contracts::cashier::Payment>(&mut g)),
                "400": json_answer("MALFORMED_JSON, INVALID_REQUEST", error.clone()),
                "404": json_answer("PAYMENT_NOT_FOUND", error.clone()),
                "409": json_answer("WITHDRAWAL_NOT_PENDING", error.clone())
            }
        } },
        "/cashier/withdrawals/{paymentId}/reject": { "post": {
            "summary": "The finance role rejects a withdrawal waiting for it, with a reason: the money is back in the player's cash",
            "parameters": [{ "name": "paymentId", "in": "path", "required": true, "schema": { "type": "string" } }],
            "requestBody": { "required": true, "content": { "application/json": { "schema": schema::<contracts::cashier::WithdrawalDecision>(&mut g) } } },
            "responses": {
                "200": json_answer("the withdrawal, rejected", schema::<contracts::cashier::Payment>(&mut g)),
                "400": json_answer("MALFORMED_JSON, INVALID_REQUEST", error.clone()),
                "404": json_answer("PAYMENT_NOT_FOUND", error.clone()),
                "409": json_answer("WITHDRAWAL_NOT_PENDING", error.clone())
            }
        } },
        "/ops/reconciliation": { "get": read(&error, "A PSP's settlement report for a day against what the cell booked that day (captures, payouts, chargebacks): every line on one side only, every amount that differs, every line the PSP lists twice", json!([
            { "name": "psp", "in": "query", "required": true, "schema": { "type": "string" } },
            { "name": "date", "in": "query", "required": true, "schema": { "type": "string", "format": "date" } }
        ]), schema::<contracts::cashier::Reconciliation>(&mut g), &["400", "404", "503"]) },
        "/cashier/payments/{paymentId}": { "get": {
            "summary": "One of the bearer token's player's payments (an app polls its deposit or withdrawal)",
            "security": [{ "sessionToken": [] }],
            "parameters": [{ "name": "paymentId", "in": "path", "required": true, "schema": { "type": "string" } }],
            "responses": {
                "200": json_answer("the payment", schema::<contracts::cashier::Payment>(&mut g)),
                "401": json_answer("INVALID_SESSION", error.clone()),
                "404": json_answer("PAYMENT_NOT_FOUND (none of this player's)", error.clone())
            }
        } },
        "/cashier/payments/{paymentId}/refund": { "post": {
            "summary": "The finance role gives a captured deposit back through its PSP, with a reason (a refund at the card PSP, a payout of the deposit at the bank-push one); the PSP's notification books the compensating entry (payment.refunded)",
            "parameters": [{ "name": "paymentId", "in": "path", "required": true, "schema": { "type": "string" } }],
            "requestBody": { "required": true, "content": { "application/json": { "schema": schema::<contracts::cashier::WithdrawalDecision>(&mut g) } } },
            "responses": {
                "202": json_answer("asked of the PSP", schema::<contracts::cashier::Payment>(&mut g)),
                "400": json_answer("MALFORMED_JSON, INVALID_REQUEST", error.clone()),
                "404": json_answer("PAYMENT_NOT_FOUND", error.clone()),
                "409": json_answer("WITHDRAWAL_NOT_PENDING (not a captured deposit)", error.clone()),
                "503": json_answer("PSP_UNAVAILABLE", error.clone())
            }
        } },
        "/cashier/players/{playerId}/transactions": { "get": {
            "summary": "The bearer token's player's payments, newest first, with their states",
            "security": [{ "sessionToken": [] }],
            "parameters": [{ "name": "playerId", "in": "path", "required": true, "schema": player_id.clone() }],
            "responses": {
                "200": json_answer("the payments", schema::<contracts::cashier::Transactions>(&mut g)),
                "401": json_answer("INVALID_SESSION", error.clone()),
                "403": json_answer("NOT_YOUR_ACCOUNT", error.clone())
            }
        } },
        "/kyc/webhook": { "post": {
            "summary": "The KYC vendor's result for a check (check.completed: clear or consider; other types are taken and ignored), signed `X-Signature: sha256=` + the hex HMAC-SHA256 of the body with the account's secret; a duplicate changes nothing",
            "parameters": [{ "name": "X-Signature", "in": "header", "required": true, "schema": { "type": "string" } }],
            "requestBody": { "required": true, "content": { "application/json": { "schema": { "type": "object" } } } },
            "responses": {
                "200": { "description": "recorded, or nothing to record" },
                "400": json_answer("BODY_UNREADABLE, INVALID_REQUEST", error.clone()),
                "401": json_answer("BAD_SIGNATURE", error.clone()),
                "404": json_answer("NOT_FOUND (no such check for this player yet: the vendor retries), PLAYER_NOT_FOUND", error.clone())
            }
        } }
    });
    let export_id = json!({ "name": "exportId", "in": "path", "required": true, "schema": { "type": "string" } });
    let exports = json!({
        "/exports": {
            "get": read(&error, "The exports in this cell's vault, oldest first: manifests and their Ed25519 signatures; of one type, and of the periods starting with `period` (`2026-11-29`: the day's exports and its quarter-hour batches)", json!([
                { "name": "type", "in": "query", "required": false, "schema": { "type": "string" } },
                { "name": "period", "in": "query", "required": false, "schema": { "type": "string" } }
            ]), schema::<contracts::exports::ExportList>(&mut g), &["400", "503"]),
            "post": {
                "summary": "Build one export now (the period must be over): 201 with its signed manifest, or 200 with the latest build of that type and period when one exists (a file produced is never rewritten)",
                "requestBody": { "required": true, "content": { "application/json": { "schema": schema::<contracts::exports::BuildRequest>(&mut g) } } },
                "responses": {
                    "200": json_answer("already built", schema::<contracts::exports::ExportSummary>(&mut g)),
                    "201": json_answer("built", schema::<contracts::exports::ExportSummary>(&mut g)),
                    "400": json_answer("MALFORMED_JSON, INVALID_REQUEST", error.clone()),
                    "409": json_answer("EXPORT_REFUSED (the period is not over yet: ask again)", error.clone()),
                    "422": json_answer("EXPORT_REFUSED (an unknown type, a period not of the type's cadence, no dialect for this region)", error.clone()),
                    "503": json_answer("EXPORT_REFUSED (the vault or store failed)", error.clone())
                }
            }
        },
        "/exports/{exportId}": { "get": read(&error, "One export's manifest and signature", json!([export_id.clone()]), schema::<contracts::exports::ExportSummary>(&mut g), &["404", "503"]) },
        "/exports/{exportId}/proof": { "get": read(&error, "The Merkle path (RFC 6962) from one included event to the export's root", json!([
            export_id.clone(),
            { "name": "seq", "in": "query", "required": true, "schema": { "type": "integer", "minimum": 0, "maximum": u64::MAX } }
        ]), schema::<contracts::exports::InclusionProof>(&mut g), &["400", "404", "503"]) },
        "/exports/{exportId}/files/{file}": { "get": {
            "summary": "One file of an export, by its path in the manifest (or manifest.json, manifest.sig); the download is chained first (export.downloaded)",
            "parameters": [export_id, { "name": "file", "in": "path", "required": true, "schema": { "type": "string" } }],
            "responses": {
                "200": { "description": "the file's bytes", "content": { "application/octet-stream": {} } },
                "404": json_answer("EXPORT_NOT_FOUND", error.clone()),
                "503": json_answer("EXPORT_REFUSED", error.clone())
            }
        } }
    });
    // Until the store is open, every domain route is refused alike.
    let mut paths = paths;
    paths.as_object_mut().expect("paths").extend(players_compliance.as_object().expect("paths").clone());
    paths.as_object_mut().expect("paths").extend(exports.as_object().expect("paths").clone());
    for (path, item) in paths.as_object_mut().expect("paths") {
        if OPS_PATHS.contains(&path.as_str()) {
            continue;
        }
        for operation in item.as_object_mut().expect("a path item").values_mut() {
            let unavailable = &mut operation["responses"]["503"];
            let said = unavailable["description"].as_str().map(|said| format!("{said}; or ")).unwrap_or_default();
            *unavailable = json_answer(&format!("{said}NOT_READY while the store opens"), error.clone());
        }
    }
    // Who may call each route comes from the one table authorisation reads.
    for (method, pattern, access) in super::callers::ROUTES {
        let Some(path) = paths.as_object().expect("paths").keys().find(|p| normal(p) == normal(pattern)).cloned()
        else {
            continue; // the test below names it
        };
        let operation = &mut paths[&path][method.to_ascii_lowercase()];
        match access {
            Access::BackOffice(_) => {
                operation["security"] = json!([{ "operatorToken": [] }]);
                let roles = super::callers::markdown_table()
                    .lines()
                    .find(|line| line.starts_with(&format!("| `{method} {pattern}` |")))
                    .and_then(|line| line.split(" | ").nth(1))
                    .unwrap_or_default()
                    .trim_end_matches(" |")
                    .to_owned();
                operation["description"] = json!(format!("Back office: {roles}."));
                operation["responses"]["401"] =
                    json_answer("INVALID_OPERATOR_TOKEN: no valid operator token", error.clone());
                operation["responses"]["403"] = json_answer(
                    "FORBIDDEN: this certificate, or this token's role, does not reach the route",
                    error.clone(),
                );
            }
            Access::Player | Access::Provider | Access::OperatorTool => {
                operation["responses"]["403"] = json_answer(
                    "FORBIDDEN (or NOT_YOUR_ACCOUNT): this certificate or token does not reach it",
                    error.clone(),
                );
            }
            Access::Open => {}
        }
    }
    json!({
        "openapi": "3.1.0",
        "info": { "title": "cell API", "version": contracts::wallet::WALLET_API_VERSION },
        "paths": paths,
        "components": {
            "schemas": g.take_definitions(true),
            "securitySchemes": {
                "operatorToken": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT", "description": "an operator token from global-control (POST /operator-tokens), with an operator certificate" },
                "sessionToken": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT", "description": "the player's access token (POST /sessions)" }
            }
        }
    })
}

/// `/wallet/{player_id}` and `/wallet/{playerId}` are one route.
fn normal(path: &str) -> String {
    path.split('/').map(|segment| if segment.starts_with('{') { "{}" } else { segment }).collect::<Vec<_>>().join("/")
}

pub async fn document() -> Json<Value> {
    static DOCUMENT: OnceLock<Value> = OnceLock::new();
    Json(DOCUMENT.get_or_init(build).clone())
}

#[cfg(test)]
mod tests {
    use super::normal;
    use std::collections::BTreeSet;

    /// Every route and method `api::router` serves is described: a route added without its
    /// description fails here. Read from the router's source, which lists each as
    /// `.route("/path", get(handler).post(handler))`.
    #[test]
    fn every_served_route_is_described() {
        let source = include_str!("mod.rs");
        let source = &source[source.find("pub fn router").expect("api::router is in mod.rs")..];
        let mut served = BTreeSet::new();
        for route in source.split(".route(\"").skip(1) {
            let (path, rest) = route.split_once('"').expect("a quoted path");
            let handlers =
                rest.split(".route(").next().expect("the route's handlers").split(".fallback").next().unwrap();
            for method in ["get", "post", "put", "delete"] {
                if handlers.contains(&format!(" {method}(")) || handlers.contains(&format!(".{method}(")) {
                    served.insert((normal(path), method));
                }
            }
        }
        assert!(served.len() >= 20, "the router's source was not read as expected: {served:?}");
        let document = super::build();
        let mut described = BTreeSet::new();
        for (path, item) in document["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("a path item").keys() {
                described.insert((normal(path), method.as_str()));
            }
        }
        let missing: Vec<_> = served.difference(&described).collect();
        assert!(missing.is_empty(), "served but not in /openapi.json: {missing:?}");
        // And the authorisation table lists exactly what is served.
        let authorised: BTreeSet<(String, String)> = super::super::callers::ROUTES
            .iter()
            .map(|(method, pattern, _)| (normal(pattern), method.to_ascii_lowercase()))
            .collect();
        let served: BTreeSet<(String, String)> = served.into_iter().map(|(p, m)| (p, m.to_owned())).collect();
        assert_eq!(served, authorised, "api::router and callers::ROUTES list different routes");
        // Every domain route says it may be refused while the store opens.
        for (path, item) in document["paths"].as_object().expect("paths") {
            for (method, operation) in item.as_object().expect("a path item") {
                let unavailable = operation["responses"]["503"]["description"].as_str();
                let ops = super::OPS_PATHS.contains(&path.as_str());
                assert!(ops || unavailable.is_some_and(|d| d.contains("NOT_READY")), "{method} {path}: {operation}");
            }
        }
    }
}
