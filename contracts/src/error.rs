//! The error body every HTTP boundary answers with.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `{code, message}`: `code` is stable and machine-readable (`INSUFFICIENT_FUNDS`), `message` is for
/// people and may change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
}
