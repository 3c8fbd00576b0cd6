//! Typed ids, so a `PlayerId` can never be passed where a `RoundId` is expected.
//!
//! Ids are client-supplied (providers and PSPs choose round and bet ids), so each one is checked
//! at the edge: 1 to `ID_BYTES_MAX` bytes of `[A-Za-z0-9._:-]`, which keeps them safe in store keys,
//! URLs and logs.

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

/// Longest id accepted, in bytes. Long enough for a UUID with a prefix, short enough that a key
/// made of a few ids stays far below the store's 10 kB key limit.
pub const ID_BYTES_MAX: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} `{value}` is not a valid id: use 1 to {ID_BYTES_MAX} characters of A-Z a-z 0-9 . _ : -")]
pub struct IdError {
    pub kind: &'static str,
    pub value: String,
}

pub(crate) fn check_id(kind: &'static str, value: &str) -> Result<(), IdError> {
    let ok = !value.is_empty()
        && value.len() <= ID_BYTES_MAX
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(IdError { kind, value: value.chars().take(ID_BYTES_MAX).collect() })
    }
}

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, JsonSchema)]
        #[serde(transparent)]
        pub struct $name(#[schemars(regex(pattern = r"^[A-Za-z0-9._:-]{1,128}$"))] String);

        impl $name {
            pub fn new(value: impl Into<String>) -> Result<Self, $crate::ids::IdError> {
                let value = value.into();
                $crate::ids::check_id($kind, &value)?;
                Ok(Self(value))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let value = String::deserialize(d)?;
                $name::new(value).map_err(serde::de::Error::custom)
            }
        }
    };
}

/// Catalog ids (`contracts::catalog`) are made the same way.
pub(crate) use typed_id;

typed_id!(
    /// A player, prefixed with their home cell: `uk-4f1c...`.
    PlayerId,
    "playerId"
);
typed_id!(
    /// A game round, chosen by the game provider.
    RoundId,
    "roundId"
);
typed_id!(
    /// One bet in a round, chosen by the game provider.
    BetId,
    "betId"
);
typed_id!(
    /// A game provider's transaction id: unique per provider, the key of its idempotency. A bet
    /// call's transaction id also names the bet it places ([`TransactionId::bet`]).
    TransactionId,
    "transactionId"
);
typed_id!(
    /// A cell: `uk`, `mt`, `dk`, `se`, `es`.
    CellId,
    "cellId"
);

impl TransactionId {
    /// The bet a bet call with this transaction id places (the same characters, so always valid).
    pub fn bet(&self) -> BetId {
        BetId(self.0.clone())
    }
}

impl BetId {
    /// The transaction id of the bet call that placed this bet.
    pub fn transaction(&self) -> TransactionId {
        TransactionId(self.0.clone())
    }
}

impl PlayerId {
    /// The home cell named by the id's prefix (`uk` in `uk-42`), if it has one.
    pub fn home_cell(&self) -> Option<&str> {
        self.0.split_once('-').map(|(cell, _)| cell)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked() {
        assert!(PlayerId::new("uk-42").is_ok());
        assert!(PlayerId::new("").is_err());
        assert!(PlayerId::new("a b").is_err());
        assert!(PlayerId::new("x".repeat(129)).is_err());
        assert!(serde_json::from_str::<RoundId>("\"r/1\"").is_err());
        assert_eq!(PlayerId::new("uk-42").unwrap().home_cell(), Some("uk"));
    }
}
