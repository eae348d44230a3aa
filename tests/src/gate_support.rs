//! Helpers for the tests of the policy gate, the sandbox and the audit trail through the real
//! service: the simulator on loopback, an operator TOML written into a temporary directory,
//! `Service::start`, a real SQLite store and a real audit file, and ways to read back what
//! the simulator received, what the audit trail says and what each plugin logged.

use crate::{plugin_path, root};
use riposte_audit::{Filter, Record};
use riposte_client::{Client, ClientConfig, Credentials};
use riposte_domain::{Malop, MalopId, Sha256Digest};
use riposte_metrics::Metrics;
use riposte_runtime::ArtifactCache;
use riposte_service::OperatorConfig;
use riposte_service::{FollowPolicy, Service};
use riposte_sim::{LoggedRequest, SimConfig, SimHandle, Simulator};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

const USER: &str = "gate@riposte.local";
/// The password the service logs in to the simulator with (it must never reach the audit
/// trail).
pub const PASSWORD: &str = "gate-test-password";

/// One `[[plugins]]` entry of the operator configuration.
#[derive(Clone, Debug)]
pub struct Plugin {
    name: String,
    file: String,
    mode: &'static str,
    promote: Vec<String>,
    operations: Vec<String>,
    remediation: Vec<String>,
    limits: Vec<(String, u64)>,
    quotas: Vec<(String, u64)>,
    budgets: Vec<(String, u64, u64)>,
    values: Vec<(String, String)>,
    pin: Option<String>,
    whitelist: bool,
    wider_scope: Vec<String>,
    top: Vec<(String, u64)>,
    component: Option<PathBuf>,
    public_keys: Option<Vec<PathBuf>>,
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn toml_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| format!("{i:?}")).collect();
    format!("[{}]", quoted.join(", "))
}

impl Plugin {
    /// The built component `target/plugins/<file>.wasm`, configured as `name`, in enforce
    /// mode, with no grants and default limits. The pin is the file's real sha256.
    pub fn new(name: &str, file: &str) -> Self {
        Self {
            name: name.into(),
            file: file.into(),
            mode: "enforce",
            promote: Vec::new(),
            operations: Vec::new(),
            remediation: Vec::new(),
            limits: Vec::new(),
            quotas: Vec::new(),
            budgets: Vec::new(),
            values: Vec::new(),
            pin: None,
            whitelist: false,
            wider_scope: Vec::new(),
            top: Vec::new(),
            component: None,
            public_keys: None,
        }
    }

    /// The hostile plugin with its `attack` config value set.
    pub fn hostile(name: &str, attack: &str) -> Self {
        Self::new(name, "hostile").value("attack", attack)
    }

    /// Shadow mode.
    pub fn shadow(mut self) -> Self {
        self.mode = "shadow";
        self
    }

    /// Action kinds enforced in shadow mode.
    pub fn promote(mut self, kinds: &[&str]) -> Self {
        self.promote = strings(kinds);
        self
    }

    /// `grants.operations`.
    pub fn grant(mut self, operations: &[&str]) -> Self {
        self.operations = strings(operations);
        self
    }

    /// `grants.remediation`.
    pub fn remediation(mut self, kinds: &[&str]) -> Self {
        self.remediation = strings(kinds);
        self
    }

    /// One key of `[plugins.limits]`.
    pub fn limit(mut self, key: &str, value: u64) -> Self {
        self.limits.push((key.into(), value));
        self
    }

    /// One key of `[plugins.quotas]`.
    pub fn quota(mut self, key: &str, value: u64) -> Self {
        self.quotas.push((key.into(), value));
        self
    }

    /// A numeric key of the `[[plugins]]` table itself (`min_interval_secs`, ...).
    pub fn key(mut self, key: &str, value: u64) -> Self {
        self.top.push((key.into(), value));
        self
    }

    /// `grants.whitelist = true`.
    pub fn whitelist(mut self) -> Self {
        self.whitelist = true;
        self
    }

    /// `grants.wider_scope`.
    pub fn wider_scope(mut self, kinds: &[&str]) -> Self {
        self.wider_scope = strings(kinds);
        self
    }

    /// One `[[plugins.budgets]]`.
    pub fn budget(mut self, action: &str, max: u64, window_secs: u64) -> Self {
        self.budgets.push((action.into(), max, window_secs));
        self
    }

    /// One `[plugins.values]` entry.
    pub fn value(mut self, key: &str, value: &str) -> Self {
        self.values.push((key.into(), value.into()));
        self
    }

    /// Pins another digest than the file's.
    pub fn pin(mut self, sha256_hex: &str) -> Self {
        self.pin = Some(sha256_hex.into());
        self
    }

    /// Loads the component from `path` instead of the built `target/plugins/<file>.wasm`
    /// (a signed copy, a package).
    pub fn at(mut self, path: &std::path::Path) -> Self {
        self.component = Some(path.to_owned());
        self
    }

    /// The plugin's own `public_keys` (publisher keys pinned for it).
    pub fn public_keys(mut self, keys: &[&std::path::Path]) -> Self {
        self.public_keys = Some(keys.iter().map(|k| k.to_path_buf()).collect());
        self
    }

    /// The component file.
    pub fn path(&self) -> PathBuf {
        self.component
            .clone()
            .unwrap_or_else(|| plugin_path(&self.file))
    }

    /// The sha256 of the component file.
    pub fn digest(&self) -> Sha256Digest {
        let bytes = std::fs::read(self.path()).expect("the plugin file reads");
        Sha256Digest::of(&bytes)
    }

    fn toml(&self) -> String {
        let mut t = String::new();
        let pin = self.pin.clone().unwrap_or_else(|| self.digest().to_hex());
        let _ = writeln!(t, "[[plugins]]");
        let _ = writeln!(t, "name = {:?}", self.name);
        let _ = writeln!(t, "path = {:?}", self.path().display().to_string());
        let _ = writeln!(t, "sha256 = {pin:?}");
        let _ = writeln!(t, "mode = {:?}", self.mode);
        if !self.promote.is_empty() {
            let _ = writeln!(t, "promote = {}", toml_list(&self.promote));
        }
        for (key, value) in &self.top {
            let _ = writeln!(t, "{key} = {value}");
        }
        if let Some(keys) = &self.public_keys {
            let keys: Vec<String> = keys.iter().map(|k| k.display().to_string()).collect();
            let _ = writeln!(t, "public_keys = {}", toml_list(&keys));
        }
        let _ = writeln!(t, "[plugins.grants]");
        let _ = writeln!(t, "operations = {}", toml_list(&self.operations));
        if !self.remediation.is_empty() {
            let _ = writeln!(t, "remediation = {}", toml_list(&self.remediation));
        }
        if self.whitelist {
            let _ = writeln!(t, "whitelist = true");
        }
        if !self.wider_scope.is_empty() {
            let _ = writeln!(t, "wider_scope = {}", toml_list(&self.wider_scope));
        }
        if !self.quotas.is_empty() {
            let _ = writeln!(t, "[plugins.quotas]");
            for (key, value) in &self.quotas {
                let _ = writeln!(t, "{key} = {value}");
            }
        }
        if !self.limits.is_empty() {
            let _ = writeln!(t, "[plugins.limits]");
            for (key, value) in &self.limits {
                let _ = writeln!(t, "{key} = {value}");
            }
        }
        for (action, max, window) in &self.budgets {
            let _ = writeln!(
                t,
                "[[plugins.budgets]]\naction = {action:?}\nmax = {max}\nwindow_secs = {window}"
            );
        }
        if !self.values.is_empty() {
            let _ = writeln!(t, "[plugins.values]");
            for (key, value) in &self.values {
                let _ = writeln!(t, "{key:?} = {value:?}");
            }
        }
        t
    }
}

/// The simulator, a temporary directory for the database, the audit trail and the
/// configuration, and a client to the simulator.
pub struct World {
    /// The simulator on 127.0.0.1.
    pub sim: SimHandle,
    /// Holds `riposte.toml`, `riposte.db`, `audit.jsonl` (removed on drop).
    pub dir: tempfile::TempDir,
    /// A client logged in to the simulator as the service's user.
    pub client: Arc<Client>,
    /// Whether compiled artifacts go to a cache shared by the test processes (faster) or
    /// to the service's own cache next to its database (the default for the service).
    pub shared_cache: bool,
    /// The metrics the services this world starts count into (this world's own).
    pub metrics: Arc<Metrics>,
}

impl World {
    /// A simulator seeded with `malops` Malops (and `max(2 × malops, 4)` machines).
    pub async fn new(malops: usize) -> Self {
        let sim = Simulator::start(SimConfig {
            malops,
            username: USER.into(),
            password: PASSWORD.into(),
            ..SimConfig::default()
        })
        .await
        .expect("the simulator starts on loopback");
        let client = Arc::new(
            Client::new(ClientConfig::new(
                sim.base_url(),
                Credentials::new(USER, PASSWORD.to_owned()),
            ))
            .expect("the client builds"),
        );
        Self {
            sim,
            dir: tempfile::tempdir().expect("a temporary directory"),
            client,
            shared_cache: true,
            metrics: Arc::new(Metrics::new()),
        }
    }

    /// The audit trail the service writes.
    pub fn audit_path(&self) -> PathBuf {
        self.dir.path().join("audit.jsonl")
    }

    /// The service's database.
    pub fn database(&self) -> PathBuf {
        self.dir.path().join("riposte.db")
    }

    /// The service's artifact cache directory (next to its database).
    pub fn artifact_dir(&self) -> PathBuf {
        self.database().with_extension("artifacts")
    }

    /// Writes `riposte.toml`: the service section, then `global` (protected assets, global
    /// budgets, approvals) verbatim, then the plugins.
    pub fn write_config(&self, global: &str, plugins: &[Plugin]) -> PathBuf {
        let mut text = format!(
            "[service]\nmax_concurrency = 4\ndatabase = {:?}\n\n[service.audit]\npath = {:?}\nfsync = \"never\"\n\n{global}\n",
            self.database().display().to_string(),
            self.audit_path().display().to_string(),
        );
        for plugin in plugins {
            text.push('\n');
            text.push_str(&plugin.toml());
        }
        let path = self.dir.path().join("riposte.toml");
        std::fs::write(&path, text).expect("the configuration is written");
        path
    }

    /// Writes the configuration and starts the service on it.
    pub async fn start(&self, global: &str, plugins: &[Plugin]) -> anyhow::Result<Service> {
        let path = self.write_config(global, plugins);
        let config = OperatorConfig::load(&path)?;
        if self.shared_cache && !self.artifact_dir().exists() {
            std::os::unix::fs::symlink(shared_cache_dir(), self.artifact_dir())?;
        }
        // `[service.follow]` as configured, without the pauses.
        let follow = FollowPolicy {
            poll_interval: Duration::ZERO,
            ..FollowPolicy::from(&config.service.follow)
        };
        Service::start(config, self.client.clone(), follow, self.metrics.clone()).await
    }

    /// A new Malop (now) on the machines at `indices` of the simulator's machine list: it
    /// names those machines, one suspect process and one file on each (its generated suspect
    /// and file, copied with fresh guids), and nothing on any other machine.
    pub fn malop_on(&self, indices: &[usize]) -> MalopId {
        let id = self.sim.add_malop();
        self.sim.with_state(|s| {
            let guids: Vec<String> = indices
                .iter()
                .map(|&i| s.machines[i].guid.clone())
                .collect();
            let malop = s
                .malops
                .iter_mut()
                .find(|m| m.guid == id.as_str())
                .expect("the Malop just added");
            let (suspect, file) = (malop.suspects[0].clone(), malop.files[0].clone());
            malop.suspects = guids
                .iter()
                .enumerate()
                .map(|(i, machine)| riposte_sim::SimProcess {
                    guid: format!("{}.{i}", suspect.guid),
                    machine: machine.clone(),
                    autoruns: suspect
                        .autoruns
                        .iter()
                        .map(|(g, name)| (format!("{g}.{i}"), name.clone()))
                        .collect(),
                    ..suspect.clone()
                })
                .collect();
            malop.files = guids
                .iter()
                .enumerate()
                .map(|(i, machine)| riposte_sim::SimFile {
                    guid: format!("{}.{i}", file.guid),
                    machine: machine.clone(),
                    ..file.clone()
                })
                .collect();
            malop.machines = guids;
        });
        id
    }

    /// The Malop as the service sees it (details from the server).
    pub async fn malop(&self, id: &MalopId) -> Malop {
        self.client
            .get_malop_details(id)
            .await
            .expect("the Malop's details")
    }

    /// Every Malop id the simulator holds.
    pub fn malop_ids(&self) -> Vec<MalopId> {
        self.sim
            .malops()
            .into_iter()
            .map(|m| MalopId::new(m.guid))
            .collect()
    }

    /// The whole audit trail, after checking its chain.
    pub fn audit(&self) -> Vec<Record> {
        audit_records(&self.audit_path())
    }

    /// The requests that would change something on the server (remediate, isolate,
    /// un-isolate, reputation updates, status, comments).
    pub fn action_requests(&self) -> Vec<LoggedRequest> {
        self.sim
            .requests()
            .into_iter()
            .filter(is_action_request)
            .collect()
    }
}

/// Whether a logged request changes something on the server.
pub fn is_action_request(request: &LoggedRequest) -> bool {
    let path = request.path.split('?').next().unwrap_or_default();
    request.method == "POST"
        && (path == "/rest/remediate"
            || path.starts_with("/rest/remediate/abort")
            || path.starts_with("/rest/monitor/global/commands/")
            || path == "/rest/classification/update"
            || path == "/rest/crimes/status"
            || path.starts_with("/rest/crimes/comment/"))
}

/// The records of an audit trail, after `riposte_audit::verify` accepted the chain.
pub fn audit_records(path: &std::path::Path) -> Vec<Record> {
    riposte_audit::verify(path).unwrap_or_else(|e| panic!("the audit chain verifies: {e}"));
    riposte_audit::show(path, Filter::default())
        .expect("the audit trail opens")
        .collect::<Result<Vec<_>, _>>()
        .expect("every audit record reads")
}

/// The records of `plugin` whose call is `call` (`isolate`, `invoke:on-malop`, ...).
pub fn records_of<'a>(records: &'a [Record], plugin: &str, call: &str) -> Vec<&'a Record> {
    records
        .iter()
        .filter(|r| r.plugin.as_ref().is_some_and(|p| p.as_str() == plugin))
        .filter(|r| r.call.as_str() == call)
        .collect()
}

/// The `invoke:on-malop` records of `plugin`.
pub fn invocations<'a>(records: &'a [Record], plugin: &str) -> Vec<&'a Record> {
    records_of(records, plugin, "invoke:on-malop")
}

/// An invocation record's `result.status` (`completed`, `stopped`, `plugin-error`).
pub fn status(record: &Record) -> &str {
    record.result["status"].as_str().unwrap_or_default()
}

/// The Malops of some records, sorted.
pub fn malops_of(records: &[&Record]) -> Vec<String> {
    let mut ids: Vec<String> = records
        .iter()
        .filter_map(|r| r.malop.as_ref().map(|m| m.as_str().to_owned()))
        .collect();
    ids.sort();
    ids
}

/// The decision kind and category of a record, as the audit trail spells them.
pub fn decision(record: &Record) -> (String, Option<String>) {
    let d = record.decision.as_ref().expect("the record has a decision");
    let value = serde_json::to_value(d).expect("a decision serializes");
    (
        value["kind"].as_str().unwrap_or_default().to_owned(),
        value["category"].as_str().map(str::to_owned),
    )
}

/// A cache of compiled components shared by all the tests' services (keyed on the engine
/// and the component digest, authenticated), so that each component compiles once.
fn shared_cache_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = root().join("target/riposte-e2e-service-cache");
        // Creates the key once, before any service opens the directory.
        ArtifactCache::open(&dir).expect("the shared artifact cache opens");
        dir
    })
    .clone()
}

/// What plugins logged through the `log` import, captured from the host's tracing events
/// (target `plugin`) in this test process.
pub fn plugin_logs(plugin: &str) -> Vec<String> {
    install_log_capture();
    logs()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter(|(p, _)| p == plugin)
        .map(|(_, m)| m.clone())
        .collect()
}

/// Starts capturing plugin log lines (idempotent; call before the service runs).
pub fn install_log_capture() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        use tracing_subscriber::layer::SubscriberExt;
        let subscriber = tracing_subscriber::registry().with(Capture);
        tracing::subscriber::set_global_default(subscriber)
            .expect("no other global tracing subscriber in the gate tests");
    });
}

fn logs() -> &'static Mutex<Vec<(String, String)>> {
    static LOGS: OnceLock<Mutex<Vec<(String, String)>>> = OnceLock::new();
    LOGS.get_or_init(Mutex::default)
}

struct Capture;

#[derive(Default)]
struct Fields {
    plugin: String,
    message: String,
}

impl tracing::field::Visit for Fields {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        match field.name() {
            "plugin" => self.plugin = value.to_owned(),
            "message" => self.message = value.to_owned(),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "plugin" => self.plugin = format!("{value:?}"),
            "message" => self.message = format!("{value:?}"),
            _ => {}
        }
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Capture {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if event.metadata().target() != "plugin" {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        logs()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((fields.plugin, fields.message));
    }
}
