//! The `gen coordinator` and `gen worker` commands: flags, and the loops that tie the HTTP
//! server, the state machine and the engine together.
//!
//! `gen coordinator` takes the same load flags as a single-node run and forwards them, as
//! given, to every worker, which parses them with the same parser: a flag works in cluster
//! mode exactly as it does alone.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;

use crate::cli::{parse_duration, Args};
use crate::config::RunConfig;
use crate::export::{Cpu, Report, EXIT_BAD_INPUT, EXIT_OK, EXIT_RUN_FAILED};
use crate::probes::{KernelStatus, ProbeMode};

use super::agent::{Agent, AgentConfig, Executor as _, PERIOD};
use super::coordinator::{Coordinator, RunRequest, TICK};
use super::exec::EngineExecutor;
use super::http::{bind, serve};
use crate::export::prometheus::Metrics;

/// `gen coordinator`: holds the desired state, serves the UI, API and `/metrics`.
#[derive(Parser, Debug, Clone)]
#[command(name = "gen coordinator", version, max_term_width = 100)]
pub struct CoordinatorArgs {
    /// Address of the UI, the JSON API, the workers' heartbeats and `/metrics`.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:8089")]
    pub listen: SocketAddr,

    /// Shared secret for control requests (default: the GEN_TOKEN environment variable).
    /// Required unless --listen is a loopback address.
    #[arg(long, value_name = "TOKEN")]
    pub token: Option<String>,

    /// Headless: wait for this many workers, run the load flags once, print the merged
    /// report and exit with its code.
    #[arg(long, value_name = "N")]
    pub expect_workers: Option<usize>,

    /// Headless: give up when the workers have not all registered within this time.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "5m")]
    pub wait: Duration,

    /// Headless: also write the per-endpoint statistics as CSV to this file.
    #[arg(long, value_name = "FILE")]
    pub csv: Option<PathBuf>,

    #[command(flatten)]
    pub load: Args,
}

/// `gen worker`: runs load under a coordinator's orders.
#[derive(Parser, Debug, Clone)]
#[command(name = "gen worker", version, max_term_width = 100)]
pub struct WorkerArgs {
    /// The coordinator, HOST:PORT (its --listen address).
    #[arg(long, value_name = "HOST:PORT")]
    pub coordinator: String,

    /// Serve this worker's own Prometheus `/metrics` here, e.g. 0.0.0.0:9100.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,

    /// Shared secret for the coordinator (default: the GEN_TOKEN environment variable).
    #[arg(long, value_name = "TOKEN")]
    pub token: Option<String>,

    /// Name shown by the coordinator (default: host name and process id).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    /// Append every interval the coordinator acknowledged to this file, one JSON line each
    /// (counters and HDR histograms): an audit trail to re-merge offline.
    #[arg(long, value_name = "FILE")]
    pub journal: Option<std::path::PathBuf>,
}

/// Coordinator-only flags that take a value, removed before the rest goes to workers (the
/// report files are the coordinator's: workers never write them).
const COORDINATOR_FLAGS: &[&str] = &[
    "--listen",
    "--token",
    "--expect-workers",
    "--wait",
    "--csv",
    "--output",
    "-o",
    "--html",
];

/// The load flags of a coordinator command line, as workers must see them.
pub fn forwarded_flags(argv: &[String]) -> Vec<String> {
    strip_flags(argv, COORDINATOR_FLAGS)
}

/// `argv` without the given flags that take a value (`--flag V` or `--flag=V`).
pub(crate) fn strip_flags(argv: &[String], flags: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    let mut skip = false;
    for a in argv {
        if std::mem::take(&mut skip) {
            continue;
        }
        if flags.contains(&a.as_str()) {
            skip = true;
            continue;
        }
        if flags
            .iter()
            .any(|f| a.strip_prefix(f).is_some_and(|r| r.starts_with('=')))
        {
            continue;
        }
        out.push(a.clone());
    }
    out
}

pub(crate) fn token_or_env(token: Option<String>) -> Option<String> {
    token
        .or_else(|| std::env::var("GEN_TOKEN").ok())
        .filter(|t| !t.is_empty())
}

pub(crate) fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Parses a subcommand's flags; on `--help`/`--version` or bad input, prints clap's message
/// and returns the exit code (0, or 2 for bad input).
fn parse_flags<T: Parser>(name: &str, argv: &[String]) -> Result<T, i32> {
    let full = std::iter::once(OsString::from(name)).chain(argv.iter().map(OsString::from));
    T::try_parse_from(full).map_err(|e| {
        let _ = e.print();
        if e.use_stderr() {
            EXIT_BAD_INPUT
        } else {
            EXIT_OK
        }
    })
}

/// Entry of `gen coordinator ARGS` (`argv` without the program and subcommand names);
/// `gen coordinator capacity ...` runs a capacity search through the workers.
pub fn coordinator_main(argv: Vec<String>) -> i32 {
    if argv.first().map(String::as_str) == Some("capacity") {
        return crate::capacity::cluster::main(argv[1..].to_vec());
    }
    let args = match parse_flags::<CoordinatorArgs>("gen coordinator", &argv) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let has_load = args.load.target.is_some() || args.load.url.is_some();
    // Validate the load here, with the single-node rules, before any worker sees it.
    let cfg = if has_load {
        match RunConfig::from_args(&args.load) {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("gen: {e}");
                return EXIT_BAD_INPUT;
            }
        }
    } else {
        None
    };
    if args.expect_workers.is_some() && cfg.is_none() {
        eprintln!(
            "gen: --expect-workers runs headless and needs the load flags (--target URL ...)"
        );
        return EXIT_BAD_INPUT;
    }
    with_coordinator(args.listen, args.token.clone(), |coord| async move {
        match (args.expect_workers, cfg) {
            (Some(n), Some(cfg)) => {
                headless(
                    &coord,
                    n,
                    args.wait,
                    &cfg,
                    forwarded_flags(&argv),
                    args.csv.as_deref(),
                )
                .await
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
                EXIT_OK
            }
        }
    })
}

/// Runs a coordinator (UI, API, heartbeats, ticker) on `listen` while `body` runs; returns
/// `body`'s exit code. Refuses a non-loopback address without a token.
pub(crate) fn with_coordinator<F, Fut>(listen: SocketAddr, token: Option<String>, body: F) -> i32
where
    F: FnOnce(Arc<Coordinator>) -> Fut,
    Fut: std::future::Future<Output = i32>,
{
    let token = token_or_env(token);
    if token.is_none() && !listen.ip().is_loopback() {
        eprintln!(
            "gen: refusing to accept control requests on {listen} without a token (--token or GEN_TOKEN)"
        );
        return EXIT_BAD_INPUT;
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("gen: cannot start the coordinator runtime: {e}");
            return EXIT_RUN_FAILED;
        }
    };
    let coord = Coordinator::new(token);
    rt.block_on(async move {
        let listener = match bind(listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("gen: cannot listen on {listen}: {e}");
                return EXIT_BAD_INPUT;
            }
        };
        let addr = listener.local_addr().map_or(listen, |a| a);
        eprintln!("gen coordinator listening on {addr} (UI http://{addr}/)");
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let handler = {
            let coord = Arc::clone(&coord);
            Arc::new(move |req| Arc::clone(&coord).handle(req))
        };
        let mut srv_stop = stop_rx.clone();
        let server = tokio::spawn(serve(listener, handler, async move {
            let _ = srv_stop.wait_for(|s| *s).await;
        }));
        let ticker = {
            let coord = Arc::clone(&coord);
            let mut stop = stop_rx.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(TICK) => coord.tick(),
                        _ = stop.wait_for(|s| *s) => break,
                    }
                }
            })
        };
        let code = body(Arc::clone(&coord)).await;
        let _ = stop_tx.send(true);
        let _ = server.await;
        let _ = ticker.await;
        code
    })
}

/// Entry of `gen worker ARGS`.
pub fn worker_main(argv: Vec<String>) -> i32 {
    let args = match parse_flags::<WorkerArgs>("gen worker", &argv) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let name = args.name.clone().unwrap_or_else(default_name);
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("gen: cannot start the worker runtime: {e}");
            return EXIT_RUN_FAILED;
        }
    };
    rt.block_on(async move {
        let metrics = Metrics::new();
        let mut metrics_addr = None;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        if let Some(listen) = args.listen {
            let listener = match bind(listen).await {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("gen: cannot listen on {listen}: {e}");
                    return EXIT_BAD_INPUT;
                }
            };
            let addr = listener.local_addr().map_or(listen, |a| a);
            metrics_addr = Some(addr.to_string());
            let m = metrics.clone();
            let handler = Arc::new(move |req: super::http::Req| {
                let m = m.clone();
                async move {
                    match req.path.as_str() {
                        "/metrics" => super::http::respond(
                            hyper::StatusCode::OK,
                            crate::export::prometheus::CONTENT_TYPE,
                            m.encode(),
                        ),
                        _ => super::http::error(hyper::StatusCode::NOT_FOUND, "only /metrics here"),
                    }
                }
            });
            let mut stop = stop_rx.clone();
            tokio::spawn(serve(listener, handler, async move {
                let _ = stop.wait_for(|s| *s).await;
            }));
        }
        let mut journal = match &args.journal {
            None => None,
            Some(p) => match std::fs::OpenOptions::new().create(true).append(true).open(p) {
                Ok(f) => Some(std::io::BufWriter::new(f)),
                Err(e) => {
                    eprintln!("gen: cannot open --journal {}: {e}", p.display());
                    return EXIT_BAD_INPUT;
                }
            },
        };
        let mut exec = EngineExecutor::new(metrics, &args.coordinator);
        let mut agent = Agent::new(
            AgentConfig {
                name: name.clone(),
                coordinator: args.coordinator.clone(),
                token: token_or_env(args.token.clone()),
                metrics_addr,
            },
            Instant::now(),
        );
        eprintln!("gen worker {name}: reporting to {}", args.coordinator);
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        let mut tick = tokio::time::interval(PERIOD);
        let mut last_line = String::new();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = tokio::signal::ctrl_c() => break,
                _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => break,
            }
            let result = agent
                .beat(
                    &mut exec,
                    crate::export::prometheus::process_cpu_s(),
                    journal.as_mut().map(|j| j as &mut dyn std::io::Write),
                )
                .await;
            // One line per change of situation, not one per second.
            let line = match &result {
                Err(e) => format!("coordinator unreachable: {e}"),
                Ok(()) if agent.orphaned => "coordinator silent: load stopped".to_owned(),
                Ok(()) => format!("epoch {}", agent.epoch()),
            };
            if line != last_line {
                eprintln!("gen worker {name}: {line}");
                last_line = line;
            }
        }
        exec.stop();
        let _ = stop_tx.send(true);
        EXIT_OK
    })
}

fn default_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "worker".into());
    format!("{host}-{}", std::process::id())
}

/// Waits until `n` workers are live; false (said on stderr) when `wait` passed first.
pub(crate) async fn wait_for_workers(coord: &Coordinator, n: usize, wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    loop {
        let live = coord.state().live().count();
        if live >= n {
            return true;
        }
        if Instant::now() >= deadline {
            eprintln!("gen: only {live} of {n} workers registered within {wait:?}");
            return false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits for `n` workers, runs once, prints the merged report; returns the exit code.
async fn headless(
    coord: &Arc<Coordinator>,
    n: usize,
    wait: Duration,
    cfg: &RunConfig,
    load: Vec<String>,
    csv: Option<&std::path::Path>,
) -> i32 {
    if !wait_for_workers(coord, n, wait).await {
        return EXIT_RUN_FAILED;
    }
    let epoch = match coord.start(&RunRequest {
        load: serde_json::json!(load),
    }) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("gen: {e}");
            return EXIT_BAD_INPUT;
        }
    };
    eprintln!("gen: run {epoch} ordered to {n} workers");
    let started = now_unix_ms();
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if coord
            .state()
            .run
            .as_ref()
            .is_none_or(|r| r.finished(Instant::now()))
        {
            break;
        }
        if tokio::time::timeout(Duration::ZERO, tokio::signal::ctrl_c())
            .await
            .is_ok()
        {
            coord.state().stop(Instant::now());
        }
    }
    // A stopped run (--abort-on-fail, Ctrl-C) ends before the workers' next heartbeat: stay
    // up until every live worker has heard of the stop (bounded), or they would go on
    // loading until their dead-man switch, and their last seconds would be lost.
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline && !coord.state().all_caught_up() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let report = cluster_report(coord, cfg, started);
    if let Some(run) = &coord.state().run {
        for (t, e) in &run.events {
            eprintln!("gen: {e} at {t:.1}s");
        }
    }
    if let Some(path) = csv {
        if let Err(e) = std::fs::write(path, coord.stats_csv()) {
            eprintln!("gen: cannot write {}: {e}", path.display());
        }
    }
    let json = with_workers(report.to_json(), coord);
    crate::cli::deliver(&report, &json, cfg)
}

/// The report JSON with the `cluster` object: the workers that ran it (name, threads, and
/// their users in the users model), the users still running, and the run's events (workers
/// lost or added, rebalances, an abort).
fn with_workers(mut json: serde_json::Value, coord: &Coordinator) -> serde_json::Value {
    let st = coord.state();
    let workers: Vec<serde_json::Value> = st
        .live()
        .map(|(name, w)| match w.users {
            Some(u) => serde_json::json!({"name": name, "threads": w.threads, "users": u.users}),
            None => serde_json::json!({"name": name, "threads": w.threads}),
        })
        .collect();
    let mut cluster = serde_json::json!({ "workers": workers });
    if let Some(run) = &st.run {
        if let Some(u) = run.users {
            cluster["users"] = serde_json::json!({
                "users": u.total,
                "running": run.users_running(&st.workers),
            });
        }
        cluster["events"] = run
            .events
            .iter()
            .map(|(t, e)| serde_json::json!({"t_s": t, "event": e}))
            .collect();
    }
    if let Some(map) = json.as_object_mut() {
        map.insert("cluster".into(), cluster);
    }
    json
}

/// The merged report of the current run, as a single-node run would print it.
pub(crate) fn cluster_report(coord: &Coordinator, cfg: &RunConfig, started_unix_ms: u64) -> Report {
    let st = coord.state();
    let run = st.run.as_ref();
    let totals = run.map(|r| r.merged_total()).unwrap_or_default();
    let series: Vec<crate::export::SeriesPoint> = run.map(|r| r.series.clone()).unwrap_or_default();
    let threads: usize = st.live().map(|(_, w)| w.threads).sum();
    let cpu_s = run.map_or(0.0, |r| r.cpu_used_s(&st.workers));
    let mut info = cfg.run_info("io_uring");
    info.threads = threads.max(1);
    info.started_at_unix_ms = started_unix_ms;
    let aborted = run.and_then(|r| r.aborted.clone());
    // An aborted run's rates are over the time it really ran, as on a single node.
    let measured_s = match (&aborted, cfg.plan.duration) {
        (Some(a), _) => series_len(&series).max(a.at_s),
        (None, d) => d.map_or_else(|| series_len(&series), |d| d.as_secs_f64()),
    };
    // Thresholds are judged on the merged figures, for the whole cluster.
    Report::from_points(
        info,
        &totals,
        series,
        measured_s,
        Cpu {
            user_s: cpu_s,
            system_s: 0.0,
        },
    )
    .with_thresholds(cfg.thresholds.clone())
    .with_endpoint_names(run.map_or(Vec::new(), |r| r.names.clone()))
    .with_abort(aborted)
    .with_kernel(match (run.and_then(|r| r.kernel.as_ref()), cfg.probes) {
        (Some(k), _) => KernelStatus::Measured(Box::new(k.figures())),
        (None, ProbeMode::Off) => KernelStatus::Off,
        (None, _) => KernelStatus::Unavailable(
            "no worker could load the kernel probes (each worker's log says why)".into(),
        ),
    })
}

fn series_len(series: &[crate::export::SeriesPoint]) -> f64 {
    series.last().map_or(0.0, |p| p.t_s + p.duration_s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coordinator_flags_are_not_forwarded() {
        let argv: Vec<String> = [
            "--listen",
            "127.0.0.1:0",
            "--token=x",
            "--rate",
            "100",
            "--expect-workers",
            "3",
            "--target",
            "http://127.0.0.1:1/",
            "--csv",
            "f.csv",
            "--wait=1m",
            "--html",
            "r.html",
            "-o",
            "r.json",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            forwarded_flags(&argv),
            ["--rate", "100", "--target", "http://127.0.0.1:1/"]
        );
    }

    #[test]
    fn coordinator_refuses_bad_input_with_exit_2() {
        let run = |a: &[&str]| coordinator_main(a.iter().map(|s| s.to_string()).collect());
        assert_eq!(run(&["--bogus"]), EXIT_BAD_INPUT);
        assert_eq!(
            run(&[
                "--listen",
                "127.0.0.1:0",
                "--rate",
                "-5",
                "--target",
                "http://127.0.0.1:1/"
            ]),
            EXIT_BAD_INPUT
        );
        assert_eq!(
            run(&["--listen", "127.0.0.1:0", "--expect-workers", "2"]),
            EXIT_BAD_INPUT
        );
        // Beyond loopback a token is mandatory.
        if std::env::var_os("GEN_TOKEN").is_none() {
            assert_eq!(
                run(&["--listen", "0.0.0.0:0", "--target", "http://127.0.0.1:1/"]),
                EXIT_BAD_INPUT
            );
        }
    }
}
