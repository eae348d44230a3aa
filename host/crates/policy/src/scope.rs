//! Target confinement (G11): during `on-malop(M)` an action may only target what M names, and
//! its `malop-id` must be M; from `on-interval` (no Malop) actions are refused; an operator may
//! grant a plugin a wider scope per action kind (`grants.wider_scope`). Confinement holds
//! whether or not protected-asset rules exist.
//!
//! What a Malop names ([`MalopScope::of`]):
//! - machines: its affected machines, and the machines of its suspects and files;
//! - processes (kill, kill-prevent-unsuspend, unsuspend): its suspects, each on its machine;
//! - files (quarantine, unquarantine, block): its files to remediate, each on its machine;
//! - registry entries (delete-registry-key): the autorun entries of its suspects, on the
//!   suspect's machine;
//! - reputation keys: its root-cause hashes, its suspects' image hashes, its files' hashes,
//!   its IPs and domains (compared normalised: lowercase hashes and domains, canonical IPs);
//! - itself, for `set-status` and `add-comment`.
//!
//! Besides, a plugin may never whitelist, or remove the reputation of, its own Malop's
//! malicious values (its root-cause hashes, its suspects' image hashes and its files'
//! hashes), wider scope or not: that would blind the EDR to the very thing it is handling
//! ([`guard_whitelist`]).

use super::{DenyReason, ProtectionRule, TargetKey, normalise_key};
use riposte_domain::bounds::{EXCERPT_BYTES, excerpt};
use riposte_domain::{
    ActionKind, ActionRequest, ElementGuid, KeyKind, MachineGuid, Malop, MalopId, ReputationKey,
    Verdict,
};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// Where a call comes from, for confinement.
#[derive(Clone, Copy, Debug)]
pub enum Scope<'a> {
    /// `on-malop(M)`: only what M names.
    Malop(&'a MalopScope),
    /// `on-interval`: no Malop, so nothing, unless the plugin has a wider scope for the kind.
    Interval,
    /// An operator's command (an approved action executed, an undo): the action was confined
    /// when the plugin asked for it, and the operator chose to carry it out.
    Operator,
}

/// What one Malop names, precomputed once per invocation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MalopScope {
    id: MalopId,
    machines: BTreeSet<MachineGuid>,
    processes: BTreeMap<ElementGuid, Option<MachineGuid>>,
    files: BTreeMap<ElementGuid, Option<MachineGuid>>,
    autoruns: BTreeMap<ElementGuid, Option<MachineGuid>>,
    keys: BTreeSet<ReputationKey>,
    malicious: BTreeSet<ReputationKey>,
}

fn machine_of(guid: &MachineGuid) -> Option<MachineGuid> {
    (!guid.as_str().trim().is_empty()).then(|| guid.clone())
}

fn hash_key(value: &str) -> Option<ReputationKey> {
    normalise_key(&ReputationKey {
        kind: KeyKind::FileHash,
        value: value.to_owned(),
    })
    .ok()
}

impl MalopScope {
    /// What `malop` names.
    pub fn of(malop: &Malop) -> Self {
        let mut scope = Self {
            id: malop.id.clone(),
            machines: BTreeSet::new(),
            processes: BTreeMap::new(),
            files: BTreeMap::new(),
            autoruns: BTreeMap::new(),
            keys: BTreeSet::new(),
            malicious: BTreeSet::new(),
        };
        scope
            .machines
            .extend(malop.machines.iter().map(|m| m.guid.clone()));
        for s in &malop.suspects {
            let machine = machine_of(&s.machine_guid);
            scope.machines.extend(machine.clone());
            scope.processes.insert(s.guid.clone(), machine.clone());
            for key in &s.autorun_keys {
                scope.autoruns.insert(key.guid.clone(), machine.clone());
            }
            if let Some(hash) = s.image_sha1.as_deref().and_then(hash_key) {
                scope.malicious.insert(hash.clone());
                scope.keys.insert(hash);
            }
        }
        for f in &malop.files {
            let machine = machine_of(&f.machine_guid);
            scope.machines.extend(machine.clone());
            scope.files.insert(f.guid.clone(), machine);
            for hash in [&f.md5, &f.sha1].into_iter().flatten() {
                if let Some(key) = hash_key(hash) {
                    scope.malicious.insert(key.clone());
                    scope.keys.insert(key);
                }
            }
        }
        for hash in malop.root_causes.iter().flat_map(|r| &r.hashes) {
            if let Some(key) = hash_key(hash) {
                scope.malicious.insert(key.clone());
                scope.keys.insert(key);
            }
        }
        let network = [
            (KeyKind::IpAddress, &malop.ip_addresses),
            (KeyKind::Domain, &malop.domains),
        ];
        for (kind, values) in network {
            for value in values {
                let key = ReputationKey {
                    kind,
                    value: value.clone(),
                };
                scope.keys.extend(normalise_key(&key).ok());
            }
        }
        scope
    }

    /// The Malop's id.
    pub fn malop_id(&self) -> &MalopId {
        &self.id
    }

    /// Whether the Malop names machine `guid`.
    pub(crate) fn names_machine(&self, guid: &MachineGuid) -> bool {
        self.machines.contains(guid)
    }
}

/// Why a target is out of scope.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "rule", rename_all = "kebab-case")]
pub enum OutOfScope {
    /// The action's `malop-id` is not the Malop being handled.
    ForeignMalop {
        /// The Malop being handled.
        handling: MalopId,
        /// What the plugin passed (an excerpt), or none.
        given: Option<String>,
    },
    /// The Malop being handled does not name the target.
    NotNamed {
        /// The Malop being handled.
        handling: MalopId,
    },
    /// The Malop names the element, but on another machine.
    OtherMachine {
        /// The Malop being handled.
        handling: MalopId,
        /// The machine the Malop puts the element on.
        named_on: MachineGuid,
    },
    /// `on-interval` handles no Malop.
    NoMalop,
}

impl fmt::Display for OutOfScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ForeignMalop {
                handling,
                given: Some(given),
            } => write!(
                f,
                "the action names Malop `{given}`, but the plugin is handling Malop {handling}"
            ),
            Self::ForeignMalop {
                handling,
                given: None,
            } => write!(
                f,
                "the action names no Malop, but the plugin is handling Malop {handling}: pass its id"
            ),
            Self::NotNamed { handling } => write!(f, "Malop {handling} does not name it"),
            Self::OtherMachine { handling, named_on } => {
                write!(f, "Malop {handling} names it on machine {named_on} only")
            }
            Self::NoMalop => f.write_str("on-interval handles no Malop"),
        }
    }
}

/// A target a confined action may not touch: the detail of [`DenyReason::OutOfScope`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ScopeViolation {
    /// The action kind.
    pub kind: ActionKind,
    /// The target, in words (ids are bounded before confinement runs).
    pub target: String,
    /// Why.
    pub why: OutOfScope,
}

impl fmt::Display for ScopeViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` on {}: {}; a plugin acts only on what the Malop it handles names, unless the operator grants it a wider scope for `{}` (grants.wider_scope)",
            self.kind, self.target, self.why, self.kind
        )
    }
}

/// The element role each remediation kind targets.
fn elements_for(
    scope: &MalopScope,
    kind: ActionKind,
) -> &BTreeMap<ElementGuid, Option<MachineGuid>> {
    match kind {
        ActionKind::QuarantineFile | ActionKind::UnquarantineFile | ActionKind::BlockFile => {
            &scope.files
        }
        ActionKind::DeleteRegistryKey => &scope.autoruns,
        _ => &scope.processes,
    }
}

/// Checks `request` against `scope`; `wider` lists the kinds the operator let the plugin use
/// beyond its Malop. The first target out of scope, if any.
pub(crate) fn confine(
    request: &ActionRequest,
    scope: Scope<'_>,
    wider: &BTreeSet<ActionKind>,
) -> Option<ScopeViolation> {
    let confined: Vec<ActionKind> = request
        .action_kinds()
        .into_iter()
        .filter(|k| !wider.contains(k))
        .collect();
    let first = *confined.first()?;
    let violation = |kind, target: String, why| {
        Some(ScopeViolation {
            kind,
            target: excerpt(&target, 2 * EXCERPT_BYTES),
            why,
        })
    };
    let malop = match scope {
        Scope::Operator => return None,
        Scope::Interval => {
            return violation(first, describe_first_target(request), OutOfScope::NoMalop);
        }
        Scope::Malop(malop) => malop,
    };
    let handling = || malop.id.clone();
    let foreign = |given: Option<&MalopId>| OutOfScope::ForeignMalop {
        handling: handling(),
        given: given.map(|m| excerpt(m.as_str(), EXCERPT_BYTES)),
    };
    match request {
        ActionRequest::Remediate { malop_id, targets } => {
            if malop_id.as_ref() != Some(&malop.id) {
                return violation(first, "the Malop".into(), foreign(malop_id.as_ref()));
            }
            targets
                .iter()
                .map(|t| (ActionKind::from(t.kind), t))
                .filter(|(kind, _)| confined.contains(kind))
                .find_map(|(kind, t)| {
                    let target = format!("element {} on machine {}", t.target_guid, t.machine_guid);
                    match elements_for(malop, kind).get(&t.target_guid) {
                        None => violation(
                            kind,
                            target,
                            OutOfScope::NotNamed {
                                handling: handling(),
                            },
                        ),
                        Some(Some(on)) if *on != t.machine_guid => violation(
                            kind,
                            target,
                            OutOfScope::OtherMachine {
                                handling: handling(),
                                named_on: on.clone(),
                            },
                        ),
                        Some(None) if !malop.names_machine(&t.machine_guid) => violation(
                            kind,
                            target,
                            OutOfScope::NotNamed {
                                handling: handling(),
                            },
                        ),
                        Some(_) => None,
                    }
                })
        }
        ActionRequest::Isolate { malop_id, machines }
        | ActionRequest::Unisolate { malop_id, machines } => {
            if malop_id.as_ref() != Some(&malop.id) {
                return violation(first, "the Malop".into(), foreign(malop_id.as_ref()));
            }
            machines
                .iter()
                .find(|m| !malop.names_machine(m))
                .and_then(|m| {
                    violation(
                        first,
                        TargetKey::Machine(m.clone()).to_string(),
                        OutOfScope::NotNamed {
                            handling: handling(),
                        },
                    )
                })
        }
        ActionRequest::SetReputation { keys, .. } | ActionRequest::RemoveReputation { keys } => {
            keys.iter().find_map(|key| {
                let named = normalise_key(key).is_ok_and(|k| malop.keys.contains(&k));
                if named {
                    None
                } else {
                    violation(
                        first,
                        TargetKey::Reputation(key.clone()).to_string(),
                        OutOfScope::NotNamed {
                            handling: handling(),
                        },
                    )
                }
            })
        }
        ActionRequest::SetStatus { malop_id, .. } | ActionRequest::AddComment { malop_id, .. } => {
            (*malop_id != malop.id)
                .then(|| violation(first, "the Malop".into(), foreign(Some(malop_id))))
                .flatten()
        }
    }
}

/// The first target of a request, in words (for refusals that concern every target alike).
fn describe_first_target(request: &ActionRequest) -> String {
    match request {
        ActionRequest::Remediate { targets, .. } => targets.first().map_or_else(
            || "no target".to_owned(),
            |t| format!("element {} on machine {}", t.target_guid, t.machine_guid),
        ),
        ActionRequest::Isolate { machines, .. } | ActionRequest::Unisolate { machines, .. } => {
            machines.first().map_or_else(
                || "no machine".to_owned(),
                |m| TargetKey::Machine(m.clone()).to_string(),
            )
        }
        ActionRequest::SetReputation { keys, .. } | ActionRequest::RemoveReputation { keys } => {
            keys.first().map_or_else(
                || "no key".to_owned(),
                |k| TargetKey::Reputation(k.clone()).to_string(),
            )
        }
        ActionRequest::SetStatus { malop_id, .. } | ActionRequest::AddComment { malop_id, .. } => {
            TargetKey::Malop(malop_id.clone()).to_string()
        }
    }
}

/// Refuses to whitelist, or to remove the reputation of, a malicious value of the Malop being
/// handled (its root-cause hashes, its suspects' image hashes, the hashes of its files),
/// whatever the plugin's scope: a plugin may not clear the evidence it is handling.
pub(crate) fn guard_whitelist(request: &ActionRequest, scope: Scope<'_>) -> Option<DenyReason> {
    let Scope::Malop(malop) = scope else {
        return None;
    };
    let keys = match request {
        ActionRequest::SetReputation {
            keys,
            verdict: Verdict::Whitelist,
            ..
        }
        | ActionRequest::RemoveReputation { keys } => keys,
        _ => return None,
    };
    keys.iter().find_map(|key| {
        let key = normalise_key(key).ok()?;
        malop
            .malicious
            .contains(&key)
            .then(|| DenyReason::ProtectedTarget {
                target: TargetKey::Reputation(key),
                name: None,
                rule: ProtectionRule::MalopEvidence(malop.id.clone()),
            })
    })
}
