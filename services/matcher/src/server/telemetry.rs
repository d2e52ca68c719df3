//! Logs (JSON or text, to stderr), and OpenTelemetry traces over OTLP when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set. Incoming W3C `traceparent` metadata makes the
//! caller's span the parent of ours.

use opentelemetry::propagation::Extractor;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// Keeps the exporter alive; flushes spans on drop.
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
    meters: Option<SdkMeterProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take() {
            let _ = p.shutdown();
        }
        if let Some(m) = self.meters.take() {
            let _ = m.shutdown();
        }
    }
}

pub fn init(json: bool) -> anyhow::Result<TelemetryGuard> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let (provider, meters) = match std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT") {
        Ok(endpoint) if !endpoint.is_empty() => {
            let service = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "lookalike-matcher".into());
            let resource = opentelemetry_sdk::Resource::builder().with_service_name(service).build();
            let spans = opentelemetry_otlp::SpanExporter::builder().with_tonic().build()?;
            let tracer =
                SdkTracerProvider::builder().with_batch_exporter(spans).with_resource(resource.clone()).build();
            // The same request metrics as the Prometheus endpoint, pushed over OTLP.
            let metrics = opentelemetry_otlp::MetricExporter::builder().with_tonic().build()?;
            let meters = SdkMeterProvider::builder().with_periodic_exporter(metrics).with_resource(resource).build();
            opentelemetry::global::set_meter_provider(meters.clone());
            (Some(tracer), Some(meters))
        }
        _ => (None, None),
    };
    let otel = provider.as_ref().map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer("lookalike-matcher")));
    let registry = tracing_subscriber::registry().with(filter).with(otel);
    if json {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_writer(std::io::stderr),
            )
            .try_init()?;
    } else {
        registry.with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr)).try_init()?;
    }
    Ok(TelemetryGuard { provider, meters })
}

struct MetadataExtractor<'a>(&'a tonic::metadata::MetadataMap);

impl Extractor for MetadataExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0
            .keys()
            .filter_map(|k| match k {
                tonic::metadata::KeyRef::Ascii(k) => Some(k.as_str()),
                tonic::metadata::KeyRef::Binary(_) => None,
            })
            .collect()
    }
}

/// The server span of one RPC, child of the caller's trace when it sent `traceparent`.
pub fn request_span(method: &'static str, meta: &tonic::metadata::MetadataMap) -> tracing::Span {
    let span = tracing::info_span!(
        "rpc",
        otel.name = method,
        otel.kind = "server",
        rpc.system = "grpc",
        rpc.method = method,
        trace_id = tracing::field::Empty,
        faces = tracing::field::Empty,
    );
    let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(&MetadataExtractor(meta)));
    let remote = parent.span().span_context().clone();
    if remote.is_valid() {
        let _ = span.set_parent(parent);
        span.record("trace_id", remote.trace_id().to_string());
    }
    span
}
