//! Several hosts on one PostgreSQL database (issue 14): three `riposte run` processes share
//! the work of one simulated tenant. The acting host (the holder of the poller lease) is
//! killed with SIGKILL again and again at different points of its cycle (a request in
//! flight, just after the simulator carried an action out, while remediations are followed)
//! and restarted; each time another host must take the lease over within the lease time.
//! At the end every Malop is handled by every plugin subscribed to it, every action
//! succeeded, and no action reached the simulator twice (its request log).

use riposte_e2e::cut_proxy::CutProxy;
use riposte_e2e::service_support::{
    KillAt, PluginSpec, ServiceEnv, Setup, actions_carried_out, assert_no_action_twice,
    audit_calls_so_far, audit_records, postgres_addr, riposte_cli, start_sim, subscriptions_of,
    unhandled_by, wait_until,
};
use riposte_service::POLLER_LEASE;
use riposte_sim::{Fault, FaultKind, SimHandle};
use riposte_store::prelude::*;
use riposte_store::testing::TestDatabase;
use riposte_store::{ActionFilter, ActionState, Store};
use std::os::unix::process::ExitStatusExt;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::process::Child;

/// Lease and heartbeat (seconds): short, so that failovers fit a test.
const TIMING: (u64, u64) = (3, 1);
const HOSTS: usize = 3;
/// The global budget of the kill test: comments an hour, fewer than its Malops ask for (one
/// each: 10 seeded, more added by the rounds), so the hosts compete for its last units; the
/// other kinds are not limited, so every kill round still finds actions to send.
const BUDGET: u64 = 8;
const BUDGETED: riposte_domain::ActionKind = riposte_domain::ActionKind::AddComment;

const KILLS: [KillAt; 5] = [
    KillAt::Following(1),
    KillAt::Requests(5),
    KillAt::Actions(1),
    KillAt::Actions(3),
    KillAt::Requests(40),
];

/// The host holding the poller lease now, and since when.
fn acting(store: &Store) -> Option<(String, i64)> {
    let now = riposte_domain::now_ms();
    let (_, leases) = store.fleet().expect("the fleet's state");
    leases
        .into_iter()
        .find(|l| l.name == POLLER_LEASE && l.expires_at_ms > now)
        .map(|l| (l.holder, l.acquired_at_ms))
}

fn carried(sim: &SimHandle) -> usize {
    actions_carried_out(sim).len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_hosts_share_one_database_and_survive_the_acting_host_dying_again_and_again() {
    let sim = start_sim(41, 10).await;
    sim.inject(
        Fault::new(FaultKind::Delay, u32::MAX)
            .on("/rest/")
            .delay_ms(10),
    );
    let mut setup = Setup::examples();
    setup.global_budget = BUDGET;
    setup.global_budget_action = BUDGETED.name();
    let plugins = subscriptions_of(&sim, &setup).await;
    let db = Arc::new(TestDatabase::postgres());
    let hosts: Vec<ServiceEnv> = (0..HOSTS)
        .map(|i| ServiceEnv::fleet_host(&sim, &setup, &db, &format!("host-{i}"), TIMING, None))
        .collect();
    let mut children: Vec<Child> = hosts.iter().map(|h| h.spawn_run(0)).collect();
    let mut runs = [0usize; HOSTS];
    let store = db.open();
    let lease_limit = Duration::from_secs(TIMING.0 + 2 * TIMING.1 + 4);

    wait_until("a host to act", lease_limit, || acting(&store).is_some()).await;
    for (round, kill_at) in KILLS.iter().enumerate() {
        if round > 0 {
            sim.add_malop();
        }
        let mark = KillAt::mark(&sim);
        wait_until(
            &format!("round {round}: {kill_at:?}"),
            Duration::from_secs(30),
            || kill_at.reached(&sim, mark),
        )
        .await;
        let (holder, _) = acting(&store).expect("a host acts while requests flow");
        let victim = hosts
            .iter()
            .position(|h| h.host.as_deref() == Some(holder.as_str()))
            .expect("the holder is one of the hosts");
        children[victim].start_kill().expect("SIGKILL");
        let status = children[victim].wait().await.expect("reaped");
        assert_eq!(status.signal(), Some(9), "host {victim} died of SIGKILL");
        let killed_at = riposte_domain::now_ms();

        // Another host takes the work over within the lease time.
        let started = Instant::now();
        wait_until(
            &format!("round {round}: another host to take over from {holder}"),
            lease_limit,
            || acting(&store).is_some_and(|(h, since)| h != holder && since >= killed_at - 1),
        )
        .await;
        let took = started.elapsed();
        assert!(took <= lease_limit, "round {round}: failover took {took:?}");

        // The dead host comes back, and stands by.
        runs[victim] += 1;
        children[victim] = hosts[victim].spawn_run(runs[victim]);
    }

    let pending_work = || {
        let unhandled = unhandled_by(&plugins, &store, &sim.malops()).len();
        let unresolved = store.unresolved_actions().expect("the ledger").len();
        (unhandled, unresolved)
    };
    wait_until(
        "every Malop handled and every action settled",
        Duration::from_secs(60),
        || pending_work() == (0, 0),
    )
    .await;
    let (known, _) = store.fleet().unwrap();
    assert_eq!(
        known.len(),
        HOSTS,
        "riposte status sees every host: {known:?}"
    );
    for (i, child) in children.iter_mut().enumerate() {
        let pid = child.id().expect("the host runs").to_string();
        let term = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill -TERM");
        assert!(term.success());
        let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
            .await
            .expect("the host stops within 15 s of SIGTERM")
            .expect("reaped");
        assert!(
            status.success(),
            "host {i} exits cleanly ({status}):\n{}",
            hosts[i].log_tail(runs[i])
        );
    }

    assert!(unhandled_by(&plugins, &store, &sim.malops()).is_empty());
    assert_no_action_twice(&sim);
    let actions = store.list_actions(&ActionFilter::default()).unwrap();
    let unsettled: Vec<_> = actions
        .iter()
        .filter(|a| a.state != ActionState::Succeeded)
        .map(|a| (a.id.as_str(), a.state, a.last_error.clone()))
        .collect();
    assert!(
        unsettled.is_empty(),
        "every action succeeded: {unsettled:#?}"
    );
    assert!(
        actions_carried_out(&sim).len() <= actions.len(),
        "at most one request carried out per ledgered action"
    );
    // The budget was spent to its last unit across the hosts and the kills, never beyond.
    let charged = store.charges_used(None, &[BUDGETED], 0).unwrap();
    assert_eq!(
        charged, BUDGET,
        "the global budget is spent exactly to its maximum"
    );
    // The lease changed hands at every kill (its epoch counts the holders), and each host
    // kept its own audit trail.
    let (known, leases) = store.fleet().unwrap();
    let poller = leases.iter().find(|l| l.name == POLLER_LEASE).unwrap();
    assert!(poller.epoch > KILLS.len() as i64, "{poller:?}");
    assert!(hosts.iter().all(|h| !audit_records(&h.audit).is_empty()));
    assert!(
        hosts
            .iter()
            .any(|h| !audit_calls_so_far(&h.audit, "poll-cycle").is_empty())
    );
    assert!(
        known.is_empty(),
        "hosts that stopped cleanly left: {known:?}"
    );
    assert!(
        poller.expires_at_ms <= riposte_domain::now_ms(),
        "the lease was given up"
    );

    // The fleet's trail reads as one: every host's chain verifies, and `show` merges them
    // in time order, naming each record's trail.
    let trails: Vec<String> = hosts
        .iter()
        .map(|h| h.audit.display().to_string())
        .collect();
    let mut verify = vec!["audit", "verify"];
    verify.extend(trails.iter().map(String::as_str));
    let (ok, out, err) = riposte_cli(&verify).await;
    assert!(ok, "{out}{err}");
    assert_eq!(out.lines().count(), HOSTS, "{out}");
    let mut show = vec!["audit", "show", "--json"];
    show.extend(trails.iter().map(String::as_str));
    let (ok, out, err) = riposte_cli(&show).await;
    assert!(ok, "{err}");
    let merged: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON record"))
        .collect();
    let total: usize = hosts.iter().map(|h| audit_records(&h.audit).len()).sum();
    assert_eq!(merged.len(), total, "every record of every trail");
    let time = |r: &serde_json::Value| r["time_ms"].as_i64().unwrap();
    let sorted =
        |records: &[serde_json::Value]| records.windows(2).all(|w| time(&w[0]) <= time(&w[1]));
    if hosts.iter().all(|h| sorted(&audit_records(&h.audit))) {
        assert!(sorted(&merged), "merged in time order");
    }
    for trail in &trails {
        let seqs: Vec<u64> = merged
            .iter()
            .filter(|r| r["trail"] == trail.as_str())
            .map(|r| r["seq"].as_u64().unwrap())
            .collect();
        assert!(!seqs.is_empty(), "{trail}");
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "{trail} keeps its order"
        );
    }
}

/// A database outage in the middle of the work (the link to PostgreSQL cut): the host stops
/// acting once its lease can no longer be renewed, nothing is sent while the database is
/// down, and once it is back the host resumes by itself and completes everything, sending
/// nothing twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_database_outage_stops_the_host_and_it_resumes_by_itself() {
    let sim = start_sim(43, 4).await;
    sim.inject(
        Fault::new(FaultKind::Delay, u32::MAX)
            .on("/rest/")
            .delay_ms(10),
    );
    let setup = Setup::examples();
    let plugins = subscriptions_of(&sim, &setup).await;
    let db = Arc::new(TestDatabase::postgres());
    let proxy = CutProxy::start(postgres_addr(&db)).await;
    let host = ServiceEnv::fleet_host(&sim, &setup, &db, "solo", TIMING, Some(proxy.addr()));
    let mut child = host.spawn_run(0);
    let store = db.open();
    let pending_work = || {
        let unhandled = unhandled_by(&plugins, &store, &sim.malops()).len();
        let unresolved = store.unresolved_actions().expect("the ledger").len();
        (unhandled, unresolved)
    };
    wait_until("the first Malops handled", Duration::from_secs(40), || {
        pending_work() == (0, 0)
    })
    .await;

    proxy.cut();
    for _ in 0..3 {
        sim.add_malop();
    }
    // The host stops acting: its log says the database cannot be reached, and the lease it
    // held runs out.
    wait_until(
        "the host to notice the outage",
        Duration::from_secs(20),
        || {
            std::fs::read_to_string(host.log_path(0))
                .is_ok_and(|log| log.contains("heartbeat failed"))
        },
    )
    .await;
    let (_, leases) = store.fleet().unwrap();
    let lease_end = leases.iter().map(|l| l.expires_at_ms).max().unwrap_or(0);
    wait_until("the lease to run out", Duration::from_secs(10), || {
        riposte_domain::now_ms() > lease_end
    })
    .await;
    let sent_before = carried(&sim);
    let requests_before = sim.requests().len();
    // While the database is down, the new Malops wait: two poll intervals and more pass
    // without a request to the server.
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        assert_eq!(
            carried(&sim),
            sent_before,
            "nothing is sent while the database is down"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        sim.requests().len(),
        requests_before,
        "no cycle runs without the database"
    );
    assert!(
        pending_work().0 > 0,
        "the new Malops are still to be handled"
    );

    proxy.restore();
    wait_until(
        "everything handled once the database is back",
        Duration::from_secs(60),
        || pending_work() == (0, 0),
    )
    .await;
    assert!(carried(&sim) > sent_before, "the work resumed");
    assert_no_action_twice(&sim);
    let pid = child.id().expect("the host runs").to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .expect("the host stops within 15 s")
        .expect("reaped");
    assert!(status.success(), "{status}:\n{}", host.log_tail(0));
}

/// Two operators approve the same action at once, each on a different host: one approval
/// wins, the other is refused, and the action is carried out exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_approvals_on_two_hosts_execute_the_action_once() {
    const ISOLATE: &str = "/rest/monitor/global/commands/isolate";
    let sim = start_sim(7, 12).await;
    let setup =
        Setup::new(vec![PluginSpec::ransomware_containment()]).approvals(&["isolate"], 3600);
    let db = Arc::new(TestDatabase::postgres());
    let hosts: Vec<ServiceEnv> = ["a", "b"]
        .iter()
        .map(|id| ServiceEnv::fleet_host(&sim, &setup, &db, id, TIMING, None))
        .collect();
    let mut children: Vec<Child> = hosts.iter().map(|h| h.spawn_run(0)).collect();
    let store = db.open();
    wait_until(
        "an isolation awaiting approval",
        Duration::from_secs(40),
        || {
            !store
                .list_pending(riposte_domain::now_ms())
                .unwrap()
                .is_empty()
        },
    )
    .await;
    let pending = store.list_pending(riposte_domain::now_ms()).unwrap();
    let id = pending[0].action.id.as_str().to_owned();
    assert_eq!(
        sim.requests().iter().filter(|r| r.path == ISOLATE).count(),
        0,
        "nothing sent before the approval"
    );

    let approve = |host: &ServiceEnv| {
        let mut command = tokio::process::Command::new(riposte_e2e::riposte_bin());
        command
            .args(["approvals", "approve", "--config"])
            .arg(&host.config)
            .arg(&id)
            .output()
    };
    let (first, second) = tokio::join!(approve(&hosts[0]), approve(&hosts[1]));
    let outputs = [first.unwrap(), second.unwrap()];
    let approved = outputs.iter().filter(|o| o.status.success()).count();
    assert_eq!(approved, 1, "one approval wins: {outputs:?}");
    let refused = outputs.iter().find(|o| !o.status.success()).unwrap();
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("already"),
        "{refused:?}"
    );

    let action = riposte_store::ActionId::parse(&id).unwrap();
    wait_until(
        "the approved isolation carried out",
        Duration::from_secs(30),
        || store.get_action(&action).unwrap().state == ActionState::Succeeded,
    )
    .await;
    let isolations = actions_carried_out(&sim)
        .iter()
        .filter(|(path, _)| path == ISOLATE)
        .count();
    assert_eq!(isolations, 1, "the approved isolation is carried out once");
    assert_no_action_twice(&sim);

    // `riposte status` on either host shows both, and which one holds the poller lease.
    let status = tokio::process::Command::new(riposte_e2e::riposte_bin())
        .args(["status", "--json", "--config"])
        .arg(&hosts[1].config)
        .output()
        .await
        .unwrap();
    assert!(status.status.success(), "{status:?}");
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let shown = status["hosts"].as_array().expect("hosts");
    let ids: Vec<&str> = shown.iter().map(|h| h["host"].as_str().unwrap()).collect();
    assert_eq!(ids, ["a", "b"], "{status}");
    let holders: Vec<_> = shown
        .iter()
        .filter(|h| h["holds_lease"] == POLLER_LEASE)
        .collect();
    assert_eq!(holders.len(), 1, "{status}");
    assert!(
        shown
            .iter()
            .all(|h| h["seconds_since_heartbeat"].as_i64() < Some(10))
    );
    for child in &mut children {
        child.start_kill().unwrap();
        child.wait().await.unwrap();
    }
}

fn role_gauges(metrics: &riposte_metrics::Metrics) -> Vec<String> {
    metrics
        .render()
        .lines()
        .filter(|l| l.starts_with("riposte_fleet_role{") && l.ends_with(" 1"))
        .map(str::to_owned)
        .collect()
}

/// The `fleet_role` metric follows the heartbeats: acting while the host holds the lease,
/// unreachable while the database is cut off (and acting is refused), acting again when it
/// returns; one role at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_role_metric_follows_the_database() {
    let sim = start_sim(5, 1).await;
    let db = Arc::new(TestDatabase::postgres());
    let proxy = CutProxy::start(postgres_addr(&db)).await;
    let setup = Setup::new(vec![PluginSpec::reputation_feed()]);
    let host = ServiceEnv::fleet_host(&sim, &setup, &db, "m", TIMING, Some(proxy.addr()));
    let service = host.service(&sim).await;
    let membership = service.membership().clone();
    assert!(membership.may_act(), "{:?}", membership.role());
    assert_eq!(
        role_gauges(&host.metrics),
        [r#"riposte_fleet_role{role="acting"} 1"#]
    );

    proxy.cut();
    let (role, _) = membership.beat().await;
    assert_eq!(role, riposte_service::Role::Unreachable);
    assert!(!membership.may_act());
    assert_eq!(
        role_gauges(&host.metrics),
        [r#"riposte_fleet_role{role="unreachable"} 1"#]
    );

    proxy.restore();
    wait_until(
        "the heartbeat to reach the database again",
        Duration::from_secs(15),
        || membership.may_act(),
    )
    .await;
    assert_eq!(
        role_gauges(&host.metrics),
        [r#"riposte_fleet_role{role="acting"} 1"#]
    );
}
