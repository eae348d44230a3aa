//! One authenticated call: the session cookie, expiry detection with one re-login, timeouts,
//! and retries for calls that are safe to repeat.

use super::Client;
use super::error::{Error, Result};
use super::parse::excerpt;
use super::session::{Session, is_login_page, retryable_status};
use backon::RetryableWithContext as _;
use reqwest::header::{CONTENT_TYPE, COOKIE, LOCATION, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::time::Duration;

/// The most bytes of one reply that are read (a page of 10,000 Malops, the most one query
/// returns, is about 27 MB as the simulator renders it). A longer reply is refused whole,
/// not cut: a cut reply would be read as if it were all there was.
pub(crate) const MAX_REPLY_BYTES: usize = 256 * 1024 * 1024;

/// The most a reply's `Content-Length` reserves before its bytes arrive.
const FIRST_BUFFER_BYTES: u64 = 1024 * 1024;

/// The body of `resp`, or `None` once it proves longer than `limit` bytes (by its
/// `Content-Length`, or while it streams in: nothing past the limit is kept).
pub(crate) async fn body_within(
    mut resp: reqwest::Response,
    limit: usize,
) -> reqwest::Result<Option<Vec<u8>>> {
    let announced = resp.content_length().unwrap_or(0);
    if announced > limit as u64 {
        return Ok(None);
    }
    // The server's announcement sizes no more than a first buffer: memory grows with what
    // really arrives.
    let mut body = Vec::with_capacity(announced.min(FIRST_BUFFER_BYTES) as usize);
    while let Some(chunk) = resp.chunk().await? {
        if body.len() + chunk.len() > limit {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

/// The first `limit` bytes of a body, the rest left unread: for answers whose body only
/// gives an error's excerpt (an error status, a login reply), which need not be read whole.
pub(crate) async fn body_start(
    mut resp: reqwest::Response,
    limit: usize,
) -> reqwest::Result<Vec<u8>> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        let room = limit - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() == limit {
            break;
        }
    }
    Ok(body)
}

/// The most of an error status's body read: its excerpt and the names searched for in it
/// come from its start.
const ERROR_BODY_BYTES: usize = REASON_SEARCH_BYTES;

/// The longest a `Retry-After` is waited for within one call; a throttled call still
/// throttled after its tries fails, and the service tries again on its next cycle.
const RETRY_AFTER_MAX: Duration = Duration::from_secs(60);

/// The `Retry-After` of a 429 or a 503, in seconds (the HTTP-date form is not used by API
/// servers), at most [`RETRY_AFTER_MAX`].
fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    if !matches!(
        resp.status(),
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
    ) {
        return None;
    }
    let secs: u64 = resp
        .headers()
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs).min(RETRY_AFTER_MAX))
}

/// What is wrong with a reply longer than [`MAX_REPLY_BYTES`].
fn oversized_reply() -> String {
    format!(
        "a reply longer than {} MiB, not read",
        MAX_REPLY_BYTES / (1024 * 1024)
    )
}

/// The error of a query (or the login) whose reply at `endpoint` is longer than
/// [`MAX_REPLY_BYTES`]: not tried again, the server would answer the same.
pub(crate) fn oversized_query(endpoint: String) -> Error {
    Error::Parse {
        endpoint,
        reason: oversized_reply(),
        excerpt: String::new(),
    }
}

/// A request body.
pub(crate) enum Body {
    /// No body.
    Empty,
    /// A JSON document.
    Json(Value),
    /// Raw text (sent as `application/json`, as SP and XS do for comments).
    Text(String),
}

/// Whether a call may be sent again when its outcome is unknown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Safety {
    /// Reads and idempotent writes: retried on 429, 5xx, timeouts and connection errors.
    Repeatable,
    /// Actions: never re-sent once they may have reached the server.
    Once,
}

/// One call to a `/rest` endpoint.
pub(crate) struct Call {
    pub(crate) method: Method,
    pub(crate) path: String,
    pub(crate) body: Body,
    pub(crate) safety: Safety,
}

impl Call {
    /// A POST of a JSON body.
    pub(crate) fn post(path: impl Into<String>, body: Value, safety: Safety) -> Self {
        Self {
            method: Method::POST,
            path: path.into(),
            body: Body::Json(body),
            safety,
        }
    }

    /// A GET.
    pub(crate) fn get(path: impl Into<String>) -> Self {
        Self {
            method: Method::GET,
            path: path.into(),
            body: Body::Empty,
            safety: Safety::Repeatable,
        }
    }

    /// `"POST /rest/remediate"`: how errors name the endpoint.
    pub(crate) fn endpoint(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

enum Step {
    Done(Vec<u8>),
    /// The session is taken to have expired: `certain` when the server said so (401, its
    /// login page, a redirect to it), not when a read got some other page (a proxy's).
    Expired {
        certain: bool,
    },
    Retry(Error),
    Fail(Error),
}

/// Why a try did not succeed: whether another may be made (after a backoff) or not.
pub(crate) enum TryError {
    /// A failure another try may cure (429, 5xx, a transport error of a safe call).
    Retry(Error),
    /// A failure that ends the call.
    Final(Error),
}

impl TryError {
    pub(crate) fn is_retry(&self) -> bool {
        matches!(self, Self::Retry(_))
    }

    pub(crate) fn into_error(self) -> Error {
        match self {
            Self::Retry(e) | Self::Final(e) => e,
        }
    }
}

/// What one call carries from try to try.
struct Tries {
    session: Session,
    /// Tries made so far (a re-login does not count).
    attempt: u32,
    relogged: bool,
}

impl Client {
    /// Sends a call and returns the 2xx body; see the module docs for the rules. The tries
    /// and their backoff are `backon`'s; only a [`Safety::Repeatable`] call is tried again.
    pub(crate) async fn send(&self, call: &Call) -> Result<Vec<u8>> {
        let endpoint = call.endpoint();
        let tries = Tries {
            session: self.session().await?,
            attempt: 0,
            relogged: false,
        };
        let (_, result) = (|tries| self.try_once(call, tries))
            .retry(self.retry.backoff())
            .context(tries)
            .when(|e: &TryError| e.is_retry() && call.safety == Safety::Repeatable)
            .notify(|e: &TryError, delay| self.log_retry(&endpoint, e, delay))
            .await;
        result.map_err(TryError::into_error)
    }

    /// One counted try of a call, with at most one re-login per call on an expired session.
    async fn try_once(
        &self,
        call: &Call,
        mut tries: Tries,
    ) -> (Tries, std::result::Result<Vec<u8>, TryError>) {
        tries.attempt += 1;
        let mut relogged_now = false;
        loop {
            let result = match self.attempt(call, &tries.session, tries.attempt).await {
                Step::Done(body) => {
                    self.calls_go_through();
                    Ok(body)
                }
                Step::Expired { certain } if tries.relogged => {
                    let error = Error::SessionRejected {
                        endpoint: call.endpoint(),
                        held: String::new(),
                    };
                    // Only the server's own word, right after the login it answers, says
                    // that its sessions are refused: then logins are held.
                    if certain && relogged_now {
                        self.reject_session(tries.session.generation, &error).await;
                    }
                    Err(TryError::Final(error))
                }
                Step::Expired { .. } => {
                    tracing::info!(endpoint = %call.endpoint(), "session expired; logging in again");
                    tries.relogged = true;
                    relogged_now = true;
                    match self.relogin(tries.session.generation).await {
                        Ok(session) => tries.session = session,
                        Err(e) => return (tries, Err(TryError::Final(e))),
                    }
                    continue;
                }
                Step::Retry(e) => Err(TryError::Retry(e)),
                Step::Fail(e) => Err(TryError::Final(e)),
            };
            return (tries, result);
        }
    }

    async fn attempt(&self, call: &Call, session: &Session, attempt: u32) -> Step {
        let endpoint = call.endpoint();
        let mut req = self
            .http
            .request(call.method.clone(), format!("{}{}", self.base, call.path))
            .header(COOKIE, format!("JSESSIONID={}", session.cookie.expose()));
        req = match &call.body {
            Body::Empty => req,
            Body::Json(v) => req.json(v),
            Body::Text(t) => req.header(CONTENT_TYPE, "application/json").body(t.clone()),
        };
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => return self.transport_step(call, &e, attempt),
        };
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED {
            return Step::Expired { certain: true };
        }
        if status.is_redirection() {
            let to_login = resp
                .headers()
                .get(LOCATION)
                .and_then(|l| l.to_str().ok())
                .is_some_and(|l| l.to_ascii_lowercase().contains("login"));
            return self.not_a_reply(call, to_login, || {
                format!("HTTP {} redirect away from the API", status.as_u16())
            });
        }
        let retry_after = retry_after(&resp);
        let read = if status.is_success() {
            body_within(resp, MAX_REPLY_BYTES).await
        } else {
            body_start(resp, ERROR_BODY_BYTES).await.map(Some)
        };
        let body = match read {
            Ok(Some(body)) => body,
            Ok(None) => return Step::Fail(self.oversized(call)),
            Err(e) => return self.transport_step(call, &e, attempt),
        };
        if retryable_status(status) {
            let step = self.server_step(call, status, attempt, &body);
            // A throttling or unavailable server says when to come back: the next try waits
            // that long (bounded) before the backoff's own delay, instead of landing in the
            // same window.
            if let (Step::Retry(_), Some(wait)) = (&step, retry_after)
                && attempt < self.retry.max_attempts
            {
                let status = status.as_u16();
                tracing::warn!(endpoint = %endpoint, "HTTP {status}: waiting {wait:?}, as the server's Retry-After asks");
                tokio::time::sleep(wait).await;
            }
            return step;
        }
        if !status.is_success() {
            return Step::Fail(self.http_error(&endpoint, status, attempt, &body));
        }
        if looks_like_html(&body) {
            return self.not_a_reply(call, is_login_page(&body), || {
                format!(
                    "an HTML page instead of a reply (a proxy's error page?); it starts: {:?}",
                    self.scrub(&excerpt(&body))
                )
            });
        }
        Step::Done(body)
    }

    /// A reply too long to read: for a call that changes state, its outcome is unknown; a
    /// query is not tried again (the server would answer the same).
    fn oversized(&self, call: &Call) -> Error {
        let endpoint = call.endpoint();
        match call.safety {
            Safety::Once => Error::OutcomeUnknown {
                endpoint,
                reason: oversized_reply(),
            },
            Safety::Repeatable => oversized_query(endpoint),
        }
    }

    /// An answer that is no reply of the API: the login page or a redirect to it means the
    /// session expired and the call was not carried out (log in again, send once more); for
    /// a read, any such answer is treated so. For an action, anything else (a proxy's page, a
    /// redirect elsewhere) may come after the server carried it out: its outcome is unknown.
    fn not_a_reply(&self, call: &Call, login: bool, what: impl FnOnce() -> String) -> Step {
        if login || call.safety == Safety::Repeatable {
            return Step::Expired { certain: login };
        }
        Step::Fail(Error::OutcomeUnknown {
            endpoint: call.endpoint(),
            reason: what(),
        })
    }

    fn server_step(&self, call: &Call, status: StatusCode, attempt: u32, body: &[u8]) -> Step {
        let endpoint = call.endpoint();
        match (call.safety, status) {
            (Safety::Once, StatusCode::TOO_MANY_REQUESTS) => Step::Fail(Error::Throttled {
                endpoint,
                attempts: attempt,
            }),
            (Safety::Once, _) => Step::Fail(Error::OutcomeUnknown {
                endpoint,
                reason: format!("HTTP {}", status.as_u16()),
            }),
            _ => Step::Retry(self.http_error(&endpoint, status, attempt, body)),
        }
    }

    fn transport_step(&self, call: &Call, e: &reqwest::Error, attempt: u32) -> Step {
        if e.is_builder() {
            // The request never existed: certainly not sent, whatever its safety.
            return Step::Fail(Error::NotSent {
                endpoint: call.endpoint(),
                reason: self.scrub(&source_chain(e)),
            });
        }
        let err = self.transport_error(&call.endpoint(), e, attempt);
        match (call.safety, &err) {
            // Refused once, said once: another try meets the same certificate.
            (_, Error::Certificate { .. }) => Step::Fail(err),
            (Safety::Repeatable, _) => Step::Retry(err),
            // Never connected: certainly not sent.
            (Safety::Once, Error::Connect { .. }) => Step::Fail(err),
            (Safety::Once, _) => Step::Fail(Error::OutcomeUnknown {
                endpoint: call.endpoint(),
                reason: err.to_string(),
            }),
        }
    }

    pub(crate) fn transport_error(
        &self,
        endpoint: &str,
        e: &reqwest::Error,
        attempts: u32,
    ) -> Error {
        let endpoint = endpoint.to_owned();
        if let Some((problem, fix)) = super::tls::certificate_problem(e, &self.host()) {
            return Error::Certificate {
                endpoint,
                problem,
                fix,
            };
        }
        if e.is_connect() {
            Error::Connect {
                endpoint,
                attempts,
                reason: self.scrub(&source_chain(e)),
            }
        } else if e.is_timeout() {
            Error::Timeout {
                endpoint,
                timeout: self.timeouts.request,
                attempts,
            }
        } else {
            Error::Transport {
                endpoint,
                attempts,
                reason: self.scrub(&source_chain(e)),
            }
        }
    }

    pub(crate) fn http_error(
        &self,
        endpoint: &str,
        status: StatusCode,
        attempts: u32,
        body: &[u8],
    ) -> Error {
        let endpoint = endpoint.to_owned();
        if status == StatusCode::TOO_MANY_REQUESTS {
            return Error::Throttled { endpoint, attempts };
        }
        if status == StatusCode::BAD_REQUEST && names_no_matching_sensors(body) {
            return Error::NoMatchingSensors { endpoint };
        }
        if super::error::refusal(status.as_u16()).is_some() {
            return Error::Refused {
                endpoint,
                status: status.as_u16(),
                excerpt: self.scrub(&excerpt(body)),
            };
        }
        Error::Http {
            endpoint,
            status: status.as_u16(),
            attempts,
            excerpt: self.scrub(&excerpt(body)),
        }
    }

    /// Removes the password from text that goes into an error.
    pub(crate) fn scrub(&self, text: &str) -> String {
        super::secret::scrub(&self.credentials.password, text)
    }

    /// Logs a failed try that will be made again after `delay`.
    pub(crate) fn log_retry(&self, endpoint: &str, err: &TryError, delay: std::time::Duration) {
        if let TryError::Retry(err) = err {
            tracing::warn!(%endpoint, ?delay, error = %err, "retrying");
        }
    }

    /// Sends a call and parses its body, attaching the endpoint (and scrubbing) on failure.
    pub(crate) async fn fetch<T>(
        &self,
        call: Call,
        parse: impl FnOnce(&[u8]) -> super::parse::Parsed<T>,
    ) -> Result<T> {
        let body = self.send(&call).await?;
        parse(&body).map_err(|e| self.scrub_error(e.at(&call.endpoint()), call.safety))
    }

    fn scrub_error(&self, err: Error, safety: Safety) -> Error {
        match err {
            Error::Parse {
                endpoint,
                reason,
                excerpt,
            } if safety == Safety::Once => Error::OutcomeUnknown {
                endpoint,
                reason: format!(
                    "unreadable reply: {}; body starts: {:?}",
                    reason,
                    self.scrub(&excerpt)
                ),
            },
            Error::Parse {
                endpoint,
                reason,
                excerpt,
            } => Error::Parse {
                endpoint,
                reason,
                excerpt: self.scrub(&excerpt),
            },
            other => other,
        }
    }
}

/// A body that is HTML rather than JSON/CSV: the login page of an expired session.
pub(crate) fn looks_like_html(body: &[u8]) -> bool {
    let start = body.iter().position(|b| !b.is_ascii_whitespace());
    start.is_some_and(|i| body[i] == b'<')
}

fn source_chain(e: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut text = e.without_url_ref();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

trait WithoutUrl {
    fn without_url_ref(&self) -> String;
}

impl WithoutUrl for reqwest::Error {
    fn without_url_ref(&self) -> String {
        let mut s = self.to_string();
        if let Some(url) = self.url() {
            s = s.replace(&format!(" ({url})"), "");
        }
        s
    }
}

/// Percent-encodes one path segment (ids, user names).
pub(crate) fn segment(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'@' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The most of a 400's body searched for the server's reason code.
const REASON_SEARCH_BYTES: usize = 64 * 1024;

/// Whether a 400's body says that no sensor matched the pylumIds sent (§5.1), wherever in its
/// first [`REASON_SEARCH_BYTES`] it says so.
fn names_no_matching_sensors(body: &[u8]) -> bool {
    const CODE: &[u8] = b"NO_MATCHING_SENSORS";
    body[..body.len().min(REASON_SEARCH_BYTES)]
        .windows(CODE.len())
        .any(|w| w == CODE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn no_matching_sensors_is_recognised_anywhere_in_a_400() {
        let client = Client::new(super::super::ClientConfig::new(
            "http://127.0.0.1:9",
            super::super::Credentials::new("u", "p"),
        ))
        .unwrap();
        let late = format!(
            r#"{{"timestamp": 1, "path": "{}", "error": "NO_MATCHING_SENSORS"}}"#,
            "/x".repeat(200)
        );
        let err = client.http_error("isolate", StatusCode::BAD_REQUEST, 1, late.as_bytes());
        assert!(matches!(err, Error::NoMatchingSensors { .. }), "{err}");
        let other = client.http_error("isolate", StatusCode::BAD_REQUEST, 1, b"bad query");
        assert!(
            matches!(other, Error::Refused { status: 400, .. }),
            "{other}"
        );
        assert!(other.certainly_not_done() && other.rejected_for_good());
        let role = client.http_error("remediate", StatusCode::FORBIDDEN, 1, b"");
        assert!(role.to_string().contains("lacks the role"), "{role}");
        assert!(role.rejected_for_good());
        let denied = client.http_error("remediate", StatusCode::PRECONDITION_FAILED, 1, b"");
        assert!(denied.to_string().contains("access denied"), "{denied}");
        let elsewhere =
            client.http_error("isolate", StatusCode::NOT_FOUND, 1, b"NO_MATCHING_SENSORS");
        assert!(
            matches!(elsewhere, Error::Http { status: 404, .. }),
            "{elsewhere}"
        );
    }

    /// A loopback server that answers one request with `head` and then `body_len` bytes.
    async fn answering(head: String, body_len: usize) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 1024];
            let _ = tcp.read(&mut request).await;
            let _ = tcp.write_all(head.as_bytes()).await;
            let _ = tcp.write_all(&vec![b'x'; body_len]).await;
        });
        format!("http://{addr}/")
    }

    async fn read(head: String, body_len: usize, limit: usize) -> Option<Vec<u8>> {
        let url = answering(head, body_len).await;
        let resp = reqwest::get(url).await.unwrap();
        body_within(resp, limit).await.unwrap()
    }

    #[tokio::test]
    async fn a_reply_longer_than_the_limit_is_refused_and_one_within_it_is_read_whole() {
        let sized = |n: usize| format!("HTTP/1.1 200 OK\r\nContent-Length: {n}\r\n\r\n");
        assert_eq!(read(sized(100), 100, 100).await.map(|b| b.len()), Some(100));
        assert_eq!(
            read(sized(101), 101, 100).await,
            None,
            "by its Content-Length"
        );
        // No length given: refused while it streams in.
        let streamed = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_owned();
        assert_eq!(
            read(streamed.clone(), 100, 100).await.map(|b| b.len()),
            Some(100)
        );
        assert_eq!(read(streamed, 50_000, 100).await, None, "while streaming");
    }
}
