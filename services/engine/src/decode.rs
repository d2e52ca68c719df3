//! Photo decoding with limits checked from the header before any pixel is decoded,
//! EXIF orientation applied, and every pixel format converted to RGB8.

use crate::error::ImageError;
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
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self { max_bytes: 20 * 1024 * 1024, max_pixels: 40_000_000, min_side: 16 }
    }
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

/// Decodes `bytes` into an upright RGB8 image (GIF: first frame).
pub fn decode(bytes: &[u8], limits: &DecodeLimits) -> Result<RgbImage, ImageError> {
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
    let corrupt = |e: image::ImageError| ImageError::Corrupt { format: name, detail: e.to_string() };

    // Pixel limit from the header alone, before any decoder reads ahead (PNG decoders may
    // scan for image data first and would report a header-only bomb as "corrupt").
    if let Ok(size) = imagesize::blob_size(bytes) {
        check_pixels(size.width as u64, size.height as u64, limits)?;
    }
    let mut reader = ImageReader::new(Cursor::new(bytes));
    reader.set_format(format);
    let mut lim = Limits::default();
    // A decoder may allocate well beyond width*height*3 (16-bit, alpha); allow 8 bytes/pixel.
    lim.max_alloc = Some(limits.max_pixels.saturating_mul(8));
    reader.limits(lim);
    let mut decoder = reader.into_decoder().map_err(corrupt)?;
    let (width, height) = decoder.dimensions();
    check_pixels(u64::from(width), u64::from(height), limits)?;
    if width < limits.min_side || height < limits.min_side {
        return Err(ImageError::TooSmall { width, height });
    }
    // A broken EXIF block is not worth refusing the photo for: treat it as upright.
    let orientation = decoder.orientation().unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(decoder).map_err(corrupt)?;
    img.apply_orientation(orientation);
    Ok(match img {
        DynamicImage::ImageRgb8(rgb) => rgb,
        other => other.to_rgb8(),
    })
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
