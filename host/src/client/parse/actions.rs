//! Replies of state-changing calls: remediation, isolation, reputation, status, comments.

use super::{Parsed, ResponseError, check_status, json, kind, malformed, millis, object, text};
use crate::client::types::{
    Comment, IsolationReport, IsolationStatus, RemediationEntry, RemediationError,
    RemediationReport, ReputationEntry,
};
use crate::domain::{
    ElementGuid, MachineGuid, MalopId, PylumId, RemediationId, RemediationKind,
    RemediationProgress, Verdict,
};
use serde_json::{Map, Value};

/// A remediation reply (POST, progress, abort).
pub fn remediation(body: &[u8]) -> Parsed<RemediationReport> {
    let map = object(body)?;
    check_status(&map)?;
    report(body, &map)
}

/// `remediate/status/{malopId}`: a list of reports (a single object is accepted too).
pub fn remediation_list(body: &[u8]) -> Parsed<Vec<RemediationReport>> {
    match json(body)? {
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::Object(m) => report(body, m),
                other => Err(malformed(
                    body,
                    format!("a remediation should be an object, got {}", kind(other)),
                )),
            })
            .collect(),
        Value::Object(m) => {
            check_status(&m)?;
            Ok(vec![report(body, &m)?])
        }
        other => Err(malformed(
            body,
            format!("expected a list of remediations, got {}", kind(&other)),
        )),
    }
}

fn report(body: &[u8], m: &Map<String, Value>) -> Parsed<RemediationReport> {
    let id = text(m.get("remediationId"))
        .ok_or_else(|| malformed(body, "missing field \"remediationId\""))?;
    let entries = match m.get("statusLog") {
        Some(Value::Array(list)) => list.iter().map(|e| entry(body, e)).collect::<Parsed<_>>()?,
        None | Some(Value::Null) => Vec::new(),
        Some(other) => {
            return Err(malformed(
                body,
                format!("\"statusLog\" should be an array, got {}", kind(other)),
            ));
        }
    };
    Ok(RemediationReport {
        malop_id: text(m.get("malopId"))
            .filter(|s| !s.is_empty())
            .map(MalopId::new),
        remediation_id: RemediationId::new(id),
        start: millis(body, m.get("start"), "start")?,
        end: millis(body, m.get("end"), "end")?,
        initiating_user: text(m.get("initiatingUser")).unwrap_or_default(),
        entries,
    })
}

fn entry(body: &[u8], v: &Value) -> Parsed<RemediationEntry> {
    let Value::Object(m) = v else {
        return Err(malformed(
            body,
            format!("a statusLog entry should be an object, got {}", kind(v)),
        ));
    };
    let status = text(m.get("status"))
        .ok_or_else(|| malformed(body, "a statusLog entry has no \"status\""))?;
    let error = match m.get("error") {
        Some(Value::Object(e)) => Some(RemediationError {
            message: text(e.get("message")).unwrap_or_default(),
            error_type: text(e.get("errorType")).unwrap_or_default(),
        }),
        _ => None,
    };
    Ok(RemediationEntry {
        machine_guid: MachineGuid::new(text(m.get("machineId")).unwrap_or_default()),
        target_guid: ElementGuid::new(text(m.get("targetId")).unwrap_or_default()),
        kind: text(m.get("actionType")).and_then(|a| RemediationKind::from_api(&a)),
        status: RemediationProgress::from_api(&status),
        timestamp: millis(body, m.get("timestamp"), "timestamp")?,
        error,
    })
}

/// `isolate` / `un-isolate`: an object keyed by pylumId → status string.
pub fn isolation(body: &[u8]) -> Parsed<IsolationReport> {
    let map = object(body)?;
    let mut report = IsolationReport::default();
    for (pylum, status) in &map {
        let Value::String(s) = status else {
            // A status envelope instead of the pylumId map means failure.
            check_status(&map)?;
            return Err(malformed(
                body,
                format!(
                    "status of {pylum:?} should be a string, got {}",
                    kind(status)
                ),
            ));
        };
        report
            .outcomes
            .insert(PylumId::new(pylum.clone()), IsolationStatus::from_api(s));
    }
    if report.outcomes.is_empty() {
        return Err(malformed(body, "no sensor in the isolation reply"));
    }
    Ok(report)
}

/// `classification/update`: `{"outcome": "success", ...}`.
pub fn reputation_update(body: &[u8]) -> Parsed<()> {
    let map = object(body)?;
    let outcome =
        text(map.get("outcome")).ok_or_else(|| malformed(body, "missing field \"outcome\""))?;
    if ["success", "succeeded"].contains(&outcome.to_ascii_lowercase().as_str()) {
        return Ok(());
    }
    Err(ResponseError::Failure {
        status: format!("outcome {outcome}"),
        message: text(map.get("data"))
            .or_else(|| text(map.get("message")))
            .unwrap_or_default(),
    })
}

/// `classification/download`: CSV with a header row naming `key`, `reputation`,
/// `prevent execution`, `comment`, `remove`.
pub fn reputation_csv(body: &[u8]) -> Parsed<Vec<ReputationEntry>> {
    let text = std::str::from_utf8(body).map_err(|e| malformed(body, format!("not UTF-8: {e}")))?;
    if text.trim_start().starts_with('<') {
        return Err(malformed(body, "HTML instead of CSV (no permission?)"));
    }
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header = lines
        .next()
        .ok_or_else(|| malformed(body, "empty CSV (no header row)"))?;
    let cols: Vec<String> = csv_fields(header)
        .iter()
        .map(|c| c.trim().to_ascii_lowercase())
        .collect();
    let find = |name: &str| cols.iter().position(|c| c == name);
    let key = find("key").ok_or_else(|| malformed(body, "CSV header has no \"key\" column"))?;
    let rep = find("reputation");
    let (prevent, comment, remove) = (find("prevent execution"), find("comment"), find("remove"));
    lines
        .map(|line| {
            let f = csv_fields(line);
            let get = |i: Option<usize>| i.and_then(|i| f.get(i)).map_or("", |s| s.trim());
            if f.len() < cols.len().min(key + 1) || get(Some(key)).is_empty() {
                return Err(malformed(body, format!("CSV row without a key: {line:?}")));
            }
            Ok(ReputationEntry {
                key: get(Some(key)).to_owned(),
                verdict: match get(rep).to_ascii_lowercase().as_str() {
                    "blacklist" => Some(Verdict::Blacklist),
                    "whitelist" => Some(Verdict::Whitelist),
                    _ => None,
                },
                prevent: get(prevent).eq_ignore_ascii_case("true"),
                comment: get(comment).to_owned(),
                remove: get(remove).eq_ignore_ascii_case("true"),
            })
        })
        .collect()
}

/// Splits one CSV line, honouring double quotes (`""` inside quotes is a quote).
pub(crate) fn csv_fields(line: &str) -> Vec<String> {
    let (mut out, mut cur, mut quoted) = (Vec::new(), String::new(), false);
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut cur)),
            (c, _) => cur.push(c),
        }
    }
    out.push(cur);
    out
}

/// `crimes/status`: `{"status": "SUCCESS", "message": ...}`.
pub fn status_reply(body: &[u8]) -> Parsed<()> {
    let map = object(body)?;
    if !map.contains_key("status") {
        return Err(malformed(body, "missing field \"status\""));
    }
    check_status(&map)
}

/// `crimes/comment`: the body is ignored unless it is a JSON failure envelope.
pub fn comment_reply(body: &[u8]) -> Parsed<()> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => check_status(&map),
        _ => Ok(()),
    }
}

/// `crimes/get-comments`: an array of comments; `message` is HTML-escaped on the wire.
pub fn comments(body: &[u8]) -> Parsed<Vec<Comment>> {
    let Value::Array(items) = json(body)? else {
        return Err(malformed(body, "expected a JSON array of comments"));
    };
    items
        .iter()
        .map(|c| {
            let Value::Object(m) = c else {
                return Err(malformed(body, "a comment should be an object"));
            };
            Ok(Comment {
                id: text(m.get("commentId")).unwrap_or_default(),
                username: text(m.get("username")).unwrap_or_default(),
                message: html_unescape(&text(m.get("message")).unwrap_or_default()),
                timestamp: millis(body, m.get("timestamp"), "timestamp")?,
            })
        })
        .collect()
}

fn html_unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}
