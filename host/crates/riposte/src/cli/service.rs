//! `riposte run`, `status`, `approvals`, `undo`: the operator's commands around the service.

use anyhow::Context;
use clap::{Args, Subcommand};
use riposte_client::{Client, ClientConfig, Credentials};
use riposte_domain::now_ms;
use riposte_domain::{MalopId, Operator};
use riposte_metrics::Metrics;
use riposte_policy::Gate;
use riposte_service::OperatorConfig;
use riposte_service::hints::{HINTS_PER_BITE, HintPace};
use riposte_service::{FollowPolicy, Service};
use riposte_store::Store;
use riposte_store::prelude::*;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Arguments of `riposte run`.
#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// The operator configuration (TOML).
    #[arg(long)]
    pub config: PathBuf,
    /// Run one cycle and exit (for cron).
    #[arg(long)]
    pub once: bool,
}

/// `riposte approvals ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum ApprovalsCommand {
    /// List the actions waiting for an operator (a table; `--json` for scripts).
    List(ListArgs),
    /// Approve one action; it runs once, at the service's next cycle.
    Approve(Decide),
    /// Deny one action; it never runs.
    Deny(Decide),
}

/// Just the configuration file.
#[derive(Debug, Args)]
pub(crate) struct ConfigArg {
    /// The operator configuration (TOML).
    #[arg(long)]
    pub config: PathBuf,
}

/// Arguments of `riposte status`.
#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    /// The operator configuration (TOML).
    #[arg(long)]
    pub config: PathBuf,
    /// Print the status as JSON (times in ms since the epoch).
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `approvals list`.
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// The operator configuration (TOML).
    #[arg(long)]
    pub config: PathBuf,
    /// Print the pending approvals as JSON (times in ms since the epoch).
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `approve` / `deny`.
#[derive(Debug, Args)]
pub(crate) struct Decide {
    /// The operator configuration (TOML).
    #[arg(long)]
    pub config: PathBuf,
    /// The action id (a unique prefix is enough).
    pub id: String,
    /// The action hash shown by `approvals list`: the approval is refused if the action
    /// changed since.
    #[arg(long)]
    pub hash: Option<String>,
}

/// Arguments of `riposte undo`.
#[derive(Debug, Args)]
pub(crate) struct UndoArgs {
    /// The operator configuration (TOML).
    #[arg(long)]
    pub config: PathBuf,
    /// The action to undo (a unique prefix is enough).
    pub action_id: String,
}

/// Who decides from the command line: the OS account the command runs as (its effective
/// uid), as `os:NAME`, never a name the caller types or sets in the environment, so the
/// audit trail names an identity the OS authenticated.
pub(crate) fn os_operator() -> anyhow::Result<Operator> {
    let uid = nix::unistd::Uid::effective();
    let user = nix::unistd::User::from_uid(uid)
        .with_context(|| format!("looking up the account of uid {uid}"))?;
    Ok(match user {
        Some(user) => Operator::os_account(&user.name),
        None => Operator::os_account(&format!("uid-{uid}")),
    })
}

/// Builds the Cybereason client from the configuration's `[service.server]`.
pub(crate) fn client_from_config(config: &OperatorConfig) -> anyhow::Result<Client> {
    let server = config.service.server.as_ref().with_context(|| {
        format!(
            "{}: [service.server] is required to reach a Cybereason server",
            config.source.display()
        )
    })?;
    let credentials = Credentials::from_file_or_env(server.credentials_file.as_deref())?;
    let mut client_config = ClientConfig::new(server.base_url.clone(), credentials);
    client_config.timeouts.request = Duration::from_secs(server.request_timeout_secs);
    client_config.ca_file = server.ca_file.clone();
    client_config.pinned_certificate = server.pinned_certificate;
    Ok(Client::new(client_config)?)
}

pub(crate) fn load_config(path: &Path) -> anyhow::Result<OperatorConfig> {
    Ok(OperatorConfig::load(path)?)
}

/// `riposte run`: the poll loop, until SIGINT/SIGTERM (or one cycle with `--once`); SIGHUP
/// reloads the configuration and the plugins between cycles. With `[service.syslog]`
/// enabled, the Malops named by the server's syslog events are evaluated between polls as
/// they come; the polls keep their interval.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    // First of all, so that a stop asked for while the plugins load is a clean stop after
    // the first cycle rather than a death by signal.
    let mut shutdown = shutdown_signal()?;
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("installing the SIGHUP handler")?;
    let config = load_config(&args.config)?;
    let client = Arc::new(client_from_config(&config)?);
    let metrics = Arc::new(Metrics::new());
    // Served until this function returns (dropping it stops the endpoint).
    let _endpoint = match config.service.metrics_listen {
        Some(listen) => Some(riposte_metrics::serve(listen, metrics.clone()).await?),
        None => None,
    };
    // Stopped when this function returns (dropping it closes every socket).
    let (listener, mut hints) = match start_syslog(&config, args.once).await? {
        Some((listener, hints)) => (Some(listener), Some(hints)),
        None => (None, None),
    };
    if let Some(listener) = &listener {
        // Read at every scrape, so drops show even when no message gets through.
        metrics.watch_syslog(listener.counters());
    }
    let follow = FollowPolicy::from(&config.service.follow);
    let console = riposte_console::ConsoleConfig::load(&args.config)?;
    let mut service = Service::start(config, client, follow, metrics.clone()).await?;
    // Served until this function returns (dropping it stops serving); not for --once.
    let _console = match console {
        Some(settings) if !args.once => Some(start_console(settings, &service).await?),
        _ => None,
    };
    // Stopped (and given EXPORT_GRACE to deliver what it queued) when the loop ends.
    let export = start_export(service.config(), service.audit_appended())?;
    if let Some(export) = &export {
        // Read at every scrape of the metrics endpoint.
        metrics.watch_audit_export(export.stats());
    }
    let membership = service.membership().clone();
    let heartbeat = membership.spawn();
    let mut role = membership.watch();
    // A failed cycle of --once: the command's error, after the same stop as any other.
    let mut failed = None;
    let pace = HintPace::new();
    'cycles: loop {
        let acting = membership.may_act();
        if !acting && args.once {
            heartbeat.abort();
            return Err(not_acting(&membership.role()));
        }
        if !acting {
            tracing::info!(role = ?membership.role(), "standing by: another host acts");
        }
        // A cycle in flight always finishes: every action in it is ledgered and settled.
        let cycle = if acting {
            service.run_cycle().await.map(Some)
        } else {
            Ok(None)
        };
        match cycle {
            Ok(Some(report)) => tracing::info!(?report, "cycle done"),
            Ok(None) => {}
            // With --once no poll follows: the failure is the command's, for cron and timers.
            Err(error) if args.once => {
                failed = Some(error.context("the cycle failed"));
                break;
            }
            Err(error) => tracing::error!("cycle failed, retrying at the next poll: {error:#}"),
        }
        if args.once {
            break;
        }
        let interval = Duration::from_secs(service.config().service.poll_interval_secs.max(1));
        let next_poll = tokio::time::Instant::now() + interval;
        loop {
            // However many events come, the poll runs when it is due.
            if tokio::time::Instant::now() >= next_poll {
                break;
            }
            tokio::select! {
                biased;
                _ = shutdown.recv() => {
                    tracing::info!("signal received: stopping after the cycle in flight");
                    break 'cycles;
                }
                _ = tokio::time::sleep_until(next_poll) => break,
                // Took the lease over (its holder died or left): act at once.
                Ok(()) = role.changed(), if !membership.may_act() => {
                    if membership.may_act() {
                        tracing::warn!(role = ?membership.role(), "this host acts now");
                        break;
                    }
                }
                // A hang-up during a cycle waits for its end: no invocation runs under two rules.
                _ = hangup.recv() => {
                    // A changed [service.syslog] applies at the next restart (need_restart).
                    match service.reload(&args.config).await {
                        Ok(report) => tracing::info!(?report, "configuration reloaded"),
                        Err(error) => tracing::error!("{error:#}"),
                    }
                    break;
                }
                hint = next_hint(&mut hints) => {
                    let Some(first) = hint else {
                        tracing::error!("the syslog listener stopped; polling only");
                        hints = None;
                        continue;
                    };
                    // Paced over a flood (a wait of at most 1/HINT_BITES_PER_SEC s).
                    pace.ready().await;
                    let ids = take_hints(first, hints.as_mut());
                    let received = riposte_domain::now_ms();
                    // The acting host hears the same events, and its polls cover them.
                    if membership.may_act() {
                        match service.evaluate_hinted(&ids).await {
                            Ok(report) => tracing::info!(?report, hinted = ids.len(), "hinted Malops evaluated"),
                            Err(error) => tracing::warn!("hinted Malops not evaluated, the next poll covers them: {error:#}"),
                        }
                    }
                    // Every host tells its own listener's last event (after any evaluation:
                    // nothing is written for the console before a containment).
                    membership.event_received(received).await;
                }
            }
        }
    }
    // The one way out once the service runs (a signal, the end of --once, its failure).
    if let Some(listener) = listener {
        listener.shutdown().await;
    }
    service.drain_followups().await;
    // Gives the lease up, so that another host (or the next run of a timer) acts at once.
    heartbeat.abort();
    membership.leave().await;
    // Notifications within NOTIFY_FLUSH_GRACE; what is left is logged as a count.
    let synced = service.close().await.map(drop);
    if let Some(export) = export
        && let Err(error) = export.shutdown(EXPORT_GRACE).await
    {
        tracing::error!("the SIEM export stopped on an error: {error}");
    }
    match failed {
        Some(error) => synced.and(Err(error)),
        None => synced,
    }
}

/// Serves the console (`[console]`) over the service's store and audit trail. The pages
/// show the configuration `riposte run` started with; a reload applies to them at the next
/// restart.
async fn start_console(
    settings: riposte_console::ConsoleConfig,
    service: &Service,
) -> anyhow::Result<riposte_console::ConsoleServer> {
    let server = riposte_console::Console::serve_for(settings, service)
        .await
        .context("starting the console of [console]")?;
    tracing::info!(url = %server.url(), "the console is served");
    Ok(server)
}

/// How long the SIEM export may take, on the way out, to deliver what it has queued.
const EXPORT_GRACE: Duration = Duration::from_secs(5);

/// Starts the SIEM export of the audit trail when `[service.audit.export]` enables it. It
/// runs as its own task and never holds the service up: when the collector is away, the
/// trail is the buffer.
fn start_export(
    config: &OperatorConfig,
    appended: tokio::sync::watch::Receiver<u64>,
) -> anyhow::Result<Option<riposte_audit::ExportHandle>> {
    let audit = &config.service.audit;
    if !audit.export.enabled {
        return Ok(None);
    }
    let handle = riposte_audit::Exporter::new(&audit.export, &audit.path)
        .start(Some(appended))
        .with_context(|| {
            format!(
                "{}: starting the SIEM export of [service.audit.export]",
                config.source.display()
            )
        })?;
    tracing::info!(collector = %audit.export.address, cursor = *handle.cursor().borrow(),
        "exporting the audit trail to the SIEM");
    Ok(Some(handle))
}

/// Why `riposte run --once` did nothing on a shared database.
fn not_acting(role: &riposte_service::Role) -> anyhow::Error {
    match role {
        riposte_service::Role::Standby { holder, until_ms } => anyhow::anyhow!(
            "another host ({holder}) holds the {} lease until {until_ms} ms: it runs the cycles; \
             this one did nothing",
            riposte_service::POLLER_LEASE
        ),
        _ => anyhow::anyhow!(
            "the state database is unreachable: nothing was done (a host that cannot record \
             what it does does not act)"
        ),
    }
}

/// Starts the syslog listener when `[service.syslog]` enables it (not for `--once`: one
/// cycle reads everything an event would name).
async fn start_syslog(
    config: &OperatorConfig,
    once: bool,
) -> anyhow::Result<Option<(riposte_syslog::SyslogListener, riposte_syslog::HintReceiver)>> {
    let syslog = &config.service.syslog;
    if !syslog.enabled || once {
        return Ok(None);
    }
    let (listener, hints) = riposte_syslog::SyslogListener::start(syslog)
        .await
        .with_context(|| {
            format!(
                "{}: starting the syslog listener of [service.syslog]",
                config.source.display()
            )
        })?;
    let addrs = listener.local_addrs();
    tracing::info!(tcp = ?addrs.tcp, tls = ?addrs.tls, udp = ?addrs.udp,
        "listening for the server's syslog Malop events");
    Ok(Some((listener, hints)))
}

/// The next hint; never, without a listener.
async fn next_hint(
    hints: &mut Option<riposte_syslog::HintReceiver>,
) -> Option<riposte_syslog::MalopHint> {
    match hints {
        Some(hints) => hints.recv().await,
        None => std::future::pending().await,
    }
}

/// `first` and the hints ready now, at most [`HINTS_PER_BITE`], as the service's Malop ids
/// (the only thing taken from an event).
pub(crate) fn take_hints(
    first: riposte_syslog::MalopHint,
    hints: Option<&mut riposte_syslog::HintReceiver>,
) -> Vec<MalopId> {
    let mut ids = vec![MalopId::new(first.malop_id.into_string())];
    if let Some(hints) = hints {
        while ids.len() < HINTS_PER_BITE {
            match hints.try_recv() {
                Ok(hint) => ids.push(MalopId::new(hint.malop_id.into_string())),
                Err(_) => break,
            }
        }
    }
    ids
}

fn shutdown_signal() -> anyhow::Result<tokio::sync::mpsc::Receiver<()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
        let _ = tx.send(()).await;
    });
    Ok(rx)
}

/// `riposte status`: plugins, modes, budgets left, paused plugins, approvals, last poll, and
/// the Malops offered with parts that could not be read (waiting to be read again).
pub fn status(args: StatusArgs) -> anyhow::Result<()> {
    let config = load_config(&args.config)?;
    let store = Arc::new(open_store(&config)?);
    let now = now_ms();
    let snapshot = store.status(now)?;
    let gate = Gate::new(&config.policy, store.clone())?;
    let mut plugins = Vec::new();
    for p in &config.plugins {
        let policy = p.policy();
        plugins.push(json!({
            "name": p.name, "mode": p.rules.mode, "promote": p.rules.promote, "sha256": p.sha256,
            "budgets": gate.budget_status(Some(&policy), now)?,
            "paused_until_ms": store.paused_until(p.name.as_str(), now)?,
        }));
    }
    let status = json!({
        "plugins": plugins,
        "global_budgets": gate.budget_status(None, now)?,
        "paused_plugins": snapshot.paused_plugins,
        "pending_approvals": snapshot.pending_approvals,
        "last_poll_ms": snapshot.last_poll_ms(),
        "sources": snapshot.sources,
        "actions_by_state": snapshot.actions_by_state,
        "incomplete_malops": store.incomplete_summary()?,
        "hosts": hosts_status(&snapshot, now),
        "leases": snapshot.leases,
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        println!("{}", super::table::status(&status, now));
    }
    Ok(())
}

/// Every host that shares the database: its last heartbeat, how long ago, and what it
/// holds (the acting host holds the poller lease).
fn hosts_status(snapshot: &riposte_store::StatusSnapshot, now: i64) -> Vec<serde_json::Value> {
    snapshot
        .hosts
        .iter()
        .map(|h| {
            let lease = snapshot
                .leases
                .iter()
                .find(|l| l.holder == h.host_id && l.expires_at_ms > now)
                .map(|l| l.name.clone());
            json!({
                "host": h.host_id, "version": h.version, "started_at_ms": h.started_at_ms,
                "last_heartbeat_ms": h.heartbeat_ms, "last_syslog_event_ms": h.last_event_ms,
                "seconds_since_heartbeat": (now - h.heartbeat_ms).max(0) / 1000,
                "holds_lease": lease, "holding": h.holding,
            })
        })
        .collect()
}

pub(crate) fn open_store(config: &OperatorConfig) -> anyhow::Result<Store> {
    riposte_service::open_store(&config.service.database)
}

/// `riposte approvals ...`.
pub fn approvals(command: ApprovalsCommand) -> anyhow::Result<()> {
    match command {
        ApprovalsCommand::List(args) => {
            let config = load_config(&args.config)?;
            let now = now_ms();
            let pending = open_store(&config)?.list_pending(now)?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&pending)?);
            } else {
                println!("{}", super::table::pending_approvals(&pending, now));
            }
            Ok(())
        }
        ApprovalsCommand::Approve(args) => decide(args, true),
        ApprovalsCommand::Deny(args) => decide(args, false),
    }
}

fn decide(args: Decide, approve: bool) -> anyhow::Result<()> {
    use riposte_service::decisions::{Decided, Verdict, decide};
    let config = load_config(&args.config)?;
    let store = open_store(&config)?;
    let id = store.resolve_action_id(&args.id)?;
    let verdict = if approve {
        let seen_hash = match &args.hash {
            Some(h) => Some(
                riposte_domain::Sha256Digest::from_hex(h)
                    .with_context(|| format!("--hash `{h}` is not 64 hex digits"))?,
            ),
            None => None,
        };
        Verdict::Approve { seen_hash }
    } else {
        Verdict::Deny
    };
    let audit = open_audit(&config)?;
    let decided = decide(&store, &audit, &id, verdict, &os_operator()?, now_ms())?;
    match decided {
        Decided::Counted {
            approved_by,
            quorum,
        } => println!(
            "approval {} of {quorum} recorded for {id} (by {}); it waits for {} more",
            approved_by.len(),
            approved_by.join(", "),
            quorum as usize - approved_by.len().min(quorum as usize)
        ),
        Decided::Approved(approved) => println!(
            "approved {id} (by {}); the service executes it next",
            approved.approved_by.join(", ")
        ),
        Decided::Denied => println!("denied {id}"),
    }
    Ok(())
}

pub(crate) fn open_audit(config: &OperatorConfig) -> anyhow::Result<riposte_audit::AuditSink> {
    config.service.audit.open_sink().with_context(|| {
        format!(
            "opening the audit trail {}",
            config.service.audit.path.display()
        )
    })
}

/// `riposte undo`.
pub async fn undo(args: UndoArgs) -> anyhow::Result<()> {
    let config = load_config(&args.config)?;
    let client = Arc::new(client_from_config(&config)?);
    let follow = FollowPolicy::from(&config.service.follow);
    // One action undone: nothing serves these counters.
    let service = Service::start(config, client, follow, Arc::new(Metrics::new())).await?;
    let record = service
        .undo(&args.action_id, os_operator()?.as_str())
        .await?;
    println!("{}", serde_json::to_string_pretty(&record)?);
    // A failed undo may have queued a notification: delivered before exiting.
    service.close().await.map(drop)
}
