//! Scenarios: a weighted set of requests (from a TOML file, [`file`]), compiled before the
//! run, and the per-thread state that picks and renders one per send ([`Workload`]).
//!
//! A request whose path, headers and body hold no template is encoded once, exactly as a
//! plain command-line request is; a templated one is rendered into its connection's own
//! buffer (which must stay untouched until the send completes) with no allocation once the
//! buffer has reached the template's bound. Requests are picked by weight with a seeded
//! SmallRng (xoshiro256++): the same `--seed` gives the same sequence of picks and values on
//! each thread.

pub mod file;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::http::template::{fmt_u64, uuid_v4, Ctx, Template};

pub use file::{load, ScenarioError};

/// How a request's bytes are produced.
#[derive(Clone, Debug)]
pub enum Wire {
    /// Encoded once (no template anywhere).
    Static(Vec<u8>),
    /// Rendered per send: `head` ends just before `Content-Length`; the body is rendered
    /// first so its length is known.
    Dynamic { head: Template, body: Template },
}

/// One compiled request of a scenario.
#[derive(Clone, Debug)]
pub struct Request {
    /// Index into [`Scenario::names`]: requests sharing a name share statistics.
    pub endpoint: u16,
    pub method: String,
    pub weight: u64,
    pub head_request: bool,
    pub wire: Wire,
}

impl Request {
    /// Upper bound of one rendering's length.
    fn max_len(&self) -> usize {
        match &self.wire {
            Wire::Static(b) => b.len(),
            Wire::Dynamic { head, body } => head.max_len() + body.max_len() + 40,
        }
    }
}

/// Which CSV row a request reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CsvPick {
    /// Each user (connection) keeps one row: user `u` reads row `u mod rows`.
    User,
    /// Rows in turn, per thread.
    Sequential,
    /// A random row per request.
    Random,
}

/// A CSV file's data, loaded before the run.
#[derive(Clone, Debug)]
pub struct Csv {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Box<str>>>,
    pub pick: CsvPick,
}

/// A compiled scenario: requests with weights, and the file's load shape and thresholds
/// (which the command line overrides).
#[derive(Clone, Debug, Default)]
pub struct Scenario {
    /// Distinct request names, in file order (the report's rows).
    pub names: Vec<String>,
    pub requests: Vec<Request>,
    /// Running sums of the weights, for the pick.
    cumulative: Vec<u64>,
    pub csv: Option<Csv>,
    /// Base URL from the file (`target = ...`), when the command line gives none.
    pub target: Option<String>,
    /// `[load]` of the file, as command-line style strings.
    pub rate: Option<f64>,
    pub stages: Vec<String>,
    pub thresholds: Vec<String>,
}

impl Scenario {
    /// Finishes a scenario built from `requests`; weights must not all be 0 (checked by the
    /// loader).
    pub fn new(names: Vec<String>, requests: Vec<Request>) -> Scenario {
        let mut sum = 0u64;
        let cumulative = requests
            .iter()
            .map(|r| {
                sum = sum.saturating_add(r.weight);
                sum
            })
            .collect();
        Scenario {
            names,
            requests,
            cumulative,
            ..Scenario::default()
        }
    }

    fn total_weight(&self) -> u64 {
        self.cumulative.last().copied().unwrap_or(0)
    }

    /// Index of the request a uniform draw `x` in `0..total_weight` picks.
    #[inline]
    fn pick(&self, x: u64) -> usize {
        self.cumulative
            .partition_point(|&c| c <= x)
            .min(self.requests.len() - 1)
    }
}

/// Per-thread state: RNG, per-connection buffers and user identities.
pub struct Workload<'a> {
    sc: &'a Scenario,
    rng: SmallRng,
    /// Per connection: the rendered request in flight (only for dynamic requests).
    bufs: Vec<Vec<u8>>,
    /// Per connection: the request in flight.
    current: Vec<u16>,
    /// Per connection (= simulated user): its UUIDv4, fixed for the run.
    users: Vec<[u8; 36]>,
    /// Per connection: its user number over all threads (for CSV rows).
    user_no: Vec<u64>,
    body: Vec<u8>,
    seq: u64,
    seq_step: u64,
    csv_next: usize,
    utc_offset_s: i64,
}

impl<'a> Workload<'a> {
    /// State for thread `thread` of `threads` with `conns` connections; buffers are sized to
    /// the largest rendering so the hot path does not allocate.
    pub fn new(sc: &'a Scenario, seed: u64, thread: usize, threads: usize, conns: usize) -> Self {
        let mut rng =
            SmallRng::seed_from_u64(seed ^ (thread as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let max = sc.requests.iter().map(Request::max_len).max().unwrap_or(0);
        let dynamic = sc
            .requests
            .iter()
            .any(|r| matches!(r.wire, Wire::Dynamic { .. }));
        let users = (0..conns)
            .map(|_| {
                let mut id = [0u8; 36];
                uuid_v4(&mut rng, &mut id);
                id
            })
            .collect();
        let body_max = sc
            .requests
            .iter()
            .map(|r| match &r.wire {
                Wire::Dynamic { body, .. } => body.max_len(),
                Wire::Static(_) => 0,
            })
            .max()
            .unwrap_or(0);
        Workload {
            sc,
            rng,
            bufs: (0..conns)
                .map(|_| Vec::with_capacity(if dynamic { max } else { 0 }))
                .collect(),
            current: vec![0; conns],
            users,
            user_no: (0..conns as u64)
                .map(|i| i * threads as u64 + thread as u64)
                .collect(),
            body: Vec::with_capacity(body_max),
            seq: thread as u64,
            seq_step: threads.max(1) as u64,
            csv_next: 0,
            utc_offset_s: 0,
        }
    }

    /// The local UTC offset for `{{timestamp}}`; call at start and about once a second.
    pub fn refresh_clock(&mut self, unix_s: i64) {
        self.utc_offset_s = crate::http::template::local_utc_offset(unix_s);
    }

    /// Numbers this thread's users from `first` on (a cluster worker's first user), so CSV
    /// rows picked per user do not repeat across workers.
    pub fn numbered_from(mut self, first: u64) -> Self {
        for n in &mut self.user_no {
            *n += first;
        }
        self
    }

    /// The user id of connection `conn` (its UUIDv4 text).
    pub fn user_id(&self, conn: u32) -> &[u8; 36] {
        &self.users[conn as usize]
    }

    /// Picks the next request for connection `conn` and renders it. Returns its endpoint
    /// (statistics row) and whether it is a HEAD request; its bytes are [`Self::bytes`].
    #[inline]
    pub fn next(&mut self, conn: u32, now_unix_ns: i64) -> (u16, bool) {
        let sc = self.sc;
        let k = if sc.requests.len() == 1 {
            0
        } else {
            sc.pick(self.rng.random_range(0..sc.total_weight()))
        };
        let req = &sc.requests[k];
        let c = conn as usize;
        self.current[c] = k as u16;
        if let Wire::Dynamic { head, body } = &req.wire {
            let csv_row: &[Box<str>] = match &sc.csv {
                None => &[],
                Some(csv) => {
                    let n = csv.rows.len();
                    let row = match csv.pick {
                        CsvPick::User => (self.user_no[c] % n as u64) as usize,
                        CsvPick::Sequential => {
                            self.csv_next = (self.csv_next + 1) % n;
                            self.csv_next
                        }
                        CsvPick::Random => self.rng.random_range(0..n),
                    };
                    &csv.rows[row]
                }
            };
            let mut cx = Ctx {
                user_id: &self.users[c],
                now_unix_ns,
                utc_offset_s: self.utc_offset_s,
                seq: self.seq,
                rng: &mut self.rng,
                csv_row,
            };
            self.seq = self.seq.wrapping_add(self.seq_step);
            let out = &mut self.bufs[c];
            out.clear();
            self.body.clear();
            body.render(&mut cx, &mut self.body);
            head.render(&mut cx, out);
            out.extend_from_slice(b"Content-Length: ");
            let mut digits = [0u8; 20];
            let n = fmt_u64(self.body.len() as u64, &mut digits);
            out.extend_from_slice(&digits[digits.len() - n..]);
            out.extend_from_slice(b"\r\n\r\n");
            out.extend_from_slice(&self.body);
        }
        (req.endpoint, req.head_request)
    }

    /// The statistics row of the request in flight on `conn`.
    #[inline]
    pub fn endpoint(&self, conn: u32) -> u16 {
        self.sc.requests[self.current[conn as usize] as usize].endpoint
    }

    /// The bytes of the request in flight on `conn` (stable until the next [`Self::next`]
    /// for that connection).
    #[inline]
    pub fn bytes(&self, conn: u32) -> &[u8] {
        match &self.sc.requests[self.current[conn as usize] as usize].wire {
            Wire::Static(b) => b,
            Wire::Dynamic { .. } => &self.bufs[conn as usize],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(endpoint: u16, weight: u64, bytes: &[u8]) -> Request {
        Request {
            endpoint,
            method: "GET".into(),
            weight,
            head_request: false,
            wire: Wire::Static(bytes.to_vec()),
        }
    }

    #[test]
    fn picks_follow_the_weights_and_the_seed() {
        let sc = Scenario::new(
            vec!["a".into(), "b".into(), "c".into()],
            vec![req(0, 1, b"A"), req(1, 0, b"B"), req(2, 9, b"C")],
        );
        let mut w = Workload::new(&sc, 7, 0, 1, 1);
        let mut counts = [0u32; 3];
        let mut seq = Vec::new();
        for _ in 0..10_000 {
            let (ep, _) = w.next(0, 0);
            counts[ep as usize] += 1;
            seq.push(ep);
            assert_eq!(w.bytes(0), [b"A", b"B", b"C"][ep as usize]);
        }
        assert_eq!(counts[1], 0, "weight 0 is never picked");
        // 1000 expected; 5 standard deviations is about 150.
        assert!((850..1150).contains(&counts[0]), "{counts:?}");
        let mut again = Workload::new(&sc, 7, 0, 1, 1);
        let seq2: Vec<u16> = (0..10_000).map(|_| again.next(0, 0).0).collect();
        assert_eq!(seq, seq2, "same seed, same picks");
    }

    #[test]
    fn users_are_distinct_v4_ids() {
        let sc = Scenario::new(vec!["a".into()], vec![req(0, 1, b"A")]);
        let w = Workload::new(&sc, 1, 0, 1, 50);
        let ids: std::collections::HashSet<_> = (0..50).map(|i| *w.user_id(i)).collect();
        assert_eq!(ids.len(), 50);
        for id in ids {
            assert_eq!(id[14], b'4');
        }
    }
}
