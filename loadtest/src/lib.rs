//! Load generation for fleetwire.
//!
//! [`fleet`] simulates a fleet of electric vehicles (parking, driving a street grid,
//! charging) that emits telemetry in the seed data contract; `fleetwire demo` posts it
//! to its own ingest endpoint, and the load-test driver will use it to produce
//! realistic, reproducible traffic at scale.

pub mod fleet;
