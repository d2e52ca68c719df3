//! Overload: one worker, a small queue, many concurrent calls. Excess is refused at once
//! with RESOURCE_EXHAUSTED, every accepted call is answered correctly, memory stays bounded.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed expectation is the report

mod common;

use common::{match_image, photo, Server};
use std::time::{Duration, Instant};
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn excess_is_shed_quickly_and_accepted_calls_are_answered() {
    let server = Server::start(&common::people_gallery(), &["--workers", "1", "--queue", "2"]);
    server.wait_serving().await;
    let client = server.client().await;
    let bytes = photo("tg1280/Barack_Obama/2.jpg");
    let rss_before = server.peak_rss_mib();

    let calls = 40;
    let mut handles = Vec::new();
    for _ in 0..calls {
        let mut c = client.clone();
        let req = match_image(bytes.clone(), 1);
        handles.push(tokio::spawn(async move {
            let t = Instant::now();
            let r = tokio::time::timeout(Duration::from_secs(120), c.r#match(req)).await.expect("no call hangs");
            (r, t.elapsed())
        }));
    }
    let (mut ok, mut refused, mut refused_slowest) = (0, 0, Duration::ZERO);
    for h in handles {
        let (r, took) = h.await.expect("task");
        match r {
            Ok(resp) => {
                ok += 1;
                assert_eq!(resp.into_inner().faces[0].candidates[0].name, "Barack Obama");
            }
            Err(s) if s.code() == Code::ResourceExhausted => {
                refused += 1;
                refused_slowest = refused_slowest.max(took);
                assert!(s.message().contains("capacity"), "{}", s.message());
            }
            Err(s) => panic!("unexpected status {s:?}"),
        }
    }
    let peak = server.peak_rss_mib();
    eprintln!("{ok} accepted, {refused} refused (slowest refusal {refused_slowest:?}); peak RSS {rss_before:.0} -> {peak:.0} MiB");
    assert!(ok >= 3, "at least the worker's call and the queue's are answered");
    assert!(refused >= calls / 2, "most of a 40-call burst against 1 worker + 2 queue places is shed");
    assert_eq!(ok + refused, calls);
    // Refusals do not wait for a worker (one photo takes ~70 ms; a refusal must not queue behind them).
    assert!(refused_slowest < Duration::from_secs(2), "refusals are immediate: {refused_slowest:?}");
    // 40 photos of ~200 KB in flight must not grow memory by more than a bounded amount.
    assert!(peak - rss_before < 150.0, "memory grew from {rss_before} to {peak} MiB");
    let m = server.metrics();
    assert!(m.contains("lookalike_shed_total{reason=\"queue_full\"}"), "{m}");

    // The server recovers: a follow-up call is answered.
    let mut c = client.clone();
    let r = c.r#match(match_image(bytes, 1)).await.expect("after the burst");
    assert_eq!(r.into_inner().faces.len(), 1);
}

/// The value of the Prometheus sample `name{labels}` in `text` (0 if absent).
fn sample(text: &str, series: &str) -> f64 {
    text.lines().find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok())).unwrap_or(0.0)
}

/// Photos without a face cost many selfies when the retry and CNN passes run on them. With
/// a small CPU share and burst for those passes, a face only the CNN finds is found while
/// the burst lasts; a stream of photos without a face then spends it, after which they are
/// answered (no face) without those passes, selfies are answered as before, and the metrics
/// say how many passes ran and were skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn photos_without_a_face_stop_getting_the_costly_passes_once_their_share_is_spent() {
    let server = Server::start(
        &common::people_gallery(),
        &["--workers", "1", "--fallback-share", "0", "--fallback-burst-seconds", "1"],
    );
    server.wait_serving().await;
    let mut c = server.client().await;
    let faces = |r: Result<tonic::Response<lookalike_proto::v1::MatchResponse>, tonic::Status>| {
        r.expect("answered").into_inner().faces.len()
    };
    // docs/BENCHMARKS.md 8b: only the CNN finds this face.
    let cnn_only = photo("named/celeb5/elton_john/15.jpg");
    let found = c.r#match(match_image(cnn_only.clone(), 1)).await.expect("answered").into_inner();
    assert_eq!(found.faces.len(), 1);
    assert_eq!(found.detection.expect("detection").found_by, "cnn");
    let rocket = photo("scenes/rocket.jpg");
    let mut sent = 0;
    let skipped = "lookalike_detect_fallback_passes_total{pass=\"retry\",result=\"skipped\"}";
    while sample(&server.metrics(), skipped) < 1.0 {
        assert_eq!(faces(c.r#match(match_image(rocket.clone(), 1)).await), 0);
        sent += 1;
        assert!(sent <= 20, "a share of 0 and a 1-s burst are spent within 20 photos without a face");
    }
    let cut_short = c.r#match(match_image(cnn_only, 1)).await.expect("answered").into_inner();
    assert!(cut_short.faces.is_empty(), "no CNN pass once the budget is spent");
    let d = cut_short.detection.expect("detection");
    assert_eq!((d.found_by.as_str(), d.skipped.as_str()), ("", "retry"), "the answer says the search was cut short");
    let selfie = c.r#match(match_image(photo("tg1280/Barack_Obama/2.jpg"), 1)).await.expect("answered").into_inner();
    assert_eq!(selfie.faces.len(), 1);
    assert_eq!(selfie.detection.expect("detection").found_by, "quick", "a selfie is found by the quick pass");

    let m = server.metrics();
    let series = |pass: &str, result: &str| {
        sample(&m, &format!("lookalike_detect_fallback_passes_total{{pass=\"{pass}\",result=\"{result}\"}}"))
    };
    let cpu = sample(&m, "lookalike_detect_fallback_cpu_seconds_total{pass=\"retry\"}")
        + sample(&m, "lookalike_detect_fallback_cpu_seconds_total{pass=\"cnn\"}");
    eprintln!(
        "{sent} photos without a face; retry ran {} skipped {}, cnn ran {} skipped {}; {cpu:.2} CPU s",
        series("retry", "ran"),
        series("retry", "skipped"),
        series("cnn", "ran"),
        series("cnn", "skipped")
    );
    assert!(series("cnn", "ran") >= 1.0 && series("retry", "skipped") >= 2.0, "{m}");
    // What ran fits the burst, plus the one pass that may overdraw it.
    assert!(cpu > 0.0 && cpu < 1.0 + 1.5, "{cpu} CPU s of fallback passes");
}
