//! All of the cell's integration tests, in one binary so it links once.

mod store;
