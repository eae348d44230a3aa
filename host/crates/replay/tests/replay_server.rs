//! The replay's simulated server: recorded Malops go into a simulator on 127.0.0.1 and come
//! back through the real client as the service would see them; what a server cannot hold is
//! refused with the reason.

use riposte_domain::{Malop, MalopId, PylumId};
use riposte_replay::{ReplayServer, ReplayServerError, as_served, load_fixture};
use riposte_runtime::MalopSource;
use std::path::{Path, PathBuf};

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../.."))
}

/// Every fixture the example plugins ship (not their expectations).
fn shipped_fixtures() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for plugin in std::fs::read_dir(repo().join("plugins")).expect("plugins/ reads") {
        let dir = plugin.expect("an entry").path().join("fixtures");
        if dir.is_dir() {
            files.extend(riposte_replay::fixture_files(&dir).expect("fixtures list"));
        }
    }
    assert!(
        files.len() >= 20,
        "the example plugins ship fixtures: {files:?}"
    );
    files
}

fn fixture_malop(name: &str) -> Malop {
    let path = repo().join("tests/fixtures/malops").join(name);
    load_fixture(&path).expect("the fixture loads").malops[0].clone()
}

async fn refused(malops: &[Malop]) -> String {
    match ReplayServer::start(malops, 0).await {
        Ok(_) => panic!("a server could hold {malops:?}"),
        Err(e @ ReplayServerError::Unservable(_)) => e.to_string(),
        Err(other) => panic!("refused for another reason: {other}"),
    }
}

#[tokio::test]
async fn every_shipped_fixture_comes_back_through_the_client_unchanged() {
    for path in shipped_fixtures() {
        let fixture = load_fixture(&path).expect("a shipped fixture loads");
        let server = ReplayServer::start(&fixture.malops, 1_800_000_000_000)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for malop in &fixture.malops {
            let served = server
                .offer(malop)
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(
                as_served(served),
                as_served(malop.clone()),
                "{}: Malop {} changed on its way through the simulator",
                path.display(),
                malop.id
            );
        }
    }
}

#[tokio::test]
async fn machines_without_a_sensor_stay_without_one() {
    let mut malop = fixture_malop("ransomware.json");
    let bare = &mut malop.machines[0];
    bare.pylum_id = None;
    bare.connected = false;
    bare.isolated = false;
    bare.os.clear();
    let server = ReplayServer::start(std::slice::from_ref(&malop), 0)
        .await
        .expect("the server starts");
    let served = server.offer(&malop).await.expect("the Malop is served");
    assert_eq!(served.machines[0].pylum_id, None);
    assert!(!served.machines[0].connected);
    assert_eq!(
        served.machines[1].pylum_id, malop.machines[1].pylum_id,
        "the other machines keep their sensors"
    );
    assert!(
        served.machines[1]
            .pylum_id
            .as_ref()
            .is_some_and(|p: &PylumId| p.as_str().starts_with("PYLUMCLIENT_"))
    );
}

#[tokio::test]
async fn list_malops_selects_by_last_update_through_the_client() {
    let first = fixture_malop("ransomware.json");
    let mut second = fixture_malop("cleanup.json");
    second.last_update_time = first.last_update_time + 10_000;
    let server = ReplayServer::start(&[first.clone(), second.clone()], 0)
        .await
        .expect("the server starts");
    let ids = |found: Vec<Malop>| -> Vec<MalopId> { found.into_iter().map(|m| m.id).collect() };
    let t = first.last_update_time;
    let listed = server.list(t, t + 1).await.expect("the window lists");
    assert_eq!(ids(listed), vec![first.id.clone()], "since is inclusive");
    let listed = server.list(t + 1, t + 10_000).await.expect("lists");
    assert!(listed.is_empty(), "until is exclusive: {listed:?}");
    let listed = server.list(t, t + 10_001).await.expect("lists");
    assert_eq!(ids(listed), vec![first.id.clone(), second.id.clone()]);
    let missing = server
        .get(MalopId::new("11.404"))
        .await
        .expect_err("an unknown Malop is not found");
    assert!(missing.to_string().contains("11.404"), "{missing}");
}

#[tokio::test]
async fn what_a_server_cannot_hold_is_refused_with_the_reason_and_the_fix() {
    let base = fixture_malop("known-malware.json");
    assert_eq!(
        base.root_causes[0].hashes.len(),
        2,
        "the fixture has an md5 too"
    );
    let msg = refused(std::slice::from_ref(&base)).await;
    assert!(msg.contains(base.id.as_str()), "{msg}");
    assert!(msg.contains("invoice_0423.exe has 2 hashes"), "{msg}");
    assert!(msg.contains("keep one"), "{msg}");

    let mut one_hash = base.clone();
    one_hash.root_causes[0].hashes.truncate(1);
    let mut no_suspect = one_hash.clone();
    no_suspect.suspects.clear();
    let msg = refused(&[no_suspect]).await;
    assert!(
        msg.contains("ip_addresses or domains but no suspect"),
        "{msg}"
    );

    let mut sensorless = one_hash.clone();
    sensorless.machines[0].pylum_id = None;
    let msg = refused(&[sensorless]).await;
    assert!(msg.contains("has no pylum_id"), "{msg}");
    assert!(msg.contains(sensorless_guid(&one_hash)), "{msg}");

    let mut other = fixture_malop("cleanup.json");
    other.machines[0] = one_hash.machines[0].clone();
    other.machines[0].isolated = !other.machines[0].isolated;
    let msg = refused(&[one_hash.clone(), other]).await;
    assert!(msg.contains("described differently"), "{msg}");

    let msg = refused(&[one_hash.clone(), one_hash]).await;
    assert!(msg.contains("appears twice"), "{msg}");
}

fn sensorless_guid(m: &Malop) -> &str {
    m.machines[0].guid.as_str()
}

#[tokio::test]
async fn a_malop_that_would_reach_the_plugin_changed_is_refused_with_a_diff() {
    let mut malop = fixture_malop("known-malware.json");
    malop.root_causes[0].hashes.truncate(1);
    malop.ip_addresses.push(String::new());
    let server = ReplayServer::start(std::slice::from_ref(&malop), 0)
        .await
        .expect("the server starts");
    let err = server
        .offer(&malop)
        .await
        .expect_err("an empty IP address does not survive the server");
    assert!(matches!(err, ReplayServerError::Changed { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains(malop.id.as_str()), "{msg}");
    assert!(
        msg.lines().any(|l| l.trim() == r#"-    "","#),
        "the diff shows the lost address: {msg}"
    );
    assert!(msg.contains("change the fixture"), "{msg}");

    // Two suspects with one guid collapse into one element on a server.
    let mut twins = fixture_malop("ransomware.json");
    twins.suspects[1].guid = twins.suspects[0].guid.clone();
    let server = ReplayServer::start(std::slice::from_ref(&twins), 0)
        .await
        .expect("the server starts");
    let err = server.offer(&twins).await.expect_err("the twins collapse");
    assert!(matches!(err, ReplayServerError::Changed { .. }), "{err}");
}
