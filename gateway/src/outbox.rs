//! Everything the gateway sends goes through here: flood control first, then the Bot API,
//! then the right reaction to failure: a 429 waits exactly `retry_after` (never less, and
//! the message is not dropped), 5xx and network errors back off and retry a few times; a
//! send that got no answer within its deadline is not repeated (it may have arrived).
//!
//! teloxide-core itself sleeps 10 s after any 5xx answer before returning the error, while
//! this chat's permit is held (the message's fate is unknown until then, and a chat's
//! messages keep their order). That pause counts towards the backoff here (the backoff
//! runs from the failed attempt's start), so the two do not add up; other chats and the
//! global budget are not held by it (`tests/hazards.rs` measures both).

use std::time::Duration;

use tokio::time::Instant;

use crate::flood::FloodControl;
use crate::metrics::METRICS;
use crate::telegram::{BotApi, ChatAction, OutgoingMessage, Sent, TelegramError};

/// Most 429s in a row for one message; Telegram never asks forever, a broken proxy might.
const MAX_FLOOD_RETRIES: u32 = 20;

#[derive(Debug, Clone)]
pub struct Outbox {
    api: BotApi,
    flood: FloodControl,
    transient_retries: u32,
    backoff_base: Duration,
}

/// Where the time of one send went.
#[derive(Debug, Default, Clone, Copy)]
pub struct SendTimings {
    /// Waiting for flood-control budget (including retry_after pauses).
    pub waited: Duration,
    /// Bot API round trips.
    pub network: Duration,
}

impl SendTimings {
    pub fn total(&self) -> Duration {
        self.waited + self.network
    }
}

impl Outbox {
    pub fn new(api: BotApi, flood: FloodControl) -> Self {
        Self { api, flood, transient_retries: 5, backoff_base: Duration::from_millis(500) }
    }

    /// Sends one message, retrying as Telegram asks. `group` selects the group limits.
    pub async fn send(
        &self,
        msg: &OutgoingMessage,
        group: bool,
        timings: &mut SendTimings,
    ) -> Result<Sent, TelegramError> {
        // Waiting behind earlier messages to the same chat is flood-control time too.
        let queued = Instant::now();
        let mut permit = self.flood.chat(msg.chat_id, group).await;
        timings.waited += queued.elapsed();
        let mut flood_retries = 0u32;
        let mut transient = 0u32;
        loop {
            let waited = permit.wait_turn().await;
            timings.waited += waited;
            METRICS.flood_wait(waited);
            let started = Instant::now();
            let result = self.api.send(msg).await;
            timings.network += started.elapsed();
            let err = match result {
                Ok(sent) => return Ok(sent),
                Err(e) => e,
            };
            if let Some(retry_after) = err.retry_after() {
                if flood_retries >= MAX_FLOOD_RETRIES {
                    return Err(err);
                }
                flood_retries += 1;
                METRICS.flood_retry();
                tracing::warn!(
                    chat_id = msg.chat_id,
                    method = msg.method(),
                    retry_after_s = retry_after.as_secs_f64(),
                    "Telegram flood control (429): retrying after retry_after"
                );
                permit.block_for(retry_after);
                continue;
            }
            if err.may_have_arrived() {
                // A second copy is worse than a missing one: the user can send the photo
                // again, but cannot take back a repeated answer.
                tracing::warn!(chat_id = msg.chat_id, method = msg.method(), error = %err, "no answer in time; not sent again (it may have arrived)");
                return Err(err);
            }
            if err.is_transient() && transient < self.transient_retries {
                // From the attempt's start: a pause already taken inside the client (its
                // 10 s after a 5xx) is not waited again.
                let backoff = (self.backoff_base * 2u32.saturating_pow(transient)).saturating_sub(started.elapsed());
                transient += 1;
                tracing::warn!(
                    chat_id = msg.chat_id,
                    method = msg.method(),
                    error = %err,
                    backoff_ms = backoff.as_millis() as u64,
                    "send failed; retrying"
                );
                permit.block_for(backoff);
                continue;
            }
            return Err(err);
        }
    }

    /// "upload_photo" and the like: cosmetic, so sent only if the global budget has a free
    /// slot right now, and failures are ignored.
    /// Sends a chat action if a global slot is free right now; `false` if it was skipped
    /// for want of one (the caller may try again shortly).
    pub async fn chat_action(&self, chat_id: i64, action: ChatAction) -> bool {
        if !self.flood.try_global() {
            tracing::debug!(chat_id, "no free slot for a chat action; skipped");
            return false;
        }
        if let Err(e) = self.api.send_chat_action(chat_id, action).await {
            tracing::debug!(chat_id, error = %e, "chat action failed (ignored)");
        }
        true
    }

    pub fn api(&self) -> &BotApi {
        &self.api
    }
}
