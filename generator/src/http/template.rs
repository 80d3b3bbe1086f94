//! Request templates: `{{user.id}}`, `{{uuid}}`, `{{timestamp}}`, `{{seq}}`,
//! `{{rand_int(a,b)}}` and `{{csv.COLUMN}}`, compiled once into segments and rendered per
//! request into a reused buffer.
//!
//! Rendering is on the hot path, so it is hand-written: no parsing, no formatting machinery
//! and no allocation per request. [`Template::max_len`] bounds the output of every render;
//! a buffer with that capacity is never reallocated (checked by a property test). Values are
//! escaped as they are written ([`Escape`]), so a timestamp in a form body arrives as the
//! server would decode it.

use rand::rngs::SmallRng;
use rand::{Rng, RngCore};

/// How a value is escaped where it is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Escape {
    /// As is (raw bodies, header values).
    None,
    /// Percent-encoding of everything but RFC 3986 unreserved bytes (path segments).
    Url,
    /// `application/x-www-form-urlencoded` (WHATWG): space as `+`, else like `Url` but `*`
    /// kept (form bodies and query strings).
    Form,
}

impl Escape {
    /// Output bytes per input byte, at most.
    fn factor(self) -> usize {
        match self {
            Escape::None => 1,
            Escape::Url | Escape::Form => 3,
        }
    }

    #[inline]
    fn push(self, out: &mut Vec<u8>, bytes: &[u8]) {
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        match self {
            Escape::None => out.extend_from_slice(bytes),
            Escape::Url | Escape::Form => {
                for &b in bytes {
                    if b.is_ascii_alphanumeric()
                        || matches!(b, b'-' | b'.' | b'_')
                        || (b == b'~' && self == Escape::Url)
                        || (b == b'*' && self == Escape::Form)
                    {
                        out.push(b);
                    } else if b == b' ' && self == Escape::Form {
                        out.push(b'+');
                    } else {
                        out.extend_from_slice(&[
                            b'%',
                            HEX[(b >> 4) as usize],
                            HEX[(b & 15) as usize],
                        ]);
                    }
                }
            }
        }
    }
}

/// A value computed per request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Var {
    /// The simulated user's UUIDv4, fixed for its lifetime.
    UserId,
    /// A fresh UUIDv4.
    Uuid,
    /// Local time with microseconds, as Python's `str(datetime.now())`.
    Timestamp,
    /// A per-run sequence number, unique across threads.
    Seq,
    /// A uniform integer in `lo..=hi`.
    RandInt { lo: i64, hi: i64 },
    /// A column of the scenario's CSV file, from the row chosen for this request.
    Csv { col: usize },
}

impl Var {
    /// Longest unescaped rendering in bytes (`csv_max`: the longest CSV cell).
    fn max_len(self, csv_max: usize) -> usize {
        match self {
            Var::UserId | Var::Uuid => 36,
            Var::Timestamp => 26,
            Var::Seq => 20,
            Var::RandInt { .. } => 20,
            Var::Csv { .. } => csv_max,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Seg {
    /// `lit[start..end]`
    Lit(u32, u32),
    Var(Var, Escape),
}

/// Why a template does not compile. Messages name the bad text.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("unterminated template in {0:?} (a \"{{{{\" without \"}}}}\")")]
    Unterminated(String),
    #[error("unknown template {{{{{0}}}}} (known: user.id, uuid, timestamp, seq, rand_int(a,b), csv.COLUMN)")]
    Unknown(String),
    #[error("invalid {{{{{0}}}}}: rand_int needs two integers a <= b")]
    RandInt(String),
    #[error("{{{{{0}}}}}: no such CSV column (columns: {1})")]
    CsvColumn(String, String),
}

/// Per-request values the renderer reads. Built by the engine per send; no allocation.
pub struct Ctx<'a> {
    /// The user's id, already formatted.
    pub user_id: &'a [u8; 36],
    /// Wall-clock time, ns since the Unix epoch.
    pub now_unix_ns: i64,
    /// Local time zone offset from UTC, seconds (refreshed off the hot path).
    pub utc_offset_s: i64,
    pub seq: u64,
    pub rng: &'a mut SmallRng,
    /// The CSV row for this request (empty when the scenario has no CSV file).
    pub csv_row: &'a [Box<str>],
}

/// A compiled template: literal bytes and the values between them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Template {
    lit: Vec<u8>,
    segs: Vec<Seg>,
    max_len: usize,
}

impl Template {
    pub fn new() -> Template {
        Template::default()
    }

    /// Appends literal bytes, sent as given.
    pub fn push_literal(&mut self, bytes: &[u8]) {
        let start = self.lit.len() as u32;
        self.lit.extend_from_slice(bytes);
        self.max_len += bytes.len();
        if let Some(Seg::Lit(_, end)) = self.segs.last_mut() {
            if *end == start {
                *end = self.lit.len() as u32;
                return;
            }
        }
        self.segs.push(Seg::Lit(start, self.lit.len() as u32));
    }

    /// Compiles `src` and appends it: literal text escaped with `lit`, values with `var`.
    /// `columns` are the CSV header names (`{{csv.NAME}}`), `csv_max` its longest cell.
    pub fn push_source(
        &mut self,
        src: &str,
        lit: Escape,
        var: Escape,
        columns: &[String],
        csv_max: usize,
    ) -> Result<(), TemplateError> {
        let mut rest = src;
        let mut buf = Vec::new();
        while let Some(open) = rest.find("{{") {
            buf.clear();
            lit.push(&mut buf, &rest.as_bytes()[..open]);
            self.push_literal(&buf);
            let after = &rest[open + 2..];
            let close = after
                .find("}}")
                .ok_or_else(|| TemplateError::Unterminated(src.to_owned()))?;
            let v = parse_var(after[..close].trim(), columns)?;
            self.max_len += v.max_len(csv_max) * var.factor();
            self.segs.push(Seg::Var(v, var));
            rest = &after[close + 2..];
        }
        buf.clear();
        lit.push(&mut buf, rest.as_bytes());
        self.push_literal(&buf);
        Ok(())
    }

    /// Compiles a whole template with one escape for literals and values.
    pub fn compile(
        src: &str,
        esc: Escape,
        columns: &[String],
        csv_max: usize,
    ) -> Result<Template, TemplateError> {
        let mut t = Template::new();
        t.push_source(src, esc, esc, columns, csv_max)?;
        Ok(t)
    }

    /// Appends `other`.
    pub fn append(&mut self, other: &Template) {
        for s in &other.segs {
            match *s {
                Seg::Lit(a, b) => self.push_literal(&other.lit[a as usize..b as usize]),
                Seg::Var(v, e) => self.segs.push(Seg::Var(v, e)),
            }
        }
        // Literals were counted by push_literal; add the values' share.
        self.max_len += other.max_len - other.lit.len();
    }

    /// No values: every render gives the same bytes ([`Self::literal`]).
    pub fn is_static(&self) -> bool {
        self.segs.iter().all(|s| matches!(s, Seg::Lit(..)))
    }

    /// The literal bytes (the whole output when [`Self::is_static`]).
    pub fn literal(&self) -> &[u8] {
        &self.lit
    }

    /// Upper bound of the bytes one render appends.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Appends one rendering to `out`. Allocates only when `out` has less than
    /// [`Self::max_len`] spare capacity.
    pub fn render(&self, cx: &mut Ctx<'_>, out: &mut Vec<u8>) {
        for s in &self.segs {
            match *s {
                Seg::Lit(a, b) => out.extend_from_slice(&self.lit[a as usize..b as usize]),
                Seg::Var(v, e) => render_var(v, e, cx, out),
            }
        }
    }
}

fn parse_var(name: &str, columns: &[String]) -> Result<Var, TemplateError> {
    match name {
        "user.id" => return Ok(Var::UserId),
        "uuid" => return Ok(Var::Uuid),
        "timestamp" => return Ok(Var::Timestamp),
        "seq" => return Ok(Var::Seq),
        _ => {}
    }
    if let Some(args) = name
        .strip_prefix("rand_int(")
        .and_then(|a| a.strip_suffix(')'))
    {
        let bad = || TemplateError::RandInt(name.to_owned());
        let (a, b) = args.split_once(',').ok_or_else(bad)?;
        let lo: i64 = a.trim().parse().map_err(|_| bad())?;
        let hi: i64 = b.trim().parse().map_err(|_| bad())?;
        if lo > hi {
            return Err(bad());
        }
        return Ok(Var::RandInt { lo, hi });
    }
    if let Some(col) = name.strip_prefix("csv.") {
        return columns
            .iter()
            .position(|c| c == col)
            .map(|col| Var::Csv { col })
            .ok_or_else(|| TemplateError::CsvColumn(name.to_owned(), columns.join(", ")));
    }
    Err(TemplateError::Unknown(name.to_owned()))
}

#[inline]
fn render_var(v: Var, e: Escape, cx: &mut Ctx<'_>, out: &mut Vec<u8>) {
    let mut tmp = [0u8; 36];
    let bytes: &[u8] = match v {
        Var::UserId => cx.user_id,
        Var::Uuid => {
            uuid_v4(cx.rng, &mut tmp);
            &tmp
        }
        Var::Timestamp => {
            let n = python_timestamp(cx.now_unix_ns, cx.utc_offset_s, &mut tmp);
            &tmp[..n]
        }
        Var::Seq => {
            let n = fmt_u64(cx.seq, &mut tmp);
            &tmp[tmp.len() - n..]
        }
        Var::RandInt { lo, hi } => {
            let x = cx.rng.random_range(lo..=hi);
            let n = fmt_u64(x.unsigned_abs(), &mut tmp);
            let start = tmp.len() - n;
            if x < 0 {
                tmp[start - 1] = b'-';
                &tmp[start - 1..]
            } else {
                &tmp[start..]
            }
        }
        Var::Csv { col } => cx.csv_row.get(col).map_or(&[][..], |c| c.as_bytes()),
    };
    e.push(out, bytes);
}

/// Writes `x` right-aligned at the end of `buf` (at least 20 bytes); returns the digit count.
pub(crate) fn fmt_u64(mut x: u64, buf: &mut [u8]) -> usize {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (x % 10) as u8;
        x /= 10;
        if x == 0 {
            return buf.len() - i;
        }
    }
}

/// A random (version 4, RFC 9562) UUID in its 36-character text form.
pub fn uuid_v4(rng: &mut SmallRng, out: &mut [u8; 36]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut b = [0u8; 16];
    rng.fill_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let mut o = 0;
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out[o] = b'-';
            o += 1;
        }
        out[o] = HEX[(byte >> 4) as usize];
        out[o + 1] = HEX[(byte & 15) as usize];
        o += 2;
    }
}

/// A canonical lower-case UUIDv4 (version nibble 4, variant 10xx).
pub fn is_uuid_v4(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, &c)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                c == b'-'
            } else {
                c.is_ascii_digit() || (b'a'..=b'f').contains(&c)
            }
        })
        && b[14] == b'4'
        && matches!(b[19], b'8' | b'9' | b'a' | b'b')
}

/// Python's `str(datetime.now())`: `YYYY-MM-DD HH:MM:SS.ffffff` in local time, without the
/// fraction when the microseconds are zero. Returns the length written (26 or 19).
pub fn python_timestamp(unix_ns: i64, utc_offset_s: i64, out: &mut [u8; 36]) -> usize {
    let local_us =
        (unix_ns.div_euclid(1000)).saturating_add(utc_offset_s.saturating_mul(1_000_000));
    let secs = local_us.div_euclid(1_000_000);
    let micros = local_us.rem_euclid(1_000_000) as u64;
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400) as u64;
    let put = |out: &mut [u8; 36], at: usize, v: u64, width: usize| {
        let mut v = v;
        for i in (0..width).rev() {
            out[at + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(out, 0, y.clamp(0, 9999) as u64, 4);
    put(out, 5, u64::from(m), 2);
    put(out, 8, u64::from(d), 2);
    put(out, 11, sod / 3600, 2);
    put(out, 14, sod / 60 % 60, 2);
    put(out, 17, sod % 60, 2);
    out[4] = b'-';
    out[7] = b'-';
    out[10] = b' ';
    out[13] = b':';
    out[16] = b':';
    if micros == 0 {
        return 19;
    }
    out[19] = b'.';
    put(out, 20, micros, 6);
    26
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day) (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// The local time zone's offset from UTC at `unix_s`, in seconds (0 if unknown). Calls
/// `localtime_r`, which may take a lock: call it at start and once a second, never per request.
pub fn local_utc_offset(unix_s: i64) -> i64 {
    // SAFETY: localtime_r fills a plain struct from a plain time_t.
    unsafe {
        let t = unix_s as libc::time_t;
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&t, &mut tm).is_null() {
            return 0;
        }
        tm.tm_gmtoff
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;

    fn render(t: &Template, now: i64, seq: u64, rng: &mut SmallRng) -> Vec<u8> {
        let id = *b"0f8fad5b-d9cb-469f-a165-70867728950e";
        let row: Vec<Box<str>> = vec!["alice smith".into(), "x".into()];
        let mut cx = Ctx {
            user_id: &id,
            now_unix_ns: now,
            utc_offset_s: 3600,
            seq,
            rng,
            csv_row: &row,
        };
        let mut out = Vec::with_capacity(t.max_len());
        let (ptr, cap) = (out.as_ptr(), out.capacity());
        t.render(&mut cx, &mut out);
        assert!(out.len() <= t.max_len());
        assert_eq!((out.as_ptr(), out.capacity()), (ptr, cap), "reallocated");
        out
    }

    fn cols() -> Vec<String> {
        vec!["name".into(), "pw".into()]
    }

    #[test]
    fn every_value_renders() {
        let mut rng = SmallRng::seed_from_u64(1);
        let t = Template::compile(
            "id={{user.id}} seq={{ seq }} n={{rand_int(-3, -3)}} u={{csv.name}} t={{timestamp}}",
            Escape::None,
            &cols(),
            11,
        )
        .unwrap();
        assert!(!t.is_static());
        // 2026-11-29 16:25:00.000042 UTC, shown at UTC+1.
        let now = 1_795_969_500_000_042_000;
        let s = String::from_utf8(render(&t, now, 77, &mut rng)).unwrap();
        assert_eq!(
            s,
            "id=0f8fad5b-d9cb-469f-a165-70867728950e seq=77 n=-3 u=alice smith \
             t=2026-11-29 17:25:00.000042"
        );
        // Python drops the fraction when the microseconds are zero.
        let t = Template::compile("{{timestamp}}", Escape::None, &[], 0).unwrap();
        let s = render(&t, 1_795_969_500_000_000_999, 0, &mut rng);
        assert_eq!(s, b"2026-11-29 17:25:00");
    }

    #[test]
    fn form_escaping_matches_what_a_server_decodes() {
        let mut rng = SmallRng::seed_from_u64(1);
        let mut t = Template::new();
        t.push_source("a b&c=", Escape::Form, Escape::Form, &[], 0)
            .unwrap();
        t.push_source("{{timestamp}}", Escape::Form, Escape::Form, &[], 0)
            .unwrap();
        let out = render(&t, 1_795_969_500_000_042_000, 0, &mut rng);
        assert_eq!(out, b"a+b%26c%3D2026-11-29+17%3A25%3A00.000042");
        let decoded: Vec<(String, String)> =
            form_urlencoded::parse(b"k=2026-11-29+17%3A25%3A00.000042")
                .into_owned()
                .collect();
        assert_eq!(decoded[0].1, "2026-11-29 17:25:00.000042");
    }

    #[test]
    fn uuids_are_version_4() {
        let mut rng = SmallRng::seed_from_u64(9);
        let t = Template::compile("{{uuid}}", Escape::None, &[], 0).unwrap();
        let a = render(&t, 0, 0, &mut rng);
        let b = render(&t, 0, 0, &mut rng);
        assert_ne!(a, b);
        for u in [a, b] {
            let s = std::str::from_utf8(&u).unwrap();
            assert!(is_uuid_v4(s), "{s}");
        }
    }

    #[test]
    fn bad_templates_are_named() {
        let e = |s: &str| {
            Template::compile(s, Escape::None, &cols(), 1)
                .unwrap_err()
                .to_string()
        };
        assert!(
            e("x{{tmestamp}}").contains("{{tmestamp}}"),
            "{}",
            e("x{{tmestamp}}")
        );
        assert!(e("{{seq").contains("unterminated"));
        assert!(e("{{rand_int(5,1)}}").contains("rand_int(5,1)"));
        assert!(e("{{rand_int(a,1)}}").contains("rand_int"));
        assert!(e("{{csv.nope}}").contains("name, pw"));
        // Single braces are plain text.
        assert!(Template::compile("{\"a\": 1}", Escape::None, &[], 0)
            .unwrap()
            .is_static());
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_786), (2026, 11, 29));
    }

    proptest! {
        /// Any source either compiles or is refused with an error; a compiled template renders
        /// any values without panicking and without outgrowing `max_len` (so a buffer of that
        /// capacity is never reallocated: no allocation per request).
        #[test]
        fn render_never_panics_nor_outgrows(
            src in "([a-z {}(),.\\-_0-9]|\\{\\{(user\\.id|uuid|timestamp|seq|csv\\.name|csv\\.pw|rand_int\\(-?[0-9]{1,19}, ?-?[0-9]{1,19}\\))\\}\\})*",
            any_src in any::<String>(),
            now in any::<i64>(),
            offset in -86_400i64..86_400,
            seq in any::<u64>(),
            seed in any::<u64>(),
            esc in prop_oneof![Just(Escape::None), Just(Escape::Url), Just(Escape::Form)],
        ) {
            let _ = Template::compile(&any_src, esc, &cols(), 16);
            let mut rng = SmallRng::seed_from_u64(seed);
            if let Ok(t) = Template::compile(&src, esc, &cols(), 16) {
                let id = [b'a'; 36];
                let row: Vec<Box<str>> = vec!["ünïcode cell".into(), "".into()];
                let mut cx = Ctx { user_id: &id, now_unix_ns: now, utc_offset_s: offset, seq, rng: &mut rng, csv_row: &row };
                let mut out = Vec::with_capacity(t.max_len());
                let (ptr, cap) = (out.as_ptr(), out.capacity());
                t.render(&mut cx, &mut out);
                prop_assert!(out.len() <= t.max_len());
                prop_assert_eq!((out.as_ptr(), out.capacity()), (ptr, cap));
            }
        }
    }
}
