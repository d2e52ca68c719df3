//! The serving gallery, swapped atomically on reload. Requests take an `Arc` snapshot when
//! they start, so in-flight requests finish on the gallery they began with.

use crate::config::EngineArgs;
use anyhow::Context;
use arc_swap::ArcSwapOption;
use lookalike_engine::Gallery;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

pub struct GallerySource {
    pub path: PathBuf,
    /// Index and ranking settings applied to every load.
    pub engine: EngineArgs,
}

pub struct GalleryState {
    current: ArcSwapOption<Gallery>,
    /// (modification time, size) of the file last loaded, for the file watcher.
    seen: std::sync::Mutex<Option<(SystemTime, u64)>>,
    pub source: GallerySource,
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

impl GalleryState {
    pub fn new(source: GallerySource) -> Self {
        Self { current: ArcSwapOption::empty(), seen: std::sync::Mutex::new(None), source }
    }

    pub fn get(&self) -> Option<Arc<Gallery>> {
        self.current.load_full()
    }

    /// Loads and checks the file beside the serving gallery, then swaps it in. On any
    /// error the serving gallery stays as it is.
    pub fn reload(&self) -> anyhow::Result<Arc<Gallery>> {
        let before = stamp(&self.source.path);
        let g = self
            .source
            .engine
            .load_gallery(&self.source.path)
            .with_context(|| format!("loading gallery {}", self.source.path.display()))?;
        anyhow::ensure!(g.identities.len() >= 2, "gallery has fewer than two identities");
        let g = Arc::new(g);
        self.current.store(Some(g.clone()));
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = before;
        Ok(g)
    }

    /// True when the file changed since the last load attempt (the watcher then reloads).
    pub fn changed_on_disk(&self) -> bool {
        let now = stamp(&self.source.path);
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if now.is_some() && now != *seen {
            // Remember it even if the load fails, so a broken file is not retried forever.
            *seen = now;
            true
        } else {
            false
        }
    }
}
