//! Per-thread measurement: a [`Recorder`] on each worker thread, drained once per interval into
//! a [`Snapshot`] that merges exactly with any other snapshot.
//!
//! Timing model (see `DESIGN.md`): for every response the engine passes four instants on one
//! monotonic clock, in nanoseconds: `intended` (from the schedule), `sent`, `first_byte` and
//! `done`. The recorder derives
//!
//! | histogram            | value                | meaning                                        |
//! |----------------------|----------------------|------------------------------------------------|
//! | [`Snapshot::response`] | `done - intended`  | the headline, free of coordinated omission     |
//! | [`Snapshot::service`]  | `done - sent`      | what a closed-loop tool would report           |
//! | [`Snapshot::ttfb`]     | `first_byte - sent`| time to first byte                             |
//! | [`Snapshot::lag`]      | `sent - intended`  | the generator's own lateness                   |
//! | [`Snapshot::connect`]  | connect duration   | TCP connect time, one value per connect        |
//! | [`Snapshot::tls_handshake`] | handshake duration | TLS handshake, TCP connected to handshake done |
//!
//! Differences use saturating subtraction, so an instant out of order records as 1 µs instead of
//! wrapping. Histograms are [`Hist`]: µs, 1 µs ..= 1 h, 3 significant digits.
//!
//! Counting rules:
//! - [`Recorder::record_response`] counts a response (`requests`), its status class and the bytes
//!   received. A status >= 400 is also counted as an [`ErrorKind::Status`] error, but its
//!   latencies are still recorded: the server did answer, and leaving slow error pages out would
//!   flatter the percentiles. The engine must not call `record_error(Status)` itself.
//! - Failed requests (connect, timeout, reset, ...) only count an error: they have no response
//!   time. Dropped requests (no free connection and the wait queue full) only count `dropped`.
//! - [`Recorder::record_sent`] counts one request written to the socket and its bytes.
//!
//! Interval boundaries: [`Snapshot::interval_start_ns`] / [`Snapshot::interval_end_ns`] are plain
//! fields the engine fills after [`Recorder::take_snapshot`] (e.g. with
//! [`Snapshot::with_interval`]), on the same monotonic clock as the samples; 0 means "unset".
//! [`Snapshot::merge`] keeps the earliest set start and the latest end, so merging the threads'
//! snapshots of one second spans that second and merging a run's seconds spans the run. Instants
//! are process-local: a coordinator merging snapshots from several machines must rebase them.

mod endpoint;
mod hist;

pub use endpoint::EndpointStats;
pub use hist::{Hist, HistDecodeError};

use serde::{Deserialize, Serialize};

/// Why a request failed. `Copy`, cheap to pass on the hot path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// TCP connect failed or was refused.
    Connect,
    /// No complete response within the request timeout.
    Timeout,
    /// Connection reset by the peer (ECONNRESET, EPIPE).
    Reset,
    /// Peer closed the connection in the middle of a response.
    Closed,
    /// The response could not be parsed as HTTP/1.1.
    Parse,
    /// A response with status >= 400 (counted by [`Recorder::record_response`]).
    Status,
    /// TLS handshake or record failure (reserved until TLS lands).
    Tls,
}

impl ErrorKind {
    /// Every kind, in report order.
    pub const ALL: [ErrorKind; 7] = [
        ErrorKind::Connect,
        ErrorKind::Timeout,
        ErrorKind::Reset,
        ErrorKind::Closed,
        ErrorKind::Parse,
        ErrorKind::Status,
        ErrorKind::Tls,
    ];

    /// Number of kinds (length of [`Self::ALL`]).
    pub const COUNT: usize = Self::ALL.len();

    /// Stable lower-case name used in reports, JSON keys and metric labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Reset => "reset",
            ErrorKind::Closed => "closed",
            ErrorKind::Parse => "parse",
            ErrorKind::Status => "status",
            ErrorKind::Tls => "tls",
        }
    }

    /// Position in [`Self::ALL`] (also the index in the error counter array).
    #[inline]
    pub const fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything measured over one interval (or, after merging, over many intervals and threads).
///
/// The histograms are public for direct percentile queries; counters are read via accessors so
/// their representation can change. Serde form (the cluster wire format): a JSON object whose
/// histograms are base64 V2 strings (see [`Hist`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Start of the interval, ns on the engine's monotonic clock; 0 when unset.
    pub interval_start_ns: u64,
    /// End of the interval, ns on the engine's monotonic clock; 0 when unset.
    pub interval_end_ns: u64,
    /// Response time: `done - intended`.
    pub response: Hist,
    /// Service time: `done - sent`.
    pub service: Hist,
    /// Time to first byte: `first_byte - sent`.
    pub ttfb: Hist,
    /// Schedule lag: `sent - intended`.
    pub lag: Hist,
    /// TCP connect time.
    pub connect: Hist,
    /// TLS handshake time (https only), one value per completed handshake.
    #[serde(default)]
    pub tls_handshake: Hist,
    /// Of those handshakes, how many resumed an earlier session.
    #[serde(default)]
    tls_resumed: u64,
    requests: u64,
    sent: u64,
    dropped: u64,
    bytes_received: u64,
    bytes_sent: u64,
    /// Index 0: status outside 100..=599; 1..=5: 1xx..5xx.
    status: [u64; 6],
    errors: [u64; ErrorKind::COUNT],
    /// Per scenario request name (empty without a scenario); see [`EndpointStats`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<EndpointStats>,
}

impl Default for Snapshot {
    fn default() -> Self {
        Self::empty()
    }
}

impl Snapshot {
    /// A snapshot with nothing recorded. Allocates the five histograms (~1 MiB).
    pub fn empty() -> Self {
        Snapshot {
            interval_start_ns: 0,
            interval_end_ns: 0,
            response: Hist::new(),
            service: Hist::new(),
            ttfb: Hist::new(),
            lag: Hist::new(),
            connect: Hist::new(),
            tls_handshake: Hist::new(),
            tls_resumed: 0,
            requests: 0,
            sent: 0,
            dropped: 0,
            bytes_received: 0,
            bytes_sent: 0,
            status: [0; 6],
            errors: [0; ErrorKind::COUNT],
            endpoints: Vec::new(),
        }
    }

    /// An empty snapshot with `n` per-name rows.
    pub fn with_endpoints(n: usize) -> Self {
        let mut s = Snapshot::empty();
        s.endpoints = (0..n).map(|_| EndpointStats::default()).collect();
        s
    }

    /// Sets the interval bounds (builder style, for the engine after `take_snapshot`).
    pub fn with_interval(mut self, start_ns: u64, end_ns: u64) -> Self {
        self.interval_start_ns = start_ns;
        self.interval_end_ns = end_ns;
        self
    }

    /// Length of the interval in seconds, or `None` when the bounds are unset or inverted.
    pub fn interval_secs(&self) -> Option<f64> {
        (self.interval_start_ns != 0 && self.interval_end_ns > self.interval_start_ns)
            .then(|| (self.interval_end_ns - self.interval_start_ns) as f64 / 1e9)
    }

    /// Adds `other` into `self`: histograms bucket by bucket, counters by addition (both exact);
    /// the interval becomes the earliest set start to the latest end.
    pub fn merge(&mut self, other: &Snapshot) {
        self.response.merge(&other.response);
        self.service.merge(&other.service);
        self.ttfb.merge(&other.ttfb);
        self.lag.merge(&other.lag);
        self.connect.merge(&other.connect);
        self.tls_handshake.merge(&other.tls_handshake);
        self.tls_resumed = self.tls_resumed.saturating_add(other.tls_resumed);
        self.requests = self.requests.saturating_add(other.requests);
        self.sent = self.sent.saturating_add(other.sent);
        self.dropped = self.dropped.saturating_add(other.dropped);
        self.bytes_received = self.bytes_received.saturating_add(other.bytes_received);
        self.bytes_sent = self.bytes_sent.saturating_add(other.bytes_sent);
        for (a, b) in self.status.iter_mut().zip(other.status) {
            *a = a.saturating_add(b);
        }
        for (a, b) in self.errors.iter_mut().zip(other.errors) {
            *a = a.saturating_add(b);
        }
        if self.endpoints.len() < other.endpoints.len() {
            self.endpoints
                .resize_with(other.endpoints.len(), EndpointStats::default);
        }
        for (a, b) in self.endpoints.iter_mut().zip(&other.endpoints) {
            a.merge(b);
        }
        self.interval_start_ns = match (self.interval_start_ns, other.interval_start_ns) {
            (0, b) => b,
            (a, 0) => a,
            (a, b) => a.min(b),
        };
        self.interval_end_ns = self.interval_end_ns.max(other.interval_end_ns);
    }

    /// Merges a sequence of snapshots into a new one.
    pub fn merged<'a>(parts: impl IntoIterator<Item = &'a Snapshot>) -> Snapshot {
        let mut total = Snapshot::empty();
        for p in parts {
            total.merge(p);
        }
        total
    }

    /// Responses received (any status, including >= 400).
    pub fn requests(&self) -> u64 {
        self.requests
    }

    /// Responses with status < 400.
    pub fn successful(&self) -> u64 {
        self.requests.saturating_sub(self.errors(ErrorKind::Status))
    }

    /// Errors of one kind.
    pub fn errors(&self, kind: ErrorKind) -> u64 {
        self.errors[kind.index()]
    }

    /// Errors of all kinds.
    pub fn errors_total(&self) -> u64 {
        self.errors.iter().fold(0u64, |a, &b| a.saturating_add(b))
    }

    /// Requests dropped because no connection was free and the wait queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Requests written to a connection.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// Bytes received in responses (as reported by the engine: headers + body).
    pub fn bytes_received(&self) -> u64 {
        self.bytes_received
    }

    /// Bytes of requests written.
    pub fn bytes_sent(&self) -> u64 {
        self.bytes_sent
    }

    /// Responses whose status is in class `class` (1..=5 for 1xx..5xx); 0 for other classes.
    pub fn status_class(&self, class: u8) -> u64 {
        match class {
            1..=5 => self.status[class as usize],
            _ => 0,
        }
    }

    /// Responses per class, `[1xx, 2xx, 3xx, 4xx, 5xx]`.
    pub fn status_classes(&self) -> [u64; 5] {
        [
            self.status[1],
            self.status[2],
            self.status[3],
            self.status[4],
            self.status[5],
        ]
    }

    /// TLS handshakes that resumed an earlier session.
    pub fn tls_resumed(&self) -> u64 {
        self.tls_resumed
    }

    /// Responses with a status outside 100..=599.
    pub fn status_other(&self) -> u64 {
        self.status[0]
    }

    /// True when nothing at all was counted or recorded.
    pub fn is_empty(&self) -> bool {
        self.requests == 0
            && self.sent == 0
            && self.dropped == 0
            && self.errors_total() == 0
            && self.connect.is_empty()
            && self.tls_handshake.is_empty()
    }
}

/// Counts one response of `status` by class (`[other, 1xx, ..., 5xx]`), and as a `status`
/// error when >= 400: shared by the run's totals and the per-name rows, so both count alike.
#[inline]
pub(crate) fn count_status(
    classes: &mut [u64; 6],
    errors: &mut [u64; ErrorKind::COUNT],
    status: u16,
) {
    let class = match status {
        100..=599 => (status / 100) as usize,
        _ => 0,
    };
    classes[class] = classes[class].saturating_add(1);
    if status >= 400 {
        let e = &mut errors[ErrorKind::Status.index()];
        *e = e.saturating_add(1);
    }
}

/// Per-thread recorder. Owned by one worker thread; every `record_*` call is allocation-,
/// lock- and log-free.
#[derive(Debug, Default)]
pub struct Recorder {
    cur: Snapshot,
    /// Per-name rows each interval starts with.
    endpoints: usize,
}

impl Recorder {
    /// A recorder with empty histograms (allocates ~1 MiB).
    pub fn new() -> Self {
        Recorder {
            cur: Snapshot::empty(),
            endpoints: 0,
        }
    }

    /// A recorder that also keeps `n` per-request-name rows ([`EndpointStats`]).
    pub fn with_endpoints(n: usize) -> Self {
        Recorder {
            cur: Snapshot::with_endpoints(n),
            endpoints: n,
        }
    }

    /// Records one response of request name `ep` (ignored when out of range).
    #[inline]
    pub fn record_endpoint(&mut self, ep: u16, intended: u64, done: u64, status: u16, bytes: u64) {
        if let Some(e) = self.cur.endpoints.get_mut(ep as usize) {
            e.record_response(done.saturating_sub(intended), status, bytes);
        }
    }

    /// Counts one failure without a response, of error `kind`, for request name `ep`.
    #[inline]
    pub fn record_endpoint_failure(&mut self, ep: u16, kind: ErrorKind) {
        if let Some(e) = self.cur.endpoints.get_mut(ep as usize) {
            e.record_failure(kind);
        }
    }

    /// Records one response. All instants are ns on one monotonic clock: `intended` (from the
    /// schedule; equal to `sent` in closed models), `sent`, `first_byte`, `done`. Records
    /// response time (`done - intended`, the coordinated-omission-free headline), service time
    /// (`done - sent`), time to first byte (`first_byte - sent`), schedule lag
    /// (`sent - intended`), the status class, and `bytes` received. A status >= 400 also counts
    /// as an [`ErrorKind::Status`] error.
    #[inline]
    pub fn record_response(
        &mut self,
        intended: u64,
        sent: u64,
        first_byte: u64,
        done: u64,
        status: u16,
        bytes: u64,
    ) {
        let s = &mut self.cur;
        s.response.record_ns(done.saturating_sub(intended));
        s.service.record_ns(done.saturating_sub(sent));
        s.ttfb.record_ns(first_byte.saturating_sub(sent));
        s.lag.record_ns(sent.saturating_sub(intended));
        s.requests = s.requests.saturating_add(1);
        s.bytes_received = s.bytes_received.saturating_add(bytes);
        count_status(&mut s.status, &mut s.errors, status);
    }

    /// Counts one failed request.
    #[inline]
    pub fn record_error(&mut self, kind: ErrorKind) {
        let e = &mut self.cur.errors[kind.index()];
        *e = e.saturating_add(1);
    }

    /// Counts one request dropped: no connection free and the wait queue full.
    #[inline]
    pub fn record_dropped(&mut self) {
        self.cur.dropped = self.cur.dropped.saturating_add(1);
    }

    /// Counts one request written to a connection, `bytes` long.
    #[inline]
    pub fn record_sent(&mut self, bytes: u64) {
        self.cur.sent = self.cur.sent.saturating_add(1);
        self.cur.bytes_sent = self.cur.bytes_sent.saturating_add(bytes);
    }

    /// Records one TCP connect time in ns.
    pub fn record_connect(&mut self, nanos: u64) {
        self.cur.connect.record_ns(nanos);
    }

    /// Records one completed TLS handshake (ns) and whether it resumed a session.
    pub fn record_tls_handshake(&mut self, nanos: u64, resumed: bool) {
        self.cur.tls_handshake.record_ns(nanos);
        self.cur.tls_resumed = self.cur.tls_resumed.saturating_add(u64::from(resumed));
    }

    /// Read-only view of the interval recorded so far.
    pub fn current(&self) -> &Snapshot {
        &self.cur
    }

    /// Moves this interval's data out as a [`Snapshot`] (interval fields unset) and starts a
    /// fresh interval. Allocates new histograms; call about once per second, off the hot path.
    pub fn take_snapshot(&mut self) -> Snapshot {
        std::mem::replace(&mut self.cur, Snapshot::with_endpoints(self.endpoints))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn error_kind_names_and_indices() {
        let names: Vec<_> = ErrorKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(
            names,
            ["connect", "timeout", "reset", "closed", "parse", "status", "tls"]
        );
        for (i, k) in ErrorKind::ALL.iter().enumerate() {
            assert_eq!(k.index(), i);
            assert_eq!(k.to_string(), k.as_str());
        }
    }

    #[test]
    fn response_records_all_four_histograms() {
        let mut r = Recorder::new();
        // intended 0, sent 2 ms, first byte 5 ms, done 12 ms.
        r.record_response(0, 2 * MS, 5 * MS, 12 * MS, 200, 1234);
        let s = r.take_snapshot();
        // Equal within HDR resolution (3 significant digits).
        for (h, us) in [
            (&s.response, 12_000),
            (&s.service, 10_000),
            (&s.ttfb, 3_000),
            (&s.lag, 2_000),
        ] {
            assert!(
                h.inner().equivalent(h.value_at_quantile(1.0), us),
                "{h:?} vs {us}"
            );
            assert_eq!(h.count(), 1);
        }
        assert_eq!(s.requests(), 1);
        assert_eq!(s.successful(), 1);
        assert_eq!(s.bytes_received(), 1234);
        assert_eq!(s.status_classes(), [0, 1, 0, 0, 0]);
        assert_eq!(s.errors_total(), 0);
    }

    #[test]
    fn status_errors_keep_latency_and_odd_statuses_count_as_other() {
        let mut r = Recorder::new();
        r.record_response(0, 0, MS, MS, 404, 0);
        r.record_response(0, 0, MS, MS, 503, 0);
        r.record_response(0, 0, MS, MS, 302, 0);
        r.record_response(0, 0, MS, MS, 99, 0);
        r.record_response(0, 0, MS, MS, 600, 0);
        let s = r.take_snapshot();
        assert_eq!(s.requests(), 5);
        assert_eq!(s.response.count(), 5);
        assert_eq!(
            s.errors(ErrorKind::Status),
            3,
            "404, 503 and 600 are >= 400"
        );
        assert_eq!(s.successful(), 2);
        assert_eq!(s.status_classes(), [0, 0, 1, 1, 1]);
        assert_eq!(s.status_other(), 2);
        assert_eq!(s.status_class(0), 0);
        assert_eq!(s.status_class(4), 1);
    }

    #[test]
    fn counters_and_take_resets() {
        let mut r = Recorder::new();
        r.record_sent(100);
        r.record_sent(50);
        r.record_dropped();
        r.record_error(ErrorKind::Timeout);
        r.record_error(ErrorKind::Connect);
        r.record_error(ErrorKind::Connect);
        r.record_connect(250_000);
        let s = r.take_snapshot();
        assert_eq!((s.sent(), s.bytes_sent(), s.dropped()), (2, 150, 1));
        assert_eq!(s.errors(ErrorKind::Connect), 2);
        assert_eq!(s.errors(ErrorKind::Timeout), 1);
        assert_eq!(s.errors_total(), 3);
        assert_eq!(s.connect.value_at_quantile(0.5), 250);
        assert!(!s.is_empty());
        assert!(r.current().is_empty());
        assert!(r.take_snapshot().is_empty());
    }

    #[test]
    fn out_of_order_instants_saturate_to_one_microsecond() {
        let mut r = Recorder::new();
        r.record_response(10 * MS, 5 * MS, 0, 0, 200, 0);
        let s = r.take_snapshot();
        for h in [&s.response, &s.service, &s.ttfb, &s.lag] {
            assert_eq!(h.value_at_quantile(1.0), 1);
        }
    }

    #[test]
    fn tls_handshakes_merge_and_count_resumptions() {
        let mut a = Recorder::new();
        a.record_tls_handshake(2 * MS, false);
        let mut b = Recorder::new();
        b.record_tls_handshake(MS, true);
        b.record_tls_handshake(MS, true);
        let s = Snapshot::merged([&a.take_snapshot(), &b.take_snapshot()]);
        assert_eq!(s.tls_handshake.count(), 3);
        assert_eq!(s.tls_resumed(), 2);
        assert!(!s.is_empty());
        // Snapshots from a peer without the TLS fields still decode (cluster wire format).
        let mut v = serde_json::to_value(Snapshot::empty()).unwrap();
        v.as_object_mut().unwrap().remove("tls_handshake");
        v.as_object_mut().unwrap().remove("tls_resumed");
        let back: Snapshot = serde_json::from_value(v).unwrap();
        assert_eq!(back.tls_handshake.count(), 0);
    }

    #[test]
    fn merge_combines_intervals() {
        let a = Snapshot::empty().with_interval(2_000, 3_000);
        let b = Snapshot::empty().with_interval(1_000, 2_000);
        let mut m = Snapshot::empty();
        m.merge(&a);
        assert_eq!((m.interval_start_ns, m.interval_end_ns), (2_000, 3_000));
        m.merge(&b);
        assert_eq!((m.interval_start_ns, m.interval_end_ns), (1_000, 3_000));
        m.merge(&Snapshot::empty());
        assert_eq!((m.interval_start_ns, m.interval_end_ns), (1_000, 3_000));
        assert_eq!(m.interval_secs(), Some(2e-6));
        assert_eq!(Snapshot::empty().interval_secs(), None);
    }

    /// One sample as the engine would report it.
    #[derive(Debug, Clone)]
    enum Event {
        Response {
            intended: u64,
            sent: u64,
            first_byte: u64,
            done: u64,
            status: u16,
            bytes: u64,
        },
        Error(usize),
        Dropped,
        Sent(u64),
        Connect(u64),
    }

    fn apply(r: &mut Recorder, e: &Event) {
        match *e {
            Event::Response {
                intended,
                sent,
                first_byte,
                done,
                status,
                bytes,
            } => r.record_response(intended, sent, first_byte, done, status, bytes),
            Event::Error(i) => r.record_error(ErrorKind::ALL[i]),
            Event::Dropped => r.record_dropped(),
            Event::Sent(b) => r.record_sent(b),
            Event::Connect(n) => r.record_connect(n),
        }
    }

    /// Realistic-ish instants (mostly ordered, spread over 1 ns .. ~2 h) plus arbitrary ones.
    fn event() -> impl Strategy<Value = Event> {
        let nanos = prop_oneof![
            0u64..10_000,
            0u64..10_000_000_000,
            0u64..7_200_000_000_000_000
        ];
        let ordered = (
            nanos.clone(),
            nanos.clone(),
            nanos.clone(),
            nanos.clone(),
            any::<u16>(),
            0u64..1 << 20,
        )
            .prop_map(|(i, a, b, c, status, bytes)| Event::Response {
                intended: i,
                sent: i.saturating_add(a),
                first_byte: i.saturating_add(a).saturating_add(b),
                done: i.saturating_add(a).saturating_add(b).saturating_add(c),
                status,
                bytes,
            });
        let arbitrary = any::<(u64, u64, u64, u64, u16, u64)>().prop_map(
            |(intended, sent, first_byte, done, status, bytes)| Event::Response {
                intended,
                sent,
                first_byte,
                done,
                status,
                bytes,
            },
        );
        prop_oneof![
            6 => ordered,
            1 => arbitrary,
            1 => (0..ErrorKind::COUNT).prop_map(Event::Error),
            1 => Just(Event::Dropped),
            1 => any::<u64>().prop_map(Event::Sent),
            1 => nanos.prop_map(Event::Connect),
        ]
    }

    const QUANTILES: [f64; 12] = [
        0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999, 0.9999, 0.99999, 0.999999, 1.0,
    ];

    fn assert_same(a: &Snapshot, b: &Snapshot) {
        assert_eq!(a, b);
        for (x, y) in [
            (&a.response, &b.response),
            (&a.service, &b.service),
            (&a.ttfb, &b.ttfb),
            (&a.lag, &b.lag),
            (&a.connect, &b.connect),
        ] {
            assert_eq!(x.count(), y.count());
            for q in QUANTILES {
                assert_eq!(x.value_at_quantile(q), y.value_at_quantile(q), "q={q}");
            }
            assert_eq!(x.max(), y.max());
            assert_eq!(x.min(), y.min());
        }
        assert_eq!(a.requests(), b.requests());
        assert_eq!(a.sent(), b.sent());
        assert_eq!(a.dropped(), b.dropped());
        assert_eq!(a.bytes_received(), b.bytes_received());
        assert_eq!(a.bytes_sent(), b.bytes_sent());
        assert_eq!(a.status_classes(), b.status_classes());
        for k in ErrorKind::ALL {
            assert_eq!(a.errors(k), b.errors(k));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// Splitting samples across any number of recorders and intervals, then merging in any
        /// grouping, equals recording everything into one recorder.
        #[test]
        fn merge_is_exact(
            events in prop::collection::vec((event(), 0usize..4, prop::bool::weighted(0.05)), 0..300),
        ) {
            let mut single = Recorder::new();
            let mut threads: Vec<Recorder> = (0..4).map(|_| Recorder::new()).collect();
            let mut intervals = Vec::new();
            for (e, thread, cut) in &events {
                apply(&mut single, e);
                apply(&mut threads[*thread], e);
                if *cut {
                    intervals.push(threads[*thread].take_snapshot());
                }
            }
            intervals.extend(threads.iter_mut().map(Recorder::take_snapshot));
            // Merge pairwise from the back so grouping differs from the recording order.
            let mut merged = Snapshot::empty();
            while let Some(s) = intervals.pop() {
                let mut pair = intervals.pop().unwrap_or_default();
                pair.merge(&s);
                merged.merge(&pair);
            }
            assert_same(&merged, &single.take_snapshot());
        }

        /// The serde (JSON) form round-trips exactly.
        #[test]
        fn serde_round_trip(events in prop::collection::vec(event(), 0..200), start in any::<u64>(), end in any::<u64>()) {
            let mut r = Recorder::new();
            for e in &events {
                apply(&mut r, e);
            }
            let s = r.take_snapshot().with_interval(start, end);
            let json = serde_json::to_string(&s).unwrap();
            let back: Snapshot = serde_json::from_str(&json).unwrap();
            assert_same(&back, &s);
            prop_assert_eq!((back.interval_start_ns, back.interval_end_ns), (start, end));
        }

        /// No input makes recording panic.
        #[test]
        fn record_never_panics(args in any::<(u64, u64, u64, u64, u16, u64)>(), kind in 0..ErrorKind::COUNT, n in any::<u64>()) {
            let mut r = Recorder::new();
            let (i, s, f, d, st, b) = args;
            r.record_response(i, s, f, d, st, b);
            r.record_response(i, s, f, d, st, u64::MAX);
            r.record_error(ErrorKind::ALL[kind]);
            r.record_sent(n);
            r.record_sent(u64::MAX);
            r.record_dropped();
            r.record_connect(n);
            let snap = r.take_snapshot();
            prop_assert_eq!(snap.requests(), 2);
            prop_assert_eq!(snap.bytes_sent(), u64::MAX);
        }
    }
}
