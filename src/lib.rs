//! fleetwire binary crate.

pub mod backends;
