//! lookalike's matcher as a library: the use cases (`matching`) and the adapters over
//! them, the gRPC server (`server`) and the command line (`cli`). The `matcher` binary is
//! `cli::run`.

pub mod cli;
pub mod config;
pub mod matching;
pub mod server;
