//! A real `matcher serve` process on a loopback port, with real models and galleries
//! built from ../shared/faces by the real `matcher gallery build`.
#![allow(dead_code)]

use lookalike_proto::v1::matcher_client::MatcherClient;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tonic::transport::Channel;

pub use lookalike_e2e::fixtures::{faces_dir, models_dir};

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_matcher")
}

pub fn photo(rel: &str) -> Vec<u8> {
    std::fs::read(faces_dir().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn scratch() -> &'static tempfile::TempDir {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("temp dir"))
}

pub use lookalike_e2e::ports::free_port;

pub struct Server {
    pub child: Child,
    pub addr: String,
    pub metrics_addr: String,
    pub log: PathBuf,
}

impl Server {
    pub fn start(gallery: &Path, extra: &[&str]) -> Server {
        Self::start_with_env(gallery, extra, &[])
    }

    pub fn start_with_env(gallery: &Path, extra: &[&str], envs: &[(&str, &str)]) -> Server {
        let port = free_port();
        let metrics_port = free_port();
        let log = scratch().path().join(format!("server-{port}.log"));
        let child = Command::new(bin())
            .arg("serve")
            .arg("--gallery")
            .arg(gallery)
            .args(["--listen", &format!("127.0.0.1:{port}"), "--metrics-listen", &format!("127.0.0.1:{metrics_port}")])
            .args(extra)
            .env("LOOKALIKE_MODELS", models_dir())
            .env("OPENBLAS_NUM_THREADS", "1")
            .envs(envs.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn matcher serve");
        Server {
            child,
            addr: format!("http://127.0.0.1:{port}"),
            metrics_addr: format!("127.0.0.1:{metrics_port}"),
            log,
        }
    }

    pub async fn client(&self) -> MatcherClient<Channel> {
        let channel = Channel::from_shared(self.addr.clone()).expect("uri").connect().await.expect("connect");
        MatcherClient::new(channel).max_decoding_message_size(64 << 20).max_encoding_message_size(64 << 20)
    }

    /// Waits until grpc.health.v1 says SERVING.
    pub async fn wait_serving(&self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            assert!(Instant::now() < deadline, "server did not become SERVING; log:\n{}", self.log_text());
            assert!(!self.exited(), "server exited before SERVING; log:\n{}", self.log_text());
            if let Ok(ch) = Channel::from_shared(self.addr.clone()).expect("uri").connect().await {
                let mut h = tonic_health::pb::health_client::HealthClient::new(ch);
                if let Ok(r) = h.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await {
                    if r.into_inner().status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32 {
                        return;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The child has exited (a zombie until waited for; `try_wait` would need `&mut`).
    fn exited(&self) -> bool {
        std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
            .map(|stat| stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with(['Z', 'X'])))
            .unwrap_or(true)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill").args([&format!("-{sig}"), &self.child.id().to_string()]).status().expect("kill");
        assert!(ok.success());
    }

    pub fn metrics(&self) -> String {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&self.metrics_addr).expect("metrics connect");
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").expect("write");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }

    /// Peak resident memory (VmHWM) of the server, in MiB.
    pub fn peak_rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
            .unwrap_or(0.0)
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn match_image(bytes: Vec<u8>, top_k: u32) -> lookalike_proto::v1::MatchRequest {
    lookalike_proto::v1::MatchRequest {
        query: Some(lookalike_proto::v1::match_request::Query::Image(bytes.into())),
        top_k,
        ..Default::default()
    }
}

/// People in the test gallery: (folder under ../shared/faces, gallery photo).
pub const PEOPLE: &[(&str, &str)] = &[
    ("lfw-dev/George_W_Bush", "0001.jpg"),
    ("lfw-dev/Colin_Powell", "0001.jpg"),
    ("lfw-dev/Tony_Blair", "0001.jpg"),
    ("lfw-dev/Ariel_Sharon", "0001.jpg"),
    ("lfw-dev/Hugo_Chavez", "0001.jpg"),
    ("lfw-dev/Jean_Chretien", "0001.jpg"),
    ("lfw-dev/Joseph_Biden", "0001.jpg"),
    ("named/face_recognition/Barack_Obama", "1.jpg"),
    ("named/face_recognition/Kit_Harington", "1.jpg"),
    ("named/face_recognition/Rose_Leslie", "1.jpg"),
];

/// A gallery of [`PEOPLE`], one photo each (built once per test binary); queries use
/// their *other* photos.
pub fn people_gallery() -> PathBuf {
    static G: OnceLock<PathBuf> = OnceLock::new();
    G.get_or_init(|| {
        let photos = scratch().path().join("people");
        for (dir, file) in PEOPLE {
            let name = Path::new(dir).file_name().expect("name");
            std::fs::create_dir_all(photos.join(name)).expect("mkdir");
            std::fs::copy(faces_dir().join(dir).join(file), photos.join(name).join(file)).expect("copy");
        }
        build_gallery(&photos, "people.lkg")
    })
    .clone()
}

pub fn build_gallery(photos: &Path, name: &str) -> PathBuf {
    let out = scratch().path().join(name);
    let status = Command::new(bin())
        .args(["gallery", "build", "--quiet", "--jitters", "0", "--photos"])
        .arg(photos)
        .arg("--out")
        .arg(&out)
        .env("LOOKALIKE_MODELS", models_dir())
        .stdout(Stdio::null())
        .status()
        .expect("run matcher gallery build");
    assert!(status.success(), "gallery build failed for {}", photos.display());
    out
}

pub fn scratch_dir() -> &'static Path {
    scratch().path()
}
