//! A simulated world built from recorded Malops (replay fixtures) instead of a seed.
//!
//! Each Malop becomes what a server would hold for it, so that the real client, reading it
//! back over HTTP, produces the same Malop: its machines become sensors (or sensor-less
//! machines), its IP addresses and domains become connections of its first suspect. What a
//! server cannot express is refused with the reason, never dropped: a root cause with two
//! hashes, network indicators without a suspect process to own them, sensor state on a
//! machine without a sensor, one machine described two ways.

use super::data::{SimConnection, SimFile, SimMachine, SimMalop, SimProcess};
use super::rng::Rng;
use super::state::SimState;
use riposte_domain::{Machine, Malop, MalopId, Priority};
use std::collections::BTreeMap;

/// A recorded Malop that a server could not serve as recorded.
#[derive(Debug, thiserror::Error)]
#[error("Malop {malop}: {reason}")]
pub struct Unservable {
    /// The Malop.
    pub malop: MalopId,
    /// What a server cannot express, and how to fix the recording.
    pub reason: String,
}

impl SimState {
    /// A world holding exactly `malops` and the machines they name, with the server clock at
    /// `now`; `seed` makes the ids created at run time.
    pub fn from_recorded(
        malops: &[Malop],
        seed: u64,
        now: i64,
        username: String,
        password: String,
    ) -> Result<Self, Unservable> {
        let mut rng = Rng::new(seed);
        let mut machines: BTreeMap<&str, (&MalopId, &Machine)> = BTreeMap::new();
        let mut order = Vec::new();
        let mut served: Vec<SimMalop> = Vec::new();
        for malop in malops {
            let fail = |reason: String| Unservable {
                malop: malop.id.clone(),
                reason,
            };
            if served.iter().any(|m| m.guid == malop.id.as_str()) {
                return Err(fail(
                    "the id appears twice; a server holds one Malop per id".into(),
                ));
            }
            for machine in &malop.machines {
                check_sensor(machine).map_err(fail)?;
                match machines.get(machine.guid.as_str()) {
                    Some((first, seen)) if *seen != machine => {
                        return Err(fail(format!(
                            "machine {} is described differently in Malop {first}; a server has one state per machine: make them agree or split the fixture",
                            machine.guid
                        )));
                    }
                    Some(_) => {}
                    None => {
                        machines.insert(machine.guid.as_str(), (&malop.id, machine));
                        order.push(machine);
                    }
                }
            }
            served.push(sim_malop(malop, &mut rng).map_err(fail)?);
        }
        let machines = order
            .into_iter()
            .enumerate()
            .map(|(i, m)| sim_machine(m, i))
            .collect();
        Ok(Self::with_world(
            rng, now, machines, served, username, password,
        ))
    }
}

fn check_sensor(machine: &Machine) -> Result<(), String> {
    if machine.pylum_id.is_none()
        && (machine.connected
            || machine.isolated
            || !machine.os.is_empty()
            || machine.group.is_some())
    {
        return Err(format!(
            "machine {} ({}) has no pylum_id but a connection state, isolation, OS or group, which come from its sensor: give its pylum_id, or clear connected, isolated, os and group",
            machine.guid, machine.name
        ));
    }
    Ok(())
}

fn sim_machine(m: &Machine, index: usize) -> SimMachine {
    SimMachine {
        guid: m.guid.to_string(),
        name: m.name.clone(),
        pylum_id: m.pylum_id.as_ref().map(ToString::to_string),
        os: m.os.clone(),
        online: m.connected,
        isolated: m.isolated,
        primed: None,
        ip: format!("10.0.{}.{}", index / 250, 1 + index % 250),
        group: m.group.clone(),
    }
}

fn sim_malop(m: &Malop, rng: &mut Rng) -> Result<SimMalop, String> {
    if let Some(cause) = m.root_causes.iter().find(|c| c.hashes.len() > 1) {
        return Err(format!(
            "root cause {} has {} hashes, but a server reports one per root cause (rootCauseElementHashes): keep one",
            cause.name,
            cause.hashes.len()
        ));
    }
    let mut suspects: Vec<SimProcess> = m
        .suspects
        .iter()
        .map(|s| SimProcess {
            guid: s.guid.to_string(),
            name: s.name.clone(),
            machine: s.machine_guid.to_string(),
            sha1: s.image_sha1.clone(),
            autoruns: s
                .autorun_keys
                .iter()
                .map(|k| (k.guid.to_string(), k.name.clone()))
                .collect(),
            connections: Vec::new(),
        })
        .collect();
    let indicators = m.ip_addresses.len().max(m.domains.len());
    match suspects.first_mut() {
        Some(owner) => owner.connections = connections(m, &owner.machine, rng),
        None if indicators > 0 => {
            return Err(
                "it lists ip_addresses or domains but no suspect; a server finds them through the suspects' connections: add the suspect process or drop them".into(),
            );
        }
        None => {}
    }
    Ok(SimMalop {
        guid: m.id.to_string(),
        kind: m.kind,
        name: m.display_name.clone(),
        detection_type: m.detection_type.clone(),
        activity_types: m.activity_types.clone(),
        status: m.management_status,
        priority: priority_api(m.priority).into(),
        creation_time: m.creation_time,
        last_update_time: m.last_update_time,
        machines: m.machines.iter().map(|x| x.guid.to_string()).collect(),
        suspects,
        files: m
            .files
            .iter()
            .map(|f| SimFile {
                guid: f.guid.to_string(),
                name: f.name.clone(),
                md5: f.md5.clone(),
                sha1: f.sha1.clone(),
                machine: f.machine_guid.to_string(),
            })
            .collect(),
        users: m
            .users
            .iter()
            .map(|u| (u.guid.to_string(), u.name.clone()))
            .collect(),
        comments: Vec::new(),
        root_causes: m.root_causes.clone(),
    })
}

/// One connection per IP address or domain, paired by position (`""`: no address).
fn connections(m: &Malop, machine: &str, rng: &mut Rng) -> Vec<SimConnection> {
    let prefix = machine.split('.').next().unwrap_or("0");
    (0..m.ip_addresses.len().max(m.domains.len()))
        .map(|i| SimConnection {
            guid: format!("{prefix}.{}", rng.i64()),
            remote_ip: m.ip_addresses.get(i).cloned().unwrap_or_default(),
            domain: m.domains.get(i).cloned(),
        })
        .collect()
}

fn priority_api(p: Priority) -> &'static str {
    match p {
        Priority::High => "HIGH",
        Priority::Medium => "MEDIUM",
        Priority::Low => "LOW",
        Priority::Unknown => "UNKNOWN",
    }
}
