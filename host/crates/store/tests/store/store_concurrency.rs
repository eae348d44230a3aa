//! Several threads, and several connections to one file, racing for the same action, the same
//! approved action and the same budget: exactly one winner each time.

use riposte_domain::{ActionRequest, MachineGuid, MalopId, PluginName, Sha256Digest};
use riposte_store::prelude::*;
use riposte_store::{ActionMode, BeginOutcome, NewAction, SpendOutcome, Store};
use std::sync::{Arc, Barrier};
use std::thread;

const THREADS: usize = 8;

fn action() -> NewAction {
    NewAction::new(
        PluginName::new("isolator"),
        Sha256Digest::of(b"isolator.wasm"),
        ActionRequest::Isolate {
            malop_id: Some(MalopId::new("11.1")),
            machines: vec![MachineGuid::new("m1"), MachineGuid::new("m2")],
        },
        "race",
    )
}

/// Runs `f` on [`THREADS`] threads released together; returns their results.
fn race<T: Send + 'static>(f: impl Fn(usize) -> T + Send + Sync + 'static) -> Vec<T> {
    let f = Arc::new(f);
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|i| {
            let f = f.clone();
            let barrier = barrier.clone();
            thread::spawn(move || {
                barrier.wait();
                f(i)
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

fn count_new(outcomes: &[BeginOutcome]) -> usize {
    outcomes
        .iter()
        .filter(|o| matches!(o, BeginOutcome::New(_)))
        .count()
}

#[test]
fn one_shared_store_begins_an_action_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path().join("state.db")).unwrap());
    let shared = store.clone();
    let outcomes = race(move |_| shared.begin_action(&action(), 1).unwrap());
    assert_eq!(count_new(&outcomes), 1);
    let id = outcomes[0].action_id().clone();
    assert!(outcomes.iter().all(|o| *o.action_id() == id));
    assert_eq!(store.unresolved_actions().unwrap().len(), 1);
}

#[test]
fn separate_connections_to_one_file_begin_an_action_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    drop(Store::open(&path).unwrap());
    let outcomes = race(move |_| {
        let store = Store::open(&path).unwrap();
        store.begin_action(&action(), 1).unwrap()
    });
    assert_eq!(count_new(&outcomes), 1);
}

#[test]
fn an_approved_action_is_claimed_by_one_worker() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let store = Store::open(&path).unwrap();
    let held = action().with_mode(ActionMode::AwaitApproval {
        expires_at_ms: 1_000,
    });
    let id = store.begin_action(&held, 1).unwrap().action_id().clone();
    store.approve(&id, "alice", None, 2).unwrap();
    drop(store);

    let claims = race(move |_| Store::open(&path).unwrap().claim_approved(3).unwrap());
    let claimed: Vec<_> = claims.into_iter().flatten().collect();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].id, id);
}

#[test]
fn a_budget_is_never_overspent_under_contention() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    drop(Store::open(&path).unwrap());
    let outcomes = race(move |i| {
        let store = Store::open(&path).unwrap();
        store
            .spend("global", "isolate", &[format!("m{i}")], 10, 3600, 3)
            .unwrap()
    });
    let granted = outcomes.iter().filter(|o| o.is_granted()).count();
    assert_eq!(granted, 3);
    assert!(
        outcomes
            .iter()
            .filter(|o| !o.is_granted())
            .all(|o| matches!(
                o,
                SpendOutcome::Exhausted {
                    used: 3,
                    max: 3,
                    ..
                }
            ))
    );
}

#[test]
fn many_processes_can_open_a_fresh_file_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fresh.db");
    let versions = race(move |_| Store::open(&path).unwrap().schema_version().unwrap());
    assert!(
        versions
            .iter()
            .all(|v| *v == riposte_store::schema::LATEST_VERSION)
    );
}

#[test]
fn the_policy_ledger_is_never_overspent_across_connections() {
    use riposte_domain::ActionKind;
    use riposte_policy::{ActionSelector, Budget};
    use riposte_policy::{BudgetLedger, BudgetScope, Charge, SpendPlan, TargetKey};

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    drop(Store::open(&path).unwrap());
    let outcomes = race(move |i| {
        let store = Store::open(&path).unwrap();
        let plugin = PluginName::new(format!("plugin-{i}"));
        let charges = [Charge {
            kind: ActionKind::Isolate,
            target: TargetKey::Machine(MachineGuid::new(format!("m{i}"))),
        }];
        let plan = SpendPlan {
            plugin: &plugin,
            now_ms: 1_000,
            charges: &charges,
            limits: vec![(
                BudgetScope::Global,
                Budget {
                    action: ActionSelector::Any,
                    max: 3,
                    window_secs: 3_600,
                },
            )],
            cooldown_ms: 0,
        };
        store.try_spend(&plan).unwrap().is_none()
    });
    assert_eq!(outcomes.iter().filter(|spent| **spent).count(), 3);
}
