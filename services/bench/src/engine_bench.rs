//! In-process engine benchmarks: photos per second with N workers, per-stage latency by
//! photo size, gallery build throughput.

use crate::common::*;
use anyhow::{Context, Result};
use image::{imageops, RgbImage};
use lookalike_engine::gallery::build::{build, BuildConfig};
use lookalike_engine::gallery::catalog;
use lookalike_engine::parallel::map_items;
use lookalike_engine::{
    AnalyzeOptions, DecodeLimits, DetectConfig, FaceAnalyzer, Gallery, HnswParams, Models, SearchMode,
};
use lookalike_matcher::matching::{match_photo, FaceSelection, MatchQuery, Photo};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Every photo under `dir` (`<Person>/<photo>`), sorted.
pub fn photo_paths(dir: &Path) -> Result<Vec<PathBuf>> {
    Ok(list_photos(dir)?.into_iter().map(|p| p.path).collect())
}

pub fn load_gallery(path: &Path) -> Result<Gallery> {
    Gallery::load(path, SearchMode::default(), HnswParams::default())
        .with_context(|| format!("loading {}", path.display()))
}

/// One pass of `matcher match`'s work (read file, then the matcher's use case: analyze,
/// search top-1, resolve the identity) over `paths` repeated `passes` times on `workers`
/// threads; returns (photos/s, faces found).
pub fn engine_pass(
    models: &Models,
    gallery: &Gallery,
    detect: DetectConfig,
    workers: usize,
    paths: &[PathBuf],
    passes: usize,
    mirror: bool,
) -> Pass {
    let items: Vec<&PathBuf> = (0..passes).flat_map(|_| paths.iter()).collect();
    let query = |photo| MatchQuery {
        photo,
        top_k: 1,
        faces: FaceSelection::Largest,
        max_faces: None,
        max_distance: None,
        chips: false,
    };
    let opts = query(Photo::Image(Default::default())).analyze_options(mirror);
    let cpu0 = self_cpu_seconds();
    let t = Instant::now();
    let found = map_items(
        models,
        DecodeLimits::default(),
        detect,
        workers,
        &items,
        |a, p| {
            let Ok(bytes) = std::fs::read(p) else {
                return 0;
            };
            match match_photo(a, gallery, &query(Photo::Image(bytes.into())), &opts) {
                Ok(outcome) => std::hint::black_box(outcome).faces.len(),
                Err(_) => 0,
            }
        },
        |_, _| {},
    );
    let secs = t.elapsed().as_secs_f64();
    let cpu = self_cpu_seconds() - cpu0;
    Pass {
        photos_per_second: items.len() as f64 / secs,
        with_face: found.iter().filter(|&&n| n > 0).count(),
        cpu_ms_per_photo: cpu * 1e3 / items.len() as f64,
        cores_used: cpu / secs,
    }
}

/// One timed pass: throughput, and the CPU time it took (CPU ms per photo staying flat from
/// 1 to 2 workers while photos/s does not double means the cores were busy elsewhere).
pub struct Pass {
    pub photos_per_second: f64,
    pub with_face: usize,
    pub cpu_ms_per_photo: f64,
    pub cores_used: f64,
}

#[derive(Debug, clap::Args)]
pub struct ThroughputArgs {
    #[arg(long)]
    pub photos: PathBuf,
    #[arg(long)]
    pub gallery: PathBuf,
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    pub workers: Vec<usize>,
    /// Repetitions (interleaved over the worker counts); medians are reported.
    #[arg(long, default_value_t = 1)]
    pub reps: usize,
    /// Passes over the photo set per repetition.
    #[arg(long, default_value_t = 2)]
    pub passes: usize,
    /// DetectConfig::max_side (first detection pass), to measure alternatives.
    #[arg(long)]
    pub detect_max_side: Option<u32>,
    /// Also one worker with mirror-averaged embeddings (the matcher's --mirror), to price it.
    #[arg(long)]
    pub mirror_too: bool,
    #[arg(long)]
    pub json: Option<PathBuf>,
}

pub fn throughput(args: ThroughputArgs, models_dir: &Path) -> Result<()> {
    let paths = photo_paths(&args.photos)?;
    let models = Models::load(models_dir)?;
    let gallery = load_gallery(&args.gallery)?;
    let mut detect = DetectConfig::default();
    if let Some(s) = args.detect_max_side {
        detect.max_side = s;
    }
    // Warm-up: page cache, allocator, CPU frequency.
    engine_pass(&models, &gallery, detect, 1, &paths[..paths.len().min(8)], 1, false);
    let mut per: Vec<Vec<f64>> = vec![Vec::new(); args.workers.len()];
    let mut cpu: Vec<Vec<f64>> = vec![Vec::new(); args.workers.len()];
    let mut cores: Vec<Vec<f64>> = vec![Vec::new(); args.workers.len()];
    let mut found = 0;
    let mut mirror: Vec<(f64, f64)> = Vec::new();
    let load_before = loadavg();
    for _ in 0..args.reps {
        for (i, &w) in args.workers.iter().enumerate() {
            let p = engine_pass(&models, &gallery, detect, w, &paths, args.passes, false);
            per[i].push(p.photos_per_second);
            cpu[i].push(p.cpu_ms_per_photo);
            cores[i].push(p.cores_used);
            found = p.with_face;
        }
        if args.mirror_too {
            let p = engine_pass(&models, &gallery, detect, 1, &paths, args.passes, true);
            mirror.push((p.photos_per_second, p.cpu_ms_per_photo));
        }
    }
    let results: Vec<_> = args
        .workers
        .iter()
        .zip(per.iter().zip(cpu.iter().zip(&cores)))
        .map(|(w, (v, (c, k)))| {
            json!({"workers": w, "photos_per_second": median(v), "reps": v,
                   "cpu_ms_per_photo": median(c), "cores_used": median(k)})
        })
        .collect();
    let v = json!({
        "photos": paths.len(), "passes": args.passes, "photos_with_face_per_pass": found / args.passes.max(1) ,
        "gallery_embeddings": gallery.len(), "index": gallery.index_kind(), "detect_max_side": detect.max_side,
        "results": results, "loadavg_before": load_before, "loadavg_after": loadavg(),
        "mirror_1_worker": (!mirror.is_empty()).then(|| json!({
            "photos_per_second": median(&mirror.iter().map(|m| m.0).collect::<Vec<_>>()),
            "cpu_ms_per_photo": median(&mirror.iter().map(|m| m.1).collect::<Vec<_>>()),
        })),
    });
    emit(&v, args.json.as_deref())
}

#[derive(Debug, clap::Args)]
pub struct StagesArgs {
    /// Large photos (hires/): variants are made by resizing.
    #[arg(long)]
    pub photos: PathBuf,
    #[arg(long)]
    pub gallery: PathBuf,
    #[arg(long, value_delimiter = ',', default_value = "640,1280,4000")]
    pub sizes: Vec<u32>,
    #[arg(long, default_value_t = 3)]
    pub reps: usize,
    #[arg(long)]
    pub json: Option<PathBuf>,
}

fn resized_jpeg(img: &RgbImage, side: u32) -> Result<Vec<u8>> {
    let (w, h) = img.dimensions();
    let s = f64::from(side) / f64::from(w.max(h));
    let (nw, nh) = (((f64::from(w) * s).round() as u32).max(1), ((f64::from(h) * s).round() as u32).max(1));
    let r = imageops::resize(img, nw, nh, imageops::FilterType::CatmullRom);
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 87).encode_image(&r)?;
    Ok(out)
}

pub fn stages(args: StagesArgs, models_dir: &Path) -> Result<()> {
    let paths = photo_paths(&args.photos)?;
    let originals: Vec<(PathBuf, RgbImage)> =
        paths.iter().filter_map(|p| Some((p.clone(), image::open(p).ok()?.to_rgb8()))).collect();
    let models = Models::load(models_dir)?;
    let gallery = load_gallery(&args.gallery)?;
    let mut analyzer = FaceAnalyzer::new(models.worker_set(), DecodeLimits::default(), DetectConfig::default());
    // A/B: the same pipeline with a private deep copy of the shape predictor (as each worker
    // had before the engine started sharing one), to see whether sharing changed landmarks.
    let mut private = models.worker_set();
    private.predictor = std::sync::Arc::new((*private.predictor).clone());
    let mut analyzer_b = FaceAnalyzer::new(private, DecodeLimits::default(), DetectConfig::default());
    let opts = AnalyzeOptions::default();
    let mut out = Vec::new();
    for &side in &args.sizes {
        // 640 and 1280: the photos of at least 1280 px, downscaled; the ~4000 px set is made from
        // the photos of at least 2000 px (one is 4352 px; the others are upscaled).
        let min_source = if side > 2000 { 2000 } else { side.max(1280) };
        let mut set = Vec::new();
        for (p, img) in &originals {
            let (w, h) = img.dimensions();
            if w.max(h) >= min_source {
                set.push((p.display().to_string(), resized_jpeg(img, side)?));
            }
        }
        let mut st: [Vec<f64>; 6] = Default::default();
        let mut lm_private = Vec::new();
        let mut cpu_total = Vec::new();
        let mut faces = 0;
        for rep in 0..=args.reps {
            for (_, bytes) in &set {
                let t = Instant::now();
                let c0 = thread_cpu_ms();
                let an = analyzer.analyze_bytes(bytes, &opts)?;
                let cpu = thread_cpu_ms() - c0;
                let ts = Instant::now();
                if let Some(f) = an.faces.first() {
                    std::hint::black_box(gallery.search(&f.embedding, 1, None));
                }
                let search = ts.elapsed();
                let total = t.elapsed();
                if rep == 0 {
                    faces += usize::from(!an.faces.is_empty());
                    continue; // warm-up
                }
                cpu_total.push(cpu);
                let b = analyzer_b.analyze_bytes(bytes, &opts)?;
                lm_private.push(ms(b.timings.landmarks));
                let tm = an.timings;
                for (v, d) in st.iter_mut().zip([tm.decode, tm.detect, tm.landmarks, tm.encode, search, total]) {
                    v.push(ms(d));
                }
            }
        }
        let names = ["decode", "detect", "landmarks", "encode", "search", "total"];
        let mut stage = serde_json::Map::new();
        for (n, v) in names.iter().zip(&st) {
            stage.insert(n.to_string(), json!({"p50_ms": median(v), "p90_ms": percentile(v, 90.0), "mean_ms": v.iter().sum::<f64>() / v.len().max(1) as f64}));
        }
        out.push(json!({
            "side": side, "photos": set.len(), "photos_with_face": faces, "samples": st[0].len(),
            "stages": stage, "landmarks_private_predictor_p50_ms": median(&lm_private),
            "analyze_cpu_p50_ms": median(&cpu_total), "sources": set.iter().map(|s| s.0.clone()).collect::<Vec<_>>(),
        }));
    }
    emit(
        &json!({"gallery_embeddings": gallery.len(), "index": gallery.index_kind(), "sizes": out}),
        args.json.as_deref(),
    )
}

#[derive(Debug, clap::Args)]
pub struct GalleryBuildArgs {
    #[arg(long)]
    pub photos: PathBuf,
    #[arg(long, value_delimiter = ',', default_value = "10,0")]
    pub jitters: Vec<u32>,
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    pub workers: Vec<usize>,
    #[arg(long, default_value_t = 1)]
    pub reps: usize,
    #[arg(long)]
    pub json: Option<PathBuf>,
}

pub fn gallery_build(args: GalleryBuildArgs, models_dir: &Path) -> Result<()> {
    let models = Models::load(models_dir)?;
    let mut results = Vec::new();
    for &j in &args.jitters {
        for &w in &args.workers {
            let mut pps = Vec::new();
            let mut report_v = json!(null);
            for _ in 0..args.reps {
                let sources = catalog::collect(&args.photos, None)?;
                let cfg = BuildConfig { jitters: j, workers: w, ..BuildConfig::default() };
                let t = Instant::now();
                let (_g, report) = build(&models, sources, &cfg, |_, _| {})?;
                let secs = t.elapsed().as_secs_f64();
                pps.push(report.photos as f64 / secs);
                report_v = json!({"photos": report.photos, "accepted": report.accepted, "rejected_by_reason": report.rejected_by_reason});
            }
            results.push(
                json!({"jitters": j, "workers": w, "photos_per_second": median(&pps), "reps": pps, "report": report_v}),
            );
        }
    }
    emit(&json!({"photos_dir": args.photos.display().to_string(), "results": results}), args.json.as_deref())
}
