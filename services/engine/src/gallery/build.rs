//! Turning people and their photos into a gallery: every face of every photo analysed (on
//! all cores, or taken from the embedding cache), then per person the faces that are the
//! person chosen by consensus and quality (`consensus`), with a reason for every rejected
//! photo, thumbnails and calibration.

use super::cache::{hex, EmbeddingCache};
use super::catalog::Sources;
use super::consensus::{ConsensusConfig, FoundFace, PhotoFaces, Pick, Verdict};
use super::{BuildInfo, Gallery, GalleryError, Identity, PhotoCredit};
use crate::analyze::{AnalyzeOptions, FaceAnalyzer};
use crate::decode::DecodeLimits;
use crate::detect::DetectConfig;
use crate::face::{chip_jpeg, CHIP_SIZE};
use crate::models::Models;
use crate::parallel::map_items;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::time::Instant;

#[derive(Debug, Clone)]
pub struct BuildConfig {
    /// Jittered copies averaged per gallery embedding (the original service used 10).
    pub jitters: u32,
    pub workers: usize,
    /// Which faces are the person: quality limits, same-person distance, subject margin.
    pub consensus: ConsensusConfig,
    /// Faces analysed per photo (the strongest detections); the rest are background.
    pub max_faces: usize,
    /// Keep at most this many accepted photos per person.
    pub max_photos_per_person: usize,
    pub thumbnail_size: u32,
    pub limits: DecodeLimits,
    pub detect: DetectConfig,
    /// Where analyses are kept between builds (None: every photo is analysed).
    pub cache: Option<EmbeddingCache>,
}

impl Default for BuildConfig {
    fn default() -> Self {
        Self {
            jitters: 10,
            workers: crate::parallel::default_workers(),
            consensus: ConsensusConfig::default(),
            max_faces: 6,
            max_photos_per_person: 20,
            thumbnail_size: CHIP_SIZE,
            limits: DecodeLimits::default(),
            detect: DetectConfig::default(),
            cache: None,
        }
    }
}

impl BuildConfig {
    /// Every setting that shapes what the analysis of a photo gives (the embedding cache's
    /// key includes it, with the models' content).
    pub fn analysis_settings(&self) -> String {
        format!(
            "jitters={} max_faces={} thumbnail={} limits={:?} detect={:?}",
            self.jitters, self.max_faces, self.thumbnail_size, self.limits, self.detect
        )
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum RejectReason {
    Unreadable {
        detail: String,
    },
    NoFace,
    /// The person's only usable photo has faces too alike in prominence to tell which is
    /// the person (`margin`: the most prominent face over the next).
    SeveralFaces {
        faces: usize,
        margin: f32,
    },
    EyesTooClose {
        eye_distance_px: f32,
        min_px: f32,
    },
    HeadRolled {
        roll_degrees: f32,
        max_degrees: f32,
    },
    /// No face of the photo is within the same-person distance of the person's other photos.
    DisagreesWithOtherPhotos {
        distance: f32,
    },
    TooManyPhotos,
}

impl RejectReason {
    pub fn kind(&self) -> &'static str {
        match self {
            RejectReason::Unreadable { .. } => "unreadable",
            RejectReason::NoFace => "no_face",
            RejectReason::SeveralFaces { .. } => "several_faces",
            RejectReason::EyesTooClose { .. } => "eyes_too_close",
            RejectReason::HeadRolled { .. } => "head_rolled",
            RejectReason::DisagreesWithOtherPhotos { .. } => "disagrees_with_other_photos",
            RejectReason::TooManyPhotos => "too_many_photos",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Rejection {
    pub photo: PathBuf,
    pub person: String,
    #[serde(flatten)]
    pub reason: RejectReason,
}

/// A photo with several faces where one was chosen as the person.
#[derive(Debug, Clone, Serialize)]
pub struct PickRecord {
    pub photo: PathBuf,
    pub person: String,
    #[serde(flatten)]
    pub pick: Pick,
}

#[derive(Debug, Default, Serialize)]
pub struct BuildReport {
    pub photos: usize,
    pub accepted: usize,
    pub identities: usize,
    pub rejected: Vec<Rejection>,
    /// Counts per rejection kind.
    pub rejected_by_reason: std::collections::BTreeMap<String, usize>,
    /// Accepted photos with several faces, and how the person's face was chosen.
    pub picks: Vec<PickRecord>,
    pub people_without_usable_photo: Vec<String>,
    pub catalog_entries_without_photos: Vec<String>,
    pub photos_without_catalog_entry: Vec<PathBuf>,
    /// Photos whose analysis came from the embedding cache, and photos analysed.
    pub cache_hits: usize,
    pub analysed: usize,
    pub seconds: f64,
    pub photos_per_second: f64,
}

struct Job {
    person: usize,
    photo: PathBuf,
}

/// Every face of one photo, from the cache or the models (then stored in the cache).
/// The jitter seed comes from the content: the same photo always gets the same embedding.
fn analyse(analyzer: &mut FaceAnalyzer, job: &Job, cfg: &BuildConfig) -> (Result<PhotoFaces, RejectReason>, bool) {
    let bytes = match std::fs::read(&job.photo) {
        Ok(b) => b,
        Err(e) => return (Err(RejectReason::Unreadable { detail: e.to_string() }), false),
    };
    let digest = Sha256::digest(&bytes);
    let key = cfg.cache.as_ref().map(|c| c.key(&bytes));
    if let (Some(cache), Some(key)) = (&cfg.cache, &key) {
        if let Some(hit) = cache.get(key) {
            return (Ok(hit), true);
        }
    }
    let mut seed = [0u8; 8];
    seed.copy_from_slice(&digest[..8]);
    let opts = AnalyzeOptions {
        all_faces: true,
        max_faces: cfg.max_faces.max(1),
        jitters: cfg.jitters,
        seed: u64::from_le_bytes(seed),
        chip_size: Some(cfg.thumbnail_size),
        ..Default::default()
    };
    let analysis = match analyzer.analyze_bytes(&bytes, &opts) {
        Ok(a) => a,
        Err(e) => return (Err(RejectReason::Unreadable { detail: e.to_string() }), false),
    };
    let faces = analysis
        .faces
        .into_iter()
        .map(|f| FoundFace {
            bbox: f.bbox,
            eye_distance: f.eye_distance,
            roll_degrees: f.roll_degrees,
            embedding: f.embedding.to_vec(),
            chip_jpeg: f.chip.as_deref().and_then(|c| chip_jpeg(c, cfg.thumbnail_size).ok()).unwrap_or_default(),
        })
        .collect();
    let found = PhotoFaces { width: analysis.width, height: analysis.height, faces };
    if let (Some(cache), Some(key)) = (&cfg.cache, &key) {
        if let Err(e) = cache.put(key, &found) {
            tracing::warn!(error = %e, photo_sha256 = %hex(&digest), "cannot store the analysis in the embedding cache");
        }
    }
    (Ok(found), false)
}

/// Builds a gallery from `sources`. `progress(done, total)` is called after each photo.
pub fn build(
    models: &Models,
    sources: Sources,
    cfg: &BuildConfig,
    progress: impl FnMut(usize, usize),
) -> Result<(Gallery, BuildReport), GalleryError> {
    let start = Instant::now();
    let jobs: Vec<Job> = sources
        .people
        .iter()
        .enumerate()
        .flat_map(|(person, p)| p.photos.iter().map(move |photo| Job { person, photo: photo.clone() }))
        .collect();
    let results =
        map_items(models, cfg.limits, cfg.detect, cfg.workers, &jobs, |a, job| analyse(a, job, cfg), progress);

    let mut report = BuildReport {
        photos: jobs.len(),
        catalog_entries_without_photos: sources.entries_without_photos,
        photos_without_catalog_entry: sources.photos_without_entry,
        ..Default::default()
    };
    let mut per_person: Vec<Vec<(&Job, Result<PhotoFaces, RejectReason>)>> =
        (0..sources.people.len()).map(|_| Vec::new()).collect();
    for (job, (result, hit)) in jobs.iter().zip(results) {
        report.cache_hits += usize::from(hit);
        report.analysed += usize::from(!hit && result.is_ok());
        per_person[job.person].push((job, result));
    }
    let mut identities = Vec::new();
    let mut embeddings = Vec::new();
    let mut owners = Vec::new();
    for (person, photos) in sources.people.iter().zip(per_person) {
        let refs: Vec<Result<&PhotoFaces, RejectReason>> =
            photos.iter().map(|(_, r)| r.as_ref().map_err(Clone::clone)).collect();
        let verdicts = cfg.consensus.decide(&refs);
        let mut faces: Vec<(&FoundFace, PhotoCredit)> = Vec::new();
        for ((job, result), verdict) in photos.iter().zip(verdicts) {
            let reject = |reason| Rejection { photo: job.photo.clone(), person: person.name.clone(), reason };
            match (verdict, result) {
                (Verdict::Accepted { .. }, _) if faces.len() >= cfg.max_photos_per_person => {
                    report.rejected.push(reject(RejectReason::TooManyPhotos))
                }
                (Verdict::Accepted { face, pick }, Ok(found)) => {
                    let Some(f) = found.faces.get(face) else { continue };
                    if let Some(pick) = pick {
                        report.picks.push(PickRecord { photo: job.photo.clone(), person: person.name.clone(), pick });
                    }
                    faces.push((f, person.credit(&job.photo).cloned().unwrap_or_default()));
                }
                (Verdict::Accepted { .. }, Err(reason)) => report.rejected.push(reject(reason.clone())),
                (Verdict::Rejected(reason), _) => report.rejected.push(reject(reason)),
            }
        }
        let Some((first, _)) = faces.first() else {
            report.people_without_usable_photo.push(person.name.clone());
            continue;
        };
        let id = identities.len() as u32;
        let credits: Vec<PhotoCredit> = faces.iter().map(|(_, c)| c.clone()).collect();
        identities.push(Identity {
            name: person.name.clone(),
            alias: person.alias.clone(),
            role: person.role.clone(),
            n_movies: person.n_movies,
            photo_count: faces.len() as u32,
            thumbnail_jpeg: first.chip_jpeg.clone(),
            // Kept only when the catalog credits at least one photo.
            credits: if credits.iter().all(PhotoCredit::is_empty) { Vec::new() } else { credits },
        });
        for (face, _) in &faces {
            embeddings.extend_from_slice(&face.embedding);
            owners.push(id);
        }
    }
    for r in &report.rejected {
        *report.rejected_by_reason.entry(r.reason.kind().to_string()).or_default() += 1;
    }
    report.accepted = owners.len();
    report.identities = identities.len();
    if identities.len() < 2 {
        return Err(GalleryError::TooSmall);
    }
    let build = BuildInfo {
        built_at: now_rfc3339(),
        jitters: cfg.jitters,
        photos_seen: report.photos as u32,
        photos_rejected: report.rejected.len() as u32,
    };
    let gallery = Gallery::new(identities, embeddings, owners, None, build)?;
    report.seconds = start.elapsed().as_secs_f64();
    report.photos_per_second = report.photos as f64 / report.seconds.max(1e-9);
    Ok((gallery, report))
}

/// UTC timestamp without pulling in a date crate.
pub fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}
