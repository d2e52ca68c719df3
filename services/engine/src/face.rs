//! What the engine reports about one face.

use serde::{Deserialize, Serialize};

pub const EMBEDDING_DIM: usize = 128;

/// Side in pixels of the aligned face chips: the gallery's identity thumbnails and the
/// chips the matcher returns on request are cut the same way (this size, `CHIP_PADDING`),
/// so a user's face and a celebrity's line up when shown side by side.
pub const CHIP_SIZE: u32 = 160;
/// Margin around the face in an aligned chip, as a share of the face (dlib's `padding`).
pub const CHIP_PADDING: f64 = 0.25;
/// JPEG quality of encoded chips: ~8 KB for a 160-px chip.
const CHIP_JPEG_QUALITY: u8 = 85;

/// JPEG of an aligned RGB8 chip of `size` x `size` pixels; an error (not a panic in the
/// encoder) when `chip` is not that many pixels.
pub fn chip_jpeg(chip: &[u8], size: u32) -> Result<Vec<u8>, image::ImageError> {
    if chip.len() as u64 != u64::from(size) * u64::from(size) * 3 {
        return Err(image::ImageError::Parameter(image::error::ParameterError::from_kind(
            image::error::ParameterErrorKind::DimensionMismatch,
        )));
    }
    let mut out = Vec::with_capacity(12 * 1024);
    let enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, CHIP_JPEG_QUALITY);
    image::ImageEncoder::write_image(enc, chip, size, size, image::ExtendedColorType::Rgb8)?;
    Ok(out)
}

/// A 128-d face embedding (dlib ResNet; Euclidean distance < 0.6 means "same person").
pub type Embedding = [f32; EMBEDDING_DIM];

/// Pixel box in the upright image: left, top inclusive; right, bottom exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FaceBox {
    pub left: i32,
    pub top: i32,
    pub right: i32,
    pub bottom: i32,
}

impl FaceBox {
    pub fn area(&self) -> i64 {
        i64::from((self.right - self.left).max(0)) * i64::from((self.bottom - self.top).max(0))
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Face {
    pub bbox: FaceBox,
    /// HOG detector score (0 is dlib's threshold; higher is more confident).
    pub score: f32,
    /// dlib's 5 points (x, y): two corners of each eye, then the base of the nose.
    pub landmarks: [[f32; 2]; 5],
    /// Distance between the eye centres in pixels: how much face the encoder really saw.
    pub eye_distance: f32,
    /// Head roll in degrees (0 = eyes level; positive = clockwise in the image).
    pub roll_degrees: f32,
    #[serde(skip)]
    pub embedding: Embedding,
    /// Aligned RGB8 face chip, when asked for (gallery thumbnails).
    #[serde(skip)]
    pub chip: Option<Vec<u8>>,
}

/// Eye centres from dlib's 5-point layout, ordered left to right in the image.
pub fn eye_centres(points: &[[f32; 2]; 5]) -> ([f32; 2], [f32; 2]) {
    let a = [(points[0][0] + points[1][0]) / 2.0, (points[0][1] + points[1][1]) / 2.0];
    let b = [(points[2][0] + points[3][0]) / 2.0, (points[2][1] + points[3][1]) / 2.0];
    if a[0] <= b[0] {
        (a, b)
    } else {
        (b, a)
    }
}

pub fn eye_geometry(points: &[[f32; 2]; 5]) -> (f32, f32) {
    let (l, r) = eye_centres(points);
    let (dx, dy) = (r[0] - l[0], r[1] - l[1]);
    ((dx * dx + dy * dy).sqrt(), dy.atan2(dx).to_degrees())
}

pub fn distance(a: &Embedding, b: &Embedding) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f32>().sqrt()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used)]
    use super::*;

    #[test]
    fn chip_jpeg_refuses_a_buffer_of_the_wrong_size() {
        let jpeg = chip_jpeg(&[128u8; 8 * 8 * 3], 8).expect("an 8x8 chip encodes");
        assert_eq!(&jpeg[..2], &[0xFF, 0xD8]);
        assert!(chip_jpeg(&[128u8; 8 * 8 * 3 - 1], 8).is_err());
        assert!(chip_jpeg(&[], CHIP_SIZE).is_err());
    }
}
