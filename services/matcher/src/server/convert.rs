//! The gRPC edge: protobuf requests to the use cases' queries (validation of their shape),
//! their outcomes back to protobuf, and errors to gRPC statuses. The only module of the
//! server that builds protobuf messages.

use super::executor::ExecError;
use crate::matching::{
    embedding_from, FaceMatch, FaceSelection, GallerySummary, IdentityCard, IdentityMatch, MatchOutcome, MatchQuery,
    Photo, QueryError, UnknownIdentity,
};
use bytes::Bytes;
use lookalike_engine::detect::DetectReport;
use lookalike_engine::error::AnalyzeError;
use lookalike_engine::{Analysis, Face, PhotoCredit, StageTimings};
use lookalike_proto::v1 as pb;
use std::time::Duration;
use tonic::{Code, Status};

fn selection(faces: i32) -> Result<FaceSelection, QueryError> {
    match pb::FaceSelection::try_from(faces) {
        Ok(pb::FaceSelection::All) => Ok(FaceSelection::All),
        Ok(pb::FaceSelection::Main | pb::FaceSelection::Unspecified) => Ok(FaceSelection::Largest),
        Err(_) => Err(QueryError(format!("faces: unknown selection {faces}"))),
    }
}

/// 0 is proto3's "not set": the server's default.
fn max_faces(n: u32) -> Option<usize> {
    (n > 0).then_some(n as usize)
}

impl TryFrom<pb::MatchRequest> for MatchQuery {
    type Error = QueryError;

    fn try_from(r: pb::MatchRequest) -> Result<Self, QueryError> {
        if !r.max_distance.is_finite() || r.max_distance < 0.0 {
            return Err(QueryError("max_distance must be a finite number >= 0 (0 = no limit)".into()));
        }
        let faces = selection(r.faces)?;
        let photo = match r.query {
            Some(pb::match_request::Query::Image(bytes)) => Photo::Image(bytes),
            Some(pb::match_request::Query::Embedding(e)) => Photo::Embedding(Box::new(embedding_from(&e.values)?)),
            None => return Err(QueryError("the request has neither an image nor an embedding".into())),
        };
        Ok(MatchQuery {
            photo,
            top_k: if r.top_k == 0 { 1 } else { r.top_k as usize },
            faces,
            max_faces: max_faces(r.max_faces),
            max_distance: (r.max_distance > 0.0).then_some(r.max_distance),
            chips: r.return_chips,
        })
    }
}

/// An `Embed` request: the photo and which faces.
#[derive(Debug, Clone)]
pub struct EmbedQuery {
    pub image: Bytes,
    pub faces: FaceSelection,
    pub max_faces: Option<usize>,
}

impl TryFrom<pb::EmbedRequest> for EmbedQuery {
    type Error = QueryError;

    fn try_from(r: pb::EmbedRequest) -> Result<Self, QueryError> {
        Ok(EmbedQuery { image: r.image, faces: selection(r.faces)?, max_faces: max_faces(r.max_faces) })
    }
}

pub fn ms(d: Duration) -> f32 {
    d.as_secs_f32() * 1000.0
}

fn detected_face(f: &Face) -> pb::DetectedFace {
    pb::DetectedFace {
        r#box: Some(pb::Box { left: f.bbox.left, top: f.bbox.top, right: f.bbox.right, bottom: f.bbox.bottom }),
        landmarks: f.landmarks.iter().map(|p| pb::Point { x: p[0], y: p[1] }).collect(),
        quality: Some(pb::FaceQuality {
            detection_score: f.score,
            eye_distance_px: f.eye_distance,
            roll_degrees: f.roll_degrees,
        }),
    }
}

/// Stage timings; `queue` and `total` are the server's, the rest the use case's.
pub fn timings(t: &StageTimings, search: Duration, queue: Duration, total: Duration) -> pb::StageTimings {
    pb::StageTimings {
        queue_ms: ms(queue),
        decode_ms: ms(t.decode),
        detect_ms: ms(t.detect),
        landmarks_ms: ms(t.landmarks),
        encode_ms: ms(t.encode),
        search_ms: ms(search),
        total_ms: ms(total),
    }
}

impl From<IdentityMatch> for pb::Candidate {
    fn from(c: IdentityMatch) -> Self {
        pb::Candidate {
            identity_id: c.identity_id,
            name: c.name,
            alias: c.alias,
            distance: c.distance,
            similarity_percent: c.similarity,
            score: c.score,
        }
    }
}

impl From<FaceMatch> for pb::FaceMatch {
    fn from(f: FaceMatch) -> Self {
        pb::FaceMatch {
            face: f.face.as_ref().map(detected_face),
            candidates: f.candidates.into_iter().map(Into::into).collect(),
            chip_jpeg: f.chip_jpeg.unwrap_or_default(),
        }
    }
}

/// The response, its timings without the server's share (see [`with_server_times`]).
impl From<MatchOutcome> for pb::MatchResponse {
    fn from(o: MatchOutcome) -> Self {
        let (image_width, image_height) = o.image_size.unwrap_or((0, 0));
        pb::MatchResponse {
            timings: Some(timings(&o.timings, o.search_time, Duration::ZERO, Duration::ZERO)),
            faces: o.faces.into_iter().map(Into::into).collect(),
            image_width,
            image_height,
            gallery_version: o.gallery_version,
            detection: o.detection.map(detection),
        }
    }
}

fn detection(d: DetectReport) -> pb::Detection {
    let name = |p: Option<lookalike_engine::DetectPass>| p.map(|p| p.as_str().to_owned()).unwrap_or_default();
    pb::Detection { found_by: name(d.found_by), skipped: name(d.skipped) }
}

/// Adds the time spent waiting for a worker and the whole call's to a response's timings.
pub fn with_server_times(timings: &mut Option<pb::StageTimings>, queue: Duration, total: Duration) {
    let t = timings.get_or_insert_with(Default::default);
    t.queue_ms = ms(queue);
    t.total_ms = ms(total);
}

/// An `Embed` answer (engine and protobuf types are both foreign here: a function, not `From`).
pub fn embed_response(a: Analysis) -> pb::EmbedResponse {
    {
        pb::EmbedResponse {
            faces: a
                .faces
                .iter()
                .map(|f| pb::EmbeddedFace {
                    face: Some(detected_face(f)),
                    embedding: Some(pb::Embedding { values: f.embedding.to_vec() }),
                })
                .collect(),
            image_width: a.width,
            image_height: a.height,
            timings: Some(timings(&a.timings, Duration::ZERO, Duration::ZERO, Duration::ZERO)),
            detection: Some(detection(a.detection)),
        }
    }
}

fn photo_credit(c: PhotoCredit) -> pb::PhotoCredit {
    pb::PhotoCredit { author: c.author, license: c.license, license_url: c.license_url, source_url: c.source_url }
}

impl From<IdentityCard> for pb::Identity {
    fn from(c: IdentityCard) -> Self {
        pb::Identity {
            identity_id: c.identity_id,
            name: c.name,
            alias: c.alias,
            role: c.role,
            n_movies: c.n_movies,
            photo_count: c.photo_count,
            thumbnail_jpeg: c.thumbnail_jpeg.unwrap_or_default(),
            gallery_version: c.gallery_version,
            photo_credit: c.credit.map(photo_credit),
        }
    }
}

impl From<GallerySummary<'_>> for pb::GalleryInfo {
    fn from(s: GallerySummary<'_>) -> Self {
        let g = s.gallery;
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
                max_image_bytes: s.max_image_bytes,
                max_image_pixels: s.max_image_pixels,
                max_top_k: s.limits.max_top_k,
                max_faces: s.limits.max_faces,
            }),
            workers: s.workers as u32,
            queue_capacity: s.queue_capacity as u32,
        }
    }
}

impl From<QueryError> for Status {
    fn from(e: QueryError) -> Self {
        Status::invalid_argument(e.0)
    }
}

impl From<UnknownIdentity> for Status {
    fn from(e: UnknownIdentity) -> Self {
        Status::not_found(e.to_string())
    }
}

pub fn analyze_status(e: AnalyzeError) -> Status {
    match e {
        AnalyzeError::Image(e) => Status::invalid_argument(e.to_string()),
        AnalyzeError::Native(e) => Status::internal(e.to_string()),
    }
}

pub fn exec_status(e: ExecError) -> Status {
    let code = match e {
        ExecError::Overloaded { .. } | ExecError::MemoryFull => Code::ResourceExhausted,
        ExecError::DeadlineExceeded => Code::DeadlineExceeded,
        ExecError::ShuttingDown => Code::Unavailable,
        ExecError::WorkerFailed => Code::Internal,
        ExecError::TooBig { .. } => Code::InvalidArgument,
    };
    Status::new(code, e.to_string())
}

/// A gRPC status code's name, as the gRPC docs spell it (metric and log label).
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn image(bytes: &'static [u8]) -> Option<pb::match_request::Query> {
        Some(pb::match_request::Query::Image(Bytes::from_static(bytes)))
    }

    #[test]
    fn a_request_becomes_a_query_with_proto_defaults_resolved() {
        let q = MatchQuery::try_from(pb::MatchRequest { query: image(b"jpeg"), ..Default::default() }).unwrap();
        assert!(matches!(&q.photo, Photo::Image(b) if b.as_ref() == b"jpeg"));
        assert_eq!(
            (q.top_k, q.faces, q.max_faces, q.max_distance, q.chips),
            (1, FaceSelection::Largest, None, None, false)
        );
        let q = MatchQuery::try_from(pb::MatchRequest {
            query: image(b"jpeg"),
            top_k: 5,
            faces: pb::FaceSelection::All as i32,
            max_faces: 3,
            max_distance: 0.5,
            return_chips: true,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            (q.top_k, q.faces, q.max_faces, q.max_distance, q.chips),
            (5, FaceSelection::All, Some(3), Some(0.5), true)
        );
    }

    #[test]
    fn malformed_requests_are_refused_with_a_message_for_humans() {
        let bad = |r: pb::MatchRequest| MatchQuery::try_from(r).unwrap_err().0;
        assert_eq!(bad(pb::MatchRequest::default()), "the request has neither an image nor an embedding");
        assert!(bad(pb::MatchRequest { query: image(b"x"), max_distance: -1.0, ..Default::default() })
            .contains("max_distance"));
        assert!(bad(pb::MatchRequest { query: image(b"x"), max_distance: f32::NAN, ..Default::default() })
            .contains("max_distance"));
        assert_eq!(
            bad(pb::MatchRequest { query: image(b"x"), faces: 9, ..Default::default() }),
            "faces: unknown selection 9"
        );
        let short = pb::match_request::Query::Embedding(pb::Embedding { values: vec![0.0; 5] });
        assert!(bad(pb::MatchRequest { query: Some(short), ..Default::default() }).contains("exactly 128"));
        let status = Status::from(QueryError("why".into()));
        assert_eq!((status.code(), status.message()), (Code::InvalidArgument, "why"));
    }

    #[test]
    fn an_outcome_keeps_its_order_and_fields() {
        let m = |id: u32, d: f32| IdentityMatch {
            identity_id: id,
            name: format!("n{id}"),
            alias: format!("a{id}"),
            distance: d,
            similarity: 100.0 - d,
            score: d / 2.0,
        };
        let o = MatchOutcome {
            faces: vec![
                FaceMatch {
                    face: None,
                    candidates: vec![m(2, 0.3), m(1, 0.4)],
                    chip_jpeg: Some(Bytes::from_static(b"c")),
                },
                FaceMatch { face: None, candidates: vec![], chip_jpeg: None },
            ],
            image_size: Some((640, 480)),
            timings: StageTimings { decode: Duration::from_millis(2), ..Default::default() },
            search_time: Duration::from_millis(1),
            gallery_version: "v9".into(),
            detection: Some(DetectReport { found_by: None, skipped: Some(lookalike_engine::DetectPass::Cnn) }),
        };
        let mut r = pb::MatchResponse::from(o);
        with_server_times(&mut r.timings, Duration::from_millis(3), Duration::from_millis(10));
        assert_eq!((r.image_width, r.image_height, r.gallery_version.as_str()), (640, 480, "v9"));
        assert_eq!(r.faces.len(), 2);
        let ids: Vec<u32> = r.faces[0].candidates.iter().map(|c| c.identity_id).collect();
        assert_eq!(ids, [2, 1]);
        let c = &r.faces[0].candidates[0];
        assert_eq!(
            (c.name.as_str(), c.alias.as_str(), c.distance, c.similarity_percent, c.score),
            ("n2", "a2", 0.3, 99.7, 0.15)
        );
        assert_eq!(r.faces[0].chip_jpeg.as_ref(), b"c");
        assert_eq!(r.detection, Some(pb::Detection { found_by: String::new(), skipped: "cnn".into() }));
        assert!(r.faces[1].chip_jpeg.is_empty() && r.faces[1].candidates.is_empty());
        let t = r.timings.unwrap();
        assert_eq!((t.decode_ms, t.search_ms, t.queue_ms, t.total_ms), (2.0, 1.0, 3.0, 10.0));
    }
}
