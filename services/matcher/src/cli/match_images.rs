//! `matcher match`: photos in, one JSON line per photo out.

use crate::config::EngineArgs;
use crate::matching::{match_photo, FaceMatch, FaceSelection, MatchQuery, Photo};
use anyhow::Context;
use clap::Args;
use lookalike_engine::parallel::{default_workers, map_items};
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
    let query = |photo| MatchQuery {
        photo,
        top_k: args.top_k as usize,
        faces: if args.all_faces { FaceSelection::All } else { FaceSelection::Largest },
        max_faces: Some(args.max_faces),
        max_distance: None,
        chips: false,
    };
    let opts = query(Photo::Image(Default::default())).analyze_options(engine.mirror);
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
            match match_photo(analyzer, &gallery, &query(Photo::Image(bytes.into())), &opts) {
                Ok(outcome) => {
                    (json!({"image": shown, "faces": outcome.faces.iter().map(face_json).collect::<Vec<_>>()}), true)
                }
                Err(e) => (json!({"image": shown, "error": e.to_string()}), false),
            }
        },
        |_, _| {},
    );
    super::print_json_lines(results)
}

/// One face of the outcome as the JSON line shows it.
fn face_json(f: &FaceMatch) -> Value {
    let matches: Vec<Value> = f
        .candidates
        .iter()
        .map(|c| {
            json!({
                "name": c.name, "alias": c.alias,
                "distance": round(c.distance, 4), "similarity": round(c.similarity, 1),
                // The ranking key (distance minus the crowding correction).
                "score": round(c.score, 4),
            })
        })
        .collect();
    match &f.face {
        Some(face) => json!({
            "box": [face.bbox.left, face.bbox.top, face.bbox.right, face.bbox.bottom],
            "eye_distance": round(face.eye_distance, 1), "roll": round(face.roll_degrees, 1),
            "matches": matches,
        }),
        None => json!({ "matches": matches }),
    }
}

pub fn round(v: f32, digits: i32) -> f64 {
    let p = 10f64.powi(digits);
    (f64::from(v) * p).round() / p
}
