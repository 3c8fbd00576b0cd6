//! `sandbox serve --listen ADDR --data DIR`: the platform's outside parties, played over real HTTP
//! in the shape of their APIs, for development, tests and drills: the self-exclusion registers, a
//! KYC vendor ([`kyc`]) and a sanctions list; the PSPs join it.
//!
//! | party | call | answer |
//! |---|---|---|
//! | GAMSTOP (GB) | `POST /gamstop/v2`, form: `firstName`, `lastName`, `dateOfBirth`, `email`, `postcode`, `mobile` | 200, header `X-Exclusion: Y` (excluded), `N`, or `P` (previously excluded), and `X-Unique-Id` |
//! | ROFUS (DK) | `POST /rofus/v1/lookup`, JSON `{cpr}` | `{"status": "Excluded" \| "NotExcluded"}` |
//! | Spelpaus (SE) | `POST /spelpaus/v1/is-blocked`, JSON `{personalNumber}` | `{"isBlocked": bool}` |
//! | RGIAJ (ES) | `POST /rgiaj/v1/check`, JSON `{documentNumber}` | `{"registered": bool}` |
//! | KYC vendor | `POST /kyc/v1/checks`, JSON `{reference, givenName, familyName, dateOfBirth, document?, callbackUrl}` | 201 `{id, status: "in_progress"}`, then signed webhooks to `callbackUrl` ([`kyc`]) |
//! | Sanctions/PEP list | `GET /sanctions/v1/list` | `{"version", "entries": [{"givenName", "familyName", "program"}]}` (an empty given name matches any) |
//!
//! Seeded identities: family name `Excluded` is excluded in every register (the lookups by number
//! take the name beside the number for this), family name `Previously` is GAMSTOP's `P`, family
//! name `Sanctioned` is on the sanctions list, a document number starting `FAIL` fails KYC. Everyone
//! else is not excluded, until `POST /admin/excluded {"number": ...}` or `{"familyName": ...}`
//! excludes them from then on (a player who excludes themselves after registering), and is not
//! sanctioned until `POST /admin/sanctions {"givenName", "familyName", "program"}` lists them (a
//! new list version).
//!
//! Faults: `POST /admin/faults {"party": "gamstop"|"rofus"|"spelpaus"|"rgiaj"|"kyc"|"sanctions"|"*",
//! "latencyMs": N, "status": 503, "hang": true}` applies to that party's calls until `DELETE
//! /admin/faults`; `{"party": "kyc-webhook", "mode": "duplicate"|"reorder"|"late", "latencyMs": N}`
//! to the KYC vendor's webhooks. Every call a party receives is appended to `DIR/requests.jsonl`.
//!
//! The KYC vendor signs its webhooks with `KYC_WEBHOOK_SECRET` (from the environment) and, given
//! `--tls-dir`, calls back HTTPS URLs with the certificate `sandbox.pem` from the platform CA.

mod bank;
mod kyc;
mod psp;
mod tamper;

use axum::extract::{Form, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use clap::{Parser, Subcommand};
use serde::Deserialize;
use serde_json::{json, Value};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Parser)]
#[command(about = "Plays the platform's outside parties over real HTTP")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve every party on one address.
    Serve {
        #[arg(long)]
        listen: SocketAddr,
        /// Where the calls received are logged (`requests.jsonl`); created if missing.
        #[arg(long)]
        data: PathBuf,
        /// The platform CA and `sandbox.pem`/`.key`, to call back cells served over mutual TLS.
        #[arg(long)]
        tls_dir: Option<PathBuf>,
    },
}

/// A fault injected into one party's calls.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Fault {
    party: String,
    #[serde(default)]
    latency_ms: u64,
    /// Answer this status instead of the real answer.
    status: Option<u16>,
    /// Never answer (the caller's timeout decides).
    #[serde(default)]
    hang: bool,
    /// For `kyc-webhook`: `duplicate`, `reorder` or `late`.
    mode: Option<String>,
}

/// A PSP's payouts by the merchant's reference (asking twice pays once): the PSP's id of it,
/// whether it was paid, and when.
type Payouts = std::sync::Mutex<std::collections::BTreeMap<String, (String, bool, chrono::DateTime<chrono::Utc>)>>;

struct Sandbox {
    faults: Mutex<Vec<Fault>>,
    /// Numbers and family names excluded since start (lower case).
    excluded: Mutex<std::collections::BTreeSet<String>>,
    log: Mutex<std::fs::File>,
    webhooks: kyc::Webhooks,
    kyc: kyc::KycSigner,
    psp: psp::CardPsp,
    bank: bank::BankPsp,
    tamper: tamper::TamperTokens,
    /// The sandbox's own base URL, for the redirect URLs it hands out.
    public_url: String,
    /// Sanctions entries added since start (`POST /admin/sanctions`): each makes a new version.
    sanctioned: Mutex<Vec<Value>>,
}

impl Sandbox {
    /// Logs the call, then applies the party's fault, if any: `Some` is the answer to give instead.
    async fn enter(&self, party: &str, call: Value) -> Option<Response> {
        {
            let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
            let _ = writeln!(log, "{}", json!({ "party": party, "call": call }));
        }
        let fault = self.fault_of(party)?;
        tokio::time::sleep(Duration::from_millis(fault.latency_ms)).await;
        if fault.hang {
            std::future::pending::<()>().await;
        }
        let status = StatusCode::from_u16(fault.status?).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        Some((status, Json(json!({ "error": "injected fault" }))).into_response())
    }
}

impl Sandbox {
    /// The first fault injected for `party` (or for every party).
    fn fault_of(&self, party: &str) -> Option<Fault> {
        let faults = self.faults.lock().unwrap_or_else(|p| p.into_inner());
        faults.iter().find(|f| f.party == party || f.party == "*").cloned()
    }

    fn excluded(&self, family_name: Option<&str>, number: Option<&str>) -> bool {
        let added = self.excluded.lock().unwrap_or_else(|p| p.into_inner());
        let listed = |s: Option<&str>| s.is_some_and(|s| added.contains(&s.trim().to_lowercase()));
        family_name.is_some_and(|name| name.trim().eq_ignore_ascii_case("Excluded"))
            || listed(family_name)
            || listed(number)
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Exclusion {
    number: Option<String>,
    family_name: Option<String>,
}

async fn exclude(State(s): State<Arc<Sandbox>>, Json(e): Json<Exclusion>) -> StatusCode {
    let mut added = s.excluded.lock().unwrap_or_else(|p| p.into_inner());
    for who in [e.number, e.family_name].into_iter().flatten() {
        added.insert(who.trim().to_lowercase());
    }
    StatusCode::NO_CONTENT
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GamstopForm {
    first_name: String,
    last_name: String,
    date_of_birth: String,
    email: String,
    postcode: String,
    mobile: String,
}

async fn gamstop(
    State(s): State<Arc<Sandbox>>,
    form: Result<Form<GamstopForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return (StatusCode::BAD_REQUEST, "firstName, lastName, dateOfBirth, email, postcode and mobile are required")
            .into_response();
    };
    let call = json!({ "lastName": form.last_name, "dateOfBirth": form.date_of_birth, "postcode": form.postcode });
    if let Some(fault) = s.enter("gamstop", call).await {
        return fault;
    }
    let _ = (&form.first_name, &form.email, &form.mobile);
    let answer = if s.excluded(Some(&form.last_name), None) {
        "Y"
    } else if form.last_name.trim().eq_ignore_ascii_case("Previously") {
        "P"
    } else {
        "N"
    };
    let mut headers = HeaderMap::new();
    headers.insert("x-exclusion", HeaderValue::from_static(answer));
    let unique = format!("sandbox-{}", form.date_of_birth.replace('-', ""));
    if let Ok(value) = HeaderValue::from_str(&unique) {
        headers.insert("x-unique-id", value);
    }
    (StatusCode::OK, headers).into_response()
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NumberLookup {
    #[serde(alias = "cpr", alias = "personalNumber", alias = "documentNumber")]
    number: String,
    family_name: Option<String>,
}

async fn lookup(
    s: &Sandbox,
    party: &str,
    body: Result<Json<NumberLookup>, axum::extract::rejection::JsonRejection>,
) -> Result<bool, Response> {
    let Ok(Json(request)) = body else {
        return Err((StatusCode::BAD_REQUEST, Json(json!({ "error": "a JSON body with the number" }))).into_response());
    };
    if request.number.trim().is_empty() {
        return Err((StatusCode::BAD_REQUEST, Json(json!({ "error": "the number is empty" }))).into_response());
    }
    if let Some(fault) = s.enter(party, json!({ "number": request.number, "familyName": request.family_name })).await {
        return Err(fault);
    }
    Ok(s.excluded(request.family_name.as_deref(), Some(&request.number)))
}

async fn rofus(
    State(s): State<Arc<Sandbox>>,
    body: Result<Json<NumberLookup>, axum::extract::rejection::JsonRejection>,
) -> Response {
    match lookup(&s, "rofus", body).await {
        Ok(excluded) => Json(json!({ "status": if excluded { "Excluded" } else { "NotExcluded" } })).into_response(),
        Err(answer) => answer,
    }
}

async fn spelpaus(
    State(s): State<Arc<Sandbox>>,
    body: Result<Json<NumberLookup>, axum::extract::rejection::JsonRejection>,
) -> Response {
    match lookup(&s, "spelpaus", body).await {
        Ok(excluded) => Json(json!({ "isBlocked": excluded })).into_response(),
        Err(answer) => answer,
    }
}

async fn rgiaj(
    State(s): State<Arc<Sandbox>>,
    body: Result<Json<NumberLookup>, axum::extract::rejection::JsonRejection>,
) -> Response {
    match lookup(&s, "rgiaj", body).await {
        Ok(excluded) => Json(json!({ "registered": excluded })).into_response(),
        Err(answer) => answer,
    }
}

async fn sanctions(State(s): State<Arc<Sandbox>>) -> Response {
    if let Some(fault) = s.enter("sanctions", json!({})).await {
        return fault;
    }
    let added = s.sanctioned.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let mut entries = vec![
        json!({ "givenName": "", "familyName": "Sanctioned", "program": "UN-SC-1267" }),
        json!({ "givenName": "Olga", "familyName": "Sanctionova", "program": "EU-2014-269" }),
    ];
    let version = if added.is_empty() { "2026-12-01".to_owned() } else { format!("2026-12-01+{}", added.len()) };
    entries.extend(added);
    Json(json!({ "version": version, "entries": entries })).into_response()
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Listing {
    #[serde(default)]
    given_name: String,
    family_name: String,
    program: String,
}

/// `POST /admin/sanctions {givenName, familyName, program}`: a new entry, and a new list version.
async fn add_sanctioned(State(s): State<Arc<Sandbox>>, Json(l): Json<Listing>) -> StatusCode {
    let entry = json!({ "givenName": l.given_name, "familyName": l.family_name, "program": l.program });
    s.sanctioned.lock().unwrap_or_else(|p| p.into_inner()).push(entry);
    StatusCode::NO_CONTENT
}

async fn fault_add(State(s): State<Arc<Sandbox>>, Json(fault): Json<Fault>) -> StatusCode {
    tracing::info!(?fault, "fault injected");
    s.faults.lock().unwrap_or_else(|p| p.into_inner()).push(fault);
    StatusCode::NO_CONTENT
}

async fn faults_clear(State(s): State<Arc<Sandbox>>) -> StatusCode {
    s.faults.lock().unwrap_or_else(|p| p.into_inner()).clear();
    StatusCode::NO_CONTENT
}

fn main() -> anyhow::Result<()> {
    replication::logs::init("info");
    let Command::Serve { listen, data, tls_dir } = Cli::parse().command;
    let secret = std::env::var("KYC_WEBHOOK_SECRET").ok().filter(|s| !s.is_empty()).map(String::into_bytes);
    if secret.is_none() {
        tracing::warn!("no KYC_WEBHOOK_SECRET: the KYC vendor refuses checks (it could not sign their results)");
    }
    let psp_secret = std::env::var("PSP_CARD_SECRET").ok().filter(|s| !s.is_empty()).map(String::into_bytes);
    if psp_secret.is_none() {
        tracing::warn!("no PSP_CARD_SECRET: the card PSP refuses payments (it could not sign their notifications)");
    }
    std::fs::create_dir_all(&data)?;
    let log = std::fs::OpenOptions::new().create(true).append(true).open(data.join("requests.jsonl"))?;
    let state = Arc::new(Sandbox {
        faults: Mutex::new(Vec::new()),
        excluded: Mutex::default(),
        log: Mutex::new(log),
        webhooks: kyc::Webhooks::new(tls_dir.as_deref())?,
        kyc: kyc::KycSigner::new(secret),
        psp: psp::CardPsp::new(psp_secret),
        bank: bank::BankPsp::new(
            std::env::var("PSP_BANK_SECRET").ok().filter(|s| !s.is_empty()).map(String::into_bytes),
        ),
        tamper: tamper::TamperTokens::default(),
        public_url: format!("http://{listen}"),
        sanctioned: Mutex::default(),
    });
    let app = Router::new()
        .route("/gamstop/v2", post(gamstop))
        .route("/rofus/v1/lookup", post(rofus))
        .route("/spelpaus/v1/is-blocked", post(spelpaus))
        .route("/rgiaj/v1/check", post(rgiaj))
        .route("/kyc/v1/checks", post(kyc::create_check))
        .route("/psp/card/v1/payments", post(psp::create_payment).get(psp::find_payment))
        .route("/tamper-token/v1/tokens", post(tamper::open))
        .route("/tamper-token/v1/tokens/{id}", axum::routing::get(tamper::get))
        .route("/tamper-token/v1/tokens/{id}/close", post(tamper::close))
        .route("/psp/card/v1/payments/{reference}/captures", post(psp::capture))
        .route("/psp/card/v1/payouts", post(psp::payout).get(psp::find_payout))
        .route("/psp/card/v1/payments/{reference}/refunds", post(psp::refund))
        .route("/psp/card/v1/reports/settlement", axum::routing::get(psp::settlement_report))
        .route("/psp/bank/v1/payins", post(bank::create_payin).get(bank::find_payin))
        .route("/psp/bank/v1/authorise/{id}", axum::routing::get(bank::authorise))
        .route("/psp/bank/v1/payouts", post(bank::payout).get(bank::find_payout))
        .route("/psp/bank/v1/reports/settlement", axum::routing::get(bank::settlement_report))
        .route("/admin/psp/bank", axum::routing::get(bank::payins))
        .route("/admin/psp/payments", axum::routing::get(psp::payments))
        .route("/admin/psp/chargeback", post(psp::chargeback))
        .route("/sanctions/v1/list", axum::routing::get(sanctions))
        .route("/admin/faults", post(fault_add).delete(faults_clear))
        .route("/admin/excluded", post(exclude))
        .route("/admin/sanctions", post(add_sanctioned))
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .route("/readyz", axum::routing::get(|| async { "ok" }))
        .with_state(state);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let address = listener.local_addr()?;
        tracing::info!(%address, "sandbox listening");
        println!("listening http={address}");
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("install the SIGTERM handler");
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            })
            .await?;
        anyhow::Ok(())
    })
}
