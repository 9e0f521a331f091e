//! Shared test support.
pub(crate) mod pg;
