//! One tower layer observes every call of the Matcher service: its server span (a child of
//! the caller's trace when its metadata carries a W3C `traceparent`), its deadline, and
//! once it has answered, the request metrics and the one log line, keyed by method and the
//! gRPC status the client saw. The handlers do none of this.
//!
//! The status of a call is in the response headers when it failed before answering
//! (trailers-only) and in the trailers otherwise, so the response body is wrapped and
//! watched until its trailers. A call whose future or body is dropped before that (tonic's
//! own `grpc-timeout` timer, or the client going away) is recorded when it is dropped:
//! DEADLINE_EXCEEDED when its deadline had passed (and counted as shed), CANCELLED
//! otherwise.

use super::convert::code_name;
use super::deadline::{deadline_from, Deadline};
use super::metrics::Metrics;
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use opentelemetry::propagation::Extractor;
use opentelemetry::trace::TraceContextExt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::{Code, Status};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Wraps the Matcher service (see the module comment).
#[derive(Clone)]
pub struct ObserveLayer {
    metrics: Arc<Metrics>,
}

impl ObserveLayer {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self { metrics }
    }
}

impl<S> tower::Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Observe<S> {
        Observe { inner, metrics: self.metrics.clone() }
    }
}

#[derive(Clone)]
pub struct Observe<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S> NamedService for Observe<S> {
    const NAME: &'static str = super::SERVICE_NAME;
}

/// The method named by a gRPC path (`/lookalike.v1.Matcher/Match`), as a metric label.
fn method_of(path: &str) -> &'static str {
    match path.rsplit('/').next() {
        Some("Match") => "Match",
        Some("MatchStream") => "MatchStream",
        Some("Embed") => "Embed",
        Some("GetIdentity") => "GetIdentity",
        Some("GetGalleryInfo") => "GetGalleryInfo",
        _ => "unknown",
    }
}

impl<S, B> tower::Service<http::Request<B>> for Observe<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let start = Instant::now();
        let method = method_of(req.uri().path());
        let deadline = deadline_from(req.headers(), start);
        req.extensions_mut().insert(Deadline(deadline));
        let span = request_span(method, req.headers());
        let call = Call { metrics: self.metrics.clone(), method, start, deadline, span: span.clone(), done: false };
        // The clone that was made ready answers this call (tower's documented pattern).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let mut call = call;
            let response = tracing::Instrument::instrument(inner.call(req), span).await?;
            let (parts, body) = response.into_parts();
            if let Some(status) = Status::from_header_map(&parts.headers) {
                call.finish(status.code(), status.message());
                return Ok(http::Response::from_parts(parts, body));
            }
            if body.is_end_stream() {
                call.finish(Code::Unknown, "the response had neither a status nor a body");
                return Ok(http::Response::from_parts(parts, body));
            }
            Ok(http::Response::from_parts(parts, Body::new(WatchedBody { inner: body, call })))
        })
    }
}

/// One call being observed; recorded once, by [`Call::finish`] or when dropped.
struct Call {
    metrics: Arc<Metrics>,
    method: &'static str,
    start: Instant,
    deadline: Option<Instant>,
    span: tracing::Span,
    done: bool,
}

impl Call {
    fn finish(&mut self, code: Code, message: &str) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let name = code_name(code);
        let elapsed = self.start.elapsed();
        self.metrics.record_request(self.method, name, elapsed.as_secs_f64());
        let ms = (elapsed.as_secs_f64() * 1000.0 * 10.0).round() / 10.0;
        let method = self.method;
        self.span.in_scope(|| {
            if code == Code::Ok {
                tracing::info!(method, code = name, ms, "rpc");
            } else {
                tracing::info!(method, code = name, ms, message, "rpc");
            }
        });
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            self.metrics.shed.with_label_values(&["deadline"]).inc();
            self.finish(Code::DeadlineExceeded, "the handler was dropped");
        } else {
            self.finish(Code::Cancelled, "the handler was dropped");
        }
    }
}

/// A response body watched for its trailers (where an answered call's status is).
struct WatchedBody {
    inner: Body,
    call: Call,
}

impl HttpBody for WatchedBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = &mut *self;
        // A stream's items are computed while its body is polled: inside the call's span.
        let polled = this.call.span.in_scope(|| Pin::new(&mut this.inner).poll_frame(cx));
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(status) = frame.trailers_ref().and_then(Status::from_header_map) {
                    this.call.finish(status.code(), status.message());
                }
            }
            Poll::Ready(Some(Err(status))) => this.call.finish(status.code(), status.message()),
            Poll::Ready(None) => this.call.finish(Code::Unknown, "the response ended without a status"),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// The server span of one call, child of the caller's trace when it sent `traceparent`
/// (the propagator is the one `lookalike_telemetry` installs).
fn request_span(method: &'static str, headers: &http::HeaderMap) -> tracing::Span {
    let span = tracing::info_span!(
        "rpc",
        otel.name = method,
        otel.kind = "server",
        rpc.system = "grpc",
        rpc.method = method,
        trace_id = tracing::field::Empty,
        faces = tracing::field::Empty,
    );
    let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(headers)));
    let remote = parent.span().span_context().clone();
    if remote.is_valid() {
        let _ = span.set_parent(parent);
        span.record("trace_id", remote.trace_id().to_string());
    }
    span
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::time::Duration;
    use tower::{Layer, Service, ServiceExt};

    fn metrics() -> Arc<Metrics> {
        Arc::new(Metrics::new().unwrap())
    }

    fn count(m: &Metrics, method: &str, code: &str) -> u64 {
        m.requests.with_label_values(&[method, code]).get()
    }

    type Handler = Box<dyn Fn() -> http::Response<Body> + Send + Sync>;

    /// A stand-in for a tonic service: answers each call with what `respond` makes.
    fn service(
        respond: Handler,
    ) -> impl tower::Service<
        http::Request<()>,
        Response = http::Response<Body>,
        Error = std::convert::Infallible,
        Future: Send + 'static,
    > + Clone
           + Send
           + 'static {
        let respond = Arc::new(respond);
        tower::service_fn(move |_req: http::Request<()>| {
            let respond = respond.clone();
            async move { Ok(respond()) }
        })
    }

    fn request(path: &str, timeout: Option<&'static str>) -> http::Request<()> {
        let mut r = http::Request::builder().uri(path);
        if let Some(t) = timeout {
            r = r.header("grpc-timeout", t);
        }
        r.body(()).unwrap()
    }

    #[tokio::test]
    async fn a_trailers_only_error_is_counted_under_its_method_and_code() {
        let m = metrics();
        let mut svc = ObserveLayer::new(m.clone())
            .layer(service(Box::new(|| Status::invalid_argument("bad photo").into_http::<Body>())));
        let resp = svc.ready().await.unwrap().call(request("/lookalike.v1.Matcher/Match", None)).await.unwrap();
        assert_eq!(resp.headers().get("grpc-status").unwrap(), "3");
        assert_eq!(count(&m, "Match", "INVALID_ARGUMENT"), 1);
        assert_eq!(count(&m, "Match", "OK"), 0);
    }

    #[tokio::test]
    async fn an_answer_is_counted_when_its_trailers_pass_and_not_before() {
        let m = metrics();
        let mut svc = ObserveLayer::new(m.clone()).layer(service(Box::new(|| {
            let mut trailers = http::HeaderMap::new();
            trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
            let frames = futures::stream::iter(vec![
                Ok::<_, Status>(Frame::data(Bytes::from_static(b"answer"))),
                Ok(Frame::trailers(trailers)),
            ]);
            http::Response::new(Body::new(http_body_util::StreamBody::new(frames)))
        })));
        let resp = svc.ready().await.unwrap().call(request("/lookalike.v1.Matcher/Embed", None)).await.unwrap();
        assert_eq!(count(&m, "Embed", "OK"), 0, "not answered until the trailers are sent");
        let collected = http_body_util::BodyExt::collect(resp.into_body()).await.unwrap();
        assert_eq!(collected.trailers().and_then(|t| t.get("grpc-status")).unwrap(), "0");
        assert_eq!(count(&m, "Embed", "OK"), 1);
    }

    #[tokio::test]
    async fn a_dropped_call_counts_as_cancelled_or_past_its_deadline() {
        let m = metrics();
        let slow = tower::service_fn(|_req: http::Request<()>| async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok::<_, std::convert::Infallible>(http::Response::new(Body::empty()))
        });
        let mut svc = ObserveLayer::new(m.clone()).layer(slow);
        let call = svc.ready().await.unwrap().call(request("/lookalike.v1.Matcher/Match", None));
        assert!(tokio::time::timeout(Duration::from_millis(20), call).await.is_err());
        assert_eq!(count(&m, "Match", "CANCELLED"), 1);
        let call = svc.ready().await.unwrap().call(request("/lookalike.v1.Matcher/Match", Some("10m")));
        assert!(tokio::time::timeout(Duration::from_millis(50), call).await.is_err());
        assert_eq!(count(&m, "Match", "DEADLINE_EXCEEDED"), 1);
        assert_eq!(m.shed.with_label_values(&["deadline"]).get(), 1);
    }

    #[tokio::test]
    async fn the_handler_sees_the_deadline_the_layer_computed() {
        let seen = Arc::new(std::sync::Mutex::new(None));
        let s = seen.clone();
        let svc = tower::service_fn(move |req: http::Request<()>| {
            *s.lock().unwrap() = req.extensions().get::<Deadline>().copied();
            async { Ok::<_, std::convert::Infallible>(Status::ok("").into_http::<Body>()) }
        });
        let before = Instant::now();
        let mut svc = ObserveLayer::new(metrics()).layer(svc);
        svc.ready().await.unwrap().call(request("/lookalike.v1.Matcher/Match", Some("1S"))).await.unwrap();
        let d = seen.lock().unwrap().expect("extension set").0.expect("a deadline");
        assert!(d > before + Duration::from_millis(900) && d < Instant::now() + Duration::from_secs(1));
        assert_eq!(method_of("/lookalike.v1.Matcher/GetGalleryInfo"), "GetGalleryInfo");
        assert_eq!(method_of("/x.y/Other"), "unknown");
    }
}
