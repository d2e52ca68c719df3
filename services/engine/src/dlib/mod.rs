//! Bindings to dlib: the `dlib-face-recognition` crate plus the engine's own shim.
mod shim;
pub use shim::{face_chip, FaceEncoder, HogDetector, RawDetection};
