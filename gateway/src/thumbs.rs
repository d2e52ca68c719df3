//! What the gateway keeps of gallery identities, keyed by gallery version too (identity ids
//! are only stable within one gallery):
//! - Telegram `file_id`s of identity thumbnails already uploaded (the plain reply): the
//!   first answer naming a celebrity uploads the JPEG, later ones send the id (no upload;
//!   the credit for the caption comes from the entry below, so GetIdentity is asked again
//!   only if that entry was evicted);
//! - the thumbnail bytes and photo credit (the card's right half): a card is a new upload
//!   every time, since it holds the sender's face, but the celebrity's half is the same, so
//!   it is asked of the matcher once.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use lru::LruCache;

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

/// One celebrity's half of a card.
#[derive(Debug)]
pub struct Celebrity {
    /// The gallery's aligned thumbnail, JPEG (~8 KB).
    pub thumbnail_jpeg: bytes::Bytes,
    /// Attribution of the photo, when the gallery has it.
    pub credit: Option<crate::reply::PhotoCredit>,
}

/// Thumbnails kept for cards: 4096 x ~8 KB = ~32 MB at most; least recently used go first.
const CELEBRITY_CAPACITY: NonZeroUsize = match NonZeroUsize::new(4096) {
    Some(n) => n,
    None => NonZeroUsize::MIN,
};

#[derive(Debug)]
pub struct CelebrityCache {
    entries: Mutex<LruCache<(String, u32), Arc<Celebrity>>>,
}

impl Default for CelebrityCache {
    fn default() -> Self {
        Self::with_capacity(CELEBRITY_CAPACITY)
    }
}

impl CelebrityCache {
    pub fn with_capacity(capacity: NonZeroUsize) -> Self {
        Self { entries: Mutex::new(LruCache::new(capacity)) }
    }

    pub fn get(&self, gallery: &str, identity: u32) -> Option<Arc<Celebrity>> {
        self.lock().get(&(gallery.to_owned(), identity)).cloned()
    }

    pub fn put(&self, gallery: &str, identity: u32, celebrity: Arc<Celebrity>) {
        self.lock().put((gallery.to_owned(), identity), celebrity);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<(String, u32), Arc<Celebrity>>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn celebrities_per_gallery_least_recently_used_out() {
        let c = CelebrityCache::with_capacity(NonZeroUsize::MIN.saturating_add(1));
        let entry =
            |b: &'static [u8]| Arc::new(Celebrity { thumbnail_jpeg: bytes::Bytes::from_static(b), credit: None });
        c.put("v1", 1, entry(b"a"));
        c.put("v1", 2, entry(b"b"));
        assert!(c.get("v2", 1).is_none());
        assert_eq!(c.get("v1", 1).map(|e| e.thumbnail_jpeg.clone()), Some(bytes::Bytes::from_static(b"a")));
        c.put("v1", 3, entry(b"c"));
        assert!(c.get("v1", 2).is_none(), "the least recently used entry went");
        assert!(c.get("v1", 1).is_some() && c.get("v1", 3).is_some());
    }

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
