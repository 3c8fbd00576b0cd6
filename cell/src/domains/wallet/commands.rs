//! The wallet API's commands as the ledger's writer applies them: credit and debit against PSP
//! clearing, holds, and a round's settle; and their room, the rounds' holds. Each checks
//! everything before it changes anything.

use super::{keys, WalletError};
use crate::ledger::{
    decode, encode, ledger_add, or_refuse, Account, Entry, HouseAccount, KernelTx, LedgerCommand, PlayerBalances,
    Posting, PostingKind, Room,
};
use crate::store::{StoreError, Transaction};
use contracts::events::{SettledPart, WalletCredited, WalletDebited, WalletHold, WalletSettled};
use contracts::wallet::{Balance, HoldResponse, MovementReason, MovementResponse, SettleResponse};
use contracts::{Amount, BetId, CountryCode, Currency, Money, PlayerId, RoundId};
use rust_decimal::Decimal;
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use serde::{Deserialize, Serialize};

/// Money in transit with payment providers: the other side of credits and debits.
const PSP_CLEARING: HouseAccount = HouseAccount("psp_clearing");
/// Stakes lost and payouts won: game revenue.
const GAME_REVENUE: HouseAccount = HouseAccount("game_revenue");

/// Most bets one round may hold open: a busy live table, and a round record well under the
/// store's 100 kB value limit (a hold encodes to about 100 bytes).
pub const ROUND_HOLDS_MAX: usize = 500;

/// An open hold, as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct HoldRecord {
    hold_id: String,
    player: PlayerId,
    bet: BetId,
    currency: String,
    amount: Decimal,
}

/// A round as stored: one record, so loading a round is one point read and a batch writes each
/// round it touched once.
#[derive(Debug, Default, Serialize, Deserialize)]
struct RoundState {
    settled: bool,
    holds: Vec<HoldRecord>,
    /// The last batch that wrote this round; a settled round leaves the cache once that batch is
    /// in the store.
    #[serde(skip)]
    written_in: u64,
}

/// The wallet's room on the writer: the rounds it has touched, cached until settled and stored.
#[derive(Default)]
pub struct Rounds {
    rounds: HashMap<RoundId, RoundState>,
    dirty: HashSet<RoundId>,
}

impl Rounds {
    fn get(&mut self, tx: &mut dyn Transaction, round: &RoundId) -> Result<&mut RoundState, StoreError> {
        if !self.rounds.contains_key(round) {
            let key = keys::round(round);
            let state = match tx.get(&key)? {
                Some(bytes) => decode(&key, &bytes)?,
                None => RoundState::default(),
            };
            self.rounds.insert(round.clone(), state);
        }
        Ok(self.rounds.get_mut(round).expect("inserted above"))
    }
}

impl Room for Rounds {
    fn write(&mut self, tx: &mut dyn Transaction, batch: u64) -> Result<(), StoreError> {
        for round in self.dirty.drain() {
            let state = self.rounds.get_mut(&round).expect("a dirty round is cached");
            state.written_in = batch;
            tx.set(&keys::round(&round), &encode(&*state))?;
        }
        Ok(())
    }

    fn committed(&mut self, batch: u64) {
        self.rounds.retain(|_, r| !(r.settled && r.written_in <= batch));
    }

    fn forget(&mut self) {
        self.rounds.clear();
        self.dirty.clear();
    }

    fn cached(&self) -> usize {
        self.rounds.len()
    }
}

fn wire_balance(player: &PlayerId, currency: Currency, b: &PlayerBalances) -> Balance {
    let s = currency.scale();
    Balance {
        player_id: player.clone(),
        currency,
        cash: Amount::at_scale(b.cash, s),
        bonus: Amount::at_scale(b.bonus, s),
        held: Amount::at_scale(b.held, s),
    }
}

type Applied<A> = Result<Result<A, WalletError>, StoreError>;

/// A credit (`inward`) or a debit of a player's cash against PSP clearing.
#[derive(Debug, Clone)]
pub struct Movement {
    pub player: PlayerId,
    pub money: Money,
    pub reason: MovementReason,
    pub inward: bool,
    pub location: Option<CountryCode>,
    /// The deposit's or withdrawal's payment method, as the PSP names it.
    pub payment_method: Option<String>,
}

impl LedgerCommand for Movement {
    type Room = ();
    type Answer = MovementResponse;
    type Refusal = WalletError;

    fn kind(&self) -> &'static str {
        if self.inward {
            "credit"
        } else {
            "debit"
        }
    }

    fn apply(&self, _: &mut (), tx: &mut KernelTx<'_>) -> Applied<MovementResponse> {
        let (player, currency, amount) = (&self.player, self.money.currency(), self.money.amount());
        let (posting, kind) = if self.inward {
            (Posting { from: Account::House(PSP_CLEARING), to: Account::Cash, amount }, PostingKind::Deposit)
        } else {
            (Posting { from: Account::Cash, to: Account::House(PSP_CLEARING), amount }, PostingKind::Withdrawal)
        };
        let kind = match self.reason {
            MovementReason::Adjustment | MovementReason::Correction => PostingKind::Adjustment,
            MovementReason::Deposit | MovementReason::Withdrawal => kind,
        };
        let entry = Entry {
            player,
            currency,
            kind,
            label: self.kind(),
            reference: format!("{:?}", self.reason),
            postings: vec![posting],
            stake: None,
            location: self.location,
            payment_method: self.payment_method.clone(),
        };
        let posted = or_refuse!(tx.post_one(entry)?);
        let (player_id, amount, entry_id, reason) =
            (player.clone(), self.money.wire(), posted.seq.to_string(), self.reason);
        if self.inward {
            let operator = tx.operator();
            tx.event(WalletCredited { player_id, currency, amount, reason, entry_id, operator })?;
        } else {
            let operator = tx.operator();
            tx.event(WalletDebited { player_id, currency, amount, reason, entry_id, operator })?;
        }
        Ok(Ok(MovementResponse { balance: wire_balance(player, currency, &posted.after) }))
    }
}

/// A stake moved from cash to held for bet `bet` of round `round`, until the round settles.
#[derive(Debug, Clone)]
pub struct Hold {
    pub player: PlayerId,
    pub round: RoundId,
    pub bet: BetId,
    pub money: Money,
    pub location: Option<CountryCode>,
}

impl LedgerCommand for Hold {
    type Room = Rounds;
    type Answer = HoldResponse;
    type Refusal = WalletError;

    fn kind(&self) -> &'static str {
        "hold"
    }

    fn apply(&self, rounds: &mut Rounds, tx: &mut KernelTx<'_>) -> Applied<HoldResponse> {
        let (player, round, bet, money) = (&self.player, &self.round, &self.bet, self.money);
        or_refuse!(tx.registered(player)?);
        let state = rounds.get(tx.store(), round)?;
        if state.settled {
            return Ok(Err(WalletError::RoundAlreadySettled(round.to_string())));
        }
        if state.holds.iter().any(|h| &h.bet == bet) {
            return Ok(Err(WalletError::BetAlreadyHeld { round: round.to_string(), bet: bet.to_string() }));
        }
        if state.holds.len() >= ROUND_HOLDS_MAX {
            return Ok(Err(WalletError::RoundFull { round: round.to_string(), holds_max: ROUND_HOLDS_MAX }));
        }
        let currency = money.currency();
        // The wallet API's rounds name no game, so no per-product rule applies to them.
        let entry = Entry {
            player,
            currency,
            kind: PostingKind::Stake,
            label: "hold",
            reference: format!("{round}/{bet}"),
            postings: vec![Posting { from: Account::Cash, to: Account::Held, amount: money.amount() }],
            stake: None,
            location: self.location,
            payment_method: None,
        };
        let posted = or_refuse!(tx.post_one(entry)?);
        let hold = HoldRecord {
            hold_id: format!("h{}", posted.seq),
            player: player.clone(),
            bet: bet.clone(),
            currency: currency.code().to_owned(),
            amount: money.amount(),
        };
        rounds.get(tx.store(), round)?.holds.push(hold.clone());
        rounds.dirty.insert(round.clone());
        tx.event(WalletHold {
            hold_id: hold.hold_id.clone(),
            player_id: player.clone(),
            round_id: round.clone(),
            bet_id: bet.clone(),
            currency,
            amount: money.wire(),
            operator: tx.operator(),
        })?;
        Ok(Ok(HoldResponse { hold_id: hold.hold_id, balance: wire_balance(player, currency, &posted.after) }))
    }
}

/// One player's part of a settle, checked.
#[derive(Debug, Clone)]
pub struct SettlePart {
    pub player: PlayerId,
    pub bet: Option<BetId>,
    pub delta: Money,
}

/// Settles round `round`: every hold released, each part's stake to game revenue and its payout
/// (stake + delta) to the player's cash. Once.
#[derive(Debug, Clone)]
pub struct Settle {
    pub round: RoundId,
    pub parts: Vec<SettlePart>,
}

impl LedgerCommand for Settle {
    type Room = Rounds;
    type Answer = SettleResponse;
    type Refusal = WalletError;

    fn kind(&self) -> &'static str {
        "settle"
    }

    fn apply(&self, rounds: &mut Rounds, tx: &mut KernelTx<'_>) -> Applied<SettleResponse> {
        let round = &self.round;
        // Check everything before changing anything: first which holds each part settles.
        let state = rounds.get(tx.store(), round)?;
        if state.settled {
            return Ok(Err(WalletError::RoundAlreadySettled(round.to_string())));
        }
        let mut taken = vec![false; state.holds.len()];
        let mut plan: Vec<(&SettlePart, Vec<usize>, Decimal)> = Vec::with_capacity(self.parts.len());
        for part in &self.parts {
            let chosen: Vec<usize> = state
                .holds
                .iter()
                .enumerate()
                .filter(|(i, h)| {
                    !taken[*i] && h.player == part.player && part.bet.as_ref().is_none_or(|bet| &h.bet == bet)
                })
                .map(|(i, _)| i)
                .collect();
            if chosen.is_empty() {
                let already = state.holds.iter().enumerate().any(|(i, h)| taken[i] && h.player == part.player);
                if already {
                    return Ok(Err(WalletError::SettleOperationsInvalid));
                }
                return Ok(Err(WalletError::HoldNotFound {
                    player: part.player.to_string(),
                    round: round.to_string(),
                    bet: part.bet.as_ref().map(|b| b.to_string()),
                }));
            }
            let mut stake = Decimal::ZERO;
            for &i in &chosen {
                let h = &state.holds[i];
                if h.currency != part.delta.currency().code() {
                    let held = Currency::from_code(&h.currency).map(|c| c.code()).unwrap_or("???");
                    return Ok(Err(WalletError::SettleCurrencyMismatch {
                        player: part.player.to_string(),
                        held,
                        given: part.delta.currency().code(),
                    }));
                }
                taken[i] = true;
                stake = or_refuse!(ledger_add(stake, h.amount));
            }
            if part.delta.amount() < -stake {
                return Ok(Err(WalletError::DeltaBelowStake {
                    player: part.player.to_string(),
                    stake,
                    delta: part.delta.amount(),
                }));
            }
            plan.push((part, chosen, stake));
        }
        let unsettled: Vec<String> = state
            .holds
            .iter()
            .enumerate()
            .filter(|(i, _)| !taken[*i])
            .map(|(_, h)| format!("{}/{}", h.player, h.bet))
            .collect();
        if !unsettled.is_empty() {
            return Ok(Err(WalletError::RoundHoldsUnsettled {
                round: round.to_string(),
                players: unsettled.join(", "),
            }));
        }

        // Per part: held -> game revenue (the stake), game revenue -> cash (the payout), posted
        // together: the kernel checks them all before it applies any.
        let mut entries = Vec::with_capacity(plan.len());
        let mut payouts = Vec::with_capacity(plan.len());
        for (part, _, stake) in &plan {
            let payout = or_refuse!(ledger_add(*stake, part.delta.amount()));
            let mut postings = vec![Posting { from: Account::Held, to: Account::House(GAME_REVENUE), amount: *stake }];
            if !payout.is_zero() {
                postings.push(Posting { from: Account::House(GAME_REVENUE), to: Account::Cash, amount: payout });
            }
            entries.push(Entry {
                player: &part.player,
                currency: part.delta.currency(),
                kind: PostingKind::Win,
                label: "settle",
                reference: round.to_string(),
                postings,
                stake: None,
                location: None,
                payment_method: None,
            });
            payouts.push(payout);
        }
        let posted = or_refuse!(tx.post(entries)?);

        let state = rounds.get(tx.store(), round)?;
        let holds = std::mem::take(&mut state.holds);
        state.settled = true;
        rounds.dirty.insert(round.clone());
        let mut settled_parts = Vec::with_capacity(plan.len());
        let mut balances = Vec::with_capacity(plan.len());
        for (((part, chosen, stake), payout), posted) in plan.into_iter().zip(payouts).zip(posted) {
            let currency = part.delta.currency();
            let s = currency.scale();
            settled_parts.push(SettledPart {
                player_id: part.player.clone(),
                currency,
                stake: Amount::at_scale(stake, s),
                payout: Amount::at_scale(payout, s),
                bet_ids: chosen.iter().map(|&i| holds[i].bet.clone()).collect(),
            });
            balances.push(wire_balance(&part.player, currency, &posted.after));
        }
        let operator = tx.operator();
        tx.event(WalletSettled { round_id: round.clone(), parts: settled_parts, operator })?;
        Ok(Ok(SettleResponse { balances }))
    }
}
