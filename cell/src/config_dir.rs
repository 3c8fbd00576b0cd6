//! A directory of TOML files, one per partner (game providers, PSPs): read in file-name order,
//! each parsed, and the id rule they share.

use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};

/// Every `*.toml` file of `dir`, sorted by file name, parsed as `T`; or the first file (or the
/// directory) that could not be, and why.
pub fn toml_files<T: DeserializeOwned>(dir: &Path) -> Result<Vec<(PathBuf, T)>, (PathBuf, String)> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| (dir.to_owned(), format!("cannot read the directory: {e}")))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    let mut files = Vec::with_capacity(paths.len());
    for path in paths {
        let text = std::fs::read_to_string(&path).map_err(|e| (path.clone(), format!("cannot read: {e}")))?;
        let parsed = toml::from_str(&text).map_err(|e| (path.clone(), e.to_string()))?;
        files.push((path, parsed));
    }
    Ok(files)
}

/// A partner id: 1 to 32 of `a-z`, `0-9` and `-`.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 32 && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}
