//! The books' checkpoints: what the books carry ([`Carry`]) at the end of each build, kept in
//! the vault's `.books` folder, so the next period's build folds the chain from there instead of
//! from its first record (a quarter of an hour's batch reads a quarter of an hour). A cache: a
//! checkpoint missing, unreadable, or not of this chain (its record's hash differs) is passed
//! over, and the build folds from the first record as it would without one.

use super::books::{Carry, SessionRule};
use crate::store::Store;
use std::path::{Path, PathBuf};

/// Checkpoints kept per session rule: the latest ones (a build resumes from the last one before
/// its period; an older period rebuilt by hand folds from the first record).
const KEPT: usize = 8;

pub struct Checkpoints {
    dir: PathBuf,
}

fn rule_name(rule: SessionRule) -> &'static str {
    match rule {
        SessionRule::None => "accounts",
        SessionRule::Daily => "daily-sessions",
        SessionRule::Idle => "idle-sessions",
    }
}

impl Checkpoints {
    pub fn new(data_dir: &Path) -> Checkpoints {
        Checkpoints { dir: data_dir.join("exports").join(".books") }
    }

    /// The checkpoints of `rule` on disk, by record: `(seq, path)`, oldest first.
    fn list(&self, rule: SessionRule) -> Vec<(u64, PathBuf)> {
        let prefix = format!("{}-", rule_name(rule));
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return Vec::new() };
        let mut found: Vec<(u64, PathBuf)> = entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let seq = name.strip_prefix(&prefix)?.strip_suffix(".msgpack")?.parse().ok()?;
                Some((seq, e.path()))
            })
            .collect();
        found.sort();
        found
    }

    /// The latest checkpoint of `rule` at or before record `seq` that belongs to this chain.
    pub fn latest(&self, store: &dyn Store, rule: SessionRule, seq: u64) -> Option<Carry> {
        let candidates = self.list(rule);
        for (at, path) in candidates.into_iter().rev().filter(|(at, _)| *at <= seq) {
            let carry = std::fs::read(&path).ok().and_then(|b| rmp_serde::from_slice::<Carry>(&b).ok());
            let chained = |c: &Carry| crate::audit::record(store, at).ok().flatten().is_some_and(|r| r.hash == c.hash);
            match carry {
                Some(c) if c.seq == at && c.rule == rule && chained(&c) => return Some(c),
                _ => {
                    tracing::warn!(path = %path.display(), "an export checkpoint does not fit this chain; passed over")
                }
            }
        }
        None
    }

    /// Keeps `carry` (written whole, then renamed), and drops all but the latest [`KEPT`]. A
    /// checkpoint that cannot be kept costs the next build time, never its result: logged.
    pub fn save(&self, carry: &Carry) {
        let name = format!("{}-{:020}.msgpack", rule_name(carry.rule), carry.seq);
        let path = self.dir.join(&name);
        if path.exists() {
            return;
        }
        let scratch = self.dir.join(format!(".{name}.{}", std::process::id()));
        let written = std::fs::create_dir_all(&self.dir)
            .and_then(|()| rmp_serde::to_vec(carry).map_err(std::io::Error::other))
            .and_then(|bytes| std::fs::write(&scratch, bytes))
            .and_then(|()| std::fs::rename(&scratch, &path));
        if let Err(e) = written {
            tracing::warn!(path = %path.display(), error = %e, "an export checkpoint was not kept");
            return;
        }
        // The latest ones stay, and the one just kept (a rebuild of an older period makes one
        // older than the rest: the next period's build resumes from it).
        let others: Vec<(u64, PathBuf)> =
            self.list(carry.rule).into_iter().filter(|(seq, _)| *seq != carry.seq).collect();
        for (_, old) in others.iter().take(others.len().saturating_sub(KEPT - 1)) {
            let _ = std::fs::remove_file(old);
        }
    }
}
