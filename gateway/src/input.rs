//! What a message asks for: a command, an image to match (and which file to fetch), or
//! something the bot cannot use. Pure functions, no I/O.

use crate::telegram::types::{Message, PhotoSize};

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

pub fn classify(msg: &Message, rules: &InputRules) -> Input {
    let private = !msg.chat.is_group();
    if let Some(sizes) = msg.photo.as_deref() {
        return match choose_photo_size(sizes, rules.min_side) {
            Some(p) => check_size(
                ImageFile {
                    file_id: p.file_id.clone(),
                    file_unique_id: p.file_unique_id.clone(),
                    file_size: p.file_size,
                    from_document: false,
                },
                rules,
            ),
            None => Input::Ignore,
        };
    }
    if let Some(doc) = &msg.document {
        let mime = doc.mime_type.as_deref().map(str::to_ascii_lowercase);
        if !mime.as_deref().is_some_and(|m| ACCEPTED_MIME.contains(&m)) {
            return Input::NotAnImage { mime };
        }
        return check_size(
            ImageFile {
                file_id: doc.file_id.clone(),
                file_unique_id: doc.file_unique_id.clone(),
                file_size: doc.file_size,
                from_document: true,
            },
            rules,
        );
    }
    if let Some(text) = msg.text.as_deref() {
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
        .min_by_key(|p| (long(p), p.file_size.unwrap_or(0)))
        .or_else(|| sizes.iter().max_by_key(|p| long(p)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telegram::types::{Chat, Document};

    fn size(id: &str, w: u32, h: u32, bytes: Option<u64>) -> PhotoSize {
        PhotoSize { file_id: id.into(), file_unique_id: format!("u{id}"), width: w, height: h, file_size: bytes }
    }

    fn msg(kind: &str) -> Message {
        Message {
            message_id: 1,
            chat: Chat { id: 1, kind: kind.into() },
            from: None,
            text: None,
            photo: None,
            document: None,
        }
    }

    fn rules() -> InputRules {
        InputRules { min_side: 640, max_file_bytes: 20 * 1024 * 1024, bot_username: Some("LookBot".into()) }
    }

    #[test]
    fn picks_smallest_size_that_is_big_enough() {
        let sizes =
            [size("s", 90, 67, None), size("m", 320, 240, None), size("x", 800, 600, None), size("y", 1280, 960, None)];
        assert_eq!(choose_photo_size(&sizes, 640).unwrap().file_id, "x");
        assert_eq!(choose_photo_size(&sizes, 1000).unwrap().file_id, "y");
        assert_eq!(choose_photo_size(&sizes, 5000).unwrap().file_id, "y");
        assert_eq!(choose_photo_size(&sizes, 0).unwrap().file_id, "s");
        // Portrait photos: the longer side counts.
        let tall = [size("a", 240, 320, None), size("b", 600, 800, None)];
        assert_eq!(choose_photo_size(&tall, 640).unwrap().file_id, "b");
        assert!(choose_photo_size(&[], 640).is_none());
    }

    #[test]
    fn oversized_files_are_refused_before_download() {
        let mut m = msg("private");
        m.photo = Some(vec![size("x", 800, 600, Some(30 * 1024 * 1024))]);
        assert_eq!(classify(&m, &rules()), Input::TooLarge { size: 30 * 1024 * 1024 });
    }

    #[test]
    fn documents_by_mime_type() {
        let doc = |mime: Option<&str>| Document {
            file_id: "d".into(),
            file_unique_id: "ud".into(),
            file_name: None,
            mime_type: mime.map(str::to_owned),
            file_size: Some(1000),
        };
        let mut m = msg("private");
        for ok in ["image/jpeg", "image/png", "image/webp", "IMAGE/JPEG"] {
            m.document = Some(doc(Some(ok)));
            assert!(matches!(classify(&m, &rules()), Input::Image(f) if f.from_document));
        }
        for bad in [Some("application/pdf"), Some("image/gif"), None] {
            m.document = Some(doc(bad));
            assert!(matches!(classify(&m, &rules()), Input::NotAnImage { .. }));
        }
    }

    #[test]
    fn commands() {
        let mut m = msg("private");
        let mut cmd = |t: &str, kind: &str| {
            m.chat.kind = kind.into();
            m.text = Some(t.into());
            classify(&m, &rules())
        };
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
