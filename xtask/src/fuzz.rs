//! `cargo xtask fuzz [--time SECS] [TARGET...]`: run each cargo-fuzz target in `fuzz/` for a
//! bounded time (default 60 s) from its committed seed corpus, installing cargo-fuzz when it
//! is missing. Stable Rust: `--sanitizer none` (the address sanitizer needs nightly).
//!
//! New inputs the fuzzer finds go to a scratch corpus under `fuzz/target/` (the committed
//! seeds stay as they are); a crash fails the task and is left in `fuzz/artifacts/`, to be
//! copied to `fuzz/regressions/TARGET/`, where `generator/tests/fuzz_corpus.rs` replays it.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};

pub fn main(args: &[String]) -> Result<()> {
    let mut secs = 60u64;
    let mut targets = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--time" => {
                let v = it.next().context("--time needs a number of seconds")?;
                secs = v
                    .parse()
                    .with_context(|| format!("invalid --time {v:?} (seconds)"))?;
            }
            t if !t.starts_with('-') => targets.push(t.to_string()),
            other => bail!("unknown fuzz argument {other:?}"),
        }
    }
    let dir = fuzz_dir()?;
    if targets.is_empty() {
        targets = all_targets(&dir)?;
    }
    ensure_cargo_fuzz()?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    for t in &targets {
        let scratch = dir.join("target/xtask-corpus").join(t);
        std::fs::create_dir_all(&scratch)
            .with_context(|| format!("creating {}", scratch.display()))?;
        println!("xtask: fuzzing {t} for {secs} s");
        let status = Command::new(&cargo)
            .current_dir(&dir)
            .args(["fuzz", "run", "--sanitizer", "none", t])
            .arg(&scratch)
            .arg(dir.join("corpus").join(t))
            .arg("--")
            .arg(format!("-max_total_time={secs}"))
            // One input taking seconds is a hang worth reporting.
            .arg("-timeout=10")
            .status()
            .with_context(|| format!("running cargo fuzz run {t}"))?;
        if !status.success() {
            bail!(
                "fuzz target {t} failed ({status}); the input is in fuzz/artifacts/{t}/ — \
                 copy it to fuzz/regressions/{t}/ and fix the parser"
            );
        }
    }
    Ok(())
}

fn fuzz_dir() -> Result<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("xtask has no parent directory")?
        .to_path_buf();
    Ok(root.join("fuzz"))
}

/// Every `fuzz/fuzz_targets/*.rs`.
fn all_targets(dir: &std::path::Path) -> Result<Vec<String>> {
    let mut v: Vec<String> = std::fs::read_dir(dir.join("fuzz_targets"))
        .context("reading fuzz/fuzz_targets")?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".rs").map(str::to_string)
        })
        .collect();
    v.sort();
    Ok(v)
}

fn ensure_cargo_fuzz() -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let present = Command::new(&cargo)
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if present {
        return Ok(());
    }
    println!("xtask: installing cargo-fuzz (a few minutes, once)");
    super::proc::cargo(&["install", "cargo-fuzz", "--locked"])
}
