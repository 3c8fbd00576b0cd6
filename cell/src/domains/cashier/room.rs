//! The cashier's room on the writer: payments and the PSP event ids seen, as the batches in
//! flight left them.
//!
//! The writer applies a batch while the one before it may still be committing, on a snapshot that
//! does not hold that batch's writes. Balances live in the kernel's view; a payment's status and
//! an event id's "seen" mark live here, so a command reads what the batch before it did (a
//! withdrawal cancelled once, a capture credited once), whatever the store has committed yet.
//! Every command that reads or changes a payment goes through this room.

use super::{keys, Payment};
use crate::ledger::Room;
use crate::store::{StoreError, Transaction};
use contracts::PlayerId;
use std::collections::{HashMap, HashSet};

/// A payment as a batch in flight left it.
struct Cached {
    payment: Payment,
    /// The batch that last wrote it (0: read, not written, since it was cached).
    written_in: u64,
    /// Its place in its player's list is to be written too (a new payment).
    new: bool,
}

#[derive(Default)]
pub struct CashierRoom {
    payments: HashMap<String, Cached>,
    /// Payments changed by the batch being applied.
    dirty: HashSet<String>,
    /// PSP event ids `(psp, event id)` seen by a batch not yet in the store, with that batch
    /// (0 while it is the batch being applied).
    seen: HashMap<(String, String), u64>,
}

impl CashierRoom {
    /// The payment `id`, as the latest batch left it.
    pub(super) fn payment(&mut self, tx: &mut dyn Transaction, id: &str) -> Result<Option<Payment>, StoreError> {
        if let Some(cached) = self.payments.get(id) {
            return Ok(Some(cached.payment.clone()));
        }
        let Some(payment) = super::read_payment(tx, id)? else { return Ok(None) };
        let cached = Cached { payment: payment.clone(), written_in: 0, new: false };
        self.payments.insert(id.to_owned(), cached);
        Ok(Some(payment))
    }

    /// Records `payment` as it now is (written with the batch).
    pub(super) fn put(&mut self, payment: &Payment) {
        let id = payment.id.clone();
        match self.payments.get_mut(&id) {
            Some(cached) => cached.payment = payment.clone(),
            None => {
                let cached = Cached { payment: payment.clone(), written_in: 0, new: false };
                self.payments.insert(id.clone(), cached);
            }
        }
        self.dirty.insert(id);
    }

    /// Records a new payment, and its place in its player's list.
    pub(super) fn put_new(&mut self, payment: &Payment) {
        self.put(payment);
        if let Some(cached) = self.payments.get_mut(&payment.id) {
            cached.new = true;
        }
    }

    /// A player's payments, newest first (the newest 1,000 the store lists, and those of batches
    /// in flight).
    pub(super) fn player_payments(
        &mut self,
        tx: &mut dyn Transaction,
        player: &PlayerId,
    ) -> Result<Vec<Payment>, StoreError> {
        let mut payments = Vec::new();
        for id in super::player_payment_ids(tx, player)? {
            if let Some(payment) = self.payment(tx, &id)? {
                payments.push(payment);
            }
        }
        let listed: HashSet<String> = payments.iter().map(|p| p.id.clone()).collect();
        let in_flight = self.payments.values().map(|c| &c.payment);
        payments.extend(in_flight.filter(|p| p.player_id == *player && !listed.contains(&p.id)).cloned());
        payments.sort_by(|a, b| b.created_at.cmp(&a.created_at).then_with(|| b.id.cmp(&a.id)));
        Ok(payments)
    }

    /// Whether the PSP's event `event_id` was seen; marks it seen if not.
    pub(super) fn seen_before(
        &mut self,
        tx: &mut dyn Transaction,
        psp: &str,
        event_id: &str,
    ) -> Result<bool, StoreError> {
        let key = (psp.to_owned(), event_id.to_owned());
        if self.seen.contains_key(&key) || tx.get(&keys::seen(psp, event_id))?.is_some() {
            return Ok(true);
        }
        self.seen.insert(key, 0);
        Ok(false)
    }
}

impl Room for CashierRoom {
    fn write(&mut self, tx: &mut dyn Transaction, batch: u64) -> Result<(), StoreError> {
        for id in self.dirty.drain() {
            let cached = self.payments.get_mut(&id).expect("a dirty payment is cached");
            cached.written_in = batch;
            super::write_payment(tx, &cached.payment)?;
            if std::mem::take(&mut cached.new) {
                let p = &cached.payment;
                tx.set(&keys::player_payment(p.player_id.as_str(), p.created_at.timestamp_micros(), &p.id), &[])?;
            }
        }
        for ((psp, event_id), written_in) in self.seen.iter_mut().filter(|(_, b)| **b == 0) {
            *written_in = batch;
            tx.set(&keys::seen(psp, event_id), &[])?;
        }
        Ok(())
    }

    fn committed(&mut self, batch: u64) {
        // Once its last write is in the store, a snapshot reads it as this room would.
        self.payments.retain(|_, c| c.written_in > batch);
        self.seen.retain(|_, b| *b > batch);
    }

    fn forget(&mut self) {
        self.payments.clear();
        self.dirty.clear();
        self.seen.clear();
    }

    fn cached(&self) -> usize {
        self.payments.len() + self.seen.len()
    }
}
