//! `matcher embed`: the faces of each photo with their 128-d embeddings, as JSON lines.

use crate::config::EngineArgs;
use clap::Args;
use lookalike_engine::parallel::{default_workers, map_items};
use lookalike_engine::AnalyzeOptions;
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct EmbedArgs {
    /// Every face instead of the largest.
    #[arg(long)]
    pub all_faces: bool,
    /// Jittered copies averaged per embedding (slower, slightly more robust).
    #[arg(long, default_value_t = 0)]
    pub jitters: u32,
    #[arg(long)]
    pub workers: Option<usize>,
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
}

pub fn run(engine: &EngineArgs, args: EmbedArgs) -> anyhow::Result<ExitCode> {
    super::init_cli_logging();
    let models = super::load_models(engine)?;
    let opts = AnalyzeOptions {
        all_faces: args.all_faces,
        jitters: args.jitters,
        mirror: engine.mirror,
        ..Default::default()
    };
    let results = map_items(
        &models,
        engine.limits(),
        engine.detect(),
        args.workers.unwrap_or_else(default_workers),
        &args.images,
        |analyzer, path| {
            let shown = path.display().to_string();
            let analysis = std::fs::read(path)
                .map_err(|e| format!("cannot read file: {e}"))
                .and_then(|b| analyzer.analyze_bytes(&b, &opts).map_err(|e| e.to_string()));
            match analysis {
                Ok(a) => {
                    let faces: Vec<_> = a
                        .faces
                        .iter()
                        .map(|f| {
                            json!({
                                "box": [f.bbox.left, f.bbox.top, f.bbox.right, f.bbox.bottom],
                                "landmarks": f.landmarks, "eye_distance": f.eye_distance,
                                "roll": f.roll_degrees, "score": f.score, "embedding": f.embedding.to_vec(),
                            })
                        })
                        .collect();
                    (json!({"image": shown, "width": a.width, "height": a.height, "faces": faces}), true)
                }
                Err(e) => (json!({"image": shown, "error": e}), false),
            }
        },
        |_, _| {},
    );
    super::print_json_lines(results)
}
