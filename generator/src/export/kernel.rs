//! The kernel probes' part of the report (`docs/probes.md`): kernel latency beside the
//! response and service time, the generator's own overhead (service time minus kernel
//! latency, per percentile), kernel connect time, srtt and retransmits; or one line saying
//! why there are no kernel figures.
//!
//! The overhead is a difference of percentiles, not a percentile of per-request
//! differences: both histograms hold the same requests, so at each rank it says how much of
//! the service time the kernel did not see.

use std::fmt::Write as _;

use serde_json::{json, Value};

use super::json::Summary;
use super::text::{fmt_duration_us, latency_row, COL, LABEL};
use super::{finite, per_second, Report};
use crate::measure::Hist;
use crate::probes::KernelStatus;

/// Quantiles of the overhead, as in the text table's percentile columns.
const QUANTILES: [(f64, &str); 5] = [
    (0.5, "p50_us"),
    (0.9, "p90_us"),
    (0.99, "p99_us"),
    (0.999, "p99_9_us"),
    (0.9999, "p99_99_us"),
];

/// Service minus kernel at quantile `q`, µs; `None` when either is empty.
fn overhead_at(service: &Hist, kernel: &Hist, q: f64) -> Option<i64> {
    (!service.is_empty() && !kernel.is_empty())
        .then(|| service.value_at_quantile(q) as i64 - kernel.value_at_quantile(q) as i64)
}

/// A duration that may be negative (an overhead within the histograms' precision).
fn fmt_signed_us(us: f64) -> String {
    if us < 0.0 {
        format!("-{}", fmt_duration_us(-us))
    } else {
        fmt_duration_us(us)
    }
}

/// Latency table rows, after the engine's own.
pub(super) fn text_rows(out: &mut String, r: &Report) {
    let KernelStatus::Measured(k) = r.kernel() else {
        return;
    };
    let service = &r.totals().service;
    latency_row(out, "kernel latency", &k.latency);
    let _ = write!(out, "  {:<LABEL$}", "gen overhead");
    for (q, _) in QUANTILES {
        let cell =
            overhead_at(service, &k.latency, q).map_or("-".into(), |v| fmt_signed_us(v as f64));
        let _ = write!(out, "{cell:>COL$}");
    }
    let mean = (!service.is_empty() && !k.latency.is_empty())
        .then(|| fmt_signed_us(service.mean() - k.latency.mean()));
    let _ = writeln!(
        out,
        "{:>COL$}{:>COL$}{:>COL$}",
        "-",
        mean.unwrap_or_else(|| "-".into()),
        "-"
    );
    latency_row(
        out,
        &format!("kernel connect ({})", k.connect.count()),
        &k.connect,
    );
    latency_row(out, "srtt", &k.srtt);
}

/// One line: how the kernel figures were taken, or why there are none.
pub(super) fn text_line(out: &mut String, r: &Report) {
    match r.kernel() {
        KernelStatus::Off => {}
        KernelStatus::Unavailable(why) => {
            let _ = writeln!(out, "  Kernel      probes off: {why}");
        }
        KernelStatus::Measured(k) => {
            let _ = writeln!(
                out,
                "  Kernel      eBPF ({}): {} of {} sent requests kernel-timed, {} sockets, \
                 {} retransmits ({:.2}/s)",
                k.attach,
                k.latency.count(),
                r.totals().sent(),
                k.sockets,
                k.retransmits,
                per_second(k.retransmits, r.measured_s())
            );
        }
    }
}

/// The `kernel` object of the JSON report (`docs/report.schema.json`).
pub(super) fn json(r: &Report) -> Value {
    match r.kernel() {
        KernelStatus::Off => none("off", None),
        KernelStatus::Unavailable(why) => none("unavailable", Some(why)),
        KernelStatus::Measured(k) => {
            let service = &r.totals().service;
            let mut overhead = serde_json::Map::new();
            for (q, key) in QUANTILES {
                overhead.insert(key.into(), json!(overhead_at(service, &k.latency, q)));
            }
            let mean = (!service.is_empty() && !k.latency.is_empty())
                .then(|| finite(service.mean() - k.latency.mean()));
            overhead.insert("mean_us".into(), json!(mean));
            json!({
                "status": "measured",
                "reason": null,
                "attach": k.attach,
                "latency": Summary::of(&k.latency),
                "generator_overhead": overhead,
                "connect_time": Summary::of(&k.connect),
                "srtt": Summary::of(&k.srtt),
                "retransmits": k.retransmits,
                "retransmits_per_s": per_second(k.retransmits, r.measured_s()),
                "sockets": k.sockets,
            })
        }
    }
}

fn none(status: &str, reason: Option<&String>) -> Value {
    json!({
        "status": status, "reason": reason, "attach": null, "latency": null,
        "generator_overhead": null, "connect_time": null, "srtt": null,
        "retransmits": null, "retransmits_per_s": null, "sockets": null,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::tests::{info, snap};
    use super::super::{Cpu, Mode};
    use super::*;
    use crate::probes::KernelFigures;

    /// Kernel figures for `n` requests of `us` µs each, 2 sockets, 3 retransmits.
    pub(crate) fn measured(n: u64, us: u64) -> KernelStatus {
        let mut latency = Hist::new();
        latency.record_us_n(us, n);
        let mut connect = Hist::new();
        connect.record_us_n(150, 2);
        let mut srtt = Hist::new();
        srtt.record_us_n(30, n);
        KernelStatus::Measured(Box::new(KernelFigures {
            attach: "tracepoint",
            latency,
            connect,
            srtt,
            retransmits: 3,
            sockets: 2,
        }))
    }

    fn report(kernel: KernelStatus) -> Report {
        // snap(): 1000 responses, service time 2 ms - 50 µs lag = 1.95 ms.
        Report::new(
            info(Mode::Open { rate: 100.0 }),
            &snap(1000, 50),
            &[],
            10.0,
            Cpu::default(),
        )
        .with_kernel(kernel)
    }

    #[test]
    fn text_shows_kernel_rows_and_overhead() {
        let text = report(measured(1000, 1_900)).to_text(false);
        let row = |name: &str| {
            text.lines()
                .find(|l| l.trim_start().starts_with(name))
                .unwrap_or_else(|| panic!("no {name} row: {text}"))
                .to_string()
        };
        assert!(row("kernel latency").contains("1.90ms"), "{text}");
        // 1950 - 1900 at every percentile (HDR: 1950 is exact below 2048 µs).
        assert_eq!(row("gen overhead").matches("50.00µs").count(), 6, "{text}");
        assert!(row("kernel connect (2)").contains("150.00µs"), "{text}");
        assert!(row("srtt").contains("30.00µs"), "{text}");
        assert!(
            text.contains(
                "Kernel      eBPF (tracepoint): 1000 of 1000 sent requests kernel-timed, 2 sockets, 3 retransmits (0.30/s)"
            ),
            "{text}"
        );
        // The overhead may come out negative within the histograms' precision.
        let text = report(measured(1000, 1_960)).to_text(false);
        assert!(row_of(&text, "gen overhead").contains("-10.00µs"), "{text}");
    }

    fn row_of(text: &str, name: &str) -> String {
        text.lines()
            .find(|l| l.trim_start().starts_with(name))
            .unwrap_or_default()
            .to_string()
    }

    #[test]
    fn unavailable_is_one_line_and_off_is_silent() {
        let text = report(KernelStatus::Unavailable("no BTF".into())).to_text(false);
        assert!(
            text.contains("  Kernel      probes off: no BTF\n"),
            "{text}"
        );
        assert!(row_of(&text, "kernel latency").is_empty(), "{text}");
        let text = report(KernelStatus::Off).to_text(false);
        assert!(!text.contains("Kernel"), "{text}");
    }

    #[test]
    fn json_fields() {
        let j = report(measured(1000, 1_900)).to_json();
        let k = &j["kernel"];
        assert_eq!(k["status"], "measured");
        assert_eq!(k["attach"], "tracepoint");
        assert_eq!(k["latency"]["count"], 1000);
        assert_eq!(k["latency"]["p50_us"], 1900);
        assert_eq!(k["generator_overhead"]["p50_us"], 50);
        assert_eq!(k["generator_overhead"]["p99_99_us"], 50);
        assert_eq!(k["generator_overhead"]["mean_us"], 50.0);
        assert_eq!(k["connect_time"]["count"], 2);
        assert_eq!(k["srtt"]["p50_us"], 30);
        assert_eq!(k["retransmits"], 3);
        assert_eq!(k["retransmits_per_s"], 0.3);
        assert_eq!(k["sockets"], 2);
        let j = report(KernelStatus::Unavailable("no BTF".into())).to_json();
        assert_eq!(j["kernel"]["status"], "unavailable");
        assert_eq!(j["kernel"]["reason"], "no BTF");
        assert!(j["kernel"]["latency"].is_null());
        let j = report(KernelStatus::Off).to_json();
        assert_eq!(j["kernel"]["status"], "off");
        assert!(j["kernel"]["reason"].is_null());
    }
}
