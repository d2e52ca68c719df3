//! The `lookalike.v1.Matcher` service.

use super::convert::{self, analyze_status, exec_status};
use super::deadline::{deadline_of, CallGuard};
use super::executor::{Executor, JobMemory};
use super::metrics::Metrics;
use super::state::GalleryState;
use super::telemetry;
use futures::{Stream, StreamExt};
use lookalike_engine::cost::estimate_photo;
use lookalike_engine::{chip_jpeg, AnalyzeOptions, DecodeLimits, DetectConfig, Embedding, CHIP_SIZE, EMBEDDING_DIM};
use lookalike_proto::v1 as pb;
use lookalike_proto::v1::matcher_server::Matcher;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

/// Per-call limits, advertised in GalleryInfo.limits.
#[derive(Debug, Clone, Copy)]
pub struct CallLimits {
    pub decode: DecodeLimits,
    /// The workers' detection settings (for the memory estimate).
    pub detect: DetectConfig,
    pub max_top_k: u32,
    pub max_faces: u32,
    pub default_max_faces: u32,
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

struct MatchParams {
    top_k: usize,
    all_faces: bool,
    max_faces: usize,
    max_distance: Option<f32>,
    /// Return each face's aligned chip as JPEG.
    chips: bool,
}

enum Query {
    Image(bytes::Bytes),
    Embedding(Box<Embedding>),
}

impl Inner {
    fn executor(&self) -> Result<&Executor, Status> {
        self.executor.get().ok_or_else(|| Status::unavailable("the models are still loading; retry shortly"))
    }

    fn gallery(&self) -> Result<Arc<lookalike_engine::Gallery>, Status> {
        self.gallery.get().ok_or_else(|| Status::unavailable("the gallery is still loading; retry shortly"))
    }

    fn selection(&self, faces: i32, max_faces: u32) -> Result<(bool, usize), Status> {
        let all = match pb::FaceSelection::try_from(faces) {
            Ok(pb::FaceSelection::All) => true,
            Ok(_) => false,
            Err(_) => return Err(Status::invalid_argument(format!("faces: unknown selection {faces}"))),
        };
        let max = if max_faces == 0 { self.limits.default_max_faces } else { max_faces };
        if max > self.limits.max_faces {
            return Err(Status::invalid_argument(format!(
                "max_faces is {max_faces}; it must be at most {}",
                self.limits.max_faces
            )));
        }
        Ok((all, max as usize))
    }

    fn match_params(&self, r: &pb::MatchRequest) -> Result<(Query, MatchParams), Status> {
        let top_k = if r.top_k == 0 { 1 } else { r.top_k };
        if top_k > self.limits.max_top_k {
            return Err(Status::invalid_argument(format!(
                "top_k is {}; it must be between 1 and {}",
                r.top_k, self.limits.max_top_k
            )));
        }
        if !r.max_distance.is_finite() || r.max_distance < 0.0 {
            return Err(Status::invalid_argument("max_distance must be a finite number >= 0 (0 = no limit)"));
        }
        let (all_faces, max_faces) = self.selection(r.faces, r.max_faces)?;
        let query = match &r.query {
            Some(pb::match_request::Query::Image(bytes)) => Query::Image(bytes.clone()),
            Some(pb::match_request::Query::Embedding(e)) => Query::Embedding(Box::new(embedding_from(&e.values)?)),
            None => return Err(Status::invalid_argument("the request has neither an image nor an embedding")),
        };
        let max_distance = (r.max_distance > 0.0).then_some(r.max_distance);
        Ok((query, MatchParams { top_k: top_k as usize, all_faces, max_faces, max_distance, chips: r.return_chips }))
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
        let (query, p) = self.match_params(&r)?;
        let executor = self.executor()?;
        let gallery = self.gallery()?;
        let span = tracing::Span::current();
        let limits = self.limits.decode;
        let opts = AnalyzeOptions {
            all_faces: p.all_faces,
            max_faces: p.max_faces,
            mirror: self.limits.mirror,
            chip_size: p.chips.then_some(CHIP_SIZE),
            ..Default::default()
        };
        let memory = match &query {
            Query::Image(bytes) => self.memory_of(bytes, &opts)?,
            Query::Embedding(_) => JobMemory::default(),
        };
        let g = gallery.clone();
        let ((outcome, search_time), queued) = executor
            .run(deadline, memory, move |analyzer| {
                span.in_scope(|| {
                    analyzer.limits = limits;
                    match query {
                        Query::Embedding(e) => {
                            let t = Instant::now();
                            let found =
                                tracing::info_span!("search").in_scope(|| g.search(&e, p.top_k, p.max_distance));
                            (Ok((None, vec![found], Vec::new())), t.elapsed())
                        }
                        Query::Image(bytes) => {
                            match analyzer.analyze_bytes(&bytes, &opts) {
                                Ok(mut a) => {
                                    let t = Instant::now();
                                    let found = tracing::info_span!("search", faces = a.faces.len()).in_scope(|| {
                                        a.faces
                                            .iter()
                                            .map(|f| g.search(&f.embedding, p.top_k, p.max_distance))
                                            .collect()
                                    });
                                    let search_time = t.elapsed();
                                    // Encoded here, on the worker, like the rest of the
                                    // per-photo CPU work; the raw chips are dropped.
                                    let chips = a.faces.iter_mut().map(|f| encode_chip(f.chip.take())).collect();
                                    (Ok((Some(a), found, chips)), search_time)
                                }
                                Err(e) => (Err(e), Duration::ZERO),
                            }
                        }
                    }
                })
            })
            .await
            .map_err(exec_status)?;
        let (analysis, found, mut chips) = outcome.map_err(analyze_status)?;
        let total = start.elapsed();
        let response = match analysis {
            Some(a) => pb::MatchResponse {
                faces: a
                    .faces
                    .iter()
                    .zip(&found)
                    .enumerate()
                    .map(|(i, (f, c))| pb::FaceMatch {
                        face: Some(convert::detected_face(f)),
                        candidates: convert::candidates(&gallery, c),
                        chip_jpeg: chips.get_mut(i).map(std::mem::take).unwrap_or_default().into(),
                    })
                    .collect(),
                image_width: a.width,
                image_height: a.height,
                gallery_version: gallery.version.clone(),
                timings: Some(convert::timings(&a.timings, queued, search_time, total)),
            },
            None => pb::MatchResponse {
                faces: found
                    .iter()
                    .map(|c| pb::FaceMatch {
                        face: None,
                        candidates: convert::candidates(&gallery, c),
                        chip_jpeg: Default::default(),
                    })
                    .collect(),
                image_width: 0,
                image_height: 0,
                gallery_version: gallery.version.clone(),
                timings: Some(convert::timings(&Default::default(), queued, search_time, total)),
            },
        };
        tracing::Span::current().record("faces", response.faces.len());
        Ok(response)
    }

    async fn do_embed(&self, r: pb::EmbedRequest, deadline: Option<Instant>) -> Result<pb::EmbedResponse, Status> {
        let start = Instant::now();
        let (all_faces, max_faces) = self.selection(r.faces, r.max_faces)?;
        let executor = self.executor()?;
        let span = tracing::Span::current();
        let limits = self.limits.decode;
        let opts = AnalyzeOptions { all_faces, max_faces, mirror: self.limits.mirror, ..Default::default() };
        let memory = self.memory_of(&r.image, &opts)?;
        let (outcome, queued) = executor
            .run(deadline, memory, move |analyzer| {
                span.in_scope(|| {
                    analyzer.limits = limits;
                    analyzer.analyze_bytes(&r.image, &opts)
                })
            })
            .await
            .map_err(exec_status)?;
        let a = outcome.map_err(analyze_status)?;
        Ok(pb::EmbedResponse {
            faces: a
                .faces
                .iter()
                .map(|f| pb::EmbeddedFace {
                    face: Some(convert::detected_face(f)),
                    embedding: Some(pb::Embedding { values: f.embedding.to_vec() }),
                })
                .collect(),
            image_width: a.width,
            image_height: a.height,
            timings: Some(convert::timings(&a.timings, queued, Duration::ZERO, start.elapsed())),
        })
    }

    /// Metrics and the one log line per request.
    fn observe<T>(&self, method: &'static str, start: Instant, result: &Result<T, Status>) {
        match result {
            Ok(_) => self.observe_code(method, start, tonic::Code::Ok, None),
            Err(s) => self.observe_code(method, start, s.code(), Some(s.message())),
        }
    }

    fn observe_code(&self, method: &'static str, start: Instant, code: tonic::Code, message: Option<&str>) {
        let name = convert::code_name(code);
        let elapsed = start.elapsed();
        self.metrics.record_request(method, name, elapsed.as_secs_f64());
        match code {
            tonic::Code::ResourceExhausted => self.metrics.shed.with_label_values(&["queue_full"]).inc(),
            tonic::Code::DeadlineExceeded => self.metrics.shed.with_label_values(&["deadline"]).inc(),
            _ => {}
        }
        let ms = (elapsed.as_secs_f64() * 1000.0 * 10.0).round() / 10.0;
        match message {
            None => tracing::info!(method, code = name, ms, "rpc"),
            Some(message) => tracing::info!(method, code = name, ms, message, "rpc"),
        }
    }

    /// Counts the call if its handler is dropped before it answers (see `deadline`).
    fn guard(
        self: &Arc<Self>,
        method: &'static str,
        start: Instant,
        deadline: Option<Instant>,
    ) -> CallGuard<impl FnOnce(tonic::Code)> {
        let inner = self.clone();
        CallGuard::new(deadline, move |code| inner.observe_code(method, start, code, Some("the handler was dropped")))
    }
}

/// A face's chip as JPEG; empty when none was cut (or, never in practice, the encoder
/// failed: a missing chip costs the caller a picture, not the match).
fn encode_chip(chip: Option<Vec<u8>>) -> Vec<u8> {
    let Some(raw) = chip else { return Vec::new() };
    match chip_jpeg(&raw, CHIP_SIZE) {
        Ok(jpeg) => jpeg,
        Err(e) => {
            tracing::warn!(error = %e, "could not encode a face chip");
            Vec::new()
        }
    }
}

fn embedding_from(values: &[f32]) -> Result<Embedding, Status> {
    if values.len() != EMBEDDING_DIM {
        return Err(Status::invalid_argument(format!(
            "the embedding has {} values; it must have exactly {EMBEDDING_DIM}",
            values.len()
        )));
    }
    if values.iter().any(|v| !v.is_finite()) {
        return Err(Status::invalid_argument("the embedding holds a NaN or infinite value"));
    }
    let mut e = [0f32; EMBEDDING_DIM];
    e.copy_from_slice(values);
    Ok(e)
}

type ResultStream = Pin<Box<dyn Stream<Item = Result<pb::MatchResult, Status>> + Send>>;

#[tonic::async_trait]
impl Matcher for MatcherService {
    async fn r#match(&self, request: Request<pb::MatchRequest>) -> Result<Response<pb::MatchResponse>, Status> {
        let start = Instant::now();
        let deadline = deadline_of(&request);
        let guard = self.inner.guard("Match", start, deadline);
        let span = telemetry::request_span("Match", request.metadata());
        let result = self.inner.do_match(request.into_inner(), deadline).instrument(span.clone()).await;
        guard.finish();
        span.in_scope(|| self.inner.observe("Match", start, &result));
        result.map(Response::new)
    }

    type MatchStreamStream = ResultStream;

    async fn match_stream(
        &self,
        request: Request<Streaming<pb::MatchRequest>>,
    ) -> Result<Response<Self::MatchStreamStream>, Status> {
        let deadline = deadline_of(&request);
        let parent = telemetry::request_span("MatchStream", request.metadata());
        let inner = self.inner.clone();
        let workers = inner.executor()?.workers;
        let input = request.into_inner();
        // Items run concurrently (up to the worker count) and come back in order.
        // A broken input stream (e.g. an over-size message) ends the output with its status.
        let output = input
            .enumerate()
            .map(move |(index, item)| {
                let inner = inner.clone();
                let span = tracing::info_span!(parent: &parent, "MatchStream.item", index);
                async move {
                    let req = item?;
                    let start = Instant::now();
                    let request_id = req.request_id.clone();
                    let result = inner.do_match(req, deadline).instrument(span.clone()).await;
                    span.in_scope(|| inner.observe("MatchStream", start, &result));
                    let outcome = match result {
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
        let start = Instant::now();
        let deadline = deadline_of(&request);
        let guard = self.inner.guard("Embed", start, deadline);
        let span = telemetry::request_span("Embed", request.metadata());
        let result = self.inner.do_embed(request.into_inner(), deadline).instrument(span.clone()).await;
        guard.finish();
        span.in_scope(|| self.inner.observe("Embed", start, &result));
        result.map(Response::new)
    }

    async fn get_identity(&self, request: Request<pb::GetIdentityRequest>) -> Result<Response<pb::Identity>, Status> {
        let start = Instant::now();
        let r = request.into_inner();
        let result = self.inner.gallery().and_then(|g| {
            let id = g
                .identity(r.identity_id)
                .ok_or_else(|| Status::not_found(format!("no identity {} in gallery {}", r.identity_id, g.version)))?;
            Ok(pb::Identity {
                identity_id: r.identity_id,
                name: id.name.clone(),
                alias: id.alias.clone(),
                role: id.role.clone(),
                n_movies: id.n_movies,
                photo_count: id.photo_count,
                thumbnail_jpeg: if r.omit_thumbnail { Default::default() } else { id.thumbnail_jpeg.clone().into() },
                gallery_version: g.version.clone(),
                photo_credit: id.thumbnail_credit().map(convert::photo_credit),
            })
        });
        self.inner.observe("GetIdentity", start, &result);
        result.map(Response::new)
    }

    async fn get_gallery_info(
        &self,
        _request: Request<pb::GetGalleryInfoRequest>,
    ) -> Result<Response<pb::GalleryInfo>, Status> {
        let start = Instant::now();
        let inner = &self.inner;
        let result = inner.gallery().map(|g| {
            let (workers, queue) = inner.executor.get().map(|e| (e.workers, e.queue_capacity)).unwrap_or((0, 0));
            pb::GalleryInfo {
                identities: g.identities.len() as u32,
                embeddings: g.len() as u32,
                version: g.version.clone(),
                built_at: g.build.built_at.clone(),
                calibration: Some(pb::Calibration {
                    mean: g.calibration.mean,
                    std: g.calibration.std,
                    floor_percent: g.calibration.floor_percent,
                    population: g.calibration.population.clone(),
                    samples: g.calibration.samples,
                }),
                index_kind: g.index_kind().to_string(),
                crowding_weight: g.crowding_weight(),
                limits: Some(pb::Limits {
                    max_image_bytes: inner.limits.decode.max_bytes as u64,
                    max_image_pixels: inner.limits.decode.max_pixels,
                    max_top_k: inner.limits.max_top_k,
                    max_faces: inner.limits.max_faces,
                }),
                workers: workers as u32,
                queue_capacity: queue as u32,
            }
        });
        inner.observe("GetGalleryInfo", start, &result);
        result.map(Response::new)
    }
}
