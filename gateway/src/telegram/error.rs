//! Bot API errors as the gateway reasons about them. Built from teloxide-core's errors
//! with every trace of the token removed: none of them carries a URL or the token.
//!
//! teloxide-core drops the answer's `error_code` and keeps only the `description`
//! (`RequestError::Api(ApiError)`), so the code is read back from the description's HTTP
//! reason phrase, which is how Telegram starts every description ("Bad Request: ...",
//! "Forbidden: ...", "Conflict: ...", "Internal Server Error").

use std::time::Duration;

use teloxide_core::{ApiError, DownloadError, RequestError};

use crate::secret::BotToken;

#[derive(Debug, Clone, thiserror::Error)]
pub enum TelegramError {
    /// Telegram answered `ok: false`. `code` is the HTTP status the description names
    /// (0 when it names none).
    #[error("{method}: Bot API error {code}: {description}")]
    Api { method: &'static str, code: u16, description: String, retry_after: Option<Duration> },
    /// Connection, TLS or timeout problem; the request may or may not have arrived.
    #[error("{method}: transport error: {message}")]
    Transport { method: &'static str, message: String, timeout: bool },
    /// An answer that is not the Bot API's JSON, or JSON the types reject.
    #[error("{method}: unexpected response: {message}")]
    Decode {
        method: &'static str,
        message: String,
        /// The body was not JSON at all (e.g. a proxy's HTML error page): the request
        /// never reached the Bot API, so trying again is safe.
        not_json: bool,
    },
    /// A file bigger than the configured limit.
    #[error("file of {size} bytes is over the {limit}-byte limit")]
    FileTooLarge { size: u64, limit: u64 },
    /// getFile returned no `file_path` (the file is gone or too big for the Bot API).
    #[error("getFile returned no file_path")]
    NoFilePath,
}

/// Longest raw body quoted in a decode error.
const RAW_QUOTE: usize = 300;

impl TelegramError {
    /// From teloxide-core's error, with the token scrubbed from every message (its own
    /// redaction only covers tokens whose secret is 35+ characters, and never a body that
    /// echoes the URL, as some proxies' error pages do).
    pub fn from_request(method: &'static str, err: RequestError, token: &BotToken) -> Self {
        match err {
            RequestError::RetryAfter(s) => Self::Api {
                method,
                code: 429,
                description: "Too Many Requests".to_owned(),
                retry_after: Some(s.duration()),
            },
            RequestError::MigrateToChatId(to) => Self::Api {
                method,
                code: 400,
                description: format!("Bad Request: group chat was upgraded to a supergroup chat {to}"),
                retry_after: None,
            },
            RequestError::Api(e) => {
                let description = match &e {
                    ApiError::Unknown(d) => d.clone(),
                    known => known.to_string(),
                };
                Self::Api {
                    method,
                    code: status_of(&e, &description),
                    description: scrub(&description, token),
                    retry_after: None,
                }
            }
            RequestError::Network(e) => {
                Self::Transport { method, message: scrub(&chain(&*e), token), timeout: e.is_timeout() }
            }
            RequestError::InvalidJson { source, raw } => {
                let not_json = serde_json::from_str::<serde_json::Value>(&raw).is_err();
                let quoted: String = raw.chars().take(RAW_QUOTE).collect();
                Self::Decode { method, message: scrub(&format!("{source} (raw: {quoted:?})"), token), not_json }
            }
            RequestError::Io(e) => Self::Transport { method, message: scrub(&e.to_string(), token), timeout: false },
        }
    }

    pub fn from_download(method: &'static str, err: DownloadError, token: &BotToken) -> Self {
        match err {
            DownloadError::Network(e) => {
                Self::Transport { method, message: scrub(&chain(&*e), token), timeout: e.is_timeout() }
            }
            DownloadError::Io(e) => Self::Transport { method, message: scrub(&e.to_string(), token), timeout: false },
        }
    }

    /// A raw reqwest error (the download stream's), scrubbed like the others.
    pub fn from_reqwest(method: &'static str, err: &reqwest::Error, token: &BotToken) -> Self {
        Self::Transport { method, message: scrub(&chain(err), token), timeout: err.is_timeout() }
    }

    /// The call did not finish within its own deadline.
    pub fn timed_out(method: &'static str, after: Duration) -> Self {
        Self::Transport { method, message: format!("no answer within {} ms", after.as_millis()), timeout: true }
    }

    /// Telegram's flood-control answer: wait this long, then send again.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Api { code: 429, retry_after, .. } => Some(retry_after.unwrap_or(Duration::from_secs(1))),
            _ => None,
        }
    }

    /// Worth trying again after a pause: Telegram's own trouble or the network's.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Api { code, .. } => *code >= 500,
            Self::Transport { .. } => true,
            Self::Decode { not_json, .. } => *not_json,
            Self::FileTooLarge { .. } | Self::NoFilePath => false,
        }
    }

    /// No answer in time: the request may have been carried out (Telegram goes on with a
    /// request whose client stopped waiting). Sending a message again could repeat it.
    pub fn may_have_arrived(&self) -> bool {
        matches!(self, Self::Transport { timeout: true, .. })
    }

    /// A rejected `file_id` (e.g. a cached thumbnail id that expired).
    pub fn is_bad_file_id(&self) -> bool {
        match self {
            Self::Api { code: 400, description, .. } => {
                let d = description.to_ascii_lowercase();
                d.contains("file") || d.contains("photo")
            }
            _ => false,
        }
    }

    /// Telegram refused the request itself (HTTP 400): sending it again cannot help.
    pub fn is_bad_request(&self) -> bool {
        matches!(self, Self::Api { code: 400, .. })
    }

    /// Another poller or a webhook holds this bot (HTTP 409).
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::Api { code: 409, .. })
    }

    /// A label for metrics: "ok" is not an error; codes, "transport", "decode".
    pub fn outcome(&self) -> String {
        match self {
            Self::Api { code, .. } => code.to_string(),
            Self::Transport { .. } => "transport".to_owned(),
            Self::Decode { .. } => "decode".to_owned(),
            Self::FileTooLarge { .. } => "too_large".to_owned(),
            Self::NoFilePath => "no_file_path".to_owned(),
        }
    }
}

/// The HTTP status a Bot API error description names.
fn status_of(e: &ApiError, description: &str) -> u16 {
    match e {
        // Descriptions teloxide-core matches without their "Conflict: " prefix.
        ApiError::CantGetUpdates | ApiError::TerminatedByOtherGetUpdates => return 409,
        ApiError::InvalidToken => return 401,
        _ => {}
    }
    const PHRASES: [(&str, u16); 10] = [
        ("Bad Request", 400),
        ("Unauthorized", 401),
        ("Forbidden", 403),
        ("Not Found", 404),
        ("Conflict", 409),
        ("Too Many Requests", 429),
        ("Internal Server Error", 500),
        ("Bad Gateway", 502),
        ("Service Unavailable", 503),
        ("Gateway Timeout", 504),
    ];
    PHRASES.iter().find(|(p, _)| description.starts_with(p)).map_or(0, |(_, c)| *c)
}

/// An error and its sources, one line.
fn chain(err: &dyn std::error::Error) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    message
}

/// `text` with the token (whole, and its secret part alone) replaced.
pub fn scrub(text: &str, token: &BotToken) -> String {
    let secret = token.expose().split_once(':').map_or(token.expose(), |(_, s)| s);
    text.replace(token.expose(), "<token>").replace(secret, "<redacted>")
}
