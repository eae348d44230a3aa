//! The approval flow (G6) and undo (G8) of the service, end to end: the real
//! ransomware-containment plugin against the simulator on loopback, a real SQLite ledger,
//! the operator's commands through the real `riposte` binary. What reaches the server is read
//! from the simulator's request log.

use riposte_domain::now_ms;
use riposte_domain::{ActionRequest, MalopId, Sha256Digest};
use riposte_e2e::service_support::{
    PluginSpec, ServiceEnv, Setup, actions_carried_out, assert_no_action_twice, audit_calls,
    audit_records, isolations, riposte_cli, start_sim, unhandled, wait_until,
};
use riposte_sim::SimHandle;
use riposte_store::prelude::*;
use riposte_store::{ActionFilter, ActionRecord, ActionState, Store};
use std::time::Duration;

const ISOLATE: &str = "/rest/monitor/global/commands/isolate";
const UNISOLATE: &str = "/rest/monitor/global/commands/un-isolate";

/// The bodies of the `path` requests the simulator carried out, parsed.
fn sent(sim: &SimHandle, path: &str) -> Vec<serde_json::Value> {
    actions_carried_out(sim)
        .into_iter()
        .filter(|(p, _)| p == path)
        .map(|(_, body)| serde_json::from_str(&body).expect("an action body is JSON"))
        .collect()
}

/// Every attempt to reach `path`, carried out or not.
fn attempts(sim: &SimHandle, path: &str) -> usize {
    sim.requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path == path)
        .count()
}

fn malop_of(record: &ActionRecord) -> &MalopId {
    record
        .malop_id
        .as_ref()
        .expect("an isolation names its Malop")
}

fn containment() -> Setup {
    Setup::new(vec![
        PluginSpec::ransomware_containment().grant("unisolate"),
    ])
}

each_backend! {
    async fn held_isolations_run_once_when_approved_never_when_denied_and_a_wrong_hash_is_refused(db) {
        let sim = start_sim(7, 12).await;
        let env = ServiceEnv::on(db, &sim, &containment().approvals(&["isolate"], 3600));
        let config = env.config.display().to_string();
        let service = env.service(&sim).await;
        let store = service.store();

        service.run_cycle().await.expect("the first cycle runs");
        assert!(
            unhandled(&service, store, &sim).is_empty(),
            "every ransomware Malop was handled"
        );
        let pending = store.list_pending(now_ms()).expect("the queue lists");
        assert!(
            pending.len() >= 2,
            "the seeded world has at least two ransomware Malops to isolate: {pending:#?}"
        );
        for p in &pending {
            assert!(matches!(p.action.request, ActionRequest::Isolate { .. }));
            assert_eq!(p.action.state, ActionState::AwaitingApproval);
        }
        assert_eq!(
            attempts(&sim, ISOLATE),
            0,
            "nothing held reached the server"
        );
        assert!(
            !sent(&sim, "/rest/remediate").is_empty(),
            "the kills, which need no approval, were carried out in the same cycle"
        );
        // The plugin was answered `awaiting-approval`, and the audit says so.
        let held_decisions = audit_calls(&env.audit, "isolate")
            .into_iter()
            .filter(|r| r["decision"]["kind"] == "await-approval")
            .count();
        assert_eq!(
            held_decisions,
            pending.len(),
            "one audited hold per isolation"
        );

        // For people, a table: each held isolation in one line, with its hash; for scripts, JSON.
        let (ok, table, stderr) = riposte_cli(&["approvals", "list", "--config", &config]).await;
        assert!(ok, "{stderr}");
        for p in &pending {
            let line = table
                .lines()
                .find(|l| l.contains(p.action.id.as_str()))
                .unwrap_or_else(|| panic!("{} is listed:\n{table}", p.action.id.as_str()));
            assert!(line.contains(" isolate ") && line.contains(" machine") && line.contains(&p.action_hash.to_hex()), "{line}");
        }
        let (ok, json, _) = riposte_cli(&["approvals", "list", "--json", "--config", &config]).await;
        let listed: serde_json::Value = serde_json::from_str(&json).expect("--json prints JSON");
        assert!(ok && listed.as_array().map(Vec::len) == Some(pending.len()), "{json}");

        let (approved, denied) = (&pending[0], &pending[1]);
        let approve_id = approved.action.id.as_str();
        let wrong = Sha256Digest::of(b"another action").to_hex();
        let (ok, _, stderr) = riposte_cli(&[
            "approvals",
            "approve",
            "--config",
            &config,
            approve_id,
            "--hash",
            &wrong,
        ])
        .await;
        assert!(!ok, "an approval bound to another hash is refused");
        assert!(
            stderr.contains("is not the one its approval is bound to") && stderr.contains(&wrong),
            "says why: {stderr}"
        );
        assert_eq!(
            store.get_action(&approved.action.id).unwrap().state,
            ActionState::AwaitingApproval,
            "a refused approval changes nothing"
        );

        let hash = approved.action_hash.to_hex();
        let (ok, stdout, stderr) = riposte_cli(&[
            "approvals",
            "approve",
            "--config",
            &config,
            &approve_id[..12],
            "--hash",
            &hash,
        ])
        .await;
        assert!(ok, "approving with the shown hash works: {stderr}");
        assert!(stdout.contains(approve_id), "{stdout}");
        // The decision is recorded under the OS account the command ran as, never a typed name.
        let account = std::process::Command::new("id").arg("-un").output().expect("id -un");
        let account = format!("os:{}", String::from_utf8_lossy(&account.stdout).trim());
        let granted = audit_records(&env.audit)
            .into_iter()
            .find(|r| r["call"] == "approval-granted")
            .expect("the approval is audited");
        assert_eq!(granted["arguments"]["by"], account.as_str(), "{granted}");
        let (ok, _, stderr) = riposte_cli(&[
            "approvals", "deny", "--config", &config, denied.action.id.as_str(), "--by", "alice",
        ])
        .await;
        assert!(!ok && stderr.contains("--by"), "a typed name is refused: {stderr}");
        let (ok, _, stderr) = riposte_cli(&[
            "approvals",
            "deny",
            "--config",
            &config,
            denied.action.id.as_str(),
        ])
        .await;
        assert!(ok, "denying works: {stderr}");
        assert_eq!(
            attempts(&sim, ISOLATE),
            0,
            "deciding sends nothing by itself"
        );

        let report = service.run_cycle().await.expect("the second cycle runs");
        assert_eq!(report.approvals_executed, 1);
        // The execution record names its approver.
        let executed = audit_records(&env.audit)
            .into_iter()
            .find(|r| r["call"] == "approved-action")
            .expect("the execution of the approved action is audited");
        assert_eq!(executed["arguments"]["by"], serde_json::json!([account]), "{executed}");
        let isolated = sent(&sim, ISOLATE);
        assert_eq!(
            isolated.len(),
            1,
            "the approved isolation ran: {isolated:#?}"
        );
        assert_eq!(isolated[0]["malopId"], malop_of(&approved.action).as_str());
        assert_eq!(
            store.get_action(&approved.action.id).unwrap().state,
            ActionState::Succeeded
        );
        assert_eq!(
            store.get_action(&denied.action.id).unwrap().state,
            ActionState::Denied
        );

        // Later cycles, and a second approval, send nothing more.
        let report = service.run_cycle().await.expect("the third cycle runs");
        assert_eq!(report.approvals_executed, 0);
        assert!(
            store
                .approve(&approved.action.id, "e2e", None, now_ms())
                .is_err(),
            "an approval is used once"
        );
        assert!(
            store
                .approve(&denied.action.id, "e2e", None, now_ms())
                .is_err(),
            "a denied action cannot be approved afterwards"
        );
        service.run_cycle().await.expect("the fourth cycle runs");
        assert_eq!(attempts(&sim, ISOLATE), 1, "exactly one isolation in all");
        assert!(
            sent(&sim, ISOLATE)
                .iter()
                .all(|b| b["malopId"] != malop_of(&denied.action).as_str()),
            "the denied isolation never reached the server"
        );
        assert_eq!(audit_calls(&env.audit, "approval-granted").len(), 1);
        assert_eq!(audit_calls(&env.audit, "approval-denied").len(), 1);
        assert_eq!(audit_calls(&env.audit, "approved-action").len(), 1);
        assert_no_action_twice(&sim);
    }
}

each_backend! {
    async fn an_isolation_not_decided_in_time_expires_and_is_never_sent(db) {
        let sim = start_sim(7, 12).await;
        let env = ServiceEnv::on(db, &sim, &containment().approvals(&["isolate"], 1));
        let service = env.service(&sim).await;
        let store = service.store();

        service.run_cycle().await.expect("the first cycle runs");
        let held = isolations(store, ActionState::AwaitingApproval);
        assert!(!held.is_empty(), "the seeded world has isolations to hold");
        let expiry = store
            .list_pending(0)
            .expect("the queue lists")
            .iter()
            .map(|p| p.expires_at_ms)
            .max()
            .expect("pending approvals have an expiry");
        wait_until("the approvals' expiry", Duration::from_secs(5), || {
            now_ms() > expiry
        })
        .await;

        service.run_cycle().await.expect("the second cycle runs");
        let expired = isolations(store, ActionState::Expired);
        assert_eq!(expired.len(), held.len(), "every held isolation expired");
        assert_eq!(
            audit_calls(&env.audit, "approval-expired").len(),
            held.len(),
            "each expiry is audited"
        );
        let late = store.approve(&held[0].id, "e2e", None, now_ms());
        assert!(late.is_err(), "an expired approval cannot be given");
        service.run_cycle().await.expect("the third cycle runs");
        assert_eq!(attempts(&sim, ISOLATE), 0, "no expired isolation was sent");
        assert_eq!(isolations(store, ActionState::Expired).len(), held.len());
    }
}

each_backend! {
    async fn undo_of_an_executed_isolation_sends_the_unisolation_once_and_is_refused_twice(db) {
        let sim = start_sim(7, 12).await;
        let env = ServiceEnv::on(db, &sim, &containment());
        let service = env.service(&sim).await;
        let store = service.store();

        service.run_cycle().await.expect("the cycle runs");
        let done = isolations(store, ActionState::Succeeded);
        assert!(!done.is_empty(), "the seeded world has isolations to run");
        let original = &done[0];
        let isolate_body = sent(&sim, ISOLATE)
            .into_iter()
            .find(|b| b["malopId"] == malop_of(original).as_str())
            .expect("the isolation reached the server");
        let pylums: Vec<String> = serde_json::from_value(isolate_body["pylumIds"].clone()).unwrap();
        let isolated = |pylum: &str| {
            sim.machines()
                .iter()
                .find(|m| m.has_pylum_id(pylum))
                .expect("a known sensor")
                .isolated
        };
        assert!(pylums.iter().all(|p| isolated(p)));
        let undo_before = audit_calls(&env.audit, "undo").len();

        let undo = service
            .undo(original.id.as_str(), "e2e-operator")
            .await
            .expect("the undo runs");
        assert_eq!(undo.state, ActionState::Succeeded);
        assert_eq!(undo.undo_of.as_ref(), Some(&original.id));
        assert!(matches!(undo.request, ActionRequest::Unisolate { .. }));
        let unisolated = sent(&sim, UNISOLATE);
        assert_eq!(unisolated.len(), 1, "one un-isolation: {unisolated:#?}");
        assert_eq!(unisolated[0]["pylumIds"], isolate_body["pylumIds"]);
        assert!(pylums.iter().all(|p| !isolated(p)), "the machines are free");
        assert_eq!(
            store.get_action(&original.id).unwrap().state,
            ActionState::Undone
        );
        let record = store
            .get_undo(&original.id)
            .unwrap()
            .expect("an undo record");
        assert_eq!(record.undone_by.as_deref(), Some("e2e-operator"));
        assert_eq!(record.undo_action_id.as_ref(), Some(&undo.id));
        let audited = audit_calls(&env.audit, "undo");
        assert_eq!(audited.len(), undo_before + 1, "the undo is audited once");
        assert_eq!(
            audited.last().unwrap()["arguments"]["action_id"],
            original.id.as_str()
        );
        assert!(
            !audit_calls(&env.audit, "unisolate").is_empty()
                || audit_calls(&env.audit, "action-result")
                    .iter()
                    .any(|r| r["arguments"]["action_id"] == undo.id.as_str()),
            "the un-isolation's result is audited"
        );

        // Twice: refused, in process and through the CLI, and nothing more is sent.
        let again = service.undo(original.id.as_str(), "e2e-operator").await;
        let error = again.expect_err("a second undo is refused").to_string();
        assert!(error.contains("already undone"), "{error}");
        let config = env.config.display().to_string();
        let (ok, _, stderr) = riposte_cli(&["undo", "--config", &config, original.id.as_str()]).await;
        assert!(!ok, "the CLI refuses it too");
        assert!(stderr.contains("already undone"), "{stderr}");
        assert_eq!(
            attempts(&sim, UNISOLATE),
            1,
            "exactly one un-isolation in all"
        );
        assert_eq!(
            audit_calls(&env.audit, "undo").len(),
            undo_before + 1,
            "a refused undo is not recorded as an undo"
        );
        assert_no_action_twice(&sim);
    }
}

each_backend! {
    async fn undo_of_a_quarantine_addresses_the_quarantined_copy_and_undo_of_a_reputation_removes_it(db) {
        let sim = start_sim(7, 12).await;
        let setup = Setup::new(vec![
            PluginSpec::cleanup()
                .value("delete-autoruns", "false")
                .grant_remediation("unquarantine-file"),
            PluginSpec::reputation_feed().grant("remove-reputation"),
        ]);
        let env = ServiceEnv::on(db, &sim, &setup);
        let service = env.service(&sim).await;
        let store = service.store();
        service.run_cycle().await.expect("the cycle runs");

        // A quarantine that succeeded puts a copy in quarantine with a guid of its own.
        let quarantines = succeeded_of(store, "cleanup");
        let original = quarantines
            .first()
            .expect("the seeded world has a quarantine to undo");
        let ActionRequest::Remediate { targets, .. } = &original.request else {
            panic!("cleanup remediates");
        };
        let held = sim.with_state(|s| s.quarantines());
        let copies: Vec<_> = held
            .iter()
            .filter(|q| {
                targets
                    .iter()
                    .any(|t| t.target_guid.as_str() == q.file.guid)
            })
            .collect();
        assert_eq!(copies.len(), targets.len(), "each file is in quarantine");
        assert!(
            copies
                .iter()
                .all(|q| targets.iter().all(|t| t.target_guid.as_str() != q.guid))
        );

        let undo = service
            .undo(original.id.as_str(), "e2e-operator")
            .await
            .expect("the undo runs");
        assert_eq!(undo.state, ActionState::Succeeded, "{undo:#?}");
        let ActionRequest::Remediate {
            targets: undone, ..
        } = &undo.request
        else {
            panic!("an unquarantine is a remediation");
        };
        for target in undone {
            assert!(
                copies.iter().any(|q| q.guid == target.target_guid.as_str()),
                "UNQUARANTINE_FILE names the quarantined copy, not the original file: {target:?}"
            );
        }
        let left = sim.with_state(|s| s.quarantines());
        assert!(
            copies.iter().all(|c| left.iter().all(|q| q.guid != c.guid)),
            "the files are out of quarantine"
        );
        assert_eq!(
            store.get_action(&original.id).unwrap().state,
            ActionState::Undone
        );

        // The reputation feed's blacklist is removed by its undo.
        let set = succeeded_of(store, "reputation-feed");
        let blacklist = set
            .first()
            .expect("the seeded world has a reputation to undo");
        let ActionRequest::SetReputation { keys, .. } = &blacklist.request else {
            panic!("the feed sets reputations");
        };
        let listed = |key: &str| sim.with_state(|s| s.reputations.contains_key(key));
        assert!(keys.iter().all(|k| listed(&k.value)));
        let undo = service
            .undo(blacklist.id.as_str(), "e2e-operator")
            .await
            .expect("the reputation undo runs");
        assert_eq!(undo.state, ActionState::Succeeded);
        assert!(
            keys.iter().all(|k| !listed(&k.value)),
            "the keys are off the list"
        );
        assert_no_action_twice(&sim);
    }
}

/// The actions of `plugin` that succeeded.
fn succeeded_of(store: &Store, plugin: &str) -> Vec<ActionRecord> {
    store
        .list_actions(&ActionFilter {
            states: vec![ActionState::Succeeded],
            plugin: Some(riposte_domain::PluginName::new(plugin)),
            ..ActionFilter::default()
        })
        .unwrap()
}

each_backend! {
    /// Recovery never sends again, by itself, an action whose plugin is no longer configured: it
    /// waits for an operator, who approves it (it is looked for on the server, then sent once) or
    /// denies it (never sent).
    async fn unresolved_actions_of_a_removed_plugin_wait_for_an_operator(db) {
        use riposte_domain::{MachineGuid, PluginName};
        use riposte_store::NewAction;
        let sim = start_sim(7, 2).await;
        // A rule that isolates nothing: every isolation the server sees is the removed rule's.
        let env = ServiceEnv::on(db, &sim, &Setup::new(vec![PluginSpec::reputation_feed()]));
        let config = env.config.display().to_string();
        let machines = sim.machines();
        let isolate = |i: usize| ActionRequest::Isolate {
            malop_id: None,
            machines: vec![MachineGuid::new(machines[i].guid.clone())],
        };
        // Two actions a crash left planned, of a plugin the operator then removed.
        let ids: Vec<_> = {
            let store = env.store();
            [0, 1]
                .into_iter()
                .map(|i| {
                    let new = NewAction::new(
                        PluginName::new("removed-rule"),
                        Sha256Digest::of(b"removed rule"),
                        isolate(i),
                        "asked for before the crash",
                    );
                    store
                        .begin_action(&new, now_ms())
                        .expect("recorded")
                        .action_id()
                        .clone()
                })
                .collect()
        };
        let service = env.service(&sim).await;
        let store = service.store();
        service.run_cycle().await.expect("the first cycle runs");
        for id in &ids {
            assert_eq!(
                store.get_action(id).unwrap().state,
                ActionState::AwaitingApproval
            );
        }
        assert_eq!(attempts(&sim, ISOLATE), 0, "nothing sent by recovery");
        assert_eq!(audit_calls(&env.audit, "held-for-operator").len(), 2);
        service.run_cycle().await.expect("another cycle");
        assert_eq!(attempts(&sim, ISOLATE), 0, "still waiting");

        let (ok, _, stderr) =
            riposte_cli(&["approvals", "approve", "--config", &config, ids[0].as_str()]).await;
        assert!(ok, "{stderr}");
        let (ok, _, stderr) =
            riposte_cli(&["approvals", "deny", "--config", &config, ids[1].as_str()]).await;
        assert!(ok, "{stderr}");
        service
            .run_cycle()
            .await
            .expect("the cycle after the decisions");
        let isolated = sent(&sim, ISOLATE);
        assert_eq!(isolated.len(), 1, "{isolated:?}");
        assert_eq!(
            isolated[0]["pylumIds"],
            serde_json::json!([machines[0].pylum_id])
        );
        assert_eq!(
            store.get_action(&ids[0]).unwrap().state,
            ActionState::Succeeded
        );
        assert_eq!(
            store.get_action(&ids[1]).unwrap().state,
            ActionState::Denied
        );
        service.run_cycle().await.expect("a last cycle");
        assert_eq!(
            attempts(&sim, ISOLATE),
            1,
            "sent once, the denied one never"
        );
    }
}
