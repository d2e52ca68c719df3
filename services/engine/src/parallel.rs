//! Batch work (gallery builds, the command line, benchmarks) over N worker threads, each
//! with its own models, results in input order.

use crate::analyze::FaceAnalyzer;
use crate::decode::DecodeLimits;
use crate::detect::DetectConfig;
use crate::models::Models;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

/// Default worker count: the CPUs this process may use (cgroup-aware).
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// Applies `f` to every item on `workers` threads. `progress(done, total)` runs on the
/// calling thread after each item.
pub fn map_items<I, T, F>(
    models: &Models,
    limits: DecodeLimits,
    detect: DetectConfig,
    workers: usize,
    items: &[I],
    f: F,
    mut progress: impl FnMut(usize, usize),
) -> Vec<T>
where
    I: Sync,
    T: Send,
    F: Fn(&mut FaceAnalyzer, &I) -> T + Sync,
{
    let total = items.len();
    let next = AtomicUsize::new(0);
    let mut out: Vec<Option<T>> = (0..total).map(|_| None).collect();
    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::channel::<(usize, T)>();
        for _ in 0..workers.clamp(1, total.max(1)) {
            let tx = tx.clone();
            let (next, f) = (&next, &f);
            let worker_models = models.worker_set();
            scope.spawn(move || {
                let mut analyzer = FaceAnalyzer::new(worker_models, limits, detect);
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    if tx.send((i, f(&mut analyzer, item))).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        for (done, (i, value)) in rx.iter().enumerate() {
            out[i] = Some(value);
            progress(done + 1, total);
        }
    });
    out.into_iter().flatten().collect()
}
