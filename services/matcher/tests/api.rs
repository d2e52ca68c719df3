//! The gRPC API through a tonic client against a real server: the expected person on top.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed expectation is the report

mod common;

use common::{match_image, photo, Server};
use lookalike_proto::v1 as pb;

async fn serving() -> Server {
    let s = Server::start(&common::people_gallery(), &["--workers", "2"]);
    s.wait_serving().await;
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn match_embed_identity_and_info_on_real_photos() {
    let server = serving().await;
    let mut c = server.client().await;

    let info = c.get_gallery_info(pb::GetGalleryInfoRequest {}).await.expect("info").into_inner();
    assert_eq!(info.identities, 10);
    assert_eq!(info.index_kind, "exact");
    assert!(info.calibration.as_ref().is_some_and(|c| c.std > 0.0 && c.mean > 0.3));
    assert_eq!(info.workers, 2);
    assert!((info.crowding_weight - 0.4).abs() < 1e-6, "a freshly built gallery has crowding figures");

    for (query, expected) in [
        ("lfw-dev/George_W_Bush/0002.jpg", "George W Bush"),
        ("lfw-dev/Colin_Powell/0003.jpg", "Colin Powell"),
        ("lfw-dev/Tony_Blair/0002.jpg", "Tony Blair"),
        ("named/face_recognition/Barack_Obama/2.jpg", "Barack Obama"),
        ("tg1280/Kit_Harington/2.jpg", "Kit Harington"),
    ] {
        let r = c.r#match(match_image(photo(query), 3)).await.expect("match").into_inner();
        assert_eq!(r.faces.len(), 1, "{query}");
        let f = &r.faces[0];
        assert_eq!(f.candidates.len(), 3);
        let top = &f.candidates[0];
        assert_eq!(top.name, expected, "{query}: {:?}", f.candidates);
        assert!(top.distance < 0.6 && top.similarity_percent > 50.0, "{query}: {top:?}");
        // Best first by the crowding-corrected score; the distance is the plain one.
        assert!(f.candidates.windows(2).all(|w| w[0].score <= w[1].score), "{:?}", f.candidates);
        assert!(f.candidates.iter().all(|c| c.score < c.distance), "the correction is on by default");
        let face = f.face.as_ref().expect("face");
        assert_eq!(face.landmarks.len(), 5);
        assert!(face.quality.as_ref().is_some_and(|q| q.eye_distance_px > 10.0));
        assert_eq!(r.gallery_version, info.version);
        let t = r.timings.expect("timings");
        assert!(t.encode_ms > 0.0 && t.detect_ms > 0.0 && t.total_ms >= t.encode_ms);

        let id = c
            .get_identity(pb::GetIdentityRequest { identity_id: top.identity_id, omit_thumbnail: false })
            .await
            .expect("identity")
            .into_inner();
        assert_eq!(id.name, expected);
        assert_eq!(&id.thumbnail_jpeg[..2], &[0xFF, 0xD8], "thumbnail is a JPEG");
    }

    // Embed, then Match by the embedding: same answer as by the photo.
    let bytes = photo("lfw-dev/Hugo_Chavez/0002.jpg");
    let e = c
        .embed(pb::EmbedRequest { image: bytes.clone().into(), ..Default::default() })
        .await
        .expect("embed")
        .into_inner();
    assert_eq!(e.faces.len(), 1);
    let values = e.faces[0].embedding.as_ref().expect("embedding").values.clone();
    assert_eq!(values.len(), 128);
    let by_vec = c
        .r#match(pb::MatchRequest {
            query: Some(pb::match_request::Query::Embedding(pb::Embedding { values })),
            top_k: 2,
            ..Default::default()
        })
        .await
        .expect("match by embedding")
        .into_inner();
    let by_photo = c.r#match(match_image(bytes, 2)).await.expect("match").into_inner();
    assert_eq!(by_vec.faces[0].candidates, by_photo.faces[0].candidates);
    assert_eq!(by_vec.faces[0].candidates[0].name, "Hugo Chavez");

    // Unknown identity.
    let err = c.get_identity(pb::GetIdentityRequest { identity_id: 999, omit_thumbnail: true }).await.expect_err("404");
    assert_eq!(err.code(), tonic::Code::NotFound);

    // All faces of a group photo, left to right; max_distance filters candidates.
    let group = c
        .r#match(pb::MatchRequest {
            query: Some(pb::match_request::Query::Image(photo("scenes/group-t1.jpg").into())),
            faces: pb::FaceSelection::All as i32,
            max_faces: 20,
            top_k: 2,
            max_distance: 0.3,
            ..Default::default()
        })
        .await
        .expect("group")
        .into_inner();
    assert!(group.faces.len() >= 4);
    let lefts: Vec<i32> =
        group.faces.iter().map(|f| f.face.as_ref().and_then(|x| x.r#box).map(|b| b.left).unwrap_or(0)).collect();
    assert!(lefts.windows(2).all(|w| w[0] <= w[1]), "{lefts:?}");
    assert!(group.faces.iter().flat_map(|f| &f.candidates).all(|c| c.distance <= 0.3));

    // No face: an empty list, not an error.
    let none = c.r#match(match_image(photo("scenes/coffee.png"), 1)).await.expect("coffee").into_inner();
    assert!(none.faces.is_empty());
}

/// Mean absolute difference per channel between two same-size RGB images.
fn mean_abs_diff(a: &image::RgbImage, b: &image::RgbImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions());
    assert!(a.width() > 0);
    let sum: u64 = a.as_raw().iter().zip(b.as_raw()).map(|(x, y)| u64::from(x.abs_diff(*y))).sum();
    sum as f64 / a.as_raw().len() as f64
}

fn rgb(jpeg: &[u8]) -> image::RgbImage {
    image::load_from_memory(jpeg).expect("a decodable JPEG").to_rgb8()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chips_come_on_request_aligned_like_the_gallery_thumbnails() {
    let server = serving().await;
    let mut c = server.client().await;
    // Off by default: internal callers do not pay for them.
    let plain = c.r#match(match_image(photo("lfw-dev/Colin_Powell/0001.jpg"), 1)).await.expect("match").into_inner();
    assert_eq!(plain.faces.len(), 1);
    assert!(plain.faces[0].chip_jpeg.is_empty());

    // The gallery's own photo of Colin Powell: the chip is cut exactly like his thumbnail.
    let r = c
        .r#match(pb::MatchRequest { return_chips: true, ..match_image(photo("lfw-dev/Colin_Powell/0001.jpg"), 1) })
        .await
        .expect("match with chips")
        .into_inner();
    let f = &r.faces[0];
    let top = &f.candidates[0];
    assert_eq!(top.name, "Colin Powell");
    let chip = rgb(&f.chip_jpeg);
    assert_eq!(chip.dimensions(), (160, 160));
    let identity = |id| {
        let mut c = c.clone();
        async move {
            c.get_identity(pb::GetIdentityRequest { identity_id: id, omit_thumbnail: false })
                .await
                .expect("identity")
                .into_inner()
        }
    };
    let own = rgb(&identity(top.identity_id).await.thumbnail_jpeg);
    let same = mean_abs_diff(&chip, &own);
    assert!(same < 4.0, "the chip differs from the thumbnail of the same photo by {same:.2} per channel");
    let other_id = if top.identity_id == 0 { 1 } else { 0 };
    let other = mean_abs_diff(&chip, &rgb(&identity(other_id).await.thumbnail_jpeg));
    assert!(other > 5.0 * same.max(1.0), "another person's thumbnail: {other:.2} vs {same:.2}");

    // A group photo: one chip per face.
    let group = c
        .r#match(pb::MatchRequest {
            query: Some(pb::match_request::Query::Image(photo("scenes/group-t1.jpg").into())),
            faces: pb::FaceSelection::All as i32,
            max_faces: 20,
            return_chips: true,
            ..Default::default()
        })
        .await
        .expect("group")
        .into_inner();
    assert!(group.faces.len() >= 4);
    assert!(group.faces.iter().all(|f| rgb(&f.chip_jpeg).dimensions() == (160, 160)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn match_stream_answers_many_photos_in_order() {
    let server = serving().await;
    let mut c = server.client().await;
    let mut requests = Vec::new();
    let mut expected = Vec::new();
    for (dir, _) in common::PEOPLE.iter().filter(|(d, _)| d.starts_with("lfw-dev")) {
        let name = dir.rsplit('/').next().unwrap_or_default().replace('_', " ");
        for n in 2..=4 {
            let path = format!("{dir}/{n:04}.jpg");
            if common::faces_dir().join(&path).exists() {
                let mut r = match_image(photo(&path), 1);
                r.request_id = path.clone();
                requests.push(r);
                expected.push(name.clone());
            }
        }
    }
    // One bad item in the middle must not end the stream.
    let mut bad = match_image(b"not an image".to_vec(), 1);
    bad.request_id = "bad".into();
    requests.insert(3, bad);
    expected.insert(3, String::new());
    let n = requests.len();
    assert!(n >= 15);
    let mut stream = c.match_stream(tokio_stream::iter(requests)).await.expect("stream").into_inner();
    let mut got = Vec::new();
    while let Some(item) = stream.message().await.expect("stream item") {
        got.push(item);
    }
    assert_eq!(got.len(), n);
    let mut correct = 0;
    for (i, (item, want)) in got.iter().zip(&expected).enumerate() {
        assert_eq!(item.index as usize, i);
        match &item.outcome {
            Some(pb::match_result::Outcome::Response(r)) => {
                correct +=
                    usize::from(r.faces.first().and_then(|f| f.candidates.first()).is_some_and(|c| &c.name == want));
            }
            Some(pb::match_result::Outcome::Error(e)) => {
                assert_eq!(item.request_id, "bad");
                assert_eq!(e.code, tonic::Code::InvalidArgument as i32);
            }
            None => panic!("empty outcome"),
        }
    }
    // LFW's own photos: allow one miss among the hard ones.
    assert!(correct >= n - 2, "{correct}/{} correct", n - 1);
}

/// W3C trace context from the caller's metadata becomes the request's trace (logged with
/// the one line per request), so a gateway span is the parent of the matcher's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incoming_traceparent_is_continued_and_logged() {
    let server = serving().await;
    let mut c = server.client().await;
    let mut req = tonic::Request::new(match_image(photo("lfw-dev/Ariel_Sharon/0002.jpg"), 1));
    req.metadata_mut()
        .insert("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".parse().expect("ascii"));
    let r = c.r#match(req).await.expect("match").into_inner();
    assert_eq!(r.faces[0].candidates[0].name, "Ariel Sharon");
    let mut found = None;
    for _ in 0..50 {
        let log = server.log_text();
        if let Some(line) = log.lines().find(|l| l.contains("4bf92f3577b34da6a3ce929d0e0e4736")) {
            found = Some(line.to_string());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let line = found.unwrap_or_else(|| panic!("trace id not in the log:\n{}", server.log_text()));
    let v: serde_json::Value = serde_json::from_str(&line).expect("JSON log line");
    assert_eq!(v["method"], "Match");
    assert_eq!(v["code"], "OK");
    // The log never carries image bytes.
    assert!(server.log_text().len() < 20_000);
}

/// `LOOKALIKE_MIRROR=true`: Embed and Match use mirror-averaged embeddings (a little
/// different from the plain ones, the same person on top).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_option_changes_the_embedding_not_the_answer() {
    let plain = serving().await;
    let mirrored =
        Server::start_with_env(&common::people_gallery(), &["--workers", "1"], &[("LOOKALIKE_MIRROR", "true")]);
    mirrored.wait_serving().await;
    let bytes = photo("lfw-dev/Hugo_Chavez/0002.jpg");
    async fn embed(server: &Server, image: Vec<u8>) -> Vec<f32> {
        let r = server
            .client()
            .await
            .embed(pb::EmbedRequest { image: image.into(), ..Default::default() })
            .await
            .expect("embed");
        r.into_inner().faces[0].embedding.as_ref().expect("embedding").values.clone()
    }
    let (a, b) = (embed(&plain, bytes.clone()).await, embed(&mirrored, bytes.clone()).await);
    let d = a.iter().zip(&b).map(|(x, y)| (x - y) * (x - y)).sum::<f32>().sqrt();
    assert!(d > 1e-4 && d < 0.2, "distance between plain and mirror-averaged embeddings: {d}");
    let mut c = mirrored.client().await;
    let r = c.r#match(match_image(bytes.clone(), 1)).await.expect("match").into_inner();
    assert_eq!(r.faces[0].candidates[0].name, "Hugo Chavez");
}
