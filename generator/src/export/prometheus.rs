//! Prometheus exposition of a run's cumulative figures (`/metrics` on workers and the
//! coordinator), in the Prometheus text format 0.0.4 through `prometheus-client`.
//!
//! The engine already merges its threads' [`Snapshot`]s once a second; [`Metrics`] adds each
//! merged interval to cumulative figures per endpoint (request name: each snapshot's per-name
//! rows when the run has a scenario, see [`Metrics::set_names`]) and to one cumulative
//! snapshot of everything, and a scrape turns those into Prometheus counters, gauges and
//! histograms on the fly (a `prometheus-client` [`Collector`]). Nothing here is on the hot
//! path: one lock per interval and per scrape.
//!
//! Per endpoint: requests by status class, errors by kind and response time. Service time,
//! schedule lag and connect time are per process (no endpoint label): the engine keeps them
//! per run, not per request name, and the dashboard sums them over endpoints anyway.
//!
//! Histogram buckets are exponential with factor 1.25 from 25 µs to about a minute (67
//! buckets), so `histogram_quantile` interpolates within 25% of a bucket's width; the exact
//! figures come from the HDR histograms, which the coordinator publishes as quantile gauges
//! ([`ClusterFigures`]). Buckets are filled from the HDR counts in one pass over the recorded
//! values, so a bucket's count is exact up to HDR's 0.1% value resolution.
//!
//! Metric names and labels are those of `DESIGN.md` ("Metrics"); labels are bounded: the
//! endpoint is a request name from the plan, status a class (`2xx`), kind an [`ErrorKind`].

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, MutexGuard};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::measure::{EndpointStats, ErrorKind, Hist, Snapshot};

/// `Content-Type` of the exposition.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Smallest bucket bound, seconds.
const BUCKET_START_S: f64 = 25e-6;
/// Ratio between consecutive bucket bounds (the issue asks for at most 1.25).
const BUCKET_FACTOR: f64 = 1.25;
/// Number of finite bucket bounds: 25 µs × 1.25^66 ≈ 62 s.
const BUCKETS: usize = 67;

/// Quantiles published as exact gauges by the coordinator.
pub const CLUSTER_QUANTILES: [f64; 6] = [0.5, 0.9, 0.99, 0.999, 0.9999, 1.0];

/// Finite upper bounds of the latency buckets, seconds, ascending.
pub fn bucket_bounds() -> [f64; BUCKETS] {
    let mut b = [0.0; BUCKETS];
    let mut v = BUCKET_START_S;
    for slot in &mut b {
        *slot = v;
        v *= BUCKET_FACTOR;
    }
    b
}

/// Figures only the coordinator has: worker states and exact merged quantiles.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterFigures {
    /// Workers per state name (`ready`, `running`, `missing`, ...).
    pub workers: BTreeMap<String, u64>,
}

#[derive(Debug)]
struct State {
    /// The current run's request names, index-aligned with each snapshot's per-name rows.
    names: Vec<String>,
    /// Cumulative figures per endpoint since the process started.
    endpoints: BTreeMap<String, EndpointStats>,
    /// Cumulative snapshot of every endpoint since the process started.
    all: Snapshot,
    /// Kernel figures from the eBPF probes, when they run: (request latency, connect time).
    kernel: Option<(Hist, Hist)>,
    target_rate: f64,
    connections: i64,
    inflight: i64,
    cluster: Option<ClusterFigures>,
}

/// The cumulative figures behind `/metrics`. Cheap to clone (shared state).
#[derive(Debug, Clone)]
pub struct Metrics {
    state: Arc<Mutex<State>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Empty metrics: no endpoint yet, every gauge 0.
    pub fn new() -> Self {
        Metrics {
            state: Arc::new(Mutex::new(State {
                names: Vec::new(),
                endpoints: BTreeMap::new(),
                all: Snapshot::empty(),
                kernel: None,
                target_rate: 0.0,
                connections: 0,
                inflight: 0,
                cluster: None,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves plain numbers behind: keep serving.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The request names of the run whose intervals come next (empty without a scenario).
    /// Bounded: they come from the plan, never from the traffic.
    pub fn set_names(&self, names: Vec<String>) {
        self.lock().names = names;
    }

    /// Adds one interval's merged snapshot to the running totals: per request name from its
    /// per-name rows when they match [`Metrics::set_names`], else all under `endpoint`.
    pub fn add_interval(&self, endpoint: &str, delta: &Snapshot) {
        let mut st = self.lock();
        let State {
            names,
            endpoints,
            all,
            ..
        } = &mut *st;
        all.merge(delta);
        let mut add = |name: &str, e: &EndpointStats| match endpoints.get_mut(name) {
            Some(total) => total.merge(e),
            None => {
                endpoints.insert(name.to_owned(), e.clone());
            }
        };
        if !names.is_empty() && delta.endpoints.len() == names.len() {
            for (name, e) in names.iter().zip(&delta.endpoints) {
                add(name, e);
            }
        } else {
            add(endpoint, &endpoint_of(delta));
        }
    }

    /// Adds kernel-measured request latencies and connect times (µs histograms).
    pub fn add_kernel(&self, latency: &Hist, connect: &Hist) {
        let mut st = self.lock();
        match &mut st.kernel {
            Some((l, c)) => {
                l.merge(latency);
                c.merge(connect);
            }
            None => st.kernel = Some((latency.clone(), connect.clone())),
        }
    }

    /// Sets the gauges: the target rate (requests/s, 0 in closed models), open connections and
    /// requests in flight.
    pub fn set_gauges(&self, target_rate: f64, connections: i64, inflight: i64) {
        let mut st = self.lock();
        st.target_rate = target_rate;
        st.connections = connections;
        st.inflight = inflight;
    }

    /// Sets the coordinator-only figures (worker states); enables the `gen_cluster_*` metrics.
    pub fn set_cluster(&self, figures: ClusterFigures) {
        self.lock().cluster = Some(figures);
    }

    /// The response-time histogram merged over every endpoint.
    pub fn merged_response(&self) -> Hist {
        self.lock().all.response.clone()
    }

    /// Renders the exposition (Prometheus text format 0.0.4).
    pub fn encode(&self) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(View(self.clone())));
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry);
        if self.lock().cluster.is_some() {
            cluster_summary(&mut out, &self.merged_response());
        }
        out
    }
}

/// The scrape-time view of [`Metrics`].
#[derive(Debug)]
struct View(Metrics);

type Labels = Vec<(&'static str, String)>;

impl Collector for View {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let st = self.0.lock();
        let bounds = bucket_bounds();

        let mut requests = Vec::new();
        let mut errors = Vec::new();
        for (name, s) in &st.endpoints {
            for (i, n) in s.status.iter().enumerate().skip(1) {
                if *n > 0 {
                    requests.push((endpoint_status(name, &format!("{i}xx")), *n));
                }
            }
            if s.status[0] > 0 {
                requests.push((endpoint_status(name, "other"), s.status[0]));
            }
            // Every kind, zeros included: `rate()` of a series that exists reads 0, while a
            // series that appears with the first error reads "no data" until then.
            for kind in ErrorKind::ALL {
                let labels = vec![("endpoint", name.clone()), ("kind", kind.as_str().into())];
                errors.push((labels, s.errors[kind.index()]));
            }
        }
        let dropped = st.all.dropped();
        counter_family(
            &mut enc,
            "gen_requests",
            "Responses received, by endpoint and status class.",
            &requests,
        )?;
        counter_family(
            &mut enc,
            "gen_errors",
            "Failed requests by endpoint and error kind (status = a response >= 400).",
            &errors,
        )?;
        counter_family(
            &mut enc,
            "gen_dropped",
            "Requests dropped because no connection was free and the wait queue was full.",
            &[(Vec::new(), dropped)],
        )?;

        let hists: Vec<(Labels, &Hist)> = st
            .endpoints
            .iter()
            .map(|(ep, s)| (vec![("endpoint", ep.clone())], &s.response))
            .collect();
        histogram_family(
            &mut enc,
            "gen_response_time_seconds",
            "Response time: done minus intended send time (coordinated-omission free).",
            &hists,
            &bounds,
        )?;
        histogram_family(
            &mut enc,
            "gen_service_time_seconds",
            "Service time: done minus actual send time.",
            &[(Vec::new(), &st.all.service)],
            &bounds,
        )?;
        histogram_family(
            &mut enc,
            "gen_schedule_lag_seconds",
            "Schedule lag: actual minus intended send time (the generator's own lateness).",
            &[(Vec::new(), &st.all.lag)],
            &bounds,
        )?;
        histogram_family(
            &mut enc,
            "gen_connect_seconds",
            "TCP connect time measured by the generator.",
            &[(Vec::new(), &st.all.connect)],
            &bounds,
        )?;
        if let Some((latency, kconnect)) = &st.kernel {
            histogram_family(
                &mut enc,
                "gen_kernel_latency_seconds",
                "Kernel latency: response data-ready minus request send, timed by eBPF.",
                &[(Vec::new(), latency)],
                &bounds,
            )?;
            histogram_family(
                &mut enc,
                "gen_kernel_connect_seconds",
                "TCP connect time (SYN_SENT to ESTABLISHED), timed by eBPF.",
                &[(Vec::new(), kconnect)],
                &bounds,
            )?;
        }

        {
            let m = enc.encode_descriptor(
                "gen_cpu_seconds",
                "CPU time (user + system) used by this gen process.",
                None,
                MetricType::Counter,
            )?;
            ConstCounter::new(process_cpu_s()).encode(m)?;
        }
        gauge(
            &mut enc,
            "gen_target_rate",
            "Target request rate, requests per second (0 in closed models).",
            st.target_rate,
        )?;
        gauge(
            &mut enc,
            "gen_connections",
            "Open connections to the target.",
            st.connections as f64,
        )?;
        gauge(
            &mut enc,
            "gen_inflight",
            "Requests sent and not yet answered.",
            st.inflight as f64,
        )?;

        if let Some(cluster) = &st.cluster {
            let mut m = enc.encode_descriptor(
                "gen_cluster_workers",
                "Workers known to the coordinator, by state.",
                None,
                MetricType::Gauge,
            )?;
            for (state, n) in &cluster.workers {
                let labels = vec![("state", state.clone())];
                ConstGauge::new(*n as i64).encode(m.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

/// Exact cluster quantiles as a Prometheus summary (`quantile` labels plus `_sum` and
/// `_count`). Written by hand: prometheus-client 0.26 has no summary type, and promtool
/// rejects a `quantile` label on a gauge.
fn cluster_summary(out: &mut String, response: &Hist) {
    let name = "gen_cluster_response_time_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Exact response-time quantiles of the merged cluster histogram.\n\
         # TYPE {name} summary"
    );
    for q in CLUSTER_QUANTILES {
        let v = if response.is_empty() {
            0.0
        } else {
            response.value_at_quantile(q) as f64 / 1e6
        };
        let _ = writeln!(out, "{name}{{quantile=\"{}\"}} {v}", format_quantile(q));
    }
    let (sum, count, _) = buckets_of(response, &bucket_bounds());
    let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
}

/// User + system CPU seconds of this process so far.
pub fn process_cpu_s() -> f64 {
    let (user, system) = crate::engine::rusage();
    user + system
}

fn endpoint_status(endpoint: &str, status: &str) -> Labels {
    vec![
        ("endpoint", endpoint.to_owned()),
        ("status", status.to_owned()),
    ]
}

fn format_quantile(q: f64) -> String {
    let mut s = String::new();
    let _ = write!(s, "{q}");
    s
}

fn counter_family(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: &[(Labels, u64)],
) -> Result<(), std::fmt::Error> {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, v) in series {
        ConstCounter::new(*v).encode(m.encode_family(labels)?)?;
    }
    Ok(())
}

fn gauge(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    v: f64,
) -> Result<(), std::fmt::Error> {
    let m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    ConstGauge::new(v).encode(m)
}

fn histogram_family(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: &[(Labels, &Hist)],
    bounds: &[f64; BUCKETS],
) -> Result<(), std::fmt::Error> {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Histogram)?;
    for (labels, h) in series {
        let (sum, count, buckets) = buckets_of(h, bounds);
        m.encode_family(labels)?
            .encode_histogram::<Labels>(sum, count, &buckets, None)?;
    }
    Ok(())
}

/// A whole snapshot as the figures of one endpoint (a run without request names).
fn endpoint_of(s: &Snapshot) -> EndpointStats {
    let classes = s.status_classes();
    let mut status = [s.status_other(), 0, 0, 0, 0, 0];
    status[1..].copy_from_slice(&classes);
    let mut errors = [0u64; ErrorKind::COUNT];
    for kind in ErrorKind::ALL {
        errors[kind.index()] = s.errors(kind);
    }
    EndpointStats {
        response: s.response.clone(),
        responses: s.requests(),
        bad_status: s.requests().saturating_sub(classes[1]),
        no_response: s.errors_total().saturating_sub(s.errors(ErrorKind::Status)),
        bytes_received: s.bytes_received(),
        status,
        errors,
    }
}

/// Prometheus buckets of an HDR histogram: (sum in seconds, count, per-bucket counts with the
/// `+Inf` bucket last). Per-bucket (not cumulative) counts: the encoder accumulates them.
fn buckets_of(h: &Hist, bounds: &[f64; BUCKETS]) -> (f64, u64, Vec<(f64, u64)>) {
    let mut counts = vec![0u64; BUCKETS + 1];
    let mut sum_s = 0.0;
    for v in h.inner().iter_recorded() {
        // HDR reports each bucket by its highest equivalent value; that decides the bucket.
        let secs = v.value_iterated_to() as f64 / 1e6;
        let n = v.count_at_value();
        sum_s += h.inner().median_equivalent(v.value_iterated_to()) as f64 / 1e6 * n as f64;
        let i = bounds.partition_point(|b| *b < secs);
        counts[i] += n;
    }
    let mut out: Vec<(f64, u64)> = bounds.iter().copied().zip(counts.iter().copied()).collect();
    out.push((f64::INFINITY, counts[BUCKETS]));
    (sum_s, h.count(), out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::Recorder;

    fn snapshot(latencies_us: &[u64], status: u16) -> Snapshot {
        let mut r = Recorder::new();
        for &us in latencies_us {
            r.record_sent(10);
            r.record_response(0, 0, us * 500, us * 1000, status, 100);
        }
        r.take_snapshot()
    }

    #[test]
    fn bounds_grow_by_the_factor_up_to_a_minute() {
        let b = bucket_bounds();
        assert!((b[0] - 25e-6).abs() < 1e-12);
        for w in b.windows(2) {
            assert!((w[1] / w[0] - 1.25).abs() < 1e-9);
        }
        assert!(
            b[BUCKETS - 1] > 60.0 && b[BUCKETS - 1] < 80.0,
            "{}",
            b[BUCKETS - 1]
        );
    }

    #[test]
    fn buckets_count_every_sample_in_the_right_bucket() {
        let mut h = Hist::new();
        for us in [10, 30, 30, 1_000, 2_000_000, 3_000_000_000] {
            h.record_us(us);
        }
        let (sum, count, buckets) = buckets_of(&h, &bucket_bounds());
        assert_eq!(count, 6);
        assert_eq!(buckets.iter().map(|b| b.1).sum::<u64>(), 6);
        // 10 µs lands in the first bucket (≤ 25 µs); 30 µs in the second (≤ 31.25 µs).
        assert_eq!(buckets[0].1, 1);
        assert_eq!(buckets[1].1, 2);
        // 3000 s is above the last finite bound.
        assert_eq!(buckets[BUCKETS].1, 1);
        assert!((sum - (3002.001070)).abs() / 3002.0 < 0.002, "{sum}");
    }

    #[test]
    fn exposition_has_the_design_names_and_exact_counts() {
        let m = Metrics::new();
        m.add_interval("POST /metrics", &snapshot(&[100, 200, 300], 200));
        m.add_interval("POST /metrics", &snapshot(&[400], 503));
        m.add_interval("POST /login", &snapshot(&[150], 200));
        m.set_gauges(1000.0, 64, 3);
        let text = m.encode();
        for needle in [
            "gen_requests_total{endpoint=\"POST /metrics\",status=\"2xx\"} 3",
            "gen_requests_total{endpoint=\"POST /metrics\",status=\"5xx\"} 1",
            "gen_requests_total{endpoint=\"POST /login\",status=\"2xx\"} 1",
            "gen_errors_total{endpoint=\"POST /metrics\",kind=\"status\"} 1",
            "gen_errors_total{endpoint=\"POST /login\",kind=\"timeout\"} 0",
            "gen_dropped_total 0",
            "gen_response_time_seconds_count{endpoint=\"POST /metrics\"} 4",
            "gen_response_time_seconds_bucket{endpoint=\"POST /login\",le=\"+Inf\"} 1",
            "gen_service_time_seconds_count 5",
            "gen_schedule_lag_seconds_count 5",
            "gen_target_rate 1000",
            "gen_cpu_seconds_total ",
            "gen_connections 64",
            "gen_inflight 3",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
        assert!(
            !text.contains("gen_cluster_"),
            "cluster metrics only at the coordinator"
        );
        assert!(
            !text.contains("gen_kernel_"),
            "kernel metrics only with probes"
        );
    }

    /// A scenario run: one series per request name, from each snapshot's per-name rows.
    #[test]
    fn a_scenario_run_is_split_by_request_name() {
        let m = Metrics::new();
        m.set_names(vec!["login".into(), "metrics".into()]);
        let mut r = Recorder::with_endpoints(2);
        for (ep, status) in [(0u16, 200u16), (1, 200), (1, 200), (1, 503)] {
            r.record_sent(10);
            r.record_response(0, 0, 1_000_000, 2_000_000, status, 100);
            r.record_endpoint(ep, 0, 2_000_000, status, 100);
        }
        r.record_error(ErrorKind::Timeout);
        r.record_endpoint_failure(0, ErrorKind::Timeout);
        m.add_interval("default", &r.take_snapshot());
        let text = m.encode();
        for needle in [
            "gen_requests_total{endpoint=\"login\",status=\"2xx\"} 1",
            "gen_requests_total{endpoint=\"metrics\",status=\"2xx\"} 2",
            "gen_requests_total{endpoint=\"metrics\",status=\"5xx\"} 1",
            "gen_errors_total{endpoint=\"metrics\",kind=\"status\"} 1",
            "gen_errors_total{endpoint=\"login\",kind=\"timeout\"} 1",
            "gen_response_time_seconds_count{endpoint=\"metrics\"} 3",
            "gen_service_time_seconds_count 4",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
        assert!(!text.contains("endpoint=\"default\""), "{text}");
    }

    #[test]
    fn cluster_quantiles_are_the_merged_histograms() {
        let m = Metrics::new();
        m.add_interval("a", &snapshot(&[1_000; 99], 200));
        m.add_interval("b", &snapshot(&[50_000], 200));
        let mut workers = BTreeMap::new();
        workers.insert("running".to_owned(), 18);
        workers.insert("missing".to_owned(), 2);
        m.set_cluster(ClusterFigures { workers });
        let text = m.encode();
        assert!(
            text.contains("gen_cluster_response_time_seconds{quantile=\"0.5\"} 0.001"),
            "{text}"
        );
        assert!(
            text.contains("gen_cluster_response_time_seconds{quantile=\"1\"} 0.05"),
            "{text}"
        );
        assert!(
            text.contains("gen_cluster_workers{state=\"missing\"} 2"),
            "{text}"
        );
    }

    /// `promtool check metrics` lints names, help texts, units and histogram shape.
    #[test]
    fn promtool_accepts_the_exposition() {
        use std::io::Write as _;
        use std::process::{Command, Stdio};
        let Ok(mut child) = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
        else {
            eprintln!("skipping: promtool not installed (apt-get install prometheus)");
            return;
        };
        let m = Metrics::new();
        m.add_interval("GET /", &snapshot(&[100, 2_000, 90_000], 200));
        m.add_kernel(
            &snapshot(&[80], 200).response,
            &snapshot(&[20], 200).connect,
        );
        let mut workers = BTreeMap::new();
        workers.insert("running".to_owned(), 1);
        m.set_cluster(ClusterFigures { workers });
        m.set_gauges(10.0, 2, 0);
        let text = m.encode();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "promtool: {}{}\n{text}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn cumulative_totals_add_intervals_exactly() {
        let m = Metrics::new();
        let a = snapshot(&[100, 200], 200);
        let b = snapshot(&[300], 404);
        m.add_interval("x", &a);
        m.add_interval("x", &b);
        let mut both = a.clone();
        both.merge(&b);
        assert_eq!(m.merged_response(), both.response);
    }
}
