//! What the gateway's probes report, from what its loops and calls record here:
//! - `/healthz` (startup): the process serves HTTP.
//! - `/livez` (liveness): the update loop is not stuck. Polling: the poll loop went round
//!   recently (it stops going round when every in-flight slot hangs); webhook: the listener
//!   is running. Failing it gets the container restarted.
//! - `/readyz` (readiness): the gateway can do its job. Polling: a getUpdates succeeded
//!   recently; webhook: the listener is up and setWebhook succeeded; both: a matcher replica
//!   is known and the last matcher attempt reached it.
//!
//! Each answers 200 or 503 with a small JSON body naming every check and its state.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;

pub use crate::config::Mode;

#[derive(Debug, Clone, Copy)]
pub struct HealthConfig {
    pub mode: Mode,
    /// Not ready when the last successful getUpdates is older than this (polling).
    pub max_poll_age: Duration,
    /// Not live when the poll loop has not gone round for this long (polling).
    pub max_loop_age: Duration,
}

/// Shared by the loops, the matcher client and the probe server.
pub struct Health {
    cfg: HealthConfig,
    /// Matcher replicas known now.
    matcher_endpoints: Box<dyn Fn() -> usize + Send + Sync>,
    started: Instant,
    /// Milliseconds since `started`, plus one (0 = never).
    last_poll_ok: AtomicU64,
    last_loop: AtomicU64,
    webhook_set: AtomicBool,
    listener_up: AtomicBool,
    /// The last matcher attempt reached a matcher (any answer but UNAVAILABLE).
    matcher_reached: AtomicBool,
}

/// One probe's verdict and the JSON body that explains it.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub ok: bool,
    pub body: serde_json::Value,
}

impl Health {
    pub fn new(cfg: HealthConfig, matcher_endpoints: impl Fn() -> usize + Send + Sync + 'static) -> Self {
        Self {
            cfg,
            matcher_endpoints: Box::new(matcher_endpoints),
            started: Instant::now(),
            last_poll_ok: AtomicU64::new(0),
            last_loop: AtomicU64::new(0),
            webhook_set: AtomicBool::new(false),
            listener_up: AtomicBool::new(false),
            matcher_reached: AtomicBool::new(true),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX).saturating_add(1)
    }

    fn age(&self, stamp: &AtomicU64) -> Option<Duration> {
        match stamp.load(Ordering::Relaxed) {
            0 => None,
            t => Some(Duration::from_millis(self.now().saturating_sub(t))),
        }
    }

    /// A getUpdates call succeeded.
    pub fn polled(&self) {
        self.last_poll_ok.store(self.now(), Ordering::Relaxed);
    }

    /// The poll loop is turning: about to ask for updates, or waiting on a bounded call or
    /// pause (not on a free slot: a loop held there is stuck).
    pub fn loop_beat(&self) {
        self.last_loop.store(self.now(), Ordering::Relaxed);
    }

    pub fn set_webhook_set(&self, set: bool) {
        self.webhook_set.store(set, Ordering::Relaxed);
    }

    pub fn set_listener_up(&self, up: bool) {
        self.listener_up.store(up, Ordering::Relaxed);
    }

    /// Records whether a matcher attempt reached a matcher.
    pub fn matcher_reached(&self, reached: bool) {
        self.matcher_reached.store(reached, Ordering::Relaxed);
    }

    fn stamp_check(&self, stamp: &AtomicU64, max: Duration, what: &str) -> (bool, String) {
        match self.age(stamp) {
            None => (false, format!("no {what} yet")),
            Some(age) if age > max => {
                (false, format!("last {what} {} s ago (limit {} s)", age.as_secs(), max.as_secs()))
            }
            Some(age) => (true, format!("last {what} {} s ago", age.as_secs())),
        }
    }

    pub fn liveness(&self) -> Verdict {
        let (ok, detail) = match self.cfg.mode {
            Mode::Polling => self.stamp_check(&self.last_loop, self.cfg.max_loop_age, "poll loop round"),
            Mode::Webhook => {
                let up = self.listener_up.load(Ordering::Relaxed);
                (up, if up { "listening".to_owned() } else { "webhook listener not running".to_owned() })
            }
        };
        Verdict { ok, body: json!({ "live": ok, "checks": { "update_loop": detail } }) }
    }

    pub fn readiness(&self) -> Verdict {
        let (telegram_ok, telegram) = match self.cfg.mode {
            Mode::Polling => self.stamp_check(&self.last_poll_ok, self.cfg.max_poll_age, "successful getUpdates"),
            Mode::Webhook => {
                let (set, up) = (self.webhook_set.load(Ordering::Relaxed), self.listener_up.load(Ordering::Relaxed));
                let detail = match (up, set) {
                    (true, true) => "listener up, webhook set",
                    (false, _) => "webhook listener not running",
                    (true, false) => "setWebhook has not succeeded",
                };
                (up && set, detail.to_owned())
            }
        };
        let endpoints = (self.matcher_endpoints)();
        let reached = self.matcher_reached.load(Ordering::Relaxed);
        let (matcher_ok, matcher) = match (endpoints, reached) {
            (0, _) => (false, "no matcher replica known".to_owned()),
            (_, false) => (false, "the last matcher attempt found it unavailable".to_owned()),
            (n, true) => (true, format!("{n} replica(s) known, last attempt reached one")),
        };
        let ok = telegram_ok && matcher_ok;
        Verdict { ok, body: json!({ "ready": ok, "checks": { "telegram": telegram, "matcher": matcher } }) }
    }
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Health").field("cfg", &self.cfg).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn health(mode: Mode, endpoints: usize) -> Health {
        let cfg = HealthConfig { mode, max_poll_age: Duration::from_secs(60), max_loop_age: Duration::from_secs(120) };
        Health::new(cfg, move || endpoints)
    }

    #[tokio::test(start_paused = true)]
    async fn polling_ready_after_a_poll_until_polls_stop_and_live_while_the_loop_turns() {
        let h = health(Mode::Polling, 1);
        assert!(!h.readiness().ok, "not ready before the first getUpdates");
        assert!(!h.liveness().ok, "not live before the loop starts (the startup probe covers that)");
        h.polled();
        h.loop_beat();
        assert!(h.readiness().ok, "{:?}", h.readiness());
        assert!(h.liveness().ok);
        tokio::time::advance(Duration::from_secs(61)).await;
        let r = h.readiness();
        assert!(!r.ok && r.body["checks"]["telegram"].as_str().unwrap().contains("limit 60 s"), "{r:?}");
        assert!(h.liveness().ok, "a loop round 61 s ago is still live");
        tokio::time::advance(Duration::from_secs(60)).await;
        assert!(!h.liveness().ok, "stuck for 121 s");
        h.loop_beat();
        h.polled();
        assert!(h.liveness().ok && h.readiness().ok);
        h.matcher_reached(false);
        let r = h.readiness();
        assert!(!r.ok && r.body["checks"]["matcher"].as_str().unwrap().contains("unavailable"), "{r:?}");
        h.matcher_reached(true);
        assert!(h.readiness().ok);
        let none = health(Mode::Polling, 0);
        none.polled();
        let r = none.readiness();
        assert!(!r.ok && r.body["checks"]["matcher"] == "no matcher replica known", "{r:?}");
    }

    #[test]
    fn webhook_ready_when_listening_and_set() {
        let h = health(Mode::Webhook, 2);
        assert!(!h.liveness().ok && !h.readiness().ok);
        h.set_listener_up(true);
        assert!(h.liveness().ok);
        assert!(!h.readiness().ok, "setWebhook not done yet");
        h.set_webhook_set(true);
        assert!(h.readiness().ok, "{:?}", h.readiness());
        h.set_listener_up(false);
        assert!(!h.liveness().ok && !h.readiness().ok);
    }
}
