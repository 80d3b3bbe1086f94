//! Criterion micro-benches of gen's per-request hot path: response parsing, histogram
//! recording, and the open-model pacer. Run with `cargo bench -p gen-benches`; figures and
//! method in docs/benchmarks.md.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use generator::http::ResponseParser;
use generator::measure::Recorder;
use generator::plan::{Load, Plan};

/// A typical keep-alive response (150 bytes): nginx-style head with Content-Length.
const FIXED: &[u8] = b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\n\
Date: Sun, 29 Nov 2026 14:03:33 GMT\r\nContent-Type: text/plain\r\n\
Content-Length: 3\r\nConnection: keep-alive\r\n\r\nok\n";

/// A chunked response: two data chunks and the last chunk.
const CHUNKED: &[u8] = b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\n\
Date: Sun, 29 Nov 2026 14:03:33 GMT\r\nContent-Type: text/plain\r\n\
Transfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n6\r\nHello \r\n6\r\nworld\n\r\n0\r\n\r\n";

/// Parses one response, whole or in two reads split at `split`, the way the engine feeds it:
/// bytes the parser did not consume are kept and fed again with the rest appended.
fn parse(p: &mut ResponseParser, buf: &[u8], split: Option<usize>) -> u16 {
    p.reset(false);
    let mut start = 0;
    if let Some(at) = split {
        start = p.feed(&buf[..at]).unwrap().consumed;
    }
    let f = p.feed(&buf[start..]).unwrap();
    f.done.unwrap().status
}

fn response_parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("response_parse");
    let mut p = ResponseParser::new();
    assert_eq!(FIXED.len(), 150);
    g.throughput(Throughput::Bytes(FIXED.len() as u64));
    g.bench_function("content_length_whole", |b| {
        b.iter(|| parse(&mut p, black_box(FIXED), None))
    });
    // Split inside the head: the first feed finds no complete head and consumes nothing.
    g.bench_function("content_length_split_head", |b| {
        b.iter(|| parse(&mut p, black_box(FIXED), Some(FIXED.len() / 2)))
    });
    // Split inside the body: the head and part of the body arrive first.
    g.bench_function("content_length_split_body", |b| {
        b.iter(|| parse(&mut p, black_box(FIXED), Some(FIXED.len() - 4)))
    });
    g.throughput(Throughput::Bytes(CHUNKED.len() as u64));
    g.bench_function("chunked_whole", |b| {
        b.iter(|| parse(&mut p, black_box(CHUNKED), None))
    });
    g.finish();
}

fn histogram_record(c: &mut Criterion) {
    let mut g = c.benchmark_group("measure");
    g.throughput(Throughput::Elements(1));
    // Latencies spread from ~50 µs to ~50 ms so records land in many buckets.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let lat: Vec<u64> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            50_000 + x % 50_000_000
        })
        .collect();
    let mut rec = Recorder::new();
    let mut i = 0usize;
    let mut t = 1_000_000_000u64;
    g.bench_function("record_response", |b| {
        b.iter(|| {
            let l = lat[i & 4095];
            i = i.wrapping_add(1);
            t += 20_000;
            rec.record_response(
                black_box(t),
                black_box(t + l / 64),
                black_box(t + l / 2),
                black_box(t + l),
                black_box(200),
                black_box(150),
            );
        })
    });
    black_box(rec.current().requests());
    g.finish();
}

fn pacer(c: &mut Criterion) {
    let mut g = c.benchmark_group("plan");
    g.throughput(Throughput::Elements(1));
    let plan = Plan {
        load: Load::Open { rate: 50_000.0 },
        warmup: Duration::ZERO,
        duration: Some(Duration::from_secs(10)),
        requests: None,
    };
    let mut i = 0u64;
    g.bench_function("due_ns_open", |b| {
        b.iter(|| {
            i = (i + 1) % 500_000;
            black_box(&plan).due_ns(black_box(i))
        })
    });
    g.finish();
}

criterion_group!(benches, response_parse, histogram_record, pacer);
criterion_main!(benches);
