//! The engine's error type: every failure a person can cause has its own variant and a
//! message that says what was wrong with *their* input.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("the image is empty (0 bytes)")]
    Empty,
    #[error("the image is {size} bytes, over the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("not a supported image (expected JPEG, PNG, WebP, GIF or BMP)")]
    UnknownFormat,
    #[error("the image is {width}x{height} pixels ({megapixels:.1} MP), over the limit of {limit_mp:.1} MP")]
    TooManyPixels { width: u32, height: u32, megapixels: f64, limit_mp: f64 },
    #[error("the image is {width}x{height} pixels, too small to contain a face")]
    TooSmall { width: u32, height: u32 },
    #[error("the {format} image is broken or truncated: {detail}")]
    Corrupt { format: &'static str, detail: String },
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("model file {path} is missing; run scripts/fetch-models.sh (or set LOOKALIKE_MODELS)")]
    Missing { path: PathBuf },
    #[error("model file {path} could not be loaded: {detail}")]
    Load { path: PathBuf, detail: String },
}

/// A failure inside dlib on input that passed validation (should not happen; reported, not fatal).
#[derive(Debug, thiserror::Error)]
#[error("face engine failure: {0}")]
pub struct NativeError(pub String);

#[derive(Debug, thiserror::Error)]
pub enum AnalyzeError {
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Native(#[from] NativeError),
}
