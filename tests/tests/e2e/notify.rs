//! Notifications from the running service (issue 16): an isolation held for approval is
//! posted to the operator's webhook, named by its action id and Malop, with no secret of the
//! configuration in it; the service does not wait for the webhook.

use axum::Router;
use axum::extract::State;
use axum::routing::post;
use riposte_domain::ActionRequest;
use riposte_domain::now_ms;
use riposte_e2e::service_support::{
    PASSWORD, PluginSpec, ServiceEnv, Setup, inject_first, start_sim,
};
use riposte_sim::{Fault, FaultKind};
use riposte_store::prelude::*;
use riposte_store::{ActionFilter, ActionState};
use std::io::Write as _;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Appends a `[notifications]` section with one webhook at `url` for `events`.
fn notify_to(env: &ServiceEnv, url: &str, events: &str) {
    let mut config = std::fs::OpenOptions::new()
        .append(true)
        .open(&env.config)
        .unwrap();
    write!(
        config,
        "\n[notifications]\nhost = \"e2e-host\"\n\n[[notifications.webhooks]]\nname = \"soc\"\nurl = {url:?}\n\
         events = {events}\n"
    )
    .unwrap();
}

/// A webhook receiver on loopback: its URL, and the bodies it received.
async fn receiver() -> (String, mpsc::UnboundedReceiver<String>) {
    gated_receiver(watch::channel(true).1, Duration::ZERO).await
}

/// A webhook receiver on loopback that answers no notification until `open` is true, and
/// each then only `answer_after` it came (a slow webhook): its URL, and the bodies it
/// received. A webhook's notifications are posted one at a time, so until `open` it receives
/// only the first.
async fn gated_receiver(
    open: watch::Receiver<bool>,
    answer_after: Duration,
) -> (String, mpsc::UnboundedReceiver<String>) {
    let (tx, rx) = mpsc::unbounded_channel::<String>();
    let app = Router::new()
        .route(
            "/hook",
            post(
                move |State(tx): State<mpsc::UnboundedSender<String>>, body: String| {
                    let mut open = open.clone();
                    async move {
                        let _ = tx.send(body);
                        let slow = tokio::time::sleep(answer_after);
                        let _ = open.wait_for(|open| *open).await;
                        slow.await;
                    }
                },
            ),
        )
        .with_state(tx);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/hook"), rx)
}

each_backend! {
    async fn an_isolation_held_for_approval_is_notified_without_secrets(db) {
        let sim = start_sim(7, 12).await;
        let setup = Setup::new(vec![PluginSpec::ransomware_containment()])
            .approvals(&["isolate"], 3600);
        let env = ServiceEnv::on(db, &sim, &setup);
        let (url, mut received) = receiver().await;
        notify_to(&env, &url, r#"["approval-needed", "action-failed"]"#);
        let service = env.service(&sim).await;
        service.run_cycle().await.expect("the cycle runs");
        let pending = service.store().list_pending(now_ms()).expect("the queue lists");
        assert!(!pending.is_empty(), "the seeded world has ransomware to isolate");

        service.notifier().idle().await;
        let bodies: Vec<String> = std::iter::from_fn(|| received.try_recv().ok()).collect();
        let approvals: Vec<serde_json::Value> = bodies
            .iter()
            .map(|b| serde_json::from_str::<serde_json::Value>(b).expect("a JSON body"))
            .filter(|b| b["event"] == "approval-needed")
            .collect();
        assert_eq!(approvals.len(), pending.len(), "one notification per held action: {bodies:#?}");
        for p in &pending {
            let body = approvals
                .iter()
                .find(|b| b["action_id"] == p.action.id.as_str())
                .unwrap_or_else(|| panic!("{} is notified: {approvals:#?}", p.action.id.as_str()));
            assert_eq!(body["plugin"], "ransomware-containment");
            assert_eq!(body["host"], "e2e-host");
            let malop = p.action.malop_id.as_ref().expect("an isolation names its Malop");
            assert_eq!(body["malop_id"], malop.as_str());
            let ActionRequest::Isolate { machines, .. } = &p.action.request else {
                panic!("only isolations are held")
            };
            let summary = body["summary"].as_str().unwrap();
            let machines = if machines.len() == 1 { "1 machine".to_string() } else { format!("{} machines", machines.len()) };
            assert!(summary.contains(&format!("asks to isolate {machines}")), "{summary}");
        }
        for body in &bodies {
            assert!(!body.contains(PASSWORD), "the server's password is never sent: {body}");
        }
        let stats = &service.notifier().stats()[0];
        assert_eq!((stats.name.as_str(), stats.delivered, stats.failed, stats.dropped), ("soc", bodies.len() as u64, 0, 0));
    }
}

each_backend! {
    async fn a_spent_budget_is_notified_once(db) {
        let sim = start_sim(7, 12).await;
        let mut setup = Setup::new(vec![PluginSpec::ransomware_containment()]);
        setup.global_budget = 1;
        let env = ServiceEnv::on(db, &sim, &setup);
        let (url, mut received) = receiver().await;
        notify_to(&env, &url, r#"["budget-tripped"]"#);
        let service = env.service(&sim).await;
        service.run_cycle().await.expect("the cycle runs");
        service.notifier().idle().await;
        let bodies: Vec<serde_json::Value> = std::iter::from_fn(|| received.try_recv().ok())
            .map(|b| serde_json::from_str(&b).expect("a JSON body"))
            .collect();
        assert_eq!(bodies.len(), 1, "the budget's first refusal, and no repeat: {bodies:#?}");
        let body = &bodies[0];
        assert_eq!(body["event"], "budget-tripped");
        assert_eq!(body["plugin"], "ransomware-containment");
        assert_eq!(body["budget"]["scope"], "global");
        assert_eq!(body["budget"]["max"], 1, "{body}");
        assert!(body["budget"]["used"].as_u64().is_some_and(|u| u <= 1), "{body}");
    }
}

/// The JSON bodies `received` holds now.
fn bodies(received: &mut mpsc::UnboundedReceiver<String>) -> Vec<serde_json::Value> {
    std::iter::from_fn(|| received.try_recv().ok())
        .map(|b| serde_json::from_str(&b).expect("a JSON body"))
        .collect()
}

each_backend! {
    async fn a_plugin_paused_by_its_traps_is_notified_once(db) {
        let sim = start_sim(15, 8).await;
        let env = ServiceEnv::on(db, &sim, &Setup::new(vec![PluginSpec::hostile("panic")]));
        let (url, mut received) = receiver().await;
        notify_to(&env, &url, r#"["plugin-paused"]"#);
        let service = env.service(&sim).await;
        service.run_cycle().await.expect("the cycle runs");
        service.notifier().idle().await;
        let got = bodies(&mut received);
        assert_eq!(got.len(), 1, "{got:#?}");
        assert_eq!(got[0]["event"], "plugin-paused");
        assert_eq!(got[0]["plugin"], "hostile");
        let reason = got[0]["reason"].as_str().unwrap();
        assert!(reason.starts_with("3 traps in a row, the last: "), "{reason}");
        assert!(got[0]["until"].as_str().is_some(), "{}", got[0]);
    }

    async fn an_action_that_fails_is_notified_with_its_error(db) {
        let sim = start_sim(7, 12).await;
        let env = ServiceEnv::on(db, &sim, &Setup::new(vec![PluginSpec::ransomware_containment()]));
        let (url, mut received) = receiver().await;
        notify_to(&env, &url, r#"["action-failed"]"#);
        // The server refuses every isolation, in a failure body.
        inject_first(
            &sim,
            Fault::new(FaultKind::ErrorBody, u32::MAX).on("/rest/monitor/global/commands/isolate"),
        );
        let service = env.service(&sim).await;
        let failed = |service: &riposte_service::Service| {
            service
                .store()
                .list_actions(&ActionFilter { states: vec![ActionState::Failed], ..ActionFilter::default() })
                .expect("the ledger lists")
        };
        // Refusals the server certainly did not act on are tried again at later cycles, up
        // to the executor's limit.
        for _ in 0..4 {
            service.run_cycle().await.expect("the cycle runs");
            if !failed(&service).is_empty() {
                break;
            }
        }
        let failed = failed(&service);
        assert!(!failed.is_empty(), "an isolation ended failed");
        service.notifier().idle().await;
        let got = bodies(&mut received);
        assert_eq!(got.len(), failed.len(), "one notification per failed action: {got:#?}");
        for action in &failed {
            let body = got
                .iter()
                .find(|b| b["action_id"] == action.id.as_str())
                .unwrap_or_else(|| panic!("{} is notified: {got:#?}", action.id.as_str()));
            assert_eq!(body["event"], "action-failed");
            assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "{body}");
            assert!(body["summary"].as_str().unwrap().contains("isolate"), "{body}");
        }
    }
}

each_backend! {
    async fn a_remediation_that_times_out_is_notified_as_failed_saying_so(db) {
        let sim = start_sim(7, 12).await;
        // No remediation ever reaches a final status: the follower gives up after its polls.
        sim.with_state(|s| s.steps_per_poll = 0);
        let env = ServiceEnv::on(db, &sim, &Setup::new(vec![PluginSpec::ransomware_containment()]));
        let (url, mut received) = receiver().await;
        notify_to(&env, &url, r#"["action-failed"]"#);
        let service = env.service(&sim).await;
        service.run_cycle().await.expect("the cycle runs");
        let timed_out = service
            .store()
            .list_actions(&ActionFilter { states: vec![ActionState::TimedOut], ..ActionFilter::default() })
            .expect("the ledger lists");
        assert!(!timed_out.is_empty(), "the seeded world has processes to kill");
        service.notifier().idle().await;
        let got = bodies(&mut received);
        assert_eq!(got.len(), timed_out.len(), "one notification per timed-out action: {got:#?}");
        for action in &timed_out {
            assert!(matches!(action.request, ActionRequest::Remediate { .. }), "{action:?}");
            let body = got
                .iter()
                .find(|b| b["action_id"] == action.id.as_str())
                .unwrap_or_else(|| panic!("{} is notified: {got:#?}", action.id.as_str()));
            assert_eq!(body["event"], "action-failed");
            assert_eq!(body["plugin"], "ransomware-containment");
            assert_eq!(
                body["error"], "timed out: no final status before the follow limit",
                "{body}"
            );
            let summary = body["summary"].as_str().unwrap();
            assert!(summary.contains("timed out"), "{summary}");
        }
    }
}

/// `riposte run --once` on `env`, within two minutes: its exit status and its stderr (with
/// `RUST_LOG=info`), each line of which is shown to `on_line` as it comes.
async fn run_once(
    env: &ServiceEnv,
    mut on_line: impl FnMut(&str),
) -> (std::process::ExitStatus, String) {
    use tokio::io::AsyncBufReadExt as _;
    let mut run = tokio::process::Command::new(riposte_e2e::riposte_bin())
        .args(["run", "--once", "--config"])
        .arg(&env.config)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("riposte run starts");
    let mut lines = tokio::io::BufReader::new(run.stderr.take().expect("its stderr")).lines();
    let ran = async {
        let mut log = String::new();
        while let Some(line) = lines.next_line().await.expect("its stderr reads") {
            on_line(&line);
            log.push_str(&line);
            log.push('\n');
        }
        (run.wait().await.expect("riposte run ends"), log)
    };
    tokio::time::timeout(Duration::from_secs(120), ran)
        .await
        .expect("riposte run --once ends within two minutes")
}

/// A SQLite environment where the ransomware plugin's isolations wait for approval.
fn isolations_held(sim: &riposte_sim::SimHandle) -> ServiceEnv {
    let setup =
        Setup::new(vec![PluginSpec::ransomware_containment()]).approvals(&["isolate"], 3600);
    ServiceEnv::new(sim, &setup)
}

/// What `riposte run --once` notified is delivered before it exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_once_delivers_its_notifications_before_it_exits() {
    let sim = start_sim(7, 12).await;
    let env = isolations_held(&sim);
    // The webhook answers nothing before the cycle is done, and is slow then, so the
    // notifications after the first are still queued when the cycle ends: a process that
    // exited without waiting would not send them. It answers them all within the grace.
    let (open, gate) = watch::channel(false);
    let (url, mut received) = gated_receiver(gate, Duration::from_secs(1)).await;
    notify_to(&env, &url, r#"["approval-needed"]"#);
    let (status, log) = run_once(&env, |line| {
        if line.contains("cycle done") {
            open.send_replace(true);
        }
    })
    .await;
    assert!(status.success(), "{log}");
    let pending = env.store().list_pending(now_ms()).expect("the queue lists");
    assert!(
        !pending.is_empty(),
        "the seeded world has ransomware to isolate"
    );
    // Everything it sent arrived before it exited: nothing more is on its way.
    let got = bodies(&mut received);
    assert_eq!(got.len(), pending.len(), "{got:#?}\n{log}");
    assert!(!log.contains("not delivered"), "{log}");
}

/// A webhook that never answers holds `riposte run --once` up for the flush's grace at most,
/// and what it could not deliver is logged as a count, without the webhook's URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_once_drops_what_a_silent_webhook_does_not_take_within_the_grace() {
    let sim = start_sim(7, 12).await;
    let env = isolations_held(&sim);
    // Accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    notify_to(
        &env,
        &format!("http://{addr}/hook/TOKENSECRET"),
        r#"["approval-needed"]"#,
    );
    let started = std::time::Instant::now();
    let (status, log) = run_once(&env, |_| {}).await;
    let took = started.elapsed();
    assert!(status.success(), "{log}");
    let pending = env.store().list_pending(now_ms()).expect("the queue lists");
    let line = log
        .lines()
        .find(|l| l.contains("not delivered within 5s; dropped"))
        .unwrap_or_else(|| panic!("the drop is logged:\n{log}"));
    assert!(line.contains("webhook=soc"), "{line}");
    assert!(
        line.contains(&format!("undelivered={}", pending.len())),
        "{line}"
    );
    assert!(!log.contains("TOKENSECRET"), "{log}");
    // The webhook's own timeout is 10 s: the run did not wait for it.
    assert!(took < Duration::from_secs(60), "{took:?}");
}
