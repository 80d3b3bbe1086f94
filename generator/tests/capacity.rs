//! `gen capacity` end to end against sample-webapp on 127.0.0.1:
//! - a server with a hard ceiling (one worker, 4 requests in service, 2 ms each: at most
//!   2000 req/s, less on a busy machine) is found at most 10% below the ceiling measured just
//!   before by a closed-loop run and not above the nominal one, with the knee's step blamed on
//!   latency, and the chart files written;
//! - a generator starved of CPU (pinned to a core kept busy by a high-priority spinning child)
//!   reports "generator-bound" (exit 4), never a server capacity;
//! - bad input exits 2 with one line.
//!
//! Every load is bounded: 2 s steps, a few steps, `--max` caps the rate.

mod common;

use std::io::{BufReader, Read};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::{gen, gen_bin, gen_json, request, Webapp};

/// The load tests run one at a time: the starved-generator test's spinner would starve
/// whatever else runs on its CPU, and concurrent loads would blur each other's knees.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn capacity(args: &[&str]) -> (Output, serde_json::Value) {
    let out = Command::new(gen_bin())
        .arg("capacity")
        .args(args)
        .args(["--json", "--quiet", "--probes", "off"])
        .output()
        .expect("running gen capacity");
    let doc = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON ({e}); exit {:?}\nstderr: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out, doc)
}

fn steps_table(doc: &serde_json::Value) -> String {
    doc["capacity"]["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            format!(
                "{:>8.0} achieved {:>8.0} p99 {:>8.2}ms lag {:>7.2}ms {} {}\n",
                s["rate"].as_f64().unwrap_or(0.0),
                s["achieved"].as_f64().unwrap_or(0.0),
                s["p99_ms"].as_f64().unwrap_or(-1.0),
                s["lag_p99_ms"].as_f64().unwrap_or(-1.0),
                s["reason"].as_str().unwrap_or("pass"),
                s["detail"].as_str().unwrap_or(""),
            )
        })
        .collect()
}

/// The server's hard ceiling: `--max-concurrency 4` slots held `--delay 2ms` each.
const NOMINAL: f64 = 2000.0;

#[test]
fn known_ceiling_is_found_within_ten_percent() {
    let _serial = serial();
    let app = Webapp::start(&["--workers", "1", "--max-concurrency", "4", "--delay", "2ms"]);
    let url = app.url("/");
    // The ceiling on this machine now: a closed loop with more connections than the server
    // has slots keeps every slot busy, so its rate is the server's throughput limit.
    let truth = gen_json(&[
        &url,
        "--connections",
        "8",
        "--threads",
        "1",
        "--duration",
        "3s",
        "--probes",
        "off",
    ])["throughput"]["achieved_rate"]
        .as_f64()
        .expect("achieved_rate");
    assert!(truth > 200.0, "the server barely answered: {truth} req/s");
    let dir = std::env::temp_dir().join(format!("gen-capacity-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (svg, png) = (dir.join("c.svg"), dir.join("c.png"));
    let (from, max) = (format!("{:.0}", truth / 3.0), format!("{:.0}", truth * 3.0));
    let (out, doc) = capacity(&[
        &url,
        "--slo",
        "p99<100ms",
        "--slo",
        "errors<1%",
        "--from",
        &from,
        "--max",
        &max,
        "--step-duration",
        "2s",
        "--warmup",
        "1s",
        "--cooldown",
        "300ms",
        "--precision",
        "4%",
        "--threads",
        "1",
        "--chart",
        svg.to_str().unwrap(),
        "--chart",
        png.to_str().unwrap(),
    ]);
    let c = &doc["capacity"];
    let table = steps_table(&doc);
    assert_eq!(out.status.code(), Some(0), "{}\n{table}", c["why"]);
    assert_eq!(c["verdict"], "found", "{table}");
    let ok = c["max_ok_rate"].as_f64().unwrap();
    let bad = c["first_bad_rate"].as_f64().unwrap();
    eprintln!("closed-loop ceiling {truth:.0} req/s, capacity found {ok:.0} req/s\n{table}");
    assert!(ok < bad, "{ok} {bad}");
    // Known from both sides: the server cannot exceed 4 slots / 2 ms (2000 req/s, 2% for the
    // measurement), and the closed loop showed what it sustains on this machine now (it reads
    // a few percent low: each connection idles for a round trip between requests).
    assert!(
        ok >= 0.90 * truth && ok <= NOMINAL * 1.02,
        "found {ok:.0} req/s, closed-loop ceiling {truth:.0}, nominal {NOMINAL:.0}\n{table}"
    );
    let knee = c["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["rate"].as_f64() == Some(bad))
        .unwrap();
    assert_eq!(knee["reason"], "latency", "{table}");
    assert!(knee["detail"].as_str().unwrap().contains("p99"), "{table}");
    assert_eq!(c["slos"], serde_json::json!(["p99<100ms", "errors<1%"]));
    // Each step keeps its full report.
    assert_eq!(knee["report"]["run"]["mode"], "open");
    assert_eq!(knee["report"]["run"]["target_rate"].as_f64(), Some(bad));
    let svg_text = std::fs::read_to_string(&svg).unwrap();
    assert!(svg_text.starts_with("<svg") && svg_text.contains(&format!("capacity {ok:.0} req/s")));
    assert_eq!(&std::fs::read(&png).unwrap()[..4], b"\x89PNG");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A child process killed by PID on drop.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A busy loop at the highest priority, pinned to `cpu`.
fn spinner(cpu: usize) -> Guard {
    // `nice -n -19` needs root (CI and developers are); without it the spinner runs at normal
    // priority and still takes half the core.
    let child = Command::new("taskset")
        .args(["-c", &cpu.to_string(), "nice", "-n", "-19"])
        .args(["sh", "-c", "while :; do :; done"])
        .stderr(Stdio::null())
        .spawn()
        .expect("starting the spinner");
    Guard(child)
}

fn allowed_cpus() -> Vec<usize> {
    generator::engine::allowed_cpus()
}

#[test]
fn starved_generator_is_generator_bound() {
    let _serial = serial();
    let cpus = allowed_cpus();
    if cpus.len() < 2 {
        eprintln!("skipping: needs two CPUs (the server must not share the starved one)");
        return;
    }
    let (gen_cpu, server_cpu) = (cpus[cpus.len() - 1], cpus[0]);
    let app = Webapp::start_pinned(server_cpu, &["--workers", "1"]);
    let _spin = spinner(gen_cpu);
    std::thread::sleep(Duration::from_millis(200));
    let out = Command::new("taskset")
        .args(["-c", &gen_cpu.to_string()])
        .arg(gen_bin())
        .args(["capacity", &app.url("/")])
        .args(["--slo", "p99<5ms", "--slo", "errors<1%"])
        .args(["--from", "2000", "--max", "32000", "--step-duration", "2s"])
        .args(["--warmup", "500ms", "--cooldown", "200ms", "--threads", "1"])
        .args(["--json", "--quiet", "--probes", "off"])
        .output()
        .expect("running gen capacity");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no JSON ({e}): {}", String::from_utf8_lossy(&out.stderr)));
    let c = &doc["capacity"];
    let table = steps_table(&doc);
    assert_eq!(c["verdict"], "generator-bound", "{}\n{table}", c["why"]);
    assert_eq!(out.status.code(), Some(4), "{table}");
    let g = c["generator_bound_rate"].as_f64().unwrap();
    let last = c["steps"].as_array().unwrap().last().unwrap();
    assert_eq!(
        (last["rate"].as_f64(), &last["reason"]),
        (Some(g), &"generator".into())
    );
    // Never a server capacity: no server breach is reported, anything that passed is below.
    assert!(c["first_bad_rate"].is_null(), "{table}");
    assert!(c["max_ok_rate"].as_f64().is_none_or(|ok| ok < g), "{table}");
    assert!(c["why"]
        .as_str()
        .unwrap()
        .contains("not the server's capacity"));
}

#[test]
fn bad_input_exits_2_with_one_line() {
    for args in [
        &["capacity", "http://127.0.0.1:9/"][..],
        &["capacity", "http://127.0.0.1:9/", "--slo", "p99<1parsec"],
        &[
            "capacity",
            "http://127.0.0.1:9/",
            "--slo",
            "p99<1s",
            "--rate",
            "5",
        ],
        &[
            "capacity",
            "http://127.0.0.1:9/",
            "--slo",
            "p99<1s",
            "--chart",
            "x.jpg",
        ],
    ] {
        let out = gen(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
    }
}

#[test]
fn through_the_coordinator_with_two_workers() {
    let _serial = serial();
    let app = Webapp::start(&[]);
    let mut coord = Command::new(gen_bin())
        .args(["coordinator", "capacity", "--listen", "127.0.0.1:0"])
        .args(["--expect-workers", "2", "--wait", "30s", &app.url("/")])
        .args(["--slo", "p99<250ms", "--slo", "errors<1%"])
        .args(["--from", "200", "--max", "400", "--step-duration", "1s"])
        .args(["--warmup", "0s", "--cooldown", "0s", "--threads", "1"])
        .args(["--json", "--quiet", "--probes", "off"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting gen coordinator capacity");
    let mut stderr = BufReader::new(coord.stderr.take().unwrap());
    let mut stdout = coord.stdout.take().unwrap();
    let mut coord = Guard(coord);
    let addr = common::coordinator_addr(&mut stderr);
    let _workers: Vec<Guard> = ["w1", "w2"]
        .iter()
        .map(|name| {
            Guard(
                Command::new(gen_bin())
                    .args(["worker", "--coordinator", &addr, "--name", name])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("starting gen worker"),
            )
        })
        .collect();
    // The UI's chart appears after the first step, while the search goes on.
    let deadline = Instant::now() + Duration::from_secs(60);
    let chart = loop {
        let body = request(&addr, "GET", "/api/v1/capacity/chart.svg");
        if body.starts_with("<svg") {
            break body;
        }
        assert!(Instant::now() < deadline, "no chart in the UI: {body}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(chart.contains("offered rate"), "{chart}");
    let mut out = String::new();
    stdout.read_to_string(&mut out).unwrap();
    let code = coord.0.wait().unwrap().code();
    let doc: serde_json::Value = serde_json::from_str(&out).expect("JSON report");
    let c = &doc["capacity"];
    let table = steps_table(&doc);
    assert_eq!(code, Some(0), "{table}");
    assert_eq!(c["verdict"], "not-reached", "{table}");
    assert_eq!(c["max_ok_rate"].as_f64(), Some(400.0));
    let steps = c["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2, "{table}");
    for s in steps {
        // The merged figures of both workers: the whole step's rate.
        let (rate, achieved) = (s["rate"].as_f64().unwrap(), s["achieved"].as_f64().unwrap());
        assert!((achieved - rate).abs() <= 0.02 * rate, "{table}");
    }
}
