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
    /// Call `on-malop` with a fixture, answering imports from the fixture in memory (a quick
    /// dry run: unlike `plugin test`, no simulator, so the Malop is offered exactly as written
    /// and `list-malops` returns it in full), and print every call the plugin made as JSON.
    Run(RunArgs),
    /// Build every plugin under plugins/ into a component (Rust and Python).
    Build(crate::toolchain::BuildArgs),
    /// Replay recorded Malops against a plugin with deterministic time, served by a simulator
    /// on loopback through the real client (actions are recorded, not executed); compare its calls with `<case>.expected.json` beside each fixture and report fuel,
    /// memory and time against its budgets. Exits non-zero on a mismatch or an overrun.
    Test(TestArgs),
    /// Scaffold a new plugin (with a fixture and its expectation) that builds and passes
    /// `riposte plugin test` as generated.
    New(crate::scaffold::NewArgs),
}

/// Arguments of `riposte plugin test`.
#[derive(Debug, Args)]
pub struct TestArgs {
    /// The component file.
    pub file: PathBuf,
    /// The directory of fixtures: `<case>.json` (a Malop, an array of them, or a
    /// crimes/unified response) with `<case>.expected.json` beside each.
    #[arg(long)]
    pub fixtures: PathBuf,
    /// Write the current plan as each case's expectation instead of comparing.
    #[arg(long)]
    pub record: bool,
    /// A plugin config value, `key=value`, for every case; repeatable.
    #[arg(long = "config", value_parser = parse_key_value)]
    pub config: Vec<(String, String)>,
    /// An operator config (riposte.toml): the plugin's limits and `[plugins.values]` are taken
    /// from its `[[plugins]]` entry named `--name`.
    #[arg(long, value_name = "FILE")]
    pub config_file: Option<PathBuf>,
    /// The plugin's name in `--config-file` (default: the file name without `.wasm`).
    #[arg(long)]
    pub name: Option<String>,
    /// Fuel budget per invocation (overrides the config file and the default).
    #[arg(long)]
    pub fuel: Option<u64>,
    /// Memory budget per invocation, in bytes.
    #[arg(long)]
    pub memory_bytes: Option<usize>,
    /// Wall-clock budget per invocation, in milliseconds.
    #[arg(long)]
    pub time_ms: Option<u64>,
    /// Print the results as JSON.
    #[arg(long)]
    pub json: bool,
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
        PluginCommand::Test(args) => test(args).await,
        PluginCommand::New(args) => crate::scaffold::run(args),
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

async fn test(args: TestArgs) -> anyhow::Result<()> {
    let name = args.name.clone().unwrap_or_else(|| plugin_name(&args.file));
    let mut limits = Limits::default();
    let mut config = BTreeMap::new();
    let mut runtime_config = RuntimeConfig::default();
    if let Some(path) = &args.config_file {
        let operator = crate::config::OperatorConfig::load(path)?;
        let wanted = [name.clone(), name.replace('_', "-")];
        let entry = operator
            .plugins
            .iter()
            .find(|p| wanted.iter().any(|w| w == p.name.as_str()))
            .with_context(|| {
                format!(
                    "{} has no [[plugins]] entry named `{name}` (it has: {}); pass --name",
                    path.display(),
                    operator
                        .plugins
                        .iter()
                        .map(|p| p.name.as_str().to_owned())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })?;
        limits = crate::service::limits_of(entry);
        config.extend(entry.values.clone());
        runtime_config = crate::service::runtime_config(&operator);
    }
    if let Some(fuel) = args.fuel {
        limits.fuel = fuel;
    }
    if let Some(memory) = args.memory_bytes {
        limits.memory_bytes = memory;
    }
    if let Some(ms) = args.time_ms {
        limits.wall_clock = std::time::Duration::from_millis(ms);
    }
    runtime_config.max_memory_bytes = runtime_config.max_memory_bytes.max(limits.memory_bytes);
    config.extend(args.config);

    let cases = crate::replay::fixture_files(&args.fixtures)?;
    let runtime = Runtime::new(runtime_config)?;
    let plugin = runtime.load_file(&name, &args.file)?;
    let options = crate::replay::ReplayOptions {
        limits,
        config,
        record: args.record,
    };
    let progress = crate::progress::bar(cases.len() as u64, "replaying");
    let summary = crate::replay::run_cases(&runtime, &plugin, &cases, &options, |case| {
        progress.set_message(case.name.clone());
        progress.inc(1);
    })
    .await;
    progress.finish_and_clear();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print!("{}", crate::replay::render(&summary));
    }
    let failed = summary.failed();
    anyhow::ensure!(
        failed == 0,
        "{failed} of {} replay case(s) failed against {}",
        summary.cases.len(),
        args.fixtures.display()
    );
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
