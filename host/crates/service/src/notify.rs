//! The service's notifications (`riposte-notify`): each builds its event from the service's
//! own records where the thing happens, so that each hook there stays one line. Sending
//! never waits and never fails (see [`Notifier::notify`]).

use riposte_domain::{PluginName, TimestampMs};
use riposte_notify::{BudgetOwner, Event, Notifier, describe};
use riposte_policy::{BudgetScope, Decision, DenyReason};
use riposte_store::{ActionId, ActionMode, ActionRecord, NewAction, Outcome};

/// The action `new`, ledgered as `id`, is held for approval (notified only then).
pub(crate) fn if_held(notifier: &Notifier, id: &ActionId, new: &NewAction) {
    if let ActionMode::AwaitApproval { expires_at_ms, .. } = new.mode {
        notifier.notify(Event::ApprovalNeeded {
            action: id.as_str().to_owned(),
            plugin: new.plugin.clone(),
            malop: new.request.malop_id().cloned(),
            summary: describe(&new.request),
            expires_at_ms,
        });
    }
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

/// `record` ended with `outcome`, for `error` when it failed (notified only then).
pub(crate) fn if_failed(
    notifier: &Notifier,
    record: &ActionRecord,
    outcome: Outcome,
    error: Option<&str>,
) {
    if outcome == Outcome::Failed {
        let error = error.unwrap_or("the server reported a failure");
        action_failed(notifier, record, error);
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
