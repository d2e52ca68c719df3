//! `matcher match` and `matcher gallery info` on a real gallery and real photos: one JSON line
//! per photo, candidates ranked by score, and the gallery's crowding figures reported.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed expectation is the report

mod common;

use std::process::Command;

fn run(args: &[&str]) -> String {
    let out = Command::new(common::bin())
        .args(args)
        .env("LOOKALIKE_MODELS", common::models_dir())
        .env("OPENBLAS_NUM_THREADS", "1")
        .output()
        .expect("run matcher");
    assert!(out.status.success(), "matcher {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
fn match_prints_ranked_candidates_and_info_reports_crowding() {
    let gallery = common::people_gallery();
    let g = gallery.to_str().expect("path");
    let info: serde_json::Value = serde_json::from_str(run(&["gallery", "info", g]).trim()).expect("info JSON");
    assert_eq!(info["crowding"], true, "{info}");

    let photo = common::faces_dir().join("lfw-dev/Colin_Powell/0003.jpg");
    let line = run(&["match", "--gallery", g, "--top-k", "3", photo.to_str().expect("path")]);
    let v: serde_json::Value = serde_json::from_str(line.trim()).expect("one JSON line");
    let matches = v["faces"][0]["matches"].as_array().expect("matches");
    assert_eq!(matches.len(), 3, "{v}");
    assert_eq!(matches[0]["name"], "Colin Powell", "{v}");
    let scores: Vec<f64> = matches.iter().map(|m| m["score"].as_f64().expect("score")).collect();
    assert!(scores.windows(2).all(|w| w[0] <= w[1]), "ranked by score: {v}");
    for m in matches {
        assert!(m["score"].as_f64() < m["distance"].as_f64(), "the correction is on by default: {m}");
    }
    // --crowding-weight 0: ranked by plain distance, score = distance.
    let plain =
        run(&["match", "--crowding-weight", "0", "--gallery", g, "--top-k", "3", photo.to_str().expect("path")]);
    let v: serde_json::Value = serde_json::from_str(plain.trim()).expect("one JSON line");
    for m in v["faces"][0]["matches"].as_array().expect("matches") {
        assert_eq!(m["score"], m["distance"], "{m}");
    }
}
