//! Key layout of the compliance subspace.

use crate::store::subspaces;
use contracts::PlayerId;

pub fn player(id: &PlayerId) -> Vec<u8> {
    subspaces::compliance().pack(&("player", id.as_str()))
}

pub fn idempotency(key: &str) -> Vec<u8> {
    subspaces::compliance().pack(&("idem", key))
}
