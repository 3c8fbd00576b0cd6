//! Key layout of the compliance subspace.

use crate::store::subspaces;

pub fn idempotency(key: &str) -> Vec<u8> {
    crate::idempotency::key_in(&subspaces::compliance(), key)
}
