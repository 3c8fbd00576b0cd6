//! The player register as of a period's end, for the regulators' player records (Spain's RUD and
//! RUT): who registered and when, their identity verification, the limits in force and every
//! change to them, their exclusions and the states they went through. Read from the event log
//! (registrations and responsible-gambling changes move no money, so they are not in the audit
//! chain), with each player's personal data from the home cell's profiles. Memory grows with the
//! players, never with the rounds.

use super::ExportError;
use crate::store::{Store, StoreError};
use chrono::{DateTime, Utc};
use contracts::events::EventRecord;
use contracts::exports::ExportPeriod;
use contracts::limits::LimitKind;
use contracts::players::Player;
use contracts::region::LimitPeriod;
use contracts::PlayerId;
use rust_decimal::Decimal;
use std::collections::BTreeMap;

/// Where a player stands, in the DGOJ's terms (BOE-A-2024-12639 §3.4.8.2), with the platform's
/// own name for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Registered; identity verified, or not asked for (no KYC vendor).
    Active,
    /// Waiting for the KYC vendor's verification.
    PendingVerification,
    /// The KYC vendor could not verify the identity: suspended, with the vendor's reason.
    VerificationFailed(String),
    /// The national self-exclusion register lists the player (RGIAJ: a subjective prohibition).
    RegisterExcluded,
    /// The player excluded themselves here (a self-exclusion or a time-out), until a date.
    SelfExcluded,
}

impl State {
    /// The DGOJ's `EstadoCNJ`.
    pub fn cnj(&self) -> &'static str {
        match self {
            State::Active => "A",
            State::PendingVerification => "PV",
            State::VerificationFailed(_) => "S",
            State::RegisterExcluded => "PR",
            State::SelfExcluded => "AE",
        }
    }

    /// The platform's own name (`EstadoOperador`).
    pub fn operator_name(&self) -> &'static str {
        match self {
            State::Active => "active",
            State::PendingVerification => "pendingVerification",
            State::VerificationFailed(_) => "verificationFailed",
            State::RegisterExcluded => "registerExcluded",
            State::SelfExcluded => "selfExcluded",
        }
    }
}

/// A limit as the player asked for it: `amount` `None` removes it.
#[derive(Debug, Clone, PartialEq)]
pub struct LimitLine {
    pub kind: LimitKind,
    pub period: LimitPeriod,
    pub amount: Option<Decimal>,
    /// When it binds (an increase waits for the cooling-off period).
    pub effective: DateTime<Utc>,
    pub requested: DateTime<Utc>,
    /// A region default (the player set none), not a request of theirs.
    pub default: bool,
}

/// An exclusion the player asked for, from `start` to `until`.
#[derive(Debug, Clone, PartialEq)]
pub struct Exclusion {
    pub start: DateTime<Utc>,
    pub until: DateTime<Utc>,
}

/// One player's register entry.
#[derive(Debug, Clone)]
pub struct Entry {
    pub player: Player,
    pub verified_at: Option<DateTime<Utc>>,
    /// Every limit line up to the period's end, in the order asked.
    pub limits: Vec<LimitLine>,
    pub exclusions: Vec<Exclusion>,
    /// Each change of state up to the period's end, in time order (the first at registration).
    pub states: Vec<(DateTime<Utc>, State)>,
    /// Something of the register changed within the period (registration included).
    pub changed: bool,
}

impl Entry {
    pub fn registered_in(&self, period: &ExportPeriod) -> bool {
        within(period, self.player.registered_at)
    }

    /// The state at the period's end, and since when.
    pub fn state(&self) -> &(DateTime<Utc>, State) {
        self.states.last().expect("a state from registration on")
    }

    /// The states the player went through within the period, or the current one when none
    /// changed (BOE: "si no hay cambios reportar el estado actual").
    pub fn history(&self, period: &ExportPeriod) -> Vec<&(DateTime<Utc>, State)> {
        let changed: Vec<_> = self.states.iter().filter(|(at, _)| within(period, *at)).collect();
        if changed.is_empty() {
            vec![self.state()]
        } else {
            changed
        }
    }

    /// What to report of the limits: the one in force at the period's end for each kind and
    /// period, and every change asked within it; a region default stands where the player set
    /// none.
    pub fn limits_to_report(&self, period: &ExportPeriod, region: &contracts::region::RegionConfig) -> Vec<LimitLine> {
        let end = period.end;
        let mut keys: Vec<(LimitKind, LimitPeriod)> = self.limits.iter().map(|l| (l.kind, l.period)).collect();
        let defaults = region.deposit_limits.as_ref().map(|d| d.defaults.clone()).unwrap_or_default();
        keys.extend(defaults.iter().map(|(p, _)| (LimitKind::Deposit, *p)));
        keys.sort();
        keys.dedup();
        let mut lines = Vec::new();
        for (kind, limit_period) in keys {
            let of_key: Vec<&LimitLine> =
                self.limits.iter().filter(|l| (l.kind, l.period) == (kind, limit_period)).collect();
            let in_force = of_key.iter().rev().find(|l| l.effective < end).copied().cloned().or_else(|| {
                let (_, money) = defaults.iter().find(|(p, _)| *p == limit_period && kind == LimitKind::Deposit)?;
                let at = self.player.registered_at;
                Some(LimitLine {
                    kind,
                    period: limit_period,
                    amount: Some(money.amount()),
                    effective: at,
                    requested: at,
                    default: true,
                })
            });
            let mut reported: Vec<LimitLine> =
                of_key.into_iter().filter(|l| within(period, l.requested)).cloned().collect();
            if let Some(line) = in_force.filter(|l| !reported.contains(l)) {
                reported.insert(0, line);
            }
            lines.extend(reported);
        }
        lines
    }

    /// The exclusions in force at some time within the period, or asked within it.
    pub fn exclusions_to_report(&self, period: &ExportPeriod) -> impl Iterator<Item = &Exclusion> {
        let (start, end) = (period.start, period.end);
        self.exclusions.iter().filter(move |e| e.start < end && e.until > start)
    }
}

fn within(period: &ExportPeriod, at: DateTime<Utc>) -> bool {
    at >= period.start && at < period.end
}

/// The register of every player registered before a period's end.
#[derive(Debug, Default)]
pub struct Register {
    pub players: BTreeMap<PlayerId, Entry>,
}

impl Register {
    /// Reads the event log up to `period`'s end, a page at a time.
    pub fn read(store: &dyn Store, period: &ExportPeriod) -> Result<Register, ExportError> {
        let mut register = Register::default();
        let end = period.end;
        each_event_before(store, end, |record| register.fold(record, period))?;
        // A self-exclusion or time-out that ran out before the period's end: back to the state
        // before it.
        for entry in register.players.values_mut() {
            let lapsed: Vec<DateTime<Utc>> = entry.exclusions.iter().map(|e| e.until).filter(|u| *u < end).collect();
            for until in lapsed {
                let covered = entry.exclusions.iter().any(|e| e.start <= until && e.until > until);
                let before = entry.states.iter().rev().find(|(at, s)| *at <= until && *s != State::SelfExcluded);
                if let (false, Some((_, state))) = (covered, before) {
                    let state = state.clone();
                    let at = entry.states.partition_point(|(at, _)| *at <= until);
                    entry.states.insert(at, (until, state));
                    entry.changed |= within(period, until);
                }
            }
        }
        Ok(register)
    }

    fn fold(&mut self, record: &EventRecord, period: &ExportPeriod) -> Result<(), ExportError> {
        let (name, at) = (record.envelope.event.as_str(), record.envelope.ts);
        let payload = &record.envelope.payload;
        let parse = |e: serde_json::Error| {
            ExportError::Store(StoreError::Corrupt { key: format!("event {}", record.envelope.id), why: e.to_string() })
        };
        if name == "player.registered" {
            let event: contracts::events::PlayerRegistered = serde_json::from_value(payload.clone()).map_err(parse)?;
            let entry = Entry {
                states: vec![(at, State::Active)],
                player: event.player,
                verified_at: None,
                limits: Vec::new(),
                exclusions: Vec::new(),
                changed: within(period, at),
            };
            self.players.insert(entry.player.player_id.clone(), entry);
            return Ok(());
        }
        let Some(player) = payload.get("playerId").and_then(|p| p.as_str()) else { return Ok(()) };
        let Some(entry) = PlayerId::new(player).ok().and_then(|p| self.players.get_mut(&p)) else { return Ok(()) };
        let moved = match name {
            "kyc.requested" => set_state(entry, at, State::PendingVerification),
            "kyc.verified" => {
                entry.verified_at.get_or_insert(at);
                set_state(entry, at, State::Active)
            }
            "kyc.failed" => {
                let event: contracts::events::KycFailed = serde_json::from_value(payload.clone()).map_err(parse)?;
                set_state(entry, at, State::VerificationFailed(event.reason))
            }
            "self_exclusion.checked" => {
                let excluded = payload.get("answer").and_then(|a| a.as_str()) == Some("excluded");
                excluded && set_state(entry, at, State::RegisterExcluded)
            }
            "rg.limit_set" | "rg.limit_pending" => {
                let event: contracts::events::RgLimitPending = match name {
                    "rg.limit_set" => {
                        let set: contracts::events::RgLimitSet =
                            serde_json::from_value(payload.clone()).map_err(parse)?;
                        contracts::events::RgLimitPending {
                            player_id: set.player_id,
                            kind: set.kind,
                            period: set.period,
                            amount: set.amount,
                            effective_at: at,
                        }
                    }
                    _ => serde_json::from_value(payload.clone()).map_err(parse)?,
                };
                entry.limits.push(LimitLine {
                    kind: event.kind,
                    period: event.period,
                    amount: event.amount.map(|a| a.0),
                    effective: event.effective_at,
                    requested: at,
                    default: false,
                });
                true
            }
            "rg.self_exclusion_started" | "rg.timeout_started" => {
                let until = payload
                    .get("until")
                    .cloned()
                    .map(serde_json::from_value::<DateTime<Utc>>)
                    .transpose()
                    .map_err(parse)?
                    .unwrap_or(at);
                entry.exclusions.push(Exclusion { start: at, until });
                set_state(entry, at, State::SelfExcluded);
                true
            }
            _ => false,
        };
        entry.changed |= moved && within(period, at);
        Ok(())
    }
}

/// Moves `entry` to `state` at `at`: whether it changed.
fn set_state(entry: &mut Entry, at: DateTime<Utc>, state: State) -> bool {
    if entry.states.last().is_some_and(|(_, s)| *s == state) {
        return false;
    }
    // A state that held for no time (registered, then at once waiting for verification) is
    // replaced, not reported.
    if entry.states.last().is_some_and(|(since, _)| *since == at) {
        entry.states.pop();
    }
    entry.states.push((at, state));
    true
}

/// Calls `f` with each event of the log stamped before `end`, in log order, a page at a time.
pub fn each_event_before(
    store: &dyn Store,
    end: DateTime<Utc>,
    mut f: impl FnMut(&EventRecord) -> Result<(), ExportError>,
) -> Result<(), ExportError> {
    let mut after: Option<String> = None;
    loop {
        let from = crate::events::PageFrom { after: after.as_deref(), ..Default::default() };
        let page = crate::events::read_page(store, from, 1000)
            .map_err(|e| ExportError::Store(StoreError::Unavailable(e.to_string())))?;
        let Some(last) = page.events.last() else { return Ok(()) };
        after = Some(last.cursor.clone());
        for record in page.events.iter().filter(|r| r.envelope.ts < end) {
            f(record)?;
        }
    }
}
