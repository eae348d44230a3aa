//! [`riposte_policy::BudgetLedger`] on the store: the policy gate's budgets and cooldowns,
//! durable across restarts and shared by every process on the database.
//!
//! Charges are stored in `budget_charges` with the target's
//! [`riposte_policy::TargetKey::storage_key`]; the checks are the policy's own
//! [`riposte_policy::evaluate_plan`], run inside the transaction of [`crate::BudgetsExt::spend_charges`].

use super::{ChargeItem, ChargeView, Error, Store};
use crate::repos::{Budgets, BudgetsExt};
use riposte_domain::{ActionKind, PluginName, TimestampMs};
use riposte_policy::ActionSelector;
use riposte_policy::{self, BudgetLedger, Charge, LedgerView, Refusal, SpendPlan, TargetKey};

fn ledger_error(e: Error) -> riposte_policy::Error {
    riposte_policy::Error::Ledger(e.to_string())
}

/// The error of one spend: the store's or the policy's.
enum SpendError {
    Store(Error),
    Policy(riposte_policy::Error),
}

impl From<Error> for SpendError {
    fn from(e: Error) -> Self {
        SpendError::Store(e)
    }
}

struct View<'a, 'b>(&'a mut ChargeView<'b>);

impl LedgerView for View<'_, '_> {
    fn count(
        &mut self,
        plugin: Option<&PluginName>,
        selector: ActionSelector,
        since_ms: TimestampMs,
    ) -> Result<u64, riposte_policy::Error> {
        self.0
            .count(plugin, &selector.kinds(), since_ms)
            .map_err(ledger_error)
    }

    fn last_charge(
        &mut self,
        plugin: &PluginName,
        kind: ActionKind,
        target: &TargetKey,
    ) -> Result<Option<TimestampMs>, riposte_policy::Error> {
        self.0
            .last_charge(plugin, kind, &target.storage_key())
            .map_err(ledger_error)
    }
}

fn items(charges: &[Charge]) -> Vec<ChargeItem> {
    charges
        .iter()
        .map(|c| ChargeItem {
            kind: c.kind,
            target: c.target.storage_key(),
        })
        .collect()
}

impl BudgetLedger for Store {
    fn try_spend(&self, plan: &SpendPlan<'_>) -> Result<Option<Refusal>, riposte_policy::Error> {
        let items = items(plan.charges);
        self.spend_charges(plan.plugin, &items, plan.now_ms, |view| {
            riposte_policy::evaluate_plan(plan, &mut View(view)).map_err(SpendError::Policy)
        })
        .map_err(|e| match e {
            SpendError::Store(e) => ledger_error(e),
            SpendError::Policy(e) => e,
        })
    }

    fn used(
        &self,
        plugin: Option<&PluginName>,
        selector: ActionSelector,
        since_ms: TimestampMs,
    ) -> Result<u64, riposte_policy::Error> {
        self.charges_used(plugin, &selector.kinds(), since_ms)
            .map_err(ledger_error)
    }

    fn refund(
        &self,
        plugin: &PluginName,
        charges: &[Charge],
        since_ms: TimestampMs,
    ) -> Result<usize, riposte_policy::Error> {
        self.refund_charges(plugin, &items(charges), since_ms)
            .map_err(ledger_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use riposte_domain::MachineGuid;
    use riposte_policy::Budget;
    use riposte_policy::BudgetScope;
    use std::sync::Arc;

    fn isolate(machine: &str) -> Charge {
        Charge {
            kind: ActionKind::Isolate,
            target: TargetKey::Machine(MachineGuid::new(machine)),
        }
    }

    fn plan<'a>(
        plugin: &'a PluginName,
        charges: &'a [Charge],
        now_ms: TimestampMs,
        cooldown_ms: u64,
    ) -> SpendPlan<'a> {
        SpendPlan {
            plugin,
            now_ms,
            charges,
            limits: vec![
                (
                    BudgetScope::Plugin(plugin.clone()),
                    Budget {
                        action: ActionSelector::Kind(ActionKind::Isolate),
                        max: 3,
                        window_secs: 3_600,
                    },
                ),
                (
                    BudgetScope::Global,
                    Budget {
                        action: ActionSelector::Any,
                        max: 4,
                        window_secs: 600,
                    },
                ),
            ],
            cooldown_ms,
        }
    }

    backend_tests! {
        fn budgets_are_all_or_nothing_and_slide(store) {
            let ledger: Arc<dyn BudgetLedger> = Arc::new(store);
            let a = PluginName::new("a");
            let b = PluginName::new("b");
            let t0 = 1_000_000;

            let two = [isolate("m1"), isolate("m2")];
            assert_eq!(ledger.try_spend(&plan(&a, &two, t0, 0)).unwrap(), None);
            let more = [isolate("m3"), isolate("m4")];
            match ledger.try_spend(&plan(&a, &more, t0 + 1, 0)).unwrap() {
                Some(Refusal::Budget {
                    scope: BudgetScope::Plugin(_),
                    used: 2,
                    requested: 2,
                    ..
                }) => {}
                other => panic!("expected the plugin budget to refuse, got {other:?}"),
            }
            assert_eq!(
                ledger
                    .used(Some(&a), ActionSelector::Kind(ActionKind::Isolate), 0)
                    .unwrap(),
                2,
                "nothing recorded by the refusal"
            );
            assert_eq!(ledger.try_spend(&plan(&b, &more, t0 + 2, 0)).unwrap(), None);
            assert!(matches!(
                ledger
                    .try_spend(&plan(&b, &[isolate("m5")], t0 + 3, 0))
                    .unwrap(),
                Some(Refusal::Budget {
                    scope: BudgetScope::Global,
                    used: 4,
                    ..
                })
            ));
            // Ten minutes later the global window has slid past every charge.
            let later = t0 + 600_000;
            assert_eq!(
                ledger
                    .try_spend(&plan(&b, &[isolate("m5")], later, 0))
                    .unwrap(),
                None
            );
            assert_eq!(ledger.used(None, ActionSelector::Any, t0 + 2).unwrap(), 1);
            assert_eq!(ledger.used(None, ActionSelector::Remediate, 0).unwrap(), 0);
        }
    }

    backend_tests! {
        fn cooldowns_read_the_last_charge_per_target(store) {
            let a = PluginName::new("a");
            assert_eq!(
                store
                    .try_spend(&plan(&a, &[isolate("m1")], 0, 1_000))
                    .unwrap(),
                None
            );
            match store
                .try_spend(&plan(&a, &[isolate("m1")], 999, 1_000))
                .unwrap()
            {
                Some(Refusal::Cooldown {
                    until_ms: 1_000, ..
                }) => {}
                other => panic!("expected a cooldown, got {other:?}"),
            }
            assert_eq!(
                store
                    .try_spend(&plan(&a, &[isolate("m1")], 1_000, 1_000))
                    .unwrap(),
                None
            );
            assert_eq!(
                store
                    .last_charge(&a, ActionKind::Isolate, "machine:m1")
                    .unwrap(),
                Some(1_000)
            );
        }
    }
}
