//! Prometheus metrics, served as text on their own port (what Kubernetes clusters scrape).

use lookalike_engine::{DetectPass, FallbackBudget};
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{
    CounterVec, Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::sync::Arc;

/// The fallback budget's own counters, copied into Prometheus counters when scraped.
struct FallbackCollector {
    budget: Arc<FallbackBudget>,
    passes: IntCounterVec,
    cpu: CounterVec,
}

impl Collector for FallbackCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.passes.desc().into_iter().chain(self.cpu.desc()).collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        for pass in DetectPass::FALLBACK {
            let n = self.budget.counts(pass);
            for (result, value) in [("ran", n.ran), ("skipped", n.skipped)] {
                let c = self.passes.with_label_values(&[pass.as_str(), result]);
                c.reset();
                c.inc_by(value);
            }
            let c = self.cpu.with_label_values(&[pass.as_str()]);
            c.reset();
            c.inc_by(n.cpu.as_secs_f64());
        }
        self.passes.collect().into_iter().chain(self.cpu.collect()).collect()
    }
}

pub struct Metrics {
    registry: Registry,
    /// OTLP twins of the request metrics (no-ops unless OTEL_EXPORTER_OTLP_ENDPOINT is set).
    otel_requests: opentelemetry::metrics::Counter<u64>,
    otel_latency: opentelemetry::metrics::Histogram<f64>,
    pub requests: IntCounterVec,
    pub latency: HistogramVec,
    pub queue_depth: IntGauge,
    pub workers_busy: IntGauge,
    pub workers: IntGauge,
    pub shed: IntCounterVec,
    pub reloads: IntCounterVec,
    pub gallery_embeddings: IntGauge,
    /// 1, labelled with the OpenBLAS kernel the encoder runs on.
    pub blas: IntGaugeVec,
    /// Bytes photos in flight may reserve (-1: unlimited), and what they hold now.
    pub memory_budget: IntGauge,
    pub memory_reserved: IntGauge,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("lookalike_requests_total", "RPCs answered, by method and gRPC status code name"),
            &["method", "code"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new("lookalike_request_duration_seconds", "RPC latency, queue wait included")
                .buckets(vec![0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            &["method"],
        )?;
        let queue_depth = IntGauge::new("lookalike_queue_depth", "Requests waiting for a worker")?;
        let workers_busy = IntGauge::new("lookalike_workers_busy", "Workers processing a request")?;
        let workers = IntGauge::new("lookalike_workers", "Workers in the pool")?;
        let shed = IntCounterVec::new(
            Opts::new("lookalike_shed_total", "Requests refused or dropped without computing, by reason"),
            &["reason"],
        )?;
        let reloads =
            IntCounterVec::new(Opts::new("lookalike_gallery_reloads_total", "Gallery reload attempts"), &["result"])?;
        let gallery_embeddings = IntGauge::new("lookalike_gallery_embeddings", "Embeddings in the serving gallery")?;
        let blas = IntGaugeVec::new(
            Opts::new("lookalike_blas_info", "The OpenBLAS kernel the face encoder runs on (value 1)"),
            &["kernel", "coretype_env"],
        )?;
        let memory_budget =
            IntGauge::new("lookalike_memory_budget_bytes", "Bytes photos in flight may reserve (-1: no ceiling)")?;
        let memory_reserved =
            IntGauge::new("lookalike_memory_reserved_bytes", "Bytes reserved by the photos being analysed")?;
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(latency.clone()),
            Box::new(queue_depth.clone()),
            Box::new(workers_busy.clone()),
            Box::new(workers.clone()),
            Box::new(shed.clone()),
            Box::new(reloads.clone()),
            Box::new(gallery_embeddings.clone()),
            Box::new(blas.clone()),
            Box::new(memory_budget.clone()),
            Box::new(memory_reserved.clone()),
        ] {
            registry.register(c)?;
        }
        let meter = opentelemetry::global::meter("lookalike-matcher");
        let otel_requests = meter.u64_counter("lookalike.requests").with_description("RPCs answered").build();
        let otel_latency =
            meter.f64_histogram("lookalike.request.duration").with_unit("s").with_description("RPC latency").build();
        Ok(Self {
            registry,
            otel_requests,
            otel_latency,
            requests,
            latency,
            queue_depth,
            workers_busy,
            workers,
            shed,
            reloads,
            gallery_embeddings,
            blas,
            memory_budget,
            memory_reserved,
        })
    }

    /// Records one answered RPC in both Prometheus and OTLP.
    pub fn record_request(&self, method: &'static str, code: &'static str, seconds: f64) {
        self.requests.with_label_values(&[method, code]).inc();
        self.latency.with_label_values(&[method]).observe(seconds);
        let attrs = [opentelemetry::KeyValue::new("method", method), opentelemetry::KeyValue::new("code", code)];
        self.otel_requests.add(1, &attrs);
        self.otel_latency.record(seconds, &attrs[..1]);
    }

    /// Exports the fallback budget's counters (read at each scrape) as
    /// `lookalike_detect_fallback_passes_total{pass, result}` and
    /// `lookalike_detect_fallback_cpu_seconds_total{pass}`.
    pub fn watch_fallback(&self, budget: Arc<FallbackBudget>) -> Result<(), prometheus::Error> {
        let passes = IntCounterVec::new(
            Opts::new(
                "lookalike_detect_fallback_passes_total",
                "Retry and CNN detection passes run or skipped by the fallback CPU budget",
            ),
            &["pass", "result"],
        )?;
        let cpu = CounterVec::new(
            Opts::new("lookalike_detect_fallback_cpu_seconds_total", "CPU time of the retry and CNN passes run"),
            &["pass"],
        )?;
        self.registry.register(Box::new(FallbackCollector { budget, passes, cpu }))
    }

    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        if TextEncoder::new().encode(&self.registry.gather(), &mut buf).is_err() {
            return String::new();
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// A minimal HTTP/1.1 endpoint: `/metrics` (Prometheus text) and `/healthz`.
pub async fn serve_http(
    listener: tokio::net::TcpListener,
    metrics: std::sync::Arc<Metrics>,
    ready: std::sync::Arc<std::sync::atomic::AtomicBool>,
    executor_gauges: impl Fn() -> (i64, i64, i64) + Send + Sync + 'static,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let executor_gauges = std::sync::Arc::new(executor_gauges);
    loop {
        let Ok((mut sock, _)) = listener.accept().await else {
            continue;
        };
        let (metrics, ready, gauges) = (metrics.clone(), ready.clone(), executor_gauges.clone());
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            let n = match tokio::time::timeout(std::time::Duration::from_secs(5), sock.read(&mut buf)).await {
                Ok(Ok(n)) => n,
                _ => return,
            };
            let req = String::from_utf8_lossy(&buf[..n]);
            let path = req.split_whitespace().nth(1).unwrap_or("/");
            let (status, body) = match path {
                "/metrics" => {
                    let (waiting, busy, reserved) = gauges();
                    metrics.queue_depth.set(waiting);
                    metrics.workers_busy.set(busy);
                    metrics.memory_reserved.set(reserved);
                    ("200 OK", metrics.render())
                }
                "/healthz" | "/readyz" => {
                    if ready.load(std::sync::atomic::Ordering::Acquire) {
                        ("200 OK", "ok\n".to_string())
                    } else {
                        ("503 Service Unavailable", "loading\n".to_string())
                    }
                }
                _ => ("404 Not Found", "not found\n".to_string()),
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
        });
    }
}
