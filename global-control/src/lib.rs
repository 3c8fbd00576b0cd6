//! The global control plane: feature flags per region, the game catalog, regulator exports and
//! the cell registry (DESIGN.md section 8).
//!
//! Not built yet: issue #5 (flags, catalog sync over QUIC) fills this crate. It has no behaviour
//! today, and nothing depends on it.
#![forbid(unsafe_code)]
