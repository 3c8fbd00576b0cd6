//! Chaos and failover drills (`drill up`, `drill run SCENARIO`), runnable as tests and by ops.
//!
//! Not built yet: issue #6 fills this crate once the router and control plane exist. The cell's
//! own crash tests (SIGKILL of a store writer, SIGTERM and SIGKILL of `cell serve`) live in
//! `cell/tests/it/` today.
#![forbid(unsafe_code)]
