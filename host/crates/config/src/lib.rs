//! The operator's configuration: one TOML file (see `host/examples/riposte.toml`, which
//! documents every key).
//!
//! Loading is strict: unknown keys are errors, every value is checked, and every mistake is
//! reported with the file, line and dotted key it concerns, all of them at once where the
//! file still parses:
//!
//! ```text
//! riposte.toml:14: plugins[1].grants.operations[0]: unknown operation `isolat`; did you mean `isolate`? expected one of list-malops, get-malop, ...
//! ```
//!
//! Relative paths (plugin components, the database, the audit log, the credentials file)
//! resolve against the directory of the configuration file. Secrets never live in this file:
//! the server's password sits in a separate credentials file named by
//! `service.server.credentials_file`.
//!
//! Each section's owner keeps its type, defaults and checks: `[plugins.limits]` is
//! [`riposte_runtime::Limits`], read and checked here so its problems carry file and line.

mod spans;

use riposte_audit::FsyncPolicy;
use riposte_domain::{
    ActionKind, MachineGuid, Operation, PluginName, RemediationKind, Sha256Digest,
};
use riposte_runtime::Limits;
use serde::{Deserialize, Serialize};
use spans::SpanIndex;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use toml::de::{DeTable, DeValue, ValueDeserializer};

/// Default seconds between two polls of the server.
pub const DEFAULT_POLL_INTERVAL_SECS: u64 = 30;
/// Default overlap window: each poll re-reads this many seconds before the watermark.
pub const DEFAULT_OVERLAP_WINDOW_SECS: u64 = 300;
/// Default number of plugin invocations run at once.
pub const DEFAULT_MAX_CONCURRENCY: usize = 4;
/// Default Malop detail requests in flight at once during a poll.
pub const DEFAULT_MAX_DETAIL_FETCHES: usize = 8;
/// Default state database path (relative to the configuration file).
pub const DEFAULT_DATABASE: &str = "riposte.db";
/// Default audit log path (relative to the configuration file).
pub const DEFAULT_AUDIT_PATH: &str = "riposte-audit.jsonl";
/// Default timeout of one request to the server.
pub const DEFAULT_REQUEST_TIMEOUT_SECS: u64 = 60;
/// Default lifetime of a pending approval: one day.
pub const DEFAULT_APPROVAL_EXPIRY_SECS: u64 = 86_400;
/// Default pause before the first remediation progress poll, in seconds.
pub const DEFAULT_FIRST_POLL_SECS: u64 = 5;
/// Default longest pause between two remediation progress polls, in seconds.
pub const DEFAULT_MAX_POLL_INTERVAL_SECS: u64 = 60;
/// Default remediation progress polls before a remediation is recorded as timed out.
pub const DEFAULT_MAX_POLLS: u32 = 40;
/// Default shortest time between two `on-interval` calls of a plugin: whatever interval the
/// plugin asks for, it is not called more often.
pub const DEFAULT_MIN_INTERVAL_SECS: u64 = 60;

/// Everything wrong with a configuration, or a plugin whose bytes do not match its pin.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("cannot read configuration {}: {source}", path.display())]
    Read {
        /// The configuration file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file has mistakes; each names its line and key.
    #[error("{}", render_problems(path, problems))]
    Invalid {
        /// The configuration file.
        path: PathBuf,
        /// Every mistake found, in file order.
        problems: Vec<Problem>,
    },
    /// A plugin component could not be read.
    #[error("plugin `{plugin}`: cannot read component {}: {source}", path.display())]
    ReadPlugin {
        /// The plugin.
        plugin: PluginName,
        /// Its component.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A plugin component's sha256 differs from its pin: it must not be loaded.
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

fn render_problems(path: &Path, problems: &[Problem]) -> String {
    let mut out = format!(
        "{} mistake{} in {}:",
        problems.len(),
        if problems.len() == 1 { "" } else { "s" },
        path.display()
    );
    for problem in problems {
        out.push_str("\n  ");
        out.push_str(&problem.to_string());
    }
    out
}

/// One mistake in the configuration file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The configuration file.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// The dotted key, e.g. `plugins[1].grants.operations[0]`; empty for syntax errors.
    pub key: String,
    /// What is wrong, and what would be right.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: ", self.file.display(), self.line)?;
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

/// The whole operator configuration.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OperatorConfig {
    /// The file it was loaded from (empty when built in code).
    pub source: PathBuf,
    /// How the service runs: `[service]`.
    pub service: ServiceConfig,
    /// Assets no destructive action may touch: `[protected]`.
    pub protected: ProtectedAssets,
    /// Budgets shared by all plugins: `[[global_budgets]]`.
    pub global_budgets: Vec<Budget>,
    /// Action kinds that wait for an operator: `[approvals]`.
    pub approvals: Approvals,
    /// Publisher keys pinned for every plugin: `[signing]`.
    pub signing: Signing,
    /// The plugins: `[[plugins]]`.
    pub plugins: Vec<PluginConfig>,
}

/// `[signing]`: the publishers' public keys pinned for every plugin.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Signing {
    /// Public key files (`public_keys`, PEM, resolved against the configuration's directory).
    /// When any is set, every plugin without its own `public_keys` must carry a valid
    /// wasmsign2 signature by one of them.
    pub public_keys: Vec<PathBuf>,
}

/// `[service]`: how the long-running service works.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ServiceConfig {
    /// Seconds between two polls of the server (`poll_interval_secs`, default 30).
    pub poll_interval_secs: u64,
    /// Seconds re-read before the watermark on each poll (`overlap_window_secs`, default 300).
    pub overlap_window_secs: u64,
    /// Plugin invocations run at once (`max_concurrency`, default 4).
    pub max_concurrency: usize,
    /// Malop detail requests in flight at once while polling (`max_detail_fetches`, default
    /// 8): the details of new Malops are fetched concurrently, and each Malop is evaluated
    /// as soon as its details arrive.
    pub max_detail_fetches: usize,
    /// The SQLite state database (`database`, default `riposte.db`).
    pub database: PathBuf,
    /// The audit trail: `[service.audit]`.
    pub audit: AuditConfig,
    /// The Cybereason server: `[service.server]`; required by `riposte run`, optional for
    /// replay and tests.
    pub server: Option<ServerConfig>,
    /// Where the Prometheus metrics endpoint listens (`metrics_listen`); none when absent.
    pub metrics_listen: Option<SocketAddr>,
    /// How remediations are followed on the server: `[service.follow]`.
    pub follow: FollowConfig,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            poll_interval_secs: DEFAULT_POLL_INTERVAL_SECS,
            overlap_window_secs: DEFAULT_OVERLAP_WINDOW_SECS,
            max_concurrency: DEFAULT_MAX_CONCURRENCY,
            max_detail_fetches: DEFAULT_MAX_DETAIL_FETCHES,
            database: PathBuf::from(DEFAULT_DATABASE),
            audit: AuditConfig::default(),
            server: None,
            metrics_listen: None,
            follow: FollowConfig::default(),
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
            first_poll_secs: DEFAULT_FIRST_POLL_SECS,
            max_poll_interval_secs: DEFAULT_MAX_POLL_INTERVAL_SECS,
            max_polls: DEFAULT_MAX_POLLS,
        }
    }
}

/// `[service.audit]`: the audit trail file.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AuditConfig {
    /// The JSON-lines file (`path`, default `riposte-audit.jsonl`).
    pub path: PathBuf,
    /// When to fsync (`fsync`: `"every-record"` (default), `"batch"` (at durability barriers),
    /// `"never"`, or a number N: every N records); see [`FsyncPolicy`].
    pub fsync: FsyncPolicy,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from(DEFAULT_AUDIT_PATH),
            fsync: FsyncPolicy::EveryRecord,
        }
    }
}

/// `[service.server]`: where the Cybereason server is, how its TLS certificate is checked,
/// and where its credentials are.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ServerConfig {
    /// `https://host[:port]`, no path (`base_url`).
    pub base_url: String,
    /// A file holding the username and password (`credentials_file`, mode 0600); the password
    /// never appears in this configuration. Without it, `RIPOSTE_USERNAME` and
    /// `RIPOSTE_PASSWORD` are used.
    pub credentials_file: Option<PathBuf>,
    /// Timeout of one request (`request_timeout_secs`, default 60).
    pub request_timeout_secs: u64,
    /// A PEM file of CA certificates to trust besides the built-in roots (`ca_file`), for an
    /// on-premises server with a private CA.
    pub ca_file: Option<PathBuf>,
    /// The sha256 fingerprint of the one certificate the server may present
    /// (`pinned_certificate_sha256`), for a server whose certificate no CA vouches for.
    pub pinned_certificate: Option<Sha256Digest>,
}

/// `[protected]`: assets no destructive action may touch, whatever a plugin is granted.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ProtectedAssets {
    /// Glob patterns on machine names, matched case-insensitively (`machine_name_globs`).
    pub machine_name_globs: Vec<String>,
    /// Machine element guids (`machine_guids`).
    pub machine_guids: Vec<MachineGuid>,
    /// Sensor groups, matched case-insensitively (`groups`).
    pub groups: Vec<String>,
    /// Glob patterns on reputation key values (hashes, IPs, domains) that may not be
    /// blacklisted, matched case-insensitively (`reputation_globs`).
    pub reputation_globs: Vec<String>,
}

/// `[approvals]`: action kinds that wait for an operator's approve/deny.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Approvals {
    /// The action kinds (`required`, default none).
    pub required: BTreeSet<ActionKind>,
    /// Seconds after which a pending approval expires as denied (`expiry_secs`, default 86400).
    pub expiry_secs: u64,
}

impl Default for Approvals {
    fn default() -> Self {
        Self {
            required: BTreeSet::new(),
            expiry_secs: DEFAULT_APPROVAL_EXPIRY_SECS,
        }
    }
}

/// Which actions a budget counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ActionSelector {
    /// Every action kind (`"any"`).
    Any,
    /// Every remediation kind (`"remediate"`).
    Remediate,
    /// One action kind (`"isolate"`, `"kill-process"`, ...).
    Kind(ActionKind),
}

impl ActionSelector {
    /// Whether this selector counts `kind`.
    pub fn matches(self, kind: ActionKind) -> bool {
        match self {
            Self::Any => true,
            Self::Remediate => kind.remediation().is_some(),
            Self::Kind(k) => k == kind,
        }
    }

    /// The action kinds this selector counts (for `kind IN (...)` queries).
    pub fn kinds(self) -> Vec<ActionKind> {
        ActionKind::ALL
            .into_iter()
            .filter(|k| self.matches(*k))
            .collect()
    }

    /// Parses `any`, `remediate` or an action kind name.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "any" => Some(Self::Any),
            "remediate" => Some(Self::Remediate),
            _ => ActionKind::from_name(name).map(Self::Kind),
        }
    }
}

impl fmt::Display for ActionSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("any"),
            Self::Remediate => f.write_str("remediate"),
            Self::Kind(kind) => f.write_str(kind.name()),
        }
    }
}

impl Serialize for ActionSelector {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// An action budget: at most `max` units of `action` per sliding window of `window_secs`.
/// A unit is one target: a machine (a call touching 40 machines spends 40), a reputation key,
/// or a Malop for status and comments.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Budget {
    /// What the budget counts (`action`).
    pub action: ActionSelector,
    /// Units allowed per window (`max`; 0 forbids the action outright).
    pub max: u64,
    /// The sliding window (`window_secs`).
    pub window_secs: u64,
}

impl fmt::Display for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "at most {} {} per {}",
            self.max,
            match self.action {
                ActionSelector::Any => "actions (any kind)".to_string(),
                ActionSelector::Remediate => "remediations".to_string(),
                ActionSelector::Kind(kind) => format!("`{kind}`"),
            },
            render_secs(self.window_secs)
        )
    }
}

/// `3600` -> `1 h`, `90` -> `90 s`.
pub(crate) fn render_secs(secs: u64) -> String {
    if secs >= 86_400 && secs.is_multiple_of(86_400) {
        format!("{} d", secs / 86_400)
    } else if secs >= 3600 && secs.is_multiple_of(3600) {
        format!("{} h", secs / 3600)
    } else if secs >= 60 && secs.is_multiple_of(60) {
        format!("{} min", secs / 60)
    } else {
        format!("{secs} s")
    }
}

/// Whether a plugin's actions are carried out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Actions are carried out (after the gate).
    Enforce,
    /// Actions are recorded as a would-be plan, never executed (the default).
    Shadow,
}

/// What a plugin may ask for. Everything else is denied.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Grants {
    /// Operations the plugin may call (`operations`). `set-reputation` grants blacklisting.
    pub operations: BTreeSet<Operation>,
    /// Remediation action kinds it may use through `remediate` (`remediation`).
    pub remediation: BTreeSet<RemediationKind>,
    /// Whether it may whitelist through `set-reputation` (`whitelist`, default false):
    /// whitelisting blinds the EDR to its keys, so it is granted on its own.
    pub whitelist: bool,
    /// Action kinds it may use beyond the Malop it handles, and from `on-interval`
    /// (`wider_scope`, default none; see G11). Protection, budgets and approvals still apply.
    pub wider_scope: BTreeSet<ActionKind>,
}

impl Grants {
    /// Grants from operation and remediation kind names as the configuration spells them;
    /// the error names the first unknown one.
    pub fn from_names(operations: &[String], remediation: &[String]) -> Result<Self, String> {
        let mut grants = Grants::default();
        for name in operations {
            let op = Operation::ALL
                .into_iter()
                .find(|op| op.name() == name)
                .ok_or_else(|| {
                    let expected: Vec<&str> = Operation::ALL.iter().map(|o| o.name()).collect();
                    unknown_message("operation", name, &expected)
                })?;
            grants.operations.insert(op);
        }
        for name in remediation {
            let kind = ActionKind::from_name(name)
                .and_then(ActionKind::remediation)
                .ok_or_else(|| {
                    unknown_message("remediation action kind", name, &remediation_names())
                })?;
            grants.remediation.insert(kind);
        }
        Ok(grants)
    }

    /// Whether every grant of `self` is also in `other`.
    pub fn is_within(&self, other: &Grants) -> bool {
        self.operations.is_subset(&other.operations)
            && self.remediation.is_subset(&other.remediation)
    }

    /// Whether `operation` is granted.
    pub fn allows_operation(&self, operation: Operation) -> bool {
        self.operations.contains(&operation)
    }

    /// Whether `kind` is granted: its operation, for remediation kinds the kind itself, and
    /// for whitelisting its own grant.
    pub fn allows_kind(&self, kind: ActionKind) -> bool {
        self.allows_operation(kind.operation())
            && kind
                .remediation()
                .is_none_or(|r| self.remediation.contains(&r))
            && (kind != ActionKind::Whitelist || self.whitelist)
    }
}

/// Quotas that protect the EDR server and the host from a plugin (`[plugins.quotas]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Quotas {
    /// `get-malop`/`list-malops` calls that reach the server, per invocation
    /// (`queries_per_invocation`, default 20).
    pub queries_per_invocation: u32,
    /// The same, per minute across the plugin's invocations (`queries_per_minute`, default 120).
    pub queries_per_minute: u32,
    /// kv writes (`set`, `delete`) per invocation (`kv_writes_per_invocation`, default 64).
    pub kv_writes_per_invocation: u32,
    /// kv writes per minute across invocations (`kv_writes_per_minute`, default 600).
    pub kv_writes_per_minute: u32,
    /// Audited calls (queries, actions, `remediation-status`) per invocation
    /// (`calls_per_invocation`, default 256): past it a call is refused, and only counted in
    /// the invocation's audit record, so a flood cannot bloat the audit trail.
    pub calls_per_invocation: u32,
}

impl Default for Quotas {
    fn default() -> Self {
        Self {
            queries_per_invocation: 20,
            queries_per_minute: 120,
            kv_writes_per_invocation: 64,
            kv_writes_per_minute: 600,
            calls_per_invocation: 256,
        }
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
    /// `enforce` or `shadow` (`mode`, default `shadow`).
    pub mode: Mode,
    /// In shadow mode, the action kinds promoted to enforcement (`promote`).
    pub promote: BTreeSet<ActionKind>,
    /// What the plugin may call (`[plugins.grants]`).
    pub grants: Grants,
    /// Per-invocation limits (`[plugins.limits]`).
    pub limits: Limits,
    /// The plugin's own budgets (`[[plugins.budgets]]`).
    pub budgets: Vec<Budget>,
    /// After an action on a target, the same kind of action on the same target by this plugin
    /// waits this long (`cooldown_secs`, default 0: none).
    pub cooldown_secs: u64,
    /// The shortest time between two `on-interval` calls (`min_interval_secs`, default 60):
    /// the plugin's `interval-seconds` is a request, never honoured more often than this.
    pub min_interval_secs: u64,
    /// Query and kv write quotas (`[plugins.quotas]`).
    pub quotas: Quotas,
    /// Configuration values the plugin reads through its `config` import (`[plugins.values]`).
    pub values: BTreeMap<String, String>,
    /// The publisher keys pinned for this plugin: its own `public_keys`, else `[signing]`'s.
    /// When not empty, its component must carry a valid signature by one of them.
    pub public_keys: Vec<PathBuf>,
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
            mode: Mode::Shadow,
            promote: BTreeSet::new(),
            grants: Grants::default(),
            limits: Limits::default(),
            budgets: Vec::new(),
            cooldown_secs: 0,
            min_interval_secs: DEFAULT_MIN_INTERVAL_SECS,
            quotas: Quotas::default(),
            values: BTreeMap::new(),
            public_keys: Vec::new(),
        }
    }

    /// How often `on-interval` runs for a plugin that asks for every `requested` seconds:
    /// never more often than the operator's `min_interval_secs`. `None` (no interval hook)
    /// when it asks for none, or for 0.
    pub fn interval_secs(&self, requested: Option<u32>) -> Option<u64> {
        requested
            .filter(|r| *r > 0)
            .map(|r| u64::from(r).max(self.min_interval_secs).max(1))
    }

    /// Whether actions of `kind` are carried out (enforce mode, or promoted in shadow mode).
    pub fn enforces(&self, kind: ActionKind) -> bool {
        match self.mode {
            Mode::Enforce => true,
            Mode::Shadow => self.promote.contains(&kind),
        }
    }

    /// Checks `bytes` against the sha256 pin.
    pub fn verify_pin(&self, bytes: &[u8]) -> Result<(), Error> {
        let actual = Sha256Digest::of(bytes);
        if actual == self.sha256 {
            Ok(())
        } else {
            Err(Error::PinMismatch {
                plugin: self.name.clone(),
                path: self.path.clone(),
                expected: self.sha256,
                actual,
            })
        }
    }

    /// Checks `bytes` against the pinned publisher keys: `None` when no key is pinned,
    /// otherwise the key id of the signer, or an error when no pinned key signed these bytes.
    pub fn verify_signature(&self, bytes: &[u8]) -> Result<Option<riposte_supply::KeyId>, Error> {
        if self.public_keys.is_empty() {
            return Ok(None);
        }
        let refused = |source| Error::Signature {
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
    pub fn read_verified(&self) -> Result<Vec<u8>, Error> {
        self.read_checked().map(|(bytes, _)| bytes)
    }

    /// As [`PluginConfig::read_verified`], also returning the pinned key that signed it.
    pub fn read_checked(&self) -> Result<(Vec<u8>, Option<riposte_supply::KeyId>), Error> {
        let bytes = std::fs::read(&self.path).map_err(|source| Error::ReadPlugin {
            plugin: self.name.clone(),
            path: self.path.clone(),
            source,
        })?;
        self.verify_pin(&bytes)?;
        let signer = self.verify_signature(&bytes)?;
        Ok((bytes, signer))
    }
}

impl OperatorConfig {
    /// Loads and validates the configuration file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses and validates configuration text as if read from `path` (used for messages
    /// and to resolve relative paths).
    pub fn parse(text: &str, path: &Path) -> Result<Self, Error> {
        let base = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let doc = match DeTable::parse(text) {
            Ok(doc) => doc,
            Err(err) => {
                let index = SpanIndex::new(text, &DeTable::new());
                let (line, column) = err.span().map_or((1, 1), |s| index.line_col(s.start));
                return Err(Error::Invalid {
                    path: path.to_path_buf(),
                    problems: vec![Problem {
                        file: path.to_path_buf(),
                        line,
                        column,
                        key: String::new(),
                        message: format!("TOML syntax: {}", err.message()),
                    }],
                });
            }
        };
        let mut ctx = Ctx {
            file: path.to_path_buf(),
            index: SpanIndex::new(text, doc.get_ref()),
            problems: Vec::new(),
        };
        let config = build(&mut ctx, doc.get_ref(), &base);
        if ctx.problems.is_empty() {
            Ok(config)
        } else {
            ctx.problems.sort_by_key(|p| (p.line, p.column));
            Err(Error::Invalid {
                path: path.to_path_buf(),
                problems: ctx.problems,
            })
        }
    }

    /// The plugin called `name`.
    pub fn plugin(&self, name: &PluginName) -> Option<&PluginConfig> {
        self.plugins.iter().find(|p| &p.name == name)
    }
}

// ---------------------------------------------------------------------------------------
// Parsing: each section is deserialized on its own (so one mistake does not hide the others),
// then checked, with every problem tied to its key path.

struct Ctx<'t> {
    file: PathBuf,
    index: SpanIndex<'t>,
    problems: Vec<Problem>,
}

impl Ctx<'_> {
    fn at(&mut self, key: impl Into<String>, message: impl Into<String>) {
        let key = key.into();
        let (line, column) = self.index.position_of(&key);
        self.problems.push(Problem {
            file: self.file.clone(),
            line,
            column,
            key,
            message: message.into(),
        });
    }

    fn toml_error(&mut self, fallback_key: &str, err: toml::de::Error) {
        let (key, (line, column)) = match err.span() {
            Some(span) => {
                let key = self
                    .index
                    .path_at(&span)
                    .unwrap_or_else(|| fallback_key.to_string());
                (key, self.index.line_col(span.start))
            }
            None => (
                fallback_key.to_string(),
                self.index.position_of(fallback_key),
            ),
        };
        let mut message = err.message().trim().to_string();
        if let Some(rest) = message.strip_prefix("unknown field `") {
            let field = rest
                .split('`')
                .next()
                .unwrap_or_default()
                .to_ascii_lowercase();
            if [
                "password", "passwd", "secret", "token", "cookie", "username", "user",
            ]
            .iter()
            .any(|s| field.contains(s))
            {
                message.push_str(
                    "; secrets never go in this file: put them in the file named by service.server.credentials_file",
                );
            }
        }
        self.problems.push(Problem {
            file: self.file.clone(),
            line,
            column,
            key,
            message,
        });
    }

    fn section<T: for<'de> Deserialize<'de>>(
        &mut self,
        key: &str,
        value: &toml::Spanned<DeValue<'_>>,
    ) -> Option<T> {
        match T::deserialize(ValueDeserializer::from(value.clone())) {
            Ok(v) => Some(v),
            Err(err) => {
                self.toml_error(key, err);
                None
            }
        }
    }
}

mod raw {
    use super::*;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, default)]
    pub(super) struct Service {
        pub poll_interval_secs: u64,
        pub overlap_window_secs: u64,
        pub max_concurrency: usize,
        pub max_detail_fetches: usize,
        pub database: PathBuf,
        pub audit: Audit,
        pub server: Option<Server>,
        pub metrics_listen: Option<String>,
        pub follow: FollowConfig,
    }

    impl Default for Service {
        fn default() -> Self {
            let d = ServiceConfig::default();
            Self {
                poll_interval_secs: d.poll_interval_secs,
                overlap_window_secs: d.overlap_window_secs,
                max_concurrency: d.max_concurrency,
                max_detail_fetches: d.max_detail_fetches,
                database: d.database,
                audit: Audit::default(),
                server: None,
                metrics_listen: None,
                follow: d.follow,
            }
        }
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, default)]
    pub(super) struct Audit {
        pub path: PathBuf,
        pub fsync: FsyncPolicy,
    }

    impl Default for Audit {
        fn default() -> Self {
            let d = AuditConfig::default();
            Self {
                path: d.path,
                fsync: d.fsync,
            }
        }
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct Server {
        pub base_url: String,
        #[serde(default)]
        pub credentials_file: Option<PathBuf>,
        #[serde(default = "default_timeout")]
        pub request_timeout_secs: u64,
        #[serde(default)]
        pub ca_file: Option<PathBuf>,
        #[serde(default)]
        pub pinned_certificate_sha256: Option<String>,
    }

    fn default_timeout() -> u64 {
        DEFAULT_REQUEST_TIMEOUT_SECS
    }

    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields, default)]
    pub(super) struct Protected {
        pub machine_name_globs: Vec<String>,
        pub machine_guids: Vec<String>,
        pub groups: Vec<String>,
        pub reputation_globs: Vec<String>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct Budget {
        pub action: String,
        pub max: u64,
        pub window_secs: u64,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, default)]
    pub(super) struct Approvals {
        pub required: Vec<String>,
        pub expiry_secs: u64,
    }

    impl Default for Approvals {
        fn default() -> Self {
            Self {
                required: Vec::new(),
                expiry_secs: DEFAULT_APPROVAL_EXPIRY_SECS,
            }
        }
    }

    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields, default)]
    pub(super) struct Grants {
        pub operations: Vec<String>,
        pub remediation: Vec<String>,
        pub whitelist: bool,
        pub wider_scope: Vec<String>,
    }

    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields, default)]
    pub(super) struct Signing {
        pub public_keys: Vec<PathBuf>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct Plugin {
        pub name: String,
        pub path: PathBuf,
        pub sha256: String,
        #[serde(default)]
        pub mode: Option<String>,
        #[serde(default)]
        pub promote: Vec<String>,
        #[serde(default)]
        pub grants: Grants,
        #[serde(default)]
        pub limits: Limits,
        #[serde(default)]
        pub budgets: Vec<Budget>,
        #[serde(default)]
        pub cooldown_secs: u64,
        #[serde(default = "default_min_interval")]
        pub min_interval_secs: u64,
        #[serde(default)]
        pub quotas: Quotas,
        #[serde(default)]
        pub values: BTreeMap<String, String>,
        #[serde(default)]
        pub public_keys: Option<Vec<PathBuf>>,
    }

    fn default_min_interval() -> u64 {
        DEFAULT_MIN_INTERVAL_SECS
    }
}

const SECTIONS: [&str; 6] = [
    "service",
    "protected",
    "global_budgets",
    "approvals",
    "signing",
    "plugins",
];

fn build(ctx: &mut Ctx<'_>, doc: &DeTable<'_>, base: &Path) -> OperatorConfig {
    for (key, _) in doc.iter() {
        if !SECTIONS.contains(&key.get_ref().as_ref()) {
            ctx.at(
                key.get_ref().to_string(),
                format!(
                    "unknown section `{}`; expected one of {}",
                    key.get_ref(),
                    SECTIONS.join(", ")
                ),
            );
        }
    }

    let service = doc
        .get("service")
        .map(|v| ctx.section::<raw::Service>("service", v))
        .unwrap_or_else(|| Some(raw::Service::default()))
        .map(|raw| check_service(ctx, raw, base))
        .unwrap_or_default();

    let protected = doc
        .get("protected")
        .map(|v| ctx.section::<raw::Protected>("protected", v))
        .unwrap_or_else(|| Some(raw::Protected::default()))
        .map(|raw| check_protected(ctx, raw))
        .unwrap_or_default();

    let global_budgets = match doc.get("global_budgets") {
        None => Vec::new(),
        Some(value) => each_item(ctx, "global_budgets", value)
            .into_iter()
            .filter_map(|(key, item)| {
                ctx.section::<raw::Budget>(&key, &item)
                    .and_then(|raw| check_budget(ctx, &key, raw))
            })
            .collect(),
    };

    let approvals = doc
        .get("approvals")
        .map(|v| ctx.section::<raw::Approvals>("approvals", v))
        .unwrap_or_else(|| Some(raw::Approvals::default()))
        .map(|raw| {
            let required = raw
                .required
                .iter()
                .enumerate()
                .filter_map(|(i, name)| parse_kind(ctx, &format!("approvals.required[{i}]"), name))
                .collect();
            if raw.expiry_secs == 0 {
                ctx.at("approvals.expiry_secs", "must be at least 1 second");
            }
            Approvals {
                required,
                expiry_secs: raw.expiry_secs,
            }
        })
        .unwrap_or_default();

    let signing = doc
        .get("signing")
        .and_then(|v| ctx.section::<raw::Signing>("signing", v))
        .map(|raw| Signing {
            public_keys: check_keys(ctx, "signing.public_keys", raw.public_keys, base),
        })
        .unwrap_or_default();

    let mut plugins: Vec<PluginConfig> = Vec::new();
    if let Some(value) = doc.get("plugins") {
        let mut seen: BTreeMap<String, String> = BTreeMap::new();
        for (key, item) in each_item(ctx, "plugins", value) {
            let Some(raw) = ctx.section::<raw::Plugin>(&key, &item) else {
                continue;
            };
            if let Some(first) = seen.get(&raw.name) {
                ctx.at(
                    format!("{key}.name"),
                    format!("duplicate plugin name `{}` (also {first})", raw.name),
                );
            } else {
                seen.insert(raw.name.clone(), key.clone());
            }
            if let Some(plugin) = check_plugin(ctx, &key, raw, base, &signing) {
                plugins.push(plugin);
            }
        }
    }

    OperatorConfig {
        source: ctx.file.clone(),
        service,
        protected,
        global_budgets,
        approvals,
        signing,
        plugins,
    }
}

/// Resolves pinned public key files, reporting each one that does not hold a public key.
fn check_keys(ctx: &mut Ctx<'_>, key: &str, paths: Vec<PathBuf>, base: &Path) -> Vec<PathBuf> {
    paths
        .into_iter()
        .enumerate()
        .map(|(i, path)| {
            let path = resolve(base, path);
            if let Err(e) = riposte_supply::PublicKey::from_file(&path) {
                ctx.at(format!("{key}[{i}]"), format!("publisher key {e}"));
            }
            path
        })
        .collect()
}

/// The items of an array section (`[[plugins]]`), each with its key path.
fn each_item<'i>(
    ctx: &mut Ctx<'_>,
    key: &str,
    value: &toml::Spanned<DeValue<'i>>,
) -> Vec<(String, toml::Spanned<DeValue<'i>>)> {
    match value.get_ref() {
        DeValue::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| (format!("{key}[{i}]"), item.clone()))
            .collect(),
        other => {
            ctx.at(
                key,
                format!(
                    "expected an array of tables (`[[{key}]]`), found {}",
                    other.type_str()
                ),
            );
            Vec::new()
        }
    }
}

fn resolve(base: &Path, path: PathBuf) -> PathBuf {
    if path.is_absolute() {
        path
    } else {
        base.join(path)
    }
}

fn check_service(ctx: &mut Ctx<'_>, raw: raw::Service, base: &Path) -> ServiceConfig {
    if raw.poll_interval_secs == 0 {
        ctx.at("service.poll_interval_secs", "must be at least 1 second");
    }
    if raw.max_concurrency == 0 {
        ctx.at("service.max_concurrency", "must be at least 1");
    }
    if raw.max_detail_fetches == 0 {
        ctx.at("service.max_detail_fetches", "must be at least 1");
    }
    if raw.database.as_os_str().is_empty() {
        ctx.at("service.database", "must not be empty");
    }
    if raw.audit.path.as_os_str().is_empty() {
        ctx.at("service.audit.path", "must not be empty");
    }
    if let FsyncPolicy::Interval(0) = raw.audit.fsync {
        ctx.at(
            "service.audit.fsync",
            "an interval of 0 records makes no sense; use \"every-record\" or \"never\"",
        );
    }
    let metrics_listen =
        raw.metrics_listen
            .as_deref()
            .and_then(|addr| match addr.parse::<SocketAddr>() {
                Ok(addr) => Some(addr),
                Err(_) => {
                    ctx.at(
                        "service.metrics_listen",
                        format!(
                            "`{addr}` is not a socket address; expected e.g. \"127.0.0.1:9464\""
                        ),
                    );
                    None
                }
            });
    let server = raw.server.map(|s| {
        let url = s.base_url.trim_end_matches('/').to_string();
        let rest = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"));
        match rest {
            Some(host) if !host.is_empty() && !host.contains('/') && !host.contains(' ') => {}
            _ => ctx.at(
                "service.server.base_url",
                format!(
                    "`{}` is not a server address; expected `https://host[:port]` with no path",
                    s.base_url
                ),
            ),
        }
        if s.credentials_file.as_ref().is_some_and(|f| f.as_os_str().is_empty()) {
            ctx.at(
                "service.server.credentials_file",
                "must not be empty (leave it out to use RIPOSTE_USERNAME and RIPOSTE_PASSWORD)",
            );
        }
        if s.request_timeout_secs == 0 {
            ctx.at(
                "service.server.request_timeout_secs",
                "must be at least 1 second",
            );
        }
        let ca_file = s.ca_file.map(|f| resolve(base, f));
        if let Some(ca) = &ca_file
            && !ca.is_file()
        {
            ctx.at(
                "service.server.ca_file",
                format!("{} is not a readable file (a PEM file of CA certificates)", ca.display()),
            );
        }
        let pinned_certificate = s.pinned_certificate_sha256.as_deref().and_then(|text| {
            let pin = riposte_client::tls::parse_fingerprint(text);
            if pin.is_none() {
                ctx.at(
                    "service.server.pinned_certificate_sha256",
                    format!("`{text}` is not a sha256 fingerprint: expected 64 hex digits, with or without `:` between bytes (as `openssl x509 -noout -fingerprint -sha256` prints)"),
                );
            }
            pin
        });
        if ca_file.is_some() && s.pinned_certificate_sha256.is_some() {
            ctx.at(
                "service.server.pinned_certificate_sha256",
                "set either ca_file or pinned_certificate_sha256: a pinned certificate is accepted whatever CA signed it",
            );
        }
        ServerConfig {
            base_url: url,
            credentials_file: s.credentials_file.map(|f| resolve(base, f)),
            request_timeout_secs: s.request_timeout_secs,
            ca_file,
            pinned_certificate,
        }
    });
    let follow = raw.follow;
    if follow.max_polls == 0 {
        ctx.at("service.follow.max_polls", "must be at least 1");
    }
    if follow.max_poll_interval_secs < follow.first_poll_secs {
        ctx.at(
            "service.follow.max_poll_interval_secs",
            format!(
                "must be at least first_poll_secs ({})",
                follow.first_poll_secs
            ),
        );
    }
    ServiceConfig {
        poll_interval_secs: raw.poll_interval_secs,
        overlap_window_secs: raw.overlap_window_secs,
        max_concurrency: raw.max_concurrency,
        max_detail_fetches: raw.max_detail_fetches,
        database: resolve(base, raw.database),
        audit: AuditConfig {
            path: resolve(base, raw.audit.path),
            fsync: raw.audit.fsync,
        },
        server,
        metrics_listen,
        follow,
    }
}

fn check_glob(ctx: &mut Ctx<'_>, key: &str, pattern: &str) {
    if pattern.trim().is_empty() {
        ctx.at(key, "a glob must not be empty");
    } else if let Err(err) = globset::GlobBuilder::new(pattern)
        .case_insensitive(true)
        .build()
    {
        ctx.at(key, format!("bad glob `{pattern}`: {}", err.kind()));
    }
}

fn check_protected(ctx: &mut Ctx<'_>, raw: raw::Protected) -> ProtectedAssets {
    for (i, glob) in raw.machine_name_globs.iter().enumerate() {
        check_glob(ctx, &format!("protected.machine_name_globs[{i}]"), glob);
    }
    for (i, glob) in raw.reputation_globs.iter().enumerate() {
        check_glob(ctx, &format!("protected.reputation_globs[{i}]"), glob);
    }
    for (i, guid) in raw.machine_guids.iter().enumerate() {
        if guid.trim().is_empty() {
            ctx.at(format!("protected.machine_guids[{i}]"), "must not be empty");
        }
    }
    for (i, group) in raw.groups.iter().enumerate() {
        if group.trim().is_empty() {
            ctx.at(format!("protected.groups[{i}]"), "must not be empty");
        }
    }
    ProtectedAssets {
        machine_name_globs: raw.machine_name_globs,
        machine_guids: raw
            .machine_guids
            .into_iter()
            .map(MachineGuid::new)
            .collect(),
        groups: raw.groups,
        reputation_globs: raw.reputation_globs,
    }
}

fn check_budget(ctx: &mut Ctx<'_>, key: &str, raw: raw::Budget) -> Option<Budget> {
    let action = ActionSelector::from_name(&raw.action);
    if let (None, Some(message)) = (action, legacy_kind_message(&raw.action)) {
        ctx.at(format!("{key}.action"), message);
    } else if action.is_none() {
        let mut expected = vec!["any", "remediate"];
        expected.extend(ActionKind::ALL.iter().map(|k| k.name()));
        ctx.at(
            format!("{key}.action"),
            unknown_message("budget action", &raw.action, &expected),
        );
    }
    if raw.window_secs == 0 {
        ctx.at(format!("{key}.window_secs"), "must be at least 1 second");
    }
    Some(Budget {
        action: action?,
        max: raw.max,
        window_secs: raw.window_secs,
    })
}

fn parse_kind(ctx: &mut Ctx<'_>, key: &str, name: &str) -> Option<ActionKind> {
    let kind = ActionKind::from_name(name);
    if kind.is_none() {
        if let Some(message) = legacy_kind_message(name) {
            ctx.at(key, message);
        } else {
            let expected: Vec<&str> = ActionKind::ALL.iter().map(|k| k.name()).collect();
            ctx.at(key, unknown_message("action kind", name, &expected));
        }
    }
    kind
}

/// The fix for an action kind name whose meaning changed.
fn legacy_kind_message(name: &str) -> Option<String> {
    let split = ActionKind::legacy_name_of(name)?;
    Some(format!(
        "`{name}` is no longer an action kind: it was split into `{}` and `{}`, which are granted, budgeted and approved on their own (whitelisting blinds the EDR to a key); write `{}`, and `{}` only where whitelisting is meant",
        split[0], split[1], split[0], split[1]
    ))
}

/// "unknown operation `isolat`; did you mean `isolate`? expected one of a, b, c"
fn unknown_message(what: &str, found: &str, expected: &[&str]) -> String {
    let mut message = format!("unknown {what} `{found}`");
    if let Some(best) = expected
        .iter()
        .map(|e| (edit_distance(found, e), e))
        .filter(|(d, e)| *d <= 2.max(e.len() / 4))
        .min_by_key(|(d, _)| *d)
    {
        message.push_str(&format!("; did you mean `{}`?", best.1));
    }
    message.push_str(&format!("; expected one of {}", expected.join(", ")));
    message
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(row[j]).min(row[j + 1])
            };
            prev = cur;
        }
    }
    row[b.len()]
}

fn remediation_names() -> Vec<&'static str> {
    ActionKind::ALL
        .iter()
        .filter(|k| k.remediation().is_some())
        .map(|k| k.name())
        .collect()
}

fn check_plugin(
    ctx: &mut Ctx<'_>,
    key: &str,
    raw: raw::Plugin,
    base: &Path,
    signing: &Signing,
) -> Option<PluginConfig> {
    let mut ok = true;
    if raw.name.is_empty()
        || !raw
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        ctx.at(
            format!("{key}.name"),
            format!(
                "`{}` is not a plugin name; use letters, digits, `-`, `_` and `.`",
                raw.name
            ),
        );
        ok = false;
    }
    if raw.path.as_os_str().is_empty() {
        ctx.at(format!("{key}.path"), "must not be empty");
        ok = false;
    }
    let sha256 = Sha256Digest::from_hex(raw.sha256.trim());
    if sha256.is_none() {
        ctx.at(
            format!("{key}.sha256"),
            format!(
                "`{}` is not a sha256 pin: expected 64 hex digits, found {} characters{}",
                raw.sha256,
                raw.sha256.chars().count(),
                if raw.sha256.chars().all(|c| c.is_ascii_hexdigit()) {
                    ""
                } else {
                    " (not all hex)"
                }
            ),
        );
    }
    let mode = match raw.mode.as_deref() {
        None | Some("shadow") => Mode::Shadow,
        Some("enforce") => Mode::Enforce,
        Some(other) => {
            ctx.at(
                format!("{key}.mode"),
                unknown_message("mode", other, &["enforce", "shadow"]),
            );
            ok = false;
            Mode::Shadow
        }
    };

    let mut grants = Grants::default();
    for (i, name) in raw.grants.operations.iter().enumerate() {
        match Operation::ALL.iter().find(|op| op.name() == name) {
            Some(op) => {
                grants.operations.insert(*op);
            }
            None => {
                let expected: Vec<&str> = Operation::ALL.iter().map(|o| o.name()).collect();
                ctx.at(
                    format!("{key}.grants.operations[{i}]"),
                    unknown_message("operation", name, &expected),
                );
                ok = false;
            }
        }
    }
    let remediation_names = remediation_names();
    for (i, name) in raw.grants.remediation.iter().enumerate() {
        match ActionKind::from_name(name).and_then(ActionKind::remediation) {
            Some(kind) => {
                grants.remediation.insert(kind);
            }
            None => {
                ctx.at(
                    format!("{key}.grants.remediation[{i}]"),
                    unknown_message("remediation action kind", name, &remediation_names),
                );
                ok = false;
            }
        }
    }
    let remediate = grants.allows_operation(Operation::Remediate);
    if remediate && grants.remediation.is_empty() && raw.grants.remediation.is_empty() {
        ctx.at(
            format!("{key}.grants.operations"),
            format!(
                "`remediate` is granted but no remediation action kind is: list the kinds in grants.remediation (one of {})",
                remediation_names.join(", ")
            ),
        );
        ok = false;
    }
    if !remediate && !raw.grants.remediation.is_empty() {
        ctx.at(
            format!("{key}.grants.remediation"),
            "remediation kinds are listed but `remediate` is not in grants.operations",
        );
        ok = false;
    }
    grants.whitelist = raw.grants.whitelist;
    if grants.whitelist && !grants.allows_operation(Operation::SetReputation) {
        ctx.at(
            format!("{key}.grants.whitelist"),
            "whitelisting is granted but `set-reputation` is not in grants.operations",
        );
        ok = false;
    }
    for (i, name) in raw.grants.wider_scope.iter().enumerate() {
        let item = format!("{key}.grants.wider_scope[{i}]");
        match parse_kind(ctx, &item, name) {
            Some(kind) if grants.allows_kind(kind) => {
                grants.wider_scope.insert(kind);
            }
            Some(kind) => {
                ctx.at(
                    &item,
                    format!("`{kind}` is given a wider scope but is not granted in grants"),
                );
                ok = false;
            }
            None => ok = false,
        }
    }

    let mut promote = BTreeSet::new();
    for (i, name) in raw.promote.iter().enumerate() {
        let item = format!("{key}.promote[{i}]");
        let Some(kind) = parse_kind(ctx, &item, name) else {
            ok = false;
            continue;
        };
        if mode == Mode::Enforce {
            ctx.at(
                &item,
                format!("`{kind}` is promoted but the plugin is in enforce mode already; promote applies to shadow mode"),
            );
            ok = false;
        } else if !grants.allows_kind(kind) {
            ctx.at(
                &item,
                format!("`{kind}` is promoted but not granted in grants"),
            );
            ok = false;
        }
        promote.insert(kind);
    }

    for problem in raw.limits.validate() {
        ctx.at(format!("{key}.limits.{}", problem.key), problem.to_string());
        ok = false;
    }

    let q = raw.quotas;
    for (field, value) in [
        ("queries_per_invocation", q.queries_per_invocation),
        ("queries_per_minute", q.queries_per_minute),
        ("kv_writes_per_invocation", q.kv_writes_per_invocation),
        ("kv_writes_per_minute", q.kv_writes_per_minute),
        ("calls_per_invocation", q.calls_per_invocation),
    ] {
        if value > 100_000 {
            ctx.at(
                format!("{key}.quotas.{field}"),
                format!("{value} is too large; the maximum is 100000 (0 forbids the calls)"),
            );
            ok = false;
        }
    }
    if raw.min_interval_secs == 0 {
        ctx.at(
            format!("{key}.min_interval_secs"),
            "must be at least 1 second",
        );
        ok = false;
    }

    let mut budgets = Vec::new();
    for (i, b) in raw.budgets.into_iter().enumerate() {
        match check_budget(ctx, &format!("{key}.budgets[{i}]"), b) {
            Some(b) => budgets.push(b),
            None => ok = false,
        }
    }

    let public_keys = match raw.public_keys {
        Some(paths) => check_keys(ctx, &format!("{key}.public_keys"), paths, base),
        None => signing.public_keys.clone(),
    };

    if !(ok && sha256.is_some()) {
        return None;
    }
    Some(PluginConfig {
        name: PluginName::new(raw.name),
        path: resolve(base, raw.path),
        sha256: sha256?,
        mode,
        promote,
        grants,
        limits: raw.limits,
        budgets,
        cooldown_secs: raw.cooldown_secs,
        min_interval_secs: raw.min_interval_secs,
        quotas: q,
        values: raw.values,
        public_keys,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pin() -> String {
        Sha256Digest::of(b"component").to_hex()
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let text = format!(
            "[[plugins]]\nname = \"a\"\npath = \"a.wasm\"\nsha256 = \"{}\"\n",
            pin()
        );
        let config = OperatorConfig::parse(&text, Path::new("/etc/riposte/riposte.toml")).unwrap();
        assert_eq!(
            config.service,
            ServiceConfig {
                database: PathBuf::from("/etc/riposte/riposte.db"),
                audit: AuditConfig {
                    path: PathBuf::from("/etc/riposte/riposte-audit.jsonl"),
                    fsync: FsyncPolicy::EveryRecord,
                },
                ..ServiceConfig::default()
            }
        );
        let plugin = &config.plugins[0];
        assert_eq!(plugin.path, PathBuf::from("/etc/riposte/a.wasm"));
        assert_eq!(plugin.mode, Mode::Shadow);
        assert!(plugin.grants.operations.is_empty());
        assert_eq!(plugin.limits, Limits::default());
    }

    #[test]
    fn suggestions_for_near_misses() {
        let msg = unknown_message(
            "operation",
            "isolat",
            &["isolate", "unisolate", "get-malop"],
        );
        assert!(msg.contains("did you mean `isolate`?"), "{msg}");
        let msg = unknown_message("operation", "zzz", &["isolate"]);
        assert!(!msg.contains("did you mean"), "{msg}");
    }

    #[test]
    fn selectors_match_kinds() {
        assert!(ActionSelector::Any.matches(ActionKind::AddComment));
        assert!(ActionSelector::Remediate.matches(ActionKind::KillProcess));
        assert!(!ActionSelector::Remediate.matches(ActionKind::Isolate));
        assert_eq!(
            ActionSelector::from_name("isolate"),
            Some(ActionSelector::Kind(ActionKind::Isolate))
        );
        assert_eq!(render_secs(3600), "1 h");
        assert_eq!(render_secs(90), "90 s");
    }
}
