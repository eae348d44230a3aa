//! Operators' decisions on held and time-boxed actions, shared by the CLI and the console:
//! approve or deny an action waiting for approval (with its quorum of distinct approvers),
//! and confirm or extend a time-boxed containment. Each decision is taken in the store under
//! an authenticated [`Operator`] and recorded in the audit trail, refusals included, so the
//! trail shows every attempt and who made it.

use riposte_audit::{AuditSink, Call, Entry, Redacted};
use riposte_domain::{Operator, Sha256Digest};
use riposte_store::prelude::*;
use riposte_store::{ActionId, ActionRecord, ApprovedAction, Store, TimeBox, Vote};
use serde_json::{Value, json};

/// What an operator decides on an action waiting for approval.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Approve it; `seen_hash` is the request hash the operator was shown, if any (the
    /// approval is refused unless it is the hash the approval is bound to).
    Approve {
        /// The hash shown to the operator.
        seen_hash: Option<Sha256Digest>,
    },
    /// Deny it: one denial denies, whatever approvals it had.
    Deny,
}

/// What a decision did.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum Decided {
    /// The approval is counted; the action waits for more approvers.
    Counted {
        /// Who approved it so far.
        approved_by: Vec<String>,
        /// How many it needs.
        quorum: u32,
    },
    /// The quorum is reached: the service executes it next.
    Approved(Box<ApprovedAction>),
    /// Denied.
    Denied,
}

/// What an operator does with a time-boxed containment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeBoxChange {
    /// Keep it: it is no longer reverted at its deadline.
    Confirm,
    /// Move its deadline by this many milliseconds.
    Extend {
        /// How much later.
        by_ms: i64,
    },
}

/// Decides on the held action `id` as `by`, and records the decision (or its refusal) in
/// `audit`. Errors carry the store's refusal (already decided, expired, already approved by
/// this person, hash mismatch) with its context.
pub fn decide(
    store: &Store,
    audit: &AuditSink,
    id: &ActionId,
    verdict: Verdict,
    by: &Operator,
    now_ms: i64,
) -> anyhow::Result<Decided> {
    let record = store.get_action(id)?;
    let outcome = match verdict {
        Verdict::Approve { seen_hash } => store
            .approve(id, by.as_str(), seen_hash.as_ref(), now_ms)
            .map(|vote| match vote {
                Vote::Counted {
                    approved_by,
                    quorum,
                } => Decided::Counted {
                    approved_by,
                    quorum,
                },
                Vote::Approved(approved) => Decided::Approved(approved),
            }),
        Verdict::Deny => store
            .deny(id, by.as_str(), now_ms)
            .map(|()| Decided::Denied),
    };
    let (event, detail) = match &outcome {
        Ok(Decided::Counted {
            approved_by,
            quorum,
        }) => (
            "approval-granted",
            json!({ "approvals": approved_by.len(), "quorum": quorum, "approved": false }),
        ),
        Ok(Decided::Approved(approved)) => (
            "approval-granted",
            json!({ "approvals": approved.approved_by.len(), "approved_by": approved.approved_by, "approved": true }),
        ),
        Ok(Decided::Denied) => ("approval-denied", json!({})),
        Err(error) => ("approval-refused", json!({ "refusal": error.to_string() })),
    };
    record_decision(audit, event, &record, by, detail, now_ms)?;
    Ok(outcome?)
}

/// Confirms or extends the time-boxed containment of `id` as `by`, and records it (or its
/// refusal) in `audit`.
pub fn change_time_box(
    store: &Store,
    audit: &AuditSink,
    id: &ActionId,
    change: TimeBoxChange,
    by: &Operator,
    now_ms: i64,
) -> anyhow::Result<TimeBox> {
    let record = store.get_action(id)?;
    let (event, outcome) = match change {
        TimeBoxChange::Confirm => (
            "containment-confirmed",
            store.confirm_time_box(id, by.as_str(), now_ms),
        ),
        TimeBoxChange::Extend { by_ms } => (
            "containment-extended",
            store.extend_time_box(id, by.as_str(), by_ms, now_ms),
        ),
    };
    let (event, detail) = match &outcome {
        Ok(b) => (event, json!({ "deadline_ms": b.deadline_ms })),
        Err(error) => (
            "containment-change-refused",
            json!({ "refusal": error.to_string() }),
        ),
    };
    record_decision(audit, event, &record, by, detail, now_ms)?;
    Ok(outcome?)
}

fn record_decision(
    audit: &AuditSink,
    event: &str,
    record: &ActionRecord,
    by: &Operator,
    detail: Value,
    now_ms: i64,
) -> anyhow::Result<()> {
    let mut entry = Entry::new(now_ms, Call::event(event));
    entry.plugin = Some(record.plugin.clone());
    entry.plugin_digest = Some(record.plugin_digest);
    entry.malop = record.malop_id.clone();
    entry.arguments = Redacted::from_value(json!({
        "action_id": record.id.as_str(),
        "by": by,
        "request_hash": record.request_hash,
    }));
    entry.result = Redacted::from_value(detail);
    audit.append(&entry)?;
    audit.sync()?;
    Ok(())
}
