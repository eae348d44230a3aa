//! The policy gate: one test per deny reason, fan-out budgets, sliding windows with an
//! injected clock, cooldowns, shadow mode and approvals.

use riposte::config::{ActionSelector, Budget, Mode, PluginConfig, ProtectedAssets};
use riposte::domain::{
    ActionKind, ActionRequest, ElementGuid, KeyKind, MachineGuid, MalopId, ManagementStatus,
    Operation, PluginName, RemediationKind, RemediationTarget, ReputationKey, Sha256Digest,
    Verdict,
};
use riposte::policy::{
    ArgumentError, BudgetLedger, BudgetScope, Decision, DenyReason, Disposition, ErrorCategory,
    Gate, MemoryLedger, PluginPolicy, ProtectionRule, Refusal, SpendPlan, TargetFacts, TargetKey,
};
use std::collections::BTreeSet;
use std::sync::Arc;

const T0: i64 = 1_700_000_000_000;
const HOUR: u64 = 3600;

fn plugin(name: &str, operations: &[Operation], remediation: &[RemediationKind]) -> PluginConfig {
    let mut p = PluginConfig::new(name, "p.wasm", Sha256Digest::of(b"p"));
    p.mode = Mode::Enforce;
    p.grants.operations = operations.iter().copied().collect();
    p.grants.remediation = remediation.iter().copied().collect();
    p
}

fn iso_plugin() -> PluginConfig {
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
    let ledger = Arc::new(MemoryLedger::new());
    let gate = Gate::from_parts(
        &protected,
        global,
        approvals.iter().copied().collect::<BTreeSet<_>>(),
        ledger.clone(),
    )
    .unwrap();
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
    let d = f.gate.decide(&p, &isolate(m.clone()), &facts(&m), T0);
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
    let reason = deny(f.gate.decide(&p, &req, &facts(&machines(1)), T0));
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
        let d = f.gate.decide(&p, &req, &none, T0);
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
        deny(f.gate.decide(&p, &isolate(ms), &facts, T0))
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
        f.gate.decide(&p, &unisolate, &facts, T0),
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
        f.gate.decide(&p, &unquarantine, &facts, T0),
        Decision::Allow { .. }
    ));
    let quarantine = ActionRequest::Remediate {
        malop_id: None,
        targets: vec![target(RemediationKind::QuarantineFile)],
    };
    assert!(matches!(
        deny(f.gate.decide(&p, &quarantine, &facts, T0)),
        DenyReason::ProtectedTarget { .. }
    ));
}

#[test]
fn protected_reputation_values_cannot_be_blacklisted() {
    let f = gate_with(protected(), vec![], &[]);
    let p = PluginPolicy::from(&plugin("rep", &[Operation::SetReputation], &[]));
    let req = |verdict| ActionRequest::SetReputation {
        keys: vec![
            key(KeyKind::Domain, "evil.net"),
            key(KeyKind::Domain, "Login.Example.com"),
        ],
        verdict,
        prevent: false,
    };
    let none = TargetFacts::new();
    let reason = deny(f.gate.decide(&p, &req(Verdict::Blacklist), &none, T0));
    assert!(
        matches!(&reason, DenyReason::ProtectedTarget { rule: ProtectionRule::ReputationGlob(g), .. } if g == "*.example.com"),
        "{reason}"
    );
    assert!(matches!(
        f.gate.decide(&p, &req(Verdict::Whitelist), &none, T0),
        Decision::Allow { .. }
    ));
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
    let d = f.gate.decide(&p, &isolate(m.clone()), &facts(&m), T0);
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
        f.gate.decide(&p, &comment, &TargetFacts::new(), T0),
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
        f.gate.decide(&p, &mixed, &facts(&machines(1)), T0),
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
    let d = f.gate.decide(&p, &req, &facts(&m), T0);
    assert_eq!(
        d,
        Decision::AwaitApproval {
            kinds: vec![ActionKind::Isolate]
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
        f.gate.decide(&p, &un, &facts(&m), T0),
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
    let d = f.gate.decide(&p, &isolate(m.clone()), &facts(&m), T0);
    assert!(
        matches!(&d, Decision::Allow { charges } if charges.len() == 40),
        "{d}"
    );
    assert_eq!(d.to_string(), "allowed; spends 40 × isolate");
    let status = f.gate.budget_status(Some(&p), T0).unwrap();
    assert_eq!((status[0].used, status[0].remaining), (40, 0));

    let one = vec![MachineGuid::new("another")];
    let reason = deny(
        f.gate
            .decide(&p, &isolate(one.clone()), &facts(&one), T0 + 1),
    );
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
    let reason = deny(f.gate.decide(&p, &isolate(m.clone()), &facts(&m), T0));
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
        f.gate.decide(&p, &isolate(m.clone()), &facts(&m), T0),
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
        f.gate.decide(&a, &isolate(m[..2].to_vec()), &facts(&m), T0),
        Decision::Allow { .. }
    ));
    let reason = deny(f.gate.decide(&b, &isolate(m[2..].to_vec()), &facts(&m), T0));
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
    let reason = deny(f.gate.decide(&a, &isolate(m[2..].to_vec()), &facts(&m), T0));
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
        f.gate
            .decide(&p, &isolate(vec![m[i].clone()]), &facts(&m), at)
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
    cfg.budgets = vec![budget(
        ActionSelector::Kind(ActionKind::SetReputation),
        3,
        HOUR,
    )];
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
    let d = f.gate.decide(&p, &req, &facts(&machines(2)), T0);
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
    let reason = deny(f.gate.decide(&p, &req, &facts(&machines(2)), T0));
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
        f.gate.decide(&p, &isolate(vec![m[0].clone()]), &fx, T0),
        Decision::Allow { .. }
    ));
    let d = f.gate.decide(&p, &isolate(m.clone()), &fx, T0 + 1000);
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
        f.gate
            .decide(&p, &isolate(vec![m[1].clone()]), &fx, T0 + 1000),
        Decision::Allow { .. }
    ));
    // Another kind on the same target is not cooling down.
    let un = ActionRequest::Unisolate {
        malop_id: None,
        machines: vec![m[0].clone()],
    };
    assert!(matches!(
        f.gate.decide(&p, &un, &fx, T0 + 2000),
        Decision::Allow { .. }
    ));
    // Another plugin is not affected.
    let mut other = iso_plugin();
    other.name = PluginName::new("other");
    let other = PluginPolicy::from(&other);
    assert!(matches!(
        f.gate
            .decide(&other, &isolate(vec![m[0].clone()]), &fx, T0 + 3000),
        Decision::Allow { .. }
    ));
    // After the cooldown, it may act again.
    assert!(matches!(
        f.gate
            .decide(&p, &isolate(vec![m[0].clone()]), &fx, T0 + 600_000),
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
                            gate.decide(&p, &isolate(m.clone()), &facts(&m), T0),
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
    fn try_spend(&self, _: &SpendPlan<'_>) -> Result<Option<Refusal>, riposte::policy::Error> {
        Err(riposte::policy::Error::Ledger("database is locked".into()))
    }
    fn used(
        &self,
        _: Option<&PluginName>,
        _: ActionSelector,
        _: i64,
    ) -> Result<u64, riposte::policy::Error> {
        Err(riposte::policy::Error::Ledger("database is locked".into()))
    }
}

#[test]
fn a_failing_ledger_fails_closed() {
    let gate = Gate::from_parts(
        &ProtectedAssets::default(),
        vec![],
        BTreeSet::new(),
        Arc::new(BrokenLedger),
    )
    .unwrap();
    let p = PluginPolicy::from(&iso_plugin());
    let m = machines(1);
    let d = gate.decide(&p, &isolate(m.clone()), &facts(&m), T0);
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
    assert_eq!(r.kind, riposte::audit::DecisionKind::Deny);
    assert_eq!(r.category, Some(ErrorCategory::Denied));
    assert_eq!(r.detail, d.to_string());
    let json = serde_json::to_value(&d).unwrap();
    assert_eq!(json["decision"], "deny");
}
