//! Fuzz target: the incremental HTTP/1.1 response parser (generator/src/http/response.rs).
//! The properties checked are in `../oracle.rs` (shared with the corpus replay test).

#![no_main]

use libfuzzer_sys::fuzz_target;

include!("../oracle.rs");

fuzz_target!(|input: &[u8]| check(input));
