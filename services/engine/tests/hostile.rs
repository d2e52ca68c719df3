//! Inputs that must produce a typed error, never a panic or an abort.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed expectation is the report

mod common;

use lookalike_engine::decode::{decode, DecodeLimits};
use lookalike_engine::error::{AnalyzeError, ImageError};
use lookalike_engine::AnalyzeOptions;

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

fn png_claiming(width: u32, height: u32) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    out.extend_from_slice(&13u32.to_be_bytes());
    out.extend_from_slice(&ihdr);
    out.extend_from_slice(&crc32(&ihdr).to_be_bytes());
    out.extend_from_slice(&0u32.to_be_bytes());
    out.extend_from_slice(b"IEND");
    out.extend_from_slice(&crc32(b"IEND").to_be_bytes());
    out
}

fn random_bytes(n: usize, mut seed: u64) -> Vec<u8> {
    (0..n)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect()
}

#[test]
fn hostile_inputs_give_typed_errors() {
    let limits = DecodeLimits::default();
    let jpeg = common::read("named/face_recognition/Barack_Obama/1.jpg");
    let mut one_px = Vec::new();
    image::RgbImage::new(1, 1)
        .write_to(&mut std::io::Cursor::new(&mut one_px), image::ImageFormat::Png)
        .expect("encode 1x1");

    assert!(matches!(decode(&[], &limits), Err(ImageError::Empty)));
    assert!(matches!(decode(&jpeg[..jpeg.len() / 2], &limits), Err(ImageError::Corrupt { format: "JPEG", .. })));
    assert!(matches!(decode(&random_bytes(10_000, 42), &limits), Err(ImageError::UnknownFormat)));
    match decode(&png_claiming(100_000, 100_000), &limits) {
        Err(ImageError::TooManyPixels { width: 100_000, height: 100_000, .. }) => {}
        other => panic!("100000x100000 PNG: {other:?}"),
    }
    assert!(matches!(decode(&one_px, &limits), Err(ImageError::TooSmall { width: 1, height: 1 })));
    assert!(matches!(decode(b"hello, I am a text file named photo.jpg\n", &limits), Err(ImageError::UnknownFormat)));
    let small = DecodeLimits { max_bytes: 1000, ..limits };
    assert!(matches!(decode(&jpeg, &small), Err(ImageError::TooLarge { .. })));
    // A JPEG header on garbage.
    let mut fake = vec![0xFF, 0xD8, 0xFF, 0xE0];
    fake.extend(random_bytes(5000, 7));
    assert!(matches!(decode(&fake, &limits), Err(ImageError::Corrupt { .. })));
}

#[test]
fn hostile_inputs_through_the_analyzer_leave_it_working() {
    let mut a = common::analyzer();
    let jpeg = common::read("named/face_recognition/Barack_Obama/1.jpg");
    let bad: Vec<Vec<u8>> = vec![vec![], jpeg[..200].to_vec(), random_bytes(4096, 3), png_claiming(100_000, 100_000)];
    for b in &bad {
        let err = a.analyze_bytes(b, &AnalyzeOptions::default()).expect_err("must fail");
        assert!(matches!(err, AnalyzeError::Image(_)));
        assert!(!err.to_string().is_empty());
    }
    // Truncated but decodable prefixes (lots of them) never panic.
    for cut in (100..jpeg.len()).step_by(jpeg.len() / 25) {
        let _ = a.analyze_bytes(&jpeg[..cut], &AnalyzeOptions::default());
    }
    assert_eq!(a.analyze_bytes(&jpeg, &AnalyzeOptions::default()).expect("good photo").faces.len(), 1);
}

#[test]
fn messages_are_readable() {
    let e = decode(&png_claiming(100_000, 100_000), &DecodeLimits::default()).expect_err("too big");
    assert_eq!(e.to_string(), "the image is 100000x100000 pixels (10000.0 MP), over the limit of 40.0 MP");
}

/// A CMYK JPEG (which libjpeg-turbo cannot scale to RGB) still decodes, at full size, and its
/// estimate counts that full-size decode.
#[test]
fn a_cmyk_jpeg_decodes_on_the_full_size_path() {
    let bytes = lookalike_e2e::worst::cmyk_jpeg("tg1280/Barack_Obama/1.jpg").expect("CMYK JPEG");
    let limits = DecodeLimits::default();
    let header = lookalike_engine::decode::probe(&bytes, &limits).expect("header");
    assert!(!header.scaled_decode);
    let decoded = decode(&bytes, &limits).expect("a CMYK JPEG decodes");
    assert_eq!((decoded.width, decoded.height), (910, 1137));
    assert_eq!(decoded.image.dimensions(), (910, 1137));
}
