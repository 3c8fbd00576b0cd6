//! Identity: players' logins. A login checks the password against its argon2id hash and opens a
//! session: a 15-minute access token (signed by the cell, naming the session) and an opaque
//! refresh token, stored only as its SHA-256, that rotates on every use. Presenting a refresh
//! token a second time ends its session (its whole family of tokens): it can only mean that a
//! copy was stolen. Failed logins are throttled per player and per address, and every login and
//! failure is an event.
//!
//! Key layout of the identity subspace:
//! ```text
//! ("session", sid)          -> SessionRecord   who, since when, and whether it has ended
//! ("refresh", sha256 hex)   -> RefreshRecord   the session it continues, its expiry, whether used
//! ("totp", player)          -> [u8; 20]        the player's authenticator secret, once enrolled
//! ```

mod throttle;

use crate::clock::Clock;
use crate::events::{self, EventContext};
use crate::sessions::SessionSigner;
use crate::store::{subspaces, transact, transact_writes, Store, StoreError, Transaction};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use contracts::events::{PlayerLogin, PlayerLoginFailed};
use contracts::sessions::{SessionClaims, SessionResponse, SESSION_TTL_SECONDS};
use contracts::{CellCode, PlayerId};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::{Arc, Mutex};
pub use throttle::{Throttle, ADDRESS_FAILURES_MAX, FAILURE_WINDOW_SECONDS, PLAYER_FAILURES_MAX};

/// How long a refresh token may wait for its use: a player who comes back within it stays logged
/// in.
pub const REFRESH_TTL_SECONDS: i64 = 30 * 24 * 3600;

/// Why a login, a refresh or a token was refused.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The same answer whether the player exists or the password is wrong: ids do not leak.
    #[error("the player id or the password is wrong")]
    InvalidCredentials,
    #[error("too many failed logins; try again in {retry_after} s")]
    Throttled { retry_after: u64 },
    #[error("{0}")]
    InvalidSession(&'static str),
    #[error("this player has an authenticator: the login needs its current code (totp)")]
    TotpRequired,
    #[error("this player already has an authenticator")]
    TotpAlreadyEnrolled,
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

impl IdentityError {
    pub fn code(&self) -> CellCode {
        match self {
            IdentityError::InvalidCredentials => CellCode::InvalidCredentials,
            IdentityError::Throttled { .. } => CellCode::LoginThrottled,
            IdentityError::InvalidSession(_) => CellCode::InvalidSession,
            IdentityError::TotpRequired => CellCode::TotpRequired,
            IdentityError::TotpAlreadyEnrolled => CellCode::TotpAlreadyEnrolled,
            IdentityError::Store(e) => e.answer().0,
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            IdentityError::InvalidCredentials | IdentityError::InvalidSession(_) | IdentityError::TotpRequired => 401,
            IdentityError::TotpAlreadyEnrolled => 409,
            IdentityError::Throttled { .. } => 429,
            IdentityError::Store(e) => e.answer().1,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct SessionRecord {
    player: PlayerId,
    opened_at: i64,
    ended: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct RefreshRecord {
    sid: String,
    player: PlayerId,
    expires_at: i64,
    used: bool,
}

fn totp_key(player: &PlayerId) -> Vec<u8> {
    subspaces::identity().pack(&("totp", player.as_str()))
}

/// RFC 6238 as every authenticator app reads it: SHA-1, 6 digits, 30-second steps, one step of
/// clock skew either way.
fn totp(secret: Vec<u8>) -> totp_rs::TOTP {
    totp_rs::TOTP::new(totp_rs::Algorithm::SHA1, 6, 1, 30, secret).expect("a 160-bit secret and 6 digits are valid")
}

fn session_key(sid: &str) -> Vec<u8> {
    subspaces::identity().pack(&("session", sid))
}

fn refresh_key(token: &str) -> Vec<u8> {
    subspaces::identity().pack(&("refresh", hex::encode(Sha256::digest(token.as_bytes()))))
}

fn read<T: for<'de> Deserialize<'de>>(tx: &mut dyn Transaction, key: &[u8]) -> Result<Option<T>, StoreError> {
    match tx.get(key)? {
        Some(bytes) => rmp_serde::from_slice(&bytes).map(Some).map_err(|e| StoreError::corrupt(key, e)),
        None => Ok(None),
    }
}

fn write<T: Serialize>(tx: &mut dyn Transaction, key: &[u8], value: &T) -> Result<(), StoreError> {
    tx.set(key, &rmp_serde::to_vec(value).expect("an identity record encodes"))
}

/// The identity domain of one cell.
pub struct Identity {
    store: Arc<dyn Store>,
    signer: Arc<SessionSigner>,
    clock: Arc<dyn Clock>,
    cell: String,
    throttle: Mutex<Throttle>,
}

impl Identity {
    pub fn new(store: Arc<dyn Store>, signer: Arc<SessionSigner>, clock: Arc<dyn Clock>, cell: &str) -> Identity {
        Identity { store, signer, clock, cell: cell.to_owned(), throttle: Mutex::new(Throttle::default()) }
    }

    fn throttle(&self) -> std::sync::MutexGuard<'_, Throttle> {
        self.throttle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Logs `player` in with `password`, from `address` when known. Blocking (the password hash
    /// takes tens of milliseconds on purpose).
    pub fn login(
        &self,
        player: &PlayerId,
        password: &str,
        code: Option<&str>,
        address: Option<&str>,
        ctx: &EventContext,
    ) -> Result<SessionResponse, IdentityError> {
        let now = self.clock.now();
        let at = now.timestamp();
        if let Some(retry_after) = self.throttle().refused(player.as_str(), address, at) {
            self.failed(player, address, CellCode::LoginThrottled, ctx)?;
            return Err(IdentityError::Throttled { retry_after });
        }
        let (stored, second_factor) = {
            let mut tx = self.store.begin()?;
            (crate::players::credential(tx.as_mut(), player)?, tx.get(&totp_key(player))?)
        };
        let mut verified = crate::credentials::verify(stored.as_deref(), password);
        if let (true, Some(secret)) = (verified, second_factor) {
            let Some(code) = code else { return Err(IdentityError::TotpRequired) };
            let now = u64::try_from(at).unwrap_or(0);
            verified = totp(secret).check(code, now);
        }
        if !verified {
            self.throttle().failed(player.as_str(), address, at);
            self.failed(player, address, CellCode::InvalidCredentials, ctx)?;
            return Err(IdentityError::InvalidCredentials);
        }
        self.throttle().succeeded(player.as_str());
        let sid = hex::encode(rand::random::<[u8; 16]>());
        let refresh = self.new_refresh_token();
        let login =
            PlayerLogin { player_id: player.clone(), session_id: sid.clone(), address: address.map(str::to_owned) };
        let event = events::encode(&events::envelope(ctx, login, now));
        transact_writes(self.store.as_ref(), |tx| {
            write(tx, &session_key(&sid), &SessionRecord { player: player.clone(), opened_at: at, ended: false })?;
            let record = RefreshRecord {
                sid: sid.clone(),
                player: player.clone(),
                expires_at: at + REFRESH_TTL_SECONDS,
                used: false,
            };
            write(tx, &refresh_key(&refresh), &record)?;
            events::append(tx, 0, &event)
        })?;
        tracing::info!(session = %sid, "player logged in");
        Ok(self.tokens(player, &sid, refresh, at))
    }

    fn failed(
        &self,
        player: &PlayerId,
        address: Option<&str>,
        reason: CellCode,
        ctx: &EventContext,
    ) -> Result<(), StoreError> {
        let failed = PlayerLoginFailed {
            player_id: player.clone(),
            address: address.map(str::to_owned),
            reason: reason.to_string(),
        };
        let event = events::encode(&events::envelope(ctx, failed, self.clock.now()));
        transact_writes(self.store.as_ref(), |tx| events::append(tx, 0, &event))
    }

    /// An opaque refresh token: the cell's id (so the router can route it home), then 256 random
    /// bits.
    fn new_refresh_token(&self) -> String {
        format!("{}.{}", self.cell, B64.encode(rand::random::<[u8; 32]>()))
    }

    fn tokens(&self, player: &PlayerId, sid: &str, refresh: String, at: i64) -> SessionResponse {
        let (access, _) = self.signer.issue(player, sid, at);
        SessionResponse {
            access_token: access,
            refresh_token: refresh,
            expires_in: SESSION_TTL_SECONDS,
            cell: self.cell.clone(),
        }
    }

    /// A new pair for a refresh token, used once. A token presented again ends its session.
    /// Blocking.
    pub fn refresh(&self, token: &str) -> Result<SessionResponse, IdentityError> {
        let at = self.clock.now().timestamp();
        let next = self.new_refresh_token();
        let outcome = transact(self.store.as_ref(), |tx| {
            let Some(mut record) = read::<RefreshRecord>(tx, &refresh_key(token))? else {
                return Ok(Err("unknown refresh token"));
            };
            let session_at = session_key(&record.sid);
            let Some(mut session) = read::<SessionRecord>(tx, &session_at)? else {
                return Ok(Err("unknown session"));
            };
            if session.ended {
                return Ok(Err("the session has ended"));
            }
            if record.used {
                // Only a copy can be presented twice: end the session, whoever holds it.
                session.ended = true;
                write(tx, &session_at, &session)?;
                return Ok(Ok(None));
            }
            if record.expires_at <= at {
                return Ok(Err("the refresh token has expired"));
            }
            record.used = true;
            write(tx, &refresh_key(token), &record)?;
            let fresh = RefreshRecord {
                sid: record.sid.clone(),
                player: record.player.clone(),
                expires_at: at + REFRESH_TTL_SECONDS,
                used: false,
            };
            write(tx, &refresh_key(&next), &fresh)?;
            Ok(Ok(Some((record.player, record.sid))))
        })?;
        match outcome {
            Ok(Some((player, sid))) => Ok(self.tokens(&player, &sid, next, at)),
            Ok(None) => {
                tracing::warn!("a refresh token was used twice: its session is ended");
                Err(IdentityError::InvalidSession("the refresh token was already used: the session is ended"))
            }
            Err(why) => Err(IdentityError::InvalidSession(why)),
        }
    }

    /// The claims of a bearer token for a session that has not ended. Blocking.
    pub fn verify(&self, token: &str) -> Result<SessionClaims, IdentityError> {
        let claims = self.signer.verify(token, self.clock.now().timestamp()).map_err(IdentityError::InvalidSession)?;
        let mut tx = self.store.begin()?;
        match read::<SessionRecord>(tx.as_mut(), &session_key(&claims.sid))? {
            Some(session) if !session.ended && session.player == claims.sub => Ok(claims),
            Some(_) => Err(IdentityError::InvalidSession("the session has ended")),
            None => Err(IdentityError::InvalidSession("unknown session")),
        }
    }

    /// Enrols an authenticator for the session's player: from then on a login needs its code.
    /// Refused when one is enrolled already (replacing it would let a stolen session remove the
    /// second factor). Blocking.
    pub fn enrol_totp(&self, claims: &SessionClaims) -> Result<contracts::sessions::TotpEnrolment, IdentityError> {
        let secret = rand::random::<[u8; 20]>().to_vec();
        let at = totp_key(&claims.sub);
        let enrolled = transact(self.store.as_ref(), |tx| {
            if tx.get(&at)?.is_some() {
                return Ok(Err(IdentityError::TotpAlreadyEnrolled));
            }
            tx.set(&at, &secret)?;
            Ok(Ok(()))
        })?;
        enrolled?;
        let base32 = totp(secret).get_secret_base32();
        let issuer = format!("casino-{}", self.cell);
        let otpauth_url = format!(
            "otpauth://totp/{issuer}:{}?secret={base32}&issuer={issuer}&algorithm=SHA1&digits=6&period=30",
            claims.sub
        );
        tracing::info!(session = %claims.sid, "authenticator enrolled");
        Ok(contracts::sessions::TotpEnrolment { secret: base32, otpauth_url })
    }

    /// Ends the session `claims` name: its refresh tokens and its access tokens stop working.
    /// Blocking.
    pub fn logout(&self, claims: &SessionClaims) -> Result<(), IdentityError> {
        transact_writes(self.store.as_ref(), |tx| {
            let at = session_key(&claims.sid);
            if let Some(mut session) = read::<SessionRecord>(tx, &at)? {
                session.ended = true;
                write(tx, &at, &session)?;
            }
            Ok(())
        })?;
        Ok(())
    }
}
