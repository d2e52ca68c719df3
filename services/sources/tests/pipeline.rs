//! The whole pipeline against the stand-in (tests/standin): paging of the query service,
//! `resolve`, and `photos` with every fault the hosts can throw, through the library and through
//! the real binary (the resume test kills it halfway).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod standin;

use lookalike_sources::catalog::{self, Entry};
use lookalike_sources::commons::{Commons, Licenses};
use lookalike_sources::http::{user_agent, Http, HttpConfig};
use lookalike_sources::make_catalog::{build_catalog, CatalogOptions};
use lookalike_sources::photos::{self, PhotosOptions};
use lookalike_sources::wdqs::Sparql;
use standin::{face, Fault, FileSpec, Person, StandIn, World};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const CONTACT: &str = "sources-tests@example.org";

fn http(rps: u32, timeout: Duration, retries: usize) -> Http {
    let mut cfg = HttpConfig::new(user_agent(Some(CONTACT)));
    cfg.rps = rps;
    cfg.timeout = timeout;
    cfg.retries = retries;
    cfg.backoff_base = Duration::from_millis(20);
    cfg.backoff_max = Duration::from_millis(200);
    Http::new(cfg).unwrap()
}

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_lookalike-sources")
}

fn photos_opts(out: &Path, concurrency: usize, extra: usize) -> PhotosOptions {
    PhotosOptions {
        out: out.to_path_buf(),
        catalog_out: out.join("catalog.json"),
        report: Some(out.join("report.json")),
        width: 1024,
        extra_from_category: extra,
        concurrency,
        licenses: Licenses::default(),
        languages: vec!["en".into()],
        progress: false,
    }
}

fn entry(name: &str, qid: Option<&str>) -> Entry {
    Entry {
        name: name.into(),
        alias: lookalike_sources::alias::alias_for(name),
        role: "actor".into(),
        wikidata: qid.map(str::to_string),
        ..Entry::default()
    }
}

/// 250 qualifying people (actors and singers, some sharing a name), plus some that must not be
/// listed: too few sitelinks, another occupation, not human.
fn crowd() -> World {
    let mut people = Vec::new();
    for i in 0..250u32 {
        let occupation = if i % 3 == 0 { "Q177220" } else { "Q33999" };
        let name = if i % 50 == 7 { "John Smith".to_string() } else { format!("Person {i:03}") };
        let mut p = Person::new(&format!("Q{}", 1000 + i), &name, occupation, 10 + (i * 7919) % 500, &[]);
        if i % 2 == 0 {
            p.images = vec![format!("Person {i:03} portrait.jpg")];
            p.category = Some(format!("Person {i:03}"));
        }
        if i % 5 == 0 {
            p.occupations.push("Q33999".into());
            p.labels.insert("ru".into(), format!("Персона {i:03}"));
        }
        p.n_movies = i % 40;
        people.push(p);
    }
    people.push(Person::new("Q9001", "Obscure Actor", "Q33999", 2, &[]));
    people.push(Person::new("Q9002", "Some Politician", "Q82955", 300, &[]));
    let mut ship = Person::new("Q9003", "HMS Actor", "Q33999", 400, &[]);
    ship.human = false;
    people.push(ship);
    World { people, max_page: 100, ..World::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_pages_through_the_query_service() {
    let world = crowd();
    let server = StandIn::start(world.clone()).await;
    let sparql = Sparql::new(http(1000, Duration::from_secs(5), 1), &server.wdqs_url());
    let mut opts = CatalogOptions {
        occupations: vec![("actor".into(), "Q33999".into()), ("singer".into(), "Q177220".into())],
        min_sitelinks: 5,
        limit: None,
        languages: vec!["en".into(), "ru".into()],
        page_size: 100,
        batch_size: 40,
        movies: true,
    };
    let (entries, stats) = build_catalog(&sparql, &opts).await.unwrap();
    assert_eq!(entries.len(), 250, "every qualifying person once, no one else");
    assert_eq!(stats.id_pages, 3);
    let offsets: Vec<(String, String)> = server
        .requests("sparql")
        .iter()
        .filter(|r| r.key == "ids")
        .map(|r| {
            let q = &r.params["query"];
            let cap = |re: &str| regex::Regex::new(re).unwrap().captures(q).unwrap()[1].to_string();
            (cap(r"LIMIT (\d+)"), cap(r"OFFSET (\d+)"))
        })
        .collect();
    let pages = |v: &[(&str, &str)]| v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect::<Vec<_>>();
    assert_eq!(offsets, pages(&[("100", "0"), ("100", "100"), ("100", "200")]));
    assert_eq!(stats.detail_batches, 7, "250 ids in batches of 40");
    // Most linked first; aliases unique; the facts folded in.
    assert!(entries.windows(2).all(|w| w[0].sitelinks >= w[1].sitelinks));
    let mut aliases: Vec<&str> = entries.iter().map(|e| e.alias.as_str()).collect();
    aliases.sort();
    aliases.dedup();
    assert_eq!(aliases.len(), 250);
    let smiths: Vec<&Entry> = entries.iter().filter(|e| e.name == "John Smith").collect();
    assert_eq!(smiths.len(), 5);
    assert_eq!(smiths.iter().filter(|e| e.alias == "john-smith").count(), 1);
    assert!(smiths.iter().any(|e| e.alias.starts_with("john-smith-q")), "{smiths:?}");
    let p10 = entries.iter().find(|e| e.wikidata.as_deref() == Some("Q1010")).unwrap();
    assert_eq!(p10.name, "Person 010");
    assert_eq!(p10.alias, "person-010");
    assert_eq!(p10.names.get("ru").map(String::as_str), Some("Персона 010"));
    assert_eq!(p10.articles.get("en").map(String::as_str), Some("https://en.wikipedia.org/wiki/Person_010"));
    assert_eq!(p10.images, vec!["Person 010 portrait.jpg".to_string()]);
    assert_eq!(p10.commons_category.as_deref(), Some("Person 010"));
    assert_eq!(p10.n_movies, 10);
    assert_eq!(p10.role, "actor", "an actor and singer takes the first occupation asked for");
    let p3 = entries.iter().find(|e| e.wikidata.as_deref() == Some("Q1003")).unwrap();
    assert_eq!(p3.role, "singer");

    // --limit stops early, on a page boundary or not.
    opts.limit = Some(130);
    let (limited, stats) = build_catalog(&sparql, &opts).await.unwrap();
    assert_eq!(limited.len(), 130);
    assert_eq!(stats.id_pages, 2);
    assert_eq!(limited[..], entries[..130]);

    // One page for everything is what the real service times out on: paging is needed.
    opts.limit = None;
    opts.page_size = 1000;
    let err = build_catalog(&sparql, &opts).await.unwrap_err();
    assert!(err.to_string().contains("HTTP 500"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolve_reports_ambiguous_and_unknown_names_and_guesses_none() {
    let mut people = vec![
        Person::new("Q2263", "Tom Hanks", "Q33999", 150, &["Tom Hanks 2016.jpg"]),
        Person::new("Q501", "John Smith", "Q33999", 20, &[]),
        Person::new("Q502", "John Smith", "Q33999", 25, &[]),
        Person::new("Q41421", "Michael Jordan", "Q3665646", 180, &["Jordan.jpg"]),
        Person::new("Q3308285", "Michael Jordan", "Q1622272", 30, &[]),
        // A ship, not a person, with a person's name.
        Person { human: false, ..Person::new("Q777", "Rose Leslie", "Q33999", 5, &[]) },
        // Found by its alias.
        Person { aliases: vec!["The Rock".into()], ..Person::new("Q10738", "Dwayne Johnson", "Q33999", 120, &[]) },
    ];
    // A name too common to pick from: more than the 50 results a search returns.
    for i in 0..60 {
        people.push(Person::new(&format!("Q{}", 70_000 + i), "Maria Garcia", "Q33999", 10 + i, &[]));
    }
    people[1].description = "English actor".into();
    people[2].description = "American actor".into();
    let server = StandIn::start(World { people, ..World::default() }).await;
    let dir = tempfile::tempdir().unwrap();
    let mut input = vec![
        entry("Tom Hanks", None),
        entry("John Smith", None),
        entry("Nobody Atall", None),
        entry("Rose Leslie", None),
        entry("The Rock", None),
        entry("Kit Harington", Some("Q3567")),
        entry("Maria Garcia", None),
    ];
    let mut jordan = entry("Michael Jordan", None);
    jordan.role = "basketball-player".into();
    input.push(jordan);
    input[0].n_movies = 60;
    catalog::write_json_atomic(&dir.path().join("in.json"), &input).unwrap();
    let out = Command::new(bin())
        .args(["resolve", "--catalog"])
        .arg(dir.path().join("in.json"))
        .arg("--out")
        .arg(dir.path().join("out.json"))
        .args(["--wdqs-url", &server.wdqs_url(), "--wikidata-api-url", &server.wikidata_api()])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("8 entries: 1 already had ids, 3 resolved, 2 ambiguous, 2 unknown"), "{stdout}");
    let resolved = catalog::load(&dir.path().join("out.json")).unwrap();
    let id = |alias: &str| resolved.iter().find(|e| e.alias == alias).unwrap().wikidata.clone();
    assert_eq!(id("tom-hanks").as_deref(), Some("Q2263"));
    assert_eq!(id("the-rock").as_deref(), Some("Q10738"));
    assert_eq!(id("michael-jordan").as_deref(), Some("Q41421"), "the one with the entry's role");
    assert_eq!(id("john-smith"), None, "two humans: not guessed");
    assert_eq!(id("nobody-atall"), None);
    assert_eq!(id("rose-leslie"), None, "a non-human is never taken");
    assert_eq!(id("kit-harington").as_deref(), Some("Q3567"), "ids already there are kept");
    let hanks = resolved.iter().find(|e| e.alias == "tom-hanks").unwrap();
    assert_eq!(hanks.images, vec!["Tom Hanks 2016.jpg".to_string()]);
    assert_eq!(hanks.n_movies, 60, "the input's fields are kept");
    assert_eq!(hanks.sitelinks, 150);
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("out.report.json")).unwrap()).unwrap();
    let ambiguous = &report["ambiguous"][0];
    assert_eq!(ambiguous["name"], "John Smith");
    let ids: Vec<&str> =
        ambiguous["candidates"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["Q502", "Q501"], "both candidates, most linked first");
    assert_eq!(ambiguous["candidates"][0]["description"], "American actor");
    assert_eq!(report["ambiguous"][1]["name"], "Maria Garcia");
    assert_eq!(report["ambiguous"][1]["detail"], "more than 50 items carry this name");
    assert_eq!(id("maria-garcia"), None);
    let unknown: Vec<&str> =
        report["unknown"].as_array().unwrap().iter().map(|u| u["name"].as_str().unwrap()).collect();
    assert_eq!(unknown, ["Nobody Atall", "Rose Leslie"]);
    assert_eq!(report["resolved"][2]["how"], "role");
}

fn jpeg(person: &str, n: u32) -> Vec<u8> {
    face(&format!("named/face_recognition/{person}/{n}.jpg"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn photos_survive_every_fault_and_credit_what_they_keep() {
    let mut files = HashMap::new();
    let mut add = |title: &str, bytes: Vec<u8>, license: &str| {
        files.insert(format!("File:{title}"), FileSpec::new(bytes, license));
    };
    add("Barack Obama 2012.jpg", jpeg("Barack_Obama", 1), "CC BY 3.0");
    add("Joe Biden 2013.jpg", jpeg("Joe_Biden", 1), "Public domain");
    add("Kit Harington 2014.jpg", jpeg("Kit_Harington", 1), "CC BY-SA 2.0");
    add("Kit at Comic-Con.jpg", jpeg("Kit_Harington", 2), "CC BY-SA 4.0");
    add("Kit at Cannes.jpg", jpeg("Kit_Harington", 3), "CC BY-SA 4.0");
    add("Rose Leslie.jpg", jpeg("Joe_Biden", 2), "CC BY-NC 2.0");
    let full = jpeg("Barack_Obama", 2);
    add("Alex Lacamoire.jpg", full[..full.len() / 2].to_vec(), "CC0");
    add("Not a photo.jpg", b"<!DOCTYPE html><html><body>Wikimedia Error</body></html>".to_vec(), "CC0");
    add("Slow.jpg", jpeg("Barack_Obama", 3), "CC0");
    let mut pdf = FileSpec::new(b"%PDF-1.4".to_vec(), "CC0");
    pdf.mime = "application/pdf".into();
    files.insert("File:Document.pdf".into(), pdf);
    let mut people = vec![
        Person::new("Q76", "Barack Obama", "Q82955", 300, &["Barack Obama 2012.jpg"]),
        Person::new("Q6279", "Joe Biden", "Q82955", 250, &["Joe Biden 2013.jpg"]),
        Person::new("Q3567", "Kit Harington", "Q33999", 90, &["Kit Harington 2014.jpg"]),
        Person::new("Q4", "Rose Leslie", "Q33999", 80, &["Rose Leslie.jpg"]),
        Person::new("Q5", "Lin-Manuel Miranda", "Q33999", 70, &[]),
        Person::new("Q6", "Alex Lacamoire", "Q639669", 20, &["Alex Lacamoire.jpg"]),
        Person::new("Q7", "Not Photographed", "Q33999", 20, &["Not a photo.jpg"]),
        Person::new("Q8", "Gone Missing", "Q33999", 20, &["Deleted long ago.jpg"]),
        Person::new("Q9", "Always Slow", "Q33999", 20, &["Slow.jpg"]),
        Person::new("Q10", "Paper Person", "Q33999", 20, &["Document.pdf"]),
    ];
    people[2].category = Some("Kit Harington".into());
    let categories = HashMap::from([(
        "Category:Kit Harington".to_string(),
        vec![
            "File:Kit Harington 2014.jpg".to_string(),
            "File:Kit at Comic-Con.jpg".into(),
            "File:Kit at Cannes.jpg".into(),
        ],
    )]);
    let server = StandIn::start(World { people, files, categories, ..World::default() }).await;
    // The catalog: Obama with his P18 already known, the others by id only (looked up).
    let mut input: Vec<Entry> = vec![
        entry("Barack Obama", Some("Q76")),
        entry("Joe Biden", Some("Q6279")),
        entry("Kit Harington", Some("Q3567")),
        entry("Rose Leslie", Some("Q4")),
        entry("Lin-Manuel Miranda", Some("Q5")),
        entry("Alex Lacamoire", Some("Q6")),
        entry("Not Photographed", Some("Q7")),
        entry("Gone Missing", Some("Q8")),
        entry("Always Slow", Some("Q9")),
        entry("Paper Person", Some("Q10")),
        entry("No Id Yet", None),
    ];
    input[0].images = vec!["Barack Obama 2012.jpg".into()];
    input[0].extra.insert("custom".into(), serde_json::json!("kept"));

    server.fault("sparql", Fault::Status(503, None)); // 5xx then success, on the query service
    server.fault("commons", Fault::Maxlag(1)); // maxlag on the API: wait (1 s) and retry
    server.fault("thumb:File:Barack Obama 2012.jpg", Fault::Status(429, Some(1)));
    server.fault("thumb:File:Joe Biden 2013.jpg", Fault::Status(502, None));
    server.fault("thumb:File:Joe Biden 2013.jpg", Fault::Status(503, None));
    server.fault("thumb:File:Kit Harington 2014.jpg", Fault::Delay(Duration::from_millis(1300)));
    for _ in 0..3 {
        server.fault("thumb:File:Slow.jpg", Fault::Delay(Duration::from_millis(1300)));
    }

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("photos");
    let client = http(1000, Duration::from_millis(1000), 2);
    let sparql = Sparql::new(client.clone(), &server.wdqs_url());
    let commons = Commons::new(client.clone(), &server.commons_api());
    let started = Instant::now();
    let report = photos::run(&client, &sparql, &commons, input, &photos_opts(&out, 4, 1)).await.unwrap();
    eprintln!("faults run: {:.1} s, {:?}", started.elapsed().as_secs_f64(), report.summary);

    // Who got what.
    let reasons: BTreeMap<String, String> =
        report.people_without_photo.iter().map(|p| (p.alias.clone(), p.reason.clone())).collect();
    let expected: BTreeMap<String, String> = [
        ("rose-leslie", "license_not_allowed"),
        ("lin-manuel-miranda", "no_image"),
        ("alex-lacamoire", "broken_file"),
        ("not-photographed", "not_an_image"),
        ("gone-missing", "missing_file"),
        ("always-slow", "timeout"),
        ("paper-person", "not_an_image"),
        ("no-id-yet", "unresolved"),
    ]
    .into_iter()
    .map(|(a, r)| (a.to_string(), r.to_string()))
    .collect();
    assert_eq!(reasons, expected);
    let s = &report.summary;
    assert_eq!((s.people, s.people_with_photos, s.files_kept, s.files_downloaded), (11, 3, 4, 4));

    // The thumbnails, as the stand-in saw them.
    let counts = server.thumb_counts();
    assert_eq!(counts.get("File:Barack Obama 2012.jpg"), Some(&2), "429, then success");
    assert_eq!(counts.get("File:Joe Biden 2013.jpg"), Some(&3), "502, 503, then success");
    assert_eq!(counts.get("File:Kit Harington 2014.jpg"), Some(&2), "timed out, then success");
    assert_eq!(counts.get("File:Slow.jpg"), Some(&3), "a try and two retries, all timed out");
    assert_eq!(counts.get("File:Rose Leslie.jpg"), None, "a refused licence is not downloaded");
    assert_eq!(counts.get("File:Kit at Cannes.jpg"), None, "one extra from the category, not two");
    assert_eq!(counts.get("File:Document.pdf"), None);
    // Retry-After honoured: the retry came at least 1 s after the 429.
    let obama: Vec<_> =
        server.requests("thumb").into_iter().filter(|r| r.key == "File:Barack Obama 2012.jpg").collect();
    assert_eq!(obama[0].status, 429);
    let waited = obama[1].at - obama[0].at;
    assert!(waited >= Duration::from_millis(990), "retried {waited:?} after a 429 with Retry-After: 1");
    // maxlag: the API call was repeated, at least the lag later.
    let api: Vec<_> = server.requests("commons");
    assert_eq!(api[0].status, 200);
    assert!(api[1].at - api[0].at >= Duration::from_millis(990), "{:?}", api[1].at - api[0].at);
    assert!(api.iter().all(|r| r.params.get("maxlag").map(String::as_str) == Some("5")));
    let sparql_log = server.requests("sparql");
    assert_eq!(sparql_log.iter().map(|r| r.status).collect::<Vec<_>>(), [503, 200], "5xx, then success");
    // Every request says who sends it.
    for r in server.log() {
        assert!(r.user_agent.contains(CONTACT) && r.user_agent.starts_with("lookalike-sources/"), "{}", r.user_agent);
    }

    // The folder and the catalog, as the gallery builder reads them.
    let written = catalog::load(&out.join("catalog.json")).unwrap();
    let obama = &written[0];
    assert_eq!(obama.extra.get("custom"), Some(&serde_json::json!("kept")));
    assert_eq!(obama.photos.len(), 1);
    let p = &obama.photos[0];
    assert_eq!(p.file, "Barack_Obama_2012.jpg");
    assert_eq!(p.author, "Jane Doe");
    assert_eq!(p.license, "CC BY 3.0");
    assert_eq!(p.license_url, "https://creativecommons.org/licenses/by/3.0");
    assert_eq!(p.source_url, "https://commons.wikimedia.org/wiki/File:Barack_Obama_2012.jpg");
    assert_eq!(std::fs::read(out.join("barack-obama/Barack_Obama_2012.jpg")).unwrap(), jpeg("Barack_Obama", 1));
    let kit = written.iter().find(|e| e.alias == "kit-harington").unwrap();
    let kit_files: Vec<&str> = kit.photos.iter().map(|p| p.file.as_str()).collect();
    assert_eq!(kit_files, ["Kit_Harington_2014.jpg", "Kit_at_Comic-Con.jpg"]);
    assert_eq!(kit.images, vec!["Kit Harington 2014.jpg".to_string()], "P18 looked up on the query service");
    for e in &written {
        for p in &e.photos {
            let bytes = std::fs::read(out.join(&e.alias).join(&p.file)).unwrap();
            image::load_from_memory(&bytes).unwrap();
        }
    }
    assert!(
        !out.join("alex-lacamoire").exists() || std::fs::read_dir(out.join("alex-lacamoire")).unwrap().count() == 0
    );
    let on_disk: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(on_disk["people_without_photo"].as_array().unwrap().len(), 8);
    assert!(on_disk["rejected_files"].as_array().unwrap().iter().any(|f| f["title"] == "File:Rose Leslie.jpg"
        && f["reason"] == "license_not_allowed"
        && f["detail"].as_str().unwrap().contains("CC BY-NC 2.0")));
}

fn many_people(n: usize) -> World {
    let faces = ["Barack_Obama", "Joe_Biden", "Kit_Harington"];
    let mut files = HashMap::new();
    let mut people = Vec::new();
    for i in 0..n {
        let title = format!("Person {i:02} portrait.jpg");
        let who = faces[i % 3];
        files.insert(format!("File:{title}"), FileSpec::new(jpeg(who, 1 + (i / 3) as u32 % 2), "CC BY-SA 4.0"));
        people.push(Person::new(&format!("Q{}", 100 + i), &format!("Person {i:02}"), "Q33999", 50, &[&title]));
    }
    World { people, files, ..World::default() }
}

fn catalog_of(world: &World) -> Vec<Entry> {
    world
        .people
        .iter()
        .map(|p| {
            let mut e = entry(&p.labels["en"], Some(&p.qid));
            e.images = p.images.clone();
            e
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_cap_holds_at_the_server_and_image_info_comes_50_titles_a_request() {
    let world = many_people(60);
    let server = StandIn::start(world.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let rps = 30;
    let client = http(rps, Duration::from_secs(5), 1);
    let sparql = Sparql::new(client.clone(), &server.wdqs_url());
    let commons = Commons::new(client.clone(), &server.commons_api());
    let report =
        photos::run(&client, &sparql, &commons, catalog_of(&world), &photos_opts(dir.path(), 8, 0)).await.unwrap();
    assert_eq!(report.summary.files_downloaded, 60);
    // The stand-in answers more than 50 titles with `toomanyvalues`: two requests, 50 + 10.
    let api: Vec<usize> = server.requests("commons").iter().map(|r| r.params["titles"].split('|').count()).collect();
    assert_eq!(api.iter().sum::<usize>(), 60);
    assert_eq!(api.len(), 2, "{api:?}");
    let mut times: Vec<Instant> = server.log().iter().map(|r| r.at).collect();
    times.sort();
    assert_eq!(times.len(), 62, "two image-info requests, then 60 thumbnails");
    // In any one-second window, at most `rps` requests (plus a little: the window's edges, and
    // arrivals bunched by a busy machine).
    let most = (0..times.len())
        .map(|i| times[i..].iter().take_while(|t| **t - times[i] < Duration::from_millis(980)).count())
        .max()
        .unwrap();
    assert!(most <= rps as usize + 3, "{most} requests within one second at --rps {rps}");
    let span = times[times.len() - 1] - times[0];
    assert!(span >= Duration::from_millis(1950), "62 requests at {rps}/s took only {span:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_run_resumes_without_fetching_any_file_twice() {
    let world = many_people(12);
    let server = StandIn::start(world.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("photos");
    catalog::write_json_atomic(&dir.path().join("catalog.json"), &catalog_of(&world)).unwrap();
    // The 7th file (in catalog order, one download at a time) stalls after half its bytes.
    let stalled = "File:Person 06 portrait.jpg";
    server.fault(&format!("thumb:{stalled}"), Fault::Stall);
    let run = || {
        let mut c = Command::new(bin());
        c.args(["photos", "--concurrency", "1", "--rps", "1000", "--retries", "1", "--backoff-ms", "20"])
            .args(["--timeout-secs", "30"])
            .arg("--catalog")
            .arg(dir.path().join("catalog.json"))
            .arg("--out")
            .arg(&out)
            .args(["--wdqs-url", &server.wdqs_url(), "--commons-api-url", &server.commons_api()])
            .args(["--contact", CONTACT])
            .env("RUST_LOG", "warn");
        c
    };
    let mut child = run().stdout(std::process::Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !server.requests("thumb").iter().any(|r| r.status == 1) {
        assert!(Instant::now() < deadline, "the stalled request never came");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    child.kill().unwrap(); // SIGKILL: no chance to clean up
    child.wait().unwrap();
    let first = server.thumb_counts();
    assert_eq!(first.len(), 7);
    // Nothing half-written where the gallery builder looks: only whole images with image names.
    let mut complete = 0;
    for person in std::fs::read_dir(&out).unwrap() {
        let person = person.unwrap().path();
        if !person.is_dir() {
            continue;
        }
        for f in std::fs::read_dir(&person).unwrap() {
            let f = f.unwrap().path();
            let name = f.file_name().unwrap().to_str().unwrap().to_string();
            if name.ends_with(".jpg") {
                image::load_from_memory(&std::fs::read(&f).unwrap()).unwrap();
                complete += 1;
            } else {
                assert!(name.starts_with('.') && name.ends_with(".part"), "{name}");
            }
        }
    }
    assert_eq!(complete, 6);
    assert!(!out.join("person-06").join("Person_06_portrait.jpg").exists());

    let second = run().output().unwrap();
    let stdout = String::from_utf8_lossy(&second.stdout);
    assert!(second.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&second.stderr));
    assert!(stdout.contains("12 kept (6 downloaded, 6 already there)"), "{stdout}");
    let counts = server.thumb_counts();
    assert_eq!(counts.len(), 12);
    for (title, n) in &counts {
        let want = if title == stalled { 2 } else { 1 };
        assert_eq!(*n, want, "{title} fetched {n} times");
    }
    let written = catalog::load(&out.join("catalog.json")).unwrap();
    assert!(written.iter().all(|e| e.photos.len() == 1));

    // A third run finds everything in place and downloads nothing.
    server.clear_log();
    let third = run().output().unwrap();
    assert!(third.status.success());
    assert!(String::from_utf8_lossy(&third.stdout).contains("12 kept (0 downloaded, 12 already there)"));
    assert!(server.requests("thumb").is_empty());
    // A file that went away is fetched again, and only it.
    std::fs::remove_file(out.join("person-03").join("Person_03_portrait.jpg")).unwrap();
    let fourth = run().output().unwrap();
    assert!(String::from_utf8_lossy(&fourth.stdout).contains("12 kept (1 downloaded, 11 already there)"));
    assert_eq!(server.requests("thumb").len(), 1);
    // Commons unreachable (503 on the try and the retry): what is on disk stays, credited.
    server.fault("commons", Fault::Status(503, None));
    server.fault("commons", Fault::Status(503, None));
    let fifth = run().output().unwrap();
    let stdout = String::from_utf8_lossy(&fifth.stdout);
    assert!(fifth.status.success(), "{stdout}");
    assert!(stdout.contains("12 kept (0 downloaded, 12 already there), 0 rejected, 0 removed"), "{stdout}");
    let written = catalog::load(&out.join("catalog.json")).unwrap();
    assert!(written.iter().all(|e| e.photos.len() == 1 && e.photos[0].license == "CC BY-SA 4.0"), "{written:?}");
}

#[test]
fn the_real_hosts_need_a_contact() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("c.json"), "[]").unwrap();
    let out = Command::new(bin())
        .args(["photos", "--out"])
        .arg(dir.path().join("o"))
        .arg("--catalog")
        .arg(dir.path().join("c.json"))
        .env_remove("LOOKALIKE_CONTACT")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--contact"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn the_famous_catalog_is_well_formed() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/catalog-famous.json");
    let entries = catalog::load(&path).unwrap();
    assert!(entries.len() >= 25, "{}", entries.len());
    for e in &entries {
        let q = e.wikidata.as_deref().unwrap_or("");
        assert!(catalog::is_qid(q), "{}: {q:?}", e.name);
        assert_eq!(e.alias, lookalike_sources::alias::alias_for(&e.name));
    }
    let mut ids: Vec<&str> = entries.iter().filter_map(|e| e.wikidata.as_deref()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), entries.len());
}
