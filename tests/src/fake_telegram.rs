//! A fake Telegram Bot API server on loopback: real HTTP, the real JSON shapes, paths
//! `/bot<token>/<method>` and `/file/bot<token>/<path>`, parameters as JSON, form, query or
//! multipart (like the real one). It keeps a log of every call with its arrival time, and
//! can inject 429s (with `retry_after`), 5xx answers, slow answers and an HTML error page
//! that echoes the request path (as some proxies' pages do). Private and group chats.
//!
//! Like the real server, a request is carried out even when the client gives up waiting
//! for its answer (a slow `sendMessage` still delivers the message).
//!
//! Methods: getMe, getUpdates (offset confirmation and long polling), getFile, file
//! download, sendMessage, sendPhoto (upload or file_id), sendChatAction, setWebhook,
//! deleteWebhook, getWebhookInfo.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Json, Router};
use serde_json::{json, Map, Value};
use tokio::sync::Notify;

/// The bot's identity as getMe reports it.
pub const BOT_ID: i64 = 7_000_000_001;
pub const BOT_USERNAME: &str = "LookalikeTestBot";

/// A file argument of sendPhoto.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PhotoArg {
    /// Multipart upload: the bytes.
    Upload(Vec<u8>),
    /// A file_id string.
    FileId(String),
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Call {
    /// Arrival time since the server started.
    pub at: Duration,
    /// When the answer was sent, since the server started.
    pub answered_at: Duration,
    pub method: String,
    /// Text parameters (JSON values; multipart/form fields as strings).
    pub params: Map<String, Value>,
    pub photo: Option<PhotoArg>,
    pub status: u16,
    pub response: Value,
}

impl Call {
    pub fn chat_id(&self) -> Option<i64> {
        match self.params.get("chat_id")? {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.parse().ok(),
            _ => None,
        }
    }

    pub fn str_param(&self, name: &str) -> Option<String> {
        match self.params.get(name)? {
            Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        }
    }

    /// sendMessage text or sendPhoto caption.
    pub fn text(&self) -> String {
        self.str_param("text").or_else(|| self.str_param("caption")).unwrap_or_default()
    }

    pub fn ok(&self) -> bool {
        self.status == 200
    }

    /// A message that reached the chat (sendMessage / sendPhoto answered 200).
    pub fn is_delivered_message(&self) -> bool {
        self.ok() && (self.method == "sendMessage" || self.method == "sendPhoto")
    }

    pub fn is_send(&self) -> bool {
        matches!(self.method.as_str(), "sendMessage" | "sendPhoto" | "sendChatAction")
    }
}

/// A failure to inject into the next matching call.
#[derive(Debug, Clone)]
pub enum Fault {
    /// 429 with `parameters.retry_after`.
    TooManyRequests { retry_after: u64 },
    /// 500 Internal Server Error.
    ServerError,
    /// Answer normally after this delay.
    Delay(Duration),
    /// 404 with an HTML page quoting the request path (bot token included), like a
    /// misconfigured proxy in front of the Bot API.
    HtmlEchoingPath,
}

#[derive(Debug)]
struct Injected {
    method: String,
    chat_id: Option<i64>,
    fault: Fault,
}

#[derive(Debug, Clone)]
pub struct WebhookInfo {
    pub url: String,
    pub secret_token: Option<String>,
    pub allowed_updates: Option<Value>,
    pub max_connections: Option<i64>,
}

#[derive(Debug, Clone)]
struct StoredFile {
    bytes: Vec<u8>,
    unique_id: String,
    path: String,
    /// What getFile reports (can claim more than `bytes` for over-limit tests).
    size: u64,
}

#[derive(Default)]
struct Inner {
    updates: Vec<Value>,
    /// Telegram forgets every update below this once a getUpdates asks for it.
    confirmed: i64,
    next_update_id: i64,
    next_message_id: i64,
    next_file: u64,
    files: HashMap<String, StoredFile>,
    paths: HashMap<String, String>,
    calls: Vec<Call>,
    faults: VecDeque<Injected>,
    webhook: Option<WebhookInfo>,
}

struct Shared {
    token: String,
    started: Instant,
    inner: Mutex<Inner>,
    new_update: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running fake; stops when dropped.
pub struct FakeTelegram {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeTelegram {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A file the fake serves.
#[derive(Debug, Clone)]
pub struct FileRef {
    pub file_id: String,
    pub file_unique_id: String,
    pub size: u64,
}

/// Who sends a message.
#[derive(Debug, Clone, Copy)]
pub struct Sender {
    pub chat_id: i64,
    pub group: bool,
    pub user_id: i64,
    pub lang: &'static str,
}

impl Sender {
    pub fn private(id: i64) -> Self {
        Self { chat_id: id, group: false, user_id: id, lang: "en" }
    }

    /// `user_id` writing in the group `chat_id` (negative, like Telegram's group ids).
    pub fn group(chat_id: i64, user_id: i64) -> Self {
        Self { chat_id, group: true, user_id, lang: "en" }
    }

    pub fn lang(mut self, lang: &'static str) -> Self {
        self.lang = lang;
        self
    }
}

impl FakeTelegram {
    pub async fn start(token: &str) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            token: token.to_owned(),
            started: Instant::now(),
            inner: Mutex::new(Inner { next_update_id: 100_000, next_message_id: 1, ..Default::default() }),
            new_update: Notify::new(),
        });
        let app = Router::new()
            .route("/file/{bot}/{*path}", get(download))
            .route("/{bot}/{method}", any(method))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, shared, server })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn elapsed(&self) -> Duration {
        self.shared.started.elapsed()
    }

    /// Stores a file; `claimed_size` overrides the size getFile and messages report.
    pub fn add_file(&self, bytes: Vec<u8>, claimed_size: Option<u64>) -> FileRef {
        let mut s = self.shared.lock();
        s.next_file += 1;
        let n = s.next_file;
        let file_id = format!("AgACAgIAAxkBAAIB{n:06}");
        let unique_id = format!("AQAD{n:06}");
        let path = format!("photos/file_{n}.jpg");
        let size = claimed_size.unwrap_or(bytes.len() as u64);
        s.paths.insert(path.clone(), file_id.clone());
        s.files.insert(file_id.clone(), StoredFile { bytes, unique_id: unique_id.clone(), path, size });
        FileRef { file_id, file_unique_id: unique_id, size }
    }

    fn message(&self, from: Sender, body: Value) -> Value {
        let message_id = {
            let mut s = self.shared.lock();
            s.next_message_id += 1;
            s.next_message_id
        };
        let chat = if from.group {
            json!({"id": from.chat_id, "type": "group", "title": "Test group"})
        } else {
            json!({"id": from.chat_id, "type": "private", "first_name": "User"})
        };
        let mut m = json!({
            "message_id": message_id,
            "date": 1_700_000_000,
            "chat": chat,
            "from": {"id": from.user_id, "is_bot": false, "first_name": "User",
                     "language_code": from.lang},
        });
        if let (Some(m), Value::Object(b)) = (m.as_object_mut(), body) {
            m.extend(b);
        }
        m
    }

    /// A photo message with these sizes (smallest first, as Telegram sends them).
    pub fn photo_message(&self, from: Sender, sizes: &[(FileRef, u32, u32)]) -> Value {
        let sizes: Vec<Value> = sizes
            .iter()
            .map(|(f, w, h)| {
                json!({"file_id": f.file_id, "file_unique_id": f.file_unique_id,
                       "width": w, "height": h, "file_size": f.size})
            })
            .collect();
        self.message(from, json!({ "photo": sizes }))
    }

    pub fn document_message(&self, from: Sender, file: &FileRef, mime: &str, name: &str) -> Value {
        self.message(
            from,
            json!({"document": {"file_id": file.file_id, "file_unique_id": file.file_unique_id,
                                "file_name": name, "mime_type": mime, "file_size": file.size}}),
        )
    }

    pub fn text_message(&self, from: Sender, text: &str) -> Value {
        self.message(from, json!({ "text": text }))
    }

    /// Queues an update for getUpdates; returns it (with its update_id).
    pub fn push(&self, message: Value) -> Value {
        let update = {
            let mut s = self.shared.lock();
            let id = s.next_update_id;
            s.next_update_id += 1;
            let u = json!({"update_id": id, "message": message});
            s.updates.push(u.clone());
            u
        };
        self.shared.new_update.notify_waiters();
        update
    }

    /// Queues an update given as raw JSON (e.g. one the bot's types may reject); gives it the
    /// next update_id unless it has one. Returns its update_id.
    pub fn push_raw(&self, mut update: Value) -> i64 {
        let id = {
            let mut s = self.shared.lock();
            let id = match update["update_id"].as_i64() {
                Some(id) => id,
                None => {
                    let id = s.next_update_id;
                    update["update_id"] = json!(id);
                    id
                }
            };
            s.next_update_id = s.next_update_id.max(id + 1);
            s.updates.push(update);
            id
        };
        self.shared.new_update.notify_waiters();
        id
    }

    /// The offset the bot has confirmed (every update below it is forgotten).
    pub fn confirmed(&self) -> i64 {
        self.shared.lock().confirmed
    }

    /// An update (not queued), e.g. to POST to a webhook.
    pub fn make_update(&self, message: Value) -> Value {
        let mut s = self.shared.lock();
        let id = s.next_update_id;
        s.next_update_id += 1;
        json!({"update_id": id, "message": message})
    }

    /// The next call of `method` (to `chat_id`, if given) gets `fault`.
    pub fn inject(&self, method: &str, chat_id: Option<i64>, fault: Fault) {
        self.shared.lock().faults.push_back(Injected { method: method.to_owned(), chat_id, fault });
    }

    pub fn calls(&self) -> Vec<Call> {
        self.shared.lock().calls.clone()
    }

    pub fn calls_of(&self, method: &str) -> Vec<Call> {
        self.calls().into_iter().filter(|c| c.method == method).collect()
    }

    /// Successful sendMessage / sendPhoto calls.
    pub fn delivered(&self) -> Vec<Call> {
        self.calls().into_iter().filter(Call::is_delivered_message).collect()
    }

    pub fn webhook(&self) -> Option<WebhookInfo> {
        self.shared.lock().webhook.clone()
    }

    /// Updates not yet confirmed by an offset.
    pub fn unconfirmed(&self) -> usize {
        let s = self.shared.lock();
        let c = s.confirmed;
        s.updates.iter().filter(|u| u["update_id"].as_i64().unwrap_or(0) >= c).count()
    }

    /// Polls `cond` every 50 ms until it holds or `timeout` passes.
    pub async fn wait_until(&self, timeout: Duration, mut cond: impl FnMut(&[Call]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if cond(&self.calls()) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Human-readable call log (for reports and failed tests).
    pub fn format_log(&self) -> String {
        let mut out = String::new();
        for c in self.calls() {
            let mut params = c.params.clone();
            for long in ["text", "caption"] {
                if let Some(Value::String(s)) = params.get_mut(long) {
                    *s = s.replace('\n', "\\n");
                }
            }
            let photo = match &c.photo {
                Some(PhotoArg::Upload(b)) => format!(" photo=<upload {} bytes>", b.len()),
                Some(PhotoArg::FileId(id)) => format!(" photo=file_id:{id}"),
                None => String::new(),
            };
            out.push_str(&format!(
                "{:>9.3}s {:<15} {} {}{}\n",
                c.at.as_secs_f64(),
                c.method,
                c.status,
                Value::Object(params),
                photo
            ));
        }
        out
    }
}

fn api_error(code: u16, description: &str, retry_after: Option<u64>) -> (StatusCode, Value) {
    let mut body = json!({"ok": false, "error_code": code, "description": description});
    if let Some(r) = retry_after {
        body["parameters"] = json!({ "retry_after": r });
    }
    (StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), body)
}

fn ok(result: Value) -> (StatusCode, Value) {
    (StatusCode::OK, json!({"ok": true, "result": result}))
}

/// Reads parameters the ways the Bot API accepts them.
async fn params(req: Request) -> (Map<String, Value>, Option<PhotoArg>) {
    let mut map = Map::new();
    if let Some(q) = req.uri().query() {
        if let Ok(pairs) = serde_urlencoded::from_str::<Vec<(String, String)>>(q) {
            for (k, v) in pairs {
                map.insert(k, Value::String(v));
            }
        }
    }
    let ctype = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let mut photo = None;
    if ctype.starts_with("multipart/form-data") {
        if let Ok(mut mp) = Multipart::from_request(req, &()).await {
            // File parts by their part name. A file is either the part named after the
            // parameter (`photo`) or, as teloxide-core sends it, a part with any name that the
            // parameter points to as `attach://<name>` (the Bot API's "Sending files").
            let mut files: HashMap<String, Vec<u8>> = HashMap::new();
            while let Ok(Some(field)) = mp.next_field().await {
                let name = field.name().unwrap_or_default().to_owned();
                let is_file = field.file_name().is_some();
                let data = field.bytes().await.unwrap_or_default();
                if is_file {
                    files.insert(name, data.to_vec());
                } else {
                    map.insert(name, form_value(&String::from_utf8_lossy(&data)));
                }
            }
            photo = match map.get("photo").and_then(Value::as_str).and_then(|v| v.strip_prefix("attach://")) {
                Some(part) => files.remove(part).map(PhotoArg::Upload),
                None => files.remove("photo").map(PhotoArg::Upload),
            };
        }
    } else {
        let body = axum::body::to_bytes(req.into_body(), 64 * 1024 * 1024).await.unwrap_or_default();
        if ctype.starts_with("application/json") {
            if let Ok(Value::Object(m)) = serde_json::from_slice(&body) {
                map.extend(m);
            }
        } else if let Ok(pairs) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body) {
            for (k, v) in pairs {
                map.insert(k, form_value(&v));
            }
        }
    }
    if photo.is_none() {
        if let Some(Value::String(id)) = map.get("photo") {
            photo = Some(PhotoArg::FileId(id.clone()));
        }
    }
    (map, photo)
}

/// A form field's value. Parameters of array or object type ("A JSON-serialized list of the
/// update types", `allowed_updates`; `reply_markup`; ...) arrive in a form as JSON text, and
/// the Bot API reads them as JSON; everything else stays the string it was sent as.
fn form_value(text: &str) -> Value {
    match serde_json::from_str::<Value>(text) {
        Ok(v @ (Value::Array(_) | Value::Object(_))) => v,
        _ => Value::String(text.to_owned()),
    }
}

fn int(map: &Map<String, Value>, key: &str) -> Option<i64> {
    match map.get(key)? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

async fn method(State(s): State<Arc<Shared>>, Path((bot, method)): Path<(String, String)>, req: Request) -> Response {
    let at = s.started.elapsed();
    let path = req.uri().path().to_owned();
    let (params, photo) = params(req).await;
    // "All methods in the Bot API are case-insensitive" (teloxide-core sends "SendMessage"):
    // logged under their documented names.
    let method = canonical(&method);
    // Carried out in its own task: a client that stops waiting does not cancel it.
    let handled = tokio::spawn(async move { carry_out(&s, at, &bot, method, &path, params, photo).await });
    handled.await.unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

async fn carry_out(
    s: &Shared,
    at: Duration,
    bot: &str,
    method: String,
    path: &str,
    params: Map<String, Value>,
    photo: Option<PhotoArg>,
) -> Response {
    let authorised = bot.strip_prefix("bot") == Some(s.token.as_str());
    let chat_id = int(&params, "chat_id");

    // An injected fault for this call?
    let fault = {
        let mut inner = s.lock();
        let pos = inner.faults.iter().position(|f| f.method == method && (f.chat_id.is_none() || f.chat_id == chat_id));
        pos.and_then(|p| inner.faults.remove(p)).map(|f| f.fault)
    };
    if authorised && matches!(fault, Some(Fault::HtmlEchoingPath)) {
        let page =
            format!("<html><body><h1>Not Found</h1><p>The requested URL {path} was not found.</p></body></html>");
        s.lock().calls.push(Call {
            at,
            answered_at: s.started.elapsed(),
            method,
            params,
            photo,
            status: 404,
            response: json!({ "html": true }),
        });
        return (StatusCode::NOT_FOUND, [(header::CONTENT_TYPE, "text/html")], page).into_response();
    }
    let (status, body) = match (authorised, fault) {
        (false, _) => api_error(401, "Unauthorized", None),
        (true, Some(Fault::TooManyRequests { retry_after })) => {
            api_error(429, &format!("Too Many Requests: retry after {retry_after}"), Some(retry_after))
        }
        (true, Some(Fault::ServerError)) => api_error(500, "Internal Server Error", None),
        (true, Some(Fault::Delay(d))) => {
            tokio::time::sleep(d).await;
            answer(s, &method, &params, photo.as_ref()).await
        }
        (true, Some(Fault::HtmlEchoingPath) | None) => answer(s, &method, &params, photo.as_ref()).await,
    };
    let call = Call {
        at,
        answered_at: s.started.elapsed(),
        method,
        params,
        photo,
        status: status.as_u16(),
        response: body.clone(),
    };
    s.lock().calls.push(call);
    (status, Json(body)).into_response()
}

/// The documented spelling of a method name given in any case.
fn canonical(method: &str) -> String {
    const METHODS: [&str; 10] = [
        "getMe",
        "getUpdates",
        "getFile",
        "sendMessage",
        "sendPhoto",
        "sendChatAction",
        "setWebhook",
        "deleteWebhook",
        "getWebhookInfo",
        "logOut",
    ];
    METHODS.iter().find(|m| m.eq_ignore_ascii_case(method)).map_or_else(|| method.to_owned(), |m| (*m).to_owned())
}

/// The bot itself, as the `from` of the messages it sends.
fn bot_user() -> Value {
    json!({"id": BOT_ID, "is_bot": true, "first_name": "Lookalike", "username": BOT_USERNAME})
}

/// A chat as the Bot API describes it: groups have negative ids and a title.
fn chat_json(id: i64) -> Value {
    if id < 0 {
        json!({"id": id, "type": "group", "title": "Test group"})
    } else {
        json!({"id": id, "type": "private", "first_name": "User"})
    }
}

async fn answer(s: &Shared, method: &str, p: &Map<String, Value>, photo: Option<&PhotoArg>) -> (StatusCode, Value) {
    match method {
        // getMe returns a User with the fields "returned only in getMe" (can_join_groups,
        // can_read_all_group_messages, supports_inline_queries, can_connect_to_business,
        // has_main_web_app): the real server sends every one of them.
        "getMe" => ok(json!({"id": BOT_ID, "is_bot": true, "first_name": "Lookalike",
                             "username": BOT_USERNAME, "can_join_groups": true,
                             "can_read_all_group_messages": false, "supports_inline_queries": false,
                             "can_connect_to_business": false, "has_main_web_app": false})),
        "getUpdates" => get_updates(s, p).await,
        "getFile" => {
            let id = p.get("file_id").and_then(Value::as_str).unwrap_or_default();
            match s.lock().files.get(id) {
                Some(f) => ok(json!({"file_id": id, "file_unique_id": f.unique_id,
                                     "file_size": f.size, "file_path": f.path})),
                None => api_error(400, "Bad Request: invalid file_id", None),
            }
        }
        "sendMessage" => {
            let Some(chat) = int(p, "chat_id") else {
                return api_error(400, "Bad Request: chat_id is empty", None);
            };
            let text = p.get("text").and_then(Value::as_str).unwrap_or_default();
            if text.is_empty() {
                return api_error(400, "Bad Request: message text is empty", None);
            }
            let id = next_message_id(s);
            ok(json!({"message_id": id, "from": bot_user(), "date": 1_700_000_000,
                      "chat": chat_json(chat), "text": text}))
        }
        "sendPhoto" => send_photo(s, p, photo),
        "sendChatAction" => ok(json!(true)),
        "setWebhook" => {
            let url = p.get("url").and_then(Value::as_str).unwrap_or_default().to_owned();
            let mut inner = s.lock();
            inner.webhook = if url.is_empty() {
                None
            } else {
                Some(WebhookInfo {
                    url,
                    secret_token: p.get("secret_token").and_then(Value::as_str).map(str::to_owned),
                    allowed_updates: p.get("allowed_updates").cloned(),
                    max_connections: int(p, "max_connections"),
                })
            };
            ok(json!(true))
        }
        "deleteWebhook" => {
            s.lock().webhook = None;
            ok(json!(true))
        }
        "getWebhookInfo" => {
            let url = s.lock().webhook.as_ref().map(|w| w.url.clone()).unwrap_or_default();
            ok(json!({"url": url, "pending_update_count": 0}))
        }
        _ => api_error(404, "Not Found", None),
    }
}

fn next_message_id(s: &Shared) -> i64 {
    let mut inner = s.lock();
    inner.next_message_id += 1;
    inner.next_message_id
}

fn send_photo(s: &Shared, p: &Map<String, Value>, photo: Option<&PhotoArg>) -> (StatusCode, Value) {
    let Some(chat) = int(p, "chat_id") else {
        return api_error(400, "Bad Request: chat_id is empty", None);
    };
    let file_id = match photo {
        None => return api_error(400, "Bad Request: there is no photo in the request", None),
        Some(PhotoArg::FileId(id)) => {
            if !s.lock().files.contains_key(id) {
                return api_error(400, "Bad Request: wrong file identifier/HTTP URL specified", None);
            }
            id.clone()
        }
        Some(PhotoArg::Upload(bytes)) => {
            if !bytes.starts_with(&[0xFF, 0xD8]) {
                return api_error(400, "Bad Request: IMAGE_PROCESS_FAILED", None);
            }
            let mut inner = s.lock();
            inner.next_file += 1;
            let n = inner.next_file;
            let id = format!("AgACAgIAAxkDAAIC{n:06}");
            inner.files.insert(
                id.clone(),
                StoredFile {
                    bytes: bytes.clone(),
                    unique_id: format!("AQADsent{n:06}"),
                    path: format!("photos/sent_{n}.jpg"),
                    size: bytes.len() as u64,
                },
            );
            id
        }
    };
    let id = next_message_id(s);
    let caption = p.get("caption").cloned().unwrap_or(Value::Null);
    ok(json!({"message_id": id, "from": bot_user(), "date": 1_700_000_000,
    "chat": chat_json(chat), "caption": caption,
    "photo": [
        {"file_id": format!("{file_id}-thumb"), "file_unique_id": "t", "width": 90, "height": 90},
        {"file_id": file_id, "file_unique_id": "f", "width": 150, "height": 150}
    ]}))
}

async fn get_updates(s: &Shared, p: &Map<String, Value>) -> (StatusCode, Value) {
    if s.lock().webhook.is_some() {
        return api_error(
            409,
            "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first",
            None,
        );
    }
    let limit = int(p, "limit").unwrap_or(100).clamp(1, 100) as usize;
    let timeout = Duration::from_secs(int(p, "timeout").unwrap_or(0).clamp(0, 50) as u64);
    if let Some(offset) = int(p, "offset") {
        let mut inner = s.lock();
        if offset > inner.confirmed {
            inner.confirmed = offset;
        }
    }
    let deadline = Instant::now() + timeout;
    loop {
        // Registered before looking, so an update pushed in between is not missed.
        let notified = s.new_update.notified();
        let batch: Vec<Value> = {
            let inner = s.lock();
            let c = inner.confirmed;
            inner.updates.iter().filter(|u| u["update_id"].as_i64().unwrap_or(0) >= c).take(limit).cloned().collect()
        };
        let now = Instant::now();
        if !batch.is_empty() || now >= deadline {
            return ok(Value::Array(batch));
        }
        let _ = tokio::time::timeout(deadline - now, notified).await;
    }
}

async fn download(State(s): State<Arc<Shared>>, Path((bot, path)): Path<(String, String)>) -> Response {
    let at = s.started.elapsed();
    let authorised = bot.strip_prefix("bot") == Some(s.token.as_str());
    let file = {
        let inner = s.lock();
        inner.paths.get(&path).and_then(|id| inner.files.get(id)).map(|f| f.bytes.clone())
    };
    let (status, body) = match (authorised, file) {
        (false, _) => (StatusCode::UNAUTHORIZED, Bytes::new()),
        (true, None) => (StatusCode::NOT_FOUND, Bytes::new()),
        (true, Some(b)) => (StatusCode::OK, Bytes::from(b)),
    };
    let mut params = Map::new();
    params.insert("file_path".into(), Value::String(path));
    s.lock().calls.push(Call {
        at,
        answered_at: s.started.elapsed(),
        method: "downloadFile".into(),
        params,
        photo: None,
        status: status.as_u16(),
        response: json!({ "bytes": body.len() }),
    });
    (status, body).into_response()
}
