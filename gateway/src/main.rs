//! `tg-gateway`: see the crate docs and gateway/README.md.

use std::process::ExitCode;

use clap::Parser;
use tg_gateway::config::Args;

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tg-gateway: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let _telemetry = match lookalike_telemetry::init(&lookalike_telemetry::Options {
            service: "lookalike-gateway",
            format: args.log_format,
            // At debug level HTTP client internals print request URLs; Bot API URLs hold the token.
            quiet_targets: &["hyper", "hyper_util", "reqwest", "h2"],
            export_metrics: false,
        }) {
            Ok(g) => g,
            Err(e) => {
                eprintln!("tg-gateway: cannot set up logging: {e:#}");
                return ExitCode::FAILURE;
            }
        };
        let config = match args.validate() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "invalid configuration");
                return ExitCode::from(2);
            }
        };
        match tg_gateway::app::run(config).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = format!("{e:#}"), "gateway failed");
                ExitCode::FAILURE
            }
        }
    })
}
