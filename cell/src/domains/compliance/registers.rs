//! The national self-exclusion registers, one adapter per API dialect, chosen by the region file's
//! `[self_exclusion] register`: GAMSTOP (a form POST, answered in the `X-Exclusion` header),
//! ROFUS (by CPR number), Spelpaus (by personnummer), RGIAJ (by DNI/NIE). `cell serve
//! --registers-url URL` says where they answer (in development, tests and drills, the `sandbox`
//! process). A register that does not answer in time fails closed: the caller refuses what it
//! guards (`SELF_EXCLUSION_CHECK_UNAVAILABLE`) and writes nothing.

use bytes::Bytes;
use contracts::players::{DocumentKind, PlayerProfile};
use contracts::region::SelfExclusionRegister;
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};
use std::time::Duration;

/// Longest a register may take to answer before the check fails closed.
pub const REGISTER_TIMEOUT: Duration = Duration::from_secs(5);

/// What a register said.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RegisterAnswer {
    Excluded,
    NotExcluded,
    /// Excluded before, not now (GAMSTOP's `P`): may play.
    PreviouslyExcluded,
}

impl RegisterAnswer {
    pub fn excluded(self) -> bool {
        self == RegisterAnswer::Excluded
    }
}

/// Why a register could not be asked or did not answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RegisterError {
    /// The player's profile lacks what this register is asked with.
    #[error("the {register} register is asked with {needs}, which the profile lacks")]
    ProfileIncomplete { register: SelfExclusionRegister, needs: &'static str },
    #[error("the {register} register did not answer: {why}")]
    Unavailable { register: SelfExclusionRegister, why: String },
}

/// Where the registers answer.
#[derive(Debug, Clone)]
pub struct Registers {
    /// `host:port` of the registers' base URL (plain HTTP: the sandbox, or a local egress proxy).
    authority: String,
    timeout: Duration,
}

impl Registers {
    /// `base`: `http://host:port`.
    pub fn new(base: &str) -> Result<Registers, String> {
        let authority = base
            .strip_prefix("http://")
            .map(|rest| rest.trim_end_matches('/'))
            .filter(|a| !a.is_empty() && !a.contains('/'))
            .ok_or_else(|| format!("--registers-url {base}: use http://HOST:PORT"))?;
        Ok(Registers { authority: authority.to_owned(), timeout: REGISTER_TIMEOUT })
    }

    /// Asks `register` about the player of `profile`, born on `born`. `Ok(None)`: this region has
    /// no national register (Malta: the operator's own exclusion only).
    pub async fn ask(
        &self,
        register: SelfExclusionRegister,
        profile: &PlayerProfile,
        born: chrono::NaiveDate,
    ) -> Result<Option<RegisterAnswer>, RegisterError> {
        let number = |kinds: &[DocumentKind], needs: &'static str| {
            profile
                .identity_document
                .as_ref()
                .filter(|d| kinds.contains(&d.kind))
                .map(|d| d.number.clone())
                .ok_or(RegisterError::ProfileIncomplete { register, needs })
        };
        let unavailable = |why: String| RegisterError::Unavailable { register, why };
        let lookup = |path: &'static str, field: &'static str, number: String| {
            let body = json!({ field: number, "familyName": profile.family_name }).to_string();
            (path, "application/json", body)
        };
        let (path, content_type, body) = match register {
            SelfExclusionRegister::Operator => return Ok(None),
            SelfExclusionRegister::Gamstop => {
                let form = [
                    ("firstName", profile.given_name.as_str()),
                    ("lastName", profile.family_name.as_str()),
                    ("dateOfBirth", &born.to_string()),
                    ("email", profile.email.as_str()),
                    ("postcode", profile.address.postcode.as_str()),
                    ("mobile", profile.phone.as_str()),
                ];
                let body = serde_urlencoded::to_string(form).map_err(|e| unavailable(e.to_string()))?;
                ("/gamstop/v2", "application/x-www-form-urlencoded", body)
            }
            SelfExclusionRegister::Rofus => {
                lookup("/rofus/v1/lookup", "cpr", number(&[DocumentKind::Cpr], "a CPR number")?)
            }
            SelfExclusionRegister::Spelpaus => lookup(
                "/spelpaus/v1/is-blocked",
                "personalNumber",
                number(&[DocumentKind::Personnummer], "a personnummer")?,
            ),
            SelfExclusionRegister::Rgiaj => lookup(
                "/rgiaj/v1/check",
                "documentNumber",
                number(&[DocumentKind::Dni, DocumentKind::Nie], "a DNI or NIE number")?,
            ),
        };
        let exchange = self.post(path, content_type, body);
        let (status, headers, body) = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| unavailable(format!("no answer within {:?}", self.timeout)))?
            .map_err(unavailable)?;
        if status != 200 {
            return Err(unavailable(format!("it answered {status}")));
        }
        let parsed: Option<Value> = serde_json::from_slice(&body).ok();
        let field = |name: &str| parsed.as_ref().map(|v| v[name].clone()).unwrap_or(Value::Null);
        let answer = match register {
            SelfExclusionRegister::Gamstop => match headers.get("x-exclusion").and_then(|v| v.to_str().ok()) {
                Some("Y") => RegisterAnswer::Excluded,
                Some("N") => RegisterAnswer::NotExcluded,
                Some("P") => RegisterAnswer::PreviouslyExcluded,
                other => return Err(unavailable(format!("an X-Exclusion of {other:?}"))),
            },
            SelfExclusionRegister::Rofus => match field("status").as_str() {
                Some("Excluded") => RegisterAnswer::Excluded,
                Some("NotExcluded") => RegisterAnswer::NotExcluded,
                other => return Err(unavailable(format!("a status of {other:?}"))),
            },
            SelfExclusionRegister::Spelpaus => match field("isBlocked").as_bool() {
                Some(true) => RegisterAnswer::Excluded,
                Some(false) => RegisterAnswer::NotExcluded,
                None => return Err(unavailable("no isBlocked in its answer".into())),
            },
            SelfExclusionRegister::Rgiaj => match field("registered").as_bool() {
                Some(true) => RegisterAnswer::Excluded,
                Some(false) => RegisterAnswer::NotExcluded,
                None => return Err(unavailable("no registered in its answer".into())),
            },
            SelfExclusionRegister::Operator => unreachable!("answered above"),
        };
        Ok(Some(answer))
    }

    async fn post(
        &self,
        path: &str,
        content_type: &str,
        body: String,
    ) -> Result<(u16, hyper::HeaderMap, Bytes), String> {
        let stream = tokio::net::TcpStream::connect(&self.authority).await.map_err(|e| e.to_string())?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        let request = hyper::Request::post(path)
            .header("host", &self.authority)
            .header("content-type", content_type)
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let response = sender.send_request(request).await.map_err(|e| e.to_string())?;
        let (status, headers) = (response.status().as_u16(), response.headers().clone());
        let body = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok((status, headers, body))
    }
}
