//! The operator-facing flows on a real database of each backend: approvals (bound to the hash, expiry, decided
//! once, claimed once), undo, crash-loop backoff and budgets with injected time.

use riposte_domain::{
    ActionRequest, KeyKind, MachineGuid, MalopId, PluginName, ReputationKey, Sha256Digest, Verdict,
};
use riposte_store::prelude::*;
use riposte_store::{
    ActionMode, ActionState, Backoff, BeginOutcome, BudgetCharge, NewAction, Outcome, Refusal,
    SpendOutcome, Store, Vote, inverse_of, request_hash,
};

fn isolate(machine: &str) -> NewAction {
    NewAction::new(
        PluginName::new("isolator"),
        Sha256Digest::of(b"isolator.wasm"),
        ActionRequest::Isolate {
            malop_id: Some(MalopId::new("11.5")),
            machines: vec![MachineGuid::new(machine)],
        },
        "lateral movement",
    )
}

fn held(store: &Store, machine: &str, now: i64, expires_at_ms: i64) -> riposte_store::ActionId {
    held_for(store, machine, now, expires_at_ms, 1)
}

fn held_for(
    store: &Store,
    machine: &str,
    now: i64,
    expires_at_ms: i64,
    quorum: u32,
) -> riposte_store::ActionId {
    let new = isolate(machine).with_mode(ActionMode::AwaitApproval {
        expires_at_ms,
        quorum,
    });
    match store.begin_action(&new, now).unwrap() {
        BeginOutcome::New(id) => id,
        other => panic!("{other:?}"),
    }
}

each_backend! {
    fn approval_is_bound_decided_once_and_claimed_once(db) {
        let store = db.open();
        let id = held(&store, "m1", 0, 60_000);

        // A second request for the same action while it waits does not enqueue it again.
        match store
            .begin_action(
                &isolate("m1").with_mode(ActionMode::AwaitApproval {
                    expires_at_ms: 90_000,
                    quorum: 1,
                }),
                5,
            )
            .unwrap()
        {
            BeginOutcome::AlreadyExists(existing) => {
                assert_eq!(existing.id, id);
                assert_eq!(existing.state, ActionState::AwaitingApproval);
            }
            other => panic!("{other:?}"),
        }
        let pending = store.list_pending(10).unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(
            pending[0].action_hash,
            request_hash(&pending[0].action.request)
        );
        assert_eq!(pending[0].expires_at_ms, 60_000);

        // Bound to the exact action: the hash of another request is refused.
        let other = request_hash(&ActionRequest::Isolate {
            malop_id: Some(MalopId::new("11.5")),
            machines: vec![MachineGuid::new("m1"), MachineGuid::new("m2")],
        });
        let err = store.approve(&id, "alice", Some(&other), 20).unwrap_err();
        assert!(
            matches!(err.refusal(), Some(Refusal::SeenHashMismatch { .. })),
            "{err}"
        );
        assert!(err.to_string().contains("approve"), "{err}");

        // Nothing to claim before the approval.
        assert!(store.claim_approved(25).unwrap().is_empty());

        let approved = match store
            .approve(&id, "alice", Some(&pending[0].action_hash), 30)
            .unwrap()
        {
            Vote::Approved(approved) => approved,
            other => panic!("a quorum of one is reached by one approval: {other:?}"),
        };
        assert_eq!(approved.action.state, ActionState::Approved);

        let twice = store.approve(&id, "bob", None, 31).unwrap_err();
        assert!(
            matches!(twice.refusal(), Some(Refusal::AlreadyDecided { .. })),
            "{twice}"
        );
        assert!(store.deny(&id, "bob", 32).is_err());

        let claimed = store.claim_approved(40).unwrap();
        assert_eq!(claimed.len(), 1);
        assert_eq!(claimed[0].action.state, ActionState::Planned);
        assert_eq!((claimed[0].approved_by.clone(), claimed[0].approved_at_ms), (vec!["alice".to_owned()], 30));
        assert!(store.claim_approved(41).unwrap().is_empty(), "claimed once");

        // From here it is an ordinary action, recoverable after a crash.
        assert_eq!(store.unresolved_actions().unwrap()[0].id, id);
        store
            .mark_submitted(&id, None, &serde_json::json!({"m1": "ok"}), 50)
            .unwrap();
        store.finish(&id, Outcome::Succeeded, None, 60).unwrap();
    }
}

each_backend! {
    fn approvals_expire_and_deny(db) {
        let store = db.open();
        let expiring = held(&store, "m1", 0, 1_000);
        let denied = held(&store, "m2", 0, 1_000);
        let late = held(&store, "m3", 0, 1_000);

        store.deny(&denied, "alice", 500).unwrap();
        assert_eq!(
            store.get_action(&denied).unwrap().state,
            ActionState::Denied
        );
        assert!(store.approve(&denied, "bob", None, 501).is_err());

        assert_eq!(store.list_pending(999).unwrap().len(), 2);
        let err = store.approve(&late, "alice", None, 1_000).unwrap_err();
        assert!(matches!(
            err.refusal(),
            Some(Refusal::ApprovalExpired {
                expired_at_ms: 1_000,
                ..
            })
        ));
        assert_eq!(store.expire_due(1_000).unwrap(), vec![expiring.clone()]);
        for id in [&expiring, &late] {
            assert_eq!(store.get_action(id).unwrap().state, ActionState::Expired);
        }
        assert!(store.list_pending(1_000).unwrap().is_empty());
        assert!(store.claim_approved(2_000).unwrap().is_empty());
        assert_eq!(store.status(2_000).unwrap().pending_approvals, 0);
    }
}

each_backend! {
    fn undo_applies_the_recorded_inverse_once(db) {
        let store = db.open();
        let request = ActionRequest::SetReputation {
            keys: vec![ReputationKey {
                kind: KeyKind::FileHash,
                value: "44d88612fea8a8f36de82e1278abb02f".into(),
            }],
            verdict: Verdict::Blacklist,
            prevent: true,
        };
        let new = NewAction::new(
            PluginName::new("reputation"),
            Sha256Digest::of(b"reputation.wasm"),
            request.clone(),
            "known bad",
        );
        let id = store.begin_action(&new, 1).unwrap().action_id().clone();
        store
            .mark_submitted(&id, None, &serde_json::json!({}), 2)
            .unwrap();
        let inverse = inverse_of(&request).unwrap();
        store.record_undo(&id, &inverse, 2).unwrap();
        store.finish(&id, Outcome::Succeeded, None, 3).unwrap();

        // `riposte undo <id>`: the inverse, as an action of its own.
        let original = store.get_action(&id).unwrap();
        let undo = store.get_undo(&id).unwrap().unwrap();
        assert_eq!(
            undo.inverse,
            ActionRequest::RemoveReputation {
                keys: match &request {
                    ActionRequest::SetReputation { keys, .. } => keys.clone(),
                    _ => unreachable!(),
                }
            }
        );
        let undo_new = NewAction::undo(&original, undo.inverse.clone(), "operator: false positive");
        let undo_id = match store.begin_action(&undo_new, 10).unwrap() {
            BeginOutcome::New(undo_id) => undo_id,
            other => panic!("{other:?}"),
        };
        // Asking again (a second `riposte undo`, or a retry) finds the same undo action.
        let again = NewAction::undo(&original, undo.inverse, "again");
        assert!(matches!(
            store.begin_action(&again, 11).unwrap(),
            BeginOutcome::AlreadyExists(_)
        ));

        store
            .mark_submitted(&undo_id, None, &serde_json::json!({}), 12)
            .unwrap();
        store
            .finish(&undo_id, Outcome::Succeeded, None, 13)
            .unwrap();
        store.mark_undone(&id, &undo_id, "alice", 14).unwrap();

        assert_eq!(store.get_action(&id).unwrap().state, ActionState::Undone);
        assert_eq!(
            store.get_action(&undo_id).unwrap().undo_of,
            Some(id.clone())
        );
        let record = store.get_undo(&id).unwrap().unwrap();
        assert_eq!(record.undone_by.as_deref(), Some("alice"));
        assert_eq!(record.undo_action_id, Some(undo_id.clone()));
        let twice = store.mark_undone(&id, &undo_id, "bob", 15).unwrap_err();
        assert!(
            matches!(twice.refusal(), Some(Refusal::AlreadyUndone { .. })),
            "{twice}"
        );
        assert!(
            store
                .record_undo(&id, &ActionRequest::RemoveReputation { keys: vec![] }, 16)
                .is_err()
        );

        // The plugin asking for the original again finds it undone and sends nothing.
        match store.begin_action(&new, 20).unwrap() {
            BeginOutcome::AlreadyExists(existing) => assert_eq!(existing.state, ActionState::Undone),
            other => panic!("{other:?}"),
        }
        // An action with no recorded inverse cannot be marked undone.
        let plain = store
            .begin_action(&isolate("m9"), 30)
            .unwrap()
            .action_id()
            .clone();
        assert!(
            store
                .mark_undone(&plain, &undo_id, "alice", 31)
                .unwrap_err()
                .is_not_found()
        );
    }
}

each_backend! {
    fn crash_loop_backoff_grows_and_resets(db) {
        let store = db.open();
        let backoff = Backoff {
            threshold: 2,
            base_ms: 10_000,
            max_ms: 40_000,
        };
        let mut now = 0;
        let mut pauses = Vec::new();
        for _ in 0..6 {
            let state = store.record_trap("crashy", now, &backoff).unwrap();
            pauses.push(state.paused_until_ms.map(|until| until - now));
            now = state.paused_until_ms.unwrap_or(now) + 1;
        }
        assert_eq!(
            pauses,
            vec![
                None,
                Some(10_000),
                Some(20_000),
                Some(40_000),
                Some(40_000),
                Some(40_000)
            ]
        );
        assert_eq!(store.paused_plugins(now - 2).unwrap()[0].plugin, "crashy");
        assert!(store.paused_plugins(now).unwrap().is_empty());

        store.record_success("crashy").unwrap();
        assert_eq!(
            store
                .record_trap("crashy", now, &backoff)
                .unwrap()
                .paused_until_ms,
            None
        );
        assert_eq!(
            store
                .record_trap("crashy", now + 1, &backoff)
                .unwrap()
                .paused_until_ms,
            Some(now + 1 + 10_000),
            "after a success the backoff starts over"
        );
        assert_eq!(store.paused_plugins(now + 2).unwrap()[0].total_traps, 8);
    }
}

each_backend! {
    fn budgets_are_all_or_nothing_and_slide(db) {
        let store = db.open();
        let charges = |max_global| {
            vec![
                BudgetCharge {
                    scope: "plugin:isolator".into(),
                    kind: "isolate".into(),
                    window_secs: 3_600,
                    max: 4,
                },
                BudgetCharge {
                    scope: "global".into(),
                    kind: "isolate".into(),
                    window_secs: 600,
                    max: max_global,
                },
            ]
        };
        let machines = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let t0 = 1_700_000_000_000;

        assert_eq!(
            store
                .spend_all(&charges(3), &machines(&["m1", "m2"]), t0)
                .unwrap(),
            SpendOutcome::Granted { remaining: 1 }
        );
        // The global budget has room for one more, not two: nothing is charged anywhere.
        let refused = store
            .spend_all(&charges(3), &machines(&["m3", "m4"]), t0 + 1)
            .unwrap();
        assert!(
            matches!(refused, SpendOutcome::Exhausted { ref scope, used: 2, requested: 2, .. } if scope == "global")
        );
        assert_eq!(
            store
                .used("plugin:isolator", "isolate", 3_600, t0 + 1)
                .unwrap(),
            2
        );

        // Ten minutes later the global window has slid past the first spend; the hourly
        // plugin budget has not.
        let later = t0 + 600_000;
        assert_eq!(store.used("global", "isolate", 600, later).unwrap(), 0);
        assert_eq!(
            store
                .spend_all(&charges(3), &machines(&["m3", "m4"]), later)
                .unwrap(),
            SpendOutcome::Granted { remaining: 0 }
        );
        let full = store
            .spend_all(&charges(3), &machines(&["m5"]), later + 1)
            .unwrap();
        assert!(
            matches!(full, SpendOutcome::Exhausted { ref scope, .. } if scope == "plugin:isolator")
        );

        // Cooldowns read the last spend per target.
        assert_eq!(store.last_action_on("m1").unwrap(), Some(t0));
        assert_eq!(store.last_action_on("m4").unwrap(), Some(later));
        assert_eq!(
            store.prune_budget_events(t0).unwrap(),
            4,
            "two targets in two scopes"
        );
        assert_eq!(store.last_action_on("m1").unwrap(), None);
    }
}

each_backend! {
    fn a_quorum_needs_distinct_approvers_and_one_denial_denies(db) {
        let store = db.open();
        let id = held_for(&store, "m1", 0, 60_000, 2);
        let pending = store.list_pending(1).unwrap();
        assert_eq!((pending[0].quorum, pending[0].approved_by.len()), (2, 0));

        // The first approval is counted; the action still waits.
        let first = store.approve(&id, "os:alice", None, 10).unwrap();
        assert_eq!(
            first,
            Vote::Counted { approved_by: vec!["os:alice".to_owned()], quorum: 2 }
        );
        assert_eq!(store.get_action(&id).unwrap().state, ActionState::AwaitingApproval);
        assert!(store.claim_approved(11).unwrap().is_empty(), "not approved yet");
        assert_eq!(store.list_pending(12).unwrap()[0].approved_by, vec!["os:alice".to_owned()]);

        // The same person cannot approve twice.
        let again = store.approve(&id, "os:alice", None, 13).unwrap_err();
        assert!(
            matches!(again.refusal(), Some(Refusal::AlreadyApprovedBy { by, .. }) if by == "os:alice"),
            "{again}"
        );
        assert!(again.to_string().contains("other people"), "{again}");

        // A second person reaches the quorum; the claim names both.
        match store.approve(&id, "console:bob", None, 20).unwrap() {
            Vote::Approved(approved) => assert_eq!(
                approved.approved_by,
                vec!["os:alice".to_owned(), "console:bob".to_owned()]
            ),
            other => panic!("{other:?}"),
        }
        let claimed = store.claim_approved(30).unwrap();
        assert_eq!(claimed.len(), 1);
        assert_eq!(claimed[0].approved_by, vec!["os:alice".to_owned(), "console:bob".to_owned()]);
        assert_eq!(claimed[0].approved_at_ms, 20);

        // One denial denies an action that already has approvals.
        let other = held_for(&store, "m2", 0, 60_000, 3);
        store.approve(&other, "os:alice", None, 40).unwrap();
        store.approve(&other, "os:carol", None, 41).unwrap();
        store.deny(&other, "console:dave", 42).unwrap();
        assert_eq!(store.get_action(&other).unwrap().state, ActionState::Denied);
        assert!(store.approve(&other, "console:erin", None, 43).is_err());
        assert!(store.claim_approved(44).unwrap().is_empty());
    }
}

each_backend! {
    fn a_time_box_is_due_unless_confirmed_and_an_extension_moves_it(db) {
        let store = db.open();
        let executed = |machine: &str| {
            let BeginOutcome::New(id) = store.begin_action(&isolate(machine), 0).unwrap() else {
                panic!("new action");
            };
            store.mark_submitted(&id, None, &serde_json::json!({}), 1).unwrap();
            store.finish(&id, Outcome::Succeeded, None, 2).unwrap();
            store
                .record_undo(&id, &riposte_store::inverse_of(&isolate(machine).request).unwrap(), 2)
                .unwrap();
            id
        };
        let kept = executed("m1");
        let extended = executed("m2");
        let reverted = executed("m3");
        for id in [&kept, &extended, &reverted] {
            assert_eq!(store.start_time_box(id, 1_000, 10).unwrap().deadline_ms, 1_010);
        }
        // A second start keeps the first deadline.
        assert_eq!(store.start_time_box(&kept, 5_000, 20).unwrap().deadline_ms, 1_010);
        // Only an action that took effect gets a box.
        let planned = match store.begin_action(&isolate("m4"), 0).unwrap() {
            BeginOutcome::New(id) => id,
            other => panic!("{other:?}"),
        };
        assert!(store.start_time_box(&planned, 1_000, 10).is_err());

        // Announced once per deadline.
        assert_eq!(store.warn_time_boxes(1_010, 500).unwrap().len(), 3);
        assert!(store.warn_time_boxes(1_010, 600).unwrap().is_empty());

        store.confirm_time_box(&kept, "os:alice", 700).unwrap();
        let moved = store.extend_time_box(&extended, "console:bob", 10_000, 800).unwrap();
        assert_eq!((moved.deadline_ms, moved.warned_at_ms), (11_010, None));
        assert!(store.extend_time_box(&extended, "console:bob", 0, 801).is_err());

        let due: Vec<_> = store.due_time_boxes(1_010).unwrap().into_iter().map(|b| b.action_id).collect();
        assert_eq!(due, vec![reverted.clone()]);
        assert_eq!(store.warn_time_boxes(11_010, 900).unwrap().len(), 1, "the extension is announced again");

        // Undone: closed, neither due nor changeable.
        let BeginOutcome::New(undo) = store
            .begin_action(&NewAction::undo(&store.get_action(&reverted).unwrap(), riposte_store::inverse_of(&isolate("m3").request).unwrap(), "time limit"), 1_100)
            .unwrap()
        else {
            panic!("undo action");
        };
        store.mark_undone(&reverted, &undo, "riposte:time-limit", 1_200).unwrap();
        assert!(store.due_time_boxes(20_000).unwrap().iter().all(|b| b.action_id != reverted && b.action_id != kept));
        let closed = store.confirm_time_box(&reverted, "os:alice", 1_300).unwrap_err();
        assert!(matches!(closed.refusal(), Some(Refusal::TimeBoxClosed { .. })), "{closed}");
        let confirmed = store.extend_time_box(&kept, "os:alice", 1_000, 1_300).unwrap_err();
        assert!(closed.to_string().contains("reverted"), "{closed}");
        assert!(confirmed.to_string().contains("os:alice confirmed it"), "{confirmed}");
        let open: Vec<_> = store.open_time_boxes().unwrap().into_iter().map(|b| b.action_id).collect();
        assert_eq!(open, vec![extended]);
    }
}
