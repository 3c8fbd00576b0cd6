//! Compliance: who may play here, and how much. Player registration (age, residence and the
//! profile the region requires), the self-exclusion registers ([`registers`]), identity checks by
//! the KYC vendor ([`kyc`]), sanctions screening and AML cases, the stake cap, and
//! responsible-gambling limits ([`limits`]) as gates on the ledger. Every decision is logged.

mod keys;
pub mod kyc;
pub mod limits;
pub mod registers;

use crate::events::{self, EventContext};
use crate::idempotency::{Answer, IdempotencyKey, IdempotencyRecord};
use crate::ledger::{Gate, GateRefusal, GateState, GatedEntry, PostingKind};
use crate::players::age_on;
use crate::store::{transact, Store, StoreError};
use chrono::NaiveDate;
use contracts::events::PlayerRegistered;
use contracts::players::{Player, RegisterPlayerRequest};
use contracts::region::RegionConfig;
use contracts::Amount;
use contracts::CellCode;
use contracts::{Currency, PlayerId};
use std::sync::Arc;

/// Why a registration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ComplianceError {
    #[error("player is {age}; the {regulator} licence requires {minimum}")]
    Underage { age: u32, minimum: u8, regulator: String },
    #[error("residence {country} is not licensed by cell {cell}")]
    CountryNotLicensed { country: String, cell: String },
    #[error("player id {player} does not belong to this cell: ids registered here start with `{cell}-`")]
    WrongCell { player: String, prefix: String, cell: String },
    #[error("currency {currency} is not booked by cell {cell}")]
    CurrencyNotBooked { currency: String, cell: String },
    #[error("{0}")]
    Money(#[from] contracts::MoneyError),
    #[error("player {0} is already registered")]
    PlayerExists(String),
    #[error("date of birth is in the future")]
    BirthInFuture,
    #[error("X-Idempotency-Key was already used for a different request")]
    IdempotencyKeyReused,
    #[error("the {register} self-exclusion register says this player is excluded")]
    SelfExcluded { register: String },
    #[error("{0}; nothing was done: try again shortly")]
    RegisterUnavailable(String),
    #[error("{0}")]
    ProfileIncomplete(String),
    #[error("{0}; nothing was done: try again shortly")]
    ScreeningUnavailable(String),
    #[error("{0}; nothing was done: try again shortly")]
    KycUnavailable(String),
    /// The ledger's writer did not take what compliance asked of it.
    #[error("{message}")]
    Writer { code: CellCode, status: u16, message: String },
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

impl ComplianceError {
    pub fn code(&self) -> CellCode {
        match self {
            ComplianceError::Underage { .. } => CellCode::Underage,
            ComplianceError::CountryNotLicensed { .. } => CellCode::CountryNotLicensed,
            ComplianceError::WrongCell { .. } => CellCode::PlayerIdWrongCell,
            ComplianceError::CurrencyNotBooked { .. } => CellCode::CurrencyNotBooked,
            ComplianceError::Money(e) => CellCode::of_money(e),
            ComplianceError::PlayerExists(_) => CellCode::PlayerExists,
            ComplianceError::BirthInFuture => CellCode::DateOfBirthInvalid,
            ComplianceError::IdempotencyKeyReused => CellCode::IdempotencyKeyReused,
            ComplianceError::SelfExcluded { .. } => CellCode::SelfExcluded,
            ComplianceError::RegisterUnavailable(_) => CellCode::SelfExclusionCheckUnavailable,
            ComplianceError::ProfileIncomplete(_) => CellCode::ProfileIncomplete,
            ComplianceError::ScreeningUnavailable(_) => CellCode::ScreeningUnavailable,
            ComplianceError::KycUnavailable(_) => CellCode::KycUnavailable,
            ComplianceError::Writer { code, .. } => *code,
            ComplianceError::Store(e) => e.answer().0,
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            ComplianceError::Underage { .. } | ComplianceError::CountryNotLicensed { .. } => 422,
            ComplianceError::WrongCell { .. } | ComplianceError::CurrencyNotBooked { .. } => 422,
            ComplianceError::Money(_) | ComplianceError::BirthInFuture => 400,
            ComplianceError::PlayerExists(_) | ComplianceError::IdempotencyKeyReused => 409,
            ComplianceError::SelfExcluded { .. } => 403,
            ComplianceError::RegisterUnavailable(_) => 503,
            ComplianceError::ProfileIncomplete(_) => 400,
            ComplianceError::ScreeningUnavailable(_) | ComplianceError::KycUnavailable(_) => 503,
            ComplianceError::Writer { status, .. } => *status,
            ComplianceError::Store(e) => e.answer().1,
        }
    }
}

/// Where a player's personal data is kept (the regulators' player registers read it).
pub fn profile_key(player: &str) -> Vec<u8> {
    keys::profile(player)
}

/// The compliance domain of one cell.
#[derive(Clone)]
pub struct Compliance {
    store: Arc<dyn Store>,
    region: Arc<RegionConfig>,
    clock: Arc<dyn crate::clock::Clock>,
    /// Where the self-exclusion registers answer; `None`: not asked (development without the
    /// sandbox; the cell warns at start).
    registers: Option<registers::Registers>,
    /// The KYC vendor; `None`: no identity is checked (development; the cell warns at start).
    kyc: Option<kyc::KycVendor>,
    /// The sanctions list last downloaded, and when (kept a minute).
    sanctions: Arc<std::sync::Mutex<Option<KeptList>>>,
}

/// A downloaded sanctions list and when it came.
type KeptList = (std::time::Instant, Arc<registers::SanctionsList>);

/// A sanctions-list hit: the case it opens.
#[derive(Debug, Clone)]
pub struct SanctionsHit {
    pub rule: String,
    pub reason: String,
    /// The listed name matched, normalised: a player's case per entry is opened once.
    pub entry: String,
}

impl SanctionsHit {
    /// The case a hit opens: one per player and listed entry.
    pub fn case_id(&self, player: &PlayerId) -> String {
        format!("case-{player}-sanctions-{}", self.entry)
    }
}

/// How long a downloaded sanctions list is used before it is fetched again.
const SANCTIONS_LIST_TTL: std::time::Duration = std::time::Duration::from_secs(60);

/// Records one compliance decision about `player`, in the caller's transaction.
pub(crate) fn record_decision(
    tx: &mut dyn crate::store::Transaction,
    player: &PlayerId,
    decision: &contracts::limits::Decision,
) -> Result<(), StoreError> {
    let key = keys::decision(player.as_str(), decision.at.timestamp_micros(), rand::random::<u64>());
    tx.set(&key, &rmp_serde::to_vec_named(decision).expect("a decision encodes"))
}

/// Runs blocking store work off the async threads (a panic there goes on here).
async fn off_thread<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(work).await.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

/// Most decisions one read returns.
pub const DECISIONS_MAX: usize = 10_000;

/// A register's answer as kept, to reuse within the region's cache window.
#[derive(serde::Serialize, serde::Deserialize)]
struct KeptAnswer {
    answer: registers::RegisterAnswer,
    at: i64,
}

impl Compliance {
    pub fn new(
        store: Arc<dyn Store>,
        region: Arc<RegionConfig>,
        clock: Arc<dyn crate::clock::Clock>,
        registers: Option<registers::Registers>,
        kyc: Option<kyc::KycVendor>,
    ) -> Compliance {
        Compliance { store, region, clock, registers, kyc, sanctions: Default::default() }
    }

    /// The KYC vendor's adapter, when the cell has one.
    pub fn kyc_vendor(&self) -> Option<&kyc::KycVendor> {
        self.kyc.as_ref()
    }

    /// Whether a registration's profile has what the region's `[kyc]` requires (and is there at
    /// all when this cell checks identities).
    pub fn check_profile(&self, profile: Option<&contracts::players::PlayerProfile>) -> Result<(), ComplianceError> {
        let Some(profile) = profile else {
            return match self.kyc {
                Some(_) => Err(ComplianceError::ProfileIncomplete(
                    "this cell verifies every player's identity: register with a profile".into(),
                )),
                None => Ok(()),
            };
        };
        match kyc::missing(&self.region.kyc, profile) {
            Some(problem) => Err(ComplianceError::ProfileIncomplete(problem)),
            None => Ok(()),
        }
    }

    /// Asks the KYC vendor to check a new player: the check's id, or `None` when this cell has
    /// no vendor. A vendor that does not take it fails the registration closed (`KYC_UNAVAILABLE`).
    pub async fn request_kyc(
        &self,
        player: &PlayerId,
        profile: Option<&contracts::players::PlayerProfile>,
        born: NaiveDate,
    ) -> Result<Option<String>, ComplianceError> {
        let (Some(vendor), Some(profile)) = (&self.kyc, profile) else { return Ok(None) };
        match vendor.request_check(player, profile, born).await {
            Ok(id) => Ok(Some(id)),
            Err(e) => {
                tracing::warn!(error = %e, "KYC vendor unavailable: refusing the registration, failed closed");
                Err(ComplianceError::KycUnavailable(e))
            }
        }
    }

    /// A player's identity check. Blocking.
    pub fn kyc_status(&self, player: &PlayerId) -> Result<Option<contracts::players::KycView>, StoreError> {
        let mut tx = self.store.begin_snapshot_reads()?;
        let Some(record) = crate::players::get(tx.as_mut(), player)? else { return Ok(None) };
        limits::read_kyc(tx.as_mut(), &self.region, player, record.currency).map(Some)
    }

    /// Asks the region's self-exclusion register about the player, if the region asks at `point`
    /// and the answer kept is older than its window: refused (`SELF_EXCLUDED`) when excluded,
    /// failed closed (`SELF_EXCLUSION_CHECK_UNAVAILABLE`, nothing written) when the register does
    /// not answer. Every answer is recorded (`self_exclusion.checked`) and kept.
    pub async fn screen(
        &self,
        player: &PlayerId,
        profile: Option<&contracts::players::PlayerProfile>,
        born: NaiveDate,
        point: contracts::region::ExclusionCheckPoint,
        ctx: &EventContext,
    ) -> Result<(), ComplianceError> {
        if !self.asks_register_at(point) {
            return Ok(());
        }
        self.ask_register(player, profile, born, point, ctx, None).await
    }

    /// [`Compliance::screen`] for a registered player at `point` (a login, a deposit): nothing is
    /// read unless the region asks its register here, and the player's record and profile only
    /// when the answer kept is too old to reuse. A player not registered here passes (what they
    /// ask for refuses them).
    pub async fn screen_player(
        &self,
        player: &PlayerId,
        point: contracts::region::ExclusionCheckPoint,
        ctx: &EventContext,
        ledger: &crate::ledger::Ledger,
    ) -> Result<(), ComplianceError> {
        if !self.asks_register_at(point) {
            return Ok(());
        }
        let (store, id) = (self.store.clone(), player.clone());
        let (cache_seconds, now) = (self.region.self_exclusion_cache_seconds, self.clock.now());
        let known = off_thread(move || -> Result<_, StoreError> {
            let mut tx = store.begin()?;
            let kept: Option<KeptAnswer> =
                tx.get(&keys::exclusion_answer(id.as_str()))?.and_then(|bytes| rmp_serde::from_slice(&bytes).ok());
            let fresh = kept.is_some_and(|k| {
                !k.answer.excluded() && now.timestamp() - k.at < i64::try_from(cache_seconds).unwrap_or(i64::MAX)
            });
            if fresh {
                return Ok(None);
            }
            let Some(record) = crate::players::get(tx.as_mut(), &id)? else { return Ok(None) };
            let key = keys::profile(id.as_str());
            let profile: Option<contracts::players::PlayerProfile> = match tx.get(&key)? {
                Some(bytes) => Some(rmp_serde::from_slice(&bytes).map_err(|e| StoreError::corrupt(&key, e))?),
                None => None,
            };
            Ok(Some((record.date_of_birth, profile)))
        })
        .await?;
        match known {
            Some((born, profile)) => self.ask_register(player, profile.as_ref(), born, point, ctx, Some(ledger)).await,
            None => Ok(()),
        }
    }

    /// Whether this cell asks its region's register at `point`.
    fn asks_register_at(&self, point: contracts::region::ExclusionCheckPoint) -> bool {
        self.registers.is_some()
            && self.region.self_exclusion_register != contracts::region::SelfExclusionRegister::Operator
            && self.region.self_exclusion_check_at.contains(&point)
    }

    /// Asks the register, records and keeps the answer, refuses an excluded player.
    async fn ask_register(
        &self,
        player: &PlayerId,
        profile: Option<&contracts::players::PlayerProfile>,
        born: NaiveDate,
        point: contracts::region::ExclusionCheckPoint,
        ctx: &EventContext,
        ledger: Option<&crate::ledger::Ledger>,
    ) -> Result<(), ComplianceError> {
        let region = &self.region;
        let Some(registers) = &self.registers else { return Ok(()) };
        let register = region.self_exclusion_register;
        let now = self.clock.now();
        let Some(profile) = profile else {
            return Err(ComplianceError::ProfileIncomplete(format!(
                "this cell asks the {register} register about every player: register with a profile"
            )));
        };
        let answer = match registers.ask(register, profile, born).await {
            Ok(Some(answer)) => answer,
            Ok(None) => return Ok(()),
            Err(e @ registers::RegisterError::ProfileIncomplete { .. }) => {
                return Err(ComplianceError::ProfileIncomplete(e.to_string()));
            }
            Err(e @ registers::RegisterError::Unavailable { .. }) => {
                tracing::warn!(%register, error = %e, "self-exclusion register unavailable: refusing, failed closed");
                return Err(ComplianceError::RegisterUnavailable(e.to_string()));
            }
        };
        let (store, player_key, event_ctx) = (self.store.clone(), player.clone(), ctx.clone());
        let (jurisdiction, policy_version) = (region.jurisdiction, region.policy_version.clone());
        let point_name =
            serde_json::to_value(point).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
        let answer_name =
            serde_json::to_value(answer).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
        off_thread(move || {
            crate::store::transact_writes(store.as_ref(), |tx| {
                let kept = KeptAnswer { answer, at: now.timestamp() };
                tx.set(
                    &keys::exclusion_answer(player_key.as_str()),
                    &rmp_serde::to_vec_named(&kept).expect("an answer encodes"),
                )?;
                let decision = contracts::limits::Decision {
                    at: now,
                    kind: "self_exclusion_check".into(),
                    rule: format!("{}-SELF-EXCLUSION-REGISTER", jurisdiction),
                    policy_version: policy_version.clone(),
                    source: register.to_string(),
                    outcome: format!("{answer_name} (asked at {point_name})"),
                };
                record_decision(tx, &player_key, &decision)?;
                let checked = contracts::events::SelfExclusionChecked {
                    player_id: player_key.clone(),
                    register: register.to_string(),
                    answer: answer_name.clone(),
                    at: point_name.clone(),
                };
                events::append(tx, 0, &events::encode(&events::envelope(&event_ctx, checked, now)))?;
                Ok(())
            })
        })
        .await?;
        // A registered player's answer reaches the limits gate too: bets from a session opened
        // before the exclusion are refused as well.
        if let Some(ledger) = ledger {
            let command = limits::RecordRegisterAnswer {
                region: self.region.clone(),
                player: player.clone(),
                excluded_by: answer.excluded().then(|| register.to_string()),
                asked_at: now,
            };
            ledger.execute_unkeyed(command, ctx.clone()).await.map_err(|e| ComplianceError::Writer {
                code: e.code(),
                status: e.status(),
                message: e.to_string(),
            })?;
        }
        if answer.excluded() {
            return Err(ComplianceError::SelfExcluded { register: register.to_string() });
        }
        Ok(())
    }

    /// Screens a new player's names against the sanctions/PEP list (downloaded from the registers'
    /// base URL, kept a minute), fuzzy-matched (Jaro-Winkler). A hit does not refuse the
    /// registration: it opens an AML case that holds withdrawals. A list that cannot be had fails
    /// closed (`SCREENING_UNAVAILABLE`).
    pub async fn screen_sanctions(
        &self,
        profile: Option<&contracts::players::PlayerProfile>,
    ) -> Result<Option<SanctionsHit>, ComplianceError> {
        let (Some(registers), Some(profile)) = (&self.registers, profile) else { return Ok(None) };
        let kept = self.sanctions.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let list = match kept {
            Some((at, list)) if at.elapsed() < SANCTIONS_LIST_TTL => list,
            _ => {
                let list = Arc::new(registers.sanctions_list().await.map_err(ComplianceError::ScreeningUnavailable)?);
                *self.sanctions.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some((std::time::Instant::now(), list.clone()));
                list
            }
        };
        Ok(self.screen_against(&list, profile))
    }

    /// A profile's hit on `list`, if any.
    fn screen_against(
        &self,
        list: &registers::SanctionsList,
        profile: &contracts::players::PlayerProfile,
    ) -> Option<SanctionsHit> {
        let (entry, score) = list.screen(&profile.given_name, &profile.family_name, self.region.aml.match_threshold)?;
        let name = format!("{} {}", entry.given_name, entry.family_name);
        Some(SanctionsHit {
            rule: format!("{}-SANCTIONS-SCREENING", self.region.jurisdiction),
            reason: format!(
                "the name matches {} on the {} list (list {}, score {score:.2})",
                name.trim(),
                entry.program,
                list.version
            ),
            entry: name.split_whitespace().collect::<Vec<_>>().join("-").to_lowercase(),
        })
    }

    /// Screens every player again whenever the sanctions list's version changes (checked every
    /// `interval`): a new hit opens a case (`OpenSanctionsCase`), once per player and entry. The
    /// version screened is kept, so a restart does not screen again for nothing.
    pub fn spawn_rescreening(
        self,
        ledger: crate::ledger::Ledger,
        interval: std::time::Duration,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let registers = self.registers.clone()?;
        Some(tokio::spawn(async move {
            // Alerts a registration kept aside just before a crash go into the chain first.
            loop {
                let ctx = EventContext::background(&self.region.cell_id);
                match ledger.execute_unkeyed(limits::ChainPendingAlerts, ctx).await {
                    Ok(chained) if chained.value == limits::ALERTS_PER_COMMAND => continue,
                    Ok(chained) if chained.value > 0 => {
                        tracing::info!(alerts = chained.value, "AML alerts kept by registrations chained")
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "AML alerts kept by registrations not chained yet"),
                }
                break;
            }
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let list = match registers.sanctions_list().await {
                    Ok(list) => Arc::new(list),
                    Err(e) => {
                        tracing::warn!(error = %e, "sanctions list unavailable; screening again later");
                        continue;
                    }
                };
                *self.sanctions.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some((std::time::Instant::now(), list.clone()));
                if let Err(e) = self.rescreen(&ledger, &list).await {
                    tracing::warn!(error = %e, version = %list.version, "screening against the new list failed; tried again later");
                }
            }
        }))
    }

    /// Screens every player against `list` unless its version was screened already.
    async fn rescreen(&self, ledger: &crate::ledger::Ledger, list: &registers::SanctionsList) -> anyhow::Result<()> {
        let store = self.store.clone();
        let screened = off_thread(move || store.begin_snapshot_reads()?.get(&keys::sanctions_screened())).await?;
        if screened.as_deref() == Some(list.version.as_bytes()) {
            return Ok(());
        }
        tracing::info!(version = %list.version, entries = list.entries.len(), "sanctions list changed: screening every player");
        let (begin, end) = keys::profiles();
        let mut from = begin;
        let (mut players, mut opened) = (0usize, 0usize);
        loop {
            let (store, page_from, page_end) = (self.store.clone(), from.clone(), end.clone());
            let page =
                off_thread(move || store.begin_snapshot_reads()?.get_range(&page_from, &page_end, 500, false)).await?;
            let Some((last, _)) = page.last() else { break };
            from = last.iter().copied().chain([0]).collect();
            for (key, value) in &page {
                let profile: contracts::players::PlayerProfile =
                    rmp_serde::from_slice(value).map_err(|e| StoreError::corrupt(key, e))?;
                players += 1;
                let Some(player) = keys::profile_player(key) else { continue };
                let Some(hit) = self.screen_against(list, &profile) else { continue };
                let ctx = EventContext::background(&self.region.cell_id);
                let command = limits::OpenSanctionsCase {
                    region: self.region.clone(),
                    id: hit.case_id(&player),
                    player,
                    rule: hit.rule,
                    reason: hit.reason,
                };
                match ledger.execute_unkeyed(command, ctx).await {
                    Ok(answered) => opened += usize::from(answered.value),
                    Err(e) => anyhow::bail!("opening a case: {e}"),
                }
            }
            tracing::info!(players, cases_opened = opened, "screening against the new sanctions list");
        }
        let (store, version) = (self.store.clone(), list.version.clone());
        off_thread(move || {
            crate::store::transact_writes(store.as_ref(), |tx| tx.set(&keys::sanctions_screened(), version.as_bytes()))
        })
        .await?;
        tracing::info!(version = %list.version, players, cases_opened = opened, "every player screened against the sanctions list");
        Ok(())
    }

    /// One AML case by its id. Blocking.
    pub fn case(&self, id: &str) -> Result<Option<contracts::limits::AmlCase>, StoreError> {
        let mut tx = self.store.begin_snapshot_reads()?;
        let key = keys::case(id);
        match tx.get(&key)? {
            Some(bytes) => rmp_serde::from_slice(&bytes).map(Some).map_err(|e| StoreError::corrupt(&key, e)),
            None => Ok(None),
        }
    }

    /// Every AML case, open ones first. Blocking.
    pub fn cases(&self) -> Result<Vec<contracts::limits::AmlCase>, StoreError> {
        let mut tx = self.store.begin_snapshot_reads()?;
        let (begin, end) = keys::cases();
        let mut cases: Vec<contracts::limits::AmlCase> = tx
            .get_range(&begin, &end, DECISIONS_MAX, false)?
            .into_iter()
            .map(|(key, value)| rmp_serde::from_slice(&value).map_err(|e| StoreError::corrupt(&key, e)))
            .collect::<Result<_, _>>()?;
        cases.sort_by_key(|c| (c.status != "open", c.opened_at));
        Ok(cases)
    }

    /// The newest [`DECISIONS_MAX`] compliance decisions recorded about `player`, oldest first (a
    /// flood of refusals never hides the latest exclusion or case). Blocking.
    pub fn decisions(&self, player: &PlayerId) -> Result<Vec<contracts::limits::Decision>, StoreError> {
        let mut tx = self.store.begin_snapshot_reads()?;
        let (begin, end) = keys::decisions(player.as_str());
        let mut decisions = tx
            .get_range(&begin, &end, DECISIONS_MAX, true)?
            .into_iter()
            .map(|(key, value)| rmp_serde::from_slice(&value).map_err(|e| StoreError::corrupt(&key, e)))
            .collect::<Result<Vec<contracts::limits::Decision>, _>>()?;
        decisions.reverse();
        Ok(decisions)
    }

    /// What registration checks of the request itself (its cell, currency, age and residence),
    /// before anyone outside is asked: the player's currency.
    fn validate(
        &self,
        request: &RegisterPlayerRequest,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Currency, ComplianceError> {
        let region = &self.region;
        let prefix = request.player_id.home_cell().unwrap_or("");
        if prefix != region.cell_id {
            return Err(ComplianceError::WrongCell {
                player: request.player_id.to_string(),
                prefix: prefix.to_owned(),
                cell: region.cell_id.clone(),
            });
        }
        let currency = Currency::from_code(&request.currency)?;
        if !region.books(currency) {
            return Err(ComplianceError::CurrencyNotBooked {
                currency: currency.to_string(),
                cell: region.cell_id.clone(),
            });
        }
        let today = now.date_naive();
        if request.date_of_birth > today {
            return Err(ComplianceError::BirthInFuture);
        }
        let age = age_on(request.date_of_birth, today);
        if age < u32::from(region.minimum_age) {
            return Err(ComplianceError::Underage {
                age,
                minimum: region.minimum_age,
                regulator: region.regulator.clone(),
            });
        }
        if !region.is_licensed_for(request.country) {
            return Err(ComplianceError::CountryNotLicensed {
                country: request.country.to_string(),
                cell: region.cell_id.clone(),
            });
        }
        Ok(currency)
    }

    /// Before a registration asks anyone outside: its earlier answer when the key was used (a
    /// retry asks no register or vendor again), or a refusal of the request itself (wrong cell,
    /// currency, age, residence, a player who exists), so no outside party sees the personal data
    /// of a registration that cannot succeed. Blocking.
    pub fn before_outside_checks(
        &self,
        request: &RegisterPlayerRequest,
        key: &IdempotencyKey,
    ) -> Result<Option<Answer>, ComplianceError> {
        let mut tx = self.store.begin_snapshot_reads()?;
        if let Some(stored) = tx.get(&keys::idempotency(&key.key))? {
            let record =
                IdempotencyRecord::decode(&stored).map_err(|e| StoreError::corrupt(&keys::idempotency(&key.key), e))?;
            return record.replay_for(key).map(Some).ok_or(ComplianceError::IdempotencyKeyReused);
        }
        self.validate(request, self.clock.now())?;
        if crate::players::get(tx.as_mut(), &request.player_id)?.is_some() {
            return Err(ComplianceError::PlayerExists(request.player_id.to_string()));
        }
        Ok(None)
    }

    /// Registers a player in this cell, with their password's hash (`credential`, from
    /// `crate::credentials::hash`) when they are to log in. Blocking: call from a blocking context.
    pub fn player_register(
        &self,
        request: RegisterPlayerRequest,
        credential: Option<&str>,
        key: &IdempotencyKey,
        ctx: &EventContext,
        sanctions: Option<&SanctionsHit>,
        kyc_check: Option<&str>,
    ) -> Result<Answer, ComplianceError> {
        let region = &self.region;
        let now = self.clock.now();
        let currency = self.validate(&request, now)?;
        let player = Player {
            player_id: request.player_id.clone(),
            date_of_birth: request.date_of_birth,
            country: request.country,
            currency,
            cell: region.cell_id.clone(),
            registered_at: now,
        };
        let body = serde_json::to_string(&player).expect("a player serialises");
        let outcome = transact(self.store.as_ref(), |tx| {
            if let Some(stored) = tx.get(&keys::idempotency(&key.key))? {
                let record = IdempotencyRecord::decode(&stored)
                    .map_err(|e| StoreError::corrupt(&keys::idempotency(&key.key), e))?;
                return Ok(record.replay_for(key).ok_or(ComplianceError::IdempotencyKeyReused));
            }
            if crate::players::get(tx, &player.player_id)?.is_some() {
                return Ok(Err(ComplianceError::PlayerExists(player.player_id.to_string())));
            }
            tx.set(
                &crate::players::key(&player.player_id),
                &rmp_serde::to_vec_named(&player).expect("a player encodes"),
            )?;
            if let Some(credential) = credential {
                tx.set(&crate::players::credential_key(&player.player_id), credential.as_bytes())?;
            }
            if let Some(profile) = &request.profile {
                let bytes = rmp_serde::to_vec_named(profile).expect("a profile encodes");
                tx.set(&keys::profile(player.player_id.as_str()), &bytes)?;
            }
            let case_id = sanctions.map(|hit| hit.case_id(&player.player_id)).unwrap_or_default();
            if sanctions.is_some() || kyc_check.is_some() {
                // What the gates read of a new player (in no room yet): the case's hold, the check.
                let kyc = kyc_check.map(|check| (check, kyc::VENDOR));
                let case = sanctions.is_some().then_some(case_id.as_str());
                limits::start_record(tx, &player.player_id, case, kyc, now)?;
            }
            if let Some(check_id) = kyc_check {
                let decision = contracts::limits::Decision {
                    at: now,
                    kind: "kyc".into(),
                    rule: format!("{}-KYC", region.jurisdiction),
                    policy_version: region.policy_version.clone(),
                    source: kyc::VENDOR.into(),
                    outcome: format!("requested (check {check_id})"),
                };
                record_decision(tx, &player.player_id, &decision)?;
                let requested = contracts::events::KycRequested {
                    player_id: player.player_id.clone(),
                    check_id: check_id.to_owned(),
                    vendor: kyc::VENDOR.into(),
                };
                events::append(tx, 2, &events::encode(&events::envelope(ctx, requested, now)))?;
            }
            if let Some(hit) = sanctions {
                // A case; its hold is in the record started above.
                let case = contracts::limits::AmlCase {
                    id: case_id.clone(),
                    player_id: player.player_id.clone(),
                    opened_at: now,
                    rule: hit.rule.clone(),
                    reason: hit.reason.clone(),
                    status: "open".into(),
                    decided_at: None,
                    decision_reason: None,
                };
                tx.set(&keys::case(&case.id), &rmp_serde::to_vec_named(&case).expect("a case encodes"))?;
                let decision = contracts::limits::Decision {
                    at: now,
                    kind: "aml_case_opened".into(),
                    rule: hit.rule.clone(),
                    policy_version: region.policy_version.clone(),
                    source: "sanctions list".into(),
                    outcome: hit.reason.clone(),
                };
                record_decision(tx, &player.player_id, &decision)?;
                // The alert goes into the audit chain, which only the writer appends to: kept here
                // in the registration's transaction, chained by `ChainPendingAlerts` after it.
                let alert = contracts::events::AmlAlert {
                    player_id: player.player_id.clone(),
                    case_id: case.id.clone(),
                    rule: hit.rule.clone(),
                };
                tx.set(&keys::alert_to_chain(&case.id), &rmp_serde::to_vec_named(&alert).expect("an alert encodes"))?;
            }
            let record = IdempotencyRecord {
                request_hash: key.request_hash,
                status: 201,
                body: body.clone(),
                at: now.timestamp(),
            };
            tx.set(&keys::idempotency(&key.key), &record.encode())?;
            events::append(
                tx,
                0,
                &events::encode(&events::envelope(ctx, PlayerRegistered { player: player.clone() }, now)),
            )?;
            Ok(Ok(Answer { status: 201, body: body.clone().into(), replayed: false }))
        })?;
        outcome
    }
}

/// The region's stake cap in force `today` for a player born on `born`, for the game's product, in
/// `currency` (UK: £5 per slot spin, £2 for ages 18 to 24): the strictest rule that applies, or
/// `None` when no rule covers this player and product.
pub fn stake_cap(
    region: &RegionConfig,
    born: NaiveDate,
    product: contracts::catalog::GameType,
    currency: Currency,
    today: NaiveDate,
) -> Option<contracts::region::StakeCap> {
    let age = age_on(born, today);
    let applicable = region.stake_limits.iter().filter(|r| {
        r.product == product
            && r.effective_from <= today
            && u32::from(r.age_from) <= age
            && r.age_to.is_none_or(|to| age <= u32::from(to))
    });
    let max_of = |r: &contracts::region::StakeLimit| {
        if r.max_stake.currency() == currency {
            r.max_stake.amount()
        } else {
            rust_decimal::Decimal::ZERO
        }
    };
    applicable.min_by_key(|r| max_of(r)).map(|rule| contracts::region::StakeCap {
        rule: rule.id.clone(),
        policy_version: region.policy_version.clone(),
        max: max_of(rule),
    })
}

/// The region's stake caps as a gate on every stake that names its game's product: the
/// player's stakes in one round (one spin) may not pass the strictest cap that applies to them.
pub struct StakeCapGate {
    region: Arc<RegionConfig>,
}

impl StakeCapGate {
    pub fn new(region: Arc<RegionConfig>) -> StakeCapGate {
        StakeCapGate { region }
    }
}

impl Gate for StakeCapGate {
    fn name(&self) -> &'static str {
        "stake_cap"
    }

    fn check(&self, entry: &GatedEntry<'_>, state: &mut GateState<'_>) -> Result<Result<(), GateRefusal>, StoreError> {
        let decided = self.decide(entry);
        if let Err(refusal) = &decided {
            limits::log_refusal(state, entry, refusal);
        }
        Ok(decided)
    }
}

impl StakeCapGate {
    fn decide(&self, entry: &GatedEntry<'_>) -> Result<(), GateRefusal> {
        let (PostingKind::Stake, Some(stake)) = (entry.kind, entry.stake) else { return Ok(()) };
        let currency = entry.currency;
        let Some(cap) =
            stake_cap(&self.region, entry.player.date_of_birth, stake.product, currency, entry.now.date_naive())
        else {
            return Ok(());
        };
        if stake.round_stake <= cap.max {
            return Ok(());
        }
        let s = currency.scale();
        let (max, staked) = (Amount::at_scale(cap.max, s), Amount::at_scale(stake.round_stake, s));
        let code = currency.code();
        Err(GateRefusal {
            code: CellCode::StakeLimitExceeded,
            message: format!(
                "stake {staked} {code} in this round is over the {max} {code} limit of rule {} (policy {})",
                cap.rule, cap.policy_version
            ),
            rule: cap.rule,
            policy_version: cap.policy_version,
        })
    }
}
