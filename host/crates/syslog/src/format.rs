//! Writing syslog: CEF Malop events as a Cybereason server writes them, RFC 5424 and RFC 3164
//! headers, and audit records as RFC 5424 messages with a JSON or CEF payload.
//!
//! Every message is one line: header fields are reduced to printable ASCII, CEF values and
//! JSON strings escape their line breaks, so a message can be sent with either framing.

use crate::cef::{escape_header, escape_value, is_valid_key};
use crate::malop::{MalopEvent, MalopId};
use crate::sender::OutgoingMessage;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A syslog facility (RFC 5424 table 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum Facility {
    Kernel = 0,
    User,
    Mail,
    Daemon,
    Auth,
    Syslog,
    Printer,
    News,
    Uucp,
    Cron,
    AuthPriv,
    Ftp,
    Ntp,
    Audit,
    Alert,
    Clock,
    Local0,
    Local1,
    Local2,
    Local3,
    Local4,
    Local5,
    Local6,
    Local7,
}

/// A syslog severity (RFC 5424 table 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum Severity {
    Emergency = 0,
    Alert,
    Critical,
    Error,
    Warning,
    Notice,
    Informational,
    Debug,
}

/// A syslog priority: facility and severity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Priority {
    /// The facility.
    pub facility: Facility,
    /// The severity.
    pub severity: Severity,
}

impl Priority {
    /// A priority.
    pub const fn new(facility: Facility, severity: Severity) -> Self {
        Self { facility, severity }
    }

    /// The `<PRI>` value: facility × 8 + severity.
    pub fn value(self) -> u8 {
        self.facility as u8 * 8 + self.severity as u8
    }
}

/// Who a message says it comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// HOSTNAME (printable ASCII, at most 255 characters; others are replaced).
    pub hostname: String,
    /// APP-NAME, or the RFC 3164 tag (at most 48 characters, 32 for a tag).
    pub app_name: String,
}

impl Origin {
    /// An origin.
    pub fn new(hostname: impl Into<String>, app_name: impl Into<String>) -> Self {
        Self {
            hostname: hostname.into(),
            app_name: app_name.into(),
        }
    }
}

/// Why a message could not be written.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// An extension key that CEF cannot carry (letters, digits, `_` and `.` only).
    #[error("`{0}` is not a CEF extension key (letters, digits, `_`, `.`)")]
    InvalidKey(String),
    /// A key the formatter writes itself.
    #[error("`{0}` is written by the formatter itself")]
    ReservedKey(String),
    /// Two record fields map to the same CEF key.
    #[error("record fields collide on CEF key `{0}`")]
    FieldCollision(String),
}

/// A host name as an exported record names it (the RFC 5424 HOSTNAME rule: printable ASCII,
/// others replaced by `_`, at most 255 characters): how to compare a name with an export's.
pub fn exported_host_name(name: &str) -> String {
    token(name, 255)
}

/// RFC 5424 header token: printable ASCII, bounded, `-` when empty.
fn token(text: &str, max: usize) -> String {
    let out: String = text
        .chars()
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .take(max)
        .collect();
    if out.is_empty() { "-".to_owned() } else { out }
}

fn utc(time: SystemTime) -> DateTime<Utc> {
    DateTime::<Utc>::from(time)
}

fn epoch_ms(time: SystemTime) -> u128 {
    time.duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis()
}

/// An RFC 5424 message: `<PRI>1 TIMESTAMP HOSTNAME APP-NAME - MSGID - MSG` (time in UTC with
/// milliseconds, no structured data).
pub fn rfc5424(
    priority: Priority,
    time: SystemTime,
    origin: &Origin,
    msg_id: &str,
    payload: &str,
) -> String {
    format!(
        "<{}>1 {} {} {} - {} - {}",
        priority.value(),
        utc(time).to_rfc3339_opts(SecondsFormat::Millis, true),
        token(&origin.hostname, 255),
        token(&origin.app_name, 48),
        token(msg_id, 32),
        payload
    )
}

/// An RFC 3164 message: `<PRI>Mmm dd hh:mm:ss HOSTNAME TAG MSG` (time in UTC), as Cybereason
/// writes its user-action events (`... admin-host auditSyslogLogger CEF:0|...`).
pub fn rfc3164(priority: Priority, time: SystemTime, origin: &Origin, payload: &str) -> String {
    let tag: String = origin
        .app_name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .take(32)
        .collect();
    format!(
        "<{}>{} {} {} {}",
        priority.value(),
        utc(time).format("%b %e %H:%M:%S"),
        token(&origin.hostname, 255),
        if tag.is_empty() { "-" } else { &tag },
        payload
    )
}

/// The two CEF header styles of Cybereason's Malop events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CefStyle {
    /// The vendor's examples: `CEF:1|Cybereason|Cybereason||Malop|Malop Created|10|cs1Label=malopId
    /// cs1=... rt=Dec 19 2017, 15:58:14 UTC`, sent without a syslog header.
    Vendor,
    /// The CEF forwarder's samples: `CEF:0|Cybereason|Cybereason|1.0|1|Malop Created|5|cs1=...
    /// rt=<epoch ms> cs1Label=MalopId`; the class field holds a number.
    Forwarder,
}

/// A Malop event as a Cybereason server sends it (for the simulator).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CefMalopEvent {
    /// The Malop (`cs1`).
    pub malop_id: MalopId,
    /// The event (the Name field).
    pub event: MalopEvent,
    /// The header style.
    pub style: CefStyle,
    /// When the event happened (`rt`).
    pub time: SystemTime,
    /// More extension pairs (`cs2Label`/`cs2`, `cn1`, ...), in order.
    pub fields: Vec<(String, String)>,
}

const RESERVED_MALOP_KEYS: [&str; 3] = ["cs1", "cs1Label", "rt"];

impl CefMalopEvent {
    /// An event with no extra fields.
    pub fn new(malop_id: MalopId, event: MalopEvent, style: CefStyle, time: SystemTime) -> Self {
        Self {
            malop_id,
            event,
            style,
            time,
            fields: Vec::new(),
        }
    }

    /// Adds an extension pair (`cs1`, `cs1Label` and `rt` are written by the formatter).
    pub fn with_field(mut self, key: &str, value: impl Into<String>) -> Result<Self, FormatError> {
        if !is_valid_key(key) {
            return Err(FormatError::InvalidKey(key.to_owned()));
        }
        if RESERVED_MALOP_KEYS.contains(&key) || self.fields.iter().any(|(k, _)| k == key) {
            return Err(FormatError::ReservedKey(key.to_owned()));
        }
        self.fields.push((key.to_owned(), value.into()));
        Ok(self)
    }

    /// The forwarder's signature id: 1 (Created), 3 (machine events) and 5 (Connection
    /// Added) as in its samples; 4 (Updated) and 0 (other) are this crate's choice.
    fn signature_id(&self) -> u8 {
        match self.event {
            MalopEvent::Created => 1,
            MalopEvent::MachineInformation | MalopEvent::UpdatedMachineInformation => 3,
            MalopEvent::Updated => 4,
            MalopEvent::ConnectionAdded => 5,
            MalopEvent::Other => 0,
        }
    }

    /// The CEF record, without a syslog header.
    pub fn to_cef(&self) -> String {
        let extra: String = self
            .fields
            .iter()
            .map(|(k, v)| format!("{k}={} ", escape_value(v)))
            .collect();
        let id = &self.malop_id;
        let name = escape_header(self.event.name());
        match self.style {
            CefStyle::Vendor => format!(
                "CEF:1|Cybereason|Cybereason||Malop|{name}|10|cs1Label=malopId cs1={id} {extra}rt={}",
                utc(self.time).format("%b %d %Y, %H:%M:%S UTC")
            ),
            CefStyle::Forwarder => format!(
                "CEF:0|Cybereason|Cybereason|1.0|{}|{name}|5|cs1={id} {extra}rt={} cs1Label=MalopId",
                self.signature_id(),
                epoch_ms(self.time)
            ),
        }
    }
}

/// The payload of an exported audit record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordPayload {
    /// One JSON object: `{"seq", "chain_hash", "time", "kind", "fields"}`.
    Json,
    /// A CEF record: `externalId` = seq, `cs1` = chain hash, each field as `ad.<name>`.
    Cef,
}

/// One audit record as the audit layer hands it to the exporter.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditRecord {
    /// The record's sequence number in the trail (duplicates after a resend share it).
    pub seq: u64,
    /// The record's chain hash (hex), the SIEM's anchor of the chain.
    pub chain_hash: String,
    /// When the record was written.
    pub time: SystemTime,
    /// The kind of record (`action.executed`, `gate.denied`, ...).
    pub kind: String,
    /// The record's fields, already bounded by the audit layer.
    pub fields: serde_json::Map<String, serde_json::Value>,
}

/// The RFC 5424 MSGID of exported audit records.
pub const AUDIT_MSG_ID: &str = "riposte-audit";

#[derive(Serialize, Deserialize)]
struct JsonRecord {
    seq: u64,
    chain_hash: String,
    /// The host whose trail holds the record (absent in exports before it was written).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    host: Option<String>,
    time: DateTime<Utc>,
    kind: String,
    fields: serde_json::Map<String, serde_json::Value>,
}

/// Why an exported record could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum RecordParseError {
    /// The message is not an RFC 5424 message with the audit MSGID.
    #[error("not an RFC 5424 message with MSGID {AUDIT_MSG_ID}")]
    NotAuditMessage,
    /// The payload is not a JSON audit record.
    #[error("the payload is not a JSON audit record: {0}")]
    Json(#[from] serde_json::Error),
    /// The payload is a CEF record without a sequence number or chain hash.
    #[error("the payload is not a CEF audit record (externalId and cs1 chainHash): {0}")]
    Cef(String),
}

/// What an exported audit record anchors: its sequence number and chain hash (hex), and the
/// host whose trail it belongs to (several hosts export to one SIEM, each numbering its own
/// trail from 1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportedAnchor {
    /// The record's sequence number.
    pub seq: u64,
    /// Its chain hash, as exported (hex).
    pub chain_hash: String,
    /// The exporting host: from the payload (JSON `host`, CEF `dvchost`), else from the
    /// RFC 5424 header when the message was stored whole; `None` when neither says.
    pub host: Option<String>,
}

/// Reads the sequence number and chain hash of one exported audit record as a collector may
/// store it: the RFC 5424 message (optionally still prefixed with its RFC 6587 octet count),
/// its payload alone (JSON or CEF), or a line of a collector's own file format with the
/// payload at its end (rsyslog's `May 16 03:10:41 host riposte - audit - {"seq":...}`).
pub fn exported_anchor(stored: &str) -> Result<ExportedAnchor, RecordParseError> {
    let first = anchor_of(stored);
    if first.is_ok() {
        return first;
    }
    // A collector's own prefix in front of the payload: from the first JSON object or CEF
    // record of the line, whichever comes first and reads.
    let text = stored.trim();
    let mut starts: Vec<usize> = [text.find("{\""), text.find("CEF:")]
        .into_iter()
        .flatten()
        .filter(|&at| at > 0)
        .collect();
    starts.sort_unstable();
    starts
        .into_iter()
        .map(|at| anchor_of(&text[at..]))
        .find(Result::is_ok)
        .unwrap_or(first)
}

fn anchor_of(stored: &str) -> Result<ExportedAnchor, RecordParseError> {
    let mut text = stored.trim();
    // An octet count left in front of the message: `123 <PRI>1 ...`.
    if let Some((count, rest)) = text.split_once(' ')
        && !count.is_empty()
        && count.bytes().all(|b| b.is_ascii_digit())
        && rest.starts_with('<')
    {
        text = rest;
    }
    let (payload, header_host) = if text.starts_with('<') {
        let parsed = syslog_loose::parse_message(text, syslog_loose::Variant::RFC5424);
        if !matches!(parsed.protocol, syslog_loose::Protocol::RFC5424(_))
            || parsed.msgid != Some(AUDIT_MSG_ID)
        {
            return Err(RecordParseError::NotAuditMessage);
        }
        (parsed.msg, parsed.hostname)
    } else {
        (text, None)
    };
    let host = |named: Option<&str>| named.or(header_host).map(str::to_owned);
    if payload.starts_with("CEF:") {
        let cef = crate::cef::parse(payload).map_err(|e| RecordParseError::Cef(e.to_string()))?;
        let seq = cef
            .get("externalId")
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| RecordParseError::Cef("no numeric externalId".into()))?;
        if cef.get("cs1Label") != Some("chainHash") {
            return Err(RecordParseError::Cef("cs1Label is not chainHash".into()));
        }
        let chain_hash = cef
            .get("cs1")
            .ok_or_else(|| RecordParseError::Cef("no cs1".into()))?
            .to_owned();
        return Ok(ExportedAnchor {
            seq,
            chain_hash,
            host: host(cef.get("dvchost")),
        });
    }
    let record: JsonRecord = serde_json::from_str(payload)?;
    Ok(ExportedAnchor {
        seq: record.seq,
        chain_hash: record.chain_hash,
        host: host(record.host.as_deref()),
    })
}

impl AuditRecord {
    /// The JSON payload (one line), naming the exporting `host` when given.
    pub fn to_json(&self, host: Option<&str>) -> String {
        let record = JsonRecord {
            seq: self.seq,
            chain_hash: self.chain_hash.clone(),
            host: host.map(str::to_owned),
            time: utc(self.time),
            kind: self.kind.clone(),
            fields: self.fields.clone(),
        };
        serde_json::to_string(&record).expect("a JSON map always serialises")
    }

    /// The CEF payload, naming the exporting `host` (`dvchost`) when given. Field names
    /// become `ad.<name>` with characters other than letters, digits and `_` replaced by `_`;
    /// non-string values are written as JSON.
    pub fn to_cef(&self, host: Option<&str>) -> Result<String, FormatError> {
        let mut seen = BTreeSet::new();
        let mut ext = format!(
            "externalId={} rt={} cs1Label=chainHash cs1={}",
            self.seq,
            epoch_ms(self.time),
            escape_value(&self.chain_hash)
        );
        if let Some(host) = host {
            ext.push_str(&format!(" dvchost={}", escape_value(host)));
        }
        for (name, value) in &self.fields {
            let key: String = name
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '_' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            if !seen.insert(key.clone()) {
                return Err(FormatError::FieldCollision(format!("ad.{key}")));
            }
            let text = match value {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            ext.push_str(&format!(" ad.{key}={}", escape_value(&text)));
        }
        let kind = escape_header(&self.kind);
        Ok(format!(
            "CEF:0|riposte|riposte|{}|{kind}|{kind}|3|{ext}",
            env!("CARGO_PKG_VERSION")
        ))
    }

    /// The whole RFC 5424 message, tagged with its sequence number for the sender's
    /// delivery reports.
    pub fn to_syslog(
        &self,
        payload: RecordPayload,
        priority: Priority,
        origin: &Origin,
    ) -> Result<OutgoingMessage, FormatError> {
        // The payload names the host too: a collector may store the payload alone.
        let host = exported_host_name(&origin.hostname);
        let body = match payload {
            RecordPayload::Json => self.to_json(Some(&host)),
            RecordPayload::Cef => self.to_cef(Some(&host))?,
        };
        let text = rfc5424(priority, self.time, origin, AUDIT_MSG_ID, &body);
        Ok(OutgoingMessage::new(text).with_seq(self.seq))
    }

    /// Reads back a record exported with a JSON payload (one RFC 5424 message).
    pub fn from_syslog_json(message: &str) -> Result<Self, RecordParseError> {
        let parsed =
            syslog_loose::parse_message(message.trim_end(), syslog_loose::Variant::RFC5424);
        if !matches!(parsed.protocol, syslog_loose::Protocol::RFC5424(_))
            || parsed.msgid != Some(AUDIT_MSG_ID)
        {
            return Err(RecordParseError::NotAuditMessage);
        }
        let record: JsonRecord = serde_json::from_str(parsed.msg)?;
        Ok(Self {
            seq: record.seq,
            chain_hash: record.chain_hash,
            time: record.time.into(),
            kind: record.kind,
            fields: record.fields,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{HeaderKind, Parsed, parse_message};

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(secs * 1000 + 123)
    }

    #[test]
    fn priority_values() {
        assert_eq!(
            Priority::new(Facility::Local0, Severity::Informational).value(),
            134
        );
        assert_eq!(
            Priority::new(Facility::Kernel, Severity::Emergency).value(),
            0
        );
        assert_eq!(
            Priority::new(Facility::Local7, Severity::Debug).value(),
            191
        );
    }

    #[test]
    fn headers_are_sanitised() {
        let origin = Origin::new("host name\nx", "");
        let msg = rfc5424(
            Priority::new(Facility::User, Severity::Notice),
            at(0),
            &origin,
            "",
            "hi",
        );
        assert_eq!(msg, "<13>1 1970-01-01T00:00:00.123Z host_name_x - - - - hi");
        let msg = rfc3164(
            Priority::new(Facility::User, Severity::Notice),
            at(86_400 * 40),
            &Origin::new("h", "a b[1]"),
            "x",
        );
        assert_eq!(msg, "<13>Feb 10 00:00:00 h ab1 x");
    }

    #[test]
    fn malop_events_in_both_styles_parse_back() {
        let id = MalopId::parse("11.-7780537507363356527").unwrap();
        for style in [CefStyle::Vendor, CefStyle::Forwarder] {
            for event in MalopEvent::ALL {
                let cef = CefMalopEvent::new(id.clone(), event, style, at(1_513_698_494))
                    .with_field("cs4Label", "malopSuspect")
                    .unwrap()
                    .with_field("cs4", "mimikatz.exe = bad | very\nbad")
                    .unwrap()
                    .to_cef();
                assert!(!cef.contains('\n'));
                match parse_message(cef.as_bytes()) {
                    Ok(Parsed::Malop {
                        malop_id,
                        event: got,
                        header,
                    }) => {
                        assert_eq!(malop_id, id);
                        assert_eq!(got, event);
                        assert_eq!(header, HeaderKind::Bare);
                    }
                    other => panic!("{cef}: {other:?}"),
                }
                let record = crate::cef::parse(&cef).unwrap();
                assert_eq!(record.get("cs4"), Some("mimikatz.exe = bad | very\nbad"));
            }
        }
        let vendor =
            CefMalopEvent::new(id, MalopEvent::Created, CefStyle::Vendor, at(1_513_698_494))
                .to_cef();
        assert_eq!(
            vendor,
            "CEF:1|Cybereason|Cybereason||Malop|Malop Created|10|cs1Label=malopId cs1=11.-7780537507363356527 rt=Dec 19 2017, 15:48:14 UTC"
        );
    }

    #[test]
    fn reserved_and_invalid_keys_are_refused() {
        let id = MalopId::parse("11.1").unwrap();
        let e = CefMalopEvent::new(id, MalopEvent::Created, CefStyle::Vendor, at(0));
        assert_eq!(
            e.clone().with_field("cs1", "x"),
            Err(FormatError::ReservedKey("cs1".into()))
        );
        assert_eq!(
            e.with_field("a b", "x"),
            Err(FormatError::InvalidKey("a b".into()))
        );
    }

    fn record() -> AuditRecord {
        let mut fields = serde_json::Map::new();
        fields.insert("plugin".into(), "ransomware-isolate".into());
        fields.insert("targets".into(), serde_json::json!(["m1", "m2"]));
        fields.insert("note".into(), "line1\nline2 = x".into());
        AuditRecord {
            seq: 42,
            chain_hash: "ab".repeat(32),
            time: at(1_700_000_000),
            kind: "action.executed".into(),
            fields,
        }
    }

    #[test]
    fn audit_records_in_json_round_trip() {
        let origin = Origin::new("riposte-host", "riposte");
        let priority = Priority::new(Facility::Audit, Severity::Notice);
        let msg = record()
            .to_syslog(RecordPayload::Json, priority, &origin)
            .unwrap();
        assert_eq!(msg.seq, Some(42));
        let text = std::str::from_utf8(&msg.payload).unwrap();
        assert!(!text.contains('\n'));
        assert!(text.starts_with(
            "<109>1 2023-11-14T22:13:20.123Z riposte-host riposte - riposte-audit - {"
        ));
        assert_eq!(AuditRecord::from_syslog_json(text).unwrap(), record());
    }

    #[test]
    fn exported_anchors_read_back_from_every_stored_form() {
        let origin = Origin::new("h", "riposte");
        let priority = Priority::new(Facility::Audit, Severity::Notice);
        let want = ExportedAnchor {
            seq: 42,
            chain_hash: "ab".repeat(32),
            host: Some("h".into()),
        };
        for payload in [RecordPayload::Json, RecordPayload::Cef] {
            let msg = record().to_syslog(payload, priority, &origin).unwrap();
            let text = std::str::from_utf8(&msg.payload).unwrap().to_owned();
            let body = text.split_once(" riposte-audit - ").unwrap().1.to_owned();
            let counted = format!("{} {text}", text.len());
            // As rsyslog's file formats store it: its own header, then the payload.
            let traditional = format!("Nov 14 22:13:20 h riposte-audit {body}");
            let iso = format!("2023-11-14T22:13:20.123+00:00 h riposte[1]: {body}");
            for stored in [&text, &counted, &body, &traditional, &iso] {
                assert_eq!(exported_anchor(stored).unwrap(), want, "{stored}");
            }
        }
        // Exported before payloads named the host: the header names it, when it was kept.
        let older = record().to_json(None);
        let whole = format!("<109>1 2023-11-14T22:13:20.123Z h2 riposte - riposte-audit - {older}");
        let from_header = exported_anchor(&whole).unwrap();
        assert_eq!(from_header.host.as_deref(), Some("h2"));
        assert_eq!(exported_anchor(&older).unwrap().host, None);
        assert!(exported_anchor("<13>1 - h app - other - {}").is_err());
        assert!(exported_anchor("CEF:0|a|b|1|x|x|3|externalId=1").is_err());
        assert!(exported_anchor("garbage").is_err());
    }

    #[test]
    fn audit_records_in_cef() {
        let cef = record().to_cef(Some("h1")).unwrap();
        let parsed = crate::cef::parse(&cef).unwrap();
        assert_eq!(parsed.name, "action.executed");
        assert_eq!(parsed.get("externalId"), Some("42"));
        assert_eq!(parsed.get("dvchost"), Some("h1"));
        assert_eq!(parsed.get("cs1"), Some("ab".repeat(32).as_str()));
        assert_eq!(parsed.get("ad.targets"), Some(r#"["m1","m2"]"#));
        assert_eq!(parsed.get("ad.note"), Some("line1\nline2 = x"));
        let mut clash = record();
        clash.fields.insert("a-b".into(), 1.into());
        clash.fields.insert("a_b".into(), 2.into());
        assert_eq!(
            clash.to_cef(None),
            Err(FormatError::FieldCollision("ad.a_b".into()))
        );
    }
}
