//! Telegram Bot API: teloxide-core's client and types behind the gateway's facade, and
//! the errors the gateway reasons about.

pub mod client;
pub mod error;

pub use client::{Batch, BotApi, OutgoingBody, OutgoingMessage, PhotoSource, Sent};
pub use error::TelegramError;
/// The Bot API types the gateway reads (teloxide-core's).
pub use teloxide_core::types::{ChatAction, Message, MessageId, Update, UpdateKind};

/// The update's id as the gateway counts it (teloxide-core's is a `u32`).
pub fn update_id(u: &Update) -> i64 {
    i64::from(u.id.0)
}

/// The message an update carries, if it is a new message (the only kind asked for).
pub fn message(u: &Update) -> Option<&Message> {
    match &u.kind {
        UpdateKind::Message(m) => Some(m),
        _ => None,
    }
}
