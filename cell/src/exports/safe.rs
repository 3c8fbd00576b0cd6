//! Denmark's dialect: the Spillemyndigheden's SAFE standard records, validated against the SAFE
//! XSDs (snapshot r7165): `KasinospilPrSession` (one `KasinospilSession` per game session: a
//! player's play of a game on a day) and `EndOfDayRapport` (the day's totals per game category).
//! Files are plain UTF-8 XML (element names carry æ, ø, å), filed as
//! `<cert>/<KasinoSpil|EndOfDay>/<YYYY-MM-DD>/<cert>-<export>-<n>.xml`.
//!
//! Integrity is the regulator's TamperToken chain: each export opens a token at the token service
//! (the sandbox plays it), chains HMAC-SHA256 over its files in order (the first keyed by the
//! token's key, each next by the previous MAC), names them `<cert>-<token>-<n>.xml` and closes the
//! token with the last MAC; `tamper-token.json` lists the files and their MACs for the verifier.
//!
//! Not built yet: replacement files (`SpilFilErstatningIdentifikation`); a late rollback counts in
//! its day's totals only.

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
    format!("S-{}-{}", key.2.part.format("%Y%m%d"), &hex::encode(digest)[..24])
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
    Ok(period.start.date_naive())
}

/// The regulator's TamperToken service, as the cell reaches it.
pub struct TokenService {
    /// `host:port` (the sandbox's, in development).
    authority: String,
}

impl TokenService {
    /// The service at `url` (`http://HOST:PORT`).
    pub fn new(url: &str) -> Result<TokenService, ExportError> {
        let authority = crate::outside::authority("--tamper-token-url", url).map_err(ExportError::TokenService)?;
        Ok(TokenService { authority })
    }

    /// One call, from a blocking thread of the cell's runtime.
    fn call(&self, method: &str, path: &str, body: serde_json::Value) -> Result<serde_json::Value, ExportError> {
        let fail = |e: String| ExportError::TokenService(format!("at {}: {e}", self.authority));
        let handle = tokio::runtime::Handle::try_current().map_err(|e| fail(e.to_string()))?;
        let exchange = crate::outside::exchange(&self.authority, method, path, "application/json", body.to_string());
        let (status, _, body) = handle
            .block_on(async { tokio::time::timeout(std::time::Duration::from_secs(10), exchange).await })
            .map_err(|_| fail("no answer within 10 s".into()))?
            .map_err(fail)?;
        if !(200..300).contains(&status) {
            return Err(fail(format!("{status}: {}", String::from_utf8_lossy(&body))));
        }
        serde_json::from_slice(&body).map_err(|e| fail(e.to_string()))
    }
}

/// The chain of one token: each file's MAC keys the next.
struct Chain {
    key: Vec<u8>,
    files: Vec<(String, String)>,
}

impl Chain {
    fn push(&mut self, name: String, bytes: &[u8]) {
        use hmac::{Hmac, Mac};
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(bytes);
        let tag = mac.finalize().into_bytes().to_vec();
        self.files.push((name, hex::encode(&tag)));
        self.key = tag;
    }
}

/// Writes the records of `kind` for `period` into `out`, under a TamperToken of `tokens`. `cert`
/// is the operator's `SpilCertifikatIdentifikation` (the token's user).
pub fn write(
    cert: &str,
    kind: &str,
    period: &ExportPeriod,
    books: &Books,
    tokens: &TokenService,
    out: &mut Scratch,
) -> Result<(), ExportError> {
    let day = day_of(period, kind)?;
    let date = day.format("%Y-%m-%d").to_string();
    let sessions: Vec<&Session> = books.period_sessions().collect();
    let opened = tokens.call("POST", "/tamper-token/v1/tokens", serde_json::json!({ "safeId": cert }))?;
    let token = opened["tokenId"].as_str().unwrap_or_default().to_owned();
    let key = hex::decode(opened["key"].as_str().unwrap_or_default()).unwrap_or_default();
    if token.is_empty() || key.len() != 32 {
        return Err(ExportError::TokenService(format!("its answer does not read: {opened}")));
    }
    let mut chain = Chain { key, files: Vec::new() };
    let folder = format!("{cert}-{token}");
    let mut file = |n: usize, xml: String, what: &str, records: u64| -> Result<(), ExportError> {
        let name = format!("{folder}/{what}/{date}/{cert}-{token}-{n}.xml");
        chain.push(name.clone(), xml.as_bytes());
        out.write(&name, xml.as_bytes(), records)
    };
    match kind {
        "KasinospilPrSession" => {
            for (n, chunk) in sessions.chunks(SESSIONS_PER_FILE).enumerate() {
                let xml = sessions_file(cert, &format!("{token}-{}", n + 1), chunk);
                file(n + 1, xml, "KasinoSpil", chunk.len() as u64)?;
            }
        }
        "EndOfDayRapport" => {
            let (xml, records) = end_of_day_file(cert, &format!("{token}-1"), day, &sessions);
            file(1, xml, "EndOfDay", records)?;
        }
        other => return Err(ExportError::UnknownType(other.to_owned())),
    }
    let last = chain.files.last().map(|(_, mac)| mac.clone()).unwrap_or_default();
    let files: Vec<serde_json::Value> =
        chain.files.iter().map(|(name, mac)| serde_json::json!({ "name": name, "mac": mac })).collect();
    let record = serde_json::json!({ "tokenId": token, "safeId": cert, "files": files });
    out.write("tamper-token.json", &serde_json::to_vec_pretty(&record).expect("JSON"), 0)?;
    let close = serde_json::json!({ "mac": last, "files": files.len() });
    tokens.call("POST", &format!("/tamper-token/v1/tokens/{token}/close"), close)?;
    Ok(())
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
        let key = (s.player.clone(), s.game_id.clone(), s.bucket);
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
        "EndOfDayRapport" => vec![end_of_day_id(period.start.date_naive())],
        _ => Vec::new(),
    }
}
