//! Budget counters (G3): one stored event per target per spend, so a window slides exactly
//! (no fixed buckets), fan-out is counted per machine, and the last action on a target is
//! known for cooldowns.
//!
//! A scope is the policy's name for whose budget it is (`plugin:isolator`, `global`); a kind
//! is usually an [`riposte_domain::ActionKind::name`], or any name the policy chooses for an
//! aggregate budget. An event at time `t` counts in the window `(now - window, now]`, so it
//! drops out exactly `window` after it was spent.

use super::{Op, Refusal, Result, Store};
use crate::repos::BudgetCounters;
use crate::sql::{Tx, params};

/// One budget a spend must fit in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BudgetCharge {
    /// Whose budget (`global`, `plugin:<name>`, ...).
    pub scope: String,
    /// Which action kind it limits.
    pub kind: String,
    /// The sliding window, in seconds.
    pub window_secs: u64,
    /// At most this many targets in any window.
    pub max: u32,
}

/// The answer of [`crate::BudgetCounters::spend`] and [`crate::BudgetCounters::spend_all`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub enum SpendOutcome {
    /// Recorded: every target was charged to every budget.
    Granted {
        /// The smallest number of targets still allowed, over the budgets charged, after
        /// this spend (`u32::MAX` when no budget was given).
        remaining: u32,
    },
    /// Refused: nothing was recorded.
    Exhausted {
        /// The budget that has no room.
        scope: String,
        /// Its kind.
        kind: String,
        /// Targets already spent in its window.
        used: u32,
        /// Its maximum.
        max: u32,
        /// Targets this spend asked for.
        requested: u32,
    },
}

impl SpendOutcome {
    /// Whether the spend was granted.
    pub fn is_granted(&self) -> bool {
        matches!(self, SpendOutcome::Granted { .. })
    }
}

fn window_ms(window_secs: u64) -> i64 {
    i64::try_from(window_secs.saturating_mul(1000)).unwrap_or(i64::MAX)
}

fn count_used(tx: &Tx<'_>, scope: &str, kind: &str, window_secs: u64, now_ms: i64) -> Op<u32> {
    let since = now_ms.saturating_sub(window_ms(window_secs));
    let n: i64 = tx.query_row(
        "SELECT COUNT(*) FROM budget_events WHERE scope = ?1 AND kind = ?2 AND at_ms > ?3 AND at_ms <= ?4",
        params![scope, kind, since, now_ms],
        |r| r.get(0),
    )?;
    Ok(n.clamp(0, u32::MAX as i64) as u32)
}

impl BudgetCounters for Store {
    fn spend(
        &self,
        scope: &str,
        kind: &str,
        targets: &[String],
        now_ms: i64,
        window_secs: u64,
        max: u32,
    ) -> Result<SpendOutcome> {
        self.spend_all(
            &[BudgetCharge {
                scope: scope.to_owned(),
                kind: kind.to_owned(),
                window_secs,
                max,
            }],
            targets,
            now_ms,
        )
    }

    fn spend_all(
        &self,
        charges: &[BudgetCharge],
        targets: &[String],
        now_ms: i64,
    ) -> Result<SpendOutcome> {
        let mut targets: Vec<&str> = targets.iter().map(String::as_str).collect();
        targets.sort_unstable();
        targets.dedup();
        self.write("spend", |tx| {
            if targets.iter().any(|t| t.is_empty()) {
                return Err(Refusal::InvalidArgument("a budget target is empty".into()).into());
            }
            let requested = u32::try_from(targets.len()).unwrap_or(u32::MAX);
            let mut remaining = u32::MAX;
            for charge in charges {
                let used = count_used(tx, &charge.scope, &charge.kind, charge.window_secs, now_ms)?;
                if u64::from(used) + u64::from(requested) > u64::from(charge.max) {
                    return Ok(SpendOutcome::Exhausted {
                        scope: charge.scope.clone(),
                        kind: charge.kind.clone(),
                        used,
                        max: charge.max,
                        requested,
                    });
                }
                remaining = remaining.min(charge.max - used - requested);
            }
            if targets.is_empty() {
                return Ok(SpendOutcome::Granted { remaining });
            }
            for charge in charges {
                for target in &targets {
                    tx.execute(
                        "INSERT INTO budget_events (id, scope, kind, target, at_ms) \
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                        params![
                            uuid::Uuid::new_v4().simple().to_string(),
                            charge.scope,
                            charge.kind,
                            target,
                            now_ms
                        ],
                    )?;
                }
            }
            Ok(SpendOutcome::Granted { remaining })
        })
    }

    fn used(&self, scope: &str, kind: &str, window_secs: u64, now_ms: i64) -> Result<u32> {
        self.read("budget_used", |tx| {
            count_used(tx, scope, kind, window_secs, now_ms)
        })
    }

    fn last_action_on(&self, target: &str) -> Result<Option<i64>> {
        self.read("last_action_on", |tx| {
            tx.query_row(
                "SELECT MAX(at_ms) FROM budget_events WHERE target = ?1",
                params![target],
                |r| r.get(0),
            )
        })
    }

    fn prune_budget_events(&self, before_ms: i64) -> Result<usize> {
        self.write("prune_budget_events", |tx| {
            tx.execute(
                "DELETE FROM budget_events WHERE at_ms <= ?1",
                params![before_ms],
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targets(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    backend_tests! {
        fn the_window_slides(store) {
            let hour = 3600;
            let t0 = 1_000_000;
            assert!(
                store
                    .spend("g", "isolate", &targets(&["m1", "m2"]), t0, hour, 3)
                    .unwrap()
                    .is_granted()
            );
            assert_eq!(
                store
                    .spend("g", "isolate", &targets(&["m3", "m4"]), t0 + 1, hour, 3)
                    .unwrap(),
                SpendOutcome::Exhausted {
                    scope: "g".into(),
                    kind: "isolate".into(),
                    used: 2,
                    max: 3,
                    requested: 2
                }
            );
            assert_eq!(
                store
                    .spend("g", "isolate", &targets(&["m3"]), t0 + 2, hour, 3)
                    .unwrap(),
                SpendOutcome::Granted { remaining: 0 }
            );
            // One millisecond before the first spend leaves the window: still full.
            assert_eq!(
                store
                    .used("g", "isolate", hour, t0 + 3_600_000 - 1)
                    .unwrap(),
                3
            );
            assert!(
                !store
                    .spend("g", "isolate", &targets(&["m5"]), t0 + 3_599_999, hour, 3)
                    .unwrap()
                    .is_granted()
            );
            // Exactly one window later the first two drop out.
            assert_eq!(store.used("g", "isolate", hour, t0 + 3_600_000).unwrap(), 1);
            assert!(
                store
                    .spend(
                        "g",
                        "isolate",
                        &targets(&["m5", "m6"]),
                        t0 + 3_600_000,
                        hour,
                        3
                    )
                    .unwrap()
                    .is_granted()
            );
            // Other kinds and scopes have their own counters.
            assert_eq!(
                store
                    .used("g", "kill-process", hour, t0 + 3_600_000)
                    .unwrap(),
                0
            );
            assert_eq!(
                store
                    .used("plugin:x", "isolate", hour, t0 + 3_600_000)
                    .unwrap(),
                0
            );
        }
    }

    backend_tests! {
        fn several_budgets_are_all_or_nothing(store) {
            let charges = [
                BudgetCharge {
                    scope: "plugin:a".into(),
                    kind: "isolate".into(),
                    window_secs: 60,
                    max: 10,
                },
                BudgetCharge {
                    scope: "global".into(),
                    kind: "isolate".into(),
                    window_secs: 60,
                    max: 2,
                },
            ];
            assert_eq!(
                store
                    .spend_all(&charges, &targets(&["m1", "m1"]), 0)
                    .unwrap(),
                SpendOutcome::Granted { remaining: 1 },
                "duplicate targets count once"
            );
            let refused = store
                .spend_all(&charges, &targets(&["m2", "m3"]), 1)
                .unwrap();
            assert!(matches!(refused, SpendOutcome::Exhausted { ref scope, .. } if scope == "global"));
            assert_eq!(
                store.used("plugin:a", "isolate", 60, 1).unwrap(),
                1,
                "nothing charged"
            );
            assert_eq!(store.used("global", "isolate", 60, 1).unwrap(), 1);
        }
    }

    backend_tests! {
        fn last_action_and_pruning(store) {
            assert_eq!(store.last_action_on("m1").unwrap(), None);
            store
                .spend("g", "isolate", &targets(&["m1"]), 100, 60, 10)
                .unwrap();
            store
                .spend("g", "kill-process", &targets(&["m1"]), 250, 60, 10)
                .unwrap();
            assert_eq!(store.last_action_on("m1").unwrap(), Some(250));
            assert_eq!(store.prune_budget_events(100).unwrap(), 1);
            assert_eq!(store.last_action_on("m1").unwrap(), Some(250));
            assert_eq!(store.prune_budget_events(1_000).unwrap(), 1);
            assert_eq!(store.last_action_on("m1").unwrap(), None);
        }
    }

    backend_tests! {
        fn an_empty_spend_is_granted_and_records_nothing(store) {
            assert!(
                store
                    .spend("g", "isolate", &[], 1, 60, 0)
                    .unwrap()
                    .is_granted()
            );
            assert_eq!(store.used("g", "isolate", 60, 1).unwrap(), 0);
            assert!(
                store
                    .spend("g", "isolate", &targets(&[""]), 1, 60, 5)
                    .is_err()
            );
        }
    }
}
