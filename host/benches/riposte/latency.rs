//! 1. Invocation latency (fresh instance + `on-malop` of a no-op rule) through riposte's
//!    runtime, against bare wasmtime doing the same in the same run.
//! 2. Host-call cost: per call through the policy gate and audit, against bare calls.

use crate::bare::{BareHost, Flavor};
use crate::fixtures::{self, PluginEntry};
use crate::util::{self, median, summary};
use riposte_audit::{AuditSink, FsyncPolicy};
use riposte_domain::{Malop, MalopId, Operation};
use riposte_policy::Gate;
use riposte_runtime::{
    CallContext, Entry, Limits, LoadedPlugin, Outcome, PluginHost, RecordingHost, Runtime,
    RuntimeConfig,
};
use riposte_service::Auditor;
use riposte_sim::SimHandle;
use riposte_store::Store;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const ROUNDS: usize = 10;
const PER_ROUND: usize = 300;

/// One fresh instance + `on-malop`, timed; panics unless it completed.
pub async fn invoke(
    runtime: &Runtime,
    plugin: &LoadedPlugin,
    host: &Arc<dyn PluginHost>,
    malop: &Malop,
    values: &Arc<BTreeMap<String, String>>,
) -> Duration {
    let call = CallContext::for_malop(plugin.identity(), malop, values.clone());
    let started = Instant::now();
    let report = runtime
        .invoke(
            plugin,
            &Limits::default(),
            host.clone(),
            call,
            Entry::Malop(malop),
        )
        .await;
    let took = started.elapsed();
    assert!(
        matches!(report.outcome, Outcome::Completed),
        "{}: {:?}",
        plugin.name,
        report.outcome
    );
    took
}

/// Section 1.
pub async fn invocation(malop: &Malop) -> anyhow::Result<Value> {
    let bytes = fixtures::plugin_bytes("examples/noop-rule")?;
    let runtime = Runtime::new(RuntimeConfig::default())?;
    let plugin = runtime.load("noop-rule", &bytes, None)?;
    let host: Arc<dyn PluginHost> = Arc::new(RecordingHost::default());
    let values = Arc::new(BTreeMap::new());
    let flavors = [Flavor::Pooling, Flavor::PoolingMetered, Flavor::OnDemand];
    let bares: Vec<BareHost> = flavors
        .iter()
        .map(|f| BareHost::new(*f, &bytes))
        .collect::<anyhow::Result<_>>()?;
    let empty = BTreeMap::new();
    // Warm up both (page faults of the pools, caches), then interleave rounds so drift on a
    // shared machine hits every variant alike.
    for _ in 0..200 {
        invoke(&runtime, &plugin, &host, malop, &values).await;
        for b in &bares {
            b.invoke(malop, &empty).await?;
        }
    }
    let mut riposte_samples = Vec::new();
    let mut bare_samples = vec![Vec::new(); bares.len()];
    let mut context_samples = Vec::new();
    for _ in 0..ROUNDS {
        for _ in 0..PER_ROUND {
            riposte_samples.push(invoke(&runtime, &plugin, &host, malop, &values).await);
        }
        for (b, samples) in bares.iter().zip(&mut bare_samples) {
            for _ in 0..PER_ROUND {
                let started = Instant::now();
                b.invoke(malop, &empty).await?;
                samples.push(started.elapsed());
            }
        }
        for _ in 0..PER_ROUND {
            let started = Instant::now();
            let call = CallContext::for_malop(plugin.identity(), malop, values.clone());
            context_samples.push(started.elapsed());
            drop(call);
        }
    }
    let r = median(&riposte_samples);
    let b = median(&bare_samples[0]);
    let p99 = |s: &[Duration]| summary(s)["p99_us"].as_f64().unwrap_or(0.0);
    let mut floors = serde_json::Map::new();
    for (f, s) in flavors.iter().zip(&bare_samples) {
        floors.insert(f.name().into(), summary(s));
    }
    Ok(json!({
        "plugin": "examples/noop-rule.wasm",
        "method": format!("{ROUNDS} interleaved rounds x {PER_ROUND} sequential invocations per variant after 200 warm-up rounds; each sample is one fresh store + instance from the InstancePre + on-malop with the same detailed Malop (converted to the WIT record per call in every variant)"),
        "riposte": summary(&riposte_samples),
        "bare": floors,
        "call_context_build": summary(&context_samples),
        "ratio_p50": util::round(r.as_secs_f64() / b.as_secs_f64()),
        "ratio_p99": util::round(p99(&riposte_samples) / p99(&bare_samples[0])),
        "ratio_p50_vs_metered_floor": util::round(r.as_secs_f64() / median(&bare_samples[1]).as_secs_f64()),
    }))
}

fn calls_config(op: &str, calls: usize) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("op".to_owned(), op.to_owned()),
        ("calls".to_owned(), calls.to_string()),
    ])
}

/// Per-call cost: (median time with `n` calls − median time with none) / n.
fn per_call(with: &[Duration], without: &[Duration], n: usize) -> f64 {
    let d = median(with).as_secs_f64() - median(without).as_secs_f64();
    util::round(d.max(0.0) * 1e6 / n as f64 * 1000.0) / 1000.0
}

const N: usize = 2000;
const N_FSYNC: usize = 40;
const REPS: usize = 7;

/// Section 2.
pub async fn host_calls(
    malop: &Malop,
    sim: &SimHandle,
    client: Arc<riposte_client::Client>,
    work: &Path,
) -> anyhow::Result<Value> {
    let bytes = fixtures::plugin_bytes("examples/host-calls")?;
    let mut rows = Vec::new();

    // a. bare wasmtime: func_wrap'd imports (bindgen, sync), pooling.
    let bare = BareHost::new(Flavor::Pooling, &bytes)?;
    let mut bare_runs: BTreeMap<(&str, usize), Vec<Duration>> = BTreeMap::new();
    for (op, n) in [("config-get", 0), ("config-get", N), ("get-malop", N)] {
        let cfg = calls_config(op, n);
        bare.invoke(malop, &cfg).await?;
        for _ in 0..REPS {
            let started = Instant::now();
            bare.invoke(malop, &cfg).await?;
            bare_runs
                .entry((op, n))
                .or_default()
                .push(started.elapsed());
        }
    }
    let bare0 = &bare_runs[&("config-get", 0)];
    rows.push(json!({"path": "bare wasmtime: config.get (sync no-op import)", "per_call_us": per_call(&bare_runs[&("config-get", N)], bare0, N), "calls": N}));
    rows.push(json!({"path": "bare wasmtime: get-malop (returns a cloned WIT Malop)", "per_call_us": per_call(&bare_runs[&("get-malop", N)], bare0, N), "calls": N}));

    // b. riposte runtime, dry-run host (no gate, no audit).
    let runtime = Runtime::new(RuntimeConfig::default())?;
    let plugin = runtime.load("host-calls", &bytes, None)?;
    let host: Arc<dyn PluginHost> = Arc::new(RecordingHost::new([malop.clone()]));
    let mut runs: BTreeMap<(&str, usize), Vec<Duration>> = BTreeMap::new();
    for (op, n) in [("config-get", 0), ("config-get", N), ("get-malop", N)] {
        let values = Arc::new(calls_config(op, n));
        invoke(&runtime, &plugin, &host, malop, &values).await;
        for _ in 0..REPS {
            runs.entry((op, n))
                .or_default()
                .push(invoke(&runtime, &plugin, &host, malop, &values).await);
        }
    }
    let base = &runs[&("config-get", 0)];
    rows.push(json!({"path": "riposte runtime: config.get (async import, answered by the runtime)", "per_call_us": per_call(&runs[&("config-get", N)], base, N), "calls": N}));
    rows.push(json!({"path": "riposte runtime + dry-run RecordingHost: get-malop (no gate, no audit)", "per_call_us": per_call(&runs[&("get-malop", N)], base, N), "calls": N}));

    // c. the service: GatedHost = policy gate + audit per call, audit to a file.
    for (fsync, n) in [("\"never\"", N), ("\"every-record\"", N_FSYNC)] {
        let dir = work.join(format!("hostcalls-{}", fsync.trim_matches('"')));
        let _ = std::fs::remove_dir_all(&dir);
        let plugins = vec![
            PluginEntry::new("hc-get-0", "examples/host-calls", "shadow")
                .value("op", "get-malop")
                .value("calls", "0"),
            PluginEntry::new("hc-get-n", "examples/host-calls", "shadow")
                .value("op", "get-malop")
                .value("calls", &n.to_string()),
            PluginEntry::new("hc-comment-n", "examples/host-calls", "shadow")
                .value("op", "add-comment")
                .value("calls", &n.to_string()),
        ];
        let config = fixtures::write_config(&dir, sim, &plugins, fsync, 4)?;
        let service = fixtures::service(config, client.clone()).await?;
        let mut k = 0usize;
        let mut timed = |name: &'static str| {
            let service = &service;
            k += 1;
            let first = k * 1000;
            async move {
                let p = service
                    .plugins()
                    .iter()
                    .find(|p| p.policy.name.as_str() == name)
                    .expect("configured")
                    .clone();
                let mut samples = Vec::new();
                for i in 0..=REPS {
                    // A distinct Malop id per invocation keeps every add-comment a new action.
                    let mut m = malop.clone();
                    m.id = MalopId::new(format!("{}-{}", malop.id, first + i));
                    let started = Instant::now();
                    let report = service.invoke_on_malop(&p, &m).await;
                    let took = started.elapsed();
                    assert!(
                        matches!(report.outcome, Outcome::Completed),
                        "{name}: {:?}",
                        report.outcome
                    );
                    if i > 0 {
                        samples.push(took);
                    }
                }
                samples
            }
        };
        let zero = timed("hc-get-0").await;
        let get = timed("hc-get-n").await;
        let comment = timed("hc-comment-n").await;
        let label = fsync.trim_matches('"');
        rows.push(json!({"path": format!("service GatedHost: get-malop (grants check + audit record, fsync {label})"), "per_call_us": per_call(&get, &zero, n), "calls": n}));
        rows.push(json!({"path": format!("service GatedHost: add-comment in shadow mode (ledger lookup, gate, ledger insert, audit record, fsync {label})"), "per_call_us": per_call(&comment, &zero, n), "calls": n}));
        drop(service);
    }

    // d. the gate + audit step alone (what GatedHost::gate_query does), no wasm: audit to
    //    memory against audit to a file.
    let dir = work.join("hostcalls-direct");
    let _ = std::fs::remove_dir_all(&dir);
    let config = fixtures::write_config(
        &dir,
        sim,
        &[PluginEntry::new("direct", "examples/host-calls", "shadow")],
        "\"never\"",
        4,
    )?;
    let gate = Gate::new(&config.policy, Arc::new(Store::open_in_memory()?))?;
    let policy = config.plugins[0].policy();
    let call = CallContext::for_malop(
        riposte_runtime::PluginIdentity {
            name: "direct".into(),
            digest: config.plugins[0].sha256.to_hex(),
        },
        malop,
        Arc::new(BTreeMap::new()),
    );
    let sinks: [(&str, AuditSink, usize); 4] = [
        ("memory", AuditSink::memory(), 20_000),
        (
            "file, fsync never",
            AuditSink::open(dir.join("a.jsonl"), FsyncPolicy::Never)?,
            20_000,
        ),
        (
            "file, fsync every 100 records",
            AuditSink::open(dir.join("b.jsonl"), FsyncPolicy::Interval(100))?,
            5_000,
        ),
        (
            "file, fsync every record (default)",
            AuditSink::open(dir.join("c.jsonl"), FsyncPolicy::EveryRecord)?,
            200,
        ),
    ];
    let bare_fn = {
        // A bare host function call for scale: the same closure shape, doing nothing.
        let n = 1_000_000;
        let f: &dyn Fn(u64) -> u64 = &|x| std::hint::black_box(x + 1);
        let started = Instant::now();
        let mut acc = 0;
        for i in 0..n {
            acc = f(std::hint::black_box(i));
        }
        std::hint::black_box(acc);
        started.elapsed().as_secs_f64() * 1e6 / n as f64
    };
    let mut direct = Vec::new();
    let gate_only = {
        let n = 100_000;
        let started = Instant::now();
        for _ in 0..n {
            std::hint::black_box(gate.check_query(&policy, Operation::GetMalop));
        }
        started.elapsed().as_secs_f64() * 1e6 / n as f64
    };
    direct.push(json!({"path": "gate.check_query only", "per_call_us": util::round(gate_only * 1000.0) / 1000.0}));
    for (label, sink, n) in sinks {
        let auditor = Auditor::new(sink, Arc::new(riposte_metrics::Metrics::new()));
        let started = Instant::now();
        for _ in 0..n {
            let decision = gate.check_query(&policy, Operation::GetMalop);
            auditor.query(
                &call,
                Operation::GetMalop,
                json!({"id": call.malop_id}),
                &decision,
            );
        }
        let per = started.elapsed().as_secs_f64() * 1e6 / n as f64;
        direct.push(json!({"path": format!("gate.check_query + audit record to {label}"), "per_call_us": util::round(per * 1000.0) / 1000.0, "calls": n}));
    }
    Ok(json!({
        "plugin": "examples/host-calls.wasm (config: op, calls)",
        "method": format!("per call = (median of {REPS} invocations making N calls − median of {REPS} making none) / N, same plugin and Malop; direct rows time the gate and audit code without wasm"),
        "through_plugin": rows,
        "direct": direct,
        "bare_rust_fn_call_us": util::round(bare_fn * 1e6) / 1e6,
    }))
}
