//! The command line: `serve`, `gallery build|info`, `match`, `embed`.

mod embed;
mod gallery;
mod match_images;

use crate::config::EngineArgs;
use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(name = "matcher", version, about = "lookalike: which celebrity does a face look like?")]
pub struct Cli {
    #[command(flatten)]
    pub engine: EngineArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gRPC server.
    Serve(Box<crate::server::ServeArgs>),
    /// Build or inspect a gallery file.
    #[command(subcommand)]
    Gallery(gallery::GalleryCommand),
    /// Match photos against a gallery; one JSON object per image on stdout.
    Match(match_images::MatchArgs),
    /// Print the faces of photos with their embeddings; one JSON object per image.
    Embed(embed::EmbedArgs),
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => crate::server::run(&cli.engine, *args),
        Command::Gallery(cmd) => gallery::run(&cli.engine, cmd),
        Command::Match(args) => match_images::run(&cli.engine, args),
        Command::Embed(args) => embed::run(&cli.engine, args),
    }
}

/// Logs to stderr (stdout carries the JSON results).
pub fn init_cli_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

pub fn load_models(engine: &EngineArgs) -> anyhow::Result<lookalike_engine::Models> {
    use anyhow::Context;
    lookalike_engine::Models::load(&engine.models).with_context(|| "loading the face models")
}

/// Prints one JSON object per input, in input order; exit code 1 if any input failed.
pub fn print_json_lines(results: Vec<(serde_json::Value, bool)>) -> anyhow::Result<ExitCode> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let mut all_ok = true;
    for (line, ok) in results {
        all_ok &= ok;
        writeln!(out, "{line}")?;
    }
    Ok(if all_ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
