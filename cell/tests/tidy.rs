//! Conventions checked as an ordinary test (rust-analyzer's `tidy`): a domain of the cell imports
//! no other domain. A domain may use `contracts`, the event log, the store, the money kernel's API
//! and its own modules; domains that need each other meet through the kernel (commands and gates),
//! never by a direct import, so a new money rule never means editing three domains.
//!
//! Today's imports between domains are listed below as debt: the money-kernel work removes them,
//! and the test fails both on a new import and on a listed one that is gone (so the list shrinks
//! as the debt is paid, and nothing is added to it silently).

use std::collections::BTreeSet;
use std::path::Path;

/// (from, to): imports that exist today and are to go with the money kernel (issue #21).
const KNOWN_DEBT: &[(&str, &str)] = &[
    // Gaming builds wallet commands, reads stake caps and the synced catalog.
    ("gaming", "wallet"),
    ("gaming", "compliance"),
    ("gaming", "catalog"),
];

/// Every `domains::<name>` a source text names, including in `domains::{a, b}` lists.
fn domains_named(text: &str) -> BTreeSet<String> {
    let mut named = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("domains::") {
        rest = &rest[at + "domains::".len()..];
        if let Some(list) = rest.strip_prefix('{') {
            let end = list.find('}').unwrap_or(list.len());
            for item in list[..end].split(',') {
                let name: String = item.trim().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                if !name.is_empty() {
                    named.insert(name);
                }
            }
        } else {
            let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            if !name.is_empty() {
                named.insert(name);
            }
        }
    }
    named
}

fn rust_files(dir: &Path, into: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, into);
        } else if path.extension().is_some_and(|x| x == "rs") {
            into.push(path);
        }
    }
}

/// The imports between domains, as (from, to, file).
fn imports_between_domains(domains_dir: &Path) -> Vec<(String, String, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(domains_dir).unwrap() {
        let dir = entry.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        let from = dir.file_name().unwrap().to_string_lossy().into_owned();
        let mut files = Vec::new();
        rust_files(&dir, &mut files);
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            for to in domains_named(&text) {
                if to != from {
                    found.push((from.clone(), to, file.display().to_string()));
                }
            }
        }
    }
    found
}

#[test]
fn no_domain_imports_another() {
    let domains = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/domains");
    let found = imports_between_domains(&domains);
    let edges: BTreeSet<(String, String)> = found.iter().map(|(f, t, _)| (f.clone(), t.clone())).collect();
    let known: BTreeSet<(String, String)> = KNOWN_DEBT.iter().map(|(f, t)| (f.to_string(), t.to_string())).collect();
    let new: Vec<String> = found
        .iter()
        .filter(|(f, t, _)| !known.contains(&(f.clone(), t.clone())))
        .map(|(f, t, file)| format!("{f} imports {t} ({file}): meet through the money kernel instead"))
        .collect();
    let paid: Vec<String> = known
        .difference(&edges)
        .map(|(f, t)| format!("{f} no longer imports {t}: remove it from KNOWN_DEBT"))
        .collect();
    assert!(new.is_empty() && paid.is_empty(), "{}", [new, paid].concat().join("\n"));
}

#[test]
fn the_scan_finds_both_forms_of_import() {
    let text = "use crate::domains::wallet::Wallet;\nuse crate::domains::{catalog, compliance::StakeCap};";
    let named: Vec<String> = domains_named(text).into_iter().collect();
    assert_eq!(named, ["catalog", "compliance", "wallet"]);
}
