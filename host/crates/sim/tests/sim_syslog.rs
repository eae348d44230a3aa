//! The simulator's CEF Malop events (issue 15 §1): every Malop created or updated at run time
//! reaches a collector as `Malop Created` / `Malop Updated` with its id in `cs1`
//! (`cs1Label=malopId`), readable by riposte's own parser; a collector that is absent never
//! holds up or breaks the simulator, and what it could not send is counted.

use riposte_sim::{
    MalopKind, MalopSpec, SimConfig, SimEventStyle, SimHandle, SimSyslog, Simulator,
};
use riposte_syslog::parse::{HeaderKind, Parsed, parse_message};
use riposte_syslog::{Framing, MalopEvent, SenderConfig, SenderTransport};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};

const LIMIT: Duration = Duration::from_secs(10);

async fn sim_sending_to(sender: SenderConfig, style: SimEventStyle) -> SimHandle {
    Simulator::start(SimConfig {
        malops: 4,
        syslog: Some(SimSyslog { sender, style }),
        ..SimConfig::default()
    })
    .await
    .expect("the simulator starts")
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("an HTTP client")
}

/// One event as riposte's listener reads it: (Malop id, event, header).
fn parsed(line: &str) -> (String, MalopEvent, HeaderKind) {
    match parse_message(line.as_bytes()) {
        Ok(Parsed::Malop {
            malop_id,
            event,
            header,
        }) => (malop_id.into_string(), event, header),
        other => panic!("not a Malop event: {line:?}: {other:?}"),
    }
}

#[tokio::test]
async fn created_and_updated_malops_reach_a_tcp_collector() {
    let collector = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let address = collector.local_addr().expect("its address").to_string();
    let mut sender = SenderConfig::new(SenderTransport::Tcp, address);
    sender.framing = Framing::Newline;
    let sim = sim_sending_to(sender, SimEventStyle::Vendor).await;

    // Through the control API: a ransomware Malop with every machine online, then an update.
    let base = sim.base_url();
    let created: Value = http()
        .post(format!("{base}/sim/malops"))
        .json(&json!({"kind": "ransomware", "machinesOnline": true}))
        .send()
        .await
        .expect("the control call answers")
        .json()
        .await
        .expect("a JSON answer");
    let id = created["id"].as_str().expect("an id").to_owned();
    assert_eq!(created["kind"], "RANSOMWARE");
    let malop = sim
        .malops()
        .into_iter()
        .find(|m| m.guid == id)
        .expect("the Malop exists");
    assert_eq!(created["creationTime"], json!(malop.creation_time));
    assert!(created["createdAtUs"].as_u64().is_some_and(|t| t > 0));
    let machines = sim.machines();
    for guid in &malop.machines {
        let machine = machines
            .iter()
            .find(|m| &m.guid == guid)
            .expect("a machine");
        assert!(machine.online, "{} is online", machine.name);
    }
    let unknown = http()
        .post(format!("{base}/sim/malops"))
        .json(&json!({"machine": "NO-SUCH-HOST"}))
        .send()
        .await
        .expect("the control call answers");
    assert_eq!(
        unknown.status().as_u16(),
        404,
        "no Malop on an unknown machine"
    );
    let touched = http()
        .post(format!("{base}/sim/malops/{id}/touch"))
        .send()
        .await
        .expect("the control call answers");
    assert!(touched.status().is_success());
    // Through the handle: another Malop, of the next kind in order.
    let second = sim.add_malop();

    let (stream, _) = tokio::time::timeout(LIMIT, collector.accept())
        .await
        .expect("the simulator connects")
        .expect("accepted");
    let mut lines = BufReader::new(stream).lines();
    let mut events = Vec::new();
    while events.len() < 3 {
        let line = tokio::time::timeout(LIMIT, lines.next_line())
            .await
            .expect("an event arrives")
            .expect("readable")
            .expect("the connection stays open");
        if events.is_empty() {
            assert!(
                line.contains("|Malop|Malop Created|")
                    && line.contains("cs1Label=malopId")
                    && line.contains("cs3=RANSOMWARE"),
                "{line}"
            );
        }
        events.push(parsed(&line));
    }
    assert_eq!(
        events,
        vec![
            (id.clone(), MalopEvent::Created, HeaderKind::Rfc3164),
            (id, MalopEvent::Updated, HeaderKind::Rfc3164),
            (
                second.as_str().to_owned(),
                MalopEvent::Created,
                HeaderKind::Rfc3164
            ),
        ]
    );
    let stats = sim.syslog_stats().expect("the sender runs");
    assert_eq!((stats.queued, stats.dropped), (3, 0));
    sim.shutdown().await;
}

#[tokio::test]
async fn the_forwarder_style_over_udp_parses_as_rfc5424() {
    let collector = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let address = collector.local_addr().expect("its address").to_string();
    let sim = sim_sending_to(
        SenderConfig::new(SenderTransport::Udp, address),
        SimEventStyle::Forwarder,
    )
    .await;
    let machine = sim.machines()[2].clone();
    let new = sim
        .create_malop(MalopSpec {
            kind: Some(MalopKind::LateralMovement),
            machine: Some(machine.name.to_lowercase()),
            ..MalopSpec::default()
        })
        .expect("a Malop on a known machine");
    let malop = sim.malops().into_iter().find(|m| m.guid == new.id);
    assert_eq!(malop.map(|m| m.machines), Some(vec![machine.guid]));
    let mut datagram = vec![0u8; 65_536];
    let n = tokio::time::timeout(LIMIT, collector.recv(&mut datagram))
        .await
        .expect("a datagram arrives")
        .expect("readable");
    let line = std::str::from_utf8(&datagram[..n]).expect("text");
    assert!(line.contains("CEF:0|Cybereason|Cybereason|1.0|1|Malop Created|5|"));
    assert!(line.contains("cs2=MalopLogonSession"), "{line}");
    assert_eq!(
        parsed(line),
        (new.id, MalopEvent::Created, HeaderKind::Rfc5424)
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn an_absent_collector_neither_blocks_nor_breaks_the_simulator() {
    // A port nobody listens on (bound, then released).
    let address = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .to_string();
    let mut sender = SenderConfig::new(SenderTransport::Tcp, address);
    sender.queue_capacity = 2;
    sender.backoff_min_ms = 10;
    sender.backoff_max_ms = 50;
    let sim = sim_sending_to(sender, SimEventStyle::Vendor).await;

    let client = http();
    let started = Instant::now();
    for _ in 0..20 {
        let reply = client
            .post(format!("{}/sim/malops", sim.base_url()))
            .send()
            .await
            .expect("the control call answers");
        assert!(reply.status().is_success());
    }
    // Each answer came without waiting on the collector (a connection attempt is 10 s).
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    let stats = sim.syslog_stats().expect("the sender runs");
    assert_eq!(stats.queued + stats.dropped, 20);
    assert!(
        stats.dropped >= 17,
        "a queue of 2 (and one event in hand) keeps at most 3: {stats:?}"
    );
    assert_eq!(stats.sender.written, 0);
    let counters: Value = client
        .get(format!("{}/sim/syslog", sim.base_url()))
        .send()
        .await
        .expect("the control call answers")
        .json()
        .await
        .expect("a JSON answer");
    assert_eq!(counters["dropped"], json!(stats.dropped));

    // The API keeps serving: the new Malops are there.
    assert_eq!(sim.malops().len(), 24);
    let deadline = Instant::now() + LIMIT;
    while sim
        .syslog_stats()
        .expect("the sender runs")
        .sender
        .connect_failures
        == 0
    {
        assert!(Instant::now() < deadline, "the sender keeps trying");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Shutting down does not wait on the collector beyond its grace period.
    tokio::time::timeout(LIMIT, sim.shutdown())
        .await
        .expect("the simulator stops");
}

/// `riposte sim`'s flags, as the binary parses them.
#[derive(clap::Parser)]
struct SimCli {
    #[command(flatten)]
    args: riposte_sim::SimArgs,
}

fn sim_flags(flags: &[&str]) -> Result<riposte_sim::SimArgs, clap::Error> {
    use clap::Parser as _;
    SimCli::try_parse_from(std::iter::once("sim").chain(flags.iter().copied())).map(|c| c.args)
}

#[test]
fn the_syslog_flags_make_the_sender_configuration() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let password = dir.path().join("password");
    std::fs::write(&password, "sim-password\n").expect("the password file writes");
    let password = password.to_str().expect("a UTF-8 path");

    let config = sim_flags(&["--password-file", password])
        .expect("the flags parse")
        .to_config()
        .expect("a configuration");
    assert_eq!(config.syslog, None, "no events without --syslog");

    let config = sim_flags(&[
        "--password-file",
        password,
        "--syslog",
        "127.0.0.1:5514",
        "--syslog-transport",
        "udp",
        "--syslog-style",
        "forwarder",
    ])
    .expect("the flags parse")
    .to_config()
    .expect("a configuration");
    let mut sender = SenderConfig::new(SenderTransport::Udp, "127.0.0.1:5514");
    sender.framing = Framing::Newline;
    assert_eq!(
        config.syslog,
        Some(SimSyslog {
            sender,
            style: SimEventStyle::Forwarder,
        })
    );

    let tcp = sim_flags(&["--password-file", password, "--syslog", "localhost:514"])
        .expect("the flags parse")
        .to_config()
        .expect("a configuration")
        .syslog
        .expect("events are sent");
    assert_eq!(
        (tcp.sender.transport, tcp.sender.framing, tcp.style),
        (
            SenderTransport::Tcp,
            Framing::Newline,
            SimEventStyle::Vendor
        )
    );

    let refused = sim_flags(&["--syslog", "127.0.0.1:5514", "--syslog-transport", "sctp"]);
    assert!(refused.is_err_and(|e| e.to_string().contains("tcp, udp or tls")));
    assert!(
        sim_flags(&["--syslog-transport", "udp"]).is_err(),
        "a transport without --syslog is refused"
    );
}
