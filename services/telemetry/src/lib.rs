//! Logs (text or JSON lines on stderr) and, when `OTEL_EXPORTER_OTLP_ENDPOINT` is set,
//! spans (and optionally metrics) exported over OTLP/gRPC, with W3C Trace Context as the
//! propagation format. The matcher and the gateway set up telemetry through this one
//! function so that their logs and traces look alike and nest in a trace viewer.

use std::io::IsTerminal as _;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// For a person reading a terminal.
    Text,
    /// One JSON object per line, the event's fields at the top level, for log collectors.
    Json,
}

/// What a service tells [`init`] about itself.
#[derive(Debug, Clone)]
pub struct Options {
    /// `service.name` of exported telemetry unless `OTEL_SERVICE_NAME` says otherwise.
    pub service: &'static str,
    pub format: LogFormat,
    /// Targets held at `warn` whatever `RUST_LOG` says (e.g. HTTP clients that would print
    /// URLs holding a secret at debug level).
    pub quiet_targets: &'static [&'static str],
    /// Also push the `opentelemetry::global` meter provider's metrics over OTLP.
    pub export_metrics: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("bad log filter directive: {0}")]
    Filter(#[from] tracing_subscriber::filter::ParseError),
    #[error("setting up the OTLP exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    #[error("installing the log subscriber: {0}")]
    Subscriber(#[from] tracing_subscriber::util::TryInitError),
}

/// Keeps the exporters alive; flushes what they hold when dropped.
#[must_use = "dropping the guard stops the exporters"]
pub struct TelemetryGuard {
    tracer: Option<SdkTracerProvider>,
    meters: Option<SdkMeterProvider>,
}

impl TelemetryGuard {
    /// Spans are exported (an OTLP endpoint is configured).
    pub fn exporting(&self) -> bool {
        self.tracer.is_some()
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(t) = self.tracer.take() {
            let _ = t.shutdown();
        }
        if let Some(m) = self.meters.take() {
            let _ = m.shutdown();
        }
    }
}

/// Installs the global subscriber and, with an OTLP endpoint, the exporters. Must run
/// inside a Tokio runtime: the exporters' batch tasks live there.
pub fn init(opts: &Options) -> Result<TelemetryGuard, TelemetryError> {
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    for target in opts.quiet_targets {
        filter = filter.add_directive(format!("{target}=warn").parse()?);
    }
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let (tracer, meters) = match std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT") {
        Ok(endpoint) if !endpoint.is_empty() => {
            let service = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| opts.service.to_owned());
            let resource = opentelemetry_sdk::Resource::builder().with_service_name(service).build();
            let spans = opentelemetry_otlp::SpanExporter::builder().with_tonic().build()?;
            let tracer =
                SdkTracerProvider::builder().with_batch_exporter(spans).with_resource(resource.clone()).build();
            let meters = if opts.export_metrics {
                let metrics = opentelemetry_otlp::MetricExporter::builder().with_tonic().build()?;
                let meters =
                    SdkMeterProvider::builder().with_periodic_exporter(metrics).with_resource(resource).build();
                opentelemetry::global::set_meter_provider(meters.clone());
                Some(meters)
            } else {
                None
            };
            (Some(tracer), meters)
        }
        _ => (None, None),
    };
    let otel = tracer.as_ref().map(|t| tracing_opentelemetry::layer().with_tracer(t.tracer(opts.service)));
    let registry = tracing_subscriber::registry().with(filter).with(otel);
    match opts.format {
        // Colour codes only for a person at a terminal, not in collected logs.
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(std::io::stderr().is_terminal())
                    .with_writer(std::io::stderr),
            )
            .try_init()?,
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_writer(std::io::stderr),
            )
            .try_init()?,
    }
    let guard = TelemetryGuard { tracer, meters };
    if guard.exporting() {
        tracing::info!(service = opts.service, metrics = guard.meters.is_some(), "exporting spans over OTLP");
    }
    Ok(guard)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(quiet: &'static [&'static str]) -> Options {
        Options { service: "test", format: LogFormat::Json, quiet_targets: quiet, export_metrics: true }
    }

    #[tokio::test]
    async fn installs_once_and_exports_only_with_an_endpoint() {
        std::env::remove_var("OTEL_EXPORTER_OTLP_ENDPOINT");
        assert!(matches!(init(&opts(&["h2=trace"])), Err(TelemetryError::Filter(_))));
        let guard = init(&opts(&["h2"])).expect("first install");
        assert!(!guard.exporting(), "no endpoint, no exporter");
        // A second global subscriber is refused, not silently ignored.
        assert!(matches!(init(&opts(&[])), Err(TelemetryError::Subscriber(_))));
    }
}
