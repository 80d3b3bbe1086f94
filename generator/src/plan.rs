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
    /// Open model, cluster share: from each offset (ns, ascending) the rate is multiplied by
    /// the factor; before the first step by 0. Empty: unscaled. See [`Plan::scaled`].
    pub scale: Vec<(u64, f64)>,
}

impl Plan {
    /// The target rate in requests per second, for the open model.
    pub fn rate(&self) -> Option<f64> {
        match self.load {
            Load::Open { rate } => Some(rate),
            Load::Closed => None,
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
        let Load::Open { rate } = self.load else {
            return None;
        };
        // f64 holds i exactly up to 2^53: far past any run (2^53 / 1e6 req/s = 285 years).
        let due = if self.scale.is_empty() {
            (i as f64 * 1e9 / rate) as u64
        } else {
            scaled_due_ns(rate, &self.scale, i as f64)?
        };
        if let Some(n) = self.requests {
            let warm = (self.warmup.as_secs_f64() * rate).ceil() as u64;
            if i >= warm.saturating_add(n) {
                return None;
            }
        }
        match self.end_ns() {
            Some(end) if due >= end => None,
            _ => Some(due),
        }
    }

    /// This plan with its rate multiplied by a step function: from each offset the factor in
    /// force (a cluster worker's share of the total). Steps must ascend; before the first
    /// one the factor is 0. Replacing a running plan by one scaled with more steps keeps every
    /// request due before the new step where it was.
    pub fn scaled(&self, steps: &[(Duration, f64)]) -> Plan {
        let mut p = self.clone();
        p.scale = steps
            .iter()
            .map(|&(at, f)| {
                (
                    at.as_nanos() as u64,
                    if f.is_finite() { f.max(0.0) } else { 0.0 },
                )
            })
            .collect();
        p
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

/// Due time of (fractional) request index `x` under a rate scaled by steps: walk the steps,
/// accumulating the requests each holds, to the one where `x` falls. `None` when the rate
/// stays 0 from some step on and `x` is never reached.
fn scaled_due_ns(rate: f64, steps: &[(u64, f64)], x: f64) -> Option<u64> {
    let per_ns = rate / 1e9;
    let mut cum = 0.0;
    for (k, &(from, f)) in steps.iter().enumerate() {
        let r = per_ns * f;
        match steps.get(k + 1) {
            Some(&(next, _)) => {
                let held = r * next.saturating_sub(from) as f64;
                if r > 0.0 && x < cum + held {
                    return Some(from + ((x - cum) / r) as u64);
                }
                cum += held;
            }
            None => return (r > 0.0).then(|| from + ((x - cum) / r) as u64),
        }
    }
    None
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
            scale: Vec::new(),
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
            scale: Vec::new(),
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
            scale: Vec::new(),
        };
        let q: Vec<u64> = (0..3).map(|t| p.quota(t, 3)).collect();
        assert_eq!(q, vec![4, 3, 3]);
        assert_eq!(open(1.0, 1).quota(0, 2), u64::MAX);
    }

    #[test]
    fn scaled_schedule_follows_the_share_steps() {
        let base = open(1000.0, 10);
        let s = |secs: f64| Duration::from_secs_f64(secs);
        // A quarter of 1000 req/s for 2 s (500 requests), then half.
        let p = base.scaled(&[(s(0.0), 0.25), (s(2.0), 0.5)]);
        assert_eq!(p.due_ns(0), Some(0));
        assert_eq!(p.due_ns(1), Some(4_000_000));
        assert_eq!(p.due_ns(499), Some(1_996_000_000));
        assert_eq!(p.due_ns(500), Some(2_000_000_000));
        assert_eq!(p.due_ns(501), Some(2_002_000_000));
        // 500 + 8 s × 500 = 4500 requests in the 10 s run.
        assert!(p.due_ns(4_499).is_some());
        assert_eq!(p.due_ns(4_500), None);
        // Share 0 from 1 s on: nothing after the first 250 requests.
        let q = base.scaled(&[(s(0.0), 0.25), (s(1.0), 0.0)]);
        assert!(q.due_ns(249).is_some());
        assert_eq!(q.due_ns(250), None);
        // Joining late: nothing due before the first step.
        let r = base.scaled(&[(s(3.0), 1.0)]);
        assert_eq!(r.due_ns(0), Some(3_000_000_000));
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
