//! Key layout of the ledger's records, in the wallet subspace (where every existing store has
//! them). Domains keep their own records there too, under their own keys (`round`, `game`,
//! `gopen`: see each domain's `keys.rs`).
//!
//! ```text
//! ("bal", player, currency)                      -> PlayerBalances   cash, bonus, held
//! ("house", account, currency)                   -> Decimal          house account balances
//! ("entry", player, currency, ts_us, seq)        -> JournalRecord    the journal, per player, in time order
//! ("idem", key)                                  -> IdempotencyRecord
//! ("meta", "seq")                                -> (u64, i64)       last entry's sequence number and timestamp (µs);
//!                                                                     a bare u64 in stores written before 2026-11-26
//! ```

use crate::store::subspaces;
use contracts::{Currency, PlayerId};

pub fn balance(player: &PlayerId, currency: Currency) -> Vec<u8> {
    subspaces::wallet().pack(&("bal", player.as_str(), currency.code()))
}

pub fn balances_range() -> (Vec<u8>, Vec<u8>) {
    subspaces::wallet().subspace(&"bal").range()
}

pub fn house(account: &str, currency: Currency) -> Vec<u8> {
    subspaces::wallet().pack(&("house", account, currency.code()))
}

pub fn house_range() -> (Vec<u8>, Vec<u8>) {
    subspaces::wallet().subspace(&"house").range()
}

pub fn entry(player: &PlayerId, currency: Currency, ts_us: i64, seq: u64) -> Vec<u8> {
    subspaces::wallet().pack(&("entry", player.as_str(), currency.code(), ts_us, seq))
}

/// Entries of a player in a currency with a timestamp up to and including `ts_us`.
/// Every player's journal.
pub fn entries_all() -> (Vec<u8>, Vec<u8>) {
    subspaces::wallet().subspace(&("entry",)).range()
}

pub fn entries_until(player: &PlayerId, currency: Currency, ts_us: i64) -> (Vec<u8>, Vec<u8>) {
    let space = subspaces::wallet().subspace(&("entry", player.as_str(), currency.code()));
    let (begin, _) = space.range();
    (begin, space.pack(&(ts_us.saturating_add(1),)))
}

/// Entries of a player in a currency from `ts_us` on.
pub fn entries_since(player: &PlayerId, currency: Currency, ts_us: i64) -> (Vec<u8>, Vec<u8>) {
    let space = subspaces::wallet().subspace(&("entry", player.as_str(), currency.code()));
    let (_, end) = space.range();
    (space.pack(&(ts_us,)), end)
}

pub fn idempotency(key: &str) -> Vec<u8> {
    crate::idempotency::key_in(&subspaces::wallet(), key)
}

pub fn sequence() -> Vec<u8> {
    subspaces::wallet().pack(&("meta", "seq"))
}
