//! Which face in a person's photos is the person.
//!
//! A catalog's photos are not all of the person: a file can show someone else (a wrong
//! Commons category, a mislabelled upload), or several people. With several photos of a
//! person the faces that agree with each other are the person: an anchor face is the one
//! that the most other photos have a face within the same-person distance of; the group is,
//! per photo, its face nearest the anchor when within that distance, then once more
//! nearest the group's mean. Photos left out are rejected as `disagrees_with_other_photos`
//! with their distance; in a photo with several faces the one that matches the group is
//! taken (a pick by consensus, marked in the report).
//!
//! With one usable photo (or photos that agree on nobody), the subject must be clear from
//! the photo itself: the most prominent face (area, weighted towards the centre) is taken
//! when it is at least `subject_margin` times as prominent as the next face of comparable
//! size (a pick by prominence, marked in the report); otherwise the photo stays ambiguous
//! (`several_faces`). An infinite margin restores the old rule (every photo with a second
//! face of at least `ambiguity_ratio` of the main face's area is rejected). The margin's
//! default was measured on lfw-dev (docs/BENCHMARKS.md, "Gallery cleaning").
//!
//! Pure logic over the faces found per photo, so it is tested without the models.

use super::build::RejectReason;
use crate::face::{FaceBox, EMBEDDING_DIM};
use serde::{Deserialize, Serialize};

/// One face found in a gallery photo, with what the gallery needs from it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FoundFace {
    pub bbox: FaceBox,
    pub eye_distance: f32,
    pub roll_degrees: f32,
    /// The (jittered) embedding, `EMBEDDING_DIM` values.
    pub embedding: Vec<f32>,
    /// The aligned face thumbnail (JPEG).
    pub chip_jpeg: Vec<u8>,
}

/// Every face found in one photo (up to the analysis' face cap, strongest detections
/// first), and the photo's size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhotoFaces {
    pub width: u32,
    pub height: u32,
    pub faces: Vec<FoundFace>,
}

#[derive(Debug, Clone, Copy)]
pub struct ConsensusConfig {
    /// Faces closer than this are taken for the same person (dlib's own threshold is 0.6).
    pub same_person_distance: f32,
    /// Photos whose eyes are closer than this (pixels) are too small to trust.
    pub min_eye_distance: f32,
    /// Photos with a stronger head roll (degrees) are rejected.
    pub max_roll_degrees: f32,
    /// Faces smaller than this fraction of the largest face's area do not compete for the
    /// subject (people in the background).
    pub ambiguity_ratio: f32,
    /// How many times more prominent than the next competing face the subject of a single
    /// photo must be; `f32::INFINITY` rejects every photo with a competing face.
    pub subject_margin: f32,
}

impl Default for ConsensusConfig {
    fn default() -> Self {
        Self {
            same_person_distance: 0.6,
            min_eye_distance: 20.0,
            max_roll_degrees: 35.0,
            ambiguity_ratio: 0.5,
            subject_margin: DEFAULT_SUBJECT_MARGIN,
        }
    }
}

/// Measured on lfw-dev (docs/BENCHMARKS.md, "Gallery cleaning").
pub const DEFAULT_SUBJECT_MARGIN: f32 = 1.5;

/// How a face was chosen in a photo with several faces.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "how", rename_all = "snake_case")]
pub enum Pick {
    /// It matches the person's other photos.
    Consensus { faces: usize },
    /// The person's only usable photo: the clearly most prominent face.
    Prominence { faces: usize, margin: f32 },
}

/// What becomes of one photo of a person.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Face `face` of the photo is the person; `pick` says how when there was a choice.
    Accepted {
        face: usize,
        pick: Option<Pick>,
    },
    Rejected(RejectReason),
}

fn distance(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f32>().sqrt()
}

impl ConsensusConfig {
    fn passes(&self, f: &FoundFace) -> Result<(), RejectReason> {
        if f.eye_distance < self.min_eye_distance {
            return Err(RejectReason::EyesTooClose { eye_distance_px: f.eye_distance, min_px: self.min_eye_distance });
        }
        if f.roll_degrees.abs() > self.max_roll_degrees {
            return Err(RejectReason::HeadRolled { roll_degrees: f.roll_degrees, max_degrees: self.max_roll_degrees });
        }
        Ok(())
    }

    /// The faces of a photo that could be the person (good enough to embed and compare),
    /// or the reason none can.
    fn candidates(&self, photo: &PhotoFaces) -> Result<Vec<usize>, RejectReason> {
        let usable: Vec<usize> = (0..photo.faces.len())
            .filter(|&i| photo.faces[i].embedding.len() == EMBEDDING_DIM && self.passes(&photo.faces[i]).is_ok())
            .collect();
        if !usable.is_empty() {
            return Ok(usable);
        }
        match (0..photo.faces.len()).max_by_key(|&i| photo.faces[i].bbox.area()) {
            None => Err(RejectReason::NoFace),
            Some(i) => Err(self.passes(&photo.faces[i]).err().unwrap_or(RejectReason::NoFace)),
        }
    }

    /// The subject of a photo judged alone: `Ok((face, pick))` or `SeveralFaces`/quality.
    fn subject(&self, photo: &PhotoFaces) -> Result<(usize, Option<Pick>), RejectReason> {
        let largest = photo.faces.iter().map(|f| f.bbox.area()).max().unwrap_or(0);
        if largest == 0 {
            return Err(RejectReason::NoFace);
        }
        let competing: Vec<usize> = (0..photo.faces.len())
            .filter(|&i| photo.faces[i].bbox.area() as f32 >= self.ambiguity_ratio * largest as f32)
            .collect();
        let mut ranked: Vec<(usize, f32)> = competing.iter().map(|&i| (i, prominence(photo, i))).collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
        let Some(&(best, p1)) = ranked.first() else { return Err(RejectReason::NoFace) };
        let pick = match ranked.get(1) {
            None => None,
            Some(&(_, p2)) => {
                let margin = p1 / p2.max(f32::MIN_POSITIVE);
                if margin < self.subject_margin {
                    return Err(RejectReason::SeveralFaces { faces: photo.faces.len(), margin });
                }
                Some(Pick::Prominence { faces: photo.faces.len(), margin })
            }
        };
        let face = &photo.faces[best];
        self.passes(face)?;
        if face.embedding.len() != EMBEDDING_DIM {
            return Err(RejectReason::NoFace);
        }
        Ok((best, pick))
    }

    /// Decides every photo of one person (in catalog order: the first is the portrait).
    pub fn decide(&self, photos: &[Result<&PhotoFaces, RejectReason>]) -> Vec<Verdict> {
        let mut verdicts: Vec<Option<Verdict>> = vec![None; photos.len()];
        let mut usable: Vec<(usize, &PhotoFaces, Vec<usize>)> = Vec::new();
        for (j, photo) in photos.iter().enumerate() {
            match photo {
                Err(reason) => verdicts[j] = Some(Verdict::Rejected(reason.clone())),
                Ok(p) => match self.candidates(p) {
                    Ok(c) => usable.push((j, p, c)),
                    Err(reason) => verdicts[j] = Some(Verdict::Rejected(reason)),
                },
            }
        }
        if usable.len() >= 2 {
            if let Some(group) = self.agreeing_group(&usable) {
                for (k, (j, p, _)) in usable.iter().enumerate() {
                    verdicts[*j] = Some(match group[k] {
                        Ok(face) => {
                            let pick = (p.faces.len() > 1).then_some(Pick::Consensus { faces: p.faces.len() });
                            Verdict::Accepted { face, pick }
                        }
                        Err(distance) => Verdict::Rejected(RejectReason::DisagreesWithOtherPhotos { distance }),
                    });
                }
                return verdicts.into_iter().map(|v| v.unwrap_or(Verdict::Rejected(RejectReason::NoFace))).collect();
            }
        }
        // One usable photo, or photos that agree on nobody: the first photo whose subject
        // is clear is the person; the others disagree with it.
        let mut kept: Option<(usize, usize)> = None;
        for (k, (j, p, _)) in usable.iter().enumerate() {
            match self.subject(p) {
                Ok((face, pick)) => {
                    verdicts[*j] = Some(Verdict::Accepted { face, pick });
                    kept = Some((k, face));
                    break;
                }
                Err(reason) => verdicts[*j] = Some(Verdict::Rejected(reason)),
            }
        }
        if let Some((k0, f0)) = kept {
            let anchor = &usable[k0].1.faces[f0].embedding;
            for (j, p, cands) in usable.iter().skip(k0 + 1) {
                let d = cands.iter().map(|&i| distance(&p.faces[i].embedding, anchor)).fold(f32::INFINITY, f32::min);
                verdicts[*j] = Some(Verdict::Rejected(RejectReason::DisagreesWithOtherPhotos { distance: d }));
            }
        }
        verdicts.into_iter().map(|v| v.unwrap_or(Verdict::Rejected(RejectReason::NoFace))).collect()
    }

    /// Per usable photo, the face in the agreeing group (`Ok(face)`) or its nearest
    /// candidate's distance to the group (`Err(distance)`); `None` when no two photos agree.
    #[allow(clippy::type_complexity)]
    fn agreeing_group(&self, usable: &[(usize, &PhotoFaces, Vec<usize>)]) -> Option<Vec<Result<usize, f32>>> {
        let t = self.same_person_distance;
        let emb = |k: usize, i: usize| usable[k].1.faces[i].embedding.as_slice();
        // The anchor: the candidate most other photos agree with; ties go to a photo with a
        // single candidate, then the larger face, then the earlier photo.
        let mut best: Option<((usize, bool, i64, std::cmp::Reverse<usize>), usize, usize)> = None;
        for (k, (_, p, cands)) in usable.iter().enumerate() {
            for &i in cands {
                let support = usable
                    .iter()
                    .enumerate()
                    .filter(|(m, (_, _, other))| *m != k && other.iter().any(|&g| distance(emb(k, i), emb(*m, g)) <= t))
                    .count();
                let key = (support, cands.len() == 1, p.faces[i].bbox.area(), std::cmp::Reverse(k));
                if best.as_ref().is_none_or(|(b, _, _)| key > *b) {
                    best = Some((key, k, i));
                }
            }
        }
        let ((support, ..), k0, i0) = best?;
        if support == 0 {
            return None;
        }
        let members = |centre: &[f32]| -> Vec<Result<usize, f32>> {
            usable
                .iter()
                .enumerate()
                .map(|(k, (_, _, cands))| {
                    let (i, d) = cands
                        .iter()
                        .map(|&i| (i, distance(emb(k, i), centre)))
                        .min_by(|a, b| a.1.total_cmp(&b.1))
                        .unwrap_or((0, f32::INFINITY));
                    if d <= t {
                        Ok(i)
                    } else {
                        Err(d)
                    }
                })
                .collect()
        };
        let first = members(emb(k0, i0));
        // Once more around the group's mean, a steadier centre than any one face.
        let mut mean = vec![0f32; EMBEDDING_DIM];
        let mut n = 0f32;
        for (k, m) in first.iter().enumerate() {
            if let Ok(i) = m {
                mean.iter_mut().zip(emb(k, *i)).for_each(|(a, b)| *a += b);
                n += 1.0;
            }
        }
        mean.iter_mut().for_each(|a| *a /= n.max(1.0));
        let second = members(&mean);
        Some(if second.iter().filter(|m| m.is_ok()).count() >= 2 { second } else { first })
    }
}

/// A face's claim to be the photo's subject: its area, weighted down by up to half towards
/// the corners (portraits centre their subject).
pub fn prominence(photo: &PhotoFaces, i: usize) -> f32 {
    let b = &photo.faces[i].bbox;
    let (cx, cy) = ((b.left + b.right) as f32 / 2.0, (b.top + b.bottom) as f32 / 2.0);
    let (w, h) = (photo.width.max(1) as f32, photo.height.max(1) as f32);
    let off = ((cx - w / 2.0).powi(2) + (cy - h / 2.0).powi(2)).sqrt() / ((w / 2.0).hypot(h / 2.0));
    b.area() as f32 * (1.0 - 0.5 * off.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A face of side `side` centred at (`x`, `y`) whose embedding is `dir` (scaled).
    fn face(x: i32, y: i32, side: i32, dir: usize, scale: f32) -> FoundFace {
        let mut embedding = vec![0f32; EMBEDDING_DIM];
        embedding[dir] = scale;
        FoundFace {
            bbox: FaceBox { left: x - side / 2, top: y - side / 2, right: x + side / 2, bottom: y + side / 2 },
            eye_distance: side as f32 / 3.0,
            roll_degrees: 0.0,
            embedding,
            chip_jpeg: Vec::new(),
        }
    }

    fn photo(faces: Vec<FoundFace>) -> PhotoFaces {
        PhotoFaces { width: 400, height: 400, faces }
    }

    fn run(cfg: &ConsensusConfig, photos: &[PhotoFaces]) -> Vec<Verdict> {
        let refs: Vec<Result<&PhotoFaces, RejectReason>> = photos.iter().map(Ok).collect();
        cfg.decide(&refs)
    }

    #[test]
    fn the_photos_that_agree_are_the_person_and_an_outlier_is_rejected_with_its_distance() {
        let cfg = ConsensusConfig::default();
        // Person along axis 0 (three photos a little apart), an impostor along axis 1.
        let photos = vec![
            photo(vec![face(200, 200, 120, 1, 1.0)]), // the impostor is the first photo
            photo(vec![face(200, 200, 120, 0, 1.0)]),
            photo(vec![face(200, 200, 120, 0, 1.2)]),
            photo(vec![face(200, 200, 120, 0, 0.9)]),
        ];
        let v = run(&cfg, &photos);
        match &v[0] {
            Verdict::Rejected(RejectReason::DisagreesWithOtherPhotos { distance }) => {
                assert!(*distance > 1.0, "{distance}")
            }
            other => panic!("the impostor is rejected: {other:?}"),
        }
        for (j, verdict) in v.iter().enumerate().skip(1) {
            assert_eq!(*verdict, Verdict::Accepted { face: 0, pick: None }, "photo {j}");
        }
    }

    #[test]
    fn in_a_group_photo_the_face_that_matches_the_other_photos_is_taken() {
        let cfg = ConsensusConfig::default();
        // The person is the smaller face on the right of the group photo.
        let photos = vec![
            photo(vec![face(120, 200, 160, 5, 1.0), face(300, 200, 140, 0, 1.0)]),
            photo(vec![face(200, 200, 120, 0, 1.1)]),
        ];
        let v = run(&cfg, &photos);
        assert_eq!(v[0], Verdict::Accepted { face: 1, pick: Some(Pick::Consensus { faces: 2 }) });
        assert_eq!(v[1], Verdict::Accepted { face: 0, pick: None });
    }

    #[test]
    fn a_single_photo_keeps_a_clear_subject_and_rejects_an_ambiguous_one() {
        let cfg = ConsensusConfig::default();
        // Clear: a large central face and a smaller one near the edge (both above half the area).
        let clear = photo(vec![face(200, 200, 160, 0, 1.0), face(360, 60, 120, 1, 1.0)]);
        match &run(&cfg, std::slice::from_ref(&clear))[0] {
            Verdict::Accepted { face: 0, pick: Some(Pick::Prominence { faces: 2, margin }) } => {
                assert!(*margin >= cfg.subject_margin, "{margin}")
            }
            other => panic!("the clear subject is taken: {other:?}"),
        }
        // Ambiguous: two faces of the same size at the same distance from the centre.
        let ambiguous = photo(vec![face(120, 200, 140, 0, 1.0), face(280, 200, 140, 1, 1.0)]);
        match &run(&cfg, &[ambiguous])[0] {
            Verdict::Rejected(RejectReason::SeveralFaces { faces: 2, margin }) => assert!(*margin < 1.01),
            other => panic!("an ambiguous photo is rejected: {other:?}"),
        }
        // The old rule: no margin is enough.
        let strict = ConsensusConfig { subject_margin: f32::INFINITY, ..cfg };
        assert!(matches!(run(&strict, &[clear])[0], Verdict::Rejected(RejectReason::SeveralFaces { .. })));
        // A small background face does not compete at all.
        let background = photo(vec![face(200, 200, 160, 0, 1.0), face(40, 40, 60, 1, 1.0)]);
        assert_eq!(run(&strict, &[background])[0], Verdict::Accepted { face: 0, pick: None });
    }

    #[test]
    fn photos_that_agree_on_nobody_keep_the_first_clear_one() {
        let cfg = ConsensusConfig::default();
        let photos = vec![photo(vec![face(200, 200, 120, 0, 1.0)]), photo(vec![face(200, 200, 120, 1, 1.0)])];
        let v = run(&cfg, &photos);
        assert_eq!(v[0], Verdict::Accepted { face: 0, pick: None });
        assert!(matches!(v[1], Verdict::Rejected(RejectReason::DisagreesWithOtherPhotos { .. })), "{:?}", v[1]);
    }

    #[test]
    fn quality_and_read_failures_keep_their_reasons() {
        let cfg = ConsensusConfig::default();
        let mut tiny = face(200, 200, 30, 0, 1.0);
        tiny.eye_distance = 5.0;
        let photos = [photo(vec![tiny]), photo(vec![])];
        let refs: Vec<Result<&PhotoFaces, RejectReason>> =
            vec![Ok(&photos[0]), Ok(&photos[1]), Err(RejectReason::Unreadable { detail: "broken".into() })];
        let v = cfg.decide(&refs);
        assert!(matches!(v[0], Verdict::Rejected(RejectReason::EyesTooClose { .. })), "{:?}", v[0]);
        assert_eq!(v[1], Verdict::Rejected(RejectReason::NoFace));
        assert!(matches!(v[2], Verdict::Rejected(RejectReason::Unreadable { .. })));
    }
}
