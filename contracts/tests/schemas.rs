//! The committed schemas match the Rust types. A shape that changes without its version changing
//! fails here; regenerate with `UPDATE_SCHEMAS=1 cargo test -p contracts --test schemas` only after
//! bumping the version of what changed.

use std::path::PathBuf;

fn schema_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schemas")
}

#[test]
fn committed_schemas_match_types_and_versions() {
    let update = std::env::var_os("UPDATE_SCHEMAS").is_some();
    let mut problems = Vec::new();
    let mut expected = std::collections::BTreeSet::new();
    for named in contracts::schemas::all() {
        let path = schema_dir().join(&named.file_name);
        expected.insert(named.file_name.clone());
        let text = serde_json::to_string_pretty(&named.schema).expect("a schema serialises") + "\n";
        match std::fs::read_to_string(&path) {
            Ok(committed) if committed == text => {}
            Ok(_) if update => problems.push(format!(
                "{} changed under the same version: bump the version instead of rewriting it",
                named.file_name
            )),
            Ok(_) => problems.push(format!(
                "{} differs from the type: a shape changed without its version changing",
                named.file_name
            )),
            Err(_) if update => std::fs::write(&path, text).expect("write schema"),
            Err(_) => problems.push(format!(
                "{} is not committed: run UPDATE_SCHEMAS=1 cargo test -p contracts --test schemas",
                named.file_name
            )),
        }
    }
    // A committed schema with no type behind it is a contract silently dropped; old versions stay
    // only while something still speaks them, so they are listed here deliberately.
    for entry in std::fs::read_dir(schema_dir()).expect("schemas dir") {
        let name = entry.expect("dir entry").file_name().to_string_lossy().into_owned();
        if !expected.contains(&name) {
            problems.push(format!("{name} is committed but no type generates it"));
        }
    }
    assert!(problems.is_empty(), "schema problems:\n{}", problems.join("\n"));
}
