//! gen: an accurate, open-loop HTTP load generator.
//!
//! Data flow: `cli` (flags) -> `config` (a resolved [`config::RunConfig`]) -> `plan` (one
//! [`plan::Plan`] for every load shape) -> `engine` (pinned io_uring worker threads, one
//! connection state machine) -> `http` (sans-io codec) -> `measure` (per-thread HDR
//! histograms, mergeable snapshots) -> `export` (terminal and JSON reports).

pub mod cli;
pub mod config;
pub mod engine;
pub mod export;
pub mod http;
pub mod measure;
pub mod plan;
pub mod scenario;

/// Entry point of the `gen` binary; returns the process exit code.
pub fn run() -> i32 {
    cli::main()
}
