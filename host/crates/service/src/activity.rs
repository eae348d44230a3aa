//! What each plugin did (invocations, traps, the gate's decisions), counted in memory as the
//! auditor records it and added to the store's hourly rows once a cycle
//! ([`riposte_store::Activity`]), for the console's overview and pictures.

use riposte_audit::DecisionKind;
use riposte_domain::PluginName;
use riposte_store::{HOUR_MS, PluginActivity};
use std::collections::HashMap;
use std::sync::Mutex;

/// How long hourly counts are kept (30 days).
pub const ACTIVITY_RETENTION_MS: i64 = 30 * 24 * HOUR_MS;

/// Counts not yet written, by hour and plugin.
#[derive(Default)]
pub(crate) struct ActivityBook {
    counts: Mutex<HashMap<i64, HashMap<String, PluginActivity>>>,
}

impl ActivityBook {
    /// Runs `f` on the counts of `plugin` in the hour of `at_ms` (allocating only for the
    /// first count of a plugin in an hour: this runs for every decision and invocation).
    fn with(&self, plugin: &str, at_ms: i64, f: impl FnOnce(&mut PluginActivity)) {
        let hour = at_ms.div_euclid(HOUR_MS) * HOUR_MS;
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let plugins = counts.entry(hour).or_default();
        match plugins.get_mut(plugin) {
            Some(activity) => f(activity),
            None => {
                let mut activity = PluginActivity::empty(PluginName::new(plugin), at_ms);
                f(&mut activity);
                plugins.insert(plugin.to_owned(), activity);
            }
        }
    }

    /// An invocation of `plugin` that ended at `at_ms`, trapped or not.
    pub(crate) fn invocation(&self, plugin: &str, at_ms: i64, trapped: bool) {
        self.with(plugin, at_ms, |a| {
            a.invocations += 1;
            a.traps += u64::from(trapped);
            a.last_invocation_ms = a.last_invocation_ms.max(Some(at_ms));
        });
    }

    /// A decision of the gate on a call of `plugin`.
    pub(crate) fn decision(&self, plugin: &str, at_ms: i64, kind: DecisionKind) {
        self.with(plugin, at_ms, |a| {
            let d = &mut a.decisions;
            match kind {
                DecisionKind::Allow => d.allowed += 1,
                DecisionKind::Deny => d.denied += 1,
                DecisionKind::Shadow => d.shadowed += 1,
                DecisionKind::AwaitApproval => d.awaiting += 1,
            }
        });
    }

    /// The counts so far, leaving none.
    pub(crate) fn take(&self) -> Vec<PluginActivity> {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts
            .drain()
            .flat_map(|(_, plugins)| plugins.into_values())
            .collect()
    }

    /// Counts taken that could not be written, kept for the next try (but for hours past
    /// the retention at `now_ms`).
    pub(crate) fn put_back(&self, unwritten: Vec<PluginActivity>, now_ms: i64) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        for a in unwritten {
            if a.hour_ms < now_ms - ACTIVITY_RETENTION_MS {
                continue;
            }
            let plugins = counts.entry(a.hour_ms).or_default();
            match plugins.get_mut(a.plugin.as_str()) {
                Some(existing) => existing.add(&a),
                None => {
                    plugins.insert(a.plugin.as_str().to_owned(), a);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_gather_by_plugin_and_hour_and_survive_a_failed_write() {
        let book = ActivityBook::default();
        book.invocation("a", 10, false);
        book.invocation("a", 20, true);
        book.decision("a", 15, DecisionKind::Deny);
        book.decision("a", HOUR_MS + 1, DecisionKind::Allow);
        book.decision("b", 5, DecisionKind::AwaitApproval);
        let mut taken = book.take();
        taken.sort_by_key(|a| (a.plugin.as_str().to_owned(), a.hour_ms));
        assert_eq!(taken.len(), 3);
        assert_eq!(
            (
                taken[0].invocations,
                taken[0].traps,
                taken[0].decisions.denied
            ),
            (2, 1, 1)
        );
        assert_eq!(taken[0].last_invocation_ms, Some(20));
        assert_eq!(taken[1].decisions.allowed, 1);
        assert!(book.take().is_empty());
        book.invocation("a", 30, false);
        book.put_back(taken, HOUR_MS);
        let again = book.take();
        assert_eq!(again.len(), 3);
        let first = again
            .iter()
            .find(|a| a.plugin.as_str() == "a" && a.hour_ms == 0);
        assert_eq!(
            first.map(|a| (a.invocations, a.last_invocation_ms)),
            Some((3, Some(30)))
        );
        book.put_back(again, ACTIVITY_RETENTION_MS + 2 * HOUR_MS);
        assert!(book.take().is_empty(), "past the retention, dropped");
    }
}
