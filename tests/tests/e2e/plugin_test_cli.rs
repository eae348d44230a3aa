//! `riposte plugin test` through the real binary: every example plugin passes on the fixtures
//! it ships; a changed rule, a changed expectation, an overrun and a malformed fixture each
//! fail with a message that says what differs.

use riposte_e2e::gate_support::{Plugin, World};
use riposte_e2e::{output_text, plugin_path, riposte_bin, root};
use riposte_runtime::Limits;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn plugin_test(wasm: &Path, fixtures: &Path, extra: &[&str]) -> Output {
    Command::new(riposte_bin())
        .args(["plugin", "test"])
        .arg(wasm)
        .arg("--fixtures")
        .arg(fixtures)
        .args(extra)
        .env("RUST_LOG", "warn")
        .output()
        .expect("the riposte binary runs")
}

/// Whether the diff in `out` has a `sign` line (`-` expected, `+` actual) holding `text`.
fn diff_line(out: &str, sign: char, text: &str) -> bool {
    out.lines()
        .map(str::trim_start)
        .any(|l| l.starts_with(sign) && l[1..].trim() == text)
}

fn fixtures_of(plugin: &str) -> PathBuf {
    root().join("plugins").join(plugin).join("fixtures")
}

/// Copies a fixtures directory into a temp dir, to change it there.
fn copy_fixtures(plugin: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temp dir");
    for entry in std::fs::read_dir(fixtures_of(plugin)).expect("the fixtures dir reads") {
        let path = entry.expect("an entry").path();
        std::fs::copy(&path, dir.path().join(path.file_name().expect("a name")))
            .expect("the fixture copies");
    }
    dir
}

#[test]
fn every_example_plugin_passes_on_its_own_fixtures() {
    for plugin in [
        "ransomware-containment",
        "reputation-feed",
        "cleanup",
        "python-triage",
        "lateral-movement",
    ] {
        let fixtures = fixtures_of(plugin);
        let names: Vec<String> = std::fs::read_dir(&fixtures)
            .unwrap_or_else(|e| panic!("{}: {e}", fixtures.display()))
            .map(|e| {
                e.expect("an entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        for kind in ["must-act", "must-not-act", "offline"] {
            assert!(
                names.iter().any(|n| n.contains(kind)),
                "{plugin} ships no `{kind}` fixture: {names:?}"
            );
        }
        let output = plugin_test(&plugin_path(plugin), &fixtures, &[]);
        let out = output_text(&output);
        assert!(
            output.status.success(),
            "{plugin} fails its fixtures:\n{out}"
        );
        assert!(out.contains("case(s) passed"), "{out}");
        assert!(!out.contains("FAIL"), "{out}");
        // The budgets are reported against what was used.
        assert!(
            out.contains("budgets per invocation: fuel 1000000000"),
            "{out}"
        );
        assert!(out.contains("fuel ") && out.contains("memory ") && out.contains("time "));
    }
}

#[test]
fn json_report_has_usage_per_invocation_and_the_pinned_clock() {
    let output = plugin_test(
        &plugin_path("ransomware-containment"),
        &fixtures_of("ransomware-containment"),
        &["--json"],
    );
    assert!(output.status.success(), "{}", output_text(&output));
    let report: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("--json prints JSON");
    let cases = report["cases"].as_array().expect("cases");
    assert_eq!(cases.len(), 4);
    let must_act = cases
        .iter()
        .find(|c| c["name"] == "ransomware-must-act")
        .expect("the must-act case");
    let usage = &must_act["usage"][0];
    assert_eq!(usage["outcome"], "completed");
    // last_update_time of ransomware.json + one minute.
    assert_eq!(usage["clock_ms"], 1_763_802_735_000i64 + 60_000);
    assert!(usage["fuel_used"].as_u64().expect("fuel") > 0);
    assert!(usage["peak_memory"].as_u64().expect("memory") > 0);
    // The default that host/examples/riposte.toml documents.
    assert_eq!(report["budgets"]["fuel"], 1_000_000_000);
}

#[test]
fn a_different_rule_fails_with_a_readable_diff() {
    // cleanup.wasm does not do what reputation-feed's expectations say.
    let output = plugin_test(
        &plugin_path("cleanup"),
        &fixtures_of("reputation-feed"),
        &[],
    );
    let out = output_text(&output);
    assert!(!output.status.success(), "must fail:\n{out}");
    assert!(out.contains("FAIL     known-malware-must-act"), "{out}");
    assert!(out.contains("the plan differs from"), "{out}");
    assert!(
        out.contains("--- expected") && out.contains("+++ actual"),
        "{out}"
    );
    // The expected reputation call is shown as removed, cleanup's remediation as added.
    assert!(
        diff_line(&out, '-', "\"action\": \"set-reputation\","),
        "{out}"
    );
    assert!(diff_line(&out, '+', "\"action\": \"remediate\","), "{out}");
    assert!(out.contains("replay case(s) failed"), "{out}");
}

#[test]
fn an_edited_expectation_fails_and_record_rewrites_it() {
    let dir = copy_fixtures("ransomware-containment");
    let expected = dir.path().join("ransomware-must-act.expected.json");
    let original = std::fs::read_to_string(&expected).expect("the expectation reads");
    let edited = original.replace(
        "\"-1826875736.1198775089551518743\"\n",
        "\"1592738110.-4312997468412375106\"\n",
    );
    assert_ne!(edited, original, "the edit applies");
    std::fs::write(&expected, &edited).expect("the expectation writes");

    let wasm = plugin_path("ransomware-containment");
    let output = plugin_test(&wasm, dir.path(), &[]);
    let out = output_text(&output);
    assert!(!output.status.success(), "{out}");
    assert!(
        diff_line(&out, '-', "\"1592738110.-4312997468412375106\"")
            && diff_line(&out, '+', "\"-1826875736.1198775089551518743\""),
        "the diff shows the changed machine:\n{out}"
    );
    assert!(out.contains("1 of 4 case(s) failed"), "{out}");

    let output = plugin_test(&wasm, dir.path(), &["--record"]);
    assert!(output.status.success(), "{}", output_text(&output));
    assert!(output_text(&output).contains("recorded"));
    let rewritten = std::fs::read_to_string(&expected).expect("the expectation reads");
    assert_eq!(rewritten, original, "--record writes the current plan back");
    let output = plugin_test(&wasm, dir.path(), &[]);
    assert!(output.status.success(), "{}", output_text(&output));
}

#[test]
fn a_missing_expectation_says_to_record() {
    let dir = copy_fixtures("cleanup");
    std::fs::remove_file(dir.path().join("nothing-to-do.expected.json")).expect("removed");
    let output = plugin_test(&plugin_path("cleanup"), dir.path(), &[]);
    let out = output_text(&output);
    assert!(!output.status.success(), "{out}");
    assert!(out.contains("no expectation"), "{out}");
    assert!(out.contains("--record"), "{out}");
}

#[test]
fn a_budget_overrun_fails_naming_the_budget() {
    let output = plugin_test(
        &plugin_path("cleanup"),
        &fixtures_of("cleanup"),
        &["--fuel", "5000"],
    );
    let out = output_text(&output);
    assert!(!output.status.success(), "{out}");
    assert!(out.contains("budget overrun"), "{out}");
    assert!(out.contains("out of fuel"), "{out}");
    assert!(out.contains("raise the plugin's limits"), "{out}");
}

#[test]
fn per_case_config_in_the_expectation_is_applied() {
    // reputation-feed's allow-list case carries its own config: without it the plan differs.
    let dir = copy_fixtures("reputation-feed");
    let path = dir.path().join("allow-list.expected.json");
    let mut expectation: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("reads")).expect("JSON");
    assert!(expectation["config"]["allow-list"].is_string());
    expectation
        .as_object_mut()
        .expect("object")
        .remove("config");
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&expectation).expect("serializes"),
    )
    .expect("writes");
    let output = plugin_test(&plugin_path("reputation-feed"), dir.path(), &[]);
    let out = output_text(&output);
    assert!(!output.status.success(), "{out}");
    assert!(diff_line(&out, '+', "\"value\": \"8.8.8.8\""), "{out}");
    // The same config given on the command line makes that case pass again.
    let only = tempfile::tempdir().expect("a temp dir");
    for file in ["allow-list.json", "allow-list.expected.json"] {
        std::fs::copy(dir.path().join(file), only.path().join(file)).expect("copies");
    }
    let output = plugin_test(
        &plugin_path("reputation-feed"),
        only.path(),
        &["--config", "allow-list=8.8.8.8, *.microsoftonline.com"],
    );
    assert!(output.status.success(), "{}", output_text(&output));
}

#[test]
fn malformed_fixtures_name_the_file_and_the_problem() {
    let dir = tempfile::tempdir().expect("a temp dir");
    std::fs::write(dir.path().join("truncated.json"), "{\"id\": \"11.1\", ").expect("writes");
    std::fs::write(dir.path().join("not-a-malop.json"), "{\"id\": \"11.1\"}").expect("writes");
    std::fs::write(
        dir.path().join("server-failure.json"),
        "{\"status\": \"FAILURE\", \"message\": \"query timed out\", \"data\": null}",
    )
    .expect("writes");
    std::fs::write(
        dir.path().join("bad-expectation.json"),
        std::fs::read(root().join("tests/fixtures/malops/nothing-to-do.json")).expect("reads"),
    )
    .expect("writes");
    std::fs::write(
        dir.path().join("bad-expectation.expected.json"),
        "{\"invocations\": [], \"surprise\": 1}",
    )
    .expect("writes");
    // Valid riposte JSON, but a server reports one hash per root cause.
    std::fs::write(
        dir.path().join("two-hashes.json"),
        std::fs::read(root().join("tests/fixtures/malops/known-malware.json")).expect("reads"),
    )
    .expect("writes");
    let output = plugin_test(&plugin_path("cleanup"), dir.path(), &[]);
    let out = output_text(&output);
    assert!(!output.status.success(), "{out}");
    assert!(out.contains("5 of 5 case(s) failed"), "{out}");
    let line = |needle: &str| {
        out.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{out}"))
            .to_owned()
    };
    let truncated = line("truncated.json");
    assert!(truncated.contains("malformed fixture") && truncated.contains("invalid JSON"));
    let not_a_malop = line("not-a-malop.json");
    assert!(not_a_malop.contains("not a riposte Malop") && not_a_malop.contains("missing field"));
    let failure = line("server-failure.json");
    assert!(failure.contains("crimes/unified") && failure.contains("query timed out"));
    let expectation = line("bad-expectation.expected.json");
    assert!(expectation.contains("malformed expectation") && expectation.contains("surprise"));
    assert!(expectation.contains("--record"), "{expectation}");
    let two_hashes = line("two-hashes.json");
    assert!(
        two_hashes.contains("a server could not hold it as recorded")
            && two_hashes.contains("invoice_0423.exe has 2 hashes")
            && two_hashes.contains("keep one"),
        "{two_hashes}"
    );

    let empty = tempfile::tempdir().expect("a temp dir");
    let output = plugin_test(&plugin_path("cleanup"), empty.path(), &[]);
    let out = output_text(&output);
    assert!(!output.status.success());
    assert!(
        out.contains("no fixtures in") && out.contains("<case>.json"),
        "{out}"
    );
}

#[test]
fn limits_and_values_come_from_the_operator_config() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let wasm = plugin_path("reputation-feed");
    let digest = {
        let output = Command::new(riposte_bin())
            .args(["plugin", "inspect"])
            .arg(&wasm)
            .output()
            .expect("inspect runs");
        let v: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
        v["sha256"].as_str().expect("sha256").to_owned()
    };
    let config = dir.path().join("riposte.toml");
    std::fs::write(
        &config,
        format!(
            "[[plugins]]\nname = \"reputation-feed\"\npath = {:?}\nsha256 = \"{digest}\"\n\n[plugins.limits]\nfuel = 123456789\n\n[plugins.values]\nallow-list = \"8.8.8.8, *.microsoftonline.com\"\n",
            wasm.display().to_string()
        ),
    )
    .expect("writes");
    let fixtures = copy_fixtures("reputation-feed");
    let output = plugin_test(
        &wasm,
        fixtures.path(),
        &["--config-file", config.to_str().expect("utf-8")],
    );
    let out = output_text(&output);
    assert!(out.contains("fuel 123456789"), "{out}");
    // The operator's allow-list applies to every case: known-malware now matches the
    // allow-list case's plan, not its own.
    assert!(out.contains("FAIL     known-malware-must-act"), "{out}");
    assert!(out.contains("ok       allow-list"), "{out}");
}

/// A directory with one case for the hostile plugin: the ransomware fixture as `case`, and
/// an expectation with no invocations that runs `attack` (logs included or not).
fn hostile_case(case: &str, attack: &str, include_logs: bool) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temp dir");
    std::fs::copy(
        root().join("tests/fixtures/malops/ransomware.json"),
        dir.path().join(format!("{case}.json")),
    )
    .expect("copies the fixture");
    let expectation = serde_json::json!({
        "config": { "attack": attack },
        "include_logs": include_logs,
        "invocations": [],
    });
    std::fs::write(
        dir.path().join(format!("{case}.expected.json")),
        expectation.to_string(),
    )
    .expect("writes");
    dir
}

#[test]
fn the_plugin_sees_a_pinned_clock_on_every_run() {
    // The hostile plugin's `clock` probe logs what the WASI wall and monotonic clocks say.
    let dir = hostile_case("clock", "clock", true);
    let wasm = plugin_path("hostile");
    let output = plugin_test(&wasm, dir.path(), &["--record"]);
    assert!(output.status.success(), "{}", output_text(&output));
    let recorded = std::fs::read_to_string(dir.path().join("clock.expected.json")).expect("reads");
    // ransomware.json's last_update_time plus one minute; one microsecond per clock read.
    let pinned = 1_763_802_735_000i64 + 60_000;
    assert!(
        recorded.contains(&format!(
            "probe clock: wall {pinned} ms, monotonic step 1000 ns"
        )),
        "{recorded}"
    );
    // Replaying compares the log lines too, and they are the same on a second run.
    let output = plugin_test(&wasm, dir.path(), &[]);
    assert!(output.status.success(), "{}", output_text(&output));

    // `now_ms` in the expectation moves the clock.
    let moved = recorded.replace("\"config\"", "\"now_ms\": 1700000000000,\n  \"config\"");
    std::fs::write(dir.path().join("clock.expected.json"), moved).expect("writes");
    let output = plugin_test(&wasm, dir.path(), &[]);
    let out = output_text(&output);
    assert!(!output.status.success(), "{out}");
    assert!(
        diff_line(
            &out,
            '+',
            "\"message\": \"probe clock: wall 1700000000000 ms, monotonic step 1000 ns\""
        ),
        "{out}"
    );
}

/// Writes an operator configuration for `name` (the component `wasm`): `global` sections,
/// then its `[[plugins]]` table with `extra` lines.
fn operator_config(dir: &Path, name: &str, wasm: &Path, global: &str, extra: &str) -> PathBuf {
    let digest = riposte_domain::Sha256Digest::of(&std::fs::read(wasm).expect("reads"));
    let path = dir.join("riposte.toml");
    std::fs::write(
        &path,
        format!(
            "{global}\n[[plugins]]\nname = {name:?}\npath = {:?}\nsha256 = \"{}\"\n{extra}",
            wasm.display().to_string(),
            digest.to_hex()
        ),
    )
    .expect("writes the configuration");
    path
}

fn expectation(dir: &Path, case: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join(format!("{case}.expected.json")))
        .expect("the expectation reads");
    serde_json::from_str(&text).expect("the expectation is JSON")
}

#[test]
fn the_operator_config_puts_the_plan_to_the_gate_and_the_shadow_plan_shows_approval_and_budget() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let wasm = plugin_path("ransomware-containment");
    let config = operator_config(
        dir.path(),
        "ransomware-containment",
        &wasm,
        "[approvals]\nrequired = [\"isolate\"]\n\n[[global_budgets]]\naction = \"isolate\"\nmax = 1\nwindow_secs = 3600\n",
        "mode = \"shadow\"\n[plugins.grants]\noperations = [\"get-malop\", \"isolate\"]\n",
    );
    let fixtures = copy_fixtures("ransomware-containment");
    let config = config.to_str().expect("utf-8");
    let output = plugin_test(&wasm, fixtures.path(), &["--record", "--config", config]);
    assert!(output.status.success(), "{}", output_text(&output));

    let plan = expectation(fixtures.path(), "ransomware-must-act");
    let calls = &plan["invocations"][0]["calls"];
    let isolate = &calls[0];
    assert_eq!(isolate["action"], "isolate");
    // Shadowed, and what enforcing it would meet: the approval, and a budget too small for
    // its two machines.
    assert_eq!(isolate["gate"]["decision"], "shadow");
    assert_eq!(isolate["gate"]["approval"], serde_json::json!(["isolate"]));
    let budget = isolate["gate"]["budget"]
        .as_str()
        .expect("a budget outcome");
    assert!(
        budget.starts_with("exceeded:") && budget.contains("this call needs 2, 1 left"),
        "{budget}"
    );
    let kill = &calls[1];
    assert_eq!(kill["action"], "remediate");
    assert_eq!(kill["gate"]["decision"], "deny");
    assert_eq!(kill["gate"]["category"], "denied");
    assert!(kill["gate"].get("budget").is_none());
    // The plugin's subscription (RANSOMWARE) is honoured: the lateral movement is not offered.
    let skipped = expectation(fixtures.path(), "nothing-to-do");
    assert_eq!(skipped["invocations"][0]["outcome"], "not-subscribed");
    assert_eq!(skipped["invocations"][0]["calls"], serde_json::json!([]));

    // The same plan replays the same; the report shows each outcome.
    let output = plugin_test(&wasm, fixtures.path(), &["--config", config]);
    let out = output_text(&output);
    assert!(output.status.success(), "{out}");
    assert!(
        out.contains("isolate: shadowed")
            && out.contains("needs approval: isolate; budget: exceeded"),
        "{out}"
    );
    assert!(
        out.contains("nothing-to-do") && out.contains(": not-subscribed"),
        "{out}"
    );
    // Without the configuration, the plan has no gate outcomes: it differs.
    let output = plugin_test(&wasm, fixtures.path(), &[]);
    assert!(!output.status.success(), "{}", output_text(&output));
}

#[test]
fn on_interval_replays_under_the_operators_scope() {
    let dir = hostile_case("interval", "interval", false);
    let wasm = plugin_path("hostile");
    let config = operator_config(
        dir.path(),
        "hostile",
        &wasm,
        "",
        "mode = \"enforce\"\n[plugins.grants]\noperations = [\"get-malop\", \"list-malops\", \"isolate\", \"set-status\"]\n",
    );
    let config = config.to_str().expect("utf-8");
    let output = plugin_test(
        &wasm,
        dir.path(),
        &["--record", "--on-interval", "--config", config],
    );
    assert!(output.status.success(), "{}", output_text(&output));
    let plan = expectation(dir.path(), "interval");
    let invocations = plan["invocations"].as_array().expect("invocations");
    assert_eq!(invocations.len(), 2, "{plan:#}");
    let hook = &invocations[1];
    // ransomware.json's last update plus one minute.
    assert_eq!(hook["on_interval_ms"], 1_763_802_735_000i64 + 60_000);
    assert!(hook.get("malop").is_none());
    let actions: Vec<&serde_json::Value> = hook["calls"]
        .as_array()
        .expect("calls")
        .iter()
        .filter(|c| c["call"] == "action")
        .collect();
    assert_eq!(actions.len(), 2, "isolate and set-status: {hook:#}");
    for action in actions {
        assert_eq!(action["gate"]["category"], "out-of-scope", "{action:#}");
        assert!(
            action["gate"]["detail"]
                .as_str()
                .unwrap()
                .contains("on-interval handles no Malop"),
            "{action:#}"
        );
    }
    // Replayed again with the same flags, it passes.
    let output = plugin_test(&wasm, dir.path(), &["--on-interval", "--config", config]);
    assert!(output.status.success(), "{}", output_text(&output));
}

/// The replay judges as the service does: an isolation split into one call per machine
/// counts the machines the invocation already reached against `[approvals.large]`, so the
/// plan shows the third call held for approval, as the service would hold it.
#[test]
fn the_replay_holds_a_large_isolation_split_into_small_calls() {
    let dir = hostile_case("split", "split-isolation", false);
    let wasm = plugin_path("hostile");
    let config = operator_config(
        dir.path(),
        "hostile",
        &wasm,
        "[approvals.large]\nmachines = 2\n",
        "mode = \"enforce\"\n[plugins.grants]\noperations = [\"get-malop\", \"isolate\"]\n",
    );
    let config = config.to_str().expect("utf-8");
    let output = plugin_test(&wasm, dir.path(), &["--record", "--config", config]);
    assert!(output.status.success(), "{}", output_text(&output));
    let plan = expectation(dir.path(), "split");
    let decisions: Vec<&str> = plan["invocations"][0]["calls"]
        .as_array()
        .expect("calls")
        .iter()
        .filter(|c| c["action"] == "isolate")
        .map(|c| c["gate"]["decision"].as_str().expect("a decision"))
        .collect();
    assert_eq!(decisions, ["allow", "allow", "await-approval"], "{plan:#}");
}

/// The budgets `riposte plugin test --json` reports holding reputation-feed to, on its own
/// fixtures.
fn reported_budgets(extra: &[&str]) -> serde_json::Value {
    let args = [&["--json", "--name", "reputation-feed"], extra].concat();
    let output = plugin_test(
        &plugin_path("reputation-feed"),
        &fixtures_of("reputation-feed"),
        &args,
    );
    // Under `--config` the gate may change the plan (a failed case); the budgets are
    // reported either way.
    let report: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("--json prints JSON ({e}):\n{}", output_text(&output)));
    report["budgets"].clone()
}

/// `limits` as `plugin test --json` reports them.
fn as_reported(limits: &Limits) -> serde_json::Value {
    serde_json::json!({
        "fuel": limits.fuel,
        "memory_bytes": limits.memory_bytes,
        "wall_clock_us": limits.wall_clock.as_micros() as u64,
        "output_bytes": limits.output_bytes,
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn plugin_test_and_the_service_hold_a_plugin_to_the_same_limits() {
    let plain = Plugin::new("reputation-feed", "reputation-feed");
    let limited = plain
        .clone()
        .limit("fuel", 900_000_000)
        .limit("wall_clock_ms", 7000)
        .limit("memory_bytes", 48 << 20)
        .limit("max_output_bytes", 32 << 10);
    for plugin in [plain, limited] {
        let world = World::new(1).await;
        let service = world
            .start("", std::slice::from_ref(&plugin))
            .await
            .expect("the service starts");
        let served = service.plugins()[0].limits.clone();
        drop(service);
        let config = world.write_config("", &[plugin]);
        assert_eq!(
            reported_budgets(&["--config-file", config.to_str().expect("utf-8")]),
            as_reported(&served),
        );
        assert_eq!(
            reported_budgets(&["--config", config.to_str().expect("utf-8")]),
            as_reported(&served),
        );
    }
    // Without a configuration, `plugin test` holds the plugin to what the service gives a
    // plugin with no `[plugins.limits]`: the runtime's defaults.
    assert_eq!(reported_budgets(&[]), as_reported(&Limits::default()));
    let world = World::new(1).await;
    let service = world
        .start("", &[Plugin::new("reputation-feed", "reputation-feed")])
        .await
        .expect("the service starts");
    assert_eq!(service.plugins()[0].limits, Limits::default());
}
