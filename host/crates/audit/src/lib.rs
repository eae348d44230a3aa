//! The tamper-evident audit trail (guarantee G7).
//!
//! # Format
//!
//! One JSON object per line (UTF-8, `\n`-terminated), appended only. Fields, always in this
//! order: `seq` (1, 2, 3, ...), `time_ms` (Unix ms), `plugin`, `plugin_digest` (sha256 of the
//! component), `invocation`, `malop`, `input_digest` (sha256 of the input the plugin was
//! given), `call` (an operation name such as `isolate`, or a host event such as
//! `invoke:on-malop`), `arguments` (JSON), `decision` (`{kind, category, detail}` or null),
//! `result` (JSON), `duration_us`, `link`, `prev`, `hash`. Records written before `link`
//! existed have none: they read as `"link":"sha256"`.
//!
//! # The chain
//!
//! `hash = sha256(B)` (`"link":"sha256"`) or `hash = HMAC-SHA256(key, B)`
//! (`"link":"hmac-sha256"`, a *keyed* chain, see below), where `B` is the compact `serde_json`
//! encoding of the record *without* its `hash` field (the fields above, in that order, ending
//! with `prev`). `prev` is the
//! `hash` of the previous record; the first record's `prev` is [`GENESIS`] (64 zeros). On disk
//! a line is `B` with `,"hash":"<64 hex>"` inserted before the final `}`, so a verifier
//! recomputes each hash from the exact bytes on disk (strip the hash field, hash the rest):
//! no re-encoding is involved, and any change of any byte shows.
//!
//! [`verify`] names the first bad record (line and seq) after an edit (its hash no longer
//! matches; or, if the editor recomputed it, the next record's `prev` does not), a deletion
//! in the middle (a gap in `seq`), a reordering (`seq` out of order), or a truncation (an
//! incomplete last line).
//!
//! # Limits, and the head file
//!
//! A plain chain cannot show that *trailing* records were deleted cleanly (at a line
//! boundary): what is left is a valid, shorter chain. Two defences:
//! - the writer keeps a sidecar head file (`<log>.head`: the last seq and hash), rewritten
//!   after every append and checked by [`verify`] and [`AuditLog::open`]; it catches
//!   accidental truncation and careless deletion, but whoever can edit the log can edit it too;
//! - the verify report prints the final seq and hash: keep it elsewhere (a ticket, a SIEM, a
//!   second machine) and pass it back as an [`Anchor`] to prove later that the log still
//!   contains that record unchanged.
//!
//! # The keyed chain
//!
//! An unkeyed chain (`sha256`) can be rewritten consistently by anyone with write access, from
//! the first changed record on; only anchors held elsewhere detect that. With a [`ChainKey`]
//! (`[service.audit] key_file`, a file of random bytes kept outside the audit directory), each
//! record's hash is an HMAC-SHA256 under the key and says so (`"link":"hmac-sha256"`): a
//! rewrite by someone without the key cannot produce valid links, and [`verify_with`] given
//! the key names the first record whose link does not authenticate. The record says how it
//! is linked, so a trail may start unkeyed and become keyed (a key configured later); the
//! reverse, an unkeyed record after a keyed one, is a tamper ([`Tamper::Downgrade`]), and a
//! verify given the key refuses a trail with no keyed record at all (the whole file rewritten
//! with plain sha256). Without the key, a keyed chain can only be checked for structure (seq
//! and prev links); the report says so ([`Keying`]).
//!
//! # Never a secret
//!
//! `arguments` and `result` are [`Redacted`] values: built from typed values, with every
//! object field whose name looks like a secret (password, token, cookie, JSESSIONID, ...)
//! and every string that looks like a credential (`JSESSIONID=...`, `Authorization: ...`) replaced by
//! `"[redacted]"` before anything is written.

mod cli;
mod export;
mod key;
mod log;
mod settings;
mod verify;

pub use cli::{
    AuditAdoptKeyArgs, AuditKeygenArgs, AuditShowArgs, AuditVerifyArgs, render_record,
    render_time_ms, run_adopt_key, run_keygen, run_show, run_verify,
};
pub use export::{
    ExportAgainstReport, ExportHandle, ExportStats, ExportedAnchor, Exporter, check_against_export,
    cursor_path, parse_exported, read_cursor,
};
pub use key::{ChainKey, MAX_KEY_BYTES, MIN_KEY_BYTES};
pub use log::{AuditLog, AuditSink, MemoryLog, head_path};
pub use settings::{AuditConfig, DEFAULT_AUDIT_PATH, ExportConfig, ExportFormat, ExportTransport};
pub use verify::{
    Anchor, Filter, HeadFileCheck, Keying, Show, Tamper, VerifyOptions, VerifyReport, show, verify,
    verify_reader, verify_with,
};

use riposte_domain::{ErrorCategory, MalopId, Operation, PluginName, Sha256Digest, TimestampMs};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;
use std::path::PathBuf;

/// The longest trail line read back: more than any record the writer makes, so a longer one
/// is damage (or a disk-filling attack) and is not read whole.
pub(crate) const MAX_LINE_BYTES: u64 = 16 << 20;

/// Reads one line (its `\n` kept) into `buf`, cleared first, never more than
/// [`MAX_LINE_BYTES`]: `Some(n)` for the `n` bytes read (0 at the end of the file, no `\n`
/// for a last line being written), `None` for a line longer than the limit.
pub(crate) fn read_line(
    reader: &mut impl std::io::BufRead,
    buf: &mut Vec<u8>,
) -> std::io::Result<Option<usize>> {
    use std::io::{BufRead, Read};
    buf.clear();
    let n = reader
        .by_ref()
        .take(MAX_LINE_BYTES)
        .read_until(b'\n', buf)?;
    let too_long = n as u64 == MAX_LINE_BYTES && buf.last() != Some(&b'\n');
    Ok((!too_long).then_some(n))
}

/// The `prev` of the first record: 64 zeros.
pub const GENESIS: Sha256Digest = Sha256Digest([0; 32]);

/// Everything that can go wrong writing, reading or verifying the audit trail.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file operation failed.
    #[error("audit log {}: {action}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done.
        action: &'static str,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The log's last record is damaged: appending would extend a broken chain.
    #[error(
        "audit log {} line {line}: {detail}; refusing to append. Run `riposte audit verify` on it and move it aside",
        path.display()
    )]
    CorruptTail {
        /// The file.
        path: PathBuf,
        /// 1-based line of the damaged record.
        line: u64,
        /// What is wrong.
        detail: String,
    },
    /// An earlier write failed half-way; the writer refuses to go on.
    #[error(
        "audit log {}: an earlier write failed, the file's tail is in an unknown state; restart to re-check it",
        path.display()
    )]
    Poisoned {
        /// The file.
        path: PathBuf,
    },
    /// A value could not be encoded.
    #[error("cannot encode an audit record: {0}")]
    Encode(String),
    /// The audit key file is missing, unreadable, open to others, or not a key.
    #[error("{detail}")]
    Key {
        /// The key file.
        path: PathBuf,
        /// What is wrong, naming the file (never the key).
        detail: String,
    },
    /// The trail is keyed but no key was configured: appending unkeyed records would
    /// downgrade the chain.
    #[error(
        "audit log {}: the trail is keyed (hmac-sha256) but no key is configured: set [service.audit] key_file to its key",
        path.display()
    )]
    KeyRequired {
        /// The file.
        path: PathBuf,
    },
    /// A key is configured for a trail whose records are unkeyed: a key is adopted for a
    /// trail once, by the operator, not by a restart (a keyed trail rewritten without the
    /// key as an unkeyed one would otherwise be taken up as if nothing had happened).
    #[error(
        "audit log {}: its {records} records are unkeyed (sha256) but a key is configured. If the key is new for this trail, adopt it once: `riposte audit adopt-key {} --key KEYFILE`. If the trail was keyed before, it was rewritten without the key: keep it aside as evidence and check it with `riposte audit verify --key`",
        path.display(),
        path.display()
    )]
    KeyNotAdopted {
        /// The file.
        path: PathBuf,
        /// Its unkeyed records.
        records: u64,
    },
    /// `adopt-key` on a trail that is keyed already.
    #[error("audit log {}: the trail is keyed already; there is nothing to adopt", path.display())]
    AlreadyKeyed {
        /// The file.
        path: PathBuf,
    },
    /// The exporter's cursor file could not be read or written.
    #[error("audit export cursor {}: {detail}", path.display())]
    Cursor {
        /// The cursor file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The SIEM export's sender could not start (its settings or TLS material).
    #[error("SIEM export to {collector}: {detail}")]
    Export {
        /// The collector's address.
        collector: String,
        /// What is wrong.
        detail: String,
    },
    /// `verify --against` was given an export holding several hosts' records, and no host.
    #[error("{}: the export holds the records of several hosts ({}): name this trail's host with --host", export.display(), hosts.join(", "))]
    SeveralHosts {
        /// The export file.
        export: PathBuf,
        /// The host names its records carry (the first few).
        hosts: Vec<String>,
    },
    /// `verify --against --host` named a host none of the export's records name.
    #[error("{}: no exported record names the host {host:?}; the export's records name: {}", export.display(), hosts.join(", "))]
    HostNotInExport {
        /// The export file.
        export: PathBuf,
        /// The host asked for (as exported records spell it).
        host: String,
        /// The host names its records carry (the first few).
        hosts: Vec<String>,
    },
    /// Verification found a bad record.
    #[error("audit log {} line {line}{}: {problem}", path.display(), seq.map(|s| format!(" (seq {s})")).unwrap_or_default())]
    Tampered {
        /// The file.
        path: PathBuf,
        /// 1-based line of the first bad record.
        line: u64,
        /// Its seq, when it could be read (or the seq expected there).
        seq: Option<u64>,
        /// What is wrong.
        problem: Box<Tamper>,
    },
}

/// When the writer forces records to disk.
///
/// Every policy writes each record to the file at once, so a crash of the process loses
/// nothing; the policies differ in what a power cut or a kernel crash can lose.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum FsyncPolicy {
    /// After every record (`"every-record"`): nothing acknowledged is ever lost. The head
    /// file is rewritten after every record but forced to disk only by [`AuditSink::sync`],
    /// so after a power cut it may name an earlier record (which `verify` accepts).
    #[default]
    EveryRecord,
    /// At the writer's durability barriers (`"batch"`, a group commit): before an action is
    /// sent to the server, before a batch of Malops is recorded as handled, when a plugin is
    /// paused, at the end of every cycle and on shutdown ([`AuditSink::barrier`]). A power
    /// cut may lose the records written since the last barrier, which are those of work
    /// that is done again after the restart; never the decision record of an action sent.
    Batch,
    /// After every N records (`N`), and at the writer's durability barriers as under
    /// `Batch`: a power cut may lose up to N-1 records. The head file names the last record
    /// forced to disk, as under `Batch`.
    Interval(u64),
    /// Never (`"never"`): the OS decides; for tests and benchmarks.
    Never,
}

impl Serialize for FsyncPolicy {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::EveryRecord => serializer.serialize_str("every-record"),
            Self::Batch => serializer.serialize_str("batch"),
            Self::Never => serializer.serialize_str("never"),
            Self::Interval(n) => serializer.serialize_u64(*n),
        }
    }
}

impl<'de> Deserialize<'de> for FsyncPolicy {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = FsyncPolicy;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"every-record\", \"batch\", \"never\", or a number of records")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<FsyncPolicy, E> {
                match v {
                    "every-record" => Ok(FsyncPolicy::EveryRecord),
                    "batch" => Ok(FsyncPolicy::Batch),
                    "never" => Ok(FsyncPolicy::Never),
                    other => Err(E::custom(format!(
                        "unknown fsync policy `{other}`; expected \"every-record\", \"batch\", \"never\", or a number of records"
                    ))),
                }
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<FsyncPolicy, E> {
                Ok(FsyncPolicy::Interval(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<FsyncPolicy, E> {
                u64::try_from(v).map(FsyncPolicy::Interval).map_err(|_| {
                    E::custom("the fsync interval must be a positive number of records")
                })
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// The host's id of one plugin invocation (a UUID).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct InvocationId(String);

impl InvocationId {
    /// A fresh random id.
    pub fn random() -> Self {
        Self(uuid::Uuid::new_v4().to_string())
    }

    /// Wraps an existing id.
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for InvocationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a record is about: an operation a plugin called (`isolate`), or a host event
/// (`invoke:on-malop`, `trap`, `approve`, `undo`, ...).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Call(String);

impl Call {
    /// A host event; by convention kebab-case, with a `:` qualifier where useful.
    pub fn event(name: impl Into<String>) -> Self {
        Self(name.into())
    }

    /// The name as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<Operation> for Call {
    fn from(op: Operation) -> Self {
        Self(op.name().to_string())
    }
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The gate's verdict, as filtered on by `riposte audit show --decision`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum DecisionKind {
    /// Allowed and carried out.
    Allow,
    /// Recorded as would-be, not executed.
    Shadow,
    /// Held for an operator.
    AwaitApproval,
    /// Refused.
    Deny,
}

impl DecisionKind {
    /// The kebab-case name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Shadow => "shadow",
            Self::AwaitApproval => "await-approval",
            Self::Deny => "deny",
        }
    }
}

impl fmt::Display for DecisionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A decision as recorded (built by the policy gate from its decision).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionRecord {
    /// The verdict.
    pub kind: DecisionKind,
    /// For denials, the WIT error category the plugin received.
    pub category: Option<ErrorCategory>,
    /// The decision in plain words.
    pub detail: String,
}

/// A JSON value with secrets removed. The only way to put data into a record.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize)]
#[serde(transparent)]
pub struct Redacted(Value);

/// What replaces a secret.
pub const REDACTED: &str = "[redacted]";

impl Redacted {
    /// No data (`null`).
    pub fn none() -> Self {
        Self(Value::Null)
    }

    /// Serializes a typed value, then redacts it.
    pub fn from_serialize<T: Serialize + ?Sized>(value: &T) -> Result<Self, Error> {
        serde_json::to_value(value)
            .map(Self::from_value)
            .map_err(|e| Error::Encode(e.to_string()))
    }

    /// Redacts a JSON value.
    pub fn from_value(mut value: Value) -> Self {
        redact(&mut value);
        Self(value)
    }

    /// The redacted value.
    #[cfg(test)]
    fn as_value(&self) -> &Value {
        &self.0
    }
}

/// Whether an object key names a secret (compared lowercase, ignoring `-` and `_`).
pub(crate) fn is_secret_key(key: &str) -> bool {
    let k: String = key
        .chars()
        .filter(|c| *c != '-' && *c != '_')
        .flat_map(char::to_lowercase)
        .collect();
    const EXACT: [&str; 3] = ["pwd", "pass", "auth"];
    const PARTS: [&str; 11] = [
        "password",
        "passwd",
        "secret",
        "token",
        "cookie",
        "jsessionid",
        "sessionid",
        "apikey",
        "authorization",
        "credential",
        "privatekey",
    ];
    EXACT.contains(&k.as_str()) || PARTS.iter().any(|p| k.contains(p))
}

/// Whether a string value looks like a credential.
pub(crate) fn looks_like_secret(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    [
        "jsessionid=",
        "set-cookie:",
        "cookie:",
        "authorization:",
        "bearer ",
        "password=",
        "passwd=",
        "pwd=",
        "token=",
        "secret=",
        "api_key=",
        "apikey=",
        "api-key:",
        "api-key=",
        "-----begin",
    ]
    .iter()
    .any(|p| t.contains(p))
}

fn redact(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if is_secret_key(key) {
                    *v = Value::String(REDACTED.to_string());
                } else {
                    redact(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        Value::String(s) if looks_like_secret(s) => *s = REDACTED.to_string(),
        _ => {}
    }
}

/// What the caller supplies for one record; the log adds seq, prev and hash.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// When it happened (Unix ms).
    pub time_ms: TimestampMs,
    /// The plugin, if the record is about one.
    pub plugin: Option<PluginName>,
    /// The sha256 of the plugin's component.
    pub plugin_digest: Option<Sha256Digest>,
    /// The invocation.
    pub invocation: Option<InvocationId>,
    /// The Malop the call concerns.
    pub malop: Option<MalopId>,
    /// The sha256 of the input the plugin was given (the encoded Malop).
    pub input_digest: Option<Sha256Digest>,
    /// The operation or host event.
    pub call: Call,
    /// Its arguments.
    pub arguments: Redacted,
    /// The gate's decision, for gated calls.
    pub decision: Option<DecisionRecord>,
    /// What came of it.
    pub result: Redacted,
    /// How long it took.
    pub duration_us: u64,
}

impl Entry {
    /// An entry with only a time and a call; fill in the rest as needed.
    pub fn new(time_ms: TimestampMs, call: impl Into<Call>) -> Self {
        Self {
            time_ms,
            plugin: None,
            plugin_digest: None,
            invocation: None,
            malop: None,
            input_digest: None,
            call: call.into(),
            arguments: Redacted::none(),
            decision: None,
            result: Redacted::none(),
            duration_us: 0,
        }
    }
}

impl Entry {
    /// An entry for a gated action: the call, the Malop, the full request (targets and
    /// arguments) with the plugin's stated reason as `arguments`, and the decision. For a
    /// shadowed action this is the complete would-be plan (G5). The caller adds the plugin,
    /// invocation, input digest, result and duration.
    pub fn for_action(
        time_ms: TimestampMs,
        request: &riposte_domain::ActionRequest,
        reason: Option<&str>,
        decision: DecisionRecord,
    ) -> Result<Self, Error> {
        let mut entry = Self::new(time_ms, request.operation());
        entry.malop = request.malop_id().cloned();
        entry.arguments = Redacted::from_serialize(&serde_json::json!({
            "request": request,
            "reason": reason,
        }))?;
        entry.decision = Some(decision);
        Ok(entry)
    }
}

/// How a record is linked to the previous one (its `link` field).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum Link {
    /// `hash = sha256(body)`: anyone can recompute it (records without a `link` field too).
    #[default]
    #[serde(rename = "sha256")]
    Sha256,
    /// `hash = HMAC-SHA256(key, body)`: only the key's holder can compute it.
    #[serde(rename = "hmac-sha256")]
    HmacSha256,
}

impl Link {
    /// The name written in records.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sha256 => "sha256",
            Self::HmacSha256 => "hmac-sha256",
        }
    }
}

impl fmt::Display for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A record as read back from the log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// Position in the log, from 1.
    pub seq: u64,
    /// When (Unix ms).
    pub time_ms: TimestampMs,
    /// The plugin.
    pub plugin: Option<PluginName>,
    /// Its component's sha256.
    pub plugin_digest: Option<Sha256Digest>,
    /// The invocation.
    pub invocation: Option<InvocationId>,
    /// The Malop.
    pub malop: Option<MalopId>,
    /// The input's sha256.
    pub input_digest: Option<Sha256Digest>,
    /// The operation or event.
    pub call: Call,
    /// Arguments (redacted when written).
    pub arguments: Value,
    /// The decision.
    pub decision: Option<DecisionRecord>,
    /// The result (redacted when written).
    pub result: Value,
    /// Duration.
    pub duration_us: u64,
    /// How `hash` is computed (`sha256` when the record has no `link` field).
    #[serde(default)]
    pub link: Link,
    /// The previous record's hash.
    pub prev: Sha256Digest,
    /// This record's hash.
    pub hash: Sha256Digest,
}

/// Where an appended record landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordRef {
    /// Its seq.
    pub seq: u64,
    /// Its hash (the new head of the chain).
    pub hash: Sha256Digest,
}

/// The record minus its hash, in the canonical field order.
#[derive(Serialize)]
struct Body<'a> {
    seq: u64,
    time_ms: TimestampMs,
    plugin: &'a Option<PluginName>,
    plugin_digest: &'a Option<Sha256Digest>,
    invocation: &'a Option<InvocationId>,
    malop: &'a Option<MalopId>,
    input_digest: &'a Option<Sha256Digest>,
    call: &'a Call,
    arguments: &'a Redacted,
    decision: &'a Option<DecisionRecord>,
    result: &'a Redacted,
    duration_us: u64,
    link: Link,
    prev: Sha256Digest,
}

const HASH_FIELD: &str = ",\"hash\":\"";

/// Encodes one record: the line to write (with its `\n`) and its hash, an HMAC under `key`
/// when there is one.
pub(crate) fn encode(
    seq: u64,
    prev: Sha256Digest,
    entry: &Entry,
    key: Option<&ChainKey>,
) -> Result<(String, Sha256Digest), Error> {
    let body = Body {
        seq,
        time_ms: entry.time_ms,
        plugin: &entry.plugin,
        plugin_digest: &entry.plugin_digest,
        invocation: &entry.invocation,
        malop: &entry.malop,
        input_digest: &entry.input_digest,
        call: &entry.call,
        arguments: &entry.arguments,
        decision: &entry.decision,
        result: &entry.result,
        duration_us: entry.duration_us,
        link: if key.is_some() {
            Link::HmacSha256
        } else {
            Link::Sha256
        },
        prev,
    };
    let mut text = serde_json::to_string(&body).map_err(|e| Error::Encode(e.to_string()))?;
    let hash = match key {
        Some(key) => key.mac(text.as_bytes()),
        None => Sha256Digest::of(text.as_bytes()),
    };
    text.pop(); // the closing brace
    text.push_str(HASH_FIELD);
    text.push_str(&hash.to_hex());
    text.push_str("\"}\n");
    Ok((text, hash))
}

/// Checks one line (without its `\n`): the stored hash must be the sha256 (or, for a keyed
/// record, the HMAC under `key`) of the line with the hash field removed. A keyed record read
/// without a key is returned unchecked (only its structure can be). Returns the parsed record.
pub(crate) fn decode(line: &str, key: Option<&ChainKey>) -> Result<Record, Tamper> {
    let cut = line
        .rfind(HASH_FIELD)
        .filter(|&i| line.len() == i + HASH_FIELD.len() + 64 + 2 && line.ends_with("\"}"))
        .ok_or_else(|| Tamper::Malformed("no `hash` field at the end of the line".into()))?;
    let record: Record =
        serde_json::from_str(line).map_err(|e| Tamper::Malformed(e.to_string()))?;
    let mut body = String::with_capacity(cut + 1);
    body.push_str(&line[..cut]);
    body.push('}');
    let computed = match (record.link, key) {
        (Link::Sha256, _) => Sha256Digest::of(body.as_bytes()),
        (Link::HmacSha256, Some(key)) => key.mac(body.as_bytes()),
        (Link::HmacSha256, None) => return Ok(record),
    };
    if computed != record.hash {
        return Err(match record.link {
            Link::Sha256 => Tamper::HashMismatch {
                stored: record.hash,
                computed,
            },
            Link::HmacSha256 => Tamper::MacMismatch,
        });
    }
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_is_canonical_and_checkable() {
        let mut entry = Entry::new(1_700_000_000_000, Operation::Isolate);
        entry.plugin = Some(PluginName::new("iso"));
        entry.arguments =
            Redacted::from_serialize(&serde_json::json!({"b": 1, "a": [1, 2]})).unwrap();
        let (line, hash) = encode(1, GENESIS, &entry, None).unwrap();
        assert!(line.starts_with("{\"seq\":1,\"time_ms\":1700000000000,\"plugin\":\"iso\""));
        assert!(line.ends_with(&format!(
            ",\"link\":\"sha256\",\"prev\":\"{}\",\"hash\":\"{}\"}}\n",
            GENESIS, hash
        )));
        let record = decode(line.trim_end(), None).unwrap();
        assert_eq!(record.hash, hash);
        assert_eq!(record.seq, 1);
        let edited = line.trim_end().replace("\"iso\"", "\"isx\"");
        assert!(matches!(
            decode(&edited, None),
            Err(Tamper::HashMismatch { .. })
        ));
        let key = ChainKey::new(vec![7; 32]).unwrap();
        let (keyed, mac) = encode(1, GENESIS, &entry, Some(&key)).unwrap();
        assert!(keyed.contains(",\"link\":\"hmac-sha256\",\"prev\":"));
        assert_ne!(
            mac,
            Sha256Digest::of(keyed.split(",\"hash\"").next().unwrap().as_bytes())
        );
        assert_eq!(decode(keyed.trim_end(), Some(&key)).unwrap().hash, mac);
        assert_eq!(
            decode(keyed.trim_end(), None).unwrap().link,
            Link::HmacSha256
        );
        let other = ChainKey::new(vec![8; 32]).unwrap();
        assert_eq!(
            decode(keyed.trim_end(), Some(&other)).err(),
            Some(Tamper::MacMismatch)
        );
    }

    #[test]
    fn secrets_are_redacted() {
        let args = Redacted::from_value(serde_json::json!({
            "username": "admin",
            "password": "hunter2",
            "nested": [{"JSESSIONID": "ABCDEF"}, {"note": "Cookie: JSESSIONID=ABCDEF"}],
            "api_key": "k",
            "machine": "host-1",
        }));
        let text = serde_json::to_string(&args).unwrap();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(!text.contains("ABCDEF"), "{text}");
        assert!(text.contains("host-1"));
        assert!(text.contains("admin"));
        // Credentials in free text, as a plugin's reason or a server's message may carry.
        for text in [
            "Authorization: Bearer eyJhbGciOi",
            "X-Api-Key: abc123",
            "client_secret=abc123",
            "url?api_key=abc123",
            "pwd=abc123",
        ] {
            let value = Redacted::from_value(serde_json::json!({ "note": text }));
            let shown = serde_json::to_string(&value).unwrap();
            assert!(
                !shown.contains("abc123") && !shown.contains("eyJ"),
                "{shown}"
            );
        }
        assert!(is_secret_key("Set-Cookie"));
        assert!(is_secret_key("X_Auth_Token"));
        assert!(!is_secret_key("machine_guid"));
    }

    #[test]
    fn a_shadowed_action_records_the_whole_plan() {
        use riposte_domain::{ActionKind, ActionRequest, MachineGuid};
        let request = ActionRequest::Isolate {
            malop_id: Some(MalopId::new("11.-5")),
            machines: vec![MachineGuid::new("m1"), MachineGuid::new("m2")],
        };
        let decision = DecisionRecord {
            kind: DecisionKind::Shadow,
            category: None,
            detail: format!("shadowed: {}", ActionKind::Isolate),
        };
        let entry = Entry::for_action(7, &request, Some("ransomware"), decision).unwrap();
        assert_eq!(entry.call.as_str(), "isolate");
        assert_eq!(entry.malop, Some(MalopId::new("11.-5")));
        let args = entry.arguments.as_value();
        assert_eq!(args["request"]["machines"], serde_json::json!(["m1", "m2"]));
        assert_eq!(args["reason"], "ransomware");
        assert_eq!(entry.decision.unwrap().kind, DecisionKind::Shadow);
    }

    #[test]
    fn fsync_policy_parses_from_toml_values() {
        #[derive(Deserialize)]
        struct T {
            f: FsyncPolicy,
        }
        let t: T = toml::from_str("f = \"never\"").unwrap();
        assert_eq!(t.f, FsyncPolicy::Never);
        let t: T = toml::from_str("f = \"batch\"").unwrap();
        assert_eq!(t.f, FsyncPolicy::Batch);
        let t: T = toml::from_str("f = 100").unwrap();
        assert_eq!(t.f, FsyncPolicy::Interval(100));
        assert!(toml::from_str::<T>("f = \"sometimes\"").is_err());
    }
}
