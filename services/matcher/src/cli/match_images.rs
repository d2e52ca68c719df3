//! `matcher match`: photos in, one JSON line per photo out.

use crate::config::EngineArgs;
use anyhow::Context;
use clap::Args;
use lookalike_engine::parallel::{default_workers, map_items};
use lookalike_engine::AnalyzeOptions;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct MatchArgs {
    /// Gallery file built by `matcher gallery build`.
    #[arg(long, env = "LOOKALIKE_GALLERY")]
    pub gallery: PathBuf,
    /// Candidates per face.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub top_k: u32,
    /// Every face in the photo (left to right) instead of the largest.
    #[arg(long)]
    pub all_faces: bool,
    /// Most faces per photo with --all-faces.
    #[arg(long, default_value_t = 10)]
    pub max_faces: usize,
    /// Worker threads (default: the CPUs available).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Photos to match.
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
}

pub fn run(engine: &EngineArgs, args: MatchArgs) -> anyhow::Result<ExitCode> {
    super::init_cli_logging();
    let models = super::load_models(engine)?;
    let gallery =
        engine.load_gallery(&args.gallery).with_context(|| format!("loading gallery {}", args.gallery.display()))?;
    let opts = AnalyzeOptions {
        all_faces: args.all_faces,
        max_faces: args.max_faces,
        mirror: engine.mirror,
        ..Default::default()
    };
    let workers = args.workers.unwrap_or_else(default_workers);
    let results = map_items(
        &models,
        engine.limits(),
        engine.detect(),
        workers,
        &args.images,
        |analyzer, path| {
            let shown = path.display().to_string();
            let bytes = match std::fs::read(path) {
                Ok(b) => b,
                Err(e) => return (json!({"image": shown, "error": format!("cannot read file: {e}")}), false),
            };
            match analyzer.analyze_bytes(&bytes, &opts) {
                Ok(analysis) => {
                    let faces: Vec<Value> = analysis
                        .faces
                        .iter()
                        .map(|f| {
                            let matches: Vec<Value> = gallery
                                .search(&f.embedding, args.top_k as usize, None)
                                .iter()
                                .filter_map(|c| {
                                    let id = gallery.identity(c.identity)?;
                                    Some(json!({
                                        "name": id.name, "alias": id.alias,
                                        "distance": round(c.distance, 4), "similarity": round(c.similarity, 1),
                                        // The ranking key (distance minus the crowding correction).
                                        "score": round(c.score, 4),
                                    }))
                                })
                                .collect();
                            json!({
                                "box": [f.bbox.left, f.bbox.top, f.bbox.right, f.bbox.bottom],
                                "eye_distance": round(f.eye_distance, 1), "roll": round(f.roll_degrees, 1),
                                "matches": matches,
                            })
                        })
                        .collect();
                    (json!({"image": shown, "faces": faces}), true)
                }
                Err(e) => (json!({"image": shown, "error": e.to_string()}), false),
            }
        },
        |_, _| {},
    );
    super::print_json_lines(results)
}

pub fn round(v: f32, digits: i32) -> f64 {
    let p = 10f64.powi(digits);
    (f64::from(v) * p).round() / p
}
