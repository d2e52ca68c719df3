//! The matcher's use cases, in domain types: what every front end (the gRPC service,
//! `matcher match`, the benchmarks) calls. Nothing here knows gRPC, HTTP or JSON; the
//! edges convert to and from these types (`server::convert`, `cli::match_images`).
//!
//! - [`match_photo`]: analyse a photo (or take an embedding), search the gallery for every
//!   face, resolve the identities. Runs on a worker (it holds the worker's models).
//! - [`QueryLimits::admit`]: a caller's query checked against the server's limits, with the
//!   server's defaults filled in.
//! - [`identity_card`] and [`GallerySummary`]: what the gallery says about one identity and
//!   about itself.

use bytes::Bytes;
use lookalike_engine::detect::DetectReport;
use lookalike_engine::error::AnalyzeError;
use lookalike_engine::{
    chip_jpeg, AnalyzeOptions, Candidate, Embedding, Face, FaceAnalyzer, Gallery, PhotoCredit, StageTimings, CHIP_SIZE,
    EMBEDDING_DIM,
};
use std::time::{Duration, Instant};

/// What to match: a photo's encoded bytes, or a face embedding computed elsewhere.
#[derive(Debug, Clone)]
pub enum Photo {
    Image(Bytes),
    Embedding(Box<Embedding>),
}

/// Which faces of a photo to match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaceSelection {
    /// The largest face only.
    Largest,
    /// Every face, left to right, up to `max_faces`.
    All,
}

/// One match request, as the caller asked for it.
#[derive(Debug, Clone)]
pub struct MatchQuery {
    pub photo: Photo,
    /// Candidates per face (at least 1).
    pub top_k: usize,
    pub faces: FaceSelection,
    /// Most faces with [`FaceSelection::All`]; `None` = the server's default.
    pub max_faces: Option<usize>,
    /// Candidates farther than this are left out; `None` = no limit.
    pub max_distance: Option<f32>,
    /// Return each face's aligned chip as JPEG.
    pub chips: bool,
}

/// A query the limits refuse, or one that does not make sense; the message is for humans.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct QueryError(pub String);

/// Per-call limits of a server (advertised in `GalleryInfo.limits`).
#[derive(Debug, Clone, Copy)]
pub struct QueryLimits {
    pub max_top_k: u32,
    pub max_faces: u32,
    pub default_max_faces: u32,
}

impl QueryLimits {
    /// The query within these limits, with the default face count filled in.
    pub fn admit(&self, mut q: MatchQuery) -> Result<MatchQuery, QueryError> {
        if q.top_k == 0 || q.top_k > self.max_top_k as usize {
            return Err(QueryError(format!("top_k is {}; it must be between 1 and {}", q.top_k, self.max_top_k)));
        }
        q.max_faces = Some(self.faces(q.max_faces)?);
        Ok(q)
    }

    /// The face count a caller asked for (`None` = default), checked.
    pub fn faces(&self, asked: Option<usize>) -> Result<usize, QueryError> {
        let max = asked.unwrap_or(self.default_max_faces as usize);
        if max > self.max_faces as usize {
            return Err(QueryError(format!("max_faces is {max}; it must be at most {}", self.max_faces)));
        }
        Ok(max)
    }
}

impl MatchQuery {
    /// The analysis this query needs (`mirror` is the server's setting).
    pub fn analyze_options(&self, mirror: bool) -> AnalyzeOptions {
        AnalyzeOptions {
            all_faces: self.faces == FaceSelection::All,
            max_faces: self.max_faces.unwrap_or(AnalyzeOptions::default().max_faces),
            mirror,
            chip_size: self.chips.then_some(CHIP_SIZE),
            ..Default::default()
        }
    }
}

/// An embedding sent by a caller: exactly [`EMBEDDING_DIM`] finite values.
pub fn embedding_from(values: &[f32]) -> Result<Embedding, QueryError> {
    if values.len() != EMBEDDING_DIM {
        return Err(QueryError(format!(
            "the embedding has {} values; it must have exactly {EMBEDDING_DIM}",
            values.len()
        )));
    }
    if values.iter().any(|v| !v.is_finite()) {
        return Err(QueryError("the embedding holds a NaN or infinite value".into()));
    }
    let mut e = [0f32; EMBEDDING_DIM];
    e.copy_from_slice(values);
    Ok(e)
}

/// One gallery identity a face resembles.
#[derive(Debug, Clone, PartialEq)]
pub struct IdentityMatch {
    pub identity_id: u32,
    pub name: String,
    pub alias: String,
    pub distance: f32,
    /// Calibrated similarity, 0-100, following the ranking.
    pub similarity: f32,
    /// The ranking key (distance less the crowding correction).
    pub score: f32,
}

/// One face of the photo and its candidates, best first.
#[derive(Debug, Clone)]
pub struct FaceMatch {
    /// The detected face (none when the query was an embedding).
    pub face: Option<Face>,
    pub candidates: Vec<IdentityMatch>,
    /// The aligned chip as JPEG, when asked for.
    pub chip_jpeg: Option<Bytes>,
}

/// The answer to a [`MatchQuery`].
#[derive(Debug, Clone)]
pub struct MatchOutcome {
    /// Largest face first, or left to right with [`FaceSelection::All`]; one entry for an
    /// embedding query.
    pub faces: Vec<FaceMatch>,
    /// The photo's size after EXIF orientation (none for an embedding query).
    pub image_size: Option<(u32, u32)>,
    pub timings: StageTimings,
    pub search_time: Duration,
    pub gallery_version: String,
    /// How the faces were found (none for an embedding query).
    pub detection: Option<DetectReport>,
}

/// Analyses the query's photo (or takes its embedding), searches the gallery for each face
/// and resolves the identities. `opts` is [`MatchQuery::analyze_options`].
pub fn match_photo(
    analyzer: &mut FaceAnalyzer,
    gallery: &Gallery,
    query: &MatchQuery,
    opts: &AnalyzeOptions,
) -> Result<MatchOutcome, AnalyzeError> {
    let search = |e: &Embedding| {
        let found = gallery.search(e, query.top_k, query.max_distance);
        identities(gallery, &found)
    };
    let (faces, image_size, timings, search_time, detection) = match &query.photo {
        Photo::Embedding(e) => {
            let t = Instant::now();
            let candidates = tracing::info_span!("search").in_scope(|| search(e));
            let faces = vec![FaceMatch { face: None, candidates, chip_jpeg: None }];
            (faces, None, StageTimings::default(), t.elapsed(), None)
        }
        Photo::Image(bytes) => {
            let analysis = analyzer.analyze_bytes(bytes, opts)?;
            let t = Instant::now();
            let found: Vec<_> = tracing::info_span!("search", faces = analysis.faces.len())
                .in_scope(|| analysis.faces.iter().map(|f| search(&f.embedding)).collect());
            let search_time = t.elapsed();
            let faces = analysis
                .faces
                .into_iter()
                .zip(found)
                .map(|(mut face, candidates)| {
                    // Encoded here, on the worker, like the rest of the per-photo CPU work;
                    // the raw chip is dropped.
                    let chip_jpeg = face.chip.take().and_then(encode_chip);
                    FaceMatch { face: Some(face), candidates, chip_jpeg }
                })
                .collect();
            (faces, Some((analysis.width, analysis.height)), analysis.timings, search_time, Some(analysis.detection))
        }
    };
    let gallery_version = gallery.version.clone();
    Ok(MatchOutcome { faces, image_size, timings, search_time, gallery_version, detection })
}

/// Candidates with their identities resolved (a candidate whose identity the gallery
/// does not know, which a valid gallery never has, is left out).
fn identities(g: &Gallery, found: &[Candidate]) -> Vec<IdentityMatch> {
    found
        .iter()
        .filter_map(|c| {
            let id = g.identity(c.identity)?;
            Some(IdentityMatch {
                identity_id: c.identity,
                name: id.name.clone(),
                alias: id.alias.clone(),
                distance: c.distance,
                similarity: c.similarity,
                score: c.score,
            })
        })
        .collect()
}

/// A face's chip as JPEG; none when the encoder failed (never in practice: a missing chip
/// costs the caller a picture, not the match).
fn encode_chip(raw: Vec<u8>) -> Option<Bytes> {
    match chip_jpeg(&raw, CHIP_SIZE) {
        Ok(jpeg) => Some(jpeg.into()),
        Err(e) => {
            tracing::warn!(error = %e, "could not encode a face chip");
            None
        }
    }
}

/// What the gallery holds about one identity.
#[derive(Debug, Clone)]
pub struct IdentityCard {
    pub identity_id: u32,
    pub name: String,
    pub alias: String,
    pub role: String,
    pub n_movies: u32,
    pub photo_count: u32,
    /// The aligned thumbnail (JPEG); none when the caller did not want it.
    pub thumbnail_jpeg: Option<Bytes>,
    pub credit: Option<PhotoCredit>,
    pub gallery_version: String,
}

/// No such identity in the serving gallery.
#[derive(Debug, Clone, thiserror::Error)]
#[error("no identity {identity_id} in gallery {gallery_version}")]
pub struct UnknownIdentity {
    pub identity_id: u32,
    pub gallery_version: String,
}

/// One identity's card, with its thumbnail when `thumbnail` is set.
pub fn identity_card(g: &Gallery, identity_id: u32, thumbnail: bool) -> Result<IdentityCard, UnknownIdentity> {
    let id =
        g.identity(identity_id).ok_or_else(|| UnknownIdentity { identity_id, gallery_version: g.version.clone() })?;
    Ok(IdentityCard {
        identity_id,
        name: id.name.clone(),
        alias: id.alias.clone(),
        role: id.role.clone(),
        n_movies: id.n_movies,
        photo_count: id.photo_count,
        thumbnail_jpeg: thumbnail.then(|| Bytes::from(id.thumbnail_jpeg.clone())),
        credit: id.thumbnail_credit().cloned(),
        gallery_version: g.version.clone(),
    })
}

/// What a server says about the gallery it serves and its own capacity.
#[derive(Clone)]
pub struct GallerySummary<'a> {
    pub gallery: &'a Gallery,
    pub limits: QueryLimits,
    pub max_image_bytes: u64,
    pub max_image_pixels: u64,
    pub workers: usize,
    pub queue_capacity: usize,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn query() -> MatchQuery {
        MatchQuery {
            photo: Photo::Image(Bytes::from_static(b"x")),
            top_k: 1,
            faces: FaceSelection::Largest,
            max_faces: None,
            max_distance: None,
            chips: false,
        }
    }

    const LIMITS: QueryLimits = QueryLimits { max_top_k: 100, max_faces: 20, default_max_faces: 10 };

    #[test]
    fn admit_fills_the_default_and_refuses_what_the_limits_do_not_allow() {
        assert_eq!(LIMITS.admit(query()).unwrap().max_faces, Some(10));
        assert_eq!(LIMITS.admit(MatchQuery { max_faces: Some(20), ..query() }).unwrap().max_faces, Some(20));
        let too_many = LIMITS.admit(MatchQuery { max_faces: Some(21), ..query() }).unwrap_err();
        assert_eq!(too_many.0, "max_faces is 21; it must be at most 20");
        let top = LIMITS.admit(MatchQuery { top_k: 101, ..query() }).unwrap_err();
        assert_eq!(top.0, "top_k is 101; it must be between 1 and 100");
        assert!(LIMITS.admit(MatchQuery { top_k: 0, ..query() }).is_err());
        assert!(LIMITS.admit(MatchQuery { top_k: 100, ..query() }).is_ok());
    }

    #[test]
    fn options_follow_the_query() {
        let q = LIMITS.admit(MatchQuery { faces: FaceSelection::All, chips: true, ..query() }).unwrap();
        let o = q.analyze_options(true);
        assert!(o.all_faces && o.mirror);
        assert_eq!((o.max_faces, o.chip_size), (10, Some(CHIP_SIZE)));
        let o = LIMITS.admit(query()).unwrap().analyze_options(false);
        assert!(!o.all_faces && !o.mirror && o.chip_size.is_none());
    }

    #[test]
    fn embeddings_must_have_the_model_size_and_finite_values() {
        assert!(embedding_from(&[0.1; EMBEDDING_DIM]).is_ok());
        assert_eq!(
            embedding_from(&[0.1; 3]).unwrap_err().0,
            format!("the embedding has 3 values; it must have exactly {EMBEDDING_DIM}")
        );
        let mut v = [0.1; EMBEDDING_DIM];
        v[7] = f32::NAN;
        assert!(embedding_from(&v).is_err());
        v[7] = f32::INFINITY;
        assert!(embedding_from(&v).is_err());
    }
}
