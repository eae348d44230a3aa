//! # riposte-guest: write riposte rules in Rust
//!
//! A riposte *rule* is a WebAssembly component that implements the world `rule` of the WIT package
//! `riposte:plugin@0.2.0` (the `wit/` directory of the riposte repository). The host offers it every
//! new or changed Malop it subscribes to, and the rule asks the host, through typed imports, to isolate
//! machines, remediate items, set reputations, comment, and so on. Every such call goes through the
//! host's policy gate and may be refused with a typed [`Error`].
//!
//! This crate gives rule authors:
//! - the WIT types under friendly names ([`Malop`], [`Machine`], [`Suspect`], [`Target`],
//!   [`ReputationKey`], [`Receipt`], ...; the generated bindings themselves are internal);
//! - helper methods on those types ([`Malop::connected_machines`], [`Malop::has_activity`],
//!   [`Suspect::kill`], [`FileItem::quarantine`], [`ReputationKey::file_hash`], ...);
//! - the host calls, grouped by concern ([`malops`], [`remediation`], [`isolation`], [`reputation`],
//!   [`bookkeeping`], [`kv`], [`config`]) and a logging facade ([`info!`], [`warn!`], ...);
//! - the [`Rule`] trait and the [`export_rule!`] macro that turns a type implementing it into the
//!   component's exports;
//! - builders for the records a rule receives ([`testing::MalopBuilder`], ...), so that a rule's
//!   unit tests name only the fields they are about and keep compiling when the WIT record
//!   grows a field.
//!
//! ## A complete rule
//!
//! ```no_run
//! use riposte_guest::{Error, Info, Malop, Rule, export_rule, info, isolation};
//!
//! struct IsolateRansomware;
//!
//! impl Rule for IsolateRansomware {
//!     fn describe() -> Info {
//!         Info::new("isolate-ransomware", "0.1.0")
//!             .description("Isolates the connected machines of ransomware Malops")
//!             .activity_types(["RANSOMWARE"])
//!     }
//!
//!     fn on_malop(malop: Malop) -> Result<(), Error> {
//!         let guids = malop.guids_of(malop.connected_machines());
//!         if guids.is_empty() {
//!             info!("{}: no connected machine to isolate", malop.id);
//!             return Ok(());
//!         }
//!         isolation::isolate(Some(&malop.id), &guids, "ransomware Malop")?.into_result()?;
//!         Ok(())
//!     }
//! }
//!
//! export_rule!(IsolateRansomware);
//! ```
//!
//! The same rule is `examples/minimal_rule.rs`, which `riposte plugin build` compiles to a
//! component with the example plugins.
//!
//! ## Building
//!
//! A rule is a `cdylib` crate. `riposte plugin build` builds every crate under `plugins/` into
//! `target/plugins/<name>.wasm`, with rustup's `wasm32-wasip2` target when installed and otherwise
//! an offline route (Debian's rustc-web with `-Zbuild-std` for `wasm32-wasip1` plus the preview-1
//! adapter). Use `panic = "abort"` in the release profile.
//!
//! ## Testing decisions natively
//!
//! The bindings compile on the build machine too (the imports then panic if called), so a rule's
//! pure decision functions — "which machines would I isolate for this Malop?" — can be unit-tested
//! with `cargo test` on the host target. Keep host calls in `on_malop` and decisions in plain
//! functions that take a `&Malop`, and build the Malops of those tests with
//! [`testing::MalopBuilder`]:
//!
//! ```
//! use riposte_guest::MalopPart;
//! use riposte_guest::testing::{MachineBuilder, MalopBuilder, SuspectBuilder};
//!
//! let malop = MalopBuilder::new("11.-7780537507363356527")
//!     .activity_types(["RANSOMWARE"])
//!     .machine(MachineBuilder::new("m1", "DESKTOP-1"))
//!     .machine(MachineBuilder::new("m2", "LAPTOP-2").connected(false))
//!     .suspect(SuspectBuilder::new("p1", "locker.exe", "m1"))
//!     .build();
//! assert_eq!(malop.guids_of(malop.connected_machines()), ["m1"]);
//!
//! // A Malop whose investigation could not be read, as the host offers it.
//! let partial = MalopBuilder::new("11.1")
//!     .machine(MachineBuilder::new("m1", "DESKTOP-1"))
//!     .machine(MachineBuilder::new("m2", "LAPTOP-2"))
//!     .suspect(SuspectBuilder::new("p1", "locker.exe", "m1").image_sha1("ab12"))
//!     .unreadable([MalopPart::Suspects])
//!     .build();
//! assert!(partial.lacks(MalopPart::Suspects));
//! assert_eq!(partial.suspects[0].machine_guid, "", "two machines: which one is unknown");
//! assert_eq!(partial.suspects[0].image_sha1, None);
//! ```

#![warn(missing_docs)]

use core::fmt;

/// The bindings `wit-bindgen` generates from `riposte:plugin@0.2.0`, world `rule`. Not part of
/// the SDK's API: public only for the code [`export_rule!`] expands to, and free to change with
/// any release. Every WIT type has a re-export at the crate root and every import a wrapper in
/// the module of its concern ([`isolation`], [`remediation`], ...).
#[doc(hidden)]
#[allow(missing_docs, clippy::all)]
pub mod __internal {
    wit_bindgen::generate!({
        path: "../wit",
        world: "rule",
        pub_export_macro: true,
        export_macro_name: "__export_rule_world",
        default_bindings_module: "riposte_guest::__internal",
        additional_derives: [PartialEq, Eq],
    });
}

use __internal::riposte::plugin as wit;

pub mod testing;

pub use wit::plugin::{Info, Subscription};
pub use wit::remediation::{ActionKind, Progress, Target};
pub use wit::reputation::{KeyKind, ReputationKey, Verdict};
pub use wit::types::{
    Disposition, ElementKind, Error, FileItem, Machine, Malop, MalopPart, ManagementStatus,
    Priority, Receipt, RegistryEntry, RootCause, Suspect, TimestampMs, User,
};

/// Reading Malops from the server: [`malops::list_malops`] for a time window,
/// [`malops::get_malop`] for the full detail of one.
pub mod malops {
    pub use super::wit::malops::{get_malop, list_malops};
}

/// Remediating items of a Malop (`/rest/remediate`): [`remediation::remediate`] and
/// [`remediation::status`]. Build targets with [`Target`]'s constructors or
/// [`Suspect::kill`], [`FileItem::quarantine`], [`Suspect::autorun_key_targets`].
pub mod remediation {
    pub use super::wit::remediation::{ActionKind, Progress, Target, remediate, status};
}

/// Network isolation of machines, by machine element guid: [`isolation::isolate`] and
/// [`isolation::unisolate`]. Offline machines cannot be isolated right now: filter with
/// [`Malop::connected_machines`].
pub mod isolation {
    pub use super::wit::isolation::{isolate, unisolate};
}

/// Custom reputations (`classification/update`): [`reputation::set_reputation`] and
/// [`reputation::remove_reputation`]. `prevent` is only valid for file hashes.
pub mod reputation {
    pub use super::wit::reputation::{
        KeyKind, ReputationKey, Verdict, remove_reputation, set_reputation,
    };
}

/// Malop bookkeeping: [`bookkeeping::set_status`] and [`bookkeeping::add_comment`].
pub mod bookkeeping {
    pub use super::wit::bookkeeping::{add_comment, set_status};
}

/// A small key-value store scoped to this plugin, kept by the host across invocations.
pub mod kv {
    pub use super::wit::kv::{delete, get, set};

    /// Reads `key` as UTF-8 text; `None` when absent or not valid UTF-8.
    pub fn get_string(key: &str) -> Option<String> {
        get(key).and_then(|bytes| String::from_utf8(bytes).ok())
    }

    /// Stores `value` as UTF-8 text under `key`.
    pub fn set_string(key: &str, value: &str) -> Result<(), super::Error> {
        set(key, value.as_bytes())
    }
}

/// The operator's configuration values for this plugin (strings, set in the host's policy file).
pub mod config {
    pub use super::wit::config::{all, get};

    /// The value of `key`, or `default` when the operator did not set it.
    pub fn get_or(key: &str, default: &str) -> String {
        get(key).unwrap_or_else(|| default.to_owned())
    }

    /// A comma-separated list value, split, trimmed, with empty items dropped; empty when unset.
    pub fn list(key: &str) -> Vec<String> {
        get(key).map(|v| split_list(&v)).unwrap_or_default()
    }

    /// A boolean value: `true`, `yes`, `on`, `1` are true and `false`, `no`, `off`, `0` are
    /// false (any case); unset or anything else is `default`.
    pub fn flag(key: &str, default: bool) -> bool {
        match get(key) {
            Some(v) => parse_flag(&v).unwrap_or(default),
            None => default,
        }
    }

    /// Splits a comma-separated list as [`list`] does (pure; usable in native unit tests).
    pub fn split_list(value: &str) -> Vec<String> {
        value
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// Parses a boolean as [`flag`] does; `None` when it is neither true nor false.
    pub fn parse_flag(value: &str) -> Option<bool> {
        match value.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => Some(true),
            "false" | "no" | "off" | "0" => Some(false),
            _ => None,
        }
    }
}

/// Logging into the host's log and the plugin's captured output. Prefer the macros
/// [`trace!`], [`debug!`], [`info!`], [`warn!`] and [`error!`].
pub mod log {
    pub use super::wit::log::Level;

    /// Writes `message` at `level`.
    pub fn log(level: Level, message: &str) {
        super::wit::log::log(level, message)
    }
}

/// Logs a `format!`-style message at `trace` level.
#[macro_export]
macro_rules! trace {
    ($($arg:tt)*) => { $crate::log::log($crate::log::Level::Trace, &::std::format!($($arg)*)) };
}

/// Logs a `format!`-style message at `debug` level.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => { $crate::log::log($crate::log::Level::Debug, &::std::format!($($arg)*)) };
}

/// Logs a `format!`-style message at `info` level.
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::log::log($crate::log::Level::Info, &::std::format!($($arg)*)) };
}

/// Logs a `format!`-style message at `warn` level.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::log::log($crate::log::Level::Warn, &::std::format!($($arg)*)) };
}

/// Logs a `format!`-style message at `error` level.
#[macro_export]
macro_rules! error {
    ($($arg:tt)*) => { $crate::log::log($crate::log::Level::Error, &::std::format!($($arg)*)) };
}

/// A detection-to-remediation rule: what a plugin implements. Export it with [`export_rule!`].
///
/// Each call runs in a fresh instance: keep state across calls in [`kv`], not in statics.
pub trait Rule {
    /// Describes the plugin: name, version, which Malops it wants, and its interval.
    fn describe() -> Info;

    /// Handles one new or changed Malop the plugin is subscribed to. Return an [`Error`] (for
    /// example with `?` on a host call, or [`Error::failed`]) to report a failure to the host.
    fn on_malop(malop: Malop) -> Result<(), Error>;

    /// The periodic hook, called every [`Info::interval_seconds`] seconds; `now` is the host's
    /// time in milliseconds since the Unix epoch. Does nothing by default.
    fn on_interval(now: TimestampMs) -> Result<(), Error> {
        let _ = now;
        Ok(())
    }
}

/// Exports a type implementing [`Rule`] as the component's `describe`, `on-malop` and
/// `on-interval`. Use it once per plugin crate (a `cdylib`):
///
/// ```ignore
/// riposte_guest::export_rule!(MyRule);
/// ```
#[macro_export]
macro_rules! export_rule {
    ($rule:ty) => {
        #[doc(hidden)]
        struct __RiposteRuleExport;

        impl $crate::__internal::Guest for __RiposteRuleExport {
            fn describe() -> $crate::Info {
                <$rule as $crate::Rule>::describe()
            }
            fn on_malop(malop: $crate::Malop) -> ::core::result::Result<(), $crate::Error> {
                <$rule as $crate::Rule>::on_malop(malop)
            }
            fn on_interval(now: i64) -> ::core::result::Result<(), $crate::Error> {
                <$rule as $crate::Rule>::on_interval(now)
            }
        }

        $crate::__internal::__export_rule_world!(__RiposteRuleExport with_types_in $crate::__internal);
    };
}

// ---------------------------------------------------------------------------------------------
// Errors

impl Error {
    /// The plugin's own failure, with a human-readable detail.
    pub fn failed(detail: impl Into<String>) -> Self {
        Error::Failed(detail.into())
    }

    /// Malformed arguments, with a human-readable detail.
    pub fn invalid_argument(detail: impl Into<String>) -> Self {
        Error::InvalidArgument(detail.into())
    }

    /// The kebab-case name of the variant, as in the WIT (`denied`, `budget-exhausted`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Denied(_) => "denied",
            Error::BudgetExhausted(_) => "budget-exhausted",
            Error::ProtectedTarget(_) => "protected-target",
            Error::NotFound(_) => "not-found",
            Error::ServerError(_) => "server-error",
            Error::InvalidArgument(_) => "invalid-argument",
            Error::Failed(_) => "failed",
            Error::OutOfScope(_) => "out-of-scope",
            Error::QuotaExceeded(_) => "quota-exceeded",
        }
    }

    /// The human-readable detail every variant carries.
    pub fn detail(&self) -> &str {
        match self {
            Error::Denied(d)
            | Error::BudgetExhausted(d)
            | Error::ProtectedTarget(d)
            | Error::NotFound(d)
            | Error::ServerError(d)
            | Error::InvalidArgument(d)
            | Error::Failed(d)
            | Error::OutOfScope(d)
            | Error::QuotaExceeded(d) => d,
        }
    }

    /// Whether the host's policy refused the call (denied, budget, protected target, out of
    /// scope, quota): the rule may want to log and carry on with its other actions rather
    /// than fail.
    pub fn is_policy(&self) -> bool {
        matches!(
            self,
            Error::Denied(_)
                | Error::BudgetExhausted(_)
                | Error::ProtectedTarget(_)
                | Error::OutOfScope(_)
                | Error::QuotaExceeded(_)
        )
    }
}

impl From<String> for Error {
    /// A plain message becomes [`Error::Failed`].
    fn from(detail: String) -> Self {
        Error::Failed(detail)
    }
}

impl From<&str> for Error {
    /// A plain message becomes [`Error::Failed`].
    fn from(detail: &str) -> Self {
        Error::Failed(detail.to_owned())
    }
}

// ---------------------------------------------------------------------------------------------
// Describe

impl Subscription {
    /// Matches every Malop (all lists empty).
    pub fn all() -> Self {
        Subscription {
            element_kinds: Vec::new(),
            activity_types: Vec::new(),
            detection_types: Vec::new(),
        }
    }
}

impl Info {
    /// A description with `name` and `version`, subscribed to every Malop, no interval hook.
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> Self {
        Info {
            name: name.into(),
            version: version.into(),
            description: String::new(),
            subscription: Subscription::all(),
            interval_seconds: None,
        }
    }

    /// Sets the one-line description.
    pub fn description(mut self, text: impl Into<String>) -> Self {
        self.description = text.into();
        self
    }

    /// Subscribes to Malops with any of these activity types (e.g. `RANSOMWARE`).
    pub fn activity_types<I, S>(mut self, types: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.subscription.activity_types = types.into_iter().map(Into::into).collect();
        self
    }

    /// Subscribes to Malops with any of these detection types (e.g. `KNOWN_MALWARE`).
    pub fn detection_types<I, S>(mut self, types: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.subscription.detection_types = types.into_iter().map(Into::into).collect();
        self
    }

    /// Subscribes to Malops of these element kinds only.
    pub fn element_kinds(mut self, kinds: impl IntoIterator<Item = ElementKind>) -> Self {
        self.subscription.element_kinds = kinds.into_iter().collect();
        self
    }

    /// Asks for `on_interval` every `seconds` seconds.
    pub fn interval_seconds(mut self, seconds: u32) -> Self {
        self.interval_seconds = Some(seconds);
        self
    }
}

// ---------------------------------------------------------------------------------------------
// The Malop and its parts

impl Malop {
    /// Whether the Malop has activity type `activity` (case-insensitive), e.g. `RANSOMWARE`.
    pub fn has_activity(&self, activity: &str) -> bool {
        self.activity_types
            .iter()
            .any(|a| a.eq_ignore_ascii_case(activity))
    }

    /// Whether the detection type is `detection` (case-insensitive), e.g. `KNOWN_MALWARE`.
    pub fn is_detection(&self, detection: &str) -> bool {
        self.detection_type.eq_ignore_ascii_case(detection)
    }

    /// Whether this is a ransomware Malop: activity type `RANSOMWARE`, or a detection or
    /// activity type that names ransomware (e.g. `RANSOMWARE_DETECTION`).
    pub fn is_ransomware(&self) -> bool {
        let names = |s: &String| s.to_ascii_uppercase().contains("RANSOMWARE");
        self.activity_types.iter().any(names) || names(&self.detection_type)
    }

    /// Whether an analyst already closed the Malop or marked it a false positive.
    pub fn is_closed(&self) -> bool {
        matches!(
            self.management_status,
            ManagementStatus::Closed | ManagementStatus::FalsePositive
        )
    }

    /// The affected machines whose sensor is connected now.
    pub fn connected_machines(&self) -> Vec<&Machine> {
        self.machines.iter().filter(|m| m.connected).collect()
    }

    /// The affected machines whose sensor is not connected now.
    pub fn offline_machines(&self) -> Vec<&Machine> {
        self.machines.iter().filter(|m| !m.connected).collect()
    }

    /// The affected machine with element guid `guid`.
    pub fn machine(&self, guid: &str) -> Option<&Machine> {
        self.machines.iter().find(|m| m.guid == guid)
    }

    /// The suspect processes on machine `machine_guid`.
    pub fn suspects_on(&self, machine_guid: &str) -> Vec<&Suspect> {
        self.suspects
            .iter()
            .filter(|s| s.machine_guid == machine_guid)
            .collect()
    }

    /// Whether the machine a suspect or file lives on is connected (`false` when the machine is
    /// not among the Malop's machines).
    pub fn is_connected(&self, machine_guid: &str) -> bool {
        self.machine(machine_guid).is_some_and(|m| m.connected)
    }

    /// The machine guids of `machines`, as the isolation calls take them.
    pub fn guids_of<'a>(&self, machines: impl IntoIterator<Item = &'a Machine>) -> Vec<String> {
        machines.into_iter().map(|m| m.guid.clone()).collect()
    }

    /// Whether every part of the Malop could be read (see [`MalopPart`]).
    pub fn is_complete(&self) -> bool {
        self.unreadable.is_empty()
    }

    /// Whether `part` could not be read this time: its fields hold only what crimes/unified
    /// gave. The host offers the Malop again once the part can be read.
    pub fn lacks(&self, part: MalopPart) -> bool {
        self.unreadable.contains(&part)
    }

    /// Every file hash of the root causes, lower-cased, without duplicates, in order.
    pub fn root_cause_hashes(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for hash in self.root_causes.iter().flat_map(|rc| rc.hashes.iter()) {
            let hash = hash.trim().to_ascii_lowercase();
            if !hash.is_empty() && !out.contains(&hash) {
                out.push(hash);
            }
        }
        out
    }
}

impl Machine {
    /// Whether the machine is connected and not yet isolated: isolating it would change something.
    pub fn can_be_isolated(&self) -> bool {
        self.connected && !self.isolated
    }
}

impl Suspect {
    /// The remediation target that kills this process on its machine.
    pub fn kill(&self) -> Target {
        Target::kill_process(&self.machine_guid, &self.guid)
    }

    /// The remediation targets that delete this process's autorun registry entries.
    pub fn autorun_key_targets(&self) -> Vec<Target> {
        self.autorun_keys
            .iter()
            .map(|key| Target::delete_registry_key(&self.machine_guid, &key.guid))
            .collect()
    }
}

impl FileItem {
    /// The remediation target that quarantines this file on its machine.
    pub fn quarantine(&self) -> Target {
        Target::quarantine_file(&self.machine_guid, &self.guid)
    }

    /// The remediation target that blocks this file on its machine.
    pub fn block(&self) -> Target {
        Target::new(ActionKind::BlockFile, &self.machine_guid, &self.guid)
    }

    /// The file's hashes (sha1 first, then md5), lower-cased.
    pub fn hashes(&self) -> Vec<String> {
        [&self.sha1, &self.md5]
            .into_iter()
            .flatten()
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect()
    }
}

impl Target {
    /// A target of `kind` for element `target_guid` on machine `machine_guid`.
    pub fn new(kind: ActionKind, machine_guid: &str, target_guid: &str) -> Self {
        Target {
            machine_guid: machine_guid.to_owned(),
            target_guid: target_guid.to_owned(),
            kind,
        }
    }

    /// `KILL_PROCESS` of process `process_guid` on `machine_guid`.
    pub fn kill_process(machine_guid: &str, process_guid: &str) -> Self {
        Self::new(ActionKind::KillProcess, machine_guid, process_guid)
    }

    /// `QUARANTINE_FILE` of file `file_guid` on `machine_guid`.
    pub fn quarantine_file(machine_guid: &str, file_guid: &str) -> Self {
        Self::new(ActionKind::QuarantineFile, machine_guid, file_guid)
    }

    /// `DELETE_REGISTRY_KEY` of registry entry `entry_guid` on `machine_guid`.
    pub fn delete_registry_key(machine_guid: &str, entry_guid: &str) -> Self {
        Self::new(ActionKind::DeleteRegistryKey, machine_guid, entry_guid)
    }
}

impl ActionKind {
    /// The server's `actionType` spelling, e.g. `KILL_PROCESS`.
    pub fn as_api(self) -> &'static str {
        match self {
            ActionKind::KillProcess => "KILL_PROCESS",
            ActionKind::QuarantineFile => "QUARANTINE_FILE",
            ActionKind::UnquarantineFile => "UNQUARANTINE_FILE",
            ActionKind::DeleteRegistryKey => "DELETE_REGISTRY_KEY",
            ActionKind::BlockFile => "BLOCK_FILE",
            ActionKind::KillPreventUnsuspend => "KILL_PREVENT_UNSUSPEND",
            ActionKind::UnsuspendProcess => "UNSUSPEND_PROCESS",
        }
    }
}

impl ReputationKey {
    /// A file hash key (md5 or sha1); the value is lower-cased and trimmed.
    pub fn file_hash(value: &str) -> Self {
        Self::new(KeyKind::FileHash, value.trim().to_ascii_lowercase())
    }

    /// An IP address key.
    pub fn ip(value: &str) -> Self {
        Self::new(KeyKind::IpAddress, value.trim().to_owned())
    }

    /// A domain name key; the value is lower-cased and trimmed, without a trailing dot.
    pub fn domain(value: &str) -> Self {
        Self::new(
            KeyKind::Domain,
            value.trim().trim_end_matches('.').to_ascii_lowercase(),
        )
    }

    /// A key of `kind` with `value` exactly as given.
    pub fn new(kind: KeyKind, value: impl Into<String>) -> Self {
        ReputationKey {
            kind,
            value: value.into(),
        }
    }
}

impl fmt::Display for ReputationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            KeyKind::FileHash => "file-hash",
            KeyKind::IpAddress => "ip",
            KeyKind::Domain => "domain",
        };
        write!(f, "{kind}:{}", self.value)
    }
}

impl fmt::Display for Disposition {
    /// The disposition's name as in the WIT (`submitted`, `succeeded`, `failed`, ...).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Disposition::Submitted => "submitted",
            Disposition::Succeeded => "succeeded",
            Disposition::Failed => "failed",
            Disposition::Queued => "queued",
            Disposition::OutcomeUnknown => "outcome-unknown",
            Disposition::TimedOut => "timed-out",
            Disposition::Shadowed => "shadowed",
            Disposition::AwaitingApproval => "awaiting-approval",
            Disposition::Approved => "approved",
            Disposition::Denied => "denied",
            Disposition::Expired => "expired",
            Disposition::Undone => "undone",
        })
    }
}

impl fmt::Display for MalopPart {
    /// The part's name as in the WIT (`suspects`, `files`, `network`, `sensors`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MalopPart::Suspects => "suspects",
            MalopPart::Files => "files",
            MalopPart::Network => "network",
            MalopPart::Sensors => "sensors",
        })
    }
}

impl Receipt {
    /// Whether the action ended without effect: it failed, or an operator denied it, or its
    /// approval expired. [`Receipt::detail`](Receipt) says why.
    pub fn ended_without_effect(&self) -> bool {
        matches!(
            self.disposition,
            Disposition::Failed | Disposition::Denied | Disposition::Expired
        )
    }

    /// This receipt as a result: `Err` ([`Error::ServerError`] for a failure,
    /// [`Error::Denied`] for an operator's refusal) when the action ended without effect, so
    /// a rule can write `isolate(...)?.into_result()?`.
    pub fn into_result(self) -> Result<Receipt, Error> {
        let why = |what: &str| format!("action {} {what}: {}", self.action_id, self.detail);
        match self.disposition {
            Disposition::Failed => Err(Error::ServerError(why("failed"))),
            Disposition::Denied => Err(Error::Denied(why("was denied by an operator"))),
            Disposition::Expired => Err(Error::Denied(why("expired before approval"))),
            _ => Ok(self),
        }
    }
}

impl fmt::Display for Receipt {
    /// `<action-id> (<disposition>)`, with the detail when there is one.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.action_id, self.disposition)?;
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        Ok(())
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} on {}",
            self.kind.as_api(),
            self.target_guid,
            self.machine_guid
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use testing::{MachineBuilder, MalopBuilder, receipt};

    fn malop() -> MalopBuilder {
        MalopBuilder::new("11.-7780537507363356527")
            .activity_types(["Ransomware"])
            .root_cause("evil.exe", "File", ["ABC", "abc", "def"])
            .machine(MachineBuilder::new("1.1", "host-1.1"))
            .machine(MachineBuilder::new("2.2", "host-2.2").connected(false))
    }

    #[test]
    fn malop_helpers() {
        let m = malop().build();
        assert!(m.has_activity("RANSOMWARE"));
        assert!(m.is_ransomware());
        assert_eq!(m.connected_machines().len(), 1);
        assert_eq!(m.offline_machines()[0].guid, "2.2");
        assert_eq!(m.root_cause_hashes(), vec!["abc", "def"]);
        assert!(m.is_complete());
        let partial = malop().unreadable([MalopPart::Suspects]).build();
        assert!(!partial.is_complete());
        assert!(partial.lacks(MalopPart::Suspects) && !partial.lacks(MalopPart::Sensors));
    }

    #[test]
    fn receipts_that_ended_without_effect_become_errors() {
        use Disposition as D;
        let receipt = |disposition| receipt("a1", disposition, "sensor disconnected");
        for kept in [
            D::Submitted,
            D::Succeeded,
            D::Queued,
            D::OutcomeUnknown,
            D::TimedOut,
            D::Shadowed,
            D::AwaitingApproval,
            D::Approved,
            D::Undone,
        ] {
            assert!(!receipt(kept).ended_without_effect(), "{kept}");
            assert_eq!(receipt(kept).into_result(), Ok(receipt(kept)));
        }
        let denied = receipt(D::Denied).into_result().unwrap_err();
        assert_eq!(
            denied,
            Error::Denied("action a1 was denied by an operator: sensor disconnected".into())
        );
        let failed = receipt(Disposition::Failed).into_result().unwrap_err();
        assert_eq!(failed.kind(), "server-error");
        assert!(failed.detail().contains("sensor disconnected"));
        assert_eq!(
            receipt(Disposition::Expired)
                .into_result()
                .unwrap_err()
                .kind(),
            "denied"
        );
        assert_eq!(
            receipt(Disposition::Failed).to_string(),
            "a1 (failed): sensor disconnected"
        );
    }

    #[test]
    fn config_parsing() {
        assert_eq!(config::split_list(" a, ,b ,"), vec!["a", "b"]);
        assert_eq!(config::parse_flag("Yes"), Some(true));
        assert_eq!(config::parse_flag("maybe"), None);
    }
}
