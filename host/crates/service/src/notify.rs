//! The service's notifications (`riposte-notify`): each builds its event from the service's
//! own records where the thing happens, so that each hook there stays one line. Sending
//! never waits and never fails (see [`Notifier::notify`]).

use riposte_domain::{ActionRequest, PluginName, TimestampMs};
use riposte_notify::{BudgetOwner, Event, Notifier, describe};
use riposte_policy::{BudgetScope, Decision, DenyReason};
use riposte_store::{ActionId, ActionRecord};

/// An action was held for approval until `expires_at_ms`.
pub(crate) fn approval_needed(
    notifier: &Notifier,
    id: &ActionId,
    plugin: &PluginName,
    request: &ActionRequest,
    expires_at_ms: TimestampMs,
) {
    notifier.notify(Event::ApprovalNeeded {
        action: id.as_str().to_owned(),
        plugin: plugin.clone(),
        malop: request.malop_id().cloned(),
        summary: describe(request),
        expires_at_ms,
    });
}

/// The gate refused an action of `plugin` for a spent budget (other refusals are not
/// notified).
pub(crate) fn budget_tripped(notifier: &Notifier, plugin: &PluginName, decision: &Decision) {
    if let Decision::Deny(DenyReason::BudgetSpent {
        scope,
        budget,
        used,
        ..
    }) = decision
    {
        notifier.notify(Event::BudgetTripped {
            owner: match scope {
                BudgetScope::Global => BudgetOwner::Global,
                BudgetScope::Plugin(name) => BudgetOwner::Plugin(name.clone()),
            },
            plugin: plugin.clone(),
            budget: budget.to_string(),
            used: *used,
            max: budget.max,
        });
    }
}

/// `record` ended failed, for `error` (the host's own words, as recorded in the ledger).
pub(crate) fn action_failed(notifier: &Notifier, record: &ActionRecord, error: &str) {
    notifier.notify(Event::ActionFailed {
        action: record.id.as_str().to_owned(),
        plugin: record.plugin.clone(),
        malop: record.malop_id.clone(),
        summary: describe(&record.request),
        error: error.to_owned(),
    });
}

/// `plugin` was paused until `until_ms` after `traps` traps in a row, the last for `reason`.
pub(crate) fn plugin_paused(
    notifier: &Notifier,
    plugin: &PluginName,
    traps: impl std::fmt::Display,
    reason: &impl std::fmt::Display,
    until_ms: TimestampMs,
) {
    notifier.notify(Event::PluginPaused {
        plugin: plugin.clone(),
        reason: format!("{traps} traps in a row, the last: {reason}"),
        until_ms: Some(until_ms),
    });
}
