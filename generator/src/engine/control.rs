//! Steering a run from outside the engine (the cluster worker): a common start instant chosen
//! by the coordinator, a stop request, and plan replacements (rebalancing changes this
//! worker's share of the rate from a future instant on).
//!
//! Worker threads look at it once per scan tick (every 10 ms), never per request: one relaxed
//! atomic load each, and a lock only when a new plan was published.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::plan::Plan;

/// Shared between the engine's threads and whoever steers the run.
#[derive(Debug, Default)]
pub struct Control {
    start_at: Option<Instant>,
    stop: AtomicBool,
    version: AtomicU64,
    plan: Mutex<Option<Arc<Plan>>>,
}

impl Control {
    /// A run that starts as soon as its connections are open and ends with its plan.
    pub fn new() -> Self {
        Self::default()
    }

    /// A run whose clock starts at `at` (or at once, if the connections open later).
    pub fn starting_at(at: Instant) -> Self {
        Control {
            start_at: Some(at),
            ..Self::default()
        }
    }

    /// The requested start instant, if any.
    pub fn start_at(&self) -> Option<Instant> {
        self.start_at
    }

    /// Asks every thread to stop starting requests; in-flight ones finish or time out.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// True once [`Self::stop`] was called.
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Publishes a replacement plan. It must agree with the running one up to the instant it
    /// changes (the threads keep their request indices and continue on the new schedule).
    pub fn set_plan(&self, plan: Plan) {
        *self.plan.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(plan));
        self.version.fetch_add(1, Ordering::Release);
    }

    /// The plan published since version `seen`, if any; updates `seen`.
    pub fn newer_plan(&self, seen: &mut u64) -> Option<Arc<Plan>> {
        let v = self.version.load(Ordering::Acquire);
        if v == *seen {
            return None;
        }
        *seen = v;
        self.plan.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Load;
    use std::time::Duration;

    #[test]
    fn plans_are_seen_once_per_publication() {
        let c = Control::new();
        let mut seen = 0;
        assert!(c.newer_plan(&mut seen).is_none());
        let p = Plan {
            load: Load::Open { rate: 5.0 },
            warmup: Duration::ZERO,
            duration: None,
            requests: None,
        };
        c.set_plan(p.clone());
        assert_eq!(*c.newer_plan(&mut seen).unwrap(), p);
        assert!(c.newer_plan(&mut seen).is_none());
        assert!(!c.stopped());
        c.stop();
        assert!(c.stopped());
    }
}
