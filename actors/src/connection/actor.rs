//! The `VehicleConnection` actor: a thin shell that feeds each binary frame to
//! [`crate::tesla::process_frame`], puts dispatched records through the [`RecordSink`]
//! and writes the replies.
//!
//! Ordering and backpressure: a dispatched frame is handled inside `ctx.wait`, so the
//! actor reads nothing else (no frame, no timer) until the put finished or timed out.
//! Replies go through a bounded queue to the socket's writer task; a vehicle that does
//! not read its replies fills it and is disconnected (it reconnects and resends what was
//! not acked).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use bytes::Bytes;
use chrono::Utc;
use futures_util::stream::BoxStream;
use metrics::{counter, gauge, histogram};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::state::{ConnectionState, FrameAdmission};
use super::{ConnectionConfig, ConnectionDirectory, RecordSink};
use crate::model::VehicleId;
use crate::registry::{ActorKind, ActorRegistry, Registration};
use crate::telemetry as t;
use crate::tesla::{self, FrameContext, Topic, Verdict};

/// Why a connection is asked to close.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Message)]
#[rtype(result = "()")]
pub enum Disconnect {
    /// The same vehicle opened a newer connection.
    Replaced,
    /// The node is shutting down.
    Shutdown,
}

/// Everything the listener knows about an accepted connection.
pub struct ConnectionParams {
    /// Id of the connection (Tesla: the `X-TXID` header when it is a UUID).
    pub connection_id: String,
    /// The VIN from the client certificate. Kept only in memory, for the frame rules
    /// that compare it with the frame's sender; never logged or stored.
    pub vin: String,
    /// The vehicle's pseudonym: partition key and payload VIN of its records.
    pub vehicle_id: VehicleId,
    /// The vehicle's address.
    pub remote: SocketAddr,
    /// `X-Network-Interface` header (`wifi`, `cellular`), copied into connectivity records.
    pub network_interface: String,
    /// Behaviour of the connection.
    pub config: Arc<ConnectionConfig>,
    /// Where records go.
    pub sink: Arc<dyn RecordSink>,
    /// The node's connections, one per vehicle.
    pub directory: ConnectionDirectory,
    /// The actor registry.
    pub registry: ActorRegistry,
}

/// One vehicle's live WebSocket.
pub struct VehicleConnection {
    params: ConnectionParams,
    outbound: mpsc::Sender<Message>,
    state: ConnectionState,
    registration: Registration,
}

impl VehicleConnection {
    /// Starts the actor on the current arbiter. `incoming` is the socket's read half;
    /// `outbound` feeds its writer task (bounded by `config.outbound_queue`).
    pub fn start_with(
        params: ConnectionParams,
        incoming: BoxStream<'static, Result<Message, WsError>>,
        outbound: mpsc::Sender<Message>,
    ) -> Addr<Self> {
        VehicleConnection::create(move |ctx| {
            ctx.add_stream(incoming);
            let registration = params
                .registry
                .register(ActorKind::VehicleConnection, params.vehicle_id.as_str());
            registration
                .stats()
                .set_detail("remote", params.remote.to_string());
            registration
                .stats()
                .set_detail("connection_id", params.connection_id.clone());
            registration
                .stats()
                .set_detail("connected_at", Utc::now().to_rfc3339());
            VehicleConnection {
                state: ConnectionState::new(&params.config, Instant::now()),
                params,
                outbound,
                registration,
            }
        })
    }

    /// Queues a message to the vehicle; a full queue means the vehicle stopped reading.
    fn send(&mut self, message: Message, ctx: &mut Context<Self>) {
        match self.outbound.try_send(message) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                counter!(t::TESLA_SLOW_VEHICLES_TOTAL).increment(1);
                tracing::warn!(vehicle = %self.params.vehicle_id, "vehicle does not read its replies; disconnecting");
                ctx.stop();
            }
            Err(TrySendError::Closed(_)) => ctx.stop(),
        }
    }

    fn close(&mut self, code: CloseCode, reason: &'static str, ctx: &mut Context<Self>) {
        let _ = self.outbound.try_send(Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        })));
        ctx.stop();
    }

    fn publish_details(&self) {
        let stats = self.registration.stats();
        stats.set_detail("frames_in", self.state.frames_in);
        stats.set_detail("acks_out", self.state.acks_out);
        stats.set_detail("errors", self.state.errors);
        if let Some(at) = self.state.last_frame_at {
            stats.set_detail("last_frame_at", at.to_rfc3339());
        }
        stats.handled(false);
    }

    /// Puts a connectivity record (Tesla's server emits one per connect and disconnect).
    fn connectivity_record(&self, connected: bool) -> Option<impl Future<Output = ()> + 'static> {
        if !self.params.config.topics.contains(&Topic::Connectivity) {
            return None;
        }
        let payload = tesla::connectivity_payload(
            self.params.vehicle_id.as_str(),
            &self.params.connection_id,
            connected,
            &self.params.network_interface,
            Utc::now(),
        );
        let sink = self.params.sink.clone();
        let key = self.params.vehicle_id.0.clone();
        let timeout = self.params.config.reliable_ack_timeout();
        Some(async move {
            let put = sink.put(Topic::Connectivity, key, Bytes::from(payload));
            if !matches!(tokio::time::timeout(timeout, put).await, Ok(Ok(()))) {
                counter!(t::TESLA_PUT_FAILURES_TOTAL, "topic" => Topic::Connectivity.as_str()).increment(1);
            }
        })
    }

    fn on_frame(&mut self, frame: Bytes, ctx: &mut Context<Self>) {
        if self.state.on_frame(Instant::now(), Utc::now()) == FrameAdmission::RateLimited {
            counter!(t::TESLA_FRAMES_REJECTED_TOTAL, "reason" => "rate_limited").increment(1);
            self.publish_details();
            return;
        }
        let verdict = tesla::process_frame(
            &frame,
            &FrameContext {
                vin: &self.params.vin,
                vehicle_id: self.params.vehicle_id.as_str(),
                topics: &self.params.config.topics,
            },
        );
        match verdict {
            Verdict::Reply { replies, rejection } => {
                self.state.errors += 1;
                counter!(t::TESLA_FRAMES_TOTAL, "topic" => "other").increment(1);
                counter!(t::TESLA_FRAME_BYTES_TOTAL, "topic" => "other").increment(frame.len() as u64);
                counter!(t::TESLA_FRAMES_REJECTED_TOTAL, "reason" => rejection.reason()).increment(1);
                tracing::debug!(vehicle = %self.params.vehicle_id, %rejection, "frame refused");
                for reply in replies {
                    self.send(Message::Binary(reply.into()), ctx);
                }
                self.publish_details();
            }
            Verdict::Dispatch(record) => {
                let topic = record.topic.as_str();
                counter!(t::TESLA_FRAMES_TOTAL, "topic" => topic).increment(1);
                counter!(t::TESLA_FRAME_BYTES_TOTAL, "topic" => topic).increment(frame.len() as u64);
                counter!(t::TESLA_DATUMS_TOTAL, "topic" => topic).increment(record.datums as u64);
                self.dispatch(record, ctx)
            }
        }
    }

    fn dispatch(&mut self, record: tesla::TeslaRecord, ctx: &mut Context<Self>) {
        let topic = record.topic;
        let reliable = self.params.config.reliable_ack_topics.contains(&topic);
        let ack = tesla::ack(&record.txid, topic.as_str().as_bytes());
        let sink = self.params.sink.clone();
        let timeout = self.params.config.reliable_ack_timeout();
        let received = Instant::now();
        let put = async move {
            match tokio::time::timeout(timeout, sink.put(topic, record.partition_key, record.payload)).await {
                Ok(result) => result.map_err(|e| e.to_string()),
                Err(_) => Err(format!("no answer from the stream within {timeout:?}")),
            }
        };
        ctx.wait(put.into_actor(self).map(move |result, act, ctx| {
            if let Err(error) = &result {
                act.state.errors += 1;
                counter!(t::TESLA_PUT_FAILURES_TOTAL, "topic" => topic.as_str()).increment(1);
                tracing::warn!(vehicle = %act.params.vehicle_id, topic = topic.as_str(), %error,
                    "record not stored; {}", if reliable { "no ack, the vehicle resends" } else { "acked anyway (topic is not reliable)" });
            }
            // A reliable topic is acked only once stored; others are acked after the
            // attempt, as Tesla's server does.
            if result.is_ok() || !reliable {
                act.state.acks_out += 1;
                histogram!(t::TESLA_ACK_SECONDS, "reliable" => if reliable { "true" } else { "false" })
                    .record(received.elapsed().as_secs_f64());
                counter!(t::TESLA_ACKS_TOTAL, "reliable" => if reliable { "true" } else { "false" }).increment(1);
                act.send(Message::Binary(ack.into()), ctx);
            }
            act.publish_details();
        }));
    }
}

impl Actor for VehicleConnection {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(16);
        gauge!(t::TESLA_CONNECTIONS).increment(1.0);
        let replaced = self.params.directory.register(
            self.params.vehicle_id.clone(),
            self.params.connection_id.clone(),
            ctx.address().recipient(),
        );
        if replaced {
            counter!(t::TESLA_CONNECTIONS_REPLACED_TOTAL).increment(1);
        }
        tracing::info!(vehicle = %self.params.vehicle_id, remote = %self.params.remote, replaced, "vehicle connected");
        if let Some(put) = self.connectivity_record(true) {
            ctx.wait(put.into_actor(self));
        }
        ctx.run_interval(self.params.config.ping_interval(), |act, ctx| {
            if act.state.is_idle(Instant::now()) {
                counter!(t::TESLA_IDLE_DISCONNECTS_TOTAL).increment(1);
                act.close(CloseCode::Away, "idle timeout", ctx);
            } else {
                act.send(Message::Ping(Bytes::new()), ctx);
            }
        });
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        gauge!(t::TESLA_CONNECTIONS).decrement(1.0);
        self.params
            .directory
            .unregister(&self.params.vehicle_id, &self.params.connection_id);
        tracing::info!(vehicle = %self.params.vehicle_id, frames = self.state.frames_in, "vehicle disconnected");
        if let Some(put) = self.connectivity_record(false) {
            actix::spawn(put);
        }
    }
}

impl StreamHandler<Result<Message, WsError>> for VehicleConnection {
    fn handle(&mut self, item: Result<Message, WsError>, ctx: &mut Self::Context) {
        match item {
            Ok(Message::Binary(frame)) => self.on_frame(frame, ctx),
            Ok(Message::Pong(_)) | Ok(Message::Ping(_)) => self.state.on_pong(Instant::now()),
            // Tesla's server ends the connection on a text message; so do we.
            Ok(Message::Text(_)) => {
                counter!(t::TESLA_FRAMES_REJECTED_TOTAL, "reason" => "text_message").increment(1);
                self.close(CloseCode::Unsupported, "binary frames only", ctx);
            }
            Ok(Message::Close(_)) => ctx.stop(),
            Ok(Message::Frame(_)) => {}
            Err(error) => {
                counter!(t::TESLA_SOCKET_ERRORS_TOTAL).increment(1);
                tracing::debug!(vehicle = %self.params.vehicle_id, %error, "socket error");
                ctx.stop();
            }
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

impl Handler<Disconnect> for VehicleConnection {
    type Result = ();

    fn handle(&mut self, msg: Disconnect, ctx: &mut Self::Context) {
        match msg {
            Disconnect::Replaced => self.close(CloseCode::Policy, "replaced by a newer connection", ctx),
            Disconnect::Shutdown => self.close(CloseCode::Away, "server shutting down", ctx),
        }
    }
}
