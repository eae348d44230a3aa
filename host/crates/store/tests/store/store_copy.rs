//! Moving a deployment: a SQLite store filled through the repository traits, copied into a
//! fresh PostgreSQL database by `copy_database`, reads back the same through the traits and
//! carries on there; a target holding rows, or at another schema version, is refused with
//! nothing written.

use riposte_domain::{
    ActionKind, ActionRequest, KeyKind, MachineGuid, Malop, MalopId, MalopPart, PluginName,
    RemediationId, RemediationProgress, ReputationKey, Sha256Digest, Verdict,
};
use riposte_store::prelude::*;
use riposte_store::testing::TestDatabase;
use riposte_store::{
    ActionFilter, ActionId, ActionMode, ActionRecord, ActionState, Backoff, BeginOutcome,
    ChargeItem, Error, Handled, NewAction, Outcome, Refusal, Store, Unsent, copy_database,
    inverse_of, schema,
};

/// "Now" for the reads after the copy: after everything was written.
const NOW: i64 = 50_000;

fn plugin(name: &str) -> PluginName {
    PluginName::new(name)
}

fn new_action(name: &str, request: ActionRequest, mode: ActionMode) -> NewAction {
    NewAction::new(
        plugin(name),
        Sha256Digest::of(name.as_bytes()),
        request,
        "lateral movement",
    )
    .with_mode(mode)
}

fn isolate(machine: &str) -> ActionRequest {
    ActionRequest::Isolate {
        malop_id: Some(MalopId::new("11.5")),
        machines: vec![MachineGuid::new(machine)],
    }
}

fn blacklist(hash: &str) -> ActionRequest {
    ActionRequest::SetReputation {
        keys: vec![ReputationKey {
            kind: KeyKind::FileHash,
            value: hash.into(),
        }],
        verdict: Verdict::Blacklist,
        prevent: true,
    }
}

fn begin(store: &Store, new: &NewAction, now: i64) -> ActionId {
    match store.begin_action(new, now).unwrap() {
        BeginOutcome::New(id) => id,
        other => panic!("{other:?}"),
    }
}

fn malop(id: &str, last_update_ms: i64, unreadable: Vec<MalopPart>) -> Malop {
    let mut malop: Malop = serde_json::from_value(serde_json::json!({
        "id": id, "kind": "MalopProcess", "display_name": "x", "detection_type": "",
        "activity_types": [], "management_status": "UNREAD", "priority": "HIGH",
        "creation_time": 1, "last_update_time": last_update_ms}))
    .unwrap();
    malop.unreadable = unreadable;
    malop
}

/// What the test wrote, to look it up again on the target.
struct Filled {
    /// Every action request, as begun again on the target.
    begun: Vec<NewAction>,
    /// The action undone, and the action that undid it.
    undone: (ActionId, ActionId),
    /// The action approved and waiting to be claimed.
    approved: ActionId,
}

/// Fills `store` through the repository traits with a little of everything.
fn fill(store: &Store) -> Filled {
    let mut begun = Vec::new();

    // Succeeded, followed to its end.
    let done = new_action("isolator", isolate("m1"), ActionMode::Execute);
    let id = begin(store, &done, 100);
    store
        .mark_submitted(
            &id,
            Some(&RemediationId::new("r-1")),
            &serde_json::json!({"ok": true}),
            110,
        )
        .unwrap();
    store
        .record_progress(
            &id,
            RemediationProgress::InProgress,
            &serde_json::json!({"status": "IN_PROGRESS"}),
            120,
        )
        .unwrap();
    store
        .finish(&id, Outcome::Succeeded, Some("done"), 130)
        .unwrap();
    begun.push(done);

    // Shadowed; planned (its outcome unknown); failed once and planned again.
    let shadow = new_action("shadowy", isolate("m2"), ActionMode::Shadow);
    begin(store, &shadow, 200);
    begun.push(shadow);
    let planned = new_action("isolator", isolate("m3"), ActionMode::Execute);
    begin(store, &planned, 300);
    begun.push(planned);
    let retried = new_action("isolator", isolate("m4"), ActionMode::Execute);
    let retried_id = begin(store, &retried, 400);
    store
        .record_failed_attempt(&retried_id, "connection reset", Unsent::Failed, 3, 410)
        .unwrap();
    begun.push(retried);

    // Held for approval, one still pending (one approval of two) and one approved.
    let pending = new_action(
        "isolator",
        isolate("m5"),
        ActionMode::AwaitApproval {
            expires_at_ms: 90_000,
            quorum: 2,
        },
    );
    let pending_id = begin(store, &pending, 500);
    store.approve(&pending_id, "os:alice", None, 510).unwrap();
    begun.push(pending);
    let approve = new_action(
        "isolator",
        isolate("m6"),
        ActionMode::AwaitApproval {
            expires_at_ms: 90_000,
            quorum: 1,
        },
    );
    let approved = begin(store, &approve, 600);
    let hash = store
        .list_pending(610)
        .unwrap()
        .into_iter()
        .find(|p| p.action.id == approved)
        .unwrap()
        .action_hash;
    store.approve(&approved, "alice", Some(&hash), 620).unwrap();
    begun.push(approve);

    // Executed with its inverse recorded, then undone by an action of its own.
    let request = blacklist("44d88612fea8a8f36de82e1278abb02f");
    let original = new_action("reputation", request.clone(), ActionMode::Execute);
    let original_id = begin(store, &original, 700);
    store
        .mark_submitted(&original_id, None, &serde_json::json!({}), 710)
        .unwrap();
    store
        .record_undo(&original_id, &inverse_of(&request).unwrap(), 710)
        .unwrap();
    store
        .finish(&original_id, Outcome::Succeeded, None, 720)
        .unwrap();
    store.start_time_box(&original_id, 3_600_000, 725).unwrap();
    let record = store.get_action(&original_id).unwrap();
    let undo = store.get_undo(&original_id).unwrap().unwrap();
    let undo_new = NewAction::undo(&record, undo.inverse, "operator: false positive");
    let undo_id = begin(store, &undo_new, 800);
    store
        .mark_submitted(&undo_id, None, &serde_json::json!({}), 810)
        .unwrap();
    store
        .finish(&undo_id, Outcome::Succeeded, None, 820)
        .unwrap();
    store
        .mark_undone(&original_id, &undo_id, "bob", 830)
        .unwrap();
    begun.push(original);
    begun.push(undo_new);

    // Budgets: the gate's charges and the simple counters.
    let charges = [
        ChargeItem {
            kind: ActionKind::Isolate,
            target: "machine:m1".into(),
        },
        ChargeItem {
            kind: ActionKind::Isolate,
            target: "machine:m6".into(),
        },
    ];
    let spent = store.spend_charges::<(), Error>(&plugin("isolator"), &charges, 900, |_| Ok(None));
    assert!(spent.unwrap().is_none());
    store
        .spend(
            "global",
            "isolate",
            &["m1".to_owned(), "m6".to_owned()],
            910,
            3_600,
            10,
        )
        .unwrap();

    // Polling: watermarks, handled Malops (one offered with a part missing), incomplete ones.
    store
        .set_watermark("crimes/unified:MalopProcess", 1_000, 1_100)
        .unwrap();
    store
        .set_watermark("crimes/unified:MalopLogonSession", 2_000, 1_200)
        .unwrap();
    store
        .mark_handled(&plugin("isolator"), &MalopId::new("11.1"), 950, 1_300)
        .unwrap();
    let handled = Handled {
        plugin: plugin("shadowy"),
        malop_id: MalopId::new("11.2"),
        last_update_ms: 960,
        unreadable: vec![MalopPart::Suspects],
    };
    store.mark_handled_all(&[handled], 1_310).unwrap();
    store
        .record_incomplete(
            &malop("11.2", 960, vec![MalopPart::Suspects]),
            "suspects: 503",
            1_320,
            &|attempts| 1_000 * i64::from(attempts),
        )
        .unwrap();

    // Health: a plugin paused after its traps.
    let backoff = Backoff {
        threshold: 2,
        base_ms: 100_000,
        max_ms: 400_000,
    };
    store.record_trap("crashy", 1_400, &backoff).unwrap();
    store.record_trap("crashy", 1_410, &backoff).unwrap();

    // Key-value stores, bytes that are not UTF-8 included.
    store
        .kv_set("isolator", "seen", &[0, 159, 146, 150, 255], 4_096, 1_500)
        .unwrap();
    store
        .kv_set("isolator", "count", b"7", 4_096, 1_510)
        .unwrap();
    store
        .kv_set("reputation", "last", b"{\"hash\":\"44d8\"}", 4_096, 1_520)
        .unwrap();

    Filled {
        begun,
        undone: (original_id, undo_id),
        approved,
    }
}

/// Every action, in id order.
fn actions(store: &Store) -> Vec<ActionRecord> {
    let mut all = store.list_actions(&ActionFilter::default()).unwrap();
    all.sort_by(|a, b| a.id.cmp(&b.id));
    all
}

/// Everything `fill` wrote, as the repository traits read it back.
fn assert_same_state(source: &Store, target: &Store, filled: &Filled) {
    assert_eq!(source.status(NOW).unwrap(), target.status(NOW).unwrap());
    let all = actions(source);
    assert_eq!(all.len(), 8);
    assert_eq!(all, actions(target));
    assert_eq!(
        source.unresolved_actions().unwrap(),
        target.unresolved_actions().unwrap()
    );
    for record in &all {
        assert_eq!(
            target.find_action_by_key(&record.key).unwrap().as_ref(),
            Some(record)
        );
        assert_eq!(
            source.get_undo(&record.id).unwrap(),
            target.get_undo(&record.id).unwrap()
        );
    }
    let (undone, undo) = &filled.undone;
    let record = target.get_undo(undone).unwrap().unwrap();
    assert_eq!(record.undo_action_id.as_ref(), Some(undo));
    assert_eq!(record.undone_by.as_deref(), Some("bob"));
    assert_eq!(
        source.time_box(undone).unwrap(),
        target.time_box(undone).unwrap()
    );
    assert!(target.time_box(undone).unwrap().is_some());
    assert_eq!(
        target.get_action(undo).unwrap().undo_of.as_ref(),
        Some(undone)
    );
    assert_eq!(
        source.list_pending(NOW).unwrap(),
        target.list_pending(NOW).unwrap()
    );
    assert_eq!(target.list_pending(NOW).unwrap().len(), 1);

    for (plugin_name, kinds) in [
        (Some(plugin("isolator")), vec![ActionKind::Isolate]),
        (None, vec![ActionKind::Isolate, ActionKind::Blacklist]),
    ] {
        assert_eq!(
            source
                .charges_used(plugin_name.as_ref(), &kinds, 0)
                .unwrap(),
            target
                .charges_used(plugin_name.as_ref(), &kinds, 0)
                .unwrap()
        );
    }
    assert_eq!(
        target
            .last_charge(&plugin("isolator"), ActionKind::Isolate, "machine:m6")
            .unwrap(),
        Some(900)
    );
    assert_eq!(
        target.used("global", "isolate", 3_600, 1_000).unwrap(),
        source.used("global", "isolate", 3_600, 1_000).unwrap()
    );
    assert_eq!(target.used("global", "isolate", 3_600, 1_000).unwrap(), 2);
    assert_eq!(target.last_action_on("m6").unwrap(), Some(910));

    for source_name in [
        "crimes/unified:MalopProcess",
        "crimes/unified:MalopLogonSession",
        "never-polled",
    ] {
        assert_eq!(
            source.watermark(source_name).unwrap(),
            target.watermark(source_name).unwrap()
        );
    }
    let handled_cases: [(&str, &str, i64, Option<&[MalopPart]>); 5] = [
        ("isolator", "11.1", 950, None),
        ("isolator", "11.1", 951, None),
        ("isolator", "11.2", 960, None),
        ("shadowy", "11.2", 960, Some(&[MalopPart::Suspects])),
        ("shadowy", "11.2", 960, Some(&[])),
    ];
    for (name, malop_id, update, unreadable) in handled_cases {
        let on = |store: &Store| {
            store
                .is_handled(&plugin(name), &MalopId::new(malop_id), update, unreadable)
                .unwrap()
        };
        assert_eq!(
            on(source),
            on(target),
            "{name} {malop_id} {update} {unreadable:?}"
        );
    }
    assert!(
        target
            .is_handled(&plugin("isolator"), &MalopId::new("11.1"), 950, None)
            .unwrap()
    );
    assert_eq!(
        source.incomplete_summary().unwrap(),
        target.incomplete_summary().unwrap()
    );
    assert_eq!(
        source.due_incomplete(NOW, 10).unwrap(),
        target.due_incomplete(NOW, 10).unwrap()
    );
    assert_eq!(target.due_incomplete(NOW, 10).unwrap().len(), 1);

    assert_eq!(
        source.paused_plugins(2_000).unwrap(),
        target.paused_plugins(2_000).unwrap()
    );
    assert!(target.paused_until("crashy", 2_000).unwrap().is_some());

    for name in ["isolator", "reputation", "nobody"] {
        assert_eq!(source.kv_keys(name).unwrap(), target.kv_keys(name).unwrap());
        assert_eq!(
            source.kv_usage(name).unwrap(),
            target.kv_usage(name).unwrap()
        );
        for key in source.kv_keys(name).unwrap() {
            assert_eq!(
                source.kv_get(name, &key).unwrap(),
                target.kv_get(name, &key).unwrap()
            );
        }
    }
    assert_eq!(
        target.kv_get("isolator", "seen").unwrap().as_deref(),
        Some(&[0u8, 159, 146, 150, 255][..])
    );
}

#[test]
fn a_sqlite_deployment_moves_to_postgres_and_carries_on() {
    let sqlite = TestDatabase::sqlite();
    let source = sqlite.open();
    let filled = fill(&source);
    let postgres = TestDatabase::postgres();
    let target = postgres.open();

    let report = copy_database(&source, &target).unwrap();
    assert_eq!(report.schema_version, schema::LATEST_VERSION);
    assert_eq!(report.rows("actions"), Some(8));
    assert_eq!(report.rows("approvals"), Some(2));
    assert_eq!(report.rows("undo_records"), Some(1));
    assert_eq!(report.rows("budget_charges"), Some(2));
    assert_eq!(report.rows("budget_events"), Some(2));
    assert_eq!(report.rows("watermarks"), Some(2));
    assert_eq!(report.rows("handled_malops"), Some(2));
    assert_eq!(report.rows("incomplete_malops"), Some(1));
    assert_eq!(report.rows("plugin_health"), Some(1));
    assert_eq!(report.rows("plugin_kv"), Some(3));
    assert_eq!(report.rows("approval_votes"), Some(2));
    assert_eq!(report.rows("time_boxes"), Some(1));
    assert_eq!(report.total_rows(), 27);

    assert_same_state(&source, &target, &filled);
    // A new handle (another host) sees the same.
    assert_same_state(&source, &postgres.open(), &filled);

    // The target carries on where the source stopped: no action is begun twice, the
    // undone one stays undone, the approved one is claimed once.
    for new in &filled.begun {
        match target.begin_action(new, NOW).unwrap() {
            BeginOutcome::AlreadyExists(existing) => {
                let before = source.find_action_by_key(&new.key).unwrap().unwrap();
                assert_eq!(*existing, before);
            }
            other => panic!("begun again on the target: {other:?}"),
        }
    }
    assert_eq!(
        target.get_action(&filled.undone.0).unwrap().state,
        ActionState::Undone
    );
    let claimed = target.claim_approved(NOW).unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].action.id, filled.approved);
    assert!(target.claim_approved(NOW + 1).unwrap().is_empty());

    // ... and the source was left as it was.
    assert_eq!(actions(&source).len(), 8);
    assert_eq!(source.claim_approved(NOW).unwrap().len(), 1);
}

#[test]
fn a_target_holding_rows_is_refused_and_left_as_it_was() {
    let source = TestDatabase::sqlite().open();
    fill(&source);
    let postgres = TestDatabase::postgres();
    let target = postgres.open();
    target
        .kv_set("someone", "already", b"here", 4_096, 1)
        .unwrap();

    let err = copy_database(&source, &target).unwrap_err();
    assert_eq!(
        err.refusal(),
        Some(&Refusal::NotEmpty {
            table: "plugin_kv",
            rows: 1
        }),
        "{err}"
    );
    let text = err.to_string();
    assert!(text.contains(target.path()), "names the target: {text}");
    assert!(text.contains("empty"), "{text}");

    assert!(actions(&target).is_empty(), "no action was written");
    assert_eq!(target.kv_keys("isolator").unwrap(), Vec::<String>::new());
    assert_eq!(
        target.kv_keys("someone").unwrap(),
        vec!["already".to_owned()]
    );
    assert!(target.status(NOW).unwrap().sources.is_empty());

    // A target filled by an earlier copy is refused too: a copy never merges.
    let fresh = TestDatabase::postgres().open();
    copy_database(&source, &fresh).unwrap();
    let again = copy_database(&source, &fresh).unwrap_err();
    assert!(
        matches!(again.refusal(), Some(Refusal::NotEmpty { .. })),
        "{again}"
    );
    assert_eq!(actions(&fresh), actions(&source));
}

#[test]
fn a_database_at_another_schema_version_is_refused() {
    // The source: its schema_version says a newer riposte changed it after it was opened.
    let sqlite = TestDatabase::sqlite();
    let source = sqlite.open();
    fill(&source);
    let TestDatabase::Sqlite { path, .. } = &sqlite else {
        unreachable!("a SQLite database")
    };
    let raw = rusqlite::Connection::open(path).unwrap();
    raw.execute(
        "INSERT INTO schema_version (version, name, applied_at_ms) VALUES (?1, 'future', 1)",
        [schema::LATEST_VERSION + 1],
    )
    .unwrap();
    let target = TestDatabase::postgres().open();
    let err = copy_database(&source, &target).unwrap_err();
    assert_eq!(
        err.refusal(),
        Some(&Refusal::SchemaVersion {
            found: schema::LATEST_VERSION + 1,
            expected: schema::LATEST_VERSION
        }),
        "{err}"
    );
    assert!(
        err.to_string().contains(source.path()),
        "names the source: {err}"
    );
    assert!(actions(&target).is_empty());

    // The target: the same, on PostgreSQL.
    let source = TestDatabase::sqlite().open();
    fill(&source);
    let postgres = TestDatabase::postgres();
    let target = postgres.open();
    let mut raw = postgres.client();
    raw.execute(
        "INSERT INTO schema_version (version, name, applied_at_ms) VALUES ($1, 'future', 1)",
        &[&(schema::LATEST_VERSION + 1)],
    )
    .unwrap();
    let err = copy_database(&source, &target).unwrap_err();
    assert!(
        matches!(err.refusal(), Some(Refusal::SchemaVersion { .. })),
        "{err}"
    );
    assert!(
        err.to_string().contains(target.path()),
        "names the target: {err}"
    );
    assert!(actions(&target).is_empty());
    assert!(target.kv_keys("isolator").unwrap().is_empty());
}
