//! Responsible-gambling limits as ledger invariants: deposit and net-loss limits per calendar day,
//! week and month, time-outs and in-house self-exclusion.
//!
//! Each player's limits and this period's counters live in compliance's room on the writer thread
//! ([`RgRoom`]). [`RgGate`] reads them for every deposit and stake the kernel posts, and counts every
//! deposit, stake and return once the command's entries have all passed, in the same batch:
//! whatever the concurrency, the single writer orders the checks, so 200 deposits at once cannot
//! pass a limit together. The limits are stored (written only when they change); the counters
//! are not: the journal already records every entry with its kind, so a player's counters are
//! rebuilt from their journal since the earliest period start when the room first loads them. The player's own commands ([`SetLimits`], [`StartTimeout`],
//! [`SelfExclude`]) change the same record through the writer.
//!
//! A decrease (or a new limit) takes effect at once; an increase (or a removal) after the
//! region's cooling-off period (`[rules.deposit_limits] increase_delay_hours`), kept pending
//! until then and applied when it is first read after its time.

use crate::ledger::{
    Gate, GateRefusal, GateState, GatedEntry, KernelTx, LedgerCommand, LedgerRefusal, PostingKind, Refusal, Room,
};
use crate::store::{subspaces, StoreError, Transaction};
use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use contracts::events::{RgLimitPending, RgLimitSet, RgSelfExclusionStarted, RgTimeoutStarted};
use contracts::limits::{LimitChange, LimitInForce, LimitKind, LimitsView, PendingLimit};
use contracts::players::{KycStatus, KycView};
use contracts::region::{AmlRuleKind, BeforeVerification, LimitPeriod, RegionConfig, AML_WINDOW_DAYS_MAX};
use contracts::{Amount, CellCode, Currency, Money, PlayerId};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

const PERIODS: [LimitPeriod; 3] = [LimitPeriod::Day, LimitPeriod::Week, LimitPeriod::Month];

fn key(player: &PlayerId) -> Vec<u8> {
    subspaces::compliance().pack(&("rg", player.as_str()))
}

/// The first day of the period `day` falls in.
fn period_start(period: LimitPeriod, day: NaiveDate) -> NaiveDate {
    match period {
        LimitPeriod::Day => day,
        LimitPeriod::Week => day - Duration::days(i64::from(day.weekday().num_days_from_monday())),
        LimitPeriod::Month => day.with_day(1).expect("every month has a first day"),
    }
}

/// What one period has counted (in memory only: rebuilt from the journal).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Counter {
    /// The period's first day: a counter of an earlier period counts nothing now.
    start: NaiveDate,
    deposited: Decimal,
    staked: Decimal,
    returned: Decimal,
}

impl Counter {
    fn used(&self, kind: LimitKind) -> Decimal {
        match kind {
            LimitKind::Deposit => self.deposited,
            // A period in profit has lost nothing.
            LimitKind::Loss => (self.staked - self.returned).max(Decimal::ZERO),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Pending {
    kind: LimitKind,
    period: LimitPeriod,
    amount: Option<Decimal>,
    effective_at: DateTime<Utc>,
}

/// One player's limits (stored) and counters (rebuilt from the journal).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct PlayerRg {
    /// The limits the player set (a region default applies where they set none).
    limits: Vec<(LimitKind, LimitPeriod, Decimal)>,
    pending: Vec<Pending>,
    timeout_until: Option<DateTime<Utc>>,
    excluded_until: Option<DateTime<Utc>>,
    /// An open AML case (or a confirmed one) holds the player's withdrawals.
    #[serde(default)]
    aml_hold: bool,
    /// The ids of the player's open AML cases.
    #[serde(default)]
    open_cases: Vec<String>,
    /// A case about the player was confirmed: withdrawals stay held.
    #[serde(default)]
    aml_confirmed: bool,
    /// When each monitoring rule last opened a case: a rule opens one case per window.
    #[serde(default)]
    flagged: Vec<(String, DateTime<Utc>)>,
    /// Deposits and stakes per day over the last [`AML_WINDOW_DAYS_MAX`] days (in memory only:
    /// rebuilt from the journal), for the monitoring rules' windows.
    #[serde(skip)]
    days: std::collections::BTreeMap<NaiveDate, DayTotals>,
    /// The identity check, when one was asked for.
    #[serde(default)]
    kyc: Option<KycState>,
    /// The national register that last said the player is excluded (cleared when it says not).
    #[serde(default)]
    register_excluded: Option<String>,
    /// When the register was asked for that answer: an older answer arriving later is ignored.
    #[serde(default)]
    register_asked_at: Option<DateTime<Utc>>,
    /// The play session (from the last login), its limits and when the last reality check was
    /// acknowledged.
    #[serde(default)]
    session: PlaySession,
    #[serde(skip)]
    counters: [Counter; 3],
}

/// How long a player rests after a session reaches its time limit before a login starts another.
pub const SESSION_BREAK_MINUTES: i64 = 60;

/// A player's play session: it starts at a login. `staked` and `returned` are in memory only
/// (rebuilt from the journal since `started`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct PlaySession {
    minutes: Option<u32>,
    reality_check_minutes: Option<u32>,
    /// Looser limits waiting for the cooling-off period, and from when.
    pending: Option<(Option<u32>, Option<u32>, DateTime<Utc>)>,
    started: Option<DateTime<Utc>>,
    reality_check_acknowledged: Option<DateTime<Utc>>,
    #[serde(skip)]
    staked: Decimal,
    #[serde(skip)]
    returned: Decimal,
}

impl PlaySession {
    fn ends_at(&self) -> Option<DateTime<Utc>> {
        Some(self.started? + Duration::minutes(i64::from(self.minutes?)))
    }

    fn reality_check_due_at(&self) -> Option<DateTime<Utc>> {
        let since = self.started?.max(self.reality_check_acknowledged.unwrap_or(DateTime::<Utc>::MIN_UTC));
        Some(since + Duration::minutes(i64::from(self.reality_check_minutes?)))
    }

    /// Applies looser limits whose time has come. True when it did.
    fn settle_pending(&mut self, now: DateTime<Utc>) -> bool {
        match self.pending {
            Some((minutes, reality, at)) if at <= now => {
                (self.minutes, self.reality_check_minutes, self.pending) = (minutes, reality, None);
                true
            }
            _ => false,
        }
    }
}

/// What one day moved, for AML windows.
#[derive(Debug, Clone, Default, PartialEq)]
struct DayTotals {
    deposited: Decimal,
    staked: Decimal,
    /// The payment methods deposits came from.
    methods: Vec<String>,
}

/// A player's identity check, as the gate reads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct KycState {
    check_id: String,
    vendor: String,
    status: KycStatus,
    requested_at: DateTime<Utc>,
    decided_at: Option<DateTime<Utc>>,
    reason: Option<String>,
    /// Deposited while pending, against the region's allowance for unverified players.
    deposited: Decimal,
}

/// A new player's record, written with their registration, outside the writer (no room holds a
/// player not yet registered): an open AML case's withdrawal hold, the identity check asked for.
/// Blocking, in the caller's transaction.
pub(crate) fn start_record(
    tx: &mut dyn Transaction,
    player: &PlayerId,
    aml_case: Option<&str>,
    kyc: Option<(&str, &str)>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let record = PlayerRg {
        aml_hold: aml_case.is_some(),
        open_cases: aml_case.into_iter().map(str::to_owned).collect(),
        kyc: kyc.map(|(check_id, vendor)| KycState {
            check_id: check_id.to_owned(),
            vendor: vendor.to_owned(),
            status: KycStatus::Pending,
            requested_at: now,
            decided_at: None,
            reason: None,
            deposited: Decimal::ZERO,
        }),
        ..PlayerRg::default()
    };
    tx.set(&key(player), &crate::ledger::encode(&record))
}

/// `GET /players/{id}/kyc`: the player's identity check as stored. Blocking.
pub fn read_kyc(
    tx: &mut dyn Transaction,
    region: &RegionConfig,
    player: &PlayerId,
    currency: Currency,
) -> Result<KycView, StoreError> {
    let at = key(player);
    let record: PlayerRg = match tx.get(&at)? {
        Some(bytes) => crate::ledger::decode(&at, &bytes)?,
        None => PlayerRg::default(),
    };
    let Some(kyc) = record.kyc else {
        return Ok(KycView {
            player_id: player.clone(),
            status: KycStatus::NotRequested,
            check_id: None,
            vendor: None,
            requested_at: None,
            decided_at: None,
            reason: None,
            deposit_allowance_left: None,
            allowed_until: None,
        });
    };
    let limited = kyc.status == KycStatus::Pending && region.kyc.before_verification == BeforeVerification::Limited;
    let allowance =
        region.kyc.deposit_allowance.filter(|a| a.currency() == currency).map_or(Decimal::ZERO, |a| a.amount());
    Ok(KycView {
        player_id: player.clone(),
        status: kyc.status,
        deposit_allowance_left: limited
            .then(|| Amount::at_scale((allowance - kyc.deposited).max(Decimal::ZERO), currency.scale())),
        allowed_until: limited.then(|| kyc.requested_at + Duration::days(i64::from(region.kyc.window_days))),
        check_id: Some(kyc.check_id),
        vendor: Some(kyc.vendor),
        requested_at: Some(kyc.requested_at),
        decided_at: kyc.decided_at,
        reason: kyc.reason,
    })
}

/// Where each period's counter sits in [`PlayerRg::counters`].
fn slot(period: LimitPeriod) -> usize {
    match period {
        LimitPeriod::Day => 0,
        LimitPeriod::Week => 1,
        LimitPeriod::Month => 2,
    }
}

impl PlayerRg {
    /// What the `days` days ending `today` moved (each method once).
    fn window(&self, today: NaiveDate, days: u32) -> DayTotals {
        let first = today - Duration::days(i64::from(days) - 1);
        self.days.range(first..).fold(DayTotals::default(), |mut sum, (_, d)| {
            sum.deposited += d.deposited;
            sum.staked += d.staked;
            for method in &d.methods {
                if !sum.methods.contains(method) {
                    sum.methods.push(method.clone());
                }
            }
            sum
        })
    }

    /// Whether `rule` opened a case in the `days` days before `now`.
    fn flagged_within(&self, rule: &str, now: DateTime<Utc>, days: u32) -> bool {
        self.flagged.iter().any(|(r, at)| r == rule && now - *at < Duration::days(i64::from(days)))
    }

    fn own(&self, kind: LimitKind, period: LimitPeriod) -> Option<Decimal> {
        self.limits.iter().find(|(k, p, _)| (*k, *p) == (kind, period)).map(|l| l.2)
    }

    fn set_own(&mut self, kind: LimitKind, period: LimitPeriod, amount: Option<Decimal>) {
        self.limits.retain(|(k, p, _)| (*k, *p) != (kind, period));
        if let Some(amount) = amount {
            self.limits.push((kind, period, amount));
            self.limits.sort_by_key(|(k, p, _)| (*k, *p));
        }
    }

    /// Applies the increases whose time has come. True when one was.
    fn settle_pending(&mut self, now: DateTime<Utc>) -> bool {
        let due: Vec<Pending> = self.pending.iter().filter(|p| p.effective_at <= now).cloned().collect();
        self.pending.retain(|p| p.effective_at > now);
        for p in &due {
            self.set_own(p.kind, p.period, p.amount);
        }
        !due.is_empty()
    }

    /// This period's counter, as of `today`.
    fn counter(&self, period: LimitPeriod, today: NaiveDate) -> Counter {
        let start = period_start(period, today);
        let counter = self.counters[slot(period)];
        if counter.start == start {
            counter
        } else {
            Counter { start, ..Counter::default() }
        }
    }

    fn count(&mut self, today: NaiveDate, change: impl Fn(&mut Counter)) {
        for period in PERIODS {
            let mut counter = self.counter(period, today);
            change(&mut counter);
            self.counters[slot(period)] = counter;
        }
    }

    /// Counts one journal entry (or one being applied) of kind `kind` on `day`.
    fn count_entry(
        &mut self,
        at: DateTime<Utc>,
        kind: PostingKind,
        cash_in: Decimal,
        cash_out: Decimal,
        method: Option<&str>,
    ) {
        let day = at.date_naive();
        if self.session.started.is_some_and(|started| at >= started) {
            match kind {
                PostingKind::Stake => self.session.staked += cash_out,
                PostingKind::Win | PostingKind::Refund => self.session.returned += cash_in,
                _ => {}
            }
        }
        if matches!(kind, PostingKind::Deposit | PostingKind::Stake) {
            let totals = self.days.entry(day).or_default();
            match kind {
                PostingKind::Deposit => totals.deposited += cash_in,
                _ => totals.staked += cash_out,
            }
            if let Some(method) =
                method.filter(|m| kind == PostingKind::Deposit && !totals.methods.iter().any(|x| x == m))
            {
                totals.methods.push(method.to_owned());
            }
            let oldest = day - Duration::days(i64::from(AML_WINDOW_DAYS_MAX));
            while self.days.first_key_value().is_some_and(|(d, _)| *d <= oldest) {
                self.days.pop_first();
            }
        }
        match kind {
            PostingKind::Deposit => self.count(day, |c| c.deposited += cash_in),
            PostingKind::Stake => self.count(day, |c| c.staked += cash_out),
            PostingKind::Win | PostingKind::Refund => self.count(day, |c| c.returned += cash_in),
            PostingKind::Withdrawal | PostingKind::Adjustment | PostingKind::Chargeback => {}
        }
    }
}

/// Compliance's room on the writer: each player's limits and counters, cached, written with the
/// batch that changed them.
#[derive(Default)]
pub struct RgRoom {
    players: HashMap<PlayerId, PlayerRg>,
    dirty: HashSet<PlayerId>,
    /// Gates' decisions in this batch (refusals, cases opened), for the decision log.
    decisions: Vec<(PlayerId, contracts::limits::Decision)>,
    /// AML cases the monitoring rules opened in this batch.
    cases: Vec<contracts::limits::AmlCase>,
}

impl RgRoom {
    /// The player's record: cached, or loaded with their counters rebuilt from the journal in
    /// `currency` since the earliest start of a period containing `now`.
    fn get(
        &mut self,
        tx: &mut dyn Transaction,
        player: &PlayerId,
        currency: Currency,
        now: DateTime<Utc>,
    ) -> Result<&mut PlayerRg, StoreError> {
        if !self.players.contains_key(player) {
            let at = key(player);
            let mut record: PlayerRg = match tx.get(&at)? {
                Some(bytes) => crate::ledger::decode(&at, &bytes)?,
                None => PlayerRg::default(),
            };
            // A hold from before open cases were tracked is its registration's case.
            if record.aml_hold && record.open_cases.is_empty() && !record.aml_confirmed {
                record.open_cases.push(format!("case-{player}"));
            }
            let today = now.date_naive();
            let aml_start = today - Duration::days(i64::from(AML_WINDOW_DAYS_MAX) - 1);
            let earliest = PERIODS.iter().map(|p| period_start(*p, today)).min().unwrap_or(today).min(aml_start);
            let since = earliest.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc();
            for fact in crate::ledger::journal_since(tx, player, currency, since)? {
                record.count_entry(fact.at, fact.kind, fact.cash_in, fact.cash_out, fact.payment_method.as_deref());
            }
            self.players.insert(player.clone(), record);
        }
        Ok(self.players.get_mut(player).expect("inserted above"))
    }
}

/// Logs a gate's refusal of `entry` in the decision log, with the batch that refused it.
pub(crate) fn log_refusal(state: &mut GateState<'_>, entry: &GatedEntry<'_>, refusal: &GateRefusal) {
    let (room, _) = state.room::<RgRoom>();
    let what = format!("{:?}", entry.kind).to_lowercase();
    room.decisions.push((
        entry.player.player.clone(),
        contracts::limits::Decision {
            at: entry.now,
            kind: "refused".into(),
            rule: refusal.rule.clone(),
            policy_version: refusal.policy_version.clone(),
            source: "ledger gate".into(),
            outcome: format!("{what} refused, {}: {}", refusal.code, refusal.message),
        },
    ));
}

impl RgRoom {
    /// Opens an AML case `id` by `rule`: the player's withdrawals are held until the compliance
    /// team decides it, and the decision log says why (`source`: what found it). The alert to
    /// raise.
    #[allow(clippy::too_many_arguments)]
    fn open_case(
        &mut self,
        id: String,
        player: &PlayerId,
        rule: &str,
        source: &str,
        policy_version: &str,
        reason: String,
        now: DateTime<Utc>,
    ) -> contracts::events::AmlAlert {
        if let Some(rg) = self.players.get_mut(player) {
            rg.open_cases.push(id.clone());
            rg.aml_hold = true;
            rg.flagged.retain(|(r, _)| r != rule);
            rg.flagged.push((rule.to_owned(), now));
        }
        self.dirty.insert(player.clone());
        self.cases.push(contracts::limits::AmlCase {
            id: id.clone(),
            player_id: player.clone(),
            opened_at: now,
            rule: rule.to_owned(),
            reason: reason.clone(),
            status: "open".into(),
            decided_at: None,
            decision_reason: None,
        });
        let decision = contracts::limits::Decision {
            at: now,
            kind: "aml_case_opened".into(),
            rule: rule.to_owned(),
            policy_version: policy_version.to_owned(),
            source: source.to_owned(),
            outcome: reason,
        };
        self.decisions.push((player.clone(), decision));
        contracts::events::AmlAlert { player_id: player.clone(), case_id: id, rule: rule.to_owned() }
    }

    /// A monitoring rule's case: its id says the player, the rule and when.
    fn open_rule_case(
        &mut self,
        player: &PlayerId,
        rule: &contracts::region::AmlRule,
        policy_version: &str,
        reason: String,
        now: DateTime<Utc>,
    ) -> contracts::events::AmlAlert {
        let id = format!("case-{player}-{}-{}", rule.id.to_lowercase(), now.format("%Y%m%d%H%M%S"));
        self.open_case(id, player, &rule.id, "AML monitoring", policy_version, reason, now)
    }
}

impl RgRoom {
    /// A player's record the gate loaded for the entry at hand.
    fn get_cached(&mut self, player: &PlayerId) -> &mut PlayerRg {
        self.players.get_mut(player).expect("the gate loaded the player before counting")
    }
}

impl Room for RgRoom {
    fn write(&mut self, tx: &mut dyn Transaction, _batch: u64) -> Result<(), StoreError> {
        for player in self.dirty.drain() {
            let record = &self.players[&player];
            tx.set(&key(&player), &crate::ledger::encode(record))?;
        }
        for (player, decision) in self.decisions.drain(..) {
            super::record_decision(tx, &player, &decision)?;
        }
        for case in self.cases.drain(..) {
            tx.set(&super::keys::case(&case.id), &rmp_serde::to_vec_named(&case).expect("a case encodes"))?;
        }
        Ok(())
    }

    fn committed(&mut self, _batch: u64) {}

    fn forget(&mut self) {
        self.players.clear();
        self.dirty.clear();
        self.decisions.clear();
        self.cases.clear();
    }

    fn cached(&self) -> usize {
        self.players.len()
    }
}

/// The limit that binds `kind` over `period` for this player: their own, else the region's
/// default, with where it comes from.
fn binding(region: &RegionConfig, rg: &PlayerRg, kind: LimitKind, period: LimitPeriod) -> Option<(Decimal, String)> {
    if let Some(own) = rg.own(kind, period) {
        return Some((own, "player".into()));
    }
    let defaults = region.deposit_limits.as_ref().filter(|_| kind == LimitKind::Deposit)?;
    defaults
        .defaults
        .iter()
        .find(|(p, _)| *p == period)
        .map(|(_, money)| (money.amount(), rule_id(region, "DEFAULT-DEPOSIT-LIMIT", Some(period))))
}

fn period_name(period: LimitPeriod) -> &'static str {
    match period {
        LimitPeriod::Day => "day",
        LimitPeriod::Week => "week",
        LimitPeriod::Month => "month",
    }
}

fn rule_id(region: &RegionConfig, what: &str, period: Option<LimitPeriod>) -> String {
    match period {
        Some(p) => format!("{}-{what}-{}", region.jurisdiction, period_name(p).to_uppercase()),
        None => format!("{}-{what}", region.jurisdiction),
    }
}

/// The gate: exclusion, time-out, and deposit and loss limits on every deposit and stake; every
/// deposit, stake and return counted. Withdrawals always pass.
pub struct RgGate {
    region: Arc<RegionConfig>,
}

impl RgGate {
    pub fn new(region: Arc<RegionConfig>) -> RgGate {
        RgGate { region }
    }

    fn refusal(&self, code: CellCode, rule: String, message: String) -> GateRefusal {
        GateRefusal {
            code,
            message: format!("{message} (rule {rule}, policy {})", self.region.policy_version),
            rule,
            policy_version: self.region.policy_version.clone(),
        }
    }

    fn decide(&self, entry: &GatedEntry<'_>, rg: &PlayerRg) -> Result<(), GateRefusal> {
        if entry.kind == PostingKind::Withdrawal {
            let unverified = rg.kyc.as_ref().filter(|k| k.status != KycStatus::Verified);
            if let Some(kyc) = unverified.filter(|_| !self.region.kyc.withdrawals_before_verification) {
                let rule = rule_id(&self.region, "KYC", None);
                let message =
                    format!("the identity check {} is not complete: withdrawals wait for it here", kyc.check_id);
                return Err(self.refusal(CellCode::KycRequired, rule, message));
            }
            if rg.aml_hold {
                let rule = rule_id(&self.region, "AML-REVIEW", None);
                let message = "an anti-money-laundering case about this player is open: withdrawals wait for the compliance team's decision".to_owned();
                return Err(self.refusal(CellCode::AmlReview, rule, message));
            }
            return Ok(());
        }
        let kind = match entry.kind {
            PostingKind::Deposit => LimitKind::Deposit,
            PostingKind::Stake => LimitKind::Loss,
            _ => return Ok(()),
        };
        let (what, now) = (if kind == LimitKind::Deposit { "deposits" } else { "bets" }, entry.now);
        if let Some(register) = &rg.register_excluded {
            let rule = rule_id(&self.region, "SELF-EXCLUSION-REGISTER", None);
            return Err(self.refusal(
                CellCode::SelfExcluded,
                rule,
                format!("the {register} register says the player is excluded: no {what}; withdrawals stay open"),
            ));
        }
        if let Some(until) = rg.excluded_until.filter(|until| *until > now) {
            let rule = rule_id(&self.region, "SELF-EXCLUSION", None);
            return Err(self.refusal(
                CellCode::SelfExcluded,
                rule,
                format!("the player is self-excluded until {until}: no {what}; withdrawals stay open"),
            ));
        }
        if let Some(until) = rg.timeout_until.filter(|until| *until > now) {
            let rule = rule_id(&self.region, "TIMEOUT", None);
            return Err(self.refusal(
                CellCode::PlayerTimedOut,
                rule,
                format!("the player took a time-out until {until}: no {what}; withdrawals stay open"),
            ));
        }
        if let Some(kyc) = rg.kyc.as_ref().filter(|k| k.status != KycStatus::Verified) {
            self.unverified(entry, kyc, what)?;
        }
        if kind == LimitKind::Loss {
            if let Some(ends) = rg.session.ends_at().filter(|ends| *ends <= now) {
                let rule = rule_id(&self.region, "PLAYER-SESSION-LIMIT", None);
                let resumes = ends + Duration::minutes(SESSION_BREAK_MINUTES);
                let message = format!(
                    "the play session reached its time limit at {ends}: a new one starts with a login from {resumes}"
                );
                return Err(self.refusal(CellCode::SessionTimeLimitReached, rule, message));
            }
            if let Some(due) = rg.session.reality_check_due_at().filter(|due| *due <= now) {
                let rule = rule_id(&self.region, "PLAYER-REALITY-CHECK", None);
                let message = format!(
                    "a reality check was due at {due}: the player acknowledges it (POST /players/{{id}}/reality-check) to play on"
                );
                return Err(self.refusal(CellCode::RealityCheckDue, rule, message));
            }
        }
        let (currency, scale) = (entry.currency.code(), entry.currency.scale());
        if kind == LimitKind::Deposit {
            if let Some(required) = self.region.deposit_limits.as_ref().filter(|d| d.mandatory && d.defaults.is_empty())
            {
                let missing: Vec<&str> =
                    required.periods.iter().filter(|p| rg.own(kind, **p).is_none()).map(|p| period_name(*p)).collect();
                if !missing.is_empty() {
                    let rule = rule_id(&self.region, "DEPOSIT-LIMITS-REQUIRED", None);
                    let message = format!(
                        "set a deposit limit for each period before depositing: {} missing",
                        missing.join(", ")
                    );
                    return Err(self.refusal(CellCode::DepositLimitsRequired, rule, message));
                }
            }
        }
        for period in PERIODS {
            let Some((limit, source)) = binding(&self.region, rg, kind, period) else { continue };
            let used = rg.counter(period, entry.now.date_naive()).used(kind) + entry.earlier;
            if used + entry.amount <= limit {
                continue;
            }
            let left = (limit - used).max(Decimal::ZERO);
            let (code, name, rule_part) = match kind {
                LimitKind::Deposit => (CellCode::DepositLimitExceeded, "deposit", "DEPOSIT-LIMIT"),
                LimitKind::Loss => (CellCode::LossLimitExceeded, "loss", "LOSS-LIMIT"),
            };
            let rule = if source == "player" {
                rule_id(&self.region, &format!("PLAYER-{rule_part}"), Some(period))
            } else {
                source
            };
            let message = format!(
                "{} {currency} would pass the {} {name} limit of {} {currency}: {} {currency} left this {}",
                Amount::at_scale(entry.amount, scale),
                period_name(period),
                Amount::at_scale(limit, scale),
                Amount::at_scale(left, scale),
                period_name(period),
            );
            return Err(self.refusal(code, rule, message));
        }
        Ok(())
    }
}

impl RgGate {
    /// The `deposits_over` rules a deposit just counted passes: each opens a case (once per
    /// window), which holds withdrawals; the deposit itself stands.
    fn deposits_over(&self, entry: &GatedEntry<'_>, room: &mut RgRoom) -> Vec<contracts::events::AmlAlert> {
        let (player, now, today) = (entry.player.player, entry.now, entry.now.date_naive());
        let mut alerts = Vec::new();
        for rule in self.region.aml.in_force(AmlRuleKind::DepositsOver, today) {
            let Some(threshold) = rule.threshold.filter(|t| t.currency() == entry.currency) else { continue };
            let rg = room.get_cached(player);
            let deposited = rg.window(today, rule.window_days).deposited;
            if deposited < threshold.amount() || rg.flagged_within(&rule.id, now, rule.window_days) {
                continue;
            }
            let (code, scale) = (entry.currency.code(), entry.currency.scale());
            let reason = format!(
                "deposits of {} {code} in {} day(s) reached {} {code}: enhanced due diligence",
                Amount::at_scale(deposited, scale),
                rule.window_days,
                Amount::at_scale(threshold.amount(), scale)
            );
            alerts.push(room.open_rule_case(player, rule, &self.region.policy_version, reason, now));
        }
        for rule in self.region.aml.in_force(AmlRuleKind::PaymentMethods, today) {
            let Some(max) = rule.max_methods else { continue };
            let rg = room.get_cached(player);
            let methods = rg.window(today, rule.window_days).methods;
            if methods.len() <= max as usize || rg.flagged_within(&rule.id, now, rule.window_days) {
                continue;
            }
            let reason = format!(
                "deposits from {} payment methods in {} day(s), over {max}: {}",
                methods.len(),
                rule.window_days,
                methods.join(", ")
            );
            alerts.push(room.open_rule_case(player, rule, &self.region.policy_version, reason, now));
        }
        alerts
    }

    /// A `withdrawal_after_little_play` rule a withdrawal breaks (less than its share of the
    /// window's deposits staked, and no case by it in the window yet): the case it opens.
    fn little_play(&self, entry: &GatedEntry<'_>, room: &mut RgRoom) -> Option<contracts::events::AmlAlert> {
        let (player, now, today) = (entry.player.player, entry.now, entry.now.date_naive());
        for rule in self.region.aml.in_force(AmlRuleKind::WithdrawalAfterLittlePlay, today) {
            let Some(ratio) = rule.play_ratio else { continue };
            let Some(threshold) = rule.threshold.filter(|t| t.currency() == entry.currency) else { continue };
            let rg = room.get_cached(player);
            let window = rg.window(today, rule.window_days);
            if window.deposited < threshold.amount()
                || window.staked >= window.deposited * ratio
                || rg.flagged_within(&rule.id, now, rule.window_days)
            {
                continue;
            }
            let (code, scale) = (entry.currency.code(), entry.currency.scale());
            let reason = format!(
                "a withdrawal of {} {code} after {} {code} deposited and {} {code} staked in {} day(s) (under {ratio} of it)",
                Amount::at_scale(entry.amount, scale),
                Amount::at_scale(window.deposited, scale),
                Amount::at_scale(window.staked, scale),
                rule.window_days
            );
            return Some(room.open_rule_case(player, rule, &self.region.policy_version, reason, now));
        }
        None
    }

    /// What a player whose identity is not verified may do: the region's `[kyc]
    /// before_verification` (nothing; or deposits under an allowance, within a window from the
    /// check); nothing at all once the check failed.
    fn unverified(&self, entry: &GatedEntry<'_>, kyc: &KycState, what: &str) -> Result<(), GateRefusal> {
        let rules = &self.region.kyc;
        let rule = rule_id(&self.region, "KYC", None);
        let refuse = |message: String| Err(self.refusal(CellCode::KycRequired, rule.clone(), message));
        if kyc.status == KycStatus::Failed {
            return refuse(format!("the identity check {} failed: no {what}; withdrawals stay open", kyc.check_id));
        }
        match rules.before_verification {
            BeforeVerification::Nothing => {
                refuse(format!("the identity check {} is not complete yet: no {what} until it is", kyc.check_id))
            }
            BeforeVerification::Limited => {
                let until = kyc.requested_at + Duration::days(i64::from(rules.window_days));
                if entry.now >= until {
                    return refuse(format!(
                        "the identity check {} is still not complete, and the {} days an unverified player may play ended at {until}: no {what}",
                        kyc.check_id, rules.window_days
                    ));
                }
                if entry.kind != PostingKind::Deposit {
                    return Ok(());
                }
                let allowance = rules
                    .deposit_allowance
                    .filter(|a| a.currency() == entry.currency)
                    .map_or(Decimal::ZERO, |a| a.amount());
                // Verification is due when deposits reach the allowance: an unverified player stays
                // under it.
                let used = kyc.deposited + entry.earlier;
                if used + entry.amount < allowance {
                    return Ok(());
                }
                let (code, scale) = (entry.currency.code(), entry.currency.scale());
                refuse(format!(
                    "{} {code} would reach the {} {code} an unverified player must stay under: under {} {code} left until the identity check {} completes",
                    Amount::at_scale(entry.amount, scale),
                    Amount::at_scale(allowance, scale),
                    Amount::at_scale((allowance - used).max(Decimal::ZERO), scale),
                    kyc.check_id
                ))
            }
        }
    }
}

impl Gate for RgGate {
    fn name(&self) -> &'static str {
        "responsible_gambling"
    }

    fn check(&self, entry: &GatedEntry<'_>, state: &mut GateState<'_>) -> Result<Result<(), GateRefusal>, StoreError> {
        if !matches!(entry.kind, PostingKind::Deposit | PostingKind::Stake | PostingKind::Withdrawal) {
            return Ok(Ok(()));
        }
        let (room, tx) = state.room::<RgRoom>();
        let rg = room.get(tx, entry.player.player, entry.currency, entry.now)?;
        let settled = rg.settle_pending(entry.now) | rg.session.settle_pending(entry.now);
        let mut decided = self.decide(entry, rg);
        if settled {
            room.dirty.insert(entry.player.player.clone());
        }
        if decided.is_ok() && entry.kind == PostingKind::Withdrawal {
            if let Some(alert) = self.little_play(entry, room) {
                let rule = alert.rule.clone();
                state.alert(alert);
                let message = "this withdrawal follows deposits that were hardly played: it waits for the compliance team's review".to_owned();
                decided = Err(self.refusal(CellCode::AmlReview, rule, message));
            }
        }
        if let Err(refusal) = &decided {
            log_refusal(state, entry, refusal);
        }
        Ok(decided)
    }

    /// Counts the entry in memory: the journal, written in the same batch, is what the counters
    /// are rebuilt from, so nothing more is stored.
    fn record(&self, entry: &GatedEntry<'_>, state: &mut GateState<'_>) -> Result<(), StoreError> {
        if matches!(entry.kind, PostingKind::Withdrawal | PostingKind::Adjustment | PostingKind::Chargeback) {
            return Ok(());
        }
        let (room, tx) = state.room::<RgRoom>();
        let rg = room.get(tx, entry.player.player, entry.currency, entry.now)?;
        // A gate sees the larger side of an entry: what came into cash for a deposit or a return,
        // what left it for a stake.
        rg.count_entry(entry.now, entry.kind, entry.amount, entry.amount, entry.payment_method);
        if entry.kind == PostingKind::Deposit {
            for alert in self.deposits_over(entry, room) {
                state.alert(alert);
            }
        }
        let (room, _) = state.room::<RgRoom>();
        let rg = room.get_cached(entry.player.player);
        if let Some(kyc) =
            rg.kyc.as_mut().filter(|k| k.status == KycStatus::Pending && entry.kind == PostingKind::Deposit)
        {
            kyc.deposited += entry.amount;
            room.dirty.insert(entry.player.player.clone());
        }
        Ok(())
    }
}

/// Why a player's limit command was refused.
#[derive(Debug, thiserror::Error)]
pub enum LimitsError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    UnknownCheck(String),
    #[error(transparent)]
    Ledger(#[from] LedgerRefusal),
}

impl Refusal for LimitsError {
    fn code(&self) -> CellCode {
        match self {
            LimitsError::Invalid(_) => CellCode::InvalidRequest,
            LimitsError::UnknownCheck(_) => CellCode::NotFound,
            LimitsError::Ledger(e) => e.code(),
        }
    }
    fn status(&self) -> u16 {
        match self {
            LimitsError::Invalid(_) => 400,
            LimitsError::UnknownCheck(_) => 404,
            LimitsError::Ledger(e) => e.status(),
        }
    }
}

/// What the player's limits look like to them now.
fn view(region: &RegionConfig, player: &PlayerId, currency: Currency, rg: &PlayerRg, today: NaiveDate) -> LimitsView {
    let scale = currency.scale();
    let mut limits = Vec::new();
    for kind in [LimitKind::Deposit, LimitKind::Loss] {
        for period in PERIODS {
            let Some((amount, source)) = binding(region, rg, kind, period) else { continue };
            let used = rg.counter(period, today).used(kind);
            limits.push(LimitInForce {
                kind,
                period,
                amount: Amount::at_scale(amount, scale),
                used: Amount::at_scale(used, scale),
                left: Amount::at_scale((amount - used).max(Decimal::ZERO), scale),
                source,
            });
        }
    }
    LimitsView {
        player_id: player.clone(),
        currency,
        limits,
        pending: rg
            .pending
            .iter()
            .map(|p| PendingLimit {
                kind: p.kind,
                period: p.period,
                amount: p.amount.map(|a| Amount::at_scale(a, scale)),
                effective_at: p.effective_at,
            })
            .collect(),
        timeout_until: rg.timeout_until,
        self_excluded_until: rg.excluded_until,
    }
}

/// What a limit command does to a player's record, and the answer.
fn with_record(
    tx: &mut KernelTx<'_>,
    region: &RegionConfig,
    player: &PlayerId,
    change: impl FnOnce(&mut PlayerRg, Currency, DateTime<Utc>) -> Result<Vec<Emitted>, LimitsError>,
) -> Result<Result<LimitsView, LimitsError>, StoreError> {
    let registered = match tx.registered(player)? {
        Ok(registered) => registered,
        Err(refused) => return Ok(Err(refused.into())),
    };
    let now = tx.now();
    let emitted = {
        let (room, store) = tx.room::<RgRoom>();
        let rg = room.get(store, player, registered.currency, now)?;
        let settled = rg.settle_pending(now);
        let mut changed = rg.clone();
        let emitted = match change(&mut changed, registered.currency, now) {
            Ok(emitted) => emitted,
            Err(refused) => return Ok(Err(refused)),
        };
        *rg = changed;
        // A read changes nothing to store, unless an increase came into force.
        if settled || !emitted.is_empty() {
            room.dirty.insert(player.clone());
        }
        emitted
    };
    for event in emitted {
        let decision = |kind: &str, rule: String, outcome: String| contracts::limits::Decision {
            at: now,
            kind: kind.into(),
            rule,
            policy_version: region.policy_version.clone(),
            source: "player".into(),
            outcome,
        };
        let limit = |kind: LimitKind, period: LimitPeriod, amount: &Option<Amount>| {
            let what = if kind == LimitKind::Deposit { "PLAYER-DEPOSIT-LIMIT" } else { "PLAYER-LOSS-LIMIT" };
            let amount = amount.map_or_else(|| "none".to_owned(), |a| format!("{a} {}", registered.currency.code()));
            (rule_id(region, what, Some(period)), amount)
        };
        let decided = match &event {
            Emitted::Set(e) => {
                let (rule, amount) = limit(e.kind, e.period, &e.amount);
                decision("limit_set", rule, amount)
            }
            Emitted::Pending(e) => {
                let (rule, amount) = limit(e.kind, e.period, &e.amount);
                decision("limit_pending", rule, format!("{amount} from {}", e.effective_at))
            }
            Emitted::Timeout(e) => decision("timeout", rule_id(region, "TIMEOUT", None), format!("until {}", e.until)),
            Emitted::Excluded(e) => {
                decision("self_exclusion", rule_id(region, "SELF-EXCLUSION", None), format!("until {}", e.until))
            }
        };
        super::record_decision(tx.store(), player, &decided)?;
        match event {
            Emitted::Set(e) => tx.event(e)?,
            Emitted::Pending(e) => tx.event(e)?,
            Emitted::Timeout(e) => tx.event(e)?,
            Emitted::Excluded(e) => tx.event(e)?,
        }
    }
    let (room, store) = tx.room::<RgRoom>();
    let rg = room.get(store, player, registered.currency, now)?;
    Ok(Ok(view(region, player, registered.currency, rg, now.date_naive())))
}

enum Emitted {
    Set(RgLimitSet),
    Pending(RgLimitPending),
    Timeout(RgTimeoutStarted),
    Excluded(RgSelfExclusionStarted),
}

/// `GET /players/{id}/limits`: read through the writer, so it sees every counted deposit.
pub struct ReadLimits {
    pub region: Arc<RegionConfig>,
    pub player: PlayerId,
}

impl LedgerCommand for ReadLimits {
    type Room = ();
    type Answer = LimitsView;
    type Refusal = LimitsError;
    fn kind(&self) -> &'static str {
        "rg_limits_read"
    }
    fn apply(&self, _: &mut (), tx: &mut KernelTx<'_>) -> Result<Result<LimitsView, LimitsError>, StoreError> {
        with_record(tx, &self.region, &self.player, |_, _, _| Ok(Vec::new()))
    }
}

/// `PUT /players/{id}/limits`.
pub struct SetLimits {
    pub region: Arc<RegionConfig>,
    pub player: PlayerId,
    pub changes: Vec<LimitChange>,
}

impl LedgerCommand for SetLimits {
    type Room = ();
    type Answer = LimitsView;
    type Refusal = LimitsError;
    fn kind(&self) -> &'static str {
        "rg_limits_set"
    }
    fn apply(&self, _: &mut (), tx: &mut KernelTx<'_>) -> Result<Result<LimitsView, LimitsError>, StoreError> {
        let region = self.region.clone();
        let delay = Duration::hours(i64::from(region.deposit_limits.as_ref().map_or(24, |d| d.increase_delay_hours)));
        let player = self.player.clone();
        with_record(tx, &self.region, &self.player, |rg, currency, now| {
            let mut emitted = Vec::new();
            let mut seen = HashSet::new();
            for change in &self.changes {
                if !seen.insert((change.kind, change.period)) {
                    return Err(LimitsError::Invalid(format!(
                        "{:?} {:?} is changed twice",
                        change.kind, change.period
                    )));
                }
                let amount = match &change.amount {
                    Some(a) => {
                        Some(Money::positive(a.0, currency).map_err(|e| LimitsError::Invalid(e.to_string()))?.amount())
                    }
                    None => None,
                };
                let current = binding(&region, rg, change.kind, change.period).map(|(a, _)| a);
                // Tighter than what binds now (a limit where there was none included): at once.
                let tighter = match (amount, current) {
                    (Some(new), Some(old)) => new <= old,
                    (Some(_), None) => true,
                    (None, None) => true,
                    (None, Some(_)) => false,
                };
                rg.pending.retain(|p| (p.kind, p.period) != (change.kind, change.period));
                let scale = currency.scale();
                let wire = amount.map(|a| Amount::at_scale(a, scale));
                if tighter {
                    rg.set_own(change.kind, change.period, amount);
                    emitted.push(Emitted::Set(RgLimitSet {
                        player_id: player.clone(),
                        kind: change.kind,
                        period: change.period,
                        amount: wire,
                    }));
                } else {
                    let effective_at = now + delay;
                    rg.pending.push(Pending { kind: change.kind, period: change.period, amount, effective_at });
                    emitted.push(Emitted::Pending(RgLimitPending {
                        player_id: player.clone(),
                        kind: change.kind,
                        period: change.period,
                        amount: wire,
                        effective_at,
                    }));
                }
            }
            Ok(emitted)
        })
    }
}

/// `POST /players/{id}/timeout`: no deposit and no bet for `hours`; a shorter one never cuts a
/// longer one short.
pub struct StartTimeout {
    pub region: Arc<RegionConfig>,
    pub player: PlayerId,
    pub hours: u32,
}

impl LedgerCommand for StartTimeout {
    type Room = ();
    type Answer = LimitsView;
    type Refusal = LimitsError;
    fn kind(&self) -> &'static str {
        "rg_timeout"
    }
    fn apply(&self, _: &mut (), tx: &mut KernelTx<'_>) -> Result<Result<LimitsView, LimitsError>, StoreError> {
        let (hours, player) = (self.hours, self.player.clone());
        with_record(tx, &self.region, &self.player, |rg, _, now| {
            if !contracts::limits::TIMEOUT_HOURS.contains(&hours) {
                return Err(LimitsError::Invalid("a time-out lasts 24 to 1008 hours (six weeks)".into()));
            }
            let until = (now + Duration::hours(i64::from(hours))).max(rg.timeout_until.unwrap_or(now));
            rg.timeout_until = Some(until);
            Ok(vec![Emitted::Timeout(RgTimeoutStarted { player_id: player, until })])
        })
    }
}

/// `POST /players/{id}/self-exclusion`: no deposit and no bet here for `months`, which nothing
/// shortens.
pub struct SelfExclude {
    pub region: Arc<RegionConfig>,
    pub player: PlayerId,
    pub months: u32,
}

impl LedgerCommand for SelfExclude {
    type Room = ();
    type Answer = LimitsView;
    type Refusal = LimitsError;
    fn kind(&self) -> &'static str {
        "rg_self_exclusion"
    }
    fn apply(&self, _: &mut (), tx: &mut KernelTx<'_>) -> Result<Result<LimitsView, LimitsError>, StoreError> {
        let (months, player) = (self.months, self.player.clone());
        with_record(tx, &self.region, &self.player, |rg, _, now| {
            if !contracts::limits::SELF_EXCLUSION_MONTHS.contains(&months) {
                return Err(LimitsError::Invalid("a self-exclusion lasts 6 to 60 months".into()));
            }
            let end = now.checked_add_months(chrono::Months::new(months)).unwrap_or(now);
            let until = end.max(rg.excluded_until.unwrap_or(now));
            rg.excluded_until = Some(until);
            Ok(vec![Emitted::Excluded(RgSelfExclusionStarted { player_id: player, until })])
        })
    }
}

/// `POST /compliance/cases/{id}`: the compliance role decides an AML case. `cleared` lifts the
/// player's withdrawal hold; `confirmed` keeps it (the case goes on outside the platform).
pub struct DecideCase {
    pub region: Arc<RegionConfig>,
    pub case: contracts::limits::AmlCase,
    pub decision: String,
    pub reason: String,
}

impl LedgerCommand for DecideCase {
    type Room = ();
    type Answer = contracts::limits::AmlCase;
    type Refusal = LimitsError;
    fn kind(&self) -> &'static str {
        "aml_case_decide"
    }
    fn apply(&self, _: &mut (), tx: &mut KernelTx<'_>) -> Result<Result<Self::Answer, LimitsError>, StoreError> {
        if self.case.status != "open" {
            return Ok(Err(LimitsError::Invalid(format!("case {} is already {}", self.case.id, self.case.status))));
        }
        let player = &self.case.player_id;
        let registered = match tx.registered(player)? {
            Ok(registered) => registered,
            Err(refused) => return Ok(Err(refused.into())),
        };
        let now = tx.now();
        let decided = contracts::limits::AmlCase {
            status: self.decision.clone(),
            decided_at: Some(now),
            decision_reason: Some(self.reason.clone()),
            ..self.case.clone()
        };
        let (room, store) = tx.room::<RgRoom>();
        let rg = room.get(store, player, registered.currency, now)?;
        // The room, not the copy the API read: two decisions at once, one applies.
        if !rg.open_cases.contains(&decided.id) {
            return Ok(Err(LimitsError::Invalid(format!("case {} is already decided", decided.id))));
        }
        rg.open_cases.retain(|id| *id != decided.id);
        rg.aml_confirmed |= self.decision == "confirmed";
        // Withdrawals flow again once no case is open and none was confirmed.
        rg.aml_hold = rg.aml_confirmed || !rg.open_cases.is_empty();
        room.dirty.insert(player.clone());
        let case_key = super::keys::case(&decided.id);
        tx.store().set(&case_key, &rmp_serde::to_vec_named(&decided).expect("a case encodes"))?;
        let decision = contracts::limits::Decision {
            at: now,
            kind: "aml_case_decided".into(),
            rule: decided.rule.clone(),
            policy_version: self.region.policy_version.clone(),
            source: tx.operator().map_or_else(|| "compliance".to_owned(), |o| format!("{} ({})", o.role, o.token_id)),
            outcome: format!("{}: {}", self.decision, self.reason),
        };
        super::record_decision(tx.store(), player, &decision)?;
        tx.event(contracts::events::AmlCaseDecided {
            player_id: player.clone(),
            case_id: decided.id.clone(),
            decision: self.decision.clone(),
            operator: tx.operator(),
        })?;
        Ok(Ok(decided))
    }
}

/// What the national register last said of a registered player, for the gate: excluded (by which
/// register) or not.
pub struct RecordRegisterAnswer {
    pub region: Arc<RegionConfig>,
    pub player: PlayerId,
    pub excluded_by: Option<String>,
    /// When the register was asked.
    pub asked_at: DateTime<Utc>,
}

impl LedgerCommand for RecordRegisterAnswer {
    type Room = ();
    type Answer = ();
    type Refusal = LimitsError;
    fn kind(&self) -> &'static str {
        "rg_register_answer"
    }
    fn apply(&self, _: &mut (), tx: &mut KernelTx<'_>) -> Result<Result<(), LimitsError>, StoreError> {
        let registered = match tx.registered(&self.player)? {
            Ok(registered) => registered,
            Err(refused) => return Ok(Err(refused.into())),
        };
        let now = tx.now();
        let (room, store) = tx.room::<RgRoom>();
        let rg = room.get(store, &self.player, registered.currency, now)?;
        // Two checks at once (a login, a deposit) can reach the writer in either order.
        if rg.register_asked_at.is_some_and(|at| at > self.asked_at) {
            return Ok(Ok(()));
        }
        rg.register_asked_at = Some(self.asked_at);
        rg.register_excluded.clone_from(&self.excluded_by);
        room.dirty.insert(self.player.clone());
        Ok(Ok(()))
    }
}

/// The player's session as they see it.
fn session_view(player: &PlayerId, currency: Currency, rg: &PlayerRg) -> contracts::limits::SessionView {
    let (session, scale) = (&rg.session, currency.scale());
    contracts::limits::SessionView {
        player_id: player.clone(),
        currency,
        session_minutes: session.minutes,
        reality_check_minutes: session.reality_check_minutes,
        pending: session.pending.map(|(session_minutes, reality_check_minutes, effective_at)| {
            contracts::limits::PendingSessionLimits { session_minutes, reality_check_minutes, effective_at }
        }),
        started_at: session.started,
        ends_at: session.ends_at(),
        reality_check_due_at: session.reality_check_due_at(),
        staked: Amount::at_scale(session.staked, scale),
        returned: Amount::at_scale(session.returned, scale),
        net: Amount::at_scale(session.returned - session.staked, scale),
    }
}

/// What a session command changed.
enum SessionChange {
    Nothing,
    /// Stored, not a decision (a login starting a session).
    Quietly,
    /// Stored and logged as a decision: its kind, rule (without the jurisdiction) and outcome.
    Decided(&'static str, &'static str, String),
}

/// What the session commands do: `change` the player's session, then the view.
fn with_session(
    tx: &mut KernelTx<'_>,
    region: &RegionConfig,
    player: &PlayerId,
    change: impl FnOnce(&mut PlaySession, DateTime<Utc>) -> Result<SessionChange, LimitsError>,
) -> Result<Result<contracts::limits::SessionView, LimitsError>, StoreError> {
    let registered = match tx.registered(player)? {
        Ok(registered) => registered,
        Err(refused) => return Ok(Err(refused.into())),
    };
    let now = tx.now();
    let (room, store) = tx.room::<RgRoom>();
    let rg = room.get(store, player, registered.currency, now)?;
    let settled = rg.session.settle_pending(now);
    let mut session = rg.session.clone();
    let changed = match change(&mut session, now) {
        Ok(changed) => changed,
        Err(refused) => return Ok(Err(refused)),
    };
    rg.session = session;
    let view = session_view(player, registered.currency, rg);
    if settled || !matches!(changed, SessionChange::Nothing) {
        room.dirty.insert(player.clone());
    }
    if let SessionChange::Decided(kind, rule, outcome) = changed {
        let decision = contracts::limits::Decision {
            at: now,
            kind: kind.into(),
            rule: rule_id(region, rule, None),
            policy_version: region.policy_version.clone(),
            source: "player".into(),
            outcome,
        };
        super::record_decision(tx.store(), player, &decision)?;
    }
    Ok(Ok(view))
}

/// The session routes: read it, set its limits, acknowledge a reality check; and a login, which
/// starts a new one.
pub enum SessionCommand {
    Read,
    SetLimits(contracts::limits::SessionLimitsRequest),
    AcknowledgeRealityCheck,
    Start,
}

/// A session command for a player.
pub struct Session {
    pub region: Arc<RegionConfig>,
    pub player: PlayerId,
    pub command: SessionCommand,
}

impl LedgerCommand for Session {
    type Room = ();
    type Answer = contracts::limits::SessionView;
    type Refusal = LimitsError;
    fn kind(&self) -> &'static str {
        match self.command {
            SessionCommand::Read => "rg_session_read",
            SessionCommand::SetLimits(_) => "rg_session_limits",
            SessionCommand::AcknowledgeRealityCheck => "rg_reality_check",
            SessionCommand::Start => "rg_session_start",
        }
    }
    fn apply(&self, _: &mut (), tx: &mut KernelTx<'_>) -> Result<Result<Self::Answer, LimitsError>, StoreError> {
        let delay =
            Duration::hours(i64::from(self.region.deposit_limits.as_ref().map_or(24, |d| d.increase_delay_hours)));
        with_session(tx, &self.region, &self.player, |session, now| match &self.command {
            SessionCommand::Read => Ok(SessionChange::Nothing),
            SessionCommand::Start => {
                // A login continues a session that is still on (a second device, a re-login), one
                // whose time is up until the break after it is over, and one whose reality check
                // is due: logging in again resets neither limit.
                let keep = match session.ends_at() {
                    Some(ends) => now < ends + Duration::minutes(SESSION_BREAK_MINUTES),
                    None => session.reality_check_due_at().is_some_and(|due| due <= now),
                };
                if session.started.is_some() && keep {
                    return Ok(SessionChange::Nothing);
                }
                (session.started, session.reality_check_acknowledged) = (Some(now), Some(now));
                (session.staked, session.returned) = (Decimal::ZERO, Decimal::ZERO);
                Ok(SessionChange::Quietly)
            }
            SessionCommand::AcknowledgeRealityCheck => {
                session.reality_check_acknowledged = Some(now);
                let outcome = format!(
                    "acknowledged: {} staked, {} returned this session",
                    session.staked.normalize(),
                    session.returned.normalize()
                );
                Ok(SessionChange::Decided("reality_check", "PLAYER-REALITY-CHECK", outcome))
            }
            SessionCommand::SetLimits(request) => {
                let in_range =
                    |v: Option<u32>, range: std::ops::RangeInclusive<u32>| v.is_none_or(|v| range.contains(&v));
                if !in_range(request.session_minutes, contracts::limits::SESSION_MINUTES)
                    || !in_range(request.reality_check_minutes, contracts::limits::REALITY_CHECK_MINUTES)
                {
                    return Err(LimitsError::Invalid(
                        "sessionMinutes: 10 to 1440; realityCheckMinutes: 5 to 120 (or null for none)".into(),
                    ));
                }
                // Shorter (or newly set) is tighter; longer or removed waits the cooling-off.
                let tighter = |new: Option<u32>, old: Option<u32>| match (new, old) {
                    (Some(new), Some(old)) => new <= old,
                    (_, None) => true,
                    (None, Some(_)) => false,
                };
                let wanted = (request.session_minutes, request.reality_check_minutes);
                let show = |v: Option<u32>| v.map_or_else(|| "none".to_owned(), |m| format!("{m} min"));
                let what = format!("session {}, reality check every {}", show(wanted.0), show(wanted.1));
                if tighter(wanted.0, session.minutes) && tighter(wanted.1, session.reality_check_minutes) {
                    (session.minutes, session.reality_check_minutes, session.pending) = (wanted.0, wanted.1, None);
                    Ok(SessionChange::Decided("session_limits_set", "PLAYER-SESSION-LIMIT", what))
                } else {
                    let effective_at = now + delay;
                    session.pending = Some((wanted.0, wanted.1, effective_at));
                    let outcome = format!("{what} from {effective_at}");
                    Ok(SessionChange::Decided("session_limits_pending", "PLAYER-SESSION-LIMIT", outcome))
                }
            }
        })
    }
}

/// Appends the AML alerts registration kept aside (`keys::alert_to_chain`) to the audit chain and
/// the event log, and clears them, in one batch: after each registration that opened a case, and
/// at start (a registration that committed just before a crash). How many were chained.
pub struct ChainPendingAlerts;

/// Most alerts one command chains (the rest wait for the next).
pub const ALERTS_PER_COMMAND: usize = 100;

/// The alerts chained by batches not yet committed: a later batch reads the store as it was
/// before them (pipelined batches), so it must not chain them again.
#[derive(Default)]
pub struct ChainedAlerts {
    /// Keys chained in the batch being applied.
    applying: Vec<Vec<u8>>,
    /// Keys chained by each batch not yet committed.
    in_flight: Vec<(u64, Vec<u8>)>,
}

impl Room for ChainedAlerts {
    fn write(&mut self, _: &mut dyn Transaction, batch: u64) -> Result<(), StoreError> {
        self.in_flight.extend(self.applying.drain(..).map(|key| (batch, key)));
        Ok(())
    }
    fn committed(&mut self, batch: u64) {
        self.in_flight.retain(|(b, _)| *b > batch);
    }
    fn forget(&mut self) {
        self.applying.clear();
        self.in_flight.clear();
    }
    fn cached(&self) -> usize {
        self.in_flight.len()
    }
}

impl LedgerCommand for ChainPendingAlerts {
    type Room = ChainedAlerts;
    type Answer = usize;
    type Refusal = LimitsError;
    fn kind(&self) -> &'static str {
        "aml_alerts_chain"
    }
    fn apply(&self, room: &mut ChainedAlerts, tx: &mut KernelTx<'_>) -> Result<Result<usize, LimitsError>, StoreError> {
        let (begin, end) = super::keys::alerts_to_chain();
        let pending = tx.store().get_range(&begin, &end, ALERTS_PER_COMMAND, false)?;
        let mut chained = 0;
        for (key, value) in pending {
            let taken = |k: &Vec<u8>| *k == key;
            if room.applying.iter().any(taken) || room.in_flight.iter().any(|(_, k)| taken(k)) {
                continue;
            }
            let alert: contracts::events::AmlAlert =
                rmp_serde::from_slice(&value).map_err(|e| StoreError::corrupt(&key, e))?;
            tx.event(alert)?;
            tx.store().clear(&key)?;
            room.applying.push(key);
            chained += 1;
        }
        Ok(Ok(chained))
    }
}

/// A sanctions-list hit found by screening the players again (the list changed): opens case `id`
/// unless the player already has a case of that id (the same entry, matched before).
pub struct OpenSanctionsCase {
    pub region: Arc<RegionConfig>,
    pub player: PlayerId,
    pub id: String,
    pub rule: String,
    pub reason: String,
}

impl LedgerCommand for OpenSanctionsCase {
    type Room = ();
    /// Whether a case was opened.
    type Answer = bool;
    type Refusal = LimitsError;
    fn kind(&self) -> &'static str {
        "aml_case_open"
    }
    fn apply(&self, _: &mut (), tx: &mut KernelTx<'_>) -> Result<Result<bool, LimitsError>, StoreError> {
        let registered = match tx.registered(&self.player)? {
            Ok(registered) => registered,
            Err(refused) => return Ok(Err(refused.into())),
        };
        if tx.store().get(&super::keys::case(&self.id))?.is_some() {
            return Ok(Ok(false));
        }
        let now = tx.now();
        let (room, store) = tx.room::<RgRoom>();
        let rg = room.get(store, &self.player, registered.currency, now)?;
        // The same case, or the one registration opened before cases were named by their entry.
        if rg.open_cases.iter().any(|id| *id == self.id || *id == format!("case-{}", self.player)) {
            return Ok(Ok(false));
        }
        let policy = &self.region.policy_version;
        let alert = room.open_case(
            self.id.clone(),
            &self.player,
            &self.rule,
            "sanctions list",
            policy,
            self.reason.clone(),
            now,
        );
        tx.event(alert)?;
        Ok(Ok(true))
    }
}

/// `POST /kyc/webhook`: the vendor's result for a player's check. A result for a check already
/// decided changes nothing (a duplicated webhook); one for a check this player was not given is
/// refused (`NOT_FOUND`), which the vendor retries (it may come before the registration commits).
pub struct RecordKyc {
    pub region: Arc<RegionConfig>,
    pub player: PlayerId,
    pub check_id: String,
    pub outcome: super::kyc::KycOutcome,
}

impl LedgerCommand for RecordKyc {
    type Room = ();
    type Answer = KycStatus;
    type Refusal = LimitsError;
    fn kind(&self) -> &'static str {
        "kyc_result"
    }
    fn apply(&self, _: &mut (), tx: &mut KernelTx<'_>) -> Result<Result<KycStatus, LimitsError>, StoreError> {
        use super::kyc::KycOutcome;
        let registered = match tx.registered(&self.player)? {
            Ok(registered) => registered,
            Err(refused) => return Ok(Err(refused.into())),
        };
        let now = tx.now();
        let (room, store) = tx.room::<RgRoom>();
        let rg = room.get(store, &self.player, registered.currency, now)?;
        let Some(kyc) = rg.kyc.as_mut().filter(|k| k.check_id == self.check_id) else {
            return Ok(Err(LimitsError::UnknownCheck(format!(
                "player {} has no identity check {}",
                self.player, self.check_id
            ))));
        };
        if kyc.status != KycStatus::Pending {
            return Ok(Ok(kyc.status));
        }
        (kyc.status, kyc.reason) = match &self.outcome {
            KycOutcome::Verified => (KycStatus::Verified, None),
            KycOutcome::Failed { reason } => (KycStatus::Failed, Some(reason.clone())),
        };
        kyc.decided_at = Some(now);
        let (status, vendor) = (kyc.status, kyc.vendor.clone());
        room.dirty.insert(self.player.clone());
        let decision = contracts::limits::Decision {
            at: now,
            kind: "kyc".into(),
            rule: rule_id(&self.region, "KYC", None),
            policy_version: self.region.policy_version.clone(),
            source: vendor.clone(),
            outcome: match &self.outcome {
                KycOutcome::Verified => format!("verified (check {})", self.check_id),
                KycOutcome::Failed { reason } => format!("failed (check {}): {reason}", self.check_id),
            },
        };
        super::record_decision(tx.store(), &self.player, &decision)?;
        let (player_id, check_id) = (self.player.clone(), self.check_id.clone());
        match &self.outcome {
            KycOutcome::Verified => tx.event(contracts::events::KycVerified { player_id, check_id, vendor })?,
            KycOutcome::Failed { reason } => {
                tx.event(contracts::events::KycFailed { player_id, check_id, vendor, reason: reason.clone() })?
            }
        }
        Ok(Ok(status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_start_on_their_first_day() {
        let wednesday = NaiveDate::from_ymd_opt(2026, 12, 9).unwrap();
        assert_eq!(period_start(LimitPeriod::Day, wednesday), wednesday);
        assert_eq!(period_start(LimitPeriod::Week, wednesday), NaiveDate::from_ymd_opt(2026, 12, 7).unwrap());
        assert_eq!(period_start(LimitPeriod::Month, wednesday), NaiveDate::from_ymd_opt(2026, 12, 1).unwrap());
    }

    #[test]
    fn a_counter_of_an_earlier_period_counts_nothing_and_losses_do_not_go_negative() {
        let mut rg = PlayerRg::default();
        let monday = NaiveDate::from_ymd_opt(2026, 12, 7).unwrap();
        rg.count(monday, |c| c.deposited += Decimal::from(10));
        rg.count(monday, |c| c.returned += Decimal::from(5));
        assert_eq!(rg.counter(LimitPeriod::Day, monday).used(LimitKind::Deposit), Decimal::from(10));
        assert_eq!(rg.counter(LimitPeriod::Day, monday).used(LimitKind::Loss), Decimal::ZERO);
        let tuesday = monday.succ_opt().unwrap();
        assert_eq!(rg.counter(LimitPeriod::Day, tuesday).used(LimitKind::Deposit), Decimal::ZERO);
        assert_eq!(rg.counter(LimitPeriod::Week, tuesday).used(LimitKind::Deposit), Decimal::from(10));
    }
}
