//! The scenario file format (TOML, documented in `docs/scenarios.md`) and its compilation
//! into a [`Scenario`].
//!
//! Unknown keys are refused (`deny_unknown_fields`); every error names the file, the line of
//! the offending table or value, and the reason, before anything runs.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::{Csv, CsvPick, Request, Scenario, Wire};
use crate::http::request::{RequestSpec, USER_AGENT};
use crate::http::target::Target;
use crate::http::template::{Ctx, Escape, Template};

/// A scenario file that cannot be used: where and why.
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: {reason}")]
pub struct ScenarioError {
    pub file: String,
    pub line: usize,
    pub reason: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    /// Base URL when the command line gives none.
    target: Option<String>,
    csv: Option<Spanned<CsvDoc>>,
    load: Option<Spanned<LoadDoc>>,
    #[serde(default)]
    thresholds: Vec<String>,
    #[serde(default, rename = "request")]
    requests: Vec<Spanned<RequestDoc>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CsvDoc {
    file: String,
    #[serde(default)]
    pick: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoadDoc {
    rate: Option<f64>,
    #[serde(default)]
    stages: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestDoc {
    name: Option<String>,
    method: Option<String>,
    path: Option<String>,
    url: Option<String>,
    #[serde(default = "one")]
    weight: u64,
    #[serde(default)]
    headers: toml::Table,
    #[serde(default)]
    query: toml::Table,
    body: Option<String>,
    body_file: Option<String>,
    form: Option<toml::Table>,
}

fn one() -> u64 {
    1
}

/// Reads and compiles the scenario at `path`. `target` is the command line's URL (it wins
/// over the file's `target`).
pub fn load(path: &Path, target: Option<&Target>) -> Result<(Scenario, Target), ScenarioError> {
    let file = path.display().to_string();
    let src = std::fs::read_to_string(path).map_err(|e| ScenarioError {
        file: file.clone(),
        line: 0,
        reason: format!("cannot read: {e}"),
    })?;
    parse(&src, &file, path.parent().unwrap_or(Path::new(".")), target)
}

/// Compiles scenario source `src`; `file` names it in errors and `base` is the folder that
/// `body_file` and CSV paths are relative to. (Split from [`load`] for the fuzz target.)
pub fn parse(
    src: &str,
    file: &str,
    base: &Path,
    target: Option<&Target>,
) -> Result<(Scenario, Target), ScenarioError> {
    let file = file.to_owned();
    let err = |line: usize, reason: String| ScenarioError {
        file: file.clone(),
        line,
        reason,
    };
    let line_of = |pos: usize| src[..pos.min(src.len())].matches('\n').count() + 1;
    let doc: FileDoc = toml::from_str(src).map_err(|e| {
        let line = e.span().map_or(0, |s| line_of(s.start));
        err(line, e.message().trim().to_owned())
    })?;

    let target = match (target, &doc.target) {
        (Some(t), _) => t.clone(),
        (None, Some(u)) => Target::parse(u).map_err(|e| err(1, e.to_string()))?,
        (None, None) => {
            return Err(err(
                1,
                "no target: give a URL on the command line or `target = \"http://...\"`".into(),
            ))
        }
    };

    let csv = match &doc.csv {
        None => None,
        Some(c) => Some(load_csv(base, c.get_ref()).map_err(|r| err(line_of(c.span().start), r))?),
    };
    let (columns, csv_max): (&[String], usize) = match &csv {
        Some(c) => (
            &c.columns,
            c.rows.iter().flatten().map(|s| s.len()).max().unwrap_or(0),
        ),
        None => (&[], 0),
    };

    if doc.requests.is_empty() {
        return Err(err(1, "no [[request]] tables".into()));
    }
    let mut names: Vec<String> = Vec::new();
    let mut requests = Vec::new();
    for r in &doc.requests {
        let line = line_of(r.span().start);
        let compiled = compile_request(r.get_ref(), &target, base, columns, csv_max, &csv)
            .map_err(|reason| err(line, reason))?;
        let (name, mut req) = compiled;
        req.endpoint = match names.iter().position(|n| *n == name) {
            Some(i) => i as u16,
            None => {
                names.push(name);
                (names.len() - 1) as u16
            }
        };
        requests.push(req);
    }
    if names.len() > u16::MAX as usize {
        return Err(err(1, "too many request names".into()));
    }
    if requests.iter().all(|r| r.weight == 0) {
        return Err(err(
            line_of(doc.requests[0].span().start),
            "every request has weight 0: nothing could be sent".into(),
        ));
    }
    let mut sc = Scenario::new(names, requests);
    sc.csv = csv;
    sc.target = doc.target.clone();
    sc.thresholds = doc.thresholds;
    if let Some(l) = &doc.load {
        let line = line_of(l.span().start);
        let l = l.get_ref();
        if let Some(r) = l.rate {
            if !(r.is_finite() && r > 0.0) {
                return Err(err(line, format!("invalid rate {r} (must be positive)")));
            }
        }
        if l.rate.is_some() && !l.stages.is_empty() {
            return Err(err(line, "give either rate or stages, not both".into()));
        }
        sc.rate = l.rate;
        sc.stages = l.stages.clone();
    }
    Ok((sc, target))
}

fn load_csv(base: &Path, c: &CsvDoc) -> Result<Csv, String> {
    let path: PathBuf = base.join(&c.file);
    let pick = match c.pick.as_deref() {
        None | Some("user") => CsvPick::User,
        Some("sequential") => CsvPick::Sequential,
        Some("random") => CsvPick::Random,
        Some(p) => {
            return Err(format!(
                "invalid csv pick {p:?} (use \"user\", \"sequential\" or \"random\")"
            ))
        }
    };
    let mut rd = csv::Reader::from_path(&path)
        .map_err(|e| format!("cannot read CSV file {}: {e}", path.display()))?;
    let columns: Vec<String> = rd
        .headers()
        .map_err(|e| format!("CSV file {}: {e}", path.display()))?
        .iter()
        .map(str::to_owned)
        .collect();
    let mut rows = Vec::new();
    for rec in rd.records() {
        let rec = rec.map_err(|e| format!("CSV file {}: {e}", path.display()))?;
        let row: Vec<Box<str>> = rec.iter().map(Into::into).collect();
        // Values may land in header values: no control characters (CR/LF above all).
        if let Some(bad) = row
            .iter()
            .find(|v| v.bytes().any(|b| b < 0x20 && b != b'\t'))
        {
            return Err(format!(
                "CSV file {}: value {bad:?} contains a control character",
                path.display()
            ));
        }
        rows.push(row);
    }
    if rows.is_empty() {
        return Err(format!("CSV file {} has no rows", path.display()));
    }
    Ok(Csv {
        columns,
        rows,
        pick,
    })
}

fn table_strings(t: &toml::Table, what: &str) -> Result<Vec<(String, String)>, String> {
    t.iter()
        .map(|(k, v)| match v {
            toml::Value::String(s) => Ok((k.clone(), s.clone())),
            other => Err(format!("{what} {k:?}: value must be a string, not {other}")),
        })
        .collect()
}

/// Compiles one `[[request]]`: returns its name and the request (endpoint filled by the
/// caller).
fn compile_request(
    r: &RequestDoc,
    target: &Target,
    base: &Path,
    columns: &[String],
    csv_max: usize,
    csv: &Option<Csv>,
) -> Result<(String, Request), String> {
    let path = match (&r.path, &r.url) {
        (Some(_), Some(_)) => return Err("give either path or url, not both".into()),
        (Some(p), None) => p.clone(),
        (None, Some(u)) => {
            let t = Target::parse(u).map_err(|e| e.to_string())?;
            if (t.scheme(), t.host(), t.port()) != (target.scheme(), target.host(), target.port()) {
                return Err(format!(
                    "url {u:?} is not on the target origin {target} (one origin per run)"
                ));
            }
            t.path_and_query().to_owned()
        }
        (None, None) => target.path_and_query().to_owned(),
    };
    if !path.starts_with('/') {
        return Err(format!("invalid path {path:?} (must start with '/')"));
    }
    let given = [r.body.is_some(), r.body_file.is_some(), r.form.is_some()];
    if given.iter().filter(|&&g| g).count() > 1 {
        return Err("give only one of body, body_file and form".into());
    }
    let has_body = given.iter().any(|&g| g);
    let method = r
        .method
        .clone()
        .unwrap_or_else(|| if has_body { "POST" } else { "GET" }.to_owned());
    let name = r.name.clone().unwrap_or_else(|| path.clone());
    let mut headers = table_strings(&r.headers, "header")?;
    let query = table_strings(&r.query, "query parameter")?;
    let tpl = |src: &str, lit: Escape, var: Escape, t: &mut Template| {
        t.push_source(src, lit, var, columns, csv_max)
            .map_err(|e| e.to_string())
    };

    // Request line target: the path as written (values percent-encoded), then the query.
    let mut target_t = Template::new();
    tpl(&path, Escape::None, Escape::Url, &mut target_t)?;
    for (i, (k, v)) in query.iter().enumerate() {
        let sep = if i == 0 && !path.contains('?') {
            "?"
        } else {
            "&"
        };
        target_t.push_literal(sep.as_bytes());
        tpl(k, Escape::Form, Escape::Form, &mut target_t)?;
        target_t.push_literal(b"=");
        tpl(v, Escape::Form, Escape::Form, &mut target_t)?;
    }
    let mut body_t = Template::new();
    if let Some(b) = &r.body {
        tpl(b, Escape::None, Escape::None, &mut body_t)?;
    } else if let Some(f) = &r.body_file {
        let p = base.join(f);
        let bytes =
            std::fs::read(&p).map_err(|e| format!("cannot read body file {}: {e}", p.display()))?;
        body_t.push_literal(&bytes);
    } else if let Some(form) = &r.form {
        for (i, (k, v)) in table_strings(form, "form field")?.iter().enumerate() {
            if i > 0 {
                body_t.push_literal(b"&");
            }
            tpl(k, Escape::Form, Escape::Form, &mut body_t)?;
            body_t.push_literal(b"=");
            tpl(v, Escape::Form, Escape::Form, &mut body_t)?;
        }
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        {
            headers.push((
                "Content-Type".into(),
                "application/x-www-form-urlencoded".into(),
            ));
        }
    }
    let mut header_ts = Vec::new();
    for (k, v) in &headers {
        let mut t = Template::new();
        tpl(v, Escape::None, Escape::None, &mut t)?;
        header_ts.push((k.clone(), t));
    }

    // Validate with one sample rendering: values are escaped or checked (CSV) so that a
    // valid sample means every rendering is valid.
    let mut rng = <rand::rngs::SmallRng as rand::SeedableRng>::seed_from_u64(0);
    let id = *b"00000000-0000-4000-8000-000000000000";
    let empty: Vec<Box<str>> = Vec::new();
    let row = csv.as_ref().map_or(&empty, |c| &c.rows[0]);
    let mut cx = Ctx {
        user_id: &id,
        now_unix_ns: 0,
        utc_offset_s: 0,
        seq: 0,
        rng: &mut rng,
        csv_row: row,
    };
    let mut sample = |t: &Template| {
        let mut out = Vec::new();
        t.render(&mut cx, &mut out);
        out
    };
    let spec = RequestSpec {
        method: method.clone(),
        path: String::from_utf8_lossy(&sample(&target_t)).into_owned(),
        host: target.host_header().to_owned(),
        headers: header_ts
            .iter()
            .map(|(k, t)| (k.clone(), String::from_utf8_lossy(&sample(t)).into_owned()))
            .collect(),
        body: sample(&body_t),
    };
    let encoded = spec.encode().map_err(|e| e.to_string())?;
    let dynamic = !target_t.is_static()
        || !body_t.is_static()
        || header_ts.iter().any(|(_, t)| !t.is_static());
    let wire = if !dynamic {
        Wire::Static(encoded)
    } else {
        if headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        {
            return Err("a templated request cannot set Content-Length (gen computes it)".into());
        }
        // Same order as RequestSpec::encode: request line, Host, User-Agent, the rest.
        let mut head = Template::new();
        head.push_literal(method.as_bytes());
        head.push_literal(b" ");
        head.append(&target_t);
        head.push_literal(b" HTTP/1.1\r\n");
        let is = |k: &str, n: &str| k.eq_ignore_ascii_case(n);
        let line = |head: &mut Template, k: &str, v: &Template| {
            head.push_literal(k.as_bytes());
            head.push_literal(b": ");
            head.append(v);
            head.push_literal(b"\r\n");
        };
        match header_ts.iter().find(|(k, _)| is(k, "host")) {
            Some((k, v)) => line(&mut head, k, v),
            None => head.push_literal(format!("Host: {}\r\n", target.host_header()).as_bytes()),
        }
        match header_ts.iter().find(|(k, _)| is(k, "user-agent")) {
            Some((k, v)) => line(&mut head, k, v),
            None => head.push_literal(format!("User-Agent: {USER_AGENT}\r\n").as_bytes()),
        }
        for (k, v) in &header_ts {
            if !is(k, "host") && !is(k, "user-agent") {
                line(&mut head, k, v);
            }
        }
        Wire::Dynamic { head, body: body_t }
    };
    Ok((
        name,
        Request {
            endpoint: 0,
            head_request: method == "HEAD",
            method,
            weight: r.weight,
            wire,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn tmp() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "gen-scenario-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn target() -> Target {
        Target::parse("http://127.0.0.1:8080/").unwrap()
    }

    fn err(text: &str) -> String {
        let d = tmp();
        let p = write(&d, "bad.toml", text);
        load(&p, Some(&target())).unwrap_err().to_string()
    }

    #[test]
    fn errors_name_file_line_and_reason() {
        let e = err("[[request]]\npath = \"/\"\nwieght = 3\n");
        assert!(e.contains("bad.toml:3:") && e.contains("wieght"), "{e}");
        let e = err(
            "[[request]]\npath = \"/a\"\n\n[[request]]\npath = \"/b\"\nbody = \"{{tmestamp}}\"\n",
        );
        assert!(
            e.contains("bad.toml:4:") && e.contains("{{tmestamp}}"),
            "{e}"
        );
        let e = err("[[request]]\npath = \"/a\"\nweight = 0\n");
        assert!(e.contains("bad.toml:1:") && e.contains("weight 0"), "{e}");
        let e = err("[csv]\nfile = \"missing.csv\"\n[[request]]\npath = \"/\"\n");
        assert!(
            e.contains("bad.toml:1:") && e.contains("missing.csv"),
            "{e}"
        );
        let e = err("[[request]]\npath = \"/\"\nbody_file = \"nope.bin\"\n");
        assert!(e.contains("nope.bin"), "{e}");
        let e = err("[[request]]\nurl = \"http://10.0.0.1:80/x\"\n");
        assert!(e.contains("10.0.0.1"), "{e}");
        let e = err("[[request]]\npath = \"/\"\nheaders = { X-A = 1 }\n");
        assert!(e.contains("X-A"), "{e}");
        let e = err("[[request]]\npath = \"/\"\nheaders = { \"X-A\" = \"a\\r\\nEvil: 1\" }\n");
        assert!(e.contains("X-A"), "{e}");
        assert!(err("").contains("no [[request]]"));
    }

    #[test]
    fn static_request_matches_the_command_line_encoding() {
        let d = tmp();
        let p = write(
            &d,
            "s.toml",
            "[[request]]\nname = \"home\"\npath = \"/x\"\nheaders = { Accept = \"*/*\" }\n",
        );
        let (sc, _) = load(&p, Some(&target())).unwrap();
        let mut spec = RequestSpec::new("GET", &Target::parse("http://127.0.0.1:8080/x").unwrap());
        spec.headers.push(("Accept".into(), "*/*".into()));
        match &sc.requests[0].wire {
            Wire::Static(b) => assert_eq!(b, &spec.encode().unwrap()),
            w => panic!("{w:?}"),
        }
        assert_eq!(sc.names, ["home"]);
    }

    #[test]
    fn form_query_and_csv_render() {
        let d = tmp();
        write(&d, "u.csv", "name,pw\nalice smith,a&b\nbob,c\n");
        let p = write(
            &d,
            "s.toml",
            r#"
[csv]
file = "u.csv"
[[request]]
name = "login"
path = "/login"
query = { who = "{{csv.name}}" }
form = { deviceid = "{{user.id}}", pw = "{{csv.pw}}" }
[[request]]
name = "login"
weight = 0
path = "/other"
"#,
        );
        let (sc, _) = load(&p, Some(&target())).unwrap();
        assert_eq!(sc.names, ["login"]);
        assert_eq!(sc.requests[1].endpoint, 0);
        let mut w = super::super::Workload::new(&sc, 1, 0, 1, 2);
        w.next(0, 0);
        let id = String::from_utf8(w.user_id(0).to_vec()).unwrap();
        let text = String::from_utf8(w.bytes(0).to_vec()).unwrap();
        let body = format!("deviceid={id}&pw=a%26b");
        assert_eq!(
            text,
            format!(
                "POST /login?who=alice+smith HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\
                 User-Agent: {USER_AGENT}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
                 Content-Length: {}\r\n\r\n{body}",
                body.len()
            )
        );
        // The second user reads the second row.
        w.next(1, 0);
        assert!(w.bytes(1).starts_with(b"POST /login?who=bob "));
    }
}
