//! End-to-end test support: a fake Telegram Bot API server, and helpers that start the
//! real `matcher` and `tg-gateway` processes against it. The tests are in `tests/e2e.rs`.

pub mod fake_telegram;
pub mod fixtures;
pub mod ports;
pub mod procs;
pub mod worst;
