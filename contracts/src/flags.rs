//! Feature flags (DESIGN.md section 8): the flag model the control plane stores and every cell
//! holds a copy of, and [`evaluate`], the one evaluation function both use, so a cell answers
//! exactly what the control plane would, from its local copy, when the control plane is gone.
//!
//! Evaluation follows OpenFeature's contract: a value, the variant that carries it, a `reason`
//! and, on failure, an `errorCode`. Percentage splits hash `flagKey` and the player id with
//! SHA-256, so a player lands in the same bucket in every process, on every machine and in every
//! version of this code: the bucket function is part of the contract (see [`split_bucket`]).
//!
//! The change log that carries flags and the catalog alike is `crate::changes`.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt;

/// Version of the flag shapes; bump with any change to them.
pub const FLAGS_API_VERSION: &str = "1";

/// Longest flag key, in bytes: keys appear in URLs, store keys and metrics labels.
pub const FLAG_KEY_BYTES_MAX: usize = 64;
/// Variants per flag. A flag with more is a configuration system, not a flag.
pub const FLAG_VARIANTS_MAX: usize = 32;
/// Targeting rules per flag: evaluation walks them in order on every call.
pub const FLAG_RULES_MAX: usize = 64;
/// Clauses per rule.
pub const RULE_CLAUSES_MAX: usize = 16;
/// Values a clause may list (e.g. countries); large segments belong in a segment service.
pub const CLAUSE_VALUES_MAX: usize = 256;
/// Longest string anywhere in a flag (variant names and values, attributes, ids), in bytes.
pub const FLAG_TEXT_BYTES_MAX: usize = 256;
/// A split's weights are in basis points of this total, so 1 = 0.01 % of players.
pub const SPLIT_WEIGHT_TOTAL: u32 = 10_000;

/// A flag's key: 1 to 64 of `a-z 0-9 . _ -`, starting with a letter or digit (`autoplay`,
/// `lobby.new-layout`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, JsonSchema)]
#[serde(transparent)]
pub struct FlagKey(#[schemars(regex(pattern = r"^[a-z0-9][a-z0-9._-]{0,63}$"))] String);

impl FlagKey {
    pub fn new(key: impl Into<String>) -> Result<FlagKey, String> {
        let key = key.into();
        let ok = !key.is_empty()
            && key.len() <= FLAG_KEY_BYTES_MAX
            && key.as_bytes()[0].is_ascii_alphanumeric()
            && key.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'));
        if ok {
            Ok(FlagKey(key))
        } else {
            Err(format!(
                "`{}` is not a flag key: use 1 to {FLAG_KEY_BYTES_MAX} of a-z 0-9 . _ - starting with a letter or digit",
                key.chars().take(FLAG_KEY_BYTES_MAX).collect::<String>()
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FlagKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for FlagKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        FlagKey::new(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// What a flag serves: a boolean, or a string for variant flags (`"grid"`, `"carousel"`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum FlagValue {
    Bool(bool),
    String(String),
}

impl FlagValue {
    pub fn kind(&self) -> FlagKind {
        match self {
            FlagValue::Bool(_) => FlagKind::Boolean,
            FlagValue::String(_) => FlagKind::Variant,
        }
    }
}

impl fmt::Display for FlagValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlagValue::Bool(b) => write!(f, "{b}"),
            FlagValue::String(s) => write!(f, "\"{s}\""),
        }
    }
}

/// A flag's type: every variant's value has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FlagKind {
    Boolean,
    Variant,
}

/// How a rule compares an attribute with its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ClauseOp {
    /// The attribute is one of `values`.
    In,
    /// The attribute is present and none of `values`.
    NotIn,
}

/// One condition on the evaluation context. `attribute` is `region` (the cell id), `playerId`, or
/// any context attribute (`country`, `ageBand`, `vipTier`...). A missing attribute matches
/// nothing, whatever the operator: a player we know nothing about is never targeted by accident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Clause {
    pub attribute: String,
    pub op: ClauseOp,
    pub values: Vec<String>,
}

/// One variant and its share of a split, in basis points of [`SPLIT_WEIGHT_TOTAL`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WeightedVariant {
    pub variant: String,
    pub weight: u32,
}

/// What a matching rule (or the fallthrough) serves: one variant, or a percentage split.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum Serve {
    Variant(String),
    /// Buckets in order; a player's bucket ([`split_bucket`]) picks the variant. Raising the
    /// first variant's weight keeps everyone who already had it: rollouts only ever grow.
    Split(Vec<WeightedVariant>),
}

/// A targeting rule: when every clause matches, serve `serve`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TargetingRule {
    /// Names the rule in evaluation results and history (`uk-vip-only`).
    pub id: String,
    pub clauses: Vec<Clause>,
    pub serve: Serve,
}

/// When a flag is in effect: before `enableAt` and from `disableAt` on, it serves its off variant.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Schedule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_at: Option<DateTime<Utc>>,
}

/// What product edits: everything about a flag except who changed it and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FlagDefinition {
    #[serde(default)]
    pub description: String,
    pub kind: FlagKind,
    /// Variant name to value; a boolean flag usually has `on: true` and `off: false`.
    pub variants: BTreeMap<String, FlagValue>,
    /// Served while the flag is disabled (kill switch) or outside its schedule.
    pub off_variant: String,
    /// Served when enabled and no rule matches.
    pub fallthrough: Serve,
    /// `false` is the kill switch: every region, every player gets `offVariant`.
    pub enabled: bool,
    #[serde(default)]
    pub rules: Vec<TargetingRule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
}

/// A flag as stored and synced: its definition plus the change that made it so.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Flag {
    pub key: FlagKey,
    /// The global version of the change that last wrote this flag.
    pub version: u64,
    pub updated_at: DateTime<Utc>,
    pub updated_by: String,
    pub definition: FlagDefinition,
}

/// A flag definition that cannot be served, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field `{field}`: {problem}")]
pub struct FlagDefinitionError {
    pub field: String,
    pub problem: String,
}

fn bad(field: impl Into<String>, problem: impl Into<String>) -> FlagDefinitionError {
    FlagDefinitionError { field: field.into(), problem: problem.into() }
}

fn check_text(field: &str, text: &str) -> Result<(), FlagDefinitionError> {
    if text.is_empty() || text.len() > FLAG_TEXT_BYTES_MAX {
        return Err(bad(field, format!("must be 1 to {FLAG_TEXT_BYTES_MAX} bytes")));
    }
    Ok(())
}

impl FlagDefinition {
    /// Checks that every reference resolves and every limit holds, so evaluation cannot fail on a
    /// stored flag (only on a missing one or a wrong expected type).
    pub fn validate(&self) -> Result<(), FlagDefinitionError> {
        if self.description.len() > 4 * FLAG_TEXT_BYTES_MAX {
            return Err(bad("description", format!("is over {} bytes", 4 * FLAG_TEXT_BYTES_MAX)));
        }
        if self.variants.is_empty() || self.variants.len() > FLAG_VARIANTS_MAX {
            return Err(bad("variants", format!("a flag needs 1 to {FLAG_VARIANTS_MAX} variants")));
        }
        for (name, value) in &self.variants {
            check_text(&format!("variants.{name}"), name)?;
            if let FlagValue::String(s) = value {
                check_text(&format!("variants.{name}"), s)?;
            }
            if value.kind() != self.kind {
                return Err(bad(
                    format!("variants.{name}"),
                    format!("`{value}` is not a {} value", kind_name(self.kind)),
                ));
            }
        }
        let known = |field: &str, variant: &str| {
            if self.variants.contains_key(variant) {
                Ok(())
            } else {
                Err(bad(field, format!("names the unknown variant `{variant}`")))
            }
        };
        known("offVariant", &self.off_variant)?;
        check_serve("fallthrough", &self.fallthrough, &known)?;
        if self.rules.len() > FLAG_RULES_MAX {
            return Err(bad("rules", format!("at most {FLAG_RULES_MAX} rules")));
        }
        for (i, rule) in self.rules.iter().enumerate() {
            check_text(&format!("rules[{i}].id"), &rule.id)?;
            if self.rules[..i].iter().any(|r| r.id == rule.id) {
                return Err(bad(format!("rules[{i}].id"), format!("`{}` is used by another rule", rule.id)));
            }
            if rule.clauses.is_empty() || rule.clauses.len() > RULE_CLAUSES_MAX {
                return Err(bad(
                    format!("rules[{i}].clauses"),
                    format!("a rule needs 1 to {RULE_CLAUSES_MAX} clauses"),
                ));
            }
            for (j, clause) in rule.clauses.iter().enumerate() {
                let field = format!("rules[{i}].clauses[{j}]");
                check_text(&format!("{field}.attribute"), &clause.attribute)?;
                if clause.values.is_empty() || clause.values.len() > CLAUSE_VALUES_MAX {
                    return Err(bad(format!("{field}.values"), format!("1 to {CLAUSE_VALUES_MAX} values")));
                }
                for v in &clause.values {
                    check_text(&format!("{field}.values"), v)?;
                }
            }
            check_serve(&format!("rules[{i}].serve"), &rule.serve, &known)?;
        }
        if let Some(Schedule { enable_at: Some(on), disable_at: Some(off) }) = &self.schedule {
            if off <= on {
                return Err(bad("schedule.disableAt", "must be after enableAt"));
            }
        }
        Ok(())
    }

    /// The value a variant serves.
    pub fn value_of(&self, variant: &str) -> Option<FlagValue> {
        self.variants.get(variant).cloned()
    }
}

fn kind_name(kind: FlagKind) -> &'static str {
    match kind {
        FlagKind::Boolean => "boolean (`true` or `false`)",
        FlagKind::Variant => "variant",
    }
}

fn check_serve(
    field: &str,
    serve: &Serve,
    known: &impl Fn(&str, &str) -> Result<(), FlagDefinitionError>,
) -> Result<(), FlagDefinitionError> {
    match serve {
        Serve::Variant(v) => known(field, v),
        Serve::Split(buckets) => {
            if buckets.is_empty() || buckets.len() > FLAG_VARIANTS_MAX {
                return Err(bad(field, format!("a split needs 1 to {FLAG_VARIANTS_MAX} buckets")));
            }
            for b in buckets {
                known(field, &b.variant)?;
            }
            let total: u64 = buckets.iter().map(|b| u64::from(b.weight)).sum();
            if total != u64::from(SPLIT_WEIGHT_TOTAL) {
                return Err(bad(field, format!("weights sum to {total}, not {SPLIT_WEIGHT_TOTAL} (basis points)")));
            }
            Ok(())
        }
    }
}

// ---- evaluation ------------------------------------------------------------------------------

/// Who is asking: the player, the region (cell id) serving them, and any attributes.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EvaluationContext {
    /// OpenFeature's targeting key: splits hash it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub player_id: Option<String>,
    /// The cell id evaluating. A cell sets it to itself, never from its caller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// `country`, `ageBand`, `vipTier` and anything else rules name.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

impl EvaluationContext {
    fn attribute(&self, name: &str) -> Option<&str> {
        match name {
            "region" => self.region.as_deref(),
            "playerId" => self.player_id.as_deref(),
            other => self.attributes.get(other).map(String::as_str),
        }
    }
}

/// Why a value was served (OpenFeature's resolution reasons).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Reason {
    /// The flag has no rules and no split: everyone gets the same value.
    Static,
    /// A targeting rule matched (or a regulatory lock pinned the value).
    TargetingMatch,
    /// A percentage split chose the variant.
    Split,
    /// Kill switch or outside the schedule: the off variant.
    Disabled,
    /// Rules exist, none matched: the fallthrough variant.
    Default,
    /// The evaluator's copy may be out of date (cut off from the control plane too long).
    Stale,
    Error,
}

/// Why no value could be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EvaluationErrorCode {
    FlagNotFound,
    TypeMismatch,
    /// A split needs a player id to hash.
    TargetingKeyMissing,
}

/// An evaluation, OpenFeature-style.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EvaluationResult {
    pub flag: String,
    /// `null` on error: the caller applies its own default.
    pub value: Option<FlagValue>,
    pub variant: Option<String>,
    pub reason: Reason,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<EvaluationErrorCode>,
    /// The rule that matched, or the regulatory lock that pinned the value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// The global version of the flag definition used (0 when there was none).
    pub version: u64,
}

impl EvaluationResult {
    fn error(flag: &str, code: EvaluationErrorCode, version: u64) -> EvaluationResult {
        EvaluationResult {
            flag: flag.to_owned(),
            value: None,
            variant: None,
            reason: Reason::Error,
            error_code: Some(code),
            rule: None,
            version,
        }
    }

    /// The same answer, marked as coming from a copy that may be out of date. Errors stay errors.
    pub fn into_stale(mut self) -> EvaluationResult {
        if self.reason != Reason::Error {
            self.reason = Reason::Stale;
        }
        self
    }
}

/// A player's bucket for a flag's splits, 0 to 9,999: the first 8 bytes of
/// `SHA-256(flagKey || 0x00 || playerId)` as a big-endian integer, modulo 10,000. Part of the
/// contract: changing it would move players between variants.
pub fn split_bucket(flag: &str, player_id: &str) -> u32 {
    let mut hash = Sha256::new();
    hash.update(flag.as_bytes());
    hash.update([0u8]);
    hash.update(player_id.as_bytes());
    let digest = hash.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(first) % u64::from(SPLIT_WEIGHT_TOTAL)) as u32
}

fn split_variant(buckets: &[WeightedVariant], bucket: u32) -> Option<&str> {
    let mut upper = 0u32;
    for b in buckets {
        upper += b.weight;
        if bucket < upper {
            return Some(&b.variant);
        }
    }
    None
}

fn clause_matches(clause: &Clause, ctx: &EvaluationContext) -> bool {
    match ctx.attribute(&clause.attribute) {
        None => false,
        Some(value) => {
            let listed = clause.values.iter().any(|v| v == value);
            match clause.op {
                ClauseOp::In => listed,
                ClauseOp::NotIn => !listed,
            }
        }
    }
}

/// Evaluates `flag` for `ctx` at `now`.
///
/// - a regulatory lock in `locks` for this flag: its value, `TARGETING_MATCH`, `rule` = the lock's
///   rule, whatever the copy holds, even no flag at all (the control plane refuses changes that
///   break a lock; this holds for a copy made before the lock existed, too);
/// - no flag: `ERROR` / `FLAG_NOT_FOUND`; `expected` given and different: `ERROR` / `TYPE_MISMATCH`;
/// - kill switch or outside the schedule: the off variant, `DISABLED`;
/// - the first rule whose clauses all match: its variant (`TARGETING_MATCH`) or split (`SPLIT`);
/// - otherwise the fallthrough: `STATIC` if the flag has no rules, `DEFAULT` if none matched,
///   `SPLIT` for a split.
pub fn evaluate(
    key: &str,
    flag: Option<&Flag>,
    ctx: &EvaluationContext,
    expected: Option<FlagKind>,
    now: DateTime<Utc>,
    locks: &[FlagLock],
) -> EvaluationResult {
    // A lock holds even where the copy has no such flag: the caller's default must not win.
    if let Some(lock) = locks.iter().find(|l| l.flag.as_str() == key) {
        let version = flag.map_or(0, |f| f.version);
        if expected.is_some_and(|kind| kind != lock.value.kind()) {
            return EvaluationResult::error(key, EvaluationErrorCode::TypeMismatch, version);
        }
        let variant = flag
            .and_then(|f| f.definition.variants.iter().find(|(_, v)| **v == lock.value).map(|(name, _)| name.clone()));
        return EvaluationResult {
            flag: key.to_owned(),
            value: Some(lock.value.clone()),
            variant,
            reason: Reason::TargetingMatch,
            error_code: None,
            rule: Some(lock.rule.clone()),
            version,
        };
    }
    let Some(flag) = flag else {
        return EvaluationResult::error(key, EvaluationErrorCode::FlagNotFound, 0);
    };
    let def = &flag.definition;
    if expected.is_some_and(|kind| kind != def.kind) {
        return EvaluationResult::error(key, EvaluationErrorCode::TypeMismatch, flag.version);
    }
    let serve = |variant: &str, reason: Reason, rule: Option<&str>| match def.value_of(variant) {
        Some(value) => EvaluationResult {
            flag: key.to_owned(),
            value: Some(value),
            variant: Some(variant.to_owned()),
            reason,
            error_code: None,
            rule: rule.map(str::to_owned),
            version: flag.version,
        },
        // Unreachable for a validated definition; a corrupt copy is an error, not a guess.
        None => EvaluationResult::error(key, EvaluationErrorCode::TypeMismatch, flag.version),
    };
    let scheduled_off = def
        .schedule
        .as_ref()
        .is_some_and(|s| s.enable_at.is_some_and(|at| now < at) || s.disable_at.is_some_and(|at| now >= at));
    if !def.enabled || scheduled_off {
        return serve(&def.off_variant, Reason::Disabled, None);
    }
    let pick = |s: &Serve, matched: Reason, rule: Option<&str>| match s {
        Serve::Variant(v) => serve(v, matched, rule),
        Serve::Split(buckets) => match ctx.player_id.as_deref() {
            None => EvaluationResult::error(key, EvaluationErrorCode::TargetingKeyMissing, flag.version),
            Some(player) => match split_variant(buckets, split_bucket(key, player)) {
                Some(v) => serve(v, Reason::Split, rule),
                None => EvaluationResult::error(key, EvaluationErrorCode::TypeMismatch, flag.version),
            },
        },
    };
    for rule in &def.rules {
        if rule.clauses.iter().all(|c| clause_matches(c, ctx)) {
            return pick(&rule.serve, Reason::TargetingMatch, Some(&rule.id));
        }
    }
    let reason = if def.rules.is_empty() { Reason::Static } else { Reason::Default };
    pick(&def.fallthrough, reason, None)
}

// ---- regulatory locks ------------------------------------------------------------------------

/// A regulatory lock from a region file: in that region the flag may only ever serve `value`
/// (e.g. `autoplay` = false in `uk`, UKGC RTS 14).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FlagLock {
    pub flag: FlagKey,
    pub value: FlagValue,
    /// The rule's id, named in every refusal (`UKGC-RTS14-AUTOPLAY`).
    pub rule: String,
    /// Where the rule comes from, for people.
    pub source: String,
}

/// Whether `def`, evaluated anywhere in `region`, could serve a value other than the lock's;
/// if so, the variant that would and how. The analysis is static and conservative: the off
/// variant is always reachable (kill switch, schedule); a rule is reachable unless a `region`
/// clause excludes `region`; a rule whose clauses are all `region` clauses admitting `region`
/// matches everyone there, so nothing after it is reachable.
pub fn lock_violation(def: &FlagDefinition, region: &str, lock: &FlagLock) -> Option<String> {
    let breaks = |variant: &str| def.value_of(variant).is_some_and(|v| v != lock.value);
    if breaks(&def.off_variant) {
        return Some(format!("its off variant `{}` serves another value", def.off_variant));
    }
    if !def.enabled {
        return None;
    }
    let served = |s: &Serve| -> Vec<String> {
        match s {
            Serve::Variant(v) => vec![v.clone()],
            Serve::Split(b) => b.iter().filter(|b| b.weight > 0).map(|b| b.variant.clone()).collect(),
        }
    };
    for rule in &def.rules {
        let admits = |c: &Clause| c.attribute != "region" || clause_matches(c, &region_only(region));
        if !rule.clauses.iter().all(admits) {
            continue;
        }
        if let Some(v) = served(&rule.serve).into_iter().find(|v| breaks(v)) {
            return Some(format!("rule `{}` can serve variant `{v}` there", rule.id));
        }
        if rule.clauses.iter().all(|c| c.attribute == "region") {
            return None;
        }
    }
    served(&def.fallthrough)
        .into_iter()
        .find(|v| breaks(v))
        .map(|v| format!("the fallthrough serves variant `{v}` there"))
}

fn region_only(region: &str) -> EvaluationContext {
    EvaluationContext { region: Some(region.to_owned()), ..EvaluationContext::default() }
}

// ---- control API requests -------------------------------------------------------------------

/// `PUT /flags/{key}`: create or replace a flag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FlagPutRequest {
    pub definition: FlagDefinition,
    /// Why: kept with the change forever.
    pub reason: String,
    /// Refuse with `409 VERSION_CONFLICT` unless the flag's current version is this (0: the flag
    /// must not exist yet), so two editors cannot silently overwrite each other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_version: Option<u64>,
}

/// Body of a change that needs nothing but its reason: the kill switch, a delete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChangeReason {
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn boolean(fallthrough: Serve, rules: Vec<TargetingRule>) -> Flag {
        Flag {
            key: FlagKey::new("autoplay").unwrap(),
            version: 7,
            updated_at: DateTime::UNIX_EPOCH,
            updated_by: "test".into(),
            definition: FlagDefinition {
                description: String::new(),
                kind: FlagKind::Boolean,
                variants: [("on".to_owned(), FlagValue::Bool(true)), ("off".to_owned(), FlagValue::Bool(false))].into(),
                off_variant: "off".into(),
                fallthrough,
                enabled: true,
                rules,
                schedule: None,
            },
        }
    }

    fn ctx(player: &str, region: &str, attrs: &[(&str, &str)]) -> EvaluationContext {
        EvaluationContext {
            player_id: Some(player.into()),
            region: Some(region.into()),
            attributes: attrs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    fn rule(id: &str, attribute: &str, op: ClauseOp, values: &[&str], variant: &str) -> TargetingRule {
        TargetingRule {
            id: id.into(),
            clauses: vec![Clause {
                attribute: attribute.into(),
                op,
                values: values.iter().map(|v| v.to_string()).collect(),
            }],
            serve: Serve::Variant(variant.into()),
        }
    }

    fn half_split() -> Serve {
        Serve::Split(vec![
            WeightedVariant { variant: "on".into(), weight: 5_000 },
            WeightedVariant { variant: "off".into(), weight: 5_000 },
        ])
    }

    const NOW: DateTime<Utc> = DateTime::UNIX_EPOCH;

    #[test]
    fn reasons_follow_openfeature() {
        let c = ctx("p1", "mt", &[("vipTier", "gold")]);
        let r = evaluate("autoplay", None, &c, None, NOW, &[]);
        assert_eq!((r.reason, r.error_code, r.value), (Reason::Error, Some(EvaluationErrorCode::FlagNotFound), None));

        let f = boolean(Serve::Variant("on".into()), vec![]);
        f.definition.validate().unwrap();
        let r = evaluate("autoplay", Some(&f), &c, Some(FlagKind::Boolean), NOW, &[]);
        assert_eq!((r.reason, r.value.clone(), r.version), (Reason::Static, Some(FlagValue::Bool(true)), 7));
        let r = evaluate("autoplay", Some(&f), &c, Some(FlagKind::Variant), NOW, &[]);
        assert_eq!(r.error_code, Some(EvaluationErrorCode::TypeMismatch));

        let f = boolean(Serve::Variant("off".into()), vec![rule("vip", "vipTier", ClauseOp::In, &["gold"], "on")]);
        let r = evaluate("autoplay", Some(&f), &c, None, NOW, &[]);
        assert_eq!((r.reason, r.rule.as_deref()), (Reason::TargetingMatch, Some("vip")));
        let r = evaluate("autoplay", Some(&f), &ctx("p1", "mt", &[]), None, NOW, &[]);
        assert_eq!((r.reason, r.value), (Reason::Default, Some(FlagValue::Bool(false))));

        let mut killed = f.clone();
        killed.definition.enabled = false;
        let r = evaluate("autoplay", Some(&killed), &c, None, NOW, &[]);
        assert_eq!((r.reason, r.variant.as_deref()), (Reason::Disabled, Some("off")));

        let f = boolean(half_split(), vec![]);
        let r = evaluate("autoplay", Some(&f), &c, None, NOW, &[]);
        assert_eq!(r.reason, Reason::Split);
        let r = evaluate("autoplay", Some(&f), &EvaluationContext::default(), None, NOW, &[]);
        assert_eq!(r.error_code, Some(EvaluationErrorCode::TargetingKeyMissing));
        assert_eq!(evaluate("autoplay", Some(&f), &c, None, NOW, &[]).into_stale().reason, Reason::Stale);
    }

    #[test]
    fn missing_attributes_match_nothing() {
        let f = boolean(Serve::Variant("off".into()), vec![rule("not-uk", "country", ClauseOp::NotIn, &["GB"], "on")]);
        assert_eq!(evaluate("autoplay", Some(&f), &ctx("p", "mt", &[]), None, NOW, &[]).reason, Reason::Default);
        let r = evaluate("autoplay", Some(&f), &ctx("p", "mt", &[("country", "MT")]), None, NOW, &[]);
        assert_eq!(r.reason, Reason::TargetingMatch);
    }

    #[test]
    fn schedule_bounds_the_flag() {
        let mut f = boolean(Serve::Variant("on".into()), vec![]);
        let on = DateTime::from_timestamp(1_000, 0).unwrap();
        let off = DateTime::from_timestamp(2_000, 0).unwrap();
        f.definition.schedule = Some(Schedule { enable_at: Some(on), disable_at: Some(off) });
        f.definition.validate().unwrap();
        let c = ctx("p", "uk", &[]);
        let at = |s| evaluate("autoplay", Some(&f), &c, None, DateTime::from_timestamp(s, 0).unwrap(), &[]).reason;
        assert_eq!(
            (at(999), at(1_000), at(1_999), at(2_000)),
            (Reason::Disabled, Reason::Static, Reason::Static, Reason::Disabled)
        );
    }

    #[test]
    fn validation_names_the_field() {
        let mut f = boolean(Serve::Variant("maybe".into()), vec![]);
        assert_eq!(f.definition.validate().unwrap_err().field, "fallthrough");
        f.definition.fallthrough = Serve::Split(vec![WeightedVariant { variant: "on".into(), weight: 9_999 }]);
        assert!(f.definition.validate().unwrap_err().problem.contains("9999"));
        f.definition.fallthrough = Serve::Variant("on".into());
        f.definition.variants.insert("on".into(), FlagValue::String("yes".into()));
        assert_eq!(f.definition.validate().unwrap_err().field, "variants.on");
        assert!(FlagKey::new("Autoplay").is_err() && FlagKey::new("-x").is_err() && FlagKey::new("a.b_c-1").is_ok());
    }

    fn lock() -> FlagLock {
        FlagLock {
            flag: FlagKey::new("autoplay").unwrap(),
            value: FlagValue::Bool(false),
            rule: "UKGC-RTS14-AUTOPLAY".into(),
            source: "test".into(),
        }
    }

    #[test]
    fn locks_are_checked_statically_and_at_evaluation() {
        let on_everywhere = boolean(Serve::Variant("on".into()), vec![]);
        assert!(lock_violation(&on_everywhere.definition, "uk", &lock()).unwrap().contains("fallthrough"));
        let off_in_uk =
            boolean(Serve::Variant("on".into()), vec![rule("uk-off", "region", ClauseOp::In, &["uk"], "off")]);
        assert_eq!(lock_violation(&off_in_uk.definition, "uk", &lock()), None);
        let mt_only = boolean(Serve::Variant("off".into()), vec![rule("mt", "region", ClauseOp::In, &["mt"], "on")]);
        assert_eq!(lock_violation(&mt_only.definition, "uk", &lock()), None);
        let vip = boolean(Serve::Variant("off".into()), vec![rule("vip", "vipTier", ClauseOp::In, &["gold"], "on")]);
        assert!(lock_violation(&vip.definition, "uk", &lock()).unwrap().contains("rule `vip`"));
        let split = boolean(half_split(), vec![]);
        assert!(lock_violation(&split.definition, "uk", &lock()).is_some());
        // A copy made before the lock still serves the locked value in the cell.
        let r = evaluate("autoplay", Some(&on_everywhere), &ctx("p", "uk", &[]), None, NOW, &[lock()]);
        assert_eq!((r.value, r.rule.as_deref()), (Some(FlagValue::Bool(false)), Some("UKGC-RTS14-AUTOPLAY")));
        let r = evaluate("autoplay", None, &ctx("p", "uk", &[]), Some(FlagKind::Boolean), NOW, &[lock()]);
        assert_eq!((r.value, r.reason), (Some(FlagValue::Bool(false)), Reason::TargetingMatch));
    }

    #[test]
    fn split_bucket_is_pinned() {
        // Pinned values: a change to the hash would move live players between variants.
        assert_eq!(split_bucket("autoplay", "uk-alice"), split_bucket("autoplay", "uk-alice"));
        let pinned = [split_bucket("autoplay", "uk-alice"), split_bucket("lobby.layout", "mt-bob")];
        assert_eq!(pinned, PINNED_BUCKETS, "split_bucket changed: players would move between variants");
    }

    // Computed independently: python3 -c "import hashlib; d=hashlib.sha256(b'autoplay\\0uk-alice').digest(); print(int.from_bytes(d[:8], 'big') % 10000)"
    const PINNED_BUCKETS: [u32; 2] = [7416, 9546];

    proptest! {
        #[test]
        fn split_is_stable_and_monotonic(player in "[a-z]{2}-[a-z0-9]{1,20}", weight in 0u32..=10_000, more in 0u32..=10_000) {
            let (low, high) = (weight.min(more), weight.max(more));
            let serve = |w: u32| Serve::Split(vec![
                WeightedVariant { variant: "on".into(), weight: w },
                WeightedVariant { variant: "off".into(), weight: SPLIT_WEIGHT_TOTAL - w },
            ]);
            let c = ctx(&player, "mt", &[]);
            let a = evaluate("rollout", Some(&boolean(serve(low), vec![])), &c, None, NOW, &[]);
            let b = evaluate("rollout", Some(&boolean(serve(low), vec![])), &c, None, NOW, &[]);
            prop_assert_eq!(&a, &b);
            if a.value == Some(FlagValue::Bool(true)) {
                let grown = evaluate("rollout", Some(&boolean(serve(high), vec![])), &c, None, NOW, &[]);
                prop_assert_eq!(grown.value, Some(FlagValue::Bool(true)), "growing a rollout keeps its players");
            }
        }

        #[test]
        fn split_is_roughly_proportional(seed in 0u64..1_000, weight in 500u32..=9_500) {
            let buckets = vec![
                WeightedVariant { variant: "on".into(), weight },
                WeightedVariant { variant: "off".into(), weight: SPLIT_WEIGHT_TOTAL - weight },
            ];
            let players = 4_000u32;
            let on = (0..players)
                .filter(|i| split_variant(&buckets, split_bucket("rollout", &format!("p{seed}-{i}"))) == Some("on"))
                .count() as i64;
            let expected = i64::from(players) * i64::from(weight) / i64::from(SPLIT_WEIGHT_TOTAL);
            // 4,000 draws: the standard deviation is at most 32; 5 of them is 160.
            prop_assert!((on - expected).abs() < 160, "{} on, {} expected", on, expected);
        }
    }
}
