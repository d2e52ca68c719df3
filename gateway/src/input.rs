//! What a message asks for: a command, an image to match (and which file to fetch), or
//! something the bot cannot use. Pure functions, no I/O.

use teloxide_core::types::{FileMeta, PhotoSize};

use crate::telegram::Message;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Start,
    Help,
    /// `/cards on`, `/cards off`; `/cards` alone (or another word) asks for the setting.
    Cards(Option<bool>),
}

/// The file to download for matching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageFile {
    pub file_id: String,
    pub file_unique_id: String,
    /// As Telegram announced it, if it did.
    pub file_size: Option<u64>,
    pub from_document: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Command(Command),
    Image(ImageFile),
    /// Announced as bigger than the limit: refused before any download.
    TooLarge {
        size: u64,
    },
    /// A document that is not a JPEG, PNG or WebP image.
    NotAnImage {
        mime: Option<String>,
    },
    /// Plain text in a private chat: explain what to send.
    Text,
    /// Nothing to answer (other bots' commands, group chatter, service messages).
    Ignore,
}

/// Image types the matcher decodes and Telegram users send as files.
const ACCEPTED_MIME: [&str; 3] = ["image/jpeg", "image/png", "image/webp"];

#[derive(Debug, Clone)]
pub struct InputRules {
    /// Smallest acceptable longer side of a photo variant.
    pub min_side: u32,
    pub max_file_bytes: u64,
    /// This bot's @username, for `/help@ThisBot` in groups.
    pub bot_username: Option<String>,
}

/// Groups (and supergroups, channels) have their own, stricter flood limit (20 messages
/// per minute); only a private chat is not one.
pub fn is_group(msg: &Message) -> bool {
    !msg.chat.is_private()
}

/// The announced size: teloxide-core reads a missing `file_size` as `u32::MAX`, which
/// means "not announced" here, not "4 GB".
pub fn announced_size(file: &FileMeta) -> Option<u64> {
    (file.size != u32::MAX).then_some(u64::from(file.size))
}

fn image_file(file: &FileMeta, from_document: bool) -> ImageFile {
    ImageFile {
        file_id: file.id.0.clone(),
        file_unique_id: file.unique_id.0.clone(),
        file_size: announced_size(file),
        from_document,
    }
}

pub fn classify(msg: &Message, rules: &InputRules) -> Input {
    let private = !is_group(msg);
    if let Some(sizes) = msg.photo() {
        return match choose_photo_size(sizes, rules.min_side) {
            Some(p) => check_size(image_file(&p.file, false), rules),
            None => Input::Ignore,
        };
    }
    if let Some(doc) = msg.document() {
        let mime = doc.mime_type.as_ref().map(|m| m.essence_str().to_ascii_lowercase());
        if !mime.as_deref().is_some_and(|m| ACCEPTED_MIME.contains(&m)) {
            return Input::NotAnImage { mime };
        }
        return check_size(image_file(&doc.file, true), rules);
    }
    if let Some(text) = msg.text() {
        if let Some(cmd) = text.strip_prefix('/') {
            let word = cmd.split_whitespace().next().unwrap_or_default();
            let (name, target) = match word.split_once('@') {
                Some((n, t)) => (n, Some(t)),
                None => (word, None),
            };
            // In a group, `/help@OtherBot` is not for us.
            if let (Some(target), Some(me)) = (target, rules.bot_username.as_deref()) {
                if !target.eq_ignore_ascii_case(me) {
                    return Input::Ignore;
                }
            }
            let arg = cmd.split_whitespace().nth(1).map(str::to_lowercase);
            return match name.to_ascii_lowercase().as_str() {
                "start" => Input::Command(Command::Start),
                "help" => Input::Command(Command::Help),
                "cards" => Input::Command(Command::Cards(match arg.as_deref() {
                    Some("on" | "вкл") => Some(true),
                    Some("off" | "выкл") => Some(false),
                    _ => None,
                })),
                _ if private => Input::Command(Command::Help),
                _ => Input::Ignore,
            };
        }
        return if private { Input::Text } else { Input::Ignore };
    }
    if private {
        // Stickers, videos, voice...: tell what works.
        Input::NotAnImage { mime: None }
    } else {
        Input::Ignore
    }
}

fn check_size(file: ImageFile, rules: &InputRules) -> Input {
    match file.file_size {
        Some(size) if size > rules.max_file_bytes => Input::TooLarge { size },
        _ => Input::Image(file),
    }
}

/// The smallest variant whose longer side is at least `min_side` (enough for the detector;
/// every extra pixel is download and decode time), or the largest if none is that big.
pub fn choose_photo_size(sizes: &[PhotoSize], min_side: u32) -> Option<&PhotoSize> {
    let long = |p: &PhotoSize| p.width.max(p.height);
    sizes
        .iter()
        .filter(|p| long(p) >= min_side)
        .min_by_key(|p| (long(p), announced_size(&p.file).unwrap_or(0)))
        .or_else(|| sizes.iter().max_by_key(|p| long(p)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn size(id: &str, w: u32, h: u32, bytes: Option<u64>) -> PhotoSize {
        let mut v = json!({"file_id": id, "file_unique_id": format!("u{id}"), "width": w, "height": h});
        if let Some(b) = bytes {
            v["file_size"] = json!(b);
        }
        serde_json::from_value(v).unwrap()
    }

    /// A message as the Bot API sends it (teloxide-core's types parse it), with `extra`
    /// fields (photo, document, text).
    fn msg_with(kind: &str, extra: serde_json::Value) -> Message {
        let chat = if kind == "private" {
            json!({"id": 1, "type": "private", "first_name": "A"})
        } else {
            json!({"id": -1, "type": kind, "title": "G"})
        };
        let mut m = json!({"message_id": 1, "date": 1, "chat": chat});
        m.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        serde_json::from_value(m).unwrap()
    }

    fn msg(kind: &str) -> Message {
        msg_with(kind, json!({"text": ""}))
    }

    fn rules() -> InputRules {
        InputRules { min_side: 640, max_file_bytes: 20 * 1024 * 1024, bot_username: Some("LookBot".into()) }
    }

    #[test]
    fn picks_smallest_size_that_is_big_enough() {
        let sizes =
            [size("s", 90, 67, None), size("m", 320, 240, None), size("x", 800, 600, None), size("y", 1280, 960, None)];
        assert_eq!(choose_photo_size(&sizes, 640).unwrap().file.id.0, "x");
        assert_eq!(choose_photo_size(&sizes, 1000).unwrap().file.id.0, "y");
        assert_eq!(choose_photo_size(&sizes, 5000).unwrap().file.id.0, "y");
        assert_eq!(choose_photo_size(&sizes, 0).unwrap().file.id.0, "s");
        // Portrait photos: the longer side counts.
        let tall = [size("a", 240, 320, None), size("b", 600, 800, None)];
        assert_eq!(choose_photo_size(&tall, 640).unwrap().file.id.0, "b");
        assert!(choose_photo_size(&[], 640).is_none());
    }

    #[test]
    fn oversized_files_are_refused_before_download() {
        let m = msg_with(
            "private",
            json!({"photo": [{"file_id": "x", "file_unique_id": "ux", "width": 800, "height": 600,
                              "file_size": 30 * 1024 * 1024}]}),
        );
        assert_eq!(classify(&m, &rules()), Input::TooLarge { size: 30 * 1024 * 1024 });
    }

    #[test]
    fn a_photo_without_file_size_is_not_taken_for_a_huge_one() {
        // teloxide-core fills a missing file_size with u32::MAX (4 GiB).
        let m = msg_with(
            "private",
            json!({"photo": [{"file_id": "x", "file_unique_id": "ux", "width": 800, "height": 600}]}),
        );
        assert!(matches!(classify(&m, &rules()), Input::Image(ImageFile { file_size: None, .. })));
    }

    #[test]
    fn documents_by_mime_type() {
        let doc = |mime: Option<&str>| {
            let mut d = json!({"file_id": "d", "file_unique_id": "ud", "file_size": 1000});
            if let Some(m) = mime {
                d["mime_type"] = json!(m);
            }
            msg_with("private", json!({ "document": d }))
        };
        for ok in ["image/jpeg", "image/png", "image/webp", "IMAGE/JPEG"] {
            assert!(matches!(classify(&doc(Some(ok)), &rules()), Input::Image(f) if f.from_document), "{ok}");
        }
        for bad in [Some("application/pdf"), Some("image/gif"), None] {
            assert!(matches!(classify(&doc(bad), &rules()), Input::NotAnImage { .. }), "{bad:?}");
        }
    }

    #[test]
    fn group_kinds() {
        assert!(!is_group(&msg("private")));
        for kind in ["group", "supergroup"] {
            assert!(is_group(&msg(kind)), "{kind}");
        }
    }

    #[test]
    fn commands() {
        let cmd = |t: &str, kind: &str| classify(&msg_with(kind, json!({ "text": t })), &rules());
        assert_eq!(cmd("/start", "private"), Input::Command(Command::Start));
        assert_eq!(cmd("/help@LookBot", "group"), Input::Command(Command::Help));
        assert_eq!(cmd("/help@OtherBot", "group"), Input::Ignore);
        assert_eq!(cmd("/weird", "private"), Input::Command(Command::Help));
        assert_eq!(cmd("/weird", "group"), Input::Ignore);
        assert_eq!(cmd("hello", "private"), Input::Text);
        assert_eq!(cmd("hello", "supergroup"), Input::Ignore);
        assert_eq!(cmd("/cards off", "private"), Input::Command(Command::Cards(Some(false))));
        assert_eq!(cmd("/cards@LookBot ON", "group"), Input::Command(Command::Cards(Some(true))));
        assert_eq!(cmd("/cards выкл", "private"), Input::Command(Command::Cards(Some(false))));
        assert_eq!(cmd("/cards ВЫКЛ", "private"), Input::Command(Command::Cards(Some(false))));
        assert_eq!(cmd("/cards", "private"), Input::Command(Command::Cards(None)));
        assert_eq!(cmd("/cards maybe", "private"), Input::Command(Command::Cards(None)));
    }
}
