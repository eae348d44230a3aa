//! Shadow mode through the real service (issue 4, G5): a plugin in `mode = "shadow"` executes
//! nothing (the simulator receives no action request), and the complete would-be plan
//! (action, targets, arguments, reason, Malop) is in the audit trail and in the store's
//! ledger as shadowed; `promote` enforces the promoted kinds only.

use riposte_audit::Record;
use riposte_domain::{ActionRequest, ManagementStatus};
use riposte_e2e::gate_support::{Plugin, World, decision, invocations, records_of, status};
use riposte_store::prelude::*;
use riposte_store::{ActionFilter, ActionRecord, ActionState};
use std::collections::BTreeSet;

fn ledger(service: &riposte_service::Service, plugin: &str) -> Vec<ActionRecord> {
    service
        .store()
        .list_actions(&ActionFilter {
            plugin: Some(plugin.into()),
            ..ActionFilter::default()
        })
        .expect("the ledger lists")
}

/// The audit record of a gated action, found by the action id it names.
fn audited<'a>(records: &'a [Record], action: &ActionRecord) -> &'a Record {
    records
        .iter()
        .find(|r| r.decision.is_some() && r.result["action_id"] == action.id.as_str())
        .unwrap_or_else(|| panic!("the decision on {} is audited", action.id))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_plugins_execute_nothing_and_record_the_full_plan() {
    let world = World::new(4).await;
    let plugins = [
        Plugin::new("shadow-containment", "ransomware-containment")
            .shadow()
            .grant(&["get-malop", "isolate", "remediate"])
            .remediation(&["kill-process"]),
        Plugin::new("shadow-cleanup", "cleanup")
            .shadow()
            .grant(&["get-malop", "remediate"])
            .remediation(&["quarantine-file", "delete-registry-key"]),
        Plugin::new("shadow-feed", "reputation-feed")
            .shadow()
            .grant(&["get-malop", "set-reputation"]),
    ];
    let service = world.start("", &plugins).await.expect("the service starts");
    service.run_cycle().await.expect("the cycle runs");
    let records = world.audit();

    // Nothing executed.
    assert_eq!(
        world.action_requests(),
        Vec::new(),
        "no action request reached the server"
    );
    assert!(
        world
            .sim
            .machines()
            .iter()
            .all(|m| !m.isolated && m.primed.is_none())
    );
    world.sim.with_state(|s| {
        assert!(s.remediations.is_empty() && s.reputations.is_empty());
    });

    let mut kinds_seen = BTreeSet::new();
    for plugin in ["shadow-containment", "shadow-cleanup", "shadow-feed"] {
        for run in invocations(&records, plugin) {
            assert_eq!(status(run), "completed", "{plugin}: {:?}", run.result);
        }
        let actions = ledger(&service, plugin);
        assert!(!actions.is_empty(), "{plugin} planned something");
        for action in &actions {
            assert_eq!(action.state, ActionState::Shadowed, "{action:?}");
            assert!(!action.reason.is_empty());
            let record = audited(&records, action);
            // The would-be plan in the audit trail is the ledger's, in full.
            assert_eq!(decision(record).0, "shadow");
            assert_eq!(record.plugin.as_ref().map(|p| p.as_str()), Some(plugin));
            assert_eq!(record.call.as_str(), action.request.operation().name());
            assert_eq!(
                record.arguments["request"],
                serde_json::to_value(&action.request).unwrap(),
                "action, targets and arguments"
            );
            assert_eq!(record.arguments["reason"], action.reason.as_str());
            let malop = record.malop.as_ref().expect("the Malop that led to it");
            if let Some(in_ledger) = &action.malop_id {
                assert_eq!(in_ledger, malop);
            }
            kinds_seen.insert(record.call.as_str().to_owned());
        }
        assert_eq!(
            records_of(&records, plugin, "action-result").len(),
            0,
            "{plugin}: no action was carried out"
        );
    }
    assert_eq!(
        kinds_seen,
        ["isolate", "remediate", "set-reputation"]
            .map(str::to_owned)
            .into(),
        "every kind of action the plugins plan was recorded"
    );

    // The plan is the real one: containment would isolate exactly the connected machines of
    // each ransomware Malop, and the feed would blacklist its root cause.
    let mut ransomware = 0;
    for id in world.malop_ids() {
        let malop = world.malop(&id).await;
        if !malop.activity_types.iter().any(|a| a == "RANSOMWARE") {
            continue;
        }
        ransomware += 1;
        let connected: Vec<_> = malop
            .machines
            .iter()
            .filter(|m| m.connected && !m.isolated)
            .map(|m| m.guid.clone())
            .collect();
        let isolate = ledger(&service, "shadow-containment")
            .into_iter()
            .find(|a| {
                a.malop_id.as_ref() == Some(&id)
                    && matches!(a.request, ActionRequest::Isolate { .. })
            })
            .expect("a would-be isolation of the ransomware Malop");
        let ActionRequest::Isolate { machines, .. } = &isolate.request else {
            unreachable!()
        };
        assert_eq!(machines, &connected);
        let feed: Vec<&Record> = records_of(&records, "shadow-feed", "set-reputation")
            .into_iter()
            .filter(|r| r.malop.as_ref() == Some(&id))
            .collect();
        let hash = malop.root_causes[0].hashes[0].to_ascii_lowercase();
        assert!(
            feed.iter().any(|r| r.arguments.to_string().contains(&hash)),
            "the root cause {hash} is in the would-be blacklist: {feed:?}"
        );
    }
    assert!(ransomware > 0, "the world has a ransomware Malop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promoted_comments_run_while_the_rest_stays_shadowed() {
    let world = World::new(3).await;
    let triage = Plugin::new("triage", "python-triage")
        .shadow()
        .promote(&["add-comment"])
        .grant(&["add-comment", "set-status"])
        .value("min-priority", "LOW");
    let comments_before: Vec<usize> = world
        .sim
        .malops()
        .iter()
        .map(|m| m.comments.len())
        .collect();
    let service = world
        .start("", &[triage])
        .await
        .expect("the service starts");
    service.run_cycle().await.expect("the cycle runs");
    let records = world.audit();

    for run in invocations(&records, "triage") {
        assert_eq!(status(run), "completed", "{:?}", run.result);
    }
    let comments = records_of(&records, "triage", "add-comment");
    let statuses = records_of(&records, "triage", "set-status");
    assert_eq!(comments.len(), 3, "one comment per Malop");
    assert_eq!(statuses.len(), 3, "one status change per Malop");
    for record in &comments {
        assert_eq!(decision(record).0, "allow");
    }
    for record in &statuses {
        assert_eq!(decision(record).0, "shadow");
        assert_eq!(record.arguments["request"]["status"], "OPEN");
    }

    // On the server: the comments, and no status change.
    let sent = world.action_requests();
    assert_eq!(sent.len(), 3, "{sent:?}");
    assert!(
        sent.iter()
            .all(|r| r.path.starts_with("/rest/crimes/comment/")),
        "only comments were sent: {sent:?}"
    );
    for (malop, before) in world.sim.malops().iter().zip(comments_before) {
        assert_eq!(malop.comments.len(), before + 1, "{}", malop.guid);
        let added = malop.comments.last().unwrap();
        assert!(
            added.message.starts_with("[riposte triage]"),
            "{}",
            added.message
        );
        assert_eq!(malop.status, ManagementStatus::Unread, "status untouched");
    }

    // In the ledger: comments carried out, status changes shadowed.
    for action in ledger(&service, "triage") {
        match action.request {
            ActionRequest::AddComment { .. } => assert_eq!(action.state, ActionState::Succeeded),
            ActionRequest::SetStatus { .. } => assert_eq!(action.state, ActionState::Shadowed),
            other => panic!("unexpected action {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enforcing_a_plugin_after_shadow_mode_carries_out_its_plan_once() {
    let world = World::new(2).await;
    let feed = || Plugin::new("feed", "reputation-feed").grant(&["get-malop", "set-reputation"]);
    let touch_all = || {
        for id in world.malop_ids() {
            world.sim.touch_malop(&id);
        }
    };

    // Shadow mode, twice: the plan is recorded once, nothing is sent.
    let service = world.start("", &[feed().shadow()]).await.unwrap();
    service.run_cycle().await.unwrap();
    let planned = ledger(&service, "feed");
    assert!(!planned.is_empty());
    touch_all();
    service.run_cycle().await.unwrap();
    assert_eq!(
        ledger(&service, "feed").len(),
        planned.len(),
        "no duplicate plan"
    );
    assert!(world.action_requests().is_empty());
    drop(service);

    // The operator enforces it: the Malops' next update carries the plan out...
    let service = world.start("", &[feed()]).await.unwrap();
    touch_all();
    service.run_cycle().await.unwrap();
    let sent = world.action_requests().len();
    assert_eq!(sent, planned.len(), "each planned action sent once");
    let executed: Vec<ActionRecord> = ledger(&service, "feed")
        .into_iter()
        .filter(|a| a.state == ActionState::Succeeded)
        .collect();
    let mut requests: Vec<String> = executed
        .iter()
        .map(|a| format!("{:?}", a.request))
        .collect();
    let mut plan: Vec<String> = planned.iter().map(|a| format!("{:?}", a.request)).collect();
    requests.sort();
    plan.sort();
    assert_eq!(requests, plan, "what runs is what was planned");

    // ...exactly once.
    touch_all();
    service.run_cycle().await.unwrap();
    assert_eq!(world.action_requests().len(), sent, "nothing sent twice");
}
