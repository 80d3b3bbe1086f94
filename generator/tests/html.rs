//! The HTML report end to end: `gen --html` of a scenario run against the real sample-webapp,
//! `gen coordinator --html` of a headless cluster run, and `gen report --html` of a saved
//! capacity result, each opened in headless Chromium (`tests/ui/html_test.mjs`) with a
//! screenshot left in `target/<profile>/html-report-test/`.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{gen_bin, Webapp};

/// A request name that would end the data tag and run a script if it were not escaped.
const HOSTILE_NAME: &str = "</script><script>window.pwned=1</script>";

/// A fresh directory under target/<profile>/html-report-test/.
fn out_dir(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile = exe.parent().and_then(|d| d.parent()).unwrap();
    let dir = profile.join("html-report-test").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Opens the page in headless Chromium and checks `expect` (see html_test.mjs); skips, with
/// the reason printed, where the browser is missing.
fn check_in_browser(html: &Path, shot: &Path, expect: serde_json::Value) {
    let Some(browser) = common::Browser::find() else {
        return;
    };
    let expect = expect.to_string();
    let args = [html.as_os_str(), shot.as_os_str(), expect.as_ref()];
    browser.run(90, "html_test.mjs", &args, "HTML ok");
    let png = std::fs::metadata(shot).expect("screenshot written").len();
    assert!(png > 20_000, "screenshot of {png} bytes");
}

/// `gen report --html HTML INPUT`.
fn gen_report(html: &Path, input: &Path) -> std::process::Output {
    Command::new(gen_bin())
        .args(["report", "--html"])
        .arg(html)
        .arg(input)
        .output()
        .unwrap()
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn html_report_of_a_scenario_run() {
    let app = Webapp::start(&[]);
    let dir = out_dir("run");
    let scenario = dir.join("hostile.toml");
    std::fs::write(
        &scenario,
        format!(
            "[[request]]\nname = \"/\"\npath = \"/\"\nweight = 3\n\n\
             [[request]]\nname = \"{}\"\npath = \"/login\"\nweight = 1\n",
            HOSTILE_NAME.replace('"', "\\\"")
        ),
    )
    .unwrap();
    let (json, html) = (dir.join("run.json"), dir.join("run.html"));
    let out = Command::new(gen_bin())
        .arg("--scenario")
        .arg(&scenario)
        .args(["--rate", "300", "--duration", "3s", "--quiet"])
        .args(["--threshold", "p99<10s", "--threshold", "max<1us"])
        .arg("--output")
        .arg(&json)
        .arg("--html")
        .arg(&html)
        .arg(app.url("/"))
        .output()
        .unwrap();
    // max<1us cannot hold: the run exits 3 and the page shows it.
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = read_json(&json);
    common::assert_schema_valid(&report);
    assert_eq!(report["endpoints"][1]["name"], HOSTILE_NAME);
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        !page.contains("window.pwned=1</script>"),
        "name not escaped"
    );
    check_in_browser(
        &html,
        &dir.join("run.png"),
        serde_json::json!({
            "charts": ["chart-rate", "chart-latency", "chart-errors", "chart-spectrum"],
            "rows": {"endpoints": 3, "thresholds": 2},
            "cells": [HOSTILE_NAME, "Aggregated", "p99<10s", "pass", "FAIL", "response time"],
            "badge": "threshold failed",
        }),
    );
    // The saved JSON renders the same page later.
    let again = dir.join("again.html");
    let out = gen_report(&again, &json);
    assert!(out.status.success());
    let again = std::fs::read_to_string(&again).unwrap();
    assert_eq!(again.len(), page.len(), "gen report differs from --html");
}

#[test]
fn gen_report_renders_a_capacity_result() {
    let dir = out_dir("capacity");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/capacity.json");
    let html = dir.join("capacity.html");
    let out = gen_report(&html, &fixture);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    check_in_browser(
        &html,
        &dir.join("capacity.png"),
        serde_json::json!({
            "charts": ["chart-capacity"],
            "rows": {"steps": 7},
            "cells": ["FAIL: latency", "FAIL: errors", "pass", "6,500"],
            "badge": "capacity found: 6,000 req/s",
        }),
    );
}

#[test]
fn gen_report_refuses_what_is_not_a_report() {
    let dir = out_dir("bad");
    let not_report = dir.join("package.json");
    std::fs::write(&not_report, r#"{"name": "x", "run": 1}"#).unwrap();
    let missing = dir.join("missing.json");
    for input in [&not_report, &missing] {
        let out = gen_report(&dir.join("x.html"), input);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(&input.display().to_string()), "{err}");
        assert!(!dir.join("x.html").exists());
    }
}

/// A child process killed by PID on drop.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn coordinator_headless_run_writes_json_and_html() {
    let app = Webapp::start(&[]);
    let dir = out_dir("cluster");
    let (json, html) = (dir.join("cluster.json"), dir.join("cluster.html"));
    let mut coord = Command::new(gen_bin())
        .args([
            "coordinator",
            "--listen",
            "127.0.0.1:0",
            "--expect-workers",
            "1",
        ])
        .args([
            "--wait",
            "30s",
            "--rate",
            "200",
            "--duration",
            "2s",
            "--quiet",
        ])
        .args(["--threshold", "errors<1%", "--target", &app.url("/")])
        .arg("--output")
        .arg(&json)
        .arg("--html")
        .arg(&html)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(coord.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    // Keep reading: a closed pipe would make the coordinator's next eprintln! fail.
    let rest = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut s);
        s
    });
    let mut coord = Guard(coord);
    let addr = line
        .split_whitespace()
        .nth(4)
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    let _worker = Guard(
        Command::new(gen_bin())
            .args(["worker", "--coordinator", &addr, "--name", "w-html"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = coord.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "coordinator still running");
        std::thread::sleep(Duration::from_millis(100));
    };
    let log = rest.join().unwrap_or_default();
    assert_eq!(status.code(), Some(0), "{log}");
    let report = read_json(&json);
    common::assert_schema_valid(&report);
    assert_eq!(report["cluster"]["workers"][0]["name"], "w-html");
    assert_eq!(report["thresholds"][0]["pass"], true);
    check_in_browser(
        &html,
        &dir.join("cluster.png"),
        serde_json::json!({
            "charts": ["chart-rate", "chart-latency", "chart-spectrum"],
            "rows": {"thresholds": 1},
            "cells": ["errors<1%"],
            "badge": "PASS",
        }),
    );
}
