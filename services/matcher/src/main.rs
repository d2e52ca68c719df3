//! `matcher`: lookalike's face-matching gRPC server and its command-line tool.

mod cli;
mod config;
mod server;

use clap::Parser;

fn main() -> std::process::ExitCode {
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
