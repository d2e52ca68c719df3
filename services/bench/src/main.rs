//! `lookalike-bench`: the benchmark suite's measuring tool. `scripts/bench.sh` runs it
//! section by section (with the reference peer in between) and writes docs/BENCHMARKS.md.
//! Every subcommand prints one JSON object (and writes it to `--json FILE`).
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod cards;
mod clean;
mod common;
mod engine_bench;
mod flood;
mod grpc;
mod lfw;
mod search_bench;

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(name = "lookalike-bench", about = "lookalike's benchmarks (see scripts/bench.sh)")]
struct Cli {
    /// dlib model files.
    #[arg(long, env = "LOOKALIKE_MODELS", default_value = "assets/models", global = true)]
    models: PathBuf,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Photos per second of the in-process engine (read, analyze, search) with N workers.
    Throughput(engine_bench::ThroughputArgs),
    /// Per-stage latency at several photo sizes.
    Stages(engine_bench::StagesArgs),
    /// Gallery build throughput (photos/s) with the gallery builder.
    GalleryBuild(engine_bench::GalleryBuildArgs),
    /// Embed every photo of a `<Person>/<photo>` folder (main face) into an embedding file.
    Embed(lfw::EmbedArgs),
    /// Rank-1 identification and pair verification from embedding files.
    Accuracy(lfw::AccuracyArgs),
    /// Exact vs HNSW search on real + synthetic embeddings.
    Search(search_bench::SearchArgs),
    /// A gallery file of N embeddings from cached embeddings (real, then synthetic).
    MakeGallery(search_bench::MakeGalleryArgs),
    /// gRPC load generator against `matcher serve`, with its memory.
    Grpc(grpc::GrpcArgs),
    /// The reply card's cost (compose ms, bytes) next to the matcher's for the same photo.
    Cards(cards::CardsArgs),
    /// Peak memory, CPU per photo and memory left after a flood of the worst photos, per
    /// kind, for one or more `matcher` builds (issue 10).
    Flood(flood::FloodArgs),
    /// Gallery cleaning on lfw-dev: the subject rule, consensus and injected mislabels
    /// (issue 9).
    Clean(clean::CleanArgs),
}

fn main() -> anyhow::Result<()> {
    // Measure what the matcher runs: the same BLAS kernel choice (lookalike_engine::blas).
    if let Some(err) = lookalike_engine::blas::reexec_with_best_kernel() {
        eprintln!("lookalike-bench: could not restart with a faster OpenBLAS kernel ({err})");
    }
    lookalike_engine::cost::tune_allocator();
    let cli = Cli::parse();
    let m = cli.models.clone();
    match cli.command {
        Cmd::Throughput(a) => engine_bench::throughput(a, &m),
        Cmd::Stages(a) => engine_bench::stages(a, &m),
        Cmd::GalleryBuild(a) => engine_bench::gallery_build(a, &m),
        Cmd::Embed(a) => lfw::embed(a, &m),
        Cmd::Accuracy(a) => lfw::accuracy(a),
        Cmd::Search(a) => search_bench::search(a),
        Cmd::MakeGallery(a) => search_bench::make_gallery(a),
        Cmd::Grpc(a) => grpc::grpc(a, &m),
        Cmd::Cards(a) => cards::cards(a, &m),
        Cmd::Flood(a) => flood::flood(a, &m),
        Cmd::Clean(a) => clean::clean(a, &m),
    }
}
