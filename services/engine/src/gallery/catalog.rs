//! Where gallery photos come from: `DIR/<Person_Name>/<photo>` or `DIR/<alias>.<ext>`,
//! optionally driven by a catalog JSON of the original service's shape:
//! `[{"name": "Tilda Swinton", "alias": "tilda-swinton", "role": "actor", "n_movies": 14}]`,
//! where an entry may also credit its photos, by file name:
//! `"photos": [{"file": "tilda-swinton.jpg", "author": "Jane Doe", "license": "CC BY-SA 4.0",
//! "license_url": "https://creativecommons.org/licenses/by-sa/4.0", "source_url": "https://..."}]`.

use super::PhotoCredit;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct CatalogEntry {
    pub name: String,
    pub alias: String,
    #[serde(default)]
    pub role: String,
    #[serde(default)]
    pub n_movies: u32,
    /// Attribution of the entry's photos, by file name.
    #[serde(default)]
    pub photos: Vec<CatalogPhoto>,
}

/// One photo of a catalog entry and its attribution.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct CatalogPhoto {
    /// The file's name in the person's folder (or `<alias>.<ext>`), without directories.
    pub file: String,
    #[serde(flatten)]
    pub credit: PhotoCredit,
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("catalog {path} is not valid JSON of the expected shape: {detail}")]
    Json { path: PathBuf, detail: String },
    #[error("catalog {path}: entry {index} has an empty name or alias")]
    EmptyField { path: PathBuf, index: usize },
    #[error("catalog {path}: alias {alias:?} appears twice")]
    DuplicateAlias { path: PathBuf, alias: String },
}

/// A person to put in the gallery, with their candidate photos.
#[derive(Debug, Clone)]
pub struct PersonPhotos {
    pub name: String,
    pub alias: String,
    pub role: String,
    pub n_movies: u32,
    pub photos: Vec<PathBuf>,
    /// Attribution by file name, from the catalog.
    pub credits: BTreeMap<String, PhotoCredit>,
}

impl PersonPhotos {
    /// The catalog's credit for `photo` (matched by file name), if any.
    pub fn credit(&self, photo: &Path) -> Option<&PhotoCredit> {
        photo.file_name().and_then(|n| n.to_str()).and_then(|n| self.credits.get(n))
    }
}

#[derive(Debug, Default)]
pub struct Sources {
    pub people: Vec<PersonPhotos>,
    /// Catalog entries for which no photo was found (by alias or name).
    pub entries_without_photos: Vec<String>,
    /// Photos (or folders) that match no catalog entry.
    pub photos_without_entry: Vec<PathBuf>,
}

pub const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "webp", "gif", "bmp"];

pub fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// "Tilda_Swinton" or "Tilda Swinton" -> "tilda-swinton".
pub fn alias_for(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_alphanumeric() {
            out.extend(c.to_lowercase());
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_end_matches('-').to_string()
}

/// "Tilda_Swinton" -> "Tilda Swinton".
pub fn name_for(key: &str) -> String {
    key.replace('_', " ").split_whitespace().collect::<Vec<_>>().join(" ")
}

pub fn load(path: &Path) -> Result<Vec<CatalogEntry>, CatalogError> {
    let text = std::fs::read_to_string(path).map_err(|source| CatalogError::Io { path: path.into(), source })?;
    let entries: Vec<CatalogEntry> =
        serde_json::from_str(&text).map_err(|e| CatalogError::Json { path: path.into(), detail: e.to_string() })?;
    let mut seen = std::collections::HashSet::new();
    for (index, e) in entries.iter().enumerate() {
        if e.name.trim().is_empty() || e.alias.trim().is_empty() {
            return Err(CatalogError::EmptyField { path: path.into(), index });
        }
        if !seen.insert(e.alias.clone()) {
            return Err(CatalogError::DuplicateAlias { path: path.into(), alias: e.alias.clone() });
        }
    }
    Ok(entries)
}

/// Groups the photos under `dir` by person key (folder name or file stem).
fn scan(dir: &Path) -> Result<BTreeMap<String, Vec<PathBuf>>, CatalogError> {
    let io = |source| CatalogError::Io { path: dir.into(), source };
    let mut groups: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        let Some(key) = path.file_stem().and_then(|s| s.to_str()).map(str::to_string) else {
            continue;
        };
        if path.is_dir() {
            let key = path.file_name().and_then(|s| s.to_str()).unwrap_or(&key).to_string();
            let mut photos: Vec<PathBuf> = std::fs::read_dir(&path)
                .map_err(|source| CatalogError::Io { path: path.clone(), source })?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && is_image(p))
                .collect();
            photos.sort();
            groups.entry(key).or_default().extend(photos);
        } else if is_image(&path) {
            groups.entry(key).or_default().push(path);
        }
    }
    Ok(groups)
}

/// Finds every person's photos, from the folder layout alone or matched to `catalog`.
pub fn collect(dir: &Path, catalog: Option<&[CatalogEntry]>) -> Result<Sources, CatalogError> {
    let groups = scan(dir)?;
    let mut sources = Sources::default();
    match catalog {
        None => {
            for (key, photos) in groups {
                if photos.is_empty() {
                    continue;
                }
                let name = name_for(&key);
                sources.people.push(PersonPhotos {
                    alias: alias_for(&name),
                    name,
                    role: String::new(),
                    n_movies: 0,
                    photos,
                    credits: BTreeMap::new(),
                });
            }
        }
        Some(entries) => {
            // A folder or file matches an entry by its alias, or by the alias of its name.
            let mut by_alias: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
            let known: std::collections::HashSet<&str> = entries.iter().map(|e| e.alias.as_str()).collect();
            for (key, photos) in groups {
                let alias = if known.contains(key.as_str()) { key.clone() } else { alias_for(&key) };
                if known.contains(alias.as_str()) {
                    by_alias.entry(alias).or_default().extend(photos);
                } else {
                    sources.photos_without_entry.extend(photos);
                }
            }
            for e in entries {
                match by_alias.remove(&e.alias) {
                    Some(photos) if !photos.is_empty() => sources.people.push(PersonPhotos {
                        name: e.name.clone(),
                        alias: e.alias.clone(),
                        role: e.role.clone(),
                        n_movies: e.n_movies,
                        photos,
                        credits: e.photos.iter().map(|p| (p.file.clone(), p.credit.clone())).collect(),
                    }),
                    _ => sources.entries_without_photos.push(e.name.clone()),
                }
            }
        }
    }
    Ok(sources)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases() {
        assert_eq!(alias_for("Tilda Swinton"), "tilda-swinton");
        assert_eq!(alias_for("Jean-Claude_Van_Damme"), "jean-claude-van-damme");
        assert_eq!(alias_for("Zoë  Saldaña!"), "zoë-saldaña");
        assert_eq!(name_for("George_W_Bush"), "George W Bush");
    }
}
