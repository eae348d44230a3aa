//! 3. Throughput of the example plugins in shadow mode against the simulator.
//! 4. Parsing a 10,000-Malop `crimes/unified` response.
//! 5. The Python plugin: compile, cached load, instantiation.

use crate::fixtures::{self, PluginEntry, RUST_EXAMPLES};
use crate::util::{self, ms, summary};
use anyhow::Context;
use riposte_client::{Client, RESULT_LIMIT, parse};
use riposte_domain::{ElementKind, Malop, ManagementStatus, Priority, TimestampMs};
use riposte_runtime::{
    ArtifactCache, CallContext, Entry, Limits, Outcome, PluginHost, RecordingHost, Runtime,
    RuntimeConfig,
};
use riposte_service::{ReadMalop, ServicePlugin};
use riposte_sim::SimHandle;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(crate) fn shadow_entries(names: &[&str]) -> Vec<PluginEntry> {
    names
        .iter()
        .map(|n| {
            let e = PluginEntry::new(n, n, "shadow");
            if *n == "python-triage" {
                e.value("min-priority", "LOW")
            } else {
                e
            }
        })
        .collect()
}

/// Section 3.
pub async fn throughput(work: &Path, python_cache: &Path) -> anyhow::Result<Value> {
    const MALOPS: usize = 1000;
    let sim = fixtures::simulator(MALOPS, 7).await?;
    let client = fixtures::client(&sim).await?;
    let mut rows = Vec::new();

    // a. End to end: one full service cycle on a fresh state (poll both kinds, fetch the
    //    details of every Malop a plugin wants, invoke, audit, ledger).
    for (fsync, label) in [
        ("\"every-record\"", "fsync every record (default)"),
        ("\"batch\"", "fsync batch (group commit)"),
        ("\"never\"", "fsync never"),
    ] {
        let dir = work.join(format!("throughput-cycle-{}", fsync.trim_matches('"')));
        let _ = std::fs::remove_dir_all(&dir);
        let config = fixtures::write_config(&dir, &sim, &shadow_entries(&RUST_EXAMPLES), fsync, 4)?;
        let service = fixtures::service(config, client.clone()).await?;
        let started = Instant::now();
        let report = service.run_cycle().await?;
        let took = started.elapsed();
        let started = Instant::now();
        let idle = service.run_cycle().await?;
        let idle_took = started.elapsed();
        rows.push(json!({
            "stage": format!("full cycle, 3 Rust examples, {label}"),
            "malops": report.malops_seen, "evaluations": report.invocations,
            "seconds": util::round(took.as_secs_f64()),
            "evaluations_per_s": util::round(report.invocations as f64 / took.as_secs_f64()),
            "next_cycle_nothing_new_ms": ms(idle_took), "next_cycle_invocations": idle.invocations,
        }));
    }

    // b. The fetch alone: list both kinds and fetch every Malop's details (real client).
    let started = Instant::now();
    let malops = fixtures::detailed_malops(&client).await?;
    let fetch = started.elapsed();
    rows.push(json!({
        "stage": "fetch only: crimes/unified (both kinds) + get_malop_details per Malop, sequential (the cycle fetches max_detail_fetches = 8 at a time)",
        "malops": malops.len(), "seconds": util::round(fetch.as_secs_f64()),
        "malops_per_s": util::round(malops.len() as f64 / fetch.as_secs_f64()),
    }));

    // c. The evaluation stage alone on the fetched Malops: Service::evaluate_batch (sandbox,
    //    gate, ledger, audit, handled marks group-committed) on every subscribed (plugin,
    //    Malop) pair, as a cycle runs them.
    let stage = |names: &'static [&'static str], fsync: &'static str, conc: usize, n: usize| {
        let dir = work.join(format!(
            "throughput-stage-{}-{}-{conc}",
            names.len(),
            fsync.trim_matches('"')
        ));
        let sim = &sim;
        let client = client.clone();
        let malops = &malops[..n.min(malops.len())];
        async move {
            let _ = std::fs::remove_dir_all(&dir);
            let config = fixtures::write_config(&dir, sim, &shadow_entries(names), fsync, conc)?;
            fixtures::seed_cache(python_cache, &config)?;
            let service = fixtures::service(config, client).await?;
            let work: Vec<(Arc<ServicePlugin>, Arc<ReadMalop>)> = malops
                .iter()
                .flat_map(|m| {
                    let m = Arc::new(ReadMalop::from(m.clone()));
                    service
                        .plugins()
                        .iter()
                        .filter(|p| p.info.subscription.matches(&m.malop))
                        .map(|p| (p.clone(), m.clone()))
                        .collect::<Vec<_>>()
                })
                .collect();
            let started = Instant::now();
            let batch = service.evaluate_batch(futures::stream::iter(work)).await;
            let took = started.elapsed();
            anyhow::Ok(json!({
                "stage": format!("evaluation only: {} on {} fetched Malops, concurrency {conc}, fsync {}", names.join(" + "), malops.len(), fsync.trim_matches('"')),
                "malops": malops.len(), "evaluations": batch.invocations, "completed": batch.handled,
                "seconds": util::round(took.as_secs_f64()),
                "evaluations_per_s": util::round(batch.invocations as f64 / took.as_secs_f64()),
            }))
        }
    };
    static RUST: [&str; 3] = RUST_EXAMPLES;
    static PY: [&str; 1] = ["python-triage"];
    rows.push(stage(&RUST, "\"every-record\"", 4, MALOPS).await?);
    rows.push(stage(&RUST, "\"batch\"", 4, MALOPS).await?);
    rows.push(stage(&RUST, "\"never\"", 2, MALOPS).await?);
    rows.push(stage(&RUST, "\"never\"", 4, MALOPS).await?);
    rows.push(stage(&PY, "\"never\"", 2, 100).await?);
    sim.shutdown().await;
    Ok(json!({
        "simulator_malops": MALOPS,
        "method": "Simulator on loopback (axum, same process), Malops fetched by the real client; every plugin in shadow mode, so each action is decided, ledgered and audited but not sent. An evaluation is one invocation of one subscribed plugin on one Malop.",
        "rows": rows,
    }))
}

/// Malops in section 4's fetch that stays under crimes/unified's result limit.
const UNDER_LIMIT: usize = 9_000;

/// Three timed `Client::malops_updated_since(MalopProcess, since)`: the samples, the Malops
/// the last one read, and the crimes/unified queries each one made.
async fn timed_fetches(
    sim: &SimHandle,
    client: &Client,
    since: TimestampMs,
) -> anyhow::Result<(Vec<Duration>, Vec<Malop>, usize)> {
    const RUNS: usize = 3;
    let mut samples = Vec::new();
    let mut malops = Vec::new();
    sim.clear_requests();
    for _ in 0..RUNS {
        let started = Instant::now();
        malops = client
            .malops_updated_since(ElementKind::Process, since)
            .await
            .context("fetching MalopProcess Malops through the client")?;
        samples.push(started.elapsed());
    }
    let queries = sim.count("POST", "/rest/crimes/unified") / RUNS;
    Ok((samples, malops, queries))
}

/// Section 4.
pub async fn parsing() -> anyhow::Result<Value> {
    const TARGET: usize = 10_000;
    // 3 in 4 simulated Malops are MalopProcess: enough to fill one 10,000-Malop response.
    let sim = fixtures::simulator(TARGET * 4 / 3 + 8, 11).await?;
    let raw = fixtures::raw_crimes_unified(&sim, ElementKind::Process).await?;
    let mut v: Value = serde_json::from_slice(&raw)?;
    let map = v["data"]["resultIdToElementDataMap"]
        .as_object_mut()
        .expect("an envelope");
    let keep: serde_json::Map<String, Value> =
        std::mem::take(map).into_iter().take(TARGET).collect();
    let n = keep.len();
    *map = keep;
    v["data"]["totalPossibleResults"] = json!(n);
    let body = serde_json::to_vec(&v)?;
    drop(v);
    drop(raw);

    let mut samples = Vec::new();
    let mut peak = 0;
    let mut rss_peak = 0;
    let mut parsed = 0;
    for i in 0..6 {
        let base = util::heap_reset_peak();
        util::reset_rss_peak();
        let rss0 = util::rss();
        let started = Instant::now();
        let malops = parse::crimes_unified(&body, ElementKind::Process)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let took = started.elapsed();
        if i > 0 {
            samples.push(took);
        }
        peak = peak.max(util::heap_peak() - base);
        rss_peak = rss_peak.max(util::proc_status_bytes("VmHWM").saturating_sub(rss0));
        parsed = malops.len();
        drop(malops);
    }
    // The same through the real client over loopback. The simulator holds just over 10,000
    // MalopProcess Malops, so the first answer reaches crimes/unified's result limit and the
    // client narrows the time window until every Malop is read (several queries, not one).
    let client = fixtures::client(&sim).await?;
    let (fetch, all, queries) = timed_fetches(&sim, &client, 0).await?;
    // Just under the limit: the newest UNDER_LIMIT of the same Malops, which one query reads
    // whole, so the plain fetch cost is seen next to the narrowing one.
    let since = all[all.len() - UNDER_LIMIT - 1].last_update_time;
    let (under, under_malops, under_queries) = timed_fetches(&sim, &client, since).await?;
    anyhow::ensure!(
        under_malops.len() < RESULT_LIMIT as usize && under_queries == 1,
        "the under-the-limit fetch read {} Malops in {under_queries} queries",
        under_malops.len()
    );
    sim.shutdown().await;
    Ok(json!({
        "malops": parsed, "body_bytes": body.len(),
        "parse": summary(&samples),
        "peak_heap_bytes": peak,
        "peak_heap_per_body_byte": util::round(peak as f64 / body.len() as f64),
        "peak_rss_delta_bytes": rss_peak,
        "client_fetch_and_parse": summary(&fetch), "client_fetch_malops": all.len(),
        "client_fetch_queries": queries,
        "client_fetch_under_limit": summary(&under),
        "client_fetch_under_limit_malops": under_malops.len(),
        "client_fetch_under_limit_queries": under_queries,
        "method": "Body rendered by the simulator's crimes/unified handler (templateContext MALOP, with element values), trimmed to exactly 10,000 results; parse::crimes_unified timed 5 times after a warm-up. client_fetch_and_parse is Client::malops_updated_since(MalopProcess, 0) over loopback on the same simulator, 3 times: its first answer reaches the 10,000-result limit, so it includes the narrowing of the time window that reads every Malop (client_fetch_queries crimes/unified queries per fetch, each rendered by the simulator, transferred and parsed). client_fetch_under_limit is the same call for the newest 9,000 of those Malops (a malopLastUpdateTime filter), answered whole by one query: the plain fetch cost. Peak heap from a counting global allocator (peak live bytes during the parse minus live bytes before); peak RSS delta from VmHWM after resetting it (clear_refs).",
    }))
}

/// A Malop the Python rule triages (new and HIGH), or passes over (LOW: returns at once).
pub fn python_malop(base: &Malop, triaged: bool) -> Malop {
    let mut m = base.clone();
    m.management_status = ManagementStatus::Unread;
    m.priority = if triaged {
        Priority::High
    } else {
        Priority::Low
    };
    m
}

/// Section 5.
pub async fn python(malop: &Malop, cache_dir: &Path) -> anyhow::Result<Value> {
    let bytes = fixtures::plugin_bytes("python-triage")?;
    let runtime = Runtime::new(RuntimeConfig::default())?;
    let _ = std::fs::remove_dir_all(cache_dir);
    let cache = ArtifactCache::open(cache_dir)?;
    let started = Instant::now();
    let plugin = runtime.load("python-triage", &bytes, Some(&cache))?;
    let first = started.elapsed();
    drop(plugin);
    let artifact_bytes = std::fs::read_dir(cache_dir)?
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
        .map(|e| e.metadata().map_or(0, |m| m.len()))
        .sum::<u64>();
    let mut cached = Vec::new();
    let mut plugin = None;
    for _ in 0..5 {
        let started = Instant::now();
        plugin = Some(runtime.load("python-triage", &bytes, Some(&cache))?);
        cached.push(started.elapsed());
    }
    let plugin = plugin.expect("loaded");
    let host: Arc<dyn PluginHost> = Arc::new(RecordingHost::default());
    let mut describe = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        runtime.describe(&plugin).await?;
        describe.push(started.elapsed());
    }
    let mut invocations = BTreeMap::new();
    for (label, triaged) in [
        (
            "on-malop, passed over (LOW): instantiation + a trivial call",
            false,
        ),
        ("on-malop, triaged (HIGH, 2 host calls)", true),
    ] {
        let m = python_malop(malop, triaged);
        let mut samples = Vec::new();
        for i in 0..21 {
            let call = CallContext::for_malop(plugin.identity(), &m, Arc::new(BTreeMap::new()));
            let started = Instant::now();
            let report = runtime
                .invoke(
                    &plugin,
                    &Limits::default(),
                    host.clone(),
                    call,
                    Entry::Malop(&m),
                )
                .await;
            anyhow::ensure!(
                matches!(report.outcome, Outcome::Completed),
                "python-triage: {:?}",
                report.outcome
            );
            if i > 0 {
                samples.push(started.elapsed());
            }
        }
        invocations.insert(label, summary(&samples));
    }
    Ok(json!({
        "component_bytes": bytes.len(),
        "artifact_bytes": artifact_bytes,
        "first_load_compile_s": util::round(first.as_secs_f64()),
        "cached_load": summary(&cached),
        "describe": summary(&describe),
        "invocation": invocations,
        "method": "Runtime::load with an empty ArtifactCache (Cranelift compile + world check + tagged artifact write), then 5 loads from the cache (read + tag check (keyed BLAKE3) + deserialize + world check + instantiate_pre). describe and on-malop each run in a fresh instance (pooling allocator, copy-on-write memory image).",
    }))
}
