//! The money kernel: a double-entry ledger of player cash, bonus and held money against house
//! accounts, per currency (DESIGN.md section 4), and the one writer that changes it.
//!
//! Every movement is a journal entry of balanced postings, so per currency all balances sum to
//! zero. Nothing is rewritten: a correction is a new entry. All changes go through a single writer
//! thread that applies commands in order against its in-memory view and commits them in batches,
//! each command atomic and answered only once its batch is durable (as TigerBeetle does). Reads go
//! to the store directly.
//!
//! The kernel knows nothing of games, payments or bonuses. A money domain brings its own
//! commands ([`LedgerCommand`]), its own state on the writer thread ([`Room`]), its own refusals
//! and typed answers; compliance brings gates ([`Gate`]) that every entry passes before it is
//! applied. A new domain is added without editing the kernel.
//!
//! Here: [`Ledger`], the front door (submit a command, read balances). [`kernel`]: what a command
//! may do in its batch. [`command`]: commands and rooms. [`gate`]: rules on every entry.
//! [`refusal`]: what is refused and how a submission fails. [`money`]: balances and checked sums.
//! [`writer`] and [`pipeline`]: the writer thread, its batches and their commit. [`reads`]: what is
//! read outside the writer.

// Money is summed here: an overflowing or rounding operator would panic the writer (a poison pill
// for every player of the cell) or silently round the books. Every sum goes through the checked
// `ledger_*` functions instead; the lint keeps a plain `+` from creeping back in.
#![deny(clippy::arithmetic_side_effects)]

pub mod command;
pub mod gate;
pub mod kernel;
mod keys;
pub mod money;
mod pipeline;
mod reads;
pub mod refusal;
mod writer;

pub use command::{Answered, LedgerCommand, Outcome, Room};
pub use gate::{
    journal_since, Gate, GateRefusal, GateState, GatedEntry, JournalFact, PlayerContext, PostingKind, StakeContext,
};
pub(crate) use kernel::or_refuse;
pub use kernel::{Account, Entry, HouseAccount, KernelTx, Posted, Posting, Registered};
pub use money::{ledger_add, ledger_mul, ledger_sub, ledger_sum, PlayerBalances, LEDGER_MAGNITUDE_MAX};
pub use reads::journal_each;
pub use refusal::{Failed, LedgerRefusal, Refusal};
pub use writer::{decode, encode, WriterConfig};

use crate::events::EventContext;
use crate::idempotency::IdempotencyKey;
use crate::metrics::Metrics;
use crate::store::{Store, StoreError};
use chrono::{DateTime, Utc};
use contracts::region::RegionConfig;
use contracts::{Amount, Currency, Money, PlayerId};
use rust_decimal::Decimal;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Whether the writer has failed, and why: raised once, never lowered. A cell whose writer failed
/// is not ready (`/readyz` 503, so the router fails over) and stops, exiting non-zero so that its
/// supervisor restarts it.
#[derive(Clone)]
pub struct Fault(Arc<tokio::sync::watch::Sender<Option<String>>>);

impl Default for Fault {
    fn default() -> Self {
        Fault(Arc::new(tokio::sync::watch::channel(None).0))
    }
}

impl Fault {
    /// Records the first failure (later ones are logged only).
    pub fn raise(&self, why: String) {
        tracing::error!(fault = %why, "the ledger has failed: the cell is no longer ready and stops");
        self.0.send_if_modified(|fault| fault.is_none() && fault.replace(why).is_none());
    }

    /// Why the writer failed, if it has.
    pub fn get(&self) -> Option<String> {
        self.0.borrow().clone()
    }

    /// Resolves once the writer has failed.
    pub async fn raised(&self) {
        let mut watching = self.0.subscribe();
        let _ = watching.wait_for(Option::is_some).await;
    }
}

/// The ledger of one cell: the front door to its single writer and its reads.
#[derive(Clone)]
pub struct Ledger {
    /// The writer's queue; `None` once `shutdown` closed it.
    submissions: Arc<std::sync::RwLock<Option<mpsc::Sender<writer::Submission>>>>,
    store: Arc<dyn Store>,
    region: Arc<RegionConfig>,
    metrics: Arc<Metrics>,
    fault: Fault,
}

impl Ledger {
    /// Starts the writer thread, with the gates every entry must pass. It stops once every
    /// `Ledger` clone is dropped (or [`Ledger::shutdown`]), after answering what it was given.
    pub fn start(
        store: Arc<dyn Store>,
        region: Arc<RegionConfig>,
        metrics: Arc<Metrics>,
        config: WriterConfig,
        clock: Arc<dyn crate::clock::Clock>,
        gates: Vec<Box<dyn Gate>>,
    ) -> Result<(Ledger, std::thread::JoinHandle<()>), StoreError> {
        let fault = Fault::default();
        let writer = writer::Writer {
            store: store.clone(),
            metrics: metrics.clone(),
            fault: fault.clone(),
            clock,
            gates,
            jurisdiction: region.cell_id.clone(),
            view: writer::View::default(),
            rooms: command::Rooms::default(),
            chain: crate::audit::AuditChain::default(),
            batch: 0,
            epoch: 0,
            pipeline: std::collections::VecDeque::new(),
        };
        let (submissions, handle) = writer::spawn(writer, config)?;
        let submissions = Arc::new(std::sync::RwLock::new(Some(submissions)));
        Ok((Ledger { submissions, store, region, metrics, fault }, handle))
    }

    /// Whether the writer has failed (see [`Fault`]).
    pub fn fault(&self) -> &Fault {
        &self.fault
    }

    /// Closes the writer's queue: commands already queued are still committed and answered, new
    /// ones are refused, and the writer thread then ends.
    pub fn shutdown(&self) {
        self.submissions.write().unwrap_or_else(|p| p.into_inner()).take();
    }

    /// `code` as a currency this cell books.
    pub fn booked(&self, code: &str) -> Result<Currency, LedgerRefusal> {
        let currency = Currency::from_code(code)?;
        if !self.region.books(currency) {
            let booked = self.region.currencies.iter().map(|c| c.code()).collect::<Vec<_>>().join(", ");
            return Err(LedgerRefusal::CurrencyNotBooked { currency: currency.code(), booked });
        }
        Ok(currency)
    }

    /// Money in a currency this cell books: strictly positive, or (`zero_ok`) zero or more.
    pub fn money(&self, amount: Decimal, currency: &str, zero_ok: bool) -> Result<Money, LedgerRefusal> {
        let currency = self.booked(currency)?;
        if zero_ok && amount.is_zero() {
            return Ok(Money::signed(amount, currency)?);
        }
        Ok(Money::positive(amount, currency)?)
    }

    /// Runs `command` through the writer; answers once it is durable (or refused). A retry with
    /// the same key gets the recorded answer.
    pub async fn execute<C: LedgerCommand>(&self, command: C, key: IdempotencyKey, ctx: EventContext) -> Outcome<C> {
        self.submit(command, Some(key), ctx).await
    }

    /// Runs a command that is idempotent by its own checks (ending a round, voiding one), with no
    /// idempotency record: a repeat is decided against the state and moves nothing twice.
    pub async fn execute_unkeyed<C: LedgerCommand>(&self, command: C, ctx: EventContext) -> Outcome<C> {
        self.submit(command, None, ctx).await
    }

    async fn submit<C: LedgerCommand>(&self, command: C, key: Option<IdempotencyKey>, ctx: EventContext) -> Outcome<C> {
        let kind = command.kind();
        let submitted = std::time::Instant::now();
        let (reply, answer) = oneshot::channel();
        let job = Box::new(command::Typed { command, outcome: None, reply });
        self.metrics.wallet_queue_depth.inc();
        let sender = self.submissions.read().unwrap_or_else(|p| p.into_inner()).clone();
        let sent = match sender {
            Some(sender) => sender.send(writer::Submission { job, key, ctx, submitted }).await.is_ok(),
            None => false,
        };
        if !sent {
            self.metrics.wallet_queue_depth.dec();
            return Err(Failed::Stopped);
        }
        let result = answer.await.unwrap_or(Err(Failed::Stopped));
        self.metrics.wallet_stage(crate::metrics::Stage::Answered, submitted);
        let outcome = match &result {
            Ok(a) if a.replayed => "replayed",
            Ok(_) => "ok",
            Err(f) if f.replayed() => "replayed",
            Err(_) => "refused",
        };
        self.metrics.wallet_ops.get_or_create(&crate::metrics::WalletOpLabels { op: kind, outcome }).inc();
        result
    }

    /// A player's balances now, or as of a past instant (recomputed from the journal). Blocking.
    pub fn balance(
        &self,
        player: &PlayerId,
        currency: Option<&str>,
        as_of: Option<DateTime<Utc>>,
    ) -> Result<contracts::wallet::BalanceResponse, Failed<LedgerRefusal>> {
        let mut tx = self.store.begin().map_err(unavailable)?;
        let Some(registered) = crate::players::get(tx.as_mut(), player).map_err(unavailable)? else {
            return Err(Failed::Refused(LedgerRefusal::PlayerNotFound(player.to_string())));
        };
        let currency = match currency {
            Some(code) => self.booked(code).map_err(Failed::Refused)?,
            None => registered.currency,
        };
        let balances = match as_of {
            None => reads::balance_read(tx.as_mut(), player, currency).map_err(unavailable)?,
            Some(instant) => reads::balance_as_of(tx.as_mut(), player, currency, instant).map_err(unavailable)?,
        };
        let s = currency.scale();
        Ok(contracts::wallet::BalanceResponse {
            player_id: player.clone(),
            currency,
            cash: Amount::at_scale(balances.cash, s),
            bonus: Amount::at_scale(balances.bonus, s),
            held: Amount::at_scale(balances.held, s),
            debt: Amount::at_scale(balances.owed(), s),
            as_of,
        })
    }

    /// A player's cash in `currency` as the store holds it now. Blocking.
    pub fn cash(&self, player: &PlayerId, currency: &str) -> Result<(Currency, Decimal), Failed<LedgerRefusal>> {
        let currency = self.booked(currency).map_err(Failed::Refused)?;
        let mut tx = self.store.begin().map_err(unavailable)?;
        if crate::players::get(tx.as_mut(), player).map_err(unavailable)?.is_none() {
            return Err(Failed::Refused(LedgerRefusal::PlayerNotFound(player.to_string())));
        }
        Ok((currency, reads::balance_read(tx.as_mut(), player, currency).map_err(unavailable)?.cash))
    }

    /// The sum of every account, player and house, per currency: zero when the books balance.
    pub fn ledger_totals(&self) -> Result<BTreeMap<Currency, Decimal>, Failed<LedgerRefusal>> {
        reads::ledger_totals(self.store.as_ref()).map_err(unavailable)
    }
}

fn unavailable(e: StoreError) -> Failed<LedgerRefusal> {
    writer::store_failed(&e).map(|never| match never {})
}

#[cfg(test)]
mod tests {
    use super::*;
    use contracts::CellCode;

    #[test]
    fn refusals_keep_their_codes_and_statuses() {
        let gbp = Currency::from_code("GBP").unwrap();
        let limit = LedgerRefusal::BalanceLimit {
            player: "uk-1".into(),
            currency: gbp.code(),
            max: gbp.balance_max(),
            would_be: gbp.balance_max(),
        };
        assert_eq!((limit.code(), limit.status()), (CellCode::BalanceLimit, 422));
        let failed: Failed<LedgerRefusal> = Failed::Refused(LedgerRefusal::PlayerNotFound("uk-1".into()));
        assert_eq!((failed.code(), failed.status()), (CellCode::PlayerNotFound, 404));
        let corrupt = StoreError::corrupt(b"\x02wallet\x00", "bad bytes");
        assert_eq!(unavailable(corrupt).status(), 500, "a corrupt record is no reason to retry");
    }
}
