//! Syslog-triggered evaluation (issue 15, section 1) through the real `riposte run`: a CEF
//! `Malop Created` event makes the service read that Malop through the API and evaluate it
//! at once, long before its next poll; the same Malop seen again by a second event and by a
//! later poll is not evaluated again; an event naming a Malop the server does not know, or
//! no Malop at all, does nothing.

use riposte_domain::MalopId;
use riposte_e2e::service_support::{
    PluginSpec, ServiceEnv, Setup, add_ransomware_malop, assert_no_action_twice,
    audit_calls_so_far, riposte_cli, start_sim, wait_for_process,
};
use riposte_sim::SimHandle;
use riposte_store::ActionFilter;
use riposte_store::prelude::*;
use riposte_store::testing::TestDatabase;
use riposte_syslog::MalopEvent;
use riposte_syslog::format::{CefMalopEvent, CefStyle};
use std::path::Path;
use std::time::{Duration, SystemTime};
use tokio::io::AsyncWriteExt;

const PLUGIN: &str = "ransomware-containment";
const LIMIT: Duration = Duration::from_secs(60);

/// A loopback port free a moment ago (bound, then released for the service to take).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// A service environment polling once an hour, with the syslog listener on `port`.
fn env_with_syslog(db: TestDatabase, sim: &SimHandle, port: u16) -> ServiceEnv {
    let mut setup = Setup::new(vec![PluginSpec::ransomware_containment()]);
    setup.poll_interval_secs = 3600;
    let env = ServiceEnv::on(db, sim, &setup);
    let mut text = std::fs::read_to_string(&env.config).expect("the configuration reads");
    // Remediations are followed without a pause (the simulator settles them at once).
    text.push_str(&format!(
        "\n[service.follow]\nfirst_poll_secs = 0\nmax_poll_interval_secs = 0\n\
         \n[service.syslog]\nenabled = true\ntcp_listen = \"127.0.0.1:{port}\"\n\
         allowed_sources = [\"127.0.0.1\"]\ncoalesce_interval_ms = 50\n"
    ));
    std::fs::write(&env.config, text).expect("the configuration writes");
    env
}

fn recorded(audit: &Path, call: &str) -> Vec<serde_json::Value> {
    audit_calls_so_far(audit, call)
}

/// `riposte run` polling once an hour with the syslog listener on a free port, after its
/// first cycle.
async fn run_with_syslog(
    db: TestDatabase,
    sim: &SimHandle,
) -> (u16, ServiceEnv, tokio::process::Child) {
    let port = free_port();
    let env = env_with_syslog(db, sim, port);
    let mut child = env.spawn_run(0);
    wait_for_process(&mut child, &env, 0, "a first cycle", LIMIT, || {
        !recorded(&env.audit, "poll-cycle").is_empty()
    })
    .await;
    (port, env, child)
}

/// `on-malop` invocations of the plugin on `malop` in the audit trail.
fn invocations(audit: &Path, malop: &MalopId) -> usize {
    recorded(audit, "invoke:on-malop")
        .iter()
        .filter(|r| r["plugin"] == PLUGIN && r["malop"] == malop.as_str())
        .count()
}

/// The ledger's actions about `malop`.
fn actions(env: &ServiceEnv, malop: &MalopId) -> usize {
    env.store()
        .list_actions(&ActionFilter {
            malop_id: Some(malop.clone()),
            ..ActionFilter::default()
        })
        .expect("the ledger answers")
        .len()
}

/// Writes `messages` to the listener, newline-framed, on one connection.
async fn send(port: u16, messages: &[String]) {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("the syslog listener accepts");
    for message in messages {
        stream
            .write_all(format!("{message}\n").as_bytes())
            .await
            .expect("the event is written");
    }
    stream.shutdown().await.expect("the connection closes");
}

/// A `Malop Created` event as a Cybereason server writes it.
fn created(malop: &str) -> String {
    let id = riposte_syslog::MalopId::parse(malop).expect("a Malop id's shape");
    CefMalopEvent::new(id, MalopEvent::Created, CefStyle::Vendor, SystemTime::now())
        .with_field("suser", "CORP\\nobody")
        .expect("a CEF field")
        .to_cef()
}

async fn stop(child: &mut tokio::process::Child, env: &ServiceEnv) {
    let pid = child.id().expect("the process runs").to_string();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(sent.success());
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .expect("the service stops within 15 s of SIGTERM")
        .expect("the process is reaped");
    assert!(status.success(), "{status}:\n{}", env.log_tail(0));
}

each_backend! {
    async fn a_malop_event_is_acted_on_before_the_next_poll_and_only_once(db) {
        let sim = start_sim(1501, 4).await;
        let (port, env, mut child) = run_with_syslog(db, &sim).await;
        let log = std::fs::read_to_string(env.log_path(0)).unwrap_or_default();
        assert!(
            log.contains("listening for the server's syslog Malop events")
                && log.contains(&format!("127.0.0.1:{port}")),
            "the listener's address is logged:\n{}",
            env.log_tail(0)
        );

        let malop = add_ransomware_malop(&sim);
        send(port, &[created(malop.as_str())]).await;
        wait_for_process(
            &mut child,
            &env,
            0,
            "the action on the hinted Malop",
            LIMIT,
            || invocations(&env.audit, &malop) > 0 && actions(&env, &malop) > 0,
        )
        .await;
        assert_eq!(
            recorded(&env.audit, "poll-cycle").len(),
            1,
            "the event, not a poll, brought the Malop"
        );
        let acted = actions(&env, &malop);
        // The console's counts of the plugin's activity come to include the hinted
        // invocation and its allowed actions: they are written once the evaluation ended,
        // after its audit records and actions, which is what was waited for above.
        let audited = recorded(&env.audit, "invoke:on-malop")
            .iter()
            .filter(|r| r["plugin"] == PLUGIN)
            .count();
        let mine = || -> Vec<_> {
            let activity = env.store().activity_since(0).expect("the activity reads");
            activity.into_iter().filter(|a| a.plugin.as_str() == PLUGIN).collect()
        };
        let invoked = |rows: &[riposte_store::PluginActivity]| -> usize {
            rows.iter().map(|a| a.invocations as usize).sum()
        };
        wait_for_process(&mut child, &env, 0, "the hinted invocation's activity", LIMIT, || {
            invoked(&mine()) >= audited
        })
        .await;
        let mine = mine();
        assert_eq!(invoked(&mine), audited, "every audited invocation counted once: {mine:?}");
        let allowed: u64 = mine.iter().map(|a| a.decisions.allowed).sum();
        assert!(allowed >= acted as u64, "{allowed} allowed for {acted} actions: {mine:?}");
        assert!(mine.iter().all(|a| a.last_invocation_ms.is_some()));

        // The same event again: the Malop is read again, and found handled at this update.
        let hinted = recorded(&env.audit, "hint-evaluation").len();
        send(port, &[created(malop.as_str())]).await;
        wait_for_process(
            &mut child,
            &env,
            0,
            "the second event's evaluation",
            LIMIT,
            || recorded(&env.audit, "hint-evaluation").len() > hinted,
        )
        .await;
        assert_eq!(invocations(&env.audit, &malop), 1);
        assert_eq!(actions(&env, &malop), acted);
        stop(&mut child, &env).await;

        // A poll sees the same Malop update: nothing is evaluated or sent again.
        let config = env.config.display().to_string();
        let (ok, _, stderr) = riposte_cli(&["run", "--config", &config, "--once"]).await;
        assert!(ok, "riposte run --once: {stderr}");
        assert_eq!(recorded(&env.audit, "poll-cycle").len(), 2);
        assert_eq!(invocations(&env.audit, &malop), 1);
        assert_eq!(actions(&env, &malop), acted);
        assert_no_action_twice(&sim);
        riposte_audit::verify(&env.audit).expect("the audit trail verifies");
    }
}

each_backend! {
    async fn forged_events_for_unknown_malops_or_none_do_nothing(db) {
        let sim = start_sim(1502, 4).await;
        let (port, env, mut child) = run_with_syslog(db, &sim).await;
        let requests = sim.requests().len();
        let invoked = recorded(&env.audit, "invoke:on-malop").len();

        // A well-formed event for a Malop the server does not have, and garbage around it.
        let unknown = "11.1234567890123456789";
        assert!(sim.malops().iter().all(|m| m.guid != unknown));
        send(
            port,
            &[
                "CEF:0|Cybereason|Cybereason|1.0|1|Malop Created|5|cs1=../../etc cs1Label=malopId"
                    .to_owned(),
                "\u{1}\u{2}binary\u{7f}".to_owned(),
                created(unknown),
            ],
        )
        .await;
        wait_for_process(
            &mut child,
            &env,
            0,
            "the forged event's evaluation",
            LIMIT,
            || !recorded(&env.audit, "hint-evaluation").is_empty(),
        )
        .await;
        let evaluation = &recorded(&env.audit, "hint-evaluation")[0];
        assert!(
            evaluation.to_string().contains("\"malops_seen\":0"),
            "{evaluation}"
        );
        assert_eq!(recorded(&env.audit, "invoke:on-malop").len(), invoked);
        let since: Vec<_> = sim.requests()[requests..]
            .iter()
            .map(|r| format!("{} {}", r.method, r.path))
            .collect();
        assert!(
            since.iter().all(|r| r == "POST /rest/crimes/unified"),
            "only the Malop was looked up: {since:?}"
        );
        assert!(!since.is_empty(), "the Malop was looked up");
        assert_eq!(
            child.try_wait().expect("polling the process"),
            None,
            "the service still runs"
        );
        stop(&mut child, &env).await;
        assert_no_action_twice(&sim);
    }
}

each_backend! {
    /// A flood of forged events, each naming a distinct Malop of a valid shape, passes the
    /// per-Malop coalescing (and here the source's rate limit, raised); the run loop reads
    /// them in bites of at most 64, paced to 100 bites a second after a burst of 50, so the
    /// customer's server sees a bounded rate of look-ups however many events come.
    async fn a_flood_of_forged_malop_ids_is_looked_up_at_a_bounded_rate(db) {
        let sim = start_sim(1503, 2).await;
        let port = free_port();
        let env = env_with_syslog(db, &sim, port);
        // The [service.syslog] table is the file's last.
        let text = std::fs::read_to_string(&env.config).expect("the configuration reads")
            + "rate_per_source = 100000\nburst_per_source = 100000\n";
        std::fs::write(&env.config, text).expect("the configuration writes");
        let mut child = env.spawn_run(0);
        wait_for_process(&mut child, &env, 0, "a first cycle", LIMIT, || {
            !recorded(&env.audit, "poll-cycle").is_empty()
        })
        .await;
        let requests = sim.requests().len();
        let forged: Vec<String> = (0..8000u64)
            .map(|i| format!("11.{}", 1_000_000_000_000_000_000 + i))
            .collect();
        let events: Vec<String> = forged.iter().map(|id| created(id)).collect();
        send(port, &events).await;
        // Every forged id was looked up (as a MalopProcess id).
        let looked_up = |sim: &SimHandle| {
            sim.requests()[requests..]
                .iter()
                .filter(|r| r.path == "/rest/crimes/unified" && r.body.contains("guidList"))
                .filter(|r| r.body.contains("\"MalopProcess\""))
                .map(|r| (r.received_us, r.body.clone()))
                .collect::<Vec<_>>()
        };
        // Each forged id once in a look-up (the ids share a prefix no real one has).
        let ids_in = |bites: &[(u64, String)]| -> usize {
            bites.iter().map(|(_, b)| b.matches("\"11.1000000").count()).sum()
        };
        wait_for_process(&mut child, &env, 0, "every forged id looked up", LIMIT, || {
            ids_in(&looked_up(&sim)) >= forged.len()
        })
        .await;
        let bites = looked_up(&sim);
        let first = bites.first().expect("a look-up").0;
        let last = bites.last().expect("a look-up").0;
        let seconds = (last - first) as f64 / 1e6;
        // The rate limiter's bound over the span the server saw (+3 for the requests' own
        // delays around it).
        let bound = 50.0 + 100.0 * seconds + 3.0;
        assert!(
            (bites.len() as f64) <= bound,
            "{} bites in {seconds:.3} s (at most {bound:.1})",
            bites.len()
        );
        assert!(bites.len() >= 8000 / 64, "{} bites", bites.len());
        assert_eq!(child.try_wait().expect("polling the process"), None, "the service still runs");
        stop(&mut child, &env).await;
    }
}
