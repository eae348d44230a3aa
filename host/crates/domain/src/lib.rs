//! The domain vocabulary shared by every layer: ids, Malops, actions.
//!
//! Cybereason ids look numeric (`11.-7780537507363356527`) but are opaque strings: they are
//! wrapped in newtypes that never parse them, so a Malop id cannot be passed where a machine
//! guid is expected.

pub mod bounds;
pub mod secret;
pub mod settings;
pub mod users;

pub use secret::Secret;
pub use users::{Role, UserName};

/// This machine's host name as the kernel has it, if it has one: the fleet's host ids and
/// the SIEM export's syslog HOSTNAME.
pub fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
}

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Wraps the server's spelling of the id, unchanged.
            pub fn new(id: impl Into<String>) -> Self {
                Self(id.into())
            }

            /// The id exactly as the server spells it.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(id: &str) -> Self {
                Self(id.to_owned())
            }
        }

        impl From<String> for $name {
            fn from(id: String) -> Self {
                Self(id)
            }
        }
    };
}

string_id!(
    /// A Malop guid: `11.-7780537507363356527` (crimes/unified) or `AAAA0ws7O-MUgDmB` (inbox, mmng/v2).
    MalopId
);
string_id!(
    /// A machine element guid, the key of `actionsByMachine`: `-1845090846.1198775089551518743`.
    MachineGuid
);
string_id!(
    /// A process, file, registry or user element guid.
    ElementGuid
);
string_id!(
    /// A sensor id used for isolation: `PYLUMCLIENT_<ORG>_<HOST>_<MAC>`.
    PylumId
);
string_id!(
    /// A remediation id assigned by the server (a UUID).
    RemediationId
);

impl MachineGuid {
    /// A machine guid as the server sent it, in the dotted form crimes/unified and
    /// remediation use: the 16-character base64url form some APIs send (`kxwWqBCi55eyTiwX`)
    /// is the same 96 bits, a 32-bit and a 64-bit two's-complement integer, so it is turned
    /// into `-1826875736.1198775089551518743` (shared/cybereason-api.md §2.1, checked against
    /// fixtures for machines). Anything else is kept as sent.
    pub fn from_api(text: &str) -> Self {
        use base64::Engine as _;
        let decoded = (text.len() == 16)
            .then(|| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(text)
                    .ok()
            })
            .flatten();
        match decoded.as_deref() {
            Some([a, b, c, d, rest @ ..]) if rest.len() == 8 => {
                let high = i32::from_be_bytes([*a, *b, *c, *d]);
                let mut low = [0u8; 8];
                low.copy_from_slice(rest);
                Self(format!("{high}.{}", i64::from_be_bytes(low)))
            }
            _ => Self::new(text),
        }
    }
}

/// Milliseconds since the Unix epoch, on the server's clock.
pub type TimestampMs = i64;

/// Milliseconds since the Unix epoch, now, on this host's clock (0 before the epoch).
pub fn now_ms() -> TimestampMs {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| {
            TimestampMs::try_from(d.as_millis()).unwrap_or(TimestampMs::MAX)
        })
}

/// Which element a Malop is built on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ElementKind {
    /// `MalopProcess`.
    #[serde(rename = "MalopProcess")]
    Process,
    /// `MalopLogonSession`.
    #[serde(rename = "MalopLogonSession")]
    LogonSession,
}

impl ElementKind {
    /// Both kinds, in the order the poller queries them.
    pub const ALL: [ElementKind; 2] = [ElementKind::Process, ElementKind::LogonSession];

    /// The server's `requestedType` spelling.
    pub fn as_api(self) -> &'static str {
        match self {
            ElementKind::Process => "MalopProcess",
            ElementKind::LogonSession => "MalopLogonSession",
        }
    }
}

/// The analyst-facing state of a Malop (`managementStatus`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ManagementStatus {
    Unread,
    Todo,
    Open,
    Closed,
    #[serde(rename = "FP")]
    FalsePositive,
    #[serde(rename = "REOPEN")]
    Reopened,
    /// A value this version does not know.
    Unknown,
}

impl ManagementStatus {
    /// Parses the server's spelling; unknown values map to [`ManagementStatus::Unknown`].
    pub fn from_api(value: &str) -> Self {
        match value.to_ascii_uppercase().as_str() {
            "UNREAD" => Self::Unread,
            "TODO" => Self::Todo,
            "OPEN" | "ACTIVE" => Self::Open,
            // "Remediated" (an inbox status) maps to CLOSED in XS and SM (§5.2).
            "CLOSED" | "CLOSE" | "RESOLVED" | "REMEDIATED" => Self::Closed,
            "FP" => Self::FalsePositive,
            "REOPEN" | "REOPENED" => Self::Reopened,
            _ => Self::Unknown,
        }
    }

    /// The server's spelling for `crimes/status`, or `None` for [`ManagementStatus::Unknown`].
    pub fn as_api(self) -> Option<&'static str> {
        Some(match self {
            Self::Unread => "UNREAD",
            Self::Todo => "TODO",
            Self::Open => "OPEN",
            Self::Closed => "CLOSED",
            Self::FalsePositive => "FP",
            Self::Reopened => "REOPEN",
            Self::Unknown => return None,
        })
    }
}

/// The server's priority for a Malop.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Priority {
    High,
    Medium,
    Low,
    Unknown,
}

impl Priority {
    /// Parses the server's spelling; unknown values map to [`Priority::Unknown`].
    pub fn from_api(value: &str) -> Self {
        match value.to_ascii_uppercase().as_str() {
            "HIGH" => Self::High,
            "MEDIUM" => Self::Medium,
            "LOW" => Self::Low,
            _ => Self::Unknown,
        }
    }
}

/// An element the server names as a root cause.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootCause {
    pub name: String,
    pub element_type: String,
    pub hashes: Vec<String>,
}

/// A machine touched by a Malop.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Machine {
    pub guid: MachineGuid,
    pub name: String,
    pub pylum_id: Option<PylumId>,
    pub os: String,
    pub connected: bool,
    pub isolated: bool,
    /// The sensor's group (`groupName`), when the server reports one; protection by group
    /// needs it. Not part of the WIT record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

/// A registry value giving a suspect process persistence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryEntry {
    pub guid: ElementGuid,
    pub name: String,
}

/// A suspect process.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suspect {
    pub guid: ElementGuid,
    pub name: String,
    pub machine_guid: MachineGuid,
    pub image_sha1: Option<String>,
    #[serde(default)]
    pub autorun_keys: Vec<RegistryEntry>,
}

/// A file marked for remediation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileItem {
    pub guid: ElementGuid,
    pub name: String,
    pub md5: Option<String>,
    pub sha1: Option<String>,
    pub machine_guid: MachineGuid,
}

/// A user affected by a Malop.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub guid: ElementGuid,
    pub name: String,
}

/// A part of a Malop the host reads with a query of its own (mirrors the WIT `malop-part`).
/// When that query fails, the Malop is offered with what the server did return and the part is
/// listed in [`Malop::unreadable`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MalopPart {
    /// Suspects in full (owner machine, image hash, autorun evidence): `visualsearch`.
    Suspects,
    /// Files to remediate in full (hashes, owner machine): `visualsearch`.
    Files,
    /// Remote IPs and domains of the suspects' connections: `visualsearch`.
    Network,
    /// Sensor state of the machines (pylumId, connection, isolation, OS, group): `sensors/query`.
    Sensors,
}

impl MalopPart {
    /// Every part, in a stable order.
    pub const ALL: [MalopPart; 4] = [Self::Suspects, Self::Files, Self::Network, Self::Sensors];

    /// The kebab-case name used in the WIT, the audit trail, metrics and the state database.
    pub fn name(self) -> &'static str {
        match self {
            Self::Suspects => "suspects",
            Self::Files => "files",
            Self::Network => "network",
            Self::Sensors => "sensors",
        }
    }

    /// Parses the kebab-case name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }
}

impl fmt::Display for MalopPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One Malop, normalised from whichever server API it came from. Mirrors the WIT `malop` record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Malop {
    pub id: MalopId,
    pub kind: ElementKind,
    pub display_name: String,
    pub detection_type: String,
    pub activity_types: Vec<String>,
    pub management_status: ManagementStatus,
    pub priority: Priority,
    pub creation_time: TimestampMs,
    pub last_update_time: TimestampMs,
    #[serde(default)]
    pub root_causes: Vec<RootCause>,
    #[serde(default)]
    pub machines: Vec<Machine>,
    #[serde(default)]
    pub suspects: Vec<Suspect>,
    #[serde(default)]
    pub files: Vec<FileItem>,
    #[serde(default)]
    pub users: Vec<User>,
    #[serde(default)]
    pub ip_addresses: Vec<String>,
    #[serde(default)]
    pub domains: Vec<String>,
    /// The parts the host could not read this time, or did not read because no plugin
    /// offered the Malop reads them (sorted, no duplicates; empty when the Malop is complete).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unreadable: Vec<MalopPart>,
}

impl Malop {
    /// Whether every part was read.
    pub fn is_complete(&self) -> bool {
        self.unreadable.is_empty()
    }

    /// Marks `part` unreadable (keeping the list sorted and free of duplicates).
    pub fn mark_unreadable(&mut self, part: MalopPart) {
        if let Err(at) = self.unreadable.binary_search(&part) {
            self.unreadable.insert(at, part);
        }
    }
}

/// A remediation action the server offers (`actionType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RemediationKind {
    KillProcess,
    QuarantineFile,
    UnquarantineFile,
    DeleteRegistryKey,
    BlockFile,
    KillPreventUnsuspend,
    UnsuspendProcess,
}

impl RemediationKind {
    /// The server's `actionType` spelling.
    pub fn as_api(self) -> &'static str {
        match self {
            Self::KillProcess => "KILL_PROCESS",
            Self::QuarantineFile => "QUARANTINE_FILE",
            Self::UnquarantineFile => "UNQUARANTINE_FILE",
            Self::DeleteRegistryKey => "DELETE_REGISTRY_KEY",
            Self::BlockFile => "BLOCK_FILE",
            Self::KillPreventUnsuspend => "KILL_PREVENT_UNSUSPEND",
            Self::UnsuspendProcess => "UNSUSPEND_PROCESS",
        }
    }

    /// Parses the server's `actionType` spelling.
    pub fn from_api(value: &str) -> Option<Self> {
        Some(match value {
            "KILL_PROCESS" => Self::KillProcess,
            "QUARANTINE_FILE" => Self::QuarantineFile,
            "UNQUARANTINE_FILE" => Self::UnquarantineFile,
            "DELETE_REGISTRY_KEY" => Self::DeleteRegistryKey,
            "BLOCK_FILE" => Self::BlockFile,
            "KILL_PREVENT_UNSUSPEND" => Self::KillPreventUnsuspend,
            "UNSUSPEND_PROCESS" => Self::UnsuspendProcess,
            _ => return None,
        })
    }
}

/// One item of a remediation request.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RemediationTarget {
    pub machine_guid: MachineGuid,
    pub target_guid: ElementGuid,
    pub kind: RemediationKind,
}

/// Server-side progress of a remediation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RemediationProgress {
    Pending,
    InProgress,
    Success,
    Failure,
    Unknown,
}

impl RemediationProgress {
    /// Parses a `statusLog` status.
    pub fn from_api(value: &str) -> Self {
        match value {
            "PENDING" => Self::Pending,
            "IN_PROGRESS" => Self::InProgress,
            "SUCCESS" => Self::Success,
            "FAILURE" | "FAILED" => Self::Failure,
            _ => Self::Unknown,
        }
    }

    /// Whether the server will not change this status any more.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Success | Self::Failure)
    }
}

/// A custom reputation verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Blacklist,
    Whitelist,
}

/// What a reputation key is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyKind {
    FileHash,
    IpAddress,
    Domain,
}

/// A reputation key with its kind.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ReputationKey {
    pub kind: KeyKind,
    pub value: String,
}

/// Every operation a plugin can ask the host for: the unit of grants in the operator's policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Operation {
    ListMalops,
    GetMalop,
    Remediate,
    RemediationStatus,
    Isolate,
    Unisolate,
    SetReputation,
    RemoveReputation,
    SetStatus,
    AddComment,
}

impl Operation {
    /// Every operation, in a stable order.
    pub const ALL: [Operation; 10] = [
        Self::ListMalops,
        Self::GetMalop,
        Self::Remediate,
        Self::RemediationStatus,
        Self::Isolate,
        Self::Unisolate,
        Self::SetReputation,
        Self::RemoveReputation,
        Self::SetStatus,
        Self::AddComment,
    ];

    /// The kebab-case name used in configuration and the audit trail.
    pub fn name(self) -> &'static str {
        match self {
            Self::ListMalops => "list-malops",
            Self::GetMalop => "get-malop",
            Self::Remediate => "remediate",
            Self::RemediationStatus => "remediation-status",
            Self::Isolate => "isolate",
            Self::Unisolate => "unisolate",
            Self::SetReputation => "set-reputation",
            Self::RemoveReputation => "remove-reputation",
            Self::SetStatus => "set-status",
            Self::AddComment => "add-comment",
        }
    }

    /// Whether the operation changes state on the server (and so goes through budgets,
    /// protection, shadow mode and the exactly-once ledger).
    pub fn is_action(self) -> bool {
        !matches!(
            self,
            Self::ListMalops | Self::GetMalop | Self::RemediationStatus
        )
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An action a plugin asks for, fully described: what policy decides on, what the ledger keys
/// on, what shadow mode records and what the client executes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum ActionRequest {
    Remediate {
        malop_id: Option<MalopId>,
        targets: Vec<RemediationTarget>,
    },
    Isolate {
        malop_id: Option<MalopId>,
        machines: Vec<MachineGuid>,
    },
    Unisolate {
        malop_id: Option<MalopId>,
        machines: Vec<MachineGuid>,
    },
    SetReputation {
        keys: Vec<ReputationKey>,
        verdict: Verdict,
        prevent: bool,
    },
    RemoveReputation {
        keys: Vec<ReputationKey>,
    },
    SetStatus {
        malop_id: MalopId,
        status: ManagementStatus,
    },
    AddComment {
        malop_id: MalopId,
        text: String,
    },
}

impl ActionRequest {
    /// The operation this request belongs to.
    pub fn operation(&self) -> Operation {
        match self {
            Self::Remediate { .. } => Operation::Remediate,
            Self::Isolate { .. } => Operation::Isolate,
            Self::Unisolate { .. } => Operation::Unisolate,
            Self::SetReputation { .. } => Operation::SetReputation,
            Self::RemoveReputation { .. } => Operation::RemoveReputation,
            Self::SetStatus { .. } => Operation::SetStatus,
            Self::AddComment { .. } => Operation::AddComment,
        }
    }

    /// The Malop the action is about, if any.
    pub fn malop_id(&self) -> Option<&MalopId> {
        match self {
            Self::Remediate { malop_id, .. }
            | Self::Isolate { malop_id, .. }
            | Self::Unisolate { malop_id, .. } => malop_id.as_ref(),
            Self::SetStatus { malop_id, .. } | Self::AddComment { malop_id, .. } => Some(malop_id),
            Self::SetReputation { .. } | Self::RemoveReputation { .. } => None,
        }
    }
}

/// Where an action the gate let through stands (mirrors the WIT `disposition` of
/// `riposte:plugin@0.2.0`; 0.1.0 guests see fewer values, see `runtime::bindings`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Disposition {
    /// Sent to the server, which is still carrying it out (a remediation being followed).
    Submitted,
    /// The server carried it out (an offline sensor's queued isolation included).
    Succeeded,
    /// The server reported failure, or the host gave up sending it.
    Failed,
    /// Accepted but not sent yet (an earlier attempt could not reach the server).
    Queued,
    /// Sent, but the answer was lost: checked on the server before anything is sent again.
    OutcomeUnknown,
    /// Followed without a final status before the follow limit.
    TimedOut,
    /// Shadow mode: recorded as a would-be action, not executed.
    Shadowed,
    /// Held for an operator's approval.
    AwaitingApproval,
    /// Approved; it runs at the service's next cycle.
    Approved,
    /// An operator denied it.
    Denied,
    /// Its approval expired undecided.
    Expired,
    /// Carried out, then undone by an operator.
    Undone,
}

/// The host's answer to an accepted action request (mirrors the WIT `receipt`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// The host's id for the action, in the ledger and the audit trail.
    pub action_id: String,
    pub disposition: Disposition,
    /// Why it failed, timed out or was refused by an operator; empty otherwise.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// Why a host call did not happen (mirrors the WIT `error` variant). Each carries plain words.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "error", content = "detail", rename_all = "kebab-case")]
pub enum CallError {
    #[error("denied: {0}")]
    Denied(String),
    #[error("budget exhausted: {0}")]
    BudgetExhausted(String),
    #[error("protected target: {0}")]
    ProtectedTarget(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("server error: {0}")]
    ServerError(String),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("plugin failed: {0}")]
    Failed(String),
    /// The target is not named by the Malop the invocation handles, or the call comes from
    /// an invocation with no Malop and the operator granted no wider scope (G11).
    #[error("out of scope: {0}")]
    OutOfScope(String),
    /// A quota that protects the host or the server is spent: queries per invocation or
    /// minute, argument sizes, kv writes.
    #[error("quota exceeded: {0}")]
    QuotaExceeded(String),
}

/// The WIT `error` case a denial maps onto.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorCategory {
    /// `denied`: not granted (or the gate could not decide).
    Denied,
    /// `budget-exhausted`: a budget is spent or a target is cooling down.
    BudgetExhausted,
    /// `protected-target`.
    ProtectedTarget,
    /// `invalid-argument`.
    InvalidArgument,
    /// `out-of-scope`: the target is not named by the Malop being handled (G11). Guests of
    /// riposte:plugin@0.1.0 receive `denied`.
    OutOfScope,
    /// `quota-exceeded`: a size bound or a query or kv quota. Guests of
    /// riposte:plugin@0.1.0 receive `budget-exhausted`.
    QuotaExceeded,
}

string_id!(
    /// The operator's name for a plugin, unique within one configuration (`[[plugins]] name`).
    PluginName
);

/// Who an operator's decision (approve, deny, confirm, extend, undo) is recorded as: an
/// authenticated identity, never a name the caller typed. `os:NAME` is the account a CLI
/// command runs as; `console:NAME` a console login.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Operator(String);

impl Operator {
    /// The operating-system account `name` (a CLI command's effective user).
    pub fn os_account(name: &str) -> Self {
        Self(format!("os:{name}"))
    }

    /// The console user `name`, logged in.
    pub fn console_user(name: &str) -> Self {
        Self(format!("console:{name}"))
    }

    /// The identity as recorded: `os:alice`, `console:bob`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Operator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A sha256 digest: plugin pins, audit hashes, input digests. Serialized as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sha256Digest(pub [u8; 32]);

impl Sha256Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        use sha2::Digest as _;
        Self(sha2::Sha256::digest(bytes).into())
    }

    /// Parses 64 hex digits (either case).
    pub fn from_hex(text: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        if text.len() != 64 || hex::decode_to_slice(text, &mut out).is_err() {
            return None;
        }
        Some(Self(out))
    }

    /// The 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256Digest({})", self.to_hex())
    }
}

impl Serialize for Sha256Digest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Sha256Digest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::from_hex(&text).ok_or_else(|| {
            serde::de::Error::custom(format!("`{text}` is not a sha256 digest (64 hex digits)"))
        })
    }
}

/// The unit of grants, budgets, approvals and shadow promotion: each remediation action type,
/// and each other state-changing operation. Spelled in kebab-case in configuration and audit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ActionKind {
    KillProcess,
    QuarantineFile,
    UnquarantineFile,
    DeleteRegistryKey,
    BlockFile,
    KillPreventUnsuspend,
    UnsuspendProcess,
    Isolate,
    Unisolate,
    /// `set-reputation` with the `blacklist` verdict.
    Blacklist,
    /// `set-reputation` with the `whitelist` verdict: blinds the EDR to its keys, so it is
    /// granted, budgeted and approved on its own.
    Whitelist,
    RemoveReputation,
    SetStatus,
    AddComment,
}

impl ActionKind {
    /// Every action kind, in a stable order.
    pub const ALL: [ActionKind; 14] = [
        Self::KillProcess,
        Self::QuarantineFile,
        Self::UnquarantineFile,
        Self::DeleteRegistryKey,
        Self::BlockFile,
        Self::KillPreventUnsuspend,
        Self::UnsuspendProcess,
        Self::Isolate,
        Self::Unisolate,
        Self::Blacklist,
        Self::Whitelist,
        Self::RemoveReputation,
        Self::SetStatus,
        Self::AddComment,
    ];

    /// The kebab-case name used in configuration and the audit trail.
    pub fn name(self) -> &'static str {
        match self {
            Self::KillProcess => "kill-process",
            Self::QuarantineFile => "quarantine-file",
            Self::UnquarantineFile => "unquarantine-file",
            Self::DeleteRegistryKey => "delete-registry-key",
            Self::BlockFile => "block-file",
            Self::KillPreventUnsuspend => "kill-prevent-unsuspend",
            Self::UnsuspendProcess => "unsuspend-process",
            Self::Isolate => "isolate",
            Self::Unisolate => "unisolate",
            Self::Blacklist => "blacklist",
            Self::Whitelist => "whitelist",
            Self::RemoveReputation => "remove-reputation",
            Self::SetStatus => "set-status",
            Self::AddComment => "add-comment",
        }
    }

    /// Parses the kebab-case name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.name() == name)
    }

    /// The operation that carries this kind of action.
    pub fn operation(self) -> Operation {
        match self {
            Self::Isolate => Operation::Isolate,
            Self::Unisolate => Operation::Unisolate,
            Self::Blacklist | Self::Whitelist => Operation::SetReputation,
            Self::RemoveReputation => Operation::RemoveReputation,
            Self::SetStatus => Operation::SetStatus,
            Self::AddComment => Operation::AddComment,
            _ => Operation::Remediate,
        }
    }

    /// The remediation action type, for the kinds carried by `remediate`.
    pub fn remediation(self) -> Option<RemediationKind> {
        Some(match self {
            Self::KillProcess => RemediationKind::KillProcess,
            Self::QuarantineFile => RemediationKind::QuarantineFile,
            Self::UnquarantineFile => RemediationKind::UnquarantineFile,
            Self::DeleteRegistryKey => RemediationKind::DeleteRegistryKey,
            Self::BlockFile => RemediationKind::BlockFile,
            Self::KillPreventUnsuspend => RemediationKind::KillPreventUnsuspend,
            Self::UnsuspendProcess => RemediationKind::UnsuspendProcess,
            _ => return None,
        })
    }

    /// Whether the action harms its target if wrong (kill, quarantine, delete, block,
    /// isolate, blacklist). Inverses (unquarantine, unsuspend, unisolate, remove a
    /// reputation), whitelisting (it reduces security instead: see [`ActionKind::Whitelist`])
    /// and bookkeeping (status, comment) are not destructive.
    pub fn is_destructive(self) -> bool {
        matches!(
            self,
            Self::KillProcess
                | Self::QuarantineFile
                | Self::DeleteRegistryKey
                | Self::BlockFile
                | Self::KillPreventUnsuspend
                | Self::Isolate
                | Self::Blacklist
        )
    }
}

impl ActionKind {
    /// The kind of a `set-reputation` with `verdict`.
    pub fn of_verdict(verdict: Verdict) -> Self {
        match verdict {
            Verdict::Blacklist => Self::Blacklist,
            Verdict::Whitelist => Self::Whitelist,
        }
    }

    /// The name this kind had before riposte split it, if it was renamed: `blacklist` and
    /// `whitelist` were one kind, `set-reputation`, that counted, granted and approved both.
    pub fn legacy_name_of(name: &str) -> Option<[ActionKind; 2]> {
        (name == "set-reputation").then_some([Self::Blacklist, Self::Whitelist])
    }
}

impl From<RemediationKind> for ActionKind {
    fn from(kind: RemediationKind) -> Self {
        match kind {
            RemediationKind::KillProcess => Self::KillProcess,
            RemediationKind::QuarantineFile => Self::QuarantineFile,
            RemediationKind::UnquarantineFile => Self::UnquarantineFile,
            RemediationKind::DeleteRegistryKey => Self::DeleteRegistryKey,
            RemediationKind::BlockFile => Self::BlockFile,
            RemediationKind::KillPreventUnsuspend => Self::KillPreventUnsuspend,
            RemediationKind::UnsuspendProcess => Self::UnsuspendProcess,
        }
    }
}

impl fmt::Display for ActionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl ActionRequest {
    /// The distinct machines this request acts on (its blast radius in machines): the
    /// machines of an isolation, the machines of a remediation's targets; none for
    /// reputations, statuses and comments.
    pub fn machines(&self) -> std::collections::BTreeSet<&MachineGuid> {
        match self {
            Self::Remediate { targets, .. } => targets.iter().map(|t| &t.machine_guid).collect(),
            Self::Isolate { machines, .. } | Self::Unisolate { machines, .. } => {
                machines.iter().collect()
            }
            _ => Default::default(),
        }
    }

    /// The distinct action kinds this request carries, in [`ActionKind::ALL`] order (a
    /// remediation may mix several).
    pub fn action_kinds(&self) -> Vec<ActionKind> {
        let mut kinds: Vec<ActionKind> = match self {
            Self::Remediate { targets, .. } => targets.iter().map(|t| t.kind.into()).collect(),
            Self::Isolate { .. } => vec![ActionKind::Isolate],
            Self::Unisolate { .. } => vec![ActionKind::Unisolate],
            Self::SetReputation { verdict, .. } => vec![ActionKind::of_verdict(*verdict)],
            Self::RemoveReputation { .. } => vec![ActionKind::RemoveReputation],
            Self::SetStatus { .. } => vec![ActionKind::SetStatus],
            Self::AddComment { .. } => vec![ActionKind::AddComment],
        };
        kinds.sort();
        kinds.dedup();
        kinds
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_serialize_as_the_servers_string() {
        let id = MalopId::new("11.-7780537507363356527");
        assert_eq!(
            serde_json::to_string(&id).unwrap(),
            "\"11.-7780537507363356527\""
        );
        let back: MalopId = serde_json::from_str("\"11.-7780537507363356527\"").unwrap();
        assert_eq!(back, id);
    }

    #[test]
    fn a_16_character_machine_guid_becomes_the_dotted_form() {
        // The same host in both forms, from the XS fixtures (shared/cybereason-api.md §2.1).
        assert_eq!(
            MachineGuid::from_api("kxwWqBCi55eyTiwX").as_str(),
            "-1826875736.1198775089551518743"
        );
        let dotted = "-1845090846.1198775089551518743";
        assert_eq!(MachineGuid::from_api(dotted).as_str(), dotted);
        // 16 characters that are not base64url stay as sent.
        assert_eq!(
            MachineGuid::from_api("DESKTOP-J60IVD0!").as_str(),
            "DESKTOP-J60IVD0!"
        );
    }

    #[test]
    fn remediation_kind_round_trips_the_api_spelling() {
        for kind in [
            RemediationKind::KillProcess,
            RemediationKind::QuarantineFile,
            RemediationKind::UnquarantineFile,
            RemediationKind::DeleteRegistryKey,
            RemediationKind::BlockFile,
            RemediationKind::KillPreventUnsuspend,
            RemediationKind::UnsuspendProcess,
        ] {
            assert_eq!(RemediationKind::from_api(kind.as_api()), Some(kind));
        }
        assert_eq!(RemediationKind::from_api("ISOLATE_EVERYTHING"), None);
    }

    #[test]
    fn status_spellings_from_different_clients_agree() {
        assert_eq!(
            ManagementStatus::from_api("CLOSE"),
            ManagementStatus::Closed
        );
        assert_eq!(
            ManagementStatus::from_api("fp"),
            ManagementStatus::FalsePositive
        );
        assert_eq!(
            ManagementStatus::from_api("SOMETHING"),
            ManagementStatus::Unknown
        );
        assert_eq!(ManagementStatus::Unknown.as_api(), None);
    }
}
