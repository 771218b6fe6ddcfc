//! Helpers for the Tesla listener tests: the shared fixtures, a node with the listener
//! on a development PKI, vehicle clients, and reading records back from the stream.

use std::path::PathBuf;
use std::sync::Arc;

use fleetwire::config::Config;
use fleetwire_actors::ports::{RecordStream, StartPosition, StreamRecord};
use fleetwire_loadtest::pki::DevPki;
use fleetwire_loadtest::tesla::{Target, VehicleClient};
use serde_json::Value;

use super::{TestNode, test_config};

/// `shared/fixtures/tesla`, beside the repository (locally and in CI).
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/tesla")
}

/// Every case of `cases.json`.
pub fn cases() -> Vec<Value> {
    let text =
        std::fs::read_to_string(fixtures_dir().join("cases.json")).expect("fixtures are beside the repo");
    serde_json::from_str::<Vec<Value>>(&text).unwrap()
}

/// The bytes of a fixture file.
pub fn frame(file: &str) -> Vec<u8> {
    std::fs::read(fixtures_dir().join(file)).unwrap()
}

/// A node with the vehicle listener on 127.0.0.1:0 and a development PKI in `pki_dir`.
pub struct TeslaNode {
    pub node: TestNode,
    pub pki: DevPki,
    pub target: Target,
}

/// A test config with the listener enabled (the caller may adjust it before starting).
pub fn tesla_config(pki: &DevPki) -> Config {
    let mut config = test_config(None);
    config.tesla.enabled = true;
    config.tesla.listen = "127.0.0.1:0".parse().unwrap();
    config.tesla.workers = 2;
    config.tesla.server_cert_file = Some(pki.server_cert_file.clone());
    config.tesla.server_key_file = Some(pki.server_key_file.clone());
    config.tesla.client_ca_files = vec![pki.ca_cert_file.clone()];
    config
}

impl TeslaNode {
    pub async fn start(pki: DevPki, config: Config) -> Self {
        let node = TestNode::start(config).await;
        let addr = node.node.tesla_addr().expect("the listener is on");
        Self {
            node,
            pki,
            target: Target {
                addr,
                server_name: "127.0.0.1".into(),
            },
        }
    }

    /// A vehicle client whose certificate CommonName is `vin`.
    pub async fn vehicle(&self, vin: &str) -> VehicleClient {
        let tls = self.pki.vehicle_client_config(vin).unwrap();
        VehicleClient::connect(&self.target, tls, vin)
            .await
            .expect("vehicle connects")
    }

    /// The pseudonym the node gives `vin`.
    pub fn vehicle_id(&self, vin: &str) -> String {
        fleetwire_actors::pseudonym::Pseudonymizer::development()
            .vehicle_id(vin)
            .0
    }
}

/// Every record on `stream` with partition key `key`, oldest first per shard.
pub async fn records_for(stream: &Arc<dyn RecordStream>, key: &str) -> Vec<StreamRecord> {
    let mut found = Vec::new();
    for shard in stream.list_shards().await.unwrap() {
        let mut iterator = Some(
            stream
                .get_shard_iterator(&shard.shard_id, StartPosition::TrimHorizon)
                .await
                .unwrap(),
        );
        // Bounded: the test streams hold a few hundred records at most.
        for _ in 0..100 {
            let Some(it) = iterator.take() else { break };
            let out = stream.get_records(&it, 1000).await.unwrap();
            let empty = out.records.is_empty();
            found.extend(out.records.into_iter().filter(|r| r.partition_key == key));
            iterator = out.next_iterator;
            if empty {
                break;
            }
        }
    }
    found
}

/// Whether two JSON documents are equal, numbers compared with a relative tolerance
/// (the fixtures' float fields are 32-bit).
pub fn json_close(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            x == y || (x - y).abs() <= 1e-6 * x.abs().max(y.abs())
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_close(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| json_close(v, w)))
        }
        _ => a == b,
    }
}
