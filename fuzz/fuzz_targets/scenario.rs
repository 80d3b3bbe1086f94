//! Fuzz target: scenario files (generator/src/scenario/file.rs). Any text either compiles
//! into a scenario or is refused with a `file:line: reason` error; it never panics.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Ok(src) = std::str::from_utf8(input) else {
        return;
    };
    let target = generator::http::target::Target::parse("http://127.0.0.1:1/").expect("valid URL");
    // A base folder that does not exist: body_file and CSV paths fail cleanly.
    let base = std::path::Path::new("/nonexistent/gen-fuzz");
    if let Err(e) = generator::scenario::file::parse(src, "fuzz.toml", base, Some(&target)) {
        assert!(!e.to_string().is_empty());
    }
});
