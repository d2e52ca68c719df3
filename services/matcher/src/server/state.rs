//! The serving gallery, swapped atomically on reload. Requests take an `Arc` snapshot when
//! they start, so in-flight requests finish on the gallery they began with.

use super::memory::{self, MemoryBudget};
use crate::config::EngineArgs;
use anyhow::Context;
use arc_swap::ArcSwapOption;
use lookalike_engine::Gallery;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

/// What a reload may use: the process's ceiling, less what it holds now and what the
/// photos' budget may still take.
pub struct ReloadRoom {
    pub ceiling: u64,
    pub budget: Arc<MemoryBudget>,
}

/// A new gallery refused before loading because it would not fit beside the serving one.
#[derive(Debug, thiserror::Error)]
#[error(
    "the new gallery needs about {need_mb} MB to load and {free_mb} MB are free under the memory ceiling \
     (LOOKALIKE_MEMORY_BUDGET_MB); the current gallery keeps serving. Raise the memory limit, or roll the \
     new gallery out with fresh pods"
)]
pub struct NoRoom {
    pub need_mb: u64,
    pub free_mb: u64,
}

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
    /// Set once serving, when the process has a memory ceiling.
    pub room: OnceLock<ReloadRoom>,
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

impl GalleryState {
    pub fn new(source: GallerySource) -> Self {
        Self { current: ArcSwapOption::empty(), seen: std::sync::Mutex::new(None), source, room: OnceLock::new() }
    }

    pub fn get(&self) -> Option<Arc<Gallery>> {
        self.current.load_full()
    }

    /// Loads and checks the file beside the serving gallery (memory room, format, the
    /// self-check of `self_check`), then swaps it in. On any error the serving gallery
    /// stays as it is.
    pub fn reload(&self) -> anyhow::Result<Arc<Gallery>> {
        let before = stamp(&self.source.path);
        if let Some(room) = self.room.get() {
            let need = Gallery::load_estimate(&self.source.path)
                .with_context(|| format!("reading gallery {}", self.source.path.display()))?;
            let held = memory::resident_bytes().unwrap_or(0);
            // Photos may spend their whole budget on top of what is resident now.
            let photos_may_take = room.budget.total().unwrap_or(0);
            let free = room.ceiling.saturating_sub(held).saturating_sub(photos_may_take);
            if need > free {
                *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = before;
                return Err(NoRoom { need_mb: need >> 20, free_mb: free >> 20 }.into());
            }
        }
        let g = self
            .source
            .engine
            .load_gallery(&self.source.path)
            .with_context(|| format!("loading gallery {}", self.source.path.display()))?;
        anyhow::ensure!(g.identities.len() >= 2, "gallery has fewer than two identities");
        // Refused like a corrupt file when its own faces do not come back as their people.
        let probes = super::self_check::check(&g)?;
        tracing::info!(gallery_version = %g.version, probes, "gallery self-check passed");
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
