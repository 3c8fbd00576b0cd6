//! Denmark's dialect: the Spillemyndigheden's SAFE standard records, validated against the SAFE
//! XSDs (snapshot r7165): `KasinospilPrSession` (one `KasinospilSession` per game session: a
//! player's play of a game on a day) and `EndOfDayRapport` (the day's totals per game category).
//! Files are plain UTF-8 XML (element names carry æ, ø, å), filed as
//! `<cert>/<KasinoSpil|EndOfDay>/<YYYY-MM-DD>/<cert>-<export>-<n>.xml`.
//!
//! Not built yet: the TamperToken chain across files (the regulator's token service, which the
//! sandbox does not play yet) and replacement files (`SpilFilErstatningIdentifikation`); a late
//! rollback counts in its day's totals only.

use super::books::{game_type, Books, Session, SessionKey};
use super::vault::Scratch;
use super::xml::Writer;
use super::ExportError;
use contracts::exports::{ExportPeriod, PeriodKind};
use rust_decimal::Decimal;
use std::collections::BTreeMap;

const NS: &str = "http://skat.dk/begrebsmodel/2009/01/15/";
/// Sessions per `KasinospilPrSession` file.
const SESSIONS_PER_FILE: usize = 1000;

pub const TYPES: [&str; 2] = ["KasinospilPrSession", "EndOfDayRapport"];

/// A session's `SpilTransaktionIdentifikation` (at most 45 characters), deterministic.
pub fn session_id(key: &SessionKey) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{}\u{1f}{}", key.0, key.1).as_bytes());
    format!("S-{}-{}", key.2.format("%Y%m%d"), &hex::encode(digest)[..24])
}

/// The end-of-day report's record id.
pub fn end_of_day_id(day: chrono::NaiveDate) -> String {
    format!("EOD-{}", day.format("%Y%m%d"))
}

/// `KasinospilKategori` of a game.
fn category(game_id: &str) -> &'static str {
    match game_type(game_id) {
        "BLJ" => "blackjack",
        "RLT" => "roulette",
        "PUN" => "puntobanco",
        "POC" => "poker",
        "BNG" => "bingo",
        _ => "spilleautomat",
    }
}

/// `SpilKategoriNavn`: a live game is played by many at one table.
fn game_category(game_id: &str) -> &'static str {
    if game_id.to_ascii_lowercase().contains("live") {
        "KasinospilMultiPlayer"
    } else {
        "KasinospilSinglePlayer"
    }
}

/// Money as `Beløb`: two decimals.
fn amount(d: Decimal) -> String {
    format!("{:.2}", d.round_dp(2))
}

fn day_of(period: &ExportPeriod, kind: &str) -> Result<chrono::NaiveDate, ExportError> {
    if period.kind != PeriodKind::Day {
        return Err(ExportError::WrongPeriod { kind: kind.into(), expected: "a day (YYYY-MM-DD)" });
    }
    Ok(period.start)
}

/// Writes the records of `kind` for `period` into `out`. `cert` is the operator's
/// `SpilCertifikatIdentifikation`; `export_id` names the files.
pub fn write(
    cert: &str,
    kind: &str,
    period: &ExportPeriod,
    books: &Books,
    export_id: &str,
    out: &mut Scratch,
) -> Result<(), ExportError> {
    let day = day_of(period, kind)?;
    let date = day.format("%Y-%m-%d").to_string();
    let sessions: Vec<&Session> = books.period_sessions(period.end).collect();
    match kind {
        "KasinospilPrSession" => {
            for (n, chunk) in sessions.chunks(SESSIONS_PER_FILE).enumerate() {
                let file_id = format!("{export_id}-{}", n + 1);
                let xml = sessions_file(cert, &file_id, chunk);
                out.write(
                    &format!("{cert}/KasinoSpil/{date}/{cert}-{file_id}.xml"),
                    xml.as_bytes(),
                    chunk.len() as u64,
                )?;
            }
            Ok(())
        }
        "EndOfDayRapport" => {
            let file_id = format!("{export_id}-1");
            let (xml, records) = end_of_day_file(cert, &file_id, day, &sessions);
            out.write(&format!("{cert}/EndOfDay/{date}/{cert}-{file_id}.xml"), xml.as_bytes(), records)
        }
        other => Err(ExportError::UnknownType(other.to_owned())),
    }
}

fn sessions_file(cert: &str, file_id: &str, sessions: &[&Session]) -> String {
    let mut w = Writer::new();
    w.open_with("KasinospilPrSessionStruktur", &format!(" xmlns=\"{NS}\""))
        .open("KasinospilStruktur")
        .open("FilInformation")
        .leaf("SpilFilVersion", "v2")
        .leaf("SpilFilIdentifikation", file_id)
        .close()
        .open("TilladelsesindehaverOgSpil")
        .leaf("SpilCertifikatIdentifikation", cert)
        .leaf("SpilKategoriNavn", "KasinospilSinglePlayer")
        .close()
        .open("KasinospilAggregeretPrSession");
    for s in sessions {
        let key = (s.player.clone(), s.game_id.clone(), s.day);
        let product: String = s.game_id.chars().take(45).collect();
        w.open("KasinospilSession")
            .leaf("SpilProduktNavn", &product)
            .leaf("SpilProduktÅbentNetværk", "0")
            .leaf("SpillerInformationIdentifikation", s.player.as_str())
            .leaf("SpilTransaktionIdentifikation", &session_id(&key))
            .leaf("SpilKøbDatoTid", &s.first.format("%Y-%m-%dT%H:%M:%SZ").to_string())
            .leaf("SpilFaktiskSlutDatoTid", &s.last.format("%Y-%m-%dT%H:%M:%SZ").to_string())
            .leaf("SpilSalgskanal", "Internet")
            .leaf("KasinospilKategori", category(&s.game_id))
            .leaf("KasinospilIndskudSpil", &amount(s.stakes))
            // Winnings include the stake (the payout), and stakes given back.
            .leaf("KasinospilGevinstSpil", &amount(s.wins + s.returned))
            .leaf("KasinospilAntalTræk", &s.rounds.to_string())
            .leaf("ValutaOplysningKode", &s.currency)
            .open("SpilSted")
            .leaf("SpilHjemmeside", "https://dk.casino.example")
            .close()
            // The game's provider certifies its RNG; the platform does not know its software id.
            .open("TilfældighedGeneratorListe")
            .open("TilfældighedGenerator")
            .leaf("TilfældighedGeneratorIdentifikation", &product)
            .leaf("TilfældighedGeneratorSoftwareId", "unknown")
            .close()
            .close()
            .open("JackpotListe")
            .close()
            .close();
    }
    w.close().close().close();
    format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{}\n", w.out)
}

fn end_of_day_file(cert: &str, file_id: &str, day: chrono::NaiveDate, sessions: &[&Session]) -> (String, u64) {
    let mut by_category: BTreeMap<&'static str, (u64, Decimal, Decimal)> = BTreeMap::new();
    let mut currency = "DKK".to_owned();
    for s in sessions {
        let c = by_category.entry(game_category(&s.game_id)).or_default();
        c.0 += s.rounds;
        c.1 += s.stakes;
        c.2 += s.wins + s.returned;
        currency.clone_from(&s.currency);
    }
    if by_category.is_empty() {
        by_category.insert("KasinospilSinglePlayer", Default::default());
    }
    let mut w = Writer::new();
    w.open_with("EndOfDayRapportStruktur", &format!(" xmlns=\"{NS}\""))
        .open("EndOfDayRapportStruktur")
        .open("FilInformation")
        .leaf("SpilFilVersion", "v2")
        .leaf("SpilFilIdentifikation", file_id)
        .close()
        .open("Tilladelsesindehaver")
        .leaf("SpilCertifikatIdentifikation", cert)
        .leaf("EndOfDayRapportDato", &day.format("%Y-%m-%d").to_string())
        .leaf("ValutaOplysningKode", &currency)
        .close()
        .open("SpilOpgørelseListe");
    for (name, (rounds, stakes, paid)) in &by_category {
        w.open("SpilOpgørelse")
            .leaf("SpilKategoriNavn", name)
            .leaf("EndOfDayRapportAntalSpil", &rounds.to_string())
            .leaf("EndOfDayRapportIndskudSpil", &amount(*stakes))
            .leaf("EndOfDayRapportIndskudJackpot", "0")
            .leaf("EndOfDayRapportGevinster", &amount(*paid))
            .leaf("EndOfDayRapportKommissionRake", "0")
            .close();
    }
    w.close().close().close();
    (format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{}\n", w.out), by_category.len() as u64)
}

/// The record each period event of `kind` feeds, for the export's index.
pub fn index_refs(kind: &str, period: &ExportPeriod, touched: &super::books::Touched) -> Vec<String> {
    let Some(session) = &touched.session else { return Vec::new() };
    if touched.late {
        return Vec::new(); // counted in the player's movements; SAFE replacement files are not built
    }
    match kind {
        "KasinospilPrSession" => vec![session_id(session)],
        "EndOfDayRapport" => vec![end_of_day_id(period.start)],
        _ => Vec::new(),
    }
}
