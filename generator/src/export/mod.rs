//! The run report: figures derived from the merged [`Snapshot`]s, rendered as terminal text
//! ([`Report::to_text`], `text.rs`) or JSON ([`Report::to_json`], `json.rs`, validated by
//! `docs/report.schema.json`). `docs/report.md` defines every figure.
//!
//! This module also owns the "generator-bound" judgement: when the generator itself could not
//! keep up, latency and rate figures describe the generator, not the target, and the report
//! says so loudly (see [`BoundReason`]).

pub mod cmd;
pub mod compare;
pub(crate) mod endpoints;
pub mod html;
mod json;
mod kernel;
pub mod prometheus;
mod text;
mod threshold;

use crate::measure::{ErrorKind, Snapshot};
use crate::probes::KernelStatus;

pub use endpoints::{current_rps, second_counts as endpoints_second_counts, EndpointRow};
pub use text::{fmt_bytes, fmt_duration_us};
pub use threshold::{Metric, Op, Threshold, Verdict};

/// Exit code: the run completed (whatever the latencies were).
pub const EXIT_OK: i32 = 0;
/// Exit code: requests were attempted but not one got a successful (< 400) response.
pub const EXIT_RUN_FAILED: i32 = 1;
/// Exit code: bad input (flags, URL, files); nothing was run.
pub const EXIT_BAD_INPUT: i32 = 2;
/// Exit code: the run completed and a threshold (`--threshold`) failed.
pub const EXIT_THRESHOLD: i32 = 3;

/// Generator-bound rule: schedule lag p99 above this (µs) means requests left late.
pub const LAG_P99_LIMIT_US: u64 = 1_000;
/// Generator-bound rule (open model): achieved rate below this fraction of the target while no
/// request failed.
pub const RATE_SHORTFALL_RATIO: f64 = 0.995;
/// Generator-bound rule: process CPU time above this fraction of `threads × measured_s`.
pub const CPU_LIMIT_RATIO: f64 = 0.9;

/// Load model of the run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// Open model: requests leave on a fixed schedule of `rate` per second (all threads).
    Open {
        /// Target rate, requests per second.
        rate: f64,
    },
    /// Closed model: each of `connections` sends its next request when the previous returns.
    Closed {
        /// Concurrent connections (or users).
        connections: usize,
    },
}

impl Mode {
    /// `"open"` or `"closed"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Mode::Open { .. } => "open",
            Mode::Closed { .. } => "closed",
        }
    }

    /// The target rate of an open model.
    pub fn target_rate(&self) -> Option<f64> {
        match *self {
            Mode::Open { rate } => Some(rate),
            Mode::Closed { .. } => None,
        }
    }
}

/// What was run, as resolved from the command line.
#[derive(Debug, Clone, PartialEq)]
pub struct RunInfo {
    /// `gen` version.
    pub version: String,
    /// Target URL.
    pub target: String,
    /// HTTP method.
    pub method: String,
    /// Load model.
    pub mode: Mode,
    /// Requested measured duration in seconds (0 when the run is bounded otherwise).
    pub duration_s: f64,
    /// Warm-up in seconds, excluded from every figure.
    pub warmup_s: f64,
    /// Worker threads.
    pub threads: usize,
    /// Connections over all threads.
    pub connections: usize,
    /// The users model's parameters (`--users`), `None` otherwise.
    pub users: Option<UsersInfo>,
    /// I/O driver used: `"io_uring"` or `"epoll"`.
    pub driver: String,
    /// Wall-clock start, ms since the Unix epoch.
    pub started_at_unix_ms: u64,
}

/// The users model as the report shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct UsersInfo {
    /// Simulated users (= connections).
    pub users: usize,
    /// Users started per second; `None`: all at once.
    pub spawn_rate: Option<f64>,
    /// Think time range, seconds (equal for a fixed think time).
    pub think_min_s: f64,
    pub think_max_s: f64,
}

/// Why a run was stopped before its planned end (`--abort-on-fail`).
#[derive(Debug, Clone, PartialEq)]
pub struct Abort {
    /// The threshold as written.
    pub threshold: String,
    /// Measured seconds (after warm-up) when it was judged failed.
    pub at_s: f64,
}

/// CPU time used by the generator process over the measured window, in seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Cpu {
    /// User-mode CPU seconds.
    pub user_s: f64,
    /// Kernel-mode CPU seconds.
    pub system_s: f64,
}

impl Cpu {
    /// User + system seconds.
    pub fn total_s(&self) -> f64 {
        self.user_s + self.system_s
    }
}

/// One reason the generator, not the target, limited the run.
#[derive(Debug, Clone, PartialEq)]
pub enum BoundReason {
    /// Schedule lag p99 above [`LAG_P99_LIMIT_US`].
    ScheduleLag {
        /// Observed schedule lag p99, µs.
        p99_us: u64,
    },
    /// Requests dropped because no connection was free and the wait queue was full.
    Dropped {
        /// Dropped requests.
        count: u64,
    },
    /// Open model: achieved rate below [`RATE_SHORTFALL_RATIO`] × target with no errors.
    RateShortfall {
        /// Achieved responses per second.
        achieved: f64,
        /// Target requests per second.
        target: f64,
    },
    /// CPU time above [`CPU_LIMIT_RATIO`] × threads × measured seconds.
    Cpu {
        /// CPU seconds used.
        used_s: f64,
        /// threads × measured seconds.
        available_s: f64,
    },
}

impl BoundReason {
    /// Stable machine-readable code: `schedule_lag`, `dropped`, `rate_shortfall`, `cpu`.
    pub fn code(&self) -> &'static str {
        match self {
            BoundReason::ScheduleLag { .. } => "schedule_lag",
            BoundReason::Dropped { .. } => "dropped",
            BoundReason::RateShortfall { .. } => "rate_shortfall",
            BoundReason::Cpu { .. } => "cpu",
        }
    }

    /// One human sentence with the figures.
    pub fn message(&self) -> String {
        match *self {
            BoundReason::ScheduleLag { p99_us } => format!(
                "schedule lag p99 is {} (limit {}): requests left later than scheduled",
                fmt_duration_us(p99_us as f64),
                fmt_duration_us(LAG_P99_LIMIT_US as f64)
            ),
            BoundReason::Dropped { count } => format!(
                "{count} {} dropped: no connection was free and the wait queue was full \
                 (add connections or lower the rate)",
                if count == 1 { "request" } else { "requests" }
            ),
            BoundReason::RateShortfall { achieved, target } => format!(
                "achieved {achieved:.2} req/s is below {:.1}% of the {target:.2} req/s target \
                 with no errors",
                RATE_SHORTFALL_RATIO * 100.0
            ),
            BoundReason::Cpu {
                used_s,
                available_s,
            } => format!(
                "CPU use {used_s:.2}s is above {:.0}% of the {available_s:.2}s available \
                 (threads × measured time)",
                CPU_LIMIT_RATIO * 100.0
            ),
        }
    }
}

/// One interval of the time series (normally one second), reduced to a few figures so a long
/// run does not keep every interval's histograms.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesPoint {
    /// Start of the interval, seconds since the measured window began.
    pub t_s: f64,
    /// Length of the interval, seconds.
    pub duration_s: f64,
    /// Responses received.
    pub requests: u64,
    /// Requests sent.
    pub sent: u64,
    /// Errors of all kinds.
    pub errors: u64,
    /// Dropped requests.
    pub dropped: u64,
    /// Response time p50, µs (`None` without responses).
    pub p50_us: Option<u64>,
    /// Response time p99, µs (`None` without responses).
    pub p99_us: Option<u64>,
    /// Response time max, µs (`None` without responses).
    pub max_us: Option<u64>,
}

impl SeriesPoint {
    /// Reduces one interval snapshot; `t_s` / `duration_s` as defined on the fields.
    pub fn from_snapshot(s: &Snapshot, t_s: f64, duration_s: f64) -> Self {
        let q = |q: f64| (!s.response.is_empty()).then(|| s.response.value_at_quantile(q));
        SeriesPoint {
            t_s,
            duration_s,
            requests: s.requests(),
            sent: s.sent(),
            errors: s.errors_total(),
            dropped: s.dropped(),
            p50_us: q(0.5),
            p99_us: q(0.99),
            max_us: q(1.0),
        }
    }

    /// Responses per second over the interval (0 for an empty interval length).
    pub fn rate(&self) -> f64 {
        per_second(self.requests, self.duration_s)
    }
}

/// The complete report of one run.
#[derive(Debug, Clone)]
pub struct Report {
    info: RunInfo,
    totals: Snapshot,
    series: Vec<SeriesPoint>,
    measured_s: f64,
    cpu: Cpu,
    reasons: Vec<BoundReason>,
    /// eBPF figures (or why there are none); see [`Report::with_kernel`].
    kernel: KernelStatus,
    /// Scenario request names, in the order of `totals.endpoints`.
    endpoint_names: Vec<String>,
    /// Pass/fail conditions judged on the whole run.
    thresholds: Vec<Threshold>,
    /// Set when `--abort-on-fail` stopped the run.
    aborted: Option<Abort>,
    /// Per name (then `Aggregated`): requests per second over the last seconds of the run.
    current_rps: Option<Vec<f64>>,
}

impl Report {
    /// Builds the report. `totals`: everything measured after warm-up, merged over threads;
    /// `series`: per-interval snapshots in time order (may be empty); `measured_s`: length of
    /// the measured window (after warm-up); `cpu`: the process's CPU time over that window.
    ///
    /// Series offsets come from the snapshots' interval fields relative to
    /// `totals.interval_start_ns` (or the first series start); intervals without bounds are
    /// taken as consecutive 1 s intervals numbered from 0.
    pub fn new(
        info: RunInfo,
        totals: &Snapshot,
        series: &[Snapshot],
        measured_s: f64,
        cpu: Cpu,
    ) -> Report {
        let base = if totals.interval_start_ns != 0 {
            totals.interval_start_ns
        } else {
            series
                .iter()
                .map(|s| s.interval_start_ns)
                .find(|&t| t != 0)
                .unwrap_or(0)
        };
        let points = series
            .iter()
            .enumerate()
            .map(|(i, s)| match s.interval_secs() {
                Some(len) if base != 0 => {
                    let t = (i128::from(s.interval_start_ns) - i128::from(base)) as f64 / 1e9;
                    SeriesPoint::from_snapshot(s, t, len)
                }
                _ => SeriesPoint::from_snapshot(s, i as f64, 1.0),
            })
            .collect();
        Self::from_points(info, totals, points, measured_s, cpu)
    }

    /// Like [`Report::new`] with an already reduced series (see [`SeriesPoint::from_snapshot`]).
    pub fn from_points(
        info: RunInfo,
        totals: &Snapshot,
        series: Vec<SeriesPoint>,
        measured_s: f64,
        cpu: Cpu,
    ) -> Report {
        let measured_s = if measured_s.is_finite() {
            measured_s.max(0.0)
        } else {
            0.0
        };
        let mut r = Report {
            info,
            totals: totals.clone(),
            series,
            measured_s,
            cpu,
            reasons: Vec::new(),
            kernel: KernelStatus::Off,
            endpoint_names: Vec::new(),
            thresholds: Vec::new(),
            aborted: None,
            current_rps: None,
        };
        r.reasons = r.judge();
        r
    }

    /// The generator-bound rules (documented in `docs/report.md`).
    fn judge(&self) -> Vec<BoundReason> {
        let t = &self.totals;
        let mut reasons = Vec::new();
        let lag_p99 = t.lag.value_at_quantile(0.99);
        if !t.lag.is_empty() && lag_p99 > LAG_P99_LIMIT_US {
            reasons.push(BoundReason::ScheduleLag { p99_us: lag_p99 });
        }
        if t.dropped() > 0 {
            reasons.push(BoundReason::Dropped { count: t.dropped() });
        }
        if let Some(target) = self.info.mode.target_rate() {
            let achieved = self.achieved_rate();
            if t.errors_total() == 0
                && self.measured_s > 0.0
                && achieved < RATE_SHORTFALL_RATIO * target
            {
                reasons.push(BoundReason::RateShortfall { achieved, target });
            }
        }
        let available_s = self.info.threads as f64 * self.measured_s;
        if available_s > 0.0 && self.cpu.total_s() > CPU_LIMIT_RATIO * available_s {
            reasons.push(BoundReason::Cpu {
                used_s: self.cpu.total_s(),
                available_s,
            });
        }
        reasons
    }

    /// Adds what the kernel probes measured (or why they did not run).
    pub fn with_kernel(mut self, kernel: KernelStatus) -> Report {
        self.kernel = kernel;
        self
    }

    /// The kernel probes' figures or status.
    pub fn kernel(&self) -> &KernelStatus {
        &self.kernel
    }

    /// Names the per-request rows of the totals (a scenario run): the report then has the
    /// per-name table ([`Report::endpoint_rows`]).
    pub fn with_endpoint_names(mut self, names: Vec<String>) -> Report {
        self.endpoint_names = names;
        self
    }

    /// Thresholds to judge ([`Report::verdicts`]); a failed one makes the exit code
    /// [`EXIT_THRESHOLD`].
    pub fn with_thresholds(mut self, thresholds: Vec<Threshold>) -> Report {
        self.thresholds = thresholds;
        self
    }

    /// Records that `--abort-on-fail` stopped the run; the exit code is then
    /// [`EXIT_THRESHOLD`] (unless nothing succeeded at all).
    pub fn with_abort(mut self, aborted: Option<Abort>) -> Report {
        self.aborted = aborted;
        self
    }

    /// Why the run was stopped early, if it was.
    pub fn aborted(&self) -> Option<&Abort> {
        self.aborted.as_ref()
    }

    /// Per-name "current RPS" (requests per second over the last seconds of the run, one per
    /// name then the `Aggregated` row; see [`endpoints::current_rps`]).
    pub fn with_current_rps(mut self, rps: Option<Vec<f64>>) -> Report {
        self.current_rps = rps;
        self
    }

    /// Each threshold with its measured value and pass/fail.
    pub fn verdicts(&self) -> Vec<Verdict> {
        threshold::judge(self)
    }

    /// The per-name table with its `Aggregated` row; empty without a scenario.
    pub fn endpoint_rows(&self) -> Vec<EndpointRow> {
        endpoints::rows(self)
    }

    /// The run description.
    pub fn info(&self) -> &RunInfo {
        &self.info
    }

    /// The merged totals.
    pub fn totals(&self) -> &Snapshot {
        &self.totals
    }

    /// The reduced time series.
    pub fn series(&self) -> &[SeriesPoint] {
        &self.series
    }

    /// Length of the measured window, seconds.
    pub fn measured_s(&self) -> f64 {
        self.measured_s
    }

    /// CPU time of the generator over the measured window.
    pub fn cpu(&self) -> Cpu {
        self.cpu
    }

    /// Responses per second over the measured window.
    pub fn achieved_rate(&self) -> f64 {
        per_second(self.totals.requests(), self.measured_s)
    }

    /// Requests sent per second over the measured window.
    pub fn sent_rate(&self) -> f64 {
        per_second(self.totals.sent(), self.measured_s)
    }

    /// Failed fraction of requests (no response, or a status outside 2xx, as the per-name
    /// table and the `errors` threshold count them); `None` without requests.
    pub fn error_ratio(&self) -> Option<f64> {
        let (requests, failures) = endpoints::aggregate(&self.totals);
        (requests > 0).then(|| failures as f64 / requests as f64)
    }

    /// CPU µs per response, `None` without responses.
    pub fn cpu_us_per_request(&self) -> Option<f64> {
        let n = self.totals.requests();
        (n > 0).then(|| finite(self.cpu.total_s() * 1e6 / n as f64))
    }

    /// CPU time as a fraction of `threads × measured_s`, `None` when that is 0.
    pub fn cpu_utilization(&self) -> Option<f64> {
        let available = self.info.threads as f64 * self.measured_s;
        (available > 0.0).then(|| finite(self.cpu.total_s() / available))
    }

    /// Why the generator was the bottleneck; empty when it was not.
    pub fn bound_reasons(&self) -> &[BoundReason] {
        &self.reasons
    }

    /// True when any generator-bound rule fired.
    pub fn generator_bound(&self) -> bool {
        !self.reasons.is_empty()
    }

    /// Requests attempted: sent, failed (any kind) or dropped.
    fn attempted(&self) -> bool {
        let t = &self.totals;
        t.sent() > 0 || t.requests() > 0 || t.errors_total() > 0 || t.dropped() > 0
    }

    /// [`EXIT_OK`], or [`EXIT_RUN_FAILED`] when requests were attempted and not one got a
    /// successful (status < 400) response, e.g. the target was unreachable.
    pub fn exit_code(&self) -> i32 {
        if self.attempted() && self.totals.successful() == 0 {
            EXIT_RUN_FAILED
        } else if self.aborted.is_some() || self.verdicts().iter().any(|v| !v.pass) {
            EXIT_THRESHOLD
        } else {
            EXIT_OK
        }
    }

    /// Human-readable report; `full_latency` adds the HDR percentile spectrum of the response
    /// time (like wrk2's `--latency`).
    pub fn to_text(&self, full_latency: bool) -> String {
        text::render(self, full_latency) + &endpoints::text(self) + &threshold::text(self)
    }

    /// The JSON report (schema `docs/report.schema.json`, version [`SCHEMA_VERSION`]).
    pub fn to_json(&self) -> serde_json::Value {
        let mut doc = json::render(self);
        let rows = self.endpoint_rows();
        if let (false, Some(map)) = (rows.is_empty(), doc.as_object_mut()) {
            map.insert(
                "endpoints".into(),
                serde_json::to_value(rows).unwrap_or_default(),
            );
        }
        if let (false, Some(map)) = (self.thresholds.is_empty(), doc.as_object_mut()) {
            map.insert("thresholds".into(), threshold::json(self));
            // The document's exit code is written before thresholds are known to it.
            map.insert("exit_code".into(), self.exit_code().into());
        }
        if let (Some(a), Some(map)) = (&self.aborted, doc.as_object_mut()) {
            map.insert(
                "aborted".into(),
                serde_json::json!({ "threshold": a.threshold, "at_s": finite(a.at_s) }),
            );
        }
        doc
    }
}

/// Writes the JSON report to `output` (`--output`) and the HTML report to `html` (`--html`)
/// where asked; the error names the file that could not be written.
pub fn write_files(
    json: &serde_json::Value,
    output: Option<&std::path::Path>,
    html: Option<&std::path::Path>,
) -> Result<(), String> {
    if let Some(path) = output {
        let text = serde_json::to_string_pretty(json).unwrap_or_default();
        std::fs::write(path, text + "\n")
            .map_err(|e| format!("cannot write report to {}: {e}", path.display()))?;
    }
    if let Some(path) = html {
        std::fs::write(path, html::render(json))
            .map_err(|e| format!("cannot write HTML report to {}: {e}", path.display()))?;
    }
    Ok(())
}

/// `--abort-on-fail`, asked once a second: `cumulative` holds everything measured in the
/// first `secs` seconds after warm-up; returns the abort when a threshold is certainly failed
/// (the rule: [`threshold::certainly_failed`]).
pub fn judge_abort(
    info: &RunInfo,
    cumulative: &Snapshot,
    secs: f64,
    thresholds: &[Threshold],
    names: &[String],
) -> Option<Abort> {
    let r = Report::from_points(info.clone(), cumulative, Vec::new(), secs, Cpu::default())
        .with_thresholds(thresholds.to_vec())
        .with_endpoint_names(names.to_vec());
    threshold::certainly_failed(&r).map(|th| Abort {
        threshold: th.source.clone(),
        at_s: secs,
    })
}

/// The JSON schema version written as `schema_version`.
pub const SCHEMA_VERSION: u32 = json::SCHEMA_VERSION;

/// One-line live display for an interval snapshot: elapsed time, achieved rate (against the
/// target when open), response time p99, errors and drops.
///
/// `secs` is the elapsed run time at the end of the interval. The rate uses the snapshot's
/// interval bounds when set, else assumes a 1 s interval.
pub fn progress_line(interval: &Snapshot, secs: f64, target_rate: Option<f64>) -> String {
    let len = interval.interval_secs().unwrap_or(1.0);
    let rate = per_second(interval.requests(), len);
    let rate = match target_rate {
        Some(t) => format!("{rate:.1}/{t:.1} req/s"),
        None => format!("{rate:.1} req/s"),
    };
    let p99 = if interval.response.is_empty() {
        "-".to_string()
    } else {
        fmt_duration_us(interval.response.value_at_quantile(0.99) as f64)
    };
    let mut line = format!(
        "[{:>7.1}s] {rate}  p99 {p99}  errors {}",
        finite(secs),
        interval.errors_total()
    );
    if interval.dropped() > 0 {
        line.push_str(&format!("  dropped {}", interval.dropped()));
    }
    line
}

/// `n / secs`, 0 when `secs` is not positive.
fn per_second(n: u64, secs: f64) -> f64 {
    if secs > 0.0 && secs.is_finite() {
        n as f64 / secs
    } else {
        0.0
    }
}

/// JSON cannot hold NaN or infinities (serde_json would write `null`); clamp them to 0.
fn finite(x: f64) -> f64 {
    if x.is_finite() {
        x
    } else {
        0.0
    }
}

/// Errors of every kind, in report order, with their count.
fn error_counts(s: &Snapshot) -> impl Iterator<Item = (ErrorKind, u64)> + '_ {
    ErrorKind::ALL.into_iter().map(move |k| (k, s.errors(k)))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::measure::Recorder;

    const MS: u64 = 1_000_000;

    pub(crate) fn info(mode: Mode) -> RunInfo {
        RunInfo {
            version: "0.1.0".into(),
            target: "http://127.0.0.1:8080/".into(),
            method: "GET".into(),
            mode,
            duration_s: 10.0,
            warmup_s: 1.0,
            threads: 2,
            connections: 8,
            users: None,
            driver: "io_uring".into(),
            started_at_unix_ms: 1_700_000_000_000,
        }
    }

    /// `n` responses with 2 ms response time and `lag_us` of schedule lag, `n` sends.
    pub(crate) fn snap(n: u64, lag_us: u64) -> Snapshot {
        let mut r = Recorder::new();
        for i in 0..n {
            let intended = i * MS;
            let sent = intended + lag_us * 1_000;
            r.record_sent(100);
            r.record_response(intended, sent, sent + MS, intended + 2 * MS, 200, 500);
        }
        r.take_snapshot()
    }

    fn codes(r: &Report) -> Vec<&'static str> {
        r.bound_reasons().iter().map(BoundReason::code).collect()
    }

    #[test]
    fn healthy_open_run_is_not_bound() {
        let r = Report::new(
            info(Mode::Open { rate: 100.0 }),
            &snap(1000, 50),
            &[],
            10.0,
            Cpu {
                user_s: 1.0,
                system_s: 1.0,
            },
        );
        assert!(!r.generator_bound(), "{:?}", r.bound_reasons());
        assert_eq!(r.exit_code(), EXIT_OK);
        assert_eq!(r.achieved_rate(), 100.0);
        assert_eq!(r.sent_rate(), 100.0);
    }

    #[test]
    fn schedule_lag_rule() {
        let just = Report::new(
            info(Mode::Closed { connections: 8 }),
            &snap(100, 1_000),
            &[],
            10.0,
            Cpu::default(),
        );
        assert!(
            !just.generator_bound(),
            "1 ms p99 is at the limit, not above it"
        );
        let late = Report::new(
            info(Mode::Closed { connections: 8 }),
            &snap(100, 1_500),
            &[],
            10.0,
            Cpu::default(),
        );
        assert_eq!(codes(&late), ["schedule_lag"]);
        assert!(late.bound_reasons()[0].message().contains("1.50ms"));
    }

    #[test]
    fn dropped_rule() {
        let mut r = Recorder::new();
        r.record_dropped();
        let mut t = snap(100, 0);
        t.merge(&r.take_snapshot());
        let rep = Report::new(
            info(Mode::Closed { connections: 8 }),
            &t,
            &[],
            10.0,
            Cpu::default(),
        );
        assert_eq!(codes(&rep), ["dropped"]);
    }

    #[test]
    fn rate_shortfall_rule_only_when_error_free_and_open() {
        // 990 responses in 10 s against 100/s: 99% < 99.5%.
        let short = snap(990, 0);
        let open = Report::new(
            info(Mode::Open { rate: 100.0 }),
            &short,
            &[],
            10.0,
            Cpu::default(),
        );
        assert_eq!(codes(&open), ["rate_shortfall"]);
        // 996 of 1000 is above 99.5%.
        let ok = Report::new(
            info(Mode::Open { rate: 100.0 }),
            &snap(996, 0),
            &[],
            10.0,
            Cpu::default(),
        );
        assert!(!ok.generator_bound());
        let closed = Report::new(
            info(Mode::Closed { connections: 8 }),
            &short,
            &[],
            10.0,
            Cpu::default(),
        );
        assert!(!closed.generator_bound());
        let mut with_errors = short.clone();
        let mut r = Recorder::new();
        r.record_error(ErrorKind::Timeout);
        with_errors.merge(&r.take_snapshot());
        let errs = Report::new(
            info(Mode::Open { rate: 100.0 }),
            &with_errors,
            &[],
            10.0,
            Cpu::default(),
        );
        assert!(
            !errs.generator_bound(),
            "errors explain the shortfall: the target is struggling"
        );
    }

    #[test]
    fn cpu_rule() {
        // 2 threads × 10 s = 20 s available; 90% is 18 s.
        let at = Report::new(
            info(Mode::Closed { connections: 8 }),
            &snap(10, 0),
            &[],
            10.0,
            Cpu {
                user_s: 9.0,
                system_s: 9.0,
            },
        );
        assert!(!at.generator_bound());
        let over = Report::new(
            info(Mode::Closed { connections: 8 }),
            &snap(10, 0),
            &[],
            10.0,
            Cpu {
                user_s: 9.0,
                system_s: 9.5,
            },
        );
        assert_eq!(codes(&over), ["cpu"]);
        assert_eq!(over.cpu_utilization(), Some(18.5 / 20.0));
        assert_eq!(over.cpu_us_per_request(), Some(18.5e6 / 10.0));
    }

    #[test]
    fn several_reasons_in_fixed_order() {
        let mut t = snap(10, 5_000);
        let mut r = Recorder::new();
        r.record_dropped();
        t.merge(&r.take_snapshot());
        let rep = Report::new(
            info(Mode::Open { rate: 100.0 }),
            &t,
            &[],
            10.0,
            Cpu {
                user_s: 30.0,
                system_s: 0.0,
            },
        );
        // Dropped requests are not errors, so the shortfall rule applies too.
        assert_eq!(
            codes(&rep),
            ["schedule_lag", "dropped", "rate_shortfall", "cpu"]
        );
        let rep = Report::new(
            info(Mode::Open { rate: 100.0 }),
            &snap(10, 5_000),
            &[],
            10.0,
            Cpu::default(),
        );
        assert_eq!(codes(&rep), ["schedule_lag", "rate_shortfall"]);
    }

    #[test]
    fn exit_codes() {
        let cpu = Cpu::default();
        let nothing = Report::new(
            info(Mode::Closed { connections: 8 }),
            &Snapshot::empty(),
            &[],
            10.0,
            cpu,
        );
        assert_eq!(
            nothing.exit_code(),
            EXIT_OK,
            "nothing attempted is not a failure"
        );
        let mut r = Recorder::new();
        r.record_error(ErrorKind::Connect);
        let unreachable = Report::new(
            info(Mode::Closed { connections: 8 }),
            &r.take_snapshot(),
            &[],
            10.0,
            cpu,
        );
        assert_eq!(unreachable.exit_code(), EXIT_RUN_FAILED);
        r.record_sent(10);
        r.record_response(0, 0, MS, MS, 503, 0);
        let all_5xx = Report::new(
            info(Mode::Closed { connections: 8 }),
            &r.take_snapshot(),
            &[],
            10.0,
            cpu,
        );
        assert_eq!(all_5xx.exit_code(), EXIT_RUN_FAILED);
        r.record_response(0, 0, MS, MS, 503, 0);
        r.record_response(0, 0, MS, MS, 204, 0);
        let some_ok = Report::new(
            info(Mode::Closed { connections: 8 }),
            &r.take_snapshot(),
            &[],
            10.0,
            cpu,
        );
        assert_eq!(some_ok.exit_code(), EXIT_OK);
    }

    #[test]
    fn series_offsets_from_intervals_or_index() {
        let base = 5_000_000_000;
        let totals = snap(3, 0).with_interval(base, base + 2_000_000_000);
        let s0 = snap(1, 0).with_interval(base, base + 1_000_000_000);
        let s1 = snap(2, 0).with_interval(base + 1_000_000_000, base + 1_500_000_000);
        let r = Report::new(
            info(Mode::Closed { connections: 8 }),
            &totals,
            &[s0, s1],
            2.0,
            Cpu::default(),
        );
        let pts = r.series();
        assert_eq!(
            (pts[0].t_s, pts[0].duration_s, pts[0].requests),
            (0.0, 1.0, 1)
        );
        assert_eq!(
            (pts[1].t_s, pts[1].duration_s, pts[1].rate()),
            (1.0, 0.5, 4.0)
        );
        let r = Report::new(
            info(Mode::Closed { connections: 8 }),
            &snap(3, 0),
            &[snap(1, 0), Snapshot::empty()],
            2.0,
            Cpu::default(),
        );
        let pts = r.series();
        assert_eq!(
            (
                pts[1].t_s,
                pts[1].duration_s,
                pts[1].requests,
                pts[1].p99_us
            ),
            (1.0, 1.0, 0, None)
        );
        assert!(pts[0].p99_us.is_some());
    }

    #[test]
    fn progress_line_shows_rate_p99_errors() {
        let mut s = snap(100, 0);
        let line = progress_line(&s, 3.0, Some(100.0));
        assert!(line.contains("3.0s"), "{line}");
        assert!(line.contains("100.0/100.0 req/s"), "{line}");
        assert!(line.contains("p99 2.00ms"), "{line}");
        assert!(line.contains("errors 0"), "{line}");
        assert!(!line.contains("dropped"), "{line}");
        let mut r = Recorder::new();
        r.record_dropped();
        s.merge(&r.take_snapshot());
        let s = s.with_interval(1_000_000_000, 1_500_000_000);
        let line = progress_line(&s, 3.0, None);
        assert!(
            line.contains("200.0 req/s") && line.contains("dropped 1"),
            "{line}"
        );
        assert!(progress_line(&Snapshot::empty(), 0.0, None).contains("p99 -"));
    }

    #[test]
    fn non_finite_inputs_do_not_leak_nan() {
        let r = Report::new(
            info(Mode::Open { rate: 100.0 }),
            &snap(10, 0),
            &[],
            f64::NAN,
            Cpu::default(),
        );
        assert_eq!(r.achieved_rate(), 0.0);
        assert_eq!(r.cpu_utilization(), None);
        let json = r.to_json();
        assert_eq!(json["throughput"]["achieved_rate"], 0.0);
        assert_eq!(json["run"]["measured_s"], 0.0);
    }
}
