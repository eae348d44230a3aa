//! The service under faults, end to end: the four example plugins (built components, all
//! enforcing) against the simulator on loopback, with a real SQLite ledger and audit file.
//! Faults are injected while a cycle is running, at points read from the simulator's request
//! log; what reached the server is read from that log too.

use riposte_domain::now_ms;
use riposte_domain::{ActionRequest, MalopId};
use riposte_e2e::service_support::{
    PluginSpec, ServiceEnv, Setup, assert_no_action_twice, assert_no_action_twice_by, audit_calls,
    carried_out, inject_first, is_action, riposte_cli, run_until_settled, start_sim, unhandled,
    wait_until,
};
use riposte_metrics::Metrics;
use riposte_service::{CycleReport, Service};
use riposte_sim::{Fault, FaultKind, LoggedRequest, SimHandle};
use riposte_store::prelude::*;
use riposte_store::testing::TestDatabase;
use riposte_store::{ActionFilter, ActionState};
use std::collections::BTreeMap;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(20);

/// The sequence numbers of the logins the simulator answered.
fn logins(sim: &SimHandle) -> Vec<u64> {
    sim.requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path == "/login.html" && r.fault.is_none())
        .map(|r| r.seq)
        .collect()
}

/// Requests turned away for want of a session (`302 → /login.html`).
fn redirected(sim: &SimHandle) -> Vec<LoggedRequest> {
    sim.requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/rest/") && r.status == 302)
        .collect()
}

fn action_requests(sim: &SimHandle) -> Vec<LoggedRequest> {
    sim.requests().into_iter().filter(is_action).collect()
}

/// Runs one cycle while `during` acts on the simulator; returns the cycle's result.
async fn cycle_with(
    service: &Service,
    during: impl Future<Output = ()>,
) -> anyhow::Result<CycleReport> {
    let (report, ()) = tokio::join!(service.run_cycle(), during);
    report
}

/// Every request is slowed a little, so that a watcher reliably acts mid-cycle.
fn slow(sim: &SimHandle) {
    sim.inject(
        Fault::new(FaultKind::Delay, u32::MAX)
            .on("/rest/")
            .delay_ms(5),
    );
}

async fn requests_reach(sim: &SimHandle, n: usize) {
    wait_until(&format!("{n} requests"), LIMIT, || {
        sim.requests().len() >= n
    })
    .await;
}

each_backend! {
    async fn sessions_expiring_mid_cycle_cost_one_login_each_and_nothing_is_sent_twice(db) {
        let sim = start_sim(11, 12).await;
        slow(&sim);
        let env = ServiceEnv::on(db, &sim, &Setup::examples());
        let service = env.service(&sim).await;

        let mut expired_at = Vec::new();
        let first = cycle_with(&service, async {
            for n in [15, 60] {
                requests_reach(&sim, n).await;
                expired_at.push(sim.requests().len());
                sim.expire_sessions();
            }
        })
        .await;
        // The cycle completed, or the next one does.
        run_until_settled(&service, &sim, 1).await;
        assert!(first.is_ok(), "the cycle rode out both expiries: {first:?}");
        // Each expiry was hit by a request of the cycle (turned away to the login page), and
        // cost exactly one new login, made after that expiry and before the next.
        assert!(!redirected(&sim).is_empty(), "requests were turned away");
        let logins = logins(&sim);
        assert_eq!(
            logins.len(),
            1 + expired_at.len(),
            "one login at start, one per expiry: {logins:?}, expiries after {expired_at:?} requests"
        );
        for (k, at) in expired_at.iter().enumerate() {
            let relogin = logins[k + 1] as usize;
            let next = expired_at.get(k + 1).copied().unwrap_or(usize::MAX);
            assert!(
                (*at..next).contains(&relogin),
                "re-login {relogin} follows the expiry after {at} requests (next {next})"
            );
        }
        let sent = assert_no_action_twice(&sim);
        assert!(
            sent.len() >= 4,
            "remediations, isolations, reputations, comments and statuses were sent: {sent:?}"
        );
        assert!(
            service
                .store()
                .unresolved_actions()
                .expect("the ledger")
                .is_empty()
        );
    }
}

each_backend! {
    async fn http_500s_mid_cycle_are_retried_or_reconciled_and_nothing_is_sent_twice(db) {
        let sim = start_sim(12, 12).await;
        slow(&sim);
        let env = ServiceEnv::on(db, &sim, &Setup::examples());
        let service = env.service(&sim).await;

        // 500s the server answers without doing anything: on queries (retried by the client, or
        // the Malop deferred to the next cycle) and on actions (outcome unknown: checked on the
        // server at the next cycle, then sent).
        let first = cycle_with(&service, async {
            requests_reach(&sim, 20).await;
            for path in [
                "/rest/visualsearch/",
                "/rest/crimes/unified",
                "/rest/remediate",
                "/rest/crimes/comment/",
                "/rest/crimes/status",
                "/rest/classification/update",
                "/rest/monitor/global/commands/isolate",
            ] {
                inject_first(&sim, Fault::new(FaultKind::Status500, 1).on(path));
            }
        })
        .await;
        // The cycle completed, or the next one settles what it left (checked on the server).
        run_until_settled(&service, &sim, 1).await;
        let _ = first;
        let failed_actions: Vec<LoggedRequest> = action_requests(&sim)
            .into_iter()
            .filter(|r| r.fault == Some(FaultKind::Status500))
            .collect();
        assert!(
            failed_actions.len() >= 3,
            "500s hit actions in the middle of the cycle: {failed_actions:#?}"
        );
        // Every action the server refused was sent again, and carried out exactly once.
        let carried: Vec<LoggedRequest> = action_requests(&sim)
            .into_iter()
            .filter(carried_out)
            .collect();
        for refused in &failed_actions {
            let again = carried
                .iter()
                .filter(|r| r.path == refused.path && r.body == refused.body)
                .count();
            assert_eq!(again, 1, "{} sent again once after its 500", refused.path);
        }
        assert_no_action_twice(&sim);
        let store = service.store();
        let failed = store
            .list_actions(&ActionFilter {
                states: vec![ActionState::Failed],
                ..ActionFilter::default()
            })
            .unwrap();
        assert!(failed.is_empty(), "no action given up: {failed:#?}");
    }
}

each_backend! {
    async fn actions_carried_out_before_a_500_are_found_on_the_server_not_sent_again(db) {
        carried_out_then_unanswered(db, FaultKind::Status500).await;
    }
}

each_backend! {
    /// Answers that are neither a reply nor the login page: a proxy's HTML error page, a body cut
    /// short, a connection reset after the request was written. Each leaves the action's outcome
    /// unknown: it is looked for on the server, never sent again blindly.
    async fn a_proxy_page_a_cut_body_or_a_reset_after_an_action_never_sends_it_twice(db) {
        for kind in [FaultKind::Html, FaultKind::Truncated, FaultKind::Reset] {
            carried_out_then_unanswered(db.another(), kind).await;
        }
    }
}

/// Faults of `kind` on every kind of action, each after the simulator carried it out,
/// injected in the middle of a cycle of the example plugins.
async fn carried_out_then_unanswered(db: TestDatabase, kind: FaultKind) {
    let sim = start_sim(13, 12).await;
    slow(&sim);
    let env = ServiceEnv::on(db, &sim, &Setup::examples());
    let service = env.service(&sim).await;

    let first = cycle_with(&service, async {
        requests_reach(&sim, 20).await;
        for path in [
            "/rest/remediate",
            "/rest/crimes/comment/",
            "/rest/crimes/status",
            "/rest/classification/update",
            "/rest/monitor/global/commands/isolate",
        ] {
            inject_first(&sim, Fault::new(kind, 1).on(path).after_processing());
        }
    })
    .await;
    // The cycle completed, or the next one settles what it left (checked on the server).
    run_until_settled(&service, &sim, 1).await;
    let _ = first;
    // Here every fault on an action came after the simulator carried it out.
    let unknown: Vec<LoggedRequest> = action_requests(&sim)
        .into_iter()
        .filter(|r| r.fault == Some(kind))
        .collect();
    assert!(
        unknown.len() >= 3,
        "{kind:?}: outcome-unknown actions in the middle of the cycle: {unknown:#?}"
    );
    assert_no_action_twice_by(&sim, |r| {
        carried_out(r) || (is_action(r) && r.fault == Some(kind))
    });
    let store = service.store();
    let failed = store
        .list_actions(&ActionFilter {
            states: vec![ActionState::Failed],
            ..ActionFilter::default()
        })
        .unwrap();
    assert!(
        failed.is_empty(),
        "{kind:?}: no action given up: {failed:#?}"
    );
}

each_backend! {
    async fn a_malop_updated_after_it_was_handled_is_handled_again_without_repeating_actions(db) {
        let sim = start_sim(14, 12).await;
        let env = ServiceEnv::on(db, &sim, &Setup::examples());
        let service = env.service(&sim).await;
        let store = service.store();
        run_until_settled(&service, &sim, 2).await;
        let before = assert_no_action_twice(&sim);
        let actions_before = action_requests(&sim).len();
        let ledger_before = store.list_actions(&ActionFilter::default()).unwrap().len();

        // A ransomware Malop (every plugin acts on it) and a known-malware one are updated.
        let malops = sim.malops();
        let pick = |detection: &str| {
            let m = malops
                .iter()
                .find(|m| m.detection_type == detection)
                .unwrap_or_else(|| panic!("the seeded world has a {detection} Malop"));
            MalopId::new(m.guid.clone())
        };
        let touched = [pick("RANSOMWARE"), pick("KNOWN_MALWARE")];
        let acted_on: BTreeMap<&MalopId, usize> = touched
            .iter()
            .map(|id| {
                let n = store
                    .list_actions(&ActionFilter {
                        malop_id: Some(id.clone()),
                        ..ActionFilter::default()
                    })
                    .unwrap()
                    .iter()
                    .filter(|a| a.request.malop_id().is_some())
                    .count();
                (id, n)
            })
            .collect();
        assert!(
            acted_on.values().all(|n| *n > 0),
            "the plugins acted on the Malops before the update: {acted_on:?}"
        );
        for id in &touched {
            sim.touch_malop(id).expect("the Malop exists");
        }
        let wanting = unhandled(&service, store, &sim);
        assert!(
            !wanting.is_empty()
                && wanting
                    .iter()
                    .all(|(_, m)| touched.iter().any(|t| t.as_str() == m)),
            "the update makes exactly the touched Malops unhandled: {wanting:?}"
        );
        let duplicates_before = audit_calls(&env.audit, "remediate")
            .iter()
            .filter(|r| r["result"]["sent_again"] == false)
            .count();

        let report = service.run_cycle().await.expect("the cycle runs");
        assert_eq!(
            report.invocations,
            wanting.len(),
            "each subscribed plugin ran again on each updated Malop"
        );
        assert!(unhandled(&service, store, &sim).is_empty());
        assert_eq!(
            action_requests(&sim).len(),
            actions_before,
            "no action reached the server again"
        );
        assert_eq!(assert_no_action_twice(&sim), before);
        assert_eq!(
            store.list_actions(&ActionFilter::default()).unwrap().len(),
            ledger_before,
            "nothing new in the ledger"
        );
        // The repeated remediations were answered from the ledger, and the audit says so.
        let duplicates = audit_calls(&env.audit, "remediate")
            .iter()
            .filter(|r| r["result"]["sent_again"] == false)
            .count();
        assert!(
            duplicates > duplicates_before,
            "the ledger answered the repeated remediation requests"
        );
        assert!(
            store
                .list_actions(&ActionFilter::default())
                .unwrap()
                .iter()
                .all(|a| !matches!(a.request, ActionRequest::Unisolate { .. })),
            "nothing undone by accident"
        );
    }
}

each_backend! {
    async fn a_plugin_trapping_three_times_in_a_row_is_paused_with_a_visible_audited_pause(db) {
        let sim = start_sim(15, 8).await;
        let setup = Setup::new(vec![PluginSpec::hostile("panic"), PluginSpec::cleanup()]);
        let env = ServiceEnv::on(db, &sim, &setup);
        let service = env.service(&sim).await;
        let store = service.store();
        let hostile_runs = || {
            audit_calls(&env.audit, "invoke:on-malop")
                .into_iter()
                .filter(|r| r["plugin"] == "hostile")
                .collect::<Vec<_>>()
        };

        let report = service.run_cycle().await.expect("the cycle runs");
        let runs = hostile_runs();
        assert!(
            runs.iter().all(|r| r["result"]["status"] == "stopped"),
            "every run of the panicking plugin was stopped: {runs:#?}"
        );
        // Paused after the third trap in a row; runs already in flight (at most
        // max_concurrency - 1 more) finish, and the plugin is offered no further Malop.
        assert!(
            (3..=3 + 3).contains(&runs.len()) && runs.len() < sim.malops().len(),
            "{} runs of 8 Malops",
            runs.len()
        );
        assert_eq!(report.traps, runs.len());
        let now = now_ms();
        let paused_until = store
            .paused_until("hostile", now)
            .unwrap()
            .expect("the plugin is paused");
        assert!(paused_until > now + 30_000, "paused for about a minute");
        let paused = audit_calls(&env.audit, "plugin-paused");
        assert!(!paused.is_empty(), "the pause is audited");
        assert_eq!(paused[0]["plugin"], "hostile");
        assert_eq!(paused[0]["result"]["consecutive_traps"], 3);
        assert!(
            paused[0]["result"]["last_reason"]
                .as_str()
                .is_some_and(|r| !r.is_empty()),
            "with the reason: {:?}",
            paused[0]["result"]
        );
        // The good plugin is untouched by its neighbour's traps.
        assert!(
            unhandled(&service, store, &sim)
                .iter()
                .all(|(plugin, _)| plugin == "hostile"),
            "cleanup handled all its Malops"
        );

        // `riposte status` shows the pause.
        let config = env.config.display().to_string();
        let (ok, stdout, stderr) = riposte_cli(&["status", "--json", "--config", &config]).await;
        assert!(ok, "riposte status runs: {stderr}");
        let status: serde_json::Value = serde_json::from_str(&stdout).expect("status is JSON");
        let shown = status["paused_plugins"]
            .as_array()
            .expect("paused_plugins")
            .iter()
            .find(|p| p["plugin"] == "hostile")
            .unwrap_or_else(|| panic!("hostile listed as paused: {stdout}"));
        assert_eq!(shown["paused_until_ms"], paused_until);
        let listed = status["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "hostile")
            .expect("hostile in plugins");
        assert_eq!(listed["paused_until_ms"], paused_until);

        // While paused it is not invoked; its Malops stay unhandled, waiting for the pause.
        sim.touch_malop(&MalopId::new(sim.malops()[0].guid.clone()));
        let report = service.run_cycle().await.expect("the next cycle runs");
        assert_eq!(hostile_runs().len(), runs.len(), "not invoked while paused");
        assert_eq!(report.traps, 0);
        assert!(report.invocations >= 1, "cleanup ran on the updated Malop");
        assert!(
            unhandled(&service, store, &sim)
                .iter()
                .any(|(plugin, _)| plugin == "hostile")
        );
    }
}

/// The machine guids of `malop` whose sensors are connected, and their pylumIds.
fn connected_pylums(sim: &SimHandle, malop: &riposte_sim::SimMalop) -> Vec<String> {
    let machines = sim.machines();
    malop
        .machines
        .iter()
        .filter_map(|g| machines.iter().find(|m| &m.guid == g))
        .filter(|m| m.online)
        .filter_map(|m| m.pylum_id.clone())
        .collect()
}

/// The bodies of the actions carried out on `path`, as JSON.
fn carried_bodies(sim: &SimHandle, path: &str) -> Vec<serde_json::Value> {
    sim.requests()
        .iter()
        .filter(|r| r.path == path && is_action(r) && carried_out(r))
        .map(|r| serde_json::from_str(&r.body).expect("an action body is JSON"))
        .collect()
}

/// A sample of `riposte_<name>` with `label` from `metrics`, 0 when absent.
fn metric(metrics: &Metrics, name: &str, label: &str) -> f64 {
    metrics
        .render()
        .lines()
        .filter(|l| l.starts_with(&format!("riposte_{name}")) && l.contains(label))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

each_backend! {
    async fn a_tenant_refusing_investigation_still_gets_contained_and_the_gap_is_reported(db) {
        let sim = start_sim(4, 12).await;
        sim.refuse_investigation(true);
        let env = ServiceEnv::on(db, &sim, &Setup::examples());
        let service = env.service(&sim).await;
        let unreadable_before = metric(
            &env.metrics,
            "malop_parts_unreadable_total",
            "part=\"suspects\"",
        );

        let report = service
            .run_cycle()
            .await
            .expect("a cycle on a tenant that refuses investigation queries");
        let malops = sim.malops();
        assert_eq!(
            report.deferred, 0,
            "no Malop waits for its investigation: {report:?}"
        );
        assert_eq!(report.incomplete, malops.len(), "{report:?}");
        assert!(
            sim.requests()
                .iter()
                .any(|r| r.path == "/rest/visualsearch/query/simple"),
            "investigation was asked for, and refused"
        );

        // Containment happened: every connected machine of every ransomware Malop is isolated,
        // and the suspects of a ransomware Malop on one connected machine are killed.
        let ransomware: Vec<_> = malops
            .iter()
            .filter(|m| m.activity_types.iter().any(|a| a == "RANSOMWARE"))
            .collect();
        assert!(!ransomware.is_empty());
        let isolated: Vec<String> = carried_bodies(&sim, "/rest/monitor/global/commands/isolate")
            .iter()
            .flat_map(|b| b["pylumIds"].as_array().cloned().unwrap_or_default())
            .filter_map(|p| p.as_str().map(str::to_owned))
            .collect();
        let kills = carried_bodies(&sim, "/rest/remediate");
        let mut single_machine = 0;
        for malop in &ransomware {
            for pylum in connected_pylums(&sim, malop) {
                assert!(
                    isolated.contains(&pylum),
                    "{pylum} of {} is isolated",
                    malop.guid
                );
            }
            let online = connected_pylums(&sim, malop).len();
            if malop.machines.len() == 1 && online == 1 {
                single_machine += 1;
                let killed = kills.iter().any(|b| {
                    b["malopId"] == malop.guid.as_str()
                        && b.to_string().contains(&malop.suspects[0].guid)
                        && b.to_string().contains("KILL_PROCESS")
                });
                assert!(killed, "the suspect of {} is killed", malop.guid);
            }
        }
        assert!(
            single_machine > 0,
            "seed 4 has a ransomware Malop on one connected machine"
        );

        // The rules were told what is missing: the triage comment names the unreadable parts.
        let comments = carried_bodies_text(&sim, "/rest/crimes/comment/");
        assert!(
            comments
                .iter()
                .any(|c| c.contains("not readable yet: suspects, files, network")),
            "{comments:#?}"
        );
        // Audited, counted, visible in `riposte status`.
        let incomplete = audit_calls(&env.audit, "malop-incomplete");
        assert_eq!(incomplete.len(), malops.len());
        let record = &incomplete[0]["result"];
        assert_eq!(
            record["unreadable"],
            serde_json::json!(["suspects", "files", "network"])
        );
        assert!(
            record["errors"]["suspects"]
                .as_str()
                .is_some_and(|e| e.contains("not allowed to run investigation queries")),
            "{record}"
        );
        assert!(
            metric(
                &env.metrics,
                "malop_parts_unreadable_total",
                "part=\"suspects\""
            ) >= unreadable_before + malops.len() as f64
        );
        let config = env.config.display().to_string();
        let (ok, status, stderr) = riposte_cli(&["status", "--json", "--config", &config]).await;
        assert!(ok, "{stderr}");
        let status: serde_json::Value = serde_json::from_str(&status).expect("status is JSON");
        assert_eq!(status["incomplete_malops"]["count"], malops.len());
        assert_eq!(
            status["incomplete_malops"]["by_part"]["network"],
            malops.len()
        );

        // Investigation comes back: every Malop is read again, offered again in full, and no
        // action already taken is sent twice.
        sim.refuse_investigation(false);
        let store = env.store();
        cycle_until_read_again(&service, &store).await;
        run_until_settled(&service, &sim, 5).await;
        assert_eq!(
            audit_calls(&env.audit, "malop-complete").len(),
            malops.len()
        );
        let kills = carried_bodies(&sim, "/rest/remediate");
        for malop in ransomware
            .iter()
            .filter(|m| !connected_pylums(&sim, m).is_empty())
        {
            let killed = kills
                .iter()
                .any(|b| b["malopId"] == malop.guid.as_str() && b.to_string().contains("KILL_PROCESS"));
            assert!(
                killed,
                "with its investigation read, {} has its suspects killed",
                malop.guid
            );
        }
        assert_no_action_twice(&sim);
    }
}

/// Runs cycles until no Malop waits to be read again (within [`LIMIT`]).
async fn cycle_until_read_again(service: &riposte_service::Service, store: &riposte_store::Store) {
    let deadline = std::time::Instant::now() + LIMIT;
    while store.incomplete_summary().unwrap().count > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the Malops were not read again in time"
        );
        service.run_cycle().await.expect("a cycle");
    }
}

/// The raw bodies (comments are text, not JSON) of the actions carried out under `prefix`.
fn carried_bodies_text(sim: &SimHandle, prefix: &str) -> Vec<String> {
    sim.requests()
        .iter()
        .filter(|r| r.path.starts_with(prefix) && is_action(r) && carried_out(r))
        .map(|r| r.body.clone())
        .collect()
}

/// `riposte <args>` with `env` set (and RIPOSTE_* cleared otherwise), stderr to a pipe:
/// (exit code, stderr).
async fn riposte_with_env(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let mut command = tokio::process::Command::new(riposte_e2e::riposte_bin());
    command
        .args(args)
        .env_remove("RIPOSTE_USERNAME")
        .env_remove("RIPOSTE_PASSWORD")
        .env_remove("NO_COLOR")
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in env {
        command.env(k, v);
    }
    let out = tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .expect("riposte finishes within a minute")
        .expect("riposte runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

each_backend! {
    async fn run_once_reports_a_failed_cycle_and_credentials_follow_the_rules(db) {
        use riposte_e2e::service_support::{PASSWORD, USER};
        use std::os::unix::fs::PermissionsExt;
        let sim = start_sim(5, 2).await;
        let env = ServiceEnv::on(db, &sim, &Setup::new(vec![PluginSpec::legacy()]));
        let config = env.config.display().to_string();
        let credentials = env.dir.path().join("credentials");

        // A cycle that works exits 0, and its log on a pipe carries no colour codes.
        let (code, log) = riposte_with_env(&["run", "--config", &config, "--once"], &[]).await;
        assert_eq!(code, 0, "{log}");
        assert!(log.contains("cycle done"), "{log}");
        assert!(
            !log.contains('\u{1b}'),
            "no terminal colour codes in a pipe: {log:?}"
        );

        // A credentials file others may read is refused, naming the fix.
        std::fs::set_permissions(&credentials, std::fs::Permissions::from_mode(0o644)).unwrap();
        let (code, log) = riposte_with_env(&["run", "--config", &config, "--once"], &[]).await;
        assert_ne!(code, 0);
        assert!(
            log.contains("accessible by group or others (mode 0644)")
                && log.contains(&format!("chmod 600 {}", credentials.display())),
            "{log}"
        );

        // Without a credentials file, RIPOSTE_USERNAME and RIPOSTE_PASSWORD are used.
        let toml = std::fs::read_to_string(&env.config).unwrap();
        let server_credentials = format!("credentials_file = {:?}", credentials.display().to_string());
        let without: String = toml
            .lines()
            .filter(|l| *l != server_credentials)
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(&env.config, without).unwrap();
        let (code, log) = riposte_with_env(&["run", "--config", &config, "--once"], &[]).await;
        assert_ne!(code, 0);
        assert!(log.contains("RIPOSTE_USERNAME is not set"), "{log}");
        let creds = [("RIPOSTE_USERNAME", USER), ("RIPOSTE_PASSWORD", PASSWORD)];
        let (code, log) = riposte_with_env(&["run", "--config", &config, "--once"], &creds).await;
        assert_eq!(code, 0, "{log}");

        // A refused login or an unreachable server fails the one cycle: non-zero, saying what.
        let wrong = [
            ("RIPOSTE_USERNAME", USER),
            ("RIPOSTE_PASSWORD", "not-the-password"),
        ];
        let (code, log) = riposte_with_env(&["run", "--config", &config, "--once"], &wrong).await;
        assert_ne!(code, 0, "{log}");
        assert!(
            log.contains("the cycle failed") && log.contains("login failed"),
            "{log}"
        );
        assert!(!log.contains("retrying at the next poll"), "{log}");
        let addr = sim.addr();
        sim.shutdown().await;
        // Nothing listens there now.
        let down = tokio::net::TcpStream::connect(addr).await;
        assert!(down.is_err(), "the simulator is down");
        let (code, log) = riposte_with_env(&["run", "--config", &config, "--once"], &creds).await;
        assert_ne!(code, 0, "{log}");
        assert!(
            log.contains("the cycle failed") && log.contains("cannot connect"),
            "{log}"
        );
    }
}

each_backend! {
    /// A Malop read incomplete is not read again at every poll that lists it (the overlap
    /// window lists the newest again and again), only when its next read is due.
    async fn an_incomplete_malop_is_read_again_when_due_not_at_every_poll(db) {
        let sim = start_sim(3, 4).await;
        sim.refuse_investigation(true);
        let mut setup = Setup::new(vec![PluginSpec::legacy()]);
        // The next read is due a poll interval later: 30 s, well after the second cycle.
        setup.poll_interval_secs = 30;
        let env = ServiceEnv::on(db, &sim, &setup);
        let service = env.service(&sim).await;
        let investigations = || sim.count("POST", "/rest/visualsearch/query/simple");
        let first = service.run_cycle().await.expect("the first cycle");
        assert_eq!(first.incomplete, 4, "{first:?}");
        let asked = investigations();
        let second = service.run_cycle().await.expect("the second cycle");
        assert!(
            second.malops_seen >= 1,
            "the overlap window lists the newest again: {second:?}"
        );
        assert_eq!(
            (second.incomplete, second.reread, second.invocations),
            (0, 0, 0),
            "{second:?}"
        );
        assert_eq!(
            investigations(),
            asked,
            "no investigation query before the read is due"
        );
    }
}

each_backend! {
    /// Once investigation is readable again, a Malop read incomplete is read again for the
    /// parts its plugins read only (here the suspects: no files or connections query), and
    /// once: a poll and the reread queue do not both read it in one cycle.
    async fn a_malop_read_again_is_read_once_for_its_plugins_parts_only(db) {
        let sim = start_sim(3, 4).await;
        sim.refuse_investigation(true);
        let plugin = PluginSpec::ransomware_containment().reads(&["suspects", "sensors"]);
        let mut setup = Setup::new(vec![plugin]);
        // The next read is due a second later.
        setup.poll_interval_secs = 1;
        let env = ServiceEnv::on(db, &sim, &setup);
        let service = env.service(&sim).await;
        let first = service.run_cycle().await.expect("the first cycle");
        assert!(first.incomplete > 0, "{first:?}");
        let store = env.store();
        let waiting = store.incomplete_summary().unwrap().count;
        assert_eq!(waiting as usize, first.incomplete);

        sim.refuse_investigation(false);
        let since = sim.requests().len();
        cycle_until_read_again(&service, &store).await;
        let queries: Vec<String> = sim.requests()[since..]
            .iter()
            .filter(|r| r.path == "/rest/visualsearch/query/simple")
            .map(|r| r.body.clone())
            .collect();
        for query in &queries {
            assert!(
                !query.contains("\"connections\"") && !query.contains("filesToRemediate"),
                "only the parts the plugin reads are asked for: {query}"
            );
        }
        for malop in sim.malops() {
            let reads = queries.iter().filter(|q| q.contains(malop.guid.as_str())).count();
            assert!(reads <= 1, "{} was read {reads} times", malop.guid);
        }
        let read_again = sim
            .malops()
            .iter()
            .filter(|m| queries.iter().any(|q| q.contains(m.guid.as_str())))
            .count();
        assert_eq!(read_again as u64, waiting, "every waiting Malop was read again");
    }
}

/// `riposte run --once` says which remediations it still follows before it exits, rather
/// than waiting on them silently: each followed action by id, kinds and Malop; and which
/// isolations the server queued for offline sensors, left to the next runs to check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_once_names_the_remediations_it_waits_for() {
    let sim = start_sim(5, 0).await;
    let malop = riposte_e2e::service_support::add_ransomware_malop(&sim);
    let offline = sim.add_malop();
    // A machine of its own, so the ransomware's stay online.
    let machine = sim.with_state(|s| {
        let busy = &s
            .malops
            .iter()
            .find(|m| m.guid == malop.as_str())
            .unwrap()
            .machines;
        let free = s.machines.iter().find(|m| !busy.contains(&m.guid)).unwrap();
        let free = free.guid.clone();
        let m = s
            .malops
            .iter_mut()
            .find(|m| m.guid == offline.as_str())
            .unwrap();
        m.machines = vec![free.clone()];
        free
    });
    assert!(sim.set_online(&machine, false));
    let env = ServiceEnv::new(
        &sim,
        &Setup::new(vec![
            PluginSpec::ransomware_containment(),
            PluginSpec::hostile("isolate-all"),
        ]),
    );
    let config = env.config.display().to_string();
    let (code, log) = riposte_with_env(&["run", "--config", &config, "--once"], &[]).await;
    assert_eq!(code, 0, "{log}");
    let store = env.store();
    let kills: Vec<_> = store
        .list_actions(&ActionFilter::default())
        .unwrap()
        .into_iter()
        .filter(|a| a.kinds.contains(&riposte_domain::ActionKind::KillProcess))
        .collect();
    assert!(
        !kills.is_empty(),
        "the ransomware's processes were killed: {log}"
    );
    let line = log
        .lines()
        .find(|l| l.contains("following remediations to their final status"))
        .unwrap_or_else(|| panic!("no word of the followed remediations:\n{log}"));
    for kill in &kills {
        assert!(line.contains(kill.id.as_str()), "{line}");
    }
    assert!(line.contains("kill-process"), "{line}");
    assert!(line.contains(&format!("Malop {malop}")), "{line}");
    assert!(
        kills.iter().all(|k| k.state == ActionState::Succeeded),
        "followed to the end before exiting"
    );
    let queued: Vec<_> = store
        .list_actions(&ActionFilter {
            states: vec![ActionState::Following],
            ..ActionFilter::default()
        })
        .unwrap();
    assert!(
        !queued.is_empty() && queued.iter().all(|a| a.malop_id.as_ref() == Some(&offline)),
        "the isolation of the offline machine is queued: {queued:?}"
    );
    let line = log
        .lines()
        .find(|l| l.contains("queued on the server until offline sensors connect"))
        .unwrap_or_else(|| panic!("no word of the queued isolations:\n{log}"));
    for action in &queued {
        assert!(line.contains(action.id.as_str()), "{line}");
    }
}
