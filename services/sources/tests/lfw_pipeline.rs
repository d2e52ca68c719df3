//! The gallery at scale through the whole pipeline (issue 9): every lfw-dev person (4,038 people,
//! 9,525 photos) and the named sets of ../shared/faces/named, served by the stand-in
//! (tests/standin) as Wikidata people with a made-up Q-id, their first photo as P18 and the others
//! in their Commons category (P373), all under free licences with credits; then the real binaries
//! as child processes: `lookalike-sources catalog` -> `lookalike-sources photos
//! --extra-from-category N` -> `matcher gallery build --cache`, timed, with the build's peak
//! memory; then ~1% more people (40 held back) and the incremental run: `photos` again (only the
//! new files), `gallery build` with the same cache (only the new photos analysed) and
//! `matcher gallery diff` (exactly the added people).
//!
//! Ignored by default (the first build analyses ~9,600 photos: many minutes on 2 shared cores):
//! `cargo test -p lookalike-sources --test lfw_pipeline -- --ignored --nocapture`.
//! Environment: `LOOKALIKE_MATCHER` (default /work/main/target/debug/matcher, i.e.
//! `../../target/debug/matcher` from this crate), `LOOKALIKE_MODELS` (default ../../assets/models),
//! `LFW_PIPELINE_JITTERS` (1; the product default is 10), `LFW_PIPELINE_WORKERS` (2),
//! `LFW_PIPELINE_CONCURRENCY` (8, downloads in flight), `LFW_PIPELINE_DIR` (keep the work there
//! instead of a temporary directory), `LFW_PIPELINE_PEOPLE` (all; fewer for a quick run).
//! Peak memory comes from `/usr/bin/time -v` when it exists, else from polling VmHWM in
//! /proc/<pid>/status of the child while it runs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod standin;

use serde_json::{json, Value};
use standin::{faces_dir, FileSpec, Person, StandIn, World};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ACTOR: &str = "Q33999";
const SINGER: &str = "Q177220";
const POLITICIAN: &str = "Q82955";
/// Every 100th lfw-dev person from the 50th, 40 of them, joins only in the incremental step.
const HELD_BACK: usize = 40;

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

fn matcher_bin() -> PathBuf {
    std::env::var("LOOKALIKE_MATCHER")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/debug/matcher"))
}

fn models_dir() -> PathBuf {
    std::env::var("LOOKALIKE_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../assets/models"))
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// One person of the face sets: display name, Commons category, and file titles (without
/// "File:") with their bytes; the first file is the P18 portrait.
struct Source {
    name: String,
    category: String,
    files: Vec<(String, Vec<u8>)>,
    occupation: &'static str,
    set: &'static str,
}

fn sorted_dir(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().flatten().map(|e| e.path()).collect();
    v.sort();
    v
}

/// "AJ_Cook" -> "AJ Cook"; "ben_afflek" -> "Ben Afflek".
fn display_name(dir_name: &str) -> String {
    dir_name
        .split('_')
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(f) => f.to_uppercase().chain(c).collect::<String>(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn load_sources(limit: Option<usize>) -> Vec<Source> {
    let mut out = Vec::new();
    let mut categories = BTreeSet::new();
    let mut sets: Vec<(&'static str, PathBuf, &'static str)> = vec![("lfw-dev", faces_dir().join("lfw-dev"), ACTOR)];
    for set in ["celeb5", "face_recognition", "dlib_johns"] {
        sets.push((set, faces_dir().join("named").join(set), SINGER));
    }
    for (set, dir, occupation) in sets {
        let mut people: Vec<PathBuf> = sorted_dir(&dir).into_iter().filter(|p| p.is_dir()).collect();
        if set == "lfw-dev" {
            if let Some(n) = limit {
                people.truncate(n);
            }
        }
        for p in people {
            let name = display_name(&p.file_name().unwrap().to_string_lossy());
            // Two sets may hold the same person (Elton John, Madonna): a category each, as two
            // Wikidata items would have.
            let category = if categories.insert(name.clone()) { name.clone() } else { format!("{name} ({set})") };
            let files = sorted_dir(&p)
                .into_iter()
                .filter(|f| f.is_file())
                .map(|f| {
                    let file = f.file_name().unwrap().to_string_lossy().to_string();
                    (format!("{category} {file}"), std::fs::read(&f).unwrap())
                })
                .collect::<Vec<_>>();
            if !files.is_empty() {
                out.push(Source { name, category, files, occupation, set });
            }
        }
    }
    out
}

fn world(sources: &[Source], include: impl Fn(usize) -> bool) -> World {
    let mut w = World { max_page: 5000, ..World::default() };
    for (i, s) in sources.iter().enumerate().filter(|(i, _)| include(*i)) {
        let mut p = Person::new(&qid(i), &s.name, s.occupation, 30 + (i % 300) as u32, &[&s.files[0].0]);
        p.category = Some(s.category.clone());
        p.n_movies = (i % 25) as u32;
        p.description = format!("person from {}", s.set);
        w.people.push(p);
        let titles: Vec<String> = s.files.iter().map(|(t, _)| format!("File:{t}")).collect();
        for ((t, bytes), title) in s.files.iter().zip(&titles) {
            let mut f = FileSpec::new(bytes.clone(), if i % 3 == 0 { "CC BY 4.0" } else { "CC BY-SA 4.0" });
            if t.to_lowercase().ends_with(".png") {
                f.mime = "image/png".into();
            }
            f.artist_html =
                format!("<a href=\"//commons.wikimedia.org/wiki/User:Photographer_{i}\">Photographer {i}</a>");
            w.files.insert(title.clone(), f);
        }
        w.categories.insert(format!("Category:{}", s.category), titles);
    }
    // Decoys the occupation filter must leave out: politicians with a portrait.
    for (k, s) in sources.iter().take(5).enumerate() {
        let title = s.files[0].0.clone();
        w.people.push(Person::new(
            &format!("Q{}", 3_000_000 + k),
            &format!("Decoy Politician {k}"),
            POLITICIAN,
            500,
            &[&title],
        ));
    }
    w
}

fn qid(i: usize) -> String {
    format!("Q{}", 1_000_000 + i)
}

fn held_back(n_lfw: usize) -> BTreeSet<usize> {
    (0..n_lfw).filter(|i| i % 100 == 50).take(HELD_BACK).collect()
}

struct Run {
    secs: f64,
    stdout: String,
    stderr: String,
    /// Peak resident memory (kB), user+system CPU seconds, when measured.
    max_rss_kb: Option<u64>,
    cpu_secs: Option<f64>,
}

/// Runs a child to the end; with `measure`, under /usr/bin/time -v (or polling VmHWM).
fn run(mut cmd: Command, measure: bool, scratch: &Path) -> Run {
    let time_bin = Path::new("/usr/bin/time");
    let time_out = scratch.join(format!("time-{}.txt", std::process::id()));
    let mut cmd = if measure && time_bin.exists() {
        let mut c = Command::new(time_bin);
        c.arg("-v").arg("-o").arg(&time_out).arg(cmd.get_program()).args(cmd.get_args());
        for (k, v) in cmd.get_envs() {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        c
    } else {
        std::mem::replace(&mut cmd, Command::new("true"))
    };
    let t = Instant::now();
    let stdout_file = scratch.join("child.stdout");
    let stderr_file = scratch.join("child.stderr");
    let mut child = cmd
        .stdout(std::fs::File::create(&stdout_file).unwrap())
        .stderr(std::fs::File::create(&stderr_file).unwrap())
        .stdin(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{:?}: {e}", cmd.get_program()));
    let mut polled_hwm: Option<u64> = None;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if let Ok(st) = std::fs::read_to_string(format!("/proc/{}/status", child.id())) {
            if let Some(kb) = st
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
            {
                polled_hwm = Some(polled_hwm.unwrap_or(0).max(kb));
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let secs = t.elapsed().as_secs_f64();
    let stdout = std::fs::read_to_string(&stdout_file).unwrap_or_default();
    let stderr = std::fs::read_to_string(&stderr_file).unwrap_or_default();
    assert!(status.success(), "{:?} failed: {status}\n{stdout}\n{stderr}", cmd.get_program());
    let (mut max_rss_kb, mut cpu_secs) = (None, None);
    if measure {
        max_rss_kb = polled_hwm;
        if let Ok(t) = std::fs::read_to_string(&time_out) {
            let field = |name: &str| t.lines().find_map(|l| l.trim().strip_prefix(name).map(|v| v.trim().to_string()));
            max_rss_kb = field("Maximum resident set size (kbytes):").and_then(|v| v.parse().ok()).or(max_rss_kb);
            let user: Option<f64> = field("User time (seconds):").and_then(|v| v.parse().ok());
            let sys: Option<f64> = field("System time (seconds):").and_then(|v| v.parse().ok());
            cpu_secs = user.zip(sys).map(|(u, s)| u + s);
            let _ = std::fs::remove_file(&time_out);
        }
    }
    Run { secs, stdout, stderr, max_rss_kb, cpu_secs }
}

fn sources_cmd(server: &StandIn, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lookalike-sources"));
    c.args(args)
        .args(["--rps", "100000", "--wdqs-url", &server.wdqs_url(), "--commons-api-url", &server.commons_api()])
        .env("RUST_LOG", "warn");
    c
}

fn catalog(server: &StandIn, out: &Path, scratch: &Path) -> (Run, Vec<Value>) {
    let mut c =
        sources_cmd(server, &["catalog", "--occupation", "actor", "--occupation", "singer", "--min-sitelinks", "20"]);
    c.arg("--out").arg(out);
    let r = run(c, false, scratch);
    let entries: Vec<Value> = serde_json::from_slice(&std::fs::read(out).unwrap()).unwrap();
    (r, entries)
}

fn photos(
    server: &StandIn,
    catalog: &Path,
    out: &Path,
    report: &Path,
    extra: usize,
    concurrency: usize,
    scratch: &Path,
) -> (Run, Value) {
    let mut c = sources_cmd(server, &["photos", "--no-progress"]);
    c.arg("--catalog").arg(catalog).arg("--out").arg(out).arg("--report").arg(report).args([
        "--extra-from-category",
        &extra.to_string(),
        "--concurrency",
        &concurrency.to_string(),
    ]);
    let r = run(c, true, scratch);
    let rep: Value = serde_json::from_slice(&std::fs::read(report).unwrap()).unwrap();
    (r, rep)
}

fn build(
    photos: &Path,
    out: &Path,
    cache: &Path,
    report: &Path,
    jitters: u32,
    workers: usize,
    scratch: &Path,
) -> (Run, Value) {
    let mut c = Command::new(matcher_bin());
    c.args(["gallery", "build", "--quiet", "--jitters", &jitters.to_string(), "--workers", &workers.to_string()])
        .arg("--models")
        .arg(models_dir())
        .arg("--photos")
        .arg(photos)
        .arg("--catalog")
        .arg(photos.join("catalog.json"))
        .arg("--out")
        .arg(out)
        .arg("--cache")
        .arg(cache)
        .arg("--report")
        .arg(report)
        .env("RUST_LOG", "warn");
    let r = run(c, true, scratch);
    let line = r
        .stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .unwrap_or_else(|| panic!("no summary: {}", r.stdout));
    let summary: Value = serde_json::from_str(line).unwrap();
    (r, summary)
}

fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            total += dir_size(&p);
        } else if let Ok(m) = p.metadata() {
            total += m.len();
        }
    }
    total
}

fn aliases_by_qid(entries: &[Value]) -> HashMap<String, String> {
    entries
        .iter()
        .map(|e| (e["wikidata"].as_str().unwrap().to_string(), e["alias"].as_str().unwrap().to_string()))
        .collect()
}

fn set_of(v: &Value) -> BTreeSet<String> {
    v.as_array().map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the lfw-dev gallery through the whole pipeline: many minutes on 2 shared cores"]
async fn lfw_dev_gallery_through_the_pipeline() {
    assert!(matcher_bin().exists(), "no matcher at {} (set LOOKALIKE_MATCHER)", matcher_bin().display());
    let jitters: u32 = env_or("LFW_PIPELINE_JITTERS", "1").parse().unwrap();
    let workers: usize = env_or("LFW_PIPELINE_WORKERS", "2").parse().unwrap();
    let concurrency: usize = env_or("LFW_PIPELINE_CONCURRENCY", "8").parse().unwrap();
    let limit: Option<usize> = std::env::var("LFW_PIPELINE_PEOPLE").ok().map(|v| v.parse().unwrap());
    let tmp = tempfile::tempdir().unwrap();
    let work = std::env::var("LFW_PIPELINE_DIR").map(PathBuf::from).unwrap_or_else(|_| tmp.path().to_path_buf());
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let (photos_dir, cache) = (work.join("photos"), work.join("cache"));

    let t = Instant::now();
    let sources = load_sources(limit);
    let n_lfw = sources.iter().filter(|s| s.set == "lfw-dev").count();
    let held = held_back(n_lfw);
    let total_files: usize = sources.iter().map(|s| s.files.len()).sum();
    let held_files: usize = held.iter().map(|&i| sources[i].files.len()).sum();
    // Enough to take every photo of everyone: the largest category, less its P18.
    let extra = sources.iter().map(|s| s.files.len()).max().unwrap() - 1;
    println!(
        "setup: {} people ({n_lfw} lfw-dev), {total_files} photos; held back {} people with {held_files} photos; {:.1} s",
        sources.len(),
        held.len(),
        t.elapsed().as_secs_f64()
    );

    // ---- 1. Everyone but the held-back people.
    let server = StandIn::start(world(&sources, |i| !held.contains(&i))).await;
    let first_people = sources.len() - held.len();
    let first_files = total_files - held_files;
    let w = work.clone();
    let (cat1, entries1, load_catalog) = {
        let server = &server;
        let load = loadavg();
        let (r, e) = tokio::task::block_in_place(|| catalog(server, &w.join("catalog-1.json"), &w));
        (r, e, load)
    };
    println!("catalog 1: {:.1} s, {} entries (load {load_catalog}): {}", cat1.secs, entries1.len(), cat1.stdout.trim());
    assert_eq!(entries1.len(), first_people, "everyone with an actor/singer occupation, no decoy politician");
    assert!(entries1.iter().all(|e| !e["name"].as_str().unwrap().starts_with("Decoy")));
    let by_qid1 = aliases_by_qid(&entries1);
    let aliases1: BTreeSet<&String> = by_qid1.values().collect();
    assert_eq!(aliases1.len(), entries1.len(), "aliases unique");

    let load_photos1 = loadavg();
    let (ph1, rep1) = tokio::task::block_in_place(|| {
        photos(&server, &w.join("catalog-1.json"), &photos_dir, &w.join("photos-report-1.json"), extra, concurrency, &w)
    });
    let s1 = &rep1["summary"];
    println!("photos 1 (load {load_photos1}): {:.1} s wall: {}", ph1.secs, ph1.stdout.trim());
    let fetched1: Vec<String> = server.requests("thumb").into_iter().map(|r| r.key).collect();
    let thumbs1 = fetched1.len();
    // The embedding cache is keyed by content: a photo whose bytes equal another's (dlib_johns
    // has one such pair) is analysed once when the two are not in flight at the same time.
    let bytes_by_title: HashMap<String, &[u8]> =
        sources.iter().flat_map(|s| s.files.iter().map(|(t, b)| (format!("File:{t}"), b.as_slice()))).collect();
    let distinct1: HashSet<&[u8]> = fetched1.iter().map(|t| bytes_by_title[t]).collect();
    let commons1 = server.requests("commons").len();
    // The category listing asks at most 500 members (the API's cmlimit for users; the tool does not
    // follow `cmcontinue`), so a person with more photos than that gets 500 of them.
    let capped: usize = sources
        .iter()
        .enumerate()
        .filter(|(i, _)| !held.contains(i))
        .map(|(_, s)| s.files.len().saturating_sub(500))
        .sum();
    let expected1 = first_files - capped;
    assert_eq!(s1["files_downloaded"].as_u64().unwrap() as usize, expected1, "{s1}");
    assert_eq!(s1["files_kept"].as_u64().unwrap() as usize, expected1, "{s1}");
    assert_eq!(s1["people_without_photos"], 0, "{rep1}");
    assert_eq!(s1["files_rejected"], 0, "{s1}");
    assert_eq!(thumbs1, expected1, "each photo downloaded once");
    drop(server);

    let load_build1 = loadavg();
    let (b1, sum1) = tokio::task::block_in_place(|| {
        build(&photos_dir, &w.join("g1.lkg"), &cache, &w.join("build-report-1.json"), jitters, workers, &w)
    });
    println!(
        "build 1 (load {load_build1} -> {}): {:.1} s wall, {:?} CPU s, peak {:?} kB: {}",
        loadavg(),
        b1.secs,
        b1.cpu_secs,
        b1.max_rss_kb,
        sum1
    );
    let without1 = set_of(&sum1["people_without_usable_photo"]);
    assert_eq!(sum1["photos"].as_u64().unwrap() as usize, expected1, "{sum1}");
    let (analysed1, hits1) =
        (sum1["analysed"].as_u64().unwrap() as usize, sum1["cache_hits"].as_u64().unwrap() as usize);
    assert_eq!(analysed1 + hits1, expected1, "{sum1}");
    assert!(
        (distinct1.len()..=expected1).contains(&analysed1),
        "an empty cache: every distinct photo analysed ({} distinct): {sum1}",
        distinct1.len()
    );
    assert_eq!(sum1["catalog_entries_without_photos"], json!([]), "{sum1}");
    assert_eq!(sum1["photos_without_catalog_entry"], 0, "{sum1}");
    assert_eq!(
        sum1["identities"].as_u64().unwrap() as usize + without1.len(),
        first_people,
        "every person with a usable photo is in the gallery"
    );
    let info1: Value = {
        let mut c = Command::new(matcher_bin());
        c.args(["gallery", "info"]).arg(w.join("g1.lkg")).arg("--models").arg(models_dir());
        let r = tokio::task::block_in_place(|| run(c, false, &w));
        serde_json::from_str(&r.stdout).unwrap_or_else(|_| json!({"raw": r.stdout}))
    };
    println!("gallery info 1: {info1}");

    // ---- 2. ~1% more people: the held-back 40 join; photos fetch only theirs, the build
    // analyses only theirs.
    let server = StandIn::start(world(&sources, |_| true)).await;
    let (cat2, entries2) = tokio::task::block_in_place(|| catalog(&server, &w.join("catalog-2.json"), &w));
    println!("catalog 2: {:.1} s, {} entries", cat2.secs, entries2.len());
    assert_eq!(entries2.len(), sources.len());
    let by_qid2 = aliases_by_qid(&entries2);
    for (q, a) in &by_qid1 {
        assert_eq!(by_qid2.get(q), Some(a), "aliases stable between runs");
    }
    let added_aliases: BTreeSet<String> = held.iter().map(|&i| by_qid2[&qid(i)].clone()).collect();
    let held_titles: BTreeSet<String> =
        held.iter().flat_map(|&i| sources[i].files.iter().map(|(t, _)| format!("File:{t}"))).collect();

    let load_photos2 = loadavg();
    let (ph2, rep2) = tokio::task::block_in_place(|| {
        photos(&server, &w.join("catalog-2.json"), &photos_dir, &w.join("photos-report-2.json"), extra, concurrency, &w)
    });
    let s2 = &rep2["summary"];
    println!("photos 2, incremental (load {load_photos2}): {:.1} s wall: {}", ph2.secs, ph2.stdout.trim());
    let fetched2: BTreeSet<String> = server.requests("thumb").into_iter().map(|r| r.key).collect();
    let commons2 = server.requests("commons").len();
    assert_eq!(fetched2, held_titles, "the second fetch downloads only the new people's files");
    assert_eq!(s2["files_downloaded"].as_u64().unwrap() as usize, held_files, "{s2}");
    assert_eq!(s2["files_reused"].as_u64().unwrap() as usize, expected1, "{s2}");
    assert_eq!(s2["files_removed"], 0, "{s2}");
    drop(server);

    let load_build2 = loadavg();
    let (b2, sum2) = tokio::task::block_in_place(|| {
        build(&photos_dir, &w.join("g2.lkg"), &cache, &w.join("build-report-2.json"), jitters, workers, &w)
    });
    println!(
        "build 2, incremental (load {load_build2} -> {}): {:.1} s wall, {:?} CPU s, peak {:?} kB: {}",
        loadavg(),
        b2.secs,
        b2.cpu_secs,
        b2.max_rss_kb,
        sum2
    );
    let without2 = set_of(&sum2["people_without_usable_photo"]);
    assert_eq!(sum2["photos"].as_u64().unwrap() as usize, expected1 + held_files);
    let new_distinct: HashSet<&[u8]> =
        held_titles.iter().map(|t| bytes_by_title[t]).filter(|b| !distinct1.contains(b)).collect();
    let (analysed2, hits2) =
        (sum2["analysed"].as_u64().unwrap() as usize, sum2["cache_hits"].as_u64().unwrap() as usize);
    assert_eq!(analysed2 + hits2, expected1 + held_files, "{sum2}");
    assert!(
        (new_distinct.len()..=held_files).contains(&analysed2),
        "only the new photos analysed ({} new, {held_files} files): {sum2}",
        new_distinct.len()
    );
    assert_eq!(sum2["identities"].as_u64().unwrap() as usize + without2.len(), sources.len());

    let diff_run = {
        let mut c = Command::new(matcher_bin());
        c.args(["gallery", "diff"]).arg(w.join("g1.lkg")).arg(w.join("g2.lkg")).arg("--models").arg(models_dir());
        tokio::task::block_in_place(|| run(c, false, &w))
    };
    let diff: Value = serde_json::from_str(
        diff_run.stdout.lines().rev().find(|l| l.trim_start().starts_with('{')).unwrap_or(&diff_run.stdout),
    )
    .or_else(|_| serde_json::from_str(&diff_run.stdout))
    .unwrap_or_else(|e| panic!("diff output: {e}: {}", diff_run.stdout));
    let listed: BTreeSet<String> =
        diff["added"].as_array().unwrap().iter().map(|p| p["alias"].as_str().unwrap().to_string()).collect();
    let names_by_alias: HashMap<String, String> = entries2
        .iter()
        .map(|e| (e["alias"].as_str().unwrap().to_string(), e["name"].as_str().unwrap().to_string()))
        .collect();
    let expected_added: BTreeSet<String> =
        added_aliases.iter().filter(|a| !without2.contains(&names_by_alias[*a])).cloned().collect();
    assert_eq!(listed, expected_added, "diff lists exactly the added people (those with a usable photo)");
    assert_eq!(diff["removed"], json!([]), "{diff}");
    assert_eq!(diff["changed"], json!([]), "no one else changed: {diff}");

    let rejections1: BTreeMap<String, u64> =
        serde_json::from_value(sum1["rejected_by_reason"].clone()).unwrap_or_default();
    let summary = json!({
        "summary": "lfw_pipeline",
        "people": sources.len(), "lfw_people": n_lfw, "photos_available": total_files,
        "matcher": matcher_bin().display().to_string(), "jitters": jitters, "workers": workers,
        "catalog": {"people": entries1.len(), "seconds": cat1.secs, "load": load_catalog},
        "photos": {
            "concurrency": concurrency, "downloaded": s1["files_downloaded"], "not_listed_over_500_per_category": capped,
            "wall_seconds": ph1.secs, "photos_per_second": expected1 as f64 / ph1.secs,
            "tool_seconds": s1["seconds"], "tool_photos_per_second": s1["photos_per_second"],
            "requests": s1["requests"], "thumb_requests": thumbs1, "commons_api_requests": commons1,
            "mb": s1["bytes_received"].as_f64().unwrap_or(0.0) / 1e6, "on_disk_mb": dir_size(&photos_dir) as f64 / 1e6,
            "cpu_seconds": ph1.cpu_secs, "peak_rss_mb": ph1.max_rss_kb.map(|k| k as f64 / 1024.0), "load": load_photos1,
        },
        "build": {
            "wall_seconds": b1.secs, "cpu_seconds": b1.cpu_secs, "peak_rss_mb": b1.max_rss_kb.map(|k| k as f64 / 1024.0),
            "photos": sum1["photos"], "accepted": sum1["accepted"], "identities": sum1["identities"],
            "people_without_usable_photo": without1.len(), "rejected": sum1["rejected"], "rejected_by_reason": rejections1,
            "picks": sum1["picks"], "analysed": sum1["analysed"], "builder_seconds": sum1["seconds"],
            "builder_photos_per_second": sum1["photos_per_second"], "index": sum1["index"],
            "gallery_mb": std::fs::metadata(w.join("g1.lkg")).map(|m| m.len() as f64 / 1e6).unwrap_or(0.0),
            "cache_mb": dir_size(&cache) as f64 / 1e6, "load_before": load_build1,
        },
        "incremental": {
            "people_added": held.len(), "photos_added": held_files,
            "photos_wall_seconds": ph2.secs, "photos_downloaded": s2["files_downloaded"], "photos_reused": s2["files_reused"],
            "commons_api_requests": commons2, "photos_load": load_photos2,
            "build_wall_seconds": b2.secs, "build_cpu_seconds": b2.cpu_secs,
            "build_peak_rss_mb": b2.max_rss_kb.map(|k| k as f64 / 1024.0),
            "analysed": sum2["analysed"], "cache_hits": sum2["cache_hits"], "identities": sum2["identities"],
            "builder_seconds": sum2["seconds"], "diff_added": listed.len(), "build_load": load_build2,
            "build_wall_vs_full": b2.secs / b1.secs,
        },
    });
    println!("{summary}");
    std::fs::write(work.join("summary.json"), serde_json::to_vec_pretty(&summary).unwrap()).unwrap();
    for (what, r) in [("catalog 1", &cat1), ("build 1", &b1), ("build 2", &b2)] {
        if !r.stderr.trim().is_empty() {
            println!("{what} stderr (last 5 lines): {:?}", r.stderr.lines().rev().take(5).collect::<Vec<_>>());
        }
    }
}
