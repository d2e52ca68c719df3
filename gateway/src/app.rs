//! Wiring: builds the pieces from the configuration, runs the chosen mode, and shuts
//! down in order on SIGTERM / SIGINT (stop taking updates, finish those in progress).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use crate::config::{Args, Config, Mode};
use crate::flood::{FloodConfig, FloodControl};
use crate::handler::Bot;
use crate::health::{Health, HealthConfig};
use crate::input::InputRules;
use crate::matcher::endpoints::{self, Target};
use crate::matcher::{Matcher, RetryPolicy};
use crate::metrics;
use crate::outbox::Outbox;
use crate::polling::{self, retry_until_ok, PollingConfig};
use crate::prefs::Prefs;
use crate::reply::LinkTemplate;
use crate::telegram::BotApi;
use crate::thumbs::{CelebrityCache, ThumbnailCache};
use crate::user_limit::UserLimiter;
use crate::webhook::{self, WebhookServerConfig};

/// Cancels `token` on the first SIGTERM or SIGINT.
fn on_signal(token: CancellationToken) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(signal = name, "shutdown requested");
        token.cancel();
    });
    Ok(())
}

pub async fn run(config: Config) -> anyhow::Result<()> {
    let args = &config.args;
    let shutdown = CancellationToken::new();
    on_signal(shutdown.clone())?;

    // The matcher replicas become known later; readiness reads them through this.
    let known_matchers: Arc<std::sync::OnceLock<Arc<endpoints::Backends>>> = Arc::default();
    let health = health(args, known_matchers.clone());
    let metrics_stop = CancellationToken::new();
    let metrics_task = {
        let addr = args.metrics_listen;
        let stop = metrics_stop.clone();
        let health = health.clone();
        tokio::spawn(async move {
            if let Err(e) = metrics::serve(addr, health, stop).await {
                tracing::error!(%addr, error = %e, "metrics server failed");
            }
        })
    };

    let api =
        BotApi::new(&args.telegram_api_url, config.token.clone(), Duration::from_secs(args.telegram_timeout_secs))?;
    tracing::info!(api = %args.telegram_api_url, token = %config.token, mode = ?args.mode, "starting");
    let Some(me) = retry_until_ok("getMe", &shutdown, || api.get_me()).await else {
        return Ok(());
    };
    // Not `Me::username()`: it panics when the answer has none.
    let username = me.user.username.clone();
    tracing::info!(bot_id = me.user.id.0, username = ?username, "connected to the Bot API");

    let backends = endpoints::start(
        &Target::parse(&args.matcher)?,
        Duration::from_secs(args.matcher_dns_refresh_secs.max(1)),
        metrics_stop.clone(),
    )
    .await?;
    tracing::info!(matcher = ?backends.urls(), "matcher replicas");
    let _ = known_matchers.set(backends.clone());
    let bot = Arc::new(bot(&config, api.clone(), backends, health.clone(), username)?);

    let result = serve(&config, api, bot, health, shutdown).await;
    metrics_stop.cancel();
    let _ = metrics_task.await;
    tracing::info!("stopped");
    result
}

fn health(args: &Args, known: Arc<std::sync::OnceLock<Arc<endpoints::Backends>>>) -> Arc<Health> {
    Arc::new(Health::new(
        HealthConfig {
            mode: args.mode,
            max_poll_age: Duration::from_secs(args.ready_max_poll_age_secs),
            max_loop_age: Duration::from_secs(args.live_max_loop_age_secs),
        },
        move || known.get().map_or(0, |b| b.urls().len()),
    ))
}

/// The per-update pipeline and everything it shares.
fn bot(
    config: &Config,
    api: BotApi,
    backends: Arc<endpoints::Backends>,
    health: Arc<Health>,
    username: Option<String>,
) -> anyhow::Result<Bot> {
    let args = &config.args;
    let matcher = Matcher::new(
        backends,
        RetryPolicy {
            timeout: config.matcher_timeout(),
            deadline: Duration::from_secs(args.matcher_retry_deadline_secs),
            backoff_base: Duration::from_millis(200),
            backoff_cap: Duration::from_secs(4),
            max_waiting: args.matcher_max_waiting,
        },
    )
    .with_health(health);
    let prefs = Prefs::load(args.prefs_file.clone(), args.cards).context("reading the users' preferences")?;
    tracing::info!(cards = args.cards, prefs_file = ?args.prefs_file, "replies");
    let flood = FloodControl::new(FloodConfig {
        global_rate: config.per_replica_rate(),
        chat_interval: Duration::from_millis(args.chat_interval_ms),
        group_per_minute: args.group_per_minute,
    });
    tracing::info!(per_replica_rate = config.per_replica_rate(), replicas = args.replicas, "flood control");
    Ok(Bot {
        outbox: Outbox::new(api, flood),
        matcher,
        rules: InputRules {
            min_side: args.photo_min_side,
            max_file_bytes: args.max_file_bytes,
            bot_username: username,
        },
        links: LinkTemplate::new(&args.link_template),
        thumbs: ThumbnailCache::default(),
        celebrities: CelebrityCache::default(),
        prefs,
        compose_slots: tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get())),
        users: UserLimiter::new(args.user_photos_per_minute),
        max_faces: args.max_faces,
    })
}

/// Runs the configured delivery mode until shutdown.
async fn serve(
    config: &Config,
    api: BotApi,
    bot: Arc<Bot>,
    health: Arc<Health>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let args = &config.args;
    match (args.mode, &config.webhook) {
        (Mode::Polling, _) => {
            let cfg = PollingConfig {
                poll_timeout: Duration::from_secs(args.poll_timeout_secs),
                max_in_flight: args.max_in_flight,
                state_file: args.state_file.clone(),
            };
            polling::run(api, bot, cfg, health, shutdown).await
        }
        (Mode::Webhook, Some(webhook)) => {
            let cfg = WebhookServerConfig {
                listen: args.webhook_listen,
                webhook: webhook.clone(),
                max_connections: args.webhook_max_connections,
                max_in_flight: args.max_in_flight,
            };
            webhook::run(api, bot, cfg, health, shutdown).await
        }
        (Mode::Webhook, None) => Err(anyhow::anyhow!("webhook mode without webhook settings")),
    }
}
