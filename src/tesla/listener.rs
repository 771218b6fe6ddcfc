//! The vehicle listener: accepts TCP connections, hands each to a worker arbiter, which
//! runs the TLS handshake (client certificate required), reads the vehicle's VIN from the
//! certificate, upgrades to a WebSocket and starts a `VehicleConnection` actor.
//!
//! Every path upgrades to a WebSocket, as on Tesla's server; there is no subprotocol and
//! no compression. Headers read at the upgrade: `X-Network-Interface` (into connectivity
//! records) and `X-TXID` (the connection id when it is a UUID).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use actix::Arbiter;
use fleetwire_actors::connection::{
    ConnectionConfig, ConnectionDirectory, ConnectionParams, RecordSink, VehicleConnection,
};
use fleetwire_actors::pseudonym::Pseudonymizer;
use fleetwire_actors::registry::ActorRegistry;
use fleetwire_actors::telemetry as t;
use futures_util::stream::SplitSink;
use futures_util::{SinkExt as _, StreamExt as _};
use metrics::counter;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tracing::{debug, info, warn};

use super::{MAX_WEBSOCKET_MESSAGE_BYTES, TeslaConfig, tls};
use crate::vault::VinRecorder;

/// Per-connection WebSocket read buffer (larger messages still arrive, in several reads).
const READ_BUFFER_BYTES: usize = 8 * 1024;

/// How long one reply may take to write before the vehicle counts as gone (Tesla: 10 s).
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// What every connection task needs.
struct Shared {
    acceptor: TlsAcceptor,
    handshake_timeout: Duration,
    connection: Arc<ConnectionConfig>,
    sink: Arc<dyn RecordSink>,
    pseudonymizer: Pseudonymizer,
    /// Keeps each vehicle's VIN in the vault at its first connection.
    vins: Arc<VinRecorder>,
    directory: ConnectionDirectory,
    registry: ActorRegistry,
}

/// The running listener.
pub struct TeslaListener {
    addr: SocketAddr,
    directory: ConnectionDirectory,
    stop: Arc<Notify>,
    arbiters: Vec<Arbiter>,
}

impl TeslaListener {
    /// Starts accepting vehicles on `listener` (bound to `config.listen` by the caller).
    pub async fn start(
        config: &TeslaConfig,
        listener: std::net::TcpListener,
        sink: Arc<dyn RecordSink>,
        pseudonymizer: Pseudonymizer,
        vins: Arc<VinRecorder>,
        registry: ActorRegistry,
    ) -> anyhow::Result<Self> {
        let (Some(cert), Some(key)) = (&config.server_cert_file, &config.server_key_file) else {
            anyhow::bail!("tesla.server_cert_file and tesla.server_key_file are required");
        };
        let trust = tls::ClientTrust {
            ca_files: &config.client_ca_files,
            tesla_vehicle_ca: config.trust_tesla_vehicle_ca,
        };
        let tls = tls::server_config(cert, key, trust)?;
        listener.set_nonblocking(true)?;
        let listener = TcpListener::from_std(listener)?;
        let addr = listener.local_addr()?;
        let workers = match config.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let arbiters: Vec<Arbiter> = (0..workers).map(|_| Arbiter::new()).collect();
        let directory = ConnectionDirectory::new();
        let shared = Arc::new(Shared {
            acceptor: TlsAcceptor::from(tls),
            handshake_timeout: Duration::from_millis(config.handshake_timeout_ms),
            connection: Arc::new(config.connection.clone()),
            sink,
            pseudonymizer,
            vins,
            directory: directory.clone(),
            registry,
        });
        let stop = Arc::new(Notify::new());
        let handles = arbiters.iter().map(Arbiter::handle).collect();
        actix_rt::spawn(accept_loop(
            listener,
            shared,
            handles,
            config.max_connections,
            stop.clone(),
        ));
        info!(%addr, workers, "vehicle listener (Tesla Fleet Telemetry, mTLS WebSocket) started");
        Ok(Self {
            addr,
            directory,
            stop,
            arbiters,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The node's vehicle connections.
    pub fn directory(&self) -> &ConnectionDirectory {
        &self.directory
    }

    /// Stops accepting, closes every connection (WebSocket close 1001) and waits up to
    /// `limit` for them to finish. A frame being put finishes first (its ack is sent or,
    /// for a failed reliable put, withheld), so nothing acked is lost.
    pub async fn shutdown(self, limit: Duration) -> bool {
        self.stop.notify_one();
        let asked = self.directory.close_all();
        let deadline = Instant::now() + limit;
        while !self.directory.is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let closed = self.directory.is_empty();
        info!(asked, closed, "vehicle listener stopped");
        for arbiter in &self.arbiters {
            arbiter.stop();
        }
        closed
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    arbiters: Vec<actix_rt::ArbiterHandle>,
    max_connections: usize,
    stop: Arc<Notify>,
) {
    let next = AtomicUsize::new(0);
    loop {
        let (tcp, remote) = tokio::select! {
            _ = stop.notified() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(error) => {
                    // EMFILE and friends: back off instead of spinning.
                    warn!(%error, "accepting a vehicle connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        if shared.directory.len() >= max_connections {
            counter!(t::TESLA_HANDSHAKES_TOTAL, "result" => "node_full").increment(1);
            debug!(%remote, "node full; vehicle connection refused");
            continue;
        }
        // Move the socket to a worker arbiter's own reactor: its I/O then runs on that
        // thread instead of the accepting one.
        let Ok(std_tcp) = tcp.into_std() else { continue };
        let arbiter = &arbiters[next.fetch_add(1, Ordering::Relaxed) % arbiters.len()];
        let shared = shared.clone();
        arbiter.spawn(async move {
            match TcpStream::from_std(std_tcp) {
                Ok(tcp) => serve(tcp, remote, shared).await,
                Err(error) => warn!(%error, "registering a vehicle socket failed"),
            }
        });
    }
}

/// Headers of the upgrade request that matter.
#[derive(Default)]
struct UpgradeInfo {
    network_interface: String,
    txid: Option<String>,
}

async fn serve(tcp: TcpStream, remote: SocketAddr, shared: Arc<Shared>) {
    let _ = tcp.set_nodelay(true);
    let handshake = tokio::time::timeout(shared.handshake_timeout, shared.acceptor.accept(tcp)).await;
    let tls = match handshake {
        Ok(Ok(tls)) => tls,
        Ok(Err(error)) => return refuse(remote, tls::handshake_failure_reason(&error), &error),
        Err(_) => return refuse(remote, "timeout", &"TLS handshake timed out"),
    };
    let vin = match tls::vehicle_vin(tls.get_ref().1.peer_certificates()) {
        Ok(vin) => vin,
        Err(error) => return refuse(remote, "bad_certificate", &error),
    };
    let vehicle_id = shared.pseudonymizer.vehicle_id(&vin);
    // The vault write does not hold up the connection; it is the only place the VIN goes.
    {
        let (vins, vehicle, vin) = (shared.vins.clone(), vehicle_id.clone(), vin.clone());
        actix_rt::spawn(async move { vins.first_sight(&vehicle, &vin).await });
    }
    let mut info = UpgradeInfo::default();
    // tungstenite's `Callback` trait fixes the (large) error type.
    #[allow(clippy::result_large_err)]
    let callback = |request: &Request, response: Response| {
        let header = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok());
        info.network_interface = header("x-network-interface").unwrap_or_default().to_owned();
        info.txid = header("x-txid").map(str::to_owned);
        Ok(response)
    };
    // Frames are a few hundred bytes: an 8 KiB read buffer instead of tungstenite's
    // 128 KiB default keeps ~120 KiB per connection (1 GB per 8,000 vehicles) free.
    let ws_config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .max_message_size(Some(MAX_WEBSOCKET_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_WEBSOCKET_MESSAGE_BYTES));
    let upgrade = tokio_tungstenite::accept_hdr_async_with_config(tls, callback, Some(ws_config));
    let ws = match tokio::time::timeout(shared.handshake_timeout, upgrade).await {
        Ok(Ok(ws)) => ws,
        Ok(Err(error)) => return refuse(remote, "websocket_error", &error),
        Err(_) => return refuse(remote, "timeout", &"WebSocket upgrade timed out"),
    };
    counter!(t::TESLA_HANDSHAKES_TOTAL, "result" => "ok").increment(1);
    let connection_id = info
        .txid
        .and_then(|id| uuid::Uuid::parse_str(&id).ok())
        .unwrap_or_else(uuid::Uuid::new_v4)
        .to_string();
    let (write, read) = ws.split();
    let (outbound, replies) = mpsc::channel(shared.connection.outbound_queue);
    actix::spawn(write_replies(write, replies));
    VehicleConnection::start_with(
        ConnectionParams {
            connection_id,
            vin,
            vehicle_id,
            remote,
            network_interface: info.network_interface,
            config: shared.connection.clone(),
            sink: shared.sink.clone(),
            directory: shared.directory.clone(),
            registry: shared.registry.clone(),
        },
        read.boxed(),
        outbound,
    );
}

fn refuse(remote: SocketAddr, reason: &'static str, error: &dyn std::fmt::Display) {
    counter!(t::TESLA_HANDSHAKES_TOTAL, "result" => reason).increment(1);
    // The VIN is unknown or untrusted here; log the address and the reason only.
    warn!(%remote, reason, %error, "vehicle connection refused");
}

type Writer = SplitSink<WebSocketStream<TlsStream<TcpStream>>, Message>;

/// Writes queued replies; several queued replies go out in one flush.
async fn write_replies(mut write: Writer, mut replies: mpsc::Receiver<Message>) {
    while let Some(first) = replies.recv().await {
        let mut closing = matches!(first, Message::Close(_));
        let mut batch = vec![first];
        while !closing && let Ok(next) = replies.try_recv() {
            closing = matches!(next, Message::Close(_));
            batch.push(next);
        }
        let send = async {
            for message in batch {
                write.feed(message).await?;
            }
            write.flush().await
        };
        match tokio::time::timeout(WRITE_TIMEOUT, send).await {
            Ok(Ok(())) if !closing => {}
            _ => break,
        }
    }
    let _ = tokio::time::timeout(WRITE_TIMEOUT, write.close()).await;
}
