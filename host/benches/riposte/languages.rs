//! Section 8: one rule per guest language (Rust, Python, JavaScript), measured the same way in
//! one run: component size, first load (compile), cached load, instantiation alone
//! (`describe`), one `on-malop` invocation, and memory per live instance. Ratios are against
//! the Rust rule of the same run.

use crate::fixtures;
use crate::memory;
use crate::util::{self, ms, summary};
use riposte_domain::Malop;
use riposte_runtime::{ArtifactCache, PluginHost, RecordingHost, Runtime, RuntimeConfig};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The goals of issue 17 for the interpreted languages.
pub const GOAL_CACHED_LOAD_MS: f64 = 100.0;
/// The per-invocation goal, in milliseconds.
pub const GOAL_INVOCATION_MS: f64 = 2.0;

/// One language's rule and the Malop it acts on.
struct Subject {
    language: &'static str,
    plugin: &'static str,
    malop: Malop,
    /// Live instances held at once for the memory figure.
    instances: usize,
}

fn subjects(ransomware: &Malop) -> anyhow::Result<Vec<Subject>> {
    let mut rust_malop = ransomware.clone();
    for m in &mut rust_malop.machines {
        m.connected = true;
        m.isolated = false;
    }
    let fixture =
        fixtures::root().join("plugins/lateral-movement/fixtures/lateral-movement-must-act.json");
    let lateral: Malop = serde_json::from_slice(&std::fs::read(&fixture)?)?;
    Ok(vec![
        Subject {
            language: "rust",
            plugin: "ransomware-containment",
            malop: rust_malop.clone(),
            instances: 32,
        },
        Subject {
            language: "python",
            plugin: "python-triage",
            malop: crate::load::python_malop(&rust_malop, true),
            instances: 8,
        },
        Subject {
            language: "javascript",
            plugin: "lateral-movement",
            malop: lateral,
            instances: 8,
        },
    ])
}

async fn invoke_samples(
    runtime: &Runtime,
    plugin: &riposte_runtime::LoadedPlugin,
    malop: &Malop,
    n: usize,
) -> anyhow::Result<Vec<Duration>> {
    let host: Arc<dyn PluginHost> = Arc::new(RecordingHost::new([malop.clone()]));
    let values = Arc::new(BTreeMap::new());
    let mut samples = Vec::new();
    for i in 0..=n {
        let took = crate::latency::invoke(runtime, plugin, &host, malop, &values).await;
        if i > 0 {
            samples.push(took);
        }
    }
    Ok(samples)
}

async fn measure(subject: &Subject, work: &Path) -> anyhow::Result<Value> {
    let bytes = fixtures::plugin_bytes(subject.plugin)?;
    let runtime = Arc::new(Runtime::new(RuntimeConfig::default())?);
    let cache_dir = work.join(format!("languages-{}", subject.language));
    let _ = std::fs::remove_dir_all(&cache_dir);
    let cache = ArtifactCache::open(&cache_dir)?;
    let started = Instant::now();
    drop(runtime.load(subject.plugin, &bytes, Some(&cache))?);
    let first = started.elapsed();
    let mut cached = Vec::new();
    let mut plugin = None;
    for _ in 0..5 {
        let started = Instant::now();
        plugin = Some(runtime.load(subject.plugin, &bytes, Some(&cache))?);
        cached.push(started.elapsed());
    }
    let plugin = plugin.expect("loaded five times");
    let mut describe = Vec::new();
    for _ in 0..11 {
        let started = Instant::now();
        runtime.describe(&plugin).await?;
        describe.push(started.elapsed());
    }
    let invocation = invoke_samples(&runtime, &plugin, &subject.malop, 20).await?;
    let breakdown = cached_load_breakdown(&runtime, &cache, &bytes)?;
    // Pooling setting: keep each slot's memory and tables resident between instances.
    let resident = Runtime::new(RuntimeConfig {
        keep_resident_bytes: KEEP_RESIDENT,
        ..RuntimeConfig::default()
    })?;
    let resident_plugin = resident.load(subject.plugin, &bytes, Some(&cache))?;
    let resident_invocation =
        invoke_samples(&resident, &resident_plugin, &subject.malop, 20).await?;
    drop(resident_plugin);
    // A second plugin built on the same interpreter shares nothing today: each load holds its
    // own compiled copy.
    let rss0 = util::rss();
    let second = runtime.load(&format!("{}-2", subject.plugin), &bytes, Some(&cache))?;
    let second_plugin_rss = util::rss().saturating_sub(rss0);
    drop(second);
    let memory = memory::per_instance(
        &runtime,
        subject.plugin,
        &subject.malop,
        subject.instances,
        &cache,
    )
    .await?;
    Ok(json!({
        "language": subject.language,
        "plugin": subject.plugin,
        "component_bytes": bytes.len(),
        "first_load_ms": ms(first),
        "cached_load": summary(&cached),
        "instantiate_and_describe": summary(&describe[1..]),
        "invocation": summary(&invocation),
        "memory": memory,
        "investigation": {
            "cached_load_breakdown_ms": breakdown,
            "invocation_keep_resident": summary(&resident_invocation),
            "keep_resident_bytes": KEEP_RESIDENT,
            "rss_of_loading_it_again_bytes": second_plugin_rss,
        },
    }))
}

/// Bytes kept resident per pool slot in the pooling-setting experiment.
const KEEP_RESIDENT: usize = 32 << 20;

/// Where a cached load's time goes: reading the artifact, hashing it (the cost of its tag
/// check), deserializing it, and the rest of `Runtime::load` (world check, pre-instantiation,
/// copy-on-write memory images).
fn cached_load_breakdown(
    runtime: &Runtime,
    cache: &ArtifactCache,
    component: &[u8],
) -> anyhow::Result<Value> {
    let path = cache.artifact_path(runtime.engine(), &riposte_runtime::sha256_hex(component));
    let started = Instant::now();
    let stored = std::fs::read(&path)?;
    let read = started.elapsed();
    let started = Instant::now();
    std::hint::black_box(blake3::keyed_hash(&[7; 32], &stored));
    let hash = started.elapsed();
    let started = Instant::now();
    // SAFETY: the artifact was written by this process's runtime a moment ago (after its
    // 32-byte tag); the bench reads back its own file.
    let deserialized =
        unsafe { wasmtime::component::Component::deserialize(runtime.engine(), &stored[32..]) };
    let deserialize = started.elapsed();
    deserialized?;
    let started = Instant::now();
    std::hint::black_box(riposte_runtime::sha256_hex(component));
    let component_digest = started.elapsed();
    Ok(json!({
        "artifact_bytes": stored.len(),
        "read": ms(read),
        "keyed_blake3_of_artifact (≈ tag check)": ms(hash),
        "sha256_of_component (pin)": ms(component_digest),
        "deserialize": ms(deserialize),
    }))
}

fn p50_ms(v: &Value) -> f64 {
    v["p50_us"].as_f64().unwrap_or(f64::NAN) / 1000.0
}

/// Section 8.
pub async fn languages(ransomware: &Malop, work: &Path) -> anyhow::Result<Value> {
    let mut rows = Vec::new();
    for subject in subjects(ransomware)? {
        eprintln!("      {} ({}) ...", subject.language, subject.plugin);
        rows.push(measure(&subject, work).await?);
    }
    let baseline = rows[0].clone();
    for row in &mut rows {
        let ratio = |a: f64, b: f64| util::round(a / b);
        let size = row["component_bytes"].as_f64().unwrap_or(0.0);
        let base_size = baseline["component_bytes"].as_f64().unwrap_or(1.0);
        let rss = row["memory"]["rss_per_instance_bytes"]
            .as_f64()
            .unwrap_or(0.0);
        let base_rss = baseline["memory"]["rss_per_instance_bytes"]
            .as_f64()
            .unwrap_or(1.0)
            .max(1.0);
        row["vs_rust"] = json!({
            "component_bytes": ratio(size, base_size),
            "first_load": ratio(row["first_load_ms"].as_f64().unwrap_or(0.0), baseline["first_load_ms"].as_f64().unwrap_or(1.0)),
            "cached_load_p50": ratio(p50_ms(&row["cached_load"]), p50_ms(&baseline["cached_load"])),
            "invocation_p50": ratio(p50_ms(&row["invocation"]), p50_ms(&baseline["invocation"])),
            "rss_per_instance": ratio(rss, base_rss),
        });
        let interpreted = row["language"] != "rust";
        row["goals"] = json!({
            "cached_load_le_100ms": !interpreted || p50_ms(&row["cached_load"]) <= GOAL_CACHED_LOAD_MS,
            "invocation_le_2ms": !interpreted || p50_ms(&row["invocation"]) <= GOAL_INVOCATION_MS,
        });
    }
    Ok(json!({
        "rows": rows,
        "goal": format!("interpreted languages: cached load <= {GOAL_CACHED_LOAD_MS} ms, invocation <= {GOAL_INVOCATION_MS} ms (p50)"),
        "method": "Each language's example rule on a Malop it acts on (Rust ransomware-containment: isolate + kill; Python python-triage: comment + set status; JavaScript lateral-movement: comment + isolate), with the dry-run host. First load: Runtime::load into an empty artifact cache (compile, world check, tagged artifact written). Cached load: 5 loads from that cache. Instantiate + describe: a fresh instance and the trivial describe export (the fixed cost of an invocation). Invocation: a fresh instance + on-malop, 20 samples after a warm-up. Memory: k invocations parked inside a host call at once, RSS growth / k (second round, warm pool slots). Ratios against the Rust rule of the same run.",
    }))
}
