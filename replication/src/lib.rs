//! Transport between deployables.
//!
//! - [`tls`]: mutual TLS everywhere: a development CA and the certificates of the control plane,
//!   each cell and the router; rustls (TCP) and quinn (QUIC) configurations that require and
//!   check them.
//! - [`http`]: serving HTTP/1.1 with a graceful, bounded stop and JSON refusals (every deployable).
//! - [`lease`]: a replicated writer's lease, confirmed by its standby or the control plane.
//! - [`logs`]: how every deployable's process logs.
//! - [`shipping`]: log shipping over QUIC: a standby follows its primary's commits, with epochs
//!   that fence a deposed primary.
//! - [`throttle`]: failures counted per key over a sliding window (logins, tokens).
//! - [`sync`]: the control-plane sync protocol over QUIC: cells follow the control plane's change
//!   log (flags, catalog) and apply it to their own store, exactly once, resuming after any cut.
#![forbid(unsafe_code)]

pub mod http;
pub mod lease;
pub mod logs;
pub mod shipping;
pub mod sync;
pub mod throttle;
pub mod tls;
