//! Operator tokens: global-control's Ed25519 key signs short-lived tokens for one role
//! (`POST /operator-tokens`); cells verify them with the public key, which reaches them as a
//! change over the sync (so it is versioned, audited and survives restarts like any synced state)
//! and, for a cell that has never synced, from a bootstrap file copied into its data directory.

use crate::error::ControlError;
use crate::store::ControlStore;
use anyhow::Context;
use contracts::changes::Change;
use contracts::operators::OperatorKey;
use std::path::Path;

/// The private key, in the data directory (created on first start, owner-only).
pub const SIGNING_KEY_FILE: &str = "operator-signing.key";
/// The public key, written beside it at every start: copy it into a cell's data directory (same
/// name) so the cell accepts operator tokens before it first syncs.
pub use contracts::operators::KEY_FILE as PUBLIC_KEY_FILE;

/// Loads (or creates) the signing key, makes sure the synced state carries its public half, and
/// writes the public key file. Blocking.
pub fn open(store: &ControlStore, data_dir: &Path) -> anyhow::Result<ed25519_dalek::SigningKey> {
    let key = ed25519_dalek::SigningKey::from_bytes(&crate::server::secret_file(data_dir, SIGNING_KEY_FILE)?);
    let public = OperatorKey::of(&key);
    if store.read(|s| s.operator_keys.get(&public.id) != Some(&public)) {
        let put = Change::OperatorKeyPut { key: public.clone() };
        store
            .commit("global-control (startup)", "the key operator tokens are signed with", |_, _, _| {
                Ok::<_, ControlError>(vec![put])
            })
            .context("record the operator-token key")?;
        tracing::info!(key = %public.id, "operator-token key published to the cells");
    }
    let path = data_dir.join(PUBLIC_KEY_FILE);
    let temporary = data_dir.join(format!("{PUBLIC_KEY_FILE}.tmp"));
    std::fs::write(&temporary, serde_json::to_vec_pretty(&public)?)
        .and_then(|()| std::fs::rename(&temporary, &path))
        .with_context(|| format!("write {}", path.display()))?;
    Ok(key)
}
