// The response-parser oracle, shared by the fuzz target (fuzz/fuzz_targets/response.rs)
// and the replay test (generator/tests/fuzz_corpus.rs), which both `include!` it.
//
// Input layout: byte 0 chooses HEAD (bit 0) and the split pattern (bits 1..8: the segment
// length cycle); the rest is the server's byte stream. The stream is fed the way the
// engine feeds it (unconsumed bytes kept and re-offered with the next segment appended),
// and the parser must then agree with a single feed of the whole stream: splitting a
// response across reads never changes its outcome. No input may panic or hang.

use generator::http::{Done, ResponseParser};

#[derive(Debug, PartialEq)]
enum Outcome {
    /// A complete response and the bytes consumed up to its end.
    Done(Done, usize),
    /// Malformed: some feed returned an error.
    Error,
    /// The stream ended first; what `eof()` said.
    Eof(Option<Done>),
}

fn run(head: bool, data: &[u8], split: &[usize]) -> Outcome {
    let mut p = ResponseParser::new();
    p.reset(head);
    let mut buf: Vec<u8> = Vec::new();
    let mut consumed_total = 0usize;
    let mut off = 0usize;
    let mut k = 0usize;
    while off < data.len() {
        let n = split[k % split.len()].min(data.len() - off);
        k += 1;
        buf.extend_from_slice(&data[off..off + n]);
        off += n;
        loop {
            match p.feed(&buf) {
                Err(_) => return Outcome::Error,
                Ok(f) => {
                    assert!(f.consumed <= buf.len(), "consumed past the buffer");
                    buf.drain(..f.consumed);
                    consumed_total += f.consumed;
                    if let Some(done) = f.done {
                        assert!(p.is_done());
                        // After completion nothing more is consumed until reset.
                        let again = p.feed(&buf).expect("feed after done");
                        assert_eq!(again.consumed, 0);
                        assert_eq!(again.done, None);
                        return Outcome::Done(done, consumed_total);
                    }
                    if f.consumed == 0 || buf.is_empty() {
                        break;
                    }
                }
            }
        }
    }
    match p.eof() {
        Ok(d) => Outcome::Eof(d),
        Err(_) => Outcome::Error,
    }
}

/// Check one fuzz input; panics on a violated property.
pub fn check(input: &[u8]) {
    let Some((&ctl, data)) = input.split_first() else {
        return;
    };
    let head = ctl & 1 == 1;
    let seg = usize::from(ctl >> 1);
    let split = [seg % 7 + 1, seg + 1, 3, 64];
    let whole = run(head, data, &[data.len().max(1)]);
    let pieces = run(head, data, &split);
    assert_eq!(whole, pieces, "split {split:?} changed the outcome");
}
