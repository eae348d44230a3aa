//! Reloading the configuration and the plugins without a restart (`SIGHUP` to `riposte run`).
//!
//! A reload happens between cycles, so no invocation is in flight: every invocation of the
//! cycle before ran under the rules it started with, and every invocation after runs under
//! the new ones. Everything is checked before anything changes: a configuration or a plugin
//! that fails (pins, signatures, world, package manifest) refuses the whole reload and the
//! running set stays. What a reload keeps: the state database and the audit trail (their
//! paths cannot change without a restart), the server connection and its follow policy, the
//! plugins' health and their per-minute quotas, and the interval schedule of every plugin
//! that stays.

use crate::Service;
use crate::config::OperatorConfig;
use crate::plugins::ServicePlugin;
use riposte_domain::PluginName;
use serde::Serialize;
use std::path::Path;
use std::sync::Arc;

/// What a reload changed, by plugin name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ReloadReport {
    /// Plugins loaded for the first time.
    pub added: Vec<PluginName>,
    /// Plugins no longer configured: they take no more work.
    pub removed: Vec<PluginName>,
    /// Plugins whose component, pin or configuration changed.
    pub changed: Vec<PluginName>,
    /// Plugins loaded again as they were.
    pub unchanged: Vec<PluginName>,
    /// Settings that changed but apply only after a restart (`[service.server]`,
    /// `[service.follow]`, `metrics_listen`, `[service.syslog]`, `[notifications]`).
    pub need_restart: Vec<&'static str>,
}

impl Service {
    /// Reads the configuration at `path` again and replaces the running configuration and
    /// plugins with it, or refuses and keeps the running set. Call it between cycles. Either
    /// way the reload is audited (`config-reloaded` or `config-reload-refused`).
    pub async fn reload(&mut self, path: &Path) -> anyhow::Result<ReloadReport> {
        let swapped = match OperatorConfig::load(path) {
            Ok(config) => self.swap_in(config).await,
            Err(error) => Err(anyhow::Error::new(error)),
        };
        match swapped {
            Ok(report) => {
                self.core.auditor.service_event(
                    "config-reloaded",
                    serde_json::to_value(&report).unwrap_or_default(),
                );
                self.audit_loaded(|name| {
                    report.added.contains(name) || report.changed.contains(name)
                });
                Ok(report)
            }
            Err(error) => {
                self.core.auditor.service_event(
                    "config-reload-refused",
                    serde_json::json!({ "error": riposte_domain::bounds::excerpt(&format!("{error:#}"), 2048) }),
                );
                Err(error.context("reloading the configuration; the running plugins stay"))
            }
        }
    }

    async fn swap_in(&mut self, config: OperatorConfig) -> anyhow::Result<ReloadReport> {
        let old = &self.config.service;
        anyhow::ensure!(
            config.service.database.same_database(&old.database),
            "{}: [service.database] changed from the {} to the {}; the state database cannot change without a restart",
            config.source.display(),
            old.database,
            config.service.database
        );
        anyhow::ensure!(
            config.service.audit.path == old.audit.path,
            "{}: [service.audit] `path` changed from {} to {}; the audit trail cannot change without a restart",
            config.source.display(),
            old.audit.path.display(),
            config.service.audit.path.display()
        );
        self.core.drain_followers().await;
        let (gate, runtime, loaded) = crate::load_rules(&config, &self.core.store).await?;

        let report = self.compare(&config, &loaded);
        for plugin in &loaded {
            if let Some(previous) = self.plugin(&plugin.policy.name) {
                plugin.keep_schedule_of(previous);
            }
        }
        self.core = Arc::new(self.core.under(gate, config.policy.approvals.expiry_secs));
        self.backfill
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .extend(report.added.iter().cloned());
        self.runtime = runtime;
        self.plugins = loaded;
        self.config = config;
        Ok(report)
    }

    fn plugin(&self, name: &PluginName) -> Option<&ServicePlugin> {
        self.plugins
            .iter()
            .find(|p| &p.policy.name == name)
            .map(Arc::as_ref)
    }

    fn compare(&self, config: &OperatorConfig, loaded: &[Arc<ServicePlugin>]) -> ReloadReport {
        let mut report = ReloadReport::default();
        for plugin in loaded {
            let name = plugin.policy.name.clone();
            match self.plugin(&name) {
                None => report.added.push(name),
                Some(previous)
                    if previous.config == plugin.config && previous.info == plugin.info =>
                {
                    report.unchanged.push(name)
                }
                Some(_) => report.changed.push(name),
            }
        }
        report.removed = self
            .plugins
            .iter()
            .map(|p| p.policy.name.clone())
            .filter(|name| !loaded.iter().any(|p| &p.policy.name == name))
            .collect();
        let (old, new) = (&self.config.service, &config.service);
        if old.server != new.server {
            report.need_restart.push("[service.server]");
        }
        if old.database != new.database {
            // The same database (a reload that moves it is refused) with another password
            // or lease timing.
            report.need_restart.push("[service.database]");
        }
        if old.follow != new.follow {
            report.need_restart.push("[service.follow]");
        }
        // The plugins' engine, its instance pool included, lives as long as the service.
        if old.keep_resident_bytes != new.keep_resident_bytes {
            report.need_restart.push("keep_resident_bytes");
        }
        if old.metrics_listen != new.metrics_listen {
            report.need_restart.push("metrics_listen");
        }
        if old.syslog != new.syslog {
            report.need_restart.push("[service.syslog]");
        }
        // The trail stays open with the key and fsync policy it was opened with.
        if old.audit.key_file != new.audit.key_file || old.audit.fsync != new.audit.fsync {
            report.need_restart.push("[service.audit]");
        }
        if old.audit.export != new.audit.export {
            report.need_restart.push("[service.audit.export]");
        }
        // The notifier's queues and tasks live as long as the service.
        if self.config.notifications != config.notifications {
            report.need_restart.push("[notifications]");
        }
        report
    }
}
