//! The action ledger (G4): every action is recorded under its idempotency key before the
//! server is called, and followed through a small state machine to its final status.
//!
//! ```text
//!            begin_action                      claim_approved
//!  (Execute) ──────────▶ Planned ◀──────────────────────── Approved ◀── AwaitingApproval
//!                          │  ▲ record_failed_attempt (retry)             │  (approve) │
//!            mark_submitted│  │                                   deny/expire│
//!                          ▼                                                ▼
//!                      Submitted ──record_progress──▶ Following     Denied / Expired
//!                          │                             │
//!                          └──────────finish─────────────┴──▶ Succeeded ──mark_undone──▶ Undone
//!                                                              Failed / TimedOut
//!  (Shadow)  ──────────▶ Shadowed
//! ```
//!
//! `mark_queued` takes `Planned` straight to `Following`: the server took an isolation change
//! for an offline sensor, to be applied when it connects.

use super::{Failure, Op, Refusal, Result, Store};
use crate::repos::ActionLedger;
use crate::sql::{OptionalExtension, Row, Tx, Value, dyn_params, params};
use riposte_domain::{
    ActionKind, ActionRequest, KeyKind, MachineGuid, MalopId, PluginName, RemediationId,
    RemediationProgress, Sha256Digest,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// The host's id for one action: 32 lowercase hex digits (a random UUID), made in Rust so
/// that several hosts can share one database.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ActionId(String);

impl ActionId {
    /// A new random id.
    pub fn generate() -> Self {
        Self(uuid::Uuid::new_v4().simple().to_string())
    }

    /// Parses a full id (32 hex digits, either case).
    pub fn parse(text: &str) -> Option<Self> {
        (text.len() == 32 && text.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| Self(text.to_ascii_lowercase()))
    }

    /// The id as stored and shown.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ActionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for ActionId {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, String> {
        Self::parse(text).ok_or_else(|| format!("`{text}` is not an action id (32 hex digits)"))
    }
}

/// The idempotency key of an action: the sha256 of its canonical form (see
/// [`ActionKey::canonical_form`]). Two requests with the same key are the same action, and
/// the ledger runs it once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ActionKey(pub Sha256Digest);

impl ActionKey {
    /// The key of `request` asked for by the plugin whose component has `plugin_digest`.
    pub(crate) fn compute(request: &ActionRequest, plugin_digest: &Sha256Digest) -> ActionKey {
        ActionKey(Sha256Digest::of(
            Self::canonical_form(request, plugin_digest).as_bytes(),
        ))
    }

    /// The key of the undo of the action keyed `original`: distinct from any key a plugin
    /// can produce, and the same for every attempt to undo that action, so an undo also runs
    /// at most once.
    pub fn for_undo(original: &ActionKey) -> ActionKey {
        let text = serde_json::json!(["riposte.undo-key.v1", original.0.to_hex()]).to_string();
        ActionKey(Sha256Digest::of(text.as_bytes()))
    }

    /// The canonical JSON the key hashes: a fixed-order array of the format tag, the plugin
    /// digest, the Malop id (or null), the action kinds (sorted), the targets (each an array of
    /// strings, sorted and deduplicated, reputation hashes and domains lowercased) and the
    /// parameters that change what the action does (verdict and prevention, the status, the
    /// comment text). Arrays only, so the form does not depend on map ordering.
    pub(crate) fn canonical_form(request: &ActionRequest, plugin_digest: &Sha256Digest) -> String {
        use erased::Named as _;
        let mut targets: Vec<Vec<String>> = match request {
            ActionRequest::Remediate { targets, .. } => targets
                .iter()
                .map(|t| {
                    vec![
                        t.machine_guid.to_string(),
                        t.target_guid.to_string(),
                        t.kind.as_api().to_owned(),
                    ]
                })
                .collect(),
            ActionRequest::Isolate { machines, .. } | ActionRequest::Unisolate { machines, .. } => {
                machines.iter().map(|m| vec![m.to_string()]).collect()
            }
            ActionRequest::SetReputation { keys, .. }
            | ActionRequest::RemoveReputation { keys } => keys
                .iter()
                .map(|k| {
                    let value = match k.kind {
                        KeyKind::FileHash | KeyKind::Domain => k.value.to_ascii_lowercase(),
                        KeyKind::IpAddress => k.value.clone(),
                    };
                    vec![k.kind.serde_name(), value]
                })
                .collect(),
            ActionRequest::SetStatus { malop_id, .. }
            | ActionRequest::AddComment { malop_id, .. } => {
                vec![vec![malop_id.to_string()]]
            }
        };
        targets.sort();
        targets.dedup();
        let parameters: Vec<String> = match request {
            ActionRequest::SetReputation {
                verdict, prevent, ..
            } => vec![verdict.serde_name(), prevent.to_string()],
            ActionRequest::SetStatus { status, .. } => vec![status.serde_name()],
            ActionRequest::AddComment { text, .. } => vec![text.clone()],
            _ => Vec::new(),
        };
        let kinds: Vec<&str> = request.action_kinds().iter().map(|k| k.name()).collect();
        serde_json::json!([
            "riposte.action-key.v1",
            plugin_digest.to_hex(),
            request.malop_id().map(|m| m.as_str()),
            kinds,
            targets,
            parameters,
        ])
        .to_string()
    }

    /// The 64 hex digits.
    pub fn to_hex(&self) -> String {
        self.0.to_hex()
    }
}

impl fmt::Display for ActionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The domain enums serialize as one string: their serde spelling, as plain text.
mod erased {
    pub trait Named {
        fn serde_name(&self) -> String;
    }

    impl<T: serde::Serialize> Named for T {
        fn serde_name(&self) -> String {
            match serde_json::to_value(self) {
                Ok(serde_json::Value::String(s)) => s,
                Ok(other) => other.to_string(),
                Err(_) => String::new(),
            }
        }
    }
}

/// The sha256 of the exact request as serialized (not canonicalised): what an approval is
/// bound to, so the operator approves exactly the action they saw.
pub fn request_hash(request: &ActionRequest) -> Sha256Digest {
    Sha256Digest::of(request_json(request).as_bytes())
}

fn request_json(request: &ActionRequest) -> String {
    serde_json::to_string(request).expect("an ActionRequest always serializes")
}

/// Where an action is in its life. Stored as the stable text of [`ActionState::as_str`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ActionState {
    /// Recorded, about to be (or being) sent: the outcome is unknown until submitted.
    Planned,
    /// Accepted by the server (remediation id and per-machine results recorded).
    Submitted,
    /// Progress is being polled.
    Following,
    /// The server reports success.
    Succeeded,
    /// The server reports failure, or the retries ran out.
    Failed,
    /// Progress did not reach a final status in time.
    TimedOut,
    /// Shadow mode: recorded, never executed.
    Shadowed,
    /// Held in the approval queue.
    AwaitingApproval,
    /// Approved, waiting for a worker to claim it.
    Approved,
    /// Denied by an operator.
    Denied,
    /// Not decided before its expiry.
    Expired,
    /// Its recorded inverse was applied.
    Undone,
}

impl ActionState {
    /// Every state, in lifecycle order.
    pub const ALL: [ActionState; 12] = [
        Self::Planned,
        Self::Submitted,
        Self::Following,
        Self::Succeeded,
        Self::Failed,
        Self::TimedOut,
        Self::Shadowed,
        Self::AwaitingApproval,
        Self::Approved,
        Self::Denied,
        Self::Expired,
        Self::Undone,
    ];

    /// The states whose outcome on the server is unknown after a crash.
    pub(crate) const UNRESOLVED: [ActionState; 3] =
        [Self::Planned, Self::Submitted, Self::Following];

    /// The stable text stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Planned => "planned",
            Self::Submitted => "submitted",
            Self::Following => "following",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::TimedOut => "timed-out",
            Self::Shadowed => "shadowed",
            Self::AwaitingApproval => "awaiting-approval",
            Self::Approved => "approved",
            Self::Denied => "denied",
            Self::Expired => "expired",
            Self::Undone => "undone",
        }
    }

    /// Parses the stored text.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Whether nothing more will happen to the action (other than an undo of a success).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Succeeded
                | Self::Failed
                | Self::TimedOut
                | Self::Shadowed
                | Self::Denied
                | Self::Expired
                | Self::Undone
        )
    }
}

impl fmt::Display for ActionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a new action enters the ledger.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActionMode {
    /// To be executed now: [`ActionState::Planned`].
    Execute,
    /// Shadow mode: recorded as [`ActionState::Shadowed`], never executed.
    Shadow,
    /// Held for approval until `expires_at_ms`: [`ActionState::AwaitingApproval`], with its
    /// approval (bound to [`request_hash`]) enqueued in the same transaction, so a crash can
    /// never leave it looking like an action to execute.
    AwaitApproval {
        /// When the approval expires (ms).
        expires_at_ms: i64,
        /// How many distinct people must approve it (at least 1).
        quorum: u32,
    },
}

/// The longest machine name kept with an action (bytes); a longer one is cut.
pub const MAX_MACHINE_NAME_BYTES: usize = 255;

fn clip(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// An action to record with [`crate::ActionLedger::begin_action`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewAction {
    /// Its idempotency key.
    pub key: ActionKey,
    /// The plugin that asked for it (the operator's name for undo).
    pub plugin: PluginName,
    /// The digest of that plugin's component.
    pub plugin_digest: Sha256Digest,
    /// The request, exactly as it will be executed.
    pub request: ActionRequest,
    /// Why: the plugin's reason, or the operator's for an undo.
    pub reason: String,
    /// Execute, shadow or hold for approval.
    pub mode: ActionMode,
    /// The action this one undoes, for an undo.
    pub undo_of: Option<ActionId>,
    /// The names of the machines it acts on, as the Malop gave them (for people; the
    /// request addresses machines by guid).
    pub machine_names: BTreeMap<MachineGuid, String>,
}

impl NewAction {
    /// An action to execute, keyed by [`ActionKey::compute`].
    pub fn new(
        plugin: PluginName,
        plugin_digest: Sha256Digest,
        request: ActionRequest,
        reason: impl Into<String>,
    ) -> Self {
        NewAction {
            key: ActionKey::compute(&request, &plugin_digest),
            plugin,
            plugin_digest,
            request,
            reason: reason.into(),
            mode: ActionMode::Execute,
            undo_of: None,
            machine_names: BTreeMap::new(),
        }
    }

    /// The undo of `original` that `by` asked for: its recorded inverse, keyed by
    /// [`ActionKey::for_undo`].
    pub fn undo(original: &ActionRecord, inverse: ActionRequest, by: &str) -> Self {
        NewAction {
            key: ActionKey::for_undo(&original.key),
            plugin: original.plugin.clone(),
            plugin_digest: original.plugin_digest,
            request: inverse,
            reason: format!("undo of {} {UNDO_REQUESTED_BY}{by}", original.id),
            mode: ActionMode::Execute,
            undo_of: Some(original.id.clone()),
            machine_names: original.machine_names.clone(),
        }
    }

    /// The same action in another mode.
    pub fn with_mode(mut self, mode: ActionMode) -> Self {
        self.mode = mode;
        self
    }

    /// The same action, with the names of the machines it acts on (only those it acts on
    /// are kept, each cut to [`MAX_MACHINE_NAME_BYTES`]).
    pub fn with_machine_names<'a>(
        mut self,
        names: impl IntoIterator<Item = (&'a MachineGuid, &'a str)>,
    ) -> Self {
        let targets = self.request.machines();
        self.machine_names = names
            .into_iter()
            .filter(|(guid, _)| targets.contains(guid))
            .map(|(guid, name)| (guid.clone(), clip(name, MAX_MACHINE_NAME_BYTES)))
            .collect();
        self
    }
}

/// The answer of [`crate::ActionLedger::begin_action`].
#[derive(Clone, Debug, PartialEq)]
pub enum BeginOutcome {
    /// The action is new and recorded: go ahead (for [`ActionMode::Execute`]).
    New(ActionId),
    /// An action with the same key exists: do not send anything; its record says what
    /// happened to it.
    AlreadyExists(Box<ActionRecord>),
}

impl BeginOutcome {
    /// The id of the new or existing action.
    pub fn action_id(&self) -> &ActionId {
        match self {
            BeginOutcome::New(id) => id,
            BeginOutcome::AlreadyExists(record) => &record.id,
        }
    }
}

/// The final outcome given to [`crate::ActionLedger::finish`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The server reports success.
    Succeeded,
    /// The server reports failure, or the action could not be sent.
    Failed,
    /// No final status in time.
    TimedOut,
}

impl Outcome {
    fn state(self) -> ActionState {
        match self {
            Outcome::Succeeded => ActionState::Succeeded,
            Outcome::Failed => ActionState::Failed,
            Outcome::TimedOut => ActionState::TimedOut,
        }
    }
}

/// Why a send of an action did not reach the server; each kind has its own count of tries
/// ([`crate::ActionLedger::record_failed_attempt`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unsent {
    /// Held back by no fault of its own: the server throttled it (HTTP 429), or the host
    /// could not log in (a refused login, a session rejected at once).
    Held,
    /// Anything else that certainly kept it from the server (a refused connection, a 5xx
    /// before it was carried out).
    Failed,
}

impl Unsent {
    /// The column counting this kind.
    fn column(self) -> &'static str {
        match self {
            Self::Held => "held_sends",
            Self::Failed => "attempts",
        }
    }
}

/// What to do after a failed attempt to send an action ([`crate::ActionLedger::record_failed_attempt`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryDecision {
    /// Stays [`ActionState::Planned`]: send it again (this many attempts failed so far).
    Retry {
        /// Failed attempts so far.
        attempts: u32,
    },
    /// The bound is reached: the action is now [`ActionState::Failed`].
    GaveUp {
        /// Failed attempts in all.
        attempts: u32,
    },
}

/// One action as recorded in the ledger.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ActionRecord {
    /// The host's id.
    pub id: ActionId,
    /// The idempotency key.
    pub key: ActionKey,
    /// The plugin that asked for it.
    pub plugin: PluginName,
    /// The digest of that plugin's component.
    pub plugin_digest: Sha256Digest,
    /// The Malop it is about, if any.
    pub malop_id: Option<MalopId>,
    /// Its action kinds.
    pub kinds: Vec<ActionKind>,
    /// The request, exactly as recorded.
    pub request: ActionRequest,
    /// [`request_hash`] of the request.
    pub request_hash: Sha256Digest,
    /// Why it was asked for.
    pub reason: String,
    /// Where it is.
    pub state: ActionState,
    /// The action it undoes, for an undo.
    pub undo_of: Option<ActionId>,
    /// The server's remediation id, once submitted.
    pub remediation_id: Option<RemediationId>,
    /// The server's answer to the submission (per-machine results).
    pub server_result: Option<serde_json::Value>,
    /// The last progress polled.
    pub progress: Option<RemediationProgress>,
    /// The server's detail with that progress.
    pub progress_detail: Option<serde_json::Value>,
    /// How many times progress was polled.
    pub polls: u32,
    /// Failed attempts to send it.
    pub attempts: u32,
    /// The last error, or the failure detail.
    pub last_error: Option<String>,
    /// When it was recorded (ms).
    pub created_at_ms: i64,
    /// When it last changed (ms).
    pub updated_at_ms: i64,
    /// When the server accepted it (ms).
    pub submitted_at_ms: Option<i64>,
    /// When it reached a final state (ms).
    pub finished_at_ms: Option<i64>,
    /// The names of the machines it acts on, when the Malop gave them.
    pub machine_names: BTreeMap<MachineGuid, String>,
}

/// What an undo's reason says before who asked for it (see [`undo_requester`]).
const UNDO_REQUESTED_BY: &str = "requested by ";

/// Who asked for the undo `record` (from its reason, as [`NewAction::undo`] wrote it).
pub fn undo_requester(record: &ActionRecord) -> Option<&str> {
    record.undo_of.as_ref()?;
    record
        .reason
        .split_once(UNDO_REQUESTED_BY)
        .map(|(_, by)| by)
}

/// The key of [`ActionRecord::server_result`] under which an action sent without a readable
/// answer records why its outcome is unknown.
pub const OUTCOME_UNKNOWN: &str = "outcome-unknown";

impl ActionRecord {
    /// Why the outcome of this sent action is unknown (its answer was lost), while it waits to
    /// be looked for on the server; `None` when the outcome is known or it was not sent.
    pub fn outcome_unknown(&self) -> Option<String> {
        if self.state != ActionState::Submitted {
            return None;
        }
        let recorded = self
            .server_result
            .as_ref()
            .and_then(|r| r.get(OUTCOME_UNKNOWN))
            .map(|why| why.as_str().map_or_else(|| why.to_string(), str::to_owned));
        match (&self.request, &self.remediation_id) {
            // A remediation the server accepted has its id; without one it was never answered.
            (ActionRequest::Remediate { .. }, None) => {
                Some(recorded.unwrap_or_else(|| "no remediation id was received".into()))
            }
            _ => recorded,
        }
    }

    /// The record [`crate::ActionLedger::begin_action`] wrote for `new` as [`ActionState::Planned`] at
    /// `now_ms` under `id`, without reading it back.
    pub fn planned(id: ActionId, new: &NewAction, now_ms: i64) -> Self {
        Self {
            id,
            key: new.key,
            plugin: new.plugin.clone(),
            plugin_digest: new.plugin_digest,
            malop_id: new.request.malop_id().cloned(),
            kinds: new.request.action_kinds(),
            request: new.request.clone(),
            request_hash: request_hash(&new.request),
            reason: new.reason.clone(),
            state: ActionState::Planned,
            undo_of: new.undo_of.clone(),
            remediation_id: None,
            server_result: None,
            progress: None,
            progress_detail: None,
            polls: 0,
            attempts: 0,
            last_error: None,
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
            submitted_at_ms: None,
            finished_at_ms: None,
            machine_names: new.machine_names.clone(),
        }
    }
}

/// Which actions [`crate::ActionLedger::list_actions`] returns. The default lists every action.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ActionFilter {
    /// Only these states (any if empty).
    pub states: Vec<ActionState>,
    /// Only this plugin's.
    pub plugin: Option<PluginName>,
    /// Only about this Malop.
    pub malop_id: Option<MalopId>,
    /// Only those recorded at or after this time (ms).
    pub created_since_ms: Option<i64>,
    /// Only those that reached their final state at or after this time (ms).
    pub finished_since_ms: Option<i64>,
    /// At most this many, newest first.
    pub limit: Option<u32>,
}

pub(crate) const COLUMNS: &str = "id, action_key, plugin, plugin_digest, malop_id, kinds, \
    request_json, request_hash, reason, state, undo_of, remediation_id, server_result_json, \
    progress, progress_json, polls, attempts, last_error, created_at_ms, updated_at_ms, \
    submitted_at_ms, finished_at_ms, machine_names";

/// A row as stored, before its text is parsed.
pub(crate) struct RawAction {
    id: String,
    key: String,
    plugin: String,
    plugin_digest: String,
    malop_id: Option<String>,
    kinds: String,
    request_json: String,
    request_hash: String,
    reason: String,
    state: String,
    undo_of: Option<String>,
    remediation_id: Option<String>,
    server_result_json: Option<String>,
    progress: Option<String>,
    progress_json: Option<String>,
    polls: i64,
    attempts: i64,
    last_error: Option<String>,
    created_at_ms: i64,
    updated_at_ms: i64,
    submitted_at_ms: Option<i64>,
    finished_at_ms: Option<i64>,
    machine_names: Option<String>,
}

impl RawAction {
    pub(crate) fn from_row(row: &Row) -> Op<Self> {
        Ok(RawAction {
            id: row.get(0)?,
            key: row.get(1)?,
            plugin: row.get(2)?,
            plugin_digest: row.get(3)?,
            malop_id: row.get(4)?,
            kinds: row.get(5)?,
            request_json: row.get(6)?,
            request_hash: row.get(7)?,
            reason: row.get(8)?,
            state: row.get(9)?,
            undo_of: row.get(10)?,
            remediation_id: row.get(11)?,
            server_result_json: row.get(12)?,
            progress: row.get(13)?,
            progress_json: row.get(14)?,
            polls: row.get(15)?,
            attempts: row.get(16)?,
            last_error: row.get(17)?,
            created_at_ms: row.get(18)?,
            updated_at_ms: row.get(19)?,
            submitted_at_ms: row.get(20)?,
            finished_at_ms: row.get(21)?,
            machine_names: row.get(22)?,
        })
    }

    /// The sha256 of the request text exactly as stored.
    pub(crate) fn stored_request_hash(&self) -> Sha256Digest {
        Sha256Digest::of(self.request_json.as_bytes())
    }

    pub(crate) fn into_record(self) -> Op<ActionRecord> {
        let id = self.id;
        let bad =
            |what: &str, detail: String| Failure::Corrupt(format!("action {id}: {what}: {detail}"));
        let digest = |what: &str, text: &str| {
            Sha256Digest::from_hex(text)
                .ok_or_else(|| bad(what, format!("`{text}` is not a sha256")))
        };
        let json = |what: &str, text: Option<String>| -> Op<Option<serde_json::Value>> {
            text.map(|t| serde_json::from_str(&t).map_err(|e| bad(what, e.to_string())))
                .transpose()
        };
        let kinds = if self.kinds.is_empty() {
            Vec::new()
        } else {
            self.kinds
                .split(',')
                .map(|k| {
                    ActionKind::from_name(k)
                        .ok_or_else(|| bad("kinds", format!("unknown kind `{k}`")))
                })
                .collect::<Op<Vec<_>>>()?
        };
        let progress = match self.progress {
            None => None,
            Some(text) => Some(
                serde_json::from_value(serde_json::Value::String(text.clone()))
                    .map_err(|_| bad("progress", format!("unknown progress `{text}`")))?,
            ),
        };
        Ok(ActionRecord {
            key: ActionKey(digest("action key", &self.key)?),
            plugin: PluginName::new(self.plugin),
            plugin_digest: digest("plugin digest", &self.plugin_digest)?,
            malop_id: self.malop_id.map(MalopId::new),
            kinds,
            request: serde_json::from_str(&self.request_json)
                .map_err(|e| bad("request", e.to_string()))?,
            request_hash: digest("request hash", &self.request_hash)?,
            reason: self.reason,
            state: ActionState::parse(&self.state)
                .ok_or_else(|| bad("state", format!("unknown state `{}`", self.state)))?,
            undo_of: self.undo_of.map(ActionId),
            remediation_id: self.remediation_id.map(RemediationId::new),
            server_result: json("server result", self.server_result_json)?,
            progress,
            progress_detail: json("progress detail", self.progress_json)?,
            polls: self.polls.clamp(0, u32::MAX as i64) as u32,
            attempts: self.attempts.clamp(0, u32::MAX as i64) as u32,
            last_error: self.last_error,
            created_at_ms: self.created_at_ms,
            updated_at_ms: self.updated_at_ms,
            submitted_at_ms: self.submitted_at_ms,
            finished_at_ms: self.finished_at_ms,
            machine_names: match self.machine_names {
                None => BTreeMap::new(),
                Some(text) => {
                    serde_json::from_str(&text).map_err(|e| bad("machine names", e.to_string()))?
                }
            },
            id: ActionId(id),
        })
    }
}

/// Reads one action, or `None`.
pub(crate) fn load_raw(tx: &Tx<'_>, id: &ActionId) -> Op<Option<RawAction>> {
    tx.query_row(
        &format!("SELECT {COLUMNS} FROM actions WHERE id = ?1"),
        params![id.as_str()],
        RawAction::from_row,
    )
    .optional()
}

/// Reads one action, or fails with `NotFound`.
pub(crate) fn load(tx: &Tx<'_>, id: &ActionId) -> Op<ActionRecord> {
    load_raw(tx, id)?
        .ok_or_else(|| Failure::NotFound(format!("action {id}")))?
        .into_record()
}

/// The current state of `id`, checked against the states it may leave for `to`.
pub(crate) fn check_state(
    tx: &Tx<'_>,
    id: &ActionId,
    allowed: &[ActionState],
    to: ActionState,
) -> Op<ActionState> {
    let text: Option<String> = tx
        .query_row(
            "SELECT state FROM actions WHERE id = ?1",
            params![id.as_str()],
            |r| r.get(0),
        )
        .optional()?;
    let text = text.ok_or_else(|| Failure::NotFound(format!("action {id}")))?;
    let from = ActionState::parse(&text)
        .ok_or_else(|| Failure::Corrupt(format!("action {id}: unknown state `{text}`")))?;
    if !allowed.contains(&from) {
        return Err(Refusal::IllegalTransition {
            action: id.clone(),
            from,
            to,
        }
        .into());
    }
    Ok(from)
}

/// Asserts that a guarded `UPDATE ... WHERE state = ?` changed exactly one row.
pub(crate) fn one_row(changed: usize, id: &ActionId, from: ActionState, to: ActionState) -> Op<()> {
    if changed == 1 {
        Ok(())
    } else {
        Err(Refusal::IllegalTransition {
            action: id.clone(),
            from,
            to,
        }
        .into())
    }
}

fn progress_text(progress: RemediationProgress) -> String {
    use erased::Named as _;
    progress.serde_name()
}

impl ActionLedger for Store {
    fn begin_action(&self, new: &NewAction, now_ms: i64) -> Result<BeginOutcome> {
        // A shadowed action sends nothing: its row may wait for the next durable commit (the
        // Malop's handled mark, at the latest), see the module docs.
        let durability = match new.mode {
            ActionMode::Shadow => super::Durability::Deferred,
            ActionMode::Execute | ActionMode::AwaitApproval { .. } => super::Durability::Durable,
        };
        self.write_with("begin_action", durability, |tx| {
            if let ActionMode::AwaitApproval { expires_at_ms, .. } = new.mode
                && expires_at_ms <= now_ms
            {
                return Err(Refusal::InvalidArgument(format!(
                    "an approval expiring at {expires_at_ms} ms is already expired at {now_ms} ms"
                ))
                .into());
            }
            if let Some(original) = &new.undo_of {
                load_raw(tx, original)?
                    .ok_or_else(|| Failure::NotFound(format!("action {original} (to undo)")))?;
            }
            let id = ActionId::generate();
            let state = match new.mode {
                ActionMode::Execute => ActionState::Planned,
                ActionMode::Shadow => ActionState::Shadowed,
                ActionMode::AwaitApproval { .. } => ActionState::AwaitingApproval,
            };
            let json = request_json(&new.request);
            let hash = Sha256Digest::of(json.as_bytes()).to_hex();
            let kinds: Vec<&str> = new
                .request
                .action_kinds()
                .iter()
                .map(|k| k.name())
                .collect();
            let finished = state.is_final().then_some(now_ms);
            let names = (!new.machine_names.is_empty()).then(|| {
                serde_json::to_string(&new.machine_names).expect("a map of strings serializes")
            });
            let inserted = tx.execute(
                "INSERT INTO actions (id, action_key, plugin, plugin_digest, malop_id, kinds, \
                 request_json, request_hash, reason, state, undo_of, polls, attempts, \
                 created_at_ms, updated_at_ms, finished_at_ms, machine_names) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, 0, 0, ?12, ?12, ?13, ?14) \
                 ON CONFLICT (action_key) DO NOTHING",
                params![
                    id.as_str(),
                    new.key.to_hex(),
                    new.plugin.as_str(),
                    new.plugin_digest.to_hex(),
                    new.request.malop_id().map(|m| m.as_str()),
                    kinds.join(","),
                    json,
                    hash,
                    new.reason,
                    state.as_str(),
                    new.undo_of.as_ref().map(|u| u.as_str()),
                    now_ms,
                    finished,
                    names,
                ],
            )?;
            if inserted == 0 {
                let existing = tx
                    .query_row(
                        &format!("SELECT {COLUMNS} FROM actions WHERE action_key = ?1"),
                        params![new.key.to_hex()],
                        RawAction::from_row,
                    )?
                    .into_record()?;
                return Ok(BeginOutcome::AlreadyExists(Box::new(existing)));
            }
            if let ActionMode::AwaitApproval {
                expires_at_ms,
                quorum,
            } = new.mode
            {
                let due = super::approval_queue::Due {
                    expires_at_ms,
                    quorum,
                };
                super::approval_queue::enqueue(tx, &id, &hash, now_ms, due)?;
            }
            Ok(BeginOutcome::New(id))
        })
    }

    fn mark_submitted(
        &self,
        id: &ActionId,
        remediation_id: Option<&RemediationId>,
        server_result: &serde_json::Value,
        now_ms: i64,
    ) -> Result<()> {
        let to = ActionState::Submitted;
        self.write("mark_submitted", |tx| {
            let from = check_state(tx, id, &[ActionState::Planned], to)?;
            let changed = tx.execute(
                "UPDATE actions SET state = ?1, remediation_id = ?2, server_result_json = ?3, \
                 submitted_at_ms = ?4, updated_at_ms = ?4 WHERE id = ?5 AND state = ?6",
                params![
                    to.as_str(),
                    remediation_id.map(|r| r.as_str()),
                    server_result.to_string(),
                    now_ms,
                    id.as_str(),
                    from.as_str(),
                ],
            )?;
            one_row(changed, id, from, to)
        })
    }

    fn mark_queued(
        &self,
        id: &ActionId,
        server_result: &serde_json::Value,
        detail: &serde_json::Value,
        now_ms: i64,
    ) -> Result<()> {
        let to = ActionState::Following;
        self.write("mark_queued", |tx| {
            let from = check_state(tx, id, &[ActionState::Planned], to)?;
            let changed = tx.execute(
                "UPDATE actions SET state = ?1, server_result_json = ?2, submitted_at_ms = ?3, \
                 updated_at_ms = ?3, progress = ?4, progress_json = ?5, polls = polls + 1 \
                 WHERE id = ?6 AND state = ?7",
                params![
                    to.as_str(),
                    server_result.to_string(),
                    now_ms,
                    progress_text(RemediationProgress::Pending),
                    detail.to_string(),
                    id.as_str(),
                    from.as_str(),
                ],
            )?;
            one_row(changed, id, from, to)
        })
    }

    fn record_progress(
        &self,
        id: &ActionId,
        progress: RemediationProgress,
        detail: &serde_json::Value,
        now_ms: i64,
    ) -> Result<()> {
        let to = ActionState::Following;
        self.write("record_progress", |tx| {
            let from = check_state(
                tx,
                id,
                &[ActionState::Submitted, ActionState::Following],
                to,
            )?;
            let changed = tx.execute(
                "UPDATE actions SET state = ?1, progress = ?2, progress_json = ?3, \
                 polls = polls + 1, updated_at_ms = ?4 WHERE id = ?5 AND state = ?6",
                params![
                    to.as_str(),
                    progress_text(progress),
                    detail.to_string(),
                    now_ms,
                    id.as_str(),
                    from.as_str(),
                ],
            )?;
            one_row(changed, id, from, to)
        })
    }

    fn finish(
        &self,
        id: &ActionId,
        outcome: Outcome,
        detail: Option<&str>,
        now_ms: i64,
    ) -> Result<()> {
        let to = outcome.state();
        self.write("finish", |tx| {
            let from = check_state(tx, id, &ActionState::UNRESOLVED, to)?;
            let error = (outcome != Outcome::Succeeded).then_some(detail).flatten();
            let changed = tx.execute(
                "UPDATE actions SET state = ?1, last_error = COALESCE(?2, last_error), \
                 finished_at_ms = ?3, updated_at_ms = ?3 WHERE id = ?4 AND state = ?5",
                params![to.as_str(), error, now_ms, id.as_str(), from.as_str()],
            )?;
            one_row(changed, id, from, to)
        })
    }

    fn record_failed_attempt(
        &self,
        id: &ActionId,
        error: &str,
        why: Unsent,
        max_attempts: u32,
        now_ms: i64,
    ) -> Result<RetryDecision> {
        let column = why.column();
        self.write("record_failed_attempt", |tx| {
            let from = check_state(tx, id, &[ActionState::Planned], ActionState::Planned)?;
            let attempts: i64 = tx.query_row(
                &format!("SELECT {column} FROM actions WHERE id = ?1"),
                params![id.as_str()],
                |r| r.get(0),
            )?;
            let attempts = attempts.saturating_add(1);
            let gave_up = attempts >= i64::from(max_attempts);
            let to = if gave_up {
                ActionState::Failed
            } else {
                ActionState::Planned
            };
            let changed = tx.execute(
                &format!(
                    "UPDATE actions SET state = ?1, {column} = ?2, last_error = ?3, \
                     updated_at_ms = ?4, finished_at_ms = ?5 WHERE id = ?6 AND state = ?7"
                ),
                params![
                    to.as_str(),
                    attempts,
                    error,
                    now_ms,
                    gave_up.then_some(now_ms),
                    id.as_str(),
                    from.as_str(),
                ],
            )?;
            one_row(changed, id, from, to)?;
            let attempts = attempts.clamp(0, u32::MAX as i64) as u32;
            Ok(if gave_up {
                RetryDecision::GaveUp { attempts }
            } else {
                RetryDecision::Retry { attempts }
            })
        })
    }

    fn unresolved_actions(&self) -> Result<Vec<ActionRecord>> {
        self.list_actions(&ActionFilter {
            states: ActionState::UNRESOLVED.to_vec(),
            ..ActionFilter::default()
        })
        .map(|mut list| {
            list.reverse();
            list
        })
    }

    fn get_action(&self, id: &ActionId) -> Result<ActionRecord> {
        self.read("get_action", |tx| load(tx, id))
    }

    fn find_action_by_key(&self, key: &ActionKey) -> Result<Option<ActionRecord>> {
        self.read("find_action_by_key", |tx| {
            tx.query_row(
                &format!("SELECT {COLUMNS} FROM actions WHERE action_key = ?1"),
                params![key.to_hex()],
                RawAction::from_row,
            )
            .optional()?
            .map(RawAction::into_record)
            .transpose()
        })
    }

    fn resolve_action_id(&self, prefix: &str) -> Result<ActionId> {
        self.read("resolve_action_id", |tx| {
            if prefix.len() < 4
                || prefix.len() > 32
                || !prefix.bytes().all(|b| b.is_ascii_hexdigit())
            {
                return Err(Refusal::InvalidArgument(format!(
                    "`{prefix}` is not an action id or a prefix of one (4 to 32 hex digits)"
                ))
                .into());
            }
            let pattern = format!("{}%", prefix.to_ascii_lowercase());
            let ids: Vec<String> = tx.query_map(
                "SELECT id FROM actions WHERE id LIKE ?1 ORDER BY id",
                params![pattern],
                |r| r.get(0),
            )?;
            match ids.len() {
                0 => Err(Failure::NotFound(format!("action {prefix}"))),
                1 => Ok(ActionId(ids.into_iter().next().unwrap_or_default())),
                n => Err(Refusal::InvalidArgument(format!(
                    "`{prefix}` matches {n} actions; give more digits"
                ))
                .into()),
            }
        })
    }

    fn list_actions(&self, filter: &ActionFilter) -> Result<Vec<ActionRecord>> {
        self.read("list_actions", |tx| {
            let mut sql = format!("SELECT {COLUMNS} FROM actions WHERE 1 = 1");
            let mut args: Vec<Value> = Vec::new();
            if !filter.states.is_empty() {
                sql.push_str(" AND state IN (");
                for (i, state) in filter.states.iter().enumerate() {
                    sql.push_str(if i == 0 { "?" } else { ", ?" });
                    args.push(state.as_str().to_owned().into());
                }
                sql.push(')');
            }
            if let Some(plugin) = &filter.plugin {
                sql.push_str(" AND plugin = ?");
                args.push(plugin.as_str().to_owned().into());
            }
            if let Some(malop) = &filter.malop_id {
                sql.push_str(" AND malop_id = ?");
                args.push(malop.as_str().to_owned().into());
            }
            if let Some(since) = filter.created_since_ms {
                sql.push_str(" AND created_at_ms >= ?");
                args.push(since.into());
            }
            if let Some(since) = filter.finished_since_ms {
                sql.push_str(" AND finished_at_ms >= ?");
                args.push(since.into());
            }
            sql.push_str(" ORDER BY created_at_ms DESC, id DESC");
            if let Some(limit) = filter.limit {
                sql.push_str(" LIMIT ?");
                args.push(i64::from(limit).into());
            }
            let raws = tx.query_map(&sql, &dyn_params(&args), RawAction::from_row)?;
            raws.into_iter().map(RawAction::into_record).collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use riposte_domain::{
        ElementGuid, MachineGuid, RemediationKind, RemediationTarget, ReputationKey, Verdict,
    };

    fn digest() -> Sha256Digest {
        Sha256Digest::of(b"plugin component")
    }

    fn isolate(machines: &[&str]) -> ActionRequest {
        ActionRequest::Isolate {
            malop_id: Some(MalopId::new("11.1")),
            machines: machines.iter().map(|m| MachineGuid::new(*m)).collect(),
        }
    }

    fn new_action(request: ActionRequest) -> NewAction {
        NewAction::new(PluginName::new("isolator"), digest(), request, "test")
    }

    #[test]
    fn the_key_ignores_target_order_and_duplicates() {
        let a = ActionKey::compute(&isolate(&["m1", "m2"]), &digest());
        let b = ActionKey::compute(&isolate(&["m2", "m1", "m2"]), &digest());
        assert_eq!(a, b);
        let c = ActionKey::compute(&isolate(&["m1"]), &digest());
        assert_ne!(a, c);
        let other_plugin = ActionKey::compute(&isolate(&["m1", "m2"]), &Sha256Digest::of(b"x"));
        assert_ne!(a, other_plugin);
        let unisolate = ActionRequest::Unisolate {
            malop_id: Some(MalopId::new("11.1")),
            machines: vec![MachineGuid::new("m1"), MachineGuid::new("m2")],
        };
        assert_ne!(a, ActionKey::compute(&unisolate, &digest()));
        assert_ne!(a, ActionKey::for_undo(&a));
    }

    #[test]
    fn the_key_separates_what_changes_the_action() {
        let rep = |verdict, value: &str| ActionRequest::SetReputation {
            keys: vec![ReputationKey {
                kind: KeyKind::FileHash,
                value: value.into(),
            }],
            verdict,
            prevent: false,
        };
        let black = ActionKey::compute(&rep(Verdict::Blacklist, "ABCD"), &digest());
        assert_eq!(
            black,
            ActionKey::compute(&rep(Verdict::Blacklist, "abcd"), &digest()),
            "hashes are case-insensitive"
        );
        assert_ne!(
            black,
            ActionKey::compute(&rep(Verdict::Whitelist, "abcd"), &digest())
        );
        let remediate = |kind| ActionRequest::Remediate {
            malop_id: Some(MalopId::new("11.1")),
            targets: vec![RemediationTarget {
                machine_guid: MachineGuid::new("m1"),
                target_guid: ElementGuid::new("p1"),
                kind,
            }],
        };
        assert_ne!(
            ActionKey::compute(&remediate(RemediationKind::KillProcess), &digest()),
            ActionKey::compute(&remediate(RemediationKind::QuarantineFile), &digest()),
        );
        let form = ActionKey::canonical_form(&remediate(RemediationKind::KillProcess), &digest());
        assert!(form.starts_with("[\"riposte.action-key.v1\""), "{form}");
        assert!(
            form.contains("kill-process") && form.contains("KILL_PROCESS"),
            "{form}"
        );
    }

    #[test]
    fn states_round_trip_their_stored_text() {
        for state in ActionState::ALL {
            assert_eq!(ActionState::parse(state.as_str()), Some(state));
            assert_eq!(
                serde_json::to_value(state).unwrap(),
                serde_json::Value::String(state.as_str().into())
            );
        }
    }

    backend_tests! {
        fn an_action_walks_its_lifecycle(store) {
            let new = new_action(isolate(&["m1"]));
            let BeginOutcome::New(id) = store.begin_action(&new, 100).unwrap() else {
                panic!("expected a new action")
            };
            assert_eq!(store.get_action(&id).unwrap().state, ActionState::Planned);
            assert_eq!(store.unresolved_actions().unwrap().len(), 1);

            let err = store.record_progress(
                &id,
                RemediationProgress::Pending,
                &serde_json::json!({}),
                101,
            );
            assert!(matches!(
                err.unwrap_err().refusal(),
                Some(Refusal::IllegalTransition { .. })
            ));

            store
                .mark_submitted(
                    &id,
                    Some(&RemediationId::new("r-1")),
                    &serde_json::json!({"m1": "ok"}),
                    110,
                )
                .unwrap();
            store
                .record_progress(
                    &id,
                    RemediationProgress::InProgress,
                    &serde_json::json!({"n": 1}),
                    120,
                )
                .unwrap();
            store
                .record_progress(
                    &id,
                    RemediationProgress::Success,
                    &serde_json::json!({"n": 2}),
                    130,
                )
                .unwrap();
            store.finish(&id, Outcome::Succeeded, None, 140).unwrap();

            let record = store.get_action(&id).unwrap();
            assert_eq!(record.state, ActionState::Succeeded);
            assert_eq!(record.remediation_id, Some(RemediationId::new("r-1")));
            assert_eq!(record.progress, Some(RemediationProgress::Success));
            assert_eq!(record.polls, 2);
            assert_eq!(record.submitted_at_ms, Some(110));
            assert_eq!(record.finished_at_ms, Some(140));
            assert_eq!(record.kinds, vec![ActionKind::Isolate]);
            assert_eq!(record.request, isolate(&["m1"]));
            assert_eq!(record.request_hash, request_hash(&isolate(&["m1"])));
            assert!(store.unresolved_actions().unwrap().is_empty());

            assert!(store.finish(&id, Outcome::Failed, None, 150).is_err());

            match store.begin_action(&new, 200).unwrap() {
                BeginOutcome::AlreadyExists(existing) => {
                    assert_eq!(existing.id, id);
                    assert_eq!(existing.state, ActionState::Succeeded);
                }
                other => panic!("expected the existing action, got {other:?}"),
            }
        }
    }

    backend_tests! {
        fn a_queued_isolation_is_following_from_its_submission(store) {
            let id = store
                .begin_action(&new_action(isolate(&["m1"])), 100)
                .unwrap()
                .action_id()
                .clone();
            let answer = serde_json::json!({"m1": "Primed"});
            let waiting = serde_json::json!({"queued": {"p1": "m1"}});
            store.mark_queued(&id, &answer, &waiting, 110).unwrap();

            let record = store.get_action(&id).unwrap();
            assert_eq!(record.state, ActionState::Following);
            assert_eq!(record.server_result, Some(answer.clone()));
            assert_eq!(record.progress, Some(RemediationProgress::Pending));
            assert_eq!(record.progress_detail, Some(waiting.clone()));
            assert_eq!(record.polls, 1);
            assert_eq!(record.submitted_at_ms, Some(110));
            assert_eq!(store.unresolved_actions().unwrap().len(), 1);

            // Only from `Planned`: a second submission is refused.
            let again = store.mark_queued(&id, &answer, &waiting, 120);
            assert!(matches!(
                again.unwrap_err().refusal(),
                Some(Refusal::IllegalTransition { from: ActionState::Following, .. })
            ));
            assert!(store.mark_submitted(&id, None, &answer, 120).is_err());
        }
    }

    backend_tests! {
        fn retries_are_bounded(store) {
            let id = store
                .begin_action(&new_action(isolate(&["m1"])), 1)
                .unwrap()
                .action_id()
                .clone();
            // Held sends (throttled, or no login) have a count of their own: five of them
            // leave the three tries of other failures untouched.
            for n in 1..=5 {
                assert_eq!(
                    store.record_failed_attempt(&id, "429", Unsent::Held, 30, 1 + n).unwrap(),
                    RetryDecision::Retry { attempts: n as u32 }
                );
            }
            assert_eq!(
                store.record_failed_attempt(&id, "500", Unsent::Failed, 3, 7).unwrap(),
                RetryDecision::Retry { attempts: 1 }
            );
            assert_eq!(
                store.record_failed_attempt(&id, "500", Unsent::Failed, 3, 8).unwrap(),
                RetryDecision::Retry { attempts: 2 }
            );
            assert_eq!(
                store.record_failed_attempt(&id, "503", Unsent::Failed, 3, 9).unwrap(),
                RetryDecision::GaveUp { attempts: 3 }
            );
            let record = store.get_action(&id).unwrap();
            assert_eq!(record.state, ActionState::Failed);
            assert_eq!(record.attempts, 3);
            assert_eq!(record.last_error.as_deref(), Some("503"));
            assert!(store.record_failed_attempt(&id, "x", Unsent::Failed, 3, 10).is_err());

            // At its own bound, a held action gives up too.
            let id = store
                .begin_action(&new_action(isolate(&["m2"])), 1)
                .unwrap()
                .action_id()
                .clone();
            store.record_failed_attempt(&id, "429", Unsent::Held, 2, 2).unwrap();
            assert_eq!(
                store.record_failed_attempt(&id, "429", Unsent::Held, 2, 3).unwrap(),
                RetryDecision::GaveUp { attempts: 2 }
            );
        }
    }

    backend_tests! {
        fn shadowed_actions_are_final_and_never_unresolved(store) {
            let new = new_action(isolate(&["m1"])).with_mode(ActionMode::Shadow);
            let id = store.begin_action(&new, 1).unwrap().action_id().clone();
            let record = store.get_action(&id).unwrap();
            assert_eq!(record.state, ActionState::Shadowed);
            assert_eq!(record.finished_at_ms, Some(1));
            assert!(store.unresolved_actions().unwrap().is_empty());
            assert!(
                store
                    .mark_submitted(&id, None, &serde_json::Value::Null, 2)
                    .is_err()
            );
        }
    }

    backend_tests! {
        fn actions_are_listed_by_filter_and_found_by_prefix(store) {
            let a = store
                .begin_action(&new_action(isolate(&["m1"])), 1)
                .unwrap();
            let b = store
                .begin_action(&new_action(isolate(&["m2"])), 2)
                .unwrap();
            store
                .finish(b.action_id(), Outcome::Failed, Some("no"), 3)
                .unwrap();
            let all = store.list_actions(&ActionFilter::default()).unwrap();
            assert_eq!(all.len(), 2);
            assert_eq!(&all[0].id, b.action_id(), "newest first");
            let failed = store
                .list_actions(&ActionFilter {
                    states: vec![ActionState::Failed],
                    ..Default::default()
                })
                .unwrap();
            assert_eq!(failed.len(), 1);
            assert_eq!(failed[0].last_error.as_deref(), Some("no"));
            let limited = store
                .list_actions(&ActionFilter {
                    limit: Some(1),
                    plugin: Some(PluginName::new("isolator")),
                    malop_id: Some(MalopId::new("11.1")),
                    created_since_ms: Some(0),
                    ..Default::default()
                })
                .unwrap();
            assert_eq!(limited.len(), 1);

            let id = a.action_id();
            assert_eq!(&store.resolve_action_id(&id.as_str()[..12]).unwrap(), id);
            assert_eq!(
                &store
                    .resolve_action_id(&id.as_str().to_uppercase())
                    .unwrap(),
                id
            );
            assert!(store.resolve_action_id("zz").is_err());
            assert!(
                store
                    .resolve_action_id("ffffffffffff")
                    .unwrap_err()
                    .is_not_found()
            );
            assert_eq!(
                store
                    .find_action_by_key(&ActionKey::compute(&isolate(&["m1"]), &digest()))
                    .unwrap()
                    .unwrap()
                    .id,
                *id
            );
        }
    }

    #[test]
    fn action_ids_parse_only_full_hex() {
        let id = ActionId::generate();
        assert_eq!(ActionId::parse(id.as_str()), Some(id.clone()));
        assert_eq!(id.as_str().len(), 32);
        assert!(ActionId::parse("abc").is_none());
        assert!(
            "not-an-id-not-an-id-not-an-id-xx"
                .parse::<ActionId>()
                .is_err()
        );
    }
}
