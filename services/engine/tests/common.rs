//! Shared helpers for the engine's tests: real models, real photos from ../shared/faces.
#![allow(dead_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed expectation is the report

use lookalike_engine::{DecodeLimits, DetectConfig, FaceAnalyzer, Models};
use std::path::PathBuf;
use std::sync::OnceLock;

pub use lookalike_e2e::fixtures::{faces_dir, models_dir};

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
