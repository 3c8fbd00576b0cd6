//! Conventions checked as an ordinary test (rust-analyzer's `tidy`): a domain of the cell imports
//! no other domain, and the money kernel (`ledger`) imports none. A domain may use `contracts`, the
//! event log, the store, the kernel's API and its own modules; domains that need each other meet
//! through the kernel (commands and gates) or through a trait the cell wires (`server.rs`), never
//! by a direct import, so a new money rule never means editing three domains.

use std::collections::BTreeSet;
use std::path::Path;

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
    let found: Vec<String> = imports_between_domains(&domains)
        .into_iter()
        .map(|(f, t, file)| format!("{f} imports {t} ({file}): meet through the money kernel instead"))
        .collect();
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn the_money_kernel_imports_no_domain() {
    let kernel = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/ledger");
    let mut files = Vec::new();
    rust_files(&kernel, &mut files);
    assert!(!files.is_empty(), "the kernel is at {}", kernel.display());
    let found: Vec<String> = files
        .iter()
        .flat_map(|file| {
            let text = std::fs::read_to_string(file).unwrap();
            domains_named(&text).into_iter().map(move |to| format!("the ledger imports {to} ({})", file.display()))
        })
        .collect();
    assert!(found.is_empty(), "the kernel knows no domain; a domain registers with it:\n{}", found.join("\n"));
}

#[test]
fn the_scan_finds_both_forms_of_import() {
    let text = "use crate::domains::wallet::Wallet;\nuse crate::domains::{catalog, compliance::StakeCap};";
    let named: Vec<String> = domains_named(text).into_iter().collect();
    assert_eq!(named, ["catalog", "compliance", "wallet"]);
}
