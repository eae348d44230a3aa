//! The per-invocation store state, and the WIT import implementations on it.
//!
//! Every import forwards to the [`PluginHost`] with the invocation's [`CallContext`]. Time
//! spent in a host call counts against the invocation's wall-clock deadline: a host call
//! that outlives it traps the plugin.

use super::bindings::{receipt_v0_1, receipt_v0_2, v0_1, v0_2};
use super::host_api::{CallContext, Clock, LogLevel, PluginHost};
use super::outcome::StopReason;
use super::output::{CappedPipe, OutputBudget};
use riposte_domain::bounds;
use riposte_domain::{ActionRequest, CallError, Malop, MalopId, Receipt, RemediationProgress};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// Memory accounting for one store: enforces the limit on all of its linear memories
/// together (a component may have several) and remembers that it was hit, so the trap that
/// follows can be reported as "memory limit" rather than a bare `unreachable`.
pub(crate) struct MemoryLimiter {
    limit: usize,
    /// The bytes of every memory of the store now.
    total: usize,
    /// The last growth allowed, as `(current, desired)`: undone if the grow then fails.
    last_growth: Option<(usize, usize)>,
    pub(crate) peak: usize,
    pub(crate) hit: bool,
}

impl MemoryLimiter {
    fn new(limit: usize) -> Self {
        Self {
            limit,
            total: 0,
            last_growth: None,
            peak: 0,
            hit: false,
        }
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self.total.saturating_sub(current).saturating_add(desired);
        if total > self.limit {
            self.hit = true;
            return Ok(false);
        }
        self.total = total;
        self.last_growth = Some((current, desired));
        self.peak = self.peak.max(total);
        Ok(true)
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        // wasmtime asks before it checks the memory's own maximum: a grow refused there
        // did not happen, and must not count.
        if let Some((current, desired)) = self.last_growth.take() {
            self.total = self.total.saturating_sub(desired).saturating_add(current);
        }
        Ok(())
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// A pinned wall clock ([`Clock::Fixed`]): the start instant plus one microsecond per read
/// of either clock.
struct FixedWallClock {
    start: Duration,
    ticks: Arc<AtomicU64>,
}

impl wasmtime_wasi::HostWallClock for FixedWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_micros(1)
    }

    fn now(&self) -> Duration {
        self.start + Duration::from_micros(self.ticks.fetch_add(1, Ordering::Relaxed))
    }
}

/// A pinned monotonic clock ([`Clock::Fixed`]): nanoseconds, one microsecond per read.
struct FixedMonotonicClock {
    ticks: Arc<AtomicU64>,
}

impl wasmtime_wasi::HostMonotonicClock for FixedMonotonicClock {
    fn resolution(&self) -> u64 {
        1_000
    }

    fn now(&self) -> u64 {
        self.ticks.fetch_add(1, Ordering::Relaxed) * 1_000
    }
}

/// Store data of one invocation.
pub(crate) struct PluginState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limiter: MemoryLimiter,
    host: Arc<dyn PluginHost>,
    /// Shared, not copied, into each host call's future.
    call: Arc<CallContext>,
    deadline: Instant,
    /// Bytes of output left for stdout, stderr and the log import together.
    pub(crate) output: OutputBudget,
    pub(crate) stdout: CappedPipe,
    pub(crate) stderr: CappedPipe,
    /// Why the host stopped the plugin, when it was the host's decision.
    pub(crate) stop: Option<StopReason>,
    /// Log lines the plugin wrote, for panic messages and replay reports.
    pub(crate) last_error_log: Option<String>,
    /// `kv.get` calls so far (at most [`bounds::MAX_KV_READS`]).
    kv_reads: u32,
}

impl PluginState {
    pub(crate) fn new(
        host: Arc<dyn PluginHost>,
        call: CallContext,
        deadline: Instant,
        memory_limit: usize,
        output_cap: usize,
    ) -> Self {
        let output = OutputBudget::new(output_cap);
        let stdout = CappedPipe::new(&output);
        let stderr = CappedPipe::new(&output);
        // Deny by default: no preopened directories, no environment, no arguments, no
        // sockets, no name lookups; stdin closed; stdout and stderr captured and capped.
        let mut builder = WasiCtx::builder();
        builder
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        if let Clock::Fixed(start_ms) = call.clock {
            let ticks = Arc::new(AtomicU64::new(0));
            builder
                .wall_clock(FixedWallClock {
                    start: Duration::from_millis(start_ms.max(0) as u64),
                    ticks: ticks.clone(),
                })
                .monotonic_clock(FixedMonotonicClock { ticks });
        }
        let wasi = builder.build();
        Self {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(memory_limit),
            host,
            call: Arc::new(call),
            deadline,
            output,
            stdout,
            stderr,
            stop: None,
            last_error_log: None,
            kv_reads: 0,
        }
    }

    /// Runs a host call under the invocation's deadline. Overrunning it traps the plugin.
    async fn bounded<T>(&mut self, op: impl Future<Output = T>) -> wasmtime::Result<T> {
        match tokio::time::timeout_at(self.deadline, op).await {
            Ok(value) => Ok(value),
            Err(_) => {
                self.stop = Some(StopReason::TimeLimit);
                Err(wasmtime::format_err!(
                    "time limit reached during a host call"
                ))
            }
        }
    }

    async fn act(
        &mut self,
        request: Result<ActionRequest, CallError>,
        reason: String,
    ) -> wasmtime::Result<Result<Receipt, CallError>> {
        let request = match request {
            Ok(request) => request,
            Err(e) => return Ok(Err(e)),
        };
        let host = self.host.clone();
        let call = self.call.clone();
        self.bounded(host.act(&call, request, reason)).await
    }

    async fn list_malops(
        &mut self,
        since: i64,
        until: i64,
    ) -> wasmtime::Result<Result<Vec<Malop>, CallError>> {
        let host = self.host.clone();
        let call = self.call.clone();
        self.bounded(host.list_malops(&call, since, until)).await
    }

    async fn get_malop(&mut self, id: String) -> wasmtime::Result<Result<Malop, CallError>> {
        let host = self.host.clone();
        let call = self.call.clone();
        self.bounded(host.get_malop(&call, MalopId::new(id))).await
    }

    async fn remediation_status(
        &mut self,
        action_id: String,
    ) -> wasmtime::Result<Result<RemediationProgress, CallError>> {
        let host = self.host.clone();
        let call = self.call.clone();
        self.bounded(host.remediation_status(&call, action_id))
            .await
    }

    fn log(&mut self, level: LogLevel, message: String) -> wasmtime::Result<()> {
        // The whole message counts against the output budget, and so does the line riposte
        // writes for it (empty messages are not free); what is logged is bounded and
        // escaped, so it can never start a line of riposte's own log.
        if !self.output.take(message.len() + LOG_LINE_COST) {
            self.stop = Some(StopReason::OutputCap);
            return Err(wasmtime::format_err!(
                "output cap reached by the log import"
            ));
        }
        let message = bounds::log_safe(&message, bounds::MAX_LOG_BYTES);
        if matches!(level, LogLevel::Error) {
            self.last_error_log = Some(message.clone());
        }
        self.host.log(&self.call, level, &message);
        Ok(())
    }

    fn kv_get(&mut self, key: &str) -> wasmtime::Result<Option<Vec<u8>>> {
        if self.kv_reads >= bounds::MAX_KV_READS {
            let reason = format!(
                "kv reads: at most {} kv.get calls per invocation, all used",
                bounds::MAX_KV_READS
            );
            self.stop = Some(StopReason::Trap(reason.clone()));
            return Err(wasmtime::Error::msg(reason));
        }
        self.kv_reads += 1;
        if key.len() > bounds::MAX_KV_KEY_BYTES {
            return Ok(None);
        }
        Ok(self.host.kv_get(&self.call, key))
    }

    fn kv_set(&mut self, key: String, value: Vec<u8>) -> Result<(), CallError> {
        if key.len() > bounds::MAX_KV_KEY_BYTES {
            return Err(kv_too_large("key", key.len(), bounds::MAX_KV_KEY_BYTES));
        }
        if value.len() > bounds::MAX_KV_VALUE_BYTES {
            return Err(kv_too_large(
                "value",
                value.len(),
                bounds::MAX_KV_VALUE_BYTES,
            ));
        }
        self.host.kv_set(&self.call, &key, value)
    }

    fn kv_delete(&self, key: &str) {
        if key.len() <= bounds::MAX_KV_KEY_BYTES {
            self.host.kv_delete(&self.call, key);
        }
    }

    fn config_all(&self) -> Vec<(String, String)> {
        self.call
            .config
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

fn optional_malop(id: Option<String>) -> Option<MalopId> {
    id.map(MalopId::new)
}

/// An isolation (or, with `isolate` false, an un-isolation) of `machine_guids`.
fn isolation_request(
    malop_id: Option<String>,
    machine_guids: Vec<String>,
    isolate: bool,
) -> Result<ActionRequest, CallError> {
    let machines: Vec<_> = non_empty(machine_guids, "machine-guids")?
        .into_iter()
        .map(Into::into)
        .collect();
    let malop_id = optional_malop(malop_id);
    Ok(if isolate {
        ActionRequest::Isolate { malop_id, machines }
    } else {
        ActionRequest::Unisolate { malop_id, machines }
    })
}

/// What each log call costs of the output budget besides its message: the line riposte
/// writes for it carries a time, a level and the plugin's name whatever the message is.
const LOG_LINE_COST: usize = 16;

/// The refusal of a kv key or value past the size bounds (`invalid-argument`, as the WIT
/// says).
fn kv_too_large(what: &str, len: usize, max: usize) -> CallError {
    CallError::InvalidArgument(format!(
        "a kv {what} of {len} bytes; at most {max} (keys {} bytes, values {} bytes)",
        bounds::MAX_KV_KEY_BYTES,
        bounds::MAX_KV_VALUE_BYTES
    ))
}

fn non_empty<T>(items: Vec<T>, what: &str) -> Result<Vec<T>, CallError> {
    if items.is_empty() {
        Err(CallError::InvalidArgument(format!(
            "{what} must not be empty"
        )))
    } else {
        Ok(items)
    }
}

/// Implements the import traits of one WIT version (`$v`, a module of [`super::bindings`])
/// on [`PluginState`]: each forwards to the version-free method above and converts with that
/// version's types; `$receipt` words a receipt the way the version can.
macro_rules! imports_of_version {
    ($v:ident, $receipt:path) => {
        impl $v::types::Host for PluginState {}
        impl $v::plugin::Host for PluginState {}

        impl $v::malops::Host for PluginState {
            async fn list_malops(
                &mut self,
                since: i64,
                until: i64,
            ) -> wasmtime::Result<Result<Vec<$v::types::Malop>, $v::types::Error>> {
                Ok(PluginState::list_malops(self, since, until)
                    .await?
                    .map(|list| list.iter().map(Into::into).collect())
                    .map_err(Into::into))
            }

            async fn get_malop(
                &mut self,
                id: String,
            ) -> wasmtime::Result<Result<$v::types::Malop, $v::types::Error>> {
                Ok(PluginState::get_malop(self, id)
                    .await?
                    .map(|m| (&m).into())
                    .map_err(Into::into))
            }
        }

        impl $v::remediation::Host for PluginState {
            async fn remediate(
                &mut self,
                malop_id: Option<String>,
                targets: Vec<$v::remediation::Target>,
                reason: String,
            ) -> wasmtime::Result<Result<$v::types::Receipt, $v::types::Error>> {
                let request =
                    non_empty(targets, "targets").map(|targets| ActionRequest::Remediate {
                        malop_id: optional_malop(malop_id),
                        targets: targets.into_iter().map(Into::into).collect(),
                    });
                let result = PluginState::act(self, request, reason).await?;
                Ok(result.map_err(Into::into).and_then($receipt))
            }

            async fn status(
                &mut self,
                action_id: String,
            ) -> wasmtime::Result<Result<$v::remediation::Progress, $v::types::Error>> {
                Ok(PluginState::remediation_status(self, action_id)
                    .await?
                    .map(Into::into)
                    .map_err(Into::into))
            }
        }

        impl $v::isolation::Host for PluginState {
            async fn isolate(
                &mut self,
                malop_id: Option<String>,
                machine_guids: Vec<String>,
                reason: String,
            ) -> wasmtime::Result<Result<$v::types::Receipt, $v::types::Error>> {
                let request = isolation_request(malop_id, machine_guids, true);
                let result = PluginState::act(self, request, reason).await?;
                Ok(result.map_err(Into::into).and_then($receipt))
            }

            async fn unisolate(
                &mut self,
                malop_id: Option<String>,
                machine_guids: Vec<String>,
                reason: String,
            ) -> wasmtime::Result<Result<$v::types::Receipt, $v::types::Error>> {
                let request = isolation_request(malop_id, machine_guids, false);
                let result = PluginState::act(self, request, reason).await?;
                Ok(result.map_err(Into::into).and_then($receipt))
            }
        }

        impl $v::reputation::Host for PluginState {
            async fn set_reputation(
                &mut self,
                keys: Vec<$v::reputation::ReputationKey>,
                verdict: $v::reputation::Verdict,
                prevent: bool,
                reason: String,
            ) -> wasmtime::Result<Result<$v::types::Receipt, $v::types::Error>> {
                let request = non_empty(keys, "keys").map(|keys| ActionRequest::SetReputation {
                    keys: keys.into_iter().map(Into::into).collect(),
                    verdict: verdict.into(),
                    prevent,
                });
                let result = PluginState::act(self, request, reason).await?;
                Ok(result.map_err(Into::into).and_then($receipt))
            }

            async fn remove_reputation(
                &mut self,
                keys: Vec<$v::reputation::ReputationKey>,
                reason: String,
            ) -> wasmtime::Result<Result<$v::types::Receipt, $v::types::Error>> {
                let request = non_empty(keys, "keys").map(|keys| ActionRequest::RemoveReputation {
                    keys: keys.into_iter().map(Into::into).collect(),
                });
                let result = PluginState::act(self, request, reason).await?;
                Ok(result.map_err(Into::into).and_then($receipt))
            }
        }

        impl $v::bookkeeping::Host for PluginState {
            async fn set_status(
                &mut self,
                malop_id: String,
                status: $v::types::ManagementStatus,
            ) -> wasmtime::Result<Result<(), $v::types::Error>> {
                let request = ActionRequest::SetStatus {
                    malop_id: MalopId::new(malop_id),
                    status: status.into(),
                };
                let reason = "status change requested by the plugin".to_owned();
                let result = PluginState::act(self, Ok(request), reason).await?;
                Ok(result.map_err(Into::into).and_then($receipt).map(drop))
            }

            async fn add_comment(
                &mut self,
                malop_id: String,
                text: String,
            ) -> wasmtime::Result<Result<(), $v::types::Error>> {
                let request = ActionRequest::AddComment {
                    malop_id: MalopId::new(malop_id),
                    text,
                };
                let reason = "comment requested by the plugin".to_owned();
                let result = PluginState::act(self, Ok(request), reason).await?;
                Ok(result.map_err(Into::into).and_then($receipt).map(drop))
            }
        }

        impl $v::log::Host for PluginState {
            async fn log(
                &mut self,
                level: $v::log::Level,
                message: String,
            ) -> wasmtime::Result<()> {
                PluginState::log(self, level.into(), message)
            }
        }

        impl $v::kv::Host for PluginState {
            async fn get(&mut self, key: String) -> wasmtime::Result<Option<Vec<u8>>> {
                self.kv_get(&key)
            }

            async fn set(
                &mut self,
                key: String,
                value: Vec<u8>,
            ) -> wasmtime::Result<Result<(), $v::types::Error>> {
                Ok(self.kv_set(key, value).map_err(Into::into))
            }

            async fn delete(&mut self, key: String) -> wasmtime::Result<()> {
                self.kv_delete(&key);
                Ok(())
            }
        }

        impl $v::config::Host for PluginState {
            async fn get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
                Ok(self.call.config.get(&key).cloned())
            }

            async fn all(&mut self) -> wasmtime::Result<Vec<(String, String)>> {
                Ok(self.config_all())
            }
        }
    };
}

imports_of_version!(v0_1, receipt_v0_1);
imports_of_version!(v0_2, receipt_v0_2);

#[cfg(test)]
mod tests {
    use super::MemoryLimiter;
    use wasmtime::ResourceLimiter;

    const MIB: usize = 1 << 20;

    #[test]
    fn the_memory_limit_holds_for_all_memories_together() {
        let mut limiter = MemoryLimiter::new(64 * MIB);
        assert!(limiter.memory_growing(0, 40 * MIB, None).unwrap());
        assert!(
            !limiter.memory_growing(0, 40 * MIB, None).unwrap(),
            "a second memory may not take the limit again"
        );
        assert!(limiter.hit);
        assert!(limiter.memory_growing(0, 24 * MIB, None).unwrap());
        // Growing the first memory counts only what it adds.
        assert!(!limiter.memory_growing(40 * MIB, 41 * MIB, None).unwrap());
        assert_eq!(limiter.peak, 64 * MIB);
        // A grow allowed here and refused by wasmtime afterwards does not count.
        assert!(limiter.memory_growing(24 * MIB, 20 * MIB, None).unwrap());
        assert!(limiter.memory_growing(20 * MIB, 24 * MIB, None).unwrap());
        limiter
            .memory_grow_failed(wasmtime::Error::msg("past the memory's maximum"))
            .unwrap();
        assert!(limiter.memory_growing(20 * MIB, 24 * MIB, None).unwrap());
    }
}
