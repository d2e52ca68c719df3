//! `lookalike-sources catalog`: the people with given occupations and at least N sitelinks,
//! most linked first, as catalog entries.
//!
//! Paging: LIMIT/OFFSET over the stable order `ORDER BY DESC(?sitelinks) ?item` of a query that
//! selects ids only (cheap to sort), `page_size` rows a page; then the facts in batches of
//! `batch_size` ids (see [`crate::wdqs`]). If the data changes between pages an item can move
//! across a page boundary: ids are de-duplicated, and one missed that way comes back next run.
//! The cast count (`n_movies`, works with P161 = the person) is part of the details query; it is the
//! costly part, so `--no-movies` leaves it out (then `n_movies` is 0).

use crate::catalog::{unique_alias, Entry};
use crate::http::HttpError;
use crate::wdqs::{details_query, fold_details, ids_query, qid_of, Sparql};
use std::collections::HashSet;

#[derive(Debug, Clone)]
pub struct CatalogOptions {
    /// (name, Q-id), in the order of preference for `role`.
    pub occupations: Vec<(String, String)>,
    pub min_sitelinks: u32,
    pub limit: Option<usize>,
    pub languages: Vec<String>,
    pub page_size: usize,
    pub batch_size: usize,
    pub movies: bool,
}

#[derive(Debug, Default, Clone)]
pub struct CatalogStats {
    pub id_pages: usize,
    pub detail_batches: usize,
}

/// Lists the people page by page, then their details batch by batch.
pub async fn build_catalog(sparql: &Sparql, opts: &CatalogOptions) -> Result<(Vec<Entry>, CatalogStats), HttpError> {
    let occ_ids: Vec<String> = opts.occupations.iter().map(|(_, q)| q.clone()).collect();
    let mut stats = CatalogStats::default();
    let mut ids: Vec<String> = Vec::new();
    let mut seen = HashSet::new();
    let page = opts.page_size.max(1);
    let mut offset = 0;
    loop {
        let want = match opts.limit {
            Some(limit) if ids.len() >= limit => break,
            Some(limit) => page.min(limit - ids.len()),
            None => page,
        };
        let rows = sparql.select(&ids_query(&occ_ids, opts.min_sitelinks, want, offset)).await?;
        stats.id_pages += 1;
        let before = ids.len();
        for row in &rows {
            if let Some(q) = row.get("item").and_then(|t| qid_of(&t.value)) {
                if seen.insert(q.to_string()) {
                    ids.push(q.to_string());
                }
            }
        }
        tracing::info!(page = stats.id_pages, offset, rows = rows.len(), people = ids.len(), "ids page");
        if rows.len() < want {
            break;
        }
        if ids.len() == before {
            // A full page of ids already seen: the service is not paging (OFFSET ignored?).
            tracing::warn!(offset, "a full page with no new ids: stopping");
            break;
        }
        offset += want;
    }
    if let Some(limit) = opts.limit {
        ids.truncate(limit);
    }

    let mut entries = Vec::with_capacity(ids.len());
    let mut taken = HashSet::new();
    for batch in ids.chunks(opts.batch_size.max(1)) {
        let rows = sparql.select(&details_query(batch, &opts.languages, &occ_ids, opts.movies)).await?;
        stats.detail_batches += 1;
        let details = fold_details(&rows);
        for qid in batch {
            let d = details.get(qid).cloned().unwrap_or_default();
            let name = d
                .names
                .get("en")
                .or_else(|| opts.languages.iter().find_map(|l| d.names.get(l)))
                .or_else(|| d.names.values().next())
                .cloned()
                .unwrap_or_else(|| qid.clone());
            let role = opts
                .occupations
                .iter()
                .find(|(_, q)| d.occupations.contains(q))
                .or(opts.occupations.first())
                .map(|(n, _)| n.clone())
                .unwrap_or_default();
            let alias = unique_alias(crate::alias::alias_for(&name), Some(qid), &mut taken);
            entries.push(Entry {
                name,
                alias,
                role,
                n_movies: d.n_movies.unwrap_or(0),
                wikidata: Some(qid.clone()),
                names: d.names,
                articles: d.articles,
                images: d.images,
                commons_category: d.category,
                sitelinks: d.sitelinks,
                ..Entry::default()
            });
        }
        tracing::info!(batch = stats.detail_batches, people = entries.len(), of = ids.len(), "details batch");
    }
    Ok((entries, stats))
}
