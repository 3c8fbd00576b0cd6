//! Spain's player records (BOE-A-2024-12639 §3.4.1): RUD, the detailed register (a day's new and
//! changed players, or a month's every player), and RUT, its monthly totals. Written from the
//! [`Register`] and each player's profile; a player whose profile lacks what the DGOJ requires
//! stops the build, naming them, rather than filing a record the warehouse would refuse.

use super::books::Books;
use super::dgoj::{self, cant, d14, dtz, Lotes};
use super::register::{Entry, Register, State};
use super::xml::Writer;
use super::ExportError;
use contracts::exports::{ExportPeriod, PeriodKind};
use contracts::limits::LimitKind;
use contracts::players::{DocumentKind, PlayerProfile, Sex};
use contracts::region::LimitPeriod;
use std::collections::BTreeMap;

/// What a player record is built from: the register, and where each player's profile is.
pub struct Registrants<'a> {
    pub register: Register,
    pub store: &'a dyn crate::store::Store,
    pub region: &'a contracts::region::RegionConfig,
}

impl Registrants<'_> {
    /// A player's personal data, if they gave it, read in `tx`.
    fn profile(tx: &mut dyn crate::store::Transaction, player: &str) -> Result<Option<PlayerProfile>, ExportError> {
        let key = crate::domains::compliance::profile_key(player);
        let bytes = tx.get(&key)?;
        let profile = bytes.map(|b| rmp_serde::from_slice(&b)).transpose();
        Ok(profile.map_err(|e| crate::store::StoreError::corrupt(&key, e))?)
    }
}

fn incomplete(player: &str, what: &str) -> ExportError {
    ExportError::Register(format!("{player}: {what}, which the DGOJ's player register (RUD) requires"))
}

/// RUD: the day's new and changed players, or every player of the month. Written a sub-record
/// at a time: memory holds one `Lote`, whatever the number of players.
pub fn rud(lotes: &mut Lotes<'_, '_>, period: &ExportPeriod, registrants: &Registrants<'_>) -> Result<(), ExportError> {
    let (dm, _, label) = dgoj::period_code(period);
    let id = dgoj::registro_id("RUD", period);
    let included: Vec<&Entry> =
        registrants.register.players.values().filter(|e| period.kind != PeriodKind::Day || e.changed).collect();
    let chunks: Vec<&[&Entry]> = included.chunks(dgoj::PLAYERS_PER_SUBRECORD).collect();
    let total = chunks.len().max(1);
    let fecha = d14(lotes.built_at);
    let failed = std::cell::RefCell::new(None);
    let subrecords = (0..total).map(|n| {
        let mut w = Writer::new();
        dgoj::periodic_open(&mut w, "RegistroRUD", &id, (n + 1, total), &fecha, period);
        // One snapshot per sub-record's players, not one per player.
        let mut tx = match registrants.store.begin_snapshot_reads() {
            Ok(tx) => tx,
            Err(e) => {
                failed.borrow_mut().get_or_insert(e.into());
                return w.out;
            }
        };
        for entry in chunks.get(n).copied().unwrap_or_default() {
            let player = entry.player.player_id.as_str();
            let written = Registrants::profile(tx.as_mut(), player)
                .and_then(|p| p.ok_or_else(|| incomplete(player, "registered without a profile")))
                .and_then(|profile| jugador(&mut w, entry, &profile, period, registrants.region));
            if let Err(e) = written {
                failed.borrow_mut().get_or_insert(e);
            }
        }
        w.close();
        w.out
    });
    let (op, wh) = (lotes.dgoj.operator.to_owned(), lotes.dgoj.warehouse.to_owned());
    let folder = format!("CNJ/{op}/RU/{}", if dm == "D" { "Diario" } else { "Mensual" });
    let filed = dgoj::file_subrecords(
        lotes,
        subrecords,
        dgoj::SUBRECORDS_PER_LOTE,
        &format!("RUD-{dm}-{label}"),
        &folder,
        |lote| format!("{op}_{wh}_RU_RUD_{dm}_{label}_{lote}.zip"),
    );
    // A player the DGOJ would refuse fails the whole build (its scratch is never stored).
    match failed.into_inner() {
        Some(e) => Err(e),
        None => filed,
    }
}

/// One `Jugador` of a RUD.
fn jugador(
    w: &mut Writer,
    entry: &Entry,
    profile: &PlayerProfile,
    period: &ExportPeriod,
    region: &contracts::region::RegionConfig,
) -> Result<(), ExportError> {
    let p = &entry.player;
    let id = p.player_id.as_str();
    let alta = entry.registered_in(period);
    let document = profile.identity_document.as_ref().ok_or_else(|| incomplete(id, "no identity document"))?;
    let nationality = profile.nationality.as_ref().ok_or_else(|| incomplete(id, "no nationality"))?;
    let fiscal_region = profile.fiscal_region.as_deref().ok_or_else(|| incomplete(id, "no fiscal region"))?;
    let sex = profile.sex.ok_or_else(|| incomplete(id, "no sex"))?;
    w.open("Jugador")
        .leaf("JugadorId", id)
        .leaf("FechaActivacion", &d14(entry.verified_at.unwrap_or(p.registered_at)))
        .leaf(
            "CambiosEnDatos",
            if alta {
                "A"
            } else if entry.changed {
                "S"
            } else {
                "N"
            },
        )
        .leaf("RegionFiscal", fiscal_region);
    if p.country.as_str() == "ES" {
        w.open("Residente").leaf("Nacionalidad", nationality.as_str()).leaf("Documento", &document.number).close();
    } else {
        let kind = match document.kind {
            DocumentKind::Passport => "PA",
            DocumentKind::Dni | DocumentKind::Nie | DocumentKind::Cpr | DocumentKind::Personnummer => "ID",
        };
        w.open("NoResidente")
            .leaf("Nacionalidad", nationality.as_str())
            .leaf("PaisResidencia", p.country.as_str())
            .leaf("TipoDocumento", kind)
            .leaf("Documento", &document.number)
            .close();
    }
    // Spanish family names are two: the first surname, then the second.
    let (first, second) = match profile.family_name.trim().split_once(' ') {
        Some((a, b)) => (a, Some(b.trim())),
        None => (profile.family_name.trim(), None),
    };
    w.leaf("FechaNacimiento", &p.date_of_birth.format("%Y%m%d").to_string())
        .leaf("Login", id)
        .leaf("Nombre", &profile.given_name)
        .leaf("Apellido1", first);
    if let Some(second) = second {
        w.leaf("Apellido2", second);
    }
    // The platform verifies neither the e-mail address nor the phone number.
    w.leaf("Email", &profile.email)
        .leaf("EmailVerificado", "N")
        .leaf("Sexo", if sex == Sex::Female { "F" } else { "M" })
        .open("Domicilio")
        .leaf("Direccion", &profile.address.street)
        .leaf("Ciudad", &profile.address.city)
        .leaf("CP", &profile.address.postcode)
        .leaf("Pais", profile.address.country.as_str())
        .close()
        .leaf("Telefono", &profile.phone)
        .leaf("TelefonoVerificado", "N");
    let limits = entry.limits_to_report(period, region);
    if limits.is_empty() {
        return Err(incomplete(id, "no deposit limit (the region file sets no defaults)"));
    }
    for limit in limits {
        let kind = if limit.kind == LimitKind::Deposit { "Deposito" } else { "Gasto" };
        let every = match limit.period {
            LimitPeriod::Day => "Diario",
            LimitPeriod::Week => "Semanal",
            LimitPeriod::Month => "Mensual",
        };
        // A limit removed is reported as -1.
        let amount = limit.amount.map_or_else(|| "-1".to_owned(), cant);
        w.open("LimitesJugador")
            .leaf("TipoLimite", kind)
            .leaf("PeriodoLimite", every)
            .leaf("Cantidad", &amount)
            .leaf("UnidadLimite", "EUR")
            .leaf("FechaActivacionLimite", &dtz(limit.effective))
            .leaf("FechaSolicitudCambioLimite", &dtz(limit.requested))
            .close();
    }
    for exclusion in entry.exclusions_to_report(period) {
        let (amount, unit) = exclusion_length(exclusion.until - exclusion.start);
        w.open("Exclusion")
            .leaf("Cantidad", &amount.to_string())
            .leaf("Unidad", unit)
            .leaf("FechaActivacionExclusion", &dtz(exclusion.start))
            .leaf("Autocontinuacion", "N")
            .leaf("FechaSolicitudCambioExclusion", &dtz(exclusion.start))
            .close();
    }
    let (_, state) = entry.state();
    w.open("Estado").leaf("EstadoCNJ", state.cnj()).leaf("EstadoOperador", state.operator_name());
    if let State::VerificationFailed(reason) = state {
        w.open("Motivo")
            .leaf("MotivoSC", "Otros")
            .leaf("DescripcionSC", &format!("identity not verified by the KYC vendor: {reason}"))
            .close();
    }
    for (since, state) in entry.history(period) {
        w.open("Historico")
            .leaf("EstadoCNJ", state.cnj())
            .leaf("EstadoOperador", state.operator_name())
            .leaf("Desde", &dtz(*since))
            .close();
    }
    w.close();
    // The KYC vendor plays the Ministry's identity service (SVDI); no document is checked by hand.
    w.leaf("VSVDI", if entry.verified_at.is_some() { "S" } else { "N" });
    if let Some(at) = entry.verified_at {
        w.leaf("FVSVDI", &dtz(at));
    }
    w.leaf("VDocumental", "N");
    if alta {
        // The platform keeps no address or device with a registration: written as unknown, never
        // invented.
        w.leaf("IP", "unknown").leaf("Dispositivo", "OT").leaf("IdDispositivo", "unknown");
    }
    w.close();
    Ok(())
}

/// An exclusion's length in the largest whole unit the DGOJ takes (days, hours, else minutes,
/// rounded up).
fn exclusion_length(length: chrono::TimeDelta) -> (i64, &'static str) {
    let minutes = (length.num_seconds() + 59) / 60;
    match minutes {
        m if m % (24 * 60) == 0 => (m / (24 * 60), "DIA"),
        m if m % 60 == 0 => (m / 60, "HORA"),
        m => (m, "MINUTO"),
    }
}

/// RUT: the month's totals of the register; the active players are those who staked.
pub fn rut(
    lotes: &mut Lotes<'_, '_>,
    period: &ExportPeriod,
    registrants: &Registrants<'_>,
    books: &Books,
) -> Result<(), ExportError> {
    if period.kind != PeriodKind::Month {
        return Err(ExportError::WrongPeriod { kind: "RUT".into(), expected: "a month (YYYY-MM)" });
    }
    let label = period.start.format("%Y%m").to_string();
    let players = &registrants.register.players;
    let altas = players.values().filter(|e| e.registered_in(period)).count();
    let active: std::collections::BTreeSet<_> =
        books.movements.iter().filter(|(_, m)| !m.stakes.is_empty()).map(|((player, _), _)| player).collect();
    let mut by_state: BTreeMap<&'static str, usize> = BTreeMap::new();
    for entry in players.values() {
        *by_state.entry(entry.state().1.cnj()).or_default() += 1;
    }
    if by_state.is_empty() {
        by_state.insert(State::Active.cnj(), 0);
    }
    let mut w = Writer::new();
    dgoj::registro_open(&mut w, "RegistroRUT", &dgoj::registro_id("RUT", period), 1, 1, &d14(lotes.built_at));
    w.close()
        .leaf("Mes", &label)
        .leaf("NumeroJugadores", &players.len().to_string())
        .leaf("NumeroAltas", &altas.to_string())
        .leaf("NumeroBajas", "0")
        .leaf("NumeroActividad", &active.len().to_string())
        .leaf("NumeroTest", "0");
    for (state, count) in by_state {
        w.open("NumeroJugadoresPorEstado").leaf("EstadoCNJ", state).leaf("Numero", &count.to_string()).close();
    }
    w.close();
    let (op, wh) = (lotes.dgoj.operator.to_owned(), lotes.dgoj.warehouse.to_owned());
    dgoj::file_subrecords(
        lotes,
        std::iter::once(w.out),
        1,
        &format!("RUT-M-{label}"),
        &format!("CNJ/{op}/RU/Mensual"),
        |lote| format!("{op}_{wh}_RU_RUT_M_{label}_{lote}.zip"),
    )
}
