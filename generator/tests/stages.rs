//! Load stages end to end: the per-second send rate follows a ramp within 1% of the planned
//! integral, the total is exact, stages also come from a scenario file, and bad stages exit 2.
//! Traffic to sample-webapp on 127.0.0.1, bounded by the stages' length (6 s).

mod common;

use common::{gen, gen_json, Webapp};

/// Planned requests in second `k` of: step to 2000/s, ramp to 6000/s over 4 s, hold 2 s.
fn planned(k: usize) -> f64 {
    let n = |t: f64| {
        if t <= 4.0 {
            2000.0 * t + 500.0 * t * t
        } else {
            16_000.0 + 6000.0 * (t - 4.0)
        }
    };
    n(k as f64 + 1.0) - n(k as f64)
}

fn check_series(r: &serde_json::Value) {
    let series = r["series"].as_array().expect("series");
    for k in 0..6 {
        let p = series
            .iter()
            .find(|p| p["t_s"].as_f64() == Some(k as f64))
            .unwrap_or_else(|| panic!("no second {k} in {series:?}"));
        let sent = p["sent"].as_f64().unwrap();
        let want = planned(k);
        assert!(
            (sent - want).abs() <= 0.01 * want,
            "second {k}: sent {sent}, planned {want}"
        );
    }
    assert_eq!(r["counts"]["sent"], 28_000, "the whole curve, exactly");
    assert!((r["run"]["target_rate"].as_f64().unwrap() - 28_000.0 / 6.0).abs() < 1e-6);
}

#[test]
fn per_second_rate_follows_the_ramp() {
    let app = Webapp::start(&[]);
    let r = gen_json(&[
        "--stage",
        "0s:2000",
        "--stage",
        "4s:6000",
        "--stage",
        "2s:6000",
        "--threads",
        "2",
        &app.url("/"),
    ]);
    check_series(&r);
    assert_eq!(r["errors"]["total"], 0);
}

#[test]
fn stages_from_a_scenario_file() {
    let app = Webapp::start(&[]);
    let dir = std::env::temp_dir().join(format!("gen-stages-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("ramp.toml");
    std::fs::write(
        &p,
        "[load]\nstages = [\"0s:2000\", \"4s:6000\", \"2s:6000\"]\n[[request]]\npath = \"/\"\n",
    )
    .unwrap();
    let r = gen_json(&[
        "--scenario",
        p.to_str().unwrap(),
        "--threads",
        "2",
        &app.url("/"),
    ]);
    check_series(&r);
}

#[test]
fn bad_stages_exit_2_naming_the_value() {
    for (args, needle) in [
        (vec!["--stage", "30s"], "30s"),
        (vec!["--stage", "1s:-5"], "1s:-5"),
        (vec!["--stage", "0s:100"], "0s:100"),
        (vec!["--stage", "2s:0"], "2s:0"),
        (vec!["--stage", "1s:10", "--warmup", "2s"], "warm-up"),
        (vec!["--stage", "1s:10", "--rate", "5"], "--rate"),
    ] {
        let mut a = args.clone();
        a.push("http://127.0.0.1:9/");
        let out = gen(&a);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}
