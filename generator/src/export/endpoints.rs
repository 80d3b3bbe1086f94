//! The per-request-name table (Locust's stats table) of a scenario run: name, requests,
//! failures, median, p95, p99, max, average response size and requests per second, one row
//! per name and an `Aggregated` row for the run's totals.
//!
//! Response times are `done - intended` (like the report's headline); failures are requests
//! without a response or with a status outside 2xx ([`crate::measure::EndpointStats`]). At
//! the end of a run "req/s" is the average over the measured window (Locust's live "current
//! RPS" is the live display's job).

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
    pub failures_per_s: f64,
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
    out
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
        "\n  {:<width$} {:>10} {:>15} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10}",
        "Name", "# reqs", "# fails", "median", "p95", "p99", "max", "avg size", "req/s"
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
            "  {:<width$} {:>10} {:>15} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10.2}",
            row.name,
            row.requests,
            format!("{}({pct:.2}%)", row.failures),
            d(row.p50_us),
            d(row.p95_us),
            d(row.p99_us),
            d(row.max_us),
            row.avg_size_bytes
                .map_or("-".to_owned(), |b| fmt_bytes(b.round() as u64)),
            row.rps
        );
    }
    out
}
