//! The adapter boundary: each provider dialect parses and authenticates its calls into one
//! [`Operation`], and renders the domain's [`Reply`] back in its own shape. Dialects are wire
//! formats, so an adapter sees the request's headers and chooses its answer's status code; nothing
//! past this boundary knows which dialect a call came in.

// Dialects convert between integer minor units and decimals: an operator that overflows would
// panic a handler after the money moved. Conversions go through `Currency::to_minor`/`from_minor`.
#![deny(clippy::arithmetic_side_effects)]

use super::providers::{Dialect, DuplicatePolicy};
use axum::http::HeaderMap;
use chrono::{DateTime, Utc};
use contracts::gaming::{self, PulseResponse, SeamlessResponse};
use contracts::CellCode;
use contracts::{BetId, Currency, ErrorBody, PlayerId, RoundId, TransactionId};
use hmac::{Hmac, Mac};
use rust_decimal::Decimal;
use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::Sha256;

/// How far a request's timestamp may be from the cell's clock.
pub const TIMESTAMP_SKEW_SECONDS_MAX: i64 = 300;

/// A provider call, normalised: what every dialect turns into. Amounts are the dialect's, already
/// in major units; the domain checks them against the currency.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "op", rename_all = "camelCase")]
pub enum Operation {
    Bet {
        transaction: TransactionId,
        player: PlayerId,
        round: RoundId,
        game: String,
        amount: Decimal,
        currency: String,
    },
    Win {
        transaction: TransactionId,
        player: PlayerId,
        round: RoundId,
        amount: Decimal,
        currency: String,
        close: bool,
    },
    /// Refund the bet placed by transaction `bet`.
    Rollback {
        transaction: TransactionId,
        player: PlayerId,
        round: RoundId,
        bet: BetId,
    },
    EndRound {
        player: PlayerId,
        round: RoundId,
    },
    Balance {
        player: PlayerId,
        currency: String,
    },
}

/// What the domain answers, before a dialect shapes it.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Done { body: SeamlessResponse, replayed: bool },
    Refused { status: u16, code: CellCode, message: String, replayed: bool },
}

impl Reply {
    pub fn refused(status: u16, code: CellCode, message: impl Into<String>) -> Reply {
        Reply::Refused { status, code, message: message.into(), replayed: false }
    }

    pub fn replayed(&self) -> bool {
        match self {
            Reply::Done { replayed, .. } | Reply::Refused { replayed, .. } => *replayed,
        }
    }
}

/// An answer in a dialect's shape.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub status: u16,
    pub body: Vec<u8>,
    pub replayed: bool,
}

pub fn parse(
    dialect: Dialect,
    call: &str,
    headers: &HeaderMap,
    body: &[u8],
    secret: &[u8],
    now: DateTime<Utc>,
) -> Result<Operation, Reply> {
    let op = match dialect {
        Dialect::SeamlessV1 => seamless_v1::parse(call, headers, body, secret, now),
        Dialect::Pulse => pulse::parse(call, body, secret, now),
    }?;
    Ok(op.at_currency_scale())
}

impl Operation {
    /// The operation with each amount written at its currency's scale when it was written with
    /// fewer places ("1" or "1.0" for "1.00" in GBP): the same value, so a retry that writes the
    /// amount another way is the same request to the idempotency check, which fingerprints the
    /// operation. More places than the currency has are left for the wallet to refuse
    /// (`AMOUNT_SCALE`), and so is an unknown currency.
    fn at_currency_scale(mut self) -> Operation {
        if let Operation::Bet { amount, currency, .. } | Operation::Win { amount, currency, .. } = &mut self {
            if let Ok(currency) = contracts::Currency::from_code(currency) {
                if amount.scale() < currency.scale() {
                    amount.rescale(currency.scale());
                }
            }
        }
        self
    }
}

pub fn render(dialect: Dialect, reply: &Reply, duplicates: DuplicatePolicy) -> Rendered {
    // The error policy is for a repeated transaction that *moved money*: a repeated refusal is
    // answered as the refusal it was, or the provider would take it for "already done".
    let reply = match (reply, duplicates) {
        (Reply::Done { replayed: true, .. }, DuplicatePolicy::Error) => &Reply::Refused {
            status: 409,
            code: CellCode::DuplicateTransaction,
            message: "this transaction id was already processed; it moved money once".into(),
            replayed: true,
        },
        _ => reply,
    };
    let (status, body) = match dialect {
        Dialect::SeamlessV1 => seamless_v1::render(reply),
        Dialect::Pulse => pulse::render(reply),
    };
    Rendered { status, body, replayed: reply.replayed() }
}

fn hmac_sha256(secret: &[u8]) -> Hmac<Sha256> {
    Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length")
}

/// Parses a call's body straight into its type (one pass: this is the hot path of every round).
/// Every dialect's body type denies unknown fields, so serde's derive sees every key, and it
/// refuses a repeated one ("duplicate field"): answered as malformed JSON, as every route does
/// (`contracts::json`).
fn json<T: DeserializeOwned>(body: &[u8]) -> Result<T, Reply> {
    serde_json::from_slice(body).map_err(|e| match e.classify() {
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof | serde_json::error::Category::Io => {
            Reply::refused(400, CellCode::MalformedJson, format!("request body is not JSON: {e}"))
        }
        serde_json::error::Category::Data if e.to_string().starts_with("duplicate field") => {
            Reply::refused(400, CellCode::MalformedJson, format!("request body repeats a key: {e}"))
        }
        serde_json::error::Category::Data => Reply::refused(400, CellCode::InvalidRequest, e.to_string()),
    })
}

/// The platform's own protocol: JSON, decimal strings, `X-Timestamp` and `X-Signature:
/// sha256=<hex HMAC-SHA256 of "<timestamp>.<raw body>">`, refusals as HTTP status + `{code, message}`.
mod seamless_v1 {
    use super::*;
    use gaming::{SeamlessBalance, SeamlessBet, SeamlessRollback, SeamlessWin};

    pub fn parse(
        call: &str,
        headers: &HeaderMap,
        body: &[u8],
        secret: &[u8],
        now: DateTime<Utc>,
    ) -> Result<Operation, Reply> {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let bad = |m: &str| Reply::refused(401, CellCode::BadSignature, m);
        let timestamp = header("x-timestamp").ok_or_else(|| bad("X-Timestamp is missing"))?;
        let signature = header("x-signature")
            .and_then(|s| s.strip_prefix("sha256="))
            .and_then(|h| hex::decode(h).ok())
            .ok_or_else(|| bad("X-Signature must be sha256=<hex HMAC-SHA256>"))?;
        let mut mac = hmac_sha256(secret);
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.verify_slice(&signature).map_err(|_| bad("signature does not match the request"))?;
        let ts: i64 = timestamp
            .parse()
            .map_err(|_| Reply::refused(401, CellCode::StaleRequest, "X-Timestamp is not unix seconds"))?;
        if now.timestamp().abs_diff(ts) > TIMESTAMP_SKEW_SECONDS_MAX.unsigned_abs() {
            return Err(Reply::refused(
                401,
                CellCode::StaleRequest,
                format!("X-Timestamp is more than {TIMESTAMP_SKEW_SECONDS_MAX} s from the cell's clock"),
            ));
        }
        Ok(match call {
            "bet" => {
                let r: SeamlessBet = json(body)?;
                Operation::Bet {
                    transaction: r.transaction_id,
                    player: r.player_id,
                    round: r.round_id,
                    game: r.game_id,
                    amount: r.amount.0,
                    currency: r.currency,
                }
            }
            "win" => {
                let r: SeamlessWin = json(body)?;
                Operation::Win {
                    transaction: r.transaction_id,
                    player: r.player_id,
                    round: r.round_id,
                    amount: r.amount.0,
                    currency: r.currency,
                    close: r.close_round,
                }
            }
            "rollback" => {
                let r: SeamlessRollback = json(body)?;
                Operation::Rollback {
                    transaction: r.transaction_id,
                    player: r.player_id,
                    round: r.round_id,
                    bet: r.ref_transaction_id.bet(),
                }
            }
            "balance" => {
                let r: SeamlessBalance = json(body)?;
                Operation::Balance { player: r.player_id, currency: r.currency }
            }
            other => {
                return Err(Reply::refused(404, CellCode::UnknownCall, format!("seamless-v1 has no call `{other}`")));
            }
        })
    }

    pub fn render(reply: &Reply) -> (u16, Vec<u8>) {
        match reply {
            Reply::Done { body, .. } => (200, serde_json::to_vec(body).expect("serialises")),
            Reply::Refused { status, code, message, .. } => (
                *status,
                serde_json::to_vec(&ErrorBody { code: code.as_str().to_owned(), message: message.clone() })
                    .expect("serialises"),
            ),
        }
    }
}

/// `pulse`: an aggregator-style dialect. Calls `debit`, `credit`, `cancel`, `endRound`,
/// `getBalance`; integer minor units; the body's `hash` is the hex HMAC-SHA256 of every other
/// field as `name=value` sorted by name and joined with `&`; `timestamp` in unix milliseconds;
/// every answer HTTP 200 with `error` 0 or a numeric code, except a transient failure (503, retry).
mod pulse {
    use super::*;
    use gaming::{PulseCancel, PulseCredit, PulseDebit, PulseEndRound, PulseGetBalance};

    /// The dialect's numeric error codes.
    fn error_number(code: CellCode) -> u16 {
        match code {
            CellCode::InsufficientFunds => 1,
            CellCode::PlayerNotFound => 2,
            CellCode::StakeLimitExceeded
            | CellCode::WinLimitExceeded
            | CellCode::BalanceLimit
            | CellCode::BetRolledBack
            | CellCode::RoundAlreadySettled
            | CellCode::RoundVoided
            | CellCode::RoundFull
            | CellCode::BetAlreadySettled
            | CellCode::BetAlreadyHeld
            | CellCode::CurrencyMismatch
            | CellCode::PlayerMismatch => 3,
            CellCode::BadSignature => 5,
            CellCode::StaleRequest => 6,
            CellCode::DuplicateTransaction | CellCode::TransactionIdReused => 8,
            CellCode::BetNotFound => 9,
            CellCode::ProviderMaintenance | CellCode::ProviderNotConfigured => 10,
            CellCode::StoreUnavailable | CellCode::NotReady => 100,
            _ => 7, // bad parameters
        }
    }

    /// The canonical text the hash covers: scalar fields other than `hash`, sorted, `k=v&k=v`.
    fn canonical(fields: &serde_json::Map<String, serde_json::Value>) -> String {
        let mut pairs: Vec<(&String, String)> = fields
            .iter()
            .filter(|(k, _)| k.as_str() != "hash")
            .map(|(k, v)| (k, v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string())))
            .collect();
        pairs.sort();
        pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&")
    }

    /// Signs `fields` as a pulse provider does: used by the conformance kit and the benchmark.
    pub fn sign(fields: &serde_json::Map<String, serde_json::Value>, secret: &[u8]) -> String {
        let mut mac = hmac_sha256(secret);
        mac.update(canonical(fields).as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    fn major(minor: i64, currency: &str) -> Result<Decimal, Reply> {
        if minor < 0 {
            return Err(Reply::refused(400, CellCode::AmountNegative, "amountMinor must not be negative"));
        }
        let c =
            Currency::from_code(currency).map_err(|e| Reply::refused(400, CellCode::of_money(&e), e.to_string()))?;
        Ok(c.from_minor(minor))
    }

    pub fn parse(call: &str, body: &[u8], secret: &[u8], now: DateTime<Utc>) -> Result<Operation, Reply> {
        // Strict: the hash must cover the very fields the call is read from.
        let value = contracts::json::parse_strict(body)
            .map_err(|e| Reply::refused(400, CellCode::MalformedJson, format!("request body is not JSON: {e}")))?;
        let fields =
            value.as_object().ok_or_else(|| Reply::refused(400, CellCode::InvalidRequest, "body must be an object"))?;
        let given = fields
            .get("hash")
            .and_then(|h| h.as_str())
            .and_then(|h| hex::decode(h).ok())
            .ok_or_else(|| Reply::refused(401, CellCode::BadSignature, "hash is missing or not hex"))?;
        let mut mac = hmac_sha256(secret);
        mac.update(canonical(fields).as_bytes());
        mac.verify_slice(&given)
            .map_err(|_| Reply::refused(401, CellCode::BadSignature, "hash does not match the request"))?;
        let ts = fields
            .get("timestamp")
            .and_then(|t| t.as_i64())
            .ok_or_else(|| Reply::refused(401, CellCode::StaleRequest, "timestamp (unix milliseconds) is missing"))?;
        if now.timestamp_millis().abs_diff(ts) > TIMESTAMP_SKEW_SECONDS_MAX.unsigned_abs().saturating_mul(1000) {
            return Err(Reply::refused(
                401,
                CellCode::StaleRequest,
                format!("timestamp is more than {TIMESTAMP_SKEW_SECONDS_MAX} s from the cell's clock"),
            ));
        }
        Ok(match call {
            "debit" => {
                let r: PulseDebit = json(body)?;
                Operation::Bet {
                    amount: major(r.amount_minor, &r.currency_code)?,
                    transaction: r.tx_id,
                    player: r.customer_id,
                    round: r.round_ref,
                    game: r.game_ref,
                    currency: r.currency_code,
                }
            }
            "credit" => {
                let r: PulseCredit = json(body)?;
                Operation::Win {
                    amount: major(r.amount_minor, &r.currency_code)?,
                    transaction: r.tx_id,
                    player: r.customer_id,
                    round: r.round_ref,
                    currency: r.currency_code,
                    close: false,
                }
            }
            "cancel" => {
                let r: PulseCancel = json(body)?;
                Operation::Rollback {
                    transaction: r.tx_id,
                    player: r.customer_id,
                    round: r.round_ref,
                    bet: r.original_tx_id.bet(),
                }
            }
            "endRound" => {
                let r: PulseEndRound = json(body)?;
                Operation::EndRound { player: r.customer_id, round: r.round_ref }
            }
            "getBalance" => {
                let r: PulseGetBalance = json(body)?;
                Operation::Balance { player: r.customer_id, currency: r.currency_code }
            }
            other => return Err(Reply::refused(404, CellCode::UnknownCall, format!("pulse has no call `{other}`"))),
        })
    }

    pub fn render(reply: &Reply) -> (u16, Vec<u8>) {
        // A balance is at most `balance_max`, 10^12 minor units at most, so it always converts;
        // if one ever did not, the provider is told the cell failed (and retries), never a
        // rounded or wrapped balance.
        let unconvertible;
        let (reply, balance_minor) = match reply {
            Reply::Done { body, .. } => match body.currency.to_minor(body.balance.0) {
                Some(minor) => (reply, Some(minor)),
                None => {
                    unconvertible = Reply::refused(
                        500,
                        CellCode::InternalRefusal,
                        format!("balance {} {} is not whole minor units of i64", body.balance, body.currency),
                    );
                    (&unconvertible, None)
                }
            },
            Reply::Refused { .. } => (reply, None),
        };
        let (status, body) = match reply {
            Reply::Done { body, .. } => (
                200,
                PulseResponse {
                    error: 0,
                    description: "OK".into(),
                    tx_id: body.transaction_id.clone(),
                    balance_minor,
                    currency_code: Some(body.currency),
                    code: None,
                },
            ),
            Reply::Refused { code, message, .. } => {
                let error = error_number(*code);
                let http = match (error, code) {
                    (100, _) => 503, // transient: the provider retries
                    (_, CellCode::UnknownCall | CellCode::ProviderNotFound) => 404,
                    _ => 200,
                };
                (
                    http,
                    PulseResponse {
                        error,
                        description: message.clone(),
                        tx_id: None,
                        balance_minor: None,
                        currency_code: None,
                        code: Some(code.as_str().to_owned()),
                    },
                )
            }
        };
        (status, serde_json::to_vec(&body).expect("serialises"))
    }
}

pub use pulse::sign as pulse_sign;

/// Signs a `seamless-v1` request as a provider does: used by the conformance kit and the benchmark.
pub fn seamless_sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut mac = hmac_sha256(secret);
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}
