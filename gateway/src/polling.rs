//! Long polling: getUpdates in a loop, each update handled in its own task (at most
//! `max_in_flight` at once: the loop stops fetching while all slots are busy), the offset
//! moved only past updates that are done or written to the state file.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::handler::{self, Bot};
use crate::health::Health;
use crate::metrics::METRICS;
use crate::state::{self, StateStore};
use crate::telegram::{update_id, Batch, BotApi, TelegramError, Update, UpdateKind};
use crate::tracker::{Persisted, Tracker};

#[derive(Debug, Clone)]
pub struct PollingConfig {
    pub poll_timeout: Duration,
    pub max_in_flight: usize,
    pub state_file: Option<PathBuf>,
}

/// Pause before polling again when a batch held only updates already being handled
/// (without a state file Telegram re-sends them until they are done).
const REDELIVERY_PAUSE: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

struct Dispatcher {
    bot: Arc<Bot>,
    tracker: Arc<Tracker>,
    slots: Arc<Semaphore>,
    tasks: TaskTracker,
}

impl Dispatcher {
    /// Waits for a free slot, then handles the update in its own task. None if shutdown
    /// came first (the update stays pending: Telegram or the state file keeps it).
    async fn dispatch(&self, update: Update, shutdown: &CancellationToken) -> Option<()> {
        let permit = tokio::select! {
            biased;
            () = shutdown.cancelled() => return None,
            p = self.slots.clone().acquire_owned() => p.ok()?,
        };
        let tracker = self.tracker.clone();
        handler::spawn_tracked(&self.bot, &self.tasks, update, permit, move |id| tracker.complete(id));
        Some(())
    }
}

fn load_state(store: &StateStore) -> Persisted {
    match state::load(store.path()) {
        Ok(p) => p,
        Err(e) => {
            // Keep the bad file for inspection and carry on from Telegram's own offset:
            // better a possible repeat than a bot that never starts.
            let mut aside = store.path().as_os_str().to_owned();
            aside.push(".corrupt");
            let moved = std::fs::rename(store.path(), &aside).is_ok();
            tracing::error!(error = %e, moved_aside = moved, "state file unreadable; starting without it");
            Persisted::default()
        }
    }
}

/// Follows completions and writes the state file until `stop` (after every task finished).
fn spawn_state_writer(
    store: Option<Arc<StateStore>>,
    tracker: Arc<Tracker>,
    stop: CancellationToken,
) -> Option<tokio::task::JoinHandle<()>> {
    let store = store?;
    Some(tokio::spawn(async move {
        let mut changes = tracker.subscribe();
        loop {
            tokio::select! {
                r = changes.changed() => if r.is_err() { break },
                () = stop.cancelled() => break,
            }
            if let Err(e) = store.flush(&tracker).await {
                tracing::error!(error = %e, "cannot write the state file");
            }
        }
    }))
}

/// The pause after a failed getUpdates: doubling from 1 s to 30 s, counted from the failed
/// call's start, so the client's own pause after a 5xx (10 s in teloxide-core) is not
/// waited again; it only grows when it had to be waited. A 429's `retry_after` wins.
struct Backoff(Duration);

impl Backoff {
    fn after(&mut self, e: &TelegramError, asked: Instant) -> Duration {
        let wait = e.retry_after().unwrap_or_else(|| self.0.saturating_sub(asked.elapsed()));
        if e.is_conflict() {
            // Another getUpdates consumer (a second replica, a stale pod still terminating)
            // or a webhook holds this bot: updates are being split between processes or not
            // reaching us at all.
            METRICS.poll_conflict();
            tracing::error!(
                error = %e,
                wait_ms = wait.as_millis() as u64,
                "getUpdates conflict: another poller or a webhook is using this bot token"
            );
        } else {
            tracing::warn!(error = %e, wait_ms = wait.as_millis() as u64, "getUpdates failed");
        }
        if !wait.is_zero() {
            self.0 = (self.0 * 2).min(MAX_BACKOFF);
        }
        wait
    }
}

/// How often the loop says it is alive while it waits on something bounded.
const BEAT_EVERY: Duration = Duration::from_secs(1);

/// Awaits `work` (None if shutdown comes first), marking the loop alive meanwhile. Only for
/// waits with their own bound: a getUpdates call (its deadline is the long poll plus 15 s,
/// which covers teloxide-core's 10 s sleep after a 5xx) or a backoff pause. Waiting for a
/// free slot is not one of them: a loop held there by hung updates is stuck, and `/livez`
/// must say so.
async fn alive_while<T>(health: &Health, shutdown: &CancellationToken, work: impl Future<Output = T>) -> Option<T> {
    tokio::pin!(work);
    let mut beat = tokio::time::interval(BEAT_EVERY);
    loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => return None,
            r = &mut work => return Some(r),
            _ = beat.tick() => health.loop_beat(),
        }
    }
}

/// The updates of a batch to handle now. Those that cannot be handled (logged by the
/// client) are done at once: the offset moves past them and Telegram does not send them
/// again. Re-deliveries of known updates are left out.
fn admit(tracker: &Tracker, batch: Batch) -> Vec<Update> {
    for id in batch.unreadable {
        tracker.skip(id);
    }
    batch
        .updates
        .into_iter()
        .filter(|u| match u.kind {
            UpdateKind::Error(_) => {
                tracker.skip(update_id(u));
                false
            }
            _ => tracker.admit(u),
        })
        .collect()
}

pub async fn run(
    api: BotApi,
    bot: Arc<Bot>,
    cfg: PollingConfig,
    health: Arc<Health>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let store = cfg.state_file.map(|p| Arc::new(StateStore::new(p)));
    let persisted = store.as_deref().map(load_state).unwrap_or_default();
    let (tracker, restored) = Tracker::restore(persisted);
    let tracker = Arc::new(tracker);
    let d = Dispatcher {
        bot,
        tracker: tracker.clone(),
        slots: Arc::new(Semaphore::new(cfg.max_in_flight)),
        tasks: TaskTracker::new(),
    };
    let writer_stop = CancellationToken::new();
    let writer = spawn_state_writer(store.clone(), tracker.clone(), writer_stop.clone());

    if !restored.is_empty() {
        tracing::info!(count = restored.len(), "handling updates queued before the restart");
    }
    for update in restored {
        if d.dispatch(update, &shutdown).await.is_none() {
            break;
        }
    }

    // getUpdates is refused while a webhook is set (e.g. after trying webhook mode).
    retry_until_ok("deleteWebhook", &shutdown, || api.delete_webhook()).await;
    tracing::info!(offset = ?tracker.next_offset(store.is_some()), "polling for updates");

    let mut backoff = Backoff(Duration::from_secs(1));
    // False after a failed state write: then the offset must not pass unfinished updates.
    let mut durable = store.is_some();
    'poll: while !shutdown.is_cancelled() {
        health.loop_beat();
        let offset = tracker.next_offset(durable);
        let asked = Instant::now();
        let call = api.get_updates(offset, cfg.poll_timeout, 100);
        let Some(result) = alive_while(&health, &shutdown, call).await else { break };
        let batch = match result {
            Ok(b) => {
                backoff = Backoff(Duration::from_secs(1));
                health.polled();
                b
            }
            Err(e) => {
                let wait = backoff.after(&e, asked);
                match alive_while(&health, &shutdown, tokio::time::sleep(wait)).await {
                    Some(()) => continue,
                    None => break,
                }
            }
        };
        let received = batch.updates.len() + batch.unreadable.len();
        let fresh = admit(&tracker, batch);
        if fresh.is_empty() {
            if received > 0 {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(REDELIVERY_PAUSE) => {}
                }
            }
            continue;
        }
        tracing::debug!(received, fresh = fresh.len(), "updates received");
        if let Some(store) = &store {
            // Written before the next getUpdates confirms them to Telegram.
            durable = match store.flush(&tracker).await {
                Ok(()) => true,
                Err(e) => {
                    tracing::error!(error = %e, "cannot write the state file; keeping updates unconfirmed");
                    false
                }
            };
        }
        for update in fresh {
            if d.dispatch(update, &shutdown).await.is_none() {
                break 'poll;
            }
        }
    }

    let in_flight = cfg.max_in_flight - d.slots.available_permits();
    tracing::info!(in_flight, "stopping: finishing updates in progress");
    d.tasks.close();
    d.tasks.wait().await;
    writer_stop.cancel();
    if let Some(w) = writer {
        let _ = w.await;
    }
    finish(&api, store.as_deref(), &tracker, durable).await;
    Ok(())
}

/// After the last update finished: the final state written, and what is done confirmed to
/// Telegram (the only record without a state file). The update the confirming call
/// returns, if any, is left for the next run.
async fn finish(api: &BotApi, store: Option<&StateStore>, tracker: &Tracker, durable: bool) {
    if let Some(store) = store {
        if let Err(e) = store.flush(tracker).await {
            tracing::error!(error = %e, "cannot write the final state");
        }
    }
    if let Some(offset) = tracker.next_offset(durable) {
        let confirm = api.get_updates(Some(offset), Duration::ZERO, 1);
        if let Ok(Err(e)) = tokio::time::timeout(Duration::from_secs(5), confirm).await {
            tracing::warn!(error = %e, "final offset confirmation failed");
        }
    }
    tracing::info!(pending = tracker.pending(), offset = ?tracker.next_offset(durable), "polling stopped");
}

/// Retries a start-up call with backoff until it works or shutdown is requested.
pub async fn retry_until_ok<T, F, Fut>(what: &str, shutdown: &CancellationToken, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, TelegramError>>,
{
    let mut backoff = Duration::from_secs(1);
    loop {
        match f().await {
            Ok(v) => return Some(v),
            Err(e) => {
                let wait = e.retry_after().unwrap_or(backoff);
                tracing::warn!(call = what, error = %e, wait_ms = wait.as_millis() as u64, "Bot API call failed; retrying");
                backoff = (backoff * 2).min(MAX_BACKOFF);
                tokio::select! {
                    () = shutdown.cancelled() => return None,
                    () = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::health::{HealthConfig, Mode};

    #[tokio::test(start_paused = true)]
    async fn the_loop_is_live_while_it_waits_on_a_bounded_call_and_not_after() {
        let cfg = HealthConfig {
            mode: Mode::Polling,
            max_poll_age: Duration::from_secs(4),
            max_loop_age: Duration::from_secs(4),
        };
        let health = Arc::new(Health::new(cfg, || 1));
        let shutdown = CancellationToken::new();
        health.loop_beat();
        // A getUpdates that takes 10 s (teloxide-core's sleep after a 5xx): live throughout.
        let h = health.clone();
        let watch = tokio::spawn(async move {
            let mut always = true;
            for _ in 0..20 {
                tokio::time::sleep(Duration::from_millis(500)).await;
                always &= h.liveness().ok;
            }
            always
        });
        let slow = tokio::time::sleep(Duration::from_secs(10));
        assert_eq!(alive_while(&health, &shutdown, slow).await, Some(()));
        assert!(watch.await.unwrap(), "not live while waiting on a bounded call");
        // Nothing beats afterwards: a loop held elsewhere (a slot) goes stale.
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(!health.liveness().ok);
        // Shutdown ends the wait.
        shutdown.cancel();
        assert_eq!(alive_while(&health, &shutdown, std::future::pending::<()>()).await, None);
    }
}
