//! Regulator exports from the control plane: it has each cell build its exports on the cadence of
//! its region file (`[exports] realtime`, a batch each quarter of an hour, `daily`, `monthly`,
//! `quarterly`), asking over mutual TLS with an
//! operator token it signs (`compliance`), retries what fails with a growing wait, and keeps what
//! it learns: each build's state and, once built, its signed manifest. Never the files: personal
//! data stays in the cell, and a regulator's download is streamed from the cell, which chains it.

use contracts::exports::{ExportSummary, PeriodKind};
use contracts::region::RegionConfig;
use contracts::Jurisdiction;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The longest wait between two attempts at a failing build.
const RETRY_MAX: Duration = Duration::from_secs(30 * 60);

/// One scheduled export and where it stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScheduledExport {
    pub jurisdiction: Jurisdiction,
    pub cell: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub period: String,
    /// `pending` (not asked yet or being retried), `built`, or `failed` (refused by the cell:
    /// not retried).
    pub state: String,
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt: Option<chrono::DateTime<chrono::Utc>>,
    /// Once built: the cell's signed manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export: Option<ExportSummary>,
}

/// `GET /exports/{jurisdiction}`.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExportsView {
    pub jurisdiction: Jurisdiction,
    /// Newest period first.
    pub exports: Vec<ScheduledExport>,
}

/// A cell's answer to one call: its status and body.
pub type CellAnswer = (u16, bytes::Bytes);

pub struct Exports {
    regions: Vec<RegionConfig>,
    tls_dir: PathBuf,
    operator_key: ed25519_dalek::SigningKey,
    path: PathBuf,
    builds: Mutex<BTreeMap<(String, String, String), ScheduledExport>>,
}

/// The periods due at `now` for a cadence: the last whole one.
fn last_period(kind: PeriodKind, now: chrono::DateTime<chrono::Utc>) -> String {
    use chrono::Datelike;
    let today = now.date_naive();
    match kind {
        PeriodKind::QuarterHour => {
            use chrono::DurationRound;
            let quarter = chrono::Duration::minutes(15);
            let current = now.duration_trunc(quarter).unwrap_or(now);
            (current - quarter).format("%Y-%m-%dT%H:%M").to_string()
        }
        PeriodKind::Day => (today - chrono::Duration::days(1)).to_string(),
        PeriodKind::Month => {
            let (y, m) = if today.month() == 1 { (today.year() - 1, 12) } else { (today.year(), today.month() - 1) };
            format!("{y}-{m:02}")
        }
        PeriodKind::Quarter => {
            let q = (today.month() - 1) / 3; // the current quarter's index; the last whole one is q - 1
            let (y, q) = if q == 0 { (today.year() - 1, 4) } else { (today.year(), q) };
            format!("{y}-Q{q}")
        }
    }
}

/// How far back a schedule reaches, per cadence: a control plane down for a few days still has
/// those days built when it is back.
fn due_periods(kind: PeriodKind, now: chrono::DateTime<chrono::Utc>) -> Vec<String> {
    let (step, back) = match kind {
        // A day: a control plane back after hours has each quarter filed then, not at midnight.
        PeriodKind::QuarterHour => (chrono::Duration::minutes(15), 96),
        PeriodKind::Day => (chrono::Duration::days(1), 7),
        PeriodKind::Month => (chrono::Duration::days(31), 2),
        PeriodKind::Quarter => (chrono::Duration::days(92), 2),
    };
    let mut periods: Vec<String> = (0..back).map(|i| last_period(kind, now - step * i)).collect();
    periods.dedup();
    periods
}

impl Exports {
    /// The scheduler's state, from `data_dir/exports.json` when it exists.
    pub fn open(
        data_dir: &std::path::Path,
        regions: Vec<RegionConfig>,
        tls_dir: PathBuf,
        operator_key: ed25519_dalek::SigningKey,
    ) -> anyhow::Result<Exports> {
        let path = data_dir.join("exports.json");
        let builds = match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<Vec<ScheduledExport>>(&bytes) {
                Ok(list) => list.into_iter().map(|b| ((b.cell.clone(), b.kind.clone(), b.period.clone()), b)).collect(),
                // The schedule is rebuilt from the cells' answers (a build asked again answers
                // the one made): an unreadable file costs a few calls, never the start.
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "the export schedule does not read; starting afresh");
                    BTreeMap::new()
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(e.into()),
        };
        Ok(Exports { regions, tls_dir, operator_key, path, builds: Mutex::new(builds) })
    }

    fn save(&self, builds: &BTreeMap<(String, String, String), ScheduledExport>) {
        let list: Vec<&ScheduledExport> = builds.values().collect();
        let bytes = serde_json::to_vec_pretty(&list).expect("the schedule encodes");
        if let Err(e) = crate::replace_file(&self.path, &bytes) {
            tracing::error!(error = %e, path = %self.path.display(), "cannot save the export schedule");
        }
    }

    /// Adds what is due at `now` and not yet known, as `pending`.
    fn schedule(&self, now: chrono::DateTime<chrono::Utc>) {
        let mut builds = self.builds.lock().unwrap_or_else(|e| e.into_inner());
        let mut added = false;
        for region in &self.regions {
            let cadences = [
                (PeriodKind::QuarterHour, &region.exports.realtime),
                (PeriodKind::Day, &region.exports.daily),
                (PeriodKind::Month, &region.exports.monthly),
                (PeriodKind::Quarter, &region.exports.quarterly),
            ];
            for (cadence, kinds) in cadences {
                for period in due_periods(cadence, now) {
                    for kind in kinds {
                        let key = (region.cell_id.clone(), kind.clone(), period.clone());
                        builds.entry(key).or_insert_with(|| {
                            added = true;
                            ScheduledExport {
                                jurisdiction: region.jurisdiction,
                                cell: region.cell_id.clone(),
                                kind: kind.clone(),
                                period: period.clone(),
                                state: "pending".into(),
                                attempts: 0,
                                last_error: None,
                                next_attempt: None,
                                export: None,
                            }
                        });
                    }
                }
            }
        }
        // Real-time batches come 96 a day: built ones leave the schedule after two days (the
        // cell's vault keeps them, and each day's pack holds them).
        let before = builds.len();
        let old = (now - chrono::Duration::days(2)).naive_utc();
        builds.retain(|_, b| {
            let quarter = chrono::NaiveDateTime::parse_from_str(&b.period, "%Y-%m-%dT%H:%M");
            !(b.state == "built" && quarter.is_ok_and(|q| q < old))
        });
        if added || builds.len() != before {
            self.save(&builds);
        }
    }

    /// Asks the cells for every pending build whose time has come, once each.
    pub async fn run_once(&self, now: chrono::DateTime<chrono::Utc>) {
        self.schedule(now);
        let mut due: Vec<ScheduledExport> = {
            let builds = self.builds.lock().unwrap_or_else(|e| e.into_inner());
            builds
                .values()
                .filter(|b| b.state == "pending" && b.next_attempt.is_none_or(|t| t <= now))
                .cloned()
                .collect()
        };
        // Real-time batches first: a day's JUC packs its quarters, so the last one is asked for
        // before the day (the cell builds a missing one itself, but it would then be built twice).
        due.sort_by_key(|b| !b.period.contains('T'));
        for build in due {
            let body = serde_json::json!({ "type": build.kind, "period": build.period });
            let answer = self.call(&build.cell, "POST", "/exports", None, Some(body)).await;
            let mut builds = self.builds.lock().unwrap_or_else(|e| e.into_inner());
            let Some(b) = builds.get_mut(&(build.cell.clone(), build.kind.clone(), build.period.clone())) else {
                continue;
            };
            b.attempts += 1;
            match answer {
                Ok((200 | 201, body)) => match serde_json::from_slice::<ExportSummary>(&body) {
                    Ok(summary) => {
                        tracing::info!(export = %summary.manifest.export_id, "export built");
                        b.state = "built".into();
                        b.last_error = None;
                        b.next_attempt = None;
                        b.export = Some(summary);
                    }
                    Err(e) => b.last_error = Some(format!("the cell's answer does not read: {e}")),
                },
                // Refused for what it is (a type without a dialect, a period the cell cannot
                // cover): asking again changes nothing.
                Ok((422, body)) => {
                    b.state = "failed".into();
                    b.last_error = Some(String::from_utf8_lossy(&body).into_owned());
                    tracing::error!(cell = %b.cell, kind = %b.kind, period = %b.period, error = ?b.last_error, "export refused by the cell");
                }
                Ok((status, body)) => {
                    b.last_error = Some(format!("{status}: {}", String::from_utf8_lossy(&body)));
                }
                Err(e) => b.last_error = Some(e.to_string()),
            }
            if b.state == "pending" {
                let wait = Duration::from_secs(10).saturating_mul(1 << b.attempts.min(10)).min(RETRY_MAX);
                b.next_attempt = Some(now + chrono::Duration::from_std(wait).unwrap_or_default());
                tracing::warn!(cell = %b.cell, kind = %b.kind, period = %b.period, error = ?b.last_error, ?wait, "export build failed; retrying");
            }
            let snapshot = builds.clone();
            drop(builds);
            self.save(&snapshot);
        }
    }

    /// Runs the schedule every `every`.
    pub fn spawn(self: Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                self.run_once(chrono::DateTime::<chrono::Utc>::from(std::time::SystemTime::now())).await;
            }
        })
    }

    /// A jurisdiction's scheduled exports, newest period first.
    pub fn view(&self, jurisdiction: Jurisdiction) -> ExportsView {
        let builds = self.builds.lock().unwrap_or_else(|e| e.into_inner());
        let mut exports: Vec<ScheduledExport> =
            builds.values().filter(|b| b.jurisdiction == jurisdiction).cloned().collect();
        exports.sort_by(|a, b| b.period.cmp(&a.period).then(a.kind.cmp(&b.kind)));
        ExportsView { jurisdiction, exports }
    }

    /// The cell of a jurisdiction.
    pub fn cell_of(&self, jurisdiction: Jurisdiction) -> Option<&str> {
        self.regions.iter().find(|r| r.jurisdiction == jurisdiction).map(|r| r.cell_id.as_str())
    }

    /// A call to `cell`'s API over mutual TLS as `control`, with an operator token for `role`
    /// (compliance unless a regulator's download), signed here.
    pub async fn call(
        &self,
        cell: &str,
        method: &str,
        path: &str,
        on_behalf: Option<(contracts::operators::Role, &str)>,
        body: Option<serde_json::Value>,
    ) -> anyhow::Result<CellAnswer> {
        use anyhow::Context;
        use http_body_util::{BodyExt, Full};
        let region = self.regions.iter().find(|r| r.cell_id == cell).context("no such cell")?;
        let url = &region.primary_endpoint;
        let authority = url.split_once("://").map_or(url.as_str(), |(_, rest)| rest).trim_end_matches('/');
        let (role, by) = on_behalf.unwrap_or((contracts::operators::Role::Compliance, "global-control"));
        let now = chrono::Utc::now().timestamp();
        let (_, token) = contracts::operators::issue(&self.operator_key, role, by, now);
        let stream = tokio::time::timeout(Duration::from_secs(10), tokio::net::TcpStream::connect(authority))
            .await
            .context("connect: timed out")??;
        let config = replication::tls::client_config(&self.tls_dir, "control", cell)?;
        let server = rustls::pki_types::ServerName::try_from(cell.to_owned())?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(server, stream).await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls)).await?;
        tokio::spawn(conn);
        let bytes = body.map(|b| serde_json::to_vec(&b)).transpose()?.unwrap_or_default();
        let request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", authority)
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(Full::new(bytes::Bytes::from(bytes)))?;
        let response = tokio::time::timeout(Duration::from_secs(300), sender.send_request(request))
            .await
            .context("the cell did not answer within 300 s")??;
        let status = response.status().as_u16();
        Ok((status, response.into_body().collect().await?.to_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_whole_period_of_each_cadence() {
        let at = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap().to_utc();
        assert_eq!(last_period(PeriodKind::QuarterHour, at("2026-12-01T00:07:00Z")), "2026-11-30T23:45");
        assert_eq!(last_period(PeriodKind::QuarterHour, at("2026-12-01T10:30:00Z")), "2026-12-01T10:15");
        assert_eq!(last_period(PeriodKind::Day, at("2026-12-01T03:00:00Z")), "2026-11-30");
        assert_eq!(last_period(PeriodKind::Month, at("2026-12-01T03:00:00Z")), "2026-11");
        assert_eq!(last_period(PeriodKind::Month, at("2027-01-05T00:00:00Z")), "2026-12");
        assert_eq!(last_period(PeriodKind::Quarter, at("2026-12-06T00:00:00Z")), "2026-Q3");
        assert_eq!(last_period(PeriodKind::Quarter, at("2027-02-01T00:00:00Z")), "2026-Q4");
    }
}
