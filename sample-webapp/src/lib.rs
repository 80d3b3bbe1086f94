//! `sample-webapp`: a byte-exact Rust twin of the Flask app from the "Distributed Load
//! Testing Using Kubernetes" tutorial, the target every part of gen is tested against.
//!
//! Besides the tutorial's three routes it has test knobs (fixed or random delays precise to
//! tens of microseconds, error injection, a hard concurrency cap, stalls) so that a load
//! generator's measurements can be checked against a known truth, and `GET /_stats` with
//! what it served. See `docs/sample-webapp.md`.

pub mod app;
pub mod cli;
pub mod delay;
pub mod knobs;
pub mod params;
pub mod server;
pub mod stats;
pub mod tls;

pub use cli::Cli;
pub use server::run;

/// Unit tests that measure time, or burn CPU, take this so they never run at the same time
/// on a 2-core machine.
#[cfg(test)]
pub(crate) fn serial_test() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}
