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
        let due = (i as f64 * 1e9 / rate) as u64;
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
