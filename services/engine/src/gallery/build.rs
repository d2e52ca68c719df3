//! Turning people and their photos into a gallery: quality filters with a reason for every
//! rejected photo, jittered embeddings on all cores, thumbnails, calibration.

use super::catalog::Sources;
use super::{BuildInfo, Gallery, GalleryError, Identity, PhotoCredit};
use crate::analyze::{AnalyzeOptions, FaceAnalyzer};
use crate::decode::DecodeLimits;
use crate::detect::DetectConfig;
use crate::face::{chip_jpeg, Face, CHIP_SIZE};
use crate::models::Models;
use crate::parallel::map_items;
use serde::Serialize;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Debug, Clone)]
pub struct BuildConfig {
    /// Jittered copies averaged per gallery embedding (the original service used 10).
    pub jitters: u32,
    pub workers: usize,
    /// Photos whose eyes are closer than this (pixels) are too small to trust.
    pub min_eye_distance: f32,
    /// Photos with a stronger head roll (degrees) are rejected.
    pub max_roll_degrees: f32,
    /// A second face at least this fraction of the main face's area makes the photo
    /// ambiguous: we cannot tell which one is the person.
    pub ambiguity_ratio: f32,
    /// Keep at most this many accepted photos per person.
    pub max_photos_per_person: usize,
    pub thumbnail_size: u32,
    pub limits: DecodeLimits,
    pub detect: DetectConfig,
}

impl Default for BuildConfig {
    fn default() -> Self {
        Self {
            jitters: 10,
            workers: crate::parallel::default_workers(),
            min_eye_distance: 20.0,
            max_roll_degrees: 35.0,
            ambiguity_ratio: 0.5,
            max_photos_per_person: 20,
            thumbnail_size: CHIP_SIZE,
            limits: DecodeLimits::default(),
            detect: DetectConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum RejectReason {
    Unreadable { detail: String },
    NoFace,
    SeveralFaces { faces: usize },
    EyesTooClose { eye_distance_px: f32, min_px: f32 },
    HeadRolled { roll_degrees: f32, max_degrees: f32 },
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

#[derive(Debug, Default, Serialize)]
pub struct BuildReport {
    pub photos: usize,
    pub accepted: usize,
    pub identities: usize,
    pub rejected: Vec<Rejection>,
    /// Counts per rejection kind.
    pub rejected_by_reason: std::collections::BTreeMap<String, usize>,
    pub people_without_usable_photo: Vec<String>,
    pub catalog_entries_without_photos: Vec<String>,
    pub photos_without_catalog_entry: Vec<PathBuf>,
    pub seconds: f64,
    pub photos_per_second: f64,
}

struct Job {
    person: usize,
    photo: PathBuf,
}

fn seed_for(path: &std::path::Path) -> u64 {
    // FNV-1a of the file name: a photo always gets the same jitter, whatever the order.
    let name = path.file_name().map(|n| n.as_encoded_bytes().to_vec()).unwrap_or_default();
    let parent = path.parent().and_then(|p| p.file_name()).map(|n| n.as_encoded_bytes().to_vec()).unwrap_or_default();
    parent.iter().chain(&name).fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3))
}

fn judge(analyzer: &mut FaceAnalyzer, job: &Job, cfg: &BuildConfig) -> Result<Face, RejectReason> {
    let bytes = std::fs::read(&job.photo).map_err(|e| RejectReason::Unreadable { detail: e.to_string() })?;
    let opts = AnalyzeOptions {
        jitters: cfg.jitters,
        seed: seed_for(&job.photo),
        chip_size: Some(cfg.thumbnail_size),
        ..Default::default()
    };
    let analysis =
        analyzer.analyze_bytes(&bytes, &opts).map_err(|e| RejectReason::Unreadable { detail: e.to_string() })?;
    let Some(face) = analysis.faces.into_iter().next() else {
        return Err(RejectReason::NoFace);
    };
    let main_area = face.bbox.area() as f32;
    let rivals = analysis.detections.iter().filter(|b| b.area() as f32 >= cfg.ambiguity_ratio * main_area).count();
    if rivals > 1 {
        return Err(RejectReason::SeveralFaces { faces: analysis.detections.len() });
    }
    if face.eye_distance < cfg.min_eye_distance {
        return Err(RejectReason::EyesTooClose { eye_distance_px: face.eye_distance, min_px: cfg.min_eye_distance });
    }
    if face.roll_degrees.abs() > cfg.max_roll_degrees {
        return Err(RejectReason::HeadRolled { roll_degrees: face.roll_degrees, max_degrees: cfg.max_roll_degrees });
    }
    Ok(face)
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
    let results = map_items(models, cfg.limits, cfg.detect, cfg.workers, &jobs, |a, job| judge(a, job, cfg), progress);

    let mut report = BuildReport {
        photos: jobs.len(),
        catalog_entries_without_photos: sources.entries_without_photos,
        photos_without_catalog_entry: sources.photos_without_entry,
        ..Default::default()
    };
    let mut identities = Vec::new();
    let mut embeddings = Vec::new();
    let mut owners = Vec::new();
    let mut accepted_per_person = vec![Vec::new(); sources.people.len()];
    for (job, result) in jobs.iter().zip(results) {
        let person = &sources.people[job.person];
        let reject = |reason| Rejection { photo: job.photo.clone(), person: person.name.clone(), reason };
        match result {
            Ok(face) if accepted_per_person[job.person].len() < cfg.max_photos_per_person => {
                let credit = person.credit(&job.photo).cloned().unwrap_or_default();
                accepted_per_person[job.person].push((face, credit))
            }
            Ok(_) => report.rejected.push(reject(RejectReason::TooManyPhotos)),
            Err(reason) => report.rejected.push(reject(reason)),
        }
    }
    for (person, faces) in sources.people.iter().zip(accepted_per_person) {
        let (faces, credits): (Vec<Face>, Vec<PhotoCredit>) = faces.into_iter().unzip();
        let Some(first) = faces.first() else {
            report.people_without_usable_photo.push(person.name.clone());
            continue;
        };
        let id = identities.len() as u32;
        let thumbnail = first.chip.as_deref().and_then(|c| chip_jpeg(c, cfg.thumbnail_size).ok()).unwrap_or_default();
        identities.push(Identity {
            name: person.name.clone(),
            alias: person.alias.clone(),
            role: person.role.clone(),
            n_movies: person.n_movies,
            photo_count: faces.len() as u32,
            thumbnail_jpeg: thumbnail,
            // Kept only when the catalog credits at least one photo.
            credits: if credits.iter().all(PhotoCredit::is_empty) { Vec::new() } else { credits },
        });
        for face in &faces {
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
