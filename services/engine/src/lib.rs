#![recursion_limit = "1024"]
//! lookalike's face engine: decode a photo, find faces, embed them, search a celebrity
//! gallery and turn a distance into a calibrated similarity. No gRPC, no Telegram.

pub mod decode;
pub mod dlib;
pub mod error;
pub mod analyze;
pub mod calibration;
pub mod gallery;
pub mod parallel;
pub mod search;
pub mod detect;
pub mod face;
pub mod models;

pub use analyze::{AnalyzeOptions, Analysis, FaceAnalyzer, StageTimings};
pub use decode::DecodeLimits;
pub use detect::DetectConfig;
pub use face::{Embedding, Face, FaceBox, EMBEDDING_DIM};
pub use models::{Models, WorkerModels};
pub use calibration::Calibration;
pub use gallery::{Candidate, Gallery, GalleryError, Identity, SearchMode};
pub use search::hnsw::HnswParams;
