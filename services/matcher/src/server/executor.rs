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
use lookalike_engine::{DecodeLimits, DetectConfig, FaceAnalyzer, Models};
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
        limits: DecodeLimits,
        detect: DetectConfig,
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
            let mut analyzer = FaceAnalyzer::new(models.worker_set(), limits, detect);
            let (warmed, one_at_a_time) = (warmed_tx.clone(), warming.clone());
            let spawned = std::thread::Builder::new().name(format!("face-worker-{i}")).spawn(move || {
                // One at a time: each warm-up briefly needs a photo's worth of memory.
                drop(one_at_a_time.lock().map(|_| warm_up(&mut analyzer)));
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
        Self { tx, gauges, workers: workers.max(1), queue_capacity, budget, messages }
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
