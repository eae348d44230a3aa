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
//!
//! Between cycles, [`Service::evaluate_hinted`] evaluates the Malops a syslog event named,
//! read by id, under the same handled marks, ledger and audit as steps 3 and 4.

mod activity;
mod audit;
pub mod config;
pub mod containment;
mod db;
pub mod decisions;
mod executor;
mod fleet;
mod gated;
mod health;
pub mod hints;
mod isolation;
mod notify;
mod owing;
mod plugins;
mod reload;

pub use audit::Auditor;
pub use config::{FollowConfig, OperatorConfig, PluginConfig, PluginFileError, ServiceConfig};
pub use db::open_store;
pub use executor::FollowPolicy;
pub use fleet::{FleetSettings, HOST_ID_ENV, Membership, POLLER_LEASE, Role, default_host_id};
pub use plugins::{ServicePlugin, runtime_config};
pub use reload::ReloadReport;

use anyhow::Context;
use executor::{Executor, PylumDirectory, pylum_directory};
use futures::future::{FusedFuture, FutureExt};
use futures::{Stream, StreamExt};
use gated::{Core, GatedHost};
use health::HealthBook;
use owing::{MarkAnswer, MarkQuestion, Owing};
use riposte_client::{Client, SensorBatch};
use riposte_domain::{
    ActionRequest, ElementKind, Malop, MalopId, MalopPart, PluginName, TimestampMs, now_ms,
};
use riposte_metrics::Metrics;
use riposte_policy::{Gate, TargetFacts};
use riposte_runtime::{CallContext, Entry, InvocationReport, Outcome, PluginHost, Runtime};
use riposte_store::prelude::*;
use riposte_store::{ActionRecord, ActionState, Backoff, Handled, NewAction, Store};
use serde::Serialize;
use serde_json::json;
use std::sync::Arc;

/// The most handled marks one group commit holds: a crash before the commit offers at most
/// this many (plugin, Malop) pairs again (their actions are answered from the ledger).
const MARK_GROUP_MAX: usize = 64;
/// Malops whose machines' sensors one `sensors/query` reads (see [`SensorBatch`]).
const SENSOR_BATCH_MALOPS: usize = 200;

/// The longest pause before an incomplete Malop is read again.
const REREAD_MAX_MS: i64 = 3_600_000;
/// How long an incomplete Malop is read again before it is given up (a day).
const REREAD_GIVE_UP_MS: i64 = 86_400_000;
/// How long a stopping service gives its webhooks to receive the notifications still queued
/// ([`Service::close`]); what is left then is dropped, and counted in the log.
pub const NOTIFY_FLUSH_GRACE: std::time::Duration = std::time::Duration::from_secs(5);
/// The most incomplete Malops read again in one cycle.
const REREAD_PER_CYCLE: usize = 64;
/// The most of a part's error an audit record keeps.
const PART_ERROR_MAX_CHARS: usize = 300;

/// What one cycle did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CycleReport {
    /// Malops fetched from the server this cycle.
    pub malops_seen: usize,
    /// Malops offered with parts that could not be read (see [`riposte_domain::MalopPart`]).
    pub incomplete: usize,
    /// Incomplete Malops read again (outside the poll) this cycle.
    pub reread: usize,
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
    /// Time-boxed actions reverted at their deadline.
    pub reverted: usize,
}

/// A Malop as read for its plugins.
#[derive(Clone, Debug)]
pub struct ReadMalop {
    /// The Malop.
    pub malop: Malop,
    /// When its machines' isolation and connection state was read from the server (this
    /// host's monotonic clock, so that a step of the wall clock cannot reorder it with an
    /// isolation); none when its sensors were not read. The isolations this host made after
    /// it are shown to its plugins in place of that older answer.
    pub machines_read: Option<std::time::Instant>,
}

impl From<Malop> for ReadMalop {
    /// A Malop whose sensors were not read (or whose state is not to be laid over).
    fn from(malop: Malop) -> Self {
        Self {
            malop,
            machines_read: None,
        }
    }
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

impl BatchReport {
    /// Counts one finished (plugin, Malop) pair, and adds its handled mark to `marks` when
    /// its invocation completed (`run` is `None` when the plugin was paused before).
    fn count(
        &mut self,
        plugin: &ServicePlugin,
        malop: &Malop,
        run: Option<MalopRun>,
        marks: &mut Vec<Handled>,
    ) {
        let Some(run) = run else {
            self.owed.push(malop.last_update_time);
            return;
        };
        self.invocations += 1;
        self.traps += usize::from(run.report.outcome.is_trap());
        if run.handled {
            marks.push(handled_mark(plugin, malop));
        } else {
            // A trap, a host failure, or its health could not be recorded: offered again.
            self.owed.push(malop.last_update_time);
        }
    }
}

/// The handled mark of `plugin` on this view of `malop`.
fn handled_mark(plugin: &ServicePlugin, malop: &Malop) -> Handled {
    Handled {
        plugin: plugin.policy.name.clone(),
        malop_id: malop.id.clone(),
        last_update_ms: malop.last_update_time,
        unreadable: malop.unreadable.clone(),
    }
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
    /// Plugins added by a reload that have not yet been offered the Malops polled before
    /// they came (see [`Service::backfill`]).
    backfill: std::sync::Mutex<Vec<PluginName>>,
    /// Actions that finished before this time (ms) were checked for a time limit (see
    /// [`Service::settle_time_boxes`]); this process's start at first.
    boxes_checked_until: std::sync::Mutex<i64>,
    /// Where the cycle's counters and gauges go (the caller serves them).
    metrics: Arc<Metrics>,
    /// This host's place in the fleet sharing the database: whether it acts.
    membership: Arc<Membership>,
}

impl Service {
    /// Opens the state and the audit trail, loads and checks every plugin (pins, world),
    /// and asks each to describe itself. What it does is counted into `metrics`.
    pub async fn start(
        config: OperatorConfig,
        client: Arc<Client>,
        follow: FollowPolicy,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Self> {
        let database = config.service.database.clone();
        let store = Arc::new(
            tokio::task::spawn_blocking(move || db::open_store(&database))
                .await
                .context("opening the state database")??,
        );
        let sink = config.service.audit.open_sink().with_context(|| {
            format!(
                "opening the audit trail {}",
                config.service.audit.path.display()
            )
        })?;
        let auditor = Arc::new(Auditor::new(sink, metrics.clone()));
        let membership = Membership::new(store.clone(), fleet_settings(&config), metrics.clone());
        membership.beat().await;
        let (gate, runtime, plugins) = load_rules(&config, &store).await?;
        // Links to the console come once the binary serves it (`Notifier::link_to`).
        let notifier = riposte_notify::Notifier::start(&config.notifications, None)
            .context("starting the notifications")?;
        // Read at every scrape of the metrics endpoint (`riposte_notifications_*`).
        metrics.watch_notifications(notifier.stats_reader());
        let core = Arc::new(Core {
            gate,
            store: store.clone(),
            auditor: auditor.clone(),
            executor: Executor::new(
                client.clone(),
                store,
                auditor.clone(),
                follow,
                membership.clone(),
                notifier.clone(),
            ),
            client,
            approval_expiry_secs: config.policy.approvals.expiry_secs,
            kv_limit_bytes: riposte_domain::bounds::MAX_KV_BYTES_PER_PLUGIN,
            quotas: Arc::new(riposte_policy::QuotaBook::new()),
            followers: Default::default(),
            notifier,
        });
        let service = Self {
            config,
            runtime,
            plugins,
            core,
            backoff: Backoff::default(),
            health: HealthBook::default(),
            backfill: Default::default(),
            boxes_checked_until: std::sync::Mutex::new(now_ms()),
            metrics,
            membership,
        };
        service.audit_loaded(|_| true);
        Ok(service)
    }

    /// Audits `plugin-loaded` for each loaded plugin `which` selects.
    fn audit_loaded(&self, which: impl Fn(&PluginName) -> bool) {
        for plugin in self.plugins.iter().filter(|p| which(&p.policy.name)) {
            self.core.auditor.plugin_event(
                &plugin.policy.name,
                Some(plugin.digest),
                "plugin-loaded",
                plugin.loaded_event(),
            );
        }
    }

    /// The budgets left of every plugin and the global ones, now (read on the blocking
    /// pool: the gate counts charges in the store).
    async fn budgets_left(&self) -> Vec<riposte_policy::BudgetStatus> {
        let (core, plugins) = (self.core.clone(), self.plugins.clone());
        tokio::task::spawn_blocking(move || budgets_left(&core.gate, &plugins))
            .await
            .unwrap_or_else(|e| {
                tracing::warn!("budget status for metrics: {e}");
                Vec::new()
            })
    }

    /// The configuration the service runs under (the last one reloaded).
    pub fn config(&self) -> &OperatorConfig {
        &self.config
    }

    /// The loaded plugins.
    pub fn plugins(&self) -> &[Arc<ServicePlugin>] {
        &self.plugins
    }

    /// This host's place among the hosts sharing the database: the caller keeps its
    /// heartbeat going ([`Membership::spawn`]) and runs cycles only while it may act.
    pub fn membership(&self) -> &Arc<Membership> {
        &self.membership
    }

    /// Where the service's notifications go (webhooks, `[notifications]`): for events the
    /// service does not raise itself, such as a time-boxed containment about to revert.
    pub fn notifier(&self) -> &riposte_notify::Notifier {
        &self.core.notifier
    }

    /// For a stopping service, once nothing else runs: records the plugins' activity
    /// counted since the last cycle, delivers the notifications still queued for at most
    /// [`NOTIFY_FLUSH_GRACE`] (what is left then is dropped and logged as a count per
    /// webhook, never its URL, and returned), and syncs the audit trail.
    pub async fn close(&self) -> anyhow::Result<riposte_notify::Flushed> {
        self.write_activity().await;
        let flushed = self.core.notifier.shutdown(NOTIFY_FLUSH_GRACE).await;
        self.sync_audit()?;
        Ok(flushed)
    }

    /// The state store.
    pub fn store(&self) -> &Arc<Store> {
        &self.core.store
    }

    /// The policy gate (for budget status).
    pub fn gate(&self) -> &Gate {
        &self.core.gate
    }

    /// The service's audit trail writer: the console records its actions through it, so
    /// one process keeps one chain.
    pub fn auditor(&self) -> &Arc<Auditor> {
        &self.core.auditor
    }

    /// The seq of the last record this service appended to its audit trail; changes with
    /// every append (the SIEM exporter wakes on it).
    pub fn audit_appended(&self) -> tokio::sync::watch::Receiver<u64> {
        self.core.auditor.sink().subscribe()
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
        let started = now_ms();
        let mut report = CycleReport {
            approvals_executed: self.settle_approvals().await?,
            recovered: self.recover().await?,
            ..CycleReport::default()
        };
        // What the cycle owes whatever the server's listing did (interval invocations, the
        // remediations followed, the isolations whose time is up) runs even when reading
        // Malops failed; that failure is the cycle's error afterwards.
        let read = async {
            for kind in ElementKind::ALL {
                self.poll_kind(kind, None, &mut report).await?;
            }
            self.backfill(&mut report).await?;
            self.reread_incomplete(started, &mut report).await
        }
        .await;
        self.run_due_intervals(&mut report).await;
        self.core.drain_followers().await;
        let settled = self.settle_time_boxes().await;
        self.write_activity().await;
        if let (Err(_), Err(e)) = (&read, &settled) {
            tracing::error!("settling the time-boxed isolations: {e:#}");
        }
        read?;
        report.reverted = settled?.reverted;
        self.metrics.cycle();
        self.metrics.set_budgets(&self.budgets_left().await);
        self.core
            .auditor
            .service_event("poll-cycle", serde_json::to_value(&report)?);
        self.core
            .auditor
            .barrier()
            .context("forcing the audit trail to disk at the end of the cycle")?;
        Ok(report)
    }

    /// Adds the plugins' activity counted since the last call to the store's hourly rows
    /// (and prunes the hours past [`activity::ACTIVITY_RETENTION_MS`]). A failed write is
    /// logged and its counts kept for the next call (a write that failed only as the client
    /// saw it counts twice: these are statistics, not a ledger).
    async fn write_activity(&self) {
        let book = self.core.auditor.activity();
        let counts = book.take();
        if counts.is_empty() {
            return;
        }
        let now = now_ms();
        let written = counts.clone();
        let write = db::blocking(&self.core.store, "add_activity", move |s| {
            s.add_activity(&written, now - activity::ACTIVITY_RETENTION_MS)
        });
        if let Err(e) = write.await {
            tracing::warn!("recording the plugins' activity (kept for the next cycle): {e:#}");
            book.put_back(counts, now);
        }
    }

    /// Offers the plugins a reload added every Malop polled before they came, as a first
    /// start offers every plugin the whole history: one pass from the beginning, for them
    /// alone (the others handled those Malops already), leaving the watermarks alone. A
    /// plugin stays queued until a pass leaves it nothing owed.
    async fn backfill(&self, report: &mut CycleReport) -> anyhow::Result<()> {
        let added = self
            .backfill
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if added.is_empty() {
            return Ok(());
        }
        let mut settled = true;
        for kind in ElementKind::ALL {
            settled &= self.poll_kind(kind, Some(&added), report).await?;
        }
        if settled {
            self.backfill
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|name| !added.contains(name));
        }
        Ok(())
    }

    /// Polls the Malops of `kind` updated since the watermark and evaluates them; with
    /// `only`, every Malop for those plugins alone (a backfill), the watermark untouched.
    /// Returns whether nothing is left owed.
    async fn poll_kind(
        &self,
        kind: ElementKind,
        only: Option<&[PluginName]>,
        report: &mut CycleReport,
    ) -> anyhow::Result<bool> {
        let store = &self.core.store;
        let source = format!("crimes/unified:{}", kind.as_api());
        let watermark = {
            let source = source.clone();
            db::blocking(store, "watermark", move |s| s.watermark(&source)).await?
        }
        .unwrap_or(0);
        let overlap_ms = (self.config.service.overlap_window_secs as i64) * 1000;
        let since = match only {
            Some(_) => 0,
            None => (watermark - overlap_ms).max(0),
        };
        let polled = std::time::Instant::now();
        let listing = self.core.client.malop_listing(kind, since).await;
        self.metrics
            .poll(&source, polled.elapsed(), listing.is_ok());
        let listing = listing
            .with_context(|| format!("polling {} Malops updated since {since}", kind.as_api()))?;
        let malops = listing.malops;
        report.malops_seen += malops.len();
        let mut newest = watermark;
        // The oldest update some subscribed plugin still owes (details unavailable, plugin
        // paused or trapped): the watermark stays below it, so the Malop is offered again.
        let mut owed: Option<i64> = None;
        let mut hold = |t: i64| owed = Some(owed.map_or(t, |o: i64| o.min(t)));
        // An incomplete listing (a detection server did not answer, a window the server could
        // not narrow) says nothing of the Malops it lacks: what came is evaluated, and the
        // watermark stays where it was.
        if listing.incomplete {
            self.metrics.poll_incomplete(&source);
            hold(watermark.saturating_add(1));
        }
        let mut wanted = Vec::new();
        // In a backfill, another plugin's pause is no reason to list the whole history again.
        let mut backfilled_paused = false;
        if let Some(only) = only {
            for plugin in self
                .plugins
                .iter()
                .filter(|p| only.contains(&p.policy.name))
            {
                if self.is_paused(plugin).await {
                    backfilled_paused = true;
                    break;
                }
            }
        }
        let owing = self.plugins_owing(&malops).await?;
        for (malop, mut owing) in malops.into_iter().zip(owing) {
            newest = newest.max(malop.last_update_time);
            if let Some(only) = only {
                owing.runnable.retain(|p| only.contains(&p.policy.name));
                owing.paused &= backfilled_paused;
            }
            if owing.paused {
                hold(malop.last_update_time);
            }
            if !owing.runnable.is_empty() {
                wanted.push((malop, owing));
            }
        }
        self.evaluate_wanted(wanted, report)
            .await
            .into_iter()
            .for_each(&mut hold);
        if only.is_none() {
            let safe = owed.map_or(newest, |t| newest.min(t - 1));
            db::blocking(store, "set_watermark", move |s| {
                s.set_watermark(&source, safe, now_ms())
            })
            .await?;
        }
        Ok(owed.is_none())
    }

    /// Reads the parts of each wanted Malop that its subscribed plugins read (several
    /// Malops at a time, each as soon as it can; one sensors query per
    /// [`SENSOR_BATCH_MALOPS`] Malops), offers it to its runnable plugins that did not handle
    /// that view of it, and evaluates them ([`Service::evaluate_batch`]). Counts into
    /// `report`; returns the update times still owed (plugins trapped or paused, a read that
    /// failed outright), which the watermark must stay below.
    async fn evaluate_wanted(
        &self,
        wanted: Vec<(Malop, Owing)>,
        report: &mut CycleReport,
    ) -> Vec<TimestampMs> {
        let mut unavailable = Vec::new();
        let mut incomplete = 0;
        let mut batches = Vec::new();
        let mut wanted = wanted.into_iter().peekable();
        while wanted.peek().is_some() {
            batches.push(
                wanted
                    .by_ref()
                    .take(SENSOR_BATCH_MALOPS)
                    .collect::<Vec<_>>(),
            );
        }
        let work = futures::stream::iter(batches)
            .flat_map(|batch| {
                let sensors = SensorBatch::of(
                    batch
                        .iter()
                        .filter(|(_, owing)| owing.parts.contains(&MalopPart::Sensors))
                        .map(|(malop, _)| malop),
                );
                futures::stream::iter(batch.into_iter().map(move |w| (w, sensors.clone())))
            })
            .map(|((malop, owing), sensors)| {
                // Each read runs as its own task: it goes on while the invocations downstream
                // are busy and this stream is not polled, so it cannot time out waiting.
                let client = self.core.client.clone();
                let (update, id) = (malop.last_update_time, malop.id.clone());
                let Owing { runnable, parts, queued, .. } = owing;
                let read =
                    tokio::spawn(async move { client.read_parts(malop, &parts, &sensors).await });
                async move {
                    match read.await {
                        Ok(details) => {
                            let partial = !details.failures.is_empty();
                            (self.offer(details, runnable, queued).await, partial, None)
                        }
                        Err(error) => {
                            tracing::error!(malop = %id, "reading the Malop failed, retrying next cycle: {error}");
                            (Vec::new(), false, Some(update))
                        }
                    }
                }
            })
            .buffer_unordered(self.config.service.max_detail_fetches.max(1))
            .flat_map(|(work, partial, missed)| {
                incomplete += usize::from(partial);
                unavailable.extend(missed);
                futures::stream::iter(work)
            });
        let batch = self.evaluate_batch(work).await;
        report.incomplete += incomplete;
        report.deferred += unavailable.len();
        report.invocations += batch.invocations;
        report.traps += batch.traps;
        unavailable.extend(batch.owed);
        unavailable
    }

    /// Evaluates now the Malops a syslog event named (`ids`, at most a few per call): reads
    /// them through the authenticated API (one `crimes/unified` query per element kind for
    /// all of them), then evaluates each exactly as a poll would, under the same handled
    /// marks, ledger and audit, so an event and a poll that see the same Malop update
    /// evaluate it once. Nothing but the id comes from the event: an id the server does not
    /// know is counted and ignored. The watermark is left alone (the poll loop stays the
    /// safety net for whatever an event misses, a plugin owes or a fetch fails on).
    pub async fn evaluate_hinted(&self, ids: &[MalopId]) -> anyhow::Result<CycleReport> {
        let mut report = CycleReport::default();
        let mut missing: Vec<MalopId> = ids.to_vec();
        missing.sort();
        missing.dedup();
        let mut found = Vec::new();
        for kind in ElementKind::ALL {
            if missing.is_empty() {
                break;
            }
            let source = format!("crimes/unified:{}:by-id", kind.as_api());
            let read = std::time::Instant::now();
            let malops = self.core.client.malops_by_id(kind, &missing).await;
            self.metrics.poll(&source, read.elapsed(), malops.is_ok());
            let malops = match malops {
                Ok(malops) => malops,
                Err(error) => {
                    missing.iter().for_each(|_| self.metrics.hint("failed"));
                    return Err(error).with_context(|| {
                        format!("reading {} hinted {} Malops", missing.len(), kind.as_api())
                    });
                }
            };
            missing.retain(|id| !malops.iter().any(|m| &m.id == id));
            found.extend(malops);
        }
        for id in &missing {
            tracing::info!(malop = %id, "a syslog event named a Malop the server does not know: ignored");
            self.metrics.hint("unknown");
        }
        report.malops_seen = found.len();
        let owing = self.plugins_owing(&found).await?;
        let mut wanted = Vec::new();
        // A paused plugin's Malops wait for the poll that follows its pause.
        for (malop, owing) in found.into_iter().zip(owing) {
            self.metrics.hint("evaluated");
            if !owing.runnable.is_empty() {
                wanted.push((malop, owing));
            }
        }
        self.evaluate_wanted(wanted, &mut report).await;
        self.write_activity().await;
        self.core
            .auditor
            .service_event("hint-evaluation", serde_json::to_value(&report)?);
        self.core
            .auditor
            .barrier()
            .context("forcing the audit trail to disk after a hinted evaluation")?;
        Ok(report)
    }

    /// The most queued isolations [`Service::drain_followups`] reads to name some.
    const QUEUED_LISTED: u32 = 1_000;

    /// Waits for the remediation follow-ups still in flight (a cycle does this at its end;
    /// call it before stopping after hinted evaluations), then names the isolation changes
    /// still queued on the server for offline sensors: those are checked by later cycles
    /// (or the next run), not waited for.
    pub async fn drain_followups(&self) {
        self.core.drain_followers().await;
        let filter = riposte_store::ActionFilter {
            states: vec![ActionState::Following],
            limit: Some(Self::QUEUED_LISTED),
            ..Default::default()
        };
        let following = db::blocking(&self.core.store, "list_actions", move |s| {
            s.list_actions(&filter)
        })
        .await;
        let following = match following {
            Ok(following) => following,
            Err(e) => {
                tracing::warn!("listing the actions still followed: {e:#}");
                return;
            }
        };
        let queued: Vec<&str> = following
            .iter()
            .filter(|r| executor::is_queued_isolation(r.state, &r.request))
            .map(|r| r.id.as_str())
            .collect();
        if queued.is_empty() {
            return;
        }
        let named = &queued[..queued.len().min(gated::FOLLOWERS_NAMED)];
        let more = queued.len() > named.len() || following.len() as u32 == Self::QUEUED_LISTED;
        tracing::info!(
            actions = queued.len(),
            "still following, queued on the server until offline sensors connect (checked by the next cycles): {}{}",
            named.join(", "),
            if more { ", ..." } else { "" }
        );
    }

    /// The (plugin, Malop) pairs to evaluate for a Malop read in detail: the `runnable`
    /// plugins that did not handle this view of it yet. A Malop read with unreadable parts is
    /// offered with what the server gave, and the failure is audited, counted and queued to
    /// be read again; a Malop read in full is taken off that queue if it is `queued` there.
    async fn offer(
        &self,
        details: riposte_client::Details,
        runnable: Vec<Arc<ServicePlugin>>,
        queued: bool,
    ) -> Vec<(Arc<ServicePlugin>, Arc<ReadMalop>)> {
        let riposte_client::Details {
            malop,
            failures,
            machines_read,
        } = details;
        let malop = Arc::new(ReadMalop {
            malop,
            machines_read,
        });
        if (queued || !failures.is_empty())
            && let Err(e) = self.note_completeness(&malop.malop, &failures).await
        {
            tracing::error!(malop = %malop.malop.id, "recording the Malop's unreadable parts: {e}");
        }
        if failures.is_empty() {
            // The view is the one `plugins_owing` found unhandled (or a more complete one,
            // which no mark covers either): no need to ask again.
            return runnable.into_iter().map(|p| (p, malop.clone())).collect();
        }
        let names: Vec<PluginName> = runnable.iter().map(|p| p.policy.name.clone()).collect();
        let view = Arc::clone(&malop);
        // Every plugin's mark in one trip to the blocking pool; a mark that cannot be read
        // counts as not handled (the ledger still answers a repeated action).
        let handled = db::blocking(&self.core.store, "is_handled", move |s| {
            Ok(names
                .iter()
                .map(|name| {
                    let view = &view.malop;
                    s.is_handled(
                        name,
                        &view.id,
                        view.last_update_time,
                        Some(view.unreadable.as_slice()),
                    )
                    .unwrap_or(false)
                })
                .collect::<Vec<bool>>())
        })
        .await
        .unwrap_or_else(|_| vec![false; runnable.len()]);
        runnable
            .into_iter()
            .zip(handled)
            .filter(|(_, handled)| !handled)
            .map(|(p, _)| (p, malop.clone()))
            .collect()
    }

    /// Audits, counts and queues a Malop read with unreadable parts; audits and unqueues one
    /// read in full that was waiting.
    async fn note_completeness(
        &self,
        malop: &Malop,
        failures: &[riposte_client::PartFailure],
    ) -> anyhow::Result<()> {
        let store = &self.core.store;
        if failures.is_empty() {
            let id = malop.id.clone();
            if db::blocking(store, "forget_incomplete", move |s| {
                s.forget_incomplete(&id)
            })
            .await?
            {
                tracing::info!(malop = %malop.id, "every part of the Malop can be read now");
                self.core.auditor.malop_event(
                    "malop-complete",
                    &malop.id,
                    json!({"last_update": malop.last_update_time}),
                );
            }
            return Ok(());
        }
        let errors: serde_json::Map<String, serde_json::Value> = failures
            .iter()
            .map(|f| {
                self.metrics.part_unreadable(f.part);
                let text: String = f
                    .error
                    .to_string()
                    .chars()
                    .take(PART_ERROR_MAX_CHARS)
                    .collect();
                (f.part.name().to_owned(), json!(text))
            })
            .collect();
        let first = errors
            .values()
            .next()
            .and_then(|v| v.as_str())
            .unwrap_or("");
        let interval_ms = (self.config.service.poll_interval_secs.max(1) * 1000) as i64;
        let (read, first) = (malop.clone(), first.to_owned());
        let row = db::blocking(store, "record_incomplete", move |s| {
            s.record_incomplete(&read, &first, now_ms(), &|attempts| {
                reread_delay(interval_ms, attempts)
            })
        })
        .await?;
        tracing::warn!(malop = %malop.id, unreadable = ?malop.unreadable, attempts = row.attempts,
            "offering the Malop without the parts that could not be read; reading it again later");
        if row.attempts == 1 {
            self.core.auditor.malop_event(
                "malop-incomplete",
                &malop.id,
                json!({"last_update": malop.last_update_time, "unreadable": malop.unreadable,
                       "errors": errors, "next_try_ms": row.next_try_ms}),
            );
        }
        Ok(())
    }

    /// Reads again the incomplete Malops that were due when the cycle began at `started`
    /// (at most [`REREAD_PER_CYCLE`]; none this cycle's polls just read) and offers each to
    /// the plugins that have not seen that view of it; gives up on those incomplete for more
    /// than [`REREAD_GIVE_UP_MS`].
    async fn reread_incomplete(
        &self,
        started: i64,
        report: &mut CycleReport,
    ) -> anyhow::Result<()> {
        let store = &self.core.store;
        let now = now_ms();
        let mut work = Vec::new();
        let due = db::blocking(store, "due_incomplete", move |s| {
            s.due_incomplete(started, REREAD_PER_CYCLE)
        })
        .await?;
        for row in due {
            if now - row.first_seen_ms > REREAD_GIVE_UP_MS {
                let id = row.malop_id.clone();
                db::blocking(store, "forget_incomplete", move |s| {
                    s.forget_incomplete(&id)
                })
                .await?;
                tracing::warn!(malop = %row.malop_id, unreadable = ?row.unreadable, "giving up reading the Malop's missing parts");
                self.core.auditor.malop_event(
                    "malop-incomplete-given-up",
                    &row.malop_id,
                    json!({"unreadable": row.unreadable, "attempts": row.attempts,
                           "last_error": row.last_error}),
                );
                continue;
            }
            report.reread += 1;
            let malop = match self.core.client.get_malop(&row.malop_id).await {
                Ok(malop) => malop,
                Err(error) => {
                    tracing::warn!(malop = %row.malop_id, "reading the incomplete Malop again: {error}");
                    let interval_ms = (self.config.service.poll_interval_secs.max(1) * 1000) as i64;
                    let (id, error) = (row.malop_id.clone(), error.to_string());
                    db::blocking(store, "reread_failed", move |s| {
                        s.reread_failed(&id, &error, now, &|a| reread_delay(interval_ms, a))
                    })
                    .await?;
                    continue;
                }
            };
            // Only the parts its plugins read, as a poll would read it.
            let Some(owing) = self
                .plugins_owing(std::slice::from_ref(&malop))
                .await?
                .pop()
            else {
                continue;
            };
            let sensors = SensorBatch::of([&malop]);
            let details = self
                .core
                .client
                .read_parts(malop, &owing.parts, &sensors)
                .await;
            report.incomplete += usize::from(!details.failures.is_empty());
            work.extend(self.offer(details, owing.runnable, true).await);
        }
        let batch = self.evaluate_batch(futures::stream::iter(work)).await;
        report.invocations += batch.invocations;
        report.traps += batch.traps;
        let summary = db::blocking(store, "incomplete_summary", |s| s.incomplete_summary()).await?;
        self.metrics.set_incomplete(summary.count);
        Ok(())
    }

    /// Runs every (plugin, Malop) pair of `work`, `max_concurrency` at a time, each in a
    /// fresh sandbox, audited; records each Malop handled by its plugin once its invocation
    /// completed. The handled marks are group-committed: one durable transaction, after an
    /// audit barrier, takes every mark collected since the previous one began (at most
    /// [`MARK_GROUP_MAX`]), while the invocations go on, so that a Malop recorded handled
    /// always has its audit records on disk and a slow commit never stalls the plugins. A
    /// crash before the commit only offers those Malops again; whatever their plugins asked
    /// for is then answered from the action ledger, never sent twice.
    pub async fn evaluate_batch(
        &self,
        work: impl Stream<Item = (Arc<ServicePlugin>, Arc<ReadMalop>)>,
    ) -> BatchReport {
        let concurrency = self.config.service.max_concurrency.max(1);
        let done = work
            .map(|(plugin, malop)| async move {
                // A plugin paused by its traps earlier in this batch is offered no more
                // Malops (they are not marked handled, so they wait for the pause to end).
                let run = if self.is_paused(&plugin).await {
                    None
                } else {
                    Some(
                        self.run_on_malop(&plugin, &malop.malop, malop.machines_read)
                            .await,
                    )
                };
                (plugin, malop, run)
            })
            .buffer_unordered(concurrency);
        let mut done = std::pin::pin!(done.fuse());
        let mut report = BatchReport::default();
        let mut marks: Vec<Handled> = Vec::new();
        let mut commit = std::pin::pin!(futures::future::Fuse::terminated());
        loop {
            if commit.is_terminated() && !marks.is_empty() {
                let group: Vec<Handled> = marks.drain(..marks.len().min(MARK_GROUP_MAX)).collect();
                commit.set(self.commit_marks(group).fuse());
            }
            futures::select_biased! {
                (updates, recorded) = commit => match recorded {
                    Ok(()) => report.handled += updates.len(),
                    Err(e) => {
                        // Offered again next cycle; the ledger answers what they asked for.
                        tracing::error!("recording {} Malops handled: {e}", updates.len());
                        report.owed.extend(updates);
                    }
                },
                finished = done.next() => match finished {
                    Some((plugin, malop, run)) => {
                        report.count(&plugin, &malop.malop, run, &mut marks);
                    }
                    None if commit.is_terminated() && marks.is_empty() => break,
                    None => {}
                },
                complete => break,
            }
        }
        report
    }

    /// Records `marks` handled in one durable transaction, once the audit records of their
    /// invocations are on disk; returns their update times and whether that worked.
    async fn commit_marks(&self, marks: Vec<Handled>) -> (Vec<TimestampMs>, Result<(), String>) {
        let updates: Vec<TimestampMs> = marks.iter().map(|m| m.last_update_ms).collect();
        let auditor = self.core.auditor.clone();
        let synced = tokio::task::spawn_blocking(move || auditor.barrier())
            .await
            .map_err(|e| format!("the audit barrier's task failed: {e}"))
            .and_then(|synced| synced.map_err(|e| e.to_string()));
        let recorded = match synced {
            Ok(()) => db::blocking(&self.core.store, "mark_handled_all", move |s| {
                s.mark_handled_all(&marks, now_ms())
            })
            .await
            .map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        (updates, recorded)
    }

    /// For each of `malops`, in one trip to the blocking pool: the subscribed plugins that
    /// have not handled it at its latest update and can run now, whether such a plugin is
    /// paused, and the parts to read (see [`Owing`]).
    async fn plugins_owing(&self, malops: &[Malop]) -> anyhow::Result<Vec<Owing>> {
        let now = now_ms();
        let subscribed: Vec<Vec<Arc<ServicePlugin>>> = malops
            .iter()
            .map(|malop| {
                self.plugins
                    .iter()
                    .filter(|p| p.info.subscription.matches(malop))
                    .cloned()
                    .collect()
            })
            .collect();
        let questions: Vec<MarkQuestion> = malops
            .iter()
            .zip(&subscribed)
            .map(|(malop, plugins)| MarkQuestion::new(malop, plugins, &self.health))
            .collect();
        let answers = db::blocking(&self.core.store, "plugins_owing", move |s| {
            questions
                .iter()
                .map(|q| q.answer(s, now))
                .collect::<riposte_store::Result<Vec<MarkAnswer>>>()
        })
        .await?;
        Ok(subscribed
            .into_iter()
            .zip(answers)
            .map(|(plugins, answer)| answer.owing(plugins))
            .collect())
    }

    /// Runs `on-malop` of one plugin in a fresh sandbox, audits how it ended, and records it
    /// handled (or counts the trap towards pausing the plugin).
    pub async fn invoke_on_malop(&self, plugin: &ServicePlugin, malop: &Malop) -> InvocationReport {
        let run = self.run_on_malop(plugin, malop, None).await;
        if run.handled {
            let (_, recorded) = self.commit_marks(vec![handled_mark(plugin, malop)]).await;
            if let Err(e) = recorded {
                tracing::error!(plugin = %plugin.policy.name, "recording the Malop handled: {e}");
            }
        }
        run.report
    }

    /// One `on-malop` invocation with its effect on the plugin's health recorded; `handled`
    /// when the Malop may be recorded handled by it. The plugin sees the isolations this host
    /// made after `machines_read` (see [`isolation`]).
    async fn run_on_malop(
        &self,
        plugin: &ServicePlugin,
        malop: &Malop,
        machines_read: Option<std::time::Instant>,
    ) -> MalopRun {
        let traps_before = self.health.traps(&plugin.policy.name);
        let seen = self.core.executor.isolations().apply(malop, machines_read);
        let malop: &Malop = &seen;
        let call = CallContext::for_malop(plugin.identity(), malop, plugin.values.clone());
        let report = self
            .invoke(plugin, call, Entry::Malop(malop), Some(malop))
            .await;
        let handled = report.outcome.ran_to_end() && self.clean_run(plugin, traps_before).await;
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
        let host = Arc::new(GatedHost::new(
            self.core.clone(),
            plugin.policy.clone(),
            plugin.digest,
            malop.cloned(),
        ));
        let report = self
            .runtime
            .invoke(
                &plugin.loaded,
                &plugin.limits,
                host.clone() as Arc<dyn PluginHost>,
                call.clone(),
                entry,
            )
            .await;
        let export = match entry {
            Entry::Malop(_) => "on-malop",
            Entry::Interval(_) => "on-interval",
        };
        self.core
            .auditor
            .invocation(&call, export, &report, host.quota_use());
        match &report.outcome {
            Outcome::Stopped { reason } => self.record_trap(plugin, reason).await,
            Outcome::HostFailure { error } => notify::host_failure(
                &self.core.notifier,
                &plugin.policy.name,
                call.malop_id.as_ref(),
                error,
            ),
            _ => {}
        }
        report
    }

    /// Counts a trap towards pausing `plugin`, and audits the pause if it starts one.
    async fn record_trap(&self, plugin: &ServicePlugin, reason: &impl std::fmt::Display) {
        let name = plugin.policy.name.as_str();
        // The trap's audit record reaches the disk before the trap count it explains (a
        // failure is logged; the trap still counts).
        let _ = self.core.auditor.barrier();
        let (trapped, backoff) = (name.to_owned(), self.backoff);
        let write = db::blocking(&self.core.store, "record_trap", move |s| {
            s.record_trap(&trapped, now_ms(), &backoff)
        });
        let recorded = self.health.trap(&plugin.policy.name, write).await;
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
                    notify::plugin_paused(
                        &self.core.notifier,
                        &plugin.policy.name,
                        pause.consecutive_traps,
                        reason,
                        until,
                    );
                }
            }
            Err(e) => tracing::error!(plugin = name, "recording the trap: {e}"),
        }
    }

    /// After a clean run of `plugin` that began when this process had recorded
    /// `traps_before` of its traps: resets its count of traps in a row and any pause (see
    /// [`HealthBook::clean_run`]). `false` if that failed.
    async fn clean_run(&self, plugin: &ServicePlugin, traps_before: u64) -> bool {
        let name = &plugin.policy.name;
        let cleaned = name.clone();
        let write = db::blocking(&self.core.store, "record_success", move |s| {
            s.record_success(cleaned.as_str())
        });
        let reset = self.health.clean_run(name, traps_before, write).await;
        if let Err(e) = &reset {
            tracing::error!(plugin = %name, "recording the invocation: {e}");
        }
        reset.is_ok()
    }

    /// Whether `plugin` is paused now (a store read only when its health is not known).
    async fn is_paused(&self, plugin: &ServicePlugin) -> bool {
        let name = &plugin.policy.name;
        if self.health.known_healthy(name) {
            return false;
        }
        let name = name.clone();
        matches!(
            db::blocking(&self.core.store, "paused_until", move |s| {
                s.paused_until(name.as_str(), now_ms())
            })
            .await,
            Ok(Some(_))
        )
    }

    async fn run_due_intervals(&self, report: &mut CycleReport) {
        let now = now_ms();
        for plugin in &self.plugins {
            // A paused plugin runs nothing, its interval hook included.
            if !plugin.interval_due(now) || self.is_paused(plugin).await {
                continue;
            }
            let traps_before = self.health.traps(&plugin.policy.name);
            let call = CallContext::for_interval(plugin.identity(), now, plugin.values.clone());
            let outcome = self.invoke(plugin, call, Entry::Interval(now), None).await;
            if outcome.outcome.ran_to_end() {
                self.clean_run(plugin, traps_before).await;
            }
            report.invocations += 1;
            report.traps += usize::from(outcome.outcome.is_trap());
        }
    }

    /// Expires overdue approvals and executes approved actions, each exactly once.
    async fn settle_approvals(&self) -> anyhow::Result<usize> {
        let store = &self.core.store;
        let now = now_ms();
        let expired = db::blocking(store, "expire_due", move |s| {
            s.expire_due(now)?
                .iter()
                .map(|id| s.get_action(id))
                .collect::<riposte_store::Result<Vec<_>>>()
        })
        .await?;
        for record in &expired {
            self.core
                .auditor
                .operator_event("approval-expired", record, "riposte", None);
        }
        let claimed = db::blocking(store, "claim_approved", move |s| s.claim_approved(now)).await?;
        for approved in &claimed {
            self.execute_approved(&approved.action, &approved.approved_by)
                .await?;
        }
        Ok(claimed.len())
    }

    /// Carries out an action its approvers approved, through the gate again (budgets,
    /// protection), and audits it under their names.
    async fn execute_approved(
        &self,
        record: &ActionRecord,
        approvers: &[String],
    ) -> anyhow::Result<()> {
        let configured = self.plugin_named(&record.plugin);
        let policy = configured.map_or_else(|| orphan_policy(record), |p| p.policy.clone());
        let (facts, pylums) = self.machine_facts(record.malop_id.as_ref()).await;
        let request = record.request.clone();
        let decision = self
            .core
            .decide_off_worker(move |gate| {
                gate.decide_approved(&policy, &request, &facts, now_ms())
            })
            .await;
        self.core.auditor.operator_event(
            "approved-action",
            record,
            approvers,
            Some(decision.to_record()),
        );
        if let Some(error) = decision.call_error() {
            let (id, error) = (record.id.clone(), error.to_string());
            db::blocking(&self.core.store, "finish", move |s| {
                s.finish(&id, riposte_store::Outcome::Failed, Some(&error), now_ms())
            })
            .await?;
            return Ok(());
        }
        if configured.is_some() {
            self.core.executor.execute(record, &pylums).await;
        } else {
            // Held by recovery after its plugin left the configuration: it may have reached
            // the server before, so look for it there before sending anything.
            self.core.executor.reconcile(record, &pylums).await;
        }
        Ok(())
    }

    /// Settles actions a crash or an unknown outcome left unresolved. An action whose plugin
    /// is no longer configured is not sent again by itself: it is held for an operator
    /// (`riposte approvals approve|deny`); one already accepted by the server (a remediation
    /// being followed, an isolation change queued for offline sensors) is only followed.
    async fn recover(&self) -> anyhow::Result<usize> {
        let unresolved = db::blocking(&self.core.store, "unresolved_actions", |s| {
            s.unresolved_actions()
        })
        .await?;
        // Isolation changes queued for offline sensors: checked together, one query.
        let (queued, unresolved): (Vec<ActionRecord>, Vec<ActionRecord>) = unresolved
            .into_iter()
            .partition(|r| executor::is_queued_isolation(r.state, &r.request));
        let states = self.core.executor.check_queued(&queued).await;
        let mut settled = 0;
        for (record, state) in queued.iter().zip(states) {
            if state != record.state {
                settled += 1;
                tracing::info!(action = %record.id, to = state.as_str(), "settled an isolation change queued for offline sensors");
            }
        }
        for record in &unresolved {
            if self.plugin_named(&record.plugin).is_none() && self.hold_orphan(record).await? {
                continue;
            }
            // Only an isolation needs its machines' sensor ids: no details fetch otherwise.
            let pylums = match record.request {
                ActionRequest::Isolate { .. } | ActionRequest::Unisolate { .. } => {
                    self.machine_facts(record.malop_id.as_ref()).await.1
                }
                _ => PylumDirectory::default(),
            };
            let state = self.core.executor.reconcile(record, &pylums).await;
            if state != record.state {
                tracing::info!(action = %record.id, from = record.state.as_str(), to = state.as_str(), "settled an unresolved action");
            }
        }
        Ok(settled + unresolved.len())
    }

    /// Holds an unresolved action of a plugin no longer configured for an operator's
    /// decision; `false` if it needs no sending (a remediation being followed).
    async fn hold_orphan(&self, record: &ActionRecord) -> anyhow::Result<bool> {
        let now = now_ms();
        let expires = now
            .saturating_add((self.config.policy.approvals.expiry_secs as i64).saturating_mul(1000));
        let id = record.id.clone();
        let approvals = &self.config.policy.approvals;
        let quorum = record
            .request
            .action_kinds()
            .into_iter()
            .map(|k| approvals.quorum_of(k))
            .max()
            .unwrap_or(1);
        let held = db::blocking(&self.core.store, "hold_for_operator", move |s| {
            s.hold_for_operator(&id, expires, quorum, now)
        })
        .await?;
        if held {
            tracing::warn!(action = %record.id, plugin = %record.plugin, "plugin no longer configured: the unresolved action waits for an operator (riposte approvals approve|deny)");
            self.core
                .auditor
                .operator_event("held-for-operator", record, "riposte", None);
        }
        Ok(held)
    }

    /// Decides on the held action `id` as `by` (see [`decisions::decide`]), off the async
    /// workers.
    pub async fn decide(
        &self,
        id: riposte_store::ActionId,
        verdict: decisions::Verdict,
        by: riposte_domain::Operator,
    ) -> anyhow::Result<decisions::Decided> {
        self.with_store_and_audit(move |store, audit| {
            decisions::decide(store, audit, &id, verdict, &by, now_ms())
        })
        .await
    }

    /// Confirms or extends the time-boxed containment of `id` as `by` (see
    /// [`decisions::change_time_box`]), off the async workers.
    pub async fn change_time_box(
        &self,
        id: riposte_store::ActionId,
        change: decisions::TimeBoxChange,
        by: riposte_domain::Operator,
    ) -> anyhow::Result<riposte_store::TimeBox> {
        self.with_store_and_audit(move |store, audit| {
            decisions::change_time_box(store, audit, &id, change, &by, now_ms())
        })
        .await
    }

    /// Runs `op` on the blocking pool with the store and the audit trail (both block).
    async fn with_store_and_audit<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Store, &riposte_audit::AuditSink) -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let (store, auditor) = (self.core.store.clone(), self.core.auditor.clone());
        tokio::task::spawn_blocking(move || op(&store, auditor.sink())).await?
    }

    /// Applies the recorded inverse of an executed action, through the gate and the audit.
    /// An undo already sent and still followed (an un-isolation the server queued for an
    /// offline sensor) is returned as it stands, not decided or audited again.
    pub async fn undo(&self, action: &str, by: &str) -> anyhow::Result<ActionRecord> {
        let store = &self.core.store;
        let typed = action.to_owned();
        let (id, original, undo, pending) = db::blocking(store, "undo", move |s| {
            let id = s.resolve_action_id(&typed)?;
            let original = s.get_action(&id)?;
            let undo = s.get_undo(&id)?;
            let pending = s
                .find_action_by_key(&riposte_store::ActionKey::for_undo(&original.key))?
                .filter(|u| matches!(u.state, ActionState::Submitted | ActionState::Following));
            Ok((id, original, undo, pending))
        })
        .await?;
        if let Some(pending) = pending {
            return Ok(pending);
        }
        let undo = undo
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
        let inverse = self.resolve_inverse(undo.inverse.clone()).await?;
        let new = NewAction::undo(&original, inverse, by);
        let (facts, pylums) = self.machine_facts(original.malop_id.as_ref()).await;
        let (policy, request) = (plugin.policy.clone(), new.request.clone());
        let decision = self
            .core
            .decide_off_worker(move |gate| {
                gate.decide_approved(&policy, &request, &facts, now_ms())
            })
            .await;
        self.core
            .auditor
            .operator_event("undo", &original, by, Some(decision.to_record()));
        if let Some(error) = decision.call_error() {
            anyhow::bail!("the gate refused the undo of {id}: {error}");
        }
        let record = db::blocking(store, "begin_action", move |s| {
            let begun = s.begin_action(&new, now_ms())?;
            s.get_action(begun.action_id())
        })
        .await?;
        let state = match record.state {
            ActionState::Planned => self.core.executor.execute(&record, &pylums).await,
            other => other,
        };
        let (undone_by, undo_id) = (by.to_owned(), record.id.clone());
        Ok(db::blocking(store, "mark_undone", move |s| {
            if state == ActionState::Succeeded {
                s.mark_undone(&id, &undo_id, &undone_by, now_ms())?;
            }
            s.get_action(&undo_id)
        })
        .await?)
    }

    /// The recorded inverse as the server takes it now: an unquarantine addresses the
    /// quarantined copy of each file (a guid of its own), looked up on the server.
    async fn resolve_inverse(&self, inverse: ActionRequest) -> anyhow::Result<ActionRequest> {
        let ActionRequest::Remediate { malop_id, targets } = inverse else {
            return Ok(inverse);
        };
        let mut resolved = Vec::with_capacity(targets.len());
        for mut target in targets {
            if target.kind == riposte_domain::RemediationKind::UnquarantineFile {
                target.target_guid = self
                    .core
                    .client
                    .quarantined_file(&target.machine_guid, &target.target_guid)
                    .await
                    .with_context(|| {
                        format!(
                            "finding the quarantined copy of file {}",
                            target.target_guid
                        )
                    })?;
            }
            resolved.push(target);
        }
        Ok(ActionRequest::Remediate {
            malop_id,
            targets: resolved,
        })
    }

    fn plugin_named(&self, name: &riposte_domain::PluginName) -> Option<&Arc<ServicePlugin>> {
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

/// The budgets left of every plugin of `plugins` and the global ones, now.
fn budgets_left(gate: &Gate, plugins: &[Arc<ServicePlugin>]) -> Vec<riposte_policy::BudgetStatus> {
    let now = now_ms();
    let mut all = Vec::new();
    match gate.budget_status(None, now) {
        Ok(global) => all.extend(global),
        Err(e) => tracing::warn!("budget status for metrics: {e}"),
    }
    for plugin in plugins {
        match gate.budget_status(Some(&plugin.policy), now) {
            Ok(list) => all.extend(
                list.into_iter()
                    .filter(|s| matches!(s.scope, riposte_policy::BudgetScope::Plugin(_))),
            ),
            Err(e) => {
                tracing::warn!(plugin = %plugin.policy.name, "budget status for metrics: {e}")
            }
        }
    }
    all
}

/// The pause before incomplete read number `attempts` + 1: the poll interval, doubled with
/// each read, at most [`REREAD_MAX_MS`].
fn reread_delay(interval_ms: i64, attempts: u32) -> i64 {
    let doubled = interval_ms.saturating_mul(1i64 << attempts.saturating_sub(1).min(30));
    doubled.min(REREAD_MAX_MS.max(interval_ms))
}

/// The policy an operator-approved action of a plugin no longer configured runs under: its
/// own kinds granted, enforced, no budgets of its own; protection and global budgets apply.
fn orphan_policy(record: &ActionRecord) -> riposte_policy::PluginPolicy {
    let mut config = PluginConfig::new(
        record.plugin.clone(),
        std::path::PathBuf::new(),
        record.plugin_digest,
    );
    config.rules.mode = riposte_policy::Mode::Enforce;
    config
        .rules
        .grants
        .operations
        .insert(record.request.operation());
    for kind in record.request.action_kinds() {
        config.rules.grants.remediation.extend(kind.remediation());
        config.rules.grants.whitelist |= kind == riposte_domain::ActionKind::Whitelist;
    }
    config.policy()
}

/// What `config` sets the service's rules to: the gate, the runtime, and every plugin loaded
/// and checked (pins, signatures, world, package manifests), compiled or taken from the
/// authenticated artifact cache beside the database.
/// How this host takes part in the fleet, from `[service.database]`: a PostgreSQL
/// database is shared, a SQLite file is not.
fn fleet_settings(config: &OperatorConfig) -> FleetSettings {
    use riposte_store::settings::{Backend, DEFAULT_HEARTBEAT_SECS, DEFAULT_LEASE_SECS};
    let (shared, lease, heartbeat) = match &config.service.database.backend {
        Backend::Postgres(pg) => (true, pg.lease(), pg.heartbeat()),
        Backend::Sqlite { .. } => (
            false,
            std::time::Duration::from_secs(DEFAULT_LEASE_SECS),
            std::time::Duration::from_secs(DEFAULT_HEARTBEAT_SECS),
        ),
    };
    FleetSettings {
        shared,
        lease,
        heartbeat,
        host_id: default_host_id(),
    }
}

async fn load_rules(
    config: &OperatorConfig,
    store: &Arc<Store>,
) -> anyhow::Result<(Gate, Arc<Runtime>, Vec<Arc<ServicePlugin>>)> {
    let gate = Gate::new(&config.policy, store.clone())?;
    let runtime = Arc::new(Runtime::new(plugins::runtime_config(config))?);
    let cache_dir = config.artifact_dir();
    let plugins = plugins::load_all(&runtime, config, &cache_dir).await?;
    Ok((gate, runtime, plugins))
}
