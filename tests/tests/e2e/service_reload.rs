//! Reload without a restart (issue 17): plugins added, removed and replaced by broken ones
//! while the service runs, in process (`Service::reload`) and through SIGHUP to the real
//! `riposte run`. No invocation may be lost (every subscribed Malop handled by every plugin
//! configured at the time) or doubled (one `on-malop` per plugin and Malop update), and a
//! refused reload keeps the running set.

use riposte_domain::PluginName;
use riposte_e2e::service_support::{
    PluginSpec, ServiceEnv, Setup, assert_no_action_twice, audit_calls, audit_calls_so_far,
    audit_records, run_until_settled, start_sim, subscriptions, unhandled, unhandled_by,
    wait_for_process,
};
use riposte_service::Service;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

fn names(service: &Service) -> Vec<String> {
    service
        .plugins()
        .iter()
        .map(|p| p.policy.name.to_string())
        .collect()
}

/// `on-malop` invocations in the audit trail, per (plugin, Malop).
fn invocations(audit: &Path) -> BTreeMap<(String, String), usize> {
    let mut seen = BTreeMap::new();
    for record in audit_calls(audit, "invoke:on-malop") {
        let key = (
            record["plugin"].as_str().unwrap_or_default().to_owned(),
            record["malop"].as_str().unwrap_or_default().to_owned(),
        );
        *seen.entry(key).or_insert(0) += 1;
    }
    seen
}

fn assert_each_invoked_once(audit: &Path) {
    let doubled: Vec<_> = invocations(audit)
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .collect();
    assert!(doubled.is_empty(), "invoked more than once: {doubled:?}");
}

/// The configuration at `path` with the pin of plugin `name` replaced by another digest.
fn break_pin(path: &Path, name: &str) {
    let text = std::fs::read_to_string(path).expect("the configuration reads");
    let table = format!("name = {name:?}\n");
    let at = text.find(&table).expect("the plugin is configured");
    let pin = at
        + text[at..]
            .find("sha256 = \"")
            .expect("the plugin is pinned")
        + 10;
    let mut broken = text.clone();
    broken.replace_range(pin..pin + 64, &"0".repeat(64));
    std::fs::write(path, broken).expect("the configuration writes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_added_removed_and_broken_by_a_reload_lose_and_double_no_invocation() {
    let sim = start_sim(1701, 8).await;
    let ransomware = PluginSpec::ransomware_containment();
    let feed = PluginSpec::reputation_feed();
    let env = ServiceEnv::new(&sim, &Setup::new(vec![ransomware.clone()]));
    let mut service = env.service(&sim).await;
    run_until_settled(&service, &sim, 10).await;

    // Added: the new plugin takes every Malop it subscribes to, the old one repeats nothing.
    env.reconfigure(&sim, &Setup::new(vec![ransomware.clone(), feed.clone()]));
    let report = service
        .reload(&env.config)
        .await
        .expect("the reload applies");
    assert_eq!(report.added, vec![PluginName::new("reputation-feed")]);
    assert_eq!(
        report.unchanged,
        vec![PluginName::new("ransomware-containment")]
    );
    assert!(report.removed.is_empty() && report.changed.is_empty());
    assert!(report.need_restart.is_empty(), "{:?}", report.need_restart);
    // The instance pool's setting is the engine's: it applies at the next restart.
    let text = std::fs::read_to_string(&env.config).unwrap();
    assert!(text.contains("[service]\n"), "{text}");
    let resident = text.replacen("[service]\n", "[service]\nkeep_resident_bytes = 0\n", 1);
    std::fs::write(&env.config, resident).unwrap();
    let report = service
        .reload(&env.config)
        .await
        .expect("the reload applies");
    assert_eq!(report.need_restart, ["keep_resident_bytes"]);
    assert_eq!(report.unchanged.len(), 2, "{report:?}");
    run_until_settled(&service, &sim, 10).await;
    assert!(
        invocations(&env.audit)
            .keys()
            .any(|(plugin, _)| plugin == "reputation-feed"),
        "the added plugin ran"
    );

    // Replaced by a broken one (its pin no longer matches), then a configuration that is no
    // TOML: both refused with the usual messages, and the running set stays.
    break_pin(&env.config, "reputation-feed");
    let refused = format!("{:#}", service.reload(&env.config).await.unwrap_err());
    assert!(refused.contains("reputation-feed"), "{refused}");
    assert!(refused.contains("sha256"), "{refused}");
    std::fs::write(&env.config, "[service\npoll_interval_secs = 1\n").unwrap();
    let refused = format!("{:#}", service.reload(&env.config).await.unwrap_err());
    assert!(refused.contains("riposte.toml"), "{refused}");
    assert!(refused.contains("riposte.toml:1:"), "{refused}");
    // A configuration that moves the state database: refused, the running set stays.
    env.reconfigure(&sim, &Setup::new(vec![ransomware.clone(), feed.clone()]));
    let text = std::fs::read_to_string(&env.config).unwrap();
    let line = format!("database = {:?}", env.sqlite_path().display().to_string());
    assert!(text.contains(&line), "{text}");
    std::fs::write(
        &env.config,
        text.replace(&line, "").replace(
            "[service.audit]",
            "[service.database]\npath = \"elsewhere.db\"\n\n[service.audit]",
        ),
    )
    .unwrap();
    let refused = format!("{:#}", service.reload(&env.config).await.unwrap_err());
    assert!(
        refused.contains("elsewhere.db") && refused.contains("cannot change without a restart"),
        "{refused}"
    );
    assert_eq!(
        names(&service),
        ["ransomware-containment", "reputation-feed"]
    );
    for _ in 0..3 {
        sim.add_malop();
    }
    run_until_settled(&service, &sim, 10).await;

    // Removed: the plugin takes no more work, though it would have taken some.
    let before_removal = subscriptions(&service);
    env.reconfigure(&sim, &Setup::new(vec![feed.clone()]));
    let report = service
        .reload(&env.config)
        .await
        .expect("the reload applies");
    assert_eq!(
        report.removed,
        vec![PluginName::new("ransomware-containment")]
    );
    let invoked_before = invocations(&env.audit);
    let known: Vec<String> = sim.malops().into_iter().map(|m| m.guid).collect();
    for _ in 0..6 {
        sim.add_malop();
    }
    run_until_settled(&service, &sim, 10).await;
    let fresh: Vec<_> = sim
        .malops()
        .into_iter()
        .filter(|m| !known.contains(&m.guid))
        .collect();
    let store = env.store();
    let wanted_by_removed = unhandled_by(&before_removal, &store, &fresh)
        .into_iter()
        .filter(|(plugin, _)| plugin == "ransomware-containment")
        .count();
    assert!(
        wanted_by_removed > 0,
        "the new Malops include some the removed plugin subscribes to"
    );
    let removed_runs = |seen: &BTreeMap<(String, String), usize>| {
        seen.iter()
            .filter(|((plugin, _), _)| plugin == "ransomware-containment")
            .map(|(_, n)| n)
            .sum::<usize>()
    };
    assert_eq!(
        removed_runs(&invocations(&env.audit)),
        removed_runs(&invoked_before)
    );

    assert_each_invoked_once(&env.audit);
    assert_no_action_twice(&sim);
    assert_eq!(audit_calls(&env.audit, "config-reloaded").len(), 3);
    assert_eq!(audit_calls(&env.audit, "config-reload-refused").len(), 3);
}

fn recorded(audit: &Path, call: &str) -> usize {
    audit_calls_so_far(audit, call).len()
}

fn signal(child: &tokio::process::Child, name: &str) {
    let pid = child.id().expect("the process runs").to_string();
    let sent = std::process::Command::new("kill")
        .args([&format!("-{name}"), &pid])
        .status()
        .expect("kill runs");
    assert!(sent.success(), "kill -{name} {pid}");
}

each_backend! {
    async fn sighup_reloads_the_running_service_and_a_broken_configuration_keeps_it_running(db) {
        let sim = start_sim(1702, 6).await;
        let ransomware = PluginSpec::ransomware_containment();
        let feed = PluginSpec::reputation_feed();
        let env = ServiceEnv::on(db, &sim, &Setup::new(vec![ransomware.clone()]));
        let mut child = env.spawn_run(0);
        let limit = Duration::from_secs(40);
        wait_for_process(&mut child, &env, 0, "a first cycle", limit, || {
            recorded(&env.audit, "poll-cycle") > 0
        })
        .await;

        env.reconfigure(&sim, &Setup::new(vec![ransomware, feed]));
        signal(&child, "HUP");
        wait_for_process(&mut child, &env, 0, "the reload", limit, || {
            recorded(&env.audit, "config-reloaded") == 1
        })
        .await;
        let cycles = recorded(&env.audit, "poll-cycle");
        wait_for_process(
            &mut child,
            &env,
            0,
            "a cycle after the reload",
            limit,
            || recorded(&env.audit, "poll-cycle") > cycles,
        )
        .await;

        break_pin(&env.config, "reputation-feed");
        signal(&child, "HUP");
        wait_for_process(&mut child, &env, 0, "the refusal", limit, || {
            recorded(&env.audit, "config-reload-refused") == 1
        })
        .await;
        sim.add_malop();
        // The cycle in flight may have polled before the Malop came: wait for the one after.
        let cycles = recorded(&env.audit, "poll-cycle") + 1;
        wait_for_process(
            &mut child,
            &env,
            0,
            "a whole cycle after the refusal",
            limit,
            || recorded(&env.audit, "poll-cycle") > cycles,
        )
        .await;

        signal(&child, "TERM");
        let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
            .await
            .expect("the service stops within 15 s of SIGTERM")
            .expect("the process is reaped");
        assert!(status.success(), "{status}:\n{}", env.log_tail(0));
        let log = std::fs::read_to_string(env.log_path(0)).unwrap();
        assert!(
            log.contains("configuration reloaded"),
            "{}",
            env.log_tail(0)
        );
        assert!(
            log.contains("the running plugins stay"),
            "{}",
            env.log_tail(0)
        );

        // Both plugins ran on every Malop they subscribe to; nothing ran or was sent twice.
        let loaded = audit_records(&env.audit)
            .into_iter()
            .filter(|r| r["call"] == "plugin-loaded")
            .map(|r| r["plugin"].as_str().unwrap_or_default().to_owned())
            .collect::<Vec<_>>();
        assert_eq!(loaded, ["ransomware-containment", "reputation-feed"]);
        assert_each_invoked_once(&env.audit);
        assert_no_action_twice(&sim);
        let feed_runs = invocations(&env.audit)
            .keys()
            .filter(|(plugin, _)| plugin == "reputation-feed")
            .count();
        assert!(feed_runs > 0, "the plugin added by SIGHUP ran");
        env.reconfigure(
            &sim,
            &Setup::new(vec![
                PluginSpec::ransomware_containment(),
                PluginSpec::reputation_feed(),
            ]),
        );
        let service = env.service(&sim).await;
        assert_eq!(
            unhandled(&service, &env.store(), &sim),
            Vec::<(String, String)>::new()
        );
    }
}
