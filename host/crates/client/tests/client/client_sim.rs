//! The client against the simulator on 127.0.0.1: every operation and every injected fault.

use riposte_client::{
    Client, ClientConfig, Credentials, Error, IsolationStatus, RetryPolicy, Timeouts,
};
use riposte_domain::{
    ElementKind, KeyKind, MalopId, ManagementStatus, PylumId, RemediationKind, RemediationProgress,
    RemediationTarget, ReputationKey, Verdict,
};
use riposte_sim::{Fault, FaultKind, SimConfig, SimHandle, Simulator};
use std::time::Duration;

const PASSWORD: &str = "Corr3ct-Horse!";

fn config(malops: usize) -> SimConfig {
    SimConfig {
        malops,
        seed: 7,
        password: PASSWORD.into(),
        ..SimConfig::default()
    }
}

fn client_with(sim: &SimHandle, password: &str, request_timeout: Duration) -> Client {
    let mut cfg = ClientConfig::new(
        sim.base_url(),
        Credentials::new("analyst@riposte.local", password),
    );
    cfg.timeouts = Timeouts {
        connect: Duration::from_secs(2),
        request: request_timeout,
    };
    cfg.retry = RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(4),
    };
    Client::new(cfg).unwrap()
}

async fn start(malops: usize) -> (SimHandle, Client) {
    let sim = Simulator::start(config(malops)).await.unwrap();
    let client = client_with(&sim, PASSWORD, Duration::from_secs(5));
    (sim, client)
}

fn logins(sim: &SimHandle) -> usize {
    sim.count("POST", "/login.html")
}

fn no_secret(text: &str, sim: &SimHandle) {
    assert!(!text.contains(PASSWORD), "password leaked: {text}");
    for s in sim.with_state(|s| s.sessions.iter().cloned().collect::<Vec<_>>()) {
        assert!(!text.contains(&s), "session id leaked: {text}");
    }
}

/// A suspect on an online (or offline) machine: (malop, target).
fn suspect_target(sim: &SimHandle, online: bool) -> (MalopId, RemediationTarget) {
    let machines = sim.machines();
    for m in sim.malops() {
        for p in &m.suspects {
            let up = machines
                .iter()
                .find(|x| x.guid == p.machine)
                .unwrap()
                .online;
            if up == online {
                let target = RemediationTarget {
                    machine_guid: p.machine.as_str().into(),
                    target_guid: p.guid.as_str().into(),
                    kind: RemediationKind::KillProcess,
                };
                return (MalopId::new(m.guid.clone()), target);
            }
        }
    }
    panic!("no suspect with online={online}");
}

#[tokio::test]
async fn lists_malops_of_both_kinds_with_one_login() {
    let (sim, client) = start(8).await;
    let process = client
        .malops_updated_since(ElementKind::Process, 0)
        .await
        .unwrap();
    let logon = client
        .malops_updated_since(ElementKind::LogonSession, 0)
        .await
        .unwrap();
    let want = sim.malops();
    assert_eq!(process.len() + logon.len(), want.len());
    assert_eq!(
        logon.len(),
        2,
        "lateral movement Malops are MalopLogonSession"
    );
    for m in process.iter().chain(&logon) {
        let w = want.iter().find(|w| w.guid == m.id.as_str()).unwrap();
        assert!(m.id.as_str().starts_with("11."));
        assert_eq!(m.last_update_time, w.last_update_time);
        assert_eq!(m.creation_time, w.creation_time);
        assert_eq!(m.display_name, w.name);
        assert_eq!(m.machines.len(), w.machines.len());
        assert_eq!(m.management_status, ManagementStatus::Unread);
    }
    let all = client.all_malops_updated_since(0).await.unwrap();
    assert_eq!(all.len(), want.len());
    assert_eq!(logins(&sim), 1);
    // The update-time filter went on the wire.
    let body = &sim.requests()[1].body;
    assert!(
        body.contains("malopLastUpdateTime") && body.contains("GreaterThan"),
        "{body}"
    );
}

#[tokio::test]
async fn watermark_sees_a_new_and_an_updated_malop() {
    let (sim, client) = start(4).await;
    let first = client.all_malops_updated_since(0).await.unwrap();
    let mark = first.iter().map(|m| m.last_update_time).max().unwrap();
    assert!(
        client
            .all_malops_updated_since(mark)
            .await
            .unwrap()
            .is_empty()
    );
    let new = sim.add_malop();
    let old = first[0].id.clone();
    let t = sim.touch_malop(&old).unwrap();
    let seen = client.all_malops_updated_since(mark).await.unwrap();
    let ids: Vec<_> = seen.iter().map(|m| m.id.clone()).collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&new) && ids.contains(&old));
    assert_eq!(
        seen.iter().find(|m| m.id == old).unwrap().last_update_time,
        t
    );
}

#[tokio::test]
async fn inbox_and_mmng_paging() {
    let (sim, client) = start(230).await;
    let inbox = client.inbox(0, i64::MAX).await.unwrap();
    assert_eq!(inbox.len(), 230);
    assert!(inbox.iter().all(|m| !m.machines.is_empty()));
    let all = client.mmng_malops(0, i64::MAX).await.unwrap();
    assert_eq!(all.len(), 230);
    let mut ids: Vec<_> = all.iter().map(|m| m.id.clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 230, "no Malop twice across pages");
    assert_eq!(sim.count("POST", "/rest/mmng/v2/malops"), 3);
    assert!(all[0].machines[0].pylum_id.is_some());
}

/// A visualsearch query lets the server run for less than the client's own request limit, so
/// the server's `TIMEOUT_ERROR` arrives before the client gives up and sends the query again.
#[tokio::test]
async fn a_query_gives_the_server_less_time_than_the_request_limit() {
    let (sim, client) = start(1).await;
    let id = MalopId::new(sim.malops()[0].guid.clone());
    client.get_malop_details(&id).await.unwrap();
    let sent: Vec<u64> = sim
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("/rest/visualsearch/"))
        .map(|r| {
            let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
            body["queryTimeout"]
                .as_u64()
                .expect("a numeric queryTimeout")
        })
        .collect();
    assert!(!sent.is_empty(), "no visualsearch query was sent");
    // The request limit is 5 s: a quarter of it is left for the answer.
    assert!(sent.iter().all(|ms| *ms == 3_750), "{sent:?}");
    let default = Timeouts::default();
    assert_eq!(default.query_timeout(), Duration::from_secs(55));
    let long = Timeouts {
        request: Duration::from_secs(600),
        ..default
    };
    assert_eq!(
        long.query_timeout(),
        Duration::from_secs(120),
        "the notes' value is the most sent"
    );
}

#[tokio::test]
async fn malop_details_are_complete() {
    let (sim, client) = start(8).await;
    let machines = sim.machines();
    let mut autoruns = 0;
    for w in sim.malops() {
        let m = client
            .get_malop_details(&MalopId::new(w.guid.clone()))
            .await
            .unwrap();
        assert_eq!(m.suspects.len(), w.suspects.len());
        assert_eq!(m.files.len(), w.files.len());
        for s in &m.suspects {
            assert!(w.machines.contains(&s.machine_guid.to_string()));
            assert_eq!(s.image_sha1.as_ref().map(String::len), Some(40));
            autoruns += s.autorun_keys.len();
        }
        assert!(m.files.iter().all(|f| f.md5.is_some() && f.sha1.is_some()));
        let want_ips = w.suspects.iter().flat_map(|p| &p.connections).count();
        assert!(!m.ip_addresses.is_empty() && m.ip_addresses.len() <= want_ips);
        for machine in &m.machines {
            let sim_m = machines
                .iter()
                .find(|x| x.guid == machine.guid.as_str())
                .unwrap();
            assert_eq!(
                machine.pylum_id.as_ref().map(|p| p.as_str()),
                sim_m.pylum_id.as_deref()
            );
            assert_eq!(machine.connected, sim_m.online);
            assert!(
                machine
                    .pylum_id
                    .as_ref()
                    .unwrap()
                    .as_str()
                    .starts_with("PYLUMCLIENT_")
            );
        }
    }
    assert!(autoruns > 0, "some suspects carry autorun evidence");
    assert!(matches!(
        client.get_malop_details(&MalopId::new("11.404")).await,
        Err(Error::NotFound { .. })
    ));
    let name = &machines[0].name;
    let pylum = client.machine_pylum_id(name).await.unwrap();
    assert_eq!(
        pylum,
        Some(PylumId::new(machines[0].pylum_id.clone().unwrap()))
    );
}

#[tokio::test]
async fn remediation_moves_pending_in_progress_success() {
    let (sim, client) = start(8).await;
    let (malop, target) = suspect_target(&sim, true);
    let r = client
        .remediate(Some(&malop), std::slice::from_ref(&target))
        .await
        .unwrap();
    assert_eq!(r.status(), RemediationProgress::Pending);
    let p = client
        .remediation_progress(Some(&malop), &r.remediation_id)
        .await
        .unwrap();
    assert_eq!(p.status(), RemediationProgress::InProgress);
    let p = client
        .remediation_progress(Some(&malop), &r.remediation_id)
        .await
        .unwrap();
    assert_eq!(p.status(), RemediationProgress::Success);
    assert!(p.end.is_some());
    let all = client.remediation_status(&malop).await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].remediation_id, r.remediation_id);
    let body = sim
        .requests()
        .into_iter()
        .find(|q| q.path == "/rest/remediate")
        .unwrap()
        .body;
    let body = body.as_str();
    assert!(body.contains("actionsByMachine") && body.contains(target.machine_guid.as_str()));
}

#[tokio::test]
async fn remediation_on_an_offline_sensor_fails_with_the_servers_message() {
    let mut cfg = config(8);
    cfg.steps_per_poll = 0;
    let sim = Simulator::start(cfg).await.unwrap();
    let client = client_with(&sim, PASSWORD, Duration::from_secs(5));
    let (malop, target) = suspect_target(&sim, false);
    let r = client.remediate(Some(&malop), &[target]).await.unwrap();
    let p = client
        .remediation_progress(Some(&malop), &r.remediation_id)
        .await
        .unwrap();
    assert_eq!(
        p.status(),
        RemediationProgress::Pending,
        "steps_per_poll 0: no move"
    );
    sim.advance(2);
    let p = client
        .wait_remediation(Some(&malop), &r.remediation_id, 3, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(p.status(), RemediationProgress::Failure);
    assert!(
        p.failure()
            .unwrap()
            .error
            .as_ref()
            .unwrap()
            .message
            .contains("disconnected")
    );
}

#[tokio::test]
async fn a_remediation_with_one_item_failed_fails_though_its_last_entry_succeeded() {
    let mut cfg = config(8);
    cfg.steps_per_poll = 0;
    let sim = Simulator::start(cfg).await.unwrap();
    let client = client_with(&sim, PASSWORD, Duration::from_secs(5));
    let (malop, offline) = suspect_target(&sim, false);
    let (_, online) = suspect_target(&sim, true);
    // The offline item first, so that the log's last entry is the online item's.
    let r = client
        .remediate(Some(&malop), &[offline.clone(), online.clone()])
        .await
        .unwrap();
    assert_eq!(r.latest().len(), 2, "{r:?}");
    sim.advance(2);
    let p = client
        .wait_remediation(Some(&malop), &r.remediation_id, 3, Duration::ZERO)
        .await
        .unwrap();
    let last = p.entries.last().unwrap();
    assert_eq!(last.target_guid, online.target_guid);
    assert_eq!(last.status, RemediationProgress::Success, "{p:?}");
    assert_eq!(p.status(), RemediationProgress::Failure);
    assert_eq!(p.failure().unwrap().target_guid, offline.target_guid);
}

#[tokio::test]
async fn remediation_abort() {
    let (sim, client) = start(8).await;
    let (malop, target) = suspect_target(&sim, true);
    let r = client.remediate(Some(&malop), &[target]).await.unwrap();
    let a = client
        .abort_remediation(&malop, &r.remediation_id)
        .await
        .unwrap();
    assert_eq!(a.status(), RemediationProgress::Failure);
    assert_eq!(a.entries[0].error.as_ref().unwrap().error_type, "ABORTED");
}

#[tokio::test]
async fn unknown_target_fails_on_the_server() {
    let mut cfg = config(4);
    cfg.steps_per_poll = 2;
    let sim = Simulator::start(cfg).await.unwrap();
    let client = client_with(&sim, PASSWORD, Duration::from_secs(5));
    let (malop, mut target) = suspect_target(&sim, true);
    target.target_guid = "1.2".into();
    // Rejected in the reply to the POST, with the server's verdict on each item.
    let err = client.remediate(Some(&malop), &[target]).await.unwrap_err();
    let Error::RemediationFailed { failed, .. } = &err else {
        panic!("expected a failed remediation, got {err}");
    };
    assert_eq!(failed.len(), 1);
    assert!(failed[0].rejected_as_unknown(), "{failed:?}");
    let detail = failed[0].error.as_ref().unwrap();
    assert_eq!(detail.error_type, "INVALID_ARGUMENT");
    assert!(
        detail.message.contains("unknown target 1.2"),
        "{}",
        detail.message
    );
}

#[tokio::test]
async fn remediate_500_after_processing_is_outcome_unknown_and_never_resent() {
    let (sim, client) = start(8).await;
    let (malop, target) = suspect_target(&sim, true);
    client.login_now().await.unwrap();
    sim.inject(
        Fault::new(FaultKind::Status500, 1)
            .on("/rest/remediate")
            .after_processing(),
    );
    let err = client
        .remediate(Some(&malop), std::slice::from_ref(&target))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::OutcomeUnknown { .. }), "{err}");
    assert!(!err.certainly_not_done());
    assert_eq!(sim.count("POST", "/rest/remediate"), 1, "sent exactly once");
    let found = client.find_remediation(&malop, &[target]).await.unwrap();
    assert!(found.is_some(), "the status read shows it was carried out");
}

#[tokio::test]
async fn remediate_500_before_processing_is_not_found_afterwards() {
    let (sim, client) = start(8).await;
    let (malop, target) = suspect_target(&sim, true);
    sim.inject(Fault::new(FaultKind::Status500, 3).on("/rest/remediate"));
    let err = client
        .remediate(Some(&malop), std::slice::from_ref(&target))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::OutcomeUnknown { .. }), "{err}");
    assert_eq!(sim.count("POST", "/rest/remediate"), 1);
    sim.clear_faults();
    assert!(
        client
            .find_remediation(&malop, &[target])
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn remediate_timeout_is_outcome_unknown_and_sent_once() {
    let (sim, _) = start(8).await;
    let client = client_with(&sim, PASSWORD, Duration::from_millis(300));
    client.login_now().await.unwrap();
    let (malop, target) = suspect_target(&sim, true);
    sim.inject(
        Fault::new(FaultKind::Delay, 1)
            .on("/rest/remediate")
            .delay_ms(3_000),
    );
    let err = client.remediate(Some(&malop), &[target]).await.unwrap_err();
    assert!(matches!(err, Error::OutcomeUnknown { .. }), "{err}");
    assert_eq!(sim.count("POST", "/rest/remediate"), 1);
}

#[tokio::test]
async fn remediate_garbage_reply_is_outcome_unknown() {
    let (sim, client) = start(8).await;
    let (malop, target) = suspect_target(&sim, true);
    sim.inject(Fault::new(FaultKind::Garbage, 1).on("/rest/remediate"));
    let err = client.remediate(Some(&malop), &[target]).await.unwrap_err();
    assert!(matches!(err, Error::OutcomeUnknown { .. }), "{err}");
    assert!(err.to_string().contains("unreadable"), "{err}");
    assert_eq!(sim.count("POST", "/rest/remediate"), 1);
}

/// A Malop may spell a machine's name in another case than the sensor list: the sensor is
/// found all the same. A server that refuses `EqualsIgnoreCase` (HTTP 400) is asked with
/// `Equals` (the name as the Malop spells it), from then on without trying again.
#[tokio::test]
async fn machines_are_found_by_name_whatever_its_case() {
    let (sim, client) = start(4).await;
    let machine = sim.machines()[0].clone();
    let other_case = machine.name.to_lowercase();
    assert_ne!(
        other_case, machine.name,
        "the simulator names machines in capitals"
    );
    let found = client
        .sensors_by_name(&[other_case.as_str()])
        .await
        .unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].machine_name, machine.name);

    sim.inject(Fault::new(FaultKind::Status400, 1).on("/rest/sensors/query"));
    let exact = client
        .sensors_by_name(&[machine.name.as_str()])
        .await
        .unwrap();
    assert_eq!(exact.len(), 1, "{exact:?}");
    let again = client
        .sensors_by_name(&[other_case.as_str()])
        .await
        .unwrap();
    assert!(again.is_empty(), "matched exactly now: {again:?}");
    let operators: Vec<String> = sim
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/sensors/query"))
        .map(|r| {
            let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
            body["filters"][0]["operator"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(
        operators,
        ["EqualsIgnoreCase", "EqualsIgnoreCase", "Equals", "Equals"]
    );
}

#[tokio::test]
async fn isolation_per_machine_outcomes() {
    let (sim, client) = start(8).await;
    let machines = sim.machines();
    let online = machines.iter().find(|m| m.online).unwrap();
    let offline = machines.iter().find(|m| !m.online).unwrap();
    let ids = [
        PylumId::new(online.pylum_id.clone().unwrap()),
        PylumId::new(offline.pylum_id.clone().unwrap()),
    ];
    let report = client.isolate(&ids, None).await.unwrap();
    assert_eq!(report.outcomes[&ids[0]], IsolationStatus::Succeeded);
    assert_eq!(report.outcomes[&ids[1]], IsolationStatus::Primed);
    assert!(
        report.none_refused() && !report.all_applied(),
        "Primed is queued for the offline sensor, not applied yet"
    );
    // The queued change shows on the sensor once it connects; only the sensors asked for
    // are answered.
    let before = client.sensors_by_pylum_id(&ids).await.unwrap();
    assert_eq!(before.len(), 2, "{before:?}");
    assert!(before.iter().any(|s| s.pylum_id == ids[1] && !s.isolated));
    assert!(sim.set_online(&offline.guid, true));
    let after = client.sensors_by_pylum_id(&ids[1..]).await.unwrap();
    assert_eq!(after.len(), 1, "{after:?}");
    assert!(after[0].isolated && after[0].is_online());
    let bogus = PylumId::new("PYLUMCLIENT_RIPOSTE_NOPE_000000000000");
    let mixed = client
        .isolate(&[ids[0].clone(), bogus.clone()], None)
        .await
        .unwrap();
    assert!(matches!(mixed.outcomes[&bogus], IsolationStatus::Failed(_)));
    assert!(!mixed.none_refused());
    let sensors = client
        .sensors_by_name(&[online.name.as_str()])
        .await
        .unwrap();
    assert!(sensors[0].isolated && sensors[0].is_online());
    let report = client.unisolate(&ids[..1], None).await.unwrap();
    assert!(report.all_applied());
    let sensors = client
        .sensors_by_name(&[online.name.as_str()])
        .await
        .unwrap();
    assert!(!sensors[0].isolated);
    // The offline machine becomes isolated when its sensor comes back.
    sim.set_online(offline.pylum_id.as_deref().unwrap(), true);
    let s = client
        .sensors_by_name(&[offline.name.as_str()])
        .await
        .unwrap();
    assert!(s[0].isolated);
    let unknown = [PylumId::new("PYLUMCLIENT_NOPE_NOPE_000000000000")];
    let err = client.isolate(&unknown, None).await.unwrap_err();
    assert!(matches!(err, Error::NoMatchingSensors { .. }), "{err}");
    assert!(
        sim.requests()
            .iter()
            .any(|r| r.path.ends_with("/un-isolate"))
    );
}

#[tokio::test]
async fn isolate_500_is_not_resent() {
    let (sim, client) = start(8).await;
    let id = PylumId::new(sim.machines()[0].pylum_id.clone().unwrap());
    sim.inject(Fault::new(FaultKind::Status500, 5).on("/rest/monitor"));
    let err = client.isolate(&[id], None).await.unwrap_err();
    assert!(matches!(err, Error::OutcomeUnknown { .. }), "{err}");
    assert_eq!(
        sim.count("POST", "/rest/monitor/global/commands/isolate"),
        1
    );
}

#[tokio::test]
async fn isolate_429_is_throttled_not_resent() {
    let (sim, client) = start(8).await;
    let id = PylumId::new(sim.machines()[0].pylum_id.clone().unwrap());
    sim.inject(Fault::new(FaultKind::Status429, 5).on("/rest/monitor"));
    let err = client.isolate(&[id], None).await.unwrap_err();
    assert!(matches!(err, Error::Throttled { attempts: 1, .. }), "{err}");
    assert!(err.certainly_not_done());
    assert_eq!(
        sim.count("POST", "/rest/monitor/global/commands/isolate"),
        1
    );
}

/// A read throttled (429) or refused as unavailable (503) with `Retry-After: 1` is tried
/// again no sooner than a second later (not after the backoff's milliseconds, inside the same
/// window), and succeeds.
#[tokio::test]
async fn a_read_waits_for_the_servers_retry_after_on_429_and_503() {
    for kind in [FaultKind::Status429, FaultKind::Status503] {
        let (sim, client) = start(8).await;
        sim.inject(Fault::new(kind, 1).on("/rest/sensors").retry_after_secs(1));
        client.sensors(serde_json::json!([])).await.unwrap();
        let tries: Vec<u64> = sim
            .requests()
            .iter()
            .filter(|r| r.path == "/rest/sensors/query")
            .map(|r| r.received_us)
            .collect();
        assert_eq!(tries.len(), 2, "{kind:?}: one refused try, one more");
        assert!(
            tries[1] - tries[0] >= 1_000_000,
            "{kind:?}: tried again after {} µs",
            tries[1] - tries[0]
        );
    }
}

#[tokio::test]
async fn reputations_are_set_listed_and_removed() {
    let (sim, client) = start(4).await;
    let hash = ReputationKey {
        kind: KeyKind::FileHash,
        value: "a".repeat(40),
    };
    let ip = ReputationKey {
        kind: KeyKind::IpAddress,
        value: "185.1.2.3".into(),
    };
    client
        .set_reputation(std::slice::from_ref(&hash), Verdict::Blacklist, true)
        .await
        .unwrap();
    client
        .set_reputation(std::slice::from_ref(&ip), Verdict::Blacklist, false)
        .await
        .unwrap();
    let list = client.reputations().await.unwrap();
    assert_eq!(list.len(), 2);
    let h = list.iter().find(|e| e.key == hash.value).unwrap();
    assert_eq!(h.verdict, Some(Verdict::Blacklist));
    assert!(h.prevent);
    client
        .remove_reputation(std::slice::from_ref(&hash))
        .await
        .unwrap();
    let list = client.reputations().await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].key, ip.value);
    for r in sim
        .requests()
        .iter()
        .filter(|r| r.path == "/rest/classification/update")
    {
        assert!(
            r.body.starts_with('['),
            "the body is always an array: {}",
            r.body
        );
    }
    let before = sim.count("POST", "/rest/classification/update");
    let err = client
        .set_reputation(&[ip], Verdict::Blacklist, true)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Config(_)));
    assert_eq!(sim.count("POST", "/rest/classification/update"), before);
}

#[tokio::test]
async fn malop_status_and_comments() {
    let (sim, client) = start(4).await;
    let id = MalopId::new(sim.malops()[0].guid.clone());
    client
        .set_malop_status(&id, ManagementStatus::Open)
        .await
        .unwrap();
    assert_eq!(sim.malops()[0].status, ManagementStatus::Open);
    let text = "riposte: killed <wcry.exe> & quarantined";
    client.add_comment(&id, text).await.unwrap();
    let body = sim
        .requests()
        .into_iter()
        .find(|r| r.path.starts_with("/rest/crimes/comment/"))
        .unwrap()
        .body;
    let body = body.as_str();
    assert_eq!(body, text, "raw text body, not JSON");
    let comments = client.comments(&id).await.unwrap();
    assert_eq!(comments.last().unwrap().message, text);
    let err = client
        .set_malop_status(&MalopId::new("11.404"), ManagementStatus::Closed)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Api { message, .. } if message.contains("not found")),
        "{err}"
    );
    let err = client
        .add_comment(&MalopId::new("11.404"), "x")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Api { .. }), "{err}");
}

#[tokio::test]
async fn sensors_page_index_paging() {
    let (sim, client) = start(10).await;
    let total = sim.machines().len();
    let p0 = client
        .sensors_page(serde_json::json!([]), 0, 3)
        .await
        .unwrap();
    let p1 = client
        .sensors_page(serde_json::json!([]), 1, 3)
        .await
        .unwrap();
    assert!(p0.has_more && p0.sensors.len() == 3 && p1.sensors.len() == 3);
    assert_ne!(p0.sensors[0].pylum_id, p1.sensors[0].pylum_id);
    assert_eq!(p0.total_results as usize, total);
    let all = client.sensors(serde_json::json!([])).await.unwrap();
    assert_eq!(all.len(), total);
    let offline = sim.machines().iter().filter(|m| !m.online).count();
    assert_eq!(all.iter().filter(|s| !s.is_online()).count(), offline);
}

#[tokio::test]
async fn expired_session_means_exactly_one_relogin() {
    let (sim, client) = start(4).await;
    client.all_malops_updated_since(0).await.unwrap();
    assert_eq!(logins(&sim), 1);
    sim.expire_sessions();
    let again = client.all_malops_updated_since(0).await.unwrap();
    assert_eq!(again.len(), 4);
    assert_eq!(logins(&sim), 2, "one re-login");
    let redirected = sim.requests().iter().filter(|r| r.status == 302).count();
    assert_eq!(
        redirected, 1,
        "one call hit the expired session, then was retried"
    );
}

/// A server that answers the login page even to a session just created (an API user who may
/// log in but not call the API): the call fails as not carried out, and the calls after it
/// fail at once, without logging in twice each (which could lock the account), until the
/// hold passes.
#[tokio::test]
async fn a_session_rejected_after_its_login_holds_the_logins() {
    let (sim, client) = start(4).await;
    client.login_now().await.unwrap();
    sim.inject(Fault::new(FaultKind::LoginPage, 1_000).on("/rest/"));
    let id = MalopId::new(sim.malops()[0].guid.clone());
    let err = client
        .set_malop_status(&id, ManagementStatus::Todo)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::SessionRejected { .. }), "{err}");
    assert!(
        err.certainly_not_done(),
        "the login page carries nothing out"
    );
    assert_eq!(logins(&sim), 2, "one re-login");
    let requests = sim.requests().len();
    let held = client.all_malops_updated_since(0).await.unwrap_err();
    assert!(
        matches!(&held, Error::SessionRejected { held, .. } if held.contains("no login is tried")),
        "{held}"
    );
    assert_eq!(sim.requests().len(), requests, "nothing sent while held");
    no_secret(&format!("{err} {held} {held:?}"), &sim);
}

/// A proxy's page answering a read twice (before and after the re-login it causes) fails
/// that read only: it is not the server refusing sessions, so logins are not held and the
/// next call goes through.
#[tokio::test]
async fn a_proxy_page_after_a_relogin_fails_the_call_but_holds_no_logins() {
    let (sim, client) = start(4).await;
    client.login_now().await.unwrap();
    sim.inject(Fault::new(FaultKind::Html, 2).on("/rest/sensors"));
    let err = client.sensors(serde_json::json!([])).await.unwrap_err();
    assert!(
        matches!(&err, Error::SessionRejected { held, .. } if held.is_empty()),
        "{err}"
    );
    assert_eq!(logins(&sim), 2, "one re-login");
    client.sensors(serde_json::json!([])).await.unwrap();
    assert_eq!(logins(&sim), 2, "the session is kept, and nothing held");
}

#[tokio::test]
async fn expired_session_on_an_action_relogs_and_sends_once() {
    let (sim, client) = start(4).await;
    client.login_now().await.unwrap();
    sim.expire_sessions();
    let id = MalopId::new(sim.malops()[0].guid.clone());
    client
        .set_malop_status(&id, ManagementStatus::Todo)
        .await
        .unwrap();
    assert_eq!(logins(&sim), 2);
    let status_posts: Vec<_> = sim
        .requests()
        .into_iter()
        .filter(|r| r.path == "/rest/crimes/status")
        .map(|r| r.status)
        .collect();
    assert_eq!(
        status_posts,
        vec![302, 200],
        "refused unauthenticated, then done once"
    );
}

#[tokio::test]
async fn wrong_password_is_a_clear_login_error_without_the_password() {
    let sim = Simulator::start(config(2)).await.unwrap();
    let client = client_with(&sim, "Wr0ng-Pass!", Duration::from_secs(5));
    let err = client.all_malops_updated_since(0).await.unwrap_err();
    assert!(matches!(err, Error::LoginFailed { .. }), "{err}");
    let text = format!("{err} {err:?}");
    assert!(text.contains("login page"), "{text}");
    assert!(!text.contains("Wr0ng-Pass!"), "{text}");
    assert_eq!(logins(&sim), 1, "a wrong password is not retried");
    let logged = &sim.requests()[0].body;
    assert!(
        logged.contains("password=[redacted]") && !logged.contains("Wr0ng"),
        "{logged}"
    );
}

/// A refused login holds further logins back (the same error, without asking the server),
/// so that a cycle's calls and the next cycles do not send a wrong password until the
/// account locks.
#[tokio::test]
async fn a_refused_login_is_not_tried_again_at_once() {
    let sim = Simulator::start(config(2)).await.unwrap();
    let client = client_with(&sim, "Wr0ng-Pass!", Duration::from_secs(5));
    client.login_now().await.unwrap_err();
    for _ in 0..3 {
        let err = client.all_malops_updated_since(0).await.unwrap_err();
        assert!(matches!(err, Error::LoginFailed { .. }), "{err}");
        assert!(err.to_string().contains("not tried again for"), "{err}");
    }
    assert_eq!(logins(&sim), 1, "one login sent, the others held back");
}

/// A server that answers the login form with redirects, as to a browser: to `/` when it
/// worked (a session), back to `/login.html` when it did not (a refusal, not a session).
#[tokio::test]
async fn a_login_redirected_back_to_the_login_page_failed() {
    let sim = Simulator::start(config(2)).await.unwrap();
    sim.with_state(|s| s.login_redirects = true);
    let refused = client_with(&sim, "Wr0ng-Pass!", Duration::from_secs(5));
    let err = refused.login_now().await.unwrap_err();
    assert!(matches!(err, Error::LoginFailed { .. }), "{err}");
    assert!(err.to_string().contains("redirected back"), "{err}");
    let client = client_with(&sim, PASSWORD, Duration::from_secs(5));
    assert!(!client.all_malops_updated_since(0).await.unwrap().is_empty());
    assert_eq!(logins(&sim), 2);
}

#[tokio::test]
async fn two_factor_is_reported() {
    let mut cfg = config(2);
    cfg.two_factor = true;
    let sim = Simulator::start(cfg).await.unwrap();
    let client = client_with(&sim, PASSWORD, Duration::from_secs(5));
    let err = client.login_now().await.unwrap_err();
    assert!(matches!(err, Error::TwoFactorRequired { .. }), "{err}");
}

#[tokio::test]
async fn queries_retry_5xx_and_429_within_bounds() {
    let (sim, client) = start(4).await;
    client.login_now().await.unwrap();
    sim.inject(Fault::new(FaultKind::Status500, 2).on("/rest/crimes/unified"));
    let got = client
        .malops_updated_since(ElementKind::Process, 0)
        .await
        .unwrap();
    assert!(!got.is_empty());
    assert_eq!(sim.count("POST", "/rest/crimes/unified"), 3);
    sim.clear_requests();
    sim.inject(Fault::new(FaultKind::Status429, 1).on("/rest/sensors"));
    client.sensors(serde_json::json!([])).await.unwrap();
    assert_eq!(sim.count("POST", "/rest/sensors/query"), 2);
    sim.clear_requests();
    sim.inject(Fault::new(FaultKind::Status500, 10).on("/rest/detection"));
    let err = client.inbox(0, i64::MAX).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Http {
                status: 500,
                attempts: 3,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        sim.count("POST", "/rest/detection/inbox"),
        3,
        "max_attempts = 3"
    );
    no_secret(&format!("{err} {err:?}"), &sim);
}

#[tokio::test]
async fn login_is_retried_on_5xx() {
    let (sim, client) = start(2).await;
    sim.inject(Fault::new(FaultKind::Status500, 1).on("/login.html"));
    client.login_now().await.unwrap();
    assert_eq!(logins(&sim), 2);
}

#[tokio::test]
async fn slow_answers_time_out_with_bounded_retries() {
    let (sim, _) = start(2).await;
    let client = client_with(&sim, PASSWORD, Duration::from_millis(200));
    client.login_now().await.unwrap();
    sim.inject(
        Fault::new(FaultKind::Delay, 10)
            .on("/rest/sensors")
            .delay_ms(2_000),
    );
    let err = client.sensors(serde_json::json!([])).await.unwrap_err();
    assert!(matches!(err, Error::Timeout { attempts: 3, .. }), "{err}");
    sim.clear_faults();
    // A slow answer within the timeout is fine.
    sim.inject(
        Fault::new(FaultKind::Delay, 1)
            .on("/rest/sensors")
            .delay_ms(20),
    );
    client.sensors(serde_json::json!([])).await.unwrap();
}

#[tokio::test]
async fn garbage_and_truncated_json_are_clear_parse_errors() {
    let (sim, client) = start(2).await;
    client.login_now().await.unwrap();
    sim.inject(Fault::new(FaultKind::Garbage, 1).on("/rest/crimes"));
    let err = client
        .malops_updated_since(ElementKind::Process, 0)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Parse { reason, .. } if reason.contains("invalid JSON")),
        "{err}"
    );
    assert!(
        err.to_string().contains("POST /rest/crimes/unified"),
        "{err}"
    );
    sim.inject(Fault::new(FaultKind::Truncated, 1).on("/rest/crimes"));
    let err = client
        .malops_updated_since(ElementKind::Process, 0)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Parse { reason, .. } if reason.contains("EOF")),
        "{err}"
    );
    no_secret(&format!("{err:?}"), &sim);
    // And the next call works.
    client
        .malops_updated_since(ElementKind::Process, 0)
        .await
        .unwrap();
}

/// A client of a server at `addr` (not the simulator) that tries each call twice.
fn two_tries_client(addr: std::net::SocketAddr) -> Client {
    let mut cfg = ClientConfig::new(format!("http://{addr}"), Credentials::new("u", PASSWORD));
    cfg.retry = RetryPolicy {
        max_attempts: 2,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(2),
    };
    Client::new(cfg).unwrap()
}

#[tokio::test]
async fn connection_refused_is_a_connect_error_after_bounded_retries() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let client = two_tries_client(addr);
    let err = client.login_now().await.unwrap_err();
    assert!(matches!(err, Error::Connect { attempts: 2, .. }), "{err}");
    assert!(!format!("{err:?}").contains(PASSWORD));
}

/// A server that answers with an error status and a body that never ends (a hostile or
/// broken proxy) costs the client the start of it, not hundreds of megabytes: the login's
/// 500 is read in part and reported.
#[tokio::test]
async fn an_endless_error_body_is_read_only_in_part() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counted = sent.clone();
    let server = tokio::spawn(async move {
        // Each try: a 500 whose chunked body streams until the client hangs up.
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut request = [0u8; 4096];
            let _ = socket.read(&mut request).await;
            let head = "HTTP/1.1 500 Internal Server Error\r\ncontent-type: text/html\r\ntransfer-encoding: chunked\r\n\r\n";
            if socket.write_all(head.as_bytes()).await.is_err() {
                continue;
            }
            let chunk = format!("{:x}\r\n{}\r\n", 64 * 1024, "x".repeat(64 * 1024));
            while socket.write_all(chunk.as_bytes()).await.is_ok() {
                counted.fetch_add(chunk.len() as u64, std::sync::atomic::Ordering::Relaxed);
                if counted.load(std::sync::atomic::Ordering::Relaxed) > 512 * 1024 * 1024 {
                    break;
                }
            }
        }
    });
    let client = two_tries_client(addr);
    let err = client.login_now().await.unwrap_err();
    assert!(matches!(err, Error::Http { status: 500, .. }), "{err}");
    let streamed = sent.load(std::sync::atomic::Ordering::Relaxed);
    // Two tries; what the socket buffers took beyond the client's reads is a few MiB at most.
    assert!(
        streamed < 32 * 1024 * 1024,
        "the server streamed {streamed} bytes"
    );
    server.abort();
}

#[tokio::test]
async fn secrets_stay_out_of_debug_and_errors() {
    let (sim, client) = start(2).await;
    client.login_now().await.unwrap();
    no_secret(&format!("{client:?}"), &sim);
    let cfg = ClientConfig::new(sim.base_url(), Credentials::new("u", PASSWORD));
    no_secret(&format!("{cfg:?}"), &sim);
    let cookie = sim.with_state(|s| s.sessions.iter().next().cloned().unwrap());
    assert_eq!(cookie.len(), 32);
    assert!(
        cookie
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase())
    );
}

#[tokio::test]
async fn ca_file_problems_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("ca.pem");
    std::fs::write(&bad, "not a certificate").unwrap();
    for path in [bad, dir.path().join("missing.pem")] {
        let mut cfg = ClientConfig::new("https://example.invalid", Credentials::new("u", "p"));
        cfg.ca_file = Some(path);
        assert!(matches!(Client::new(cfg), Err(Error::CaFile { .. })));
    }
    let cfg = ClientConfig::new("ftp://x", Credentials::new("u", "p"));
    assert!(matches!(Client::new(cfg), Err(Error::Config(_))));
}

/// TLS in front of the simulator: certificates made here, a TLS terminator on 127.0.0.1
/// that hands each connection to the simulator, and a count of the handshakes it saw.
mod tls {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    use riposte_client::tls::{parse_fingerprint, show_fingerprint};
    use riposte_domain::Sha256Digest;
    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

    /// A certificate (DER and PEM) and its key.
    struct Cert {
        der: CertificateDer<'static>,
        pem: String,
        key: KeyPair,
    }

    /// A CA certificate for `127.0.0.1` (also what a server presenting its CA as its own
    /// certificate sends).
    fn ca() -> (Cert, CertificateParams) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        let cert = Cert {
            der: cert.der().clone(),
            pem: cert.pem(),
            key,
        };
        (cert, params)
    }

    /// A server certificate for `127.0.0.1` signed by the CA.
    fn leaf(ca: &Cert, ca_params: &CertificateParams) -> Cert {
        let key = KeyPair::generate().unwrap();
        let params = CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
        let issuer = Issuer::from_params(ca_params, &ca.key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        Cert {
            der: cert.der().clone(),
            pem: cert.pem(),
            key,
        }
    }

    /// Serves TLS with `chain` on 127.0.0.1, forwarding to `sim`; counts handshakes begun.
    async fn front(
        sim: &SimHandle,
        chain: Vec<CertificateDer<'static>>,
        key: &KeyPair,
    ) -> (SocketAddr, Arc<AtomicUsize>) {
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(Arc::new(
            tokio_rustls::rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let upstream = sim.addr();
        let handshakes = Arc::new(AtomicUsize::new(0));
        let count = handshakes.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    if let Ok(mut plain) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                    }
                });
            }
        });
        (addr, handshakes)
    }

    fn https_client(addr: SocketAddr, tune: impl FnOnce(&mut ClientConfig)) -> Client {
        let mut cfg = ClientConfig::new(
            format!("https://{addr}"),
            Credentials::new("analyst@riposte.local", PASSWORD),
        );
        cfg.retry = RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(4),
        };
        tune(&mut cfg);
        Client::new(cfg).unwrap()
    }

    #[tokio::test]
    async fn a_private_ca_file_makes_an_on_premises_server_usable() {
        let sim = Simulator::start(config(2)).await.unwrap();
        let (ca, ca_params) = ca();
        let server = leaf(&ca, &ca_params);
        let (addr, _) = front(&sim, vec![server.der.clone(), ca.der.clone()], &server.key).await;
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("corp-ca.pem");
        std::fs::write(&ca_file, &ca.pem).unwrap();
        let client = https_client(addr, |c| c.ca_file = Some(ca_file.clone()));
        let malops = client
            .all_malops_updated_since(0)
            .await
            .expect("TLS with the private CA");
        assert_eq!(malops.len(), 2);

        // Without the CA file: refused once, saying what is wrong and how to fix it.
        let (addr, handshakes) = front(&sim, vec![server.der.clone()], &server.key).await;
        let err = https_client(addr, |_| {}).login_now().await.unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, Error::Certificate { .. }), "{text}");
        assert!(
            text.contains("signed by a CA this host does not trust") && text.contains("ca_file"),
            "{text}"
        );
        assert_eq!(
            handshakes.load(Ordering::SeqCst),
            1,
            "a certificate failure is not retried"
        );
    }

    #[tokio::test]
    async fn a_ca_certificate_used_as_the_servers_own_is_explained_and_can_be_pinned() {
        let sim = Simulator::start(config(2)).await.unwrap();
        let (ca, _) = ca();
        let (addr, handshakes) = front(&sim, vec![ca.der.clone()], &ca.key).await;
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, &ca.pem).unwrap();
        // Trusting it as a CA does not help: TLS refuses a CA as an end entity.
        let err = https_client(addr, |c| c.ca_file = Some(ca_file.clone()))
            .all_malops_updated_since(0)
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, Error::Certificate { .. }), "{text}");
        assert!(
            text.contains("presents a CA certificate as its own"),
            "{text}"
        );
        assert!(text.contains("pinned_certificate_sha256"), "{text}");
        assert!(
            !text.contains("OtherError"),
            "words, not a debug dump: {text}"
        );
        assert_eq!(
            handshakes.load(Ordering::SeqCst),
            1,
            "said once, not retried"
        );

        // Pinned by its fingerprint, as openssl prints it, it is accepted.
        let pin = parse_fingerprint(&show_fingerprint(&Sha256Digest::of(&ca.der))).unwrap();
        let pinned = https_client(addr, |c| c.pinned_certificate = Some(pin));
        assert_eq!(pinned.all_malops_updated_since(0).await.unwrap().len(), 2);

        // Another pin is refused naming both fingerprints.
        let wrong = Sha256Digest::of(b"another certificate");
        let err = https_client(addr, |c| c.pinned_certificate = Some(wrong))
            .login_now()
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(&show_fingerprint(&wrong)) && text.contains(&show_fingerprint(&pin)),
            "{text}"
        );
    }
}

/// The answers to an action that are no reply (a proxy's page, a cut or reset body) leave its
/// outcome unknown: never re-sent, found on the server.
mod outcome_unknown {
    use super::*;

    #[tokio::test]
    async fn a_proxy_page_a_truncated_body_or_a_reset_after_an_action_is_an_unknown_outcome() {
        for kind in [FaultKind::Html, FaultKind::Truncated, FaultKind::Reset] {
            let (sim, client) = start(4).await;
            let (malop, target) = suspect_target(&sim, true);
            client.login_now().await.unwrap();
            sim.inject(Fault::new(kind, 1).on("/rest/remediate"));
            let err = client
                .remediate(Some(&malop), std::slice::from_ref(&target))
                .await
                .unwrap_err();
            assert!(
                matches!(err, Error::OutcomeUnknown { .. }),
                "{kind:?}: {err}"
            );
            assert_eq!(
                sim.count("POST", "/rest/remediate"),
                1,
                "{kind:?}: sent once"
            );
            assert_eq!(logins(&sim), 1, "{kind:?}: no re-login, no resend");
            let found = client.find_remediation(&malop, &[target]).await.unwrap();
            assert!(found.is_some(), "{kind:?}: the server carried it out");
        }
    }

    #[tokio::test]
    async fn the_login_page_after_an_action_means_it_was_not_carried_out() {
        let (sim, client) = start(4).await;
        let (malop, target) = suspect_target(&sim, true);
        client.login_now().await.unwrap();
        sim.expire_sessions();
        let report = client
            .remediate(Some(&malop), std::slice::from_ref(&target))
            .await
            .expect("sent again after one re-login");
        assert_eq!(
            sim.count("POST", "/rest/remediate"),
            2,
            "302 first, then carried out"
        );
        assert_eq!(
            sim.with_state(|s| s.remediations.len()),
            1,
            "carried out once"
        );
        assert_eq!(report.entries.len(), 1);
    }

    /// §6: a 403 (the API user lacks the role) is refused before anything is done: one
    /// request, no retry, and an error that says so (the action is not sent again).
    #[tokio::test]
    async fn a_refused_action_is_not_retried_and_says_why() {
        let (sim, client) = start(4).await;
        let (malop, target) = suspect_target(&sim, true);
        sim.inject(Fault::new(FaultKind::Status403, 5).on("/rest/remediate"));
        let err = client
            .remediate(Some(&malop), std::slice::from_ref(&target))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Refused { status: 403, .. }), "{err}");
        assert!(err.certainly_not_done() && err.rejected_for_good(), "{err}");
        assert!(err.to_string().contains("lacks the role"), "{err}");
        assert_eq!(sim.count("POST", "/rest/remediate"), 1, "not retried");
        assert_eq!(
            sim.with_state(|s| s.remediations.len()),
            0,
            "not carried out"
        );
    }

    #[tokio::test]
    async fn a_remediation_without_a_malop_id_is_followed() {
        let (sim, client) = start(4).await;
        let (_, target) = suspect_target(&sim, true);
        let report = client
            .remediate(None, std::slice::from_ref(&target))
            .await
            .unwrap();
        assert_eq!(report.status(), RemediationProgress::Pending);
        let done = client
            .wait_remediation(None, &report.remediation_id, 5, Duration::ZERO)
            .await
            .expect("followed with an empty Malop segment");
        assert_eq!(done.status(), RemediationProgress::Success);
    }
}

mod enrichment {
    use super::*;
    use riposte_domain::MalopPart;

    #[tokio::test]
    async fn a_refused_investigation_leaves_what_crimes_unified_gave_and_names_the_parts() {
        let (sim, client) = start(8).await;
        sim.refuse_investigation(true);
        let id = MalopId::new(sim.malops()[0].guid.clone());
        let details = client
            .malop_details(&id)
            .await
            .expect("crimes/unified still answers");
        let malop = &details.malop;
        assert_eq!(
            malop.unreadable,
            [MalopPart::Suspects, MalopPart::Files, MalopPart::Network]
        );
        assert_eq!(details.failures.len(), 3);
        assert!(
            details.failures[0]
                .error
                .to_string()
                .contains("not allowed to run investigation queries")
        );
        let sim_malop = &sim.malops()[0];
        assert_eq!(
            malop.suspects.len(),
            sim_malop.suspects.len(),
            "suspects named by crimes/unified"
        );
        assert_eq!(malop.files.len(), sim_malop.files.len());
        assert!(
            malop.machines.iter().any(|m| m.pylum_id.is_some()),
            "sensors still read"
        );
        sim.refuse_investigation(false);
        let full = client.malop_details(&id).await.unwrap();
        assert!(full.malop.is_complete() && full.failures.is_empty());
        assert!(
            full.malop
                .suspects
                .iter()
                .all(|s| !s.machine_guid.as_str().is_empty())
        );

        // A failing sensors query, once: the machines' state is unknown and said so.
        sim.inject(Fault::new(FaultKind::ErrorBody, 1).on("/rest/sensors/query"));
        let partial = client.malop_details(&id).await.unwrap();
        assert_eq!(partial.malop.unreadable, [MalopPart::Sensors]);
        assert!(
            partial
                .malop
                .machines
                .iter()
                .all(|m| m.pylum_id.is_none() && !m.connected)
        );
    }

    #[tokio::test]
    async fn a_listing_past_the_result_limit_narrows_its_window_and_misses_nothing() {
        let sim = Simulator::start(SimConfig {
            result_limit: 3,
            ..config(24)
        })
        .await
        .unwrap();
        let client = client_with(&sim, PASSWORD, Duration::from_secs(5));
        let listed = client.all_malops_updated_since(0).await.unwrap();
        assert_eq!(listed.len(), 24, "every Malop, though each answer holds 3");
        let mut ids: Vec<&str> = listed.iter().map(|m| m.id.as_str()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 24, "none twice");
        assert!(sim.count("POST", "/rest/crimes/unified") > 2);
        let narrowed = sim
            .requests()
            .iter()
            .any(|r| r.path == "/rest/crimes/unified" && r.body.contains("LessThan"));
        assert!(narrowed, "the window was narrowed with an upper bound");

        // A plugin's listing may cost only so many queries: past them it is an error, not
        // a partial answer, and no more queries are made.
        let before = sim.count("POST", "/rest/crimes/unified");
        let err = client.malops_updated_in(0, i64::MAX, 2).await.unwrap_err();
        assert!(err.to_string().contains("could not all be listed"), "{err}");
        assert!(sim.count("POST", "/rest/crimes/unified") - before <= 2);
        let within = client.malops_updated_in(0, i64::MAX, 64).await.unwrap();
        assert_eq!(within.len(), 24);
    }

    /// The notes saw only `GreaterThan` in use: a server that refuses or ignores the
    /// `LessThan` that closes a narrowed window still gives a listing (what its answers
    /// held, none twice), in a few queries, not an error or thousands of queries.
    #[tokio::test]
    async fn a_server_that_cannot_narrow_a_window_still_gives_a_listing() {
        for less_than in [
            riposte_sim::LessThan::Refused,
            riposte_sim::LessThan::Ignored,
            riposte_sim::LessThan::Failed,
        ] {
            let sim = Simulator::start(SimConfig {
                result_limit: 3,
                ..config(24)
            })
            .await
            .unwrap();
            sim.with_state(|s| s.less_than = less_than);
            let client = client_with(&sim, PASSWORD, Duration::from_secs(5));
            let listed = client
                .malops_updated_since(ElementKind::Process, 0)
                .await
                .unwrap_or_else(|e| panic!("{less_than:?}: {e}"));
            let mut ids: Vec<&str> = listed.iter().map(|m| m.id.as_str()).collect();
            ids.sort();
            ids.dedup();
            assert!(
                ids.len() >= 3 && ids.len() == listed.len(),
                "{less_than:?}: {ids:?}"
            );
            // Open windows (`GreaterThan` alone) still move forward through time: fewer
            // queries than Malops, not the thousands of halvings down to a millisecond.
            let queries = sim.count("POST", "/rest/crimes/unified");
            assert!(queries < 24, "{less_than:?}: {queries} queries");
            let listing = client.malop_listing(ElementKind::Process, 0).await.unwrap();
            assert!(
                listing.incomplete,
                "{less_than:?}: not taken as all there is"
            );
            let all = client.all_malops_updated_since(0).await.unwrap_err();
            assert!(all.to_string().contains("could not all be listed"), "{all}");
        }
    }

    /// A server that answers a query matching past its limit with `QUERY_LIMIT_CROSSED`
    /// (nothing, not the first results) is read in halved time windows, every Malop once;
    /// where even a window of a few milliseconds is too large, the listing says it is
    /// incomplete instead of failing every poll.
    #[tokio::test]
    async fn a_listing_answered_query_limit_crossed_is_read_in_halved_windows() {
        let sim = Simulator::start(SimConfig {
            result_limit: 5,
            ..config(24)
        })
        .await
        .unwrap();
        sim.with_state(|s| s.over_limit = riposte_sim::OverLimit::QueryLimitCrossed);
        let client = client_with(&sim, PASSWORD, Duration::from_secs(5));
        let listing = client.malop_listing(ElementKind::Process, 0).await.unwrap();
        let expected = sim
            .malops()
            .iter()
            .filter(|m| m.kind == ElementKind::Process)
            .count();
        assert!(
            expected > 5,
            "more Process Malops than the limit: {expected}"
        );
        let mut ids: Vec<&str> = listing.malops.iter().map(|m| m.id.as_str()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), expected, "every Malop, none twice");
        assert!(!listing.incomplete);
        let bodies: Vec<String> = sim
            .requests()
            .into_iter()
            .filter(|r| r.path == "/rest/crimes/unified")
            .map(|r| r.body)
            .collect();
        assert!(bodies.iter().all(|b| b.contains("\"queryTimeout\"")));

        // Every Malop updated in the same millisecond, more of them than the limit.
        sim.with_state(|s| {
            for m in &mut s.malops {
                m.last_update_time = 1_700_000_000_000;
            }
        });
        let listing = client.malop_listing(ElementKind::Process, 0).await.unwrap();
        assert!(listing.incomplete, "not taken as all there is");
        assert!(listing.malops.is_empty());
    }

    /// A Malop on more machines than the listing's `perFeatureLimit` (100): its
    /// `affectedMachines` come cut, with `totalValues` saying how many there are, and the
    /// client reads the rest with a visualsearch query, in a listing and by id alike.
    #[tokio::test]
    async fn a_malop_on_more_machines_than_a_listing_holds_gets_all_of_them() {
        let sim = Simulator::start(config(4)).await.unwrap();
        let (id, guids) = sim.with_state(|s| {
            let template = s.machines[0].clone();
            let guids: Vec<String> = (0..150)
                .map(|i| {
                    let mut m = template.clone();
                    m.guid = format!("-1845090846.{}", 9_000_000 + i);
                    m.name = format!("outbreak-{i}");
                    m.pylum_id = Some(format!("PYLUMCLIENT_OUTBREAK_{i}"));
                    s.machines.push(m.clone());
                    m.guid
                })
                .collect();
            let malop = s
                .malops
                .iter_mut()
                .find(|m| m.kind == ElementKind::Process)
                .unwrap();
            malop.machines = guids.clone();
            (malop.guid.clone(), guids)
        });
        let client = client_with(&sim, PASSWORD, Duration::from_secs(5));
        let listed = client
            .malops_updated_since(ElementKind::Process, 0)
            .await
            .unwrap();
        let by_id = client
            .malops_by_id(ElementKind::Process, &[MalopId::new(id.clone())])
            .await
            .unwrap();
        for malop in [
            listed.iter().find(|m| m.id.as_str() == id).unwrap(),
            &by_id[0],
        ] {
            let mut got: Vec<&str> = malop.machines.iter().map(|m| m.guid.as_str()).collect();
            got.sort();
            let mut want: Vec<&str> = guids.iter().map(String::as_str).collect();
            want.sort();
            assert_eq!(got, want, "every machine, once");
            assert!(
                malop
                    .machines
                    .iter()
                    .all(|m| m.name.starts_with("outbreak-"))
            );
        }
        let machine_queries = sim
            .requests()
            .iter()
            .filter(|r| {
                r.path == "/rest/visualsearch/query/simple" && r.body.contains("affectedMachines")
            })
            .count();
        assert_eq!(
            machine_queries, 2,
            "one for the listing, one for the read by id"
        );
    }
}
