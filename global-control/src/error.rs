//! The control plane's refusals: one enum, each variant with a stable code and HTTP status.

use crate::store::StoreError;
use contracts::ControlCode;

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("no API token: send `Authorization: Bearer <token>`")]
    Unauthenticated,
    #[error("this token does not grant {0}")]
    Forbidden(String),
    #[error("{what} `{id}` does not exist")]
    NotFound { code: ControlCode, what: &'static str, id: String },
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
    pub fn code(&self) -> ControlCode {
        match self {
            ControlError::Unauthenticated => ControlCode::Unauthenticated,
            ControlError::Forbidden(_) => ControlCode::Forbidden,
            ControlError::NotFound { code, .. } => *code,
            ControlError::Invalid(_) => ControlCode::InvalidRequest,
            ControlError::RegulatoryLock { .. } => ControlCode::RegulatoryLock,
            ControlError::VersionConflict { .. } => ControlCode::VersionConflict,
            ControlError::UnknownProvider { .. } => ControlCode::UnknownProvider,
            ControlError::Store(StoreError::Io { .. }) => ControlCode::StoreUnavailable,
            ControlError::Store(StoreError::Corrupt { .. }) => ControlCode::StoreCorrupt,
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
