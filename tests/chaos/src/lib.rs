//! Chaos and failover drills for the whole platform, runnable as tests (`cargo test -p chaos`) and
//! by ops as a command (`drill up`, `drill run SCENARIO|all`).
//!
//! A tour, in the order a drill uses the modules:
//! - [`platform`] starts the real processes (global-control, one cell per region file, standbys,
//!   the router) on loopback under one data directory, and kills, restarts and stops them.
//! - [`client`] speaks HTTP to them: plain to the router and the control API, mutual TLS to cells.
//! - [`load`] drives players' journeys (register, deposit, provider rounds, logins from abroad,
//!   unlicensed clients) and keeps a journal of every request's outcome; requests whose outcome
//!   is unknown after a fault are sent again with the same key until they get an answer.
//! - [`ports`] picks free loopback ports that nothing else can take before a process binds them.
//! - [`probes`] checks what a process answers beneath its routes (bad framing, heads and bodies too
//!   large, a wrong method): the same JSON refusals as everywhere.
//! - [`faults`] holds the UDP fault proxy that partitions a cell from the control plane.
//! - [`control`] flips flags and reads sync state on the control API.
//! - [`invariants`] checks the books, the journal against balances and events, licences and the
//!   audit chain, through the platform's public routes only.
//! - [`scenarios`] composes these into drills; [`report`] says what happened.
//! - [`up`] and [`status`] are `drill up`: the whole platform in one command, with a live screen.
#![forbid(unsafe_code)]

pub mod client;
pub mod control;
pub mod export_chaos;
pub mod faults;
pub mod invariants;
pub mod load;
pub mod platform;
pub mod ports;
pub mod probes;
pub mod psp_chaos;
pub mod report;
pub mod scenarios;
pub mod status;
pub mod up;
