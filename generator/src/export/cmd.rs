//! `gen report` and `gen compare`: commands over saved report JSON files; no load is sent.
//!
//! Exit codes follow the run's (`docs/report.md`): 0 fine, 1 an output file could not be
//! written, 2 bad input (flags, a missing or unreadable file, a file that is not a gen
//! report: one line naming it), 3 a regression (`gen compare`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use serde_json::Value;

use super::compare::{self, parse_percent, parse_pp, Tolerances};
use super::html::{self, Kind};
use super::{write_files, EXIT_BAD_INPUT, EXIT_OK, EXIT_RUN_FAILED};
use crate::cli::{parse_duration, parse_or_exit_code};

/// Renders a saved report JSON (a run, a coordinator run or a capacity search) as a
/// self-contained HTML page.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "gen report",
    version,
    max_term_width = 100,
    after_help = "Exit codes: 0 written, 1 the HTML file could not be written, 2 bad input. See docs/html-report.md."
)]
pub struct ReportArgs {
    /// Write the HTML report to this file.
    #[arg(long, value_name = "FILE")]
    pub html: PathBuf,

    /// The report JSON (`--output` of gen, gen coordinator or gen capacity).
    #[arg(value_name = "REPORT.json")]
    pub input: PathBuf,
}

/// Compares two run reports and exits 3 when the new one is worse than the limits allow.
/// Defaults suit runs on a shared machine; see docs/compare.md for the reasoning.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "gen compare",
    version,
    max_term_width = 100,
    after_help = "Exit codes: 0 within the limits, 2 bad input, 3 a regression. See docs/compare.md."
)]
pub struct CompareArgs {
    /// The baseline run report (JSON).
    #[arg(value_name = "OLD.json")]
    pub old: PathBuf,

    /// The run report to judge (JSON).
    #[arg(value_name = "NEW.json")]
    pub new: PathBuf,

    /// Allowed relative increase of the body of the latency distribution (p50, p90; p95 per
    /// request name).
    #[arg(long, value_name = "PCT", default_value = "5%", value_parser = parse_percent)]
    pub tolerance: f64,

    /// Allowed relative increase of the tail (p99, p99.9).
    #[arg(long, value_name = "PCT", default_value = "10%", value_parser = parse_percent)]
    pub max_p99_increase: f64,

    /// Allowed relative decrease of the achieved rate.
    #[arg(long, value_name = "PCT", default_value = "2%", value_parser = parse_percent)]
    pub max_rate_decrease: f64,

    /// Allowed increase of the error and dropped ratios, in percentage points (0.1pp: 1% may
    /// become 1.1%).
    #[arg(long, value_name = "PP", default_value = "0.1pp", value_parser = parse_pp)]
    pub max_error_increase: f64,

    /// Latency changes smaller than this never count, whatever their percentage
    /// (0 to judge by percentage alone).
    #[arg(long, value_name = "DURATION", default_value = "1ms", value_parser = parse_duration)]
    pub min_latency_change: Duration,

    /// Print the comparison as JSON.
    #[arg(long)]
    pub json: bool,
}

impl CompareArgs {
    /// The limits given on the command line.
    pub fn tolerances(&self) -> Tolerances {
        Tolerances {
            tolerance: self.tolerance,
            max_p99_increase: self.max_p99_increase,
            max_rate_decrease: self.max_rate_decrease,
            max_error_increase: self.max_error_increase,
            min_latency_change_us: self.min_latency_change.as_secs_f64() * 1e6,
        }
    }
}

/// Why a report file cannot be used; the message names the file.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not JSON: {source}")]
    Json {
        path: String,
        source: serde_json::Error,
    },
    #[error("{path}: {source}")]
    NotAReport {
        path: String,
        source: html::NotAReport,
    },
    #[error("{path} is a capacity report; gen compare takes run reports")]
    Capacity { path: String },
}

/// Reads a report JSON file and says what it is.
pub fn load(path: &Path) -> Result<(Value, Kind), LoadError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: name.clone(),
        source,
    })?;
    let value: Value = serde_json::from_str(&text).map_err(|source| LoadError::Json {
        path: name.clone(),
        source,
    })?;
    let kind = html::kind(&value).map_err(|source| LoadError::NotAReport { path: name, source })?;
    Ok((value, kind))
}

fn with_name(sub: &str, argv: Vec<String>) -> Vec<String> {
    std::iter::once(sub.to_owned()).chain(argv).collect()
}

/// Entry of `gen report ARGS` (`argv` without the program and subcommand names).
pub fn report_main(argv: Vec<String>) -> i32 {
    let args: ReportArgs = match parse_or_exit_code(with_name("gen report", argv)) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let (value, _) = match load(&args.input) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("gen: {e}");
            return EXIT_BAD_INPUT;
        }
    };
    match write_files(&value, None, Some(&args.html)) {
        Ok(()) => EXIT_OK,
        Err(e) => {
            eprintln!("gen: {e}");
            EXIT_RUN_FAILED
        }
    }
}

/// Entry of `gen compare ARGS`.
pub fn compare_main(argv: Vec<String>) -> i32 {
    let args: CompareArgs = match parse_or_exit_code(with_name("gen compare", argv)) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let run = |path: &Path| match load(path)? {
        (v, Kind::Run) => Ok(v),
        (_, Kind::Capacity) => Err(LoadError::Capacity {
            path: path.display().to_string(),
        }),
    };
    let (old, new) = match (run(&args.old), run(&args.new)) {
        (Ok(o), Ok(n)) => (o, n),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("gen: {e}");
            return EXIT_BAD_INPUT;
        }
    };
    let c = compare::compare(&old, &new, &args.tolerances());
    let (o, n) = (
        args.old.display().to_string(),
        args.new.display().to_string(),
    );
    if args.json {
        let doc = c.to_json(&o, &n);
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    } else {
        print!("{}", c.to_text(&o, &n));
    }
    c.exit_code()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("gen-cmd-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn s(p: &Path) -> String {
        p.display().to_string()
    }

    #[test]
    fn flag_defaults_are_the_documented_tolerances() {
        let a = CompareArgs::try_parse_from(["gen compare", "a.json", "b.json"]).unwrap();
        assert_eq!(a.tolerances(), Tolerances::default());
        let a = CompareArgs::try_parse_from([
            "gen compare",
            "a",
            "b",
            "--tolerance",
            "3%",
            "--max-p99-increase=20%",
            "--max-rate-decrease",
            "1%",
            "--max-error-increase",
            "0.5pp",
            "--min-latency-change",
            "0",
        ])
        .unwrap();
        let t = a.tolerances();
        assert_eq!(
            (t.tolerance, t.max_p99_increase, t.max_rate_decrease),
            (0.03, 0.2, 0.01)
        );
        assert_eq!(
            (t.max_error_increase, t.min_latency_change_us),
            (0.005, 0.0)
        );
        assert!(
            CompareArgs::try_parse_from(["gen compare", "a", "b", "--tolerance", "5"]).is_err()
        );
    }

    #[test]
    fn bad_input_is_exit_2() {
        let good = temp("good.json", r#"{"schema_version": 1, "run": {}}"#);
        let capacity = temp("cap.json", r#"{"gen": {}, "capacity": {"steps": []}}"#);
        let other = temp("package.json", r#"{"name": "x"}"#);
        let broken = temp("broken.json", "{\"schema_version\": 1,");
        let missing = std::env::temp_dir().join("gen-cmd-test-no-such-file.json");
        for (a, b) in [
            (&missing, &good),
            (&good, &other),
            (&broken, &good),
            (&good, &capacity),
        ] {
            assert_eq!(
                compare_main(vec![s(a), s(b)]),
                EXIT_BAD_INPUT,
                "{a:?} {b:?}"
            );
        }
        assert_eq!(compare_main(vec![s(&good)]), EXIT_BAD_INPUT);
        assert_eq!(compare_main(vec![s(&good), s(&good)]), EXIT_OK);
        assert_eq!(
            compare_main(vec![s(&good), s(&good), "--tolerance".into(), "x".into()]),
            EXIT_BAD_INPUT
        );
        let out = temp("out.html", "");
        for bad in [&missing, &other, &broken] {
            assert_eq!(
                report_main(vec!["--html".into(), s(&out), s(bad)]),
                EXIT_BAD_INPUT
            );
        }
        assert_eq!(
            report_main(vec![s(&good)]),
            EXIT_BAD_INPUT,
            "--html is required"
        );
        assert_eq!(
            report_main(vec!["--html".into(), s(&out), s(&capacity)]),
            EXIT_OK
        );
        assert!(std::fs::read_to_string(&out)
            .unwrap()
            .contains("gen capacity report"));
        let unwritable = std::env::temp_dir().join("gen-cmd-test-no-dir/x/out.html");
        assert_eq!(
            report_main(vec!["--html".into(), s(&unwritable), s(&good)]),
            EXIT_RUN_FAILED
        );
    }

    #[test]
    fn load_errors_name_the_file() {
        let other = temp("other.json", "[1]");
        let e = load(&other).unwrap_err().to_string();
        assert!(
            e.starts_with(&s(&other)) && e.contains("not a gen report"),
            "{e}"
        );
        let missing = Path::new("/nonexistent/gen/run.json");
        let e = load(missing).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/gen/run.json"), "{e}");
        assert_eq!(e.lines().count(), 1);
    }
}
