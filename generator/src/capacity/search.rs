//! The capacity search as a pure state machine: which rate to try next, given how the steps
//! so far ended. No I/O and no clock, so it is tested against fake servers (fixed knees,
//! generator limits) in microseconds.
//!
//! Exponential growth (×2) from `from` until a step breaks an SLO or `max` passes, then
//! bisection between the last good and the first bad rate until `(bad - good) / good` is at
//! most `precision`. A step where the generator itself was the limit ends the search at once:
//! nothing above it can be judged, and it must never be taken for the server's capacity.

/// How the search is bounded.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Params {
    /// First rate, req/s (> 0).
    pub from: f64,
    /// Highest rate tried, req/s (>= from).
    pub max: f64,
    /// Stop bisecting when `(bad - good) / good <= precision` (a fraction, > 0).
    pub precision: f64,
}

/// How one step ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every SLO met at the offered rate.
    Pass,
    /// The server broke an SLO (latency, errors, dropped requests).
    ServerBroke,
    /// The generator could not offer or measure the rate.
    GeneratorBound,
}

/// What the whole search concluded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A bracket `max_ok < capacity < first_bad` within the precision.
    Found,
    /// `max` passed: the capacity is at least `max`.
    NotReached,
    /// The first rate already broke an SLO.
    NonePassed,
    /// A step was limited by the generator: the capacity is at least the last good rate.
    GeneratorBound,
}

impl Verdict {
    /// The JSON spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Found => "found",
            Verdict::NotReached => "not-reached",
            Verdict::NonePassed => "none-passed",
            Verdict::GeneratorBound => "generator-bound",
        }
    }
}

/// The search's result.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Conclusion {
    pub verdict: Verdict,
    /// Highest rate that met every SLO.
    pub max_ok: Option<f64>,
    /// Lowest rate at which the server broke an SLO.
    pub first_bad: Option<f64>,
    /// The rate at which the generator was the limit.
    pub generator_at: Option<f64>,
}

/// Safety net: bisection halves the bracket each step, so a sane precision needs far fewer.
pub const MAX_STEPS: usize = 64;

/// The state machine: ask [`Search::next_rate`], run it, tell [`Search::record`].
#[derive(Clone, Debug)]
pub struct Search {
    p: Params,
    good: Option<f64>,
    bad: Option<f64>,
    generator: Option<f64>,
    next: Option<f64>,
    steps: usize,
}

impl Search {
    pub fn new(p: Params) -> Search {
        Search {
            p,
            good: None,
            bad: None,
            generator: None,
            next: Some(p.from.min(p.max)),
            steps: 0,
        }
    }

    /// The rate to run next; `None` when the search is over.
    pub fn next_rate(&self) -> Option<f64> {
        self.next
    }

    /// Records how the step at `rate` ended and plans the next one.
    pub fn record(&mut self, rate: f64, outcome: Outcome) {
        self.steps += 1;
        match outcome {
            Outcome::Pass => self.good = Some(self.good.map_or(rate, |g| g.max(rate))),
            Outcome::ServerBroke => self.bad = Some(self.bad.map_or(rate, |b| b.min(rate))),
            Outcome::GeneratorBound => {
                self.generator = Some(rate);
                self.next = None;
                return;
            }
        }
        self.next = self.plan();
    }

    fn plan(&self) -> Option<f64> {
        if self.steps >= MAX_STEPS {
            return None;
        }
        match (self.good, self.bad) {
            (Some(g), None) if g < self.p.max => Some((g * 2.0).min(self.p.max)),
            (Some(g), Some(b)) if (b - g) / g > self.p.precision => {
                let mid = (g + b) / 2.0;
                // Rates differing by less than a float step cannot be told apart.
                (mid > g && mid < b).then_some(mid)
            }
            _ => None,
        }
    }

    /// The verdict so far (final once [`Search::next_rate`] is `None`).
    pub fn conclusion(&self) -> Conclusion {
        let verdict = match (self.generator, self.good, self.bad) {
            (Some(_), _, _) => Verdict::GeneratorBound,
            (None, Some(_), Some(_)) => Verdict::Found,
            (None, Some(_), None) => Verdict::NotReached,
            (None, None, _) => Verdict::NonePassed,
        };
        Conclusion {
            verdict,
            max_ok: self.good,
            first_bad: self.bad,
            generator_at: self.generator,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Runs the search against a fake server that passes up to `knee` req/s, and a generator
    /// that can offer up to `gen_limit` req/s; returns the conclusion and the rates tried.
    fn run(p: Params, knee: f64, gen_limit: f64) -> (Conclusion, Vec<f64>) {
        let mut s = Search::new(p);
        let mut tried = Vec::new();
        while let Some(rate) = s.next_rate() {
            assert!(tried.len() < MAX_STEPS, "runaway search: {tried:?}");
            tried.push(rate);
            let outcome = if rate > gen_limit {
                Outcome::GeneratorBound
            } else if rate <= knee {
                Outcome::Pass
            } else {
                Outcome::ServerBroke
            };
            s.record(rate, outcome);
        }
        (s.conclusion(), tried)
    }

    fn params(from: f64, max: f64, precision: f64) -> Params {
        Params {
            from,
            max,
            precision,
        }
    }

    #[test]
    fn grows_then_bisects() {
        let (c, tried) = run(params(1000.0, 200_000.0, 0.05), 5000.0, f64::INFINITY);
        assert_eq!(&tried[..4], &[1000.0, 2000.0, 4000.0, 8000.0]);
        assert_eq!(tried[4], 6000.0, "bisection starts between 4000 and 8000");
        assert_eq!(c.verdict, Verdict::Found);
        let (good, bad) = (c.max_ok.unwrap(), c.first_bad.unwrap());
        assert!(good <= 5000.0 && bad > 5000.0, "{good} {bad}");
        assert!((bad - good) / good <= 0.05);
    }

    #[test]
    fn max_passes_is_not_reached() {
        let (c, tried) = run(params(1000.0, 3000.0, 0.05), 1e9, f64::INFINITY);
        assert_eq!(tried, [1000.0, 2000.0, 3000.0]);
        assert_eq!(c.verdict, Verdict::NotReached);
        assert_eq!((c.max_ok, c.first_bad), (Some(3000.0), None));
    }

    #[test]
    fn first_step_breaks() {
        let (c, tried) = run(params(1000.0, 8000.0, 0.05), 500.0, f64::INFINITY);
        assert_eq!(tried, [1000.0]);
        assert_eq!(c.verdict, Verdict::NonePassed);
        assert_eq!((c.max_ok, c.first_bad), (None, Some(1000.0)));
    }

    #[test]
    fn generator_limit_stops_and_is_never_capacity() {
        let (c, tried) = run(params(1000.0, 200_000.0, 0.05), 50_000.0, 3000.0);
        assert_eq!(tried, [1000.0, 2000.0, 4000.0]);
        assert_eq!(c.verdict, Verdict::GeneratorBound);
        assert_eq!(
            (c.max_ok, c.first_bad, c.generator_at),
            (Some(2000.0), None, Some(4000.0))
        );
        // During bisection too: knee 5000, generator gives up above 6500.
        let (c, _) = run(params(1000.0, 200_000.0, 0.01), 5000.0, 5500.0);
        assert_eq!(c.verdict, Verdict::GeneratorBound);
        assert!(c.max_ok.unwrap() <= 5000.0);
    }

    proptest! {
        #[test]
        fn terminates_and_brackets_the_knee(
            from in 1.0f64..10_000.0,
            span in 1.0f64..1000.0,
            knee_frac in 0.0f64..1.2,
            precision in 0.001f64..0.5,
        ) {
            let max = from * span;
            let knee = from * 0.5 + (max - from * 0.5) * knee_frac;
            let (c, tried) = run(params(from, max, precision), knee, f64::INFINITY);
            prop_assert!(tried.len() < MAX_STEPS);
            match c.verdict {
                Verdict::Found => {
                    let (g, b) = (c.max_ok.unwrap(), c.first_bad.unwrap());
                    prop_assert!(g <= knee && knee < b, "{g} {knee} {b}");
                    prop_assert!((b - g) / g <= precision * (1.0 + 1e-9), "{g} {b}");
                }
                Verdict::NotReached => prop_assert!(knee >= max && c.max_ok == Some(max)),
                Verdict::NonePassed => prop_assert!(knee < from),
                Verdict::GeneratorBound => prop_assert!(false, "no generator limit here"),
            }
            // Every rate tried lies within [from, max].
            prop_assert!(tried.iter().all(|&r| r >= from.min(max) && r <= max));
        }

        #[test]
        fn generator_bound_never_reports_above_the_generator(
            knee in 100.0f64..100_000.0,
            gen_limit in 100.0f64..100_000.0,
        ) {
            let (c, _) = run(params(100.0, 1e6, 0.05), knee, gen_limit);
            if gen_limit < knee {
                prop_assert_eq!(c.verdict, Verdict::GeneratorBound);
            }
            if let Some(ok) = c.max_ok {
                prop_assert!(ok <= gen_limit && ok <= knee);
            }
        }
    }
}
