//! The W3C trace context of the gateway's exported spans (logs and the OTLP exporter are
//! set up by `lookalike_telemetry`). When spans are exported, the context sent to the
//! matcher is the exported span's, so matcher spans nest under the gateway's.

use opentelemetry::trace::TraceContextExt as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::trace_context::TraceContext;

/// The OpenTelemetry ids of `span`, when spans are being exported.
pub fn span_trace_context(span: &tracing::Span) -> Option<TraceContext> {
    let cx = span.context();
    let otel_span = cx.span();
    let sc = otel_span.span_context();
    sc.is_valid().then(|| TraceContext::from_span_context(sc.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use tracing_subscriber::layer::SubscriberExt as _;

    #[test]
    fn exported_spans_give_the_trace_context() {
        opentelemetry::global::set_text_map_propagator(opentelemetry_sdk::propagation::TraceContextPropagator::new());
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
