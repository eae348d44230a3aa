//! Helpers for the service tests (`tests/tests/service_*.rs`): a simulator on loopback, an
//! operator configuration in a temporary directory that points at it, the real `riposte`
//! binary, bounded waits on observable conditions, and the checks every service test makes
//! (every Malop handled, no action carried out twice).
//!
//! Compiled components are shared through one artifact cache under `target/`, warmed once
//! under a file lock: compiling the Python plugin takes tens of seconds, loading it from the
//! cache a fraction of one.

pub use crate::riposte_bin;
use crate::{plugin_path, root};
use riposte_client::{Client, ClientConfig, Credentials};
use riposte_domain::{MalopId, PluginName, Sha256Digest};
use riposte_metrics::Metrics;
use riposte_runtime::PluginInfo;
use riposte_service::OperatorConfig;
use riposte_service::{FollowPolicy, Service};
use riposte_sim::{Fault, FaultKind, LoggedRequest, SimConfig, SimHandle, SimMalop, Simulator};
use riposte_store::Store;
use riposte_store::prelude::*;
use riposte_store::testing::TestDatabase;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// The user the test simulators accept.
pub const USER: &str = "analyst@riposte.local";
/// Its password: a throwaway secret of a loopback simulator.
pub const PASSWORD: &str = "riposte-e2e-service-password";
/// `max_concurrency` of every test configuration (part of the engine settings, so every
/// configuration shares the warmed artifacts).
const MAX_CONCURRENCY: usize = 4;

/// Starts a simulator on `127.0.0.1` with `malops` seeded Malops from `seed`. Remediations
/// become final at the first progress poll.
pub async fn start_sim(seed: u64, malops: usize) -> SimHandle {
    Simulator::start(SimConfig {
        seed,
        malops,
        username: USER.into(),
        password: PASSWORD.into(),
        steps_per_poll: 2,
        ..SimConfig::default()
    })
    .await
    .expect("the simulator starts on loopback")
}

/// One `[[plugins]]` table.
#[derive(Clone, Debug)]
pub struct PluginSpec {
    /// Its name in the configuration (and the ledger).
    pub name: String,
    /// The built component: `target/plugins/<file>.wasm`.
    pub file: String,
    /// `enforce` or `shadow`.
    pub mode: &'static str,
    /// Granted operations.
    pub operations: Vec<&'static str>,
    /// Granted remediation kinds.
    pub remediation: Vec<&'static str>,
    /// `[plugins.values]`.
    pub values: Vec<(String, String)>,
    /// `malop_parts` (none: the default, every part).
    pub malop_parts: Option<Vec<&'static str>>,
}

impl PluginSpec {
    fn new(file: &str, operations: &[&'static str], remediation: &[&'static str]) -> Self {
        Self {
            name: file.to_owned(),
            file: file.to_owned(),
            mode: "enforce",
            operations: operations.to_vec(),
            remediation: remediation.to_vec(),
            values: Vec::new(),
            malop_parts: None,
        }
    }

    /// Isolates and kills on ransomware Malops.
    pub fn ransomware_containment() -> Self {
        Self::new(
            "ransomware-containment",
            &["get-malop", "isolate", "remediate", "remediation-status"],
            &["kill-process"],
        )
    }

    /// Quarantines files and deletes autoruns of malicious Malops.
    pub fn cleanup() -> Self {
        Self::new(
            "cleanup",
            &["get-malop", "remediate", "remediation-status"],
            &["quarantine-file", "delete-registry-key"],
        )
    }

    /// Blacklists the hashes, IPs and domains of malicious Malops.
    pub fn reputation_feed() -> Self {
        Self::new("reputation-feed", &["get-malop", "set-reputation"], &[])
    }

    /// Comments on and opens untriaged Malops (Python); here for every priority.
    pub fn python_triage() -> Self {
        Self::new("python-triage", &["add-comment", "set-status"], &[]).value("min-priority", "LOW")
    }

    /// The hostile test plugin doing `attack`.
    pub fn hostile(attack: &str) -> Self {
        Self::new(
            "hostile",
            &["get-malop", "isolate", "remediate"],
            &["kill-process"],
        )
        .value("attack", attack)
    }

    /// The rule built against `riposte:plugin@0.1.0` (tests/legacy-plugin): isolates the
    /// connected machines of ransomware Malops.
    pub fn legacy() -> Self {
        Self::new("legacy-rule", &["isolate"], &[])
    }

    /// Grants one more operation.
    pub fn grant(mut self, operation: &'static str) -> Self {
        self.operations.push(operation);
        self
    }

    /// Grants one more remediation kind.
    pub fn grant_remediation(mut self, kind: &'static str) -> Self {
        self.remediation.push(kind);
        self
    }

    /// Says which parts of a Malop the plugin reads (`malop_parts`).
    pub fn reads(mut self, parts: &[&'static str]) -> Self {
        self.malop_parts = Some(parts.to_vec());
        self
    }

    /// Adds a config value.
    pub fn value(mut self, key: &str, value: &str) -> Self {
        self.values.push((key.to_owned(), value.to_owned()));
        self
    }
}

/// The operator configuration of a test.
#[derive(Clone, Debug)]
pub struct Setup {
    /// The plugins.
    pub plugins: Vec<PluginSpec>,
    /// `[approvals].required`.
    pub approvals: Vec<&'static str>,
    /// `[approvals].expiry_secs`.
    pub approval_expiry_secs: u64,
    /// `[service].poll_interval_secs`.
    pub poll_interval_secs: u64,
    /// The global budget: at most this many actions (of any kind) an hour.
    pub global_budget: u64,
    /// The action kind the global budget counts (`any`: every kind).
    pub global_budget_action: &'static str,
    /// More tables, written after `[[global_budgets]]` and before the plugins (for example
    /// `[approvals.quorum]` or `[containment]`).
    pub extra_toml: String,
}

impl Setup {
    /// The given plugins, nothing needing approval, polling every second.
    pub fn new(plugins: Vec<PluginSpec>) -> Self {
        Self {
            plugins,
            approvals: Vec::new(),
            approval_expiry_secs: 3600,
            poll_interval_secs: 1,
            global_budget: 100_000,
            global_budget_action: "any",
            extra_toml: String::new(),
        }
    }

    /// The four example plugins, all enforcing.
    pub fn examples() -> Self {
        Self::new(vec![
            PluginSpec::ransomware_containment(),
            PluginSpec::cleanup(),
            PluginSpec::reputation_feed(),
            PluginSpec::python_triage(),
        ])
    }

    /// Adds tables to the configuration (see [`Setup::extra_toml`]).
    pub fn with_toml(mut self, tables: &str) -> Self {
        self.extra_toml.push_str(tables);
        self.extra_toml.push('\n');
        self
    }

    /// Marks action kinds as needing approval.
    pub fn approvals(mut self, kinds: &[&'static str], expiry_secs: u64) -> Self {
        self.approvals = kinds.to_vec();
        self.approval_expiry_secs = expiry_secs;
        self
    }
}

/// A service's files in a temporary directory: configuration, credentials, audit trail, and
/// its state database (a SQLite file of its own, or a PostgreSQL database it may share with a
/// fleet).
pub struct ServiceEnv {
    /// Removed on drop.
    pub dir: tempfile::TempDir,
    /// `riposte.toml`.
    pub config: PathBuf,
    /// The audit trail.
    pub audit: PathBuf,
    /// The metrics the services of this environment count into (its own).
    pub metrics: Arc<Metrics>,
    /// The state database.
    pub db: Arc<TestDatabase>,
    /// In a fleet: this host's id (`RIPOSTE_HOST_ID` of its runs).
    pub host: Option<String>,
}

impl ServiceEnv {
    /// Writes the configuration of `setup` against `sim` (fsync on every audit record) on a
    /// SQLite database of its own, with the shared, warmed artifact cache.
    pub fn new(sim: &SimHandle, setup: &Setup) -> Self {
        Self::on(TestDatabase::sqlite(), sim, setup)
    }

    /// [`ServiceEnv::new`] on `db`, a fresh database of either backend (the parameter of a
    /// suite that runs against both).
    pub fn on(db: TestDatabase, sim: &SimHandle, setup: &Setup) -> Self {
        Self::with_database(Arc::new(db), None, sim, setup)
    }

    /// One host of a fleet on the PostgreSQL database `db` (lease `lease_secs`, heartbeat
    /// every `heartbeat_secs`): its own configuration directory and audit trail, the shared
    /// artifact cache, and `host` as its id (`RIPOSTE_HOST_ID`). With `via`, it reaches the
    /// database's server through that address (a [`crate::cut_proxy::CutProxy`]).
    pub fn fleet_host(
        sim: &SimHandle,
        setup: &Setup,
        db: &Arc<TestDatabase>,
        host: &str,
        timing: (u64, u64),
        via: Option<std::net::SocketAddr>,
    ) -> Self {
        assert!(
            matches!(db.as_ref(), TestDatabase::Postgres { .. }),
            "a fleet shares a PostgreSQL database"
        );
        let fleet = FleetHost {
            host: host.to_owned(),
            timing,
            via,
        };
        Self::with_database(db.clone(), Some(fleet), sim, setup)
    }

    fn with_database(
        db: Arc<TestDatabase>,
        fleet: Option<FleetHost>,
        sim: &SimHandle,
        setup: &Setup,
    ) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let env = Self {
            config: dir.path().join("riposte.toml"),
            audit: dir.path().join("audit.jsonl"),
            dir,
            metrics: Arc::new(Metrics::new()),
            host: fleet.as_ref().map(|f| f.host.clone()),
            db,
        };
        let artifacts = match env.db.as_ref() {
            TestDatabase::Sqlite { path, .. } => path.with_extension("artifacts"),
            TestDatabase::Postgres { .. } => env.dir.path().join("riposte.artifacts"),
        };
        std::os::unix::fs::symlink(warm_cache(), artifacts)
            .expect("linking the shared artifact cache");
        env.write(fleet.as_ref(), sim, setup);
        env
    }

    fn write(&self, fleet: Option<&FleetHost>, sim: &SimHandle, setup: &Setup) {
        let database = match self.db.as_ref() {
            TestDatabase::Sqlite { path, .. } => Database::Sqlite(path),
            TestDatabase::Postgres { shown, .. } => {
                let (lease_secs, heartbeat_secs) = fleet.map_or(DEFAULT_TIMING, |f| f.timing);
                let url = match fleet.and_then(|f| f.via) {
                    Some(proxy) => {
                        shown.replacen(&postgres_addr(&self.db).to_string(), &proxy.to_string(), 1)
                    }
                    None => shown.clone(),
                };
                Database::Postgres {
                    url,
                    password: self.db.password().unwrap_or_default(),
                    ca_file: self.db.ca_file(),
                    lease_secs,
                    heartbeat_secs,
                }
            }
        };
        write_config(
            self.dir.path(),
            &database,
            &self.audit,
            &sim.base_url(),
            setup,
        );
    }

    /// Rewrites the configuration for `setup`, keeping the database, the audit trail and
    /// the artifact cache (an operator changing the plugins of a running deployment).
    pub fn reconfigure(&self, sim: &SimHandle, setup: &Setup) {
        assert!(self.host.is_none(), "reconfigure a host of its own");
        self.write(None, sim, setup);
    }

    /// The SQLite file of an environment on SQLite.
    ///
    /// # Panics
    ///
    /// On PostgreSQL.
    pub fn sqlite_path(&self) -> &Path {
        match self.db.as_ref() {
            TestDatabase::Sqlite { path, .. } => path,
            TestDatabase::Postgres { .. } => panic!("this environment is on PostgreSQL"),
        }
    }

    /// The configuration, loaded.
    pub fn load(&self) -> OperatorConfig {
        OperatorConfig::load(&self.config).expect("the test configuration loads")
    }

    /// Opens the state database (another connection: the service may be running).
    pub fn store(&self) -> Store {
        self.db.open()
    }

    /// Starts the service in process, following remediations without pauses. On
    /// PostgreSQL its heartbeat runs (renewing its lease) until the test's runtime ends.
    pub async fn service(&self, sim: &SimHandle) -> Service {
        let service = Service::start(
            self.load(),
            Arc::new(client(sim)),
            fast_follow(),
            self.metrics.clone(),
        )
        .await
        .expect("the service starts");
        if matches!(self.db.as_ref(), TestDatabase::Postgres { .. }) {
            drop(service.membership().spawn());
        }
        service
    }

    /// Starts `riposte run --config` on this environment (run number `run`: its stderr goes
    /// to [`ServiceEnv::log_path`]).
    pub fn spawn_run(&self, run: usize) -> Child {
        let log = std::fs::File::create(self.log_path(run)).expect("the run's log file");
        let mut command = Command::new(riposte_bin());
        if matches!(self.db.as_ref(), TestDatabase::Postgres { .. }) {
            // Outside a fleet test, the test process's own id: its runs and its in-process
            // services are one host, which takes its lease back at once after a crash.
            let host = self
                .host
                .clone()
                .unwrap_or_else(riposte_service::default_host_id);
            command.env(riposte_service::HOST_ID_ENV, host);
        }
        command
            .args(["run", "--config"])
            .arg(&self.config)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("riposte run starts")
    }

    /// The last 30 lines of run `run`'s log.
    pub fn log_tail(&self, run: usize) -> String {
        let text = std::fs::read_to_string(self.log_path(run)).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(30).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// Where the process's stderr goes.
    pub fn log_path(&self, run: usize) -> PathBuf {
        self.dir.path().join(format!("riposte-run-{run}.log"))
    }
}

/// A client for `sim` with the test credentials.
pub fn client(sim: &SimHandle) -> Client {
    Client::new(ClientConfig::new(
        sim.base_url(),
        Credentials::new(USER, PASSWORD.to_owned()),
    ))
    .expect("the client builds")
}

/// Remediation progress polled back to back (the simulator moves one step per poll).
pub fn fast_follow() -> FollowPolicy {
    FollowPolicy {
        poll_interval: Duration::ZERO,
        ..FollowPolicy::default()
    }
}

/// The address of the server of a PostgreSQL test database (as its URL names it).
pub fn postgres_addr(db: &TestDatabase) -> std::net::SocketAddr {
    let TestDatabase::Postgres { shown, .. } = db else {
        panic!("a PostgreSQL test database")
    };
    let authority = shown.trim_start_matches("postgres://");
    let authority = authority.split_once('@').map_or(authority, |(_, a)| a);
    let addr = authority.split('/').next().unwrap_or_default();
    addr.parse()
        .unwrap_or_else(|e| panic!("{addr} is not an IP address and port: {e}"))
}

/// The lease and heartbeat (seconds) of a host on PostgreSQL outside a fleet test: the
/// defaults of `[service.database]`.
const DEFAULT_TIMING: (u64, u64) = (
    riposte_store::settings::DEFAULT_LEASE_SECS,
    riposte_store::settings::DEFAULT_HEARTBEAT_SECS,
);

/// A host's place in a fleet test.
struct FleetHost {
    /// Its id.
    host: String,
    /// Lease and heartbeat, seconds.
    timing: (u64, u64),
    /// The address it reaches the database's server through, if not directly.
    via: Option<std::net::SocketAddr>,
}

/// Where a test service keeps its state.
#[derive(Debug)]
enum Database<'a> {
    /// A SQLite file.
    Sqlite(&'a Path),
    /// A PostgreSQL database (the password in a credentials file beside the configuration).
    Postgres {
        url: String,
        password: String,
        ca_file: Option<&'a Path>,
        lease_secs: u64,
        heartbeat_secs: u64,
    },
}

impl Database<'_> {
    /// Its lines: a key of `[service]` and a section of its own (writing the database's
    /// credentials file into `dir`).
    fn toml(&self, dir: &Path) -> (String, String) {
        match self {
            Database::Sqlite(path) => (
                format!("database = {:?}\n", path.display().to_string()),
                String::new(),
            ),
            Database::Postgres {
                url,
                password,
                ca_file,
                lease_secs,
                heartbeat_secs,
            } => {
                let credentials = dir.join("database-credentials");
                write_secret_file(&credentials, &format!("password = {password}\n"));
                let mut section = format!(
                    "[service.database]\nbackend = \"postgres\"\nurl = {url:?}\n\
                     credentials_file = {credentials:?}\nlease_secs = {lease_secs}\n\
                     heartbeat_secs = {heartbeat_secs}\n",
                    credentials = credentials.display().to_string(),
                );
                if let Some(ca) = ca_file {
                    let _ = writeln!(section, "ca_file = {:?}", ca.display().to_string());
                }
                section.push('\n');
                (String::new(), section)
            }
        }
    }
}

/// Writes `text` to `path`, readable by its owner only (as riposte demands of credentials).
fn write_secret_file(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).expect("writing a credentials file");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .expect("restricting a credentials file");
}

fn write_config(
    dir: &Path,
    database: &Database<'_>,
    audit: &Path,
    base_url: &str,
    setup: &Setup,
) -> PathBuf {
    let credentials = dir.join("credentials");
    write_secret_file(
        &credentials,
        &format!("username = {USER}\npassword = {PASSWORD}\n"),
    );
    let (database_key, database_section) = database.toml(dir);
    let mut toml = format!(
        "[service]\npoll_interval_secs = {poll}\noverlap_window_secs = 60\nmax_concurrency = {MAX_CONCURRENCY}\n\
         {database_key}\n[service.audit]\npath = {audit:?}\nfsync = \"every-record\"\n\n\
         [service.server]\nbase_url = {base_url:?}\ncredentials_file = {cred:?}\nrequest_timeout_secs = 10\n\n\
         {database_section}[approvals]\nrequired = {approvals:?}\nexpiry_secs = {expiry}\n\n\
         [[global_budgets]]\naction = \"{budget_action}\"\nmax = {budget}\nwindow_secs = 3600\n",
        budget = setup.global_budget,
        budget_action = setup.global_budget_action,
        poll = setup.poll_interval_secs,
        audit = audit.display().to_string(),
        cred = credentials.display().to_string(),
        approvals = setup.approvals,
        expiry = setup.approval_expiry_secs,
    );
    toml.push_str(&setup.extra_toml);
    for plugin in &setup.plugins {
        let path = plugin_path(&plugin.file);
        let bytes = std::fs::read(&path).expect("the plugin reads");
        let _ = write!(
            toml,
            "\n[[plugins]]\nname = {name:?}\npath = {path:?}\nsha256 = \"{sha}\"\nmode = \"{mode}\"\n{parts}\
             [plugins.grants]\noperations = {ops:?}\n",
            name = plugin.name,
            path = path.display().to_string(),
            sha = Sha256Digest::of(&bytes).to_hex(),
            mode = plugin.mode,
            ops = plugin.operations,
            parts = plugin
                .malop_parts
                .as_ref()
                .map_or(String::new(), |parts| format!("malop_parts = {parts:?}\n")),
        );
        if !plugin.remediation.is_empty() {
            let _ = writeln!(toml, "remediation = {:?}", plugin.remediation);
        }
        if !plugin.values.is_empty() {
            toml.push_str("[plugins.values]\n");
            for (k, v) in &plugin.values {
                let _ = writeln!(toml, "{k:?} = {v:?}");
            }
        }
    }
    let path = dir.join("riposte.toml");
    std::fs::write(&path, toml).expect("writing the configuration");
    path
}

/// The shared artifact cache, with every test plugin compiled into it (once, under a lock,
/// whichever test process comes first).
fn warm_cache() -> PathBuf {
    let base = root().join("target/riposte-service-test-cache");
    std::fs::create_dir_all(&base).expect("creating the shared artifact cache");
    let lock = std::fs::File::create(base.join("warm.lock")).expect("the cache lock file");
    lock.lock().expect("locking the shared artifact cache");
    let database = base.join("warm.db");
    let audit = base.join("warm-audit.jsonl");
    let mut setup = Setup::examples();
    setup.plugins.push(PluginSpec::hostile("panic"));
    setup.plugins.push(PluginSpec::legacy());
    let config = write_config(
        &base,
        &Database::Sqlite(&database),
        &audit,
        "http://127.0.0.1:9",
        &setup,
    );
    let config = OperatorConfig::load(&config).expect("the warm-up configuration loads");
    let client = Client::new(ClientConfig::new(
        "http://127.0.0.1:9".to_owned(),
        Credentials::new(USER, PASSWORD.to_owned()),
    ))
    .expect("the client builds");
    // Loading the plugins compiles them into `warm.artifacts`; no request is made.
    std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime")
                .block_on(Service::start(
                    config,
                    Arc::new(client),
                    fast_follow(),
                    Arc::new(Metrics::new()),
                ))
                .expect("the warm-up service loads every plugin");
        });
    });
    drop(lock);
    database.with_extension("artifacts")
}

/// Queues `fault` ahead of every pending fault (a request takes the first fault that
/// matches it, so this one wins over, say, a delay on every request).
pub fn inject_first(sim: &SimHandle, fault: Fault) {
    sim.with_state(|s| s.faults.push_front(fault));
}

/// Where a `riposte run` is killed, counted from a point (its start, a round's start).
#[derive(Clone, Copy, Debug)]
pub enum KillAt {
    /// When the simulator has logged this many more requests (one is in flight).
    Requests(usize),
    /// Just after the simulator carried out this many more actions.
    Actions(usize),
    /// When this many more remediation progress requests reached the simulator: the host
    /// is following a remediation it sent (the answer is still on its way).
    Following(usize),
}

/// The path prefix of a remediation's progress requests.
const PROGRESS: &str = "/rest/remediate/progress/";

/// What the simulator has counted at some point: see [`KillAt::mark`].
#[derive(Clone, Copy, Debug)]
pub struct Mark {
    requests: usize,
    actions: usize,
    progress: usize,
}

impl KillAt {
    /// What the simulator counts now, to pass to [`KillAt::reached`] later.
    pub fn mark(sim: &SimHandle) -> Mark {
        Mark {
            requests: sim.requests().len(),
            actions: actions_carried_out(sim).len(),
            progress: progress_requests(sim),
        }
    }

    /// Whether the kill point is reached since `mark`.
    pub fn reached(self, sim: &SimHandle, mark: Mark) -> bool {
        match self {
            KillAt::Requests(n) => sim.requests().len() >= mark.requests + n,
            KillAt::Actions(n) => actions_carried_out(sim).len() >= mark.actions + n,
            KillAt::Following(n) => progress_requests(sim) >= mark.progress + n,
        }
    }
}

fn progress_requests(sim: &SimHandle) -> usize {
    sim.requests()
        .iter()
        .filter(|r| r.path.starts_with(PROGRESS))
        .count()
}

/// The isolations of the ledger in `state`.
pub fn isolations(
    store: &riposte_store::Store,
    state: riposte_store::ActionState,
) -> Vec<riposte_store::ActionRecord> {
    store
        .list_actions(&riposte_store::ActionFilter {
            states: vec![state],
            ..Default::default()
        })
        .expect("the ledger lists")
        .into_iter()
        .filter(|a| matches!(a.request, riposte_domain::ActionRequest::Isolate { .. }))
        .collect()
}

/// Adds a ransomware Malop whose machines are all connected (so ransomware-containment
/// isolates them and kills its processes) to the simulator.
pub fn add_ransomware_malop(sim: &SimHandle) -> MalopId {
    loop {
        let id = sim.add_malop();
        let ransomware = sim.with_state(|s| {
            let malop = s.malops.iter().find(|m| m.guid == id.as_str()).cloned();
            let Some(malop) = malop.filter(|m| m.detection_type == "RANSOMWARE") else {
                return false;
            };
            for machine in s.machines.iter_mut() {
                if malop.machines.contains(&machine.guid) {
                    machine.online = true;
                }
            }
            true
        });
        if ransomware {
            return id;
        }
    }
}

/// The plugins of `setup` and the Malop kinds each subscribes to, read by loading them once
/// in a service of its own.
pub async fn subscriptions_of(sim: &SimHandle, setup: &Setup) -> Vec<(PluginName, PluginInfo)> {
    let single = ServiceEnv::new(sim, setup);
    subscriptions(&single.service(sim).await)
}

/// Polls `condition` until it holds; panics with `what` after `limit`.
pub async fn wait_until(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The API paths through which actions reach the server.
pub const ACTION_PATHS: [&str; 6] = [
    "/rest/remediate",
    "/rest/monitor/global/commands/isolate",
    "/rest/monitor/global/commands/un-isolate",
    "/rest/classification/update",
    "/rest/crimes/comment/",
    "/rest/crimes/status",
];

/// Whether `r` is a POST that carries out an action (not a query such as progress).
pub fn is_action(r: &LoggedRequest) -> bool {
    r.method == "POST"
        && ACTION_PATHS.iter().any(|p| {
            if p.ends_with('/') {
                r.path.starts_with(p)
            } else {
                r.path == *p
            }
        })
}

/// Whether the simulator carried `r` out: answered 200 with no fault that stops processing.
/// (A request whose sender died while it was delayed is never processed: its status stays 0.)
pub fn carried_out(r: &LoggedRequest) -> bool {
    r.status == 200 && matches!(r.fault, None | Some(FaultKind::Delay))
}

/// The actions the simulator carried out, as (path, body).
pub fn actions_carried_out(sim: &SimHandle) -> Vec<(String, String)> {
    sim.requests()
        .iter()
        .filter(|r| is_action(r) && carried_out(r))
        .map(|r| (r.path.clone(), r.body.clone()))
        .collect()
}

/// Asserts that no action reached the simulator twice (same path, same body), and returns
/// how many reached it, by path.
pub fn assert_no_action_twice(sim: &SimHandle) -> BTreeMap<String, usize> {
    assert_no_action_twice_by(sim, carried_out)
}

/// [`assert_no_action_twice`], with `carried` telling which logged requests the simulator
/// carried out (for tests whose faults answer 500 after carrying a request out).
pub fn assert_no_action_twice_by(
    sim: &SimHandle,
    carried: impl Fn(&LoggedRequest) -> bool,
) -> BTreeMap<String, usize> {
    let mut seen: BTreeMap<(String, String), usize> = BTreeMap::new();
    for r in sim.requests().iter().filter(|r| is_action(r) && carried(r)) {
        *seen.entry((r.path.clone(), r.body.clone())).or_default() += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "actions carried out more than once by the simulator: {twice:#?}"
    );
    let mut by_path = BTreeMap::new();
    for (path, _) in seen.keys() {
        let path = if path.starts_with("/rest/crimes/comment/") {
            "/rest/crimes/comment/"
        } else {
            path.as_str()
        };
        *by_path.entry(path.to_owned()).or_default() += 1;
    }
    by_path
}

/// The (plugin, Malop) pairs of `service`'s plugins subscribed to a Malop of `sim` that the
/// store does not show as handled at the Malop's current update time.
pub fn unhandled(service: &Service, store: &Store, sim: &SimHandle) -> Vec<(String, String)> {
    unhandled_by(&subscriptions(service), store, &sim.malops())
}

/// Each plugin of `service` with what it said about itself (its subscription).
pub fn subscriptions(service: &Service) -> Vec<(PluginName, PluginInfo)> {
    service
        .plugins()
        .iter()
        .map(|p| (p.policy.name.clone(), p.info.clone()))
        .collect()
}

/// [`unhandled`] for `plugins` (from [`subscriptions`]) and `malops`.
pub fn unhandled_by(
    plugins: &[(PluginName, PluginInfo)],
    store: &Store,
    malops: &[SimMalop],
) -> Vec<(String, String)> {
    let mut missing = Vec::new();
    for malop in malops {
        let id = MalopId::new(malop.guid.clone());
        for (name, info) in plugins {
            let wants = info.subscription.matches_parts(
                malop.kind,
                &malop.activity_types,
                &malop.detection_type,
            );
            let handled = store
                .is_handled(name, &id, malop.last_update_time, None)
                .expect("the store answers");
            if wants && !handled {
                missing.push((name.to_string(), malop.guid.clone()));
            }
        }
    }
    missing
}

/// Runs cycles until every subscribed (plugin, Malop) pair is handled and no action is left
/// unresolved, at most `max_cycles`; returns how many ran. Errors of a cycle are tolerated
/// (the next one retries), but not past the limit.
pub async fn run_until_settled(service: &Service, sim: &SimHandle, max_cycles: usize) -> usize {
    let store = service.store();
    let mut last = Vec::new();
    for cycle in 1..=max_cycles {
        if let Err(e) = service.run_cycle().await {
            last.push(format!("cycle {cycle}: {e:#}"));
        }
        let unresolved = store.unresolved_actions().expect("the ledger answers");
        let missing = unhandled(service, store, sim);
        if missing.is_empty() && unresolved.is_empty() {
            return cycle;
        }
        last.push(format!(
            "after cycle {cycle}: unhandled {missing:?}, unresolved {:?}",
            unresolved
                .iter()
                .map(|a| (a.id.as_str(), a.state))
                .collect::<Vec<_>>()
        ));
    }
    panic!(
        "not settled after {max_cycles} cycles:\n{}",
        last.join("\n")
    );
}

/// Runs `riposte <args>` to completion (within 30 s), returning (success, stdout, stderr).
pub async fn riposte_cli(args: &[&str]) -> (bool, String, String) {
    let child = tokio::process::Command::new(riposte_bin())
        .args(args)
        .env("USER", "e2e-operator")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("riposte starts");
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("riposte {args:?} did not finish within 30 s"))
        .expect("riposte's output");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every record of the audit trail at `path`, after checking its hash chain.
pub fn audit_records(path: &Path) -> Vec<serde_json::Value> {
    riposte_audit::verify(path)
        .unwrap_or_else(|e| panic!("the audit trail {} verifies: {e}", path.display()));
    std::fs::read_to_string(path)
        .expect("the audit trail reads")
        .lines()
        .map(|line| serde_json::from_str(line).expect("an audit record is JSON"))
        .collect()
}

/// The audit records whose call is `call`.
pub fn audit_calls(path: &Path, call: &str) -> Vec<serde_json::Value> {
    audit_records(path)
        .into_iter()
        .filter(|r| r["call"] == call)
        .collect()
}

/// The audit records whose call is `call` written so far by a process still appending to
/// the trail at `path` (whole lines only; the chain is not checked).
pub fn audit_calls_so_far(path: &Path, call: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .split_inclusive('\n')
        .filter(|line| line.ends_with('\n'))
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|r| r["call"] == call)
        .collect()
}

/// Polls until `reached` holds, failing if the process ends first or after `limit`.
pub async fn wait_for_process(
    child: &mut Child,
    env: &ServiceEnv,
    run: usize,
    what: &str,
    limit: Duration,
    mut reached: impl FnMut() -> bool,
) {
    let deadline = Instant::now() + limit;
    while !reached() {
        if let Some(status) = child.try_wait().expect("polling the process") {
            panic!(
                "run {run} ended ({status}) before {what}:\n{}",
                env.log_tail(run)
            );
        }
        assert!(
            Instant::now() < deadline,
            "run {run}: timed out after {limit:?} waiting for {what}:\n{}",
            env.log_tail(run)
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}
