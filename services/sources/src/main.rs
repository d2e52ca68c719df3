//! `lookalike-sources`: Wikidata + Wikimedia Commons -> a gallery source folder.
//! See services/sources/README.md for the real commands.

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use lookalike_sources::catalog::{self, occupation};
use lookalike_sources::commons::{Commons, Licenses, DEFAULT_LICENSES};
use lookalike_sources::http::{user_agent, Http, HttpConfig};
use lookalike_sources::make_catalog::{build_catalog, CatalogOptions};
use lookalike_sources::photos::{self, PhotosOptions};
use lookalike_sources::resolve::resolve;
use lookalike_sources::wdqs::Sparql;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(name = "lookalike-sources", version, about = "Wikidata + Wikimedia Commons -> a gallery source folder")]
struct Cli {
    #[command(flatten)]
    net: Net,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Debug)]
struct Net {
    /// Contact for the User-Agent (e-mail or URL); required unless every host is on loopback.
    #[arg(long, global = true, env = "LOOKALIKE_CONTACT")]
    contact: Option<String>,
    /// Wikidata Query Service SPARQL endpoint.
    #[arg(long, global = true, env = "LOOKALIKE_WDQS_URL", default_value = "https://query.wikidata.org/sparql")]
    wdqs_url: String,
    /// Wikidata Action API.
    #[arg(
        long,
        global = true,
        env = "LOOKALIKE_WIKIDATA_API_URL",
        default_value = "https://www.wikidata.org/w/api.php"
    )]
    wikidata_api_url: String,
    /// Wikimedia Commons Action API.
    #[arg(
        long,
        global = true,
        env = "LOOKALIKE_COMMONS_API_URL",
        default_value = "https://commons.wikimedia.org/w/api.php"
    )]
    commons_api_url: String,
    /// Requests per second, all hosts together.
    #[arg(long, global = true, env = "LOOKALIKE_RPS", default_value_t = 10)]
    rps: u32,
    /// Per-request timeout in seconds (connect, headers and body; the query service stops queries at 60 s).
    #[arg(long, global = true, env = "LOOKALIKE_TIMEOUT_SECS", default_value_t = 70.0)]
    timeout_secs: f64,
    /// Retries per request after the first try (5xx, 429, timeouts, maxlag).
    #[arg(long, global = true, env = "LOOKALIKE_RETRIES", default_value_t = 5)]
    retries: usize,
    /// First backoff delay in milliseconds (doubles per retry, up to 60 s, with jitter).
    #[arg(long, global = true, env = "LOOKALIKE_BACKOFF_MS", default_value_t = 1000)]
    backoff_ms: u64,
    /// A Retry-After longer than this (seconds) fails the request instead of waiting.
    #[arg(long, global = true, env = "LOOKALIKE_MAX_RETRY_AFTER_SECS", default_value_t = 600)]
    max_retry_after_secs: u64,
    /// Label (and article) languages, comma-separated; the name is the English label when there is one.
    #[arg(long, global = true, env = "LOOKALIKE_LANGUAGES", default_value = "en", value_delimiter = ',')]
    languages: Vec<String>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// A catalog of the people with the given occupations, most linked first, from the query service.
    Catalog {
        #[arg(long)]
        out: PathBuf,
        /// Occupation names (actor, singer, athlete, politician, film-actor, ...) or Q-ids; repeatable.
        #[arg(long = "occupation", default_values_t = vec!["actor".to_string()])]
        occupations: Vec<String>,
        /// Only people with at least this many sitelinks (Wikimedia pages about them).
        #[arg(long, default_value_t = 20)]
        min_sitelinks: u32,
        /// At most this many people.
        #[arg(long)]
        limit: Option<usize>,
        /// Ids per query-service page (LIMIT/OFFSET).
        #[arg(long, default_value_t = 5000)]
        page_size: usize,
        /// Ids per details query.
        #[arg(long, default_value_t = 200)]
        batch_size: usize,
        /// Leave out the cast-member count (n_movies), the costly part of the details query.
        #[arg(long)]
        no_movies: bool,
    },
    /// Resolves a catalog's names (no ids) to Wikidata ids; ambiguous and unknown names are reported, never guessed.
    Resolve {
        #[arg(long)]
        catalog: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// The JSON report (default: OUT with .report.json).
        #[arg(long)]
        report: Option<PathBuf>,
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
    },
    /// Downloads every entry's Commons portraits as thumbnails into OUT/<alias>/ with credits in OUT/catalog.json.
    Photos {
        #[arg(long)]
        catalog: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// The catalog with the photos' credits (default: OUT/catalog.json).
        #[arg(long)]
        catalog_out: Option<PathBuf>,
        /// Thumbnail width in pixels.
        #[arg(long, default_value_t = 1024)]
        width: u32,
        /// Also up to N more files from the person's Commons category (P373).
        #[arg(long, default_value_t = 0)]
        extra_from_category: usize,
        /// Downloads in flight at once.
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        /// Licence allow-list (LicenseShortName; a trailing * matches by prefix), comma-separated.
        #[arg(long, value_delimiter = ',', default_values_t = DEFAULT_LICENSES.iter().map(|s| s.to_string()).collect::<Vec<_>>())]
        licenses: Vec<String>,
        /// JSON report of everyone without a usable photo, and of every rejected file.
        #[arg(long)]
        report: Option<PathBuf>,
        /// No progress bar (it is drawn only on a terminal anyway).
        #[arg(long)]
        no_progress: bool,
    },
}

fn is_loopback(url: &str) -> bool {
    match reqwest::Url::parse(url).ok().and_then(|u| u.host_str().map(str::to_string)) {
        Some(h) => {
            h == "localhost" || h.trim_matches(['[', ']']).parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
        }
        None => false,
    }
}

/// The client for a command that talks to `hosts`.
fn http(net: &Net, hosts: &[&str]) -> Result<Http> {
    let remote = hosts.iter().any(|u| !is_loopback(u));
    if remote && net.contact.as_deref().is_none_or(|c| c.trim().is_empty()) {
        bail!("--contact (or LOOKALIKE_CONTACT) is required for the Wikimedia hosts: an e-mail address or URL for the User-Agent");
    }
    if !(net.timeout_secs.is_finite() && net.timeout_secs > 0.0) {
        bail!("--timeout-secs must be positive");
    }
    let mut cfg = HttpConfig::new(user_agent(net.contact.as_deref()));
    cfg.rps = net.rps.max(1);
    cfg.timeout = Duration::from_secs_f64(net.timeout_secs);
    cfg.retries = net.retries;
    cfg.backoff_base = Duration::from_millis(net.backoff_ms);
    cfg.max_retry_after = Duration::from_secs(net.max_retry_after_secs);
    Ok(Http::new(cfg)?)
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let net = &cli.net;
    let hosts: Vec<&str> = match cli.command {
        Command::Catalog { .. } => vec![&net.wdqs_url],
        Command::Resolve { .. } => vec![&net.wdqs_url, &net.wikidata_api_url],
        Command::Photos { .. } => vec![&net.wdqs_url, &net.commons_api_url],
    };
    let http = http(net, &hosts)?;
    let sparql = Sparql::new(http.clone(), &cli.net.wdqs_url);
    let languages: Vec<String> =
        cli.net.languages.iter().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect();
    match cli.command {
        Command::Catalog { out, occupations, min_sitelinks, limit, page_size, batch_size, no_movies } => {
            let mut occ = Vec::new();
            for o in &occupations {
                occ.push(occupation(o).with_context(|| {
                    let known: Vec<&str> = catalog::OCCUPATIONS.iter().map(|(n, _)| *n).collect();
                    format!("unknown occupation {o:?}: use a Q-id or one of {}", known.join(", "))
                })?);
            }
            let opts = CatalogOptions {
                occupations: occ,
                min_sitelinks,
                limit,
                languages,
                page_size,
                batch_size,
                movies: !no_movies,
            };
            let (entries, stats) = build_catalog(&sparql, &opts).await?;
            catalog::write_json_atomic(&out, &entries).with_context(|| format!("writing {}", out.display()))?;
            let with_image = entries.iter().filter(|e| !e.images.is_empty()).count();
            println!(
                "catalog: {} people ({} with a P18 image) in {} id pages and {} detail batches -> {}",
                entries.len(),
                with_image,
                stats.id_pages,
                stats.detail_batches,
                out.display()
            );
        }
        Command::Resolve { catalog: input, out, report, concurrency } => {
            let entries = catalog::load(&input)?;
            let (entries, rep) =
                resolve(&http, &sparql, &cli.net.wikidata_api_url, entries, &languages, concurrency).await?;
            catalog::write_json_atomic(&out, &entries).with_context(|| format!("writing {}", out.display()))?;
            let report_path = report.unwrap_or_else(|| out.with_extension("report.json"));
            catalog::write_json_atomic(&report_path, &rep)
                .with_context(|| format!("writing {}", report_path.display()))?;
            let s = &rep.summary;
            println!(
                "resolve: {} entries: {} already had ids, {} resolved, {} ambiguous, {} unknown -> {} (report {})",
                s.entries,
                s.already_resolved,
                s.resolved,
                s.ambiguous,
                s.unknown,
                out.display(),
                report_path.display()
            );
            for u in rep.ambiguous.iter().chain(&rep.unknown) {
                println!("  unresolved: {} ({}): {}", u.name, u.alias, u.detail);
            }
        }
        Command::Photos {
            catalog: input,
            out,
            catalog_out,
            width,
            extra_from_category,
            concurrency,
            licenses,
            report,
            no_progress,
        } => {
            let entries = catalog::load(&input)?;
            let commons = Commons::new(http.clone(), &cli.net.commons_api_url);
            let opts = PhotosOptions {
                catalog_out: catalog_out.unwrap_or_else(|| out.join("catalog.json")),
                out,
                report,
                width,
                extra_from_category,
                concurrency,
                licenses: Licenses::new(&licenses),
                languages,
                progress: !no_progress,
            };
            let rep = photos::run(&http, &sparql, &commons, entries, &opts).await?;
            let s = &rep.summary;
            println!(
                "photos: {} people, {} with photos, {} without; files: {} kept ({} downloaded, {} already there), {} rejected, {} removed; \
                 {} requests, {} retries, {:.1} MB in {:.1} s ({:.1} photos/s) -> {}",
                s.people,
                s.people_with_photos,
                s.people_without_photos,
                s.files_kept,
                s.files_downloaded,
                s.files_reused,
                s.files_rejected,
                s.files_removed,
                s.requests,
                s.retries,
                s.bytes_received as f64 / 1e6,
                s.seconds,
                s.photos_per_second,
                opts.catalog_out.display()
            );
            let mut reasons: std::collections::BTreeMap<&str, usize> = Default::default();
            for p in &rep.people_without_photo {
                *reasons.entry(p.reason.as_str()).or_default() += 1;
            }
            for (r, n) in reasons {
                println!("  without photo: {n} {r}");
            }
        }
    }
    Ok(())
}
