//! The cashier's sweeper: every interval it goes through the work lists the writer keeps, and
//! does again what did not happen the first time:
//! - deposits the PSP never answered (the cell stopped mid-call): it asks the PSP what became of
//!   them, and records the answer, or the failure when the PSP never had them;
//! - deposits authorised and not captured, captures to give back, payouts not taken;
//! - deposits and payouts whose last notification is overdue (the PSP may have given up
//!   delivering it): it asks the PSP where they stand, and applies its answer as that
//!   notification;
//! - notifications parked (about a payment not known yet, or refused by the ledger).
//!
//! Each list is read a page at a time from where the last sweep stopped, wrapping around, so a
//! long list is gone through in turn and nothing at its head starves the rest. What fails waits
//! longer each time (doubling, up to [`BACKOFF_MAX`]); nothing is ever dropped.

use super::psps::Notification;
use super::{capture, keys, pay_out, read_payment, refund, take_notification, Cashier, Parked, RecordPspAnswer};
use crate::store::{StoreError, Transaction};
use contracts::cashier::Payment;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// How many items of each list one sweep takes.
const PAGE: usize = 100;
/// How many items of a list a sweep counts for `/metrics`, at most.
const COUNT_MAX: usize = 10_000;
/// The longest a failing item waits between two attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(15 * 60);

/// One work list of the sweeper's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum List {
    ToAnswer,
    ToConfirm,
    ToCapture,
    ToRefund,
    ToPayOut,
    Parked,
    /// Withdrawals waiting for finance: counted, never swept.
    ToReview,
}

impl List {
    const SWEPT: [List; 6] =
        [List::ToAnswer, List::ToConfirm, List::ToCapture, List::ToRefund, List::ToPayOut, List::Parked];

    fn range(self) -> (Vec<u8>, Vec<u8>) {
        match self {
            List::ToAnswer => keys::to_answer_all(),
            List::ToConfirm => keys::to_confirm_all(),
            List::ToCapture => keys::to_capture_all(),
            List::ToRefund => keys::to_refund_all(),
            List::ToPayOut => keys::to_pay_out_all(),
            List::Parked => keys::parked_all(),
            List::ToReview => keys::to_review_all(),
        }
    }

    fn label(self) -> &'static str {
        match self {
            List::ToAnswer => "to_answer",
            List::ToConfirm => "to_confirm",
            List::ToCapture => "to_capture",
            List::ToRefund => "to_refund",
            List::ToPayOut => "to_pay_out",
            List::Parked => "parked",
            List::ToReview => "to_review",
        }
    }
}

/// One page of a work list.
struct Page {
    /// The payments a `(kind, id)` list names.
    payments: Vec<Payment>,
    /// The notifications of the parked list, with their PSP and raw body.
    parked: Vec<Parked>,
    /// Where the next page starts; `None` when this one reached the end.
    next: Option<Vec<u8>>,
}

impl Cashier {
    /// How many items each list holds (up to [`COUNT_MAX`]). Blocking.
    fn counts(&self) -> Result<Vec<(List, usize)>, StoreError> {
        let mut tx = self.store.begin_snapshot_reads()?;
        let mut counts = Vec::new();
        for list in List::SWEPT.into_iter().chain([List::ToReview]) {
            let (start, end) = list.range();
            counts.push((list, tx.get_range(&start, &end, COUNT_MAX, false)?.len()));
        }
        Ok(counts)
    }

    /// The page of `list` after `after` (from its start when `None`). Blocking.
    fn page(&self, list: List, after: Option<&[u8]>) -> Result<Page, StoreError> {
        let (start, end) = list.range();
        let begin = after.map_or(start, |key| [key, &[0u8]].concat());
        let mut tx = self.store.begin_snapshot_reads()?;
        let rows = tx.get_range(&begin, &end, PAGE, false)?;
        let next = (rows.len() == PAGE).then(|| rows.last().map(|(key, _)| key.clone())).flatten();
        let (mut payments, mut parked) = (Vec::new(), Vec::new());
        for (key, value) in rows {
            if list == List::Parked {
                parked.push(rmp_serde::from_slice(&value).map_err(|e| StoreError::corrupt(&key, e))?);
                continue;
            }
            let (_, id): (String, String) =
                crate::store::subspaces::cashier().unpack(&key).map_err(|e| StoreError::corrupt(&key, e))?;
            if let Some(payment) = read_payment(tx.as_mut() as &mut dyn Transaction, &id)? {
                payments.push(payment);
            }
        }
        Ok(Page { payments, parked, next })
    }
}

/// When a failing item may be tried again.
struct Retry {
    attempts: u32,
    not_before: chrono::DateTime<chrono::Utc>,
}

/// How often the sweeper runs, and how long it leaves a payment to its PSP before asking.
#[derive(Debug, Clone, Copy)]
pub struct SweepTimes {
    pub interval: Duration,
    /// How long a deposit may wait for its PSP's answer before the PSP is asked about it.
    pub answer_wait: Duration,
    /// How long a payment may wait for its PSP's last notification before the PSP is asked.
    pub inquiry_wait: Duration,
}

/// The sweeper's memory between sweeps: where each list's next page starts, and the items
/// waiting out their backoff (lost on restart, which only means one earlier attempt).
struct Sweeper {
    cashier: Arc<Cashier>,
    ledger: crate::ledger::Ledger,
    cell: String,
    clock: Arc<dyn crate::clock::Clock>,
    times: SweepTimes,
    metrics: Arc<crate::metrics::Metrics>,
    cursors: HashMap<List, Vec<u8>>,
    retries: HashMap<(List, String), Retry>,
}

impl Sweeper {
    async fn sweep(&mut self) {
        let counter = self.cashier.clone();
        match tokio::task::spawn_blocking(move || counter.counts()).await {
            Ok(Ok(counts)) => {
                for (list, n) in counts {
                    let labels = crate::metrics::WorkListLabels { list: list.label() };
                    self.metrics.cashier_work.get_or_create(&labels).set(n as i64);
                }
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "cashier sweep: cannot count its work"),
            Err(e) => tracing::error!(error = %e, "cashier count task failed"),
        }
        for list in List::SWEPT {
            let (reader, after) = (self.cashier.clone(), self.cursors.get(&list).cloned());
            let page = match tokio::task::spawn_blocking(move || reader.page(list, after.as_deref())).await {
                Ok(Ok(page)) => page,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, ?list, "cashier sweep: cannot read its work");
                    continue;
                }
                Err(e) => {
                    tracing::error!(error = %e, "cashier sweep task failed");
                    continue;
                }
            };
            match page.next {
                Some(next) => self.cursors.insert(list, next),
                None => self.cursors.remove(&list),
            };
            for payment in page.payments {
                self.payment(list, payment).await;
            }
            for parked in page.parked {
                self.parked(parked).await;
            }
        }
        // Backoffs of items no longer listed are forgotten once long past.
        let now = self.clock.now();
        let forget = chrono::Duration::from_std(BACKOFF_MAX * 4).unwrap_or_default();
        self.retries.retain(|_, r| now - r.not_before < forget);
    }

    /// Whether `id` of `list` is due: out of its backoff.
    fn due(&self, list: List, id: &str) -> bool {
        self.retries.get(&(list, id.to_owned())).is_none_or(|r| self.clock.now() >= r.not_before)
    }

    /// Records an attempt's outcome: forgotten when it took, a longer wait when it did not.
    fn attempted(&mut self, list: List, id: &str, took: bool) {
        let key = (list, id.to_owned());
        if took {
            self.retries.remove(&key);
            return;
        }
        let attempts = self.retries.get(&key).map_or(0, |r| r.attempts) + 1;
        let wait = self.times.interval.saturating_mul(1 << attempts.min(16)).min(BACKOFF_MAX);
        let not_before = self.clock.now() + chrono::Duration::from_std(wait).unwrap_or_default();
        if attempts >= 5 {
            tracing::error!(?list, item = id, attempts, ?wait, "cashier sweep: still failing; trying again later");
        }
        self.retries.insert(key, Retry { attempts, not_before });
    }

    async fn payment(&mut self, list: List, payment: Payment) {
        let Some(psp) = self.cashier.psp(&payment.psp) else { return };
        let age = self.clock.now() - payment.updated_at;
        let older = |wait: Duration| age >= chrono::Duration::from_std(wait).unwrap_or_default();
        // Fresh items are the first attempt's, still in flight.
        let wait = match list {
            List::ToAnswer => self.times.answer_wait,
            List::ToConfirm => self.times.inquiry_wait,
            _ => self.times.interval,
        };
        if !older(wait) || !self.due(list, &payment.id) {
            return;
        }
        let took = match list {
            List::ToAnswer => self.ask_what_became(psp, &payment).await,
            List::ToConfirm => self.inquire(psp, &payment).await.unwrap_or(false),
            List::ToCapture => capture(psp, &payment).await,
            List::ToRefund => refund(&self.cashier, psp, &payment).await,
            List::ToPayOut => {
                let settled = if older(self.times.inquiry_wait) { self.inquire(psp, &payment).await } else { None };
                match settled {
                    Some(took) => took,
                    None => {
                        let ctx = crate::events::EventContext::background(&self.cell);
                        pay_out(&self.cashier, &self.ledger, ctx, psp, &payment).await
                    }
                }
            }
            List::Parked | List::ToReview => true,
        };
        self.attempted(list, &payment.id, took);
    }

    /// A deposit whose PSP answer was never recorded: the PSP's word on it, recorded now. One the
    /// PSP never had fails (nothing moved); one it has goes on as if answered.
    async fn ask_what_became(&self, psp: &super::Psp, payment: &Payment) -> bool {
        let answer = match psp.find_payment(&payment.id).await {
            Ok(Some(created)) => Ok(created),
            Ok(None) => {
                Err(format!("{} never received it (the cell stopped before asking): nothing moved", psp.config.id))
            }
            Err(e) => {
                tracing::warn!(payment = %payment.id, error = %e, "cannot ask the PSP about an unanswered deposit");
                return false;
            }
        };
        tracing::warn!(payment = %payment.id, answer = ?answer, "a deposit's PSP answer was lost: recorded from the PSP's inquiry");
        let ctx = crate::events::EventContext::background(&self.cell);
        let command = RecordPspAnswer { id: payment.id.clone(), answer };
        self.ledger.execute_unkeyed(command, ctx).await.is_ok()
    }

    /// Asks the PSP where a payment whose last notification is overdue stands, and applies the
    /// answer as that notification: `None` while the PSP has nothing final to say (or does not
    /// answer), else whether it moved the payment on (an answer already applied did not: the
    /// item backs off rather than asking again every sweep).
    async fn inquire(&self, psp: &super::Psp, payment: &Payment) -> Option<bool> {
        let ctx = crate::events::EventContext::background(&self.cell);
        let outcome = super::inquire_and_apply(&self.cashier, &self.ledger, ctx, psp, payment).await?;
        use super::NotificationOutcome::{Duplicate, Noted, Parked};
        Some(!matches!(outcome, Duplicate | Noted | Parked))
    }

    async fn parked(&mut self, parked: Parked) {
        let Some(psp) = self.cashier.psp(&parked.psp) else { return };
        let Notification { event_id, .. } = &parked.notification;
        let id = format!("{}/{event_id}", parked.psp);
        if !self.due(List::Parked, &id) {
            return;
        }
        let ctx = crate::events::EventContext::background(&self.cell);
        let taken =
            take_notification(&self.cashier, &self.ledger, psp, parked.notification, parked.raw, true, ctx).await;
        let took = match taken {
            Ok(super::NotificationOutcome::Parked) => false,
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(error = %e, "cashier sweep: a parked notification failed again");
                false
            }
        };
        self.attempted(List::Parked, &id, took);
    }
}

/// Runs the sweeper every `interval` on the cell's clock (see the module's documentation).
pub fn spawn_sweeper(
    cashier: Arc<Cashier>,
    ledger: crate::ledger::Ledger,
    cell: String,
    clock: Arc<dyn crate::clock::Clock>,
    times: SweepTimes,
    metrics: Arc<crate::metrics::Metrics>,
) -> tokio::task::JoinHandle<()> {
    let mut sweeper =
        Sweeper { cashier, ledger, cell, clock, times, metrics, cursors: HashMap::new(), retries: HashMap::new() };
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(times.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            sweeper.sweep().await;
        }
    })
}
