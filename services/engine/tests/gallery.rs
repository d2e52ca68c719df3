//! Gallery build, file round trip, corruption detection, exact vs HNSW, catalog handling.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed expectation is the report

mod common;

use lookalike_engine::gallery::build::{build, BuildConfig, RejectReason};
use lookalike_engine::gallery::catalog::{self, CatalogEntry};
use lookalike_engine::gallery::consensus::ConsensusConfig;
use lookalike_engine::{AnalyzeOptions, Gallery, GalleryError, HnswParams, SearchMode};
use std::path::{Path, PathBuf};

fn config(jitters: u32) -> BuildConfig {
    BuildConfig { jitters, workers: 2, ..BuildConfig::default() }
}

fn build_from(
    dir: &Path,
    entries: Option<&[CatalogEntry]>,
    jitters: u32,
) -> (Gallery, lookalike_engine::gallery::build::BuildReport) {
    let sources = catalog::collect(dir, entries).expect("collect");
    build(common::models(), sources, &config(jitters), |_, _| {}).expect("build")
}

fn queries() -> Vec<PathBuf> {
    let mut q = common::photos_of("named/face_recognition/Barack_Obama");
    q.extend(common::photos_of("named/face_recognition/Joe_Biden"));
    q.push(common::faces_dir().join("scenes/tom-hanks.png"));
    q
}

#[test]
fn build_save_load_gives_identical_answers() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (mut g, report) = build_from(&common::faces_dir().join("tg1280"), None, 2);
    assert_eq!(report.identities, 12);
    assert_eq!(report.accepted + report.rejected.len(), report.photos);
    assert!(g
        .identities
        .iter()
        .all(|i| !i.thumbnail_jpeg.is_empty() && image::load_from_memory(&i.thumbnail_jpeg).is_ok()));
    g.prepare_index(SearchMode::Exact, HnswParams::default());
    g.compute_crowding(2);
    let figures = g.crowding().expect("computed").to_vec();
    assert_eq!(figures.len(), 12);
    // Mean distance to the 10 nearest other people: different people, so well above 0.6.
    assert!(figures.iter().all(|c| (0.6..1.2).contains(c)), "{figures:?}");
    let path = tmp.path().join("g.lkg");
    g.save(&path).expect("save");
    let loaded = Gallery::load(&path, SearchMode::Exact, HnswParams::default()).expect("load");
    assert_eq!(loaded.crowding(), Some(figures.as_slice()), "the figures travel with the file");
    assert_eq!(loaded.version, g.version);
    assert_eq!(loaded.identities, g.identities);
    assert_eq!(loaded.calibration, g.calibration);
    assert_eq!(loaded.rows(), g.rows());

    let mut a = common::analyzer();
    for q in queries() {
        let bytes = std::fs::read(&q).expect("read");
        let face = a.analyze_bytes(&bytes, &AnalyzeOptions::default()).expect("analyze").faces.remove(0);
        assert_eq!(g.search(&face.embedding, 5, None), loaded.search(&face.embedding, 5, None), "{}", q.display());
    }
    // The expected people come out on top.
    let obama = std::fs::read(common::faces_dir().join("named/face_recognition/Barack_Obama/1.jpg")).expect("read");
    let face = a.analyze_bytes(&obama, &AnalyzeOptions::default()).expect("analyze").faces.remove(0);
    let top = &loaded.search(&face.embedding, 3, None)[0];
    assert_eq!(loaded.identity(top.identity).expect("id").alias, "barack-obama");
    assert!(top.distance < 0.6 && top.similarity > 90.0, "{top:?}");

    // Same input, same jitter seeds: a rebuild is bit-identical.
    let (mut again, _) = build_from(&common::faces_dir().join("tg1280"), None, 2);
    // As a builder does (the calibration is then fitted on the same ranking key).
    again.prepare_index(SearchMode::Exact, HnswParams::default());
    again.compute_crowding(2);
    let path2 = tmp.path().join("g2.lkg");
    again.save(&path2).expect("save");
    assert_eq!(again.rows(), g.rows(), "gallery builds are reproducible");
    assert_eq!(again.calibration, g.calibration);
}

#[test]
fn corrupted_gallery_files_are_refused() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (mut g, _) = build_from(&common::faces_dir().join("named/face_recognition"), None, 0);
    let path = tmp.path().join("g.lkg");
    g.save(&path).expect("save");
    let good = std::fs::read(&path).expect("read");
    // Flip one bit at several places: header, payload, checksum.
    for pos in [9, 30, good.len() / 2, good.len() - 5] {
        let mut bad = good.clone();
        bad[pos] ^= 0x10;
        let p = tmp.path().join(format!("bad{pos}.lkg"));
        std::fs::write(&p, &bad).expect("write");
        let err = Gallery::load(&p, SearchMode::Exact, HnswParams::default()).err().expect("must be refused");
        assert!(
            matches!(
                err,
                GalleryError::Corrupt { .. } | GalleryError::WrongFormat { .. } | GalleryError::NotAGallery { .. }
            ),
            "flip at {pos}: {err}"
        );
    }
    let truncated = tmp.path().join("short.lkg");
    std::fs::write(&truncated, &good[..good.len() - 100]).expect("write");
    assert!(matches!(
        Gallery::load(&truncated, SearchMode::Exact, HnswParams::default()),
        Err(GalleryError::Corrupt { .. })
    ));
    let text = tmp.path().join("text.lkg");
    std::fs::write(&text, "not a gallery").expect("write");
    assert!(matches!(
        Gallery::load(&text, SearchMode::Exact, HnswParams::default()),
        Err(GalleryError::NotAGallery { .. })
    ));
}

/// A real gallery (first LFW photo of 600 people) searched both ways; HNSW stored in the
/// file and reloaded.
#[test]
fn exact_and_hnsw_agree_on_top1_for_a_real_gallery() {
    let lfw = common::faces_dir().join("lfw-dev");
    let mut people: Vec<PathBuf> =
        std::fs::read_dir(&lfw).expect("lfw").filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_dir()).collect();
    people.sort();
    let tmp = tempfile::tempdir().expect("tmp");
    let mut queries = Vec::new();
    for person in people.iter().take(600) {
        let photos =
            common::photos_of(&format!("lfw-dev/{}", person.file_name().and_then(|n| n.to_str()).unwrap_or("")));
        let dst = tmp.path().join("photos").join(person.file_name().expect("name"));
        std::fs::create_dir_all(&dst).expect("mkdir");
        std::fs::copy(&photos[0], dst.join("1.jpg")).expect("copy");
        queries.extend(photos.into_iter().skip(1).take(2));
    }
    let (mut g, report) = build_from(&tmp.path().join("photos"), None, 0);
    eprintln!("{:?}", report.rejected_by_reason);
    assert!(report.identities >= 570, "{} identities", report.identities);
    g.prepare_index(SearchMode::Hnsw, HnswParams::default());
    assert_eq!(g.index_kind(), "hnsw");
    let path = tmp.path().join("hnsw.lkg");
    g.save(&path).expect("save");
    let loaded = Gallery::load(&path, SearchMode::Hnsw, HnswParams::default()).expect("load hnsw");
    assert_eq!(loaded.index_kind(), "hnsw");

    let mut a = common::analyzer();
    let (mut n, mut agree) = (0, 0);
    for q in queries.iter().take(300) {
        let bytes = std::fs::read(q).expect("read");
        let Some(face) = a.analyze_bytes(&bytes, &AnalyzeOptions::default()).expect("analyze").faces.pop() else {
            continue;
        };
        let exact = loaded.exact_search(&face.embedding, 1);
        let approx = loaded.search(&face.embedding, 1, None);
        n += 1;
        agree += usize::from(exact[0].0 == approx[0].identity);
    }
    eprintln!("exact and HNSW agree on top-1 for {agree}/{n} queries");
    assert!(n >= 250);
    assert_eq!(agree, n, "HNSW top-1 must equal exact top-1 on a 600-identity gallery");
}

#[test]
fn catalog_drives_names_and_reports_gaps() {
    let tmp = tempfile::tempdir().expect("tmp");
    let photos = tmp.path().join("photos");
    std::fs::create_dir_all(&photos).expect("mkdir");
    let fr = common::faces_dir().join("named/face_recognition");
    std::fs::copy(fr.join("Barack_Obama/1.jpg"), photos.join("barack-obama.jpg")).expect("copy");
    std::fs::create_dir_all(photos.join("Joe_Biden")).expect("mkdir");
    std::fs::copy(fr.join("Joe_Biden/1.jpg"), photos.join("Joe_Biden/a.jpg")).expect("copy");
    std::fs::copy(fr.join("Kit_Harington/1.jpg"), photos.join("kit-harington.jpg")).expect("copy");
    std::fs::copy(common::faces_dir().join("scenes/coffee.png"), photos.join("rose-leslie.png")).expect("copy");
    std::fs::write(photos.join("alex-lacamoire.jpg"), b"this is not a photo").expect("write");
    let catalog = tmp.path().join("catalog.json");
    std::fs::write(
        &catalog,
        r#"[{"name": "Barack Obama", "alias": "barack-obama", "role": "president", "n_movies": 3},
            {"name": "Joe Biden", "alias": "joe-biden", "role": "president"},
            {"name": "Rose Leslie", "alias": "rose-leslie", "role": "actor", "n_movies": 9},
            {"name": "Alex Lacamoire", "alias": "alex-lacamoire", "role": "composer"},
            {"name": "Tilda Swinton", "alias": "tilda-swinton", "role": "actor", "n_movies": 14}]"#,
    )
    .expect("write catalog");
    let entries = catalog::load(&catalog).expect("catalog");
    let sources = catalog::collect(&photos, Some(&entries)).expect("collect");
    assert_eq!(sources.entries_without_photos, vec!["Tilda Swinton".to_string()]);
    assert_eq!(sources.photos_without_entry, vec![photos.join("kit-harington.jpg")]);
    let (g, report) = build(common::models(), sources, &config(0), |_, _| {}).expect("build");
    let names: Vec<_> = g.identities.iter().map(|i| (i.name.as_str(), i.role.as_str(), i.n_movies)).collect();
    assert_eq!(names, vec![("Barack Obama", "president", 3), ("Joe Biden", "president", 0)]);
    let reasons: Vec<_> = report.rejected.iter().map(|r| (r.person.as_str(), r.reason.kind())).collect();
    assert!(reasons.contains(&("Rose Leslie", "no_face")), "{reasons:?}");
    assert!(reasons.contains(&("Alex Lacamoire", "unreadable")), "{reasons:?}");
    assert_eq!(report.people_without_usable_photo, vec!["Rose Leslie".to_string(), "Alex Lacamoire".to_string()]);
    assert!(matches!(report.rejected[0].reason, RejectReason::Unreadable { .. } | RejectReason::NoFace));
}

#[test]
fn quality_filters_reject_with_reasons() {
    let tmp = tempfile::tempdir().expect("tmp");
    let photos = tmp.path().join("photos");
    for (person, src) in [
        ("Group_Person", "scenes/group-t1.jpg"),
        ("Obama", "named/face_recognition/Barack_Obama/1.jpg"),
        ("Rose", "named/face_recognition/Rose_Leslie/1.jpg"),
    ] {
        std::fs::create_dir_all(photos.join(person)).expect("mkdir");
        std::fs::copy(common::faces_dir().join(src), photos.join(person).join("1.jpg")).expect("copy");
    }
    // A small copy of a face: eyes too close together.
    let obama = image::open(common::faces_dir().join("named/face_recognition/Kit_Harington/1.jpg")).expect("open");
    std::fs::create_dir_all(photos.join("Kit")).expect("mkdir");
    obama.resize(400, 400, image::imageops::FilterType::Triangle).save(photos.join("Kit/small.png")).expect("save");
    // A rolled head.
    let biden =
        image::open(common::faces_dir().join("named/face_recognition/Joe_Biden/1.jpg")).expect("open").to_rgb8();
    std::fs::create_dir_all(photos.join("Biden")).expect("mkdir");
    image::imageops::rotate90(&biden).save(photos.join("Biden/sideways.png")).expect("save");
    let sources = catalog::collect(&photos, None).expect("collect");
    let consensus = ConsensusConfig { min_eye_distance: 25.0, ..ConsensusConfig::default() };
    let cfg = BuildConfig { consensus, ..config(0) };
    let (_, report) = build(common::models(), sources, &cfg, |_, _| {}).expect("build");
    let kinds: std::collections::BTreeMap<_, _> =
        report.rejected.iter().map(|r| (r.person.clone(), r.reason.kind())).collect();
    eprintln!("{kinds:?}");
    assert_eq!(kinds.get("Group Person"), Some(&"several_faces"));
    assert_eq!(kinds.get("Kit"), Some(&"eyes_too_close"));
    assert!(matches!(kinds.get("Biden"), Some(&"head_rolled") | Some(&"no_face")));
    assert_eq!(report.identities, 2);
}
