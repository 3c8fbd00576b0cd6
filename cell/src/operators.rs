//! Operator tokens as a cell checks them: signed by global-control with one of the keys the sync
//! brought (the catalog copy holds them), or, before this cell has ever synced, with the bootstrap
//! key copied into its data directory ([`contracts::operators::KEY_FILE`]). Once synced, the
//! bootstrap file is ignored: global-control decides which keys count.

use crate::domains::catalog::Catalog;
use anyhow::Context;
use contracts::operators::{OperatorClaims, OperatorKey};
use contracts::sessions::VerifiedTokens;
use std::path::Path;
use std::sync::Arc;

pub struct OperatorTokens {
    bootstrap: Option<OperatorKey>,
    catalog: Arc<Catalog>,
    verified: VerifiedTokens<OperatorClaims>,
}

impl OperatorTokens {
    /// Reads the bootstrap key from `data_dir`, if there is one. Blocking.
    pub fn open(data_dir: &Path, catalog: Arc<Catalog>) -> anyhow::Result<OperatorTokens> {
        let path = data_dir.join(contracts::operators::KEY_FILE);
        let bootstrap = match std::fs::read(&path) {
            Ok(bytes) => Some(
                serde_json::from_slice::<OperatorKey>(&bytes)
                    .with_context(|| format!("{} is not an operator key", path.display()))?,
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e).with_context(|| format!("read {}", path.display())),
        };
        if bootstrap.is_none() && catalog.operator_keys().is_none() {
            tracing::warn!(
                path = %path.display(),
                "no operator key yet: the back office refuses every operator token until the first sync \
                 (or copy global-control's operator-key.json here)"
            );
        }
        Ok(OperatorTokens { bootstrap, catalog, verified: VerifiedTokens::default() })
    }

    /// The claims of `token` if a key this cell trusts signed it and it has not expired (`now`,
    /// unix seconds). A token verified once is remembered by its hash until it expires.
    pub fn verify(&self, token: &str, now: i64) -> Result<OperatorClaims, &'static str> {
        self.verified.get_or_verify(token, now, || {
            let keys = self.catalog.operator_keys().unwrap_or_else(|| self.bootstrap.iter().cloned().collect());
            contracts::operators::verify(token, now, &keys)
        })
    }
}
