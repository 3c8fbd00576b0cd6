//! The KYC vendor: a check is created, answered at once `in_progress`, and its result arrives
//! later by a signed webhook to the URL the check named (`check.started`, then
//! `check.completed`), retried until the caller answers 2xx.
//!
//! `POST /kyc/v1/checks` takes `{reference, givenName, familyName, dateOfBirth, document?:
//! {type, number, issuingCountry}, callbackUrl}` and answers 201 `{id, status: "in_progress",
//! reference}`. A webhook body is `{type, check: {id, reference, status, result?, reason?},
//! sentAt}`, signed `X-Signature: sha256=<hex HMAC-SHA256 of the body>` with the account's secret
//! (`KYC_WEBHOOK_SECRET`). A document number starting `FAIL` is `result: "consider"`; anyone
//! else `clear`, about half a second after the check (always within 2 s).
//!
//! Webhook faults (`POST /admin/faults {"party": "kyc-webhook", "mode": ...}`): `duplicate`
//! (each webhook sent twice), `reorder` (`check.completed` before `check.started`), `late`
//! (`latencyMs` more before sending).

use super::{Fault, Sandbox};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::Full;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long after the check its result is sent.
const RESULT_DELAY: Duration = Duration::from_millis(500);
/// Deliveries of one webhook before giving up (the caller was down or refused each).
const ATTEMPTS: u32 = 6;

/// Signs KYC webhooks: `X-Signature: sha256=<hex HMAC-SHA256 of the body>`.
pub struct KycSigner {
    secret: Option<Vec<u8>>,
    next_id: AtomicU64,
}

impl KycSigner {
    /// `secret`: what webhooks are signed with (none: checks are refused).
    pub fn new(secret: Option<Vec<u8>>) -> KycSigner {
        KycSigner { secret, next_id: AtomicU64::new(1) }
    }

    fn sign(&self, body: &[u8]) -> Option<String> {
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(self.secret.as_ref()?).expect("HMAC takes any key length");
        mac.update(body);
        Some(format!("sha256={}", hex::encode(mac.finalize().into_bytes())))
    }
}

/// Sends webhooks over plain HTTP, or HTTPS with the sandbox's certificate when it has one,
/// retrying with backoff until a 2xx or [`ATTEMPTS`] tries.
pub struct Webhooks {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl Webhooks {
    /// `tls_dir`: the platform CA and `sandbox.pem`/`.key`, to call back a cell served over mutual
    /// TLS.
    pub fn new(tls_dir: Option<&std::path::Path>) -> anyhow::Result<Webhooks> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(Duration::from_secs(2)));
        let builder = hyper_rustls::HttpsConnectorBuilder::new();
        let connector = match tls_dir {
            Some(dir) => builder.with_tls_config(replication::tls::client_config_by_url_host(dir, "sandbox")?),
            None => builder.with_tls_config(replication::tls::no_tls_client_config()),
        }
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
        Ok(Webhooks { client: Client::builder(TokioExecutor::new()).build(connector) })
    }

    /// Delivers `body` to `url` with `headers`: true once answered 2xx.
    pub async fn deliver(&self, url: &str, body: &str, headers: &[(&str, String)]) -> bool {
        let mut backoff = Duration::from_millis(200);
        for attempt in 1..=ATTEMPTS {
            let mut request = hyper::Request::post(url).header("content-type", "application/json");
            for (name, value) in headers {
                request = request.header(*name, value);
            }
            let outcome = match request.body(Full::new(Bytes::from(body.to_owned()))) {
                Ok(request) => match tokio::time::timeout(Duration::from_secs(5), self.client.request(request)).await {
                    Ok(Ok(response)) => Ok(response.status()),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err("no answer within 5 s".to_owned()),
                },
                Err(e) => Err(e.to_string()),
            };
            match outcome {
                Ok(status) if status.is_success() => return true,
                // A refusal of what the caller will never take (a bad signature) is not retried.
                Ok(status) if status == StatusCode::UNAUTHORIZED || status == StatusCode::BAD_REQUEST => {
                    tracing::warn!(%url, %status, "webhook refused for good");
                    return false;
                }
                Ok(status) => tracing::warn!(%url, %status, attempt, "webhook refused; retrying"),
                Err(e) => tracing::warn!(%url, error = %e, attempt, "webhook not delivered; retrying"),
            }
            tokio::time::sleep(backoff).await;
            backoff *= 2;
        }
        tracing::error!(%url, "webhook given up after {ATTEMPTS} attempts");
        false
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckRequest {
    reference: String,
    given_name: String,
    family_name: String,
    date_of_birth: String,
    document: Option<Document>,
    callback_url: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Document {
    #[serde(rename = "type")]
    kind: String,
    number: String,
    issuing_country: String,
}

pub async fn create_check(
    State(s): State<Arc<Sandbox>>,
    body: Result<Json<CheckRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(Json(check)) = body else {
        let message = "a JSON body with reference, givenName, familyName, dateOfBirth and callbackUrl";
        return (StatusCode::BAD_REQUEST, Json(json!({ "error": message }))).into_response();
    };
    if !(check.callback_url.starts_with("http://") || check.callback_url.starts_with("https://")) {
        return (StatusCode::BAD_REQUEST, Json(json!({ "error": "callbackUrl must be an http(s) URL" })))
            .into_response();
    }
    let call =
        json!({ "reference": check.reference, "familyName": check.family_name, "callbackUrl": check.callback_url });
    if let Some(fault) = s.enter("kyc", call).await {
        return fault;
    }
    if s.kyc.secret.is_none() {
        let message = "the sandbox has no KYC_WEBHOOK_SECRET: it cannot sign results";
        return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "error": message }))).into_response();
    }
    let _ = (&check.given_name, &check.date_of_birth);
    let id = format!("chk_{:08}", s.kyc.next_id.fetch_add(1, Ordering::Relaxed));
    let failed = check.document.as_ref().filter(|d| d.number.trim().to_uppercase().starts_with("FAIL"));
    let (result, reason) = match failed {
        Some(d) => ("consider", Some(format!("{} {} ({}) could not be verified", d.kind, d.number, d.issuing_country))),
        None => ("clear", None),
    };
    let started = json!({ "type": "check.started", "check": { "id": id, "reference": check.reference, "status": "in_progress" } });
    let mut completed_check = json!({ "id": id, "reference": check.reference, "status": "complete", "result": result });
    if let Some(reason) = reason {
        completed_check["reason"] = json!(reason);
    }
    let completed = json!({ "type": "check.completed", "check": completed_check });
    let fault = s.fault_of("kyc-webhook");
    let sandbox = s.clone();
    let url = check.callback_url.clone();
    tokio::spawn(async move {
        let mode = fault.as_ref().and_then(|f| f.mode.clone()).unwrap_or_default();
        let mut delay = RESULT_DELAY;
        if mode == "late" {
            delay += Duration::from_millis(fault.as_ref().map_or(0, |f: &Fault| f.latency_ms));
        }
        let order = if mode == "reorder" { vec![completed, started] } else { vec![started, completed] };
        tokio::time::sleep(delay).await;
        for mut webhook in order {
            webhook["sentAt"] = json!(std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0));
            let body = webhook.to_string();
            let Some(signature) = sandbox.kyc.sign(body.as_bytes()) else { return };
            let headers = [("x-signature", signature)];
            sandbox.webhooks.deliver(&url, &body, &headers).await;
            if mode == "duplicate" {
                sandbox.webhooks.deliver(&url, &body, &headers).await;
            }
        }
    });
    (StatusCode::CREATED, Json(json!({ "id": id, "status": "in_progress", "reference": check.reference })))
        .into_response()
}
