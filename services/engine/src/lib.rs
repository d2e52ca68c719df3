#![recursion_limit = "1024"]
//! lookalike's face engine: decode a photo, find faces, embed them, search a celebrity
//! gallery and turn a distance into a calibrated similarity. No gRPC, no Telegram.

pub mod analyze;
pub mod blas;
pub mod calibration;
pub mod cost;
pub mod decode;
pub mod detect;
pub mod dlib;
pub mod error;
pub mod face;
pub mod fallback;
pub mod gallery;
pub mod models;
pub mod parallel;
pub mod search;

pub use analyze::{Analysis, AnalyzeOptions, FaceAnalyzer, StageTimings};
pub use calibration::Calibration;
pub use decode::{DecodeLimits, Decoded, Header};
pub use detect::{DetectConfig, DetectPass};
pub use face::{chip_jpeg, Embedding, Face, FaceBox, CHIP_SIZE, EMBEDDING_DIM};
pub use fallback::FallbackBudget;
pub use gallery::{Candidate, Gallery, GalleryError, Identity, PhotoCredit, SearchMode};
pub use models::{Models, WorkerModels};
pub use search::hnsw::HnswParams;
