//! All of the cell's integration tests, in one binary so it links once.

mod api;
mod audit;
mod control;
mod gaming;
mod harness;
mod money_limits;
mod process;
mod serving;
mod store;
mod wallet_properties;
