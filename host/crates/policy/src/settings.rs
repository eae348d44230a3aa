//! The policy's sections of the operator configuration, owned here with their defaults and
//! checks: `[protected]`, `[[global_budgets]]`, `[approvals]`, and the policy keys of each
//! `[[plugins]]` entry (`mode`, `promote`, `[plugins.grants]`, `[[plugins.budgets]]`,
//! `cooldown_secs`, `min_interval_secs`, `[plugins.quotas]`).
//!
//! A section is read in two steps: serde reads its file shape (the `Raw*` types, names as
//! strings), then `from_section` turns names into types and reports every mistake as a
//! [`Findings`] keyed relative to the section, so the loader can name the file, line and key.

use riposte_domain::settings::{Findings, unknown_name};
use riposte_domain::{ActionKind, MachineGuid, Operation};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// Default lifetime of a pending approval: one day.
pub(crate) const DEFAULT_APPROVAL_EXPIRY_SECS: u64 = 86_400;
/// Default shortest time between two `on-interval` calls of a plugin: whatever interval the
/// plugin asks for, it is not called more often.
pub const DEFAULT_MIN_INTERVAL_SECS: u64 = 60;
/// The largest quota the operator may set.
const MAX_QUOTA: u32 = 100_000;

/// The operator's policy for all plugins: `[protected]`, `[[global_budgets]]`, `[approvals]`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct PolicyConfig {
    /// Assets no destructive action may touch.
    pub protected: ProtectedAssets,
    /// Budgets shared by all plugins.
    pub global_budgets: Vec<Budget>,
    /// Action kinds that wait for an operator.
    pub approvals: Approvals,
}

/// `[protected]`: assets no destructive action may touch, whatever a plugin is granted.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
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

impl ProtectedAssets {
    /// Every glob that does not compile and every empty entry.
    pub fn check(&self) -> Findings {
        let mut findings = Findings::new();
        for (field, globs) in [
            ("machine_name_globs", &self.machine_name_globs),
            ("reputation_globs", &self.reputation_globs),
        ] {
            for (i, pattern) in globs.iter().enumerate() {
                if let Some(message) = glob_problem(pattern) {
                    findings.at(format!("{field}[{i}]"), message);
                }
            }
        }
        let guids = self.machine_guids.iter().map(|g| g.as_str());
        for (field, values) in [
            ("machine_guids", guids.collect::<Vec<_>>()),
            ("groups", self.groups.iter().map(String::as_str).collect()),
        ] {
            for (i, value) in values.iter().enumerate() {
                if value.trim().is_empty() {
                    findings.at(format!("{field}[{i}]"), "must not be empty");
                }
            }
        }
        findings
    }
}

fn glob_problem(pattern: &str) -> Option<String> {
    if pattern.trim().is_empty() {
        return Some("a glob must not be empty".into());
    }
    globset::GlobBuilder::new(pattern)
        .case_insensitive(true)
        .build()
        .err()
        .map(|err| format!("bad glob `{pattern}`: {}", err.kind()))
}

/// `[approvals]`: action kinds that wait for an operator's approve/deny, and how many
/// distinct people must approve.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Approvals {
    /// The action kinds (`required`, default none).
    pub required: BTreeSet<ActionKind>,
    /// Seconds after which a pending approval expires as denied (`expiry_secs`, default 86400).
    pub expiry_secs: u64,
    /// Distinct approvers an action of a kind needs (`quorum`, a table of kind = count;
    /// default 1 for every kind of `required`).
    pub quorum: BTreeMap<ActionKind, u32>,
    /// Actions whose blast radius makes them wait whatever their kind (`[approvals.large]`).
    pub large: Option<LargeActions>,
}

/// `[approvals.large]`: a destructive action that reaches more than `machines` machines at
/// once waits for `quorum` distinct approvers, whatever its kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LargeActions {
    /// The largest number of machines an action may reach without this rule (`machines`).
    pub machines: u32,
    /// Distinct approvers such an action needs (`quorum`, default 2).
    #[serde(default = "default_large_quorum")]
    pub quorum: u32,
}

fn default_large_quorum() -> u32 {
    2
}

/// The most approvers a quorum may ask for.
pub const MAX_QUORUM: u32 = 10;

impl Default for Approvals {
    fn default() -> Self {
        Self {
            required: BTreeSet::new(),
            expiry_secs: DEFAULT_APPROVAL_EXPIRY_SECS,
            quorum: BTreeMap::new(),
            large: None,
        }
    }
}

impl Approvals {
    /// The approvers an action of `kind` needs (1 unless `quorum` says more).
    pub fn quorum_of(&self, kind: ActionKind) -> u32 {
        self.quorum.get(&kind).copied().unwrap_or(1)
    }
}

/// `[approvals]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawApprovals {
    required: Vec<String>,
    expiry_secs: u64,
    quorum: BTreeMap<String, u32>,
    large: Option<LargeActions>,
}

impl Default for RawApprovals {
    fn default() -> Self {
        Self {
            required: Vec::new(),
            expiry_secs: DEFAULT_APPROVAL_EXPIRY_SECS,
            quorum: BTreeMap::new(),
            large: None,
        }
    }
}

impl Approvals {
    /// Reads `[approvals]`.
    pub fn from_section(raw: RawApprovals) -> (Self, Findings) {
        let mut findings = Findings::new();
        let required = kinds(&mut findings, "required", &raw.required);
        if raw.expiry_secs == 0 {
            findings.at("expiry_secs", "must be at least 1 second");
        }
        let mut quorum = BTreeMap::new();
        for (name, count) in raw.quorum {
            let key = format!("quorum.{name}");
            let Some(kind) = kind_named(&mut findings, &key, &name) else {
                continue;
            };
            if let Some(message) = quorum_problem(count) {
                findings.at(&key, message);
            } else if !required.contains(&kind) {
                findings.at(
                    &key,
                    format!(
                        "`{kind}` has a quorum but does not wait for approval: add it to `required`"
                    ),
                );
            } else {
                quorum.insert(kind, count);
            }
        }
        if let Some(large) = &raw.large {
            if large.machines == 0 {
                findings.at(
                    "large.machines",
                    "must be at least 1 (an action on more machines waits)",
                );
            }
            if let Some(message) = quorum_problem(large.quorum) {
                findings.at("large.quorum", message);
            }
        }
        let approvals = Self {
            required,
            expiry_secs: raw.expiry_secs,
            quorum,
            large: raw.large,
        };
        (approvals, findings)
    }
}

fn quorum_problem(count: u32) -> Option<String> {
    (count == 0 || count > MAX_QUORUM)
        .then(|| format!("a quorum is 1 to {MAX_QUORUM} distinct approvers, not {count}"))
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

/// One budget (`[[global_budgets]]`, `[[plugins.budgets]]`) as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBudget {
    action: String,
    max: u64,
    window_secs: u64,
}

impl Budget {
    /// Reads one budget; `None` when its action is not a known selector.
    pub fn from_section(raw: RawBudget) -> (Option<Self>, Findings) {
        let mut findings = Findings::new();
        let action = ActionSelector::from_name(&raw.action);
        if action.is_none() {
            let message = legacy_kind_message(&raw.action).unwrap_or_else(|| {
                let mut expected = vec!["any", "remediate"];
                expected.extend(ActionKind::ALL.iter().map(|k| k.name()));
                unknown_name("budget action", &raw.action, &expected)
            });
            findings.at("action", message);
        }
        if raw.window_secs == 0 {
            findings.at("window_secs", "must be at least 1 second");
        }
        let budget = action.map(|action| Self {
            action,
            max: raw.max,
            window_secs: raw.window_secs,
        });
        (budget, findings)
    }

    /// Reads a list of budgets, keeping those that are well formed.
    pub fn from_sections(raw: Vec<RawBudget>, findings: &mut Findings) -> Vec<Self> {
        raw.into_iter()
            .enumerate()
            .filter_map(|(i, raw)| {
                let (budget, inner) = Self::from_section(raw);
                findings.nest(&format!("[{i}]"), inner);
                budget
            })
            .collect()
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
    pub remediation: BTreeSet<riposte_domain::RemediationKind>,
    /// Whether it may whitelist through `set-reputation` (`whitelist`, default false):
    /// whitelisting blinds the EDR to its keys, so it is granted on its own.
    pub whitelist: bool,
    /// Action kinds it may use beyond the Malop it handles, and from `on-interval`
    /// (`wider_scope`, default none; see G11). Protection, budgets and approvals still apply.
    pub wider_scope: BTreeSet<ActionKind>,
}

/// `[plugins.grants]` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RawGrants {
    operations: Vec<String>,
    remediation: Vec<String>,
    whitelist: bool,
    wider_scope: Vec<String>,
}

impl Grants {
    /// Grants from operation and remediation kind names as the configuration spells them;
    /// the error names the first unknown one.
    pub fn from_names(operations: &[String], remediation: &[String]) -> Result<Self, String> {
        let raw = RawGrants {
            operations: operations.to_vec(),
            remediation: remediation.to_vec(),
            ..RawGrants::default()
        };
        let (grants, findings) = Self::from_section(raw);
        match findings.into_iter().next() {
            Some(first) => Err(first.message),
            None => Ok(grants),
        }
    }

    /// Reads `[plugins.grants]`: known names only, and grants that make sense together.
    pub fn from_section(raw: RawGrants) -> (Self, Findings) {
        let mut findings = Findings::new();
        let mut grants = Grants::default();
        let operation_names: Vec<&str> = Operation::ALL.iter().map(|o| o.name()).collect();
        for (i, name) in raw.operations.iter().enumerate() {
            match Operation::ALL.iter().find(|op| op.name() == name) {
                Some(op) => {
                    grants.operations.insert(*op);
                }
                None => findings.at(
                    format!("operations[{i}]"),
                    unknown_name("operation", name, &operation_names),
                ),
            }
        }
        let remediation_names = remediation_names();
        for (i, name) in raw.remediation.iter().enumerate() {
            match ActionKind::from_name(name).and_then(ActionKind::remediation) {
                Some(kind) => {
                    grants.remediation.insert(kind);
                }
                None => findings.at(
                    format!("remediation[{i}]"),
                    unknown_name("remediation action kind", name, &remediation_names),
                ),
            }
        }
        let remediate = grants.allows_operation(Operation::Remediate);
        if remediate && raw.remediation.is_empty() {
            findings.at(
                "operations",
                format!(
                    "`remediate` is granted but no remediation action kind is: list the kinds in grants.remediation (one of {})",
                    remediation_names.join(", ")
                ),
            );
        }
        if !remediate && !raw.remediation.is_empty() {
            findings.at(
                "remediation",
                "remediation kinds are listed but `remediate` is not in grants.operations",
            );
        }
        grants.whitelist = raw.whitelist;
        if grants.whitelist && !grants.allows_operation(Operation::SetReputation) {
            findings.at(
                "whitelist",
                "whitelisting is granted but `set-reputation` is not in grants.operations",
            );
        }
        for (i, name) in raw.wider_scope.iter().enumerate() {
            let key = format!("wider_scope[{i}]");
            match kind_named(&mut findings, &key, name) {
                Some(kind) if grants.allows_kind(kind) => {
                    grants.wider_scope.insert(kind);
                }
                Some(kind) => findings.at(
                    key,
                    format!("`{kind}` is given a wider scope but is not granted in grants"),
                ),
                None => {}
            }
        }
        (grants, findings)
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

impl Quotas {
    /// Every quota set above the largest allowed.
    pub fn check(&self) -> Findings {
        let mut findings = Findings::new();
        for (field, value) in [
            ("queries_per_invocation", self.queries_per_invocation),
            ("queries_per_minute", self.queries_per_minute),
            ("kv_writes_per_invocation", self.kv_writes_per_invocation),
            ("kv_writes_per_minute", self.kv_writes_per_minute),
            ("calls_per_invocation", self.calls_per_invocation),
        ] {
            if value > MAX_QUOTA {
                findings.at(
                    field,
                    format!(
                        "{value} is too large; the maximum is {MAX_QUOTA} (0 forbids the calls)"
                    ),
                );
            }
        }
        findings
    }
}

/// The policy of one plugin: the policy keys of its `[[plugins]]` entry.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PluginRules {
    /// `enforce` or `shadow` (`mode`, default `shadow`).
    pub mode: Mode,
    /// In shadow mode, the action kinds promoted to enforcement (`promote`).
    pub promote: BTreeSet<ActionKind>,
    /// What the plugin may call (`[plugins.grants]`).
    pub grants: Grants,
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
}

impl Default for PluginRules {
    /// No grants, shadow mode, no budgets, default quotas.
    fn default() -> Self {
        Self {
            mode: Mode::Shadow,
            promote: BTreeSet::new(),
            grants: Grants::default(),
            budgets: Vec::new(),
            cooldown_secs: 0,
            min_interval_secs: DEFAULT_MIN_INTERVAL_SECS,
            quotas: Quotas::default(),
        }
    }
}

/// The policy keys of a `[[plugins]]` entry as written.
#[derive(Default)]
pub struct RawPluginRules {
    /// `mode`.
    pub mode: Option<String>,
    /// `promote`.
    pub promote: Vec<String>,
    /// `[plugins.grants]`.
    pub grants: RawGrants,
    /// `[[plugins.budgets]]`.
    pub budgets: Vec<RawBudget>,
    /// `cooldown_secs`.
    pub cooldown_secs: u64,
    /// `min_interval_secs` (`None`: the default).
    pub min_interval_secs: Option<u64>,
    /// `[plugins.quotas]`.
    pub quotas: Quotas,
}

impl PluginRules {
    /// Reads a plugin's policy keys; `None` when any of them is wrong (a plugin is never
    /// loaded with a policy other than the one written).
    pub fn from_section(raw: RawPluginRules) -> (Option<Self>, Findings) {
        let mut findings = Findings::new();
        let mode = match raw.mode.as_deref() {
            None | Some("shadow") => Mode::Shadow,
            Some("enforce") => Mode::Enforce,
            Some(other) => {
                findings.at("mode", unknown_name("mode", other, &["enforce", "shadow"]));
                Mode::Shadow
            }
        };
        let (grants, inner) = Grants::from_section(raw.grants);
        findings.nest("grants", inner);
        let mut promote = BTreeSet::new();
        for (i, name) in raw.promote.iter().enumerate() {
            let key = format!("promote[{i}]");
            let Some(kind) = kind_named(&mut findings, &key, name) else {
                continue;
            };
            if mode == Mode::Enforce {
                findings.at(
                    key,
                    format!("`{kind}` is promoted but the plugin is in enforce mode already; promote applies to shadow mode"),
                );
            } else if !grants.allows_kind(kind) {
                findings.at(
                    key,
                    format!("`{kind}` is promoted but not granted in grants"),
                );
            }
            promote.insert(kind);
        }
        findings.nest("quotas", raw.quotas.check());
        let min_interval_secs = raw.min_interval_secs.unwrap_or(DEFAULT_MIN_INTERVAL_SECS);
        if min_interval_secs == 0 {
            findings.at("min_interval_secs", "must be at least 1 second");
        }
        let mut budget_findings = Findings::new();
        let budgets = Budget::from_sections(raw.budgets, &mut budget_findings);
        findings.nest("budgets", budget_findings);
        let rules = findings.is_empty().then_some(Self {
            mode,
            promote,
            grants,
            budgets,
            cooldown_secs: raw.cooldown_secs,
            min_interval_secs,
            quotas: raw.quotas,
        });
        (rules, findings)
    }

    /// Whether actions of `kind` are carried out (enforce mode, or promoted in shadow mode).
    pub fn enforces(&self, kind: ActionKind) -> bool {
        match self.mode {
            Mode::Enforce => true,
            Mode::Shadow => self.promote.contains(&kind),
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
}

/// Action kinds by name, each unknown one reported at `field[i]`.
fn kinds(findings: &mut Findings, field: &str, names: &[String]) -> BTreeSet<ActionKind> {
    names
        .iter()
        .enumerate()
        .filter_map(|(i, name)| kind_named(findings, &format!("{field}[{i}]"), name))
        .collect()
}

fn kind_named(findings: &mut Findings, key: &str, name: &str) -> Option<ActionKind> {
    let kind = ActionKind::from_name(name);
    if kind.is_none() {
        let message = legacy_kind_message(name).unwrap_or_else(|| {
            let expected: Vec<&str> = ActionKind::ALL.iter().map(|k| k.name()).collect();
            unknown_name("action kind", name, &expected)
        });
        findings.at(key, message);
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

fn remediation_names() -> Vec<&'static str> {
    ActionKind::ALL
        .iter()
        .filter(|k| k.remediation().is_some())
        .map(|k| k.name())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn rules_report_each_mistake_at_its_key() {
        let raw = RawPluginRules {
            mode: Some("enforc".into()),
            promote: vec!["isolate".into()],
            grants: RawGrants {
                operations: vec!["isolat".into(), "remediate".into()],
                ..RawGrants::default()
            },
            ..RawPluginRules::default()
        };
        let (rules, findings) = PluginRules::from_section(raw);
        assert!(rules.is_none());
        let keys: Vec<String> = findings.into_iter().map(|f| f.key).collect();
        assert_eq!(
            keys,
            [
                "mode",
                "grants.operations[0]",
                "grants.operations",
                "promote[0]"
            ]
        );
    }
}
