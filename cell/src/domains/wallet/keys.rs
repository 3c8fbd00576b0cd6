//! Key layout of the wallet domain's records, in the wallet subspace beside the ledger's (where
//! every existing store has them).
//!
//! ```text
//! ("round", round) -> RoundState   a round's open holds, and whether it settled
//! ```

use crate::store::subspaces;
use contracts::RoundId;

pub fn round(round: &RoundId) -> Vec<u8> {
    subspaces::wallet().pack(&("round", round.as_str()))
}
