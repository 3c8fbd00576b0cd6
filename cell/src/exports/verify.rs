//! What `export-verify` checks, for a regulator who holds the export, the cell's pinned public
//! key and a copy of the cell's data (its audit chain and journal), and nothing else:
//!
//! 1. the manifest's signature;
//! 2. every file against its hash;
//! 3. the XML against the regulator's XSDs (`xmllint`);
//! 4. the chain range: the period's records, hashes and links, and that every exportable event in
//!    it is in the export exactly once (`events.csv`), nothing else, with the manifest's Merkle
//!    root;
//! 5. that each event's record is in the XML;
//! 6. that the XML's money equals the manifest's totals, and the totals the journal's movements
//!    over the period;
//! 7. for a month, that it equals the sum of its days' exports;
//! 8. an inclusion proof, when given one;
//! 9. for a player register (RUD, RUT), instead of 6 and 7 (it moves no money): that it names
//!    every player the event log registered (a day: each new or changed one) once, and nobody
//!    else.
//!
//! The first failure is named; what cannot be checked (no `xmllint`, no data) is said apart.

use super::{exportable, merkle, vault};
use contracts::exports::{ExportManifest, ExportTotals, InclusionProof, PeriodKind};
use rust_decimal::Decimal;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// How a verification ended.
#[derive(Debug)]
pub enum Verdict {
    /// Every check passed; what each found.
    Verified(Vec<String>),
    /// The first check that failed, and what passed before it.
    Failed { problem: String, passed: Vec<String> },
    /// A check could not be run (a missing tool or input).
    CannotCheck(String),
}

struct Run {
    passed: Vec<String>,
}

enum Stop {
    Failed(String),
    CannotCheck(String),
}

fn fail<T>(problem: impl Into<String>) -> Result<T, Stop> {
    Err(Stop::Failed(problem.into()))
}

/// Verifies the export in `export` against `public_key` (hex), with the cell's data directory
/// `cell_data`, and the proof in `proof` if given.
pub fn verify(
    export: &Path,
    public_key: &str,
    cell_data: &Path,
    proof: Option<&Path>,
    tamper_token_url: Option<&str>,
) -> Verdict {
    let mut run = Run { passed: Vec::new() };
    match run.all(export, public_key, cell_data, proof, tamper_token_url) {
        Ok(()) => Verdict::Verified(run.passed),
        Err(Stop::Failed(problem)) => Verdict::Failed { problem, passed: run.passed },
        Err(Stop::CannotCheck(why)) => Verdict::CannotCheck(why),
    }
}

fn dec(text: &str) -> Decimal {
    text.trim().parse().unwrap_or_default()
}

impl Run {
    fn ok(&mut self, what: String) {
        self.passed.push(what);
    }

    fn all(
        &mut self,
        export: &Path,
        public_key: &str,
        cell_data: &Path,
        proof: Option<&Path>,
        tamper_token_url: Option<&str>,
    ) -> Result<(), Stop> {
        let manifest = self.signature(export, public_key)?;
        self.files(export, &manifest)?;
        if manifest.format == "dk-safe" {
            self.tamper_chain(export, &manifest, tamper_token_url)?;
        }
        let xmls = self.xml(export, &manifest, cell_data)?;
        let store = crate::store::embedded::EmbeddedStore::open(
            &cell_data.join("store"),
            crate::store::embedded::Durability::GroupSync,
        )
        .map_err(|e| Stop::CannotCheck(format!("open the cell's store under {}: {e}", cell_data.display())))?;
        let included = self.completeness(export, &manifest, &store, &xmls)?;
        if super::families(&manifest.kind).is_empty() {
            self.register(&manifest, &store, &xmls)?;
        } else {
            self.totals_in_xml(&manifest, &xmls)?;
            self.totals_in_journal(&manifest, &store)?;
        }
        self.days_of_month(&manifest, cell_data, public_key)?;
        if let Some(proof) = proof {
            self.proof(&manifest, included, proof)?;
        }
        Ok(())
    }

    fn signature(&mut self, export: &Path, public_key: &str) -> Result<ExportManifest, Stop> {
        use ed25519_dalek::Verifier;
        let key =
            contracts::audit::verifying_key(public_key).map_err(|e| Stop::CannotCheck(format!("--public-key: {e}")))?;
        let json = std::fs::read(export.join("manifest.json"))
            .map_err(|e| Stop::CannotCheck(format!("{}: {e}", export.join("manifest.json").display())))?;
        let sig_text = std::fs::read_to_string(export.join("manifest.sig")).unwrap_or_default();
        let signature = hex::decode(sig_text.trim()).ok().and_then(|b| ed25519_dalek::Signature::from_slice(&b).ok());
        match signature {
            Some(s) if key.verify(&json, &s).is_ok() => {}
            _ => return fail("manifest signature: manifest.sig is not the pinned key's signature of manifest.json (forged or changed)"),
        }
        let manifest: ExportManifest =
            serde_json::from_slice(&json).map_err(|e| Stop::Failed(format!("manifest.json does not read: {e}")))?;
        self.ok(format!("manifest signature: {} signed by the pinned key", manifest.export_id));
        Ok(manifest)
    }

    fn files(&mut self, export: &Path, manifest: &ExportManifest) -> Result<(), Stop> {
        use sha2::{Digest, Sha256};
        for f in &manifest.files {
            let bytes = match std::fs::read(export.join(&f.name)) {
                Ok(bytes) => bytes,
                Err(_) => return fail(format!("file {}: missing", f.name)),
            };
            if hex::encode(Sha256::digest(&bytes)) != f.sha256 {
                return fail(format!(
                    "file {}: its SHA-256 is not the manifest's (changed since it was signed)",
                    f.name
                ));
            }
        }
        self.ok(format!("files: {} match their hashes", manifest.files.len()));
        Ok(())
    }

    /// The regulator's XML of each file, validated against its XSDs: `(file, xml)`.
    fn xml(
        &mut self,
        export: &Path,
        manifest: &ExportManifest,
        cell_data: &Path,
    ) -> Result<Vec<(String, String)>, Stop> {
        match manifest.format.as_str() {
            "dgoj-sci" => self.xml_dgoj(export, manifest, cell_data),
            "dk-safe" => self.xml_safe(export, manifest),
            _ => self.modelled(export, manifest),
        }
    }

    /// A modelled return (no regulator publishes a schema): its JSON reports, read.
    fn modelled(&mut self, export: &Path, manifest: &ExportManifest) -> Result<Vec<(String, String)>, Stop> {
        let mut reports = Vec::new();
        for f in manifest.files.iter().filter(|f| f.name.ends_with(".json") && f.name != "tamper-token.json") {
            let text =
                std::fs::read_to_string(export.join(&f.name)).map_err(|e| Stop::Failed(format!("{}: {e}", f.name)))?;
            serde_json::from_str::<serde_json::Value>(&text).map_err(|e| Stop::Failed(format!("{}: {e}", f.name)))?;
            reports.push((f.name.clone(), text));
        }
        self.ok(format!(
            "schema: none published for {} (a modelled return); {} reports read",
            manifest.format,
            reports.len()
        ));
        Ok(reports)
    }

    /// Denmark's TamperToken chain: each file's HMAC keyed by the previous one's (the first by the
    /// token's key, which the token service gives the regulator), the last the token was closed
    /// with, and every XML file of the export under the token.
    fn tamper_chain(&mut self, export: &Path, manifest: &ExportManifest, url: Option<&str>) -> Result<(), Stop> {
        use hmac::{Hmac, Mac};
        let text = std::fs::read_to_string(export.join("tamper-token.json"))
            .map_err(|_| Stop::Failed("tamper-token.json: missing".into()))?;
        let record: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| Stop::Failed(format!("tamper-token.json: {e}")))?;
        let token = record["tokenId"].as_str().unwrap_or_default().to_owned();
        let chained: Vec<(String, String)> = record["files"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|f| {
                (f["name"].as_str().unwrap_or_default().to_owned(), f["mac"].as_str().unwrap_or_default().to_owned())
            })
            .collect();
        let xml: BTreeSet<&str> =
            manifest.files.iter().map(|f| f.name.as_str()).filter(|n| n.ends_with(".xml")).collect();
        if xml != chained.iter().map(|(n, _)| n.as_str()).collect::<BTreeSet<_>>() {
            return fail("tamper chain: tamper-token.json does not name exactly the export's files");
        }
        let Some(url) = url else {
            self.ok(format!("tamper chain: token {token} names the files; MACs not checked (no --tamper-token-url)"));
            return Ok(());
        };
        let authority = crate::outside::authority("--tamper-token-url", url).map_err(Stop::CannotCheck)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Stop::CannotCheck(e.to_string()))?;
        let path = format!("/tamper-token/v1/tokens/{token}");
        let (status, _, body) = runtime
            .block_on(crate::outside::exchange(&authority, "GET", &path, "application/json", String::new()))
            .map_err(|e| Stop::CannotCheck(format!("the TamperToken service: {e}")))?;
        if status != 200 {
            return fail(format!("tamper chain: the token service knows no token {token} ({status})"));
        }
        let known: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| Stop::CannotCheck(format!("the token service's answer: {e}")))?;
        let mut key = hex::decode(known["key"].as_str().unwrap_or_default()).unwrap_or_default();
        for (name, mac) in &chained {
            let bytes = std::fs::read(export.join(name)).map_err(|e| Stop::Failed(format!("{name}: {e}")))?;
            let mut h = Hmac::<sha2::Sha256>::new_from_slice(&key).expect("HMAC takes any key length");
            h.update(&bytes);
            let tag = h.finalize().into_bytes().to_vec();
            if hex::encode(&tag) != *mac {
                return fail(format!("tamper chain: {name}'s MAC does not follow from the token's chain"));
            }
            key = tag;
        }
        let closed = known["mac"].as_str().unwrap_or_default();
        if chained.last().map_or("", |(_, m)| m.as_str()) != closed {
            return fail(format!("tamper chain: token {token} was closed with another MAC than the last file's"));
        }
        self.ok(format!(
            "tamper chain: {} files chain from token {token} to the MAC it was closed with",
            chained.len()
        ));
        Ok(())
    }

    /// Denmark's files: plain XML, each against its SAFE view.
    fn xml_safe(&mut self, export: &Path, manifest: &ExportManifest) -> Result<Vec<(String, String)>, Stop> {
        let schemas = tempfile::tempdir().map_err(|e| Stop::CannotCheck(e.to_string()))?;
        for (path, text) in super::dk_schemas::DK_SCHEMAS {
            let to = schemas.path().join(path);
            std::fs::create_dir_all(to.parent().unwrap_or(schemas.path()))
                .map_err(|e| Stop::CannotCheck(e.to_string()))?;
            std::fs::write(&to, text).map_err(|e| Stop::CannotCheck(e.to_string()))?;
        }
        let mut xmls = Vec::new();
        for f in manifest.files.iter().filter(|f| f.name.ends_with(".xml")) {
            let path = export.join(&f.name);
            let xml = std::fs::read_to_string(&path).map_err(|e| Stop::Failed(format!("{}: {e}", f.name)))?;
            let view = if xml.contains("<KasinospilPrSessionStruktur") {
                "view/KasinospilPrSessionStrukturType.xsd"
            } else {
                "view/EndOfDayRapportStrukturType.xsd"
            };
            xmllint(&schemas.path().join(view), &path, &f.name, "the SAFE XSD")?;
            xmls.push((f.name.clone(), xml));
        }
        self.ok(format!("schema: {} files valid against the SAFE views", xmls.len()));
        Ok(xmls)
    }

    /// Spain's zips, opened with the agreed password, each `Lote` against the DGOJ XSD.
    fn xml_dgoj(
        &mut self,
        export: &Path,
        manifest: &ExportManifest,
        cell_data: &Path,
    ) -> Result<Vec<(String, String)>, Stop> {
        let password = std::fs::read_to_string(cell_data.join("exports-zip-password"))
            .map_err(|e| Stop::CannotCheck(format!("the zip password (exports-zip-password in the cell data): {e}")))?;
        let schemas = tempfile::tempdir().map_err(|e| Stop::CannotCheck(e.to_string()))?;
        for (name, text) in [
            ("DGOJ_Monitorizacion_3.3.xsd", include_str!("../../regulators/es/DGOJ_Monitorizacion_3.3.xsd")),
            ("xmldsig-core-schema.xsd", include_str!("../../regulators/es/xmldsig-core-schema.xsd")),
            ("wrapper.xsd", include_str!("../../regulators/es/wrapper.xsd")),
        ] {
            std::fs::write(schemas.path().join(name), text).map_err(|e| Stop::CannotCheck(e.to_string()))?;
        }
        let read = |name: &str| std::fs::read(export.join(name)).map_err(|e| Stop::Failed(format!("{name}: {e}")));
        // Each lote: a file, or an entry of a day's JUC pack (its file or fragments, in order).
        let mut lotes: Vec<(String, Vec<u8>)> = Vec::new();
        let mut pack: Vec<Vec<u8>> = Vec::new();
        for f in &manifest.files {
            if super::juc::is_pack(&f.name) {
                pack.push(read(&f.name)?);
            } else if f.name.ends_with(".zip") {
                lotes.push((f.name.clone(), read(&f.name)?));
            }
        }
        if !pack.is_empty() {
            let entries = super::juc::unpack(&pack).map_err(|e| Stop::Failed(format!("the day's pack: {e}")))?;
            lotes.extend(entries);
        }
        let mut xmls = Vec::new();
        for (name, bytes) in lotes {
            let xml = vault::unzip_xml(&bytes, password.trim())
                .map_err(|e| Stop::Failed(format!("file {name}: does not open with the agreed password: {e}")))?;
            let path = schemas.path().join("lote.xml");
            std::fs::write(&path, &xml).map_err(|e| Stop::CannotCheck(e.to_string()))?;
            xmllint(&schemas.path().join("wrapper.xsd"), &path, &name, "the DGOJ v3.3 XSD")?;
            xmls.push((name, xml));
        }
        self.ok(format!("schema: {} files valid against DGOJ_Monitorizacion_3.3.xsd", xmls.len()));
        Ok(xmls)
    }

    /// Every exportable event of the period's range in `events.csv` once, nothing else; the
    /// Merkle root; each event's records in the XML. Streams: the chain and `events.csv` are read
    /// side by side, in position order (a month of millions of events is never held). The
    /// included events' count.
    fn completeness(
        &mut self,
        export: &Path,
        manifest: &ExportManifest,
        store: &dyn crate::store::Store,
        xmls: &[(String, String)],
    ) -> Result<u64, Stop> {
        use std::io::BufRead;
        let range = super::chain_range(store, &manifest.period)
            .map_err(|e| Stop::Failed(format!("the cell's chain does not read: {e}")))?;
        if range != manifest.chain {
            return fail(format!(
                "chain range: the period's records are {}..={} (head {}), the manifest says {}..={} (head {})",
                range.first_seq,
                range.last_seq,
                range.head_hash,
                manifest.chain.first_seq,
                manifest.chain.last_seq,
                manifest.chain.head_hash
            ));
        }
        let present = records_present(xmls)?;
        let file =
            std::fs::File::open(export.join("events.csv")).map_err(|_| Stop::Failed("events.csv: missing".into()))?;
        let mut lines = std::io::BufReader::new(file).lines().skip(1);
        let mut listed = Listed { lines: &mut lines, last: None, peeked: None };
        let mut merkle = merkle::Builder::default();
        let mut problem: Option<String> = None;
        if range.first_seq <= range.last_seq {
            let scanned = crate::audit::scan(store, range.first_seq, range.last_seq, |r| {
                let (name, _) = super::facts::head(&r.event).map_err(super::unreadable)?;
                if !exportable(&manifest.kind, &name) {
                    return Ok(());
                }
                merkle.push(&r.hash);
                let found = match listed.up_to(r.seq) {
                    Ok(found) => found,
                    Err(why) => {
                        problem = Some(why);
                        return Err(crate::store::StoreError::Unavailable("stopped".into()));
                    }
                };
                let why = match found {
                    None => Some(format!("event {} ({name}) is exportable and not in the export (dropped)", r.seq)),
                    Some((hash, _)) if hash != hex::encode(r.hash) => {
                        Some(format!("event {} ({name}): the export names another record hash", r.seq))
                    }
                    Some((_, records)) => {
                        records.iter().find(|record| !present.contains(record.as_str())).map(|record| {
                            format!("event {}'s record {record} is not in the export's files (dropped)", r.seq)
                        })
                    }
                };
                match why {
                    Some(why) => {
                        problem = Some(why);
                        Err(crate::store::StoreError::Unavailable("stopped".into()))
                    }
                    None => Ok(()),
                }
            });
            if let Some(problem) = problem {
                return fail(problem);
            }
            scanned.map_err(|e| Stop::Failed(format!("audit chain: {e}")))?;
        }
        // A line left is an event the chain has not as exportable in the range.
        if let Some((seq, _, _)) = listed.next_line().map_err(Stop::Failed)? {
            return fail(format!("event {seq} is in the export but is no exportable event of the period"));
        }
        if hex::encode(merkle.root()) != manifest.merkle_root || manifest.event_count != merkle.count() {
            return fail("Merkle root: the period's exportable events do not give the manifest's root");
        }
        self.ok(format!(
            "completeness: events {}..={} hold {} exportable events, each in the export once; Merkle root matches",
            range.first_seq,
            range.last_seq,
            merkle.count()
        ));
        self.ok("records: every event's record is in the files".into());
        let registros = present.iter().filter(|r| r.starts_with('#')).count() as u64;
        if registros != manifest.record_count {
            return fail(format!(
                "record count: the files hold {registros} sub-records, the manifest says {}",
                manifest.record_count
            ));
        }
        self.ok(format!("record count: {registros} sub-records, as the manifest says"));
        Ok(merkle.count())
    }

    fn totals_in_xml(&mut self, manifest: &ExportManifest, xmls: &[(String, String)]) -> Result<(), Stop> {
        if manifest.format == "dk-safe" {
            return self.totals_in_safe(manifest, xmls);
        }
        if manifest.format != "dgoj-sci" {
            return self.totals_in_returns(manifest, xmls);
        }
        let mut sums: BTreeMap<&str, Decimal> = BTreeMap::new();
        for (name, xml) in xmls {
            let doc = roxmltree::Document::parse(xml).map_err(|e| Stop::Failed(format!("{name}: {e}")))?;
            for registro in doc.descendants().filter(|n| n.has_tag_name("Registro")) {
                if registro.descendants().any(|n| n.has_tag_name("Rectificacion")) {
                    continue; // a correction repeats a session already counted in its own day
                }
                // The per-player (CJD), total (CJT, OPT) or session (JUC) figures.
                let holders: Vec<roxmltree::Node<'_, '_>> = match manifest.kind.as_str() {
                    "CJD" => registro.children().filter(|n| n.has_tag_name("Jugador")).collect(),
                    "JUC" => registro.children().filter(|n| n.has_tag_name("Juego")).collect(),
                    _ => vec![registro],
                };
                for h in holders {
                    for (field, key, sign) in [
                        ("Participacion", "stakes", -1),
                        ("ParticipacionDevolucion", "stakesReturned", 1),
                        ("Premios", "wins", 1),
                        ("Depositos", "deposits", 1),
                        ("Retiradas", "withdrawals", -1),
                        ("Otros", "other", 1),
                    ] {
                        let Some(node) = h.children().find(|n| n.has_tag_name(field)) else { continue };
                        // `Total` (a plain amount or an `Importe`), or the bare `Importe` of JUC.
                        let total = node.children().find(|n| n.has_tag_name("Total")).unwrap_or(node);
                        let amount = match total.children().find(|n| n.has_tag_name("Linea")) {
                            Some(line) => line
                                .children()
                                .find(|n| n.has_tag_name("Cantidad"))
                                .and_then(|c| c.text())
                                .map(dec)
                                .unwrap_or_default(),
                            None => total.text().map(dec).unwrap_or_default(),
                        };
                        *sums.entry(key).or_default() += amount * Decimal::from(sign);
                    }
                }
            }
        }
        let kinds: &[&str] = match manifest.kind.as_str() {
            "CJD" | "CJT" => &["stakes", "stakesReturned", "wins", "deposits", "withdrawals", "other"],
            "OPT" => &["stakes", "stakesReturned", "wins"],
            _ => &["stakes", "wins"],
        };
        let mut manifest_sums: BTreeMap<&str, Decimal> = BTreeMap::new();
        for t in &manifest.totals {
            for (key, value) in totals_fields(t) {
                *manifest_sums.entry(key).or_default() += dec(value);
            }
        }
        for key in kinds {
            let (xml, signed) =
                (sums.get(key).copied().unwrap_or_default(), manifest_sums.get(key).copied().unwrap_or_default());
            if xml != signed {
                return fail(format!("totals: the files' {key} add up to {xml}, the manifest says {signed}"));
            }
        }
        self.ok(format!("totals: the files' figures ({}) equal the manifest's", kinds.join(", ")));
        Ok(())
    }

    /// A modelled return: its stakes, returned stakes and wins are the manifest's.
    fn totals_in_returns(&mut self, manifest: &ExportManifest, reports: &[(String, String)]) -> Result<(), Stop> {
        for (name, text) in reports {
            let report: serde_json::Value =
                serde_json::from_str(text).map_err(|e| Stop::Failed(format!("{name}: {e}")))?;
            for (field, key) in [("stakes", "stakes"), ("stakesReturned", "stakesReturned"), ("wins", "wins")] {
                let said = dec(report["totals"][field].as_str().unwrap_or("0"));
                let signed: Decimal = manifest
                    .totals
                    .iter()
                    .flat_map(totals_fields)
                    .filter(|(k, _)| *k == key)
                    .map(|(_, v)| dec(v))
                    .sum();
                if said != signed {
                    return fail(format!("totals: {name} says {key} {said}, the manifest {signed}"));
                }
            }
        }
        self.ok("totals: the returns' figures equal the manifest's".into());
        Ok(())
    }

    /// Denmark: the stakes of the files' sessions (or the day's categories) are the manifest's.
    fn totals_in_safe(&mut self, manifest: &ExportManifest, xmls: &[(String, String)]) -> Result<(), Stop> {
        let field =
            if manifest.kind == "EndOfDayRapport" { "EndOfDayRapportIndskudSpil" } else { "KasinospilIndskudSpil" };
        let mut stakes = Decimal::ZERO;
        for (name, xml) in xmls {
            let doc = roxmltree::Document::parse(xml).map_err(|e| Stop::Failed(format!("{name}: {e}")))?;
            stakes +=
                doc.descendants().filter(|n| n.has_tag_name(field)).filter_map(|n| n.text()).map(dec).sum::<Decimal>();
        }
        let signed: Decimal = manifest.totals.iter().map(|t| dec(&t.stakes)).sum();
        if stakes != signed {
            return fail(format!("totals: the files' stakes add up to {stakes}, the manifest says {signed}"));
        }
        self.ok("totals: the files' stakes equal the manifest's".into());
        Ok(())
    }

    fn totals_in_journal(&mut self, manifest: &ExportManifest, store: &dyn crate::store::Store) -> Result<(), Stop> {
        let journal = journal_totals(store, &manifest.period)
            .map_err(|e| Stop::Failed(format!("the cell's journal does not read: {e}")))?;
        let all = super::families(&manifest.kind).contains(&super::facts::Family::Payments);
        let kinds: &[&str] = if all {
            &["stakes", "stakesReturned", "wins", "deposits", "withdrawals", "other"]
        } else {
            &["stakes", "stakesReturned", "wins"]
        };
        // A currency the journal moved in the period and the manifest does not name moved nothing
        // the export accounts for.
        for (currency, moved) in &journal {
            let named = manifest.totals.iter().any(|t| &t.currency == currency);
            if let Some((key, amount)) = moved.iter().find(|(k, v)| kinds.contains(k) && !v.is_zero() && !named) {
                return fail(format!(
                    "ledger: {key} moved {amount} {currency} over the period, the manifest names no {currency}"
                ));
            }
        }
        for t in &manifest.totals {
            let ledger = journal.get(&t.currency).cloned().unwrap_or_default();
            for (key, value) in totals_fields(t) {
                if !kinds.contains(&key) {
                    continue;
                }
                let moved = ledger.get(key).copied().unwrap_or_default();
                if moved != dec(value) {
                    return fail(format!(
                        "ledger: {key} in {} moved {moved} in the journal over the period, the manifest says {value}",
                        t.currency
                    ));
                }
            }
        }
        self.ok("ledger: the manifest's totals equal the journal's movements over the period".into());
        Ok(())
    }

    /// A player register moves no money: it must name the players the event log registered
    /// before the period's end (a day: those new or changed in it), each once, and count them.
    fn register(
        &mut self,
        manifest: &ExportManifest,
        store: &dyn crate::store::Store,
        xmls: &[(String, String)],
    ) -> Result<(), Stop> {
        let register = super::register::Register::read(store, &manifest.period)
            .map_err(|e| Stop::Failed(format!("the cell's event log does not read: {e}")))?;
        let expected: BTreeSet<&str> = register
            .players
            .values()
            .filter(|e| manifest.period.kind != PeriodKind::Day || e.changed)
            .map(|e| e.player.player_id.as_str())
            .collect();
        let mut named: Vec<String> = Vec::new();
        let mut counted = None;
        for (name, xml) in xmls {
            let doc = roxmltree::Document::parse(xml).map_err(|e| Stop::Failed(format!("{name}: {e}")))?;
            let text = |n: roxmltree::Node<'_, '_>, tag: &str| {
                n.children().find(|c| c.has_tag_name(tag)).and_then(|c| c.text()).map(str::to_owned)
            };
            for jugador in doc.descendants().filter(|n| n.has_tag_name("Jugador")) {
                named.extend(text(jugador, "JugadorId"));
            }
            for registro in doc.descendants().filter(|n| n.has_tag_name("Registro")) {
                if let Some(count) = text(registro, "NumeroJugadores") {
                    counted = Some(count);
                }
            }
        }
        if manifest.kind == "RUT" {
            let count = counted.unwrap_or_default();
            if count != register.players.len().to_string() {
                return fail(format!(
                    "register: RUT counts {count} players, the event log registered {}",
                    register.players.len()
                ));
            }
            self.ok(format!("register: RUT counts the {count} players the event log registered"));
            return Ok(());
        }
        let unique: BTreeSet<&str> = named.iter().map(String::as_str).collect();
        if unique.len() != named.len() {
            return fail("register: a player is in the RUD more than once");
        }
        if let Some(missing) = expected.difference(&unique).next() {
            return fail(format!("register: player {missing} is not in the RUD (dropped)"));
        }
        if let Some(extra) = unique.difference(&expected).next() {
            return fail(format!("register: player {extra} is in the RUD but the event log gives no reason for it"));
        }
        self.ok(format!("register: the RUD names the {} players the event log calls for, each once", named.len()));
        Ok(())
    }

    /// A month's export equals the sum of its days' (the latest build of each), when they exist.
    fn days_of_month(&mut self, manifest: &ExportManifest, cell_data: &Path, public_key: &str) -> Result<(), Stop> {
        if manifest.period.kind != PeriodKind::Month || !matches!(manifest.kind.as_str(), "CJD" | "CJT") {
            return Ok(());
        }
        let all = vault::Vault::new(cell_data).list().map_err(|e| Stop::CannotCheck(e.to_string()))?;
        let mut days: BTreeMap<chrono::DateTime<chrono::Utc>, &vault::Stored> = BTreeMap::new();
        for s in &all {
            let m = &s.manifest;
            if m.kind == manifest.kind
                && m.period.kind == PeriodKind::Day
                && m.period.start >= manifest.period.start
                && m.period.start < manifest.period.end
            {
                days.insert(m.period.start, s); // listed oldest first: the latest build wins
            }
        }
        let count = (manifest.period.end - manifest.period.start).num_days();
        if (days.len() as i64) < count {
            self.ok(format!("month: not compared with its days ({} of {count} daily exports built)", days.len()));
            return Ok(());
        }
        let key = contracts::audit::verifying_key(public_key).map_err(|e| Stop::CannotCheck(e.to_string()))?;
        let mut sum: BTreeMap<(String, &str), Decimal> = BTreeMap::new();
        for s in days.values() {
            use ed25519_dalek::Verifier;
            let json = std::fs::read(s.dir.join("manifest.json")).unwrap_or_default();
            let good = hex::decode(&s.signature).ok().and_then(|b| ed25519_dalek::Signature::from_slice(&b).ok());
            if good.is_none_or(|sig| key.verify(&json, &sig).is_err()) {
                return fail(format!(
                    "month: the daily export {} is not signed by the pinned key",
                    s.manifest.export_id
                ));
            }
            for t in &s.manifest.totals {
                for (k, v) in totals_fields(t) {
                    *sum.entry((t.currency.clone(), k)).or_default() += dec(v);
                }
            }
        }
        for t in &manifest.totals {
            for (k, v) in totals_fields(t) {
                let daily = sum.get(&(t.currency.clone(), k)).copied().unwrap_or_default();
                if daily != dec(v) {
                    return fail(format!("month: {k} in {} is {v}, its days add up to {daily}", t.currency));
                }
            }
        }
        self.ok(format!("month: equals the sum of its {count} daily exports"));
        Ok(())
    }

    fn proof(&mut self, manifest: &ExportManifest, included: u64, path: &Path) -> Result<(), Stop> {
        let text = std::fs::read_to_string(path).map_err(|e| Stop::CannotCheck(format!("{}: {e}", path.display())))?;
        let proof: InclusionProof =
            serde_json::from_str(&text).map_err(|e| Stop::CannotCheck(format!("the proof does not read: {e}")))?;
        let hash = |h: &str| -> Option<merkle::Hash> { hex::decode(h).ok()?.try_into().ok() };
        let (Some(record), Some(root)) = (hash(&proof.record_hash), hash(&manifest.merkle_root)) else {
            return fail("proof: a hash does not read");
        };
        let path: Option<Vec<merkle::Hash>> = proof.path.iter().map(|h| hash(h)).collect();
        let Some(path) = path else { return fail("proof: a path hash does not read") };
        if proof.leaf_count != included || !merkle::verify(&record, proof.leaf_index, proof.leaf_count, &path, &root) {
            return fail(format!("proof: event {} does not lead to the manifest's Merkle root", proof.seq));
        }
        self.ok(format!("proof: event {} is in the export (Merkle path of {} hashes)", proof.seq, path.len()));
        Ok(())
    }
}

/// Validates `file` against `schema` with `xmllint`.
fn xmllint(schema: &Path, file: &Path, name: &str, what: &str) -> Result<(), Stop> {
    let checked = std::process::Command::new("xmllint")
        .args(["--noout", "--nonet", "--schema"])
        .arg(schema)
        .arg(file)
        .output()
        .map_err(|e| Stop::CannotCheck(format!("xmllint (libxml2-utils) is needed for the schema check: {e}")))?;
    if !checked.status.success() {
        let why = String::from_utf8_lossy(&checked.stderr).lines().next().unwrap_or_default().to_owned();
        return fail(format!("file {name}: not valid against {what}: {why}"));
    }
    Ok(())
}

fn totals_fields(t: &ExportTotals) -> [(&'static str, &str); 6] {
    [
        ("stakes", t.stakes.as_str()),
        ("stakesReturned", t.stakes_returned.as_str()),
        ("wins", t.wins.as_str()),
        ("deposits", t.deposits.as_str()),
        ("withdrawals", t.withdrawals.as_str()),
        ("other", t.other.as_str()),
    ]
}

/// What the XML files hold: `#<RegistroId>#<sub>` per sub-record, each `RegistroId`, and
/// `RegistroId/JugadorId` per player in it.
/// `events.csv`'s lines, read in order as the chain is: `(seq, hash, records)`.
struct Listed<'a, L: Iterator<Item = std::io::Result<String>>> {
    lines: &'a mut L,
    /// The position of the last line read.
    last: Option<u64>,
    peeked: Option<(u64, String, Vec<String>)>,
}

impl<L: Iterator<Item = std::io::Result<String>>> Listed<'_, L> {
    fn next_line(&mut self) -> Result<Option<(u64, String, Vec<String>)>, String> {
        if let Some(line) = self.peeked.take() {
            return Ok(Some(line));
        }
        let line = loop {
            let Some(line) = self.lines.next() else { return Ok(None) };
            let line = line.map_err(|e| format!("events.csv: {e}"))?;
            if !line.is_empty() {
                break line;
            }
        };
        let (seq, hash, records) = super::index_line(&line)?;
        if self.last.is_some_and(|last| seq == last) {
            return Err(format!("event {seq} is in the export twice"));
        }
        if self.last.is_some_and(|last| seq < last) {
            return Err(format!(
                "events.csv: event {seq} is listed after event {}: out of order",
                self.last.unwrap_or(0)
            ));
        }
        self.last = Some(seq);
        Ok(Some((seq, hash.to_owned(), records)))
    }

    /// The line of event `seq`, if listed; a line of an earlier position (an event the chain
    /// has not as exportable) is a failure.
    fn up_to(&mut self, seq: u64) -> Result<Option<(String, Vec<String>)>, String> {
        match self.next_line()? {
            None => Ok(None),
            Some((at, hash, records)) if at == seq => Ok(Some((hash, records))),
            Some((at, _, _)) if at < seq => {
                Err(format!("event {at} is in the export but is no exportable event of the period"))
            }
            Some(later) => {
                self.peeked = Some(later);
                Ok(None)
            }
        }
    }
}

fn records_present(xmls: &[(String, String)]) -> Result<BTreeSet<String>, Stop> {
    let mut present = BTreeSet::new();
    for (name, xml) in xmls {
        if name.ends_with(".json") {
            let report: serde_json::Value =
                serde_json::from_str(xml).map_err(|e| Stop::Failed(format!("{name}: {e}")))?;
            if let Some(id) = report["reportId"].as_str() {
                present.insert(format!("#{id}"));
                present.insert(id.to_owned());
            }
            continue;
        }
        let doc = roxmltree::Document::parse(xml).map_err(|e| Stop::Failed(format!("{name}: {e}")))?;
        for registro in doc.descendants().filter(|n| n.has_tag_name("Registro")) {
            let header = registro.children().find(|n| n.has_tag_name("Cabecera"));
            let field = |tag: &str| {
                header
                    .and_then(|h| h.children().find(|n| n.has_tag_name(tag)))
                    .and_then(|n| n.text())
                    .unwrap_or_default()
                    .to_owned()
            };
            let id = field("RegistroId");
            present.insert(format!("#{id}#{}", field("SubregistroId")));
            for jugador in registro.children().filter(|n| n.has_tag_name("Jugador")) {
                if let Some(player) = jugador.children().find(|n| n.has_tag_name("JugadorId")).and_then(|n| n.text()) {
                    present.insert(format!("{id}/{player}"));
                }
            }
            present.insert(id);
        }
        // SAFE: each session by its transaction id; the day's report by its date, a record per
        // category.
        for session in doc.descendants().filter(|n| n.has_tag_name("KasinospilSession")) {
            let id =
                session.children().find(|n| n.has_tag_name("SpilTransaktionIdentifikation")).and_then(|n| n.text());
            if let Some(id) = id {
                present.insert(format!("#{id}"));
                present.insert(id.to_owned());
            }
        }
        if let Some(day) = doc.descendants().find(|n| n.has_tag_name("EndOfDayRapportDato")).and_then(|n| n.text()) {
            let id = format!("EOD-{}", day.replace('-', ""));
            for (i, _) in doc.descendants().filter(|n| n.has_tag_name("SpilOpgørelse")).enumerate() {
                present.insert(format!("#{id}#{i}"));
            }
            present.insert(id);
        }
    }
    Ok(present)
}

/// The journal's movements over `period`, per currency, in the manifest's terms.
pub fn journal_totals(
    store: &dyn crate::store::Store,
    period: &contracts::exports::ExportPeriod,
) -> Result<BTreeMap<String, BTreeMap<&'static str, Decimal>>, crate::store::StoreError> {
    use crate::ledger::PostingKind as K;
    let (start, end) = (period.start, period.end);
    let mut totals: BTreeMap<String, BTreeMap<&'static str, Decimal>> = BTreeMap::new();
    crate::ledger::journal_each(store, |record| {
        if record.ts < start || record.ts >= end {
            return;
        }
        let t = totals.entry(record.currency.clone()).or_default();
        let sum = |f: &dyn Fn(&str, &str) -> bool| -> Decimal {
            record.postings.iter().filter(|(from, to, _)| f(from, to)).map(|(_, _, a)| *a).sum()
        };
        let player = |a: &str| a.starts_with("cash:") || a.starts_with("debt:");
        match (record.posting_kind, record.kind.as_str()) {
            (Some(K::Stake), _) => {
                *t.entry("stakes").or_default() += sum(&|f, to| f.starts_with("cash:") && to.starts_with("held:"))
            }
            (Some(K::Refund), _) => {
                *t.entry("stakesReturned").or_default() +=
                    sum(&|f, to| f.starts_with("held:") && to.starts_with("cash:"))
            }
            (Some(K::Win), _) => {
                *t.entry("wins").or_default() += sum(&|f, to| f.starts_with("house:") && to.starts_with("cash:"))
            }
            (Some(K::Deposit), _) => *t.entry("deposits").or_default() += sum(&|_, to| player(to)),
            (Some(K::Withdrawal), "debit") => *t.entry("withdrawals").or_default() += sum(&|f, _| player(f)),
            (Some(K::Adjustment), "payout") => *t.entry("withdrawals").or_default() += sum(&|_, _| true),
            (Some(K::Adjustment), "credit") => *t.entry("other").or_default() += sum(&|_, to| player(to)),
            (Some(K::Adjustment), "debit") => *t.entry("other").or_default() -= sum(&|f, _| player(f)),
            (Some(K::Chargeback), _) => *t.entry("other").or_default() -= sum(&|f, _| player(f)),
            _ => {}
        }
    })?;
    Ok(totals)
}
