//! `[service.audit]`: where the trail is written and when it is forced to disk.

use crate::FsyncPolicy;
use riposte_domain::settings::{Findings, resolve_path};
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
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from(DEFAULT_AUDIT_PATH),
            fsync: FsyncPolicy::EveryRecord,
        }
    }
}

impl AuditConfig {
    /// Checks the section as read and resolves its path against `base`, the directory of
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
        findings
    }
}
