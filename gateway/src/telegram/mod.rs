//! Telegram Bot API: JSON types, errors and an HTTP client.

pub mod client;
pub mod error;
pub mod types;

pub use client::{BotApi, OutgoingBody, OutgoingMessage, PhotoSource};
pub use error::TelegramError;
