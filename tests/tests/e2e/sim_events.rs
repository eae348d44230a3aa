//! The simulator's own syslog events drive riposte (issue 15 §1): a Malop the simulator
//! creates is announced by its `Malop Created` event and contained by `riposte run` long
//! before the next poll; `riposte demo` shows that containment latency.

use riposte_e2e::riposte_bin;
use riposte_e2e::service_support::{
    PASSWORD, PluginSpec, ServiceEnv, Setup, USER, audit_calls_so_far, wait_for_process,
};
use riposte_sim::{MalopKind, MalopSpec, SimConfig, SimEventStyle, SimSyslog, Simulator};
use riposte_syslog::{Framing, SenderConfig, SenderTransport};
use std::time::{Duration, UNIX_EPOCH};

const LIMIT: Duration = Duration::from_secs(60);
const ISOLATE: &str = "/rest/monitor/global/commands/isolate";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malop_the_simulator_announces_is_contained_before_the_next_poll() {
    // The service's listener port, free a moment ago; the simulator's sender retries until
    // the service listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port();
    let mut sender = SenderConfig::new(SenderTransport::Tcp, format!("127.0.0.1:{port}"));
    sender.framing = Framing::Newline;
    sender.backoff_max_ms = 200;
    let sim = Simulator::start(SimConfig {
        seed: 1503,
        malops: 4,
        username: USER.into(),
        password: PASSWORD.into(),
        syslog: Some(SimSyslog {
            sender,
            style: SimEventStyle::Vendor,
        }),
        ..SimConfig::default()
    })
    .await
    .expect("the simulator starts");

    let mut setup = Setup::new(vec![PluginSpec::ransomware_containment()]);
    setup.poll_interval_secs = 3600;
    let env = ServiceEnv::new(&sim, &setup);
    let mut config = std::fs::read_to_string(&env.config).expect("the configuration reads");
    // Remediations are followed without a pause (the simulator settles them at once), so the
    // first cycle ends quickly.
    config.push_str(&format!(
        "\n[service.follow]\nfirst_poll_secs = 0\nmax_poll_interval_secs = 0\n\
         \n[service.syslog]\nenabled = true\ntcp_listen = \"127.0.0.1:{port}\"\n\
         allowed_sources = [\"127.0.0.1\"]\n"
    ));
    std::fs::write(&env.config, config).expect("the configuration writes");
    let polls = || audit_calls_so_far(&env.audit, "poll-cycle").len();
    let mut child = env.spawn_run(0);
    wait_for_process(&mut child, &env, 0, "a first cycle", LIMIT, || polls() > 0).await;

    let new = sim
        .create_malop(MalopSpec {
            kind: Some(MalopKind::Ransomware),
            machines_online: true,
            ..MalopSpec::default()
        })
        .expect("a Malop");
    let isolation = || {
        sim.requests()
            .into_iter()
            .find(|r| r.method == "POST" && r.path == ISOLATE && r.body.contains(&new.id))
    };
    wait_for_process(
        &mut child,
        &env,
        0,
        "the isolation of the announced Malop's machines",
        LIMIT,
        || isolation().is_some(),
    )
    .await;
    assert_eq!(polls(), 1, "the event, not a poll, brought the Malop");
    let created_us = new
        .created_at
        .duration_since(UNIX_EPOCH)
        .expect("after the epoch")
        .as_micros() as u64;
    let request = isolation().expect("found above");
    assert!(
        request.received_us >= created_us,
        "the request came after the creation"
    );
    let stats = sim.syslog_stats().expect("the simulator sends events");
    assert_eq!((stats.queued, stats.dropped), (1, 0));
    assert_eq!(stats.sender.written, 1);
}

/// The number in `containment latency    12.3 ms  (...)`.
fn latency_ms(stdout: &str) -> Option<f64> {
    stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("containment latency"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_prints_the_containment_latency_of_a_new_malop() {
    let workdir = tempfile::tempdir().expect("a temporary directory");
    let run = tokio::process::Command::new(riposte_bin())
        .args(["demo", "--workdir"])
        .arg(workdir.path())
        .env("NO_COLOR", "1")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(180), run)
        .await
        .expect("the demo finishes within 3 minutes")
        .expect("the demo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let latency = latency_ms(&stdout)
        .unwrap_or_else(|| panic!("no containment latency in the demo's output:\n{stdout}"));
    assert!(
        latency < 2000.0,
        "contained within the 2 s poll interval: {latency} ms\n{stdout}"
    );
    assert!(
        stdout.contains("(syslog event to kill request; polling alone: up to 2 s)"),
        "{stdout}"
    );
    // The one-time console user is audited as `riposte users add` audits a user, by the OS
    // account that ran the demo; its password is not in the trail.
    let (_, user, password) = stderr
        .lines()
        .find_map(crate::console_browser::console_login)
        .unwrap_or_else(|| panic!("the demo prints its console's login:\n{stderr}"));
    let trail = std::fs::read_to_string(workdir.path().join("audit.jsonl")).expect("the trail");
    assert!(!trail.contains(&password), "the password is never audited");
    let added: Vec<serde_json::Value> = trail
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("a record"))
        .filter(|r| r["call"] == "console-user-added")
        .collect();
    assert_eq!(added.len(), 1, "{added:#?}");
    let arguments = &added[0]["arguments"];
    assert_eq!(arguments["user"], user.as_str(), "{arguments}");
    assert_eq!(arguments["role"], "admin", "{arguments}");
    assert_eq!(
        arguments["by"],
        crate::service_trust::os_account().as_str(),
        "{arguments}"
    );
    let note = arguments["note"].as_str().unwrap_or_default();
    assert!(
        note.contains("the demo's one-time console login"),
        "{arguments}"
    );
}
