//! Regulator exports: each regulator's files compiled from the cell's audit chain, with a signed
//! manifest that proves what they cover.
//!
//! One compiler, many dialects: a build reads the chain from its first record to the period's
//! last (so opening balances are what every earlier event left), turns each event into facts
//! ([`facts`]), folds them into books ([`books`]) and hands the books to the region's dialect
//! (`export_format`: [`dgoj`] for Spain). The manifest carries the chain range the period covers,
//! the head hash there, and a Merkle root ([`merkle`]) over the included events; `events.csv`
//! names the record each event went into, so a verifier with the chain checks that every
//! exportable event is in the export exactly once. Built exports go to an append-only vault in
//! the data directory ([`vault`]): a file already produced is never rewritten.

mod books;
mod dgoj;
pub mod dk_schemas;
pub mod facts;
pub mod merkle;
mod register;
mod returns;
mod rud;
pub mod safe;
pub mod vault;
pub mod verify;
mod xades;
mod xml;

use crate::store::{Store, StoreError};
use contracts::exports::{ChainRange, ExportManifest, ExportPeriod, ExportTotals, PeriodKind};
use facts::Family;
use register::Register;
use rust_decimal::Decimal;
use std::collections::BTreeMap;

/// The version of the export compiler (in every manifest's `generator`).
pub const GENERATOR_VERSION: &str = "1";

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("no export type `{0}` in this dialect")]
    UnknownType(String),
    #[error("{kind} covers {expected}")]
    WrongPeriod { kind: String, expected: &'static str },
    #[error("period `{0}`: expected YYYY-MM-DD, YYYY-MM or YYYY-Qn")]
    BadPeriod(String),
    #[error("period {0} is not over yet: an export covers a period once it has ended")]
    PeriodNotOver(String),
    #[error("no dialect for export format `{0}` yet")]
    NoDialect(String),
    #[error("signing: {0}")]
    Sign(anyhow::Error),
    #[error("zip: {0}")]
    Zip(String),
    #[error("the player register: {0}")]
    Register(String),
    #[error("the TamperToken service: {0}")]
    TokenService(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Unreadable(#[from] facts::Unreadable),
    #[error("{path}: {error}")]
    Io { path: String, error: std::io::Error },
}

impl ExportError {
    fn io(path: &std::path::Path, error: std::io::Error) -> ExportError {
        ExportError::Io { path: path.display().to_string(), error }
    }
}

/// Reads `2026-12-06`, `2026-12` or `2026-Q4`.
pub fn parse_period(label: &str) -> Result<ExportPeriod, ExportError> {
    let period = parse_any_period(label)?;
    // One spelling per period (`2026-01`, not `2026-1`): the label names the export's id.
    let canonical = match period.kind {
        PeriodKind::Day => period.start.format("%Y-%m-%d").to_string(),
        PeriodKind::Month => period.start.format("%Y-%m").to_string(),
        PeriodKind::Quarter => {
            use chrono::Datelike;
            format!("{}-Q{}", period.start.year(), (period.start.month() - 1) / 3 + 1)
        }
    };
    if canonical != label {
        return Err(ExportError::BadPeriod(label.to_owned()));
    }
    Ok(period)
}

fn parse_any_period(label: &str) -> Result<ExportPeriod, ExportError> {
    use chrono::{Datelike, NaiveDate};
    let bad = || ExportError::BadPeriod(label.to_owned());
    let month_start = |y: i32, m: u32| NaiveDate::from_ymd_opt(y, m, 1).ok_or_else(bad);
    let next_month = |d: NaiveDate| {
        let (y, m) = if d.month() == 12 { (d.year() + 1, 1) } else { (d.year(), d.month() + 1) };
        NaiveDate::from_ymd_opt(y, m, 1).ok_or_else(bad)
    };
    if let Ok(day) = NaiveDate::parse_from_str(label, "%Y-%m-%d") {
        let end = day.succ_opt().ok_or_else(bad)?;
        return Ok(ExportPeriod { kind: PeriodKind::Day, label: label.to_owned(), start: day, end });
    }
    let (year, rest) = label.split_once('-').ok_or_else(bad)?;
    let year: i32 = year.parse().map_err(|_| bad())?;
    if let Some(q) = rest.strip_prefix('Q') {
        let q: u32 = q.parse().map_err(|_| bad())?;
        if !(1..=4).contains(&q) {
            return Err(bad());
        }
        let start = month_start(year, 3 * q - 2)?;
        let end = next_month(next_month(next_month(start)?)?)?;
        return Ok(ExportPeriod { kind: PeriodKind::Quarter, label: label.to_owned(), start, end });
    }
    let month: u32 = rest.parse().map_err(|_| bad())?;
    let start = month_start(year, month)?;
    Ok(ExportPeriod { kind: PeriodKind::Month, label: label.to_owned(), start, end: next_month(start)? })
}

/// The families of events an export type draws on.
pub fn families(kind: &str) -> &'static [Family] {
    match kind {
        "CJD" | "CJT" => &[Family::Gaming, Family::Payments],
        "JUC" | "OPT" | "KasinospilPrSession" | "EndOfDayRapport" => &[Family::Gaming],
        "quarterly-return" | "gaming-tax-return" | "player-funds" | "player-protection" => {
            &[Family::Gaming, Family::Payments]
        }
        _ => &[],
    }
}

/// Whether the event `name` is one an export of `kind` includes.
pub fn exportable(kind: &str, name: &str) -> bool {
    facts::family(name).is_some_and(|f| families(kind).contains(&f))
}

/// The first record at or after `at` (head + 1 when none): the chain is in time order, written
/// by one writer on the cell's clock.
fn first_at_or_after(store: &dyn Store, head: u64, at: chrono::DateTime<chrono::Utc>) -> Result<u64, ExportError> {
    let (mut low, mut high) = (1u64, head + 1);
    while low < high {
        let mid = low + (high - low) / 2;
        let record = crate::audit::record(store, mid)?
            .ok_or_else(|| StoreError::Corrupt { key: format!("audit record {mid}"), why: "missing".into() })?;
        if facts::head(&record.event)?.1 < at {
            low = mid + 1;
        } else {
            high = mid;
        }
    }
    Ok(low)
}

/// The chain range of `period`: its first and last records (first > last when it holds none)
/// and the chain's hash at its end.
pub fn chain_range(store: &dyn Store, period: &ExportPeriod) -> Result<ChainRange, ExportError> {
    let midnight = |d: chrono::NaiveDate| d.and_time(chrono::NaiveTime::MIN).and_utc();
    let (head, _) = crate::audit::head(store)?;
    let first = first_at_or_after(store, head, midnight(period.start))?;
    let last = first_at_or_after(store, head, midnight(period.end))? - 1;
    let head_hash = match last {
        0 => [0u8; 32],
        seq => crate::audit::record(store, seq)?.map(|r| r.hash).unwrap_or_default(),
    };
    Ok(ChainRange { first_seq: first, last_seq: last, head_hash: hex::encode(head_hash) })
}

/// The index of an export's events, written as they are met: `events.csv` (`seq,recordHash,
/// records`, the records joined by `|`) and the Merkle root over their record hashes.
struct Index<W: std::io::Write> {
    csv: W,
    merkle: merkle::Builder,
}

impl<W: std::io::Write> Index<W> {
    fn new(mut csv: W) -> std::io::Result<Index<W>> {
        csv.write_all(b"seq,recordHash,records\n")?;
        Ok(Index { csv, merkle: merkle::Builder::default() })
    }

    fn push(&mut self, seq: u64, hash: &[u8; 32], records: &[String]) -> std::io::Result<()> {
        self.merkle.push(hash);
        writeln!(self.csv, "{seq},{},{}", hex::encode(hash), records.join("|"))
    }
}

/// Compiles the books of `period`, indexing the events an export of `kind` includes as it goes.
fn compile<W: std::io::Write>(
    store: &dyn Store,
    kind: &str,
    period: &ExportPeriod,
    range: &ChainRange,
    index: &mut Index<W>,
) -> Result<books::Books, ExportError> {
    let sessions = matches!(kind, "JUC" | "KasinospilPrSession" | "EndOfDayRapport");
    let mut books = books::Books::new(period.start, sessions);
    if range.last_seq == 0 {
        return Ok(books);
    }
    let modelled = returns::is_return(kind);
    crate::audit::scan(store, 1, range.last_seq, |record| {
        let (name, _) = facts::head(&record.event).map_err(unreadable)?;
        if facts::family(&name).is_none() {
            return Ok(());
        }
        let read = facts::read(&record.event).map_err(unreadable)?;
        let in_period = record.seq >= range.first_seq;
        let mut refs = Vec::new();
        for fact in read.facts {
            if let Some(touched) = books.fold(fact, read.ts, in_period) {
                let refs_of = if safe::TYPES.contains(&kind) {
                    safe::index_refs(kind, period, &touched)
                } else {
                    dgoj::index_refs(kind, period, &touched)
                };
                for r in refs_of {
                    if !refs.contains(&r) {
                        refs.push(r);
                    }
                }
            }
        }
        if modelled {
            // A return is one record, which every event of its period goes into.
            refs = vec![returns::report_id(kind, period)];
        }
        if in_period && exportable(kind, &name) {
            index
                .push(record.seq, &record.hash, &refs)
                .map_err(|e| StoreError::Unavailable(format!("events.csv: {e}")))?;
        }
        Ok(())
    })?;
    Ok(books)
}

fn unreadable(e: facts::Unreadable) -> StoreError {
    StoreError::Corrupt { key: "audit event".into(), why: e.to_string() }
}

/// The money totals of the period's movements, per currency.
fn totals(books: &books::Books) -> Vec<ExportTotals> {
    #[derive(Default)]
    struct T {
        stakes: Decimal,
        returned: Decimal,
        wins: Decimal,
        deposits: Decimal,
        withdrawals: Decimal,
        other: Decimal,
    }
    let mut by_currency: BTreeMap<&str, T> = BTreeMap::new();
    for ((_, currency), m) in &books.movements {
        let t = by_currency.entry(currency.as_str()).or_default();
        t.stakes += m.staked();
        t.returned += m.returned();
        t.wins += m.won();
        t.deposits += m.deposited();
        t.withdrawals += m.withdrawn();
        t.other += m.other;
    }
    let s = |d: Decimal| format!("{:.2}", d.round_dp(2));
    by_currency
        .into_iter()
        .map(|(currency, t)| ExportTotals {
            currency: currency.to_owned(),
            stakes: s(t.stakes),
            stakes_returned: s(t.returned),
            wins: s(t.wins),
            ggr: s(t.stakes - t.returned - t.wins),
            deposits: s(t.deposits),
            withdrawals: s(t.withdrawals),
            other: s(t.other),
            bonus: s(Decimal::ZERO),
        })
        .collect()
}

/// What a build needs of the cell: its data directory (keys, vault), region and audit key.
pub struct Exporter<'a> {
    pub data_dir: &'a std::path::Path,
    pub region: &'a contracts::region::RegionConfig,
    pub audit_key: &'a ed25519_dalek::SigningKey,
    /// The regulator's TamperToken service (Denmark), `http://HOST:PORT`. Runs on a blocking
    /// thread of a tokio runtime when set.
    pub tamper_token_url: Option<&'a str>,
}

impl Exporter<'_> {
    /// Builds the export of `kind` for `period` into the vault, as of `now`: its manifest and
    /// where it is.
    pub fn build(
        &self,
        store: &dyn Store,
        kind: &str,
        label: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<vault::Stored, ExportError> {
        let period = parse_period(label)?;
        if period.end.and_time(chrono::NaiveTime::MIN).and_utc() > now {
            return Err(ExportError::PeriodNotOver(period.label));
        }
        let types: &[&str] = match self.region.export_format.as_str() {
            "dgoj-sci" => &dgoj::TYPES,
            "dk-safe" => &safe::TYPES,
            other if !returns::types(other).is_empty() => returns::types(other),
            other => return Err(ExportError::NoDialect(other.to_owned())),
        };
        if !types.contains(&kind) {
            return Err(ExportError::UnknownType(kind.to_owned()));
        }
        let range = chain_range(store, &period)?;
        let vault = vault::Vault::new(self.data_dir);
        let (export_id, revision) = vault.next_id(&self.region.cell_id, kind, &period.label)?;
        let mut scratch = vault.scratch(&export_id)?;
        let csv_path = scratch.path("events.csv")?;
        let csv = std::fs::File::create(&csv_path).map_err(|e| ExportError::io(&csv_path, e))?;
        let mut index = Index::new(std::io::BufWriter::new(csv)).map_err(|e| ExportError::io(&csv_path, e))?;
        // RUD reads the register alone: nothing in the chain feeds it.
        let books = match kind {
            "RUD" => books::Books::new(period.start, false),
            _ => compile(store, kind, &period, &range, &mut index)?,
        };
        let (merkle_root, event_count) = (index.merkle.root(), index.merkle.count());
        let csv = index.csv.into_inner().map_err(|e| ExportError::io(&csv_path, e.into_error()))?;
        csv.sync_all().map_err(|e| ExportError::io(&csv_path, e))?;
        scratch.add("events.csv", 0);
        if !returns::types(&self.region.export_format).is_empty() {
            let players = returns::PlayerCounts::read(store, &period)?;
            returns::write(kind, &period, &books, players, &mut scratch)?;
        } else if self.region.export_format == "dk-safe" {
            let url = self.tamper_token_url.ok_or_else(|| {
                ExportError::TokenService("not configured: Denmark's files need one (--tamper-token-url)".into())
            })?;
            let tokens = safe::TokenService::new(url)?;
            safe::write(&self.region.exports.operator_id, kind, &period, &books, &tokens, &mut scratch)?;
        } else {
            let signer = xades::Signer::load_or_create(self.data_dir, &self.region.exports.operator_id)
                .map_err(ExportError::Sign)?;
            scratch.write("signing-cert.pem", signer.cert_pem().as_bytes(), 0)?;
            let build = revision.to_string();
            let dialect = dgoj::Dgoj {
                operator: &self.region.exports.operator_id,
                warehouse: &self.region.exports.warehouse_id,
                signer: &signer,
                zip_password: &vault.zip_password()?,
                built_at: now,
                build: &build,
            };
            let registrants = matches!(kind, "RUD" | "RUT")
                .then(|| Register::read(store, &period))
                .transpose()?
                .map(|register| rud::Registrants { register, store, region: self.region });
            dgoj::write(&dialect, kind, &period, &books, registrants.as_ref(), &mut scratch)?;
        }
        let corrections = books.corrected.iter().filter(|_| kind == "JUC").map(dgoj::session_id).collect();
        let mut manifest = ExportManifest {
            manifest_version: contracts::exports::EXPORTS_VERSION.into(),
            export_id,
            cell: self.region.cell_id.clone(),
            jurisdiction: self.region.jurisdiction,
            kind: kind.to_owned(),
            format: self.region.export_format.clone(),
            period,
            files: Vec::new(),
            record_count: scratch.record_count(),
            event_count,
            // A player register moves no money.
            totals: if families(kind).is_empty() { Vec::new() } else { totals(&books) },
            chain: range,
            merkle_root: hex::encode(merkle_root),
            corrections,
            policy_version: self.region.policy_version.clone(),
            generator: format!("cell {}, exports {GENERATOR_VERSION}", env!("CARGO_PKG_VERSION")),
            built_at: now,
            public_key: hex::encode(self.audit_key.verifying_key().as_bytes()),
        };
        vault.store(scratch, &mut manifest, self.audit_key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_period_has_one_spelling() {
        let p = parse_period("2026-Q4").unwrap();
        assert_eq!(
            (p.kind, p.start.to_string(), p.end.to_string()),
            (PeriodKind::Quarter, "2026-10-01".into(), "2027-01-01".into())
        );
        assert_eq!(parse_period("2026-12").unwrap().end.to_string(), "2027-01-01");
        assert_eq!(parse_period("2026-11-30").unwrap().end.to_string(), "2026-12-01");
        for bad in ["2026-1", "2026-+1", "2026-11-3", "2026-Q5", "2026-Q04", "26-11", "2026-13", "x"] {
            assert!(parse_period(bad).is_err(), "{bad}");
        }
    }
}
