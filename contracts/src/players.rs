//! Player registration shapes (owned by the compliance domain).

use crate::{CountryCode, Currency, PlayerId};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Version of `POST /players`' request (2: it takes a `password`; 4: and a `profile`; 5: the
/// profile's `sex`, and `fiscalRegion` as a code).
pub const REGISTER_VERSION: &str = "5";

/// Version of `GET /players/{id}/kyc`'s answer.
pub const KYC_VERSION: &str = "1";

/// Where a player's identity verification stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum KycStatus {
    /// No check was asked (a cell without a KYC vendor, or a player from before it had one).
    NotRequested,
    Pending,
    Verified,
    Failed,
}

/// `GET /players/{id}/kyc`: the player's verification, and what they may do until it is done.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KycView {
    pub player_id: PlayerId,
    pub status: KycStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_at: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Why the vendor failed the check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Pending, in a region that lets unverified players deposit: what they may still deposit,
    /// and until when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deposit_allowance_left: Option<crate::Amount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_until: Option<chrono::DateTime<chrono::Utc>>,
}

/// `POST /players`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegisterPlayerRequest {
    pub player_id: PlayerId,
    pub date_of_birth: chrono::NaiveDate,
    /// Country of residence.
    pub country: CountryCode,
    #[schemars(with = "crate::Currency")]
    pub currency: String,
    /// At least 12 characters and not a common password (`WEAK_PASSWORD` otherwise). Stored only
    /// as an argon2id hash.
    #[schemars(extend("minLength" = 12, "not" = { "pattern": "^([\\s\\S])\\1*$" }))]
    pub password: Password,
    /// Who the player is, as the regulator requires. Kept in the home cell only, never in an
    /// event; the region's self-exclusion register is asked with it (GAMSTOP: names, email,
    /// postcode, mobile; ROFUS, Spelpaus, RGIAJ: the national identity number).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<PlayerProfile>,
}

/// A player's personal data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PlayerProfile {
    #[schemars(length(min = 1, max = 200))]
    pub given_name: String,
    #[schemars(length(min = 1, max = 200))]
    pub family_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nationality: Option<CountryCode>,
    #[schemars(length(min = 3, max = 254))]
    pub email: String,
    #[schemars(length(min = 3, max = 32))]
    pub phone: String,
    pub address: Address,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_document: Option<IdentityDocument>,
    /// Spain's fiscal region, as the code of the tax return's list (modelo 763, Orden
    /// HAC/1363/2018: `01` to `22`) that the DGOJ's player register (RUD) carries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^(0[1-9]|1[0-9]|2[0-2])$"))]
    pub fiscal_region: Option<String>,
    /// As the identity document states it (Spain's player register, RUD, requires it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sex: Option<Sex>,
}

/// A player's sex as their identity document states it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Sex {
    Female,
    Male,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Address {
    #[schemars(length(min = 1, max = 200))]
    pub street: String,
    #[schemars(length(min = 1, max = 100))]
    pub city: String,
    #[schemars(length(min = 1, max = 20))]
    pub postcode: String,
    pub country: CountryCode,
}

/// An identity document: a national number (`CPR`, `PERSONNUMMER`, `DNI`, `NIE`) or a passport.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IdentityDocument {
    pub kind: DocumentKind,
    #[schemars(length(min = 1, max = 40))]
    pub number: String,
    pub issuing_country: CountryCode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DocumentKind {
    Cpr,
    Personnummer,
    Dni,
    Nie,
    Passport,
}

/// A password as it arrives: never printed (its `Debug` is redacted), never stored as given.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct Password(#[schemars(length(max = 1024))] pub String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

impl Password {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// A registered player.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Player {
    pub player_id: PlayerId,
    pub date_of_birth: chrono::NaiveDate,
    pub country: CountryCode,
    pub currency: Currency,
    pub cell: String,
    pub registered_at: chrono::DateTime<chrono::Utc>,
}
