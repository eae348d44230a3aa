//! Shared helpers for the end-to-end tests: where the built plugins and the fixtures are,
//! a runtime whose compiled components are cached across test processes, and a dry run of
//! one plugin on one Malop.

pub mod cut_proxy;
pub mod gate_support;

use riposte_domain::{ActionRequest, Malop};
use riposte_runtime::{
    ArtifactCache, CallContext, Entry, InvocationReport, Limits, LoadedPlugin, PluginHost,
    RecordedCall, RecordingHost, Runtime, RuntimeConfig,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_owned()
}

/// The component built from `plugins/<name>` (or the hostile test plugin) by
/// `riposte plugin build`.
pub fn plugin_path(name: &str) -> PathBuf {
    let path = root().join("target/plugins").join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "{} is missing: build the plugins first with `cargo run -p riposte -- plugin build` (tests/run.sh does)",
        path.display()
    );
    path
}

/// The real `riposte` binary (`tests/run.sh` builds it before the tests).
pub fn riposte_bin() -> PathBuf {
    let path = root().join("target/debug/riposte");
    assert!(
        path.is_file(),
        "{} is missing: build it first with `cargo build -p riposte` (tests/run.sh does)",
        path.display()
    );
    path
}

/// A Malop fixture from `tests/fixtures/malops/<name>.json`.
pub fn fixture(name: &str) -> Malop {
    let path = root()
        .join("tests/fixtures/malops")
        .join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

/// A runtime, plus an artifact cache under target/ so that large components (the Python
/// plugin) compile once for all test processes.
pub fn runtime() -> (Runtime, ArtifactCache) {
    let runtime = Runtime::new(RuntimeConfig::default()).expect("the runtime starts");
    let cache = ArtifactCache::open(&root().join("target/riposte-test-cache"))
        .expect("the test artifact cache opens");
    (runtime, cache)
}

/// Loads a built plugin through the cache.
pub fn load(runtime: &Runtime, cache: &ArtifactCache, name: &str) -> LoadedPlugin {
    let bytes = std::fs::read(plugin_path(name)).expect("the plugin file reads");
    runtime
        .load(name, &bytes, Some(cache))
        .unwrap_or_else(|e| panic!("loading {name}: {e}"))
}

/// What one dry run produced.
pub struct DryRun {
    pub report: InvocationReport,
    pub calls: Vec<RecordedCall>,
}

impl DryRun {
    /// The actions the plugin asked for, without their reasons.
    pub fn actions(&self) -> Vec<ActionRequest> {
        self.calls
            .iter()
            .filter_map(|c| match c {
                RecordedCall::Action { request, .. } => Some(request.clone()),
                _ => None,
            })
            .collect()
    }

    /// The messages the plugin logged.
    pub fn logs(&self) -> Vec<String> {
        self.calls
            .iter()
            .filter_map(|c| match c {
                RecordedCall::Log { message, .. } => Some(message.clone()),
                _ => None,
            })
            .collect()
    }
}

/// Runs `on-malop` of `plugin` on `malop` with a recording dry-run host.
pub async fn dry_run(
    runtime: &Runtime,
    plugin: &LoadedPlugin,
    malop: &Malop,
    config: &[(&str, &str)],
    limits: &Limits,
) -> DryRun {
    let host = Arc::new(RecordingHost::new([malop.clone()]));
    let config: BTreeMap<String, String> = config
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let call = CallContext::for_malop(plugin.identity(), malop, Arc::new(config));
    let report = runtime
        .invoke(
            plugin,
            limits,
            host.clone() as Arc<dyn PluginHost>,
            call,
            Entry::Malop(malop),
        )
        .await;
    DryRun {
        report,
        calls: host.calls(),
    }
}

// ---------------------------------------------------------------------------------------
// The service tests' helpers (simulator, configuration, the real binary, bounded waits).
pub mod service_support;

/// A finished command's stdout and stderr, as one text for messages and searches.
pub fn output_text(output: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}
