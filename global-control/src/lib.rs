//! The global control plane: feature flags per region, the game catalog, regulator exports and
//! the cell registry (DESIGN.md section 8).
//!
//! Built so far: `global-control certs`, the development CA and certificates every mutual-TLS
//! link uses. The flags, catalog and sync (issue #5) are not built yet.
#![forbid(unsafe_code)]
