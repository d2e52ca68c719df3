//! Prometheus metrics in the text exposition format, and the `/metrics` + `/healthz`
//! server. Hand-rolled (a few counters and histograms) to keep the exact Prometheus text
//! format and the dependency list short.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::time::Duration;

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio_util::sync::CancellationToken;

use crate::health::{Health, Verdict};

/// Process-wide metrics: one gateway per process, and every module records into them.
pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::default);

/// Seconds; from 1 ms to about 65 s.
const BUCKETS: [f64; 17] =
    [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0];

struct Family {
    help: &'static str,
    kind: &'static str,
}

const FAMILIES: &[(&str, Family)] = &[
    ("tg_gateway_updates_total", Family { help: "Updates handled, by outcome.", kind: "counter" }),
    (
        "tg_gateway_update_seconds",
        Family { help: "Time from receiving an update to its last reply.", kind: "histogram" },
    ),
    (
        "tg_gateway_overhead_seconds",
        Family {
            help: "Per-update time spent in the gateway itself: total minus download, matcher and Bot API send time.",
            kind: "histogram",
        },
    ),
    (
        "tg_gateway_telegram_requests_total",
        Family { help: "Bot API requests, by method and outcome (ok, error code, transport).", kind: "counter" },
    ),
    ("tg_gateway_telegram_request_seconds", Family { help: "Bot API request latency.", kind: "histogram" }),
    (
        "tg_gateway_flood_wait_seconds",
        Family { help: "Time a message waited for the flood-control budget.", kind: "histogram" },
    ),
    (
        "tg_gateway_flood_retries_total",
        Family { help: "Sends retried after a 429 (retry_after honoured).", kind: "counter" },
    ),
    (
        "tg_gateway_matcher_calls_total",
        Family { help: "Matcher RPC attempts, by method and gRPC code.", kind: "counter" },
    ),
    ("tg_gateway_matcher_seconds", Family { help: "Matcher RPC attempt latency.", kind: "histogram" }),
    (
        "tg_gateway_thumbnail_cache_total",
        Family { help: "Thumbnail file_id cache lookups, by result.", kind: "counter" },
    ),
    (
        "tg_gateway_cards_total",
        Family {
            help: "Match replies by form: card sent, or plain reply (user's choice, or fallback with its reason).",
            kind: "counter",
        },
    ),
    ("tg_gateway_card_compose_seconds", Family { help: "Time to compose one reply card.", kind: "histogram" }),
    (
        "tg_gateway_matcher_waiting",
        Family { help: "Matcher calls waiting (retrying) for an unavailable or overloaded matcher.", kind: "gauge" },
    ),
    (
        "tg_gateway_matcher_shed_total",
        Family {
            help: "Matcher calls given up at once because too many already wait for the matcher (circuit breaker).",
            kind: "counter",
        },
    ),
    (
        "tg_gateway_poll_conflicts_total",
        Family {
            help: "getUpdates answered 409 Conflict: another poller or a webhook uses this bot token.",
            kind: "counter",
        },
    ),
    ("tg_gateway_user_rate_limited_total", Family { help: "Photos refused by the per-user limit.", kind: "counter" }),
    ("tg_gateway_in_flight", Family { help: "Updates being processed.", kind: "gauge" }),
    ("tg_gateway_matcher_endpoints", Family { help: "Matcher endpoints currently known.", kind: "gauge" }),
];

#[derive(Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

type Key = (&'static str, String);

#[derive(Default)]
pub struct Metrics {
    counters: Mutex<BTreeMap<Key, u64>>,
    histograms: Mutex<BTreeMap<Key, Histogram>>,
    in_flight: AtomicI64,
    endpoints: AtomicI64,
    matcher_waiting: AtomicI64,
}

fn labels(pairs: &[(&str, &str)]) -> String {
    let inner: Vec<String> = pairs
        .iter()
        .map(|(k, v)| {
            let v = v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
            format!("{k}=\"{v}\"")
        })
        .collect();
    inner.join(",")
}

/// A poisoned lock only means another thread panicked mid-update of a counter; the
/// numbers are still usable, so keep serving them.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Metrics {
    fn inc(&self, name: &'static str, l: &[(&str, &str)]) {
        *lock(&self.counters).entry((name, labels(l))).or_default() += 1;
    }

    fn observe(&self, name: &'static str, l: &[(&str, &str)], d: Duration) {
        let secs = d.as_secs_f64();
        let mut h = lock(&self.histograms);
        let entry = h.entry((name, labels(l))).or_default();
        for (i, le) in BUCKETS.iter().enumerate() {
            if secs <= *le {
                entry.counts[i] += 1;
            }
        }
        entry.sum += secs;
        entry.count += 1;
    }

    pub fn update_handled(&self, outcome: &str, total: Duration, overhead: Duration) {
        self.inc("tg_gateway_updates_total", &[("outcome", outcome)]);
        self.observe("tg_gateway_update_seconds", &[], total);
        self.observe("tg_gateway_overhead_seconds", &[], overhead);
    }

    pub fn telegram_request(&self, method: &str, outcome: &str, d: Duration) {
        self.inc("tg_gateway_telegram_requests_total", &[("method", method), ("outcome", outcome)]);
        self.observe("tg_gateway_telegram_request_seconds", &[("method", method)], d);
    }

    pub fn flood_wait(&self, d: Duration) {
        self.observe("tg_gateway_flood_wait_seconds", &[], d);
    }

    pub fn flood_retry(&self) {
        self.inc("tg_gateway_flood_retries_total", &[]);
    }

    pub fn matcher_call(&self, method: &str, code: &str, d: Duration) {
        self.inc("tg_gateway_matcher_calls_total", &[("method", method), ("code", code)]);
        self.observe("tg_gateway_matcher_seconds", &[("method", method)], d);
    }

    pub fn thumbnail_cache(&self, hit: bool) {
        let result = if hit { "hit" } else { "miss" };
        self.inc("tg_gateway_thumbnail_cache_total", &[("result", result)]);
    }

    /// How a match was answered: "card", "plain" (the user's or operator's choice), or
    /// "fallback_<reason>" (a card was due but could not be made).
    pub fn reply_form(&self, form: &str) {
        self.inc("tg_gateway_cards_total", &[("form", form)]);
    }

    pub fn card_composed(&self, d: Duration) {
        self.observe("tg_gateway_card_compose_seconds", &[], d);
    }

    pub fn matcher_waiting_add(&self, delta: i64) {
        self.matcher_waiting.fetch_add(delta, Ordering::Relaxed);
    }

    pub fn matcher_shed(&self, method: &str) {
        self.inc("tg_gateway_matcher_shed_total", &[("method", method)]);
    }

    pub fn poll_conflict(&self) {
        self.inc("tg_gateway_poll_conflicts_total", &[]);
    }

    pub fn user_rate_limited(&self) {
        self.inc("tg_gateway_user_rate_limited_total", &[]);
    }

    pub fn in_flight_add(&self, delta: i64) {
        self.in_flight.fetch_add(delta, Ordering::Relaxed);
    }

    pub fn set_endpoints(&self, n: usize) {
        self.endpoints.store(i64::try_from(n).unwrap_or(i64::MAX), Ordering::Relaxed);
    }

    /// The Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let counters = lock(&self.counters).clone();
        let histograms = lock(&self.histograms).clone();
        let mut out = String::new();
        for (name, fam) in FAMILIES {
            let _ = writeln!(out, "# HELP {name} {}\n# TYPE {name} {}", fam.help, fam.kind);
            match fam.kind {
                "counter" => {
                    for ((n, l), v) in counters.iter().filter(|((n, _), _)| n == name) {
                        let _ = writeln!(out, "{n}{} {v}", braces(l));
                    }
                }
                "histogram" => {
                    for ((n, l), h) in histograms.iter().filter(|((n, _), _)| n == name) {
                        let sep = if l.is_empty() { "" } else { "," };
                        for (i, le) in BUCKETS.iter().enumerate() {
                            let _ = writeln!(out, "{n}_bucket{{{l}{sep}le=\"{le}\"}} {}", h.counts[i]);
                        }
                        let _ = writeln!(out, "{n}_bucket{{{l}{sep}le=\"+Inf\"}} {}", h.count);
                        let _ = writeln!(out, "{n}_sum{} {}", braces(l), h.sum);
                        let _ = writeln!(out, "{n}_count{} {}", braces(l), h.count);
                    }
                }
                _ => {
                    let v = match *name {
                        "tg_gateway_in_flight" => self.in_flight.load(Ordering::Relaxed),
                        "tg_gateway_matcher_waiting" => self.matcher_waiting.load(Ordering::Relaxed),
                        _ => self.endpoints.load(Ordering::Relaxed),
                    };
                    let _ = writeln!(out, "{name} {v}");
                }
            }
        }
        out
    }
}

fn braces(l: &str) -> String {
    if l.is_empty() {
        String::new()
    } else {
        format!("{{{l}}}")
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
        let m = Metrics::default();
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
    }
}
