//! The Python client in examples/python, generated from the proto with grpcio-tools, calls
//! a real server. scripts/test.sh provides a Python with grpcio (LOOKALIKE_PYTHON).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed expectation is the report

mod common;

use common::Server;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_generated_from_the_proto_calls_match() {
    let python = std::env::var("LOOKALIKE_PYTHON").unwrap_or_else(|_| "python3".into());
    let server = Server::start(&common::people_gallery(), &["--workers", "1"]);
    server.wait_serving().await;
    let addr = server.addr.trim_start_matches("http://").to_string();
    let script = lookalike_e2e::procs::repo_root().join("examples/python/match_client.py");
    let out = tokio::process::Command::new(&python)
        .arg(&script)
        .args(["--addr", &addr, "--top-k", "2"])
        .arg(common::faces_dir().join("lfw-dev/Jean_Chretien/0002.jpg"))
        .arg(common::faces_dir().join("scenes/rocket.jpg"))
        .output()
        .await
        .unwrap_or_else(|e| {
            panic!("cannot run {python} (grpcio, grpcio-tools needed; scripts/test.sh installs them): {e}")
        });
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "python client failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<serde_json::Value> = stdout.lines().map(|l| serde_json::from_str(l).expect("JSON line")).collect();
    assert_eq!(lines[0]["identities"], 10);
    assert_eq!(lines[1]["faces"][0]["candidates"][0]["name"], "Jean Chretien", "{stdout}");
    assert_eq!(lines[2]["faces"].as_array().map(Vec::len), Some(0), "{stdout}");
}
