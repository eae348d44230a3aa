//! Pure parsers for every response body the client reads. None panics on any input; each
//! failure says what is wrong. The HTTP layer adds the endpoint (see [`ResponseError::at`]).

mod actions;
mod malops;
mod sensors;
mod typed;

pub use actions::{
    comment_reply, comments, isolation, remediation, remediation_list, reputation_csv,
    reputation_update, status_reply,
};
pub(crate) use malops::{bare_machine, visual_envelope};
pub use malops::{crimes_unified, crimes_unified_page, inbox, mmng_page, visual_elements};
pub use sensors::sensors_page;

use super::error::Error;
use super::types::{Element, ElementRef};
use riposte_domain::bounds;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Why a body was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    /// The body is not what this endpoint returns.
    #[error("{reason}; body starts: {excerpt:?}")]
    Malformed {
        /// What is wrong.
        reason: String,
        /// The start of the body.
        excerpt: String,
    },
    /// The body is well formed and says the call failed.
    #[error("the server reported {status}: {message}")]
    Failure {
        /// `status` / `outcome` / `errorType` as sent.
        status: String,
        /// The server's message.
        message: String,
    },
}

impl ResponseError {
    /// Attaches the endpoint, giving the client's error.
    pub fn at(self, endpoint: &str) -> Error {
        match self {
            Self::Malformed { reason, excerpt } => Error::Parse {
                endpoint: endpoint.to_owned(),
                reason,
                excerpt,
            },
            Self::Failure { status, message } => Error::Api {
                endpoint: endpoint.to_owned(),
                status,
                message,
            },
        }
    }
}

/// Result of a parser.
pub type Parsed<T> = Result<T, ResponseError>;

/// The first 160 characters of a body, for error messages.
pub fn excerpt(body: &[u8]) -> String {
    String::from_utf8_lossy(&body[..body.len().min(640)])
        .chars()
        .take(160)
        .collect()
}

pub(crate) fn malformed(body: &[u8], reason: impl Into<String>) -> ResponseError {
    ResponseError::Malformed {
        reason: reason.into(),
        excerpt: excerpt(body),
    }
}

/// Parses JSON, saying where it broke (truncation reads as "EOF while parsing").
pub(crate) fn json(body: &[u8]) -> Parsed<Value> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(malformed(body, "empty body where JSON was expected"));
    }
    serde_json::from_slice(body).map_err(|e| malformed(body, format!("invalid JSON: {e}")))
}

/// The top-level object of a JSON body.
pub(crate) fn object(body: &[u8]) -> Parsed<Map<String, Value>> {
    match json(body)? {
        Value::Object(map) => Ok(map),
        other => Err(malformed(
            body,
            format!("expected a JSON object, got {}", kind(&other)),
        )),
    }
}

/// What kind of JSON value `v` is, as error messages name it ("an array", "null").
pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Fails on `status` ≠ SUCCESS (with `message`) or a non-empty `errorMessage`.
pub(crate) fn check_status(map: &Map<String, Value>) -> Parsed<()> {
    let failure = status_failure(
        map.get("status"),
        map.get("message"),
        map.get("errorMessage"),
    );
    failure.map_or(Ok(()), Err)
}

/// The `status` of a visualsearch or `crimes/unified` answer some of the server's detection
/// servers did not contribute to (one offline, §5.3).
const PARTIAL_SUCCESS: &str = "PARTIAL_SUCCESS";

/// A visualsearch or `crimes/unified` answer.
#[derive(Debug)]
pub(crate) struct VisualAnswer {
    /// The result elements, sorted by result key.
    pub elements: Vec<Element>,
    /// `data.totalPossibleResults`, when it is a number.
    pub total: Option<u64>,
    /// `PARTIAL_SUCCESS`, with the server's message (bounded): the elements are those of
    /// the detection servers that answered, so what is missing is unknown.
    pub partial: Option<String>,
}

impl VisualAnswer {
    /// The answer, but a partial one as the server's failure: for a query whose every
    /// result matters.
    pub(crate) fn whole(self) -> Parsed<Self> {
        match self.partial {
            Some(message) => Err(partial_failure(message)),
            None => Ok(self),
        }
    }
}

/// A partial answer (with the server's `message`) as the server's failure.
pub(crate) fn partial_failure(message: String) -> ResponseError {
    ResponseError::Failure {
        status: PARTIAL_SUCCESS.into(),
        message,
    }
}

/// [`status_failure`] of an envelope that may be partial: `Ok(Some(message))` for
/// `PARTIAL_SUCCESS` (whatever its `errorMessage`, which names what did not answer).
pub(crate) fn envelope_status(
    status: Option<&Value>,
    message: Option<&Value>,
    error_message: Option<&Value>,
) -> Parsed<Option<String>> {
    let partial = status
        .and_then(Value::as_str)
        .is_some_and(|s| s.eq_ignore_ascii_case(PARTIAL_SUCCESS));
    if partial {
        let said = text(message)
            .filter(|m| !m.is_empty())
            .or_else(|| text(error_message));
        return Ok(Some(said.as_deref().map(bounded).unwrap_or_default()));
    }
    status_failure(status, message, error_message).map_or(Ok(None), Err)
}

/// Why a `SUCCESS` envelope is partial all the same: some of the server's detection servers
/// failed to answer (`failures` above 0), or the query was stopped before it finished
/// (`data.queryTerminated`); `None` when neither.
pub(crate) fn cut_short(failures: Option<&Value>, terminated: Option<&Value>) -> Option<String> {
    let failed = failures.and_then(|f| match f {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    });
    let terminated = match terminated {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
        _ => false,
    };
    match (failed, terminated) {
        (Some(n), _) if n > 0 => Some(format!("{n} detection server(s) failed to answer")),
        (_, true) => Some("the query was terminated before it finished".into()),
        _ => None,
    }
}

/// The failure a body's `status`, `message` and `errorMessage` fields report, if any.
pub(crate) fn status_failure(
    status: Option<&Value>,
    message: Option<&Value>,
    error_message: Option<&Value>,
) -> Option<ResponseError> {
    if let Some(status) = status.and_then(Value::as_str)
        && !status.eq_ignore_ascii_case("SUCCESS")
    {
        return Some(ResponseError::Failure {
            status: bounded(status),
            message: text(message).as_deref().map(bounded).unwrap_or_default(),
        });
    }
    text(error_message)
        .filter(|m| !m.is_empty())
        .map(|message| ResponseError::Failure {
            status: "errorMessage".into(),
            message: bounded(&message),
        })
}

/// A server's failure text as kept in an error (and so in the ledger, the audit trail and
/// the log): at most [`bounds::MAX_ERROR_BYTES`], control characters escaped.
fn bounded(text: &str) -> String {
    bounds::log_safe(text, bounds::MAX_ERROR_BYTES)
}

/// A string, or a number/bool rendered as one.
pub(crate) fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// An epoch-ms value sent as a number or a numeric string; `None` if absent or null.
pub(crate) fn millis(body: &[u8], v: Option<&Value>, field: &str) -> Parsed<Option<i64>> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
            .map(Some)
            .ok_or_else(|| malformed(body, format!("{field}: {n} is not an epoch-ms value"))),
        Some(Value::String(s)) => parse_i64(s)
            .map(Some)
            .ok_or_else(|| malformed(body, format!("{field}: {s:?} is not an epoch-ms value"))),
        Some(other) => Err(malformed(
            body,
            format!("{field}: expected epoch ms, got {}", kind(other)),
        )),
    }
}

fn parse_i64(s: &str) -> Option<i64> {
    let s = s.trim();
    s.parse::<i64>().ok().or_else(|| {
        s.parse::<f64>()
            .ok()
            .filter(|f| f.is_finite() && f.fract() == 0.0)
            .map(|f| f as i64)
    })
}

/// A boolean sent as JSON bool or the strings "true"/"false" (any case).
pub(crate) fn boolean(body: &[u8], v: Option<&Value>, field: &str) -> Parsed<Option<bool>> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
        Some(other) => Err(malformed(
            body,
            format!("{field}: expected a boolean, got {other}"),
        )),
    }
}

/// Parses one element object (`simpleValues`, `elementValues`; both optional).
pub(crate) fn element(body: &[u8], key: &str, v: &Value) -> Parsed<Element> {
    let Value::Object(map) = v else {
        return Err(malformed(
            body,
            format!("element {key:?} should be an object, got {}", kind(v)),
        ));
    };
    let guid = text(map.get("guidString")).unwrap_or_else(|| key.to_owned());
    let mut simple = BTreeMap::new();
    if let Some(Value::Object(fields)) = map.get("simpleValues") {
        for (name, f) in fields {
            let values = f.get("values").and_then(Value::as_array);
            let vals = values.map_or_else(Vec::new, |vs| {
                vs.iter().filter_map(|v| text(Some(v))).collect::<Vec<_>>()
            });
            simple.insert(name.clone(), vals);
        }
    }
    let mut elements = BTreeMap::new();
    let mut ref_totals = BTreeMap::new();
    if let Some(Value::Object(fields)) = map.get("elementValues") {
        for (name, f) in fields {
            elements.insert(name.clone(), element_refs(f));
            if let Some(total) = f.get("totalValues").and_then(count) {
                ref_totals.insert(name.clone(), total);
            }
        }
    }
    Ok(Element {
        guid,
        simple,
        elements,
        ref_totals,
        malop_priority: text(map.get("malopPriority")),
    })
}

/// A count sent as a JSON number or a string of digits.
pub(crate) fn count(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| v.as_str()?.trim().parse().ok())
}

fn element_refs(f: &Value) -> Vec<ElementRef> {
    let list = f.get("elementValues").and_then(Value::as_array);
    list.map_or_else(Vec::new, |items| {
        items
            .iter()
            .filter_map(|e| {
                Some(ElementRef {
                    element_type: text(e.get("elementType")).unwrap_or_default(),
                    guid: text(e.get("guid"))?,
                    name: text(e.get("name")).unwrap_or_default(),
                })
            })
            .collect()
    })
}

/// A simple value as epoch ms.
pub(crate) fn sv_millis(body: &[u8], e: &Element, field: &str) -> Parsed<Option<i64>> {
    match e.first(field) {
        None => Ok(None),
        Some(s) => parse_i64(s).map(Some).ok_or_else(|| {
            malformed(
                body,
                format!("element {}: {field} {s:?} is not an epoch-ms value", e.guid),
            )
        }),
    }
}
