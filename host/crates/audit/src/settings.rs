//! `[service.audit]`: where the trail is written, when it is forced to disk, the key of its
//! chain; `[service.audit.export]`: the SIEM export.

use crate::{AuditSink, ChainKey, Error, FsyncPolicy};
use riposte_domain::settings::{Findings, resolve_path};
use riposte_syslog::{Framing, SenderConfig, SenderTransport};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Default audit log path (relative to the configuration file).
pub const DEFAULT_AUDIT_PATH: &str = "riposte-audit.jsonl";

/// `[service.audit]`: the audit trail file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// The JSON-lines file (`path`, default `riposte-audit.jsonl`).
    pub path: PathBuf,
    /// When to fsync (`fsync`: `"every-record"` (default), `"batch"` (at durability barriers),
    /// `"never"`, or a number N: every N records); see [`FsyncPolicy`].
    pub fsync: FsyncPolicy,
    /// The key of the chain (`key_file`): a file of random bytes, mode 0600, outside the
    /// audit trail's directory (make one with `riposte audit keygen FILE`). When set, new
    /// records are linked by HMAC-SHA256 under it; when absent, by plain sha256.
    pub key_file: Option<PathBuf>,
    /// The SIEM export (`[service.audit.export]`, off by default).
    pub export: ExportConfig,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from(DEFAULT_AUDIT_PATH),
            fsync: FsyncPolicy::EveryRecord,
            key_file: None,
            export: ExportConfig::default(),
        }
    }
}

impl AuditConfig {
    /// Checks the section as read and resolves its paths against `base`, the directory of
    /// the configuration file.
    pub fn resolve(&mut self, base: &Path) -> Findings {
        let mut findings = Findings::new();
        if self.path.as_os_str().is_empty() {
            findings.at("path", "must not be empty");
        }
        if let FsyncPolicy::Interval(0) = self.fsync {
            findings.at(
                "fsync",
                "an interval of 0 records makes no sense; use \"every-record\" or \"never\"",
            );
        }
        self.path = resolve_path(base, std::mem::take(&mut self.path));
        if let Some(key) = self.key_file.take() {
            if key.as_os_str().is_empty() {
                findings.at("key_file", "must not be empty");
            }
            let key = resolve_path(base, key);
            if within_trail_dir(&key, &self.path) {
                findings.at(
                    "key_file",
                    format!(
                        "{} is in the audit trail's directory or below it: keep the key elsewhere (whoever can rewrite the trail must not be able to read the key)",
                        key.display()
                    ),
                );
            }
            self.key_file = Some(key);
        }
        findings.nest("export", self.export.resolve(base));
        findings
    }

    /// Reads the chain's key, if `key_file` is set (see [`ChainKey::load`]).
    pub fn load_key(&self) -> Result<Option<ChainKey>, Error> {
        self.key_file.as_deref().map(ChainKey::load).transpose()
    }

    /// Opens the trail as configured: its path, fsync policy and key.
    pub fn open_sink(&self) -> Result<AuditSink, Error> {
        crate::AuditLog::open_keyed(&self.path, self.fsync, self.load_key()?).map(AuditSink::file)
    }
}

/// Whether `key` sits in the directory of `trail` or in one below it (compared canonically
/// where the directories exist, so a symbolic link is no way around the rule).
fn within_trail_dir(key: &Path, trail: &Path) -> bool {
    let dir = |p: &Path| {
        // A bare file name (a configuration read from the working directory) is in ".".
        let parent = p.parent().filter(|d| !d.as_os_str().is_empty());
        canonical_prefix(parent.unwrap_or(Path::new(".")))
    };
    dir(key).starts_with(dir(trail))
}

/// `path` with its longest existing prefix made canonical (the rest appended as written).
fn canonical_prefix(path: &Path) -> PathBuf {
    let mut rest = Vec::new();
    let mut head = path;
    loop {
        if let Ok(canonical) = std::fs::canonicalize(head) {
            return rest.iter().rev().fold(canonical, |p, part| p.join(part));
        }
        match (head.parent(), head.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                head = parent;
            }
            _ => return path.to_path_buf(),
        }
    }
}

/// How the export reaches the collector: a stream (UDP cannot tell whether anything arrived).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportTransport {
    /// Plain TCP (RFC 6587 framing).
    #[default]
    Tcp,
    /// TLS over TCP (RFC 5425), the collector verified against `ca_file`.
    Tls,
}

/// The payload of each exported record (after its RFC 5424 header).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    /// One JSON object: `{"seq", "chain_hash", "time", "kind", "fields"}`.
    #[default]
    Json,
    /// A CEF record: `externalId` = seq, `cs1` (`cs1Label=chainHash`) = chain hash.
    Cef,
}

impl From<ExportFormat> for riposte_syslog::format::RecordPayload {
    fn from(format: ExportFormat) -> Self {
        match format {
            ExportFormat::Json => Self::Json,
            ExportFormat::Cef => Self::Cef,
        }
    }
}

/// Every default of `[service.audit.export]`.
pub(crate) mod defaults {
    /// Records read from the trail per chunk.
    pub const BATCH_RECORDS: usize = 500;
    /// Messages waiting in the sender's queue.
    pub const QUEUE_CAPACITY: usize = 1000;
    /// A record counts as delivered once its connection stayed up this long after it.
    pub const CONFIRM_MS: u64 = 1000;
    /// How often the trail is looked at for records written by other processes.
    pub const POLL_MS: u64 = 1000;
    /// Longest delay between reconnection attempts.
    pub const BACKOFF_MAX_MS: u64 = 30_000;
    /// The RFC 5424 APP-NAME.
    pub const APP_NAME: &str = "riposte";
    /// Longest exported message; a longer record is sent without its fields.
    pub const MAX_MESSAGE_BYTES: usize = 65_507;
}

/// `[service.audit.export]`: streams every audit record to a SIEM collector, at least once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExportConfig {
    /// Whether `riposte run` exports (`enabled`, default false).
    pub enabled: bool,
    /// The collector, `host:port` (`address`). Required when enabled.
    pub address: String,
    /// `tcp` (default) or `tls` (`transport`).
    pub transport: ExportTransport,
    /// The name the collector's certificate must carry (`server_name`; default: the host
    /// part of `address`). TLS only.
    pub server_name: Option<String>,
    /// CA certificates, PEM (`ca_file`). Required for TLS.
    pub ca_file: Option<PathBuf>,
    /// A client certificate chain, PEM (`client_cert`), for collectors that require one.
    pub client_cert: Option<PathBuf>,
    /// Its private key, PEM (`client_key`).
    pub client_key: Option<PathBuf>,
    /// `json` (default) or `cef` (`format`).
    pub format: ExportFormat,
    /// `octet-counting` (default) or `newline` (`framing`).
    pub framing: Framing,
    /// The RFC 5424 HOSTNAME (`hostname`; default: this machine's host name).
    pub hostname: Option<String>,
    /// The RFC 5424 APP-NAME (`app_name`, default `riposte`).
    pub app_name: String,
    /// The cursor file (`cursor`; default: `<trail>.export-cursor`, beside the trail).
    pub cursor: Option<PathBuf>,
    /// Records read from the trail at a time (`batch_records`, default 500).
    pub batch_records: usize,
    /// Messages waiting to be written (`queue_capacity`, default 1000).
    pub queue_capacity: usize,
    /// A record counts as delivered, and the cursor moves past it, once the connection that
    /// carried it stayed up this many milliseconds after it was written (`confirm_ms`,
    /// default 1000); a broken connection before that resends it.
    pub confirm_ms: u64,
    /// How often the trail is read for records other processes appended (`poll_ms`,
    /// default 1000); the service's own records are exported at once.
    pub poll_ms: u64,
    /// Longest delay between reconnection attempts, ms (`backoff_max_ms`, default 30000).
    pub backoff_max_ms: u64,
}

impl Default for ExportConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            address: String::new(),
            transport: ExportTransport::Tcp,
            server_name: None,
            ca_file: None,
            client_cert: None,
            client_key: None,
            format: ExportFormat::Json,
            framing: Framing::OctetCounting,
            hostname: None,
            app_name: defaults::APP_NAME.to_owned(),
            cursor: None,
            batch_records: defaults::BATCH_RECORDS,
            queue_capacity: defaults::QUEUE_CAPACITY,
            confirm_ms: defaults::CONFIRM_MS,
            poll_ms: defaults::POLL_MS,
            backoff_max_ms: defaults::BACKOFF_MAX_MS,
        }
    }
}

impl ExportConfig {
    /// An enabled export to `address` over plain TCP, every other setting at its default.
    pub fn tcp(address: impl Into<String>) -> Self {
        Self {
            enabled: true,
            address: address.into(),
            ..Self::default()
        }
    }

    /// The syslog sender's settings for this export.
    pub fn sender(&self) -> SenderConfig {
        let mut sender = SenderConfig::new(
            match self.transport {
                ExportTransport::Tcp => SenderTransport::Tcp,
                ExportTransport::Tls => SenderTransport::Tls,
            },
            self.address.clone(),
        );
        sender.server_name = self.server_name.clone();
        sender.ca_file = self.ca_file.clone();
        sender.client_cert = self.client_cert.clone();
        sender.client_key = self.client_key.clone();
        sender.framing = self.framing;
        sender.queue_capacity = self.queue_capacity;
        sender.max_message_bytes = defaults::MAX_MESSAGE_BYTES;
        sender.backoff_max_ms = self.backoff_max_ms;
        sender.backoff_min_ms = sender.backoff_min_ms.min(self.backoff_max_ms.max(1));
        sender
    }

    /// Checks the section and resolves its paths against `base`; an export that is not
    /// enabled is not checked further.
    pub fn resolve(&mut self, base: &Path) -> Findings {
        let mut findings = Findings::new();
        for path in [
            &mut self.ca_file,
            &mut self.client_cert,
            &mut self.client_key,
            &mut self.cursor,
        ]
        .into_iter()
        .flatten()
        {
            *path = resolve_path(base, std::mem::take(path));
        }
        if !self.enabled {
            return findings;
        }
        if self.address.is_empty() {
            findings.at("address", "required when the export is enabled (host:port)");
        } else if let Err(problems) = self.sender().validate() {
            for problem in problems {
                findings.at(problem.key, problem.message);
            }
        }
        for (key, value, lo, hi) in [
            ("batch_records", self.batch_records as u64, 1, 100_000),
            ("queue_capacity", self.queue_capacity as u64, 1, 1_000_000),
            ("confirm_ms", self.confirm_ms, 1, 3_600_000),
            ("poll_ms", self.poll_ms, 1, 3_600_000),
        ] {
            if !(lo..=hi).contains(&value) {
                findings.at(
                    key,
                    format!("{value} is out of range: expected {lo} to {hi}"),
                );
            }
        }
        findings
    }
}
