//! The command line: flags (clap), their syntax checks, and the top-level flow of a run.
//!
//! Bad input never panics: it ends as one line on stderr naming the bad value, exit code 2.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::config::RunConfig;
use crate::export::{
    current_rps, judge_abort, progress_line, write_files, Report, EXIT_BAD_INPUT, EXIT_OK,
    EXIT_RUN_FAILED,
};
use crate::measure::Snapshot;

/// gen: an accurate, open-loop HTTP load generator.
///
/// With --rate, requests leave on a fixed schedule whether or not earlier ones came back, and
/// latency is measured from the intended send time. Without --rate, each connection sends
/// its next request as soon as the previous response arrives (maximum throughput).
#[derive(Parser, Debug, Clone)]
#[command(name = "gen", version, about, max_term_width = 100)]
pub struct Args {
    /// Target URL, e.g. http://127.0.0.1:8080/ (or give it as the only positional argument).
    #[arg(short = 'u', long, value_name = "URL")]
    pub target: Option<String>,

    /// Target URL as a positional argument (like wrk and oha).
    #[arg(value_name = "URL", conflicts_with = "target")]
    pub url: Option<String>,

    /// Open-loop rate in requests per second for the whole run (all threads together).
    #[arg(short, long, value_name = "REQ/S", allow_negative_numbers = true)]
    pub rate: Option<f64>,

    /// Connection pool size (all threads). Default: closed loop 64; open loop sized from the
    /// rate (rate × 10 ms, at least 4 per thread).
    #[arg(short, long, value_name = "N")]
    pub connections: Option<usize>,

    /// Worker threads, each pinned to one CPU. Default: one per CPU this process may use,
    /// capped by its cgroup CPU quota (a container limited to 1 CPU runs 1 thread).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,

    /// Length of the measured run (after warm-up): 500ms, 30s, 2m, 1h30m. Default 10s unless
    /// --requests is given.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub duration: Option<Duration>,

    /// Number of measured requests; the run ends after them.
    #[arg(short = 'n', long, value_name = "N")]
    pub requests: Option<u64>,

    /// Warm-up before the measured run; its requests are sent but not recorded.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "0s")]
    pub warmup: Duration,

    /// Overall request timeout (from send to last byte; also bounds time spent queued).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "10s")]
    pub timeout: Duration,

    /// HTTP method. Default GET, or POST when a body is given.
    #[arg(short = 'X', long, value_name = "METHOD")]
    pub method: Option<String>,

    /// Extra request header "Name: value" (repeatable).
    #[arg(short = 'H', long = "header", value_name = "HEADER")]
    pub headers: Vec<String>,

    /// Request body.
    #[arg(short = 'd', long, value_name = "BODY", conflicts_with = "body_file")]
    pub body: Option<String>,

    /// Request body read from a file.
    #[arg(long, value_name = "PATH")]
    pub body_file: Option<PathBuf>,

    /// Requests that may wait for a free connection, per thread, before new ones count as
    /// dropped. Default: two seconds of the thread's rate, at least 1024.
    #[arg(long, value_name = "N")]
    pub max_queue: Option<usize>,

    /// Pacing resolution: requests due within this window of each other leave in one
    /// wake-up. Smaller is more punctual and costs more CPU per request at high rates; it
    /// only matters when requests are due more often than this per thread.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "50us")]
    pub resolution: Duration,

    /// Print the report as JSON on stdout instead of text.
    #[arg(long)]
    pub json: bool,

    /// Also write the JSON report to this file.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Also write a self-contained HTML report (charts, tables; works offline) to this file.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,

    /// Show the full latency percentile spectrum.
    #[arg(long)]
    pub latency: bool,

    /// No live progress line (it is also off when stderr is not a terminal).
    #[arg(long)]
    pub quiet: bool,

    /// eBPF kernel probes (kernel latency, connect time, srtt, retransmits): auto loads them
    /// when permitted (CAP_BPF + CAP_PERFMON, BTF) and otherwise says why in one line; on
    /// makes that an error; off never loads them.
    #[arg(long, value_name = "MODE", value_enum, default_value_t = crate::probes::ProbeMode::Auto)]
    pub probes: crate::probes::ProbeMode,
    /// https: accept any server certificate (handshake signatures are still checked).
    #[arg(short = 'k', long)]
    pub insecure: bool,

    /// https: trust only the CA certificates in this PEM file (default: the system store).
    #[arg(long, value_name = "FILE")]
    pub cacert: Option<PathBuf>,

    /// https: client certificate chain (PEM), sent when the server asks; needs --key.
    #[arg(long, value_name = "FILE")]
    pub cert: Option<PathBuf>,

    /// https: private key (PEM) of --cert.
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// I/O driver: auto (io_uring, or epoll where io_uring is blocked, e.g. by a container's
    /// seccomp profile), uring, or epoll.
    #[arg(
        long,
        value_enum,
        value_name = "DRIVER",
        env = "GEN_IO",
        default_value = "auto"
    )]
    pub io: crate::engine::select::IoMode,
    /// Scenario file (TOML): weighted, templated requests; see docs/scenarios.md. The URL,
    /// when given, is the base its paths are sent to.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["method", "headers", "body", "body_file"])]
    pub scenario: Option<PathBuf>,

    /// A load stage DURATION:RATE (repeatable): the rate ramps linearly from the previous
    /// stage's (0 at first) to RATE over DURATION; 0s:RATE is a step. Replaces --rate and
    /// --duration; the warm-up is the start of the curve.
    #[arg(long = "stage", value_name = "DURATION:RATE", conflicts_with_all = ["rate", "duration"])]
    pub stages: Vec<String>,

    /// Pass/fail condition on the whole run (repeatable), k6 style: p99<250ms, errors<1%,
    /// rate>=49500, or per request name: /login:p95<100ms. A failure exits with code 3.
    #[arg(long = "threshold", value_name = "EXPR")]
    pub thresholds: Vec<String>,

    /// Users model (Locust): N simulated users, each a closed loop on its own connection
    /// that sends, waits for the response, thinks, and sends again. The connection count is
    /// the user count. See docs/scenarios.md.
    #[arg(long, value_name = "N", conflicts_with_all = ["rate", "stages"])]
    pub users: Option<u64>,

    /// Users started per second (user k starts at k/R s). Default: all at once.
    #[arg(
        long,
        value_name = "USERS/S",
        requires = "users",
        allow_negative_numbers = true
    )]
    pub spawn_rate: Option<f64>,

    /// Think time between a user's response and its next request: fixed (1s) or uniform in
    /// a range (0.5s..1.5s). Never counted in latency. Default 0.
    #[arg(long, value_name = "DURATION[..DURATION]", requires = "users")]
    pub think: Option<String>,

    /// With thresholds: stop the run as soon as one is certainly failed (judged each second
    /// on the cumulative figures; see docs/scenarios.md); the exit code is 3.
    #[arg(long)]
    pub abort_on_fail: bool,

    /// Seed of the random picks and values of a scenario (default: random). The same seed
    /// and thread count repeat the same sequence.
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
}

/// Parse `500ms`, `30s`, `2m`, `1h30m`, `1.5s`, `250us`; a bare number means seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration \"{s}\" (use e.g. 500ms, 30s, 2m, 1h30m)");
    let t = s.trim();
    if t.is_empty() {
        return Err(bad());
    }
    if let Ok(secs) = t.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).map_err(|_| bad());
    }
    let mut total = 0f64;
    let mut rest = t;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        if num_end == 0 {
            return Err(bad());
        }
        let value: f64 = rest[..num_end].parse().map_err(|_| bad())?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += value * scale;
        rest = &rest[unit_end..];
    }
    Duration::try_from_secs_f64(total).map_err(|_| bad())
}

/// `gen` itself: parse, run, report; returns the exit code.
pub fn main() -> i32 {
    let args = match parse_or_exit_code::<Args, _>(std::env::args_os()) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let cfg = match RunConfig::from_args(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("gen: {e}");
            return EXIT_BAD_INPUT;
        }
    };
    run(&cfg)
}

/// Parses a command line (program name first). On `--help`/`--version` prints it and gives
/// exit code 0; on bad input prints one line naming the bad value and gives 2.
pub fn parse_or_exit_code<T, I>(argv: I) -> Result<T, i32>
where
    T: Parser,
    I: IntoIterator,
    I::Item: Into<std::ffi::OsString> + Clone,
{
    T::try_parse_from(argv).map_err(clap_exit_code)
}

/// What a clap parse error means for the process: `--help`/`--version` are printed (exit 0);
/// bad input is one line naming the bad value (exit 2).
pub fn clap_exit_code(e: clap::Error) -> i32 {
    use clap::error::ErrorKind as K;
    if matches!(
        e.kind(),
        K::DisplayHelp | K::DisplayVersion | K::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = e.print();
        return EXIT_OK;
    }
    // clap's own message, first line only: one clear line, the offending value in it
    // (a line ending in ':' introduces a list, e.g. missing arguments: join it).
    let msg = e.to_string();
    let mut lines = msg.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next().unwrap_or("invalid arguments");
    let line = match (first.ends_with(':'), lines.next()) {
        (true, Some(next)) => format!("{first} {next}"),
        _ => first.to_owned(),
    };
    eprintln!("gen: {}", line.trim_start_matches("error: "));
    EXIT_BAD_INPUT
}

/// Run a resolved configuration and build its report (warnings and errors go to stderr as
/// one line each); `Err` is the exit code of a run that could not produce one. `progress`:
/// the live line on a terminal.
pub fn measure(cfg: &RunConfig, progress: bool) -> Result<Report, i32> {
    // Kernel probes load before the connections open, so every socket is registered.
    let probes_off = match crate::probes::start(cfg.probes) {
        Ok(why) => why,
        Err(e) => {
            eprintln!("gen: {e}");
            return Err(EXIT_BAD_INPUT);
        }
    };
    if let Some(why) = &probes_off {
        eprintln!("gen: kernel probes off: {why}");
    }
    let live = progress && std::io::stderr().is_terminal();
    let rate = cfg.plan.rate();
    if let Some(why) = &cfg.unresolved {
        eprintln!("gen: {why}; every connection attempt is counted as a connect error");
    }
    let nofile = crate::engine::select::raise_nofile_limit();
    let in_use = crate::engine::select::fds_in_use();
    if let Some(warning) =
        crate::engine::select::pool_warning(cfg.connections, cfg.threads, nofile, in_use)
    {
        eprintln!("gen: {warning}");
    }
    let control = crate::engine::Control::new();
    let names: &[String] = cfg.scenario.as_ref().map_or(&[], |s| &s.names);
    let info = cfg.run_info("");
    // --abort-on-fail: everything measured so far, judged once a second.
    let mut cumulative = Snapshot::empty();
    let mut aborted = None;
    let outcome = crate::engine::run_with(cfg, &control, |index, snap| {
        if live {
            let line = progress_line(snap, (index + 1) as f64, rate);
            eprint!("\r\x1b[2K{line}");
            let _ = std::io::stderr().flush();
        }
        if cfg.abort_on_fail && aborted.is_none() {
            cumulative.merge(snap);
            let secs = (index + 1) as f64;
            aborted = judge_abort(&info, &cumulative, secs, &cfg.thresholds, names);
            if aborted.is_some() {
                control.stop();
            }
        }
    });
    if live {
        eprint!("\r\x1b[2K");
    }
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => {
            eprintln!("gen: {e}");
            return Err(EXIT_RUN_FAILED);
        }
    };
    if outcome.connected < cfg.connections && cfg.unresolved.is_none() {
        eprintln!(
            "gen: only {} of {} connections could be opened before the start (see the connect errors)",
            outcome.connected, cfg.connections
        );
    }
    Ok(Report::from_points(
        cfg.run_info(outcome.driver),
        &outcome.totals,
        outcome.series,
        outcome.measured_s,
        outcome.cpu,
    )
    .with_kernel(crate::probes::finish(cfg.probes, probes_off))
    .with_thresholds(cfg.thresholds.clone())
    .with_endpoint_names(names.to_vec())
    .with_abort(aborted)
    .with_current_rps(current_rps(&outcome.second_counts, outcome.measured_s)))
}

/// Run a resolved configuration, print the report, return the exit code.
pub fn run(cfg: &RunConfig) -> i32 {
    let report = match measure(cfg, cfg.progress) {
        Ok(r) => r,
        Err(code) => return code,
    };
    deliver(&report, &report.to_json(), cfg)
}

/// Writes `--output`/`--html`, prints the report (JSON with `--json`, else text) and returns
/// its exit code; `json` is the report's document (a coordinator adds its workers to it).
pub fn deliver(report: &Report, json: &serde_json::Value, cfg: &RunConfig) -> i32 {
    if let Err(e) = write_files(json, cfg.output.as_deref(), cfg.html.as_deref()) {
        eprintln!("gen: {e}");
        return EXIT_RUN_FAILED;
    }
    if cfg.json {
        println!("{}", serde_json::to_string_pretty(json).unwrap_or_default());
    } else {
        print!("{}", report.to_text(cfg.latency));
    }
    report.exit_code()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let ms = Duration::from_millis;
        assert_eq!(parse_duration("500ms"), Ok(ms(500)));
        assert_eq!(parse_duration("30s"), Ok(ms(30_000)));
        assert_eq!(parse_duration("2m"), Ok(ms(120_000)));
        assert_eq!(parse_duration("1h30m"), Ok(ms(5_400_000)));
        assert_eq!(parse_duration("1.5s"), Ok(ms(1500)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("10"), Ok(ms(10_000)));
        for bad in ["", "s", "10x", "-1s", "1..5s", "ms10", "1e400"] {
            let e = parse_duration(bad).unwrap_err();
            assert!(e.contains(&format!("\"{bad}\"")), "{e}");
        }
    }

    #[test]
    fn flags_parse() {
        let a = Args::try_parse_from([
            "gen",
            "--rate",
            "50000",
            "--target",
            "http://127.0.0.1:8080/",
            "--duration",
            "30s",
            "-H",
            "X-A: 1",
            "-H",
            "X-B: 2",
            "--warmup",
            "2s",
        ])
        .unwrap();
        assert_eq!(a.rate, Some(50000.0));
        assert_eq!(a.headers.len(), 2);
        assert_eq!(a.duration, Some(Duration::from_secs(30)));
        assert!(Args::try_parse_from(["gen", "-d", "x", "--body-file", "f", "http://x/"]).is_err());
        assert!(Args::try_parse_from(["gen", "--target", "http://a/", "http://b/"]).is_err());
    }
}
