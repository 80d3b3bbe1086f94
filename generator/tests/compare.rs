//! `gen compare` on real runs against sample-webapp: two runs against the same server pass
//! with the default tolerances; a run against a server that adds 5 ms fails with exit 3 and
//! names the p99 row.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{gen_bin, Webapp};

fn out_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile = exe.parent().and_then(|d| d.parent()).unwrap();
    let dir = profile.join("compare-test");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// 1,200 responses: enough above p99 (12) for it to be judged.
fn run(app: &Webapp, out: &Path) {
    let o = Command::new(gen_bin())
        .args(["--rate", "400", "--duration", "3s", "--quiet", "--output"])
        .arg(out)
        .arg(app.url("/"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

fn compare(args: &[&Path], extra: &[&str]) -> Output {
    Command::new(gen_bin())
        .arg("compare")
        .args(args)
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn same_server_passes_and_a_slower_one_regresses() {
    let dir = out_dir();
    let (a, b, slow) = (
        dir.join("a.json"),
        dir.join("b.json"),
        dir.join("slow.json"),
    );
    {
        let app = Webapp::start(&[]);
        run(&app, &a);
        run(&app, &b);
    }
    {
        let app = Webapp::start(&["--delay", "5ms"]);
        run(&app, &slow);
    }

    let o = compare(&[&a, &b], &[]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{text}");
    assert!(text.contains("Result: no regression"), "{text}");

    let o = compare(&[&a, &slow], &[]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(3), "{text}");
    let p99 = text
        .lines()
        .find(|l| l.trim_start().starts_with("response p99 "))
        .unwrap_or_else(|| panic!("no p99 row in {text}"));
    assert!(p99.ends_with("REGRESSION"), "{p99}");
    assert!(
        text.contains("REGRESSION in") && text.contains("response p99"),
        "{text}"
    );

    let o = compare(&[&a, &slow], &["--json"]);
    assert_eq!(o.status.code(), Some(3));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let regressed: Vec<&str> = j["regressions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(regressed.contains(&"response p99"), "{regressed:?}");
    assert!(!regressed.contains(&"achieved rate"), "{regressed:?}");

    // The slower run compared the other way round is an improvement: exit 0.
    assert_eq!(compare(&[&slow, &a], &[]).status.code(), Some(0));
}

#[test]
fn bad_input_is_one_line_and_exit_2() {
    let dir = std::env::temp_dir().join(format!("gen-compare-it-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let not_report = dir.join("other.json");
    std::fs::write(&not_report, "{\"hello\": 1}").unwrap();
    let missing = dir.join("missing.json");
    for (args, needle) in [
        ([&not_report, &not_report], not_report.display().to_string()),
        ([&missing, &not_report], missing.display().to_string()),
    ] {
        let o = compare(&[args[0].as_path(), args[1].as_path()], &[]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(&needle), "{err}");
    }
    let o = compare(&[&not_report, &not_report], &["--tolerance", "five"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("\"five\""), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
