//! Search benchmarks (exact vs HNSW at 12k / 100k / 1M embeddings) on real LFW embeddings
//! padded with synthetic ones, and gallery files made from cached embeddings.

use crate::common::*;
use anyhow::{ensure, Result};
use lookalike_engine::gallery::BuildInfo;
use lookalike_engine::search::exact;
use lookalike_engine::search::half::HalfRows;
use lookalike_engine::search::hnsw::HnswIndex;
use lookalike_engine::{Embedding, Gallery, HnswParams, Identity, SearchMode, EMBEDDING_DIM};
use serde_json::json;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Real embeddings (rows with a face) and their person ids, from an embedding file + list.
pub struct Real {
    pub rows: Vec<f32>,
    pub owners: Vec<u32>,
    pub names: Vec<String>,
}

pub fn load_real(emb: &Path, list: &Path) -> Result<Real> {
    let photos = crate::lfw::read_list(list)?;
    let all = read_f32(emb)?;
    ensure!(all.len() == photos.len() * EMBEDDING_DIM, "embedding file does not match the list");
    let mut ids: HashMap<String, u32> = HashMap::new();
    let mut names = Vec::new();
    let (mut rows, mut owners) = (Vec::new(), Vec::new());
    for (i, p) in photos.iter().enumerate() {
        let r = row(&all, i);
        if !has_face(r) {
            continue;
        }
        let id = *ids.entry(p.person.clone()).or_insert_with(|| {
            names.push(p.person.clone());
            names.len() as u32 - 1
        });
        rows.extend_from_slice(r);
        owners.push(id);
    }
    Ok(Real { rows, owners, names })
}

/// Synthetic face-like embeddings: `mean + sum_t w_t (x_t - mean)` over three random real
/// embeddings with random weights of unit L2 norm (which keeps the real mean and covariance),
/// rescaled to the norm of a random real embedding.
pub struct Synth<'a> {
    real: &'a [f32],
    mean: [f64; EMBEDDING_DIM],
    norms: Vec<f64>,
    rng: Rng,
}

impl<'a> Synth<'a> {
    pub fn new(real: &'a [f32], seed: u64) -> Self {
        let n = real.len() / EMBEDDING_DIM;
        let mut mean = [0f64; EMBEDDING_DIM];
        for r in real.chunks_exact(EMBEDDING_DIM) {
            for (m, v) in mean.iter_mut().zip(r) {
                *m += f64::from(*v) / n as f64;
            }
        }
        let norms = real
            .chunks_exact(EMBEDDING_DIM)
            .map(|r| r.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>().sqrt())
            .collect();
        Self { real, mean, norms, rng: Rng::new(seed) }
    }

    pub fn next(&mut self) -> Embedding {
        let n = self.real.len() / EMBEDDING_DIM;
        let w: [f64; 3] = [self.rng.normal(), self.rng.normal(), self.rng.normal()];
        let wn = w.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-9);
        let mut x = self.mean;
        for wt in w {
            let r = self.rng.below(n);
            for (k, xv) in x.iter_mut().enumerate() {
                *xv += wt / wn * (f64::from(self.real[r * EMBEDDING_DIM + k]) - self.mean[k]);
            }
        }
        let target = self.norms[self.rng.below(n)];
        let norm = x.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-9);
        let mut out = [0f32; EMBEDDING_DIM];
        for (o, v) in out.iter_mut().zip(x) {
            *o = (v * target / norm) as f32;
        }
        out
    }
}

#[derive(Debug, clap::Args)]
pub struct SearchArgs {
    /// Real embeddings (lookalike's LFW embedding file) and its list.
    #[arg(long)]
    pub emb: PathBuf,
    #[arg(long)]
    pub list: PathBuf,
    #[arg(long, value_delimiter = ',', default_value = "12000,100000,1000000")]
    pub sizes: Vec<usize>,
    /// Real embeddings held out as queries.
    #[arg(long, default_value_t = 1000)]
    pub queries: usize,
    /// HNSW build parameters (default: the engine's, as `matcher gallery build` uses them).
    #[arg(long, default_value_t = HnswParams::default().m)]
    pub m: usize,
    #[arg(long, default_value_t = HnswParams::default().ef_construction)]
    pub ef_construction: usize,
    /// efSearch values to measure (the engine default is 200).
    #[arg(long, value_delimiter = ',', default_value = "16,32,64,96,128,200,400")]
    pub ef: Vec<usize>,
    /// Where to write the vectors for the peer (base_<n>.f32, owners_<n>.u32, queries.f32, gt_<n>.u32).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    #[arg(long)]
    pub json: Option<PathBuf>,
}

fn lat_stats(v: &[f64]) -> serde_json::Value {
    json!({"p50_ms": median(v), "p99_ms": percentile(v, 99.0), "mean_ms": v.iter().sum::<f64>() / v.len().max(1) as f64})
}

pub fn search(args: SearchArgs) -> Result<()> {
    let real = load_real(&args.emb, &args.list)?;
    let n_real = real.owners.len();
    ensure!(n_real > args.queries * 2, "too few real embeddings");
    // Hold out queries: every k-th real embedding.
    let step = n_real / args.queries;
    let mut queries: Vec<Embedding> = Vec::new();
    let (mut base, mut base_owners) = (Vec::new(), Vec::new());
    for i in 0..n_real {
        if i % step == step / 2 && queries.len() < args.queries {
            queries.push(*row(&real.rows, i));
        } else {
            base.extend_from_slice(row(&real.rows, i));
            base_owners.push(real.owners[i]);
        }
    }
    let n_base_real = base_owners.len();
    if let Some(d) = &args.data_dir {
        std::fs::create_dir_all(d)?;
        let q: Vec<f32> = queries.iter().flatten().copied().collect();
        write_f32(&d.join("queries.f32"), &q)?;
    }
    let mut out = Vec::new();
    for &size in &args.sizes {
        eprintln!("  search: {size} embeddings");
        let mut rows: Vec<f32> = base[..n_base_real.min(size) * EMBEDDING_DIM].to_vec();
        let mut owners: Vec<u32> = base_owners[..n_base_real.min(size)].to_vec();
        let mut synth = Synth::new(&base[..n_base_real * EMBEDDING_DIM], 42);
        let mut next_id = real.names.len() as u32;
        while owners.len() < size {
            rows.extend_from_slice(&synth.next());
            owners.push(next_id);
            next_id += 1;
        }
        // Exact, f32 scan: the baseline, and top-1/top-10 ground truth.
        let mut lat_f32 = Vec::new();
        let mut cpu_f32 = Vec::new();
        let mut gt1 = Vec::new();
        let mut gt10: Vec<Vec<u32>> = Vec::new();
        let mut nearest_real_vs_synth = (0usize, 0usize);
        for q in &queries {
            let (t, c) = (Instant::now(), thread_cpu_ms());
            let r = exact::search(&rows, &owners, q, 1);
            cpu_f32.push(thread_cpu_ms() - c);
            lat_f32.push(ms(t.elapsed()));
            gt1.push(r[0].0);
            if (r[0].0 as usize) < real.names.len() {
                nearest_real_vs_synth.0 += 1;
            } else {
                nearest_real_vs_synth.1 += 1;
            }
            gt10.push(exact::search(&rows, &owners, q, 10).into_iter().map(|x| x.0).collect());
        }
        if let Some(d) = &args.data_dir {
            write_f32(&d.join(format!("base_{size}.f32")), &rows)?;
            write_u32(&d.join(format!("owners_{size}.u32")), &owners)?;
            let flat: Vec<u32> =
                gt10.iter().flat_map(|v| (0..10).map(move |i| v.get(i).copied().unwrap_or(u32::MAX))).collect();
            write_u32(&d.join(format!("gt_{size}.u32")), &flat)?;
        }
        // The engine's exact search: f16 scan + f32 re-rank (search::half), the path a
        // gallery below the HNSW threshold takes. It must agree with the f32 scan.
        let exact_engine = match HalfRows::new(&rows) {
            Some(half) => {
                let (mut lat, mut cpu, mut same1, mut same10) = (Vec::new(), Vec::new(), 0usize, 0usize);
                for (qi, q) in queries.iter().enumerate() {
                    let (t, c) = (Instant::now(), thread_cpu_ms());
                    let r = half.search(&rows, &owners, q, 1);
                    cpu.push(thread_cpu_ms() - c);
                    lat.push(ms(t.elapsed()));
                    same1 += usize::from(r.first().map(|x| x.0) == Some(gt1[qi]));
                    let r10: Vec<u32> = half.search(&rows, &owners, q, 10).into_iter().map(|x| x.0).collect();
                    same10 += usize::from(r10 == gt10[qi]);
                }
                json!({"kind": "f16 scan + f32 re-rank", "latency": lat_stats(&lat), "cpu": lat_stats(&cpu),
                       "agrees_top1": same1 as f64 / queries.len() as f64,
                       "agrees_top10": same10 as f64 / queries.len() as f64,
                       "memory_mb": (half.bytes() + rows.len() * 4 + owners.len() * 4) as f64 / 1e6})
            }
            None => {
                json!({"kind": "f32 scan (no F16C on this CPU)", "latency": lat_stats(&lat_f32), "cpu": lat_stats(&cpu_f32),
                           "agrees_top1": 1.0, "agrees_top10": 1.0, "memory_mb": (rows.len() * 4 + owners.len() * 4) as f64 / 1e6})
            }
        };
        // The matcher's ranking with the crowding correction (default weight) over the
        // exact search: what it adds per query. Up to 100k (figures cost one search per row).
        let crowded = if size <= 100_000 { Some(crowded_ranking(&rows, &owners, &queries, &gt1)?) } else { None };
        // HNSW.
        let (m, efc) = (args.m, args.ef_construction);
        let params = HnswParams { m, ef_construction: efc, ..HnswParams::default() };
        let rss0 = self_rss();
        let t = Instant::now();
        let index = HnswIndex::build(&rows, params);
        let build_s = t.elapsed().as_secs_f64();
        let rss1 = self_rss();
        let flat_mb = index.flat_bytes() as f64 / 1e6;
        let mut per_ef = Vec::new();
        for &ef in &args.ef {
            let (mut lat, mut cpu) = (Vec::new(), Vec::new());
            let (mut hit1, mut hit10, mut short10) = (0usize, 0usize, 0usize);
            for (qi, q) in queries.iter().enumerate() {
                let (t, c) = (Instant::now(), thread_cpu_ms());
                let r = index.search(&rows, &owners, q, 1, Some(ef));
                cpu.push(thread_cpu_ms() - c);
                lat.push(ms(t.elapsed()));
                hit1 += usize::from(r.first().map(|x| x.0) == Some(gt1[qi]));
                let r10 = index.search(&rows, &owners, q, 10, Some(ef));
                hit10 += r10.iter().filter(|x| gt10[qi].contains(&x.0)).count();
                short10 += usize::from(r10.len() < 10);
            }
            per_ef.push(json!({
                "ef_search": ef, "latency": lat_stats(&lat), "cpu": lat_stats(&cpu),
                "recall_at_1": hit1 as f64 / queries.len() as f64,
                "recall_at_10": hit10 as f64 / (10 * queries.len()) as f64,
                "queries_with_fewer_than_10_identities": short10,
            }));
        }
        drop(index);
        out.push(json!({
            "size": size, "real": n_base_real.min(size), "synthetic": size - n_base_real.min(size),
            "queries_nearest_is_real": nearest_real_vs_synth.0, "queries_nearest_is_synthetic": nearest_real_vs_synth.1,
            "exact": exact_engine,
            "exact_crowded": crowded,
            "exact_f32": {"latency": lat_stats(&lat_f32), "cpu": lat_stats(&cpu_f32), "memory_mb": (rows.len() * 4 + owners.len() * 4) as f64 / 1e6},
            "hnsw": {"m": m, "ef_construction": efc, "build_seconds": build_s,
                     "memory_mb": rss1.saturating_sub(rss0) as f64 / 1e6,
                     "flat_graph_mb": flat_mb, "per_ef": per_ef},
        }));
        // Written after every size, so that a long 1M step loses nothing already measured.
        if let Some(path) = &args.json {
            let partial = json!({"queries": queries.len(), "real_embeddings": n_real, "sizes": out, "partial": true});
            std::fs::write(path, serde_json::to_string_pretty(&partial)?)?;
        }
    }
    emit(&json!({"queries": queries.len(), "real_embeddings": n_real, "sizes": out}), args.json.as_deref())
}

/// Latency of `Gallery::search` (exact, crowding-corrected, top-1) and how often its
/// answer differs from the plain nearest identity.
fn crowded_ranking(rows: &[f32], owners: &[u32], queries: &[Embedding], plain: &[u32]) -> Result<serde_json::Value> {
    let identities = owners.iter().copied().max().map_or(0, |m| m as usize + 1);
    let mut g = exact_gallery(rows, owners, identities)?;
    let t = Instant::now();
    g.compute_crowding(lookalike_engine::parallel::default_workers());
    let figures_s = t.elapsed().as_secs_f64();
    let figures = g.crowding().map(<[f32]>::to_vec).unwrap_or_default();
    let (mut lat, mut cpu, mut changed, mut exhaustive_agrees) = (Vec::new(), Vec::new(), 0usize, 0usize);
    for (q, want) in queries.iter().zip(plain) {
        let (t, c) = (Instant::now(), thread_cpu_ms());
        let r = g.search(q, 1, None);
        cpu.push(thread_cpu_ms() - c);
        lat.push(ms(t.elapsed()));
        let got = r.first().map(|c| c.identity);
        changed += usize::from(got != Some(*want));
        // Every identity scored: the answer the one-pass biased scan must reproduce.
        let mut best = vec![f32::INFINITY; identities];
        for (row, o) in rows.chunks_exact(EMBEDDING_DIM).zip(owners) {
            best[*o as usize] = best[*o as usize].min(exact::l2_squared(q, row));
        }
        let w = g.crowding_weight();
        let top = best
            .iter()
            .zip(&figures)
            .enumerate()
            .filter(|(_, (d2, _))| d2.is_finite())
            .min_by(|a, b| (a.1 .0.sqrt() - w * a.1 .1).total_cmp(&(b.1 .0.sqrt() - w * b.1 .1)))
            .map(|(id, _)| id as u32);
        exhaustive_agrees += usize::from(top == got);
    }
    Ok(json!({"weight": g.crowding_weight(), "figures_seconds": figures_s, "latency": lat_stats(&lat),
              "cpu": lat_stats(&cpu), "top1_differs_from_plain": changed as f64 / queries.len() as f64,
              "top1_agrees_with_exhaustive": exhaustive_agrees as f64 / queries.len() as f64}))
}

#[derive(Debug, clap::Args)]
pub struct MakeGalleryArgs {
    #[arg(long)]
    pub emb: PathBuf,
    #[arg(long)]
    pub list: PathBuf,
    /// Embeddings in the gallery (real ones first, then synthetic).
    #[arg(long, default_value_t = 12000)]
    pub size: usize,
    /// Gallery file to write.
    #[arg(long)]
    pub out: PathBuf,
    /// Also write the rows (raw f32) and one name per row, for the peer's .npz.
    #[arg(long)]
    pub peer_prefix: Option<PathBuf>,
}

pub fn make_gallery(args: MakeGalleryArgs) -> Result<()> {
    let real = load_real(&args.emb, &args.list)?;
    let n = real.owners.len().min(args.size);
    let mut rows = real.rows[..n * EMBEDDING_DIM].to_vec();
    let mut owners = real.owners[..n].to_vec();
    let mut names = real.names.clone();
    let mut synth = Synth::new(&real.rows, 7);
    while owners.len() < args.size {
        rows.extend_from_slice(&synth.next());
        owners.push(names.len() as u32);
        names.push(format!("Synthetic_{}", names.len()));
    }
    let mut counts = vec![0u32; names.len()];
    for o in &owners {
        counts[*o as usize] += 1;
    }
    let identities: Vec<Identity> = names
        .iter()
        .zip(&counts)
        .map(|(n, c)| Identity {
            name: n.replace('_', " "),
            alias: lookalike_engine::gallery::catalog::alias_for(n),
            role: String::new(),
            n_movies: 0,
            photo_count: *c,
            thumbnail_jpeg: Vec::new(),
            credits: Vec::new(),
        })
        .collect();
    let info = BuildInfo { built_at: "bench".into(), jitters: 0, photos_seen: owners.len() as u32, photos_rejected: 0 };
    if let Some(prefix) = &args.peer_prefix {
        write_f32(&prefix.with_extension("f32"), &rows)?;
        let text: String = owners.iter().map(|o| format!("{}\n", names[*o as usize])).collect();
        std::fs::write(prefix.with_extension("names"), text)?;
    }
    let mut g = Gallery::new(identities, rows, owners, None, info)?;
    // Like `matcher gallery build`: the crowding figures travel with the gallery.
    g.prepare_index(SearchMode::Exact, HnswParams::default());
    g.compute_crowding(lookalike_engine::parallel::default_workers());
    g.save(&args.out)?;
    emit(
        &json!({"gallery": args.out.display().to_string(), "embeddings": g.len(), "identities": g.identities.len(), "real": n}),
        None,
    )
}
