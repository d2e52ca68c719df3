//! Webhook mode: Telegram POSTs each update to us. A request without the right
//! `X-Telegram-Bot-Api-Secret-Token` gets 401 and nothing else happens.
//!
//! The update is handled before the 200 goes back: if this replica dies mid-way, Telegram
//! re-sends the update (to any replica). A re-sent update that is still being handled, or
//! was handled recently, here is acknowledged without handling it again.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::WebhookConfig;
use crate::handler::{self, Bot};
use crate::health::Health;
use crate::polling::retry_until_ok;
use crate::secret::WebhookSecret;
use crate::telegram::{update_id, BotApi, Update, UpdateKind};

const SECRET_HEADER: &str = "x-telegram-bot-api-secret-token";
/// How long a request waits for a processing slot before Telegram is told to come back
/// later (it retries non-2xx answers).
const SLOT_WAIT: Duration = Duration::from_secs(20);
/// Update ids remembered for de-duplication.
const RECENT: usize = 10_000;

#[derive(Debug, Clone)]
pub struct WebhookServerConfig {
    pub listen: SocketAddr,
    pub webhook: WebhookConfig,
    pub max_connections: u32,
    pub max_in_flight: usize,
}

/// Recently seen update ids: running (false) or done (true).
#[derive(Debug, Default)]
struct Recent {
    state: HashMap<i64, bool>,
    order: VecDeque<i64>,
}

impl Recent {
    fn begin(&mut self, id: i64) -> bool {
        if self.state.contains_key(&id) {
            return false;
        }
        self.state.insert(id, false);
        self.order.push_back(id);
        while self.order.len() > RECENT {
            if let Some(old) = self.order.pop_front() {
                // Never forget a running one: it would be handled twice.
                if self.state.get(&old) == Some(&false) {
                    self.order.push_back(old);
                    break;
                }
                self.state.remove(&old);
            }
        }
        true
    }

    fn finish(&mut self, id: i64) {
        self.state.insert(id, true);
    }

    fn abort(&mut self, id: i64) {
        self.state.remove(&id);
    }
}

struct AppState {
    bot: Arc<Bot>,
    secret: WebhookSecret,
    slots: Arc<Semaphore>,
    recent: Mutex<Recent>,
    tasks: TaskTracker,
}

impl AppState {
    fn recent(&self) -> std::sync::MutexGuard<'_, Recent> {
        self.recent.lock().unwrap_or_else(|p| p.into_inner())
    }
}

async fn receive(State(s): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let authorised = headers.get(SECRET_HEADER).is_some_and(|v| s.secret.matches(v.as_bytes()));
    if !authorised {
        tracing::warn!("webhook request without the right secret token; refused");
        return StatusCode::UNAUTHORIZED;
    }
    let update: Update = match serde_json::from_slice(&body) {
        Ok(u) => u,
        Err(e) => {
            tracing::warn!(error = %e, "webhook body is not an update");
            return StatusCode::BAD_REQUEST;
        }
    };
    let id = update_id(&update);
    if let UpdateKind::Error(_) = update.kind {
        // Acknowledged (Telegram would re-send it forever otherwise), and logged.
        let fields: Vec<String> = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.as_object().map(|o| o.keys().cloned().collect()))
            .unwrap_or_default();
        tracing::warn!(update_id = id, ?fields, "update the Bot API types reject; acknowledged without handling");
        return StatusCode::OK;
    }
    if !s.recent().begin(id) {
        tracing::info!(update_id = id, "update already handled or in progress; acknowledged");
        return StatusCode::OK;
    }
    let permit = match tokio::time::timeout(SLOT_WAIT, s.slots.clone().acquire_owned()).await {
        Ok(Ok(p)) => p,
        _ => {
            s.recent().abort(id);
            tracing::warn!(update_id = id, "too busy; asking Telegram to retry later");
            return StatusCode::SERVICE_UNAVAILABLE;
        }
    };
    // Handled in a tracked task: it completes even if Telegram drops the connection,
    // and shutdown waits for it.
    let state = s.clone();
    let handled = handler::spawn_tracked(&s.bot, &s.tasks, update, permit, move |id| state.recent().finish(id));
    let _ = handled.await;
    StatusCode::OK
}

pub async fn run(
    api: BotApi,
    bot: Arc<Bot>,
    cfg: WebhookServerConfig,
    health: Arc<Health>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(cfg.listen).await?;
    tracing::info!(addr = %listener.local_addr()?, "webhook server listening");
    health.set_listener_up(true);
    let state = Arc::new(AppState {
        bot,
        secret: cfg.webhook.secret.clone(),
        slots: Arc::new(Semaphore::new(cfg.max_in_flight)),
        recent: Mutex::new(Recent::default()),
        tasks: TaskTracker::new(),
    });
    // Registered after binding, so Telegram's first delivery finds the port open; in the
    // background, so a slow Bot API does not keep the server down (other replicas may
    // have registered the same URL already).
    let register = {
        let shutdown = shutdown.clone();
        let url = cfg.webhook.url.clone();
        let secret = cfg.webhook.secret.clone();
        let health = health.clone();
        tokio::spawn(async move {
            // 1-100, checked with the configuration.
            let max = u8::try_from(cfg.max_connections).unwrap_or(100);
            let done = retry_until_ok("setWebhook", &shutdown, || api.set_webhook(&url, secret.expose(), max)).await;
            if done.is_some() {
                health.set_webhook_set(true);
                tracing::info!(max_connections = cfg.max_connections, "webhook registered");
            }
        })
    };
    let app = Router::new().route("/", post(receive)).route("/{*path}", post(receive)).with_state(state.clone());
    let served = axum::serve(listener, app).with_graceful_shutdown(shutdown.clone().cancelled_owned()).await;
    health.set_listener_up(false);
    served?;
    tracing::info!("webhook server stopped accepting; finishing updates in progress");
    register.abort();
    state.tasks.close();
    state.tasks.wait().await;
    tracing::info!("webhook mode stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_ids() {
        let mut r = Recent::default();
        assert!(r.begin(1));
        assert!(!r.begin(1));
        r.finish(1);
        assert!(!r.begin(1));
        assert!(r.begin(2));
        r.abort(2);
        assert!(r.begin(2));
    }
}
