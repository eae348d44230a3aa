//! The hostile-plugin suite through the real service (issue 4, G1 G2 G3 G7): `Service` with
//! its gated host, the simulator on loopback, a SQLite store and an audit file in a temporary
//! directory. Each attack is contained, the reason is in the audit trail (read back with
//! `riposte_audit::show` after `verify`), nothing reaches the server that should not, and a
//! well-behaved plugin configured in the same service completes its work on the same Malops.

use riposte_audit::Record;
use riposte_domain::{ActionRequest, KeyKind, ReputationKey, Verdict};
use riposte_e2e::gate_support::{
    Plugin, World, decision, install_log_capture, invocations, malops_of, plugin_logs, records_of,
    status,
};
use riposte_e2e::service_support::{PluginSpec, ServiceEnv, Setup, riposte_bin, start_sim};
use riposte_service::Service;
use riposte_sim::{Fault, FaultKind, SimMalop};
use riposte_store::prelude::*;
use riposte_store::{ActionFilter, NewAction, Outcome};
use std::time::Duration;

/// The well-behaved plugin: reputation-feed, enforcing, granted what it needs.
const GOOD: &str = "good-feed";

fn good() -> Plugin {
    Plugin::new(GOOD, "reputation-feed").grant(&["get-malop", "set-reputation"])
}

/// Limits tight enough that each runaway trips the limit it aims at quickly.
fn tight(plugin: Plugin) -> Plugin {
    plugin
        .limit("fuel", 50_000_000_000)
        .limit("wall_clock_ms", 500)
        .limit("memory_bytes", 32 << 20)
        .limit("max_output_bytes", 16 << 10)
}

fn is_malicious(malop: &SimMalop) -> bool {
    matches!(malop.detection_type.as_str(), "KNOWN_MALWARE" | "BLACKLIST")
        || malop
            .activity_types
            .iter()
            .any(|a| a == "MALICIOUS_INFECTION" || a == "RANSOMWARE")
}

/// The good plugin completed on every Malop of the simulator, and the root-cause hash of
/// every malicious one is now blacklisted on the server.
fn assert_good_plugin_did_its_work(world: &World, records: &[Record]) {
    let runs = invocations(records, GOOD);
    let mut all: Vec<String> = world
        .malop_ids()
        .iter()
        .map(|m| m.as_str().to_owned())
        .collect();
    all.sort();
    assert_eq!(
        malops_of(&runs),
        all,
        "the good plugin ran once on every Malop"
    );
    for run in &runs {
        assert_eq!(status(run), "completed", "good plugin: {:?}", run.result);
    }
    let reputations = world.sim.with_state(|s| s.reputations.clone());
    let malicious: Vec<SimMalop> = world
        .sim
        .malops()
        .into_iter()
        .filter(is_malicious)
        .collect();
    assert!(!malicious.is_empty(), "the world has malicious Malops");
    for malop in malicious {
        let sha1 = malop.suspects[0]
            .sha1
            .as_deref()
            .expect("generated suspects have a sha1");
        let entry = reputations
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(sha1))
            .unwrap_or_else(|| {
                panic!(
                    "the root cause {sha1} of {} was blacklisted: {reputations:?}",
                    malop.guid
                )
            });
        assert_eq!(entry.1.verdict, "blacklist");
    }
}

/// Runs one cycle of a service with `hostile` next to the good plugin; returns the audit
/// trail.
async fn cycle_with(world: &World, global: &str, hostile: Plugin) -> (Service, Vec<Record>) {
    let service = world
        .start(global, &[hostile, good()])
        .await
        .expect("the service starts");
    service.run_cycle().await.expect("the cycle runs");
    let records = world.audit();
    (service, records)
}

/// A runaway attack: every invocation of the hostile plugin is stopped, with the reason in
/// plain words in its `invoke:on-malop` record; the plugin is paused after repeated traps;
/// the good plugin completes. Three Malops of one element kind, so that all three run in
/// the same batch (the plugin is paused after its third trap in a row, and a paused plugin
/// is offered no further Malops). Returns the hostile plugin's invocation records.
async fn contain(attack: &str) -> Vec<Record> {
    let world = World::new(3).await;
    let name = format!("hostile-{attack}");
    let hostile = tight(Plugin::hostile(&name, attack).grant(&["get-malop"]));
    let (_service, records) = cycle_with(&world, "", hostile).await;
    let stopped = invocations(&records, &name);
    assert_eq!(
        malops_of(&stopped),
        malops_of(&invocations(&records, GOOD)),
        "the hostile plugin ran on the same Malops as the good one"
    );
    assert_eq!(stopped.len(), 3);
    for record in &stopped {
        assert_eq!(status(record), "stopped", "{attack}: {:?}", record.result);
    }
    let paused = records_of(&records, &name, "plugin-paused");
    assert_eq!(paused.len(), 1, "paused once after 3 traps in a row");
    assert_good_plugin_did_its_work(&world, &records);
    stopped.into_iter().cloned().collect()
}

fn reasons(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .map(|r| r.result["reason"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_infinite_loop_is_stopped_within_the_time_limit_and_audited() {
    let stopped = contain("loop").await;
    for (record, reason) in stopped.iter().zip(reasons(&stopped)) {
        assert!(reason.starts_with("time limit:"), "{reason}");
        let took = Duration::from_micros(record.duration_us);
        assert!(
            took < Duration::from_millis(500 + 100),
            "stopped within the time limit plus 100 ms, took {took:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_bomb_is_stopped_at_the_memory_limit_and_audited() {
    let stopped = contain("memory").await;
    for (record, reason) in stopped.iter().zip(reasons(&stopped)) {
        assert!(reason.starts_with("memory limit:"), "{reason}");
        let peak = record.result["peak_memory"].as_u64().unwrap_or(u64::MAX);
        assert!(peak <= 32 << 20, "memory stayed within the limit: {peak}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbounded_recursion_is_stopped_as_a_stack_overflow_and_audited() {
    for reason in reasons(&contain("recursion").await) {
        assert!(reason.starts_with("stack overflow:"), "{reason}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stdout_flood_is_stopped_at_the_output_cap_and_audited() {
    for reason in reasons(&contain("flood").await) {
        assert!(reason.starts_with("output cap:"), "{reason}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_is_stopped_with_its_message_audited() {
    for reason in reasons(&contain("panic").await) {
        assert!(
            reason.starts_with("panic: hostile plugin panicked on purpose"),
            "{reason}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operation_not_granted_is_denied_audited_and_never_sent() {
    let world = World::new(4).await;
    let hostile = Plugin::hostile("hostile-ungranted", "ungranted").grant(&["get-malop"]);
    let (_service, records) = cycle_with(&world, "", hostile).await;
    let asked = records_of(&records, "hostile-ungranted", "isolate");
    assert_eq!(
        malops_of(&asked),
        malops_of(&invocations(&records, GOOD)),
        "one isolate call per Malop, on the same Malops as the good plugin"
    );
    for record in &asked {
        assert_eq!(
            decision(record),
            ("deny".to_owned(), Some("denied".to_owned()))
        );
        let detail = &record.decision.as_ref().unwrap().detail;
        assert!(
            detail.contains("operation `isolate` is not granted"),
            "{detail}"
        );
        // The full request is recorded: every machine the plugin tried to isolate.
        let machines = record.arguments["request"]["machines"]
            .as_array()
            .expect("the denied request's machines are audited");
        assert!(!machines.is_empty());
    }
    for run in invocations(&records, "hostile-ungranted") {
        assert_eq!(
            status(run),
            "plugin-error",
            "the plugin got the typed error back"
        );
    }
    assert_eq!(
        world.sim.count("POST", "/rest/monitor/global/commands/"),
        0,
        "nothing reached the server: {:?}",
        world.action_requests()
    );
    assert!(world.sim.machines().iter().all(|m| !m.isolated));
    assert_good_plugin_did_its_work(&world, &records);
}

/// One cycle with `global` protection rules and a hostile plugin that isolates every
/// machine of every Malop.
async fn isolate_everything(world: &World, global: &str) -> (Service, Vec<Record>) {
    let hostile =
        Plugin::hostile("hostile-protected", "protected").grant(&["get-malop", "isolate"]);
    cycle_with(world, global, hostile).await
}

/// That plugin's `isolate` record for the Malop `id` (one per Malop).
fn isolate_of<'a>(records: &'a [Record], id: &riposte_domain::MalopId) -> &'a Record {
    records_of(records, "hostile-protected", "isolate")
        .into_iter()
        .find(|r| r.malop.as_ref() == Some(id))
        .expect("an isolate record per Malop")
}

/// Asserts that `record` was denied as a protected target; its detail.
fn protected_denial(record: &Record) -> &str {
    assert_eq!(
        decision(record),
        ("deny".to_owned(), Some("protected-target".to_owned()))
    );
    &record.decision.as_ref().unwrap().detail
}

/// `[approvals.large]` holds the isolation of more machines than it allows even when the
/// plugin splits it into one call per machine: the machines an invocation reached add up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_isolation_split_into_one_call_per_machine_is_held() {
    let world = World::new(0).await;
    let id = world.malop_on(&[0, 1, 2, 3]);
    let name = "hostile-split";
    let hostile = Plugin::hostile(name, "split-isolation").grant(&["get-malop", "isolate"]);
    let (_service, records) =
        cycle_with(&world, "[approvals.large]\nmachines = 2\n", hostile).await;
    let kinds: Vec<String> = records_of(&records, name, "isolate")
        .into_iter()
        .filter(|r| r.malop.as_ref() == Some(&id))
        .map(|r| decision(r).0)
        .collect();
    assert_eq!(
        kinds,
        ["allow", "allow", "await-approval", "await-approval"]
    );
    assert_eq!(
        world
            .sim
            .count("POST", "/rest/monitor/global/commands/isolate"),
        2,
        "{:?}",
        world.action_requests()
    );
}

/// A reputation action ledgered before keys were made canonical (under the plugin's own
/// spelling, as riposte wrote it then) is found by that key after the upgrade: the same
/// request is answered from the ledger, not sent to the server a second time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reputation_ledgered_under_its_old_spelling_is_not_sent_again() {
    let world = World::new(0).await;
    let id = world.malop_on(&[0]);
    let malop = world.malop(&id).await;
    let name = "hostile-padded";
    let hostile = Plugin::hostile(name, "padded-blacklist").grant(&["get-malop", "set-reputation"]);
    let digest = riposte_domain::Sha256Digest::of(&std::fs::read(hostile.path()).unwrap());
    let sha1 = malop
        .suspects
        .iter()
        .find_map(|s| s.image_sha1.clone())
        .expect("a suspect hash");
    let spelled = ActionRequest::SetReputation {
        keys: vec![ReputationKey {
            kind: KeyKind::FileHash,
            value: format!(" {} ", sha1.to_ascii_uppercase()),
        }],
        verdict: Verdict::Blacklist,
        prevent: false,
    };
    let service = world
        .start("", &[hostile])
        .await
        .expect("the service starts");
    let store = service.store();
    let now = riposte_domain::now_ms();
    let old = NewAction::new(
        riposte_domain::PluginName::new(name),
        digest,
        spelled,
        "ledgered before the upgrade".to_owned(),
    );
    let old = store.begin_action(&old, now).unwrap().action_id().clone();
    store
        .mark_submitted(&old, None, &serde_json::json!({}), now)
        .unwrap();
    store.finish(&old, Outcome::Succeeded, None, now).unwrap();

    service.run_cycle().await.expect("the cycle runs");
    assert_eq!(world.sim.count("POST", "/rest/classification/update"), 0);
    let records = world.audit();
    let asked = records_of(&records, name, "set-reputation");
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert_eq!(asked[0].result["duplicate_of"], old.as_str());
    let rows = store
        .list_actions(&ActionFilter {
            plugin: Some(name.into()),
            ..ActionFilter::default()
        })
        .unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
}

/// Protection by sensor group: the machines' groups come from `sensors/query`, so a request
/// on a machine of a protected group is denied and one elsewhere goes through (before the
/// client resolved groups, every destructive request failed closed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_protected_sensor_group_is_resolved_and_only_its_machines_are_spared() {
    let world = World::new(0).await;
    world.sim.with_state(|s| {
        for (i, m) in s.machines.iter_mut().enumerate() {
            m.group = Some(
                if i == 0 {
                    "Domain Controllers"
                } else {
                    "Workstations"
                }
                .into(),
            );
        }
    });
    let on_dc = world.malop_on(&[0]);
    let elsewhere = world.malop_on(&[2]);
    let global = "[protected]\ngroups = [\"domain controllers\"]\n";
    let (_service, records) = isolate_everything(&world, global).await;

    let detail = protected_denial(isolate_of(&records, &on_dc));
    assert!(
        detail.contains("protected group `domain controllers`"),
        "{detail}"
    );
    assert_eq!(
        decision(isolate_of(&records, &elsewhere)).0,
        "allow",
        "a machine of another group is not protected"
    );
    let after = world.sim.machines();
    assert!(
        !after[0].isolated && after[0].primed.is_none(),
        "the DC is untouched"
    );
    assert!(after[2].isolated, "the workstation is isolated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolating_a_protected_machine_is_denied_whole_and_never_sent() {
    let world = World::new(0).await;
    world
        .sim
        .with_state(|s| s.machines[0].name = "DC-PRIMARY-01".into());
    let machines = world.sim.machines();
    let on_dc = world.malop_on(&[0, 1]);
    let elsewhere = world.malop_on(&[2, 3]);
    let global = "[protected]\nmachine_name_globs = [\"dc-*\"]\n";
    let (_service, records) = isolate_everything(&world, global).await;

    assert_eq!(
        records_of(&records, "hostile-protected", "isolate").len(),
        2
    );
    let detail = protected_denial(isolate_of(&records, &on_dc));
    assert!(
        detail.contains("DC-PRIMARY-01") && detail.contains("dc-*"),
        "{detail}"
    );
    assert_eq!(
        decision(isolate_of(&records, &elsewhere)).0,
        "allow",
        "the gate is not deny-all"
    );

    let sent: Vec<_> = world
        .action_requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/rest/monitor/global/commands/isolate"))
        .collect();
    assert_eq!(
        sent.len(),
        1,
        "only the unprotected Malop's isolation: {sent:?}"
    );
    assert!(
        !sent[0]
            .body
            .contains(machines[0].pylum_id.as_deref().unwrap())
    );
    assert!(
        !sent[0]
            .body
            .contains(machines[1].pylum_id.as_deref().unwrap()),
        "denied whole"
    );
    let after = world.sim.machines();
    assert!(
        !after[0].isolated && after[0].primed.is_none(),
        "the DC is untouched"
    );
    assert!(
        !after[1].isolated && after[1].primed.is_none(),
        "its neighbour too"
    );
    assert!(after[2].isolated && after[3].isolated);
    assert_good_plugin_did_its_work(&world, &records);
}

/// Kill targets the simulator received, per remediation.
fn kills_sent(world: &World) -> Vec<usize> {
    world.sim.with_state(|s| {
        s.remediations
            .iter()
            .map(|r| {
                r.actions
                    .iter()
                    .filter(|a| a.action == "KILL_PROCESS")
                    .count()
            })
            .collect()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_past_a_budget_is_denied_whole_and_budgets_hold_across_calls() {
    let world = World::new(0).await;
    let hostile = Plugin::hostile("hostile-fan-out", "fan-out")
        .grant(&["get-malop", "remediate"])
        .remediation(&["kill-process"])
        .budget("kill-process", 3, 3600);
    let service = world
        .start("", &[hostile, good()])
        .await
        .expect("the service starts");
    let decisions = |records: &[Record], id: &riposte_domain::MalopId| -> Vec<Record> {
        records_of(records, "hostile-fan-out", "remediate")
            .into_iter()
            .filter(|r| r.malop.as_ref() == Some(id))
            .cloned()
            .collect()
    };

    // One call touching 4 machines, budget 3: denied whole, nothing sent, nothing spent.
    let four = world.malop_on(&[0, 1, 2, 3]);
    service.run_cycle().await.unwrap();
    let records = world.audit();
    let first = decisions(&records, &four);
    assert_eq!(first.len(), 1);
    assert_eq!(
        decision(&first[0]),
        ("deny".to_owned(), Some("budget-exhausted".to_owned()))
    );
    let detail = &first[0].decision.as_ref().unwrap().detail;
    assert!(
        detail.contains("0 used in the window, this call needs 4, 3 left"),
        "{detail}"
    );
    assert_eq!(kills_sent(&world), Vec::<usize>::new(), "nothing sent");

    // Three machines: exactly the budget, allowed and sent.
    let three = world.malop_on(&[0, 1, 2]);
    service.run_cycle().await.unwrap();
    let records = world.audit();
    assert_eq!(decision(&decisions(&records, &three)[0]).0, "allow");
    assert_eq!(kills_sent(&world), vec![3]);

    // One more machine on another Malop: the budget was spent by the earlier call.
    let one = world.malop_on(&[3]);
    service.run_cycle().await.unwrap();
    let records = world.audit();
    let last = decisions(&records, &one);
    assert_eq!(
        decision(&last[0]),
        ("deny".to_owned(), Some("budget-exhausted".to_owned()))
    );
    let detail = &last[0].decision.as_ref().unwrap().detail;
    assert!(
        detail.contains("3 used in the window, this call needs 1, 0 left"),
        "{detail}"
    );
    assert_eq!(kills_sent(&world), vec![3], "still only the allowed call");

    let ledger = service
        .store()
        .list_actions(&ActionFilter {
            plugin: Some("hostile-fan-out".into()),
            ..ActionFilter::default()
        })
        .unwrap();
    assert_eq!(
        ledger.len(),
        1,
        "denied calls never enter the ledger: {ledger:?}"
    );
    assert_good_plugin_did_its_work(&world, &records);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_invocations_cannot_overspend_a_budget_together() {
    let world = World::new(0).await;
    let hostile = Plugin::hostile("hostile-race", "fan-out")
        .grant(&["get-malop", "remediate"])
        .remediation(&["kill-process"])
        .budget("kill-process", 3, 3600);
    // Three Malops of two machines each, handled in one batch with concurrency 4: 6 units
    // asked for, 3 in the budget; whole calls only, so exactly one call of 2 can pass.
    let malops = [
        world.malop_on(&[0, 1]),
        world.malop_on(&[2, 3]),
        world.malop_on(&[1, 2]),
    ];
    let (_service, records) = cycle_with(&world, "", hostile).await;
    let asked = records_of(&records, "hostile-race", "remediate");
    assert_eq!(asked.len(), malops.len());
    let allowed = asked.iter().filter(|r| decision(r).0 == "allow").count();
    let spent = asked
        .iter()
        .filter(|r| decision(r) == ("deny".to_owned(), Some("budget-exhausted".to_owned())))
        .count();
    assert_eq!((allowed, spent), (1, 2), "{asked:#?}");
    assert_eq!(
        kills_sent(&world),
        vec![2],
        "one call of two kills reached the server"
    );
    assert_good_plugin_did_its_work(&world, &records);
}

/// A probe attack: the invocation completes, every probe was refused (the plugin logs what
/// each got; "GOT" would be a leak), and the audit trail shows the completed invocations.
async fn probe(attack: &str, refusals_per_run: usize) -> Vec<String> {
    install_log_capture();
    let world = World::new(2).await;
    let name = format!("probe-{attack}");
    let hostile = Plugin::hostile(&name, attack).grant(&["get-malop"]);
    let (_service, records) = cycle_with(&world, "", hostile).await;
    let runs = invocations(&records, &name);
    assert_eq!(runs.len(), 2);
    for run in &runs {
        assert_eq!(status(run), "completed", "{attack}: {:?}", run.result);
    }
    let logs = plugin_logs(&name);
    let leaks: Vec<&String> = logs.iter().filter(|l| l.contains("GOT")).collect();
    assert!(leaks.is_empty(), "the sandbox leaked: {leaks:#?}");
    let refused = logs.iter().filter(|l| l.contains("refused")).count();
    assert_eq!(
        refused,
        refusals_per_run * runs.len(),
        "every probe ran and was refused: {logs:#?}"
    );
    let sent = world.action_requests();
    assert!(
        sent.iter().all(|r| r.path == "/rest/classification/update"),
        "only the good plugin's reputation updates reached the server: {sent:?}"
    );
    assert_good_plugin_did_its_work(&world, &records);
    logs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_files_is_refused_in_the_service() {
    // 4 paths x (list + read) + 1 write, per invocation.
    probe("read-file", 9).await;
    assert!(!std::path::Path::new("planted.txt").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_environment_is_empty_in_the_service() {
    let logs = probe("env", 2).await;
    assert_eq!(
        logs.iter()
            .filter(|l| *l == "probe env args: 0 arguments")
            .count(),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_are_refused_in_the_service() {
    // 3 TCP connects + 1 UDP bind, per invocation.
    probe("socket", 4).await;
}

/// Receipts tell the truth (issue 11 §3): a remediation the server reports failed is
/// `failed` with the server's reason when the plugin asks for it again, not `submitted`; an
/// isolation of an offline sensor (`Primed`: queued by the server) is followed, not counted
/// as applied, until the sensor connects and shows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_say_failed_for_a_failed_action_and_primed_isolations_wait_for_the_sensor() {
    install_log_capture();
    let world = World::new(0).await;
    // Machine 0 offline: a kill there fails on the server; machine 1 online.
    let offline = world.sim.machines()[0].guid.clone();
    assert!(world.sim.set_online(&offline, false));
    let id = world.malop_on(&[0]);
    world.sim.with_state(|s| {
        let m = s.malops.iter_mut().find(|m| m.guid == id.as_str()).unwrap();
        for p in &mut m.suspects {
            p.machine = offline.clone();
        }
    });
    let killer = Plugin::hostile("receipts", "kill-suspects")
        .grant(&["get-malop", "remediate"])
        .remediation(&["kill-process"]);
    let isolator =
        Plugin::hostile("primed", "isolate-all").grant(&["get-malop", "isolate", "unisolate"]);
    let service = world
        .start("", &[killer, isolator])
        .await
        .expect("the service starts");
    service.run_cycle().await.expect("the first cycle");
    let first: Vec<String> = plugin_logs("receipts");
    assert!(first.iter().any(|l| l.contains("Submitted")), "{first:?}");

    // The isolation of the offline sensor was answered Primed: queued, not applied yet.
    let store = service.store();
    let isolation = || {
        let mut all = store
            .list_actions(&ActionFilter {
                plugin: Some(riposte_domain::PluginName::new("primed")),
                ..ActionFilter::default()
            })
            .unwrap();
        all.retain(|a| a.undo_of.is_none());
        assert_eq!(all.len(), 1);
        all.remove(0)
    };
    let queued = isolation();
    assert!(
        queued
            .server_result
            .as_ref()
            .unwrap()
            .to_string()
            .contains("Primed"),
        "{:?}",
        queued.server_result
    );
    assert_eq!(queued.state, riposte_store::ActionState::Following);
    assert!(
        store.get_undo(&queued.id).unwrap().is_none(),
        "nothing to undo yet"
    );
    let receipts = plugin_logs("primed");
    assert!(
        receipts.iter().any(|l| l.contains("Submitted")),
        "{receipts:?}"
    );
    assert!(
        !receipts.iter().any(|l| l.contains("Succeeded")),
        "{receipts:?}"
    );

    // The kill failed on the server; asked again, the receipt says so and why.
    world.sim.touch_malop(&id);
    service.run_cycle().await.expect("the second cycle");
    let again: Vec<String> = plugin_logs("receipts");
    let failed = again
        .iter()
        .find(|l| l.contains("Failed"))
        .unwrap_or_else(|| panic!("a failed receipt: {again:?}"));
    assert!(failed.contains("Sensor is disconnected"), "{failed}");
    assert_eq!(
        world.sim.count("POST", "/rest/remediate"),
        1,
        "answered from the ledger, not sent again"
    );
    assert_eq!(
        isolation().state,
        riposte_store::ActionState::Following,
        "the sensor is still offline"
    );

    // The sensor connects and runs the queued isolation: the next cycle sees it applied,
    // without sending it again.
    assert!(world.sim.set_online(&offline, true));
    service.run_cycle().await.expect("the third cycle");
    let applied = isolation();
    assert_eq!(applied.state, riposte_store::ActionState::Succeeded);
    assert!(
        store.get_undo(&applied.id).unwrap().is_some(),
        "its undo is recorded"
    );
    assert_eq!(
        world
            .sim
            .count("POST", "/rest/monitor/global/commands/isolate"),
        1
    );

    // Undone while the sensor is offline again: the un-isolation is queued too, asking again
    // returns it as it stands, and the isolation is undone once the sensor shows it.
    assert!(world.sim.set_online(&offline, false));
    let undo = service
        .undo(applied.id.as_str(), "analyst")
        .await
        .expect("the undo is sent");
    assert_eq!(undo.state, riposte_store::ActionState::Following);
    let again = service.undo(applied.id.as_str(), "analyst").await.unwrap();
    assert_eq!(again.id, undo.id);
    let unisolations = || {
        world
            .sim
            .count("POST", "/rest/monitor/global/commands/un-isolate")
    };
    assert_eq!(unisolations(), 1, "not sent again");
    assert_eq!(isolation().state, riposte_store::ActionState::Succeeded);
    assert!(world.sim.set_online(&offline, true));
    service.run_cycle().await.expect("the fourth cycle");
    assert_eq!(
        store.get_action(&undo.id).unwrap().state,
        riposte_store::ActionState::Succeeded
    );
    assert_eq!(isolation().state, riposte_store::ActionState::Undone);
    let record = store.get_undo(&applied.id).unwrap().unwrap();
    assert_eq!(record.undone_by.as_deref(), Some("analyst"));
    assert_eq!(unisolations(), 1);
}

/// A queued isolation whose sensor never connects times out at the follow limit, saying the
/// server may still apply it; the queued isolations are checked with one sensors query.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primed_isolation_times_out_when_the_sensor_never_connects() {
    install_log_capture();
    let world = World::new(0).await;
    for i in [0, 1] {
        let offline = world.sim.machines()[i].guid.clone();
        assert!(world.sim.set_online(&offline, false));
        world.malop_on(&[i]);
    }
    let isolator = Plugin::hostile("primed", "isolate-all").grant(&["get-malop", "isolate"]);
    let service = world
        .start("[service.follow]\nmax_polls = 3\n", &[isolator])
        .await
        .expect("the service starts");
    let store = service.store();
    let states = || {
        store
            .list_actions(&ActionFilter::default())
            .unwrap()
            .into_iter()
            .map(|a| a.state)
            .collect::<Vec<_>>()
    };
    service.run_cycle().await.expect("the first cycle");
    assert_eq!(states(), [riposte_store::ActionState::Following; 2]);
    let mut cycles = 1;
    while !states().iter().all(|s| s.is_final()) {
        cycles += 1;
        assert!(cycles <= 5, "still {:?} after {cycles} cycles", states());
        world.sim.clear_requests();
        service.run_cycle().await.expect("a cycle");
        assert_eq!(
            world.sim.count("POST", "/rest/sensors/query"),
            1,
            "both checked with one query"
        );
        assert_eq!(
            world
                .sim
                .count("POST", "/rest/monitor/global/commands/isolate"),
            0,
            "a queued change is checked, never sent again"
        );
    }
    for timed_out in store.list_actions(&ActionFilter::default()).unwrap() {
        assert_eq!(timed_out.state, riposte_store::ActionState::TimedOut);
        assert!(
            store.get_undo(&timed_out.id).unwrap().is_some(),
            "the server may still apply it: it can be undone"
        );
        let error = timed_out.last_error.unwrap_or_default();
        assert!(error.contains("applies it when they connect"), "{error}");
    }
    assert_eq!(cycles, 4, "the send, then max_polls checks");
}

/// A remediation sent without a Malop id is followed to its final status like any other
/// (never recorded succeeded while pending), and one whose answer was lost is not sent again
/// blindly: the server lists remediations only per Malop, so it cannot be looked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remediation_without_a_malop_id_is_followed_and_never_resent_blindly() {
    use riposte_sim::{Fault, FaultKind};
    use riposte_store::ActionState;
    install_log_capture();
    let world = World::new(2).await;
    for machine in world.sim.machines() {
        world.sim.set_online(&machine.guid, true);
    }
    world.sim.with_state(|s| s.steps_per_poll = 1);
    // A remediation that names no Malop is outside any Malop's scope (G11): the operator
    // grants this plugin a wider scope for it.
    let killer = Plugin::hostile("no-malop", "kill-suspects-no-malop")
        .grant(&["get-malop", "remediate"])
        .remediation(&["kill-process"])
        .wider_scope(&["kill-process"]);
    let service = world
        .start("", &[killer])
        .await
        .expect("the service starts");
    // The first Malop's kill is followed; the second's answer is cut off after it was sent.
    let ids = world.malop_ids();
    world.sim.inject(
        Fault::new(FaultKind::Reset, 1)
            .on("/rest/remediate")
            .after_processing(),
    );
    service.run_cycle().await.expect("the cycle runs");
    let store = service.store();
    let actions = store
        .list_actions(&ActionFilter {
            plugin: Some(riposte_domain::PluginName::new("no-malop")),
            ..ActionFilter::default()
        })
        .unwrap();
    assert_eq!(actions.len(), ids.len());
    assert!(actions.iter().all(|a| a.malop_id.is_none()));
    let followed: Vec<_> = actions
        .iter()
        .filter(|a| a.remediation_id.is_some())
        .collect();
    assert_eq!(followed.len(), 1, "{actions:#?}");
    assert_eq!(followed[0].state, ActionState::Succeeded);
    assert!(
        followed[0].polls >= 1,
        "followed, not taken as done: {:?}",
        followed[0]
    );
    let progress = world
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/rest/remediate/progress/"))
        .count();
    assert!(progress >= 2, "progress polled until final");

    // The cut-off one: recovery does not send it again.
    let lost = actions.iter().find(|a| a.remediation_id.is_none()).unwrap();
    assert_eq!(
        lost.state,
        ActionState::Submitted,
        "outcome unknown: {lost:?}"
    );
    service
        .run_cycle()
        .await
        .expect("the next cycle settles it");
    let lost = store.get_action(&lost.id).unwrap();
    assert_eq!(lost.state, ActionState::TimedOut, "{lost:?}");
    assert!(
        lost.last_error
            .as_deref()
            .is_some_and(|e| e.contains("without a Malop id")),
        "{lost:?}"
    );
    assert_eq!(
        world.sim.count("POST", "/rest/remediate"),
        2,
        "two remediations sent, none sent again"
    );
}

/// Runs the hostile plugin (`name`, `attack`, granted kills and their status) once on the
/// world's first Malop, with a follower that waits a minute before its first poll (the
/// ledger stays at PENDING meanwhile, so a status asks the server); it must complete.
async fn invoke_with_a_slow_follower(
    world: &World,
    name: &str,
    attack: &str,
) -> riposte_service::Service {
    use riposte_service::{FollowPolicy, Service};
    let plugin = Plugin::hostile(name, attack)
        .grant(&["get-malop", "remediate", "remediation-status"])
        .remediation(&["kill-process"]);
    let config = riposte_service::OperatorConfig::load(world.write_config("", &[plugin])).unwrap();
    let slow = FollowPolicy {
        poll_interval: Duration::from_secs(60),
        max_poll_interval: Duration::from_secs(60),
        ..FollowPolicy::default()
    };
    let service = Service::start(config, world.client.clone(), slow, world.metrics.clone())
        .await
        .unwrap();
    let id = world.malop_ids().remove(0);
    let malop = world.malop(&id).await;
    let report = service.invoke_on_malop(&service.plugins()[0], &malop).await;
    assert_eq!(
        report.outcome,
        riposte_runtime::Outcome::Completed,
        "{}",
        report.stderr
    );
    service
}

/// Each `remediation.status` the host passes on to the server takes a query unit: a plugin
/// asking 200 times reaches the server at most `queries_per_invocation` times (20), and is
/// answered from the ledger past it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_flood_reaches_the_server_within_the_query_quota() {
    install_log_capture();
    let world = World::new(1).await;
    invoke_with_a_slow_follower(&world, "status-flood", "status-flood").await;
    let logs = plugin_logs("status-flood");
    assert!(
        logs.iter().any(|l| l.contains("status-flood: ")),
        "{logs:?}"
    );
    let asked = world.sim.count("GET", "/rest/remediate/progress/");
    assert!(
        (1..=20).contains(&asked),
        "{asked} progress reads for 200 status calls"
    );
}

/// `remediation.status` asks the server while the ledger has no final status: with the
/// follower still waiting for its first poll, the plugin hears the server's word.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remediation_status_asks_the_server_while_the_ledger_is_not_final() {
    install_log_capture();
    let world = World::new(1).await;
    world.sim.with_state(|s| s.steps_per_poll = 2);
    let service = invoke_with_a_slow_follower(&world, "asks-status", "kill-then-status").await;
    let logs = plugin_logs("asks-status");
    assert!(
        logs.iter()
            .any(|l| l.contains("status") && l.contains("Success")),
        "the server's SUCCESS, not the ledger's PENDING: {logs:?}"
    );
    let actions = service
        .store()
        .list_actions(&ActionFilter::default())
        .unwrap();
    assert_eq!(actions.len(), 1);
    assert!(!actions[0].state.is_final(), "the ledger was not final");
    assert_eq!(
        actions[0].progress,
        Some(riposte_domain::RemediationProgress::Pending),
        "the ledger's last word was PENDING"
    );
}

// ---- G11: confinement and quotas (issue 12) ----------------------------------------------
//
// Each attack below comes from a hostile plugin written against the public WIT, next to the
// well-behaved plugin. Each is contained (nothing reaches the server that should not), the
// refusal is audited with a bounded record, and the good plugin completes its work.

/// The longest audit line any record about `plugin` may take: nothing a plugin sends is
/// copied whole into the audit trail.
const MAX_AUDIT_LINE: usize = 16 << 10;

/// Asserts that every audit line about `plugin` is bounded.
fn assert_bounded_audit(world: &World, plugin: &str) {
    let text = std::fs::read_to_string(world.audit_path()).expect("the audit trail reads");
    let tag = format!("\"plugin\":\"{plugin}\"");
    let lines: Vec<&str> = text.lines().filter(|l| l.contains(&tag)).collect();
    assert!(!lines.is_empty(), "{plugin} has audit records");
    for line in lines {
        assert!(
            line.len() <= MAX_AUDIT_LINE,
            "an audit record of {plugin} has {} bytes: {}...",
            line.len(),
            &line[..200]
        );
    }
}

/// The good plugin's invocations completed, each well within its own wall-clock limit.
fn assert_good_plugin_unharmed(records: &[Record]) {
    let runs = invocations(records, GOOD);
    assert!(!runs.is_empty());
    for run in runs {
        assert_eq!(status(run), "completed", "good plugin: {:?}", run.result);
        assert!(
            Duration::from_micros(run.duration_us) < Duration::from_millis(GOOD_WALL_CLOCK_MS),
            "the good plugin ran in its normal time: {} us",
            run.duration_us
        );
    }
}

/// The attack was contained: nothing but the good plugin's reputation updates reached the
/// server, every audit record about `plugin` is bounded, and the good plugin did its work in
/// its normal time.
fn assert_contained(world: &World, plugin: &str, records: &[Record]) {
    let sent = world.action_requests();
    assert!(
        sent.iter().all(|r| r.path == "/rest/classification/update"),
        "only reputation updates reached the server: {sent:?}"
    );
    assert_bounded_audit(world, plugin);
    assert_good_plugin_did_its_work(world, records);
    assert_good_plugin_unharmed(records);
}

/// Every record of `records` is a denial of `category`.
fn assert_all_denied(records: &[&Record], category: &str) {
    for record in records {
        assert_eq!(
            decision(record),
            ("deny".to_owned(), Some(category.to_owned())),
            "{record:?}"
        );
    }
}

/// The good plugin's wall-clock limit in the G11 tests.
const GOOD_WALL_CLOCK_MS: u64 = 5_000;

/// The records of `plugin` the gate decided (queries and actions).
fn decisions_of<'a>(records: &'a [Record], plugin: &str) -> Vec<&'a Record> {
    records
        .iter()
        .filter(|r| r.plugin.as_ref().is_some_and(|p| p.as_str() == plugin))
        .filter(|r| r.decision.is_some())
        .collect()
}

/// The action records of `plugin` (every call that would change something on the server).
fn actions_of<'a>(records: &'a [Record], plugin: &str) -> Vec<&'a Record> {
    decisions_of(records, plugin)
        .into_iter()
        .filter(|r| {
            riposte_domain::Operation::ALL
                .iter()
                .any(|o| o.is_action() && o.name() == r.call.as_str())
        })
        .collect()
}

/// What the hostile plugin's probes got, from its log lines: (probe, outcome).
fn probes(plugin: &str) -> Vec<(String, String)> {
    plugin_logs(plugin)
        .into_iter()
        .filter_map(|l| {
            let (what, outcome) = l.split_once(": ")?;
            Some((what.to_owned(), outcome.to_owned()))
        })
        .collect()
}

fn detail(record: &Record) -> &str {
    &record.decision.as_ref().expect("a decision").detail
}

/// Starts a service with `plugins` and runs one cycle.
async fn one_cycle(world: &World, global: &str, plugins: &[Plugin]) -> (Service, Vec<Record>) {
    let service = world
        .start(global, plugins)
        .await
        .expect("the service starts");
    service.run_cycle().await.expect("the cycle runs");
    let records = world.audit();
    (service, records)
}

fn good_bounded() -> Plugin {
    good().limit("wall_clock_ms", GOOD_WALL_CLOCK_MS)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_out_of_scope_target_from_on_malop_is_denied_whatever_its_kind() {
    install_log_capture();
    let world = World::new(0).await;
    let a = world.malop_on(&[0, 1]);
    let b = world.malop_on(&[2, 3]);
    let (name, machines) = ("hostile-scope", world.sim.machines());
    let hostile = Plugin::hostile(name, "out-of-scope")
        .grant(&[
            "get-malop",
            "list-malops",
            "isolate",
            "remediate",
            "set-reputation",
        ])
        .remediation(&["kill-process", "quarantine-file"]);
    let (_service, records) = one_cycle(&world, "", &[hostile, good_bounded()]).await;

    let asked = actions_of(&records, name);
    // Per invocation: isolate the other Malop's machines, kill its 2 suspects on their
    // machines and on one of mine, quarantine its 2 files, blacklist its root-cause hash,
    // isolate a made-up machine.
    assert_eq!(asked.len(), 2 * 9, "{asked:#?}");
    assert_all_denied(&asked, "out-of-scope");
    for record in &asked {
        let handled = record.malop.as_ref().expect("filed under a Malop");
        assert!(*handled == a || *handled == b);
        assert!(
            detail(record).contains(&format!("Malop {handled} does not name it")),
            "the record names why: {}",
            detail(record)
        );
    }
    // The records name the targets.
    let isolate_a = asked
        .iter()
        .find(|r| r.call.as_str() == "isolate" && r.malop.as_ref() == Some(&a))
        .expect("an isolate on a's invocation");
    assert!(
        detail(isolate_a).contains(&machines[2].guid),
        "{}",
        detail(isolate_a)
    );
    // The plugin got the typed error (out-of-scope; `denied` for riposte:plugin@0.1.0).
    let outcomes = probes(name);
    assert!(!outcomes.is_empty());
    for (what, got) in &outcomes {
        assert!(
            got.starts_with("refused: out-of-scope: out of scope:"),
            "{what}: {got}"
        );
    }
    // Nothing of the hostile plugin reached the server; no protected-asset rule was needed.
    assert!(
        world
            .sim
            .machines()
            .iter()
            .all(|m| !m.isolated && m.primed.is_none())
    );
    assert_eq!(kills_sent(&world), Vec::<usize>::new());
    assert_contained(&world, name, &records);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_action_from_on_interval_is_denied_unless_the_operator_grants_a_wider_scope() {
    let world = World::new(0).await;
    let a = world.malop_on(&[0, 1]);
    let hostile = |scope: &[&str]| {
        Plugin::hostile("hostile-interval", "interval")
            .grant(&["get-malop", "list-malops", "isolate", "set-status"])
            .wider_scope(scope)
    };

    // No wider scope: every action of on-interval is out of scope, and nothing is sent.
    let (service, records) = one_cycle(&world, "", &[hostile(&[]), good_bounded()]).await;
    let hooks = records_of(&records, "hostile-interval", "invoke:on-interval");
    assert_eq!(hooks.len(), 1, "on-interval ran once");
    assert_eq!(status(hooks[0]), "completed");
    let asked = actions_of(&records, "hostile-interval");
    assert_eq!(asked.len(), 2, "isolate and set-status on the one Malop");
    assert_all_denied(&asked, "out-of-scope");
    for record in &asked {
        assert!(
            detail(record).contains("on-interval handles no Malop"),
            "{}",
            detail(record)
        );
        assert_eq!(
            record.malop, None,
            "not filed under a Malop it was not handling"
        );
    }
    assert!(world.sim.machines().iter().all(|m| !m.isolated));
    let status = world
        .sim
        .with_state(|s| s.malop(a.as_str()).map(|m| m.status));
    assert_eq!(status, Some(riposte_domain::ManagementStatus::Unread));
    assert_bounded_audit(&world, "hostile-interval");
    assert_good_plugin_unharmed(&records);

    // The operator, not the plugin, sets how often on-interval runs: the plugin asks for
    // every second, the default cap is a minute, so a second cycle runs no hook.
    let plugin = service
        .plugins()
        .iter()
        .find(|p| p.policy.name.as_str() == "hostile-interval")
        .expect("the hostile plugin");
    assert_eq!(plugin.info.interval_seconds, Some(1));
    assert_eq!(plugin.interval_secs(), Some(60));
    service.run_cycle().await.expect("a second cycle");
    let records = world.audit();
    assert_eq!(
        records_of(&records, "hostile-interval", "invoke:on-interval").len(),
        1
    );
    drop(service);

    // A wider scope for `isolate` only: the isolation goes through (and is audited under the
    // Malop it names), the status change still does not.
    let world = World::new(0).await;
    let a2 = world.malop_on(&[0, 1]);
    let (_service, records) = one_cycle(&world, "", &[hostile(&["isolate"]), good_bounded()]).await;
    let asked = actions_of(&records, "hostile-interval");
    let isolate = asked.iter().find(|r| r.call.as_str() == "isolate").unwrap();
    assert_eq!(decision(isolate).0, "allow");
    assert_eq!(isolate.malop.as_ref(), Some(&a2));
    let status_change = asked
        .iter()
        .find(|r| r.call.as_str() == "set-status")
        .unwrap();
    assert_eq!(
        decision(status_change),
        ("deny".to_owned(), Some("out-of-scope".to_owned()))
    );
    let after = world.sim.machines();
    assert!(after[0].isolated && after[1].isolated);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_malop_id_is_denied_and_audited_under_the_malop_handled() {
    install_log_capture();
    let world = World::new(0).await;
    let a = world.malop_on(&[0, 1]);
    let b = world.malop_on(&[2, 3]);
    let name = "hostile-foreign";
    let hostile = Plugin::hostile(name, "foreign-malop").grant(&[
        "get-malop",
        "list-malops",
        "isolate",
        "set-status",
        "add-comment",
    ]);
    let (_service, records) = one_cycle(&world, "", &[hostile, good_bounded()]).await;
    let asked = actions_of(&records, name);
    // Per invocation: isolate with no Malop, then isolate, set-status, add-comment naming
    // the other Malop.
    assert_eq!(asked.len(), 2 * 4, "{asked:#?}");
    assert_all_denied(&asked, "out-of-scope");
    for record in &asked {
        let handled = record
            .malop
            .as_ref()
            .expect("filed under the Malop handled");
        let other = if *handled == a { &b } else { &a };
        let d = detail(record);
        assert!(
            d.contains(&format!(
                "names Malop `{other}`, but the plugin is handling Malop {handled}"
            )) || d.contains(&format!(
                "names no Malop, but the plugin is handling Malop {handled}"
            )),
            "{d}"
        );
    }
    for (what, got) in probes(name) {
        assert!(
            got.starts_with("refused: out-of-scope: out of scope:"),
            "{what}: {got}"
        );
    }
    assert!(world.sim.machines().iter().all(|m| !m.isolated));
    let comments: Vec<String> = world
        .sim
        .malops()
        .iter()
        .flat_map(|m| m.comments.iter().map(|c| c.message.clone()))
        .collect();
    assert!(
        comments.iter().all(|c| !c.contains("hostile")),
        "{comments:?}"
    );
    assert!(
        world
            .sim
            .malops()
            .iter()
            .all(|m| m.status == riposte_domain::ManagementStatus::Unread)
    );
    assert_contained(&world, name, &records);
}

/// Requests the simulator logged whose path or body mentions `text`.
fn requests_mentioning(world: &World, text: &str) -> usize {
    world
        .sim
        .requests()
        .iter()
        .filter(|r| r.path.contains(text) || r.body.contains(text))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_flood_stops_at_the_quotas_per_invocation_and_per_minute() {
    install_log_capture();
    let world = World::new(3).await;
    let fake = riposte_domain::MalopId::new("11.4242424242");
    // What one get-malop costs the server, measured with the real client.
    let before = requests_mentioning(&world, fake.as_str());
    assert!(world.client.get_malop_details(&fake).await.is_err());
    let per_query = requests_mentioning(&world, fake.as_str()) - before;
    assert!(per_query >= 1);

    let name = "hostile-queries";
    let hostile = Plugin::hostile(name, "query-flood")
        .grant(&["get-malop"])
        .quota("queries_per_invocation", 5)
        .quota("queries_per_minute", 8);
    let (_service, records) = one_cycle(&world, "", &[hostile, good_bounded()]).await;

    let queries = records_of(&records, name, "get-malop");
    let allowed = queries.iter().filter(|r| decision(r).0 == "allow").count();
    assert_eq!(
        allowed, 8,
        "the minute's quota across the three invocations"
    );
    for refused in queries.iter().filter(|r| decision(r).0 == "deny") {
        assert_eq!(decision(refused).1.as_deref(), Some("quota-exceeded"));
        assert!(
            detail(refused).contains("queries_per_invocation")
                || detail(refused).contains("queries_per_minute"),
            "{}",
            detail(refused)
        );
    }
    // The server saw exactly the allowed queries, whatever the plugin's own time limit.
    assert_eq!(
        requests_mentioning(&world, fake.as_str()) - before,
        per_query * (1 + 8)
    );
    // Each invocation was refused after at most 5, and all together got 8.
    let stops: Vec<u32> = probes(name)
        .iter()
        .filter_map(|(what, got)| {
            assert!(got.starts_with("refused: quota-exceeded: "), "{got}");
            what.strip_prefix("query-flood after ")?
                .strip_suffix(" queries")?
                .parse()
                .ok()
        })
        .collect();
    assert_eq!(stops.len(), 3, "{stops:?}");
    assert!(stops.iter().all(|n| *n <= 5), "{stops:?}");
    assert_eq!(stops.iter().sum::<u32>(), 8);
    for run in invocations(&records, name) {
        assert_eq!(status(run), "completed");
        assert!(run.result["quotas"]["queries"].as_u64().unwrap() <= 5);
    }
    assert_contained(&world, name, &records);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_ids_arguments_and_errors_are_refused_and_audited_as_excerpts() {
    install_log_capture();
    let world = World::new(2).await;
    let name = "hostile-oversized";
    let hostile = Plugin::hostile(name, "oversized").grant(&[
        "get-malop",
        "isolate",
        "add-comment",
        "set-reputation",
    ]);
    let (_service, records) = one_cycle(&world, "", &[hostile, good_bounded()]).await;

    let asked = decisions_of(&records, name);
    let refused: Vec<&&Record> = asked.iter().filter(|r| decision(r).0 == "deny").collect();
    // Per invocation: 4 isolations, a comment, a key, a get-malop.
    assert_eq!(refused.len(), 2 * 7, "{asked:#?}");
    for record in &refused {
        assert_eq!(
            decision(record).1.as_deref(),
            Some("quota-exceeded"),
            "{record:?}"
        );
        assert!(detail(record).contains("at most"), "{}", detail(record));
    }
    let big = refused
        .iter()
        .filter(|r| r.call.as_str() == "isolate")
        .filter_map(|r| r.arguments["request_bytes"].as_u64())
        .max()
        .expect("the size of a refused request is recorded");
    assert!(big > 1 << 20, "{big}");
    for run in invocations(&records, name) {
        assert_eq!(status(run), "plugin-error");
        let reason = run.result["reason"].as_str().unwrap();
        assert!(
            reason.len() < 4096 && reason.contains("bytes]"),
            "the plugin's 1 MiB error is cut: {} bytes",
            reason.len()
        );
    }
    for (what, got) in probes(name) {
        let expected = if what.contains("kv") {
            "refused: invalid-argument: "
        } else {
            "refused: quota-exceeded: "
        };
        assert!(got.starts_with(expected), "{what}: {got}");
    }
    assert_contained(&world, name, &records);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_drained_with_made_up_targets_is_given_back_and_starves_no_rule() {
    install_log_capture();
    let world = World::new(0).await;
    // A Malop the good rule leaves alone, for the hostile plugin to find real machines on.
    let decoy = world.malop_on(&[2, 3]);
    world.sim.with_state(|s| {
        let m = s
            .malops
            .iter_mut()
            .find(|m| m.guid == decoy.as_str())
            .unwrap();
        m.detection_type = "CUSTOM_RULE".into();
        m.activity_types = vec!["PERSISTENCE".into()];
    });
    let global = "[[global_budgets]]\naction = \"isolate\"\nmax = 5\nwindow_secs = 3600\n\n\
                  [[global_budgets]]\naction = \"kill-process\"\nmax = 2\nwindow_secs = 3600\n";
    let containment = Plugin::new("good-containment", "ransomware-containment")
        .grant(&["get-malop", "isolate", "remediate", "remediation-status"])
        .remediation(&["kill-process"]);
    let name = "hostile-drain";
    let hostile = Plugin::hostile(name, "drain")
        .grant(&["get-malop", "list-malops", "isolate", "remediate"])
        .remediation(&["kill-process"])
        .wider_scope(&["isolate", "kill-process"]);
    let service = world
        .start(global, &[hostile, containment])
        .await
        .expect("the service starts");

    // Cycle 1: on-interval spends 10 × 3 isolations of made-up machines and 10 kills of
    // made-up processes on a real machine, one after the other: 30 and 10 units against
    // budgets of 5 and 2. Every unit comes back, so every call is allowed.
    service.run_cycle().await.expect("cycle 1");
    let records = world.audit();
    let asked = actions_of(&records, name);
    assert_eq!(asked.len(), 20, "{asked:#?}");
    for record in &asked {
        assert_eq!(decision(record).0, "allow", "{}", detail(record));
    }
    let refunds = records_of(&records, name, "budget-refunded");
    assert_eq!(refunds.len(), 20);
    let units: u64 = refunds
        .iter()
        .map(|r| r.result["units_given_back"].as_u64().unwrap())
        .sum();
    assert_eq!(units, 10 * 3 + 10);
    // The receipts tell the plugin the truth: each action failed on the server.
    for (what, got) in probes(name) {
        assert!(
            got.starts_with("receipt Disposition::Failed:"),
            "{what}: {got}"
        );
    }
    // The sent-but-rejected ones are recorded failed, not unknown: nothing is left for
    // recovery to send again.
    assert!(service.store().unresolved_actions().unwrap().is_empty());
    let failed = service
        .store()
        .list_actions(&ActionFilter {
            plugin: Some(name.into()),
            ..ActionFilter::default()
        })
        .unwrap();
    assert!(
        failed
            .iter()
            .all(|a| a.state == riposte_store::ActionState::Failed)
    );
    let used = service
        .gate()
        .budget_status(None, riposte_domain::now_ms())
        .unwrap();
    assert!(used.iter().all(|b| b.used == 0), "{used:?}");
    assert!(world.sim.machines().iter().all(|m| !m.isolated));

    // Cycle 2: a ransomware Malop; the real rule still has its whole budget.
    let ransomware = world.malop_on(&[0, 1]);
    world.sim.with_state(|s| {
        let m = s
            .malops
            .iter_mut()
            .find(|m| m.guid == ransomware.as_str())
            .unwrap();
        m.detection_type = "RANSOMWARE".into();
        m.activity_types = vec!["RANSOMWARE".into()];
    });
    service.run_cycle().await.expect("cycle 2");
    let records = world.audit();
    let good: Vec<&Record> = actions_of(&records, "good-containment")
        .into_iter()
        .filter(|r| r.malop.as_ref() == Some(&ransomware))
        .collect();
    assert_eq!(good.len(), 2, "isolate and kill: {good:#?}");
    for record in &good {
        assert_eq!(decision(record).0, "allow", "{}", detail(record));
    }
    let after = world.sim.machines();
    assert!(after[0].isolated && after[1].isolated);
    let carried = service
        .store()
        .list_actions(&ActionFilter {
            plugin: Some("good-containment".into()),
            ..ActionFilter::default()
        })
        .unwrap();
    assert_eq!(carried.len(), 2);
    assert!(
        carried
            .iter()
            .all(|a| a.state == riposte_store::ActionState::Succeeded)
    );
    assert_bounded_audit(&world, name);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whitelisting_the_malops_own_hashes_is_refused_even_with_a_wider_scope() {
    install_log_capture();
    let world = World::new(0).await;
    let a = world.malop_on(&[0, 1]);
    let malop = world.malop(&a).await;
    let name = "hostile-whitelist";
    let hostile = Plugin::hostile(name, "whitelist-own")
        .grant(&["get-malop", "set-reputation"])
        .whitelist()
        .wider_scope(&["whitelist"]);
    // Whitelisting is its own grant: set-reputation alone allows only blacklisting.
    let ungranted = Plugin::hostile("hostile-no-whitelist", "whitelist-own")
        .grant(&["get-malop", "set-reputation"])
        .wider_scope(&["blacklist"]);
    let (_service, records) = one_cycle(&world, "", &[hostile, ungranted, good_bounded()]).await;

    let own: Vec<String> = malop
        .root_causes
        .iter()
        .flat_map(|r| r.hashes.clone())
        .chain(malop.suspects.iter().filter_map(|s| s.image_sha1.clone()))
        .collect();
    let asked = records_of(&records, name, "set-reputation");
    assert_eq!(asked.len(), own.len() + 1);
    for record in &asked[..own.len()] {
        assert_eq!(
            decision(record),
            ("deny".to_owned(), Some("protected-target".to_owned()))
        );
        assert!(
            detail(record).contains(&format!("root-cause or suspect hash of Malop {a}")),
            "{}",
            detail(record)
        );
    }
    assert_eq!(
        decision(asked[own.len()]).0,
        "allow",
        "another hash, within the operator's wider scope"
    );
    for record in records_of(&records, "hostile-no-whitelist", "set-reputation") {
        assert_eq!(
            decision(record),
            ("deny".to_owned(), Some("denied".to_owned()))
        );
        assert!(
            detail(record).contains("`whitelist` is not"),
            "{}",
            detail(record)
        );
    }
    let reputations = world.sim.with_state(|s| s.reputations.clone());
    for hash in &own {
        let entry = reputations.get(&hash.to_ascii_lowercase());
        assert!(
            entry.is_none_or(|e| e.verdict == "blacklist"),
            "{hash} was never whitelisted: {entry:?}"
        );
    }
    assert_eq!(
        reputations
            .get("0123456789abcdef0123456789abcdef01234567")
            .map(|e| e.verdict.as_str()),
        Some("whitelist")
    );
    assert_contained(&world, name, &records);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kv_write_flood_stops_at_the_quotas_per_invocation_and_per_minute() {
    install_log_capture();
    let world = World::new(3).await;
    let name = "hostile-kv";
    let hostile = Plugin::hostile(name, "kv-flood")
        .grant(&["get-malop"])
        .quota("kv_writes_per_invocation", 10)
        .quota("kv_writes_per_minute", 25);
    let (service, records) = one_cycle(&world, "", &[hostile, good_bounded()]).await;
    let keys = service.store().kv_keys(name).unwrap();
    assert_eq!(keys.len(), 25, "{keys:?}");
    let stops: Vec<u32> = probes(name)
        .iter()
        .filter_map(|(what, got)| {
            assert!(got.starts_with("refused: quota-exceeded: "), "{got}");
            what.strip_prefix("kv-flood after ")?
                .strip_suffix(" writes")?
                .parse()
                .ok()
        })
        .collect();
    assert_eq!(stops.len(), 3);
    assert!(stops.iter().all(|n| *n <= 10), "{stops:?}");
    assert_eq!(stops.iter().sum::<u32>(), 25);
    for run in invocations(&records, name) {
        assert_eq!(status(run), "completed");
        assert!(
            run.result["quotas"]["refused"]["kv_writes"]
                .as_u64()
                .unwrap()
                >= 1
        );
    }
    assert_contained(&world, name, &records);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdout_stderr_and_log_share_one_output_cap() {
    for reason in reasons(&contain("mixed-flood").await) {
        assert!(reason.starts_with("output cap:"), "{reason}");
    }
}

/// Runs `riposte run --once` on `env` with `--log-format format`; its stderr.
async fn run_once_logging(env: &ServiceEnv, format: &str) -> String {
    let out = tokio::process::Command::new(riposte_bin())
        .args(["run", "--once", "--log-format", format, "--config"])
        .arg(&env.config)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), out)
        .await
        .expect("riposte run --once finishes within a minute")
        .expect("riposte runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "riposte run failed:\n{stderr}");
    stderr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_log_message_cannot_forge_a_line_of_riposte_log_in_any_format() {
    let sim = start_sim(7, 2).await;
    let setup = Setup::new(vec![
        PluginSpec::hostile("log-forge"),
        PluginSpec::reputation_feed(),
    ]);

    let human = run_once_logging(&ServiceEnv::new(&sim, &setup), "human").await;
    let lines: Vec<&str> = human.lines().collect();
    let logged: Vec<&&str> = lines.iter().filter(|l| l.contains("benign")).collect();
    assert_eq!(logged.len(), 2, "one line per Malop:\n{human}");
    for line in &logged {
        assert!(
            line.contains("benign\\nFORGED") && line.contains("\\u{1b}[2K"),
            "escaped in place: {line}"
        );
    }
    for line in &lines {
        assert!(
            !line.starts_with("FORGED") && !line.starts_with("{\"fields\""),
            "a forged line: {line}"
        );
        assert!(
            !line.contains('\u{1b}') && !line.contains('\u{2028}'),
            "{line:?}"
        );
    }

    let json = run_once_logging(&ServiceEnv::new(&sim, &setup), "json").await;
    let mut seen = 0;
    for line in json.lines().filter(|l| !l.trim().is_empty()) {
        let record: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("every line is a JSON log record ({e}): {line}"));
        let message = record["fields"]["message"].as_str().unwrap_or_default();
        assert_ne!(message, "FORGED");
        if message.starts_with("benign") {
            seen += 1;
            assert!(message.contains("benign\\nFORGED") && !message.contains('\n'));
        }
    }
    assert_eq!(seen, 2, "{json}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_action_its_invocation_never_sent_is_recorded_failed_and_never_sent_later() {
    let world = World::new(0).await;
    world.malop_on(&[0, 1]);
    // The sensor lookup an isolation needs first hangs past the plugin's time limit: the
    // details fetch of the poll takes the first delay, the plugin's isolation the second.
    world.sim.inject(
        riposte_sim::Fault::new(riposte_sim::FaultKind::Delay, 2)
            .on("/rest/sensors/query")
            .delay_ms(3_000),
    );
    let name = "hostile-unsent";
    let hostile = Plugin::hostile(name, "interval")
        .grant(&["get-malop", "list-malops", "isolate", "set-status"])
        .wider_scope(&["isolate"])
        .limit("wall_clock_ms", 500);
    let global = "[[global_budgets]]\naction = \"isolate\"\nmax = 2\nwindow_secs = 3600\n";
    let service = world
        .start(global, &[hostile, good_bounded()])
        .await
        .expect("the service starts");
    service.run_cycle().await.expect("the cycle runs");
    let records = world.audit();
    let hook = records_of(&records, name, "invoke:on-interval");
    assert_eq!(hook.len(), 1);
    assert!(
        hook[0].result["reason"]
            .as_str()
            .unwrap()
            .starts_with("time limit:"),
        "{:?}",
        hook[0].result
    );
    let ledger = service
        .store()
        .list_actions(&ActionFilter {
            plugin: Some(name.into()),
            ..ActionFilter::default()
        })
        .unwrap();
    assert_eq!(ledger.len(), 1);
    assert_eq!(ledger[0].state, riposte_store::ActionState::Failed);
    assert!(
        ledger[0]
            .last_error
            .as_deref()
            .unwrap_or_default()
            .starts_with("not sent: the invocation ended"),
        "{:?}",
        ledger[0].last_error
    );
    assert!(service.store().unresolved_actions().unwrap().is_empty());
    assert_eq!(records_of(&records, name, "budget-refunded").len(), 1);
    let used = service
        .gate()
        .budget_status(None, riposte_domain::now_ms())
        .unwrap();
    assert!(used.iter().all(|b| b.used == 0), "{used:?}");

    // Later cycles do not send it either.
    service.run_cycle().await.expect("another cycle");
    assert_eq!(
        world.sim.count("POST", "/rest/monitor/global/commands/"),
        0,
        "{:?}",
        world.action_requests()
    );
    assert!(world.sim.machines().iter().all(|m| !m.isolated));
    assert_good_plugin_unharmed(&world.audit());
}

/// A poll the server answers `PARTIAL_SUCCESS` (a detection server did not answer) is not
/// taken as all there is: the Malops that came are evaluated, and the watermark stays, so a
/// Malop of the silent server, older than the overlap window, is evaluated at the next poll.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_listing_is_evaluated_and_does_not_skip_what_it_lacked() {
    let world = World::new(0).await;
    let mut ids = [world.malop_on(&[1]), world.malop_on(&[2])];
    ids.sort();
    // The partial answer keeps the greatest id: make it the newest, an hour after the other.
    world.sim.touch_malop(&ids[0]);
    world.sim.with_state(|s| s.clock_ms += 3_600_000);
    world.sim.touch_malop(&ids[1]);
    let isolator = Plugin::hostile("primed", "isolate-all").grant(&["get-malop", "isolate"]);
    let service = world
        .start("", &[isolator])
        .await
        .expect("the service starts");
    let isolated = |id: &riposte_domain::MalopId| {
        world
            .sim
            .requests()
            .iter()
            .filter(|r| r.path == "/rest/monitor/global/commands/isolate")
            .filter(|r| r.body.contains(id.as_str()))
            .count()
    };
    world
        .sim
        .inject(Fault::new(FaultKind::Partial, 1).on("/rest/crimes/unified"));
    service.run_cycle().await.expect("the partial cycle");
    assert_eq!(isolated(&ids[1]), 1, "the Malop that came is evaluated");
    assert_eq!(isolated(&ids[0]), 0, "the other was not listed");
    let incomplete = "riposte_poll_incomplete_total{source=\"crimes/unified:MalopProcess\"} 1\n";
    let metrics = world.metrics.render();
    assert!(
        metrics.contains(incomplete),
        "the held watermark is counted: {metrics}"
    );
    service.run_cycle().await.expect("the next cycle");
    assert_eq!(isolated(&ids[0]), 1, "read at the next poll, not skipped");
    assert_eq!(isolated(&ids[1]), 1, "and the first is not evaluated twice");
}
