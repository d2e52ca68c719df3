//! The gallery file: `LKGALLRY` magic, format version (u32 LE), payload length (u64 LE),
//! payload (bincode), SHA-256 of the payload. The version string is the hash's prefix.
//! Format 2 added the crowding figures, format 3 the photo credits per identity, format 4 the
//! crowding weight the calibration was fitted for (`Calibration::ranking_weight`); older
//! files are still read (without them; their calibration is of the plain distance).

#[cfg(test)]
use super::PhotoCredit;
use super::{validate, BuildInfo, Gallery, Identity, Index};
use crate::calibration::Calibration;
use crate::search::crowding::{self, Crowding};
use crate::search::hnsw::{HnswIndex, HnswParams};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};

pub const FORMAT_VERSION: u32 = 4;
/// The oldest format this build still reads.
const OLDEST_READABLE: u32 = 1;
const MAGIC: &[u8; 8] = b"LKGALLRY";
const HEADER_LEN: usize = 8 + 4 + 8;

#[derive(Debug, thiserror::Error)]
pub enum GalleryError {
    #[error("cannot read gallery {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write gallery {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a lookalike gallery file")]
    NotAGallery { path: PathBuf },
    #[error(
        "gallery {path} has format version {found}; this build reads versions {OLDEST_READABLE} to {FORMAT_VERSION}"
    )]
    WrongFormat { path: PathBuf, found: u32 },
    #[error("gallery {path} is truncated or corrupt (checksum mismatch)")]
    Corrupt { path: PathBuf },
    #[error("gallery is invalid: {0}")]
    Invalid(String),
    #[error("a gallery needs at least two embeddings of two different identities")]
    TooSmall,
}

#[derive(Serialize, Deserialize)]
struct Payload {
    identities: Vec<Identity>,
    embeddings: Vec<f32>,
    owners: Vec<u32>,
    calibration: Calibration,
    build: BuildInfo,
    hnsw: Option<HnswBlob>,
    /// One figure per identity; empty when not computed.
    crowding: Vec<f32>,
}

/// The calibration in formats 1 to 3: fitted on the plain distance.
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct CalibrationV3 {
    mean: f32,
    std: f32,
    floor_percent: f32,
    population: String,
    samples: u32,
}

impl From<CalibrationV3> for Calibration {
    fn from(v: CalibrationV3) -> Self {
        let CalibrationV3 { mean, std, floor_percent, population, samples } = v;
        Self { mean, std, floor_percent, population, samples, ranking_weight: 0.0 }
    }
}

/// Format 3: format 4 with the calibration of the plain distance.
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct PayloadV3 {
    identities: Vec<Identity>,
    embeddings: Vec<f32>,
    owners: Vec<u32>,
    calibration: CalibrationV3,
    build: BuildInfo,
    hnsw: Option<HnswBlob>,
    crowding: Vec<f32>,
}

impl From<PayloadV3> for Payload {
    fn from(v3: PayloadV3) -> Self {
        let PayloadV3 { identities, embeddings, owners, calibration, build, hnsw, crowding } = v3;
        Self { identities, embeddings, owners, calibration: calibration.into(), build, hnsw, crowding }
    }
}

/// An identity in formats 1 and 2: without the photo credits.
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct IdentityV2 {
    name: String,
    alias: String,
    role: String,
    n_movies: u32,
    photo_count: u32,
    thumbnail_jpeg: Vec<u8>,
}

impl From<IdentityV2> for Identity {
    fn from(v: IdentityV2) -> Self {
        let IdentityV2 { name, alias, role, n_movies, photo_count, thumbnail_jpeg } = v;
        Self { name, alias, role, n_movies, photo_count, thumbnail_jpeg, credits: Vec::new() }
    }
}

/// Format 2: format 3 without the photo credits.
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct PayloadV2 {
    identities: Vec<IdentityV2>,
    embeddings: Vec<f32>,
    owners: Vec<u32>,
    calibration: CalibrationV3,
    build: BuildInfo,
    hnsw: Option<HnswBlob>,
    crowding: Vec<f32>,
}

impl From<PayloadV2> for Payload {
    fn from(v2: PayloadV2) -> Self {
        let PayloadV2 { identities, embeddings, owners, calibration, build, hnsw, crowding } = v2;
        let identities = identities.into_iter().map(Identity::from).collect();
        Self { identities, embeddings, owners, calibration: calibration.into(), build, hnsw, crowding }
    }
}

/// Format 1: format 2 without the crowding figures.
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct PayloadV1 {
    identities: Vec<IdentityV2>,
    embeddings: Vec<f32>,
    owners: Vec<u32>,
    calibration: CalibrationV3,
    build: BuildInfo,
    hnsw: Option<HnswBlob>,
}

impl From<PayloadV1> for Payload {
    fn from(v1: PayloadV1) -> Self {
        let PayloadV1 { identities, embeddings, owners, calibration, build, hnsw } = v1;
        PayloadV2 { identities, embeddings, owners, calibration, build, hnsw, crowding: Vec::new() }.into()
    }
}

#[derive(Serialize, Deserialize)]
struct HnswBlob {
    params: HnswParams,
    graph: Vec<u8>,
    data: Vec<u8>,
}

fn bincode_config() -> bincode::config::Configuration {
    bincode::config::standard()
}

pub(super) fn write(g: &Gallery, path: &Path) -> Result<String, GalleryError> {
    let hnsw = match g.hnsw_index() {
        Some(index) => {
            let (graph, data) = index.to_bytes().map_err(GalleryError::Invalid)?;
            Some(HnswBlob { params: index.params, graph, data })
        }
        None => None,
    };
    let payload = Payload {
        identities: g.identities.clone(),
        embeddings: g.embeddings.clone(),
        owners: g.owners.clone(),
        calibration: g.calibration.clone(),
        build: g.build.clone(),
        hnsw,
        crowding: g.crowding().map(<[f32]>::to_vec).unwrap_or_default(),
    };
    let body = bincode::serde::encode_to_vec(&payload, bincode_config())
        .map_err(|e| GalleryError::Invalid(format!("cannot encode: {e}")))?;
    let digest = Sha256::digest(&body);
    let werr = |source| GalleryError::Write { path: path.to_path_buf(), source };
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new().prefix(".gallery").suffix(".lkg.tmp").tempfile_in(dir).map_err(werr)?;
    {
        let f = tmp.as_file_mut();
        f.write_all(MAGIC).map_err(werr)?;
        f.write_all(&FORMAT_VERSION.to_le_bytes()).map_err(werr)?;
        f.write_all(&(body.len() as u64).to_le_bytes()).map_err(werr)?;
        f.write_all(&body).map_err(werr)?;
        f.write_all(&digest).map_err(werr)?;
        f.sync_all().map_err(werr)?;
    }
    tmp.persist(path).map_err(|e| werr(e.error))?;
    Ok(version_of(&digest))
}

fn version_of(digest: &[u8]) -> String {
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Peak bytes that loading the gallery at `path` will add to the process, from its header
/// alone: the file read into memory, the decoded payload (about as large), the f16 copy of
/// the rows (at most half of it) and an HNSW graph built at load when the file has none
/// (about as large as the rows). Measured within it by `tests/gallery.rs`.
pub(super) fn load_estimate(path: &Path) -> Result<u64, GalleryError> {
    use std::io::Read;
    let p = || path.to_path_buf();
    let mut header = [0u8; HEADER_LEN];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut header))
        .map_err(|source| GalleryError::Read { path: p(), source })?;
    if &header[..8] != MAGIC {
        return Err(GalleryError::NotAGallery { path: p() });
    }
    let mut u64buf = [0u8; 8];
    u64buf.copy_from_slice(&header[12..20]);
    let payload = u64::from_le_bytes(u64buf);
    Ok(payload.saturating_mul(4) + (HEADER_LEN as u64 + 32))
}

pub(super) fn read(path: &Path, params: HnswParams) -> Result<Gallery, GalleryError> {
    let bytes = std::fs::read(path).map_err(|source| GalleryError::Read { path: path.to_path_buf(), source })?;
    let p = || path.to_path_buf();
    if bytes.len() < HEADER_LEN + 32 || &bytes[..8] != MAGIC {
        return Err(GalleryError::NotAGallery { path: p() });
    }
    let mut u32buf = [0u8; 4];
    u32buf.copy_from_slice(&bytes[8..12]);
    let format = u32::from_le_bytes(u32buf);
    if !(OLDEST_READABLE..=FORMAT_VERSION).contains(&format) {
        return Err(GalleryError::WrongFormat { path: p(), found: format });
    }
    let mut u64buf = [0u8; 8];
    u64buf.copy_from_slice(&bytes[12..20]);
    let len = usize::try_from(u64::from_le_bytes(u64buf)).map_err(|_| GalleryError::Corrupt { path: p() })?;
    if bytes.len() != HEADER_LEN + len + 32 {
        return Err(GalleryError::Corrupt { path: p() });
    }
    let body = &bytes[HEADER_LEN..HEADER_LEN + len];
    let digest = Sha256::digest(body);
    if digest.as_slice() != &bytes[HEADER_LEN + len..] {
        return Err(GalleryError::Corrupt { path: p() });
    }
    let corrupt = |_| GalleryError::Corrupt { path: p() };
    let payload: Payload = match format {
        1 => bincode::serde::decode_from_slice::<PayloadV1, _>(body, bincode_config()).map_err(corrupt)?.0.into(),
        2 => bincode::serde::decode_from_slice::<PayloadV2, _>(body, bincode_config()).map_err(corrupt)?.0.into(),
        3 => bincode::serde::decode_from_slice::<PayloadV3, _>(body, bincode_config()).map_err(corrupt)?.0.into(),
        _ => bincode::serde::decode_from_slice(body, bincode_config()).map_err(corrupt)?.0,
    };
    validate(&payload.identities, &payload.embeddings, &payload.owners)?;
    let index = match payload.hnsw {
        Some(blob) => Index::Hnsw(
            HnswIndex::from_bytes(&blob.graph, &blob.data, blob.params)
                .map(|mut idx| {
                    idx.params.ef_search = params.ef_search;
                    idx
                })
                .map_err(GalleryError::Invalid)?,
        ),
        None => Index::Exact,
    };
    let crowding = match payload.crowding.len() {
        0 => None,
        _ => Some(
            Crowding::from_figures(payload.crowding, payload.identities.len())
                .ok_or_else(|| GalleryError::Invalid("crowding figures do not match the identities".into()))?,
        ),
    };
    Ok(Gallery {
        identities: payload.identities,
        embeddings: payload.embeddings,
        owners: payload.owners,
        calibration: payload.calibration,
        build: payload.build,
        version: version_of(&digest),
        index,
        crowding,
        crowding_weight: crowding::DEFAULT_WEIGHT,
        crowding_bias: Vec::new(),
    }
    .with_bias())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::hnsw::HnswParams;

    fn identity(name: &str) -> IdentityV2 {
        IdentityV2 {
            name: name.into(),
            alias: name.into(),
            role: String::new(),
            n_movies: 0,
            photo_count: 1,
            thumbnail_jpeg: Vec::new(),
        }
    }

    fn v3_owners() -> Vec<u32> {
        (0..20).flat_map(|i| [i, i]).collect()
    }

    fn v3_calibration() -> CalibrationV3 {
        CalibrationV3 { mean: 0.8, std: 0.1, floor_percent: 1.0, population: "test".into(), samples: 2 }
    }

    fn file_with(format: u32, body: &[u8]) -> Vec<u8> {
        let mut f = MAGIC.to_vec();
        f.extend_from_slice(&format.to_le_bytes());
        f.extend_from_slice(&(body.len() as u64).to_le_bytes());
        f.extend_from_slice(body);
        f.extend_from_slice(&Sha256::digest(body));
        f
    }

    #[test]
    fn format_1_files_load_without_crowding_figures() {
        let rows = crate::search::test_rows(4, 3, 1.0);
        let v1 = PayloadV1 {
            identities: vec![identity("a"), identity("b")],
            embeddings: rows,
            owners: vec![0, 0, 1, 1],
            calibration: v3_calibration(),
            build: BuildInfo::default(),
            hnsw: None,
        };
        let body = bincode::serde::encode_to_vec(&v1, bincode_config()).expect("encode");
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("v1.lkg");
        std::fs::write(&path, file_with(1, &body)).expect("write");
        let g = read(&path, HnswParams::default()).expect("a format-1 file loads");
        assert_eq!(g.identities.len(), 2);
        assert!(g.crowding().is_none());

        std::fs::write(&path, file_with(FORMAT_VERSION + 1, &body)).expect("write");
        let err = read(&path, HnswParams::default()).err().expect("a newer format is refused");
        assert!(err.to_string().contains("versions 1 to 4"), "{err}");
    }

    #[test]
    fn format_2_files_load_without_credits_and_format_3_keeps_them() {
        let rows = crate::search::test_rows(4, 3, 1.0);
        let v2 = PayloadV2 {
            identities: vec![identity("a"), identity("b")],
            embeddings: rows.clone(),
            owners: vec![0, 0, 1, 1],
            calibration: v3_calibration(),
            build: BuildInfo::default(),
            hnsw: None,
            crowding: vec![0.5, 0.6],
        };
        let body = bincode::serde::encode_to_vec(&v2, bincode_config()).expect("encode");
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("v2.lkg");
        std::fs::write(&path, file_with(2, &body)).expect("write");
        let g = read(&path, HnswParams::default()).expect("a format-2 file loads");
        assert!(g.crowding().is_some(), "its crowding figures are kept");
        assert!(g.identities.iter().all(|i| i.credits.is_empty() && i.thumbnail_credit().is_none()));

        let mut g3 = g;
        let credit = PhotoCredit { author: "Jane Doe".into(), license: "CC BY 4.0".into(), ..Default::default() };
        g3.identities[1].credits = vec![credit.clone(), PhotoCredit::default()];
        let path3 = dir.path().join("v3.lkg");
        write(&g3, &path3).expect("write format 3");
        let back = read(&path3, HnswParams::default()).expect("read format 3");
        assert_eq!(back.identities[1].thumbnail_credit(), Some(&credit));
        assert!(back.identities[0].thumbnail_credit().is_none());
    }

    #[test]
    fn format_3_files_get_a_calibration_of_the_ranking_key_and_format_4_keeps_it() {
        let rows = crate::search::test_rows(40, 3, 1.0);
        let owners = v3_owners();
        let v3 = PayloadV3 {
            identities: (0..20).map(|i| Identity::from(identity(&format!("p{i}")))).collect(),
            embeddings: rows,
            owners,
            calibration: v3_calibration(),
            build: BuildInfo::default(),
            hnsw: None,
            crowding: (0..20).map(|i| 0.5 + 0.01 * i as f32).collect(),
        };
        let body = bincode::serde::encode_to_vec(&v3, bincode_config()).expect("encode");
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("v3.lkg");
        std::fs::write(&path, file_with(3, &body)).expect("write");
        let g = read(&path, HnswParams::default()).expect("a format-3 file loads");
        assert!((g.calibration.ranking_weight - crowding::DEFAULT_WEIGHT).abs() < 1e-6, "refitted on load");
        let bias: Vec<f32> = (0..20).map(|i| crowding::DEFAULT_WEIGHT * (0.5 + 0.01 * i as f32)).collect();
        let want = Calibration::fit_nearest_other(g.rows(), &v3_owners(), &bias, crowding::DEFAULT_WEIGHT, 5000);
        assert_eq!(Some(&g.calibration), want.as_ref(), "the fit of the ranking key");
        let path4 = dir.path().join("v4.lkg");
        write(&g, &path4).expect("write format 4");
        let back = read(&path4, HnswParams::default()).expect("read format 4");
        assert_eq!(back.calibration, g.calibration, "no refit needed: the weight is recorded");
    }
}
