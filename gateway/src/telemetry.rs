//! Logs (text or JSON, to stderr) and, when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, the
//! gateway's spans exported over OTLP (gRPC). The W3C trace context sent to the matcher is
//! then the exported span's, so matcher spans nest under the gateway's in a trace viewer.

use std::io::IsTerminal as _;

use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;
use crate::trace_context::TraceContext;

/// Flushes and stops the exporter when dropped.
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take() {
            let _ = p.shutdown();
        }
    }
}

/// Installs the global subscriber. Must run inside a Tokio runtime (the OTLP exporter's
/// batch task lives there).
pub fn init(format: LogFormat) -> anyhow::Result<TelemetryGuard> {
    // HTTP client internals stay quiet: at debug level some of them print request URLs,
    // and Bot API URLs contain the token.
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    for quiet in ["hyper=warn", "hyper_util=warn", "reqwest=warn", "h2=warn"] {
        filter = filter.add_directive(quiet.parse()?);
    }
    let provider = match std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT") {
        Ok(endpoint) if !endpoint.is_empty() => {
            let service = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "lookalike-gateway".into());
            let resource = opentelemetry_sdk::Resource::builder().with_service_name(service).build();
            let exporter = opentelemetry_otlp::SpanExporter::builder().with_tonic().build()?;
            Some(SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource).build())
        }
        _ => None,
    };
    let otel = provider.as_ref().map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer("lookalike-gateway")));
    let registry = tracing_subscriber::registry().with(filter).with(otel);
    // Colour codes only for a person at a terminal, not in collected logs.
    let ansi = std::io::stderr().is_terminal();
    match format {
        LogFormat::Text => {
            registry.with(tracing_subscriber::fmt::layer().with_ansi(ansi).with_writer(std::io::stderr)).try_init()?
        }
        LogFormat::Json => registry
            .with(tracing_subscriber::fmt::layer().json().with_current_span(true).with_writer(std::io::stderr))
            .try_init()?,
    }
    if provider.is_some() {
        tracing::info!("exporting spans over OTLP");
    }
    Ok(TelemetryGuard { provider })
}

/// The OpenTelemetry ids of `span`, when spans are being exported.
pub fn span_trace_context(span: &tracing::Span) -> Option<TraceContext> {
    let cx = span.context();
    let otel_span = cx.span();
    let sc = otel_span.span_context();
    sc.is_valid().then(|| {
        TraceContext::from_ids(
            u128::from_be_bytes(sc.trace_id().to_bytes()),
            u64::from_be_bytes(sc.span_id().to_bytes()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exported_spans_give_the_trace_context() {
        // Without an OpenTelemetry layer there is nothing to take ids from.
        assert!(span_trace_context(&tracing::info_span!("x")).is_none());

        let provider = SdkTracerProvider::builder().build();
        let subscriber =
            tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, || {
            let update = tracing::info_span!("update");
            let parent = span_trace_context(&update).unwrap();
            let _in = update.enter();
            let call = tracing::info_span!("matcher.call");
            let child = span_trace_context(&call).unwrap();
            assert_eq!(parent.trace_id(), child.trace_id(), "one trace per update");
            assert_ne!(parent.span_id(), child.span_id());
            assert!(child.traceparent().starts_with(&format!("00-{}-", parent.trace_id())));
        });
    }
}
