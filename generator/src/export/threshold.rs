//! Thresholds (k6 style): pass/fail conditions on the whole run, `--threshold 'p99<250ms'`,
//! `'errors<1%'`, `'rate>=49500'`, optionally for one request name (`'/login:p95<100ms'`).
//! Judged once the run is over; any failure makes the exit code [`super::EXIT_THRESHOLD`].
//! With `--abort-on-fail`, [`certainly_failed`] is also asked once a second on the cumulative
//! figures so far, and the run stops at the first threshold it names.
//!
//! Syntax: `[NAME:]METRIC OP VALUE` with
//! - METRIC `p50`, `p90`, `p95`, `p99`, `p99.9` (any `pQ`), `max`, `mean`, `min`: response time
//!   (done - intended), VALUE a duration with its unit (`250ms`, `1.5s`);
//! - `errors`: failed / requests (a failure is no response or a status outside 2xx, as in the
//!   per-name table), VALUE a percentage (`1%`) or a fraction (`0.01`);
//! - `rate`: responses per second over the measured window, VALUE a number;
//! - OP one of `<`, `<=`, `>`, `>=`.

use super::{per_second, Report};
use crate::measure::Hist;

/// What a threshold measures.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Metric {
    /// Response time quantile (0..=1).
    Quantile(f64),
    Max,
    Min,
    Mean,
    /// Failed fraction of requests.
    Errors,
    /// Responses per second.
    Rate,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Lt,
    Le,
    Gt,
    Ge,
}

impl Op {
    fn holds(self, a: f64, b: f64) -> bool {
        match self {
            Op::Lt => a < b,
            Op::Le => a <= b,
            Op::Gt => a > b,
            Op::Ge => a >= b,
        }
    }
}

/// One parsed threshold. Latency limits are in µs, error limits a fraction.
#[derive(Clone, Debug, PartialEq)]
pub struct Threshold {
    /// As written, for the report.
    pub source: String,
    /// A request name, or `None` for the whole run.
    pub name: Option<String>,
    pub metric: Metric,
    pub op: Op,
    pub limit: f64,
}

impl Threshold {
    /// Parses one threshold; the error names the text and what is wrong.
    pub fn parse(src: &str) -> Result<Threshold, String> {
        let bad = |why: &str| {
            format!(
                "invalid threshold {src:?}: {why} (e.g. p99<250ms, errors<1%, rate>=1000, /login:p95<100ms)"
            )
        };
        let (name, expr) = match src.rsplit_once(':') {
            Some((n, e)) => (Some(n.trim().to_owned()), e),
            None => (None, src),
        };
        let at = expr
            .find(['<', '>'])
            .ok_or_else(|| bad("no comparison (<, <=, >, >=)"))?;
        let (metric, rest) = (expr[..at].trim(), &expr[at..]);
        let (op, value) = if let Some(v) = rest.strip_prefix("<=") {
            (Op::Le, v)
        } else if let Some(v) = rest.strip_prefix(">=") {
            (Op::Ge, v)
        } else if let Some(v) = rest.strip_prefix('<') {
            (Op::Lt, v)
        } else {
            (Op::Gt, &rest[1..])
        };
        let value = value.trim();
        let metric = match metric {
            "max" => Metric::Max,
            "min" => Metric::Min,
            "mean" | "avg" => Metric::Mean,
            "errors" => Metric::Errors,
            "rate" => Metric::Rate,
            m => {
                let q: f64 = m
                    .strip_prefix('p')
                    .and_then(|q| q.parse().ok())
                    .filter(|q: &f64| (0.0..=100.0).contains(q))
                    .ok_or_else(|| bad(&format!("unknown metric {m:?}")))?;
                Metric::Quantile(q / 100.0)
            }
        };
        let limit = match metric {
            Metric::Errors => match value.strip_suffix('%') {
                Some(p) => p.trim().parse::<f64>().map(|p| p / 100.0),
                None => value.parse::<f64>(),
            }
            .ok()
            .filter(|v| v.is_finite() && *v >= 0.0)
            .ok_or_else(|| bad("errors take a percentage or a fraction"))?,
            Metric::Rate => value
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v >= 0.0)
                .ok_or_else(|| bad("rate takes a number of requests per second"))?,
            _ => {
                if value.parse::<f64>().is_ok() {
                    return Err(bad("give the duration's unit, e.g. 250ms"));
                }
                crate::cli::parse_duration(value)
                    .map_err(|_| bad(&format!("bad duration {value:?}")))?
                    .as_secs_f64()
                    * 1e6
            }
        };
        Ok(Threshold {
            source: src.to_owned(),
            name,
            metric,
            op,
            limit,
        })
    }
}

/// A threshold's verdict.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    pub source: String,
    /// The measured value (µs, fraction or req/s); `None` when there was nothing to measure
    /// (no responses), which fails.
    pub measured: Option<f64>,
    pub pass: bool,
}

/// Judges every threshold of the report.
pub fn judge(r: &Report) -> Vec<Verdict> {
    r.thresholds
        .iter()
        .map(|th| {
            let measured = measure(r, th);
            Verdict {
                source: th.source.clone(),
                measured,
                pass: measured.is_some_and(|m| th.op.holds(m, th.limit)),
            }
        })
        .collect()
}

/// The figures a threshold is judged on: (response histogram, requests, failures,
/// responses); `None` for an unknown name.
fn figures<'a>(r: &'a Report, th: &Threshold) -> Option<(&'a Hist, u64, u64, u64)> {
    let t = r.totals();
    match &th.name {
        None => {
            let (requests, failures) = super::endpoints::aggregate(t);
            Some((&t.response, requests, failures, t.requests()))
        }
        Some(name) => {
            let i = r.endpoint_names.iter().position(|n| n == name)?;
            let e = t.endpoints.get(i)?;
            Some((&e.response, e.requests(), e.failures(), e.responses))
        }
    }
}

fn measure(r: &Report, th: &Threshold) -> Option<f64> {
    let (h, requests, failures, responses) = figures(r, th)?;
    let lat = |v: u64| (!h.is_empty()).then_some(v as f64);
    match th.metric {
        Metric::Quantile(q) => lat(h.value_at_quantile(q)),
        Metric::Max => lat(h.max()),
        Metric::Min => lat(h.min()),
        Metric::Mean => lat(0).map(|_| h.mean()),
        Metric::Errors => (requests > 0).then(|| failures as f64 / requests as f64),
        Metric::Rate => Some(per_second(responses, r.measured_s())),
    }
}

/// Fewest requests (errors, mean) or responses (latency) before a threshold may abort a run.
pub const ABORT_MIN_SAMPLES: u64 = 100;

/// `--abort-on-fail`: the first threshold that is failed on the report's (cumulative, so far)
/// figures and that more of the run is unlikely to rescue:
/// - `max<`/`max<=` and `min>`/`min>=` as soon as they fail (the figure can only get worse);
/// - `errors`, `mean` once [`ABORT_MIN_SAMPLES`] requests (responses for `mean`) are in;
/// - `pQ` once there are [`ABORT_MIN_SAMPLES`] responses and at least 10 beyond the quantile
///   (1000 for p99, 10,000 for p99.9), so a handful of slow starts cannot decide it;
/// - `rate` and the other directions never (only the whole window can judge them).
pub fn certainly_failed(r: &Report) -> Option<&Threshold> {
    r.thresholds.iter().find(|th| {
        let Some((h, requests, _, _)) = figures(r, th) else {
            return false;
        };
        let enough = match (th.metric, th.op) {
            (Metric::Max, Op::Lt | Op::Le) | (Metric::Min, Op::Gt | Op::Ge) => !h.is_empty(),
            (Metric::Errors, _) => requests >= ABORT_MIN_SAMPLES,
            (Metric::Mean, _) => h.count() >= ABORT_MIN_SAMPLES,
            (Metric::Quantile(q), _) => {
                let tail = if q < 1.0 {
                    (10.0 / (1.0 - q)).ceil() as u64
                } else {
                    u64::MAX
                };
                h.count() >= ABORT_MIN_SAMPLES.max(tail)
            }
            _ => false,
        };
        enough && !measure(r, th).is_some_and(|m| th.op.holds(m, th.limit))
    })
}

/// The verdicts as text lines (empty without thresholds).
pub fn text(r: &Report) -> String {
    let verdicts = judge(r);
    if verdicts.is_empty() {
        return String::new();
    }
    let mut out = String::from("\n  Thresholds\n");
    if let Some(a) = r.aborted() {
        out.push_str(&format!(
            "  run aborted after {:.2}s: threshold {} failed (--abort-on-fail)\n",
            a.at_s, a.threshold
        ));
    }
    for (v, th) in verdicts.iter().zip(&r.thresholds) {
        let measured = match (v.measured, th.metric) {
            (None, _) => "nothing measured".to_owned(),
            (Some(m), Metric::Errors) => format!("{:.3}%", m * 100.0),
            (Some(m), Metric::Rate) => format!("{m:.2} req/s"),
            (Some(m), _) => super::fmt_duration_us(m),
        };
        out.push_str(&format!(
            "  {} {:<28} {measured}\n",
            if v.pass { "pass" } else { "FAIL" },
            v.source
        ));
    }
    out
}

/// The verdicts as JSON rows.
pub fn json(r: &Report) -> serde_json::Value {
    judge(r)
        .into_iter()
        .map(|v| {
            serde_json::json!({
                "threshold": v.source,
                "measured": v.measured.filter(|m| m.is_finite()),
                "pass": v.pass,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The abort rule: failed thresholds abort only past their minimum sample; `rate` and
    /// the directions that more data could rescue never do.
    #[test]
    fn certainly_failed_waits_for_enough_samples() {
        use crate::export::tests::{info, snap};
        use crate::export::{Cpu, Mode};
        let judge = |n: u64, th: &[&str]| {
            let ths = th.iter().map(|t| Threshold::parse(t).unwrap()).collect();
            let r = Report::new(
                info(Mode::Closed { connections: 8 }),
                &snap(n, 0),
                &[],
                1.0,
                Cpu::default(),
            )
            .with_thresholds(ths);
            certainly_failed(&r).map(|t| t.source.clone())
        };
        // Every response takes 2 ms.
        assert_eq!(judge(1, &["max<1ms"]).as_deref(), Some("max<1ms"));
        assert_eq!(judge(1, &["max>1s", "min<1us", "rate>1e9"]), None);
        assert_eq!(judge(99, &["mean<1ms"]), None);
        assert_eq!(judge(100, &["mean<1ms"]).as_deref(), Some("mean<1ms"));
        assert_eq!(judge(999, &["p99<1ms"]), None, "p99 needs 1000 responses");
        assert_eq!(judge(1000, &["p99<1ms"]).as_deref(), Some("p99<1ms"));
        assert_eq!(judge(1000, &["p99<10ms", "errors<1%"]), None, "both pass");
        assert_eq!(
            judge(100_000, &["p100<1ms"]),
            None,
            "p100 is judged at the end"
        );
    }

    #[test]
    fn parses_every_form() {
        let t = Threshold::parse("p99<250ms").unwrap();
        assert_eq!(
            (t.metric, t.op, t.limit, t.name),
            (Metric::Quantile(0.99), Op::Lt, 250_000.0, None)
        );
        let t = Threshold::parse("p99.9 <= 1s").unwrap();
        assert_eq!(
            (t.metric, t.op, t.limit),
            (Metric::Quantile(99.9 / 100.0), Op::Le, 1e6)
        );
        let t = Threshold::parse("errors<1%").unwrap();
        assert_eq!((t.metric, t.limit), (Metric::Errors, 0.01));
        assert_eq!(Threshold::parse("errors<0.02").unwrap().limit, 0.02);
        let t = Threshold::parse("rate>=49500").unwrap();
        assert_eq!((t.metric, t.op, t.limit), (Metric::Rate, Op::Ge, 49500.0));
        let t = Threshold::parse("/login:max>10ms").unwrap();
        assert_eq!(
            (t.name.as_deref(), t.metric, t.op),
            (Some("/login"), Metric::Max, Op::Gt)
        );
        for bad in [
            "p99",
            "p101<1ms",
            "lat<1ms",
            "p99<250",
            "errors<x",
            "rate>fast",
            "p99<1parsec",
        ] {
            let e = Threshold::parse(bad).unwrap_err();
            assert!(e.contains(&format!("{bad:?}")), "{e}");
        }
    }
}
