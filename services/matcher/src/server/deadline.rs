//! Client deadlines (`grpc-timeout`).
//!
//! tonic runs its own timer on the same header, started before our handler, and when it
//! fires it drops the handler and answers CANCELLED. To answer DEADLINE_EXCEEDED as the
//! gRPC docs define it (and count it), our deadline is measured from the moment the call
//! reached the Matcher service (where `observe` stamps it) and ends a little before
//! tonic's. A call that is dropped anyway is still recorded by `observe`, under the right
//! code.

use std::time::{Duration, Instant};

/// A call's deadline, if the client set one; a request extension set by `observe`.
#[derive(Debug, Clone, Copy)]
pub struct Deadline(pub Option<Instant>);

/// The deadline a handler works to.
pub fn deadline_of<T>(request: &tonic::Request<T>) -> Option<Instant> {
    request.extensions().get::<Deadline>().and_then(|d| d.0)
}

/// The deadline of a call that arrived at `arrival`: plus its `grpc-timeout`, less a margin
/// so that we answer before tonic's own timer (a tenth of the timeout, 1 to 50 ms).
pub fn deadline_from(headers: &http::HeaderMap, arrival: Instant) -> Option<Instant> {
    let timeout = parse_grpc_timeout(headers.get("grpc-timeout")?.to_str().ok()?)?;
    let margin = (timeout / 10).clamp(Duration::from_millis(1), Duration::from_millis(50));
    arrival.checked_add(timeout.saturating_sub(margin))
}

/// `grpc-timeout` per the gRPC HTTP/2 spec: up to 8 digits and a unit.
pub fn parse_grpc_timeout(v: &str) -> Option<Duration> {
    let (num, unit) = v.split_at(v.len().checked_sub(1)?);
    if num.is_empty() || num.len() > 8 {
        return None;
    }
    let n: u64 = num.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn parses_every_unit_and_refuses_junk() {
        assert_eq!(parse_grpc_timeout("30m"), Some(Duration::from_millis(30)));
        assert_eq!(parse_grpc_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout("5M"), Some(Duration::from_secs(300)));
        assert_eq!(parse_grpc_timeout("7u"), Some(Duration::from_micros(7)));
        assert_eq!(parse_grpc_timeout("9n"), Some(Duration::from_nanos(9)));
        for bad in ["", "m", "123456789m", "12x", "-1m", "1.5S"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad}");
        }
    }

    #[test]
    fn deadline_counts_from_arrival_and_ends_before_the_timeout() {
        let arrival = Instant::now() - Duration::from_millis(500);
        let mut headers = http::HeaderMap::new();
        headers.insert("grpc-timeout", http::HeaderValue::from_static("1S"));
        let d = deadline_from(&headers, arrival).unwrap();
        assert_eq!(d - arrival, Duration::from_millis(950));
        assert!(deadline_from(&http::HeaderMap::new(), arrival).is_none());
        let mut req = tonic::Request::new(());
        assert!(deadline_of(&req).is_none());
        req.extensions_mut().insert(Deadline(Some(d)));
        assert_eq!(deadline_of(&req), Some(d));
    }
}
