//! The example plugins, built from source, decide right on Malop fixtures: a case where
//! each must act, cases where it must not, and machines that are offline.
//! Expectations are those of tests/fixtures/malops/README.md.

use riposte::domain::ActionRequest;
use riposte::runtime::{Limits, Outcome};
use riposte_e2e::{dry_run, fixture, load, runtime};
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
