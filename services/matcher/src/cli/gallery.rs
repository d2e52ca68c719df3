//! `matcher gallery build` and `matcher gallery info`.

use crate::config::EngineArgs;
use anyhow::Context;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use lookalike_engine::gallery::build::{build, BuildConfig};
use lookalike_engine::gallery::cache::EmbeddingCache;
use lookalike_engine::gallery::consensus::{self, ConsensusConfig};
use lookalike_engine::gallery::{catalog, diff, photos_per_license};
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum GalleryCommand {
    /// Build a gallery from DIR/<Person_Name>/<photo> or DIR/<alias>.<ext>.
    Build(BuildArgs),
    /// Print a gallery's summary as JSON.
    Info {
        /// Gallery file.
        path: PathBuf,
    },
    /// List the identities added, removed and changed from OLD to NEW (JSON; by alias).
    Diff {
        /// The gallery before.
        old: PathBuf,
        /// The gallery after.
        new: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Photo directory.
    #[arg(long)]
    pub photos: PathBuf,
    /// Catalog JSON: [{"name", "alias", "role", "n_movies"}]; photos are found by alias.
    #[arg(long)]
    pub catalog: Option<PathBuf>,
    /// Output gallery file (written atomically).
    #[arg(long)]
    pub out: PathBuf,
    /// Jittered copies averaged per embedding.
    #[arg(long, default_value_t = 10)]
    pub jitters: u32,
    /// Worker threads (default: the CPUs available).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Reject photos whose eyes are closer than this many pixels.
    #[arg(long, default_value_t = 20.0)]
    pub min_eye_distance: f32,
    /// Reject photos whose head roll exceeds this many degrees.
    #[arg(long, default_value_t = 35.0)]
    pub max_roll: f32,
    /// Faces closer than this are the same person: a person's photos with no face within
    /// it of the others are rejected (disagrees_with_other_photos).
    #[arg(long, default_value_t = 0.6)]
    pub same_person_distance: f32,
    /// A person's only photo with several faces keeps its most prominent face (area,
    /// weighted to the centre) when it is this many times the next one's; otherwise the
    /// photo is rejected as several_faces. "inf" rejects every such photo.
    #[arg(long, default_value_t = consensus::DEFAULT_SUBJECT_MARGIN)]
    pub subject_margin: f32,
    /// Embedding cache directory: photos already analysed with the same models and
    /// settings are not analysed again (a rebuild after adding 1% costs about 1%).
    #[arg(long, env = "LOOKALIKE_GALLERY_CACHE")]
    pub cache: Option<PathBuf>,
    /// Keep at most this many photos per person.
    #[arg(long, default_value_t = 20)]
    pub max_photos_per_person: usize,
    /// Write the full report (every rejected photo with its reason) to this JSON file.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

pub fn run(engine: &EngineArgs, cmd: GalleryCommand) -> anyhow::Result<ExitCode> {
    super::init_cli_logging();
    match cmd {
        GalleryCommand::Build(args) => build_cmd(engine, args),
        GalleryCommand::Info { path } => {
            let g = engine.load_gallery(&path).with_context(|| format!("loading gallery {}", path.display()))?;
            println!(
                "{}",
                json!({
                    "version": g.version, "identities": g.identities.len(), "embeddings": g.len(),
                    "index": g.index_kind(), "calibration": g.calibration, "build": g.build,
                    "crowding": g.crowding().is_some(), "crowding_weight": g.crowding_weight(),
                    "photos_per_license": photos_per_license(&g.identities),
                })
            );
            Ok(ExitCode::SUCCESS)
        }
        GalleryCommand::Diff { old, new } => {
            let load = |p: &PathBuf| engine.load_gallery(p).with_context(|| format!("loading gallery {}", p.display()));
            let (a, b) = (load(&old)?, load(&new)?);
            println!("{}", serde_json::to_string_pretty(&diff::diff(&a, &b))?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn build_cmd(engine: &EngineArgs, args: BuildArgs) -> anyhow::Result<ExitCode> {
    let entries = match &args.catalog {
        Some(p) => Some(catalog::load(p)?),
        None => None,
    };
    let sources = catalog::collect(&args.photos, entries.as_deref())?;
    let models = super::load_models(engine)?;
    let mut cfg = BuildConfig {
        jitters: args.jitters,
        consensus: ConsensusConfig {
            min_eye_distance: args.min_eye_distance,
            max_roll_degrees: args.max_roll,
            same_person_distance: args.same_person_distance,
            subject_margin: args.subject_margin,
            ..ConsensusConfig::default()
        },
        max_photos_per_person: args.max_photos_per_person,
        limits: engine.limits(),
        detect: engine.detect(),
        ..BuildConfig::default()
    };
    if let Some(w) = args.workers {
        cfg.workers = w.max(1);
    }
    if let Some(dir) = &args.cache {
        let settings = cfg.analysis_settings();
        cfg.cache = Some(EmbeddingCache::open(dir, &engine.models, &settings)?);
    }
    let total: usize = sources.people.iter().map(|p| p.photos.len()).sum();
    let bar = if args.quiet { ProgressBar::hidden() } else { ProgressBar::new(total as u64) };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} photos  {per_sec}  ETA {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let (mut gallery, report) = build(&models, sources, &cfg, |done, _| bar.set_position(done as u64))?;
    bar.finish_and_clear();
    gallery.prepare_index(engine.search_mode(), engine.hnsw_params());
    gallery.compute_crowding(cfg.workers);
    gallery.save(&args.out).with_context(|| format!("writing {}", args.out.display()))?;
    if let Some(path) = &args.report {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing report {}", path.display()))?;
    }
    let summary = json!({
        "gallery": args.out.display().to_string(), "version": gallery.version,
        "photos": report.photos, "accepted": report.accepted, "identities": report.identities,
        "rejected": report.rejected.len(), "rejected_by_reason": report.rejected_by_reason,
        "picks": report.picks.len(), "cache_hits": report.cache_hits, "analysed": report.analysed,
        "people_without_usable_photo": report.people_without_usable_photo,
        "catalog_entries_without_photos": report.catalog_entries_without_photos,
        "photos_without_catalog_entry": report.photos_without_catalog_entry.len(),
        "index": gallery.index_kind(), "calibration": {"mean": gallery.calibration.mean, "std": gallery.calibration.std},
        "seconds": (report.seconds * 10.0).round() / 10.0, "photos_per_second": (report.photos_per_second * 100.0).round() / 100.0,
    });
    println!("{summary}");
    if !args.quiet {
        for r in report.rejected.iter().take(20) {
            eprintln!("rejected {}: {}", r.photo.display(), r.reason.kind());
        }
    }
    Ok(ExitCode::SUCCESS)
}
