//! The test knobs, measured from the client side: delays (fixed, distributions,
//! per-request override), error injection, the concurrency cap and stalls.
//!
//! Timing tests take `common::serial()` so they never compete with each other for the two
//! cores, compare quantiles over many samples against a no-delay baseline measured just
//! before each sample on the same connection, keep upper bounds generous where the machine's
//! load can only add, and retry a failed timing check (see [`attempts`]).

mod common;

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::{serial, timed, Conn, Server};

const MS: u64 = 1_000_000;
const US: u64 = 1_000;

const PLAIN: &[u8] = b"GET /login?deviceid=d HTTP/1.1\r\nHost: t\r\n\r\n";
const NO_DELAY: &[u8] = b"GET /login?deviceid=d&delay_ms=0 HTTP/1.1\r\nHost: t\r\n\r\n";

/// Client-measured times of `n` delayed requests, and what each added over the no-delay
/// request just before it on the same connection.
struct Samples {
    /// Whole delayed exchanges, ns: none may be shorter than the delay.
    raw: Vec<u64>,
    /// Delayed minus the adjacent baseline, ns, sorted. Pairing neighbours cancels the slow
    /// swings of a shared machine that a difference of two medians would keep.
    added: Vec<i64>,
}

impl Samples {
    fn quantile(&self, p: f64) -> i64 {
        self.added[((self.added.len() - 1) as f64 * p).round() as usize]
    }
}

/// Interleaves `n` baseline (override 0) and `n` `delayed` requests on one connection, after
/// a warm-up.
fn measure(conn: &mut Conn, delayed: &[u8], n: usize) -> Samples {
    for _ in 0..20 {
        conn.request(NO_DELAY);
        conn.request(delayed);
    }
    let (mut raw, mut added) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        let (base, resp) = timed(conn, NO_DELAY);
        assert_eq!(resp.status, 200);
        let (t, resp) = timed(conn, delayed);
        assert_eq!(resp.status, 200);
        raw.push(t);
        added.push(t as i64 - base as i64);
    }
    added.sort_unstable();
    Samples { raw, added }
}

/// Runs a timing check up to `ATTEMPTS` times and passes on the first success. Other
/// tenants of a shared 2-core machine can stall any process for milliseconds, which says
/// nothing about the server; a real regression fails every attempt. Invariants that load
/// cannot cause (a response released early) are asserted inside `check`, not retried.
fn attempts(name: &str, mut check: impl FnMut() -> Result<(), String>) {
    const ATTEMPTS: usize = 4;
    let mut failures = Vec::new();
    for _ in 0..ATTEMPTS {
        match check() {
            Ok(()) => return,
            Err(e) => {
                eprintln!("{name}: attempt failed: {e}");
                failures.push(e);
            }
        }
    }
    panic!("{name}: all {ATTEMPTS} attempts failed: {failures:#?}");
}

fn check(ok: bool, msg: impl FnOnce() -> String) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(msg())
    }
}

/// Is a median "added over the no-delay baseline minus the delay" (ns) close enough?
///
/// Over: at most 50 µs. Under: at most 100 µs, because being under cannot be the server's
/// doing (every delayed sample is separately checked to take at least the delay): on a VM
/// the no-delay round trip can cost ~40–70 µs more than the non-delay part of a delayed one,
/// as idle wake-ups partly overlap the wait. The server-side histogram is the fine check.
fn near(error_ns: i64) -> bool {
    (-100_000..=50_000).contains(&error_ns)
}

/// The acceptance test for the ground truth: a 2 ms delay is never shorter than 2 ms, adds
/// 2 ms over a no-delay request (see [`near`]), and the server's own histogram has most
/// releases within 50 µs of due. Prints the figures docs/sample-webapp.md quotes.
#[test]
fn fixed_delay_is_precise() {
    let _serial = serial();
    attempts("fixed 2 ms delay", || {
        let server = Server::start(&["--delay", "2ms"]);
        let mut conn = server.connect();
        let samples = measure(&mut conn, PLAIN, 200);
        let min = *samples.raw.iter().min().unwrap();
        assert!(min >= 2 * MS, "a delayed response took only {min} ns");
        let err = |q: f64| samples.quantile(q) - 2 * MS as i64;
        eprintln!(
            "2 ms delay, 200 samples: client-side error (added - 2 ms) p10 {} ns, p50 {} ns, \
             p90 {} ns, p99 {} ns",
            err(0.1),
            err(0.5),
            err(0.9),
            err(0.99)
        );
        // The server's own account of how late it released each response.
        let stats = server.stats();
        let lateness = &stats["release_lateness_us"];
        eprintln!("server-side release lateness (µs buckets): {lateness}");
        let within_50us: u64 = ["<1", "<2", "<5", "<10", "<20", "<50"]
            .iter()
            .map(|k| lateness[k].as_u64().unwrap())
            .sum();
        let delayed = stats["delayed"].as_u64().unwrap();
        check(near(err(0.5)), || {
            format!("median added delay off by {} ns", err(0.5))
        })?;
        // tokio's 1 ms timer wheel would put next to none there.
        check(within_50us * 2 > delayed, || {
            format!("only {within_50us} of {delayed} released within 50 µs")
        })
    });
}

#[test]
fn exponential_delay_has_the_right_mean() {
    let _serial = serial();
    attempts("exp:2ms", || {
        let server = Server::start(&["--delay-dist", "exp:2ms"]);
        let mut conn = server.connect();
        let n = 400;
        let samples = measure(&mut conn, PLAIN, n);
        let mean = samples.added.iter().sum::<i64>() as f64 / n as f64;
        // Exponential: sd = mean, so the mean's standard error is 2 ms / sqrt(400) = 100 µs.
        let bound = 4.0 * 2e6 / (n as f64).sqrt() + 100e3;
        eprintln!("exp:2ms mean added delay {mean:.0} ns (bound ±{bound:.0})");
        // P(X < 1 ms) = 1 - e^-0.5 = 39%: many draws are far below the mean.
        let below = samples.added.iter().filter(|&&a| a < MS as i64).count();
        check((mean - 2e6).abs() < bound, || format!("mean {mean} ns"))?;
        check(below > n / 4, || format!("{below} of {n} draws under 1 ms"))
    });
}

#[test]
fn uniform_delay_stays_in_range() {
    let _serial = serial();
    attempts("uniform:1ms..3ms", || {
        let server = Server::start(&["--delay-dist", "uniform:1ms..3ms"]);
        let mut conn = server.connect();
        let n = 300;
        let samples = measure(&mut conn, PLAIN, n);
        assert!(*samples.raw.iter().min().unwrap() >= MS);
        // Quantiles rather than the mean: robust to the odd sample a busy machine delays. The
        // p-quantile of U(1 ms, 3 ms) is 1 + 2p ms, with standard error 2 ms * sqrt(p(1-p)/n);
        // + 100 µs because this checks the shape (`fixed_delay_is_precise` checks precision)
        // and an unoptimised build on a busy machine adds that much at p90.
        for p in [0.1, 0.5, 0.9] {
            let got = samples.quantile(p) as f64;
            let want = 1e6 + 2e6 * p;
            let bound = 4.0 * 2e6 * (p * (1.0 - p) / n as f64).sqrt() + 100e3;
            check((got - want).abs() < bound, || {
                format!("p{p}: {got} ns, want {want} ± {bound:.0}")
            })?;
        }
        Ok(())
    });
}

#[test]
fn per_request_override() {
    let _serial = serial();
    let server = Server::start(&[]);
    let mut conn = server.connect();
    attempts("delay_ms=0.5", || {
        let half = b"GET /login?deviceid=d&delay_ms=0.5 HTTP/1.1\r\nHost: t\r\n\r\n";
        let samples = measure(&mut conn, half, 50);
        assert!(*samples.raw.iter().min().unwrap() >= 500 * US);
        let added = samples.quantile(0.5);
        check(near(added - 500_000), || {
            format!("delay_ms=0.5 added {added} ns")
        })
    });
    attempts("X-Delay-Ms: 3", || {
        let header = b"GET /login?deviceid=d HTTP/1.1\r\nHost: t\r\nX-Delay-Ms: 3\r\n\r\n";
        let samples = measure(&mut conn, header, 30);
        assert!(*samples.raw.iter().min().unwrap() >= 3 * MS);
        let added = samples.quantile(0.5);
        check(near(added - 3_000_000), || {
            format!("X-Delay-Ms: 3 added {added} ns")
        })
    });

    // The query parameter wins over the header; and the body is unchanged by it.
    let both = b"GET /login?deviceid=d&delay_ms=0 HTTP/1.1\r\nHost: t\r\nX-Delay-Ms: 1000\r\n\r\n";
    let (t, resp) = timed(&mut conn, both);
    assert!(t < 500 * MS, "query override ignored: {t} ns");
    assert_eq!(resp.text(), "/login - device: d\n");
    drop(server);

    // An override of 0 on a server with --delay answers at once.
    let server = Server::start(&["--delay", "200ms"]);
    let mut conn = server.connect();
    let (t, _) = timed(&mut conn, NO_DELAY);
    assert!(t < 100 * MS, "{t} ns");
    let (t, _) = timed(&mut conn, PLAIN);
    assert!(t >= 200 * MS, "{t} ns");
}

#[test]
fn error_rate_is_statistically_right() {
    let _serial = serial();
    let server = Server::start(&["--error-rate", "0.1"]);
    let mut conn = server.connect();
    let n = 2000;
    let mut errors = 0;
    for _ in 0..n {
        let resp = conn.request(PLAIN);
        match resp.status {
            200 => assert_eq!(resp.text(), "/login - device: d\n"),
            500 => {
                errors += 1;
                assert_eq!(
                    resp.header("content-type"),
                    Some("text/html; charset=utf-8")
                );
                assert!(resp
                    .text()
                    .contains("<title>500 Internal Server Error</title>"));
            }
            other => panic!("status {other}"),
        }
    }
    // Binomial(2000, 0.1): mean 200, sd 13.4; allow 4 sigma.
    assert!((146..=254).contains(&errors), "{errors} errors in {n}");
    let stats = server.stats();
    assert_eq!(stats["errors_injected"], errors);
    assert_eq!(stats["status"]["500"], errors);
    assert_eq!(stats["status"]["200"], n - errors);
    // 404s are never turned into errors.
    let resp = conn.get("/nope");
    assert_eq!(resp.status, 404);
}

#[test]
fn max_concurrency_caps_in_flight() {
    let _serial = serial();
    let server = Server::start(&["--delay", "50ms", "--max-concurrency", "2"]);
    let n = 6;
    let barrier = Arc::new(Barrier::new(n + 1));
    let threads: Vec<_> = (0..n)
        .map(|_| {
            let mut conn = server.connect();
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                let resp = conn.request(PLAIN);
                assert_eq!(resp.status, 200);
                Instant::now()
            })
        })
        .collect();
    // Before the barrier opens, so no request can start before t0.
    let t0 = Instant::now();
    barrier.wait();
    std::thread::sleep(Duration::from_millis(25));
    // Mid-way: all six are in flight (two served, four queued).
    assert_eq!(server.stats()["in_flight"], 6);
    let mut done: Vec<Duration> = threads
        .into_iter()
        .map(|t| t.join().unwrap() - t0)
        .collect();
    done.sort();
    eprintln!("completion times with cap 2 and 50 ms: {done:?}");
    for (i, d) in done.iter().enumerate() {
        let round = (i / 2 + 1) as u32;
        let lo = Duration::from_millis(50) * round;
        assert!(*d >= lo, "request {i} done at {d:?}, before {lo:?}");
        assert!(
            *d < lo + Duration::from_millis(60),
            "request {i} done at {d:?}"
        );
    }
}

#[test]
fn stall_freezes_in_flight_and_new_requests_then_releases() {
    let _serial = serial();
    let server = Server::start(&["--delay", "100ms"]);
    let t0 = Instant::now();
    let mut a = server.connect();
    a.send(PLAIN); // in flight: would be answered at t0 + 100 ms
    std::thread::sleep(Duration::from_millis(20));
    let (t, resp) = timed(
        &mut server.connect(),
        b"POST /_admin/stall?ms=300 HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert!(t < 50 * MS, "the stall call itself took {t} ns");
    let stall_end = t0 + Duration::from_millis(320);
    std::thread::sleep(Duration::from_millis(30));
    let mut b = server.connect();
    b.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"); // arrives during the stall
                                                  // /_stats is not stalled.
    let (t, _) = timed(
        &mut server.connect(),
        b"GET /_stats HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    assert!(t < 50 * MS, "/_stats took {t} ns during a stall");

    for conn in [&mut a, &mut b] {
        let resp = conn.read_response(false).unwrap();
        assert_eq!(resp.status, 200);
        let done = Instant::now();
        assert!(done >= stall_end, "released {:?} early", stall_end - done);
        assert!(
            done < stall_end + Duration::from_millis(150),
            "{:?}",
            done - t0
        );
    }
    // After the stall only the delay remains.
    let (t, _) = timed(&mut a, PLAIN);
    assert!((100 * MS..200 * MS).contains(&t), "{t} ns after the stall");
    assert_eq!(server.stats()["stalls"], 1);
}

#[test]
fn sigusr1_stalls_for_the_configured_time() {
    let _serial = serial();
    let server = Server::start(&["--stall-signal-ms", "300"]);
    let mut conn = server.connect();
    conn.request(PLAIN);
    let sent = Instant::now();
    server.signal(libc::SIGUSR1);
    // Wait until the signal has been handled, so the request below surely meets the stall.
    while server.stats()["stalls"] != 1 {
        assert!(
            sent.elapsed() < Duration::from_secs(5),
            "SIGUSR1 not handled"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let resp = conn.request(PLAIN);
    assert_eq!(resp.status, 200);
    let done = sent.elapsed();
    assert!(
        done >= Duration::from_millis(300),
        "stall ended after {done:?}"
    );
    assert!(
        done < Duration::from_millis(500),
        "stall ended after {done:?}"
    );
}

#[test]
fn bad_stall_calls_are_rejected() {
    let server = Server::start(&[]);
    let mut conn = server.connect();
    for target in ["/_admin/stall", "/_admin/stall?ms=x", "/_admin/stall?ms=-5"] {
        let resp = conn.request(
            format!("POST {target} HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n").as_bytes(),
        );
        assert_eq!(resp.status, 400, "{target}");
    }
    let resp = conn.get("/_admin/stall?ms=10");
    assert_eq!(resp.status, 405);
    assert_eq!(resp.header("allow"), Some("POST"));
    assert_eq!(server.stats()["stalls"], 0);
}
