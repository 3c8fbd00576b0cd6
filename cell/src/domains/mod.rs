//! The bounded contexts of a cell, one module each. A domain owns one store subspace; its key
//! layout lives in its `keys.rs`, and other domains reach its data only through its front door.

pub mod cashier;
pub mod catalog;
pub mod compliance;
pub mod gaming;
pub mod identity;
pub mod wallet;
