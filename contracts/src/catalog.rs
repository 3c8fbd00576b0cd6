//! The game catalog (DESIGN.md section 8): providers and games, which jurisdictions certified each
//! game, and where the operator makes it available. The control plane owns it; every cell holds a
//! synced copy and builds its lobby from it (certified and available here, enabled by flags).

use crate::flags::FlagKey;
use crate::Jurisdiction;
use rust_decimal::Decimal;
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt;

/// Version of the catalog shapes; bump with any change to them.
pub const CATALOG_API_VERSION: &str = "2";

/// The largest maximum multiplier a game may state: above the largest certified slot multipliers
/// (tens of thousands), and small enough that a stake times it stays an exact ledger amount.
pub const MAX_MULTIPLIER_MAX: u32 = 1_000_000;

/// Longest catalog name, in bytes (ids follow `contracts::ids`: the same 128-byte rule).
pub const CATALOG_TEXT_BYTES_MAX: usize = 128;

crate::ids::typed_id!(
    /// A game provider (studio or aggregator): `pragmatic`, `evolution`.
    ProviderId,
    "provider id"
);
crate::ids::typed_id!(
    /// A game, unique across providers: `pragmatic:sweet-bonanza`.
    GameId,
    "game id"
);

/// A game provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Provider {
    pub id: ProviderId,
    pub name: String,
    /// A provider in maintenance keeps its games in the catalog but out of every lobby.
    #[serde(default)]
    pub maintenance: bool,
}

/// The kind of game, which decides which rules apply (UK stake caps apply to `slots`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum GameType {
    Slots,
    Live,
    Table,
    Crash,
    Bingo,
    Poker,
}

impl GameType {
    /// The name region files use for the product (`rules.stake_limits[].product`).
    pub fn as_str(&self) -> &'static str {
        match self {
            GameType::Slots => "slots",
            GameType::Live => "live",
            GameType::Table => "table",
            GameType::Crash => "crash",
            GameType::Bingo => "bingo",
            GameType::Poker => "poker",
        }
    }
}

/// `text` as an unsigned decimal in plain notation (digits and at most one point: no sign, no
/// exponent, no spaces), exactly.
fn plain_decimal(text: &str) -> Option<Decimal> {
    let plain = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    Decimal::from_str_exact(text).ok().filter(|_| plain)
}

/// Return to player, in percent, as certified by the test lab: a decimal string such as
/// `"96.50"`, above 0 and at most 100, at most 4 decimals. Never a float: certificates state an
/// exact figure, and regulators compare it digit for digit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Rtp(Decimal);

/// Decimals an RTP may have: labs certify to two, some to three or four.
pub const RTP_SCALE_MAX: u32 = 4;

impl Rtp {
    pub fn parse(text: &str) -> Result<Rtp, String> {
        let value =
            plain_decimal(text).ok_or_else(|| format!("RTP `{text}` is not a plain decimal such as \"96.50\""))?;
        if value <= Decimal::ZERO || value > Decimal::ONE_HUNDRED {
            return Err(format!("RTP {text} is outside (0, 100] percent"));
        }
        if value.scale() > RTP_SCALE_MAX {
            return Err(format!("RTP {text} has more than {RTP_SCALE_MAX} decimals"));
        }
        Ok(Rtp(value))
    }

    pub fn percent(&self) -> Decimal {
        self.0
    }
}

impl fmt::Display for Rtp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Serialize for Rtp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.to_string())
    }
}

impl<'de> Deserialize<'de> for Rtp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Rtp::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Rtp {
    fn schema_name() -> Cow<'static, str> {
        "Rtp".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "string", "pattern": r"^[0-9]{1,3}(\.[0-9]{1,4})?$", "description": "return to player in percent, e.g. \"96.50\"" })
    }
}

/// How many times its stake one bet can win at most, as certified: a decimal string such as
/// `"5000"` or `"2.5"`, above 0 and at most [`MAX_MULTIPLIER_MAX`]. Never a float.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Multiplier(Decimal);

impl Multiplier {
    pub fn parse(text: &str) -> Result<Multiplier, String> {
        let value = plain_decimal(text)
            .ok_or_else(|| format!("multiplier `{text}` is not a plain decimal such as \"5000\""))?;
        if value <= Decimal::ZERO || value > Decimal::from(MAX_MULTIPLIER_MAX) {
            return Err(format!("multiplier {text} is outside (0, {MAX_MULTIPLIER_MAX}]"));
        }
        Ok(Multiplier(value))
    }

    pub fn value(&self) -> Decimal {
        self.0
    }
}

impl Serialize for Multiplier {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.to_string())
    }
}

impl<'de> Deserialize<'de> for Multiplier {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Multiplier::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Multiplier {
    fn schema_name() -> Cow<'static, str> {
        "Multiplier".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?$", "description": "how many times its stake one bet can win at most, e.g. \"5000\"" })
    }
}

/// A game in the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Game {
    pub id: GameId,
    pub provider_id: ProviderId,
    pub name: String,
    #[serde(rename = "type")]
    pub game_type: GameType,
    pub rtp: Rtp,
    /// Jurisdictions whose regulator (or approved lab) certified this game.
    pub certified_jurisdictions: BTreeSet<Jurisdiction>,
    /// Where the operator offers it: always a subset of `certifiedJurisdictions`.
    pub available_jurisdictions: BTreeSet<Jurisdiction>,
    /// When set, the game appears only to players for whom this boolean flag evaluates to true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flag: Option<FlagKey>,
    /// The most one bet can win, as a multiple of its stake, as the game's certificate states it
    /// (a decimal string, `"5000"`). Cells refuse a provider's payouts past it
    /// (`WIN_LIMIT_EXCEEDED`). Added in version 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_multiplier: Option<Multiplier>,
}

impl Game {
    /// Checks what a single game can check on its own; that its provider exists is the catalog's.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.name.trim().is_empty() || self.name.len() > CATALOG_TEXT_BYTES_MAX {
            return Err(("name".into(), format!("must be 1 to {CATALOG_TEXT_BYTES_MAX} bytes")));
        }
        if let Some(j) = self.available_jurisdictions.iter().find(|j| !self.certified_jurisdictions.contains(j)) {
            return Err((
                "availableJurisdictions".into(),
                format!("{j} has not certified this game: a game is offered only where it is certified"),
            ));
        }
        Ok(())
    }

    /// Whether a cell of `jurisdiction` may list it (flags and provider maintenance aside).
    pub fn offered_in(&self, jurisdiction: Jurisdiction) -> bool {
        self.certified_jurisdictions.contains(&jurisdiction) && self.available_jurisdictions.contains(&jurisdiction)
    }
}

/// `PUT /catalog/providers/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProviderPutRequest {
    pub provider: Provider,
    pub reason: String,
}

/// `PUT /catalog/games/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GamePutRequest {
    pub game: Game,
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtp_is_an_exact_percentage() {
        assert_eq!(Rtp::parse("96.50").unwrap().to_string(), "96.50");
        for bad in ["96,5", "-1", "0", "100.01", "96.12345", "1e2", "", " 96"] {
            assert!(Rtp::parse(bad).is_err(), "{bad}");
        }
        assert!(serde_json::from_str::<Rtp>("96.5").is_err(), "a JSON number is refused");
    }

    #[test]
    fn a_multiplier_is_a_positive_decimal_string() {
        assert_eq!(Multiplier::parse("2.5").unwrap().value(), Decimal::new(25, 1));
        for bad in ["0", "-1", "1e3", "", "1000001", " 5"] {
            assert!(Multiplier::parse(bad).is_err(), "{bad}");
        }
        assert!(serde_json::from_str::<Multiplier>("5000").is_err(), "a JSON number is refused");
    }

    #[test]
    fn availability_needs_certification() {
        let game: Game = serde_json::from_value(serde_json::json!({
            "id": "pragmatic:sweet-bonanza", "providerId": "pragmatic", "name": "Sweet Bonanza",
            "type": "slots", "rtp": "96.48", "certifiedJurisdictions": ["UK", "MT"], "availableJurisdictions": ["UK", "DK"]
        }))
        .unwrap();
        assert_eq!(game.validate().unwrap_err().0, "availableJurisdictions");
        assert!(game.offered_in(Jurisdiction::Uk) && !game.offered_in(Jurisdiction::Mt));
    }
}
