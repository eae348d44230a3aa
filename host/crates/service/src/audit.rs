//! The service's records in the audit trail: decisions, action results, invocation
//! outcomes, pauses, approvals and undo. Failing to write the audit trail is logged loudly;
//! the chain's verify command then shows the gap.

use crate::activity::ActivityBook;
use riposte_audit::{AuditSink, Call, DecisionRecord, Entry, InvocationId, Redacted};
use riposte_domain::bounds;
use riposte_domain::{ActionRequest, PluginName, Sha256Digest, now_ms};
use riposte_metrics::Metrics;
use riposte_policy::{Charge, Decision};
use riposte_runtime::{CallContext, InvocationReport, Outcome};
use riposte_store::{ActionRecord, ActionState};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// Builds and appends the service's audit records, and counts what they record in the
/// service's metrics.
pub struct Auditor {
    sink: AuditSink,
    metrics: Arc<Metrics>,
    activity: ActivityBook,
}

impl Auditor {
    /// Records into `sink` and counts into `metrics` (and into the plugins' activity, which
    /// the service writes to the store once a cycle).
    pub fn new(sink: AuditSink, metrics: Arc<Metrics>) -> Self {
        Self {
            sink,
            metrics,
            activity: ActivityBook::default(),
        }
    }

    /// The activity counted since the service last wrote it.
    pub(crate) fn activity(&self) -> &ActivityBook {
        &self.activity
    }

    /// The sink (for its head and for syncing on shutdown).
    pub fn sink(&self) -> &AuditSink {
        &self.sink
    }

    /// A durability barrier: under `fsync = "batch"`, forces the records written so far to
    /// disk (see [`riposte_audit::FsyncPolicy::Batch`]); under the other policies, nothing.
    /// A failure is logged loudly and returned (the executor then sends nothing). The fsync
    /// is waited for off the async worker ([`crate::db::in_place`]).
    pub fn barrier(&self) -> Result<(), riposte_audit::Error> {
        crate::db::in_place(|| self.sink.barrier())
            .inspect_err(|e| tracing::error!("AUDIT SYNC FAILED: {e}"))
    }

    /// A gated action and the gate's decision: for shadowed actions, the would-be plan. A
    /// refused request is recorded as a bounded summary with its size (never whole: it may
    /// be anything a plugin chose to send), under the Malop the invocation handles.
    pub fn decision(
        &self,
        call: &CallContext,
        request: &ActionRequest,
        reason: &str,
        decision: &Decision,
        action_id: Option<&str>,
    ) {
        self.metrics.decision(
            &call.plugin.name,
            request.operation().name(),
            decision.kind(),
        );
        self.activity
            .decision(&call.plugin.name, now_ms(), decision.kind());
        let built = match decision {
            Decision::Deny(_) => Ok(refused_action(request, reason, decision)),
            _ => Entry::for_action(now_ms(), request, Some(reason), decision.to_record()),
        };
        match built {
            Ok(mut entry) => {
                if call.malop_id.is_some() {
                    entry.malop = call.malop_id.clone();
                }
                with_invocation(&mut entry, call);
                entry.result = Redacted::from_value(json!({ "action_id": action_id }));
                self.append(entry);
            }
            Err(e) => tracing::error!("cannot build the audit record of a decision: {e}"),
        }
        // An action awaiting approval is sent later, perhaps by another process: the
        // reasoning that let it through must not be lost before then.
        if matches!(decision, Decision::AwaitApproval { .. }) {
            let _ = self.barrier();
        }
    }

    /// Budget units given back for an action that never reached the server, or for targets
    /// the server rejected as unknown.
    pub(crate) fn budget_refunded(
        &self,
        record: &ActionRecord,
        charges: &[Charge],
        units: usize,
        why: &str,
    ) {
        let mut entry = Entry::new(now_ms(), Call::event("budget-refunded"));
        entry.plugin = Some(record.plugin.clone());
        entry.plugin_digest = Some(record.plugin_digest);
        entry.malop = record.malop_id.clone();
        let charged: Vec<_> = charges
            .iter()
            .map(|c| json!({"kind": c.kind, "target": c.target.storage_key()}))
            .collect();
        entry.arguments = Redacted::from_value(json!({
            "action_id": record.id.as_str(),
            "charges": bounds::summarize(&json!(charged)),
        }));
        entry.result = Redacted::from_value(json!({"units_given_back": units, "why": why}));
        self.append(entry);
    }

    /// A query (list/get/status) and its decision.
    pub fn query(
        &self,
        call: &CallContext,
        operation: riposte_domain::Operation,
        arguments: serde_json::Value,
        decision: &Decision,
    ) {
        self.metrics
            .decision(&call.plugin.name, operation.name(), decision.kind());
        let mut entry = Entry::new(now_ms(), operation);
        with_invocation(&mut entry, call);
        entry.arguments = Redacted::from_value(arguments);
        entry.decision = Some(decision.to_record());
        self.append(entry);
    }

    /// An action that was already in the ledger: answered from it, not sent again.
    pub fn duplicate(&self, call: &CallContext, request: &ActionRequest, existing: &ActionRecord) {
        let mut entry = Entry::new(now_ms(), request.operation());
        with_invocation(&mut entry, call);
        entry.malop = request.malop_id().cloned();
        entry.arguments = Redacted::from_serialize(request).unwrap_or_default();
        entry.result = Redacted::from_value(json!({
            "duplicate_of": existing.id.as_str(),
            "state": existing.state.as_str(),
            "sent_again": false,
        }));
        self.append(entry);
    }

    /// The final (or current) state of an executed action.
    pub(crate) fn action_result(&self, record: &ActionRecord, state: ActionState, took: Duration) {
        self.metrics.action(
            record.plugin.as_str(),
            record.request.operation().name(),
            state.as_str(),
        );
        let mut entry = Entry::new(now_ms(), Call::event("action-result"));
        entry.plugin = Some(record.plugin.clone());
        entry.plugin_digest = Some(record.plugin_digest);
        entry.malop = record.malop_id.clone();
        entry.arguments = Redacted::from_value(
            json!({ "action_id": record.id.as_str(), "request": record.request }),
        );
        entry.result = Redacted::from_value(json!({ "state": state.as_str() }));
        entry.duration_us = took.as_micros() as u64;
        self.append(entry);
        // The result of an action sent is not work done again after a restart: on disk now.
        let _ = self.barrier();
    }

    /// How an invocation ended (for a stopped plugin, the reason in plain words), and what it
    /// used of its quotas (`quotas`, from the gated host).
    pub fn invocation(
        &self,
        call: &CallContext,
        export: &str,
        report: &InvocationReport,
        quotas: serde_json::Value,
    ) {
        self.metrics.invocation(&call.plugin.name, export, report);
        self.activity
            .invocation(&call.plugin.name, now_ms(), report.outcome.is_trap());
        let mut entry = Entry::new(now_ms(), Call::event(format!("invoke:{export}")));
        with_invocation(&mut entry, call);
        let detail = match &report.outcome {
            Outcome::Completed => String::new(),
            Outcome::PluginError { error } => error.to_string(),
            Outcome::Stopped { reason } => reason.to_string(),
            Outcome::HostFailure { error } => error.clone(),
        };
        entry.result = Redacted::from_value(json!({
            "status": report.outcome.status(),
            "reason": detail,
            "fuel_used": report.fuel_used,
            "peak_memory": report.peak_memory,
            "quotas": quotas,
        }));
        entry.duration_us = report.duration.as_micros() as u64;
        self.append(entry);
    }

    /// A host event about a plugin (paused after repeated traps, loaded, ...).
    pub(crate) fn plugin_event(
        &self,
        plugin: &PluginName,
        digest: Option<Sha256Digest>,
        event: &str,
        detail: serde_json::Value,
    ) {
        let mut entry = Entry::new(now_ms(), Call::event(event));
        entry.plugin = Some(plugin.clone());
        entry.plugin_digest = digest;
        entry.result = Redacted::from_value(detail);
        self.append(entry);
    }

    /// An operator's decision on an approval, or an undo.
    pub(crate) fn operator_event(
        &self,
        event: &str,
        record: &ActionRecord,
        by: impl serde::Serialize,
        decision: Option<DecisionRecord>,
    ) {
        let mut entry = Entry::new(now_ms(), Call::event(event));
        entry.plugin = Some(record.plugin.clone());
        entry.plugin_digest = Some(record.plugin_digest);
        entry.malop = record.malop_id.clone();
        entry.arguments = Redacted::from_value(
            json!({ "action_id": record.id.as_str(), "request": record.request, "by": by }),
        );
        entry.decision = decision;
        self.append(entry);
    }

    /// A service event about one Malop (read with unreadable parts, read in full again, ...).
    pub fn malop_event(
        &self,
        event: &str,
        malop: &riposte_domain::MalopId,
        detail: serde_json::Value,
    ) {
        let mut entry = Entry::new(now_ms(), Call::event(event));
        entry.malop = Some(malop.clone());
        entry.result = Redacted::from_value(detail);
        self.append(entry);
    }

    /// A service event (poll, start, stop).
    pub(crate) fn service_event(&self, event: &str, detail: serde_json::Value) {
        let mut entry = Entry::new(now_ms(), Call::event(event));
        entry.result = Redacted::from_value(detail);
        self.append(entry);
    }

    /// Appends a record. Under `fsync = "every-record"` (the default) the append waits for
    /// the disk, so the worker steps aside for it ([`crate::db::in_place`]).
    fn append(&self, entry: Entry) {
        if let Err(e) = crate::db::in_place(|| self.sink.append(&entry)) {
            tracing::error!(call = %entry.call, "AUDIT WRITE FAILED: {e}");
        }
    }
}

/// The record of a refused action: the request summarised ([`bounds::summarize`]) with its
/// size in bytes, and the reason as an excerpt.
fn refused_action(request: &ActionRequest, reason: &str, decision: &Decision) -> Entry {
    let mut entry = Entry::new(now_ms(), request.operation());
    let full = serde_json::to_value(request).unwrap_or_default();
    let bytes = full.to_string().len();
    entry.arguments = Redacted::from_value(json!({
        "request": bounds::summarize(&full),
        "request_bytes": bytes,
        "reason": bounds::excerpt(reason, bounds::EXCERPT_BYTES),
        "reason_bytes": reason.len(),
    }));
    entry.decision = Some(decision.to_record());
    entry
}

fn with_invocation(entry: &mut Entry, call: &CallContext) {
    entry.plugin = Some(PluginName::new(call.plugin.name.clone()));
    entry.plugin_digest = Sha256Digest::from_hex(&call.plugin.digest);
    entry.invocation = Some(InvocationId::new(call.invocation_id.clone()));
    if entry.malop.is_none() {
        entry.malop = call.malop_id.clone();
    }
    entry.input_digest = Sha256Digest::from_hex(&call.input_digest);
}
