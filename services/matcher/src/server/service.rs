//! The `lookalike.v1.Matcher` service: each handler converts its request at the edge
//! (`convert`), runs the use case (`crate::matching`) on a worker of the executor, and
//! converts the outcome back. Spans, metrics and the log line of each call are the
//! `observe` layer's.

use super::convert::{self, analyze_status, exec_status, EmbedQuery};
use super::deadline::deadline_of;
use super::executor::{ExecError, Executor, JobMemory};
use super::metrics::Metrics;
use super::state::GalleryState;
use crate::matching::{self, GallerySummary, MatchQuery, Photo, QueryLimits};
use futures::{Stream, StreamExt};
use lookalike_engine::cost::estimate_photo;
use lookalike_engine::{AnalyzeOptions, DecodeLimits, DetectConfig, Gallery};
use lookalike_proto::v1 as pb;
use lookalike_proto::v1::matcher_server::Matcher;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Instant;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

/// Per-call limits, advertised in GalleryInfo.limits.
#[derive(Debug, Clone, Copy)]
pub struct CallLimits {
    pub decode: DecodeLimits,
    /// The workers' detection settings (for the memory estimate).
    pub detect: DetectConfig,
    pub query: QueryLimits,
    /// Mirror-averaged query embeddings (LOOKALIKE_MIRROR).
    pub mirror: bool,
}

pub struct Inner {
    pub executor: OnceLock<Executor>,
    pub gallery: Arc<GalleryState>,
    pub metrics: Arc<Metrics>,
    pub limits: CallLimits,
}

#[derive(Clone)]
pub struct MatcherService {
    pub inner: Arc<Inner>,
}

impl Inner {
    fn executor(&self) -> Result<&Executor, Status> {
        self.executor.get().ok_or_else(|| Status::unavailable("the models are still loading; retry shortly"))
    }

    fn gallery(&self) -> Result<Arc<Gallery>, Status> {
        self.gallery.get().ok_or_else(|| Status::unavailable("the gallery is still loading; retry shortly"))
    }

    /// A job the executor refused: counted as shed (its one place) and turned into a status.
    fn refused(&self, e: ExecError) -> Status {
        match e {
            ExecError::Overloaded { .. } => self.metrics.shed.with_label_values(&["queue_full"]).inc(),
            ExecError::MemoryFull => self.metrics.shed.with_label_values(&["memory_full"]).inc(),
            ExecError::DeadlineExceeded => self.metrics.shed.with_label_values(&["deadline"]).inc(),
            ExecError::ShuttingDown | ExecError::WorkerFailed | ExecError::TooBig { .. } => {}
        }
        exec_status(e)
    }

    /// The photo's estimated peak memory, from its header, with its own bytes; a photo the
    /// limits refuse is refused here, before it takes a queue place.
    fn memory_of(&self, bytes: &[u8], opts: &AnalyzeOptions) -> Result<JobMemory, Status> {
        let analysis = estimate_photo(bytes, &self.limits.decode, &self.limits.detect, opts)
            .map_err(|e| analyze_status(lookalike_engine::error::AnalyzeError::Image(e)))?;
        Ok(JobMemory { held: bytes.len() as u64, analysis })
    }

    pub async fn do_match(&self, r: pb::MatchRequest, deadline: Option<Instant>) -> Result<pb::MatchResponse, Status> {
        let start = Instant::now();
        let query = self.limits.query.admit(MatchQuery::try_from(r)?)?;
        let executor = self.executor()?;
        let gallery = self.gallery()?;
        let opts = query.analyze_options(self.limits.mirror);
        let memory = match &query.photo {
            Photo::Image(bytes) => self.memory_of(bytes, &opts)?,
            Photo::Embedding(_) => JobMemory::default(),
        };
        let (span, limits) = (tracing::Span::current(), self.limits.decode);
        let (outcome, queued) = executor
            .run(deadline, memory, move |analyzer| {
                span.in_scope(|| {
                    analyzer.limits = limits;
                    matching::match_photo(analyzer, &gallery, &query, &opts)
                })
            })
            .await
            .map_err(|e| self.refused(e))?;
        let outcome = outcome.map_err(analyze_status)?;
        tracing::Span::current().record("faces", outcome.faces.len());
        let mut response = pb::MatchResponse::from(outcome);
        convert::with_server_times(&mut response.timings, queued, start.elapsed());
        Ok(response)
    }

    async fn do_embed(&self, r: pb::EmbedRequest, deadline: Option<Instant>) -> Result<pb::EmbedResponse, Status> {
        let start = Instant::now();
        let q = EmbedQuery::try_from(r)?;
        let max_faces = self.limits.query.faces(q.max_faces)?;
        let executor = self.executor()?;
        let opts = AnalyzeOptions {
            all_faces: q.faces == matching::FaceSelection::All,
            max_faces,
            mirror: self.limits.mirror,
            ..Default::default()
        };
        let memory = self.memory_of(&q.image, &opts)?;
        let (span, limits) = (tracing::Span::current(), self.limits.decode);
        let (outcome, queued) = executor
            .run(deadline, memory, move |analyzer| {
                span.in_scope(|| {
                    analyzer.limits = limits;
                    analyzer.analyze_bytes(&q.image, &opts)
                })
            })
            .await
            .map_err(|e| self.refused(e))?;
        let mut response = convert::embed_response(outcome.map_err(analyze_status)?);
        convert::with_server_times(&mut response.timings, queued, start.elapsed());
        Ok(response)
    }
}

type ResultStream = Pin<Box<dyn Stream<Item = Result<pb::MatchResult, Status>> + Send>>;

#[tonic::async_trait]
impl Matcher for MatcherService {
    async fn r#match(&self, request: Request<pb::MatchRequest>) -> Result<Response<pb::MatchResponse>, Status> {
        let deadline = deadline_of(&request);
        self.inner.do_match(request.into_inner(), deadline).await.map(Response::new)
    }

    type MatchStreamStream = ResultStream;

    async fn match_stream(
        &self,
        request: Request<Streaming<pb::MatchRequest>>,
    ) -> Result<Response<Self::MatchStreamStream>, Status> {
        let deadline = deadline_of(&request);
        let parent = tracing::Span::current();
        let inner = self.inner.clone();
        let workers = inner.executor()?.workers;
        // Items run concurrently (up to the worker count) and come back in order, each with
        // its own outcome. A broken input stream (e.g. an over-size message) ends the output
        // with its status.
        let output = request
            .into_inner()
            .enumerate()
            .map(move |(index, item)| {
                let inner = inner.clone();
                let span = tracing::info_span!(parent: &parent, "MatchStream.item", index);
                async move {
                    let req = item?;
                    let request_id = req.request_id.clone();
                    let outcome = match inner.do_match(req, deadline).instrument(span).await {
                        Ok(r) => pb::match_result::Outcome::Response(r),
                        Err(s) => pb::match_result::Outcome::Error(pb::Error {
                            code: s.code() as i32,
                            message: s.message().to_string(),
                        }),
                    };
                    Ok(pb::MatchResult { request_id, index: index as u32, outcome: Some(outcome) })
                }
            })
            .buffered(workers.max(1))
            .scan(false, |failed, item: Result<pb::MatchResult, Status>| {
                if *failed {
                    return std::future::ready(None);
                }
                *failed = item.is_err();
                std::future::ready(Some(item))
            });
        Ok(Response::new(Box::pin(output)))
    }

    async fn embed(&self, request: Request<pb::EmbedRequest>) -> Result<Response<pb::EmbedResponse>, Status> {
        let deadline = deadline_of(&request);
        self.inner.do_embed(request.into_inner(), deadline).await.map(Response::new)
    }

    async fn get_identity(&self, request: Request<pb::GetIdentityRequest>) -> Result<Response<pb::Identity>, Status> {
        let r = request.into_inner();
        let card = matching::identity_card(&*self.inner.gallery()?, r.identity_id, !r.omit_thumbnail)?;
        Ok(Response::new(card.into()))
    }

    async fn get_gallery_info(
        &self,
        _request: Request<pb::GetGalleryInfoRequest>,
    ) -> Result<Response<pb::GalleryInfo>, Status> {
        let inner = &self.inner;
        let gallery = inner.gallery()?;
        let (workers, queue_capacity) = inner.executor.get().map_or((0, 0), |e| (e.workers, e.queue_capacity));
        let summary = GallerySummary {
            gallery: &gallery,
            limits: inner.limits.query,
            max_image_bytes: inner.limits.decode.max_bytes as u64,
            max_image_pixels: inner.limits.decode.max_pixels,
            workers,
            queue_capacity,
        };
        Ok(Response::new(summary.into()))
    }
}
