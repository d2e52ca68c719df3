//! The per-photo pipeline on one worker's models: decode → detect → landmarks → embedding.

use crate::decode::{decode, probe, DecodeLimits, Decoded};
use crate::detect::{detect_faces, quick_pass, to_matrix, DetectConfig, DetectPass, DetectReport};
use crate::dlib::face_chip;
use crate::error::{AnalyzeError, NativeError};
use crate::face::{eye_geometry, Face, FaceBox, CHIP_PADDING};
use crate::fallback::FallbackBudget;
use crate::models::WorkerModels;
use dlib_face_recognition::{LandmarkPredictorTrait, Rectangle};
use image::RgbImage;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub struct AnalyzeOptions {
    /// Every face (strongest first, up to `max_faces`) instead of only the largest.
    pub all_faces: bool,
    pub max_faces: usize,
    /// Jittered copies averaged per embedding (0 or 1 = none; the gallery uses 10).
    pub jitters: u32,
    /// Seed of the jitter generator (same seed, same embedding).
    pub seed: u64,
    /// Average each embedding with that of the mirrored face (no effect with jitters > 1).
    /// On lfw-dev it raises rank-1 by about a point, for one more network pass per face
    /// (about a third more CPU per photo): see docs/BENCHMARKS.md.
    pub mirror: bool,
    /// Side of an aligned face chip to return with each face (thumbnails, and the chips a
    /// caller asks for; `face::CHIP_SIZE` for both), if any.
    pub chip_size: Option<u32>,
}

impl Default for AnalyzeOptions {
    fn default() -> Self {
        Self { all_faces: false, max_faces: 10, jitters: 0, seed: 0, mirror: false, chip_size: None }
    }
}

/// Time spent in each stage of one photo.
#[derive(Debug, Clone, Copy, Default)]
pub struct StageTimings {
    pub decode: Duration,
    pub detect: Duration,
    pub landmarks: Duration,
    pub encode: Duration,
}

#[derive(Debug, Clone)]
pub struct Analysis {
    pub width: u32,
    pub height: u32,
    /// Largest first in main-face mode; left to right in all-faces mode.
    pub faces: Vec<Face>,
    /// Every face the detector found (before selection), strongest first.
    pub detections: Vec<FaceBox>,
    /// Which detection pass found them (or was skipped by the fallback budget).
    pub detection: DetectReport,
    /// Size of the decoded working image the faces were found and embedded on (a selfie's
    /// reduced-scale copy, or the photo brought within `DecodeLimits::max_side`).
    pub working_size: (u32, u32),
    pub timings: StageTimings,
}

impl Analysis {
    /// Maps positions found on a working image scaled by (`sx`, `sy`) back to the photo's
    /// own pixels (chips and embeddings do not change).
    fn map_to_photo(&mut self, sx: f64, sy: f64) {
        let map_box = |b: &mut FaceBox| {
            b.left = (f64::from(b.left) / sx).round() as i32;
            b.right = (f64::from(b.right) / sx).round() as i32;
            b.top = (f64::from(b.top) / sy).round() as i32;
            b.bottom = (f64::from(b.bottom) / sy).round() as i32;
        };
        self.detections.iter_mut().for_each(map_box);
        for face in &mut self.faces {
            map_box(&mut face.bbox);
            for p in &mut face.landmarks {
                p[0] = (f64::from(p[0]) / sx) as f32;
                p[1] = (f64::from(p[1]) / sy) as f32;
            }
            (face.eye_distance, face.roll_degrees) = eye_geometry(&face.landmarks);
        }
    }
}

/// dlib's 5 landmark points as (x, y) floats.
fn points_of(shape: &dlib_face_recognition::FaceLandmarks) -> [[f32; 2]; 5] {
    let mut points = [[0f32; 2]; 5];
    for (dst, p) in points.iter_mut().zip(shape.iter()) {
        *dst = [p.x() as f32, p.y() as f32];
    }
    points
}

/// Which detection passes `FaceAnalyzer::analyze_with` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Passes {
    All,
    /// The quick pass alone (an empty analysis when it finds nothing).
    QuickOnly,
    /// Every pass but the quick one, which already found nothing on a smaller copy.
    AfterQuick,
}

/// An analysis of `decoded`'s working image in the photo's own coordinates and size.
fn on_photo(mut analysis: Analysis, decoded: &Decoded) -> Analysis {
    if (decoded.width, decoded.height) != decoded.image.dimensions() {
        let (sx, sy) = decoded.scale();
        analysis.map_to_photo(sx, sy);
        analysis.width = decoded.width;
        analysis.height = decoded.height;
    }
    analysis
}

/// Largest detections considered for the main face.
const MAIN_FACE_CANDIDATES: usize = 6;

/// One worker's face pipeline. Owns its models; not `Sync`.
pub struct FaceAnalyzer {
    models: WorkerModels,
    pub limits: DecodeLimits,
    pub detect: DetectConfig,
    /// Shared with the process's other workers; none = every pass for every photo.
    fallback: Option<Arc<FallbackBudget>>,
}

impl FaceAnalyzer {
    pub fn new(models: WorkerModels, limits: DecodeLimits, detect: DetectConfig) -> Self {
        Self { models, limits, detect, fallback: None }
    }

    /// Runs the retry and CNN detection passes only while `budget` allows (none: always).
    pub fn set_fallback_budget(&mut self, budget: Option<Arc<FallbackBudget>>) {
        self.fallback = budget;
    }

    /// Analyses an encoded photo. In main-face mode, a baseline JPEG larger than the first
    /// detection pass is first decoded at a reduced scale (libjpeg-turbo's DCT scaling: 1/2
    /// for a 1280-px photo) to at most that pass's side, and the quick pass runs on that: a
    /// face it finds there is at least ~160 px, which fills the encoder's chip, so a selfie is
    /// analysed from the small copy alone. Otherwise the photo is decoded again at its
    /// working size and the other passes run on it.
    pub fn analyze_bytes(&mut self, bytes: &[u8], opts: &AnalyzeOptions) -> Result<Analysis, AnalyzeError> {
        let mut passes = Passes::All;
        let mut spent = StageTimings::default();
        if let Some(small) = self.selfie_limits(bytes, opts) {
            let t = Instant::now();
            let decoded = tracing::info_span!("decode", bytes = bytes.len(), reduced = true)
                .in_scope(|| decode(bytes, &small))?;
            spent.decode = t.elapsed();
            let t = Instant::now();
            let mut analysis = self.analyze_with(&decoded.image, opts, Passes::QuickOnly)?;
            if analysis.detection.found_by.is_some() {
                analysis.timings.decode = spent.decode;
                return Ok(on_photo(analysis, &decoded));
            }
            spent.detect = t.elapsed();
            passes = Passes::AfterQuick;
        }
        let t = Instant::now();
        let decoded = tracing::info_span!("decode", bytes = bytes.len()).in_scope(|| decode(bytes, &self.limits))?;
        let decode_time = t.elapsed();
        let mut analysis = self.analyze_with(&decoded.image, opts, passes)?;
        analysis.timings.decode = spent.decode + decode_time;
        analysis.timings.detect += spent.detect;
        Ok(on_photo(analysis, &decoded))
    }

    /// The decode limits of the reduced-scale first try (see `analyze_bytes`), when it
    /// applies: main-face mode with a quick pass, a baseline JPEG that libjpeg-turbo scales,
    /// larger than the first pass's side. Progressive JPEGs are left out: decoding one twice
    /// would read every scan twice.
    fn selfie_limits(&self, bytes: &[u8], opts: &AnalyzeOptions) -> Option<DecodeLimits> {
        if opts.all_faces || self.detect.quick_side == 0 {
            return None;
        }
        let h = probe(bytes, &self.limits).ok()?;
        let side = self.detect.max_side.min(self.limits.max_side);
        let suits = h.scaled_decode && !h.progressive && h.width.max(h.height) > side && side > self.detect.quick_side;
        suits.then_some(DecodeLimits { max_side: side, ..self.limits })
    }

    pub fn analyze_image(&mut self, image: &RgbImage, opts: &AnalyzeOptions) -> Result<Analysis, NativeError> {
        self.analyze_with(image, opts, Passes::All)
    }

    fn analyze_with(
        &mut self,
        image: &RgbImage,
        opts: &AnalyzeOptions,
        passes: Passes,
    ) -> Result<Analysis, NativeError> {
        let mut timings = StageTimings::default();
        let (width, height) = image.dimensions();
        let span = tracing::info_span!("detect").entered();
        let t = Instant::now();
        let full = to_matrix(image);
        let (mut dets, detection) = match passes {
            Passes::QuickOnly => {
                let dets = quick_pass(&mut self.models.detector, &full, width, height, &self.detect)?;
                if dets.is_empty() {
                    timings.detect = t.elapsed();
                    let detection = DetectReport::default();
                    let (faces, detections) = (Vec::new(), Vec::new());
                    let working_size = (width, height);
                    return Ok(Analysis { width, height, faces, detections, detection, working_size, timings });
                }
                (dets, DetectReport { found_by: Some(DetectPass::Quick), skipped: None })
            }
            Passes::All | Passes::AfterQuick => {
                let cfg = match passes {
                    Passes::AfterQuick => DetectConfig { quick_side: 0, ..self.detect },
                    _ => self.detect,
                };
                detect_faces(
                    &mut self.models.detector,
                    self.models.cnn.as_ref(),
                    image,
                    &full,
                    &cfg,
                    opts.all_faces,
                    self.fallback.as_deref(),
                )?
            }
        };
        let area = |d: &crate::dlib::RawDetection| (d.right - d.left) * (d.bottom - d.top);
        let clamp = |v: f64, max: u32| (v.round() as i64).clamp(0, i64::from(max)) as i32;
        let to_box = |d: &crate::dlib::RawDetection| FaceBox {
            left: clamp(d.left, width),
            top: clamp(d.top, height),
            right: clamp(d.right, width),
            bottom: clamp(d.bottom, height),
        };
        let detections: Vec<FaceBox> = dets.iter().map(to_box).collect();
        if opts.all_faces {
            dets.truncate(opts.max_faces.max(1));
        } else {
            // Main-face candidates: the largest boxes. HOG boxes come in coarse pyramid
            // steps (several faces often get the same box), so the final choice is made
            // on the eye distance from the landmarks, a finer measure of face size.
            dets.sort_by(|a, b| area(b).total_cmp(&area(a)));
            dets.truncate(MAIN_FACE_CANDIDATES);
        }
        timings.detect = t.elapsed();
        drop(span);
        let span = tracing::info_span!("landmarks", candidates = dets.len()).entered();

        let t = Instant::now();
        let mut shapes: Vec<_> = dets
            .iter()
            .map(|d| {
                let rect = Rectangle {
                    left: d.left.round() as _,
                    top: d.top.round() as _,
                    right: d.right.round() as _,
                    bottom: d.bottom.round() as _,
                };
                self.models.predictor.face_landmarks(&full, &rect)
            })
            .collect();
        if !opts.all_faces && shapes.len() > 1 {
            let eye = |shape: &dlib_face_recognition::FaceLandmarks| eye_geometry(&points_of(shape)).0;
            let best = (0..shapes.len()).max_by(|&i, &j| eye(&shapes[i]).total_cmp(&eye(&shapes[j]))).unwrap_or(0);
            let shape = shapes.swap_remove(best);
            shapes = vec![shape];
            dets = vec![dets[best]];
        }
        timings.landmarks = t.elapsed();
        drop(span);
        let span = tracing::info_span!("encode", faces = shapes.len(), jitters = opts.jitters).entered();

        let t = Instant::now();
        let embeddings =
            self.models.encoder.encode(&full, &shapes, opts.jitters, opts.seed, opts.mirror).map_err(NativeError)?;
        timings.encode = t.elapsed();
        drop(span);

        let mut faces = Vec::with_capacity(dets.len());
        for ((d, shape), embedding) in dets.iter().zip(&shapes).zip(embeddings) {
            let landmarks = points_of(shape);
            let (eye_distance, roll_degrees) = eye_geometry(&landmarks);
            let chip = match opts.chip_size {
                Some(size) => Some(face_chip(&full, shape, size, CHIP_PADDING).map_err(NativeError)?),
                None => None,
            };
            faces.push(Face {
                bbox: to_box(d),
                score: d.score as f32,
                landmarks,
                eye_distance,
                roll_degrees,
                embedding,
                chip,
            });
        }
        if opts.all_faces {
            faces.sort_by_key(|f| (f.bbox.left, f.bbox.top));
        }
        Ok(Analysis { width, height, faces, detections, detection, working_size: (width, height), timings })
    }
}
