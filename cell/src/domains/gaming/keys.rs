//! Key layout of the gaming domain's records. Providers' rounds live in the wallet subspace beside
//! the ledger's records (where every existing store has them); providers' states in gaming's.
//!
//! ```text
//! wallet ("game", provider, round)                 -> GameRound      a provider's round: bets, tombstones, closed parts
//! wallet ("gopen", provider, open_since_us, round) -> ()             rounds with an open bet, oldest first (the sweeper's index)
//! gaming ("state", provider)                       -> ProviderState  maintenance set by ops, kept across restarts
//! ```

use crate::store::subspaces;
use contracts::RoundId;

pub fn game_round(provider: &str, round: &RoundId) -> Vec<u8> {
    subspaces::wallet().pack(&("game", provider, round.as_str()))
}

pub fn game_open(provider: &str, open_since_us: i64, round: &RoundId) -> Vec<u8> {
    subspaces::wallet().pack(&("gopen", provider, open_since_us, round.as_str()))
}

/// Index entries of `provider`'s rounds open since before `before_us`.
pub fn game_open_before(provider: &str, before_us: i64) -> (Vec<u8>, Vec<u8>) {
    let space = subspaces::wallet().subspace(&("gopen", provider));
    (space.range().0, space.pack(&(before_us,)))
}

pub fn provider_state(provider: &str) -> Vec<u8> {
    subspaces::gaming().pack(&("state", provider))
}
