//! Player registration shapes (owned by the compliance domain).

use crate::{CountryCode, Currency, PlayerId};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `POST /players`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegisterPlayerRequest {
    pub player_id: PlayerId,
    pub date_of_birth: chrono::NaiveDate,
    /// Country of residence.
    pub country: CountryCode,
    pub currency: String,
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
