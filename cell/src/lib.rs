//! A cell: one jurisdiction's self-contained deployment of every domain against its own store.
//!
//! Tour: [`store`] is the FoundationDB-shaped storage interface and its backends; [`domains`] holds
//! one module per bounded context (wallet, compliance); [`events`] is the outbox every domain
//! writes its events to in the same transaction as its state; [`api`] is the HTTP surface;
//! [`server`] wires them together and runs until shutdown; [`bench`] measures the wallet.
#![deny(unsafe_code)]

pub mod api;
pub mod audit;
pub mod bench;
pub mod clock;
pub mod domains;
pub mod events;
pub mod http;
pub mod idempotency;
pub mod metrics;
pub mod players;
pub mod server;
pub mod sessions;
pub mod signing_key;
pub mod store;
