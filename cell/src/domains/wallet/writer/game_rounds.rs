//! Providers' rounds, applied by the wallet's writer because every step moves money: a bet holds
//! its stake (cash -> held), a win pays from game revenue to cash, closing a player's part moves
//! their stakes from held to game revenue, and a rollback or a void gives stakes back (held ->
//! cash). Each is checked in full before it changes anything.
//!
//! A round may carry bets of several players (live tables); each player's part ends on its own
//! (a closing win or `endRound`), or all open parts end together when the sweeper voids the round.
//! A rollback that arrives before its bet leaves a tombstone, so the late bet is refused and moves
//! no money.

use super::{cash, held, house, Batch, House, Writer, ROUND_HOLDS_MAX};
use crate::domains::wallet::{keys, ledger_add, ledger_sub, ledger_sum, GameCommand, WalletError};
use crate::events::EventContext;
use crate::store::{StoreError, Transaction};
use contracts::gaming::SeamlessResponse;
use contracts::gaming::{BetPlaced, BetRolledBack, BetStatus, BetWon, RoundPart, RoundSettled, RoundStatus};
use contracts::{Amount, BetId, Currency, Money, PlayerId, RoundId};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

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
pub(super) struct GameRound {
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
    pub written_in: u64,
}

impl GameRound {
    /// A round with nothing open leaves the view once its last write is in the store.
    pub fn evictable(&self, committed: u64) -> bool {
        self.open_since.is_none() && self.written_in <= committed
    }

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
    fn stakes(&self, indices: &[usize]) -> Result<Decimal, WalletError> {
        ledger_sum(indices.iter().map(|&i| self.bets[i].amount))
    }
}

type Refusable = Result<Result<String, WalletError>, StoreError>;

/// What the gaming domain decided about a new bet before the round is known.
struct BetGate<'a> {
    maintenance: Option<&'a str>,
    stake_cap: Option<&'a contracts::region::StakeCap>,
    /// The game's maximum multiplier: what the bet may win is its stake times this.
    max_multiplier: Option<Decimal>,
}

fn answer(transaction: Option<&BetId>, currency: Currency, cash: Decimal) -> String {
    let body = SeamlessResponse {
        transaction_id: transaction.cloned(),
        balance: Amount::at_scale(cash, currency.scale()),
        currency,
    };
    serde_json::to_string(&body).expect("serialises")
}

impl Writer {
    pub(super) fn game(
        &mut self,
        tx: &mut dyn Transaction,
        b: &mut Batch,
        ctx: &EventContext,
        g: &GameCommand,
    ) -> Refusable {
        match g {
            GameCommand::Bet { provider, player, round, bet, game, money, maintenance, stake_cap, max_multiplier } => {
                let gate = BetGate {
                    maintenance: maintenance.as_deref(),
                    stake_cap: stake_cap.as_ref(),
                    max_multiplier: *max_multiplier,
                };
                self.game_bet(tx, b, ctx, provider, player, round, bet, game, *money, gate)
            }
            GameCommand::Win { provider, player, round, transaction, money, close } => {
                self.game_win(tx, b, ctx, provider, player, round, transaction, *money, *close)
            }
            GameCommand::Rollback { provider, player, round, transaction, bet } => {
                self.game_rollback(tx, b, ctx, provider, player, round, transaction, bet)
            }
            GameCommand::EndRound { provider, player, round } => self.game_end(tx, b, ctx, provider, player, round),
            GameCommand::TimeOut { provider, round, open_since_us } => {
                self.game_time_out(tx, b, ctx, provider, round, *open_since_us)
            }
        }
    }

    fn game_round(
        &mut self,
        tx: &mut dyn Transaction,
        provider: &str,
        round: &RoundId,
    ) -> Result<&mut GameRound, StoreError> {
        let key = (provider.to_owned(), round.clone());
        if !self.cache.games.contains_key(&key) {
            let state = match tx.get(&keys::game_round(provider, round))? {
                Some(bytes) => super::decode("game round", &bytes)?,
                None => GameRound::default(),
            };
            self.cache.games.insert(key.clone(), state);
        }
        Ok(self.cache.games.get_mut(&key).expect("inserted above"))
    }

    /// Marks the round written by this batch and keeps the sweeper's index true to it.
    fn game_touched(
        &mut self,
        tx: &mut dyn Transaction,
        b: &mut Batch,
        provider: &str,
        round: &RoundId,
    ) -> Result<(), StoreError> {
        let state =
            self.cache.games.get_mut(&(provider.to_owned(), round.clone())).expect("a touched round is in the view");
        let open = state.bets.iter().any(|bet| bet.status == BetStatus::Open);
        match (open, state.open_since) {
            (true, None) => {
                let since = b.at.timestamp_micros();
                tx.set(&keys::game_open(provider, since, round), &[])?;
                state.open_since = Some(since);
            }
            (false, Some(since)) => {
                tx.clear(&keys::game_open(provider, since, round))?;
                state.open_since = None;
            }
            _ => {}
        }
        b.dirty_games.insert((provider.to_owned(), round.clone()));
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn game_bet(
        &mut self,
        tx: &mut dyn Transaction,
        b: &mut Batch,
        ctx: &EventContext,
        provider: &str,
        player: &PlayerId,
        round: &RoundId,
        bet: &BetId,
        game: &str,
        money: Money,
        gate: BetGate<'_>,
    ) -> Refusable {
        if !self.player_known(tx, player)? {
            return Ok(Err(WalletError::PlayerNotFound(player.to_string())));
        }
        if let Some(reason) = gate.maintenance {
            let (provider, reason) = (provider.to_owned(), reason.to_owned());
            return Ok(Err(WalletError::ProviderMaintenance { provider, reason }));
        }
        let state = self.game_round(tx, provider, round)?;
        // A voided round is over for everyone: its stakes went back.
        let voided = state.bets.iter().any(|x| x.status == BetStatus::Voided)
            || state.closed.iter().any(|(_, how)| *how == RoundStatus::Voided);
        if voided {
            return Ok(Err(WalletError::RoundVoided(round.to_string())));
        }
        if state.tombstones.contains(bet) {
            return Ok(Err(WalletError::BetRolledBack { round: round.to_string(), bet: bet.to_string() }));
        }
        if state.bets.iter().any(|x| &x.bet == bet) {
            return Ok(Err(WalletError::BetAlreadyHeld { round: round.to_string(), bet: bet.to_string() }));
        }
        match state.closed_as(player) {
            Some(RoundStatus::Settled) => return Ok(Err(WalletError::RoundAlreadySettled(round.to_string()))),
            Some(RoundStatus::Voided) => return Ok(Err(WalletError::RoundVoided(round.to_string()))),
            None => {}
        }
        if state.bets.len() >= ROUND_HOLDS_MAX {
            return Ok(Err(WalletError::RoundFull { round: round.to_string(), holds_max: ROUND_HOLDS_MAX }));
        }
        let currency = money.currency();
        // A stake cap is per spin: the player's open stakes in this round count with the new one.
        if let Some(cap) = gate.stake_cap {
            let open = or_refuse!(ledger_sum(
                state
                    .bets
                    .iter()
                    .filter(|x| &x.player == player && x.status == BetStatus::Open && x.currency == currency.code())
                    .map(|x| x.amount)
            ));
            let stake = or_refuse!(ledger_add(open, money.amount()));
            if stake > cap.max {
                let s = currency.scale();
                return Ok(Err(WalletError::StakeLimitExceeded {
                    rule: cap.rule.clone(),
                    policy_version: cap.policy_version.clone(),
                    max: Amount::at_scale(cap.max, s).0,
                    stake: Amount::at_scale(stake, s).0,
                    currency: currency.code(),
                }));
            }
        }
        // Exact at any multiplier a file may give: a stake is at most `amount_max`, and a payout
        // past `LEDGER_MAGNITUDE_MAX` is refused, not rounded.
        let payout_max = match gate.max_multiplier {
            Some(m) => Some(or_refuse!(money
                .amount()
                .checked_mul(m)
                .filter(|v| v.abs() <= super::super::LEDGER_MAGNITUDE_MAX)
                .ok_or(WalletError::AmountOverflow))),
            None => None,
        };
        let after = or_refuse!(self.balances(tx, player, currency)?.staked(player, money));
        let postings = vec![(cash(player), held(player), money.amount())];
        self.post(tx, b, player, currency, after, "bet", format!("{provider}/{round}/{bet}"), postings)?;
        let state = self.game_round(tx, provider, round)?;
        state.bets.push(GameBet {
            bet: bet.clone(),
            player: player.clone(),
            currency: currency.code().to_owned(),
            amount: money.amount(),
            status: BetStatus::Open,
            payout_max,
        });
        self.game_touched(tx, b, provider, round)?;
        let placed = BetPlaced {
            provider: provider.to_owned(),
            round_id: round.clone(),
            bet_id: bet.clone(),
            player_id: player.clone(),
            game_id: game.to_owned(),
            currency,
            amount: money.wire(),
            status: BetStatus::Open,
        };
        Self::event(tx, b, ctx, placed)?;
        Ok(Ok(answer(Some(bet), currency, after.cash)))
    }

    /// Why a player with no open bet in the round cannot be paid or closed: their bets ended.
    fn game_nothing_open(state: &GameRound, player: &PlayerId, round: &RoundId) -> WalletError {
        let mine: Vec<&GameBet> = state.bets.iter().filter(|x| &x.player == player).collect();
        if state.closed_as(player) == Some(RoundStatus::Voided) || mine.iter().any(|x| x.status == BetStatus::Voided) {
            WalletError::RoundVoided(round.to_string())
        } else if let Some(settled) = mine.iter().find(|x| x.status == BetStatus::Settled) {
            WalletError::BetAlreadySettled { round: round.to_string(), bet: settled.bet.to_string() }
        } else if let Some(rolled) = mine.first() {
            WalletError::BetRolledBack { round: round.to_string(), bet: rolled.bet.to_string() }
        } else {
            WalletError::BetNotFound { player: player.to_string(), round: round.to_string() }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn game_win(
        &mut self,
        tx: &mut dyn Transaction,
        b: &mut Batch,
        ctx: &EventContext,
        provider: &str,
        player: &PlayerId,
        round: &RoundId,
        transaction: &BetId,
        money: Money,
        close: bool,
    ) -> Refusable {
        if !self.player_known(tx, player)? {
            return Ok(Err(WalletError::PlayerNotFound(player.to_string())));
        }
        let state = self.game_round(tx, provider, round)?;
        let open = state.open_of(player);
        if open.is_empty() {
            return Ok(Err(Self::game_nothing_open(state, player, round)));
        }
        let currency = money.currency();
        if let Some(other) = open.iter().map(|&i| &state.bets[i]).find(|x| x.currency != currency.code()) {
            let held = Currency::from_code(&other.currency).map(|c| c.code()).unwrap_or("???");
            return Ok(Err(WalletError::SettleCurrencyMismatch {
                player: player.to_string(),
                held,
                given: currency.code(),
            }));
        }
        let payout = money.amount();
        // Check everything before changing anything: the payouts against the game's maximum,
        // the balances against the currency's.
        let won = or_refuse!(ledger_add(state.won_of(player), payout));
        let open_stake = or_refuse!(state.stakes(&open));
        let payout_max: Option<Vec<Decimal>> = open.iter().map(|&i| state.bets[i].payout_max).collect();
        if let Some(max) = payout_max {
            let max = or_refuse!(ledger_sum(max));
            if won > max {
                let s = currency.scale();
                return Ok(Err(WalletError::WinLimitExceeded {
                    round: round.to_string(),
                    currency: currency.code(),
                    stake: Amount::at_scale(open_stake, s).0,
                    won: Amount::at_scale(won, s).0,
                    max: Amount::at_scale(max, s).0,
                }));
            }
        }
        let stake = if close { open_stake } else { Decimal::ZERO };
        let before = self.balances(tx, player, currency)?;
        let after = or_refuse!(before.moved(player, currency, payout, -stake));
        let mut postings = Vec::new();
        if !stake.is_zero() {
            postings.push((held(player), house(House::GameRevenue), stake));
        }
        if !payout.is_zero() {
            postings.push((house(House::GameRevenue), cash(player), payout));
        }
        let revenue = if postings.is_empty() {
            None
        } else {
            let balance = self.house_balance(tx, House::GameRevenue, currency)?;
            Some(or_refuse!(ledger_add(balance, stake).and_then(|v| ledger_sub(v, payout))))
        };

        let state = self.game_round(tx, provider, round)?;
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
        if let Some(revenue) = revenue {
            let reference = format!("{provider}/{round}/{transaction}");
            self.post(tx, b, player, currency, after, "win", reference, postings)?;
            self.house_set(b, House::GameRevenue, currency, revenue);
        }
        self.game_touched(tx, b, provider, round)?;
        let s = currency.scale();
        // A closing win's payout is reported by `round.settled` (its part's `won`), so one event
        // says it; a win that leaves the round open has its own.
        if !payout.is_zero() && !close {
            let won_event = BetWon {
                provider: provider.to_owned(),
                round_id: round.clone(),
                transaction_id: transaction.clone(),
                player_id: player.clone(),
                bet_ids: bet_ids.clone(),
                currency,
                amount: money.wire(),
                status: BetStatus::Open,
            };
            Self::event(tx, b, ctx, won_event)?;
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
            let settled = RoundSettled {
                provider: provider.to_owned(),
                round_id: round.clone(),
                status: RoundStatus::Settled,
                parts: vec![part],
            };
            Self::event(tx, b, ctx, settled)?;
        }
        Ok(Ok(answer(Some(transaction), currency, after.cash)))
    }

    fn game_end(
        &mut self,
        tx: &mut dyn Transaction,
        b: &mut Batch,
        ctx: &EventContext,
        provider: &str,
        player: &PlayerId,
        round: &RoundId,
    ) -> Refusable {
        if !self.player_known(tx, player)? {
            return Ok(Err(WalletError::PlayerNotFound(player.to_string())));
        }
        let state = self.game_round(tx, provider, round)?;
        let open = state.open_of(player);
        let Some(&first) = open.first() else {
            // Already over: ending it again is harmless, unless there was never a bet.
            return match Self::game_nothing_open(state, player, round) {
                e @ WalletError::BetNotFound { .. } => Ok(Err(e)),
                _ => {
                    let currency = state.bets.iter().find(|x| &x.player == player).map(|x| x.currency.clone());
                    let currency = Currency::from_code(&currency.unwrap_or_default())
                        .map_err(|e| StoreError::Io(e.to_string()))?;
                    let cash = self.balances(tx, player, currency)?.cash;
                    Ok(Ok(answer(None, currency, cash)))
                }
            };
        };
        let currency = Currency::from_code(&state.bets[first].currency).map_err(|e| StoreError::Io(e.to_string()))?;
        let zero = Money::signed(Decimal::ZERO, currency).expect("zero is valid money");
        let end_tx = state.bets[first].bet.clone();
        if let Err(refused) = self.game_win(tx, b, ctx, provider, player, round, &end_tx, zero, true)? {
            return Ok(Err(refused));
        }
        // `endRound` answers without a transaction id; the cash is in the view already.
        let cash = self.balances(tx, player, currency)?.cash;
        Ok(Ok(answer(None, currency, cash)))
    }

    #[allow(clippy::too_many_arguments)]
    fn game_rollback(
        &mut self,
        tx: &mut dyn Transaction,
        b: &mut Batch,
        ctx: &EventContext,
        provider: &str,
        player: &PlayerId,
        round: &RoundId,
        transaction: &BetId,
        bet: &BetId,
    ) -> Refusable {
        if !self.player_known(tx, player)? {
            return Ok(Err(WalletError::PlayerNotFound(player.to_string())));
        }
        let state = self.game_round(tx, provider, round)?;
        let Some(i) = state.bets.iter().position(|x| &x.bet == bet) else {
            // Before its bet: remember, so the bet is refused when it comes.
            if !state.tombstones.contains(bet) {
                if state.tombstones.len() >= ROUND_HOLDS_MAX {
                    return Ok(Err(WalletError::RoundFull { round: round.to_string(), holds_max: ROUND_HOLDS_MAX }));
                }
                state.tombstones.push(bet.clone());
                b.dirty_games.insert((provider.to_owned(), round.clone()));
            }
            let registered = crate::players::get(tx, player)?.expect("the player is known");
            let cash = self.balances(tx, player, registered.currency)?.cash;
            return Ok(Ok(answer(Some(transaction), registered.currency, cash)));
        };
        let target = state.bets[i].clone();
        if &target.player != player {
            return Ok(Err(WalletError::PlayerMismatch {
                bet: bet.to_string(),
                owner: target.player.to_string(),
                player: player.to_string(),
            }));
        }
        let currency = Currency::from_code(&target.currency).map_err(|e| StoreError::Io(e.to_string()))?;
        match target.status {
            BetStatus::Settled => {
                return Ok(Err(WalletError::BetAlreadySettled { round: round.to_string(), bet: bet.to_string() }));
            }
            // Already given back: a second rollback moves nothing.
            BetStatus::RolledBack | BetStatus::Voided => {
                let cash = self.balances(tx, player, currency)?.cash;
                return Ok(Ok(answer(Some(transaction), currency, cash)));
            }
            BetStatus::Open => {}
        }
        // Refunding a stake whose round already paid out would pay the player twice.
        if state.won.iter().any(|(p, w)| p == player && !w.is_zero()) {
            return Ok(Err(WalletError::BetAlreadyPaid { round: round.to_string(), bet: bet.to_string() }));
        }
        let before = self.balances(tx, player, currency)?;
        let after = or_refuse!(before.moved(player, currency, target.amount, -target.amount));
        self.game_round(tx, provider, round)?.bets[i].status = BetStatus::RolledBack;
        let postings = vec![(held(player), cash(player), target.amount)];
        self.post(tx, b, player, currency, after, "rollback", format!("{provider}/{round}/{transaction}"), postings)?;
        self.game_touched(tx, b, provider, round)?;
        let rolled = BetRolledBack {
            provider: provider.to_owned(),
            round_id: round.clone(),
            bet_id: bet.clone(),
            transaction_id: transaction.clone(),
            player_id: player.clone(),
            currency,
            amount: Amount::at_scale(target.amount, currency.scale()),
            status: BetStatus::RolledBack,
        };
        Self::event(tx, b, ctx, rolled)?;
        Ok(Ok(answer(Some(transaction), currency, after.cash)))
    }

    /// Ends a round open past its provider's timeout. A part whose result was reported (a win,
    /// of zero included, with no closing call) settles as reported: its stakes go to game revenue.
    /// A part with no result is voided: its stakes go back to the player.
    fn game_time_out(
        &mut self,
        tx: &mut dyn Transaction,
        b: &mut Batch,
        ctx: &EventContext,
        provider: &str,
        round: &RoundId,
        open_since_us: i64,
    ) -> Refusable {
        let state = self.game_round(tx, provider, round)?;
        if state.open_since != Some(open_since_us) {
            // Ended, or reopened since the sweeper looked: nothing of that opening is left.
            return Ok(Ok(serde_json::json!({ "ended": 0 }).to_string()));
        }
        // Per player and currency (in order of first bet), the open bets to end.
        let mut parts: Vec<(PlayerId, Currency, Vec<usize>, bool)> = Vec::new();
        for (i, bet) in state.bets.iter().enumerate() {
            if bet.status != BetStatus::Open {
                continue;
            }
            let currency = Currency::from_code(&bet.currency).map_err(|e| StoreError::Io(e.to_string()))?;
            match parts.iter_mut().find(|(p, c, _, _)| p == &bet.player && *c == currency) {
                Some((_, _, v, _)) => v.push(i),
                None => parts.push((bet.player.clone(), currency, vec![i], state.resulted.contains(&bet.player))),
            }
        }
        // The amounts first, each checked before anything changes: a player's balances after their
        // part (after their earlier parts) and game revenue's, per currency.
        let mut amounts: Vec<(Decimal, super::PlayerBalances)> = Vec::with_capacity(parts.len());
        let mut revenue: Vec<(Currency, Decimal)> = Vec::new();
        for (n, (player, currency, indices, resulted)) in parts.iter().enumerate() {
            let stake = or_refuse!(self.game_round(tx, provider, round)?.stakes(indices));
            let earlier = parts[..n]
                .iter()
                .zip(&amounts)
                .rev()
                .find(|((p, c, _, _), _)| p == player && c == currency)
                .map(|(_, (_, after))| *after);
            let before = match earlier {
                Some(after) => after,
                None => self.balances(tx, player, *currency)?,
            };
            let refund = if *resulted { Decimal::ZERO } else { stake };
            amounts.push((stake, or_refuse!(before.moved(player, *currency, refund, -stake))));
            if *resulted {
                let house = match revenue.iter().position(|(c, _)| c == currency) {
                    Some(at) => at,
                    None => {
                        revenue.push((*currency, self.house_balance(tx, House::GameRevenue, *currency)?));
                        revenue.len().saturating_sub(1)
                    }
                };
                revenue[house].1 = or_refuse!(ledger_add(revenue[house].1, stake));
            }
        }
        let (mut settled, mut voided, mut ended) = (Vec::new(), Vec::new(), 0usize);
        for ((player, currency, indices, resulted), (stake, after)) in parts.into_iter().zip(amounts) {
            let state = self.game_round(tx, provider, round)?;
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
            let bet_ids = indices.iter().map(|&i| state.bets[i].bet.clone()).collect();
            ended = ended.saturating_add(indices.len());
            let s = currency.scale();
            let part = |refunded: Decimal| RoundPart {
                player_id: player.clone(),
                bet_ids,
                currency,
                stake: Amount::at_scale(stake, s),
                won: Amount::at_scale(won, s),
                refunded: Amount::at_scale(refunded, s),
            };
            if resulted {
                let postings = vec![(held(&player), house(House::GameRevenue), stake)];
                self.post(tx, b, &player, currency, after, "timeout-settle", format!("{provider}/{round}"), postings)?;
                settled.push(part(Decimal::ZERO));
            } else {
                let postings = vec![(held(&player), cash(&player), stake)];
                self.post(tx, b, &player, currency, after, "void", format!("{provider}/{round}"), postings)?;
                voided.push(part(stake));
            }
        }
        for (currency, balance) in revenue {
            self.house_set(b, House::GameRevenue, currency, balance);
        }
        self.game_touched(tx, b, provider, round)?;
        for (status, parts) in [(RoundStatus::Settled, settled), (RoundStatus::Voided, voided)] {
            if !parts.is_empty() {
                let event = RoundSettled { provider: provider.to_owned(), round_id: round.clone(), status, parts };
                Self::event(tx, b, ctx, event)?;
            }
        }
        Ok(Ok(serde_json::json!({ "ended": ended }).to_string()))
    }
}

/// Rounds of `provider` open since before `before_us`, oldest first.
pub(in crate::domains::wallet) fn game_rounds_open_before(
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
                space.unpack(&key).map_err(|e| StoreError::Io(format!("game index key: {e}")))?;
            let round = RoundId::new(round).map_err(|e| StoreError::Io(e.to_string()))?;
            Ok((round, since))
        })
        .collect()
}
