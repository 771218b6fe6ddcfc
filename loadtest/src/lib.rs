//! Load generation for fleetwire.
//!
//! [`fleet`] simulates a fleet of electric vehicles (parking, driving a street grid,
//! charging) that emits telemetry in the seed data contract; `fleetwire demo` posts it
//! to its own ingest endpoint, and the load-test driver will use it to produce
//! realistic, reproducible traffic at scale. [`tesla`] sends the same records as Tesla
//! Fleet Telemetry vehicles over mTLS WebSockets, with certificates from the development
//! PKI in [`pki`].

pub mod account;
pub mod fleet;
pub mod pki;
pub mod report;
pub mod run;
pub mod scenario;
pub mod tesla;
