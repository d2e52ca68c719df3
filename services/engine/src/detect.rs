//! Face detection strategy around dlib's HOG detector, cheapest pass first, each one only
//! when the ones before found nothing:
//!
//! 1. quick (main-face mode): a copy of at most 320 px, which finds the faces that take at
//!    least a quarter of the photo's longest side (selfies, portraits) at a quarter of the
//!    next pass's cost;
//! 2. first: a copy of at most 640 px (1600 px for all faces), faces down to ~1/8 of the side
//!    (HOG cost grows with pixels: ~400 ms at 2000 px vs ~20 ms at 640 px);
//! 3. retry: an upsampled copy with a grey border, which finds faces that are small (group
//!    photos) or that fill the frame (tight crops, where the detector's window needs context
//!    around the face);
//! 4. CNN: dlib's MMOD detector on a small copy, for blurred, occluded and turned faces.
//!
//! Boxes are mapped back to the photo's coordinates. The retry and the CNN only run while the
//! [`FallbackBudget`] (if any) allows: they are what a photo without a face costs.

use crate::decode;
use crate::dlib::{HogDetector, RawDetection};
use crate::error::NativeError;
use crate::fallback::FallbackBudget;
use dlib_face_recognition::{FaceDetectorCnn, FaceDetectorTrait, ImageMatrix};
use image::{imageops, Rgb, RgbImage};

#[derive(Debug, Clone, Copy)]
pub struct DetectConfig {
    /// Longest side of the quick pass in main-face mode (0 = none): it runs when the photo
    /// (or the first pass's copy) is larger, and the first pass only if it finds nothing.
    pub quick_side: u32,
    /// Longest side of the first pass (main-face mode).
    pub max_side: u32,
    /// Longest side of the first pass when all faces are wanted (small faces in groups).
    pub all_faces_max_side: u32,
    /// Longest side (without the border) of the retry pass; also at most 2x upsampling.
    pub retry_max_side: u32,
    /// Border added on each side in the retry pass, as a fraction of the longest side.
    pub retry_border: f32,
    /// Most pixels of the retry pass's bordered copy: bounds its time and memory on large
    /// photos (HOG costs ~40 bytes and a fixed time per pixel), where the retry looks for
    /// faces the first pass missed.
    pub retry_max_pixels: u64,
    /// Most detections kept from one pass.
    pub max_detections: usize,
    /// Last resort when HOG finds nothing: dlib's CNN detector (if its model is present)
    /// on a copy whose longest side is this many pixels (0 = never). Slower (~0.1-0.3 s)
    /// but finds blurred, occluded and turned faces.
    pub cnn_max_side: u32,
}

impl Default for DetectConfig {
    fn default() -> Self {
        Self {
            quick_side: 320,
            max_side: 640,
            all_faces_max_side: 1600,
            retry_max_side: 1280,
            retry_border: 0.25,
            retry_max_pixels: 1_200_000,
            max_detections: 64,
            cnn_max_side: 256,
        }
    }
}

/// A detection in full-resolution coordinates (may extend past the image edge).
pub type Detection = RawDetection;

/// The detection passes, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DetectPass {
    Quick = 0,
    First = 1,
    Retry = 2,
    Cnn = 3,
}

impl DetectPass {
    /// The passes a [`FallbackBudget`] governs.
    pub const FALLBACK: [DetectPass; 2] = [DetectPass::Retry, DetectPass::Cnn];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Quick => "quick",
            Self::First => "first",
            Self::Retry => "retry",
            Self::Cnn => "cnn",
        }
    }
}

/// Which pass found the faces, and which pass the fallback budget skipped (after which no
/// other pass ran).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DetectReport {
    pub found_by: Option<DetectPass>,
    pub skipped: Option<DetectPass>,
}

/// Finds faces in `image` (whose dlib copy is `full`), strongest first. The retry and CNN
/// passes run only while `budget` (if any) allows.
pub fn detect_faces(
    detector: &mut HogDetector,
    cnn: Option<&FaceDetectorCnn>,
    image: &RgbImage,
    full: &ImageMatrix,
    cfg: &DetectConfig,
    all_faces: bool,
    budget: Option<&FallbackBudget>,
) -> Result<(Vec<Detection>, DetectReport), NativeError> {
    let (w, h) = image.dimensions();
    let long = w.max(h) as f64;
    let found = |pass, dets: Vec<Detection>| (dets, DetectReport { found_by: Some(pass), skipped: None });
    let first_side = if all_faces { cfg.all_faces_max_side } else { cfg.max_side };
    let first_scale = (f64::from(first_side) / long).min(1.0);
    if !all_faces {
        let dets = quick_pass(detector, full, w, h, cfg)?;
        if !dets.is_empty() {
            return Ok(found(DetectPass::Quick, dets));
        }
    }
    let dets = hog_scaled(detector, full, w, h, first_scale, cfg)?;
    if !dets.is_empty() {
        return Ok(found(DetectPass::First, dets));
    }

    // Retry: upsample (at most 2x, up to retry_max_side and retry_max_pixels with the
    // border) and add a grey border.
    let retry = || -> Result<Vec<Detection>, NativeError> {
        let retry_scale = retry_scale(w, h, cfg).max(first_scale);
        let (matrix, border) = padded_copy(image, retry_scale, cfg.retry_border)?;
        let dets = detector.detect(&matrix, cfg.max_detections).map_err(NativeError)?;
        Ok(dets.into_iter().map(|d| map_back(d, retry_scale, border)).collect())
    };
    let skipped = |pass| Ok((Vec::new(), DetectReport { found_by: None, skipped: Some(pass) }));
    let Some(dets) = within(budget, DetectPass::Retry, retry) else {
        return skipped(DetectPass::Retry);
    };
    let dets = dets?;
    if !dets.is_empty() {
        return Ok(found(DetectPass::Retry, dets));
    }
    let Some(cnn) = cnn.filter(|_| cfg.cnn_max_side > 0) else {
        return Ok((Vec::new(), DetectReport::default()));
    };
    let Some(dets) = within(budget, DetectPass::Cnn, || detect_cnn(cnn, image, cfg)) else {
        return skipped(DetectPass::Cnn);
    };
    let dets = dets?;
    if dets.is_empty() {
        return Ok((dets, DetectReport::default()));
    }
    Ok(found(DetectPass::Cnn, dets))
}

/// Runs a fallback `pass` within `budget` (`None` when the budget skips it); without a
/// budget it always runs.
fn within<T>(budget: Option<&FallbackBudget>, pass: DetectPass, run: impl FnOnce() -> T) -> Option<T> {
    match budget {
        Some(b) => b.run(pass, run),
        None => Some(run()),
    }
}

/// The quick pass alone (main-face mode) on the `w` x `h` image `full`: nothing when the
/// image is not larger than the first pass would make it, or when `quick_side` is 0. A face
/// it finds is at least ~80 px on a copy of `quick_side` px, so at least a quarter of the
/// image's longest side.
pub fn quick_pass(
    detector: &mut HogDetector,
    full: &ImageMatrix,
    w: u32,
    h: u32,
    cfg: &DetectConfig,
) -> Result<Vec<Detection>, NativeError> {
    let long = f64::from(w.max(h));
    let first_scale = (f64::from(cfg.max_side) / long).min(1.0);
    let quick_scale = f64::from(cfg.quick_side) / long;
    if cfg.quick_side == 0 || quick_scale >= first_scale {
        return Ok(Vec::new());
    }
    hog_scaled(detector, full, w, h, quick_scale, cfg)
}

/// HOG on `full` scaled by `scale` (at most 1), boxes mapped back.
fn hog_scaled(
    detector: &mut HogDetector,
    full: &ImageMatrix,
    w: u32,
    h: u32,
    scale: f64,
    cfg: &DetectConfig,
) -> Result<Vec<Detection>, NativeError> {
    let dets = if scale < 1.0 {
        let (sw, sh) = scaled(w, h, scale);
        let small = full.resize(sw as usize, sh as usize);
        detector.detect(&small, cfg.max_detections).map_err(NativeError)?
    } else {
        detector.detect(full, cfg.max_detections).map_err(NativeError)?
    };
    Ok(dets.into_iter().map(|d| map_back(d, scale.min(1.0), 0.0)).collect())
}

/// Scale of the retry pass's copy of a `w` x `h` image (before the first pass's floor).
pub fn retry_scale(w: u32, h: u32, cfg: &DetectConfig) -> f64 {
    let long = f64::from(w.max(h));
    let by_side = (f64::from(cfg.retry_max_side) / long).min(2.0);
    // Bordered area at scale s: (w*s + 2b)(h*s + 2b) with b = border * long * s.
    let b = 2.0 * f64::from(cfg.retry_border) * long;
    let unit = (f64::from(w) + b) * (f64::from(h) + b);
    let by_pixels = (cfg.retry_max_pixels as f64 / unit).sqrt();
    by_side.min(by_pixels)
}

/// The CNN pass: a bounded-size copy with a grey border (CNN cost grows with pixels).
fn detect_cnn(cnn: &FaceDetectorCnn, image: &RgbImage, cfg: &DetectConfig) -> Result<Vec<Detection>, NativeError> {
    let (w, h) = image.dimensions();
    let scale = (cfg.cnn_max_side as f64 / w.max(h) as f64).min(2.0);
    let (matrix, border) = padded_copy(image, scale, cfg.retry_border)?;
    let rects = cnn.face_locations(&matrix);
    Ok(rects
        .iter()
        .take(cfg.max_detections)
        .map(|r| {
            // MMOD has no comparable score; report dlib's HOG threshold (0).
            let raw = RawDetection {
                left: r.left as f64,
                top: r.top as f64,
                right: r.right as f64,
                bottom: r.bottom as f64,
                score: 0.0,
            };
            map_back(raw, scale, border)
        })
        .collect())
}

/// `image` scaled by `scale` inside a grey border of `border_frac` of its longest side
/// (faces cut by the frame edge are found more often), as a dlib matrix, and the border
/// width in pixels (for `map_back`).
fn padded_copy(image: &RgbImage, scale: f64, border_frac: f32) -> Result<(ImageMatrix, f64), NativeError> {
    let (w, h) = image.dimensions();
    let (sw, sh) = scaled(w, h, scale);
    let border = (border_frac as f64 * sw.max(sh) as f64).round() as u32;
    let mut padded = RgbImage::from_pixel(sw + 2 * border, sh + 2 * border, Rgb([128, 128, 128]));
    if (sw, sh) == (w, h) {
        imageops::replace(&mut padded, image, i64::from(border), i64::from(border));
    } else {
        let resized = decode::resize(image, sw, sh).map_err(|e| NativeError(format!("resizing for detection: {e}")))?;
        imageops::replace(&mut padded, &resized, i64::from(border), i64::from(border));
    }
    Ok((to_matrix(&padded), border as f64))
}

fn scaled(w: u32, h: u32, s: f64) -> (u32, u32) {
    (((w as f64 * s).round() as u32).max(1), ((h as f64 * s).round() as u32).max(1))
}

fn map_back(d: RawDetection, scale: f64, border: f64) -> Detection {
    let f = |v: f64| (v - border) / scale;
    RawDetection { left: f(d.left), top: f(d.top), right: f(d.right), bottom: f(d.bottom), score: d.score }
}

/// Copies an RGB8 image into dlib's matrix type.
pub fn to_matrix(image: &RgbImage) -> ImageMatrix {
    let (w, h) = image.dimensions();
    // SAFETY: an RgbImage holds exactly w*h*3 bytes, which is what ImageMatrix::new reads.
    unsafe { ImageMatrix::new(w as usize, h as usize, image.as_raw().as_ptr()) }
}
