//! Bad input gets the right status code and a clear message, and the server keeps serving.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed expectation is the report

mod common;

use common::{match_image, photo, Server};
use lookalike_proto::v1 as pb;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_errors_and_the_server_keeps_serving() {
    let server = Server::start(&common::people_gallery(), &["--workers", "1", "--max-message-bytes", "3000000"]);
    server.wait_serving().await;
    let mut c = server.client().await;
    let good = photo("lfw-dev/Tony_Blair/0002.jpg");

    let cases: Vec<(&str, pb::MatchRequest, Code, &str)> = vec![
        ("empty bytes", match_image(vec![], 1), Code::InvalidArgument, "empty"),
        (
            "random bytes",
            match_image((0..5000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect(), 1),
            Code::InvalidArgument,
            "not a supported image",
        ),
        (
            "truncated JPEG",
            match_image(good[..good.len() / 3].to_vec(), 1),
            Code::InvalidArgument,
            "broken or truncated",
        ),
        (
            "no query",
            pb::MatchRequest { top_k: 1, ..Default::default() },
            Code::InvalidArgument,
            "neither an image nor an embedding",
        ),
        (
            "embedding of 127 values",
            pb::MatchRequest {
                query: Some(pb::match_request::Query::Embedding(pb::Embedding { values: vec![0.1; 127] })),
                ..Default::default()
            },
            Code::InvalidArgument,
            "exactly 128",
        ),
        (
            "embedding with NaN",
            pb::MatchRequest {
                query: Some(pb::match_request::Query::Embedding(pb::Embedding { values: vec![f32::NAN; 128] })),
                ..Default::default()
            },
            Code::InvalidArgument,
            "NaN",
        ),
        ("top_k too large", match_image(good.clone(), 1000), Code::InvalidArgument, "top_k is 1000"),
        (
            "max_faces too large",
            pb::MatchRequest { max_faces: 500, ..match_image(good.clone(), 1) },
            Code::InvalidArgument,
            "max_faces",
        ),
        (
            "negative max_distance",
            pb::MatchRequest { max_distance: -1.0, ..match_image(good.clone(), 1) },
            Code::InvalidArgument,
            "max_distance",
        ),
        (
            "over-limit message",
            match_image(vec![0xFF; 4_000_000], 1),
            Code::ResourceExhausted,
            "larger than this server's limit",
        ),
    ];
    for (what, req, code, text) in cases {
        let err = c.r#match(req).await.expect_err(what);
        assert_eq!(err.code(), code, "{what}: {err:?}");
        assert!(err.message().contains(text), "{what}: message {:?} should mention {text:?}", err.message());
    }
    let err =
        c.embed(pb::EmbedRequest { image: Default::default(), ..Default::default() }).await.expect_err("embed empty");
    assert_eq!(err.code(), Code::InvalidArgument);

    // Still serving, on the same worker, with the right answer.
    let r = c.r#match(match_image(good, 1)).await.expect("good after bad").into_inner();
    assert_eq!(r.faces[0].candidates[0].name, "Tony Blair");
    let metrics = server.metrics();
    assert!(metrics.contains(r#"lookalike_requests_total{code="INVALID_ARGUMENT",method="Match"} 9"#), "{metrics}");
}
