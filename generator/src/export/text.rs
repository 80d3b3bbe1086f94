//! Terminal rendering of a [`Report`], in the spirit of wrk2 and oha: a short header, counts,
//! one latency table (rows: response, service, first byte, schedule lag, connect, and the TLS
//! handshake for https; columns:
//! p50 p90 p99 p99.9 p99.99 max mean stdev), CPU, and a loud WARNING block when the generator
//! was the bottleneck. `--latency` appends wrk2's HDR percentile list and spectrum.

use std::fmt::Write as _;

use super::{error_counts, finite, per_second, Report};
use crate::measure::Hist;

/// Fixed quantiles of the `--latency` distribution (wrk2's list plus p95).
const DISTRIBUTION: [f64; 9] = [0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 0.9999, 0.99999, 1.0];
/// Spectrum density: lines per halving of the remaining tail (wrk2 uses 5).
const SPECTRUM_TICKS: u32 = 5;
/// Width of the latency table's row labels.
pub(super) const LABEL: usize = 20;
/// Width of each latency table column (values are at most 8 characters wide).
pub(super) const COL: usize = 10;

/// Formats microseconds with two decimals in the largest unit that keeps the number below
/// 1000: `µs`, `ms`, `s`; minutes (`min`) and hours (`h`) past 60 s and 60 min.
pub fn fmt_duration_us(us: f64) -> String {
    let us = finite(us).max(0.0);
    // Thresholds sit just under each boundary so that rounding never prints "1000.00µs".
    if us < 999.995 {
        format!("{us:.2}µs")
    } else if us < 999_995.0 {
        format!("{:.2}ms", us / 1e3)
    } else if us < 59_995_000.0 {
        format!("{:.2}s", us / 1e6)
    } else if us < 3_599_700_000.0 {
        format!("{:.2}min", us / 60e6)
    } else {
        format!("{:.2}h", us / 3600e6)
    }
}

/// Formats a byte count in binary units: `512 B`, `1.50 KiB`, `2.00 MiB`, ...
pub fn fmt_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1023.995 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.2} {}", UNITS[unit])
}

/// Formats a rate in requests per second.
fn fmt_rate(r: f64) -> String {
    format!("{:.2} req/s", finite(r))
}

/// One latency table row: the summary columns, or dashes when nothing was recorded.
pub(super) fn latency_row(out: &mut String, label: &str, h: &Hist) {
    let _ = write!(out, "  {label:<LABEL$}");
    if h.is_empty() {
        for _ in 0..8 {
            let _ = write!(out, "{:>COL$}", "-");
        }
    } else {
        for q in [0.5, 0.9, 0.99, 0.999, 0.9999] {
            let _ = write!(
                out,
                "{:>COL$}",
                fmt_duration_us(h.value_at_quantile(q) as f64)
            );
        }
        for v in [h.max() as f64, h.mean(), h.stdev()] {
            let _ = write!(out, "{:>COL$}", fmt_duration_us(v));
        }
    }
    out.push('\n');
}

/// wrk2-style `--latency` block for the response time histogram.
fn distribution(out: &mut String, h: &Hist) {
    out.push_str("\n  Response time distribution (HDR, 3 significant digits)\n");
    if h.is_empty() {
        out.push_str("    no responses\n");
        return;
    }
    for q in DISTRIBUTION {
        let _ = writeln!(
            out,
            "  {:>9.3}%  {:>10}",
            q * 100.0,
            fmt_duration_us(h.value_at_quantile(q) as f64)
        );
    }
    out.push_str("\n  Detailed percentile spectrum (response time, ms)\n");
    let _ = writeln!(
        out,
        "  {:>12} {:>12} {:>12} {:>16}",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    let mut total = 0u64;
    for v in h.inner().iter_quantiles(SPECTRUM_TICKS) {
        total += v.count_since_last_iteration();
        let q = v.quantile_iterated_to();
        let inv = if q < 1.0 {
            format!("{:.2}", 1.0 / (1.0 - q))
        } else {
            "inf".to_string()
        };
        let _ = writeln!(
            out,
            "  {:>12.3} {:>12.6} {:>12} {:>16}",
            v.value_iterated_to() as f64 / 1e3,
            q,
            total,
            inv
        );
    }
    let _ = writeln!(
        out,
        "  #[Mean    = {:>12.3}, StdDeviation   = {:>12.3}]",
        h.mean() / 1e3,
        h.stdev() / 1e3
    );
    let _ = writeln!(
        out,
        "  #[Max     = {:>12.3}, Total count    = {:>12}]",
        h.max() as f64 / 1e3,
        h.count()
    );
}

/// `users model: 20 users spawned at 5.00/s, think 500.00ms..1.50s`.
fn users_model(u: &super::UsersInfo) -> String {
    let spawn = match u.spawn_rate {
        Some(r) => format!("spawned at {r:.2}/s"),
        None => "all started at once".to_owned(),
    };
    let d = |s: f64| fmt_duration_us(s * 1e6);
    let think = if u.think_min_s == u.think_max_s {
        d(u.think_min_s)
    } else {
        format!("{}..{}", d(u.think_min_s), d(u.think_max_s))
    };
    format!("users model: {} users {spawn}, think {think}", u.users)
}

/// The whole text report.
pub(super) fn render(r: &Report, full_latency: bool) -> String {
    let (info, t) = (r.info(), r.totals());
    let mut out = String::new();

    let _ = writeln!(out, "gen {}: {} {}", info.version, info.method, info.target);
    let model = match (info.mode.target_rate(), &info.users) {
        (Some(rate), _) => format!("open model at {}", fmt_rate(rate)),
        (None, Some(u)) => users_model(u),
        (None, None) => "closed model".to_string(),
    };
    let _ = writeln!(
        out,
        "  {model}, {:.2}s measured after {:.2}s warm-up, {} threads, {} connections, {}",
        r.measured_s(),
        finite(info.warmup_s),
        info.threads,
        info.connections,
        info.driver
    );
    out.push('\n');

    let achieved = r.achieved_rate();
    match info.mode.target_rate() {
        Some(target) if target > 0.0 => {
            let _ = writeln!(
                out,
                "  Rate        achieved {} of {} target ({:.2}%), sent {}",
                fmt_rate(achieved),
                fmt_rate(target),
                achieved / target * 100.0,
                fmt_rate(r.sent_rate())
            );
        }
        _ => {
            let _ = writeln!(
                out,
                "  Rate        achieved {}, sent {}",
                fmt_rate(achieved),
                fmt_rate(r.sent_rate())
            );
        }
    }
    let _ = writeln!(
        out,
        "  Requests    {} responses ({} ok), {} sent, {} dropped",
        t.requests(),
        t.successful(),
        t.sent(),
        t.dropped()
    );
    let _ = writeln!(
        out,
        "  Transfer    {} received ({}/s), {} sent",
        fmt_bytes(t.bytes_received()),
        fmt_bytes(per_second(t.bytes_received(), r.measured_s()) as u64),
        fmt_bytes(t.bytes_sent())
    );
    let mut status: Vec<String> = t
        .status_classes()
        .iter()
        .enumerate()
        .filter(|(_, &n)| n > 0)
        .map(|(i, n)| format!("{}xx {n}", i + 1))
        .collect();
    if t.status_other() > 0 {
        status.push(format!("other {}", t.status_other()));
    }
    let status = if status.is_empty() {
        "none".to_string()
    } else {
        status.join(", ")
    };
    let _ = writeln!(out, "  Status      {status}");
    let errors: Vec<String> = error_counts(t)
        .filter(|&(_, n)| n > 0)
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    if errors.is_empty() {
        out.push_str("  Errors      none\n");
    } else {
        let _ = writeln!(
            out,
            "  Errors      {} total: {}",
            t.errors_total(),
            errors.join(", ")
        );
    }

    out.push('\n');
    let _ = write!(out, "  {:<LABEL$}", "Latency");
    for h in [
        "p50", "p90", "p99", "p99.9", "p99.99", "max", "mean", "stdev",
    ] {
        let _ = write!(out, "{h:>COL$}");
    }
    out.push('\n');
    latency_row(&mut out, "response time", &t.response);
    latency_row(&mut out, "service time", &t.service);
    latency_row(&mut out, "time to first byte", &t.ttfb);
    latency_row(&mut out, "schedule lag", &t.lag);
    latency_row(
        &mut out,
        &format!("connect ({})", t.connect.count()),
        &t.connect,
    );
    super::kernel::text_rows(&mut out, r);
    if !t.tls_handshake.is_empty() {
        let n = t.tls_handshake.count();
        latency_row(&mut out, &format!("TLS handshake ({n})"), &t.tls_handshake);
        let _ = writeln!(
            out,
            "  {:<LABEL$}{} of {n} handshakes resumed a session",
            "",
            t.tls_resumed()
        );
    }
    if full_latency {
        distribution(&mut out, &t.response);
    }

    out.push('\n');
    let cpu = r.cpu();
    let _ = write!(
        out,
        "  CPU         user {:.2}s, system {:.2}s",
        cpu.user_s, cpu.system_s
    );
    if let Some(u) = r.cpu_utilization() {
        let _ = write!(
            out,
            " ({:.1}% of {} threads × {:.2}s)",
            u * 100.0,
            info.threads,
            r.measured_s()
        );
    }
    if let Some(per) = r.cpu_us_per_request() {
        let _ = write!(out, ", {} per response", fmt_duration_us(per));
    }
    out.push('\n');
    super::kernel::text_line(&mut out, r);

    if r.generator_bound() {
        out.push_str(
            "\nWARNING: the generator itself was the bottleneck; the figures above describe gen, \
             not the target:\n",
        );
        for reason in r.bound_reasons() {
            let _ = writeln!(out, "  - {}", reason.message());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::tests::{info, snap};
    use super::super::{Cpu, Mode, Report};
    use super::*;
    use crate::measure::{ErrorKind, Recorder, Snapshot};

    #[test]
    fn durations() {
        assert_eq!(fmt_duration_us(0.0), "0.00µs");
        assert_eq!(fmt_duration_us(1.0), "1.00µs");
        assert_eq!(fmt_duration_us(999.0), "999.00µs");
        assert_eq!(fmt_duration_us(999.996), "1.00ms");
        assert_eq!(fmt_duration_us(1_500.0), "1.50ms");
        assert_eq!(fmt_duration_us(123_456.0), "123.46ms");
        assert_eq!(fmt_duration_us(2_500_000.0), "2.50s");
        assert_eq!(fmt_duration_us(90e6), "1.50min");
        assert_eq!(fmt_duration_us(3_600_000_000.0), "1.00h");
        assert_eq!(fmt_duration_us(f64::NAN), "0.00µs");
        assert_eq!(fmt_duration_us(-5.0), "0.00µs");
    }

    #[test]
    fn bytes() {
        assert_eq!(fmt_bytes(0), "0 B");
        assert_eq!(fmt_bytes(1023), "1023 B");
        assert_eq!(fmt_bytes(1536), "1.50 KiB");
        assert_eq!(fmt_bytes(5 * 1024 * 1024), "5.00 MiB");
        assert_eq!(fmt_bytes(u64::MAX), "16384.00 PiB");
    }

    #[test]
    fn open_report_text() {
        let r = Report::new(
            info(Mode::Open { rate: 100.0 }),
            &snap(1000, 50),
            &[],
            10.0,
            Cpu {
                user_s: 0.5,
                system_s: 0.25,
            },
        );
        let text = r.to_text(false);
        assert!(
            text.starts_with("gen 0.1.0: GET http://127.0.0.1:8080/\n"),
            "{text}"
        );
        assert!(
            text.contains("open model at 100.00 req/s, 10.00s measured after 1.00s warm-up"),
            "{text}"
        );
        assert!(
            text.contains(
                "achieved 100.00 req/s of 100.00 req/s target (100.00%), sent 100.00 req/s"
            ),
            "{text}"
        );
        assert!(
            text.contains("1000 responses (1000 ok), 1000 sent, 0 dropped"),
            "{text}"
        );
        assert!(text.contains("Status      2xx 1000\n"), "{text}");
        assert!(text.contains("Errors      none\n"), "{text}");
        let row = text
            .lines()
            .find(|l| l.trim_start().starts_with("response time"))
            .unwrap();
        assert_eq!(
            row.matches("2.00ms").count(),
            7,
            "p50..max and the mean are 2 ms: {row}"
        );
        let lag = text
            .lines()
            .find(|l| l.trim_start().starts_with("schedule lag"))
            .unwrap();
        assert!(lag.contains("50.00µs"), "{lag}");
        let connect = text
            .lines()
            .find(|l| l.trim_start().starts_with("connect (0)"))
            .unwrap();
        assert_eq!(connect.matches('-').count(), 8, "{connect}");
        assert!(
            !text.contains("TLS handshake"),
            "no TLS row for http: {text}"
        );
        let mut r = Recorder::new();
        r.record_tls_handshake(1_500_000, false);
        r.record_tls_handshake(1_500_000, true);
        let mut tls = snap(10, 50);
        tls.merge(&r.take_snapshot());
        let tls_text = Report::new(
            info(Mode::Open { rate: 100.0 }),
            &tls,
            &[],
            10.0,
            Cpu::default(),
        )
        .to_text(false);
        let row = tls_text
            .lines()
            .find(|l| l.trim_start().starts_with("TLS handshake (2)"))
            .unwrap_or_else(|| panic!("{tls_text}"));
        assert!(row.contains("1.50ms"), "{row}");
        assert!(
            tls_text.contains("1 of 2 handshakes resumed a session"),
            "{tls_text}"
        );
        assert!(
            text.contains(
                "user 0.50s, system 0.25s (3.8% of 2 threads × 10.00s), 750.00µs per response"
            ),
            "{text}"
        );
        assert!(!text.contains("WARNING"), "{text}");
        assert!(!text.contains("spectrum"), "{text}");
    }

    #[test]
    fn users_model_line_names_users_spawn_and_think() {
        let mut run = info(Mode::Closed { connections: 20 });
        run.users = Some(crate::export::UsersInfo {
            users: 20,
            spawn_rate: Some(5.0),
            think_min_s: 0.5,
            think_max_s: 1.5,
        });
        let text = Report::new(run.clone(), &snap(10, 0), &[], 2.0, Cpu::default()).to_text(false);
        assert!(
            text.contains("users model: 20 users spawned at 5.00/s, think 500.00ms..1.50s"),
            "{text}"
        );
        run.users = Some(crate::export::UsersInfo {
            users: 3,
            spawn_rate: None,
            think_min_s: 0.1,
            think_max_s: 0.1,
        });
        let text = Report::new(run, &snap(10, 0), &[], 2.0, Cpu::default()).to_text(false);
        assert!(
            text.contains("users model: 3 users all started at once, think 100.00ms"),
            "{text}"
        );
    }

    #[test]
    fn closed_report_with_errors_and_warning() {
        let mut t = snap(10, 2_000);
        let mut r = Recorder::new();
        r.record_error(ErrorKind::Timeout);
        r.record_error(ErrorKind::Connect);
        r.record_dropped();
        r.record_response(0, 0, 1_000, 1_000, 503, 0);
        r.record_response(0, 0, 1_000, 1_000, 700, 0);
        t.merge(&r.take_snapshot());
        let rep = Report::new(
            info(Mode::Closed { connections: 8 }),
            &t,
            &[],
            2.0,
            Cpu::default(),
        );
        let text = rep.to_text(false);
        assert!(text.contains("closed model, 2.00s measured"), "{text}");
        assert!(
            text.contains("Rate        achieved 6.00 req/s, sent 5.00 req/s"),
            "{text}"
        );
        assert!(
            text.contains("Status      2xx 10, 5xx 1, other 1\n"),
            "{text}"
        );
        assert!(
            text.contains("Errors      4 total: connect 1, timeout 1, status 2\n"),
            "{text}"
        );
        assert!(
            text.contains("WARNING: the generator itself was the bottleneck"),
            "{text}"
        );
        assert!(
            text.contains("  - schedule lag p99 is 2.00ms (limit 1.00ms)"),
            "{text}"
        );
        assert!(text.contains("  - 1 request dropped"), "{text}");
    }

    #[test]
    fn full_latency_adds_distribution_and_spectrum() {
        let rep = Report::new(
            info(Mode::Open { rate: 100.0 }),
            &snap(1000, 0),
            &[],
            10.0,
            Cpu::default(),
        );
        let text = rep.to_text(true);
        for q in [
            "50.000%", "75.000%", "90.000%", "95.000%", "99.000%", "99.900%", "99.990%", "99.999%",
            "100.000%",
        ] {
            assert!(text.contains(q), "{q} missing: {text}");
        }
        assert!(
            text.contains("Value   Percentile   TotalCount 1/(1-Percentile)"),
            "{text}"
        );
        assert!(
            text.contains("inf\n"),
            "last spectrum line is quantile 1: {text}"
        );
        assert!(text.contains("Total count    =         1000]"), "{text}");
        let empty = Report::new(
            info(Mode::Open { rate: 100.0 }),
            &Snapshot::empty(),
            &[],
            10.0,
            Cpu::default(),
        );
        assert!(empty.to_text(true).contains("no responses"));
    }

    /// Not an assertion: `cargo test print_sample -- --nocapture` shows the layout.
    #[test]
    fn print_sample() {
        let mut t = snap(1000, 50);
        let mut r = Recorder::new();
        r.record_error(ErrorKind::Timeout);
        r.record_dropped();
        r.record_connect(180_000);
        t.merge(&r.take_snapshot());
        let rep = Report::new(
            info(Mode::Open { rate: 100.0 }),
            &t,
            &[],
            10.0,
            Cpu {
                user_s: 0.5,
                system_s: 0.25,
            },
        );
        println!("{}", rep.to_text(true));
        println!("{}", serde_json::to_string_pretty(&rep.to_json()).unwrap());
    }
}
