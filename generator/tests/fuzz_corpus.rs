//! Replays the committed fuzz seed corpus and every crash the fuzzer ever found
//! (`fuzz/corpus/response/`, `fuzz/regressions/response/`) through the same oracle the fuzz
//! target uses, so ordinary `cargo test` guards them without cargo-fuzz. See docs/fuzzing.md.

include!("../../fuzz/oracle.rs");

fn inputs(dir: &str) -> Vec<(String, Vec<u8>)> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
        return Vec::new();
    };
    let mut v: Vec<_> = entries
        .filter_map(Result::ok)
        .filter(|e| e.path().is_file())
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            (name, std::fs::read(e.path()).unwrap())
        })
        .collect();
    v.sort();
    v
}

#[test]
fn seed_corpus_and_regressions_hold_the_parser_properties() {
    let seeds = inputs("corpus/response");
    assert!(seeds.len() >= 10, "the seed corpus is missing");
    for (name, data) in seeds.iter().chain(inputs("regressions/response").iter()) {
        let r = std::panic::catch_unwind(|| check(data));
        assert!(r.is_ok(), "input {name} broke the parser properties");
    }
}

/// The oracle itself can fail: a parser whose outcome depended on how the bytes were split
/// would be caught (here: a complete response against the same bytes cut short).
#[test]
fn the_oracle_tells_outcomes_apart() {
    let full = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    let whole = run(false, full, &[full.len()]);
    assert!(matches!(whole, Outcome::Done(d, n) if d.status == 200 && n == full.len()));
    assert_eq!(run(false, full, &[1]), whole);
    assert_eq!(run(false, &full[..full.len() - 1], &[5]), Outcome::Error);
    assert_eq!(run(false, b"\x00garbage\r\n\r\n", &[3]), Outcome::Error);
}
