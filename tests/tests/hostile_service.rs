//! The hostile-plugin suite through the real service (issue 4, G1 G2 G3 G7): `Service` with
//! its gated host, the simulator on loopback, a SQLite store and an audit file in a temporary
//! directory. Each attack is contained, the reason is in the audit trail (read back with
//! `riposte::audit::show` after `verify`), nothing reaches the server that should not, and a
//! well-behaved plugin configured in the same service completes its work on the same Malops.

use riposte::audit::Record;
use riposte::service::Service;
use riposte::sim::SimMalop;
use riposte::store::ActionFilter;
use riposte_e2e::gate_support::{
    Plugin, World, decision, install_log_capture, invocations, malops_of, plugin_logs, records_of,
    status,
};
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
fn isolate_of<'a>(records: &'a [Record], id: &riposte::domain::MalopId) -> &'a Record {
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
    let decisions = |records: &[Record], id: &riposte::domain::MalopId| -> Vec<Record> {
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
