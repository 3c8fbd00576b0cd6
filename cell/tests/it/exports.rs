//! Regulator exports from real traffic on a Spanish cell: the DGOJ files validate against the
//! official XSD (`xmllint`), their XAdES signature verifies (`xmlsec1`), `export-verify` passes,
//! and catches a tampered file, a dropped event and a forged manifest; a late rollback comes back
//! as a correction in the next day's export.

use crate::gaming::{providers, Dialect, Provider, SECRET};
use crate::harness::{binary, Client, TestCell};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;

const ADULT: &str = "1980-01-01";

/// A seamless provider call at the cell's time (its clock is `skew_s` ahead of the real one).
async fn call(p: &Provider, what: &str, body: Value, skew_s: i64) -> Value {
    let reply = p.send_signed(what, body, SECRET, skew_s).await;
    assert_eq!(reply.status, 200, "{what}: {}", String::from_utf8_lossy(&reply.body));
    reply.json()
}

async fn bet(p: &Provider, skew: i64, tx: &str, player: &str, round: &str, game: &str, amount: &str) {
    let body = json!({ "transactionId": tx, "playerId": player, "roundId": round, "gameId": game, "amount": amount, "currency": "EUR" });
    call(p, "bet", body, skew).await;
}

async fn win(p: &Provider, skew: i64, tx: &str, player: &str, round: &str, amount: &str) {
    let body = json!({ "transactionId": tx, "playerId": player, "roundId": round, "amount": amount, "currency": "EUR", "closeRound": true });
    call(p, "win", body, skew).await;
}

async fn money(c: &Client, path: &str, player: &str, amount: &str, key: &str) {
    let reason = if path.ends_with("credit") { "deposit" } else { "withdrawal" };
    let body = json!({ "playerId": player, "currency": "EUR", "amount": amount, "reason": reason });
    let r = c.post(path, key, body).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
}

/// Runs `cell export build`; the export's directory.
fn build(data: &Path, kind: &str, period: &str, out: &Path) -> PathBuf {
    let dir = out.join(format!("{kind}-{period}"));
    let status = Command::new(binary("cell"))
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .args(["export", "build", "--jurisdiction", "ES", "--type", kind, "--period", period, "--unzipped", "--data"])
        .arg(data)
        .arg("--out")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(status.status.success(), "{kind} {period}: {}", String::from_utf8_lossy(&status.stderr));
    dir
}

/// `export-verify`'s exit code and report.
fn verify(export: &Path, key: &str, data: &Path, proof: Option<&Path>) -> (i32, String) {
    verify_with(export, key, data, proof, None)
}

fn verify_with(export: &Path, key: &str, data: &Path, proof: Option<&Path>, tokens: Option<&str>) -> (i32, String) {
    let mut cmd = Command::new(binary("export-verify"));
    cmd.arg("--export").arg(export).args(["--public-key", key, "--cell-data"]).arg(data);
    if let Some(proof) = proof {
        cmd.arg("--proof").arg(proof);
    }
    if let Some(url) = tokens {
        cmd.args(["--tamper-token-url", url]);
    }
    let out = cmd.output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

/// Every file of `dir` (recursively) whose name ends with `suffix`.
fn files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files(&path, suffix));
        } else if path.to_string_lossy().ends_with(suffix) {
            found.push(path);
        }
    }
    found.sort();
    found
}

/// Copies a directory tree.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_tree(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

/// Re-signs a changed manifest with the cell's own audit key: what a dishonest cell could do.
fn resign(export: &Path, data: &Path, change: impl FnOnce(&mut Value)) {
    use ed25519_dalek::Signer;
    let mut manifest: Value = serde_json::from_slice(&std::fs::read(export.join("manifest.json")).unwrap()).unwrap();
    change(&mut manifest);
    let json = serde_json::to_vec_pretty(&manifest).unwrap();
    let key = cell::signing_key::load_or_create(&data.join("audit-ed25519.key")).unwrap();
    std::fs::write(export.join("manifest.json"), &json).unwrap();
    std::fs::write(export.join("manifest.sig"), hex::encode(key.sign(&json).to_bytes())).unwrap();
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spanish_exports_validate_verify_and_catch_tampering() {
    let start = chrono::DateTime::parse_from_rfc3339("2026-11-29T10:00:00Z").unwrap().to_utc();
    let clock = cell::clock::ManualClock::new(start);
    let skew = || (clock_now(&start, &clock) - chrono::Utc::now()).num_seconds();
    let intervals = cell::server::Intervals {
        // Rounds stay open across the days the test moves through; no sweeper voids them.
        round_sweep: std::time::Duration::from_secs(3600),
        ..Default::default()
    };
    let mut cell = TestCell::start_with_clock("es", providers(), intervals, clock.clone()).await;
    let c = cell.client();
    let demo = Provider::new(Dialect::Seamless, false, c);
    for (player, family, dni, sex) in
        [("es-ana", "Garcia Lopez", "12345678Z", "female"), ("es-bo", "Ruiz", "87654321X", "male")]
    {
        let mut profile = crate::registers::profile(family, Some(("DNI", dni)));
        profile["identityDocument"]["issuingCountry"] = json!("ES");
        profile["address"] =
            json!({ "street": "Calle Mayor 1", "city": "Madrid", "postcode": "28013", "country": "ES" });
        profile["nationality"] = json!("ES");
        profile["fiscalRegion"] = json!("13");
        profile["sex"] = json!(sex);
        let registered = crate::registers::register(&c, player, "ES", "EUR", Some(profile)).await;
        assert_eq!(registered.status, 201, "{}", String::from_utf8_lossy(&registered.body));
        money(&c, "/wallet/credit", player, "100.00", &format!("dep-{player}")).await;
    }
    // A limit of her own for es-ana, below the region's default.
    let ana = crate::limits::login(&c, "es-ana").await;
    let change = json!({ "changes": [{ "kind": "deposit", "period": "day", "amount": "300.00" }] });
    let limited = crate::limits::as_player(&c, "PUT", "/players/es-ana/limits", &ana, Some(change)).await;
    assert_eq!(limited.status, 200, "{}", String::from_utf8_lossy(&limited.body));
    // Day one: a slot round won, a live round left open.
    bet(&demo, skew(), "t1", "es-ana", "r1", "slot-1", "5.00").await;
    win(&demo, skew(), "t2", "es-ana", "r1", "8.00").await;
    // es-bo plays at 10:07: his session outlives its quarter.
    clock.advance(chrono::Duration::minutes(7));
    bet(&demo, skew(), "t3", "es-bo", "r2", "live-1", "3.00").await;
    money(&c, "/wallet/debit", "es-ana", "10.00", "wd-ana").await;
    // Day two: the provider rolls back yesterday's open bet (a late rollback); more play.
    clock.advance(chrono::Duration::days(1));
    let body = json!({ "transactionId": "t4", "playerId": "es-bo", "roundId": "r2", "refTransactionId": "t3" });
    call(&demo, "rollback", body, skew()).await;
    bet(&demo, skew(), "t5", "es-ana", "r3", "slot-1", "2.00").await;
    win(&demo, skew(), "t6", "es-ana", "r3", "0.00").await;
    // And es-bo excludes himself for six months.
    let bo = crate::limits::login(&c, "es-bo").await;
    let excluded =
        crate::limits::as_player(&c, "POST", "/players/es-bo/self-exclusion", &bo, Some(json!({ "months": 6 }))).await;
    assert_eq!(excluded.status, 200, "{}", String::from_utf8_lossy(&excluded.body));
    clock.advance(chrono::Duration::days(2));
    let key = c.get("/audit/checkpoints").await.json()["publicKey"].as_str().unwrap().to_owned();
    cell.stop().await;

    let data = cell.dir.path().to_owned();
    let out = tempfile::tempdir().unwrap();
    let schema = Path::new(env!("CARGO_MANIFEST_DIR")).join("regulators/es/wrapper.xsd");
    let mut built = Vec::new();
    for (kind, period) in [
        ("CJD", "2026-11-29"),
        ("CJT", "2026-11-29"),
        ("JUC", "2026-11-29"),
        ("CJD", "2026-11-30"),
        ("JUC", "2026-11-30"),
        ("OPT", "2026-11"),
        ("RUD", "2026-11-29"),
        ("RUD", "2026-11-30"),
        ("RUD", "2026-11"),
        ("RUT", "2026-11"),
    ] {
        built.push(((kind, period), build(&data, kind, period, out.path())));
    }
    // November's days, then the month.
    for day in 1..=28 {
        build(&data, "CJD", &format!("2026-11-{day:02}"), out.path());
    }
    let month = build(&data, "CJD", "2026-11", out.path());
    built.push((("CJD", "2026-11"), month.clone()));

    for ((kind, period), dir) in &built {
        let xmls = files(dir, ".xml");
        assert!(!xmls.is_empty(), "{kind} {period}: no XML");
        for xml in &xmls {
            let valid = Command::new("xmllint")
                .args(["--noout", "--nonet", "--schema"])
                .arg(&schema)
                .arg(xml)
                .output()
                .unwrap();
            assert!(valid.status.success(), "{}: {}", xml.display(), String::from_utf8_lossy(&valid.stderr));
            let signed = Command::new("xmlsec1")
                .args(["--verify", "--trusted-pem"])
                .arg(dir.join("signing-cert.pem"))
                .arg(xml)
                .output()
                .unwrap();
            assert!(signed.status.success(), "{}: {}", xml.display(), String::from_utf8_lossy(&signed.stderr));
        }
        let (code, report) = verify(dir, &key, &data, None);
        assert_eq!(code, 0, "{kind} {period}:\n{report}");
    }
    let month_report = verify(&month, &key, &data, None).1;
    assert!(month_report.contains("equals the sum of its 30 daily exports"), "{month_report}");

    // The player register: day one's two new players, each with the limits in force (es-ana's
    // own day limit, the region's defaults otherwise); day two only es-bo, self-excluded; the
    // month both; the totals count them.
    let xml_of = |kind: &str, period: &str| {
        let dir = &built.iter().find(|((k, p), _)| (*k, *p) == (kind, period)).unwrap().1;
        files(dir, ".xml").iter().map(|p| std::fs::read_to_string(p).unwrap()).collect::<String>()
    };
    let rud1 = xml_of("RUD", "2026-11-29");
    assert_eq!(rud1.matches("<CambiosEnDatos>A</CambiosEnDatos>").count(), 2, "{rud1}");
    let ana_rud: String = rud1
        .split("<JugadorId>es-ana</JugadorId>")
        .nth(1)
        .unwrap()
        .split("</Jugador>")
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    for expected in [
        "<Apellido1>Garcia</Apellido1>",
        "<Apellido2>Lopez</Apellido2>",
        "<Sexo>F</Sexo>",
        "<Documento>12345678Z</Documento>",
        "<PeriodoLimite>Diario</PeriodoLimite><Cantidad>300.00</Cantidad>",
        "<PeriodoLimite>Semanal</PeriodoLimite><Cantidad>1500.00</Cantidad>",
        "<EstadoCNJ>A</EstadoCNJ>",
    ] {
        assert!(ana_rud.contains(expected), "{expected}: {ana_rud}");
    }
    let rud2 = xml_of("RUD", "2026-11-30");
    assert!(!rud2.contains("es-ana") && rud2.contains("<JugadorId>es-bo</JugadorId>"), "{rud2}");
    for expected in ["<CambiosEnDatos>S</CambiosEnDatos>", "<EstadoCNJ>AE</EstadoCNJ>", "<Exclusion>"] {
        assert!(rud2.contains(expected), "{expected}: {rud2}");
    }
    assert_eq!(xml_of("RUD", "2026-11").matches("<Jugador>").count(), 2);
    let rut = xml_of("RUT", "2026-11");
    for expected in
        ["<NumeroJugadores>2</NumeroJugadores>", "<NumeroAltas>2</NumeroAltas>", "<NumeroActividad>2</NumeroActividad>"]
    {
        assert!(rut.contains(expected), "{expected}: {rut}");
    }

    // Day one's figures, from the player's side.
    let cjd = std::fs::read_to_string(&files(&built[0].1, ".xml")[0]).unwrap();
    assert!(cjd.contains("<JugadorId>es-ana</JugadorId>"), "{cjd}");
    let manifest: Value = serde_json::from_slice(&std::fs::read(built[0].1.join("manifest.json")).unwrap()).unwrap();
    let totals = &manifest["totals"][0];
    assert_eq!(
        (
            totals["stakes"].as_str(),
            totals["wins"].as_str(),
            totals["deposits"].as_str(),
            totals["withdrawals"].as_str()
        ),
        (Some("8.00"), Some("8.00"), Some("200.00"), Some("10.00")),
        "{manifest}"
    );
    // Balances carry over: es-bo staked 3.00 on day one (100.00 -> 97.00), and the rollback gives
    // it back on day two (97.00 -> 100.00).
    let cjd2 = files(&built[3].1, ".xml").iter().map(|p| std::fs::read_to_string(p).unwrap()).collect::<String>();
    let bo = cjd2.split("<JugadorId>es-bo</JugadorId>").nth(1).unwrap();
    let saldo = |tag: &str| {
        bo.split(&format!("<{tag}>"))
            .nth(1)
            .unwrap()
            .split("<Cantidad>")
            .nth(1)
            .unwrap()
            .split('<')
            .next()
            .unwrap()
            .to_owned()
    };
    assert_eq!((saldo("SaldoInicial"), saldo("SaldoFinal")), ("97.00".to_owned(), "100.00".to_owned()), "{bo}");
    // The late rollback: day two's JUC corrects es-bo's session of day one.
    let juc2 = files(&built[4].1, ".xml").iter().map(|p| std::fs::read_to_string(p).unwrap()).collect::<String>();
    assert!(juc2.contains("<Rectificacion>"), "{juc2}");
    let juc1 = files(&built[2].1, ".xml").iter().map(|p| std::fs::read_to_string(p).unwrap()).collect::<String>();
    let corrected = juc2.split("<Rectificacion>").nth(1).unwrap();
    let original_id = corrected.split("<RegistroId>").nth(1).unwrap().split('<').next().unwrap();
    assert!(juc1.contains(&format!("<RegistroId>{original_id}</RegistroId>")), "the correction names day one's record");
    let manifest2: Value = serde_json::from_slice(&std::fs::read(built[4].1.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest2["corrections"], json!([original_id]), "{manifest2}");
    // A day's JUC is its quarters' batches packed for `Anteriores`.
    assert!(built[2].1.join("CNJ/OP01/JU/Anteriores/OP01_ALM01_JU_DIARIO_20261129.zip").exists());
    // Real time: the batch of 10:00 holds both sessions as they stood at 10:15: es-ana's whole
    // (nothing played for 10 minutes by 10:10), es-bo's not yet over; the batch of 10:15 closes
    // his (nothing played by 10:17).
    let quarter = |label: &str| {
        let dir = build(&data, "JUC", label, out.path());
        let (code, report) = verify(&dir, &key, &data, None);
        assert_eq!(code, 0, "JUC {label}:\n{report}");
        let zips = files(&dir, ".zip").iter().map(|p| p.display().to_string()).collect::<String>();
        (zips, files(&dir, ".xml").iter().map(|p| std::fs::read_to_string(p).unwrap()).collect::<String>())
    };
    let (zips, ten) = quarter("2026-11-29T10:00");
    // Built by hand from the first record, the batch holds what the pack's build (resumed from
    // the quarter before's checkpoint) did.
    let registros = |xml: &str| {
        let from = xml.find("<Registro ").unwrap();
        xml[from..xml.rfind("</Registro>").unwrap()].to_owned()
    };
    let packed =
        files(&built[2].1, ".xml").into_iter().find(|p| p.to_string_lossy().contains("20261129101459")).unwrap();
    assert_eq!(registros(&std::fs::read_to_string(packed).unwrap()), registros(&ten));
    assert_eq!(ten.matches("<SesionNueva>S</SesionNueva>").count(), 2, "{ten}");
    assert_eq!(ten.matches("<SesionCompleta>S</SesionCompleta>").count(), 1, "{ten}");
    assert_eq!(ten.matches("<SesionCompleta>N</SesionCompleta>").count(), 1, "{ten}");
    assert!(zips.contains("/CNJ/OP01/JU/20261129/SES/OP01_ALM01_JU_JUC_SES_20261129101459_"), "{zips}");
    assert!(ten.contains("<VarianteComercial>slot-1</VarianteComercial>"), "{ten}");
    let (_, quarter_past) = quarter("2026-11-29T10:15");
    assert_eq!(quarter_past.matches("-F</RegistroId>").count(), 1, "{quarter_past}");
    assert!(quarter_past.contains("<FechaFinSesion>"), "{quarter_past}");

    // A tampered file.
    let tampered = out.path().join("tampered");
    copy_tree(&built[0].1, &tampered);
    let zip = files(&tampered, ".zip")[0].clone();
    let mut bytes = std::fs::read(&zip).unwrap();
    let last = bytes.len() - 30;
    bytes[last] ^= 0x55;
    std::fs::write(&zip, bytes).unwrap();
    let (code, report) = verify(&tampered, &key, &data, None);
    assert_eq!(code, 1, "{report}");
    assert!(report.contains("its SHA-256 is not the manifest's"), "{report}");

    // A forged manifest (a total changed, not signed again).
    let forged = out.path().join("forged");
    copy_tree(&built[0].1, &forged);
    let text = std::fs::read_to_string(forged.join("manifest.json")).unwrap().replace("\"200.00\"", "\"20.00\"");
    std::fs::write(forged.join("manifest.json"), text).unwrap();
    let (code, report) = verify(&forged, &key, &data, None);
    assert_eq!(code, 1, "{report}");
    assert!(report.contains("manifest signature"), "{report}");

    // A dropped event, signed by the cell itself: completeness catches it.
    let dropped = out.path().join("dropped");
    copy_tree(&built[0].1, &dropped);
    let csv = std::fs::read_to_string(dropped.join("events.csv")).unwrap();
    let mut lines: Vec<&str> = csv.lines().collect();
    let gone = lines.remove(2);
    let csv = lines.join("\n") + "\n";
    std::fs::write(dropped.join("events.csv"), &csv).unwrap();
    resign(&dropped, &data, |m| {
        for f in m["files"].as_array_mut().unwrap() {
            if f["name"] == "events.csv" {
                f["sha256"] = json!(sha256_hex(csv.as_bytes()));
                f["bytes"] = json!(csv.len());
            }
        }
    });
    let (code, report) = verify(&dropped, &key, &data, None);
    assert_eq!(code, 1, "{report}");
    let seq = gone.split(',').next().unwrap();
    assert!(report.contains(&format!("event {seq} (")) && report.contains("not in the export"), "{report}");

    // Nothing to check against: exit 2.
    let (code, _) = verify(&built[0].1, &key, out.path(), None);
    assert_eq!(code, 2);

    // The same vault through the cell's API.
    cell.restart("es").await;
    let c = cell.client();
    let listed = c.get("/exports").await.json();
    // 39 built by hand, the 192 quarters the two days' packs gathered, two quarters again.
    assert_eq!(listed["exports"].as_array().unwrap().len(), 39 + 192 + 2);
    // A day's JUC: its pack, its 96 batches and the two built again.
    let day = c.get("/exports?type=JUC&period=2026-11-29").await.json();
    assert_eq!(day["exports"].as_array().unwrap().len(), 1 + 96 + 2);
    assert_eq!(c.get("/exports?kind=JUC").await.code(), "INVALID_QUERY");
    let first_seq = manifest["chain"]["firstSeq"].as_u64().unwrap();
    let proof = c.get(&format!("/exports/es-CJD-2026-11-29/proof?seq={first_seq}")).await;
    assert_eq!(proof.status, 200, "{}", String::from_utf8_lossy(&proof.body));
    let proof_path = out.path().join("proof.json");
    std::fs::write(&proof_path, &proof.body).unwrap();
    assert_eq!(c.get("/exports/es-CJD-2026-11-29/proof?seq=999999").await.code(), "EXPORT_NOT_FOUND");
    // A download, by this cell's regulator, is in the audit chain; another jurisdiction's is refused.
    let regulator = |j| format!("Bearer {}", crate::harness::operator_token(contracts::operators::Role::Regulator(j)));
    let es = regulator(contracts::Jurisdiction::Es);
    let file = &manifest["files"][0]["name"];
    let path = format!("/exports/es-CJD-2026-11-29/files/{}", file.as_str().unwrap());
    let got = c.raw("GET", &path, &[("authorization", es.as_str())], Vec::new()).await.unwrap();
    assert_eq!(got.status, 200);
    assert_eq!(sha256_hex(&got.body), manifest["files"][0]["sha256"].as_str().unwrap());
    let uk = regulator(contracts::Jurisdiction::Uk);
    let refused = c.raw("GET", &path, &[("authorization", uk.as_str())], Vec::new()).await.unwrap();
    assert_eq!(refused.status, 403, "{}", String::from_utf8_lossy(&refused.body));
    let downloads: Vec<Value> = c.events().await.into_iter().filter(|e| e["event"] == "export.downloaded").collect();
    assert_eq!(downloads.len(), 1, "{downloads:?}");
    assert_eq!(downloads[0]["payload"]["operator"]["role"], "regulator:ES");
    // Built on request, once: asking again answers the same export.
    let body = json!({ "type": "CJT", "period": "2026-11-30" });
    let first = c
        .raw("POST", "/exports", &[("content-type", "application/json")], body.to_string().into_bytes())
        .await
        .unwrap();
    assert_eq!(first.status, 201, "{}", String::from_utf8_lossy(&first.body));
    let again = c
        .raw("POST", "/exports", &[("content-type", "application/json")], body.to_string().into_bytes())
        .await
        .unwrap();
    assert_eq!(
        (again.status, again.json()["manifest"]["exportId"].clone()),
        (200, first.json()["manifest"]["exportId"].clone())
    );
    let early = json!({ "type": "CJD", "period": "2026-12-02" });
    let early = c
        .raw("POST", "/exports", &[("content-type", "application/json")], early.to_string().into_bytes())
        .await
        .unwrap();
    assert_eq!((early.status, early.code().as_str()), (409, "EXPORT_REFUSED"), "the day is not over");
    cell.stop().await;
    let (code, report) = verify(&built[0].1, &key, &data, Some(&proof_path));
    assert_eq!(code, 0, "{report}");
    assert!(report.contains(&format!("proof: event {first_seq} is in the export")), "{report}");
}

/// The manual clock's time.
fn clock_now(
    _start: &chrono::DateTime<chrono::Utc>,
    clock: &std::sync::Arc<cell::clock::ManualClock>,
) -> chrono::DateTime<chrono::Utc> {
    use cell::clock::Clock;
    clock.now()
}

/// Denmark: a day's casino sessions and end-of-day report from real rounds validate against the
/// SAFE views (`xmllint`), their files chain under a TamperToken of the sandbox's token service,
/// and `export-verify` passes; a file changed (even with its manifest re-signed) breaks the chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn danish_exports_validate_against_the_safe_views_and_verify() {
    let start = chrono::DateTime::parse_from_rfc3339("2026-11-29T10:00:00Z").unwrap().to_utc();
    let clock = cell::clock::ManualClock::new(start);
    let skew = || (clock_now(&start, &clock) - chrono::Utc::now()).num_seconds();
    let intervals = cell::server::Intervals { round_sweep: std::time::Duration::from_secs(3600), ..Default::default() };
    let mut cell = TestCell::start_with_clock("dk", providers(), intervals, clock.clone()).await;
    let c = cell.client();
    let demo = Provider::new(Dialect::Seamless, false, c);
    assert_eq!(c.register("dk-ida", ADULT, "DK", "DKK").await.status, 201);
    let token = crate::limits::login(&c, "dk-ida").await;
    let limits = json!({ "changes": [
        { "kind": "deposit", "period": "day", "amount": "1000.00" },
        { "kind": "deposit", "period": "week", "amount": "2000.00" },
        { "kind": "deposit", "period": "month", "amount": "5000.00" }
    ] });
    let set = crate::limits::as_player(&c, "PUT", "/players/dk-ida/limits", &token, Some(limits)).await;
    assert_eq!(set.status, 200, "{}", String::from_utf8_lossy(&set.body));
    let body = json!({ "playerId": "dk-ida", "currency": "DKK", "amount": "500.00", "reason": "deposit" });
    assert_eq!(c.post("/wallet/credit", "dep-ida", body).await.status, 200);
    for (n, game) in ["slot-1", "slot-1", "live-1"].iter().enumerate() {
        let (round, bet_tx, win_tx) = (format!("d{n}"), format!("dt{n}"), format!("dw{n}"));
        let body = json!({ "transactionId": bet_tx, "playerId": "dk-ida", "roundId": round, "gameId": game, "amount": "10.00", "currency": "DKK" });
        call(&demo, "bet", body, skew()).await;
        let body = json!({ "transactionId": win_tx, "playerId": "dk-ida", "roundId": round, "amount": "15.00", "currency": "DKK", "closeRound": true });
        call(&demo, "win", body, skew()).await;
    }
    clock.advance(chrono::Duration::days(1));
    let key = c.get("/audit/checkpoints").await.json()["publicKey"].as_str().unwrap().to_owned();
    cell.stop().await;
    let data = cell.dir.path().to_owned();
    let out = tempfile::tempdir().unwrap();
    let views = Path::new(env!("CARGO_MANIFEST_DIR")).join("regulators/dk/view");
    let sandbox = crate::registers::Sandbox::start().await;
    for (kind, view) in [
        ("KasinospilPrSession", "KasinospilPrSessionStrukturType.xsd"),
        ("EndOfDayRapport", "EndOfDayRapportStrukturType.xsd"),
    ] {
        let dir = out.path().join(kind);
        let built = Command::new(binary("cell"))
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
            .args(["export", "build", "--jurisdiction", "DK", "--type", kind, "--period", "2026-11-29", "--data"])
            .arg(&data)
            .args(["--tamper-token-url", &sandbox.url])
            .arg("--out")
            .arg(&dir)
            .output()
            .unwrap();
        assert!(built.status.success(), "{kind}: {}", String::from_utf8_lossy(&built.stderr));
        let xmls = files(&dir, ".xml");
        assert_eq!(xmls.len(), 1, "{kind}");
        let valid = Command::new("xmllint")
            .args(["--noout", "--nonet", "--schema"])
            .arg(views.join(view))
            .arg(&xmls[0])
            .output()
            .unwrap();
        assert!(valid.status.success(), "{}: {}", xmls[0].display(), String::from_utf8_lossy(&valid.stderr));
        let text = std::fs::read_to_string(&xmls[0]).unwrap();
        if kind == "KasinospilPrSession" {
            assert_eq!(text.matches("<KasinospilSession>").count(), 2, "a session per game: {text}");
            assert!(text.contains("<KasinospilIndskudSpil>20.00</KasinospilIndskudSpil>"), "{text}");
        } else {
            assert!(text.contains("<SpilKategoriNavn>KasinospilMultiPlayer</SpilKategoriNavn>"), "{text}");
        }
        let (code, report) = verify_with(&dir, &key, &data, None, Some(&sandbox.url));
        assert_eq!(code, 0, "{kind}:\n{report}");
        assert!(report.contains("to the MAC it was closed with"), "{report}");
        // The cell itself changes a file and signs the manifest again: the token's chain breaks.
        let changed = out.path().join(format!("{kind}-changed"));
        copy_tree(&dir, &changed);
        let file = files(&changed, ".xml")[0].clone();
        let text = std::fs::read_to_string(&file).unwrap().replacen(
            "<KasinospilIndskudSpil>20.00",
            "<KasinospilIndskudSpil>2.00",
            1,
        );
        let text = text.replacen("<EndOfDayRapportAntalSpil>2<", "<EndOfDayRapportAntalSpil>1<", 1);
        std::fs::write(&file, &text).unwrap();
        let name = file.strip_prefix(&changed).unwrap().to_string_lossy().into_owned();
        resign(&changed, &data, |m| {
            for f in m["files"].as_array_mut().unwrap() {
                if f["name"] == name.as_str() {
                    f["sha256"] = json!(sha256_hex(text.as_bytes()));
                    f["bytes"] = json!(text.len());
                }
            }
        });
        let (code, report) = verify_with(&changed, &key, &data, None, Some(&sandbox.url));
        assert_eq!(code, 1, "{report}");
        assert!(report.contains("MAC does not follow from the token's chain"), "{report}");
    }
}

/// The modelled returns (no published format): the UK's quarterly return and Malta's monthly
/// gaming tax return, from real traffic, verify; their figures are the period's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modelled_returns_for_the_uk_and_malta_verify() {
    let returns = [
        ("uk", "GB", "GBP", "quarterly-return", "2026-Q3", "2026-08-15T10:00:00Z"),
        ("mt", "MT", "EUR", "gaming-tax-return", "2026-11", "2026-11-29T10:00:00Z"),
    ];
    for (cell_id, country, currency, kind, period, at) in returns {
        let start = chrono::DateTime::parse_from_rfc3339(at).unwrap().to_utc();
        let clock = cell::clock::ManualClock::new(start);
        let skew = || (clock_now(&start, &clock) - chrono::Utc::now()).num_seconds();
        let intervals =
            cell::server::Intervals { round_sweep: std::time::Duration::from_secs(3600), ..Default::default() };
        let mut cell = TestCell::start_with_clock(cell_id, providers(), intervals, clock.clone()).await;
        let c = cell.client();
        let demo = Provider::new(Dialect::Seamless, false, c);
        let player = format!("{cell_id}-ret");
        assert_eq!(c.register(&player, ADULT, country, currency).await.status, 201);
        let body = json!({ "playerId": player, "currency": currency, "amount": "50.00", "reason": "deposit" });
        let deposited = c.post("/wallet/credit", &format!("dep-{player}"), body).await;
        assert_eq!(deposited.status, 200, "{}", String::from_utf8_lossy(&deposited.body));
        let body = json!({ "transactionId": "rt1", "playerId": player, "roundId": "rr1", "gameId": "slot-1", "amount": "4.00", "currency": currency });
        call(&demo, "bet", body, skew()).await;
        let body = json!({ "transactionId": "rt2", "playerId": player, "roundId": "rr1", "amount": "1.00", "currency": currency, "closeRound": true });
        call(&demo, "win", body, skew()).await;
        clock.advance(chrono::Duration::days(40));
        let key = c.get("/audit/checkpoints").await.json()["publicKey"].as_str().unwrap().to_owned();
        cell.stop().await;
        let data = cell.dir.path().to_owned();
        let out = tempfile::tempdir().unwrap();
        let dir = out.path().join(kind);
        let built = Command::new(binary("cell"))
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
            .args([
                "export",
                "build",
                "--jurisdiction",
                &country.replace("GB", "UK"),
                "--type",
                kind,
                "--period",
                period,
                "--data",
            ])
            .arg(&data)
            .arg("--out")
            .arg(&dir)
            .output()
            .unwrap();
        assert!(built.status.success(), "{kind}: {}", String::from_utf8_lossy(&built.stderr));
        let report: Value =
            serde_json::from_slice(&std::fs::read(dir.join(format!("{kind}-{period}.json"))).unwrap()).unwrap();
        let figures = &report["figures"];
        if kind == "quarterly-return" {
            assert_eq!(
                (figures["newRegistrations"].as_u64(), figures["activeAccounts"].as_u64()),
                (Some(1), Some(1)),
                "{report}"
            );
            assert_eq!(figures["customerFundsHeld"], "47.00", "{report}");
            assert_eq!(figures["ggyByProduct"][0]["ggy"], "3.00", "{report}");
        } else {
            assert_eq!(
                (figures["totalWagers"].as_str(), figures["totalWinnings"].as_str()),
                (Some("4.00"), Some("1.00")),
                "{report}"
            );
        }
        assert!(std::fs::read_to_string(dir.join(format!("{kind}-{period}.csv"))).unwrap().contains("field,value"));
        let (code, text) = verify(&dir, &key, &data, None);
        assert_eq!(code, 0, "{kind}:\n{text}");
    }
}
