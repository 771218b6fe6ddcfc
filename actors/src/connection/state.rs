//! The pure part of a vehicle connection: counters, idle detection and the per-vehicle
//! rate limit. Time is passed in, so every rule is unit-tested without a socket.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::ConnectionConfig;

/// Whether a frame may be processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameAdmission {
    /// Process it.
    Accept,
    /// Over the rate limit: drop it without a reply (the vehicle resends).
    RateLimited,
}

/// Counters and timers of one connection.
#[derive(Debug, Clone)]
pub struct ConnectionState {
    /// Binary frames received.
    pub frames_in: u64,
    /// Acks sent.
    pub acks_out: u64,
    /// Frames refused (bad frames, failed puts, rate-limited).
    pub errors: u64,
    /// Wall-clock time of the last frame, for the registry.
    pub last_frame_at: Option<DateTime<Utc>>,
    /// Last frame or pong: the vehicle is alive.
    last_activity: Instant,
    idle_timeout: Duration,
    /// Rate limit: frames allowed per window (0 = unlimited).
    limit: u32,
    interval: Duration,
    /// Fixed window: when the current one started and frames counted in it. A fixed
    /// window admits up to twice the limit across a window boundary, which is fine for a
    /// guard against runaway clients and needs no per-frame history.
    window_start: Instant,
    window_count: u32,
}

impl ConnectionState {
    /// A fresh connection at `now`.
    pub fn new(config: &ConnectionConfig, now: Instant) -> Self {
        Self {
            frames_in: 0,
            acks_out: 0,
            errors: 0,
            last_frame_at: None,
            last_activity: now,
            idle_timeout: Duration::from_millis(config.idle_timeout_ms),
            limit: config.rate_limit_messages,
            interval: Duration::from_millis(config.rate_limit_interval_ms),
            window_start: now,
            window_count: 0,
        }
    }

    /// Counts a binary frame and decides whether it may be processed.
    pub fn on_frame(&mut self, now: Instant, wall: DateTime<Utc>) -> FrameAdmission {
        self.frames_in += 1;
        self.last_activity = now;
        self.last_frame_at = Some(wall);
        if self.limit == 0 {
            return FrameAdmission::Accept;
        }
        if now.duration_since(self.window_start) >= self.interval {
            self.window_start = now;
            self.window_count = 0;
        }
        if self.window_count >= self.limit {
            self.errors += 1;
            return FrameAdmission::RateLimited;
        }
        self.window_count += 1;
        FrameAdmission::Accept
    }

    /// The vehicle answered a ping (or sent one).
    pub fn on_pong(&mut self, now: Instant) {
        self.last_activity = now;
    }

    /// Whether the vehicle has been silent for longer than the idle timeout.
    pub fn is_idle(&self, now: Instant) -> bool {
        now.duration_since(self.last_activity) > self.idle_timeout
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(limit: u32, interval_ms: u64) -> ConnectionConfig {
        ConnectionConfig {
            rate_limit_messages: limit,
            rate_limit_interval_ms: interval_ms,
            idle_timeout_ms: 1000,
            ..ConnectionConfig::default()
        }
    }

    #[test]
    fn the_rate_limit_drops_frames_beyond_the_window_budget_then_recovers() {
        let t0 = Instant::now();
        let mut s = ConnectionState::new(&config(2, 100), t0);
        let wall = Utc::now();
        assert_eq!(s.on_frame(t0, wall), FrameAdmission::Accept);
        assert_eq!(s.on_frame(t0, wall), FrameAdmission::Accept);
        assert_eq!(
            s.on_frame(t0 + Duration::from_millis(99), wall),
            FrameAdmission::RateLimited
        );
        assert_eq!(
            s.on_frame(t0 + Duration::from_millis(100), wall),
            FrameAdmission::Accept
        );
        assert_eq!((s.frames_in, s.errors), (4, 1));
    }

    #[test]
    fn no_limit_admits_everything() {
        let t0 = Instant::now();
        let mut s = ConnectionState::new(&config(0, 0), t0);
        assert!((0..10_000).all(|_| s.on_frame(t0, Utc::now()) == FrameAdmission::Accept));
    }

    #[test]
    fn frames_and_pongs_keep_the_connection_alive() {
        let t0 = Instant::now();
        let mut s = ConnectionState::new(&config(0, 0), t0);
        assert!(!s.is_idle(t0 + Duration::from_millis(1000)));
        assert!(s.is_idle(t0 + Duration::from_millis(1001)));
        s.on_pong(t0 + Duration::from_millis(900));
        assert!(!s.is_idle(t0 + Duration::from_millis(1800)));
        s.on_frame(t0 + Duration::from_millis(1700), Utc::now());
        assert!(!s.is_idle(t0 + Duration::from_millis(2600)));
        assert!(s.is_idle(t0 + Duration::from_millis(2701)));
    }
}
