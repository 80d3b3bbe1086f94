//! The engine end to end, against the real sample-webapp on 127.0.0.1: counts agree with
//! the server's own, the schedule is honoured through a server stall (coordinated omission
//! is not hidden), injected delays are never under-reported, bad input exits 2, an
//! unreachable target exits 1 with a complete report.

mod common;

use common::*;

#[test]
fn open_loop_sends_exactly_the_schedule_and_the_server_agrees() {
    let app = Webapp::start(&[]);
    let before = app.requests();
    let r = gen_json(&[
        "--rate",
        "2000",
        "--duration",
        "2s",
        "--threads",
        "1",
        &app.url("/"),
    ]);
    assert_eq!(count(&r, "sent"), 4000);
    assert_eq!(count(&r, "responses"), 4000);
    assert_eq!(count(&r, "errors"), 0);
    assert_eq!(count(&r, "dropped"), 0);
    assert_eq!(app.requests() - before, 4000, "the server's own count");
    assert_eq!(r["run"]["driver"], expected_driver());
}

#[test]
fn closed_loop_request_count_and_warmup_exclusion() {
    let app = Webapp::start(&[]);
    let r = gen_json(&[
        "--connections",
        "8",
        "--requests",
        "3000",
        &app.url("/login?deviceid=x"),
    ]);
    assert_eq!(count(&r, "responses"), 3000);
    assert_eq!(r["run"]["mode"], "closed");
    assert_eq!(app.requests(), 3000);

    // Warm-up requests reach the server but not the report.
    let before = app.requests();
    let r = gen_json(&[
        "--rate",
        "1000",
        "--warmup",
        "1s",
        "--duration",
        "1s",
        "--threads",
        "1",
        &app.url("/"),
    ]);
    assert_eq!(count(&r, "responses"), 1000);
    assert_eq!(app.requests() - before, 2000);
}

/// The wrk2 test of honesty: freeze the server for 1 s in a 10 s run at 1000 req/s. Every
/// scheduled request must still be sent, and p99 must match the truth computed from the
/// schedule (requests issued during the freeze wait until it ends), within 2%.
#[test]
fn server_stall_is_measured_from_the_intended_time() {
    let app = Webapp::start(&[]);
    let (rate, secs, stall_ms) = (1000.0, 10.0, 1000.0);
    let addr = app.addr.clone();
    let stall = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(3000));
        request(&addr, "POST", "/_admin/stall?ms=1000");
    });
    let r = gen_json(&[
        "--rate",
        "1000",
        "--duration",
        "10s",
        "--connections",
        "50",
        "--threads",
        "1",
        &app.url("/"),
    ]);
    stall.join().unwrap();
    let n = (rate * secs) as usize;
    assert_eq!(
        count(&r, "sent"),
        n as u64,
        "every scheduled request is sent"
    );
    assert_eq!(count(&r, "responses"), n as u64);
    assert_eq!(count(&r, "errors") + count(&r, "dropped"), 0);

    // Truth: request i at i/rate waits for the end of the freeze if it falls inside it;
    // otherwise it takes the unloaded service time (taken from the run's own p50).
    let base_ms = lat(&r, "response_time", "p50_us") / 1000.0;
    let stall_start_ms = 3000.3;
    let mut truth: Vec<f64> = (0..n)
        .map(|i| {
            let t = i as f64 * 1000.0 / rate;
            if t >= stall_start_ms && t < stall_start_ms + stall_ms {
                stall_start_ms + stall_ms - t + base_ms
            } else {
                base_ms
            }
        })
        .collect();
    truth.sort_by(f64::total_cmp);
    let truth_p99 = truth[(n as f64 * 0.99).ceil() as usize - 1];
    let p99_ms = lat(&r, "response_time", "p99_us") / 1000.0;
    assert!(
        (p99_ms - truth_p99).abs() <= 0.02 * truth_p99,
        "p99 {p99_ms:.1} ms vs truth {truth_p99:.1} ms"
    );
    // Service time excludes the queueing: only the ~50 requests stuck on connections
    // during the freeze (0.5%) saw it.
    let service_p99_ms = lat(&r, "service_time", "p99_us") / 1000.0;
    assert!(service_p99_ms < 50.0, "service p99 {service_p99_ms} ms");
}

#[test]
fn injected_delay_is_never_under_reported() {
    let app = Webapp::start(&["--delay", "2ms"]);
    let r = gen_json(&[
        "--rate",
        "500",
        "--duration",
        "2s",
        "--threads",
        "1",
        &app.url("/"),
    ]);
    assert_eq!(count(&r, "responses"), 1000);
    let min = lat(&r, "response_time", "min_us");
    let p50 = lat(&r, "response_time", "p50_us");
    assert!(min >= 2000.0, "min {min} µs is below the injected 2 ms");
    assert!(p50 < 3000.0, "p50 {p50} µs: overhead above 1 ms");
    assert!(lat(&r, "service_time", "min_us") >= 2000.0);
}

#[test]
fn head_requests_and_post_bodies() {
    let app = Webapp::start(&[]);
    let r = gen_json(&["-X", "HEAD", "-c", "2", "-n", "200", &app.url("/")]);
    assert_eq!(count(&r, "responses"), 200);
    // The body must reach the server: "/login - device: abc\n" is exactly one byte shorter
    // than "/login - device: None\n", which is what an empty POST gets back.
    let with = gen_json(&[
        "-d",
        "deviceid=abc",
        "-c",
        "2",
        "-n",
        "100",
        &app.url("/login"),
    ]);
    let without = gen_json(&["-X", "POST", "-c", "2", "-n", "100", &app.url("/login")]);
    assert_eq!(count(&with, "successful"), 100);
    assert_eq!(count(&without, "successful"), 100);
    assert_eq!(
        count(&without, "bytes_received") - count(&with, "bytes_received"),
        100,
        "every POST body was delivered and parsed by the server"
    );
    assert_eq!(
        request(&app.addr, "POST", "/login?deviceid=abc"),
        "/login - device: abc\n"
    );
}

#[test]
fn json_report_of_a_real_run_matches_the_schema() {
    let app = Webapp::start(&["--error-rate", "0.2"]);
    let dir = std::env::temp_dir().join(format!("gen-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("report.json");
    let r = gen_json(&[
        "--rate",
        "500",
        "--duration",
        "2s",
        "--output",
        out.to_str().unwrap(),
        &app.url("/"),
    ]);
    let file: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&out).unwrap()).expect("--output JSON");
    assert_eq!(file, r);
    assert!(
        r["errors"]["status"].as_u64().unwrap() > 100,
        "injected 500s are counted"
    );
    let schema: serde_json::Value =
        serde_json::from_str(include_str!("../../docs/report.schema.json")).unwrap();
    let v = jsonschema::validator_for(&schema).unwrap();
    let errs: Vec<String> = v.iter_errors(&r).map(|e| e.to_string()).collect();
    assert!(errs.is_empty(), "{errs:?}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn unreachable_target_counts_errors_prints_report_and_exits_1() {
    // Port 9 (discard) is closed on 127.0.0.1 here: every connect is refused.
    let out = gen(&[
        "--rate",
        "100",
        "--duration",
        "1s",
        "--timeout",
        "500ms",
        "--json",
        "http://127.0.0.1:9/",
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("report still printed");
    assert!(r["errors"]["connect"].as_u64().unwrap() > 0);
    assert_eq!(count(&r, "successful"), 0);
    // Every scheduled request is accounted for: timed out waiting for a connection, or dropped.
    assert_eq!(
        r["errors"]["timeout"].as_u64().unwrap() + count(&r, "dropped"),
        100
    );
}

#[test]
fn bad_input_is_one_line_naming_the_value_and_exit_2() {
    for (args, needle) in [
        (vec!["http//nope"], "http//nope"),
        (vec!["ftp://127.0.0.1/"], "ftp"),
        (vec!["--rate", "0", "http://127.0.0.1:9/"], "0"),
        (vec!["--rate", "-3", "http://127.0.0.1:9/"], "-3"),
        (vec!["--rate", "fast", "http://127.0.0.1:9/"], "fast"),
        (vec!["--bogus", "http://127.0.0.1:9/"], "--bogus"),
        (vec!["--duration", "10x", "http://127.0.0.1:9/"], "10x"),
        (
            vec!["--body-file", "/nonexistent/body", "http://127.0.0.1:9/"],
            "/nonexistent/body",
        ),
        (vec!["-H", "no-colon", "http://127.0.0.1:9/"], "no-colon"),
    ] {
        let out = gen(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(out.stdout.is_empty());
    }
}

/// On a terminal a live line (rate, p99, errors) is redrawn every second; piped, it is off.
#[test]
fn live_progress_line_only_on_a_terminal() {
    let app = Webapp::start(&[]);
    let cmd = format!(
        "{} --rate 200 --duration 2s --threads 1 {}",
        gen_bin().display(),
        app.url("/")
    );
    // `script` runs the command on a pseudo-terminal (util-linux, on every Debian).
    let out = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .output()
        .expect("running script");
    let tty = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{tty}");
    assert!(
        tty.contains("\r\x1b[2K["),
        "no progress line on a terminal: {tty:?}"
    );
    assert!(tty.contains("/200.0 req/s  p99 "), "{tty:?}");

    let piped = std::process::Command::new(gen_bin())
        .args(["--rate", "200", "--duration", "1s", &app.url("/")])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&piped.stderr).contains("req/s"));
}

/// A server that closes every connection after 5 requests (nginx `keepalive_requests 5`
/// sends `Connection: close` on the 5th): gen reopens connections and loses nothing.
#[test]
fn connections_closed_by_the_server_are_reopened() {
    let Some(nginx) = Nginx::start("keepalive_requests 5;") else {
        return;
    };
    let url = format!("http://{}/", nginx.addr);
    let r = gen_json(&["-c", "4", "-n", "2000", &url]);
    assert_eq!(count(&r, "successful"), 2000);
    assert_eq!(count(&r, "errors"), 0);
    let r = gen_json(&[
        "--rate",
        "1000",
        "--duration",
        "1s",
        "-c",
        "4",
        "--threads",
        "1",
        &url,
    ]);
    assert_eq!(count(&r, "successful"), 1000);
    assert_eq!(count(&r, "errors") + count(&r, "dropped"), 0);
    // Every connection served 5 requests: about 400 connects, each timed.
    assert!(r["latency"]["connect_time"]["count"].as_u64().unwrap() >= 190);
}

/// When no connection is free the request waits in a bounded queue; past the bound it is
/// dropped and counted. Every scheduled request is accounted for.
#[test]
fn queue_overflow_is_counted_as_dropped() {
    let app = Webapp::start(&[]);
    let addr = app.addr.clone();
    let stall = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(500));
        request(&addr, "POST", "/_admin/stall?ms=800");
    });
    let r = gen_json(&[
        "--rate",
        "1000",
        "--duration",
        "2s",
        "-c",
        "2",
        "--threads",
        "1",
        "--max-queue",
        "100",
        &app.url("/"),
    ]);
    stall.join().unwrap();
    let dropped = count(&r, "dropped");
    assert!(dropped > 500, "dropped {dropped}");
    assert_eq!(
        count(&r, "successful") + count(&r, "errors") + dropped,
        2000
    );
    assert!(
        r["generator_bound"].as_bool().unwrap(),
        "drops flag the run"
    );
}

/// In a cgroup whose CPU quota is one CPU, the default is one thread (not one per visible
/// CPU, which would be throttled). Needs a writable cgroup v1 `cpu` hierarchy (root).
#[test]
fn default_threads_follow_the_cgroup_cpu_quota() {
    let root = std::path::Path::new("/sys/fs/cgroup/cpu");
    let dir = root.join(format!("gen-quota-test-{}", std::process::id()));
    if !root.join("cpu.cfs_quota_us").exists() || std::fs::create_dir(&dir).is_err() {
        eprintln!(
            "skipped: no writable cgroup v1 cpu hierarchy at {}",
            root.display()
        );
        return;
    }
    let set = |f: &str, v: &str| std::fs::write(dir.join(f), v).unwrap();
    set("cpu.cfs_period_us", "100000");
    set("cpu.cfs_quota_us", "100000");
    let app = Webapp::start(&[]);
    let gen = gen_bin();
    let procs = dir.join("cgroup.procs");
    let out = std::process::Command::new("sh")
        .args([
            "-c",
            r#"echo $$ > "$0" && exec "$@""#,
            procs.to_str().unwrap(),
            gen.to_str().unwrap(),
        ])
        .args(["--rate", "200", "--duration", "1s", "--json", "--quiet"])
        .arg(app.url("/"))
        .output()
        .unwrap();
    let _ = std::fs::remove_dir(&dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["run"]["threads"], 1, "{}", r["run"]);
}
