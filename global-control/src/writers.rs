//! Who writes for each cell: the control plane's record of each cell's writer, its epoch and the
//! store writing at it, which confirms a replicated primary's lease (docs/replication.md). A
//! higher epoch replaces the record (a promotion) and the old one is refused from then on
//! (`SUPERSEDED`: that cell fences itself); another store at the recorded epoch is refused
//! (`DOUBLE_PRIMARY`). Kept in `writers.json`, written whole and synced before an answer that
//! changed it: a restarted control plane never confirms an epoch it had seen superseded.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Writer {
    pub epoch: u64,
    /// The writing store's id (`<data>/writer-id` in the cell).
    pub writer: String,
    /// When this epoch was first confirmed.
    pub since: DateTime<Utc>,
}

#[derive(Debug)]
pub struct Writers {
    path: PathBuf,
    cells: Mutex<BTreeMap<String, Writer>>,
}

impl Writers {
    /// The record in `data_dir/writers.json`. One that does not read stops the start: guessing
    /// could confirm a deposed writer.
    pub fn open(data_dir: &Path) -> anyhow::Result<Writers> {
        use anyhow::Context;
        let path = data_dir.join("writers.json");
        let cells = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| {
                format!("{} does not read; it records which store writes for each cell", path.display())
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(e).with_context(|| format!("read {}", path.display())),
        };
        Ok(Writers { path, cells: Mutex::new(cells) })
    }

    /// Every cell's writer, for ops.
    pub fn all(&self) -> BTreeMap<String, Writer> {
        self.cells.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn save(&self, cells: &BTreeMap<String, Writer>) -> std::io::Result<()> {
        crate::replace_file(&self.path, &serde_json::to_vec_pretty(cells).map_err(std::io::Error::other)?)
    }
}

impl replication::sync::Arbiter for Writers {
    fn confirm(&self, cell: &str, epoch: u64, writer: &str) -> Result<bool, (String, String, u64)> {
        let mut cells = self.cells.lock().unwrap_or_else(|p| p.into_inner());
        let raised = match cells.get(cell) {
            Some(w) if epoch < w.epoch => {
                let why = format!("epoch {} writes for {cell} since {}: epoch {epoch} was deposed", w.epoch, w.since);
                return Err(("SUPERSEDED".into(), why, w.epoch));
            }
            Some(w) if epoch == w.epoch && w.writer != writer => {
                let why = format!("another store ({}) writes for {cell} at epoch {epoch}", w.writer);
                return Err(("DOUBLE_PRIMARY".into(), why, w.epoch));
            }
            Some(w) if epoch == w.epoch => return Ok(false),
            // A higher epoch: a promotion.
            Some(_) => true,
            // Never heard of: a first writer at epoch 1 has no predecessor; a promoted one may.
            None => epoch > 1,
        };
        let mut changed = cells.clone();
        changed.insert(cell.to_owned(), Writer { epoch, writer: writer.to_owned(), since: Utc::now() });
        if let Err(e) = self.save(&changed) {
            return Err(("UNAVAILABLE".into(), format!("the writers' record is not saved: {e}"), 0));
        }
        *cells = changed;
        tracing::warn!(cell, epoch, writer, "a new writer recorded: the epoch before it is refused from now on");
        Ok(raised)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use replication::sync::Arbiter;

    #[test]
    fn a_higher_epoch_supersedes_and_survives_a_restart_and_two_stores_at_one_epoch_do_not_both_write() {
        let dir = tempfile::tempdir().unwrap();
        let writers = Writers::open(dir.path()).unwrap();
        assert_eq!(writers.confirm("uk", 1, "a"), Ok(false), "a first writer at epoch 1 waits for nobody");
        assert_eq!(writers.confirm("uk", 1, "a"), Ok(false));
        assert_eq!(writers.confirm("uk", 1, "b").unwrap_err().0, "DOUBLE_PRIMARY");
        assert_eq!(writers.confirm("uk", 2, "b"), Ok(true), "promoted: it waits out epoch 1's lease");
        let refused = writers.confirm("uk", 1, "a").unwrap_err();
        assert_eq!((refused.0.as_str(), refused.2), ("SUPERSEDED", 2));
        let reopened = Writers::open(dir.path()).unwrap();
        assert_eq!(reopened.confirm("uk", 1, "a").unwrap_err().0, "SUPERSEDED", "remembered across a restart");
        assert_eq!(reopened.confirm("uk", 2, "b"), Ok(false));
        assert_eq!(reopened.confirm("es", 3, "c"), Ok(true), "never heard of at epoch 3: a promotion");
        std::fs::write(dir.path().join("writers.json"), b"{").unwrap();
        assert!(Writers::open(dir.path()).is_err(), "an unreadable record stops the start");
    }
}
