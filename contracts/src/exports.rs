//! Regulator exports: the signed manifest every export carries (`manifest.json`, signed in
//! `manifest.sig` with the cell's Ed25519 audit key), the list global-control shows, and the
//! Merkle inclusion proof of one event. The files themselves are in each regulator's own format.

use crate::Jurisdiction;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The version of [`ExportManifest`] and of the export API's shapes.
pub const EXPORTS_VERSION: &str = "2";

/// The period an export covers, in UTC, `[start, end)`: a quarter of an hour (the DGOJ's real-time
/// game records), a day, a month or a quarter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum PeriodKind {
    QuarterHour,
    Day,
    Month,
    Quarter,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExportPeriod {
    pub kind: PeriodKind,
    /// As given: `2026-12-06T10:15`, `2026-12-06`, `2026-12` or `2026-Q4`.
    pub label: String,
    #[serde(deserialize_with = "instant_or_day")]
    pub start: chrono::DateTime<chrono::Utc>,
    /// The first instant after the period.
    #[serde(deserialize_with = "instant_or_day")]
    pub end: chrono::DateTime<chrono::Utc>,
}

/// An instant, or (as manifests of version 1 wrote it) a day: its midnight, UTC.
fn instant_or_day<'de, D: serde::Deserializer<'de>>(d: D) -> Result<chrono::DateTime<chrono::Utc>, D::Error> {
    let text = String::deserialize(d)?;
    if let Ok(day) = chrono::NaiveDate::parse_from_str(&text, "%Y-%m-%d") {
        return Ok(day.and_time(chrono::NaiveTime::MIN).and_utc());
    }
    chrono::DateTime::parse_from_rfc3339(&text).map(|t| t.to_utc()).map_err(serde::de::Error::custom)
}

/// One file of an export, as the regulator receives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExportFile {
    /// Its path in the export, as the regulator requires it (`CNJ/OP01/CJ/Diario/…zip`).
    pub name: String,
    /// Hex SHA-256 of its bytes.
    pub sha256: String,
    pub bytes: u64,
    /// The regulator's records it holds (sub-records for DGOJ).
    pub records: u64,
}

/// Money totals of the events an export includes, in one currency, as decimal strings. Stakes
/// and withdrawals are positive here (the regulator's own signs are in its files).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExportTotals {
    pub currency: String,
    pub stakes: String,
    /// Stakes given back (rollbacks and voids).
    pub stakes_returned: String,
    pub wins: String,
    /// Gross gaming revenue: stakes − stakes returned − wins.
    pub ggr: String,
    pub deposits: String,
    pub withdrawals: String,
    /// Deposits taken back (chargebacks, refunds) and other adjustments, signed as they move the
    /// players' balances.
    pub other: String,
    pub bonus: String,
}

/// The audit-chain range an export covers, and the chain's hash at its end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChainRange {
    /// 0 with `last_seq` 0 when the period holds no record.
    pub first_seq: u64,
    pub last_seq: u64,
    /// Hex hash of the record at `last_seq` (the chain's head there).
    pub head_hash: String,
}

/// `manifest.json`: what an export holds and proves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExportManifest {
    pub manifest_version: String,
    /// `<cell>-<TYPE>-<period>`, with `-r<n>` for a rebuild after the first.
    pub export_id: String,
    pub cell: String,
    pub jurisdiction: Jurisdiction,
    /// The regulator's own record name (`CJD`, `KasinospilPrSession`, `quarterly-return`).
    #[serde(rename = "type")]
    pub kind: String,
    /// The dialect that wrote it (`dgoj-sci`).
    pub format: String,
    pub period: ExportPeriod,
    pub files: Vec<ExportFile>,
    /// The regulator's records over all files.
    pub record_count: u64,
    /// Chained events the export includes (each once).
    pub event_count: u64,
    pub totals: Vec<ExportTotals>,
    pub chain: ChainRange,
    /// Hex Merkle root (RFC 6962 hashing) over the record hashes of the included events, in
    /// chain order; empty tree: SHA-256 of nothing.
    pub merkle_root: String,
    /// Records of earlier periods this export corrects (`Rectificacion`), by their record id.
    #[serde(default)]
    pub corrections: Vec<String>,
    /// The region file's policy version in force.
    pub policy_version: String,
    /// What built it: `cell <version>, exports <version>`.
    pub generator: String,
    pub built_at: chrono::DateTime<chrono::Utc>,
    /// Hex Ed25519 public key of the cell's audit key, which signed `manifest.sig` (the regulator
    /// pins its own copy; this one is informative).
    pub public_key: String,
}

/// `GET /exports/{id}/proof?seq=N`: the Merkle path from one included event to the export's
/// root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InclusionProof {
    pub export_id: String,
    pub seq: u64,
    /// Hex hash of the audit record at `seq`.
    pub record_hash: String,
    /// Its position among the export's leaves.
    pub leaf_index: u64,
    pub leaf_count: u64,
    /// Sibling hashes from the leaf up (RFC 6962 audit path), hex.
    pub path: Vec<String>,
    pub merkle_root: String,
}

/// An export as global-control lists it: its manifest (never its files, which stay in the cell).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExportSummary {
    pub manifest: ExportManifest,
    /// Hex Ed25519 signature of the manifest's bytes.
    pub signature: String,
}

/// `GET /exports` on a cell, `GET /exports/{jurisdiction}` on global-control.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExportList {
    pub exports: Vec<ExportSummary>,
}

/// `export.built`: an export went into the cell's vault (its manifest's hash, so the chain
/// vouches for it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExportBuilt {
    pub export_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub period: String,
    /// Hex SHA-256 of `manifest.json`.
    pub manifest_sha256: String,
    pub merkle_root: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<crate::operators::OperatorRef>,
}
impl crate::events::EventPayload for ExportBuilt {
    const NAME: &'static str = "export.built";
    const VERSION: &'static str = "1";
}

/// `export.downloaded`: someone took a file of an export (a regulator through global-control).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExportDownloaded {
    pub export_id: String,
    pub file: String,
    pub sha256: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<crate::operators::OperatorRef>,
}
impl crate::events::EventPayload for ExportDownloaded {
    const NAME: &'static str = "export.downloaded";
    const VERSION: &'static str = "1";
}

/// `POST /exports` on a cell: build one export now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BuildRequest {
    /// The regulator's record name (`CJD`).
    #[serde(rename = "type")]
    pub kind: String,
    /// `YYYY-MM-DDTHH:MM` (a quarter of an hour: minutes 00, 15, 30 or 45), `YYYY-MM-DD`,
    /// `YYYY-MM` or `YYYY-Qn`.
    pub period: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_period_of_a_version_1_manifest_still_reads() {
        let v1 = r#"{"kind":"day","label":"2026-11-29","start":"2026-11-29","end":"2026-11-30"}"#;
        let period: ExportPeriod = serde_json::from_str(v1).unwrap();
        assert_eq!(period.end.to_rfc3339(), "2026-11-30T00:00:00+00:00");
        let v2 = serde_json::to_string(&period).unwrap();
        assert_eq!(serde_json::from_str::<ExportPeriod>(&v2).unwrap(), period);
    }
}
