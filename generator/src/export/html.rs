//! The self-contained HTML report (`--html FILE`, `gen report --html`): one file with the
//! page template, its style, a small hand-written SVG chart script and the report JSON
//! embedded as data, so it opens offline and never fetches anything.
//!
//! The page is rendered by the browser from the embedded JSON (the same value `--json`
//! writes), so any run that can produce JSON can produce HTML, and a saved JSON renders later
//! exactly as it would have at the end of the run. A top-level `capacity` object (a
//! `gen capacity` result) selects the capacity page instead of the run page.

use serde_json::Value;

/// The page; `{{TITLE}}`, `{{STYLE}}`, `{{DATA}}` and `{{SCRIPT}}` are filled in by [`render`].
const TEMPLATE: &str = include_str!("html/template.html");
const STYLE: &str = include_str!("html/report.css");
/// Renders both pages and draws the charts (SVG, no library).
const SCRIPT: &str = include_str!("html/report.js");

/// What a JSON document is, as far as the HTML report and `gen compare` care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A run report (`gen --json`, `gen coordinator --json`).
    Run,
    /// A `gen capacity` result.
    Capacity,
}

/// Why a JSON document is not a gen report.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not a gen report: {0}")]
pub struct NotAReport(&'static str);

/// Recognizes a run report (`schema_version` and a `run` object) or a capacity result (a
/// `capacity` object with `steps`).
pub fn kind(v: &Value) -> Result<Kind, NotAReport> {
    let obj = v.as_object().ok_or(NotAReport("not a JSON object"))?;
    if let Some(c) = obj.get("capacity") {
        return match c.get("steps") {
            Some(Value::Array(_)) => Ok(Kind::Capacity),
            _ => Err(NotAReport("\"capacity\" has no \"steps\" list")),
        };
    }
    match (obj.get("schema_version"), obj.get("run")) {
        (Some(Value::Number(_)), Some(Value::Object(_))) => Ok(Kind::Run),
        _ => Err(NotAReport(
            "no \"schema_version\" and \"run\" (nor \"capacity\")",
        )),
    }
}

/// The HTML page of a report JSON (a run report or a capacity result). Public API: every
/// command that writes JSON renders its `--html` with this.
pub fn render(report: &Value) -> String {
    let title = match kind(report) {
        Ok(Kind::Capacity) => "gen capacity report".to_owned(),
        _ => match report.pointer("/run/target").and_then(Value::as_str) {
            Some(t) => format!("gen report: {t}"),
            None => "gen report".to_owned(),
        },
    };
    // One pass over the template, so text inside the data is never taken for a placeholder.
    let mut out = String::with_capacity(TEMPLATE.len() + STYLE.len() + SCRIPT.len() + 4096);
    let mut rest = TEMPLATE;
    while let Some(at) = rest.find("{{") {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        let (key, len) = ["{{TITLE}}", "{{STYLE}}", "{{DATA}}", "{{SCRIPT}}"]
            .iter()
            .find(|k| tail.starts_with(**k))
            .map_or(("", 2), |k| (*k, k.len()));
        match key {
            "{{TITLE}}" => out.push_str(&escape_text(&title)),
            "{{STYLE}}" => out.push_str(STYLE),
            "{{DATA}}" => out.push_str(&script_json(report)),
            "{{SCRIPT}}" => out.push_str(SCRIPT),
            _ => out.push_str("{{"),
        }
        rest = &tail[len..];
    }
    out.push_str(rest);
    out
}

/// JSON safe inside `<script type="application/json">`: no `<`, `>` or `&` can end the
/// element or open a comment (`</script>`, `<!--`), and the line separators U+2028/U+2029
/// are escaped too. All of them only occur inside JSON strings, where `\uXXXX` means the
/// same character, so `JSON.parse` reads the original value back.
pub fn script_json(v: &Value) -> String {
    let raw = serde_json::to_string(v).unwrap_or_else(|_| "null".to_owned());
    let mut out = String::with_capacity(raw.len() + 64);
    for c in raw.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

/// Text for an HTML element's content or an attribute value.
fn escape_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run_doc(name: &str) -> Value {
        json!({
            "schema_version": 1,
            "run": {"version": "0.1.0", "target": "http://127.0.0.1:1/?a=<b>&c"},
            "endpoints": [{"name": name, "requests": 1}],
        })
    }

    /// The JSON between the data tag and its end, as the browser would see it.
    fn embedded(page: &str) -> &str {
        let start = page
            .find("<script type=\"application/json\" id=\"gen-data\">")
            .expect("data tag")
            + "<script type=\"application/json\" id=\"gen-data\">".len();
        let len = page[start..]
            .find("</script>")
            .expect("end of the data tag");
        &page[start..start + len]
    }

    #[test]
    fn script_end_in_a_name_cannot_close_the_data_tag() {
        let name = "</script><script>alert(1)</script><!-- \u{2028} &amp;";
        let doc = run_doc(name);
        let page = render(&doc);
        let data = embedded(&page);
        assert!(!data.contains('<') && !data.contains('>'), "{data}");
        // The browser's JSON.parse reads the same value back.
        let back: Value = serde_json::from_str(data).unwrap();
        assert_eq!(back, doc);
        assert_eq!(back["endpoints"][0]["name"], name);
        // One data tag, one script tag: the name added none.
        assert_eq!(page.matches("<script").count(), 2);
    }

    #[test]
    fn title_is_escaped_and_placeholders_filled() {
        let page = render(&run_doc("/x"));
        assert!(page.contains("<title>gen report: http://127.0.0.1:1/?a=&lt;b&gt;&amp;c</title>"));
        for p in ["{{TITLE}}", "{{STYLE}}", "{{DATA}}", "{{SCRIPT}}"] {
            assert!(!page.contains(p), "{p} left in the page");
        }
        // Placeholder-looking text in the data stays data.
        let page = render(&run_doc("{{SCRIPT}}"));
        assert!(embedded(&page).contains("{{SCRIPT}}"));
        assert_eq!(page.matches("function lineChart").count(), 1);
    }

    #[test]
    fn nothing_is_fetched() {
        // (The target URL shows in the title: leave it out here.)
        let page = render(&json!({"schema_version": 1, "run": {}}));
        let outside = page.replace(embedded(&page), "");
        for needle in [
            "src=",
            "href=",
            "<link",
            "@import",
            "url(",
            "fetch(",
            "XMLHttpRequest",
        ] {
            assert!(!outside.contains(needle), "the page references {needle}");
        }
        // The one URL outside the data is the SVG namespace, a name rather than an address.
        let urls = outside.matches("http").count();
        let svg_ns = outside.matches("http://www.w3.org/2000/svg").count();
        assert_eq!(urls, svg_ns, "a URL in the page");
    }

    #[test]
    fn kinds() {
        assert_eq!(kind(&run_doc("/x")), Ok(Kind::Run));
        assert_eq!(
            kind(&json!({"gen": {}, "capacity": {"steps": []}})),
            Ok(Kind::Capacity)
        );
        assert!(kind(&json!({"capacity": {}})).is_err());
        assert!(kind(&json!([1, 2])).is_err());
        assert!(kind(&json!({"run": {}})).is_err());
        assert!(kind(&json!({"name": "package.json"})).is_err());
        assert!(render(&json!({"capacity": {"steps": []}}))
            .contains("<title>gen capacity report</title>"));
    }
}
