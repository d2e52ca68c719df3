//! The matcher's gRPC API, as the gateway uses it: deadline per attempt, retries with
//! exponential backoff and jitter on UNAVAILABLE / RESOURCE_EXHAUSTED (each on the next
//! replica) until a deadline per call, so a matcher blip (a rollout, a reload, a node drain)
//! costs the user a wait, not a refusal; a bound on how many calls wait like that at once
//! (past it, a failing call gives up at once: a long outage does not pile up waiting
//! updates); and a W3C `traceparent` in the metadata of every attempt.

pub mod endpoints;

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use lookalike_proto::v1 as pb;
use lookalike_proto::v1::matcher_client::MatcherClient;
use lookalike_proto::v1::{match_request, FaceSelection, GetIdentityRequest, MatchRequest};
use tokio::time::Instant;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tracing::Instrument as _;

use crate::health::Health;
use crate::metrics::METRICS;
use crate::telemetry;
use crate::trace_context::TraceContext;
use endpoints::Backends;

/// What the matcher found in a photo: every face, left to right, at most the `max_faces`
/// asked for (the matcher's contract, so not re-checked here).
#[derive(Debug, Clone, Default)]
pub struct PhotoMatch {
    /// The gallery that answered (identity ids hold within one gallery only).
    pub gallery_version: String,
    pub faces: Vec<FaceFound>,
}

#[derive(Debug, Clone, Default)]
pub struct FaceFound {
    /// Best first.
    pub candidates: Vec<Candidate>,
    /// The face aligned like the gallery's thumbnails, JPEG; empty unless asked for.
    pub chip_jpeg: Bytes,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub identity_id: u32,
    pub name: String,
    /// URL-safe short name, for links.
    pub alias: String,
    pub similarity_percent: f32,
}

/// A gallery identity's picture and its attribution.
#[derive(Debug, Clone, Default)]
pub struct IdentityInfo {
    pub gallery_version: String,
    /// Aligned face thumbnail, JPEG (may be empty).
    pub thumbnail_jpeg: Bytes,
    pub credit: Option<crate::reply::PhotoCredit>,
}

impl From<pb::MatchResponse> for PhotoMatch {
    fn from(r: pb::MatchResponse) -> Self {
        let faces = r
            .faces
            .into_iter()
            .map(|f| FaceFound {
                candidates: f
                    .candidates
                    .into_iter()
                    .map(|c| Candidate {
                        identity_id: c.identity_id,
                        name: c.name,
                        alias: c.alias,
                        similarity_percent: c.similarity_percent,
                    })
                    .collect(),
                chip_jpeg: f.chip_jpeg,
            })
            .collect();
        Self { gallery_version: r.gallery_version, faces }
    }
}

impl From<pb::Identity> for IdentityInfo {
    fn from(i: pb::Identity) -> Self {
        Self {
            gallery_version: i.gallery_version,
            thumbnail_jpeg: i.thumbnail_jpeg,
            credit: i.photo_credit.map(|c| crate::reply::PhotoCredit {
                author: c.author,
                license: c.license,
                license_url: c.license_url,
                source_url: c.source_url,
            }),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MatcherError {
    /// INVALID_ARGUMENT: the photo cannot be used; the message says why, in words.
    #[error("the matcher cannot use this image: {0}")]
    InvalidImage(String),
    /// Down, overloaded or too slow, even after retries: the user should try later.
    #[error("matcher busy or unreachable ({code:?}): {message}")]
    Busy { code: Code, message: String },
    #[error("matcher error ({code:?}): {message}")]
    Other { code: Code, message: String },
    #[error("{0}")]
    Config(String),
}

impl From<Status> for MatcherError {
    fn from(s: Status) -> Self {
        let message = s.message().to_owned();
        match s.code() {
            Code::InvalidArgument => Self::InvalidImage(message),
            code @ (Code::Unavailable | Code::ResourceExhausted | Code::DeadlineExceeded | Code::Cancelled) => {
                Self::Busy { code, message }
            }
            code => Self::Other { code, message },
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Deadline of one attempt.
    pub timeout: Duration,
    /// Retries of UNAVAILABLE / RESOURCE_EXHAUSTED stop when the next attempt would start
    /// later than this after the first one; the call then fails as busy.
    pub deadline: Duration,
    /// First backoff; doubles per retry up to `backoff_cap` (then ±50 % jitter), so a burst
    /// of callers that all saw RESOURCE_EXHAUSTED does not come back at the same instant.
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    /// Calls allowed to wait for the matcher at once (the circuit breaker): past it, a call
    /// whose first attempt fails gives up at once.
    pub max_waiting: usize,
}

impl RetryPolicy {
    /// The wait before retry number `attempt + 1`.
    fn backoff(&self, attempt: u32) -> Duration {
        let base = self.backoff_base.saturating_mul(2u32.saturating_pow(attempt.min(16))).min(self.backoff_cap);
        base.mul_f64(0.5 + fastrand::f64())
    }
}

/// One call waiting for the matcher to come back; counted in `Waiting` until dropped.
struct WaitingSlot(Arc<AtomicUsize>);

impl WaitingSlot {
    /// A slot if fewer than `max` calls wait now.
    fn take(waiting: &Arc<AtomicUsize>, max: usize) -> Option<Self> {
        let mut now = waiting.load(Ordering::Relaxed);
        loop {
            if now >= max {
                return None;
            }
            match waiting.compare_exchange_weak(now, now + 1, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => {
                    METRICS.matcher_waiting_add(1);
                    return Some(Self(waiting.clone()));
                }
                Err(actual) => now = actual,
            }
        }
    }
}

impl Drop for WaitingSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
        METRICS.matcher_waiting_add(-1);
    }
}

/// How long a call may wait for an unavailable matcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Waits {
    /// Up to `RetryPolicy::deadline`, holding one of the `max_waiting` slots.
    OutageDeadline,
    /// Up to this, without a slot.
    Brief(Duration),
}

/// GetIdentity's retry budget: it follows a match that just succeeded.
const IDENTITY_DEADLINE: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct Matcher {
    backends: Arc<Backends>,
    policy: RetryPolicy,
    /// Calls now waiting for the matcher to come back (see `RetryPolicy::max_waiting`).
    waiting: Arc<AtomicUsize>,
    /// Told whether each attempt reached a matcher (readiness).
    health: Option<Arc<Health>>,
}

fn retryable(code: Code) -> bool {
    matches!(code, Code::Unavailable | Code::ResourceExhausted)
}

impl Matcher {
    pub fn new(backends: Arc<Backends>, policy: RetryPolicy) -> Self {
        Self { backends, policy, waiting: Arc::new(AtomicUsize::new(0)), health: None }
    }

    /// Reports each attempt's reachability to `health`.
    pub fn with_health(mut self, health: Arc<Health>) -> Self {
        self.health = Some(health);
        self
    }

    /// All faces of the photo, left to right, best candidate each; with `chips`, each
    /// face's aligned chip too (for the reply card).
    pub async fn match_photo(
        &self,
        image: Bytes,
        max_faces: u32,
        chips: bool,
        trace: &TraceContext,
    ) -> Result<PhotoMatch, MatcherError> {
        let req = MatchRequest {
            query: Some(match_request::Query::Image(image)),
            top_k: 1,
            faces: FaceSelection::All as i32,
            max_faces,
            return_chips: chips,
            ..Default::default()
        };
        self.call("Match", trace, req, Waits::OutageDeadline, |mut c, r| async move { c.r#match(r).await })
            .await
            .map(PhotoMatch::from)
    }

    /// One identity's metadata and thumbnail. A metadata lookup after a successful match:
    /// retried briefly (`IDENTITY_DEADLINE`), without waiting out an outage or taking one of
    /// the waiting slots (the answer falls back to text instead).
    pub async fn identity(&self, id: u32, trace: &TraceContext) -> Result<IdentityInfo, MatcherError> {
        let req = GetIdentityRequest { identity_id: id, omit_thumbnail: false };
        let waits = Waits::Brief(IDENTITY_DEADLINE.min(self.policy.deadline));
        self.call("GetIdentity", trace, req, waits, |mut c, r| async move { c.get_identity(r).await })
            .await
            .map(IdentityInfo::from)
    }

    async fn call<Req, Resp, F, Fut>(
        &self,
        method: &'static str,
        trace: &TraceContext,
        req: Req,
        waits: Waits,
        f: F,
    ) -> Result<Resp, MatcherError>
    where
        Req: Clone,
        F: Fn(MatcherClient<Channel>, tonic::Request<Req>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Resp>, Status>>,
    {
        let mut attempt = 0u32;
        let first = Instant::now();
        let mut waiting: Option<WaitingSlot> = None;
        loop {
            // One client span per attempt; its id is the matcher's parent span id.
            let attempt_span = tracing::info_span!(
                "matcher.call",
                otel.name = method,
                otel.kind = "client",
                rpc.system = "grpc",
                rpc.method = method,
                attempt,
            );
            let span = telemetry::span_trace_context(&attempt_span).unwrap_or_else(|| trace.child());
            let started = Instant::now();
            let (endpoint, result) = match self.backends.pick() {
                None => (String::new(), Err(Status::unavailable("no matcher replica is known"))),
                Some(backend) => {
                    let mut request = tonic::Request::new(req.clone());
                    request.set_timeout(self.policy.timeout);
                    span.inject(request.metadata_mut());
                    // grpc-timeout tells the server; this bounds the wait here even if the
                    // server or the connection hangs.
                    let result = tokio::time::timeout(
                        self.policy.timeout + Duration::from_millis(250),
                        f(backend.client, request).instrument(attempt_span),
                    )
                    .await
                    .unwrap_or_else(|_| Err(Status::deadline_exceeded("matcher call timed out")));
                    (backend.url, result)
                }
            };
            let elapsed = started.elapsed();
            let code = match &result {
                Ok(_) => Code::Ok,
                Err(s) => s.code(),
            };
            METRICS.matcher_call(method, &format!("{code:?}"), elapsed);
            if let Some(h) = &self.health {
                h.matcher_reached(code != Code::Unavailable);
            }
            tracing::debug!(
                method,
                endpoint,
                attempt,
                span_id = %span.span_id(),
                code = ?code,
                ms = elapsed.as_millis() as u64,
                "matcher call"
            );
            match result {
                Ok(r) => return Ok(r.into_inner()),
                Err(s) if retryable(s.code()) => {
                    let deadline = match waits {
                        Waits::OutageDeadline => self.policy.deadline,
                        Waits::Brief(d) => d,
                    };
                    if waiting.is_none() && waits == Waits::OutageDeadline {
                        waiting = WaitingSlot::take(&self.waiting, self.policy.max_waiting);
                        if waiting.is_none() {
                            METRICS.matcher_shed(method);
                            tracing::warn!(
                                method,
                                code = ?s.code(),
                                max_waiting = self.policy.max_waiting,
                                "matcher unavailable and too many calls already wait for it; giving up at once"
                            );
                            return Err(s.into());
                        }
                    }
                    // The last attempt is made at the deadline rather than given up early.
                    let remaining = deadline.saturating_sub(first.elapsed());
                    let backoff = self.policy.backoff(attempt).min(remaining);
                    if remaining.is_zero() {
                        tracing::warn!(
                            method,
                            code = ?s.code(),
                            attempts = attempt + 1,
                            waited_ms = first.elapsed().as_millis() as u64,
                            "matcher still unavailable at the call's deadline; giving up"
                        );
                        return Err(s.into());
                    }
                    tracing::info!(
                        method,
                        endpoint,
                        code = ?s.code(),
                        message = s.message(),
                        backoff_ms = backoff.as_millis() as u64,
                        "matcher call failed; retrying on the next replica"
                    );
                    attempt += 1;
                    tokio::time::sleep(backoff).await;
                }
                Err(s) => return Err(s.into()),
            }
        }
    }
}

#[cfg(test)]
mod tests;
