//! The cost of the worst photos, per kind, for one or more `matcher` builds in the same run
//! (issue 10): for each input of `lookalike_e2e::worst` a fresh `matcher serve` (2 workers,
//! the given pixel cap) gets the same photo from C concurrent callers, R rounds each. Reported
//! per kind: the server's peak memory over its resting memory (VmHWM; the resting figure is
//! taken after a warm-up selfie), its CPU time per analysed photo (utime + stime of the whole
//! process over the photos answered), the answers by status, and the resident memory left
//! 3 s after the flood. Builds that predate the memory budget ignore its variable.

use crate::common::*;
use crate::grpc::Server;
use anyhow::{bail, Context, Result};
use lookalike_e2e::worst::{size_pairs, worst_inputs, WorstInput};
use lookalike_proto::v1 as pb;
use lookalike_proto::v1::matcher_client::MatcherClient;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

#[derive(Debug, clap::Args)]
pub struct FloodArgs {
    /// `LABEL=PATH [ARGS...]`: a `matcher` binary and any extra `serve` flags (split at
    /// spaces), e.g. `nocnn=target/release/matcher --cnn-max-side 0`; repeat to compare
    /// builds or settings in one run.
    #[arg(long, required = true)]
    pub matcher: Vec<String>,
    #[arg(long)]
    pub gallery: PathBuf,
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Concurrent callers, each sending every round's photo.
    #[arg(long, default_value_t = 6)]
    pub callers: usize,
    #[arg(long, default_value_t = 2)]
    pub rounds: usize,
    #[arg(long, default_value_t = 40_000_000)]
    pub max_pixels: u64,
    /// LOOKALIKE_MEMORY_BUDGET_MB for the servers (0 = none).
    #[arg(long, default_value_t = 0)]
    pub budget_mb: u64,
    /// Only inputs up to this many megapixels (16 or 40).
    #[arg(long, default_value_t = 40)]
    pub max_megapixels: u32,
    /// Also photos with and without a face at 250 and 1280 px (`worst::size_pairs`).
    #[arg(long)]
    pub sizes: bool,
    #[arg(long)]
    pub json: Option<PathBuf>,
}

fn cpu_seconds(pid: u32) -> f64 {
    // /proc/<pid>/stat: fields 14 and 15 (utime, stime) in clock ticks, after the ")" of
    // the command name; the kernel's USER_HZ is 100 on every Linux configuration.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    // After ")" come state (field 3), ppid (4), ...: utime (14) and stime (15) are the 12th
    // and 13th of what follows.
    let field = |i: usize| rest.split_whitespace().nth(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (field(11) + field(12)) / 100.0
}

fn mb(pid: u32, field: &str) -> f64 {
    proc_status_kb(&pid.to_string(), field).unwrap_or(0) as f64 / 1024.0
}

/// One `--matcher` spec: its label, binary and extra `serve` flags.
struct Build<'a> {
    label: &'a str,
    bin: &'a Path,
    extra: Vec<&'a str>,
}

fn parse_build(spec: &str) -> Result<Build<'_>> {
    let (label, rest) = spec.split_once('=').context("--matcher wants LABEL=PATH [ARGS...]")?;
    let mut words = rest.split_whitespace();
    let bin = Path::new(words.next().context("--matcher wants a path after LABEL=")?);
    Ok(Build { label, bin, extra: words.collect() })
}

fn start(build: &Build<'_>, args: &FloodArgs, models: &Path, port: u16) -> Result<Server> {
    let child = Command::new(build.bin)
        .env("LOOKALIKE_MODELS", models)
        .env("LOOKALIKE_MEMORY_BUDGET_MB", args.budget_mb.to_string())
        .env("OPENBLAS_NUM_THREADS", "1")
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--metrics-listen", "", "--watch-interval", "0"])
        .arg("--gallery")
        .arg(&args.gallery)
        .args(["--workers", &args.workers.to_string(), "--max-image-pixels", &args.max_pixels.to_string()])
        .args(["--queue", &(args.callers * 2).to_string(), "--log-format", "text"])
        .args(&build.extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", build.bin.display()))?;
    Ok(Server { child })
}

async fn connect(port: u16) -> Result<MatcherClient<Channel>> {
    let t = Instant::now();
    loop {
        if t.elapsed() > Duration::from_secs(120) {
            bail!("the server did not become ready in 120 s");
        }
        if let Ok(ch) = Channel::from_shared(format!("http://127.0.0.1:{port}"))?.connect().await {
            let mut c = MatcherClient::new(ch).max_decoding_message_size(64 << 20).max_encoding_message_size(64 << 20);
            if c.get_gallery_info(pb::GetGalleryInfoRequest {}).await.is_ok_and(|i| i.get_ref().workers > 0) {
                return Ok(c);
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn request(input: &WorstInput) -> pb::MatchRequest {
    pb::MatchRequest {
        query: Some(pb::match_request::Query::Image(input.bytes.clone().into())),
        top_k: 1,
        faces: if input.all_faces { pb::FaceSelection::All as i32 } else { 0 },
        return_chips: input.all_faces,
        ..Default::default()
    }
}

async fn one_kind(
    build: &Build<'_>,
    args: &FloodArgs,
    models: &Path,
    input: &WorstInput,
    selfie: &WorstInput,
) -> Result<serde_json::Value> {
    let port = lookalike_e2e::ports::free_port();
    let server = start(build, args, models, port)?;
    let pid = server.child.id();
    let client = connect(port).await?;
    client.clone().r#match(request(selfie)).await.context("warm-up selfie")?;
    let resting = mb(pid, "VmRSS");
    let cpu0 = cpu_seconds(pid);
    let t = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.callers {
        let (mut c, input, rounds) = (client.clone(), input.clone(), args.rounds);
        tasks.push(tokio::spawn(async move {
            let mut codes = Vec::new();
            for _ in 0..rounds {
                let code = match c.r#match(request(&input)).await {
                    Ok(_) => tonic::Code::Ok,
                    Err(s) => s.code(),
                };
                codes.push(code);
            }
            codes
        }));
    }
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for task in tasks {
        for code in task.await? {
            *counts.entry(format!("{code:?}")).or_default() += 1;
        }
    }
    let wall = t.elapsed().as_secs_f64();
    let cpu = cpu_seconds(pid) - cpu0;
    let peak = mb(pid, "VmHWM");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = mb(pid, "VmRSS");
    drop(server);
    let ok = counts.get("Ok").copied().unwrap_or(0);
    Ok(json!({
        "input": input.name, "resting_mb": resting, "peak_mb": peak, "peak_over_resting_mb": peak - resting,
        "rss_3s_after_mb": after, "cpu_ms_per_photo": if ok > 0 { cpu * 1e3 / ok as f64 } else { f64::NAN },
        "wall_s": wall, "answers": counts,
    }))
}

pub fn flood(args: FloodArgs, models_dir: &Path) -> Result<()> {
    let mut inputs = worst_inputs(args.max_megapixels)?;
    if args.sizes {
        inputs.extend(size_pairs()?);
    }
    let selfie = inputs.iter().find(|i| i.name.contains("1280")).cloned().context("the selfie input")?;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let mut builds = Vec::new();
    let mut table = String::from("| input | build | peak over resting MB | RSS 3 s after MB | CPU ms per photo | answers |\n|---|---|---|---|---|---|\n");
    for spec in &args.matcher {
        let build = parse_build(spec)?;
        let label = build.label;
        let mut rows = Vec::new();
        for input in &inputs {
            let row = rt.block_on(one_kind(&build, &args, models_dir, input, &selfie))?;
            eprintln!("  flood: {label}: {row}");
            table += &format!(
                "| {} | {label} | {:.0} | {:.0} | {:.0} | {} |\n",
                input.name,
                row["peak_over_resting_mb"].as_f64().unwrap_or(f64::NAN),
                row["rss_3s_after_mb"].as_f64().unwrap_or(f64::NAN),
                row["cpu_ms_per_photo"].as_f64().unwrap_or(f64::NAN),
                row["answers"]
            );
            rows.push(row);
        }
        builds.push(json!({"label": label, "matcher": build.bin, "args": build.extra, "rows": rows}));
    }
    println!("{table}");
    let v = json!({
        "workers": args.workers, "callers": args.callers, "rounds": args.rounds, "max_pixels": args.max_pixels,
        "budget_mb": args.budget_mb, "builds": builds, "markdown": table,
    });
    emit(&v, args.json.as_deref())
}
