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
mod checkpoint;
mod dgoj;
pub mod dk_schemas;
pub mod facts;
mod juc;
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
    #[error("period `{0}`: expected YYYY-MM-DDTHH:MM (minutes 00, 15, 30 or 45), YYYY-MM-DD, YYYY-MM or YYYY-Qn")]
    BadPeriod(String),
    #[error("period {0} is not over yet: an export covers a period once it has ended and its records have settled")]
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
    #[error("the day's real-time batches: {0}")]
    Batches(String),
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

/// How long after a period's end its records are all committed (a transaction lives at most
/// `TRANSACTION_AGE_MAX`).
const SETTLE: chrono::TimeDelta =
    chrono::TimeDelta::seconds(crate::store::limits::TRANSACTION_AGE_MAX.as_secs() as i64 + 5);

/// The length of a real-time period (DGOJ §4.1.3: a JUC batch every 15 minutes).
pub const QUARTER_HOUR: chrono::TimeDelta = chrono::TimeDelta::minutes(15);

/// Reads `2026-12-06T10:15`, `2026-12-06`, `2026-12` or `2026-Q4`.
pub fn parse_period(label: &str) -> Result<ExportPeriod, ExportError> {
    let period = parse_any_period(label)?;
    // One spelling per period (`2026-01`, not `2026-1`): the label names the export's id.
    let canonical = match period.kind {
        PeriodKind::QuarterHour => period.start.format("%Y-%m-%dT%H:%M").to_string(),
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

fn midnight(day: chrono::NaiveDate) -> chrono::DateTime<chrono::Utc> {
    day.and_time(chrono::NaiveTime::MIN).and_utc()
}

fn parse_any_period(label: &str) -> Result<ExportPeriod, ExportError> {
    use chrono::{Datelike, NaiveDate, Timelike};
    let bad = || ExportError::BadPeriod(label.to_owned());
    let period = |kind, start: NaiveDate, end: NaiveDate| ExportPeriod {
        kind,
        label: label.to_owned(),
        start: midnight(start),
        end: midnight(end),
    };
    let month_start = |y: i32, m: u32| NaiveDate::from_ymd_opt(y, m, 1).ok_or_else(bad);
    let next_month = |d: NaiveDate| {
        let (y, m) = if d.month() == 12 { (d.year() + 1, 1) } else { (d.year(), d.month() + 1) };
        NaiveDate::from_ymd_opt(y, m, 1).ok_or_else(bad)
    };
    if let Ok(at) = chrono::NaiveDateTime::parse_from_str(label, "%Y-%m-%dT%H:%M") {
        if at.minute() % 15 != 0 {
            return Err(bad());
        }
        let start = at.and_utc();
        let kind = PeriodKind::QuarterHour;
        return Ok(ExportPeriod { kind, label: label.to_owned(), start, end: start + QUARTER_HOUR });
    }
    if let Ok(day) = NaiveDate::parse_from_str(label, "%Y-%m-%d") {
        return Ok(period(PeriodKind::Day, day, day.succ_opt().ok_or_else(bad)?));
    }
    let (year, rest) = label.split_once('-').ok_or_else(bad)?;
    let year: i32 = year.parse().map_err(|_| bad())?;
    if let Some(q) = rest.strip_prefix('Q') {
        let q: u32 = q.parse().map_err(|_| bad())?;
        if !(1..=4).contains(&q) {
            return Err(bad());
        }
        let start = month_start(year, 3 * q - 2)?;
        return Ok(period(PeriodKind::Quarter, start, next_month(next_month(next_month(start)?)?)?));
    }
    let month: u32 = rest.parse().map_err(|_| bad())?;
    let start = month_start(year, month)?;
    Ok(period(PeriodKind::Month, start, next_month(start)?))
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
    let (head, _) = crate::audit::head(store)?;
    let first = first_at_or_after(store, head, period.start)?;
    let last = first_at_or_after(store, head, period.end)? - 1;
    let head_hash = match last {
        0 => [0u8; 32],
        seq => crate::audit::record(store, seq)?.map(|r| r.hash).unwrap_or_default(),
    };
    Ok(ChainRange { first_seq: first, last_seq: last, head_hash: hex::encode(head_hash) })
}

/// The index of an export's events, written as they are met: `events.csv` (`seq,recordHash,
/// records`, the records joined by `|`) and the Merkle root over their record hashes.
struct Index {
    csv: std::io::BufWriter<std::fs::File>,
    path: std::path::PathBuf,
    merkle: merkle::Builder,
}

impl Index {
    /// Starts `events.csv` in `scratch`.
    fn create(scratch: &vault::Scratch) -> Result<Index, ExportError> {
        use std::io::Write;
        let path = scratch.path("events.csv")?;
        let file = std::fs::File::create(&path).map_err(|e| ExportError::io(&path, e))?;
        let mut csv = std::io::BufWriter::new(file);
        csv.write_all(b"seq,recordHash,records\n").map_err(|e| ExportError::io(&path, e))?;
        Ok(Index { csv, path, merkle: merkle::Builder::default() })
    }

    fn push(&mut self, seq: u64, hash: &[u8; 32], records: &[String]) -> Result<(), ExportError> {
        use std::io::Write;
        self.merkle.push(hash);
        writeln!(self.csv, "{seq},{},{}", hex::encode(hash), records.join("|"))
            .map_err(|e| ExportError::io(&self.path, e))
    }

    /// Completes `events.csv` (synced, counted in `scratch`): the Merkle root and event count.
    fn finish(self, scratch: &mut vault::Scratch) -> Result<(merkle::Hash, u64), ExportError> {
        let (root, count) = (self.merkle.root(), self.merkle.count());
        let path = self.path;
        let csv = self.csv.into_inner().map_err(|e| ExportError::io(&path, e.into_error()))?;
        csv.sync_all().map_err(|e| ExportError::io(&path, e))?;
        scratch.add("events.csv", 0);
        Ok((root, count))
    }
}

/// One line of an `events.csv` (as [`Index`] writes it): the event's position, its record hash
/// (hex) and the records it went into.
pub(super) fn index_line(line: &str) -> Result<(u64, &str, Vec<String>), String> {
    let mut parts = line.splitn(3, ',');
    let (Some(seq), Some(hash), records) = (parts.next(), parts.next(), parts.next().unwrap_or_default()) else {
        return Err(format!("events.csv: a line does not read: {line}"));
    };
    let seq: u64 = seq.parse().map_err(|_| format!("events.csv: `{seq}` is no position"))?;
    Ok((seq, hash, records.split('|').filter(|r| !r.is_empty()).map(str::to_owned).collect()))
}

/// Compiles the books of `period`, indexing the events an export of `kind` includes as it goes:
/// from the latest checkpoint before the period (else from the first record), leaving one at its
/// end.
fn compile(
    store: &dyn Store,
    kind: &str,
    period: &ExportPeriod,
    range: &ChainRange,
    index: &mut Index,
    checkpoints: &checkpoint::Checkpoints,
) -> Result<books::Books, ExportError> {
    let rule = match kind {
        "JUC" => books::SessionRule::Idle,
        "KasinospilPrSession" | "EndOfDayRapport" => books::SessionRule::Daily,
        _ => books::SessionRule::None,
    };
    if range.last_seq == 0 {
        return Ok(books::Books::new(period, rule));
    }
    let (mut books, from) = match checkpoints.latest(store, rule, range.first_seq - 1) {
        Some(carry) => {
            let from = carry.seq + 1;
            (books::Books::resume(period, carry), from)
        }
        None => (books::Books::new(period, rule), 1),
    };
    let modelled = returns::is_return(kind);
    let mut last_hash = [0u8; 32];
    crate::audit::scan(store, from, range.last_seq, |record| {
        last_hash = record.hash;
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
            index.push(record.seq, &record.hash, &refs).map_err(|e| StoreError::Unavailable(e.to_string()))?;
        }
        Ok(())
    })?;
    if from <= range.last_seq {
        checkpoints.save(&books.carry(range.last_seq, last_hash));
    }
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
        // A record is stamped inside its transaction: one stamped just before the period's end
        // may commit a few seconds after it. A build waits until no such record can come.
        if period.end + SETTLE > now {
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
        if kind == "JUC" && period.kind == PeriodKind::Day {
            return self.pack_day(store, period, now);
        }
        let range = chain_range(store, &period)?;
        let vault = vault::Vault::new(self.data_dir);
        let (export_id, revision) = vault.next_id(&self.region.cell_id, kind, &period.label)?;
        let mut scratch = vault.scratch(&export_id)?;
        let mut index = Index::create(&scratch)?;
        // RUD reads the register alone: nothing in the chain feeds it.
        let books = match kind {
            "RUD" => books::Books::new(&period, books::SessionRule::None),
            _ => compile(store, kind, &period, &range, &mut index, &checkpoint::Checkpoints::new(self.data_dir))?,
        };
        let (merkle_root, event_count) = index.finish(&mut scratch)?;
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
        let corrections = if kind == "JUC" { juc::corrections(&books) } else { Vec::new() };
        // A player register moves no money.
        let totals = if families(kind).is_empty() { Vec::new() } else { totals(&books) };
        let sealed = Sealed { kind, period, range, merkle_root, event_count, totals, corrections };
        self.seal(&vault, scratch, export_id, sealed, now)
    }

    /// Builds the pack of a day's JUC for `Anteriores` (BOE §4.3): the latest build of each of
    /// its quarters' batches, packed as filed; a quarter never built is built now (late, but
    /// nothing is lost). Its manifest covers the day as the quarters do together: their events,
    /// totals and corrections.
    fn pack_day(
        &self,
        store: &dyn Store,
        period: ExportPeriod,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<vault::Stored, ExportError> {
        let vault = vault::Vault::new(self.data_dir);
        let mut batches = Vec::new();
        let mut quarter = period.start;
        while quarter < period.end {
            let label = quarter.format("%Y-%m-%dT%H:%M").to_string();
            batches.push(match vault.latest(&self.region.cell_id, "JUC", &label)? {
                Some(stored) => stored,
                None => self.build(store, "JUC", &label, now)?,
            });
            quarter += QUARTER_HOUR;
        }
        let range = chain_range(store, &period)?;
        let (export_id, _) = vault.next_id(&self.region.cell_id, "JUC", &period.label)?;
        let mut scratch = vault.scratch(&export_id)?;
        let mut index = Index::create(&scratch)?;
        let (mut next_seq, mut totals, mut corrections) = (range.first_seq, Vec::new(), Vec::new());
        for batch in &batches {
            let m = &batch.manifest;
            if m.chain.first_seq != next_seq {
                return Err(ExportError::Batches(format!(
                    "{} starts at record {}, where {next_seq} was expected (the quarters tile the day)",
                    m.export_id, m.chain.first_seq
                )));
            }
            // An empty range is `last + 1 ..= last`: the next starts after `last` either way.
            next_seq = m.chain.last_seq + 1;
            let path = batch.dir.join("events.csv");
            let text = std::fs::read_to_string(&path).map_err(|e| ExportError::io(&path, e))?;
            for line in text.lines().skip(1).filter(|l| !l.is_empty()) {
                let unreadable = |why: String| ExportError::Batches(format!("{}: {why}", m.export_id));
                let (seq, hash, records) = index_line(line).map_err(unreadable)?;
                let hash: [u8; 32] = hex::decode(hash)
                    .ok()
                    .and_then(|h| h.try_into().ok())
                    .ok_or_else(|| unreadable(format!("events.csv: `{hash}` is no record hash")))?;
                index.push(seq, &hash, &records)?;
            }
            totals.extend(m.totals.iter().cloned());
            for c in &m.corrections {
                if !corrections.contains(c) {
                    corrections.push(c.clone());
                }
            }
        }
        if next_seq != range.last_seq + 1 {
            return Err(ExportError::Batches(format!(
                "they end at record {}, the day at {}",
                next_seq - 1,
                range.last_seq
            )));
        }
        let (merkle_root, event_count) = index.finish(&mut scratch)?;
        let signer = xades::Signer::load_or_create(self.data_dir, &self.region.exports.operator_id)
            .map_err(ExportError::Sign)?;
        scratch.write("signing-cert.pem", signer.cert_pem().as_bytes(), 0)?;
        let (operator, warehouse) = (&self.region.exports.operator_id, &self.region.exports.warehouse_id);
        juc::pack(operator, warehouse, period.start.date_naive(), &batches, &mut scratch, juc::PACK_FRAGMENT)?;
        let totals = add_totals(&totals)?;
        let sealed = Sealed { kind: "JUC", period, range, merkle_root, event_count, totals, corrections };
        self.seal(&vault, scratch, export_id, sealed, now)
    }

    /// Completes a build: its signed manifest, and the export moved into the vault.
    fn seal(
        &self,
        vault: &vault::Vault,
        scratch: vault::Scratch,
        export_id: String,
        sealed: Sealed<'_>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<vault::Stored, ExportError> {
        let mut manifest = ExportManifest {
            manifest_version: contracts::exports::EXPORTS_VERSION.into(),
            export_id,
            cell: self.region.cell_id.clone(),
            jurisdiction: self.region.jurisdiction,
            kind: sealed.kind.to_owned(),
            format: self.region.export_format.clone(),
            period: sealed.period,
            files: Vec::new(),
            record_count: scratch.record_count(),
            event_count: sealed.event_count,
            totals: sealed.totals,
            chain: sealed.range,
            merkle_root: hex::encode(sealed.merkle_root),
            corrections: sealed.corrections,
            policy_version: self.region.policy_version.clone(),
            generator: format!("cell {}, exports {GENERATOR_VERSION}", env!("CARGO_PKG_VERSION")),
            built_at: now,
            public_key: hex::encode(self.audit_key.verifying_key().as_bytes()),
        };
        vault.store(scratch, &mut manifest, self.audit_key)
    }
}

/// What a build's manifest says of what it compiled.
struct Sealed<'a> {
    kind: &'a str,
    period: ExportPeriod,
    range: ChainRange,
    merkle_root: merkle::Hash,
    event_count: u64,
    totals: Vec<ExportTotals>,
    corrections: Vec<String>,
}

/// Totals added up per currency (a day's from its quarters': amounts in the currency's minor
/// units, so the sum is exact).
fn add_totals(parts: &[ExportTotals]) -> Result<Vec<ExportTotals>, ExportError> {
    let mut by_currency: BTreeMap<&str, [Decimal; 8]> = BTreeMap::new();
    for t in parts {
        let sums = by_currency.entry(t.currency.as_str()).or_default();
        let fields = [&t.stakes, &t.stakes_returned, &t.wins, &t.ggr, &t.deposits, &t.withdrawals, &t.other, &t.bonus];
        for (sum, field) in sums.iter_mut().zip(fields) {
            *sum += field
                .parse::<Decimal>()
                .map_err(|_| ExportError::Batches(format!("a quarter's total `{field}` is no amount")))?;
        }
    }
    let s = |d: Decimal| format!("{:.2}", d.round_dp(2));
    Ok(by_currency
        .into_iter()
        .map(|(currency, [stakes, returned, wins, ggr, deposits, withdrawals, other, bonus])| ExportTotals {
            currency: currency.to_owned(),
            stakes: s(stakes),
            stakes_returned: s(returned),
            wins: s(wins),
            ggr: s(ggr),
            deposits: s(deposits),
            withdrawals: s(withdrawals),
            other: s(other),
            bonus: s(bonus),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_period_has_one_spelling() {
        let p = parse_period("2026-Q4").unwrap();
        assert_eq!(
            (p.kind, p.start.date_naive().to_string(), p.end.date_naive().to_string()),
            (PeriodKind::Quarter, "2026-10-01".into(), "2027-01-01".into())
        );
        assert_eq!(parse_period("2026-12").unwrap().end.date_naive().to_string(), "2027-01-01");
        assert_eq!(parse_period("2026-11-30").unwrap().end.date_naive().to_string(), "2026-12-01");
        let q = parse_period("2026-11-30T23:45").unwrap();
        assert_eq!((q.kind, q.end.to_rfc3339()), (PeriodKind::QuarterHour, "2026-12-01T00:00:00+00:00".into()));
        for bad in [
            "2026-1",
            "2026-+1",
            "2026-11-3",
            "2026-Q5",
            "2026-Q04",
            "26-11",
            "2026-13",
            "x",
            "2026-11-30T10:20",
            "2026-11-30T9:15",
        ] {
            assert!(parse_period(bad).is_err(), "{bad}");
        }
    }
}
