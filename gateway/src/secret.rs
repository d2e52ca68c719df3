//! Secrets that must never reach a log line or an error message.
//!
//! The bot token is a bearer credential: whoever has it controls the bot. It also appears
//! inside every Bot API URL (`/bot<token>/<method>`), so the only code that may see it in
//! clear is the one building request URLs ([`crate::telegram::client`]).

use std::fmt;
use std::sync::Arc;

/// A secret as read from the command line or environment, before validation. Parsing
/// never fails (clap's errors would quote the value); `Debug` redacts it.
#[derive(Clone, Default)]
pub struct RawSecret(pub String);

impl std::str::FromStr for RawSecret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Debug for RawSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Telegram bot token (`123456:ABC-DEF...`). `Debug` and `Display` redact the secret part
/// and keep only the bot id, which is public anyway (`getMe` returns it).
#[derive(Clone, PartialEq, Eq)]
pub struct BotToken(Arc<str>);

/// Why a token or secret was refused. Never carries the value itself.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("TELEGRAM_BOT_TOKEN is empty")]
    EmptyToken,
    #[error("TELEGRAM_BOT_TOKEN is not of the form <bot id>:<secret> (value not shown)")]
    MalformedToken,
    #[error("the webhook secret must be 1-256 characters from A-Z, a-z, 0-9, '_' and '-' (value not shown)")]
    MalformedWebhookSecret,
}

impl BotToken {
    /// Checks the shape only (`digits:rest`, no whitespace or '/'); Telegram itself
    /// decides whether the token is valid.
    pub fn new(raw: &str) -> Result<Self, SecretError> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(SecretError::EmptyToken);
        }
        let (id, secret) = raw.split_once(':').ok_or(SecretError::MalformedToken)?;
        let id_ok = !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit());
        let secret_ok =
            !secret.is_empty() && secret.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !id_ok || !secret_ok {
            return Err(SecretError::MalformedToken);
        }
        Ok(Self(Arc::from(raw)))
    }

    /// The token in clear, for building request URLs only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The public bot id (the part before ':').
    pub fn bot_id(&self) -> &str {
        self.0.split(':').next().unwrap_or_default()
    }
}

impl fmt::Debug for BotToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BotToken({}:<redacted>)", self.bot_id())
    }
}

impl fmt::Display for BotToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:<redacted>", self.bot_id())
    }
}

/// The webhook secret token that Telegram echoes in `X-Telegram-Bot-Api-Secret-Token`.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(Arc<str>);

impl WebhookSecret {
    /// Telegram's rules: 1-256 characters, `A-Za-z0-9_-`.
    pub fn new(raw: &str) -> Result<Self, SecretError> {
        let ok =
            (1..=256).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if ok {
            Ok(Self(Arc::from(raw)))
        } else {
            Err(SecretError::MalformedWebhookSecret)
        }
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Compares in time independent of where the first difference is, so the secret
    /// cannot be guessed byte by byte from response timings.
    pub fn matches(&self, candidate: &[u8]) -> bool {
        let ours = self.0.as_bytes();
        if ours.len() != candidate.len() {
            return false;
        }
        ours.iter().zip(candidate).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_redacted_in_debug_and_display() {
        let t = BotToken::new("12345:AAH-secret_part").unwrap();
        assert_eq!(format!("{t}"), "12345:<redacted>");
        assert_eq!(format!("{t:?}"), "BotToken(12345:<redacted>)");
        assert!(!format!("{t:?}{t}").contains("secret_part"));
        assert_eq!(t.expose(), "12345:AAH-secret_part");
    }

    #[test]
    fn malformed_tokens_are_refused_without_echoing_them() {
        for bad in ["", "nocolon", "abc:def", "1:", "1:a/b", "1:a b"] {
            let err = BotToken::new(bad).unwrap_err();
            if !bad.is_empty() {
                assert!(!err.to_string().contains(bad), "{err}");
            }
        }
    }

    #[test]
    fn webhook_secret_rules_and_comparison() {
        let s = WebhookSecret::new("abc_DEF-123").unwrap();
        assert!(s.matches(b"abc_DEF-123"));
        assert!(!s.matches(b"abc_DEF-124"));
        assert!(!s.matches(b"abc"));
        assert!(WebhookSecret::new("").is_err());
        assert!(WebhookSecret::new("has space").is_err());
        assert!(WebhookSecret::new(&"a".repeat(257)).is_err());
        assert!(!format!("{s:?}").contains("abc"));
    }
}
