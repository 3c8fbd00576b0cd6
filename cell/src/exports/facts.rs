//! What the chained events say, in the words exports need: one event becomes zero or more facts
//! (a stake, a win, a deposit, a new player...). Every dialect reads these, so the same events
//! feed every format; which events an export includes is [`Family`]'s business, and the verifier
//! asks the same question of the same events.

use contracts::events::Envelope;
use contracts::PlayerId;
use rust_decimal::Decimal;

/// The kinds of chained events exports draw on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// Stakes, wins, rollbacks, rounds ending.
    Gaming,
    /// Deposits, withdrawals, chargebacks, refunds, manual credits and debits.
    Payments,
}

/// The family of an event by its name; `None` for events no export draws on (logins, webhooks
/// received, intents...).
pub fn family(event: &str) -> Option<Family> {
    match event {
        "bet.placed" | "bet.won" | "bet.rolled_back" | "round.settled" | "wallet.hold" | "wallet.settled" => {
            Some(Family::Gaming)
        }
        "payment.confirmed"
        | "payout.paid"
        | "chargeback.received"
        | "payment.refunded"
        | "wallet.credited"
        | "wallet.debited" => Some(Family::Payments),
        _ => None,
    }
}

/// One thing an event says happened, at its envelope's time.
#[derive(Debug, Clone, PartialEq)]
pub enum Fact {
    /// Money in through a payment method (a PSP, or the back office's `deposit`).
    Deposit { player: PlayerId, currency: String, amount: Decimal, method: String },
    /// Money out to a payment method, paid.
    Withdrawal { player: PlayerId, currency: String, amount: Decimal, method: String },
    /// Any other movement of the player's balance, signed (a chargeback is negative).
    Other { player: PlayerId, currency: String, amount: Decimal, concept: &'static str },
    /// A stake taken from the player's cash.
    Stake { player: PlayerId, currency: String, amount: Decimal, game: Game, bet: String },
    /// A payout credited to the player's cash. `closing` ends the player's part of the round.
    Win { player: PlayerId, currency: String, amount: Decimal, game: RoundRef, closing: bool },
    /// A stake given back (a rollback names its bet; a voided round does not).
    StakeReturned { player: PlayerId, currency: String, amount: Decimal, game: RoundRef, bet: Option<String> },
    /// A player's part of a round ended (`won` is everything the round paid them).
    PartEnded { player: PlayerId, currency: String, game: RoundRef, won: Decimal },
}

/// The round a stake is placed in, and its game.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Game {
    pub round: RoundRef,
    /// The provider's game id (`wallet-api` when the wallet API took it).
    pub game_id: String,
}

/// A round by its provider.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct RoundRef {
    pub provider: String,
    pub round: String,
}

/// An event, read: its name, time and facts.
#[derive(Debug)]
pub struct Read {
    pub event: String,
    pub ts: chrono::DateTime<chrono::Utc>,
    pub facts: Vec<Fact>,
}

#[derive(Debug, thiserror::Error)]
#[error("event `{event}` does not read: {why}")]
pub struct Unreadable {
    pub event: String,
    pub why: String,
}

fn payload<T: serde::de::DeserializeOwned>(event: &str, value: serde_json::Value) -> Result<T, Unreadable> {
    serde_json::from_value(value).map_err(|e| Unreadable { event: event.to_owned(), why: e.to_string() })
}

/// Just the envelope's name and time (cheap: the payload is not read).
pub fn head(text: &str) -> Result<(String, chrono::DateTime<chrono::Utc>), Unreadable> {
    #[derive(serde::Deserialize)]
    struct Head {
        event: String,
        ts: chrono::DateTime<chrono::Utc>,
    }
    let head: Head = serde_json::from_str(text).map_err(|e| Unreadable { event: "?".into(), why: e.to_string() })?;
    Ok((head.event, head.ts))
}

/// Reads one chained event's text into facts.
pub fn read(text: &str) -> Result<Read, Unreadable> {
    use contracts::{cashier, events as ev, gaming};
    let envelope: Envelope<serde_json::Value> =
        serde_json::from_str(text).map_err(|e| Unreadable { event: "?".into(), why: e.to_string() })?;
    let (name, ts) = (envelope.event.clone(), envelope.ts);
    let p = envelope.payload;
    let wallet_api = |round: &contracts::RoundId| RoundRef { provider: "wallet-api".into(), round: round.to_string() };
    let facts = match name.as_str() {
        "payment.confirmed" => {
            let e: cashier::PaymentConfirmed = payload(&name, p)?;
            vec![Fact::Deposit {
                player: e.player_id,
                currency: e.currency.code().into(),
                amount: e.amount.0,
                method: e.psp,
            }]
        }
        "payout.paid" => {
            let e: cashier::PayoutPaid = payload(&name, p)?;
            vec![Fact::Withdrawal {
                player: e.player_id,
                currency: e.currency.code().into(),
                amount: e.amount.0,
                method: e.psp,
            }]
        }
        "chargeback.received" => {
            let e: cashier::ChargebackReceived = payload(&name, p)?;
            let amount = -e.amount.0;
            vec![Fact::Other { player: e.player_id, currency: e.currency.code().into(), amount, concept: "chargeback" }]
        }
        "payment.refunded" => {
            let e: cashier::PaymentRefunded = payload(&name, p)?;
            // A refund of a capture the ledger refused never reached the player's balance.
            match e.entry_id {
                Some(_) => vec![Fact::Other {
                    player: e.player_id,
                    currency: e.currency.code().into(),
                    amount: -e.amount.0,
                    concept: "deposit refunded",
                }],
                None => Vec::new(),
            }
        }
        "wallet.credited" | "wallet.debited" => {
            let e: ev::WalletCredited = payload(&name, p)?;
            let (player, currency, amount) = (e.player_id, e.currency.code().to_owned(), e.amount.0);
            let credit = name == "wallet.credited";
            use contracts::wallet::MovementReason as R;
            vec![match (credit, e.reason) {
                // As the journal books them: a credit that is no adjustment or correction is a
                // deposit, a debit a withdrawal, whatever reason it gave.
                (_, R::Adjustment | R::Correction) => Fact::Other {
                    player,
                    currency,
                    amount: if credit { amount } else { -amount },
                    concept: "adjustment",
                },
                (true, _) => Fact::Deposit { player, currency, amount, method: "back-office".into() },
                (false, _) => Fact::Withdrawal { player, currency, amount, method: "back-office".into() },
            }]
        }
        "bet.placed" => {
            let e: gaming::BetPlaced = payload(&name, p)?;
            let round = RoundRef { provider: e.provider, round: e.round_id.to_string() };
            vec![Fact::Stake {
                player: e.player_id,
                currency: e.currency.code().into(),
                amount: e.amount.0,
                game: Game { round, game_id: e.game_id },
                bet: e.bet_id.to_string(),
            }]
        }
        "bet.won" => {
            let e: gaming::BetWon = payload(&name, p)?;
            let game = RoundRef { provider: e.provider, round: e.round_id.to_string() };
            vec![Fact::Win {
                player: e.player_id,
                currency: e.currency.code().into(),
                amount: e.amount.0,
                game,
                closing: false,
            }]
        }
        "bet.rolled_back" => {
            let e: gaming::BetRolledBack = payload(&name, p)?;
            let game = RoundRef { provider: e.provider, round: e.round_id.to_string() };
            vec![Fact::StakeReturned {
                player: e.player_id,
                currency: e.currency.code().into(),
                amount: e.amount.0,
                game,
                bet: Some(e.bet_id.to_string()),
            }]
        }
        "round.settled" => {
            let e: gaming::RoundSettled = payload(&name, p)?;
            let game = RoundRef { provider: e.provider, round: e.round_id.to_string() };
            let mut facts = Vec::new();
            for part in e.parts {
                let currency = part.currency.code().to_owned();
                if !part.refunded.0.is_zero() {
                    facts.push(Fact::StakeReturned {
                        player: part.player_id.clone(),
                        currency: currency.clone(),
                        amount: part.refunded.0,
                        game: game.clone(),
                        bet: None,
                    });
                }
                facts.push(Fact::PartEnded { player: part.player_id, currency, game: game.clone(), won: part.won.0 });
            }
            facts
        }
        "wallet.hold" => {
            let e: ev::WalletHold = payload(&name, p)?;
            vec![Fact::Stake {
                player: e.player_id,
                currency: e.currency.code().into(),
                amount: e.amount.0,
                game: Game { round: wallet_api(&e.round_id), game_id: "wallet-api".into() },
                bet: e.bet_id.to_string(),
            }]
        }
        "wallet.settled" => {
            let e: ev::WalletSettled = payload(&name, p)?;
            let game = wallet_api(&e.round_id);
            let mut facts = Vec::new();
            for part in e.parts {
                let currency = part.currency.code().to_owned();
                facts.push(Fact::Win {
                    player: part.player_id,
                    currency,
                    amount: part.payout.0,
                    game: game.clone(),
                    closing: true,
                });
            }
            facts
        }
        _ => Vec::new(),
    };
    Ok(Read { event: name, ts, facts })
}
