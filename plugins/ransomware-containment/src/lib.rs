//! # ransomware-containment
//!
//! For a ransomware Malop (activity type `RANSOMWARE`, or a detection/activity type naming
//! ransomware): isolate the affected machines whose sensor is connected, and kill the suspect
//! processes on them (`KILL_PROCESS`, grouped by machine by the host).
//!
//! Offline machines are skipped and logged: isolating or remediating through a disconnected
//! sensor does nothing now, and an analyst must follow up on them. Machines already isolated are
//! not isolated again, but their suspects are still killed. Closed and false-positive Malops are
//! left alone.
//!
//! On a tenant where the host cannot read every part of the Malop (the API user has no
//! investigation rights, say), the rule acts on what it has: with the `suspects` part
//! unreadable, it kills the suspects whose machine is known (a Malop with one machine) and logs
//! the others; with the `sensors` part unreadable it cannot tell which machines are connected,
//! so it waits: the host offers the Malop again once the sensors can be read.
//!
//! Config (all optional):
//! - `isolate` (bool, default `true`): isolate connected machines.
//! - `kill-processes` (bool, default `true`): kill the suspect processes on connected machines.
//!
//! Grants it needs: `isolate`, `remediate`.

use riposte_guest::{
    Error, Info, Malop, MalopPart, Rule, Target, config, export_rule, info, isolation, remediation,
    warn,
};

/// What the rule would do for one Malop: a pure function of the Malop and the config.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Machine guids to isolate (connected, not yet isolated).
    pub isolate: Vec<String>,
    /// Suspect processes to kill, on connected machines.
    pub kill: Vec<Target>,
    /// Names of affected machines skipped because their sensor is offline.
    pub offline: Vec<String>,
    /// Names of connected machines already isolated.
    pub already_isolated: Vec<String>,
    /// Suspects skipped because their machine is offline or unknown to the Malop.
    pub unreachable_suspects: Vec<String>,
    /// Suspects skipped because the host could not tell which machine they run on.
    pub unplaced_suspects: Vec<String>,
    /// Nothing done now: the machines' sensor state could not be read, so which machines are
    /// connected is unknown (the host offers the Malop again).
    pub waiting_for_sensors: bool,
}

/// The rule's options, read from the operator's config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Isolate connected machines.
    pub isolate: bool,
    /// Kill the suspect processes.
    pub kill_processes: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            isolate: true,
            kill_processes: true,
        }
    }
}

impl Options {
    fn from_config() -> Self {
        let d = Options::default();
        Options {
            isolate: config::flag("isolate", d.isolate),
            kill_processes: config::flag("kill-processes", d.kill_processes),
        }
    }
}

/// Whether the rule acts on this Malop at all.
pub fn applies(malop: &Malop) -> bool {
    malop.is_ransomware() && !malop.is_closed()
}

/// Decides what to do for `malop`. Returns an empty plan when the Malop is not ransomware.
pub fn plan(malop: &Malop, opts: Options) -> Plan {
    let mut plan = Plan::default();
    if !applies(malop) {
        return plan;
    }
    if malop.lacks(MalopPart::Sensors) {
        plan.waiting_for_sensors = true;
        return plan;
    }
    for machine in &malop.machines {
        if !machine.connected {
            plan.offline.push(machine.name.clone());
        } else if machine.isolated {
            plan.already_isolated.push(machine.name.clone());
        } else if opts.isolate {
            plan.isolate.push(machine.guid.clone());
        }
    }
    if opts.kill_processes {
        for suspect in &malop.suspects {
            if suspect.machine_guid.is_empty() {
                plan.unplaced_suspects.push(suspect.name.clone());
            } else if malop.is_connected(&suspect.machine_guid) {
                let target = suspect.kill();
                if !plan.kill.contains(&target) {
                    plan.kill.push(target);
                }
            } else {
                plan.unreachable_suspects.push(suspect.name.clone());
            }
        }
    }
    plan
}

struct RansomwareContainment;

impl Rule for RansomwareContainment {
    fn describe() -> Info {
        Info::new("ransomware-containment", env!("CARGO_PKG_VERSION"))
            .description(
                "Isolates the connected machines of ransomware Malops and kills the suspect processes",
            )
            .activity_types(["RANSOMWARE"])
    }

    fn on_malop(malop: Malop) -> Result<(), Error> {
        if !applies(&malop) {
            info!("{}: not an open ransomware Malop, nothing to do", malop.id);
            return Ok(());
        }
        let plan = plan(&malop, Options::from_config());
        if plan.waiting_for_sensors {
            warn!(
                "{}: the machines' sensor state could not be read; waiting for it before acting",
                malop.id
            );
            return Ok(());
        }
        if !plan.unplaced_suspects.is_empty() {
            warn!(
                "{}: not killing suspects whose machine is unknown (investigation unreadable): {}",
                malop.id,
                plan.unplaced_suspects.join(", ")
            );
        }
        if !plan.offline.is_empty() {
            warn!(
                "{}: skipping {} offline machine(s), follow up manually: {}",
                malop.id,
                plan.offline.len(),
                plan.offline.join(", ")
            );
        }
        if !plan.already_isolated.is_empty() {
            info!(
                "{}: already isolated: {}",
                malop.id,
                plan.already_isolated.join(", ")
            );
        }
        if !plan.unreachable_suspects.is_empty() {
            warn!(
                "{}: not killing suspects on offline machines: {}",
                malop.id,
                plan.unreachable_suspects.join(", ")
            );
        }

        let mut first_error = None;
        if !plan.isolate.is_empty() {
            let reason = format!(
                "ransomware Malop {} ({}): isolating {} connected machine(s) to stop encryption from spreading",
                malop.id,
                malop.display_name,
                plan.isolate.len()
            );
            match isolation::isolate(Some(&malop.id), &plan.isolate, &reason)
                .and_then(|r| r.into_result())
            {
                Ok(receipt) => info!("{}: isolation {receipt}", malop.id),
                Err(e) => {
                    warn!(
                        "{}: isolation refused: {}: {}",
                        malop.id,
                        e.kind(),
                        e.detail()
                    );
                    first_error.get_or_insert(e);
                }
            }
        }
        if !plan.kill.is_empty() {
            let reason = format!(
                "ransomware Malop {} ({}): killing {} suspect process(es) on connected machines",
                malop.id,
                malop.display_name,
                plan.kill.len()
            );
            match remediation::remediate(Some(&malop.id), &plan.kill, &reason)
                .and_then(|r| r.into_result())
            {
                Ok(receipt) => info!("{}: kill remediation {receipt}", malop.id),
                Err(e) => {
                    warn!("{}: kill refused: {}: {}", malop.id, e.kind(), e.detail());
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

export_rule!(RansomwareContainment);

#[cfg(test)]
mod tests {
    use super::*;
    use riposte_guest::ManagementStatus;
    use riposte_guest::testing::{MachineBuilder, MalopBuilder, SuspectBuilder};

    fn suspect(guid: &str, machine: &str) -> SuspectBuilder {
        SuspectBuilder::new(guid, &format!("{guid}.exe"), machine)
    }

    fn ransomware() -> MalopBuilder {
        MalopBuilder::new("11.-7780537507363356527")
            .display_name("locker.exe")
            .detection_type("KNOWN_MALWARE")
            .activity_types(["RANSOMWARE"])
            .machine(MachineBuilder::new("m1", "DESKTOP-1"))
            .machine(MachineBuilder::new("m2", "DESKTOP-2").isolated(true))
            .machine(MachineBuilder::new("m3", "LAPTOP-3").connected(false))
            .suspect(suspect("p1", "m1"))
            .suspect(suspect("p2", "m2"))
            .suspect(suspect("p3", "m3"))
    }

    #[test]
    fn isolates_connected_and_kills_reachable_suspects() {
        let p = plan(&ransomware().build(), Options::default());
        assert_eq!(p.isolate, vec!["m1"]);
        assert_eq!(p.already_isolated, vec!["DESKTOP-2"]);
        assert_eq!(p.offline, vec!["LAPTOP-3"]);
        assert_eq!(
            p.kill,
            vec![
                Target::kill_process("m1", "p1"),
                Target::kill_process("m2", "p2")
            ]
        );
        assert_eq!(p.unreachable_suspects, vec!["p3.exe"]);
    }

    #[test]
    fn acts_on_what_it_has_when_investigation_is_unreadable() {
        // Three machines: which one a suspect runs on is unknown, so none is killed.
        let m = ransomware().unreadable([MalopPart::Suspects]).build();
        let p = plan(&m, Options::default());
        assert_eq!(p.isolate, vec!["m1"]);
        assert_eq!(p.kill, vec![]);
        assert_eq!(p.unplaced_suspects, vec!["p1.exe", "p2.exe", "p3.exe"]);
        // One machine: every suspect is on it.
        let m = MalopBuilder::new("11.1")
            .activity_types(["RANSOMWARE"])
            .machine(MachineBuilder::new("m1", "DESKTOP-1"))
            .suspect(suspect("p1", ""))
            .unreadable([MalopPart::Suspects])
            .build();
        let p = plan(&m, Options::default());
        assert_eq!(p.isolate, vec!["m1"]);
        assert_eq!(p.kill, vec![Target::kill_process("m1", "p1")]);
        assert!(p.unplaced_suspects.is_empty());
    }

    #[test]
    fn waits_when_the_sensors_are_unreadable() {
        let m = ransomware().unreadable([MalopPart::Sensors]).build();
        let p = plan(&m, Options::default());
        assert!(p.waiting_for_sensors && p.isolate.is_empty() && p.kill.is_empty());
    }

    #[test]
    fn ignores_other_and_closed_malops() {
        let m = ransomware().activity_types(["MALICIOUS_INFECTION"]).build();
        assert_eq!(plan(&m, Options::default()), Plan::default());
        let m = ransomware()
            .management_status(ManagementStatus::FalsePositive)
            .build();
        assert_eq!(plan(&m, Options::default()), Plan::default());
    }

    #[test]
    fn options_switch_actions_off() {
        let p = plan(
            &ransomware().build(),
            Options {
                isolate: false,
                kill_processes: false,
            },
        );
        assert!(p.isolate.is_empty() && p.kill.is_empty());
    }
}
