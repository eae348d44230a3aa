//! The policy gate's budget ledger, durable: one charge per (plugin, action kind, target) of
//! every allowed action, counted by budgets whose selector matches the kind and by
//! per-target cooldowns.
//!
//! [`Budgets::spend_charges_checked`] (and [`crate::BudgetsExt::spend_charges`] over it) is
//! the atomic step `policy::BudgetLedger::try_spend` needs: in
//! one write transaction (serialised against every other writer) it hands the policy's checks a [`ChargeView`] of the
//! recorded charges and records the new charges only if the checks refuse nothing, so two
//! concurrent decisions (threads or processes) cannot both squeeze under the same budget.

use super::{Failure, Result, Store, tag};
use crate::repos::{Budgets, ChargeCheck, ChargeReads, ChargeView, SpendCheck};
use crate::sql::{Tx, Value, dyn_params, params};
use riposte_domain::{ActionKind, PluginName, TimestampMs};

/// One charge to record: an action kind on a target (a machine guid, a reputation key, a
/// Malop id, as the policy spells its target keys).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChargeItem {
    /// The action kind.
    pub kind: ActionKind,
    /// The target, as the policy spells it.
    pub target: String,
}

/// The reads of [`ChargeReads`] inside the transaction of a spend.
struct TxCharges<'a> {
    tx: &'a Tx<'a>,
    store: &'a Store,
}

const SPEND: &str = "spend_charges";

impl ChargeReads for TxCharges<'_> {
    fn count(
        &mut self,
        plugin: Option<&PluginName>,
        kinds: &[ActionKind],
        since_ms: TimestampMs,
    ) -> Result<u64> {
        count(self.tx, plugin, kinds, since_ms).map_err(|f| tag(self.store.path(), SPEND, f))
    }

    fn last_charge(
        &mut self,
        plugin: &PluginName,
        kind: ActionKind,
        target: &str,
    ) -> Result<Option<TimestampMs>> {
        last(self.tx, plugin, kind, target).map_err(|f| tag(self.store.path(), SPEND, f))
    }
}

fn count(
    tx: &Tx<'_>,
    plugin: Option<&PluginName>,
    kinds: &[ActionKind],
    since_ms: TimestampMs,
) -> std::result::Result<u64, Failure> {
    if kinds.is_empty() {
        return Ok(0);
    }
    let mut sql = String::from("SELECT COUNT(*) FROM budget_charges WHERE at_ms > ? AND kind IN (");
    let mut args: Vec<Value> = vec![since_ms.into()];
    for (i, kind) in kinds.iter().enumerate() {
        sql.push_str(if i == 0 { "?" } else { ", ?" });
        args.push(kind.name().to_owned().into());
    }
    sql.push(')');
    if let Some(plugin) = plugin {
        sql.push_str(" AND plugin = ?");
        args.push(plugin.as_str().to_owned().into());
    }
    let n: i64 = tx.query_row(&sql, &dyn_params(&args), |r| r.get(0))?;
    Ok(n.max(0) as u64)
}

fn last(
    tx: &Tx<'_>,
    plugin: &PluginName,
    kind: ActionKind,
    target: &str,
) -> std::result::Result<Option<TimestampMs>, Failure> {
    tx.query_row(
        "SELECT MAX(at_ms) FROM budget_charges WHERE plugin = ?1 AND kind = ?2 AND target = ?3",
        params![plugin.as_str(), kind.name(), target],
        |r| r.get(0),
    )
}

impl Budgets for Store {
    fn spend_charges_checked(
        &self,
        plugin: &PluginName,
        charges: &[ChargeItem],
        now_ms: TimestampMs,
        check: &mut SpendCheck<'_>,
    ) -> Result<ChargeCheck> {
        let mut check_failed = None;
        let decided = self.write(SPEND, |tx| {
            let mut reads = TxCharges { tx, store: self };
            let decided = match check(&mut ChargeView::new(&mut reads)) {
                Ok(decided) => decided,
                Err(error) => {
                    check_failed = Some(error);
                    ChargeCheck::Discard
                }
            };
            if decided == ChargeCheck::Record {
                for charge in charges {
                    tx.execute(
                        "INSERT INTO budget_charges (id, plugin, kind, target, at_ms) \
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                        params![
                            uuid::Uuid::new_v4().simple().to_string(),
                            plugin.as_str(),
                            charge.kind.name(),
                            charge.target,
                            now_ms
                        ],
                    )?;
                }
            }
            Ok(decided)
        })?;
        match check_failed {
            Some(error) => Err(error),
            None => Ok(decided),
        }
    }

    fn refund_charges(
        &self,
        plugin: &PluginName,
        charges: &[ChargeItem],
        since_ms: TimestampMs,
    ) -> Result<usize> {
        self.write("refund_charges", |tx| {
            let mut given_back = 0;
            for charge in charges {
                given_back += tx.execute(
                    "DELETE FROM budget_charges WHERE id = (SELECT id FROM budget_charges \
                     WHERE plugin = ?1 AND kind = ?2 AND target = ?3 AND at_ms >= ?4 \
                     ORDER BY at_ms DESC LIMIT 1)",
                    params![plugin.as_str(), charge.kind.name(), charge.target, since_ms],
                )?;
            }
            Ok(given_back)
        })
    }

    fn charges_used(
        &self,
        plugin: Option<&PluginName>,
        kinds: &[ActionKind],
        since_ms: TimestampMs,
    ) -> Result<u64> {
        self.read("charges_used", |tx| count(tx, plugin, kinds, since_ms))
    }

    fn last_charge(
        &self,
        plugin: &PluginName,
        kind: ActionKind,
        target: &str,
    ) -> Result<Option<TimestampMs>> {
        self.read("last_charge", |tx| last(tx, plugin, kind, target))
    }

    fn prune_charges(&self, before_ms: TimestampMs) -> Result<usize> {
        self.write("prune_charges", |tx| {
            tx.execute(
                "DELETE FROM budget_charges WHERE at_ms <= ?1",
                params![before_ms],
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;
    use crate::prelude::*;

    fn item(kind: ActionKind, target: &str) -> ChargeItem {
        ChargeItem {
            kind,
            target: target.into(),
        }
    }

    /// A small stand-in for `policy::evaluate_plan`: at most `max` isolations per window.
    fn at_most(
        max: u64,
        requested: u64,
        since: i64,
    ) -> impl FnOnce(&mut ChargeView<'_>) -> Result<Option<u64>> {
        move |view| {
            let used = view.count(None, &[ActionKind::Isolate], since)?;
            Ok((used + requested > max).then_some(used))
        }
    }

    backend_tests! {
        fn charges_are_recorded_only_when_the_check_passes(store) {
            let p = PluginName::new("p");
            let q = PluginName::new("q");
            let two = [
                item(ActionKind::Isolate, "m1"),
                item(ActionKind::Isolate, "m2"),
            ];
            assert_eq!(
                store
                    .spend_charges(&p, &two, 100, at_most(3, 2, 0))
                    .unwrap(),
                None
            );
            assert_eq!(
                store
                    .spend_charges(&q, &two, 101, at_most(3, 2, 0))
                    .unwrap(),
                Some(2),
                "refused: 2 used"
            );
            assert_eq!(
                store.charges_used(None, &[ActionKind::Isolate], 0).unwrap(),
                2
            );
            assert_eq!(
                store
                    .charges_used(Some(&q), &[ActionKind::Isolate], 0)
                    .unwrap(),
                0
            );
            assert_eq!(
                store
                    .spend_charges(&q, &two[..1], 102, at_most(3, 1, 0))
                    .unwrap(),
                None
            );
            assert_eq!(
                store
                    .charges_used(Some(&q), &[ActionKind::Isolate], 0)
                    .unwrap(),
                1
            );
            // The window: charges strictly after `since`.
            assert_eq!(
                store
                    .charges_used(None, &[ActionKind::Isolate], 100)
                    .unwrap(),
                1
            );
            assert_eq!(
                store
                    .charges_used(None, &[ActionKind::Isolate, ActionKind::KillProcess], 0)
                    .unwrap(),
                3
            );
            assert_eq!(store.charges_used(None, &[], 0).unwrap(), 0);

            assert_eq!(
                store.last_charge(&p, ActionKind::Isolate, "m2").unwrap(),
                Some(100)
            );
            assert_eq!(
                store.last_charge(&q, ActionKind::Isolate, "m2").unwrap(),
                None
            );
            assert_eq!(
                store.last_charge(&p, ActionKind::Unisolate, "m2").unwrap(),
                None
            );
            assert_eq!(store.prune_charges(100).unwrap(), 2);
            assert_eq!(
                store.last_charge(&p, ActionKind::Isolate, "m2").unwrap(),
                None
            );
        }
    }

    backend_tests! {
        fn refunds_delete_the_latest_matching_charge_once(store) {
            let p = PluginName::new("p");
            let one = [item(ActionKind::Isolate, "m1")];
            let pass = |_: &mut ChargeView<'_>| Ok::<Option<u64>, Error>(None);
            store.spend_charges(&p, &one, 100, pass).unwrap();
            store.spend_charges(&p, &one, 200, pass).unwrap();
            // Not another plugin's, not before `since`.
            assert_eq!(
                store
                    .refund_charges(&PluginName::new("q"), &one, 0)
                    .unwrap(),
                0
            );
            assert_eq!(store.refund_charges(&p, &one, 201).unwrap(), 0);
            assert_eq!(store.refund_charges(&p, &one, 150).unwrap(), 1);
            assert_eq!(
                store.last_charge(&p, ActionKind::Isolate, "m1").unwrap(),
                Some(100),
                "the latest one went"
            );
            assert_eq!(store.refund_charges(&p, &one, 150).unwrap(), 0, "once only");
            assert_eq!(
                store.charges_used(None, &[ActionKind::Isolate], 0).unwrap(),
                1
            );
        }
    }

    backend_tests! {
        fn an_error_in_the_check_records_nothing(store) {
            let p = PluginName::new("p");
            let err = store
                .spend_charges::<(), String>(&p, &[item(ActionKind::Isolate, "m1")], 1, |_| {
                    Err("policy failed".to_owned())
                })
                .unwrap_err();
            assert_eq!(err, "policy failed");
            assert_eq!(
                store.charges_used(None, &[ActionKind::Isolate], 0).unwrap(),
                0
            );
        }
    }

    impl From<Error> for String {
        fn from(e: Error) -> String {
            e.to_string()
        }
    }
}
