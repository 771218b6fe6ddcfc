//! Backend adapters: implementations of the ports in `fleetwire_actors::ports`.
//!
//! - [`embedded`]: in-process stream, redb state and lease stores, in-process fan-out.
//! - [`kinesis`]: the stream on Amazon Kinesis Data Streams (`aws-sdk-kinesis`).
//! - [`redis`]: the fan-out over Redis pub/sub, for deployments of several nodes.
//! - `conformance`: the port checks every backend must pass (hidden from the docs; used by
//!   the backends' integration tests).

#[doc(hidden)]
pub mod conformance;
pub mod embedded;
pub mod kinesis;
pub mod redis;
