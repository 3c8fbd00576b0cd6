//! Shapes shared by every deployable: money, typed ids, jurisdictions, API requests and responses,
//! and event envelopes. Data only: validation of a shape lives here, behaviour lives in the
//! deployables. Every type that crosses a process boundary derives `JsonSchema`; the generated
//! schemas are committed under `contracts/schemas/` and checked by `tests/schemas.rs`.
#![forbid(unsafe_code)]

pub mod audit;
pub mod cashier;
pub mod catalog;
pub mod changes;
pub mod error;
pub mod events;
pub mod exports;
pub mod flags;
pub mod gaming;
pub mod ids;
pub mod json;
pub mod jurisdiction;
pub mod limits;
pub mod money;
pub mod operators;
pub mod players;
pub mod region;
pub mod replication;
pub mod schemas;
pub mod sessions;
pub mod wallet;

pub use error::{CellCode, ControlCode, ErrorBody, RouterCode};
pub use ids::{BetId, CellId, IdError, PlayerId, RoundId, TransactionId};
pub use jurisdiction::{CountryCode, Jurisdiction};
pub use money::{Amount, Currency, Money, MoneyError};
