//! The KYC vendor's adapter: a check is asked for at registration (`POST /kyc/v1/checks` at
//! `cell serve --kyc-url`, with the URL of this cell's `POST /kyc/webhook`), and its result comes
//! back later by a webhook signed with the account's secret (`KYC_WEBHOOK_SECRET`):
//! `X-Signature: sha256=<hex HMAC-SHA256 of the body>`. Only `check.completed` decides anything;
//! `check.started` and any other type are taken and ignored, so a reordered delivery changes
//! nothing, and a duplicate finds the check already decided.

use crate::outside::{authority, exchange};
use contracts::players::{DocumentKind, PlayerProfile};
use contracts::PlayerId;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::json;
use std::time::Duration;

/// Longest the vendor may take to take a check before registration fails closed.
pub const VENDOR_TIMEOUT: Duration = Duration::from_secs(5);

/// The vendor's name in events and the decision log.
pub const VENDOR: &str = "sandbox-kyc";

/// Where the vendor answers, where it calls back, and the secret its webhooks are signed with.
#[derive(Clone)]
pub struct KycVendor {
    authority: String,
    callback_url: String,
    secret: Vec<u8>,
}

impl std::fmt::Debug for KycVendor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KycVendor")
            .field("authority", &self.authority)
            .field("callback_url", &self.callback_url)
            .finish()
    }
}

/// What a verified webhook says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookNews {
    /// `check.completed`: the vendor's result.
    Completed { check_id: String, player: PlayerId, outcome: KycOutcome },
    /// Anything else (`check.started`...): nothing to do.
    Other(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KycOutcome {
    Verified,
    Failed { reason: String },
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("the X-Signature header is missing or does not match the body")]
    BadSignature,
    #[error("the webhook does not parse: {0}")]
    Malformed(String),
}

#[derive(Deserialize)]
struct Webhook {
    #[serde(rename = "type")]
    kind: String,
    check: WebhookCheck,
}

#[derive(Deserialize)]
struct WebhookCheck {
    id: String,
    reference: String,
    #[serde(default)]
    result: Option<String>,
    #[serde(default)]
    reason: Option<String>,
}

impl KycVendor {
    /// `base`: `http://HOST:PORT`; `callback_url`: this cell's `POST /kyc/webhook` as the vendor
    /// reaches it; `secret`: the webhook signing secret (not empty).
    pub fn new(base: &str, callback_url: String, secret: Vec<u8>) -> Result<KycVendor, String> {
        if secret.is_empty() {
            return Err("the KYC webhook secret (KYC_WEBHOOK_SECRET) is empty".into());
        }
        Ok(KycVendor { authority: authority("--kyc-url", base)?, callback_url, secret })
    }

    /// Asks for a check of the player: its id. An error: the vendor did not take it.
    pub async fn request_check(
        &self,
        player: &PlayerId,
        profile: &PlayerProfile,
        born: chrono::NaiveDate,
    ) -> Result<String, String> {
        let mut body = json!({
            "reference": player,
            "givenName": profile.given_name,
            "familyName": profile.family_name,
            "dateOfBirth": born,
            "callbackUrl": self.callback_url,
        });
        if let Some(document) = &profile.identity_document {
            let kind = serde_json::to_value(document.kind).unwrap_or_default();
            body["document"] =
                json!({ "type": kind, "number": document.number, "issuingCountry": document.issuing_country });
        }
        let exchange = exchange(&self.authority, "POST", "/kyc/v1/checks", "application/json", body.to_string());
        let (status, _, body) = tokio::time::timeout(VENDOR_TIMEOUT, exchange)
            .await
            .map_err(|_| format!("the KYC vendor did not answer within {VENDOR_TIMEOUT:?}"))??;
        if status != 201 && status != 200 {
            return Err(format!("the KYC vendor answered {status}"));
        }
        #[derive(Deserialize)]
        struct Created {
            id: String,
        }
        let created: Created =
            serde_json::from_slice(&body).map_err(|e| format!("the KYC vendor's answer does not parse: {e}"))?;
        if created.id.is_empty() || created.id.len() > 100 {
            return Err("the KYC vendor's check id is empty or too long".into());
        }
        Ok(created.id)
    }

    /// Checks the webhook's signature, then reads it.
    pub fn read_webhook(&self, signature: Option<&str>, body: &[u8]) -> Result<WebhookNews, WebhookError> {
        let given = signature
            .and_then(|s| s.strip_prefix("sha256="))
            .and_then(|hex_text| hex::decode(hex_text).ok())
            .ok_or(WebhookError::BadSignature)?;
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&self.secret).expect("HMAC takes any key length");
        mac.update(body);
        mac.verify_slice(&given).map_err(|_| WebhookError::BadSignature)?;
        let webhook: Webhook = serde_json::from_slice(body).map_err(|e| WebhookError::Malformed(e.to_string()))?;
        if webhook.kind != "check.completed" {
            return Ok(WebhookNews::Other(webhook.kind));
        }
        let player = PlayerId::new(webhook.check.reference)
            .map_err(|e| WebhookError::Malformed(format!("check.reference: {e}")))?;
        let outcome = match webhook.check.result.as_deref() {
            Some("clear") => KycOutcome::Verified,
            Some("consider") => KycOutcome::Failed {
                reason: webhook.check.reason.unwrap_or_else(|| "the vendor could not verify the identity".into()),
            },
            other => return Err(WebhookError::Malformed(format!("check.result {other:?}: clear or consider"))),
        };
        Ok(WebhookNews::Completed { check_id: webhook.check.id, player, outcome })
    }
}

/// Whether `profile` has what the region's `[kyc]` requires: the fields, and an accepted
/// identity document. The problem, named, otherwise.
pub fn missing(rules: &contracts::region::KycRules, profile: &PlayerProfile) -> Option<String> {
    use contracts::region::ProfileField;
    for field in &rules.required {
        let present = match field {
            ProfileField::Nationality => profile.nationality.is_some(),
            ProfileField::IdentityDocument => profile.identity_document.is_some(),
            ProfileField::FiscalRegion => profile.fiscal_region.is_some(),
            ProfileField::Sex => profile.sex.is_some(),
        };
        if !present {
            let name = serde_json::to_value(field).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
            return Some(format!("profile.{name} is required here ({})", rules.source));
        }
    }
    if let Some(region) = profile.fiscal_region.as_deref().filter(|r| !is_fiscal_region(r)) {
        return Some(format!("profile.fiscalRegion {region:?} is no fiscal region code: 01 to 22 (modelo 763)"));
    }
    let document = profile.identity_document.as_ref()?;
    if !rules.documents.is_empty() && !rules.documents.contains(&document.kind) {
        let accepted: Vec<String> = rules.documents.iter().map(|d| name_of(*d)).collect();
        return Some(format!(
            "profile.identityDocument.kind {} is not accepted here: {}",
            name_of(document.kind),
            accepted.join(", ")
        ));
    }
    None
}

/// `01` to `22`: the fiscal regions of Spain's gaming tax return (modelo 763).
fn is_fiscal_region(code: &str) -> bool {
    code.len() == 2 && code.parse::<u8>().is_ok_and(|n| (1..=22).contains(&n))
}

fn name_of(kind: DocumentKind) -> String {
    serde_json::to_value(kind).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vendor() -> KycVendor {
        KycVendor::new("http://127.0.0.1:1", "http://127.0.0.1:2/kyc/webhook".into(), b"s3cret".to_vec()).unwrap()
    }

    fn signed(body: &str, secret: &[u8]) -> String {
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
        mac.update(body.as_bytes());
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }

    #[test]
    fn only_a_body_signed_with_the_secret_is_read() {
        let body = r#"{"type":"check.completed","check":{"id":"chk_1","reference":"uk-p1","status":"complete","result":"clear"}}"#;
        let v = vendor();
        assert_eq!(
            v.read_webhook(Some(&signed(body, b"s3cret")), body.as_bytes()).unwrap(),
            WebhookNews::Completed {
                check_id: "chk_1".into(),
                player: PlayerId::new("uk-p1").unwrap(),
                outcome: KycOutcome::Verified
            }
        );
        assert!(matches!(
            v.read_webhook(Some(&signed(body, b"other")), body.as_bytes()),
            Err(WebhookError::BadSignature)
        ));
        assert!(matches!(v.read_webhook(None, body.as_bytes()), Err(WebhookError::BadSignature)));
        let tampered = body.replace("clear", "consider");
        assert!(matches!(
            v.read_webhook(Some(&signed(body, b"s3cret")), tampered.as_bytes()),
            Err(WebhookError::BadSignature)
        ));
        let started = r#"{"type":"check.started","check":{"id":"chk_1","reference":"uk-p1","status":"in_progress"}}"#;
        assert_eq!(
            v.read_webhook(Some(&signed(started, b"s3cret")), started.as_bytes()).unwrap(),
            WebhookNews::Other("check.started".into())
        );
    }
}
