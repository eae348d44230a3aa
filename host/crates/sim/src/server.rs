//! The axum service: every request is logged, faults are applied, then the API answers.

use super::api;
use super::control;
use super::reply::Reply;
use super::state::{FaultKind, Shared};
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use std::net::SocketAddr;
use std::sync::Arc;

/// The fallback handler for every path.
pub(crate) async fn dispatch(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let received = std::time::SystemTime::now();
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    if uri.path().starts_with("/sim/") || uri.path() == "/sim" {
        if !peer.ip().is_loopback() {
            return (StatusCode::FORBIDDEN, "the control API is loopback-only").into_response();
        }
        return into_response(control::handle(&shared, method.as_str(), uri.path(), &body));
    }
    let (fault, idx, latency_ms) = {
        let mut st = shared.lock();
        let fault = st.take_fault(uri.path());
        let logged = redact(uri.path(), &body);
        let idx = st.record(
            method.as_str(),
            &path,
            logged,
            fault.as_ref().map(|f| f.kind),
            received,
        );
        (fault, idx, st.latency_ms)
    };
    let delay = fault
        .as_ref()
        .filter(|f| f.kind == FaultKind::Delay)
        .map_or(0, |f| f.delay_ms);
    let wait = latency_ms.saturating_add(delay);
    if wait > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
    }
    let mut st = shared.lock();
    let reply = match fault.as_ref() {
        Some(f) if f.kind == FaultKind::Status400 => Reply::json(
            400,
            &serde_json::json!({"status": "FAILURE", "message": "Bad request"}),
        ),
        Some(f) if matches!(f.kind, FaultKind::Status429 | FaultKind::Status503) => {
            let (status, message) = match f.kind {
                FaultKind::Status429 => (429, "Too Many Requests"),
                _ => (503, "Service Unavailable"),
            };
            let mut reply = Reply::json(status, &serde_json::json!({ "message": message }));
            if let Some(secs) = f.retry_after_secs {
                reply.headers.push(("retry-after", secs.to_string()));
            }
            reply
        }
        Some(f) if f.kind == FaultKind::Status500 && !f.after_processing => server_error(),
        Some(f) if f.kind == FaultKind::Status403 => Reply::json(
            403,
            &serde_json::json!({"error": "UnauthorizedRequest", "message": "Forbidden"}),
        ),
        Some(f) if f.kind == FaultKind::LoginPage => Reply::html(super::pages::LOGIN_PAGE),
        Some(f) if f.kind == FaultKind::ErrorBody => Reply::json(
            200,
            &super::render::failure("Request failed: the server refused to process it"),
        ),
        _ => {
            let cookie = session_cookie(&headers);
            let reply = api::route(&mut st, method.as_str(), &path, cookie.as_deref(), &body);
            mangle(reply, fault.as_ref().map(|f| f.kind))
        }
    };
    if let Some(entry) = st.log.get_mut(idx) {
        entry.status = reply.status;
    }
    drop(st);
    if fault.is_some_and(|f| f.kind == FaultKind::Reset) {
        return broken(reply);
    }
    into_response(reply)
}

/// A 200 reply whose body breaks off after its first bytes: the connection is cut with the
/// request carried out and no complete answer sent.
fn broken(reply: Reply) -> Response {
    let head = reply.body[..reply.body.len().min(8)].to_vec();
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = vec![
        Ok(head),
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "connection reset by the simulator",
        )),
    ];
    let mut resp = Response::new(Body::from_stream(futures::stream::iter(chunks)));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(reply.content_type),
    );
    resp
}

fn server_error() -> Reply {
    let mut r =
        Reply::html("<html><body><h1>HTTP Status 500 - Internal Server Error</h1></body></html>");
    r.status = 500;
    r
}

fn mangle(reply: Reply, fault: Option<FaultKind>) -> Reply {
    match fault {
        Some(FaultKind::Status500) => server_error(),
        Some(FaultKind::Garbage) => Reply {
            status: 200,
            headers: Vec::new(),
            content_type: "application/json",
            body: b"\x00\x17garbage{{{ not json \xff\xfe".to_vec(),
        },
        Some(FaultKind::Truncated) => {
            let mut r = reply;
            let half = r.body.len() / 2;
            r.body.truncate(half);
            r.status = 200;
            r
        }
        Some(FaultKind::Html) => Reply::html(super::pages::PROXY_ERROR_PAGE),
        Some(FaultKind::Partial) => partial(reply),
        _ => reply,
    }
}

/// `reply`, a visualsearch envelope, as `PARTIAL_SUCCESS` with only its last result.
fn partial(mut reply: Reply) -> Reply {
    let Ok(mut body) = serde_json::from_slice::<serde_json::Value>(&reply.body) else {
        return reply;
    };
    body["status"] = "PARTIAL_SUCCESS".into();
    body["message"] = "1 of 2 detection servers did not answer".into();
    if let Some(results) = body
        .pointer_mut("/data/resultIdToElementDataMap")
        .and_then(serde_json::Value::as_object_mut)
    {
        let last = results.keys().max().cloned();
        results.retain(|key, _| Some(key) == last.as_ref());
        // What the silent servers hold is not counted either.
        let kept = results.len();
        body["data"]["totalPossibleResults"] = kept.into();
    }
    reply.body = body.to_string().into_bytes();
    reply
}

/// The `JSESSIONID` cookie of a request.
fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().strip_prefix("JSESSIONID="))
        .map(str::to_owned)
        .next()
}

/// The body as logged: the login password replaced by `[redacted]`.
fn redact(path: &str, body: &[u8]) -> String {
    if path != "/login.html" {
        return String::from_utf8_lossy(body).into_owned();
    }
    String::from_utf8_lossy(body)
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some(("password", _)) => "password=[redacted]".to_owned(),
            _ => pair.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn into_response(reply: Reply) -> Response {
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = Response::new(Body::from(reply.body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(reply.content_type),
    );
    for (name, value) in reply.headers {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.append(name, v);
        }
    }
    resp
}
