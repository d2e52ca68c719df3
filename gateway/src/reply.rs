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

/// Attribution of the celebrity photo shown (the matcher's `PhotoCredit`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PhotoCredit {
    pub author: String,
    pub license: String,
    pub license_url: String,
    pub source_url: String,
}

impl PhotoCredit {
    /// Whether the licence asks for credit: every licence but public domain and CC0 (free
    /// licences such as CC BY and CC BY-SA require attribution; a photo with no licence
    /// named is credited too, to be safe, as long as there is someone to credit).
    pub fn required(&self) -> bool {
        let l = self.license.trim().to_ascii_lowercase();
        if l.is_empty() {
            return !self.author.trim().is_empty();
        }
        !(l.starts_with("public domain") || l == "pd" || l.starts_with("pd-") || l.starts_with("cc0"))
    }

    /// "Photo: Jane Doe, CC BY-SA 4.0" (plain text, for the card: the card's font has no
    /// emoji), if credit is required.
    pub fn card_line(&self) -> Option<String> {
        if !self.required() {
            return None;
        }
        let parts: Vec<&str> =
            [self.author.trim(), self.license.trim()].into_iter().filter(|p| !p.is_empty()).collect();
        Some(format!("Photo: {}", parts.join(", ")))
    }

    /// The caption's credit line, linked to the photo's page and the licence, if required.
    pub fn caption_line(&self) -> Option<String> {
        if !self.required() {
            return None;
        }
        // Only web links: a catalog's odd URL (javascript:, protocol-relative...) is shown
        // as plain text rather than handed to Telegram as a link.
        let link = |text: &str, url: &str| {
            let url = url.trim();
            if url.starts_with("https://") || url.starts_with("http://") {
                format!("<a href=\"{}\">{}</a>", escape_html(url), escape_html(text))
            } else {
                escape_html(text)
            }
        };
        let mut parts = Vec::new();
        if !self.author.trim().is_empty() {
            parts.push(link(self.author.trim(), &self.source_url));
        }
        if !self.license.trim().is_empty() {
            parts.push(link(self.license.trim(), &self.license_url));
        }
        Some(format!("📷 {}", parts.join(", ")))
    }
}

/// Adds the credit lines of the photos shown (those whose licence asks for one, each once)
/// to a caption, within Telegram's caption limit: the credits are kept whole and the
/// caption's end is cut once, at a line break (so no HTML tag is split), if it must be.
pub fn with_credits<'a>(caption: String, credits: impl IntoIterator<Item = &'a PhotoCredit>) -> String {
    let mut lines: Vec<String> = Vec::new();
    for line in credits.into_iter().filter_map(PhotoCredit::caption_line) {
        if !lines.contains(&line) {
            lines.push(line);
        }
    }
    if lines.is_empty() {
        return caption;
    }
    let credit = lines.join("\n");
    const CUT: &str = "\n…";
    if caption.len() + 1 + credit.len() <= CAPTION_LIMIT {
        return format!("{caption}\n{credit}");
    }
    // Room for the kept part, the cut mark and the line break before the credits.
    let room = CAPTION_LIMIT.saturating_sub(credit.len() + 1 + CUT.len());
    let mut end = room.min(caption.len());
    while !caption.is_char_boundary(end) {
        end -= 1;
    }
    let end = caption[..end].rfind('\n').unwrap_or(0);
    format!("{}{CUT}\n{credit}", &caption[..end])
}

/// Whole percent; never "100%": the matcher caps at 99.9, and claiming a perfect match
/// would be false.
pub fn percent(p: f32) -> u32 {
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
    fn credit_when_the_licence_asks() {
        let by = PhotoCredit {
            author: "Jane <Doe>".into(),
            license: "CC BY-SA 4.0".into(),
            license_url: "https://creativecommons.org/licenses/by-sa/4.0".into(),
            source_url: "https://commons.wikimedia.org/wiki/File:X.jpg".into(),
        };
        assert_eq!(by.card_line().as_deref(), Some("Photo: Jane <Doe>, CC BY-SA 4.0"));
        assert_eq!(
            by.caption_line().as_deref(),
            Some(
                "📷 <a href=\"https://commons.wikimedia.org/wiki/File:X.jpg\">Jane &lt;Doe&gt;</a>, \
                 <a href=\"https://creativecommons.org/licenses/by-sa/4.0\">CC BY-SA 4.0</a>"
            )
        );
        let odd = PhotoCredit { source_url: "javascript:alert(1)".into(), license_url: "//x".into(), ..by.clone() };
        assert_eq!(odd.caption_line().as_deref(), Some("📷 Jane &lt;Doe&gt;, CC BY-SA 4.0"));
        for free in ["Public domain", "CC0", "cc0 1.0", "PD-US"] {
            let c = PhotoCredit { license: free.into(), ..by.clone() };
            assert!(c.card_line().is_none() && c.caption_line().is_none(), "{free}");
        }
        assert!(PhotoCredit::default().card_line().is_none(), "nothing to credit");
        let c = with_credits("You look like X".into(), [&by]);
        assert!(c.starts_with("You look like X\n📷 <a href="), "{c}");
        assert_eq!(with_credits("A".into(), []), "A");
        let free = PhotoCredit { license: "CC0".into(), ..by.clone() };
        assert_eq!(with_credits("A".into(), [&free]), "A", "no credit line when none is asked for");
        let other = PhotoCredit { author: "Ivan".into(), ..by.clone() };
        // Near and over the limit: every credit kept whole, once, the caption cut once.
        for n in [20, 21, 22, 23, 24, 40] {
            let long =
                (0..n).map(|i| format!("{i}. <a href=\"https://w/x\">Name</a> — 50%")).collect::<Vec<_>>().join("\n");
            let c = with_credits(long, [&by, &other, &by]);
            assert!(c.len() <= CAPTION_LIMIT, "{n}: {} bytes", c.len());
            assert!(c.ends_with("CC BY-SA 4.0</a>") && c.contains(">Ivan</a>"), "{c}");
            assert_eq!(c.matches(">Jane &lt;Doe&gt;</a>").count(), 1, "{c}");
            assert!(c.matches('…').count() <= 1, "{c}");
            assert_eq!(c.matches("<a ").count(), c.matches("</a>").count());
        }
    }

    #[test]
    fn long_captions_are_cut() {
        let links = LinkTemplate::new("https://w/{name}");
        let faces: Vec<_> = (0..50).map(|_| face(&"N".repeat(60), "a", 1.0)).collect();
        assert!(caption(Lang::En, &faces, &links).len() <= CAPTION_LIMIT + 4);
    }
}
