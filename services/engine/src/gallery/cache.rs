//! The embedding cache of gallery builds: what the analysis found in a photo (every face's
//! box, quality figures, jittered embedding and thumbnail), stored under a key made of the
//! photo's content and everything that shapes the result: the model files' content, the
//! jitter count, the detection and decoding settings, the thumbnail size and this module's
//! own format number. A rebuild after adding 1% new photos analyses only those 1%; a change
//! of model or setting misses every entry instead of mixing old and new embeddings.
//!
//! Layout: `DIR/<2 hex>/<64 hex>.bin`, bincode, written to a temporary file and renamed, so
//! a killed build leaves no half entry (and concurrent writers of one key write the same
//! bytes). An entry that does not decode is a miss. Nothing is ever deleted: `rm -r DIR`
//! is the way to reclaim the space.

use super::consensus::PhotoFaces;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Bumped whenever what an entry holds, or how the analysis makes it, changes.
const ENTRY_FORMAT: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("embedding cache {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

#[derive(Debug, Clone)]
pub struct EmbeddingCache {
    dir: PathBuf,
    /// Hash of the models and settings, mixed into every key.
    salt: [u8; 32],
}

impl EmbeddingCache {
    /// Opens (creating) the cache in `dir` for the models in `models_dir` and the settings
    /// described by `settings` (any text that changes when an embedding would).
    pub fn open(dir: &Path, models_dir: &Path, settings: &str) -> Result<Self, CacheError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| CacheError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let mut h = Sha256::new();
        h.update(ENTRY_FORMAT.to_le_bytes());
        let mut files: Vec<PathBuf> = std::fs::read_dir(models_dir)
            .map_err(io(models_dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "dat"))
            .collect();
        files.sort();
        for f in &files {
            let mut file = std::fs::File::open(f).map_err(io(f))?;
            h.update(f.file_name().map(|n| n.as_encoded_bytes()).unwrap_or_default());
            std::io::copy(&mut file, &mut h).map_err(io(f))?;
        }
        h.update(settings.as_bytes());
        Ok(Self { dir: dir.to_path_buf(), salt: h.finalize().into() })
    }

    /// The key of a photo's content.
    pub fn key(&self, content: &[u8]) -> String {
        let mut h = Sha256::new();
        h.update(self.salt);
        h.update(Sha256::digest(content));
        hex(&h.finalize())
    }

    fn path_of(&self, key: &str) -> PathBuf {
        self.dir.join(key.get(..2).unwrap_or("00")).join(format!("{key}.bin"))
    }

    pub fn get(&self, key: &str) -> Option<PhotoFaces> {
        let bytes = std::fs::read(self.path_of(key)).ok()?;
        bincode::serde::decode_from_slice(&bytes, bincode::config::standard()).ok().map(|(v, _)| v)
    }

    pub fn put(&self, key: &str, faces: &PhotoFaces) -> Result<(), CacheError> {
        let path = self.path_of(key);
        let dir = path.parent().unwrap_or(&self.dir).to_path_buf();
        let io = |source| CacheError::Io { path: path.clone(), source };
        let bytes = bincode::serde::encode_to_vec(faces, bincode::config::standard())
            .map_err(|e| io(std::io::Error::other(e.to_string())))?;
        std::fs::create_dir_all(&dir).map_err(io)?;
        let mut tmp = tempfile::Builder::new().prefix(".entry").tempfile_in(&dir).map_err(io)?;
        tmp.write_all(&bytes).map_err(io)?;
        tmp.persist(&path).map_err(|e| io(e.error))?;
        Ok(())
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::face::FaceBox;
    use crate::gallery::consensus::FoundFace;

    fn entry() -> PhotoFaces {
        PhotoFaces {
            width: 10,
            height: 20,
            faces: vec![FoundFace {
                bbox: FaceBox { left: 1, top: 2, right: 3, bottom: 4 },
                eye_distance: 30.0,
                roll_degrees: -2.0,
                embedding: vec![0.5; crate::face::EMBEDDING_DIM],
                chip_jpeg: vec![1, 2, 3],
            }],
        }
    }

    #[test]
    fn entries_round_trip_and_every_input_of_the_key_matters() {
        let tmp = tempfile::tempdir().expect("tmp");
        let models = tmp.path().join("models");
        std::fs::create_dir_all(&models).expect("mkdir");
        std::fs::write(models.join("a.dat"), b"weights").expect("write");
        let cache = EmbeddingCache::open(&tmp.path().join("c"), &models, "jitters=10").expect("open");
        let key = cache.key(b"photo");
        assert!(cache.get(&key).is_none());
        cache.put(&key, &entry()).expect("put");
        assert_eq!(cache.get(&key), Some(entry()));
        assert_ne!(cache.key(b"photo2"), key, "content");
        let other = EmbeddingCache::open(&tmp.path().join("c"), &models, "jitters=1").expect("open");
        assert_ne!(other.key(b"photo"), key, "settings");
        std::fs::write(models.join("a.dat"), b"weights v2").expect("write");
        let retrained = EmbeddingCache::open(&tmp.path().join("c"), &models, "jitters=10").expect("open");
        assert_ne!(retrained.key(b"photo"), key, "model content");
        // A damaged entry is a miss, not an error.
        std::fs::write(cache.path_of(&key), b"garbage").expect("write");
        assert!(cache.get(&key).is_none());
    }
}
