//! Player registration shapes (owned by the compliance domain).

use crate::{CountryCode, Currency, PlayerId};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Version of `POST /players`' request (2: it takes a `password`).
pub const REGISTER_VERSION: &str = "3";

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
