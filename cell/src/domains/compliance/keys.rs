//! Key layout of the compliance subspace.

use crate::store::subspaces;

pub fn idempotency(key: &str) -> Vec<u8> {
    crate::idempotency::key_in(&subspaces::compliance(), key)
}

/// A player's personal data (`contracts::players::PlayerProfile`): only in the home cell.
pub fn profile(player: &str) -> Vec<u8> {
    subspaces::compliance().pack(&("profile", player))
}

/// Every player's personal data.
pub fn profiles() -> (Vec<u8>, Vec<u8>) {
    subspaces::compliance().subspace(&("profile",)).range()
}

/// The player a [`profile`] key is of.
pub fn profile_player(key: &[u8]) -> Option<contracts::PlayerId> {
    let (kind, player): (String, String) = subspaces::compliance().unpack(key).ok()?;
    (kind == "profile").then(|| contracts::PlayerId::new(player).ok()).flatten()
}

/// The version of the sanctions list every player was last screened against.
pub fn sanctions_screened() -> Vec<u8> {
    subspaces::compliance().pack(&("sanctions-screened",))
}

/// The last answer of the self-exclusion register about a player, and when.
pub fn exclusion_answer(player: &str) -> Vec<u8> {
    subspaces::compliance().pack(&("exclusion-answer", player))
}

/// One compliance decision about a player, in time order (`seq` tells apart two in one microsecond).
pub fn decision(player: &str, at_us: i64, seq: u64) -> Vec<u8> {
    subspaces::compliance().pack(&("decision", player, at_us, seq))
}

/// Every decision about a player.
pub fn decisions(player: &str) -> (Vec<u8>, Vec<u8>) {
    subspaces::compliance().subspace(&("decision", player)).range()
}

/// An AML case by id.
pub fn case(id: &str) -> Vec<u8> {
    subspaces::compliance().pack(&("case", id))
}

/// Every AML case.
pub fn cases() -> (Vec<u8>, Vec<u8>) {
    subspaces::compliance().subspace(&("case",)).range()
}

/// An AML alert written outside the writer (at registration) waiting to be appended to the audit
/// chain by the writer.
pub fn alert_to_chain(case: &str) -> Vec<u8> {
    subspaces::compliance().pack(&("alert-to-chain", case))
}

/// Every alert waiting for the chain.
pub fn alerts_to_chain() -> (Vec<u8>, Vec<u8>) {
    subspaces::compliance().subspace(&("alert-to-chain",)).range()
}
