//! `riposte plugin ...`: inspect, run on a fixture.

use anyhow::Context;
use clap::{Args, Subcommand};
use riposte_domain::Malop;
use riposte_runtime::{
    CallContext, Entry, Limits, PluginHost, RecordingHost, Runtime, RuntimeConfig,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Plugin commands.
#[derive(Debug, Subcommand)]
pub(crate) enum PluginCommand {
    /// Show a component's world, imports, exports, sha256 and size; its signer and, for a
    /// package, its manifest (name, version, WIT world, digest, the grants it asks for).
    Inspect {
        /// The component or package file.
        file: PathBuf,
        /// A publisher's public key to verify the signature against (repeatable); without
        /// one, the signer the signature names is shown unverified.
        #[arg(long = "public-key", value_name = "FILE")]
        public_keys: Vec<PathBuf>,
    },
    /// Create an Ed25519 key pair for signing plugins (the secret key file gets mode 0600).
    Keygen(KeygenArgs),
    /// Sign a component or package with a secret key (wasmsign2 format, embedded).
    Sign(SignArgs),
    /// Check a component's signature against publishers' public keys; non-zero exit if no
    /// pinned key signed it unchanged.
    Verify(VerifyArgs),
    /// Package a built component with its manifest (name and version from its `describe`,
    /// WIT world, digest, the grants it asks for), signed when a key is given.
    Package(PackageArgs),
    /// Call `on-malop` with a fixture, answering imports from the fixture in memory (a quick
    /// dry run: unlike `plugin test`, no simulator, so the Malop is offered exactly as written
    /// and `list-malops` returns it in full), and print every call the plugin made as JSON.
    Run(RunArgs),
    /// Build every plugin under plugins/ into a component (Rust and Python).
    Build(riposte_toolchain::BuildArgs),
    /// Replay recorded Malops against a plugin with deterministic time, served by a simulator
    /// on loopback through the real client (actions are recorded, not executed); compare its calls with `<case>.expected.json` beside each fixture and report fuel,
    /// memory and time against its budgets. Exits non-zero on a mismatch or an overrun.
    Test(TestArgs),
    /// Scaffold a new plugin (with a fixture and its expectation) that builds and passes
    /// `riposte plugin test` as generated.
    New(riposte_toolchain::scaffold::NewArgs),
}

/// Arguments of `riposte plugin test`.
#[derive(Debug, Args)]
pub(crate) struct TestArgs {
    /// The component file.
    pub file: PathBuf,
    /// The directory of fixtures: `<case>.json` (a Malop, an array of them, or a
    /// crimes/unified response) with `<case>.expected.json` beside each.
    #[arg(long)]
    pub fixtures: PathBuf,
    /// Write the current plan as each case's expectation instead of comparing.
    #[arg(long)]
    pub record: bool,
    /// The operator configuration (riposte.toml) to replay under, as the service would run
    /// the plugin: its `[[plugins]]` entry named `--name` gives its limits and values, only
    /// the Malops it subscribes to are offered, and every query and action meets the policy
    /// gate (grants, scope, protected assets, budgets, approvals, quotas), whose outcome the
    /// plan records. (The old spelling `--config key=value` still sets a value: use
    /// `--value`.)
    #[arg(long = "config", value_name = "FILE")]
    pub config: Vec<String>,
    /// A plugin config value, `key=value`, for every case; repeatable.
    #[arg(long = "value", value_parser = parse_key_value)]
    pub values: Vec<(String, String)>,
    /// An operator configuration to take only the plugin's limits and values from, without
    /// its policy.
    #[arg(long, value_name = "FILE")]
    pub config_file: Option<PathBuf>,
    /// The plugin's name in the operator configuration (default: the file name without
    /// `.wasm`).
    #[arg(long)]
    pub name: Option<String>,
    /// Replay `on-interval` too, once after each case's Malops.
    #[arg(long)]
    pub on_interval: bool,
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

/// Arguments of `riposte plugin keygen`.
#[derive(Debug, Args)]
pub(crate) struct KeygenArgs {
    /// Where the secret key goes (PEM, mode 0600; never overwritten).
    #[arg(long, value_name = "FILE")]
    pub secret_key: PathBuf,
    /// Where the public key goes (PEM): give it to operators to pin.
    #[arg(long, value_name = "FILE")]
    pub public_key: PathBuf,
}

/// Arguments of `riposte plugin sign`.
#[derive(Debug, Args)]
pub(crate) struct SignArgs {
    /// The component or package to sign.
    pub file: PathBuf,
    /// The secret key file.
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// Where the signed file goes (default: replace FILE).
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// Arguments of `riposte plugin verify`.
#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// The component or package.
    pub file: PathBuf,
    /// A publisher's public key (repeatable): one of them must have signed the file.
    #[arg(long = "public-key", value_name = "FILE", required = true)]
    pub public_keys: Vec<PathBuf>,
}

/// Arguments of `riposte plugin package`.
#[derive(Debug, Args)]
pub(crate) struct PackageArgs {
    /// The built component.
    pub file: PathBuf,
    /// An operation the plugin needs (`isolate`, `add-comment`, ...; repeatable).
    #[arg(long = "operation", value_name = "NAME")]
    pub operations: Vec<String>,
    /// A remediation kind the plugin needs (`kill-process`, ...; repeatable).
    #[arg(long = "remediation", value_name = "KIND")]
    pub remediation: Vec<String>,
    /// Sign the package with this secret key.
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Where the package goes.
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
}

/// Arguments of `riposte plugin run`.
#[derive(Debug, Args)]
pub(crate) struct RunArgs {
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
        PluginCommand::Inspect { file, public_keys } => inspect(&file, &public_keys),
        PluginCommand::Keygen(args) => keygen(&args),
        PluginCommand::Sign(args) => sign(&args),
        PluginCommand::Verify(args) => verify(&args),
        PluginCommand::Package(args) => package(args).await,
        PluginCommand::Run(args) => run_fixture(args).await,
        PluginCommand::Build(args) => {
            tokio::task::spawn_blocking(move || riposte_toolchain::run(args)).await?
        }
        PluginCommand::Test(args) => test(args).await,
        PluginCommand::New(args) => riposte_toolchain::scaffold::run(args),
    }
}

fn read_file(file: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(file).with_context(|| format!("reading {}", file.display()))
}

fn inspect(file: &Path, public_keys: &[PathBuf]) -> anyhow::Result<()> {
    let bytes = read_file(file)?;
    let runtime = Runtime::new(RuntimeConfig::default())?;
    let inspection = runtime
        .inspect(&bytes)
        .with_context(|| format!("inspecting {}", file.display()))?;
    let mut out = serde_json::to_value(&inspection)?;
    out["signature"] = signature_report(&bytes, public_keys)?;
    out["package"] = match riposte_supply::package::read(&bytes) {
        Ok(Some(info)) => serde_json::to_value(&info.manifest)?,
        Ok(None) => serde_json::Value::Null,
        Err(e) => serde_json::json!({ "error": e.to_string() }),
    };
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

/// The signers a file's signature names, and which pinned key verifies it.
fn signature_report(bytes: &[u8], public_keys: &[PathBuf]) -> anyhow::Result<serde_json::Value> {
    let claimed = riposte_supply::signing::claimed_signers(bytes).unwrap_or_default();
    if claimed.is_empty() {
        return Ok(serde_json::json!({ "signed": false }));
    }
    let mut report = serde_json::json!({ "signed": true, "signers": claimed, "verified": null });
    if !public_keys.is_empty() {
        let keys = riposte_supply::signing::load_keys(public_keys)?;
        report["verified"] = match riposte_supply::signing::verify(bytes, &keys) {
            Ok(signer) => serde_json::json!({ "by": signer }),
            Err(e) => serde_json::json!({ "error": e.to_string() }),
        };
    }
    Ok(report)
}

fn keygen(args: &KeygenArgs) -> anyhow::Result<()> {
    let public = riposte_supply::SigningKey::write_new_pair(&args.secret_key, &args.public_key)?;
    println!(
        "wrote the secret key to {} (keep it secret) and the public key to {}
key id: {}",
        args.secret_key.display(),
        args.public_key.display(),
        public.key_id()
    );
    Ok(())
}

fn sign(args: &SignArgs) -> anyhow::Result<()> {
    let key = riposte_supply::SigningKey::from_file(&args.key)?;
    let signed = key
        .sign(&read_file(&args.file)?)
        .with_context(|| format!("signing {}", args.file.display()))?;
    let out = args.output.as_ref().unwrap_or(&args.file);
    write_file(out, &signed)?;
    println!(
        "signed {} by key {}
sha256 (pin this): {}",
        out.display(),
        key.public_key().key_id(),
        riposte_runtime::sha256_hex(&signed)
    );
    Ok(())
}

fn write_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

fn verify(args: &VerifyArgs) -> anyhow::Result<()> {
    let bytes = read_file(&args.file)?;
    let keys = riposte_supply::signing::load_keys(&args.public_keys)?;
    let signer = riposte_supply::signing::verify(&bytes, &keys)
        .with_context(|| format!("{}: signature refused", args.file.display()))?;
    println!("{}: signed by key {signer}", args.file.display());
    Ok(())
}

async fn package(args: PackageArgs) -> anyhow::Result<()> {
    let bytes = read_file(&args.file)?;
    riposte_policy::Grants::from_names(&args.operations, &args.remediation)
        .map_err(|e| anyhow::anyhow!("--operation/--remediation: {e}"))?;
    let runtime = Runtime::new(RuntimeConfig::default())?;
    let name = plugin_name(&args.file);
    let plugin = runtime.load(&name, &bytes, None)?;
    let info = runtime.describe(&plugin).await?;
    let manifest = riposte_supply::Manifest {
        format: riposte_supply::package::FORMAT,
        name: info.name,
        version: info.version,
        description: info.description,
        wit: format!(
            "{}/{}@{}",
            riposte_runtime::WIT_PACKAGE,
            riposte_runtime::WIT_WORLD,
            riposte_runtime::WIT_VERSION
        ),
        component_sha256: riposte_supply::package::code_digest(&bytes)?,
        grants: riposte_supply::RequestedGrants {
            operations: args.operations,
            remediation: args.remediation,
        },
    };
    let mut packaged = riposte_supply::package::embed(&bytes, &manifest)?;
    if let Some(key) = &args.key {
        packaged = riposte_supply::SigningKey::from_file(key)?.sign(&packaged)?;
    }
    write_file(&args.output, &packaged)?;
    println!("{}", serde_json::to_string_pretty(&manifest)?);
    println!(
        "wrote {} ({}); sha256 (pin this): {}",
        args.output.display(),
        if args.key.is_some() {
            "signed"
        } else {
            "unsigned"
        },
        riposte_runtime::sha256_hex(&packaged)
    );
    Ok(())
}

/// Reads a Malop fixture file.
pub(crate) fn read_malop_fixture(path: &Path) -> anyhow::Result<Malop> {
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
        "unrecorded_calls": host.unrecorded(),
        "report": report,
    });
    println!("{}", serde_json::to_string_pretty(&output)?);
    Ok(())
}

/// What `--config` gave: the operator configuration file, and the plugin values given with
/// the old spelling `--config key=value`.
#[derive(Debug, Default)]
struct ConfigArgs {
    file: Option<PathBuf>,
    values: Vec<(String, String)>,
}

fn split_config_args(args: &[String]) -> anyhow::Result<ConfigArgs> {
    let mut file = None;
    let mut values = Vec::new();
    for arg in args {
        let path = PathBuf::from(arg);
        if !path.is_file()
            && let Ok(pair) = parse_key_value(arg)
        {
            eprintln!("note: `--config {arg}` sets a plugin value; spell it `--value {arg}`");
            values.push(pair);
            continue;
        }
        anyhow::ensure!(
            file.replace(path).is_none(),
            "--config names more than one operator configuration; give one"
        );
    }
    Ok(ConfigArgs { file, values })
}

/// The `[[plugins]]` entry of `operator` named `name` (or with `_` read as `-`).
fn plugin_entry<'a>(
    operator: &'a riposte_service::OperatorConfig,
    name: &str,
    path: &Path,
) -> anyhow::Result<&'a riposte_service::PluginConfig> {
    let wanted = [name.to_owned(), name.replace('_', "-")];
    operator
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
        })
}

async fn test(args: TestArgs) -> anyhow::Result<()> {
    let name = args.name.clone().unwrap_or_else(|| plugin_name(&args.file));
    let ConfigArgs {
        file: policy_file,
        values: legacy_values,
    } = split_config_args(&args.config)?;
    anyhow::ensure!(
        policy_file.is_none() || args.config_file.is_none(),
        "give either --config (limits, values and policy) or --config-file (limits and values only), not both"
    );
    let mut limits = Limits::default();
    let mut config = BTreeMap::new();
    let mut runtime_config = RuntimeConfig::default();
    let mut policy = None;
    if let Some(path) = policy_file.as_ref().or(args.config_file.as_ref()) {
        let operator = riposte_service::OperatorConfig::load(path)?;
        let entry = plugin_entry(&operator, &name, path)?;
        limits = entry.limits.clone();
        config.extend(entry.values.clone());
        runtime_config = riposte_service::runtime_config(&operator);
        if policy_file.is_some() {
            policy = Some(riposte_replay::ReplayPolicy {
                plugin: entry.policy(),
                operator: operator.policy.clone(),
            });
        }
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
    config.extend(legacy_values);
    config.extend(args.values);

    let cases = riposte_replay::fixture_files(&args.fixtures)?;
    let runtime = Runtime::new(runtime_config)?;
    let plugin = runtime.load_file(&name, &args.file)?;
    let policy = match policy {
        Some(policy) => {
            let info = runtime.describe(&plugin).await?;
            Some((Arc::new(policy), info))
        }
        None => None,
    };
    let options = riposte_replay::ReplayOptions {
        limits,
        config,
        record: args.record,
        on_interval: args.on_interval,
        policy,
    };
    let progress = riposte_toolchain::progress::bar(cases.len() as u64, "replaying");
    let summary = riposte_replay::run_cases(&runtime, &plugin, &cases, &options, |case| {
        progress.set_message(case.name.clone());
        progress.inc(1);
    })
    .await;
    progress.finish_and_clear();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print!("{}", riposte_replay::render(&summary));
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
pub(crate) fn plugin_name(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "plugin".to_owned())
}
