//! W3C Trace Context for the matcher calls: every update gets a trace id, every matcher
//! call attempt a span id whose parent is the update's span, so the matcher's spans hang
//! under the gateway's in a trace viewer.
//!
//! The ids are OpenTelemetry's (the exported span's when spans are exported, else new
//! random ones), and the headers are written by the text-map propagator that
//! `lookalike_telemetry::init` installs (W3C `traceparent`), the one the matcher reads
//! them with.

use std::collections::HashMap;
use std::fmt;

use opentelemetry::propagation::Injector;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState};
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};

#[derive(Clone, PartialEq, Eq)]
pub struct TraceContext(SpanContext);

fn nonzero_u64() -> u64 {
    loop {
        let v = fastrand::u64(..);
        if v != 0 {
            return v;
        }
    }
}

fn span(trace_id: TraceId) -> SpanContext {
    SpanContext::new(trace_id, SpanId::from(nonzero_u64()), TraceFlags::SAMPLED, false, TraceState::default())
}

impl TraceContext {
    /// A new trace (one per update), when spans are not exported.
    pub fn new_root() -> Self {
        let trace_id = (u128::from(nonzero_u64()) << 64) | u128::from(fastrand::u64(..));
        Self(span(TraceId::from(trace_id)))
    }

    /// An exported span's context (see `telemetry::span_trace_context`).
    pub fn from_span_context(sc: SpanContext) -> Self {
        Self(sc)
    }

    /// A child span in the same trace.
    pub fn child(&self) -> Self {
        Self(span(self.0.trace_id()))
    }

    pub fn trace_id(&self) -> String {
        self.0.trace_id().to_string()
    }

    pub fn span_id(&self) -> String {
        self.0.span_id().to_string()
    }

    /// Writes the propagation headers (`traceparent`, and `tracestate` when there is one)
    /// into gRPC metadata.
    pub fn inject(&self, metadata: &mut MetadataMap) {
        self.inject_into(&mut Metadata(metadata));
    }

    /// The `traceparent` the propagator writes for this context.
    pub fn traceparent(&self) -> String {
        let mut headers = HashMap::new();
        self.inject_into(&mut headers);
        headers.remove("traceparent").unwrap_or_default()
    }

    fn inject_into(&self, injector: &mut dyn Injector) {
        let cx = opentelemetry::Context::new().with_remote_span_context(self.0.clone());
        opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&cx, injector));
    }
}

impl fmt::Debug for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.trace_id(), self.span_id())
    }
}

struct Metadata<'a>(&'a mut MetadataMap);

impl Injector for Metadata<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(k), Ok(v)) = (MetadataKey::from_bytes(key.as_bytes()), MetadataValue::try_from(value)) {
            self.0.insert(k, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_from_the_installed_propagator() {
        opentelemetry::global::set_text_map_propagator(opentelemetry_sdk::propagation::TraceContextPropagator::new());
        let root = TraceContext::new_root();
        let tp = root.traceparent();
        let parts: Vec<&str> = tp.split('-').collect();
        assert_eq!(parts.len(), 4, "{tp:?}");
        assert_eq!(parts[0], "00");
        assert_eq!(parts[1], root.trace_id());
        assert_eq!(parts[1].len(), 32);
        assert_eq!(parts[2].len(), 16);
        assert_eq!(parts[3], "01");
        let child = root.child();
        assert_eq!(child.trace_id(), root.trace_id());
        assert_ne!(child.span_id(), root.span_id());
        let mut md = MetadataMap::new();
        child.inject(&mut md);
        assert_eq!(md.get("traceparent").and_then(|v| v.to_str().ok()), Some(child.traceparent().as_str()));
    }
}
