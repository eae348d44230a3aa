//! The per-invocation store state, and the WIT import implementations on it.
//!
//! Every import forwards to the [`PluginHost`] with the invocation's [`CallContext`]. Time
//! spent in a host call counts against the invocation's wall-clock deadline: a host call
//! that outlives it traps the plugin.

use super::bindings::{
    bookkeeping, config, isolation, kv, log, malops, plugin, remediation, reputation, types,
};
use super::host_api::{CallContext, Clock, PluginHost};
use super::outcome::StopReason;
use super::output::CappedPipe;
use crate::domain::{ActionRequest, CallError, MalopId};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// Memory accounting for one store: enforces the limit and remembers that it was hit, so
/// the trap that follows can be reported as "memory limit" rather than a bare `unreachable`.
pub(crate) struct MemoryLimiter {
    limit: usize,
    pub(crate) peak: usize,
    pub(crate) hit: bool,
}

impl MemoryLimiter {
    fn new(limit: usize) -> Self {
        Self {
            limit,
            peak: 0,
            hit: false,
        }
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.hit = true;
            return Ok(false);
        }
        self.peak = self.peak.max(desired);
        Ok(true)
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
    output_left: usize,
    pub(crate) stdout: CappedPipe,
    pub(crate) stderr: CappedPipe,
    /// Why the host stopped the plugin, when it was the host's decision.
    pub(crate) stop: Option<StopReason>,
    /// Log lines the plugin wrote, for panic messages and replay reports.
    pub(crate) last_error_log: Option<String>,
}

impl PluginState {
    pub(crate) fn new(
        host: Arc<dyn PluginHost>,
        call: CallContext,
        deadline: Instant,
        memory_limit: usize,
        output_cap: usize,
    ) -> Self {
        let stdout = CappedPipe::new(output_cap);
        let stderr = CappedPipe::new(output_cap);
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
            output_left: output_cap,
            stdout,
            stderr,
            stop: None,
            last_error_log: None,
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
    ) -> wasmtime::Result<Result<types::Receipt, types::Error>> {
        let request = match request {
            Ok(request) => request,
            Err(e) => return Ok(Err(e.into())),
        };
        let host = self.host.clone();
        let call = self.call.clone();
        let result = self.bounded(host.act(&call, request, reason)).await?;
        Ok(result.map(Into::into).map_err(Into::into))
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

fn non_empty<T>(items: Vec<T>, what: &str) -> Result<Vec<T>, CallError> {
    if items.is_empty() {
        Err(CallError::InvalidArgument(format!(
            "{what} must not be empty"
        )))
    } else {
        Ok(items)
    }
}

impl types::Host for PluginState {}
impl plugin::Host for PluginState {}

impl malops::Host for PluginState {
    async fn list_malops(
        &mut self,
        since: i64,
        until: i64,
    ) -> wasmtime::Result<Result<Vec<types::Malop>, types::Error>> {
        let host = self.host.clone();
        let call = self.call.clone();
        let result = self.bounded(host.list_malops(&call, since, until)).await?;
        Ok(result
            .map(|list| list.iter().map(Into::into).collect())
            .map_err(Into::into))
    }

    async fn get_malop(
        &mut self,
        id: String,
    ) -> wasmtime::Result<Result<types::Malop, types::Error>> {
        let host = self.host.clone();
        let call = self.call.clone();
        let result = self
            .bounded(host.get_malop(&call, MalopId::new(id)))
            .await?;
        Ok(result.map(|m| (&m).into()).map_err(Into::into))
    }
}

impl remediation::Host for PluginState {
    async fn remediate(
        &mut self,
        malop_id: Option<String>,
        targets: Vec<remediation::Target>,
        reason: String,
    ) -> wasmtime::Result<Result<types::Receipt, types::Error>> {
        let request = non_empty(targets, "targets").map(|targets| ActionRequest::Remediate {
            malop_id: optional_malop(malop_id),
            targets: targets.into_iter().map(Into::into).collect(),
        });
        self.act(request, reason).await
    }

    async fn status(
        &mut self,
        action_id: String,
    ) -> wasmtime::Result<Result<remediation::Progress, types::Error>> {
        let host = self.host.clone();
        let call = self.call.clone();
        let result = self
            .bounded(host.remediation_status(&call, action_id))
            .await?;
        Ok(result.map(Into::into).map_err(Into::into))
    }
}

impl isolation::Host for PluginState {
    async fn isolate(
        &mut self,
        malop_id: Option<String>,
        machine_guids: Vec<String>,
        reason: String,
    ) -> wasmtime::Result<Result<types::Receipt, types::Error>> {
        let request = non_empty(machine_guids, "machine-guids").map(|m| ActionRequest::Isolate {
            malop_id: optional_malop(malop_id),
            machines: m.into_iter().map(Into::into).collect(),
        });
        self.act(request, reason).await
    }

    async fn unisolate(
        &mut self,
        malop_id: Option<String>,
        machine_guids: Vec<String>,
        reason: String,
    ) -> wasmtime::Result<Result<types::Receipt, types::Error>> {
        let request = non_empty(machine_guids, "machine-guids").map(|m| ActionRequest::Unisolate {
            malop_id: optional_malop(malop_id),
            machines: m.into_iter().map(Into::into).collect(),
        });
        self.act(request, reason).await
    }
}

impl reputation::Host for PluginState {
    async fn set_reputation(
        &mut self,
        keys: Vec<reputation::ReputationKey>,
        verdict: reputation::Verdict,
        prevent: bool,
        reason: String,
    ) -> wasmtime::Result<Result<types::Receipt, types::Error>> {
        let request = non_empty(keys, "keys").map(|keys| ActionRequest::SetReputation {
            keys: keys.into_iter().map(Into::into).collect(),
            verdict: verdict.into(),
            prevent,
        });
        self.act(request, reason).await
    }

    async fn remove_reputation(
        &mut self,
        keys: Vec<reputation::ReputationKey>,
        reason: String,
    ) -> wasmtime::Result<Result<types::Receipt, types::Error>> {
        let request = non_empty(keys, "keys").map(|keys| ActionRequest::RemoveReputation {
            keys: keys.into_iter().map(Into::into).collect(),
        });
        self.act(request, reason).await
    }
}

impl bookkeeping::Host for PluginState {
    async fn set_status(
        &mut self,
        malop_id: String,
        status: types::ManagementStatus,
    ) -> wasmtime::Result<Result<(), types::Error>> {
        let request = ActionRequest::SetStatus {
            malop_id: MalopId::new(malop_id),
            status: status.into(),
        };
        let reason = "status change requested by the plugin".to_owned();
        Ok(self.act(Ok(request), reason).await?.map(drop))
    }

    async fn add_comment(
        &mut self,
        malop_id: String,
        text: String,
    ) -> wasmtime::Result<Result<(), types::Error>> {
        let request = ActionRequest::AddComment {
            malop_id: MalopId::new(malop_id),
            text,
        };
        let reason = "comment requested by the plugin".to_owned();
        Ok(self.act(Ok(request), reason).await?.map(drop))
    }
}

impl log::Host for PluginState {
    async fn log(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        if message.len() > self.output_left {
            self.stop = Some(StopReason::OutputCap);
            return Err(wasmtime::format_err!(
                "output cap reached by the log import"
            ));
        }
        self.output_left -= message.len();
        if matches!(level, log::Level::Error) {
            self.last_error_log = Some(message.clone());
        }
        self.host.log(&self.call, level.into(), &message);
        Ok(())
    }
}

/// Largest key and value the plugin key-value store accepts.
const KV_MAX_KEY: usize = 256;
const KV_MAX_VALUE: usize = 64 * 1024;

impl kv::Host for PluginState {
    async fn get(&mut self, key: String) -> wasmtime::Result<Option<Vec<u8>>> {
        Ok(self.host.kv_get(&self.call, &key))
    }

    async fn set(
        &mut self,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), types::Error>> {
        if key.len() > KV_MAX_KEY || value.len() > KV_MAX_VALUE {
            return Ok(Err(types::Error::InvalidArgument(format!(
                "kv entries are limited to {KV_MAX_KEY}-byte keys and {KV_MAX_VALUE}-byte values"
            ))));
        }
        Ok(self
            .host
            .kv_set(&self.call, &key, value)
            .map_err(Into::into))
    }

    async fn delete(&mut self, key: String) -> wasmtime::Result<()> {
        self.host.kv_delete(&self.call, &key);
        Ok(())
    }
}

impl config::Host for PluginState {
    async fn get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        Ok(self.call.config.get(&key).cloned())
    }

    async fn all(&mut self) -> wasmtime::Result<Vec<(String, String)>> {
        Ok(self
            .call
            .config
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
}
