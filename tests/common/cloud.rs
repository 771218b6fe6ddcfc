//! Node configs on the cloud backends (kinesis-local, DynamoDB Local, Redis) and their
//! cleanup, shared by the multi-node tests. `scripts/test` starts the services and exports
//! their endpoints.

use fleetwire::backends::dynamodb::{DynamoDbConfig, DynamoDbLeaseStore};
use fleetwire::backends::kinesis::KinesisStream;
use fleetwire::backends::redis::RedisConfig;
use std::process::{Child, Command, Stdio};

use fleetwire::backends::dynamodb::{DynamoDbStateStore, DynamoDbVehicleRegistry};
use fleetwire_actors::archive::{ArchiveBackend, ArchiveConfig};

use fleetwire::config::{Config, FanOutBackend, LeasesBackend, StateBackend, StreamBackend};

use super::test_config;

/// A name no other test or earlier run uses (stream, table, key prefix).
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

fn endpoint(var: &str) -> String {
    std::env::var(var)
        .unwrap_or_else(|_| panic!("{var} is not set: run scripts/test (it starts the emulators)"))
}

/// S3 settings (the `[archive]` ones) for moto's S3 server (`FLEETWIRE_TEST_S3_ENDPOINT`),
/// a fresh bucket name (not created: see `create_bucket`) and keys under `key_prefix`.
pub fn s3_settings(key_prefix: &str) -> ArchiveConfig {
    ArchiveConfig {
        backend: ArchiveBackend::S3,
        // S3 bucket names: lowercase letters, digits, hyphens.
        bucket: unique("fw-s3").to_lowercase(),
        prefix: key_prefix.to_owned(),
        endpoint_url: Some(endpoint("FLEETWIRE_TEST_S3_ENDPOINT")),
        static_credentials: true,
        ..ArchiveConfig::default()
    }
}

/// Creates `bucket` with `client`.
pub async fn create_bucket(client: &aws_sdk_s3::Client, bucket: &str) {
    client.create_bucket().bucket(bucket).send().await.unwrap();
}

/// DynamoDB Local (`FLEETWIRE_TEST_DYNAMODB_ENDPOINT`) with tables of a fresh prefix
/// `<unique(prefix)>-`, created on connect: a store test's own tables.
pub fn dynamodb_local(prefix: &str) -> DynamoDbConfig {
    DynamoDbConfig {
        endpoint_url: Some(endpoint("FLEETWIRE_TEST_DYNAMODB_ENDPOINT")),
        static_credentials: true,
        table_prefix: format!("{}-", unique(prefix)),
        create_tables_if_missing: true,
        ..DynamoDbConfig::default()
    }
}

/// A node on a fresh Kinesis stream (2 shards) with the Redis fan-out under `redis_prefix`;
/// leases and state stay embedded.
pub fn kinesis_redis_config(stream: &str, redis_prefix: &str) -> Config {
    let mut config = test_config(None);
    config.backends.stream = StreamBackend::Kinesis;
    config.kinesis.stream_name = stream.to_owned();
    config.kinesis.endpoint_url = Some(endpoint("FLEETWIRE_TEST_KINESIS_ENDPOINT"));
    config.kinesis.create_if_missing = Some(2);
    config.kinesis.static_credentials = true;
    config.backends.fanout = FanOutBackend::Redis;
    config.redis = redis_config(redis_prefix);
    config
}

/// Redis settings under `prefix`.
pub fn redis_config(prefix: &str) -> RedisConfig {
    RedisConfig {
        url: std::env::var("FLEETWIRE_TEST_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379/".to_owned()),
        key_prefix: prefix.to_owned(),
        ..RedisConfig::default()
    }
}

/// A consumer node that shares the stream, the DynamoDB lease table and Redis with others.
pub fn shared_config(stream: &str, table: &str, prefix: &str, worker: &str) -> Config {
    let mut config = kinesis_redis_config(stream, prefix);
    config.backends.leases = LeasesBackend::Dynamodb;
    config.dynamodb.endpoint_url = Some(endpoint("FLEETWIRE_TEST_DYNAMODB_ENDPOINT"));
    config.dynamodb.static_credentials = true;
    config.dynamodb.lease_table = table.to_owned();
    config.dynamodb.create_tables_if_missing = true;
    config.consumer.worker_id = Some(worker.to_owned());
    config
}

/// `shared`, with the vehicle state and registry in DynamoDB under `table_prefix` too, so
/// that every node of the test reads and writes the same state.
pub fn shared_state_config(shared: Config, table_prefix: &str) -> Config {
    let mut config = shared;
    config.backends.state = StateBackend::Dynamodb;
    config.dynamodb.table_prefix = table_prefix.to_owned();
    config
}

/// The real binary as another node in its own process, configured (as a deployment would
/// be) through `FLEETWIRE_*` variables carrying `shared`'s backend settings, as `worker`;
/// `extra` adds or overrides `<SECTION>__<KEY>` settings.
pub fn spawn_node_process(shared: &Config, worker: &str, extra: &[(&str, String)]) -> Child {
    let mut vars = vec![
        ("BACKENDS__STREAM", "kinesis".to_owned()),
        ("BACKENDS__LEASES", "dynamodb".to_owned()),
        ("BACKENDS__FANOUT", "redis".to_owned()),
        ("KINESIS__STREAM_NAME", shared.kinesis.stream_name.clone()),
        (
            "KINESIS__ENDPOINT_URL",
            shared.kinesis.endpoint_url.clone().unwrap(),
        ),
        ("KINESIS__STATIC_CREDENTIALS", "true".to_owned()),
        (
            "DYNAMODB__ENDPOINT_URL",
            shared.dynamodb.endpoint_url.clone().unwrap(),
        ),
        ("DYNAMODB__STATIC_CREDENTIALS", "true".to_owned()),
        ("DYNAMODB__LEASE_TABLE", shared.dynamodb.lease_table.clone()),
        ("DYNAMODB__TABLE_PREFIX", shared.dynamodb.table_prefix.clone()),
        ("REDIS__URL", shared.redis.url.clone()),
        ("REDIS__KEY_PREFIX", shared.redis.key_prefix.clone()),
        (
            "CONSUMER__FAILOVER_TIME_MS",
            shared.consumer.failover_time_ms.to_string(),
        ),
        ("CONSUMER__IDLE_POLL_MS", shared.consumer.idle_poll_ms.to_string()),
        ("CONSUMER__WORKER_ID", worker.to_owned()),
        (
            "HISTORY__IDLE_CLOSE_SECS",
            shared.history.idle_close_secs.to_string(),
        ),
        ("TENANCY__UNKNOWN_VEHICLES", "provision".to_owned()),
        ("TENANCY__PROVISION_TENANT", "default".to_owned()),
        ("HTTP__LISTEN", "127.0.0.1:0".to_owned()),
        ("ADMIN__LISTEN", "127.0.0.1:0".to_owned()),
    ];
    if shared.backends.state == StateBackend::Dynamodb {
        vars.push(("BACKENDS__STATE", "dynamodb".to_owned()));
    }
    vars.extend(extra.iter().cloned());
    Command::new(env!("CARGO_BIN_EXE_fleetwire"))
        .arg("serve")
        .envs(vars.iter().map(|(k, v)| (format!("FLEETWIRE_{k}"), v.clone())))
        .envs(super::auth::env_vars())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the fleetwire binary starts")
}

/// Deletes the test's stream, its lease table when it used one, and its Redis keys (the
/// fan-out's replay logs) when it used the Redis fan-out.
pub async fn delete_resources(config: &Config) {
    if config.backends.fanout == FanOutBackend::Redis {
        super::redis_keys::delete_prefix(&config.redis.url, &config.redis.key_prefix);
    }
    KinesisStream::connect(&config.kinesis)
        .await
        .unwrap()
        .delete_stream()
        .await
        .unwrap();
    if config.backends.state == StateBackend::Dynamodb {
        let state = DynamoDbStateStore::connect(&config.dynamodb).await.unwrap();
        state.delete_table().await.unwrap();
        let registry = DynamoDbVehicleRegistry::connect(&config.dynamodb).await.unwrap();
        registry.delete_table().await.unwrap();
    }
    if config.backends.leases == LeasesBackend::Dynamodb {
        DynamoDbLeaseStore::connect(&config.dynamodb)
            .await
            .unwrap()
            .delete_table()
            .await
            .unwrap();
    }
}

/// `[vault.kms]` on moto's KMS (`FLEETWIRE_TEST_KMS_ENDPOINT`) with `key_id`.
pub fn kms_local(key_id: Option<String>) -> fleetwire::vault::kms::KmsConfig {
    fleetwire::vault::kms::KmsConfig {
        key_id,
        endpoint_url: Some(endpoint("FLEETWIRE_TEST_KMS_ENDPOINT")),
        static_credentials: true,
        ..fleetwire::vault::kms::KmsConfig::default()
    }
}

/// A new symmetric key on moto's KMS (its key id): one per test.
pub async fn create_kms_key() -> String {
    let key = kms_local(None)
        .client()
        .await
        .create_key()
        .description("fleetwire test: VIN vault data keys")
        .send()
        .await
        .expect("CreateKey");
    key.key_metadata().expect("key metadata").key_id().to_owned()
}
