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
//! Config (all optional):
//! - `isolate` (bool, default `true`): isolate connected machines.
//! - `kill-processes` (bool, default `true`): kill the suspect processes on connected machines.
//!
//! Grants it needs: `isolate`, `remediate`.

use riposte_guest::{
    Error, Info, Malop, Rule, Target, config, export_rule, info, isolation, remediation, warn,
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
            if malop.is_connected(&suspect.machine_guid) {
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
            match isolation::isolate(Some(&malop.id), &plan.isolate, &reason) {
                Ok(receipt) => info!(
                    "{}: isolation {} ({})",
                    malop.id, receipt.action_id, receipt.disposition
                ),
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
            match remediation::remediate(Some(&malop.id), &plan.kill, &reason) {
                Ok(receipt) => info!(
                    "{}: kill remediation {} ({})",
                    malop.id, receipt.action_id, receipt.disposition
                ),
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
    use riposte_guest::{ElementKind, Machine, ManagementStatus, Priority, Suspect};

    fn machine(guid: &str, name: &str, connected: bool, isolated: bool) -> Machine {
        Machine {
            guid: guid.into(),
            name: name.into(),
            pylum_id: None,
            os: "WINDOWS".into(),
            connected,
            isolated,
        }
    }

    fn suspect(guid: &str, machine: &str) -> Suspect {
        Suspect {
            guid: guid.into(),
            name: format!("{guid}.exe"),
            machine_guid: machine.into(),
            image_sha1: None,
            autorun_keys: vec![],
        }
    }

    fn ransomware() -> Malop {
        Malop {
            id: "11.-7780537507363356527".into(),
            kind: ElementKind::Process,
            display_name: "locker.exe".into(),
            detection_type: "KNOWN_MALWARE".into(),
            activity_types: vec!["RANSOMWARE".into()],
            management_status: ManagementStatus::Unread,
            priority: Priority::High,
            creation_time: 1,
            last_update_time: 2,
            root_causes: vec![],
            machines: vec![
                machine("m1", "DESKTOP-1", true, false),
                machine("m2", "DESKTOP-2", true, true),
                machine("m3", "LAPTOP-3", false, false),
            ],
            suspects: vec![
                suspect("p1", "m1"),
                suspect("p2", "m2"),
                suspect("p3", "m3"),
            ],
            files: vec![],
            users: vec![],
            ip_addresses: vec![],
            domains: vec![],
        }
    }

    #[test]
    fn isolates_connected_and_kills_reachable_suspects() {
        let p = plan(&ransomware(), Options::default());
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
    fn ignores_other_and_closed_malops() {
        let mut m = ransomware();
        m.activity_types = vec!["MALICIOUS_INFECTION".into()];
        assert_eq!(plan(&m, Options::default()), Plan::default());
        let mut m = ransomware();
        m.management_status = ManagementStatus::FalsePositive;
        assert_eq!(plan(&m, Options::default()), Plan::default());
    }

    #[test]
    fn options_switch_actions_off() {
        let p = plan(
            &ransomware(),
            Options {
                isolate: false,
                kill_processes: false,
            },
        );
        assert!(p.isolate.is_empty() && p.kill.is_empty());
    }
}
