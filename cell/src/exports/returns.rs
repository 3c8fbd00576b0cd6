//! The returns of the regulators that publish no machine-readable format, modelled from their
//! public documentation (`shared/regulators/README.md`), each as JSON and CSV:
//!
//! - the UK (UKGC regulatory return, quarterly, LCCP 15.3.1): customer funds held at the period's
//!   end, active accounts (gambled in the period), new registrations, self-exclusions started,
//!   GGY per product;
//! - Malta (MGA, monthly): the gaming tax return (wagers, bonuses, winnings per game type) and the
//!   player funds report (player funds held at the month's end, withdrawals pending);
//! - Sweden (Spelinspektionen, monthly): player-protection figures (players active, limits set,
//!   self-exclusions started, deposits and GGY in SEK).
//!
//! MODELLED: none of these is a regulator's published format; the fields follow what their
//! guidance names, and nothing here is validated against a schema (none exists).

use super::books::Books;
use super::vault::Scratch;
use super::ExportError;
use contracts::exports::ExportPeriod;
use rust_decimal::Decimal;

/// The returns each modelled format builds.
pub fn types(format: &str) -> &'static [&'static str] {
    match format {
        "ukgc-regulatory-return" => &["quarterly-return"],
        "mga-player-detail" => &["gaming-tax-return", "player-funds"],
        "se-spelinspektionen" => &["player-protection"],
        _ => &[],
    }
}

/// Whether `kind` is one of these returns.
pub fn is_return(kind: &str) -> bool {
    ["ukgc-regulatory-return", "mga-player-detail", "se-spelinspektionen"].iter().any(|f| types(f).contains(&kind))
}

/// The one record a return is: its id, which every included event names.
pub fn report_id(kind: &str, period: &ExportPeriod) -> String {
    format!("{kind}-{}", period.label)
}

fn money(d: Decimal) -> String {
    format!("{:.2}", d.round_dp(2))
}

/// What the event log (not the chain: registrations and responsible-gambling changes are not
/// money) says of the period.
#[derive(Debug, Default, Clone, Copy)]
pub struct PlayerCounts {
    pub registrations: u64,
    pub self_exclusions: u64,
    pub limits_set: u64,
}

impl PlayerCounts {
    /// Counts the period's `player.registered`, `rg.self_exclusion_started` and `rg.limit_set`
    /// in the event log, a page at a time.
    pub fn read(store: &dyn crate::store::Store, period: &ExportPeriod) -> Result<PlayerCounts, ExportError> {
        let (start, end) = (period.start, period.end);
        let mut counts = PlayerCounts::default();
        super::register::each_event_before(store, end, |e| {
            if e.envelope.ts >= start {
                match e.envelope.event.as_str() {
                    "player.registered" => counts.registrations += 1,
                    "rg.self_exclusion_started" => counts.self_exclusions += 1,
                    "rg.limit_set" => counts.limits_set += 1,
                    _ => {}
                }
            }
            Ok(())
        })?;
        Ok(counts)
    }
}

/// Writes the return `kind` for `period` from `books` and the event log's `players` counts:
/// `<kind>-<period>.json` and `.csv`.
pub fn write(
    kind: &str,
    period: &ExportPeriod,
    books: &Books,
    players: PlayerCounts,
    out: &mut Scratch,
) -> Result<(), ExportError> {
    let (start, end) = (period.start, period.end);
    let by_type = books.by_game_type();
    let (mut deposits, mut withdrawals, mut active) = (Decimal::ZERO, Decimal::ZERO, 0u64);
    for m in books.movements.values() {
        deposits += m.deposited();
        withdrawals += m.withdrawn();
        active += u64::from(!m.stakes.is_empty());
    }
    let (gross, returned) =
        (by_type.values().map(|t| t.0).sum::<Decimal>(), by_type.values().map(|t| t.1).sum::<Decimal>());
    let (stakes, wins) =
        (by_type.values().map(|t| t.0 - t.1).sum::<Decimal>(), by_type.values().map(|t| t.2).sum::<Decimal>());
    let products: Vec<serde_json::Value> = by_type
        .iter()
        .map(|(k, (s, r, w))| {
            serde_json::json!({ "product": k, "wagers": money(*s - *r), "winnings": money(*w), "ggy": money(*s - *r - *w) })
        })
        .collect();
    let (registrations, exclusions, limits) = (players.registrations, players.self_exclusions, players.limits_set);
    let funds: Decimal = books.balances_total();
    let id = report_id(kind, period);
    let figures = match kind {
        "quarterly-return" => serde_json::json!({
            "customerFundsHeld": money(funds),
            "activeAccounts": active,
            "newRegistrations": registrations,
            "selfExclusions": exclusions,
            "ggyByProduct": products,
        }),
        "gaming-tax-return" => serde_json::json!({
            "byGameType": products,
            "bonuses": money(Decimal::ZERO),
            "totalWagers": money(stakes),
            "totalWinnings": money(wins),
        }),
        "player-funds" => serde_json::json!({
            "playerFundsHeld": money(funds),
            "deposits": money(deposits),
            "withdrawals": money(withdrawals),
            "jackpotFunds": money(Decimal::ZERO),
        }),
        "player-protection" => serde_json::json!({
            "activePlayers": active,
            "limitsSet": limits,
            "selfExclusions": exclusions,
            "newRegistrations": registrations,
            "deposits": money(deposits),
            "ggy": money(stakes - wins),
        }),
        other => return Err(ExportError::UnknownType(other.to_owned())),
    };
    let report = serde_json::json!({
        "reportId": id,
        "type": kind,
        "period": { "label": period.label, "start": start, "end": end },
        "modelled": "no published machine-readable format: fields follow the regulator's public guidance",
        "figures": figures,
        "totals": { "stakes": money(gross), "stakesReturned": money(returned), "wins": money(wins) },
    });
    out.write(&format!("{id}.json"), &serde_json::to_vec_pretty(&report).expect("JSON"), 1)?;
    let mut csv = String::from("field,value\n");
    flatten("", &report["figures"], &mut csv);
    out.write(&format!("{id}.csv"), csv.as_bytes(), 0)
}

/// `a.b.c,value` lines of a JSON value (arrays by index).
fn flatten(prefix: &str, value: &serde_json::Value, csv: &mut String) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                flatten(&if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") }, v, csv);
            }
        }
        serde_json::Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                flatten(&format!("{prefix}.{i}"), v, csv);
            }
        }
        serde_json::Value::String(s) => csv.push_str(&format!("{prefix},{s}\n")),
        other => csv.push_str(&format!("{prefix},{other}\n")),
    }
}
