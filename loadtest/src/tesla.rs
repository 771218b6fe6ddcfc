//! Simulated vehicles speaking Tesla's Fleet Telemetry protocol: a TLS WebSocket client
//! with a client certificate ([`VehicleClient`]) and a driver that sends a vehicle's
//! records as `V` frames, one at a time, and resends whatever was not acked
//! ([`drive_vehicle`]).
//!
//! Like a real vehicle, the driver keeps one frame in flight: the next frame goes out
//! once the previous one is acked, so a slow server slows the vehicle down instead of
//! losing data.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context as _, bail};
use chrono::{DateTime, Utc};
use fleetwire_actors::model::SignalValue;
use fleetwire_actors::tesla::{self, DataFrame, Envelope, Topic};
use futures_util::{SinkExt as _, StreamExt as _};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::fleet::IngestRecord;
use crate::pki::DevPki;

/// Envelope message type of an ack (FlatBuffers union tag of `FlatbuffersStreamAck`).
pub const ACK_MESSAGE_TYPE: u8 = 5;

/// Groups a tick's records go out in, evenly spaced over the tick ([`Drivers::send_tick`]).
pub const WAVES: usize = 20;

/// Where vehicles connect.
#[derive(Clone)]
pub struct Target {
    /// Address of the vehicle listener.
    pub addr: SocketAddr,
    /// Name the server certificate must carry (an IP address works for the dev PKI).
    pub server_name: String,
}

/// One connected vehicle.
pub struct VehicleClient {
    ws: WebSocketStream<TlsStream<TcpStream>>,
    vin: String,
}

impl VehicleClient {
    /// Connects with the vehicle's TLS identity (`tls` presents its certificate) and sends
    /// the upgrade headers Tesla's own test client sends.
    pub async fn connect(target: &Target, tls: Arc<rustls::ClientConfig>, vin: &str) -> anyhow::Result<Self> {
        let tcp = TcpStream::connect(target.addr)
            .await
            .with_context(|| format!("connecting to {}", target.addr))?;
        tcp.set_nodelay(true)?;
        let name = ServerName::try_from(target.server_name.clone()).context("server name")?;
        let stream = TlsConnector::from(tls)
            .connect(name, tcp)
            .await
            .context("TLS handshake")?;
        let mut request = format!("wss://{}/", target.addr).into_client_request()?;
        let headers = request.headers_mut();
        headers.insert("X-Network-Interface", HeaderValue::from_static("wifi"));
        headers.insert("Version", HeaderValue::from_static("1.0.0"));
        let (ws, _) = tokio_tungstenite::client_async(request, stream)
            .await
            .context("WebSocket upgrade")?;
        Ok(Self {
            ws,
            vin: vin.to_owned(),
        })
    }

    /// The VIN this client presents.
    pub fn vin(&self) -> &str {
        &self.vin
    }

    /// Sends one binary frame.
    pub async fn send(&mut self, frame: Vec<u8>) -> anyhow::Result<()> {
        self.ws.send(Message::Binary(frame.into())).await?;
        Ok(())
    }

    /// Builds a `V` frame carrying `signals` measured at `created_at`; returns its txid
    /// and bytes.
    pub fn vehicle_data_frame(
        &self,
        created_at: DateTime<Utc>,
        signals: &BTreeMap<String, SignalValue>,
    ) -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
        let payload = tesla::encode_vehicle_data(&self.vin, created_at, signals)?;
        let txid = uuid::Uuid::new_v4().to_string().into_bytes();
        let message_id = uuid::Uuid::new_v4().to_string().into_bytes();
        let frame = tesla::data_frame(&DataFrame {
            txid: &txid,
            topic: Topic::V,
            message_id: &message_id,
            created_at: u32::try_from(created_at.timestamp()).unwrap_or(0),
            vin: &self.vin,
            payload: &payload,
        });
        Ok((txid, frame))
    }

    /// The next reply from the server (pings are answered by the WebSocket layer).
    pub async fn reply(&mut self) -> anyhow::Result<Envelope> {
        loop {
            match self.ws.next().await {
                Some(Ok(Message::Binary(bytes))) => {
                    return tesla::read_envelope(&bytes)
                        .map_err(|e| anyhow::anyhow!("unreadable reply: {e}"));
                }
                Some(Ok(Message::Close(frame))) => bail!("server closed the connection: {frame:?}"),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.into()),
                None => bail!("connection ended"),
            }
        }
    }

    /// Closes the connection politely.
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

/// Counters shared by all drivers of a run.
#[derive(Debug)]
pub struct DriverStats {
    /// Send → ack latency of acked frames, microseconds (1 µs .. 60 s, 3 significant digits).
    pub ack_latency_us: std::sync::Mutex<hdrhistogram::Histogram<u64>>,
    /// Frames acked by the server.
    pub acked: AtomicU64,
    /// Connections opened (first connects and reconnects).
    pub connects: AtomicU64,
    /// Connection or protocol errors (each leads to a reconnect and a resend).
    pub errors: AtomicU64,
}

impl Default for DriverStats {
    fn default() -> Self {
        Self {
            ack_latency_us: std::sync::Mutex::new(
                hdrhistogram::Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds"),
            ),
            acked: AtomicU64::new(0),
            connects: AtomicU64::new(0),
            errors: AtomicU64::new(0),
        }
    }
}

impl DriverStats {
    /// Takes the ack latencies (µs) recorded since the last call.
    pub fn take_ack_latency(&self) -> hdrhistogram::Histogram<u64> {
        let mut h = self.ack_latency_us.lock().expect("histogram lock never poisoned");
        let window = h.clone();
        h.reset();
        window
    }
}

/// Count, p50, p99 and max (in ms) of a histogram of ack latencies in µs.
pub fn ack_summary_ms(h: &hdrhistogram::Histogram<u64>) -> (u64, f64, f64, f64) {
    let ms = |us: u64| us as f64 / 1000.0;
    (
        h.len(),
        ms(h.value_at_quantile(0.5)),
        ms(h.value_at_quantile(0.99)),
        ms(h.max()),
    )
}

/// A fleet's drivers: one [`drive_vehicle`] task per vehicle, each fed through its own
/// bounded queue (a full queue means the vehicle still waits for an ack).
pub struct Drivers {
    /// Each vehicle's record queue, in the order of the VINs the drivers were started with
    /// (`Fleet::vehicle_ids`, which is also the order of `Fleet::tick`).
    pub queues: Vec<mpsc::Sender<IngestRecord>>,
    /// The driver tasks, awaited by [`Drivers::finish`].
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drivers {
    /// Starts a driver per VIN against the vehicle listener `addr` (server name: its IP, as
    /// the dev PKI issues it), each with its TLS identity from `pki` and a queue of `queue`
    /// records. Drivers end when their queue closes or `stop` turns true.
    pub fn start(
        vins: Vec<String>,
        pki: &DevPki,
        addr: SocketAddr,
        queue: usize,
        stats: &Arc<DriverStats>,
        stop: &watch::Receiver<bool>,
    ) -> anyhow::Result<Self> {
        let target = Target {
            addr,
            server_name: addr.ip().to_string(),
        };
        let mut queues = Vec::with_capacity(vins.len());
        let mut tasks = Vec::with_capacity(vins.len());
        for vin in vins {
            let tls = pki.vehicle_client_config(&vin)?;
            let (tx, rx) = mpsc::channel(queue);
            queues.push(tx);
            let driver = drive_vehicle(target.clone(), tls, vin, rx, Arc::clone(stats), stop.clone());
            tasks.push(tokio::spawn(driver));
        }
        Ok(Self { queues, tasks })
    }

    /// Hands one tick's records (in [`Fleet::tick`](crate::fleet::Fleet::tick) order) to
    /// their vehicles in [`WAVES`] evenly spaced groups over `period` from `start`, as a
    /// fleet whose vehicles report on clocks of their own would send them; a whole fleet
    /// at one instant is a burst no real fleet makes. Returns how many records were
    /// skipped because their vehicle still waited for acks (as a real buffer would).
    pub async fn send_tick(&self, records: Vec<IngestRecord>, start: Instant, period: Duration) -> u64 {
        let per_wave = records.len().div_ceil(WAVES).max(1);
        let mut records = records.into_iter().zip(&self.queues);
        let mut skipped = 0;
        for wave in 0..WAVES as u32 {
            tokio::time::sleep_until(start + period * wave / WAVES as u32).await;
            for (record, queue) in records.by_ref().take(per_wave) {
                if queue.try_send(record).is_err() {
                    skipped += 1;
                }
            }
        }
        skipped
    }

    /// Closes the queues and waits until every driver has ended.
    pub async fn finish(self) {
        drop(self.queues);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Drives one vehicle: sends each record from `records` as a `V` frame and waits for its
/// ack, reconnecting (with backoff) and resending on any error. Ends when `records`
/// closes or `stop` turns true; an unacked frame at that point is reported in the log.
pub async fn drive_vehicle(
    target: Target,
    tls: Arc<rustls::ClientConfig>,
    vin: String,
    mut records: mpsc::Receiver<IngestRecord>,
    stats: Arc<DriverStats>,
    mut stop: watch::Receiver<bool>,
) {
    let ack_timeout = Duration::from_secs(15);
    let mut backoff = Duration::from_millis(100);
    let mut pending: Option<IngestRecord> = None;
    'connection: loop {
        if *stop.borrow() {
            return;
        }
        let mut client = match VehicleClient::connect(&target, tls.clone(), &vin).await {
            Ok(c) => {
                stats.connects.fetch_add(1, Ordering::Relaxed);
                backoff = Duration::from_millis(100);
                c
            }
            Err(e) => {
                stats.errors.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(error = %e, "vehicle could not connect; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        loop {
            let record = match pending.take() {
                Some(r) => r,
                None => tokio::select! {
                    r = records.recv() => match r {
                        Some(r) => r,
                        None => { client.close().await; return; }
                    },
                    _ = stop.changed() => { client.close().await; return; }
                },
            };
            let signals: BTreeMap<String, SignalValue> =
                match serde_json::from_value(serde_json::Value::Object(record.payload.clone())) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "simulated record does not convert; skipped");
                        continue;
                    }
                };
            let sent = async {
                let (txid, frame) = client.vehicle_data_frame(record.timestamp, &signals)?;
                let started = std::time::Instant::now();
                client.send(frame).await?;
                let reply = tokio::time::timeout(ack_timeout, client.reply())
                    .await
                    .context("no ack")??;
                if reply.message_type != ACK_MESSAGE_TYPE || reply.txid != txid {
                    bail!(
                        "unexpected reply (type {}) instead of the ack",
                        reply.message_type
                    );
                }
                let us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                let mut latency = stats
                    .ack_latency_us
                    .lock()
                    .expect("histogram lock never poisoned");
                let _ = latency.record(us.max(1));
                Ok(())
            };
            match sent.await {
                Ok(()) => {
                    stats.acked.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    stats.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(error = %e, "frame not acked; reconnecting to resend");
                    pending = Some(record);
                    continue 'connection;
                }
            }
        }
    }
}
