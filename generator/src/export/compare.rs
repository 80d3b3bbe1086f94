//! `gen compare old.json new.json`: a regression report between two run reports (single-node
//! or coordinator JSON). Pure: values in, rows and verdicts out; the command (`cmd.rs`) reads
//! the files and prints. `docs/compare.md` explains the rows and why the defaults are what
//! they are.
//!
//! Each row is judged by its own rule, in the direction that hurts users:
//! - achieved rate: a drop of more than `--max-rate-decrease` (relative);
//! - latency percentiles: an increase of more than the relative limit (`--tolerance` for the
//!   body, p50 .. p95; `--max-p99-increase` for the tail, p99 and p99.9) **and** more than
//!   the noise floor in absolute terms (`--min-latency-change`), because a few hundred
//!   microseconds of scheduler noise on a sub-millisecond service are large percentages and
//!   no regression. For response time the floor also covers the change of the generator's
//!   own schedule lag at the same percentile: response time = lag + service time, so that
//!   much of a change is the generator's doing, not the target's;
//! - error and dropped ratios: an increase of more than `--max-error-increase` percentage
//!   points (relative changes of tiny ratios mean nothing: 0.01% -> 0.02% is "+100%");
//! - a percentile is judged only when both runs have at least [`MIN_TAIL_SAMPLES`] samples
//!   above it (p99 needs 1,000 responses, p99.9 10,000); max is never judged: it is one
//!   sample. Rows not judged are still shown, as `info`.

use serde::Serialize;
use serde_json::Value;

use super::EXIT_THRESHOLD;

/// Exit code when a row regressed: the same as a failed threshold, since a comparison is a
/// threshold relative to an earlier run.
pub const EXIT_REGRESSION: i32 = EXIT_THRESHOLD;

/// A percentile is judged only when this many samples lie above it in both runs; fewer make
/// it the value of a handful of requests, which is noise.
pub const MIN_TAIL_SAMPLES: f64 = 10.0;

/// How much worse the new run may be. Relative limits are fractions (0.05 = 5%).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Tolerances {
    /// Body of the latency distribution (p50, p90, per-name p50 and p95): relative increase.
    pub tolerance: f64,
    /// Tail (p99, p99.9): relative increase.
    pub max_p99_increase: f64,
    /// Achieved rate: relative decrease.
    pub max_rate_decrease: f64,
    /// Error and dropped ratios: absolute increase, as a fraction (0.001 = 0.1 pp).
    pub max_error_increase: f64,
    /// Latency changes smaller than this (µs) never count, whatever their percentage.
    pub min_latency_change_us: f64,
}

impl Default for Tolerances {
    fn default() -> Self {
        Tolerances {
            tolerance: 0.05,
            max_p99_increase: 0.10,
            max_rate_decrease: 0.02,
            max_error_increase: 0.001,
            min_latency_change_us: 1_000.0,
        }
    }
}

/// Parses a relative limit `5%` or `2.5%` into a fraction; the error names the value.
pub fn parse_percent(s: &str) -> Result<f64, String> {
    s.trim()
        .strip_suffix('%')
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v >= 0.0)
        .map(|v| v / 100.0)
        .ok_or_else(|| format!("invalid percentage \"{s}\" (use e.g. 5%)"))
}

/// Parses an absolute ratio change in percentage points, `0.1pp`, into a fraction.
pub fn parse_pp(s: &str) -> Result<f64, String> {
    s.trim()
        .strip_suffix("pp")
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|v| v.is_finite() && (0.0..=100.0).contains(v))
        .map(|v| v / 100.0)
        .ok_or_else(|| {
            format!("invalid percentage-point change \"{s}\" (use e.g. 0.1pp: 1% -> 1.1%)")
        })
}

/// What a row measures, which decides its formatting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// Requests per second.
    Rate,
    /// Microseconds.
    Micros,
    /// A fraction (errors / requests).
    Ratio,
}

/// A row's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Within its limit (or better).
    Pass,
    /// Worse than its limit allows.
    Regression,
    /// Shown, not judged (max, too few samples, a figure missing from a run).
    Info,
}

/// One row of the comparison.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// Request name for a per-name row; `None` for the whole run.
    pub name: Option<String>,
    /// What is compared, e.g. `response p99`.
    pub metric: String,
    pub unit: Unit,
    pub old: Option<f64>,
    pub new: Option<f64>,
    /// new - old.
    pub delta: Option<f64>,
    /// (new - old) / old in percent; `None` when old is 0 or missing.
    pub delta_pct: Option<f64>,
    /// The limit as the user wrote it, e.g. `+10% and +1ms`; `None` when not judged.
    pub limit: Option<String>,
    pub verdict: Verdict,
    /// Why a row was not judged.
    pub why: Option<String>,
}

impl Row {
    /// The row's label: the metric, prefixed by the request name.
    pub fn label(&self) -> String {
        match &self.name {
            Some(n) => format!("{n} {}", self.metric),
            None => self.metric.clone(),
        }
    }
}

/// How a row is judged.
#[derive(Debug, Clone, Copy)]
enum Rule {
    /// Latency: worse when higher by more than `rel` and by more than `floor_us`.
    Latency { rel: f64, floor_us: f64 },
    /// Rate: worse when lower by more than `rel`.
    Rate { rel: f64 },
    /// Ratio: worse when higher by more than `abs` (a fraction).
    Ratio { abs: f64 },
    /// Shown only.
    Info(&'static str),
}

/// The result of a comparison.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    pub tolerances: Tolerances,
    pub rows: Vec<Row>,
    /// Facts that make the comparison doubtful (a generator-bound run, different loads).
    pub notes: Vec<String>,
}

impl Comparison {
    /// Rows that regressed.
    pub fn regressions(&self) -> impl Iterator<Item = &Row> {
        self.rows
            .iter()
            .filter(|r| r.verdict == Verdict::Regression)
    }

    /// 0 when every judged row is within its limit, else [`EXIT_REGRESSION`].
    pub fn exit_code(&self) -> i32 {
        if self.regressions().next().is_some() {
            EXIT_REGRESSION
        } else {
            super::EXIT_OK
        }
    }

    /// The JSON form (`gen compare --json`), with the file names.
    pub fn to_json(&self, old: &str, new: &str) -> Value {
        serde_json::json!({
            "old": old,
            "new": new,
            "tolerances": self.tolerances,
            "rows": self.rows,
            "notes": self.notes,
            "regressions": self.regressions().map(Row::label).collect::<Vec<_>>(),
            "exit_code": self.exit_code(),
        })
    }

    /// The table as text.
    pub fn to_text(&self, old: &str, new: &str) -> String {
        use std::fmt::Write;
        let mut out = format!("gen compare: {old} (old) -> {new} (new)\n\n");
        let width = self
            .rows
            .iter()
            .map(|r| r.label().chars().count())
            .max()
            .unwrap_or(6)
            .clamp(6, 48);
        let _ = writeln!(
            out,
            "  {:<width$} {:>12} {:>12} {:>12} {:>9}  {:<16} verdict",
            "metric", "old", "new", "delta", "delta %", "limit"
        );
        for r in &self.rows {
            let value = |v: Option<f64>| v.map_or("-".to_owned(), |v| fmt_value(r.unit, v));
            let delta = r.delta.map_or("-".to_owned(), |d| {
                let sign = if d >= 0.0 { "+" } else { "-" };
                match r.unit {
                    // A change of a ratio is in percentage points.
                    Unit::Ratio => format!("{sign}{:.3}pp", d.abs() * 100.0),
                    unit => format!("{sign}{}", fmt_value(unit, d.abs())),
                }
            });
            let pct = r.delta_pct.map_or("-".to_owned(), |p| format!("{p:+.1}%"));
            let verdict = match r.verdict {
                Verdict::Pass => "ok".to_owned(),
                Verdict::Regression => "REGRESSION".to_owned(),
                Verdict::Info => format!("info ({})", r.why.as_deref().unwrap_or("not judged")),
            };
            let _ = writeln!(
                out,
                "  {:<width$} {:>12} {:>12} {:>12} {:>9}  {:<16} {verdict}",
                r.label(),
                value(r.old),
                value(r.new),
                delta,
                pct,
                r.limit.as_deref().unwrap_or("-"),
            );
        }
        if !self.notes.is_empty() {
            out.push('\n');
        }
        for n in &self.notes {
            let _ = writeln!(out, "  note: {n}");
        }
        let bad: Vec<String> = self.regressions().map(Row::label).collect();
        if bad.is_empty() {
            let _ = writeln!(out, "\nResult: no regression (exit 0)");
        } else {
            let _ = writeln!(
                out,
                "\nResult: REGRESSION in {} (exit {EXIT_REGRESSION})",
                bad.join(", ")
            );
        }
        out
    }
}

fn fmt_value(unit: Unit, v: f64) -> String {
    match unit {
        Unit::Rate => format!("{v:.2}/s"),
        Unit::Micros => super::fmt_duration_us(v),
        Unit::Ratio => format!("{:.3}%", v * 100.0),
    }
}

fn fmt_pct(f: f64) -> String {
    let p = f * 100.0;
    if p == p.round() {
        format!("{p:.0}%")
    } else {
        format!("{p}%")
    }
}

/// A number at a JSON pointer.
fn num(v: &Value, pointer: &str) -> Option<f64> {
    v.pointer(pointer)
        .and_then(Value::as_f64)
        .filter(|x| x.is_finite())
}

/// Failed requests / attempted requests (responses plus failures without a response).
fn error_ratio(v: &Value) -> Option<f64> {
    let total = num(v, "/errors/total")?;
    let responses = num(v, "/counts/responses")?;
    let attempted = responses + total - num(v, "/errors/status").unwrap_or(0.0);
    Some(if attempted > 0.0 {
        total / attempted
    } else {
        0.0
    })
}

/// Dropped / (sent + dropped): the share of scheduled requests never sent.
fn dropped_ratio(v: &Value) -> Option<f64> {
    let dropped = num(v, "/counts/dropped")?;
    let sent = num(v, "/counts/sent")?;
    Some(if sent + dropped > 0.0 {
        dropped / (sent + dropped)
    } else {
        0.0
    })
}

/// The percentiles compared for a whole-run latency histogram: (JSON key, label, quantile).
const PERCENTILES: [(&str, &str, f64); 5] = [
    ("p50_us", "p50", 0.5),
    ("p90_us", "p90", 0.9),
    ("p99_us", "p99", 0.99),
    ("p99_9_us", "p99.9", 0.999),
    ("max_us", "max", 1.0),
];

/// Per request name: (JSON key, label, quantile).
const NAME_PERCENTILES: [(&str, &str, f64); 4] = [
    ("p50_us", "p50", 0.5),
    ("p95_us", "p95", 0.95),
    ("p99_us", "p99", 0.99),
    ("max_us", "max", 1.0),
];

/// Compares two run reports. Figures missing from either report give `info` rows.
pub fn compare(old: &Value, new: &Value, tol: &Tolerances) -> Comparison {
    let mut notes = notes(old, new);
    // Response-time floor at a percentile: the change of gen's own lateness there, when that
    // is larger than --min-latency-change (response time = schedule lag + service time).
    let lag_change = |key: &str| {
        let lag = |v: &Value| num(v, &format!("/latency/schedule_lag/{key}")).unwrap_or(0.0);
        (lag(new) - lag(old)).abs()
    };
    let floor = |key: &str| tol.min_latency_change_us.max(lag_change(key));
    // The widest floor of a judged response-time row, for the note.
    let mut widest = tol.min_latency_change_us;
    let mut rows = Vec::new();
    let rate_rule = Rule::Rate {
        rel: tol.max_rate_decrease,
    };
    rows.push(row(
        None,
        "achieved rate",
        Unit::Rate,
        num(old, "/throughput/achieved_rate"),
        num(new, "/throughput/achieved_rate"),
        rate_rule,
    ));
    for (hist, label) in [("response_time", "response"), ("service_time", "service")] {
        let counts = (
            num(old, &format!("/latency/{hist}/count")),
            num(new, &format!("/latency/{hist}/count")),
        );
        for (key, p, q) in PERCENTILES {
            let pointer = format!("/latency/{hist}/{key}");
            let floor_us = if hist == "response_time" {
                floor(key)
            } else {
                tol.min_latency_change_us
            };
            let r = row(
                None,
                &format!("{label} {p}"),
                Unit::Micros,
                num(old, &pointer),
                num(new, &pointer),
                latency_rule(tol, floor_us, q, counts),
            );
            if r.verdict != Verdict::Info {
                widest = widest.max(floor_us);
            }
            rows.push(r);
        }
    }
    let ratio = Rule::Ratio {
        abs: tol.max_error_increase,
    };
    rows.push(row(
        None,
        "errors",
        Unit::Ratio,
        error_ratio(old),
        error_ratio(new),
        ratio,
    ));
    rows.push(row(
        None,
        "dropped",
        Unit::Ratio,
        dropped_ratio(old),
        dropped_ratio(new),
        ratio,
    ));
    if widest > tol.min_latency_change_us {
        notes.push(format!(
            "gen's own schedule lag changed by up to {} between the runs (a busy machine?); \
             response-time limits allow for that",
            super::fmt_duration_us(widest)
        ));
    }
    rows.extend(name_rows(old, new, tol, &floor));
    Comparison {
        tolerances: *tol,
        rows,
        notes,
    }
}

/// Per request name, for the names both runs have (the `Aggregated` row repeats the whole
/// run's figures, compared above).
/// `floor`: the response-time noise floor at a percentile key (per-name rows are response
/// times too).
fn name_rows(old: &Value, new: &Value, tol: &Tolerances, floor: &dyn Fn(&str) -> f64) -> Vec<Row> {
    let endpoints = |v: &Value| -> Vec<Value> {
        v.get("endpoints")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter(|e| e["name"] != "Aggregated")
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    };
    let (olds, news) = (endpoints(old), endpoints(new));
    let mut rows = Vec::new();
    for o in &olds {
        let Some(name) = o["name"].as_str() else {
            continue;
        };
        let Some(n) = news.iter().find(|e| e["name"] == name) else {
            continue;
        };
        let name = Some(name.to_owned());
        let counts = (num(o, "/requests"), num(n, "/requests"));
        for (key, p, q) in NAME_PERCENTILES {
            let pointer = format!("/{key}");
            rows.push(row(
                name.clone(),
                p,
                Unit::Micros,
                num(o, &pointer),
                num(n, &pointer),
                latency_rule(tol, floor(key), q, counts),
            ));
        }
        let failures = |e: &Value| {
            let r = num(e, "/requests")?;
            Some(if r > 0.0 {
                num(e, "/failures")? / r
            } else {
                0.0
            })
        };
        rows.push(row(
            name.clone(),
            "failures",
            Unit::Ratio,
            failures(o),
            failures(n),
            Rule::Ratio {
                abs: tol.max_error_increase,
            },
        ));
        rows.push(row(
            name,
            "rate",
            Unit::Rate,
            num(o, "/rps"),
            num(n, "/rps"),
            Rule::Info("a share of the run's rate"),
        ));
    }
    rows
}

/// The rule of a percentile `q` given both runs' sample counts.
fn latency_rule(
    tol: &Tolerances,
    floor_us: f64,
    q: f64,
    (old, new): (Option<f64>, Option<f64>),
) -> Rule {
    if q >= 1.0 {
        return Rule::Info("one sample");
    }
    let fewest = old.unwrap_or(0.0).min(new.unwrap_or(0.0));
    // The epsilon keeps 1000 × (1 - 0.99) = 9.999… from missing 10.
    if fewest * (1.0 - q) + 1e-9 < MIN_TAIL_SAMPLES {
        return Rule::Info("too few samples");
    }
    Rule::Latency {
        rel: if q >= 0.99 {
            tol.max_p99_increase
        } else {
            tol.tolerance
        },
        floor_us,
    }
}

fn row(
    name: Option<String>,
    metric: &str,
    unit: Unit,
    old: Option<f64>,
    new: Option<f64>,
    rule: Rule,
) -> Row {
    let delta = old.zip(new).map(|(o, n)| n - o);
    let delta_pct = old
        .zip(delta)
        .filter(|(o, _)| *o != 0.0)
        .map(|(o, d)| d / o * 100.0);
    let (verdict, limit, why) = match (old.zip(new), rule) {
        (None, _) => (Verdict::Info, None, Some("missing in a run")),
        (_, Rule::Info(why)) => (Verdict::Info, None, Some(why)),
        (Some((o, n)), Rule::Latency { rel, floor_us }) => {
            let worse = n > o * (1.0 + rel) && n - o > floor_us;
            let limit = format!(
                "+{} and +{}",
                fmt_pct(rel),
                super::fmt_duration_us(floor_us)
            );
            (judged(worse), Some(limit), None)
        }
        (Some((o, n)), Rule::Rate { rel }) => (
            judged(n < o * (1.0 - rel)),
            Some(format!("-{}", fmt_pct(rel))),
            None,
        ),
        (Some((o, n)), Rule::Ratio { abs }) => {
            // A hair of slack so that exactly the limit passes despite float rounding.
            let worse = n - o > abs + 1e-12;
            (judged(worse), Some(format!("+{}pp", abs * 100.0)), None)
        }
    };
    Row {
        name,
        metric: metric.to_owned(),
        unit,
        old,
        new,
        delta,
        delta_pct,
        limit,
        verdict,
        why: why.map(str::to_owned),
    }
}

fn judged(worse: bool) -> Verdict {
    if worse {
        Verdict::Regression
    } else {
        Verdict::Pass
    }
}

/// Facts that make the comparison doubtful.
fn notes(old: &Value, new: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for (which, v) in [("old", old), ("new", new)] {
        if v["generator_bound"] == true {
            out.push(format!(
                "the {which} run was generator-bound: its figures describe gen, not the target"
            ));
        }
    }
    let same = |pointer: &str| old.pointer(pointer) == new.pointer(pointer);
    if !same("/run/mode") || !same("/run/target_rate") {
        let load = |v: &Value| match num(v, "/run/target_rate") {
            Some(r) => format!("open at {r} req/s"),
            None => v
                .pointer("/run/mode")
                .and_then(Value::as_str)
                .unwrap_or("unknown")
                .to_owned(),
        };
        out.push(format!(
            "the runs offered different loads ({} vs {}): rates and latencies are not like for like",
            load(old),
            load(new)
        ));
    }
    if !same("/run/target") {
        out.push("the runs had different target URLs".to_owned());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A report with `n` responses, response p-values scaled by `lat`, `errors` failures.
    fn report(n: u64, rate: f64, lat: f64, errors: u64) -> Value {
        let s = |base: f64| {
            json!({"count": n, "p50_us": base * lat, "p90_us": 2.0 * base * lat,
                   "p99_us": 4.0 * base * lat, "p99_9_us": 8.0 * base * lat,
                   "max_us": 20.0 * base * lat})
        };
        json!({
            "schema_version": 1,
            "run": {"mode": "open", "target_rate": 1000.0, "target": "http://127.0.0.1:1/"},
            "throughput": {"achieved_rate": rate},
            "counts": {"responses": n, "sent": n + errors, "dropped": 0},
            "errors": {"total": errors, "status": 0},
            "latency": {"response_time": s(1000.0), "service_time": s(800.0)},
            "generator_bound": false,
        })
    }

    fn verdict(c: &Comparison, label: &str) -> Verdict {
        c.rows
            .iter()
            .find(|r| r.label() == label)
            .unwrap_or_else(|| panic!("no row {label}"))
            .verdict
    }

    #[test]
    fn identical_runs_pass() {
        let r = report(100_000, 1000.0, 1.0, 0);
        let c = compare(&r, &r, &Tolerances::default());
        assert_eq!(c.exit_code(), 0, "{}", c.to_text("a", "b"));
        assert_eq!(verdict(&c, "response p99"), Verdict::Pass);
        assert_eq!(verdict(&c, "response max"), Verdict::Info);
        assert!(c.notes.is_empty());
        let row = c.rows.iter().find(|r| r.metric == "response p50").unwrap();
        assert_eq!((row.delta, row.delta_pct), (Some(0.0), Some(0.0)));
    }

    #[test]
    fn latency_needs_both_relative_and_absolute_increase() {
        let tol = Tolerances::default();
        let old = report(100_000, 1000.0, 1.0, 0);
        // +50%: p50 1ms -> 1.5ms (+500µs, under the 1ms floor); p99 4ms -> 6ms (+2ms).
        let c = compare(&old, &report(100_000, 1000.0, 1.5, 0), &tol);
        assert_eq!(verdict(&c, "response p50"), Verdict::Pass);
        assert_eq!(verdict(&c, "response p99"), Verdict::Regression);
        assert_eq!(verdict(&c, "response p99.9"), Verdict::Regression);
        assert_eq!(c.exit_code(), EXIT_REGRESSION);
        let text = c.to_text("old.json", "new.json");
        assert!(text.contains("REGRESSION in response p99"), "{text}");
        let p99 = text.lines().find(|l| l.contains("response p99 ")).unwrap();
        assert!(p99.contains("+2.00ms") && p99.contains("+50.0%"), "{p99}");
        assert!(
            p99.contains("+10% and +1.00ms") && p99.ends_with("REGRESSION"),
            "{p99}"
        );
        // +9%: within the p99 limit (10%) though over the floor.
        let c = compare(&old, &report(100_000, 1000.0, 1.09, 0), &tol);
        assert_eq!(verdict(&c, "response p99"), Verdict::Pass);
        // Without the floor, a +6% p50 fails the 5% body tolerance.
        let strict = Tolerances {
            min_latency_change_us: 0.0,
            ..tol
        };
        let c = compare(&old, &report(100_000, 1000.0, 1.06, 0), &strict);
        assert_eq!(verdict(&c, "response p50"), Verdict::Regression);
        assert_eq!(verdict(&c, "response p99"), Verdict::Pass);
        // Faster is never a regression.
        let c = compare(&old, &report(100_000, 1000.0, 0.2, 0), &strict);
        assert_eq!(c.exit_code(), 0);
    }

    #[test]
    fn the_generators_own_lag_raises_the_noise_floor() {
        let mut old = report(100_000, 1000.0, 1.0, 0);
        let mut new = report(100_000, 1000.0, 1.5, 0);
        // p99 4ms -> 6ms fails with the 1ms floor ...
        assert_eq!(
            verdict(&compare(&old, &new, &Tolerances::default()), "response p99"),
            Verdict::Regression
        );
        // ... but not when gen's own lag p99 grew by 3ms: that much is the generator's.
        old["latency"]["schedule_lag"] = json!({"count": 100_000, "p99_us": 500});
        new["latency"]["schedule_lag"] = json!({"count": 100_000, "p99_us": 3_500});
        let c = compare(&old, &new, &Tolerances::default());
        assert_eq!(verdict(&c, "response p99"), Verdict::Pass);
        let p99 = c.rows.iter().find(|r| r.metric == "response p99").unwrap();
        assert_eq!(p99.limit.as_deref(), Some("+10% and +3.00ms"));
        assert!(
            c.notes
                .iter()
                .any(|n| n.contains("changed by up to 3.00ms")),
            "{:?}",
            c.notes
        );
        // Other percentiles keep the 1ms floor: p99.9 8ms -> 12ms is a regression; service
        // time (no lag in it) too: p99 3.2ms -> 4.8ms.
        assert_eq!(verdict(&c, "response p99.9"), Verdict::Regression);
        assert_eq!(verdict(&c, "service p99"), Verdict::Regression);
        // A lag that is high in both runs but unchanged raises nothing.
        old["latency"]["schedule_lag"]["p99_us"] = json!(3_500);
        let c = compare(&old, &new, &Tolerances::default());
        assert_eq!(verdict(&c, "response p99"), Verdict::Regression);
    }

    #[test]
    fn tails_of_small_runs_are_not_judged() {
        // 500 responses: 5 above p99, below MIN_TAIL_SAMPLES.
        let c = compare(
            &report(500, 1000.0, 1.0, 0),
            &report(500, 1000.0, 3.0, 0),
            &Tolerances::default(),
        );
        assert_eq!(verdict(&c, "response p90"), Verdict::Regression);
        assert_eq!(verdict(&c, "response p99"), Verdict::Info);
        let row = c.rows.iter().find(|r| r.metric == "response p99").unwrap();
        assert_eq!(row.why.as_deref(), Some("too few samples"));
        // 1000 responses: exactly 10 above p99, judged; p99.9 still not.
        let c = compare(
            &report(1000, 1000.0, 1.0, 0),
            &report(1000, 1000.0, 3.0, 0),
            &Tolerances::default(),
        );
        assert_eq!(verdict(&c, "response p99"), Verdict::Regression);
        assert_eq!(verdict(&c, "response p99.9"), Verdict::Info);
    }

    #[test]
    fn rate_and_error_rules() {
        let tol = Tolerances::default();
        let old = report(100_000, 1000.0, 1.0, 0);
        let c = compare(&old, &report(100_000, 975.0, 1.0, 0), &tol);
        assert_eq!(verdict(&c, "achieved rate"), Verdict::Regression);
        let c = compare(&old, &report(100_000, 985.0, 1.0, 0), &tol);
        assert_eq!(verdict(&c, "achieved rate"), Verdict::Pass);
        // 100 of 100,100 attempts failed: +0.0999pp passes, 200 (+0.1998pp) does not.
        let c = compare(&old, &report(100_000, 1000.0, 1.0, 100), &tol);
        assert_eq!(verdict(&c, "errors"), Verdict::Pass);
        let c = compare(&old, &report(100_000, 1000.0, 1.0, 200), &tol);
        assert_eq!(verdict(&c, "errors"), Verdict::Regression);
        let row = c.rows.iter().find(|r| r.metric == "errors").unwrap();
        assert_eq!(row.delta_pct, None, "old ratio is 0: no relative change");
        assert_eq!(row.limit.as_deref(), Some("+0.1pp"));
    }

    #[test]
    fn per_name_rows_and_notes() {
        let mut old = report(100_000, 1000.0, 1.0, 0);
        let mut new = report(100_000, 1000.0, 1.0, 0);
        let ep = |p99: u64, failures: u64| {
            json!([
                {"name": "/login", "requests": 20_000, "failures": failures, "p50_us": 900,
                 "p95_us": 1500, "p99_us": p99, "max_us": 9000, "rps": 100.0},
                {"name": "/only-old", "requests": 5},
                {"name": "Aggregated", "requests": 20_000, "failures": 0, "p99_us": 1}
            ])
        };
        old["endpoints"] = ep(2_000, 0);
        new["endpoints"] = ep(5_000, 100);
        new["endpoints"].as_array_mut().unwrap().remove(1);
        new["generator_bound"] = json!(true);
        new["run"]["target_rate"] = json!(2000.0);
        let c = compare(&old, &new, &Tolerances::default());
        assert_eq!(verdict(&c, "/login p99"), Verdict::Regression);
        assert_eq!(verdict(&c, "/login p50"), Verdict::Pass);
        assert_eq!(verdict(&c, "/login failures"), Verdict::Regression);
        assert_eq!(verdict(&c, "/login rate"), Verdict::Info);
        assert!(c
            .rows
            .iter()
            .all(|r| r.name.as_deref() != Some("Aggregated")));
        assert!(c
            .rows
            .iter()
            .all(|r| r.name.as_deref() != Some("/only-old")));
        assert_eq!(c.notes.len(), 2, "{:?}", c.notes);
        assert!(c.notes[0].contains("new run was generator-bound"));
        assert!(c.notes[1].contains("1000 req/s vs open at 2000 req/s"));
        let j = c.to_json("a.json", "b.json");
        assert_eq!(j["exit_code"], EXIT_REGRESSION);
        assert_eq!(j["regressions"], json!(["/login p99", "/login failures"]));
        assert_eq!(j["tolerances"]["max_p99_increase"], 0.1);
    }

    #[test]
    fn missing_figures_are_info_not_errors() {
        let old = json!({"schema_version": 1, "run": {}});
        let c = compare(&old, &report(1000, 1000.0, 1.0, 0), &Tolerances::default());
        assert_eq!(c.exit_code(), 0);
        assert!(c.rows.iter().all(|r| r.verdict == Verdict::Info));
        assert!(c.to_text("a", "b").contains("info (missing in a run)"));
    }

    #[test]
    fn tolerance_parsing() {
        assert_eq!(parse_percent("5%"), Ok(0.05));
        assert_eq!(parse_percent(" 2.5 %"), Ok(0.025));
        assert_eq!(parse_percent("0%"), Ok(0.0));
        assert_eq!(parse_pp("0.1pp"), Ok(0.001));
        assert_eq!(parse_pp("2pp"), Ok(0.02));
        for bad in ["5", "-1%", "x%", "", "nan%", "inf%", "5pp"] {
            let e = parse_percent(bad).unwrap_err();
            assert!(e.contains(&format!("\"{bad}\"")), "{e}");
        }
        for bad in ["0.1", "0.1%", "-1pp", "101pp", "pp"] {
            let e = parse_pp(bad).unwrap_err();
            assert!(e.contains(&format!("\"{bad}\"")), "{e}");
        }
    }
}
