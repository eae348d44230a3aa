//! The policy gate: one test per deny reason, fan-out budgets, sliding windows with an
//! injected clock, cooldowns, shadow mode and approvals.

use riposte_domain::{
    ActionKind, ActionRequest, ElementGuid, KeyKind, MachineGuid, MalopId, ManagementStatus,
    Operation, PluginName, RemediationKind, RemediationTarget, ReputationKey, Verdict,
};
use riposte_policy::{
    ActionSelector, Approvals, Budget, LargeActions, Mode, PluginRules, ProtectedAssets,
};
use riposte_policy::{
    ArgumentError, BudgetLedger, BudgetScope, Decision, DenyReason, Disposition, ErrorCategory,
    Gate, MemoryLedger, PluginPolicy, ProtectionRule, Refusal, Scope, SpendPlan, TargetFacts,
    TargetKey,
};
use std::collections::BTreeSet;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

const T0: i64 = 1_700_000_000_000;
const HOUR: u64 = 3600;

/// A plugin's name and rules, as the tests build them.
#[derive(Clone)]
struct TestPlugin {
    name: PluginName,
    rules: PluginRules,
}

impl Deref for TestPlugin {
    type Target = PluginRules;
    fn deref(&self) -> &PluginRules {
        &self.rules
    }
}

impl DerefMut for TestPlugin {
    fn deref_mut(&mut self) -> &mut PluginRules {
        &mut self.rules
    }
}

impl From<&TestPlugin> for PluginPolicy {
    fn from(p: &TestPlugin) -> Self {
        PluginPolicy::new(p.name.clone(), p.rules.clone())
    }
}

fn plugin(name: &str, operations: &[Operation], remediation: &[RemediationKind]) -> TestPlugin {
    let mut p = TestPlugin {
        name: PluginName::new(name),
        rules: PluginRules::default(),
    };
    p.mode = Mode::Enforce;
    p.grants.operations = operations.iter().copied().collect();
    p.grants.remediation = remediation.iter().copied().collect();
    p
}

fn iso_plugin() -> TestPlugin {
    plugin(
        "iso",
        &[
            Operation::Isolate,
            Operation::Unisolate,
            Operation::GetMalop,
        ],
        &[],
    )
}

fn budget(action: ActionSelector, max: u64, window_secs: u64) -> Budget {
    Budget {
        action,
        max,
        window_secs,
    }
}

struct Fixture {
    gate: Gate,
    ledger: Arc<MemoryLedger>,
}

fn gate_with(protected: ProtectedAssets, global: Vec<Budget>, approvals: &[ActionKind]) -> Fixture {
    let approvals = Approvals {
        required: approvals.iter().copied().collect::<BTreeSet<_>>(),
        ..Approvals::default()
    };
    gate_with_approvals(protected, global, approvals)
}

fn gate_with_approvals(
    protected: ProtectedAssets,
    global: Vec<Budget>,
    approvals: Approvals,
) -> Fixture {
    let ledger = Arc::new(MemoryLedger::new());
    let gate = Gate::from_parts(&protected, global, approvals, ledger.clone()).unwrap();
    Fixture { gate, ledger }
}

fn gate() -> Fixture {
    gate_with(ProtectedAssets::default(), Vec::new(), &[])
}

fn machines(n: usize) -> Vec<MachineGuid> {
    (0..n).map(|i| MachineGuid::new(format!("m{i}"))).collect()
}

fn facts(guids: &[MachineGuid]) -> TargetFacts {
    let mut f = TargetFacts::new();
    for g in guids {
        f.insert(
            g.clone(),
            Some(format!("host-{g}")),
            Some("workstations".into()),
        );
    }
    f
}

fn isolate(machines: Vec<MachineGuid>) -> ActionRequest {
    ActionRequest::Isolate {
        malop_id: Some(MalopId::new("11.-1")),
        machines,
    }
}

fn deny(d: Decision) -> DenyReason {
    match d {
        Decision::Deny(r) => r,
        other => panic!("expected a denial, got {other}"),
    }
}

fn key(kind: KeyKind, value: &str) -> ReputationKey {
    ReputationKey {
        kind,
        value: value.into(),
    }
}

// ---- grants ------------------------------------------------------------------------------

#[test]
fn an_operation_not_granted_is_denied() {
    let f = gate();
    let p = PluginPolicy::from(&plugin("reader", &[Operation::GetMalop], &[]));
    let m = machines(1);
    let d = f
        .gate
        .decide(&p, &isolate(m.clone()), Scope::Operator, &facts(&m), T0);
    assert_eq!(d.wit_error().unwrap().0, ErrorCategory::Denied);
    assert_eq!(
        d.to_string(),
        "denied: operation `isolate` is not granted to this plugin"
    );
    assert_eq!(
        deny(d),
        DenyReason::NotGranted {
            operation: Operation::Isolate,
            kind: None
        }
    );
    assert!(f.ledger.charges().is_empty());
}

#[test]
fn a_remediation_kind_not_granted_is_denied() {
    let f = gate();
    let p = PluginPolicy::from(&plugin(
        "killer",
        &[Operation::Remediate],
        &[RemediationKind::KillProcess],
    ));
    let req = ActionRequest::Remediate {
        malop_id: None,
        targets: vec![
            RemediationTarget {
                machine_guid: MachineGuid::new("m0"),
                target_guid: ElementGuid::new("p1"),
                kind: RemediationKind::KillProcess,
            },
            RemediationTarget {
                machine_guid: MachineGuid::new("m0"),
                target_guid: ElementGuid::new("r1"),
                kind: RemediationKind::DeleteRegistryKey,
            },
        ],
    };
    let reason = deny(
        f.gate
            .decide(&p, &req, Scope::Operator, &facts(&machines(1)), T0),
    );
    assert_eq!(
        reason,
        DenyReason::NotGranted {
            operation: Operation::Remediate,
            kind: Some(ActionKind::DeleteRegistryKey)
        }
    );
    assert!(reason.to_string().contains("`delete-registry-key` is not"));
}

#[test]
fn queries_check_grants_only() {
    let f = gate();
    let p = PluginPolicy::from(&iso_plugin());
    assert_eq!(
        f.gate.check_query(&p, Operation::GetMalop),
        Decision::Allow { charges: vec![] }
    );
    assert_eq!(
        deny(f.gate.check_query(&p, Operation::ListMalops)),
        DenyReason::NotGranted {
            operation: Operation::ListMalops,
            kind: None
        }
    );
    assert_eq!(
        deny(f.gate.check_query(&p, Operation::Isolate)),
        DenyReason::InvalidArgument(ArgumentError::NotAQuery(Operation::Isolate))
    );
}

// ---- arguments ---------------------------------------------------------------------------

#[test]
fn invalid_arguments_are_denied() {
    let f = gate();
    let p = PluginPolicy::from(&plugin(
        "all",
        &[
            Operation::Isolate,
            Operation::SetReputation,
            Operation::SetStatus,
            Operation::AddComment,
        ],
        &[],
    ));
    let none = TargetFacts::new();
    let cases: Vec<(ActionRequest, &str)> = vec![
        (isolate(vec![]), "`machine-guids` is empty"),
        (
            isolate(vec![MachineGuid::new(" ")]),
            "a machine guid is empty",
        ),
        (
            ActionRequest::SetReputation {
                keys: vec![key(KeyKind::Domain, "evil.example.net")],
                verdict: Verdict::Blacklist,
                prevent: true,
            },
            "`prevent` is only valid for file hashes, not domain `evil.example.net`",
        ),
        (
            ActionRequest::SetReputation {
                keys: vec![key(KeyKind::FileHash, "not-a-hash")],
                verdict: Verdict::Blacklist,
                prevent: false,
            },
            "`not-a-hash` is not a valid file-hash",
        ),
        (
            ActionRequest::SetReputation {
                keys: vec![],
                verdict: Verdict::Blacklist,
                prevent: false,
            },
            "`keys` is empty",
        ),
        (
            ActionRequest::SetStatus {
                malop_id: MalopId::new("11.-1"),
                status: ManagementStatus::Unknown,
            },
            "status `unknown` cannot be set",
        ),
        (
            ActionRequest::AddComment {
                malop_id: MalopId::new("11.-1"),
                text: "  ".into(),
            },
            "a comment must have 1 to",
        ),
    ];
    for (req, words) in cases {
        let d = f.gate.decide(&p, &req, Scope::Operator, &none, T0);
        assert_eq!(
            d.wit_error().unwrap().0,
            ErrorCategory::InvalidArgument,
            "{d}"
        );
        assert!(d.to_string().contains(words), "{d} / {words}");
        assert!(matches!(deny(d), DenyReason::InvalidArgument(_)));
    }
    assert!(f.ledger.charges().is_empty());
}

// ---- protected targets -------------------------------------------------------------------

fn protected() -> ProtectedAssets {
    ProtectedAssets {
        machine_name_globs: vec!["dc-*".into()],
        machine_guids: vec![MachineGuid::new("guid-ceo")],
        groups: vec!["OT Network".into()],
        reputation_globs: vec!["*.example.com".into()],
    }
}

#[test]
fn protected_machines_are_denied_by_guid_name_and_group() {
    let f = gate_with(protected(), vec![], &[]);
    let p = PluginPolicy::from(&iso_plugin());
    let mut facts = facts(&machines(3));
    facts.insert(MachineGuid::new("guid-ceo"), Some("ceo".into()), None);
    facts.insert(
        MachineGuid::new("guid-dc"),
        Some("DC-01".into()),
        Some("servers".into()),
    );
    facts.insert(
        MachineGuid::new("guid-plc"),
        Some("plc-7".into()),
        Some("ot network".into()),
    );

    let case = |guid: &str| {
        let mut ms = machines(2);
        ms.push(MachineGuid::new(guid));
        deny(f.gate.decide(&p, &isolate(ms), Scope::Operator, &facts, T0))
    };
    assert_eq!(
        case("guid-ceo"),
        DenyReason::ProtectedTarget {
            target: TargetKey::Machine(MachineGuid::new("guid-ceo")),
            name: Some("ceo".into()),
            rule: ProtectionRule::Guid
        }
    );
    let dc = case("guid-dc");
    assert_eq!(
        dc.to_string(),
        "machine `DC-01` (guid-dc) is protected: its name matches protected glob `dc-*`; no destructive action may touch it"
    );
    assert_eq!(dc.category(), ErrorCategory::ProtectedTarget);
    assert!(matches!(
        case("guid-plc"),
        DenyReason::ProtectedTarget { rule: ProtectionRule::Group(g), .. } if g == "ot network"
    ));
    // A machine the caller could not resolve fails closed.
    assert!(matches!(
        case("guid-unknown"),
        DenyReason::ProtectedTarget {
            rule: ProtectionRule::Unresolved,
            ..
        }
    ));
    assert!(
        f.ledger.charges().is_empty(),
        "a denied call spends nothing"
    );
}

#[test]
fn inverse_actions_may_touch_protected_machines() {
    let f = gate_with(protected(), vec![], &[]);
    let p = PluginPolicy::from(&plugin(
        "undo",
        &[Operation::Unisolate, Operation::Remediate],
        &[
            RemediationKind::UnquarantineFile,
            RemediationKind::QuarantineFile,
        ],
    ));
    let mut facts = TargetFacts::new();
    facts.insert(
        MachineGuid::new("guid-dc"),
        Some("dc-01".into()),
        Some("servers".into()),
    );
    let dc = MachineGuid::new("guid-dc");
    let unisolate = ActionRequest::Unisolate {
        malop_id: None,
        machines: vec![dc.clone()],
    };
    assert!(matches!(
        f.gate.decide(&p, &unisolate, Scope::Operator, &facts, T0),
        Decision::Allow { .. }
    ));
    let target = |kind| RemediationTarget {
        machine_guid: dc.clone(),
        target_guid: ElementGuid::new("f1"),
        kind,
    };
    let unquarantine = ActionRequest::Remediate {
        malop_id: None,
        targets: vec![target(RemediationKind::UnquarantineFile)],
    };
    assert!(matches!(
        f.gate
            .decide(&p, &unquarantine, Scope::Operator, &facts, T0),
        Decision::Allow { .. }
    ));
    let quarantine = ActionRequest::Remediate {
        malop_id: None,
        targets: vec![target(RemediationKind::QuarantineFile)],
    };
    assert!(matches!(
        deny(f.gate.decide(&p, &quarantine, Scope::Operator, &facts, T0)),
        DenyReason::ProtectedTarget { .. }
    ));
}

#[test]
fn protected_reputation_values_cannot_be_blacklisted() {
    let f = gate_with(protected(), vec![], &[]);
    let mut cfg = plugin("rep", &[Operation::SetReputation], &[]);
    cfg.grants.whitelist = true;
    let p = PluginPolicy::from(&cfg);
    let req = |verdict| ActionRequest::SetReputation {
        keys: vec![
            key(KeyKind::Domain, "evil.net"),
            key(KeyKind::Domain, "Login.Example.com"),
        ],
        verdict,
        prevent: false,
    };
    let none = TargetFacts::new();
    let reason = deny(
        f.gate
            .decide(&p, &req(Verdict::Blacklist), Scope::Operator, &none, T0),
    );
    assert!(
        matches!(&reason, DenyReason::ProtectedTarget { rule: ProtectionRule::ReputationGlob(g), .. } if g == "*.example.com"),
        "{reason}"
    );
    assert!(matches!(
        f.gate
            .decide(&p, &req(Verdict::Whitelist), Scope::Operator, &none, T0),
        Decision::Allow { .. }
    ));
}

/// A key padded with spaces or a trailing dot is the same key: it is protected as the plain
/// one is, and `canonical` gives the ledger and the server one spelling of it, once.
#[test]
fn a_padded_key_is_protected_and_canonical_once() {
    let f = gate_with(protected(), vec![], &[]);
    let p = PluginPolicy::from(&plugin("rep", &[Operation::SetReputation], &[]));
    let none = TargetFacts::new();
    for padded in ["dc1.example.com ", "dc1.example.com.", " DC1.Example.COM"] {
        let req = ActionRequest::SetReputation {
            keys: vec![key(KeyKind::Domain, padded)],
            verdict: Verdict::Blacklist,
            prevent: false,
        };
        let reason = deny(f.gate.decide(&p, &req, Scope::Operator, &none, T0));
        assert!(
            matches!(&reason, DenyReason::ProtectedTarget { .. }),
            "`{padded}`: {reason}"
        );
    }
    let keys = vec![
        key(KeyKind::Domain, " Evil.NET. "),
        key(KeyKind::Domain, "evil.net"),
        key(KeyKind::FileHash, "D41D8CD98F00B204E9800998ECF8427E "),
    ];
    let canonical = riposte_policy::canonical(ActionRequest::RemoveReputation { keys });
    assert_eq!(
        canonical,
        ActionRequest::RemoveReputation {
            keys: vec![
                key(KeyKind::Domain, "evil.net"),
                key(KeyKind::FileHash, "d41d8cd98f00b204e9800998ecf8427e"),
            ]
        }
    );
    let m = machines(2);
    let repeated = isolate(vec![m[0].clone(), m[1].clone(), m[0].clone(), m[0].clone()]);
    assert_eq!(riposte_policy::canonical(repeated), isolate(m));
}

// ---- shadow and approval -----------------------------------------------------------------

#[test]
fn shadow_mode_records_and_spends_nothing() {
    let f = gate_with(
        ProtectedAssets::default(),
        vec![budget(ActionSelector::Any, 1, HOUR)],
        &[],
    );
    let mut cfg = iso_plugin();
    cfg.mode = Mode::Shadow;
    let p = PluginPolicy::from(&cfg);
    let m = machines(5);
    let d = f
        .gate
        .decide(&p, &isolate(m.clone()), Scope::Operator, &facts(&m), T0);
    assert_eq!(
        d,
        Decision::Shadow {
            kinds: vec![ActionKind::Isolate]
        }
    );
    assert_eq!(d.disposition(), Some(Disposition::Shadowed));
    assert!(d.to_string().starts_with("shadowed:"), "{d}");
    assert!(f.ledger.charges().is_empty());
}

#[test]
fn promoted_kinds_are_enforced_in_shadow_mode() {
    let f = gate();
    let mut cfg = plugin(
        "mixed",
        &[Operation::Remediate, Operation::AddComment],
        &[
            RemediationKind::KillProcess,
            RemediationKind::QuarantineFile,
        ],
    );
    cfg.mode = Mode::Shadow;
    cfg.promote = [ActionKind::AddComment, ActionKind::KillProcess].into();
    let p = PluginPolicy::from(&cfg);
    let comment = ActionRequest::AddComment {
        malop_id: MalopId::new("11.-1"),
        text: "contained".into(),
    };
    assert!(matches!(
        f.gate
            .decide(&p, &comment, Scope::Operator, &TargetFacts::new(), T0),
        Decision::Allow { .. }
    ));
    // A request mixing a promoted and a shadowed kind is shadowed whole.
    let target = |kind| RemediationTarget {
        machine_guid: MachineGuid::new("m0"),
        target_guid: ElementGuid::new("x"),
        kind,
    };
    let mixed = ActionRequest::Remediate {
        malop_id: None,
        targets: vec![
            target(RemediationKind::KillProcess),
            target(RemediationKind::QuarantineFile),
        ],
    };
    assert_eq!(
        f.gate
            .decide(&p, &mixed, Scope::Operator, &facts(&machines(1)), T0),
        Decision::Shadow {
            kinds: vec![ActionKind::QuarantineFile]
        }
    );
}

#[test]
fn approval_holds_the_action_until_approved() {
    let f = gate_with(
        ProtectedAssets::default(),
        vec![budget(ActionSelector::Kind(ActionKind::Isolate), 10, HOUR)],
        &[ActionKind::Isolate],
    );
    let p = PluginPolicy::from(&iso_plugin());
    let m = machines(2);
    let req = isolate(m.clone());
    let d = f.gate.decide(&p, &req, Scope::Operator, &facts(&m), T0);
    assert_eq!(
        d,
        Decision::AwaitApproval {
            kinds: vec![ActionKind::Isolate],
            quorum: 1,
        }
    );
    assert_eq!(d.disposition(), Some(Disposition::AwaitingApproval));
    assert!(f.ledger.charges().is_empty(), "waiting spends nothing");
    let approved = f.gate.decide_approved(&p, &req, &facts(&m), T0 + 5000);
    assert!(matches!(&approved, Decision::Allow { charges } if charges.len() == 2));
    assert_eq!(f.ledger.charges().len(), 2);
    // Unisolate does not need approval.
    let un = ActionRequest::Unisolate {
        malop_id: None,
        machines: m.clone(),
    };
    assert!(matches!(
        f.gate.decide(&p, &un, Scope::Operator, &facts(&m), T0),
        Decision::Allow { .. }
    ));
}

// ---- budgets -----------------------------------------------------------------------------

#[test]
fn fan_out_spends_one_unit_per_machine_and_over_budget_is_denied_whole() {
    let f = gate();
    let mut cfg = iso_plugin();
    cfg.budgets = vec![budget(ActionSelector::Kind(ActionKind::Isolate), 40, HOUR)];
    let p = PluginPolicy::from(&cfg);

    let m = machines(40);
    let d = f
        .gate
        .decide(&p, &isolate(m.clone()), Scope::Operator, &facts(&m), T0);
    assert!(
        matches!(&d, Decision::Allow { charges } if charges.len() == 40),
        "{d}"
    );
    assert_eq!(d.to_string(), "allowed; spends 40 × isolate");
    let status = f.gate.budget_status(Some(&p), T0).unwrap();
    assert_eq!((status[0].used, status[0].remaining), (40, 0));

    let one = vec![MachineGuid::new("another")];
    let reason = deny(f.gate.decide(
        &p,
        &isolate(one.clone()),
        Scope::Operator,
        &facts(&one),
        T0 + 1,
    ));
    assert_eq!(
        reason,
        DenyReason::BudgetSpent {
            scope: BudgetScope::Plugin(PluginName::new("iso")),
            budget: cfg.budgets[0],
            used: 40,
            requested: 1
        }
    );
    assert_eq!(reason.category(), ErrorCategory::BudgetExhausted);
    assert_eq!(
        reason.to_string(),
        "the budget of plugin `iso` (at most 40 `isolate` per 1 h) is spent: 40 used in the window, this call needs 1, 0 left"
    );
}

#[test]
fn a_call_that_would_exceed_spends_nothing() {
    let f = gate();
    let mut cfg = iso_plugin();
    cfg.budgets = vec![budget(ActionSelector::Kind(ActionKind::Isolate), 39, HOUR)];
    let p = PluginPolicy::from(&cfg);
    let m = machines(40);
    let reason = deny(
        f.gate
            .decide(&p, &isolate(m.clone()), Scope::Operator, &facts(&m), T0),
    );
    assert!(matches!(
        reason,
        DenyReason::BudgetSpent {
            used: 0,
            requested: 40,
            ..
        }
    ));
    assert!(f.ledger.charges().is_empty());
    // 39 fit.
    let m = machines(39);
    assert!(matches!(
        f.gate
            .decide(&p, &isolate(m.clone()), Scope::Operator, &facts(&m), T0),
        Decision::Allow { .. }
    ));
}

#[test]
fn global_budgets_are_shared_and_all_or_nothing() {
    let f = gate_with(
        ProtectedAssets::default(),
        vec![budget(ActionSelector::Any, 3, HOUR)],
        &[],
    );
    let mut a = iso_plugin();
    a.name = PluginName::new("a");
    a.budgets = vec![budget(ActionSelector::Any, 100, HOUR)];
    let mut b = iso_plugin();
    b.name = PluginName::new("b");
    let (a, b) = (PluginPolicy::from(&a), PluginPolicy::from(&b));
    let m = machines(4);
    assert!(matches!(
        f.gate.decide(
            &a,
            &isolate(m[..2].to_vec()),
            Scope::Operator,
            &facts(&m),
            T0
        ),
        Decision::Allow { .. }
    ));
    let reason = deny(f.gate.decide(
        &b,
        &isolate(m[2..].to_vec()),
        Scope::Operator,
        &facts(&m),
        T0,
    ));
    assert!(
        matches!(
            &reason,
            DenyReason::BudgetSpent {
                scope: BudgetScope::Global,
                used: 2,
                requested: 2,
                ..
            }
        ),
        "{reason}"
    );
    assert!(
        reason
            .to_string()
            .starts_with("the global budget (at most 3 actions (any kind) per 1 h)")
    );
    // Plugin a's own budget had room, but the global one did not: nothing was spent.
    let reason = deny(f.gate.decide(
        &a,
        &isolate(m[2..].to_vec()),
        Scope::Operator,
        &facts(&m),
        T0,
    ));
    assert!(matches!(
        reason,
        DenyReason::BudgetSpent {
            scope: BudgetScope::Global,
            ..
        }
    ));
    assert_eq!(f.ledger.charges().len(), 2);
    let status = f.gate.budget_status(Some(&a), T0).unwrap();
    assert_eq!(status.len(), 2);
    assert_eq!((status[0].used, status[0].remaining), (2, 98));
    assert_eq!((status[1].used, status[1].remaining), (2, 1));
}

#[test]
fn the_window_slides_with_the_injected_clock() {
    let f = gate();
    let mut cfg = iso_plugin();
    cfg.budgets = vec![budget(ActionSelector::Kind(ActionKind::Isolate), 2, HOUR)];
    let p = PluginPolicy::from(&cfg);
    let m = machines(10);
    let one = |i: usize, at: i64| {
        f.gate.decide(
            &p,
            &isolate(vec![m[i].clone()]),
            Scope::Operator,
            &facts(&m),
            at,
        )
    };

    assert!(matches!(one(0, T0), Decision::Allow { .. }));
    assert!(matches!(one(1, T0 + 1_800_000), Decision::Allow { .. }));
    assert!(matches!(
        deny(one(2, T0 + 3_599_999)),
        DenyReason::BudgetSpent { used: 2, .. }
    ));
    // At exactly one window after the first spend, it no longer counts.
    assert!(matches!(one(3, T0 + 3_600_000), Decision::Allow { .. }));
    assert!(matches!(
        deny(one(4, T0 + 3_600_001)),
        DenyReason::BudgetSpent { used: 2, .. }
    ));
    assert!(matches!(one(5, T0 + 5_400_000), Decision::Allow { .. }));
}

#[test]
fn reputation_counts_per_key() {
    let f = gate();
    let mut cfg = plugin("rep", &[Operation::SetReputation], &[]);
    cfg.budgets = vec![budget(ActionSelector::Kind(ActionKind::Blacklist), 3, HOUR)];
    let p = PluginPolicy::from(&cfg);
    let none = TargetFacts::new();
    let req = |keys| ActionRequest::SetReputation {
        keys,
        verdict: Verdict::Blacklist,
        prevent: false,
    };
    let hash = "d41d8cd98f00b204e9800998ecf8427e";
    let d = f.gate.decide(
        &p,
        &req(vec![
            key(KeyKind::FileHash, hash),
            key(KeyKind::FileHash, &hash.to_uppercase()),
            key(KeyKind::IpAddress, "203.0.113.9"),
        ]),
        Scope::Operator,
        &none,
        T0,
    );
    assert!(
        matches!(&d, Decision::Allow { charges } if charges.len() == 2),
        "{d}"
    );
    let reason = deny(f.gate.decide(
        &p,
        &req(vec![
            key(KeyKind::Domain, "a.net"),
            key(KeyKind::Domain, "b.net"),
        ]),
        Scope::Operator,
        &none,
        T0,
    ));
    assert!(matches!(
        reason,
        DenyReason::BudgetSpent {
            used: 2,
            requested: 2,
            ..
        }
    ));
}

#[test]
fn remediation_counts_per_kind_and_machine() {
    let f = gate();
    let mut cfg = plugin(
        "rem",
        &[Operation::Remediate],
        &[
            RemediationKind::KillProcess,
            RemediationKind::QuarantineFile,
        ],
    );
    cfg.budgets = vec![
        budget(ActionSelector::Kind(ActionKind::KillProcess), 2, HOUR),
        budget(ActionSelector::Remediate, 3, HOUR),
    ];
    let p = PluginPolicy::from(&cfg);
    let t = |m: &str, g: &str, kind| RemediationTarget {
        machine_guid: MachineGuid::new(m),
        target_guid: ElementGuid::new(g),
        kind,
    };
    // Three processes on one machine, and a file on it: one kill-process, one quarantine-file.
    let req = ActionRequest::Remediate {
        malop_id: None,
        targets: vec![
            t("m0", "p1", RemediationKind::KillProcess),
            t("m0", "p2", RemediationKind::KillProcess),
            t("m0", "p3", RemediationKind::KillProcess),
            t("m0", "f1", RemediationKind::QuarantineFile),
        ],
    };
    let d = f
        .gate
        .decide(&p, &req, Scope::Operator, &facts(&machines(2)), T0);
    assert!(
        matches!(&d, Decision::Allow { charges } if charges.len() == 2),
        "{d}"
    );
    let req = ActionRequest::Remediate {
        malop_id: None,
        targets: vec![
            t("m1", "p1", RemediationKind::KillProcess),
            t("m1", "f1", RemediationKind::QuarantineFile),
        ],
    };
    let reason = deny(
        f.gate
            .decide(&p, &req, Scope::Operator, &facts(&machines(2)), T0),
    );
    assert!(
        matches!(&reason, DenyReason::BudgetSpent { budget, used: 2, requested: 2, .. } if budget.action == ActionSelector::Remediate),
        "{reason}"
    );
}

// ---- cooldown ----------------------------------------------------------------------------

#[test]
fn a_target_cools_down_per_plugin_and_kind() {
    let f = gate();
    let mut cfg = iso_plugin();
    cfg.cooldown_secs = 600;
    let p = PluginPolicy::from(&cfg);
    let m = machines(2);
    let fx = facts(&m);
    assert!(matches!(
        f.gate
            .decide(&p, &isolate(vec![m[0].clone()]), Scope::Operator, &fx, T0),
        Decision::Allow { .. }
    ));
    let d = f
        .gate
        .decide(&p, &isolate(m.clone()), Scope::Operator, &fx, T0 + 1000);
    assert_eq!(d.wit_error().unwrap().0, ErrorCategory::BudgetExhausted);
    assert!(d.to_string().contains("machine m0 is cooling down after a recent `isolate`: not before 2023-11-14T22:23:20.000Z"), "{d}");
    assert_eq!(
        deny(d),
        DenyReason::Cooldown {
            target: TargetKey::Machine(m[0].clone()),
            kind: ActionKind::Isolate,
            until_ms: T0 + 600_000
        }
    );
    // Nothing was spent on m1 by the denied call; m1 alone is fine.
    assert!(matches!(
        f.gate.decide(
            &p,
            &isolate(vec![m[1].clone()]),
            Scope::Operator,
            &fx,
            T0 + 1000
        ),
        Decision::Allow { .. }
    ));
    // Another kind on the same target is not cooling down.
    let un = ActionRequest::Unisolate {
        malop_id: None,
        machines: vec![m[0].clone()],
    };
    assert!(matches!(
        f.gate.decide(&p, &un, Scope::Operator, &fx, T0 + 2000),
        Decision::Allow { .. }
    ));
    // Another plugin is not affected.
    let mut other = iso_plugin();
    other.name = PluginName::new("other");
    let other = PluginPolicy::from(&other);
    assert!(matches!(
        f.gate.decide(
            &other,
            &isolate(vec![m[0].clone()]),
            Scope::Operator,
            &fx,
            T0 + 3000
        ),
        Decision::Allow { .. }
    ));
    // After the cooldown, it may act again.
    assert!(matches!(
        f.gate.decide(
            &p,
            &isolate(vec![m[0].clone()]),
            Scope::Operator,
            &fx,
            T0 + 600_000
        ),
        Decision::Allow { .. }
    ));
}

// ---- atomicity and failure ---------------------------------------------------------------

#[test]
fn concurrent_calls_cannot_overspend() {
    let f = gate_with(
        ProtectedAssets::default(),
        vec![budget(ActionSelector::Kind(ActionKind::Isolate), 10, HOUR)],
        &[],
    );
    let gate = Arc::new(f.gate);
    let p = PluginPolicy::from(&iso_plugin());
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let gate = gate.clone();
            let p = p.clone();
            std::thread::spawn(move || {
                (0..25)
                    .filter(|i| {
                        let m = vec![MachineGuid::new(format!("t{t}-{i}"))];
                        matches!(
                            gate.decide(&p, &isolate(m.clone()), Scope::Operator, &facts(&m), T0),
                            Decision::Allow { .. }
                        )
                    })
                    .count()
            })
        })
        .collect();
    let allowed: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(allowed, 10);
    assert_eq!(f.ledger.charges().len(), 10);
}

struct BrokenLedger;

impl BudgetLedger for BrokenLedger {
    fn try_spend(&self, _: &SpendPlan<'_>) -> Result<Option<Refusal>, riposte_policy::Error> {
        Err(riposte_policy::Error::Ledger("database is locked".into()))
    }
    fn used(
        &self,
        _: Option<&PluginName>,
        _: ActionSelector,
        _: i64,
    ) -> Result<u64, riposte_policy::Error> {
        Err(riposte_policy::Error::Ledger("database is locked".into()))
    }
    fn refund(
        &self,
        _: &PluginName,
        _: &[riposte_policy::Charge],
        _: i64,
    ) -> Result<usize, riposte_policy::Error> {
        Err(riposte_policy::Error::Ledger("database is locked".into()))
    }
}

#[test]
fn a_failing_ledger_fails_closed() {
    let gate = Gate::from_parts(
        &ProtectedAssets::default(),
        vec![],
        Approvals::default(),
        Arc::new(BrokenLedger),
    )
    .unwrap();
    let p = PluginPolicy::from(&iso_plugin());
    let m = machines(1);
    let d = gate.decide(&p, &isolate(m.clone()), Scope::Operator, &facts(&m), T0);
    assert_eq!(d.wit_error().unwrap().0, ErrorCategory::Denied);
    assert!(matches!(deny(d), DenyReason::LedgerUnavailable(_)));
}

#[test]
fn decisions_render_for_the_audit() {
    let d = Decision::Deny(DenyReason::NotGranted {
        operation: Operation::Isolate,
        kind: None,
    });
    let r = d.to_record();
    assert_eq!(r.kind, riposte_audit::DecisionKind::Deny);
    assert_eq!(r.category, Some(ErrorCategory::Denied));
    assert_eq!(r.detail, d.to_string());
    let json = serde_json::to_value(&d).unwrap();
    assert_eq!(json["decision"], "deny");
}

// ---- G11: scope, sizes, whitelisting, refunds, the shadow plan ---------------------------

mod confinement {
    use super::*;
    use riposte_domain::{
        ElementKind, FileItem, Machine, Malop, Priority, RegistryEntry, RootCause, Suspect,
    };
    use riposte_policy::{Evaluation, MalopScope, OutOfScope, SizeError};

    const HASH: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const IMAGE: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    const FILE_MD5: &str = "cccccccccccccccccccccccccccccccc";

    fn machine(guid: &str) -> Machine {
        Machine {
            guid: MachineGuid::new(guid),
            name: format!("host-{guid}"),
            pylum_id: None,
            os: "WINDOWS".into(),
            connected: true,
            isolated: false,
            group: None,
        }
    }

    /// Malop `11.1`: machines m1 and m2; suspect p1 on m1 with autorun r1; file f1 on m2
    /// (a suspect on m3, a machine not in the affected list, makes m3 named too); a
    /// root-cause hash, an IP and a domain.
    fn malop() -> Malop {
        Malop {
            id: MalopId::new("11.1"),
            kind: ElementKind::Process,
            display_name: "x".into(),
            detection_type: "RANSOMWARE".into(),
            activity_types: vec![],
            management_status: ManagementStatus::Open,
            priority: Priority::High,
            creation_time: 0,
            last_update_time: 0,
            root_causes: vec![RootCause {
                name: "x.exe".into(),
                element_type: "File".into(),
                hashes: vec![HASH.to_uppercase()],
            }],
            machines: vec![machine("m1"), machine("m2")],
            suspects: vec![
                Suspect {
                    guid: ElementGuid::new("p1"),
                    name: "x.exe".into(),
                    machine_guid: MachineGuid::new("m1"),
                    image_sha1: Some(IMAGE.into()),
                    autorun_keys: vec![RegistryEntry {
                        guid: ElementGuid::new("r1"),
                        name: "Run\\x".into(),
                    }],
                },
                Suspect {
                    guid: ElementGuid::new("p3"),
                    name: "y.exe".into(),
                    machine_guid: MachineGuid::new("m3"),
                    image_sha1: None,
                    autorun_keys: vec![],
                },
            ],
            files: vec![FileItem {
                guid: ElementGuid::new("f1"),
                name: "x.exe".into(),
                md5: Some(FILE_MD5.into()),
                sha1: None,
                machine_guid: MachineGuid::new("m2"),
            }],
            users: vec![],
            ip_addresses: vec!["185.220.101.47".into()],
            domains: vec!["Evil.Example.NET.".into()],
            unreadable: Vec::new(),
        }
    }

    fn all_grants() -> TestPlugin {
        let mut cfg = plugin(
            "rule",
            &Operation::ALL,
            &[
                RemediationKind::KillProcess,
                RemediationKind::QuarantineFile,
                RemediationKind::DeleteRegistryKey,
                RemediationKind::BlockFile,
            ],
        );
        cfg.grants.whitelist = true;
        cfg
    }

    fn remediate(malop: &str, machine: &str, target: &str, kind: RemediationKind) -> ActionRequest {
        ActionRequest::Remediate {
            malop_id: Some(MalopId::new(malop)),
            targets: vec![RemediationTarget {
                machine_guid: MachineGuid::new(machine),
                target_guid: ElementGuid::new(target),
                kind,
            }],
        }
    }

    fn on(malop_id: Option<&str>, machines: &[&str]) -> ActionRequest {
        ActionRequest::Isolate {
            malop_id: malop_id.map(MalopId::new),
            machines: machines.iter().map(|m| MachineGuid::new(*m)).collect(),
        }
    }

    fn reputation(verdict: Verdict, keys: Vec<ReputationKey>) -> ActionRequest {
        ActionRequest::SetReputation {
            keys,
            verdict,
            prevent: false,
        }
    }

    fn out_of_scope(d: Decision) -> OutOfScope {
        match deny(d) {
            DenyReason::OutOfScope(v) => v.why,
            other => panic!("expected out of scope, got {other}"),
        }
    }

    /// Decides `request` during on-malop of [`malop`] for a plugin granted everything.
    fn decide(cfg: &TestPlugin, request: &ActionRequest) -> Decision {
        let f = gate();
        let m = malop();
        let scope = MalopScope::of(&m);
        f.gate.decide(
            &PluginPolicy::from(cfg),
            request,
            Scope::Malop(&scope),
            &TargetFacts::from_malop(&m),
            T0,
        )
    }

    #[test]
    fn every_target_class_is_confined_to_what_the_malop_names() {
        let cfg = all_grants();
        let allowed = [
            on(Some("11.1"), &["m1", "m2", "m3"]),
            remediate("11.1", "m1", "p1", RemediationKind::KillProcess),
            remediate("11.1", "m2", "f1", RemediationKind::QuarantineFile),
            remediate("11.1", "m2", "f1", RemediationKind::BlockFile),
            remediate("11.1", "m1", "r1", RemediationKind::DeleteRegistryKey),
            reputation(
                Verdict::Blacklist,
                vec![
                    key(KeyKind::FileHash, HASH),
                    key(KeyKind::FileHash, IMAGE),
                    key(KeyKind::FileHash, &FILE_MD5.to_uppercase()),
                    key(KeyKind::IpAddress, "185.220.101.47"),
                    key(KeyKind::Domain, "evil.example.net"),
                ],
            ),
            ActionRequest::SetStatus {
                malop_id: MalopId::new("11.1"),
                status: ManagementStatus::Closed,
            },
            ActionRequest::AddComment {
                malop_id: MalopId::new("11.1"),
                text: "seen".into(),
            },
        ];
        for request in &allowed {
            let d = decide(&cfg, request);
            assert!(matches!(d, Decision::Allow { .. }), "{request:?}: {d}");
        }
        let named_not = |why: OutOfScope| {
            assert_eq!(
                why,
                OutOfScope::NotNamed {
                    handling: MalopId::new("11.1")
                }
            )
        };
        named_not(out_of_scope(decide(&cfg, &on(Some("11.1"), &["m1", "m9"]))));
        named_not(out_of_scope(decide(
            &cfg,
            &remediate("11.1", "m1", "p9", RemediationKind::KillProcess),
        )));
        // A file is not a process, an autorun not a file: each kind has its own targets.
        named_not(out_of_scope(decide(
            &cfg,
            &remediate("11.1", "m2", "f1", RemediationKind::KillProcess),
        )));
        named_not(out_of_scope(decide(
            &cfg,
            &remediate("11.1", "m1", "r1", RemediationKind::QuarantineFile),
        )));
        assert_eq!(
            out_of_scope(decide(
                &cfg,
                &remediate("11.1", "m2", "p1", RemediationKind::KillProcess)
            )),
            OutOfScope::OtherMachine {
                handling: MalopId::new("11.1"),
                named_on: MachineGuid::new("m1")
            }
        );
        for keys in [
            vec![key(KeyKind::FileHash, "dddddddddddddddddddddddddddddddd")],
            vec![key(KeyKind::IpAddress, "8.8.8.8")],
            vec![key(KeyKind::Domain, "example.org")],
        ] {
            named_not(out_of_scope(decide(
                &cfg,
                &ActionRequest::RemoveReputation { keys },
            )));
        }
        let foreign = |given: Option<&str>| OutOfScope::ForeignMalop {
            handling: MalopId::new("11.1"),
            given: given.map(str::to_owned),
        };
        assert_eq!(
            out_of_scope(decide(&cfg, &on(None, &["m1"]))),
            foreign(None)
        );
        assert_eq!(
            out_of_scope(decide(&cfg, &on(Some("11.2"), &["m1"]))),
            foreign(Some("11.2"))
        );
        assert_eq!(
            out_of_scope(decide(
                &cfg,
                &ActionRequest::AddComment {
                    malop_id: MalopId::new("11.2"),
                    text: "x".into()
                }
            )),
            foreign(Some("11.2"))
        );
        // The refusal is typed and names the target and why.
        let d = decide(&cfg, &on(Some("11.1"), &["m9"]));
        assert_eq!(d.wit_error().unwrap().0, ErrorCategory::OutOfScope);
        let detail = d.to_string();
        assert!(
            detail.contains("machine m9") && detail.contains("Malop 11.1 does not name it"),
            "{detail}"
        );
    }

    #[test]
    fn on_interval_acts_only_within_a_wider_scope_the_operator_granted() {
        let f = gate();
        let mut cfg = all_grants();
        let request = on(Some("11.7"), &["m1"]);
        let interval = |cfg: &TestPlugin| {
            f.gate.decide(
                &PluginPolicy::from(cfg),
                &request,
                Scope::Interval,
                &TargetFacts::new(),
                T0,
            )
        };
        assert_eq!(out_of_scope(interval(&cfg)), OutOfScope::NoMalop);
        cfg.grants.wider_scope.insert(ActionKind::Isolate);
        assert!(matches!(interval(&cfg), Decision::Allow { .. }));
        // The wider scope is per kind.
        let comment = ActionRequest::AddComment {
            malop_id: MalopId::new("11.7"),
            text: "x".into(),
        };
        assert_eq!(
            out_of_scope(f.gate.decide(
                &PluginPolicy::from(&cfg),
                &comment,
                Scope::Interval,
                &TargetFacts::new(),
                T0
            )),
            OutOfScope::NoMalop
        );
        // ... and reaches beyond the Malop during on-malop too.
        assert!(matches!(
            decide(&cfg, &on(Some("11.2"), &["m9"])),
            Decision::Allow { .. }
        ));
    }

    #[test]
    fn the_malops_own_malicious_hashes_are_never_whitelisted_by_its_plugin() {
        let mut cfg = all_grants();
        cfg.grants.wider_scope.insert(ActionKind::Whitelist);
        cfg.grants.wider_scope.insert(ActionKind::RemoveReputation);
        let evidence = |reason: &DenyReason| matches!(reason, DenyReason::ProtectedTarget { rule: ProtectionRule::MalopEvidence(m), .. } if m.as_str() == "11.1");
        for hash in [HASH, IMAGE, FILE_MD5] {
            let reason = deny(decide(
                &cfg,
                &reputation(Verdict::Whitelist, vec![key(KeyKind::FileHash, hash)]),
            ));
            assert!(evidence(&reason), "{reason}");
            // Nor may it remove their reputation (a blacklist entry on them).
            let removal = ActionRequest::RemoveReputation {
                keys: vec![key(KeyKind::FileHash, hash)],
            };
            let reason = deny(decide(&cfg, &removal));
            assert!(evidence(&reason), "{reason}");
        }
        // Blacklisting them is what a rule should do; whitelisting something else is allowed
        // with the grant.
        assert!(matches!(
            decide(
                &cfg,
                &reputation(Verdict::Blacklist, vec![key(KeyKind::FileHash, HASH)])
            ),
            Decision::Allow { .. }
        ));
        let elsewhere = "dddddddddddddddddddddddddddddddd";
        assert!(matches!(
            decide(
                &cfg,
                &reputation(Verdict::Whitelist, vec![key(KeyKind::FileHash, elsewhere)])
            ),
            Decision::Allow { .. }
        ));
        // Without its own grant, whitelisting is not granted at all.
        cfg.grants.whitelist = false;
        let reason = deny(decide(
            &cfg,
            &reputation(Verdict::Whitelist, vec![key(KeyKind::FileHash, FILE_MD5)]),
        ));
        assert_eq!(
            reason,
            DenyReason::NotGranted {
                operation: Operation::SetReputation,
                kind: Some(ActionKind::Whitelist)
            }
        );
    }

    #[test]
    fn oversized_and_multi_line_arguments_are_refused_before_anything_else() {
        let f = gate();
        // Not even granted: the size check comes first, so a huge request is never read further.
        let p = PluginPolicy::from(&plugin("none", &[], &[]));
        let huge = "x".repeat(1 << 20);
        let m = malop();
        let scope = MalopScope::of(&m);
        let admit = |request: &ActionRequest, reason: &str| {
            f.gate
                .admit(&p, request, reason, Scope::Malop(&scope))
                .unwrap_err()
        };
        let too_long = |r: DenyReason, what: &str| match r {
            DenyReason::Oversized(SizeError::TooLong { what: w, bytes, .. }) => {
                assert_eq!(w, what);
                assert!(bytes >= 1 << 20);
            }
            other => panic!("{other}"),
        };
        too_long(admit(&on(Some(&huge), &["m1"]), "r"), "Malop id");
        too_long(admit(&on(Some("11.1"), &[&huge]), "r"), "machine guid");
        too_long(admit(&on(Some("11.1"), &["m1"]), &huge), "reason");
        let many: Vec<String> = (0..5_000).map(|i| format!("m{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert_eq!(
            admit(&on(Some("11.1"), &many), "r"),
            DenyReason::Oversized(SizeError::TooMany {
                what: "machine-guids",
                count: 5_000,
                max: 1_000
            })
        );
        let reason = admit(&on(Some("11.1"), &[&huge]), "r");
        assert_eq!(reason.category(), ErrorCategory::QuotaExceeded);
        assert!(reason.to_string().len() < 200, "{reason}");
        // An id is one token: a newline in it is refused (it could start a log line).
        let p = PluginPolicy::from(&all_grants());
        assert_eq!(
            f.gate
                .admit(&p, &on(Some("11.1"), &["m1\nforged"]), "r", Scope::Operator)
                .unwrap_err(),
            DenyReason::InvalidArgument(ArgumentError::BadId {
                what: "machine guid"
            })
        );
    }

    #[test]
    fn refunded_units_count_no_more_and_start_no_cooldown() {
        let f = gate_with(
            ProtectedAssets::default(),
            vec![budget(ActionSelector::Kind(ActionKind::Isolate), 2, HOUR)],
            &[],
        );
        let mut cfg = iso_plugin();
        cfg.cooldown_secs = 3600;
        let p = PluginPolicy::from(&cfg);
        let m = machines(2);
        let Decision::Allow { charges } =
            f.gate
                .decide(&p, &isolate(m.clone()), Scope::Operator, &facts(&m), T0)
        else {
            panic!("allowed")
        };
        assert!(matches!(
            deny(f.gate.decide(
                &p,
                &isolate(m[..1].to_vec()),
                Scope::Operator,
                &facts(&m),
                T0 + 1
            )),
            DenyReason::Cooldown { .. }
        ));
        // Charges made before `since` are not given back.
        assert_eq!(f.gate.refund(&p.name, &charges, T0 + 1).unwrap(), 0);
        assert_eq!(f.gate.refund(&p.name, &charges, T0).unwrap(), 2);
        assert!(f.ledger.charges().is_empty());
        assert_eq!(
            f.gate.refund(&p.name, &charges, T0).unwrap(),
            0,
            "once only"
        );
        assert!(matches!(
            f.gate
                .decide(&p, &isolate(m.clone()), Scope::Operator, &facts(&m), T0 + 2),
            Decision::Allow { .. }
        ));
    }

    #[test]
    fn the_shadow_plan_shows_the_approval_and_budget_outcome_of_each_action() {
        let f = gate_with(
            ProtectedAssets::default(),
            vec![budget(ActionSelector::Kind(ActionKind::Isolate), 3, HOUR)],
            &[ActionKind::Isolate],
        );
        let mut cfg = iso_plugin();
        cfg.mode = Mode::Shadow;
        let p = PluginPolicy::from(&cfg);
        let m = machines(2);
        let evaluate = |at| {
            f.gate.evaluate(
                &p,
                &isolate(m.clone()),
                "r",
                Scope::Operator,
                &facts(&m),
                at,
            )
        };
        let Evaluation {
            decision,
            approval,
            budget,
        } = evaluate(T0);
        assert!(matches!(decision, Decision::Shadow { .. }));
        assert_eq!(approval, vec![ActionKind::Isolate]);
        assert!(matches!(budget, Some(Ok(ref charges)) if charges.len() == 2));
        // The second would exceed the budget the first (as if carried out) left.
        let second = evaluate(T0 + 1);
        assert!(matches!(second.decision, Decision::Shadow { .. }));
        assert!(matches!(
            second.budget,
            Some(Err(DenyReason::BudgetSpent {
                used: 2,
                requested: 2,
                ..
            }))
        ));
        // A refusal before the budget says so: no budget outcome.
        let denied = f.gate.evaluate(
            &p,
            &ActionRequest::AddComment {
                malop_id: MalopId::new("11.1"),
                text: "x".into(),
            },
            "r",
            Scope::Operator,
            &TargetFacts::new(),
            T0,
        );
        assert!(matches!(
            denied.decision,
            Decision::Deny(DenyReason::NotGranted { .. })
        ));
        assert!(denied.budget.is_none());
    }
}

#[test]
fn a_quorum_per_kind_and_a_large_blast_radius_set_how_many_approve() {
    let approvals = Approvals {
        required: [ActionKind::Isolate].into_iter().collect(),
        quorum: [(ActionKind::Isolate, 2)].into_iter().collect(),
        large: Some(LargeActions {
            machines: 5,
            quorum: 3,
        }),
        ..Approvals::default()
    };
    let f = gate_with_approvals(ProtectedAssets::default(), Vec::new(), approvals);
    let p = PluginPolicy::from(&iso_plugin());
    let held = |request: &ActionRequest, m: &[MachineGuid]| {
        f.gate.decide(&p, request, Scope::Operator, &facts(m), T0)
    };
    // An isolation of a few machines: its kind's quorum.
    let few = machines(5);
    let d = held(&isolate(few.clone()), &few);
    assert_eq!(
        d,
        Decision::AwaitApproval {
            kinds: vec![ActionKind::Isolate],
            quorum: 2
        }
    );
    assert!(d.to_string().contains("2 distinct operators"), "{d}");
    // More than five machines at once: the larger quorum.
    let many = machines(6);
    assert_eq!(
        held(&isolate(many.clone()), &many),
        Decision::AwaitApproval {
            kinds: vec![ActionKind::Isolate],
            quorum: 3
        }
    );
    // Un-isolating many machines is not destructive: no approval.
    let un = ActionRequest::Unisolate {
        malop_id: None,
        machines: many.clone(),
    };
    assert!(!matches!(held(&un, &many), Decision::AwaitApproval { .. }));
}

/// `[approvals.large]` counts the machines the invocation already reached: a large action
/// split into small calls is held once the calls together pass the limit.
#[test]
fn a_large_action_split_into_small_calls_is_held() {
    let approvals = Approvals {
        large: Some(LargeActions {
            machines: 2,
            quorum: 1,
        }),
        ..Approvals::default()
    };
    let f = gate_with_approvals(ProtectedAssets::default(), Vec::new(), approvals);
    let p = PluginPolicy::from(&iso_plugin());
    let all = machines(4);
    let decide = |call: &[MachineGuid], reached: &[MachineGuid]| {
        let facts = facts(&all).with_reached(reached.iter().cloned());
        f.gate
            .decide(&p, &isolate(call.to_vec()), Scope::Operator, &facts, T0)
    };
    assert!(matches!(decide(&all[..2], &[]), Decision::Allow { .. }));
    assert!(
        matches!(
            decide(&all[2..3], &all[..2]),
            Decision::AwaitApproval { .. }
        ),
        "a third machine after two"
    );
    assert!(
        matches!(decide(&all[..1], &all[..2]), Decision::Allow { .. }),
        "a machine already reached adds nothing"
    );
}
