//! `riposte plugin ...`: inspect, run on a fixture.

use crate::domain::Malop;
use crate::runtime::{
    CallContext, Entry, Limits, PluginHost, RecordingHost, Runtime, RuntimeConfig,
};
use anyhow::Context;
use clap::{Args, Subcommand};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Plugin commands.
#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Show a component's world, imports, exports, sha256 and size.
    Inspect {
        /// The component file.
        file: PathBuf,
    },
    /// Call `on-malop` with a fixture, answering imports with a recording dry-run backend,
    /// and print every call the plugin made as JSON.
    Run(RunArgs),
    /// Build every plugin under plugins/ into a component (Rust and Python).
    Build(crate::toolchain::BuildArgs),
}

/// Arguments of `riposte plugin run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The component file.
    pub file: PathBuf,
    /// A Malop fixture (JSON).
    #[arg(long)]
    pub malop: PathBuf,
    /// A plugin config value, `key=value`; repeatable.
    #[arg(long = "config", value_parser = parse_key_value)]
    pub config: Vec<(String, String)>,
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected key=value, got `{s}`"))
}

/// Runs a plugin command.
pub async fn run(command: PluginCommand) -> anyhow::Result<()> {
    match command {
        PluginCommand::Inspect { file } => inspect(&file),
        PluginCommand::Run(args) => run_fixture(args).await,
        PluginCommand::Build(args) => {
            tokio::task::spawn_blocking(move || crate::toolchain::run(args)).await?
        }
    }
}

fn inspect(file: &Path) -> anyhow::Result<()> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let runtime = Runtime::new(RuntimeConfig::default())?;
    let inspection = runtime
        .inspect(&bytes)
        .with_context(|| format!("inspecting {}", file.display()))?;
    println!("{}", serde_json::to_string_pretty(&inspection)?);
    Ok(())
}

/// Reads a Malop fixture file.
pub fn read_malop_fixture(path: &Path) -> anyhow::Result<Malop> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{} is not a valid Malop fixture", path.display()))
}

async fn run_fixture(args: RunArgs) -> anyhow::Result<()> {
    let malop = read_malop_fixture(&args.malop)?;
    let runtime = Runtime::new(RuntimeConfig::default())?;
    let name = plugin_name(&args.file);
    let plugin = runtime.load_file(&name, &args.file)?;
    let host = Arc::new(RecordingHost::new([malop.clone()]));
    let call = CallContext::for_malop(plugin.identity(), &malop, config_map(args.config));
    let report = runtime
        .invoke(
            &plugin,
            &Limits::default(),
            host.clone() as Arc<dyn PluginHost>,
            call,
            Entry::Malop(&malop),
        )
        .await;
    let output = serde_json::json!({
        "plugin": plugin.identity(),
        "malop": malop.id,
        "calls": host.calls(),
        "report": report,
    });
    println!("{}", serde_json::to_string_pretty(&output)?);
    Ok(())
}

fn config_map(pairs: Vec<(String, String)>) -> Arc<BTreeMap<String, String>> {
    Arc::new(pairs.into_iter().collect())
}

/// The plugin's name from its file name (`ransomware_containment.wasm` → `ransomware_containment`).
pub fn plugin_name(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "plugin".to_owned())
}
