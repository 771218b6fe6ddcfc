//! Typed configuration: TOML file + `FLEETWIRE_` environment overrides.
//!
//! Every section is a struct with `deny_unknown_fields`, so a misspelt key is an error
//! that names it. Defaults are the ones in `config/default.toml` (a test keeps the two in
//! step). Environment variables override the file: `FLEETWIRE_HTTP__LISTEN=0.0.0.0:8080`
//! sets `http.listen` (`__` separates nesting levels).

use std::net::SocketAddr;
use std::path::Path;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use fleetwire_actors::consumer::ConsumerConfig;
use fleetwire_actors::fleet::{FleetConfig, FleetRules};
use fleetwire_actors::producer::ProducerConfig;
use fleetwire_actors::pseudonym::{KeyError, Pseudonymizer};
use fleetwire_actors::subscriber::SubscriberConfig;
use fleetwire_actors::tenancy::TenancyConfig;
use fleetwire_actors::vehicle::VehicleConfig;
use serde::{Deserialize, Serialize};

use crate::backends::dynamodb::DynamoDbConfig;
use crate::backends::embedded::EmbeddedConfig;
use crate::backends::faults::FaultConfig;
use crate::backends::kinesis::KinesisConfig;
use crate::backends::redis::RedisConfig;
use crate::tesla::TeslaConfig;

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The public API listener: ingest, REST, SSE and the live page.
    pub http: HttpConfig,
    /// The admin listener: actor registry, health, readiness, metrics.
    pub admin: AdminConfig,
    /// Logging.
    pub log: LogConfig,
    /// Authentication of the public API (bearer JWTs, stream tickets).
    pub auth: crate::auth::AuthConfig,
    /// VIN pseudonymization.
    pub security: SecurityConfig,
    /// Keys of the VIN vault (pseudonym → encrypted VIN; same backend as `backends.state`).
    pub vault: crate::vault::VaultConfig,
    /// Which backend implements each port.
    pub backends: BackendsConfig,
    /// The Tesla Fleet Telemetry listener for vehicles (mTLS WebSocket).
    pub tesla: TeslaConfig,
    /// Settings of the embedded backends.
    pub embedded: EmbeddedConfig,
    /// Settings of the Kinesis stream (with `backends.stream = "kinesis"`).
    pub kinesis: KinesisConfig,
    /// The batching producer every stream write goes through.
    pub producer: ProducerConfig,
    /// Settings of Redis (with `backends.fanout = "redis"`).
    pub redis: RedisConfig,
    /// Settings of DynamoDB (with `backends.leases` or `backends.state` = `"dynamodb"`).
    pub dynamodb: DynamoDbConfig,
    /// Which tenant a record belongs to: the vehicle registry, and what happens to
    /// records of vehicles it does not know.
    pub tenancy: TenancyConfig,
    /// The shard-lease consumer.
    pub consumer: ConsumerConfig,
    /// Per-vehicle state actors.
    pub vehicles: VehicleConfig,
    /// SSE subscribers.
    pub subscribers: SubscriberConfig,
    /// Fleet intelligence: position filter, trips, offline checks, seeded rules.
    pub fleet: FleetConfig,
    /// History buckets and hourly aggregates (stored with `backends.state`).
    pub history: fleetwire_actors::history::HistoryConfig,
    /// The raw archive: every consumed record as JSON lines in hour-partitioned part files
    /// (a local directory or S3); off by default.
    pub archive: fleetwire_actors::archive::ArchiveConfig,
    /// Injected stream failures (tests, load tests, staging); off by default.
    pub faults: FaultConfig,
}

/// `[http]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Address of the public listener; port 0 picks a free port. Default `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// HTTP worker threads; 0 = one per CPU. Default 0.
    pub workers: usize,
    /// Largest accepted ingest body in bytes; larger bodies get 413. Default 1 MiB.
    pub max_body_bytes: usize,
    /// Most records in one ingest batch; more get 400. Default 1000.
    pub max_batch_records: usize,
    /// Seconds an in-flight request may take to finish at shutdown. Default 10.
    pub shutdown_timeout_secs: u64,
    /// Browser origins (e.g. `https://fleet.example.com`) allowed to call the API from
    /// another origin (CORS). The page's own origin is always allowed. Default none.
    pub cors_allowed_origins: Vec<String>,
    /// Also accept HTTP/2 without TLS (h2c, with prior knowledge) on the public listener;
    /// HTTP/1.1 is always accepted. For a proxy that speaks HTTP/2 to its targets, or
    /// clients that carry many SSE streams over one connection (each stream still counts
    /// against the SSE connection limits). Default false.
    pub h2c: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            workers: 0,
            max_body_bytes: 1024 * 1024,
            max_batch_records: 1000,
            shutdown_timeout_secs: 10,
            cors_allowed_origins: Vec::new(),
            h2c: false,
        }
    }
}

/// `[admin]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Address of the admin listener; keep it on a private network. Default `127.0.0.1:9090`.
    pub listen: SocketAddr,
    /// Platform-admin bearer token for `/admin/*` and `/metrics` (at least 32 characters;
    /// `FLEETWIRE_ADMIN__TOKEN` from a secret store). Unset: those endpoints answer 401 to
    /// everyone. `/healthz` and `/readyz` stay open for load balancers.
    pub token: Option<Secret>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
            token: None,
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line (for CloudWatch and other collectors).
    Json,
}

/// `[log]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// Output format. Default `text`.
    pub format: LogFormat,
    /// `tracing` filter directives; `RUST_LOG` overrides it. Default `info`.
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            filter: "info".to_owned(),
        }
    }
}

/// `[security]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecurityConfig {
    /// Key of the VIN pseudonymizer (HMAC-SHA256), at least 32 bytes as hex; set it from
    /// a secret store (`FLEETWIRE_SECURITY__PSEUDONYM_KEY`). Unset: a published
    /// development key, logged as a warning — vehicle ids are then not secret.
    pub pseudonym_key: Option<Secret>,
    /// Version of `pseudonym_key`, part of every vehicle id. Default 1.
    pub pseudonym_key_version: u32,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        Self {
            pseudonym_key: None,
            pseudonym_key_version: 1,
        }
    }
}

impl SecurityConfig {
    /// The pseudonymizer this configuration describes.
    pub fn pseudonymizer(&self) -> Result<Pseudonymizer, KeyError> {
        match &self.pseudonym_key {
            Some(key) => Pseudonymizer::from_hex(self.pseudonym_key_version, key.expose()),
            None => Ok(Pseudonymizer::development()),
        }
    }
}

/// A secret value: read from config like text, never printed (Debug and Serialize show
/// `"<redacted>"`), so `validate-config` and logs cannot leak it.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value made at run time (e.g. a generated token).
    pub fn new(value: String) -> Self {
        Self(value)
    }

    /// The value, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("<redacted>")
    }
}

/// Implementations of the record stream port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamBackend {
    /// In-process sharded log (`[embedded.stream]`).
    #[default]
    Embedded,
    /// Amazon Kinesis Data Streams or a compatible emulator (`[kinesis]`).
    Kinesis,
}

/// Implementations of the fan-out port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FanOutBackend {
    /// In-process broadcast: subscribers on this node only.
    #[default]
    Embedded,
    /// Redis pub/sub across nodes (`[redis]`).
    Redis,
}

/// Implementations of the lease store port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeasesBackend {
    /// redb database in `embedded.data_dir` (or in memory): one node only.
    #[default]
    Embedded,
    /// A DynamoDB table shared by every node (`[dynamodb]`).
    Dynamodb,
}

/// Implementations of the state store port, and with it of the vehicle registry: both
/// live where the vehicle data lives (a registry in one node's redb behind a shared
/// DynamoDB state would give each node its own idea of the tenants).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StateBackend {
    /// redb database in `embedded.data_dir` (or in memory): one node only.
    #[default]
    Embedded,
    /// The DynamoDB tables `<dynamodb.table_prefix>vehicles` and `…registry`.
    Dynamodb,
}

/// Implementations of the ingest API key store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiKeysBackend {
    /// redb database in `embedded.data_dir` (or in memory): one node only.
    #[default]
    Embedded,
    /// The `<table_prefix>api_keys` DynamoDB table shared by every node (`[dynamodb]`).
    Dynamodb,
}

/// `[backends]`
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackendsConfig {
    /// The record stream: `embedded` or `kinesis`. Default `embedded`.
    pub stream: StreamBackend,
    /// Shard leases and checkpoints: `embedded` or `dynamodb`. Default `embedded`.
    pub leases: LeasesBackend,
    /// Vehicle state and the vehicle registry: `embedded` or `dynamodb`. Default `embedded`.
    pub state: StateBackend,
    /// Fan-out of updates to subscribers: `embedded` or `redis`. Default `embedded`.
    pub fanout: FanOutBackend,
    /// Ingest API keys: `embedded` or `dynamodb`. Default `embedded`.
    pub api_keys: ApiKeysBackend,
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(String);

impl Config {
    /// Loads defaults, then `file` (when given), then `FLEETWIRE_*` environment variables.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_files(file.as_slice())
    }

    /// Loads defaults, then each file in order (a later file overrides keys of an earlier
    /// one, e.g. a profile plus a generated `[auth]` overlay), then `FLEETWIRE_*`
    /// environment variables.
    pub fn load_files<P: AsRef<Path>>(files: &[P]) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        for path in files.iter().map(AsRef::as_ref) {
            if !path.is_file() {
                return Err(ConfigError(format!(
                    "config file {} does not exist",
                    path.display()
                )));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        // Only `FLEETWIRE_<SECTION>__<KEY>` variables are config (every key sits in a
        // section); others with the prefix, like the test suite's endpoints, are not.
        figment = figment.merge(
            Env::prefixed("FLEETWIRE_")
                .filter(|k| k.as_str().contains("__"))
                .split("__"),
        );
        let config: Config = figment
            .extract()
            .map_err(|e| ConfigError(render_figment_error(e)))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks rules that types alone cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        if let Err(problem) = self.history.validate() {
            problems.push(problem);
        }
        if self.http.max_batch_records == 0 {
            problems.push("http.max_batch_records must be at least 1".to_owned());
        }
        if self.http.max_body_bytes < 1024 {
            problems.push("http.max_body_bytes must be at least 1024".to_owned());
        }
        if self.embedded.stream.shards == 0 {
            problems.push("embedded.stream.shards must be at least 1".to_owned());
        }
        if self.embedded.cache_mib == 0 {
            problems.push("embedded.cache_mib must be at least 1".to_owned());
        }
        if self.consumer.failover_time_ms < 300 {
            problems.push("consumer.failover_time_ms must be at least 300".to_owned());
        }
        let max_get = fleetwire_actors::ports::stream::MAX_GET_RECORDS_LIMIT;
        if !(1..=max_get).contains(&self.consumer.max_records_per_get) {
            problems.push(format!("consumer.max_records_per_get must be 1 to {max_get}"));
        }
        problems.extend(self.tesla.problems());
        problems.extend(self.archive.problems());
        if self.archive.enabled
            && self.archive.backend == fleetwire_actors::archive::ArchiveBackend::Directory
            && self.archive.directory.is_none()
            && self.embedded.data_dir.is_none()
        {
            problems.push(
                "archive.directory (or embedded.data_dir) must be set with backend = \"directory\""
                    .to_owned(),
            );
        }
        problems.extend(self.auth.problems());
        problems.extend(self.vault.problems());
        if self.vault.wrapper == crate::vault::WrapperKind::Kms
            && !matches!(self.backends.state, StateBackend::Dynamodb)
        {
            // The embedded vault keeps its keys in config; nothing would be wrapped.
            problems.push("vault.wrapper = \"kms\" needs backends.state = \"dynamodb\"".to_owned());
        }
        if let Some(bad) = self
            .http
            .cors_allowed_origins
            .iter()
            .find(|o| !(o.starts_with("https://") || o.starts_with("http://")) || o.contains('*'))
        {
            problems.push(format!(
                "http.cors_allowed_origins: {bad:?} is not an origin (scheme://host[:port], no wildcards)"
            ));
        }
        if self
            .admin
            .token
            .as_ref()
            .is_some_and(|t| t.expose().len() < crate::auth::admin::MIN_ADMIN_TOKEN_LEN)
        {
            problems.push(format!(
                "admin.token must be at least {} characters",
                crate::auth::admin::MIN_ADMIN_TOKEN_LEN
            ));
        }
        if let Err(e) = self.security.pseudonymizer() {
            problems.push(format!("security.pseudonym_key: {e}"));
        }
        if let Err(problem) = self.embedded.replay_retention().validate("embedded") {
            problems.push(problem);
        }
        problems.extend(self.subscribers.validate());
        if let Err(problem) = self.fleet.validate() {
            problems.push(problem);
        }
        if let Err(problem) = FleetRules::seeded(&self.fleet.tenants) {
            problems.push(problem);
        }
        if let Err(problem) = self.tenancy.policy() {
            problems.push(problem);
        }
        let uses_dynamodb = matches!(self.backends.state, StateBackend::Dynamodb)
            || matches!(self.backends.leases, LeasesBackend::Dynamodb);
        if uses_dynamodb && let Err(e) = self.dynamodb.validate() {
            problems.push(e.to_string());
        }
        if matches!(self.backends.state, StateBackend::Dynamodb)
            && self.dynamodb.dead_letter_payloads
                == crate::backends::dynamodb::DeadLetterPayloads::ArchiveBucket
            && (self.archive.backend != fleetwire_actors::archive::ArchiveBackend::S3
                || self.archive.bucket.trim().is_empty())
        {
            problems.push(
                "dynamodb.dead_letter_payloads = \"archive_bucket\" needs archive.backend = \"s3\" and archive.bucket"
                    .to_owned(),
            );
        }
        problems.extend(
            self.producer
                .problems()
                .into_iter()
                .map(|p| format!("producer.{p}")),
        );
        if self.http.max_batch_records > self.producer.max_pending {
            problems.push("http.max_batch_records must not exceed producer.max_pending".to_owned());
        }
        if self.http.listen.port() != 0 && self.http.listen == self.admin.listen {
            problems.push("http.listen and admin.listen must differ".to_owned());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError(problems.join("; ")))
        }
    }
}

/// Renders every error figment found, each with the key and source it came from.
fn render_figment_error(error: figment::Error) -> String {
    error
        .into_iter()
        .map(|e| {
            let key = if e.path.is_empty() {
                String::new()
            } else {
                format!("key `{}`: ", e.path.join("."))
            };
            let source = e
                .metadata
                .as_ref()
                .map(|m| match &m.source {
                    Some(src) => format!(" (from {src})"),
                    None => format!(" (from {})", m.name),
                })
                .unwrap_or_default();
            format!("{key}{}{source}", e.kind)
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn shipped_default_toml_matches_the_built_in_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/default.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let from_file: Config = toml_from_str(&text);
        assert_eq!(
            from_file,
            Config::default(),
            "config/default.toml drifted from Config::default()"
        );
    }

    #[test]
    fn every_shipped_config_is_valid() {
        for name in ["default.toml", "local.toml", "aws.toml"] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config").join(name);
            Figment::from(Serialized::defaults(Config::default()))
                .merge(Toml::file_exact(&path))
                .extract::<Config>()
                .unwrap_or_else(|e| panic!("{name}: {e}"))
                .validate()
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    #[test]
    fn dead_letter_payloads_in_the_archive_bucket_need_its_s3_settings() {
        use crate::backends::dynamodb::DeadLetterPayloads;
        use fleetwire_actors::archive::ArchiveBackend;
        let mut config = Config::default();
        config.backends.state = StateBackend::Dynamodb;
        config.dynamodb.dead_letter_payloads = DeadLetterPayloads::ArchiveBucket;
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("dynamodb.dead_letter_payloads"), "{err}");
        config.archive.backend = ArchiveBackend::S3;
        assert!(config.validate().is_err(), "no bucket yet");
        config.archive.bucket = "b".into();
        config
            .validate()
            .expect("the archive's S3 settings suffice, archive disabled or not");
        let aws: Config = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::file_exact(
                Path::new(env!("CARGO_MANIFEST_DIR")).join("config/aws.toml"),
            ))
            .extract()
            .unwrap();
        assert_eq!(
            aws.dynamodb.dead_letter_payloads,
            DeadLetterPayloads::ArchiveBucket,
            "the AWS profile keeps large payloads whole"
        );
    }

    // Tests that read the environment run inside `figment::Jail`, which serializes them
    // and restores the environment afterwards. Its closures must return figment's own
    // (large) error type, hence the `result_large_err` allowances.

    #[test]
    #[allow(clippy::result_large_err)]
    fn unknown_keys_are_named() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("f.toml", "[http]\nlisten = \"127.0.0.1:1\"\nlisen = 3\n")?;
            let err = Config::load(Some(Path::new("f.toml"))).unwrap_err().to_string();
            assert!(err.contains("lisen"), "{err}");
            assert!(err.contains("http"), "{err}");
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)]
    fn semantic_rules_are_checked() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "f.toml",
                "[http]\nmax_batch_records = 0\n[consumer]\nmax_records_per_get = 20000\n\
                 [producer]\nmax_in_flight = 0\n",
            )?;
            let err = Config::load(Some(Path::new("f.toml"))).unwrap_err().to_string();
            assert!(err.contains("max_batch_records"), "{err}");
            assert!(err.contains("max_records_per_get"), "{err}");
            assert!(err.contains("producer.max_in_flight"), "{err}");
            assert!(Config::load(Some(Path::new("/nonexistent/x.toml"))).is_err());
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)]
    fn environment_overrides_the_file() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("f.toml", "[http]\nlisten = \"127.0.0.1:1111\"\n")?;
            jail.set_env("FLEETWIRE_HTTP__LISTEN", "127.0.0.1:2222");
            jail.set_env("FLEETWIRE_CONSUMER__FAILOVER_TIME_MS", "20000");
            let config = Config::load(Some(Path::new("f.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(config.http.listen.port(), 2222);
            assert_eq!(config.consumer.failover_time_ms, 20000);
            jail.set_env("FLEETWIRE_TEST_ENDPOINT", "not config: no section");
            assert!(Config::load(Some(Path::new("f.toml"))).is_ok());
            jail.set_env("FLEETWIRE_HTTP__NOPE", "1");
            let err = Config::load(Some(Path::new("f.toml"))).unwrap_err().to_string();
            assert!(err.contains("nope"), "{err}");
            Ok(())
        });
    }

    fn toml_from_str(text: &str) -> Config {
        Figment::from(Toml::string(text)).extract().unwrap()
    }
}
