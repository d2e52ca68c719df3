//! Deadlines, cancellation, graceful shutdown with calls in flight, gallery reload.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed expectation is the report

mod common;

use common::{match_image, photo, Server};
use lookalike_proto::v1 as pb;
use std::time::Duration;
use tonic::Code;

fn with_timeout<T>(msg: T, timeout: Duration) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.set_timeout(timeout);
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn expired_and_cancelled_requests_free_their_places() {
    let server = Server::start(&common::people_gallery(), &["--workers", "1", "--queue", "4"]);
    server.wait_serving().await;
    let client = server.client().await;
    let big = photo("hires/id03/5.jpg"); // 12.6 megapixels: seconds of work for one worker
    let small = photo("lfw-dev/Tony_Blair/0002.jpg");

    // Keep the single worker busy with three slow photos, then send a call with a short
    // deadline: it expires in the queue and is answered DEADLINE_EXCEEDED without being
    // computed. The server answers a tenth of the timeout early, before tonic's own timer;
    // the client's timer may still win the race on a loaded machine (CANCELLED, "Timeout
    // expired"). Either way the server must count it as a deadline shed (metrics below).
    let mut busy = Vec::new();
    for _ in 0..3 {
        let mut c = client.clone();
        let req = match_image(big.clone(), 1);
        busy.push(tokio::spawn(async move { c.r#match(req).await }));
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut c = client.clone();
    let err =
        c.r#match(with_timeout(match_image(small.clone(), 1), Duration::from_millis(200))).await.expect_err("expires");
    assert!(
        err.code() == Code::DeadlineExceeded || err.message() == "Timeout expired",
        "expected the deadline to expire, got {err:?}"
    );

    // Cancelled calls (client gives up) free their queue places: fill the queue with calls
    // that we abort, then the queue must accept 4 new calls.
    let mut doomed = Vec::new();
    for _ in 0..4 {
        let mut c = client.clone();
        let req = match_image(big.clone(), 1);
        doomed.push(tokio::spawn(async move { c.r#match(req).await }));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    for d in &doomed {
        d.abort();
    }
    for b in busy {
        let _ = b.await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut accepted = Vec::new();
    for _ in 0..4 {
        let mut c = client.clone();
        let req = match_image(small.clone(), 1);
        accepted.push(tokio::spawn(async move { c.r#match(req).await }));
    }
    for a in accepted {
        let r = a.await.expect("task").expect("accepted after cancellations freed the queue");
        assert_eq!(r.into_inner().faces[0].candidates[0].name, "Tony Blair");
    }
    let m = server.metrics();
    assert!(m.contains("lookalike_shed_total{reason=\"deadline\"}"), "{m}");
    assert!(m.contains("lookalike_queue_depth 0"), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_finishes_in_flight_calls_and_exits_zero() {
    let mut server =
        Server::start(&common::people_gallery(), &["--workers", "1", "--queue", "8", "--grace-period", "60"]);
    server.wait_serving().await;
    let client = server.client().await;
    let bytes = photo("hires/id02/1.jpg");
    let mut in_flight = Vec::new();
    for _ in 0..6 {
        let mut c = client.clone();
        let req = match_image(bytes.clone(), 1);
        in_flight.push(tokio::spawn(async move { c.r#match(req).await }));
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    server.signal("TERM");
    for call in in_flight {
        let r = call.await.expect("task");
        assert!(r.is_ok(), "in-flight call failed during drain: {r:?}");
    }
    let status = tokio::task::spawn_blocking(move || {
        let st = server.wait_exit(Duration::from_secs(60));
        (st, server.log_text())
    })
    .await
    .expect("join");
    let (st, log) = status;
    assert!(st.is_some_and(|s| s.success()), "exit status {st:?}; log:\n{log}");
    assert!(log.contains("draining") && log.contains("drained"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reload_swaps_a_good_gallery_and_refuses_a_broken_one() {
    let dir = tempfile::tempdir().expect("tmp");
    let serving_path = dir.path().join("gallery.lkg");
    std::fs::copy(common::people_gallery(), &serving_path).expect("copy");
    let server = Server::start(&serving_path, &["--workers", "1", "--watch-interval", "1"]);
    server.wait_serving().await;
    let mut c = server.client().await;
    let v1 = c.get_gallery_info(pb::GetGalleryInfoRequest {}).await.expect("info").into_inner();
    assert_eq!(v1.identities, 10);

    // A second gallery, swapped in by atomic rename + SIGHUP.
    let other = common::build_gallery(&common::faces_dir().join("named/face_recognition"), "fr.lkg");
    let staged = dir.path().join(".gallery.lkg.tmp");
    std::fs::copy(&other, &staged).expect("copy");
    std::fs::rename(&staged, &serving_path).expect("rename");
    server.signal("HUP");
    let mut v2 = v1.clone();
    for _ in 0..100 {
        v2 = c.get_gallery_info(pb::GetGalleryInfoRequest {}).await.expect("info").into_inner();
        if v2.version != v1.version {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_ne!(v2.version, v1.version, "gallery was not reloaded");
    assert_eq!(v2.identities, 6);
    let r = c.r#match(match_image(photo("tg1280/Rose_Leslie/2.jpg"), 1)).await.expect("match").into_inner();
    assert_eq!(r.gallery_version, v2.version);
    assert_eq!(r.faces[0].candidates[0].name, "Rose Leslie");

    // A broken file (truncated) is refused; the good one keeps serving. The file watcher
    // notices it without a signal.
    let good = std::fs::read(&serving_path).expect("read");
    std::fs::write(&staged, &good[..good.len() / 2]).expect("write");
    std::fs::rename(&staged, &serving_path).expect("rename");
    let mut refused = false;
    for _ in 0..100 {
        if server.metrics().contains("lookalike_gallery_reloads_total{result=\"refused\"} 1") {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(refused, "broken gallery was not noticed; log:\n{}", server.log_text());
    let v3 = c.get_gallery_info(pb::GetGalleryInfoRequest {}).await.expect("info").into_inner();
    assert_eq!(v3.version, v2.version, "the previous gallery keeps serving");
    let r = c.r#match(match_image(photo("tg1280/Rose_Leslie/2.jpg"), 1)).await.expect("still serving").into_inner();
    assert_eq!(r.faces[0].candidates[0].name, "Rose Leslie");
    assert!(server.log_text().contains("new gallery refused"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_gallery_at_startup_exits_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("broken.lkg");
    std::fs::write(&path, "not a gallery at all").expect("write");
    let mut server = Server::start(&path, &["--workers", "1"]);
    let (status, log) = tokio::task::spawn_blocking(move || {
        let st = server.wait_exit(Duration::from_secs(60));
        (st, server.log_text())
    })
    .await
    .expect("join");
    assert!(status.is_some_and(|s| !s.success()), "must exit non-zero: {status:?}\n{log}");
    assert!(log.contains("is not a lookalike gallery file"), "{log}");
}

/// A synthetic gallery of `rows` random embeddings over `rows / 4` identities.
fn synthetic_gallery(path: &std::path::Path, rows: usize) {
    use lookalike_engine::gallery::{BuildInfo, Identity};
    let mut seed = 0x9E37_79B9_7F4A_7C15_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    let embeddings: Vec<f32> = (0..rows * lookalike_engine::EMBEDDING_DIM).map(|_| next() * 0.2).collect();
    let owners: Vec<u32> = (0..rows as u32).map(|i| i / 4).collect();
    let identities = (0..rows.div_ceil(4))
        .map(|i| Identity {
            name: format!("Synthetic {i}"),
            alias: format!("Synthetic_{i}"),
            role: String::new(),
            n_movies: 0,
            photo_count: 4,
            thumbnail_jpeg: Vec::new(),
            credits: Vec::new(),
        })
        .collect();
    let info = BuildInfo { built_at: "test".into(), jitters: 0, photos_seen: rows as u32, photos_rejected: 0 };
    let mut g = lookalike_engine::Gallery::new(identities, embeddings, owners, None, info).expect("gallery");
    g.save(path).expect("save");
}

/// A new gallery that would not fit beside the serving one under the memory ceiling is
/// refused before loading (metric, error log), and the old one keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gallery_too_large_for_the_memory_ceiling_is_refused_and_the_old_one_keeps_serving() {
    let dir = tempfile::tempdir().expect("tmp");
    let serving_path = dir.path().join("gallery.lkg");
    std::fs::copy(common::people_gallery(), &serving_path).expect("copy");
    let server =
        Server::start(&serving_path, &["--workers", "1", "--watch-interval", "0", "--memory-budget-mb", "450"]);
    server.wait_serving().await;
    let mut c = server.client().await;
    let v1 = c.get_gallery_info(pb::GetGalleryInfoRequest {}).await.expect("info").into_inner();

    // 60k rows: a ~32 MB file, ~130 MB to load, where ~80 MB are free beside the photos'
    // budget (the log gives both figures).
    let staged = dir.path().join(".big.lkg.tmp");
    synthetic_gallery(&staged, 60_000);
    std::fs::rename(&staged, &serving_path).expect("rename");
    server.signal("HUP");
    let mut refused = false;
    for _ in 0..200 {
        if server.metrics().contains("lookalike_gallery_reloads_total{result=\"no_memory\"} 1") {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = server.log_text();
    assert!(refused, "not refused; log:\n{log}");
    assert!(log.contains("needs about") && log.contains("keeps serving"), "{log}");
    let v2 = c.get_gallery_info(pb::GetGalleryInfoRequest {}).await.expect("info").into_inner();
    assert_eq!(v2.version, v1.version);
    let r = c.r#match(match_image(photo("tg1280/Barack_Obama/1.jpg"), 1)).await.expect("match").into_inner();
    assert_eq!(r.faces[0].candidates[0].name, "Barack Obama");
    assert!(server.peak_rss_mib() < 450.0, "peak {} MiB", server.peak_rss_mib());
}

/// The people gallery with identity 1's stored faces replaced by identity 0's (two names
/// given the same photos): the gallery loads, but one of the two self-check probes comes
/// back as the other person. Written with the engine's API, crowding figures included, so
/// the file is valid in every other respect.
fn tampered_gallery(path: &std::path::Path) -> (String, String) {
    use lookalike_engine::{Gallery, HnswParams, SearchMode, EMBEDDING_DIM};
    let g = Gallery::load(&common::people_gallery(), SearchMode::Exact, HnswParams::default()).expect("load");
    let (owners, mut rows) = (g.owners().to_vec(), g.rows().to_vec());
    let row_of = |id: u32| owners.iter().position(|&o| o == id).expect("identity has a row");
    let (a, b) = (row_of(0), row_of(1));
    let from: Vec<f32> = rows[a * EMBEDDING_DIM..(a + 1) * EMBEDDING_DIM].to_vec();
    rows[b * EMBEDDING_DIM..(b + 1) * EMBEDDING_DIM].copy_from_slice(&from);
    let names = (g.identities[0].name.clone(), g.identities[1].name.clone());
    let mut t = Gallery::new(g.identities.clone(), rows, owners, None, g.build.clone()).expect("gallery");
    t.prepare_index(SearchMode::Exact, HnswParams::default());
    t.compute_crowding(1);
    t.save(path).expect("save");
    names
}

/// A gallery whose own faces do not come back as their people is refused like a corrupt
/// one: at start-up the matcher never serves (exits non-zero, error log naming the failed
/// probe); on a reload the previous gallery keeps serving (metric result="self_check_failed").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gallery_failing_its_self_check_is_refused_at_startup_and_on_reload() {
    let dir = tempfile::tempdir().expect("tmp");
    let tampered = dir.path().join("tampered.lkg");
    let (first, second) = tampered_gallery(&tampered);

    // Start-up: never SERVING, exits non-zero, an ERROR line says which probe failed.
    let mut server = Server::start(&tampered, &["--workers", "1", "--watch-interval", "0"]);
    let health = server.metrics_addr.clone();
    let (status, log, healthz) = tokio::task::spawn_blocking(move || {
        let mut healthz = Vec::new();
        let end = std::time::Instant::now() + Duration::from_secs(120);
        let status = loop {
            if let Ok(Some(st)) = server.child.try_wait() {
                break Some(st);
            }
            if std::time::Instant::now() > end {
                break None;
            }
            healthz.push(http_status(&health, "/healthz"));
            std::thread::sleep(Duration::from_millis(50));
        };
        (status, server.log_text(), healthz)
    })
    .await
    .expect("join");
    assert!(status.is_some_and(|s| !s.success()), "must not start: {status:?}\n{log}");
    assert!(healthz.iter().all(|s| s.as_deref() != Some("200")), "/healthz said 200: {healthz:?}");
    let line = log.lines().find(|l| l.contains("failed its self-check")).unwrap_or_else(|| panic!("{log}"));
    assert!(line.contains("ERROR"), "not at error level: {line}");
    assert!(line.contains("1 of 10 probe faces"), "{line}");
    assert!(line.contains(&first) && line.contains(&second), "the probe that failed is named: {line}");

    // Reload: refused, the good gallery keeps serving.
    let serving_path = dir.path().join("gallery.lkg");
    std::fs::copy(common::people_gallery(), &serving_path).expect("copy");
    let server = Server::start(&serving_path, &["--workers", "1", "--watch-interval", "0"]);
    server.wait_serving().await;
    assert!(server.log_text().contains("gallery self-check passed"), "{}", server.log_text());
    let mut c = server.client().await;
    let v1 = c.get_gallery_info(pb::GetGalleryInfoRequest {}).await.expect("info").into_inner();
    std::fs::rename(&tampered, &serving_path).expect("rename");
    server.signal("HUP");
    let mut refused = false;
    for _ in 0..200 {
        if server.metrics().contains("lookalike_gallery_reloads_total{result=\"self_check_failed\"} 1") {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = server.log_text();
    assert!(refused, "not refused; log:\n{log}");
    assert!(log.lines().any(|l| l.contains("ERROR") && l.contains("self-check failed")), "{log}");
    let v2 = c.get_gallery_info(pb::GetGalleryInfoRequest {}).await.expect("info").into_inner();
    assert_eq!(v2.version, v1.version, "the previous gallery keeps serving");
    let r = c.r#match(match_image(photo("tg1280/Barack_Obama/1.jpg"), 1)).await.expect("match").into_inner();
    assert_eq!(r.faces[0].candidates[0].name, "Barack Obama");
    assert_eq!(r.gallery_version, v1.version);
}

/// The HTTP status code of GET `path`, or None when nothing answers.
fn http_status(addr: &str, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).ok()?;
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split_whitespace().nth(1).map(str::to_string)
}
