//! Key layout of the cashier subspace.

use crate::store::subspaces;

/// A payment by the cell's id (`dep_...`).
pub fn payment(id: &str) -> Vec<u8> {
    subspaces::cashier().pack(&("payment", id))
}

/// A player's payments, by creation time: `(player, created µs, id)` → nothing.
pub fn player_payment(player: &str, created_us: i64, id: &str) -> Vec<u8> {
    subspaces::cashier().pack(&("player-payment", player, created_us, id))
}

/// Every payment of a player.
pub fn player_payments(player: &str) -> (Vec<u8>, Vec<u8>) {
    subspaces::cashier().subspace(&("player-payment", player)).range()
}

/// A PSP event id already taken (its notification is in the chain): deduplication.
pub fn seen(psp: &str, event_id: &str) -> Vec<u8> {
    subspaces::cashier().pack(&("seen", psp, event_id))
}

/// A notification about a payment the cell does not know (yet): kept and tried again.
pub fn parked(psp: &str, event_id: &str) -> Vec<u8> {
    subspaces::cashier().pack(&("parked", psp, event_id))
}

/// Every parked notification.
pub fn parked_all() -> (Vec<u8>, Vec<u8>) {
    subspaces::cashier().subspace(&("parked",)).range()
}

/// A deposit authorised and not yet captured: the capture sweeper's work list.
pub fn to_capture(id: &str) -> Vec<u8> {
    subspaces::cashier().pack(&("to-capture", id))
}

/// Every deposit waiting for its capture.
pub fn to_capture_all() -> (Vec<u8>, Vec<u8>) {
    subspaces::cashier().subspace(&("to-capture",)).range()
}

/// A withdrawal approved and not yet paid or failed: the sweeper asks its PSP again (a payout is
/// idempotent on the payment id).
pub fn to_pay_out(id: &str) -> Vec<u8> {
    subspaces::cashier().pack(&("to-pay-out", id))
}

/// Every withdrawal waiting for its payout.
pub fn to_pay_out_all() -> (Vec<u8>, Vec<u8>) {
    subspaces::cashier().subspace(&("to-pay-out",)).range()
}

/// A line the cell booked with a PSP on a day (`CAPTURE`, `PAYOUT`, `CHARGEBACK`) for a payment:
/// its amount. What reconciliation compares with the PSP's settlement report.
pub fn settled(date: &str, psp: &str, kind: &str, payment: &str) -> Vec<u8> {
    subspaces::cashier().pack(&("settled", psp, date, kind, payment))
}

/// Every line booked with `psp` on `date`.
pub fn settled_on(psp: &str, date: &str) -> (Vec<u8>, Vec<u8>) {
    subspaces::cashier().subspace(&("settled", psp, date)).range()
}

/// A capture the cell refused after the PSP took the money: its refund is asked for until the
/// PSP's `REFUND` comes.
pub fn to_refund(id: &str) -> Vec<u8> {
    subspaces::cashier().pack(&("to-refund", id))
}

/// Every capture waiting for its refund.
pub fn to_refund_all() -> (Vec<u8>, Vec<u8>) {
    subspaces::cashier().subspace(&("to-refund",)).range()
}

/// A withdrawal waiting for the finance role.
pub fn to_review(id: &str) -> Vec<u8> {
    subspaces::cashier().pack(&("to-review", id))
}

/// Every withdrawal waiting for the finance role.
pub fn to_review_all() -> (Vec<u8>, Vec<u8>) {
    subspaces::cashier().subspace(&("to-review",)).range()
}

/// A deposit recorded and not yet answered by its PSP: a cell that stopped between the two
/// leaves it here, and the sweeper asks the PSP what became of it.
pub fn to_answer(id: &str) -> Vec<u8> {
    subspaces::cashier().pack(&("to-answer", id))
}

/// Every deposit waiting for its PSP's answer.
pub fn to_answer_all() -> (Vec<u8>, Vec<u8>) {
    subspaces::cashier().subspace(&("to-answer",)).range()
}

/// A deposit whose PSP has not said its last word (captured, or refused): past a while, the
/// sweeper asks the PSP rather than wait for a notification it may have given up sending.
pub fn to_confirm(id: &str) -> Vec<u8> {
    subspaces::cashier().pack(&("to-confirm", id))
}

/// Every deposit waiting for its PSP's last word.
pub fn to_confirm_all() -> (Vec<u8>, Vec<u8>) {
    subspaces::cashier().subspace(&("to-confirm",)).range()
}
