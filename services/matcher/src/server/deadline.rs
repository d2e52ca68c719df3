//! Client deadlines (`grpc-timeout`).
//!
//! tonic runs its own timer on the same header, started before our handler, and when it
//! fires it drops the handler and answers CANCELLED. To answer DEADLINE_EXCEEDED as the
//! gRPC docs define it (and count it), our deadline is measured from the moment the
//! request reached the service stack and ends a little before tonic's. A handler that is
//! dropped anyway (tonic's timer, or the client going away) is still counted, by
//! [`CallGuard`], under the right code.

use std::time::{Duration, Instant};

/// When the request entered the service stack; set by [`stamp_arrival`].
#[derive(Debug, Clone, Copy)]
pub struct Arrival(pub Instant);

/// A tower layer that stamps [`Arrival`] on every request; it sits inside tonic's
/// timeout layer, so the two clocks start together.
pub fn stamp_arrival<B>() -> tower::util::MapRequestLayer<fn(http::Request<B>) -> http::Request<B>> {
    tower::util::MapRequestLayer::new(|mut req: http::Request<B>| {
        req.extensions_mut().insert(Arrival(Instant::now()));
        req
    })
}

/// The deadline of a call: its arrival plus its `grpc-timeout`, less a margin so that we
/// answer before tonic's own timer (a tenth of the timeout, 1 to 50 ms).
pub fn deadline_of<T>(request: &tonic::Request<T>) -> Option<Instant> {
    let timeout = parse_grpc_timeout(request.metadata().get("grpc-timeout")?.to_str().ok()?)?;
    let arrival = request.extensions().get::<Arrival>().map_or_else(Instant::now, |a| a.0);
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

/// Records a call that never finished (its handler was dropped): DEADLINE_EXCEEDED when
/// the deadline had passed, CANCELLED otherwise. Disarmed by [`CallGuard::finish`].
pub struct CallGuard<F: FnOnce(tonic::Code)> {
    deadline: Option<Instant>,
    on_drop: Option<F>,
}

impl<F: FnOnce(tonic::Code)> CallGuard<F> {
    pub fn new(deadline: Option<Instant>, on_drop: F) -> Self {
        Self { deadline, on_drop: Some(on_drop) }
    }

    pub fn finish(mut self) {
        self.on_drop = None;
    }
}

impl<F: FnOnce(tonic::Code)> Drop for CallGuard<F> {
    fn drop(&mut self) {
        if let Some(record) = self.on_drop.take() {
            let expired = self.deadline.is_some_and(|d| Instant::now() >= d);
            record(if expired { tonic::Code::DeadlineExceeded } else { tonic::Code::Cancelled });
        }
    }
}

#[cfg(test)]
mod tests {
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
        let mut req = tonic::Request::new(());
        req.metadata_mut().insert("grpc-timeout", tonic::metadata::MetadataValue::from_static("1S"));
        req.extensions_mut().insert(Arrival(arrival));
        let d = deadline_of(&req).unwrap();
        assert_eq!(d - arrival, Duration::from_millis(950));
        let bare = tonic::Request::new(());
        assert!(deadline_of(&bare).is_none());
    }

    #[test]
    fn guard_reports_dropped_calls_by_deadline() {
        let code = std::cell::Cell::new(None);
        drop(CallGuard::new(Some(Instant::now() - Duration::from_millis(1)), |c| code.set(Some(c))));
        assert_eq!(code.get(), Some(tonic::Code::DeadlineExceeded));
        drop(CallGuard::new(Some(Instant::now() + Duration::from_secs(60)), |c| code.set(Some(c))));
        assert_eq!(code.get(), Some(tonic::Code::Cancelled));
        code.set(None);
        CallGuard::new(None, |c| code.set(Some(c))).finish();
        assert_eq!(code.get(), None);
    }
}
