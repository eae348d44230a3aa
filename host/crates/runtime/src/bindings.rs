//! Host bindings generated from `wit/`, one module per contract version the host serves side
//! by side, and conversions between each version's WIT types and the host's domain types.
//!
//! - [`v0_2`]: `riposte:plugin@0.2.0` (`wit/`), the current contract: Malops tell which parts
//!   could not be read, receipts tell where an action stands, and the errors `out-of-scope`
//!   and `quota-exceeded` have variants of their own.
//! - [`v0_1`]: `riposte:plugin@0.1.0` (`wit/v0.1.0/`), kept with its exact shapes so that
//!   plugins built against it load and run unchanged. Where 0.1.0 has no word for something,
//!   the nearest one it has is used (see [`v0_1::receipt`] and the `From<CallError>` impl).
//!
//! A component's version is read from its imports at load ([`wit_version_of`]).

use riposte_domain as domain;

/// The WIT package this host implements, e.g. `riposte:plugin@0.2.0`.
pub const WIT_PACKAGE: &str = "riposte:plugin";
/// The current version of [`WIT_PACKAGE`]: what `wit/` holds and new plugins are built against.
pub const WIT_VERSION: &str = "0.2.0";
/// Every version of [`WIT_PACKAGE`] this host serves, newest first.
pub const WIT_VERSIONS: [&str; 2] = ["0.2.0", "0.1.0"];
/// The world a plugin must target.
pub const WIT_WORLD: &str = "rule";

/// `riposte:plugin@0.2.0`, from `wit/`.
pub mod v0_2 {
    wasmtime::component::bindgen!({
        path: "../../../wit",
        world: "rule",
        imports: { default: async | trappable },
        exports: { default: async },
    });

    pub use self::riposte::plugin::{
        bookkeeping, config, isolation, kv, log, malops, plugin, remediation, reputation, types,
    };
}

/// `riposte:plugin@0.1.0`, from `wit/v0.1.0/`.
pub mod v0_1 {
    wasmtime::component::bindgen!({
        path: "../../../wit/v0.1.0",
        world: "rule",
        imports: { default: async | trappable },
        exports: { default: async },
    });

    pub use self::riposte::plugin::{
        bookkeeping, config, isolation, kv, log, malops, plugin, remediation, reputation, types,
    };
}

/// The conversions whose shapes are the same in every version: `$v` is the version's module.
macro_rules! common_conversions {
    ($v:ident) => {
        impl From<domain::ElementKind> for $v::types::ElementKind {
            fn from(k: domain::ElementKind) -> Self {
                match k {
                    domain::ElementKind::Process => Self::Process,
                    domain::ElementKind::LogonSession => Self::LogonSession,
                }
            }
        }

        impl From<$v::types::ElementKind> for domain::ElementKind {
            fn from(k: $v::types::ElementKind) -> Self {
                match k {
                    $v::types::ElementKind::Process => Self::Process,
                    $v::types::ElementKind::LogonSession => Self::LogonSession,
                }
            }
        }

        impl From<domain::ManagementStatus> for $v::types::ManagementStatus {
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

        impl From<$v::types::ManagementStatus> for domain::ManagementStatus {
            fn from(s: $v::types::ManagementStatus) -> Self {
                use $v::types::ManagementStatus as W;
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

        impl From<domain::Priority> for $v::types::Priority {
            fn from(p: domain::Priority) -> Self {
                match p {
                    domain::Priority::High => Self::High,
                    domain::Priority::Medium => Self::Medium,
                    domain::Priority::Low => Self::Low,
                    domain::Priority::Unknown => Self::Unknown,
                }
            }
        }

        impl From<&domain::RootCause> for $v::types::RootCause {
            fn from(r: &domain::RootCause) -> Self {
                Self {
                    name: r.name.clone(),
                    element_type: r.element_type.clone(),
                    hashes: r.hashes.clone(),
                }
            }
        }

        impl From<&domain::Machine> for $v::types::Machine {
            fn from(m: &domain::Machine) -> Self {
                Self {
                    guid: m.guid.to_string(),
                    name: m.name.clone(),
                    pylum_id: m.pylum_id.as_ref().map(ToString::to_string),
                    os: m.os.clone(),
                    connected: m.connected,
                    isolated: m.isolated,
                }
            }
        }

        impl From<&domain::Suspect> for $v::types::Suspect {
            fn from(s: &domain::Suspect) -> Self {
                Self {
                    guid: s.guid.to_string(),
                    name: s.name.clone(),
                    machine_guid: s.machine_guid.to_string(),
                    image_sha1: s.image_sha1.clone(),
                    autorun_keys: s
                        .autorun_keys
                        .iter()
                        .map(|k| $v::types::RegistryEntry {
                            guid: k.guid.to_string(),
                            name: k.name.clone(),
                        })
                        .collect(),
                }
            }
        }

        impl From<&domain::FileItem> for $v::types::FileItem {
            fn from(f: &domain::FileItem) -> Self {
                Self {
                    guid: f.guid.to_string(),
                    name: f.name.clone(),
                    md5: f.md5.clone(),
                    sha1: f.sha1.clone(),
                    machine_guid: f.machine_guid.to_string(),
                }
            }
        }

        impl From<&domain::User> for $v::types::User {
            fn from(u: &domain::User) -> Self {
                Self {
                    guid: u.guid.to_string(),
                    name: u.name.clone(),
                }
            }
        }

        impl From<domain::RemediationProgress> for $v::remediation::Progress {
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

        impl From<$v::remediation::ActionKind> for domain::RemediationKind {
            fn from(k: $v::remediation::ActionKind) -> Self {
                use $v::remediation::ActionKind as W;
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

        impl From<$v::remediation::Target> for domain::RemediationTarget {
            fn from(t: $v::remediation::Target) -> Self {
                domain::RemediationTarget {
                    machine_guid: t.machine_guid.into(),
                    target_guid: t.target_guid.into(),
                    kind: t.kind.into(),
                }
            }
        }

        impl From<$v::reputation::Verdict> for domain::Verdict {
            fn from(v: $v::reputation::Verdict) -> Self {
                match v {
                    $v::reputation::Verdict::Blacklist => Self::Blacklist,
                    $v::reputation::Verdict::Whitelist => Self::Whitelist,
                }
            }
        }

        impl From<$v::reputation::ReputationKey> for domain::ReputationKey {
            fn from(k: $v::reputation::ReputationKey) -> Self {
                domain::ReputationKey {
                    kind: match k.kind {
                        $v::reputation::KeyKind::FileHash => domain::KeyKind::FileHash,
                        $v::reputation::KeyKind::IpAddress => domain::KeyKind::IpAddress,
                        $v::reputation::KeyKind::Domain => domain::KeyKind::Domain,
                    },
                    value: k.value,
                }
            }
        }

        impl From<$v::log::Level> for super::LogLevel {
            fn from(l: $v::log::Level) -> Self {
                match l {
                    $v::log::Level::Trace => Self::Trace,
                    $v::log::Level::Debug => Self::Debug,
                    $v::log::Level::Info => Self::Info,
                    $v::log::Level::Warn => Self::Warn,
                    $v::log::Level::Error => Self::Error,
                }
            }
        }

        impl From<$v::plugin::Info> for PluginInfo {
            fn from(i: $v::plugin::Info) -> Self {
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
    };
}

common_conversions!(v0_1);
common_conversions!(v0_2);

/// The Malop with the fields every version has; `$extra` adds the version's own.
macro_rules! malop_record {
    ($v:ident, $m:ident { $($extra:tt)* }) => {
        $v::types::Malop {
            id: $m.id.to_string(),
            kind: $m.kind.into(),
            display_name: $m.display_name.clone(),
            detection_type: $m.detection_type.clone(),
            activity_types: $m.activity_types.clone(),
            management_status: $m.management_status.into(),
            priority: $m.priority.into(),
            creation_time: $m.creation_time,
            last_update_time: $m.last_update_time,
            root_causes: $m.root_causes.iter().map(Into::into).collect(),
            machines: $m.machines.iter().map(Into::into).collect(),
            suspects: $m.suspects.iter().map(Into::into).collect(),
            files: $m.files.iter().map(Into::into).collect(),
            users: $m.users.iter().map(Into::into).collect(),
            ip_addresses: $m.ip_addresses.clone(),
            domains: $m.domains.clone(),
            $($extra)*
        }
    };
}

impl From<&domain::Malop> for v0_2::types::Malop {
    fn from(m: &domain::Malop) -> Self {
        malop_record!(
            v0_2,
            m {
                unreadable: m.unreadable.iter().map(|p| (*p).into()).collect(),
            }
        )
    }
}

impl From<&domain::Malop> for v0_1::types::Malop {
    /// 0.1.0 has no word for unreadable parts: its plugins get the same partial record.
    fn from(m: &domain::Malop) -> Self {
        malop_record!(v0_1, m {})
    }
}

impl From<domain::MalopPart> for v0_2::types::MalopPart {
    fn from(p: domain::MalopPart) -> Self {
        match p {
            domain::MalopPart::Suspects => Self::Suspects,
            domain::MalopPart::Files => Self::Files,
            domain::MalopPart::Network => Self::Network,
            domain::MalopPart::Sensors => Self::Sensors,
        }
    }
}

impl From<domain::CallError> for v0_2::types::Error {
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
            D::OutOfScope(m) => Self::OutOfScope(m),
            D::QuotaExceeded(m) => Self::QuotaExceeded(m),
        }
    }
}

impl From<v0_2::types::Error> for domain::CallError {
    fn from(e: v0_2::types::Error) -> Self {
        use v0_2::types::Error as W;
        match e {
            W::Denied(m) => Self::Denied(m),
            W::BudgetExhausted(m) => Self::BudgetExhausted(m),
            W::ProtectedTarget(m) => Self::ProtectedTarget(m),
            W::NotFound(m) => Self::NotFound(m),
            W::ServerError(m) => Self::ServerError(m),
            W::InvalidArgument(m) => Self::InvalidArgument(m),
            W::Failed(m) => Self::Failed(m),
            W::OutOfScope(m) => Self::OutOfScope(m),
            W::QuotaExceeded(m) => Self::QuotaExceeded(m),
        }
    }
}

impl From<domain::CallError> for v0_1::types::Error {
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
            // riposte:plugin@0.1.0 has no variants of their own for these.
            D::OutOfScope(m) => Self::Denied(format!("out of scope: {m}")),
            D::QuotaExceeded(m) => Self::BudgetExhausted(format!("quota exceeded: {m}")),
        }
    }
}

impl From<v0_1::types::Error> for domain::CallError {
    fn from(e: v0_1::types::Error) -> Self {
        use v0_1::types::Error as W;
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

impl v0_2::types::Receipt {
    /// The receipt as 0.2.0 words it: every disposition has its own value.
    pub fn from_domain(r: domain::Receipt) -> Self {
        use domain::Disposition as D;
        use v0_2::types::Disposition as W;
        let disposition = match r.disposition {
            D::Submitted => W::Submitted,
            D::Succeeded => W::Succeeded,
            D::Failed => W::Failed,
            D::Queued => W::Queued,
            D::OutcomeUnknown => W::OutcomeUnknown,
            D::TimedOut => W::TimedOut,
            D::Shadowed => W::Shadowed,
            D::AwaitingApproval => W::AwaitingApproval,
            D::Approved => W::Approved,
            D::Denied => W::Denied,
            D::Expired => W::Expired,
            D::Undone => W::Undone,
        };
        Self {
            action_id: r.action_id,
            disposition,
            detail: r.detail,
        }
    }
}

/// The receipt of `riposte:plugin@0.2.0`: always a receipt, with its true disposition.
pub fn receipt_v0_2(r: domain::Receipt) -> Result<v0_2::types::Receipt, v0_2::types::Error> {
    Ok(v0_2::types::Receipt::from_domain(r))
}

impl v0_1::types::Receipt {
    /// The receipt as 0.1.0 words it, which knows only `submitted`, `shadowed` and
    /// `awaiting-approval`. An action that ended without effect is never reported
    /// `submitted`: a failure is a `server-error`, a denial or expired approval `denied`.
    pub fn from_domain(r: domain::Receipt) -> Result<Self, v0_1::types::Error> {
        use domain::Disposition as D;
        use v0_1::types::{Disposition as W, Error};
        let id = &r.action_id;
        let why = if r.detail.is_empty() {
            "no detail".to_owned()
        } else {
            r.detail.clone()
        };
        let disposition = match r.disposition {
            D::Submitted
            | D::Succeeded
            | D::Queued
            | D::OutcomeUnknown
            | D::TimedOut
            | D::Undone => W::Submitted,
            D::Shadowed => W::Shadowed,
            D::AwaitingApproval | D::Approved => W::AwaitingApproval,
            D::Failed => return Err(Error::ServerError(format!("action {id} failed: {why}"))),
            D::Denied => {
                return Err(Error::Denied(format!(
                    "an operator denied action {id}: {why}"
                )));
            }
            D::Expired => {
                return Err(Error::Denied(format!(
                    "the approval of action {id} expired undecided"
                )));
            }
        };
        Ok(Self {
            action_id: r.action_id,
            disposition,
        })
    }
}

/// The receipt of `riposte:plugin@0.1.0` (see [`v0_1::types::Receipt::from_domain`]).
pub fn receipt_v0_1(r: domain::Receipt) -> Result<v0_1::types::Receipt, v0_1::types::Error> {
    v0_1::types::Receipt::from_domain(r)
}

/// The version of [`WIT_PACKAGE`] a component was built against, read from its imports
/// (`riposte:plugin/types@0.2.0`, ...): `Ok(None)` when it imports nothing of the package,
/// `Err(version)` for a version this host does not serve, or for imports of two versions.
pub fn wit_version_of<'a>(
    imports: impl IntoIterator<Item = &'a str>,
) -> Result<Option<&'static str>, String> {
    let prefix = format!("{WIT_PACKAGE}/");
    let mut found: Option<&'static str> = None;
    for import in imports {
        let Some(rest) = import.strip_prefix(&prefix) else {
            continue;
        };
        let version = rest.split_once('@').map_or("(no version)", |(_, v)| v);
        let known = WIT_VERSIONS
            .into_iter()
            .find(|v| *v == version)
            .ok_or_else(|| version.to_owned())?;
        match found {
            Some(other) if other != known => return Err(format!("{other} and {known}")),
            _ => found = Some(known),
        }
    }
    Ok(found)
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

impl PluginInfo {
    /// Checks what the plugin said about itself against [`riposte_domain::bounds`]: it is logged and
    /// audited when the plugin loads, so it must be small and fit on one line.
    pub fn check_bounds(&self) -> Result<(), String> {
        use riposte_domain::bounds::{
            MAX_DESCRIBE_BYTES, MAX_SUBSCRIPTION_ENTRIES, has_forbidden_id_char,
        };
        let texts = [
            ("name", &self.name),
            ("version", &self.version),
            ("description", &self.description),
        ];
        for (what, text) in texts {
            if text.len() > MAX_DESCRIBE_BYTES || text.chars().any(char::is_control) {
                return Err(format!(
                    "its {what} ({} bytes) is longer than {MAX_DESCRIBE_BYTES} bytes or holds a control character",
                    text.len()
                ));
            }
        }
        let s = &self.subscription;
        for (what, list) in [
            ("activity-types", &s.activity_types),
            ("detection-types", &s.detection_types),
        ] {
            if list.len() > MAX_SUBSCRIPTION_ENTRIES
                || list
                    .iter()
                    .any(|e| e.len() > MAX_DESCRIBE_BYTES || has_forbidden_id_char(e))
            {
                return Err(format!(
                    "its subscription's {what} has {} entries; at most {MAX_SUBSCRIPTION_ENTRIES}, each one word of at most {MAX_DESCRIBE_BYTES} bytes",
                    list.len()
                ));
            }
        }
        Ok(())
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use riposte_domain::{CallError, Disposition, Receipt};

    fn receipt(disposition: Disposition) -> Receipt {
        Receipt {
            action_id: "a1".into(),
            disposition,
            detail: "the sensor is disconnected".into(),
        }
    }

    #[test]
    fn the_version_is_read_from_the_imports() {
        let v2 = ["wasi:io/poll@0.2.6", "riposte:plugin/types@0.2.0"];
        assert_eq!(wit_version_of(v2), Ok(Some("0.2.0")));
        let v1 = ["riposte:plugin/types@0.1.0", "riposte:plugin/log@0.1.0"];
        assert_eq!(wit_version_of(v1), Ok(Some("0.1.0")));
        assert_eq!(wit_version_of(["wasi:cli/stdout@0.2.6"]), Ok(None));
        assert_eq!(
            wit_version_of(["riposte:plugin/types@0.9.0"]),
            Err("0.9.0".into())
        );
        let mixed = ["riposte:plugin/types@0.1.0", "riposte:plugin/log@0.2.0"];
        assert_eq!(wit_version_of(mixed), Err("0.1.0 and 0.2.0".into()));
    }

    #[test]
    fn a_0_1_receipt_never_calls_an_ended_action_submitted() {
        use v0_1::types::{Disposition as W, Error};
        let ok = |d| v0_1::types::Receipt::from_domain(receipt(d)).map(|r| r.disposition);
        assert!(matches!(ok(Disposition::Succeeded), Ok(W::Submitted)));
        assert!(matches!(ok(Disposition::Approved), Ok(W::AwaitingApproval)));
        assert!(matches!(ok(Disposition::Shadowed), Ok(W::Shadowed)));
        assert!(
            matches!(ok(Disposition::Failed), Err(Error::ServerError(m)) if m.contains("disconnected"))
        );
        assert!(matches!(ok(Disposition::Denied), Err(Error::Denied(_))));
        assert!(matches!(ok(Disposition::Expired), Err(Error::Denied(m)) if m.contains("expired")));
    }

    #[test]
    fn a_0_2_receipt_tells_the_disposition_as_it_is() {
        let r = v0_2::types::Receipt::from_domain(receipt(Disposition::Failed));
        assert!(matches!(r.disposition, v0_2::types::Disposition::Failed));
        assert_eq!(r.detail, "the sensor is disconnected");
    }

    #[test]
    fn new_errors_have_variants_in_0_2_and_the_nearest_word_in_0_1() {
        let scope = CallError::OutOfScope("machine m9 is not in Malop 11.1".into());
        let quota = CallError::QuotaExceeded("20 queries per invocation".into());
        assert!(matches!(
            v0_2::types::Error::from(scope.clone()),
            v0_2::types::Error::OutOfScope(_)
        ));
        assert!(matches!(
            v0_2::types::Error::from(quota.clone()),
            v0_2::types::Error::QuotaExceeded(_)
        ));
        assert!(
            matches!(v0_1::types::Error::from(scope), v0_1::types::Error::Denied(m) if m.starts_with("out of scope"))
        );
        assert!(
            matches!(v0_1::types::Error::from(quota), v0_1::types::Error::BudgetExhausted(m) if m.starts_with("quota exceeded"))
        );
    }
}
