//! The service's notifications (`riposte-notify`): each builds its event from the service's
//! own records where the thing happens, so that each hook there stays one line. Sending
//! never waits and never fails (see [`Notifier::notify`]).

use riposte_domain::{MalopId, PluginName, TimestampMs};
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

/// `record` ended with `outcome`, for `error` when it did not succeed: a failure, or a
/// time-out (its outcome on the server unknown), is notified as a failed action; a success
/// is not notified.
pub(crate) fn if_failed(
    notifier: &Notifier,
    record: &ActionRecord,
    outcome: Outcome,
    error: Option<&str>,
) {
    if let Some(error) = failure(outcome, error) {
        action_failed(notifier, record, &error);
    }
}

/// What an action-failed notification says for an action that ended with `outcome`, for
/// `error`; `None` for a success.
fn failure(outcome: Outcome, error: Option<&str>) -> Option<String> {
    match outcome {
        Outcome::Succeeded => None,
        Outcome::Failed => Some(error.unwrap_or("the server reported a failure").to_owned()),
        Outcome::TimedOut => Some(format!(
            "timed out: {}",
            error.unwrap_or("no final status from the server")
        )),
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

/// riposte's own code failed while `plugin` ran (on `malop`, if any), for `error` (already
/// bounded by the runtime). Repeats per plugin are sent once per quiet period.
pub(crate) fn host_failure(
    notifier: &Notifier,
    plugin: &PluginName,
    malop: Option<&MalopId>,
    error: &str,
) {
    notifier.notify(Event::HostFailure {
        plugin: plugin.clone(),
        malop: malop.cloned(),
        error: error.to_owned(),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_out_is_a_failure_that_says_so_and_a_success_is_none() {
        assert_eq!(failure(Outcome::Succeeded, None), None);
        assert_eq!(
            failure(Outcome::Failed, Some("refused")).as_deref(),
            Some("refused")
        );
        assert_eq!(
            failure(
                Outcome::TimedOut,
                Some("no final status before the follow limit")
            )
            .as_deref(),
            Some("timed out: no final status before the follow limit")
        );
        assert_eq!(
            failure(Outcome::TimedOut, None).as_deref(),
            Some("timed out: no final status from the server")
        );
    }
}
