//! Payment providers: one file each in `config/psps/` (its id, dialect and the environment
//! variable holding its notification secret), where it answers (`cell serve --psp-url ID=URL`),
//! and the adapter of its dialect, which turns the cashier's calls into the PSP's API and its
//! notifications into the cashier's words ([`Notification`]):
//!
//! - `card`: a card acquirer's authorise/capture API; notifications `AUTHORISATION`, `CAPTURE`,
//!   `PAYOUT_PAID`/`PAYOUT_FAILED`, `CHARGEBACK`, signed `X-Psp-Signature: t=<unix>,v1=<hex
//!   HMAC-SHA256 of "{t}.{body}">`.
//! - `bank-push`: open banking pay-ins with a redirect to the player's bank and pay-outs to an
//!   account; callbacks `payin.settled` (the money is in: a capture, in the card's words),
//!   `payin.cancelled`, `payout.executed`, `payout.rejected`, signed `X-Bank-Timestamp` +
//!   `X-Bank-Signature: <hex HMAC-SHA256 of "{timestamp}.{body}">`.

use crate::outside::{authority, exchange};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Longest a PSP may take to answer a call.
pub const PSP_TIMEOUT: Duration = Duration::from_secs(5);

/// A PSP's API dialect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Dialect {
    /// A card acquirer: payment, authorisation notification, capture, capture notification.
    Card,
    /// Open banking: a pay-in the player approves at their bank (a redirect), a callback.
    BankPush,
}

/// What a PSP answered to a new payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    pub reference: String,
    /// Where the player goes to approve it (bank push).
    pub redirect_url: Option<String>,
}

/// A PSP file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PspFile {
    pub id: String,
    pub dialect: Dialect,
    /// The environment variable holding the notification secret (never in a file).
    pub secret_env: String,
    /// How far a notification's signed timestamp may be from the cell's clock.
    pub signature_tolerance_seconds: u64,
    /// The currencies it takes.
    pub currencies: Vec<String>,
}

/// A PSP this cell pays through.
#[derive(Clone)]
pub struct Psp {
    pub config: PspFile,
    secret: Vec<u8>,
    /// `host:port` it answers on.
    authority: String,
    /// Its clearing account in the ledger (`psp-clearing:<id>`).
    pub clearing: crate::ledger::HouseAccount,
}

impl std::fmt::Debug for Psp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Psp").field("id", &self.config.id).field("authority", &self.authority).finish()
    }
}

/// A verified notification, in the cell's words.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Notification {
    pub event_id: String,
    pub code: String,
    pub psp_reference: String,
    /// The cell's payment id it was created with.
    pub merchant_reference: String,
    pub success: bool,
    pub reason: Option<String>,
    /// The amount and currency the PSP says moved (a capture must match its payment; a chargeback
    /// or refund may take back part of it).
    #[serde(default)]
    pub amount: Option<String>,
    #[serde(default)]
    pub currency: Option<String>,
    /// When the PSP says it happened: the day its settlement report lists it under, so the cell
    /// books it on that day too (not on the day the notification reached it).
    #[serde(default)]
    pub event_date: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Debug, thiserror::Error)]
pub enum NotificationError {
    #[error("the X-Psp-Signature header is missing, does not match the body, or is outside the time window")]
    BadSignature,
    #[error("the notification does not parse: {0}")]
    Malformed(String),
}

/// What a PSP says of a payment it is asked about.
#[derive(Debug)]
pub enum Inquiry {
    /// It has no payment under that reference.
    Unknown,
    /// It has one, with nothing final to say yet (received, waiting for the payer).
    Pending,
    /// Its last word: the notification it amounts to, and the answer as written.
    Final(Box<Notification>, String),
}

/// Why a call to a PSP did not take.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The PSP said it will not (a 4xx other than a timeout or a rate limit): asking again
    /// changes nothing.
    #[error("{0}")]
    Refused(String),
    /// No answer, or one that says to try again (5xx, 408, 429).
    #[error("{0}")]
    Unavailable(String),
}

impl Psp {
    /// Asks the PSP to take a payment. An error: it did not.
    pub async fn create_payment(
        &self,
        payment_id: &str,
        amount: &str,
        currency: &str,
        method: &str,
        notification_url: &str,
    ) -> Result<Created, String> {
        let path = match self.config.dialect {
            Dialect::Card => "/psp/card/v1/payments",
            Dialect::BankPush => "/psp/bank/v1/payins",
        };
        self.transfer(path, payment_id, amount, currency, method, notification_url).await.map_err(|e| e.to_string())
    }

    /// Asks the PSP to pay `amount` out to `method` (asking again for the same payment id pays
    /// once): its reference.
    pub async fn payout(
        &self,
        payment_id: &str,
        amount: &str,
        currency: &str,
        method: &str,
        notification_url: &str,
    ) -> Result<String, CallError> {
        let path = match self.config.dialect {
            Dialect::Card => "/psp/card/v1/payouts",
            Dialect::BankPush => "/psp/bank/v1/payouts",
        };
        Ok(self.transfer(path, payment_id, amount, currency, method, notification_url).await?.reference)
    }

    /// Money in or out at `path`, in the dialect's words: what the PSP answered.
    async fn transfer(
        &self,
        path: &str,
        payment_id: &str,
        amount: &str,
        currency: &str,
        method: &str,
        notification_url: &str,
    ) -> Result<Created, CallError> {
        let body = match self.config.dialect {
            Dialect::Card => json!({
                "merchantReference": payment_id, "amount": amount, "currency": currency,
                "paymentMethod": method, "notificationUrl": notification_url,
            }),
            Dialect::BankPush => json!({
                "merchantReference": payment_id, "amount": amount, "currency": currency,
                "account": method, "callbackUrl": notification_url,
            }),
        };
        let (status, body) = self.call(path, body).await.map_err(CallError::Unavailable)?;
        let answered = format!("PSP {} answered {status} at {path}", self.config.id);
        match status {
            200 | 201 => created(&body).map_err(CallError::Unavailable),
            408 | 429 => Err(CallError::Unavailable(answered)),
            400..=499 => {
                let said = String::from_utf8_lossy(&body);
                Err(CallError::Refused(format!("{answered}: {}", said.chars().take(200).collect::<String>())))
            }
            _ => Err(CallError::Unavailable(answered)),
        }
    }

    /// The PSP's settlement report for `date` (CSV: `date,type,pspReference,merchantReference,
    /// amount,currency`; the dialect's fields hold no commas or quotes).
    pub async fn settlement_report(&self, date: chrono::NaiveDate) -> Result<Vec<ReportLine>, String> {
        let path = match self.config.dialect {
            Dialect::Card => format!("/psp/card/v1/reports/settlement?date={date}"),
            Dialect::BankPush => format!("/psp/bank/v1/reports/settlement?date={date}"),
        };
        let (status, body) = self.send("GET", &path, "text/csv", String::new()).await?;
        if status != 200 {
            return Err(format!("PSP {} answered {status} for its settlement report", self.config.id));
        }
        let text = String::from_utf8(body.to_vec()).map_err(|e| format!("the report is not UTF-8: {e}"))?;
        let mut lines = Vec::new();
        for (number, row) in text.lines().enumerate().skip(1).filter(|(_, r)| !r.trim().is_empty()) {
            let fields: Vec<&str> = row.split(',').collect();
            let [_, kind, _, payment, amount, _] = fields.as_slice() else {
                return Err(format!("report line {}: 6 fields expected, {} found", number + 1, fields.len()));
            };
            // A pay-in is what the card dialect calls a capture: money in.
            let kind = if *kind == "PAYIN" { "CAPTURE" } else { kind };
            lines.push(ReportLine {
                kind: kind.to_owned(),
                payment: (*payment).to_owned(),
                amount: (*amount).to_owned(),
            });
        }
        Ok(lines)
    }

    /// Asks the PSP to give a captured deposit back to the player: a refund in the card dialect
    /// (its `REFUND` notification books it), a payout of the deposit's id to the account it came
    /// from in the bank-push one (its `PAYOUT_PAID`; asking again pays once).
    pub async fn refund(&self, deposit: &contracts::cashier::Payment, notification_url: &str) -> Result<(), String> {
        let (amount, currency) = (deposit.amount.to_string(), deposit.currency.code());
        if self.config.dialect == Dialect::BankPush {
            let method = &deposit.payment_method;
            let paid = self.payout(&deposit.id, &amount, currency, method, notification_url).await;
            return paid.map(|_| ()).map_err(|e| e.to_string());
        }
        let Some(psp_reference) = &deposit.psp_reference else {
            return Err(format!("payment {} has no PSP reference to refund", deposit.id));
        };
        let path = format!("/psp/card/v1/payments/{psp_reference}/refunds");
        let (status, _) = self.call(&path, json!({ "amount": amount, "currency": currency })).await?;
        match status {
            200 | 201 => Ok(()),
            other => Err(format!("PSP {} answered {other} to the refund", self.config.id)),
        }
    }

    /// Asks the PSP what became of the payment created with `payment_id` (when the cell lost the
    /// answer to its create call): `Some` with its reference when the PSP has it, `None` when the
    /// call never reached it. An error: ask again later.
    pub async fn find_payment(&self, payment_id: &str) -> Result<Option<Created>, String> {
        let path = match self.config.dialect {
            Dialect::Card => format!("/psp/card/v1/payments?merchantReference={payment_id}"),
            Dialect::BankPush => format!("/psp/bank/v1/payins?merchantReference={payment_id}"),
        };
        let (status, body) = self.send("GET", &path, "application/json", String::new()).await?;
        match status {
            200 => created(&body).map(Some),
            404 => Ok(None),
            other => Err(format!("PSP {} answered {other} to the inquiry", self.config.id)),
        }
    }

    /// Asks the PSP where `payment` stands: when its notification is overdue (the PSP may have
    /// given up delivering it), or before a payout it refused is given back. A final answer comes
    /// as the notification it amounts to, and the answer as the PSP wrote it (chained like a
    /// notification), under the event id `inquiry:<payment>:<status>`: a notification that still
    /// comes later finds the payment moved on and changes nothing.
    pub async fn inquire(&self, payment: &contracts::cashier::Payment) -> Result<Inquiry, String> {
        use contracts::cashier::PaymentKind;
        let (card, deposit) = (self.config.dialect == Dialect::Card, payment.kind == PaymentKind::Deposit);
        let path = match (card, deposit) {
            (true, true) => "/psp/card/v1/payments",
            (true, false) => "/psp/card/v1/payouts",
            (false, true) => "/psp/bank/v1/payins",
            (false, false) => "/psp/bank/v1/payouts",
        };
        let path = format!("{path}?merchantReference={}", payment.id);
        let (status, body) = self.send("GET", &path, "application/json", String::new()).await?;
        match status {
            200 => {}
            404 => return Ok(Inquiry::Unknown),
            other => return Err(format!("PSP {} answered {other} to the inquiry", self.config.id)),
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Answer {
            #[serde(alias = "id")]
            psp_reference: String,
            status: String,
            #[serde(default)]
            amount: Option<String>,
            #[serde(default)]
            currency: Option<String>,
            /// When it happened, in the dialect's words: the card's `eventDate` (unix seconds),
            /// the bank's `createdAt`: the day the settlement report lists it under.
            #[serde(default)]
            event_date: Option<i64>,
            #[serde(default)]
            created_at: Option<chrono::DateTime<chrono::Utc>>,
        }
        let answer: Answer = serde_json::from_slice(&body).map_err(|e| format!("the PSP's inquiry answer: {e}"))?;
        let (code, success) = match answer.status.as_str() {
            "authorised" => ("AUTHORISATION", true),
            "refused" | "cancelled" => ("AUTHORISATION", false),
            "captured" | "settled" => ("CAPTURE", true),
            "paid" | "executed" => ("PAYOUT_PAID", true),
            "failed" | "rejected" => ("PAYOUT_FAILED", false),
            _ => return Ok(Inquiry::Pending), // received, waiting: nothing final yet
        };
        let notification = Notification {
            event_id: format!("inquiry:{}:{}", payment.id, answer.status),
            code: code.to_owned(),
            psp_reference: answer.psp_reference,
            merchant_reference: payment.id.clone(),
            success,
            reason: (!success).then(|| format!("{} (the PSP's answer to an inquiry)", answer.status)),
            amount: answer.amount,
            currency: answer.currency,
            event_date: answer
                .created_at
                .or_else(|| answer.event_date.and_then(|t| chrono::DateTime::from_timestamp(t, 0))),
        };
        Ok(Inquiry::Final(Box::new(notification), String::from_utf8_lossy(&body).into_owned()))
    }

    /// Captures an authorised payment (capturing twice captures once). An error: try again.
    pub async fn capture(&self, psp_reference: &str, amount: &str, currency: &str) -> Result<(), String> {
        if self.config.dialect == Dialect::BankPush {
            return Ok(()); // a settled pay-in is the money itself: nothing to capture
        }
        let path = format!("/psp/card/v1/payments/{psp_reference}/captures");
        let (status, _) = self.call(&path, json!({ "amount": amount, "currency": currency })).await?;
        match status {
            200 | 201 => Ok(()),
            other => Err(format!("PSP {} answered {other} to the capture", self.config.id)),
        }
    }

    async fn call(&self, path: &str, body: serde_json::Value) -> Result<(u16, bytes::Bytes), String> {
        self.send("POST", path, "application/json", body.to_string()).await
    }

    /// One request to the PSP, within [`PSP_TIMEOUT`]: its status and body.
    async fn send(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: String,
    ) -> Result<(u16, bytes::Bytes), String> {
        let exchange = exchange(&self.authority, method, path, content_type, body);
        let (status, _, body) = tokio::time::timeout(PSP_TIMEOUT, exchange)
            .await
            .map_err(|_| format!("PSP {} did not answer within {PSP_TIMEOUT:?}", self.config.id))??;
        Ok((status, body))
    }

    /// Checks a notification's signature (HMAC-SHA256 over `"{timestamp}.{body}"`, the timestamp
    /// within the PSP's tolerance of `now`, compared in constant time), then reads it in the
    /// cashier's words. `header` gives the request's headers by name.
    pub fn read_notification<'h>(
        &self,
        header: impl Fn(&str) -> Option<&'h str>,
        body: &[u8],
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Notification, NotificationError> {
        let (t, given) = match self.config.dialect {
            Dialect::Card => {
                let signature = header("x-psp-signature").ok_or(NotificationError::BadSignature)?;
                let (mut t, mut v1) = (None, None);
                for part in signature.split(',') {
                    match part.split_once('=') {
                        Some(("t", value)) => t = value.parse::<i64>().ok(),
                        Some(("v1", value)) => v1 = hex::decode(value).ok(),
                        _ => {}
                    }
                }
                (t, v1)
            }
            Dialect::BankPush => (
                header("x-bank-timestamp").and_then(|v| v.parse::<i64>().ok()),
                header("x-bank-signature").and_then(|v| hex::decode(v).ok()),
            ),
        };
        let (Some(t), Some(given)) = (t, given) else { return Err(NotificationError::BadSignature) };
        let tolerance = i64::try_from(self.config.signature_tolerance_seconds).unwrap_or(i64::MAX);
        if (now.timestamp() - t).abs() > tolerance {
            return Err(NotificationError::BadSignature);
        }
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&self.secret).expect("HMAC takes any key length");
        mac.update(format!("{t}.").as_bytes());
        mac.update(body);
        mac.verify_slice(&given).map_err(|_| NotificationError::BadSignature)?;
        let notification = match self.config.dialect {
            Dialect::Card => card_notification(body)?,
            Dialect::BankPush => bank_notification(body)?,
        };
        let sane = |s: &str| !s.is_empty() && s.len() <= 100;
        if !sane(&notification.event_id)
            || !sane(&notification.psp_reference)
            || !sane(&notification.merchant_reference)
        {
            return Err(NotificationError::Malformed("an id is empty or longer than 100 characters".into()));
        }
        Ok(notification)
    }
}

/// A payment the PSP has, in either dialect's answer (`pspReference` or `id`, `redirectUrl`).
fn created(body: &[u8]) -> Result<Created, String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Answer {
        #[serde(alias = "id")]
        psp_reference: String,
        #[serde(default)]
        redirect_url: Option<String>,
    }
    let answer: Answer = serde_json::from_slice(body).map_err(|e| format!("the PSP's answer: {e}"))?;
    Ok(Created { reference: answer.psp_reference, redirect_url: answer.redirect_url })
}

/// One line of a PSP's settlement report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportLine {
    /// `CAPTURE`, `PAYOUT`, `CHARGEBACK`.
    pub kind: String,
    /// The cell's payment id (the merchant reference).
    pub payment: String,
    pub amount: String,
}

/// A card acquirer's notification.
fn card_notification(body: &[u8]) -> Result<Notification, NotificationError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Wire {
        event_id: String,
        event_code: String,
        psp_reference: String,
        merchant_reference: String,
        success: bool,
        #[serde(default)]
        reason: Option<String>,
        #[serde(default)]
        amount: Option<String>,
        #[serde(default)]
        currency: Option<String>,
        /// Unix seconds.
        #[serde(default)]
        event_date: Option<i64>,
    }
    let wire: Wire = serde_json::from_slice(body).map_err(|e| NotificationError::Malformed(e.to_string()))?;
    Ok(Notification {
        event_id: wire.event_id,
        code: wire.event_code,
        psp_reference: wire.psp_reference,
        merchant_reference: wire.merchant_reference,
        success: wire.success,
        reason: wire.reason,
        amount: wire.amount,
        currency: wire.currency,
        event_date: wire.event_date.and_then(|t| chrono::DateTime::from_timestamp(t, 0)),
    })
}

/// A bank-push callback, in the card dialect's words: a settled pay-in is a capture, a cancelled
/// one a refused authorisation.
fn bank_notification(body: &[u8]) -> Result<Notification, NotificationError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Wire {
        event_id: String,
        #[serde(rename = "type")]
        kind: String,
        id: String,
        merchant_reference: String,
        #[serde(default)]
        reason: Option<String>,
        #[serde(default)]
        amount: Option<String>,
        #[serde(default)]
        currency: Option<String>,
        #[serde(default)]
        created_at: Option<chrono::DateTime<chrono::Utc>>,
    }
    let wire: Wire = serde_json::from_slice(body).map_err(|e| NotificationError::Malformed(e.to_string()))?;
    let (code, success) = match wire.kind.as_str() {
        "payin.settled" => ("CAPTURE", true),
        "payin.cancelled" => ("AUTHORISATION", false),
        "payout.executed" => ("PAYOUT_PAID", true),
        "payout.rejected" => ("PAYOUT_FAILED", false),
        other => (other, true),
    };
    Ok(Notification {
        event_id: wire.event_id,
        code: code.to_owned(),
        psp_reference: wire.id,
        merchant_reference: wire.merchant_reference,
        success,
        reason: wire.reason,
        amount: wire.amount,
        currency: wire.currency,
        event_date: wire.created_at,
    })
}

#[derive(Debug, thiserror::Error)]
#[error("PSP file {path}: {problem}")]
pub struct PspFileError {
    pub path: PathBuf,
    pub problem: String,
}

/// Loads every `*.toml` under `dir` with its secret from the environment and its address from
/// `urls` (`id` → `http://HOST:PORT`). A PSP without a secret or an address is left out, with an
/// error in the log: the cell takes no payment it could not verify.
pub fn load_dir(dir: &Path, urls: &[(String, String)]) -> Result<Vec<Psp>, PspFileError> {
    load_dir_with(dir, urls, |name| std::env::var(name).ok())
}

/// [`load_dir`], with each secret from `secret_of(the variable its file names)`.
pub fn load_dir_with(
    dir: &Path,
    urls: &[(String, String)],
    secret_of: impl Fn(&str) -> Option<String>,
) -> Result<Vec<Psp>, PspFileError> {
    let fail = |path: &Path, problem: String| PspFileError { path: path.to_owned(), problem };
    let files = crate::config_dir::toml_files::<PspFile>(dir).map_err(|(path, problem)| fail(&path, problem))?;
    let mut psps: Vec<Psp> = Vec::new();
    for (path, config) in files {
        if !crate::config_dir::valid_id(&config.id) || psps.iter().any(|p| p.config.id == config.id) {
            return Err(fail(&path, format!("id `{}`: 1 to 32 of a-z 0-9 -, unique", config.id)));
        }
        let Some(secret) = secret_of(&config.secret_env).filter(|s| !s.is_empty()) else {
            tracing::error!(psp = %config.id, env = %config.secret_env, "PSP secret not set: no payments through it");
            continue;
        };
        let Some((_, url)) = urls.iter().find(|(id, _)| *id == config.id) else {
            tracing::error!(psp = %config.id, "no --psp-url for this PSP: no payments through it");
            continue;
        };
        let authority = authority("--psp-url", url).map_err(|e| fail(&path, e))?;
        // One leaked name per PSP, once at start: house accounts are named by static strings.
        let clearing = crate::ledger::HouseAccount(Box::leak(format!("psp-clearing:{}", config.id).into_boxed_str()));
        tracing::info!(psp = %config.id, dialect = ?config.dialect, "PSP loaded");
        psps.push(Psp { config, secret: secret.into_bytes(), authority, clearing });
    }
    Ok(psps)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn psp() -> Psp {
        let config = PspFile {
            id: "card".into(),
            dialect: Dialect::Card,
            secret_env: "X".into(),
            signature_tolerance_seconds: 300,
            currencies: vec!["GBP".into()],
        };
        Psp {
            config,
            secret: b"s3cret".to_vec(),
            authority: "127.0.0.1:1".into(),
            clearing: crate::ledger::HouseAccount("psp-clearing:card"),
        }
    }

    fn signed(t: i64, body: &str, secret: &[u8]) -> String {
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
        mac.update(format!("{t}.{body}").as_bytes());
        format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
    }

    #[test]
    fn a_notification_is_read_only_when_signed_recently_with_the_secret() {
        let body = r#"{"eventId":"evt_1","eventCode":"CAPTURE","pspReference":"pay_1","merchantReference":"dep_1","amount":"10.00","currency":"GBP","success":true}"#;
        let now = chrono::DateTime::from_timestamp(1_796_000_000, 0).unwrap();
        let t = now.timestamp();
        let p = psp();
        let good = signed(t, body, b"s3cret");
        let read = p.read_notification(|_| Some(good.as_str()), body.as_bytes(), now).unwrap();
        assert_eq!((read.event_id.as_str(), read.code.as_str(), read.success), ("evt_1", "CAPTURE", true));
        let bad =
            |sig: Option<String>, body: &str| p.read_notification(|_| sig.as_deref(), body.as_bytes(), now).is_err();
        assert!(bad(Some(signed(t, body, b"other")), body), "another secret");
        assert!(bad(Some(signed(t - 301, body, b"s3cret")), body), "too old: a replay");
        assert!(bad(Some(signed(t, body, b"s3cret")), &body.replace("10.00", "99.00")), "tampered");
        assert!(bad(None, body));
        assert!(bad(Some("t=1".into()), body));
    }
}
