//! The celebrity gallery: identities, their embeddings, calibration and search index, in
//! one versioned, checksummed file.

pub mod build;
pub mod cache;
pub mod catalog;
pub mod consensus;
pub mod diff;
mod file;

pub use file::{GalleryError, FORMAT_VERSION};

use crate::calibration::Calibration;
use crate::face::{Embedding, EMBEDDING_DIM};
use crate::search::crowding::{self, Crowding};
use crate::search::exact;
use crate::search::half::HalfRows;
use crate::search::hnsw::{HnswIndex, HnswParams};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Left-out rows the calibration is fitted on when a gallery is built.
const CALIBRATION_SAMPLES: usize = 5000;
/// ... and when a loaded gallery is served with another ranking key than it was fitted for
/// (a few hundred milliseconds for 12k rows).
const REFIT_SAMPLES: usize = 2000;

/// One person in the gallery.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Identity {
    pub name: String,
    /// URL-safe short name ("tilda-swinton"); links are built from it.
    pub alias: String,
    pub role: String,
    pub n_movies: u32,
    pub photo_count: u32,
    /// Aligned face thumbnail (JPEG) for clients to show.
    pub thumbnail_jpeg: Vec<u8>,
    /// Attribution of each accepted photo, in the order of the identity's embeddings (the
    /// first is the thumbnail's photo); empty when the catalog gave none (format-1/2 files).
    pub credits: Vec<PhotoCredit>,
}

impl Identity {
    /// Attribution of the photo the thumbnail was cut from, if the catalog gave one.
    pub fn thumbnail_credit(&self) -> Option<&PhotoCredit> {
        self.credits.first().filter(|c| !c.is_empty())
    }
}

/// Photos of these identities per licence name ("unknown" when the catalog named none).
pub fn photos_per_license<'a>(
    identities: impl IntoIterator<Item = &'a Identity>,
) -> std::collections::BTreeMap<String, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for id in identities {
        for i in 0..id.photo_count as usize {
            let license = id.credits.get(i).map(|c| c.license.trim()).filter(|l| !l.is_empty());
            *counts.entry(license.unwrap_or("unknown").to_owned()).or_default() += 1;
        }
    }
    counts
}

/// Who made a gallery photo and under which licence, as its source states it (e.g. the
/// Wikimedia Commons `extmetadata` of the file).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PhotoCredit {
    /// The author as a person would credit them, plain text.
    #[serde(default)]
    pub author: String,
    /// Short licence name, e.g. "CC BY-SA 4.0", "Public domain".
    #[serde(default)]
    pub license: String,
    #[serde(default)]
    pub license_url: String,
    /// The photo's page at its source.
    #[serde(default)]
    pub source_url: String,
}

impl PhotoCredit {
    pub fn is_empty(&self) -> bool {
        self.author.is_empty() && self.license.is_empty() && self.license_url.is_empty() && self.source_url.is_empty()
    }
}

/// How the gallery is searched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchMode {
    /// Exact below `hnsw_threshold` embeddings, HNSW from there on.
    Auto {
        hnsw_threshold: usize,
    },
    Exact,
    Hnsw,
}

impl Default for SearchMode {
    fn default() -> Self {
        // Measured on this project's dev machine: exact scan of 20k x 128 takes ~0.4 ms
        // and is exact; HNSW only pays off in the tens of thousands.
        SearchMode::Auto { hnsw_threshold: 50_000 }
    }
}

impl SearchMode {
    pub fn wants_hnsw(&self, embeddings: usize) -> bool {
        match *self {
            SearchMode::Auto { hnsw_threshold } => embeddings >= hnsw_threshold,
            SearchMode::Exact => false,
            SearchMode::Hnsw => true,
        }
    }
}

/// What was put into the file besides the data, for people reading `GetGalleryInfo`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct BuildInfo {
    pub built_at: String,
    pub jitters: u32,
    pub photos_seen: u32,
    pub photos_rejected: u32,
}

/// A candidate identity for a query face.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Candidate {
    pub identity: u32,
    pub distance: f32,
    pub similarity: f32,
    /// The ranking key: `distance` minus the crowding correction (equal to it when off).
    pub score: f32,
}

/// How the rows are searched: one of three, chosen by [`Gallery::prepare_index`].
enum Index {
    /// The exact f32 scan (the CPU lacks F16C/AVX2/FMA, the rows do not fit f16, or no
    /// index has been prepared yet).
    Exact,
    /// The exact scan over an f16 copy of the rows: the f32 scan's answer, half the
    /// memory traffic.
    Half(HalfRows),
    /// The HNSW graph (approximate).
    Hnsw(HnswIndex),
}

pub struct Gallery {
    pub identities: Vec<Identity>,
    /// Row-major `owners.len() x 128`.
    embeddings: Vec<f32>,
    /// Identity of each embedding row.
    owners: Vec<u32>,
    pub calibration: Calibration,
    pub build: BuildInfo,
    /// Hex content hash of the file payload.
    pub version: String,
    index: Index,
    /// Crowding figures (computed when the gallery is built; absent in format-1 files).
    crowding: Option<Crowding>,
    /// Weight of the crowding correction in the ranking (0 = plain nearest first).
    crowding_weight: f32,
    /// weight x crowding figure per identity, what the exact scans subtract; empty when the
    /// correction is off or the gallery has no figures.
    crowding_bias: Vec<f32>,
}

impl Gallery {
    /// Assembles a gallery; the calibration is fitted here when not given.
    pub fn new(
        identities: Vec<Identity>,
        embeddings: Vec<f32>,
        owners: Vec<u32>,
        calibration: Option<Calibration>,
        build: BuildInfo,
    ) -> Result<Self, GalleryError> {
        validate(&identities, &embeddings, &owners)?;
        let calibration = match calibration {
            Some(c) => c,
            None => Calibration::fit_nearest_other(&embeddings, &owners, &[], 0.0, CALIBRATION_SAMPLES)
                .ok_or(GalleryError::TooSmall)?,
        };
        Ok(Self {
            identities,
            embeddings,
            owners,
            calibration,
            build,
            version: String::new(),
            index: Index::Exact,
            crowding: None,
            crowding_weight: crowding::DEFAULT_WEIGHT,
            crowding_bias: Vec::new(),
        })
    }

    pub fn len(&self) -> usize {
        self.owners.len()
    }

    pub fn is_empty(&self) -> bool {
        self.owners.is_empty()
    }

    pub fn rows(&self) -> &[f32] {
        &self.embeddings
    }

    pub fn owners(&self) -> &[u32] {
        &self.owners
    }

    pub fn index_kind(&self) -> &'static str {
        match self.index {
            Index::Hnsw(_) => "hnsw",
            Index::Exact | Index::Half(_) => "exact",
        }
    }

    /// Builds the HNSW index now (or drops it) according to `mode`; an exact gallery gets
    /// the f16 copy of its rows when the CPU and the values allow it. An index already of
    /// the wanted kind is kept.
    pub fn prepare_index(&mut self, mode: SearchMode, params: HnswParams) {
        let wants_hnsw = mode.wants_hnsw(self.len());
        self.index = match (wants_hnsw, std::mem::replace(&mut self.index, Index::Exact)) {
            (true, Index::Hnsw(index)) => Index::Hnsw(index),
            (true, _) => Index::Hnsw(HnswIndex::build(&self.embeddings, params)),
            (false, Index::Half(half)) => Index::Half(half),
            (false, _) => HalfRows::new(&self.embeddings).map_or(Index::Exact, Index::Half),
        };
    }

    /// The HNSW index, when one is prepared (the file stores it).
    fn hnsw_index(&self) -> Option<&HnswIndex> {
        match &self.index {
            Index::Hnsw(index) => Some(index),
            Index::Exact | Index::Half(_) => None,
        }
    }

    /// Computes the crowding figures with the prepared index (call after `prepare_index`;
    /// a gallery builder does, and the figures are saved with the gallery). Each row costs
    /// one search: about a second for 12k rows, minutes for a million.
    pub fn compute_crowding(&mut self, threads: usize) {
        let c = Crowding::compute(
            &self.embeddings,
            &self.owners,
            self.identities.len(),
            crowding::DEFAULT_NEIGHBOURS,
            threads,
            |q, n| self.plain_search(q, n),
        );
        self.crowding = Some(c);
        self.refresh_bias(CALIBRATION_SAMPLES);
    }

    pub(super) fn with_bias(mut self) -> Self {
        self.refresh_bias(REFIT_SAMPLES);
        self
    }

    /// Recomputes what the ranking subtracts per identity and, when the calibration was
    /// fitted for another ranking key (another weight, or a file older than format 4),
    /// refits it on this one with up to `samples` left-out rows, so that the percentage
    /// follows the ranking.
    fn refresh_bias(&mut self, samples: usize) {
        self.crowding_bias = match &self.crowding {
            Some(c) if self.crowding_weight > 0.0 => c.figures().iter().map(|f| f * self.crowding_weight).collect(),
            _ => Vec::new(),
        };
        let weight = if self.crowding_bias.is_empty() { 0.0 } else { self.crowding_weight };
        if (self.calibration.ranking_weight - weight).abs() > 1e-6 {
            let t = std::time::Instant::now();
            if let Some(fit) =
                Calibration::fit_nearest_other(&self.embeddings, &self.owners, &self.crowding_bias, weight, samples)
            {
                tracing::info!(
                    from_weight = self.calibration.ranking_weight,
                    to_weight = weight,
                    samples = fit.samples,
                    ms = t.elapsed().as_millis() as u64,
                    "similarity calibration refitted for the ranking key in use"
                );
                self.calibration = Calibration { floor_percent: self.calibration.floor_percent, ..fit };
            }
        }
    }

    /// The crowding figures, one per identity, when the gallery has them.
    pub fn crowding(&self) -> Option<&[f32]> {
        self.crowding.as_ref().map(Crowding::figures)
    }

    /// Weight of the crowding correction (0 turns it off); see `search::crowding`.
    pub fn set_crowding_weight(&mut self, weight: f32) {
        self.crowding_weight = if weight.is_finite() { weight.max(0.0) } else { 0.0 };
        self.refresh_bias(REFIT_SAMPLES);
    }

    /// The crowding weight in effect: the configured one, or 0 when the gallery has no
    /// figures (the ranking is then plain).
    pub fn crowding_weight(&self) -> f32 {
        if self.crowding.is_some() {
            self.crowding_weight
        } else {
            0.0
        }
    }

    /// The `k` best identities, optionally only within `max_distance`: nearest first, or,
    /// with crowding figures and a non-zero weight, by crowding-corrected distance. The
    /// reported distance stays the plain one; the similarity is the calibration of the
    /// ranking key, so it never increases down the list.
    pub fn search(&self, query: &Embedding, k: usize, max_distance: Option<f32>) -> Vec<Candidate> {
        // With the correction, `max_distance` must act before the ranking: filtered after it,
        // an over-limit identity could take the place of one within the limit.
        let limit = max_distance.unwrap_or(f32::INFINITY);
        let (rows, owners, bias) = (&self.embeddings, &self.owners, &self.crowding_bias);
        let hits = match (&self.index, &self.crowding) {
            _ if bias.is_empty() => self.plain_search(query, k),
            // One scan ranks by the corrected score directly.
            (Index::Half(half), _) => half.search_biased(rows, owners, query, k, bias, limit),
            (Index::Exact, _) => exact::search_biased(rows, owners, query, k, bias, limit),
            // The graph search is by plain distance: fetch more and re-rank.
            (Index::Hnsw(_), Some(c)) => c.rank(k, self.crowding_weight, self.identities.len(), |n| {
                let mut hits = self.plain_search(query, n);
                // Fewer than asked for tells `rank` that nothing farther is left to consider.
                hits.retain(|(_, d)| *d <= limit);
                hits
            }),
            (Index::Hnsw(_), None) => self.plain_search(query, k),
        };
        hits.into_iter()
            .filter(|(_, d)| max_distance.is_none_or(|m| *d <= m))
            .map(|(identity, distance)| {
                let score = distance - self.crowding_bias.get(identity as usize).copied().unwrap_or(0.0);
                Candidate { identity, distance, similarity: self.calibration.similarity_percent(score), score }
            })
            .collect()
    }

    /// The `k` nearest identities by plain distance, from the prepared index.
    fn plain_search(&self, query: &Embedding, k: usize) -> Vec<(u32, f32)> {
        match &self.index {
            Index::Hnsw(index) => index.search(&self.embeddings, &self.owners, query, k, None),
            Index::Exact | Index::Half(_) => self.exact_search(query, k),
        }
    }

    /// The exact answer, from the f16 scan when prepared (same result, half the memory
    /// traffic) or the f32 scan.
    pub fn exact_search(&self, query: &Embedding, k: usize) -> Vec<(u32, f32)> {
        match &self.index {
            Index::Half(half) => half.search(&self.embeddings, &self.owners, query, k),
            Index::Exact | Index::Hnsw(_) => exact::search(&self.embeddings, &self.owners, query, k),
        }
    }

    pub fn identity(&self, id: u32) -> Option<&Identity> {
        self.identities.get(id as usize)
    }

    /// Writes the gallery atomically (temporary file in the same directory, then rename).
    /// The HNSW index is stored when one has been prepared.
    pub fn save(&mut self, path: &Path) -> Result<(), GalleryError> {
        self.version = file::write(self, path)?;
        Ok(())
    }

    /// Peak bytes that [`Self::load`] would add to the process for the file at `path`,
    /// read from its header (a server checks it against its memory before a reload).
    pub fn load_estimate(path: &Path) -> Result<u64, GalleryError> {
        file::load_estimate(path)
    }

    /// Loads and verifies a gallery file, then prepares the index for `mode`.
    pub fn load(path: &Path, mode: SearchMode, params: HnswParams) -> Result<Self, GalleryError> {
        let mut g = file::read(path, params)?;
        g.prepare_index(mode, params);
        Ok(g)
    }
}

fn validate(identities: &[Identity], embeddings: &[f32], owners: &[u32]) -> Result<(), GalleryError> {
    if owners.is_empty() {
        return Err(GalleryError::TooSmall);
    }
    if embeddings.len() != owners.len() * EMBEDDING_DIM {
        return Err(GalleryError::Invalid(format!(
            "{} embedding values for {} rows of {EMBEDDING_DIM}",
            embeddings.len(),
            owners.len()
        )));
    }
    if let Some(bad) = owners.iter().find(|&&o| o as usize >= identities.len()) {
        return Err(GalleryError::Invalid(format!("row owned by unknown identity {bad}")));
    }
    if embeddings.iter().any(|v| !v.is_finite()) {
        return Err(GalleryError::Invalid("an embedding holds a non-finite value".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::test_rows;

    fn synthetic(identities: usize) -> Gallery {
        let rows = test_rows(identities * 2, 7, 1.0);
        let owners: Vec<u32> = (0..identities as u32).flat_map(|i| [i, i]).collect();
        let people = (0..identities)
            .map(|i| Identity {
                name: format!("p{i}"),
                alias: format!("p{i}"),
                role: String::new(),
                n_movies: 0,
                photo_count: 2,
                thumbnail_jpeg: Vec::new(),
                credits: Vec::new(),
            })
            .collect();
        let mut g = Gallery::new(people, rows, owners, None, BuildInfo::default()).expect("gallery");
        g.prepare_index(SearchMode::Exact, HnswParams::default());
        g.compute_crowding(2);
        g
    }

    /// The percentages a person reads never rise down the list, with the crowding
    /// correction strong enough to reorder candidates (counted, so the test cannot pass
    /// on a gallery where it changes nothing).
    #[test]
    fn percentages_follow_the_ranking() {
        let mut g = synthetic(300);
        assert!((g.calibration.ranking_weight - crowding::DEFAULT_WEIGHT).abs() < 1e-6, "fitted for the key in use");
        for weight in [crowding::DEFAULT_WEIGHT, 3.0] {
            g.set_crowding_weight(weight);
            assert!((g.calibration.ranking_weight - weight).abs() < 1e-6, "refitted for weight {weight}");
            let mut reordered = 0;
            for q in test_rows(200, 99, 1.0).chunks_exact(EMBEDDING_DIM) {
                let query: Embedding = q.try_into().expect("row");
                let hits = g.search(&query, 5, None);
                assert_eq!(hits.len(), 5);
                let (floor, ceiling) = (g.calibration.floor_percent, crate::calibration::CEILING_PERCENT);
                for pair in hits.windows(2) {
                    assert!(pair[0].score <= pair[1].score, "ranked by the key: {hits:?}");
                    assert!(pair[0].similarity >= pair[1].similarity, "weight {weight}: {hits:?}");
                    // A pair the correction reordered, with percentages that say something
                    // (not both stuck at the floor or the ceiling).
                    let informative = pair.iter().all(|c| c.similarity > floor && c.similarity < ceiling);
                    reordered += usize::from(pair[0].distance > pair[1].distance && informative);
                }
            }
            assert!(
                reordered > 0,
                "weight {weight}: no reordered pair with telling percentages; the test proves nothing"
            );
        }
        // With the correction off, the calibration is of the plain distance again.
        g.set_crowding_weight(0.0);
        assert_eq!(g.calibration.ranking_weight, 0.0);
    }
}
