//! The `riposte` command line: argument definitions and one module per command group.
//! This is the binary's edge, so errors are `anyhow` with context.

mod containment;
mod db;
mod plugin;
mod service;
mod table;
mod users;

pub(crate) use service::take_hints;
pub(crate) use users::{USER_ADDED, record_user_change};

use clap::{Parser, Subcommand, ValueEnum};

/// Runs detection-to-remediation rules for Cybereason EDR as sandboxed WebAssembly components.
#[derive(Debug, Parser)]
#[command(name = "riposte", version, about)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    /// Readable lines.
    Human,
    /// One JSON object per line.
    Json,
}

/// The top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Work with plugin components: inspect, run on a fixture, build.
    #[command(subcommand)]
    Plugin(plugin::PluginCommand),
    /// Run the Cybereason server simulator on loopback (for trying rules and for tests).
    Sim(riposte_sim::SimArgs),
    /// Run the service: poll the server, run the plugins, carry out allowed actions.
    Run(service::RunArgs),
    /// Show plugins, modes, budgets left, paused plugins, pending approvals, last poll.
    Status(service::StatusArgs),
    /// List, approve or deny actions waiting for an operator.
    #[command(subcommand)]
    Approvals(service::ApprovalsCommand),
    /// Apply the recorded inverse of an executed action (un-isolate, unquarantine, ...).
    Undo(service::UndoArgs),
    /// List, confirm or extend time-boxed actions (reverted at their deadline unless confirmed).
    #[command(subcommand)]
    Containment(containment::ContainmentCommand),
    /// Check or read the audit trail.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Work with the state database: copy a SQLite deployment's state into PostgreSQL.
    #[command(subcommand)]
    Db(db::DbCommand),
    /// Manage the console's users and their roles (viewer, approver, admin).
    #[command(subcommand)]
    Users(users::UsersCommand),
    /// Run the whole product on the built-in simulator and print a summary.
    Demo(DemoArgs),
}

/// Arguments of `riposte demo`.
#[derive(Debug, clap::Args)]
pub(crate) struct DemoArgs {
    /// Where the demo's database, audit trail and config go (emptied first).
    #[arg(long, default_value = "target/demo")]
    pub workdir: std::path::PathBuf,
    /// Malops the simulator seeds.
    #[arg(long, default_value_t = 12)]
    pub malops: usize,
    /// The simulator's seed (the same seed gives the same run).
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
    /// After the summary, keep the service and its console running (a cycle every 5 s, so
    /// what is approved in the console is carried out) until Ctrl-C.
    #[arg(long)]
    pub keep_running: bool,
}

/// `riposte audit ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
    /// Check the hash chain (with --key, authenticate a keyed chain; with --against, compare
    /// with a SIEM export); exits non-zero naming the first bad record.
    Verify(riposte_audit::AuditVerifyArgs),
    /// Print records, filtered by plugin, Malop and decision.
    Show(riposte_audit::AuditShowArgs),
    /// Make a new key for a keyed chain (`[service.audit] key_file`).
    Keygen(riposte_audit::AuditKeygenArgs),
    /// Key an unkeyed trail from its next record on (once, when a key is first configured).
    AdoptKey(riposte_audit::AuditAdoptKeyArgs),
}

async fn demo(args: DemoArgs) -> anyhow::Result<()> {
    let cwd = std::env::current_dir()?;
    let root = riposte_toolchain::find_root(&cwd)?;
    let workdir = if args.workdir.is_absolute() {
        args.workdir
    } else {
        root.join(args.workdir)
    };
    let options = crate::demo::DemoOptions {
        root,
        workdir,
        malops: args.malops,
        seed: args.seed,
        keep_running: args.keep_running,
    };
    let summary = crate::demo::run(options).await?;
    if args.keep_running {
        // Printed before it kept running.
        return Ok(());
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print!("{}", crate::demo::render(&summary));
    }
    Ok(())
}

/// Sets up logging. `RUST_LOG` overrides the default level (`info`; `warn` for the demo and
/// replays, whose reports are their output).
pub(crate) fn init_logging(cli: &Cli) {
    let format = cli.log_format;
    let reports = matches!(
        cli.command,
        Command::Demo(_) | Command::Plugin(plugin::PluginCommand::Test(_))
    );
    let default = if reports { "warn" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colours only for a person at a terminal: never in a file, a pipe or the journal.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Plugin(command) => plugin::run(command).await,
        Command::Sim(args) => riposte_sim::run(args).await,
        Command::Run(args) => service::run(args).await,
        Command::Status(args) => service::status(args),
        Command::Approvals(command) => service::approvals(command),
        Command::Containment(command) => containment::containment(command),
        Command::Undo(args) => service::undo(args).await,
        Command::Audit(AuditCommand::Verify(args)) => {
            riposte_audit::run_verify(&args, &mut std::io::stdout().lock())
        }
        Command::Audit(AuditCommand::Show(args)) => {
            riposte_audit::run_show(&args, &mut std::io::stdout().lock())
        }
        Command::Audit(AuditCommand::Keygen(args)) => {
            riposte_audit::run_keygen(&args, &mut std::io::stdout().lock())
        }
        Command::Audit(AuditCommand::AdoptKey(args)) => {
            riposte_audit::run_adopt_key(&args, &mut std::io::stdout().lock())
        }
        Command::Db(command) => db::run(command).await,
        Command::Users(command) => users::run(command),
        Command::Demo(args) => demo(args).await,
    }
}
