//! 10. Issue 15: events, cores, server requests.
//!
//! a. Containment latency from a syslog `Malop Created` event to the isolation request at
//!    the simulator, with the run loop of `riposte run` and its syslog listener.
//! b. An outbreak of 500 ransomware Malops at once: time from the first event until the last
//!    containment request, with events, with polling only, and for a sequential script
//!    ([`crate::script`]) against the same simulator.
//! c. Full-cycle throughput (poll, details, evaluate, ledger, audit) with the default audit
//!    durability and with `batch`, on a tokio runtime of 1 and of 2 worker threads.
//! d. Server requests per Malop, by endpoint, during those full cycles and the outbreak.
//!
//! Times come from the simulator's request log (`LoggedRequest::received_us`, the wall clock
//! when a request arrived) and the creation time of each Malop (`NewMalop::created_at`, when
//! its event was queued), so the harness's own polling adds nothing to them.

use crate::fixtures::{self, PASSWORD, PluginEntry, USER};
use crate::script::{self, Details};
use crate::util::{self, ms};
use anyhow::Context;
use riposte_client::{Client, ClientConfig, Credentials};
use riposte_domain::{MalopId, MalopPart, PluginName};
use riposte_service::config::{DEFAULT_MAX_CONCURRENCY, DEFAULT_MAX_DETAIL_FETCHES};
use riposte_service::hints::{HINTS_PER_BITE, HintPace};
use riposte_service::{CycleReport, OperatorConfig, Service};
use riposte_sim::{
    LoggedRequest, MalopKind, MalopSpec, SimConfig, SimEventStyle, SimHandle, SimSyslog, Simulator,
};
use riposte_store::prelude::*;
use riposte_syslog::{Framing, HintReceiver, SenderConfig, SenderTransport, SyslogListener};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const RANSOMWARE: &str = "ransomware-containment";
/// The API paths of containment requests: killing a process, isolating a machine.
const CONTAINMENT: [&str; 2] = ["/rest/remediate", "/rest/monitor/global/commands/isolate"];

fn epoch_us(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

fn us(d: u64) -> Duration {
    Duration::from_micros(d)
}

fn is_containment(r: &LoggedRequest) -> bool {
    r.method == "POST" && CONTAINMENT.contains(&r.path.as_str())
}

/// A free loopback port for the syslog listener: the simulator must know where to send
/// before the configuration naming the simulator exists.
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The service, its simulator, and the syslog listener when events are on.
struct Rig {
    sim: SimHandle,
    service: Arc<Service>,
    listener: Option<SyslogListener>,
    hints: Option<HintReceiver>,
}

impl Rig {
    /// A simulator with `malops` seeded Malops (`seed`), and a service running `entries` with
    /// audit `fsync`; with `events`, `[service.syslog]` listens on loopback TCP (newline
    /// framing, as Cybereason servers send; other keys at their defaults) and the simulator
    /// sends it a CEF event for every Malop it creates.
    async fn start(
        dir: &Path,
        seed: u64,
        malops: usize,
        events: bool,
        entries: &[PluginEntry],
        fsync: &str,
    ) -> anyhow::Result<Self> {
        let _ = std::fs::remove_dir_all(dir);
        let (sim, tables) = if events {
            let port = free_port()?;
            let mut sender = SenderConfig::new(SenderTransport::Tcp, format!("127.0.0.1:{port}"));
            sender.framing = Framing::Newline;
            let sim = Simulator::start(SimConfig {
                seed,
                malops,
                username: USER.into(),
                password: PASSWORD.into(),
                syslog: Some(SimSyslog {
                    sender,
                    style: SimEventStyle::Vendor,
                }),
                ..SimConfig::default()
            })
            .await?;
            let table = format!(
                "\n[service.syslog]\nenabled = true\ntcp_listen = \"127.0.0.1:{port}\"\nallowed_sources = [\"127.0.0.1\"]\n"
            );
            (sim, table)
        } else {
            (fixtures::simulator(malops, seed).await?, String::new())
        };
        let config = fixtures::write_config_with(
            dir,
            &sim,
            entries,
            fsync,
            DEFAULT_MAX_CONCURRENCY,
            &tables,
        )?;
        let (listener, hints) = if config.service.syslog.enabled {
            let (listener, hints) = SyslogListener::start(&config.service.syslog)
                .await
                .context("starting the syslog listener of [service.syslog]")?;
            (Some(listener), Some(hints))
        } else {
            (None, None)
        };
        let client = fixtures::client(&sim).await?;
        let service = Arc::new(fixtures::service(config, client).await?);
        Ok(Self {
            sim,
            service,
            listener,
            hints,
        })
    }

    async fn shutdown(self) {
        if let Some(listener) = self.listener {
            listener.shutdown().await;
        }
        self.sim.shutdown().await;
    }
}

/// When the run loop heard of each Malop (the listener's receive time of its event).
type Heard = Arc<Mutex<HashMap<String, SystemTime>>>;

/// The run loop of `riposte run` (host/crates/riposte/src/cli/service.rs), started after a
/// first cycle: wait for the poll interval or a syslog hint; a hint wakes it to evaluate the
/// Malops ready now (at most 64, in bites paced as `riposte run` paces them) with
/// `Service::evaluate_hinted`; the poll runs when due.
struct RunLoop {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
    heard: Heard,
}

impl RunLoop {
    fn start(service: Arc<Service>, hints: Option<HintReceiver>, interval: Duration) -> Self {
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let heard = Heard::default();
        let task = tokio::spawn(run_loop(service, hints, interval, stopped, heard.clone()));
        Self { stop, task, heard }
    }

    /// Stops after the cycle or evaluation in flight, as `riposte run` does on a signal.
    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

async fn next_hint(hints: &mut Option<HintReceiver>) -> Option<riposte_syslog::MalopHint> {
    match hints {
        Some(hints) => hints.recv().await,
        None => std::future::pending().await,
    }
}

async fn run_loop(
    service: Arc<Service>,
    mut hints: Option<HintReceiver>,
    interval: Duration,
    mut stop: tokio::sync::oneshot::Receiver<()>,
    heard: Heard,
) {
    let pace = HintPace::new();
    loop {
        let next_poll = tokio::time::Instant::now() + interval;
        loop {
            tokio::select! {
                biased;
                _ = &mut stop => {
                    service.drain_followups().await;
                    return;
                }
                _ = tokio::time::sleep_until(next_poll) => break,
                hint = next_hint(&mut hints) => {
                    let Some(first) = hint else {
                        hints = None;
                        continue;
                    };
                    pace.ready().await;
                    let mut taken = vec![first];
                    while taken.len() < HINTS_PER_BITE {
                        match hints.as_mut().map(HintReceiver::try_recv) {
                            Some(Ok(hint)) => taken.push(hint),
                            _ => break,
                        }
                    }
                    let ids: Vec<MalopId> = {
                        let mut heard = heard.lock().expect("heard");
                        taken
                            .into_iter()
                            .map(|h| {
                                let id = h.malop_id.into_string();
                                heard.entry(id.clone()).or_insert(h.received_at);
                                MalopId::new(id)
                            })
                            .collect()
                    };
                    if let Err(e) = service.evaluate_hinted(&ids).await {
                        eprintln!("      hinted evaluation failed: {e:#}");
                    }
                }
            }
        }
        if let Err(e) = service.run_cycle().await {
            eprintln!("      cycle failed: {e:#}");
        }
    }
}

/// Names the parts of section 10 to run (`RIPOSTE_BENCH_PARTS=c`, for profiling one part);
/// all of them unless set.
const PARTS_ENV: &str = "RIPOSTE_BENCH_PARTS";

fn chosen(name: &str) -> bool {
    std::env::var(PARTS_ENV).map_or(true, |parts| parts.split(',').any(|p| p.trim() == name))
}

/// Runs `f`, keeping its error in the result instead of losing the other parts.
async fn part<F>(name: &str, f: F) -> Value
where
    F: std::future::Future<Output = anyhow::Result<Value>>,
{
    if !chosen(name) {
        eprintln!("      10{name} skipped ({PARTS_ENV})");
        return json!({"error": format!("not run ({PARTS_ENV})")});
    }
    eprintln!("      10{name} ...");
    let started = Instant::now();
    let value = match f.await {
        Ok(v) => v,
        Err(e) => {
            eprintln!("      10{name} failed: {e:#}");
            json!({"error": format!("{e:#}")})
        }
    };
    eprintln!(
        "      10{name} done in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    value
}

/// Section 10.
pub async fn issue15(work: &Path) -> anyhow::Result<Value> {
    let load_start = crate::compare::loadavg();
    let fsync_start = fsync_probe(work)?;
    let latency = part("a", event_latency(work)).await;
    let outbreak = part("b", outbreak(work)).await;
    let cycles = part("c", throughput(work)).await;
    Ok(json!({
        "event_latency": latency,
        "outbreak": outbreak,
        "throughput": cycles,
        "malop_parts_declared": !fixtures::PARTS_UNKNOWN.load(std::sync::atomic::Ordering::Relaxed),
        "loadavg_start": load_start,
        "loadavg_end": crate::compare::loadavg(),
        "fdatasync_4k_ms": {"start": fsync_start, "end": fsync_probe(work)?},
    }))
}

/// The median time of 4 KiB write + fdatasync in `work` (the disk the state and audit trail
/// are on), in ms: what every durable commit pays on this machine now.
fn fsync_probe(work: &Path) -> anyhow::Result<Value> {
    use std::io::Write as _;
    let path = work.join("issue15-fsync-probe");
    let mut file = std::fs::File::create(&path)?;
    let block = [0u8; 4096];
    let mut samples = Vec::new();
    for _ in 0..50 {
        let started = Instant::now();
        file.write_all(&block)?;
        file.sync_data()?;
        samples.push(started.elapsed());
    }
    drop(file);
    std::fs::remove_file(&path)?;
    Ok(json!(ms(util::median(&samples))))
}

/// One latency sample's stage boundaries (µs since the epoch).
struct Stages {
    created: u64,
    heard: u64,
    first_read: u64,
    last_read: u64,
    isolate: u64,
}

/// a.
async fn event_latency(work: &Path) -> anyhow::Result<Value> {
    const SAMPLES: usize = 200;
    const WARM_UP: usize = 5;
    let entry = PluginEntry::new(RANSOMWARE, RANSOMWARE, "enforce")
        .value("kill-processes", "false")
        .parts_read();
    let mut rig = Rig::start(
        &work.join("issue15-latency"),
        3,
        4,
        true,
        &[entry],
        "\"every-record\"",
    )
    .await?;
    rig.service.run_cycle().await?; // the seeded Malops
    let interval = Duration::from_secs(riposte_service::config::DEFAULT_POLL_INTERVAL_SECS);
    let run = RunLoop::start(rig.service.clone(), rig.hints.take(), interval);
    let machines: Vec<String> = rig.sim.machines().into_iter().map(|m| m.name).collect();
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut samples = Vec::new();
    let mut missed = 0usize;
    let mut cursor = 0usize;
    for i in 0..SAMPLES + WARM_UP {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        tokio::time::sleep(Duration::from_millis(seed % 20)).await;
        let machine = machines[i % machines.len()].clone();
        let new = rig.sim.with_state(|s| {
            for m in &mut s.machines {
                m.isolated = false;
            }
            s.create_malop(MalopSpec {
                kind: Some(MalopKind::Ransomware),
                machines_online: true,
                machine: Some(machine),
            })
        })?;
        let created = epoch_us(new.created_at);
        let deadline = Instant::now() + Duration::from_secs(10);
        let seen = loop {
            tokio::time::sleep(Duration::from_millis(1)).await;
            let seen = rig.sim.with_state(|s| {
                let fresh = s.log.get(cursor..).unwrap_or_default();
                fresh
                    .iter()
                    .position(|r| is_containment(r) && r.body.contains(&new.id))
                    .map(|p| fresh[..=p].to_vec())
            });
            if let Some(seen) = seen {
                cursor += seen.len();
                break Some(seen);
            }
            if Instant::now() > deadline {
                break None;
            }
        };
        let Some(seen) = seen else {
            eprintln!("      no isolation request for {} within 10 s", new.id);
            missed += 1;
            continue;
        };
        let after: Vec<&LoggedRequest> = seen.iter().filter(|r| r.received_us >= created).collect();
        let Some((isolate, reads)) = after.split_last() else {
            continue;
        };
        let first_read = reads
            .iter()
            .find(|r| r.body.contains(&new.id))
            .map_or(isolate.received_us, |r| r.received_us);
        let last_read = reads.last().map_or(isolate.received_us, |r| r.received_us);
        let heard = run
            .heard
            .lock()
            .expect("heard")
            .get(&new.id)
            .map_or(first_read, |t| epoch_us(*t));
        if i >= WARM_UP {
            samples.push(Stages {
                created,
                heard,
                first_read,
                last_read,
                isolate: isolate.received_us,
            });
        }
    }
    run.stop().await;
    let listener = rig.listener.as_ref().map(|l| format!("{:?}", l.stats()));
    rig.shutdown().await;
    let stage = |f: &dyn Fn(&Stages) -> u64| -> Vec<Duration> {
        samples.iter().map(|s| us(f(s))).collect()
    };
    let total = stage(&|s| s.isolate.saturating_sub(s.created));
    let summary = util::summary(&total);
    let p99_ms = summary["p99_us"].as_f64().unwrap_or(f64::MAX) / 1000.0;
    Ok(json!({
        "samples": samples.len(),
        "missed": missed,
        "total": summary,
        "p99_ms": util::round(p99_ms),
        "goal_p99_le_50ms": p99_ms <= 50.0,
        "stages_median_ms": {
            "event_delivery": ms(util::median(&stage(&|s| s.heard.saturating_sub(s.created)))),
            "hint_to_first_read": ms(util::median(&stage(&|s| s.first_read.saturating_sub(s.heard)))),
            "reads": ms(util::median(&stage(&|s| s.last_read.saturating_sub(s.first_read)))),
            "last_reply_plugin_gate_ledger_audit_send": ms(util::median(&stage(&|s| s.isolate.saturating_sub(s.last_read)))),
        },
        "poll_interval_s": interval.as_secs(),
        "listener_stats": listener,
        "method": format!("ransomware-containment in enforce mode (kill-processes off, so the isolation is the containment; malop_parts = [suspects, sensors] where the service knows the key), audit fsync every record (the default), the run loop of `riposte run` (a cycle, then wait for the poll interval, {}s, the default, or a syslog hint; a hint evaluates the Malops ready with Service::evaluate_hinted, at most 64 per wake-up, in bites paced to 100 a second after a burst of 50), [service.syslog] on loopback TCP with newline framing (other keys default), the simulator sending its vendor-style CEF events. Each sample: a new ransomware Malop on one machine (sensor online, every machine's isolation reset) after a random pause of 0–19 ms; {WARM_UP} warm-up samples discarded. Total: from the Malop's creation (its event queued by the simulator) to its isolation request arriving at the simulator. Stages: event delivery (creation to the listener's receive time of the event), hint to first read (coalescer, wake-up, the by-id crimes/unified query arriving), reads (to the last read before the isolation), then the last reply, plugin, gate, ledger, audit and the isolation request.", interval.as_secs()),
    }))
}

/// Who contains the outbreak.
#[derive(Clone, Copy, Debug)]
enum Contender {
    Events,
    /// Events, with the audit trail synced in batches (`fsync = "batch"`).
    EventsBatch,
    Polling,
    Script(Details),
}

impl Contender {
    fn label(self) -> &'static str {
        match self {
            Self::Events => "riposte, syslog events (poll every 30 s)",
            Self::EventsBatch => "riposte, syslog events, audit fsync batch",
            Self::Polling => "riposte, polling only (every 1 s, the shortest interval)",
            Self::Script(Details::AsRiposte) => {
                "sequential script, reading the details riposte reads (3 visualsearch queries)"
            }
            Self::Script(Details::SuspectsOnly) => {
                "sequential script, reading the suspects only (1 visualsearch query)"
            }
        }
    }
}

/// One configuration of the outbreak: who contains it against a server answering after
/// `latency_ms`, over `rounds` rounds.
#[derive(Clone, Copy, Debug)]
struct Trial {
    contender: Contender,
    latency_ms: u64,
    rounds: usize,
}

impl Trial {
    fn label(self) -> String {
        match self.latency_ms {
            0 => self.contender.label().to_owned(),
            ms => format!("{}, server answering after {ms} ms", self.contender.label()),
        }
    }

    /// The key of its median.
    fn key(self) -> String {
        format!("{:?}@{}", self.contender, self.latency_ms)
    }
}

/// The latency of a tenant across a network in the outbreak's latency rows: a round trip
/// and the server's time per request (real servers take longer for investigation queries
/// and remediations, so this favours the sequential script).
const TENANT_LATENCY_MS: u64 = 50;

/// What one outbreak run measured.
struct OutbreakRun {
    seconds: f64,
    containment_requests: usize,
    requests: Vec<LoggedRequest>,
    contained: usize,
}

const OUTBREAK: usize = 500;

/// b (and the outbreak's requests per Malop).
async fn outbreak(work: &Path) -> anyhow::Result<Value> {
    const ROUNDS: usize = 3;
    let loopback = |contender| Trial {
        contender,
        latency_ms: 0,
        rounds: ROUNDS,
    };
    // The sequential script against a distant server takes minutes and varies little: one
    // round of it.
    let distant = |contender, rounds| Trial {
        contender,
        latency_ms: TENANT_LATENCY_MS,
        rounds,
    };
    let mut rows = Vec::new();
    let mut medians = BTreeMap::new();
    for trial in [
        loopback(Contender::Events),
        loopback(Contender::EventsBatch),
        loopback(Contender::Polling),
        loopback(Contender::Script(Details::AsRiposte)),
        loopback(Contender::Script(Details::SuspectsOnly)),
        distant(Contender::Events, ROUNDS),
        distant(Contender::Script(Details::SuspectsOnly), 1),
    ] {
        let mut runs = Vec::new();
        for round in 0..trial.rounds {
            let phase = (round as f64 + 0.5) / trial.rounds as f64;
            runs.push(outbreak_once(work, trial, phase).await?);
        }
        let mut seconds: Vec<f64> = runs.iter().map(|r| r.seconds).collect();
        seconds.sort_by(f64::total_cmp);
        let median = seconds[seconds.len() / 2];
        medians.insert(trial.key(), median);
        let first = &runs[0];
        rows.push(json!({
            "contender": trial.label(),
            "latency_ms": trial.latency_ms,
            "seconds": seconds.iter().map(|s| util::round(*s * 1000.0) / 1000.0).collect::<Vec<_>>(),
            "median_s": util::round(median * 1000.0) / 1000.0,
            "malops_contained": first.contained,
            "containment_requests": first.containment_requests,
            "requests": first.requests.len(),
            "requests_per_malop": per_malop(&first.requests, OUTBREAK),
        }));
    }
    let median = |contender, latency_ms| {
        medians[&Trial {
            contender,
            latency_ms,
            rounds: 0,
        }
        .key()]
    };
    let script = median(Contender::Script(Details::AsRiposte), 0);
    let lean = median(Contender::Script(Details::SuspectsOnly), 0);
    let events = median(Contender::Events, 0);
    let events_batch = median(Contender::EventsBatch, 0);
    let polling = median(Contender::Polling, 0);
    let distant_ratio = median(Contender::Script(Details::SuspectsOnly), TENANT_LATENCY_MS)
        / median(Contender::Events, TENANT_LATENCY_MS);
    Ok(json!({
        "malops": OUTBREAK,
        "rounds": ROUNDS,
        "rows": rows,
        "ratio_script_over_events": util::round(script / events),
        "ratio_script_over_polling": util::round(script / polling),
        "ratio_script_over_events_batch": util::round(script / events_batch),
        "ratio_lean_script_over_events": util::round(lean / events),
        "tenant_latency_ms": TENANT_LATENCY_MS,
        "ratio_lean_script_over_events_distant": util::round(distant_ratio),
        "goal_events_10x_sooner": distant_ratio >= 10.0,
        "method": format!("A simulator with 32 seeded Malops (64 machines); riposte's first cycle handles the seeded ones, then every machine's isolation is reset and {OUTBREAK} ransomware Malops are created at once (sensors online, one to three machines each), at a phase of 1/6, 1/2 and 5/6 s after the run loop started. ransomware-containment in enforce mode (isolate and kill; malop_parts = [suspects, sensors] where the service knows the key), max_concurrency {DEFAULT_MAX_CONCURRENCY} and max_detail_fetches {DEFAULT_MAX_DETAIL_FETCHES} (the defaults), audit fsync every record (the default; batch in one row), the run loop of `riposte run` (events: the syslog listener as in 10a and the default 30 s poll interval; polling only: no listener, a poll every second, the shortest poll_interval_secs allows). The script ([script.rs]) starts the moment the Malops exist (as if something triggered it at once), logs in, lists the MalopProcess Malops updated since, and for each ransomware one, one after the other: the visualsearch queries, a sensors query for its machines, an isolation of its connected machines not yet isolated, a kill of its suspects on connected machines. Time: from the first Malop's creation (its event queued) to the last containment request (remediate or isolate) arriving at the simulator; {ROUNDS} rounds each, median. Requests per Malop: of the first round, every request the simulator logged from the outbreak on (follow-ups of the kills included), by endpoint, divided by {OUTBREAK}. The last two rows repeat riposte with events and the suspects-only script (which reads what riposte reads) against a server that answers every request of the outbreak {TENANT_LATENCY_MS} ms after it arrives (the simulator's latency, requests in flight side by side), as a tenant across a network does; the script once, as it takes minutes and varies little. The goal is judged on these two rows."),
    }))
}

async fn outbreak_once(work: &Path, trial: Trial, phase: f64) -> anyhow::Result<OutbreakRun> {
    let contender = trial.contender;
    let dir = work.join("issue15-outbreak");
    let entry = PluginEntry::new(RANSOMWARE, RANSOMWARE, "enforce").parts_read();
    let (sim, run, service, listener) = match contender {
        Contender::Events | Contender::EventsBatch | Contender::Polling => {
            let events = !matches!(contender, Contender::Polling);
            let fsync = if matches!(contender, Contender::EventsBatch) {
                "\"batch\""
            } else {
                "\"every-record\""
            };
            let mut rig = Rig::start(&dir, 5, 32, events, &[entry], fsync).await?;
            rig.service.run_cycle().await?;
            let interval = if events {
                Duration::from_secs(riposte_service::config::DEFAULT_POLL_INTERVAL_SECS)
            } else {
                Duration::from_secs(1)
            };
            let run = RunLoop::start(rig.service.clone(), rig.hints.take(), interval);
            (rig.sim, Some(run), Some(rig.service), rig.listener)
        }
        Contender::Script(_) => (fixtures::simulator(32, 5).await?, None, None, None),
    };
    tokio::time::sleep(Duration::from_secs_f64(phase)).await;
    let since = sim.now_ms();
    sim.set_latency(trial.latency_ms);
    sim.clear_requests();
    let created = sim.with_state(|s| {
        for m in &mut s.machines {
            m.isolated = false;
        }
        (0..OUTBREAK)
            .map(|_| {
                s.create_malop(MalopSpec {
                    kind: Some(MalopKind::Ransomware),
                    machines_online: true,
                    machine: None,
                })
            })
            .collect::<Result<Vec<_>, _>>()
    })?;
    let t0 = epoch_us(created[0].created_at);
    let contained = match (contender, &service) {
        (Contender::Script(details), _) => {
            script::contain_all(&sim.base_url(), since, details)
                .await?
                .malops
        }
        (_, Some(service)) => {
            let plugin = PluginName::new(RANSOMWARE);
            let mut waiting: Vec<(MalopId, i64)> = created
                .iter()
                .map(|m| (MalopId::new(m.id.clone()), m.creation_time))
                .collect();
            let deadline = Instant::now() + Duration::from_secs(300);
            while !waiting.is_empty() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
                let store = service.store();
                // Handled at this update, whatever parts its plugin did not read.
                let all = Some(&MalopPart::ALL[..]);
                waiting
                    .retain(|(id, at)| !store.is_handled(&plugin, id, *at, all).unwrap_or(false));
            }
            OUTBREAK - waiting.len()
        }
        _ => unreachable!("riposte runs with a service"),
    };
    if let Some(run) = run {
        run.stop().await;
    }
    let requests = sim.requests();
    let containment: Vec<u64> = requests
        .iter()
        .filter(|r| is_containment(r) && r.received_us >= t0)
        .map(|r| r.received_us)
        .collect();
    let last = containment.iter().copied().max().unwrap_or(t0);
    let result = OutbreakRun {
        seconds: us(last.saturating_sub(t0)).as_secs_f64(),
        containment_requests: containment.len(),
        requests,
        contained,
    };
    if let Some(listener) = listener {
        listener.shutdown().await;
    }
    sim.shutdown().await;
    Ok(result)
}

/// The endpoint a logged request went to, with visualsearch queries told apart by what they
/// read and crimes/unified by listing or by id.
fn endpoint(r: &LoggedRequest) -> String {
    let path = r.path.split('?').next().unwrap_or_default();
    let rest = path.trim_start_matches("/rest/");
    match rest {
        "crimes/unified" if r.body.contains("guidList") => "crimes/unified by id".into(),
        "crimes/unified" => "crimes/unified list".into(),
        "visualsearch/query/simple" => {
            let what = if r.body.contains("\"connections\"") {
                "connections"
            } else if r.body.contains("filesToRemediate") {
                "files"
            } else if r.body.contains("suspects") {
                "suspects"
            } else {
                "other"
            };
            format!("visualsearch {what}")
        }
        _ if rest.starts_with("monitor/global/commands/") => {
            rest.trim_start_matches("monitor/global/commands/").into()
        }
        _ => {
            let head: Vec<&str> = rest.split('/').take(2).collect();
            format!("{} {}", r.method, head.join("/"))
        }
    }
}

/// Requests by endpoint divided by `n`, and their total.
fn per_malop(requests: &[LoggedRequest], n: usize) -> Value {
    let mut by: BTreeMap<String, usize> = BTreeMap::new();
    for r in requests {
        *by.entry(endpoint(r)).or_default() += 1;
    }
    let n = n.max(1) as f64;
    let mut out: serde_json::Map<String, Value> = by
        .into_iter()
        .map(|(k, v)| (k, json!(util::round(v as f64 / n * 1000.0) / 1000.0)))
        .collect();
    out.insert(
        "total".into(),
        json!(util::round(requests.len() as f64 / n * 1000.0) / 1000.0),
    );
    Value::Object(out)
}

/// c and d.
async fn throughput(work: &Path) -> anyhow::Result<Value> {
    const MALOPS: usize = 1000;
    const ROUNDS: usize = 3;
    let sim = fixtures::simulator(MALOPS, 7).await?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let mut rows = Vec::new();
    let mut best = BTreeMap::new();
    for workers in [1usize, 2] {
        for (fsync, label) in [
            ("\"every-record\"", "every-record (default)"),
            ("\"batch\"", "batch"),
        ] {
            let mut rates = Vec::new();
            let (mut service_us, mut process_us, mut busy) = (Vec::new(), Vec::new(), Vec::new());
            let mut first: Option<(CycleReport, Vec<LoggedRequest>)> = None;
            for round in 0..ROUNDS {
                let dir = work.join(format!(
                    "issue15-cycle-{workers}-{}-{round}",
                    fsync.trim_matches('"')
                ));
                let _ = std::fs::remove_dir_all(&dir);
                let config = fixtures::write_config(
                    &dir,
                    &sim,
                    &crate::load::shadow_entries(&fixtures::RUST_EXAMPLES)
                        .into_iter()
                        .map(PluginEntry::parts_read)
                        .collect::<Vec<_>>(),
                    fsync,
                    DEFAULT_MAX_CONCURRENCY,
                )?;
                let base = sim.base_url();
                sim.clear_requests();
                let cycle = tokio::task::spawn_blocking(move || cycle_on(workers, config, base))
                    .await
                    .context("the cycle's thread")??;
                let evaluations = cycle.report.invocations.max(1) as f64;
                rates.push(evaluations / cycle.took.as_secs_f64());
                // µs of CPU per evaluation: the service's threads, and the whole process.
                service_us.push(cycle.service_cpu * 1e6 / evaluations);
                process_us.push(cycle.process_cpu * 1e6 / evaluations);
                busy.push(cycle.process_cpu / cycle.took.as_secs_f64());
                let report = cycle.report;
                if first.is_none() {
                    let requests: Vec<LoggedRequest> = sim
                        .requests()
                        .into_iter()
                        .filter(|r| r.path.starts_with("/rest/"))
                        .collect();
                    first = Some((report, requests));
                }
            }
            let (report, requests) = first.expect("a round ran");
            rates.sort_by(f64::total_cmp);
            let median = rates[rates.len() / 2];
            let median_of = |xs: &[f64]| util::median_f64(xs).map(util::round);
            // The rate these cores would allow if only that CPU time were spent: riposte's
            // alone (a server elsewhere), or the simulator's and harness's alone.
            let others_us: Vec<f64> = process_us
                .iter()
                .zip(&service_us)
                .map(|(p, s)| p - s)
                .collect();
            let ceiling = |xs: &[f64]| {
                util::median_f64(xs)
                    .filter(|us| *us > 0.0)
                    .map(|us| util::round(cores * 1e6 / us))
            };
            best.insert((workers, fsync), median);
            rows.push(json!({
                "workers": workers,
                "fsync": label,
                "malops": report.malops_seen,
                "evaluations": report.invocations,
                "evaluations_per_s": rates.iter().map(|r| util::round(*r)).collect::<Vec<_>>(),
                "median_evaluations_per_s": util::round(median),
                "service_cpu_us_per_evaluation": median_of(&service_us),
                "process_cpu_us_per_evaluation": median_of(&process_us),
                "cores_busy": median_of(&busy),
                "others_cpu_us_per_evaluation": median_of(&others_us),
                "ceiling_service_alone_per_s": ceiling(&service_us),
                "ceiling_others_alone_per_s": ceiling(&others_us),
                "requests_per_malop": per_malop(&requests, report.malops_seen),
            }));
        }
    }
    sim.shutdown().await;
    let batch2 = best[&(2, "\"batch\"")];
    let batch1 = best[&(1, "\"batch\"")];
    let default2 = best[&(2, "\"every-record\"")];
    let default1 = best[&(1, "\"every-record\"")];
    Ok(json!({
        "malops": MALOPS,
        "rounds": ROUNDS,
        "rows": rows,
        "scaling_batch_2_over_1": util::round(batch2 / batch1),
        "scaling_default_2_over_1": util::round(default2 / default1),
        "goal_batch_2_cores_10k": batch2 >= 10_000.0,
        "method": format!("One full service cycle (Service::run_cycle: poll both kinds, details of every Malop a plugin wants, invoke, gate, ledger, audit, handled marks) on a fresh state, {MALOPS} simulated Malops, the 3 Rust examples in shadow mode (as section 3; each declares the malop_parts its source reads where the service knows the key: ransomware-containment suspects and sensors, cleanup suspects, files and sensors, reputation-feed network), max_concurrency {DEFAULT_MAX_CONCURRENCY}, max_detail_fetches {DEFAULT_MAX_DETAIL_FETCHES} (defaults). The service (its client included) runs on a tokio runtime of its own with 1 or 2 worker threads (blocking-pool threads, which the service uses for database steps, are not limited); the simulator runs on the harness's runtime (2 workers), on the same 2 cores. {ROUNDS} rounds each, the median. CPU per evaluation: CPU time (/proc/self/task/*/schedstat) over the cycle divided by its evaluations, of the service's threads (its runtime's workers and blocking pool, named {CYCLE_THREADS}) and of the whole process (the simulator and the harness too); cores busy: the process's CPU time over the cycle's wall time; the rate the machine's cores would allow if only the service's CPU time per evaluation were spent (a server elsewhere), or only the simulator's and harness's (the whole process's less the service's). Requests per Malop: every /rest request the simulator logged during the first round's cycle, by endpoint, divided by the Malops the cycle listed."),
    }))
}

/// The name of the threads of the runtime a measured cycle runs on (its workers and its
/// blocking pool), whose CPU time is the service's own (the simulator's is not).
const CYCLE_THREADS: &str = "riposte-cycle";

/// What one measured cycle did and cost.
struct Cycle {
    report: CycleReport,
    took: Duration,
    /// CPU seconds of the service's threads during the cycle.
    service_cpu: f64,
    /// CPU seconds of the whole process (the service, the simulator, the harness).
    process_cpu: f64,
}

/// One full cycle of a service started on `config`, on a runtime of `workers` threads.
fn cycle_on(workers: usize, config: OperatorConfig, base: String) -> anyhow::Result<Cycle> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name(CYCLE_THREADS)
        .enable_all()
        .build()?;
    runtime.block_on(util::on_worker(async move {
        let client = Client::new(ClientConfig::new(base, Credentials::new(USER, PASSWORD)))?;
        client.login_now().await?;
        let service = fixtures::service(config, Arc::new(client)).await?;
        let (service0, process0) = util::cpu_seconds(CYCLE_THREADS)?;
        let started = Instant::now();
        let report = service.run_cycle().await?;
        let took = started.elapsed();
        let (service1, process1) = util::cpu_seconds(CYCLE_THREADS)?;
        Ok(Cycle {
            report,
            took,
            service_cpu: service1 - service0,
            process_cpu: process1 - process0,
        })
    }))
}

fn num(v: &Value, decimals: usize) -> String {
    v.as_f64()
        .map_or("–".to_owned(), |x| format!("{x:.decimals$}"))
}

/// The figures of an array, comma-separated.
fn rounds(v: &Value, decimals: usize) -> String {
    v.as_array()
        .into_iter()
        .flatten()
        .map(|x| num(x, decimals))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The goals of issue 15, for the table at the top.
pub fn goals(o: &mut String, s: &Value) {
    if s.is_null() {
        return;
    }
    let verdict = |v: &Value| match v.as_bool() {
        Some(met) => crate::report::verdict(met),
        None => "not measured",
    };
    let l = &s["event_latency"];
    let _ = writeln!(
        o,
        "| issue 15: containment latency from a syslog event, p99 ≤ 50 ms | p50 {} ms, p99 {} ms | {} |",
        num(
            &(l["total"]["p50_us"].as_f64().map(|x| x / 1000.0).into()),
            1
        ),
        num(&l["p99_ms"], 1),
        verdict(&l["goal_p99_le_50ms"])
    );
    let b = &s["outbreak"];
    let _ = writeln!(
        o,
        "| issue 15: 500-Malop outbreak, riposte (events) ≥ 10x sooner than a sequential script | {}x against a server answering after {} ms (on loopback: {}x, polling only {}x) | {} |",
        num(&b["ratio_lean_script_over_events_distant"], 2),
        b["tenant_latency_ms"],
        num(&b["ratio_script_over_events"], 2),
        num(&b["ratio_script_over_polling"], 2),
        verdict(&b["goal_events_10x_sooner"])
    );
    let t = &s["throughput"];
    let batch2 = t["rows"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["workers"] == 2 && r["fsync"] == "batch")
        .cloned()
        .unwrap_or(Value::Null);
    let _ = writeln!(
        o,
        "| issue 15: full cycle ≥ 10,000 evaluations/s with fsync batch on 2 cores | {}/s (2 workers / 1 worker: {}x; the cores would allow {}/s for the service's CPU alone, {}/s for the simulator's) | {} |",
        num(&batch2["median_evaluations_per_s"], 0),
        num(&t["scaling_batch_2_over_1"], 2),
        num(&batch2["ceiling_service_alone_per_s"], 0),
        num(&batch2["ceiling_others_alone_per_s"], 0),
        verdict(&t["goal_batch_2_cores_10k"])
    );
}

/// Section 10 of RESULTS.md; `before` is the document of a run at the commit before issue
/// 15's service changes, whose figures are shown next to these.
pub fn report(o: &mut String, s: &Value, before: Option<&Value>) {
    if s.is_null() {
        return;
    }
    let _ = writeln!(o, "## 10. Issue 15: events, cores, server requests\n");
    if let Some(e) = s["error"].as_str() {
        let _ = writeln!(o, "Not measured: {e}\n");
        return;
    }
    let b = before.map(|d| &d["results"]["10_issue15"]);
    let before_commit = before
        .and_then(|d| d["machine"]["git_commit"].as_str())
        .unwrap_or("?");
    if let Some(line) = crate::report::separate_run_line(s) {
        let _ = writeln!(o, "{line}");
    }
    let _ = writeln!(
        o,
        "Load average (1, 5, 15 min) at the start of the section: {}; at its end: {}. A 4 KiB write + fdatasync on the work directory's disk (median of 50): {} ms at the start, {} ms at the end. `malop_parts` declared: {}.{}\n",
        s["loadavg_start"],
        s["loadavg_end"],
        s["fdatasync_4k_ms"]["start"],
        s["fdatasync_4k_ms"]["end"],
        if s["malop_parts_declared"] == true {
            "yes"
        } else {
            "no (the service does not know the key)"
        },
        match b {
            Some(b) => format!(
                " The \"before\" figures come from the same harness built at {before_commit} (before issue 15's service changes), run on {} (load average {} → {}).",
                before
                    .and_then(|d| d["machine"]["date_utc"].as_str())
                    .unwrap_or("?"),
                b["loadavg_start"],
                b["loadavg_end"]
            ),
            None => String::new(),
        }
    );
    latency_report(o, &s["event_latency"], b.map(|b| &b["event_latency"]));
    outbreak_report(o, &s["outbreak"], b.map(|b| &b["outbreak"]));
    throughput_report(o, &s["throughput"], b.map(|b| &b["throughput"]));
}

fn latency_report(o: &mut String, l: &Value, before: Option<&Value>) {
    let _ = writeln!(
        o,
        "### a. Containment latency from a syslog `Malop Created` event\n\n{}\n",
        l["method"].as_str().or(l["error"].as_str()).unwrap_or("")
    );
    let _ = writeln!(
        o,
        "| commit | samples (missed) | p50 ms | p90 ms | p99 ms | max ms | event delivery | hint → first read | reads | last reply + plugin + gate + ledger + audit + send |\n|---|---|---|---|---|---|---|---|---|---|"
    );
    let row = |o: &mut String, label: &str, l: &Value| {
        let t = &l["total"];
        let in_ms = |k: &str| num(&t[k].as_f64().map(|x| x / 1000.0).into(), 2);
        let st = &l["stages_median_ms"];
        let _ = writeln!(
            o,
            "| {label} | {} ({}) | **{}** | {} | **{}** | {} | {} ms | {} ms | {} ms | {} ms |",
            l["samples"],
            l["missed"],
            in_ms("p50_us"),
            in_ms("p90_us"),
            in_ms("p99_us"),
            in_ms("max_us"),
            num(&st["event_delivery"], 2),
            num(&st["hint_to_first_read"], 2),
            num(&st["reads"], 2),
            num(&st["last_reply_plugin_gate_ledger_audit_send"], 2),
        );
    };
    if let Some(b) = before.filter(|b| b["total"].is_object()) {
        row(o, "before", b);
    }
    row(o, "this run", l);
    let _ = writeln!(o, "\nStages are medians.\n");
}

fn outbreak_report(o: &mut String, b: &Value, before: Option<&Value>) {
    let _ = writeln!(
        o,
        "### b. Outbreak: {} ransomware Malops at once\n\n{}\n",
        b["malops"],
        b["method"].as_str().or(b["error"].as_str()).unwrap_or("")
    );
    let _ = writeln!(
        o,
        "| contender | first event → last containment request, median (rounds) | Malops contained | containment requests | requests per Malop |\n|---|---|---|---|---|"
    );
    let rows = |o: &mut String, b: &Value, tag: &str| {
        for row in b["rows"].as_array().into_iter().flatten() {
            let _ = writeln!(
                o,
                "| {}{tag} | **{} s** ({} s) | {} | {} | {} |",
                row["contender"].as_str().unwrap_or("?"),
                num(&row["median_s"], 2),
                rounds(&row["seconds"], 2),
                row["malops_contained"],
                row["containment_requests"],
                num(&row["requests_per_malop"]["total"], 2),
            );
        }
    };
    if let Some(before) = before.filter(|b| b["rows"].is_array()) {
        rows(o, before, ", before");
    }
    rows(o, b, "");
    let _ = writeln!(
        o,
        "\nAgainst a server answering after {} ms, the suspects-only script / riposte with events: **{}x**. On loopback: script / riposte with events: {}x (with fsync batch: {}x); script / riposte polling only: {}x; the suspects-only script / riposte with events: {}x.{}\n",
        b["tenant_latency_ms"],
        num(&b["ratio_lean_script_over_events_distant"], 2),
        num(&b["ratio_script_over_events"], 2),
        num(&b["ratio_script_over_events_batch"], 2),
        num(&b["ratio_script_over_polling"], 2),
        num(&b["ratio_lean_script_over_events"], 2),
        before
            .filter(|b| b["rows"].is_array())
            .map_or(String::new(), |b| format!(
                " Before: {}x, {}x, {}x.",
                num(&b["ratio_script_over_events"], 2),
                num(&b["ratio_script_over_polling"], 2),
                num(&b["ratio_lean_script_over_events"], 2)
            ))
    );
}

fn throughput_report(o: &mut String, t: &Value, before: Option<&Value>) {
    let _ = writeln!(
        o,
        "### c. Full-cycle throughput, 1 and 2 tokio worker threads\n\n{}\n",
        t["method"].as_str().or(t["error"].as_str()).unwrap_or("")
    );
    let _ = writeln!(
        o,
        "| commit | workers | audit fsync | Malops | evaluations | evaluations/s, median (rounds) | CPU µs per evaluation: service / whole process | cores busy | evaluations/s the cores allow: service alone / simulator and harness alone |\n|---|---|---|---|---|---|---|---|---|"
    );
    let rows = |o: &mut String, t: &Value, label: &str| {
        for row in t["rows"].as_array().into_iter().flatten() {
            let _ = writeln!(
                o,
                "| {label} | {} | {} | {} | {} | **{}** ({}) | {} / {} | {} | {} / {} |",
                row["workers"],
                row["fsync"].as_str().unwrap_or("?"),
                row["malops"],
                row["evaluations"],
                num(&row["median_evaluations_per_s"], 0),
                rounds(&row["evaluations_per_s"], 0),
                num(&row["service_cpu_us_per_evaluation"], 0),
                num(&row["process_cpu_us_per_evaluation"], 0),
                num(&row["cores_busy"], 2),
                num(&row["ceiling_service_alone_per_s"], 0),
                num(&row["ceiling_others_alone_per_s"], 0),
            );
        }
    };
    if let Some(before) = before.filter(|b| b["rows"].is_array()) {
        rows(o, before, "before");
    }
    rows(o, t, "this run");
    let _ = writeln!(
        o,
        "\n2 workers / 1 worker: {}x with batch, {}x with every-record.\n",
        num(&t["scaling_batch_2_over_1"], 2),
        num(&t["scaling_default_2_over_1"], 2)
    );
    requests_report(o, t, before);
}

/// d: requests per Malop by endpoint, before and after, for the full cycle (2 workers,
/// batch) and, with actions, the outbreak with events.
fn requests_report(o: &mut String, t: &Value, before: Option<&Value>) {
    let cycle = |t: &Value| {
        t["rows"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["workers"] == 2 && r["fsync"] == "batch")
            .map_or(Value::Null, |r| r["requests_per_malop"].clone())
    };
    let now = cycle(t);
    let was = before.map_or(Value::Null, cycle);
    let _ = writeln!(
        o,
        "### d. Server requests per Malop, by endpoint\n\nDuring the full cycle above (2 workers, fsync batch, shadow mode: reads only), every `/rest` request the simulator logged divided by the Malops the cycle listed; the outbreak's (with actions and their follow-ups) is in results.json (`outbreak.rows[].requests_per_malop`).\n"
    );
    let _ = writeln!(o, "| endpoint | before | this run |\n|---|---|---|");
    let mut keys: Vec<String> = Vec::new();
    for v in [&was, &now] {
        for k in v.as_object().into_iter().flat_map(|m| m.keys()) {
            if k != "total" && !keys.contains(k) {
                keys.push(k.clone());
            }
        }
    }
    keys.sort();
    keys.push("total".into());
    for k in keys {
        let _ = writeln!(o, "| {k} | {} | {} |", num(&was[&k], 3), num(&now[&k], 3));
    }
    let _ = writeln!(o);
}
