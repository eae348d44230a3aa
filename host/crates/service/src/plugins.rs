//! The service's plugins: pinned, loaded, checked and described once at start.

use crate::config::{OperatorConfig, PluginConfig};
use anyhow::Context;
use riposte_domain::{MalopPart, Operation, Sha256Digest};
use riposte_policy::PluginPolicy;
use riposte_runtime::{
    ArtifactCache, Limits, LoadedPlugin, PluginIdentity, PluginInfo, Runtime, RuntimeConfig,
};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

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
    /// The pinned publisher key that signed it (none when no key is pinned).
    pub signer: Option<riposte_supply::KeyId>,
    /// Its package manifest, when the component is a package.
    pub package: Option<riposte_supply::Manifest>,
    /// The parts of a Malop offered to it that must be read (see [`parts_read`]).
    pub parts_read: Vec<MalopPart>,
    next_interval_ms: Mutex<Option<i64>>,
}

impl ServicePlugin {
    /// The identity recorded with every call.
    pub fn identity(&self) -> PluginIdentity {
        self.loaded.identity()
    }

    /// How often `on-interval` runs: what the plugin asks for, never more often than the
    /// operator's `min_interval_secs`; `None` when it asks for no interval.
    pub fn interval_secs(&self) -> Option<u64> {
        self.config.rules.interval_secs(self.info.interval_seconds)
    }

    /// The detail of its `plugin-loaded` audit event.
    pub(crate) fn loaded_event(&self) -> serde_json::Value {
        serde_json::json!({
            "version": self.info.version, "mode": self.config.rules.mode, "subscription": self.info.subscription,
            "wit": format!("{}@{}", riposte_runtime::WIT_PACKAGE, self.loaded.wit_version()),
            "interval_secs": self.interval_secs(), "requested_interval_secs": self.info.interval_seconds,
        })
    }

    /// Keeps the interval schedule of `previous` (the same plugin before a reload), so a
    /// reload does not make an interval due early.
    pub(crate) fn keep_schedule_of(&self, previous: &ServicePlugin) {
        let due = *previous
            .next_interval_ms
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        *self
            .next_interval_ms
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = due;
    }

    /// Whether the interval hook is due at `now`; if so, schedules the next one.
    pub(crate) fn interval_due(&self, now: i64) -> bool {
        let Some(seconds) = self.interval_secs() else {
            return false;
        };
        let mut next = self
            .next_interval_ms
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match *next {
            Some(due) if now < due => false,
            _ => {
                *next = Some(now.saturating_add((seconds as i64).saturating_mul(1000)));
                true
            }
        }
    }
}

/// Engine-wide settings large enough for every configured plugin.
pub fn runtime_config(config: &OperatorConfig) -> RuntimeConfig {
    let defaults = RuntimeConfig::default();
    let max = |f: fn(&PluginConfig) -> usize, floor: usize| {
        config
            .plugins
            .iter()
            .map(f)
            .max()
            .unwrap_or(floor)
            .max(floor)
    };
    RuntimeConfig {
        max_instances: (config.service.max_concurrency as u32 * 4).max(16),
        max_memory_bytes: max(|p| p.limits.memory_bytes, Limits::default().memory_bytes),
        max_stack_bytes: max(|p| p.limits.stack_bytes, defaults.max_stack_bytes),
        keep_resident_bytes: config.service.keep_resident_bytes,
        ..defaults
    }
}

/// Loads every configured plugin: pin and signature checks, package manifest check, compile
/// (through the authenticated artifact cache), world check, `describe`.
pub(crate) async fn load_all(
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
    let (bytes, signer) = config.read_checked()?;
    let package = riposte_supply::package::read(&bytes)
        .with_context(|| format!("plugin `{name}` ({})", config.path.display()))?
        .map(|p| p.manifest);
    let loaded = runtime.load(name, &bytes, Some(cache))?;
    // describe runs sandboxed too, against a host that refuses every import.
    let info = runtime.describe(&loaded).await?;
    if let Some(manifest) = &package {
        check_package(config, manifest, &info)?;
    }
    tracing::info!(
        plugin = name,
        version = %info.version,
        mode = ?config.rules.mode,
        signer = %signer.as_ref().map_or_else(|| "none pinned".to_owned(), ToString::to_string),
        package = package.is_some(),
        "plugin loaded"
    );
    Ok(ServicePlugin {
        signer,
        package,
        parts_read: parts_read(config),
        policy: config.policy(),
        digest: config.sha256,
        limits: config.limits.clone(),
        values: Arc::new(config.values.clone()),
        config: Arc::new(config.clone()),
        loaded,
        info,
        next_interval_ms: Mutex::new(None),
    })
}

/// The parts of a Malop a plugin is offered that must be read: those it reads
/// (`malop_parts`), and the machines' sensors whenever it may act on machines, since the
/// gate's protected groups and the isolation's sensor ids come from them.
fn parts_read(config: &PluginConfig) -> Vec<MalopPart> {
    let grants = &config.rules.grants;
    let acts_on_machines = [
        Operation::Remediate,
        Operation::Isolate,
        Operation::Unisolate,
    ]
    .into_iter()
    .any(|op| grants.allows_operation(op));
    let mut parts = config.malop_parts.clone();
    if acts_on_machines && !parts.contains(&MalopPart::Sensors) {
        parts.push(MalopPart::Sensors);
        parts.sort();
    }
    parts
}

/// A package must be the plugin it says it is; grants beyond what it asks for are reported
/// (the operator's grants still decide).
fn check_package(
    config: &PluginConfig,
    manifest: &riposte_supply::Manifest,
    info: &PluginInfo,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        manifest.name == info.name && manifest.version == info.version,
        "plugin `{}` ({}): its package manifest says {} {}, but the component describes itself as {} {}; refusing to load it",
        config.name,
        config.path.display(),
        manifest.name,
        manifest.version,
        info.name,
        info.version
    );
    let requested = riposte_policy::Grants::from_names(
        &manifest.grants.operations,
        &manifest.grants.remediation,
    )
    .map_err(|e| anyhow::anyhow!("plugin `{}`: its package manifest: {e}", config.name))?;
    if !config.rules.grants.is_within(&requested) {
        tracing::warn!(
            plugin = %config.name,
            "the configuration grants more than the package asks for (operations {:?}, remediation {:?}): consider granting only what it asks",
            manifest.grants.operations,
            manifest.grants.remediation
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use riposte_domain::RemediationKind;
    use riposte_supply::{Manifest, RequestedGrants};

    fn manifest(name: &str, version: &str) -> Manifest {
        Manifest {
            format: riposte_supply::package::FORMAT,
            name: name.into(),
            version: version.into(),
            description: String::new(),
            wit: "riposte:plugin/rule@0.1.0".into(),
            component_sha256: Sha256Digest::of(b"code"),
            grants: RequestedGrants {
                operations: vec!["remediate".into()],
                remediation: vec!["kill-process".into()],
            },
        }
    }

    fn info(name: &str, version: &str) -> PluginInfo {
        PluginInfo {
            name: name.into(),
            version: version.into(),
            description: String::new(),
            subscription: Default::default(),
            interval_seconds: None,
        }
    }

    #[test]
    fn a_package_must_be_the_plugin_it_says_it_is() {
        let mut config = PluginConfig::new("vendor-rule", "rule.wasm", Sha256Digest::of(b"x"));
        config.rules.grants.operations.insert(Operation::Remediate);
        config
            .rules
            .grants
            .remediation
            .insert(RemediationKind::KillProcess);
        check_package(&config, &manifest("rule", "1.0.0"), &info("rule", "1.0.0")).unwrap();
        // Granting more than the package asks for is allowed (and logged).
        config.rules.grants.operations.insert(Operation::Isolate);
        check_package(&config, &manifest("rule", "1.0.0"), &info("rule", "1.0.0")).unwrap();
        for (name, version) in [("other", "1.0.0"), ("rule", "2.0.0")] {
            let err = check_package(&config, &manifest("rule", "1.0.0"), &info(name, version))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("`vendor-rule`")
                    && err.contains("says rule 1.0.0")
                    && err.contains(&format!("{name} {version}")),
                "{err}"
            );
        }
    }
}
