//! Fuzz target: request templates (generator/src/http/template.rs). Any source either compiles
//! or is refused; a compiled template renders any values without panicking and without
//! outgrowing its `max_len`, so the per-connection buffer is never reallocated.

#![no_main]

use generator::http::template::{Ctx, Escape, Template};
use libfuzzer_sys::fuzz_target;
use rand::rngs::SmallRng;
use rand::SeedableRng;

fuzz_target!(|input: &[u8]| {
    let Some((&head, rest)) = input.split_first() else {
        return;
    };
    let esc = match head % 3 {
        0 => Escape::None,
        1 => Escape::Url,
        _ => Escape::Form,
    };
    let src = String::from_utf8_lossy(rest);
    let cols = vec!["name".to_owned(), "pw".to_owned()];
    let Ok(t) = Template::compile(&src, esc, &cols, 16) else {
        return;
    };
    let seed = u64::from(head).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let mut rng = SmallRng::seed_from_u64(seed);
    let id = [b'a'; 36];
    let row: Vec<Box<str>> = vec!["ünïcode cell".into(), "".into()];
    let mut cx = Ctx {
        user_id: &id,
        now_unix_ns: seed as i64,
        utc_offset_s: i64::from(head) * 60 - 7_200,
        seq: seed,
        rng: &mut rng,
        csv_row: &row,
    };
    let mut out = Vec::with_capacity(t.max_len());
    let (ptr, cap) = (out.as_ptr(), out.capacity());
    t.render(&mut cx, &mut out);
    assert!(out.len() <= t.max_len());
    assert_eq!((out.as_ptr(), out.capacity()), (ptr, cap), "render reallocated");
});
