//! Sans-io HTTP/1.1 codec: target URLs, request encoding, incremental response parsing.
//!
//! No I/O here: the engine (io_uring and epoll drivers) owns sockets and buffers and calls
//! this code. [`Target`] and [`RequestSpec`] run once at start-up and may allocate;
//! [`ResponseParser`] runs per response on the hot path and does not allocate, lock or log.
//! Design and the buffer contract: `docs/http.md`.

pub mod request;
pub mod response;
pub mod target;
pub mod template;
pub mod tls;

pub use request::{parse_header_arg, RequestError, RequestSpec, USER_AGENT};
pub use response::{
    Done, Feed, ParseError, Phase, ResponseParser, MAX_CHUNK_LINE, MAX_HEADERS, MAX_HEAD_BYTES,
};
pub use target::{Scheme, Target, TargetError};
