//! fleetwire's actors, the pure state machines they wrap, and the ports (traits) they
//! use to reach the backends.
//!
//! # Layout
//!
//! - [`model`]: records, signal values, vehicle snapshots and updates.
//! - [`ports`]: `RecordStream`, `LeaseStore`, `StateStore`, `VehicleRegistry`, `FanOut` — implemented in the
//!   binary crate's `src/backends/`.
//! - [`codec`]: record bodies on the stream (seed JSON and Tesla's protobuf `Payload`).
//! - [`tesla`]: Tesla Fleet Telemetry frames: envelope, acks, payload checks and
//!   rewrites, canonical JSON, conversion to records.
//! - [`consumer`]: the KCL-style consumer — `LeaseCoordinator` (takes and renews shard
//!   leases), one `ShardConsumer` per owned shard, and the `Checkpointer` that only moves
//!   past records whose effects are persisted.
//! - [`fleet`]: fleet intelligence — position filter, trips, charging sessions,
//!   geofences, alerts — as pure machines fed by the vehicle state, and the rules book.
//! - [`vehicle`]: `VehicleState` (pure: dedupe, latest value per signal), its actor, and
//!   the `VehicleDirectory` that spawns, finds and passivates vehicle actors.
//! - [`subscriber`]: the `SubscriberHub` (one per node, fed by the fan-out) and one
//!   `Subscriber` actor per SSE connection with its coalescing queue.
//! - [`connection`]: one `VehicleConnection` actor per vehicle WebSocket (Tesla protocol)
//!   and the `ConnectionDirectory` that keeps one per vehicle.
//! - [`pseudonym`]: VIN → pseudonymous vehicle id (keyed HMAC).
//! - [`producer`]: the batching `Producer` actor every stream write goes through (≤ 500
//!   records / 5 MiB per call, retries with backoff, per-key order, bounded, dead letters).
//! - [`tenancy`]: the `TenantRouter` the shard consumers route through: each vehicle's
//!   tenant from the vehicle registry (cached), unprovisioned/suspended → dead letters.
//! - [`archive`]: the `Archiver` actor writing every consumed record as JSON lines into
//!   hour-partitioned part files (local directory or S3), acknowledged only once durable.
//! - [`registry`]: the actor registry behind `/admin/actors`.
//! - [`telemetry`]: metric names.
//! - `openapi` (feature `openapi`): OpenAPI schemas of the types the public API shows.
//!
//! Each actor is a thin shell (`actor.rs` or the actor's own file) over a plain state
//! machine that is unit-tested without actix.

#![deny(missing_docs)]

pub mod archive;
pub mod codec;
pub mod connection;
pub mod consumer;
pub mod fleet;
pub mod history;
pub mod model;
#[cfg(feature = "openapi")]
mod openapi;
pub mod ports;
pub mod producer;
pub mod pseudonym;
pub mod registry;
pub mod subscriber;
pub mod telemetry;
pub mod tenancy;
pub mod tesla;
pub mod vehicle;
