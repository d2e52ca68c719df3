//! A small Bot API client on reqwest. One call = one HTTP request: retries and flood
//! control live in [`crate::outbox`], offsets in [`crate::polling`], so each can be
//! reasoned about (and tested) on its own.
//!
//! This is the only module that puts the token into a URL; every error leaving it has
//! the URL stripped ([`TelegramError::transport`]).

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use reqwest::multipart::{Form, Part};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use super::error::TelegramError;
use super::types::{ApiResponse, File, Me, SentMessage, Update};
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
    pub reply_to: Option<i64>,
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

#[derive(Clone)]
pub struct BotApi {
    http: reqwest::Client,
    base: String,
    token: BotToken,
    timeout: Duration,
}

impl std::fmt::Debug for BotApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BotApi").field("base", &self.base).field("token", &self.token).finish()
    }
}

enum Body {
    Json(Value),
    Multipart(Form),
}

impl BotApi {
    pub fn new(base: &str, token: BotToken, timeout: Duration) -> Result<Self, TelegramError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| TelegramError::transport("client", e))?;
        Ok(Self { http, base: base.trim_end_matches('/').to_owned(), token, timeout })
    }

    async fn call<R: DeserializeOwned>(
        &self,
        method: &'static str,
        body: Body,
        timeout: Duration,
    ) -> Result<R, TelegramError> {
        let started = Instant::now();
        let result = self.call_inner(method, body, timeout).await;
        let outcome = match &result {
            Ok(_) => "ok".to_owned(),
            Err(TelegramError::Api { code, .. }) => code.to_string(),
            Err(TelegramError::Transport { .. }) => "transport".to_owned(),
            Err(_) => "decode".to_owned(),
        };
        METRICS.telegram_request(method, &outcome, started.elapsed());
        result
    }

    async fn call_inner<R: DeserializeOwned>(
        &self,
        method: &'static str,
        body: Body,
        timeout: Duration,
    ) -> Result<R, TelegramError> {
        let url = format!("{}/bot{}/{}", self.base, self.token.expose(), method);
        let request = match body {
            Body::Json(v) => self.http.post(url).json(&v),
            Body::Multipart(form) => self.http.post(url).multipart(form),
        };
        let response = request.timeout(timeout).send().await.map_err(|e| TelegramError::transport(method, e))?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await.map_err(|e| TelegramError::transport(method, e))?;
        let parsed: ApiResponse<R> = serde_json::from_slice(&bytes).map_err(|e| TelegramError::Decode {
            method,
            status,
            message: e.to_string(),
        })?;
        if parsed.ok {
            return parsed.result.ok_or(TelegramError::Decode {
                method,
                status,
                message: "ok without result".to_owned(),
            });
        }
        let params = parsed.parameters.unwrap_or_default();
        Err(TelegramError::Api {
            method,
            code: parsed.error_code.unwrap_or(i64::from(status)),
            description: parsed.description.unwrap_or_default(),
            retry_after: params.retry_after.map(Duration::from_secs),
        })
    }

    pub async fn get_me(&self) -> Result<Me, TelegramError> {
        self.call("getMe", Body::Json(json!({})), self.timeout).await
    }

    /// Long poll. Telegram confirms every update below `offset` when this is called.
    /// Updates that do not parse come back with `message: None`, so the poller can still
    /// move past them instead of choking on one odd update forever.
    pub async fn get_updates(
        &self,
        offset: Option<i64>,
        poll_timeout: Duration,
        limit: u32,
    ) -> Result<Vec<Update>, TelegramError> {
        let mut params = json!({
            "timeout": poll_timeout.as_secs(),
            "limit": limit,
            "allowed_updates": ["message"],
        });
        if let Some(offset) = offset {
            params["offset"] = json!(offset);
        }
        // The HTTP timeout must outlast the long poll itself.
        let http_timeout = poll_timeout + Duration::from_secs(15);
        let raw: Vec<Value> = self.call("getUpdates", Body::Json(params), http_timeout).await?;
        Ok(raw.into_iter().filter_map(parse_update_leniently).collect())
    }

    pub async fn get_file(&self, file_id: &str) -> Result<File, TelegramError> {
        self.call("getFile", Body::Json(json!({ "file_id": file_id })), self.timeout).await
    }

    /// Downloads a file found with getFile, refusing to read more than `limit` bytes.
    pub async fn download(&self, file_path: &str, limit: u64) -> Result<Bytes, TelegramError> {
        const METHOD: &str = "downloadFile";
        let started = Instant::now();
        let url = format!("{}/file/bot{}/{}", self.base, self.token.expose(), file_path);
        let result = async {
            let response = self
                .http
                .get(url)
                .timeout(self.timeout)
                .send()
                .await
                .map_err(|e| TelegramError::transport(METHOD, e))?;
            let status = response.status().as_u16();
            if !response.status().is_success() {
                return Err(TelegramError::Decode {
                    method: METHOD,
                    status,
                    message: "file download refused".to_owned(),
                });
            }
            if let Some(len) = response.content_length() {
                if len > limit {
                    return Err(TelegramError::FileTooLarge { size: len, limit });
                }
            }
            let mut buf = BytesMut::new();
            let mut stream = response.bytes_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| TelegramError::transport(METHOD, e))?;
                let size = (buf.len() + chunk.len()) as u64;
                if size > limit {
                    return Err(TelegramError::FileTooLarge { size, limit });
                }
                buf.extend_from_slice(&chunk);
            }
            Ok(buf.freeze())
        }
        .await;
        let outcome = if result.is_ok() { "ok" } else { "error" };
        METRICS.telegram_request(METHOD, outcome, started.elapsed());
        result
    }

    pub async fn send(&self, msg: &OutgoingMessage) -> Result<SentMessage, TelegramError> {
        let reply = msg.reply_to.map(|id| json!({ "message_id": id, "allow_sending_without_reply": true }).to_string());
        match &msg.body {
            OutgoingBody::Text { html } => {
                let mut params = json!({
                    "chat_id": msg.chat_id,
                    "text": html,
                    "parse_mode": "HTML",
                    "link_preview_options": { "is_disabled": true },
                });
                if let Some(id) = msg.reply_to {
                    params["reply_parameters"] = json!({ "message_id": id, "allow_sending_without_reply": true });
                }
                self.call("sendMessage", Body::Json(params), self.timeout).await
            }
            OutgoingBody::Photo { photo: PhotoSource::FileId(file_id), caption_html } => {
                let mut params = json!({
                    "chat_id": msg.chat_id,
                    "photo": file_id,
                    "caption": caption_html,
                    "parse_mode": "HTML",
                });
                if let Some(id) = msg.reply_to {
                    params["reply_parameters"] = json!({ "message_id": id, "allow_sending_without_reply": true });
                }
                self.call("sendPhoto", Body::Json(params), self.timeout).await
            }
            OutgoingBody::Photo { photo: PhotoSource::Upload { bytes, file_name }, caption_html } => {
                // A multipart form cannot be replayed, so it is built per attempt; the
                // bytes themselves are shared, not copied.
                let part = Part::stream(reqwest::Body::from(bytes.clone()))
                    .file_name(file_name.clone())
                    .mime_str("image/jpeg")
                    .map_err(|e| TelegramError::transport("sendPhoto", e))?;
                let mut form = Form::new()
                    .text("chat_id", msg.chat_id.to_string())
                    .text("caption", caption_html.clone())
                    .text("parse_mode", "HTML")
                    .part("photo", part);
                if let Some(reply) = reply {
                    form = form.text("reply_parameters", reply);
                }
                self.call("sendPhoto", Body::Multipart(form), self.timeout).await
            }
        }
    }

    pub async fn send_chat_action(&self, chat_id: i64, action: &str) -> Result<bool, TelegramError> {
        self.call("sendChatAction", Body::Json(json!({ "chat_id": chat_id, "action": action })), self.timeout).await
    }

    pub async fn set_webhook(&self, url: &str, secret: &str, max_connections: u32) -> Result<bool, TelegramError> {
        let params = json!({
            "url": url,
            "secret_token": secret,
            "allowed_updates": ["message"],
            "max_connections": max_connections,
            "drop_pending_updates": false,
        });
        self.call("setWebhook", Body::Json(params), self.timeout).await
    }

    /// Polling mode starts with this: getUpdates is refused while a webhook is set.
    pub async fn delete_webhook(&self) -> Result<bool, TelegramError> {
        self.call("deleteWebhook", Body::Json(json!({ "drop_pending_updates": false })), self.timeout).await
    }
}

fn parse_update_leniently(raw: Value) -> Option<Update> {
    let update_id = raw.get("update_id")?.as_i64()?;
    match serde_json::from_value::<Update>(raw) {
        Ok(u) => Some(u),
        Err(e) => {
            tracing::warn!(update_id, error = %e, "update does not parse; skipping it");
            Some(Update { update_id, message: None })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_updates_are_kept_by_id_only() {
        let u = parse_update_leniently(json!({"update_id": 7, "message": {"weird": true}})).unwrap();
        assert_eq!(u.update_id, 7);
        assert!(u.message.is_none());
        assert!(parse_update_leniently(json!({"no_id": 1})).is_none());
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
