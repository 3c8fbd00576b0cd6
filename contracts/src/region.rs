//! Region files (`config/regions/*.toml`): one per cell, the data that makes a cell a jurisdiction's
//! cell. Loading checks every field and names the file, the field and the problem on failure.
//!
//! Rules are data with effective dates and a policy version, so a rule change is a reviewed edit
//! of a file, and every decision taken under it can say which version it used.

use crate::catalog::GameType;
use crate::flags::{FlagKey, FlagLock, FlagValue};
use crate::{CountryCode, Currency, Jurisdiction, Money};
use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};

/// A region file that could not be loaded: which file, and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("region file {}: {kind}", path.display())]
pub struct RegionFileError {
    pub path: PathBuf,
    #[source]
    pub kind: RegionFileErrorKind,
}

#[derive(Debug, thiserror::Error)]
pub enum RegionFileErrorKind {
    #[error("cannot read it")]
    Read(#[source] std::io::Error),
    /// Bad TOML, an unknown field, a missing field or a wrong type; the message names the field
    /// and the line.
    #[error("{0}")]
    Syntax(String),
    #[error("field `{field}`: {problem}")]
    Invalid { field: String, problem: String },
    #[error("missing rule: {0}")]
    MissingRule(String),
}

/// National self-exclusion registers a cell checks before play and deposits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
pub enum SelfExclusionRegister {
    /// Great Britain.
    #[serde(rename = "GAMSTOP")]
    Gamstop,
    /// Denmark: Register Over Frivilligt Udelukkede Spillere.
    #[serde(rename = "ROFUS")]
    Rofus,
    /// Sweden.
    #[serde(rename = "SPELPAUS")]
    Spelpaus,
    /// Spain: Registro General de Interdicciones de Acceso al Juego.
    #[serde(rename = "RGIAJ")]
    Rgiaj,
    /// No national register (Malta): the operator's own exclusion list.
    #[serde(rename = "OPERATOR")]
    Operator,
}

impl SelfExclusionRegister {
    /// The register each jurisdiction's law names.
    fn required_for(j: Jurisdiction) -> SelfExclusionRegister {
        match j {
            Jurisdiction::Uk => SelfExclusionRegister::Gamstop,
            Jurisdiction::Dk => SelfExclusionRegister::Rofus,
            Jurisdiction::Se => SelfExclusionRegister::Spelpaus,
            Jurisdiction::Es => SelfExclusionRegister::Rgiaj,
            Jurisdiction::Mt => SelfExclusionRegister::Operator,
        }
    }
}

impl fmt::Display for SelfExclusionRegister {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            SelfExclusionRegister::Gamstop => "GAMSTOP",
            SelfExclusionRegister::Rofus => "ROFUS",
            SelfExclusionRegister::Spelpaus => "SPELPAUS",
            SelfExclusionRegister::Rgiaj => "RGIAJ",
            SelfExclusionRegister::Operator => "OPERATOR",
        };
        f.write_str(name)
    }
}

/// A limit's period: a calendar day, week (from Monday) or month, in UTC.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, serde::Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum LimitPeriod {
    Day,
    Week,
    Month,
}

// ---- the file as written --------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegionFile {
    cell_id: String,
    jurisdiction: Jurisdiction,
    regulator: String,
    licensed_countries: Vec<String>,
    currencies: Vec<String>,
    default_currency: String,
    minimum_age: u8,
    export_format: String,
    travel: TravelFile,
    endpoints: EndpointsFile,
    self_exclusion: SelfExclusionFile,
    kyc: KycFile,
    aml: AmlFile,
    cashier: CashierFile,
    rules: RulesFile,
    #[serde(default)]
    flag_locks: Vec<FlagLockFile>,
    #[serde(default)]
    exports: ExportsFile,
    #[serde(default)]
    replication: ReplicationFile,
}

/// `[replication]`: how a commit is made durable, and where this jurisdiction's standbys may run.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplicationFile {
    #[serde(default)]
    durability: ReplicaDurability,
    #[serde(default)]
    standby_sites: Vec<String>,
    #[serde(default)]
    source: String,
}

/// `[exports]`: the regulator's identities of the operator, and which exports are built when.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportsFile {
    #[serde(default)]
    operator_id: Option<String>,
    #[serde(default)]
    warehouse_id: Option<String>,
    #[serde(default)]
    realtime: Vec<String>,
    #[serde(default)]
    daily: Vec<String>,
    #[serde(default)]
    monthly: Vec<String>,
    #[serde(default)]
    quarterly: Vec<String>,
}

/// `[[flag_locks]]`: a flag whose value the law of this jurisdiction pins.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FlagLockFile {
    flag: String,
    /// A boolean or a string, checked by hand so the error names the field.
    value: toml::Value,
    rule: String,
    source: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TravelFile {
    wagering_abroad: bool,
    deposits_abroad: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EndpointsFile {
    primary: String,
    standby: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SelfExclusionFile {
    register: SelfExclusionRegister,
    /// When the register is asked; registration and every login unless the file says otherwise.
    #[serde(default = "default_check_at")]
    check_at: Vec<ExclusionCheckPoint>,
    /// How long a "not excluded" answer may be reused, in seconds.
    #[serde(default = "default_answer_cache_seconds")]
    answer_cache_seconds: u64,
}

fn default_check_at() -> Vec<ExclusionCheckPoint> {
    vec![ExclusionCheckPoint::Registration, ExclusionCheckPoint::Login]
}

fn default_answer_cache_seconds() -> u64 {
    3600
}

/// When a cell asks its self-exclusion register about a player.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ExclusionCheckPoint {
    Registration,
    Login,
    Deposit,
}

/// `[kyc]`: what registration asks for, and what a player not yet verified may do.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KycFile {
    /// Profile fields registration requires besides names, email, phone and address.
    #[serde(default)]
    required: Vec<ProfileField>,
    /// The identity documents accepted (all when empty).
    #[serde(default)]
    documents: Vec<crate::players::DocumentKind>,
    /// `nothing` (no deposit, no bet) or `limited` (under `deposit_allowance`, for `window_days`).
    before_verification: BeforeVerification,
    deposit_allowance: Option<String>,
    window_days: Option<u32>,
    /// Whether an unverified player may withdraw (the money goes back where it came from).
    withdrawals_before_verification: bool,
    source: String,
}

/// `[cashier]`: how withdrawals are reviewed.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CashierFile {
    /// Withdrawals above this amount wait for the finance role.
    withdrawal_review_above: String,
    /// Whether a player may cancel a withdrawal while it waits (the UK bans reversing them).
    withdrawals_cancellable: bool,
    source: String,
}

/// `[aml]`: the sanctions screening threshold and the monitoring rules.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AmlFile {
    /// How alike (Jaro-Winkler, 0 to 1, after normalising) a name must be to a listed one.
    match_threshold: f64,
    #[serde(default)]
    rules: Vec<AmlRuleFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AmlRuleFile {
    id: String,
    kind: AmlRuleKind,
    window_days: u32,
    /// `deposits_over`: the amount deposits in the window may reach before due diligence;
    /// `withdrawal_after_little_play`: the deposits in the window from which the rule looks.
    threshold: Option<String>,
    /// `withdrawal_after_little_play`: the share of the window's deposits that must have been
    /// staked for a withdrawal not to be flagged.
    play_ratio: Option<String>,
    /// `payment_methods`: how many distinct payment methods deposits in the window may use.
    max_methods: Option<u32>,
    effective_from: NaiveDate,
    source: String,
}

/// A profile field a region can require.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ProfileField {
    Nationality,
    IdentityDocument,
    FiscalRegion,
    Sex,
}

/// What a player whose identity is not yet verified may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BeforeVerification {
    /// No deposit and no bet (UK).
    Nothing,
    /// Deposits up to an allowance, within a window from registration.
    Limited,
}

/// What an AML monitoring rule watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AmlRuleKind {
    /// Deposits in the window over a threshold: enhanced due diligence.
    DepositsOver,
    /// A withdrawal after deposits in the window (at least a threshold) of which little was staked.
    WithdrawalAfterLittlePlay,
    /// Deposits in the window from more distinct payment methods than allowed.
    PaymentMethods,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    policy_version: String,
    #[serde(default)]
    stake_limits: Vec<StakeLimitFile>,
    deposit_limits: Option<DepositLimitsFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StakeLimitFile {
    id: String,
    /// A closed set: a typo (`slot` for `slots`) is refused at load, with the allowed values,
    /// rather than silently matching no game.
    product: GameType,
    max_stake: String,
    age_from: u8,
    age_to: Option<u8>,
    effective_from: NaiveDate,
    source: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DepositLimitsFile {
    mandatory: bool,
    periods: Vec<LimitPeriod>,
    increase_delay_hours: u32,
    #[serde(default)]
    defaults: Vec<DefaultLimitFile>,
    source: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DefaultLimitFile {
    period: LimitPeriod,
    amount: String,
}

// ---- the checked config ---------------------------------------------------------------------

/// A cell's region, checked.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RegionConfig {
    pub cell_id: String,
    pub jurisdiction: Jurisdiction,
    pub regulator: String,
    pub licensed_countries: Vec<CountryCode>,
    pub currencies: Vec<Currency>,
    pub default_currency: Currency,
    pub minimum_age: u8,
    pub export_format: String,
    /// Whether a player of this cell may wager / deposit while connecting from a country outside
    /// `licensed_countries`. Login, balance, limits, self-exclusion and withdrawals always stay open.
    pub wagering_abroad: bool,
    pub deposits_abroad: bool,
    pub primary_endpoint: String,
    pub standby_endpoint: Option<String>,
    pub self_exclusion_register: SelfExclusionRegister,
    pub self_exclusion_check_at: Vec<ExclusionCheckPoint>,
    pub self_exclusion_cache_seconds: u64,
    pub policy_version: String,
    pub stake_limits: Vec<StakeLimit>,
    pub deposit_limits: Option<DepositLimits>,
    pub kyc: KycRules,
    pub aml: AmlRules,
    pub cashier: CashierRules,
    /// Flags the law pins in this region: the control plane refuses any flag change that could
    /// serve another value here, and the cell's evaluation serves the pinned value regardless.
    pub flag_locks: Vec<FlagLock>,
    pub exports: ExportSettings,
    pub replication: ReplicationSettings,
}

/// When a player's write is acknowledged, in a cell with standbys.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReplicaDurability {
    /// Once the primary holds it durably (a standby may lag: the loss on failover is the lag).
    #[default]
    Async,
    /// Once the primary and at least one standby hold it durably (nothing acknowledged is lost).
    Sync,
}

/// `[replication]`: durability and data residency.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReplicationSettings {
    pub durability: ReplicaDurability,
    /// Sites (`cell serve --site`) where a standby may run; a standby elsewhere is refused at
    /// connect. Personal data and money never leave the jurisdiction.
    pub standby_sites: Vec<String>,
    /// The law or licence condition the residency rule comes from.
    pub source: String,
}

/// `[exports]`: how the regulator names the operator, and the export types (the regulator's own
/// record names) built every quarter of an hour (real time), day, month and quarter.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ExportSettings {
    /// The regulator's id of the operator (DGOJ `OperadorId`, at most 4 characters).
    pub operator_id: String,
    /// The operator's data warehouse (DGOJ `AlmacenId`, at most 10 characters).
    pub warehouse_id: String,
    pub realtime: Vec<String>,
    pub daily: Vec<String>,
    pub monthly: Vec<String>,
    pub quarterly: Vec<String>,
}

/// A maximum stake per game round for players in an age band, from a date.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StakeLimit {
    pub id: String,
    pub product: GameType,
    pub max_stake: Money,
    pub age_from: u8,
    pub age_to: Option<u8>,
    pub effective_from: NaiveDate,
    pub source: String,
}

/// The most a player may stake in one game round (one spin) of a product, and the rule that says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StakeCap {
    pub rule: String,
    pub policy_version: String,
    /// In the stake's currency; zero when the only applicable rule is in another currency (it
    /// cannot be compared, and a limit is never skipped).
    pub max: Decimal,
}

/// Deposit-limit rules.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DepositLimits {
    /// The player must set a limit for each of `periods` before depositing.
    pub mandatory: bool,
    pub periods: Vec<LimitPeriod>,
    /// An increase takes effect only after this long; a decrease at once.
    pub increase_delay_hours: u32,
    /// Limits applied when the player has set none.
    pub defaults: Vec<(LimitPeriod, Money)>,
    pub source: String,
}

/// What registration asks for, and what a player the KYC vendor has not verified may do.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KycRules {
    pub required: Vec<ProfileField>,
    /// The identity documents accepted (all when empty).
    pub documents: Vec<crate::players::DocumentKind>,
    pub before_verification: BeforeVerification,
    /// `Limited`: what an unverified player may deposit in all, and for how long from registration.
    pub deposit_allowance: Option<Money>,
    pub window_days: u32,
    pub withdrawals_before_verification: bool,
    pub source: String,
}

/// The longest window an AML rule may watch: a cell keeps this many days of each active
/// player's deposits and stakes at hand.
pub const AML_WINDOW_DAYS_MAX: u32 = 31;

/// How withdrawals are reviewed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CashierRules {
    /// Withdrawals above this wait for the finance role.
    pub withdrawal_review_above: Money,
    pub withdrawals_cancellable: bool,
    pub source: String,
}

/// Sanctions screening and AML monitoring.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AmlRules {
    pub match_threshold: f64,
    pub rules: Vec<AmlRule>,
}

/// One monitoring rule, in force from a date.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AmlRule {
    pub id: String,
    pub kind: AmlRuleKind,
    pub window_days: u32,
    pub threshold: Option<Money>,
    pub play_ratio: Option<Decimal>,
    pub max_methods: Option<u32>,
    pub effective_from: NaiveDate,
    pub source: String,
}

impl AmlRules {
    /// The rules of `kind` in force on `day`.
    pub fn in_force(&self, kind: AmlRuleKind, day: NaiveDate) -> impl Iterator<Item = &AmlRule> {
        self.rules.iter().filter(move |r| r.kind == kind && r.effective_from <= day)
    }
}

impl RegionConfig {
    /// Loads and checks one region file.
    pub fn from_file(path: &Path) -> Result<RegionConfig, RegionFileError> {
        let fail = |kind| RegionFileError { path: path.to_owned(), kind };
        let text = std::fs::read_to_string(path).map_err(|e| fail(RegionFileErrorKind::Read(e)))?;
        Self::from_toml(&text).map_err(fail)
    }

    /// Loads every `*.toml` under `dir`, sorted by cell id; cell ids must be unique.
    pub fn load_dir(dir: &Path) -> Result<Vec<RegionConfig>, RegionFileError> {
        let fail = |kind| RegionFileError { path: dir.to_owned(), kind };
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| fail(RegionFileErrorKind::Read(e)))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        paths.sort();
        let mut regions: Vec<RegionConfig> = Vec::new();
        for path in paths {
            let region = RegionConfig::from_file(&path)?;
            if regions.iter().any(|r| r.cell_id == region.cell_id) {
                return Err(RegionFileError {
                    path,
                    kind: invalid("cell_id", format!("`{}` is used by another region file", region.cell_id)),
                });
            }
            regions.push(region);
        }
        regions.sort_by(|a, b| a.cell_id.cmp(&b.cell_id));
        Ok(regions)
    }

    pub fn from_toml(text: &str) -> Result<RegionConfig, RegionFileErrorKind> {
        let file: RegionFile = toml::from_str(text).map_err(|e| RegionFileErrorKind::Syntax(e.to_string()))?;
        check(file)
    }

    /// Whether this cell's licence covers players connecting from `country`.
    pub fn is_licensed_for(&self, country: CountryCode) -> bool {
        self.licensed_countries.contains(&country)
    }

    /// Whether this cell books `currency`.
    pub fn books(&self, currency: Currency) -> bool {
        self.currencies.contains(&currency)
    }
}

fn invalid(field: impl Into<String>, problem: impl Into<String>) -> RegionFileErrorKind {
    RegionFileErrorKind::Invalid { field: field.into(), problem: problem.into() }
}

fn check(f: RegionFile) -> Result<RegionConfig, RegionFileErrorKind> {
    let cell_ok = !f.cell_id.is_empty()
        && f.cell_id.len() <= 16
        && f.cell_id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !cell_ok {
        return Err(invalid("cell_id", format!("`{}` must be 1 to 16 lower-case letters or digits", f.cell_id)));
    }
    if f.licensed_countries.is_empty() {
        return Err(invalid("licensed_countries", "a cell must be licensed for at least one country"));
    }
    let licensed_countries = f
        .licensed_countries
        .iter()
        .enumerate()
        .map(|(i, c)| CountryCode::new(c).map_err(|p| invalid(format!("licensed_countries[{i}]"), p)))
        .collect::<Result<Vec<_>, _>>()?;
    let currencies = f
        .currencies
        .iter()
        .enumerate()
        .map(|(i, c)| Currency::from_code(c).map_err(|p| invalid(format!("currencies[{i}]"), p.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    if currencies.is_empty() {
        return Err(invalid("currencies", "a cell must book at least one currency"));
    }
    let default_currency =
        Currency::from_code(&f.default_currency).map_err(|p| invalid("default_currency", p.to_string()))?;
    if !currencies.contains(&default_currency) {
        return Err(invalid("default_currency", format!("{default_currency} is not in `currencies`")));
    }
    if !(18..=25).contains(&f.minimum_age) {
        return Err(invalid(
            "minimum_age",
            format!("{} is outside 18..=25, the range any licence sets", f.minimum_age),
        ));
    }
    for (field, url) in
        [("endpoints.primary", Some(&f.endpoints.primary)), ("endpoints.standby", f.endpoints.standby.as_ref())]
    {
        if let Some(url) = url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(invalid(field, format!("`{url}` is not an http(s) URL")));
            }
        }
    }
    let register = SelfExclusionRegister::required_for(f.jurisdiction);
    if f.self_exclusion.register != register {
        return Err(RegionFileErrorKind::MissingRule(format!(
            "{:?} requires the {register} self-exclusion register, the file names {}",
            f.jurisdiction, f.self_exclusion.register
        )));
    }
    if f.rules.policy_version.trim().is_empty() {
        return Err(invalid("rules.policy_version", "must name the policy version decisions are logged under"));
    }
    let money = |field: String, text: &str| -> Result<Money, RegionFileErrorKind> {
        let amount = Decimal::from_str_exact(text)
            .map_err(|_| invalid(field.clone(), format!("`{text}` is not a decimal amount")))?;
        Money::positive(amount, default_currency).map_err(|e| invalid(field, e.to_string()))
    };
    let mut stake_limits = Vec::new();
    for (i, s) in f.rules.stake_limits.iter().enumerate() {
        let field = |name: &str| format!("rules.stake_limits[{i}].{name}");
        if s.age_from < f.minimum_age || s.age_to.is_some_and(|to| to < s.age_from) {
            return Err(invalid(field("age_from"), "the age band is empty or starts below the minimum age"));
        }
        stake_limits.push(StakeLimit {
            id: s.id.clone(),
            product: s.product,
            max_stake: money(field("max_stake"), &s.max_stake)?,
            age_from: s.age_from,
            age_to: s.age_to,
            effective_from: s.effective_from,
            source: s.source.clone(),
        });
    }
    let deposit_limits = match &f.rules.deposit_limits {
        None => None,
        Some(d) => {
            if d.mandatory && d.periods.is_empty() {
                return Err(invalid("rules.deposit_limits.periods", "mandatory limits need at least one period"));
            }
            let defaults = d
                .defaults
                .iter()
                .enumerate()
                .map(|(i, l)| Ok((l.period, money(format!("rules.deposit_limits.defaults[{i}].amount"), &l.amount)?)))
                .collect::<Result<Vec<_>, RegionFileErrorKind>>()?;
            Some(DepositLimits {
                mandatory: d.mandatory,
                periods: d.periods.clone(),
                increase_delay_hours: d.increase_delay_hours,
                defaults,
                source: d.source.clone(),
            })
        }
    };
    let kyc = check_kyc(&f.kyc, &money)?;
    let aml = check_aml(&f.aml, &money)?;
    if f.cashier.source.trim().is_empty() {
        return Err(invalid("cashier.source", "must say where the rule comes from"));
    }
    let cashier = CashierRules {
        withdrawal_review_above: money("cashier.withdrawal_review_above".into(), &f.cashier.withdrawal_review_above)?,
        withdrawals_cancellable: f.cashier.withdrawals_cancellable,
        source: f.cashier.source.clone(),
    };
    let mut flag_locks: Vec<FlagLock> = Vec::new();
    for (i, l) in f.flag_locks.iter().enumerate() {
        let field = |name: &str| format!("flag_locks[{i}].{name}");
        let flag = FlagKey::new(l.flag.clone()).map_err(|p| invalid(field("flag"), p))?;
        if flag_locks.iter().any(|other| other.flag == flag) {
            return Err(invalid(field("flag"), format!("`{flag}` is locked twice: one lock per flag")));
        }
        let value = match &l.value {
            toml::Value::Boolean(b) => FlagValue::Bool(*b),
            toml::Value::String(s) if !s.is_empty() => FlagValue::String(s.clone()),
            other => {
                return Err(invalid(field("value"), format!("`{other}` is neither a boolean nor a non-empty string")))
            }
        };
        if l.rule.trim().is_empty() {
            return Err(invalid(field("rule"), "must name the rule refusals will cite"));
        }
        if l.source.trim().is_empty() {
            return Err(invalid(field("source"), "must say where the rule comes from"));
        }
        flag_locks.push(FlagLock { flag, value, rule: l.rule.clone(), source: l.source.clone() });
    }
    // Rules the law of each jurisdiction makes mandatory.
    match f.jurisdiction {
        Jurisdiction::Uk if stake_limits.is_empty() => {
            return Err(RegionFileErrorKind::MissingRule(
                "UK requires online slot stake limits (rules.stake_limits)".into(),
            ))
        }
        Jurisdiction::Se if !deposit_limits.as_ref().is_some_and(|d| d.mandatory && d.increase_delay_hours >= 72) => {
            return Err(RegionFileErrorKind::MissingRule(
                "Sweden requires mandatory deposit limits whose increases wait 72 hours (rules.deposit_limits)".into(),
            ))
        }
        _ => {}
    }
    let warehouse = f.cell_id.to_uppercase();
    Ok(RegionConfig {
        cell_id: f.cell_id,
        jurisdiction: f.jurisdiction,
        regulator: f.regulator,
        licensed_countries,
        currencies,
        default_currency,
        minimum_age: f.minimum_age,
        export_format: f.export_format,
        exports: ExportSettings {
            operator_id: f.exports.operator_id.unwrap_or_else(|| "OP01".into()),
            warehouse_id: f.exports.warehouse_id.unwrap_or(warehouse),
            realtime: f.exports.realtime,
            daily: f.exports.daily,
            monthly: f.exports.monthly,
            quarterly: f.exports.quarterly,
        },
        replication: ReplicationSettings {
            durability: f.replication.durability,
            standby_sites: f.replication.standby_sites,
            source: f.replication.source,
        },
        wagering_abroad: f.travel.wagering_abroad,
        deposits_abroad: f.travel.deposits_abroad,
        primary_endpoint: f.endpoints.primary,
        standby_endpoint: f.endpoints.standby,
        self_exclusion_register: f.self_exclusion.register,
        self_exclusion_check_at: f.self_exclusion.check_at,
        self_exclusion_cache_seconds: f.self_exclusion.answer_cache_seconds,
        policy_version: f.rules.policy_version,
        stake_limits,
        deposit_limits,
        kyc,
        aml,
        cashier,
        flag_locks,
    })
}

type MoneyField<'a> = &'a dyn Fn(String, &str) -> Result<Money, RegionFileErrorKind>;

fn check_kyc(k: &KycFile, money: MoneyField<'_>) -> Result<KycRules, RegionFileErrorKind> {
    if k.source.trim().is_empty() {
        return Err(invalid("kyc.source", "must say where the rule comes from"));
    }
    let (deposit_allowance, window_days) = match (k.before_verification, &k.deposit_allowance, k.window_days) {
        (BeforeVerification::Nothing, None, None) => (None, 0),
        (BeforeVerification::Nothing, _, _) => {
            return Err(invalid("kyc.deposit_allowance", "`nothing` before verification takes no allowance or window"))
        }
        (BeforeVerification::Limited, Some(allowance), Some(days)) if days > 0 => {
            (Some(money("kyc.deposit_allowance".into(), allowance)?), days)
        }
        (BeforeVerification::Limited, _, _) => {
            return Err(invalid(
                "kyc.window_days",
                "`limited` before verification needs a deposit_allowance and a window_days above 0",
            ))
        }
    };
    Ok(KycRules {
        required: k.required.clone(),
        documents: k.documents.clone(),
        before_verification: k.before_verification,
        deposit_allowance,
        window_days,
        withdrawals_before_verification: k.withdrawals_before_verification,
        source: k.source.clone(),
    })
}

fn check_aml(a: &AmlFile, money: MoneyField<'_>) -> Result<AmlRules, RegionFileErrorKind> {
    if !(0.5..=1.0).contains(&a.match_threshold) {
        return Err(invalid("aml.match_threshold", format!("{} is outside 0.5..=1.0", a.match_threshold)));
    }
    let mut rules: Vec<AmlRule> = Vec::new();
    for (i, r) in a.rules.iter().enumerate() {
        let field = |name: &str| format!("aml.rules[{i}].{name}");
        if r.id.trim().is_empty() || rules.iter().any(|other| other.id == r.id) {
            return Err(invalid(field("id"), "each rule needs an id of its own"));
        }
        if r.source.trim().is_empty() {
            return Err(invalid(field("source"), "must say where the rule comes from"));
        }
        if !(1..=AML_WINDOW_DAYS_MAX).contains(&r.window_days) {
            return Err(invalid(field("window_days"), format!("1 to {AML_WINDOW_DAYS_MAX} days")));
        }
        let threshold = r.threshold.as_deref().map(|t| money(field("threshold"), t)).transpose()?;
        let play_ratio = match &r.play_ratio {
            Some(text) => Some(
                Decimal::from_str_exact(text)
                    .ok()
                    .filter(|d| *d > Decimal::ZERO && *d <= Decimal::ONE)
                    .ok_or_else(|| invalid(field("play_ratio"), format!("`{text}` is not a share in (0, 1]")))?,
            ),
            None => None,
        };
        let needs = match r.kind {
            AmlRuleKind::DepositsOver => threshold.is_some().then_some(()).ok_or("a threshold"),
            AmlRuleKind::WithdrawalAfterLittlePlay => {
                (play_ratio.is_some() && threshold.is_some()).then_some(()).ok_or("a play_ratio and a threshold")
            }
            AmlRuleKind::PaymentMethods => r.max_methods.filter(|m| *m > 0).map(|_| ()).ok_or("a max_methods above 0"),
        };
        if let Err(what) = needs {
            return Err(invalid(field("kind"), format!("{:?} needs {what}", r.kind)));
        }
        rules.push(AmlRule {
            id: r.id.clone(),
            kind: r.kind,
            window_days: r.window_days,
            threshold,
            play_ratio,
            max_methods: r.max_methods,
            effective_from: r.effective_from,
            source: r.source.clone(),
        });
    }
    Ok(AmlRules { match_threshold: a.match_threshold, rules })
}

#[cfg(test)]
mod flag_lock_tests {
    use super::*;

    const UK: &str = include_str!("../../config/regions/uk.toml");

    fn refusal(edit: impl Fn(&str) -> String) -> String {
        RegionConfig::from_toml(&edit(UK)).expect_err("the edited file is refused").to_string()
    }

    #[test]
    fn uk_pins_autoplay_off() {
        let uk = RegionConfig::from_toml(UK).unwrap();
        let autoplay = uk.flag_locks.iter().find(|l| l.flag.as_str() == "autoplay").unwrap();
        assert_eq!((&autoplay.value, autoplay.rule.as_str()), (&FlagValue::Bool(false), "UKGC-RTS14-AUTOPLAY"));
    }

    #[test]
    fn bad_locks_name_the_field() {
        let m = refusal(|t| t.replace("flag = \"autoplay\"", "flag = \"Auto Play\""));
        assert!(m.contains("flag_locks[0].flag") && m.contains("not a flag key"), "{m}");
        let m = refusal(|t| t.replace("value = false\nrule = \"UKGC-RTS14-AUTOPLAY\"", "value = 3\nrule = \"X\""));
        assert!(m.contains("flag_locks[0].value"), "{m}");
        let m = refusal(|t| t.replace("flag = \"quick-spin\"", "flag = \"autoplay\""));
        assert!(m.contains("flag_locks[1].flag") && m.contains("locked twice"), "{m}");
        let m = refusal(|t| t.replace("rule = \"UKGC-RTS14-AUTOPLAY\"", "rule = \" \""));
        assert!(m.contains("flag_locks[0].rule"), "{m}");
        let m = refusal(|t| t.replace("rule = \"UKGC-RTS14-AUTOPLAY\"", "rule = \"X\"\nregion = \"uk\""));
        assert!(m.contains("unknown field `region`"), "{m}");
    }
}
