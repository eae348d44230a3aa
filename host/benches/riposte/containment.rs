//! 7. Containment latency: a ransomware Malop appears on the simulator; how long until its
//!    isolation request reaches the simulator, with the poll loop of `riposte run`.
//!
//! Stage boundaries are the arrival times of the service's requests at the simulator, seen
//! by a watcher thread polling the simulator's request log every 50 µs:
//! appear → first `crimes/unified` poll (poll wait) → first details request (fetch: list
//! reply, parse, subscription and handled checks) → last details request (details) →
//! `isolate` (the last details reply, plugin, gate, ledger, audit, send).

use crate::fixtures::{self, PluginEntry};
use crate::util::{self, ms};
use riposte_domain::{Malop, MalopId};
use riposte_runtime::{
    CallContext, Entry, Limits, Outcome, PluginHost, RecordingHost, Runtime, RuntimeConfig,
};
use riposte_sim::SimHandle;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request as the watcher saw it arrive.
#[derive(Clone, Debug)]
struct Seen {
    at: Instant,
    path: String,
    by_id: bool,
}

fn watch(sim: Arc<SimHandle>, stop: Arc<AtomicBool>, log: Arc<Mutex<Vec<Seen>>>) {
    let mut next = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let fresh: Vec<(String, bool)> = sim.with_state(|s| {
            let new = s.log.get(next..).unwrap_or_default();
            new.iter()
                .map(|r| (r.path.clone(), r.body.contains("guidList")))
                .collect()
        });
        if !fresh.is_empty() {
            let at = Instant::now();
            next += fresh.len();
            let mut log = log.lock().expect("watcher log");
            log.extend(
                fresh
                    .into_iter()
                    .map(|(path, by_id)| Seen { at, path, by_id }),
            );
        }
        std::thread::sleep(Duration::from_micros(50));
    }
}

/// Adds Malops until a ransomware one with a connected machine appears; returns its id.
pub(crate) fn add_ransomware(sim: &SimHandle) -> MalopId {
    sim.with_state(|s| {
        for m in &mut s.machines {
            m.isolated = false;
        }
        loop {
            let id = s.add_malop();
            let m = s.malop(&id).expect("just added");
            let online = m
                .machines
                .iter()
                .any(|g| s.machine(g).is_some_and(|x| x.online));
            if m.detection_type == "RANSOMWARE" && online {
                return MalopId::new(id);
            }
        }
    })
}

struct Sample {
    total: Duration,
    poll_wait: Duration,
    fetch: Duration,
    details: Duration,
    rest: Duration,
}

fn stages(log: &[Seen], t0: Instant) -> Option<Sample> {
    let after: Vec<&Seen> = log.iter().filter(|s| s.at >= t0).collect();
    let poll = after
        .iter()
        .find(|s| s.path.starts_with("/rest/crimes/unified") && !s.by_id)?;
    let iso = after.iter().find(|s| s.path.contains("/isolate"))?;
    let details: Vec<&&Seen> = after
        .iter()
        .filter(|s| s.at >= poll.at && s.at <= iso.at)
        .filter(|s| {
            (s.path.starts_with("/rest/crimes/unified") && s.by_id)
                || s.path.starts_with("/rest/visualsearch")
                || s.path.starts_with("/rest/sensors")
        })
        .collect();
    let first = details.first().map_or(iso.at, |s| s.at);
    let last = details.last().map_or(iso.at, |s| s.at);
    Some(Sample {
        total: iso.at - t0,
        poll_wait: poll.at - t0,
        fetch: first - poll.at,
        details: last - first,
        rest: iso.at - last,
    })
}

fn row(samples: &[Sample]) -> Value {
    let pick = |f: fn(&Sample) -> Duration| -> Vec<Duration> { samples.iter().map(f).collect() };
    let med = |f: fn(&Sample) -> Duration| ms(util::median(&pick(f)));
    let max = |f: fn(&Sample) -> Duration| ms(pick(f).into_iter().max().unwrap_or_default());
    json!({
        "samples": samples.len(),
        "total_ms": {"median": med(|s| s.total), "max": max(|s| s.total)},
        "poll_wait_ms": {"median": med(|s| s.poll_wait), "max": max(|s| s.poll_wait)},
        "fetch_ms": {"median": med(|s| s.fetch), "max": max(|s| s.fetch)},
        "details_ms": {"median": med(|s| s.details), "max": max(|s| s.details)},
        "last_reply_plugin_gate_send_ms": {"median": med(|s| s.rest), "max": max(|s| s.rest)},
        "after_poll_ms": {"median": ms(util::median(&samples.iter().map(|s| s.total - s.poll_wait).collect::<Vec<_>>()))},
        "all_total_ms": samples.iter().map(|s| ms(s.total)).collect::<Vec<_>>(),
    })
}

/// Section 7. `plugin_gate_us` is the measured per-action gate + ledger + audit cost.
pub async fn containment(work: &Path) -> anyhow::Result<Value> {
    let sim = Arc::new(fixtures::simulator(4, 3).await?);
    let client = fixtures::client(&sim).await?;
    let dir = work.join("containment");
    let _ = std::fs::remove_dir_all(&dir);
    let entry = PluginEntry::new(
        "ransomware-containment",
        "ransomware-containment",
        "enforce",
    )
    .value("kill-processes", "false");
    // Default audit fsync (every record), as an operator would run it.
    let config = fixtures::write_config(&dir, &sim, &[entry], "\"every-record\"", 4)?;
    let default_interval = riposte_service::config::DEFAULT_POLL_INTERVAL_SECS;
    let service = Arc::new(fixtures::service(config, client.clone()).await?);
    service.run_cycle().await?; // the seeded Malops

    let stop = Arc::new(AtomicBool::new(false));
    let log = Arc::new(Mutex::new(Vec::new()));
    let watcher = {
        let (sim, stop, log) = (sim.clone(), stop.clone(), log.clone());
        std::thread::spawn(move || watch(sim, stop, log))
    };
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut phase = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % 1000) as f64 / 1000.0
    };
    let mut results = serde_json::Map::new();
    for (label, interval_s, samples) in [
        ("shortest interval (1 s)", 1u64, 8usize),
        ("default interval", default_interval, 2),
    ] {
        let interval = Duration::from_secs(interval_s);
        let loop_stop = Arc::new(AtomicBool::new(false));
        let wake = Arc::new(tokio::sync::Notify::new());
        let poller = {
            let (service, loop_stop, wake) = (service.clone(), loop_stop.clone(), wake.clone());
            // The loop of `riposte run`: a cycle, then sleep the poll interval.
            tokio::spawn(async move {
                while !loop_stop.load(Ordering::Relaxed) {
                    if let Err(e) = service.run_cycle().await {
                        eprintln!("cycle failed: {e:#}");
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(interval) => {}
                        _ = wake.notified() => {}
                    }
                }
            })
        };
        let mut got = Vec::new();
        for _ in 0..samples {
            tokio::time::sleep(interval.mul_f64(phase())).await;
            let id = add_ransomware(&sim);
            let t0 = Instant::now();
            let deadline = t0 + interval + Duration::from_secs(20);
            let sample = loop {
                tokio::time::sleep(Duration::from_millis(2)).await;
                let found = stages(&log.lock().expect("watcher log"), t0);
                if let Some(s) = found {
                    break Some(s);
                }
                if Instant::now() > deadline {
                    eprintln!("no isolation for {id} within {interval:?} + 20 s");
                    break None;
                }
            };
            got.extend(sample);
        }
        // Let the cycle in flight finish (as `riposte run` does on a signal).
        loop_stop.store(true, Ordering::Relaxed);
        wake.notify_one();
        let _ = poller.await;
        let mut r = row(&got);
        r["poll_interval_s"] = json!(interval_s);
        results.insert(label.into(), r);
    }
    stop.store(true, Ordering::Relaxed);
    let _ = watcher.join();

    // The plugin's share, measured alone on a ransomware Malop (dry-run host, same limits).
    let runtime = Runtime::new(RuntimeConfig::default())?;
    let bytes = fixtures::plugin_bytes("ransomware-containment")?;
    let plugin = runtime.load("ransomware-containment", &bytes, None)?;
    let malops = fixtures::detailed_malops(&client).await?;
    let malop: Malop = fixtures::pick(&malops, "RANSOMWARE").clone();
    let values = Arc::new(BTreeMap::from([(
        "kill-processes".to_owned(),
        "false".to_owned(),
    )]));
    let mut plugin_samples = Vec::new();
    for i in 0..201 {
        let host: Arc<dyn PluginHost> = Arc::new(RecordingHost::default());
        let call = CallContext::for_malop(plugin.identity(), &malop, values.clone());
        let started = Instant::now();
        let report = runtime
            .invoke(
                &plugin,
                &Limits::default(),
                host,
                call,
                Entry::Malop(&malop),
            )
            .await;
        anyhow::ensure!(matches!(report.outcome, Outcome::Completed));
        if i > 0 {
            plugin_samples.push(started.elapsed());
        }
    }
    let mut details_samples = Vec::new();
    for _ in 0..20 {
        let started = Instant::now();
        client.get_malop_details(&malop.id).await?;
        details_samples.push(started.elapsed());
    }
    Ok(json!({
        "by_interval": results,
        "plugin_alone_dry_run": util::summary(&plugin_samples),
        "get_malop_details_alone": util::summary(&details_samples),
        "method": "ransomware-containment in enforce mode (kill-processes off, no approval), audit fsync every record (the default), the poll loop of `riposte run` (cycle, then sleep the interval). Each sample: a new ransomware Malop with a connected machine is added at a random phase of the interval; stage boundaries are arrival times of the service's requests at the simulator (watcher thread, 50 µs polling).",
    }))
}
