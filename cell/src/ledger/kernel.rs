//! The kernel's transaction handle: what a domain command may do inside its batch. Read a player's
//! registration and balances, post balanced journal entries (checked, gated, then applied), append
//! events to the outbox and the audit chain, and read and write the domain's own records. Nothing
//! here knows of games, payments or bonuses.

use super::gate::{GateState, GatedEntry, PlayerContext, PostingKind, StakeContext};
use super::money::{ledger_add, PlayerBalances};
use super::refusal::LedgerRefusal;
use super::writer::{encode, Batch, View};
use super::{keys, Gate};
use crate::clock::Clock;
use crate::events::{self, EventContext};
use crate::store::{StoreError, Transaction};
use chrono::{DateTime, NaiveDate, Utc};
use contracts::{Amount, CountryCode, Currency, PlayerId};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// A house account: the platform's side of entries, named by the domain that posts to it
/// (`game_revenue`, `psp_clearing`). Its balance is kept per currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HouseAccount(pub &'static str);

/// An account an entry's postings move money between: the entry's player's own, or a house's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Account {
    Cash,
    Bonus,
    Held,
    /// What the player owes (at or below zero): only a chargeback past their cash moves it down,
    /// and their next deposits repay it first.
    Debt,
    House(HouseAccount),
}

/// One movement of `amount` (positive) from one account to another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Posting {
    pub from: Account,
    pub to: Account,
    pub amount: Decimal,
}

/// One journal entry: a player's postings in one currency for one cause.
#[derive(Debug, Clone)]
pub struct Entry<'a> {
    pub player: &'a PlayerId,
    pub currency: Currency,
    pub kind: PostingKind,
    /// What the journal calls it (`bet`, `timeout-settle`): the domain's word for the cause.
    pub label: &'static str,
    /// The cause's reference (`provider/round/transaction`).
    pub reference: String,
    pub postings: Vec<Posting>,
    /// For a stake, its round: what gates need to apply per-round rules.
    pub stake: Option<StakeContext>,
    /// Where the request came from, when the domain knows it.
    pub location: Option<CountryCode>,
    /// A deposit's or withdrawal's payment method, as the PSP names it (AML rules count them).
    pub payment_method: Option<String>,
}

/// An entry as applied: its journal sequence number and the player's balances after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Posted {
    pub seq: u64,
    pub after: PlayerBalances,
}

/// A registered player, as the kernel caches it: what gates and domains need of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Registered {
    pub currency: Currency,
    pub date_of_birth: NaiveDate,
    pub residence: CountryCode,
}

/// One journal record, as stored: an entry's postings, with the balances after it.
#[derive(Debug, Serialize, Deserialize)]
pub struct JournalRecord {
    pub seq: u64,
    pub ts: DateTime<Utc>,
    pub kind: String,
    pub reference: String,
    pub currency: String,
    /// (debit account, credit account, amount): each posting moves `amount` from one to the other.
    pub postings: Vec<(String, String, Decimal)>,
    pub after: PlayerBalances,
    /// What the entry is, for gates that count (absent in entries written before it was kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub posting_kind: Option<PostingKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_method: Option<String>,
}

/// What the gates were shown of one entry, to show them again when it is counted.
#[derive(Clone, Copy)]
struct GateFacts {
    registered: Registered,
    amount: Decimal,
    earlier: Decimal,
}

/// Who moves money in `e`, as gates see them.
fn player_context<'p>(
    e: &'p Entry<'_>,
    facts: &GateFacts,
    jurisdiction: &'p str,
    at: DateTime<Utc>,
) -> PlayerContext<'p> {
    PlayerContext {
        player: e.player,
        date_of_birth: facts.registered.date_of_birth,
        age: crate::players::age_on(facts.registered.date_of_birth, at.date_naive()),
        residence: facts.registered.residence,
        jurisdiction,
        location: e.location,
    }
}

fn gated_entry<'p>(
    e: &'p Entry<'_>,
    player: &'p PlayerContext<'p>,
    facts: &GateFacts,
    at: DateTime<Utc>,
) -> GatedEntry<'p> {
    GatedEntry {
        kind: e.kind,
        player,
        currency: e.currency,
        amount: facts.amount,
        stake: e.stake,
        now: at,
        earlier: facts.earlier,
        payment_method: e.payment_method.as_deref(),
    }
}

/// Unwraps a checked step, or answers its refusal: every check comes before any change.
macro_rules! or_refuse {
    ($checked:expr) => {
        match $checked {
            Ok(value) => value,
            Err(refused) => return Ok(Err(refused.into())),
        }
    };
}
pub(crate) use or_refuse;

/// A domain command's handle on the batch it runs in.
pub struct KernelTx<'a> {
    pub(super) tx: &'a mut dyn Transaction,
    pub(super) view: &'a mut View,
    pub(super) batch: &'a mut Batch,
    pub(super) ctx: &'a EventContext,
    pub(super) gates: &'a [Box<dyn Gate>],
    /// Every domain's room but the running command's own: what gates keep.
    pub(super) rooms: &'a mut super::command::Rooms,
    pub(super) jurisdiction: &'a str,
    pub(super) clock: &'a dyn Clock,
}

impl KernelTx<'_> {
    /// When the batch is applied: its events' time.
    pub fn now(&self) -> DateTime<Utc> {
        self.batch.at
    }

    /// The domain's own records, in the batch's transaction.
    pub fn store(&mut self) -> &mut dyn Transaction {
        self.tx
    }

    /// Another room than the command's own, with the batch's transaction: a rule's state, which
    /// its gate reads on every entry and its domain's commands change (a player's limits).
    pub fn room<R: super::Room + Default>(&mut self) -> (&mut R, &mut dyn Transaction) {
        (self.rooms.get::<R>(), &mut *self.tx)
    }

    /// A registered player, if `player` is one.
    pub fn player(&mut self, player: &PlayerId) -> Result<Option<Registered>, StoreError> {
        if let Some(registered) = self.view.players.get(player) {
            return Ok(Some(*registered));
        }
        let Some(p) = crate::players::get(self.tx, player)? else { return Ok(None) };
        let registered = Registered { currency: p.currency, date_of_birth: p.date_of_birth, residence: p.country };
        self.view.players.insert(player.clone(), registered);
        Ok(Some(registered))
    }

    /// The registered player, or their refusal (`PLAYER_NOT_FOUND`).
    pub fn registered(&mut self, player: &PlayerId) -> Result<Result<Registered, LedgerRefusal>, StoreError> {
        Ok(self.player(player)?.ok_or_else(|| LedgerRefusal::PlayerNotFound(player.to_string())))
    }

    /// A player's balances in `currency`, as this batch leaves them so far.
    pub fn balances(&mut self, player: &PlayerId, currency: Currency) -> Result<PlayerBalances, StoreError> {
        let key = (player.clone(), currency);
        if let Some(b) = self.view.balances.get(&key) {
            return Ok(*b);
        }
        let b = super::reads::balance_read(self.tx, player, currency)?;
        self.view.balances.insert(key, b);
        Ok(b)
    }

    fn house(&mut self, account: HouseAccount, currency: Currency) -> Result<Decimal, StoreError> {
        if let Some(v) = self.view.house.get(&(account, currency)) {
            return Ok(*v);
        }
        let key = keys::house(account.0, currency);
        let v = match self.tx.get(&key)? {
            Some(bytes) => super::writer::decode(&key, &bytes)?,
            None => Decimal::ZERO,
        };
        self.view.house.insert((account, currency), v);
        Ok(v)
    }

    /// Posts `entries` together, or none of them. Each is checked in full first, in order (a
    /// player's later entry sees their earlier one): the sums exact, every gate passed, the
    /// player's cash covering what leaves it, their total within the currency's maximum. Then each
    /// is journaled and the balances set. Returns each entry's sequence number and balances after.
    pub fn post(&mut self, entries: Vec<Entry<'_>>) -> Result<Result<Vec<Posted>, LedgerRefusal>, StoreError> {
        let mut afters: Vec<PlayerBalances> = Vec::with_capacity(entries.len());
        let mut houses: Vec<(HouseAccount, Currency, Decimal)> = Vec::new();
        // What gates saw of each entry, to count it once all have passed.
        let mut gated: Vec<GateFacts> = Vec::with_capacity(if self.gates.is_empty() { 0 } else { entries.len() });
        for (i, e) in entries.iter().enumerate() {
            let registered = or_refuse!(self.registered(e.player)?);
            let earlier = entries[..i]
                .iter()
                .zip(&afters)
                .rev()
                .find(|(x, _)| x.player == e.player && x.currency == e.currency)
                .map(|(_, after)| *after);
            let before = match earlier {
                Some(after) => after,
                None => self.balances(e.player, e.currency)?,
            };
            let mut after = before;
            let (mut cash_out, mut cash_in) = (Decimal::ZERO, Decimal::ZERO);
            for p in &e.postings {
                assert!(
                    p.from != p.to && p.amount.is_sign_positive() && !p.amount.is_zero(),
                    "malformed posting {:?} -> {:?}: {}",
                    p.from,
                    p.to,
                    p.amount
                );
                for (account, signed) in [(p.from, -p.amount), (p.to, p.amount)] {
                    let balance = match account {
                        Account::Cash => &mut after.cash,
                        Account::Bonus => &mut after.bonus,
                        Account::Held => &mut after.held,
                        Account::Debt => &mut after.debt,
                        Account::House(house) => {
                            let at = match houses.iter().position(|(h, c, _)| *h == house && *c == e.currency) {
                                Some(at) => at,
                                None => {
                                    houses.push((house, e.currency, self.house(house, e.currency)?));
                                    houses.len().saturating_sub(1)
                                }
                            };
                            &mut houses[at].2
                        }
                    };
                    *balance = or_refuse!(ledger_add(*balance, signed));
                }
                if p.from == Account::Cash {
                    cash_out = or_refuse!(ledger_add(cash_out, p.amount));
                }
                if matches!(p.to, Account::Cash | Account::Debt) {
                    cash_in = or_refuse!(ledger_add(cash_in, p.amount));
                }
            }
            if !self.gates.is_empty() {
                let earlier = entries[..i]
                    .iter()
                    .zip(&gated)
                    .filter(|(x, _)| x.player == e.player && x.currency == e.currency && x.kind == e.kind)
                    .try_fold(Decimal::ZERO, |sum, (_, g)| ledger_add(sum, g.amount));
                let facts = GateFacts { registered, amount: cash_out.max(cash_in), earlier: or_refuse!(earlier) };
                if let Some(refusal) = self.check_gates(e, &facts)? {
                    return Ok(Err(LedgerRefusal::Gate(refusal)));
                }
                gated.push(facts);
            }
            let scale = e.currency.scale();
            if after.cash.is_sign_negative() && !after.cash.is_zero() {
                return Ok(Err(LedgerRefusal::InsufficientFunds {
                    player: e.player.to_string(),
                    currency: e.currency.code(),
                    available: Amount::at_scale(before.cash, scale).0,
                    requested: Amount::at_scale(cash_out, scale).0,
                }));
            }
            after.assert_valid(e.player);
            let total = or_refuse!(after.total());
            if total > e.currency.balance_max() && total > or_refuse!(before.total()) {
                return Ok(Err(LedgerRefusal::BalanceLimit {
                    player: e.player.to_string(),
                    currency: e.currency.code(),
                    max: e.currency.balance_max(),
                    would_be: Amount::at_scale(total, scale).0,
                }));
            }
            afters.push(after);
        }
        // Checked: the gates count, then apply.
        for (e, facts) in entries.iter().zip(&gated) {
            let (jurisdiction, at) = (self.jurisdiction, self.batch.at);
            let context = player_context(e, facts, jurisdiction, at);
            let entry = gated_entry(e, &context, facts, at);
            let mut alerts = Vec::new();
            let mut state = GateState { rooms: &mut *self.rooms, tx: &mut *self.tx, alerts: &mut alerts };
            for gate in self.gates {
                gate.record(&entry, &mut state)?;
            }
            for alert in alerts {
                self.event(alert)?;
            }
        }
        let mut posted = Vec::with_capacity(entries.len());
        for (e, after) in entries.into_iter().zip(afters) {
            let (seq, ts) = self.next_entry();
            let name = |account: Account| match account {
                Account::Cash => format!("cash:{}", e.player),
                Account::Bonus => format!("bonus:{}", e.player),
                Account::Held => format!("held:{}", e.player),
                Account::Debt => format!("debt:{}", e.player),
                Account::House(house) => format!("house:{}", house.0),
            };
            let record = JournalRecord {
                seq,
                ts,
                kind: e.label.to_owned(),
                reference: e.reference,
                currency: e.currency.code().to_owned(),
                postings: e.postings.iter().map(|p| (name(p.from), name(p.to), p.amount)).collect(),
                after,
                posting_kind: Some(e.kind),
                payment_method: e.payment_method,
            };
            self.tx.set(&keys::entry(e.player, e.currency, ts.timestamp_micros(), seq), &encode(&record))?;
            self.view.balances.insert((e.player.clone(), e.currency), after);
            self.batch.dirty_balances.insert((e.player.clone(), e.currency));
            posted.push(Posted { seq, after });
        }
        for (house, currency, balance) in houses {
            self.view.house.insert((house, currency), balance);
            self.batch.dirty_house.insert((house, currency));
        }
        Ok(Ok(posted))
    }

    /// Whether `e` would pass the gates now, without posting or counting it: a domain asks before
    /// it commits to something outside that ends in this entry (a payment at a PSP). A refusal
    /// is logged as any gate's is; the entry is checked again when it is posted.
    pub fn would_pass(&mut self, e: &Entry<'_>) -> Result<Result<(), LedgerRefusal>, StoreError> {
        let registered = or_refuse!(self.registered(e.player)?);
        let (mut cash_in, mut cash_out) = (Decimal::ZERO, Decimal::ZERO);
        for p in &e.postings {
            if matches!(p.to, Account::Cash | Account::Debt) {
                cash_in = or_refuse!(ledger_add(cash_in, p.amount));
            }
            if p.from == Account::Cash {
                cash_out = or_refuse!(ledger_add(cash_out, p.amount));
            }
        }
        let facts = GateFacts { registered, amount: cash_out.max(cash_in), earlier: Decimal::ZERO };
        Ok(self.check_gates(e, &facts)?.map_or(Ok(()), |refusal| Err(LedgerRefusal::Gate(refusal))))
    }

    /// Runs every gate on `e` (stopping at the first that refuses) and appends the alerts they
    /// raised to the command's events, refused or not.
    fn check_gates(
        &mut self,
        e: &Entry<'_>,
        facts: &GateFacts,
    ) -> Result<Option<super::gate::GateRefusal>, StoreError> {
        let (jurisdiction, at) = (self.jurisdiction, self.batch.at);
        let context = player_context(e, facts, jurisdiction, at);
        let entry = gated_entry(e, &context, facts, at);
        let mut alerts = Vec::new();
        let mut state = GateState { rooms: &mut *self.rooms, tx: &mut *self.tx, alerts: &mut alerts };
        let mut refused = None;
        for gate in self.gates {
            if let Err(refusal) = gate.check(&entry, &mut state)? {
                refused = Some(refusal);
                break;
            }
        }
        for alert in alerts {
            self.event(alert)?;
        }
        Ok(refused)
    }

    /// Posts one entry (see [`KernelTx::post`]).
    pub fn post_one(&mut self, entry: Entry<'_>) -> Result<Result<Posted, LedgerRefusal>, StoreError> {
        Ok(self.post(vec![entry])?.map(|mut posted| posted.swap_remove(0)))
    }

    fn next_entry(&mut self) -> (u64, DateTime<Utc>) {
        // At a million entries a second, u64 lasts 584,000 years.
        self.view.seq = self.view.seq.checked_add(1).expect("the journal sequence never wraps");
        self.view.last_ts = self.clock.now().max(self.view.last_ts);
        (self.view.seq, self.view.last_ts)
    }

    /// The operator whose token asked for this command, when the back office did: a back-office
    /// write records it in its event.
    pub fn operator(&self) -> Option<contracts::operators::OperatorRef> {
        self.ctx.operator.clone()
    }

    /// Appends an event to the audit chain and to the outbox, in the batch's transaction. The
    /// chain keeps the event's JSON; the outbox entry points at that record.
    pub fn event<P: contracts::events::EventPayload>(&mut self, payload: P) -> Result<(), StoreError> {
        let order = self.batch.events;
        self.batch.events = self.batch.events.checked_add(1).expect("a batch orders at most 65,536 events");
        let json = events::encode(&events::envelope(self.ctx, payload, self.batch.at));
        let record = self.batch.chain.append(self.tx, json)?;
        events::append_chained(self.tx, order, record)
    }
}
