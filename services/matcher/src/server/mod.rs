//! The gRPC server (`matcher serve`).
use crate::config::EngineArgs;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct ServeArgs {}

pub fn run(_engine: &EngineArgs, _args: ServeArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not yet")
}
