//! The memory estimate (`lookalike_engine::cost`) holds for the worst inputs: for each, the
//! peak resident memory that analysing it adds to the process (VmHWM, reset before each
//! photo) is at most what the estimate says, and a 40-MP JPEG costs about what a 16-MP one
//! does. One test in its own binary, so that no other test allocates meanwhile.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::analyzer;
use lookalike_e2e::worst::worst_inputs;
use lookalike_engine::cost::estimate_photo;
use lookalike_engine::decode::dimensions;
use lookalike_engine::AnalyzeOptions;

fn status_kb(key: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(key)).unwrap();
    line[key.len()..].trim().trim_end_matches("kB").trim().parse().unwrap()
}

/// Peak resident bytes `f` adds to the process: free memory handed back first (so that
/// reusing already-resident free memory does not hide a need), then the high-water mark
/// reset to the current size.
fn peak_added(f: impl FnOnce()) -> u64 {
    // SAFETY: malloc_trim takes no pointer and only walks glibc's own arenas.
    unsafe { libc::malloc_trim(0) };
    std::fs::write("/proc/self/clear_refs", "5").expect("reset VmHWM (Linux >= 4.0)");
    let before = status_kb("VmRSS:");
    f();
    (status_kb("VmHWM:").saturating_sub(before)) * 1024
}

#[test]
fn the_estimate_covers_the_measured_peak_of_the_worst_inputs() {
    lookalike_engine::cost::tune_allocator(); // as every binary does at start-up
    let mut a = analyzer();
    let one = AnalyzeOptions::default();
    let all =
        AnalyzeOptions { all_faces: true, max_faces: 20, mirror: true, chip_size: Some(160), ..Default::default() };
    let inputs = worst_inputs(u32::MAX).expect("inputs from ../shared/faces");
    // Warm up: the models allocate their working buffers on the first photo.
    a.analyze_bytes(&inputs[0].bytes, &one).expect("warm-up");

    let mut report = String::from("| input | pixels | measured MB | estimate MB |\n|---|---|---|---|\n");
    let mut over = Vec::new();
    let mut peak = std::collections::HashMap::new();
    for input in &inputs {
        let opts = if input.all_faces { &all } else { &one };
        let estimate = estimate_photo(&input.bytes, &a.limits, &a.detect, opts).expect("estimate");
        let mut faces = 0;
        let measured = peak_added(|| faces = a.analyze_bytes(&input.bytes, opts).expect(&input.name).faces.len());
        let (w, h) = dimensions(&input.bytes).expect("dimensions");
        let mb = |b: u64| b as f64 / (1 << 20) as f64;
        report += &format!("| {} | {w}x{h} | {:.1} | {:.1} |\n", input.name, mb(measured), mb(estimate));
        assert!(faces >= input.min_faces, "{}: {faces} faces", input.name);
        if measured > estimate {
            over.push(format!("{}: measured {:.1} MB > estimate {:.1} MB", input.name, mb(measured), mb(estimate)));
        }
        peak.insert(input.name.clone(), measured);
    }
    println!("{report}");
    assert!(over.is_empty(), "the estimate is too low:\n{}\n{report}", over.join("\n"));
    // The design's point: a 40-MP JPEG is decoded to the same working size as a 16-MP one,
    // so it costs about the same, not 2.5x.
    assert!(peak["no face, 40 MP"] < peak["no face, 16 MP"] * 3 / 2 + (8 << 20), "{report}");
}
