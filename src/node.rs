//! One fleetwire node: builds the ports from config, starts the actors and both HTTP
//! listeners, and shuts everything down in order.
//!
//! Start order: backends → actor registry → vehicle directory → lease coordinator (which
//! starts shard consumers) → subscriber hub → producer → HTTP listeners → vehicle listener.
//!
//! Shutdown order (nothing acknowledged is lost):
//! 1. `/readyz` turns 503 so a load balancer stops sending traffic.
//! 2. The vehicle listener closes every vehicle connection (a frame being stored finishes
//!    first, so its ack is either sent or rightly withheld); the public listener stops
//!    accepting; in-flight ingest requests finish; SSE streams end.
//! 3. The producer flushes and stops: no more lingering, every pending record ends stored,
//!    failed or (past the shutdown limit) dead-lettered. After this, every record this node
//!    acknowledged is on the stream and in the watermarks the drain waits for.
//! 4. Drain: wait until every shard checkpoint has reached the highest sequence number this
//!    node acknowledged (bounded by the shutdown limit).
//! 5. The lease coordinator stops its shard consumers (each writes a final checkpoint) and
//!    releases its leases so other nodes take them at once.
//! 6. Vehicle actors stop (their state is persisted before every acknowledgement); the
//!    archiver writes its open parts and stops (the drain flushed them already).
//! 7. The admin listener stops.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use actix::Addr;
use actix_web::dev::ServerHandle;
use actix_web::{App, HttpServer};
use anyhow::Context as _;
use fleetwire_actors::consumer::lease_cleanup::retired_ancestors;
use fleetwire_actors::consumer::{
    ConsumerStatus, GracefulShutdown, LeaseCoordinator, PartitionKeys, PseudonymizingRouter, RecordRouter,
};
use fleetwire_actors::ports::{
    Checkpoint, FanOut, HistoryStore, LeaseStore, RecordStream, StateStore, VehicleRegistry,
};
use fleetwire_actors::producer::{DeadLetterSink, Producer, ProducerHandle};
use fleetwire_actors::registry::ActorRegistry;

use fleetwire_actors::archive::ArchiveHandle;
use fleetwire_actors::fleet::FleetRules;
use fleetwire_actors::subscriber::{CloseAll, SubscriberHub, SubscriberServices};
use fleetwire_actors::tenancy::UnknownVehiclePolicy;
use fleetwire_actors::tenancy::{RegistrationCache, TenantRouter};
use fleetwire_actors::tesla::Topic;
use fleetwire_actors::vehicle::{FleetServices, HistoryServices, VehicleDirectory};
use tracing::{info, warn};

use crate::auth::api_keys::{ApiKeyStore, ApiKeys};
use crate::auth::{AdminCredential, Authenticator};
use crate::backends::dynamodb::{
    DynamoDbApiKeyStore, DynamoDbDeadLetters, DynamoDbLeaseStore, DynamoDbStateStore, DynamoDbVaultStore,
    DynamoDbVehicleRegistry,
};
use crate::backends::embedded::{
    self, EmbeddedStream, InProcessFanOut, RedbApiKeyStore, RedbDeadLetters, RedbLeaseStore, RedbStateStore,
    RedbVaultStore, RedbVehicleRegistry,
};
use crate::backends::faults::FaultyStream;
use crate::backends::kinesis::{KinesisConfig, KinesisStream};
use crate::backends::redis::RedisFanOut;
use crate::config::{ApiKeysBackend, Config, FanOutBackend, LeasesBackend, StateBackend, StreamBackend};
use crate::http::{self, AdminState, ApiState, ConnectionLimits, Readiness};
use crate::ingest::{AcceptedWatermarks, Ingestor};
use crate::observability;
use crate::tesla::{StreamSink, TeslaListener};
use crate::vault::keys::{ConfigKeys, DataKeys, StoredKeys};
use crate::vault::{VaultStore, VinRecorder, VinVault};

/// The ports, built from config.
#[derive(Clone)]
pub struct Ports {
    /// Record stream.
    pub stream: Arc<dyn RecordStream>,
    /// Shard leases and checkpoints.
    pub leases: Arc<dyn LeaseStore>,
    /// Vehicle state.
    pub state: Arc<dyn StateStore>,
    /// Vehicle → tenant (same backend as `state`).
    pub registry: Arc<dyn VehicleRegistry>,
    /// Ingest API keys (hashes only).
    pub api_keys: Arc<dyn ApiKeyStore>,
    /// Dead letters (same backend as `state`).
    pub dead_letters: Arc<dyn DeadLetterSink>,
    /// The VIN vault's items (same backend as `state`).
    pub vault: Arc<dyn VaultStore>,
    /// Update fan-out.
    pub fanout: Arc<dyn FanOut>,
    /// History buckets and hour aggregates (same backend as `state`).
    pub history: Arc<dyn HistoryStore>,
    /// Streams of the Tesla topics other than `V` (which is `stream`); empty unless the
    /// Tesla listener is enabled.
    pub topic_streams: HashMap<Topic, Arc<dyn RecordStream>>,
}

impl Ports {
    /// Waits until this is the last handle to every backend (stopped actors and HTTP
    /// workers drop theirs asynchronously), then drops them, which closes files and the
    /// database so the same data directory can be opened again at once.
    pub async fn close(self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let unique = |p: &Ports| {
            Arc::strong_count(&p.stream) == 1
                && Arc::strong_count(&p.leases) == 1
                && Arc::strong_count(&p.state) == 1
                && Arc::strong_count(&p.registry) == 1
                && Arc::strong_count(&p.api_keys) == 1
                && Arc::strong_count(&p.dead_letters) == 1
                && Arc::strong_count(&p.vault) == 1
                && Arc::strong_count(&p.fanout) == 1
                && Arc::strong_count(&p.history) == 1
                && p.topic_streams.values().all(|s| Arc::strong_count(s) == 1)
        };
        while !unique(&self) {
            if Instant::now() >= deadline {
                warn!(
                    stream = Arc::strong_count(&self.stream),
                    leases = Arc::strong_count(&self.leases),
                    state = Arc::strong_count(&self.state),
                    registry = Arc::strong_count(&self.registry),
                    fanout = Arc::strong_count(&self.fanout),
                    topic_streams = ?self.topic_streams.iter().map(|(t, s)| (t.as_str(), Arc::strong_count(s))).collect::<Vec<_>>(),
                    "backend handles still shared"
                );
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }

    /// Builds the backends the config names.
    pub async fn build(config: &Config) -> anyhow::Result<Self> {
        let b = &config.backends;
        let dir = config.embedded.data_dir.as_deref();
        let db = embedded::open_database_with_cache(dir, config.embedded.cache_mib)
            .context("opening the embedded database")?;
        type StateBackends = (
            Arc<dyn StateStore>,
            Arc<dyn VehicleRegistry>,
            Arc<dyn DeadLetterSink>,
            Arc<dyn VaultStore>,
        );
        let (state, registry, dead_letters, vault): StateBackends = match b.state {
            StateBackend::Embedded => (
                Arc::new(RedbStateStore::new(db.clone()).context("opening the state store")?),
                Arc::new(RedbVehicleRegistry::new(db.clone()).context("opening the vehicle registry")?),
                Arc::new(RedbDeadLetters::new(db.clone()).context("opening the dead-letter store")?),
                Arc::new(RedbVaultStore::new(db.clone()).context("opening the VIN vault")?),
            ),
            StateBackend::Dynamodb => {
                let cfg = &config.dynamodb;
                // Large dead-letter payloads go to the archive's bucket (config validation
                // checked that it is set).
                let dead_letter_bucket = match cfg.dead_letter_payloads {
                    crate::backends::dynamodb::DeadLetterPayloads::Truncate => None,
                    crate::backends::dynamodb::DeadLetterPayloads::ArchiveBucket => Some(
                        crate::backends::s3::S3Bucket::connect(&config.archive)
                            .await
                            .map_err(anyhow::Error::msg)
                            .context("the dead letters' payload bucket ([archive] S3 settings)")?,
                    ),
                };
                (
                    Arc::new(DynamoDbStateStore::connect(cfg).await.with_context(|| {
                        format!(
                            "connecting to state table {}",
                            cfg.table(crate::backends::dynamodb::VEHICLES_TABLE)
                        )
                    })?),
                    Arc::new(DynamoDbVehicleRegistry::connect(cfg).await.with_context(|| {
                        format!(
                            "connecting to registry table {}",
                            cfg.table(crate::backends::dynamodb::REGISTRY_TABLE)
                        )
                    })?),
                    Arc::new(
                        DynamoDbDeadLetters::connect(cfg, dead_letter_bucket)
                            .await
                            .with_context(|| {
                                format!(
                                    "connecting to dead-letter table {}",
                                    cfg.table(crate::backends::dynamodb::DEAD_LETTERS_TABLE)
                                )
                            })?,
                    ),
                    Arc::new(DynamoDbVaultStore::connect(cfg).await.with_context(|| {
                        format!(
                            "connecting to VIN vault table {}",
                            cfg.table(crate::backends::dynamodb::VIN_VAULT_TABLE)
                        )
                    })?),
                )
            }
        };
        let history_config = Arc::new(config.history.clone());
        let history: Arc<dyn HistoryStore> = match b.state {
            StateBackend::Embedded => Arc::new(
                embedded::RedbHistoryStore::new(db.clone(), history_config)
                    .context("opening the history store")?,
            ),
            StateBackend::Dynamodb => Arc::new(
                crate::backends::dynamodb::DynamoDbHistoryStore::connect(&config.dynamodb, history_config)
                    .await
                    .context("connecting to the history and aggregates tables")?,
            ),
        };
        let leases: Arc<dyn LeaseStore> = match b.leases {
            LeasesBackend::Embedded => {
                Arc::new(RedbLeaseStore::new(db.clone()).context("opening the lease store")?)
            }
            LeasesBackend::Dynamodb => Arc::new(
                DynamoDbLeaseStore::connect(&config.dynamodb)
                    .await
                    .with_context(|| format!("connecting to lease table {}", config.dynamodb.lease_table))?,
            ),
        };
        let stream: Arc<dyn RecordStream> = match b.stream {
            StreamBackend::Embedded => Arc::new(
                EmbeddedStream::open(&config.embedded.stream, dir).context("opening the embedded stream")?,
            ),
            // The stream the shard consumers read: polling or enhanced fan-out by
            // `kinesis.read_mode`.
            StreamBackend::Kinesis => crate::backends::kinesis::connect_record_stream(&config.kinesis)
                .await
                .with_context(|| format!("connecting to Kinesis stream {}", config.kinesis.stream_name))?,
        };
        let stream: Arc<dyn RecordStream> = if config.faults.any() {
            warn!(faults = ?config.faults, "Injecting stream faults ([faults]): for tests and staging only.");
            Arc::new(FaultyStream::new(stream, config.faults.clone()))
        } else {
            stream
        };
        let fanout: Arc<dyn FanOut> = match b.fanout {
            FanOutBackend::Embedded => Arc::new(InProcessFanOut::new(
                config.embedded.fanout_capacity,
                config.embedded.replay_retention(),
            )),
            FanOutBackend::Redis => Arc::new(RedisFanOut::new(&config.redis).context("configuring Redis")?),
        };
        let api_keys: Arc<dyn ApiKeyStore> = match b.api_keys {
            ApiKeysBackend::Embedded => {
                Arc::new(RedbApiKeyStore::new(db.clone()).context("opening the API key store")?)
            }
            ApiKeysBackend::Dynamodb => Arc::new(
                DynamoDbApiKeyStore::connect(&config.dynamodb)
                    .await
                    .context("connecting to the API key table")?,
            ),
        };
        let topic_streams = if config.tesla.enabled {
            topic_streams(config).await?
        } else {
            HashMap::new()
        };
        Ok(Self {
            stream,
            topic_streams,
            leases,
            state,
            registry,
            api_keys,
            dead_letters,
            vault,
            fanout,
            history,
        })
    }
}

/// The VIN vault's data keys: from `[vault] keys` on the embedded backend; on DynamoDB
/// stored in the vault itself, wrapped as `vault.wrapper` says (a local key or KMS).
async fn data_keys(config: &Config, ports: &Ports) -> anyhow::Result<Arc<dyn DataKeys>> {
    let v = &config.vault;
    Ok(match config.backends.state {
        StateBackend::Embedded => {
            let keys = ConfigKeys::from_config(v).map_err(anyhow::Error::msg)?;
            if keys.is_development() {
                warn!("vault.keys is not set: VINs are encrypted with the published development key.");
            }
            Arc::new(keys)
        }
        StateBackend::Dynamodb => Arc::new(StoredKeys::new(
            ports.vault.clone(),
            v.key_wrapper().await?,
            v.key_version,
        )),
    })
}

/// Opens the streams of the Tesla topics other than `V`, on the same backend as the main
/// stream (embedded: one folder per topic under the data directory).
async fn topic_streams(config: &Config) -> anyhow::Result<HashMap<Topic, Arc<dyn RecordStream>>> {
    let mut streams: HashMap<Topic, Arc<dyn RecordStream>> = HashMap::new();
    let k = &config.kinesis;
    for (topic, kinesis_name) in [
        (Topic::Alerts, &k.alerts_stream_name),
        (Topic::Errors, &k.errors_stream_name),
        (Topic::Connectivity, &k.connectivity_stream_name),
    ] {
        let stream: Arc<dyn RecordStream> = match config.backends.stream {
            StreamBackend::Embedded => {
                let dir = config
                    .embedded
                    .data_dir
                    .as_ref()
                    .map(|d| d.join("topics").join(topic.as_str()));
                Arc::new(
                    EmbeddedStream::open(&config.embedded.stream, dir.as_deref())
                        .with_context(|| format!("opening the embedded {} stream", topic.as_str()))?,
                )
            }
            StreamBackend::Kinesis => {
                // Written only, so always the polling client (no consumer to register).
                let cfg = KinesisConfig {
                    stream_name: kinesis_name.clone(),
                    read_mode: crate::backends::kinesis::ReadMode::Polling,
                    ..k.clone()
                };
                Arc::new(
                    KinesisStream::connect(&cfg)
                        .await
                        .with_context(|| format!("connecting to Kinesis stream {kinesis_name}"))?,
                )
            }
        };
        streams.insert(topic, stream);
    }
    Ok(streams)
}

/// A running node.
pub struct Node {
    api_addr: SocketAddr,
    tesla: Option<TeslaListener>,
    admin_addr: SocketAddr,
    api_server: ServerHandle,
    admin_server: ServerHandle,
    coordinator: Addr<LeaseCoordinator>,
    directory: VehicleDirectory,
    hub: Addr<SubscriberHub>,
    ports: Ports,
    consumer: ConsumerStatus,
    watermarks: AcceptedWatermarks,
    shutting_down: Arc<AtomicBool>,
    producer: ProducerHandle,
    /// The raw archive's writer (`[archive]`), flushed by the drain and closed last.
    archive: Option<ArchiveHandle>,
}

/// What shutdown did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Every acknowledged record was checkpointed before the consumers stopped.
    pub drained: bool,
    /// Subscribers whose streams were closed.
    pub subscribers_closed: usize,
}

impl Node {
    /// Starts a node. Must run inside an actix System (`#[actix_web::main]`, `#[actix_rt::test]`).
    pub async fn start(config: Config) -> anyhow::Result<Self> {
        crate::install_crypto_provider();
        // Authentication is not optional: without keys to check tokens against the node
        // does not start.
        let auth = Arc::new(
            Authenticator::start(&config.auth)
                .await
                .context("authentication")?,
        );
        let credential = AdminCredential::new(config.admin.token.as_ref());
        if !credential.is_configured() {
            warn!("admin.token is not set: /admin/* and /metrics refuse every request.");
        }
        let metrics = observability::metrics_handle();
        spawn_metrics_upkeep(metrics.clone());

        // Bind every listener before any actor starts: a port in use is then a clean
        // error, with nothing to stop.
        let bind = |addr: SocketAddr, what: &str| {
            listen(addr).with_context(|| format!("binding the {what} listener {addr}"))
        };
        let api_listener = bind(config.http.listen, "public")?;
        let admin_listener = bind(config.admin.listen, "admin")?;
        let vehicle_listener = match config.tesla.enabled {
            true => Some(bind(config.tesla.listen, "vehicle")?),
            false => None,
        };

        let ports = Ports::build(&config).await?;
        let registry = ActorRegistry::new();
        // Checked by `Config::validate` already; seeded once, shared by actors and REST.
        let fleet_rules = FleetRules::seeded(&config.fleet.tenants).map_err(anyhow::Error::msg)?;
        let directory = VehicleDirectory::with_fleet(
            config.vehicles.clone(),
            ports.state.clone(),
            ports.fanout.clone(),
            registry.clone(),
            FleetServices {
                config: Arc::new(config.fleet.clone()),
                rules: fleet_rules.clone(),
            },
        );
        let directory = if config.history.enabled {
            directory.with_history(HistoryServices {
                config: Arc::new(config.history.clone()),
                store: ports.history.clone(),
            })
        } else {
            directory
        };
        // Records the producer gives up on, records of unprovisioned or suspended vehicles
        // and undecodable records share the node's dead-letter store.
        let dead_letters = ports.dead_letters.clone();
        let tenants = TenantRouter::new(
            &config.tenancy,
            directory.clone(),
            ports.registry.clone(),
            dead_letters.clone(),
        )
        .map_err(anyhow::Error::msg)?
        .with_stream_name(match config.backends.stream {
            StreamBackend::Embedded => "embedded".to_owned(),
            StreamBackend::Kinesis => config.kinesis.stream_name.clone(),
        });
        let archive = crate::backends::archive::start_archive(&config, &registry).await?;
        let tenants = match &archive {
            Some(archive) => tenants.with_archive(archive.clone()),
            None => tenants,
        };
        let router: Arc<dyn RecordRouter> = match config.consumer.partition_keys {
            PartitionKeys::VehicleIds => Arc::new(tenants),
            PartitionKeys::Vins => Arc::new(PseudonymizingRouter::new(
                tenants,
                config.security.pseudonymizer()?,
            )),
        };
        let (coordinator, consumer) = LeaseCoordinator::start(
            config.consumer.clone(),
            ports.stream.clone(),
            ports.leases.clone(),
            router,
            registry.clone(),
        );
        let hub = SubscriberHub::start(ports.fanout.clone(), &registry);
        let shutting_down = Arc::new(AtomicBool::new(false));
        let producer = Producer::start_registered(
            &config.producer,
            ports.stream.clone(),
            dead_letters.clone(),
            &registry,
        );
        let ingestor = Ingestor::new(ports.stream.clone(), config.http.max_batch_records)
            .with_producer(producer.clone());
        let watermarks = ingestor.watermarks().clone();
        let vin_vault = VinVault::new(ports.vault.clone(), data_keys(&config, &ports).await?);
        let tesla = if let Some(listener) = vehicle_listener {
            let pseudonymizer = config.security.pseudonymizer()?;
            if config.security.pseudonym_key.is_none() {
                warn!("security.pseudonym_key is not set: vehicle ids use the published development key.");
            }
            let sink = StreamSink::new(ingestor.clone(), ports.topic_streams.clone());
            let recorder = VinRecorder::new(vin_vault.clone(), ports.registry.clone());
            Some(
                TeslaListener::start(
                    &config.tesla,
                    listener,
                    Arc::new(sink),
                    pseudonymizer,
                    Arc::new(recorder),
                    registry.clone(),
                )
                .await?,
            )
        } else {
            None
        };

        let api_state = ApiState {
            history: ports.history.clone(),
            history_bucket_ms: config.history.bucket_ms(),
            ingestor,
            store: ports.state.clone(),
            subscribers: SubscriberServices {
                hub: hub.clone(),
                fanout: ports.fanout.clone(),
                registry: registry.clone(),
                config: config.subscribers.clone(),
            },
            limits: ConnectionLimits::new(
                config.subscribers.max_connections_per_node,
                config.subscribers.max_connections_per_tenant,
            ),
            max_body_bytes: config.http.max_body_bytes,
            fleet_rules,
            auth,
            api_keys: Arc::new(ApiKeys::new(
                ports.api_keys.clone(),
                std::num::NonZeroU32::new(config.auth.ingest_requests_per_sec)
                    .unwrap_or(std::num::NonZeroU32::MIN),
                std::num::NonZeroU32::new(config.auth.ingest_burst).unwrap_or(std::num::NonZeroU32::MIN),
            )),
            registry: ports.registry.clone(),
            registrations: Arc::new(std::sync::Mutex::new(RegistrationCache::new(
                config.tenancy.cache_ttl(),
                config.tenancy.cache_capacity,
            ))),
            unknown_vehicles_to: match config.tenancy.policy() {
                Ok(UnknownVehiclePolicy::Provision(tenant)) => Some(tenant),
                _ => None,
            },
        };
        let dead_letter_service = http::dead_letters::DeadLetterService {
            store: ports.dead_letters.clone(),
            producer: producer.clone(),
        };
        let api_dead_letters = dead_letter_service.clone();
        let vin_service = http::vin::VinService {
            vault: vin_vault,
            registry: ports.registry.clone(),
        };
        let cors_origins = config.http.cors_allowed_origins.clone();
        let mut api = HttpServer::new(move || {
            App::new()
                .wrap(http::hardening::cors(&cors_origins))
                .wrap(http::hardening::security_headers())
                .wrap(actix_web::middleware::ErrorHandlers::new().handler(
                    actix_web::http::StatusCode::METHOD_NOT_ALLOWED,
                    http::json_method_not_allowed,
                ))
                .configure(http::api_routes(api_state.clone()))
                .configure(http::dead_letters::api_routes(api_dead_letters.clone()))
                .configure(http::vin::routes(vin_service.clone()))
        })
        .shutdown_timeout(config.http.shutdown_timeout_secs)
        .disable_signals();
        if config.http.workers > 0 {
            api = api.workers(config.http.workers);
        }
        let api = if config.http.h2c {
            api.listen_auto_h2c(api_listener)
        } else {
            api.listen(api_listener)
        }
        .with_context(|| format!("listening on {}", config.http.listen))?;
        let api_addr = api.addrs()[0];
        let api = api.run();
        let api_server = api.handle();
        actix_rt::spawn(api);

        let admin_state = AdminState {
            registry: registry.clone(),
            readiness: Readiness {
                ports: ports.clone(),
                consumer: consumer.clone(),
                shutting_down: shutting_down.clone(),
            },
            metrics,
            credential,
        };
        let admin = HttpServer::new(move || {
            App::new()
                .configure(http::admin_routes(admin_state.clone()))
                .configure(http::dead_letters::admin_routes(dead_letter_service.clone()))
        })
        .workers(1)
        .shutdown_timeout(1)
        .disable_signals()
        .listen(admin_listener)
        .with_context(|| format!("listening on {}", config.admin.listen))?;
        let admin_addr = admin.addrs()[0];
        let admin = admin.run();
        let admin_server = admin.handle();
        actix_rt::spawn(admin);

        info!(api = %api_addr, admin = %admin_addr, worker = %consumer.worker_id(), "fleetwire node started.");
        Ok(Self {
            api_addr,
            admin_addr,
            tesla,
            api_server,
            admin_server,
            coordinator,
            directory,
            hub,
            ports,
            consumer,
            watermarks,
            shutting_down,
            producer,
            archive,
        })
    }

    /// Address of the public listener.
    pub fn api_addr(&self) -> SocketAddr {
        self.api_addr
    }

    /// Address of the admin listener.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// Address of the vehicle listener, when enabled.
    pub fn tesla_addr(&self) -> Option<SocketAddr> {
        self.tesla.as_ref().map(TeslaListener::local_addr)
    }

    /// Vehicles connected to this node's vehicle listener.
    pub fn connected_vehicles(&self) -> usize {
        self.tesla.as_ref().map_or(0, |t| t.directory().len())
    }

    /// The backends this node uses.
    pub fn ports(&self) -> &Ports {
        &self.ports
    }

    /// The vehicle registry (vehicle → tenant), e.g. to provision vehicles in tests until
    /// the vehicles API exists.
    pub fn vehicle_registry(&self) -> Arc<dyn VehicleRegistry> {
        self.ports.registry.clone()
    }

    /// The dead-letter store: records the producer gave up on, records of unprovisioned
    /// or suspended vehicles, undecodable records.
    pub fn dead_letters(&self) -> Arc<dyn DeadLetterSink> {
        self.ports.dead_letters.clone()
    }

    /// Shuts down in order (see the module docs). `limit` bounds the producer flush and
    /// the drain wait together.
    pub async fn shutdown(mut self, limit: Duration) -> ShutdownReport {
        info!("Shutting down: no longer ready, stopping ingest.");
        self.shutting_down.store(true, Ordering::Relaxed);
        if let Some(tesla) = self.tesla.take() {
            tesla.shutdown(limit.min(Duration::from_secs(10))).await;
        }
        let stop_api = self.api_server.stop(true);
        let subscribers_closed = self.hub.send(CloseAll).await.unwrap_or(0);
        stop_api.await;

        let started = Instant::now();
        info!("Flushing the producer: every pending record reaches the stream or a dead letter.");
        self.producer.close(limit).await;

        info!("Draining: waiting for checkpoints to reach every acknowledged record.");
        let drained = self.drain(limit.saturating_sub(started.elapsed())).await;
        if !drained {
            warn!(
                "Drain did not finish within {limit:?}; unprocessed records stay on the stream for the next owner."
            );
        }
        if let Some(archive) = &self.archive {
            // A consumer waiting for a dead archive backend would never finish its batch.
            archive.give_up_after(
                limit
                    .saturating_sub(started.elapsed())
                    .max(Duration::from_secs(1)),
            );
        }
        if self.coordinator.send(GracefulShutdown).await.is_err() {
            warn!("Lease coordinator was already stopped.");
        }
        self.directory.shutdown().await;
        // Consumers are stopped: no more batches; write what is buffered.
        if let Some(archive) = &self.archive
            && !archive.close(limit).await
        {
            warn!(
                "The archive could not write its last parts within {limit:?}; their records were not checkpointed."
            );
        }
        self.admin_server.stop(true).await;
        let worker = self.consumer.worker_id();
        let Node {
            ports,
            directory,
            hub,
            coordinator,
            ..
        } = self;
        drop((directory, hub, coordinator));
        if !ports.close(Duration::from_secs(5)).await {
            warn!("Some backend handles were still in use after shutdown.");
        }
        info!(drained, subscribers_closed, %worker, "fleetwire node stopped.");
        ShutdownReport {
            drained,
            subscribers_closed,
        }
    }

    /// Waits until each shard's checkpoint is at or past the highest sequence number this
    /// node acknowledged (or the shard has ended, or its finished lease was deleted).
    async fn drain(&self, limit: Duration) -> bool {
        let targets = self.watermarks.snapshot();
        let deadline = Instant::now() + limit;
        // Vehicle actors defer writes (coalesced state, open history buckets) and the
        // checkpoints wait for them: ask for them now, and again while records still
        // arrive (not every poll, so buckets are not split into many merges).
        let mut last_flush: Option<Instant> = None;
        loop {
            if last_flush.is_none_or(|t| t.elapsed() >= Duration::from_millis(500)) {
                self.directory.flush_deferred();
                // Archive parts hold checkpoints back until written (up to max_age_secs).
                if let Some(archive) = &self.archive {
                    archive.flush();
                }
                last_flush = Some(Instant::now());
            }
            if let Ok(leases) = self.ports.leases.list_leases().await {
                let reached = |shard: &str, target| {
                    leases.iter().any(|l| {
                        l.lease_key == shard
                            && match &l.checkpoint {
                                Checkpoint::ShardEnd => true,
                                Checkpoint::Sequence(seq) => seq >= target,
                                _ => false,
                            }
                    })
                };
                let open: Vec<&str> = targets
                    .iter()
                    .filter(|(shard, target)| !reached(&shard.0, target))
                    .map(|(shard, _)| shard.0.as_str())
                    .collect();
                if open.is_empty() {
                    return true;
                }
                // A missing lease is either not created yet (a new shard: not drained) or
                // deleted after its shard ended (an ancestor of a leased shard: drained).
                // Only then are the shards listed.
                if !open.iter().any(|s| leases.iter().any(|l| l.lease_key == *s)) {
                    let shards = self.ports.stream.list_shards().await.unwrap_or_default();
                    let retired = retired_ancestors(&shards, &leases);
                    if open.iter().all(|s| retired.contains(*s)) {
                        return true;
                    }
                }
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A listening socket with address reuse (a restarted node rebinds at once) and a backlog
/// deep enough for a fleet reconnecting at once (the OS default of 128 drops SYNs).
fn listen(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)?.into_std()
}

/// Histograms need periodic upkeep to drain their buckets.
fn spawn_metrics_upkeep(handle: metrics_exporter_prometheus::PrometheusHandle) {
    static STARTED: std::sync::Once = std::sync::Once::new();
    STARTED.call_once(|| {
        std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(Duration::from_secs(5));
                    handle.run_upkeep();
                }
            })
            .expect("spawning a thread succeeds");
    });
}
