//! The test knobs' values: durations, delay distributions, the per-request delay override
//! and the error-injection coin, all off by default.
//!
//! Random draws use a per-thread `SmallRng`, so neither knob takes a lock on the request path.

use std::cell::RefCell;
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// Longest delay any knob accepts: longer would only hide a typo.
pub const MAX_DELAY: Duration = Duration::from_secs(3600);
/// Longest per-request override (`delay_ms`, `X-Delay-Ms`), in milliseconds.
pub const MAX_OVERRIDE_MS: f64 = 60_000.0;

/// A bad knob value; the message names the value and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct KnobError(String);

/// Parses `500us`, `2ms`, `1.5ms`, `1s` (also `ns` and `µs`); a bare `0` is zero.
pub fn parse_duration(s: &str) -> Result<Duration, KnobError> {
    let t = s.trim();
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| KnobError(format!("'{s}' has no unit (use ns, us, ms or s, e.g. 2ms)")))?;
    let (number, unit) = t.split_at(split);
    let scale = match unit {
        "ns" => 1e-9,
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        _ => {
            return Err(KnobError(format!(
                "unknown unit '{unit}' in '{s}' (use ns, us, ms or s)"
            )))
        }
    };
    let value: f64 = number
        .parse()
        .map_err(|_| KnobError(format!("'{s}' is not a duration (e.g. 500us, 1.5ms, 1s)")))?;
    let secs = value * scale;
    if !secs.is_finite() || secs > MAX_DELAY.as_secs_f64() {
        return Err(KnobError(format!("'{s}' is longer than 1 hour")));
    }
    Ok(Duration::from_nanos((secs * 1e9).round() as u64))
}

/// How long each response is held before it is sent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DelayDist {
    Fixed(Duration),
    /// Exponential with this mean.
    Exp(Duration),
    /// Uniform on [lo, hi].
    Uniform(Duration, Duration),
}

impl FromStr for DelayDist {
    type Err = KnobError;

    /// `exp:MEAN`, `uniform:LO..HI` or `fixed:D`.
    fn from_str(s: &str) -> Result<Self, KnobError> {
        let expected = || {
            KnobError(format!(
                "'{s}' is not a delay distribution (use exp:MEAN, uniform:LO..HI or fixed:D, e.g. exp:2ms)"
            ))
        };
        let (kind, args) = s.split_once(':').ok_or_else(expected)?;
        match kind {
            "fixed" => Ok(DelayDist::Fixed(parse_duration(args)?)),
            "exp" => Ok(DelayDist::Exp(parse_duration(args)?)),
            "uniform" => {
                let (lo, hi) = args.split_once("..").ok_or_else(expected)?;
                let (lo, hi) = (parse_duration(lo)?, parse_duration(hi)?);
                if lo > hi {
                    return Err(KnobError(format!(
                        "'{s}': the low end is above the high end"
                    )));
                }
                Ok(DelayDist::Uniform(lo, hi))
            }
            _ => Err(expected()),
        }
    }
}

impl fmt::Display for DelayDist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DelayDist::Fixed(d) => write!(f, "fixed:{d:?}"),
            DelayDist::Exp(d) => write!(f, "exp:{d:?}"),
            DelayDist::Uniform(lo, hi) => write!(f, "uniform:{lo:?}..{hi:?}"),
        }
    }
}

impl DelayDist {
    /// One delay, in nanoseconds.
    pub fn sample_ns(&self) -> u64 {
        match *self {
            DelayDist::Fixed(d) => d.as_nanos() as u64,
            DelayDist::Exp(mean) => {
                // Inverse CDF; 1 - u is in (0, 1], so the logarithm is finite.
                let u = with_rng(|r| r.random::<f64>());
                let ns = -(mean.as_nanos() as f64) * (1.0 - u).ln();
                ns.min(MAX_DELAY.as_nanos() as f64) as u64
            }
            DelayDist::Uniform(lo, hi) => {
                let (lo, hi) = (lo.as_nanos() as u64, hi.as_nanos() as u64);
                if lo == hi {
                    lo
                } else {
                    with_rng(|r| r.random_range(lo..=hi))
                }
            }
        }
    }
}

/// Parses an error probability in [0, 1].
pub fn parse_probability(s: &str) -> Result<f64, KnobError> {
    match s.trim().parse::<f64>() {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
        _ => Err(KnobError(format!(
            "'{s}' is not a probability between 0 and 1"
        ))),
    }
}

/// Parses a per-request override in milliseconds (`delay_ms=0.5`, `X-Delay-Ms: 3`).
pub fn parse_override_ms(s: &str) -> Option<u64> {
    let ms: f64 = s.trim().parse().ok()?;
    (ms.is_finite() && (0.0..=MAX_OVERRIDE_MS).contains(&ms)).then(|| (ms * 1e6).round() as u64)
}

/// True with probability `p`.
pub fn coin(p: f64) -> bool {
    p > 0.0 && (p >= 1.0 || with_rng(|r| r.random::<f64>()) < p)
}

fn with_rng<T>(f: impl FnOnce(&mut SmallRng) -> T) -> T {
    thread_local! {
        static RNG: RefCell<SmallRng> = RefCell::new(SmallRng::seed_from_u64(seed()));
    }
    RNG.with(|r| f(&mut r.borrow_mut()))
}

/// A different seed per thread and per run.
fn seed() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    crate::delay::now_ns() ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500us"), Ok(Duration::from_micros(500)));
        assert_eq!(parse_duration("500µs"), Ok(Duration::from_micros(500)));
        assert_eq!(parse_duration("2ms"), Ok(Duration::from_millis(2)));
        assert_eq!(parse_duration("1.5ms"), Ok(Duration::from_micros(1500)));
        assert_eq!(parse_duration("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("250ns"), Ok(Duration::from_nanos(250)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        for bad in [
            "2", "2x", "ms", "-1ms", "1.2.3ms", "", "2 ms", "2h", "9999s",
        ] {
            let err = parse_duration(bad).unwrap_err();
            assert!(err.to_string().contains(bad), "{err}");
        }
    }

    #[test]
    fn distributions() {
        assert_eq!(
            "exp:2ms".parse::<DelayDist>(),
            Ok(DelayDist::Exp(Duration::from_millis(2)))
        );
        assert_eq!(
            "uniform:1ms..3ms".parse::<DelayDist>(),
            Ok(DelayDist::Uniform(
                Duration::from_millis(1),
                Duration::from_millis(3)
            ))
        );
        assert_eq!(
            "fixed:500us".parse::<DelayDist>(),
            Ok(DelayDist::Fixed(Duration::from_micros(500)))
        );
        for bad in [
            "exp",
            "normal:1ms",
            "uniform:3ms..1ms",
            "uniform:1ms",
            "exp:2",
        ] {
            assert!(bad.parse::<DelayDist>().is_err(), "{bad}");
        }
    }

    #[test]
    fn samples_have_the_right_mean_and_range() {
        let _serial = crate::serial_test();
        let n = 100_000;
        let exp = DelayDist::Exp(Duration::from_millis(2));
        let mean = (0..n).map(|_| exp.sample_ns() as f64).sum::<f64>() / n as f64;
        // Standard error of the mean is 2 ms / sqrt(n) ≈ 6.3 µs; allow 5 sigma.
        assert!((mean - 2e6).abs() < 32e3, "exp mean {mean}");
        let uni = DelayDist::Uniform(Duration::from_millis(1), Duration::from_millis(3));
        let samples: Vec<u64> = (0..n).map(|_| uni.sample_ns()).collect();
        assert!(samples
            .iter()
            .all(|&s| (1_000_000..=3_000_000).contains(&s)));
        let mean = samples.iter().sum::<u64>() as f64 / n as f64;
        assert!((mean - 2e6).abs() < 10e3, "uniform mean {mean}");
    }

    #[test]
    fn overrides_and_probabilities() {
        let _serial = crate::serial_test();
        assert_eq!(parse_override_ms("0.5"), Some(500_000));
        assert_eq!(parse_override_ms("3"), Some(3_000_000));
        assert_eq!(parse_override_ms("0"), Some(0));
        for bad in ["-1", "abc", "NaN", "inf", "60001", ""] {
            assert_eq!(parse_override_ms(bad), None, "{bad}");
        }
        assert_eq!(parse_probability("0.01"), Ok(0.01));
        assert!(parse_probability("1.5").is_err());
        assert!(parse_probability("x").is_err());
        assert!(!coin(0.0));
        assert!(coin(1.0));
        let hits = (0..100_000).filter(|_| coin(0.1)).count();
        assert!((9_000..11_000).contains(&hits), "{hits}");
    }
}
