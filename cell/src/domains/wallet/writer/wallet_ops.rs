//! The wallet API's operations as the writer applies them: credit and debit against PSP clearing,
//! holds, and a round's settle. Each checks everything before it changes anything.

use super::*;

impl Writer {
    /// Credit (`inward`) or debit a player's cash against PSP clearing.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn movement(
        &mut self,
        tx: &mut dyn Transaction,
        b: &mut Batch,
        ctx: &EventContext,
        player: &PlayerId,
        money: Money,
        reason: contracts::wallet::MovementReason,
        inward: bool,
    ) -> Result<Result<String, WalletError>, StoreError> {
        if !self.player_known(tx, player)? {
            return Ok(Err(WalletError::PlayerNotFound(player.to_string())));
        }
        let currency = money.currency();
        let amount = money.amount();
        let after = self.balances(tx, player, currency)?;
        if !inward {
            or_refuse!(after.covers(player, money));
        }
        let clearing = self.house_balance(tx, House::PspClearing, currency)?;
        let (kind, posting, signed) = if inward {
            ("credit", (house(House::PspClearing), cash(player), amount), amount)
        } else {
            ("debit", (cash(player), house(House::PspClearing), amount), -amount)
        };
        let after = or_refuse!(after.moved(player, currency, signed, Decimal::ZERO));
        let clearing = or_refuse!(ledger_sub(clearing, signed));
        let seq = self.post(tx, b, player, currency, after, kind, format!("{reason:?}"), vec![posting])?;
        self.house_set(b, House::PspClearing, currency, clearing);
        let (player_id, amount, entry_id) = (player.clone(), money.wire(), seq.to_string());
        if inward {
            Self::event(tx, b, ctx, WalletCredited { player_id, currency, amount, reason, entry_id })?;
        } else {
            Self::event(tx, b, ctx, WalletDebited { player_id, currency, amount, reason, entry_id })?;
        }
        let body = MovementResponse { balance: wire_balance(player, currency, &after) };
        Ok(Ok(serde_json::to_string(&body).expect("serialises")))
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn hold(
        &mut self,
        tx: &mut dyn Transaction,
        b: &mut Batch,
        ctx: &EventContext,
        player: &PlayerId,
        round: &RoundId,
        bet: &BetId,
        money: Money,
    ) -> Result<Result<String, WalletError>, StoreError> {
        if !self.player_known(tx, player)? {
            return Ok(Err(WalletError::PlayerNotFound(player.to_string())));
        }
        let state = self.round(tx, round)?;
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
        let after = or_refuse!(self.balances(tx, player, currency)?.staked(player, money));
        let postings = vec![(cash(player), held(player), money.amount())];
        let seq = self.post(tx, b, player, currency, after, "hold", format!("{round}/{bet}"), postings)?;
        let hold = Hold {
            hold_id: format!("h{seq}"),
            player: player.clone(),
            bet: bet.clone(),
            currency: currency.code().to_owned(),
            amount: money.amount(),
        };
        self.round(tx, round)?.holds.push(hold.clone());
        b.dirty_rounds.insert(round.clone());
        let payload = WalletHold {
            hold_id: hold.hold_id.clone(),
            player_id: player.clone(),
            round_id: round.clone(),
            bet_id: bet.clone(),
            currency,
            amount: money.wire(),
        };
        Self::event(tx, b, ctx, payload)?;
        let body = HoldResponse { hold_id: hold.hold_id, balance: wire_balance(player, currency, &after) };
        Ok(Ok(serde_json::to_string(&body).expect("serialises")))
    }

    pub(super) fn settle(
        &mut self,
        tx: &mut dyn Transaction,
        b: &mut Batch,
        ctx: &EventContext,
        round: &RoundId,
        parts: &[SettlePart],
    ) -> Result<Result<String, WalletError>, StoreError> {
        // Check everything before changing anything.
        let state = self.round(tx, round)?;
        if state.settled {
            return Ok(Err(WalletError::RoundAlreadySettled(round.to_string())));
        }
        let mut taken = vec![false; state.holds.len()];
        let mut plan: Vec<(&SettlePart, Vec<usize>, Decimal)> = Vec::with_capacity(parts.len());
        for part in parts {
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

        // The amounts, per part: the player's balances after it (after the player's earlier parts
        // in this settle) and game revenue's, each checked before anything changes.
        let mut amounts: Vec<(Decimal, PlayerBalances)> = Vec::with_capacity(plan.len());
        let mut revenue: Vec<(Currency, Decimal)> = Vec::new();
        for (i, (part, _, stake)) in plan.iter().enumerate() {
            let currency = part.delta.currency();
            let payout = or_refuse!(ledger_add(*stake, part.delta.amount()));
            let earlier = plan[..i]
                .iter()
                .zip(&amounts)
                .rev()
                .find(|((p, _, _), _)| p.player == part.player && p.delta.currency() == currency)
                .map(|(_, (_, after))| *after);
            let before = match earlier {
                Some(after) => after,
                None => self.balances(tx, &part.player, currency)?,
            };
            amounts.push((payout, or_refuse!(before.moved(&part.player, currency, payout, -*stake))));
            let house = match revenue.iter().position(|(c, _)| *c == currency) {
                Some(at) => at,
                None => {
                    revenue.push((currency, self.house_balance(tx, House::GameRevenue, currency)?));
                    revenue.len().saturating_sub(1)
                }
            };
            let balance = or_refuse!(ledger_add(revenue[house].1, *stake).and_then(|v| ledger_sub(v, payout)));
            revenue[house].1 = balance;
        }
        let state = self.round(tx, round)?;
        let holds = std::mem::take(&mut state.holds);
        state.settled = true;
        b.dirty_rounds.insert(round.clone());

        // Apply: per player, held -> game revenue (the stake), game revenue -> cash (the payout).
        let mut settled_parts = Vec::with_capacity(plan.len());
        let mut balances = Vec::with_capacity(plan.len());
        for ((part, chosen, stake), (payout, after)) in plan.into_iter().zip(amounts) {
            let currency = part.delta.currency();
            let mut postings = vec![(held(&part.player), house(House::GameRevenue), stake)];
            if !payout.is_zero() {
                postings.push((house(House::GameRevenue), cash(&part.player), payout));
            }
            self.post(tx, b, &part.player, currency, after, "settle", round.to_string(), postings)?;
            let bet_ids: Vec<BetId> = chosen.iter().map(|&i| holds[i].bet.clone()).collect();
            let s = currency.scale();
            settled_parts.push(SettledPart {
                player_id: part.player.clone(),
                currency,
                stake: Amount::at_scale(stake, s),
                payout: Amount::at_scale(payout, s),
                bet_ids,
            });
            balances.push(wire_balance(&part.player, currency, &after));
        }
        for (currency, balance) in revenue {
            self.house_set(b, House::GameRevenue, currency, balance);
        }
        Self::event(tx, b, ctx, WalletSettled { round_id: round.clone(), parts: settled_parts })?;
        let body = SettleResponse { balances };
        Ok(Ok(serde_json::to_string(&body).expect("serialises")))
    }
}
