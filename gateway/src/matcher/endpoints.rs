//! Which matcher replicas exist, and which one gets the next call.
//!
//! One tonic channel per replica and plain round-robin over them: HTTP/2 multiplexes all
//! calls to a replica on one connection, so a Kubernetes ClusterIP Service would pin a
//! gateway to one matcher pod. A headless Service (`dns:///host:port`) lists every pod,
//! re-resolved periodically; a failed call is retried on the next replica.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use lookalike_proto::v1::matcher_client::MatcherClient;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};

use super::MatcherError;
use crate::metrics::METRICS;

/// Where the matchers are, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Fixed URLs (`http://host:port`).
    Static(Vec<String>),
    /// Every address `host` resolves to, on `port`.
    Dns { host: String, port: u16 },
}

impl Target {
    /// Parses `dns:///host:port` or a comma-separated URL list (`host:port` alone means
    /// `http://host:port`).
    pub fn parse(s: &str) -> Result<Self, MatcherError> {
        let bad = |why: &str| MatcherError::Config(format!("matcher address {s:?}: {why}"));
        let s = s.trim();
        if let Some(rest) = s.strip_prefix("dns:///") {
            let (host, port) = rest.rsplit_once(':').ok_or_else(|| bad("needs :port"))?;
            let port = port.parse().map_err(|_| bad("bad port"))?;
            if host.is_empty() {
                return Err(bad("empty host"));
            }
            return Ok(Self::Dns { host: host.trim_matches(['[', ']']).to_owned(), port });
        }
        let mut urls = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let url = if part.starts_with("http://") {
                part.to_owned()
            } else if part.contains("://") {
                return Err(bad("only http:// (plaintext gRPC) is supported"));
            } else {
                format!("http://{part}")
            };
            urls.push(url.trim_end_matches('/').to_owned());
        }
        if urls.is_empty() {
            return Err(bad("no address"));
        }
        Ok(Self::Static(urls))
    }
}

#[derive(Clone)]
pub struct Backend {
    pub url: String,
    pub client: MatcherClient<Channel>,
}

/// The current replicas; swapped as a whole when DNS changes.
#[derive(Default)]
pub struct Backends {
    list: RwLock<Arc<Vec<Backend>>>,
    next: AtomicUsize,
}

fn channel(url: &str) -> Result<Channel, MatcherError> {
    let endpoint = Endpoint::from_shared(url.to_owned())
        .map_err(|e| MatcherError::Config(format!("matcher address {url:?}: {e}")))?
        .connect_timeout(Duration::from_secs(2))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(20))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true);
    // Lazy: a replica that is down now is retried on use, not fatal at start-up.
    Ok(endpoint.connect_lazy())
}

impl Backends {
    pub fn new() -> Self {
        Self::default()
    }

    /// The next replica in round-robin order, or None when none is known.
    pub fn pick(&self) -> Option<Backend> {
        let list = self.list.read().unwrap_or_else(|p| p.into_inner()).clone();
        if list.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % list.len();
        list.get(i).cloned()
    }

    pub fn urls(&self) -> Vec<String> {
        let list = self.list.read().unwrap_or_else(|p| p.into_inner()).clone();
        list.iter().map(|b| b.url.clone()).collect()
    }

    /// Makes `urls` the replica set, keeping the channels (and connections) of replicas
    /// that stay.
    pub fn set(&self, urls: &[String]) -> Result<(), MatcherError> {
        let current = self.list.read().unwrap_or_else(|p| p.into_inner()).clone();
        let mut existing: HashMap<&str, &Backend> = current.iter().map(|b| (b.url.as_str(), b)).collect();
        let mut next = Vec::with_capacity(urls.len());
        for url in urls {
            match existing.remove(url.as_str()) {
                Some(b) => next.push(b.clone()),
                None => next.push(Backend {
                    url: url.clone(),
                    client: MatcherClient::new(channel(url)?)
                        .max_decoding_message_size(32 * 1024 * 1024)
                        .max_encoding_message_size(64 * 1024 * 1024),
                }),
            }
        }
        METRICS.set_endpoints(next.len());
        *self.list.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(next);
        Ok(())
    }
}

/// Resolves `host:port` to sorted `http://ip:port` URLs.
async fn resolve(host: &str, port: u16) -> std::io::Result<Vec<String>> {
    let mut urls: Vec<String> =
        tokio::net::lookup_host((host, port)).await?.map(|addr| format!("http://{addr}")).collect();
    urls.sort();
    urls.dedup();
    Ok(urls)
}

/// Sets up the replica set for `target`; for DNS, also starts the refresh task.
pub async fn start(
    target: &Target,
    refresh: Duration,
    shutdown: CancellationToken,
) -> Result<Arc<Backends>, MatcherError> {
    let backends = Arc::new(Backends::new());
    match target.clone() {
        Target::Static(urls) => backends.set(&urls)?,
        Target::Dns { host, port } => {
            refresh_once(&backends, &host, port).await;
            let b = backends.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(refresh) => refresh_once(&b, &host, port).await,
                    }
                }
            });
        }
    }
    Ok(backends)
}

async fn refresh_once(backends: &Backends, host: &str, port: u16) {
    match resolve(host, port).await {
        // An empty or failed lookup keeps the old set: a DNS hiccup must not make every
        // replica disappear at once.
        Ok(urls) if !urls.is_empty() => {
            if urls != backends.urls() {
                tracing::info!(host, ?urls, "matcher replicas changed");
                if let Err(e) = backends.set(&urls) {
                    tracing::warn!(error = %e, "cannot use resolved matcher addresses");
                }
            }
        }
        Ok(_) => tracing::warn!(host, "matcher DNS name resolved to no address; keeping the old set"),
        Err(e) => {
            tracing::warn!(host, error = %e, "matcher DNS lookup failed; keeping the old set")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_targets() {
        assert_eq!(
            Target::parse("dns:///matcher.lookalike.svc:50051").unwrap(),
            Target::Dns { host: "matcher.lookalike.svc".into(), port: 50051 }
        );
        assert_eq!(
            Target::parse("http://a:1, b:2,").unwrap(),
            Target::Static(vec!["http://a:1".into(), "http://b:2".into()])
        );
        assert!(Target::parse("https://a:1").is_err());
        assert!(Target::parse("dns:///nohost").is_err());
        assert!(Target::parse(" , ").is_err());
    }

    #[tokio::test]
    async fn round_robin_and_reuse() {
        let b = Backends::new();
        assert!(b.pick().is_none());
        b.set(&["http://127.0.0.1:1".into(), "http://127.0.0.1:2".into()]).unwrap();
        let picks: Vec<String> = (0..4).map(|_| b.pick().unwrap().url).collect();
        assert_eq!(picks[0], picks[2]);
        assert_ne!(picks[0], picks[1]);
        b.set(&["http://127.0.0.1:2".into()]).unwrap();
        assert_eq!(b.pick().unwrap().url, "http://127.0.0.1:2");
    }

    #[tokio::test]
    async fn dns_target_resolves_localhost() {
        let t = Target::parse("dns:///localhost:50051").unwrap();
        let b = start(&t, Duration::from_secs(60), CancellationToken::new()).await.unwrap();
        assert!(b.urls().iter().any(|u| u.contains("127.0.0.1:50051")), "{:?}", b.urls());
    }
}
