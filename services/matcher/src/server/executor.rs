//! The bounded blocking executor: a fixed pool of worker threads, each owning its own dlib
//! models (they are `Send` but not `Sync`), fed through a queue with a hard capacity.
//!
//! - A full queue refuses at once ([`ExecError::Overloaded`]): load is shed, never piled up.
//! - A job whose deadline passes while it waits is dropped without computing.
//! - A caller that goes away (cancelled RPC) frees its queue place and its memory at once:
//!   the job's closure lives in a shared slot that either the worker or the departing
//!   caller takes, whoever comes first.
//! - A panic inside a job fails that job only; the worker carries on.
//! - Each job reserves its estimated peak memory from the shared [`MemoryBudget`] before it
//!   runs; a worker waits (until the job's deadline) while the jobs in flight hold the rest,
//!   and a job larger than the whole budget is refused before it is queued. Its bytes are
//!   held in a budget of their own from admission on (a full one refuses, like a full queue).

use super::memory::MemoryBudget;
use lookalike_engine::{DecodeLimits, DetectConfig, FaceAnalyzer, FallbackBudget, Models};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ExecError {
    #[error("the server is at capacity ({queue} requests waiting); retry with backoff")]
    Overloaded { queue: usize },
    #[error("the server's memory for photos is taken by the photos in progress; retry with backoff")]
    MemoryFull,
    #[error("the deadline passed while the request waited in the queue")]
    DeadlineExceeded,
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error("internal error while processing the request")]
    WorkerFailed,
    #[error(
        "this photo needs about {need_mb} MB to analyse and this server allows {budget_mb} MB for photos; \
         send a smaller photo (fewer pixels, or as JPEG)"
    )]
    TooBig { need_mb: u64, budget_mb: u64 },
}

/// What a job holds in memory: its request's bytes from admission, its analysis's
/// estimated peak while it runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct JobMemory {
    pub held: u64,
    pub analysis: u64,
}

/// Runs every detection pass once on a blank image (no face: first pass, retry, CNN) and
/// the encoder on nothing, so that each worker's lazily allocated buffers (OpenBLAS's,
/// dlib's) exist before the server measures its resting memory and takes requests.
fn warm_up(analyzer: &mut FaceAnalyzer) {
    let blank = image::RgbImage::from_pixel(320, 240, image::Rgb([128, 128, 128]));
    if let Err(e) = analyzer.analyze_image(&blank, &lookalike_engine::AnalyzeOptions::default()) {
        tracing::warn!(error = %e, "worker warm-up failed");
    }
}

/// How each worker's analyzer is set up.
#[derive(Debug, Clone, Default)]
pub struct WorkerSettings {
    pub limits: DecodeLimits,
    pub detect: DetectConfig,
    /// The CPU share of the retry and CNN detection passes, shared by the workers (none:
    /// every pass for every photo). Attached after the warm-up, which runs every pass.
    pub fallback: Option<Arc<FallbackBudget>>,
}

type Task = Box<dyn FnOnce(&mut FaceAnalyzer) + Send>;
type FailFn = Box<dyn FnOnce(ExecError) + Send>;

struct Slot {
    task: Mutex<Option<Task>>,
    deadline: Option<Instant>,
    /// Bytes of the memory budget the job holds while it runs.
    memory: u64,
    /// Answers the caller when the job cannot run (expired) or failed (panicked).
    on_fail: Mutex<Option<FailFn>>,
}

impl Slot {
    fn take(&self) -> Option<Task> {
        self.task.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    fn fail(&self, err: ExecError) {
        if let Some(fail) = self.on_fail.lock().unwrap_or_else(|p| p.into_inner()).take() {
            fail(err);
        }
    }
}

#[derive(Default)]
pub struct Gauges {
    pub waiting: AtomicUsize,
    pub busy: AtomicUsize,
}

pub struct Executor {
    tx: crossbeam_channel::Sender<Arc<Slot>>,
    pub gauges: Arc<Gauges>,
    pub workers: usize,
    pub queue_capacity: usize,
    /// Memory for analysing photos (reserved by the workers).
    pub budget: Arc<MemoryBudget>,
    /// Memory for the photos' bytes, from admission to answer.
    pub messages: Arc<MemoryBudget>,
    /// The workers' fallback-pass budget, if any.
    pub fallback: Option<Arc<FallbackBudget>>,
}

/// Frees the queue place if the caller leaves before a worker starts the job.
struct WaitGuard {
    slot: Arc<Slot>,
    gauges: Arc<Gauges>,
}

impl Drop for WaitGuard {
    fn drop(&mut self) {
        if self.slot.take().is_some() {
            self.gauges.waiting.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Executor {
    pub fn start(
        models: &Models,
        workers: usize,
        queue_capacity: usize,
        settings: WorkerSettings,
        budget: Arc<MemoryBudget>,
        messages: Arc<MemoryBudget>,
    ) -> Self {
        let (tx, rx) = crossbeam_channel::unbounded::<Arc<Slot>>();
        let gauges = Arc::new(Gauges::default());
        let (warmed_tx, warmed_rx) = crossbeam_channel::bounded::<()>(0);
        let warming = Arc::new(Mutex::new(()));
        for i in 0..workers.max(1) {
            let rx = rx.clone();
            let gauges = gauges.clone();
            let budget = budget.clone();
            let mut analyzer = FaceAnalyzer::new(models.worker_set(), settings.limits, settings.detect);
            let fallback = settings.fallback.clone();
            let (warmed, one_at_a_time) = (warmed_tx.clone(), warming.clone());
            let spawned = std::thread::Builder::new().name(format!("face-worker-{i}")).spawn(move || {
                // One at a time: each warm-up briefly needs a photo's worth of memory.
                drop(one_at_a_time.lock().map(|_| warm_up(&mut analyzer)));
                analyzer.set_fallback_budget(fallback);
                drop(warmed);
                for slot in rx.iter() {
                    let Some(task) = slot.take() else { continue }; // caller left
                    gauges.waiting.fetch_sub(1, Ordering::AcqRel);
                    let reservation = match slot.deadline {
                        Some(d) if Instant::now() >= d => None,
                        _ => budget.reserve(slot.memory, slot.deadline),
                    };
                    let Some(reservation) = reservation else {
                        drop(task);
                        slot.fail(ExecError::DeadlineExceeded);
                        continue;
                    };
                    gauges.busy.fetch_add(1, Ordering::AcqRel);
                    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| task(&mut analyzer)));
                    gauges.busy.fetch_sub(1, Ordering::AcqRel);
                    drop(reservation);
                    if outcome.is_err() {
                        slot.fail(ExecError::WorkerFailed);
                        tracing::error!(worker = i, "a request panicked inside a worker; the worker continues");
                    }
                }
            });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a worker thread");
            }
        }
        // Every worker has warmed up (or failed to start) once all senders are gone.
        drop(warmed_tx);
        let _ = warmed_rx.recv();
        Self { tx, gauges, workers: workers.max(1), queue_capacity, budget, messages, fallback: settings.fallback }
    }

    /// Runs `f` on a worker. `memory.held` (the request's own bytes) is reserved from the
    /// message budget while the job waits and runs (refused as overload when it is spent);
    /// `memory.analysis` from the photo budget when a worker starts it (the worker waits for
    /// it). Two budgets, so that a worker never waits for memory held by jobs queued behind
    /// it. Returns the value and the time spent waiting (in the queue and for memory).
    pub async fn run<T, F>(
        &self,
        deadline: Option<Instant>,
        memory: JobMemory,
        f: F,
    ) -> Result<(T, Duration), ExecError>
    where
        T: Send + 'static,
        F: FnOnce(&mut FaceAnalyzer) -> T + Send + 'static,
    {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(ExecError::DeadlineExceeded);
        }
        if !self.budget.fits(memory.analysis) {
            let mb = |b: u64| b.div_ceil(1 << 20);
            let budget_mb = mb(self.budget.total().unwrap_or(0));
            return Err(ExecError::TooBig { need_mb: mb(memory.analysis), budget_mb });
        }
        let Some(_held) = self.messages.try_reserve(memory.held) else {
            return Err(ExecError::MemoryFull);
        };
        let memory = memory.analysis;
        let admitted = self
            .gauges
            .waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| (w < self.queue_capacity).then_some(w + 1));
        if admitted.is_err() {
            return Err(ExecError::Overloaded { queue: self.queue_capacity });
        }
        let enqueued = Instant::now();
        let (tx, rx) = oneshot::channel::<Result<(T, Duration), ExecError>>();
        let tx = Arc::new(Mutex::new(Some(tx)));
        let tx_run = tx.clone();
        let task: Task = Box::new(move |analyzer| {
            let queued = enqueued.elapsed();
            let value = f(analyzer);
            if let Some(tx) = tx_run.lock().unwrap_or_else(|p| p.into_inner()).take() {
                let _ = tx.send(Ok((value, queued)));
            }
        });
        let on_fail: FailFn = Box::new(move |err| {
            if let Some(tx) = tx.lock().unwrap_or_else(|p| p.into_inner()).take() {
                let _ = tx.send(Err(err));
            }
        });
        let slot =
            Arc::new(Slot { task: Mutex::new(Some(task)), deadline, memory, on_fail: Mutex::new(Some(on_fail)) });
        let guard = WaitGuard { slot: slot.clone(), gauges: self.gauges.clone() };
        if self.tx.send(slot).is_err() {
            return Err(ExecError::ShuttingDown);
        }
        let result = match deadline {
            Some(d) => match tokio::time::timeout_at(d.into(), rx).await {
                Ok(r) => r,
                Err(_) => return Err(ExecError::DeadlineExceeded), // guard frees the place if still waiting
            },
            None => rx.await,
        };
        drop(guard);
        match result {
            Ok(r) => r,
            Err(_) => Err(ExecError::WorkerFailed), // the worker thread is gone
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::sync::atomic::AtomicBool;

    /// One worker with the real models (the executor owns a model set per worker) and
    /// budgets of `photos` and `messages` bytes.
    fn executor(queue: usize, photos: Option<u64>, messages: Option<u64>) -> Executor {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/models");
        let models = Models::load(&dir).expect("the models (scripts/fetch-models.sh)");
        let (budget, messages) = (Arc::new(MemoryBudget::new(photos)), Arc::new(MemoryBudget::new(messages)));
        Executor::start(&models, 1, queue, WorkerSettings::default(), budget, messages)
    }

    /// A job that holds the worker until `release` is set.
    fn holding(release: Arc<AtomicBool>) -> impl FnOnce(&mut FaceAnalyzer) -> u32 + Send + 'static {
        move |_| {
            while !release.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(2));
            }
            1
        }
    }

    async fn until(what: impl Fn() -> bool) {
        let end = Instant::now() + Duration::from_secs(10);
        while !what() {
            assert!(Instant::now() < end, "timed out");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_queue_refuses_at_once_and_a_departed_caller_frees_its_place() {
        let e = Arc::new(executor(1, None, None));
        let release = Arc::new(AtomicBool::new(false));
        let busy = tokio::spawn({
            let (e, r) = (e.clone(), release.clone());
            async move { e.run(None, JobMemory::default(), holding(r)).await }
        });
        until(|| e.gauges.busy.load(Ordering::Acquire) == 1).await;
        // One place in the queue: taken, then the next caller is refused at once.
        let ran = Arc::new(AtomicBool::new(false));
        let waiting = tokio::spawn({
            let (e, ran) = (e.clone(), ran.clone());
            async move { e.run(None, JobMemory::default(), move |_| ran.store(true, Ordering::Release)).await }
        });
        until(|| e.gauges.waiting.load(Ordering::Acquire) == 1).await;
        let refused = tokio::time::timeout(Duration::from_secs(2), e.run(None, JobMemory::default(), |_| ())).await;
        assert_eq!(refused.expect("refused at once, not queued").unwrap_err(), ExecError::Overloaded { queue: 1 });
        // The waiting caller leaves: its place is free again and its job never runs.
        waiting.abort();
        until(|| e.gauges.waiting.load(Ordering::Acquire) == 0).await;
        let admitted = tokio::spawn({
            let e = e.clone();
            async move { e.run(None, JobMemory::default(), |_| 7).await }
        });
        until(|| e.gauges.waiting.load(Ordering::Acquire) == 1).await;
        release.store(true, Ordering::Release);
        assert_eq!(busy.await.unwrap().unwrap().0, 1);
        assert_eq!(admitted.await.unwrap().unwrap().0, 7);
        assert!(!ran.load(Ordering::Acquire), "a departed caller's job must not run");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_job_whose_deadline_passes_in_the_queue_is_dropped_without_running() {
        let e = Arc::new(executor(4, None, None));
        let release = Arc::new(AtomicBool::new(false));
        let busy = tokio::spawn({
            let (e, r) = (e.clone(), release.clone());
            async move { e.run(None, JobMemory::default(), holding(r)).await }
        });
        until(|| e.gauges.busy.load(Ordering::Acquire) == 1).await;
        let ran = Arc::new(AtomicBool::new(false));
        let r = ran.clone();
        let late = e
            .run(Some(Instant::now() + Duration::from_millis(50)), JobMemory::default(), move |_| {
                r.store(true, Ordering::Release)
            })
            .await;
        assert_eq!(late.unwrap_err(), ExecError::DeadlineExceeded);
        release.store(true, Ordering::Release);
        busy.await.unwrap().unwrap();
        // The worker skips the expired job and takes the next one.
        assert_eq!(e.run(None, JobMemory::default(), |_| 3).await.unwrap().0, 3);
        assert!(!ran.load(Ordering::Acquire));
        let past = e.run(Some(Instant::now() - Duration::from_millis(1)), JobMemory::default(), |_| ()).await;
        assert_eq!(past.unwrap_err(), ExecError::DeadlineExceeded);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panic_fails_its_job_only_and_the_worker_carries_on() {
        let e = executor(2, None, None);
        let failed = e.run(None, JobMemory::default(), |_| -> u32 { panic!("a bug in one request") }).await;
        assert_eq!(failed.unwrap_err(), ExecError::WorkerFailed);
        assert_eq!(e.run(None, JobMemory::default(), |_| 5).await.unwrap().0, 5);
        // The worker marks itself idle just after answering.
        until(|| e.gauges.busy.load(Ordering::Acquire) == 0).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn memory_refusals_a_photo_too_big_for_the_budget_and_a_full_message_budget() {
        let e = executor(4, Some(100 << 20), Some(10 << 20));
        let big = JobMemory { held: 1, analysis: 150 << 20 };
        assert_eq!(e.run(None, big, |_| ()).await.unwrap_err(), ExecError::TooBig { need_mb: 150, budget_mb: 100 });
        let heavy_message = JobMemory { held: 11 << 20, analysis: 1 };
        assert_eq!(e.run(None, heavy_message, |_| ()).await.unwrap_err(), ExecError::MemoryFull);
        let fits = JobMemory { held: 5 << 20, analysis: 90 << 20 };
        assert_eq!(e.run(None, fits, |_| 9).await.unwrap().0, 9);
        // Everything handed back (the worker frees the reservation just after answering).
        until(|| e.budget.reserved() == 0 && e.messages.reserved() == 0).await;
    }
}
