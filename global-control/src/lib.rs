//! The global control plane (DESIGN.md section 8): feature flags per region, the game catalog,
//! the cells that follow them, and who may change what.
//!
//! - [`store`]: fjall on disk; every change one versioned, audited record, durable before it is
//!   answered; the change log is what cells replay.
//! - [`flags`], [`catalog`]: the changes product and catalog managers make, checked (flag
//!   definitions, regulatory locks from the region files, certified jurisdictions).
//! - [`rbac`]: API tokens (stored hashed) and roles.
//! - [`api`]: the JSON HTTP API and its OpenAPI document.
//! - [`server`]: wiring, with the QUIC sync endpoint from `replication::sync`.
//! - [`bench`]: `global-control bench flags`.
#![forbid(unsafe_code)]

pub mod api;
pub mod bench;
pub mod catalog;
pub mod error;
pub mod exports;
pub mod flags;
pub mod metrics;
pub mod operators;
pub mod rbac;
pub mod server;
pub mod store;
pub mod writers;

/// Replaces the file at `path` with `bytes`, whole or not at all: written beside it, synced,
/// renamed over it, the directory synced.
pub(crate) fn replace_file(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let scratch = path.with_extension("new");
    let mut file = std::fs::File::create(&scratch)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&scratch, path)?;
    std::fs::File::open(path.parent().unwrap_or(std::path::Path::new(".")))?.sync_all()
}
