//! Settings shared by the subcommands: where the models are, decoding limits, search mode.

use clap::{Args, ValueEnum};
use lookalike_engine::{DecodeLimits, DetectConfig, Gallery, GalleryError, HnswParams, SearchMode};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How the gallery is searched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SearchKind {
    /// Exact below `--hnsw-threshold` embeddings, HNSW from there on.
    Auto,
    Exact,
    Hnsw,
}

/// A listen address that may be turned off: empty or `off` is none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionalAddr(pub Option<SocketAddr>);

impl std::str::FromStr for OptionalAddr {
    type Err = std::net::AddrParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "" | "off" => Ok(Self(None)),
            addr => addr.parse().map(|a| Self(Some(a))),
        }
    }
}

/// A fraction from 0 to 1 (flags such as `--fallback-share`).
pub fn fraction(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("{s:?} is not a number from 0 to 1")),
    }
}

/// A number of seconds, 0 or more (fractions allowed), as a duration.
pub fn seconds(s: &str) -> Result<Duration, String> {
    s.trim()
        .parse::<f64>()
        .ok()
        .and_then(|v| Duration::try_from_secs_f64(v).ok())
        .ok_or_else(|| format!("{s:?} is not a number of seconds (0 or more)"))
}

#[derive(Debug, Clone, Args)]
pub struct EngineArgs {
    /// Directory with dlib's model files (scripts/fetch-models.sh puts them in assets/models).
    #[arg(long, env = "LOOKALIKE_MODELS", default_value = "assets/models", global = true)]
    pub models: PathBuf,
    /// Largest accepted encoded image, in bytes.
    #[arg(long, env = "LOOKALIKE_MAX_IMAGE_BYTES", default_value_t = 20 * 1024 * 1024, global = true)]
    pub max_image_bytes: usize,
    /// Largest accepted image, in pixels (width x height, read from the header before decoding).
    #[arg(long, env = "LOOKALIKE_MAX_IMAGE_PIXELS", default_value_t = 40_000_000, global = true)]
    pub max_image_pixels: u64,
    /// Search: auto (exact below --hnsw-threshold embeddings, HNSW above), exact or hnsw.
    #[arg(long, env = "LOOKALIKE_SEARCH", value_enum, default_value_t = SearchKind::Auto, global = true)]
    pub search: SearchKind,
    /// Gallery size (embeddings) from which `--search auto` uses HNSW.
    #[arg(long, env = "LOOKALIKE_HNSW_THRESHOLD", default_value_t = 50_000, global = true)]
    pub hnsw_threshold: usize,
    /// HNSW candidate list size at query time (recall vs speed; 200 reaches recall@1 0.99 at
    /// 1M faces in ~0.6 ms, docs/BENCHMARKS.md).
    #[arg(long, env = "LOOKALIKE_HNSW_EF", default_value_t = 200, global = true)]
    pub hnsw_ef: usize,
    /// Longest side of the quick face-detection pass that runs first on larger photos in
    /// main-face mode: it finds faces of at least a quarter of the photo's side (selfies) at a
    /// quarter of the next pass's cost; 0 = none (docs/BENCHMARKS.md 8c).
    #[arg(long, env = "LOOKALIKE_DETECT_QUICK_SIDE", default_value_t = DetectConfig::default().quick_side, global = true)]
    pub detect_quick_side: u32,
    /// Longest side of the first face-detection pass (smaller is faster, misses small faces).
    #[arg(long, env = "LOOKALIKE_DETECT_MAX_SIDE", default_value_t = 640, global = true)]
    pub detect_max_side: u32,
    /// Longest side for dlib's CNN detector, the last resort when HOG finds no face
    /// (0 disables it; at 256 it costs ~0.25-0.35 s per photo without a face, whatever its size:
    /// docs/BENCHMARKS.md 8b).
    #[arg(long, env = "LOOKALIKE_CNN_MAX_SIDE", default_value_t = 256, global = true)]
    pub cnn_max_side: u32,
    /// Most pixels of the retry pass (HOG on an upsampled copy with a grey border, when the
    /// first pass finds nothing): bounds what a photo without a face costs at large sizes.
    /// 250-px photos use ~0.56 MP whatever the bound (docs/BENCHMARKS.md 8b).
    #[arg(long, env = "LOOKALIKE_RETRY_MAX_PIXELS", default_value_t = DetectConfig::default().retry_max_pixels, global = true)]
    pub retry_max_pixels: u64,
    /// Average each query embedding with its mirror image's: +0.6 point of rank-1 on lfw-dev
    /// for about a third more CPU per photo (docs/BENCHMARKS.md).
    #[arg(long, env = "LOOKALIKE_MIRROR", default_value_t = false, global = true)]
    pub mirror: bool,
    /// Crowding correction: rank candidates by distance minus this times the identity's
    /// mean distance to its 10 nearest other identities, so that faces in crowded regions
    /// do not win every close call (rank-1 on lfw-dev: +0.6 point with --mirror, +0.1 without;
    /// docs/BENCHMARKS.md).
    /// 0 ranks by plain distance; galleries built before it have no figures and rank plainly.
    #[arg(long, env = "LOOKALIKE_CROWDING_WEIGHT", default_value_t = lookalike_engine::search::crowding::DEFAULT_WEIGHT, global = true)]
    pub crowding_weight: f32,
}

impl EngineArgs {
    pub fn limits(&self) -> DecodeLimits {
        DecodeLimits { max_bytes: self.max_image_bytes, max_pixels: self.max_image_pixels, ..DecodeLimits::default() }
    }

    pub fn detect(&self) -> DetectConfig {
        DetectConfig {
            quick_side: self.detect_quick_side,
            max_side: self.detect_max_side,
            cnn_max_side: self.cnn_max_side,
            retry_max_pixels: self.retry_max_pixels,
            ..DetectConfig::default()
        }
    }

    pub fn search_mode(&self) -> SearchMode {
        match self.search {
            SearchKind::Exact => SearchMode::Exact,
            SearchKind::Hnsw => SearchMode::Hnsw,
            SearchKind::Auto => SearchMode::Auto { hnsw_threshold: self.hnsw_threshold },
        }
    }

    /// Loads a gallery with this configuration's index and ranking.
    pub fn load_gallery(&self, path: &Path) -> Result<Gallery, GalleryError> {
        let mut g = Gallery::load(path, self.search_mode(), self.hnsw_params())?;
        g.set_crowding_weight(self.crowding_weight);
        Ok(g)
    }

    pub fn hnsw_params(&self) -> HnswParams {
        HnswParams { ef_search: self.hnsw_ef, ..HnswParams::default() }
    }
}

/// Binaries built for x86-64-v3 (the default, see .cargo/config.toml) would die with
/// SIGILL on an older CPU; say so instead.
pub fn check_cpu() -> Result<(), String> {
    #[cfg(all(target_arch = "x86_64", target_feature = "avx2"))]
    {
        if !(std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")) {
            return Err("this binary was built for x86-64-v3 (AVX2, FMA) and this CPU lacks them; \
                 rebuild with RUSTFLAGS=\"-C target-cpu=x86-64\" CXXFLAGS=\"-march=x86-64\""
                .into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn an_optional_address_is_an_address_or_off() {
        assert_eq!("".parse::<OptionalAddr>().unwrap(), OptionalAddr(None));
        assert_eq!("off".parse::<OptionalAddr>().unwrap(), OptionalAddr(None));
        assert_eq!("127.0.0.1:9090".parse::<OptionalAddr>().unwrap().0, Some("127.0.0.1:9090".parse().unwrap()));
        assert!("nine".parse::<OptionalAddr>().is_err());
    }

    #[test]
    fn fractions_and_seconds_refuse_what_they_cannot_mean() {
        assert_eq!(fraction("0.25"), Ok(0.25));
        assert_eq!(fraction("1"), Ok(1.0));
        for bad in ["-0.1", "1.5", "NaN", "inf", "a quarter"] {
            assert!(fraction(bad).is_err(), "{bad}");
        }
        assert_eq!(seconds("0.1"), Ok(Duration::from_millis(100)));
        for bad in ["-1", "NaN", "inf", "1e30", "soon"] {
            assert!(seconds(bad).is_err(), "{bad}");
        }
    }
}
