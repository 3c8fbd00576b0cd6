//! A player's balances and the ledger's checked arithmetic: every sum of money in the kernel and in
//! the money domains goes through `ledger_add`, `ledger_sub` and `ledger_sum`, which refuse rather
//! than round or wrap.

use super::LedgerRefusal;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// A player's balances in one currency, as stored and as journal entries record them after each
/// change.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlayerBalances {
    pub cash: Decimal,
    pub bonus: Decimal,
    pub held: Decimal,
    /// What the player owes the platform, as a balance at or below zero: a chargeback larger
    /// than their cash. The only player balance that goes below zero.
    #[serde(default)]
    pub debt: Decimal,
}

impl PlayerBalances {
    /// Cash + bonus + held + debt, exactly.
    pub fn total(&self) -> Result<Decimal, LedgerRefusal> {
        ledger_add(ledger_add(ledger_add(self.cash, self.bonus)?, self.held)?, self.debt)
    }

    /// Money the platform owes the player never goes below zero; debt never above it.
    pub fn assert_valid(&self, player: &contracts::PlayerId) {
        assert!(
            !self.cash.is_sign_negative() && !self.bonus.is_sign_negative() && !self.held.is_sign_negative(),
            "ledger invariant broken: negative balance for {player}: {self:?}"
        );
        assert!(self.debt <= Decimal::ZERO, "ledger invariant broken: debt above zero for {player}: {self:?}");
    }

    /// What the player owes, as a positive amount.
    pub fn owed(&self) -> Decimal {
        // Negating zero would print as "-0.00".
        if self.debt.is_zero() {
            Decimal::ZERO
        } else {
            -self.debt
        }
    }
}

/// The largest magnitude any ledger sum may take: 10^20 whole units. Amounts and balances are
/// bounded far below it (`contracts::money`: at most 10^12 minor units a balance), and the sum of
/// two values within it, at a scale of at most 8 (BTC's), needs under 2^96 of mantissa, so it is
/// exact: a sum that `Decimal` would round or overflow is refused instead.
pub const LEDGER_MAGNITUDE_MAX: Decimal = Decimal::from_parts(1_661_992_960, 1_808_227_885, 5, false, 0);

/// `a + b`, exactly, or [`LedgerRefusal::AmountOverflow`].
pub fn ledger_add(a: Decimal, b: Decimal) -> Result<Decimal, LedgerRefusal> {
    a.checked_add(b).filter(|sum| sum.abs() <= LEDGER_MAGNITUDE_MAX).ok_or(LedgerRefusal::AmountOverflow)
}

/// `a - b`, exactly, or [`LedgerRefusal::AmountOverflow`].
pub fn ledger_sub(a: Decimal, b: Decimal) -> Result<Decimal, LedgerRefusal> {
    a.checked_sub(b).filter(|diff| diff.abs() <= LEDGER_MAGNITUDE_MAX).ok_or(LedgerRefusal::AmountOverflow)
}

/// `a × b`, exactly, or [`LedgerRefusal::AmountOverflow`].
pub fn ledger_mul(a: Decimal, b: Decimal) -> Result<Decimal, LedgerRefusal> {
    a.checked_mul(b).filter(|product| product.abs() <= LEDGER_MAGNITUDE_MAX).ok_or(LedgerRefusal::AmountOverflow)
}

/// The exact sum of `amounts`, or [`LedgerRefusal::AmountOverflow`].
pub fn ledger_sum(amounts: impl IntoIterator<Item = Decimal>) -> Result<Decimal, LedgerRefusal> {
    amounts.into_iter().try_fold(Decimal::ZERO, ledger_add)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn the_ledger_bound_is_ten_to_the_twentieth_and_sums_within_it_are_exact() {
        assert_eq!(LEDGER_MAGNITUDE_MAX, Decimal::from_str("100000000000000000000").unwrap());
        let tiny = Decimal::new(1, 8);
        let sum = ledger_add(LEDGER_MAGNITUDE_MAX - tiny, tiny).unwrap();
        assert_eq!(ledger_sub(sum, tiny).unwrap(), LEDGER_MAGNITUDE_MAX - tiny, "exact at the bound");
        assert_eq!(ledger_add(LEDGER_MAGNITUDE_MAX, tiny), Err(LedgerRefusal::AmountOverflow));
        assert_eq!(ledger_add(Decimal::MAX, Decimal::MAX), Err(LedgerRefusal::AmountOverflow));
        assert_eq!(ledger_mul(LEDGER_MAGNITUDE_MAX, Decimal::TWO), Err(LedgerRefusal::AmountOverflow));
        assert_eq!(ledger_sum([Decimal::ONE; 3]), Ok(Decimal::from(3)));
    }
}
