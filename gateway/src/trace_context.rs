//! W3C Trace Context (`traceparent`) for the matcher calls: every update gets a trace id,
//! every matcher call attempt a span id whose parent is the update's span, so the
//! matcher's spans hang under the gateway's in a trace viewer.

use std::fmt;

#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    trace_id: u128,
    span_id: u64,
}

fn nonzero_u64() -> u64 {
    loop {
        let v = fastrand::u64(..);
        if v != 0 {
            return v;
        }
    }
}

impl TraceContext {
    /// A new trace (one per update).
    pub fn new_root() -> Self {
        let trace_id = (u128::from(nonzero_u64()) << 64) | u128::from(fastrand::u64(..));
        Self { trace_id, span_id: nonzero_u64() }
    }

    /// Ids taken from an exported span (see `telemetry::span_trace_context`).
    pub fn from_ids(trace_id: u128, span_id: u64) -> Self {
        Self { trace_id, span_id }
    }

    /// A child span in the same trace.
    pub fn child(&self) -> Self {
        Self { trace_id: self.trace_id, span_id: nonzero_u64() }
    }

    pub fn trace_id(&self) -> String {
        format!("{:032x}", self.trace_id)
    }

    pub fn span_id(&self) -> String {
        format!("{:016x}", self.span_id)
    }

    /// `00-<trace id>-<span id>-01` (version 00, sampled).
    pub fn traceparent(&self) -> String {
        format!("00-{:032x}-{:016x}-01", self.trace_id, self.span_id)
    }
}

impl fmt::Debug for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.traceparent())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_format() {
        let root = TraceContext::new_root();
        let tp = root.traceparent();
        let parts: Vec<&str> = tp.split('-').collect();
        assert_eq!(parts.len(), 4);
        assert_eq!(parts[0], "00");
        assert_eq!(parts[1].len(), 32);
        assert_eq!(parts[2].len(), 16);
        assert_eq!(parts[3], "01");
        let child = root.child();
        assert_eq!(child.trace_id(), root.trace_id());
        assert_ne!(child.span_id(), root.span_id());
    }
}
