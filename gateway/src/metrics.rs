//! Prometheus metrics (the `prometheus` crate, as in the matcher), and the `/metrics` +
//! probe server. The names and labels are those the alert rules (k8s/) and
//! docs/OPERATIONS.md use.

use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};
use tokio_util::sync::CancellationToken;

use crate::health::{Health, Verdict};

/// Process-wide metrics: one gateway per process, and every module records into them.
pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// Seconds; from 1 ms to about 65 s.
const BUCKETS: [f64; 17] =
    [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0];

pub struct Metrics {
    registry: Registry,
    updates: IntCounterVec,
    update_seconds: Histogram,
    overhead_seconds: Histogram,
    telegram_requests: IntCounterVec,
    telegram_seconds: HistogramVec,
    flood_wait: Histogram,
    flood_retries: IntCounter,
    matcher_calls: IntCounterVec,
    matcher_seconds: HistogramVec,
    thumbnail_cache: IntCounterVec,
    cards: IntCounterVec,
    card_compose: Histogram,
    matcher_waiting: IntGauge,
    matcher_shed: IntCounterVec,
    poll_conflicts: IntCounter,
    user_rate_limited: IntCounter,
    in_flight: IntGauge,
    endpoints: IntGauge,
}

fn histogram(name: &str, help: &str) -> HistogramOpts {
    HistogramOpts::new(name, help).buckets(BUCKETS.to_vec())
}

/// Registers `metric` and hands it back. Names are fixed and distinct, so registration
/// cannot fail but by a programming error, which the unit test below would show.
fn reg<M: prometheus::core::Collector + Clone + 'static>(registry: &Registry, metric: prometheus::Result<M>) -> M {
    match metric.and_then(|m| registry.register(Box::new(m.clone())).map(|()| m)) {
        Ok(m) => m,
        Err(e) => panic!("metric definition: {e}"),
    }
}

impl Metrics {
    #[allow(clippy::too_many_lines)]
    fn new() -> Self {
        let r = Registry::new();
        Self {
            updates: reg(
                &r,
                IntCounterVec::new(Opts::new("tg_gateway_updates_total", "Updates handled, by outcome."), &["outcome"]),
            ),
            update_seconds: reg(
                &r,
                Histogram::with_opts(histogram(
                    "tg_gateway_update_seconds",
                    "Time from receiving an update to its last reply.",
                )),
            ),
            overhead_seconds: reg(
                &r,
                Histogram::with_opts(histogram(
                    "tg_gateway_overhead_seconds",
                    "Per-update time spent in the gateway itself: total minus download, matcher and Bot API send time.",
                )),
            ),
            telegram_requests: reg(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "tg_gateway_telegram_requests_total",
                        "Bot API requests, by method and outcome (ok, error code, transport).",
                    ),
                    &["method", "outcome"],
                ),
            ),
            telegram_seconds: reg(
                &r,
                HistogramVec::new(
                    histogram("tg_gateway_telegram_request_seconds", "Bot API request latency."),
                    &["method"],
                ),
            ),
            flood_wait: reg(
                &r,
                Histogram::with_opts(histogram(
                    "tg_gateway_flood_wait_seconds",
                    "Time a message waited for the flood-control budget.",
                )),
            ),
            flood_retries: reg(
                &r,
                IntCounter::new("tg_gateway_flood_retries_total", "Sends retried after a 429 (retry_after honoured)."),
            ),
            matcher_calls: reg(
                &r,
                IntCounterVec::new(
                    Opts::new("tg_gateway_matcher_calls_total", "Matcher RPC attempts, by method and gRPC code."),
                    &["method", "code"],
                ),
            ),
            matcher_seconds: reg(
                &r,
                HistogramVec::new(histogram("tg_gateway_matcher_seconds", "Matcher RPC attempt latency."), &["method"]),
            ),
            thumbnail_cache: reg(
                &r,
                IntCounterVec::new(
                    Opts::new("tg_gateway_thumbnail_cache_total", "Thumbnail file_id cache lookups, by result."),
                    &["result"],
                ),
            ),
            cards: reg(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "tg_gateway_cards_total",
                        "Match replies by form: card sent, or plain reply (user's choice, or fallback with its reason).",
                    ),
                    &["form"],
                ),
            ),
            card_compose: reg(
                &r,
                Histogram::with_opts(histogram("tg_gateway_card_compose_seconds", "Time to compose one reply card.")),
            ),
            matcher_waiting: reg(
                &r,
                IntGauge::new(
                    "tg_gateway_matcher_waiting",
                    "Matcher calls waiting (retrying) for an unavailable or overloaded matcher.",
                ),
            ),
            matcher_shed: reg(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "tg_gateway_matcher_shed_total",
                        "Matcher calls given up at once because too many already wait for the matcher (circuit breaker).",
                    ),
                    &["method"],
                ),
            ),
            poll_conflicts: reg(
                &r,
                IntCounter::new(
                    "tg_gateway_poll_conflicts_total",
                    "getUpdates answered 409 Conflict: another poller or a webhook uses this bot token.",
                ),
            ),
            user_rate_limited: reg(
                &r,
                IntCounter::new("tg_gateway_user_rate_limited_total", "Photos refused by the per-user limit."),
            ),
            in_flight: reg(&r, IntGauge::new("tg_gateway_in_flight", "Updates being processed.")),
            endpoints: reg(&r, IntGauge::new("tg_gateway_matcher_endpoints", "Matcher endpoints currently known.")),
            registry: r,
        }
    }

    pub fn update_handled(&self, outcome: &str, total: Duration, overhead: Duration) {
        self.updates.with_label_values(&[outcome]).inc();
        self.update_seconds.observe(total.as_secs_f64());
        self.overhead_seconds.observe(overhead.as_secs_f64());
    }

    pub fn telegram_request(&self, method: &str, outcome: &str, d: Duration) {
        self.telegram_requests.with_label_values(&[method, outcome]).inc();
        self.telegram_seconds.with_label_values(&[method]).observe(d.as_secs_f64());
    }

    pub fn flood_wait(&self, d: Duration) {
        self.flood_wait.observe(d.as_secs_f64());
    }

    pub fn flood_retry(&self) {
        self.flood_retries.inc();
    }

    pub fn matcher_call(&self, method: &str, code: &str, d: Duration) {
        self.matcher_calls.with_label_values(&[method, code]).inc();
        self.matcher_seconds.with_label_values(&[method]).observe(d.as_secs_f64());
    }

    pub fn thumbnail_cache(&self, hit: bool) {
        self.thumbnail_cache.with_label_values(&[if hit { "hit" } else { "miss" }]).inc();
    }

    /// How a match was answered: "card", "plain" (the user's or operator's choice), or
    /// "fallback_<reason>" (a card was due but could not be made).
    pub fn reply_form(&self, form: &str) {
        self.cards.with_label_values(&[form]).inc();
    }

    pub fn card_composed(&self, d: Duration) {
        self.card_compose.observe(d.as_secs_f64());
    }

    pub fn matcher_waiting_add(&self, delta: i64) {
        self.matcher_waiting.add(delta);
    }

    pub fn matcher_shed(&self, method: &str) {
        self.matcher_shed.with_label_values(&[method]).inc();
    }

    pub fn poll_conflict(&self) {
        self.poll_conflicts.inc();
    }

    pub fn user_rate_limited(&self) {
        self.user_rate_limited.inc();
    }

    pub fn in_flight_add(&self, delta: i64) {
        self.in_flight.add(delta);
    }

    pub fn set_endpoints(&self, n: usize) {
        self.endpoints.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// The Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        if prometheus::TextEncoder::new().encode(&self.registry.gather(), &mut buf).is_err() {
            return String::new();
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

async fn metrics_handler() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], METRICS.render())
}

fn probe(v: Verdict) -> impl IntoResponse {
    let code = if v.ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, [(header::CONTENT_TYPE, "application/json")], format!("{}\n", v.body))
}

/// Serves `/metrics`, `/healthz` (startup), `/livez` and `/readyz` (see `health`) until
/// `shutdown` is cancelled.
pub async fn serve(addr: SocketAddr, health: Arc<Health>, shutdown: CancellationToken) -> std::io::Result<()> {
    let (live, ready) = (health.clone(), health);
    let app = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/livez", get(move || std::future::ready(probe(live.liveness()))))
        .route("/readyz", get(move || std::future::ready(probe(ready.readiness()))));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "metrics server listening");
    axum::serve(listener, app).with_graceful_shutdown(async move { shutdown.cancelled().await }).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::new();
        m.telegram_request("sendPhoto", "ok", Duration::from_millis(30));
        m.telegram_request("sendPhoto", "429", Duration::from_millis(3));
        m.update_handled("match", Duration::from_millis(900), Duration::from_millis(2));
        m.in_flight_add(2);
        let text = m.render();
        assert!(text.contains("tg_gateway_telegram_requests_total{method=\"sendPhoto\",outcome=\"429\"} 1"));
        assert!(text.contains("tg_gateway_overhead_seconds_bucket{le=\"0.002\"} 1"));
        assert!(text.contains("tg_gateway_update_seconds_count 1"));
        assert!(text.contains("tg_gateway_in_flight 2"));
        assert!(text.contains("# TYPE tg_gateway_update_seconds histogram"));
        // Gauges are there from the start (alerts compare them with 0).
        assert!(text.contains("tg_gateway_matcher_waiting 0"), "{text}");
        assert!(text.contains("tg_gateway_matcher_endpoints 0"), "{text}");
    }
}
