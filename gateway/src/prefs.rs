//! Per-user reply preferences: who turned the side-by-side cards off (`/cards off`).
//!
//! Keyed by the sender's user id, not the chat: the card shows the sender's face, so the
//! sender decides, in private chats and groups alike. Only the ids of users who opted out
//! are kept (no names, no photos).
//!
//! With `--prefs-file` the set lives in that file and may be shared by several gateway
//! replicas (webhook mode, a ReadWriteMany volume): a change takes an exclusive lock on
//! `<file>.lock`, reads the file afresh, applies the one change and replaces the file
//! atomically, so no replica's change is lost; a lookup re-reads the file whenever its
//! modification time or size changed, so every replica honours a choice made on another.
//! Without the file the choices last until the process ends.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::state::{read_json as read, write_atomic, StateError};

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Stored {
    /// Users who get the plain reply (celebrity photo and caption) instead of a card.
    #[serde(default)]
    cards_off: BTreeSet<i64>,
}

impl Stored {
    /// Applies one user's choice; whether it changed anything.
    fn set_cards(&mut self, user: i64, on: bool) -> bool {
        if on {
            self.cards_off.remove(&user)
        } else {
            self.cards_off.insert(user)
        }
    }
}

/// What identifies a version of the file: modification time and size.
type Stamp = (Option<SystemTime>, u64);

#[derive(Debug, Default)]
struct Cached {
    stored: Stored,
    /// The file version `stored` was read from (None: not read yet, or no file).
    seen: Option<Stamp>,
}

#[derive(Debug)]
pub struct Prefs {
    /// Cards for everyone who did not opt out (the operator's `--cards`).
    cards_default: bool,
    cached: Mutex<Cached>,
    path: Option<PathBuf>,
}

impl Prefs {
    /// Loads the file if there is one (a missing file is an empty set).
    pub fn load(path: Option<PathBuf>, cards_default: bool) -> Result<Self, StateError> {
        let cached = match &path {
            Some(p) => {
                let seen = stamp(p);
                Cached { stored: read(p)?, seen }
            }
            None => Cached::default(),
        };
        Ok(Self { cards_default, cached: Mutex::new(cached), path })
    }

    pub fn cards(&self, user: i64) -> bool {
        if !self.cards_default {
            return false;
        }
        self.refresh();
        !self.lock().stored.cards_off.contains(&user)
    }

    /// Whether the operator has cards on at all (`/cards on` cannot override that).
    pub fn cards_available(&self) -> bool {
        self.cards_default
    }

    /// Re-reads the file if another writer (another replica) changed it. A file that cannot
    /// be read keeps the last good set (logged).
    fn refresh(&self) {
        let Some(path) = &self.path else { return };
        let now = stamp(path);
        if now == self.lock().seen {
            return;
        }
        match read(path) {
            Ok(stored) => *self.lock() = Cached { stored, seen: now },
            Err(e) => tracing::warn!(error = %e, "cannot re-read the prefs file; keeping the last good set"),
        }
    }

    /// Records the user's choice and persists it. On error nothing changed (what the user
    /// is told, what the bot does and what a restart finds agree).
    pub async fn set_cards(&self, user: i64, on: bool) -> Result<(), StateError> {
        let Some(path) = self.path.clone() else {
            self.lock().stored.set_cards(user, on);
            return Ok(());
        };
        let updated = tokio::task::spawn_blocking(move || change_file(&path, user, on))
            .await
            .map_err(|e| StateError::Task(e.to_string()))??;
        *self.lock() = updated;
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cached> {
        self.cached.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Under an exclusive lock on `<path>.lock` (held by one replica or task at a time): the
/// file as it is now, with the one change applied, written back if it changed.
fn change_file(path: &Path, user: i64, on: bool) -> Result<Cached, StateError> {
    let io = |source| StateError::Io { path: path.to_owned(), source };
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(PathBuf::from(lock_path))
        .map_err(io)?;
    lock.lock().map_err(io)?;
    let mut stored: Stored = read(path)?;
    if stored.set_cards(user, on) {
        let json = serde_json::to_vec(&stored).map_err(|source| StateError::Parse { path: path.to_owned(), source })?;
        write_atomic(path, &json)?;
    }
    let seen = stamp(path);
    // Dropping the file releases the lock.
    drop(lock);
    Ok(Cached { stored, seen })
}

fn stamp(path: &Path) -> Option<Stamp> {
    std::fs::metadata(path).ok().map(|m| (m.modified().ok(), m.len()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn choices_survive_a_restart_and_the_operator_switch_wins() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("prefs.json");
        let p = Prefs::load(Some(path.clone()), true).unwrap();
        assert!(p.cards(7) && p.cards(8));
        p.set_cards(7, false).await.unwrap();
        assert!(!p.cards(7) && p.cards(8));
        let again = Prefs::load(Some(path.clone()), true).unwrap();
        assert!(!again.cards(7) && again.cards(8), "the choice is read back");
        again.set_cards(7, true).await.unwrap();
        assert!(Prefs::load(Some(path.clone()), true).unwrap().cards(7));
        let off = Prefs::load(Some(path.clone()), false).unwrap();
        assert!(!off.cards(8), "no cards when the operator turned them off, even for who never opted out");
        std::fs::write(&path, b"{broken").unwrap();
        assert!(Prefs::load(Some(path), true).is_err());
    }

    #[tokio::test]
    async fn a_choice_that_cannot_be_saved_is_not_in_effect() {
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("gone");
        std::fs::create_dir(&gone).unwrap();
        let p = Prefs::load(Some(gone.join("prefs.json")), true).unwrap();
        // The file's directory disappears: every write fails.
        std::fs::remove_dir(&gone).unwrap();
        assert!(p.set_cards(5, false).await.is_err());
        assert!(p.cards(5), "the failed opt-out is rolled back");
        assert!(p.set_cards(5, false).await.is_err(), "a retry tries to write again");
        assert!(p.cards(5));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn replicas_sharing_the_file_see_each_others_choices_and_lose_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("prefs.json");
        let a = std::sync::Arc::new(Prefs::load(Some(path.clone()), true).unwrap());
        let b = std::sync::Arc::new(Prefs::load(Some(path.clone()), true).unwrap());
        a.set_cards(1, false).await.unwrap();
        assert!(!b.cards(1), "b honours a's choice");
        b.set_cards(2, false).await.unwrap();
        assert!(!a.cards(2) && !a.cards(1), "a sees b's, and keeps its own");
        // Many changes at once from both: none lost.
        let mut tasks = Vec::new();
        for u in 100..140 {
            let p = if u % 2 == 0 { a.clone() } else { b.clone() };
            tasks.push(tokio::spawn(async move { p.set_cards(u, false).await }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let fresh = Prefs::load(Some(path), true).unwrap();
        assert!((100..140).chain([1, 2]).all(|u| !fresh.cards(u) && !a.cards(u) && !b.cards(u)));
        b.set_cards(1, true).await.unwrap();
        assert!(a.cards(1), "turning cards back on reaches a too");
    }

    #[tokio::test]
    async fn without_a_file_choices_live_in_memory() {
        let p = Prefs::load(None, true).unwrap();
        p.set_cards(1, false).await.unwrap();
        assert!(!p.cards(1));
    }
}
