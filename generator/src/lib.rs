//! gen: an accurate, open-loop HTTP load generator.
//!
//! Data flow: `cli` (flags) -> `config` (a resolved [`config::RunConfig`]) -> `plan` (one
//! [`plan::Plan`] for every load shape) -> `engine` (pinned io_uring worker threads, one
//! connection state machine) -> `http` (sans-io codec) -> `measure` (per-thread HDR
//! histograms, mergeable snapshots) -> `export` (terminal, JSON, HTML reports, Prometheus,
//! compare); `capacity` (a search for the highest rate that meets SLOs, step by step through
//! the same engine); `cluster` (worker agent, coordinator, wire types); `probes` (eBPF
//! kernel timing of the same requests, optional at run time).
//!
//! Subcommands: `gen capacity`, `gen coordinator`, `gen worker`, `gen report`, `gen compare`;
//! anything else is a single-node run.

pub mod capacity;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod engine;
pub mod export;
pub mod http;
pub mod measure;
pub mod plan;
pub mod probes;
pub mod scenario;

/// Entry point of the `gen` binary; returns the process exit code.
pub fn run() -> i32 {
    let mut argv = std::env::args_os().skip(1);
    let sub = argv.next();
    let rest = || argv.map(|a| a.to_string_lossy().into_owned()).collect();
    match sub.as_ref().and_then(|s| s.to_str()) {
        Some("capacity") => capacity::main(rest()),
        Some("coordinator") => cluster::cmd::coordinator_main(rest()),
        Some("worker") => cluster::cmd::worker_main(rest()),
        Some("report") => export::cmd::report_main(rest()),
        Some("compare") => export::cmd::compare_main(rest()),
        _ => cli::main(),
    }
}
