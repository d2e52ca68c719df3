//! Command-line flags and environment variables (the Kubernetes manifests use the env names).
//!
//! Secrets are read as plain strings and validated afterwards in [`Config::validate`]:
//! clap's own "invalid value" errors quote the value, which would print the token.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

pub use lookalike_telemetry::LogFormat;

use crate::secret::{BotToken, RawSecret, SecretError, WebhookSecret};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// getUpdates long polling (one replica only: Telegram allows one poller per bot).
    Polling,
    /// Telegram POSTs updates to --webhook-url; any number of replicas.
    Webhook,
}

/// lookalike's Telegram gateway: receives selfies, asks the matcher, answers.
#[derive(Parser, Debug, Clone)]
#[command(name = "tg-gateway", version, about)]
pub struct Args {
    /// Bot token from @BotFather. Prefer the environment variable: flags show up in `ps`.
    #[arg(long = "telegram-bot-token", env = "TELEGRAM_BOT_TOKEN", hide_env_values = true)]
    pub telegram_bot_token: RawSecret,

    /// Bot API base URL (a local Bot API server or a test fake).
    #[arg(long = "telegram-api-url", env = "TELEGRAM_API_URL", default_value = "https://api.telegram.org")]
    pub telegram_api_url: String,

    /// Matcher address(es): comma-separated http:// URLs, or `dns:///host:port` to resolve all
    /// A/AAAA records periodically (Kubernetes headless Service).
    #[arg(long, env = "LOOKALIKE_MATCHER_URL", default_value = "http://127.0.0.1:50051")]
    pub matcher: String,

    /// How updates arrive.
    #[arg(long, env = "GATEWAY_MODE", value_enum, default_value_t = Mode::Polling)]
    pub mode: Mode,

    /// Webhook mode: address the HTTP server listens on.
    #[arg(long, env = "GATEWAY_WEBHOOK_LISTEN", default_value = "0.0.0.0:8080")]
    pub webhook_listen: SocketAddr,

    /// Webhook mode: public HTTPS URL registered with setWebhook.
    #[arg(long, env = "GATEWAY_WEBHOOK_URL")]
    pub webhook_url: Option<String>,

    /// Webhook mode: secret Telegram sends in X-Telegram-Bot-Api-Secret-Token (1-256 of
    /// A-Z a-z 0-9 _ -).
    #[arg(long, env = "GATEWAY_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<RawSecret>,

    /// Webhook mode: max simultaneous connections Telegram opens to us (1-100).
    #[arg(long, env = "GATEWAY_WEBHOOK_MAX_CONNECTIONS", default_value_t = 40)]
    pub webhook_max_connections: u32,

    /// Messages per second for the whole bot (Telegram allows about 30).
    #[arg(long, env = "GATEWAY_GLOBAL_RATE", default_value_t = 30.0)]
    pub global_rate: f64,

    /// Gateway replicas sharing the bot; each one sends at most global-rate / replicas.
    #[arg(long, env = "GATEWAY_REPLICAS", default_value_t = 1)]
    pub replicas: u32,

    /// Minimum gap between two messages to the same chat, in milliseconds.
    #[arg(long, env = "GATEWAY_CHAT_INTERVAL_MS", default_value_t = 1000)]
    pub chat_interval_ms: u64,

    /// Messages per minute to one group chat.
    #[arg(long, env = "GATEWAY_GROUP_PER_MINUTE", default_value_t = 20)]
    pub group_per_minute: u32,

    /// Photos one user may send per minute; the excess gets a polite refusal without a
    /// matcher call.
    #[arg(long, env = "GATEWAY_USER_PHOTOS_PER_MINUTE", default_value_t = 10)]
    pub user_photos_per_minute: u32,

    /// Updates processed at the same time; beyond that the gateway stops taking more
    /// (polling) or makes Telegram wait (webhook).
    #[arg(long, env = "GATEWAY_MAX_IN_FLIGHT", default_value_t = 64)]
    pub max_in_flight: usize,

    /// Link under the answer. Placeholders: {name} (spaces as '_'), {alias}, {id};
    /// URL-encoded.
    #[arg(long, env = "GATEWAY_LINK_TEMPLATE", default_value = "https://en.wikipedia.org/wiki/{name}")]
    pub link_template: String,

    /// Address of the Prometheus `/metrics` and `/healthz` server.
    #[arg(long, env = "GATEWAY_METRICS_LISTEN", default_value = "0.0.0.0:9091")]
    pub metrics_listen: SocketAddr,

    /// Polling mode: file keeping the last handled update_id, so a restart neither loses
    /// nor repeats updates. Without it, Telegram's own offset is the only record.
    #[arg(long, env = "GATEWAY_STATE_FILE")]
    pub state_file: Option<PathBuf>,

    /// Answer a match with a card (the sender's face beside the celebrity's, with the name
    /// and percentage drawn on it) instead of the celebrity's photo alone. Each user can
    /// still turn cards off for themselves with `/cards off`; `false` turns them off for all.
    #[arg(long, env = "GATEWAY_CARDS", default_value_t = true, action = clap::ArgAction::Set)]
    pub cards: bool,

    /// File keeping users' reply preferences (who sent `/cards off`: user ids only), so a
    /// restart keeps them. Without it they last until the process ends.
    #[arg(long, env = "GATEWAY_PREFS_FILE")]
    pub prefs_file: Option<PathBuf>,

    /// Readiness (`/readyz`, polling) fails when the last successful getUpdates is older
    /// than this (a healthy loop succeeds at least every poll timeout + 15 s).
    #[arg(long, env = "GATEWAY_READY_MAX_POLL_AGE_SECS", default_value_t = 90)]
    pub ready_max_poll_age_secs: u64,

    /// Liveness (`/livez`, polling) fails when the poll loop has not gone round for this long
    /// (it waits for a free slot when every in-flight update is busy; an update takes at most
    /// ~75 s with the matcher's retries, so this means they hang).
    #[arg(long, env = "GATEWAY_LIVE_MAX_LOOP_AGE_SECS", default_value_t = 300)]
    pub live_max_loop_age_secs: u64,

    /// Deadline of one matcher call (each retry gets a new one).
    #[arg(long, env = "GATEWAY_MATCHER_TIMEOUT_MS", default_value_t = 10_000)]
    pub matcher_timeout_ms: u64,

    /// How long a matcher call is retried on UNAVAILABLE / RESOURCE_EXHAUSTED (exponential
    /// backoff with jitter, each attempt on the next replica) before the user gets the "busy"
    /// answer; the "uploading photo" status is kept up meanwhile. Covers a rollout, a gallery
    /// reload or a node drain.
    #[arg(long, env = "GATEWAY_MATCHER_RETRY_DEADLINE_SECS", default_value_t = 45)]
    pub matcher_retry_deadline_secs: u64,

    /// Photos allowed to wait for an unavailable matcher at once (the circuit breaker):
    /// past it, new photos get the "busy" answer at once instead of waiting.
    #[arg(long, env = "GATEWAY_MATCHER_MAX_WAITING", default_value_t = 32)]
    pub matcher_max_waiting: usize,

    /// How often a `dns:///` matcher address is resolved again.
    #[arg(long, env = "GATEWAY_MATCHER_DNS_REFRESH_SECS", default_value_t = 10)]
    pub matcher_dns_refresh_secs: u64,

    /// Smallest photo side (the longer one, as Telegram sizes its variants) that is enough
    /// for reliable face detection; the smallest variant at least this big is downloaded.
    #[arg(long, env = "GATEWAY_PHOTO_MIN_SIDE", default_value_t = 640)]
    pub photo_min_side: u32,

    /// Largest file the gateway downloads (the Bot API's own limit is 20 MB).
    #[arg(long, env = "GATEWAY_MAX_FILE_BYTES", default_value_t = 20 * 1024 * 1024)]
    pub max_file_bytes: u64,

    /// Faces listed for a group photo.
    #[arg(long, env = "GATEWAY_MAX_FACES", default_value_t = 5)]
    pub max_faces: u32,

    /// Long-poll timeout of getUpdates, in seconds.
    #[arg(long, env = "GATEWAY_POLL_TIMEOUT_SECS", default_value_t = 30)]
    pub poll_timeout_secs: u64,

    /// Timeout of one Bot API request other than getUpdates, in seconds.
    #[arg(long, env = "GATEWAY_TELEGRAM_TIMEOUT_SECS", default_value_t = 30)]
    pub telegram_timeout_secs: u64,

    /// Log format on stderr.
    #[arg(long, env = "GATEWAY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub args: Args,
    pub token: BotToken,
    pub webhook: Option<WebhookConfig>,
}

#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub url: String,
    pub secret: WebhookSecret,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error("webhook mode needs --webhook-url (GATEWAY_WEBHOOK_URL)")]
    MissingWebhookUrl,
    #[error("webhook mode needs --webhook-secret (GATEWAY_WEBHOOK_SECRET)")]
    MissingWebhookSecret,
    #[error("{0}")]
    Invalid(String),
}

impl Args {
    pub fn validate(self) -> Result<Config, ConfigError> {
        let token = BotToken::new(&self.telegram_bot_token.0)?;
        let invalid = |m: &str| Err(ConfigError::Invalid(m.to_owned()));
        if !(self.global_rate.is_finite() && self.global_rate > 0.0) {
            return invalid("--global-rate must be a positive number");
        }
        if self.replicas == 0 {
            return invalid("--replicas must be at least 1");
        }
        if self.max_in_flight == 0 {
            return invalid("--max-in-flight must be at least 1");
        }
        if self.group_per_minute == 0 || self.user_photos_per_minute == 0 {
            return invalid("per-minute limits must be at least 1");
        }
        if !(1..=100).contains(&self.webhook_max_connections) {
            return invalid("--webhook-max-connections must be 1-100");
        }
        if self.telegram_timeout_secs <= 10 {
            // teloxide-core pauses 10 s inside a call that got a 5xx: a shorter deadline
            // would turn every 5xx into an ambiguous timeout.
            return invalid("--telegram-timeout-secs must be more than 10");
        }
        if !(self.telegram_api_url.starts_with("http://") || self.telegram_api_url.starts_with("https://")) {
            return invalid("TELEGRAM_API_URL must start with http:// or https://");
        }
        let webhook = match self.mode {
            Mode::Polling => None,
            Mode::Webhook => {
                let url = self.webhook_url.clone().ok_or(ConfigError::MissingWebhookUrl)?;
                let secret = self.webhook_secret.as_ref().ok_or(ConfigError::MissingWebhookSecret)?;
                Some(WebhookConfig { url, secret: WebhookSecret::new(&secret.0)? })
            }
        };
        Ok(Config { args: self, token, webhook })
    }
}

impl Config {
    /// This replica's share of the global message budget.
    pub fn per_replica_rate(&self) -> f64 {
        self.args.global_rate / f64::from(self.args.replicas)
    }

    pub fn matcher_timeout(&self) -> Duration {
        Duration::from_millis(self.args.matcher_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &[&str]) -> Args {
        let mut argv = vec!["tg-gateway", "--telegram-bot-token", "1:zzsecretzz"];
        argv.extend_from_slice(extra);
        Args::try_parse_from(argv).unwrap()
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = parse(&[]).validate().unwrap();
        assert_eq!(c.args.mode, Mode::Polling);
        assert_eq!(c.args.telegram_api_url, "https://api.telegram.org");
        assert_eq!(c.args.matcher, "http://127.0.0.1:50051");
        assert_eq!(c.args.metrics_listen.to_string(), "0.0.0.0:9091");
        assert_eq!(c.args.webhook_listen.to_string(), "0.0.0.0:8080");
        assert!((c.per_replica_rate() - 30.0).abs() < 1e-9);
    }

    #[test]
    fn rate_is_divided_by_replicas() {
        let c = parse(&["--replicas", "3"]).validate().unwrap();
        assert!((c.per_replica_rate() - 10.0).abs() < 1e-9);
    }

    #[test]
    fn webhook_mode_needs_url_and_secret() {
        assert!(matches!(parse(&["--mode", "webhook"]).validate(), Err(ConfigError::MissingWebhookUrl)));
        assert!(matches!(
            parse(&["--mode", "webhook", "--webhook-url", "https://x/y"]).validate(),
            Err(ConfigError::MissingWebhookSecret)
        ));
        let c = parse(&["--mode", "webhook", "--webhook-url", "https://x/y", "--webhook-secret", "s3cret"])
            .validate()
            .unwrap();
        assert!(c.webhook.is_some());
    }

    #[test]
    fn debug_output_has_no_secrets() {
        let c = parse(&["--mode", "webhook", "--webhook-url", "https://x/y", "--webhook-secret", "s3cretvalue"])
            .validate()
            .unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("zzsecretzz") && !shown.contains("s3cretvalue"), "{shown}");
    }

    #[test]
    fn bad_token_error_does_not_quote_it() {
        let mut argv = vec!["tg-gateway", "--telegram-bot-token", "oops-very-secret"];
        argv.truncate(3);
        let err = Args::try_parse_from(argv).unwrap().validate().unwrap_err();
        assert!(!err.to_string().contains("very-secret"));
    }
}
