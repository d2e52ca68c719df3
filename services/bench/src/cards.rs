//! The reply card's cost next to the match itself: for each photo, the matcher's work as
//! `Match` with `return_chips` does it (decode, detect, landmarks, encode, search, chip
//! JPEGs; in process, one worker) and the gateway's card composition (`tg_gateway::card`,
//! from the same chips and the gallery's thumbnails), in ms, and the card's bytes. With
//! `--out DIR`, each photo's card is also written as PNG (the pictures in docs/).

use crate::common::*;
use crate::engine_bench::load_gallery;
use anyhow::{bail, Context, Result};
use lookalike_engine::{chip_jpeg, AnalyzeOptions, DecodeLimits, DetectConfig, FaceAnalyzer, Models, CHIP_SIZE};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tg_gateway::card::{self, Pair};

#[derive(Debug, clap::Args)]
pub struct CardsArgs {
    #[arg(long)]
    pub gallery: PathBuf,
    /// Photos to answer (each: every face, up to --max-faces, like the bot), as `PATH` or
    /// `LABEL=PATH` (the card's file name with --out: `LABEL.png`, else the photo's stem).
    #[arg(required = true)]
    pub photos: Vec<String>,
    #[arg(long, default_value_t = 5)]
    pub max_faces: usize,
    /// Timed repetitions per photo (the median is reported).
    #[arg(long, default_value_t = 20)]
    pub reps: usize,
    /// Write each card as `<photo stem>.png` here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// `Alias=Name`: show this name for an identity (e.g. its Russian name, for a picture of
    /// a Cyrillic card; galleries hold one name per identity).
    #[arg(long = "name")]
    pub names: Vec<String>,
    /// The bot's @username for the card's footer.
    #[arg(long, default_value = "@LookalikeBot")]
    pub footer: String,
    #[arg(long)]
    pub json: Option<PathBuf>,
}

pub fn cards(args: CardsArgs, models_dir: &Path) -> Result<()> {
    let models = Models::load(models_dir)?;
    let gallery = load_gallery(&args.gallery)?;
    let mut analyzer = FaceAnalyzer::new(models.worker_set(), DecodeLimits::default(), DetectConfig::default());
    let renames: Vec<(&str, &str)> = args.names.iter().filter_map(|n| n.split_once('=')).collect();
    let opts =
        AnalyzeOptions { all_faces: true, max_faces: args.max_faces, chip_size: Some(CHIP_SIZE), ..Default::default() };
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut rows = Vec::new();
    for arg in &args.photos {
        let (label, path) = match arg.split_once('=') {
            Some((label, path)) => (Some(label), PathBuf::from(path)),
            None => (None, PathBuf::from(arg)),
        };
        let path = &path;
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let mut match_ms = Vec::new();
        let mut chips_ms = Vec::new();
        let mut pairs = Vec::new();
        for rep in 0..args.reps.max(1) {
            let t = Instant::now();
            let analysis = analyzer.analyze_bytes(&bytes, &opts)?;
            let found: Vec<_> = analysis.faces.iter().map(|f| gallery.search(&f.embedding, 1, None)).collect();
            let matched = t.elapsed();
            let t = Instant::now();
            let chips: Vec<Vec<u8>> = analysis
                .faces
                .iter()
                .map(|f| f.chip.as_deref().map_or(Ok(Vec::new()), |raw| chip_jpeg(raw, CHIP_SIZE)))
                .collect::<Result<_, _>>()?;
            chips_ms.push(ms(t.elapsed()));
            match_ms.push(ms(matched) + ms(t.elapsed()));
            if rep == 0 {
                for (chip, c) in chips.into_iter().zip(&found) {
                    let Some(best) = c.first() else { continue };
                    let Some(id) = gallery.identity(best.identity) else { continue };
                    let name = renames
                        .iter()
                        .find(|(alias, _)| *alias == id.alias)
                        .map_or(id.name.as_str(), |(_, name)| *name);
                    pairs.push(Pair {
                        number: (found.len() > 1).then_some(pairs.len() + 1),
                        user_chip_jpeg: chip.into(),
                        celebrity_chip_jpeg: id.thumbnail_jpeg.clone().into(),
                        name: name.to_owned(),
                        percent: tg_gateway::reply::percent(best.similarity),
                        credit: None,
                    });
                }
            }
        }
        if pairs.is_empty() {
            bail!("{}: no matched face", path.display());
        }
        let mut compose_ms = Vec::new();
        let mut composed = None;
        for _ in 0..args.reps.max(1) {
            let t = Instant::now();
            let c = card::compose(&pairs, Some(&args.footer))?;
            compose_ms.push(ms(t.elapsed()));
            composed = Some(c);
        }
        let Some(c) = composed else { bail!("no card") };
        let stem = label.or_else(|| path.file_stem().and_then(|s| s.to_str())).unwrap_or("card");
        if let Some(dir) = &args.out {
            let png = dir.join(format!("{stem}.png"));
            image::load_from_memory(&c.jpeg)?.save(&png).with_context(|| format!("writing {}", png.display()))?;
        }
        let (m, k) = (median(&match_ms), median(&compose_ms));
        rows.push(json!({
            "label": stem,
            "photo": path.display().to_string(),
            "faces": pairs.len(),
            "names": pairs.iter().map(|p| p.name.clone()).collect::<Vec<_>>(),
            "match_ms": m,
            "chips_ms": median(&chips_ms),
            "compose_ms": k,
            "compose_share_of_match": k / m,
            "card_bytes": c.jpeg.len(),
            "card_size": [c.width, c.height],
        }));
    }
    emit(&json!({ "reps": args.reps, "cards": rows }), args.json.as_deref())
}
