//! Telegram flood control: a global message budget (this replica's share of ~30/s), at
//! most one message per second to a chat, and 20 per minute to a group.
//!
//! Each chat has a FIFO lock: a message first waits for its chat's turn (spacing, group
//! window, any 429 pause), and only then takes a global slot. Taking the global slot last
//! means a chat that is waiting never reserves global capacity it cannot use yet, so one
//! busy chat cannot stall the others.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::OwnedMutexGuard;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy)]
pub struct FloodConfig {
    /// Messages per second this replica may send, all chats together.
    pub global_rate: f64,
    /// Minimum gap between two messages to one chat.
    pub chat_interval: Duration,
    /// Messages per minute to one group chat.
    pub group_per_minute: u32,
}

/// The global budget: grants at least `interval` apart, measured when each grant is
/// actually taken (a sender woken late pushes the next one back), so no one-second window
/// ever holds more than `rate` grants. Waiters are served in FIFO order.
#[derive(Debug)]
struct Global {
    interval: Duration,
    /// The earliest time of the next grant.
    next: tokio::sync::Mutex<Instant>,
}

impl Global {
    async fn take(&self) {
        let mut next = self.next.lock().await;
        tokio::time::sleep_until(*next).await;
        *next = Instant::now() + self.interval;
    }

    fn try_take(&self) -> bool {
        let Ok(mut next) = self.next.try_lock() else {
            return false;
        };
        let now = Instant::now();
        if *next <= now {
            *next = now + self.interval;
            true
        } else {
            false
        }
    }
}

#[derive(Debug, Default)]
struct ChatState {
    last_sent: Option<Instant>,
    /// Send times in the last minute (groups only).
    window: VecDeque<Instant>,
    /// Set by a 429: nothing goes to this chat before it.
    blocked_until: Option<Instant>,
}

#[derive(Debug)]
struct Inner {
    config: FloodConfig,
    global: Global,
    chats: Mutex<HashMap<i64, Arc<tokio::sync::Mutex<ChatState>>>>,
}

#[derive(Debug, Clone)]
pub struct FloodControl {
    inner: Arc<Inner>,
}

/// The right to send to one chat; held for the whole send including retries so messages
/// to a chat keep their order.
#[derive(Debug)]
pub struct ChatPermit {
    inner: Arc<Inner>,
    group: bool,
    state: OwnedMutexGuard<ChatState>,
}

const MINUTE: Duration = Duration::from_secs(60);
/// Share of the configured global rate actually used.
const HEADROOM: f64 = 0.97;
/// Forget idle chats once the map is this big.
const PRUNE_ABOVE: usize = 4096;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl FloodControl {
    pub fn new(config: FloodConfig) -> Self {
        // 3 % headroom: grants are spaced here, but Telegram counts arrivals; a request
        // delayed a few ms on its way must not make a second look like rate + 1.
        let interval = Duration::from_secs_f64(1.0 / (config.global_rate.max(0.001) * HEADROOM));
        Self {
            inner: Arc::new(Inner {
                config,
                global: Global { interval, next: tokio::sync::Mutex::new(Instant::now()) },
                chats: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Waits for the chat's lock (not yet for its turn: see [`ChatPermit::wait_turn`]).
    pub async fn chat(&self, chat_id: i64, group: bool) -> ChatPermit {
        let cell = {
            let mut chats = lock(&self.inner.chats);
            if chats.len() > PRUNE_ABOVE {
                // Only entries nobody holds and whose limits have expired carry no state.
                let now = Instant::now();
                chats.retain(|_, c| {
                    Arc::strong_count(c) > 1
                        || c.try_lock().map_or(true, |s| {
                            s.last_sent.is_some_and(|t| now.duration_since(t) < MINUTE)
                                || s.blocked_until.is_some_and(|t| t > now)
                        })
                });
            }
            chats.entry(chat_id).or_default().clone()
        };
        ChatPermit { inner: self.inner.clone(), group, state: cell.lock_owned().await }
    }

    /// A global slot if one is free right now. For best-effort calls (chat actions) that
    /// must never delay a real message.
    pub fn try_global(&self) -> bool {
        self.inner.global.try_take()
    }
}

impl ChatPermit {
    /// Sleeps until this chat may receive a message and a global slot is ours; returns the
    /// time waited. Call right before each send attempt.
    pub async fn wait_turn(&mut self) -> Duration {
        let started = Instant::now();
        let cfg = self.inner.config;
        let mut ready = started;
        if let Some(last) = self.state.last_sent {
            ready = ready.max(last + cfg.chat_interval);
        }
        if let Some(until) = self.state.blocked_until {
            ready = ready.max(until);
        }
        if self.group {
            let now = Instant::now();
            while self.state.window.front().is_some_and(|t| now.duration_since(*t) >= MINUTE) {
                self.state.window.pop_front();
            }
            let max = usize::try_from(cfg.group_per_minute).unwrap_or(usize::MAX);
            if self.state.window.len() >= max {
                // The oldest of the last `max` sends must leave the window first.
                let idx = self.state.window.len() - max;
                if let Some(oldest) = self.state.window.get(idx) {
                    ready = ready.max(*oldest + MINUTE);
                }
            }
        }
        tokio::time::sleep_until(ready).await;
        self.inner.global.take().await;
        let now = Instant::now();
        self.state.last_sent = Some(now);
        if self.group {
            self.state.window.push_back(now);
        }
        now.duration_since(started)
    }

    /// Telegram said "retry after": nothing more to this chat until then.
    pub fn block_for(&mut self, d: Duration) {
        let until = Instant::now() + d;
        self.state.blocked_until = Some(self.state.blocked_until.map_or(until, |b| b.max(until)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fc(rate: f64) -> FloodControl {
        FloodControl::new(FloodConfig {
            global_rate: rate,
            chat_interval: Duration::from_secs(1),
            group_per_minute: 20,
        })
    }

    #[tokio::test(start_paused = true)]
    async fn global_rate_is_never_exceeded() {
        let f = fc(10.0);
        let start = Instant::now();
        let mut handles = Vec::new();
        for chat in 0..50 {
            let f = f.clone();
            handles.push(tokio::spawn(async move {
                let mut p = f.chat(chat, false).await;
                p.wait_turn().await;
                Instant::now()
            }));
        }
        let mut times = Vec::new();
        for h in handles {
            times.push(h.await.unwrap().duration_since(start));
        }
        times.sort();
        for w in times.windows(11) {
            // 11 consecutive sends span at least one second at 10/s.
            assert!(w[10] - w[0] >= Duration::from_millis(999), "{w:?}");
        }
        assert!(times[49] <= Duration::from_millis(5200), "{:?}", times[49]);
    }

    #[tokio::test(start_paused = true)]
    async fn one_message_per_second_per_chat() {
        let f = fc(1000.0);
        let mut p = f.chat(1, false).await;
        let a = Instant::now();
        p.wait_turn().await;
        p.wait_turn().await;
        p.wait_turn().await;
        assert!(Instant::now() - a >= Duration::from_secs(2));
        // Another chat is not held up by chat 1.
        let mut q = f.chat(2, false).await;
        assert!(q.wait_turn().await < Duration::from_millis(10));
    }

    #[tokio::test(start_paused = true)]
    async fn groups_get_twenty_per_minute() {
        let f = fc(1000.0);
        let mut p = f.chat(-100, true).await;
        let a = Instant::now();
        for _ in 0..21 {
            p.wait_turn().await;
        }
        assert!(Instant::now() - a >= Duration::from_secs(60));
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_blocks_the_chat() {
        let f = fc(1000.0);
        let mut p = f.chat(1, false).await;
        p.wait_turn().await;
        p.block_for(Duration::from_secs(5));
        let waited = p.wait_turn().await;
        assert!(waited >= Duration::from_secs(5), "{waited:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn best_effort_slots_do_not_queue() {
        let f = fc(1.0);
        assert!(f.try_global());
        assert!(!f.try_global());
        tokio::time::advance(Duration::from_millis(1050)).await;
        assert!(f.try_global());
    }
}
