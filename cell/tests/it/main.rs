//! All of the cell's integration tests, in one binary so it links once.

// The tests play outside parties (providers sign with their own wall clock) and compare a cell
// on the system clock with the wall clock; cells under test read time through their `Clock`.
#![allow(clippy::disallowed_methods)]

mod aml;
mod api;
mod audit;
mod auth;
mod cashier;
mod cashier_recovery;
mod control;
mod exports;
mod gaming;
mod harness;
mod kyc;
mod ledger_gates;
mod limits;
mod money_limits;
mod parsers;
mod process;
mod registers;
mod serving;
mod store;
mod wallet_properties;
