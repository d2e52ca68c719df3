//! `lookalike-sources photos`: every catalog entry's Commons portraits (P18, and optionally more
//! files of its Commons category) as thumbnails of bounded width in `OUT/<alias>/`, their credits
//! in the catalog written beside them, and a report of everyone left without a usable photo.
//!
//! Steps: (1) entries with a Wikidata id but no `images` get them (and P373) from the query
//! service; (2) with `extra_from_category`, each category's first files are listed; (3) image info
//! for all files, 50 titles a request; (4) the thumbnails are downloaded, `concurrency` at a time,
//! under the global rate cap; each is checked to be an image (magic bytes, header, complete
//! end marker) before it is kept.
//!
//! Resuming: `OUT/.sources-state.jsonl` is a journal with a line per kept file (alias, title,
//! file, Commons sha1, width, size), appended after the file is in place; files are written as
//! `.<name>.part` and renamed, so a killed run leaves no half photo. A later run asks the API again
//! (cheap: 50 files a request) and downloads only files that are new, whose sha1 or requested width
//! changed, or whose file is gone or of another size. Files no longer wanted (entry removed,
//! licence now refused) are deleted. At the end the journal is rewritten compacted.

use crate::catalog::{write_atomic, write_json_atomic, Entry, Photo};
use crate::commons::{Commons, FileInfo, ImageInfo, Licenses};
use crate::http::{Http, HttpError};
use crate::wdqs::{details_query, fold_details, Sparql};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

pub const STATE_FILE: &str = ".sources-state.jsonl";

#[derive(Debug, Clone)]
pub struct PhotosOptions {
    pub out: PathBuf,
    /// Where the catalog with credits goes (default `OUT/catalog.json`).
    pub catalog_out: PathBuf,
    pub report: Option<PathBuf>,
    pub width: u32,
    pub extra_from_category: usize,
    pub concurrency: usize,
    pub licenses: Licenses,
    /// Label languages asked for when `images` must be looked up.
    pub languages: Vec<String>,
    pub progress: bool,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Summary {
    pub people: usize,
    pub people_with_photos: usize,
    pub people_without_photos: usize,
    pub files_wanted: usize,
    pub files_kept: usize,
    pub files_downloaded: usize,
    pub files_reused: usize,
    pub files_rejected: usize,
    pub files_removed: usize,
    pub requests: u64,
    pub retries: u64,
    pub bytes_received: u64,
    pub seconds: f64,
    /// Downloaded files per second of the whole run.
    pub photos_per_second: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PersonProblem {
    pub alias: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wikidata: Option<String>,
    /// no_image, unresolved, license_not_allowed, not_an_image, broken_file, missing_file,
    /// http_error, timeout.
    pub reason: String,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FileProblem {
    pub alias: String,
    pub title: String,
    pub reason: String,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub summary: Summary,
    pub people_without_photo: Vec<PersonProblem>,
    pub rejected_files: Vec<FileProblem>,
}

/// One line of the state journal.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Record {
    alias: String,
    title: String,
    file: String,
    sha1: String,
    width: u32,
    bytes: u64,
    /// The credit, so a file can be kept (credited) when a later run cannot reach Commons.
    #[serde(default)]
    author: String,
    #[serde(default)]
    license: String,
    #[serde(default)]
    license_url: String,
    #[serde(default)]
    source_url: String,
}

impl Record {
    fn photo(&self) -> Photo {
        Photo {
            file: self.file.clone(),
            author: self.author.clone(),
            license: self.license.clone(),
            license_url: self.license_url.clone(),
            source_url: self.source_url.clone(),
            commons_title: self.title.clone(),
            extra: BTreeMap::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PhotosError {
    #[error("cannot write {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("looking up images on the query service: {0}")]
    Wdqs(HttpError),
}

/// A file to fetch for an entry.
#[derive(Debug, Clone)]
struct Wanted {
    entry: usize,
    title: String,
}

enum Outcome {
    Kept { photo: Box<Photo>, record: Record, downloaded: bool },
    Rejected { reason: &'static str, detail: String },
}

fn file_title(name: &str) -> String {
    let name = name.trim();
    if name.starts_with("File:") {
        name.to_string()
    } else {
        format!("File:{name}")
    }
}

fn load_state(path: &Path) -> HashMap<(String, String), Record> {
    let mut state = HashMap::new();
    let Ok(text) = std::fs::read_to_string(path) else { return state };
    for line in text.lines() {
        // A run killed mid-line leaves a last line that does not parse: skipped.
        if let Ok(r) = serde_json::from_str::<Record>(line) {
            state.insert((r.alias.clone(), r.title.clone()), r);
        }
    }
    state
}

/// Checks that `bytes` are a whole image of a gallery format; returns its file extension.
pub fn probe_image(bytes: &[u8]) -> Result<&'static str, (&'static str, String)> {
    use image::ImageFormat;
    let format = image::guess_format(bytes).map_err(|_| ("not_an_image", "no image signature".to_string()))?;
    let ext = match format {
        ImageFormat::Jpeg => "jpg",
        ImageFormat::Png => "png",
        ImageFormat::WebP => "webp",
        ImageFormat::Gif => "gif",
        ImageFormat::Bmp => "bmp",
        other => return Err(("not_an_image", format!("{other:?} is not a format the gallery reads"))),
    };
    let (w, h) = image::ImageReader::with_format(std::io::Cursor::new(bytes), format)
        .into_dimensions()
        .map_err(|e| ("broken_file", format!("unreadable {ext} header: {e}")))?;
    if w == 0 || h == 0 {
        return Err(("broken_file", format!("{w}x{h} pixels")));
    }
    // Truncated files keep a good header: JPEG and PNG must end with their end markers.
    let tail = &bytes[bytes.len().saturating_sub(32)..];
    let complete = match format {
        ImageFormat::Jpeg => tail.windows(2).any(|w| w == [0xFF, 0xD9]),
        ImageFormat::Png => tail.windows(4).any(|w| w == b"IEND"),
        _ => true,
    };
    if !complete {
        return Err(("broken_file", format!("{ext} without its end marker (truncated)")));
    }
    Ok(ext)
}

struct Ctx {
    http: Http,
    out: PathBuf,
    width: u32,
    state: HashMap<(String, String), Record>,
    journal: Mutex<std::fs::File>,
    bar: indicatif::ProgressBar,
}

impl Ctx {
    async fn fetch(&self, alias: &str, info: &ImageInfo) -> Outcome {
        let key = (alias.to_string(), info.title.clone());
        let dir = self.out.join(alias);
        let photo = |file: &str| Photo {
            file: file.to_string(),
            author: info.artist.clone(),
            license: info.license.clone(),
            license_url: info.license_url.clone(),
            source_url: info.description_url.clone(),
            commons_title: info.title.clone(),
            extra: BTreeMap::new(),
        };
        if let Some(r) = self.state.get(&key) {
            let on_disk = std::fs::metadata(dir.join(&r.file)).map(|m| m.len()).ok();
            if r.sha1 == info.sha1 && r.width == self.width && on_disk == Some(r.bytes) {
                return Outcome::Kept { photo: Box::new(photo(&r.file)), record: r.clone(), downloaded: false };
            }
        }
        let url = info.thumb_url.clone();
        let bytes = match self.http.bytes(|c| c.get(&url)).await {
            Ok(b) => b,
            Err(e) => return Outcome::Rejected { reason: e.reason(), detail: e.to_string() },
        };
        let ext = match probe_image(&bytes) {
            Ok(ext) => ext,
            Err((reason, detail)) => return Outcome::Rejected { reason, detail },
        };
        let file = crate::alias::file_name_for(&info.title, ext);
        let written = std::fs::create_dir_all(&dir).and_then(|_| write_atomic(&dir.join(&file), &bytes, false));
        if let Err(e) = written {
            return Outcome::Rejected { reason: "io_error", detail: format!("{}: {e}", dir.join(&file).display()) };
        }
        if let Some(old) = self.state.get(&key) {
            if old.file != file {
                let _ = std::fs::remove_file(dir.join(&old.file));
            }
        }
        let record = Record {
            alias: alias.to_string(),
            title: info.title.clone(),
            file: file.clone(),
            sha1: info.sha1.clone(),
            width: self.width,
            bytes: bytes.len() as u64,
            author: info.artist.clone(),
            license: info.license.clone(),
            license_url: info.license_url.clone(),
            source_url: info.description_url.clone(),
        };
        if let (Ok(line), Ok(mut j)) = (serde_json::to_string(&record), self.journal.lock()) {
            if let Err(e) = writeln!(j, "{line}").and_then(|_| j.flush()) {
                tracing::warn!(error = %e, "cannot append to the state journal");
            }
        }
        Outcome::Kept { photo: Box::new(photo(&file)), record, downloaded: true }
    }
}

/// Fills `images` (and P373, labels, ...) of entries that have a Wikidata id but no images.
async fn look_up_images(sparql: &Sparql, entries: &mut [Entry], languages: &[String]) -> Result<usize, HttpError> {
    let todo: Vec<usize> = entries
        .iter()
        .enumerate()
        .filter(|(_, e)| e.images.is_empty() && e.wikidata.is_some())
        .map(|(i, _)| i)
        .collect();
    for chunk in todo.chunks(200) {
        let ids: Vec<String> = chunk.iter().filter_map(|&i| entries[i].wikidata.clone()).collect();
        let details = fold_details(&sparql.select(&details_query(&ids, languages, &[], false)).await?);
        for &i in chunk {
            let e = &mut entries[i];
            let Some(d) = e.wikidata.as_ref().and_then(|q| details.get(q)) else { continue };
            e.images = d.images.clone();
            if e.commons_category.is_none() {
                e.commons_category = d.category.clone();
            }
            for (k, v) in &d.names {
                e.names.entry(k.clone()).or_insert_with(|| v.clone());
            }
            for (k, v) in &d.articles {
                e.articles.entry(k.clone()).or_insert_with(|| v.clone());
            }
            if e.sitelinks == 0 {
                e.sitelinks = d.sitelinks;
            }
        }
    }
    Ok(todo.len())
}

fn bar(show: bool, len: u64, msg: &'static str) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    let style = indicatif::ProgressStyle::with_template(
        "{msg:>10} [{elapsed_precise}] {wide_bar} {pos}/{len} {per_sec} eta {eta}",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_message(msg);
    bar
}

/// Runs the whole `photos` step for `entries`; returns the report (also written where asked).
pub async fn run(
    http: &Http,
    sparql: &Sparql,
    commons: &Commons,
    mut entries: Vec<Entry>,
    opts: &PhotosOptions,
) -> Result<Report, PhotosError> {
    let started = Instant::now();
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| PhotosError::Io { path, source }
    };
    std::fs::create_dir_all(&opts.out).map_err(io(&opts.out))?;
    let looked_up = look_up_images(sparql, &mut entries, &opts.languages).await.map_err(PhotosError::Wdqs)?;
    if looked_up > 0 {
        tracing::info!(entries = looked_up, "images looked up on the query service");
    }

    let mut rejected: Vec<FileProblem> = Vec::new();
    // (2) The files wanted per entry: P18 first, then the category's.
    let mut wanted: Vec<Wanted> = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        for img in &e.images {
            wanted.push(Wanted { entry: i, title: file_title(img) });
        }
    }
    if opts.extra_from_category > 0 {
        let with_category: Vec<(usize, String, usize)> = entries
            .iter()
            .enumerate()
            .filter_map(|(i, e)| e.commons_category.clone().map(|c| (i, c, e.images.len())))
            .collect();
        let n = opts.extra_from_category;
        let listed: Vec<(usize, String, Result<Vec<String>, HttpError>)> =
            futures_util::stream::iter(with_category.into_iter().map(|(i, cat, own)| async move {
                let r = commons.category_files(&cat, n + own).await;
                (i, cat, r)
            }))
            .buffer_unordered(opts.concurrency.max(1))
            .collect()
            .await;
        let mut listed = listed;
        listed.sort_by_key(|(i, _, _)| *i);
        for (i, cat, r) in listed {
            match r {
                Ok(files) => {
                    let own: HashSet<String> = entries[i].images.iter().map(|f| file_title(f)).collect();
                    for title in files.into_iter().filter(|t| !own.contains(t)).take(n) {
                        wanted.push(Wanted { entry: i, title });
                    }
                }
                Err(e) => rejected.push(FileProblem {
                    alias: entries[i].alias.clone(),
                    title: format!("Category:{cat}"),
                    reason: e.reason().into(),
                    detail: e.to_string(),
                }),
            }
        }
    }
    wanted.sort_by_key(|w| w.entry);
    // The same file twice for one person (e.g. "X.jpg" and "File:X.jpg") is fetched once.
    let mut seen_wanted = HashSet::new();
    wanted.retain(|w| seen_wanted.insert((w.entry, w.title.clone())));

    // (3) Image info, 50 titles a request.
    let mut titles: Vec<String> = wanted.iter().map(|w| w.title.clone()).collect();
    titles.sort();
    titles.dedup();
    let batches: Vec<Vec<String>> =
        titles.chunks(crate::commons::MAX_TITLES_PER_REQUEST).map(<[String]>::to_vec).collect();
    let meta_bar = bar(opts.progress, batches.len() as u64, "metadata");
    type Batch = (Vec<String>, Result<HashMap<String, FileInfo>, HttpError>);
    let infos: Vec<Batch> = futures_util::stream::iter(batches.into_iter().map(|b| {
        let meta_bar = &meta_bar;
        async move {
            let r = commons.imageinfo(&b, opts.width).await;
            meta_bar.inc(1);
            (b, r)
        }
    }))
    .buffer_unordered(opts.concurrency.max(1))
    .collect()
    .await;
    meta_bar.finish_and_clear();
    let mut info: HashMap<String, FileInfo> = HashMap::new();
    // Titles whose image info could not be had (after retries): their files fail this run,
    // and files an earlier run downloaded for them are kept.
    let mut unreachable: HashMap<String, HttpError> = HashMap::new();
    for (batch, r) in infos {
        match r {
            Ok(i) => info.extend(i),
            Err(e) => {
                tracing::warn!(error = %e, titles = batch.len(), "no image info for a batch");
                unreachable.extend(batch.into_iter().map(|t| (t, e.clone())));
            }
        }
    }

    // (4) Decide, then download what is allowed.
    let state_path = opts.out.join(STATE_FILE);
    let state = load_state(&state_path);
    let journal = std::fs::OpenOptions::new().create(true).append(true).open(&state_path).map_err(io(&state_path))?;
    let mut jobs: Vec<(usize, String, ImageInfo)> = Vec::new();
    // Per wanted index: the rejection, if decided before downloading.
    let mut early: Vec<Option<(&'static str, String)>> = vec![None; wanted.len()];
    for (k, w) in wanted.iter().enumerate() {
        let alias = &entries[w.entry].alias;
        if let Some(e) = unreachable.get(&w.title) {
            early[k] = Some((e.reason(), e.to_string()));
            continue;
        }
        match info.get(&w.title) {
            None | Some(FileInfo::Missing) => {
                early[k] = Some(("missing_file", format!("{} is not on Commons", w.title)))
            }
            Some(FileInfo::Invalid(why)) => early[k] = Some(("missing_file", format!("{}: {why}", w.title))),
            Some(FileInfo::Found(i)) if !i.mime.starts_with("image/") => {
                early[k] = Some(("not_an_image", format!("{} is {}", w.title, i.mime)))
            }
            Some(FileInfo::Found(i)) if !opts.licenses.allows(&i.license) => {
                let lic = if i.license.is_empty() { "no licence" } else { i.license.as_str() };
                early[k] = Some(("license_not_allowed", format!("{}: {lic}", w.title)))
            }
            Some(FileInfo::Found(i)) => jobs.push((k, alias.clone(), i.clone())),
        }
    }
    let ctx = Arc::new(Ctx {
        http: http.clone(),
        out: opts.out.clone(),
        width: opts.width,
        state,
        journal: Mutex::new(journal),
        bar: bar(opts.progress, jobs.len() as u64, "photos"),
    });
    let outcomes: Vec<(usize, Outcome)> = futures_util::stream::iter(jobs.into_iter().map(|(k, alias, i)| {
        let ctx = ctx.clone();
        async move {
            let o = ctx.fetch(&alias, &i).await;
            ctx.bar.inc(1);
            (k, o)
        }
    }))
    .buffer_unordered(opts.concurrency.max(1))
    .collect()
    .await;
    ctx.bar.finish_and_clear();
    let mut by_wanted: HashMap<usize, Outcome> = outcomes.into_iter().collect();

    // Gather per entry, in the order wanted.
    let mut summary = Summary { people: entries.len(), files_wanted: wanted.len(), ..Summary::default() };
    let mut kept_photos: Vec<Vec<Photo>> = vec![Vec::new(); entries.len()];
    let mut first_problem: Vec<Option<(String, String)>> = vec![None; entries.len()];
    let mut kept_records: Vec<Record> = Vec::new();
    for (k, w) in wanted.iter().enumerate() {
        let problem = match (early[k].take(), by_wanted.remove(&k)) {
            (Some(p), _) => Some((p.0, p.1)),
            (None, Some(Outcome::Rejected { reason, detail })) => Some((reason, detail)),
            (None, Some(Outcome::Kept { photo, record, downloaded })) => {
                if downloaded {
                    summary.files_downloaded += 1;
                } else {
                    summary.files_reused += 1;
                }
                if !kept_photos[w.entry].iter().any(|p| p.file == photo.file) {
                    kept_photos[w.entry].push(*photo);
                }
                kept_records.push(record);
                None
            }
            (None, None) => Some(("http_error", "not fetched".to_string())),
        };
        // A transient failure keeps what an earlier run downloaded for this file.
        let problem = match problem {
            Some((reason, detail)) if reason == "http_error" || reason == "timeout" => {
                let alias = &entries[w.entry].alias;
                match ctx.state.get(&(alias.clone(), w.title.clone())) {
                    Some(r) if opts.out.join(alias).join(&r.file).is_file() => {
                        tracing::warn!(alias, title = %w.title, %detail, "kept the earlier download");
                        summary.files_reused += 1;
                        kept_photos[w.entry].push(r.photo());
                        kept_records.push(r.clone());
                        None
                    }
                    _ => Some((reason, detail)),
                }
            }
            other => other,
        };
        if let Some((reason, detail)) = problem {
            summary.files_rejected += 1;
            let alias = entries[w.entry].alias.clone();
            first_problem[w.entry].get_or_insert_with(|| (reason.to_string(), detail.clone()));
            rejected.push(FileProblem { alias, title: w.title.clone(), reason: reason.into(), detail });
        }
    }

    // Files of earlier runs no longer wanted: removed, so the gallery does not take them.
    let kept_keys: HashSet<(String, String)> =
        kept_records.iter().map(|r| (r.alias.clone(), r.title.clone())).collect();
    let kept_files: HashSet<(String, String)> =
        kept_records.iter().map(|r| (r.alias.clone(), r.file.clone())).collect();
    for (key, r) in &ctx.state {
        if !kept_keys.contains(key) && !kept_files.contains(&(r.alias.clone(), r.file.clone())) {
            let path = opts.out.join(&r.alias).join(&r.file);
            if std::fs::remove_file(&path).is_ok() {
                summary.files_removed += 1;
                tracing::info!(file = %path.display(), "removed a photo no longer wanted");
            }
        }
    }
    kept_records.sort_by(|a, b| (&a.alias, &a.title).cmp(&(&b.alias, &b.title)));
    let mut compact = String::new();
    for r in &kept_records {
        if let Ok(line) = serde_json::to_string(r) {
            compact.push_str(&line);
            compact.push('\n');
        }
    }
    write_atomic(&state_path, compact.as_bytes(), true).map_err(io(&state_path))?;

    let mut people_without_photo = Vec::new();
    for (i, e) in entries.iter_mut().enumerate() {
        let photos = std::mem::take(&mut kept_photos[i]);
        if photos.is_empty() {
            let (reason, detail) = match first_problem[i].take() {
                Some(p) => p,
                None if e.wikidata.is_none() && e.images.is_empty() => {
                    ("unresolved".into(), "no Wikidata id and no images (run `resolve` first)".into())
                }
                None => ("no_image".into(), "no P18 image on Wikidata and no category files".into()),
            };
            people_without_photo.push(PersonProblem {
                alias: e.alias.clone(),
                name: e.name.clone(),
                wikidata: e.wikidata.clone(),
                reason,
                detail,
            });
        }
        summary.files_kept += photos.len();
        e.photos = photos;
    }
    summary.people_without_photos = people_without_photo.len();
    summary.people_with_photos = summary.people - summary.people_without_photos;
    let stats = http.stats();
    summary.requests = stats.requests.load(Ordering::Relaxed);
    summary.retries = stats.retries.load(Ordering::Relaxed);
    summary.bytes_received = stats.bytes.load(Ordering::Relaxed);
    summary.seconds = started.elapsed().as_secs_f64();
    summary.photos_per_second =
        if summary.seconds > 0.0 { summary.files_downloaded as f64 / summary.seconds } else { 0.0 };

    write_json_atomic(&opts.catalog_out, &entries).map_err(io(&opts.catalog_out))?;
    let report = Report { summary, people_without_photo, rejected_files: rejected };
    if let Some(path) = &opts.report {
        write_json_atomic(path, &report).map_err(io(path))?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_tells_images_from_the_rest() {
        let mut png = Vec::new();
        image::RgbImage::new(4, 3)
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .expect("encodes");
        assert_eq!(probe_image(&png), Ok("png"));
        assert_eq!(probe_image(&png[..png.len() - 12]).map_err(|e| e.0), Err("broken_file"));
        assert_eq!(probe_image(b"<html>503</html>").map_err(|e| e.0), Err("not_an_image"));
        let mut bad_jpeg = vec![0xFF, 0xD8, 0xFF, 0xE0];
        bad_jpeg.extend_from_slice(&[0x13; 200]);
        assert_eq!(probe_image(&bad_jpeg).map_err(|e| e.0), Err("broken_file"));
    }
}
