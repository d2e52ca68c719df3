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
    let percents: Vec<f64> = matches.iter().map(|m| m["similarity"].as_f64().expect("percent")).collect();
    assert!(percents.windows(2).all(|w| w[0] >= w[1]), "the percentages follow the ranking: {v}");
    // Present and numbers: a missing field must not compare as `None < None` or `null == null`.
    let number = |m: &serde_json::Value, field: &str| -> f64 {
        m[field].as_f64().unwrap_or_else(|| panic!("{field} is a number: {m}"))
    };
    for m in matches {
        assert!(number(m, "score") < number(m, "distance"), "the correction is on by default: {m}");
    }
    // --crowding-weight 0: ranked by plain distance, score = distance.
    let plain =
        run(&["match", "--crowding-weight", "0", "--gallery", g, "--top-k", "3", photo.to_str().expect("path")]);
    let v: serde_json::Value = serde_json::from_str(plain.trim()).expect("one JSON line");
    let plain_matches = v["faces"][0]["matches"].as_array().expect("matches");
    assert_eq!(plain_matches.len(), 3, "{v}");
    for m in plain_matches {
        assert_eq!(number(m, "score"), number(m, "distance"), "{m}");
    }
    let distances: Vec<f64> = plain_matches.iter().map(|m| number(m, "distance")).collect();
    assert!(distances.windows(2).all(|w| w[0] <= w[1]), "nearest first: {v}");
}

fn build(photos: &std::path::Path, out: &std::path::Path, cache: &std::path::Path) -> serde_json::Value {
    let line = run(&[
        "gallery",
        "build",
        "--quiet",
        "--jitters",
        "1",
        "--photos",
        photos.to_str().expect("path"),
        "--out",
        out.to_str().expect("path"),
        "--cache",
        cache.to_str().expect("path"),
        "--report",
        out.with_extension("report.json").to_str().expect("path"),
    ]);
    serde_json::from_str(line.trim()).expect("build summary JSON")
}

/// A rebuild with the embedding cache analyses only the new photos and gives the same
/// embeddings for the others; `gallery diff` names who was added; a mislabelled photo among
/// a person's photos is rejected as disagreeing with the others.
#[test]
fn cached_rebuild_analyses_only_new_photos_and_diff_names_the_change() {
    let tmp = tempfile::tempdir().expect("tmp");
    let photos = tmp.path().join("photos");
    let fr = common::faces_dir().join("named/face_recognition");
    let copy = |person: &str, src: &str, file: &str| {
        std::fs::create_dir_all(photos.join(person)).expect("mkdir");
        std::fs::copy(fr.join(src), photos.join(person).join(file)).expect("copy");
    };
    for i in 1..=4 {
        copy("Barack_Obama", &format!("Barack_Obama/{i}.jpg"), &format!("{i}.jpg"));
    }
    // Mislabelled: Joe Biden's photo filed under Barack Obama.
    copy("Barack_Obama", "Joe_Biden/1.jpg", "9.jpg");
    copy("Kit_Harington", "Kit_Harington/1.jpg", "1.jpg");
    copy("Kit_Harington", "Kit_Harington/2.jpg", "2.jpg");
    copy("Rose_Leslie", "Rose_Leslie/1.jpg", "1.jpg");
    let cache = tmp.path().join("cache");
    let (old, new) = (tmp.path().join("old.lkg"), tmp.path().join("new.lkg"));

    let first = build(&photos, &old, &cache);
    assert_eq!(first["photos"], 8, "{first}");
    assert_eq!(first["analysed"], 8, "nothing cached yet: {first}");
    assert_eq!(first["cache_hits"], 0, "{first}");
    assert_eq!(first["identities"], 3, "{first}");
    assert_eq!(first["rejected_by_reason"]["disagrees_with_other_photos"], 1, "{first}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(old.with_extension("report.json")).expect("report")).expect("JSON");
    let rejected = report["rejected"].as_array().expect("rejected");
    let wrong = rejected.iter().find(|r| r["reason"] == "disagrees_with_other_photos").expect("the outlier");
    assert!(wrong["photo"].as_str().expect("path").ends_with("Barack_Obama/9.jpg"), "{wrong}");
    assert!(wrong["distance"].as_f64().expect("distance") > 0.6, "{wrong}");

    copy("Joe_Biden", "Joe_Biden/2.jpg", "2.jpg");
    let second = build(&photos, &new, &cache);
    assert_eq!(second["photos"], 9, "{second}");
    assert_eq!(second["analysed"], 1, "only the new photo: {second}");
    assert_eq!(second["cache_hits"], 8, "{second}");

    let diff: serde_json::Value =
        serde_json::from_str(&run(&["gallery", "diff", old.to_str().expect("path"), new.to_str().expect("path")]))
            .expect("diff JSON");
    let added: Vec<&str> =
        diff["added"].as_array().expect("added").iter().map(|p| p["alias"].as_str().expect("alias")).collect();
    assert_eq!(added, vec!["joe-biden"], "{diff}");
    assert_eq!(diff["removed"].as_array().map(Vec::len), Some(0), "{diff}");
    assert_eq!(diff["changed"].as_array().map(Vec::len), Some(0), "cached embeddings are the same: {diff}");
    assert_eq!(diff["unchanged"], 3, "{diff}");
}
