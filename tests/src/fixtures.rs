//! Test fixtures: real face photos, a small gallery built once per test run, and helpers
//! that start the matcher and the gateway wired to a fake Telegram.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use image::DynamicImage;
use lookalike_proto::v1::matcher_client::MatcherClient;
use lookalike_proto::v1::{match_request, MatchRequest};
use tokio::process::Command;
use tokio::sync::{Mutex, MutexGuard, OnceCell};

use crate::fake_telegram::{FakeTelegram, FileRef};
use crate::procs::{bin_dir, binary, free_port, repo_root, Logs, Process};

/// The bot token every test uses; it must never show up in the gateway's output.
pub const TOKEN: &str = "7000000001:AAHe2e-SECRET_token_value_0123456789";
/// Where the secret part starts: what the leak checks look for.
pub const TOKEN_SECRET_PART: &str = "AAHe2e-SECRET_token_value_0123456789";

/// Photos held out of the gallery, to query with (a gallery photo would match itself).
pub const OBAMA_QUERY: &str = "tg1280/Barack_Obama/1.jpg";
pub const KIT_QUERY: &str = "tg1280/Kit_Harington/1.jpg";

/// The e2e tests start real processes with real models on a small machine: one at a time
/// keeps both the machine and the rate measurements sane.
static SERIAL: LazyLock<Mutex<()>> = LazyLock::new(|| Mutex::new(()));

pub async fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().await
}

/// `$LOOKALIKE_FACES` or `<repo>/../shared/faces`.
pub fn faces_dir() -> PathBuf {
    std::env::var("LOOKALIKE_FACES").map(PathBuf::from).unwrap_or_else(|_| repo_root().join("../shared/faces"))
}

pub fn face(rel: &str) -> PathBuf {
    faces_dir().join(rel)
}

pub fn models_dir() -> PathBuf {
    std::env::var("LOOKALIKE_MODELS").map(PathBuf::from).unwrap_or_else(|_| repo_root().join("assets/models"))
}

fn scratch_dir() -> PathBuf {
    bin_dir().join("e2e-fixtures")
}

static GALLERY: OnceCell<PathBuf> = OnceCell::const_new();

/// The test gallery: `tg1280/` (12 people) minus the query photos, no jitter. Built once
/// per test process.
pub async fn gallery() -> anyhow::Result<PathBuf> {
    GALLERY.get_or_try_init(build_gallery).await.cloned()
}

async fn build_gallery() -> anyhow::Result<PathBuf> {
    let src = faces_dir().join("tg1280");
    let dir = scratch_dir();
    let photos = dir.join("gallery-photos");
    let _ = std::fs::remove_dir_all(&photos);
    std::fs::create_dir_all(&photos)?;
    let held_out = [face(OBAMA_QUERY), face(KIT_QUERY)];
    let mut catalog = Vec::new();
    for person in std::fs::read_dir(&src).with_context(|| format!("reading {}", src.display()))? {
        let person = person?.path();
        let name = person.file_name().context("person dir name")?.to_owned();
        std::fs::create_dir_all(photos.join(&name))?;
        let mut files = Vec::new();
        for photo in std::fs::read_dir(&person)? {
            let photo = photo?.path();
            if held_out.iter().any(|h| h == &photo) {
                continue;
            }
            let fname = photo.file_name().context("photo name")?;
            std::os::unix::fs::symlink(&photo, photos.join(&name).join(fname))?;
            files.push(fname.to_string_lossy().into_owned());
        }
        catalog.push(catalog_entry(&name.to_string_lossy(), &files));
    }
    let catalog_path = dir.join("catalog.json");
    std::fs::write(&catalog_path, serde_json::to_vec_pretty(&catalog)?)?;
    let out = dir.join("gallery.lkg");
    let started = Instant::now();
    let status = Command::new(binary("matcher")?)
        .env("LOOKALIKE_MODELS", models_dir())
        .args(["gallery", "build", "--jitters", "0", "--quiet", "--photos"])
        .arg(&photos)
        .arg("--catalog")
        .arg(&catalog_path)
        .arg("--out")
        .arg(&out)
        .status()
        .await
        .context("running matcher gallery build")?;
    if !status.success() {
        bail!("matcher gallery build failed: {status}");
    }
    eprintln!("e2e: gallery built in {:.1}s", started.elapsed().as_secs_f64());
    Ok(out)
}

/// The credit the test catalog gives Barack Obama's gallery photos (test data, in the shape
/// the photo fetcher writes from Wikimedia Commons' `extmetadata`: Artist, LicenseShortName,
/// LicenseUrl and the file's description page).
pub const OBAMA_CREDIT_AUTHOR: &str = "E2E Test Photographer";
pub const OBAMA_CREDIT_LICENSE: &str = "CC BY-SA 4.0";
pub const OBAMA_CREDIT_SOURCE: &str = "https://commons.wikimedia.org/wiki/File:E2E_test_Obama.jpg";

/// A catalog entry in the original service's shape, named like the folder ("Barack_Obama"
/// -> "Barack Obama", alias "barack-obama", as the gallery names folders without a catalog);
/// Barack Obama's photos carry [`OBAMA_CREDIT_AUTHOR`]'s credit, the others none.
fn catalog_entry(folder: &str, files: &[String]) -> serde_json::Value {
    let name = folder.replace('_', " ");
    let alias = name.to_lowercase().replace(' ', "-");
    let photos: Vec<serde_json::Value> = if folder == "Barack_Obama" {
        files
            .iter()
            .map(|f| {
                serde_json::json!({
                    "file": f,
                    "author": OBAMA_CREDIT_AUTHOR,
                    "license": OBAMA_CREDIT_LICENSE,
                    "license_url": "https://creativecommons.org/licenses/by-sa/4.0",
                    "source_url": OBAMA_CREDIT_SOURCE,
                })
            })
            .collect()
    } else {
        Vec::new()
    };
    serde_json::json!({"name": name, "alias": alias, "role": "", "n_movies": 0, "photos": photos})
}

/// A running matcher.
pub struct Matcher {
    pub process: Process,
    pub port: u16,
}

impl Matcher {
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts `matcher serve` (on `port`, or a free one) and waits until it answers.
    pub async fn start(port: Option<u16>) -> anyhow::Result<Self> {
        let gallery = gallery().await?;
        let port = port.unwrap_or_else(free_port);
        let mut cmd = Command::new(binary("matcher")?);
        cmd.env("LOOKALIKE_MODELS", models_dir())
            .env("RUST_LOG", "info")
            .args(["serve", "--log-format", "text", "--workers", "2", "--queue", "1024"])
            .arg("--gallery")
            .arg(&gallery)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--metrics-listen")
            .arg(format!("127.0.0.1:{}", free_port()));
        let mut process = Process::spawn("matcher", cmd, Logs::default())?;
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(240);
        loop {
            // Ready = models loaded: a Match on a non-image is refused as INVALID_ARGUMENT
            // instead of UNAVAILABLE ("still loading").
            if let Ok(mut c) = MatcherClient::connect(url.clone()).await {
                let probe = MatchRequest {
                    query: Some(match_request::Query::Image(bytes::Bytes::from_static(b"x"))),
                    ..Default::default()
                };
                match c.r#match(probe).await {
                    Ok(_) => break,
                    Err(s) if s.code() != tonic::Code::Unavailable => break,
                    Err(_) => {}
                }
            }
            if let Some(status) = process.try_exit() {
                bail!("matcher exited ({status}):\n{}", process.logs.text());
            }
            if Instant::now() > deadline {
                bail!("matcher not ready in time:\n{}", process.logs.text());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(Self { process, port })
    }

    pub async fn stop(&mut self) {
        self.process.terminate(Duration::from_secs(30)).await;
    }
}

/// A running gateway.
pub struct Gateway {
    pub process: Process,
    pub metrics_port: u16,
}

/// Gateway settings that differ between tests.
#[derive(Debug, Clone)]
pub struct GatewayOptions {
    pub args: Vec<String>,
    pub logs: Logs,
    /// Log line that means "ready".
    pub ready_log: &'static str,
}

impl Default for GatewayOptions {
    fn default() -> Self {
        Self { args: Vec::new(), logs: Logs::default(), ready_log: "polling for updates" }
    }
}

impl GatewayOptions {
    pub fn arg(mut self, name: &str, value: impl ToString) -> Self {
        self.args.push(name.to_owned());
        self.args.push(value.to_string());
        self
    }
}

impl Gateway {
    pub async fn start(tg: &FakeTelegram, matcher_url: &str, opts: GatewayOptions) -> anyhow::Result<Self> {
        let metrics_port = free_port();
        let mut cmd = Command::new(binary("tg-gateway")?);
        cmd.env("TELEGRAM_BOT_TOKEN", TOKEN)
            .env("TELEGRAM_API_URL", tg.url())
            .env("LOOKALIKE_MATCHER_URL", matcher_url)
            .env("GATEWAY_METRICS_LISTEN", format!("127.0.0.1:{metrics_port}"))
            .env("GATEWAY_POLL_TIMEOUT_SECS", "10")
            // Debug level for our own crate: the token must not leak there either.
            .env("RUST_LOG", "info,tg_gateway=debug")
            .args(&opts.args);
        let mut process = Process::spawn("gateway", cmd, opts.logs.clone())?;
        process.wait_for_log(opts.ready_log, Duration::from_secs(60)).await?;
        Ok(Self { process, metrics_port })
    }

    /// Fails if the token's secret part appears anywhere in the gateway's output.
    pub fn assert_no_token(&self) {
        assert_no_token(&self.process.logs);
    }

    /// `overhead_us` of every "update handled" line.
    pub fn overheads_us(&self) -> Vec<u64> {
        self.process
            .logs
            .lines()
            .iter()
            .filter(|l| l.contains("update handled"))
            .filter_map(|l| field(l, "overhead_us"))
            .collect()
    }

    /// A probe of the metrics server (`/healthz`, `/livez`, `/readyz`): HTTP status and body.
    pub async fn probe(&self, path: &str) -> anyhow::Result<(u16, String)> {
        let r = reqwest::get(format!("http://127.0.0.1:{}{path}", self.metrics_port)).await?;
        Ok((r.status().as_u16(), r.text().await?))
    }

    pub async fn metrics(&self) -> anyhow::Result<String> {
        Ok(reqwest::get(format!("http://127.0.0.1:{}/metrics", self.metrics_port)).await?.text().await?)
    }
}

pub fn assert_no_token(logs: &Logs) {
    let text = logs.text();
    assert!(!text.is_empty(), "no gateway output captured");
    assert!(!text.contains(TOKEN_SECRET_PART), "the bot token appears in the gateway logs");
}

/// The numeric value of `name=123` in a text log line.
pub fn field(line: &str, name: &str) -> Option<u64> {
    let start = line.find(&format!("{name}="))? + name.len() + 1;
    let digits: String = line[start..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

pub fn load_image(path: &Path) -> anyhow::Result<DynamicImage> {
    image::open(path).with_context(|| format!("opening {}", path.display()))
}

/// The image scaled so its longer side is `long_side`, as JPEG (quality 87, like
/// Telegram's own re-encoding); with its size.
pub fn jpeg_variant(img: &DynamicImage, long_side: u32) -> anyhow::Result<(Vec<u8>, u32, u32)> {
    let scaled = if img.width().max(img.height()) > long_side {
        img.resize(long_side, long_side, image::imageops::FilterType::Triangle)
    } else {
        img.clone()
    };
    let mut out = Vec::new();
    let rgb = DynamicImage::ImageRgb8(scaled.to_rgb8());
    rgb.write_with_encoder(image::codecs::jpeg::JpegEncoder::new_with_quality(&mut Cursor::new(&mut out), 87))?;
    Ok((out, scaled.width(), scaled.height()))
}

/// Registers Telegram-style variants of a photo (longer side 90, 320, 800, 1280 as far as
/// the original allows), smallest first.
pub fn photo_sizes(tg: &FakeTelegram, path: &Path, sides: &[u32]) -> anyhow::Result<Vec<(FileRef, u32, u32)>> {
    let img = load_image(path)?;
    let mut out = Vec::new();
    for &side in sides {
        let (bytes, w, h) = jpeg_variant(&img, side)?;
        out.push((tg.add_file(bytes, None), w, h));
    }
    Ok(out)
}

/// Most events in any window of `window` seconds (times in seconds, any order).
pub fn max_in_window(times: &[f64], window: f64) -> usize {
    let mut t = times.to_vec();
    t.sort_by(f64::total_cmp);
    let mut best = 0;
    let mut lo = 0;
    for hi in 0..t.len() {
        while t[hi] - t[lo] >= window {
            lo += 1;
        }
        best = best.max(hi - lo + 1);
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_counting() {
        assert_eq!(max_in_window(&[], 1.0), 0);
        assert_eq!(max_in_window(&[0.0, 0.5, 0.99, 1.0, 1.5], 1.0), 3);
        assert_eq!(max_in_window(&[0.0, 1.0, 2.0], 1.0), 1);
    }

    #[test]
    fn log_fields() {
        assert_eq!(field("x overhead_us=123 y", "overhead_us"), Some(123));
        assert_eq!(field("x", "overhead_us"), None);
    }
}
