//! The sandbox: one wasmtime engine, plugins checked against the `rule` world at load, and a
//! fresh, limited instance for every invocation.
//!
//! Limits per invocation: fuel (instructions), a wall-clock deadline that includes time
//! spent in host calls (epoch interruption plus a deadline on every host call), linear
//! memory, and output (stdout, stderr and the log import together). The stack limit is
//! engine-wide. Instances come from wasmtime's pooling allocator, behind a semaphore so an
//! exhausted pool makes callers wait instead of failing.

mod bindings;
mod cache;
mod describe_host;
mod host_api;
mod limits;
mod loader;
mod outcome;
mod output;
mod recording;
mod state;

pub use bindings::{
    PluginInfo, Subscription, WIT_PACKAGE, WIT_VERSION, WIT_VERSIONS, WIT_WORLD, wit_version_of,
};
pub use cache::ArtifactCache;
pub use host_api::{BoxFuture, CallContext, Clock, LogLevel, PluginHost, PluginIdentity};
pub use limits::{LimitTooSmall, Limits};
pub use loader::{Inspection, LoadedPlugin, sha256_hex};
pub use outcome::{InvocationReport, Outcome, StopReason};
pub use recording::{
    FixtureMalops, GateOutcome, Judge, MAX_RECORDED_BYTES, MalopSource, RecordedCall, RecordingHost,
};

use loader::WorldPre;
use riposte_domain::{CallError, Malop};
use sha2::{Digest, Sha256};
use state::PluginState;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::component::{HasSelf, Linker};
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store,
};

/// Errors of the runtime layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The engine could not be configured.
    #[error("cannot set up the WebAssembly engine: {0}")]
    Engine(String),
    /// The bytes are not a WebAssembly component.
    #[error(
        "plugin `{plugin}` is not a WebAssembly component ({found}); build it with `riposte plugin build`"
    )]
    NotAComponent { plugin: String, found: &'static str },
    /// The component did not compile.
    #[error("plugin `{plugin}` does not compile: {detail}")]
    Compile { plugin: String, detail: String },
    /// The component targets a version of the WIT package this host does not serve.
    #[error(
        "plugin `{plugin}` was built against {package}@{found}, but this host serves {package}@{expected}; rebuild the plugin against wit/ of this host",
        expected = WIT_VERSIONS.join(" and @")
    )]
    WitVersion {
        plugin: String,
        package: &'static str,
        found: String,
    },
    /// The component's imports or exports do not match the `rule` world.
    #[error("plugin `{plugin}` does not match the world {package}/{world}@{version}: {detail}", package = WIT_PACKAGE, world = WIT_WORLD)]
    WorldMismatch {
        plugin: String,
        /// The version it was checked against.
        version: &'static str,
        detail: String,
    },
    /// The component's initial memory images could not be built.
    #[error("cannot prepare the memory images of plugin `{plugin}`: {detail}")]
    MemoryImage { plugin: String, detail: String },
    /// A precompiled artifact failed authentication or could not be used.
    #[error("precompiled artifact for `{plugin}` refused: {detail}")]
    Artifact { plugin: String, detail: String },
    /// Reading a plugin file failed.
    #[error("cannot read plugin file {path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    /// Calling `describe` failed.
    #[error("plugin `{plugin}` failed in describe: {reason}")]
    Describe { plugin: String, reason: String },
}

/// Engine-wide settings.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// Instances that may exist at once (the pooling allocator's size).
    pub max_instances: u32,
    /// The largest linear memory any plugin may be granted, in bytes.
    pub max_memory_bytes: usize,
    /// The wasm stack limit, in bytes (engine-wide; default [`Limits`]'s `stack_bytes`).
    pub max_stack_bytes: usize,
    /// How often the epoch advances; the granularity of the time limit.
    pub epoch_tick: Duration,
    /// Bytes of each pool slot's linear memory and tables kept resident (reset in place)
    /// between instances instead of returned to the kernel; 0 returns them all. Where the
    /// kernel has `PAGEMAP_SCAN` (Linux 6.7 and later) only the pages an instance wrote are
    /// reset, so a small plugin's slot costs a few page copies instead of an `madvise`, the
    /// TLB shootdown it sends to every core, and the page faults of the next instance. The
    /// default, 1 MiB, covers a Rust plugin's stack and heap (measured in the benchmarks,
    /// section 10c); it bounds the memory idle slots hold at 1 MiB each.
    pub keep_resident_bytes: usize,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            max_instances: 64,
            max_memory_bytes: 256 << 20,
            max_stack_bytes: Limits::default().stack_bytes,
            epoch_tick: Duration::from_millis(2),
            keep_resident_bytes: 1 << 20,
        }
    }
}

/// What an invocation is for.
#[derive(Clone, Copy, Debug)]
pub enum Entry<'a> {
    /// `on-malop` with this Malop.
    Malop(&'a Malop),
    /// `on-interval` at this time (ms since the epoch).
    Interval(i64),
}

/// An [`Entry`] owned by the task that runs the invocation.
enum OwnedEntry {
    Malop(Box<Malop>),
    Interval(i64),
}

impl From<Entry<'_>> for OwnedEntry {
    fn from(entry: Entry<'_>) -> Self {
        match entry {
            Entry::Malop(malop) => Self::Malop(Box::new(malop.clone())),
            Entry::Interval(now) => Self::Interval(now),
        }
    }
}

impl OwnedEntry {
    fn entry(&self) -> Entry<'_> {
        match self {
            Self::Malop(malop) => Entry::Malop(malop),
            Self::Interval(now) => Entry::Interval(*now),
        }
    }
}

type RunResult = Result<wasmtime::Result<Result<(), CallError>>, tokio::time::error::Elapsed>;

/// An instance's store with its slot in the pool. Fields drop in order: the store (and
/// with it the instance's memories and tables, back to the pooling allocator) before the
/// slot is released for another invocation.
struct Instance {
    store: Store<PluginState>,
    _slot: OwnedSemaphorePermit,
}

/// Runs a fresh instance on a task of its own, so that the invocations a caller awaits
/// together spread over every worker thread of a multi-threaded runtime instead of taking
/// turns on the caller's. The task is aborted if the caller stops waiting for it; the
/// instance's slot is released only once the task has dropped the instance, so an
/// abandoned invocation never lets another take a place in the pool it still holds.
async fn run_on_own_task(
    pre: WorldPre,
    instance: Instance,
    entry: OwnedEntry,
    backstop: Duration,
) -> Result<(Instance, RunResult), tokio::task::JoinError> {
    let task = tokio::spawn(async move {
        // Moved whole, so that it is dropped as one value (store first) if aborted.
        let mut instance = instance;
        let run = pre.run(&mut instance.store, entry.entry());
        let result = tokio::time::timeout(backstop, run).await;
        (instance, result)
    });
    tokio_util::task::AbortOnDropHandle::new(task).await
}

/// The sandbox runtime. Cheap to share behind an `Arc`; one per process.
pub struct Runtime {
    engine: Engine,
    linker: Linker<PluginState>,
    config: RuntimeConfig,
    slots: Arc<Semaphore>,
}

impl Runtime {
    /// Builds the engine, the linker with the host's imports and restricted WASI, and starts
    /// the epoch ticker.
    pub fn new(config: RuntimeConfig) -> Result<Self, Error> {
        let engine =
            Engine::new(&engine_config(&config)).map_err(|e| Error::Engine(format!("{e:#}")))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| Error::Engine(format!("linking WASI: {e:#}")))?;
        // Both contract versions side by side: their import names differ by version.
        bindings::v0_1::Rule::add_to_linker::<PluginState, HasSelf<PluginState>>(
            &mut linker,
            |s| s,
        )
        .map_err(|e| Error::Engine(format!("linking the riposte@0.1.0 imports: {e:#}")))?;
        bindings::v0_2::Rule::add_to_linker::<PluginState, HasSelf<PluginState>>(
            &mut linker,
            |s| s,
        )
        .map_err(|e| Error::Engine(format!("linking the riposte@0.2.0 imports: {e:#}")))?;
        start_epoch_ticker(&engine, config.epoch_tick);
        let slots = Arc::new(Semaphore::new(config.max_instances as usize));
        Ok(Self {
            engine,
            linker,
            config,
            slots,
        })
    }

    /// The engine-wide settings.
    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    /// The underlying wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Calls the plugin's `describe` export, against a host that refuses every import
    /// (`describe` runs at load, before any grant or quota applies).
    pub async fn describe(&self, plugin: &LoadedPlugin) -> Result<PluginInfo, Error> {
        let host: Arc<dyn PluginHost> = Arc::new(describe_host::DescribeHost);
        let call = CallContext {
            plugin: plugin.identity(),
            invocation_id: uuid::Uuid::new_v4().to_string(),
            malop_id: None,
            input_digest: hex::encode(Sha256::digest(b"describe")),
            config: Default::default(),
            clock: Clock::System,
        };
        let limits = Limits::default();
        // Taken before the store, so that the store (dropped first) goes back to the pool
        // before the slot is released.
        let _slot = self
            .slots
            .acquire()
            .await
            .expect("the semaphore is never closed");
        let mut store = self.new_store(host, call, &limits, Instant::now());
        let info = plugin
            .pre
            .describe(&mut store)
            .await
            .map_err(|e| Error::Describe {
                plugin: plugin.name.clone(),
                reason: self.stop_reason(&store, &e).to_string(),
            })?;
        info.check_bounds().map_err(|reason| Error::Describe {
            plugin: plugin.name.clone(),
            reason,
        })?;
        Ok(info)
    }

    /// Runs one invocation in a fresh instance under `limits`, and reports how it ended.
    /// A plugin that traps affects only its own invocation.
    pub async fn invoke(
        &self,
        plugin: &LoadedPlugin,
        limits: &Limits,
        host: Arc<dyn PluginHost>,
        call: CallContext,
        entry: Entry<'_>,
    ) -> InvocationReport {
        let slot = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let started = Instant::now();
        let invocation_id = call.invocation_id.clone();
        let store = self.new_store(host, call, limits, started);
        // The epoch callback stops wasm at the deadline and host calls are bounded by it;
        // this outer timeout is a backstop for anything that still does not return.
        let backstop = limits.wall_clock + Duration::from_millis(250);
        let instance = Instance { store, _slot: slot };
        let ran = run_on_own_task(
            plugin.pre.clone(),
            instance,
            OwnedEntry::from(entry),
            backstop,
        );
        let (instance, result) = match ran.await {
            Ok(ran) => ran,
            // Only a panic of the host's own code ends the task early.
            Err(failed) => {
                // A panic message may quote what the plugin handed in: bounded as a
                // plugin's own error is, in the log and the report alike.
                let error = riposte_domain::bounds::log_safe(
                    &format!("the invocation's task failed: {failed}"),
                    riposte_domain::bounds::MAX_ERROR_BYTES,
                );
                tracing::error!(invocation = %invocation_id, "{error}");
                return InvocationReport {
                    invocation_id,
                    outcome: Outcome::HostFailure { error },
                    fuel_used: 0,
                    peak_memory: 0,
                    duration: started.elapsed(),
                    stdout: String::new(),
                    stderr: String::new(),
                };
            }
        };
        let outcome = match result {
            Ok(Ok(Ok(()))) => Outcome::Completed,
            Ok(Ok(Err(error))) => Outcome::PluginError {
                error: outcome::bounded_error(error),
            },
            // No room in the instance pool is the host's shortage, not the plugin's fault:
            // it must not count towards pausing the plugin.
            Ok(Err(error)) if error.is::<wasmtime::PoolConcurrencyLimitError>() => {
                Outcome::HostFailure {
                    error: format!("no room to instantiate the plugin: {error:#}"),
                }
            }
            Ok(Err(trap)) => Outcome::Stopped {
                reason: self.stop_reason(&instance.store, &trap),
            },
            Err(_elapsed) => Outcome::Stopped {
                reason: StopReason::TimeLimit,
            },
        };
        let store = &instance.store;
        let fuel_left = store.get_fuel().unwrap_or(0);
        let state = store.data();
        InvocationReport {
            invocation_id,
            outcome,
            fuel_used: limits.fuel.saturating_sub(fuel_left),
            peak_memory: state.limiter.peak,
            duration: started.elapsed(),
            stdout: String::from_utf8_lossy(&state.stdout.contents()).into_owned(),
            stderr: String::from_utf8_lossy(&state.stderr.contents()).into_owned(),
        }
    }

    fn new_store(
        &self,
        host: Arc<dyn PluginHost>,
        call: CallContext,
        limits: &Limits,
        started: Instant,
    ) -> Store<PluginState> {
        let deadline = started + limits.wall_clock;
        let memory = limits.memory_bytes.min(self.config.max_memory_bytes);
        let state = PluginState::new(host, call, deadline.into(), memory, limits.output_bytes);
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        store.set_hostcall_fuel(riposte_domain::bounds::MAX_CALL_BYTES);
        store
            .set_fuel(limits.fuel)
            .expect("fuel is enabled in the engine config");
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if Instant::now() >= deadline {
                Ok(wasmtime::UpdateDeadline::Interrupt)
            } else {
                Ok(wasmtime::UpdateDeadline::Yield(1))
            }
        });
        store
    }

    fn stop_reason(&self, store: &Store<PluginState>, error: &wasmtime::Error) -> StopReason {
        let state = store.data();
        let stderr = String::from_utf8_lossy(&state.stderr.contents()).into_owned();
        let panic = outcome::panic_message(&stderr).or_else(|| {
            state
                .last_error_log
                .as_deref()
                .and_then(|m| m.strip_prefix("panic: "))
                .map(str::to_owned)
        });
        let recorded = state
            .stop
            .clone()
            .or_else(|| state.output.hit().then_some(StopReason::OutputCap));
        outcome::classify(recorded, state.limiter.hit, panic, error)
    }
}

/// What one component instance may take of the pool. The pool holds `max_instances` times
/// each, so no instance (a hostile one with many memories or modules) can take another's
/// share: a plugin that cannot be instantiated for want of room would be stopped for it.
const CORE_INSTANCES_PER_COMPONENT: u32 = 32;
const MEMORIES_PER_COMPONENT: u32 = 4;
const TABLES_PER_COMPONENT: u32 = 8;

fn engine_config(config: &RuntimeConfig) -> Config {
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(config.max_instances)
        .total_core_instances(config.max_instances * CORE_INSTANCES_PER_COMPONENT)
        .total_memories(config.max_instances * MEMORIES_PER_COMPONENT)
        .total_tables(config.max_instances * TABLES_PER_COMPONENT)
        .total_stacks(config.max_instances)
        .max_memory_size(config.max_memory_bytes)
        .max_memories_per_component(MEMORIES_PER_COMPONENT)
        .max_tables_per_component(TABLES_PER_COMPONENT)
        .max_core_instances_per_component(CORE_INSTANCES_PER_COMPONENT)
        .linear_memory_keep_resident(config.keep_resident_bytes)
        .table_keep_resident(config.keep_resident_bytes)
        .pagemap_scan(Enabled::Auto);
    let mut c = Config::new();
    c.consume_fuel(true)
        .epoch_interruption(true)
        .max_wasm_stack(config.max_stack_bytes)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
        .memory_init_cow(true);
    c
}

/// Advances the engine's epoch every `tick` until the engine is dropped.
fn start_epoch_ticker(engine: &Engine, tick: Duration) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("riposte-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(tick);
            }
        })
        .expect("spawning the epoch ticker thread");
}
