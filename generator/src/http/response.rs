//! Incremental, sans-io HTTP/1.1 response parser for the hot path.
//!
//! One [`ResponseParser`] per connection, reused for every response: no allocation, no
//! locks, no logging. The head (status line and headers) is parsed by `httparse`, which is
//! stateless, so the caller keeps unconsumed head bytes and feeds them again with more
//! appended; the body is framed here by a byte-level state machine that consumes everything
//! it is given, so body bytes never accumulate in the caller's buffer. See `docs/http.md`.

use httparse::Status;

/// Most headers a response may carry (httparse parses into a fixed stack array).
pub const MAX_HEADERS: usize = 64;
/// Largest accepted response head (status line, headers, blank line), and largest trailer
/// section. The caller's receive buffer never needs to hold more unconsumed bytes than this.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Largest accepted chunk-size line (hex size plus extensions, without CRLF).
pub const MAX_CHUNK_LINE: usize = 4096;

/// A complete response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Done {
    /// Final status code (interim 1xx responses are skipped).
    pub status: u16,
    /// Whether the connection may carry another request.
    pub keep_alive: bool,
    /// Body length after removing chunked framing.
    pub body_len: u64,
}

/// The result of one [`ResponseParser::feed`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Feed {
    /// Bytes consumed from the front of the buffer; the caller drops them and keeps the rest.
    pub consumed: usize,
    /// Set once, when the response is complete.
    pub done: Option<Done>,
}

/// How far a response had got when the peer closed the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Nothing of the response arrived (typically an idle keep-alive connection the server
    /// closed just as we sent: the request may be retried on a new connection).
    Empty,
    /// Part of the head arrived.
    Head,
    /// The head arrived, the body is short.
    Body,
}

/// Why a response could not be parsed. Cheap to copy (no heap payloads); the engine counts
/// every variant under the error kind "parse".
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// httparse rejected the status line or a header.
    #[error("malformed response head: {0}")]
    Head(httparse::Error),
    /// Status code outside 100..=999.
    #[error("invalid status code {0}")]
    Status(u16),
    /// More than [`MAX_HEADERS`] headers.
    #[error("response has more than {MAX_HEADERS} headers")]
    TooManyHeaders,
    /// Head (or trailer section) larger than [`MAX_HEAD_BYTES`].
    #[error("response head or trailers exceed {MAX_HEAD_BYTES} bytes")]
    HeadersTooLarge,
    /// `Content-Length` is not a decimal number.
    #[error("invalid Content-Length")]
    InvalidContentLength,
    /// Several `Content-Length` values that disagree.
    #[error("conflicting Content-Length values")]
    ConflictingContentLength,
    /// Chunk-size line is not hex digits plus optional extensions, or overflows u64.
    #[error("invalid chunk size line")]
    InvalidChunkSize,
    /// Chunk-size line longer than [`MAX_CHUNK_LINE`].
    #[error("chunk size line exceeds {MAX_CHUNK_LINE} bytes")]
    ChunkLineTooLong,
    /// Chunk data not followed by CRLF, or a malformed end of the trailer section.
    #[error("invalid chunk framing (missing CRLF)")]
    InvalidChunkEnd,
    /// The connection closed before the response was complete.
    #[error("connection closed before the response was complete ({0:?})")]
    Incomplete(Phase),
}

/// Where the body framing state machine stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Waiting for a (final) response head.
    Head,
    /// Content-Length body; this many bytes remain (> 0).
    Fixed(u64),
    /// Chunked body.
    Chunked(Chunk),
    /// No framing: the body ends when the peer closes.
    UntilClose,
    /// Response complete (or never started); feed consumes nothing until `reset`.
    Done,
}

/// Chunked-coding states (RFC 9112 7.1). Bare LF is accepted wherever CRLF is expected,
/// like httparse does for the head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Chunk {
    /// Hex digits of the chunk size.
    Size,
    /// After the size: whitespace and `;ext=val` extensions, up to CR/LF.
    Ext,
    /// Saw CR ending the size line.
    SizeLf,
    /// `self.chunk_left` (> 0) data bytes remain.
    Data,
    /// Data done; expecting CR (or LF).
    DataCr,
    /// Expecting LF after the data's CR.
    DataLf,
    /// At the start of a trailer line, or of the final empty line.
    TrailerStart,
    /// Inside a trailer field line (ignored), up to LF.
    Trailer,
    /// Saw CR on the final empty line.
    EndLf,
}

/// Per-connection response parser. See the module docs for the buffer contract.
#[derive(Clone, Debug)]
pub struct ResponseParser {
    state: State,
    /// The request was HEAD: no body whatever the headers say.
    head_request: bool,
    /// Some byte of this response was seen (distinguishes [`Phase::Empty`]).
    received: bool,
    status: u16,
    keep_alive: bool,
    body_len: u64,
    /// Chunk size being parsed, then data bytes left in the current chunk.
    chunk_left: u64,
    /// At least one hex digit seen on the current size line.
    chunk_digits: bool,
    /// Length of the current chunk-size line, or of the trailer section so far.
    line_len: usize,
}

impl Default for ResponseParser {
    fn default() -> Self {
        Self::new()
    }
}

/// What a complete head means for the body.
enum Head {
    /// 1xx (not 101): skip it, a final response follows.
    Interim,
    /// Final response; the state is set.
    Final,
}

impl ResponseParser {
    /// A parser ready for the first response of a non-HEAD request.
    pub fn new() -> Self {
        ResponseParser {
            state: State::Head,
            head_request: false,
            received: false,
            status: 0,
            keep_alive: false,
            body_len: 0,
            chunk_left: 0,
            chunk_digits: false,
            line_len: 0,
        }
    }

    /// Starts a new response; `head` = the request was HEAD (no body whatever the headers
    /// say).
    pub fn reset(&mut self, head: bool) {
        *self = ResponseParser {
            head_request: head,
            ..ResponseParser::new()
        };
    }

    /// Whether the current response is complete (or no response was started).
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Feeds the unconsumed received bytes. Returns how many bytes were consumed and whether
    /// the response is complete.
    ///
    /// While the head is incomplete nothing of it is consumed (interim 1xx responses before
    /// it are): the caller keeps the bytes and calls again with more appended. Body bytes are
    /// consumed as they arrive. Bytes after a complete response are not consumed
    /// (pipelining-safe); after completion, feed consumes nothing until [`Self::reset`].
    pub fn feed(&mut self, buf: &[u8]) -> Result<Feed, ParseError> {
        let mut off = 0;
        loop {
            let rest = &buf[off..];
            match self.state {
                State::Head => {
                    if rest.is_empty() {
                        return Ok(Feed::more(off));
                    }
                    self.received = true;
                    match self.parse_head(rest)? {
                        None => return Ok(Feed::more(off)),
                        Some((n, Head::Interim)) => off += n,
                        Some((n, Head::Final)) => {
                            off += n;
                            if self.state == State::Done {
                                return Ok(Feed::done(off, self.done()));
                            }
                        }
                    }
                }
                State::Fixed(left) => {
                    // O(1): no byte of the body is looked at.
                    let take = left.min(rest.len() as u64);
                    self.body_len += take;
                    off += take as usize;
                    if take == left {
                        self.state = State::Done;
                        return Ok(Feed::done(off, self.done()));
                    }
                    self.state = State::Fixed(left - take);
                    return Ok(Feed::more(off));
                }
                State::Chunked(chunk) => {
                    let (n, finished) = self.chunked(chunk, rest)?;
                    off += n;
                    if finished {
                        self.state = State::Done;
                        return Ok(Feed::done(off, self.done()));
                    }
                    return Ok(Feed::more(off));
                }
                State::UntilClose => {
                    self.body_len += rest.len() as u64;
                    return Ok(Feed::more(buf.len()));
                }
                State::Done => return Ok(Feed::more(off)),
            }
        }
    }

    /// The peer closed the connection (recv returned 0). Completes a read-until-close body;
    /// `Ok(None)` when no response was in progress; otherwise
    /// [`ParseError::Incomplete`].
    pub fn eof(&mut self) -> Result<Option<Done>, ParseError> {
        match self.state {
            State::Head => Err(ParseError::Incomplete(if self.received {
                Phase::Head
            } else {
                Phase::Empty
            })),
            State::Fixed(_) | State::Chunked(_) => Err(ParseError::Incomplete(Phase::Body)),
            State::UntilClose => {
                self.state = State::Done;
                Ok(Some(self.done()))
            }
            State::Done => Ok(None),
        }
    }

    fn done(&self) -> Done {
        Done {
            status: self.status,
            keep_alive: self.keep_alive,
            body_len: self.body_len,
        }
    }

    /// Parses one head at the start of `buf`. `None`: incomplete. On a final head, sets
    /// status, keep-alive and the body state.
    fn parse_head(&mut self, buf: &[u8]) -> Result<Option<(usize, Head)>, ParseError> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut headers);
        let n = match resp.parse(buf) {
            Ok(Status::Complete(n)) if n <= MAX_HEAD_BYTES => n,
            Ok(Status::Complete(_)) => return Err(ParseError::HeadersTooLarge),
            // The head would not fit even if the next byte completed it.
            Ok(Status::Partial) if buf.len() >= MAX_HEAD_BYTES => {
                return Err(ParseError::HeadersTooLarge);
            }
            Ok(Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => return Err(ParseError::TooManyHeaders),
            Err(e) => return Err(ParseError::Head(e)),
        };
        // Complete responses always carry code and version.
        let status = resp.code.unwrap_or(0);
        let http10 = resp.version == Some(0);
        if status < 100 {
            return Err(ParseError::Status(status));
        }
        if (100..200).contains(&status) && status != 101 {
            return Ok(Some((n, Head::Interim)));
        }

        let mut close = false;
        let mut keep_alive_token = false;
        let mut content_length: Option<u64> = None;
        // Some(last coding is chunked) once a Transfer-Encoding header is seen.
        let mut te_chunked: Option<bool> = None;
        for h in resp.headers.iter() {
            let name = h.name.as_bytes();
            if name.eq_ignore_ascii_case(b"connection") {
                for token in list(h.value) {
                    close |= token.eq_ignore_ascii_case(b"close");
                    keep_alive_token |= token.eq_ignore_ascii_case(b"keep-alive");
                }
            } else if name.eq_ignore_ascii_case(b"content-length") {
                // RFC 9110 8.6: a list of identical values is the same as one value.
                let mut any = false;
                for token in list(h.value) {
                    any = true;
                    let len = parse_decimal(token).ok_or(ParseError::InvalidContentLength)?;
                    match content_length {
                        Some(prev) if prev != len => {
                            return Err(ParseError::ConflictingContentLength);
                        }
                        _ => content_length = Some(len),
                    }
                }
                if !any {
                    return Err(ParseError::InvalidContentLength);
                }
            } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                let mut last = te_chunked.unwrap_or(false);
                for token in list(h.value) {
                    // A coding may carry parameters (`gzip;q=1`): compare the name only.
                    let coding = trim(token.split(|&b| b == b';').next().unwrap_or(token));
                    last = coding.eq_ignore_ascii_case(b"chunked");
                }
                te_chunked = Some(last);
            }
        }

        self.status = status;
        self.body_len = 0;
        self.keep_alive = !close && (!http10 || keep_alive_token);
        // RFC 9112 6.3, in order.
        if self.head_request || status == 204 || status == 304 || status == 101 {
            // 101: the connection now speaks another protocol; it is no use to us.
            self.keep_alive &= status != 101;
            self.state = State::Done;
        } else if let Some(chunked) = te_chunked {
            // Transfer-Encoding overrides Content-Length, but both together (or TE in
            // HTTP/1.0) smell of request smuggling: never reuse the connection.
            if content_length.is_some() || http10 {
                self.keep_alive = false;
            }
            if chunked {
                self.chunk_left = 0;
                self.chunk_digits = false;
                self.line_len = 0;
                self.state = State::Chunked(Chunk::Size);
            } else {
                self.keep_alive = false;
                self.state = State::UntilClose;
            }
        } else if let Some(len) = content_length {
            self.state = if len == 0 {
                State::Done
            } else {
                State::Fixed(len)
            };
        } else {
            self.keep_alive = false;
            self.state = State::UntilClose;
        }
        Ok(Some((n, Head::Final)))
    }

    /// Runs the chunked state machine over `buf`, consuming all of it unless the body ends
    /// inside it. Returns (consumed, finished).
    fn chunked(&mut self, mut st: Chunk, buf: &[u8]) -> Result<(usize, bool), ParseError> {
        let mut i = 0;
        while i < buf.len() {
            if st == Chunk::Data {
                // Bulk skip: data bytes are not looked at.
                let take = self.chunk_left.min((buf.len() - i) as u64);
                self.chunk_left -= take;
                self.body_len += take;
                i += take as usize;
                if self.chunk_left == 0 {
                    st = Chunk::DataCr;
                }
                continue;
            }
            let b = buf[i];
            i += 1;
            st = match st {
                Chunk::Size => match b {
                    b'\r' | b'\n' | b';' | b' ' | b'\t' if !self.chunk_digits => {
                        return Err(ParseError::InvalidChunkSize);
                    }
                    b'\r' => Chunk::SizeLf,
                    b'\n' => self.end_size_line(),
                    b';' | b' ' | b'\t' => self.size_line_byte(Chunk::Ext)?,
                    _ => {
                        let d = hex(b).ok_or(ParseError::InvalidChunkSize)?;
                        if self.chunk_left > u64::MAX >> 4 {
                            return Err(ParseError::InvalidChunkSize);
                        }
                        self.chunk_left = self.chunk_left << 4 | u64::from(d);
                        self.chunk_digits = true;
                        self.size_line_byte(Chunk::Size)?
                    }
                },
                Chunk::Ext => match b {
                    b'\r' => Chunk::SizeLf,
                    b'\n' => self.end_size_line(),
                    // Extensions are ignored, but control bytes in them are not HTTP.
                    b'\t' => self.size_line_byte(Chunk::Ext)?,
                    0..=0x1f | 0x7f => return Err(ParseError::InvalidChunkSize),
                    _ => self.size_line_byte(Chunk::Ext)?,
                },
                Chunk::SizeLf => match b {
                    b'\n' => self.end_size_line(),
                    _ => return Err(ParseError::InvalidChunkSize),
                },
                // Handled by the bulk skip above; an error, not a panic, if that ever changes.
                Chunk::Data => return Err(ParseError::InvalidChunkEnd),
                Chunk::DataCr => match b {
                    b'\r' => Chunk::DataLf,
                    b'\n' => Chunk::Size,
                    _ => return Err(ParseError::InvalidChunkEnd),
                },
                Chunk::DataLf => match b {
                    b'\n' => Chunk::Size,
                    _ => return Err(ParseError::InvalidChunkEnd),
                },
                Chunk::TrailerStart => match b {
                    b'\r' => Chunk::EndLf,
                    b'\n' => return Ok((i, true)),
                    _ => self.trailer_byte()?,
                },
                Chunk::Trailer => match b {
                    b'\n' => Chunk::TrailerStart,
                    _ => self.trailer_byte()?,
                },
                Chunk::EndLf => match b {
                    b'\n' => return Ok((i, true)),
                    _ => return Err(ParseError::InvalidChunkEnd),
                },
            };
        }
        self.state = State::Chunked(st);
        Ok((i, false))
    }

    /// Counts one more byte of the chunk-size line against [`MAX_CHUNK_LINE`].
    fn size_line_byte(&mut self, next: Chunk) -> Result<Chunk, ParseError> {
        self.line_len += 1;
        if self.line_len > MAX_CHUNK_LINE {
            return Err(ParseError::ChunkLineTooLong);
        }
        Ok(next)
    }

    /// The size line ended: data follows, or the trailer section for the last chunk.
    fn end_size_line(&mut self) -> Chunk {
        self.chunk_digits = false;
        self.line_len = 0;
        if self.chunk_left == 0 {
            Chunk::TrailerStart
        } else {
            Chunk::Data
        }
    }

    /// Counts one more trailer byte against [`MAX_HEAD_BYTES`]. Trailer fields are skipped,
    /// not interpreted.
    fn trailer_byte(&mut self) -> Result<Chunk, ParseError> {
        self.line_len += 1;
        if self.line_len > MAX_HEAD_BYTES {
            return Err(ParseError::HeadersTooLarge);
        }
        Ok(Chunk::Trailer)
    }
}

impl Feed {
    fn more(consumed: usize) -> Feed {
        Feed {
            consumed,
            done: None,
        }
    }

    fn done(consumed: usize, done: Done) -> Feed {
        Feed {
            consumed,
            done: Some(done),
        }
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Non-empty elements of a comma-separated header list, trimmed.
fn list(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim)
        .filter(|t| !t.is_empty())
}

/// 1*DIGIT as u64, without sign or whitespace; `None` on overflow.
fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    s.iter().try_fold(0u64, |acc, &b| {
        if b.is_ascii_digit() {
            acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What [`drive`] saw.
    #[derive(Debug, PartialEq, Eq)]
    struct Driven {
        /// Completed responses, in order.
        done: Vec<Done>,
        /// Bytes left in the buffer at the end.
        left: usize,
        /// Largest the buffer ever got.
        peak: usize,
    }

    /// Drives a parser the way the engine does: a `Vec` receive buffer; append each piece
    /// ("recv"), feed, drain what was consumed; after a complete response, `reset` with the
    /// next request's HEAD flag and feed the leftover bytes (pipelining). `heads[k]` is the
    /// HEAD flag of response `k`; after the last expected response, the remaining bytes are
    /// left alone. `eof` ends with a connection close.
    fn drive(pieces: &[&[u8]], heads: &[bool], eof: bool) -> Result<Driven, ParseError> {
        let mut p = ResponseParser::new();
        p.reset(heads.first().copied().unwrap_or(false));
        let mut buf: Vec<u8> = Vec::new();
        let mut out = Driven {
            done: Vec::new(),
            left: 0,
            peak: 0,
        };
        for piece in pieces {
            buf.extend_from_slice(piece);
            out.peak = out.peak.max(buf.len());
            while out.done.len() < heads.len().max(1) {
                let f = p.feed(&buf)?;
                assert!(f.consumed <= buf.len());
                buf.drain(..f.consumed);
                match f.done {
                    Some(d) => {
                        out.done.push(d);
                        if let Some(&h) = heads.get(out.done.len()) {
                            p.reset(h);
                        }
                    }
                    None => {
                        // Incomplete: the parser must have taken all body bytes, or none of
                        // a head.
                        break;
                    }
                }
            }
        }
        if eof {
            if let Some(d) = p.eof()? {
                out.done.push(d);
            }
        }
        out.left = buf.len();
        Ok(out)
    }

    /// Whole buffer in one piece, one response, not HEAD.
    fn one(wire: &[u8]) -> Result<Done, ParseError> {
        let d = drive(&[wire], &[false], false)?;
        assert_eq!(d.done.len(), 1, "{d:?}");
        Ok(d.done[0])
    }

    /// Byte by byte.
    fn bytewise(wire: &[u8], heads: &[bool], eof: bool) -> Result<Driven, ParseError> {
        let pieces: Vec<&[u8]> = wire.chunks(1).collect();
        drive(&pieces, heads, eof)
    }

    fn done(status: u16, keep_alive: bool, body_len: u64) -> Done {
        Done {
            status,
            keep_alive,
            body_len,
        }
    }

    #[test]
    fn simple_content_length() {
        let wire = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX: y\r\n\r\nhello";
        assert_eq!(one(wire), Ok(done(200, true, 5)));
        let d = bytewise(wire, &[false], false).unwrap();
        assert_eq!(d.done, vec![done(200, true, 5)]);
        assert_eq!(d.left, 0);
        // Head plus body in one feed: everything consumed at once.
        let mut p = ResponseParser::new();
        assert_eq!(
            p.feed(wire),
            Ok(Feed {
                consumed: wire.len(),
                done: Some(done(200, true, 5))
            })
        );
        assert!(p.is_done());
    }

    #[test]
    fn head_bytes_not_consumed_until_complete() {
        let mut p = ResponseParser::new();
        let wire = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc";
        assert_eq!(p.feed(&wire[..20]).unwrap(), Feed::more(0));
        // Head complete plus one body byte.
        assert_eq!(
            p.feed(&wire[..wire.len() - 2]).unwrap(),
            Feed::more(wire.len() - 2)
        );
        // Body bytes consumed as they come.
        assert_eq!(p.feed(b"b").unwrap(), Feed::more(1));
        assert_eq!(p.feed(b"c").unwrap(), Feed::done(1, done(200, true, 3)));
    }

    #[test]
    fn zero_content_length() {
        assert_eq!(
            one(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
            Ok(done(200, true, 0))
        );
    }

    #[test]
    fn chunked_with_extensions_and_trailers() {
        let wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
            4;name=value;x\r\nWiki\r\n\
            5 ; q=\"quoted\"\r\npedia\r\n\
            E\r\n in\r\n\r\nchunks.\r\n\
            0;last\r\nExpires: never\r\nX-Trailer: 1\r\n\r\n";
        assert_eq!(one(wire), Ok(done(200, true, 23)));
        let d = bytewise(wire, &[false], false).unwrap();
        assert_eq!(d.done, vec![done(200, true, 23)]);
        assert_eq!(d.left, 0);
        // Bytes after the final CRLF are not consumed.
        let mut w = wire.to_vec();
        w.extend_from_slice(b"HTTP/1.1");
        let mut p = ResponseParser::new();
        let f = p.feed(&w).unwrap();
        assert_eq!(f.consumed, wire.len());
        assert_eq!(f.done, Some(done(200, true, 23)));
    }

    #[test]
    fn chunked_split_points() {
        let mut p = ResponseParser::new();
        let head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n";
        assert_eq!(p.feed(head).unwrap(), Feed::more(head.len()));
        // Chunk size split across feeds, CRLF split across feeds.
        for piece in [
            &b"1"[..],
            b"0",
            b"\r",
            b"\n",
            b"0123456789",
            b"abcdef",
            b"\r",
            b"\n",
            b"0\r",
        ] {
            assert_eq!(p.feed(piece).unwrap(), Feed::more(piece.len()));
        }
        assert_eq!(p.feed(b"\n\r").unwrap(), Feed::more(2));
        assert_eq!(
            p.feed(b"\nrest").unwrap(),
            Feed::done(1, done(200, true, 16))
        );
    }

    #[test]
    fn chunked_bare_lf_and_uppercase_hex() {
        let wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\nA\n0123456789\n0\n\n";
        assert_eq!(one(wire), Ok(done(200, true, 10)));
    }

    #[test]
    fn read_until_close() {
        let wire = b"HTTP/1.1 200 OK\r\nServer: x\r\n\r\nsome body";
        let d = drive(&[&wire[..10], &wire[10..35], &wire[35..]], &[false], true).unwrap();
        assert_eq!(d.done, vec![done(200, false, 9)]);
        assert_eq!(d.left, 0);
        // Without the close, it is not done.
        let d = drive(&[wire], &[false], false).unwrap();
        assert!(d.done.is_empty());
        // Unknown transfer coding: also until close.
        let d = drive(
            &[b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nzz"],
            &[false],
            true,
        )
        .unwrap();
        assert_eq!(d.done, vec![done(200, false, 2)]);
    }

    #[test]
    fn head_request_has_no_body() {
        let wire = b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n";
        let d = drive(&[wire], &[true], false).unwrap();
        assert_eq!(d.done, vec![done(200, true, 0)]);
        let wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        let d = drive(&[wire], &[true], false).unwrap();
        assert_eq!(d.done, vec![done(200, true, 0)]);
    }

    #[test]
    fn no_body_statuses() {
        for s in [204, 304] {
            let wire = format!("HTTP/1.1 {s} X\r\nContent-Length: 10\r\n\r\n");
            assert_eq!(one(wire.as_bytes()), Ok(done(s, true, 0)));
        }
        assert_eq!(
            one(b"HTTP/1.1 204 No Content\r\n\r\n"),
            Ok(done(204, true, 0))
        );
        assert_eq!(
            one(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n"),
            Ok(done(101, false, 0))
        );
    }

    #[test]
    fn interim_responses_are_skipped() {
        let wire = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n\
            HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok";
        assert_eq!(one(wire), Ok(done(201, true, 2)));
        assert_eq!(
            bytewise(wire, &[false], false).unwrap().done,
            vec![done(201, true, 2)]
        );
        // The interim head is consumed even though the final head is incomplete.
        let mut p = ResponseParser::new();
        assert_eq!(
            p.feed(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 2").unwrap(),
            Feed::more(25)
        );
    }

    #[test]
    fn connection_close() {
        assert_eq!(
            one(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx"),
            Ok(done(200, false, 1))
        );
        assert_eq!(
            one(b"HTTP/1.1 200 OK\r\nconnection: Upgrade, CLOSE\r\nContent-Length: 0\r\n\r\n"),
            Ok(done(200, false, 0))
        );
    }

    #[test]
    fn http10() {
        assert_eq!(
            one(b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx"),
            Ok(done(200, false, 1))
        );
        assert_eq!(
            one(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nx"),
            Ok(done(200, true, 1))
        );
        let d = drive(&[b"HTTP/1.0 200 OK\r\n\r\nabc"], &[false], true).unwrap();
        assert_eq!(d.done, vec![done(200, false, 3)]);
    }

    #[test]
    fn pipelined_responses() {
        let wire = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nabHTTP/1.1 404 Not Found\r\n\
            Transfer-Encoding: chunked\r\n\r\n3\r\nxyz\r\n0\r\n\r\nHTTP/1.1 200 OK\r\n\
            Content-Length: 9\r\n\r\n";
        let want = vec![done(200, true, 2), done(404, true, 3), done(200, true, 0)];
        let d = drive(&[wire], &[false, false, true], false).unwrap();
        assert_eq!(d.done, want);
        assert_eq!(d.left, 0);
        assert_eq!(
            bytewise(wire, &[false, false, true], false).unwrap().done,
            want
        );
        // A parser asked for one response leaves the rest untouched.
        let d = drive(&[wire], &[false], false).unwrap();
        assert_eq!(d.done, want[..1]);
        assert_eq!(d.left, wire.len() - 40);
        let mut p = ResponseParser::new();
        let f = p.feed(wire).unwrap();
        assert_eq!(f, Feed::done(40, want[0]));
        // Until reset, nothing more is consumed.
        assert_eq!(p.feed(&wire[40..]).unwrap(), Feed::more(0));
    }

    #[test]
    fn eof_cases() {
        let mut p = ResponseParser::new();
        assert_eq!(p.eof(), Err(ParseError::Incomplete(Phase::Empty)));
        p.feed(b"HTTP/1.1 200").unwrap();
        assert_eq!(p.eof(), Err(ParseError::Incomplete(Phase::Head)));
        p.reset(false);
        p.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab")
            .unwrap();
        assert_eq!(p.eof(), Err(ParseError::Incomplete(Phase::Body)));
        p.reset(false);
        p.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n")
            .unwrap();
        assert_eq!(p.eof(), Err(ParseError::Incomplete(Phase::Body)));
        p.reset(false);
        p.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            .unwrap();
        // A close between responses is not an error.
        assert_eq!(p.eof(), Ok(None));
        p.reset(false);
        p.feed(b"HTTP/1.1 200 OK\r\n\r\n").unwrap();
        assert_eq!(p.eof(), Ok(Some(done(200, false, 0))));
        assert_eq!(p.eof(), Ok(None));
        let e = ParseError::Incomplete(Phase::Empty);
        assert_eq!(
            e.to_string(),
            "connection closed before the response was complete (Empty)"
        );
    }

    fn err(wire: &[u8]) -> ParseError {
        let whole = drive(&[wire], &[false], true).unwrap_err();
        // The same error whatever the split (byte by byte is quadratic for big heads, which
        // httparse re-parses on every feed: use bigger pieces there).
        let pieces: Vec<&[u8]> = wire
            .chunks(if wire.len() < 4096 { 1 } else { 997 })
            .collect();
        assert_eq!(drive(&pieces, &[false], true).unwrap_err(), whole);
        whole
    }

    #[test]
    fn content_length_errors() {
        for v in [
            "abc",
            "-1",
            "+1",
            "1 2",
            "0x10",
            "",
            "99999999999999999999",
            ",",
        ] {
            let wire = format!("HTTP/1.1 200 OK\r\nContent-Length: {v}\r\n\r\n");
            assert_eq!(
                err(wire.as_bytes()),
                ParseError::InvalidContentLength,
                "{v:?}"
            );
        }
        assert_eq!(
            err(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx"),
            ParseError::ConflictingContentLength
        );
        assert_eq!(
            err(b"HTTP/1.1 200 OK\r\nContent-Length: 3, 4\r\n\r\nxxxx"),
            ParseError::ConflictingContentLength
        );
        // Identical duplicates are one value.
        assert_eq!(
            one(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\ncontent-length: 2, 2\r\n\r\nxx"),
            Ok(done(200, true, 2))
        );
    }

    #[test]
    fn te_overrides_content_length_and_closes() {
        assert_eq!(
            one(
                b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n\
                1\r\nx\r\n0\r\n\r\n"
            ),
            Ok(done(200, false, 1))
        );
    }

    #[test]
    fn chunk_errors() {
        let head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        let cases: &[(&str, ParseError)] = &[
            ("g\r\n", ParseError::InvalidChunkSize),
            ("\r\n", ParseError::InvalidChunkSize),
            (";ext\r\n", ParseError::InvalidChunkSize),
            ("-1\r\n", ParseError::InvalidChunkSize),
            ("1\rx", ParseError::InvalidChunkSize),
            ("1;a\x00b\r\n", ParseError::InvalidChunkSize),
            ("10000000000000000\r\n", ParseError::InvalidChunkSize),
            ("1\r\nxy\r\n", ParseError::InvalidChunkEnd),
            ("1\r\nx\rz", ParseError::InvalidChunkEnd),
            ("0\r\n\rx", ParseError::InvalidChunkEnd),
        ];
        for (body, want) in cases {
            assert_eq!(err(format!("{head}{body}").as_bytes()), *want, "{body:?}");
        }
        // Leading zeros are fine up to the line limit, then too long.
        let ok = format!("{head}{}1\r\nx\r\n0\r\n\r\n", "0".repeat(100));
        assert_eq!(one(ok.as_bytes()), Ok(done(200, true, 1)));
        let long = format!("{head}{}", "0".repeat(MAX_CHUNK_LINE + 1));
        assert_eq!(err(long.as_bytes()), ParseError::ChunkLineTooLong);
        let long = format!("{head}1;{}", "a".repeat(MAX_CHUNK_LINE));
        assert_eq!(err(long.as_bytes()), ParseError::ChunkLineTooLong);
        let trailers = format!("{head}0\r\nX: {}", "a".repeat(MAX_HEAD_BYTES));
        assert_eq!(err(trailers.as_bytes()), ParseError::HeadersTooLarge);
    }

    #[test]
    fn too_many_headers() {
        let mut wire = String::from("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n");
        for i in 1..MAX_HEADERS {
            wire.push_str(&format!("X-{i}: v\r\n"));
        }
        // Exactly 64 headers.
        assert_eq!(
            one(format!("{wire}\r\n").as_bytes()),
            Ok(done(200, true, 0))
        );
        // 65 headers.
        let over = format!("{wire}X: v\r\n\r\n");
        assert_eq!(err(over.as_bytes()), ParseError::TooManyHeaders);
    }

    #[test]
    fn header_block_limit() {
        let pad = |n: usize| {
            let base = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX: \r\n\r\n".len();
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX: {}\r\n\r\n",
                "a".repeat(n - base)
            )
        };
        // Exactly the limit is fine, whole or in pieces.
        let at = pad(MAX_HEAD_BYTES);
        assert_eq!(at.len(), MAX_HEAD_BYTES);
        assert_eq!(one(at.as_bytes()), Ok(done(200, true, 0)));
        let pieces: Vec<&[u8]> = at.as_bytes().chunks(1000).collect();
        let d = drive(&pieces, &[false], false).unwrap();
        assert_eq!(d.done, vec![done(200, true, 0)]);
        assert!(d.peak <= MAX_HEAD_BYTES);
        // One more byte is too large, whole or in pieces; the buffer never grows past it.
        let over = pad(MAX_HEAD_BYTES + 1);
        assert_eq!(err(over.as_bytes()), ParseError::HeadersTooLarge);
        let pieces: Vec<&[u8]> = over.as_bytes().chunks(4096).collect();
        assert_eq!(
            drive(&pieces, &[false], false).unwrap_err(),
            ParseError::HeadersTooLarge
        );
        // An endless header line.
        let endless = format!("HTTP/1.1 200 OK\r\nX: {}", "a".repeat(MAX_HEAD_BYTES));
        assert_eq!(err(endless.as_bytes()), ParseError::HeadersTooLarge);
    }

    #[test]
    fn garbage() {
        assert!(matches!(err(b"garbage\r\n\r\n"), ParseError::Head(_)));
        assert!(matches!(err(b"HTTP/2 200\r\n\r\n"), ParseError::Head(_)));
        assert!(matches!(
            err(b"HTTP/1.1 2000 OK\r\n\r\n"),
            ParseError::Head(_)
        ));
        assert!(matches!(
            err(b"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n"),
            ParseError::Head(_)
        ));
        assert!(matches!(
            err(b"HTTP/1.1 200 OK\r\nX: a\x00b\r\n\r\n"),
            ParseError::Head(_)
        ));
        assert_eq!(err(b"HTTP/1.1 099 Low\r\n\r\n"), ParseError::Status(99));
        // Garbage is reported as soon as it is seen, without waiting for a full head.
        let mut p = ResponseParser::new();
        assert!(p.feed(b"\x16\x03\x01").is_err());
    }

    // ---- property tests ----

    /// One generated response and what parsing it must yield.
    #[derive(Clone, Debug)]
    struct Gen {
        wire: Vec<u8>,
        head: bool,
        /// Framed by the close of the connection (only valid as the last response).
        until_close: bool,
        want: Done,
    }

    #[derive(Clone, Debug)]
    enum Framing {
        Length,
        /// Chunk sizes as cut points into the body, with an extension flag per chunk.
        Chunked(Vec<(prop::sample::Index, bool)>, Vec<(String, String)>),
        Close,
    }

    fn token() -> impl Strategy<Value = String> {
        "[A-Za-z][A-Za-z0-9-]{0,10}".prop_filter("framing header", |n| {
            !["content-length", "transfer-encoding", "connection"]
                .iter()
                .any(|k| n.eq_ignore_ascii_case(k))
        })
    }

    fn framing() -> impl Strategy<Value = Framing> {
        prop_oneof![
            Just(Framing::Length),
            (
                proptest::collection::vec((any::<prop::sample::Index>(), any::<bool>()), 0..6),
                proptest::collection::vec((token(), "[ -~]{0,12}"), 0..3),
            )
                .prop_map(|(c, t)| Framing::Chunked(c, t)),
            Just(Framing::Close),
        ]
    }

    prop_compose! {
        fn response()(
            status in prop_oneof![100u16..600, Just(204u16), Just(304u16), Just(200u16)],
            http10 in proptest::bool::weighted(0.2),
            conn in prop_oneof![Just(None), Just(Some("close")), Just(Some("keep-alive"))],
            head in proptest::bool::weighted(0.15),
            continue_first in proptest::bool::weighted(0.2),
            headers in proptest::collection::vec((token(), "[!-~][ -~]{0,20}"), 0..8),
            framing in framing(),
            body in proptest::collection::vec(any::<u8>(), 0..300),
        ) -> Gen {
            // 1xx (other than 101) would be skipped as interim; make them final 2xx.
            let status = if (100..200).contains(&status) && status != 101 { status + 100 } else { status };
            let no_body = head || matches!(status, 101 | 204 | 304);
            let mut wire = Vec::new();
            if continue_first {
                wire.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
            }
            let version = if http10 { "1.0" } else { "1.1" };
            wire.extend_from_slice(format!("HTTP/{version} {status} Reason\r\n").as_bytes());
            for (n, v) in &headers {
                wire.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
            }
            if let Some(c) = conn {
                wire.extend_from_slice(format!("Connection: {c}\r\n").as_bytes());
            }
            let mut keep_alive = match conn {
                Some("close") => false,
                Some(_) => true,
                None => !http10,
            };
            let mut until_close = false;
            let mut body_len = body.len() as u64;
            let mut framed_body = Vec::new();
            match &framing {
                Framing::Length => {
                    wire.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
                    framed_body.extend_from_slice(&body);
                }
                Framing::Chunked(cuts, trailers) => {
                    wire.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
                    if !no_body {
                        keep_alive &= !http10;
                    }
                    let mut at: Vec<usize> = cuts.iter().map(|(i, _)| i.index(body.len() + 1)).collect();
                    at.push(0);
                    at.push(body.len());
                    at.sort_unstable();
                    at.dedup();
                    for (k, w) in at.windows(2).enumerate() {
                        let ext = cuts.get(k).is_some_and(|c| c.1);
                        let size = w[1] - w[0];
                        if k % 2 == 0 {
                            framed_body.extend_from_slice(format!("{size:x}").as_bytes());
                        } else {
                            framed_body.extend_from_slice(format!("{size:X}").as_bytes());
                        }
                        if ext {
                            framed_body.extend_from_slice(b" ;a=b;c=\"d\"");
                        }
                        framed_body.extend_from_slice(b"\r\n");
                        framed_body.extend_from_slice(&body[w[0]..w[1]]);
                        framed_body.extend_from_slice(b"\r\n");
                    }
                    framed_body.extend_from_slice(b"0\r\n");
                    for (n, v) in trailers {
                        framed_body.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
                    }
                    framed_body.extend_from_slice(b"\r\n");
                }
                Framing::Close => {
                    if !no_body {
                        keep_alive = false;
                        until_close = true;
                    }
                    framed_body.extend_from_slice(&body);
                }
            }
            wire.extend_from_slice(b"\r\n");
            if no_body {
                body_len = 0;
                if status == 101 {
                    keep_alive = false;
                }
            } else {
                wire.extend_from_slice(&framed_body);
            }
            Gen { wire, head, until_close, want: Done { status, keep_alive, body_len } }
        }
    }

    /// 1..=3 responses back to back; only the last may be framed by close.
    fn pipeline() -> impl Strategy<Value = Vec<Gen>> {
        proptest::collection::vec(response(), 1..4).prop_map(|mut v| {
            v.retain(|g| !g.until_close);
            v
        })
    }

    fn split<'a>(wire: &'a [u8], cuts: &[prop::sample::Index]) -> Vec<&'a [u8]> {
        let mut at: Vec<usize> = cuts.iter().map(|i| i.index(wire.len() + 1)).collect();
        at.push(0);
        at.push(wire.len());
        at.sort_unstable();
        at.dedup();
        at.windows(2).map(|w| &wire[w[0]..w[1]]).collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Any valid response, split anywhere, parses to the same (expected) result as the
        /// whole buffer.
        #[test]
        fn splits_do_not_matter(
            r in response(),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..12),
        ) {
            let whole = drive(&[&r.wire], &[r.head], r.until_close).unwrap();
            prop_assert_eq!(&whole.done, &vec![r.want]);
            prop_assert_eq!(whole.left, 0);
            let pieces = split(&r.wire, &cuts);
            let parts = drive(&pieces, &[r.head], r.until_close).unwrap();
            prop_assert_eq!(&parts.done, &whole.done);
            prop_assert_eq!(parts.left, 0);
        }

        /// Pipelined responses in one stream, split anywhere, come out in order.
        #[test]
        fn pipelined_splits(
            rs in pipeline(),
            tail in proptest::option::of(response()),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..16),
        ) {
            let mut rs = rs;
            if let Some(t) = tail {
                rs.push(t);
            }
            let eof = rs.last().is_some_and(|g| g.until_close);
            let wire: Vec<u8> = rs.iter().flat_map(|g| g.wire.iter().copied()).collect();
            let heads: Vec<bool> = rs.iter().map(|g| g.head).collect();
            let want: Vec<Done> = rs.iter().map(|g| g.want).collect();
            let d = drive(&split(&wire, &cuts), &heads, eof).unwrap();
            prop_assert_eq!(d.done, want);
            prop_assert_eq!(d.left, 0);
        }

        /// Arbitrary bytes never panic, whatever the split; errors are deterministic.
        #[test]
        fn arbitrary_bytes_never_panic(
            prefix in prop_oneof![
                Just(&b""[..]),
                Just(&b"HTTP/1.1 200 OK\r\n"[..]),
                Just(&b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"[..]),
                Just(&b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"[..]),
            ],
            junk in proptest::collection::vec(any::<u8>(), 0..200),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
            head in any::<bool>(),
            eof in any::<bool>(),
        ) {
            let mut wire = prefix.to_vec();
            wire.extend_from_slice(&junk);
            let whole = drive(&[&wire], &[head, false], eof).map(|d| (d.done, d.left));
            let parts = drive(&split(&wire, &cuts), &[head, false], eof).map(|d| (d.done, d.left));
            prop_assert_eq!(whole, parts);
        }

        /// Hex-ish junk after a chunked head exercises the chunk state machine hard.
        #[test]
        fn chunk_junk_never_panics(
            junk in proptest::collection::vec(
                prop_oneof![Just(b'\r'), Just(b'\n'), Just(b';'), Just(b'0'), Just(b'f'), Just(b' '), any::<u8>()],
                0..300,
            ),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
        ) {
            let mut wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            wire.extend_from_slice(&junk);
            let whole = drive(&[&wire], &[false], true).map(|d| (d.done, d.left));
            let parts = drive(&split(&wire, &cuts), &[false], true).map(|d| (d.done, d.left));
            prop_assert_eq!(whole, parts);
        }
    }
}
