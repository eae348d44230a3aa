//! Replay under the operator's configuration (`riposte plugin test --config riposte.toml`):
//! every query and action of the plan is put to the same policy gate the service uses, with
//! the plugin's grants, its scope (G11), protected assets, budgets (kept in memory per case,
//! on the replay's pinned clock), cooldowns, approvals and quotas. What the gate would do is
//! recorded with each call ([`GateOutcome`]); for an action, also the approval and budget
//! outcome it would meet when its plugin is in shadow mode, so a shadow plan shows what
//! enforcing it would do.

use riposte_domain::{
    ActionKind, ActionRequest, CallError, Disposition, Malop, MalopId, Operation,
};
use riposte_policy::{
    self, Charge, Decision, DenyReason, Evaluation, Gate, InvocationQuotas, MalopScope,
    MemoryLedger, PluginPolicy, PolicyConfig, QuotaBook, QuotaKind, Scope, TargetFacts,
};
use riposte_runtime::{CallContext, Clock, GateOutcome, Judge};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The operator's configuration a replay is held to.
#[derive(Clone, Debug)]
pub struct ReplayPolicy {
    /// The policy for all plugins (protected assets, global budgets, approvals).
    pub operator: PolicyConfig,
    /// The plugin's policy, from its `[[plugins]]` entry.
    pub plugin: PluginPolicy,
}

/// The gate of one replayed case: a fresh budget ledger in memory, the case's Malops.
pub(crate) struct PolicyJudge {
    gate: Gate,
    plugin: PluginPolicy,
    malops: HashMap<MalopId, (MalopScope, TargetFacts)>,
    quotas: QuotaBook,
    invocations: Mutex<HashMap<String, Arc<InvocationQuotas>>>,
    /// Per invocation, the machines its destructive actions reached (allowed or held), as
    /// the service keeps them for `[approvals.large]`.
    reached: Mutex<HashMap<String, Vec<riposte_domain::MachineGuid>>>,
}

impl PolicyJudge {
    /// A judge for one case whose Malops are `malops`.
    pub(crate) fn new(
        policy: &ReplayPolicy,
        malops: &[Malop],
    ) -> Result<Self, riposte_policy::Error> {
        Ok(Self {
            gate: Gate::new(&policy.operator, Arc::new(MemoryLedger::new()))?,
            plugin: policy.plugin.clone(),
            malops: malops
                .iter()
                .map(|m| {
                    (
                        m.id.clone(),
                        (MalopScope::of(m), TargetFacts::from_malop(m)),
                    )
                })
                .collect(),
            quotas: QuotaBook::new(),
            invocations: Mutex::default(),
            reached: Mutex::default(),
        })
    }

    fn now(call: &CallContext) -> i64 {
        match call.clock {
            Clock::Fixed(ms) => ms,
            Clock::System => riposte_domain::now_ms(),
        }
    }

    fn invocation(&self, call: &CallContext) -> Arc<InvocationQuotas> {
        self.invocations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(call.invocation_id.clone())
            .or_default()
            .clone()
    }

    fn take(&self, call: &CallContext, kind: QuotaKind) -> Result<(), DenyReason> {
        self.quotas
            .take(
                &self.plugin.name,
                &self.plugin.rules.quotas,
                &self.invocation(call),
                kind,
                Self::now(call),
            )
            .map_err(DenyReason::QuotaSpent)
    }

    fn malop(&self, call: &CallContext) -> Option<&(MalopScope, TargetFacts)> {
        call.malop_id.as_ref().and_then(|id| self.malops.get(id))
    }
}

fn kinds(kinds: &[ActionKind]) -> Vec<String> {
    kinds.iter().map(|k| k.name().to_owned()).collect()
}

fn outcome(decision: &Decision) -> GateOutcome {
    let record = decision.to_record();
    GateOutcome {
        decision: record.kind.name().to_owned(),
        category: record
            .category
            .and_then(|c| serde_json::to_value(c).ok())
            .and_then(|v| v.as_str().map(str::to_owned)),
        detail: record.detail,
        approval: Vec::new(),
        budget: None,
    }
}

/// `within: spends 2 × isolate`, or the refusal in words.
fn budget_words(budget: &Result<Vec<Charge>, DenyReason>) -> String {
    match budget {
        Ok(charges) if charges.is_empty() => "within: spends nothing".to_owned(),
        Ok(charges) => {
            let allowed = Decision::Allow {
                charges: charges.clone(),
            }
            .to_string();
            format!(
                "within: {}",
                allowed.strip_prefix("allowed; ").unwrap_or(&allowed)
            )
        }
        Err(reason) => format!("exceeded: {reason}"),
    }
}

fn refusal(reason: DenyReason) -> (GateOutcome, CallError) {
    let decision = Decision::Deny(reason);
    let error = decision
        .call_error()
        .unwrap_or_else(|| CallError::Denied("refused".into()));
    (outcome(&decision), error)
}

impl Judge for PolicyJudge {
    fn query(
        &self,
        call: &CallContext,
        operation: Operation,
        own: bool,
    ) -> Option<(GateOutcome, CallError)> {
        let checked = self.take(call, QuotaKind::Calls).and_then(|()| {
            match self.gate.check_query(&self.plugin, operation) {
                Decision::Deny(reason) => Err(reason),
                _ if own => Ok(()),
                _ => self.take(call, QuotaKind::Queries),
            }
        });
        checked.err().map(refusal)
    }

    fn act(
        &self,
        call: &CallContext,
        request: &ActionRequest,
        reason: &str,
    ) -> (GateOutcome, Result<Disposition, CallError>) {
        if let Err(denied) = self.take(call, QuotaKind::Calls) {
            let (outcome, error) = refusal(denied);
            return (outcome, Err(error));
        }
        let (scope, facts) = match self.malop(call) {
            Some((scope, facts)) => (Scope::Malop(scope), facts.clone()),
            None => (Scope::Interval, TargetFacts::new()),
        };
        let mut reached = self.reached.lock().unwrap_or_else(|p| p.into_inner());
        let reached = reached.entry(call.invocation_id.clone()).or_default();
        let facts = facts.with_reached(reached.iter().cloned());
        // As the service does: admitted as sent, then judged in its canonical form.
        let request = match self.gate.admit(&self.plugin, request, reason, scope) {
            Ok(_) => riposte_policy::canonical(request.clone()),
            Err(_) => request.clone(),
        };
        let Evaluation {
            decision,
            approval,
            budget,
        } = self.gate.evaluate(
            &self.plugin,
            &request,
            reason,
            scope,
            &facts,
            Self::now(call),
        );
        reached.extend(decision.reached(&request).into_iter().cloned());
        let mut gate = outcome(&decision);
        gate.approval = kinds(&approval);
        gate.budget = budget.as_ref().map(budget_words);
        let answer = decision.disposition().ok_or_else(|| {
            decision
                .call_error()
                .unwrap_or_else(|| CallError::Denied("refused".into()))
        });
        (gate, answer)
    }
}
