//! `lookalike-sources resolve`: an existing catalog (names, no ids) resolved to Wikidata ids.
//!
//! Per name: the Wikidata API's `action=wbsearchentities&search=NAME&language=en&type=item`
//! (response `{"search":[{"id","label","description","match":{"type","language","text"}}]}`) gives
//! candidates; only those whose label or matched alias equals the name (case and spacing aside)
//! are kept; the query service tells which of them are humans (P31 Q5), with their occupations.
//! One human: resolved. Several: resolved only if exactly one has the entry's `role` as an
//! occupation; otherwise reported as ambiguous with the candidates. None: reported as unknown.
//! Nothing is guessed: unresolved entries are written back unchanged (no `wikidata`).

use crate::catalog::{occupation, Entry};
use crate::http::{Http, HttpError};
use crate::wdqs::{details_query, fold_details, humans_query, qid_of, Sparql};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Candidate {
    pub id: String,
    pub label: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub sitelinks: u32,
    #[serde(default)]
    pub occupations: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Resolved {
    pub alias: String,
    pub name: String,
    pub wikidata: String,
    /// "only_human" or "role".
    pub how: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Unresolved {
    pub alias: String,
    pub name: String,
    pub detail: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub candidates: Vec<Candidate>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ResolveSummary {
    pub entries: usize,
    pub already_resolved: usize,
    pub resolved: usize,
    pub ambiguous: usize,
    pub unknown: usize,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ResolveReport {
    pub summary: ResolveSummary,
    pub resolved: Vec<Resolved>,
    pub ambiguous: Vec<Unresolved>,
    pub unknown: Vec<Unresolved>,
}

#[derive(Debug, Deserialize)]
struct SearchResponse {
    #[serde(default)]
    search: Vec<SearchHit>,
    /// Present when there are more results than `limit`.
    #[serde(rename = "search-continue", default)]
    more: Option<serde_json::Value>,
}

/// wbsearchentities' largest `limit`.
const SEARCH_LIMIT: usize = 50;

#[derive(Debug, Deserialize)]
struct SearchHit {
    id: String,
    #[serde(default)]
    label: String,
    #[serde(default)]
    description: String,
    #[serde(rename = "match", default)]
    matched: Option<SearchMatch>,
}

#[derive(Debug, Deserialize)]
struct SearchMatch {
    #[serde(default)]
    text: String,
}

fn norm(s: &str) -> String {
    s.replace('_', " ").split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

enum Decision {
    Resolved(String, &'static str),
    Ambiguous(Vec<Candidate>, String),
    Unknown(String),
}

/// Resolves every entry without `wikidata`; fills the resolved ones from the query service.
pub async fn resolve(
    http: &Http,
    sparql: &Sparql,
    wikidata_api: &str,
    mut entries: Vec<Entry>,
    languages: &[String],
    concurrency: usize,
) -> Result<(Vec<Entry>, ResolveReport), HttpError> {
    let mut report = ResolveReport::default();
    report.summary.entries = entries.len();
    let todo: Vec<usize> = entries.iter().enumerate().filter(|(_, e)| e.wikidata.is_none()).map(|(i, _)| i).collect();
    report.summary.already_resolved = entries.len() - todo.len();
    let decisions: Vec<(usize, Result<Decision, HttpError>)> = futures_util::stream::iter(todo.iter().map(|&i| {
        let e = &entries[i];
        async move { (i, decide(http, sparql, wikidata_api, &e.name, &e.role).await) }
    }))
    .buffer_unordered(concurrency.max(1))
    .collect()
    .await;
    let mut decisions = decisions;
    decisions.sort_by_key(|(i, _)| *i);
    let mut newly: Vec<usize> = Vec::new();
    for (i, d) in decisions {
        let e = &mut entries[i];
        match d? {
            Decision::Resolved(q, how) => {
                report.resolved.push(Resolved {
                    alias: e.alias.clone(),
                    name: e.name.clone(),
                    wikidata: q.clone(),
                    how: how.into(),
                });
                e.wikidata = Some(q);
                newly.push(i);
            }
            Decision::Ambiguous(candidates, detail) => {
                report.ambiguous.push(Unresolved { alias: e.alias.clone(), name: e.name.clone(), detail, candidates })
            }
            Decision::Unknown(detail) => report.unknown.push(Unresolved {
                alias: e.alias.clone(),
                name: e.name.clone(),
                detail,
                candidates: vec![],
            }),
        }
    }
    for chunk in newly.chunks(200) {
        let ids: Vec<String> = chunk.iter().filter_map(|&i| entries[i].wikidata.clone()).collect();
        let details = fold_details(&sparql.select(&details_query(&ids, languages, &[], false)).await?);
        for &i in chunk {
            let e = &mut entries[i];
            let Some(d) = e.wikidata.as_ref().and_then(|q| details.get(q)) else { continue };
            e.names = d.names.clone();
            e.articles = d.articles.clone();
            e.images = d.images.clone();
            e.commons_category = d.category.clone();
            e.sitelinks = d.sitelinks;
        }
    }
    report.summary.resolved = report.resolved.len();
    report.summary.ambiguous = report.ambiguous.len();
    report.summary.unknown = report.unknown.len();
    Ok((entries, report))
}

async fn decide(http: &Http, sparql: &Sparql, api: &str, name: &str, role: &str) -> Result<Decision, HttpError> {
    let params = [
        ("action", "wbsearchentities"),
        ("format", "json"),
        ("formatversion", "2"),
        ("maxlag", "5"),
        ("type", "item"),
        ("language", "en"),
        ("uselang", "en"),
        ("limit", "50"),
        ("search", name),
    ];
    let r: SearchResponse = http.json(|c| c.get(api).query(&params)).await?;
    let wanted = norm(name);
    // 50 results that all carry the name, and more behind them: too common to pick from.
    let all_exact = r
        .search
        .iter()
        .all(|h| norm(&h.label) == wanted || h.matched.as_ref().is_some_and(|m| norm(&m.text) == wanted));
    if r.more.is_some() && r.search.len() >= SEARCH_LIMIT && all_exact {
        let candidates = r
            .search
            .into_iter()
            .map(|h| Candidate {
                id: h.id,
                label: h.label,
                description: h.description,
                sitelinks: 0,
                occupations: vec![],
            })
            .collect();
        return Ok(Decision::Ambiguous(candidates, format!("more than {SEARCH_LIMIT} items carry this name")));
    }
    let mut exact: BTreeMap<String, Candidate> = BTreeMap::new();
    for hit in r.search {
        let text = hit.matched.as_ref().map(|m| m.text.as_str()).unwrap_or("");
        if norm(&hit.label) == wanted || norm(text) == wanted {
            exact.entry(hit.id.clone()).or_insert(Candidate {
                id: hit.id,
                label: hit.label,
                description: hit.description,
                sitelinks: 0,
                occupations: vec![],
            });
        }
    }
    if exact.is_empty() {
        return Ok(Decision::Unknown("no Wikidata item has this label or alias".into()));
    }
    let ids: Vec<String> = exact.keys().cloned().collect();
    let rows = sparql.select(&humans_query(&ids)).await?;
    let mut humans: BTreeMap<String, Candidate> = BTreeMap::new();
    for row in rows {
        let Some(q) = row.get("item").and_then(|t| qid_of(&t.value)) else { continue };
        let Some(c) = exact.get(q) else { continue };
        let h = humans.entry(q.to_string()).or_insert_with(|| c.clone());
        if let Some(s) = row.get("sitelinks") {
            h.sitelinks = s.value.parse().unwrap_or(0);
        }
        if let Some(o) = row.get("occupation").and_then(|t| qid_of(&t.value)) {
            if !h.occupations.iter().any(|x| x == o) {
                h.occupations.push(o.to_string());
            }
        }
        if h.description.is_empty() {
            if let Some(d) = row.get("description") {
                h.description = d.value.clone();
            }
        }
    }
    let mut humans: Vec<Candidate> = humans.into_values().collect();
    humans.sort_by(|a, b| b.sitelinks.cmp(&a.sitelinks).then(a.id.cmp(&b.id)));
    match humans.len() {
        0 => Ok(Decision::Unknown(format!("no human among the items named so ({})", ids.join(", ")))),
        1 => Ok(Decision::Resolved(humans[0].id.clone(), "only_human")),
        _ => {
            if let Some((_, occ)) = occupation(role) {
                let with_role: Vec<&Candidate> = humans.iter().filter(|h| h.occupations.contains(&occ)).collect();
                if with_role.len() == 1 {
                    return Ok(Decision::Resolved(with_role[0].id.clone(), "role"));
                }
            }
            let detail = format!("{} humans carry this name", humans.len());
            Ok(Decision::Ambiguous(humans, detail))
        }
    }
}
