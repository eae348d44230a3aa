//! # cleanup
//!
//! Removes what a Malop left behind on its machines:
//! - quarantines the files the server marks for remediation (`QUARANTINE_FILE`, on the file's
//!   machine);
//! - deletes the autorun registry entries of the suspect processes (`DELETE_REGISTRY_KEY`,
//!   target = the registry entry's guid, machine = the suspect's machine), so the malware does
//!   not come back at the next logon or boot.
//!
//! Everything goes in one remediation request (the host groups targets by machine). Items on
//! machines whose sensor is offline are skipped and logged: the remediation could not reach them
//! now. Closed and false-positive Malops are left alone.
//!
//! When the host could not read the Malop's sensor state, which machines are connected is
//! unknown, so the rule waits (the host offers the Malop again); files and suspects whose
//! machine is unknown (investigation unreadable, several machines) are skipped and logged.
//!
//! Config (all optional):
//! - `quarantine-files` (bool, default `true`): quarantine the files to remediate.
//! - `delete-autoruns` (bool, default `true`): delete the suspects' autorun registry entries.
//!
//! Grants it needs: `remediate`.

use riposte_guest::{
    Error, Info, Malop, MalopPart, Rule, Target, config, export_rule, info, remediation, warn,
};

/// The operator's options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Quarantine the files to remediate.
    pub quarantine_files: bool,
    /// Delete the suspects' autorun registry entries.
    pub delete_autoruns: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            quarantine_files: true,
            delete_autoruns: true,
        }
    }
}

impl Options {
    fn from_config() -> Self {
        let d = Options::default();
        Options {
            quarantine_files: config::flag("quarantine-files", d.quarantine_files),
            delete_autoruns: config::flag("delete-autoruns", d.delete_autoruns),
        }
    }
}

/// What the rule would do for one Malop.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// The remediation targets: quarantines first, then registry deletions.
    pub targets: Vec<Target>,
    /// Items skipped because their machine is offline (or not among the Malop's machines).
    pub offline: Vec<String>,
    /// Items skipped because the host could not tell which machine they are on.
    pub unplaced: Vec<String>,
    /// Nothing done now: the machines' sensor state could not be read.
    pub waiting_for_sensors: bool,
}

/// Decides what to clean up for `malop`.
pub fn plan(malop: &Malop, opts: Options) -> Plan {
    let mut plan = Plan::default();
    if malop.is_closed() {
        return plan;
    }
    if malop.lacks(MalopPart::Sensors) {
        plan.waiting_for_sensors = true;
        return plan;
    }
    let add = |target: Target, what: String, plan: &mut Plan| {
        if target.machine_guid.is_empty() {
            plan.unplaced.push(what);
        } else if !malop.is_connected(&target.machine_guid) {
            plan.offline.push(what);
        } else if !plan.targets.contains(&target) {
            plan.targets.push(target);
        }
    };
    if opts.quarantine_files {
        for file in &malop.files {
            add(file.quarantine(), format!("file {}", file.name), &mut plan);
        }
    }
    if opts.delete_autoruns {
        for suspect in &malop.suspects {
            for (target, key) in suspect
                .autorun_key_targets()
                .into_iter()
                .zip(&suspect.autorun_keys)
            {
                add(
                    target,
                    format!("autorun {} of {}", key.name, suspect.name),
                    &mut plan,
                );
            }
        }
    }
    plan
}

struct Cleanup;

impl Rule for Cleanup {
    fn describe() -> Info {
        Info::new("cleanup", env!("CARGO_PKG_VERSION")).description(
            "Quarantines the files to remediate and deletes the autorun registry entries of suspect processes",
        )
    }

    fn on_malop(malop: Malop) -> Result<(), Error> {
        let plan = plan(&malop, Options::from_config());
        if plan.waiting_for_sensors {
            warn!(
                "{}: the machines' sensor state could not be read; waiting for it",
                malop.id
            );
            return Ok(());
        }
        if !plan.unplaced.is_empty() {
            warn!(
                "{}: skipping {} item(s) whose machine is unknown (investigation unreadable): {}",
                malop.id,
                plan.unplaced.len(),
                plan.unplaced.join("; ")
            );
        }
        if !plan.offline.is_empty() {
            warn!(
                "{}: skipping {} item(s) on offline machines: {}",
                malop.id,
                plan.offline.len(),
                plan.offline.join("; ")
            );
        }
        if plan.targets.is_empty() {
            info!("{}: nothing to clean up", malop.id);
            return Ok(());
        }
        let files = plan
            .targets
            .iter()
            .filter(|t| t.kind == riposte_guest::ActionKind::QuarantineFile)
            .count();
        let keys = plan.targets.len() - files;
        let reason = format!(
            "cleanup of Malop {} ({}): quarantine {files} file(s) the server marks for remediation, delete {keys} autorun registry entr{} of suspect processes",
            malop.id,
            malop.display_name,
            if keys == 1 { "y" } else { "ies" }
        );
        let receipt =
            remediation::remediate(Some(&malop.id), &plan.targets, &reason)?.into_result()?;
        info!(
            "{}: remediation {receipt} for {} target(s)",
            malop.id,
            plan.targets.len()
        );
        Ok(())
    }
}

export_rule!(Cleanup);

#[cfg(test)]
mod tests {
    use super::*;
    use riposte_guest::testing::{FileBuilder, MachineBuilder, MalopBuilder, SuspectBuilder};
    use riposte_guest::{ManagementStatus, Priority};

    fn malop() -> MalopBuilder {
        MalopBuilder::new("11.3398471827149036532")
            .display_name("updater.exe")
            .detection_type("KNOWN_MALWARE")
            .activity_types(["MALICIOUS_INFECTION"])
            .management_status(ManagementStatus::Open)
            .priority(Priority::Medium)
            .machine(MachineBuilder::new("m1", "m1"))
            .machine(MachineBuilder::new("m2", "m2").connected(false))
            .suspect(
                SuspectBuilder::new("p1", "updater.exe", "m1").autorun_key("r1", "Run\\Updater"),
            )
            .suspect(
                SuspectBuilder::new("p2", "updater.exe", "m2").autorun_key("r2", "Run\\Updater"),
            )
            .file(FileBuilder::new("f1", "updater.exe", "m1"))
            .file(FileBuilder::new("f2", "updater.exe", "m2"))
    }

    #[test]
    fn quarantines_files_and_deletes_autoruns_on_connected_machines() {
        let p = plan(&malop().build(), Options::default());
        assert_eq!(
            p.targets,
            vec![
                Target::quarantine_file("m1", "f1"),
                Target::delete_registry_key("m1", "r1")
            ]
        );
        assert_eq!(p.offline.len(), 2);
    }

    #[test]
    fn closed_malops_and_switches() {
        let m = malop()
            .management_status(ManagementStatus::FalsePositive)
            .build();
        assert_eq!(plan(&m, Options::default()), Plan::default());
        let p = plan(
            &malop().build(),
            Options {
                quarantine_files: false,
                delete_autoruns: true,
            },
        );
        assert_eq!(p.targets, vec![Target::delete_registry_key("m1", "r1")]);
    }

    #[test]
    fn waits_for_the_sensors_and_skips_items_whose_machine_is_unknown() {
        let m = malop().unreadable([MalopPart::Sensors]).build();
        let p = plan(&m, Options::default());
        assert!(p.waiting_for_sensors && p.targets.is_empty());
        // Two machines and no investigation: no item can be placed.
        let m = malop()
            .unreadable([MalopPart::Suspects, MalopPart::Files])
            .build();
        let p = plan(&m, Options::default());
        assert!(p.targets.is_empty());
        assert_eq!(p.unplaced, ["file updater.exe", "file updater.exe"]);
        // One machine: the files are on it; autorun keys are not known without investigation.
        let m = MalopBuilder::new("11.1")
            .machine(MachineBuilder::new("m1", "m1"))
            .file(FileBuilder::new("f1", "updater.exe", ""))
            .suspect(SuspectBuilder::new("p1", "updater.exe", "").autorun_key("r1", "Run\\U"))
            .unreadable([MalopPart::Suspects, MalopPart::Files])
            .build();
        let p = plan(&m, Options::default());
        assert_eq!(p.targets, vec![Target::quarantine_file("m1", "f1")]);
    }
}
