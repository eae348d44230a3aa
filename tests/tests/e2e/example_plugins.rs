//! The example plugins, built from source, decide right on Malop fixtures: a case where
//! each must act, cases where it must not, and machines that are offline.
//! Expectations are those of tests/fixtures/malops/README.md.

use riposte_domain::ActionRequest;
use riposte_e2e::{dry_run, fixture, load, runtime};
use riposte_runtime::{Limits, Outcome};
use serde_json::{Value, json};

const OFFLINE_MACHINE: &str = "1592738110.-4312997468412375106";

fn as_json(actions: &[ActionRequest]) -> Value {
    serde_json::to_value(actions).unwrap()
}

/// One case: a fixture, the plugin's config values, and the actions it must ask for.
type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], Value);

/// Runs `plugin` on each fixture and checks it completed with exactly the expected actions.
async fn check(plugin: &str, cases: &[Case<'_>]) {
    let (runtime, cache) = runtime();
    let loaded = load(&runtime, &cache, plugin);
    for (fixture_name, config, expected) in cases {
        let run = dry_run(
            &runtime,
            &loaded,
            &fixture(fixture_name),
            config,
            &Limits::default(),
        )
        .await;
        assert_eq!(
            run.report.outcome,
            Outcome::Completed,
            "{plugin} on {fixture_name}: {:?}\nstderr: {}",
            run.report.outcome,
            run.report.stderr
        );
        let actions = as_json(&run.actions());
        assert_eq!(
            &actions, expected,
            "{plugin} on {fixture_name} with config {config:?}"
        );
        assert!(
            !actions.to_string().contains(OFFLINE_MACHINE),
            "{plugin} on {fixture_name} acted on the offline machine"
        );
    }
}

#[tokio::test]
async fn ransomware_containment_isolates_connected_machines_and_kills_suspects() {
    check(
        "ransomware-containment",
        &[
            (
                "ransomware",
                &[],
                json!([
                    {"action": "isolate", "malop_id": "11.-7780537507363356527",
                     "machines": ["-1845090846.1198775089551518743", "-1826875736.1198775089551518743"]},
                    {"action": "remediate", "malop_id": "11.-7780537507363356527", "targets": [
                        {"machine_guid": "-1845090846.1198775089551518743", "target_guid": "-1845090846.-1424333057657783286", "kind": "KILL_PROCESS"},
                        {"machine_guid": "-1826875736.1198775089551518743", "target_guid": "-1826875736.5837261945839287113", "kind": "KILL_PROCESS"}]}
                ]),
            ),
            ("ransomware", &[("isolate", "false")], json!([
                {"action": "remediate", "malop_id": "11.-7780537507363356527", "targets": [
                    {"machine_guid": "-1845090846.1198775089551518743", "target_guid": "-1845090846.-1424333057657783286", "kind": "KILL_PROCESS"},
                    {"machine_guid": "-1826875736.1198775089551518743", "target_guid": "-1826875736.5837261945839287113", "kind": "KILL_PROCESS"}]}
            ])),
            ("ransomware-false-positive", &[], json!([])),
            ("known-malware", &[], json!([])),
            ("nothing-to-do", &[], json!([])),
        ],
    )
    .await;
}

#[tokio::test]
async fn reputation_feed_blacklists_hashes_and_network_iocs_but_never_the_allow_list() {
    let hashes = json!({"action": "set-reputation", "verdict": "blacklist", "prevent": true, "keys": [
        {"kind": "file-hash", "value": "e1112174b6dcc6bed54e0e34d8a7272715e73d74"},
        {"kind": "file-hash", "value": "5d41402abc4b2a76b9719d911017c592"}]});
    check(
        "reputation-feed",
        &[
            ("known-malware", &[], json!([hashes, {"action": "set-reputation", "verdict": "blacklist", "prevent": false, "keys": [
                {"kind": "ip-address", "value": "185.220.101.47"},
                {"kind": "ip-address", "value": "8.8.8.8"},
                {"kind": "domain", "value": "update-check.badcdn.example"},
                {"kind": "domain", "value": "login.microsoftonline.com"}]}])),
            ("known-malware", &[("allow-list", "8.8.8.8, *.microsoftonline.com")], json!([hashes, {"action": "set-reputation", "verdict": "blacklist", "prevent": false, "keys": [
                {"kind": "ip-address", "value": "185.220.101.47"},
                {"kind": "domain", "value": "update-check.badcdn.example"}]}])),
            ("ransomware", &[], json!([{"action": "set-reputation", "verdict": "blacklist", "prevent": true, "keys": [
                {"kind": "file-hash", "value": "3c0f2a6b9e5d8f71c4a2b3e9d0f1a7c6e5b4d3a2"}]}])),
            ("cleanup", &[], json!([])),
            ("nothing-to-do", &[], json!([])),
        ],
    )
    .await;
}

#[tokio::test]
async fn cleanup_quarantines_files_and_deletes_autoruns_on_connected_machines_only() {
    check(
        "cleanup",
        &[
            ("cleanup", &[], json!([{"action": "remediate", "malop_id": "11.3398471827149036532", "targets": [
                {"machine_guid": "-1826875736.1198775089551518743", "target_guid": "-1826875736.2284679001132865409", "kind": "QUARANTINE_FILE"},
                {"machine_guid": "-1826875736.1198775089551518743", "target_guid": "-1826875736.-7754402110987261735", "kind": "QUARANTINE_FILE"},
                {"machine_guid": "-1826875736.1198775089551518743", "target_guid": "-1826875736.-3520016749820129473", "kind": "DELETE_REGISTRY_KEY"},
                {"machine_guid": "-1826875736.1198775089551518743", "target_guid": "-1826875736.4470211985023341876", "kind": "DELETE_REGISTRY_KEY"}]}])),
            ("ransomware", &[], json!([])),
            ("nothing-to-do", &[], json!([])),
        ],
    )
    .await;
}

#[tokio::test]
async fn the_python_plugin_comments_and_opens_high_priority_malops() {
    let comment_and_open = |id: &str| {
        json!([
            {"action": "add-comment", "malop_id": id, "text": null},
            {"action": "set-status", "malop_id": id, "status": "OPEN"}
        ])
    };
    let (runtime, cache) = runtime();
    let loaded = load(&runtime, &cache, "python-triage");
    for (fixture_name, config, expected) in [
        (
            "ransomware",
            vec![],
            comment_and_open("11.-7780537507363356527"),
        ),
        ("known-malware", vec![], json!([])),
        (
            "known-malware",
            vec![("min-priority", "MEDIUM")],
            comment_and_open("11.-6236127201924601217"),
        ),
        ("nothing-to-do", vec![], json!([])),
        ("ransomware-false-positive", vec![], json!([])),
    ] {
        let run = dry_run(
            &runtime,
            &loaded,
            &fixture(fixture_name),
            &config,
            &Limits::default(),
        )
        .await;
        assert_eq!(
            run.report.outcome,
            Outcome::Completed,
            "python-triage on {fixture_name}: {}",
            run.report.stderr
        );
        // The comment text is the plugin's prose: check it is there, compare the rest exactly.
        let mut actions = as_json(&run.actions());
        for action in actions.as_array_mut().unwrap() {
            if let Some(text) = action.get_mut("text") {
                assert!(
                    text.as_str().is_some_and(|t| !t.is_empty()),
                    "empty comment on {fixture_name}"
                );
                *text = Value::Null;
            }
        }
        assert_eq!(
            actions, expected,
            "python-triage on {fixture_name} with {config:?}"
        );
    }
}

/// The isolation of the connected machines of the `ransomware` fixture.
fn ransomware_isolation() -> Value {
    json!({"action": "isolate", "malop_id": "11.-7780537507363356527",
           "machines": ["-1845090846.1198775089551518743", "-1826875736.1198775089551518743"]})
}

/// A dry run of `plugin` on `malop` that must complete.
async fn completed_run(
    runtime: &riposte_runtime::Runtime,
    plugin: &riposte_runtime::LoadedPlugin,
    malop: &riposte_domain::Malop,
) -> riposte_e2e::DryRun {
    let run = dry_run(runtime, plugin, malop, &[], &Limits::default()).await;
    assert_eq!(
        run.report.outcome,
        Outcome::Completed,
        "{}",
        run.report.stderr
    );
    run
}

/// A rule built against `riposte:plugin@0.1.0` (tests/legacy-plugin) loads next to the 0.2.0
/// example plugins and runs: it sees the Malop in 0.1.0's shapes and its calls reach the host.
#[tokio::test]
async fn a_plugin_built_against_wit_0_1_0_still_loads_and_runs() {
    let (runtime, cache) = runtime();
    let legacy = load(&runtime, &cache, "legacy-rule");
    assert_eq!(legacy.wit_version(), "0.1.0");
    let current = load(&runtime, &cache, "ransomware-containment");
    assert_eq!(current.wit_version(), "0.2.0");
    let inspection = runtime
        .inspect(&std::fs::read(riposte_e2e::plugin_path("legacy-rule")).unwrap())
        .unwrap();
    assert_eq!(inspection.world, "riposte:plugin/rule@0.1.0");
    assert_eq!(inspection.mismatch, None);

    let mut malop = fixture("ransomware");
    // What 0.1.0 cannot say is left out; the record it gets is otherwise the same.
    malop.unreadable = vec![riposte_domain::MalopPart::Network];
    let run = completed_run(&runtime, &legacy, &malop).await;
    assert_eq!(as_json(&run.actions()), json!([ransomware_isolation()]));
    let logs = run.logs();
    assert!(
        logs.iter()
            .any(|l| l.contains("0.1.0 rule sees 11.-7780537507363356527")
                && l.contains("High")
                && l.contains("3 machine(s), 3 suspect(s)")),
        "{logs:?}"
    );
    assert!(
        logs.iter().any(|l| l.contains("Shadowed")),
        "its receipt: {logs:?}"
    );
}

/// On a Malop whose investigation could not be read, the ransomware rule acts on what it has:
/// it isolates the connected machines and kills the suspects whose machine is known, and
/// waits when the sensor state is what is missing.
#[tokio::test]
async fn ransomware_containment_acts_on_what_it_has_when_parts_are_unreadable() {
    use riposte_domain::{MachineGuid, MalopPart};
    let (runtime, cache) = runtime();
    let loaded = load(&runtime, &cache, "ransomware-containment");
    let mut malop = fixture("ransomware");
    malop.unreadable = vec![MalopPart::Suspects, MalopPart::Files, MalopPart::Network];
    malop.suspects[1].machine_guid = MachineGuid::new("");
    malop.suspects[1].image_sha1 = None;
    let run = completed_run(&runtime, &loaded, &malop).await;
    assert_eq!(
        as_json(&run.actions()),
        json!([
            ransomware_isolation(),
            {"action": "remediate", "malop_id": "11.-7780537507363356527", "targets": [
                {"machine_guid": "-1845090846.1198775089551518743", "target_guid": "-1845090846.-1424333057657783286", "kind": "KILL_PROCESS"}]}
        ])
    );
    assert!(
        run.logs().iter().any(|l| l.contains("machine is unknown")),
        "{:?}",
        run.logs()
    );
    malop.unreadable = vec![MalopPart::Sensors];
    let run = completed_run(&runtime, &loaded, &malop).await;
    assert_eq!(run.actions(), Vec::new(), "it waits for the sensors");
}

/// A Malop fixture shipped with a plugin, `plugins/<plugin>/fixtures/<name>.json`.
fn plugin_fixture(plugin: &str, name: &str) -> riposte_domain::Malop {
    let path = riposte_e2e::root()
        .join("plugins")
        .join(plugin)
        .join("fixtures")
        .join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The JavaScript rule (built by jco + componentize-js, on the JavaScript SDK) comments with
/// the affected users and isolates the source machine of lateral movement, and only that.
#[tokio::test]
async fn the_javascript_plugin_comments_and_isolates_the_source_of_lateral_movement() {
    const SOURCE: &str = "-1845090846.1198775089551518743";
    let (runtime, cache) = runtime();
    let loaded = load(&runtime, &cache, "lateral-movement");
    let comment = |id: &str| json!({"action": "add-comment", "malop_id": id, "text": null});
    for (name, config, expected, comment_has) in [
        (
            "lateral-movement-must-act",
            vec![],
            json!([comment("11.5512093348871203376"), {"action": "isolate", "malop_id": "11.5512093348871203376", "machines": [SOURCE]}]),
            Some(
                "affected users: integration\\svc_backup, integration\\jdoe; isolating DESKTOP-VG9KE2U",
            ),
        ),
        (
            "lateral-movement-must-act",
            vec![("isolate", "no")],
            json!([comment("11.5512093348871203376")]),
            Some("from DESKTOP-VG9KE2U; affected users"),
        ),
        (
            "credential-theft-offline-source",
            vec![],
            json!([comment("11.-2087716255310967341")]),
            Some("CREDENTIAL_THEFT from LAPTOP-FIN-07; affected users: integration\\jdoe"),
        ),
        ("false-positive-must-not-act", vec![], json!([]), None),
        ("process-malop-must-not-act", vec![], json!([]), None),
    ] {
        let malop = plugin_fixture("lateral-movement", name);
        let run = dry_run(&runtime, &loaded, &malop, &config, &Limits::default()).await;
        assert_eq!(
            run.report.outcome,
            Outcome::Completed,
            "lateral-movement on {name}: {}",
            run.report.stderr
        );
        let mut actions = as_json(&run.actions());
        let mut text = None;
        for action in actions.as_array_mut().unwrap() {
            if let Some(t) = action.get_mut("text") {
                text = t.as_str().map(str::to_owned);
                *t = Value::Null;
            }
        }
        assert_eq!(
            actions, expected,
            "lateral-movement on {name} with {config:?}"
        );
        if let Some(wanted) = comment_has {
            let text = text.expect("a comment");
            assert!(text.contains(wanted), "{name}: {text}");
        }
        assert!(
            !actions.to_string().contains(OFFLINE_MACHINE),
            "lateral-movement on {name} acted on the offline machine"
        );
    }
    // Its own log lines reach the host through the SDK.
    let run = dry_run(
        &runtime,
        &loaded,
        &plugin_fixture("lateral-movement", "two-candidate-sources-comment-only"),
        &[],
        &Limits::default(),
    )
    .await;
    assert!(
        run.logs()
            .iter()
            .any(|l| l.contains("2 machines host no suspect")),
        "{:?}",
        run.logs()
    );
}

/// Through the real service and gate: the JavaScript rule's isolation is denied (not granted);
/// the SDK turns the WIT error into its typed `Denied`, the rule logs the refusal and still
/// completes, and only the comment reaches the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_javascript_plugin_logs_a_denied_isolation_and_completes() {
    use riposte_domain::{ElementKind, ManagementStatus};
    use riposte_e2e::gate_support::{
        Plugin, World, decision, install_log_capture, invocations, plugin_logs, records_of, status,
    };
    install_log_capture();
    let world = World::new(0).await;
    let id = world.malop_on(&[0, 1]);
    world.sim.with_state(|s| {
        for m in &mut s.machines[..2] {
            m.online = true;
            m.isolated = false;
        }
        let target = s.machines[1].guid.clone();
        let malop = s
            .malops
            .iter_mut()
            .find(|m| m.guid == id.as_str())
            .expect("the Malop just added");
        malop.kind = ElementKind::LogonSession;
        malop.detection_type = "LATERAL_MOVEMENT".into();
        malop.activity_types = vec!["LATERAL_MOVEMENT".into()];
        malop.status = ManagementStatus::Unread;
        malop.suspects.truncate(1);
        for suspect in &mut malop.suspects {
            suspect.machine = target.clone();
        }
        malop.files.clear();
    });
    let service = world
        .start(
            "",
            &[Plugin::new("lm", "lateral-movement").grant(&["add-comment"])],
        )
        .await
        .expect("the service starts");
    service.run_cycle().await.expect("the cycle runs");
    let records = world.audit();
    let runs = invocations(&records, "lm");
    assert_eq!(runs.len(), 1, "one invocation: {runs:?}");
    assert_eq!(status(runs[0]), "completed", "{:?}", runs[0].result);
    let isolate = records_of(&records, "lm", "isolate");
    assert_eq!(isolate.len(), 1);
    assert_eq!(decision(isolate[0]).0, "deny");
    assert_eq!(records_of(&records, "lm", "add-comment").len(), 1);
    let logs = plugin_logs("lm");
    assert!(
        logs.iter().any(|l| l.contains("refused: denied:")),
        "the typed error reached the rule: {logs:?}"
    );
    let sent: Vec<String> = world
        .action_requests()
        .iter()
        .map(|r| r.path.clone())
        .collect();
    assert_eq!(sent.len(), 1, "only the comment is sent: {sent:?}");
    assert!(sent[0].starts_with("/rest/crimes/comment/"), "{sent:?}");
}
