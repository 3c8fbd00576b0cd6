//! A cell: one jurisdiction's self-contained deployment of every domain against its own store.
//!
//! Tour: [`store`] is the FoundationDB-shaped storage interface and its backends; [`ledger`] is the
//! money kernel (the double-entry ledger, its single writer, commands and gates); [`domains`] holds
//! one module per bounded context (wallet, gaming, compliance, catalog), the money domains running
//! their commands on the ledger; [`events`] is the outbox every domain writes its events to in the
//! same transaction as its state, and [`audit`] the signed chain over them; [`api`] is the HTTP
//! surface; [`replica`] is the cell's part in log shipping (standbys, promotion, fencing); [`server`] wires them together and runs until shutdown; [`bench`] measures the writer.
#![deny(unsafe_code)]

pub mod api;
pub mod audit;
pub mod bench;
pub mod clock;
pub mod config_dir;
pub mod credentials;
pub mod domains;
pub mod events;
pub mod exports;
pub mod http;
pub mod idempotency;
pub mod ledger;
pub mod metrics;
pub mod operators;
pub mod outside;
pub mod players;
pub mod replica;
pub mod server;
pub mod sessions;
pub mod signing_key;
pub mod store;
