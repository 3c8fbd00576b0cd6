//! `drill` builds the platform with a nested `cargo build`, usually from under `cargo run`. That
//! nested build must leave the target directory as a plain `cargo build` from a shell would, or
//! each of them rebuilds half the workspace after the other (ring's build script depends on
//! `CARGO_MANIFEST_DIR` and `CARGO_PKG_*`, which `cargo run` sets for drill).
//!
//! This test runs under `cargo test`, which sets those variables for it just as `cargo run` does
//! for drill. It builds ring (the crate that showed it) through `chaos::platform::cargo`, then as
//! a shell would: the second build must compile nothing.

use std::path::Path;
use std::process::Command;

#[test]
fn a_nested_build_leaves_nothing_for_the_next_plain_one() {
    assert!(std::env::var_os("CARGO_MANIFEST_DIR").is_some(), "cargo test sets it, as cargo run does");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let nested = chaos::platform::cargo(&repo).args(["build", "-p", "ring"]).output().expect("run cargo");
    assert!(nested.status.success(), "{}", String::from_utf8_lossy(&nested.stderr));

    // A shell: none of what cargo sets for a crate, everything else as it is.
    let mut shell = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    shell.current_dir(&repo).args(["build", "-p", "ring"]);
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        let settings = ["CARGO_HOME", "CARGO_TARGET_DIR", "CARGO_TERM_", "CARGO_BUILD_", "CARGO_INCREMENTAL"];
        if (name == "CARGO" || name.starts_with("CARGO_")) && !settings.iter().any(|s| name.starts_with(s)) {
            shell.env_remove(name.as_ref());
        }
    }
    let plain = shell.output().expect("run cargo");
    let said = String::from_utf8_lossy(&plain.stderr);
    assert!(plain.status.success(), "{said}");
    assert!(!said.contains("Compiling"), "the plain build after drill's rebuilt:\n{said}");
}
