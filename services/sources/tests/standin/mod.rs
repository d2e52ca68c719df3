//! A stand-in for the three Wikimedia services `lookalike-sources` talks to, on 127.0.0.1:0,
//! answering in the shapes their documentation gives (recorded at each handler), serving real face
//! photos from `../shared/faces` as thumbnails, with faults to inject and a log of every request.
//!
//! - `/sparql` — Wikidata Query Service (GET `?query=` or POST form `query=`). Response: SPARQL 1.1
//!   Query Results JSON Format (W3C): `{"head":{"vars":[..]},"results":{"bindings":[{"var":
//!   {"type":"uri"|"literal","value":"..","xml:lang"?:"en","datatype"?:"..#integer"}}]}}`. P18
//!   values are `http://commons.wikimedia.org/wiki/Special:FilePath/<percent-encoded name>` URIs,
//!   sitelinks are `xsd:integer` literals, labels carry `xml:lang`. Only enough SPARQL is parsed to
//!   answer the tool's three kinds (first-line comment `# lookalike-sources: ids|details|humans`):
//!   `VALUES`, `FILTER(?sitelinks >= N)`, `LIMIT`, `OFFSET`, `FILTER(?lang IN (..))`. A page larger
//!   than `World::max_page` gets what the real service gives a query past its 60 s deadline:
//!   HTTP 500 with `java.util.concurrent.TimeoutException` in the body.
//! - `/wikidata/w/api.php` — Wikidata Action API, `action=wbsearchentities` (API:Wbsearchentities):
//!   `{"searchinfo":{"search":".."},"search":[{"id":"Q..","title":"Q..","concepturi":"http://www.wikidata.org/entity/Q..",
//!   "label":"..","description":"..","match":{"type":"label"|"alias","language":"en","text":".."}}],"success":1}`;
//!   prefix match on labels and aliases, as the real search does.
//! - `/commons/w/api.php` — Commons Action API with `format=json&formatversion=2`:
//!   `action=query&prop=imageinfo` (API:Imageinfo): `{"batchcomplete":true,"query":{"normalized":
//!   [{"fromencoded":false,"from":"File:A_b.jpg","to":"File:A b.jpg"}],"pages":[{"ns":6,"title":"File:Nope.jpg",
//!   "missing":true,"known":false},{"pageid":1,"ns":6,"title":"File:A b.jpg","imagerepository":"local",
//!   "imageinfo":[{"size":..,"width":..,"height":..,"thumburl":"..","thumbwidth":..,"thumbheight":..,
//!   "url":"..","descriptionurl":"https://commons.wikimedia.org/wiki/File:A_b.jpg","descriptionshorturl":"..",
//!   "sha1":"..","mime":"image/jpeg","extmetadata":{"Artist":{"value":"<a ..>..</a>","source":"commons-desc-page"},
//!   "LicenseShortName":{"value":"CC BY-SA 4.0","source":"commons-desc-page","hidden":true},
//!   "LicenseUrl":{"value":"https://creativecommons.org/licenses/by-sa/4.0","source":"commons-desc-page","hidden":true}}}]}]}}`;
//!   more than 50 titles is the error `toomanyvalues`. `list=categorymembers` (API:Categorymembers):
//!   `{"batchcomplete":true,"query":{"categorymembers":[{"pageid":..,"ns":6,"title":"File:.."}]}}`.
//!   Maxlag (Manual:Maxlag_parameter): HTTP 200, headers `Retry-After` and `X-Database-Lag`, body
//!   `{"error":{"code":"maxlag","info":"Waiting for host: N seconds lagged","host":"..","lag":N,"type":"db"}}`.
//! - `/thumb/<width>px-<title>` — the thumbnail bytes.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use axum::body::{Body, Bytes};
use axum::extract::{Path as AxPath, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Form, Json, Router};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub fn faces_dir() -> PathBuf {
    std::env::var("LOOKALIKE_FACES")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/faces"))
}

/// A real photo from ../shared/faces.
pub fn face(rel: &str) -> Vec<u8> {
    std::fs::read(faces_dir().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

#[derive(Debug, Clone, Default)]
pub struct Person {
    pub qid: String,
    pub labels: BTreeMap<String, String>,
    pub aliases: Vec<String>,
    pub description: String,
    pub human: bool,
    pub occupations: Vec<String>,
    pub sitelinks: u32,
    /// Commons file names without "File:".
    pub images: Vec<String>,
    pub category: Option<String>,
    pub n_movies: u32,
}

impl Person {
    pub fn new(qid: &str, name: &str, occupation: &str, sitelinks: u32, images: &[&str]) -> Self {
        Person {
            qid: qid.into(),
            labels: BTreeMap::from([("en".to_string(), name.to_string())]),
            human: true,
            occupations: vec![occupation.into()],
            sitelinks,
            images: images.iter().map(|s| s.to_string()).collect(),
            ..Person::default()
        }
    }
}

#[derive(Debug, Clone)]
pub struct FileSpec {
    pub bytes: Arc<Vec<u8>>,
    pub mime: String,
    pub license: String,
    pub artist_html: String,
    pub sha1: String,
}

impl FileSpec {
    pub fn new(bytes: Vec<u8>, license: &str) -> Self {
        let sha1 = format!("{:040x}", fxhash(&bytes));
        FileSpec {
            bytes: Arc::new(bytes),
            mime: "image/jpeg".into(),
            license: license.into(),
            artist_html:
                "<a href=\"//commons.wikimedia.org/wiki/User:Jane_Doe\" title=\"User:Jane Doe\">Jane&nbsp;Doe</a>"
                    .into(),
            sha1,
        }
    }
}

fn fxhash(b: &[u8]) -> u128 {
    let mut h: u128 = 0xcbf29ce484222325;
    for &x in b {
        h = (h ^ x as u128).wrapping_mul(0x100000001b3);
    }
    h
}

#[derive(Debug, Clone, Default)]
pub struct World {
    pub people: Vec<Person>,
    /// By title "File:..." (canonical: spaces).
    pub files: HashMap<String, FileSpec>,
    /// By "Category:..." -> titles.
    pub categories: HashMap<String, Vec<String>>,
    /// Largest SPARQL LIMIT answered; larger pages "time out".
    pub max_page: usize,
}

#[derive(Debug, Clone)]
pub enum Fault {
    /// This status, with `Retry-After: secs` when given.
    Status(u16, Option<u64>),
    /// Answer normally, after this delay.
    Delay(Duration),
    /// The MediaWiki maxlag error with this lag (and Retry-After).
    Maxlag(u64),
    /// Headers and the first half of the body, then nothing, forever.
    Stall,
}

#[derive(Debug, Clone)]
pub struct Req {
    pub at: Instant,
    /// "sparql", "wikidata", "commons" or "thumb".
    pub service: &'static str,
    /// The query kind, API action, or file title.
    pub key: String,
    pub user_agent: String,
    pub params: HashMap<String, String>,
    /// What was answered: the status code; 0 while unanswered (or abandoned by the client
    /// before the answer), 1 for a stalled response (headers and half the body).
    pub status: u16,
}

#[derive(Default)]
struct Shared {
    world: World,
    faults: Mutex<HashMap<String, VecDeque<Fault>>>,
    log: Mutex<Vec<Req>>,
    base: String,
}

pub struct StandIn {
    pub base: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl StandIn {
    pub async fn start(world: World) -> StandIn {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let shared = Arc::new(Shared { world, base: base.clone(), ..Shared::default() });
        let app = Router::new()
            .route("/sparql", get(sparql_get).post(sparql_post))
            .route("/wikidata/w/api.php", get(wikidata_api))
            .route("/commons/w/api.php", get(commons_api))
            .route("/thumb/{*rest}", get(thumb))
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        StandIn { base, shared, task }
    }

    pub fn wdqs_url(&self) -> String {
        format!("{}/sparql", self.base)
    }
    pub fn wikidata_api(&self) -> String {
        format!("{}/wikidata/w/api.php", self.base)
    }
    pub fn commons_api(&self) -> String {
        format!("{}/commons/w/api.php", self.base)
    }

    /// Queues a fault for the next request to `key`: "sparql", "wikidata", "commons" or
    /// "thumb:File:<name>".
    pub fn fault(&self, key: &str, fault: Fault) {
        self.shared.faults.lock().unwrap().entry(key.to_string()).or_default().push_back(fault);
    }

    pub fn log(&self) -> Vec<Req> {
        self.shared.log.lock().unwrap().clone()
    }

    pub fn requests(&self, service: &str) -> Vec<Req> {
        self.log().into_iter().filter(|r| r.service == service).collect()
    }

    /// Requests per thumbnail title.
    pub fn thumb_counts(&self) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for r in self.requests("thumb") {
            *m.entry(r.key).or_insert(0) += 1;
        }
        m
    }

    pub fn clear_log(&self) {
        self.shared.log.lock().unwrap().clear();
    }
}

fn take_fault(s: &Shared, key: &str) -> Option<Fault> {
    s.faults.lock().unwrap().get_mut(key).and_then(VecDeque::pop_front)
}

/// Logs a request on arrival (status 0: no answer yet); returns its index for [`answered`].
fn arrived(
    s: &Shared,
    service: &'static str,
    key: &str,
    headers: &HeaderMap,
    params: &HashMap<String, String>,
) -> usize {
    let user_agent = headers.get("user-agent").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let mut log = s.log.lock().unwrap();
    log.push(Req { at: Instant::now(), service, key: key.into(), user_agent, params: params.clone(), status: 0 });
    log.len() - 1
}

fn answered(s: &Shared, index: usize, status: u16) {
    if let Some(r) = s.log.lock().unwrap().get_mut(index) {
        r.status = status;
    }
}

/// Applies a queued fault; `Some(response)` when it replaces the answer.
async fn apply_fault(s: &Shared, fault_key: &str, body: Option<&[u8]>) -> Option<(Response, u16)> {
    match take_fault(s, fault_key)? {
        Fault::Status(code, retry_after) => {
            let mut r = (StatusCode::from_u16(code).unwrap(), format!("stand-in: {code}")).into_response();
            if let Some(secs) = retry_after {
                r.headers_mut().insert("retry-after", HeaderValue::from_str(&secs.to_string()).unwrap());
            }
            Some((r, code))
        }
        Fault::Delay(d) => {
            tokio::time::sleep(d).await;
            None
        }
        Fault::Maxlag(lag) => {
            let body = json!({"error": {"code": "maxlag", "info": format!("Waiting for 10.64.0.1: {lag} seconds lagged"),
                "host": "10.64.0.1", "lag": lag, "type": "db",
                "*": "See https://www.mediawiki.org/w/api.php for API usage."}});
            let mut r = Json(body).into_response();
            r.headers_mut().insert("retry-after", HeaderValue::from_str(&lag.to_string()).unwrap());
            r.headers_mut().insert("x-database-lag", HeaderValue::from_str(&lag.to_string()).unwrap());
            Some((r, 200))
        }
        Fault::Stall => {
            let full = body.map(<[u8]>::to_vec).unwrap_or_else(|| vec![b'x'; 1000]);
            let half = Bytes::from(full[..full.len() / 2].to_vec());
            let stream =
                futures_util::stream::iter([Ok::<Bytes, std::io::Error>(half)]).chain(futures_util::stream::pending());
            let mut r = Response::new(Body::from_stream(stream));
            r.headers_mut().insert("content-length", HeaderValue::from_str(&full.len().to_string()).unwrap());
            r.headers_mut().insert("content-type", HeaderValue::from_static("image/jpeg"));
            Some((r, 1))
        }
    }
}

use futures_util::StreamExt;

// ---------- SPARQL ----------

async fn sparql_get(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(p): Query<HashMap<String, String>>,
) -> Response {
    sparql(s, headers, p).await
}

async fn sparql_post(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Form(p): Form<HashMap<String, String>>,
) -> Response {
    sparql(s, headers, p).await
}

fn capture<'a>(re: &str, text: &'a str) -> Option<&'a str> {
    regex::Regex::new(re).unwrap().captures(text).and_then(|c| c.get(1)).map(|m| m.as_str())
}

fn qids_in(text: &str) -> Vec<String> {
    regex::Regex::new(r"wd:(Q\d+)").unwrap().captures_iter(text).map(|c| c[1].to_string()).collect()
}

fn strings_in(text: &str) -> Vec<String> {
    regex::Regex::new(r#""([^"]*)""#).unwrap().captures_iter(text).map(|c| c[1].to_string()).collect()
}

fn uri(v: String) -> Value {
    json!({"type": "uri", "value": v})
}
fn lit(v: &str) -> Value {
    json!({"type": "literal", "value": v})
}
fn lang_lit(v: &str, lang: &str) -> Value {
    json!({"type": "literal", "value": v, "xml:lang": lang})
}
fn int_lit(n: u32) -> Value {
    json!({"type": "literal", "value": n.to_string(), "datatype": "http://www.w3.org/2001/XMLSchema#integer"})
}
fn entity(q: &str) -> Value {
    uri(format!("http://www.wikidata.org/entity/{q}"))
}

pub fn file_path_uri(name: &str) -> String {
    let enc = percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC).to_string();
    format!("http://commons.wikimedia.org/wiki/Special:FilePath/{enc}")
}

async fn sparql(s: Arc<Shared>, headers: HeaderMap, p: HashMap<String, String>) -> Response {
    let query = p.get("query").cloned().unwrap_or_default();
    let kind = capture(r"# lookalike-sources: (\w+)", &query).unwrap_or("unknown").to_string();
    let at = arrived(&s, "sparql", &kind, &headers, &p);
    if let Some((r, status)) = apply_fault(&s, "sparql", None).await {
        answered(&s, at, status);
        return r;
    }
    let w = &s.world;
    let (vars, rows): (Vec<&str>, Vec<Value>) = match kind.as_str() {
        "ids" => {
            let limit: usize = capture(r"LIMIT (\d+)", &query).and_then(|v| v.parse().ok()).unwrap_or(usize::MAX);
            let offset: usize = capture(r"OFFSET (\d+)", &query).and_then(|v| v.parse().ok()).unwrap_or(0);
            if w.max_page > 0 && limit > w.max_page {
                answered(&s, at, 500);
                return (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "SPARQL-QUERY: queryStr=...\njava.util.concurrent.TimeoutException\n\tat java.util.concurrent.FutureTask.get",
                )
                    .into_response();
            }
            let occ = qids_in(capture(r"VALUES \?occupation \{([^}]*)\}", &query).unwrap_or(""));
            let min: u32 = capture(r"FILTER\(\?sitelinks >= (\d+)\)", &query).and_then(|v| v.parse().ok()).unwrap_or(0);
            let mut people: Vec<&Person> = w
                .people
                .iter()
                .filter(|x| x.human && x.sitelinks >= min && x.occupations.iter().any(|o| occ.contains(o)))
                .collect();
            // ORDER BY DESC(?sitelinks) ?item — ?item compares as the entity URI string.
            people.sort_by(|a, b| b.sitelinks.cmp(&a.sitelinks).then(a.qid.cmp(&b.qid)));
            let rows = people
                .into_iter()
                .skip(offset)
                .take(limit)
                .map(|x| json!({"item": entity(&x.qid), "sitelinks": int_lit(x.sitelinks)}))
                .collect();
            (vec!["item", "sitelinks"], rows)
        }
        "details" => {
            let ids = qids_in(capture(r"VALUES \?item \{([^}]*)\}", &query).unwrap_or(""));
            let langs = strings_in(capture(r"FILTER\(\?lang IN \(([^)]*)\)\)", &query).unwrap_or(""));
            let occ_filter = capture(r"FILTER\(\?value IN \(([^)]*)\)\)", &query).map(qids_in);
            let movies = query.contains("wdt:P161");
            let ids: std::collections::HashSet<String> = ids.into_iter().collect();
            let mut rows = Vec::new();
            for x in w.people.iter().filter(|x| ids.contains(&x.qid)) {
                let row = |kind: &str, value: Value, lang: Option<&str>| {
                    let mut r = json!({"item": entity(&x.qid), "kind": lit(kind), "value": value});
                    if let Some(l) = lang {
                        r["lang"] = lit(l);
                    }
                    r
                };
                for (l, label) in x.labels.iter().filter(|(l, _)| langs.contains(l)) {
                    rows.push(row("label", lang_lit(label, l), Some(l)));
                }
                for img in &x.images {
                    rows.push(row("image", uri(file_path_uri(img)), None));
                }
                if let Some(c) = &x.category {
                    rows.push(row("category", lit(c), None));
                }
                rows.push(row("sitelinks", int_lit(x.sitelinks), None));
                for o in x.occupations.iter().filter(|o| occ_filter.as_ref().is_none_or(|f| f.contains(o))) {
                    rows.push(row("occupation", entity(o), None));
                }
                for (l, label) in x.labels.iter().filter(|(l, _)| langs.contains(l)) {
                    let url = format!("https://{l}.wikipedia.org/wiki/{}", label.replace(' ', "_"));
                    rows.push(row("article", uri(url), Some(l)));
                }
                if movies {
                    rows.push(row("n_movies", int_lit(x.n_movies), None));
                }
            }
            (vec!["item", "kind", "value", "lang"], rows)
        }
        "humans" => {
            let ids = qids_in(capture(r"VALUES \?item \{([^}]*)\}", &query).unwrap_or(""));
            let mut rows = Vec::new();
            for x in w.people.iter().filter(|x| x.human && ids.contains(&x.qid)) {
                let mut base = json!({"item": entity(&x.qid), "sitelinks": int_lit(x.sitelinks)});
                if !x.description.is_empty() {
                    base["description"] = lang_lit(&x.description, "en");
                }
                if x.occupations.is_empty() {
                    rows.push(base.clone());
                }
                for o in &x.occupations {
                    let mut r = base.clone();
                    r["occupation"] = entity(o);
                    rows.push(r);
                }
            }
            (vec!["item", "sitelinks", "occupation", "description"], rows)
        }
        _ => {
            answered(&s, at, 400);
            return (StatusCode::BAD_REQUEST, "stand-in: unknown query kind").into_response();
        }
    };
    answered(&s, at, 200);
    let body = json!({"head": {"vars": vars}, "results": {"bindings": rows}});
    let mut r = Json(body).into_response();
    r.headers_mut().insert("content-type", HeaderValue::from_static("application/sparql-results+json;charset=utf-8"));
    r
}

// ---------- Wikidata API ----------

async fn wikidata_api(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(p): Query<HashMap<String, String>>,
) -> Response {
    let action = p.get("action").cloned().unwrap_or_default();
    let at = arrived(&s, "wikidata", &action, &headers, &p);
    if let Some((r, status)) = apply_fault(&s, "wikidata", None).await {
        answered(&s, at, status);
        return r;
    }
    answered(&s, at, 200);
    if action != "wbsearchentities" {
        return Json(json!({"error": {"code": "badvalue", "info": "stand-in: only wbsearchentities"}})).into_response();
    }
    let search = p.get("search").cloned().unwrap_or_default().to_lowercase();
    let mut hits = Vec::new();
    for x in &s.world.people {
        let label = x.labels.get("en").cloned().unwrap_or_default();
        let matched = if label.to_lowercase().starts_with(&search) {
            Some(("label", label.clone()))
        } else {
            x.aliases.iter().find(|a| a.to_lowercase().starts_with(&search)).map(|a| ("alias", a.clone()))
        };
        if let Some((kind, text)) = matched {
            hits.push(json!({"id": x.qid, "title": x.qid, "pageid": 1,
                "concepturi": format!("http://www.wikidata.org/entity/{}", x.qid),
                "repository": "wikidata", "url": format!("//www.wikidata.org/wiki/{}", x.qid),
                "display": {"label": {"value": label, "language": "en"}},
                "label": label, "description": x.description,
                "match": {"type": kind, "language": "en", "text": text}}));
        }
    }
    // `limit` (default 7, at most 50) results; `search-continue` when there are more.
    let limit: usize = p.get("limit").and_then(|l| l.parse().ok()).unwrap_or(7).min(50);
    let mut body = json!({"searchinfo": {"search": p.get("search")}, "success": 1});
    if hits.len() > limit {
        body["search-continue"] = json!(limit);
    }
    hits.truncate(limit);
    body["search"] = Value::Array(hits);
    Json(body).into_response()
}

// ---------- Commons API ----------

pub fn thumb_path(title: &str, width: u32) -> String {
    let name = title.strip_prefix("File:").unwrap_or(title);
    let enc = percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC).to_string();
    format!("/thumb/{width}px-{enc}")
}

async fn commons_api(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(p): Query<HashMap<String, String>>,
) -> Response {
    let key = p.get("list").or(p.get("prop")).cloned().unwrap_or_default();
    let at = arrived(&s, "commons", &key, &headers, &p);
    if let Some((r, status)) = apply_fault(&s, "commons", None).await {
        answered(&s, at, status);
        return r;
    }
    answered(&s, at, 200);
    if p.get("formatversion").map(String::as_str) != Some("2") || p.get("format").map(String::as_str) != Some("json") {
        return Json(json!({"error": {"code": "stand-in", "info": "expected format=json&formatversion=2"}}))
            .into_response();
    }
    let w = &s.world;
    if p.get("list").map(String::as_str) == Some("categorymembers") {
        let cat = p.get("cmtitle").cloned().unwrap_or_default();
        let limit: usize = p.get("cmlimit").and_then(|v| v.parse().ok()).unwrap_or(10);
        let members: Vec<Value> = w
            .categories
            .get(&cat)
            .map(|v| {
                v.iter()
                    .take(limit)
                    .enumerate()
                    .map(|(i, t)| json!({"pageid": 1000 + i, "ns": 6, "title": t}))
                    .collect()
            })
            .unwrap_or_default();
        return Json(json!({"batchcomplete": true, "query": {"categorymembers": members}})).into_response();
    }
    let titles: Vec<String> = p.get("titles").map(|t| t.split('|').map(str::to_string).collect()).unwrap_or_default();
    if titles.len() > 50 {
        return Json(json!({"error": {"code": "toomanyvalues",
            "info": "Too many values supplied for parameter \"titles\". The limit is 50.", "limit": 50}}))
        .into_response();
    }
    let width: u32 = p.get("iiurlwidth").and_then(|v| v.parse().ok()).unwrap_or(0);
    let mut normalized = Vec::new();
    let mut pages = Vec::new();
    for t in &titles {
        let canonical = t.replace('_', " ");
        if canonical != *t {
            normalized.push(json!({"fromencoded": false, "from": t, "to": canonical}));
        }
        match w.files.get(&canonical) {
            None => pages.push(json!({"ns": 6, "title": canonical, "missing": true, "known": false})),
            Some(f) => {
                let under = canonical.replace(' ', "_");
                let thumb = format!("{}{}", s.base, thumb_path(&canonical, width));
                pages.push(json!({"pageid": 1, "ns": 6, "title": canonical, "imagerepository": "local",
                    "imageinfo": [{"size": f.bytes.len(), "width": 250, "height": 250,
                        "thumburl": thumb, "thumbwidth": width.min(250), "thumbheight": width.min(250),
                        "responsiveUrls": {},
                        "url": format!("{}/original/{}", s.base, under),
                        "descriptionurl": format!("https://commons.wikimedia.org/wiki/{under}"),
                        "descriptionshorturl": "https://commons.wikimedia.org/w/index.php?curid=1",
                        "sha1": f.sha1, "mime": f.mime,
                        "extmetadata": {
                            "Artist": {"value": f.artist_html, "source": "commons-desc-page"},
                            "LicenseShortName": {"value": f.license, "source": "commons-desc-page", "hidden": true},
                            "LicenseUrl": {"value": license_url(&f.license), "source": "commons-desc-page", "hidden": true},
                            "UsageTerms": {"value": f.license, "source": "commons-desc-page", "hidden": true}}}]}));
            }
        }
    }
    let mut query = json!({"pages": pages});
    if !normalized.is_empty() {
        query["normalized"] = Value::Array(normalized);
    }
    Json(json!({"batchcomplete": true, "query": query})).into_response()
}

fn license_url(license: &str) -> String {
    let l = license.to_lowercase();
    if let Some(rest) = l.strip_prefix("cc by-sa ") {
        format!("https://creativecommons.org/licenses/by-sa/{rest}")
    } else if let Some(rest) = l.strip_prefix("cc by ") {
        format!("https://creativecommons.org/licenses/by/{rest}")
    } else if l == "cc0" {
        "https://creativecommons.org/publicdomain/zero/1.0/deed.en".into()
    } else {
        String::new()
    }
}

// ---------- thumbnails ----------

async fn thumb(State(s): State<Arc<Shared>>, headers: HeaderMap, AxPath(rest): AxPath<String>) -> Response {
    // "<width>px-<name>"
    let name = rest.split_once("px-").map(|(_, n)| n.to_string()).unwrap_or(rest);
    let title = format!("File:{name}");
    let file = s.world.files.get(&title).cloned();
    let bytes = file.as_ref().map(|f| f.bytes.as_slice());
    let at = arrived(&s, "thumb", &title, &headers, &HashMap::new());
    if let Some((r, status)) = apply_fault(&s, &format!("thumb:{title}"), bytes).await {
        answered(&s, at, status);
        return r;
    }
    match file {
        Some(f) => {
            answered(&s, at, 200);
            let mut r = Response::new(Body::from(f.bytes.as_ref().clone()));
            r.headers_mut().insert("content-type", HeaderValue::from_static("image/jpeg"));
            r
        }
        None => {
            answered(&s, at, 404);
            (StatusCode::NOT_FOUND, "stand-in: no such file").into_response()
        }
    }
}
