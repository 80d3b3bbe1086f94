//! Routes and response bodies: the tutorial's Flask app to the byte, plus the knobs and the
//! `/_stats` and `/_admin/stall` endpoints.
//!
//! Flask/Werkzeug behaviour reproduced: `/` allows GET and HEAD; `/login` and `/metrics`
//! allow GET, HEAD and POST; every route answers OPTIONS with 200, an `Allow` header and an
//! empty body; an unknown path is 404 and a known path with another method is 405 with
//! `Allow`, both with Werkzeug's HTML bodies; a percent-encoded path (`/log%69n`) matches,
//! a trailing slash does not. Every body is `text/html; charset=utf-8`.
//!
//! Order of work for a counted request: wait for a `--max-concurrency` slot (FIFO), read
//! the body, build the response (or an injected 500), then hold it for the delay (counted
//! from that moment) and past any stall on the timer thread, and count it. The slot is held
//! until release, so waiting for one adds to the response time as a saturated server's queue
//! does.

use std::borrow::Cow;
use std::convert::Infallible;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Incoming};
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use tokio::sync::Semaphore;

use crate::delay::Timer;
use crate::knobs::{self, DelayDist};
use crate::params::{self, Params};
use crate::stats::{Route, Stats};

pub const ROOT_BODY: &[u8] =
    b"Welcome to the \"Distributed Load Testing Using Kubernetes\" sample web app\n";

/// Werkzeug's `NotFound` page.
pub const NOT_FOUND_BODY: &[u8] = b"<!doctype html>\n<html lang=en>\n<title>404 Not Found</title>\n<h1>Not Found</h1>\n<p>The requested URL was not found on the server. If you entered the URL manually please check your spelling and try again.</p>\n";
/// Werkzeug's `MethodNotAllowed` page.
pub const METHOD_NOT_ALLOWED_BODY: &[u8] = b"<!doctype html>\n<html lang=en>\n<title>405 Method Not Allowed</title>\n<h1>Method Not Allowed</h1>\n<p>The method is not allowed for the requested URL.</p>\n";
/// Werkzeug's `InternalServerError` page, used for injected errors.
pub const INTERNAL_ERROR_BODY: &[u8] = b"<!doctype html>\n<html lang=en>\n<title>500 Internal Server Error</title>\n<h1>Internal Server Error</h1>\n<p>The server encountered an internal error and was unable to complete your request. Either the server is overloaded or there is an error in the application.</p>\n";
/// Werkzeug's `RequestEntityTooLarge` page, for bodies over [`MAX_BODY`].
pub const TOO_LARGE_BODY: &[u8] = b"<!doctype html>\n<html lang=en>\n<title>413 Request Entity Too Large</title>\n<h1>Request Entity Too Large</h1>\n<p>The data value transmitted exceeds the capacity limit.</p>\n";
/// Werkzeug's `BadRequest` layout, for a bad delay override or an unreadable body.
pub const BAD_REQUEST_BODY: &[u8] = b"<!doctype html>\n<html lang=en>\n<title>400 Bad Request</title>\n<h1>Bad Request</h1>\n<p>The browser (or proxy) sent a request that this server could not understand.</p>\n";
pub const BAD_DELAY_BODY: &[u8] = b"<!doctype html>\n<html lang=en>\n<title>400 Bad Request</title>\n<h1>Bad Request</h1>\n<p>delay_ms and X-Delay-Ms take a number of milliseconds from 0 to 60000.</p>\n";

/// Largest request body read; the workload's bodies are under 100 bytes.
pub const MAX_BODY: usize = 1 << 20;

const HTML: HeaderValue = HeaderValue::from_static("text/html; charset=utf-8");
const JSON: HeaderValue = HeaderValue::from_static("application/json");
const ALLOW_ROOT: HeaderValue = HeaderValue::from_static("GET, HEAD, OPTIONS");
const ALLOW_FORM: HeaderValue = HeaderValue::from_static("GET, HEAD, OPTIONS, POST");
const ALLOW_GET: HeaderValue = HeaderValue::from_static("GET, HEAD");
const ALLOW_POST: HeaderValue = HeaderValue::from_static("POST");

pub type Resp = Response<Full<Bytes>>;

/// The knobs, resolved from the command line.
#[derive(Debug, Clone, Default)]
pub struct Knobs {
    pub delay: Option<DelayDist>,
    pub error_rate: f64,
    pub max_concurrency: Option<usize>,
}

/// Everything a request needs; shared by all connections behind one `Arc`.
#[derive(Debug)]
pub struct App {
    knobs: Knobs,
    limiter: Option<Semaphore>,
    timer: Timer,
    stats: Stats,
}

/// Where a path goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Counted(Route),
    Stats,
    Stall,
}

fn target(path: &str) -> Target {
    fn exact(path: &[u8]) -> Target {
        match path {
            b"/" => Target::Counted(Route::Root),
            b"/login" => Target::Counted(Route::Login),
            b"/metrics" => Target::Counted(Route::Metrics),
            b"/_stats" => Target::Stats,
            b"/_admin/stall" => Target::Stall,
            _ => Target::Counted(Route::Other),
        }
    }
    // Werkzeug matches the decoded path; decoding is only paid for when there is a '%'.
    if path.contains('%') {
        exact(&params::percent_decode(path.as_bytes(), false))
    } else {
        exact(path.as_bytes())
    }
}

fn response(status: StatusCode, content_type: HeaderValue, body: Bytes) -> Resp {
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, content_type);
    resp
}

fn html(status: StatusCode, body: &'static [u8]) -> Resp {
    response(status, HTML, Bytes::from_static(body))
}

fn with_allow(mut resp: Resp, allow: HeaderValue) -> Resp {
    resp.headers_mut().insert(ALLOW, allow);
    resp
}

/// `prefix + a + middle + b + "\n"` in one exactly-sized allocation (so `Bytes` takes the
/// buffer over without another one).
fn concat(parts: &[&[u8]]) -> Bytes {
    let mut buf = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
    for part in parts {
        buf.extend_from_slice(part);
    }
    Bytes::from(buf)
}

#[derive(Debug)]
enum BodyError {
    TooLarge,
    /// The client sent a malformed body or went away mid-body.
    Broken,
}

/// Reads the whole request body, up to [`MAX_BODY`]. A body that arrives in one frame (the
/// usual small form) is passed on without copying or allocating.
async fn read_body(mut body: Incoming) -> Result<Bytes, BodyError> {
    if body.is_end_stream() {
        return Ok(Bytes::new());
    }
    if body.size_hint().lower() > MAX_BODY as u64 {
        return Err(BodyError::TooLarge);
    }
    let mut first: Option<Bytes> = None;
    let mut joined: Option<BytesMut> = None;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(|_| BodyError::Broken)?.into_data() else {
            continue; // trailers
        };
        let total = first.as_ref().map_or(0, Bytes::len)
            + joined.as_ref().map_or(0, BytesMut::len)
            + data.len();
        if total > MAX_BODY {
            return Err(BodyError::TooLarge);
        }
        match (&mut joined, first.take()) {
            (Some(buf), _) => buf.extend_from_slice(&data),
            (None, None) => first = Some(data),
            (None, Some(prev)) => {
                let mut buf = BytesMut::with_capacity(total);
                buf.extend_from_slice(&prev);
                buf.extend_from_slice(&data);
                joined = Some(buf);
            }
        }
    }
    Ok(joined.map_or_else(|| first.unwrap_or_default(), BytesMut::freeze))
}

fn or_none<'a>(v: &'a Option<Cow<'_, str>>) -> &'a [u8] {
    v.as_deref().map_or(b"None", str::as_bytes)
}

impl App {
    pub fn new(knobs: Knobs) -> std::io::Result<App> {
        Ok(App {
            limiter: knobs.max_concurrency.map(Semaphore::new),
            knobs,
            timer: Timer::start()?,
            stats: Stats::default(),
        })
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Stalls every response for `duration` (the `/_admin/stall` endpoint and SIGUSR1).
    pub fn stall(&self, duration: Duration) {
        self.timer
            .stall_for(duration.as_nanos().min(u128::from(u64::MAX)) as u64);
        self.stats.stalled();
    }

    /// The hyper service function. Never fails: every outcome is an HTTP response.
    pub async fn handle(&self, req: Request<Incoming>) -> Result<Resp, Infallible> {
        let route = match target(req.uri().path()) {
            Target::Counted(route) => route,
            Target::Stats => return Ok(self.stats_endpoint(req.method())),
            Target::Stall => return Ok(self.stall_endpoint(&req)),
        };
        let _in_flight = self.stats.enter();
        // Held until the response is released; a closed semaphore cannot happen (never
        // closed), and if it did the request would simply run unlimited.
        let _permit = match &self.limiter {
            Some(limiter) => limiter.acquire().await.ok(),
            None => None,
        };
        let is_head = req.method() == Method::HEAD;
        let (resp, delay_ns) = self.respond(route, req).await;
        if delay_ns > 0 {
            self.stats.delayed();
        }
        if let Some(late) = self.timer.delay(delay_ns).await {
            self.stats.released_late_by(late);
        }
        let body_bytes = if is_head {
            0
        } else {
            resp.body().size_hint().exact().unwrap_or(0) as usize
        };
        self.stats.served(route, resp.status().as_u16(), body_bytes);
        Ok(resp)
    }

    /// Builds the response and picks its delay (the override, else the configured one).
    async fn respond(&self, route: Route, req: Request<Incoming>) -> (Resp, u64) {
        let (parts, body) = req.into_parts();
        let query = parts.uri.query().unwrap_or("");
        let mut params = Params::from_query(query);

        let override_value = params.delay_ms.as_deref().or_else(|| {
            parts
                .headers
                .get("x-delay-ms")
                .and_then(|v| v.to_str().ok())
        });
        let delay_ns = match override_value {
            Some(v) => match knobs::parse_override_ms(v) {
                Some(ns) => ns,
                None => return (html(StatusCode::BAD_REQUEST, BAD_DELAY_BODY), 0),
            },
            None => self.knobs.delay.map_or(0, |d| d.sample_ns()),
        };

        // Read any body, even one we ignore, so the connection stays usable for keep-alive.
        let body = match read_body(body).await {
            Ok(body) => body,
            Err(BodyError::TooLarge) => {
                return (
                    html(StatusCode::PAYLOAD_TOO_LARGE, TOO_LARGE_BODY),
                    delay_ns,
                )
            }
            Err(BodyError::Broken) => {
                return (html(StatusCode::BAD_REQUEST, BAD_REQUEST_BODY), delay_ns)
            }
        };

        let method = &parts.method;
        let (allow, get_only) = match route {
            Route::Other => return (html(StatusCode::NOT_FOUND, NOT_FOUND_BODY), delay_ns),
            Route::Root => (ALLOW_ROOT, true),
            Route::Login | Route::Metrics => (ALLOW_FORM, false),
        };
        let allowed = *method == Method::GET
            || *method == Method::HEAD
            || *method == Method::OPTIONS
            || (!get_only && *method == Method::POST);
        if !allowed {
            let resp = html(StatusCode::METHOD_NOT_ALLOWED, METHOD_NOT_ALLOWED_BODY);
            return (with_allow(resp, allow), delay_ns);
        }

        if knobs::coin(self.knobs.error_rate) {
            self.stats.error_injected();
            return (
                html(StatusCode::INTERNAL_SERVER_ERROR, INTERNAL_ERROR_BODY),
                delay_ns,
            );
        }
        if *method == Method::OPTIONS {
            // Flask's automatic OPTIONS answer.
            return (with_allow(html(StatusCode::OK, b""), allow), delay_ns);
        }

        // Werkzeug reads a form for every method but GET.
        if *method != Method::GET
            && parts
                .headers
                .get(CONTENT_TYPE)
                .is_some_and(|ct| params::is_form_content_type(ct.as_bytes()))
        {
            params.fill_from_form(&body);
        }
        let body = match route {
            Route::Root => Bytes::from_static(ROOT_BODY),
            Route::Login => concat(&[b"/login - device: ", or_none(&params.deviceid), b"\n"]),
            _ => concat(&[
                b"/metrics - device: ",
                or_none(&params.deviceid),
                b", timestamp: ",
                or_none(&params.timestamp),
                b"\n",
            ]),
        };
        (response(StatusCode::OK, HTML, body), delay_ns)
    }

    fn stats_endpoint(&self, method: &Method) -> Resp {
        if method != Method::GET && method != Method::HEAD {
            let resp = html(StatusCode::METHOD_NOT_ALLOWED, METHOD_NOT_ALLOWED_BODY);
            return with_allow(resp, ALLOW_GET);
        }
        let config = serde_json::json!({
            "delay": self.knobs.delay.map(|d| d.to_string()),
            "error_rate": self.knobs.error_rate,
            "max_concurrency": self.knobs.max_concurrency,
        });
        let mut body = self.stats.to_json(config).to_string();
        body.push('\n');
        response(StatusCode::OK, JSON, Bytes::from(body))
    }

    /// `POST /_admin/stall?ms=N`: answered at once (never stalled itself).
    fn stall_endpoint(&self, req: &Request<Incoming>) -> Resp {
        if req.method() != Method::POST {
            let resp = html(StatusCode::METHOD_NOT_ALLOWED, METHOD_NOT_ALLOWED_BODY);
            return with_allow(resp, ALLOW_POST);
        }
        let ms = params::pairs(req.uri().query().unwrap_or(""))
            .find(|(k, _)| k == "ms")
            .and_then(|(_, v)| v.trim().parse::<f64>().ok())
            .filter(|ms| ms.is_finite() && (0.0..=3_600_000.0).contains(ms));
        let Some(ms) = ms else {
            let body = b"{\"error\":\"ms must be a number of milliseconds from 0 to 3600000\"}\n";
            return response(StatusCode::BAD_REQUEST, JSON, Bytes::from_static(body));
        };
        self.stall(Duration::from_secs_f64(ms / 1000.0));
        let body = format!("{{\"stall_ms\":{ms}}}\n");
        response(StatusCode::OK, JSON, Bytes::from(body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_matches_werkzeug() {
        assert_eq!(target("/"), Target::Counted(Route::Root));
        assert_eq!(target("/login"), Target::Counted(Route::Login));
        assert_eq!(target("/log%69n"), Target::Counted(Route::Login));
        assert_eq!(target("/metrics"), Target::Counted(Route::Metrics));
        assert_eq!(target("/login/"), Target::Counted(Route::Other));
        assert_eq!(target("/LOGIN"), Target::Counted(Route::Other));
        assert_eq!(target("/_stats"), Target::Stats);
        assert_eq!(target("/_admin/stall"), Target::Stall);
    }

    #[test]
    fn bodies_match_flask() {
        let dev = Some(Cow::Borrowed("abc"));
        assert_eq!(
            &concat(&[b"/login - device: ", or_none(&dev), b"\n"])[..],
            b"/login - device: abc\n"
        );
        assert_eq!(
            &concat(&[b"/login - device: ", or_none(&None), b"\n"])[..],
            b"/login - device: None\n"
        );
        // Lengths checked against Flask 3.1.3's responses.
        assert_eq!(ROOT_BODY.len(), 74);
        assert_eq!(NOT_FOUND_BODY.len(), 207);
        assert_eq!(METHOD_NOT_ALLOWED_BODY.len(), 153);
        assert_eq!(INTERNAL_ERROR_BODY.len(), 265);
        assert_eq!(TOO_LARGE_BODY.len(), 171);
        assert_eq!(BAD_REQUEST_BODY.len(), 167);
    }
}
