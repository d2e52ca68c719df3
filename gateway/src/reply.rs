//! Composing answers: HTML escaping (names can hold any character), links from the
//! configured template, and the caption for one or several faces.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::i18n::{self, Lang};

/// Telegram's caption limit (counted after HTML parsing; staying under it on the raw HTML
/// is the simple, safe side).
const CAPTION_LIMIT: usize = 1024;

/// Everything but RFC 3986 unreserved characters is encoded.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// Escapes text for Telegram's HTML parse mode (also safe inside attribute values).
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

/// A URL pattern with `{name}` (spaces become '_', as in Wikipedia titles), `{alias}` and
/// `{id}`; each value is percent-encoded.
#[derive(Debug, Clone)]
pub struct LinkTemplate(String);

impl LinkTemplate {
    pub fn new(template: &str) -> Self {
        Self(template.to_owned())
    }

    pub fn render(&self, name: &str, alias: &str, id: u32) -> String {
        let name = name.trim().replace(' ', "_");
        self.0
            .replace("{name}", &utf8_percent_encode(&name, COMPONENT).to_string())
            .replace("{alias}", &utf8_percent_encode(alias, COMPONENT).to_string())
            .replace("{id}", &id.to_string())
    }
}

/// One face's best match.
#[derive(Debug, Clone)]
pub struct FaceLine {
    pub name: String,
    pub alias: String,
    pub identity_id: u32,
    pub similarity_percent: f32,
}

/// Whole percent; never "100%": the matcher caps at 99.9, and claiming a perfect match
/// would be false.
fn percent(p: f32) -> u32 {
    if p.is_finite() {
        p.round().clamp(0.0, 99.0) as u32
    } else {
        0
    }
}

/// The caption: one face gets "You look like <b>X</b> — 87%" and a link; several faces get
/// one numbered line each (`None` = a face without a close match).
pub fn caption(lang: Lang, faces: &[Option<FaceLine>], links: &LinkTemplate) -> String {
    if let [Some(face)] = faces {
        let url = links.render(&face.name, &face.alias, face.identity_id);
        return format!(
            "{}\n{} <a href=\"{}\">{}</a>",
            i18n::you_look_like(lang, &escape_html(&face.name), percent(face.similarity_percent)),
            i18n::more_info(lang),
            escape_html(&url),
            escape_html(&url),
        );
    }
    let mut out = i18n::faces_header(lang, faces.len());
    for (i, face) in faces.iter().enumerate() {
        let line = match face {
            Some(f) => {
                let url = links.render(&f.name, &f.alias, f.identity_id);
                format!(
                    "\n{}. <a href=\"{}\">{}</a> — {}%",
                    i + 1,
                    escape_html(&url),
                    escape_html(&f.name),
                    percent(f.similarity_percent)
                )
            }
            None => format!("\n{}. {}", i + 1, i18n::no_match(lang)),
        };
        if out.len() + line.len() > CAPTION_LIMIT {
            out.push_str("\n…");
            break;
        }
        out.push_str(&line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn face(name: &str, alias: &str, p: f32) -> Option<FaceLine> {
        Some(FaceLine { name: name.into(), alias: alias.into(), identity_id: 7, similarity_percent: p })
    }

    #[test]
    fn escapes_html() {
        assert_eq!(escape_html(r#"<b>"Tom" & Jerry</b>"#), "&lt;b&gt;&quot;Tom&quot; &amp; Jerry&lt;/b&gt;");
    }

    #[test]
    fn renders_links() {
        let t = LinkTemplate::new("https://en.wikipedia.org/wiki/{name}");
        assert_eq!(t.render("Tilda Swinton", "tilda-swinton", 1), "https://en.wikipedia.org/wiki/Tilda_Swinton");
        assert_eq!(
            t.render("Penélope Cruz & co?", "x", 1),
            "https://en.wikipedia.org/wiki/Pen%C3%A9lope_Cruz_%26_co%3F"
        );
        let t = LinkTemplate::new("https://example.com/p/{alias}?id={id}");
        assert_eq!(t.render("A", "a/b c", 42), "https://example.com/p/a%2Fb%20c?id=42");
    }

    #[test]
    fn one_face_caption() {
        let links = LinkTemplate::new("https://w/{name}");
        let c = caption(Lang::En, &[face("Tilda <Swinton>", "tilda", 86.6)], &links);
        assert!(c.starts_with("You look like <b>Tilda &lt;Swinton&gt;</b> — 87%"), "{c}");
        assert!(c.contains("<a href=\"https://w/Tilda_%3CSwinton%3E\">"), "{c}");
        let c = caption(Lang::En, &[face("X", "x", 99.9)], &links);
        assert!(c.contains("— 99%"), "{c}");
        let c = caption(Lang::Ru, &[face("X", "x", 50.0)], &links);
        assert!(c.starts_with("Вы похожи на <b>X</b> — 50%"), "{c}");
    }

    #[test]
    fn several_faces_one_line_each() {
        let links = LinkTemplate::new("https://w/{alias}");
        let c = caption(Lang::En, &[face("A", "a", 90.0), None, face("C", "c", 10.4)], &links);
        let lines: Vec<&str> = c.lines().collect();
        assert_eq!(lines.len(), 4, "{c}");
        assert_eq!(lines[1], "1. <a href=\"https://w/a\">A</a> — 90%");
        assert_eq!(lines[2], "2. no close match");
        assert_eq!(lines[3], "3. <a href=\"https://w/c\">C</a> — 10%");
    }

    #[test]
    fn long_captions_are_cut() {
        let links = LinkTemplate::new("https://w/{name}");
        let faces: Vec<_> = (0..50).map(|_| face(&"N".repeat(60), "a", 1.0)).collect();
        assert!(caption(Lang::En, &faces, &links).len() <= CAPTION_LIMIT + 4);
    }
}
