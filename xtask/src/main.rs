//! `cargo xtask`: the project's own tasks, in Rust so they run wherever cargo does.
//!
//! - `demo`  a local cluster: sample-webapp, a coordinator (UI on 127.0.0.1:8089) and
//!   workers on 127.0.0.x running the seed scenario; `--headless` prints the merged report
//!   (see `demo.rs`).
//! - `ci`    everything CI checks: installs the Debian packages tests need when missing,
//!   then fmt, clippy, the whole test suite (release build: timing tests need it), `k8s
//!   check` (the dashboard against a local cluster) and the fuzz targets.
//! - `bench` whole-system comparison against peers (see `bench.rs`).
//! - `k8s`   render the Kubernetes manifests; `k8s check` runs the offline checks of `k8s/`
//!   (see `k8s.rs`; the tests run them too), the Grafana dashboard against a real Prometheus
//!   scraping a local cluster (`k8s/live.rs`); `ci` runs it.
//! - `ebpf`  rebuild the committed eBPF object of the kernel probes (see `ebpf.rs`).
//! - `bench-cluster` the coordinator's CPU cost with simulated workers.
//! - `fuzz`  each fuzz target for a bounded time from its seed corpus (see `fuzz.rs`).

mod bench;
mod cluster_bench;
mod demo;
mod ebpf;
mod fuzz;
mod k8s;
mod local_cluster;
mod proc;

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("demo") => demo::main(&args[1..]),
        Some("ci") => ci(),
        Some("bench") => bench::main(&args[1..]),
        Some("bench-cluster") => cluster_bench::main(&args[1..]),
        Some("k8s") => k8s::main(&args[1..]),
        Some("ebpf") => ebpf::main(&args[1..]),
        Some("fuzz") => fuzz::main(&args[1..]),
        _ => {
            eprintln!("usage: cargo xtask <demo|ci|bench|bench-cluster|ebpf|fuzz|k8s> [args]\n\n  demo [--headless] [--workers N] [--rate R] [--duration D]\n                                     local cluster: sample-webapp, coordinator (UI :8089), workers, seed scenario\n  ci                                 install test deps, fmt, clippy, tests, k8s check, fuzz\n  bench [--quick]                    gen vs wrk, h2load, oha; writes target/bench/\n  bench-cluster [--workers 20,200]   coordinator CPU with N simulated workers\n  k8s --target URL --image IMAGE [--workers N] [--overlay gke|local|job] [--out DIR]\n  k8s check                          every offline check of k8s/, the dashboard against a local cluster (docs/kubernetes.md)\n  k8s dashboard [--simulated | --coordinator ADDR --worker ADDR...]\n                                     only the dashboard check (simulated or given processes)\n  ebpf                               rebuild generator-ebpf/bpf/*.o with clang\n  fuzz [--time SECS] [TARGET...]     fuzz targets from their seed corpus (default 60 s each)");
            std::process::exit(2);
        }
    };
    if let Err(e) = result {
        eprintln!("xtask: {e:#}");
        std::process::exit(1);
    }
}

/// Start sample-webapp, run gen against it, print both counts.
/// The README's test command: what CI runs.
fn ci() -> Result<()> {
    install_test_deps()?;
    k8s::install_tools()?;
    install_ui_test_deps();
    proc::cargo(&["fmt", "--all", "--check"])?;
    proc::cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ])?;
    proc::cargo(&["test", "--workspace", "--all-targets", "--release"])?;
    // The integration tests again on the epoll fallback driver: gen honours GEN_IO
    // (docs/drivers.md). Both drivers must pass the whole suite.
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let epoll = Command::new(cargo)
        .args(["test", "-p", "generator", "--release", "--test", "*"])
        .env("GEN_IO", "epoll")
        .status()
        .context("running the tests with GEN_IO=epoll")?;
    if !epoll.success() {
        bail!("the integration tests failed on the epoll driver ({epoll})");
    }
    // Every offline check of k8s/, the dashboard against a real local cluster.
    k8s::main(&["check".into()])?;
    fuzz::main(&["--time".into(), "60".into()])?;
    Ok(())
}

/// playwright-core for the UI test (it drives Debian's chromium; no browser download).
fn install_ui_test_deps() {
    let dir = Path::new("generator/tests/ui");
    if dir.join("node_modules/playwright-core").exists() {
        return;
    }
    if !proc::on_path("npm") {
        println!("xtask: npm missing: the UI test will skip");
        return;
    }
    let ok = Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--prefix"])
        .arg(dir)
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        println!("xtask: npm install failed: the UI test will skip");
    }
}

/// Debian packages the tests and benches use, installed only when missing.
fn install_test_deps() -> Result<()> {
    let wanted = [
        ("nginx", "nginx-light"),
        ("wrk", "wrk"),
        ("h2load", "nghttp2-client"),
        ("promtool", "prometheus"),
        ("chromium", "chromium"),
        ("node", "nodejs"),
        // tests/probes.rs drops capabilities with capsh
        ("capsh", "libcap2-bin"),
        // The system CA store: gen's https default (a test checks it rejects a self-signed server).
        ("update-ca-certificates", "ca-certificates"),
    ];
    let missing: Vec<&str> = wanted
        .iter()
        .filter(|(bin, _)| !proc::on_path(bin))
        .map(|(_, pkg)| *pkg)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    println!("xtask: installing {}", missing.join(" "));
    let ok = Command::new("apt-get")
        .arg("update")
        .arg("-q")
        .status()?
        .success()
        && Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()?
            .success();
    if !ok {
        bail!("could not install {}", missing.join(" "));
    }
    Ok(())
}
