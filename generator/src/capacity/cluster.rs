//! `gen coordinator capacity --expect-workers N ...`: the capacity search run through the
//! workers. Each step is a new coordinator run (epoch) at the step's rate, which the
//! coordinator splits across the live workers as for any run; the step is judged on the
//! exactly merged figures, as `gen coordinator --expect-workers` reports them. The chart of
//! the steps so far is published to the web UI (`/api/v1/capacity/chart.svg`) after each step.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;

use super::{chart, chart_data, finish, parse_args, progress, search_capacity, CapacityArgs};
use super::{Settings, Step, StepRunner};
use crate::cli::parse_duration;
use crate::cluster::cmd::{cluster_report, strip_flags, wait_for_workers, with_coordinator};
use crate::cluster::coordinator::{Coordinator, RunRequest};
use crate::export::{Report, EXIT_BAD_INPUT, EXIT_RUN_FAILED};

/// gen coordinator capacity: a capacity search with the rate of each step split across
/// workers.
#[derive(Parser, Debug, Clone)]
#[command(name = "gen coordinator capacity", version, max_term_width = 100)]
pub struct ClusterCapacityArgs {
    /// Address of the UI, the JSON API, the workers' heartbeats and `/metrics`.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:8089")]
    pub listen: SocketAddr,

    /// Shared secret for control requests (default: the GEN_TOKEN environment variable).
    #[arg(long, value_name = "TOKEN")]
    pub token: Option<String>,

    /// Wait for this many workers, then search.
    #[arg(long, value_name = "N")]
    pub expect_workers: usize,

    /// Give up when the workers have not all registered within this time.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "5m")]
    pub wait: Duration,

    #[command(flatten)]
    pub capacity: CapacityArgs,
}

/// Flags of this command that are not load flags, or that each step sets itself: removed
/// before the rest goes to the workers.
const NOT_FORWARDED: [&str; 15] = [
    "--listen",
    "--token",
    "--expect-workers",
    "--wait",
    "--slo",
    "--from",
    "--max",
    "--step-duration",
    "--cooldown",
    "--precision",
    "--chart",
    "--warmup",
    "--connections",
    "--output",
    "-o",
];

/// The load flags the workers get for every step (before the step's own).
pub fn worker_flags(argv: &[String]) -> Vec<String> {
    strip_flags(argv, &NOT_FORWARDED)
        .into_iter()
        .filter(|a| a != "--json" && a != "--quiet")
        .collect()
}

/// One coordinator run per step.
struct ClusterRunner<'a> {
    coord: Arc<Coordinator>,
    settings: &'a Settings,
    flags: Vec<String>,
    workers: usize,
}

impl StepRunner for ClusterRunner<'_> {
    fn run_step(&mut self, rate: f64) -> Result<Report, String> {
        let s = self.settings;
        let cfg = s.step_config(rate).map_err(|e| e.to_string())?;
        // Each worker opens its own pool, sized for its share of the rate.
        let share = s
            .step_config(rate / self.workers.max(1) as f64)
            .map_err(|e| e.to_string())?;
        let mut argv = self.flags.clone();
        argv.extend([
            "--rate".to_string(),
            rate.to_string(),
            "--duration".to_string(),
            format!("{}s", s.step_duration.as_secs_f64()),
            "--warmup".to_string(),
            format!("{}s", s.warmup.as_secs_f64()),
            "--connections".to_string(),
            share.connections.to_string(),
            "--quiet".to_string(),
        ]);
        let started = crate::cluster::cmd::now_unix_ms();
        self.coord.start(&RunRequest {
            load: serde_json::json!(argv),
        })?;
        // Bounded: a step that outlives its plan by a minute is stopped and reported as failed.
        let deadline = Instant::now() + s.warmup + s.step_duration + Duration::from_secs(60);
        loop {
            std::thread::sleep(Duration::from_millis(250));
            let now = Instant::now();
            let mut st = self.coord.state();
            if st.run.as_ref().is_none_or(|r| r.finished(now)) {
                break;
            }
            if now >= deadline {
                st.stop(now);
                return Err("the workers did not finish the step in time".into());
            }
        }
        Ok(cluster_report(&self.coord, &cfg, started)
            .with_thresholds(cfg.thresholds.clone())
            .with_endpoint_names(
                cfg.scenario
                    .as_ref()
                    .map_or(Vec::new(), |sc| sc.names.clone()),
            ))
    }
}

/// Entry of `gen coordinator capacity ARGS`.
pub fn main(argv: Vec<String>) -> i32 {
    let args = match parse_args::<ClusterCapacityArgs>("gen coordinator capacity", &argv) {
        Ok(a) => a,
        Err(code) => return code,
    };
    if args.expect_workers == 0 {
        eprintln!("gen: invalid --expect-workers 0 (must be at least 1)");
        return EXIT_BAD_INPUT;
    }
    let settings = match Settings::from_args(args.capacity.clone()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("gen: {e}");
            return EXIT_BAD_INPUT;
        }
    };
    let flags = worker_flags(&argv);
    let n = args.expect_workers;
    with_coordinator(args.listen, args.token.clone(), |coord| async move {
        if !wait_for_workers(&coord, n, args.wait).await {
            return EXIT_RUN_FAILED;
        }
        let quiet = settings.load.quiet;
        let (c, s) = (Arc::clone(&coord), settings.clone());
        // The search blocks (each step waits for its run): off the runtime's threads.
        let search = tokio::task::spawn_blocking(move || {
            let mut runner = ClusterRunner {
                coord: Arc::clone(&c),
                settings: &s,
                flags,
                workers: n,
            };
            let mut so_far: Vec<Step> = Vec::new();
            search_capacity(&s, &mut runner, |step| {
                if !quiet {
                    progress(step);
                }
                so_far.push(step.clone());
                let data = chart_data(&s.target, "searching", &so_far, None, &s.slos);
                c.set_capacity_chart(chart::svg(&data));
            })
        })
        .await;
        let report = match search {
            Ok(r) => r,
            Err(e) => {
                eprintln!("gen: the capacity search failed: {e}");
                return EXIT_RUN_FAILED;
            }
        };
        coord.set_capacity_chart(chart::svg(&report.chart_data()));
        finish(&report, &settings.load, &settings.charts)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_get_only_load_flags() {
        let argv: Vec<String> = [
            "--expect-workers",
            "2",
            "--listen=127.0.0.1:0",
            "http://127.0.0.1:1/",
            "--slo",
            "p99<10ms",
            "--from",
            "100",
            "--json",
            "-H",
            "X-A: 1",
            "--warmup",
            "1s",
            "--chart",
            "c.svg",
            "--threads",
            "1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            worker_flags(&argv),
            ["http://127.0.0.1:1/", "-H", "X-A: 1", "--threads", "1"]
        );
    }

    #[test]
    fn bad_input_is_exit_2() {
        let run = |a: &[&str]| main(a.iter().map(|s| s.to_string()).collect());
        assert_eq!(run(&["--bogus"]), EXIT_BAD_INPUT);
        assert_eq!(
            run(&["--expect-workers", "1", "http://127.0.0.1:1/"]),
            EXIT_BAD_INPUT,
            "no SLO"
        );
        assert_eq!(
            run(&[
                "--expect-workers",
                "0",
                "http://127.0.0.1:1/",
                "--slo",
                "p99<1s"
            ]),
            EXIT_BAD_INPUT
        );
    }
}
