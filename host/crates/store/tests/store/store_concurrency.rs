//! Several threads, and several connections to one database (of each backend: a SQLite file,
//! or PostgreSQL as several hosts share it), racing for the same action, the same
//! approved action and the same budget: exactly one winner each time.

use riposte_domain::{ActionRequest, MachineGuid, MalopId, PluginName, Sha256Digest};
use riposte_store::prelude::*;
use riposte_store::{ActionMode, BeginOutcome, NewAction, SpendOutcome};
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

each_backend! {
    fn one_shared_store_begins_an_action_once(db) {
        let store = Arc::new(db.open());
        let shared = store.clone();
        let outcomes = race(move |_| shared.begin_action(&action(), 1).unwrap());
        assert_eq!(count_new(&outcomes), 1);
        let id = outcomes[0].action_id().clone();
        assert!(outcomes.iter().all(|o| *o.action_id() == id));
        assert_eq!(store.unresolved_actions().unwrap().len(), 1);
    }
}

each_backend! {
    fn separate_connections_to_one_file_begin_an_action_once(db) {
        let db = Arc::new(db);
        drop(db.open());
        let outcomes = race(move |_| {
            let store = db.open();
            store.begin_action(&action(), 1).unwrap()
        });
        assert_eq!(count_new(&outcomes), 1);
    }
}

each_backend! {
    fn an_approved_action_is_claimed_by_one_worker(db) {
        let db = Arc::new(db);
        let store = db.open();
        let held = action().with_mode(ActionMode::AwaitApproval {
            expires_at_ms: 1_000,
            quorum: 1,
        });
        let id = store.begin_action(&held, 1).unwrap().action_id().clone();
        store.approve(&id, "alice", None, 2).unwrap();
        drop(store);

        let claims = race(move |_| db.open().claim_approved(3).unwrap());
        let claimed: Vec<_> = claims.into_iter().flatten().collect();
        assert_eq!(claimed.len(), 1);
        assert_eq!(claimed[0].action.id, id);
    }
}

each_backend! {
    fn a_budget_is_never_overspent_under_contention(db) {
        let db = Arc::new(db);
        drop(db.open());
        let outcomes = race(move |i| {
            let store = db.open();
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
}

each_backend! {
    fn many_processes_can_open_a_fresh_file_at_once(db) {
        let db = Arc::new(db);
        let versions = race(move |_| db.open().schema_version().unwrap());
        assert!(
            versions
                .iter()
                .all(|v| *v == riposte_store::schema::LATEST_VERSION)
        );
    }
}

each_backend! {
    fn the_policy_ledger_is_never_overspent_across_connections(db) {
        use riposte_domain::ActionKind;
        use riposte_policy::{ActionSelector, Budget};
        use riposte_policy::{BudgetLedger, BudgetScope, Charge, SpendPlan, TargetKey};

        let db = Arc::new(db);
        drop(db.open());
        let outcomes = race(move |i| {
            let store = db.open();
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
}

each_backend! {
    fn a_lease_has_one_holder_among_racing_hosts(db) {
        let db = Arc::new(db);
        drop(db.open());
        let grants = race(move |i| {
            db.open()
                .acquire_lease("poller", &format!("host-{i}"), 10_000, 1)
                .unwrap()
        });
        let held: Vec<_> = grants.iter().filter(|g| g.is_held()).collect();
        assert_eq!(held.len(), 1, "{grants:?}");
        let holder = &held[0].lease().holder;
        assert!(grants.iter().all(|g| &g.lease().holder == holder));
    }
}
