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
//! Config (all optional):
//! - `quarantine-files` (bool, default `true`): quarantine the files to remediate.
//! - `delete-autoruns` (bool, default `true`): delete the suspects' autorun registry entries.
//!
//! Grants it needs: `remediate`.

use riposte_guest::{
    Error, Info, Malop, Rule, Target, config, export_rule, info, remediation, warn,
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
}

/// Decides what to clean up for `malop`.
pub fn plan(malop: &Malop, opts: Options) -> Plan {
    let mut plan = Plan::default();
    if malop.is_closed() {
        return plan;
    }
    let add = |target: Target, what: String, plan: &mut Plan| {
        if !malop.is_connected(&target.machine_guid) {
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
        let receipt = remediation::remediate(Some(&malop.id), &plan.targets, &reason)?;
        info!(
            "{}: remediation {} ({}) for {} target(s)",
            malop.id,
            receipt.action_id,
            receipt.disposition,
            plan.targets.len()
        );
        Ok(())
    }
}

export_rule!(Cleanup);

#[cfg(test)]
mod tests {
    use super::*;
    use riposte_guest::{
        ElementKind, FileItem, Machine, ManagementStatus, Priority, RegistryEntry, Suspect,
    };

    fn machine(guid: &str, connected: bool) -> Machine {
        Machine {
            guid: guid.into(),
            name: guid.into(),
            pylum_id: None,
            os: "WINDOWS".into(),
            connected,
            isolated: false,
        }
    }

    fn malop() -> Malop {
        Malop {
            id: "11.3398471827149036532".into(),
            kind: ElementKind::Process,
            display_name: "updater.exe".into(),
            detection_type: "KNOWN_MALWARE".into(),
            activity_types: vec!["MALICIOUS_INFECTION".into()],
            management_status: ManagementStatus::Open,
            priority: Priority::Medium,
            creation_time: 1,
            last_update_time: 2,
            root_causes: vec![],
            machines: vec![machine("m1", true), machine("m2", false)],
            suspects: vec![
                Suspect {
                    guid: "p1".into(),
                    name: "updater.exe".into(),
                    machine_guid: "m1".into(),
                    image_sha1: None,
                    autorun_keys: vec![RegistryEntry {
                        guid: "r1".into(),
                        name: "Run\\Updater".into(),
                    }],
                },
                Suspect {
                    guid: "p2".into(),
                    name: "updater.exe".into(),
                    machine_guid: "m2".into(),
                    image_sha1: None,
                    autorun_keys: vec![RegistryEntry {
                        guid: "r2".into(),
                        name: "Run\\Updater".into(),
                    }],
                },
            ],
            files: vec![
                FileItem {
                    guid: "f1".into(),
                    name: "updater.exe".into(),
                    md5: None,
                    sha1: None,
                    machine_guid: "m1".into(),
                },
                FileItem {
                    guid: "f2".into(),
                    name: "updater.exe".into(),
                    md5: None,
                    sha1: None,
                    machine_guid: "m2".into(),
                },
            ],
            users: vec![],
            ip_addresses: vec![],
            domains: vec![],
        }
    }

    #[test]
    fn quarantines_files_and_deletes_autoruns_on_connected_machines() {
        let p = plan(&malop(), Options::default());
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
        let mut m = malop();
        m.management_status = ManagementStatus::FalsePositive;
        assert_eq!(plan(&m, Options::default()), Plan::default());
        let p = plan(
            &malop(),
            Options {
                quarantine_files: false,
                delete_autoruns: true,
            },
        );
        assert_eq!(p.targets, vec![Target::delete_registry_key("m1", "r1")]);
    }
}
