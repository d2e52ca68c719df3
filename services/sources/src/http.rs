//! One HTTP client for the Wikimedia hosts, with their rules applied to every request:
//!
//! - a descriptive User-Agent with the operator's contact (Wikimedia's User-Agent policy:
//!   `<client>/<version> (<contact>) <library>/<version>`);
//! - a global requests-per-second cap (`governor`, GCRA, burst 1: requests are spaced evenly);
//! - a per-request timeout (connect, headers and body);
//! - retries with exponential backoff and full jitter on 5xx, 429, timeouts and connection
//!   errors (`backon`); its `adjust` hook replaces the computed delay by the server's
//!   `Retry-After` (seconds or HTTP date) on 429 and 503, and by the MediaWiki API's maxlag
//!   advice (HTTP 200 with `{"error":{"code":"maxlag",...}}` and a `Retry-After` header), so the
//!   retry loop itself is the crate's, not hand-written;
//! - a `Retry-After` also closes a gate that every request waits on, so the whole run pauses for
//!   the host, not only the request that was told to wait.

use backon::{ExponentialBuilder, Retryable};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::header::HeaderMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub user_agent: String,
    /// Requests per second, for all hosts together.
    pub rps: u32,
    /// Per-request timeout (connect, headers and body).
    pub timeout: Duration,
    /// Retries after the first attempt.
    pub retries: usize,
    /// First backoff delay; doubles per retry up to `backoff_max`, with jitter.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// A longer Retry-After than this fails the request instead of parking the run.
    pub max_retry_after: Duration,
}

impl HttpConfig {
    pub fn new(user_agent: String) -> Self {
        Self {
            user_agent,
            rps: 10,
            timeout: Duration::from_secs(70),
            retries: 5,
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            max_retry_after: Duration::from_secs(600),
        }
    }
}

/// The User-Agent for this tool: `lookalike-sources/0.1.0 (contact) reqwest/0.12`.
pub fn user_agent(contact: Option<&str>) -> String {
    let contact = contact.map(str::trim).filter(|c| !c.is_empty()).unwrap_or("no contact given");
    format!("lookalike-sources/{} ({contact}) reqwest/0.12", env!("CARGO_PKG_VERSION"))
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum HttpError {
    #[error("HTTP {status} from {url}")]
    Status { status: u16, url: String, retry_after: Option<Duration> },
    #[error("timed out after {after:?}: {url}")]
    Timeout { url: String, after: Duration },
    #[error("{url}: {detail}")]
    Transport { url: String, detail: String, retryable: bool },
    #[error("{url}: replication lag (maxlag): {info}")]
    Maxlag { url: String, info: String, retry_after: Duration },
    #[error("{url}: the server asked to wait {wait:?}, more than the allowed {max:?}")]
    WaitTooLong { url: String, wait: Duration, max: Duration },
    #[error("{url}: unexpected response: {detail}")]
    Decode { url: String, detail: String },
    #[error("{url}: API error {code}: {info}")]
    Api { url: String, code: String, info: String },
}

impl HttpError {
    pub fn is_retryable(&self) -> bool {
        match self {
            HttpError::Status { status, .. } => *status == 429 || *status >= 500,
            HttpError::Timeout { .. } | HttpError::Maxlag { .. } => true,
            HttpError::Transport { retryable, .. } => *retryable,
            HttpError::WaitTooLong { .. } | HttpError::Decode { .. } | HttpError::Api { .. } => false,
        }
    }

    /// What the server asked to wait before the next try.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            HttpError::Status { retry_after, .. } => *retry_after,
            HttpError::Maxlag { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    /// The reason word of reports: "timeout" or "http_error".
    pub fn reason(&self) -> &'static str {
        match self {
            HttpError::Timeout { .. } => "timeout",
            _ => "http_error",
        }
    }
}

/// Counters of one run.
#[derive(Debug, Default)]
pub struct Stats {
    pub requests: AtomicU64,
    pub retries: AtomicU64,
    pub bytes: AtomicU64,
}

#[derive(Clone)]
pub struct Http {
    inner: Arc<Inner>,
}

struct Inner {
    client: reqwest::Client,
    limiter: DefaultDirectRateLimiter,
    /// No request starts before this instant (set from Retry-After).
    gate: Mutex<Option<Instant>>,
    cfg: HttpConfig,
    stats: Stats,
}

impl std::fmt::Debug for Http {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http").field("cfg", &self.inner.cfg).finish()
    }
}

/// Whether a body is MediaWiki's maxlag error (checked on API responses only).
#[derive(serde::Deserialize)]
struct ApiErrorBody {
    error: Option<ApiError>,
}

#[derive(serde::Deserialize)]
struct ApiError {
    #[serde(default)]
    code: String,
    #[serde(default)]
    info: String,
    #[serde(default)]
    lag: Option<f64>,
}

impl Http {
    pub fn new(cfg: HttpConfig) -> Result<Self, HttpError> {
        let client = reqwest::Client::builder()
            .user_agent(cfg.user_agent.clone())
            .connect_timeout(cfg.timeout)
            .pool_max_idle_per_host(64)
            .build()
            .map_err(|e| HttpError::Transport { url: String::new(), detail: e.to_string(), retryable: false })?;
        let rps = NonZeroU32::new(cfg.rps.max(1)).unwrap_or(NonZeroU32::MIN);
        let limiter = RateLimiter::direct(Quota::per_second(rps).allow_burst(NonZeroU32::MIN));
        Ok(Self { inner: Arc::new(Inner { client, limiter, gate: Mutex::new(None), cfg, stats: Stats::default() }) })
    }

    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    pub fn config(&self) -> &HttpConfig {
        &self.inner.cfg
    }

    /// The body of a successful response to the request `make` builds (called once per try).
    pub async fn bytes<F>(&self, make: F) -> Result<Vec<u8>, HttpError>
    where
        F: Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    {
        self.fetch(&make, false).await
    }

    /// A MediaWiki API or SPARQL JSON response, decoded; maxlag errors are waited out and retried,
    /// other API errors (`{"error":{...}}`) returned as [`HttpError::Api`].
    pub async fn json<T, F>(&self, make: F) -> Result<T, HttpError>
    where
        T: serde::de::DeserializeOwned,
        F: Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    {
        let (body, url) = self.fetch_with_url(&make, true).await?;
        if let Ok(ApiErrorBody { error: Some(e) }) = serde_json::from_slice::<ApiErrorBody>(&body) {
            return Err(HttpError::Api { url, code: e.code, info: e.info });
        }
        serde_json::from_slice(&body).map_err(|e| HttpError::Decode { url, detail: e.to_string() })
    }

    async fn fetch<F>(&self, make: &F, api: bool) -> Result<Vec<u8>, HttpError>
    where
        F: Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    {
        self.fetch_with_url(make, api).await.map(|(b, _)| b)
    }

    async fn fetch_with_url<F>(&self, make: &F, api: bool) -> Result<(Vec<u8>, String), HttpError>
    where
        F: Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    {
        let cfg = &self.inner.cfg;
        let backoff = ExponentialBuilder::default()
            .with_min_delay(cfg.backoff_base)
            .with_max_delay(cfg.backoff_max)
            .with_factor(2.0)
            .with_jitter()
            .with_max_times(cfg.retries);
        (|| self.attempt(make, api))
            .retry(backoff)
            .sleep(tokio::time::sleep)
            .when(HttpError::is_retryable)
            // Retry-After replaces the computed delay; `None` (retries used up) stays `None`.
            .adjust(|e, computed| computed.map(|d| e.retry_after().unwrap_or(d)))
            .notify(|e, wait| {
                self.inner.stats.retries.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, wait_ms = wait.as_millis() as u64, "retrying");
            })
            .await
    }

    async fn wait_gate(&self) {
        loop {
            let until = self.inner.gate.lock().map(|g| *g).unwrap_or(None);
            match until {
                Some(t) if t > Instant::now() => tokio::time::sleep_until(t.into()).await,
                _ => return,
            }
        }
    }

    fn close_gate(&self, wait: Duration) {
        let until = Instant::now() + wait;
        if let Ok(mut g) = self.inner.gate.lock() {
            if g.is_none_or(|t| t < until) {
                *g = Some(until);
            }
        }
    }

    /// One try: gate, rate cap, request, body, and (for API calls) the maxlag check.
    async fn attempt<F>(&self, make: &F, api: bool) -> Result<(Vec<u8>, String), HttpError>
    where
        F: Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    {
        let inner = &self.inner;
        self.wait_gate().await;
        inner.limiter.until_ready().await;
        let timeout = inner.cfg.timeout;
        let request = make(&inner.client).timeout(timeout).build().map_err(|e| HttpError::Transport {
            url: String::new(),
            detail: e.to_string(),
            retryable: false,
        })?;
        let url = short_url(request.url().as_str());
        inner.stats.requests.fetch_add(1, Ordering::Relaxed);
        let transport = |e: reqwest::Error, url: &str| {
            // The URL is in the message already (shortened): not again in reqwest's.
            let e = e.without_url();
            if e.is_timeout() {
                HttpError::Timeout { url: url.to_string(), after: timeout }
            } else {
                let retryable = e.is_connect() || e.is_request() || e.is_body() || e.is_decode();
                HttpError::Transport { url: url.to_string(), detail: error_chain(&e), retryable }
            }
        };
        let response = inner.client.execute(request).await.map_err(|e| transport(e, &url))?;
        let status = response.status().as_u16();
        let retry_after = parse_retry_after(response.headers());
        if !response.status().is_success() {
            if let Some(wait) = retry_after {
                if wait > inner.cfg.max_retry_after {
                    return Err(HttpError::WaitTooLong { url, wait, max: inner.cfg.max_retry_after });
                }
                if status == 429 || status == 503 {
                    self.close_gate(wait);
                }
            }
            return Err(HttpError::Status { status, url, retry_after });
        }
        let body = response.bytes().await.map_err(|e| transport(e, &url))?.to_vec();
        inner.stats.bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
        if api && body.len() < 4096 && contains(&body, b"maxlag") {
            if let Ok(ApiErrorBody { error: Some(e) }) = serde_json::from_slice::<ApiErrorBody>(&body) {
                if e.code == "maxlag" {
                    // Manual:Maxlag parameter: wait at least 5 s; Retry-After says how long.
                    let lag = e.lag.filter(|l| l.is_finite() && *l > 0.0).map(Duration::from_secs_f64);
                    let wait = retry_after.or(lag).unwrap_or(Duration::from_secs(5));
                    if wait > inner.cfg.max_retry_after {
                        return Err(HttpError::WaitTooLong { url, wait, max: inner.cfg.max_retry_after });
                    }
                    self.close_gate(wait);
                    return Err(HttpError::Maxlag { url, info: e.info, retry_after: wait });
                }
            }
        }
        Ok((body, url))
    }
}

/// A URL for messages and logs: batched API calls carry 50 titles, so long ones are cut.
fn short_url(url: &str) -> String {
    const MAX: usize = 200;
    match url.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}...", &url[..i]),
        None => url.to_string(),
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

/// `Retry-After: 120` or `Retry-After: Fri, 31 Dec 1999 23:59:59 GMT` (RFC 9110 §10.2.3).
pub fn parse_retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderValue, RETRY_AFTER};

    #[test]
    fn retry_after_both_forms() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(parse_retry_after(&h), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(30));
        h.insert(RETRY_AFTER, HeaderValue::from_str(&later).expect("header"));
        let d = parse_retry_after(&h).expect("date form");
        assert!(d > Duration::from_secs(27) && d <= Duration::from_secs(30), "{d:?}");
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(parse_retry_after(&h), None);
    }

    #[test]
    fn long_urls_cut_in_messages() {
        assert_eq!(short_url("http://a/b"), "http://a/b");
        let long = format!("http://a/?titles={}", "File:X.jpg|".repeat(50));
        assert_eq!(short_url(&long).chars().count(), 203);
    }

    #[test]
    fn user_agent_has_contact() {
        assert_eq!(
            user_agent(Some("ops@example.org")),
            format!("lookalike-sources/{} (ops@example.org) reqwest/0.12", env!("CARGO_PKG_VERSION"))
        );
    }
}
