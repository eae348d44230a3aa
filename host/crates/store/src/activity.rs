//! What each plugin did, hour by hour: invocations, traps and the gate's decisions. The
//! service adds its counts once a cycle; the console reads them for its overview and its
//! pictures. Old hours are pruned when counts are added.

use super::{Op, Result, Store};
use crate::repos::Activity;
use crate::sql::{Row, params};
use riposte_domain::PluginName;

/// An hour in ms: the width of one row of counts.
pub const HOUR_MS: i64 = 3_600_000;

/// The gate's decisions, counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DecisionCounts {
    /// Allowed and carried out.
    pub allowed: u64,
    /// Refused.
    pub denied: u64,
    /// Recorded as would-be (shadow mode).
    pub shadowed: u64,
    /// Held for an operator's approval.
    pub awaiting: u64,
}

impl DecisionCounts {
    /// Adds `other`'s counts.
    pub fn add(&mut self, other: &DecisionCounts) {
        self.allowed += other.allowed;
        self.denied += other.denied;
        self.shadowed += other.shadowed;
        self.awaiting += other.awaiting;
    }
}

/// What one plugin did within one hour.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PluginActivity {
    /// The plugin.
    pub plugin: PluginName,
    /// The hour's start (ms, a multiple of [`HOUR_MS`]).
    pub hour_ms: i64,
    /// Invocations begun (a trap counts too).
    pub invocations: u64,
    /// Invocations that trapped or were stopped.
    pub traps: u64,
    /// The gate's decisions on the calls it made.
    pub decisions: DecisionCounts,
    /// Its last invocation within the hour (ms).
    pub last_invocation_ms: Option<i64>,
}

impl PluginActivity {
    /// No activity of `plugin` in the hour holding `at_ms`.
    pub fn empty(plugin: PluginName, at_ms: i64) -> Self {
        Self {
            plugin,
            hour_ms: at_ms.div_euclid(HOUR_MS) * HOUR_MS,
            invocations: 0,
            traps: 0,
            decisions: DecisionCounts::default(),
            last_invocation_ms: None,
        }
    }

    /// Adds `other`'s counts (of the same plugin and hour).
    pub fn add(&mut self, other: &PluginActivity) {
        self.invocations += other.invocations;
        self.traps += other.traps;
        self.decisions.add(&other.decisions);
        self.last_invocation_ms = self.last_invocation_ms.max(other.last_invocation_ms);
    }
}

const COLUMNS: &str =
    "plugin, hour_ms, invocations, traps, allowed, denied, shadowed, awaiting, last_invocation_ms";

fn count(r: &Row, i: usize) -> Op<u64> {
    Ok(r.get::<i64>(i)?.max(0) as u64)
}

fn from_row(r: &Row) -> Op<PluginActivity> {
    Ok(PluginActivity {
        plugin: PluginName::new(r.get::<String>(0)?),
        hour_ms: r.get(1)?,
        invocations: count(r, 2)?,
        traps: count(r, 3)?,
        decisions: DecisionCounts {
            allowed: count(r, 4)?,
            denied: count(r, 5)?,
            shadowed: count(r, 6)?,
            awaiting: count(r, 7)?,
        },
        last_invocation_ms: r.get(8)?,
    })
}

fn stored(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Activity for Store {
    fn add_activity(&self, counts: &[PluginActivity], prune_before_ms: i64) -> Result<()> {
        self.write("add_activity", |tx| {
            for c in counts {
                let d = &c.decisions;
                tx.execute(
                    &format!(
                        "INSERT INTO plugin_activity ({COLUMNS}) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
                         ON CONFLICT (plugin, hour_ms) DO UPDATE SET \
                         invocations = plugin_activity.invocations + excluded.invocations, \
                         traps = plugin_activity.traps + excluded.traps, \
                         allowed = plugin_activity.allowed + excluded.allowed, \
                         denied = plugin_activity.denied + excluded.denied, \
                         shadowed = plugin_activity.shadowed + excluded.shadowed, \
                         awaiting = plugin_activity.awaiting + excluded.awaiting, \
                         last_invocation_ms = CASE \
                           WHEN plugin_activity.last_invocation_ms IS NULL \
                             OR excluded.last_invocation_ms > plugin_activity.last_invocation_ms \
                           THEN excluded.last_invocation_ms \
                           ELSE plugin_activity.last_invocation_ms END"
                    ),
                    params![
                        c.plugin.as_str(),
                        c.hour_ms.div_euclid(HOUR_MS) * HOUR_MS,
                        stored(c.invocations),
                        stored(c.traps),
                        stored(d.allowed),
                        stored(d.denied),
                        stored(d.shadowed),
                        stored(d.awaiting),
                        c.last_invocation_ms
                    ],
                )?;
            }
            tx.execute(
                "DELETE FROM plugin_activity WHERE hour_ms < ?1",
                params![prune_before_ms],
            )?;
            Ok(())
        })
    }

    fn activity_since(&self, since_ms: i64) -> Result<Vec<PluginActivity>> {
        let from_hour = since_ms.div_euclid(HOUR_MS) * HOUR_MS;
        self.read("activity_since", |tx| {
            tx.query_map(
                &format!(
                    "SELECT {COLUMNS} FROM plugin_activity WHERE hour_ms >= ?1 \
                     ORDER BY plugin, hour_ms"
                ),
                params![from_hour],
                from_row,
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(plugin: &str, at_ms: i64, allowed: u64, last: Option<i64>) -> PluginActivity {
        PluginActivity {
            invocations: 2,
            traps: 1,
            decisions: DecisionCounts {
                allowed,
                denied: 1,
                shadowed: 0,
                awaiting: 3,
            },
            last_invocation_ms: last,
            ..PluginActivity::empty(PluginName::new(plugin), at_ms)
        }
    }

    backend_tests! {
        fn activity_adds_up_per_plugin_and_hour_and_old_hours_go(store) {
            let hour = 10 * HOUR_MS;
            store.add_activity(&[counts("a", hour + 5, 1, Some(hour + 5)), counts("b", hour, 0, None)], 0).unwrap();
            store.add_activity(&[counts("a", hour + 9, 4, Some(hour + 7))], 0).unwrap();
            store.add_activity(&[counts("a", hour + HOUR_MS, 1, None)], 0).unwrap();
            let rows = store.activity_since(hour + 30).unwrap();
            assert_eq!(rows.len(), 3, "{rows:?}");
            let a = &rows[0];
            assert_eq!((a.plugin.as_str(), a.hour_ms), ("a", hour));
            assert_eq!((a.invocations, a.traps, a.decisions.allowed, a.decisions.awaiting), (4, 2, 5, 6));
            assert_eq!(a.last_invocation_ms, Some(hour + 7), "the latest is kept");
            assert_eq!(rows[1].last_invocation_ms, None);
            assert_eq!(rows[2].plugin.as_str(), "b");
            assert_eq!(store.activity_since(hour + HOUR_MS).unwrap().len(), 1);
            store.add_activity(&[], hour + HOUR_MS).unwrap();
            let left = store.activity_since(0).unwrap();
            assert_eq!(left.len(), 1, "the older hour is pruned: {left:?}");
        }
    }
}
