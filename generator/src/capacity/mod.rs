//! `gen capacity`: find the highest open-loop rate that meets every SLO.
//!
//! Flow: flags ([`CapacityArgs`], the usual load flags flattened in) -> [`Settings`] ->
//! [`search_capacity`] drives the pure [`search::Search`] state machine, running each step
//! with a [`StepRunner`] (single node: one `engine::run` per step, see [`LocalRunner`];
//! cluster: a coordinator epoch per step) and judging it with [`judge`] -> a
//! [`CapacityReport`] (text, JSON, and the latency-vs-rate chart in [`chart`]).
//!
//! Each step is a complete run with its own Plan (constant rate), connection pool sized for
//! that rate, warm-up and CPU accounting, rather than one engine whose plan is swapped: a step
//! then starts from a clean state (no backlog or broken connections carried over from an
//! overloaded step), and its report is exactly what `gen --rate R` would print.

pub mod chart;
pub mod cluster;
pub mod judge;
pub mod search;

use std::path::PathBuf;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser};
use serde_json::{json, Value};

use crate::cli::{parse_duration, Args};
use crate::config::RunConfig;
use crate::export::{
    Metric, Report, Threshold, EXIT_BAD_INPUT, EXIT_OK, EXIT_RUN_FAILED, EXIT_THRESHOLD,
};
use judge::{Judgement, Reason};
use search::{Conclusion, Outcome, Params, Search, Verdict};

/// Exit code: the generator, not the server, limited a step; the capacity is only bounded
/// from below (see `docs/capacity.md`).
pub const EXIT_GENERATOR_BOUND: i32 = 4;

/// Default warm-up of each step (a single run's is 0 s).
const DEFAULT_WARMUP: &str = "2s";

/// gen capacity: the highest open-loop rate that meets every SLO.
///
/// Runs constant-rate steps (×2 from --from until an SLO breaks or --max passes, then
/// bisection), judges each against the SLOs, and reports the highest rate that met them all,
/// the first that broke one, and why. Takes the usual request flags (method, headers, body,
/// connections, threads, timeout, probes, io, scenario ...).
#[derive(Parser, Debug, Clone)]
#[command(name = "gen capacity", version, max_term_width = 100)]
pub struct CapacityArgs {
    /// Service level objective (repeatable), threshold syntax: p99<250ms, errors<1%,
    /// /login:p95<100ms. A step passes when it meets all of them.
    #[arg(long = "slo", value_name = "EXPR")]
    pub slos: Vec<String>,

    /// First rate tried, req/s.
    #[arg(
        long,
        value_name = "REQ/S",
        default_value_t = 1000.0,
        allow_negative_numbers = true
    )]
    pub from: f64,

    /// Highest rate tried, req/s.
    #[arg(
        long,
        value_name = "REQ/S",
        default_value_t = 200_000.0,
        allow_negative_numbers = true
    )]
    pub max: f64,

    /// Measured length of each step (after its warm-up, --warmup, default 2s per step).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "30s")]
    pub step_duration: Duration,

    /// Pause between steps, so one step's backlog does not spill into the next.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "1s")]
    pub cooldown: Duration,

    /// Stop when (first bad - last good) / last good is at most this: 5% or 0.05.
    #[arg(long, value_name = "P", value_parser = parse_precision, default_value = "5%")]
    pub precision: f64,

    /// Write the latency-vs-rate chart here (.svg or .png; repeatable).
    #[arg(long, value_name = "PATH")]
    pub chart: Vec<PathBuf>,

    #[command(flatten)]
    pub load: Args,
}

/// `5%` or `0.05`, strictly between 0 and 1.
fn parse_precision(s: &str) -> Result<f64, String> {
    let v = match s.trim().strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map(|p| p / 100.0),
        None => s.trim().parse::<f64>(),
    };
    v.ok().filter(|v| *v > 0.0 && *v < 1.0).ok_or_else(|| {
        format!("invalid precision \"{s}\" (use e.g. 5% or 0.05, above 0 and below 100%)")
    })
}

/// Everything a capacity search needs, checked.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The load flags; each step sets its own rate, duration and warm-up on a copy.
    pub load: Args,
    pub slos: Vec<Threshold>,
    pub params: Params,
    pub step_duration: Duration,
    pub warmup: Duration,
    pub cooldown: Duration,
    pub charts: Vec<PathBuf>,
    /// The target as resolved (for the report).
    pub target: String,
}

impl Settings {
    /// Checks the flags; the error is one line naming the bad value.
    pub fn from_args(a: CapacityArgs) -> Result<Settings, String> {
        let l = &a.load;
        for (given, flag) in [
            (l.rate.is_some(), "--rate"),
            (l.duration.is_some(), "--duration"),
            (l.requests.is_some(), "--requests"),
            (!l.stages.is_empty(), "--stage"),
            (!l.thresholds.is_empty(), "--threshold"),
        ] {
            if given {
                return Err(format!(
                    "{flag} does not apply to gen capacity (steps take their rate from --from/--max, \
                     their length from --step-duration, their pass/fail from --slo)"
                ));
            }
        }
        for (flag, v) in [("--from", a.from), ("--max", a.max)] {
            if !(v.is_finite() && v > 0.0) {
                return Err(format!(
                    "invalid {flag} {v} (must be a positive number of requests per second)"
                ));
            }
        }
        if a.max < a.from {
            return Err(format!("--max {} is below --from {}", a.max, a.from));
        }
        if a.step_duration.is_zero() {
            return Err("invalid --step-duration 0s (must be longer than zero)".into());
        }
        for p in &a.chart {
            chart::Format::of(p)?;
        }
        let mut load = a.load.clone();
        // The SLOs are the steps' thresholds: parsed, checked against scenario request names
        // and judged by the same code as `--threshold`.
        load.thresholds = a.slos;
        let mut s = Settings {
            warmup: load.warmup,
            load,
            slos: Vec::new(),
            params: Params {
                from: a.from,
                max: a.max,
                precision: a.precision,
            },
            step_duration: a.step_duration,
            cooldown: a.cooldown,
            charts: a.chart,
            target: String::new(),
        };
        // Resolve the first step's configuration now: bad URLs, bodies, scenarios and SLOs
        // are reported before any load is sent.
        let cfg = s.step_config(a.from).map_err(|e| e.to_string())?;
        if let Some(t) = cfg.thresholds.iter().find(|t| t.metric == Metric::Rate) {
            return Err(format!(
                "SLO {:?} does not apply to gen capacity: each step's achieved rate is checked \
                 against its offered rate",
                t.source
            ));
        }
        if cfg.thresholds.is_empty() {
            return Err("no SLO given (use e.g. --slo 'p99<250ms' --slo 'errors<1%')".into());
        }
        s.slos = cfg.thresholds.clone();
        s.target = cfg.target.to_string();
        Ok(s)
    }

    /// Default pool of a step: enough connections for twice the tightest latency SLO (at least
    /// 10 ms) of requests in flight. A request then waits for a connection only when the
    /// server is already far past the SLO, so schedule lag stays the generator's own
    /// lateness rather than a server stall's queue (see `judge`).
    fn pool_for(&self, rate: f64) -> usize {
        let threads = self
            .load
            .threads
            .unwrap_or_else(|| crate::engine::allowed_cpus().len().max(1));
        let slo_s = judge::tightest_latency_us(&self.slos)
            .map_or(0.0, |us| us / 1e6)
            .max(0.010);
        ((rate * 2.0 * slo_s).ceil() as usize).clamp(4 * threads, 10_000)
    }

    /// The run configuration of one step at `rate`.
    pub fn step_config(&self, rate: f64) -> Result<RunConfig, crate::config::ConfigError> {
        let mut a = self.load.clone();
        a.connections = a.connections.or_else(|| Some(self.pool_for(rate)));
        a.rate = Some(rate);
        a.duration = Some(self.step_duration);
        a.warmup = self.warmup;
        a.json = false;
        a.output = None;
        a.html = None;
        RunConfig::from_args(&a)
    }
}

/// Runs one step at a rate and returns its report; `Err` is a one-line reason the run
/// could not happen at all.
pub trait StepRunner {
    fn run_step(&mut self, rate: f64) -> Result<Report, String>;
}

/// One step per `engine::run` on this machine.
#[derive(Debug)]
pub struct LocalRunner<'a> {
    pub settings: &'a Settings,
}

impl StepRunner for LocalRunner<'_> {
    fn run_step(&mut self, rate: f64) -> Result<Report, String> {
        let cfg = self.settings.step_config(rate).map_err(|e| e.to_string())?;
        crate::cli::measure(&cfg, false)
            .map_err(|code| format!("the step failed (exit code {code})"))
    }
}

/// One judged step.
#[derive(Debug, Clone)]
pub struct Step {
    pub rate: f64,
    pub figures: judge::Figures,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub p999_ms: Option<f64>,
    pub error_ratio: f64,
    pub cpu_utilization: Option<f64>,
    pub judgement: Judgement,
    /// The step's complete normal report.
    pub report: Value,
}

impl Step {
    fn of(rate: f64, r: &Report, judgement: Judgement) -> Step {
        let h = &r.totals().response;
        let q = |q: f64| (!h.is_empty()).then(|| h.value_at_quantile(q) as f64 / 1e3);
        Step {
            rate,
            figures: judge::Figures::of(r, rate),
            p50_ms: q(0.5),
            p99_ms: q(0.99),
            p999_ms: q(0.999),
            error_ratio: r.error_ratio().unwrap_or(0.0),
            cpu_utilization: r.cpu_utilization(),
            judgement,
            report: r.to_json(),
        }
    }

    /// The step as the chart draws it.
    pub fn point(&self) -> chart::Point {
        chart::Point {
            rate: self.rate,
            p50_ms: self.p50_ms,
            p99_ms: self.p99_ms,
            p999_ms: self.p999_ms,
            error_ratio: self.error_ratio,
            pass: self.judgement.pass,
        }
    }

    fn outcome(&self) -> Outcome {
        match self.judgement.reason {
            None => Outcome::Pass,
            Some(Reason::Generator) => Outcome::GeneratorBound,
            Some(_) => Outcome::ServerBroke,
        }
    }

    fn to_json(&self) -> Value {
        let f = &self.figures;
        json!({
            "rate": self.rate,
            "achieved": f.achieved,
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
            "p999_ms": self.p999_ms,
            "error_ratio": self.error_ratio,
            "dropped": f.dropped,
            "lag_p99_ms": f.lag_p99_us / 1e3,
            "pass": self.judgement.pass,
            "reason": self.judgement.reason.map(Reason::as_str),
            "detail": self.judgement.detail,
            "sent_rate": f.sent_rate,
            "service_mean_ms": f.service_mean_us / 1e3,
            "pool_busy": f.pool_busy,
            "cpu_utilization": self.cpu_utilization,
            "report": self.report,
        })
    }
}

/// The result of a capacity search.
#[derive(Debug, Clone)]
pub struct CapacityReport {
    pub target: String,
    pub slos: Vec<Threshold>,
    pub params: Params,
    pub step_duration: Duration,
    pub warmup: Duration,
    pub cooldown: Duration,
    pub steps: Vec<Step>,
    pub conclusion: Conclusion,
    /// Set when a step could not run at all (the search stopped there).
    pub failure: Option<String>,
}

impl CapacityReport {
    /// 0 found (or not reached: capacity ≥ --max), 1 a step could not run or not one request
    /// succeeded, 3 no rate met the SLOs, 4 generator-bound.
    pub fn exit_code(&self) -> i32 {
        if self.failure.is_some() {
            return EXIT_RUN_FAILED;
        }
        match self.conclusion.verdict {
            Verdict::Found | Verdict::NotReached => EXIT_OK,
            Verdict::NonePassed => EXIT_THRESHOLD,
            Verdict::GeneratorBound => EXIT_GENERATOR_BOUND,
        }
    }

    fn step_at(&self, rate: Option<f64>) -> Option<&Step> {
        let rate = rate?;
        self.steps.iter().find(|s| s.rate == rate)
    }

    /// One sentence: the answer and why.
    pub fn why(&self) -> String {
        let c = &self.conclusion;
        let detail = |rate| {
            self.step_at(rate)
                .map_or("", |s| s.judgement.detail.as_str())
        };
        if let Some(f) = &self.failure {
            return f.clone();
        }
        match c.verdict {
            Verdict::Found => format!(
                "every SLO met at {:.0} req/s; at {:.0} req/s: {}",
                c.max_ok.unwrap_or(0.0),
                c.first_bad.unwrap_or(0.0),
                detail(c.first_bad)
            ),
            Verdict::NotReached => format!(
                "every SLO met up to --max {:.0} req/s: the capacity is at least that",
                self.params.max
            ),
            Verdict::NonePassed => format!(
                "the first rate, {:.0} req/s, already broke: {} (lower --from)",
                c.first_bad.unwrap_or(0.0),
                detail(c.first_bad)
            ),
            Verdict::GeneratorBound => {
                let capacity = c.max_ok.map_or(
                    "unknown: no rate passed (give gen more CPU or connections, or lower --from)"
                        .to_string(),
                    |r| format!("at least {r:.0} req/s"),
                );
                format!(
                    "generator-bound at {:.0} req/s ({}); this is not the server's capacity, \
                     which is {capacity}",
                    c.generator_at.unwrap_or(0.0),
                    detail(c.generator_at),
                )
            }
        }
    }

    pub fn to_json(&self) -> Value {
        let c = &self.conclusion;
        json!({
            "gen": {"version": env!("CARGO_PKG_VERSION")},
            "capacity": {
                "target": self.target,
                "slos": self.slos.iter().map(|t| t.source.clone()).collect::<Vec<_>>(),
                "from": self.params.from,
                "max": self.params.max,
                "precision": self.params.precision,
                "step_duration_s": self.step_duration.as_secs_f64(),
                "warmup_s": self.warmup.as_secs_f64(),
                "cooldown_s": self.cooldown.as_secs_f64(),
                "steps": self.steps.iter().map(Step::to_json).collect::<Vec<_>>(),
                "max_ok_rate": c.max_ok,
                "first_bad_rate": c.first_bad,
                "generator_bound_rate": c.generator_at,
                "verdict": c.verdict.as_str(),
                "why": self.why(),
                "exit_code": self.exit_code(),
            }
        })
    }

    pub fn to_text(&self) -> String {
        let slos: Vec<&str> = self.slos.iter().map(|t| t.source.as_str()).collect();
        let mut out = format!(
            "gen capacity: {}\n  SLOs {}; steps of {:.1}s after {:.1}s warm-up, {:.1}s cool-down; \
             from {:.0} to {:.0} req/s, precision {:.1}%\n\n",
            self.target,
            slos.join(", "),
            self.step_duration.as_secs_f64(),
            self.warmup.as_secs_f64(),
            self.cooldown.as_secs_f64(),
            self.params.from,
            self.params.max,
            self.params.precision * 100.0
        );
        out.push_str(&format!(
            "  {:>9} {:>9} {:>9} {:>9} {:>9} {:>7} {:>7} {:>9} {:>5}  result\n",
            "offered", "achieved", "p50", "p99", "p99.9", "errors", "dropped", "lag p99", "cpu"
        ));
        for s in &self.steps {
            out.push_str(&step_line(s));
        }
        let c = &self.conclusion;
        let answer = match (self.failure.is_some(), c.verdict) {
            (true, _) => "run failed".to_string(),
            (false, Verdict::Found) => format!("{:.0} req/s", c.max_ok.unwrap_or(0.0)),
            (false, Verdict::NotReached) => format!("at least {:.0} req/s", self.params.max),
            (false, Verdict::NonePassed) => "no rate met the SLOs".to_string(),
            (false, Verdict::GeneratorBound) => "inconclusive (generator-bound)".to_string(),
        };
        out.push_str(&format!(
            "\n  Capacity    {answer}\n  Why         {}\n",
            self.why()
        ));
        out
    }

    /// The figures the chart draws.
    pub fn chart_data(&self) -> chart::ChartData {
        chart_data(
            &self.target,
            self.conclusion.verdict.as_str(),
            &self.steps,
            self.conclusion.max_ok,
            &self.slos,
        )
    }
}

/// The chart of `steps` (a finished search, or one in progress: `label` says which).
pub fn chart_data(
    target: &str,
    label: &str,
    steps: &[Step],
    knee: Option<f64>,
    slos: &[Threshold],
) -> chart::ChartData {
    let mut points: Vec<chart::Point> = steps.iter().map(Step::point).collect();
    points.sort_by(|a, b| a.rate.total_cmp(&b.rate));
    chart::ChartData {
        title: format!("{target} — {label}"),
        points,
        knee,
        slo_ms: slos
            .iter()
            .filter(|t| t.name.is_none() && matches!(t.metric, Metric::Quantile(_) | Metric::Max))
            .map(|t| (t.source.clone(), t.limit / 1e3))
            .collect(),
    }
}

fn step_line(s: &Step) -> String {
    let ms =
        |v: Option<f64>| v.map_or("-".to_string(), |v| crate::export::fmt_duration_us(v * 1e3));
    let f = &s.figures;
    let result = match s.judgement.reason {
        None => "pass".to_string(),
        Some(r) => format!("FAIL {}: {}", r.as_str(), s.judgement.detail),
    };
    format!(
        "  {:>9.1} {:>9.1} {:>9} {:>9} {:>9} {:>6.2}% {:>7} {:>9} {:>5}  {result}\n",
        s.rate,
        f.achieved,
        ms(s.p50_ms),
        ms(s.p99_ms),
        ms(s.p999_ms),
        s.error_ratio * 100.0,
        f.dropped,
        crate::export::fmt_duration_us(f.lag_p99_us),
        s.cpu_utilization
            .map_or("-".to_string(), |c| format!("{:.0}%", c * 100.0)),
    )
}

/// Runs the search: each step with `runner`, a cool-down between steps; `on_step` sees each
/// judged step (for progress lines).
pub fn search_capacity(
    s: &Settings,
    runner: &mut dyn StepRunner,
    mut on_step: impl FnMut(&Step),
) -> CapacityReport {
    let mut search = Search::new(s.params);
    let mut steps: Vec<Step> = Vec::new();
    let mut failure = None;
    // The fastest mean service time of the passing steps: the server unloaded.
    let mut baseline: Option<f64> = None;
    while let Some(rate) = search.next_rate() {
        if !steps.is_empty() && !s.cooldown.is_zero() {
            std::thread::sleep(s.cooldown);
        }
        let report = match runner.run_step(rate) {
            Ok(r) => r,
            Err(e) => {
                failure = Some(format!("the step at {rate:.0} req/s could not run: {e}"));
                break;
            }
        };
        if steps.is_empty() && report.exit_code() == EXIT_RUN_FAILED {
            let step = Step::of(rate, &report, judge::judge(&report, &s.slos, rate, None));
            on_step(&step);
            steps.push(step);
            failure = Some(format!(
                "not one request succeeded at {rate:.0} req/s: is the target up? (see the step's errors)"
            ));
            break;
        }
        let judgement = judge::judge(&report, &s.slos, rate, baseline);
        let step = Step::of(rate, &report, judgement);
        if step.judgement.pass && step.figures.service_mean_us > 0.0 {
            let m = step.figures.service_mean_us;
            baseline = Some(baseline.map_or(m, |b| b.min(m)));
        }
        on_step(&step);
        search.record(rate, step.outcome());
        steps.push(step);
    }
    CapacityReport {
        target: s.target.clone(),
        slos: s.slos.clone(),
        params: s.params,
        step_duration: s.step_duration,
        warmup: s.warmup,
        cooldown: s.cooldown,
        steps,
        conclusion: search.conclusion(),
        failure,
    }
}

/// Parses a command's flags (`argv` without the program and subcommand names); on help or
/// bad input, the exit code.
pub fn parse_args<T: CommandFactory + FromArgMatches>(
    name: &str,
    argv: &[String],
) -> Result<T, i32> {
    let full = std::iter::once(name.to_string()).chain(argv.iter().cloned());
    // A step's warm-up defaults to 2 s, not a single run's 0 s; said so in --help too.
    let parsed = T::command()
        .mut_arg("warmup", |a| a.default_value(DEFAULT_WARMUP))
        .try_get_matches_from(full)
        .and_then(|m| T::from_arg_matches(&m));
    parsed.map_err(crate::cli::clap_exit_code)
}

/// Parses `gen capacity` flags; on help or bad input, the exit code.
pub fn parse(name: &str, argv: &[String]) -> Result<Settings, i32> {
    let args = parse_args::<CapacityArgs>(name, argv)?;
    Settings::from_args(args).map_err(|e| {
        eprintln!("gen: {e}");
        EXIT_BAD_INPUT
    })
}

/// Prints a judged step as one progress line on stderr.
pub fn progress(s: &Step) {
    let f = &s.figures;
    let p99 = s
        .p99_ms
        .map_or("-".into(), |v| crate::export::fmt_duration_us(v * 1e3));
    let result = match s.judgement.reason {
        None => "pass".to_string(),
        Some(r) => format!("FAIL {}: {}", r.as_str(), s.judgement.detail),
    };
    eprintln!(
        "gen: step {:.0} req/s: achieved {:.0}, p99 {p99}, {result}",
        s.rate, f.achieved
    );
}

/// Writes the JSON file, prints the report, writes the charts; returns the exit code.
pub fn finish(report: &CapacityReport, load: &Args, charts: &[PathBuf]) -> i32 {
    let json = report.to_json();
    let text = serde_json::to_string_pretty(&json).unwrap_or_default();
    if let Err(e) = crate::export::write_files(&json, load.output.as_deref(), load.html.as_deref())
    {
        eprintln!("gen: {e}");
        return EXIT_RUN_FAILED;
    }
    for path in charts {
        if let Err(e) = chart::write(&report.chart_data(), path) {
            eprintln!("gen: {e}");
            return EXIT_RUN_FAILED;
        }
    }
    if load.json {
        println!("{text}");
    } else {
        print!("{}", report.to_text());
    }
    report.exit_code()
}

/// Entry of `gen capacity ARGS`.
pub fn main(argv: Vec<String>) -> i32 {
    let settings = match parse("gen capacity", &argv) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let quiet = settings.load.quiet;
    let mut runner = LocalRunner {
        settings: &settings,
    };
    let report = search_capacity(&settings, &mut runner, |s| {
        if !quiet {
            progress(s);
        }
    });
    finish(&report, &settings.load, &settings.charts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(extra: &[&str]) -> Result<Settings, i32> {
        let mut argv: Vec<String> = ["--target", "http://127.0.0.1:9/", "--slo", "p99<10ms"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        argv.extend(extra.iter().map(|s| s.to_string()));
        parse("gen capacity", &argv)
    }

    #[test]
    fn flags_and_defaults() {
        let s = settings(&["--from", "500", "--precision", "2%", "-H", "X-A: 1"]).unwrap();
        assert_eq!(s.params.from, 500.0);
        assert_eq!(s.params.max, 200_000.0);
        assert_eq!(s.params.precision, 0.02);
        assert_eq!(s.warmup, Duration::from_secs(2));
        assert_eq!(s.step_duration, Duration::from_secs(30));
        assert_eq!(s.slos.len(), 1);
        let s = settings(&["--warmup", "0s"]).unwrap();
        assert_eq!(s.warmup, Duration::ZERO, "an explicit --warmup wins");
        let cfg = s.step_config(4000.0).unwrap();
        assert_eq!(cfg.plan.rate(), Some(4000.0));
        assert_eq!(cfg.plan.duration, Some(Duration::from_secs(30)));
    }

    #[test]
    fn bad_input_is_exit_2() {
        for bad in [
            &["--rate", "100"][..],
            &["--from", "0"],
            &["--from", "100", "--max", "50"],
            &["--precision", "0"],
            &["--precision", "150%"],
            &["--slo", "p99<1parsec"],
            &["--slo", "rate>=100"],
            &["--chart", "x.gif"],
            &["--step-duration", "0s"],
        ] {
            assert_eq!(settings(bad).unwrap_err(), EXIT_BAD_INPUT, "{bad:?}");
        }
        let none = parse(
            "gen capacity",
            &["--target".into(), "http://127.0.0.1:9/".into()],
        );
        assert_eq!(none.unwrap_err(), EXIT_BAD_INPUT, "an SLO is required");
    }
}
