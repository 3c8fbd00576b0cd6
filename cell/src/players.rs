//! The registry of the players this cell holds: written once per player by compliance's
//! registration, read by every domain that needs to know a player (that they exist, their home
//! currency, their date of birth). It is shared data, not a domain, so a domain reads a player
//! here rather than by importing compliance. The records keep their place in the compliance
//! subspace, where every existing store has them.

use crate::store::{subspaces, StoreError, Transaction};
use contracts::players::Player;
use contracts::PlayerId;

/// The key of a player's record.
pub fn key(id: &PlayerId) -> Vec<u8> {
    subspaces::compliance().pack(&("player", id.as_str()))
}

/// A registered player, if `id` is one.
pub fn get(tx: &mut dyn Transaction, id: &PlayerId) -> Result<Option<Player>, StoreError> {
    let Some(bytes) = tx.get(&key(id))? else {
        return Ok(None);
    };
    let player = rmp_serde::from_slice(&bytes).map_err(|e| StoreError::Io(format!("decode player {id}: {e}")))?;
    Ok(Some(player))
}
