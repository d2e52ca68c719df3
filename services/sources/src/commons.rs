//! The Wikimedia Commons Action API (`/w/api.php`), `format=json&formatversion=2&maxlag=5`:
//!
//! - `action=query&prop=imageinfo&iiprop=url|extmetadata|sha1|size|mime&iiurlwidth=W&titles=A|B`
//!   (at most 50 titles per request) -> `query.pages[]`, each `{"title", "missing"?: true,
//!   "invalid"?: true, "imageinfo"?: [{"url", "descriptionurl", "thumburl", "thumbwidth",
//!   "thumbheight", "sha1", "mime", "size", "width", "height", "extmetadata": {"Artist":
//!   {"value": "<html>", "source", "hidden"?}, "LicenseShortName": {...}, "LicenseUrl": {...}}}]}`;
//!   `query.normalized[] {"from","to"}` maps a requested title to the canonical one; a response cut
//!   short carries `continue` (its fields are sent back as they are until it is absent).
//! - `action=query&list=categorymembers&cmtitle=Category:X&cmtype=file&cmlimit=N`
//!   -> `query.categorymembers[] {"pageid","ns","title"}`.

use crate::http::{Http, HttpError};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};

pub const MAX_TITLES_PER_REQUEST: usize = 50;

#[derive(Debug, Clone)]
pub struct Commons {
    http: Http,
    api: String,
}

/// What the API says about one requested file.
#[derive(Debug, Clone, PartialEq)]
pub enum FileInfo {
    Missing,
    Invalid(String),
    Found(ImageInfo),
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImageInfo {
    /// Canonical title, "File:Tom Hanks TIFF 2019.jpg".
    pub title: String,
    pub thumb_url: String,
    pub url: String,
    pub description_url: String,
    pub sha1: String,
    pub mime: String,
    /// Author, HTML stripped.
    pub artist: String,
    pub license: String,
    pub license_url: String,
}

#[derive(Debug, Deserialize)]
struct QueryResponse {
    #[serde(default)]
    query: Option<Query>,
    #[serde(default, rename = "continue")]
    cont: Option<BTreeMap<String, serde_json::Value>>,
}

#[derive(Debug, Deserialize, Default)]
struct Query {
    #[serde(default)]
    normalized: Vec<Normalized>,
    #[serde(default)]
    pages: Vec<Page>,
    #[serde(default)]
    categorymembers: Vec<Member>,
}

#[derive(Debug, Deserialize)]
struct Normalized {
    from: String,
    to: String,
}

#[derive(Debug, Deserialize)]
struct Page {
    title: String,
    #[serde(default)]
    missing: bool,
    #[serde(default)]
    invalid: bool,
    #[serde(default)]
    invalidreason: Option<String>,
    #[serde(default)]
    imageinfo: Vec<RawInfo>,
}

#[derive(Debug, Deserialize)]
struct RawInfo {
    #[serde(default)]
    url: String,
    #[serde(default)]
    descriptionurl: String,
    #[serde(default)]
    thumburl: Option<String>,
    #[serde(default)]
    sha1: String,
    #[serde(default)]
    mime: String,
    #[serde(default)]
    extmetadata: BTreeMap<String, MetaValue>,
}

#[derive(Debug, Deserialize)]
struct MetaValue {
    value: serde_json::Value,
}

#[derive(Debug, Deserialize)]
struct Member {
    title: String,
}

impl Commons {
    pub fn new(http: Http, api: &str) -> Self {
        Self { http, api: api.to_string() }
    }

    /// Image info with a `width`-pixel thumbnail for `titles` ("File:..."; at most 50 per call
    /// are sent in one request), by requested title.
    pub async fn imageinfo(&self, titles: &[String], width: u32) -> Result<HashMap<String, FileInfo>, HttpError> {
        let mut out = HashMap::new();
        for chunk in titles.chunks(MAX_TITLES_PER_REQUEST) {
            out.extend(self.imageinfo_batch(chunk, width).await?);
        }
        Ok(out)
    }

    async fn imageinfo_batch(&self, titles: &[String], width: u32) -> Result<HashMap<String, FileInfo>, HttpError> {
        let joined = titles.join("|");
        let width = width.to_string();
        let mut canonical: HashMap<String, String> = HashMap::new();
        let mut pages: BTreeMap<String, FileInfo> = BTreeMap::new();
        let mut cont: Option<BTreeMap<String, serde_json::Value>> = None;
        for _round in 0..20 {
            let mut params: Vec<(String, String)> = vec![
                ("action".into(), "query".into()),
                ("format".into(), "json".into()),
                ("formatversion".into(), "2".into()),
                ("maxlag".into(), "5".into()),
                ("prop".into(), "imageinfo".into()),
                ("iiprop".into(), "url|extmetadata|sha1|size|mime".into()),
                ("iiurlwidth".into(), width.clone()),
                ("iiextmetadatafilter".into(), "Artist|LicenseShortName|LicenseUrl|UsageTerms".into()),
                ("titles".into(), joined.clone()),
            ];
            if let Some(c) = &cont {
                for (k, v) in c {
                    let v = v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string());
                    params.push((k.clone(), v));
                }
            }
            let r: QueryResponse = self.http.json(|c| c.get(&self.api).query(&params)).await?;
            let q = r.query.unwrap_or_default();
            for n in q.normalized {
                canonical.insert(n.from, n.to);
            }
            for p in q.pages {
                let info = if p.invalid {
                    FileInfo::Invalid(p.invalidreason.unwrap_or_else(|| "invalid title".into()))
                } else if let Some(raw) = p.imageinfo.into_iter().next() {
                    FileInfo::Found(info_from(&p.title, raw))
                } else if p.missing {
                    FileInfo::Missing
                } else {
                    // Cut short: its imageinfo comes with a continuation.
                    continue;
                };
                pages.insert(p.title, info);
            }
            cont = r.cont;
            if cont.is_none() {
                break;
            }
        }
        let mut out = HashMap::new();
        for t in titles {
            let key = canonical.get(t).unwrap_or(t);
            out.insert(t.clone(), pages.get(key).cloned().unwrap_or(FileInfo::Missing));
        }
        Ok(out)
    }

    /// Up to `limit` files ("File:...") of `Category:<category>`.
    pub async fn category_files(&self, category: &str, limit: usize) -> Result<Vec<String>, HttpError> {
        let title =
            if category.starts_with("Category:") { category.to_string() } else { format!("Category:{category}") };
        let limit = limit.clamp(1, 500).to_string();
        let params = [
            ("action", "query"),
            ("format", "json"),
            ("formatversion", "2"),
            ("maxlag", "5"),
            ("list", "categorymembers"),
            ("cmtype", "file"),
            ("cmtitle", title.as_str()),
            ("cmlimit", limit.as_str()),
        ];
        let r: QueryResponse = self.http.json(|c| c.get(&self.api).query(&params)).await?;
        Ok(r.query.unwrap_or_default().categorymembers.into_iter().map(|m| m.title).collect())
    }
}

fn meta(raw: &RawInfo, key: &str) -> String {
    match raw.extmetadata.get(key).map(|m| &m.value) {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

fn info_from(title: &str, raw: RawInfo) -> ImageInfo {
    ImageInfo {
        title: title.to_string(),
        thumb_url: raw.thumburl.clone().unwrap_or_else(|| raw.url.clone()),
        url: raw.url.clone(),
        description_url: raw.descriptionurl.clone(),
        sha1: raw.sha1.clone(),
        mime: raw.mime.clone(),
        artist: strip_html(&meta(&raw, "Artist")),
        license: strip_html(&meta(&raw, "LicenseShortName")),
        license_url: meta(&raw, "LicenseUrl"),
    }
}

/// Plain text of Commons' HTML snippets: tags dropped, entities decoded, whitespace collapsed.
/// (A tag stripper is a few lines; entity decoding is `html-escape`'s.)
pub fn strip_html(html: &str) -> String {
    let mut text = String::with_capacity(html.len());
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => {
                in_tag = true;
                text.push(' ');
            }
            '>' if in_tag => in_tag = false,
            _ if !in_tag => text.push(c),
            _ => {}
        }
    }
    let decoded = html_escape::decode_html_entities(&text);
    decoded.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The licence allow-list: names compared case-insensitively; a pattern ending in `*` matches by
/// prefix ("CC BY-SA *" matches "CC BY-SA 4.0" and "CC BY-SA 3.0 de", not "CC BY-NC-SA 2.0").
#[derive(Debug, Clone)]
pub struct Licenses {
    patterns: Vec<String>,
}

pub const DEFAULT_LICENSES: &[&str] = &["CC0", "Public domain", "CC BY *", "CC BY-SA *"];

impl Licenses {
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Self {
        Self { patterns: patterns.iter().map(|p| p.as_ref().trim().to_lowercase()).filter(|p| !p.is_empty()).collect() }
    }

    pub fn allows(&self, license: &str) -> bool {
        let l = license.trim().to_lowercase();
        if l.is_empty() {
            return false;
        }
        self.patterns.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => l.starts_with(prefix),
            None => l == *p,
        })
    }
}

impl Default for Licenses {
    fn default() -> Self {
        Self::new(DEFAULT_LICENSES)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_stripped() {
        assert_eq!(
            strip_html("<a href=\"//commons.wikimedia.org/wiki/User:X\" title=\"User:X\">Jane&nbsp;Doe</a> &amp; <span>Co</span>"),
            "Jane Doe & Co"
        );
        assert_eq!(strip_html("Plain"), "Plain");
    }

    #[test]
    fn allow_list() {
        let l = Licenses::default();
        for ok in ["CC0", "cc0", "Public domain", "CC BY 2.0", "CC BY-SA 4.0", "CC BY-SA 3.0 de"] {
            assert!(l.allows(ok), "{ok}");
        }
        for no in ["CC BY-NC-SA 2.0", "GFDL", "CC BY-ND 4.0", "", "Copyrighted", "CC BY"] {
            assert!(!l.allows(no), "{no}");
        }
        assert!(Licenses::new(&["GFDL"]).allows("gfdl"));
    }
}
