//! lookalike's Telegram gateway: receives selfies (long polling or webhook), asks the
//! matcher which celebrity each face resembles, and answers within Telegram's limits.

pub mod app;
pub mod card;
pub mod config;
pub mod flood;
pub mod handler;
pub mod health;
pub mod i18n;
pub mod input;
pub mod matcher;
pub mod metrics;
pub mod outbox;
pub mod polling;
pub mod prefs;
pub mod reply;
pub mod secret;
pub mod state;
pub mod telegram;
pub mod telemetry;
pub mod thumbs;
pub mod trace_context;
pub mod tracker;
pub mod user_limit;
pub mod webhook;
