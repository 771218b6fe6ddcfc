//! Metric names: one closed list, so dashboards and alarms have a single place to look.
//!
//! Naming follows Prometheus conventions: `fleetwire_<what>_<unit>` with `_total` for
//! counters. Labels are low-cardinality (`result`, `reason`, `kind`, `shard`); never a
//! vehicle id.

/// Records received by `POST /v1/ingest`; label `result` = `accepted` | `rejected` | `failed`.
pub const INGEST_RECORDS_TOTAL: &str = "fleetwire_ingest_records_total";
/// Ingest requests; label `status` = HTTP status code.
pub const INGEST_REQUESTS_TOTAL: &str = "fleetwire_ingest_requests_total";
/// Records the shard consumers handed to vehicle actors; label `result` =
/// `applied` | `duplicate` | `stale` | `undecodable`.
pub const ROUTE_RECORDS_TOTAL: &str = "fleetwire_route_records_total";
/// Snapshot writes to the state store; label `result` = `written` | `already_newer` | `error`.
pub const PERSIST_WRITES_TOTAL: &str = "fleetwire_persist_writes_total";
/// History bucket writes; label `result` = `written` | `merged` | `error`.
pub const HISTORY_BUCKET_WRITES_TOTAL: &str = "fleetwire_history_bucket_writes_total";
/// Hour aggregate writes; label `result` = `written` | `error`.
pub const HISTORY_AGGREGATE_WRITES_TOTAL: &str = "fleetwire_history_aggregate_writes_total";
/// Vehicle updates published to the fan-out; label `result` = `ok` | `error`.
pub const PUBLISH_UPDATES_TOTAL: &str = "fleetwire_publish_updates_total";
/// Time from ingest to the vehicle actor starting to apply a routed batch (its newest
/// record), in seconds: the producer, the stream and the shard consumer's wait. Minus this,
/// `fleetwire_ingest_to_publish_seconds` is the actor's apply and the publish.
pub const INGEST_TO_APPLY_SECONDS: &str = "fleetwire_ingest_to_apply_seconds";
/// Time from ingest to publish of the newest record of an update, in seconds.
pub const INGEST_TO_PUBLISH_SECONDS: &str = "fleetwire_ingest_to_publish_seconds";
/// Time from ingest to this node's subscriber hub (through the fan-out) of the newest
/// record of each update that has subscribers here, in seconds; minus
/// `fleetwire_ingest_to_publish_seconds`, the fan-out's own delivery time (across nodes
/// the difference of their clocks is in it too).
pub const INGEST_TO_HUB_SECONDS: &str = "fleetwire_ingest_to_hub_seconds";
/// Time from ingest to a subscriber handing the update to its client's HTTP body, in
/// seconds, once per update and subscriber; minus `fleetwire_ingest_to_hub_seconds`, the
/// hub's routing and the subscriber's queue (what is left to the browser is the socket).
pub const INGEST_TO_SSE_SECONDS: &str = "fleetwire_ingest_to_sse_seconds";
/// Checkpoint writes; label `result` = `ok` | `lease_lost` | `error`.
pub const CHECKPOINTS_TOTAL: &str = "fleetwire_checkpoints_total";
/// Lease transitions on this node; label `event` = `taken` | `stolen` | `renewed` | `lost` |
/// `released` | `error` (a lease-store call failed; retried next round).
pub const LEASE_EVENTS_TOTAL: &str = "fleetwire_lease_events_total";
/// Shard leases held by this node.
pub const LEASES_HELD: &str = "fleetwire_leases_held";
/// How far a shard consumer is behind the newest record; label `shard`.
pub const SHARD_MILLIS_BEHIND_LATEST: &str = "fleetwire_shard_millis_behind_latest";
/// Stream reads that failed; label `reason`.
pub const STREAM_READ_ERRORS_TOTAL: &str = "fleetwire_stream_read_errors_total";
/// Vehicle actors started (first record or reactivation).
pub const VEHICLE_ACTIVATIONS_TOTAL: &str = "fleetwire_vehicle_activations_total";
/// Vehicle actors stopped after being idle.
pub const VEHICLE_PASSIVATIONS_TOTAL: &str = "fleetwire_vehicle_passivations_total";
/// SSE events written to clients.
pub const SSE_EVENTS_SENT_TOTAL: &str = "fleetwire_sse_events_sent_total";
/// SSE connections opened.
pub const SSE_CONNECTIONS_TOTAL: &str = "fleetwire_sse_connections_total";
/// Updates replaced by a newer update of the same vehicle in a slow subscriber's queue.
pub const SUBSCRIBER_COALESCED_TOTAL: &str = "fleetwire_subscriber_coalesced_total";
/// Subscribers disconnected by the server; label `reason` = `slow_client` (time or event
/// budget) | `bytes` (byte budget) | `shutdown`.
pub const SUBSCRIBER_DISCONNECTS_TOTAL: &str = "fleetwire_subscriber_disconnects_total";
/// Updates the hub could not hand to a subscriber whose mailbox was full.
pub const SUBSCRIBER_HUB_DROPPED_TOTAL: &str = "fleetwire_subscriber_hub_dropped_total";
/// Updates this node's fan-out subscription skipped because it lagged.
pub const FANOUT_LAGGED_TOTAL: &str = "fleetwire_fanout_lagged_total";
/// `reset` events written to SSE clients; label `reason` = `lagged` | `gap` | `too_old` |
/// `unknown_id` | `invalid_id` | `replay_failed` | `replay_too_long` | `resume_overflow` |
/// `dropped`.
pub const SSE_RESETS_SENT_TOTAL: &str = "fleetwire_sse_resets_sent_total";
/// SSE connections that came with a `Last-Event-ID`; label `result` = `replayed` |
/// `too_old` | `unknown_id` | `invalid_id` | `failed` | `too_long`.
pub const SSE_RESUMES_TOTAL: &str = "fleetwire_sse_resumes_total";
/// SSE connections refused by a connection limit; label `reason` = `tenant_limit` |
/// `node_limit`.
pub const SSE_REJECTED_TOTAL: &str = "fleetwire_sse_rejected_total";
/// SSE connections open on this node (gauge).
pub const SSE_CONNECTIONS_OPEN: &str = "fleetwire_sse_connections_open";

/// Updates a subscription dropped because its buffer to the hub was full (the hub hears of
/// them as `Lost`, counted in `fleetwire_fanout_lagged_total`).
pub const REDIS_FANOUT_DROPPED_TOTAL: &str = "fleetwire_redis_fanout_dropped_total";
/// Messages on the updates channel that did not decode as a `VehicleUpdate` (skipped).
pub const REDIS_FANOUT_MALFORMED_TOTAL: &str = "fleetwire_redis_fanout_malformed_total";
/// Attempts to open a Redis connection of the fan-out (the first one and every
/// reconnect); labels `connection` = `subscription` (the node's pub/sub connection) |
/// `publish` (the multiplexed connection appends go through), `result` = `ok` | `error`.
pub const REDIS_FANOUT_CONNECTS_TOTAL: &str = "fleetwire_redis_fanout_connects_total";
/// Subscriptions of this process that are currently subscribed (gauge; 1 on a healthy
/// node, 0 while its subscription reconnects or recovers).
pub const REDIS_FANOUT_SUBSCRIPTIONS: &str = "fleetwire_redis_fanout_subscriptions";
/// What a reconnected subscription did about each tenant's gap; label `result` =
/// `recovered` (replayed from the log) | `reset` (the log no longer covered it: the
/// tenant's subscribers reload).
pub const REDIS_FANOUT_GAP_RECOVERIES_TOTAL: &str = "fleetwire_redis_fanout_gap_recoveries_total";
/// Log entries a reconnected subscription replayed from the log (updates it would
/// otherwise have missed).
pub const REDIS_FANOUT_RECOVERED_TOTAL: &str = "fleetwire_redis_fanout_recovered_total";
/// Gap markers this node appended to a tenant's log after its publishes had failed;
/// label `result` = `ok` | `error` (retried).
pub const REDIS_FANOUT_GAP_MARKERS_TOTAL: &str = "fleetwire_redis_fanout_gap_markers_total";
/// Time to publish one update (append to the log + PUBLISH), in seconds.
pub const REDIS_FANOUT_PUBLISH_SECONDS: &str = "fleetwire_redis_fanout_publish_seconds";
/// Entries appended by one call of the append script (publishes and gap markers queued
/// together).
pub const REDIS_FANOUT_APPEND_BATCH_ENTRIES: &str = "fleetwire_redis_fanout_append_batch_entries";
/// How long each append waited in the queue before a script call took it, in seconds.
pub const REDIS_FANOUT_APPEND_QUEUE_SECONDS: &str = "fleetwire_redis_fanout_append_queue_seconds";
/// One append script call, from sending it to its answer, in seconds. What
/// `fleetwire_redis_fanout_publish_seconds` has beyond this and the queue wait is the time the
/// publishing task took to be resumed (its thread was busy).
pub const REDIS_FANOUT_APPEND_CALL_SECONDS: &str = "fleetwire_redis_fanout_append_call_seconds";

/// Vehicles connected over the Tesla WebSocket listener (gauge).
pub const TESLA_CONNECTIONS: &str = "fleetwire_tesla_connections";
/// TLS/WebSocket handshakes; label `result` = `ok` | `tls_error` | `no_client_certificate` |
/// `bad_certificate` | `websocket_error` | `timeout` | `node_full`.
pub const TESLA_HANDSHAKES_TOTAL: &str = "fleetwire_tesla_handshakes_total";
/// Connections closed because the same vehicle connected again.
pub const TESLA_CONNECTIONS_REPLACED_TOTAL: &str = "fleetwire_tesla_connections_replaced_total";
/// Connections closed for silence longer than the idle timeout.
pub const TESLA_IDLE_DISCONNECTS_TOTAL: &str = "fleetwire_tesla_idle_disconnects_total";
/// Connections closed because the vehicle did not read its replies.
pub const TESLA_SLOW_VEHICLES_TOTAL: &str = "fleetwire_tesla_slow_vehicles_total";
/// Read errors on vehicle sockets.
pub const TESLA_SOCKET_ERRORS_TOTAL: &str = "fleetwire_tesla_socket_errors_total";
/// Acks sent; label `reliable` = `true` (sent after the stream stored the record) | `false`.
pub const TESLA_ACKS_TOTAL: &str = "fleetwire_tesla_acks_total";
/// Seconds from a frame's arrival to its ack being queued (the put included); label
/// `reliable`.
pub const TESLA_ACK_SECONDS: &str = "fleetwire_tesla_ack_seconds";
/// Records the stream did not store (throttled, failed, timed out); label `topic`.
pub const TESLA_PUT_FAILURES_TOTAL: &str = "fleetwire_tesla_put_failures_total";

/// Tesla frames received on vehicle WebSocket connections; label `topic` = `V` | `alerts` |
/// `errors` | `connectivity` | `other` (a topic not dispatched or not readable).
pub const TESLA_FRAMES_TOTAL: &str = "fleetwire_tesla_frames_total";
/// Tesla frames that produced no record; label `reason` =
/// `fleetwire_actors::tesla::FrameRejection::reason` (`too_large`, `empty`,
/// `not_flatbuffers`, `no_message`, `unexpected_message_type`, `unknown_topic`,
/// `sender_mismatch`, `bad_payload`), plus the connection's own `rate_limited` and
/// `text_message`.
pub const TESLA_FRAMES_REJECTED_TOTAL: &str = "fleetwire_tesla_frames_rejected_total";
/// Datums carried by dispatched Tesla records; label `topic`.
pub const TESLA_DATUMS_TOTAL: &str = "fleetwire_tesla_datums_total";
/// Bytes of Tesla frames received; label `topic` as in `fleetwire_tesla_frames_total`.
pub const TESLA_FRAME_BYTES_TOTAL: &str = "fleetwire_tesla_frame_bytes_total";

/// Entries per producer `PutRecords` call (histogram).
pub const PRODUCER_BATCH_ENTRIES: &str = "fleetwire_producer_batch_entries";
/// Partition key + data bytes per producer `PutRecords` call (histogram).
pub const PRODUCER_BATCH_BYTES: &str = "fleetwire_producer_batch_bytes";
/// Producer `PutRecords` calls; label `result` = `ok` (all stored) | `partial` (some
/// entries failed) | `error` (the call failed) | `ignored` (answered after shutdown gave
/// up its records).
pub const PRODUCER_PUT_CALLS_TOTAL: &str = "fleetwire_producer_put_calls_total";
/// Records the producer finished; label `result` = `stored` | `failed` | `dead_lettered`.
pub const PRODUCER_RECORDS_TOTAL: &str = "fleetwire_producer_records_total";
/// Entries scheduled for another attempt after a retryable failure.
pub const PRODUCER_RETRIED_ENTRIES_TOTAL: &str = "fleetwire_producer_retried_entries_total";
/// Entries the stream answered with `Throttled` (ProvisionedThroughputExceeded).
pub const PRODUCER_THROTTLED_ENTRIES_TOTAL: &str = "fleetwire_producer_throttled_entries_total";
/// Records given up and sent to the dead-letter sink; label `reason` =
/// `attempts_exhausted` | `retry_time_exhausted` | `shutdown`.
pub const PRODUCER_DEAD_LETTERS_TOTAL: &str = "fleetwire_producer_dead_letters_total";
/// Dead-letter sink writes that failed (the records are logged instead).
pub const PRODUCER_DEAD_LETTER_ERRORS_TOTAL: &str = "fleetwire_producer_dead_letter_errors_total";
/// `Produce` requests refused because the producer was full (callers push back).
pub const PRODUCER_FULL_TOTAL: &str = "fleetwire_producer_full_total";
/// Producer `PutRecords` calls in flight (gauge).
pub const PRODUCER_IN_FLIGHT: &str = "fleetwire_producer_in_flight_calls";
/// Records pending in the producer: waiting, in flight or waiting for a retry (gauge).
pub const PRODUCER_PENDING: &str = "fleetwire_producer_pending_records";
/// How long the oldest new record of each call waited before the call, in seconds.
pub const PRODUCER_LINGER_SECONDS: &str = "fleetwire_producer_linger_seconds";
/// From `Produce` to a record's outcome (stored, failed or dead-lettered), in seconds.
pub const PRODUCER_PRODUCE_SECONDS: &str = "fleetwire_producer_produce_seconds";
/// AWS SDK calls (Kinesis, DynamoDB), by `service`, `operation` and `result` (`ok`,
/// `client_error` — throttling and failed conditions included —, `server_error`,
/// `timeout`, `connection`).
pub const AWS_CALLS_TOTAL: &str = "fleetwire_aws_calls_total";
/// Duration of AWS SDK calls, retries included, by `service` and `operation`.
pub const AWS_CALL_SECONDS: &str = "fleetwire_aws_call_seconds";
/// Records the consumer dead-lettered because of their vehicle's registration; label
/// `reason` = `unprovisioned` | `suspended`.
pub const TENANCY_DEAD_LETTERS_TOTAL: &str = "fleetwire_tenancy_dead_letters_total";
/// Dead letters stored durably (by any writer: producer, tenancy router, consumer); label
/// `reason` = the reason label (`undecodable`, `unprovisioned`, `suspended`,
/// `attempts_exhausted`, `retry_time_exhausted`, `shutdown`). A retried batch that
/// rewrites the same letter counts it again. The `dead-letters-growing` alarm watches it.
pub const DEAD_LETTERS_STORED_TOTAL: &str = "fleetwire_dead_letters_stored_total";
/// Dead letters whose payload a sink cut to its first 64 KiB because it had nowhere to keep
/// the rest (the DynamoDB store with `dynamodb.dead_letter_payloads = "truncate"`); label
/// `reason` as in [`DEAD_LETTERS_STORED_TOTAL`]. Such letters cannot be replayed. Counted
/// when cut, so a retried batch that rewrites the letter counts it again.
pub const DEAD_LETTERS_TRUNCATED_TOTAL: &str = "fleetwire_dead_letters_truncated_total";
/// Dead letters replayed onto the stream (admin or tenant-admin), by result
/// (`stored`, `failed`).
pub const DEAD_LETTERS_REPLAYED_TOTAL: &str = "fleetwire_dead_letters_replayed_total";
/// Tenant lookups of the consumer; label `source` = `cache` | `registry`.
pub const TENANCY_LOOKUPS_TOTAL: &str = "fleetwire_tenancy_lookups_total";
/// Unknown vehicles this node provisioned (`tenancy.unknown_vehicles = "provision"`).
pub const TENANCY_PROVISIONED_TOTAL: &str = "fleetwire_tenancy_provisioned_total";

/// Records the time since `ingest` (a record's `ingest_received_at`) in the seconds
/// histogram `name`, one of the `INGEST_TO_*` stages; a clock that went back counts 0.
pub fn record_since_ingest(name: &'static str, ingest: chrono::DateTime<chrono::Utc>) {
    let waited = (chrono::Utc::now() - ingest).to_std().unwrap_or_default();
    metrics::histogram!(name).record(waited.as_secs_f64());
}

/// Latency histograms (seconds) and their descriptions, described in one loop.
const SECONDS_HISTOGRAMS: &[(&str, &str)] = &[
    (
        INGEST_TO_PUBLISH_SECONDS,
        "Ingest to publish latency of the newest record of each update.",
    ),
    (
        INGEST_TO_APPLY_SECONDS,
        "Ingest to the vehicle actor applying a routed batch (its newest record).",
    ),
    (
        INGEST_TO_HUB_SECONDS,
        "Ingest to this node's subscriber hub, for updates with subscribers here.",
    ),
    (
        INGEST_TO_SSE_SECONDS,
        "Ingest to a subscriber handing the update to its client's HTTP body.",
    ),
    (
        AWS_CALL_SECONDS,
        "Duration of AWS SDK calls (retries included), by service and operation.",
    ),
    (
        TESLA_ACK_SECONDS,
        "Frame arrival to ack queued (the stream put included), by reliability.",
    ),
    (
        REDIS_FANOUT_PUBLISH_SECONDS,
        "Time to append an update to the Redis log and publish it.",
    ),
    (
        REDIS_FANOUT_APPEND_QUEUE_SECONDS,
        "Wait of each Redis append in the queue before a script call took it.",
    ),
    (
        REDIS_FANOUT_APPEND_CALL_SECONDS,
        "One Redis append script call, sent to answered.",
    ),
    (
        PRODUCER_LINGER_SECONDS,
        "Wait of the oldest new record of each producer call.",
    ),
    (PRODUCER_PRODUCE_SECONDS, "Produce to outcome latency per record."),
];

/// Registers descriptions for every metric (call once after installing the recorder).
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    for (name, description) in SECONDS_HISTOGRAMS {
        describe_histogram!(*name, metrics::Unit::Seconds, *description);
    }
    describe_counter!(
        INGEST_RECORDS_TOTAL,
        "Records received by POST /v1/ingest, by result."
    );
    describe_counter!(INGEST_REQUESTS_TOTAL, "Ingest requests, by HTTP status.");
    describe_counter!(
        TENANCY_DEAD_LETTERS_TOTAL,
        "Records dead-lettered because their vehicle is unprovisioned or suspended, by reason."
    );
    describe_counter!(
        DEAD_LETTERS_STORED_TOTAL,
        "Dead letters stored durably, by reason."
    );
    describe_counter!(
        DEAD_LETTERS_TRUNCATED_TOTAL,
        "Dead letters whose payload was cut to 64 KiB (no overflow bucket), by reason."
    );
    describe_counter!(
        DEAD_LETTERS_REPLAYED_TOTAL,
        "Dead letters replayed onto the stream, by result."
    );
    describe_counter!(
        TENANCY_LOOKUPS_TOTAL,
        "Tenant lookups of the consumer, by source."
    );
    describe_counter!(
        TENANCY_PROVISIONED_TOTAL,
        "Unknown vehicles provisioned by this node."
    );
    describe_counter!(
        ROUTE_RECORDS_TOTAL,
        "Records routed to vehicle actors, by result."
    );
    describe_counter!(PERSIST_WRITES_TOTAL, "Vehicle snapshot writes, by result.");
    describe_counter!(HISTORY_BUCKET_WRITES_TOTAL, "History bucket writes, by result.");
    describe_counter!(
        HISTORY_AGGREGATE_WRITES_TOTAL,
        "Hour aggregate writes, by result."
    );
    describe_counter!(PUBLISH_UPDATES_TOTAL, "Vehicle updates published, by result.");
    describe_counter!(
        AWS_CALLS_TOTAL,
        "AWS SDK calls, by service, operation and result."
    );
    describe_counter!(CHECKPOINTS_TOTAL, "Shard checkpoint writes, by result.");
    describe_counter!(LEASE_EVENTS_TOTAL, "Shard lease transitions on this node.");
    describe_gauge!(LEASES_HELD, "Shard leases held by this node.");
    describe_gauge!(
        SHARD_MILLIS_BEHIND_LATEST,
        "Consumer lag behind the newest record, per shard."
    );
    describe_counter!(STREAM_READ_ERRORS_TOTAL, "Failed stream reads, by reason.");
    describe_counter!(VEHICLE_ACTIVATIONS_TOTAL, "Vehicle actors started.");
    describe_counter!(
        VEHICLE_PASSIVATIONS_TOTAL,
        "Vehicle actors passivated after idling."
    );
    describe_counter!(SSE_EVENTS_SENT_TOTAL, "SSE events written to clients.");
    describe_counter!(SSE_CONNECTIONS_TOTAL, "SSE connections opened.");
    describe_counter!(
        SUBSCRIBER_COALESCED_TOTAL,
        "Updates coalesced in slow subscribers' queues."
    );
    describe_counter!(
        SUBSCRIBER_DISCONNECTS_TOTAL,
        "Subscribers disconnected by the server, by reason."
    );
    describe_counter!(
        SUBSCRIBER_HUB_DROPPED_TOTAL,
        "Updates dropped because a subscriber mailbox was full."
    );
    describe_counter!(
        FANOUT_LAGGED_TOTAL,
        "Updates skipped by a lagging fan-out subscription."
    );
    describe_gauge!(
        TESLA_CONNECTIONS,
        "Vehicles connected over the Tesla WebSocket listener."
    );
    describe_counter!(
        TESLA_HANDSHAKES_TOTAL,
        "Vehicle TLS/WebSocket handshakes, by result."
    );
    describe_counter!(
        TESLA_CONNECTIONS_REPLACED_TOTAL,
        "Vehicle connections replaced by a newer one."
    );
    describe_counter!(
        TESLA_IDLE_DISCONNECTS_TOTAL,
        "Vehicle connections closed after the idle timeout."
    );
    describe_counter!(
        TESLA_SLOW_VEHICLES_TOTAL,
        "Vehicle connections closed for not reading replies."
    );
    describe_counter!(TESLA_SOCKET_ERRORS_TOTAL, "Read errors on vehicle sockets.");
    describe_counter!(
        TESLA_FRAMES_TOTAL,
        "Tesla frames received from vehicles, by topic (`other`: no record)."
    );
    describe_counter!(
        TESLA_FRAMES_REJECTED_TOTAL,
        "Tesla frames that produced no record, by reason."
    );
    describe_counter!(TESLA_ACKS_TOTAL, "Acks sent to vehicles, by reliability.");
    describe_counter!(
        TESLA_PUT_FAILURES_TOTAL,
        "Tesla records the stream did not store, by topic."
    );
    describe_counter!(
        SSE_RESETS_SENT_TOTAL,
        "reset events sent to SSE clients, by reason."
    );
    describe_counter!(SSE_RESUMES_TOTAL, "SSE resumes with Last-Event-ID, by result.");
    describe_counter!(
        SSE_REJECTED_TOTAL,
        "SSE connections refused by a limit, by reason."
    );
    describe_gauge!(SSE_CONNECTIONS_OPEN, "SSE connections open on this node.");
    describe_counter!(
        REDIS_FANOUT_GAP_RECOVERIES_TOTAL,
        "Per-tenant gaps after a Redis reconnect, recovered from the log or reset."
    );
    describe_counter!(
        REDIS_FANOUT_RECOVERED_TOTAL,
        "Log entries replayed by a reconnected Redis subscription."
    );
    describe_counter!(
        REDIS_FANOUT_GAP_MARKERS_TOTAL,
        "Gap markers appended after failed publishes, by result."
    );
    describe_histogram!(
        REDIS_FANOUT_APPEND_BATCH_ENTRIES,
        "Entries appended to Redis logs by one append script call."
    );
    describe_counter!(
        TESLA_DATUMS_TOTAL,
        "Datums in dispatched Tesla records, by topic."
    );
    describe_counter!(
        TESLA_FRAME_BYTES_TOTAL,
        metrics::Unit::Bytes,
        "Bytes of Tesla frames received from vehicles, by topic."
    );
    describe_histogram!(
        PRODUCER_BATCH_ENTRIES,
        metrics::Unit::Count,
        "Entries per producer PutRecords call."
    );
    describe_histogram!(
        PRODUCER_BATCH_BYTES,
        metrics::Unit::Bytes,
        "Bytes per producer PutRecords call."
    );
    describe_counter!(PRODUCER_PUT_CALLS_TOTAL, "Producer PutRecords calls, by result.");
    describe_counter!(
        PRODUCER_RECORDS_TOTAL,
        "Records finished by the producer, by result."
    );
    describe_counter!(
        PRODUCER_RETRIED_ENTRIES_TOTAL,
        "Producer entries scheduled for a retry."
    );
    describe_counter!(
        PRODUCER_THROTTLED_ENTRIES_TOTAL,
        "Producer entries throttled by the stream."
    );
    describe_counter!(
        PRODUCER_DEAD_LETTERS_TOTAL,
        "Records the producer gave up, by reason."
    );
    describe_counter!(
        PRODUCER_DEAD_LETTER_ERRORS_TOTAL,
        "Failed writes to the dead-letter sink."
    );
    describe_counter!(
        PRODUCER_FULL_TOTAL,
        "Produce requests refused because the producer was full."
    );
    describe_gauge!(PRODUCER_IN_FLIGHT, "Producer PutRecords calls in flight.");
    describe_gauge!(PRODUCER_PENDING, "Records pending in the producer.");
}
/// Counter: positions the fleet filter rejected; label `reason` (`invalid`, `zero`,
/// `duplicate`, `future`, `past`, `out_of_order`, `jump`).
pub const FLEET_POSITIONS_FILTERED_TOTAL: &str = "fleetwire_fleet_positions_filtered_total";
/// Counter: fleet events derived (trips, charging, geofences, alerts); label `source`
/// (`records`, `timer`).
pub const FLEET_EVENTS_TOTAL: &str = "fleetwire_fleet_events_total";
/// Counter: archive parts written; label `result` = `ok` | `error` (a failed attempt,
/// retried with backoff).
pub const ARCHIVE_PARTS_TOTAL: &str = "fleetwire_archive_parts_total";
/// Counter: records in archive parts written.
pub const ARCHIVE_RECORDS_TOTAL: &str = "fleetwire_archive_records_total";
/// Gauge: bytes buffered in open archive parts (not yet durable).
pub const ARCHIVE_BUFFERED_BYTES: &str = "fleetwire_archive_buffered_bytes";
