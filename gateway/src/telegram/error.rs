//! Bot API errors. None of them carries a URL: request URLs contain the bot token.

use std::time::Duration;

#[derive(Debug, Clone, thiserror::Error)]
pub enum TelegramError {
    /// Telegram answered `ok: false`.
    #[error("{method}: Bot API error {code}: {description}")]
    Api { method: &'static str, code: i64, description: String, retry_after: Option<Duration> },
    /// Connection, TLS or timeout problem; the request may or may not have arrived.
    #[error("{method}: transport error: {message}")]
    Transport { method: &'static str, message: String, timeout: bool },
    /// A non-JSON or unexpected answer (e.g. a proxy's HTML error page).
    #[error("{method}: unexpected response (HTTP {status}): {message}")]
    Decode { method: &'static str, status: u16, message: String },
    /// A file bigger than the configured limit.
    #[error("file of {size} bytes is over the {limit}-byte limit")]
    FileTooLarge { size: u64, limit: u64 },
    /// getFile returned no `file_path` (the file is gone or too big for the Bot API).
    #[error("getFile returned no file_path")]
    NoFilePath,
}

impl TelegramError {
    /// Builds a transport error from reqwest's, with the URL (and so the token) removed.
    pub fn transport(method: &'static str, err: reqwest::Error) -> Self {
        let timeout = err.is_timeout();
        let err = err.without_url();
        // The source chain explains *why* (connection refused, TLS...); it never holds
        // the URL once `without_url` has been applied to the outer error.
        let mut message = err.to_string();
        let mut source = std::error::Error::source(&err);
        while let Some(s) = source {
            message.push_str(": ");
            message.push_str(&s.to_string());
            source = s.source();
        }
        Self::Transport { method, message, timeout }
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
            Self::Decode { status, .. } => *status >= 500,
            Self::FileTooLarge { .. } | Self::NoFilePath => false,
        }
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

    /// The Bot API's `error_code`, for an `ok: false` answer.
    pub fn code(&self) -> Option<i64> {
        match self {
            Self::Api { code, .. } => Some(*code),
            _ => None,
        }
    }
}
