//! Judging one capacity step: did it meet every SLO, and if not, was it the server's doing or
//! the generator's? A generator-limited step must never pass for the server's capacity, so the
//! generator rules are checked first. The rules are documented in `docs/capacity.md`.

use crate::export::{
    fmt_duration_us, BoundReason, Metric, Op, Report, Threshold, LAG_P99_LIMIT_US,
};

/// A step must achieve at least this fraction of its offered rate.
pub const ACHIEVED_RATIO: f64 = 0.98;
/// Connections busy on average (Little's law: sent rate × mean service time / pool) above
/// this fraction means the pool was saturated: requests waited for a connection.
pub const POOL_BUSY: f64 = 0.9;
/// With the pool saturated, a mean service time within this factor of the fastest step's
/// means the server was not slowing down: the pool, not the server, was the limit.
pub const SERVICE_INFLATION: f64 = 2.0;
/// A mean service time above this factor of the fastest passing step's means the server slowed
/// down: lateness and shortfall are then its doing (requests queued for busy connections).
pub const SERVER_SLOWDOWN: f64 = 5.0;
/// Schedule lag p99 may reach this fraction of the tightest latency SLO (and at least
/// [`LAG_P99_LIMIT_US`]) before the generator's lateness counts as the cause of a breach.
pub const LAG_SLO_FRACTION: f64 = 0.1;

/// Why a step failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    Latency,
    Errors,
    Dropped,
    Generator,
}

impl Reason {
    /// The JSON spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Latency => "latency",
            Reason::Errors => "errors",
            Reason::Dropped => "dropped",
            Reason::Generator => "generator",
        }
    }
}

/// The judgement of one step.
#[derive(Clone, Debug, PartialEq)]
pub struct Judgement {
    pub pass: bool,
    pub reason: Option<Reason>,
    /// What broke, with the figures ("p99 312ms > 250ms"); empty for a pass.
    pub detail: String,
}

/// The figures the rules look at, taken from a step's report.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Figures {
    pub offered: f64,
    pub achieved: f64,
    pub sent_rate: f64,
    pub errors: u64,
    pub dropped: u64,
    pub lag_p99_us: f64,
    /// Mean service time (done - sent), µs; 0 without responses.
    pub service_mean_us: f64,
    /// Service time p99, µs; 0 without responses.
    pub service_p99_us: f64,
    /// Average busy fraction of the pool (Little's law).
    pub pool_busy: f64,
}

impl Figures {
    pub fn of(r: &Report, offered: f64) -> Figures {
        let t = r.totals();
        let service_mean_us = if t.service.is_empty() {
            0.0
        } else {
            t.service.mean()
        };
        let conns = r.info().connections.max(1) as f64;
        Figures {
            offered,
            achieved: r.achieved_rate(),
            sent_rate: r.sent_rate(),
            errors: t.errors_total(),
            dropped: t.dropped(),
            lag_p99_us: if t.lag.is_empty() {
                0.0
            } else {
                t.lag.value_at_quantile(0.99) as f64
            },
            service_mean_us,
            service_p99_us: if t.service.is_empty() {
                0.0
            } else {
                t.service.value_at_quantile(0.99) as f64
            },
            pool_busy: r.sent_rate() * service_mean_us / 1e6 / conns,
        }
    }
}

/// The tightest upper limit on response time among the SLOs (quantile, max or mean), µs.
pub fn tightest_latency_us(slos: &[Threshold]) -> Option<f64> {
    slos.iter()
        .filter(|t| {
            matches!(t.op, Op::Lt | Op::Le)
                && matches!(t.metric, Metric::Quantile(_) | Metric::Max | Metric::Mean)
        })
        .map(|t| t.limit)
        .reduce(f64::min)
}

/// The lag bound for these SLOs, µs.
pub fn lag_bound_us(slos: &[Threshold]) -> f64 {
    let from_slo = tightest_latency_us(slos).map_or(0.0, |t| t * LAG_SLO_FRACTION);
    from_slo.max(LAG_P99_LIMIT_US as f64)
}

/// Judges one step. `slos` in the order the report judged them (its thresholds);
/// `baseline_service_us` is the lowest mean service time of the steps that passed so far.
pub fn judge(
    r: &Report,
    slos: &[Threshold],
    offered: f64,
    baseline_service_us: Option<f64>,
) -> Judgement {
    let f = Figures::of(r, offered);
    let verdicts = r.verdicts();
    let failed: Vec<(&Threshold, Option<f64>)> = slos
        .iter()
        .zip(&verdicts)
        .filter(|(_, v)| !v.pass)
        .map(|(t, v)| (t, v.measured))
        .collect();
    let cpu = r
        .bound_reasons()
        .iter()
        .find(|b| matches!(b, BoundReason::Cpu { .. }));
    let limits = Limits {
        lag_bound_us: lag_bound_us(slos),
        latency_us: tightest_latency_us(slos),
    };
    judge_figures(&f, &failed, cpu, limits, baseline_service_us)
}

/// Bounds derived from the SLOs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limits {
    /// See [`lag_bound_us`].
    pub lag_bound_us: f64,
    /// See [`tightest_latency_us`].
    pub latency_us: Option<f64>,
}

/// [`judge`] on extracted figures (unit-tested without a run).
pub fn judge_figures(
    f: &Figures,
    failed: &[(&Threshold, Option<f64>)],
    cpu: Option<&BoundReason>,
    limits: Limits,
    baseline_service_us: Option<f64>,
) -> Judgement {
    let short = f.achieved < ACHIEVED_RATIO * f.offered;
    if failed.is_empty() && !short && f.dropped == 0 {
        return Judgement {
            pass: true,
            reason: None,
            detail: String::new(),
        };
    }
    let generator = |detail: String| Judgement {
        pass: false,
        reason: Some(Reason::Generator),
        detail,
    };
    let pool_free = f.pool_busy < POOL_BUSY;
    if let Some(c) = cpu {
        return generator(format!("generator CPU saturated: {}", c.message()));
    }
    if !pool_free && baseline_service_us.is_some_and(|b| f.service_mean_us <= SERVICE_INFLATION * b)
    {
        return generator(format!(
            "every connection busy while the server answered as fast as at lower rates \
             (service time mean {} vs {}): the connection pool was the limit (raise --connections)",
            fmt_duration_us(f.service_mean_us),
            fmt_duration_us(baseline_service_us.unwrap_or(0.0)),
        ));
    }
    // Lag also counts time queued for a free connection, which a server stall causes too. It
    // is the generator's lateness when the server, timed from the send, still answered within
    // the tightest latency SLO and faster than the requests waited to be sent.
    let server_fast = f.service_p99_us <= limits.latency_us.unwrap_or(f64::INFINITY)
        && !baseline_service_us.is_some_and(|b| f.service_mean_us > SERVER_SLOWDOWN * b);
    if f.lag_p99_us > limits.lag_bound_us && f.lag_p99_us > f.service_p99_us && server_fast {
        return generator(format!(
            "schedule lag p99 {} > {} while the server answered within the SLO (service time \
             p99 {}): the generator sent late",
            fmt_duration_us(f.lag_p99_us),
            fmt_duration_us(limits.lag_bound_us),
            fmt_duration_us(f.service_p99_us),
        ));
    }
    // A server that slowed down well past its unloaded speed explains a late or short send:
    // the requests queued for busy connections. (Without a passing step there is no such
    // speed to compare with, and the rule below may blame the generator: inconclusive, never
    // a wrong capacity.)
    let slowed = baseline_service_us.is_some_and(|b| f.service_mean_us > SERVER_SLOWDOWN * b);
    let sent_short = f.sent_rate < ACHIEVED_RATIO * f.offered;
    if pool_free && !slowed && (sent_short || (short && failed.is_empty() && f.errors == 0)) {
        return generator(format!(
            "sent {:.0} and achieved {:.0} of {:.0} req/s offered with connections free: \
             the generator could not offer the load",
            f.sent_rate, f.achieved, f.offered
        ));
    }
    // The server's doing: name every broken SLO, the most telling reason first.
    let mut details: Vec<String> = failed.iter().map(|(t, m)| breach(t, *m)).collect();
    let reason = if failed.iter().any(|(t, _)| t.metric == Metric::Errors) {
        Reason::Errors
    } else if !failed.is_empty() {
        Reason::Latency
    } else if f.dropped > 0 {
        Reason::Dropped
    } else {
        Reason::Latency
    };
    if f.dropped > 0 {
        details.push(format!("{} requests dropped", f.dropped));
    }
    if short {
        details.push(format!(
            "achieved {:.0} < {:.0}% of {:.0} req/s offered: the server fell behind",
            f.achieved,
            ACHIEVED_RATIO * 100.0,
            f.offered
        ));
    }
    Judgement {
        pass: false,
        reason: Some(reason),
        detail: details.join("; "),
    }
}

/// "p99 312ms > 250ms" for a failed SLO.
fn breach(t: &Threshold, measured: Option<f64>) -> String {
    let src = &t.source;
    let at = src.find(['<', '>']).unwrap_or(src.len());
    let lhs = src[..at].trim();
    let rhs = src[at..].trim_start_matches(['<', '>', '=']).trim();
    let Some(m) = measured else {
        return format!("{lhs}: nothing measured ({src})");
    };
    let value = match t.metric {
        Metric::Errors => format!("{:.2}%", m * 100.0),
        Metric::Rate => format!("{m:.0} req/s"),
        _ => fmt_duration_us(m),
    };
    let op = match t.op {
        Op::Lt => ">=",
        Op::Le => ">",
        Op::Gt => "<=",
        Op::Ge => "<",
    };
    format!("{lhs} {value} {op} {rhs}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn healthy(offered: f64) -> Figures {
        Figures {
            offered,
            achieved: offered,
            sent_rate: offered,
            errors: 0,
            dropped: 0,
            lag_p99_us: 50.0,
            service_mean_us: 2_000.0,
            service_p99_us: 3_000.0,
            pool_busy: 0.2,
        }
    }

    /// Limits of a p99<250ms SLO with the given lag bound.
    fn lim(lag_bound_us: f64) -> Limits {
        Limits {
            lag_bound_us,
            latency_us: Some(250_000.0),
        }
    }

    fn p99() -> Threshold {
        Threshold::parse("p99<250ms").unwrap()
    }

    #[test]
    fn lag_bound_follows_the_tightest_latency_slo() {
        let slos = [p99(), Threshold::parse("errors<1%").unwrap()];
        assert_eq!(lag_bound_us(&slos), 25_000.0);
        assert_eq!(
            lag_bound_us(&[Threshold::parse("p50<2ms").unwrap()]),
            1_000.0
        );
        assert_eq!(
            lag_bound_us(&[Threshold::parse("errors<1%").unwrap()]),
            1_000.0
        );
    }

    #[test]
    fn pass_when_everything_holds() {
        let j = judge_figures(&healthy(1000.0), &[], None, lim(1000.0), None);
        assert!(j.pass && j.reason.is_none(), "{j:?}");
    }

    #[test]
    fn server_latency_breach() {
        // Overloaded server: pool saturated, service time ten times the baseline.
        let f = Figures {
            achieved: 1900.0,
            lag_p99_us: 400_000.0,
            service_mean_us: 20_000.0,
            service_p99_us: 300_000.0,
            pool_busy: 0.99,
            ..healthy(2100.0)
        };
        let t = p99();
        let j = judge_figures(
            &f,
            &[(&t, Some(312_000.0))],
            None,
            lim(25_000.0),
            Some(2_000.0),
        );
        assert_eq!(j.reason, Some(Reason::Latency), "{j:?}");
        assert!(
            j.detail.starts_with("p99 312.00ms >= 250ms"),
            "{}",
            j.detail
        );
        assert!(j.detail.contains("fell behind"), "{}", j.detail);
    }

    #[test]
    fn errors_take_precedence() {
        let t = Threshold::parse("errors<1%").unwrap();
        let f = Figures {
            errors: 50,
            ..healthy(1000.0)
        };
        let j = judge_figures(&f, &[(&t, Some(0.05))], None, lim(1000.0), None);
        assert_eq!(j.reason, Some(Reason::Errors));
        assert!(j.detail.contains("errors 5.00% >= 1%"), "{}", j.detail);
    }

    #[test]
    fn late_generator_with_free_connections() {
        let f = Figures {
            lag_p99_us: 40_000.0,
            ..healthy(1000.0)
        };
        let t = p99();
        let j = judge_figures(&f, &[(&t, Some(300_000.0))], None, lim(25_000.0), None);
        assert_eq!(j.reason, Some(Reason::Generator), "{j:?}");
        // Lag within the bound: a breach is the server's.
        let f = Figures {
            lag_p99_us: 20_000.0,
            ..f
        };
        let j = judge_figures(&f, &[(&t, Some(300_000.0))], None, lim(25_000.0), None);
        assert_eq!(j.reason, Some(Reason::Latency));
        // A server stall: requests queued for a connection (lag) while the ones on the
        // connections waited longer still (service time).
        let f = Figures {
            lag_p99_us: 40_000.0,
            service_p99_us: 60_000.0,
            ..f
        };
        let j = judge_figures(&f, &[(&t, Some(300_000.0))], None, lim(25_000.0), None);
        assert_eq!(j.reason, Some(Reason::Latency), "{j:?}");
    }

    #[test]
    fn cpu_saturation_is_the_generator() {
        let cpu = BoundReason::Cpu {
            used_s: 9.5,
            available_s: 10.0,
        };
        let t = p99();
        let j = judge_figures(
            &healthy(1000.0),
            &[(&t, Some(1e6))],
            Some(&cpu),
            lim(1e3),
            None,
        );
        assert_eq!(j.reason, Some(Reason::Generator));
        assert!(j.detail.contains("CPU"), "{}", j.detail);
    }

    #[test]
    fn saturated_pool_with_a_fast_server_is_the_generator() {
        let f = Figures {
            achieved: 800.0,
            sent_rate: 800.0,
            lag_p99_us: 900_000.0,
            pool_busy: 0.97,
            ..healthy(1000.0)
        };
        let t = p99();
        let j = judge_figures(&f, &[(&t, Some(1e6))], None, lim(25_000.0), Some(1_900.0));
        assert_eq!(j.reason, Some(Reason::Generator), "{j:?}");
        assert!(j.detail.contains("--connections"), "{}", j.detail);
        // Without a baseline (first step) the lag rule still sees a fast server.
        let j = judge_figures(&f, &[(&t, Some(1e6))], None, lim(25_000.0), None);
        assert_eq!(j.reason, Some(Reason::Generator));
    }

    #[test]
    fn shortfall_while_the_server_is_fine_is_the_generator() {
        let f = Figures {
            achieved: 900.0,
            sent_rate: 900.0,
            ..healthy(1000.0)
        };
        let j = judge_figures(&f, &[], None, lim(1000.0), None);
        assert_eq!(j.reason, Some(Reason::Generator));
    }

    #[test]
    fn short_send_from_a_slowed_server_is_the_server() {
        // Above the knee the pool fills late in the step: the mean says "connections free",
        // but the service time is 50 times the unloaded one.
        let f = Figures {
            sent_rate: 1865.0,
            achieved: 1865.0,
            lag_p99_us: 140_000.0,
            service_mean_us: 100_000.0,
            service_p99_us: 210_000.0,
            pool_busy: 0.5,
            ..healthy(1999.0)
        };
        let t = Threshold::parse("p99<100ms").unwrap();
        let j = judge_figures(
            &f,
            &[(&t, Some(355_000.0))],
            None,
            lim(10_000.0),
            Some(2_000.0),
        );
        assert_eq!(j.reason, Some(Reason::Latency), "{j:?}");
        // The same figures with no passing step to compare with: inconclusive.
        let j = judge_figures(&f, &[(&t, Some(355_000.0))], None, lim(10_000.0), None);
        assert_eq!(j.reason, Some(Reason::Generator), "{j:?}");
    }

    #[test]
    fn drops_alone_are_dropped() {
        let f = Figures {
            dropped: 10,
            pool_busy: 1.0,
            service_mean_us: 50_000.0,
            ..healthy(1000.0)
        };
        let j = judge_figures(&f, &[], None, lim(1000.0), Some(2_000.0));
        assert_eq!(j.reason, Some(Reason::Dropped), "{j:?}");
    }
}
