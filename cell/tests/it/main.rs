//! All of the cell's integration tests, in one binary so it links once.

mod api;
mod harness;
mod process;
mod store;
mod wallet_properties;
