//! Gaming: the seamless wallet game providers call (DESIGN.md section 6). Each provider speaks a
//! dialect ([`adapters`]); its calls are authenticated, normalised into one [`adapters::Operation`],
//! completed with what this domain knows (the provider's state, the game's product and maximum
//! multiplier) and run as round commands ([`rounds`]) on the ledger's writer, idempotent on the
//! provider's transaction id. A sweeper ends rounds left open past the provider's timeout.
//!
//! The round lifecycle runs on the ledger's single writer because every step of it moves money
//! and must be atomic with the ledger, its idempotency record, its events and the audit chain; its
//! state there is this domain's room ([`rounds::GameRounds`]). Per-product stake caps are not
//! checked here: they are compliance's gates, which the kernel runs on every stake.

pub mod adapters;
mod keys;
pub mod providers;
pub mod rounds;

use crate::events::EventContext;
use crate::idempotency::IdempotencyKey;
use crate::ledger::{Failed, Ledger, LedgerRefusal, Outcome, Refusal};
use crate::store::{transact_writes, Store, StoreError};
use adapters::{Operation, Rendered, Reply};
use axum::http::HeaderMap;
use contracts::catalog::{GameType, Multiplier};
use contracts::gaming::{ProviderStatus, SeamlessResponse};
use contracts::CellCode;
use contracts::RoundId;
use providers::{InitialState, Provider};
use rounds::{RoundCommand, TimeOut};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Rounds ended per provider per sweep: bounds one sweep; the next takes the rest.
const SWEEP_ROUNDS_MAX: usize = 1_000;

/// What the platform's catalog says of a provider's game, when it has synced it: the cell wires
/// the catalog in, so gaming reads it without importing it.
pub trait GameFacts: Send + Sync {
    fn game_type(&self, provider: &str, game: &str) -> Option<GameType>;
    fn max_multiplier(&self, provider: &str, game: &str) -> Option<Multiplier>;
}

/// A provider's run-time state, as ops set it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct ProviderState {
    maintenance: bool,
    reason: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum GamingError {
    #[error("no provider `{0}` is configured in this cell")]
    ProviderNotFound(String),
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

impl GamingError {
    pub fn code(&self) -> CellCode {
        match self {
            GamingError::ProviderNotFound(_) => CellCode::ProviderNotFound,
            GamingError::Store(e) => e.answer().0,
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            GamingError::ProviderNotFound(_) => 404,
            GamingError::Store(e) => e.answer().1,
        }
    }
}

/// The gaming domain of one cell.
pub struct Gaming {
    providers: BTreeMap<String, Provider>,
    states: RwLock<BTreeMap<String, ProviderState>>,
    ledger: Ledger,
    store: Arc<dyn Store>,
    games: Arc<dyn GameFacts>,
    clock: Arc<dyn crate::clock::Clock>,
}

impl Gaming {
    /// Loads each provider's state: as ops last set it, else as its file says.
    pub fn new(
        providers: Vec<Provider>,
        ledger: Ledger,
        store: Arc<dyn Store>,
        games: Arc<dyn GameFacts>,
        clock: Arc<dyn crate::clock::Clock>,
    ) -> Result<Gaming, StoreError> {
        let mut states = BTreeMap::new();
        let mut tx = store.begin()?;
        for p in &providers {
            let key = keys::provider_state(&p.config.id);
            let state = match tx.get(&key)? {
                Some(bytes) => rmp_serde::from_slice(&bytes).map_err(|e| StoreError::corrupt(&key, e))?,
                None => ProviderState { maintenance: p.config.state == InitialState::Maintenance, reason: None },
            };
            states.insert(p.config.id.clone(), state);
        }
        let providers = providers.into_iter().map(|p| (p.config.id.clone(), p)).collect();
        Ok(Gaming { providers, states: RwLock::new(states), ledger, store, games, clock })
    }

    /// One provider call, from raw request to the dialect's answer.
    pub async fn call(
        &self,
        provider: &str,
        call: &str,
        headers: &HeaderMap,
        body: &[u8],
        ctx: EventContext,
    ) -> Rendered {
        let Some(p) = self.providers.get(provider) else {
            let error = GamingError::ProviderNotFound(provider.to_owned());
            let body = contracts::ErrorBody { code: error.code().as_str().to_owned(), message: error.to_string() };
            return Rendered { status: 404, body: serde_json::to_vec(&body).expect("serialises"), replayed: false };
        };
        let reply = self.reply(p, call, headers, body, ctx).await;
        adapters::render(p.config.dialect, &reply, p.config.duplicates)
    }

    async fn reply(&self, p: &Provider, call: &str, headers: &HeaderMap, body: &[u8], ctx: EventContext) -> Reply {
        let Some(secret) = &p.secret else {
            return Reply::refused(
                503,
                CellCode::ProviderNotConfigured,
                format!("provider {}'s secret ({}) is not set in this cell", p.config.id, p.config.secret_env),
            );
        };
        let op = match adapters::parse(p.config.dialect, call, headers, body, secret, self.clock.now()) {
            Ok(op) => op,
            Err(refusal) => return refusal,
        };
        // The provider's transaction id is the idempotency key (`|` cannot occur in ids, so no
        // two providers' keys meet, and clients may not start keys with `g|`); the fingerprint is
        // the normalised operation, so a resend with a new timestamp and signature is the same
        // request. Both are taken before the operation becomes its command.
        let key = match &op {
            Operation::Bet { transaction, .. }
            | Operation::Win { transaction, .. }
            | Operation::Rollback { transaction, .. } => {
                let key = format!("{}{}|{transaction}", crate::idempotency::PROVIDER_KEY_PREFIX, p.config.id);
                // A typed operation serialises its fields in declaration order: canonical already.
                let fingerprint = serde_json::to_vec(&op).expect("an operation serialises");
                Some(IdempotencyKey::fingerprinted(key, "gaming", &fingerprint))
            }
            // Ending a part is idempotent by the round's state: no record, no replay.
            Operation::EndRound { .. } => None,
            Operation::Balance { .. } => return self.balance(&op),
        };
        let command = match self.command(p, op) {
            Ok(command) => command,
            Err(refusal) => return refusal,
        };
        match key {
            Some(key) => reply_of(self.ledger.execute(command, key, ctx).await),
            None => reply_of(self.ledger.execute_unkeyed(command, ctx).await),
        }
    }

    /// The round command for `op`, with what this domain knows that the round does not (the
    /// provider's state, the game's product and maximum multiplier). Nothing here refuses a bet:
    /// the writer does, after looking for a stored answer, so a retry of an accepted bet is
    /// answered as before even if the provider went into maintenance meanwhile. A balance read is
    /// no command.
    fn command(&self, p: &Provider, op: Operation) -> Result<RoundCommand, Reply> {
        let provider = p.config.id.clone();
        let refuse = |e: LedgerRefusal| Reply::refused(e.status(), e.code(), e.to_string());
        let command = match op {
            Operation::Bet { transaction, player, round, game, amount, currency } => {
                let money = self.ledger.money(amount, &currency, false).map_err(refuse)?;
                let maintenance = self
                    .states
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(&provider)
                    .filter(|s| s.maintenance)
                    .map(|s| s.reason.clone().unwrap_or_else(|| "set in its provider file".into()));
                // The synced catalog says what this provider's game is; else the provider's
                // file; else a slot, the most restricted product.
                let product = self.games.game_type(&p.config.id, &game).unwrap_or_else(|| p.product_of(&game));
                let max_multiplier = self
                    .games
                    .max_multiplier(&p.config.id, &game)
                    .or_else(|| p.max_multiplier_of(&game))
                    .map(|m| m.value());
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
                }
            }
            Operation::Win { transaction, player, round, amount, currency, close } => {
                let money = self.ledger.money(amount, &currency, true).map_err(refuse)?;
                RoundCommand::Win { provider, player, round, transaction, money, close }
            }
            Operation::Rollback { transaction, player, round, bet } => {
                RoundCommand::Rollback { provider, player, round, transaction, bet }
            }
            Operation::EndRound { player, round } => RoundCommand::EndRound { provider, player, round },
            Operation::Balance { .. } => unreachable!("a balance read is answered before any command"),
        };
        Ok(command)
    }

    fn balance(&self, op: &Operation) -> Reply {
        let Operation::Balance { player, currency } = op else { unreachable!("called for balance only") };
        match self.ledger.cash(player, currency) {
            Ok((currency, cash)) => Reply::Done {
                body: SeamlessResponse {
                    transaction_id: None,
                    balance: contracts::Amount::at_scale(cash, currency.scale()),
                    currency,
                },
                replayed: false,
            },
            Err(e) => Reply::refused(e.status(), e.code(), e.to_string()),
        }
    }

    /// Puts a provider in maintenance or takes it out; the change persists.
    pub fn set_maintenance(
        &self,
        provider: &str,
        maintenance: bool,
        reason: String,
    ) -> Result<ProviderStatus, GamingError> {
        if !self.providers.contains_key(provider) {
            return Err(GamingError::ProviderNotFound(provider.to_owned()));
        }
        let state = ProviderState { maintenance, reason: Some(reason) };
        let encoded = rmp_serde::to_vec(&state).expect("a provider state encodes");
        transact_writes(self.store.as_ref(), |tx| tx.set(&keys::provider_state(provider), &encoded))?;
        tracing::warn!(provider, maintenance, reason = ?state.reason, "provider state changed by ops");
        self.states.write().unwrap_or_else(|p| p.into_inner()).insert(provider.to_owned(), state);
        Ok(self.statuses().into_iter().find(|s| s.provider == provider).expect("the provider exists"))
    }

    pub fn statuses(&self) -> Vec<ProviderStatus> {
        let states = self.states.read().unwrap_or_else(|p| p.into_inner());
        self.providers
            .values()
            .map(|p| {
                let state = states.get(&p.config.id);
                ProviderStatus {
                    provider: p.config.id.clone(),
                    dialect: p.config.dialect.name().to_owned(),
                    configured: p.secret.is_some(),
                    maintenance: state.is_some_and(|s| s.maintenance),
                    reason: state.and_then(|s| s.reason.clone()),
                    round_timeout_seconds: p.config.round_timeout_seconds,
                }
            })
            .collect()
    }

    /// Ends every round open longer than its provider's timeout; returns how many bets it ended.
    /// A round that cannot be ended now is logged and retried at the next sweep; the others go on.
    pub async fn sweep(&self, cell: &str) -> Result<usize, Failed<rounds::RoundRefusal>> {
        let mut ended = 0;
        for p in self.providers.values() {
            let timeout = chrono::Duration::seconds(p.config.round_timeout_seconds as i64);
            let before_us = (self.clock.now() - timeout).timestamp_micros();
            let store = self.store.clone();
            let provider = p.config.id.clone();
            let rounds = tokio::task::spawn_blocking(move || {
                rounds::open_before(store.as_ref(), &provider, before_us, SWEEP_ROUNDS_MAX)
            })
            .await
            .map_err(|e| Failed::Internal(e.to_string()))?
            .map_err(|e| Failed::Unavailable(e.to_string()))?;
            for (round, open_since_us) in rounds {
                match self.time_out(p, round.clone(), open_since_us, cell).await {
                    Ok(n) => ended += n,
                    Err(Failed::Stopped) => return Err(Failed::Stopped),
                    Err(e) => {
                        tracing::warn!(provider = %p.config.id, %round, error = %e, "cannot end a timed-out round; next sweep")
                    }
                }
            }
        }
        Ok(ended)
    }

    async fn time_out(
        &self,
        p: &Provider,
        round: RoundId,
        open_since_us: i64,
        cell: &str,
    ) -> Result<usize, Failed<rounds::RoundRefusal>> {
        let provider = p.config.id.clone();
        let ctx = EventContext::background(cell);
        let command = TimeOut { provider: provider.clone(), round: round.clone(), open_since_us };
        // The writer re-checks that the round is still open since that instant: no record needed.
        let ended = self.ledger.execute_unkeyed(command, ctx).await?.value.bets;
        if ended > 0 {
            tracing::info!(%provider, %round, ended, "round timed out: parts with a result settled, the others voided");
        }
        Ok(ended)
    }

    /// Sweeps every `interval` until the wallet stops.
    pub fn spawn_sweeper(self: Arc<Self>, cell: String, interval: Duration) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                match self.sweep(&cell).await {
                    Ok(_) => {}
                    Err(Failed::Stopped) => return,
                    Err(e) => tracing::warn!(error = %e, "round sweep failed; retrying at the next tick"),
                }
            }
        })
    }
}

/// A round command's outcome as a dialect-neutral reply.
fn reply_of(outcome: Outcome<RoundCommand>) -> Reply {
    match outcome {
        Ok(answered) => Reply::Done { body: answered.value, replayed: answered.replayed },
        Err(Failed::KeyReused) => Reply::refused(
            409,
            CellCode::TransactionIdReused,
            "this transaction id was already used for a different request",
        ),
        Err(failed) => Reply::Refused {
            status: failed.status(),
            code: failed.code().to_owned(),
            message: failed.to_string(),
            replayed: failed.replayed(),
        },
    }
}
