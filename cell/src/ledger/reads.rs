//! What the ledger reads straight from the store, outside the writer: balances now and as of an
//! instant, the ledger's totals, and the journal's sequence record.

use super::kernel::JournalRecord;
use super::keys;
use super::money::{ledger_add, PlayerBalances};
use super::writer::decode;
use crate::store::{Store, StoreError, Transaction};
use chrono::{DateTime, Utc};
use contracts::{Currency, PlayerId};
use rust_decimal::Decimal;
use std::collections::BTreeMap;

/// The journal's last sequence number and, unless the store was written before it was kept, the
/// last entry's timestamp in microseconds.
pub(super) fn sequence_decode(bytes: &[u8]) -> Result<(u64, Option<i64>), StoreError> {
    // A two-element MessagePack array (0x92) since the timestamp is kept; a bare integer before.
    if bytes.first() == Some(&0x92) {
        let (seq, last_us) = decode(&keys::sequence(), bytes)?;
        Ok((seq, Some(last_us)))
    } else {
        Ok((decode(&keys::sequence(), bytes)?, None))
    }
}

/// Reads a player's stored balances (zero if none) and checks them.
pub(super) fn balance_read(
    tx: &mut dyn Transaction,
    player: &PlayerId,
    currency: Currency,
) -> Result<PlayerBalances, StoreError> {
    let key = keys::balance(player, currency);
    let balances = match tx.get(&key)? {
        Some(bytes) => decode(&key, &bytes)?,
        None => PlayerBalances::default(),
    };
    balances.assert_valid(player);
    Ok(balances)
}

/// A player's balances as of `instant`: those recorded by their last entry at or before it.
pub(super) fn balance_as_of(
    tx: &mut dyn Transaction,
    player: &PlayerId,
    currency: Currency,
    instant: DateTime<Utc>,
) -> Result<PlayerBalances, StoreError> {
    let (begin, end) = keys::entries_until(player, currency, instant.timestamp_micros());
    let last = tx.get_range(&begin, &end, 1, true)?;
    match last.first() {
        Some((key, bytes)) => {
            let entry: JournalRecord = decode(key, bytes)?;
            entry.after.assert_valid(player);
            Ok(entry.after)
        }
        None => Ok(PlayerBalances::default()),
    }
}

/// Sum of every balance, player and house, per currency.
pub(super) fn ledger_totals(store: &dyn Store) -> Result<BTreeMap<Currency, Decimal>, StoreError> {
    let mut totals: BTreeMap<Currency, Decimal> = BTreeMap::new();
    let mut tx = store.begin()?;
    let wallet = crate::store::subspaces::wallet();
    let (begin, end) = keys::balances_range();
    for (key, value) in tx.get_range(&begin, &end, usize::MAX, false)? {
        let (_, _, code): (String, String, String) = wallet.unpack(&key).map_err(|e| StoreError::corrupt(&key, e))?;
        let b: PlayerBalances = decode(&key, &value)?;
        let currency = Currency::from_code(&code).map_err(|e| StoreError::corrupt(&key, e))?;
        total_add(&mut totals, currency, b.cash)?;
        total_add(&mut totals, currency, b.bonus)?;
        total_add(&mut totals, currency, b.held)?;
        total_add(&mut totals, currency, b.debt)?;
    }
    let (begin, end) = keys::house_range();
    for (key, value) in tx.get_range(&begin, &end, usize::MAX, false)? {
        let (_, _, code): (String, String, String) = wallet.unpack(&key).map_err(|e| StoreError::corrupt(&key, e))?;
        let amount: Decimal = decode(&key, &value)?;
        let currency = Currency::from_code(&code).map_err(|e| StoreError::corrupt(&key, e))?;
        total_add(&mut totals, currency, amount)?;
    }
    Ok(totals)
}

/// Adds `amount` to `currency`'s total, exactly: a sum the ledger cannot hold means a stored
/// balance is out of every bound, which only a damaged store can do.
fn total_add(totals: &mut BTreeMap<Currency, Decimal>, currency: Currency, amount: Decimal) -> Result<(), StoreError> {
    let total = totals.entry(currency).or_default();
    *total = ledger_add(*total, amount).map_err(|_| StoreError::Corrupt {
        key: format!("the {currency} balances"),
        why: "their sum is past every bound".into(),
    })?;
    Ok(())
}

/// Every journal entry, player by player, a page at a time (memory does not grow with the
/// journal): what a regulator's verifier compares an export's totals with.
pub fn journal_each(store: &dyn Store, mut each: impl FnMut(&JournalRecord)) -> Result<(), StoreError> {
    const PAGE: usize = 10_000;
    let (mut begin, end) = keys::entries_all();
    loop {
        let rows = store.begin_snapshot_reads()?.get_range(&begin, &end, PAGE, false)?;
        let full = rows.len() == PAGE;
        for (key, value) in &rows {
            each(&decode::<JournalRecord>(key, value)?);
        }
        match rows.last() {
            Some((key, _)) if full => begin = [key.as_slice(), &[0u8]].concat(),
            _ => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::writer::encode;

    #[test]
    fn the_sequence_record_reads_with_its_timestamp_and_as_stored_before_it_had_one() {
        assert_eq!(sequence_decode(&encode(&(5u64, -7i64))).unwrap(), (5, Some(-7)));
        assert_eq!(sequence_decode(&encode(&5u64)).unwrap(), (5, None));
        assert!(sequence_decode(b"\xc1").is_err(), "bytes of neither form are an error, not sequence zero");
    }
}
