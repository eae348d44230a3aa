//! The policy gate: decides every call a plugin makes before anything reaches the server
//! (guarantees G1, G3, G5, G6).
//!
//! # Order of checks
//!
//! For an action ([`Gate::decide`]):
//! 1. **sizes**: every id, list, key, comment and reason within [`riposte_domain::bounds`]; past them
//!    the call is refused as `quota-exceeded` and recorded as an excerpt with its size;
//! 2. **grant**: the operation, for `remediate` each remediation kind, and for a whitelist
//!    its own grant, must be granted;
//! 3. **arguments**: non-empty target lists, well-formed ids and reputation keys, `prevent`
//!    only with file hashes, a known status, a sane comment;
//! 4. **scope** (G11, [`scope`]): during `on-malop(M)` only what M names, with M as the
//!    `malop-id`; from `on-interval` nothing; unless the operator granted the plugin a wider
//!    scope for the kind. A plugin never whitelists its own Malop's root-cause or suspect
//!    hashes;
//! 5. **protected targets**: destructive kinds (kill, quarantine, delete a registry key,
//!    block, kill-prevent-unsuspend, isolate, blacklist) may not touch a protected
//!    machine (by guid, name glob or group); a machine whose name/group the caller could not
//!    resolve is treated as protected when name or group rules exist (fail closed); a
//!    blacklist may not touch a protected reputation value.
//!    *Inverses are not blocked*: un-isolate, unquarantine, unsuspend and remove-reputation
//!    restore a machine to normal, and the undo of a mistake must always be possible. They
//!    still need their grants and pass shadow mode, approval and budgets;
//! 6. **shadow**: if any kind of the request is not enforced for the plugin (shadow mode,
//!    not promoted), the whole request is shadowed: recorded as would-be, nothing spent;
//! 7. **approval**: if any kind needs an operator's approval, the request waits (nothing
//!    spent yet; once approved, [`Gate::decide_approved`] runs every other check again);
//! 8. **cooldown and budgets**: per-target cooldown of the plugin, then the plugin's budgets,
//!    then the global ones; all-or-nothing: a call that would exceed any budget is denied
//!    whole and spends nothing. Spending is atomic with the decision (see [`BudgetLedger`]).
//!
//! # Counting
//!
//! A call spends one unit per distinct (action kind, target): a target is a machine (a call
//! isolating 40 machines spends 40), a reputation key, or the Malop (status, comment). A
//! remediation that kills a process and quarantines a file on one machine spends one
//! `kill-process` and one `quarantine-file`; an `any` budget counts both. A unit spent on an
//! action that never reached the server, or on a target the server rejected as unknown, is
//! given back ([`Gate::refund`]).

mod ledger;
mod quota;
pub mod scope;
pub mod settings;

pub use ledger::{
    BudgetLedger, BudgetScope, ChargeRecord, LedgerView, MemoryLedger, Refusal, SpendPlan,
    evaluate_plan, has_cooldown, window_start,
};
pub use quota::{InvocationQuotas, QuotaBook, QuotaKind, QuotaRefusal, QuotaWindow};
pub use riposte_domain::bounds::MAX_COMMENT_CHARS;
pub use scope::{MalopScope, OutOfScope, Scope, ScopeViolation};
pub use settings::{
    ActionSelector, Approvals, Budget, Grants, LargeActions, Mode, PluginRules, PolicyConfig,
    ProtectedAssets, Quotas,
};

use riposte_audit::{DecisionKind, DecisionRecord};
use riposte_domain::bounds::{self, EXCERPT_BYTES, excerpt};
use riposte_domain::{
    ActionKind, ActionRequest, CallError, KeyKind, MachineGuid, Malop, MalopId, ManagementStatus,
    Operation, PluginName, ReputationKey, TimestampMs, Verdict,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;

/// Failures of the gate itself (not decisions).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A protected-asset glob does not compile.
    #[error("protected asset glob `{pattern}` is invalid: {detail}")]
    BadGlob {
        /// The pattern.
        pattern: String,
        /// Why.
        detail: String,
    },
    /// The budget ledger failed.
    #[error("budget ledger: {0}")]
    Ledger(String),
}

pub use riposte_domain::ErrorCategory;

/// The WIT `disposition` of an accepted action (the domain's mirror of it).
pub use riposte_domain::Disposition;

/// What an action touches: the unit of budgets and cooldowns.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "type", content = "id", rename_all = "kebab-case")]
pub enum TargetKey {
    /// A machine, by element guid.
    Machine(MachineGuid),
    /// A reputation key, its value normalised (lowercase; IPs in canonical form).
    Reputation(ReputationKey),
    /// A Malop (status, comment).
    Malop(MalopId),
}

impl TargetKey {
    /// A stable string for storage: `machine:<guid>`, `file-hash:<v>`, `ip-address:<v>`,
    /// `domain:<v>`, `malop:<id>`.
    pub fn storage_key(&self) -> String {
        match self {
            Self::Machine(g) => format!("machine:{g}"),
            Self::Reputation(k) => format!("{}:{}", key_kind_name(k.kind), k.value),
            Self::Malop(m) => format!("malop:{m}"),
        }
    }
}

impl fmt::Display for TargetKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Machine(g) => write!(f, "machine {g}"),
            Self::Reputation(k) => write!(f, "{} {}", key_kind_name(k.kind), k.value),
            Self::Malop(m) => write!(f, "Malop {m}"),
        }
    }
}

fn key_kind_name(kind: KeyKind) -> &'static str {
    match kind {
        KeyKind::FileHash => "file-hash",
        KeyKind::IpAddress => "ip-address",
        KeyKind::Domain => "domain",
    }
}

/// One unit of spending.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Charge {
    /// The action kind.
    pub kind: ActionKind,
    /// The target.
    pub target: TargetKey,
}

/// What the caller knows of a machine (from the Malop, the sensors list).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MachineFacts {
    /// Host name.
    pub name: Option<String>,
    /// Sensor group.
    pub group: Option<String>,
}

/// The machines of a request, resolved by the caller.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TargetFacts {
    machines: HashMap<MachineGuid, MachineFacts>,
    /// Machines the same invocation already reached with destructive actions (allowed or
    /// held): `[approvals.large]` counts them with the request's own, so a large action
    /// split into small calls is held all the same.
    reached: std::collections::HashSet<MachineGuid>,
}

impl TargetFacts {
    /// No facts.
    pub fn new() -> Self {
        Self::default()
    }

    /// Names and sensor groups of the machines of a Malop.
    pub fn from_malop(malop: &Malop) -> Self {
        let mut facts = Self::new();
        for m in &malop.machines {
            facts.insert(m.guid.clone(), Some(m.name.clone()), m.group.clone());
        }
        facts
    }

    /// Adds or replaces a machine.
    pub fn insert(&mut self, guid: MachineGuid, name: Option<String>, group: Option<String>) {
        self.machines.insert(guid, MachineFacts { name, group });
    }

    /// A machine's facts.
    pub fn get(&self, guid: &MachineGuid) -> Option<&MachineFacts> {
        self.machines.get(guid)
    }

    /// These facts, knowing that the same invocation already reached `machines` with
    /// destructive actions.
    pub fn with_reached(mut self, machines: impl IntoIterator<Item = MachineGuid>) -> Self {
        self.reached.extend(machines);
        self
    }

    /// How many distinct machines a destructive `request` reaches together with those the
    /// invocation already reached.
    fn reach_of(&self, request: &ActionRequest) -> usize {
        let own = request.machines();
        own.len() + self.reached.iter().filter(|m| !own.contains(m)).count()
    }
}

/// The protection rule that matched.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "rule", content = "value", rename_all = "kebab-case")]
pub enum ProtectionRule {
    /// `protected.machine_guids`.
    Guid,
    /// `protected.machine_name_globs` (the pattern).
    NameGlob(String),
    /// `protected.groups` (the group).
    Group(String),
    /// `protected.reputation_globs` (the pattern).
    ReputationGlob(String),
    /// The machine's name or group is unknown, and name/group rules exist: fail closed.
    Unresolved,
    /// The key is a root-cause or suspect hash of the Malop the plugin is handling: it may
    /// not whitelist it.
    MalopEvidence(MalopId),
}

impl fmt::Display for ProtectionRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Guid => f.write_str("its guid is in protected.machine_guids"),
            Self::NameGlob(p) => write!(f, "its name matches protected glob `{p}`"),
            Self::Group(g) => write!(f, "it is in protected group `{g}`"),
            Self::ReputationGlob(p) => write!(f, "it matches protected reputation glob `{p}`"),
            Self::Unresolved => f.write_str(
                "its name or group could not be resolved, so it is treated as protected",
            ),
            Self::MalopEvidence(malop) => write!(
                f,
                "it is a root-cause or suspect hash of Malop {malop}, which the plugin is handling; whitelisting it would blind the EDR to that Malop's malware"
            ),
        }
    }
}

/// A malformed request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", rename_all = "kebab-case")]
pub enum ArgumentError {
    /// A list that must not be empty is.
    EmptyList {
        /// `targets`, `machine-guids`, `keys`.
        what: &'static str,
    },
    /// An id is empty.
    EmptyId {
        /// Which id.
        what: &'static str,
    },
    /// An id holds whitespace or a control character.
    BadId {
        /// Which id.
        what: &'static str,
    },
    /// `prevent` is only valid for file hashes.
    PreventNeedsFileHash {
        /// The offending key.
        key: ReputationKey,
    },
    /// A reputation key's value does not fit its kind.
    MalformedKey {
        /// The key.
        key: ReputationKey,
        /// What was expected.
        expected: &'static str,
    },
    /// `unknown` is never accepted as a status.
    UnknownStatus,
    /// The comment is empty or too long.
    BadComment {
        /// Its length in characters.
        chars: usize,
    },
    /// The operation is an action: it must go through `decide`.
    NotAQuery(Operation),
}

impl fmt::Display for ArgumentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EmptyList { what } => write!(f, "`{what}` is empty"),
            Self::EmptyId { what } => write!(f, "a {what} is empty"),
            Self::BadId { what } => {
                write!(f, "a {what} holds whitespace or a control character")
            }
            Self::PreventNeedsFileHash { key } => write!(
                f,
                "`prevent` is only valid for file hashes, not {} `{}`",
                key_kind_name(key.kind),
                excerpt(&key.value, EXCERPT_BYTES)
            ),
            Self::MalformedKey { key, expected } => write!(
                f,
                "`{}` is not a valid {}: expected {expected}",
                bounds::log_safe(&key.value, EXCERPT_BYTES),
                key_kind_name(key.kind)
            ),
            Self::UnknownStatus => f.write_str("status `unknown` cannot be set"),
            Self::BadComment { chars } => write!(
                f,
                "a comment must have 1 to {MAX_COMMENT_CHARS} characters, this one has {chars}"
            ),
            Self::NotAQuery(op) => write!(f, "`{op}` is an action, not a query"),
        }
    }
}

/// An argument past the host's size bounds ([`riposte_domain::bounds`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", rename_all = "kebab-case")]
pub enum SizeError {
    /// A list has too many items.
    TooMany {
        /// Which list.
        what: &'static str,
        /// How many it has.
        count: usize,
        /// How many are allowed.
        max: usize,
    },
    /// A string is too long.
    TooLong {
        /// Which string.
        what: &'static str,
        /// Its size in bytes.
        bytes: usize,
        /// The bound, in bytes.
        max: usize,
    },
}

impl fmt::Display for SizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooMany { what, count, max } => {
                write!(f, "`{what}` has {count} items; at most {max} per call")
            }
            Self::TooLong { what, bytes, max } => {
                write!(f, "a {what} of {bytes} bytes; at most {max}")
            }
        }
    }
}

/// Checks one string's size.
pub fn check_len(what: &'static str, text: &str, max: usize) -> Result<(), SizeError> {
    if text.len() > max {
        Err(SizeError::TooLong {
            what,
            bytes: text.len(),
            max,
        })
    } else {
        Ok(())
    }
}

fn check_count(what: &'static str, count: usize, max: usize) -> Result<(), SizeError> {
    if count > max {
        Err(SizeError::TooMany { what, count, max })
    } else {
        Ok(())
    }
}

/// Checks every size of an action request and its stated reason against [`riposte_domain::bounds`]:
/// the first check of the gate, before anything else reads the request.
pub fn check_size(request: &ActionRequest, reason: &str) -> Result<(), SizeError> {
    use bounds::{MAX_COMMENT_CHARS, MAX_ID_BYTES, MAX_KEY_BYTES, MAX_KEYS, MAX_TARGETS};
    check_len("reason", reason, bounds::MAX_REASON_BYTES)?;
    if let Some(malop) = request.malop_id() {
        check_len("Malop id", malop.as_str(), MAX_ID_BYTES)?;
    }
    match request {
        ActionRequest::Remediate { targets, .. } => {
            check_count("targets", targets.len(), MAX_TARGETS)?;
            for t in targets {
                check_len("machine guid", t.machine_guid.as_str(), MAX_ID_BYTES)?;
                check_len("target guid", t.target_guid.as_str(), MAX_ID_BYTES)?;
            }
        }
        ActionRequest::Isolate { machines, .. } | ActionRequest::Unisolate { machines, .. } => {
            check_count("machine-guids", machines.len(), MAX_TARGETS)?;
            for m in machines {
                check_len("machine guid", m.as_str(), MAX_ID_BYTES)?;
            }
        }
        ActionRequest::SetReputation { keys, .. } | ActionRequest::RemoveReputation { keys } => {
            check_count("keys", keys.len(), MAX_KEYS)?;
            for k in keys {
                check_len("reputation key", &k.value, MAX_KEY_BYTES)?;
            }
        }
        ActionRequest::SetStatus { .. } => {}
        // Characters are counted by the argument check; this bounds the bytes first.
        ActionRequest::AddComment { text, .. } => {
            check_len("comment", text, 4 * MAX_COMMENT_CHARS)?
        }
    }
    Ok(())
}

/// Why the gate refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "kebab-case")]
pub enum DenyReason {
    /// The operation, or the remediation kind, is not granted.
    NotGranted {
        /// The operation.
        operation: Operation,
        /// The remediation kind, when the operation is granted but the kind is not.
        kind: Option<ActionKind>,
    },
    /// A destructive action would touch a protected asset.
    ProtectedTarget {
        /// The target.
        target: TargetKey,
        /// The machine's name, if known.
        name: Option<String>,
        /// The rule that matched.
        rule: ProtectionRule,
    },
    /// A budget would be exceeded.
    BudgetSpent {
        /// Whose budget.
        scope: BudgetScope,
        /// Which budget.
        budget: Budget,
        /// Units already spent in the window.
        used: u64,
        /// Units this call needs.
        requested: u64,
    },
    /// The same kind of action hit this target too recently.
    Cooldown {
        /// The target.
        target: TargetKey,
        /// The kind.
        kind: ActionKind,
        /// When it may be acted on again (ms).
        until_ms: TimestampMs,
    },
    /// The request is malformed.
    InvalidArgument(ArgumentError),
    /// The budget ledger failed: fail closed.
    LedgerUnavailable(String),
    /// The target is not named by the Malop being handled, or the call comes from an
    /// invocation with no Malop (G11).
    OutOfScope(ScopeViolation),
    /// An argument is past the host's size bounds.
    Oversized(SizeError),
    /// A query or kv write quota is spent.
    QuotaSpent(QuotaRefusal),
}

impl From<Refusal> for DenyReason {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Budget {
                scope,
                budget,
                used,
                requested,
            } => Self::BudgetSpent {
                scope,
                budget,
                used,
                requested,
            },
            Refusal::Cooldown {
                target,
                kind,
                until_ms,
            } => Self::Cooldown {
                target,
                kind,
                until_ms,
            },
        }
    }
}

impl DenyReason {
    /// The typed error the plugin receives (the WIT `error` variant), in plain words.
    pub fn to_call_error(&self) -> CallError {
        let detail = self.to_string();
        match self.category() {
            ErrorCategory::Denied => CallError::Denied(detail),
            ErrorCategory::BudgetExhausted => CallError::BudgetExhausted(detail),
            ErrorCategory::ProtectedTarget => CallError::ProtectedTarget(detail),
            ErrorCategory::InvalidArgument => CallError::InvalidArgument(detail),
            ErrorCategory::OutOfScope => CallError::OutOfScope(detail),
            ErrorCategory::QuotaExceeded => CallError::QuotaExceeded(detail),
        }
    }

    /// The WIT error case.
    pub fn category(&self) -> ErrorCategory {
        match self {
            Self::NotGranted { .. } | Self::LedgerUnavailable(_) => ErrorCategory::Denied,
            Self::ProtectedTarget { .. } => ErrorCategory::ProtectedTarget,
            Self::BudgetSpent { .. } | Self::Cooldown { .. } => ErrorCategory::BudgetExhausted,
            Self::InvalidArgument(_) => ErrorCategory::InvalidArgument,
            Self::OutOfScope(_) => ErrorCategory::OutOfScope,
            Self::Oversized(_) | Self::QuotaSpent(_) => ErrorCategory::QuotaExceeded,
        }
    }
}

impl fmt::Display for DenyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotGranted {
                operation,
                kind: None,
            } => write!(f, "operation `{operation}` is not granted to this plugin"),
            Self::NotGranted {
                operation,
                kind: Some(ActionKind::Whitelist),
            } => write!(
                f,
                "`{operation}` is granted but `whitelist` is not (grants.whitelist): whitelisting is granted on its own"
            ),
            Self::NotGranted {
                operation,
                kind: Some(kind),
            } => write!(
                f,
                "`{operation}` is granted but remediation kind `{kind}` is not"
            ),
            Self::ProtectedTarget { target, name, rule } => {
                match (target, name) {
                    (TargetKey::Machine(g), Some(n)) => write!(f, "machine `{n}` ({g})")?,
                    (t, _) => write!(f, "{t}")?,
                }
                write!(
                    f,
                    " is protected: {rule}; no destructive action may touch it"
                )
            }
            Self::BudgetSpent {
                scope,
                budget,
                used,
                requested,
            } => write!(
                f,
                "{scope} ({budget}) is spent: {used} used in the window, this call needs {requested}, {} left",
                budget.max.saturating_sub(*used)
            ),
            Self::Cooldown {
                target,
                kind,
                until_ms,
            } => write!(
                f,
                "{target} is cooling down after a recent `{kind}`: not before {}",
                riposte_audit::render_time_ms(*until_ms)
            ),
            Self::InvalidArgument(e) => write!(f, "invalid argument: {e}"),
            Self::LedgerUnavailable(e) => {
                write!(f, "the budget ledger is unavailable ({e}); refusing to act")
            }
            Self::OutOfScope(v) => write!(f, "out of scope: {v}"),
            Self::Oversized(e) => write!(f, "too large: {e}"),
            Self::QuotaSpent(q) => write!(f, "quota spent: {q}"),
        }
    }
}

/// The gate's verdict on one call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", rename_all = "kebab-case")]
pub enum Decision {
    /// Carry it out. For actions, `charges` were spent from the budgets.
    Allow {
        /// What was spent (empty for queries).
        charges: Vec<Charge>,
    },
    /// Record it as would-be; execute nothing.
    Shadow {
        /// The kinds not enforced for this plugin.
        kinds: Vec<ActionKind>,
    },
    /// Hold it for an operator.
    AwaitApproval {
        /// The kinds that need approval.
        kinds: Vec<ActionKind>,
        /// How many distinct people must approve it.
        quorum: u32,
    },
    /// Refuse it.
    Deny(DenyReason),
}

impl Decision {
    /// The verdict's kind, as filtered in the audit trail.
    pub fn kind(&self) -> DecisionKind {
        match self {
            Self::Allow { .. } => DecisionKind::Allow,
            Self::Shadow { .. } => DecisionKind::Shadow,
            Self::AwaitApproval { .. } => DecisionKind::AwaitApproval,
            Self::Deny(_) => DecisionKind::Deny,
        }
    }

    /// The machines `request` reaches once the gate decided this on it, which
    /// `[approvals.large]` counts for the rest of the invocation ([`TargetFacts::with_reached`]):
    /// a destructive request let through or held reaches its machines; any other, none.
    pub fn reached<'a>(&self, request: &'a ActionRequest) -> Vec<&'a MachineGuid> {
        let passes = matches!(self, Self::Allow { .. } | Self::AwaitApproval { .. });
        if passes && request.action_kinds().iter().any(|k| k.is_destructive()) {
            request.machines().into_iter().collect()
        } else {
            Vec::new()
        }
    }

    /// For accepted calls, the WIT disposition; `None` for denials.
    pub fn disposition(&self) -> Option<Disposition> {
        match self {
            Self::Allow { .. } => Some(Disposition::Submitted),
            Self::Shadow { .. } => Some(Disposition::Shadowed),
            Self::AwaitApproval { .. } => Some(Disposition::AwaitingApproval),
            Self::Deny(_) => None,
        }
    }

    /// For denials, the typed error the plugin receives; `None` otherwise.
    pub fn call_error(&self) -> Option<CallError> {
        match self {
            Self::Deny(reason) => Some(reason.to_call_error()),
            _ => None,
        }
    }

    /// For denials, the WIT error case and its detail; `None` otherwise.
    pub fn wit_error(&self) -> Option<(ErrorCategory, String)> {
        match self {
            Self::Deny(reason) => Some((reason.category(), reason.to_string())),
            _ => None,
        }
    }

    /// The decision as the audit trail records it.
    pub fn to_record(&self) -> DecisionRecord {
        DecisionRecord {
            kind: self.kind(),
            category: match self {
                Self::Deny(reason) => Some(reason.category()),
                _ => None,
            },
            detail: self.to_string(),
        }
    }
}

fn kinds_list(kinds: &[ActionKind]) -> String {
    kinds
        .iter()
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Allow { charges } if charges.is_empty() => f.write_str("allowed"),
            Self::Allow { charges } => {
                let mut per_kind: Vec<(ActionKind, usize)> = Vec::new();
                for c in charges {
                    match per_kind.iter_mut().find(|(k, _)| *k == c.kind) {
                        Some((_, n)) => *n += 1,
                        None => per_kind.push((c.kind, 1)),
                    }
                }
                let spent: Vec<String> =
                    per_kind.iter().map(|(k, n)| format!("{n} × {k}")).collect();
                write!(f, "allowed; spends {}", spent.join(", "))
            }
            Self::Shadow { kinds } => write!(
                f,
                "shadowed: the plugin runs in shadow mode for {}; recorded as a would-be action, not executed",
                kinds_list(kinds)
            ),
            Self::AwaitApproval { kinds, quorum: 1 } => write!(
                f,
                "awaiting approval: {} needs an operator's approval",
                kinds_list(kinds)
            ),
            Self::AwaitApproval { kinds, quorum } => write!(
                f,
                "awaiting approval: {} needs {quorum} distinct operators' approvals",
                kinds_list(kinds)
            ),
            Self::Deny(reason) => write!(f, "denied: {reason}"),
        }
    }
}

impl From<&Decision> for DecisionRecord {
    fn from(decision: &Decision) -> Self {
        decision.to_record()
    }
}

/// What the gate would do with an action, all checks run ([`Gate::evaluate`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Evaluation {
    /// What the gate decides, as the service would.
    pub decision: Decision,
    /// The kinds that would wait for an operator's approval (also when shadowed).
    pub approval: Vec<ActionKind>,
    /// The budgets and cooldowns it would meet: `Ok` with what it spends, or the refusal;
    /// `None` when an earlier check refused it.
    pub budget: Option<Result<Vec<Charge>, DenyReason>>,
}

/// What the gate needs of one plugin: its name and its rules.
#[derive(Clone, Debug, PartialEq)]
pub struct PluginPolicy {
    /// The plugin.
    pub name: PluginName,
    /// Its policy.
    pub rules: Arc<PluginRules>,
}

impl PluginPolicy {
    /// The policy of the plugin `name`.
    pub fn new(name: PluginName, rules: PluginRules) -> Self {
        Self {
            name,
            rules: Arc::new(rules),
        }
    }
}

/// Budget use, for `riposte status` and metrics.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BudgetStatus {
    /// Whose budget.
    pub scope: BudgetScope,
    /// Which.
    pub budget: Budget,
    /// Units spent in the current window.
    pub used: u64,
    /// Units left.
    pub remaining: u64,
}

struct Protection {
    guids: BTreeSet<MachineGuid>,
    names: globset::GlobSet,
    name_patterns: Vec<String>,
    groups: Vec<String>,
    reputation: globset::GlobSet,
    reputation_patterns: Vec<String>,
}

fn globset(patterns: &[String]) -> Result<globset::GlobSet, Error> {
    let mut set = globset::GlobSetBuilder::new();
    for pattern in patterns {
        let glob = globset::GlobBuilder::new(pattern)
            .case_insensitive(true)
            .build()
            .map_err(|e| Error::BadGlob {
                pattern: pattern.clone(),
                detail: e.kind().to_string(),
            })?;
        set.add(glob);
    }
    set.build().map_err(|e| Error::BadGlob {
        pattern: patterns.join(", "),
        detail: e.to_string(),
    })
}

impl Protection {
    fn new(assets: &ProtectedAssets) -> Result<Self, Error> {
        Ok(Self {
            guids: assets.machine_guids.iter().cloned().collect(),
            names: globset(&assets.machine_name_globs)?,
            name_patterns: assets.machine_name_globs.clone(),
            groups: assets.groups.iter().map(|g| g.to_lowercase()).collect(),
            reputation: globset(&assets.reputation_globs)?,
            reputation_patterns: assets.reputation_globs.clone(),
        })
    }

    fn machine(&self, guid: &MachineGuid, facts: &TargetFacts) -> Option<DenyReason> {
        let known = facts.get(guid);
        let name = known.and_then(|f| f.name.clone());
        let deny = |rule| {
            Some(DenyReason::ProtectedTarget {
                target: TargetKey::Machine(guid.clone()),
                name: name.clone(),
                rule,
            })
        };
        if self.guids.contains(guid) {
            return deny(ProtectionRule::Guid);
        }
        if !self.name_patterns.is_empty() {
            match known.and_then(|f| f.name.as_deref()) {
                None => return deny(ProtectionRule::Unresolved),
                Some(n) => {
                    if let Some(i) = self.names.matches(n).into_iter().min() {
                        return deny(ProtectionRule::NameGlob(self.name_patterns[i].clone()));
                    }
                }
            }
        }
        if !self.groups.is_empty() {
            match known.and_then(|f| f.group.as_deref()) {
                None => return deny(ProtectionRule::Unresolved),
                Some(g) => {
                    let g = g.to_lowercase();
                    if let Some(hit) = self.groups.iter().find(|p| **p == g) {
                        return deny(ProtectionRule::Group(hit.clone()));
                    }
                }
            }
        }
        None
    }

    fn reputation(&self, key: &ReputationKey) -> Option<DenyReason> {
        let i = self.reputation.matches(&key.value).into_iter().min()?;
        Some(DenyReason::ProtectedTarget {
            target: TargetKey::Reputation(key.clone()),
            name: None,
            rule: ProtectionRule::ReputationGlob(self.reputation_patterns[i].clone()),
        })
    }
}

/// The policy gate. Shared by all invocations (`Arc<Gate>`); budget state lives in its ledger.
pub struct Gate {
    protection: Protection,
    global_budgets: Vec<Budget>,
    approvals: Approvals,
    ledger: Arc<dyn BudgetLedger>,
}

impl fmt::Debug for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gate")
            .field("global_budgets", &self.global_budgets)
            .field("approvals", &self.approvals)
            .finish_non_exhaustive()
    }
}

impl Gate {
    /// A gate for the operator's policy.
    pub fn new(config: &PolicyConfig, ledger: Arc<dyn BudgetLedger>) -> Result<Self, Error> {
        Self::from_parts(
            &config.protected,
            config.global_budgets.clone(),
            config.approvals.clone(),
            ledger,
        )
    }

    /// A gate from its parts.
    pub fn from_parts(
        protected: &ProtectedAssets,
        global_budgets: Vec<Budget>,
        approvals: Approvals,
        ledger: Arc<dyn BudgetLedger>,
    ) -> Result<Self, Error> {
        Ok(Self {
            protection: Protection::new(protected)?,
            global_budgets,
            approvals,
            ledger,
        })
    }

    /// The ledger.
    pub fn ledger(&self) -> &Arc<dyn BudgetLedger> {
        &self.ledger
    }

    /// Decides a non-action call (`list-malops`, `get-malop`, `remediation-status`): grants
    /// only.
    pub fn check_query(&self, plugin: &PluginPolicy, operation: Operation) -> Decision {
        if operation.is_action() {
            return Decision::Deny(DenyReason::InvalidArgument(ArgumentError::NotAQuery(
                operation,
            )));
        }
        if !plugin.rules.grants.allows_operation(operation) {
            return Decision::Deny(DenyReason::NotGranted {
                operation,
                kind: None,
            });
        }
        Decision::Allow {
            charges: Vec::new(),
        }
    }

    /// The checks that need no state (sizes, grants, arguments, scope), with the plugin's
    /// stated reason: run before anything else reads the request (the ledger lookup of a
    /// repeated action included). `Ok` holds the request's charges.
    pub fn admit(
        &self,
        plugin: &PluginPolicy,
        request: &ActionRequest,
        reason: &str,
        scope: Scope<'_>,
    ) -> Result<Vec<Charge>, DenyReason> {
        check_size(request, reason).map_err(DenyReason::Oversized)?;
        self.stateless(plugin, request, scope)
    }

    fn stateless(
        &self,
        plugin: &PluginPolicy,
        request: &ActionRequest,
        scope: Scope<'_>,
    ) -> Result<Vec<Charge>, DenyReason> {
        let grants = &plugin.rules.grants;
        let operation = request.operation();
        if !grants.allows_operation(operation) {
            return Err(DenyReason::NotGranted {
                operation,
                kind: None,
            });
        }
        if let Some(kind) = request
            .action_kinds()
            .into_iter()
            .find(|k| !grants.allows_kind(*k))
        {
            return Err(DenyReason::NotGranted {
                operation,
                kind: Some(kind),
            });
        }
        let charges = check_arguments(request).map_err(DenyReason::InvalidArgument)?;
        if let Some(violation) = scope::confine(request, scope, &grants.wider_scope) {
            return Err(DenyReason::OutOfScope(violation));
        }
        if let Some(reason) = scope::guard_whitelist(request, scope) {
            return Err(reason);
        }
        Ok(charges)
    }

    /// Decides an action a plugin asks for from `scope` (see the module docs for the order of
    /// checks). An `Allow` has already spent its budget.
    pub fn decide(
        &self,
        plugin: &PluginPolicy,
        request: &ActionRequest,
        scope: Scope<'_>,
        targets: &TargetFacts,
        now_ms: TimestampMs,
    ) -> Decision {
        self.decide_inner(plugin, request, scope, targets, now_ms, false)
    }

    /// Decides an action an operator approved (or an undo an operator asked for): every check
    /// again except approval; its scope was checked when the plugin asked for it.
    pub fn decide_approved(
        &self,
        plugin: &PluginPolicy,
        request: &ActionRequest,
        targets: &TargetFacts,
        now_ms: TimestampMs,
    ) -> Decision {
        self.decide_inner(plugin, request, Scope::Operator, targets, now_ms, true)
    }

    fn decide_inner(
        &self,
        plugin: &PluginPolicy,
        request: &ActionRequest,
        scope: Scope<'_>,
        targets: &TargetFacts,
        now_ms: TimestampMs,
        approved: bool,
    ) -> Decision {
        let charges = match check_size(request, "")
            .map_err(DenyReason::Oversized)
            .and_then(|()| self.stateless(plugin, request, scope))
        {
            Ok(charges) => charges,
            Err(reason) => return Decision::Deny(reason),
        };
        if let Some(reason) = self.protected(request, targets) {
            return Decision::Deny(reason);
        }
        let shadowed = self.shadowed(plugin, request);
        if !shadowed.is_empty() {
            return Decision::Shadow { kinds: shadowed };
        }
        if !approved && let Some((kinds, quorum)) = self.held(request, targets) {
            return Decision::AwaitApproval { kinds, quorum };
        }
        match self.spend(plugin, &charges, now_ms) {
            Ok(()) => Decision::Allow { charges },
            Err(reason) => Decision::Deny(reason),
        }
    }

    /// The kinds of `request` the plugin does not enforce (shadow mode, not promoted).
    fn shadowed(&self, plugin: &PluginPolicy, request: &ActionRequest) -> Vec<ActionKind> {
        request
            .action_kinds()
            .into_iter()
            .filter(|k| !plugin.rules.enforces(*k))
            .collect()
    }

    /// The kinds of `request` that wait for an operator's approval.
    /// The kinds of `request` that wait for an operator and how many distinct approvers
    /// they need; `None` if it needs no approval. A destructive action reaching more
    /// machines than `[approvals.large]` allows (with those its invocation already reached,
    /// [`TargetFacts::with_reached`]) waits whatever its kind.
    fn held(
        &self,
        request: &ActionRequest,
        targets: &TargetFacts,
    ) -> Option<(Vec<ActionKind>, u32)> {
        let kinds = request.action_kinds();
        let mut held: Vec<ActionKind> = kinds
            .iter()
            .copied()
            .filter(|k| self.approvals.required.contains(k))
            .collect();
        let mut quorum = held
            .iter()
            .map(|k| self.approvals.quorum_of(*k))
            .max()
            .unwrap_or(1);
        if let Some(large) = self.approvals.large
            && targets.reach_of(request) > large.machines as usize
        {
            let destructive: Vec<ActionKind> =
                kinds.into_iter().filter(|k| k.is_destructive()).collect();
            if !destructive.is_empty() {
                held.extend(
                    destructive
                        .into_iter()
                        .filter(|k| !held.contains(k))
                        .collect::<Vec<_>>(),
                );
                quorum = quorum.max(large.quorum);
            }
        }
        held.sort();
        (!held.is_empty()).then_some((held, quorum))
    }

    /// Cooldowns and budgets, atomically with spending `charges`.
    fn spend(
        &self,
        plugin: &PluginPolicy,
        charges: &[Charge],
        now_ms: TimestampMs,
    ) -> Result<(), DenyReason> {
        let rules = &plugin.rules;
        let mut limits: Vec<(BudgetScope, Budget)> = rules
            .budgets
            .iter()
            .map(|b| (BudgetScope::Plugin(plugin.name.clone()), *b))
            .collect();
        limits.extend(
            self.global_budgets
                .iter()
                .map(|b| (BudgetScope::Global, *b)),
        );
        let plan = SpendPlan {
            plugin: &plugin.name,
            now_ms,
            charges,
            limits,
            cooldown_ms: rules.cooldown_secs.saturating_mul(1000),
        };
        match self.ledger.try_spend(&plan) {
            Ok(None) => Ok(()),
            Ok(Some(refusal)) => Err(refusal.into()),
            Err(e) => Err(DenyReason::LedgerUnavailable(e.to_string())),
        }
    }

    /// What the gate would do with an action, every check run even where an earlier one
    /// already decides (a shadowed action is also checked against approvals and budgets):
    /// the shadow plan of a replay. Budgets are spent as if the action ran, so the actions
    /// after it meet what it would have left.
    pub fn evaluate(
        &self,
        plugin: &PluginPolicy,
        request: &ActionRequest,
        reason: &str,
        scope: Scope<'_>,
        targets: &TargetFacts,
        now_ms: TimestampMs,
    ) -> Evaluation {
        let checked = self
            .admit(plugin, request, reason, scope)
            .and_then(|charges| match self.protected(request, targets) {
                Some(reason) => Err(reason),
                None => Ok(charges),
            });
        let charges = match checked {
            Ok(charges) => charges,
            Err(reason) => {
                return Evaluation {
                    decision: Decision::Deny(reason),
                    approval: Vec::new(),
                    budget: None,
                };
            }
        };
        let shadowed = self.shadowed(plugin, request);
        let hold = self.held(request, targets);
        let budget = self
            .spend(plugin, &charges, now_ms)
            .map(|()| charges.clone());
        let decision = if !shadowed.is_empty() {
            Decision::Shadow { kinds: shadowed }
        } else if let Some((kinds, quorum)) = &hold {
            let (kinds, quorum) = (kinds.clone(), *quorum);
            Decision::AwaitApproval { kinds, quorum }
        } else {
            match &budget {
                Ok(charges) => Decision::Allow {
                    charges: charges.clone(),
                },
                Err(reason) => Decision::Deny(reason.clone()),
            }
        };
        Evaluation {
            decision,
            approval: hold.map(|(kinds, _)| kinds).unwrap_or_default(),
            budget: Some(budget),
        }
    }

    /// Gives back the budget units `charges` of `plugin` spent at or after `since_ms`: for an
    /// action that certainly never reached the server, or targets the server rejected as
    /// unknown. Returns how many units were given back.
    pub fn refund(
        &self,
        plugin: &PluginName,
        charges: &[Charge],
        since_ms: TimestampMs,
    ) -> Result<usize, Error> {
        if charges.is_empty() {
            return Ok(0);
        }
        self.ledger.refund(plugin, charges, since_ms)
    }

    fn protected(&self, request: &ActionRequest, facts: &TargetFacts) -> Option<DenyReason> {
        match request {
            ActionRequest::Remediate { targets, .. } => targets
                .iter()
                .filter(|t| ActionKind::from(t.kind).is_destructive())
                .find_map(|t| self.protection.machine(&t.machine_guid, facts)),
            ActionRequest::Isolate { machines, .. } => machines
                .iter()
                .find_map(|m| self.protection.machine(m, facts)),
            ActionRequest::SetReputation {
                keys,
                verdict: Verdict::Blacklist,
                ..
            } => keys.iter().find_map(|k| {
                let key = normalise_key(k).unwrap_or_else(|_| k.clone());
                self.protection.reputation(&key)
            }),
            _ => None,
        }
    }

    /// How much of every budget that applies to `plugin` (or only the global ones, for
    /// `None`) is used now.
    pub fn budget_status(
        &self,
        plugin: Option<&PluginPolicy>,
        now_ms: TimestampMs,
    ) -> Result<Vec<BudgetStatus>, Error> {
        let mut budgets: Vec<(BudgetScope, Budget)> = Vec::new();
        if let Some(p) = plugin {
            budgets.extend(
                p.rules
                    .budgets
                    .iter()
                    .map(|b| (BudgetScope::Plugin(p.name.clone()), *b)),
            );
        }
        budgets.extend(
            self.global_budgets
                .iter()
                .map(|b| (BudgetScope::Global, *b)),
        );
        budgets
            .into_iter()
            .map(|(scope, budget)| {
                let who = match &scope {
                    BudgetScope::Global => None,
                    BudgetScope::Plugin(name) => Some(name),
                };
                let used = self.ledger.used(
                    who,
                    budget.action,
                    window_start(now_ms, budget.window_secs),
                )?;
                Ok(BudgetStatus {
                    remaining: budget.max.saturating_sub(used),
                    scope,
                    budget,
                    used,
                })
            })
            .collect()
    }
}

/// Checks a request's arguments; returns its charges (one per distinct kind and target).
pub fn check_arguments(request: &ActionRequest) -> Result<Vec<Charge>, ArgumentError> {
    let mut charges: BTreeSet<Charge> = BTreeSet::new();
    match request {
        ActionRequest::Remediate { malop_id, targets } => {
            check_optional_malop(malop_id)?;
            if targets.is_empty() {
                return Err(ArgumentError::EmptyList { what: "targets" });
            }
            for t in targets {
                check_id("machine guid", t.machine_guid.as_str())?;
                check_id("target guid", t.target_guid.as_str())?;
                charges.insert(Charge {
                    kind: t.kind.into(),
                    target: TargetKey::Machine(t.machine_guid.clone()),
                });
            }
        }
        ActionRequest::Isolate { malop_id, machines }
        | ActionRequest::Unisolate { malop_id, machines } => {
            check_optional_malop(malop_id)?;
            if machines.is_empty() {
                return Err(ArgumentError::EmptyList {
                    what: "machine-guids",
                });
            }
            let kind = request.action_kinds()[0];
            for m in machines {
                check_id("machine guid", m.as_str())?;
                charges.insert(Charge {
                    kind,
                    target: TargetKey::Machine(m.clone()),
                });
            }
        }
        ActionRequest::SetReputation {
            keys,
            prevent,
            verdict,
        } => {
            if keys.is_empty() {
                return Err(ArgumentError::EmptyList { what: "keys" });
            }
            for key in keys {
                if *prevent && key.kind != KeyKind::FileHash {
                    return Err(ArgumentError::PreventNeedsFileHash { key: key.clone() });
                }
                charges.insert(Charge {
                    kind: ActionKind::of_verdict(*verdict),
                    target: TargetKey::Reputation(normalise_key(key)?),
                });
            }
        }
        ActionRequest::RemoveReputation { keys } => {
            if keys.is_empty() {
                return Err(ArgumentError::EmptyList { what: "keys" });
            }
            for key in keys {
                charges.insert(Charge {
                    kind: ActionKind::RemoveReputation,
                    target: TargetKey::Reputation(normalise_key(key)?),
                });
            }
        }
        ActionRequest::SetStatus { malop_id, status } => {
            check_malop(malop_id)?;
            if *status == ManagementStatus::Unknown {
                return Err(ArgumentError::UnknownStatus);
            }
            charges.insert(Charge {
                kind: ActionKind::SetStatus,
                target: TargetKey::Malop(malop_id.clone()),
            });
        }
        ActionRequest::AddComment { malop_id, text } => {
            check_malop(malop_id)?;
            let chars = text.chars().count();
            if text.trim().is_empty() || chars > MAX_COMMENT_CHARS {
                return Err(ArgumentError::BadComment { chars });
            }
            charges.insert(Charge {
                kind: ActionKind::AddComment,
                target: TargetKey::Malop(malop_id.clone()),
            });
        }
    }
    Ok(charges.into_iter().collect())
}

fn check_malop(id: &MalopId) -> Result<(), ArgumentError> {
    check_id("Malop id", id.as_str())
}

/// An id must be non-empty and one token: no whitespace, no control character.
fn check_id(what: &'static str, id: &str) -> Result<(), ArgumentError> {
    if id.trim().is_empty() {
        Err(ArgumentError::EmptyId { what })
    } else if bounds::has_forbidden_id_char(id) {
        Err(ArgumentError::BadId { what })
    } else {
        Ok(())
    }
}

fn check_optional_malop(id: &Option<MalopId>) -> Result<(), ArgumentError> {
    id.as_ref().map_or(Ok(()), check_malop)
}

/// `request` with each target once, and its reputation keys in their canonical form
/// (trimmed, lowercase hashes and domains without a trailing dot, canonical IPs): what the
/// protection check, the ledger (its key and its record) and the server all see, so that
/// padding a key neither slips it past a protected-asset pattern nor makes the same key a
/// new action, and a target named a thousand times is recorded once. A key whose shape is
/// wrong is left as it is (the gate refuses it).
pub fn canonical(request: ActionRequest) -> ActionRequest {
    fn once<T: Clone + Eq + std::hash::Hash>(items: Vec<T>) -> Vec<T> {
        let mut seen = std::collections::HashSet::new();
        items
            .into_iter()
            .filter(|i| seen.insert(i.clone()))
            .collect()
    }
    let canonical_keys = |keys: Vec<ReputationKey>| {
        once(
            keys.into_iter()
                .map(|k| normalise_key(&k).unwrap_or(k))
                .collect(),
        )
    };
    match request {
        ActionRequest::Remediate { malop_id, targets } => ActionRequest::Remediate {
            malop_id,
            targets: once(targets),
        },
        ActionRequest::Isolate { malop_id, machines } => ActionRequest::Isolate {
            malop_id,
            machines: once(machines),
        },
        ActionRequest::Unisolate { malop_id, machines } => ActionRequest::Unisolate {
            malop_id,
            machines: once(machines),
        },
        ActionRequest::SetReputation {
            keys,
            verdict,
            prevent,
        } => ActionRequest::SetReputation {
            keys: canonical_keys(keys),
            verdict,
            prevent,
        },
        ActionRequest::RemoveReputation { keys } => ActionRequest::RemoveReputation {
            keys: canonical_keys(keys),
        },
        other => other,
    }
}

/// Checks a reputation key's shape and normalises its value (lowercase hashes and domains,
/// canonical IPs).
pub(crate) fn normalise_key(key: &ReputationKey) -> Result<ReputationKey, ArgumentError> {
    let value = key.value.trim();
    let bad = |expected| ArgumentError::MalformedKey {
        key: key.clone(),
        expected,
    };
    let normal = match key.kind {
        KeyKind::FileHash => {
            if !matches!(value.len(), 32 | 40 | 64) || !value.chars().all(|c| c.is_ascii_hexdigit())
            {
                return Err(bad("an md5 (32), sha1 (40) or sha256 (64) hex digest"));
            }
            value.to_ascii_lowercase()
        }
        KeyKind::IpAddress => value
            .parse::<std::net::IpAddr>()
            .map_err(|_| bad("an IPv4 or IPv6 address"))?
            .to_string(),
        KeyKind::Domain => {
            let d = value.trim_end_matches('.').to_ascii_lowercase();
            let ok = !d.is_empty()
                && d.len() <= 253
                && d.split('.').all(|label| {
                    !label.is_empty()
                        && label.len() <= 63
                        && label
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                });
            if !ok {
                return Err(bad("a domain name such as `evil.example.com`"));
            }
            d
        }
    };
    Ok(ReputationKey {
        kind: key.kind,
        value: normal,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked_and_normalised() {
        let k = |kind, v: &str| ReputationKey {
            kind,
            value: v.to_string(),
        };
        assert_eq!(
            normalise_key(&k(KeyKind::FileHash, "D41D8CD98F00B204E9800998ECF8427E"))
                .unwrap()
                .value,
            "d41d8cd98f00b204e9800998ecf8427e"
        );
        assert!(normalise_key(&k(KeyKind::FileHash, "xyz")).is_err());
        assert_eq!(
            normalise_key(&k(KeyKind::IpAddress, "10.0.0.1"))
                .unwrap()
                .value,
            "10.0.0.1"
        );
        assert!(normalise_key(&k(KeyKind::IpAddress, "10.0.0.300")).is_err());
        assert_eq!(
            normalise_key(&k(KeyKind::Domain, "Evil.Example.COM."))
                .unwrap()
                .value,
            "evil.example.com"
        );
        assert!(normalise_key(&k(KeyKind::Domain, "bad domain")).is_err());
    }

    #[test]
    fn wit_mapping() {
        let d = Decision::Deny(DenyReason::Cooldown {
            target: TargetKey::Machine(MachineGuid::new("m")),
            kind: ActionKind::Isolate,
            until_ms: 0,
        });
        assert_eq!(d.wit_error().unwrap().0, ErrorCategory::BudgetExhausted);
        assert_eq!(d.disposition(), None);
        assert_eq!(
            Decision::Shadow { kinds: vec![] }.disposition(),
            Some(Disposition::Shadowed)
        );
        assert_eq!(d.to_record().kind, DecisionKind::Deny);
        assert!(
            matches!(d.call_error(), Some(CallError::BudgetExhausted(w)) if w.contains("cooling down"))
        );
    }
}
