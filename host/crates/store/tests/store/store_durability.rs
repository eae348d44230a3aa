//! The store on a real file: everything survives a reopen and a process crash, migrations
//! start from an empty file, and a database from a newer riposte is refused.

use riposte_domain::{
    ActionRequest, ElementGuid, MachineGuid, MalopId, PluginName, RemediationId, RemediationKind,
    RemediationTarget, Sha256Digest,
};
use riposte_store::prelude::*;
use riposte_store::{
    ActionMode, ActionState, Backoff, BeginOutcome, Error, Handled, NewAction, Outcome, Store,
    inverse_of, schema,
};
use std::path::Path;
use std::process::Command;

fn isolate(malop: &str, machines: &[&str]) -> ActionRequest {
    ActionRequest::Isolate {
        malop_id: Some(MalopId::new(malop)),
        machines: machines.iter().map(|m| MachineGuid::new(*m)).collect(),
    }
}

fn new_action(request: ActionRequest) -> NewAction {
    NewAction::new(
        PluginName::new("isolator"),
        Sha256Digest::of(b"isolator.wasm"),
        request,
        "ransomware on the machine",
    )
}

each_backend! {
    fn reopening_keeps_everything(db) {
        let plugin = PluginName::new("isolator");
        let malop = MalopId::new("11.-7780537507363356527");

        let (executed, held, undo_of) = {
            let store = db.open();
            store
                .set_watermark("crimes/unified:MalopProcess", 1_700_000_000_000, 50)
                .unwrap();
            store
                .mark_handled(&plugin, &malop, 1_700_000_000_500, 60)
                .unwrap();

            let executed = store
                .begin_action(&new_action(isolate("11.1", &["m1"])), 100)
                .unwrap()
                .action_id()
                .clone();
            store
                .mark_submitted(
                    &executed,
                    None,
                    &serde_json::json!({"m1": "Succeeded"}),
                    110,
                )
                .unwrap();
            store
                .finish(&executed, Outcome::Succeeded, None, 120)
                .unwrap();
            store
                .record_undo(
                    &executed,
                    &inverse_of(&isolate("11.1", &["m1"])).unwrap(),
                    120,
                )
                .unwrap();

            let remediation = ActionRequest::Remediate {
                malop_id: Some(MalopId::new("11.1")),
                targets: vec![RemediationTarget {
                    machine_guid: MachineGuid::new("m2"),
                    target_guid: ElementGuid::new("file-1"),
                    kind: RemediationKind::QuarantineFile,
                }],
            };
            let undo_of = store
                .begin_action(&new_action(remediation), 130)
                .unwrap()
                .action_id()
                .clone();
            store
                .mark_submitted(
                    &undo_of,
                    Some(&RemediationId::new("r-9")),
                    &serde_json::json!({}),
                    131,
                )
                .unwrap();

            let held = store
                .begin_action(
                    &new_action(isolate("11.2", &["m3"])).with_mode(ActionMode::AwaitApproval {
                        expires_at_ms: 10_000,
                        quorum: 1,
                    }),
                    140,
                )
                .unwrap()
                .action_id()
                .clone();

            store
                .spend("global", "isolate", &["m1".into()], 100, 3600, 5)
                .unwrap();
            store
                .record_trap("crashy", 150, &Backoff::default())
                .unwrap();
            store.kv_set("isolator", "seen", b"42", 1024, 160).unwrap();
            (executed, held, undo_of)
        };

        let store = db.open();
        assert_eq!(store.schema_version().unwrap(), schema::LATEST_VERSION);
        assert_eq!(
            store.watermark("crimes/unified:MalopProcess").unwrap(),
            Some(1_700_000_000_000)
        );
        assert!(
            store
                .is_handled(&plugin, &malop, 1_700_000_000_500, None)
                .unwrap()
        );
        assert!(
            !store
                .is_handled(&plugin, &malop, 1_700_000_000_501, None)
                .unwrap()
        );

        let record = store.get_action(&executed).unwrap();
        assert_eq!(record.state, ActionState::Succeeded);
        assert_eq!(record.request, isolate("11.1", &["m1"]));
        assert_eq!(
            store.get_undo(&executed).unwrap().unwrap().inverse,
            ActionRequest::Unisolate {
                malop_id: Some(MalopId::new("11.1")),
                machines: vec![MachineGuid::new("m1")]
            }
        );
        match store
            .begin_action(&new_action(isolate("11.1", &["m1"])), 200)
            .unwrap()
        {
            BeginOutcome::AlreadyExists(existing) => assert_eq!(existing.id, executed),
            other => panic!("the ledger forgot an executed action: {other:?}"),
        }

        let unresolved = store.unresolved_actions().unwrap();
        assert_eq!(unresolved.len(), 1);
        assert_eq!(unresolved[0].id, undo_of);
        assert_eq!(
            unresolved[0].remediation_id,
            Some(RemediationId::new("r-9"))
        );

        let pending = store.list_pending(200).unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].action.id, held);

        assert_eq!(store.used("global", "isolate", 3600, 200).unwrap(), 1);
        assert_eq!(store.last_action_on("m1").unwrap(), Some(100));
        assert_eq!(store.status(200).unwrap().paused_plugins.len(), 0);
        assert_eq!(
            store
                .record_trap("crashy", 300, &Backoff::default())
                .unwrap()
                .consecutive_traps,
            2
        );
        assert_eq!(
            store.kv_get("isolator", "seen").unwrap(),
            Some(b"42".to_vec())
        );
    }
}

#[test]
fn the_file_is_in_wal_mode_with_the_schema_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    drop(Store::open(&path).unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let (version, name): (i64, String) = conn
        .query_row(
            "SELECT version, name FROM schema_version ORDER BY version DESC",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(version, schema::LATEST_VERSION);
    assert!(!name.is_empty());
}

#[test]
fn an_empty_file_is_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.db");
    std::fs::write(&path, b"").unwrap();
    let store = Store::open(&path).unwrap();
    assert_eq!(store.schema_version().unwrap(), schema::LATEST_VERSION);
    store.set_watermark("s", 1, 1).unwrap();
    drop(store);
    // Opening again applies nothing twice.
    let store = Store::open(&path).unwrap();
    assert_eq!(store.watermark("s").unwrap(), Some(1));
    let conn = rusqlite::Connection::open(&path).unwrap();
    let rows: i64 = conn
        .query_row("SELECT COUNT(*) FROM schema_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, schema::MIGRATIONS.len() as i64);
}

#[test]
fn a_database_from_a_newer_riposte_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("future.db");
    drop(Store::open(&path).unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute(
        "INSERT INTO schema_version (version, name, applied_at_ms) VALUES (?1, 'from the future', 0)",
        [schema::LATEST_VERSION + 1],
    )
    .unwrap();
    drop(conn);

    let err = Store::open(&path).unwrap_err();
    match &err {
        Error::FutureSchema { found, known, .. } => {
            assert_eq!(*found, schema::LATEST_VERSION + 1);
            assert_eq!(*known, schema::LATEST_VERSION);
        }
        other => panic!("expected a future-schema error, got {other:?}"),
    }
    let text = err.to_string();
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(text.contains("newer"), "{text}");
}

#[test]
fn a_file_that_is_not_a_database_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("junk.db");
    std::fs::write(&path, vec![0x42; 8192]).unwrap();
    let text = Store::open(&path).unwrap_err().to_string();
    assert!(text.contains("junk.db"), "{text}");
}

const CRASH_ENV: &str = "RIPOSTE_STORE_CRASH_CHILD_DB";

/// The child half of `a_planned_action_survives_a_crash`: records an action and aborts the
/// process before anything else can happen.
#[test]
fn crash_child() {
    let Some(path) = std::env::var_os(CRASH_ENV) else {
        return;
    };
    let store = Store::open(Path::new(&path)).unwrap();
    let outcome = store
        .begin_action(&new_action(isolate("11.9", &["m9"])), 1_000)
        .unwrap();
    assert!(matches!(outcome, BeginOutcome::New(_)));
    // A shadowed action is committed without an fsync (deferred durability), then a group
    // of handled marks durably: both are in the WAL file, so a crash of the process keeps
    // them.
    let shadowed = new_action(isolate("11.8", &["m8"])).with_mode(ActionMode::Shadow);
    assert!(matches!(
        store.begin_action(&shadowed, 1_001).unwrap(),
        BeginOutcome::New(_)
    ));
    let marks: Vec<Handled> = (0..3)
        .map(|i| Handled {
            plugin: PluginName::new("isolator"),
            malop_id: MalopId::new(format!("11.{i}")),
            last_update_ms: 500 + i,
            unreadable: Vec::new(),
        })
        .collect();
    store.mark_handled_all(&marks, 1_002).unwrap();
    // The server call would happen here. The process dies without any cleanup.
    std::process::abort();
}

#[test]
fn a_planned_action_survives_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.db");
    let status = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "store_durability::crash_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CRASH_ENV, &path)
        .status()
        .unwrap();
    assert!(!status.success(), "the child must die by abort");

    let store = Store::open(&path).unwrap();
    let unresolved = store.unresolved_actions().unwrap();
    assert_eq!(
        unresolved.len(),
        1,
        "the Planned row was committed before the call"
    );
    assert_eq!(unresolved[0].state, ActionState::Planned);
    assert_eq!(unresolved[0].request, isolate("11.9", &["m9"]));
    let shadowed = new_action(isolate("11.8", &["m8"])).with_mode(ActionMode::Shadow);
    let kept = store.find_action_by_key(&shadowed.key).unwrap();
    assert_eq!(kept.map(|a| a.state), Some(ActionState::Shadowed));
    let isolator = PluginName::new("isolator");
    for i in 0..3 {
        assert!(
            store
                .is_handled(&isolator, &MalopId::new(format!("11.{i}")), 500 + i, None)
                .unwrap(),
            "the group-committed mark of 11.{i} survived"
        );
    }
    match store
        .begin_action(&new_action(isolate("11.9", &["m9"])), 2_000)
        .unwrap()
    {
        BeginOutcome::AlreadyExists(existing) => assert_eq!(existing.state, ActionState::Planned),
        other => panic!("a restart must not plan the action again: {other:?}"),
    }
}
