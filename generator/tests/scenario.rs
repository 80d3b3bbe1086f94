//! Scenario runs end to end: the seed workload's bodies as a Flask-style form parser sees
//! them (captured by a recording server, then echoed back by sample-webapp), its login share
//! by the server's own per-path counts, the per-name report rows, and bad files refused with
//! exit code 2. All traffic on 127.0.0.1, every run bounded by a request count.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use common::{gen_bin, gen_json, recording_server, Webapp};
use generator::http::template::is_uuid_v4;

fn seed() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/../scenarios/seed.toml").to_string()
}

fn form(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body).into_owned().collect()
}

/// `YYYY-MM-DD HH:MM:SS.ffffff` (or without the fraction when it is zero, as Python does).
fn is_python_timestamp(s: &str) -> bool {
    let pattern = "dddd-dd-dd dd:dd:dd.dddddd";
    (s.len() == 26 || s.len() == 19)
        && s.bytes().zip(pattern.bytes()).all(|(c, p)| match p {
            b'd' => c.is_ascii_digit(),
            p => c == p,
        })
}

fn local_date_hour(tz: &str) -> String {
    let out = Command::new("date")
        .env("TZ", tz)
        .arg("+%Y-%m-%d %H")
        .output()
        .expect("date");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn seed_bodies_arrive_as_a_form_parser_reads_them() {
    let (addr, seen) = recording_server();
    let tz = "Asia/Kolkata"; // UTC+05:30: a UTC timestamp would be caught.
    let before = local_date_hour(tz);
    let out = Command::new(gen_bin())
        .env("TZ", tz)
        .args([
            "--scenario",
            &seed(),
            "-n",
            "3000",
            "-c",
            "8",
            "--threads",
            "2",
        ])
        .args(["--seed", "42", "--timeout", "5s", "--json", "--quiet"])
        .arg(format!("http://{addr}"))
        .output()
        .unwrap();
    let after = local_date_hour(tz);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3000);

    let mut device_of_conn: HashMap<usize, String> = HashMap::new();
    let mut last_ts: HashMap<usize, String> = HashMap::new();
    let mut paths: HashMap<&str, u64> = HashMap::new();
    for (conn, path, body) in &seen {
        *paths.entry(path.as_str()).or_default() += 1;
        let fields = form(body);
        let keys: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
        match path.as_str() {
            "/login" => assert_eq!(keys, ["deviceid"]),
            "/metrics" => {
                assert_eq!(keys, ["deviceid", "timestamp"]);
                let ts = &fields[1].1;
                assert!(is_python_timestamp(ts), "{ts:?}");
                assert!(
                    ts.starts_with(&before) || ts.starts_with(&after),
                    "{ts:?} is not local time ({before} .. {after})"
                );
                // Requests on one connection follow each other: time never goes back.
                if let Some(prev) = last_ts.insert(*conn, ts.clone()) {
                    assert!(prev <= *ts, "{prev} then {ts}");
                }
            }
            other => panic!("unexpected path {other}"),
        }
        let id = &fields[0].1;
        assert!(is_uuid_v4(id), "{id:?}");
        // One device per connection (user), for its whole life.
        let first = device_of_conn.entry(*conn).or_insert_with(|| id.clone());
        assert_eq!(first, id, "connection {conn} changed its device id");
    }
    let devices: std::collections::HashSet<&String> = device_of_conn.values().collect();
    assert_eq!(
        devices.len(),
        8,
        "each of the 8 connections is its own device"
    );

    // The report's per-name rows agree with what the server saw.
    let rows = report["endpoints"].as_array().expect("endpoints rows");
    let row = |name: &str| {
        rows.iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("no row {name}: {rows:?}"))
    };
    for p in ["/login", "/metrics"] {
        assert_eq!(
            row(p)["requests"].as_u64(),
            paths.get(p).copied().or(Some(0))
        );
        assert_eq!(row(p)["failures"], 0);
    }
    assert_eq!(row("Aggregated")["requests"], 3000);
    common::assert_schema_valid(&report);

    // sample-webapp, the tutorial's app, reads the same values back out of these bodies.
    let app = Webapp::start(&[]);
    for (_, path, body) in seen.iter().filter(|(_, p, _)| p == "/metrics").take(20) {
        let fields = form(body);
        let echoed = post(&app.addr, path, body);
        assert_eq!(
            echoed,
            format!(
                "/metrics - device: {}, timestamp: {}\n",
                fields[0].1, fields[1].1
            )
        );
    }
}

fn post(addr: &str, path: &str, body: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out.split_once("\r\n\r\n").unwrap().1.to_string()
}

/// Over 200,000 requests the login share is 0.1% within 5 standard deviations (binomial:
/// mean 200, sd 14.1), by sample-webapp's own per-path counts, which match gen's rows.
#[test]
fn seed_login_share_is_one_in_a_thousand() {
    let app = Webapp::start(&[]);
    let n = 200_000u64;
    let r = gen_json(&[
        "--scenario",
        &seed(),
        "-n",
        &n.to_string(),
        "-c",
        "32",
        "--timeout",
        "5s",
        &app.url("/"),
    ]);
    let stats: serde_json::Value =
        serde_json::from_str(&common::request(&app.addr, "GET", "/_stats")).unwrap();
    let login = stats["paths"]["/login"].as_u64().unwrap();
    let metrics = stats["paths"]["/metrics"].as_u64().unwrap();
    assert_eq!(login + metrics, n, "{stats}");
    let expected = n as f64 / 1000.0;
    let sd = (n as f64 * 0.001 * 0.999).sqrt();
    assert!(
        (login as f64 - expected).abs() <= 5.0 * sd,
        "{login} logins in {n} requests (expected {expected} ± {:.0})",
        5.0 * sd
    );
    let rows = r["endpoints"].as_array().unwrap();
    assert_eq!(rows[0]["name"], "/login");
    assert_eq!(rows[0]["requests"], login);
    assert_eq!(rows[1]["requests"], metrics);
    assert_eq!(rows[2]["failures"], 0);
}

#[test]
fn bad_scenarios_exit_2_with_file_line_and_reason() {
    let dir = std::env::temp_dir().join(format!("gen-bad-scenario-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (text, line, needle) in [
        ("[[request]]\npath = \"/\"\nmethd = \"GET\"\n", 3, "methd"),
        (
            "[[request]]\npath = \"/\"\nbody = \"{{nope}}\"\n",
            1,
            "{{nope}}",
        ),
        ("[[request]]\npath = \"/\"\nweight = 0\n", 1, "weight 0"),
        (
            "[csv]\nfile = \"absent.csv\"\n[[request]]\npath = \"/\"\n",
            1,
            "absent.csv",
        ),
    ] {
        let p = dir.join("s.toml");
        std::fs::write(&p, text).unwrap();
        let out = common::gen(&["--scenario", p.to_str().unwrap(), "http://127.0.0.1:9/"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains(&format!("s.toml:{line}:")) && err.contains(needle),
            "{err}"
        );
    }
    let out = common::gen(&["--scenario", "/nonexistent/x.toml", "http://127.0.0.1:9/"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/x.toml"));
}
