//! Approvals people can trust and time-boxed containment, at the service level: the real
//! ransomware-containment plugin against the simulator on loopback, a real ledger on each
//! backend, decisions through the service (as the console takes them) and through the real
//! `riposte` binary (as the OS account it runs as).

use riposte_domain::Operator;
use riposte_domain::now_ms;
use riposte_e2e::service_support::{
    PluginSpec, ServiceEnv, Setup, actions_carried_out, add_ransomware_malop,
    assert_no_action_twice, audit_records, isolations, riposte_cli, start_sim, wait_until,
};
use riposte_service::decisions::{Decided, TimeBoxChange, Verdict};
use riposte_sim::SimHandle;
use riposte_store::prelude::*;
use riposte_store::{ActionId, ActionRecord, ActionState, Refusal};
use std::time::Duration;

const ISOLATE: &str = "/rest/monitor/global/commands/isolate";
const UNISOLATE: &str = "/rest/monitor/global/commands/un-isolate";

/// The Malop ids of the `path` actions the simulator carried out.
fn malops_sent(sim: &SimHandle, path: &str) -> Vec<String> {
    actions_carried_out(sim)
        .into_iter()
        .filter(|(p, _)| p == path)
        .map(|(_, body)| {
            let body: serde_json::Value = serde_json::from_str(&body).expect("JSON body");
            body["malopId"].as_str().unwrap_or_default().to_owned()
        })
        .collect()
}

fn malop(record: &ActionRecord) -> String {
    record.malop_id.as_ref().expect("a Malop").to_string()
}

pub(crate) fn os_account() -> String {
    let out = std::process::Command::new("id")
        .arg("-un")
        .output()
        .expect("id -un");
    format!("os:{}", String::from_utf8_lossy(&out.stdout).trim())
}

fn audited<'a>(
    records: &'a [serde_json::Value],
    call: &str,
    action: &ActionId,
) -> Vec<&'a serde_json::Value> {
    records
        .iter()
        .filter(|r| r["call"] == call && r["arguments"]["action_id"] == action.as_str())
        .collect()
}

each_backend! {
    async fn a_quorum_takes_two_distinct_people_one_denial_denies_and_the_execution_names_them(db) {
        let sim = start_sim(7, 12).await;
        let setup = Setup::new(vec![PluginSpec::ransomware_containment()])
            .approvals(&["isolate"], 3600)
            .with_toml("[approvals.quorum]\nisolate = 2\n");
        let env = ServiceEnv::on(db, &sim, &setup);
        let config = env.config.display().to_string();
        let service = env.service(&sim).await;
        let store = service.store();

        service.run_cycle().await.expect("the first cycle runs");
        let pending = store.list_pending(now_ms()).expect("the queue lists");
        assert!(pending.len() >= 2, "two isolations to decide: {pending:#?}");
        assert!(pending.iter().all(|p| p.quorum == 2 && p.approved_by.is_empty()));
        let (approved, denied) = (&pending[0].action, &pending[1].action);
        // People see the machines' names beside their guids.
        let (ok, table, stderr) = riposte_cli(&["approvals", "list", "--config", &config]).await;
        assert!(ok, "{stderr}");
        let line = table.lines().find(|l| l.contains(approved.id.as_str())).expect("listed");
        let (guid, name) = approved.machine_names.iter().next().expect("the Malop named its machines");
        assert!(line.contains(&format!("{name} ({guid})")) && line.contains("0/2"), "{line}");
        let alice = Operator::console_user("alice");

        // The first approval is counted and audited; the action still waits.
        let first = service
            .decide(approved.id.clone(), Verdict::Approve { seen_hash: Some(pending[0].action_hash) }, alice.clone())
            .await
            .expect("alice approves");
        assert!(matches!(&first, Decided::Counted { quorum: 2, approved_by } if approved_by == &["console:alice"]), "{first:?}");
        service.run_cycle().await.expect("a cycle runs");
        assert!(malops_sent(&sim, ISOLATE).is_empty(), "one approval of two sends nothing");

        // The same person cannot approve twice: refused, and the refusal is audited.
        let twice = service
            .decide(approved.id.clone(), Verdict::Approve { seen_hash: None }, alice.clone())
            .await
            .expect_err("alice cannot count twice");
        let refusal = twice.downcast_ref::<riposte_store::Error>().and_then(|e| e.refusal());
        assert!(matches!(refusal, Some(Refusal::AlreadyApprovedBy { .. })), "{twice:#}");
        let records = audit_records(&env.audit);
        assert_eq!(audited(&records, "approval-refused", &approved.id).len(), 1);
        assert_eq!(audited(&records, "approval-refused", &approved.id)[0]["arguments"]["by"], "console:alice");

        // A second person, on the CLI as the OS account, reaches the quorum.
        let (ok, stdout, stderr) = riposte_cli(&["approvals", "approve", "--config", &config, approved.id.as_str()]).await;
        assert!(ok, "{stderr}");
        assert!(stdout.contains("approved") && stdout.contains("console:alice"), "{stdout}");

        // One denial denies, whatever approvals came before.
        service
            .decide(denied.id.clone(), Verdict::Approve { seen_hash: None }, alice.clone())
            .await
            .expect("alice approves the other one");
        let denial = service
            .decide(denied.id.clone(), Verdict::Deny, Operator::console_user("bob"))
            .await
            .expect("bob denies");
        assert_eq!(denial, Decided::Denied);

        let report = service.run_cycle().await.expect("the next cycle runs");
        assert_eq!(report.approvals_executed, 1);
        assert_eq!(malops_sent(&sim, ISOLATE), vec![malop(approved)], "the approved isolation ran once, the denied one never");
        assert_eq!(store.get_action(&denied.id).unwrap().state, ActionState::Denied);
        // The execution record names both approvers, in order.
        let records = audit_records(&env.audit);
        let executed = audited(&records, "approved-action", &approved.id);
        assert_eq!(executed.len(), 1);
        assert_eq!(
            executed[0]["arguments"]["by"],
            serde_json::json!(["console:alice", os_account()]),
            "{}", executed[0]
        );
        let granted = audited(&records, "approval-granted", &approved.id);
        assert_eq!(granted.len(), 2, "each approval is audited");
        assert_eq!(granted[1]["arguments"]["by"], os_account().as_str());
        service.run_cycle().await.expect("a later cycle runs");
        assert_eq!(malops_sent(&sim, ISOLATE).len(), 1);
        assert_no_action_twice(&sim);
    }
}

each_backend! {
    async fn a_time_boxed_isolation_is_reverted_unless_confirmed_or_extended(db) {
        let sim = start_sim(7, 12).await;
        for _ in 0..2 {
            add_ransomware_malop(&sim);
        }
        let setup = Setup::new(vec![PluginSpec::ransomware_containment().grant("unisolate")])
            .with_toml("[containment]\ntime_limits = { isolate = 2 }\nwarn_before_secs = 2\n");
        let env = ServiceEnv::on(db, &sim, &setup);
        let config = env.config.display().to_string();
        let service = env.service(&sim).await;
        let store = service.store();

        service.run_cycle().await.expect("the first cycle runs");
        let isolated = isolations(store, ActionState::Succeeded);
        assert!(isolated.len() >= 3, "three isolations to time-box: {}", isolated.len());
        let boxes = store.open_time_boxes().expect("boxes list");
        assert_eq!(boxes.len(), isolated.len(), "every isolation got its time limit");
        for b in &boxes {
            let record = store.get_action(&b.action_id).unwrap();
            assert_eq!(b.deadline_ms - record.finished_at_ms.unwrap(), 2_000);
        }
        // The coming revert was announced (the deadline is within the warning).
        let records = audit_records(&env.audit);
        for record in &isolated {
            assert_eq!(audited(&records, "containment-reverting", &record.id).len(), 1, "{}", record.id);
        }
        let (kept, extended) = (&isolated[0], &isolated[1]);
        let reverted: Vec<&ActionRecord> = isolated[2..].iter().collect();

        // Confirmed on the CLI (as the OS account), extended from the console.
        let (ok, table, stderr) = riposte_cli(&["containment", "list", "--config", &config]).await;
        assert!(ok && table.contains(kept.id.as_str()), "{table}{stderr}");
        let (ok, stdout, stderr) = riposte_cli(&["containment", "confirm", "--config", &config, kept.id.as_str()]).await;
        assert!(ok && stdout.contains("confirmed"), "{stdout}{stderr}");
        service
            .change_time_box(extended.id.clone(), TimeBoxChange::Extend { by_ms: 3_600_000 }, Operator::console_user("bob"))
            .await
            .expect("bob extends");

        let deadline = boxes.iter().map(|b| b.deadline_ms).max().unwrap();
        wait_until("the time limits", Duration::from_secs(10), || now_ms() > deadline).await;
        // The server cannot list Malops during this cycle: the isolations whose time is up
        // are reverted all the same, and the listing's failure is the cycle's error.
        sim.inject(riposte_sim::Fault::new(riposte_sim::FaultKind::Status500, 1_000).on("/rest/crimes/unified"));
        let failed = service.run_cycle().await;
        sim.clear_faults();
        assert!(failed.is_err(), "the listing failed");

        let mut unisolated = malops_sent(&sim, UNISOLATE);
        unisolated.sort();
        let mut expected: Vec<String> = reverted.iter().map(|r| malop(r)).collect();
        expected.sort();
        assert_eq!(unisolated, expected, "only the unconfirmed, unextended isolations were reverted");
        for record in &reverted {
            let undo = store.get_undo(&record.id).unwrap().expect("an undo record");
            assert_eq!(undo.undone_by.as_deref(), Some("riposte:time-limit"));
            assert_eq!(store.get_action(&record.id).unwrap().state, ActionState::Undone);
        }
        let records = audit_records(&env.audit);
        assert_eq!(audited(&records, "containment-confirmed", &kept.id)[0]["arguments"]["by"], os_account().as_str());
        assert_eq!(audited(&records, "containment-extended", &extended.id)[0]["arguments"]["by"], "console:bob");
        for record in &reverted {
            let undo = audited(&records, "undo", &record.id);
            assert_eq!(undo.len(), 1, "the revert went through the undo path and its audit");
            assert_eq!(undo[0]["arguments"]["by"], "riposte:time-limit");
        }
        // A confirmed box cannot be changed again; nothing is reverted twice.
        let (ok, _, stderr) = riposte_cli(&["containment", "extend", "--config", &config, kept.id.as_str(), "--secs", "60"]).await;
        assert!(!ok && stderr.contains("confirmed it"), "{stderr}");
        service.run_cycle().await.expect("a later cycle runs");
        assert_eq!(malops_sent(&sim, UNISOLATE).len(), reverted.len());
        assert_eq!(store.open_time_boxes().unwrap().len(), 1, "the extended one stays open");
    }
}

each_backend! {
    async fn an_isolation_held_back_by_a_rejected_session_keeps_its_tries(db) {
        let sim = start_sim(7, 12).await;
        let setup = Setup::new(vec![PluginSpec::ransomware_containment()]);
        let env = ServiceEnv::on(db, &sim, &setup);
        let service = env.service(&sim).await;
        let store = service.store();
        // Every isolation is answered with the login page, even on a session just created:
        // the host cannot get the request through, and then holds its logins.
        sim.inject(riposte_sim::Fault::new(riposte_sim::FaultKind::LoginPage, 10_000).on(ISOLATE));
        // The first cycle acts on the process Malops, then finds logins held when it polls
        // the logon-session kind.
        let first = service.run_cycle().await.expect_err("logins are held after the isolations");
        assert!(format!("{first:#}").contains("no login is tried"), "{first:#}");
        let waiting = isolations(store, ActionState::Planned);
        assert!(!waiting.is_empty(), "isolations wait for a session");
        // Held back by no fault of their own: the tries a failed send gets are untouched.
        assert!(waiting.iter().all(|r| r.attempts == 0), "{waiting:?}");
        for _ in 0..3 {
            let held = service.run_cycle().await.expect_err("logins are held");
            assert!(format!("{held:#}").contains("no login is tried"), "{held:#}");
        }
        let failed = isolations(store, ActionState::Failed);
        assert!(failed.is_empty(), "none given up: {failed:?}");
        assert!(isolations(store, ActionState::Planned).iter().all(|r| r.attempts == 0));
    }
}

each_backend! {
    async fn a_throttled_isolation_is_waited_out_and_sent_once(db) {
        let sim = start_sim(7, 12).await;
        let setup = Setup::new(vec![PluginSpec::ransomware_containment()]);
        let env = ServiceEnv::on(db, &sim, &setup);
        let service = env.service(&sim).await;
        let store = service.store();
        // The server throttles every isolation for four cycles: more sends than a failure
        // is given (3), fewer than throttling is.
        sim.inject(riposte_sim::Fault::new(riposte_sim::FaultKind::Status429, 10_000).on(ISOLATE));
        for _ in 0..4 {
            service.run_cycle().await.expect("a throttled cycle runs");
        }
        assert!(isolations(store, ActionState::Failed).is_empty(), "none given up");
        let waiting = isolations(store, ActionState::Planned);
        assert!(!waiting.is_empty(), "isolations wait for the server");
        // Throttled sends have their own count: a connection error after them still gets
        // the tries of a failure.
        assert!(waiting.iter().all(|r| r.attempts == 0), "{waiting:?}");
        sim.clear_faults();
        service.run_cycle().await.expect("the cycle after the throttling runs");
        assert!(isolations(store, ActionState::Planned).is_empty());
        assert_eq!(isolations(store, ActionState::Succeeded).len(), waiting.len());
        assert_no_action_twice(&sim);
    }
}
