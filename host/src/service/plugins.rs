//! The service's plugins: pinned, loaded, checked and described once at start.

use crate::config::{OperatorConfig, PluginConfig};
use crate::domain::Sha256Digest;
use crate::policy::PluginPolicy;
use crate::runtime::{
    ArtifactCache, Limits, LoadedPlugin, PluginIdentity, PluginInfo, RecordingHost, Runtime,
    RuntimeConfig,
};
use anyhow::Context;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One configured plugin, ready to invoke.
pub struct ServicePlugin {
    /// The operator's configuration of it.
    pub config: Arc<PluginConfig>,
    /// What the gate decides on.
    pub policy: PluginPolicy,
    /// The compiled, checked component.
    pub loaded: LoadedPlugin,
    /// What the plugin said about itself.
    pub info: PluginInfo,
    /// sha256 of the component (equal to the pin).
    pub digest: Sha256Digest,
    /// Per-invocation limits.
    pub limits: Limits,
    /// Its config values.
    pub values: Arc<BTreeMap<String, String>>,
    next_interval_ms: Mutex<Option<i64>>,
}

impl ServicePlugin {
    /// The identity recorded with every call.
    pub fn identity(&self) -> PluginIdentity {
        self.loaded.identity()
    }

    /// Whether the interval hook is due at `now`; if so, schedules the next one.
    pub fn interval_due(&self, now: i64) -> bool {
        let Some(seconds) = self.info.interval_seconds.filter(|s| *s > 0) else {
            return false;
        };
        let mut next = self
            .next_interval_ms
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match *next {
            Some(due) if now < due => false,
            _ => {
                *next = Some(now + i64::from(seconds) * 1000);
                true
            }
        }
    }
}

/// Engine-wide settings large enough for every configured plugin.
pub fn runtime_config(config: &OperatorConfig) -> RuntimeConfig {
    let defaults = RuntimeConfig::default();
    let max = |f: fn(&PluginConfig) -> u64, floor: usize| {
        config
            .plugins
            .iter()
            .map(|p| f(p) as usize)
            .max()
            .unwrap_or(floor)
            .max(floor)
    };
    RuntimeConfig {
        max_instances: (config.service.max_concurrency as u32 * 4).max(16),
        max_memory_bytes: max(|p| p.limits.memory_bytes, 64 << 20),
        max_stack_bytes: max(|p| p.limits.stack_bytes, defaults.max_stack_bytes),
        ..defaults
    }
}

/// The runtime's limits for a plugin.
pub fn limits_of(config: &PluginConfig) -> Limits {
    Limits {
        fuel: config.limits.fuel,
        wall_clock: Duration::from_millis(config.limits.wall_clock_ms),
        memory_bytes: config.limits.memory_bytes as usize,
        output_bytes: config.limits.max_output_bytes as usize,
    }
}

/// Loads every configured plugin: pin check, compile (through the authenticated artifact
/// cache), world check, `describe`.
pub async fn load_all(
    runtime: &Runtime,
    config: &OperatorConfig,
    cache_dir: &Path,
) -> anyhow::Result<Vec<Arc<ServicePlugin>>> {
    let cache = ArtifactCache::open(cache_dir)
        .with_context(|| format!("opening the artifact cache {}", cache_dir.display()))?;
    let mut loaded = Vec::with_capacity(config.plugins.len());
    for plugin in &config.plugins {
        loaded.push(Arc::new(load_one(runtime, plugin, &cache).await?));
    }
    Ok(loaded)
}

async fn load_one(
    runtime: &Runtime,
    config: &PluginConfig,
    cache: &ArtifactCache,
) -> anyhow::Result<ServicePlugin> {
    let name = config.name.as_str();
    let bytes = config.read_verified()?;
    let loaded = runtime.load(name, &bytes, Some(cache))?;
    // describe runs sandboxed too; its imports are answered by a dry-run host.
    let info = runtime
        .describe(&loaded, Arc::new(RecordingHost::default()))
        .await?;
    tracing::info!(plugin = name, version = %info.version, mode = ?config.mode, "plugin loaded");
    Ok(ServicePlugin {
        policy: PluginPolicy::from(config),
        digest: config.sha256,
        limits: limits_of(config),
        values: Arc::new(config.values.clone()),
        config: Arc::new(config.clone()),
        loaded,
        info,
        next_interval_ms: Mutex::new(None),
    })
}
