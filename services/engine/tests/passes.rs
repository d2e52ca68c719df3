//! The detection passes on real photos with the real models: the quick pass answers selfies
//! as the first pass would, and the fallback budget stops the retry and CNN passes once
//! spent, without touching photos whose face the cheaper passes find.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed expectation is the report

mod common;

use common::{models, photos_of, read};
use lookalike_engine::detect::DetectReport;
use lookalike_engine::face::distance;
use lookalike_engine::{AnalyzeOptions, DecodeLimits, DetectConfig, DetectPass, FaceAnalyzer, FallbackBudget};
use std::sync::Arc;
use std::time::Duration;

fn analyzer_with(detect: DetectConfig) -> FaceAnalyzer {
    FaceAnalyzer::new(models().worker_set(), DecodeLimits::default(), detect)
}

/// Every Telegram-sized photo of tg1280 (1280 px, one person each): the quick pass finds
/// the face in most, on the JPEG decoded at half scale, and the embedding is the one the
/// full-size 640-px pass gives, within what two decoders differ by (measured without the
/// reduced decode: median 0.04, max 0.086 over tg1280 and hires; with it: median 0.052, max 0.090 on tg1280).
#[test]
fn the_quick_pass_finds_selfies_and_embeds_them_as_the_first_pass_does() {
    let mut quick = analyzer_with(DetectConfig::default());
    let mut first = analyzer_with(DetectConfig { quick_side: 0, ..Default::default() });
    let opts = AnalyzeOptions::default();
    let (mut photos, mut by_quick, mut reduced, mut gaps) = (0, 0, 0, Vec::new());
    for person in photos_of("tg1280") {
        for photo in photos_of(&format!("tg1280/{}", person.file_name().and_then(|n| n.to_str()).unwrap_or(""))) {
            let bytes = std::fs::read(&photo).expect("read");
            let q = quick.analyze_bytes(&bytes, &opts).expect("analyze");
            let f = first.analyze_bytes(&bytes, &opts).expect("analyze");
            assert_eq!(f.detection.found_by, Some(DetectPass::First), "{}", photo.display());
            assert_eq!(f.working_size, (f.width, f.height), "{}: no quick pass, full size", photo.display());
            // Larger than the first pass: decoded at a reduced scale when the quick pass finds it.
            if q.detection.found_by == Some(DetectPass::Quick) && q.width.max(q.height) > 640 {
                let long = q.working_size.0.max(q.working_size.1);
                assert!(long <= 640, "{}: {:?} of {}x{}", photo.display(), q.working_size, q.width, q.height);
                reduced += 1;
            } else {
                assert_eq!(q.working_size, (q.width, q.height), "{}", photo.display());
            }
            let (qf, ff) = (q.faces.first().expect("a face"), f.faces.first().expect("a face"));
            // Positions are in the photo's own pixels whatever copy they were found on.
            let centre = |f: &lookalike_engine::Face| {
                (f64::from(f.bbox.left + f.bbox.right) / 2.0, f64::from(f.bbox.top + f.bbox.bottom) / 2.0)
            };
            let ((qx, qy), (fx, fy)) = (centre(qf), centre(ff));
            let tolerance = 0.05 * f64::from(q.width.max(q.height));
            assert!((qx - fx).abs() < tolerance && (qy - fy).abs() < tolerance, "{}: boxes apart", photo.display());
            let eye = (qf.landmarks[0][0] - ff.landmarks[0][0]).abs();
            assert!(f64::from(eye) < tolerance, "{}: landmarks apart", photo.display());
            let d = distance(&qf.embedding, &ff.embedding);
            assert!(d < 0.12, "{}: quick vs first pass embeddings {d:.3} apart", photo.display());
            photos += 1;
            by_quick += usize::from(q.detection.found_by == Some(DetectPass::Quick));
            gaps.push(d);
        }
    }
    gaps.sort_by(f32::total_cmp);
    eprintln!(
        "tg1280: {by_quick}/{photos} found by the quick pass ({reduced} on a reduced-scale decode); \
         embedding differences: median {:.3}, largest {:.3}",
        gaps.get(gaps.len() / 2).copied().unwrap_or_default(),
        gaps.last().copied().unwrap_or_default()
    );
    assert!(photos >= 40, "{photos} photos");
    assert!(by_quick * 4 >= photos * 3, "the quick pass found only {by_quick} of {photos} selfies");
    assert!(reduced * 2 >= photos, "only {reduced} of {photos} selfies were analysed on a reduced-scale decode");
}

/// A photo whose faces are small for the quick pass goes on to the first pass, and the
/// all-faces mode never takes the quick pass.
#[test]
fn small_faces_fall_through_to_the_first_pass() {
    let mut a = analyzer_with(DetectConfig::default());
    let bytes = read("scenes/group-t1.jpg");
    let main = a.analyze_bytes(&bytes, &AnalyzeOptions::default()).expect("analyze");
    let all = a.analyze_bytes(&bytes, &AnalyzeOptions { all_faces: true, ..Default::default() }).expect("analyze");
    assert_eq!(all.detection.found_by, Some(DetectPass::First));
    assert_eq!(main.faces.len(), 1);
    eprintln!("group photo, main face found by {:?}", main.detection.found_by);
}

/// With a budget that never refills, the first photo without a face runs the retry, which
/// spends it (a pass is never cut short), and not the CNN; the next one is answered without
/// either (and says so), a selfie is still found, and a face only the CNN finds is found
/// while the budget lasts.
#[test]
fn a_spent_fallback_budget_skips_the_retry_and_cnn_passes() {
    let budget = Arc::new(FallbackBudget::new(0.0, 1, Duration::from_millis(1)));
    let mut a = analyzer_with(DetectConfig::default());
    a.set_fallback_budget(Some(budget.clone()));
    let opts = AnalyzeOptions::default();
    let rocket = read("scenes/rocket.jpg");

    let once = a.analyze_bytes(&rocket, &opts).expect("analyze");
    assert!(once.faces.is_empty());
    assert_eq!(once.detection, DetectReport { found_by: None, skipped: Some(DetectPass::Cnn) });
    let again = a.analyze_bytes(&rocket, &opts).expect("analyze");
    assert!(again.faces.is_empty());
    assert_eq!(again.detection.skipped, Some(DetectPass::Retry));
    let selfie = a.analyze_bytes(&read("tg1280/Barack_Obama/1.jpg"), &opts).expect("analyze");
    assert_eq!(selfie.faces.len(), 1, "the cheap passes are not budgeted");

    let retry = budget.counts(DetectPass::Retry);
    let cnn = budget.counts(DetectPass::Cnn);
    assert_eq!((retry.ran, retry.skipped, cnn.ran, cnn.skipped), (1, 1, 0, 1));
    assert!(retry.cpu > Duration::from_millis(1), "the retry's CPU time is charged: {:?}", retry.cpu);

    // celeb5's Elton John 15 has a face only the CNN finds (docs/BENCHMARKS.md 8b).
    let elton = read("named/celeb5/elton_john/15.jpg");
    let mut fresh = analyzer_with(DetectConfig::default());
    let ample = Arc::new(FallbackBudget::new(0.0, 1, Duration::from_secs(10)));
    fresh.set_fallback_budget(Some(ample.clone()));
    let found = fresh.analyze_bytes(&elton, &opts).expect("analyze");
    assert_eq!((found.faces.len(), found.detection.found_by), (1, Some(DetectPass::Cnn)));
    let cnn = ample.counts(DetectPass::Cnn);
    assert!(cnn.ran == 1 && cnn.cpu > Duration::from_millis(20), "the CNN's CPU time is charged: {cnn:?}");
    let missed = a.analyze_bytes(&elton, &opts).expect("analyze");
    assert!(missed.faces.is_empty() && missed.detection.skipped == Some(DetectPass::Retry));
}
