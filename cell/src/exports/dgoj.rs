//! Spain's dialect: the DGOJ's monitoring data model v3.3 (BOE-A-2024-12639), validated against
//! `DGOJ_Monitorizacion_3.3.xsd`. Built here: RUD and RUT (the player register, in
//! [`super::rud`]), CJD and CJT (gaming accounts), JUC (game sessions in real time, in
//! [`super::juc`]) and OPT (operator totals per game type). Each `Lote` holds one registro's
//! sub-records (at most 10; JUC, up to 500 session registros), is signed ([`super::xades`]),
//! zipped with WinZip AES-256 as `enveloped.xml`, and named and filed as §4.2 and §4.4 say.

use super::books::{game_type, Books, Movements};
use super::vault::Scratch;
use super::xml::{attribute, Writer};
use super::ExportError;
use contracts::exports::{ExportPeriod, PeriodKind};
use rust_decimal::Decimal;
use std::collections::BTreeMap;

const NS: &str = "http://cnjuego.gob.es/sci/v3.3.xsd";
const XSI: &str = "http://www.w3.org/2001/XMLSchema-instance";
/// Players per CJD sub-record (BOE: split after 1,000).
pub(super) const PLAYERS_PER_SUBRECORD: usize = 1000;
/// Sub-records per `Lote` (BOE §4.1.3).
pub(super) const SUBRECORDS_PER_LOTE: usize = 10;

/// The record types this dialect builds, by the regulator's names.
pub const TYPES: [&str; 6] = ["RUD", "RUT", "CJD", "CJT", "JUC", "OPT"];

/// One build's DGOJ context: the operator's identities (`[exports]` in the region file), its
/// signer and zip password, when it is built and which build of the export it is.
pub struct Dgoj<'a> {
    pub operator: &'a str,
    pub warehouse: &'a str,
    pub signer: &'a super::xades::Signer,
    pub zip_password: &'a str,
    pub built_at: chrono::DateTime<chrono::Utc>,
    /// Makes each `LoteId` unique among an export's rebuilds.
    pub build: &'a str,
}

/// An amount as `cantidad`: two decimals, or `0`.
pub(super) fn cant(d: Decimal) -> String {
    if d.is_zero() {
        "0".into()
    } else {
        format!("{:.2}", d.round_dp(2))
    }
}

/// `AAAAMMDDHHMMSS` in UTC (no zone: Cabecera/Fecha and RegistroFecha take none).
pub(super) fn d14(at: chrono::DateTime<chrono::Utc>) -> String {
    at.format("%Y%m%d%H%M%S").to_string()
}

/// `AAAAMMDDHHMMSS+0000`.
pub(super) fn dtz(at: chrono::DateTime<chrono::Utc>) -> String {
    at.format("%Y%m%d%H%M%S+0000").to_string()
}

/// `<tag><Linea><Cantidad>…</Cantidad><Unidad>…</Unidad></Linea></tag>`.
pub(super) fn importe(w: &mut Writer, tag: &'static str, amount: Decimal, currency: &str) {
    w.open(tag).open("Linea").leaf("Cantidad", &cant(amount)).leaf("Unidad", currency).close().close();
}

/// `{Total, Desglose*{TipoJuego, Importe}}`, signed by `sign`.
fn by_game_type(
    w: &mut Writer,
    tag: &'static str,
    parts: &BTreeMap<&'static str, Decimal>,
    sign: Decimal,
    currency: &str,
) {
    w.open(tag);
    importe(w, "Total", parts.values().sum::<Decimal>() * sign, currency);
    for (kind, amount) in parts {
        w.open("Desglose").leaf("TipoJuego", kind);
        importe(w, "Importe", *amount * sign, currency);
        w.close();
    }
    w.close();
}

fn zero_section(w: &mut Writer, tag: &'static str, currency: &str) {
    w.open(tag);
    importe(w, "Total", Decimal::ZERO, currency);
    w.close();
}

/// TipoMedioPago of a PSP or the back office (BOE Anexo I): 13 a card of unknown type, 3 a bank
/// transfer, 99 anything else.
fn payment_type(method: &str) -> (&'static str, Option<&'static str>) {
    match method {
        "card" => ("13", None),
        "bank" => ("3", None),
        _ => ("99", Some("back office")),
    }
}

/// Deposits or withdrawals (`sign` −1) of one player, with each operation. The platform keeps no
/// IP or device with a payment: they are written as unknown, never invented.
fn operations(w: &mut Writer, tag: &'static str, ops: &[super::books::Operation], sign: Decimal) {
    w.open(tag).leaf("Total", &cant(ops.iter().map(|o| o.amount).sum::<Decimal>() * sign));
    for op in ops {
        let (kind, other) = payment_type(&op.method);
        w.open("Operaciones")
            .leaf("Fecha", &dtz(op.at))
            .leaf("Importe", &cant(op.amount * sign))
            .leaf("MedioPago", &op.method)
            .leaf("TipoMedioPago", kind);
        if let Some(other) = other {
            w.leaf("OtroTipoEspecificar", other);
        }
        w.leaf("TitularidadVerificada", "S")
            .leaf("ResultadoOperacion", "OK")
            .leaf("IP", "unknown")
            .leaf("Dispositivo", "OT")
            .leaf("IdDispositivo", "unknown")
            .close();
    }
    w.close();
}

pub(super) fn period_code(period: &ExportPeriod) -> (&'static str, &'static str, String) {
    match period.kind {
        PeriodKind::Day => ("D", "Diaria", period.start.format("%Y%m%d").to_string()),
        _ => ("M", "Mensual", period.start.format("%Y%m").to_string()),
    }
}

/// The sub-records of one registro as `Lote`s, signed, zipped and filed.
pub(super) struct Lotes<'d, 'a> {
    pub(super) dgoj: &'d Dgoj<'a>,
    pub(super) built_at: chrono::DateTime<chrono::Utc>,
    out: &'d mut Scratch,
    /// Makes each `LoteId` unique among an export's rebuilds.
    build: &'d str,
}

impl Lotes<'_, '_> {
    /// Writes one `Lote` holding `registros` (each already written, canonical, indented by 2),
    /// under `folder` with the file name `name_for(lote_id)`.
    fn lote(
        &mut self,
        lote_id: &str,
        registros: &str,
        folder: &str,
        file_name: &str,
        count: u64,
    ) -> Result<(), ExportError> {
        let mut w = Writer::new();
        w.open_with("Lote", &format!(" xmlns=\"{NS}\""))
            .open("Cabecera")
            .leaf("OperadorId", self.dgoj.operator)
            .leaf("AlmacenId", self.dgoj.warehouse)
            .leaf("LoteId", lote_id)
            .leaf("Version", "3.3")
            .close();
        let before = format!("{}{registros}\n  ", w.out);
        let xml = self.dgoj.signer.sign(&before, "\n</Lote>", self.built_at).map_err(ExportError::Sign)?;
        let zip = zip_one("enveloped.xml", xml.as_bytes(), self.dgoj.zip_password)?;
        self.out.write(&format!("{folder}/{file_name}"), &zip, count)
    }

    fn lote_id(&self, base: &str, n: usize) -> String {
        format!("{base}-{}-{n:03}", self.build)
    }
}

/// The zip the DGOJ takes: one entry, Deflate, WinZip AES-256 with the agreed password.
fn zip_one(name: &str, bytes: &[u8], password: &str) -> Result<Vec<u8>, ExportError> {
    use std::io::Write;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .with_aes_encryption(zip::AesMode::Aes256, password);
    zip.start_file(name, options).map_err(|e| ExportError::Zip(e.to_string()))?;
    zip.write_all(bytes).map_err(|e| ExportError::Zip(e.to_string()))?;
    Ok(zip.finish().map_err(|e| ExportError::Zip(e.to_string()))?.into_inner())
}

/// A registro's header, indented inside a `Lote`.
pub(super) fn registro_open(w: &mut Writer, xsi_type: &str, id: &str, sub: usize, total: usize, fecha: &str) {
    w.open_with("Registro", &format!(" xmlns:xsi=\"{XSI}\" xsi:type=\"{}\"", attribute(xsi_type)))
        .open("Cabecera")
        .leaf("RegistroId", id)
        .leaf("SubregistroId", &sub.to_string())
        .leaf("SubregistroTotal", &total.to_string())
        .leaf("Fecha", fecha);
}

/// A periodic registro's header (RUD, CJD, CJT): its `Cabecera`, `Periodicidad` and `Periodo`.
pub(super) fn periodic_open(
    w: &mut Writer,
    xsi_type: &str,
    id: &str,
    (sub, total): (usize, usize),
    fecha: &str,
    period: &ExportPeriod,
) {
    let (dm, periodicidad, label) = period_code(period);
    registro_open(w, xsi_type, id, sub, total, fecha);
    w.close().leaf("Periodicidad", periodicidad).open("Periodo");
    w.leaf(if dm == "D" { "Dia" } else { "Mes" }, &label).close();
}

/// Writes the records of `kind` for `period` from `books` into `out`.
pub fn write(
    dgoj: &Dgoj<'_>,
    kind: &str,
    period: &ExportPeriod,
    books: &Books,
    registrants: Option<&super::rud::Registrants<'_>>,
    out: &mut Scratch,
) -> Result<(), ExportError> {
    if period.kind == PeriodKind::Quarter {
        return Err(ExportError::WrongPeriod { kind: kind.into(), expected: "a day or a month" });
    }
    let mut lotes = Lotes { dgoj, built_at: dgoj.built_at, out, build: dgoj.build };
    let register = || registrants.ok_or_else(|| ExportError::Register("not read".into()));
    match kind {
        "RUD" => super::rud::rud(&mut lotes, period, register()?),
        "RUT" => super::rud::rut(&mut lotes, period, register()?, books),
        "CJD" => cjd(&mut lotes, period, books),
        "CJT" => cjt(&mut lotes, period, books),
        "JUC" => super::juc::write_quarter(&mut lotes, period, books),
        "OPT" => opt(&mut lotes, period, books),
        other => Err(ExportError::UnknownType(other.to_owned())),
    }
}

/// The registro id of each type for a period, which the export's index names.
pub fn registro_id(kind: &str, period: &ExportPeriod) -> String {
    let (dm, _, label) = period_code(period);
    format!("{kind}-{dm}-{label}")
}

/// One writer per sub-record, so a `Lote` holds whole sub-records.
fn indent_registro(registro: &str) -> String {
    let mut s = String::with_capacity(registro.len() + registro.len() / 8);
    for line in registro.lines() {
        s.push_str("\n  ");
        s.push_str(line);
    }
    s
}

/// Groups sub-records (each a written registro, made when its `Lote` is written: one `Lote` is
/// in memory at a time) into `Lote`s of at most `per_lote`.
pub(super) fn file_subrecords(
    lotes: &mut Lotes<'_, '_>,
    subrecords: impl Iterator<Item = String>,
    per_lote: usize,
    lote_base: &str,
    folder: &str,
    file_name: impl Fn(&str) -> String,
) -> Result<(), ExportError> {
    let mut subrecords = subrecords.peekable();
    let mut n = 0;
    while subrecords.peek().is_some() {
        n += 1;
        let chunk: Vec<String> = subrecords.by_ref().take(per_lote.max(1)).collect();
        let lote_id = lotes.lote_id(lote_base, n);
        let body: String = chunk.iter().map(|r| indent_registro(r)).collect();
        let name = file_name(&lote_id);
        lotes.lote(&lote_id, &body, folder, &name, chunk.len() as u64)?;
    }
    Ok(())
}

fn cjd(lotes: &mut Lotes<'_, '_>, period: &ExportPeriod, books: &Books) -> Result<(), ExportError> {
    let (dm, _, label) = period_code(period);
    let id = registro_id("CJD", period);
    let accounts: Vec<_> = books.movements.iter().collect();
    let chunks: Vec<_> = accounts.chunks(PLAYERS_PER_SUBRECORD).collect();
    let total = chunks.len().max(1);
    let fecha = d14(lotes.built_at);
    let subrecords = (0..total).map(|n| {
        let mut w = Writer::new();
        periodic_open(&mut w, "RegistroCJD", &id, (n + 1, total), &fecha, period);
        for ((player, currency), m) in chunks.get(n).copied().unwrap_or_default() {
            w.open("Jugador").leaf("JugadorId", player.as_str());
            cjd_player(&mut w, m, currency, &format!("{player}-{currency}"));
            w.close();
        }
        w.close();
        w.out
    });
    let op = lotes.dgoj.operator.to_owned();
    let wh = lotes.dgoj.warehouse.to_owned();
    let folder = format!("CNJ/{op}/CJ/{}", if dm == "D" { "Diario" } else { "Mensual" });
    let lote_base = format!("CJD-{dm}-{label}");
    file_subrecords(lotes, subrecords, SUBRECORDS_PER_LOTE, &lote_base, &folder, |lote| {
        format!("{op}_{wh}_CJ_CJD_{dm}_{label}_{lote}.zip")
    })
}

/// One player's account over the period, signs from the player's side.
fn cjd_player(w: &mut Writer, m: &Movements, currency: &str, account: &str) {
    let minus = Decimal::NEGATIVE_ONE;
    importe(w, "SaldoInicial", m.opening, currency);
    operations(w, "Depositos", &m.deposits, Decimal::ONE);
    operations(w, "Retiradas", &m.withdrawals, minus);
    by_game_type(w, "Participacion", &m.stakes, minus, currency);
    by_game_type(w, "ParticipacionDevolucion", &m.stakes_returned, Decimal::ONE, currency);
    by_game_type(w, "Premios", &m.wins, Decimal::ONE, currency);
    for tag in ["AjustePremios", "Trans_IN", "Trans_OUT"] {
        zero_section(w, tag, currency);
    }
    w.open("Otros");
    importe(w, "Total", m.other, currency);
    if !m.other.is_zero() {
        w.open("Desglose").leaf("Concepto", "chargebacks, refunds and adjustments");
        importe(w, "Importe", m.other, currency);
        w.close();
    }
    w.close();
    importe(w, "SaldoFinal", m.closing(), currency);
    w.open("Cuentas").leaf("Cuenta", account);
    importe(w, "SaldoFinal", m.closing(), currency);
    w.close();
    zero_section(w, "Comision", currency);
    zero_section(w, "Bonos", currency);
}

fn cjt(lotes: &mut Lotes<'_, '_>, period: &ExportPeriod, books: &Books) -> Result<(), ExportError> {
    let (dm, _, label) = period_code(period);
    let id = registro_id("CJT", period);
    let fecha = d14(lotes.built_at);
    let mut w = Writer::new();
    periodic_open(&mut w, "RegistroCJT", &id, (1, 1), &fecha, period);
    // One currency per cell (the region's); the totals of every account in it.
    let currency = books.movements.keys().next().map_or("EUR", |(_, c)| c.as_str()).to_owned();
    let mut t = Movements::default();
    let mut by_method: BTreeMap<(bool, String), Decimal> = BTreeMap::new();
    for m in books.movements.values() {
        t.opening += m.opening;
        for (inward, ops) in [(true, &m.deposits), (false, &m.withdrawals)] {
            for op in ops {
                *by_method.entry((inward, op.method.clone())).or_default() += op.amount;
            }
        }
        t.deposits.extend(m.deposits.iter().cloned());
        t.withdrawals.extend(m.withdrawals.iter().cloned());
        for (into, from) in
            [(&mut t.stakes, &m.stakes), (&mut t.stakes_returned, &m.stakes_returned), (&mut t.wins, &m.wins)]
        {
            for (k, v) in from {
                *into.entry(k).or_default() += *v;
            }
        }
        t.other += m.other;
    }
    // Every account's balance, moved in the period or not: the closing one as the books end, the
    // opening one that less the period's movements.
    let closing = books.balances_total();
    let opening = closing - (t.closing() - t.opening);
    importe(&mut w, "SaldoInicial", opening, &currency);
    for (tag, inward, sign) in [("Depositos", true, Decimal::ONE), ("Retiradas", false, Decimal::NEGATIVE_ONE)] {
        let ops = if inward { &t.deposits } else { &t.withdrawals };
        w.open(tag).leaf("Total", &cant(ops.iter().map(|o| o.amount).sum::<Decimal>() * sign));
        for ((_, method), amount) in by_method.iter().filter(|((i, _), _)| *i == inward) {
            // The totals' breakdown has no place for what a `99` is (the operations say it).
            let (kind, _) = payment_type(method);
            w.open("Desglose").leaf("MedioPago", method).leaf("TipoMedioPago", kind);
            w.leaf("Importe", &cant(*amount * sign)).close();
        }
        w.close();
    }
    let minus = Decimal::NEGATIVE_ONE;
    by_game_type(&mut w, "Participacion", &t.stakes, minus, &currency);
    by_game_type(&mut w, "ParticipacionDevolucion", &t.stakes_returned, Decimal::ONE, &currency);
    by_game_type(&mut w, "Premios", &t.wins, Decimal::ONE, &currency);
    zero_section(&mut w, "AjustePremios", &currency);
    importe(&mut w, "Trans_IN", Decimal::ZERO, &currency);
    importe(&mut w, "Trans_OUT", Decimal::ZERO, &currency);
    w.open("Otros");
    importe(&mut w, "Total", t.other, &currency);
    w.close();
    importe(&mut w, "SaldoFinal", closing, &currency);
    zero_section(&mut w, "Comision", &currency);
    zero_section(&mut w, "Bonos", &currency);
    zero_section(&mut w, "PremiosEspecie", &currency);
    w.close();
    let op = lotes.dgoj.operator.to_owned();
    let wh = lotes.dgoj.warehouse.to_owned();
    let folder = format!("CNJ/{op}/CJ/{}", if dm == "D" { "Diario" } else { "Mensual" });
    let lote_base = format!("CJT-{dm}-{label}");
    file_subrecords(lotes, std::iter::once(w.out), SUBRECORDS_PER_LOTE, &lote_base, &folder, |lote| {
        format!("{op}_{wh}_CJ_CJT_{dm}_{label}_{lote}.zip")
    })
}

fn opt(lotes: &mut Lotes<'_, '_>, period: &ExportPeriod, books: &Books) -> Result<(), ExportError> {
    if period.kind != PeriodKind::Month {
        return Err(ExportError::WrongPeriod { kind: "OPT".into(), expected: "a month (YYYY-MM)" });
    }
    let label = period.start.format("%Y%m").to_string();
    let currency = books.movements.keys().next().map_or("EUR", |(_, c)| c.as_str()).to_owned();
    let by_type = books.by_game_type();
    let op = lotes.dgoj.operator.to_owned();
    let wh = lotes.dgoj.warehouse.to_owned();
    let fecha = d14(lotes.built_at);
    for (kind, (stakes, returned, wins)) in by_type {
        let id = format!("OPT-{kind}-M-{label}");
        let mut w = Writer::new();
        registro_open(&mut w, "RegistroOPT", &id, 1, 1, &fecha);
        w.close().leaf("Mes", &label).leaf("TipoJuego", kind);
        // The operator's side: stakes negative, what goes back to players positive; GGR is
        // negative when the operator gains.
        for (tag, amount) in [("Participacion", -stakes), ("ParticipacionDevolucion", returned), ("Premios", wins)] {
            w.open(tag);
            importe(&mut w, "Total", amount, &currency);
            w.open("Desglose").leaf("OperadorId", &op);
            importe(&mut w, "Importe", amount, &currency);
            w.close().close();
        }
        for tag in ["PremiosEspecie", "Botes", "AjustesRed", "Otros", "Comision"] {
            zero_section(&mut w, tag, &currency);
        }
        importe(&mut w, "GGR", -stakes + returned + wins, &currency);
        let offered = books.first_offered.get(kind).copied().unwrap_or(period.start.date_naive());
        w.leaf("FechaInicioOferta", &offered.format("%Y%m%d").to_string());
        w.close();
        let folder = format!("CNJ/{op}/OP/{kind}");
        let lote_base = format!("OPT-{kind}-M-{label}");
        file_subrecords(lotes, std::iter::once(w.out), 1, &lote_base, &folder, |lote| {
            format!("{op}_{wh}_OP_OPT_{kind}_M_{label}_{lote}.zip")
        })?;
    }
    Ok(())
}

/// The record each period event of `kind` feeds, for the export's index (`RegistroId`, or
/// `RegistroId/JugadorId` for per-player registros).
pub fn index_refs(kind: &str, period: &ExportPeriod, touched: &super::books::Touched) -> Vec<String> {
    match kind {
        "CJD" => touched.player.iter().map(|p| format!("{}/{p}", registro_id("CJD", period))).collect(),
        "CJT" => vec![registro_id("CJT", period)],
        "JUC" => touched.session.iter().map(|s| super::juc::index_ref(s, touched.late, period)).collect(),
        "OPT" => touched
            .session
            .iter()
            .map(|s| format!("OPT-{}-M-{}", game_type(&s.1), period.start.format("%Y%m")))
            .collect(),
        _ => Vec::new(),
    }
}
