//! Photo decoding with a cost bounded by design: limits checked from the header before any
//! pixel is decoded, and never more pixels in memory than the face pipeline needs.
//!
//! Everything after decoding (detection, landmarks, the aligned chips) works on a *working
//! image* whose longest side is at most [`DecodeLimits::max_side`] (2048 by default). The
//! largest first detection pass runs at 1600 px, and a face HOG can find there is at least
//! ~80 px wide, so at 2048 px it still fills the encoder's 150-px chip: a larger copy would
//! cost memory and time and change nothing downstream. (`FaceAnalyzer::analyze_bytes` first
//! tries a smaller working image for selfies: a face its quick pass finds there is large
//! enough for the chip.)
//!
//! - **JPEG** (what Telegram sends) is decoded by libjpeg-turbo straight to the working size:
//!   its IDCT scales by n/8 in the frequency domain, so a 40-MP photo never exists at full
//!   size (only a baseline JPEG's few rows of coefficients do; a progressive JPEG also holds
//!   its whole coefficient array, counted by [`estimate_peak_bytes`]). The `image` crate's
//!   JPEG decoder has no scaled decoding; libjpeg-turbo is built from source by
//!   `turbojpeg-sys` (Debian 12's 2.1 lacks the TurboJPEG 3 API) and linked statically.
//! - **PNG, WebP, GIF, BMP** have no scaled decoding: they are decoded at full size (bounded
//!   by `max_pixels`, and counted by the estimate), then resized once with SIMD
//!   (`fast_image_resize`).
//! - EXIF orientation is applied to the working image, not to the full-size one.

use crate::error::ImageError;
use fast_image_resize::{self as fir, ResizeAlg, ResizeOptions, Resizer};
use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits, RgbImage};
use std::io::Cursor;

/// Limits on what a caller may send; defaults fit a 20 MB Telegram photo.
#[derive(Debug, Clone, Copy)]
pub struct DecodeLimits {
    /// Encoded size in bytes.
    pub max_bytes: usize,
    /// Width x height, checked from the header.
    pub max_pixels: u64,
    /// Images smaller than this on either side cannot hold a detectable face.
    pub min_side: u32,
    /// Longest side of the working image the pipeline sees (larger photos are scaled down
    /// while decoding; see the module's comment).
    pub max_side: u32,
}

/// Default [`DecodeLimits::max_side`].
pub const WORKING_MAX_SIDE: u32 = 2048;

impl Default for DecodeLimits {
    fn default() -> Self {
        Self { max_bytes: 20 * 1024 * 1024, max_pixels: 40_000_000, min_side: 16, max_side: WORKING_MAX_SIDE }
    }
}

/// A decoded photo: the upright working image and the photo's own upright size.
#[derive(Debug, Clone)]
pub struct Decoded {
    /// Upright RGB8, longest side at most `max_side`.
    pub image: RgbImage,
    /// The photo's upright size as sent (coordinates in results refer to it).
    pub width: u32,
    pub height: u32,
}

impl Decoded {
    /// Working-image pixels per photo pixel, horizontally and vertically (1 when not scaled).
    pub fn scale(&self) -> (f64, f64) {
        (f64::from(self.image.width()) / f64::from(self.width), f64::from(self.image.height()) / f64::from(self.height))
    }
}

/// What the header says, read without decoding a pixel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub format: ImageFormat,
    /// Stored size (before EXIF orientation).
    pub width: u32,
    pub height: u32,
    /// JPEG only: progressive (the decoder keeps every coefficient of the image).
    pub progressive: bool,
    /// JPEG only: samples per pixel across components (3 for 4:4:4, 1.5 for 4:2:0, 1 for
    /// grey), times 2.
    pub jpeg_samples_x2: u32,
    /// Other formats: bytes per pixel of the full-size decode (3 for RGB8, 8 for RGBA16).
    pub bytes_per_pixel: u32,
    /// Decoded at a reduced scale (JPEG in YCbCr, RGB or grey). CMYK and YCCK JPEGs, which
    /// libjpeg-turbo cannot turn into RGB, are decoded at full size like other formats.
    pub scaled_decode: bool,
}

fn format_name(f: ImageFormat) -> &'static str {
    match f {
        ImageFormat::Jpeg => "JPEG",
        ImageFormat::Png => "PNG",
        ImageFormat::WebP => "WebP",
        ImageFormat::Gif => "GIF",
        ImageFormat::Bmp => "BMP",
        _ => "image",
    }
}

/// Progressive scans libjpeg-turbo will decode (a real photo has about 10; a crafted file
/// with thousands would cost CPU out of proportion to its size).
const MAX_PROGRESSIVE_SCANS: u32 = 200;

/// Checks `bytes` against `limits` from the header only: format, encoded size, pixel count,
/// minimum side. Cheap (no pixel decoded): callers use it to refuse early and to estimate
/// memory before queueing.
pub fn probe(bytes: &[u8], limits: &DecodeLimits) -> Result<Header, ImageError> {
    if bytes.is_empty() {
        return Err(ImageError::Empty);
    }
    if bytes.len() > limits.max_bytes {
        return Err(ImageError::TooLarge { size: bytes.len(), limit: limits.max_bytes });
    }
    let format = image::guess_format(bytes).map_err(|_| ImageError::UnknownFormat)?;
    if !matches!(format, ImageFormat::Jpeg | ImageFormat::Png | ImageFormat::WebP | ImageFormat::Gif | ImageFormat::Bmp)
    {
        return Err(ImageError::UnknownFormat);
    }
    let name = format_name(format);
    // JPEG decoders fill a truncated file's missing rows with grey and carry on; a photo
    // cut short in transit should be reported, not matched half-grey.
    if format == ImageFormat::Jpeg && !has_jpeg_end(bytes) {
        return Err(ImageError::Corrupt {
            format: name,
            detail: "the file is truncated (no end-of-image marker)".into(),
        });
    }
    let corrupt = |detail: String| ImageError::Corrupt { format: name, detail };
    let mut header = Header {
        format,
        width: 0,
        height: 0,
        progressive: false,
        jpeg_samples_x2: 6,
        bytes_per_pixel: 3,
        scaled_decode: false,
    };
    if format == ImageFormat::Jpeg {
        let mut tj = turbojpeg::Decompressor::new().map_err(|e| corrupt(e.to_string()))?;
        let h = tj.read_header(bytes).map_err(|e| corrupt(e.to_string()))?;
        header.width = u32::try_from(h.width).unwrap_or(u32::MAX);
        header.height = u32::try_from(h.height).unwrap_or(u32::MAX);
        header.progressive = h.is_progressive;
        header.scaled_decode = !matches!(h.colorspace, turbojpeg::Colorspace::CMYK | turbojpeg::Colorspace::YCCK);
        header.jpeg_samples_x2 = match h.subsamp {
            turbojpeg::Subsamp::Gray => 2,
            turbojpeg::Subsamp::None => 6,
            turbojpeg::Subsamp::Sub2x1 | turbojpeg::Subsamp::Sub1x2 => 4,
            _ => 3, // 4:2:0 and the rarer 4:1:1 / 4:4:1 (3 or fewer)
        };
    } else {
        // Pixel limit from the header alone, before any decoder reads ahead (PNG decoders
        // may scan for image data first and would report a header-only bomb as "corrupt").
        let size = imagesize::blob_size(bytes).map_err(|e| corrupt(e.to_string()))?;
        header.width = u32::try_from(size.width).unwrap_or(u32::MAX);
        header.height = u32::try_from(size.height).unwrap_or(u32::MAX);
    }
    check_pixels(u64::from(header.width), u64::from(header.height), limits)?;
    if header.width < limits.min_side || header.height < limits.min_side {
        return Err(ImageError::TooSmall { width: header.width, height: header.height });
    }
    if !header.scaled_decode {
        // Safe to open the decoder now that the pixel count is known to be within limits.
        let mut reader = ImageReader::new(Cursor::new(bytes));
        reader.set_format(format);
        let decoder = reader.into_decoder().map_err(|e| corrupt(e.to_string()))?;
        header.bytes_per_pixel = u32::from(decoder.color_type().bytes_per_pixel());
    }
    Ok(header)
}

/// Decodes `bytes` into an upright RGB8 working image (GIF: first frame); see the module's
/// comment for what "working" means.
pub fn decode(bytes: &[u8], limits: &DecodeLimits) -> Result<Decoded, ImageError> {
    let header = probe(bytes, limits)?;
    let name = format_name(header.format);
    let corrupt = |e: &dyn std::fmt::Display| ImageError::Corrupt { format: name, detail: e.to_string() };

    let mut reader = ImageReader::new(Cursor::new(bytes));
    reader.set_format(header.format);
    let mut lim = Limits::default();
    // A decoder may allocate well beyond width*height*3 (16-bit, alpha); allow 8 bytes/pixel.
    lim.max_alloc = Some(limits.max_pixels.saturating_mul(8));
    reader.limits(lim);
    let mut decoder = reader.into_decoder().map_err(|e| corrupt(&e))?;
    // A broken EXIF block is not worth refusing the photo for: treat it as upright.
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let (stored_w, stored_h) = decoder.dimensions();
    if (stored_w, stored_h) != (header.width, header.height) {
        return Err(corrupt(&format_args!(
            "the header says {}x{} in one place and {stored_w}x{stored_h} in another",
            header.width, header.height
        )));
    }

    let working = if header.scaled_decode {
        drop(decoder);
        decode_jpeg_scaled(bytes, &header, limits.max_side).map_err(|e| corrupt(&e))?
    } else {
        let full = DynamicImage::from_decoder(decoder).map_err(|e| corrupt(&e))?;
        let rgb = match full {
            DynamicImage::ImageRgb8(rgb) => rgb,
            other => other.to_rgb8(),
        };
        fit_within(rgb, limits.max_side).map_err(|e| corrupt(&e))?
    };
    let mut image = DynamicImage::ImageRgb8(working);
    image.apply_orientation(orientation);
    let image = image.into_rgb8();
    let (width, height) = match orientation {
        Orientation::Rotate90 | Orientation::Rotate270 | Orientation::Rotate90FlipH | Orientation::Rotate270FlipH => {
            (header.height, header.width)
        }
        _ => (header.width, header.height),
    };
    Ok(Decoded { image, width, height })
}

/// The largest n/8 (n = 1..=8) that brings the longest side within `max_side`, in lowest
/// terms (libjpeg-turbo accepts only its own list of factors, which is written that way).
fn jpeg_scale(width: u32, height: u32, max_side: u32) -> turbojpeg::ScalingFactor {
    let long = u64::from(width.max(height));
    let num = (1..=8usize).rev().find(|&n| (long * n as u64).div_ceil(8) <= u64::from(max_side)).unwrap_or(1);
    let gcd = [8, 4, 2, 1].into_iter().find(|g| num % g == 0).unwrap_or(1);
    turbojpeg::ScalingFactor::new(num / gcd, 8 / gcd)
}

fn decode_jpeg_scaled(bytes: &[u8], header: &Header, max_side: u32) -> Result<RgbImage, String> {
    let mut tj = turbojpeg::Decompressor::new().map_err(|e| e.to_string())?;
    tj.set_scan_limit(MAX_PROGRESSIVE_SCANS).map_err(|e| e.to_string())?;
    let scale = jpeg_scale(header.width, header.height, max_side);
    tj.set_scaling_factor(scale).map_err(|e| e.to_string())?;
    let out = tj.read_header(bytes).map_err(|e| e.to_string())?.scaled(scale);
    let (w, h) = (out.width, out.height);
    let mut pixels = vec![0u8; w * h * 3];
    let image = turbojpeg::Image {
        pixels: pixels.as_mut_slice(),
        width: w,
        pitch: w * 3,
        height: h,
        format: turbojpeg::PixelFormat::RGB,
    };
    tj.decompress(bytes, image).map_err(|e| e.to_string())?;
    let (w, h) = (u32::try_from(w).map_err(|e| e.to_string())?, u32::try_from(h).map_err(|e| e.to_string())?);
    let image = RgbImage::from_raw(w, h, pixels).ok_or("the decoded buffer has the wrong size")?;
    // n/8 scaling can leave the long side just above max_side only when max_side < 8x the
    // image's; finish with the resizer then.
    fit_within(image, max_side).map_err(|e| e.to_string())
}

/// `image` scaled down (area-averaging) so its longest side is at most `max_side`.
fn fit_within(image: RgbImage, max_side: u32) -> Result<RgbImage, fir::ResizeError> {
    let (w, h) = image.dimensions();
    let long = w.max(h);
    if long <= max_side.max(1) {
        return Ok(image);
    }
    let s = f64::from(max_side) / f64::from(long);
    let (sw, sh) = (((f64::from(w) * s).round() as u32).max(1), ((f64::from(h) * s).round() as u32).max(1));
    resize(&image, sw, sh)
}

/// The engine's one resize path: SIMD convolution (bilinear), used for every scaled copy.
pub fn resize(image: &RgbImage, width: u32, height: u32) -> Result<RgbImage, fir::ResizeError> {
    let mut out = RgbImage::new(width, height);
    let opts = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(fir::FilterType::Bilinear));
    Resizer::new().resize(image, &mut out, &opts)?;
    Ok(out)
}

fn check_pixels(width: u64, height: u64, limits: &DecodeLimits) -> Result<(), ImageError> {
    let pixels = width.saturating_mul(height);
    if pixels > limits.max_pixels {
        return Err(ImageError::TooManyPixels {
            width: u32::try_from(width).unwrap_or(u32::MAX),
            height: u32::try_from(height).unwrap_or(u32::MAX),
            megapixels: pixels as f64 / 1e6,
            limit_mp: limits.max_pixels as f64 / 1e6,
        });
    }
    Ok(())
}

/// True when the JPEG end-of-image marker is in the file's tail (some cameras append a
/// little data after it, so it need not be the very last two bytes).
fn has_jpeg_end(bytes: &[u8]) -> bool {
    let tail = &bytes[bytes.len().saturating_sub(64 * 1024)..];
    tail.windows(2).any(|w| w == [0xFF, 0xD9])
}

/// Reads the pixel size from the header only (for reports and quick checks).
pub fn dimensions(bytes: &[u8]) -> Option<(u32, u32)> {
    ImageReader::new(Cursor::new(bytes)).with_guessed_format().ok()?.into_dimensions().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jpeg_scale_is_the_largest_eighth_that_fits() {
        let n = |w, h, m| {
            let s = jpeg_scale(w, h, m);
            (s.num(), s.denom())
        };
        assert_eq!(n(1280, 960, 2048), (1, 1));
        assert_eq!(n(2048, 1000, 2048), (1, 1));
        assert_eq!(n(2049, 1000, 2048), (7, 8));
        assert_eq!(n(3000, 4000, 2048), (1, 2));
        assert_eq!(n(4896, 3264, 2048), (3, 8)); // 16 MP: 1836 px
        assert_eq!(n(7744, 5164, 2048), (1, 4)); // 40 MP: 1936 px
        assert_eq!(n(30000, 500, 2048), (1, 8)); // still too long: the resizer finishes
    }
}
