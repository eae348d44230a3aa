//! Budget state: what each plugin spent, when, on which target.
//!
//! The ledger stores one charge per (action kind, target) of every allowed action. A budget
//! counts the charges of its scope (one plugin, or all) whose kind its selector matches and
//! that are younger than its window (a sliding window: a charge made at `t` stops counting at
//! `t + window`). A cooldown looks up the latest charge of the same plugin, kind and target.
//!
//! [`BudgetLedger::try_spend`] must check every limit of a [`SpendPlan`] and record its charges
//! as one atomic step (a SQLite implementation: one `BEGIN IMMEDIATE` transaction), so that
//! two concurrent calls cannot both squeeze under the same budget. [`evaluate_plan`] holds the
//! checking logic; implementations provide the reads through [`LedgerView`].

use super::{Charge, Error, TargetKey};
use crate::settings::{ActionSelector, Budget};
use riposte_domain::{ActionKind, PluginName, TimestampMs};
use std::sync::Mutex;

/// Whose budget.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BudgetScope {
    /// Shared by all plugins (`[[global_budgets]]`).
    Global,
    /// One plugin's own (`[[plugins.budgets]]`).
    Plugin(PluginName),
}

impl std::fmt::Display for BudgetScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Global => f.write_str("the global budget"),
            Self::Plugin(name) => write!(f, "the budget of plugin `{name}`"),
        }
    }
}

/// Everything one decision spends, and the limits it must stay within.
#[derive(Clone, Debug)]
pub struct SpendPlan<'a> {
    /// The plugin spending.
    pub plugin: &'a PluginName,
    /// Now (ms).
    pub now_ms: TimestampMs,
    /// One unit per distinct (kind, target).
    pub charges: &'a [Charge],
    /// Budgets to respect, checked in order.
    pub limits: Vec<(BudgetScope, Budget)>,
    /// The plugin's per-target cooldown (0: none), for kinds that have one.
    pub cooldown_ms: u64,
}

/// Why a plan was refused (nothing was spent).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A budget would be exceeded.
    Budget {
        /// Whose.
        scope: BudgetScope,
        /// Which.
        budget: Budget,
        /// Units already spent in the window.
        used: u64,
        /// Units the call needs.
        requested: u64,
    },
    /// A target is cooling down.
    Cooldown {
        /// The target.
        target: TargetKey,
        /// The action kind.
        kind: ActionKind,
        /// When it may be acted on again (ms).
        until_ms: TimestampMs,
    },
}

/// Reads an implementation offers [`evaluate_plan`], inside its atomic step.
pub trait LedgerView {
    /// Charges of `plugin` (or of every plugin, for `None`) whose kind `selector` matches,
    /// made strictly after `since_ms`.
    fn count(
        &mut self,
        plugin: Option<&PluginName>,
        selector: ActionSelector,
        since_ms: TimestampMs,
    ) -> Result<u64, Error>;

    /// The time of the latest charge of `plugin` for `kind` on `target`.
    fn last_charge(
        &mut self,
        plugin: &PluginName,
        kind: ActionKind,
        target: &TargetKey,
    ) -> Result<Option<TimestampMs>, Error>;
}

/// Where budgets are kept. Implemented in memory here and by the SQLite state store.
pub trait BudgetLedger: Send + Sync {
    /// Atomically: checks `plan` (see [`evaluate_plan`]) and, only if nothing refuses it,
    /// records all of its charges at `plan.now_ms`. `Ok(None)`: spent. `Ok(Some(_))`:
    /// refused, nothing recorded.
    fn try_spend(&self, plan: &SpendPlan<'_>) -> Result<Option<Refusal>, Error>;

    /// Charges counted by a budget of `plugin` (or global, for `None`) on `selector` made
    /// strictly after `since_ms`: what is used now, for `riposte status` and metrics.
    fn used(
        &self,
        plugin: Option<&PluginName>,
        selector: ActionSelector,
        since_ms: TimestampMs,
    ) -> Result<u64, Error>;

    /// Gives back `charges` of `plugin`: for each, deletes its latest recorded charge (same
    /// kind and target) made at or after `since_ms`, if there is one. Returns how many were
    /// deleted. The charge no longer counts in any window nor starts a cooldown.
    fn refund(
        &self,
        plugin: &PluginName,
        charges: &[Charge],
        since_ms: TimestampMs,
    ) -> Result<usize, Error>;
}

/// Whether cooldowns apply to a kind: to every action on machines and reputation keys; not
/// to status changes and comments (bookkeeping on the Malop).
pub fn has_cooldown(kind: ActionKind) -> bool {
    !matches!(kind, ActionKind::SetStatus | ActionKind::AddComment)
}

/// The checks of a plan, against what `view` reports: cooldowns first, then each budget
/// in order. `Ok(None)` when nothing refuses it.
pub fn evaluate_plan(
    plan: &SpendPlan<'_>,
    view: &mut dyn LedgerView,
) -> Result<Option<Refusal>, Error> {
    if plan.cooldown_ms > 0 {
        for charge in plan.charges.iter().filter(|c| has_cooldown(c.kind)) {
            if let Some(at) = view.last_charge(plan.plugin, charge.kind, &charge.target)? {
                let until = at.saturating_add(plan.cooldown_ms as TimestampMs);
                if plan.now_ms < until {
                    return Ok(Some(Refusal::Cooldown {
                        target: charge.target.clone(),
                        kind: charge.kind,
                        until_ms: until,
                    }));
                }
            }
        }
    }
    for (scope, budget) in &plan.limits {
        let requested = plan
            .charges
            .iter()
            .filter(|c| budget.action.matches(c.kind))
            .count() as u64;
        if requested == 0 {
            continue;
        }
        let since = window_start(plan.now_ms, budget.window_secs);
        let plugin = match scope {
            BudgetScope::Global => None,
            BudgetScope::Plugin(_) => Some(plan.plugin),
        };
        let used = view.count(plugin, budget.action, since)?;
        if used.saturating_add(requested) > budget.max {
            return Ok(Some(Refusal::Budget {
                scope: scope.clone(),
                budget: *budget,
                used,
                requested,
            }));
        }
    }
    Ok(None)
}

/// The exclusive start of a window ending now.
pub fn window_start(now_ms: TimestampMs, window_secs: u64) -> TimestampMs {
    now_ms.saturating_sub((window_secs as TimestampMs).saturating_mul(1000))
}

/// One recorded charge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChargeRecord {
    /// Who spent.
    pub plugin: PluginName,
    /// The action kind.
    pub kind: ActionKind,
    /// The target.
    pub target: TargetKey,
    /// When (ms).
    pub at_ms: TimestampMs,
}

/// A ledger in memory: for tests, replay and benchmarks. Forgets everything on restart.
#[derive(Debug, Default)]
pub struct MemoryLedger {
    charges: Mutex<Vec<ChargeRecord>>,
}

impl MemoryLedger {
    /// An empty ledger keeping every charge.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every charge recorded, oldest first.
    pub fn charges(&self) -> Vec<ChargeRecord> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<ChargeRecord>> {
        self.charges.lock().unwrap_or_else(|e| e.into_inner())
    }
}

struct MemoryView<'a>(&'a [ChargeRecord]);

impl LedgerView for MemoryView<'_> {
    fn count(
        &mut self,
        plugin: Option<&PluginName>,
        selector: ActionSelector,
        since_ms: TimestampMs,
    ) -> Result<u64, Error> {
        Ok(self
            .0
            .iter()
            .filter(|c| {
                c.at_ms > since_ms
                    && selector.matches(c.kind)
                    && plugin.is_none_or(|p| &c.plugin == p)
            })
            .count() as u64)
    }

    fn last_charge(
        &mut self,
        plugin: &PluginName,
        kind: ActionKind,
        target: &TargetKey,
    ) -> Result<Option<TimestampMs>, Error> {
        Ok(self
            .0
            .iter()
            .filter(|c| &c.plugin == plugin && c.kind == kind && &c.target == target)
            .map(|c| c.at_ms)
            .max())
    }
}

impl BudgetLedger for MemoryLedger {
    fn try_spend(&self, plan: &SpendPlan<'_>) -> Result<Option<Refusal>, Error> {
        let mut charges = self.lock();
        if let Some(refusal) = evaluate_plan(plan, &mut MemoryView(&charges))? {
            return Ok(Some(refusal));
        }
        charges.extend(plan.charges.iter().map(|c| ChargeRecord {
            plugin: plan.plugin.clone(),
            kind: c.kind,
            target: c.target.clone(),
            at_ms: plan.now_ms,
        }));
        Ok(None)
    }

    fn used(
        &self,
        plugin: Option<&PluginName>,
        selector: ActionSelector,
        since_ms: TimestampMs,
    ) -> Result<u64, Error> {
        MemoryView(&self.lock()).count(plugin, selector, since_ms)
    }

    fn refund(
        &self,
        plugin: &PluginName,
        charges: &[Charge],
        since_ms: TimestampMs,
    ) -> Result<usize, Error> {
        let mut recorded = self.lock();
        let mut given_back = 0;
        for charge in charges {
            let latest = recorded
                .iter()
                .enumerate()
                .filter(|(_, c)| {
                    &c.plugin == plugin
                        && c.kind == charge.kind
                        && c.target == charge.target
                        && c.at_ms >= since_ms
                })
                .max_by_key(|(_, c)| c.at_ms)
                .map(|(i, _)| i);
            if let Some(i) = latest {
                recorded.remove(i);
                given_back += 1;
            }
        }
        Ok(given_back)
    }
}
