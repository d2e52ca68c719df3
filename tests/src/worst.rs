//! The photos that cost the matcher most, made from real photos in `../shared/faces`:
//! large baseline and progressive JPEGs with and without a face, an EXIF-rotated one, a
//! large PNG, and a group photo for all-faces mode. Shared by the engine's memory-estimate
//! test, the matcher's flood test and the `flood` benchmark.

use anyhow::{Context, Result};
use image::{imageops, ImageFormat, RgbImage};

/// One input and what analysing it must find.
#[derive(Debug, Clone)]
pub struct WorstInput {
    pub name: String,
    pub bytes: Vec<u8>,
    /// All-faces mode (with the mirror and chips): the group photo.
    pub all_faces: bool,
    /// Faces it holds at least (0 for the photos without a face).
    pub min_faces: usize,
}

/// The photo at `rel` scaled to about `megapixels` (just under it).
fn upscaled(rel: &str, megapixels: f64) -> Result<RgbImage> {
    let path = crate::fixtures::face(rel);
    let img = image::open(&path).with_context(|| format!("reading {}", path.display()))?.to_rgb8();
    let s = (megapixels * 0.995e6 / (f64::from(img.width()) * f64::from(img.height()))).sqrt();
    let (w, h) = ((f64::from(img.width()) * s) as u32, (f64::from(img.height()) * s) as u32);
    Ok(imageops::resize(&img, w, h, imageops::FilterType::Triangle))
}

/// JPEG quality 88, baseline or progressive.
pub fn jpeg(img: &RgbImage, progressive: bool) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut enc = jpeg_encoder::Encoder::new(&mut out, 88);
    enc.set_progressive(progressive);
    let (w, h) = (u16::try_from(img.width())?, u16::try_from(img.height())?);
    enc.encode(img.as_raw(), w, h, jpeg_encoder::ColorType::Rgb)?;
    Ok(out)
}

fn png(img: &RgbImage) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), ImageFormat::Png)?;
    Ok(out)
}

/// The same JPEG marked "rotate 90° clockwise to display" (EXIF orientation 6): an APP1
/// segment holding a one-entry big-endian TIFF IFD, right after the SOI marker.
pub fn exif_rotated(jpeg: &[u8]) -> Vec<u8> {
    let tiff: [u8; 26] = [
        b'M', b'M', 0, 42, 0, 0, 0, 8, // header, first IFD at offset 8
        0, 1, // one entry
        0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 6, 0, 0, // Orientation, SHORT, count 1, value 6
        0, 0, 0, 0, // no next IFD
    ];
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend_from_slice(&tiff);
    let len = (app1.len() + 2) as u16;
    let mut out = jpeg[..2.min(jpeg.len())].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&app1);
    out.extend_from_slice(jpeg.get(2..).unwrap_or_default());
    out
}

/// A typical Telegram photo with a face (1280 px).
pub const SELFIE: &str = "tg1280/Barack_Obama/1.jpg";

/// The inputs: a selfie, then each kind at 16 MP and at 40 MP (up to `max_megapixels`).
pub fn worst_inputs(max_megapixels: u32) -> Result<Vec<WorstInput>> {
    let input = |name: String, bytes, all_faces, min_faces| WorstInput { name, bytes, all_faces, min_faces };
    let mut v = vec![input("face, 1280 px".into(), std::fs::read(crate::fixtures::face(SELFIE))?, false, 1)];
    for mp in [16u32, 40] {
        if mp > max_megapixels {
            continue;
        }
        let face = upscaled("hires/id01/1.jpg", f64::from(mp))?;
        let none = upscaled("scenes/rocket.jpg", f64::from(mp))?;
        let group = upscaled("scenes/group-t1.jpg", f64::from(mp))?;
        v.push(input(format!("face, {mp} MP"), jpeg(&face, false)?, false, 1));
        v.push(input(format!("face, {mp} MP, progressive, EXIF-rotated"), exif_rotated(&jpeg(&face, true)?), false, 1));
        v.push(input(format!("no face, {mp} MP"), jpeg(&none, false)?, false, 0));
        v.push(input(format!("no face, {mp} MP, progressive"), jpeg(&none, true)?, false, 0));
        v.push(input(format!("no face, {mp} MP, PNG"), png(&none)?, false, 0));
        v.push(input(format!("all faces, {mp} MP group"), jpeg(&group, false)?, true, 3));
    }
    Ok(v)
}

/// Photos with and without a face at the common sizes (a 250-px thumbnail, a 1280-px
/// Telegram photo), for comparing what a photo without a face costs against one with a face
/// of the same size. Baseline JPEGs of the same quality; the sizes in pixels match.
pub fn size_pairs() -> Result<Vec<WorstInput>> {
    let input = |name: &str, bytes, min_faces| WorstInput { name: name.to_owned(), bytes, all_faces: false, min_faces };
    let small = image::open(crate::fixtures::face("lfw-dev/Aaron_Peirsol/0001.jpg"))?.to_rgb8();
    let selfie = image::open(crate::fixtures::face(SELFIE))?.to_rgb8();
    let mp = |img: &RgbImage| f64::from(img.width()) * f64::from(img.height()) / 0.995e6;
    Ok(vec![
        input("face, 250 px", jpeg(&small, false)?, 1),
        input("no face, 250 px", jpeg(&upscaled("scenes/rocket.jpg", mp(&small))?, false)?, 0),
        input("face, 1280 px (re-encoded)", jpeg(&selfie, false)?, 1),
        input("no face, 1280 px", jpeg(&upscaled("scenes/rocket.jpg", mp(&selfie))?, false)?, 0),
    ])
}

/// A photo from `../shared/faces` re-encoded as a 4-component (CMYK) JPEG, as print
/// workflows save them: libjpeg-turbo cannot scale these to RGB, so they take the full-size
/// path.
pub fn cmyk_jpeg(rel: &str) -> Result<Vec<u8>> {
    let path = crate::fixtures::face(rel);
    let img = image::open(&path).with_context(|| format!("reading {}", path.display()))?.to_rgb8();
    let cmyk: Vec<u8> = img.pixels().flat_map(|p| [255 - p[0], 255 - p[1], 255 - p[2], 0]).collect();
    let mut out = Vec::new();
    let (w, h) = (u16::try_from(img.width())?, u16::try_from(img.height())?);
    jpeg_encoder::Encoder::new(&mut out, 90).encode(&cmyk, w, h, jpeg_encoder::ColorType::Cmyk)?;
    Ok(out)
}
