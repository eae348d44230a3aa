//! A dry-run host that answers imports from fixtures and records every call, executing
//! nothing. It backs `riposte plugin run` and replay tests.

use super::host_api::{BoxFuture, CallContext, LogLevel, PluginHost};
use crate::domain::{
    ActionRequest, CallError, Disposition, Malop, MalopId, Receipt, RemediationProgress,
    TimestampMs,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// One call a plugin made, as the dry-run host saw it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "call", rename_all = "kebab-case")]
pub enum RecordedCall {
    ListMalops {
        since: TimestampMs,
        until: TimestampMs,
    },
    GetMalop {
        id: MalopId,
    },
    Action {
        #[serde(flatten)]
        request: ActionRequest,
        reason: String,
    },
    RemediationStatus {
        action_id: String,
    },
    KvSet {
        key: String,
    },
    KvDelete {
        key: String,
    },
    Log {
        level: LogLevel,
        message: String,
    },
}

/// Answers queries from a set of fixture Malops; records actions as shadowed.
#[derive(Default)]
pub struct RecordingHost {
    malops: BTreeMap<MalopId, Malop>,
    calls: Mutex<Vec<RecordedCall>>,
    kv: Mutex<BTreeMap<String, Vec<u8>>>,
}

impl RecordingHost {
    /// A host that knows `malops` (for `get-malop` and `list-malops`).
    pub fn new(malops: impl IntoIterator<Item = Malop>) -> Self {
        Self {
            malops: malops.into_iter().map(|m| (m.id.clone(), m)).collect(),
            ..Self::default()
        }
    }

    /// Every call recorded so far, in order.
    pub fn calls(&self) -> Vec<RecordedCall> {
        self.lock_calls().clone()
    }

    /// Only the action requests, in order: the plugin's plan.
    pub fn actions(&self) -> Vec<(ActionRequest, String)> {
        self.lock_calls()
            .iter()
            .filter_map(|c| match c {
                RecordedCall::Action { request, reason } => Some((request.clone(), reason.clone())),
                _ => None,
            })
            .collect()
    }

    fn record(&self, call: RecordedCall) -> usize {
        let mut calls = self.lock_calls();
        calls.push(call);
        calls.len()
    }

    fn lock_calls(&self) -> std::sync::MutexGuard<'_, Vec<RecordedCall>> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl PluginHost for RecordingHost {
    fn list_malops<'a>(
        &'a self,
        _call: &'a CallContext,
        since: TimestampMs,
        until: TimestampMs,
    ) -> BoxFuture<'a, Result<Vec<Malop>, CallError>> {
        self.record(RecordedCall::ListMalops { since, until });
        let found = self
            .malops
            .values()
            .filter(|m| m.last_update_time >= since && m.last_update_time < until)
            .cloned()
            .collect();
        Box::pin(async move { Ok(found) })
    }

    fn get_malop<'a>(
        &'a self,
        _call: &'a CallContext,
        id: MalopId,
    ) -> BoxFuture<'a, Result<Malop, CallError>> {
        self.record(RecordedCall::GetMalop { id: id.clone() });
        let found = self
            .malops
            .get(&id)
            .cloned()
            .ok_or_else(|| CallError::NotFound(format!("no Malop {id} in the fixtures")));
        Box::pin(async move { found })
    }

    fn act<'a>(
        &'a self,
        _call: &'a CallContext,
        request: ActionRequest,
        reason: String,
    ) -> BoxFuture<'a, Result<Receipt, CallError>> {
        let n = self.record(RecordedCall::Action { request, reason });
        Box::pin(async move {
            Ok(Receipt {
                action_id: format!("dry-run-{n}"),
                disposition: Disposition::Shadowed,
            })
        })
    }

    fn remediation_status<'a>(
        &'a self,
        _call: &'a CallContext,
        action_id: String,
    ) -> BoxFuture<'a, Result<RemediationProgress, CallError>> {
        self.record(RecordedCall::RemediationStatus { action_id });
        Box::pin(async { Ok(RemediationProgress::Unknown) })
    }

    fn kv_get(&self, _call: &CallContext, key: &str) -> Option<Vec<u8>> {
        self.kv
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned()
    }

    fn kv_set(&self, _call: &CallContext, key: &str, value: Vec<u8>) -> Result<(), CallError> {
        self.record(RecordedCall::KvSet {
            key: key.to_owned(),
        });
        self.kv
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.to_owned(), value);
        Ok(())
    }

    fn kv_delete(&self, _call: &CallContext, key: &str) {
        self.record(RecordedCall::KvDelete {
            key: key.to_owned(),
        });
        self.kv
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }

    fn log(&self, _call: &CallContext, level: LogLevel, message: &str) {
        self.record(RecordedCall::Log {
            level,
            message: message.to_owned(),
        });
    }
}
