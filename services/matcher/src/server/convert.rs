//! Engine values to protobuf messages, and errors to gRPC statuses.

use super::executor::ExecError;
use lookalike_engine::error::AnalyzeError;
use lookalike_engine::{Candidate, Face, Gallery, PhotoCredit, StageTimings};
use lookalike_proto::v1 as pb;
use std::time::Duration;
use tonic::{Code, Status};

pub fn ms(d: Duration) -> f32 {
    d.as_secs_f32() * 1000.0
}

pub fn detected_face(f: &Face) -> pb::DetectedFace {
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

pub fn candidates(g: &Gallery, found: &[Candidate]) -> Vec<pb::Candidate> {
    found
        .iter()
        .filter_map(|c| {
            let id = g.identity(c.identity)?;
            Some(pb::Candidate {
                identity_id: c.identity,
                name: id.name.clone(),
                alias: id.alias.clone(),
                distance: c.distance,
                similarity_percent: c.similarity,
                score: c.score,
            })
        })
        .collect()
}

pub fn photo_credit(c: &PhotoCredit) -> pb::PhotoCredit {
    pb::PhotoCredit {
        author: c.author.clone(),
        license: c.license.clone(),
        license_url: c.license_url.clone(),
        source_url: c.source_url.clone(),
    }
}

pub fn timings(t: &StageTimings, queue: Duration, search: Duration, total: Duration) -> pb::StageTimings {
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

/// The deadline a client set with the `grpc-timeout` header (e.g. "250m", "5S").
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
