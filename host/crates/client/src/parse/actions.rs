//! Replies of state-changing calls: remediation, isolation, reputation, status, comments.

use super::{Parsed, ResponseError, check_status, json, kind, malformed, millis, object, text};
use crate::types::{
    Comment, IsolationReport, IsolationStatus, RemediationEntry, RemediationError,
    RemediationReport, ReputationEntry,
};
use riposte_domain::{
    ElementGuid, MachineGuid, MalopId, PylumId, RemediationId, RemediationKind,
    RemediationProgress, Verdict, bounds,
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

/// The fields of a status envelope (§6), which no pylumId is.
const ENVELOPE_FIELDS: [&str; 3] = ["status", "message", "errorMessage"];

/// `isolate` / `un-isolate`: an object keyed by pylumId → status string.
pub fn isolation(body: &[u8]) -> Parsed<IsolationReport> {
    let map = object(body)?;
    // A status envelope instead of the per-sensor map: its failure, with the server's
    // message, not "sensors" named `status` and `message`.
    if ENVELOPE_FIELDS.iter().any(|f| map.contains_key(*f)) {
        check_status(&map)?;
        return Err(malformed(
            body,
            "a status envelope where the status of each sensor belongs",
        ));
    }
    let mut report = IsolationReport::default();
    for (pylum, status) in &map {
        let Value::String(s) = status else {
            return Err(malformed(
                body,
                format!(
                    "status of {:?} should be a string, got {}",
                    bounds::excerpt(pylum, bounds::EXCERPT_BYTES),
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
/// `prevent execution`, `comment`, `remove` (in any order, any case; other columns are
/// ignored). Quoted fields may hold commas, doubled quotes and line breaks; blank rows are
/// skipped.
pub fn reputation_csv(body: &[u8]) -> Parsed<Vec<ReputationEntry>> {
    let text = std::str::from_utf8(body).map_err(|e| malformed(body, format!("not UTF-8: {e}")))?;
    if text.trim_start().starts_with('<') {
        return Err(malformed(body, "HTML instead of CSV (no permission?)"));
    }
    let mut rows = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(body)
        .into_records()
        .filter(|row| !row.as_ref().is_ok_and(is_blank));
    let header = rows
        .next()
        .ok_or_else(|| malformed(body, "empty CSV (no header row)"))?
        .map_err(|e| csv_error(body, &e))?;
    let columns = CsvColumns::from_header(body, &header)?;
    rows.map(|row| columns.entry(body, &row.map_err(|e| csv_error(body, &e))?))
        .collect()
}

/// Where each known column of a reputation CSV is.
struct CsvColumns {
    key: usize,
    reputation: Option<usize>,
    prevent: Option<usize>,
    comment: Option<usize>,
    remove: Option<usize>,
}

impl CsvColumns {
    /// The columns by name; a header that does not name a `key` column is read by position,
    /// as the API notes' client reads it (§4.2: key, reputation, prevent execution, comment,
    /// remove, the first column the key): the notes never saw the header's exact words.
    fn from_header(body: &[u8], header: &csv::StringRecord) -> Parsed<Self> {
        let find = |name: &str| header.iter().position(|c| c.eq_ignore_ascii_case(name));
        if let Some(key) = find("key") {
            return Ok(Self {
                key,
                reputation: find("reputation"),
                prevent: find("prevent execution"),
                comment: find("comment"),
                remove: find("remove"),
            });
        }
        let at = |i: usize| (i < header.len()).then_some(i);
        if header.len() < 2 {
            return Err(malformed(
                body,
                "CSV header names no \"key\" column and has fewer than the two columns a key and a reputation need",
            ));
        }
        Ok(Self {
            key: 0,
            reputation: at(1),
            prevent: at(2),
            comment: at(3),
            remove: at(4),
        })
    }

    fn entry(&self, body: &[u8], row: &csv::StringRecord) -> Parsed<ReputationEntry> {
        let get = |i: Option<usize>| i.and_then(|i| row.get(i)).unwrap_or("");
        let key = get(Some(self.key));
        if key.is_empty() {
            let line = row.position().map_or(0, csv::Position::line);
            let fields: Vec<&str> = row.iter().collect();
            return Err(malformed(
                body,
                format!("CSV row without a key on line {line}: {fields:?}"),
            ));
        }
        Ok(ReputationEntry {
            key: key.to_owned(),
            verdict: match get(self.reputation).to_ascii_lowercase().as_str() {
                "blacklist" => Some(Verdict::Blacklist),
                "whitelist" => Some(Verdict::Whitelist),
                _ => None,
            },
            prevent: get(self.prevent).eq_ignore_ascii_case("true"),
            comment: get(self.comment).to_owned(),
            remove: get(self.remove).eq_ignore_ascii_case("true"),
        })
    }
}

fn is_blank(row: &csv::StringRecord) -> bool {
    row.iter().all(str::is_empty)
}

fn csv_error(body: &[u8], e: &csv::Error) -> ResponseError {
    malformed(body, format!("unreadable CSV: {e}"))
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

/// Comments come back HTML-escaped (named and numeric character references).
fn html_unescape(s: &str) -> String {
    html_escape::decode_html_entities(s).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_are_unescaped_once_with_named_and_numeric_references() {
        assert_eq!(
            html_unescape("a &lt;b&gt; &amp;amp; &#39;c&#x27; &quot;d&quot; &eacute;"),
            "a <b> &amp; 'c' \"d\" é"
        );
    }

    #[test]
    fn reputation_csv_reads_quotes_blank_rows_and_any_column_order() {
        let body = b"Comment , KEY,reputation,Prevent Execution,remove,extra\r\n\
            \"a, \"\"quoted\"\"\nsecond line\", abc ,Blacklist,TRUE,false,x\r\n\
            \r\n   \n\
            ,def,whitelist,false,true\n\
            only-comment,ghi\n";
        let rows = reputation_csv(body).unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].key, "abc");
        assert_eq!(rows[0].comment, "a, \"quoted\"\nsecond line");
        assert_eq!(rows[0].verdict, Some(Verdict::Blacklist));
        assert!(rows[0].prevent && !rows[0].remove);
        assert_eq!(
            (rows[1].key.as_str(), rows[1].verdict),
            ("def", Some(Verdict::Whitelist))
        );
        assert!(!rows[1].prevent && rows[1].remove);
        assert_eq!((rows[2].key.as_str(), rows[2].verdict), ("ghi", None));
    }

    #[test]
    fn a_header_without_a_key_column_is_read_by_position() {
        let body = b"Key Value,Reputation,Prevent,Comment,Removed\nabc,blacklist,true,bad,false\n";
        let rows = reputation_csv(body).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].key, "abc");
        assert_eq!(rows[0].verdict, Some(Verdict::Blacklist));
        assert!(rows[0].prevent && !rows[0].remove);
        assert_eq!(rows[0].comment, "bad");
    }

    #[test]
    fn reputation_csv_says_what_is_wrong() {
        let reason = |body: &[u8]| match reputation_csv(body) {
            Err(ResponseError::Malformed { reason, .. }) => reason,
            other => panic!("expected a malformed reply, got {other:?}"),
        };
        assert!(reason(b"").contains("no header row"));
        assert!(reason(b"\n \n").contains("no header row"));
        assert!(reason(b"<html>login</html>").contains("HTML instead of CSV"));
        assert!(reason(b"hash\nabc\n").contains("no \"key\" column"));
        let missing = reason(b"key,reputation\nabc,blacklist\n,whitelist\n");
        assert!(missing.contains("without a key on line 3"), "{missing}");
        assert!(reason(b"key\n\xff\n").contains("not UTF-8"));
    }
}
