//! What analysing one photo costs in memory, estimated from its header before a pixel is
//! decoded, so that a server can reserve it first (and wait or refuse when it cannot).
//!
//! The estimate follows the pipeline's buffers (see `decode`, `detect`, `analyze`):
//!
//! | stage | held at its peak |
//! |---|---|
//! | decode, JPEG | the working image, its upright copy, the coefficients of a progressive JPEG (2 bytes per sample), libjpeg's row buffers |
//! | decode, other formats | the full-size decode (its own bytes per pixel), its RGB8 copy, the working image |
//! | detection | the working image and its dlib copy, plus the largest pass: the scaled copy and HOG's feature pyramid (first pass), the grey-bordered copy (retry), or the CNN's activations |
//! | encoding | the working image and its dlib copy, the chips and the ResNet's activations for one batch |
//!
//! The estimate assumes the allocator settings of [`tune_allocator`] (large buffers in their
//! own mappings, returned when freed), which every binary sets at start-up.
//!
//! The per-pixel and per-chip constants were measured (peak resident memory over a run of
//! each stage's worst inputs, `tests/memory.rs`) and rounded up; that test fails when a
//! change makes a stage need more than this says.

use crate::analyze::AnalyzeOptions;
use crate::decode::{probe, DecodeLimits, Header};
use crate::detect::DetectConfig;
use crate::error::ImageError;

/// HOG: the scaled image's pyramid (5/6 per level, ~3.3x the base area) of RGB copies and
/// 31-plane float features per 8x8 cell, per pixel of the pass's input (measured ~30).
const HOG_BYTES_PER_PIXEL: u64 = 40;
/// dlib's CNN (MMOD) detector, per pixel of its bordered input: the tiled input pyramid
/// and the activations of its layers. Measured 830-975 (100-120 MB for its ~120k-pixel
/// input): the largest single need of a photo, which only a photo without a HOG face
/// reaches, but every photo reserves it since none can be told apart before detection.
const CNN_BYTES_PER_PIXEL: u64 = 1100;
/// The ResNet's activations per 150x150 chip of a batch (dlib runs batches of 16).
const ENCODER_BYTES_PER_CHIP: u64 = 4 << 20;
const ENCODER_BATCH: u64 = 16;
/// Allocator slack and the rest of a job that does not grow with the photo.
const FIXED_BYTES: u64 = 8 << 20;

/// Buffers at least this large get their own mapping from glibc's malloc, returned to the
/// system when freed. 4 MiB: a 1280-px photo's buffers (3.7 MB) are reused from the heap
/// (a fresh mapping costs page faults each time: 25% more CPU per photo at 256 KiB),
/// larger ones go back at once.
const MMAP_THRESHOLD: i32 = 4 << 20;

/// Makes glibc's allocator give a photo's memory back when the photo is done. By default
/// glibc raises its mmap threshold to the size of the largest buffer freed (up to 32 MB),
/// after which image-sized buffers come from the heap arenas and stay resident after a
/// spike; a fixed threshold keeps them in their own mappings. docs/BENCHMARKS.md §8 has
/// the measurements behind the value.
pub fn tune_allocator() {
    // SAFETY: mallopt only changes allocator parameters; it is called at start-up and is
    // thread-safe in glibc in any case.
    let ok = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) };
    if ok != 1 {
        tracing::warn!("glibc refused the mmap threshold; memory after a spike may stay resident");
    }
}

/// Returns the free memory at the top of glibc's heaps and in their free chunks to the
/// system (after a large photo).
pub fn trim() {
    // SAFETY: malloc_trim walks glibc's own arenas under their locks; no pointer is passed.
    unsafe { libc::malloc_trim(0) };
}

/// CPU time this thread has used (`CLOCK_THREAD_CPUTIME_ID`): what a pass costs whatever the
/// machine's other load. `None` if the clock cannot be read.
pub fn thread_cpu_time() -> Option<std::time::Duration> {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec into the valid, exclusively borrowed `t`.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    let secs = u64::try_from(t.tv_sec).ok()?;
    let nanos = u32::try_from(t.tv_nsec).ok()?;
    (rc == 0).then(|| std::time::Duration::new(secs, nanos))
}

/// Peak bytes that analysing a photo with this header will hold on top of the process's
/// resting memory.
pub fn estimate_peak_bytes(h: &Header, limits: &DecodeLimits, detect: &DetectConfig, opts: &AnalyzeOptions) -> u64 {
    let (w, hgt) = (u64::from(h.width), u64::from(h.height));
    let pixels = w * hgt;
    let (ww, wh) = fit(w, hgt, u64::from(limits.max_side));
    let working = ww * wh * 3;

    let decode = if h.scaled_decode {
        let coefficients = if h.progressive { pixels * u64::from(h.jpeg_samples_x2) } else { 0 };
        2 * working + coefficients + w * 3 * 16 * 4
    } else {
        let full = pixels * u64::from(h.bytes_per_pixel.max(1));
        (full + pixels * 3).max(pixels * 3 + working)
    };

    let long = ww.max(wh).max(1) as f64;
    let first_side = if opts.all_faces { detect.all_faces_max_side } else { detect.max_side };
    let first_scale = (f64::from(first_side) / long).min(1.0);
    let first = area(ww, wh, first_scale, 0.0) * (3 + HOG_BYTES_PER_PIXEL);
    let retry_scale = crate::detect::retry_scale(ww as u32, wh as u32, detect).max(first_scale);
    let retry_area = area(ww, wh, retry_scale, f64::from(detect.retry_border));
    let retry = area(ww, wh, retry_scale, 0.0) * 3 + retry_area * (3 + 3 + HOG_BYTES_PER_PIXEL);
    let cnn = if detect.cnn_max_side > 0 {
        let cnn_scale = (f64::from(detect.cnn_max_side) / long).min(2.0);
        let a = area(ww, wh, cnn_scale, f64::from(detect.retry_border));
        a * (3 + 3 + CNN_BYTES_PER_PIXEL)
    } else {
        0
    };
    let detection = first.max(retry).max(cnn);

    let faces = if opts.all_faces { opts.max_faces.max(1) as u64 } else { 1 };
    let chips = faces * if opts.mirror && opts.jitters <= 1 { 2 } else { 1 };
    let batch = if opts.jitters > 1 { u64::from(opts.jitters) } else { chips }.min(ENCODER_BATCH);
    let chip_side = u64::from(opts.chip_size.unwrap_or(0));
    let encode = chips * (150 * 150 * 3 + chip_side * chip_side * 3) + batch * ENCODER_BYTES_PER_CHIP;

    let held = 2 * working;
    decode.max(held + detection).max(held + encode) + FIXED_BYTES
}

/// Checks a photo's header against `limits` (the same refusals as decoding would give) and
/// estimates its peak memory: what a server reserves before queueing it.
pub fn estimate_photo(
    bytes: &[u8],
    limits: &DecodeLimits,
    detect: &DetectConfig,
    opts: &AnalyzeOptions,
) -> Result<u64, ImageError> {
    Ok(estimate_peak_bytes(&probe(bytes, limits)?, limits, detect, opts))
}

/// Working size of a `w` x `h` photo whose longest side is brought within `max_side`.
fn fit(w: u64, h: u64, max_side: u64) -> (u64, u64) {
    let long = w.max(h);
    if long <= max_side || long == 0 {
        return (w, h);
    }
    ((w * max_side).div_ceil(long).max(1), (h * max_side).div_ceil(long).max(1))
}

/// Pixels of a copy scaled by `scale` with a border of `border` times its longest side on
/// each side.
fn area(w: u64, h: u64, scale: f64, border: f64) -> u64 {
    let (sw, sh) = ((w as f64 * scale).ceil(), (h as f64 * scale).ceil());
    let b = (border * sw.max(sh)).ceil();
    ((sw + 2.0 * b) * (sh + 2.0 * b)) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::ImageFormat;

    fn header(format: ImageFormat, width: u32, height: u32, progressive: bool) -> Header {
        Header {
            format,
            width,
            height,
            progressive,
            jpeg_samples_x2: 3,
            bytes_per_pixel: 4,
            scaled_decode: format == ImageFormat::Jpeg,
        }
    }

    #[test]
    fn a_large_jpeg_costs_about_its_working_size_not_its_pixels() {
        let (l, d, o) = (DecodeLimits::default(), DetectConfig::default(), AnalyzeOptions::default());
        let mb = |h: Header| estimate_peak_bytes(&h, &l, &d, &o) as f64 / (1 << 20) as f64;
        let small = mb(header(ImageFormat::Jpeg, 1280, 960, false));
        let big = mb(header(ImageFormat::Jpeg, 7744, 5164, false));
        assert!(big < small * 1.2, "baseline 40 MP JPEG {big:.0} MB vs 1280 px {small:.0} MB");
        // A progressive JPEG holds its coefficients; a PNG its full-size decode.
        let progressive = mb(header(ImageFormat::Jpeg, 7744, 5164, true));
        assert!(progressive >= big, "{progressive:.0} vs {big:.0}");
        let png = mb(header(ImageFormat::Png, 7744, 5164, false));
        assert!(png > 200.0 && png > big, "{png:.0}");
        // Without the CNN pass a photo needs far less.
        let no_cnn = DetectConfig { cnn_max_side: 0, ..d };
        let hog_only = estimate_peak_bytes(&header(ImageFormat::Jpeg, 1280, 960, false), &l, &no_cnn, &o) >> 20;
        assert!((hog_only as f64) < small / 2.0, "{hog_only} vs {small:.0}");
    }

    #[test]
    fn every_face_and_the_mirror_cost_more_than_one_face() {
        let (l, d) = (DecodeLimits::default(), DetectConfig { cnn_max_side: 0, ..Default::default() });
        let h = header(ImageFormat::Jpeg, 1280, 960, false);
        let one = estimate_peak_bytes(&h, &l, &d, &AnalyzeOptions::default());
        let all =
            estimate_peak_bytes(&h, &l, &d, &AnalyzeOptions { all_faces: true, max_faces: 10, ..Default::default() });
        let mirror = estimate_peak_bytes(&h, &l, &d, &AnalyzeOptions { mirror: true, ..Default::default() });
        assert!(all > one && mirror >= one, "{one} {all} {mirror}");
    }

    #[test]
    fn fit_keeps_the_aspect_within_the_side() {
        assert_eq!(fit(4000, 3000, 2048), (2048, 1536));
        assert_eq!(fit(1000, 500, 2048), (1000, 500));
        assert_eq!(fit(30000, 17, 2048), (2048, 2));
    }
}
