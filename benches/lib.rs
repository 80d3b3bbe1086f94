//! Criterion benches live in `hot_path.rs`; this crate has no library code of its own.
