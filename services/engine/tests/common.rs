//! Shared helpers for the engine's tests: real models, real photos from ../shared/faces.
#![allow(dead_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed expectation is the report

use lookalike_engine::{DecodeLimits, DetectConfig, FaceAnalyzer, Models};
use std::path::PathBuf;
use std::sync::OnceLock;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn faces_dir() -> PathBuf {
    std::env::var_os("LOOKALIKE_FACES").map(PathBuf::from).unwrap_or_else(|| repo_root().join("../shared/faces"))
}

pub fn models_dir() -> PathBuf {
    std::env::var_os("LOOKALIKE_MODELS").map(PathBuf::from).unwrap_or_else(|| repo_root().join("assets/models"))
}

pub fn models() -> &'static Models {
    static M: OnceLock<Models> = OnceLock::new();
    M.get_or_init(|| Models::load(&models_dir()).expect("models (run scripts/fetch-models.sh)"))
}

pub fn analyzer() -> FaceAnalyzer {
    FaceAnalyzer::new(models().worker_set(), DecodeLimits::default(), DetectConfig::default())
}

pub fn read(rel: &str) -> Vec<u8> {
    let p = faces_dir().join(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

pub fn photos_of(rel_dir: &str) -> Vec<PathBuf> {
    let mut v: Vec<_> =
        std::fs::read_dir(faces_dir().join(rel_dir)).expect("photo dir").map(|e| e.expect("entry").path()).collect();
    v.sort();
    v
}
