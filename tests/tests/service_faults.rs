//! The service under faults, end to end: the four example plugins (built components, all
//! enforcing) against the simulator on loopback, with a real SQLite ledger and audit file.
//! Faults are injected while a cycle is running, at points read from the simulator's request
//! log; what reached the server is read from that log too.

use riposte::domain::{ActionRequest, MalopId};
use riposte::service::{CycleReport, Service, now_ms};
use riposte::sim::{Fault, FaultKind, LoggedRequest, SimHandle};
use riposte::store::{ActionFilter, ActionState};
use riposte_e2e::service_support::{
    PluginSpec, ServiceEnv, Setup, assert_no_action_twice, assert_no_action_twice_by, audit_calls,
    carried_out, inject_first, is_action, riposte_cli, run_until_settled, start_sim, unhandled,
    wait_until,
};
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sessions_expiring_mid_cycle_cost_one_login_each_and_nothing_is_sent_twice() {
    let sim = start_sim(11, 12).await;
    slow(&sim);
    let env = ServiceEnv::new(&sim, &Setup::examples());
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn http_500s_mid_cycle_are_retried_or_reconciled_and_nothing_is_sent_twice() {
    let sim = start_sim(12, 12).await;
    slow(&sim);
    let env = ServiceEnv::new(&sim, &Setup::examples());
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn actions_carried_out_before_a_500_are_found_on_the_server_not_sent_again() {
    let sim = start_sim(13, 12).await;
    slow(&sim);
    let env = ServiceEnv::new(&sim, &Setup::examples());
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
            inject_first(
                &sim,
                Fault::new(FaultKind::Status500, 1)
                    .on(path)
                    .after_processing(),
            );
        }
    })
    .await;
    // The cycle completed, or the next one settles what it left (checked on the server).
    run_until_settled(&service, &sim, 1).await;
    let _ = first;
    // Here every 500 on an action came after the simulator carried it out.
    let unknown: Vec<LoggedRequest> = action_requests(&sim)
        .into_iter()
        .filter(|r| r.fault == Some(FaultKind::Status500))
        .collect();
    assert!(
        unknown.len() >= 3,
        "outcome-unknown actions in the middle of the cycle: {unknown:#?}"
    );
    assert_no_action_twice_by(&sim, |r| {
        carried_out(r) || (is_action(r) && r.fault == Some(FaultKind::Status500))
    });
    let store = service.store();
    let failed = store
        .list_actions(&ActionFilter {
            states: vec![ActionState::Failed],
            ..ActionFilter::default()
        })
        .unwrap();
    assert!(failed.is_empty(), "no action given up: {failed:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_malop_updated_after_it_was_handled_is_handled_again_without_repeating_actions() {
    let sim = start_sim(14, 12).await;
    let env = ServiceEnv::new(&sim, &Setup::examples());
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_plugin_trapping_three_times_in_a_row_is_paused_with_a_visible_audited_pause() {
    let sim = start_sim(15, 8).await;
    let setup = Setup::new(vec![PluginSpec::hostile("panic"), PluginSpec::cleanup()]);
    let env = ServiceEnv::new(&sim, &setup);
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
    let (ok, stdout, stderr) = riposte_cli(&["status", "--config", &config]).await;
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
