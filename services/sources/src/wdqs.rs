//! The Wikidata Query Service: SPARQL 1.1 over HTTP (POST `query=`, `Accept:
//! application/sparql-results+json`), results in the SPARQL 1.1 Query Results JSON Format:
//! `{"head":{"vars":[...]},"results":{"bindings":[{"var":{"type":"uri"|"literal",
//! "value":"...","xml:lang"?:"en","datatype"?:"..."}}]}}`.
//!
//! Queries carry a first-line comment `# lookalike-sources: <kind>`: the service ignores it,
//! its operators can see who sent the query, and the tests' stand-in uses it to tell the kinds apart.
//!
//! Paging (the public endpoint stops a query at 60 s): the people are listed by
//! [`ids_query`], which selects only item ids and sitelink counts under a stable
//! `ORDER BY DESC(?sitelinks) ?item` with `LIMIT`/`OFFSET` pages; what is said about them
//! (labels, P18, P373, articles, cast counts) comes from [`details_query`] per batch of ids
//! (`VALUES ?item {...}`), one row per fact (`?kind ?value ?lang`) so no cross products.

use crate::http::{Http, HttpError};
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Term {
    #[serde(rename = "type")]
    pub kind: String,
    pub value: String,
    #[serde(rename = "xml:lang", default)]
    pub lang: Option<String>,
    #[serde(default)]
    pub datatype: Option<String>,
}

pub type Row = BTreeMap<String, Term>;

#[derive(Debug, Deserialize)]
struct Results {
    results: Bindings,
}

#[derive(Debug, Deserialize)]
struct Bindings {
    bindings: Vec<Row>,
}

#[derive(Debug, Clone)]
pub struct Sparql {
    http: Http,
    url: String,
}

impl Sparql {
    pub fn new(http: Http, url: &str) -> Self {
        Self { http, url: url.to_string() }
    }

    /// Runs a SELECT query and returns its rows.
    pub async fn select(&self, query: &str) -> Result<Vec<Row>, HttpError> {
        let r: Results = self
            .http
            .json(|c| {
                c.post(&self.url)
                    .header(reqwest::header::ACCEPT, "application/sparql-results+json")
                    .form(&[("query", query), ("format", "json")])
            })
            .await?;
        Ok(r.results.bindings)
    }
}

/// "http://www.wikidata.org/entity/Q2263" -> "Q2263".
pub fn qid_of(uri: &str) -> Option<&str> {
    let id = uri.rsplit('/').next()?;
    crate::catalog::is_qid(id).then_some(id)
}

/// "http://commons.wikimedia.org/wiki/Special:FilePath/Tom%20Hanks%20TIFF%202019.jpg" (how WDQS
/// gives P18 values) -> "Tom Hanks TIFF 2019.jpg". A plain file name is returned as it is.
pub fn commons_file_of(value: &str) -> String {
    let tail = match value.find("Special:FilePath/") {
        Some(i) => &value[i + "Special:FilePath/".len()..],
        None => value,
    };
    let decoded = percent_encoding::percent_decode_str(tail).decode_utf8_lossy().to_string();
    decoded.replace('_', " ")
}

fn values(ids: &[String]) -> String {
    ids.iter().map(|q| format!("wd:{q}")).collect::<Vec<_>>().join(" ")
}

fn lang_list(languages: &[String]) -> String {
    languages.iter().map(|l| format!("\"{}\"", l.replace(['"', '\\'], ""))).collect::<Vec<_>>().join(", ")
}

/// One page of the humans with any of `occupations` (Q-ids) and at least `min_sitelinks`
/// sitelinks, most linked first. Vars: `item`, `sitelinks`.
pub fn ids_query(occupations: &[String], min_sitelinks: u32, limit: usize, offset: usize) -> String {
    format!(
        "# lookalike-sources: ids
SELECT DISTINCT ?item ?sitelinks WHERE {{
  VALUES ?occupation {{ {occ} }}
  ?item wdt:P106 ?occupation ;
        wdt:P31 wd:Q5 ;
        wikibase:sitelinks ?sitelinks .
  FILTER(?sitelinks >= {min_sitelinks})
}}
ORDER BY DESC(?sitelinks) ?item
LIMIT {limit}
OFFSET {offset}
",
        occ = values(occupations)
    )
}

/// Facts about `ids`, one per row. Vars: `item`, `kind`, `value`, `lang`, where kind is one of
/// `label` (value literal, lang), `image` (P18, a Special:FilePath URI), `category` (P373),
/// `sitelinks`, `occupation` (P106, only those in `occupations`), `article` (Wikipedia URL, lang),
/// `n_movies` (count of works with the person as cast member P161, when `movies`).
pub fn details_query(ids: &[String], languages: &[String], occupations: &[String], movies: bool) -> String {
    let ids = values(ids);
    let langs = lang_list(languages);
    let occ_filter = if occupations.is_empty() {
        String::new()
    } else {
        format!("FILTER(?value IN ({}))", occupations.iter().map(|q| format!("wd:{q}")).collect::<Vec<_>>().join(", "))
    };
    let movies = if movies {
        format!(
            "  UNION {{
    {{ SELECT ?item (COUNT(DISTINCT ?work) AS ?value) WHERE {{
        VALUES ?item {{ {ids} }}
        ?work wdt:P161 ?item .
      }} GROUP BY ?item }}
    BIND(\"n_movies\" AS ?kind)
  }}
"
        )
    } else {
        String::new()
    };
    format!(
        "# lookalike-sources: details
SELECT ?item ?kind ?value ?lang WHERE {{
  VALUES ?item {{ {ids} }}
  {{
    ?item rdfs:label ?value . BIND(LANG(?value) AS ?lang) FILTER(?lang IN ({langs}))
    BIND(\"label\" AS ?kind)
  }} UNION {{
    ?item wdt:P18 ?value . BIND(\"image\" AS ?kind)
  }} UNION {{
    ?item wdt:P373 ?value . BIND(\"category\" AS ?kind)
  }} UNION {{
    ?item wikibase:sitelinks ?value . BIND(\"sitelinks\" AS ?kind)
  }} UNION {{
    ?item wdt:P106 ?value . {occ_filter} BIND(\"occupation\" AS ?kind)
  }} UNION {{
    ?value schema:about ?item ; schema:isPartOf ?site ; schema:inLanguage ?lang .
    ?site wikibase:wikiGroup \"wikipedia\" .
    FILTER(?lang IN ({langs}))
    BIND(\"article\" AS ?kind)
  }}
{movies}}}
"
    )
}

/// Which of `ids` are humans (P31 Q5), with their occupations and sitelinks, for `resolve`.
/// Vars: `item`, `sitelinks`, `occupation` (optional), `description` (optional, English).
pub fn humans_query(ids: &[String]) -> String {
    format!(
        "# lookalike-sources: humans
SELECT ?item ?sitelinks ?occupation ?description WHERE {{
  VALUES ?item {{ {ids} }}
  ?item wdt:P31 wd:Q5 ;
        wikibase:sitelinks ?sitelinks .
  OPTIONAL {{ ?item wdt:P106 ?occupation . }}
  OPTIONAL {{ ?item schema:description ?description . FILTER(LANG(?description) = \"en\") }}
}}
",
        ids = values(ids)
    )
}

/// What the details query said about one person.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Details {
    pub names: BTreeMap<String, String>,
    pub images: Vec<String>,
    pub category: Option<String>,
    pub sitelinks: u32,
    /// Occupations (Q-ids) among those asked for.
    pub occupations: Vec<String>,
    pub articles: BTreeMap<String, String>,
    pub n_movies: Option<u32>,
}

/// Folds the rows of [`details_query`] by item.
pub fn fold_details(rows: &[Row]) -> BTreeMap<String, Details> {
    let mut out: BTreeMap<String, Details> = BTreeMap::new();
    for row in rows {
        let (Some(item), Some(kind), Some(value)) = (row.get("item"), row.get("kind"), row.get("value")) else {
            continue;
        };
        let Some(qid) = qid_of(&item.value) else { continue };
        let d = out.entry(qid.to_string()).or_default();
        let lang = row.get("lang").map(|l| l.value.clone()).or_else(|| value.lang.clone()).unwrap_or_default();
        match kind.value.as_str() {
            "label" if !lang.is_empty() => {
                d.names.insert(lang, value.value.clone());
            }
            "image" => {
                let file = commons_file_of(&value.value);
                if !file.is_empty() && !d.images.contains(&file) {
                    d.images.push(file);
                }
            }
            "category" => d.category = Some(value.value.clone()),
            "sitelinks" => d.sitelinks = value.value.parse().unwrap_or(0),
            "occupation" => {
                if let Some(q) = qid_of(&value.value) {
                    if !d.occupations.iter().any(|o| o == q) {
                        d.occupations.push(q.to_string());
                    }
                }
            }
            "article" if !lang.is_empty() => {
                // Prefer <lang>.wikipedia.org when a language has more than one site.
                let own = value.value.contains(&format!("//{lang}.wikipedia.org/"));
                if own || !d.articles.contains_key(&lang) {
                    d.articles.insert(lang, value.value.clone());
                }
            }
            "n_movies" => d.n_movies = value.value.parse().ok(),
            _ => {}
        }
    }
    for d in out.values_mut() {
        d.images.sort();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_files_from_uris() {
        assert_eq!(qid_of("http://www.wikidata.org/entity/Q2263"), Some("Q2263"));
        assert_eq!(qid_of("http://www.wikidata.org/entity/P18"), None);
        assert_eq!(
            commons_file_of("http://commons.wikimedia.org/wiki/Special:FilePath/Tom%20Hanks%20TIFF%202019.jpg"),
            "Tom Hanks TIFF 2019.jpg"
        );
        assert_eq!(commons_file_of("Zo%C3%AB_Salda%C3%B1a.jpg"), "Zoë Saldaña.jpg");
    }

    #[test]
    fn queries_page_and_filter() {
        let q = ids_query(&["Q33999".into(), "Q177220".into()], 20, 500, 1000);
        assert!(q.contains("VALUES ?occupation { wd:Q33999 wd:Q177220 }"), "{q}");
        assert!(q.contains("ORDER BY DESC(?sitelinks) ?item\nLIMIT 500\nOFFSET 1000"), "{q}");
        let d = details_query(&["Q1".into()], &["en".into(), "ru".into()], &["Q33999".into()], true);
        assert!(d.contains("FILTER(?lang IN (\"en\", \"ru\"))") && d.contains("wdt:P161"), "{d}");
        assert!(!details_query(&["Q1".into()], &["en".into()], &[], false).contains("P161"));
    }
}
