//! The `riposte` command line: argument definitions and one module per command group.
//! This is the binary's edge, so errors are `anyhow` with context.

mod plugin;

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
pub enum LogFormat {
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
    Sim(crate::sim::SimArgs),
}

/// Sets up logging. `RUST_LOG` overrides the default level (`info`).
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
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
        Command::Sim(args) => crate::sim::run(args).await,
    }
}
