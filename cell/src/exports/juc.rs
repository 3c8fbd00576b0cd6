//! Spain's game records in real time (JUC, subtype SES: `RegistroOtrosJuegos`, BOE §4.5.6): a
//! registro per game session, with a `Juego` block per game type played in it.
//!
//! A batch is built each quarter of an hour (§4.1.3) from the part of each session played in it
//! ([`SessionRule::Idle`](super::books::SessionRule::Idle)): a session's first part is new
//! (`SesionNueva` S), a part that is the whole session, ended, is complete (`SesionCompleta` S); a
//! session that ended for want of play in a quarter it did not play in is closed there by a
//! registro of its own. A bet given back after its part was filed corrects that part
//! (`Rectificacion`, repeating it whole). `Lote`s hold up to 500 registros, filed under
//! `JU/<AAAAMMDD>/SES`. Once the day is over its lotes are packed, as filed, into one zip,
//! neither compressed nor encrypted, for `JU/Anteriores` (§4.3), in fragments past 1 GB.

use super::books::{game_type, Books, Bucket, Live, Session, SessionKey, IDLE};
use super::dgoj::{d14, dtz, file_subrecords, importe, registro_open, Lotes};
use super::vault::{Scratch, Stored};
use super::xml::Writer;
use super::ExportError;
use contracts::exports::{ExportPeriod, PeriodKind};
use contracts::PlayerId;
use rust_decimal::Decimal;
use std::collections::{BTreeMap, BTreeSet};

/// Session registros per `Lote` (§4.1.3: a batch at 500).
const PER_LOTE: usize = 500;

/// The largest file of a day's pack (§4.3: fragments past 1 GB).
pub const PACK_FRAGMENT: u64 = 1 << 30;

type Time = chrono::DateTime<chrono::Utc>;

fn player_hash(player: &PlayerId) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(player.as_str().as_bytes()))[..16].to_owned()
}

/// The registro id of a session's part: deterministic, so a correction names it without
/// looking it up.
pub fn part_id(player: &PlayerId, bucket: &Bucket) -> String {
    let (session, part) = (bucket.session.format("%Y%m%d%H%M%S"), bucket.part.format("%Y%m%d%H%M"));
    format!("JUC-SES-{}-{session}-P{part}", player_hash(player))
}

/// The registro id of the correction of a part made in the batch of `period`.
fn correction_id(player: &PlayerId, bucket: &Bucket, period: &ExportPeriod) -> String {
    format!("{}-R{}", part_id(player, bucket), period.start.format("%Y%m%d%H%M"))
}

fn closing_id(live: &Live) -> String {
    format!("JUC-SES-{}-{}-F", player_hash(&live.player), live.started.format("%Y%m%d%H%M%S"))
}

/// The registro an event of the batch of `period` went into: its part's, or (`late`) the
/// correction of its part.
pub fn index_ref(key: &SessionKey, late: bool, period: &ExportPeriod) -> String {
    if late {
        correction_id(&key.0, &key.2, period)
    } else {
        part_id(&key.0, &key.2)
    }
}

/// The parts a batch corrects, by their registro ids (the manifest's `corrections`).
pub fn corrections(books: &Books) -> Vec<String> {
    let parts: BTreeSet<String> = books.corrected.iter().map(|k| part_id(&k.0, &k.2)).collect();
    parts.into_iter().collect()
}

/// Whether a part's session had ended when its batch was built: nothing played for [`IDLE`]
/// by the end of the part's quarter.
fn part_ended(bucket: &Bucket, last: Time) -> bool {
    last + IDLE <= bucket.part + super::QUARTER_HOUR
}

/// Sessions (one per game) grouped by part: `(player, bucket)`.
fn by_part<'a>(sessions: impl Iterator<Item = &'a Session>) -> BTreeMap<(PlayerId, Bucket), Vec<&'a Session>> {
    let mut parts: BTreeMap<(PlayerId, Bucket), Vec<&'a Session>> = BTreeMap::new();
    for s in sessions {
        parts.entry((s.player.clone(), s.bucket)).or_default().push(s);
    }
    parts
}

/// One game type's block: its games' figures added up.
/// One game type's play in a registro: its games (their ids, at most 200 characters) and figures.
struct Play {
    games: String,
    first: Time,
    last: Time,
    stakes: Decimal,
    returned: Decimal,
    wins: Decimal,
    rounds: u64,
}

impl Play {
    /// The games of one type in a part, added up.
    fn of(games: &[&Session]) -> Play {
        let ids: BTreeSet<&str> = games.iter().map(|s| s.game_id.as_str()).collect();
        let sum = |f: fn(&Session) -> Decimal| games.iter().map(|s| f(s)).sum::<Decimal>();
        Play {
            games: ids.into_iter().collect::<Vec<_>>().join(",").chars().take(200).collect(),
            first: games.iter().map(|s| s.first).min().expect("a block has games"),
            last: games.iter().map(|s| s.last).max().expect("a block has games"),
            stakes: sum(|s| s.stakes),
            returned: sum(|s| s.returned),
            wins: sum(|s| s.wins),
            rounds: games.iter().map(|s| s.rounds).sum(),
        }
    }

    /// Nothing played: a session's ending, at its last play of `game_id`.
    fn none(game_id: &str, at: Time) -> Play {
        let zero = Decimal::ZERO;
        let games = game_id.chars().take(200).collect();
        Play { games, first: at, last: at, stakes: zero, returned: zero, wins: zero, rounds: 0 }
    }
}

/// One game type's `Juego` block.
fn juego(w: &mut Writer, kind: &str, play: &Play, currency: &str) {
    // `JuegoId`: "one identifier per game type" (the XSD); the games themselves are in the desc.
    w.open("Juego")
        .leaf("JuegoId", kind)
        .leaf("JuegoDesc", &play.games)
        .leaf("TipoJuego", kind)
        .leaf("FechaInicio", &dtz(play.first))
        .leaf("FechaFin", &dtz(play.last));
    importe(w, "Participacion", -play.stakes, currency);
    importe(w, "ParticipacionDevolucion", play.returned, currency);
    importe(w, "Premios", play.wins, currency);
    w.open("Botes");
    importe(w, "Total", Decimal::ZERO, currency);
    w.close();
    variants(w, kind, &play.games);
    w.leaf("PartidasJugadas", &play.rounds.to_string()).close();
}

/// What the BOE (§4.5.6) asks of some game types after `Botes`: `VarianteComercial` (POC, AZA,
/// BLJ, RLT: the games as the operator offers them, its ids) and `JuegoEnVivo` (RLT: the ids say a
/// live table). `Variante` (POC, BLJ, RLT: French or American roulette...) is not recorded by the
/// platform: left out, never invented.
fn variants(w: &mut Writer, kind: &str, games: &str) {
    if matches!(kind, "POC" | "AZA" | "BLJ" | "RLT") {
        w.leaf("VarianteComercial", games);
    }
    if kind == "RLT" {
        w.leaf("JuegoEnVivo", if games.to_ascii_lowercase().contains("live") { "S" } else { "N" });
    }
}

/// The player's block: the session, when this registro's play began and ended, and whether it is
/// the session's first report (`new`) and its whole (`complete`).
struct Jugador<'a> {
    player: &'a PlayerId,
    started: Time,
    first: Time,
    last: Time,
    new: bool,
    complete: bool,
}

impl Jugador<'_> {
    fn write(&self, w: &mut Writer) {
        let yn = |b: bool| if b { "S" } else { "N" };
        w.open("Jugador").leaf("JugadorId", self.player.as_str()).open("Sesion");
        w.leaf("SesionId", &format!("{}-{}", self.player, self.started.format("%Y%m%d%H%M%S")))
            .leaf("FechaInicioSesion", &dtz(self.started))
            .leaf("FechaFinSesion", &dtz(self.last))
            .leaf("FechaInicioPrimerJuego", &dtz(self.first))
            .leaf("FechaFinUltimoJuego", &dtz(self.last));
        // The platform keeps no session planning, IP or device with a game session: written as
        // none and unknown, never invented. A session ends when the player stops playing.
        w.open("PlanificacionSesion")
            .leaf("DuracionLimite", "000000")
            .leaf("GastoLimite", "0")
            .leaf("PeriodoExclusion", "N")
            .close()
            .leaf("SesionCompleta", yn(self.complete))
            .leaf("SesionNueva", yn(self.new))
            .leaf("MotivoFinSesion", "Usuario")
            .close()
            .leaf("IP", "unknown")
            .leaf("Dispositivo", "OT")
            .leaf("IdDispositivo", "unknown")
            .close();
    }
}

/// A session's part as a `RegistroOtrosJuegos` (`games`: its sessions, one per game);
/// `correction` (made at that time, in that period's batch) replaces the part's registro.
fn part_registro(games: &[&Session], correction: Option<(Time, &ExportPeriod)>) -> String {
    let one = games[0];
    let (player, bucket, currency) = (&one.player, one.bucket, one.currency.as_str());
    let first = games.iter().map(|s| s.first).min().expect("a part has games");
    let last = games.iter().map(|s| s.last).max().expect("a part has games");
    let id = part_id(player, &bucket);
    // The part's own time: what a correction names as `RegistroFecha`.
    let fecha = d14(last);
    let mut w = Writer::new();
    match correction {
        Some((at, period)) => {
            registro_open(&mut w, "RegistroOtrosJuegos", &correction_id(player, &bucket, period), 1, 1, &d14(at));
            w.open("Rectificacion").leaf("RegistroId", &id).leaf("RegistroFecha", &fecha).close();
        }
        None => registro_open(&mut w, "RegistroOtrosJuegos", &id, 1, 1, &fecha),
    }
    w.close();
    let mut by_type: BTreeMap<&'static str, Vec<&Session>> = BTreeMap::new();
    for s in games {
        by_type.entry(game_type(&s.game_id)).or_default().push(s);
    }
    for (kind, games) in &by_type {
        juego(&mut w, kind, &Play::of(games), currency);
    }
    // A correction re-files a part already sent: never a new session.
    let new = bucket.session >= bucket.part && correction.is_none();
    let complete = bucket.session >= bucket.part && part_ended(&bucket, last);
    Jugador { player, started: bucket.session, first, last, new, complete }.write(&mut w);
    w.close();
    w.out
}

/// The closing registro of a session that ended in a quarter it did not play in: nothing played,
/// its end told.
fn closing_registro(live: &Live) -> String {
    let mut w = Writer::new();
    registro_open(&mut w, "RegistroOtrosJuegos", &closing_id(live), 1, 1, &d14(live.ends()));
    w.close();
    juego(&mut w, game_type(&live.game_id), &Play::none(&live.game_id, live.last), &live.currency);
    let (player, started, last) = (&live.player, live.started, live.last);
    Jugador { player, started, first: last, last, new: false, complete: false }.write(&mut w);
    w.close();
    w.out
}

/// Writes the batch of a quarter of an hour: its parts, the corrections of earlier parts, the
/// closings of sessions ended in it.
pub fn write_quarter(lotes: &mut Lotes<'_, '_>, period: &ExportPeriod, books: &Books) -> Result<(), ExportError> {
    if period.kind != PeriodKind::QuarterHour {
        return Err(ExportError::WrongPeriod {
            kind: "JUC".into(),
            expected: "a quarter of an hour (YYYY-MM-DDTHH:MM), or a day (YYYY-MM-DD) to pack its quarters",
        });
    }
    let built_at = lotes.built_at;
    let parts = by_part(books.period_sessions());
    let corrected: BTreeSet<(PlayerId, Bucket)> = books.corrected.iter().map(|k| (k.0.clone(), k.2)).collect();
    let corrected = by_part(books.sessions.values().filter(|s| corrected.contains(&(s.player.clone(), s.bucket))));
    let registros = parts
        .values()
        .map(|games| part_registro(games, None))
        .chain(corrected.values().map(|games| part_registro(games, Some((built_at, period)))))
        .chain(books.endings().into_iter().map(closing_registro));
    let op = lotes.dgoj.operator.to_owned();
    let wh = lotes.dgoj.warehouse.to_owned();
    let folder = format!("CNJ/{op}/JU/{}/SES", period.start.format("%Y%m%d"));
    let stamp = d14(period.end - chrono::Duration::seconds(1));
    let base = format!("JUC-SES-{}", period.start.format("%Y%m%d%H%M"));
    file_subrecords(lotes, registros, PER_LOTE, &base, &folder, |lote| {
        format!("{op}_{wh}_JU_JUC_SES_{stamp}_{lote}.zip")
    })
}

/// Where a day's pack is filed.
fn pack_name(operator: &str, warehouse: &str, day: chrono::NaiveDate) -> String {
    format!("CNJ/{operator}/JU/Anteriores/{operator}_{warehouse}_JU_DIARIO_{}.zip", day.format("%Y%m%d"))
}

/// Whether a file of an export is (a fragment of) a day's pack.
pub fn is_pack(name: &str) -> bool {
    name.contains("/JU/Anteriores/")
}

/// Writes the pack of `day` into `out`: every lote of its quarters' `batches`, under its path
/// from `<AAAAMMDD>` on; past `fragment` bytes, as fragments `.zip.001`, `.zip.002`...
pub fn pack(
    operator: &str,
    warehouse: &str,
    day: chrono::NaiveDate,
    batches: &[Stored],
    out: &mut Scratch,
    fragment: u64,
) -> Result<(), ExportError> {
    use std::io::{Read, Write};
    let zip_error = |e: zip::result::ZipError| ExportError::Zip(e.to_string());
    let name = pack_name(operator, warehouse, day);
    let path = out.path(&name)?;
    let io = |e: std::io::Error| ExportError::io(&path, e);
    let file = std::fs::File::create(&path).map_err(io)?;
    let mut zip = zip::ZipWriter::new(std::io::BufWriter::new(file));
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored).large_file(true);
    let filed_under = format!("CNJ/{operator}/JU/");
    let mut records = 0;
    for batch in batches {
        for f in batch.manifest.files.iter().filter(|f| f.name.ends_with(".zip")) {
            let entry = f.name.strip_prefix(&filed_under).unwrap_or(&f.name);
            zip.start_file(entry, options).map_err(zip_error)?;
            let from = batch.dir.join(&f.name);
            let mut lote = std::fs::File::open(&from).map_err(|e| ExportError::io(&from, e))?;
            std::io::copy(&mut lote, &mut zip).map_err(io)?;
            records += f.records;
        }
    }
    let file = zip.finish().map_err(zip_error)?.into_inner().map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(io)?;
    let size = file.metadata().map_err(io)?.len();
    if size <= fragment {
        out.add(&name, records);
        return Ok(());
    }
    let mut whole = std::fs::File::open(&path).map_err(io)?;
    for n in 1..=size.div_ceil(fragment) {
        let piece_name = format!("{name}.{n:03}");
        let piece_path = out.path(&piece_name)?;
        let mut piece = std::fs::File::create(&piece_path).map_err(|e| ExportError::io(&piece_path, e))?;
        std::io::copy(&mut (&mut whole).take(fragment), &mut piece).map_err(io)?;
        piece.flush().and_then(|()| piece.sync_all()).map_err(|e| ExportError::io(&piece_path, e))?;
        // The records are counted once, with the first fragment.
        out.add(&piece_name, if n == 1 { records } else { 0 });
    }
    std::fs::remove_file(&path).map_err(io)
}

/// The lotes a pack holds (`files`: its file or fragments, in order, with their bytes): each
/// entry's path and bytes.
pub fn unpack(files: &[Vec<u8>]) -> Result<Vec<(String, Vec<u8>)>, String> {
    use std::io::Read;
    let bytes: Vec<u8> = files.concat();
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|e| e.to_string())?;
    let mut lotes = Vec::with_capacity(archive.len());
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(|e| e.to_string())?;
        let name = entry.name().map_err(|e| e.to_string())?.into_owned();
        if entry.encrypted() || entry.compression() != zip::CompressionMethod::Stored {
            return Err(format!("{name}: a pack's entries are neither compressed nor encrypted (§4.3)"));
        }
        // The header's size is not trusted for the allocation.
        let mut lote = Vec::with_capacity(entry.size().min(64 << 20) as usize);
        entry.read_to_end(&mut lote).map_err(|e| e.to_string())?;
        lotes.push((name, lote));
    }
    Ok(lotes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pack past its fragment size is cut in numbered fragments that read back as the pack.
    #[test]
    fn a_pack_past_its_size_is_cut_in_fragments_that_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let vault = super::super::vault::Vault::new(dir.path());
        let mut batch = vault.scratch("batch").unwrap();
        let lote = |n: u8| vec![n; 3000];
        for n in 1..=3u8 {
            batch.write(&format!("CNJ/OP01/JU/20261130/SES/lote-{n}.zip"), &lote(n), 2).unwrap();
        }
        let stored = Stored {
            manifest: serde_json::from_value(serde_json::json!({
                "manifestVersion": "2", "exportId": "b", "cell": "es-1", "jurisdiction": "ES", "type": "JUC",
                "format": "dgoj-sci",
                "period": { "kind": "quarterHour", "label": "2026-11-30T10:00",
                            "start": "2026-11-30T10:00:00Z", "end": "2026-11-30T10:15:00Z" },
                "files": batch.files.iter().map(|(name, records)| serde_json::json!({
                    "name": name, "sha256": "", "bytes": 3000, "records": records })).collect::<Vec<_>>(),
                "recordCount": 6, "eventCount": 0, "totals": [],
                "chain": { "firstSeq": 1, "lastSeq": 0, "headHash": "" }, "merkleRoot": "",
                "corrections": [], "policyVersion": "1", "generator": "test",
                "builtAt": "2026-11-30T10:15:00Z", "publicKey": ""
            }))
            .unwrap(),
            signature: String::new(),
            dir: dir.path().join("exports/.building-batch"),
        };
        let mut out = vault.scratch("pack").unwrap();
        let day = chrono::NaiveDate::from_ymd_opt(2026, 11, 30).unwrap();
        pack("OP01", "ALM01", day, std::slice::from_ref(&stored), &mut out, 4096).unwrap();
        let names: Vec<&str> = out.files.iter().map(|(n, _)| n.as_str()).collect();
        let base = "CNJ/OP01/JU/Anteriores/OP01_ALM01_JU_DIARIO_20261130.zip";
        assert_eq!(names, [format!("{base}.001"), format!("{base}.002"), format!("{base}.003")]);
        assert_eq!(out.record_count(), 6);
        let fragments: Vec<Vec<u8>> =
            names.iter().map(|n| std::fs::read(dir.path().join("exports/.building-pack").join(n)).unwrap()).collect();
        assert!(fragments.iter().all(|f| f.len() <= 4096));
        let lotes = unpack(&fragments).unwrap();
        let entries: Vec<&str> = lotes.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(entries, ["20261130/SES/lote-1.zip", "20261130/SES/lote-2.zip", "20261130/SES/lote-3.zip"]);
        assert_eq!(lotes[1].1, lote(2));
    }
}
