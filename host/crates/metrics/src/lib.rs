//! Prometheus metrics of the service (`[service] metrics_listen`), in the OpenMetrics text
//! format that Prometheus scrapes.
//!
//! A registry ([`Metrics`]) that whoever runs the service creates and hands to it (and to
//! [`serve`]), fed by small hooks in the service: every
//! invocation and how it ended, every gate decision, every executed action's outcome, the
//! latency of every poll of the server, and the budgets left after each cycle. Series:
//!
//! | series | labels |
//! |---|---|
//! | `riposte_invocations_total` | `plugin`, `export` (`on-malop`/`on-interval`), `outcome` (`completed`/`plugin-error`/`stopped`/`host-failure`) |
//! | `riposte_traps_total` | `plugin`, `reason` (`out-of-fuel`, `time-limit`, `memory-limit`, `stack-overflow`, `output-cap`, `panic`, `trap`) |
//! | `riposte_invocation_fuel_used_total` | `plugin` |
//! | `riposte_decisions_total` | `plugin`, `operation`, `decision` (`allow`/`shadow`/`await-approval`/`deny`) |
//! | `riposte_actions_total` | `plugin`, `action`, `outcome` (the action's state after execution) |
//! | `riposte_poll_duration_seconds` (histogram) | `source` (`crimes/unified:MalopProcess`, ...) |
//! | `riposte_poll_errors_total` | `source` |
//! | `riposte_poll_incomplete_total` | `source`: listings the server answered only in part (a detection server did not answer, a window it could not narrow); the watermark held |
//! | `riposte_cycles_total` | |
//! | `riposte_malop_parts_unreadable_total` | `part` (`suspects`, `files`, `network`, `sensors`): enrichment queries that failed |
//! | `riposte_incomplete_malops` (gauge) | Malops offered with unreadable parts and waiting to be read again |
//! | `riposte_budget_remaining` (gauge) | `scope` (`global` or the plugin), `action`, `window_secs` |
//! | `riposte_budget_max` (gauge) | the same |
//! | `riposte_syslog_hints_total` | `outcome` (`evaluated`: the Malop was read and offered; `unknown`: the server does not know it; `failed`: it could not be read) |
//! | `riposte_syslog_messages_dropped` (gauge) | `reason`: syslog messages the listener dropped since it started (malformed, rate-limited, ...) |
//! | `riposte_syslog_listener_events` (gauge) | `event`: what else the listener counted since it started (`connections_accepted`, `connections_refused_limit`, `connections_evicted`, `coalesced`, `hints_delivered`, ...) |
//! | `riposte_fleet_role` (gauge) | `role` (`acting`/`standby`/`unreachable`): 1 for this host's role at its last heartbeat, 0 for the others |
//! | `riposte_audit_export_lag_records` (gauge) | audit records appended and not yet delivered to the SIEM collector |
//! | `riposte_audit_export_records_total` | audit records delivered to the collector (written and confirmed) |
//! | `riposte_audit_export_resent_records_total` | audit records sent again after a broken connection or a restart |
//! | `riposte_audit_export_connection_failures_total` | failed connection attempts, connections closed by the collector, failed writes |
//! | `riposte_audit_export_last_write_timestamp_seconds` (gauge) | when a record was last written to the collector (unix seconds; 0 before the first) |
//! | `riposte_notifications_sent_total` | `webhook` (its configured name, `webhook-N` by default; never its URL): notifications the webhook accepted |
//! | `riposte_notifications_dropped_total` | `webhook`: notifications dropped from its full queue |
//! | `riposte_notifications_failed_total` | `webhook`: notifications given up on (refused, or out of tries) |
//!
//! The `riposte_audit_export_*` series are read from the exporter's stats
//! ([`Metrics::watch_audit_export`]) at every scrape, the `riposte_notifications_*` ones
//! from the notifier's ([`Metrics::watch_notifications`]).

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};
use tokio::sync::watch;

/// Label pairs of one series.
pub(crate) type Labels = Vec<(String, String)>;

type HistogramFamily = Family<Labels, Histogram, fn() -> Histogram>;

/// The roles [`Metrics::set_fleet_role`] knows.
pub const FLEET_ROLES: [&str; 3] = ["acting", "standby", "unreachable"];

/// The content type of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

fn poll_histogram() -> Histogram {
    // 5 ms .. ~20 s.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.005, 2.0, 13,
    ))
}

/// The service's metrics. Counters only grow; gauges are set after each cycle.
pub struct Metrics {
    registry: Registry,
    invocations: Family<Labels, Counter>,
    traps: Family<Labels, Counter>,
    fuel: Family<Labels, Counter>,
    decisions: Family<Labels, Counter>,
    actions: Family<Labels, Counter>,
    poll_latency: HistogramFamily,
    poll_errors: Family<Labels, Counter>,
    poll_incomplete: Family<Labels, Counter>,
    cycles: Counter,
    unreadable: Family<Labels, Counter>,
    incomplete: Gauge,
    budget_remaining: Family<Labels, Gauge>,
    budget_max: Family<Labels, Gauge>,
    hints: Family<Labels, Counter>,
    syslog_dropped: Family<Labels, Gauge>,
    syslog_events: Family<Labels, Gauge>,
    fleet_role: Family<Labels, Gauge>,
    export: ExportSeries,
    notifications: NotificationSeries,
    /// The notifier's webhooks' counters, read at every scrape.
    notifier: Mutex<Option<riposte_notify::StatsReader>>,
    /// The SIEM exporter's stats, read at every scrape.
    export_stats: Mutex<Option<watch::Receiver<riposte_audit::ExportStats>>>,
    /// The syslog listener's counters, read at every scrape.
    syslog_counters: Mutex<Option<Arc<riposte_syslog::Counters>>>,
    /// Budget series set by the last cycle (so budgets removed from the config disappear).
    budget_keys: Mutex<Vec<Labels>>,
}

/// The SIEM export's series.
#[derive(Default)]
struct ExportSeries {
    lag: Gauge,
    records: Counter,
    resent: Counter,
    connection_failures: Counter,
    last_write: Gauge,
}

impl ExportSeries {
    fn register(&self, registry: &mut Registry) {
        let registry = registry.sub_registry_with_prefix("audit_export");
        registry.register(
            "lag_records",
            "Audit records appended and not yet delivered to the SIEM collector",
            self.lag.clone(),
        );
        registry.register(
            "records",
            "Audit records delivered to the SIEM collector (written and confirmed)",
            self.records.clone(),
        );
        registry.register(
            "resent_records",
            "Audit records sent to the SIEM collector again after a broken connection or a restart",
            self.resent.clone(),
        );
        registry.register(
            "connection_failures",
            "Connections to the SIEM collector that failed: attempts, closes by the collector, failed writes",
            self.connection_failures.clone(),
        );
        registry.register(
            "last_write_timestamp_seconds",
            "When an audit record was last written to the SIEM collector (unix seconds, 0 before the first)",
            self.last_write.clone(),
        );
    }

    fn set(&self, stats: &riposte_audit::ExportStats) {
        let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.lag.set(gauge(stats.lag()));
        catch_up(&self.records, stats.exported);
        catch_up(&self.resent, stats.resent);
        catch_up(&self.connection_failures, stats.connection_failures);
        if let Some(at) = stats.last_write {
            let secs = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
            self.last_write.set(gauge(secs));
        }
    }
}

/// Counters only grow: `counter` takes what its source counted beyond it.
fn catch_up(counter: &Counter, total: u64) {
    counter.inc_by(total.saturating_sub(counter.get()));
}

/// The webhooks' series, by webhook name.
#[derive(Default)]
struct NotificationSeries {
    sent: Family<Labels, Counter>,
    dropped: Family<Labels, Counter>,
    failed: Family<Labels, Counter>,
}

impl NotificationSeries {
    fn register(&self, registry: &mut Registry) {
        let registry = registry.sub_registry_with_prefix("notifications");
        registry.register(
            "sent",
            "Notifications a webhook accepted, by webhook name",
            self.sent.clone(),
        );
        registry.register(
            "dropped",
            "Notifications dropped from a webhook's full queue, by webhook name",
            self.dropped.clone(),
        );
        registry.register(
            "failed",
            "Notifications given up on (refused, or out of tries), by webhook name",
            self.failed.clone(),
        );
    }

    fn set(&self, stats: &[riposte_notify::WebhookStats]) {
        for hook in stats {
            let key = labels(&[("webhook", &hook.name)]);
            catch_up(&self.sent.get_or_create(&key), hook.delivered);
            catch_up(&self.dropped.get_or_create(&key), hook.dropped);
            catch_up(&self.failed.get_or_create(&key), hook.failed);
        }
    }
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every series registered (and no samples yet).
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("riposte");
        let invocations = Family::<Labels, Counter>::default();
        let traps = Family::<Labels, Counter>::default();
        let fuel = Family::<Labels, Counter>::default();
        let decisions = Family::<Labels, Counter>::default();
        let actions = Family::<Labels, Counter>::default();
        let poll_latency: HistogramFamily = Family::new_with_constructor(poll_histogram);
        let poll_errors = Family::<Labels, Counter>::default();
        let poll_incomplete = Family::<Labels, Counter>::default();
        let cycles = Counter::default();
        let unreadable = Family::<Labels, Counter>::default();
        let incomplete = Gauge::default();
        let budget_remaining = Family::<Labels, Gauge>::default();
        let budget_max = Family::<Labels, Gauge>::default();
        let hints = Family::<Labels, Counter>::default();
        let syslog_dropped = Family::<Labels, Gauge>::default();
        let syslog_events = Family::<Labels, Gauge>::default();
        let fleet_role = Family::<Labels, Gauge>::default();
        let export = ExportSeries::default();
        let notifications = NotificationSeries::default();
        registry.register(
            "invocations",
            "Plugin invocations, by plugin, export and outcome",
            invocations.clone(),
        );
        registry.register(
            "traps",
            "Invocations the sandbox stopped, by plugin and reason",
            traps.clone(),
        );
        registry.register(
            "invocation_fuel_used",
            "Fuel (instructions) used by invocations, by plugin",
            fuel.clone(),
        );
        registry.register(
            "decisions",
            "Policy gate decisions on plugin calls, by plugin, operation and decision",
            decisions.clone(),
        );
        registry.register(
            "actions",
            "Executed actions, by plugin, action and final state",
            actions.clone(),
        );
        registry.register(
            "poll_duration_seconds",
            "Latency of one poll of the server for new or changed Malops, by source",
            poll_latency.clone(),
        );
        registry.register(
            "poll_errors",
            "Polls of the server that failed, by source",
            poll_errors.clone(),
        );
        registry.register(
            "poll_incomplete",
            "Polls the server answered only in part, so the watermark held, by source",
            poll_incomplete.clone(),
        );
        registry.register("cycles", "Service cycles completed", cycles.clone());
        registry.register(
            "malop_parts_unreadable",
            "Malop parts whose query failed (the Malop was offered without them), by part",
            unreadable.clone(),
        );
        registry.register(
            "incomplete_malops",
            "Malops offered with unreadable parts, waiting to be read again",
            incomplete.clone(),
        );
        registry.register(
            "budget_remaining",
            "Units left in each budget's current window, by scope, action and window",
            budget_remaining.clone(),
        );
        registry.register(
            "budget_max",
            "Units each budget allows per window, by scope, action and window",
            budget_max.clone(),
        );
        registry.register(
            "syslog_hints",
            "Malops named by syslog events and taken up, by outcome",
            hints.clone(),
        );
        registry.register(
            "syslog_messages_dropped",
            "Syslog messages the listener dropped since it started, by reason",
            syslog_dropped.clone(),
        );
        registry.register(
            "syslog_listener_events",
            "What the syslog listener counted since it started besides drops (connections accepted, refused, evicted, timed out; events coalesced; hints delivered), by event",
            syslog_events.clone(),
        );
        registry.register(
            "fleet_role",
            "1 for this host's role in the fleet sharing its database (acting, standby, unreachable), 0 for the others",
            fleet_role.clone(),
        );
        export.register(&mut registry);
        notifications.register(&mut registry);
        Self {
            registry,
            invocations,
            traps,
            fuel,
            decisions,
            actions,
            poll_latency,
            poll_errors,
            poll_incomplete,
            cycles,
            unreadable,
            incomplete,
            budget_remaining,
            budget_max,
            hints,
            syslog_dropped,
            syslog_events,
            fleet_role,
            export,
            notifications,
            notifier: Mutex::new(None),
            export_stats: Mutex::new(None),
            syslog_counters: Mutex::new(None),
            budget_keys: Mutex::new(Vec::new()),
        }
    }

    /// Counts one invocation of `export` (`on-malop`, `on-interval`) and how it ended.
    pub fn invocation(
        &self,
        plugin: &str,
        export: &str,
        report: &riposte_runtime::InvocationReport,
    ) {
        if let riposte_runtime::Outcome::Stopped { reason } = &report.outcome {
            self.traps
                .get_or_create(&labels(&[("plugin", plugin), ("reason", reason.label())]))
                .inc();
        }
        let outcome = report.outcome.status();
        self.invocations
            .get_or_create(&labels(&[
                ("plugin", plugin),
                ("export", export),
                ("outcome", outcome),
            ]))
            .inc();
        self.fuel
            .get_or_create(&labels(&[("plugin", plugin)]))
            .inc_by(report.fuel_used);
    }

    /// Counts one gate decision on a plugin's call.
    pub fn decision(&self, plugin: &str, operation: &str, decision: riposte_audit::DecisionKind) {
        self.decisions
            .get_or_create(&labels(&[
                ("plugin", plugin),
                ("operation", operation),
                ("decision", decision.name()),
            ]))
            .inc();
    }

    /// Counts one executed action by its resulting state (`succeeded`, `failed`, ...).
    pub fn action(&self, plugin: &str, action: &str, outcome: &str) {
        self.actions
            .get_or_create(&labels(&[
                ("plugin", plugin),
                ("action", action),
                ("outcome", outcome),
            ]))
            .inc();
    }

    /// Records one poll of `source` that took `took`, and whether it failed.
    pub fn poll(&self, source: &str, took: Duration, ok: bool) {
        let key = labels(&[("source", source)]);
        self.poll_latency
            .get_or_create(&key)
            .observe(took.as_secs_f64());
        if !ok {
            self.poll_errors.get_or_create(&key).inc();
        }
    }

    /// Counts one poll of `source` whose listing was incomplete (the watermark held).
    pub fn poll_incomplete(&self, source: &str) {
        self.poll_incomplete
            .get_or_create(&labels(&[("source", source)]))
            .inc();
    }

    /// Counts a completed cycle.
    pub fn cycle(&self) {
        self.cycles.inc();
    }

    /// Counts one Malop part whose query failed.
    pub fn part_unreadable(&self, part: riposte_domain::MalopPart) {
        self.unreadable
            .get_or_create(&labels(&[("part", part.name())]))
            .inc();
    }

    /// Sets this host's role in its fleet (one of [`FLEET_ROLES`]) after a heartbeat.
    pub fn set_fleet_role(&self, role: &str) {
        for name in FLEET_ROLES {
            self.fleet_role
                .get_or_create(&labels(&[("role", name)]))
                .set(i64::from(name == role));
        }
    }

    /// Sets how many Malops wait with unreadable parts.
    pub fn set_incomplete(&self, count: u64) {
        self.incomplete
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// Sets the budgets-left gauges to `budgets`; series of budgets no longer reported are
    /// removed.
    pub fn set_budgets(&self, budgets: &[riposte_policy::BudgetStatus]) {
        let mut keys = self.budget_keys.lock().unwrap_or_else(|p| p.into_inner());
        let mut fresh = Vec::with_capacity(budgets.len());
        for status in budgets {
            let scope = match &status.scope {
                riposte_policy::BudgetScope::Global => "global".to_owned(),
                riposte_policy::BudgetScope::Plugin(name) => name.as_str().to_owned(),
            };
            let action = status.budget.action.to_string();
            let key = labels(&[
                ("scope", &scope),
                ("action", &action),
                ("window_secs", &status.budget.window_secs.to_string()),
            ]);
            self.budget_remaining
                .get_or_create(&key)
                .set(i64::try_from(status.remaining).unwrap_or(i64::MAX));
            self.budget_max
                .get_or_create(&key)
                .set(i64::try_from(status.budget.max).unwrap_or(i64::MAX));
            fresh.push(key);
        }
        for old in keys.iter().filter(|k| !fresh.contains(k)) {
            self.budget_remaining.remove(old);
            self.budget_max.remove(old);
        }
        *keys = fresh;
    }

    /// One Malop named by a syslog event taken up: `evaluated`, `unknown` or `failed`.
    pub fn hint(&self, outcome: &str) {
        self.hints
            .get_or_create(&labels(&[("outcome", outcome)]))
            .inc();
    }

    /// Reads the syslog listener's drop counters (from [`riposte_syslog::SyslogListener::counters`])
    /// into `riposte_syslog_messages_dropped` (and its other counters into `riposte_syslog_listener_events`) at every scrape, from now on: drops show even
    /// when no message gets through.
    pub fn watch_syslog(&self, counters: Arc<riposte_syslog::Counters>) {
        let mut watched = self.watched_syslog();
        self.set_syslog_counters(&counters);
        *watched = Some(counters);
    }

    fn watched_syslog(&self) -> std::sync::MutexGuard<'_, Option<Arc<riposte_syslog::Counters>>> {
        self.syslog_counters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// The syslog listener's drops so far, by reason, and its other counters, by event.
    fn set_syslog_counters(&self, counters: &riposte_syslog::Counters) {
        let snapshot = counters.snapshot();
        let gauge = |count: u64| i64::try_from(count).unwrap_or(i64::MAX);
        for (reason, count) in snapshot.drops() {
            self.syslog_dropped
                .get_or_create(&labels(&[("reason", reason.as_str())]))
                .set(gauge(count));
        }
        for (event, count) in snapshot.events() {
            self.syslog_events
                .get_or_create(&labels(&[("event", event.as_str())]))
                .set(gauge(count));
        }
    }

    /// Reads the SIEM exporter's stats (from [`riposte_audit::ExportHandle::stats`]) into
    /// the `riposte_audit_export_*` series at every scrape, from now on.
    pub fn watch_audit_export(&self, stats: watch::Receiver<riposte_audit::ExportStats>) {
        let mut watched = self.watched_export();
        self.export.set(&stats.borrow());
        *watched = Some(stats);
    }

    /// Sets the `riposte_audit_export_*` series to the exporter's `stats`.
    pub fn set_audit_export(&self, stats: &riposte_audit::ExportStats) {
        // Under the lock: two scrapes at once must not both add the same increment.
        let _one_at_a_time = self.watched_export();
        self.export.set(stats);
    }

    fn watched_export(
        &self,
    ) -> std::sync::MutexGuard<'_, Option<watch::Receiver<riposte_audit::ExportStats>>> {
        self.export_stats.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads the notifier's webhook counters (from [`riposte_notify::Notifier::stats_reader`])
    /// into the `riposte_notifications_*` series at every scrape, from now on. Each webhook
    /// is labelled by its configured name, never by its URL.
    pub fn watch_notifications(&self, stats: riposte_notify::StatsReader) {
        let mut watched = self.watched_notifier();
        self.notifications.set(&stats.read());
        *watched = Some(stats);
    }

    fn watched_notifier(&self) -> std::sync::MutexGuard<'_, Option<riposte_notify::StatsReader>> {
        self.notifier.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The exposition: every series in the OpenMetrics text format ([`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        if let Some(stats) = self.watched_export().as_ref() {
            self.export.set(&stats.borrow());
        }
        // Under the lock: two scrapes at once must not both add the same increment.
        if let Some(stats) = self.watched_notifier().as_ref() {
            self.notifications.set(&stats.read());
        }
        if let Some(counters) = self.watched_syslog().as_ref() {
            self.set_syslog_counters(counters);
        }
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

/// A running metrics endpoint; stops when dropped.
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl MetricsServer {
    /// The address it listens on (the real port when `:0` was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Serves `metrics` at `GET /metrics` on `listen` (and `GET /` answers with a pointer to it).
pub async fn serve(listen: SocketAddr, metrics: Arc<Metrics>) -> anyhow::Result<MetricsServer> {
    use anyhow::Context as _;
    use axum::http::header;
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| {
        format!(
            "cannot listen on {listen} for metrics: set [service] metrics_listen to a free address"
        )
    })?;
    let addr = listener
        .local_addr()
        .context("the metrics listener address")?;
    let app = axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get(move || async move {
                ([(header::CONTENT_TYPE, CONTENT_TYPE)], metrics.render())
            }),
        )
        .route(
            "/",
            axum::routing::get(|| async { "riposte metrics: GET /metrics\n" }),
        );
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let stop = async {
            let _ = rx.await;
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await
        {
            tracing::error!("the metrics endpoint stopped: {e}");
        }
    });
    tracing::info!(%addr, "metrics endpoint listening");
    Ok(MetricsServer {
        addr,
        stop: Some(tx),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The listener's drops are read at every scrape, whether or not a message got through.
    #[tokio::test]
    async fn syslog_drops_are_read_at_every_scrape() {
        let config = riposte_syslog::ListenerConfig {
            enabled: true,
            udp_listen: Some("127.0.0.1:0".parse().unwrap()),
            ..riposte_syslog::ListenerConfig::default()
        };
        let (listener, _hints) = riposte_syslog::SyslogListener::start(&config)
            .await
            .unwrap();
        let m = Metrics::new();
        m.watch_syslog(listener.counters());
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let to = listener.local_addrs().udp.unwrap();
        socket.send_to(b"just some text", to).await.unwrap();
        let counted = "riposte_syslog_messages_dropped{reason=\"not_cef\"} 1";
        let received = "riposte_syslog_listener_events{event=\"messages_received\"} 1";
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut text = m.render();
        while !(text.contains(counted) && text.contains(received)) {
            assert!(std::time::Instant::now() < deadline, "{text}");
            tokio::task::yield_now().await;
            text = m.render();
        }
        listener.shutdown().await;
    }

    #[test]
    fn series_render_with_their_labels() {
        let m = Metrics::new();
        m.poll(
            "crimes/unified:MalopProcess",
            Duration::from_millis(12),
            true,
        );
        m.poll_incomplete("crimes/unified:MalopProcess");
        m.action("p", "isolate", "succeeded");
        m.decision("p", "isolate", riposte_audit::DecisionKind::Deny);
        m.cycle();
        let text = m.render();
        assert!(
            text.contains(
                "riposte_poll_duration_seconds_count{source=\"crimes/unified:MalopProcess\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "riposte_actions_total{plugin=\"p\",action=\"isolate\",outcome=\"succeeded\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "riposte_decisions_total{plugin=\"p\",operation=\"isolate\",decision=\"deny\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "riposte_poll_incomplete_total{source=\"crimes/unified:MalopProcess\"} 1"
            ),
            "{text}"
        );
        assert!(text.contains("riposte_cycles_total 1"), "{text}");
        assert!(text.ends_with("# EOF\n"));
    }

    /// The export's series follow the exporter's stats at every scrape; counters are not
    /// counted twice by two scrapes.
    #[test]
    fn the_export_series_follow_the_exporters_stats() {
        use riposte_audit::ExportStats;
        let m = Metrics::new();
        let (stats, watched) = watch::channel(ExportStats {
            head: 10,
            cursor: 4,
            exported: 4,
            connection_failures: 1,
            ..ExportStats::default()
        });
        m.watch_audit_export(watched);
        let text = m.render();
        for line in [
            "riposte_audit_export_lag_records 6\n",
            "riposte_audit_export_records_total 4\n",
            "riposte_audit_export_resent_records_total 0\n",
            "riposte_audit_export_connection_failures_total 1\n",
            "riposte_audit_export_last_write_timestamp_seconds 0\n",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
        stats.send_replace(ExportStats {
            head: 12,
            cursor: 12,
            exported: 12,
            resent: 3,
            connection_failures: 2,
            last_write: Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
        });
        let text = m.render();
        for line in [
            "riposte_audit_export_lag_records 0\n",
            "riposte_audit_export_records_total 12\n",
            "riposte_audit_export_resent_records_total 3\n",
            "riposte_audit_export_connection_failures_total 2\n",
            "riposte_audit_export_last_write_timestamp_seconds 1700000000\n",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
        assert_eq!(m.render(), text, "a second scrape adds nothing");
    }

    /// A webhook for the notifier of the test below, posting to `url`.
    fn webhook(name: &str, url: &str) -> riposte_notify::WebhookConfig {
        riposte_notify::WebhookConfig {
            name: name.to_owned(),
            target: "http://127.0.0.1".to_owned(),
            url: riposte_domain::Secret::new(url),
            token: None,
            credentials_file: None,
            format: riposte_notify::Format::Json,
            events: riposte_notify::EventKind::ALL.into_iter().collect(),
            timeout: Duration::from_secs(10),
        }
    }

    /// The webhooks' series follow the notifier's counters, by webhook name: what one
    /// accepted, what another refused until the notifier gave up, what both dropped from a
    /// full queue. No URL appears.
    #[tokio::test]
    async fn the_notification_series_follow_the_notifiers_counters_by_webhook() {
        use axum::http::StatusCode;
        let app = axum::Router::new()
            .route(
                "/ok/TOKENSECRET",
                axum::routing::post(|| async { StatusCode::OK }),
            )
            .route(
                "/down/TOKENSECRET",
                axum::routing::post(|| async { StatusCode::SERVICE_UNAVAILABLE }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let config = riposte_notify::NotificationsConfig {
            queue_size: 1,
            max_attempts: 2,
            first_retry: Duration::from_millis(1),
            max_retry: Duration::from_millis(2),
            webhooks: vec![
                webhook("soc", &format!("http://{addr}/ok/TOKENSECRET")),
                webhook("pager", &format!("http://{addr}/down/TOKENSECRET")),
            ],
            ..riposte_notify::NotificationsConfig::default()
        };
        let notifier = riposte_notify::Notifier::start(&config, None).unwrap();
        let m = Metrics::new();
        m.watch_notifications(notifier.stats_reader());
        let text = m.render();
        for line in [
            "riposte_notifications_sent_total{webhook=\"soc\"} 0\n",
            "riposte_notifications_failed_total{webhook=\"pager\"} 0\n",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
        let failed = |n: u32| riposte_notify::Event::ActionFailed {
            action: format!("action-{n}"),
            plugin: riposte_domain::PluginName::new("cleanup"),
            malop: None,
            summary: "kill 1 process".to_owned(),
            error: "refused".to_owned(),
        };
        // On this single-threaded runtime the posting tasks have not run yet: the queues
        // (of one) keep the last of three, and drop two each.
        for n in 0..3 {
            notifier.notify(failed(n));
        }
        tokio::time::timeout(Duration::from_secs(30), notifier.idle())
            .await
            .expect("both webhooks settle their queue");
        let text = m.render();
        for line in [
            "riposte_notifications_sent_total{webhook=\"soc\"} 1\n",
            "riposte_notifications_sent_total{webhook=\"pager\"} 0\n",
            "riposte_notifications_failed_total{webhook=\"soc\"} 0\n",
            "riposte_notifications_failed_total{webhook=\"pager\"} 1\n",
            "riposte_notifications_dropped_total{webhook=\"soc\"} 2\n",
            "riposte_notifications_dropped_total{webhook=\"pager\"} 2\n",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
        assert!(
            !text.contains("TOKENSECRET") && !text.contains("127.0.0.1"),
            "{text}"
        );
        assert_eq!(m.render(), text, "a second scrape adds nothing");
    }
}
