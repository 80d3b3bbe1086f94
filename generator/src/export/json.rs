//! JSON rendering of a [`Report`]. The layout is a public, versioned interface: it is
//! described by `docs/report.schema.json` (checked by `tests/report_schema.rs`) and explained
//! in `docs/report.md`. Add fields only with a schema update; rename or remove only with a
//! `SCHEMA_VERSION` bump.
//!
//! Conventions: durations in integer microseconds (`*_us`, HDR highest-equivalent values) or
//! float microseconds for mean/stdev; seconds as floats (`*_s`); rates in requests per second;
//! figures that do not exist (percentiles of an empty histogram, the target rate of a closed
//! run) are `null`, never a made-up 0.

use serde::Serialize;

use super::{error_counts, finite, per_second, Report};
use crate::measure::Hist;

/// Version of the JSON layout, written as `schema_version`.
pub const SCHEMA_VERSION: u32 = 1;
/// Spectrum density (lines per halving of the tail), as in the text `--latency` output.
const SPECTRUM_TICKS: u32 = 5;

#[derive(Serialize)]
struct Doc<'a> {
    schema_version: u32,
    run: Run<'a>,
    throughput: Throughput,
    counts: Counts,
    status: Status,
    errors: serde_json::Map<String, serde_json::Value>,
    latency: Latency,
    response_time_spectrum: Vec<SpectrumLine>,
    cpu: CpuJson,
    generator_bound: bool,
    generator_bound_reasons: Vec<Reason>,
    series: Vec<Point>,
    exit_code: i32,
    kernel: serde_json::Value,
}

#[derive(Serialize)]
struct Run<'a> {
    version: &'a str,
    target: &'a str,
    method: &'a str,
    mode: &'static str,
    target_rate: Option<f64>,
    connections: usize,
    users: Option<UsersJson>,
    threads: usize,
    duration_s: f64,
    warmup_s: f64,
    measured_s: f64,
    driver: &'a str,
    started_at_unix_ms: u64,
}

#[derive(Serialize)]
struct UsersJson {
    users: usize,
    spawn_rate: Option<f64>,
    think_min_s: f64,
    think_max_s: f64,
}

#[derive(Serialize)]
struct Throughput {
    target_rate: Option<f64>,
    achieved_rate: f64,
    sent_rate: f64,
    successful_rate: f64,
    received_bytes_per_s: f64,
}

#[derive(Serialize)]
struct Counts {
    responses: u64,
    successful: u64,
    sent: u64,
    dropped: u64,
    errors: u64,
    bytes_received: u64,
    bytes_sent: u64,
    tls_resumed: u64,
}

#[derive(Serialize)]
struct Status {
    #[serde(rename = "1xx")]
    c1: u64,
    #[serde(rename = "2xx")]
    c2: u64,
    #[serde(rename = "3xx")]
    c3: u64,
    #[serde(rename = "4xx")]
    c4: u64,
    #[serde(rename = "5xx")]
    c5: u64,
    other: u64,
}

#[derive(Serialize)]
struct Latency {
    response_time: Summary,
    service_time: Summary,
    time_to_first_byte: Summary,
    schedule_lag: Summary,
    connect_time: Summary,
    tls_handshake_time: Summary,
}

/// Summary of one histogram; every value is `null` when `count` is 0.
#[derive(Serialize)]
pub(super) struct Summary {
    count: u64,
    min_us: Option<u64>,
    mean_us: Option<f64>,
    stdev_us: Option<f64>,
    p50_us: Option<u64>,
    p75_us: Option<u64>,
    p90_us: Option<u64>,
    p95_us: Option<u64>,
    p99_us: Option<u64>,
    p99_9_us: Option<u64>,
    p99_99_us: Option<u64>,
    p99_999_us: Option<u64>,
    max_us: Option<u64>,
}

impl Summary {
    pub(super) fn of(h: &Hist) -> Self {
        let some = !h.is_empty();
        let q = |q: f64| some.then(|| h.value_at_quantile(q));
        Summary {
            count: h.count(),
            min_us: some.then(|| h.min()),
            mean_us: some.then(|| finite(h.mean())),
            stdev_us: some.then(|| finite(h.stdev())),
            p50_us: q(0.5),
            p75_us: q(0.75),
            p90_us: q(0.9),
            p95_us: q(0.95),
            p99_us: q(0.99),
            p99_9_us: q(0.999),
            p99_99_us: q(0.9999),
            p99_999_us: q(0.99999),
            max_us: some.then(|| h.max()),
        }
    }
}

#[derive(Serialize)]
struct SpectrumLine {
    quantile: f64,
    value_us: u64,
    total_count: u64,
}

#[derive(Serialize)]
struct CpuJson {
    user_s: f64,
    system_s: f64,
    total_s: f64,
    utilization: Option<f64>,
    us_per_response: Option<f64>,
}

#[derive(Serialize)]
struct Reason {
    code: &'static str,
    message: String,
}

#[derive(Serialize)]
struct Point {
    t_s: f64,
    duration_s: f64,
    requests: u64,
    rate: f64,
    sent: u64,
    errors: u64,
    dropped: u64,
    p50_us: Option<u64>,
    p99_us: Option<u64>,
    max_us: Option<u64>,
}

fn spectrum(h: &Hist) -> Vec<SpectrumLine> {
    let mut total = 0u64;
    if h.is_empty() {
        return Vec::new();
    }
    h.inner()
        .iter_quantiles(SPECTRUM_TICKS)
        .map(|v| {
            total += v.count_since_last_iteration();
            SpectrumLine {
                // HDR's iterator accumulates binary fractions (0.30000000000000004);
                // twelve decimals keep every tick exact and the JSON readable.
                quantile: (v.quantile_iterated_to() * 1e12).round() / 1e12,
                value_us: v.value_iterated_to(),
                total_count: total,
            }
        })
        .collect()
}

/// Builds the JSON document.
pub(super) fn render(r: &Report) -> serde_json::Value {
    let (info, t) = (r.info(), r.totals());
    let target_rate = info.mode.target_rate().map(finite);
    let [c1, c2, c3, c4, c5] = t.status_classes();
    let mut errors = serde_json::Map::new();
    errors.insert("total".into(), t.errors_total().into());
    for (kind, n) in error_counts(t) {
        errors.insert(kind.as_str().into(), n.into());
    }
    let cpu = r.cpu();
    let doc = Doc {
        schema_version: SCHEMA_VERSION,
        run: Run {
            version: &info.version,
            target: &info.target,
            method: &info.method,
            mode: info.mode.as_str(),
            target_rate,
            connections: info.connections,
            users: info.users.as_ref().map(|u| UsersJson {
                users: u.users,
                spawn_rate: u.spawn_rate.map(finite),
                think_min_s: finite(u.think_min_s),
                think_max_s: finite(u.think_max_s),
            }),
            threads: info.threads,
            duration_s: finite(info.duration_s),
            warmup_s: finite(info.warmup_s),
            measured_s: r.measured_s(),
            driver: &info.driver,
            started_at_unix_ms: info.started_at_unix_ms,
        },
        throughput: Throughput {
            target_rate,
            achieved_rate: r.achieved_rate(),
            sent_rate: r.sent_rate(),
            successful_rate: per_second(t.successful(), r.measured_s()),
            received_bytes_per_s: per_second(t.bytes_received(), r.measured_s()),
        },
        counts: Counts {
            responses: t.requests(),
            successful: t.successful(),
            sent: t.sent(),
            dropped: t.dropped(),
            errors: t.errors_total(),
            bytes_received: t.bytes_received(),
            bytes_sent: t.bytes_sent(),
            tls_resumed: t.tls_resumed(),
        },
        status: Status {
            c1,
            c2,
            c3,
            c4,
            c5,
            other: t.status_other(),
        },
        errors,
        latency: Latency {
            response_time: Summary::of(&t.response),
            service_time: Summary::of(&t.service),
            time_to_first_byte: Summary::of(&t.ttfb),
            schedule_lag: Summary::of(&t.lag),
            connect_time: Summary::of(&t.connect),
            tls_handshake_time: Summary::of(&t.tls_handshake),
        },
        response_time_spectrum: spectrum(&t.response),
        cpu: CpuJson {
            user_s: finite(cpu.user_s),
            system_s: finite(cpu.system_s),
            total_s: finite(cpu.total_s()),
            utilization: r.cpu_utilization(),
            us_per_response: r.cpu_us_per_request(),
        },
        generator_bound: r.generator_bound(),
        generator_bound_reasons: r
            .bound_reasons()
            .iter()
            .map(|b| Reason {
                code: b.code(),
                message: b.message(),
            })
            .collect(),
        series: r
            .series()
            .iter()
            .map(|p| Point {
                t_s: finite(p.t_s),
                duration_s: finite(p.duration_s),
                requests: p.requests,
                rate: p.rate(),
                sent: p.sent,
                errors: p.errors,
                dropped: p.dropped,
                p50_us: p.p50_us,
                p99_us: p.p99_us,
                max_us: p.max_us,
            })
            .collect(),
        exit_code: r.exit_code(),
        kernel: super::kernel::json(r),
    };
    // Serializing plain structs of numbers and strings into a Value cannot fail.
    serde_json::to_value(doc).expect("report serializes")
}

#[cfg(test)]
mod tests {
    use super::super::tests::{info, snap};
    use super::super::{Cpu, Mode, Report};
    use super::*;
    use crate::measure::{ErrorKind, Recorder, Snapshot};

    #[test]
    fn layout_and_values() {
        let mut t = snap(1000, 50);
        let mut r = Recorder::new();
        r.record_error(ErrorKind::Reset);
        t.merge(&r.take_snapshot());
        let rep = Report::new(
            info(Mode::Open { rate: 100.0 }),
            &t,
            &[snap(100, 0)],
            10.0,
            Cpu {
                user_s: 1.0,
                system_s: 0.5,
            },
        );
        let j = rep.to_json();
        assert_eq!(j["schema_version"], SCHEMA_VERSION);
        assert_eq!(j["run"]["mode"], "open");
        assert_eq!(j["run"]["target_rate"], 100.0);
        assert_eq!(j["throughput"]["achieved_rate"], 100.0);
        assert_eq!(j["counts"]["responses"], 1000);
        assert_eq!(j["counts"]["bytes_received"], 500_000);
        assert_eq!(j["status"]["2xx"], 1000);
        assert_eq!(j["errors"]["total"], 1);
        assert_eq!(j["errors"]["reset"], 1);
        assert_eq!(j["errors"]["tls"], 0);
        assert_eq!(j["latency"]["response_time"]["p99_us"], 2000);
        assert_eq!(j["latency"]["schedule_lag"]["p50_us"], 50);
        assert_eq!(j["latency"]["connect_time"]["count"], 0);
        assert!(j["latency"]["connect_time"]["p99_us"].is_null());
        assert_eq!(j["cpu"]["total_s"], 1.5);
        assert_eq!(j["cpu"]["us_per_response"], 1500.0);
        assert_eq!(j["generator_bound"], false);
        assert_eq!(j["series"][0]["requests"], 100);
        assert_eq!(j["series"][0]["rate"], 100.0);
        assert_eq!(j["exit_code"], 0);
        let spectrum = j["response_time_spectrum"].as_array().unwrap();
        assert_eq!(spectrum.last().unwrap()["quantile"], 1.0);
        assert_eq!(spectrum.last().unwrap()["total_count"], 1000);
    }

    #[test]
    fn closed_and_empty() {
        let rep = Report::new(
            info(Mode::Closed { connections: 8 }),
            &Snapshot::empty(),
            &[],
            0.0,
            Cpu::default(),
        );
        let j = rep.to_json();
        assert_eq!(j["run"]["mode"], "closed");
        assert!(j["run"]["target_rate"].is_null());
        assert!(j["throughput"]["target_rate"].is_null());
        assert!(j["cpu"]["utilization"].is_null());
        assert!(j["cpu"]["us_per_response"].is_null());
        assert_eq!(j["response_time_spectrum"], serde_json::json!([]));
        assert_eq!(j["series"], serde_json::json!([]));
    }
}
