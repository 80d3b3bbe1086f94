//! The per-request-name table (Locust's stats table) of a scenario run: name, requests,
//! failures, median, p95, p99, max, average response size and requests per second, one row
//! per name and an `Aggregated` row for the run's totals.
//!
//! Response times are `done - intended` (like the report's headline); failures are requests
//! without a response or with a status outside 2xx ([`crate::measure::EndpointStats`]). At
//! the end of a run "req/s" is the average over the measured window, and "current RPS"
//! (Locust's column) the rate over the last [`CURRENT_WINDOW_S`] full seconds of it, which
//! shows where a ramp or a spawn ended rather than its average.

use std::fmt::Write;

use serde::Serialize;

use super::{fmt_bytes, fmt_duration_us, per_second, Report};
use crate::measure::Hist;

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EndpointRow {
    pub name: String,
    pub requests: u64,
    pub failures: u64,
    pub p50_us: Option<u64>,
    pub p95_us: Option<u64>,
    pub p99_us: Option<u64>,
    pub max_us: Option<u64>,
    pub mean_us: Option<f64>,
    /// Average bytes received per response.
    pub avg_size_bytes: Option<f64>,
    pub rps: f64,
    /// Requests per second over the last full seconds of the run (`None` when unknown).
    pub current_rps: Option<f64>,
    pub failures_per_s: f64,
}

/// Seconds over which "current RPS" is averaged (fewer in a shorter run).
pub const CURRENT_WINDOW_S: u64 = 3;

/// "Current RPS" per name, then for `Aggregated`, from per-second request counts (second
/// index after warm-up, counts per name then the aggregate): the average over the last
/// [`CURRENT_WINDOW_S`] seconds that lie wholly inside the measured window (a final partial
/// second would read low). `None` when no full second was measured.
pub fn current_rps(seconds: &[(u64, Vec<u64>)], measured_s: f64) -> Option<Vec<f64>> {
    // A second counts as full when it ends within 1 ms of the window's end.
    let full = (measured_s + 1e-3).floor().max(0.0) as u64;
    if full == 0 {
        return None;
    }
    let from = full.saturating_sub(CURRENT_WINDOW_S);
    let width = seconds.iter().map(|(_, c)| c.len()).max()?;
    let mut sum = vec![0u64; width];
    for (_, counts) in seconds.iter().filter(|(i, _)| (from..full).contains(i)) {
        for (s, c) in sum.iter_mut().zip(counts) {
            *s += c;
        }
    }
    let secs = (full - from) as f64;
    Some(sum.into_iter().map(|n| n as f64 / secs).collect())
}

impl EndpointRow {
    fn new(
        name: &str,
        requests: u64,
        failures: u64,
        h: &Hist,
        bytes: u64,
        responses: u64,
        secs: f64,
    ) -> Self {
        let some = !h.is_empty();
        let q = |q: f64| some.then(|| h.value_at_quantile(q));
        EndpointRow {
            name: name.to_owned(),
            requests,
            failures,
            p50_us: q(0.5),
            p95_us: q(0.95),
            p99_us: q(0.99),
            max_us: some.then(|| h.max()),
            mean_us: some.then(|| h.mean()).filter(|m| m.is_finite()),
            avg_size_bytes: (responses > 0).then(|| bytes as f64 / responses as f64),
            rps: per_second(requests, secs),
            current_rps: None,
            failures_per_s: per_second(failures, secs),
        }
    }
}

/// Rows for each name (empty without names), then `Aggregated` for the whole run: every
/// request, failures counted the same way (errors of all kinds plus responses outside 2xx).
pub fn rows(r: &Report) -> Vec<EndpointRow> {
    let t = r.totals();
    if r.endpoint_names.is_empty() {
        return Vec::new();
    }
    let secs = r.measured_s();
    let mut out: Vec<EndpointRow> = r
        .endpoint_names
        .iter()
        .enumerate()
        .map(|(i, name)| match t.endpoints.get(i) {
            Some(e) => EndpointRow::new(
                name,
                e.requests(),
                e.failures(),
                &e.response,
                e.bytes_received,
                e.responses,
                secs,
            ),
            None => EndpointRow::new(name, 0, 0, &Hist::new(), 0, 0, secs),
        })
        .collect();
    let (requests, failures) = aggregate(t);
    out.push(EndpointRow::new(
        "Aggregated",
        requests,
        failures,
        &t.response,
        t.bytes_received(),
        t.requests(),
        secs,
    ));
    if let Some(cur) = &r.current_rps {
        for (row, c) in out.iter_mut().zip(cur) {
            row.current_rps = Some(*c);
        }
    }
    out
}

/// One second's request counts per name, then the aggregate, as [`current_rps`] takes them.
pub fn second_counts(s: &crate::measure::Snapshot, names: usize) -> Vec<u64> {
    let mut v: Vec<u64> = (0..names)
        .map(|i| s.endpoints.get(i).map_or(0, |e| e.requests()))
        .collect();
    v.push(aggregate(s).0);
    v
}

/// The whole run's (requests, failures) counted like a row's: failures are requests
/// without a response plus responses outside 2xx.
pub fn aggregate(t: &crate::measure::Snapshot) -> (u64, u64) {
    let [c1, _, c3, c4, c5] = t.status_classes();
    let bad_status = c1 + c3 + c4 + c5 + t.status_other();
    let no_response = t
        .errors_total()
        .saturating_sub(t.errors(crate::measure::ErrorKind::Status));
    (
        t.requests().saturating_add(no_response),
        bad_status.saturating_add(no_response),
    )
}

/// The table as text (empty without names).
pub fn text(r: &Report) -> String {
    let rows = rows(r);
    if rows.is_empty() {
        return String::new();
    }
    let width = rows
        .iter()
        .map(|r| r.name.len())
        .max()
        .unwrap_or(4)
        .clamp(4, 40);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n  {:<width$} {:>10} {:>15} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10} {:>11}",
        "Name",
        "# reqs",
        "# fails",
        "median",
        "p95",
        "p99",
        "max",
        "avg size",
        "req/s",
        "current RPS"
    );
    for row in rows {
        let d = |v: Option<u64>| v.map_or("-".to_owned(), |v| fmt_duration_us(v as f64));
        let pct = if row.requests > 0 {
            row.failures as f64 * 100.0 / row.requests as f64
        } else {
            0.0
        };
        let _ = writeln!(
            out,
            "  {:<width$} {:>10} {:>15} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10.2} {:>11}",
            row.name,
            row.requests,
            format!("{}({pct:.2}%)", row.failures),
            d(row.p50_us),
            d(row.p95_us),
            d(row.p99_us),
            d(row.max_us),
            row.avg_size_bytes
                .map_or("-".to_owned(), |b| fmt_bytes(b.round() as u64)),
            row.rps,
            row.current_rps
                .map_or("-".to_owned(), |c| format!("{c:.2}"))
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn current_rps_averages_the_last_full_seconds() {
        // Name counts then the aggregate, per second: a ramp 10, 20, 30, 40 and a partial
        // fifth second that must not count.
        let secs: Vec<(u64, Vec<u64>)> = (0..5)
            .map(|i| (i, vec![10 * (i + 1), 1, 10 * (i + 1) + 1]))
            .collect();
        let cur = current_rps(&secs, 4.3).unwrap();
        assert_eq!(cur, vec![30.0, 1.0, 31.0], "seconds 1..4 of a 4.3 s run");
        // A run shorter than the window averages what it has.
        assert_eq!(current_rps(&secs[..2], 2.0).unwrap()[0], 15.0);
        assert_eq!(current_rps(&secs, 0.5), None);
        assert_eq!(current_rps(&[], 3.0), None);
    }
}
