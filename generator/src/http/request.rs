//! Request encoding: the complete wire bytes of a request, built once before the run.
//!
//! The engine sends the same bytes for every request of an endpoint, so encoding (and all
//! its validation and allocation) happens at start-up; the hot path only copies or
//! registers the finished buffer. Validation here is what keeps a `-H` flag from smuggling a
//! second request into the stream (CR/LF injection).

use super::target::Target;

/// The value of our default `User-Agent` header.
pub const USER_AGENT: &str = concat!("gen/", env!("CARGO_PKG_VERSION"));

/// Why a request could not be encoded, or a `-H` argument was refused. Messages name the bad
/// value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The method is not an RFC 9110 token.
    #[error("invalid HTTP method {0:?}")]
    Method(String),
    /// The request target contains bytes not allowed on the request line.
    #[error("invalid request path {0:?} (must start with '/' and contain no spaces or control characters)")]
    Path(String),
    /// The header name is not a token.
    #[error("invalid header name {0:?}")]
    HeaderName(String),
    /// The header value contains CR, LF or other control characters.
    #[error("invalid value for header {name:?}: {value:?} (control characters are not allowed)")]
    HeaderValue {
        /// The header's name.
        name: String,
        /// The offending value.
        value: String,
    },
    /// A `-H` argument without a colon.
    #[error("invalid header argument {0:?} (expected \"Name: value\")")]
    HeaderArg(String),
    /// More than one `Host` header.
    #[error("duplicate Host header {0:?}")]
    DuplicateHost(String),
    /// A user `Content-Length` that disagrees with the body we send.
    #[error("Content-Length header {value:?} does not match the body length {body_len}")]
    ContentLength {
        /// The user's value.
        value: String,
        /// The actual body length.
        body_len: usize,
    },
    /// `Transfer-Encoding` would change the framing of a body we send as-is.
    #[error(
        "header \"Transfer-Encoding: {0}\" is not supported (bodies are sent with Content-Length)"
    )]
    TransferEncoding(String),
}

/// What to send: everything needed to encode one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestSpec {
    /// `GET`, `POST`, ... (case-sensitive, sent as given).
    pub method: String,
    /// Origin-form request target: `/path?query`.
    pub path: String,
    /// Default `Host` header value (a user `Host` header replaces it).
    pub host: String,
    /// User headers, in order. `Host` and `User-Agent` replace our defaults (names compared
    /// case-insensitively).
    pub headers: Vec<(String, String)>,
    /// Request body, sent with `Content-Length`.
    pub body: Vec<u8>,
}

impl RequestSpec {
    /// A `GET`-style spec for `target` (no headers, empty body); adjust fields as needed.
    pub fn new(method: impl Into<String>, target: &Target) -> RequestSpec {
        RequestSpec {
            method: method.into(),
            path: target.path_and_query().to_owned(),
            host: target.host_header().to_owned(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Whether this is a `HEAD` request, whose response never has a body: pass it to
    /// [`super::ResponseParser::reset`].
    pub fn is_head(&self) -> bool {
        self.method == "HEAD"
    }

    /// Whether `Content-Length` is sent: with a body, and always for methods that expect one
    /// (`Content-Length: 0` keeps servers from waiting for a body that never comes).
    fn sends_content_length(&self) -> bool {
        !self.body.is_empty() || matches!(self.method.as_str(), "POST" | "PUT" | "PATCH")
    }

    /// Checks method, path, header names and values, and framing headers.
    pub fn validate(&self) -> Result<(), RequestError> {
        if !is_token(&self.method) {
            return Err(RequestError::Method(self.method.clone()));
        }
        if !self.path.starts_with('/') || !self.path.bytes().all(is_path_byte) {
            return Err(RequestError::Path(self.path.clone()));
        }
        check_header("Host", &self.host)?;
        let mut hosts = 0;
        for (name, value) in &self.headers {
            check_header(name, value)?;
            if name.eq_ignore_ascii_case("host") {
                hosts += 1;
                if hosts > 1 {
                    return Err(RequestError::DuplicateHost(value.clone()));
                }
            } else if name.eq_ignore_ascii_case("content-length") {
                if value.trim().parse::<usize>() != Ok(self.body.len()) {
                    return Err(RequestError::ContentLength {
                        value: value.clone(),
                        body_len: self.body.len(),
                    });
                }
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                return Err(RequestError::TransferEncoding(value.clone()));
            }
        }
        Ok(())
    }

    /// Validates, then encodes the complete request:
    /// `METHOD /path HTTP/1.1`, `Host`, `User-Agent`, user headers, `Content-Length` (when
    /// there is a body or the method is POST/PUT/PATCH), blank line, body.
    pub fn encode(&self) -> Result<Vec<u8>, RequestError> {
        self.validate()?;
        let user = |n: &'static str| {
            self.headers
                .iter()
                .filter(move |(k, _)| k.eq_ignore_ascii_case(n))
        };
        let mut out = Vec::with_capacity(128 + self.path.len() + self.body.len());
        let mut line = |name: &str, value: &str| {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        };
        // Host first (RFC 9112 3.2 asks user agents to send it first), the user's if given.
        match user("host").next() {
            Some((n, v)) => line(n, v),
            None => line("Host", &self.host),
        }
        let mut has_ua = false;
        for (n, v) in user("user-agent") {
            line(n, v);
            has_ua = true;
        }
        if !has_ua {
            line("User-Agent", USER_AGENT);
        }
        let mut has_cl = false;
        for (n, v) in &self.headers {
            if n.eq_ignore_ascii_case("host") || n.eq_ignore_ascii_case("user-agent") {
                continue;
            }
            has_cl |= n.eq_ignore_ascii_case("content-length");
            line(n, v);
        }
        if !has_cl && self.sends_content_length() {
            line("Content-Length", &self.body.len().to_string());
        }
        let mut head = Vec::with_capacity(out.len() + self.method.len() + self.path.len() + 16);
        head.extend_from_slice(self.method.as_bytes());
        head.push(b' ');
        head.extend_from_slice(self.path.as_bytes());
        head.extend_from_slice(b" HTTP/1.1\r\n");
        head.extend_from_slice(&out);
        head.extend_from_slice(b"\r\n");
        head.extend_from_slice(&self.body);
        Ok(head)
    }
}

/// Parses a `-H "Name: value"` argument. The value is trimmed of spaces and tabs; an empty
/// value (`"X-Empty:"`) is allowed.
pub fn parse_header_arg(arg: &str) -> Result<(String, String), RequestError> {
    let Some((name, value)) = arg.split_once(':') else {
        return Err(RequestError::HeaderArg(arg.to_owned()));
    };
    if !is_token(name) {
        return Err(RequestError::HeaderArg(arg.to_owned()));
    }
    let value = value.trim_matches([' ', '\t']);
    check_header(name, value)?;
    Ok((name.to_owned(), value.to_owned()))
}

fn check_header(name: &str, value: &str) -> Result<(), RequestError> {
    if !is_token(name) {
        return Err(RequestError::HeaderName(name.to_owned()));
    }
    // field-value = *( VCHAR / obs-text / SP / HTAB ): any control character is refused,
    // CR and LF above all.
    if !value
        .bytes()
        .all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f))
    {
        return Err(RequestError::HeaderValue {
            name: name.to_owned(),
            value: value.to_owned(),
        });
    }
    Ok(())
}

/// RFC 9110 token: one or more tchar.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'!' | b'#'
                        | b'$'
                        | b'%'
                        | b'&'
                        | b'\''
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
                )
        })
}

/// Bytes allowed in a request target on the wire: visible ASCII (no space, no controls).
/// Non-ASCII must already be percent-encoded (the `url` crate does this).
fn is_path_byte(b: u8) -> bool {
    (0x21..0x7f).contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn spec(method: &str, headers: &[(&str, &str)], body: &[u8]) -> RequestSpec {
        RequestSpec {
            method: method.into(),
            path: "/p?q=1".into(),
            host: "example.com:8080".into(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: body.to_vec(),
        }
    }

    fn text(spec: &RequestSpec) -> String {
        String::from_utf8(spec.encode().unwrap()).unwrap()
    }

    #[test]
    fn get_exact_bytes() {
        assert_eq!(
            text(&spec("GET", &[("Accept", "*/*")], b"")),
            format!(
                "GET /p?q=1 HTTP/1.1\r\nHost: example.com:8080\r\nUser-Agent: {USER_AGENT}\r\n\
                 Accept: */*\r\n\r\n"
            )
        );
    }

    #[test]
    fn post_with_and_without_body() {
        assert_eq!(
            text(&spec("POST", &[], b"hello")),
            format!(
                "POST /p?q=1 HTTP/1.1\r\nHost: example.com:8080\r\nUser-Agent: {USER_AGENT}\r\n\
                 Content-Length: 5\r\n\r\nhello"
            )
        );
        assert!(text(&spec("PUT", &[], b"")).ends_with("Content-Length: 0\r\n\r\n"));
        assert!(text(&spec("PATCH", &[], b"")).ends_with("Content-Length: 0\r\n\r\n"));
        assert!(!text(&spec("GET", &[], b"")).contains("Content-Length"));
        assert!(text(&spec("DELETE", &[], b"x")).ends_with("Content-Length: 1\r\n\r\nx"));
    }

    #[test]
    fn user_headers_override_defaults() {
        let t = text(&spec(
            "GET",
            &[("x-a", "1"), ("user-agent", "curl/8"), ("HOST", "other")],
            b"",
        ));
        assert_eq!(
            t,
            "GET /p?q=1 HTTP/1.1\r\nHOST: other\r\nuser-agent: curl/8\r\nx-a: 1\r\n\r\n"
        );
        // A matching user Content-Length replaces ours rather than duplicating it.
        let t = text(&spec("POST", &[("content-length", "2")], b"ab"));
        assert_eq!(t.matches("ontent-").count(), 1, "{t}");
    }

    #[test]
    fn validation_errors_name_the_value() {
        let e = spec("GE T", &[], b"").encode().unwrap_err();
        assert_eq!(e.to_string(), r#"invalid HTTP method "GE T""#);
        let e = spec("GET", &[("X-A", "1\r\nEvil: 2")], b"")
            .encode()
            .unwrap_err();
        assert!(e.to_string().contains(r#""X-A""#), "{e}");
        let e = spec("GET", &[("X A", "1")], b"").encode().unwrap_err();
        assert_eq!(e, RequestError::HeaderName("X A".into()));
        let e = spec("GET", &[("Host", "a"), ("host", "b")], b"")
            .encode()
            .unwrap_err();
        assert_eq!(e, RequestError::DuplicateHost("b".into()));
        let e = spec("POST", &[("Content-Length", "9")], b"ab")
            .encode()
            .unwrap_err();
        assert!(e.to_string().contains(r#""9""#), "{e}");
        let e = spec("POST", &[("Transfer-Encoding", "chunked")], b"ab")
            .encode()
            .unwrap_err();
        assert!(e.to_string().contains("chunked"), "{e}");
        let mut s = spec("GET", &[], b"");
        s.path = "/a b".into();
        assert_eq!(s.encode().unwrap_err(), RequestError::Path("/a b".into()));
        s.path = "x".into();
        assert!(s.encode().is_err());
        let mut s = spec("GET", &[], b"");
        s.host = "h\n".into();
        assert!(s.encode().is_err());
    }

    #[test]
    fn head_flag() {
        assert!(spec("HEAD", &[], b"").is_head());
        assert!(!spec("GET", &[], b"").is_head());
    }

    #[test]
    fn new_from_target() {
        let t = Target::parse("http://[::1]:81/x?y").unwrap();
        let s = RequestSpec::new("GET", &t);
        assert_eq!(s.path, "/x?y");
        assert_eq!(s.host, "[::1]:81");
        assert!(text(&s).starts_with("GET /x?y HTTP/1.1\r\nHost: [::1]:81\r\n"));
    }

    #[test]
    fn header_args() {
        assert_eq!(
            parse_header_arg("X-Token:  abc def \t").unwrap(),
            ("X-Token".into(), "abc def".into())
        );
        assert_eq!(
            parse_header_arg("X-Empty:").unwrap(),
            ("X-Empty".into(), "".into())
        );
        assert_eq!(
            parse_header_arg("Accept: a:b").unwrap(),
            ("Accept".into(), "a:b".into())
        );
        for bad in ["NoColon", ": v", "Bad Name: v", "X :v"] {
            assert_eq!(
                parse_header_arg(bad).unwrap_err(),
                RequestError::HeaderArg(bad.into())
            );
        }
        assert_eq!(
            parse_header_arg("X:\r\nEvil: 1").unwrap_err().to_string(),
            r#"invalid value for header "X": "\r\nEvil: 1" (control characters are not allowed)"#
        );
        assert_eq!(
            parse_header_arg("NoColon").unwrap_err().to_string(),
            r#"invalid header argument "NoColon" (expected "Name: value")"#
        );
    }

    fn token() -> impl Strategy<Value = String> {
        "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,12}"
    }

    proptest! {
        /// Whatever valid spec we encode, httparse reads back the same request.
        #[test]
        fn encode_round_trips_through_httparse(
            method in token(),
            path in "/[!-~]{0,30}",
            host in "[a-z0-9.-]{1,20}(:[0-9]{1,5})?",
            headers in proptest::collection::vec((token(), "[ -~\t]{0,20}"), 0..10),
            body in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            // Values as httparse returns them: trimmed of surrounding whitespace.
            let headers: Vec<(String, String)> = headers
                .into_iter()
                .filter(|(n, _)| {
                    !["host", "content-length", "transfer-encoding"]
                        .iter()
                        .any(|k| n.eq_ignore_ascii_case(k))
                })
                .map(|(n, v)| (n, v.trim_matches([' ', '\t']).to_owned()))
                .collect();
            let spec = RequestSpec { method, path, host, headers, body };
            let wire = spec.encode().unwrap();
            let mut hs = [httparse::EMPTY_HEADER; 64];
            let mut req = httparse::Request::new(&mut hs);
            let n = match req.parse(&wire).unwrap() {
                httparse::Status::Complete(n) => n,
                httparse::Status::Partial => panic!("partial"),
            };
            prop_assert_eq!(req.method, Some(spec.method.as_str()));
            prop_assert_eq!(req.path, Some(spec.path.as_str()));
            prop_assert_eq!(req.version, Some(1));
            prop_assert_eq!(&wire[n..], &spec.body[..]);
            let got: Vec<(String, String)> = req
                .headers
                .iter()
                .map(|h| (h.name.to_owned(), String::from_utf8(h.value.to_vec()).unwrap()))
                .collect();
            prop_assert_eq!(&got[0], &("Host".to_owned(), spec.host.clone()));
            let ua_user: Vec<_> = spec
                .headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case("user-agent"))
                .cloned()
                .collect();
            let mut want = vec![("Host".to_owned(), spec.host.clone())];
            if ua_user.is_empty() {
                want.push(("User-Agent".to_owned(), USER_AGENT.to_owned()));
            } else {
                want.extend(ua_user);
            }
            want.extend(
                spec.headers
                    .iter()
                    .filter(|(n, _)| !n.eq_ignore_ascii_case("user-agent"))
                    .cloned(),
            );
            if spec.sends_content_length() {
                want.push(("Content-Length".to_owned(), spec.body.len().to_string()));
            }
            prop_assert_eq!(got, want);
        }

        /// No `-H` argument, however hostile, yields a header that breaks the request line
        /// structure.
        #[test]
        fn header_arg_never_injects(arg in "\\PC{0,40}|[\\x00-\\x7f]{0,40}") {
            if let Ok((n, v)) = parse_header_arg(&arg) {
                prop_assert!(!n.contains(['\r', '\n', ':', ' ']));
                prop_assert!(!v.contains(['\r', '\n', '\0']));
            }
        }
    }
}
