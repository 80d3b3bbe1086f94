//! Request parameters decoded exactly as Flask's `request.values` (Werkzeug 3.x) does.
//!
//! Werkzeug splits on `&` only, splits each pair at its first `=` (a pair without `=` has an
//! empty value), turns `+` into a space, percent-decodes (`%zz` and a lone `%` stay as
//! they are), then decodes UTF-8; bytes that are not valid UTF-8 come back percent-encoded
//! with upper-case hex (its `werkzeug.url_quote` error handler), not as U+FFFD. Keys are
//! decoded the same way, so `device%69d` is `deviceid`. The first value of a repeated key
//! wins; the query string wins over the form body (`CombinedMultiDict([args, form])`), and
//! a GET request's body is never read as a form. A form body that is not valid UTF-8 before
//! decoding yields no form at all, as in Werkzeug. Checked against Flask 3.1.3 / Werkzeug
//! 3.1.8.
//!
//! Decoding borrows from the input when there is nothing to decode, so the common case of
//! plain UUIDs allocates nothing.

use std::borrow::Cow;

/// The parameters the sample app reads.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Params<'a> {
    pub deviceid: Option<Cow<'a, str>>,
    pub timestamp: Option<Cow<'a, str>>,
    /// The per-request delay override; only ever taken from the query string.
    pub delay_ms: Option<Cow<'a, str>>,
}

impl<'a> Params<'a> {
    /// Reads the query string (without the `?`).
    pub fn from_query(query: &'a str) -> Self {
        let mut params = Params::default();
        for (key, value) in pairs(query) {
            let slot = match &*key {
                "deviceid" => &mut params.deviceid,
                "timestamp" => &mut params.timestamp,
                "delay_ms" => &mut params.delay_ms,
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some(value);
            }
        }
        params
    }

    /// Fills what the query string lacked from an `application/x-www-form-urlencoded` body.
    pub fn fill_from_form(&mut self, body: &'a [u8]) {
        if self.deviceid.is_some() && self.timestamp.is_some() {
            return;
        }
        // Werkzeug decodes the raw body as UTF-8 first and drops the whole form if it fails.
        let Ok(body) = std::str::from_utf8(body) else {
            return;
        };
        let (mut deviceid, mut timestamp) = (None, None);
        for (key, value) in pairs(body) {
            let slot = match &*key {
                "deviceid" => &mut deviceid,
                "timestamp" => &mut timestamp,
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some(value);
            }
        }
        if self.deviceid.is_none() {
            self.deviceid = deviceid;
        }
        if self.timestamp.is_none() {
            self.timestamp = timestamp;
        }
    }
}

/// True for `application/x-www-form-urlencoded`, ignoring case and parameters (Werkzeug
/// compares the mimetype only; it ignores `charset` too).
pub fn is_form_content_type(value: &[u8]) -> bool {
    let mime = value.split(|&b| b == b';').next().unwrap_or_default();
    mime.trim_ascii()
        .eq_ignore_ascii_case(b"application/x-www-form-urlencoded")
}

/// The decoded `(key, value)` pairs of a query string or form body, in order.
pub fn pairs(input: &str) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> {
    input.split('&').filter(|s| !s.is_empty()).map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (decode(key), decode(value))
    })
}

/// `+` to space, percent-decoding, then UTF-8 with invalid bytes re-encoded as `%XX`.
pub fn decode(s: &str) -> Cow<'_, str> {
    if !s.bytes().any(|b| b == b'+' || b == b'%') {
        return Cow::Borrowed(s);
    }
    let raw = percent_decode(s.as_bytes(), true);
    Cow::Owned(utf8_or_quoted(&raw))
}

/// Percent-decodes `input`; with `plus`, `+` becomes a space first (query/form rules; a
/// path keeps its `+`). Malformed escapes are kept literally.
pub fn percent_decode(input: &[u8], plus: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        let b = input[i];
        if b == b'%' {
            if let (Some(hi), Some(lo)) = (
                input.get(i + 1).and_then(|&c| hex(c)),
                input.get(i + 2).and_then(|&c| hex(c)),
            ) {
                out.push(hi << 4 | lo);
                i += 3;
                continue;
            }
        }
        out.push(if plus && b == b'+' { b' ' } else { b });
        i += 1;
    }
    out
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Decodes UTF-8, writing each byte of an invalid sequence as `%XX` (upper-case hex).
fn utf8_or_quoted(mut bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    loop {
        match std::str::from_utf8(bytes) {
            Ok(valid) => {
                out.push_str(valid);
                return out;
            }
            Err(e) => {
                let (valid, rest) = bytes.split_at(e.valid_up_to());
                // `valid_up_to` guarantees this prefix is UTF-8, so the default never happens.
                out.push_str(std::str::from_utf8(valid).unwrap_or_default());
                let bad = e.error_len().unwrap_or(rest.len());
                for b in &rest[..bad] {
                    const HEX: &[u8; 16] = b"0123456789ABCDEF";
                    out.push('%');
                    out.push(HEX[(b >> 4) as usize] as char);
                    out.push(HEX[(b & 15) as usize] as char);
                }
                bytes = &rest[bad..];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(query: &str) -> Option<String> {
        Params::from_query(query).deviceid.map(Cow::into_owned)
    }

    /// Expected values were produced by Flask 3.1.3 / Werkzeug 3.1.8's test client.
    #[test]
    fn decodes_like_werkzeug() {
        assert_eq!(device("deviceid=%FF").as_deref(), Some("%FF"));
        assert_eq!(device("deviceid=%ff").as_deref(), Some("%FF"));
        assert_eq!(device("deviceid=%E2%82A").as_deref(), Some("%E2%82A"));
        assert_eq!(device("deviceid=a+b%2B%20c").as_deref(), Some("a b+ c"));
        assert_eq!(device("deviceid=%zz%").as_deref(), Some("%zz%"));
        assert_eq!(device("deviceid").as_deref(), Some(""));
        assert_eq!(device("deviceid=").as_deref(), Some(""));
        assert_eq!(device("device%69d=x&deviceid=y").as_deref(), Some("x"));
        assert_eq!(device("deviceid=%C3%A9").as_deref(), Some("é"));
        assert_eq!(device("deviceid=%00").as_deref(), Some("\0"));
        assert_eq!(
            device("deviceid=%F0%9F%98%80x%ED%A0%80").as_deref(),
            Some("\u{1F600}x%ED%A0%80")
        );
        assert_eq!(device("deviceid=a=b").as_deref(), Some("a=b"));
        assert_eq!(device("&&deviceid=1&&").as_deref(), Some("1"));
        assert_eq!(
            device("deviceid=1;timestamp=2").as_deref(),
            Some("1;timestamp=2")
        );
        assert_eq!(device("other=1"), None);
        assert_eq!(device(""), None);
    }

    #[test]
    fn plain_values_are_borrowed() {
        let p = Params::from_query("deviceid=0b7c6a4e-1c2d-4a5b-8c9d-0e1f2a3b4c5d");
        assert!(matches!(p.deviceid, Some(Cow::Borrowed(_))));
    }

    #[test]
    fn query_wins_over_form_and_first_value_wins() {
        let mut p = Params::from_query("deviceid=q");
        p.fill_from_form(b"deviceid=b&timestamp=t1&timestamp=t2");
        assert_eq!(p.deviceid.as_deref(), Some("q"));
        assert_eq!(p.timestamp.as_deref(), Some("t1"));
    }

    #[test]
    fn invalid_utf8_form_body_is_no_form() {
        let mut p = Params::from_query("");
        p.fill_from_form(b"deviceid=\xff");
        assert_eq!(p.deviceid, None);
    }

    #[test]
    fn form_content_type_matching() {
        assert!(is_form_content_type(b"application/x-www-form-urlencoded"));
        assert!(is_form_content_type(
            b"Application/X-WWW-Form-Urlencoded; charset=latin1"
        ));
        assert!(!is_form_content_type(b"text/plain"));
        assert!(!is_form_content_type(b"multipart/form-data; boundary=x"));
    }

    #[test]
    fn path_decoding_keeps_plus() {
        assert_eq!(percent_decode(b"/log%69n+", false), b"/login+");
    }
}
