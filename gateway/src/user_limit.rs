//! Per-user photo quota (photos per minute, sliding window), checked before any download
//! or matcher call so one user cannot monopolise the matcher.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

const WINDOW: Duration = Duration::from_secs(60);
const PRUNE_ABOVE: usize = 4096;

#[derive(Debug)]
pub struct UserLimiter {
    per_minute: usize,
    users: Mutex<HashMap<i64, VecDeque<Instant>>>,
}

impl UserLimiter {
    pub fn new(per_minute: u32) -> Self {
        Self { per_minute: usize::try_from(per_minute).unwrap_or(usize::MAX).max(1), users: Mutex::new(HashMap::new()) }
    }

    /// Counts a photo for `user`; false when the user is over the quota (not counted then,
    /// so a user who keeps trying is not locked out for longer).
    pub fn allow(&self, user: i64) -> bool {
        let now = Instant::now();
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        if users.len() > PRUNE_ABOVE {
            users.retain(|_, w| w.back().is_some_and(|t| now.duration_since(*t) < WINDOW));
        }
        let window = users.entry(user).or_default();
        while window.front().is_some_and(|t| now.duration_since(*t) >= WINDOW) {
            window.pop_front();
        }
        if window.len() >= self.per_minute {
            return false;
        }
        window.push_back(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn quota_per_user_per_minute() {
        let l = UserLimiter::new(3);
        assert!(l.allow(1) && l.allow(1) && l.allow(1));
        assert!(!l.allow(1));
        assert!(l.allow(2));
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(l.allow(1));
    }
}
