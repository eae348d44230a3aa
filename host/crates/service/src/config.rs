//! The operator's configuration as the service runs it: the `[service]` section (owned here),
//! the `[[plugins]]` entries, and the sections owned by other crates, gathered by the
//! `riposte-config` loader so every mistake names its file, line and key.
//!
//! | section | owner |
//! |---|---|
//! | `[service]`, `[service.follow]`, `[[plugins]]` (`name`, `path`, `sha256`, `values`, `malop_parts`) | here |
//! | `[service.database]` (or the older `[service] database = "path"`) | `riposte_store::settings::DatabaseConfig` |
//! | `[service.audit]` | `riposte_audit::AuditConfig` |
//! | `[service.server]` | `riposte_client::ServerConfig` |
//! | `[service.syslog]`, `[service.syslog.tls]` | `riposte_syslog::ListenerConfig` |
//! | `[protected]`, `[[global_budgets]]`, `[approvals]`, a plugin's policy keys | `riposte_policy::settings` |
//! | `[plugins.limits]` | `riposte_runtime::Limits` |
//! | `[containment]`, a plugin's `time_limits` | `crate::containment` |
//! | `[signing]`, a plugin's `public_keys` | `riposte_supply::Signing` |
//! | `[notifications]`, `[[notifications.webhooks]]` | `riposte_notify::NotificationsConfig` |
//! | `[console]` (read by its owner, which sits above the service, from the same file) | `riposte_console::ConsoleConfig` |
//!
//! Relative paths (plugin components, the database, the audit log, the credentials file)
//! resolve against the directory of the configuration file. Secrets never live in this file:
//! the server's password sits in a separate credentials file named by
//! `service.server.credentials_file` (or in the environment), and so does the PostgreSQL
//! password (`service.database.credentials_file`, or the variable named by
//! `service.database.password_env`).

use crate::containment::{self, ContainmentConfig, RawContainment, TimeLimits};
use riposte_audit::AuditConfig;
use riposte_client::{RawServerConfig, ServerConfig};
use riposte_config::Document;
use riposte_domain::settings::{Findings, resolve_path};
use riposte_domain::{MalopPart, PluginName, Sha256Digest};
use riposte_notify::{NotificationsConfig, RawNotifications};
use riposte_policy::settings::{RawApprovals, RawBudget, RawGrants, RawPluginRules};
use riposte_policy::{
    Approvals, Budget, PluginPolicy, PluginRules, PolicyConfig, ProtectedAssets, Quotas,
};
use riposte_runtime::Limits;
use riposte_store::settings::{Backend, DatabaseConfig, RawDatabase};
use riposte_supply::Signing;
use riposte_syslog::ListenerConfig;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Default seconds between two polls of the server.
pub const DEFAULT_POLL_INTERVAL_SECS: u64 = 30;
/// Default overlap window: each poll re-reads this many seconds before the watermark.
pub(crate) const DEFAULT_OVERLAP_WINDOW_SECS: u64 = 300;
/// Default number of plugin invocations run at once. Far above the core count on purpose:
/// an invocation spends most of its time waiting for the server to answer its calls (a
/// remote tenant answers in tens to hundreds of milliseconds), and the CPU it uses is bounded
/// by fuel. Worst-case plugin memory is this times the largest plugin memory limit.
pub const DEFAULT_MAX_CONCURRENCY: usize = 16;
/// The most `max_concurrency` and `max_detail_fetches` accept: more would reserve an
/// instance pool (four slots per invocation) beyond what one host can map.
const MAX_IN_FLIGHT: usize = 256;
/// Default Malop detail requests in flight at once during a poll.
pub const DEFAULT_MAX_DETAIL_FETCHES: usize = 8;
/// The most `keep_resident_bytes` accepts (64 MiB): every pool slot may hold this much.
const MAX_KEEP_RESIDENT: usize = 64 << 20;

/// The top-level sections of the file. `[console]` is not read here: its owner,
/// `riposte_console::ConsoleConfig`, sits above the service and reads it from the same file.
const SECTIONS: [&str; 9] = [
    "service",
    "containment",
    "console",
    "protected",
    "global_budgets",
    "approvals",
    "signing",
    "plugins",
    "notifications",
];

/// A plugin component that must not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PluginFileError {
    /// A plugin component could not be read.
    #[error("plugin `{plugin}`: cannot read component {}: {source}", path.display())]
    Read {
        /// The plugin.
        plugin: PluginName,
        /// Its component.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A plugin component's sha256 differs from its pin.
    #[error(
        "plugin `{plugin}` ({}): sha256 pin mismatch: the configuration pins {expected}, the component is {actual}; refusing to load it",
        path.display()
    )]
    PinMismatch {
        /// The plugin.
        plugin: PluginName,
        /// Its component.
        path: PathBuf,
        /// The pin from the configuration.
        expected: Sha256Digest,
        /// The digest of the bytes offered.
        actual: Sha256Digest,
    },
    /// A publisher key is pinned for the plugin and its component is not validly signed by it.
    #[error("plugin `{plugin}` ({}): signature refused: {source}; refusing to load it", path.display())]
    Signature {
        /// The plugin.
        plugin: PluginName,
        /// Its component.
        path: PathBuf,
        /// Why the signature does not verify.
        source: riposte_supply::Error,
    },
}

/// The whole operator configuration.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OperatorConfig {
    /// The file it was loaded from (empty when built in code).
    pub source: PathBuf,
    /// How the service runs: `[service]`.
    pub service: ServiceConfig,
    /// The policy for all plugins: `[protected]`, `[[global_budgets]]`, `[approvals]`.
    pub policy: PolicyConfig,
    /// Publisher keys pinned for every plugin: `[signing]`.
    pub signing: Signing,
    /// Time limits of executed actions: `[containment]`.
    pub containment: ContainmentConfig,
    /// The plugins: `[[plugins]]`.
    pub plugins: Vec<PluginConfig>,
    /// Webhook notifications: `[notifications]` (none by default).
    pub notifications: NotificationsConfig,
}

/// `[service]`: how the long-running service works.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ServiceConfig {
    /// Seconds between two polls of the server (`poll_interval_secs`, default 30).
    pub poll_interval_secs: u64,
    /// Seconds re-read before the watermark on each poll (`overlap_window_secs`, default 300).
    pub overlap_window_secs: u64,
    /// Plugin invocations run at once (`max_concurrency`, default 16).
    pub max_concurrency: usize,
    /// Malop detail requests in flight at once while polling (`max_detail_fetches`, default
    /// 8): the details of new Malops are fetched concurrently, and each Malop is evaluated
    /// as soon as its details arrive.
    pub max_detail_fetches: usize,
    /// Bytes of each plugin instance slot's memory kept resident between invocations and
    /// reset in place (`keep_resident_bytes`, default 1 MiB, at most 64 MiB; 0 hands every
    /// page back to the kernel): see `riposte_runtime::RuntimeConfig::keep_resident_bytes`.
    pub keep_resident_bytes: usize,
    /// The state database: `[service.database]` (SQLite at `riposte.db` by default, or
    /// PostgreSQL), or the older `database = "path"` (SQLite at that path).
    pub database: DatabaseConfig,
    /// The audit trail: `[service.audit]`.
    pub audit: AuditConfig,
    /// The Cybereason server: `[service.server]`; required by `riposte run`, optional for
    /// replay and tests.
    pub server: Option<ServerConfig>,
    /// Where the Prometheus metrics endpoint listens (`metrics_listen`); none when absent.
    pub metrics_listen: Option<SocketAddr>,
    /// How remediations are followed on the server: `[service.follow]`.
    pub follow: FollowConfig,
    /// The listener for the server's syslog Malop events: `[service.syslog]` (off by
    /// default). An event only names a Malop to evaluate now; the poll loop goes on.
    pub syslog: ListenerConfig,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            poll_interval_secs: DEFAULT_POLL_INTERVAL_SECS,
            overlap_window_secs: DEFAULT_OVERLAP_WINDOW_SECS,
            max_concurrency: DEFAULT_MAX_CONCURRENCY,
            max_detail_fetches: DEFAULT_MAX_DETAIL_FETCHES,
            keep_resident_bytes: riposte_runtime::RuntimeConfig::default().keep_resident_bytes,
            database: DatabaseConfig::default(),
            audit: AuditConfig::default(),
            server: None,
            metrics_listen: None,
            follow: FollowConfig::default(),
            syslog: ListenerConfig::default(),
        }
    }
}

/// `[service.follow]`: the schedule of remediation progress polls. The pause before the
/// first poll doubles after each poll, up to the longest pause; after `max_polls` polls
/// without a final status the remediation is recorded as timed out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FollowConfig {
    /// Pause before the first poll (`first_poll_secs`, default 5).
    pub first_poll_secs: u64,
    /// The longest pause between two polls (`max_poll_interval_secs`, default 60).
    pub max_poll_interval_secs: u64,
    /// Polls before giving up (`max_polls`, default 40).
    pub max_polls: u32,
}

impl Default for FollowConfig {
    fn default() -> Self {
        Self {
            first_poll_secs: 5,
            max_poll_interval_secs: 60,
            max_polls: 40,
        }
    }
}

impl FollowConfig {
    fn check(&self) -> Findings {
        let mut findings = Findings::new();
        if self.max_polls == 0 {
            findings.at("max_polls", "must be at least 1");
        }
        if self.max_poll_interval_secs < self.first_poll_secs {
            findings.at(
                "max_poll_interval_secs",
                format!(
                    "must be at least first_poll_secs ({})",
                    self.first_poll_secs
                ),
            );
        }
        findings
    }
}

/// One `[[plugins]]` entry.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PluginConfig {
    /// Unique name (`name`): letters, digits, `-`, `_`, `.`.
    pub name: PluginName,
    /// The component file, resolved against the configuration's directory (`path`).
    pub path: PathBuf,
    /// The component's pinned sha256 (`sha256`); a mismatch refuses to load.
    pub sha256: Sha256Digest,
    /// Its policy: mode, promotions, grants, budgets, cooldown, interval, quotas.
    pub rules: PluginRules,
    /// Per-invocation limits (`[plugins.limits]`).
    pub limits: Limits,
    /// Configuration values the plugin reads through its `config` import (`[plugins.values]`).
    pub values: BTreeMap<String, String>,
    /// The publisher keys pinned for this plugin: its own `public_keys`, else `[signing]`'s.
    /// When not empty, its component must carry a valid signature by one of them.
    pub public_keys: Vec<PathBuf>,
    /// The parts of a Malop the plugin reads (`malop_parts`, default every part): a part
    /// that no plugin offered the Malop reads is not queried, and is listed unreadable.
    pub malop_parts: Vec<MalopPart>,
    /// Time limits of the plugin's executed actions, per kind (`time_limits`): each
    /// overrides `[containment]`'s limit of its kind.
    pub time_limits: TimeLimits,
}

impl OperatorConfig {
    /// Loads and checks the configuration file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, riposte_config::Error> {
        riposte_config::load(path.as_ref(), build)
    }

    /// Parses and checks configuration text as if read from `path` (used for messages and
    /// to resolve relative paths).
    pub fn parse(text: &str, path: &Path) -> Result<Self, riposte_config::Error> {
        riposte_config::parse(text, path, build)
    }

    /// The plugin called `name`.
    pub fn plugin(&self, name: &PluginName) -> Option<&PluginConfig> {
        self.plugins.iter().find(|p| &p.name == name)
    }

    /// The directory of the authenticated cache of precompiled plugins: beside a SQLite
    /// database (`riposte.artifacts` for `riposte.db`); with PostgreSQL, which has no file
    /// here, `riposte.artifacts` beside the configuration file.
    pub fn artifact_dir(&self) -> PathBuf {
        match &self.service.database.backend {
            Backend::Sqlite { path } => path.with_extension("artifacts"),
            Backend::Postgres(_) => {
                let dir = self.source.parent().unwrap_or(Path::new(""));
                dir.join("riposte.artifacts")
            }
        }
    }
}

impl PluginConfig {
    /// A plugin with no grants, shadow mode and default limits: a base for building
    /// configurations in code.
    pub fn new(
        name: impl Into<PluginName>,
        path: impl Into<PathBuf>,
        sha256: Sha256Digest,
    ) -> Self {
        Self {
            name: name.into(),
            path: path.into(),
            sha256,
            rules: PluginRules::default(),
            limits: Limits::default(),
            values: BTreeMap::new(),
            public_keys: Vec::new(),
            malop_parts: MalopPart::ALL.to_vec(),
            time_limits: TimeLimits::new(),
        }
    }

    /// What the policy gate needs of this plugin.
    pub fn policy(&self) -> PluginPolicy {
        PluginPolicy::new(self.name.clone(), self.rules.clone())
    }

    /// Checks `bytes` against the sha256 pin.
    pub fn verify_pin(&self, bytes: &[u8]) -> Result<(), PluginFileError> {
        let actual = Sha256Digest::of(bytes);
        if actual == self.sha256 {
            return Ok(());
        }
        Err(PluginFileError::PinMismatch {
            plugin: self.name.clone(),
            path: self.path.clone(),
            expected: self.sha256,
            actual,
        })
    }

    /// Checks `bytes` against the pinned publisher keys: `None` when no key is pinned,
    /// otherwise the key id of the signer, or an error when no pinned key signed these bytes.
    pub fn verify_signature(
        &self,
        bytes: &[u8],
    ) -> Result<Option<riposte_supply::KeyId>, PluginFileError> {
        if self.public_keys.is_empty() {
            return Ok(None);
        }
        let refused = |source| PluginFileError::Signature {
            plugin: self.name.clone(),
            path: self.path.clone(),
            source,
        };
        let keys = riposte_supply::signing::load_keys(&self.public_keys).map_err(refused)?;
        riposte_supply::signing::verify(bytes, &keys)
            .map(Some)
            .map_err(refused)
    }

    /// Reads the component file and checks it against the pin and the pinned publisher keys
    /// (before anything compiles it); returns the bytes.
    pub fn read_verified(&self) -> Result<Vec<u8>, PluginFileError> {
        self.read_checked().map(|(bytes, _)| bytes)
    }

    /// As [`PluginConfig::read_verified`], also returning the pinned key that signed it.
    pub(crate) fn read_checked(
        &self,
    ) -> Result<(Vec<u8>, Option<riposte_supply::KeyId>), PluginFileError> {
        let bytes = std::fs::read(&self.path).map_err(|source| PluginFileError::Read {
            plugin: self.name.clone(),
            path: self.path.clone(),
            source,
        })?;
        self.verify_pin(&bytes)?;
        let signer = self.verify_signature(&bytes)?;
        Ok((bytes, signer))
    }
}

// ---------------------------------------------------------------------------------------
// The file shapes, read by the loader and handed to their owners.

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawService {
    poll_interval_secs: u64,
    overlap_window_secs: u64,
    max_concurrency: usize,
    max_detail_fetches: usize,
    keep_resident_bytes: usize,
    database: RawDatabase,
    audit: AuditConfig,
    server: Option<RawServerConfig>,
    metrics_listen: Option<String>,
    follow: FollowConfig,
    syslog: ListenerConfig,
}

impl Default for RawService {
    fn default() -> Self {
        let d = ServiceConfig::default();
        Self {
            poll_interval_secs: d.poll_interval_secs,
            overlap_window_secs: d.overlap_window_secs,
            max_concurrency: d.max_concurrency,
            max_detail_fetches: d.max_detail_fetches,
            keep_resident_bytes: d.keep_resident_bytes,
            database: RawDatabase::default(),
            audit: d.audit,
            server: None,
            metrics_listen: None,
            follow: d.follow,
            syslog: d.syslog,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlugin {
    name: String,
    path: PathBuf,
    sha256: String,
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    promote: Vec<String>,
    #[serde(default)]
    grants: RawGrants,
    #[serde(default)]
    limits: Limits,
    #[serde(default)]
    budgets: Vec<RawBudget>,
    #[serde(default)]
    cooldown_secs: u64,
    #[serde(default)]
    min_interval_secs: Option<u64>,
    #[serde(default)]
    quotas: Quotas,
    #[serde(default)]
    values: BTreeMap<String, String>,
    #[serde(default)]
    public_keys: Option<Vec<PathBuf>>,
    #[serde(default)]
    malop_parts: Option<Vec<String>>,
    #[serde(default)]
    time_limits: BTreeMap<String, u64>,
}

fn build(doc: &mut Document<'_>) -> OperatorConfig {
    doc.only_sections(&SECTIONS);
    let base = doc.base().to_path_buf();
    let service = doc
        .section::<RawService>("service")
        .map(|raw| service_section(doc, raw, &base))
        .unwrap_or_default();
    let policy = policy_sections(doc);
    let mut signing = doc.section::<Signing>("signing").unwrap_or_default();
    let findings = signing.resolve(&base);
    doc.report_findings("signing", findings);
    let containment = doc
        .section::<RawContainment>("containment")
        .map(|raw| {
            let (containment, findings) = ContainmentConfig::from_section(raw);
            doc.report_findings("containment", findings);
            containment
        })
        .unwrap_or_default();
    let plugins = plugin_sections(doc, &base, &signing);
    let notifications = doc
        .section::<RawNotifications>("notifications")
        .map(|raw| {
            let (notifications, findings) = NotificationsConfig::from_section(raw, &base);
            doc.report_findings("notifications", findings);
            notifications
        })
        .unwrap_or_default();
    OperatorConfig {
        source: doc.file().to_path_buf(),
        service,
        policy,
        signing,
        containment,
        plugins,
        notifications,
    }
}

fn service_section(doc: &mut Document<'_>, raw: RawService, base: &Path) -> ServiceConfig {
    let mut findings = Findings::new();
    for (key, value) in [
        ("poll_interval_secs", raw.poll_interval_secs),
        ("max_concurrency", raw.max_concurrency as u64),
        ("max_detail_fetches", raw.max_detail_fetches as u64),
    ] {
        if value == 0 {
            let unit = if key.ends_with("_secs") {
                " second"
            } else {
                ""
            };
            findings.at(key, format!("must be at least 1{unit}"));
        }
    }
    for (key, value) in [
        ("max_concurrency", raw.max_concurrency),
        ("max_detail_fetches", raw.max_detail_fetches),
    ] {
        if value > MAX_IN_FLIGHT {
            findings.at(key, format!("must be at most {MAX_IN_FLIGHT}, not {value}"));
        }
    }
    if raw.keep_resident_bytes > MAX_KEEP_RESIDENT {
        findings.at(
            "keep_resident_bytes",
            format!(
                "must be at most {MAX_KEEP_RESIDENT} (64 MiB), not {}: every instance slot of the pool may hold this much",
                raw.keep_resident_bytes
            ),
        );
    }
    let (database, inner) = DatabaseConfig::from_section(raw.database, base);
    findings.nest("database", inner);
    let mut audit = raw.audit;
    findings.nest("audit", audit.resolve(base));
    let metrics_listen = raw.metrics_listen.as_deref().and_then(|addr| {
        let parsed = addr.parse::<SocketAddr>().ok();
        if parsed.is_none() {
            findings.at(
                "metrics_listen",
                format!("`{addr}` is not a socket address; expected e.g. \"127.0.0.1:9464\""),
            );
        }
        parsed
    });
    let server = raw.server.map(|raw| {
        let (server, inner) = ServerConfig::from_section(raw, base);
        findings.nest("server", inner);
        server
    });
    findings.nest("follow", raw.follow.check());
    let mut syslog = raw.syslog;
    findings.nest("syslog", syslog_findings(&mut syslog, base));
    doc.report_findings("service", findings);
    ServiceConfig {
        poll_interval_secs: raw.poll_interval_secs,
        overlap_window_secs: raw.overlap_window_secs,
        max_concurrency: raw.max_concurrency,
        max_detail_fetches: raw.max_detail_fetches,
        keep_resident_bytes: raw.keep_resident_bytes,
        database,
        audit,
        server,
        metrics_listen,
        follow: raw.follow,
        syslog,
    }
}

/// The syslog crate's problems with `[service.syslog]`, keyed relative to that section; its
/// TLS paths resolved against `base`.
fn syslog_findings(syslog: &mut ListenerConfig, base: &Path) -> Findings {
    let mut findings = Findings::new();
    if let Err(problems) = syslog.validate() {
        for problem in problems {
            findings.at(problem.key, problem.message);
        }
    }
    syslog.resolve_paths(base);
    findings
}

fn policy_sections(doc: &mut Document<'_>) -> PolicyConfig {
    let protected = doc
        .section::<ProtectedAssets>("protected")
        .unwrap_or_default();
    doc.report_findings("protected", protected.check());
    let mut findings = Findings::new();
    let raw_budgets = doc
        .items::<RawBudget>("global_budgets")
        .into_iter()
        .map(|(_, raw)| raw)
        .collect();
    let global_budgets = Budget::from_sections(raw_budgets, &mut findings);
    doc.report_findings("global_budgets", findings);
    let approvals = doc
        .section::<RawApprovals>("approvals")
        .map(|raw| {
            let (approvals, findings) = Approvals::from_section(raw);
            doc.report_findings("approvals", findings);
            approvals
        })
        .unwrap_or_default();
    PolicyConfig {
        protected,
        global_budgets,
        approvals,
    }
}

fn plugin_sections(doc: &mut Document<'_>, base: &Path, signing: &Signing) -> Vec<PluginConfig> {
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    let mut plugins = Vec::new();
    for (key, raw) in doc.items::<RawPlugin>("plugins") {
        if let Some(first) = seen.get(&raw.name) {
            let message = format!("duplicate plugin name `{}` (also {first})", raw.name);
            doc.report(&format!("{key}.name"), message);
        } else {
            seen.insert(raw.name.clone(), key.clone());
        }
        let (plugin, findings) = plugin_section(raw, base, signing);
        doc.report_findings(&key, findings);
        plugins.extend(plugin);
    }
    plugins
}

fn plugin_section(
    raw: RawPlugin,
    base: &Path,
    signing: &Signing,
) -> (Option<PluginConfig>, Findings) {
    let mut findings = Findings::new();
    let name_ok = !raw.name.is_empty()
        && raw
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !name_ok {
        findings.at(
            "name",
            format!(
                "`{}` is not a plugin name; use letters, digits, `-`, `_` and `.`",
                raw.name
            ),
        );
    }
    if raw.path.as_os_str().is_empty() {
        findings.at("path", "must not be empty");
    }
    let sha256 = Sha256Digest::from_hex(raw.sha256.trim());
    if sha256.is_none() {
        findings.at("sha256", pin_problem(&raw.sha256));
    }
    let (rules, inner) = PluginRules::from_section(RawPluginRules {
        mode: raw.mode,
        promote: raw.promote,
        grants: raw.grants,
        budgets: raw.budgets,
        cooldown_secs: raw.cooldown_secs,
        min_interval_secs: raw.min_interval_secs,
        quotas: raw.quotas,
    });
    findings.nest("", inner);
    for problem in raw.limits.validate() {
        findings.at(format!("limits.{}", problem.key), problem.to_string());
    }
    let public_keys = match raw.public_keys {
        Some(paths) => {
            let mut own = Signing { public_keys: paths };
            findings.nest("", own.resolve(base));
            own.public_keys
        }
        None => signing.public_keys.clone(),
    };
    let malop_parts = match raw.malop_parts {
        None => MalopPart::ALL.to_vec(),
        Some(names) => malop_parts(&names, &mut findings),
    };
    let time_limits = containment::time_limits(&mut findings, "time_limits", raw.time_limits);
    if !findings.is_empty() {
        return (None, findings);
    }
    let plugin = sha256.zip(rules).map(|(sha256, rules)| PluginConfig {
        name: PluginName::new(raw.name),
        path: resolve_path(base, raw.path),
        sha256,
        rules,
        limits: raw.limits,
        values: raw.values,
        public_keys,
        malop_parts,
        time_limits,
    });
    (plugin, findings)
}

/// `malop_parts` as written: each a part's name, sorted, without duplicates.
fn malop_parts(names: &[String], findings: &mut Findings) -> Vec<MalopPart> {
    let mut parts = Vec::new();
    for (i, name) in names.iter().enumerate() {
        match MalopPart::from_name(name) {
            Some(part) => parts.push(part),
            None => findings.at(
                format!("malop_parts[{i}]"),
                format!(
                    "`{name}` is not a part of a Malop; use {}",
                    MalopPart::ALL.map(|p| format!("`{p}`")).join(", ")
                ),
            ),
        }
    }
    parts.sort();
    parts.dedup();
    parts
}

fn pin_problem(pin: &str) -> String {
    format!(
        "`{pin}` is not a sha256 pin: expected 64 hex digits, found {} characters{}",
        pin.chars().count(),
        if pin.chars().all(|c| c.is_ascii_hexdigit()) {
            ""
        } else {
            " (not all hex)"
        }
    )
}
