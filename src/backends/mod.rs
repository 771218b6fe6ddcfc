//! Backend adapters: implementations of the ports in `fleetwire_actors::ports`.
//!
//! - [`archive`]: builds the raw archive (`[archive]`) on a directory or S3.
//! - [`dynamodb`]: the lease store on Amazon DynamoDB (`aws-sdk-dynamodb`), KCL's table layout.
//! - [`embedded`]: in-process stream, redb state and lease stores, in-process fan-out.
//! - [`faults`]: injected throttling on any stream backend (tests, load tests, staging).
//! - [`kinesis`]: the stream on Amazon Kinesis Data Streams (`aws-sdk-kinesis`).
//! - [`s3`]: the raw archive's parts on Amazon S3 (`aws-sdk-s3`, PutObject only).
//! - [`redis`]: the fan-out over Redis Streams and pub/sub, for deployments of several nodes.
//! - `conformance`: the port checks every backend must pass (hidden from the docs; used by
//!   the backends' integration tests).

pub mod archive;
pub(crate) mod aws;
mod aws_calls;
#[doc(hidden)]
pub mod conformance;
pub mod dynamodb;
pub mod embedded;
pub mod faults;
pub mod kinesis;
pub mod redis;
pub mod s3;
