//! The geo-aware edge router: each player to their licensed cell (DESIGN.md section 7).
//!
//! Not built yet: issue #4 fills this crate. It has no behaviour today, and nothing depends on it.
#![forbid(unsafe_code)]
