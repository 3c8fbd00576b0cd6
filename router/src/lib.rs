//! The geo-aware edge router: each player to their licensed cell (DESIGN.md section 7).
//!
//! Tour: [`client_ip`] decides who the client is (trusting `X-Forwarded-For` only from configured
//! proxies); [`geo`] says where they are; [`cells`] knows which cell holds which countries and
//! which endpoints are healthy; [`server`] refuses what must not pass (451 fail-closed, internal
//! routes) and forwards the rest with `X-Client-Country` over [`upstream`], a pool of keep-alive
//! connections per cell endpoint (mutual TLS, or plain HTTP in development).
//!
//! A valid session token ([`sessions`]) sends a player to their home cell from anywhere; the
//! location then only gates what the home cell allows abroad.
#![forbid(unsafe_code)]

pub mod bench;
pub mod cells;
pub mod client_ip;
pub mod geo;
pub mod server;
pub mod sessions;
pub mod upstream;
