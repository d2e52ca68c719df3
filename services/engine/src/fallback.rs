//! A share of the workers' CPU time for the detection passes that only a photo without a
//! face the first passes can see reaches: the retry (HOG on an upsampled, bordered copy) and
//! dlib's CNN. Together they cost 5-17x a photo with a face (docs/BENCHMARKS.md 8b), and a
//! public bot gets memes, screenshots and landscapes; unbounded, a stream of them would set
//! the server's capacity instead of the selfies it is planned for.
//!
//! A token bucket of CPU seconds, shared by the workers of one process: it fills at
//! `share x workers` seconds per second up to `burst`, a fallback pass runs only while it
//! holds any, and the pass's own thread CPU time is taken from it afterwards (it may go
//! below zero: a pass is never cut short, the next ones wait longer). So over any stretch of
//! time, fallback passes use at most `share` of the workers plus `burst`, whatever arrives;
//! a photo whose fallback is skipped is answered from the passes it had (no face, or the
//! faces found). When traffic leaves the bucket full (the common case), every photo gets
//! every pass, as without a budget.
//!
//! Written here rather than taken from a rate-limiting crate (governor and the like count
//! events admitted in advance): the cost of a pass is known only after it ran, and it is
//! charged in CPU time, not in calls.

use crate::detect::DetectPass;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Passes run and skipped since start, and the CPU time they used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PassCounts {
    pub ran: u64,
    pub skipped: u64,
    pub cpu: Duration,
}

#[derive(Debug)]
struct Bucket {
    /// CPU seconds available (may be negative after a long pass).
    tokens: f64,
    at: Instant,
}

#[derive(Debug, Default)]
struct Counters {
    ran: AtomicU64,
    skipped: AtomicU64,
    cpu_ns: AtomicU64,
}

#[derive(Debug)]
pub struct FallbackBudget {
    /// CPU seconds added per second.
    rate: f64,
    /// Most CPU seconds held.
    burst: f64,
    bucket: Mutex<Bucket>,
    /// Per pass, indexed by `DetectPass as usize` (only the fallback passes are counted).
    counters: [Counters; 4],
}

impl FallbackBudget {
    /// At most `share` of `workers` workers' time (0 = the fallback passes never run once the
    /// burst is spent), with `burst` of CPU time available at once (and at start).
    pub fn new(share: f64, workers: usize, burst: Duration) -> Self {
        let burst = burst.as_secs_f64();
        Self {
            rate: share.max(0.0) * workers.max(1) as f64,
            burst,
            bucket: Mutex::new(Bucket { tokens: burst, at: Instant::now() }),
            counters: Default::default(),
        }
    }

    /// Runs `pass` if the budget holds any time, charging it the CPU time `pass` took on
    /// this thread; `None` when it is skipped.
    pub fn run<T>(&self, which: DetectPass, pass: impl FnOnce() -> T) -> Option<T> {
        let counters = &self.counters[which as usize];
        if !self.admit(Instant::now()) {
            counters.skipped.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let wall = Instant::now();
        let cpu = crate::cost::thread_cpu_time();
        let out = pass();
        // Without a thread clock (not on Linux), the wall time is an upper bound.
        let spent = match (cpu, crate::cost::thread_cpu_time()) {
            (Some(a), Some(b)) => b.saturating_sub(a),
            _ => wall.elapsed(),
        };
        self.charge(spent, Instant::now());
        counters.ran.fetch_add(1, Ordering::Relaxed);
        counters.cpu_ns.fetch_add(u64::try_from(spent.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
        Some(out)
    }

    pub fn counts(&self, which: DetectPass) -> PassCounts {
        let c = &self.counters[which as usize];
        PassCounts {
            ran: c.ran.load(Ordering::Relaxed),
            skipped: c.skipped.load(Ordering::Relaxed),
            cpu: Duration::from_nanos(c.cpu_ns.load(Ordering::Relaxed)),
        }
    }

    fn bucket(&self, now: Instant) -> std::sync::MutexGuard<'_, Bucket> {
        let mut b = self.bucket.lock().unwrap_or_else(|p| p.into_inner());
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.rate).min(self.burst);
        b.at = b.at.max(now);
        b
    }

    fn admit(&self, now: Instant) -> bool {
        self.bucket(now).tokens > 0.0
    }

    fn charge(&self, spent: Duration, now: Instant) {
        self.bucket(now).tokens -= spent.as_secs_f64();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_burst_is_spent_then_the_share_refills_it() {
        // Half of 2 workers: one CPU second per second, 2 s at once.
        let b = FallbackBudget::new(0.5, 2, Duration::from_secs(2));
        let t0 = Instant::now();
        assert!(b.admit(t0));
        b.charge(Duration::from_millis(1500), t0);
        assert!(b.admit(t0), "0.5 s left");
        b.charge(Duration::from_millis(1500), t0);
        assert!(!b.admit(t0), "1 s in debt");
        assert!(!b.admit(t0 + Duration::from_millis(900)), "-0.1 s");
        assert!(b.admit(t0 + Duration::from_millis(1100)), "+0.1 s");
        // A long idle stretch refills up to the burst only.
        let later = t0 + Duration::from_secs(3600);
        b.charge(Duration::from_millis(2100), later);
        assert!(!b.admit(later), "the burst caps what idle time saves");
    }

    #[test]
    fn a_skipped_pass_does_not_run_and_is_counted() {
        let b = FallbackBudget::new(0.0, 1, Duration::from_millis(1));
        let spin = || {
            let t = Instant::now();
            while t.elapsed() < Duration::from_millis(5) {
                std::hint::black_box(0u64);
            }
            1
        };
        assert_eq!(b.run(DetectPass::Retry, spin), Some(1));
        assert_eq!(b.run(DetectPass::Retry, spin), None, "the first pass spent the budget");
        assert_eq!(b.run(DetectPass::Cnn, || 2), None, "one budget for both passes");
        let retry = b.counts(DetectPass::Retry);
        assert_eq!((retry.ran, retry.skipped), (1, 1));
        assert!(retry.cpu >= Duration::from_millis(3), "{:?}", retry.cpu);
        assert_eq!(b.counts(DetectPass::Cnn).skipped, 1);
    }
}
