//! What a cycle asks of the server per Malop: the listed record is not read again, one
//! sensors query serves a batch of Malops, each `visualsearch` part is read once for all
//! plugins, and a part no plugin reads is not queried at all; a machine this host isolated
//! since a batch's sensors were read is not isolated again for the batch's next Malop.

use riposte_client::SensorBatch;
use riposte_domain::{ElementKind, MalopId, MalopPart};
use riposte_e2e::service_support::{
    PluginSpec, ServiceEnv, Setup, add_ransomware_malop, carried_out, client, start_sim,
};
use riposte_service::{ReadMalop, Service};
use riposte_sim::{LoggedRequest, MalopKind, MalopSpec, SimHandle};
use std::collections::BTreeMap;

const VISUALSEARCH: &str = "/rest/visualsearch/query/simple";
const SENSORS: &str = "/rest/sensors/query";
const CRIMES: &str = "/rest/crimes/unified";

/// The requests of `sim` to `path` since `from`.
fn requests_to(sim: &SimHandle, from: usize, path: &str) -> Vec<LoggedRequest> {
    sim.requests()
        .into_iter()
        .skip(from)
        .filter(|r| r.method == "POST" && r.path.starts_with(path))
        .collect()
}

/// How many `visualsearch` queries named each Malop guid of `malops`.
fn reads_per_malop(queries: &[LoggedRequest], malops: &[String]) -> BTreeMap<String, usize> {
    malops
        .iter()
        .map(|id| {
            let quoted = format!("\"{id}\"");
            let named = queries.iter().filter(|q| q.body.contains(&quoted)).count();
            (id.clone(), named)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cycle_reads_each_malop_once_for_all_plugins_with_one_sensors_query() {
    let sim = start_sim(21, 40).await;
    // Two plugins that read every part (the default), subscribed to every Malop.
    let setup = Setup::new(vec![
        PluginSpec::python_triage(),
        PluginSpec::legacy().reads(&["suspects", "files", "network", "sensors"]),
    ]);
    let env = ServiceEnv::new(&sim, &setup);
    let service = env.service(&sim).await;
    let from = sim.requests().len();
    let report = service.run_cycle().await.expect("the cycle");
    assert_eq!(report.malops_seen, 40, "{report:?}");
    let crimes = requests_to(&sim, from, CRIMES);
    assert!(
        crimes.iter().all(|r| !r.body.contains("guidList")),
        "a listed Malop is not read again by id: {:?}",
        crimes.iter().map(|r| &r.body).collect::<Vec<_>>()
    );
    // Each element kind is polled on its own: one sensors query for each kind's Malops.
    let sensors = requests_to(&sim, from, SENSORS);
    assert_eq!(
        sensors.len(),
        ElementKind::ALL.len(),
        "one sensors query per element kind for the 40 Malops' machines"
    );
    let ids: Vec<String> = sim.malops().iter().map(|m| m.guid.clone()).collect();
    let reads = reads_per_malop(&requests_to(&sim, from, VISUALSEARCH), &ids);
    let evaluated: Vec<&String> = reads
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(id, _)| id)
        .collect();
    assert!(!evaluated.is_empty(), "{report:?}");
    assert!(
        reads.values().all(|n| *n == 0 || *n == 3),
        "suspects, files and network once per Malop, shared by both plugins: {reads:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_no_plugin_reads_are_not_queried_nor_read_again() {
    let sim = start_sim(22, 12).await;
    // Comments and status only: reads nothing beyond the crimes/unified record.
    let setup = Setup::new(vec![PluginSpec::python_triage().reads(&[])]);
    let env = ServiceEnv::new(&sim, &setup);
    let service = env.service(&sim).await;
    let from = sim.requests().len();
    let first = service.run_cycle().await.expect("the first cycle");
    assert!(first.invocations > 0, "{first:?}");
    assert_eq!(
        first.incomplete, 0,
        "a part not read is not a failure: {first:?}"
    );
    assert!(requests_to(&sim, from, VISUALSEARCH).is_empty());
    assert!(requests_to(&sim, from, SENSORS).is_empty());
    // The overlap window lists the newest Malops again: they are handled at that view.
    let second = service.run_cycle().await.expect("the second cycle");
    assert!(second.malops_seen >= 1, "{second:?}");
    assert_eq!(
        (second.invocations, second.reread, second.incomplete),
        (0, 0, 0),
        "{second:?}"
    );
    let store = env.store();
    use riposte_store::prelude::*;
    assert_eq!(store.incomplete_summary().unwrap().count, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_that_may_isolate_always_has_the_sensors_read() {
    let sim = start_sim(23, 12).await;
    add_ransomware_malop(&sim);
    // It says it reads nothing, but it may isolate: sensors are read for the gate and the
    // isolation; nothing else.
    let setup = Setup::new(vec![PluginSpec::legacy().reads(&[])]);
    let env = ServiceEnv::new(&sim, &setup);
    let service = env.service(&sim).await;
    let from = sim.requests().len();
    let report = service.run_cycle().await.expect("the cycle");
    assert!(report.invocations > 0, "{report:?}");
    let queries = requests_to(&sim, from, VISUALSEARCH);
    assert!(
        queries.is_empty(),
        "{:?}",
        queries.iter().map(|q| &q.body).collect::<Vec<_>>()
    );
    let sensors = requests_to(&sim, from, SENSORS).len();
    assert!(
        (1..=ElementKind::ALL.len()).contains(&sensors),
        "one sensors query per element kind polled, not one per Malop: {sensors}"
    );
}

/// A batch's Malops are read with one sensors answer, so a Malop evaluated after another
/// isolated their machine was read with the machine not isolated: the isolation the server
/// confirmed to this host after that answer was read is shown to its plugin instead, and
/// not asked for twice. An answer read after the isolation is the server's word:
/// once an analyst unisolated the machine, a new Malop on it is contained again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_machine_isolated_since_its_batch_was_read_is_not_isolated_again_but_is_after_an_unisolation()
 {
    let sim = start_sim(22, 4).await;
    let machine = sim.with_state(|s| {
        s.machines
            .iter()
            .find(|m| m.pylum_id.is_some() && !m.isolated)
            .map(|m| m.guid.clone())
            .expect("a machine with a sensor")
    });
    let new_malop = || {
        let spec = MalopSpec {
            kind: Some(MalopKind::Ransomware),
            machines_online: true,
            machine: Some(machine.clone()),
        };
        MalopId::new(sim.create_malop(spec).expect("the machine exists").id)
    };
    let setup = Setup::new(vec![PluginSpec::ransomware_containment()]);
    let env = ServiceEnv::new(&sim, &setup);
    let service = env.service(&sim).await;
    let client = client(&sim);
    // Read as one batch is: every Malop with one sensors answer, read once.
    let read = async |ids: &[MalopId]| {
        let mut malops = Vec::new();
        for id in ids {
            malops.push(client.get_malop(id).await.expect("the Malop is listed"));
        }
        let sensors = SensorBatch::of(&malops);
        let mut read = Vec::new();
        for malop in malops {
            let details = client.read_parts(malop, &MalopPart::ALL, &sensors).await;
            assert!(details.failures.is_empty(), "{:?}", details.failures);
            assert!(details.malop.machines.iter().all(|m| !m.isolated));
            read.push(ReadMalop {
                malop: details.malop,
                machines_read: details.machines_read,
            });
        }
        read
    };
    let isolations = || {
        sim.requests()
            .iter()
            .filter(|r| r.path == "/rest/monitor/global/commands/isolate" && carried_out(r))
            .count()
    };
    let kills_of = |malop: &MalopId| {
        sim.requests()
            .iter()
            .filter(|r| r.path == "/rest/remediate" && carried_out(r))
            .filter(|r| r.body.contains(malop.as_str()))
            .count()
    };
    let batch = [new_malop(), new_malop()];
    let read_together = read(&batch).await;
    assert!(read_together.iter().all(|r| r.machines_read.is_some()));
    let before = isolations();
    for malop in read_together {
        // One after the other, as two invocations of a batch that do not overlap.
        evaluate(&service, malop).await;
    }
    assert_eq!(isolations() - before, 1, "one isolation for the two Malops");
    assert!(sim.with_state(|s| s.machines.iter().any(|m| m.guid == machine && m.isolated)));
    assert_eq!(
        batch.iter().map(kills_of).collect::<Vec<_>>(),
        [1, 1],
        "both Malops' suspects are killed"
    );
    // An analyst unisolates the machine; a new Malop on it is read after that.
    sim.with_state(|s| {
        for m in s.machines.iter_mut().filter(|m| m.guid == machine) {
            m.isolated = false;
        }
    });
    let later = new_malop();
    let before = isolations();
    for malop in read(std::slice::from_ref(&later)).await {
        evaluate(&service, malop).await;
    }
    assert_eq!(
        isolations() - before,
        1,
        "read after the unisolation: the machine is isolated again"
    );
    assert!(sim.with_state(|s| s.machines.iter().any(|m| m.guid == machine && m.isolated)));
}

/// Evaluates `malop` with every plugin of `service`, as a batch does, and checks it ran.
async fn evaluate(service: &Service, malop: ReadMalop) {
    let malop = std::sync::Arc::new(malop);
    let work: Vec<_> = service
        .plugins()
        .iter()
        .map(|p| (p.clone(), malop.clone()))
        .collect();
    let report = service.evaluate_batch(futures::stream::iter(work)).await;
    assert_eq!(
        (report.invocations, report.handled, report.traps),
        (1, 1, 0),
        "{report:?}"
    );
}
