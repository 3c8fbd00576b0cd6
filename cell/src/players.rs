//! The registry of the players this cell holds: written once per player by compliance's
//! registration, read by every domain that needs to know a player (that they exist, their home
//! currency, their date of birth). It is shared data, not a domain, so a domain reads a player
//! here rather than by importing compliance. The records keep their place in the compliance
//! subspace, where every existing store has them.

use crate::store::{subspaces, StoreError, Transaction};
use chrono::{Datelike, NaiveDate};
use contracts::players::Player;
use contracts::PlayerId;

/// The key of a player's record.
pub fn key(id: &PlayerId) -> Vec<u8> {
    subspaces::compliance().pack(&("player", id.as_str()))
}

/// The key of a player's credential: their password's argon2id hash (PHC string).
pub fn credential_key(id: &PlayerId) -> Vec<u8> {
    subspaces::compliance().pack(&("credential", id.as_str()))
}

/// A player's password hash, if they have one (players registered before passwords have none,
/// and cannot log in until one is set).
pub fn credential(tx: &mut dyn Transaction, id: &PlayerId) -> Result<Option<String>, StoreError> {
    let key = credential_key(id);
    match tx.get(&key)? {
        Some(bytes) => String::from_utf8(bytes).map(Some).map_err(|e| StoreError::corrupt(&key, e)),
        None => Ok(None),
    }
}

/// A registered player, if `id` is one.
pub fn get(tx: &mut dyn Transaction, id: &PlayerId) -> Result<Option<Player>, StoreError> {
    let Some(bytes) = tx.get(&key(id))? else {
        return Ok(None);
    };
    let player = rmp_serde::from_slice(&bytes).map_err(|e| StoreError::corrupt(&key(id), e))?;
    Ok(Some(player))
}

/// Whole years between `birth` and `today`.
pub fn age_on(birth: NaiveDate, today: NaiveDate) -> u32 {
    let mut years = today.year() - birth.year();
    if (today.month(), today.day()) < (birth.month(), birth.day()) {
        years -= 1;
    }
    years.max(0) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn age_counts_whole_years() {
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        assert_eq!(age_on(d("2000-06-15"), d("2018-06-14")), 17);
        assert_eq!(age_on(d("2000-06-15"), d("2018-06-15")), 18);
        assert_eq!(age_on(d("2004-02-29"), d("2022-02-28")), 17);
        assert_eq!(age_on(d("2004-02-29"), d("2022-03-01")), 18);
    }
}
