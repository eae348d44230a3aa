//! The detection-to-remediation service: polls the server, runs the subscribed plugins on
//! every new or changed Malop, and carries out each allowed action exactly once (G4, G6, G8).
//!
//! One cycle:
//! 1. settle approvals: expire the overdue, execute the approved (gate re-checked);
//! 2. settle actions a crash left unresolved (checked on the server before any resend);
//! 3. per element kind, fetch the Malops updated since the watermark minus the overlap
//!    window (server clock), skip those each plugin already handled at that update time,
//!    fetch details once (several Malops at a time), and invoke the subscribed plugins with
//!    bounded concurrency as each Malop's details arrive;
//! 4. record the Malops handled in groups (one durable commit per group of finished
//!    invocations, after an audit barrier), see [`Service::evaluate_batch`];
//! 5. advance the watermark to the newest update seen, but never past a Malop whose
//!    details could not be fetched, so no Malop is skipped;
//! 6. run the interval hooks that are due.

mod audit;
pub mod demo;
mod executor;
mod gated;
mod health;
mod plugins;

pub use audit::Auditor;
pub use executor::{FollowPolicy, now_ms};
pub use plugins::{ServicePlugin, limits_of, runtime_config};

use crate::client::Client;
use crate::config::OperatorConfig;
use crate::domain::{ActionRequest, ElementKind, Malop, MalopId, TimestampMs};
use crate::policy::{Gate, TargetFacts};
use crate::runtime::{CallContext, Entry, InvocationReport, Outcome, PluginHost, Runtime};
use crate::store::{ActionRecord, ActionState, Backoff, Handled, NewAction, Store};
use anyhow::Context;
use executor::{Executor, PylumDirectory, pylum_directory};
use futures::{Stream, StreamExt};
use gated::{Core, GatedHost};
use health::HealthBook;
use serde::Serialize;
use std::sync::Arc;

/// The most handled marks one group commit holds: a crash before the commit offers at most
/// this many (plugin, Malop) pairs again (their actions are answered from the ledger).
const MARK_GROUP_MAX: usize = 64;

/// What one cycle did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CycleReport {
    /// Malops fetched from the server this cycle.
    pub malops_seen: usize,
    /// Plugin invocations run.
    pub invocations: usize,
    /// Invocations stopped by the sandbox.
    pub traps: usize,
    /// Malops whose details could not be fetched (retried next cycle).
    pub deferred: usize,
    /// Approved actions executed.
    pub approvals_executed: usize,
    /// Unresolved actions settled.
    pub recovered: usize,
}

/// One `on-malop` invocation and whether its Malop may be recorded handled.
struct MalopRun {
    report: InvocationReport,
    handled: bool,
}

/// What a batch of evaluations did ([`Service::evaluate_batch`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchReport {
    /// Plugin invocations run.
    pub invocations: usize,
    /// Invocations that completed (the plugin returned, with or without an error of its
    /// own): their Malops are recorded handled.
    pub handled: usize,
    /// Invocations stopped by the sandbox.
    pub traps: usize,
    /// Last update times of the Malops a plugin still owes: it trapped on them, or was
    /// paused before their turn. The watermark must stay below them.
    pub owed: Vec<TimestampMs>,
}

/// The running service.
pub struct Service {
    config: OperatorConfig,
    runtime: Arc<Runtime>,
    plugins: Vec<Arc<ServicePlugin>>,
    core: Arc<Core>,
    backoff: Backoff,
    /// Each plugin's health as this process knows it (see [`HealthBook`]).
    health: HealthBook,
}

impl Service {
    /// Opens the state and the audit trail, loads and checks every plugin (pins, world),
    /// and asks each to describe itself.
    pub async fn start(
        config: OperatorConfig,
        client: Arc<Client>,
        follow: FollowPolicy,
    ) -> anyhow::Result<Self> {
        let store = Arc::new(Store::open(&config.service.database)?);
        let sink =
            crate::audit::AuditSink::open(&config.service.audit.path, config.service.audit.fsync)
                .with_context(|| {
                format!(
                    "opening the audit trail {}",
                    config.service.audit.path.display()
                )
            })?;
        let auditor = Arc::new(Auditor::new(sink));
        let gate = Gate::new(&config, store.clone())?;
        let runtime = Arc::new(Runtime::new(plugins::runtime_config(&config))?);
        let cache_dir = config.service.database.with_extension("artifacts");
        let plugins = plugins::load_all(&runtime, &config, &cache_dir).await?;
        let core = Arc::new(Core {
            gate,
            store: store.clone(),
            auditor: auditor.clone(),
            executor: Executor::new(client.clone(), store, auditor.clone(), follow),
            client,
            approval_expiry_secs: config.approvals.expiry_secs,
            kv_limit_bytes: 1 << 20,
            followers: Default::default(),
        });
        for plugin in &plugins {
            auditor.plugin_event(&plugin.policy.name, Some(plugin.digest), "plugin-loaded", serde_json::json!({
                "version": plugin.info.version, "mode": plugin.config.mode, "subscription": plugin.info.subscription,
            }));
        }
        Ok(Self {
            config,
            runtime,
            plugins,
            core,
            backoff: Backoff::default(),
            health: HealthBook::default(),
        })
    }

    /// The loaded plugins.
    pub fn plugins(&self) -> &[Arc<ServicePlugin>] {
        &self.plugins
    }

    /// The state store.
    pub fn store(&self) -> &Arc<Store> {
        &self.core.store
    }

    /// The policy gate (for budget status).
    pub fn gate(&self) -> &Gate {
        &self.core.gate
    }

    /// Flushes the audit trail to disk.
    pub fn sync_audit(&self) -> anyhow::Result<()> {
        self.core
            .auditor
            .sink()
            .sync()
            .context("syncing the audit trail")
    }

    /// Runs one full cycle (see the module docs).
    pub async fn run_cycle(&self) -> anyhow::Result<CycleReport> {
        let mut report = CycleReport {
            approvals_executed: self.settle_approvals().await?,
            recovered: self.recover().await?,
            ..CycleReport::default()
        };
        for kind in ElementKind::ALL {
            self.poll_kind(kind, &mut report).await?;
        }
        self.run_due_intervals(&mut report).await;
        self.core.drain_followers().await;
        crate::metrics::global().cycle();
        crate::metrics::global().update_budgets(self);
        self.core
            .auditor
            .service_event("poll-cycle", serde_json::to_value(&report)?);
        self.core
            .auditor
            .barrier()
            .context("forcing the audit trail to disk at the end of the cycle")?;
        Ok(report)
    }

    async fn poll_kind(&self, kind: ElementKind, report: &mut CycleReport) -> anyhow::Result<()> {
        let store = &self.core.store;
        let source = format!("crimes/unified:{}", kind.as_api());
        let watermark = store.watermark(&source)?.unwrap_or(0);
        let overlap_ms = (self.config.service.overlap_window_secs as i64) * 1000;
        let since = (watermark - overlap_ms).max(0);
        let polled = std::time::Instant::now();
        let malops = self.core.client.malops_updated_since(kind, since).await;
        crate::metrics::global().poll(&source, polled.elapsed(), malops.is_ok());
        let malops = malops
            .with_context(|| format!("polling {} Malops updated since {since}", kind.as_api()))?;
        report.malops_seen += malops.len();
        let mut newest = watermark;
        // The oldest update some subscribed plugin still owes (details unavailable, plugin
        // paused or trapped): the watermark stays below it, so the Malop is offered again.
        let mut owed: Option<i64> = None;
        let mut hold = |t: i64| owed = Some(owed.map_or(t, |o: i64| o.min(t)));
        let mut wanted = Vec::new();
        for malop in malops {
            newest = newest.max(malop.last_update_time);
            let (runnable, paused) = self.plugins_owing(&malop)?;
            if paused {
                hold(malop.last_update_time);
            }
            if !runnable.is_empty() {
                wanted.push((malop, runnable));
            }
        }
        let mut unavailable = Vec::new();
        let work = futures::stream::iter(wanted)
            .map(|(malop, runnable)| {
                // Each fetch runs as its own task: it goes on while the invocations downstream
                // are busy and this stream is not polled, so it cannot time out waiting.
                let fetch = tokio::spawn(fetch_details(self.core.client.clone(), malop.id.clone()));
                async move {
                    let details = fetch.await.unwrap_or_else(|e| {
                        Err(anyhow::anyhow!("the details fetch task failed: {e}"))
                    });
                    (malop, runnable, details)
                }
            })
            .buffer_unordered(self.config.service.max_detail_fetches.max(1))
            .flat_map(|(malop, runnable, details)| {
                let work: Vec<_> = match details {
                    Ok(detailed) => {
                        let detailed = Arc::new(detailed);
                        runnable
                            .into_iter()
                            .map(|p| (p, detailed.clone()))
                            .collect()
                    }
                    Err(error) => {
                        tracing::warn!(malop = %malop.id, "details unavailable, retrying next cycle: {error}");
                        unavailable.push(malop.last_update_time);
                        Vec::new()
                    }
                };
                futures::stream::iter(work)
            });
        let batch = self.evaluate_batch(work).await;
        report.deferred += unavailable.len();
        report.invocations += batch.invocations;
        report.traps += batch.traps;
        unavailable
            .into_iter()
            .chain(batch.owed)
            .for_each(&mut hold);
        let safe = owed.map_or(newest, |t| newest.min(t - 1));
        store.set_watermark(&source, safe, now_ms())?;
        Ok(())
    }

    /// Runs every (plugin, Malop) pair of `work`, `max_concurrency` at a time, each in a
    /// fresh sandbox, audited; records each Malop handled by its plugin once its invocation
    /// completed. The handled marks are group-committed: the marks of the invocations that
    /// finished together (at most [`MARK_GROUP_MAX`]) go into one durable transaction, after
    /// an audit barrier, so that a Malop recorded handled always has its audit records on
    /// disk. A crash before the commit only offers those Malops again; whatever their
    /// plugins asked for is then answered from the action ledger, never sent twice.
    pub async fn evaluate_batch(
        &self,
        work: impl Stream<Item = (Arc<ServicePlugin>, Arc<Malop>)>,
    ) -> BatchReport {
        let concurrency = self.config.service.max_concurrency.max(1);
        let done = work
            .map(|(plugin, malop)| async move {
                // A plugin paused by its traps earlier in this batch is offered no more
                // Malops (they are not marked handled, so they wait for the pause to end).
                let run = if self.is_paused(&plugin) {
                    None
                } else {
                    Some(self.run_on_malop(&plugin, &malop).await)
                };
                (plugin, malop, run)
            })
            .buffer_unordered(concurrency)
            .ready_chunks(MARK_GROUP_MAX);
        let mut done = std::pin::pin!(done);
        let mut report = BatchReport::default();
        while let Some(group) = done.next().await {
            let mut marks = Vec::with_capacity(group.len());
            for (plugin, malop, run) in group {
                let Some(run) = run else {
                    report.owed.push(malop.last_update_time);
                    continue;
                };
                report.invocations += 1;
                report.traps += usize::from(run.report.outcome.is_trap());
                if run.handled {
                    marks.push(Handled {
                        plugin: plugin.policy.name.clone(),
                        malop_id: malop.id.clone(),
                        last_update_ms: malop.last_update_time,
                    });
                } else {
                    // A trap, or its health could not be recorded: offered again.
                    report.owed.push(malop.last_update_time);
                }
            }
            // A Malop is recorded handled only once its invocation's audit is on disk.
            let recorded = match self.core.auditor.barrier() {
                Ok(()) => self
                    .core
                    .store
                    .mark_handled_all(&marks, now_ms())
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match recorded {
                Ok(()) => report.handled += marks.len(),
                Err(e) => {
                    // Offered again next cycle; the ledger answers what they asked for.
                    tracing::error!("recording {} Malops handled: {e}", marks.len());
                    report.owed.extend(marks.iter().map(|m| m.last_update_ms));
                }
            }
        }
        report
    }

    /// The plugins subscribed to `malop` that have not handled it at its latest update and
    /// can run now, and whether any such plugin is paused.
    fn plugins_owing(&self, malop: &Malop) -> anyhow::Result<(Vec<Arc<ServicePlugin>>, bool)> {
        let now = now_ms();
        let mut runnable = Vec::new();
        let mut paused = false;
        for plugin in &self.plugins {
            let name = &plugin.policy.name;
            if !plugin.info.subscription.matches(malop)
                || self
                    .core
                    .store
                    .is_handled(name, &malop.id, malop.last_update_time)?
            {
                continue;
            }
            if !self.health.known_healthy(name)
                && self.core.store.paused_until(name.as_str(), now)?.is_some()
            {
                paused = true;
            } else {
                runnable.push(plugin.clone());
            }
        }
        Ok((runnable, paused))
    }

    /// Runs `on-malop` of one plugin in a fresh sandbox, audits how it ended, and records it
    /// handled (or counts the trap towards pausing the plugin).
    pub async fn invoke_on_malop(&self, plugin: &ServicePlugin, malop: &Malop) -> InvocationReport {
        let run = self.run_on_malop(plugin, malop).await;
        if run.handled && self.core.auditor.barrier().is_ok() {
            let store = &self.core.store;
            if let Err(e) = store.mark_handled(
                &plugin.policy.name,
                &malop.id,
                malop.last_update_time,
                now_ms(),
            ) {
                tracing::error!(plugin = %plugin.policy.name, "recording the Malop handled: {e}");
            }
        }
        run.report
    }

    /// One `on-malop` invocation with its effect on the plugin's health recorded; `handled`
    /// when the Malop may be recorded handled by it.
    async fn run_on_malop(&self, plugin: &ServicePlugin, malop: &Malop) -> MalopRun {
        let traps_before = self.health.traps(&plugin.policy.name);
        let call = CallContext::for_malop(plugin.identity(), malop, plugin.values.clone());
        let report = self
            .invoke(plugin, call, Entry::Malop(malop), Some(malop))
            .await;
        let handled = !report.outcome.is_trap() && self.clean_run(plugin, traps_before);
        MalopRun { report, handled }
    }

    /// One sandboxed invocation through the gated host, audited, with its effect on the
    /// plugin's health recorded (the caller records the Malop handled).
    async fn invoke(
        &self,
        plugin: &ServicePlugin,
        call: CallContext,
        entry: Entry<'_>,
        malop: Option<&Malop>,
    ) -> InvocationReport {
        let host = GatedHost::new(
            self.core.clone(),
            plugin.policy.clone(),
            plugin.digest,
            malop.cloned(),
        );
        let report = self
            .runtime
            .invoke(
                &plugin.loaded,
                &plugin.limits,
                Arc::new(host) as Arc<dyn PluginHost>,
                call.clone(),
                entry,
            )
            .await;
        let export = match entry {
            Entry::Malop(_) => "on-malop",
            Entry::Interval(_) => "on-interval",
        };
        self.core.auditor.invocation(&call, export, &report);
        if let Outcome::Stopped { reason } = &report.outcome {
            self.record_trap(plugin, reason);
        }
        report
    }

    /// Counts a trap towards pausing `plugin`, and audits the pause if it starts one.
    fn record_trap(&self, plugin: &ServicePlugin, reason: &impl std::fmt::Display) {
        let name = plugin.policy.name.as_str();
        // The trap's audit record reaches the disk before the trap count it explains (a
        // failure is logged; the trap still counts).
        let _ = self.core.auditor.barrier();
        let recorded = self.health.trap(&plugin.policy.name, || {
            self.core.store.record_trap(name, now_ms(), &self.backoff)
        });
        match recorded {
            Ok(pause) => {
                if let Some(until) = pause.paused_until_ms {
                    tracing::warn!(
                        plugin = name,
                        until,
                        "paused after {} traps in a row: {reason}",
                        pause.consecutive_traps
                    );
                    self.core.auditor.plugin_event(&plugin.policy.name, Some(plugin.digest), "plugin-paused", serde_json::json!({
                        "consecutive_traps": pause.consecutive_traps, "paused_until_ms": until, "last_reason": reason.to_string(),
                    }));
                }
            }
            Err(e) => tracing::error!(plugin = name, "recording the trap: {e}"),
        }
    }

    /// After a clean run of `plugin` that began when this process had recorded
    /// `traps_before` of its traps: resets its count of traps in a row and any pause (see
    /// [`HealthBook::clean_run`]). `false` if that failed.
    fn clean_run(&self, plugin: &ServicePlugin, traps_before: u64) -> bool {
        let name = &plugin.policy.name;
        let reset = self.health.clean_run(name, traps_before, || {
            self.core.store.record_success(name.as_str())
        });
        if let Err(e) = &reset {
            tracing::error!(plugin = %name, "recording the invocation: {e}");
        }
        reset.is_ok()
    }

    /// Whether `plugin` is paused now (a store read only when its health is not known).
    fn is_paused(&self, plugin: &ServicePlugin) -> bool {
        let name = &plugin.policy.name;
        !self.health.known_healthy(name)
            && matches!(
                self.core.store.paused_until(name.as_str(), now_ms()),
                Ok(Some(_))
            )
    }

    async fn run_due_intervals(&self, report: &mut CycleReport) {
        let now = now_ms();
        for plugin in &self.plugins {
            if !plugin.interval_due(now) {
                continue;
            }
            let traps_before = self.health.traps(&plugin.policy.name);
            let call = CallContext::for_interval(plugin.identity(), now, plugin.values.clone());
            let outcome = self.invoke(plugin, call, Entry::Interval(now), None).await;
            if !outcome.outcome.is_trap() {
                self.clean_run(plugin, traps_before);
            }
            report.invocations += 1;
            report.traps += usize::from(outcome.outcome.is_trap());
        }
    }

    /// Expires overdue approvals and executes approved actions, each exactly once.
    async fn settle_approvals(&self) -> anyhow::Result<usize> {
        let store = &self.core.store;
        let now = now_ms();
        for id in store.expire_due(now)? {
            let record = store.get_action(&id)?;
            self.core
                .auditor
                .operator_event("approval-expired", &record, "riposte", None);
        }
        let claimed = store.claim_approved(now)?;
        for record in &claimed {
            self.execute_approved(record).await?;
        }
        Ok(claimed.len())
    }

    async fn execute_approved(&self, record: &ActionRecord) -> anyhow::Result<()> {
        let Some(plugin) = self.plugin_named(&record.plugin) else {
            self.core.store.finish(
                &record.id,
                crate::store::Outcome::Failed,
                Some("the plugin is no longer configured"),
                now_ms(),
            )?;
            return Ok(());
        };
        let (facts, pylums) = self.machine_facts(record.malop_id.as_ref()).await;
        let decision =
            self.core
                .gate
                .decide_approved(&plugin.policy, &record.request, &facts, now_ms());
        self.core.auditor.operator_event(
            "approved-action",
            record,
            "operator",
            Some(decision.to_record()),
        );
        if let Some(error) = decision.call_error() {
            self.core.store.finish(
                &record.id,
                crate::store::Outcome::Failed,
                Some(&error.to_string()),
                now_ms(),
            )?;
            return Ok(());
        }
        self.core.executor.execute(record, &pylums).await;
        Ok(())
    }

    /// Settles actions a crash or an unknown outcome left unresolved.
    async fn recover(&self) -> anyhow::Result<usize> {
        let unresolved = self.core.store.unresolved_actions()?;
        for record in &unresolved {
            // Only an isolation needs its machines' sensor ids: no details fetch otherwise.
            let pylums = match record.request {
                ActionRequest::Isolate { .. } | ActionRequest::Unisolate { .. } => {
                    self.machine_facts(record.malop_id.as_ref()).await.1
                }
                _ => PylumDirectory::default(),
            };
            let state = self.core.executor.reconcile(record, &pylums).await;
            tracing::info!(action = %record.id, from = record.state.as_str(), to = state.as_str(), "settled an unresolved action");
        }
        Ok(unresolved.len())
    }

    /// Applies the recorded inverse of an executed action, through the gate and the audit.
    pub async fn undo(&self, action: &str, by: &str) -> anyhow::Result<ActionRecord> {
        let store = &self.core.store;
        let id = store.resolve_action_id(action)?;
        let original = store.get_action(&id)?;
        let undo = store
            .get_undo(&id)?
            .with_context(|| format!("action {id} has no recorded inverse (it was not executed, or its kind cannot be undone)"))?;
        // Refused before the gate: a second undo must neither spend budget nor be audited
        // as an undo.
        if let Some(at) = undo.undone_at_ms {
            anyhow::bail!(
                "action {id} was already undone (at {at} ms by {}, undo action {})",
                undo.undone_by.as_deref().unwrap_or("?"),
                undo.undo_action_id.as_ref().map_or("?", |a| a.as_str())
            );
        }
        let plugin = self.plugin_named(&original.plugin).with_context(|| {
            format!(
                "plugin {} of action {id} is no longer configured",
                original.plugin
            )
        })?;
        let new = NewAction::undo(
            &original,
            undo.inverse.clone(),
            format!("undo of {id} requested by {by}"),
        );
        let (facts, pylums) = self.machine_facts(original.malop_id.as_ref()).await;
        let decision =
            self.core
                .gate
                .decide_approved(&plugin.policy, &new.request, &facts, now_ms());
        self.core
            .auditor
            .operator_event("undo", &original, by, Some(decision.to_record()));
        if let Some(error) = decision.call_error() {
            anyhow::bail!("the gate refused the undo of {id}: {error}");
        }
        let begun = store.begin_action(&new, now_ms())?;
        let record = store.get_action(begun.action_id())?;
        let state = match record.state {
            ActionState::Planned => self.core.executor.execute(&record, &pylums).await,
            other => other,
        };
        if state == ActionState::Succeeded {
            store.mark_undone(&id, &record.id, by, now_ms())?;
        }
        Ok(store.get_action(&record.id)?)
    }

    fn plugin_named(&self, name: &crate::domain::PluginName) -> Option<&Arc<ServicePlugin>> {
        self.plugins.iter().find(|p| &p.policy.name == name)
    }

    /// Machine names (for protection) and sensor ids (for isolation) of a Malop's machines.
    async fn machine_facts(&self, malop: Option<&MalopId>) -> (TargetFacts, PylumDirectory) {
        let Some(id) = malop else {
            return Default::default();
        };
        match self.core.client.get_malop_details(id).await {
            Ok(malop) => (TargetFacts::from_malop(&malop), pylum_directory(&malop)),
            Err(error) => {
                tracing::warn!(malop = %id, "details unavailable; protection rules fail closed: {error}");
                Default::default()
            }
        }
    }
}

/// A Malop in full detail, for the poller.
async fn fetch_details(client: Arc<Client>, id: MalopId) -> anyhow::Result<Malop> {
    Ok(client.get_malop_details(&id).await?)
}
