//! 9. PostgreSQL: several hosts (issue 14).
//!
//! a. The action ledger's cost per action, store level (no wasm): `begin_action` +
//!    `mark_submitted` + `finish` through `riposte_store::Store`, on a SQLite file (default
//!    durability) and on PostgreSQL, same run.
//! b. Full-cycle throughput through `riposte run` processes against the simulator: one host on
//!    SQLite, then 1, 2 and 3 hosts sharing one PostgreSQL database.
//! c. Failover: from the SIGKILL of the `riposte run` process holding the poller lease while a
//!    ransomware Malop is pending, to the isolation request another host sends.
//!
//! The PostgreSQL server is the one named by `RIPOSTE_TEST_POSTGRES`, or else a throwaway
//! cluster started with `tests/postgres.sh start` before the measurements and stopped (and
//! removed) when the harness ends, also when it fails ([`Postgres`]).

use crate::containment::add_ransomware;
use crate::fixtures::{self, PluginEntry};
use crate::util::{self, ms};
use anyhow::Context;
use riposte_domain::{ActionRequest, MachineGuid, MalopId, PluginName, Sha256Digest};
use riposte_sim::SimHandle;
use riposte_store::prelude::*;
use riposte_store::testing::{POSTGRES_CA_ENV, POSTGRES_ENV, TestDatabase};
use riposte_store::{BeginOutcome, NewAction, Outcome, Store};
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Actions per backend in the ledger measurement (after [`LEDGER_WARMUP`] unmeasured ones).
const LEDGER_ACTIONS: usize = 400;
const LEDGER_WARMUP: usize = 20;
/// Malops added at once for the throughput measurement (section 3's full cycle uses 1,000).
const THROUGHPUT_MALOPS: usize = 1000;
/// Lease and heartbeat (seconds) of the PostgreSQL hosts: short, so failovers are quick.
const LEASE_SECS: u64 = 3;
const HEARTBEAT_SECS: u64 = 1;
/// The hosts' poll interval (seconds), as written by [`fixtures::write_config`].
const POLL_SECS: u64 = 1;
/// Failovers measured.
const FAILOVERS: usize = 3;
/// Hosts of the failover fleet.
const FAILOVER_HOSTS: usize = 3;

/// The PostgreSQL server of this run: named by `RIPOSTE_TEST_POSTGRES`, or started here.
pub enum Postgres {
    /// Section 9 is not run.
    Unused,
    /// The server `RIPOSTE_TEST_POSTGRES` names (left as it is).
    External,
    /// A cluster started with `tests/postgres.sh start DIR`; stopped and removed on drop.
    Started(PathBuf),
    /// No server could be had: section 9 reports this.
    Missing(String),
}

impl Postgres {
    /// Finds or starts the server. Must run before any other thread exists: a started
    /// server's URL is put into the environment, where [`TestDatabase::postgres`] reads it.
    pub fn before_threads(wanted: bool) -> Postgres {
        if !wanted {
            return Postgres::Unused;
        }
        if std::env::var_os(POSTGRES_ENV).is_some() {
            return Postgres::External;
        }
        let dir = std::env::temp_dir().join(format!("riposte-bench-pg-{}", std::process::id()));
        let script = fixtures::root().join("tests/postgres.sh");
        eprintln!(
            "starting a throwaway PostgreSQL server ({} start {}) ...",
            script.display(),
            dir.display()
        );
        let started = Command::new("bash")
            .arg(&script)
            .arg("start")
            .arg(&dir)
            .stderr(Stdio::inherit())
            .output();
        // The server speaks TLS only, with a certificate from its own throwaway CA.
        let ca = dir.join("ca.pem");
        let server = Postgres::Started(dir);
        match started {
            Ok(out) if out.status.success() => {
                let url = String::from_utf8_lossy(&out.stdout).trim().to_owned();
                // SAFETY: called from `main` before the tokio runtime (or any other thread)
                // is started, so nothing reads the environment concurrently.
                unsafe {
                    std::env::set_var(POSTGRES_ENV, url);
                    std::env::set_var(POSTGRES_CA_ENV, ca);
                }
                server
            }
            other => {
                // A half-started cluster is stopped and removed.
                drop(server);
                Postgres::Missing(match other {
                    Ok(out) => format!(
                        "tests/postgres.sh start failed ({}); set {POSTGRES_ENV} to a server's URL instead",
                        out.status
                    ),
                    Err(e) => format!("running tests/postgres.sh: {e}"),
                })
            }
        }
    }

    fn source(&self) -> anyhow::Result<&'static str> {
        match self {
            Postgres::External => Ok("the server named by RIPOSTE_TEST_POSTGRES"),
            Postgres::Started(_) => Ok(
                "a throwaway cluster started by tests/postgres.sh on loopback (TLS), same machine",
            ),
            Postgres::Missing(why) => anyhow::bail!("no PostgreSQL server: {why}"),
            Postgres::Unused => anyhow::bail!("PostgreSQL was not set up for this run"),
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Postgres::Started(dir) = self {
            let script = fixtures::root().join("tests/postgres.sh");
            let stopped = Command::new("bash")
                .arg(&script)
                .arg("stop")
                .arg(&*dir)
                .status();
            match stopped {
                Ok(s) if s.success() => {
                    eprintln!("stopped the PostgreSQL server in {}", dir.display())
                }
                other => eprintln!(
                    "stopping the PostgreSQL server failed ({other:?}): run `{} stop {}`",
                    script.display(),
                    dir.display()
                ),
            }
        }
    }
}

/// Section 9.
pub async fn fleet(work: &Path, postgres: &Postgres) -> anyhow::Result<Value> {
    let server = postgres.source()?;
    let riposte = riposte_bin()?;
    let ledger = ledger().await.context("the ledger's cost per action")?;
    let throughput = throughput(work, &riposte)
        .await
        .context("full-cycle throughput")?;
    let failover = failover(work, &riposte).await.context("failover")?;
    Ok(json!({
        "postgres_server": server,
        "ledger": ledger,
        "throughput": throughput,
        "failover": failover,
    }))
}

/// The `riposte` binary of this profile, built (or found fresh) by cargo.
fn riposte_bin() -> anyhow::Result<PathBuf> {
    let root = fixtures::root();
    let release = !cfg!(debug_assertions);
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .current_dir(&root)
        .args(["build", "-p", "riposte", "--bin", "riposte"]);
    if release {
        build.arg("--release");
    }
    eprintln!("      building riposte ({build:?}) ...");
    let status = build.status().context("running cargo build -p riposte")?;
    anyhow::ensure!(status.success(), "cargo build -p riposte failed: {status}");
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let bin = target
        .join(if release { "release" } else { "debug" })
        .join("riposte");
    anyhow::ensure!(
        bin.is_file(),
        "{} is missing after the build",
        bin.display()
    );
    Ok(bin)
}

/// Runs blocking store work on the blocking pool.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(work).await?
}

/// a. The ledger's cost per action on each backend.
async fn ledger() -> anyhow::Result<Value> {
    let mut rows = Vec::new();
    for (label, db) in [
        (
            "SQLite file (WAL, synchronous = FULL: the default durability)",
            TestDatabase::sqlite as fn() -> TestDatabase,
        ),
        (
            "PostgreSQL (loopback, TLS, synchronous_commit = on, writes serialised on the advisory lock)",
            TestDatabase::postgres,
        ),
    ] {
        let row = blocking(move || {
            let db = db();
            let store = db.try_open()?;
            ledger_on(&store, label, db.backend())
        })
        .await?;
        rows.push(row);
    }
    let mean = |i: usize| {
        rows[i]["per_action"]["mean_us"]
            .as_f64()
            .unwrap_or(f64::NAN)
    };
    let p50 = |i: usize| rows[i]["per_action"]["p50_us"].as_f64().unwrap_or(f64::NAN);
    Ok(json!({
        "actions": LEDGER_ACTIONS,
        "rows": rows,
        "ratio_postgres_vs_sqlite_mean": util::round(mean(1) / mean(0)),
        "ratio_postgres_vs_sqlite_p50": util::round(p50(1) / p50(0)),
        "method": format!("Store level, no wasm, no server: for each of {LEDGER_ACTIONS} actions (after {LEDGER_WARMUP} unmeasured), begin_action (a new isolate action, its own key) + mark_submitted + finish(Succeeded), each its own durable transaction, one after another on one thread; a fresh database per backend (riposte_store::testing::TestDatabase). Both backends on this machine's one disk."),
    }))
}

fn ledger_on(store: &Store, label: &str, backend: &str) -> anyhow::Result<Value> {
    let plugin = PluginName::new("ledger-bench");
    let digest = Sha256Digest::of(b"ledger-bench");
    let mut total = Vec::new();
    let mut steps: [Vec<Duration>; 3] = Default::default();
    for i in 0..LEDGER_WARMUP + LEDGER_ACTIONS {
        let request = ActionRequest::Isolate {
            malop_id: Some(MalopId::new(format!("11.{i}"))),
            machines: vec![MachineGuid::new(format!("machine-{i}"))],
        };
        let new = NewAction::new(plugin.clone(), digest, request, "bench");
        let now = riposte_domain::now_ms();
        let started = Instant::now();
        let BeginOutcome::New(id) = store.begin_action(&new, now)? else {
            anyhow::bail!("action {i}: its key already existed in a fresh database");
        };
        let begun = Instant::now();
        store.mark_submitted(
            &id,
            None,
            &json!({"isolated": [format!("machine-{i}")]}),
            now,
        )?;
        let submitted = Instant::now();
        store.finish(&id, Outcome::Succeeded, None, now)?;
        let finished = Instant::now();
        if i >= LEDGER_WARMUP {
            total.push(finished - started);
            steps[0].push(begun - started);
            steps[1].push(submitted - begun);
            steps[2].push(finished - submitted);
        }
    }
    let mean_us = |v: &[Duration]| {
        util::round(v.iter().map(Duration::as_secs_f64).sum::<f64>() * 1e6 / v.len() as f64)
    };
    Ok(json!({
        "backend": backend,
        "database": label,
        "per_action": util::summary(&total),
        "begin_action_mean_us": mean_us(&steps[0]),
        "mark_submitted_mean_us": mean_us(&steps[1]),
        "finish_mean_us": mean_us(&steps[2]),
    }))
}

/// One `riposte run` process of the benchmark, killed (SIGKILL) and reaped when dropped.
struct Host {
    id: String,
    config: PathBuf,
    log: PathBuf,
    /// Bytes of the log already read by [`Host::cycles`].
    read: u64,
    child: Option<Child>,
    /// When the process was last started (ms): its heartbeats count from then.
    spawned_ms: i64,
    password: Option<String>,
}

/// A `cycle done` line of a host's log.
#[derive(Clone, Copy, Debug)]
struct CycleDone {
    malops_seen: usize,
    invocations: usize,
}

impl Host {
    /// Writes the configuration of a host in `dir` (its own audit trail and artifact cache)
    /// on `db`, and starts `riposte run` on it.
    fn start(
        riposte: &Path,
        dir: &Path,
        id: &str,
        sim: &SimHandle,
        plugins: &[PluginEntry],
        db: &TestDatabase,
    ) -> anyhow::Result<Host> {
        let _ = std::fs::remove_dir_all(dir);
        // Default audit durability (fsync every record), concurrency 4: section 3's full cycle.
        let config = fixtures::write_config(dir, sim, plugins, "\"every-record\"", 4)?;
        let path = config.source.clone();
        let mut toml = std::fs::read_to_string(&path)?;
        let legacy = format!("database = \"{}\"\n", dir.join("riposte.db").display());
        anyhow::ensure!(
            toml.contains(&legacy),
            "fixtures::write_config changed its database line"
        );
        let database = match db {
            TestDatabase::Sqlite { path, .. } => {
                format!(
                    "[service.database]\nbackend = \"sqlite\"\npath = \"{}\"\n",
                    path.display()
                )
            }
            TestDatabase::Postgres { shown, ca_file, .. } => {
                let credentials = dir.join("database-credentials");
                std::fs::write(
                    &credentials,
                    format!("password = {}\n", db.password().unwrap_or_default()),
                )?;
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&credentials, std::fs::Permissions::from_mode(0o600))?;
                let mut section = format!(
                    "[service.database]\nbackend = \"postgres\"\nurl = \"{shown}\"\n\
                     credentials_file = \"{}\"\nlease_secs = {LEASE_SECS}\nheartbeat_secs = {HEARTBEAT_SECS}\n",
                    credentials.display()
                );
                if let Some(ca) = ca_file {
                    let _ = writeln!(section, "ca_file = {:?}", ca.display().to_string());
                }
                section
            }
        };
        toml = toml.replacen(&legacy, "", 1);
        toml = match toml.find("\n[[plugins]]") {
            Some(at) => format!("{}\n{database}{}", &toml[..at], &toml[at..]),
            None => format!("{toml}\n{database}"),
        };
        std::fs::write(&path, toml)?;
        riposte_service::OperatorConfig::load(&path)
            .with_context(|| format!("the configuration of {id}"))?;
        let mut host = Host {
            id: id.to_owned(),
            config: path,
            log: dir.join("riposte-run.log"),
            read: 0,
            child: None,
            spawned_ms: 0,
            password: db.password(),
        };
        host.spawn(riposte)?;
        Ok(host)
    }

    /// Starts (or restarts) its `riposte run` process; its log starts afresh.
    fn spawn(&mut self, riposte: &Path) -> anyhow::Result<()> {
        let log = std::fs::File::create(&self.log)?;
        self.read = 0;
        self.spawned_ms = riposte_domain::now_ms();
        let mut command = Command::new(riposte);
        command
            .args(["run", "--config"])
            .arg(&self.config)
            .env(riposte_service::HOST_ID_ENV, &self.id)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        if let Some(p) = &self.password {
            command.env(riposte_store::settings::DEFAULT_PASSWORD_ENV, p);
        }
        self.child = Some(
            command
                .spawn()
                .with_context(|| format!("starting {}", riposte.display()))?,
        );
        Ok(())
    }

    /// SIGKILL, and reap.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Fails if the process exited.
    fn alive(&mut self) -> anyhow::Result<()> {
        if let Some(child) = &mut self.child
            && let Some(status) = child.try_wait()?
        {
            anyhow::bail!("{} exited ({status}); its log:\n{}", self.id, self.tail());
        }
        Ok(())
    }

    fn tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().rev().take(15).collect();
        lines.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// The `cycle done` lines logged since the last call.
    fn cycles(&mut self) -> anyhow::Result<Vec<CycleDone>> {
        let mut file = std::fs::File::open(&self.log)?;
        file.seek(SeekFrom::Start(self.read))?;
        let mut text = String::new();
        file.read_to_string(&mut text)?;
        // Only whole lines: the rest is read next time.
        let whole = text.rfind('\n').map_or(0, |i| i + 1);
        self.read += whole as u64;
        Ok(text[..whole]
            .lines()
            .filter(|l| l.contains("cycle done"))
            .map(|l| CycleDone {
                malops_seen: field(l, "malops_seen: "),
                invocations: field(l, " invocations: "),
            })
            .collect())
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The number after `name` in a `Debug`-formatted report.
fn field(line: &str, name: &str) -> usize {
    line.split_once(name)
        .map(|(_, rest)| {
            rest.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
        })
        .and_then(|d| d.parse().ok())
        .unwrap_or(0)
}

/// The host holding the poller lease now (by the database), if any.
async fn acting(store: &Arc<Store>) -> anyhow::Result<Option<String>> {
    let store = store.clone();
    blocking(move || {
        let now = riposte_domain::now_ms();
        let (_, leases) = store.fleet()?;
        Ok(leases
            .into_iter()
            .find(|l| l.name == riposte_service::POLLER_LEASE && l.expires_at_ms > now)
            .map(|l| l.holder))
    })
    .await
}

/// Waits until every host has sent a heartbeat and (on a shared database) one holds the
/// lease, then for the end of a cycle of the acting host: it then sleeps a poll interval,
/// so what is added now is seen by its next cycle, whole. Returns the acting host's index.
async fn settled(hosts: &mut [Host], store: &Arc<Store>, shared: bool) -> anyhow::Result<usize> {
    let deadline = Instant::now() + Duration::from_secs(90);
    let acting_id = loop {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the hosts did not come up within 90 s"
        );
        for h in hosts.iter_mut() {
            h.alive()?;
        }
        let beats: Vec<(String, i64)> = {
            let store = store.clone();
            blocking(move || {
                Ok(store
                    .fleet()?
                    .0
                    .into_iter()
                    .map(|h| (h.host_id, h.heartbeat_ms))
                    .collect())
            })
            .await?
        };
        // Every process has sent a heartbeat since it was (re)started.
        let all_up = hosts.iter().all(|h| {
            beats
                .iter()
                .any(|(id, at)| *id == h.id && *at >= h.spawned_ms)
        });
        let holder = if shared {
            acting(store).await?
        } else {
            Some(hosts[0].id.clone())
        };
        if all_up && let Some(holder) = holder {
            break holder;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let index = hosts
        .iter()
        .position(|h| h.id == acting_id)
        .with_context(|| format!("the lease holder {acting_id} is none of the hosts"))?;
    for h in hosts.iter_mut() {
        h.cycles()?;
    }
    loop {
        anyhow::ensure!(
            Instant::now() < deadline,
            "{acting_id} finished no cycle within 90 s; its log:\n{}",
            hosts[index].tail()
        );
        hosts[index].alive()?;
        if !hosts[index].cycles()?.is_empty() {
            return Ok(index);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Whether a logged request is a `crimes/unified` poll (not a by-id details read).
fn is_poll(path: &str, body: &str) -> bool {
    path.starts_with("/rest/crimes/unified") && !body.contains("guidList")
}

/// b. Full-cycle throughput, one configuration: `hosts` processes on `db`.
async fn throughput_row(
    work: &Path,
    riposte: &Path,
    db: TestDatabase,
    hosts: usize,
) -> anyhow::Result<Value> {
    let backend = db.backend();
    let shared = matches!(db, TestDatabase::Postgres { .. });
    let sim = fixtures::simulator(0, 7).await?;
    let plugins: Vec<PluginEntry> = ["ransomware-containment", "cleanup", "reputation-feed"]
        .iter()
        .map(|n| PluginEntry::new(n, n, "shadow"))
        .collect();
    let mut fleet = Vec::new();
    for i in 0..hosts {
        let dir = work.join(format!("fleet-throughput-{backend}-{hosts}/host-{i}"));
        fleet.push(Host::start(
            riposte,
            &dir,
            &format!("host-{i}"),
            &sim,
            &plugins,
            &db,
        )?);
    }
    // Kept to the end: a SQLite database's directory goes with it.
    let (store, _db) = blocking(move || Ok((db.try_open()?, db))).await?;
    let store = Arc::new(store);
    let actor = settled(&mut fleet, &store, shared).await?;

    // The burst: every Malop at once, while the acting host sleeps between two polls.
    let mark = sim.with_state(|s| {
        for _ in 0..THROUGHPUT_MALOPS {
            s.add_malop();
        }
        s.log.len()
    });
    let added = Instant::now();
    let deadline = added + Duration::from_secs(120);
    let mut poll_at = None;
    let mut evaluations = 0;
    let mut cycles = 0;
    let mut acted_by = std::collections::BTreeSet::new();
    let done_at = loop {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the Malops were not all evaluated within 120 s; the acting host's log:\n{}",
            fleet[actor].tail()
        );
        if poll_at.is_none()
            && sim.with_state(|s| s.log[mark..].iter().any(|r| is_poll(&r.path, &r.body)))
        {
            poll_at = Some(Instant::now());
        }
        let mut whole = false;
        for h in fleet.iter_mut() {
            h.alive()?;
            for c in h.cycles()?.into_iter().filter(|c| c.invocations > 0) {
                evaluations += c.invocations;
                cycles += 1;
                acted_by.insert(h.id.clone());
                whole |= c.malops_seen >= THROUGHPUT_MALOPS;
            }
        }
        if whole {
            break Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    let poll_at = poll_at.unwrap_or(added);
    drop(fleet);
    sim.shutdown().await;
    let took = done_at - poll_at;
    Ok(json!({
        "database": if shared { "PostgreSQL" } else { "SQLite" },
        "hosts": hosts,
        "malops": THROUGHPUT_MALOPS,
        "evaluations": evaluations,
        "cycles": cycles,
        "acted": acted_by.into_iter().collect::<Vec<_>>(),
        "seconds": util::round(took.as_secs_f64()),
        "evaluations_per_s": util::round(evaluations as f64 / took.as_secs_f64()),
        "added_to_first_poll_ms": ms(poll_at - added),
    }))
}

/// b. Full-cycle throughput: SQLite single host, PostgreSQL with 1, 2 and 3 hosts.
async fn throughput(work: &Path, riposte: &Path) -> anyhow::Result<Value> {
    let mut rows = vec![throughput_row(work, riposte, TestDatabase::sqlite(), 1).await?];
    for hosts in 1..=3 {
        let db = blocking(|| Ok(TestDatabase::postgres())).await?;
        rows.push(throughput_row(work, riposte, db, hosts).await?);
    }
    let base = rows[0]["evaluations_per_s"].as_f64().unwrap_or(f64::NAN);
    for row in &mut rows {
        let r = row["evaluations_per_s"].as_f64().unwrap_or(f64::NAN) / base;
        row["vs_sqlite"] = json!(util::round(r));
    }
    Ok(json!({
        "rows": rows,
        "method": format!("`riposte run` processes (release binary), each with its own audit trail (fsync every record, the default) and the three Rust examples in shadow mode (concurrency 4, as section 3's full cycle), poll interval {POLL_SECS} s; on PostgreSQL lease {LEASE_SECS} s, heartbeat {HEARTBEAT_SECS} s, one fresh database per row shared by its hosts. Once every host has sent a heartbeat and the acting host (the lease holder) has finished a cycle, {THROUGHPUT_MALOPS} Malops are added to the simulator at once; the time runs from the arrival of the next crimes/unified poll at the simulator to the `cycle done` line that reports them all (the hosts' logs, read every 2 ms). The standby hosts send heartbeats and try the lease meanwhile; everything shares the 2 cores (hosts, simulator, PostgreSQL)."),
    }))
}

/// c. Failover of the acting host while a ransomware Malop is pending.
async fn failover(work: &Path, riposte: &Path) -> anyhow::Result<Value> {
    let sim = fixtures::simulator(4, 3).await?;
    let entry = || {
        PluginEntry::new(
            "ransomware-containment",
            "ransomware-containment",
            "enforce",
        )
        .value("kill-processes", "false")
    };
    let db = blocking(|| Ok(TestDatabase::postgres())).await?;
    let mut fleet = Vec::new();
    for i in 0..FAILOVER_HOSTS {
        let dir = work.join(format!("fleet-failover/host-{i}"));
        fleet.push(Host::start(
            riposte,
            &dir,
            &format!("host-{i}"),
            &sim,
            &[entry()],
            &db,
        )?);
    }
    let (store, _db) = blocking(move || Ok((db.try_open()?, db))).await?;
    let store = Arc::new(store);
    let mut samples = Vec::new();
    for _ in 0..FAILOVERS {
        let victim = settled(&mut fleet, &store, true).await?;
        // A ransomware Malop appears just after the acting host's cycle (it sleeps a poll
        // interval before the next), and the acting host is killed at once: the Malop is
        // pending, and another host must take the lease over and isolate.
        let mark = sim.with_state(|s| s.log.len());
        let malop = add_ransomware(&sim);
        let killed_wall = riposte_domain::now_ms();
        let killed = Instant::now();
        fleet[victim].kill();
        let deadline = killed + Duration::from_secs(LEASE_SECS + 30);
        let isolated = loop {
            anyhow::ensure!(
                Instant::now() < deadline,
                "no isolation within {} s of the kill",
                LEASE_SECS + 30
            );
            let sent = sim.with_state(|s| {
                s.log[mark..]
                    .iter()
                    .any(|r| r.method == "POST" && r.path.contains("/isolate"))
            });
            if sent {
                break Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        let (holder, acquired) = {
            let store = store.clone();
            blocking(move || {
                let (_, leases) = store.fleet()?;
                let lease = leases
                    .into_iter()
                    .find(|l| l.name == riposte_service::POLLER_LEASE)
                    .context("no poller lease")?;
                Ok((lease.holder, lease.acquired_at_ms))
            })
            .await?
        };
        samples.push(json!({
            "malop": malop.to_string(),
            "killed": fleet[victim].id,
            "took_over": holder,
            "kill_to_isolation_ms": ms(isolated - killed),
            "kill_to_lease_taken_ms": acquired - killed_wall,
        }));
        // Back to three hosts: the dead one restarts, and stands by.
        fleet[victim].spawn(riposte)?;
    }
    drop(fleet);
    sim.shutdown().await;
    let totals: Vec<Duration> = samples
        .iter()
        .filter_map(|s| s["kill_to_isolation_ms"].as_f64())
        .map(|x| Duration::from_secs_f64(x / 1e3))
        .collect();
    Ok(json!({
        "lease_secs": LEASE_SECS,
        "heartbeat_secs": HEARTBEAT_SECS,
        "poll_interval_secs": POLL_SECS,
        "hosts": FAILOVER_HOSTS,
        "expected_bound_s": LEASE_SECS + HEARTBEAT_SECS + POLL_SECS,
        "samples": samples,
        "median_ms": ms(util::median(&totals)),
        "max_ms": ms(totals.iter().max().copied().unwrap_or_default()),
        "method": format!("{FAILOVER_HOSTS} `riposte run` processes on one PostgreSQL database (lease {LEASE_SECS} s, heartbeat {HEARTBEAT_SECS} s, poll interval {POLL_SECS} s), ransomware-containment in enforce mode (kill-processes off). Each sample: just after the acting host (the lease holder) finishes a cycle, a ransomware Malop with a connected machine is added to the simulator and that host's process is killed with SIGKILL at once, so the Malop is pending; the time runs from the kill to the arrival of an isolate request at the simulator (its request log, read every 2 ms). kill_to_lease_taken_ms is the new holder's acquired_at (its clock) minus the kill (the bench's clock, same machine). The killed host is then restarted (it stands by) before the next sample. Expected bound: lease + heartbeat + poll interval = {} s (the lease expires at most lease_secs after the kill, a standby host tries it every heartbeat, and acts at once when it wins it).", LEASE_SECS + HEARTBEAT_SECS + POLL_SECS),
    }))
}

/// RESULTS.md's section 9.
pub fn report(o: &mut String, s: &Value) {
    if s.is_null() {
        return;
    }
    let _ = writeln!(o, "## 9. PostgreSQL: several hosts\n");
    if let Some(e) = s["error"].as_str() {
        let _ = writeln!(o, "Not measured: {e}\n");
        return;
    }
    crate::report::separate_run(o, s);
    let _ = writeln!(
        o,
        "PostgreSQL server: {}.\n",
        s["postgres_server"].as_str().unwrap_or("?")
    );
    let num = |v: &Value| v.as_f64().map_or("–".to_owned(), |x| format!("{x:.1}"));
    // a
    let l = &s["ledger"];
    let _ = writeln!(
        o,
        "### Action ledger: cost per action\n\n{}\n\n| database | µs/action mean | p50 | p99 | begin_action | mark_submitted | finish |\n|---|---|---|---|---|---|---|",
        l["method"].as_str().unwrap_or("")
    );
    for row in l["rows"].as_array().into_iter().flatten() {
        let p = &row["per_action"];
        let _ = writeln!(
            o,
            "| {} | **{}** | {} | {} | {} | {} | {} |",
            row["database"].as_str().unwrap_or("?"),
            num(&p["mean_us"]),
            num(&p["p50_us"]),
            num(&p["p99_us"]),
            num(&row["begin_action_mean_us"]),
            num(&row["mark_submitted_mean_us"]),
            num(&row["finish_mean_us"]),
        );
    }
    let _ = writeln!(
        o,
        "\nPostgreSQL / SQLite: **{}x** (mean), {}x (p50).\n",
        num(&l["ratio_postgres_vs_sqlite_mean"]),
        num(&l["ratio_postgres_vs_sqlite_p50"])
    );
    // b
    let t = &s["throughput"];
    let _ = writeln!(
        o,
        "### Full-cycle throughput, 1 to 3 hosts\n\n{}\n\n| database | hosts | Malops | evaluations | seconds | evaluations/s | vs SQLite | host(s) that acted | cycles |\n|---|---|---|---|---|---|---|---|---|",
        t["method"].as_str().unwrap_or("")
    );
    for row in t["rows"].as_array().into_iter().flatten() {
        let acted: Vec<&str> = row["acted"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | **{}** | {}x | {} | {} |",
            row["database"].as_str().unwrap_or("?"),
            row["hosts"],
            row["malops"],
            row["evaluations"],
            num(&row["seconds"]),
            num(&row["evaluations_per_s"]),
            row["vs_sqlite"]
                .as_f64()
                .map_or("–".into(), |x| format!("{x:.2}")),
            acted.join(", "),
            row["cycles"],
        );
    }
    // c
    let f = &s["failover"];
    let _ = writeln!(
        o,
        "\n### Failover of the acting host\n\n{}\n\n| killed | took over | kill → lease taken | kill → isolation request |\n|---|---|---|---|",
        f["method"].as_str().unwrap_or("")
    );
    for sample in f["samples"].as_array().into_iter().flatten() {
        let _ = writeln!(
            o,
            "| {} | {} | {} ms | **{} ms** |",
            sample["killed"].as_str().unwrap_or("?"),
            sample["took_over"].as_str().unwrap_or("?"),
            sample["kill_to_lease_taken_ms"],
            num(&sample["kill_to_isolation_ms"]),
        );
    }
    let _ = writeln!(
        o,
        "\nlease_secs = {}, heartbeat_secs = {}, poll interval {} s: median **{} ms**, max {} ms, against the expected bound lease + heartbeat + poll interval = {} s.\n",
        f["lease_secs"],
        f["heartbeat_secs"],
        f["poll_interval_secs"],
        num(&f["median_ms"]),
        num(&f["max_ms"]),
        f["expected_bound_s"],
    );
}
