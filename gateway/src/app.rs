//! Wiring: builds the pieces from the configuration, runs the chosen mode, and shuts
//! down in order on SIGTERM / SIGINT (stop taking updates, finish those in progress).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Mode};
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
    let health = {
        let known = known_matchers.clone();
        Arc::new(Health::new(
            HealthConfig {
                mode: args.mode,
                max_poll_age: Duration::from_secs(args.ready_max_poll_age_secs),
                max_loop_age: Duration::from_secs(args.live_max_loop_age_secs),
            },
            move || known.get().map_or(0, |b| b.urls().len()),
        ))
    };
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
    tracing::info!(bot_id = me.id, username = ?me.username, "connected to the Bot API");

    let target = Target::parse(&args.matcher)?;
    let backends =
        endpoints::start(&target, Duration::from_secs(args.matcher_dns_refresh_secs.max(1)), metrics_stop.clone())
            .await?;
    tracing::info!(matcher = ?backends.urls(), "matcher replicas");
    let _ = known_matchers.set(backends.clone());
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
    .with_health(health.clone());

    let prefs = Prefs::load(args.prefs_file.clone(), args.cards).context("reading the users' preferences")?;
    tracing::info!(cards = args.cards, prefs_file = ?args.prefs_file, "replies");
    let flood = FloodControl::new(FloodConfig {
        global_rate: config.per_replica_rate(),
        chat_interval: Duration::from_millis(args.chat_interval_ms),
        group_per_minute: args.group_per_minute,
    });
    tracing::info!(per_replica_rate = config.per_replica_rate(), replicas = args.replicas, "flood control");
    let bot = Arc::new(Bot {
        outbox: Outbox::new(api.clone(), flood),
        matcher,
        rules: InputRules {
            min_side: args.photo_min_side,
            max_file_bytes: args.max_file_bytes,
            bot_username: me.username.clone(),
        },
        links: LinkTemplate::new(&args.link_template),
        thumbs: ThumbnailCache::default(),
        celebrities: CelebrityCache::default(),
        prefs,
        compose_slots: tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get())),
        users: UserLimiter::new(args.user_photos_per_minute),
        max_faces: args.max_faces,
    });

    let result = match (args.mode, &config.webhook) {
        (Mode::Polling, _) => {
            polling::run(
                api,
                bot,
                PollingConfig {
                    poll_timeout: Duration::from_secs(args.poll_timeout_secs),
                    max_in_flight: args.max_in_flight,
                    state_file: args.state_file.clone(),
                },
                health.clone(),
                shutdown.clone(),
            )
            .await
        }
        (Mode::Webhook, Some(webhook)) => {
            webhook::run(
                api,
                bot,
                WebhookServerConfig {
                    listen: args.webhook_listen,
                    webhook: webhook.clone(),
                    max_connections: args.webhook_max_connections,
                    max_in_flight: args.max_in_flight,
                },
                health.clone(),
                shutdown.clone(),
            )
            .await
        }
        (Mode::Webhook, None) => Err(anyhow::anyhow!("webhook mode without webhook settings")),
    };
    metrics_stop.cancel();
    let _ = metrics_task.await;
    tracing::info!("stopped");
    result
}
