//! Which updates are received, running and done, so the polling offset never moves past
//! an update that is neither handled nor durably queued.
//!
//! Updates are handled concurrently and finish in any order. Two ways to poll:
//! - with a state file ("durable"): received updates are written to the file first, then
//!   confirmed to Telegram (offset = highest received + 1); after a restart the file's
//!   queue is handled first;
//! - without one: the offset stays at the lowest unfinished update, so Telegram keeps it
//!   (and re-sends it, which [`Tracker::admit`] recognises) until it is done.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::telegram::{update_id, Update};

/// The content of the state file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Persisted {
    /// Every update up to this id was received: it is either done or in `queued`.
    pub last_update_id: Option<i64>,
    /// Received and not yet done: handled first after a restart.
    #[serde(default)]
    pub queued: Vec<Update>,
}

#[derive(Debug, Default)]
struct State {
    /// Received, not done (running, or waiting for a slot).
    pending: BTreeMap<i64, Update>,
    /// Done, above `committed` (finished out of order).
    done_above: BTreeSet<i64>,
    /// Everything at or below is done.
    committed: Option<i64>,
    max_seen: Option<i64>,
    /// Ids at or below were dealt with before a restart (done or restored into pending).
    floor: Option<i64>,
    /// Bumped on every change, so the state writer can skip identical writes.
    generation: u64,
}

#[derive(Debug)]
pub struct Tracker {
    state: Mutex<State>,
    /// The generation after each completion (a watch, so no change is ever missed).
    changed: watch::Sender<u64>,
}

impl Default for Tracker {
    fn default() -> Self {
        Self { state: Mutex::new(State::default()), changed: watch::Sender::new(0) }
    }
}

impl Tracker {
    /// Resumes from a state file; returns the queued updates to handle first.
    pub fn restore(p: Persisted) -> (Self, Vec<Update>) {
        let pending: BTreeMap<i64, Update> = p.queued.into_iter().map(|u| (update_id(&u), u)).collect();
        let restored: Vec<Update> = pending.values().cloned().collect();
        let committed = match pending.keys().next() {
            Some(lowest) => Some(lowest - 1),
            None => p.last_update_id,
        };
        let max_seen = p.last_update_id.max(pending.keys().next_back().copied());
        let state = State { pending, done_above: BTreeSet::new(), committed, max_seen, floor: max_seen, generation: 0 };
        (Self { state: Mutex::new(state), changed: watch::Sender::new(0) }, restored)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a received update; false if it is done or already known (a
    /// re-delivery), in which case it must be skipped.
    pub fn admit(&self, update: &Update) -> bool {
        self.receive(update_id(update), Some(update))
    }

    /// An update received but not to be handled (one the Bot API types reject): recorded
    /// as done at once, so the offset moves past it. False if it was known already.
    pub fn skip(&self, id: i64) -> bool {
        let fresh = self.receive(id, None);
        if fresh {
            self.complete(id);
        }
        fresh
    }

    fn receive(&self, id: i64, update: Option<&Update>) -> bool {
        let mut s = self.lock();
        let known = s.pending.contains_key(&id)
            || s.committed.is_some_and(|c| id <= c)
            || s.done_above.contains(&id)
            || s.floor.is_some_and(|f| id <= f);
        if known {
            return false;
        }
        if let Some(u) = update {
            s.pending.insert(id, u.clone());
        }
        s.max_seen = Some(s.max_seen.map_or(id, |m| m.max(id)));
        s.generation += 1;
        true
    }

    /// Marks an update done.
    pub fn complete(&self, id: i64) {
        let generation = {
            let mut s = self.lock();
            s.pending.remove(&id);
            s.done_above.insert(id);
            let committed = match s.pending.keys().next() {
                Some(lowest) => Some(lowest - 1),
                None => s.max_seen,
            };
            if committed > s.committed {
                s.committed = committed;
            }
            if let Some(c) = s.committed {
                s.done_above = s.done_above.split_off(&(c + 1));
            }
            s.generation += 1;
            s.generation
        };
        self.changed.send_replace(generation);
    }

    /// The offset for the next getUpdates call. `durable`: the received updates are in
    /// the state file, so Telegram may forget them.
    pub fn next_offset(&self, durable: bool) -> Option<i64> {
        let s = self.lock();
        let base = if durable { s.max_seen } else { s.committed };
        base.map(|c| c + 1)
    }

    /// Updates received and not done.
    pub fn pending(&self) -> usize {
        self.lock().pending.len()
    }

    /// A snapshot for the state file, with its generation.
    pub fn persisted(&self) -> (u64, Persisted) {
        let s = self.lock();
        (s.generation, Persisted { last_update_id: s.max_seen, queued: s.pending.values().cloned().collect() })
    }

    /// Watches completions.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A text message update as the Bot API sends it.
    pub(crate) fn u(id: i64) -> Update {
        let json = serde_json::json!({"update_id": id, "message": {
            "message_id": 1, "date": 1, "chat": {"id": 5, "type": "private", "first_name": "A"}, "text": "hi"}});
        serde_json::from_str(&json.to_string()).unwrap()
    }

    #[test]
    fn skipped_updates_move_the_offset_like_done_ones() {
        let t = Tracker::default();
        assert!(t.admit(&u(10)));
        assert!(t.skip(11));
        assert!(!t.skip(11), "a re-delivery of a skipped update is known");
        assert_eq!(t.next_offset(false), Some(10), "10 is still running");
        t.complete(10);
        assert_eq!(t.next_offset(false), Some(12));
        assert_eq!(t.pending(), 0);
        assert!(t.persisted().1.queued.is_empty(), "skipped updates are not queued");
    }

    #[test]
    fn offset_waits_for_the_slowest_update() {
        let t = Tracker::default();
        assert_eq!(t.next_offset(false), None);
        for id in 10..=12 {
            assert!(t.admit(&u(id)));
        }
        assert!(!t.admit(&u(11)), "a re-delivery of a running update is skipped");
        t.complete(11);
        t.complete(12);
        assert_eq!(t.next_offset(false), Some(10), "10 is still running");
        assert_eq!(t.next_offset(true), Some(13));
        assert!(!t.admit(&u(12)), "done out of order: not again");
        t.complete(10);
        assert_eq!(t.next_offset(false), Some(13));
        assert!(!t.admit(&u(10)));
        assert_eq!(t.pending(), 0);
    }

    #[test]
    fn queue_survives_a_restart() {
        let t = Tracker::default();
        for id in [1, 2, 3] {
            t.admit(&u(id));
        }
        t.complete(1);
        t.complete(3);
        let (_, p) = t.persisted();
        assert_eq!(p.last_update_id, Some(3));
        assert_eq!(p.queued.iter().map(update_id).collect::<Vec<_>>(), [2]);
        // Through JSON, as in the file.
        let p: Persisted = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        let (t, restored) = Tracker::restore(p);
        assert_eq!(restored.len(), 1);
        assert_eq!(t.next_offset(true), Some(4));
        assert_eq!(t.next_offset(false), Some(2));
        assert!(!t.admit(&u(2)), "restored: already queued");
        assert!(!t.admit(&u(3)), "done before the restart");
        assert!(t.admit(&u(4)));
        t.complete(2);
        t.complete(4);
        assert_eq!(t.next_offset(false), Some(5));
    }

    #[test]
    fn generation_moves_on_change() {
        let t = Tracker::default();
        let (g0, _) = t.persisted();
        t.admit(&u(1));
        let (g1, _) = t.persisted();
        assert!(g1 > g0);
        assert!(!t.admit(&u(1)));
        assert_eq!(t.persisted().0, g1);
    }
}
