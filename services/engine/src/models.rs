//! Loading dlib's model files once and handing each worker its own copy.

use crate::dlib::{FaceEncoder, HogDetector};
use crate::error::ModelError;
use dlib_face_recognition::{FaceDetectorCnn, LandmarkPredictor};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub const LANDMARKS_FILE: &str = "shape_predictor_5_face_landmarks.dat";
pub const ENCODER_FILE: &str = "dlib_face_recognition_resnet_model_v1.dat";
/// Optional: dlib's CNN (MMOD) detector, the last resort when HOG finds nothing.
pub const CNN_DETECTOR_FILE: &str = "mmod_human_face_detector.dat";

/// The loaded models; cheap to turn into per-worker sets with [`Models::worker_set`].
pub struct Models {
    /// dlib's shape predictor is read-only when predicting (thread-safe): one copy for all.
    predictor: Arc<LandmarkPredictor>,
    /// The prototype encoder is only ever copied; the lock makes `Models` shareable.
    encoder: Mutex<FaceEncoder>,
    cnn: Option<Mutex<FaceDetectorCnn>>,
}

/// One worker's models. The detector and encoder are not `Sync`: never share a set.
pub struct WorkerModels {
    pub detector: HogDetector,
    pub predictor: Arc<LandmarkPredictor>,
    pub encoder: FaceEncoder,
    pub cnn: Option<FaceDetectorCnn>,
}

impl Models {
    /// Loads the 5-point landmark model and the ResNet encoder from `dir`.
    pub fn load(dir: &Path) -> Result<Self, ModelError> {
        let lm = model_file(dir, LANDMARKS_FILE)?;
        let enc = model_file(dir, ENCODER_FILE)?;
        let predictor = LandmarkPredictor::open(&lm).map_err(|detail| ModelError::Load { path: lm, detail })?;
        let encoder = FaceEncoder::open(&enc).map_err(|detail| ModelError::Load { path: enc, detail })?;
        let cnn_path = dir.join(CNN_DETECTOR_FILE);
        let cnn = if cnn_path.is_file() {
            let cnn = FaceDetectorCnn::open(&cnn_path).map_err(|detail| ModelError::Load { path: cnn_path, detail })?;
            Some(Mutex::new(cnn))
        } else {
            None
        };
        Ok(Self { predictor: Arc::new(predictor), encoder: Mutex::new(encoder), cnn })
    }

    /// A private copy of every model for one worker thread.
    pub fn worker_set(&self) -> WorkerModels {
        let encoder = self.encoder.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
        let cnn = self.cnn.as_ref().map(|m| m.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone());
        WorkerModels { detector: HogDetector::new(), predictor: self.predictor.clone(), encoder, cnn }
    }
}

fn model_file(dir: &Path, name: &str) -> Result<PathBuf, ModelError> {
    let path = dir.join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(ModelError::Missing { path })
    }
}
