//! Exactly once across crashes (G4), with the real service process: `riposte run` is killed
//! with SIGKILL in the middle of a cycle, again and again at different points (while a
//! request is in flight, and just after the simulator carried an action out), and restarted
//! on the same database each time; at the end it runs until everything is handled and is
//! stopped with SIGTERM. Every seeded Malop must be handled by every plugin subscribed to it,
//! and no action may have reached the simulator twice (read from its request log).

use riposte_e2e::service_support::{
    KillAt, ServiceEnv, Setup, actions_carried_out, assert_no_action_twice, audit_records,
    start_sim, subscriptions, unhandled_by, wait_for_process,
};
use riposte_sim::{Fault, FaultKind};
use riposte_store::prelude::*;
use riposte_store::{ActionFilter, ActionState};
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

const KILLS: [KillAt; 7] = [
    KillAt::Requests(3),
    KillAt::Requests(12),
    KillAt::Actions(1),
    KillAt::Actions(4),
    KillAt::Requests(60),
    KillAt::Actions(10),
    KillAt::Actions(20),
];

each_backend! {
    async fn sigkill_mid_cycle_again_and_again_then_every_malop_is_handled_and_no_action_sent_twice(db) {
        let sim = start_sim(21, 12).await;
        // Every request takes a little longer, so that a cycle spans many kill points.
        sim.inject(
            Fault::new(FaultKind::Delay, u32::MAX)
                .on("/rest/")
                .delay_ms(10),
        );
        let env = ServiceEnv::on(db, &sim, &Setup::examples());
        let plugins = {
            let service = env.service(&sim).await;
            subscriptions(&service)
        };
        let pending_work = || {
            let store = env.store();
            let unhandled = unhandled_by(&plugins, &store, &sim.malops()).len();
            let unresolved = store.unresolved_actions().expect("the ledger").len();
            (unhandled, unresolved)
        };

        let mut left_unresolved = 0;
        for (run, kill_at) in KILLS.iter().enumerate() {
            if run > 0 {
                // New work for every run, so that each kill lands in a busy cycle.
                sim.add_malop();
            }
            let mark = KillAt::mark(&sim);
            let mut child = env.spawn_run(run);
            let what = format!("{kill_at:?}");
            wait_for_process(
                &mut child,
                &env,
                run,
                &what,
                Duration::from_secs(20),
                || kill_at.reached(&sim, mark),
            )
            .await;
            child.start_kill().expect("SIGKILL");
            let status = child.wait().await.expect("the killed process is reaped");
            assert_eq!(status.signal(), Some(9), "run {run} died of SIGKILL");
            let (unhandled, unresolved) = pending_work();
            assert!(
                unhandled + unresolved > 0,
                "run {run} was killed ({kill_at:?}) with work left, i.e. mid-cycle"
            );
            left_unresolved += unresolved;
        }
        assert!(
            left_unresolved > 0,
            "some kills landed between an action's ledger entry and its final state"
        );

        // The last run goes on until everything is handled, then stops on SIGTERM.
        let run = KILLS.len();
        let mut child = env.spawn_run(run);
        wait_for_process(
            &mut child,
            &env,
            run,
            "every Malop handled and every action settled",
            Duration::from_secs(40),
            || pending_work() == (0, 0),
        )
        .await;
        let pid = child.id().expect("the process runs");
        let term = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("kill -TERM");
        assert!(term.success());
        let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
            .await
            .expect("the service stops within 15 s of SIGTERM")
            .expect("the process is reaped");
        assert!(
            status.success(),
            "a clean exit on SIGTERM ({status}):\n{}",
            env.log_tail(run)
        );

        let store = env.store();
        let malops = sim.malops();
        assert_eq!(malops.len(), 12 + KILLS.len() - 1);
        assert!(
            unhandled_by(&plugins, &store, &malops).is_empty(),
            "every Malop handled by every plugin subscribed to it"
        );
        let by_path = assert_no_action_twice(&sim);
        for path in [
            "/rest/remediate",
            "/rest/monitor/global/commands/isolate",
            "/rest/classification/update",
            "/rest/crimes/comment/",
            "/rest/crimes/status",
        ] {
            assert!(
                by_path.get(path).is_some_and(|n| *n > 0),
                "{path} was exercised: {by_path:?}"
            );
        }
        let actions = store.list_actions(&ActionFilter::default()).unwrap();
        let unsettled: Vec<_> = actions
            .iter()
            .filter(|a| !matches!(a.state, ActionState::Succeeded))
            .map(|a| (a.id.as_str(), a.state, a.last_error.clone()))
            .collect();
        assert!(
            unsettled.is_empty(),
            "every action succeeded: {unsettled:#?}"
        );
        // No request carried out that the ledger does not account for.
        assert!(
            actions_carried_out(&sim).len() <= actions.len(),
            "at most one request carried out per ledgered action"
        );
        // The audit trail survived the kills with its chain intact.
        assert!(!audit_records(&env.audit).is_empty());
    }
}

each_backend! {
    /// What a crash before a group commit of handled marks leaves behind: the actions of the
    /// group ledgered (and sent), its marks and the watermark not recorded. The Malops are
    /// offered again after the restart and nothing is sent twice; with `fsync = "batch"` the
    /// audit trail stays one intact chain.
    async fn handled_marks_lost_with_their_group_commit_offer_the_malops_again_and_send_nothing_twice(db) {
        let sim = start_sim(23, 10).await;
        let env = ServiceEnv::on(db, &sim, &Setup::examples());
        let text = std::fs::read_to_string(&env.config).expect("the test configuration reads");
        // Every Malop is polled again on the restart, whatever the watermark says.
        let text = text
            .replace("fsync = \"every-record\"", "fsync = \"batch\"")
            .replace(
                "overlap_window_secs = 60",
                "overlap_window_secs = 100000000",
            );
        std::fs::write(&env.config, text).expect("the test configuration writes");

        let service = env.service(&sim).await;
        riposte_e2e::service_support::run_until_settled(&service, &sim, 10).await;
        drop(service);
        let store = env.store();
        let ledgered = store.list_actions(&ActionFilter::default()).unwrap().len();
        let sent = actions_carried_out(&sim).len();
        assert!(sent > 0, "the examples acted on the seeded Malops");
        assert!(store.prune_handled(i64::MAX).unwrap() > 0, "marks to lose");

        let service = env.service(&sim).await;
        let plugins = subscriptions(&service);
        let report = service
            .run_cycle()
            .await
            .expect("the cycle after the restart");
        assert!(
            report.invocations > 0,
            "the Malops are offered again: {report:?}"
        );
        assert!(unhandled_by(&plugins, &store, &sim.malops()).is_empty());
        assert_no_action_twice(&sim);
        assert_eq!(actions_carried_out(&sim).len(), sent, "nothing sent again");
        assert_eq!(
            store.list_actions(&ActionFilter::default()).unwrap().len(),
            ledgered,
            "every request answered from the ledger"
        );
        service.sync_audit().unwrap();
        let records = audit_records(&env.audit);
        assert!(
            records
                .iter()
                .any(|r| r["result"]["sent_again"] == serde_json::json!(false)),
            "the repeated requests are audited as answered from the ledger"
        );
    }
}
