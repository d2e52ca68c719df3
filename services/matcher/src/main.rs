//! `matcher`: lookalike's face-matching gRPC server and its command-line tool.

use clap::Parser;
use lookalike_matcher::{cli, config};

fn main() -> std::process::ExitCode {
    // Before anything else (no thread may run yet): the best BLAS kernel for this CPU.
    if let Some(err) = lookalike_engine::blas::reexec_with_best_kernel() {
        eprintln!("matcher: could not restart with a faster OpenBLAS kernel ({err}); carrying on");
    }
    lookalike_engine::cost::tune_allocator();
    if let Err(msg) = config::check_cpu() {
        eprintln!("matcher: {msg}");
        return std::process::ExitCode::from(2);
    }
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("matcher: error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
