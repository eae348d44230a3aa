//! A dry-run host that answers queries from a [`MalopSource`] (fixtures in memory, or a
//! simulated server) and records every call, executing nothing. It backs `riposte plugin run`
//! and replay tests. With a [`Judge`] (replay with the operator's configuration), each query
//! and action is also put to the operator's policy, and what it would do is recorded with
//! the call.

use super::host_api::{BoxFuture, CallContext, LogLevel, PluginHost};
use riposte_domain::bounds::{KV_ENTRY_OVERHEAD_BYTES, MAX_KV_BYTES_PER_PLUGIN};
use riposte_domain::{
    ActionRequest, CallError, Disposition, Malop, MalopId, Operation, Receipt, RemediationProgress,
    TimestampMs,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The most a [`RecordingHost`] keeps of the calls it records, in bytes of their JSON: a dry
/// run of a hostile plugin must not fill the author's or operator's memory. From the first
/// call that does not fit on, calls are counted ([`RecordingHost::unrecorded`]), not
/// recorded, and actions and kv writes are refused (`quota-exceeded`).
pub const MAX_RECORDED_BYTES: usize = 16 << 20;

/// What the operator's policy would do with a call (replay with `--config`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateOutcome {
    /// `allow`, `shadow`, `await-approval` or `deny`.
    pub decision: String,
    /// For a denial, the error the plugin gets (`out-of-scope`, `budget-exhausted`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// The decision in plain words.
    pub detail: String,
    /// The action kinds that would wait for an operator's approval (shadowed or not).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approval: Vec<String>,
    /// The budgets and cooldowns the action would meet (also when shadowed or held); none
    /// when an earlier check refused it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<String>,
}

/// Puts a dry run's calls to a policy (replay with the operator's configuration).
pub trait Judge: Send + Sync + 'static {
    /// A query: `None` to answer it, or the policy's refusal and the error the plugin gets.
    /// `own` says whether it asks for the Malop being handled (answered without the server).
    fn query(
        &self,
        call: &CallContext,
        operation: Operation,
        own: bool,
    ) -> Option<(GateOutcome, CallError)>;

    /// An action: what the policy does with it, and the answer the plugin gets.
    fn act(
        &self,
        call: &CallContext,
        request: &ActionRequest,
        reason: &str,
    ) -> (GateOutcome, Result<Disposition, CallError>);
}

/// One call a plugin made, as the dry-run host saw it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "call", rename_all = "kebab-case")]
pub enum RecordedCall {
    ListMalops {
        since: TimestampMs,
        until: TimestampMs,
        /// The policy's refusal, when replayed with one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        gate: Option<GateOutcome>,
    },
    GetMalop {
        id: MalopId,
        /// The policy's refusal, when replayed with one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        gate: Option<GateOutcome>,
    },
    Action {
        #[serde(flatten)]
        request: ActionRequest,
        reason: String,
        /// What the policy would do with it, when replayed with one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        gate: Option<GateOutcome>,
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

/// Where a [`RecordingHost`] finds the Malops it answers `list-malops` and `get-malop` with.
pub trait MalopSource: Send + Sync + 'static {
    /// Malops whose last update is in `[since, until)`.
    fn list(
        &self,
        since: TimestampMs,
        until: TimestampMs,
    ) -> BoxFuture<'_, Result<Vec<Malop>, CallError>>;

    /// One Malop in full detail.
    fn get(&self, id: MalopId) -> BoxFuture<'_, Result<Malop, CallError>>;
}

/// Malops held in memory, e.g. read from fixture files.
#[derive(Clone, Debug, Default)]
pub struct FixtureMalops(BTreeMap<MalopId, Malop>);

impl FixtureMalops {
    /// These Malops, by id.
    pub fn new(malops: impl IntoIterator<Item = Malop>) -> Self {
        Self(malops.into_iter().map(|m| (m.id.clone(), m)).collect())
    }
}

impl MalopSource for FixtureMalops {
    fn list(
        &self,
        since: TimestampMs,
        until: TimestampMs,
    ) -> BoxFuture<'_, Result<Vec<Malop>, CallError>> {
        let found = self
            .0
            .values()
            .filter(|m| m.last_update_time >= since && m.last_update_time < until)
            .cloned()
            .collect();
        Box::pin(async move { Ok(found) })
    }

    fn get(&self, id: MalopId) -> BoxFuture<'_, Result<Malop, CallError>> {
        let found = self
            .0
            .get(&id)
            .cloned()
            .ok_or_else(|| CallError::NotFound(format!("no Malop {id} in the fixtures")));
        Box::pin(async move { found })
    }
}

/// A dry-run host: answers queries from a [`MalopSource`], records every call, and answers
/// actions as shadowed without executing anything.
pub struct RecordingHost {
    source: Box<dyn MalopSource>,
    judge: Option<Box<dyn Judge>>,
    calls: Mutex<Recorded>,
    kv: Mutex<BTreeMap<String, Vec<u8>>>,
    unrecorded: AtomicUsize,
}

/// The calls recorded, and the bytes of their JSON.
#[derive(Default)]
struct Recorded {
    calls: Vec<RecordedCall>,
    bytes: usize,
}

impl Default for RecordingHost {
    fn default() -> Self {
        Self::with_source(FixtureMalops::default())
    }
}

impl RecordingHost {
    /// A host that knows `malops` (for `get-malop` and `list-malops`).
    pub fn new(malops: impl IntoIterator<Item = Malop>) -> Self {
        Self::with_source(FixtureMalops::new(malops))
    }

    /// A host whose queries are answered by `source`.
    pub fn with_source(source: impl MalopSource) -> Self {
        Self {
            source: Box::new(source),
            judge: None,
            calls: Mutex::default(),
            kv: Mutex::default(),
            unrecorded: AtomicUsize::new(0),
        }
    }

    /// The same host, putting every query and action to `judge` and recording its outcome.
    pub fn judged_by(mut self, judge: impl Judge) -> Self {
        self.judge = Some(Box::new(judge));
        self
    }

    /// Every call recorded so far, in order.
    pub fn calls(&self) -> Vec<RecordedCall> {
        self.lock_calls().calls.clone()
    }

    /// The calls recorded since the first `from`, in order.
    pub fn calls_from(&self, from: usize) -> Vec<RecordedCall> {
        let recorded = self.lock_calls();
        recorded.calls.get(from..).unwrap_or_default().to_vec()
    }

    /// How many calls were recorded so far.
    pub fn recorded(&self) -> usize {
        self.lock_calls().calls.len()
    }

    /// Calls not recorded because [`MAX_RECORDED_BYTES`] were.
    pub fn unrecorded(&self) -> usize {
        self.unrecorded.load(Ordering::Relaxed)
    }

    /// Only the action requests, in order: the plugin's plan.
    pub fn actions(&self) -> Vec<(ActionRequest, String)> {
        self.lock_calls()
            .calls
            .iter()
            .filter_map(|c| match c {
                RecordedCall::Action {
                    request, reason, ..
                } => Some((request.clone(), reason.clone())),
                _ => None,
            })
            .collect()
    }

    fn judge_query(
        &self,
        call: &CallContext,
        operation: Operation,
        own: bool,
    ) -> Option<(GateOutcome, CallError)> {
        self.judge.as_ref()?.query(call, operation, own)
    }

    /// Records `call` and returns how many are recorded; `None` (the call counted as
    /// unrecorded) from the first call that would pass [`MAX_RECORDED_BYTES`] on, so that
    /// what is recorded is the plan's beginning, with no holes.
    fn record(&self, call: RecordedCall) -> Option<usize> {
        // What the call holds in memory: its record, and the text its JSON carries.
        let bytes = serde_json::to_vec(&call)
            .map_or(usize::MAX, |json| json.len())
            .saturating_add(std::mem::size_of::<RecordedCall>());
        let mut recorded = self.lock_calls();
        if self.unrecorded() > 0 || recorded.bytes.saturating_add(bytes) > MAX_RECORDED_BYTES {
            self.unrecorded.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        recorded.bytes += bytes;
        recorded.calls.push(call);
        Some(recorded.calls.len())
    }

    fn lock_calls(&self) -> std::sync::MutexGuard<'_, Recorded> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The answer to an action or kv write past [`MAX_RECORDED_BYTES`].
fn record_full() -> CallError {
    CallError::QuotaExceeded(format!(
        "dry run: {} MiB of calls recorded, the most it keeps",
        MAX_RECORDED_BYTES >> 20
    ))
}

impl PluginHost for RecordingHost {
    fn list_malops<'a>(
        &'a self,
        call: &'a CallContext,
        since: TimestampMs,
        until: TimestampMs,
    ) -> BoxFuture<'a, Result<Vec<Malop>, CallError>> {
        let refused = self.judge_query(call, Operation::ListMalops, false);
        let gate = refused.as_ref().map(|(g, _)| g.clone());
        self.record(RecordedCall::ListMalops { since, until, gate });
        match refused {
            Some((_, error)) => Box::pin(async move { Err(error) }),
            None => self.source.list(since, until),
        }
    }

    fn get_malop<'a>(
        &'a self,
        call: &'a CallContext,
        id: MalopId,
    ) -> BoxFuture<'a, Result<Malop, CallError>> {
        let own = call.malop_id.as_ref() == Some(&id);
        let refused = self.judge_query(call, Operation::GetMalop, own);
        let gate = refused.as_ref().map(|(g, _)| g.clone());
        self.record(RecordedCall::GetMalop {
            id: id.clone(),
            gate,
        });
        match refused {
            Some((_, error)) => Box::pin(async move { Err(error) }),
            None => self.source.get(id),
        }
    }

    fn act<'a>(
        &'a self,
        call: &'a CallContext,
        request: ActionRequest,
        reason: String,
    ) -> BoxFuture<'a, Result<Receipt, CallError>> {
        let (gate, answer) = match &self.judge {
            Some(judge) => {
                let (outcome, answer) = judge.act(call, &request, &reason);
                (Some(outcome), answer)
            }
            None => (None, Ok(Disposition::Shadowed)),
        };
        let n = self.record(RecordedCall::Action {
            request,
            reason,
            gate,
        });
        Box::pin(async move {
            let n = n.ok_or_else(record_full)?;
            answer.map(|disposition| Receipt {
                action_id: format!("dry-run-{n}"),
                disposition,
                detail: String::new(),
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
        let mut kv = self.kv.lock().unwrap_or_else(|p| p.into_inner());
        let size = |k: &str, v: &[u8]| (k.len() + v.len()) as u64 + KV_ENTRY_OVERHEAD_BYTES;
        let others: u64 = kv
            .iter()
            .filter(|(k, _)| k.as_str() != key)
            .map(|(k, v)| size(k, v))
            .sum();
        let would_use = others + size(key, &value);
        if would_use > MAX_KV_BYTES_PER_PLUGIN {
            // As the service answers it (the store's refusal, `invalid-argument`).
            return Err(CallError::InvalidArgument(format!(
                "the plugin would use {would_use} bytes of key-value storage, over its limit of {MAX_KV_BYTES_PER_PLUGIN}"
            )));
        }
        self.record(RecordedCall::KvSet {
            key: key.to_owned(),
        })
        .ok_or_else(record_full)?;
        kv.insert(key.to_owned(), value);
        Ok(())
    }

    fn kv_delete(&self, _call: &CallContext, key: &str) {
        let recorded = self.record(RecordedCall::KvDelete {
            key: key.to_owned(),
        });
        if recorded.is_none() {
            return;
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host_api::PluginIdentity;
    use std::sync::Arc;

    fn call() -> CallContext {
        let plugin = PluginIdentity {
            name: "p".into(),
            digest: "0".repeat(64),
        };
        CallContext::for_interval(plugin, 0, Arc::default())
    }

    fn comment() -> ActionRequest {
        ActionRequest::AddComment {
            malop_id: MalopId::new("11.1"),
            text: "x".into(),
        }
    }

    #[tokio::test]
    async fn calls_past_the_recorded_bytes_are_counted_and_their_actions_refused() {
        let host = RecordingHost::default();
        let call = call();
        let megabyte = "m".repeat(1 << 20);
        while host.unrecorded() == 0 {
            host.log(&call, LogLevel::Info, &megabyte);
        }
        assert_eq!(host.recorded(), (MAX_RECORDED_BYTES >> 20) - 1);
        let refused = host.act(&call, comment(), "r".into()).await.unwrap_err();
        assert!(
            matches!(&refused, CallError::QuotaExceeded(m) if m.contains("16 MiB")),
            "{refused:?}"
        );
        assert!(host.kv_set(&call, "k", b"v".to_vec()).is_err());
        assert_eq!(host.unrecorded(), 3);
        assert!(host.calls_from(host.recorded()).is_empty());
    }

    #[test]
    fn kv_writes_are_held_to_a_plugins_storage_with_the_entry_overhead() {
        let host = RecordingHost::default();
        let call = call();
        let value = vec![0; 64 * 1024 - 64 - 2];
        for i in 0..16 {
            host.kv_set(&call, &format!("{i:02}"), value.clone())
                .unwrap();
        }
        assert!(
            host.kv_set(&call, "16", Vec::new()).is_err(),
            "the 1 MiB are used"
        );
        // Overwriting an entry counts its new size only.
        host.kv_set(&call, "00", value).unwrap();
        assert_eq!(host.kv_get(&call, "16"), None);
    }
}
