//! The host that answers a plugin's imports in the service: every call passes the policy
//! gate and is audited; allowed actions go through the exactly-once ledger to the executor.

use super::audit::Auditor;
use super::executor::{Executor, PylumDirectory, Submitted, now_ms};
use crate::client::Client;
use crate::client::RemediationReport;
use crate::domain::{
    ActionRequest, CallError, Disposition, Malop, MalopId, Operation, PluginName, Receipt,
    RemediationProgress, Sha256Digest, TimestampMs,
};
use crate::policy::{Decision, Gate, PluginPolicy, TargetFacts};
use crate::runtime::{BoxFuture, CallContext, LogLevel, PluginHost};
use crate::store::{
    ActionKey, ActionMode, ActionRecord, ActionState, BeginOutcome, NewAction, Store,
};
use serde_json::json;
use std::sync::Arc;
use std::time::Instant;

/// Everything the service shares between invocations.
pub struct Core {
    pub gate: Gate,
    pub store: Arc<Store>,
    pub auditor: Arc<Auditor>,
    pub executor: Executor,
    pub client: Arc<Client>,
    /// Seconds a pending approval waits before it expires.
    pub approval_expiry_secs: u64,
    /// Per-plugin kv quota, in bytes.
    pub kv_limit_bytes: u64,
    /// Remediations being followed in the background: following them does not count
    /// against the plugin's time, and the cycle waits for them before it ends.
    pub followers: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Core {
    /// Follows a submitted remediation to its final state in the background.
    pub fn follow_in_background(self: &Arc<Self>, record: ActionRecord, report: RemediationReport) {
        let core = self.clone();
        let handle = tokio::spawn(async move {
            core.executor.follow(&record, report).await;
        });
        self.followers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(handle);
    }

    /// Waits until every background follow-up has reached a final state (or its limit).
    pub async fn drain_followers(&self) {
        loop {
            let pending: Vec<_> =
                std::mem::take(&mut *self.followers.lock().unwrap_or_else(|p| p.into_inner()));
            if pending.is_empty() {
                return;
            }
            for handle in pending {
                if let Err(e) = handle.await {
                    tracing::error!("a remediation follow-up task failed: {e}");
                }
            }
        }
    }
}

/// The host of one invocation: one plugin, and the Malop it is handling (if any).
pub struct GatedHost {
    core: Arc<Core>,
    policy: PluginPolicy,
    digest: Sha256Digest,
    malop: Option<Malop>,
}

impl GatedHost {
    /// A host for an invocation of `policy`'s plugin on `malop`.
    pub fn new(
        core: Arc<Core>,
        policy: PluginPolicy,
        digest: Sha256Digest,
        malop: Option<Malop>,
    ) -> Self {
        Self {
            core,
            policy,
            digest,
            malop,
        }
    }

    fn facts(&self) -> TargetFacts {
        self.malop
            .as_ref()
            .map(TargetFacts::from_malop)
            .unwrap_or_default()
    }

    fn pylums(&self) -> PylumDirectory {
        self.malop
            .as_ref()
            .map(super::executor::pylum_directory)
            .unwrap_or_default()
    }

    fn name(&self) -> &PluginName {
        &self.policy.name
    }

    /// Grants check and audit for a query; `Err` if denied.
    fn gate_query(
        &self,
        call: &CallContext,
        operation: Operation,
        arguments: serde_json::Value,
    ) -> Result<(), CallError> {
        let decision = self.core.gate.check_query(&self.policy, operation);
        let refused = decision.call_error();
        self.core
            .auditor
            .query(call, operation, arguments, &decision);
        refused.map_or(Ok(()), Err)
    }

    async fn act_inner(
        &self,
        call: &CallContext,
        request: ActionRequest,
        reason: String,
    ) -> Result<Receipt, CallError> {
        let mut new = NewAction::new(
            self.name().clone(),
            self.digest,
            request.clone(),
            reason.clone(),
        );
        if self.shadows(&request) {
            new.key = shadow_key(&new.key);
        }
        let store = &self.core.store;
        // Asked for before (an earlier run, or a Malop handled again): answer from the ledger,
        // spend nothing and send nothing.
        if let Some(existing) = store.find_action_by_key(&new.key).map_err(internal)? {
            self.core.auditor.duplicate(call, &request, &existing);
            return Ok(receipt(
                existing.id.as_str(),
                disposition_of(existing.state),
            ));
        }
        let decision = self
            .core
            .gate
            .decide(&self.policy, &request, &self.facts(), now_ms());
        let mode = match &decision {
            Decision::Deny(reason_denied) => {
                self.core
                    .auditor
                    .decision(call, &request, &reason, &decision, None);
                return Err(reason_denied.to_call_error());
            }
            Decision::Shadow { .. } => ActionMode::Shadow,
            Decision::AwaitApproval { .. } => ActionMode::AwaitApproval {
                expires_at_ms: now_ms() + (self.core.approval_expiry_secs as i64) * 1000,
            },
            Decision::Allow { .. } => ActionMode::Execute,
        };
        new = new.with_mode(mode);
        let begun = store.begin_action(&new, now_ms()).map_err(internal)?;
        self.core.auditor.decision(
            call,
            &request,
            &reason,
            &decision,
            Some(begun.action_id().as_str()),
        );
        let id = match begun {
            BeginOutcome::AlreadyExists(existing) => {
                return Ok(receipt(
                    existing.id.as_str(),
                    disposition_of(existing.state),
                ));
            }
            BeginOutcome::New(id) => id,
        };
        let disposition = decision.disposition().unwrap_or(Disposition::Submitted);
        // Only an action to send needs its row back (shadowed and held ones need the id).
        if mode == ActionMode::Execute {
            let record = store.get_action(&id).map_err(internal)?;
            self.carry_out(record).await?;
        }
        Ok(receipt(id.as_str(), disposition))
    }
}

impl GatedHost {
    /// Sends an allowed action once. A remediation is followed in the background, outside
    /// the plugin's time; a send that failed on the server is the plugin's error.
    async fn carry_out(&self, record: ActionRecord) -> Result<(), CallError> {
        let state = match self.core.executor.submit(&record, &self.pylums()).await {
            Submitted::Final(state) => state,
            Submitted::Following(report) => {
                self.core.follow_in_background(record, report);
                return Ok(());
            }
        };
        if state != ActionState::Failed {
            return Ok(());
        }
        let detail = self
            .core
            .store
            .get_action(&record.id)
            .ok()
            .and_then(|r| r.last_error);
        Err(CallError::ServerError(format!(
            "action {} failed on the server: {}",
            record.id.as_str(),
            detail.unwrap_or_else(|| "no detail".into())
        )))
    }

    /// Whether the plugin's mode shadows `request` (some kind of it is not enforced).
    fn shadows(&self, request: &ActionRequest) -> bool {
        request
            .action_kinds()
            .iter()
            .any(|k| !self.policy.config.enforces(*k))
    }
}

/// The ledger key of a would-be action recorded in shadow mode: distinct from the key of the
/// same action enforced, so that once the operator enforces (or promotes) the plugin, the
/// action it only planned before is carried out (once) instead of being answered "shadowed"
/// from the ledger forever. Repeated shadowed requests still share one record.
fn shadow_key(key: &ActionKey) -> ActionKey {
    let text = json!(["riposte.shadow-key.v1", key.0.to_hex()]).to_string();
    ActionKey(Sha256Digest::of(text.as_bytes()))
}

fn receipt(id: &str, disposition: Disposition) -> Receipt {
    Receipt {
        action_id: id.to_owned(),
        disposition,
    }
}

fn disposition_of(state: ActionState) -> Disposition {
    match state {
        ActionState::Shadowed => Disposition::Shadowed,
        ActionState::AwaitingApproval => Disposition::AwaitingApproval,
        _ => Disposition::Submitted,
    }
}

fn internal(error: crate::store::Error) -> CallError {
    tracing::error!("state store: {error}");
    CallError::ServerError("the host's state store failed; the call was not carried out".into())
}

impl PluginHost for GatedHost {
    fn list_malops<'a>(
        &'a self,
        call: &'a CallContext,
        since: TimestampMs,
        until: TimestampMs,
    ) -> BoxFuture<'a, Result<Vec<Malop>, CallError>> {
        Box::pin(async move {
            self.gate_query(
                call,
                Operation::ListMalops,
                json!({"since": since, "until": until}),
            )?;
            let started = Instant::now();
            let found = self.core.client.malops_updated_in(since, until).await?;
            tracing::debug!(took = ?started.elapsed(), "list-malops for a plugin");
            Ok(found)
        })
    }

    fn get_malop<'a>(
        &'a self,
        call: &'a CallContext,
        id: MalopId,
    ) -> BoxFuture<'a, Result<Malop, CallError>> {
        Box::pin(async move {
            self.gate_query(call, Operation::GetMalop, json!({"id": id}))?;
            if let Some(malop) = self.malop.as_ref().filter(|m| m.id == id) {
                return Ok(malop.clone());
            }
            Ok(self.core.client.get_malop_details(&id).await?)
        })
    }

    fn act<'a>(
        &'a self,
        call: &'a CallContext,
        request: ActionRequest,
        reason: String,
    ) -> BoxFuture<'a, Result<Receipt, CallError>> {
        Box::pin(self.act_inner(call, request, reason))
    }

    fn remediation_status<'a>(
        &'a self,
        call: &'a CallContext,
        action_id: String,
    ) -> BoxFuture<'a, Result<RemediationProgress, CallError>> {
        Box::pin(async move {
            self.gate_query(
                call,
                Operation::RemediationStatus,
                json!({"action_id": action_id}),
            )?;
            let id = crate::store::ActionId::parse(&action_id).ok_or_else(|| {
                CallError::InvalidArgument(format!("`{action_id}` is not an action id"))
            })?;
            let record = self
                .core
                .store
                .get_action(&id)
                .map_err(|_| CallError::NotFound(format!("action {action_id}")))?;
            if record.plugin != *self.name() {
                return Err(CallError::NotFound(format!("action {action_id}")));
            }
            Ok(match record.state {
                ActionState::Succeeded => RemediationProgress::Success,
                ActionState::Failed => RemediationProgress::Failure,
                _ => record.progress.unwrap_or(RemediationProgress::Unknown),
            })
        })
    }

    fn kv_get(&self, _call: &CallContext, key: &str) -> Option<Vec<u8>> {
        self.core
            .store
            .kv_get(self.name().as_str(), key)
            .ok()
            .flatten()
    }

    fn kv_set(&self, _call: &CallContext, key: &str, value: Vec<u8>) -> Result<(), CallError> {
        self.core
            .store
            .kv_set(
                self.name().as_str(),
                key,
                &value,
                self.core.kv_limit_bytes,
                now_ms(),
            )
            .map_err(|e| CallError::InvalidArgument(e.to_string()))
    }

    fn kv_delete(&self, _call: &CallContext, key: &str) {
        let _ = self.core.store.kv_delete(self.name().as_str(), key);
    }

    fn log(&self, call: &CallContext, level: LogLevel, message: &str) {
        let plugin = call.plugin.name.as_str();
        match level {
            LogLevel::Trace => tracing::trace!(target: "plugin", plugin, "{message}"),
            LogLevel::Debug => tracing::debug!(target: "plugin", plugin, "{message}"),
            LogLevel::Info => tracing::info!(target: "plugin", plugin, "{message}"),
            LogLevel::Warn => tracing::warn!(target: "plugin", plugin, "{message}"),
            LogLevel::Error => tracing::error!(target: "plugin", plugin, "{message}"),
        }
    }
}
