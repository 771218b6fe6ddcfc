//! Issue #5's privacy check: vehicles send every Tesla fixture frame over mTLS to a node
//! whose state, registry, leases, API keys, dead letters and VIN vault are in DynamoDB
//! Local and whose stream is on disk; then every item of every table of the test, every
//! file of the data directory (redb, stream segments) and every captured log line is
//! searched for each VIN. A clear VIN must be found nowhere: the vault holds ciphertext.
//!
//! Two of the four VINs are provisioned (their records are applied), two are not (their
//! records become dead letters), so every table has content. The vault's data key is wrapped
//! by KMS, as in the AWS profile. Needs `FLEETWIRE_TEST_DYNAMODB_ENDPOINT` and
//! `FLEETWIRE_TEST_KMS_ENDPOINT`.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use common::tesla::{TeslaNode, cases, frame, tesla_config};
use common::{WAIT, eventually, eventually_some};
use fleetwire::config::{ApiKeysBackend, LeasesBackend, StateBackend};
use fleetwire::vault::WrapperKind;
use fleetwire_actors::model::{TenantId, VehicleId};
use fleetwire_actors::ports::{Registration, VehicleStatus};
use fleetwire_actors::tenancy::TenancyConfig;
use fleetwire_loadtest::pki::DevPki;
use tracing_subscriber::fmt::MakeWriter;

/// Every log line of the process, as the JSON the AWS profile writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

fn find(haystack: &[u8], needle: &str) -> bool {
    let upper = needle.to_ascii_uppercase();
    let lower = needle.to_ascii_lowercase();
    haystack
        .windows(needle.len())
        .any(|w| w == upper.as_bytes() || w == lower.as_bytes())
}

/// Every byte of an attribute value, strings and binaries alike (nested too).
fn bytes_of(value: &AttributeValue, out: &mut Vec<u8>) {
    match value {
        AttributeValue::S(s) | AttributeValue::N(s) => out.extend_from_slice(s.as_bytes()),
        AttributeValue::B(b) => out.extend_from_slice(b.as_ref()),
        AttributeValue::Ss(v) | AttributeValue::Ns(v) => {
            v.iter().for_each(|s| out.extend_from_slice(s.as_bytes()))
        }
        AttributeValue::Bs(v) => v.iter().for_each(|b| out.extend_from_slice(b.as_ref())),
        AttributeValue::M(m) => m.iter().for_each(|(k, v)| {
            out.extend_from_slice(k.as_bytes());
            bytes_of(v, out);
        }),
        AttributeValue::L(l) => l.iter().for_each(|v| bytes_of(v, out)),
        _ => {}
    }
}

fn files_under(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

#[actix_rt::test]
async fn no_clear_vin_is_stored_or_logged_anywhere_but_encrypted_in_the_vault() {
    let logs = Captured::default();
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_env_filter("debug,aws_smithy_runtime=info,aws_config=info,hyper=info,h2=info,rustls=info")
        .with_writer(logs.clone())
        .try_init()
        .expect("this test binary installs the only subscriber");

    let pki_dir = tempfile::tempdir().unwrap();
    let data_dir = tempfile::tempdir().unwrap();
    let pki = DevPki::load_or_create(pki_dir.path()).unwrap();
    let mut config = tesla_config(&pki);
    let prefix = format!("{}-", common::cloud::unique("fw-novin"));
    config.embedded.data_dir = Some(data_dir.path().to_owned());
    config.backends.state = StateBackend::Dynamodb;
    config.backends.leases = LeasesBackend::Dynamodb;
    config.backends.api_keys = ApiKeysBackend::Dynamodb;
    config.dynamodb.endpoint_url = Some(
        std::env::var("FLEETWIRE_TEST_DYNAMODB_ENDPOINT")
            .expect("FLEETWIRE_TEST_DYNAMODB_ENDPOINT is not set: scripts/emulators start dynamodb"),
    );
    config.dynamodb.static_credentials = true;
    config.dynamodb.create_tables_if_missing = true;
    config.dynamodb.table_prefix = prefix.clone();
    config.dynamodb.lease_table = format!("{prefix}leases");
    // Unknown vehicles are dead-lettered, so the dead-letter table gets content too.
    config.tenancy = TenancyConfig {
        cache_ttl_secs: 0,
        ..TenancyConfig::default()
    };
    // The raw archive under the data directory: scanned with every other file below.
    config.archive.enabled = true;
    // The vault's data keys wrapped by KMS, as in the AWS profile (moto's KMS).
    config.vault.wrapper = WrapperKind::Kms;
    config.vault.kms = common::cloud::kms_local(Some(common::cloud::create_kms_key().await));
    let dynamodb = config.dynamodb.clone();
    let kms = config.vault.kms.clone();
    let node = TeslaNode::start(pki, config).await;

    let mut vins: Vec<String> = cases()
        .iter()
        .map(|c| c["device_vin"].as_str().unwrap().to_owned())
        .collect();
    vins.sort();
    vins.dedup();
    assert_eq!(vins.len(), 4);
    let (provisioned, strangers) = vins.split_at(2);
    let registry = node.node.node.vehicle_registry();
    for vin in provisioned {
        registry
            .provision(&Registration {
                vehicle_id: VehicleId(node.vehicle_id(vin)),
                tenant: TenantId::parse(TenantId::DEFAULT).unwrap(),
                display_name: None,
                status: VehicleStatus::Active,
                provisioned_at: chrono::Utc::now(),
            })
            .await
            .unwrap();
    }

    // Every fixture frame, each on its VIN's connection; replies are drained by a probe
    // (the probe's ack comes after every reply to the frame before it).
    for case in cases() {
        let vin = case["device_vin"].as_str().unwrap();
        let mut client = node.vehicle(vin).await;
        client.send(frame(case["file"].as_str().unwrap())).await.unwrap();
        let mut signals = std::collections::BTreeMap::new();
        signals.insert(
            "VehicleSpeed".to_owned(),
            fleetwire_actors::model::SignalValue::Float(1.0),
        );
        let (txid, probe) = client.vehicle_data_frame(chrono::Utc::now(), &signals).unwrap();
        client.send(probe).await.unwrap();
        loop {
            let reply = tokio::time::timeout(WAIT, client.reply()).await.unwrap().unwrap();
            if reply.message_type == 5 && reply.txid == txid {
                break;
            }
        }
        client.close().await;
    }

    // The provisioned vehicles' state is applied; the strangers' records are dead letters.
    for vin in provisioned {
        let url = format!("{}/v1/vehicles/{}", node.node.api, node.vehicle_id(vin));
        eventually("a provisioned vehicle's state", || async {
            node.node.get(&url).await.0 == 200
        })
        .await;
    }
    let unknown = eventually_some("the strangers' dead letters", || async {
        let letters = node.node.dead_letters(&["_unknown"]).await;
        let keys: std::collections::BTreeSet<String> =
            letters.iter().map(|l| l.partition_key.clone()).collect();
        (keys.len() == 2).then_some(letters)
    })
    .await;
    assert!(unknown.iter().all(|l| l.reason == "unprovisioned"));

    // A tenant admin resolves its vehicle's VIN (audit-logged); another tenant cannot.
    let resolve = |vin: &str| format!("{}/v1/vehicles/{}/vin", node.node.api, node.vehicle_id(vin));
    let answer = eventually_some("the VIN resolves", || async {
        let r = node
            .node
            .client
            .post(resolve(&provisioned[0]))
            .send()
            .await
            .unwrap();
        (r.status() == 200).then_some(r)
    })
    .await;
    assert_eq!(answer.headers().get("cache-control").unwrap(), "no-store");
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(body["vin"], provisioned[0].as_str());
    let stranger_tenant = common::client_with_token(
        &common::auth::token("acme", fleetwire::auth::Role::TenantAdmin),
        None,
    );
    let r = stranger_tenant
        .post(resolve(&provisioned[0]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "another tenant's vehicle does not resolve");
    let operator = common::client_with_token(
        &common::auth::token(TenantId::DEFAULT, fleetwire::auth::Role::Operator),
        None,
    );
    assert_eq!(
        operator
            .post(resolve(&provisioned[0]))
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    // The unprovisioned vehicles' VINs were vaulted at first sight too (under `_unknown`).
    eventually("every VIN vaulted", || async {
        let store = fleetwire::backends::dynamodb::DynamoDbVaultStore::connect(&dynamodb)
            .await
            .unwrap();
        let mut all = true;
        for vin in &vins {
            let id = VehicleId(node.vehicle_id(vin));
            let owner = if provisioned.contains(vin) {
                TenantId::DEFAULT
            } else {
                "_unknown"
            };
            let pk = fleetwire::vault::vin_pk(&TenantId::parse(owner).unwrap(), &id);
            all &= fleetwire::vault::VaultStore::get(&store, &pk)
                .await
                .unwrap()
                .is_some();
        }
        all
    })
    .await;
    // The node wrapped its data key with the test's KMS key.
    let store = fleetwire::backends::dynamodb::DynamoDbVaultStore::connect(&dynamodb)
        .await
        .unwrap();
    let key_item = fleetwire::vault::VaultStore::get(&store, &fleetwire::vault::keys::key_pk(1))
        .await
        .unwrap()
        .expect("the data key is stored");
    let wrapper = fleetwire::vault::kms::KmsKeyWrapper::new(&kms).await.unwrap();
    let key = fleetwire::vault::keys::KeyWrapper::unwrap(&wrapper, 1, &key_item.ct).await;
    assert_eq!(key.map(|k| k.len()), Ok(32), "a KMS-wrapped AES-256 key");

    let pseudonym = |vin: &str| node.vehicle_id(vin);
    let (first_id, stranger_id) = (pseudonym(&provisioned[0]), pseudonym(&strangers[0]));
    node.node.shutdown(Duration::from_secs(10)).await;

    // Every table of this test, every item, every attribute.
    let client = dynamodb.client().await;
    let tables: Vec<String> = client
        .list_tables()
        .send()
        .await
        .unwrap()
        .table_names()
        .iter()
        .filter(|t| t.starts_with(&prefix))
        .cloned()
        .collect();
    for logical in [
        "vehicles",
        "registry",
        "leases",
        "api_keys",
        "dead_letters",
        "vin_vault",
    ] {
        assert!(
            tables.contains(&format!("{prefix}{logical}")),
            "table {logical} in {tables:?}"
        );
    }
    let mut vault_items = 0;
    for table in &tables {
        let mut start = None;
        let mut items = 0;
        let mut table_bytes = Vec::new();
        loop {
            let out = client
                .scan()
                .table_name(table)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .unwrap();
            for item in out.items() {
                items += 1;
                let mut bytes = Vec::new();
                for (name, value) in item {
                    bytes.extend_from_slice(name.as_bytes());
                    bytes_of(value, &mut bytes);
                }
                for vin in &vins {
                    assert!(!find(&bytes, vin), "a clear VIN in table {table}: {item:?}");
                }
                table_bytes.extend(bytes);
            }
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        assert!(items > 0, "table {table} is empty: the scan would prove nothing");
        if table.ends_with("vin_vault") {
            vault_items = items;
        }
        if table.ends_with("vehicles") || table.ends_with("dead_letters") {
            // The scan does see the pseudonyms, so it would see a VIN.
            let id = if table.ends_with("vehicles") {
                &first_id
            } else {
                &stranger_id
            };
            assert!(find(&table_bytes, id), "{table} holds the pseudonym {id}");
        }
        client.delete_table().table_name(table).send().await.unwrap();
    }
    assert_eq!(vault_items, 4 + 1, "four VINs and one data key");

    // Every file the node wrote: the redb database, the stream segments of every topic, the
    // archive's parts (written at shutdown).
    let mut files = Vec::new();
    files_under(data_dir.path(), &mut files);
    assert!(files.iter().any(|f| f.ends_with("fleetwire.redb")), "{files:?}");
    let parts: Vec<_> = files
        .iter()
        .filter(|f| f.starts_with(data_dir.path().join("archive/raw")))
        .collect();
    assert!(!parts.is_empty(), "the archive holds parts: {files:?}");
    assert!(
        parts.iter().any(|p| find(&std::fs::read(p).unwrap(), &first_id)),
        "the archive holds the pseudonyms"
    );
    let mut seen_pseudonym = false;
    for file in &files {
        let bytes = std::fs::read(file).unwrap();
        for vin in &vins {
            assert!(!find(&bytes, vin), "a clear VIN in {}", file.display());
        }
        seen_pseudonym |= find(&bytes, &first_id);
    }
    assert!(
        seen_pseudonym,
        "the stream files hold the pseudonyms (the search works)"
    );

    // Every log line.
    let logs = logs.0.lock().unwrap().clone();
    let text = String::from_utf8_lossy(&logs);
    assert!(
        text.contains(r#""action":"vin_resolve""#),
        "the resolve is audit-logged"
    );
    assert!(text.contains(r#""outcome":"resolved""#));
    for vin in &vins {
        assert!(!find(&logs, vin), "a clear VIN in the logs");
    }
}
