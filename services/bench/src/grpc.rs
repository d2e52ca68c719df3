//! The gRPC load generator: starts `matcher serve`, sends `Match` calls from C concurrent
//! clients in a closed loop, and reports throughput, latency percentiles, the refused share
//! and the server's resident memory; plus the in-process engine with the same workers on
//! the same photos, for the ratio.

use crate::common::*;
use crate::engine_bench::{engine_pass, load_gallery, photo_paths};
use anyhow::{bail, Context, Result};
use lookalike_engine::{DetectConfig, Models};
use lookalike_proto::v1::match_request::Query;
use lookalike_proto::v1::matcher_client::MatcherClient;
use lookalike_proto::v1::{GetGalleryInfoRequest, MatchRequest};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

#[derive(Debug, clap::Args)]
pub struct GrpcArgs {
    /// The `matcher` binary.
    #[arg(long)]
    pub matcher: PathBuf,
    #[arg(long)]
    pub gallery: PathBuf,
    #[arg(long)]
    pub photos: PathBuf,
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    pub workers: Vec<usize>,
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8,16")]
    pub concurrency: Vec<usize>,
    /// Measured seconds per concurrency level (after the warm-up).
    #[arg(long, default_value_t = 15.0)]
    pub seconds: f64,
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// Server queue capacity (default: the server's, 2 x workers).
    #[arg(long)]
    pub queue: Option<usize>,
    /// A refused client waits this long before its next call (a client's backoff).
    #[arg(long, default_value_t = 50)]
    pub backoff_ms: u64,
    /// Passes over the photos for the in-process comparison.
    #[arg(long, default_value_t = 2)]
    pub passes: usize,
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// A `matcher serve` child, stopped (SIGTERM, then killed after 10 s) when dropped.
pub(crate) struct Server {
    pub(crate) child: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn memory(pid: u32) -> serde_json::Value {
    let p = pid.to_string();
    json!({
        "vm_rss_mb": proc_status_kb(&p, "VmRSS").map(|k| k as f64 / 1024.0),
        "vm_hwm_mb": proc_status_kb(&p, "VmHWM").map(|k| k as f64 / 1024.0),
        "threads": proc_status_kb(&p, "Threads"),
    })
}

#[derive(Default)]
struct LevelStats {
    ok_in_window: usize,
    refused: usize,
    errors: usize,
    attempts: usize,
    latencies_ms: Vec<f64>,
    first_error: Option<String>,
}

async fn run_level(
    client: MatcherClient<Channel>,
    photos: Arc<Vec<Vec<u8>>>,
    conc: usize,
    warmup: Duration,
    measure: Duration,
    backoff: Duration,
) -> LevelStats {
    let start = Instant::now();
    let (w0, w1) = (start + warmup, start + warmup + measure);
    let next = Arc::new(AtomicUsize::new(0));
    let stats = Arc::new(Mutex::new(LevelStats::default()));
    let mut tasks = Vec::new();
    for _ in 0..conc {
        let (mut client, photos, next, stats) = (client.clone(), photos.clone(), next.clone(), stats.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < w1 {
                let i = next.fetch_add(1, Ordering::Relaxed) % photos.len();
                let req = MatchRequest {
                    query: Some(Query::Image(photos[i].clone().into())),
                    top_k: 1,
                    ..Default::default()
                };
                let sent = Instant::now();
                let r = client.r#match(req).await;
                let done = Instant::now();
                let in_window = sent >= w0 && done <= w1;
                let refused = {
                    let mut s = stats.lock().unwrap_or_else(|p| p.into_inner());
                    if sent >= w0 && sent < w1 {
                        s.attempts += 1;
                    }
                    match r {
                        Ok(_) => {
                            if done >= w0 && done <= w1 {
                                s.ok_in_window += 1;
                            }
                            if in_window {
                                s.latencies_ms.push(ms(done - sent));
                            }
                            false
                        }
                        Err(st) if st.code() == tonic::Code::ResourceExhausted => {
                            if sent >= w0 && sent < w1 {
                                s.refused += 1;
                            }
                            true
                        }
                        Err(st) => {
                            s.errors += 1;
                            s.first_error.get_or_insert_with(|| format!("{:?}: {}", st.code(), st.message()));
                            false
                        }
                    }
                };
                if refused {
                    tokio::time::sleep(backoff).await;
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    Arc::try_unwrap(stats).map(|m| m.into_inner().unwrap_or_else(|p| p.into_inner())).unwrap_or_default()
}

fn start_server(args: &GrpcArgs, models_dir: &Path, workers: usize, port: u16, log: &Path) -> Result<Server> {
    let logf = std::fs::File::create(log)?;
    let mut cmd = Command::new(&args.matcher);
    cmd.env("LOOKALIKE_MODELS", models_dir)
        .arg("serve")
        .arg("--gallery")
        .arg(&args.gallery)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--metrics-listen")
        .arg("")
        .arg("--workers")
        .arg(workers.to_string())
        .arg("--watch-interval")
        .arg("0")
        .arg("--log-format")
        .arg("text")
        .stdin(Stdio::null())
        .stdout(logf.try_clone()?)
        .stderr(logf);
    if let Some(q) = args.queue {
        cmd.arg("--queue").arg(q.to_string());
    }
    let child = cmd.spawn().with_context(|| format!("starting {}", args.matcher.display()))?;
    Ok(Server { child })
}

pub fn grpc(args: GrpcArgs, models_dir: &Path) -> Result<()> {
    let paths = photo_paths(&args.photos)?;
    let photos: Arc<Vec<Vec<u8>>> = Arc::new(paths.iter().map(std::fs::read).collect::<Result<_, _>>()?);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let mut per_workers = Vec::new();
    for &workers in &args.workers {
        // In-process engine, same workers, same photos, same gallery.
        let inproc = {
            let models = Models::load(models_dir)?;
            let gallery = load_gallery(&args.gallery)?;
            engine_pass(&models, &gallery, DetectConfig::default(), workers, &paths[..paths.len().min(8)], 1, false);
            engine_pass(&models, &gallery, DetectConfig::default(), workers, &paths, args.passes, false)
                .photos_per_second
        };
        let port = lookalike_e2e::ports::free_port();
        let log = std::env::temp_dir().join(format!("lookalike-bench-serve-{port}.log"));
        let server = start_server(&args, models_dir, workers, port, &log)?;
        let pid = server.child.id();
        let levels = rt.block_on(async {
            let url = format!("http://127.0.0.1:{port}");
            let t = Instant::now();
            let client = loop {
                if t.elapsed() > Duration::from_secs(120) {
                    bail!("the server did not become ready in 120 s (log: {})", log.display());
                }
                if let Ok(ch) = Channel::from_shared(url.clone())?.connect().await {
                    let mut c = MatcherClient::new(ch);
                    if let Ok(info) = c.get_gallery_info(GetGalleryInfoRequest {}).await {
                        if info.get_ref().workers > 0 {
                            break c;
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            };
            let ready_s = t.elapsed().as_secs_f64();
            let mem_loaded = memory(pid);
            let info = client.clone().get_gallery_info(GetGalleryInfoRequest {}).await?.into_inner();
            let mut levels = Vec::new();
            for &c in &args.concurrency {
                let s = run_level(
                    client.clone(),
                    photos.clone(),
                    c,
                    Duration::from_secs_f64(args.warmup),
                    Duration::from_secs_f64(args.seconds),
                    Duration::from_millis(args.backoff_ms),
                )
                .await;
                let thr = s.ok_in_window as f64 / args.seconds;
                eprintln!("  grpc: workers {workers} concurrency {c}: {thr:.2} photos/s");
                levels.push(json!({
                    "concurrency": c, "photos_per_second": thr, "ratio_to_in_process": thr / inproc,
                    "p50_ms": median(&s.latencies_ms), "p99_ms": percentile(&s.latencies_ms, 99.0),
                    "completed": s.latencies_ms.len(), "attempts": s.attempts, "refused": s.refused,
                    "refused_share": s.refused as f64 / s.attempts.max(1) as f64,
                    "errors": s.errors, "first_error": s.first_error,
                }));
            }
            let mem_after = memory(pid);
            Ok(json!({
                "workers": workers, "queue_capacity": info.queue_capacity, "gallery_embeddings": info.embeddings,
                "index": info.index_kind, "ready_seconds": ready_s,
                "in_process_photos_per_second": inproc,
                "memory_after_load": mem_loaded, "memory_after_load_run": mem_after,
                "levels": levels,
            }))
        })?;
        drop(server);
        per_workers.push(levels);
    }
    let v = json!({
        "photos": paths.len(), "seconds_per_level": args.seconds, "warmup_seconds": args.warmup,
        "backoff_ms_after_refusal": args.backoff_ms, "servers": per_workers,
    });
    emit(&v, args.json.as_deref())
}
