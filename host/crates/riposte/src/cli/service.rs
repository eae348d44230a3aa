//! `riposte run`, `status`, `approvals`, `undo`: the operator's commands around the service.

use anyhow::Context;
use clap::{Args, Subcommand};
use riposte_audit::{AuditSink, Call, Entry, Redacted};
use riposte_client::{Client, ClientConfig, Credentials};
use riposte_metrics::Metrics;
use riposte_policy::Gate;
use riposte_service::OperatorConfig;
use riposte_service::{FollowPolicy, Service, now_ms};
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
    /// List the actions waiting for an operator.
    List(ConfigArg),
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
    /// Who decides (recorded in the audit trail). Defaults to $USER.
    #[arg(long, env = "USER", default_value = "operator")]
    pub by: String,
}

/// Arguments of `riposte undo`.
#[derive(Debug, Args)]
pub(crate) struct UndoArgs {
    /// The operator configuration (TOML).
    #[arg(long)]
    pub config: PathBuf,
    /// The action to undo (a unique prefix is enough).
    pub action_id: String,
    /// Who asks (recorded in the audit trail). Defaults to $USER.
    #[arg(long, env = "USER", default_value = "operator")]
    pub by: String,
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

fn load_config(path: &Path) -> anyhow::Result<OperatorConfig> {
    Ok(OperatorConfig::load(path)?)
}

/// `riposte run`: the poll loop, until SIGINT/SIGTERM (or one cycle with `--once`); SIGHUP
/// reloads the configuration and the plugins between cycles.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let config = load_config(&args.config)?;
    let client = Arc::new(client_from_config(&config)?);
    let metrics = Arc::new(Metrics::new());
    // Served until this function returns (dropping it stops the endpoint).
    let _endpoint = match config.service.metrics_listen {
        Some(listen) => Some(riposte_metrics::serve(listen, metrics.clone()).await?),
        None => None,
    };
    let follow = FollowPolicy::from(&config.service.follow);
    let mut service = Service::start(config, client, follow, metrics).await?;
    let mut shutdown = shutdown_signal()?;
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("installing the SIGHUP handler")?;
    loop {
        // A cycle in flight always finishes: every action in it is ledgered and settled.
        match service.run_cycle().await {
            Ok(report) => tracing::info!(?report, "cycle done"),
            // With --once no poll follows: the failure is the command's, for cron and timers.
            Err(error) if args.once => {
                service.sync_audit()?;
                return Err(error.context("the cycle failed"));
            }
            Err(error) => tracing::error!("cycle failed, retrying at the next poll: {error:#}"),
        }
        if args.once {
            break;
        }
        let interval = Duration::from_secs(service.config().service.poll_interval_secs.max(1));
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            // A hang-up during a cycle waits for its end: no invocation runs under two rules.
            _ = hangup.recv() => match service.reload(&args.config).await {
                Ok(report) => tracing::info!(?report, "configuration reloaded"),
                Err(error) => tracing::error!("{error:#}"),
            },
            _ = shutdown.recv() => {
                tracing::info!("signal received: stopping after the cycle in flight");
                break;
            }
        }
    }
    service.sync_audit()
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
pub fn status(args: ConfigArg) -> anyhow::Result<()> {
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
    });
    println!("{}", serde_json::to_string_pretty(&status)?);
    Ok(())
}

fn open_store(config: &OperatorConfig) -> anyhow::Result<Store> {
    let path = &config.service.database;
    Store::open(path).with_context(|| format!("opening the state database {}", path.display()))
}

/// `riposte approvals ...`.
pub fn approvals(command: ApprovalsCommand) -> anyhow::Result<()> {
    match command {
        ApprovalsCommand::List(args) => {
            let config = load_config(&args.config)?;
            let pending = open_store(&config)?.list_pending(now_ms())?;
            println!("{}", serde_json::to_string_pretty(&pending)?);
            Ok(())
        }
        ApprovalsCommand::Approve(args) => decide(args, true),
        ApprovalsCommand::Deny(args) => decide(args, false),
    }
}

fn decide(args: Decide, approve: bool) -> anyhow::Result<()> {
    let config = load_config(&args.config)?;
    let store = open_store(&config)?;
    let id = store.resolve_action_id(&args.id)?;
    let hash = match &args.hash {
        Some(h) => Some(
            riposte_domain::Sha256Digest::from_hex(h)
                .with_context(|| format!("--hash `{h}` is not 64 hex digits"))?,
        ),
        None => None,
    };
    let now = now_ms();
    if approve {
        store.approve(&id, &args.by, hash.as_ref(), now)?;
    } else {
        store.deny(&id, &args.by, now)?;
    }
    let record = store.get_action(&id)?;
    let audit = AuditSink::open(&config.service.audit.path, config.service.audit.fsync)?;
    let mut entry = Entry::new(
        now,
        Call::event(if approve {
            "approval-granted"
        } else {
            "approval-denied"
        }),
    );
    entry.plugin = Some(record.plugin.clone());
    entry.plugin_digest = Some(record.plugin_digest);
    entry.malop = record.malop_id.clone();
    entry.arguments = Redacted::from_value(
        json!({ "action_id": id.as_str(), "by": args.by, "request_hash": record.request_hash }),
    );
    audit.append(&entry)?;
    audit.sync()?;
    println!(
        "{} {}",
        if approve { "approved" } else { "denied" },
        id.as_str()
    );
    Ok(())
}

/// `riposte undo`.
pub async fn undo(args: UndoArgs) -> anyhow::Result<()> {
    let config = load_config(&args.config)?;
    let client = Arc::new(client_from_config(&config)?);
    let follow = FollowPolicy::from(&config.service.follow);
    // One action undone: nothing serves these counters.
    let service = Service::start(config, client, follow, Arc::new(Metrics::new())).await?;
    let record = service.undo(&args.action_id, &args.by).await?;
    println!("{}", serde_json::to_string_pretty(&record)?);
    service.sync_audit()
}
