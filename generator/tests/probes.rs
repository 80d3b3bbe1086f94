//! The eBPF kernel probes against a real server: kernel latency of a known server delay, the
//! split between service time and kernel latency, one kernel-timed request per request sent,
//! and runs without the capabilities the probes need. Kernel-dependent: each test checks
//! first whether probes can load here and prints why it skips when they cannot.

mod common;

use std::process::Command;

use common::{gen_bin, lat, probes_unavailable, Webapp};
use serde_json::Value;

/// The tests of this file run one at a time: the latency test's bounds (2 ms + 100 µs) are
/// tight enough that another test's loopback traffic on the same cores could move them.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn kernel(r: &Value, hist: &str, key: &str) -> f64 {
    r["kernel"][hist][key]
        .as_f64()
        .unwrap_or_else(|| panic!("kernel.{hist}.{key} missing in {}", r["kernel"]))
}

/// gen with `--json --quiet`; returns (exit code, report or Null, stderr).
fn run_gen(prefix: &[&str], args: &[&str]) -> (Option<i32>, Value, String) {
    let mut cmd = if let Some((first, rest)) = prefix.split_first() {
        let mut c = Command::new(first);
        c.args(rest);
        c
    } else {
        Command::new(gen_bin())
    };
    let out = cmd
        .args(args)
        .args(["--json", "--quiet"])
        .output()
        .expect("running gen");
    let report = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (
        out.status.code(),
        report,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// How many runs the p50 bound gets (every other check holds in every run).
const P50_ATTEMPTS: usize = 3;

#[test]
fn kernel_latency_of_a_fixed_server_delay() {
    let _serial = serial();
    if let Some(why) = probes_unavailable() {
        eprintln!("skipped: kernel probes unavailable here: {why}");
        return;
    }
    // One server worker: with two, waking whichever is parked adds ~20 µs at the median.
    let app = Webapp::start(&["--delay", "2ms", "--workers", "1"]);
    let url = app.url("/");
    // The kernel latency is the server's hold plus the server's own path (wake its worker,
    // parse, release, write), whose fastest case is the run's minimum minus 2 ms (21-29 µs
    // here), plus that path's jitter, which on this shared 2-vCPU VM moves the median by
    // ±50 µs from one run to the next (p50 2051-2117 µs over runs, CI included;
    // docs/probes.md). So the median is judged against the run's own floor: at most 100 µs
    // above the minimum, with the minimum itself at most 100 µs above 2 ms, in one of
    // `P50_ATTEMPTS` runs. Everything else, above all "never below 2 ms", holds in every run.
    let mut seen = Vec::new();
    for _ in 0..P50_ATTEMPTS {
        let (min, p50) = timed_run(&url);
        seen.push((min, p50));
        if min <= 2100.0 && p50 <= min + 100.0 {
            return;
        }
    }
    panic!(
        "kernel latency (min, p50) above 2 ms + 100 µs and min + 100 µs in every run: {seen:?} µs"
    );
}

/// One run at 1000 req/s against the 2 ms server: checks everything but the median's bound,
/// and returns the minimum and median kernel latency (µs).
fn timed_run(url: &str) -> (f64, f64) {
    let (code, r, stderr) = run_gen(
        &[],
        &[
            "--probes",
            "on",
            "--rate",
            "1000",
            "--duration",
            "3s",
            "--connections",
            "16",
            url,
        ],
    );
    assert_eq!(code, Some(0), "stderr: {stderr}");
    assert!(
        stderr.is_empty(),
        "no notice when the probes load: {stderr}"
    );
    let k = &r["kernel"];
    assert_eq!(k["status"], "measured", "{k}");
    if generator_ebpf::kernel_version().is_some_and(|v| v >= (6, 3)) {
        assert_eq!(k["attach"], "tracepoint");
    }

    // The server holds every response 2 ms: the kernel never sees less.
    let min = kernel(&r, "latency", "min_us");
    assert!(
        min >= 2000.0,
        "kernel latency min {min} µs is below the 2 ms delay"
    );

    // Service time covers what the kernel saw, at every rank. It starts earlier (gen's clock
    // before the send call; the kernel's at tcp_sendmsg_locked) but ends a little earlier
    // too: at the response's receive timestamp (SO_TIMESTAMPNS, set as the packet enters the
    // stack), while data-ready comes after TCP's receive processing, later still when gen
    // holds the socket lock. Slack: that processing (measured up to 10 µs at p50 and p90,
    // up to 58 µs at p99, docs/probes.md) plus the kernel buckets' midpoints (<= 0.2% off).
    for (q, slack_us) in [("p50_us", 25.0), ("p90_us", 25.0), ("p99_us", 100.0)] {
        let (s, kl) = (lat(&r, "service_time", q), kernel(&r, "latency", q));
        assert!(
            s >= kl * (1.0 - 0.002) - slack_us,
            "service {q} {s} µs below kernel latency {kl} µs"
        );
        let o = k["generator_overhead"][q].as_f64().unwrap();
        assert_eq!(o, s - kl, "overhead is the difference at {q}");
    }

    // One kernel-timed request per request sent (0.1%).
    let sent = r["counts"]["sent"].as_f64().unwrap();
    let timed = kernel(&r, "latency", "count");
    assert!(sent >= 2850.0, "sent {sent}");
    assert!(
        (timed - sent).abs() <= (sent * 0.001).max(1.0),
        "{timed} kernel-timed vs {sent} sent"
    );
    // Every connection was registered and timed; nothing else was.
    assert_eq!(k["sockets"], 16, "{k}");
    assert_eq!(k["connect_time"]["count"], 16, "{k}");
    assert!(
        kernel(&r, "srtt", "count") >= sent,
        "tcp_probe per incoming segment"
    );
    assert_eq!(k["retransmits"], 0, "loopback does not retransmit: {k}");
    (min, kernel(&r, "latency", "p50_us"))
}

#[test]
fn probes_off_means_no_kernel_figures() {
    let _serial = serial();
    let app = Webapp::start(&[]);
    let (code, r, stderr) = run_gen(
        &[],
        &["--probes", "off", "-n", "50", "-c", "2", &app.url("/")],
    );
    assert_eq!(code, Some(0), "stderr: {stderr}");
    assert_eq!(r["kernel"]["status"], "off");
    assert!(r["kernel"]["latency"].is_null());
    assert!(stderr.is_empty(), "{stderr}");
}

/// `capsh --drop=...` removes the capabilities from the bounding set before gen starts.
#[test]
fn without_capabilities_the_run_goes_on_with_one_notice() {
    let _serial = serial();
    let capsh = ["/usr/sbin/capsh", "/sbin/capsh", "/usr/bin/capsh"]
        .into_iter()
        .find(|p| std::path::Path::new(p).is_file());
    let Some(capsh) = capsh else {
        eprintln!("skipped: capsh not installed (Debian package libcap2-bin)");
        return;
    };
    if !generator_ebpf::has_capabilities() {
        eprintln!("skipped: this test process has no capabilities to drop");
        return;
    }
    let app = Webapp::start(&[]);
    let url = app.url("/");
    let gen = gen_bin().display().to_string();
    let shell =
        |mode: &str| format!("exec '{gen}' --probes {mode} -n 100 -c 2 --json --quiet '{url}'");
    let drop_caps = "--drop=cap_bpf,cap_perfmon,cap_sys_admin";

    let out = Command::new(capsh)
        .args([drop_caps, "--", "-c", &shell("auto")])
        .output()
        .expect("running capsh");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "exactly one notice: {stderr}");
    assert!(
        lines[0].starts_with("gen: kernel probes off: ") && lines[0].contains("CAP_BPF"),
        "{stderr}"
    );
    let r: Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(r["counts"]["responses"], 100, "the run went on");
    assert_eq!(r["kernel"]["status"], "unavailable");
    assert!(r["kernel"]["reason"]
        .as_str()
        .unwrap()
        .contains("permission"));

    // --probes on makes the same condition an error: exit 2, one line.
    let out = Command::new(capsh)
        .args([drop_caps, "--", "-c", &shell("on")])
        .output()
        .expect("running capsh");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("gen: --probes on: "), "{stderr}");
    assert!(out.stdout.is_empty(), "nothing was run");
}
