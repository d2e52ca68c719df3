//! Shared helpers: the LFW photo list, embedding files, statistics, process memory.

use anyhow::{bail, Context, Result};
use lookalike_engine::EMBEDDING_DIM;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One photo of the LFW list, in the order every embedding file follows.
#[derive(Debug, Clone)]
pub struct Photo {
    pub person: String,
    pub path: PathBuf,
    /// 0 for the person's first photo (the gallery photo), then 1, 2, ...
    pub index: usize,
}

/// The people of `dir` (sorted) and their photos (sorted): `dir/<Person>/<n>.jpg`.
pub fn list_photos(dir: &Path) -> Result<Vec<Photo>> {
    let mut people: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    people.sort();
    let mut out = Vec::new();
    for p in people {
        let person = p.file_name().and_then(|s| s.to_str()).unwrap_or_default().to_string();
        let mut photos: Vec<PathBuf> = std::fs::read_dir(&p)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|f| lookalike_engine::gallery::catalog::is_image(f))
            .collect();
        photos.sort();
        for (index, path) in photos.into_iter().enumerate() {
            out.push(Photo { person: person.clone(), path, index });
        }
    }
    if out.is_empty() {
        bail!("no photos under {}", dir.display());
    }
    Ok(out)
}

/// Writes the list as `person<TAB>index<TAB>path` (read by scripts/bench/peer.py).
pub fn write_list(photos: &[Photo], path: &Path) -> Result<()> {
    let mut s = String::new();
    for p in photos {
        s.push_str(&format!("{}\t{}\t{}\n", p.person, p.index, p.path.display()));
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).ok();
    }
    std::fs::write(path, s).with_context(|| format!("writing {}", path.display()))
}

/// Embedding file: raw little-endian f32, `n x 128`, a row of NaN where there is no face.
pub fn write_f32(path: &Path, rows: &[f32]) -> Result<()> {
    let mut bytes = Vec::with_capacity(rows.len() * 4);
    for v in rows {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).ok();
    }
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

pub fn read_f32(path: &Path) -> Result<Vec<f32>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if bytes.len() % (4 * EMBEDDING_DIM) != 0 {
        bail!("{} is not a whole number of 128-d f32 rows", path.display());
    }
    Ok(bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
}

pub fn write_u32(path: &Path, v: &[u32]) -> Result<()> {
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

pub fn row(rows: &[f32], i: usize) -> &[f32; EMBEDDING_DIM] {
    rows[i * EMBEDDING_DIM..(i + 1) * EMBEDDING_DIM].try_into().expect("row of 128")
}

pub fn has_face(r: &[f32; EMBEDDING_DIM]) -> bool {
    r[0].is_finite()
}

/// Percentile (0..=100) of `v` (sorted copy, nearest rank).
pub fn percentile(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * s.len() as f64).ceil() as usize;
    s[rank.clamp(1, s.len()) - 1]
}

pub fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// A field of /proc/<pid>/status in kB (VmRSS, VmHWM, ...).
pub fn proc_status_kb(pid: &str, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// Resident memory of this process in bytes.
pub fn self_rss() -> u64 {
    proc_status_kb("self", "VmRSS").unwrap_or(0) * 1024
}

/// Small deterministic generator (xorshift64*), for repeatable synthetic data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u = self.uniform().max(1e-300);
        let v = self.uniform();
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

/// Prints the JSON result on stdout and writes it to `out` when given.
pub fn emit(value: &serde_json::Value, out: Option<&Path>) -> Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    if let Some(path) = out {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).ok();
        }
        std::fs::write(path, &text).with_context(|| format!("writing {}", path.display()))?;
    }
    println!("{text}");
    Ok(())
}

/// CPU seconds (user + system) used by this process so far, from /proc/self/stat.
pub fn self_cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return f64::NAN };
    let Some(rest) = stat.rsplit_once(')').map(|x| x.1) else { return f64::NAN };
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the command name: state is field 3, utime 14, stime 15 (1-based in proc(5)).
    let ticks = |i: usize| f.get(i - 3).and_then(|v| v.parse::<f64>().ok()).unwrap_or(f64::NAN);
    (ticks(14) + ticks(15)) / 100.0
}

/// The 1-minute load average of the machine (how noisy the measurement was).
pub fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(f64::NAN)
}

/// CPU time of the calling thread in milliseconds (CLOCK_THREAD_CPUTIME_ID): what a stage
/// costs without the time the thread waited for a core on a busy machine.
pub fn thread_cpu_ms() -> f64 {
    lookalike_engine::cost::thread_cpu_time().map_or(f64::NAN, |t| t.as_secs_f64() * 1e3)
}

/// A gallery over `rows`/`owners` (identities 0..`identities`, unnamed) with the exact index a
/// gallery below the HNSW threshold gets; callers add the crowding figures
/// (`compute_crowding`), timed or not.
pub fn exact_gallery(rows: &[f32], owners: &[u32], identities: usize) -> Result<lookalike_engine::Gallery> {
    use lookalike_engine::{gallery::BuildInfo, Gallery, HnswParams, Identity, SearchMode};
    let blank = Identity {
        name: String::new(),
        alias: String::new(),
        role: String::new(),
        n_movies: 0,
        photo_count: 0,
        thumbnail_jpeg: Vec::new(),
        credits: Vec::new(),
    };
    let mut g = Gallery::new(vec![blank; identities], rows.to_vec(), owners.to_vec(), None, BuildInfo::default())?;
    g.prepare_index(SearchMode::Exact, HnswParams::default());
    Ok(g)
}
