//! The catalog: the engine's entry shape (`name`, `alias`, `role`, `n_movies`, `photos`, see
//! services/engine/src/gallery/catalog.rs) extended with what Wikidata says about the person.
//! The engine ignores the extra fields; unknown fields of an input catalog are kept as they were.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Entry {
    pub name: String,
    pub alias: String,
    #[serde(default)]
    pub role: String,
    #[serde(default)]
    pub n_movies: u32,
    /// The photos in `DIR/<alias>/` and their credits (filled by `photos`).
    #[serde(default)]
    pub photos: Vec<Photo>,
    /// Wikidata item id, "Q2263".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wikidata: Option<String>,
    /// Labels by language code.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub names: BTreeMap<String, String>,
    /// Wikipedia article URLs by language code (sitelinks).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub articles: BTreeMap<String, String>,
    /// Commons file names from P18 (image), without the "File:" prefix.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<String>,
    /// The person's Commons category (P373), without the "Category:" prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commons_category: Option<String>,
    /// Number of sitelinks (Wikimedia pages about the person): a measure of fame.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub sitelinks: u32,
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// One photo in the person's folder and its attribution (the engine's `CatalogPhoto`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Photo {
    pub file: String,
    #[serde(default)]
    pub author: String,
    #[serde(default)]
    pub license: String,
    #[serde(default)]
    pub license_url: String,
    #[serde(default)]
    pub source_url: String,
    /// The Commons title it was made from, "File:Tom Hanks TIFF 2019.jpg".
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub commons_title: String,
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("catalog {path} is not a JSON array of entries: {detail}")]
    Json { path: PathBuf, detail: String },
    #[error("catalog {path}: entry {index} has an empty name or alias")]
    EmptyField { path: PathBuf, index: usize },
    #[error("catalog {path}: alias {alias:?} appears twice")]
    DuplicateAlias { path: PathBuf, alias: String },
    #[error("catalog {path}: alias {alias:?} is not URL-safe (lowercase letters, digits and '-' only)")]
    BadAlias { path: PathBuf, alias: String },
}

/// Reads and checks a catalog: names and aliases non-empty, aliases unique and usable as folder names.
pub fn load(path: &Path) -> Result<Vec<Entry>, CatalogError> {
    let text = std::fs::read_to_string(path).map_err(|source| CatalogError::Io { path: path.into(), source })?;
    let entries: Vec<Entry> =
        serde_json::from_str(&text).map_err(|e| CatalogError::Json { path: path.into(), detail: e.to_string() })?;
    let mut seen = HashSet::new();
    for (index, e) in entries.iter().enumerate() {
        if e.name.trim().is_empty() || e.alias.trim().is_empty() {
            return Err(CatalogError::EmptyField { path: path.into(), index });
        }
        if !e.alias.chars().all(|c| (c.is_alphanumeric() && !c.is_uppercase()) || c == '-') {
            return Err(CatalogError::BadAlias { path: path.into(), alias: e.alias.clone() });
        }
        if !seen.insert(e.alias.clone()) {
            return Err(CatalogError::DuplicateAlias { path: path.into(), alias: e.alias.clone() });
        }
    }
    Ok(entries)
}

/// Writes `value` as pretty JSON to `path` atomically (a temporary file in the same folder, then rename).
pub fn write_json_atomic<T: Serialize + ?Sized>(path: &Path, value: &T) -> std::io::Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?;
    write_atomic(path, &bytes, true)
}

/// Writes `bytes` to `path` so that `path` is either absent/old or complete: a `.<name>.part` file
/// beside it, written (and with `sync`, flushed to disk), then renamed over it. A killed process
/// leaves at most the `.part` file, which no reader of the folder takes for a photo.
pub fn write_atomic(path: &Path, bytes: &[u8], sync: bool) -> std::io::Result<()> {
    use std::io::Write;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("out");
    let tmp = path.with_file_name(format!(".{name}.part"));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        if sync {
            f.sync_all()?;
        }
    }
    std::fs::rename(&tmp, path)
}

/// Makes `alias` unique among `taken` by appending `-<qid>` (or `-2`, `-3`, ...).
pub fn unique_alias(alias: String, qid: Option<&str>, taken: &mut HashSet<String>) -> String {
    let base = if alias.is_empty() { qid.map(|q| q.to_lowercase()).unwrap_or_else(|| "person".into()) } else { alias };
    if taken.insert(base.clone()) {
        return base;
    }
    if let Some(q) = qid {
        let with_id = format!("{base}-{}", q.to_lowercase());
        if taken.insert(with_id.clone()) {
            return with_id;
        }
    }
    let mut n = 2;
    loop {
        let candidate = format!("{base}-{n}");
        if taken.insert(candidate.clone()) {
            return candidate;
        }
        n += 1;
    }
}

/// Occupations by name -> Wikidata item. Raw ids ("Q33999") are accepted as they are.
pub const OCCUPATIONS: &[(&str, &str)] = &[
    ("actor", "Q33999"),
    ("film-actor", "Q10800557"),
    ("television-actor", "Q10798782"),
    ("singer", "Q177220"),
    ("singer-songwriter", "Q488205"),
    ("rapper", "Q2252262"),
    ("musician", "Q639669"),
    ("athlete", "Q2066131"),
    ("association-football-player", "Q937857"),
    ("basketball-player", "Q3665646"),
    ("tennis-player", "Q10833314"),
    ("politician", "Q82955"),
    ("model", "Q4610556"),
    ("comedian", "Q245068"),
    ("television-presenter", "Q947873"),
    ("film-director", "Q2526255"),
    ("writer", "Q36180"),
];

/// "actor", "film actor", "Film_Actor" or "Q33999" -> ("actor", "Q33999").
pub fn occupation(name_or_id: &str) -> Option<(String, String)> {
    let s = name_or_id.trim();
    if is_qid(s) {
        let name = OCCUPATIONS.iter().find(|(_, q)| *q == s).map(|(n, _)| n.to_string()).unwrap_or_else(|| s.into());
        return Some((name, s.to_string()));
    }
    let key = crate::alias::alias_for(s);
    OCCUPATIONS.iter().find(|(n, _)| *n == key).map(|(n, q)| (n.to_string(), q.to_string()))
}

/// "Q42" -> true.
pub fn is_qid(s: &str) -> bool {
    s.len() > 1 && s.starts_with('Q') && s[1..].bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn occupations_by_name_and_id() {
        assert_eq!(occupation("actor"), Some(("actor".into(), "Q33999".into())));
        assert_eq!(occupation("Film actor"), Some(("film-actor".into(), "Q10800557".into())));
        assert_eq!(occupation("Q177220"), Some(("singer".into(), "Q177220".into())));
        assert_eq!(occupation("Q123"), Some(("Q123".into(), "Q123".into())));
        assert_eq!(occupation("astronaut-chef"), None);
    }

    #[test]
    fn aliases_made_unique() {
        let mut taken = HashSet::new();
        assert_eq!(unique_alias("john-smith".into(), Some("Q1"), &mut taken), "john-smith");
        assert_eq!(unique_alias("john-smith".into(), Some("Q2"), &mut taken), "john-smith-q2");
        assert_eq!(unique_alias("john-smith".into(), Some("Q2"), &mut taken), "john-smith-2");
        assert_eq!(unique_alias(String::new(), Some("Q9"), &mut taken), "q9");
    }

    #[test]
    fn the_engines_shape_round_trips_with_unknown_fields() {
        let text = r#"[{"name":"Tilda Swinton","alias":"tilda-swinton","role":"actor","n_movies":14,
            "photos":[{"file":"a.jpg","author":"J","license":"CC0","license_url":"","source_url":"s","x":1}],
            "custom":{"k":true}}]"#;
        let entries: Vec<Entry> = serde_json::from_str(text).expect("parses");
        assert_eq!(entries[0].extra.get("custom"), Some(&serde_json::json!({"k": true})));
        assert_eq!(entries[0].photos[0].extra.get("x"), Some(&serde_json::json!(1)));
        let back = serde_json::to_value(&entries).expect("serialises");
        assert_eq!(back[0]["custom"]["k"], true);
        assert!(back[0].get("wikidata").is_none());
    }
}
