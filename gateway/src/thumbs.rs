//! Telegram `file_id`s of identity thumbnails already uploaded: the first answer naming a
//! celebrity uploads the JPEG, later ones send the id (no GetIdentity call, no upload).
//! Keyed by gallery version too, since identity ids are only stable within one gallery.

use std::collections::HashMap;
use std::sync::Mutex;

/// More identities than any gallery we ship; past it the cache starts over (cheap: one
/// re-upload per identity).
const CAPACITY: usize = 100_000;

#[derive(Debug, Default)]
pub struct ThumbnailCache {
    ids: Mutex<HashMap<(String, u32), String>>,
}

impl ThumbnailCache {
    pub fn get(&self, gallery: &str, identity: u32) -> Option<String> {
        self.lock().get(&(gallery.to_owned(), identity)).cloned()
    }

    pub fn put(&self, gallery: &str, identity: u32, file_id: String) {
        let mut ids = self.lock();
        if ids.len() >= CAPACITY {
            ids.clear();
        }
        ids.insert((gallery.to_owned(), identity), file_id);
    }

    /// Telegram refused the id (expired, or another bot's): upload again next time.
    pub fn forget(&self, gallery: &str, identity: u32) {
        self.lock().remove(&(gallery.to_owned(), identity));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, u32), String>> {
        self.ids.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_gallery_version() {
        let c = ThumbnailCache::default();
        c.put("v1", 3, "AgAD".into());
        assert_eq!(c.get("v1", 3).as_deref(), Some("AgAD"));
        assert_eq!(c.get("v2", 3), None);
        c.forget("v1", 3);
        assert_eq!(c.get("v1", 3), None);
    }
}
