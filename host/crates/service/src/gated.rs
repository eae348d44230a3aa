//! The host that answers a plugin's imports in the service: every call passes the policy
//! gate and is audited; allowed actions go through the exactly-once ledger to the executor.

use super::audit::Auditor;
use super::db;
use super::executor::{Executor, PylumDirectory, Submitted};
use super::notify;
use riposte_client::Client;
use riposte_client::RemediationReport;
use riposte_domain::bounds::{self, EXCERPT_BYTES, MAX_ID_BYTES, excerpt};
use riposte_domain::now_ms;
use riposte_domain::{
    ActionRequest, CallError, Disposition, Malop, MalopId, Operation, PluginName, Receipt,
    RemediationProgress, Sha256Digest, TimestampMs,
};
use riposte_policy::{
    Decision, DenyReason, Gate, InvocationQuotas, MalopScope, PluginPolicy, QuotaBook, QuotaKind,
    Scope, TargetFacts, check_len,
};
use riposte_runtime::{BoxFuture, CallContext, LogLevel, PluginHost};
use riposte_store::prelude::*;
use riposte_store::{
    ActionId, ActionKey, ActionMode, ActionRecord, ActionState, BeginOutcome, NewAction, Store,
};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Everything the service shares between invocations.
pub struct Core {
    pub gate: Gate,
    pub store: Arc<Store>,
    pub auditor: Arc<Auditor>,
    pub executor: Executor,
    pub client: Arc<Client>,
    /// Seconds a pending approval waits before it expires.
    pub approval_expiry_secs: u64,
    /// Per-plugin kv quota, in bytes.
    pub kv_limit_bytes: u64,
    /// The per-minute query and kv write windows of every plugin.
    /// Shared with the cores of later reloads: a reload does not reset a plugin's minute.
    pub quotas: Arc<QuotaBook>,
    /// Remediations being followed in the background: following them does not count
    /// against the plugin's time, and the cycle waits for them before it ends.
    pub followers: std::sync::Mutex<Vec<Follower>>,
    /// Where approvals needed and budgets tripped are notified (never waits).
    pub notifier: riposte_notify::Notifier,
}

/// A remediation followed in the background: what it is, and its task.
pub struct Follower {
    /// Said when the cycle waits for it: the action, its kinds and its Malop.
    what: String,
    task: tokio::task::JoinHandle<()>,
}

/// How many followed remediations a wait names one by one.
pub(crate) const FOLLOWERS_NAMED: usize = 10;

impl Core {
    /// The same connections, ledger, audit trail and quota windows under new rules (a
    /// reload): `gate` and the approval expiry.
    pub fn under(&self, gate: Gate, approval_expiry_secs: u64) -> Self {
        Self {
            gate,
            store: self.store.clone(),
            auditor: self.auditor.clone(),
            executor: self.executor.clone(),
            client: self.client.clone(),
            approval_expiry_secs,
            kv_limit_bytes: self.kv_limit_bytes,
            quotas: self.quotas.clone(),
            followers: Default::default(),
            notifier: self.notifier.clone(),
        }
    }

    /// Runs a decision of the gate (`decide` or `decide_approved`) on tokio's blocking pool:
    /// an allowed action spends its budget in the store, a transaction with an fsync. If the
    /// blocking task fails, the action is denied (nothing was spent, or the spend is lost
    /// with the task: fail closed).
    pub(crate) async fn decide_off_worker(
        self: &Arc<Self>,
        decide: impl FnOnce(&Gate) -> Decision + Send + 'static,
    ) -> Decision {
        let core = self.clone();
        tokio::task::spawn_blocking(move || decide(&core.gate))
            .await
            .unwrap_or_else(|join| {
                Decision::Deny(DenyReason::LedgerUnavailable(format!(
                    "the budget check did not complete: {join}"
                )))
            })
    }

    /// Follows a submitted remediation to its final state in the background.
    pub(crate) fn follow_in_background(
        self: &Arc<Self>,
        record: ActionRecord,
        report: RemediationReport,
    ) {
        let kinds: Vec<&str> = record.kinds.iter().map(|k| k.name()).collect();
        let what = match &record.malop_id {
            Some(malop) => format!("{} ({}, Malop {malop})", record.id, kinds.join("+")),
            None => format!("{} ({})", record.id, kinds.join("+")),
        };
        let core = self.clone();
        let task = tokio::spawn(async move {
            core.executor.follow(&record, report).await;
        });
        self.followers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Follower { what, task });
    }

    /// Waits until every background follow-up has reached a final state (or its limit).
    pub(crate) async fn drain_followers(&self) {
        loop {
            let pending: Vec<_> =
                std::mem::take(&mut *self.followers.lock().unwrap_or_else(|p| p.into_inner()));
            if pending.is_empty() {
                return;
            }
            let mut named: Vec<&str> = pending
                .iter()
                .take(FOLLOWERS_NAMED)
                .map(|f| f.what.as_str())
                .collect();
            if pending.len() > FOLLOWERS_NAMED {
                named.push("...");
            }
            tracing::info!(
                remediations = pending.len(),
                "following remediations to their final status before the cycle ends: {}",
                named.join(", ")
            );
            for Follower { task, .. } in pending {
                if let Err(e) = task.await {
                    tracing::error!("a remediation follow-up task failed: {e}");
                }
            }
        }
    }
}

/// The host of one invocation: one plugin, and the Malop it is handling (if any).
pub struct GatedHost {
    core: Arc<Core>,
    policy: PluginPolicy,
    digest: Sha256Digest,
    malop: Option<Malop>,
    /// What the Malop names (G11); `None` for `on-interval`.
    scope: Option<MalopScope>,
    /// What the invocation used of its quotas.
    quotas: InvocationQuotas,
    /// Machines the invocation's destructive actions reached (allowed or held), which
    /// `[approvals.large]` counts with each new request's.
    reached: std::sync::Mutex<std::collections::HashSet<riposte_domain::MachineGuid>>,
}

impl GatedHost {
    /// A host for an invocation of `policy`'s plugin: `on-malop` of `malop`, or `on-interval`
    /// for `None`.
    pub fn new(
        core: Arc<Core>,
        policy: PluginPolicy,
        digest: Sha256Digest,
        malop: Option<Malop>,
    ) -> Self {
        let scope = malop.as_ref().map(MalopScope::of);
        Self {
            core,
            policy,
            digest,
            malop,
            scope,
            quotas: InvocationQuotas::default(),
            reached: Default::default(),
        }
    }

    fn scope(&self) -> Scope<'_> {
        self.scope.as_ref().map_or(Scope::Interval, Scope::Malop)
    }

    /// What the invocation used of its quotas, and what was refused for lack of them (for
    /// its audit record).
    pub(crate) fn quota_use(&self) -> serde_json::Value {
        let q = &self.quotas;
        json!({
            "queries": q.used(QuotaKind::Queries),
            "kv_writes": q.used(QuotaKind::KvWrites),
            "calls": q.used(QuotaKind::Calls),
            "refused": {
                "queries": q.refused(QuotaKind::Queries),
                "kv_writes": q.refused(QuotaKind::KvWrites),
                "calls": q.refused(QuotaKind::Calls),
            },
        })
    }

    fn facts(&self) -> TargetFacts {
        let reached = self.reached.lock().unwrap_or_else(|p| p.into_inner());
        self.malop
            .as_ref()
            .map(TargetFacts::from_malop)
            .unwrap_or_default()
            .with_reached(reached.iter().cloned())
    }

    /// Notes the machines a request reaches once the gate decided on it.
    fn note_reached(&self, request: &ActionRequest, decision: &Decision) {
        let machines = decision.reached(request);
        if !machines.is_empty() {
            let mut reached = self.reached.lock().unwrap_or_else(|p| p.into_inner());
            reached.extend(machines.into_iter().cloned());
        }
    }

    fn pylums(&self) -> PylumDirectory {
        self.malop
            .as_ref()
            .map(super::executor::pylum_directory)
            .unwrap_or_default()
    }

    fn name(&self) -> &PluginName {
        &self.policy.name
    }

    /// Takes one unit of `kind` from the plugin's quotas.
    fn take(&self, kind: QuotaKind) -> Result<(), DenyReason> {
        self.core
            .quotas
            .take(
                self.name(),
                &self.policy.rules.quotas,
                &self.quotas,
                kind,
                now_ms(),
            )
            .map_err(DenyReason::QuotaSpent)
    }

    /// Counts an audited call. Past `calls_per_invocation` the call is refused; only the
    /// first refusal is audited (through `audit`), the rest are counted in the invocation's
    /// record, so a flood cannot grow the audit trail.
    fn take_call(&self, audit: impl FnOnce(&Decision)) -> Result<(), CallError> {
        match self.take(QuotaKind::Calls) {
            Ok(()) => Ok(()),
            Err(reason) => {
                let decision = Decision::Deny(reason);
                if self.quotas.refused(QuotaKind::Calls) == 1 {
                    audit(&decision);
                }
                Err(decision
                    .call_error()
                    .unwrap_or_else(|| CallError::QuotaExceeded("calls".into())))
            }
        }
    }

    /// Grants, then `checks` (sizes, quotas), then the audit of a query; `Err` if refused.
    fn gate_query(
        &self,
        call: &CallContext,
        operation: Operation,
        arguments: serde_json::Value,
        checks: impl FnOnce() -> Result<(), DenyReason>,
    ) -> Result<(), CallError> {
        let auditor = &self.core.auditor;
        self.take_call(|d| auditor.query(call, operation, arguments.clone(), d))?;
        let mut decision = self.core.gate.check_query(&self.policy, operation);
        if decision.call_error().is_none()
            && let Err(reason) = checks()
        {
            decision = Decision::Deny(reason);
        }
        let refused = decision.call_error();
        auditor.query(call, operation, arguments, &decision);
        refused.map_or(Ok(()), Err)
    }

    async fn act_inner(
        &self,
        call: &CallContext,
        request: ActionRequest,
        reason: String,
    ) -> Result<Receipt, CallError> {
        let auditor = &self.core.auditor;
        self.take_call(|d| auditor.decision(call, &request, &reason, d, None))?;
        // Sizes, grants, arguments and scope first: a refused request is audited as a
        // bounded excerpt and never reaches the ledger.
        if let Err(denied) = self
            .core
            .gate
            .admit(&self.policy, &request, &reason, self.scope())
        {
            let decision = Decision::Deny(denied);
            auditor.decision(call, &request, &reason, &decision, None);
            return Err(decision
                .call_error()
                .unwrap_or_else(|| CallError::Denied("refused".into())));
        }
        // From here on, reputation keys in one spelling each: the protection check, the
        // ledger's key and the server see the same. A reputation request ledgered before keys
        // were made canonical carries the key of its plugin's spelling: that row is looked
        // for too, so nothing is sent twice.
        let spelled = matches!(
            request,
            ActionRequest::SetReputation { .. } | ActionRequest::RemoveReputation { .. }
        )
        .then(|| request.clone());
        let request = riposte_policy::canonical(request);
        let shadowed = self.shadows(&request);
        let ledger_key = |key: ActionKey| if shadowed { shadow_key(&key) } else { key };
        // Targets this plugin already asked for on this Malop (a Malop offered again, with
        // more of it readable) are answered from the ledger, not sent again.
        let request = if shadowed {
            request
        } else {
            match self.without_targets_asked_before(&request).await? {
                Remaining::All => request,
                Remaining::Some(rest) => rest,
                Remaining::None(earlier) => {
                    auditor.duplicate(call, &request, &earlier);
                    return Ok(receipt_of(&earlier));
                }
            }
        };
        let machines = self.malop.iter().flat_map(|m| &m.machines);
        let mut new = NewAction::new(
            self.name().clone(),
            self.digest,
            request.clone(),
            reason.clone(),
        )
        .with_machine_names(machines.map(|m| (&m.guid, m.name.as_str())));
        new.key = ledger_key(new.key);
        let as_spelled = spelled
            .filter(|spelled| *spelled != request)
            .map(|spelled| {
                ledger_key(
                    NewAction::new(self.name().clone(), self.digest, spelled, String::new()).key,
                )
            });
        let store = &self.core.store;
        let now = now_ms();
        // The ledger lookup, the budget spend (in `decide`), the ledger row and the `Unsent`
        // guard below follow one another with no await point in between: the invocation's
        // deadline drops this future at an await, and must not fall between them (a budget
        // spent for no action, or a planned row that recovery would send after the plugin was
        // told nothing). So these transactions run with the worker stepped aside
        // (`db::in_place`), not on the blocking pool behind an await. Without an await here,
        // the invocations of a batch that only plan (shadow mode) finish together and share
        // one group commit of their handled marks (`Service::evaluate_batch`); with one, they
        // finished one by one, each group a durable commit of its own.
        let expires_at_ms = now + (self.core.approval_expiry_secs as i64) * 1000;
        let step = db::in_place(|| {
            // Asked for before (an earlier run, or a Malop handled again): answer from the
            // ledger, spend nothing and send nothing.
            for key in std::iter::once(&new.key).chain(as_spelled.as_ref()) {
                if let Some(existing) = store.find_action_by_key(key)? {
                    return Ok(Ledgered::Before(Box::new(existing)));
                }
            }
            let decision =
                self.core
                    .gate
                    .decide(&self.policy, &request, self.scope(), &self.facts(), now);
            self.note_reached(&request, &decision);
            let mode = match &decision {
                Decision::Deny(_) => return Ok(Ledgered::Now(decision, None, None)),
                Decision::Shadow { .. } => ActionMode::Shadow,
                Decision::AwaitApproval { quorum, .. } => ActionMode::AwaitApproval {
                    expires_at_ms,
                    quorum: *quorum,
                },
                Decision::Allow { .. } => ActionMode::Execute,
            };
            new.mode = mode;
            let begun = store.begin_action(&new, now)?;
            Ok(Ledgered::Now(decision, Some(mode), Some(begun)))
        })
        .map_err(internal)?;
        let (decision, mode, begun) = match step {
            Ledgered::Before(existing) => {
                auditor.duplicate(call, &request, &existing);
                return Ok(receipt_of(&existing));
            }
            Ledgered::Now(decision, mode, begun) => (decision, mode, begun),
        };
        let (Some(mode), Some(begun)) = (mode, begun) else {
            auditor.decision(call, &request, &reason, &decision, None);
            notify::budget_tripped(&self.core.notifier, self.name(), &decision);
            return Err(decision
                .call_error()
                .unwrap_or_else(|| CallError::Denied("refused".into())));
        };
        auditor.decision(
            call,
            &request,
            &reason,
            &decision,
            Some(begun.action_id().as_str()),
        );
        let id = match begun {
            BeginOutcome::AlreadyExists(existing) => return Ok(receipt_of(&existing)),
            BeginOutcome::New(id) => id,
        };
        notify::if_held(&self.core.notifier, &id, &new);
        // Only an action to send needs its row back (shadowed and held ones need the id).
        if mode != ActionMode::Execute {
            let disposition = decision.disposition().unwrap_or(Disposition::Submitted);
            return Ok(Receipt {
                action_id: id.as_str().to_owned(),
                disposition,
                detail: String::new(),
            });
        }
        // The row as begin_action wrote it: no read back.
        let record = ActionRecord::planned(id.clone(), &new, now);
        let unsent = Unsent::new(&self.core, record.clone());
        self.carry_out(record, unsent).await;
        // Where the send left it: the receipt tells the truth (failed, succeeded, ...).
        let settled = db::blocking(store, "get_action", move |s| s.get_action(&id)).await;
        Ok(receipt_of(&settled.map_err(internal)?))
    }
}

/// An allowed action recorded `planned` that its invocation has not handed to the executor
/// yet. If the invocation ends first (its deadline, an error), the action certainly was not
/// sent: on drop it is recorded failed and its budget given back, instead of lingering for
/// recovery to send after the plugin was told otherwise.
struct Unsent {
    core: Arc<Core>,
    record: Option<ActionRecord>,
    sending: Arc<AtomicBool>,
}

impl Unsent {
    fn new(core: &Arc<Core>, record: ActionRecord) -> Self {
        Self {
            core: core.clone(),
            record: Some(record),
            sending: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The executor has taken the action: whatever happens next is its to record.
    fn handed_over(mut self) {
        self.record = None;
    }
}

impl Drop for Unsent {
    fn drop(&mut self) {
        if let Some(record) = self.record.take()
            && !self.sending.load(Ordering::Acquire)
        {
            self.core.executor.abandon(
                &record,
                "not sent: the invocation ended before the action was handed to the server",
            );
        }
    }
}

impl GatedHost {
    /// Sends an allowed action once. A remediation is followed in the background, outside
    /// the plugin's time; the ledger records how the send ended.
    async fn carry_out(&self, record: ActionRecord, unsent: Unsent) {
        let submitted = self
            .core
            .executor
            .submit_tracked(&record, &self.pylums(), &unsent.sending)
            .await;
        unsent.handed_over();
        if let Submitted::Following(report) = submitted {
            self.core.follow_in_background(record, report);
        }
    }

    /// `request` without the targets (remediation items, machines to isolate) that this
    /// plugin already asked for on the same Malop, whatever became of them (as a repeated
    /// request is answered from the ledger). Shadowed plans do not count.
    async fn without_targets_asked_before(
        &self,
        request: &ActionRequest,
    ) -> Result<Remaining, CallError> {
        let (ActionRequest::Remediate {
            malop_id: Some(malop),
            ..
        }
        | ActionRequest::Isolate {
            malop_id: Some(malop),
            ..
        }) = request
        else {
            return Ok(Remaining::All);
        };
        let filter = riposte_store::ActionFilter {
            states: ActionState::ALL
                .into_iter()
                .filter(|s| *s != ActionState::Shadowed)
                .collect(),
            plugin: Some(self.name().clone()),
            malop_id: Some(malop.clone()),
            ..Default::default()
        };
        let earlier = db::blocking(&self.core.store, "list_actions", move |s| {
            s.list_actions(&filter)
        })
        .await
        .map_err(internal)?;
        let asked = |target: &Target| {
            earlier
                .iter()
                .find(|a| targets_of(&a.request).contains(target))
        };
        let targets = targets_of(request);
        let rest: Vec<Target> = targets
            .iter()
            .filter(|t| asked(t).is_none())
            .cloned()
            .collect();
        Ok(if rest.len() == targets.len() {
            Remaining::All
        } else if rest.is_empty() {
            let newest = targets
                .iter()
                .filter_map(asked)
                .max_by_key(|a| a.created_at_ms);
            Remaining::None(Box::new(newest.expect("a target was asked before").clone()))
        } else {
            tracing::info!(plugin = %self.name(), malop = %malop, "{} of {} targets were asked for before; sending the others",
                targets.len() - rest.len(), targets.len());
            Remaining::Some(with_targets(request, rest))
        })
    }

    /// Where an action stands: the ledger's final state, or else the server's own word on a
    /// remediation it accepted (read, not recorded: the follower records), or the last
    /// progress the ledger holds when the server cannot be asked.
    async fn progress_of(&self, record: &ActionRecord) -> RemediationProgress {
        match record.state {
            ActionState::Succeeded | ActionState::Undone => return RemediationProgress::Success,
            ActionState::Failed => return RemediationProgress::Failure,
            ActionState::Submitted | ActionState::Following => {}
            _ => return record.progress.unwrap_or(RemediationProgress::Unknown),
        }
        let last = record.progress.unwrap_or(RemediationProgress::Unknown);
        let (ActionRequest::Remediate { .. }, Some(rid)) =
            (&record.request, &record.remediation_id)
        else {
            return last;
        };
        // Each ask of the server is a query: past the quota, the ledger's last word.
        if self.take(QuotaKind::Queries).is_err() {
            return last;
        }
        let malop = super::executor::progress_malop(record);
        match self.core.client.remediation_progress(malop, rid).await {
            Ok(report) => report.status(),
            Err(error) => {
                tracing::warn!(action = %record.id, "reading remediation progress for a plugin: {error}");
                last
            }
        }
    }

    /// Whether the plugin's mode shadows `request` (some kind of it is not enforced).
    fn shadows(&self, request: &ActionRequest) -> bool {
        request
            .action_kinds()
            .iter()
            .any(|k| !self.policy.rules.enforces(*k))
    }
}

/// The ledger key of a would-be action recorded in shadow mode: distinct from the key of the
/// same action enforced, so that once the operator enforces (or promotes) the plugin, the
/// action it only planned before is carried out (once) instead of being answered "shadowed"
/// from the ledger forever. Repeated shadowed requests still share one record.
fn shadow_key(key: &ActionKey) -> ActionKey {
    let text = json!(["riposte.shadow-key.v1", key.0.to_hex()]).to_string();
    ActionKey(Sha256Digest::of(text.as_bytes()))
}

/// What the ledger step of an action found or did.
enum Ledgered {
    /// The same action was asked for before: this is its record.
    Before(Box<ActionRecord>),
    /// The gate's decision, and unless it denied, the mode and the new ledger row.
    Now(Decision, Option<ActionMode>, Option<BeginOutcome>),
}

/// What is left of a request once the targets asked for before are taken out.
enum Remaining {
    /// Nothing was asked before.
    All,
    /// These were not.
    Some(ActionRequest),
    /// Everything was: the newest earlier action that asked for one of them.
    None(Box<ActionRecord>),
}

/// One target of a remediation or an isolation.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Target {
    Item(riposte_domain::RemediationTarget),
    Isolated(riposte_domain::MachineGuid),
}

fn targets_of(request: &ActionRequest) -> Vec<Target> {
    match request {
        ActionRequest::Remediate { targets, .. } => {
            targets.iter().cloned().map(Target::Item).collect()
        }
        ActionRequest::Isolate { machines, .. } => {
            machines.iter().cloned().map(Target::Isolated).collect()
        }
        _ => Vec::new(),
    }
}

/// `request` with only `targets` (all of the request's own kind).
fn with_targets(request: &ActionRequest, targets: Vec<Target>) -> ActionRequest {
    match request {
        ActionRequest::Remediate { malop_id, .. } => ActionRequest::Remediate {
            malop_id: malop_id.clone(),
            targets: targets
                .into_iter()
                .filter_map(|t| match t {
                    Target::Item(item) => Some(item),
                    Target::Isolated(_) => None,
                })
                .collect(),
        },
        ActionRequest::Isolate { malop_id, .. } => ActionRequest::Isolate {
            malop_id: malop_id.clone(),
            machines: targets
                .into_iter()
                .filter_map(|t| match t {
                    Target::Isolated(machine) => Some(machine),
                    Target::Item(_) => None,
                })
                .collect(),
        },
        other => other.clone(),
    }
}

/// The receipt of a ledgered action: where it stands now, and why when it ended without
/// effect (bounded: the ledger's error text is the host's own).
fn receipt_of(record: &ActionRecord) -> Receipt {
    let disposition = disposition_of(record);
    let detail = match disposition {
        Disposition::Failed | Disposition::TimedOut | Disposition::Queued => {
            record.last_error.clone().unwrap_or_default()
        }
        Disposition::OutcomeUnknown => record.outcome_unknown().unwrap_or_default(),
        Disposition::Denied => "denied by an operator".into(),
        Disposition::Expired => "the approval expired undecided".into(),
        _ => String::new(),
    };
    Receipt {
        action_id: record.id.as_str().to_owned(),
        disposition,
        detail: bounded(detail),
    }
}

/// Where an action stands, for its plugin.
fn disposition_of(record: &ActionRecord) -> Disposition {
    match record.state {
        ActionState::Planned if record.attempts > 0 => Disposition::Queued,
        ActionState::Planned | ActionState::Following => Disposition::Submitted,
        ActionState::Submitted if record.outcome_unknown().is_some() => Disposition::OutcomeUnknown,
        ActionState::Submitted => Disposition::Submitted,
        ActionState::Succeeded => Disposition::Succeeded,
        ActionState::Failed => Disposition::Failed,
        ActionState::TimedOut => Disposition::TimedOut,
        ActionState::Shadowed => Disposition::Shadowed,
        ActionState::AwaitingApproval => Disposition::AwaitingApproval,
        ActionState::Approved => Disposition::Approved,
        ActionState::Denied => Disposition::Denied,
        ActionState::Expired => Disposition::Expired,
        ActionState::Undone => Disposition::Undone,
    }
}

/// The most of a ledger error a receipt carries.
const DETAIL_MAX_CHARS: usize = 500;

fn bounded(mut text: String) -> String {
    if let Some((at, _)) = text.char_indices().nth(DETAIL_MAX_CHARS) {
        text.truncate(at);
        text.push('…');
    }
    text
}

fn internal(error: riposte_store::Error) -> CallError {
    tracing::error!("state store: {error}");
    CallError::ServerError("the host's state store failed; the call was not carried out".into())
}

impl PluginHost for GatedHost {
    fn list_malops<'a>(
        &'a self,
        call: &'a CallContext,
        since: TimestampMs,
        until: TimestampMs,
    ) -> BoxFuture<'a, Result<Vec<Malop>, CallError>> {
        Box::pin(async move {
            let window = list_window(since, until, now_ms());
            self.gate_query(
                call,
                Operation::ListMalops,
                json!({"since": since, "until": until, "window": window}),
                || self.take(QuotaKind::Queries),
            )?;
            let Some((since, until)) = window else {
                return Ok(Vec::new());
            };
            let started = Instant::now();
            let found = self
                .core
                .client
                .malops_updated_in(since, until, bounds::MAX_LIST_QUERIES)
                .await?;
            tracing::debug!(took = ?started.elapsed(), "list-malops for a plugin");
            Ok(found)
        })
    }

    fn get_malop<'a>(
        &'a self,
        call: &'a CallContext,
        id: MalopId,
    ) -> BoxFuture<'a, Result<Malop, CallError>> {
        Box::pin(async move {
            let own = self.malop.as_ref().filter(|m| m.id == id);
            self.gate_query(
                call,
                Operation::GetMalop,
                json!({"id": excerpt(id.as_str(), EXCERPT_BYTES), "id_bytes": id.as_str().len()}),
                || {
                    check_len("Malop id", id.as_str(), MAX_ID_BYTES)
                        .map_err(DenyReason::Oversized)?;
                    // The Malop being handled is answered from memory: no server load.
                    own.map_or_else(|| self.take(QuotaKind::Queries), |_| Ok(()))
                },
            )?;
            if let Some(malop) = own {
                return Ok(malop.clone());
            }
            Ok(self.core.client.get_malop_details(&id).await?)
        })
    }

    fn act<'a>(
        &'a self,
        call: &'a CallContext,
        request: ActionRequest,
        reason: String,
    ) -> BoxFuture<'a, Result<Receipt, CallError>> {
        Box::pin(self.act_inner(call, request, reason))
    }

    fn remediation_status<'a>(
        &'a self,
        call: &'a CallContext,
        action_id: String,
    ) -> BoxFuture<'a, Result<RemediationProgress, CallError>> {
        Box::pin(async move {
            self.gate_query(
                call,
                Operation::RemediationStatus,
                json!({"action_id": excerpt(&action_id, EXCERPT_BYTES), "action_id_bytes": action_id.len()}),
                || check_len("action id", &action_id, MAX_ID_BYTES).map_err(DenyReason::Oversized),
            )?;
            let id = ActionId::parse(&action_id).ok_or_else(|| {
                CallError::InvalidArgument(format!(
                    "`{}` is not an action id",
                    bounds::log_safe(&action_id, EXCERPT_BYTES)
                ))
            })?;
            let record = db::blocking(&self.core.store, "get_action", move |s| s.get_action(&id))
                .await
                .map_err(|_| CallError::NotFound(format!("action {action_id}")))?;
            if record.plugin != *self.name() {
                return Err(CallError::NotFound(format!("action {action_id}")));
            }
            Ok(self.progress_of(&record).await)
        })
    }

    // The kv imports are synchronous in `PluginHost`: their transactions run with the worker
    // stepped aside (`db::in_place`).
    fn kv_get(&self, _call: &CallContext, key: &str) -> Option<Vec<u8>> {
        db::in_place(|| self.core.store.kv_get(self.name().as_str(), key))
            .ok()
            .flatten()
    }

    fn kv_set(&self, _call: &CallContext, key: &str, value: Vec<u8>) -> Result<(), CallError> {
        self.take(QuotaKind::KvWrites)
            .map_err(|reason| reason.to_call_error())?;
        db::in_place(|| {
            self.core.store.kv_set(
                self.name().as_str(),
                key,
                &value,
                self.core.kv_limit_bytes,
                now_ms(),
            )
        })
        .map_err(|e| CallError::InvalidArgument(e.to_string()))
    }

    fn kv_delete(&self, _call: &CallContext, key: &str) {
        // Past the write quota a delete is dropped (the WIT gives it no error to return).
        if self.take(QuotaKind::KvWrites).is_ok() {
            let _ = db::in_place(|| self.core.store.kv_delete(self.name().as_str(), key));
        }
    }

    fn log(&self, call: &CallContext, level: LogLevel, message: &str) {
        let plugin = call.plugin.name.as_str();
        match level {
            LogLevel::Trace => tracing::trace!(target: "plugin", plugin, "{message}"),
            LogLevel::Debug => tracing::debug!(target: "plugin", plugin, "{message}"),
            LogLevel::Info => tracing::info!(target: "plugin", plugin, "{message}"),
            LogLevel::Warn => tracing::warn!(target: "plugin", plugin, "{message}"),
            LogLevel::Error => tracing::error!(target: "plugin", plugin, "{message}"),
        }
    }
}

/// The window `list-malops` reads for a plugin asking `[since, until)` at `now`: it ends at
/// most [`bounds::MAX_LIST_AHEAD_MS`] past now and starts no earlier than 0; `None` when
/// nothing is left of it. (What it may cost the server is bounded by
/// [`bounds::MAX_LIST_QUERIES`].)
fn list_window(
    since: TimestampMs,
    until: TimestampMs,
    now: TimestampMs,
) -> Option<(TimestampMs, TimestampMs)> {
    let until = until.min(now.saturating_add(bounds::MAX_LIST_AHEAD_MS));
    let since = since.max(0);
    (since < until).then_some((since, until))
}

#[cfg(test)]
mod tests {
    use super::list_window;
    use riposte_domain::bounds::MAX_LIST_AHEAD_MS;

    #[test]
    fn a_plugins_listing_window_is_bounded() {
        let now = 1_800_000_000_000;
        let ahead = now + MAX_LIST_AHEAD_MS;
        assert_eq!(list_window(i64::MIN, i64::MAX, now), Some((0, ahead)));
        assert_eq!(
            list_window(now - 60_000, now, now),
            Some((now - 60_000, now))
        );
        assert_eq!(list_window(now, now, now), None);
        assert_eq!(list_window(-5, 10, now), Some((0, 10)));
        assert_eq!(list_window(ahead + 1, i64::MAX, now), None);
    }
}
