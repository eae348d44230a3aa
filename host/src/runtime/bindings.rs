//! Host bindings generated from `wit/`, and conversions between the WIT types and the
//! host's domain types.

use crate::domain;

wasmtime::component::bindgen!({
    path: "../wit",
    world: "rule",
    imports: { default: async | trappable },
    exports: { default: async },
});

pub use self::riposte::plugin::{
    bookkeeping, config, isolation, kv, log, malops, plugin, remediation, reputation, types,
};

/// The WIT package this host implements, e.g. `riposte:plugin@0.1.0`.
pub const WIT_PACKAGE: &str = "riposte:plugin";
/// The version of [`WIT_PACKAGE`] this host implements.
pub const WIT_VERSION: &str = "0.1.0";
/// The world a plugin must target.
pub const WIT_WORLD: &str = "rule";

impl From<&domain::Malop> for types::Malop {
    fn from(m: &domain::Malop) -> Self {
        types::Malop {
            id: m.id.to_string(),
            kind: m.kind.into(),
            display_name: m.display_name.clone(),
            detection_type: m.detection_type.clone(),
            activity_types: m.activity_types.clone(),
            management_status: m.management_status.into(),
            priority: m.priority.into(),
            creation_time: m.creation_time,
            last_update_time: m.last_update_time,
            root_causes: m.root_causes.iter().map(Into::into).collect(),
            machines: m.machines.iter().map(Into::into).collect(),
            suspects: m.suspects.iter().map(Into::into).collect(),
            files: m.files.iter().map(Into::into).collect(),
            users: m
                .users
                .iter()
                .map(|u| types::User {
                    guid: u.guid.to_string(),
                    name: u.name.clone(),
                })
                .collect(),
            ip_addresses: m.ip_addresses.clone(),
            domains: m.domains.clone(),
        }
    }
}

impl From<domain::ElementKind> for types::ElementKind {
    fn from(k: domain::ElementKind) -> Self {
        match k {
            domain::ElementKind::Process => Self::Process,
            domain::ElementKind::LogonSession => Self::LogonSession,
        }
    }
}

impl From<types::ElementKind> for domain::ElementKind {
    fn from(k: types::ElementKind) -> Self {
        match k {
            types::ElementKind::Process => Self::Process,
            types::ElementKind::LogonSession => Self::LogonSession,
        }
    }
}

impl From<domain::ManagementStatus> for types::ManagementStatus {
    fn from(s: domain::ManagementStatus) -> Self {
        use domain::ManagementStatus as D;
        match s {
            D::Unread => Self::Unread,
            D::Todo => Self::Todo,
            D::Open => Self::Open,
            D::Closed => Self::Closed,
            D::FalsePositive => Self::FalsePositive,
            D::Reopened => Self::Reopened,
            D::Unknown => Self::Unknown,
        }
    }
}

impl From<types::ManagementStatus> for domain::ManagementStatus {
    fn from(s: types::ManagementStatus) -> Self {
        use types::ManagementStatus as W;
        match s {
            W::Unread => Self::Unread,
            W::Todo => Self::Todo,
            W::Open => Self::Open,
            W::Closed => Self::Closed,
            W::FalsePositive => Self::FalsePositive,
            W::Reopened => Self::Reopened,
            W::Unknown => Self::Unknown,
        }
    }
}

impl From<domain::Priority> for types::Priority {
    fn from(p: domain::Priority) -> Self {
        match p {
            domain::Priority::High => Self::High,
            domain::Priority::Medium => Self::Medium,
            domain::Priority::Low => Self::Low,
            domain::Priority::Unknown => Self::Unknown,
        }
    }
}

impl From<&domain::RootCause> for types::RootCause {
    fn from(r: &domain::RootCause) -> Self {
        types::RootCause {
            name: r.name.clone(),
            element_type: r.element_type.clone(),
            hashes: r.hashes.clone(),
        }
    }
}

impl From<&domain::Machine> for types::Machine {
    fn from(m: &domain::Machine) -> Self {
        types::Machine {
            guid: m.guid.to_string(),
            name: m.name.clone(),
            pylum_id: m.pylum_id.as_ref().map(ToString::to_string),
            os: m.os.clone(),
            connected: m.connected,
            isolated: m.isolated,
        }
    }
}

impl From<&domain::Suspect> for types::Suspect {
    fn from(s: &domain::Suspect) -> Self {
        types::Suspect {
            guid: s.guid.to_string(),
            name: s.name.clone(),
            machine_guid: s.machine_guid.to_string(),
            image_sha1: s.image_sha1.clone(),
            autorun_keys: s
                .autorun_keys
                .iter()
                .map(|k| types::RegistryEntry {
                    guid: k.guid.to_string(),
                    name: k.name.clone(),
                })
                .collect(),
        }
    }
}

impl From<&domain::FileItem> for types::FileItem {
    fn from(f: &domain::FileItem) -> Self {
        types::FileItem {
            guid: f.guid.to_string(),
            name: f.name.clone(),
            md5: f.md5.clone(),
            sha1: f.sha1.clone(),
            machine_guid: f.machine_guid.to_string(),
        }
    }
}

impl From<domain::CallError> for types::Error {
    fn from(e: domain::CallError) -> Self {
        use domain::CallError as D;
        match e {
            D::Denied(m) => Self::Denied(m),
            D::BudgetExhausted(m) => Self::BudgetExhausted(m),
            D::ProtectedTarget(m) => Self::ProtectedTarget(m),
            D::NotFound(m) => Self::NotFound(m),
            D::ServerError(m) => Self::ServerError(m),
            D::InvalidArgument(m) => Self::InvalidArgument(m),
            D::Failed(m) => Self::Failed(m),
        }
    }
}

impl From<types::Error> for domain::CallError {
    fn from(e: types::Error) -> Self {
        use types::Error as W;
        match e {
            W::Denied(m) => Self::Denied(m),
            W::BudgetExhausted(m) => Self::BudgetExhausted(m),
            W::ProtectedTarget(m) => Self::ProtectedTarget(m),
            W::NotFound(m) => Self::NotFound(m),
            W::ServerError(m) => Self::ServerError(m),
            W::InvalidArgument(m) => Self::InvalidArgument(m),
            W::Failed(m) => Self::Failed(m),
        }
    }
}

impl From<domain::Receipt> for types::Receipt {
    fn from(r: domain::Receipt) -> Self {
        types::Receipt {
            action_id: r.action_id,
            disposition: match r.disposition {
                domain::Disposition::Submitted => types::Disposition::Submitted,
                domain::Disposition::Shadowed => types::Disposition::Shadowed,
                domain::Disposition::AwaitingApproval => types::Disposition::AwaitingApproval,
            },
        }
    }
}

impl From<domain::RemediationProgress> for remediation::Progress {
    fn from(p: domain::RemediationProgress) -> Self {
        use domain::RemediationProgress as D;
        match p {
            D::Pending => Self::Pending,
            D::InProgress => Self::InProgress,
            D::Success => Self::Success,
            D::Failure => Self::Failure,
            D::Unknown => Self::Unknown,
        }
    }
}

impl From<remediation::ActionKind> for domain::RemediationKind {
    fn from(k: remediation::ActionKind) -> Self {
        use remediation::ActionKind as W;
        match k {
            W::KillProcess => Self::KillProcess,
            W::QuarantineFile => Self::QuarantineFile,
            W::UnquarantineFile => Self::UnquarantineFile,
            W::DeleteRegistryKey => Self::DeleteRegistryKey,
            W::BlockFile => Self::BlockFile,
            W::KillPreventUnsuspend => Self::KillPreventUnsuspend,
            W::UnsuspendProcess => Self::UnsuspendProcess,
        }
    }
}

impl From<remediation::Target> for domain::RemediationTarget {
    fn from(t: remediation::Target) -> Self {
        domain::RemediationTarget {
            machine_guid: t.machine_guid.into(),
            target_guid: t.target_guid.into(),
            kind: t.kind.into(),
        }
    }
}

impl From<reputation::Verdict> for domain::Verdict {
    fn from(v: reputation::Verdict) -> Self {
        match v {
            reputation::Verdict::Blacklist => Self::Blacklist,
            reputation::Verdict::Whitelist => Self::Whitelist,
        }
    }
}

impl From<reputation::ReputationKey> for domain::ReputationKey {
    fn from(k: reputation::ReputationKey) -> Self {
        domain::ReputationKey {
            kind: match k.kind {
                reputation::KeyKind::FileHash => domain::KeyKind::FileHash,
                reputation::KeyKind::IpAddress => domain::KeyKind::IpAddress,
                reputation::KeyKind::Domain => domain::KeyKind::Domain,
            },
            value: k.value,
        }
    }
}

impl From<log::Level> for super::LogLevel {
    fn from(l: log::Level) -> Self {
        match l {
            log::Level::Trace => Self::Trace,
            log::Level::Debug => Self::Debug,
            log::Level::Info => Self::Info,
            log::Level::Warn => Self::Warn,
            log::Level::Error => Self::Error,
        }
    }
}

/// A plugin's self-description, in host types.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PluginInfo {
    pub name: String,
    pub version: String,
    pub description: String,
    pub subscription: Subscription,
    pub interval_seconds: Option<u32>,
}

/// Which Malops a plugin wants to see; empty lists match everything.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Subscription {
    pub element_kinds: Vec<domain::ElementKind>,
    pub activity_types: Vec<String>,
    pub detection_types: Vec<String>,
}

impl Subscription {
    /// Whether the plugin wants to see `malop`.
    pub fn matches(&self, malop: &domain::Malop) -> bool {
        self.matches_parts(malop.kind, &malop.activity_types, &malop.detection_type)
    }

    /// [`Subscription::matches`] on a Malop's kind, activity types and detection type.
    pub fn matches_parts(
        &self,
        kind: domain::ElementKind,
        activity_types: &[String],
        detection_type: &str,
    ) -> bool {
        let kind_ok = self.element_kinds.is_empty() || self.element_kinds.contains(&kind);
        let activity_ok = self.activity_types.is_empty()
            || activity_types.iter().any(|a| {
                self.activity_types
                    .iter()
                    .any(|s| s.eq_ignore_ascii_case(a))
            });
        let detection_ok = self.detection_types.is_empty()
            || self
                .detection_types
                .iter()
                .any(|d| d.eq_ignore_ascii_case(detection_type));
        kind_ok && activity_ok && detection_ok
    }
}

impl From<plugin::Info> for PluginInfo {
    fn from(i: plugin::Info) -> Self {
        PluginInfo {
            name: i.name,
            version: i.version,
            description: i.description,
            subscription: Subscription {
                element_kinds: i
                    .subscription
                    .element_kinds
                    .into_iter()
                    .map(Into::into)
                    .collect(),
                activity_types: i.subscription.activity_types,
                detection_types: i.subscription.detection_types,
            },
            interval_seconds: i.interval_seconds,
        }
    }
}
