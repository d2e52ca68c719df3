//! The Bot API through teloxide-core's `Bot` (its client and types), behind the facade the
//! rest of the gateway calls. One call = one HTTP request: retries and flood control live
//! in [`crate::outbox`], offsets in [`crate::polling`], so each can be reasoned about (and
//! tested) on its own.
//!
//! What this module adds to teloxide-core, each read from its source (0.13) and tested
//! below or in `tests/hazards.rs`:
//! - `Bot` derives `Debug` with the token inside: it lives only in [`BotApi`], whose
//!   `Debug` is written by hand.
//! - teloxide-core redacts the token from a reqwest error's URL only when its secret part is
//!   35+ characters, and an unparsable body is quoted in full: every error is scrubbed of
//!   the token here ([`TelegramError::from_request`]).
//! - No per-request timeout (the payloads' timeout hint is unused, and a client-wide one
//!   would cut the long poll): each call gets its own deadline here.
//! - `getUpdates` is parsed as a whole: an update whose `message` the types reject comes
//!   back as `UpdateKind::Error` with its id, but one whose id does not fit (`u32`) fails
//!   the batch. The batch is then read update by update from the raw body
//!   ([`lenient_batch`]): nothing is lost and the offset still moves past the bad one.
//! - A 5xx answer makes teloxide-core sleep 10 s before returning the error; callers count
//!   that pause towards their own backoff (see `outbox.rs`, `polling.rs`).

use std::future::Future;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use serde_json::Value;
use teloxide_core::net::Download;
use teloxide_core::payloads::{
    DeleteWebhookSetters, GetUpdatesSetters, SendMessageSetters, SendPhotoSetters, SetWebhookSetters,
};
use teloxide_core::requests::{Request as _, Requester};
use teloxide_core::types::{
    AllowedUpdate, ChatAction, ChatId, File, InputFile, LinkPreviewOptions, Me, Message, MessageId, ParseMode,
    ReplyParameters, Update, UpdateKind,
};
use teloxide_core::RequestError;
use tokio::time::Instant;

use super::error::TelegramError;
use crate::metrics::METRICS;
use crate::secret::BotToken;

/// Where a photo to send comes from.
#[derive(Debug, Clone)]
pub enum PhotoSource {
    /// A `file_id` Telegram gave us earlier: no upload needed.
    FileId(String),
    /// JPEG bytes to upload (multipart).
    Upload { bytes: Bytes, file_name: String },
}

/// A message to send (text or photo), independent of how it is rate-limited.
#[derive(Debug, Clone)]
pub struct OutgoingMessage {
    pub chat_id: i64,
    /// The user's message this answers (threads the answer in groups).
    pub reply_to: Option<MessageId>,
    pub body: OutgoingBody,
}

#[derive(Debug, Clone)]
pub enum OutgoingBody {
    /// HTML text.
    Text { html: String },
    /// Photo with an HTML caption.
    Photo { photo: PhotoSource, caption_html: String },
}

impl OutgoingMessage {
    pub fn method(&self) -> &'static str {
        match self.body {
            OutgoingBody::Text { .. } => "sendMessage",
            OutgoingBody::Photo { .. } => "sendPhoto",
        }
    }
}

/// What the gateway keeps of a sent message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sent {
    /// The `file_id` of the largest size Telegram stored of a sent photo (any of them
    /// resends it; the largest keeps the most detail).
    pub largest_photo: Option<String>,
}

impl Sent {
    fn of(m: &Message) -> Self {
        Self { largest_photo: m.photo().and_then(|s| s.iter().max_by_key(|p| p.width)).map(|p| p.file.id.0.clone()) }
    }

    /// From an `ok: true` answer whose `result` the types rejected: the message was sent.
    fn from_raw(result: &Value) -> Self {
        let largest = result["photo"].as_array().and_then(|sizes| sizes.iter().max_by_key(|s| s["width"].as_u64()));
        Self { largest_photo: largest.and_then(|s| s["file_id"].as_str()).map(str::to_owned) }
    }
}

/// One getUpdates answer: the updates, and the ids of those that could not be read at all
/// (logged; the caller moves the offset past them).
#[derive(Debug, Default)]
pub struct Batch {
    pub updates: Vec<Update>,
    pub unreadable: Vec<i64>,
}

#[derive(Clone)]
pub struct BotApi {
    /// teloxide-core's client. Its derived `Debug` prints the token: never formatted.
    bot: teloxide_core::Bot,
    token: BotToken,
    base: String,
    timeout: Duration,
}

impl std::fmt::Debug for BotApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BotApi")
            .field("base", &self.base)
            .field("token", &self.token)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl BotApi {
    /// `timeout`: the deadline of each call but getUpdates (whose deadline is its long
    /// poll plus a margin).
    pub fn new(base: &str, token: BotToken, timeout: Duration) -> Result<Self, TelegramError> {
        let base = base.trim_end_matches('/').to_owned();
        // No total timeout here: each call has its own (the long poll needs a longer one).
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            .build()
            .map_err(|e| TelegramError::from_reqwest("client", &e, &token))?;
        let url = reqwest::Url::parse(&base).map_err(|e| TelegramError::Decode {
            method: "client",
            message: format!("Bot API URL: {e}"),
            not_json: false,
        })?;
        let bot = teloxide_core::Bot::with_client(token.expose(), http).set_api_url(url);
        Ok(Self { bot, token, base, timeout })
    }

    /// Runs one request with its deadline; errors scrubbed; counted in the metrics.
    async fn call<T>(
        &self,
        method: &'static str,
        timeout: Duration,
        request: impl Future<Output = Result<T, RequestError>>,
    ) -> Result<T, RequestErrorOr> {
        let started = Instant::now();
        let result = match tokio::time::timeout(timeout, request).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(RequestErrorOr::Request(e)),
            Err(_) => Err(RequestErrorOr::Mapped(TelegramError::timed_out(method, timeout))),
        };
        let outcome = match &result {
            Ok(_) => "ok".to_owned(),
            Err(RequestErrorOr::Request(e)) => TelegramError::from_request(method, e.clone(), &self.token).outcome(),
            Err(RequestErrorOr::Mapped(e)) => e.outcome(),
        };
        METRICS.telegram_request(method, &outcome, started.elapsed());
        result
    }

    async fn simple<T>(
        &self,
        method: &'static str,
        request: impl Future<Output = Result<T, RequestError>>,
    ) -> Result<T, TelegramError> {
        self.call(method, self.timeout, request).await.map_err(|e| e.into_error(method, &self.token))
    }

    pub async fn get_me(&self) -> Result<Me, TelegramError> {
        self.simple("getMe", self.bot.get_me().send()).await
    }

    /// Long poll. Telegram confirms every update below `offset` when this is called.
    pub async fn get_updates(
        &self,
        offset: Option<i64>,
        poll_timeout: Duration,
        limit: u8,
    ) -> Result<Batch, TelegramError> {
        const METHOD: &str = "getUpdates";
        let mut request = self
            .bot
            .get_updates()
            .timeout(u32::try_from(poll_timeout.as_secs()).unwrap_or(u32::MAX))
            .limit(limit)
            .allowed_updates([AllowedUpdate::Message]);
        if let Some(offset) = offset {
            // Update ids are 32-bit (teloxide-core's UpdateId is a u32).
            request = request.offset(i32::try_from(offset).unwrap_or(i32::MAX));
        }
        // The deadline must outlast the long poll itself.
        let deadline = poll_timeout + Duration::from_secs(15);
        let updates = match self.call(METHOD, deadline, request.send()).await {
            Ok(updates) => updates,
            Err(RequestErrorOr::Request(RequestError::InvalidJson { raw, source })) => match lenient_batch(&raw) {
                Some(batch) => {
                    tracing::warn!(
                        error = %source,
                        updates = batch.updates.len(),
                        unreadable = ?batch.unreadable,
                        "getUpdates answer rejected as a whole; read update by update"
                    );
                    return Ok(batch);
                }
                None => {
                    return Err(TelegramError::from_request(
                        METHOD,
                        RequestError::InvalidJson { raw, source },
                        &self.token,
                    ))
                }
            },
            Err(e) => return Err(e.into_error(METHOD, &self.token)),
        };
        for u in &updates {
            if let UpdateKind::Error(v) = &u.kind {
                log_rejected(i64::from(u.id.0), v);
            }
        }
        Ok(Batch { updates, unreadable: Vec::new() })
    }

    pub async fn get_file(&self, file_id: &str) -> Result<File, TelegramError> {
        let id = teloxide_core::types::FileId(file_id.to_owned());
        self.simple("getFile", self.bot.get_file(id).send()).await
    }

    /// Downloads a file found with getFile, streamed, refusing to read more than `limit`
    /// bytes.
    pub async fn download(&self, file_path: &str, limit: u64) -> Result<Bytes, TelegramError> {
        const METHOD: &str = "downloadFile";
        let started = Instant::now();
        let read = async {
            let mut stream = self.bot.download_file_stream(file_path);
            let mut buf = BytesMut::new();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| TelegramError::from_reqwest(METHOD, &e, &self.token))?;
                let size = (buf.len() + chunk.len()) as u64;
                if size > limit {
                    return Err(TelegramError::FileTooLarge { size, limit });
                }
                buf.extend_from_slice(&chunk);
            }
            Ok(buf.freeze())
        };
        let result = tokio::time::timeout(self.timeout, read)
            .await
            .unwrap_or_else(|_| Err(TelegramError::timed_out(METHOD, self.timeout)));
        METRICS.telegram_request(METHOD, if result.is_ok() { "ok" } else { "error" }, started.elapsed());
        result
    }

    pub async fn send(&self, msg: &OutgoingMessage) -> Result<Sent, TelegramError> {
        let chat = ChatId(msg.chat_id);
        let reply = msg.reply_to.map(|id| ReplyParameters::new(id).allow_sending_without_reply());
        let method = msg.method();
        let sent = match &msg.body {
            OutgoingBody::Text { html } => {
                let mut r = self.bot.send_message(chat, html.clone()).parse_mode(ParseMode::Html).link_preview_options(
                    LinkPreviewOptions {
                        is_disabled: true,
                        url: None,
                        prefer_small_media: false,
                        prefer_large_media: false,
                        show_above_text: false,
                    },
                );
                if let Some(reply) = reply {
                    r = r.reply_parameters(reply);
                }
                self.call(method, self.timeout, r.send()).await
            }
            OutgoingBody::Photo { photo, caption_html } => {
                let file = match photo {
                    PhotoSource::FileId(id) => InputFile::file_id(teloxide_core::types::FileId(id.clone())),
                    // Bytes: shared with the caller, not copied per attempt.
                    PhotoSource::Upload { bytes, file_name } => {
                        InputFile::memory(bytes.clone()).file_name(file_name.clone())
                    }
                };
                let mut r = self.bot.send_photo(chat, file).caption(caption_html.clone()).parse_mode(ParseMode::Html);
                if let Some(reply) = reply {
                    r = r.reply_parameters(reply);
                }
                self.call(method, self.timeout, r.send()).await
            }
        };
        match sent {
            Ok(m) => Ok(Sent::of(&m)),
            // Sent, but the answer does not fit the types: sending again would repeat it.
            Err(RequestErrorOr::Request(RequestError::InvalidJson { raw, source })) => {
                match serde_json::from_str::<Value>(&raw) {
                    Ok(v) if v["ok"] == Value::Bool(true) => {
                        tracing::warn!(method, error = %source, "message sent; its answer does not parse (kept as sent)");
                        Ok(Sent::from_raw(&v["result"]))
                    }
                    _ => {
                        Err(TelegramError::from_request(method, RequestError::InvalidJson { raw, source }, &self.token))
                    }
                }
            }
            Err(e) => Err(e.into_error(method, &self.token)),
        }
    }

    pub async fn send_chat_action(&self, chat_id: i64, action: ChatAction) -> Result<(), TelegramError> {
        self.simple("sendChatAction", self.bot.send_chat_action(ChatId(chat_id), action).send()).await.map(drop)
    }

    pub async fn set_webhook(&self, url: &str, secret: &str, max_connections: u8) -> Result<(), TelegramError> {
        const METHOD: &str = "setWebhook";
        let url = reqwest::Url::parse(url).map_err(|e| TelegramError::Decode {
            method: METHOD,
            message: format!("webhook URL: {e}"),
            not_json: false,
        })?;
        let request = self
            .bot
            .set_webhook(url)
            .secret_token(secret)
            .allowed_updates([AllowedUpdate::Message])
            .max_connections(max_connections)
            .drop_pending_updates(false);
        self.simple(METHOD, request.send()).await.map(drop)
    }

    /// Polling mode starts with this: getUpdates is refused while a webhook is set.
    pub async fn delete_webhook(&self) -> Result<(), TelegramError> {
        self.simple("deleteWebhook", self.bot.delete_webhook().drop_pending_updates(false).send()).await.map(drop)
    }
}

/// A teloxide error not yet turned into ours (the caller may want its raw body), or ours.
enum RequestErrorOr {
    Request(RequestError),
    Mapped(TelegramError),
}

impl RequestErrorOr {
    fn into_error(self, method: &'static str, token: &BotToken) -> TelegramError {
        match self {
            Self::Request(e) => TelegramError::from_request(method, e, token),
            Self::Mapped(e) => e,
        }
    }
}

/// An update the types reject: logged (by id and field names, never its content: it may
/// hold a user's data) and handled as nothing to do, so the offset moves past it.
fn log_rejected(update_id: i64, raw: &Value) {
    let fields: Vec<&str> = raw.as_object().map(|o| o.keys().map(String::as_str).collect()).unwrap_or_default();
    tracing::warn!(update_id, ?fields, "update the Bot API types reject; acknowledged without handling");
}

/// A getUpdates answer that failed as a whole, read update by update. `None` if the body is
/// not an `ok` answer with a list at all.
pub fn lenient_batch(raw: &str) -> Option<Batch> {
    let v: Value = serde_json::from_str(raw).ok()?;
    if v["ok"] != Value::Bool(true) {
        return None;
    }
    let mut batch = Batch::default();
    for item in v["result"].as_array()? {
        let Some(id) = item["update_id"].as_i64() else {
            tracing::error!("update without an update_id in a getUpdates answer; skipped");
            continue;
        };
        // From text, not from the `Value`: teloxide-core's `UpdateKind` reads its key as a
        // borrowed `&str` and falls back to `String` only after losing the entry, so an
        // update read from a `Value` (owned keys) always comes out as `UpdateKind::Error`.
        match serde_json::from_str::<Update>(&item.to_string()) {
            Ok(u) => {
                if let UpdateKind::Error(v) = &u.kind {
                    log_rejected(id, v);
                }
                batch.updates.push(u);
            }
            Err(e) => {
                tracing::error!(update_id = id, error = %e, "update cannot be read at all; acknowledged without handling");
                batch.unreadable.push(id);
            }
        }
    }
    Some(batch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_read_update_by_update() {
        let raw = r#"{"ok":true,"result":[
            {"update_id":7,"message":{"message_id":1,"date":1,"chat":{"id":5,"type":"private","first_name":"A"},"text":"hi"}},
            {"update_id":8,"message":{"weird":true}},
            {"update_id":9000000000,"message":{}},
            {"no_id":1}
        ]}"#;
        let b = lenient_batch(raw).unwrap();
        assert_eq!(b.updates.iter().map(|u| u.id.0).collect::<Vec<_>>(), [7, 8]);
        assert!(matches!(b.updates[0].kind, UpdateKind::Message(_)));
        assert!(matches!(b.updates[1].kind, UpdateKind::Error(_)));
        assert_eq!(b.unreadable, [9_000_000_000]);
        assert!(lenient_batch(r#"{"ok":false,"description":"x"}"#).is_none());
        assert!(lenient_batch("<html>").is_none());
    }

    #[tokio::test]
    async fn transport_errors_do_not_contain_the_token() {
        let token = BotToken::new("999:TOPSECRETTOKEN").unwrap();
        // Nothing listens on port 9 of loopback: the connection is refused.
        let api = BotApi::new("http://127.0.0.1:9", token, Duration::from_secs(2)).unwrap();
        let err = api.get_me().await.unwrap_err();
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains("TOPSECRETTOKEN"), "{shown}");
        assert!(err.is_transient());
        let err = api.download("photos/x.jpg", 10).await.unwrap_err();
        assert!(!format!("{err} {err:?}").contains("TOPSECRETTOKEN"));
    }
}
