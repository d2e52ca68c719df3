//! The gallery file: `LKGALLRY` magic, format version (u32 LE), payload length (u64 LE),
//! payload (bincode), SHA-256 of the payload. The version string is the hash's prefix.

use super::{validate, BuildInfo, Gallery, Identity};
use crate::calibration::Calibration;
use crate::search::hnsw::{HnswIndex, HnswParams};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};

pub const FORMAT_VERSION: u32 = 1;
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
    #[error("gallery {path} has format version {found}; this build reads version {FORMAT_VERSION}")]
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
    let hnsw = match &g.hnsw {
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

pub(super) fn read(path: &Path, params: HnswParams) -> Result<Gallery, GalleryError> {
    let bytes = std::fs::read(path).map_err(|source| GalleryError::Read { path: path.to_path_buf(), source })?;
    let p = || path.to_path_buf();
    if bytes.len() < HEADER_LEN + 32 || &bytes[..8] != MAGIC {
        return Err(GalleryError::NotAGallery { path: p() });
    }
    let mut u32buf = [0u8; 4];
    u32buf.copy_from_slice(&bytes[8..12]);
    let format = u32::from_le_bytes(u32buf);
    if format != FORMAT_VERSION {
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
    let (payload, _): (Payload, usize) =
        bincode::serde::decode_from_slice(body, bincode_config()).map_err(|_| GalleryError::Corrupt { path: p() })?;
    validate(&payload.identities, &payload.embeddings, &payload.owners)?;
    let hnsw = match payload.hnsw {
        Some(blob) => Some(
            HnswIndex::from_bytes(&blob.graph, &blob.data, blob.params)
                .map(|mut idx| {
                    idx.params.ef_search = params.ef_search;
                    idx
                })
                .map_err(GalleryError::Invalid)?,
        ),
        None => None,
    };
    Ok(Gallery {
        identities: payload.identities,
        embeddings: payload.embeddings,
        owners: payload.owners,
        calibration: payload.calibration,
        build: payload.build,
        version: version_of(&digest),
        hnsw,
        half: None,
    })
}
