//! lookalike's gallery sources: Wikidata (who) and Wikimedia Commons (their freely licensed
//! portraits) turned into the folder `matcher gallery build --photos DIR --catalog FILE` reads:
//! `DIR/<alias>/<photo>` plus a catalog JSON of the engine's shape, extended with Wikidata fields.
//!
//! - [`catalog`]: the catalog entry type (the engine's fields plus `wikidata`, `names`, ...).
//! - [`wdqs`]: the Wikidata Query Service (SPARQL), paged.
//! - [`make_catalog`]: `lookalike-sources catalog`, a catalog from occupations and sitelinks.
//! - [`resolve`]: `lookalike-sources resolve`, an existing catalog's names to Wikidata ids.
//! - [`commons`]: the Commons API (imageinfo with extmetadata, categorymembers).
//! - [`photos`]: `lookalike-sources photos`, the resumable thumbnail download.
//! - [`http`]: one client for all of it: User-Agent, rate cap, retries, Retry-After, maxlag.

pub mod alias;
pub mod catalog;
pub mod commons;
pub mod http;
pub mod make_catalog;
pub mod photos;
pub mod resolve;
pub mod wdqs;
