//! The national self-exclusion registers, one adapter per API dialect, chosen by the region file's
//! `[self_exclusion] register`: GAMSTOP (a form POST, answered in the `X-Exclusion` header),
//! ROFUS (by CPR number), Spelpaus (by personnummer), RGIAJ (by DNI/NIE). `cell serve
//! --registers-url URL` says where they answer (in development, tests and drills, the `sandbox`
//! process). A register that does not answer in time fails closed: the caller refuses what it
//! guards (`SELF_EXCLUSION_CHECK_UNAVAILABLE`) and writes nothing.

use bytes::Bytes;
use contracts::players::{DocumentKind, PlayerProfile};
use contracts::region::SelfExclusionRegister;
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
        Ok(Registers { authority: crate::outside::authority("--registers-url", base)?, timeout: REGISTER_TIMEOUT })
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
        let exchange = self.request("POST", path, content_type, body);
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

    /// The sanctions/PEP list the same base URL serves (`GET /sanctions/v1/list`).
    pub async fn sanctions_list(&self) -> Result<SanctionsList, String> {
        let exchange = self.request("GET", "/sanctions/v1/list", "application/json", String::new());
        let (status, _, body) = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| format!("the sanctions list did not come within {:?}", self.timeout))??;
        if status != 200 {
            return Err(format!("the sanctions list answered {status}"));
        }
        serde_json::from_slice(&body).map_err(|e| format!("the sanctions list does not parse: {e}"))
    }

    async fn request(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: String,
    ) -> Result<(u16, hyper::HeaderMap, Bytes), String> {
        crate::outside::exchange(&self.authority, method, path, content_type, body).await
    }
}

/// A sanctions/PEP list as downloaded.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SanctionsList {
    pub version: String,
    pub entries: Vec<SanctionsEntry>,
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SanctionsEntry {
    /// Empty: the entry matches on the family name alone.
    #[serde(default)]
    pub given_name: String,
    pub family_name: String,
    pub program: String,
}

/// A name as compared: lower case, letters and single spaces only.
fn normalise(name: &str) -> String {
    let kept: String =
        name.chars().map(|c| if c.is_alphabetic() { c.to_lowercase().next().unwrap_or(c) } else { ' ' }).collect();
    kept.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl SanctionsList {
    /// The best match of a player's names on the list, if it reaches `threshold` (Jaro-Winkler, 0
    /// to 1, after normalising; the region file's `[aml] match_threshold`): the entry and the score.
    pub fn screen(&self, given: &str, family: &str, threshold: f64) -> Option<(&SanctionsEntry, f64)> {
        let (given, family) = (normalise(given), normalise(family));
        self.entries
            .iter()
            .filter_map(|entry| {
                let family_score = strsim::jaro_winkler(&family, &normalise(&entry.family_name));
                let given_score = if entry.given_name.trim().is_empty() {
                    1.0
                } else {
                    strsim::jaro_winkler(&given, &normalise(&entry.given_name))
                };
                let score = family_score.min(given_score);
                (score >= threshold).then_some((entry, score))
            })
            .max_by(|a, b| a.1.total_cmp(&b.1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_through_case_accents_and_typos_but_not_strangers() {
        let list = SanctionsList {
            version: "1".into(),
            entries: vec![
                SanctionsEntry { given_name: "".into(), family_name: "Sanctioned".into(), program: "UN".into() },
                SanctionsEntry { given_name: "Olga".into(), family_name: "Sanctionova".into(), program: "EU".into() },
            ],
        };
        assert!(list.screen("Ann", "SANCTIONED", 0.92).is_some());
        assert!(list.screen("Olga", "Sanctionowa", 0.92).is_some(), "one letter off");
        assert!(list.screen("Olga", "Sanctionowa", 0.99).is_none(), "a stricter threshold");
        assert!(list.screen("Peter", "Sanctionova", 0.92).is_none(), "another given name");
        assert!(list.screen("Ann", "Smith", 0.92).is_none());
    }
}
