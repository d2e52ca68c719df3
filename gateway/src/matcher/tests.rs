//! The retry, balancing and tracing behaviour against in-process fake matchers.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use lookalike_proto::v1::matcher_server::{Matcher as MatcherApi, MatcherServer};
use lookalike_proto::v1::{
    EmbedRequest, EmbedResponse, GalleryInfo, GetGalleryInfoRequest, GetIdentityRequest, Identity, MatchRequest,
    MatchResponse, MatchResult,
};
use tokio_stream::wrappers::TcpListenerStream;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::endpoints::Backends;
use super::*;

/// Fails the first `fail_first` calls with `fail_code`, then answers.
struct Fake {
    name: &'static str,
    fail_first: u32,
    fail_code: Code,
    calls: AtomicU32,
    traceparents: Mutex<Vec<String>>,
}

impl Fake {
    fn new(name: &'static str, fail_first: u32, fail_code: Code) -> Arc<Self> {
        Arc::new(Self { name, fail_first, fail_code, calls: AtomicU32::new(0), traceparents: Mutex::new(Vec::new()) })
    }
}

#[tonic::async_trait]
impl MatcherApi for Svc {
    async fn r#match(&self, r: Request<MatchRequest>) -> Result<Response<MatchResponse>, Status> {
        if let Some(tp) = r.metadata().get("traceparent") {
            self.traceparents.lock().unwrap().push(tp.to_str().unwrap().to_owned());
        }
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        if n < self.fail_first {
            return Err(Status::new(self.fail_code, "fake failure"));
        }
        Ok(Response::new(MatchResponse { gallery_version: self.name.to_owned(), ..Default::default() }))
    }

    type MatchStreamStream = Pin<Box<dyn Stream<Item = Result<MatchResult, Status>> + Send>>;

    async fn match_stream(
        &self,
        _r: Request<tonic::Streaming<MatchRequest>>,
    ) -> Result<Response<Self::MatchStreamStream>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn embed(&self, _r: Request<EmbedRequest>) -> Result<Response<EmbedResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn get_identity(&self, r: Request<GetIdentityRequest>) -> Result<Response<Identity>, Status> {
        Ok(Response::new(Identity {
            identity_id: r.get_ref().identity_id,
            name: "Fake Person".into(),
            ..Default::default()
        }))
    }

    async fn get_gallery_info(&self, _r: Request<GetGalleryInfoRequest>) -> Result<Response<GalleryInfo>, Status> {
        Err(Status::unimplemented("fake"))
    }
}

/// The service wrapper (the trait is foreign, so it is implemented on a local type).
struct Svc(Arc<Fake>);

impl std::ops::Deref for Svc {
    type Target = Fake;
    fn deref(&self) -> &Fake {
        &self.0
    }
}

async fn serve(fake: Arc<Fake>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(MatcherServer::new(Svc(fake)))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    addr
}

fn matcher(urls: &[String], deadline_ms: u64) -> Matcher {
    matcher_with(urls, deadline_ms, 100)
}

fn matcher_with(urls: &[String], deadline_ms: u64, max_waiting: usize) -> Matcher {
    let b = Arc::new(Backends::new());
    b.set(urls).unwrap();
    Matcher::new(
        b,
        RetryPolicy {
            timeout: Duration::from_secs(5),
            deadline: Duration::from_millis(deadline_ms),
            backoff_base: Duration::from_millis(10),
            backoff_cap: Duration::from_millis(40),
            max_waiting,
        },
    )
}

#[tokio::test]
async fn retries_overload_then_succeeds_with_trace_context() {
    opentelemetry::global::set_text_map_propagator(opentelemetry_sdk::propagation::TraceContextPropagator::new());
    let fake = Fake::new("a", 2, Code::ResourceExhausted);
    let addr = serve(fake.clone()).await;
    let m = matcher(&[format!("http://{addr}")], 2_000);
    let trace = TraceContext::new_root();
    let r = m.match_photo(Bytes::from_static(&[1, 2, 3]), 5, false, &trace).await.unwrap();
    assert_eq!(r.gallery_version, "a");
    assert_eq!(fake.calls.load(Ordering::SeqCst), 3);
    let tps = fake.traceparents.lock().unwrap().clone();
    assert_eq!(tps.len(), 3);
    for tp in &tps {
        // Same trace as the update; each attempt its own span.
        assert!(tp.starts_with(&format!("00-{}-", trace.trace_id())), "{tp}");
    }
    assert_ne!(tps[0], tps[1]);
}

#[tokio::test]
async fn retries_by_time_then_gives_up_as_busy() {
    let fake = Fake::new("a", 10_000, Code::Unavailable);
    let addr = serve(fake.clone()).await;
    let m = matcher(&[format!("http://{addr}")], 600);
    let started = std::time::Instant::now();
    let err = m.match_photo(Bytes::from_static(&[1]), 5, false, &TraceContext::new_root()).await.unwrap_err();
    let waited = started.elapsed();
    assert!(matches!(err, MatcherError::Busy { .. }), "{err}");
    // Backoff 10, 20, 40, 40, ... ms (±50 %) over 600 ms: many attempts, not a fixed count,
    // and never past the deadline.
    let calls = fake.calls.load(Ordering::SeqCst);
    assert!(calls >= 8, "{calls} attempts in {waited:?}");
    assert!(waited >= Duration::from_millis(500) && waited < Duration::from_millis(1_500), "{waited:?}");
}

#[tokio::test]
async fn a_matcher_that_comes_back_within_the_deadline_answers() {
    // Down for ~25 attempts (~0.75 s at the 40 ms cap), then up: the caller never sees it.
    let fake = Fake::new("a", 25, Code::Unavailable);
    let addr = serve(fake.clone()).await;
    let m = matcher(&[format!("http://{addr}")], 5_000);
    let r = m.match_photo(Bytes::from_static(&[1]), 5, false, &TraceContext::new_root()).await.unwrap();
    assert_eq!(r.gallery_version, "a");
    assert_eq!(fake.calls.load(Ordering::SeqCst), 26);
}

#[tokio::test]
async fn past_the_waiting_bound_calls_give_up_at_once() {
    let fake = Fake::new("a", 10_000, Code::Unavailable);
    let addr = serve(fake.clone()).await;
    let m = matcher_with(&[format!("http://{addr}")], 1_500, 2);
    let waiting: Vec<_> = (0..2)
        .map(|_| {
            let m = m.clone();
            tokio::spawn(
                async move { m.match_photo(Bytes::from_static(&[1]), 5, false, &TraceContext::new_root()).await },
            )
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Two calls hold the slots: a third is refused after its one failed attempt.
    let started = std::time::Instant::now();
    let err = m.match_photo(Bytes::from_static(&[1]), 5, false, &TraceContext::new_root()).await.unwrap_err();
    assert!(matches!(err, MatcherError::Busy { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_millis(300), "{:?}", started.elapsed());
    for w in waiting {
        assert!(w.await.unwrap().is_err(), "the waiting calls give up at their deadline");
    }
    // The slots are free again: the next call waits (retries) instead of giving up at once.
    let before = fake.calls.load(Ordering::SeqCst);
    let started = std::time::Instant::now();
    assert!(m.match_photo(Bytes::from_static(&[1]), 5, false, &TraceContext::new_root()).await.is_err());
    assert!(started.elapsed() >= Duration::from_millis(1_000), "{:?}", started.elapsed());
    assert!(fake.calls.load(Ordering::SeqCst) - before > 5);
}

#[tokio::test]
async fn invalid_argument_is_not_retried() {
    let fake = Fake::new("a", 100, Code::InvalidArgument);
    let addr = serve(fake.clone()).await;
    let m = matcher(&[format!("http://{addr}")], 2_000);
    let err = m.match_photo(Bytes::from_static(&[1]), 5, false, &TraceContext::new_root()).await.unwrap_err();
    assert!(matches!(err, MatcherError::InvalidImage(_)), "{err}");
    assert_eq!(fake.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn calls_are_spread_and_a_dead_replica_is_skipped() {
    let a = Fake::new("a", 0, Code::Ok);
    let b = Fake::new("b", 0, Code::Ok);
    let (aa, ba) = (serve(a.clone()).await, serve(b.clone()).await);
    // Nothing listens on port 9: every call there is UNAVAILABLE and retried elsewhere.
    let m = matcher(&[format!("http://{aa}"), format!("http://{ba}"), "http://127.0.0.1:9".to_owned()], 2_000);
    for _ in 0..30 {
        m.match_photo(Bytes::from_static(&[1]), 5, false, &TraceContext::new_root()).await.unwrap();
    }
    let (na, nb) = (a.calls.load(Ordering::SeqCst), b.calls.load(Ordering::SeqCst));
    assert_eq!(na + nb, 30);
    assert!(na >= 10 && nb >= 10, "a={na} b={nb}");
}

#[tokio::test]
async fn no_replica_is_busy() {
    let m = matcher(&[], 100);
    let err = m.identity(1, &TraceContext::new_root()).await.unwrap_err();
    assert!(matches!(err, MatcherError::Busy { .. }), "{err}");
}
