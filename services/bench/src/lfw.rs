//! LFW: embedding every photo with the engine (cached to a file), and the accuracy
//! measures computed from embedding files (the peer's files go through the same code).

use crate::common::*;
use anyhow::{Context, Result};
use lookalike_engine::parallel::map_items;
use lookalike_engine::search::crowding;
use lookalike_engine::search::exact;
use lookalike_engine::{AnalyzeOptions, DecodeLimits, DetectConfig, Embedding, FaceAnalyzer, Models, EMBEDDING_DIM};
use serde_json::json;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Debug, clap::Args)]
pub struct EmbedArgs {
    /// Photo folder `<Person>/<photo>` (lfw-dev).
    #[arg(long)]
    pub photos: PathBuf,
    /// Output embedding file (raw f32, one row per photo of the list, NaN = no face).
    #[arg(long)]
    pub out: PathBuf,
    /// Also write the photo list (person, index, path) here.
    #[arg(long)]
    pub list_out: Option<PathBuf>,
    /// Only the first N people (quick runs).
    #[arg(long)]
    pub people: Option<usize>,
    #[arg(long, default_value_t = 0)]
    pub jitters: u32,
    /// Only each person's first photo (the gallery side); other rows stay NaN.
    #[arg(long)]
    pub first_only: bool,
    /// The engine's mirror-averaged embeddings (AnalyzeOptions::mirror, the matcher's --mirror).
    #[arg(long)]
    pub mirror: bool,
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// DetectConfig::cnn_max_side (0 = no CNN fallback).
    #[arg(long)]
    pub cnn_max_side: Option<u32>,
    /// DetectConfig::retry_max_pixels.
    #[arg(long)]
    pub retry_max_pixels: Option<u64>,
    /// DetectConfig::quick_side (0 = no quick pass, as before it existed).
    #[arg(long)]
    pub detect_quick_side: Option<u32>,
    #[arg(long)]
    pub json: Option<PathBuf>,
}

pub fn photo_list(dir: &Path, people: Option<usize>) -> Result<Vec<Photo>> {
    let all = list_photos(dir)?;
    Ok(match people {
        None => all,
        Some(n) => {
            let mut names: Vec<&str> = all.iter().map(|p| p.person.as_str()).collect();
            names.dedup();
            let keep: std::collections::HashSet<String> = names.into_iter().take(n).map(str::to_string).collect();
            all.into_iter().filter(|p| keep.contains(&p.person)).collect()
        }
    })
}

fn seed_of(p: &Photo) -> u64 {
    p.path
        .to_string_lossy()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

/// The main face's embedding.
pub fn embed_one(a: &mut FaceAnalyzer, bytes: &[u8], opts: &AnalyzeOptions) -> Result<Option<Embedding>, String> {
    let analysis = a.analyze_bytes(bytes, opts).map_err(|e| e.to_string())?;
    Ok(analysis.faces.first().map(|f| f.embedding))
}

pub fn embed(args: EmbedArgs, models_dir: &Path) -> Result<()> {
    let photos = photo_list(&args.photos, args.people)?;
    if let Some(l) = &args.list_out {
        write_list(&photos, l)?;
    }
    let models = Models::load(models_dir).context("loading models")?;
    let mut detect = DetectConfig::default();
    if let Some(c) = args.cnn_max_side {
        detect.cnn_max_side = c;
    }
    if let Some(p) = args.retry_max_pixels {
        detect.retry_max_pixels = p;
    }
    if let Some(q) = args.detect_quick_side {
        detect.quick_side = q;
    }
    let todo: Vec<&Photo> = photos.iter().filter(|p| !args.first_only || p.index == 0).collect();
    let t0 = Instant::now();
    let mut last = Instant::now();
    let results = map_items(
        &models,
        DecodeLimits::default(),
        detect,
        args.workers,
        &todo,
        |a, p| {
            let t = Instant::now();
            let opts =
                AnalyzeOptions { jitters: args.jitters, seed: seed_of(p), mirror: args.mirror, ..Default::default() };
            let r = std::fs::read(&p.path).map_err(|e| e.to_string()).and_then(|b| embed_one(a, &b, &opts));
            (r, t.elapsed())
        },
        |done, total| {
            if last.elapsed().as_secs() >= 30 {
                last = Instant::now();
                eprintln!("  embed: {done}/{total}");
            }
        },
    );
    let seconds = t0.elapsed().as_secs_f64();
    let mut rows = vec![f32::NAN; photos.len() * EMBEDDING_DIM];
    let pos: HashMap<&Path, usize> = photos.iter().enumerate().map(|(i, p)| (p.path.as_path(), i)).collect();
    let (mut no_face, mut errors) = (Vec::new(), Vec::new());
    let mut per_photo = Vec::new();
    for (p, (r, dt)) in todo.iter().zip(results) {
        per_photo.push(ms(dt));
        match r {
            Ok(Some(e)) => {
                let i = pos[p.path.as_path()];
                rows[i * EMBEDDING_DIM..(i + 1) * EMBEDDING_DIM].copy_from_slice(&e);
            }
            Ok(None) => no_face.push(p.path.display().to_string()),
            Err(e) => errors.push(format!("{}: {e}", p.path.display())),
        }
    }
    write_f32(&args.out, &rows)?;
    let v = json!({
        "photos": todo.len(), "no_face": no_face.len(), "errors": errors.len(),
        "no_face_rate": no_face.len() as f64 / todo.len().max(1) as f64,
        "no_face_photos": no_face, "error_photos": errors,
        "jitters": args.jitters, "mirror": args.mirror, "workers": args.workers, "first_only": args.first_only,
        "seconds": seconds, "photos_per_second": todo.len() as f64 / seconds,
        "ms_per_photo_median": median(&per_photo),
        "out": args.out.display().to_string(),
    });
    emit(&v, args.json.as_deref())
}

#[derive(Debug, clap::Args)]
pub struct AccuracyArgs {
    /// Photo list written by `embed --list-out` (or the peer helper).
    #[arg(long)]
    pub list: PathBuf,
    /// Embeddings for the gallery side (each person's first photo is used).
    #[arg(long)]
    pub gallery: PathBuf,
    /// Embeddings for the query side (every other photo) and the verification pairs.
    #[arg(long)]
    pub queries: PathBuf,
    /// LFW pairs file (pairsDevTrain.txt).
    #[arg(long)]
    pub pairs: Option<PathBuf>,
    /// Queries per person in the capped measure.
    #[arg(long, default_value_t = 10)]
    pub cap: usize,
    /// The matcher's crowding correction (0 = plain nearest identity), as `--crowding-weight`.
    #[arg(long, default_value_t = crowding::DEFAULT_WEIGHT)]
    pub crowding_weight: f32,
    #[arg(long, default_value = "")]
    pub label: String,
    #[arg(long)]
    pub json: Option<PathBuf>,
}

pub fn read_list(path: &Path) -> Result<Vec<Photo>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let mut f = l.splitn(3, '\t');
            let person = f.next().unwrap_or_default().to_string();
            let index = f.next().unwrap_or_default().parse().context("list index")?;
            let path = PathBuf::from(f.next().unwrap_or_default());
            Ok(Photo { person, path, index })
        })
        .collect()
}

pub fn accuracy(args: AccuracyArgs) -> Result<()> {
    let photos = read_list(&args.list)?;
    let g = read_f32(&args.gallery)?;
    let q = read_f32(&args.queries)?;
    anyhow::ensure!(
        g.len() == photos.len() * EMBEDDING_DIM && q.len() == g.len(),
        "embedding files do not match the list"
    );
    let mut person_id: HashMap<&str, u32> = HashMap::new();
    for p in &photos {
        let n = person_id.len() as u32;
        person_id.entry(p.person.as_str()).or_insert(n);
    }
    // Gallery: each person's first photo, when it has a face.
    let (mut rows, mut owners) = (Vec::new(), Vec::new());
    let mut gallery_no_face = 0;
    let mut people = 0;
    for (i, p) in photos.iter().enumerate() {
        if p.index == 0 {
            people += 1;
            if has_face(row(&g, i)) {
                rows.extend_from_slice(row(&g, i));
                owners.push(person_id[p.person.as_str()]);
            } else {
                gallery_no_face += 1;
            }
        }
    }
    let gallery_row_of: HashMap<u32, usize> = owners.iter().enumerate().map(|(r, o)| (*o, r)).collect();
    // Ranked the way the matcher ranks: an exact-search gallery with its crowding figures.
    let mut gallery = exact_gallery(&rows, &owners, person_id.len())?;
    gallery.compute_crowding(lookalike_engine::parallel::default_workers());
    gallery.set_crowding_weight(args.crowding_weight);
    let mut misses: Vec<(Option<f32>, f32)> = Vec::new();
    let (mut n_all, mut ok_all, mut n_cap, mut ok_cap, mut query_no_face) = (0usize, 0usize, 0usize, 0usize, 0usize);
    let mut per_person: HashMap<&str, (usize, usize)> = HashMap::new();
    for (i, p) in photos.iter().enumerate() {
        if p.index == 0 {
            continue;
        }
        let e = row(&q, i);
        let want = person_id[p.person.as_str()];
        let correct = if has_face(e) {
            let top = gallery.search(e, 1, None);
            let ok = top.first().is_some_and(|c| c.identity == want);
            if !ok {
                // Why: how far the right person's gallery photo was (dlib's "same person"
                // threshold is 0.6), and how far the winner was.
                let right = gallery_row_of.get(&want).map(|&r| exact::l2_squared(e, row(&rows, r)).sqrt());
                let winner = top.first().map_or(f32::NAN, |c| c.distance);
                misses.push((right, winner));
            }
            ok
        } else {
            query_no_face += 1;
            false
        };
        n_all += 1;
        ok_all += usize::from(correct);
        if p.index <= args.cap {
            n_cap += 1;
            ok_cap += usize::from(correct);
        }
        let s = per_person.entry(p.person.as_str()).or_default();
        s.0 += 1;
        s.1 += usize::from(correct);
    }
    // Per-person mean (each person with queries weighs the same).
    let pp: Vec<f64> = per_person.values().map(|(n, k)| *k as f64 / *n as f64).collect();
    let all_no_face = (0..photos.len()).filter(|&i| !has_face(row(&q, i))).count();

    let mut verification = serde_json::Value::Null;
    if let Some(pairs) = &args.pairs {
        let index: HashMap<(String, usize), usize> =
            photos.iter().enumerate().map(|(i, p)| ((p.person.clone(), p.index + 1), i)).collect();
        let text = std::fs::read_to_string(pairs)?;
        let mut scored: Vec<(f64, bool)> = Vec::new(); // (distance, same); NaN distance = no face
        let mut missing = 0;
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (a, b, same) = match f.len() {
                3 => ((f[0], f[1]), (f[0], f[2]), true),
                4 => ((f[0], f[1]), (f[2], f[3]), false),
                _ => continue,
            };
            let look =
                |(n, i): (&str, &str)| -> Option<usize> { index.get(&(n.to_string(), i.parse().ok()?)).copied() };
            let (Some(ia), Some(ib)) = (look(a), look(b)) else {
                missing += 1;
                continue;
            };
            let (ea, eb) = (row(&q, ia), row(&q, ib));
            let d = if has_face(ea) && has_face(eb) { f64::from(exact::l2_squared(ea, eb)).sqrt() } else { f64::NAN };
            scored.push((d, same));
        }
        let acc_at = |t: f64| {
            scored.iter().filter(|(d, same)| (d.is_finite() && *d < t) == *same).count() as f64
                / scored.len().max(1) as f64
        };
        let mut cands: Vec<f64> = scored.iter().map(|x| x.0).filter(|d| d.is_finite()).collect();
        cands.sort_by(|a, b| a.total_cmp(b));
        let mut best = (0.6, acc_at(0.6));
        for w in cands.windows(2) {
            let t = (w[0] + w[1]) / 2.0;
            let a = acc_at(t);
            if a > best.1 {
                best = (t, a);
            }
        }
        verification = json!({
            "pairs": scored.len(), "pairs_not_in_list": missing,
            "pairs_without_face": scored.iter().filter(|x| !x.0.is_finite()).count(),
            "accuracy_at_0_6": acc_at(0.6), "best_threshold": best.0, "accuracy_at_best": best.1,
        });
    }
    let v = json!({
        "label": args.label, "crowding_weight": gallery.crowding_weight(),
        "people": people, "gallery_identities": owners.len(), "gallery_photos_without_face": gallery_no_face,
        "queries": n_all, "rank1": ok_all as f64 / n_all.max(1) as f64, "rank1_correct": ok_all,
        "queries_capped": n_cap, "rank1_capped": ok_cap as f64 / n_cap.max(1) as f64,
        "rank1_per_person_mean": pp.iter().sum::<f64>() / pp.len().max(1) as f64,
        "query_photos_without_face": query_no_face,
        "photos": photos.len(), "photos_without_face": all_no_face,
        "no_face_rate": all_no_face as f64 / photos.len().max(1) as f64,
        "verification": verification,
        "misses": {
            "no_face": query_no_face,
            "person_not_in_gallery": misses.iter().filter(|m| m.0.is_none()).count(),
            "right_person_within_0_6": misses.iter().filter(|m| m.0.is_some_and(|d| d < 0.6)).count(),
            "right_person_0_6_to_0_8": misses.iter().filter(|m| m.0.is_some_and(|d| (0.6..0.8).contains(&d))).count(),
            "right_person_beyond_0_8": misses.iter().filter(|m| m.0.is_some_and(|d| d >= 0.8)).count(),
            "median_gap_to_winner": median(&misses.iter().filter_map(|m| Some(f64::from(m.0? - m.1))).collect::<Vec<_>>()),
        },
    });
    emit(&v, args.json.as_deref())
}
