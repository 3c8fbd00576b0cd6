//! The control plane's refusals: one enum, each variant with a stable code and HTTP status.

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("no API token: send `Authorization: Bearer <token>`")]
    Unauthenticated,
    #[error("this token does not grant {0}")]
    Forbidden(String),
    #[error("{what} `{id}` does not exist")]
    NotFound { code: &'static str, what: &'static str, id: String },
    #[error("{0}")]
    Invalid(String),
    #[error("flag `{flag}` would break regulatory rule {rule} in region {region} (it pins {value}): {how}")]
    RegulatoryLock { flag: String, rule: String, region: String, value: String, how: String },
    #[error("flag `{flag}` is at version {current}, not the expected {expected}")]
    VersionConflict { flag: String, current: u64, expected: u64 },
    #[error("game `{game}` names provider `{provider}`, which does not exist")]
    UnknownProvider { game: String, provider: String },
    #[error("{0}")]
    Store(#[source] StoreError),
}

impl From<StoreError> for ControlError {
    fn from(e: StoreError) -> Self {
        ControlError::Store(e)
    }
}

impl ControlError {
    pub fn code(&self) -> &'static str {
        match self {
            ControlError::Unauthenticated => "UNAUTHENTICATED",
            ControlError::Forbidden(_) => "FORBIDDEN",
            ControlError::NotFound { code, .. } => code,
            ControlError::Invalid(_) => "INVALID_REQUEST",
            ControlError::RegulatoryLock { .. } => "REGULATORY_LOCK",
            ControlError::VersionConflict { .. } => "VERSION_CONFLICT",
            ControlError::UnknownProvider { .. } => "UNKNOWN_PROVIDER",
            ControlError::Store(StoreError::Io { .. }) => "STORE_UNAVAILABLE",
            ControlError::Store(StoreError::Corrupt { .. }) => "STORE_CORRUPT",
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            ControlError::Unauthenticated => 401,
            ControlError::Forbidden(_) => 403,
            ControlError::NotFound { .. } => 404,
            ControlError::Invalid(_) => 400,
            ControlError::RegulatoryLock { .. } | ControlError::VersionConflict { .. } => 409,
            ControlError::UnknownProvider { .. } => 422,
            ControlError::Store(StoreError::Io { .. }) => 503,
            ControlError::Store(StoreError::Corrupt { .. }) => 500,
        }
    }
}
