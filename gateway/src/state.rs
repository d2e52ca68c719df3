//! The `--state-file`: polling progress and the queue of received-but-unfinished updates,
//! written atomically (temporary file, fsync, rename) so a crash leaves the old or the new
//! content, never half of one.

use std::path::{Path, PathBuf};

use crate::tracker::{Persisted, Tracker};

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state file {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("state file {path} is not valid: {source}")]
    Parse { path: PathBuf, source: serde_json::Error },
    #[error("state writer task failed: {0}")]
    Task(String),
}

/// Reads the state; a missing file is a fresh start.
pub fn load(path: &Path) -> Result<Persisted, StateError> {
    read_json(path)
}

/// A JSON file's content; a missing file is `T::default()`.
pub fn read_json<T: serde::de::DeserializeOwned + Default>(path: &Path) -> Result<T, StateError> {
    match std::fs::read(path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes).map_err(|source| StateError::Parse { path: path.to_owned(), source })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
        Err(source) => Err(StateError::Io { path: path.to_owned(), source }),
    }
}

pub fn save(path: &Path, state: &Persisted) -> Result<(), StateError> {
    let json = serde_json::to_vec(state).map_err(|source| StateError::Parse { path: path.to_owned(), source })?;
    write_atomic(path, &json)
}

/// Replaces `path` with `json`: temporary file, fsync, rename.
pub fn write_atomic(path: &Path, json: &[u8]) -> Result<(), StateError> {
    let io = |source| StateError::Io { path: path.to_owned(), source };
    // One temporary name per process: replicas sharing a directory never write each
    // other's temporary file.
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp.{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(json).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    std::fs::rename(&tmp, path).map_err(io)
}

/// Writes tracker snapshots. Each write takes the snapshot under the store's lock, so
/// writes never go backwards, and an unchanged generation is not written again.
#[derive(Debug)]
pub struct StateStore {
    path: PathBuf,
    written: tokio::sync::Mutex<Option<u64>>,
}

impl StateStore {
    pub fn new(path: PathBuf) -> Self {
        Self { path, written: tokio::sync::Mutex::new(None) }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub async fn flush(&self, tracker: &Tracker) -> Result<(), StateError> {
        let mut written = self.written.lock().await;
        let (generation, snapshot) = tracker.persisted();
        if *written == Some(generation) {
            return Ok(());
        }
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || save(&path, &snapshot))
            .await
            .map_err(|e| StateError::Task(e.to_string()))??;
        *written = Some(generation);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telegram::update_id;
    use crate::tracker::tests::u;

    #[test]
    fn round_trip_and_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        assert!(load(&path).unwrap().last_update_id.is_none());
        // A photo message as Telegram sends it: through teloxide-core's types and back.
        let photo: crate::telegram::Update = serde_json::from_str(
            r#"{"update_id":40,"message":{"message_id":5,"date":1700000000,
            "chat":{"id":42,"type":"private","first_name":"A"},
            "from":{"id":42,"is_bot":false,"first_name":"A","language_code":"ru"},
            "photo":[{"file_id":"s","file_unique_id":"us","width":90,"height":60,"file_size":900},
                     {"file_id":"m","file_unique_id":"um","width":800,"height":600}]}}"#,
        )
        .unwrap();
        assert!(crate::telegram::message(&photo).and_then(|m| m.photo()).is_some_and(|p| p.len() == 2));
        let p = Persisted { last_update_id: Some(41), queued: vec![photo.clone()] };
        save(&path, &p).unwrap();
        let back = load(&path).unwrap();
        assert_eq!(back.last_update_id, Some(41));
        assert_eq!(back.queued[0], photo, "a queued update survives the file unchanged");
        assert!(crate::telegram::message(&back.queued[0]).is_some(), "still a message after the file");
        std::fs::write(&path, b"{broken").unwrap();
        assert!(load(&path).is_err());
    }

    #[tokio::test]
    async fn store_writes_the_latest_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::new(dir.path().join("s.json"));
        let t = Tracker::default();
        for id in 1..=3 {
            t.admit(&u(id));
        }
        store.flush(&t).await.unwrap();
        t.complete(2);
        store.flush(&t).await.unwrap();
        let p = load(store.path()).unwrap();
        assert_eq!(p.last_update_id, Some(3));
        let q: Vec<i64> = p.queued.iter().map(update_id).collect();
        assert_eq!(q, [1, 3]);
    }
}
