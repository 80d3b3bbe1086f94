//! The load plan: one value that describes every load shape the engine runs.
//!
//! The engine never asks "which mode am I in" per request; it asks the plan two questions:
//! when is global request `i` due ([`Plan::due_ns`], open model), and may one more request
//! start now ([`Plan::quota`], closed model). Times are nanoseconds from the run's start
//! instant, so a schedule computed as `start + i / rate` never drifts, however late the
//! generator runs.

use std::time::Duration;

/// How requests are started.
#[derive(Clone, Debug, PartialEq)]
pub enum Load {
    /// Open model: request `i` is due at `i / rate` seconds, whether or not earlier ones
    /// finished (wrk2, k6 constant-arrival-rate).
    Open { rate: f64 },
    /// Closed model: every connection sends its next request as soon as the previous
    /// response arrived (wrk): maximum throughput.
    Closed,
    /// Open model whose rate follows stages (linear ramps, steps, spikes), from the run's
    /// start (warm-up included).
    Ramp(Ramp),
    /// Closed model of `users` simulated users (Locust): each loops send, wait for the
    /// response, think, send; user `k` of the run starts at `k / spawn_rate` seconds (all
    /// at once without a spawn rate). One user is one connection slot.
    Users(Users),
}

/// The users model's parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct Users {
    pub users: usize,
    /// Users started per second; `None` starts them all at once.
    pub spawn_rate: Option<f64>,
    pub think: Think,
}

/// Think time between a user's response and its next request: fixed (`min == max`) or
/// uniform in `min..=max`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Think {
    pub min: Duration,
    pub max: Duration,
}

impl Think {
    /// Parses `1s` (fixed) or `0.5s..1.5s` (uniform in the range).
    pub fn parse(s: &str) -> Result<Think, String> {
        let bad =
            |why: &str| format!("invalid think time \"{s}\" ({why}; use e.g. 1s or 0.5s..1.5s)");
        let dur = |d: &str| crate::cli::parse_duration(d).map_err(|_| bad("bad duration"));
        let (min, max) = match s.split_once("..") {
            Some((a, b)) => (dur(a)?, dur(b)?),
            None => (dur(s)?, dur(s)?),
        };
        if min > max {
            return Err(bad("the range ends before it starts"));
        }
        Ok(Think { min, max })
    }

    /// One think time in ns from a uniform draw `x` in `0..=u64::MAX`.
    #[inline]
    pub fn sample_ns(&self, x: u64) -> u64 {
        let lo = self.min.as_nanos() as u64;
        let span = (self.max.as_nanos() as u64).saturating_sub(lo);
        // Multiply-shift maps x onto 0..=span without a division or a bias worth measuring.
        lo + ((u128::from(x) * (u128::from(span) + 1)) >> 64) as u64
    }
}

/// Connection slots of thread `t` of `threads` when `total` are split evenly (the first
/// threads take the remainder).
pub fn slots_of_thread(total: usize, t: usize, threads: usize) -> usize {
    let threads = threads.max(1);
    total / threads + usize::from(t < total % threads)
}

impl Users {
    /// The run-wide number of the user in slot `slot` of thread `t` of `threads`: slots
    /// interleave across threads (as CSV rows do), so with [`slots_of_thread`] the users of
    /// all threads are exactly `0..users`.
    #[inline]
    pub fn user_of(slot: usize, t: usize, threads: usize) -> u64 {
        (slot * threads.max(1) + t) as u64
    }

    /// Offset at which user `k` (numbered over the whole run) starts.
    #[inline]
    pub fn spawn_ns(&self, k: u64) -> u64 {
        match self.spawn_rate {
            Some(r) if r > 0.0 => (k as f64 * 1e9 / r) as u64,
            _ => 0,
        }
    }
}

/// One stage: over `duration`, the rate moves linearly from the previous stage's target
/// (0 before the first) to `target` requests/s. A zero duration is a step.
#[derive(Clone, Debug, PartialEq)]
pub struct Stage {
    pub duration: Duration,
    pub target: f64,
}

impl Stage {
    /// Parses `DURATION:RATE`, e.g. `30s:1000`, `0s:5000` (a step).
    pub fn parse(s: &str) -> Result<Stage, String> {
        let bad =
            |why: &str| format!("invalid stage \"{s}\" ({why}; use DURATION:RATE, e.g. 30s:1000)");
        let (d, r) = s.rsplit_once(':').ok_or_else(|| bad("no ':'"))?;
        let duration = crate::cli::parse_duration(d).map_err(|_| bad("bad duration"))?;
        let target: f64 = r.trim().parse().map_err(|_| bad("bad rate"))?;
        if !(target.is_finite() && target >= 0.0) {
            return Err(bad("the rate must be a number >= 0"));
        }
        Ok(Stage { duration, target })
    }
}

/// A piece of the rate curve: from `start_s` for `len_s` seconds, the rate goes linearly
/// from `r0` to `r1`; `n0` requests are due before it and `n` within it.
#[derive(Clone, Debug, PartialEq)]
struct Piece {
    start_s: f64,
    len_s: f64,
    r0: f64,
    r1: f64,
    n0: f64,
    n: f64,
}

impl Piece {
    /// Requests due in the first `t` seconds of the piece: the integral of the rate.
    fn count(&self, t: f64) -> f64 {
        let t = t.clamp(0.0, self.len_s);
        let a = if self.len_s > 0.0 {
            (self.r1 - self.r0) / self.len_s
        } else {
            0.0
        };
        self.r0 * t + a * t * t / 2.0
    }

    /// Offset within the piece at which `m` requests (`0 <= m < n`) are due: the inverse of
    /// [`Self::count`]. For a ramp, `a t²/2 + r0 t = m` solved in the form that does not
    /// cancel when `a` is small: `t = 2m / (r0 + sqrt(r0² + 2am))`.
    fn time_of(&self, m: f64) -> f64 {
        let a = (self.r1 - self.r0) / self.len_s;
        let disc = (self.r0 * self.r0 + 2.0 * a * m).max(0.0);
        let denom = self.r0 + disc.sqrt();
        if denom > 0.0 {
            (2.0 * m / denom).min(self.len_s)
        } else {
            0.0
        }
    }
}

/// A rate curve made of stages, compiled for exact due times: request `i` is due when the
/// integral of the rate reaches `i`, so the rate is exact at every instant and the schedule
/// never drifts.
#[derive(Clone, Debug, PartialEq)]
pub struct Ramp {
    pieces: Vec<Piece>,
    total_s: f64,
    total_n: f64,
    peak: f64,
}

impl Ramp {
    pub fn new(stages: &[Stage]) -> Ramp {
        let mut pieces = Vec::with_capacity(stages.len());
        let (mut t, mut n, mut r, mut peak) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
        for st in stages {
            let len_s = st.duration.as_secs_f64();
            peak = peak.max(st.target);
            if len_s > 0.0 {
                let mut p = Piece {
                    start_s: t,
                    len_s,
                    r0: r,
                    r1: st.target,
                    n0: n,
                    n: 0.0,
                };
                p.n = p.count(len_s);
                n += p.n;
                t += len_s;
                pieces.push(p);
            }
            r = st.target;
        }
        Ramp {
            pieces,
            total_s: t,
            total_n: n,
            peak,
        }
    }

    /// Length of the whole curve.
    pub fn total(&self) -> Duration {
        Duration::from_secs_f64(self.total_s)
    }

    /// Highest rate of the curve.
    pub fn peak_rate(&self) -> f64 {
        self.peak
    }

    /// Requests due in the first `t_s` seconds.
    pub fn count_before(&self, t_s: f64) -> f64 {
        let k = self.pieces.partition_point(|p| p.start_s <= t_s);
        match k.checked_sub(1) {
            None => 0.0,
            Some(k) => {
                let p = &self.pieces[k];
                p.n0 + p.count(t_s - p.start_s)
            }
        }
    }

    /// This curve multiplied by a step function: from each offset (seconds, ascending) the
    /// factor in force, 0 before the first step. Pieces are split at the steps, so the
    /// scaled curve is again piecewise linear and its due times stay exact.
    pub fn scaled(&self, steps: &[(f64, f64)]) -> Ramp {
        let factor_at = |t: f64| {
            steps
                .iter()
                .take_while(|s| s.0 <= t)
                .last()
                .map_or(0.0, |s| s.1)
        };
        let mut pieces = Vec::new();
        let (mut n, mut peak) = (0.0f64, 0.0f64);
        for p in &self.pieces {
            let end = p.start_s + p.len_s;
            // Cut points inside this piece: its start, every step within it, its end.
            let mut cuts = vec![p.start_s];
            cuts.extend(
                steps
                    .iter()
                    .map(|s| s.0)
                    .filter(|&t| t > p.start_s && t < end),
            );
            cuts.push(end);
            for w in cuts.windows(2) {
                let (a, b) = (w[0], w[1]);
                let f = factor_at(a);
                let rate_at = |t: f64| p.r0 + (p.r1 - p.r0) * (t - p.start_s) / p.len_s;
                let mut q = Piece {
                    start_s: a,
                    len_s: b - a,
                    r0: f * rate_at(a),
                    r1: f * rate_at(b),
                    n0: n,
                    n: 0.0,
                };
                q.n = q.count(q.len_s);
                n += q.n;
                peak = peak.max(q.r0).max(q.r1);
                pieces.push(q);
            }
        }
        Ramp {
            pieces,
            total_s: self.total_s,
            total_n: n,
            peak,
        }
    }

    /// When request `i` is due, in ns from the start; `None` past the curve's end.
    #[inline]
    pub fn due_ns(&self, i: u64) -> Option<u64> {
        let x = i as f64;
        if x >= self.total_n {
            return None;
        }
        let k = self.pieces.partition_point(|p| p.n0 <= x).checked_sub(1)?;
        let p = &self.pieces[k];
        Some(((p.start_s + p.time_of(x - p.n0)) * 1e9) as u64)
    }
}

/// One run's load: shape, warm-up, and when it ends.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub load: Load,
    /// Requests due before this offset are sent but not recorded.
    pub warmup: Duration,
    /// Length of the measured window (after warm-up). `None` when only `requests` bounds it.
    pub duration: Option<Duration>,
    /// Number of measured requests. `None` when only `duration` bounds the run.
    pub requests: Option<u64>,
}

impl Plan {
    /// The target rate in requests per second, for the open model.
    pub fn rate(&self) -> Option<f64> {
        match &self.load {
            Load::Open { rate } => Some(*rate),
            Load::Closed | Load::Users(_) => None,
            // The average over the measured window: what the achieved rate is judged against.
            Load::Ramp(r) => {
                let w = self.warmup.as_secs_f64();
                let end = self.end_ns().map_or(r.total_s, |e| e as f64 / 1e9);
                Some(if end > w {
                    (r.count_before(end) - r.count_before(w)) / (end - w)
                } else {
                    r.peak_rate()
                })
            }
        }
    }

    /// The highest rate of an open model (to size connections and queues).
    pub fn peak_rate(&self) -> Option<f64> {
        match &self.load {
            Load::Open { rate } => Some(*rate),
            Load::Closed | Load::Users(_) => None,
            Load::Ramp(r) => Some(r.peak_rate()),
        }
    }

    /// Whether requests leave on a schedule (open model), rather than on completions.
    pub fn is_open(&self) -> bool {
        !matches!(self.load, Load::Closed | Load::Users(_))
    }

    /// The users model's parameters, if this is one.
    pub fn users(&self) -> Option<&Users> {
        match &self.load {
            Load::Users(u) => Some(u),
            _ => None,
        }
    }

    /// Offset of the start of the measured window.
    pub fn warmup_ns(&self) -> u64 {
        self.warmup.as_nanos() as u64
    }

    /// Offset after which no request is started, when the run is time-bounded.
    pub fn end_ns(&self) -> Option<u64> {
        self.duration
            .map(|d| self.warmup_ns().saturating_add(d.as_nanos() as u64))
    }

    /// Open model: intended send time of global request `i`, or `None` once the schedule
    /// is over (past the end time or past the request count). Closed model: always `None`.
    #[inline]
    pub fn due_ns(&self, i: u64) -> Option<u64> {
        // f64 holds i exactly up to 2^53: far past any run (2^53 / 1e6 req/s = 285 years).
        let (due, warm) = match &self.load {
            Load::Open { rate } => (
                (i as f64 * 1e9 / rate) as u64,
                self.warmup.as_secs_f64() * rate,
            ),
            Load::Ramp(r) => (r.due_ns(i)?, r.count_before(self.warmup.as_secs_f64())),
            Load::Closed | Load::Users(_) => return None,
        };
        if let Some(n) = self.requests {
            if i >= (warm.ceil() as u64).saturating_add(n) {
                return None;
            }
        }
        match self.end_ns() {
            Some(end) if due >= end => None,
            _ => Some(due),
        }
    }

    /// This plan with its rate multiplied by a step function (a cluster worker's share of the
    /// total): from each offset the factor in force, 0 before the first step. Steps must
    /// ascend. A plan scaled with one more, later step agrees with the previous one on every
    /// request due before that step, so a running engine can switch to it (rebalancing).
    /// Closed-model plans (users included) are returned unchanged.
    pub fn scaled(&self, steps: &[(Duration, f64)]) -> Plan {
        let steps: Vec<(f64, f64)> = steps
            .iter()
            .map(|&(at, f)| {
                (
                    at.as_secs_f64(),
                    if f.is_finite() { f.max(0.0) } else { 0.0 },
                )
            })
            .collect();
        let ramp = match &self.load {
            Load::Closed | Load::Users(_) => return self.clone(),
            Load::Ramp(r) => r.clone(),
            // A constant rate is one flat piece to the end of the run (or far beyond it
            // when only a request count bounds the run).
            Load::Open { rate } => {
                let len = self.end_ns().map_or(1e7, |e| e as f64 / 1e9);
                Ramp::new(&[
                    Stage {
                        duration: Duration::ZERO,
                        target: *rate,
                    },
                    Stage {
                        duration: Duration::from_secs_f64(len),
                        target: *rate,
                    },
                ])
            }
        };
        Plan {
            load: Load::Ramp(ramp.scaled(&steps)),
            ..self.clone()
        }
    }

    /// This plan with the users model's count and spawn rate replaced (a cluster worker's
    /// integer share of the users, spawned at its share of the spawn rate); think time,
    /// warm-up and length stay. Other load shapes are returned unchanged.
    pub fn with_users(&self, users: usize, spawn_rate: Option<f64>) -> Plan {
        match &self.load {
            Load::Users(u) => Plan {
                load: Load::Users(Users {
                    users,
                    spawn_rate,
                    think: u.think,
                }),
                ..self.clone()
            },
            _ => self.clone(),
        }
    }

    /// Closed model: how many measured requests thread `t` of `threads` may start
    /// (`u64::MAX` when unbounded). Splits `requests` evenly, the remainder to the first.
    pub fn quota(&self, t: usize, threads: usize) -> u64 {
        match self.requests {
            None => u64::MAX,
            Some(n) => {
                let threads = threads.max(1) as u64;
                n / threads + u64::from((t as u64) < n % threads)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn open(rate: f64, secs: u64) -> Plan {
        Plan {
            load: Load::Open { rate },
            warmup: Duration::ZERO,
            duration: Some(Duration::from_secs(secs)),
            requests: None,
        }
    }

    #[test]
    fn constant_rate_is_exact_and_ends() {
        let p = open(1000.0, 10);
        assert_eq!(p.due_ns(0), Some(0));
        assert_eq!(p.due_ns(1), Some(1_000_000));
        assert_eq!(p.due_ns(9_999), Some(9_999_000_000));
        assert_eq!(p.due_ns(10_000), None);
    }

    #[test]
    fn request_count_bounds_open_schedule_after_warmup() {
        let p = Plan {
            load: Load::Open { rate: 100.0 },
            warmup: Duration::from_secs(1),
            duration: None,
            requests: Some(50),
        };
        // 100 warm-up requests plus 50 measured ones.
        assert!(p.due_ns(149).is_some());
        assert_eq!(p.due_ns(150), None);
    }

    #[test]
    fn closed_quota_splits_exactly() {
        let p = Plan {
            load: Load::Closed,
            warmup: Duration::ZERO,
            duration: None,
            requests: Some(10),
        };
        let q: Vec<u64> = (0..3).map(|t| p.quota(t, 3)).collect();
        assert_eq!(q, vec![4, 3, 3]);
        assert_eq!(open(1.0, 1).quota(0, 2), u64::MAX);
    }

    fn ramp(stages: &[(u64, f64)]) -> Plan {
        let stages: Vec<Stage> = stages
            .iter()
            .map(|&(ms, target)| Stage {
                duration: Duration::from_millis(ms),
                target,
            })
            .collect();
        let r = Ramp::new(&stages);
        Plan {
            duration: Some(r.total()),
            load: Load::Ramp(r),
            warmup: Duration::ZERO,
            requests: None,
        }
    }

    #[test]
    fn stages_parse_and_name_bad_values() {
        assert_eq!(
            Stage::parse("30s:1000"),
            Ok(Stage {
                duration: Duration::from_secs(30),
                target: 1000.0
            })
        );
        assert_eq!(Stage::parse("0s:5").unwrap().duration, Duration::ZERO);
        for bad in ["30s", "x:1", "1s:-1", "1s:abc", "1s:inf"] {
            assert!(Stage::parse(bad).unwrap_err().contains(bad), "{bad}");
        }
    }

    #[test]
    fn ramp_steps_and_totals() {
        // 0 -> 1000/s over 2 s (1000 requests), hold 1000/s for 1 s (1000), step to 3000/s
        // for 1 s (3000).
        let p = ramp(&[(2000, 1000.0), (1000, 1000.0), (0, 3000.0), (1000, 3000.0)]);
        let Load::Ramp(r) = &p.load else {
            unreachable!()
        };
        assert_eq!(r.count_before(4.0), 5000.0);
        assert_eq!(p.due_ns(0), Some(0));
        // Request 500 of a linear ramp to 1000/s over 2 s: 250 t² = 500 -> t = sqrt(2).
        let t = p.due_ns(500).unwrap() as f64 / 1e9;
        assert!((t - 2f64.sqrt()).abs() < 1e-9, "{t}");
        assert_eq!(p.due_ns(1500), Some(2_500_000_000));
        assert_eq!(p.due_ns(2000), Some(3_000_000_000));
        assert_eq!(p.due_ns(2003), Some(3_001_000_000));
        assert!(p.due_ns(4999).is_some());
        assert_eq!(p.due_ns(5000), None);
        // Average over the run: 5000 requests in 4 s.
        assert!((p.rate().unwrap() - 1250.0).abs() < 1e-9);
        assert_eq!(p.peak_rate(), Some(3000.0));
        // A pause at rate 0 sends nothing and the schedule resumes after it.
        let p = ramp(&[
            (0, 100.0),
            (1000, 100.0),
            (0, 0.0),
            (1000, 0.0),
            (0, 100.0),
            (1000, 100.0),
        ]);
        assert_eq!(p.due_ns(99), Some(990_000_000));
        assert_eq!(p.due_ns(100), Some(2_000_000_000));
    }

    #[test]
    fn scaled_schedule_follows_the_share_steps() {
        let base = open(1000.0, 10);
        let s = |secs: f64| Duration::from_secs_f64(secs);
        // A quarter of 1000 req/s for 2 s (500 requests), then half.
        let p = base.scaled(&[(s(0.0), 0.25), (s(2.0), 0.5)]);
        let near = |got: Option<u64>, want: u64| got.is_some_and(|g| g.abs_diff(want) <= 1);
        assert_eq!(p.due_ns(0), Some(0));
        assert!(near(p.due_ns(1), 4_000_000), "{:?}", p.due_ns(1));
        assert!(near(p.due_ns(499), 1_996_000_000));
        assert!(near(p.due_ns(500), 2_000_000_000));
        assert!(near(p.due_ns(501), 2_002_000_000));
        // 500 + 8 s × 500 = 4500 requests in the 10 s run.
        assert!(p.due_ns(4_499).is_some());
        assert_eq!(p.due_ns(4_500), None);
        // Share 0 from 1 s on: nothing after the first 250 requests.
        let q = base.scaled(&[(s(0.0), 0.25), (s(1.0), 0.0)]);
        assert!(q.due_ns(249).is_some());
        assert_eq!(q.due_ns(250), None);
        // Joining late: nothing due before the first step.
        let r = base.scaled(&[(s(3.0), 1.0)]);
        assert!(near(r.due_ns(0), 3_000_000_000), "{:?}", r.due_ns(0));
        // A ramp scaled by one half is the half ramp.
        let ramp = Plan {
            load: Load::Ramp(Ramp::new(&[Stage {
                duration: Duration::from_secs(10),
                target: 2000.0,
            }])),
            warmup: Duration::ZERO,
            duration: Some(Duration::from_secs(10)),
            requests: None,
        };
        let half = ramp.scaled(&[(s(0.0), 0.5)]);
        let Load::Ramp(h) = &half.load else {
            panic!("a ramp")
        };
        assert!((h.count_before(10.0) - 5_000.0).abs() < 1e-6);
        let closed = Plan {
            load: Load::Closed,
            ..ramp.clone()
        };
        assert_eq!(closed.scaled(&[(s(0.0), 0.5)]), closed);
    }

    #[test]
    fn think_parses_fixed_and_ranges_and_names_bad_values() {
        let ms = Duration::from_millis;
        assert_eq!(
            Think::parse("1s"),
            Ok(Think {
                min: ms(1000),
                max: ms(1000)
            })
        );
        assert_eq!(
            Think::parse("0.5s..1.5s"),
            Ok(Think {
                min: ms(500),
                max: ms(1500)
            })
        );
        for bad in ["2s..1s", "x", "1s..", "..1s", "1s..2x"] {
            let e = Think::parse(bad).unwrap_err();
            assert!(e.contains(&format!("\"{bad}\"")), "{e}");
        }
        let fixed = Think::parse("100ms").unwrap();
        assert_eq!(fixed.sample_ns(0), 100_000_000);
        assert_eq!(fixed.sample_ns(u64::MAX), 100_000_000);
    }

    #[test]
    fn users_spawn_at_k_over_rate_and_are_closed() {
        let mut u = Users {
            users: 10,
            spawn_rate: Some(4.0),
            think: Think::default(),
        };
        assert_eq!(u.spawn_ns(0), 0);
        assert_eq!(u.spawn_ns(1), 250_000_000);
        assert_eq!(u.spawn_ns(9), 2_250_000_000);
        u.spawn_rate = None;
        assert_eq!(u.spawn_ns(9), 0);
        let p = Plan {
            load: Load::Users(u),
            warmup: Duration::ZERO,
            duration: Some(Duration::from_secs(3)),
            requests: None,
        };
        assert!(!p.is_open());
        assert_eq!((p.rate(), p.peak_rate(), p.due_ns(0)), (None, None, None));
        assert_eq!(p.scaled(&[(Duration::ZERO, 0.5)]), p);
        assert_eq!(p.users().map(|u| u.users), Some(10));
        let mine = p.with_users(3, Some(1.2));
        let u = mine.users().unwrap();
        assert_eq!(
            (u.users, u.spawn_rate, mine.duration),
            (3, Some(1.2), p.duration)
        );
        assert_eq!(u.think, p.users().unwrap().think);
        let rate = open(10.0, 1);
        assert_eq!(rate.with_users(3, None), rate);
    }

    proptest! {
        /// Think times stay inside their range, and its ends are reached.
        #[test]
        fn think_samples_stay_in_range(a in 0u64..10_000_000_000, len in 0u64..10_000_000_000, x: u64) {
            let t = Think { min: Duration::from_nanos(a), max: Duration::from_nanos(a + len) };
            let v = t.sample_ns(x);
            prop_assert!(v >= a && v <= a + len, "{} not in {}..={}", v, a, a + len);
            prop_assert_eq!(t.sample_ns(0), a);
            prop_assert_eq!(t.sample_ns(u64::MAX), a + len);
        }

        /// The threads' users are exactly users 0..N (none twice, none missing), and spawn
        /// times follow k / rate: user k starts within 1 ns of it, never before user k-1.
        #[test]
        fn users_cover_the_run_and_spawn_in_order(n in 1usize..5_000, threads in 1usize..64, rate in 0.1f64..10_000.0) {
            let threads = threads.min(n);
            let mut seen = vec![false; n];
            for t in 0..threads {
                for slot in 0..slots_of_thread(n, t, threads) {
                    let k = Users::user_of(slot, t, threads) as usize;
                    prop_assert!(k < n && !seen[k], "user {} twice or out of range", k);
                    seen[k] = true;
                }
            }
            prop_assert!(seen.iter().all(|&s| s));
            let u = Users { users: n, spawn_rate: Some(rate), think: Think::default() };
            for k in 1..n as u64 {
                prop_assert!(u.spawn_ns(k - 1) <= u.spawn_ns(k));
                let exact = k as f64 * 1e9 / rate;
                prop_assert!((u.spawn_ns(k) as f64 - exact).abs() <= 1.0 + exact * 1e-15);
            }
        }
    }

    proptest! {
        /// Adding a later step never moves a request due before it (a rebalance cannot
        /// reshuffle what was already sent).
        #[test]
        fn rebalancing_keeps_the_past(a in 0.01f64..1.0, b in 0.0f64..1.0, at_ms in 1u64..20_000, i in 0u64..100_000) {
            let base = open(5000.0, 30);
            let ms = Duration::from_millis;
            let before = base.scaled(&[(ms(0), a)]);
            let after = base.scaled(&[(ms(0), a), (ms(at_ms), b)]);
            if let Some(d) = before.due_ns(i) {
                if d < at_ms * 1_000_000 {
                    prop_assert_eq!(after.due_ns(i), Some(d));
                }
            }
        }
    }

    proptest! {
        /// Due times of any stage list are monotonic and exact: the integral of the rate up to
        /// request i's due time is i (within float rounding), and the curve holds its total.
        #[test]
        fn ramp_due_times_invert_the_rate_integral(
            stages in prop::collection::vec((0u64..5_000, 0.0f64..100_000.0), 1..6),
            frac in 0.0f64..1.0,
        ) {
            let p = ramp(&stages);
            let Load::Ramp(r) = &p.load else { unreachable!() };
            let n = r.total_n;
            prop_assume!(n >= 2.0);
            let i = ((n - 1.0) * frac) as u64;
            let a = p.due_ns(i).unwrap();
            if let Some(b) = p.due_ns(i + 1) {
                prop_assert!(a <= b);
            }
            let t = a as f64 / 1e9;
            prop_assert!((r.count_before(t) - i as f64).abs() <= 1e-6 * n.max(1.0) + 0.5, "i {} t {} count {}", i, t, r.count_before(t));
            prop_assert!(t <= r.total_s + 1e-9);
            prop_assert!(p.due_ns(n.ceil() as u64).is_none());
        }

        /// The schedule is monotonic, never drifts (request i is due at i/rate within 1 ns
        /// of exact arithmetic), and a run of d seconds holds exactly ceil(d * rate) requests.
        #[test]
        fn pacer_is_monotonic_and_exact(rate in 1.0f64..2_000_000.0, secs in 1u64..30, i in 0u64..10_000_000) {
            let p = open(rate, secs);
            if let (Some(a), Some(b)) = (p.due_ns(i), p.due_ns(i + 1)) {
                prop_assert!(a <= b);
                let exact = i as f64 * 1e9 / rate;
                prop_assert!((a as f64 - exact).abs() <= 1.0 + exact * 1e-15);
            }
            // A run of d seconds holds ceil(d * rate) requests (give or take float rounding
            // at the boundary).
            let n = (secs as f64 * rate).ceil() as u64;
            prop_assert!(p.due_ns(n + 1).is_none());
            prop_assert!(p.due_ns(n.saturating_sub(2)).is_some());
            prop_assert!(p.due_ns(n.saturating_sub(2)).unwrap() < p.end_ns().unwrap());
        }
    }
}
