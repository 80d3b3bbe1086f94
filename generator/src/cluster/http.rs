//! The control plane's HTTP plumbing (hyper 1 on a small tokio runtime, never on the engine's
//! threads): a server loop, a one-shot JSON client, and the shared-token check.
//!
//! Requests are small JSON bodies once a second per worker; a fresh connection per heartbeat
//! keeps the client trivially correct across coordinator restarts at a cost that does not
//! matter at this rate.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use thiserror::Error;
use tokio::net::{TcpListener, TcpStream};

/// Largest request or response body accepted (a heartbeat with a backlog of intervals).
pub const MAX_BODY: usize = 64 << 20;

/// A response body.
pub type Body = Full<Bytes>;

/// A request whose body has been read.
#[derive(Debug)]
pub struct Req {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub authorization: Option<String>,
    pub body: Bytes,
}

#[derive(Debug, Error)]
pub enum ClientError {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("HTTP exchange with {addr} failed: {source}")]
    Http { addr: String, source: hyper::Error },
    #[error("{addr} did not answer within {0:?}", .timeout)]
    Timeout { addr: String, timeout: Duration },
    #[error("{addr} answered {status}: {body}")]
    Status {
        addr: String,
        status: StatusCode,
        body: String,
    },
}

/// Builds a response with a body and content type.
pub fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// A JSON response.
pub fn json(status: StatusCode, value: &impl serde::Serialize) -> Response<Body> {
    let body =
        serde_json::to_vec(value).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}").into_bytes());
    respond(status, "application/json", body)
}

/// A JSON error body `{"error": msg}`.
pub fn error(status: StatusCode, msg: &str) -> Response<Body> {
    json(status, &serde_json::json!({ "error": msg }))
}

/// True when no token is configured, or the request carries `Authorization: Bearer <token>`.
/// Compared in constant time so the token cannot be guessed byte by byte.
pub fn authorized(req: &Req, token: Option<&str>) -> bool {
    let Some(token) = token else {
        return true;
    };
    let Some(given) = req
        .authorization
        .as_deref()
        .and_then(|h| h.strip_prefix("Bearer "))
    else {
        return false;
    };
    let (a, b) = (given.as_bytes(), token.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Serves `listener` until `shutdown` resolves; `handler` gets every request with its body
/// read (bodies over [`MAX_BODY`] get 413).
pub async fn serve<H, F>(listener: TcpListener, handler: Arc<H>, shutdown: impl Future<Output = ()>)
where
    H: Fn(Req) -> F + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let handler = Arc::clone(&handler);
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let handler = Arc::clone(&handler);
                async move { Ok::<_, Infallible>(dispatch(req, handler).await) }
            });
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn dispatch<H, F>(req: Request<Incoming>, handler: Arc<H>) -> Response<Body>
where
    H: Fn(Req) -> F,
    F: Future<Output = Response<Body>>,
{
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request body too large or broken",
            )
        }
    };
    let req = Req {
        method: parts.method,
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().unwrap_or("").to_owned(),
        authorization: parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        body,
    };
    handler(req).await
}

/// Sends one request with a JSON body (or none) and returns the response body of a 2xx answer.
pub async fn request(
    addr: &str,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Vec<u8>>,
    timeout: Duration,
) -> Result<Bytes, ClientError> {
    let fut = async {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|source| ClientError::Connect {
                addr: addr.to_owned(),
                source,
            })?;
        let _ = stream.set_nodelay(true);
        let http = |source| ClientError::Http {
            addr: addr.to_owned(),
            source,
        };
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(http)?;
        tokio::spawn(conn);
        let mut b = Request::builder()
            .method(method)
            .uri(path)
            .header("host", addr)
            .header(CONTENT_TYPE, "application/json");
        if let Some(t) = token {
            b = b.header(AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = b
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .expect("static request parts are valid");
        let resp = sender.send_request(req).await.map_err(http)?;
        let status = resp.status();
        let bytes = Limited::new(resp.into_body(), MAX_BODY)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        if !status.is_success() {
            return Err(ClientError::Status {
                addr: addr.to_owned(),
                status,
                body: String::from_utf8_lossy(&bytes).chars().take(200).collect(),
            });
        }
        Ok(bytes)
    };
    tokio::time::timeout(timeout, fut)
        .await
        .unwrap_or_else(|_| {
            Err(ClientError::Timeout {
                addr: addr.to_owned(),
                timeout,
            })
        })
}

/// Binds a listener for the control plane.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(auth: Option<&str>) -> Req {
        Req {
            method: Method::POST,
            path: "/".into(),
            query: String::new(),
            authorization: auth.map(str::to_owned),
            body: Bytes::new(),
        }
    }

    #[test]
    fn token_must_match_exactly() {
        assert!(authorized(&req(None), None));
        assert!(authorized(&req(Some("Bearer s3cret")), Some("s3cret")));
        assert!(!authorized(&req(None), Some("s3cret")));
        assert!(!authorized(&req(Some("Bearer s3cre")), Some("s3cret")));
        assert!(!authorized(&req(Some("Bearer s3cret2")), Some("s3cret")));
        assert!(!authorized(&req(Some("s3cret")), Some("s3cret")));
    }

    #[test]
    fn client_and_server_round_trip_and_reject_bad_tokens() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
            let addr = listener.local_addr().unwrap().to_string();
            let handler = Arc::new(|r: Req| async move {
                if !authorized(&r, Some("t")) {
                    return error(StatusCode::UNAUTHORIZED, "bad token");
                }
                respond(StatusCode::OK, "text/plain", r.body)
            });
            let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
            let server = tokio::spawn(serve(listener, handler, async {
                let _ = stop_rx.await;
            }));
            let t = Duration::from_secs(5);
            let ok = request(
                &addr,
                Method::POST,
                "/x",
                Some("t"),
                Some(b"hi".to_vec()),
                t,
            )
            .await;
            assert_eq!(ok.unwrap(), Bytes::from_static(b"hi"));
            let denied = request(&addr, Method::POST, "/x", Some("u"), None, t).await;
            assert!(
                matches!(
                    denied,
                    Err(ClientError::Status {
                        status: StatusCode::UNAUTHORIZED,
                        ..
                    })
                ),
                "{denied:?}"
            );
            let _ = stop_tx.send(());
            server.await.unwrap();
        });
    }
}
