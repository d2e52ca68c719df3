//! The parts of the Bot API's JSON objects the gateway reads. Unknown fields are ignored,
//! so new Bot API versions do not break parsing.

use serde::{Deserialize, Serialize};

/// `{"ok": true, "result": ...}` or `{"ok": false, "error_code": ..., ...}`.
#[derive(Debug, Deserialize)]
pub struct ApiResponse<T> {
    pub ok: bool,
    pub result: Option<T>,
    pub error_code: Option<i64>,
    pub description: Option<String>,
    pub parameters: Option<ResponseParameters>,
}

#[derive(Debug, Default, Deserialize)]
pub struct ResponseParameters {
    pub retry_after: Option<u64>,
    pub migrate_to_chat_id: Option<i64>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Update {
    pub update_id: i64,
    #[serde(default)]
    pub message: Option<Message>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Message {
    pub message_id: i64,
    pub chat: Chat,
    #[serde(default)]
    pub from: Option<User>,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub photo: Option<Vec<PhotoSize>>,
    #[serde(default)]
    pub document: Option<Document>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Chat {
    pub id: i64,
    /// "private", "group", "supergroup" or "channel".
    #[serde(rename = "type")]
    pub kind: String,
}

impl Chat {
    /// Groups have their own, stricter flood limit (20 messages per minute).
    pub fn is_group(&self) -> bool {
        self.kind != "private"
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct User {
    pub id: i64,
    #[serde(default)]
    pub is_bot: bool,
    #[serde(default)]
    pub first_name: String,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub language_code: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct PhotoSize {
    pub file_id: String,
    pub file_unique_id: String,
    pub width: u32,
    pub height: u32,
    #[serde(default)]
    pub file_size: Option<u64>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Document {
    pub file_id: String,
    pub file_unique_id: String,
    #[serde(default)]
    pub file_name: Option<String>,
    #[serde(default)]
    pub mime_type: Option<String>,
    #[serde(default)]
    pub file_size: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct File {
    pub file_id: String,
    #[serde(default)]
    pub file_size: Option<u64>,
    #[serde(default)]
    pub file_path: Option<String>,
}

/// What the gateway reads back from sendPhoto / sendMessage.
#[derive(Debug, Clone, Deserialize)]
pub struct SentMessage {
    pub message_id: i64,
    #[serde(default)]
    pub photo: Option<Vec<PhotoSize>>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Me {
    pub id: i64,
    #[serde(default)]
    pub username: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_real_photo_update() {
        let raw = r#"{"update_id":10,"message":{"message_id":5,"date":1,
            "chat":{"id":42,"type":"private","first_name":"A"},
            "from":{"id":42,"is_bot":false,"first_name":"A","language_code":"ru"},
            "photo":[{"file_id":"s","file_unique_id":"us","width":90,"height":60,"file_size":900},
                     {"file_id":"m","file_unique_id":"um","width":800,"height":600}]}}"#;
        let u: Update = serde_json::from_str(raw).unwrap();
        let m = u.message.unwrap();
        assert_eq!(m.chat.id, 42);
        assert!(!m.chat.is_group());
        assert_eq!(m.photo.unwrap()[1].file_size, None);
        assert_eq!(m.from.unwrap().language_code.as_deref(), Some("ru"));
    }

    #[test]
    fn parses_an_error_with_retry_after() {
        let raw = r#"{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 3",
            "parameters":{"retry_after":3}}"#;
        let r: ApiResponse<serde_json::Value> = serde_json::from_str(raw).unwrap();
        assert!(!r.ok);
        assert_eq!(r.parameters.unwrap().retry_after, Some(3));
    }
}
