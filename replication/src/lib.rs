//! QUIC transport (quinn, rustls with mutual TLS) and the sync protocols that use it (DESIGN.md
//! section 8).
//!
//! Not built yet: issue #5 fills this crate. It has no behaviour today, and nothing depends on it.
#![forbid(unsafe_code)]
