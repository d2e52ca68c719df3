//! The catalog and photos stages at real scale (20,000 identities) against the stand-in, timed.
//! Ignored by default (it takes a minute or two); run it with
//! `cargo test --release -p lookalike-sources --test scale -- --ignored --nocapture`
//! (`SOURCES_BENCH_PEOPLE`, default 20000; `SOURCES_BENCH_CONCURRENCY`, default "8,32").
//! Photos repeat under different names: 2,000 real LFW faces from ../shared/faces/lfw-dev.
//! Removing the 40,000 files afterwards takes minutes on a disk mounted with `discard`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod standin;

use lookalike_sources::http::{user_agent, Http, HttpConfig};
use lookalike_sources::make_catalog::{build_catalog, CatalogOptions};
use lookalike_sources::wdqs::Sparql;
use standin::{faces_dir, FileSpec, Person, StandIn, World};
use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

fn lfw_photos(max: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut people: Vec<_> =
        std::fs::read_dir(faces_dir().join("lfw-dev")).unwrap().flatten().map(|e| e.path()).collect();
    people.sort();
    for dir in people.into_iter().filter(|p| p.is_dir()) {
        let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.path()).collect();
        files.sort();
        for f in files {
            out.push(std::fs::read(f).unwrap());
            if out.len() == max {
                return out;
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: 20,000 identities, a minute or more"]
async fn twenty_thousand_identities() {
    let started = Instant::now();
    let n: usize = env_or("SOURCES_BENCH_PEOPLE", "20000").parse().unwrap();
    let concurrencies: Vec<usize> =
        env_or("SOURCES_BENCH_CONCURRENCY", "8,32").split(',').map(|c| c.trim().parse().unwrap()).collect();
    let photos: Vec<FileSpec> = lfw_photos(2000).into_iter().map(|b| FileSpec::new(b, "CC BY-SA 4.0")).collect();
    let mut files = HashMap::new();
    let mut people = Vec::new();
    for i in 0..n {
        let title = format!("Synthetic person {i:05} portrait.jpg");
        files.insert(format!("File:{title}"), photos[i % photos.len()].clone());
        let occupation = if i % 4 == 0 { "Q177220" } else { "Q33999" };
        let mut p = Person::new(
            &format!("Q{}", 10_000 + i),
            &format!("Synthetic Person {i:05}"),
            occupation,
            20 + (i % 977) as u32,
            &[&title],
        );
        p.labels.insert("ru".into(), format!("Персона {i:05}"));
        people.push(p);
    }
    println!("setup: {:.1} s", started.elapsed().as_secs_f64());
    let server = StandIn::start(World { people, files, max_page: 5000, ..World::default() }).await;
    let dir = tempfile::tempdir().unwrap();

    // Catalog stage: ids in pages of 5,000, details in batches of 200.
    let mut cfg = HttpConfig::new(user_agent(Some("bench@example.org")));
    cfg.rps = 100_000;
    cfg.timeout = Duration::from_secs(60);
    let sparql = Sparql::new(Http::new(cfg).unwrap(), &server.wdqs_url());
    let opts = CatalogOptions {
        occupations: vec![("actor".into(), "Q33999".into()), ("singer".into(), "Q177220".into())],
        min_sitelinks: 1,
        limit: None,
        languages: vec!["en".into(), "ru".into()],
        page_size: 5000,
        batch_size: 200,
        movies: true,
    };
    let t = Instant::now();
    let (entries, stats) = build_catalog(&sparql, &opts).await.unwrap();
    let catalog_secs = t.elapsed().as_secs_f64();
    assert_eq!(entries.len(), n);
    println!(
        "catalog: {n} people, {} id pages, {} detail batches in {catalog_secs:.2} s ({:.0} people/s)",
        stats.id_pages,
        stats.detail_batches,
        n as f64 / catalog_secs
    );
    let catalog = dir.path().join("catalog.json");
    lookalike_sources::catalog::write_json_atomic(&catalog, &entries).unwrap();

    // Photos stage, by the real binary, once per concurrency; then a resumed run (nothing to fetch).
    for c in concurrencies {
        let out = dir.path().join(format!("photos-{c}"));
        let run = || {
            let t = Instant::now();
            let o = Command::new(env!("CARGO_BIN_EXE_lookalike-sources"))
                .args(["photos", "--no-progress", "--rps", "100000", "--concurrency", &c.to_string()])
                .arg("--catalog")
                .arg(&catalog)
                .arg("--out")
                .arg(&out)
                .args(["--wdqs-url", &server.wdqs_url(), "--commons-api-url", &server.commons_api()])
                .env("RUST_LOG", "warn")
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&o.stdout).to_string();
            assert!(o.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&o.stderr));
            (t.elapsed().as_secs_f64(), stdout)
        };
        let (secs, stdout) = run();
        println!("photos --concurrency {c}: {:.1} s wall, {:.0} photos/s\n  {}", secs, n as f64 / secs, stdout.trim());
        let (secs, stdout) = run();
        println!("photos --concurrency {c}, resumed (all in place): {secs:.1} s wall\n  {}", stdout.trim());
    }
    let t = Instant::now();
    drop(server);
    println!("stand-in stopped: {:.1} s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    dir.close().unwrap();
    println!("files removed: {:.1} s", t.elapsed().as_secs_f64());
}
