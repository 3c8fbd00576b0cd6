//! A cell: one jurisdiction's self-contained deployment of every domain against its own store.
#![deny(unsafe_code)]

pub mod store;
