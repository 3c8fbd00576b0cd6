//! Providers' rounds, as commands on the ledger's writer, because every step moves money: a bet
//! holds its stake (cash -> held), a win pays from game revenue to cash, closing a player's part
//! moves their stakes from held to game revenue, and a rollback or a void gives stakes back (held
//! -> cash). Each is checked in full before it changes anything, and is atomic with its journal
//! entries, its idempotency record, its events and the audit chain.
//!
//! A round may carry bets of several players (live tables); each player's part ends on its own
//! (a closing win or `endRound`), or all open parts end together when the sweeper voids the round.
//! A rollback that arrives before its bet leaves a tombstone, so the late bet is refused and moves
//! no money.

use super::keys;
use crate::ledger::{
    decode, encode, ledger_add, ledger_mul, ledger_sum, or_refuse, Account, Entry, HouseAccount, KernelTx,
    LedgerCommand, LedgerRefusal, Posting, PostingKind, Refusal, Room, StakeContext,
};
use crate::store::{StoreError, Transaction};
use contracts::catalog::GameType;
use contracts::gaming::SeamlessResponse;
use contracts::gaming::{BetPlaced, BetRolledBack, BetStatus, BetWon, RoundPart, RoundSettled, RoundStatus};
use contracts::CellCode;
use contracts::{Amount, BetId, Currency, Money, PlayerId, RoundId, TransactionId};
use rust_decimal::Decimal;
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use serde::{Deserialize, Serialize};

/// Stakes lost and payouts won.
const GAME_REVENUE: HouseAccount = HouseAccount("game_revenue");

/// Most bets (and tombstones) one round may hold: a busy live table, and a round record well
/// under the store's 100 kB value limit.
pub const ROUND_BETS_MAX: usize = 500;

/// Why a round operation was refused. Each variant has a stable code and HTTP status.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RoundRefusal {
    #[error("{0}")]
    Ledger(#[from] LedgerRefusal),
    #[error("bet {bet} of round {round} already has a hold")]
    BetAlreadyHeld { round: String, bet: String },
    #[error("round {round} already holds {bets_max} bets, the most one round may")]
    RoundFull { round: String, bets_max: usize },
    #[error("round {0} is already settled")]
    RoundAlreadySettled(String),
    #[error("player {player}'s bets are in {held}, the call says {given}")]
    CurrencyMismatch { player: String, held: &'static str, given: &'static str },
    #[error("bet {bet} of round {round} was rolled back: it cannot be placed or paid")]
    BetRolledBack { round: String, bet: String },
    #[error("player {player} has no bet in round {round}")]
    BetNotFound { player: String, round: String },
    #[error("bet {bet} of round {round} is already settled")]
    BetAlreadySettled { round: String, bet: String },
    #[error("round {0} was voided after its timeout: its stakes were refunded")]
    RoundVoided(String),
    #[error("bet {bet} belongs to player {owner}, not {player}")]
    PlayerMismatch { bet: String, owner: String, player: String },
    #[error("bet {bet} of round {round} already had a payout credited: it can no longer be rolled back")]
    BetAlreadyPaid { round: String, bet: String },
    #[error("provider {provider} is in maintenance ({reason}): new bets are refused, wins and rollbacks still settle")]
    ProviderMaintenance { provider: String, reason: String },
    #[error("payouts of {won} {currency} on stakes of {stake} {currency} in round {round} are over the game's {max} {currency} (its maximum multiplier)")]
    WinLimitExceeded { round: String, currency: &'static str, stake: Decimal, won: Decimal, max: Decimal },
}

impl Refusal for RoundRefusal {
    fn code(&self) -> CellCode {
        match self {
            RoundRefusal::Ledger(e) => e.code(),
            RoundRefusal::BetAlreadyHeld { .. } => CellCode::BetAlreadyHeld,
            RoundRefusal::RoundFull { .. } => CellCode::RoundFull,
            RoundRefusal::RoundAlreadySettled(_) => CellCode::RoundAlreadySettled,
            RoundRefusal::CurrencyMismatch { .. } => CellCode::CurrencyMismatch,
            RoundRefusal::BetRolledBack { .. } => CellCode::BetRolledBack,
            RoundRefusal::BetNotFound { .. } => CellCode::BetNotFound,
            RoundRefusal::BetAlreadySettled { .. } => CellCode::BetAlreadySettled,
            RoundRefusal::RoundVoided(_) => CellCode::RoundVoided,
            RoundRefusal::PlayerMismatch { .. } => CellCode::PlayerMismatch,
            RoundRefusal::BetAlreadyPaid { .. } => CellCode::BetAlreadyPaid,
            RoundRefusal::ProviderMaintenance { .. } => CellCode::ProviderMaintenance,
            RoundRefusal::WinLimitExceeded { .. } => CellCode::WinLimitExceeded,
        }
    }

    fn status(&self) -> u16 {
        match self {
            RoundRefusal::Ledger(e) => e.status(),
            RoundRefusal::BetNotFound { .. } => 404,
            RoundRefusal::RoundFull { .. }
            | RoundRefusal::CurrencyMismatch { .. }
            | RoundRefusal::PlayerMismatch { .. }
            | RoundRefusal::WinLimitExceeded { .. } => 422,
            RoundRefusal::BetAlreadyHeld { .. }
            | RoundRefusal::RoundAlreadySettled(_)
            | RoundRefusal::BetRolledBack { .. }
            | RoundRefusal::BetAlreadySettled { .. }
            | RoundRefusal::RoundVoided(_)
            | RoundRefusal::BetAlreadyPaid { .. } => 409,
            RoundRefusal::ProviderMaintenance { .. } => 503,
        }
    }

    fn is_transient(&self) -> bool {
        matches!(self, RoundRefusal::ProviderMaintenance { .. })
    }
}

/// One bet of a provider's round.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct GameBet {
    bet: BetId,
    player: PlayerId,
    currency: String,
    amount: Decimal,
    status: BetStatus,
    /// The most this bet may win: its stake times its game's maximum multiplier, when the game
    /// has one (rounds stored before it was kept have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    payout_max: Option<Decimal>,
}

/// A provider's round as stored: one record, so loading it is one point read.
#[derive(Debug, Default, Serialize, Deserialize)]
struct GameRound {
    bets: Vec<GameBet>,
    /// Bets rolled back before they arrived: refused when they do.
    tombstones: Vec<BetId>,
    /// Players whose part has ended, and how.
    closed: Vec<(PlayerId, RoundStatus)>,
    /// Payouts credited to each player's still-open part, reported when the part ends.
    won: Vec<(PlayerId, Decimal)>,
    /// Players whose open part has a reported result (a win call, of zero included): at timeout
    /// it settles as reported rather than being refunded.
    #[serde(default)]
    resulted: Vec<PlayerId>,
    /// Since when the round has had an open bet (microseconds): its key in the sweeper's index.
    open_since: Option<i64>,
    /// The last batch that wrote this round.
    #[serde(skip)]
    written_in: u64,
}

impl GameRound {
    fn closed_as(&self, player: &PlayerId) -> Option<RoundStatus> {
        self.closed.iter().find(|(p, _)| p == player).map(|(_, s)| *s)
    }

    fn open_of(&self, player: &PlayerId) -> Vec<usize> {
        (0..self.bets.len())
            .filter(|&i| &self.bets[i].player == player && self.bets[i].status == BetStatus::Open)
            .collect()
    }

    fn won_take(&mut self, player: &PlayerId) -> Decimal {
        match self.won.iter().position(|(p, _)| p == player) {
            Some(i) => self.won.swap_remove(i).1,
            None => Decimal::ZERO,
        }
    }

    fn won_of(&self, player: &PlayerId) -> Decimal {
        self.won.iter().find(|(p, _)| p == player).map_or(Decimal::ZERO, |(_, w)| *w)
    }

    /// The sum of the stakes at `indices`, exactly.
    fn stakes(&self, indices: &[usize]) -> Result<Decimal, LedgerRefusal> {
        ledger_sum(indices.iter().map(|&i| self.bets[i].amount))
    }

    /// Why a player with no open bet in the round cannot be paid or closed: their bets ended.
    fn nothing_open(&self, player: &PlayerId, round: &RoundId) -> RoundRefusal {
        let mine: Vec<&GameBet> = self.bets.iter().filter(|x| &x.player == player).collect();
        if self.closed_as(player) == Some(RoundStatus::Voided) || mine.iter().any(|x| x.status == BetStatus::Voided) {
            RoundRefusal::RoundVoided(round.to_string())
        } else if let Some(settled) = mine.iter().find(|x| x.status == BetStatus::Settled) {
            RoundRefusal::BetAlreadySettled { round: round.to_string(), bet: settled.bet.to_string() }
        } else if let Some(rolled) = mine.first() {
            RoundRefusal::BetRolledBack { round: round.to_string(), bet: rolled.bet.to_string() }
        } else {
            RoundRefusal::BetNotFound { player: player.to_string(), round: round.to_string() }
        }
    }
}

/// A stored currency code, which only a damaged record could get wrong.
fn stored_currency(provider: &str, round: &RoundId, code: &str) -> Result<Currency, StoreError> {
    Currency::from_code(code).map_err(|e| StoreError::corrupt(&keys::game_round(provider, round), e))
}

/// Gaming's room on the writer: the providers' rounds it has touched, by (provider, round).
#[derive(Default)]
pub struct GameRounds {
    rounds: HashMap<(String, RoundId), GameRound>,
    dirty: HashSet<(String, RoundId)>,
}

impl Room for GameRounds {
    fn write(&mut self, tx: &mut dyn Transaction, batch: u64) -> Result<(), StoreError> {
        for key in self.dirty.drain() {
            let state = self.rounds.get_mut(&key).expect("a dirty round is cached");
            state.written_in = batch;
            tx.set(&keys::game_round(&key.0, &key.1), &encode(&*state))?;
        }
        Ok(())
    }

    fn committed(&mut self, batch: u64) {
        // A round with nothing open leaves the cache once its last write is in the store.
        self.rounds.retain(|_, r| !(r.open_since.is_none() && r.written_in <= batch));
    }

    fn forget(&mut self) {
        self.rounds.clear();
        self.dirty.clear();
    }

    fn cached(&self) -> usize {
        self.rounds.len()
    }
}

type Applied<A> = Result<Result<A, RoundRefusal>, StoreError>;

fn answer(transaction: Option<&TransactionId>, currency: Currency, cash: Decimal) -> SeamlessResponse {
    SeamlessResponse {
        transaction_id: transaction.cloned(),
        balance: Amount::at_scale(cash, currency.scale()),
        currency,
    }
}

/// A provider's round operation, normalised from any dialect. Rounds are per provider.
#[derive(Debug, Clone)]
pub enum RoundCommand {
    /// Hold a stake for a new bet (named by its call's transaction id). The gaming front
    /// decides what does not depend on the round (the provider's state, the game's product and
    /// maximum multiplier); the writer applies it after looking for a stored answer, so a retry of
    /// an accepted bet is answered as before whatever has changed since.
    Bet {
        provider: String,
        player: PlayerId,
        round: RoundId,
        transaction: TransactionId,
        game: String,
        money: Money,
        /// `Some(reason)` when the provider is in maintenance: a new bet is refused (not stored).
        maintenance: Option<String>,
        /// The game's product: per-product rules (stake caps) are gates on the stake.
        product: GameType,
        /// The game's maximum multiplier, if known: the bet may win at most its stake times this
        /// (`WIN_LIMIT_EXCEEDED` past it).
        max_multiplier: Option<Decimal>,
    },
    /// Credit a payout (zero allowed) to the player's open bets; `close` ends the player's part.
    Win { provider: String, player: PlayerId, round: RoundId, transaction: TransactionId, money: Money, close: bool },
    /// Refund bet `bet` once; before the bet arrives, leave a tombstone that refuses it.
    Rollback { provider: String, player: PlayerId, round: RoundId, transaction: TransactionId, bet: BetId },
    /// End the player's part of the round with no further payout.
    EndRound { provider: String, player: PlayerId, round: RoundId },
}

impl LedgerCommand for RoundCommand {
    type Room = GameRounds;
    type Answer = SeamlessResponse;
    type Refusal = RoundRefusal;

    fn kind(&self) -> &'static str {
        match self {
            RoundCommand::Bet { .. } => "game_bet",
            RoundCommand::Win { .. } => "game_win",
            RoundCommand::Rollback { .. } => "game_rollback",
            RoundCommand::EndRound { .. } => "game_end_round",
        }
    }

    fn apply(&self, rounds: &mut GameRounds, tx: &mut KernelTx<'_>) -> Applied<SeamlessResponse> {
        match self {
            RoundCommand::Bet {
                provider,
                player,
                round,
                transaction,
                game,
                money,
                maintenance,
                product,
                max_multiplier,
            } => {
                let bet =
                    NewBet { transaction, game, money: *money, maintenance: maintenance.as_deref(), product: *product };
                rounds.bet(tx, provider, player, round, bet, *max_multiplier)
            }
            RoundCommand::Win { provider, player, round, transaction, money, close } => {
                rounds.win(tx, provider, player, round, Some(transaction), *money, *close)
            }
            RoundCommand::Rollback { provider, player, round, transaction, bet } => {
                rounds.rollback(tx, provider, player, round, transaction, bet)
            }
            RoundCommand::EndRound { provider, player, round } => rounds.end(tx, provider, player, round),
        }
    }
}

/// What a timed-out round's ending ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ended {
    pub bets: usize,
}

/// End a round open since `open_since_us` past its timeout (the sweeper): a part whose result was
/// reported settles, a part with none is refunded (voided).
#[derive(Debug, Clone)]
pub struct TimeOut {
    pub provider: String,
    pub round: RoundId,
    pub open_since_us: i64,
}

impl LedgerCommand for TimeOut {
    type Room = GameRounds;
    type Answer = Ended;
    type Refusal = RoundRefusal;

    fn kind(&self) -> &'static str {
        "game_time_out"
    }

    fn apply(&self, rounds: &mut GameRounds, tx: &mut KernelTx<'_>) -> Applied<Ended> {
        rounds.time_out(tx, &self.provider, &self.round, self.open_since_us)
    }
}

/// A new bet, as the gaming front decided it.
struct NewBet<'a> {
    transaction: &'a TransactionId,
    game: &'a str,
    money: Money,
    maintenance: Option<&'a str>,
    product: GameType,
}

impl GameRounds {
    fn round(&mut self, tx: &mut KernelTx<'_>, provider: &str, round: &RoundId) -> Result<&mut GameRound, StoreError> {
        let key = (provider.to_owned(), round.clone());
        if !self.rounds.contains_key(&key) {
            let at = keys::game_round(provider, round);
            let state = match tx.store().get(&at)? {
                Some(bytes) => decode(&at, &bytes)?,
                None => GameRound::default(),
            };
            self.rounds.insert(key.clone(), state);
        }
        Ok(self.rounds.get_mut(&key).expect("inserted above"))
    }

    /// Marks the round written by this batch and keeps the sweeper's index true to it.
    fn touched(&mut self, tx: &mut KernelTx<'_>, provider: &str, round: &RoundId) -> Result<(), StoreError> {
        let key = (provider.to_owned(), round.clone());
        let state = self.rounds.get_mut(&key).expect("a touched round is cached");
        let open = state.bets.iter().any(|bet| bet.status == BetStatus::Open);
        match (open, state.open_since) {
            (true, None) => {
                let since = tx.now().timestamp_micros();
                tx.store().set(&keys::game_open(provider, since, round), &[])?;
                state.open_since = Some(since);
            }
            (false, Some(since)) => {
                tx.store().clear(&keys::game_open(provider, since, round))?;
                state.open_since = None;
            }
            _ => {}
        }
        self.dirty.insert(key);
        Ok(())
    }

    fn bet(
        &mut self,
        tx: &mut KernelTx<'_>,
        provider: &str,
        player: &PlayerId,
        round: &RoundId,
        new: NewBet<'_>,
        max_multiplier: Option<Decimal>,
    ) -> Applied<SeamlessResponse> {
        let (bet, money) = (new.transaction.bet(), new.money);
        let bet = &bet;
        or_refuse!(tx.registered(player)?);
        if let Some(reason) = new.maintenance {
            let (provider, reason) = (provider.to_owned(), reason.to_owned());
            return Ok(Err(RoundRefusal::ProviderMaintenance { provider, reason }));
        }
        let state = self.round(tx, provider, round)?;
        // A voided round is over for everyone: its stakes went back.
        let voided = state.bets.iter().any(|x| x.status == BetStatus::Voided)
            || state.closed.iter().any(|(_, how)| *how == RoundStatus::Voided);
        if voided {
            return Ok(Err(RoundRefusal::RoundVoided(round.to_string())));
        }
        if state.tombstones.contains(bet) {
            return Ok(Err(RoundRefusal::BetRolledBack { round: round.to_string(), bet: bet.to_string() }));
        }
        if state.bets.iter().any(|x| &x.bet == bet) {
            return Ok(Err(RoundRefusal::BetAlreadyHeld { round: round.to_string(), bet: bet.to_string() }));
        }
        match state.closed_as(player) {
            Some(RoundStatus::Settled) => return Ok(Err(RoundRefusal::RoundAlreadySettled(round.to_string()))),
            Some(RoundStatus::Voided) => return Ok(Err(RoundRefusal::RoundVoided(round.to_string()))),
            None => {}
        }
        if state.bets.len() >= ROUND_BETS_MAX {
            return Ok(Err(RoundRefusal::RoundFull { round: round.to_string(), bets_max: ROUND_BETS_MAX }));
        }
        let currency = money.currency();
        // A stake cap is per spin: the player's open stakes in this round count with the new one.
        let open = or_refuse!(ledger_sum(
            state
                .bets
                .iter()
                .filter(|x| &x.player == player && x.status == BetStatus::Open && x.currency == currency.code())
                .map(|x| x.amount)
        ));
        let round_stake = or_refuse!(ledger_add(open, money.amount()));
        // Exact at any multiplier a file may give: a stake is at most `amount_max`, and a payout
        // bound past the ledger's is refused, not rounded.
        let payout_max = match max_multiplier {
            Some(m) => Some(or_refuse!(ledger_mul(money.amount(), m))),
            None => None,
        };
        let entry = Entry {
            player,
            currency,
            kind: PostingKind::Stake,
            label: "bet",
            reference: format!("{provider}/{round}/{bet}"),
            postings: vec![Posting { from: Account::Cash, to: Account::Held, amount: money.amount() }],
            stake: Some(StakeContext { product: new.product, round_stake }),
            location: None,
            payment_method: None,
        };
        let posted = or_refuse!(tx.post_one(entry)?);
        self.round(tx, provider, round)?.bets.push(GameBet {
            bet: bet.clone(),
            player: player.clone(),
            currency: currency.code().to_owned(),
            amount: money.amount(),
            status: BetStatus::Open,
            payout_max,
        });
        self.touched(tx, provider, round)?;
        tx.event(BetPlaced {
            provider: provider.to_owned(),
            round_id: round.clone(),
            bet_id: bet.clone(),
            player_id: player.clone(),
            game_id: new.game.to_owned(),
            currency,
            amount: money.wire(),
            status: BetStatus::Open,
        })?;
        Ok(Ok(answer(Some(new.transaction), currency, posted.after.cash)))
    }

    /// A payout; `transaction` is `None` when the player's part ends by `endRound`.
    #[allow(clippy::too_many_arguments)]
    fn win(
        &mut self,
        tx: &mut KernelTx<'_>,
        provider: &str,
        player: &PlayerId,
        round: &RoundId,
        transaction: Option<&TransactionId>,
        money: Money,
        close: bool,
    ) -> Applied<SeamlessResponse> {
        or_refuse!(tx.registered(player)?);
        let state = self.round(tx, provider, round)?;
        let open = state.open_of(player);
        if open.is_empty() {
            return Ok(Err(state.nothing_open(player, round)));
        }
        let currency = money.currency();
        if let Some(other) = open.iter().map(|&i| &state.bets[i]).find(|x| x.currency != currency.code()) {
            let held = Currency::from_code(&other.currency).map(|c| c.code()).unwrap_or("???");
            return Ok(Err(RoundRefusal::CurrencyMismatch {
                player: player.to_string(),
                held,
                given: currency.code(),
            }));
        }
        let payout = money.amount();
        // Check everything before changing anything: the payouts against the game's maximum here,
        // the balances against the currency's in the kernel.
        let won = or_refuse!(ledger_add(state.won_of(player), payout));
        let open_stake = or_refuse!(state.stakes(&open));
        let payout_max: Option<Vec<Decimal>> = open.iter().map(|&i| state.bets[i].payout_max).collect();
        if let Some(max) = payout_max {
            let max = or_refuse!(ledger_sum(max));
            if won > max {
                let s = currency.scale();
                return Ok(Err(RoundRefusal::WinLimitExceeded {
                    round: round.to_string(),
                    currency: currency.code(),
                    stake: Amount::at_scale(open_stake, s).0,
                    won: Amount::at_scale(won, s).0,
                    max: Amount::at_scale(max, s).0,
                }));
            }
        }
        let stake = if close { open_stake } else { Decimal::ZERO };
        let mut postings = Vec::new();
        if !stake.is_zero() {
            postings.push(Posting { from: Account::Held, to: Account::House(GAME_REVENUE), amount: stake });
        }
        if !payout.is_zero() {
            postings.push(Posting { from: Account::House(GAME_REVENUE), to: Account::Cash, amount: payout });
        }
        let cash = if postings.is_empty() {
            tx.balances(player, currency)?.cash
        } else {
            let reference = match transaction {
                Some(transaction) => format!("{provider}/{round}/{transaction}"),
                None => format!("{provider}/{round}/end"),
            };
            let entry = Entry {
                player,
                currency,
                kind: PostingKind::Win,
                label: "win",
                reference,
                postings,
                stake: None,
                location: None,
                payment_method: None,
            };
            or_refuse!(tx.post_one(entry)?).after.cash
        };

        let state = self.round(tx, provider, round)?;
        if !state.resulted.contains(player) {
            state.resulted.push(player.clone());
        }
        if !payout.is_zero() {
            match state.won.iter_mut().find(|(p, _)| p == player) {
                Some((_, w)) => *w = won,
                None => state.won.push((player.clone(), won)),
            }
        }
        let bet_ids: Vec<BetId> = open.iter().map(|&i| state.bets[i].bet.clone()).collect();
        let won = if close {
            for &i in &open {
                state.bets[i].status = BetStatus::Settled;
            }
            state.closed.push((player.clone(), RoundStatus::Settled));
            state.resulted.retain(|p| p != player);
            state.won_take(player)
        } else {
            Decimal::ZERO
        };
        self.touched(tx, provider, round)?;
        let s = currency.scale();
        // A closing win's payout is reported by `round.settled` (its part's `won`), so one event
        // says it; a win that leaves the round open has its own.
        if let (false, false, Some(transaction)) = (payout.is_zero(), close, transaction) {
            tx.event(BetWon {
                provider: provider.to_owned(),
                round_id: round.clone(),
                transaction_id: transaction.clone(),
                player_id: player.clone(),
                bet_ids: bet_ids.clone(),
                currency,
                amount: money.wire(),
                status: BetStatus::Open,
            })?;
        }
        if close {
            let part = RoundPart {
                player_id: player.clone(),
                bet_ids,
                currency,
                stake: Amount::at_scale(stake, s),
                won: Amount::at_scale(won, s),
                refunded: Amount::at_scale(Decimal::ZERO, s),
            };
            tx.event(RoundSettled {
                provider: provider.to_owned(),
                round_id: round.clone(),
                status: RoundStatus::Settled,
                parts: vec![part],
            })?;
        }
        Ok(Ok(answer(transaction, currency, cash)))
    }

    fn end(
        &mut self,
        tx: &mut KernelTx<'_>,
        provider: &str,
        player: &PlayerId,
        round: &RoundId,
    ) -> Applied<SeamlessResponse> {
        or_refuse!(tx.registered(player)?);
        let state = self.round(tx, provider, round)?;
        let open = state.open_of(player);
        let Some(&first) = open.first() else {
            // Already over: ending it again is harmless, unless there was never a bet.
            return match state.nothing_open(player, round) {
                e @ RoundRefusal::BetNotFound { .. } => Ok(Err(e)),
                _ => {
                    let code = state.bets.iter().find(|x| &x.player == player).map(|x| x.currency.clone());
                    let currency = stored_currency(provider, round, &code.unwrap_or_default())?;
                    let cash = tx.balances(player, currency)?.cash;
                    Ok(Ok(answer(None, currency, cash)))
                }
            };
        };
        let currency = stored_currency(provider, round, &state.bets[first].currency)?;
        let zero = Money::signed(Decimal::ZERO, currency).expect("zero is valid money");
        // `endRound` answers without a transaction id.
        self.win(tx, provider, player, round, None, zero, true)
    }

    fn rollback(
        &mut self,
        tx: &mut KernelTx<'_>,
        provider: &str,
        player: &PlayerId,
        round: &RoundId,
        transaction: &TransactionId,
        bet: &BetId,
    ) -> Applied<SeamlessResponse> {
        let registered = or_refuse!(tx.registered(player)?);
        let state = self.round(tx, provider, round)?;
        let Some(i) = state.bets.iter().position(|x| &x.bet == bet) else {
            // Before its bet: remember, so the bet is refused when it comes.
            if !state.tombstones.contains(bet) {
                if state.tombstones.len() >= ROUND_BETS_MAX {
                    return Ok(Err(RoundRefusal::RoundFull { round: round.to_string(), bets_max: ROUND_BETS_MAX }));
                }
                state.tombstones.push(bet.clone());
                self.dirty.insert((provider.to_owned(), round.clone()));
            }
            let cash = tx.balances(player, registered.currency)?.cash;
            return Ok(Ok(answer(Some(transaction), registered.currency, cash)));
        };
        let target = state.bets[i].clone();
        if &target.player != player {
            return Ok(Err(RoundRefusal::PlayerMismatch {
                bet: bet.to_string(),
                owner: target.player.to_string(),
                player: player.to_string(),
            }));
        }
        let currency = stored_currency(provider, round, &target.currency)?;
        match target.status {
            BetStatus::Settled => {
                return Ok(Err(RoundRefusal::BetAlreadySettled { round: round.to_string(), bet: bet.to_string() }));
            }
            // Already given back: a second rollback moves nothing.
            BetStatus::RolledBack | BetStatus::Voided => {
                let cash = tx.balances(player, currency)?.cash;
                return Ok(Ok(answer(Some(transaction), currency, cash)));
            }
            BetStatus::Open => {}
        }
        // Refunding a stake whose round already paid out would pay the player twice.
        if state.won.iter().any(|(p, w)| p == player && !w.is_zero()) {
            return Ok(Err(RoundRefusal::BetAlreadyPaid { round: round.to_string(), bet: bet.to_string() }));
        }
        let entry = Entry {
            player,
            currency,
            kind: PostingKind::Refund,
            label: "rollback",
            reference: format!("{provider}/{round}/{transaction}"),
            postings: vec![Posting { from: Account::Held, to: Account::Cash, amount: target.amount }],
            stake: None,
            location: None,
            payment_method: None,
        };
        let posted = or_refuse!(tx.post_one(entry)?);
        self.round(tx, provider, round)?.bets[i].status = BetStatus::RolledBack;
        self.touched(tx, provider, round)?;
        tx.event(BetRolledBack {
            provider: provider.to_owned(),
            round_id: round.clone(),
            bet_id: bet.clone(),
            transaction_id: transaction.clone(),
            player_id: player.clone(),
            currency,
            amount: Amount::at_scale(target.amount, currency.scale()),
            status: BetStatus::RolledBack,
        })?;
        Ok(Ok(answer(Some(transaction), currency, posted.after.cash)))
    }

    /// Ends a round open past its provider's timeout. A part whose result was reported (a win,
    /// of zero included, with no closing call) settles as reported: its stakes go to game revenue.
    /// A part with no result is voided: its stakes go back to the player.
    fn time_out(
        &mut self,
        tx: &mut KernelTx<'_>,
        provider: &str,
        round: &RoundId,
        open_since_us: i64,
    ) -> Applied<Ended> {
        let state = self.round(tx, provider, round)?;
        if state.open_since != Some(open_since_us) {
            // Ended, or reopened since the sweeper looked: nothing of that opening is left.
            return Ok(Ok(Ended { bets: 0 }));
        }
        // Per player and currency (in order of first bet), the open bets to end.
        let mut parts: Vec<(PlayerId, Currency, Vec<usize>, bool)> = Vec::new();
        for (i, bet) in state.bets.iter().enumerate() {
            if bet.status != BetStatus::Open {
                continue;
            }
            let currency = stored_currency(provider, round, &bet.currency)?;
            match parts.iter_mut().find(|(p, c, _, _)| p == &bet.player && *c == currency) {
                Some((_, _, v, _)) => v.push(i),
                None => parts.push((bet.player.clone(), currency, vec![i], state.resulted.contains(&bet.player))),
            }
        }
        // Every part's entry, posted together: the kernel checks them all before it applies any.
        let mut stakes = Vec::with_capacity(parts.len());
        let mut entries = Vec::with_capacity(parts.len());
        for (player, currency, indices, resulted) in &parts {
            let stake = or_refuse!(state.stakes(indices));
            let (to, label, kind) = if *resulted {
                (Account::House(GAME_REVENUE), "timeout-settle", PostingKind::Win)
            } else {
                (Account::Cash, "void", PostingKind::Refund)
            };
            entries.push(Entry {
                player,
                currency: *currency,
                kind,
                label,
                reference: format!("{provider}/{round}"),
                postings: vec![Posting { from: Account::Held, to, amount: stake }],
                stake: None,
                location: None,
                payment_method: None,
            });
            stakes.push(stake);
        }
        or_refuse!(tx.post(entries)?);

        let state = self.round(tx, provider, round)?;
        let (mut settled, mut voided, mut ended) = (Vec::new(), Vec::new(), 0usize);
        for ((player, currency, indices, resulted), stake) in parts.into_iter().zip(stakes) {
            let (status, how) = if resulted {
                (BetStatus::Settled, RoundStatus::Settled)
            } else {
                (BetStatus::Voided, RoundStatus::Voided)
            };
            for &i in &indices {
                state.bets[i].status = status;
            }
            if state.closed_as(&player).is_none() {
                state.closed.push((player.clone(), how));
            }
            state.resulted.retain(|p| p != &player);
            let won = state.won_take(&player);
            ended = ended.saturating_add(indices.len());
            let s = currency.scale();
            let part = RoundPart {
                player_id: player,
                bet_ids: indices.iter().map(|&i| state.bets[i].bet.clone()).collect(),
                currency,
                stake: Amount::at_scale(stake, s),
                won: Amount::at_scale(won, s),
                refunded: Amount::at_scale(if resulted { Decimal::ZERO } else { stake }, s),
            };
            if resulted {
                settled.push(part);
            } else {
                voided.push(part);
            }
        }
        self.touched(tx, provider, round)?;
        for (status, parts) in [(RoundStatus::Settled, settled), (RoundStatus::Voided, voided)] {
            if !parts.is_empty() {
                tx.event(RoundSettled { provider: provider.to_owned(), round_id: round.clone(), status, parts })?;
            }
        }
        Ok(Ok(Ended { bets: ended }))
    }
}

/// Rounds of `provider` open since before `before_us`, oldest first, with the instant each
/// opened.
pub fn open_before(
    store: &dyn crate::store::Store,
    provider: &str,
    before_us: i64,
    limit: usize,
) -> Result<Vec<(RoundId, i64)>, StoreError> {
    let mut tx = store.begin()?;
    let (begin, end) = keys::game_open_before(provider, before_us);
    let space = crate::store::subspaces::wallet();
    tx.get_range(&begin, &end, limit, false)?
        .into_iter()
        .map(|(key, _)| {
            let (_, _, since, round): (String, String, i64, String) =
                space.unpack(&key).map_err(|e| StoreError::corrupt(&key, e))?;
            let round = RoundId::new(round).map_err(|e| StoreError::corrupt(&key, e))?;
            Ok((round, since))
        })
        .collect()
}
