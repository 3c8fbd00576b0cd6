//! Transport between deployables: mutual TLS everywhere ([`tls`]: a development CA and the
//! certificates of the control plane, each cell and the router; rustls configurations that
//! require and check them). The QUIC sync protocols (DESIGN.md section 8, issue #5) come next.
#![forbid(unsafe_code)]

pub mod tls;
