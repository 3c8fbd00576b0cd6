//! The `export-chaos` drill: the Spanish cell builds a month of exports (every day's CJD, CJT and
//! JUC of last month, at once) and is killed with `kill -9` while they are being written, twice;
//! then global-control's schedule and the rebuilt builds must complete. Checked: every build the
//! cell acknowledged is in its vault, no export is partial (a directory is complete or absent),
//! and every export in the vault passes `export-verify` against the cell's pinned key and data
//! (a day's JUC packs its 96 quarter-hour batches, which a day's check covers: XSD, completeness
//! and totals of every lote);
//! global-control lists the scheduled exports as built, and streams a file to Spain's regulator
//! but not to the UK's.

use crate::control::ControlApi;
use crate::platform::{Platform, Role};
use crate::report::{Check, Report};
use anyhow::{bail, Context};
use serde_json::json;
use std::collections::BTreeSet;
use std::time::Duration;

/// The cell whose regulator has a dialect.
const TARGET: &str = "es";
const TYPES: [&str; 3] = ["CJD", "CJT", "JUC"];

/// Every day of the month before `today`'s.
fn last_month_days(today: chrono::NaiveDate) -> Vec<String> {
    use chrono::Datelike;
    let first = today.with_day(1).expect("a first day");
    let start = (first - chrono::Duration::days(1)).with_day(1).expect("a first day");
    start.iter_days().take_while(|d| *d < first).map(|d| d.to_string()).collect()
}

pub async fn run(
    platform: &mut Platform,
    control: &ControlApi,
    quick: bool,
    report: &mut Report,
) -> anyhow::Result<()> {
    let cell = Role::Primary(TARGET.to_owned());
    let base = platform.url(&cell);
    let http = platform.http.clone();
    let key = http.get(Some(TARGET), &format!("{base}/audit/checkpoints")).await?.json()["publicKey"]
        .as_str()
        .context("the cell's audit key")?
        .to_owned();
    let days = last_month_days(chrono::Utc::now().date_naive());
    let days = if quick { days[..10].to_vec() } else { days };
    let mut acknowledged = BTreeSet::new();
    for round in 1..=2u32 {
        // Every build at once; the kill lands while they are being written.
        let mut asked = tokio::task::JoinSet::new();
        for day in &days {
            for kind in TYPES {
                let (http, url) = (http.clone(), format!("{base}/exports"));
                let body = serde_json::to_vec(&json!({ "type": kind, "period": day }))?;
                asked.spawn(async move { http.send(Some(TARGET), "POST", &url, &[], Some(body)).await });
            }
        }
        // Killed as soon as the first build is answered: the others are being written.
        let (mut built, mut cut) = (0, 0);
        let first = tokio::time::timeout(Duration::from_secs(30), asked.join_next()).await;
        if let Ok(Some(Ok(Ok(reply)))) = first {
            if reply.status == 201 || reply.status == 200 {
                built += 1;
                acknowledged.insert(reply.json()["manifest"]["exportId"].as_str().unwrap_or_default().to_owned());
            }
        }
        let pid = platform.process(&cell)?.pid().unwrap_or(0);
        platform.kill9(&cell)?;
        report.fault(format!("kill -9 cell {TARGET} (pid {pid}) with {} export builds in flight", asked.len()));
        while let Some(answer) = asked.join_next().await {
            match answer? {
                Ok(reply) if reply.status == 201 || reply.status == 200 => {
                    built += 1;
                    acknowledged.insert(reply.json()["manifest"]["exportId"].as_str().unwrap_or_default().to_owned());
                }
                _ => cut += 1,
            }
        }
        report.step(format!("round {round}: {built} builds answered before the kill, {cut} cut off"));
        platform.restart(&cell).await?;
        report.step(format!("cell {TARGET} restarted on the same data, ready"));
    }
    // What was cut off is asked again: each build answers, once.
    for day in &days {
        for kind in TYPES {
            let body = serde_json::to_vec(&json!({ "type": kind, "period": day }))?;
            let reply = http.send(Some(TARGET), "POST", &format!("{base}/exports"), &[], Some(body)).await?;
            if reply.status != 200 && reply.status != 201 {
                bail!("{kind} {day} after the kills: {} {}", reply.status, reply.text());
            }
        }
    }
    let listed = http.get(Some(TARGET), &format!("{base}/exports")).await?.json();
    let ids: BTreeSet<String> = listed["exports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["manifest"]["exportId"].as_str().map(str::to_owned))
        .collect();
    let lost: Vec<String> = acknowledged.difference(&ids).cloned().collect();
    report.check(Check::new(
        "every export build the cell acknowledged is in its vault after kill -9",
        lost,
        format!("{} acknowledged, {} in the vault", acknowledged.len(), ids.len()),
    ));

    // global-control's schedule reaches the cell over mutual TLS and keeps the manifests.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    let scheduled = loop {
        let (status, view) = control.call("GET", "/exports/ES", None).await?;
        let exports = view["exports"].as_array().cloned().unwrap_or_default();
        let pending = exports.iter().filter(|e| e["state"] != "built").count();
        if status == 200 && !exports.is_empty() && pending == 0 {
            break Ok(exports);
        }
        if tokio::time::Instant::now() > deadline {
            break Err(format!("{status}: {pending} of {} not built: {view}", exports.len()));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    report.check(Check::holds(
        "global-control has every scheduled ES export built and keeps its signed manifest",
        scheduled.is_ok(),
        match &scheduled {
            Ok(exports) => format!("{} scheduled exports built", exports.len()),
            Err(why) => why.clone(),
        },
    ));
    if let Ok(exports) = &scheduled {
        let manifest = &exports[0]["export"]["manifest"];
        let (id, file) = (
            manifest["exportId"].as_str().unwrap_or_default(),
            manifest["files"][0]["name"].as_str().unwrap_or_default(),
        );
        let path = format!("/exports/ES/{id}/files/{file}");
        let es = control.token_for("regulator:ES").await?;
        let uk = control.token_for("regulator:UK").await?;
        let (es_status, _) = control.call_raw("GET", &path, &es).await?;
        let (uk_status, _) = control.call_raw("GET", &path, &uk).await?;
        report.check(Check::holds(
            "Spain's regulator downloads an ES export through global-control; the UK's is refused",
            es_status == 200 && uk_status == 403,
            format!("regulator:ES {es_status}, regulator:UK {uk_status}"),
        ));
    }

    // Every export in the vault verifies against the chain, with the cell stopped.
    platform.process(&cell)?.terminate().await?;
    let data = platform.spec.data_dir.join(TARGET);
    let verifier = platform.spec.bins.cell.with_file_name("export-verify");
    let mut failures = Vec::new();
    let mut partial = Vec::new();
    let (mut verified, mut quarters) = (0, 0);
    let vault = data.join("exports");
    for entry in std::fs::read_dir(&vault).with_context(|| format!("read {}", vault.display()))? {
        let dir = entry?.path();
        let name = dir.file_name().unwrap_or_default().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue; // a scratch directory a kill left: never listed, cleared by the next build
        }
        if !dir.join("manifest.json").exists() || !dir.join("manifest.sig").exists() {
            partial.push(name);
            continue;
        }
        // A real-time JUC batch is checked within its day's pack; one that holds events is
        // checked on its own too (its day may not be packed yet, or it may be an earlier build).
        let holds_events = std::fs::read(dir.join("manifest.json"))
            .ok()
            .and_then(|m| serde_json::from_slice::<serde_json::Value>(&m).ok())
            .is_some_and(|m| m["eventCount"].as_u64().unwrap_or(0) > 0);
        if name.contains(':') {
            quarters += 1;
            if !holds_events {
                continue;
            }
        }
        let out = std::process::Command::new(&verifier)
            .arg("--export")
            .arg(&dir)
            .args(["--public-key", &key, "--cell-data"])
            .arg(&data)
            .output()
            .with_context(|| format!("run {}", verifier.display()))?;
        if !out.status.success() {
            let text = String::from_utf8_lossy(&out.stdout);
            failures.push(format!("{name}: {}", text.lines().last().unwrap_or_default()));
        }
        verified += 1;
    }
    report.check(Check::new("no export in the vault is partial after kill -9", partial, format!("{}", ids.len())));
    report.check(Check::new(
        "every export in the vault passes export-verify against the cell's chain and journal",
        failures,
        format!("{verified} exports verified, holding {quarters} quarter-hour JUC batches"),
    ));
    platform.restart(&cell).await?;
    Ok(())
}
