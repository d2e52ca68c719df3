//! Per-user reply preferences: who turned the side-by-side cards off (`/cards off`).
//!
//! Keyed by the sender's user id, not the chat: the card shows the sender's face, so the
//! sender decides, in private chats and groups alike. Only the ids of users who opted out
//! are kept (no names, no photos). With `--prefs-file` the set is written atomically after
//! each change and read at start-up, so a restart keeps everyone's choice; without it the
//! choice lasts until the process ends.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::state::{write_atomic, StateError};

#[derive(Debug, Default, Serialize, Deserialize)]
struct Stored {
    /// Users who get the plain reply (celebrity photo and caption) instead of a card.
    #[serde(default)]
    cards_off: BTreeSet<i64>,
}

#[derive(Debug)]
pub struct Prefs {
    /// Cards for everyone who did not opt out (the operator's `--cards`).
    cards_default: bool,
    stored: Mutex<Stored>,
    path: Option<PathBuf>,
    /// Serialises file writes so an older set never overwrites a newer one.
    writing: tokio::sync::Mutex<()>,
}

impl Prefs {
    /// Loads the file if there is one (a missing file is an empty set).
    pub fn load(path: Option<PathBuf>, cards_default: bool) -> Result<Self, StateError> {
        let stored = match &path {
            Some(p) => read(p)?,
            None => Stored::default(),
        };
        Ok(Self { cards_default, stored: Mutex::new(stored), path, writing: tokio::sync::Mutex::new(()) })
    }

    pub fn cards(&self, user: i64) -> bool {
        self.cards_default && !self.lock().cards_off.contains(&user)
    }

    /// Whether the operator has cards on at all (`/cards on` cannot override that).
    pub fn cards_available(&self) -> bool {
        self.cards_default
    }

    /// Records the user's choice and persists it.
    pub async fn set_cards(&self, user: i64, on: bool) -> Result<(), StateError> {
        let _writing = self.writing.lock().await;
        let json = {
            let mut s = self.lock();
            let changed = if on { s.cards_off.remove(&user) } else { s.cards_off.insert(user) };
            if !changed {
                return Ok(());
            }
            serde_json::to_vec(&*s).map_err(|source| StateError::Parse { path: self.path_or_empty(), source })?
        };
        let Some(path) = self.path.clone() else { return Ok(()) };
        let written = tokio::task::spawn_blocking(move || write_atomic(&path, &json))
            .await
            .map_err(|e| StateError::Task(e.to_string()))
            .and_then(|r| r);
        if written.is_err() {
            // Not saved: not in effect either, so what the user is told, what the bot does
            // and what a restart finds agree (and a retry writes again).
            let mut s = self.lock();
            if on {
                s.cards_off.insert(user);
            } else {
                s.cards_off.remove(&user);
            }
        }
        written
    }

    fn path_or_empty(&self) -> PathBuf {
        self.path.clone().unwrap_or_default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Stored> {
        self.stored.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn read(path: &Path) -> Result<Stored, StateError> {
    match std::fs::read(path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes).map_err(|source| StateError::Parse { path: path.to_owned(), source })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Stored::default()),
        Err(source) => Err(StateError::Io { path: path.to_owned(), source }),
    }
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
    }

    #[tokio::test]
    async fn without_a_file_choices_live_in_memory() {
        let p = Prefs::load(None, true).unwrap();
        p.set_cards(1, false).await.unwrap();
        assert!(!p.cards(1));
    }
}
