//! The users model end to end (Locust's model: closed-loop users with think time, spawned at a
//! rate): the achieved rate is users / (think + service time), spawning ramps the per-second
//! rate as the plan says, each user keeps one `{{user.id}}` and no two users share one,
//! current RPS shows the end of the ramp, and bad values exit 2 naming the value. Traffic to
//! sample-webapp or a recording server on 127.0.0.1, every run bounded to a few seconds.

mod common;

use std::collections::{HashMap, HashSet};

use common::{gen, gen_json, recording_server, Webapp};
use generator::http::template::is_uuid_v4;

/// A scenario file `NAME.toml` with `text`, in a directory of this test process.
fn scenario_file(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("gen-users-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("{name}.toml"));
    std::fs::write(&file, text).unwrap();
    file
}

/// Requests user `k` (spawned at `k / rate`) starts within second `sec`, looping every `cycle`
/// seconds (think + service), in a run of `len` seconds.
fn planned_starts(users: u64, rate: f64, cycle: f64, sec: u64, len: f64) -> f64 {
    let (a, b) = (sec as f64, (sec as f64 + 1.0).min(len));
    (0..users)
        .map(|k| {
            let s = k as f64 / rate;
            // Sends at s + j * cycle, j >= 0: how many fall in [a, b).
            let upto = |t: f64| {
                if t <= s {
                    0.0
                } else {
                    ((t - s) / cycle).ceil()
                }
            };
            upto(b) - upto(a)
        })
        .sum()
}

#[test]
fn rate_is_users_over_think_plus_service() {
    let app = Webapp::start(&[]);
    let r = gen_json(&[
        "--users",
        "20",
        "--think",
        "100ms",
        "--duration",
        "3s",
        "--threads",
        "2",
        &app.url("/"),
    ]);
    common::assert_schema_valid(&r);
    assert_eq!(r["run"]["connections"], 20);
    assert_eq!(r["run"]["users"]["users"], 20);
    assert_eq!(r["run"]["users"]["spawn_rate"], serde_json::Value::Null);
    assert_eq!(r["run"]["users"]["think_min_s"], 0.1);
    assert_eq!(r["errors"]["total"], 0);
    let service_s = common::lat(&r, "service_time", "mean_us") / 1e6;
    let want = 20.0 / (0.1 + service_s);
    let got = r["throughput"]["achieved_rate"].as_f64().unwrap();
    // Each user sends ceil(3 s / cycle) requests: within one cycle per user of the rate.
    assert!(
        (got - want).abs() <= 0.05 * want,
        "achieved {got:.1} req/s, users/(think+service) = {want:.1}"
    );
    // Think time is never latency: every response is far below the 100 ms think.
    let max_ms = common::lat(&r, "response_time", "max_us") / 1e3;
    assert!(max_ms < 50.0, "response time max {max_ms} ms");
    assert_eq!(app.requests(), r["counts"]["sent"].as_u64().unwrap());
}

#[test]
fn spawn_rate_ramps_and_current_rps_shows_the_end() {
    let app = Webapp::start(&[]);
    let file = scenario_file("one", "[[request]]\nname = \"home\"\npath = \"/\"\n");
    // 20 users at 10/s: users join over the first 2 s, then 20 users loop at ~100 ms.
    let r = gen_json(&[
        "--scenario",
        file.to_str().unwrap(),
        "--users",
        "20",
        "--spawn-rate",
        "10",
        "--think",
        "100ms",
        "--duration",
        "4s",
        "--threads",
        "2",
        &app.url("/"),
    ]);
    common::assert_schema_valid(&r);
    assert_eq!(r["run"]["users"]["spawn_rate"], 10.0);
    let cycle = 0.1 + common::lat(&r, "service_time", "mean_us") / 1e6;
    let series = r["series"].as_array().unwrap();
    let sent = |k: u64| {
        series
            .iter()
            .find(|p| p["t_s"].as_f64() == Some(k as f64))
            .and_then(|p| p["sent"].as_f64())
            .unwrap_or_else(|| panic!("no second {k} in {series:?}"))
    };
    let mut prev = 0.0;
    for k in 0..4 {
        let want = planned_starts(20, 10.0, cycle, k, 4.0);
        let got = sent(k);
        assert!(
            (got - want).abs() <= 0.08 * want + 3.0,
            "second {k}: sent {got}, planned {want:.1}"
        );
        if k < 3 {
            assert!(got > prev, "second {k}: {got} not above {prev}");
        }
        prev = got;
    }
    // Current RPS is the last full seconds' rate (all 20 users), above the run's average.
    let rows = r["endpoints"].as_array().unwrap();
    let home = &rows[0];
    assert_eq!(home["name"], "home");
    let current = home["current_rps"].as_f64().unwrap();
    let last3 = (sent(1) + sent(2) + sent(3)) / 3.0;
    assert!(
        (current - last3).abs() <= 0.05 * last3 + 2.0,
        "{current} vs {last3}"
    );
    assert!(current > home["rps"].as_f64().unwrap(), "{home}");
}

#[test]
fn each_user_keeps_one_id_and_users_differ() {
    let (addr, seen) = recording_server();
    let file = scenario_file(
        "id",
        "[[request]]\nmethod = \"POST\"\npath = \"/u\"\nform = { id = \"{{user.id}}\" }\n",
    );
    let r = gen_json(&[
        "--scenario",
        file.to_str().unwrap(),
        "--users",
        "6",
        "--think",
        "20ms..60ms",
        "--duration",
        "1s",
        "--threads",
        "2",
        &format!("http://{addr}/"),
    ]);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len() as u64, r["counts"]["sent"].as_u64().unwrap());
    // Per server-side connection (= user): the ids it carried.
    let mut by_conn: HashMap<usize, HashSet<String>> = HashMap::new();
    for (conn, _, body) in seen.iter() {
        let body = String::from_utf8_lossy(body);
        let id = body.strip_prefix("id=").expect("id=<uuid>").to_owned();
        assert!(is_uuid_v4(&id), "{id}");
        by_conn.entry(*conn).or_default().insert(id);
    }
    assert_eq!(by_conn.len(), 6, "one connection per user");
    let mut all = HashSet::new();
    for (conn, ids) in &by_conn {
        assert_eq!(ids.len(), 1, "connection {conn} carried {ids:?}");
        all.extend(ids.iter().cloned());
    }
    assert_eq!(all.len(), 6, "every user has its own id");
    // With 20..60 ms think, each user looped many times in 1 s.
    let per_user = seen.len() / 6;
    assert!(
        (10..=50).contains(&per_user),
        "{per_user} requests per user"
    );
}

#[test]
fn bad_users_values_exit_2_naming_the_value() {
    let url = "http://127.0.0.1:9/";
    for (args, needle) in [
        (&["--users", "0", url][..], "--users 0"),
        (
            &["--users", "2", "--spawn-rate", "0", url],
            "--spawn-rate 0",
        ),
        (
            &["--users", "2", "--spawn-rate", "-1", url],
            "--spawn-rate -1",
        ),
        (&["--users", "2", "--think", "2s..1s", url], "2s..1s"),
        (&["--users", "2", "--think", "soon", url], "soon"),
        (&["--users", "2", "-c", "5", url], "--connections 5"),
        (&["--users", "2", "--rate", "10", url], "--rate"),
        (&["--users", "2", "--stage", "1s:10", url], "--stage"),
        (&["--think", "1s", url], "--users"),
    ] {
        let out = gen(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}
