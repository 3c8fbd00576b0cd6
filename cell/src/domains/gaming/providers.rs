//! Provider configuration: one file per provider under `config/providers/`, naming its dialect,
//! the environment variable holding its secret, its initial state, its round timeout, its
//! duplicate policy and its games.

use serde::Deserialize;
use std::path::{Path, PathBuf};

/// A provider's wire dialect: one adapter each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Dialect {
    #[serde(rename = "seamless-v1")]
    SeamlessV1,
    #[serde(rename = "pulse")]
    Pulse,
}

impl Dialect {
    pub fn name(self) -> &'static str {
        match self {
            Dialect::SeamlessV1 => "seamless-v1",
            Dialect::Pulse => "pulse",
        }
    }
}

/// What a repeated transaction id with the same body gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DuplicatePolicy {
    /// The original answer again (it moved money once).
    Replay,
    /// The dialect's duplicate error (it moved money once).
    Error,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InitialState {
    Enabled,
    Maintenance,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Game {
    pub id: String,
    /// The product, as region rules name it (`slots`, `live`, `table`...): a closed set, so a
    /// typo is refused at load with the allowed values rather than escaping every stake rule.
    #[serde(rename = "type")]
    pub kind: contracts::catalog::GameType,
    /// The most one bet can win, as a multiple of its stake, as the game's certificate states it
    /// (a decimal string, `"5000"`). When given, a provider's wins past it are refused
    /// (`WIN_LIMIT_EXCEEDED`); else a win is bounded by the currency's maximum amount alone.
    #[serde(default)]
    pub max_multiplier: Option<contracts::catalog::Multiplier>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderFile {
    pub id: String,
    pub dialect: Dialect,
    pub secret_env: String,
    pub state: InitialState,
    pub round_timeout_seconds: u64,
    pub duplicates: DuplicatePolicy,
    #[serde(default)]
    pub games: Vec<Game>,
}

/// A provider ready to serve: its file, and its secret when the environment had it.
#[derive(Debug, Clone)]
pub struct Provider {
    pub config: ProviderFile,
    /// `None` when the environment variable is unset: every call is refused until it is set.
    pub secret: Option<Vec<u8>>,
}

impl Provider {
    /// The product of `game` for stake rules. A game the file does not list counts as `slots`,
    /// the most restricted product, so an unlisted game can never escape a slot stake limit.
    pub fn product_of(&self, game: &str) -> contracts::catalog::GameType {
        self.config.games.iter().find(|g| g.id == game).map_or(contracts::catalog::GameType::Slots, |g| g.kind)
    }

    /// The maximum multiplier of `game`, if its file gives one.
    pub fn max_multiplier_of(&self, game: &str) -> Option<contracts::catalog::Multiplier> {
        self.config.games.iter().find(|g| g.id == game).and_then(|g| g.max_multiplier)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("provider file {path}: {problem}")]
pub struct ProviderFileError {
    pub path: PathBuf,
    pub problem: String,
}

/// Loads every `*.toml` under `dir`, sorted by file name, with each secret from the environment
/// variable its file names.
pub fn load_dir(dir: &Path) -> Result<Vec<Provider>, ProviderFileError> {
    load_dir_with(dir, |name| std::env::var(name).ok())
}

/// Loads every `*.toml` under `dir`, sorted by file name, with each secret from `secret_of(the
/// variable its file names)`. Provider ids must be unique, 1 to 32 lower-case letters, digits or `-`.
pub fn load_dir_with(
    dir: &Path,
    secret_of: impl Fn(&str) -> Option<String>,
) -> Result<Vec<Provider>, ProviderFileError> {
    let fail = |path: &Path, problem: String| ProviderFileError { path: path.to_owned(), problem };
    let files = crate::config_dir::toml_files::<ProviderFile>(dir).map_err(|(path, problem)| fail(&path, problem))?;
    let mut providers: Vec<Provider> = Vec::new();
    for (path, config) in files {
        if !crate::config_dir::valid_id(&config.id) {
            return Err(fail(&path, format!("id `{}`: use 1 to 32 of a-z 0-9 -", config.id)));
        }
        if providers.iter().any(|p| p.config.id == config.id) {
            return Err(fail(&path, format!("id `{}` is used by another provider file", config.id)));
        }
        if config.round_timeout_seconds == 0 {
            return Err(fail(&path, "round_timeout_seconds must be at least 1".into()));
        }
        let secret = secret_of(&config.secret_env).filter(|s| !s.is_empty()).map(String::into_bytes);
        if secret.is_none() {
            tracing::error!(provider = %config.id, env = %config.secret_env, "provider secret not set: its calls are refused");
        } else {
            let maintenance = config.state == InitialState::Maintenance;
            tracing::info!(provider = %config.id, dialect = %config.dialect.name(), maintenance, "provider loaded");
        }
        providers.push(Provider { config, secret });
    }
    Ok(providers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_product_typo_is_refused_at_load_with_the_allowed_values() {
        let dir = tempfile::tempdir().unwrap();
        let file = "id = \"p\"\ndialect = \"pulse\"\nsecret_env = \"X\"\nstate = \"enabled\"\n\
                    round_timeout_seconds = 5\nduplicates = \"replay\"\n\n[[games]]\nid = \"g\"\ntype = \"slot\"\n";
        std::fs::write(dir.path().join("p.toml"), file).unwrap();
        let refused = load_dir_with(dir.path(), |_| Some("secret".into())).unwrap_err().to_string();
        assert!(refused.contains("p.toml") && refused.contains("type"), "names the file and field: {refused}");
        assert!(refused.contains("unknown variant `slot`") && refused.contains("`slots`"), "{refused}");
    }
}
