//! The gRPC server (`matcher serve`): tonic + tokio in front of the bounded face executor.

mod convert;
mod deadline;
mod executor;
mod memory;
mod metrics;
mod observe;
mod self_check;
mod service;
mod size_limit;
mod state;

use crate::config::EngineArgs;
use crate::matching::QueryLimits;
use anyhow::Context;
use clap::Args;
use executor::{Executor, WorkerSettings};
use lookalike_proto::v1::matcher_server::MatcherServer;
use lookalike_telemetry::LogFormat;
use service::{CallLimits, Inner, MatcherService};
use state::{GallerySource, GalleryState};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tonic_health::ServingStatus;

const SERVICE_NAME: &str = "lookalike.v1.Matcher";

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Gallery file to serve (reloaded on SIGHUP or when the file changes).
    #[arg(long, env = "LOOKALIKE_GALLERY")]
    pub gallery: PathBuf,
    /// gRPC listen address.
    #[arg(long, env = "LOOKALIKE_LISTEN", default_value = "0.0.0.0:50051")]
    pub listen: SocketAddr,
    /// Prometheus text endpoint (/metrics, /healthz) listen address; empty or `off` to
    /// disable.
    #[arg(long, env = "LOOKALIKE_METRICS_LISTEN", default_value = "0.0.0.0:9090")]
    pub metrics_listen: crate::config::OptionalAddr,
    /// Worker threads, each with its own models (default: the CPUs available to the process).
    #[arg(long, env = "LOOKALIKE_WORKERS")]
    pub workers: Option<usize>,
    /// Requests that may wait for a worker; beyond that they are refused at once
    /// with RESOURCE_EXHAUSTED (default: 2 x workers).
    #[arg(long, env = "LOOKALIKE_QUEUE")]
    pub queue: Option<usize>,
    /// Largest gRPC request message in bytes (default fits a 20 MB Telegram photo).
    #[arg(long, env = "LOOKALIKE_MAX_MESSAGE_BYTES", default_value_t = 22 * 1024 * 1024)]
    pub max_message_bytes: usize,
    /// Largest top_k a caller may ask for.
    #[arg(long, env = "LOOKALIKE_MAX_TOP_K", default_value_t = 100)]
    pub max_top_k: u32,
    /// Largest max_faces a caller may ask for (all-faces mode).
    #[arg(long, env = "LOOKALIKE_MAX_FACES", default_value_t = 20)]
    pub max_faces: u32,
    /// Seconds to finish in-flight requests after SIGTERM/SIGINT.
    #[arg(long, env = "LOOKALIKE_GRACE_PERIOD", default_value_t = 20)]
    pub grace_period: u64,
    /// Close client connections after this many seconds (0 = never) so that clients
    /// behind a ClusterIP Service reconnect and spread over new pods.
    #[arg(long, env = "LOOKALIKE_MAX_CONNECTION_AGE", default_value_t = 0)]
    pub max_connection_age: u64,
    /// Check the gallery file for changes every this many seconds (0 = only on SIGHUP).
    /// Polling works on every volume type (NFS and ConfigMaps give no change events).
    #[arg(long, env = "LOOKALIKE_WATCH_INTERVAL", default_value_t = 10)]
    pub watch_interval: u64,
    /// Memory ceiling of the whole process, in MB. Each photo reserves its estimated peak
    /// (from its header) within what the process does not hold at rest, less room for a
    /// gallery reload, and waits in the queue while the photos in flight hold the rest; a
    /// photo that could never fit is refused (INVALID_ARGUMENT). Default: 90% of the
    /// container's cgroup memory limit, none without one; 0 = none.
    #[arg(long, env = "LOOKALIKE_MEMORY_BUDGET_MB")]
    pub memory_budget_mb: Option<u64>,
    /// Share of the workers' CPU time that the detection passes reached only by photos without
    /// a face the first passes can see (the retry and the CNN: 5-17x a selfie's cost) may
    /// use, over time; past it (and the burst), such photos are answered from the cheaper
    /// passes alone. 1 = no limit; 0 = only the burst, then never (docs/OPERATIONS.md).
    #[arg(long, env = "LOOKALIKE_FALLBACK_SHARE", default_value_t = 0.25, value_parser = crate::config::fraction)]
    pub fallback_share: f64,
    /// CPU seconds of retry and CNN passes available at once (and after an idle stretch),
    /// for the whole process.
    #[arg(long, env = "LOOKALIKE_FALLBACK_BURST_SECONDS", default_value = "2", value_parser = crate::config::seconds)]
    pub fallback_burst_seconds: Duration,
    /// Log format: json (one object per line) or text.
    #[arg(long, env = "LOOKALIKE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,
}

pub fn run(engine: &EngineArgs, args: ServeArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("grpc-io")
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(serve(engine.clone(), args))
}

/// What the server runs with, from its flags.
#[derive(Debug, Clone, Copy)]
struct Capacity {
    workers: usize,
    queue: usize,
    /// The whole process's memory ceiling, if any.
    ceiling: Option<u64>,
    max_message_bytes: usize,
    fallback_share: f64,
    fallback_burst: Duration,
}

impl Capacity {
    fn of(args: &ServeArgs) -> Self {
        let workers = args.workers.unwrap_or_else(lookalike_engine::parallel::default_workers).max(1);
        let ceiling = match args.memory_budget_mb {
            Some(0) => None,
            Some(mb) => Some(mb << 20),
            None => memory::default_ceiling(),
        };
        Self {
            workers,
            queue: args.queue.unwrap_or(2 * workers),
            ceiling,
            max_message_bytes: args.max_message_bytes,
            fallback_share: args.fallback_share,
            fallback_burst: args.fallback_burst_seconds,
        }
    }

    /// The workers' budget for the retry and CNN passes; none at a share of 1 or more.
    fn fallback_budget(&self) -> Option<Arc<lookalike_engine::FallbackBudget>> {
        (self.fallback_share < 1.0).then(|| {
            Arc::new(lookalike_engine::FallbackBudget::new(self.fallback_share, self.workers, self.fallback_burst))
        })
    }
}

async fn serve(engine: EngineArgs, args: ServeArgs) -> anyhow::Result<ExitCode> {
    let _telemetry = lookalike_telemetry::init(&lookalike_telemetry::Options {
        service: "lookalike-matcher",
        format: args.log_format,
        quiet_targets: &["h2"],
        export_metrics: true,
    })?;
    let metrics = Arc::new(metrics::Metrics::new()?);
    report_blas_kernel(&metrics);
    let capacity = Capacity::of(&args);
    let (health, health_service) = tonic_health::server::health_reporter();
    set_serving(&health, ServingStatus::NotServing).await;

    let gallery = Arc::new(GalleryState::new(GallerySource { path: args.gallery.clone(), engine: engine.clone() }));
    let inner = Arc::new(Inner {
        executor: OnceLock::new(),
        gallery: gallery.clone(),
        metrics: metrics.clone(),
        limits: CallLimits {
            decode: engine.limits(),
            detect: engine.detect(),
            query: QueryLimits {
                max_top_k: args.max_top_k,
                max_faces: args.max_faces,
                default_max_faces: args.max_faces.min(10),
            },
            mirror: engine.mirror,
        },
    });
    let ready = Arc::new(AtomicBool::new(false));
    if let Some(addr) = args.metrics_listen.0 {
        serve_metrics(addr, &inner, ready.clone()).await?;
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding the gRPC address {}", args.listen))?;
    let local = listener.local_addr()?;
    tracing::info!(addr = %local, workers = capacity.workers, queue = capacity.queue, "listening; loading models and gallery");

    // Load in the background so that health checks answer NOT_SERVING meanwhile.
    let mut fatal = spawn_loader(inner.clone(), engine, capacity, health.clone(), ready.clone());
    spawn_reloaders(gallery, metrics.clone(), args.watch_interval);
    let router = grpc_router(&args, inner, metrics, health_service)?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let mut server = tokio::spawn(router.serve_with_incoming_shutdown(incoming, async {
        let _ = stop_rx.await;
    }));

    let reason = tokio::select! {
        r = shutdown_signal() => r,
        Some(err) = fatal.recv() => {
            tracing::error!(error = %format!("{err:#}"), "cannot start serving");
            let _ = stop_tx.send(());
            let _ = tokio::time::timeout(Duration::from_secs(2), &mut server).await;
            return Err(err);
        }
        r = &mut server => {
            r.context("server task")??;
            anyhow::bail!("the server stopped unexpectedly");
        }
    };
    tracing::info!(signal = reason, grace_s = args.grace_period, "shutting down: draining in-flight requests");
    ready.store(false, Ordering::Release);
    set_serving(&health, ServingStatus::NotServing).await;
    let _ = stop_tx.send(());
    match tokio::time::timeout(Duration::from_secs(args.grace_period), &mut server).await {
        Ok(Ok(Ok(()))) => tracing::info!("drained; bye"),
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "server error while draining"),
        Ok(Err(e)) => tracing::warn!(error = %e, "server task failed while draining"),
        Err(_) => tracing::warn!("grace period over; exiting with requests still in flight"),
    }
    Ok(ExitCode::SUCCESS)
}

async fn set_serving(health: &tonic_health::server::HealthReporter, status: ServingStatus) {
    health.set_service_status("", status).await;
    health.set_service_status(SERVICE_NAME, status).await;
}

/// Logs the OpenBLAS kernel the encoder runs on and exports it as a metric label.
fn report_blas_kernel(metrics: &metrics::Metrics) {
    let kernel = lookalike_engine::blas::kernel();
    let coretype = std::env::var(lookalike_engine::blas::CORETYPE_VAR).unwrap_or_default();
    metrics.blas.with_label_values(&[kernel.as_str(), coretype.as_str()]).set(1);
    tracing::info!(blas_kernel = %kernel, openblas_coretype = %coretype, openblas = %lookalike_engine::blas::config(), "BLAS kernel");
}

/// The Prometheus text endpoint (/metrics, /healthz), with the executor's gauges.
async fn serve_metrics(addr: SocketAddr, inner: &Arc<Inner>, ready: Arc<AtomicBool>) -> anyhow::Result<()> {
    let listener =
        tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding the metrics endpoint {addr}"))?;
    let gauges_inner = inner.clone();
    tokio::spawn(metrics::serve_http(listener, inner.metrics.clone(), ready, move || {
        gauges_inner
            .executor
            .get()
            .map(|e| {
                let (waiting, busy) = (e.gauges.waiting.load(Ordering::Relaxed), e.gauges.busy.load(Ordering::Relaxed));
                (waiting as i64, busy as i64, (e.budget.reserved() + e.messages.reserved()) as i64)
            })
            .unwrap_or((0, 0, 0))
    }));
    Ok(())
}

/// Loads the models and the gallery and starts the executor on a blocking thread; then
/// reports serving. A failure arrives on the returned channel.
fn spawn_loader(
    inner: Arc<Inner>,
    engine: EngineArgs,
    capacity: Capacity,
    health: tonic_health::server::HealthReporter,
    ready: Arc<AtomicBool>,
) -> tokio::sync::mpsc::Receiver<anyhow::Error> {
    let (fatal_tx, fatal_rx) = tokio::sync::mpsc::channel::<anyhow::Error>(1);
    tokio::spawn(async move {
        let loading = inner.clone();
        let loaded = tokio::task::spawn_blocking(move || load_and_start(&loading, &engine, capacity)).await;
        match loaded {
            Ok(Ok(executor)) => {
                inner.metrics.workers.set(executor.workers as i64);
                if let Some(fallback) = &executor.fallback {
                    if let Err(e) = inner.metrics.watch_fallback(fallback.clone()) {
                        tracing::warn!(error = %e, "cannot export the fallback-pass counters");
                    }
                }
                let _ = inner.executor.set(executor);
                ready.store(true, Ordering::Release);
                set_serving(&health, ServingStatus::Serving).await;
                tracing::info!("serving");
            }
            Ok(Err(e)) => {
                let _ = fatal_tx.send(e).await;
            }
            Err(e) => {
                let _ = fatal_tx.send(anyhow::anyhow!("loading task failed: {e}")).await;
            }
        }
    });
    fatal_rx
}

/// Models, gallery (with its self-check), warm workers, and the memory budget measured
/// from what they hold at rest.
fn load_and_start(inner: &Inner, engine: &EngineArgs, capacity: Capacity) -> anyhow::Result<Executor> {
    let t = std::time::Instant::now();
    let models = lookalike_engine::Models::load(&engine.models).context("loading the face models")?;
    let g = inner.gallery.reload()?;
    inner.metrics.gallery_embeddings.set(g.len() as i64);
    let budget = Arc::new(memory::MemoryBudget::new(Some(0)));
    let messages = Arc::new(memory::MemoryBudget::new(Some(0)));
    let settings =
        WorkerSettings { limits: engine.limits(), detect: engine.detect(), fallback: capacity.fallback_budget() };
    let executor =
        Executor::start(&models, capacity.workers, capacity.queue, settings, budget.clone(), messages.clone());
    set_memory_budget(inner, capacity, &budget, &messages);
    tracing::info!(
        gallery_version = %g.version, identities = g.identities.len(), embeddings = g.len(),
        index = g.index_kind(), crowding_figures = g.crowding().is_some(),
        fallback_share = capacity.fallback_share, fallback_burst_s = capacity.fallback_burst.as_secs_f64(),
        ms = t.elapsed().as_millis() as u64, "models and gallery loaded"
    );
    Ok(executor)
}

/// Splits the ceiling: what the process holds at rest (models, gallery, warm workers),
/// room to load a gallery like this one beside it (a reload), the photos' bytes from
/// admission to answer (four of the largest messages at once, a budget of their own so
/// that a worker never waits for a queued job's bytes), and the rest for analyses.
fn set_memory_budget(
    inner: &Inner,
    capacity: Capacity,
    budget: &Arc<memory::MemoryBudget>,
    messages: &Arc<memory::MemoryBudget>,
) {
    lookalike_engine::cost::trim();
    let resting = memory::resident_bytes().unwrap_or(0);
    let gallery_bytes = lookalike_engine::Gallery::load_estimate(&inner.gallery.source.path).unwrap_or(0);
    let receiving = 4 * capacity.max_message_bytes as u64;
    let photos = memory::photo_budget(capacity.ceiling, resting, gallery_bytes + receiving);
    let mb = |b: u64| b >> 20;
    match (capacity.ceiling, photos) {
        (Some(c), Some(p)) => tracing::info!(
            ceiling_mb = mb(c),
            resting_mb = mb(resting),
            reload_room_mb = mb(gallery_bytes),
            receiving_mb = mb(receiving),
            photos_mb = mb(p),
            "memory budget"
        ),
        _ => tracing::info!(resting_mb = mb(resting), "memory budget: none (no cgroup limit, none set)"),
    }
    inner.metrics.memory_budget.set(photos.map_or(-1, |p| p as i64));
    budget.set_total(photos);
    messages.set_total(capacity.ceiling.map(|_| receiving));
    if let Some(ceiling) = capacity.ceiling {
        let _ = inner.gallery.room.set(state::ReloadRoom { ceiling, budget: budget.clone() });
    }
}

/// Health, reflection (v1 and v1alpha) and the Matcher service behind its layers: the
/// observability layer outermost, then the over-size message rewrite.
fn grpc_router(
    args: &ServeArgs,
    inner: Arc<Inner>,
    metrics: Arc<metrics::Metrics>,
    health_service: tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health>,
) -> anyhow::Result<tonic::transport::server::Router> {
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(lookalike_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(lookalike_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    let matcher = MatcherServer::new(MatcherService { inner })
        .max_decoding_message_size(args.max_message_bytes)
        .max_encoding_message_size(64 * 1024 * 1024);
    let matcher = tower::ServiceBuilder::new()
        .layer(observe::ObserveLayer::new(metrics))
        .layer(size_limit::layer(args.max_message_bytes))
        .service(matcher);
    let mut builder = tonic::transport::Server::builder();
    if args.max_connection_age > 0 {
        builder = builder.max_connection_age(Duration::from_secs(args.max_connection_age));
    }
    Ok(builder
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(matcher))
}

async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        std::future::pending::<()>().await;
        return "none";
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}

/// SIGHUP and (optionally) a poll of the file's mtime/size trigger a reload; a broken
/// file is refused and the serving gallery stays.
fn spawn_reloaders(gallery: Arc<GalleryState>, metrics: Arc<metrics::Metrics>, watch_interval: u64) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<&'static str>(4);
    {
        let tx = tx.clone();
        tokio::spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let Ok(mut hup) = signal(SignalKind::hangup()) else {
                return;
            };
            while hup.recv().await.is_some() {
                let _ = tx.try_send("SIGHUP");
            }
        });
    }
    if watch_interval > 0 {
        let gallery = gallery.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(watch_interval));
            tick.tick().await;
            loop {
                tick.tick().await;
                // Only once something is serving: the first load is the loader's job.
                if gallery.get().is_some() && gallery.changed_on_disk() {
                    let _ = tx.try_send("file changed");
                }
            }
        });
    }
    tokio::spawn(async move {
        while let Some(trigger) = rx.recv().await {
            let g = gallery.clone();
            let result = tokio::task::spawn_blocking(move || g.reload()).await;
            match result {
                Ok(Ok(new)) => {
                    metrics.reloads.with_label_values(&["ok"]).inc();
                    metrics.gallery_embeddings.set(new.len() as i64);
                    tracing::info!(trigger, gallery_version = %new.version, identities = new.identities.len(), "gallery reloaded");
                }
                Ok(Err(e)) if e.downcast_ref::<state::NoRoom>().is_some() => {
                    metrics.reloads.with_label_values(&["no_memory"]).inc();
                    tracing::error!(trigger, error = %format!("{e:#}"), "new gallery refused: not enough memory");
                }
                Ok(Err(e)) if e.downcast_ref::<self_check::SelfCheckFailed>().is_some() => {
                    metrics.reloads.with_label_values(&["self_check_failed"]).inc();
                    tracing::error!(trigger, error = %format!("{e:#}"), "new gallery refused: self-check failed; the previous one keeps serving");
                }
                Ok(Err(e)) => {
                    metrics.reloads.with_label_values(&["refused"]).inc();
                    tracing::error!(trigger, error = %format!("{e:#}"), "new gallery refused; the previous one keeps serving");
                }
                Err(e) => tracing::error!(error = %e, "reload task failed"),
            }
        }
    });
}
