//! Builders for the records a rule receives, for native unit tests of its decisions.
//!
//! A test names only the fields it is about; every other field gets the default its builder
//! states. When the WIT record grows a field, the builder gives it a default and the tests keep
//! compiling, which a struct literal of every field would not.
//!
//! [`MalopBuilder::unreadable`] gives the Malop as the host offers it when a part could not be
//! read: [`MalopBuilder::build`] leaves the fields of that part as the host leaves them (see
//! [`MalopPart`]), so a test of how a rule handles a partly-read Malop sees what the rule
//! would see.

use crate::{
    Disposition, ElementKind, FileItem, Machine, Malop, MalopPart, ManagementStatus, Priority,
    Receipt, RegistryEntry, RootCause, Suspect, TimestampMs, User,
};

/// Collects strings.
fn strings<I, S>(items: I) -> Vec<String>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    items.into_iter().map(Into::into).collect()
}

/// A [`Malop`] for tests.
///
/// `MalopBuilder::new(id)` starts from: kind [`ElementKind::Process`], empty display name and
/// detection type, no activity type, status [`ManagementStatus::Unread`], priority
/// [`Priority::Unknown`], creation and last update time 0, no root cause, machine, suspect,
/// file, user, IP address or domain, and every part readable.
#[derive(Debug, Clone)]
pub struct MalopBuilder {
    malop: Malop,
}

impl MalopBuilder {
    /// A Malop with guid `id` and the defaults above.
    pub fn new(id: impl Into<String>) -> Self {
        MalopBuilder {
            malop: Malop {
                id: id.into(),
                kind: ElementKind::Process,
                display_name: String::new(),
                detection_type: String::new(),
                activity_types: Vec::new(),
                management_status: ManagementStatus::Unread,
                priority: Priority::Unknown,
                creation_time: 0,
                last_update_time: 0,
                root_causes: Vec::new(),
                machines: Vec::new(),
                suspects: Vec::new(),
                files: Vec::new(),
                users: Vec::new(),
                ip_addresses: Vec::new(),
                domains: Vec::new(),
                unreadable: Vec::new(),
            },
        }
    }

    /// The element kind (process or logon session).
    pub fn kind(mut self, kind: ElementKind) -> Self {
        self.malop.kind = kind;
        self
    }

    /// The display name, e.g. `locker.exe`.
    pub fn display_name(mut self, name: impl Into<String>) -> Self {
        self.malop.display_name = name.into();
        self
    }

    /// The detection type, e.g. `KNOWN_MALWARE`.
    pub fn detection_type(mut self, detection: impl Into<String>) -> Self {
        self.malop.detection_type = detection.into();
        self
    }

    /// The activity types, e.g. `["RANSOMWARE"]` (replaces any set before).
    pub fn activity_types<I, S>(mut self, types: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.malop.activity_types = strings(types);
        self
    }

    /// The analyst-facing status.
    pub fn management_status(mut self, status: ManagementStatus) -> Self {
        self.malop.management_status = status;
        self
    }

    /// The server's priority.
    pub fn priority(mut self, priority: Priority) -> Self {
        self.malop.priority = priority;
        self
    }

    /// The creation time (ms since the epoch).
    pub fn creation_time(mut self, ms: TimestampMs) -> Self {
        self.malop.creation_time = ms;
        self
    }

    /// The last update time (ms since the epoch).
    pub fn last_update_time(mut self, ms: TimestampMs) -> Self {
        self.malop.last_update_time = ms;
        self
    }

    /// Adds a root cause `name` of `element_type` (e.g. `File`) with file `hashes`.
    pub fn root_cause<I, S>(mut self, name: &str, element_type: &str, hashes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.malop.root_causes.push(RootCause {
            name: name.to_owned(),
            element_type: element_type.to_owned(),
            hashes: strings(hashes),
        });
        self
    }

    /// Adds an affected machine (a [`Machine`] or a [`MachineBuilder`]).
    pub fn machine(mut self, machine: impl Into<Machine>) -> Self {
        self.malop.machines.push(machine.into());
        self
    }

    /// Adds a suspect process (a [`Suspect`] or a [`SuspectBuilder`]).
    pub fn suspect(mut self, suspect: impl Into<Suspect>) -> Self {
        self.malop.suspects.push(suspect.into());
        self
    }

    /// Adds a file to remediate (a [`FileItem`] or a [`FileBuilder`]).
    pub fn file(mut self, file: impl Into<FileItem>) -> Self {
        self.malop.files.push(file.into());
        self
    }

    /// Adds an affected user.
    pub fn user(mut self, guid: &str, name: &str) -> Self {
        self.malop.users.push(User {
            guid: guid.to_owned(),
            name: name.to_owned(),
        });
        self
    }

    /// The remote IP addresses (replaces any set before).
    pub fn ip_addresses<I, S>(mut self, ips: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.malop.ip_addresses = strings(ips);
        self
    }

    /// The domains (replaces any set before).
    pub fn domains<I, S>(mut self, domains: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.malop.domains = strings(domains);
        self
    }

    /// Marks `parts` as not readable this time (added to any marked before). [`build`] then
    /// leaves their fields as the host does.
    ///
    /// [`build`]: MalopBuilder::build
    pub fn unreadable(mut self, parts: impl IntoIterator<Item = MalopPart>) -> Self {
        self.malop.unreadable.extend(parts);
        self
    }

    /// The Malop. For each unreadable part, its fields are what the host offers without it:
    /// - [`MalopPart::Suspects`]: suspects keep guid and name; `machine-guid` is the Malop's
    ///   machine when it has exactly one, else empty; no image hash, no autorun keys;
    /// - [`MalopPart::Files`]: files keep guid and name, `machine-guid` as for suspects, no
    ///   hashes;
    /// - [`MalopPart::Network`]: no IP address or domain;
    /// - [`MalopPart::Sensors`]: machines keep guid and name; no `pylum-id`, an empty `os`,
    ///   and `connected` and `isolated` false (unknown).
    ///
    /// `unreadable` comes out in the WIT's order, without duplicates, as the host gives it.
    pub fn build(self) -> Malop {
        let mut malop = self.malop;
        let order = |part: &MalopPart| *part as u8;
        malop.unreadable.sort_by_key(order);
        malop.unreadable.dedup();
        let only_machine = match malop.machines.as_slice() {
            [one] => one.guid.clone(),
            _ => String::new(),
        };
        for part in malop.unreadable.clone() {
            match part {
                MalopPart::Suspects => {
                    for suspect in &mut malop.suspects {
                        suspect.machine_guid = only_machine.clone();
                        suspect.image_sha1 = None;
                        suspect.autorun_keys.clear();
                    }
                }
                MalopPart::Files => {
                    for file in &mut malop.files {
                        file.machine_guid = only_machine.clone();
                        file.md5 = None;
                        file.sha1 = None;
                    }
                }
                MalopPart::Network => {
                    malop.ip_addresses.clear();
                    malop.domains.clear();
                }
                MalopPart::Sensors => {
                    for machine in &mut malop.machines {
                        machine.pylum_id = None;
                        machine.os.clear();
                        machine.connected = false;
                        machine.isolated = false;
                    }
                }
            }
        }
        malop
    }
}

impl From<MalopBuilder> for Malop {
    fn from(builder: MalopBuilder) -> Self {
        builder.build()
    }
}

/// A [`Machine`] for tests: `MachineBuilder::new(guid, name)` is a `WINDOWS` machine whose
/// sensor is connected, not isolated, with no `pylum-id`.
#[derive(Debug, Clone)]
pub struct MachineBuilder {
    machine: Machine,
}

impl MachineBuilder {
    /// A machine with element guid `guid` and host name `name`, and the defaults above.
    pub fn new(guid: &str, name: &str) -> Self {
        MachineBuilder {
            machine: Machine {
                guid: guid.to_owned(),
                name: name.to_owned(),
                pylum_id: None,
                os: "WINDOWS".to_owned(),
                connected: true,
                isolated: false,
            },
        }
    }

    /// Whether the sensor is connected now.
    pub fn connected(mut self, connected: bool) -> Self {
        self.machine.connected = connected;
        self
    }

    /// Whether the machine is isolated now.
    pub fn isolated(mut self, isolated: bool) -> Self {
        self.machine.isolated = isolated;
        self
    }

    /// The sensor id.
    pub fn pylum_id(mut self, pylum_id: &str) -> Self {
        self.machine.pylum_id = Some(pylum_id.to_owned());
        self
    }

    /// The operating system, e.g. `LINUX`.
    pub fn os(mut self, os: &str) -> Self {
        self.machine.os = os.to_owned();
        self
    }

    /// The machine.
    pub fn build(self) -> Machine {
        self.machine
    }
}

impl From<MachineBuilder> for Machine {
    fn from(builder: MachineBuilder) -> Self {
        builder.build()
    }
}

/// A [`Suspect`] for tests: `SuspectBuilder::new(guid, name, machine_guid)` has no image hash
/// and no autorun key.
#[derive(Debug, Clone)]
pub struct SuspectBuilder {
    suspect: Suspect,
}

impl SuspectBuilder {
    /// Suspect process `guid` named `name`, running on machine `machine_guid`.
    pub fn new(guid: &str, name: &str, machine_guid: &str) -> Self {
        SuspectBuilder {
            suspect: Suspect {
                guid: guid.to_owned(),
                name: name.to_owned(),
                machine_guid: machine_guid.to_owned(),
                image_sha1: None,
                autorun_keys: Vec::new(),
            },
        }
    }

    /// The sha1 of the process's image.
    pub fn image_sha1(mut self, sha1: &str) -> Self {
        self.suspect.image_sha1 = Some(sha1.to_owned());
        self
    }

    /// Adds an autorun registry entry `guid` named `name`.
    pub fn autorun_key(mut self, guid: &str, name: &str) -> Self {
        self.suspect.autorun_keys.push(RegistryEntry {
            guid: guid.to_owned(),
            name: name.to_owned(),
        });
        self
    }

    /// The suspect.
    pub fn build(self) -> Suspect {
        self.suspect
    }
}

impl From<SuspectBuilder> for Suspect {
    fn from(builder: SuspectBuilder) -> Self {
        builder.build()
    }
}

/// A [`FileItem`] for tests: `FileBuilder::new(guid, name, machine_guid)` has no hashes.
#[derive(Debug, Clone)]
pub struct FileBuilder {
    file: FileItem,
}

impl FileBuilder {
    /// File `guid` named `name`, on machine `machine_guid`.
    pub fn new(guid: &str, name: &str, machine_guid: &str) -> Self {
        FileBuilder {
            file: FileItem {
                guid: guid.to_owned(),
                name: name.to_owned(),
                md5: None,
                sha1: None,
                machine_guid: machine_guid.to_owned(),
            },
        }
    }

    /// The file's md5.
    pub fn md5(mut self, md5: &str) -> Self {
        self.file.md5 = Some(md5.to_owned());
        self
    }

    /// The file's sha1.
    pub fn sha1(mut self, sha1: &str) -> Self {
        self.file.sha1 = Some(sha1.to_owned());
        self
    }

    /// The file.
    pub fn build(self) -> FileItem {
        self.file
    }
}

impl From<FileBuilder> for FileItem {
    fn from(builder: FileBuilder) -> Self {
        builder.build()
    }
}

/// A [`Receipt`] for tests of how a rule handles the host's answer: action `action_id` with
/// `disposition` and `detail` (empty when there is nothing to say).
pub fn receipt(action_id: &str, disposition: Disposition, detail: &str) -> Receipt {
    Receipt {
        action_id: action_id.to_owned(),
        disposition,
        detail: detail.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_machines() -> MalopBuilder {
        MalopBuilder::new("11.1")
            .machine(MachineBuilder::new("m1", "a").pylum_id("P1"))
            .machine(MachineBuilder::new("m2", "b").isolated(true))
            .suspect(
                SuspectBuilder::new("p1", "x.exe", "m1")
                    .image_sha1("ab")
                    .autorun_key("r1", "Run\\x"),
            )
            .file(FileBuilder::new("f1", "x.exe", "m2").md5("cd").sha1("ef"))
            .ip_addresses(["1.2.3.4"])
            .domains(["evil.example"])
    }

    #[test]
    fn defaults_are_a_complete_unread_process_malop() {
        let m = MalopBuilder::new("11.1").build();
        assert_eq!(m.id, "11.1");
        assert_eq!(m.kind, ElementKind::Process);
        assert_eq!(m.management_status, ManagementStatus::Unread);
        assert_eq!(m.priority, Priority::Unknown);
        assert!(m.is_complete() && m.machines.is_empty() && m.suspects.is_empty());
        let machine = MachineBuilder::new("m1", "a").build();
        assert!(machine.can_be_isolated() && machine.os == "WINDOWS" && machine.pylum_id.is_none());
    }

    #[test]
    fn a_complete_malop_keeps_what_was_given() {
        let m = two_machines().build();
        assert_eq!(m.suspects[0].machine_guid, "m1");
        assert_eq!(m.suspects[0].autorun_key_targets().len(), 1);
        assert_eq!(m.files[0].hashes(), ["ef", "cd"]);
        assert_eq!(m.machines[0].pylum_id.as_deref(), Some("P1"));
        assert!(m.machines[1].isolated);
        assert_eq!((m.ip_addresses.len(), m.domains.len()), (1, 1));
    }

    #[test]
    fn unreadable_parts_come_out_as_the_host_offers_them() {
        let m = two_machines()
            .unreadable([MalopPart::Sensors, MalopPart::Suspects])
            .unreadable([MalopPart::Files, MalopPart::Network, MalopPart::Suspects])
            .build();
        assert_eq!(
            m.unreadable,
            [
                MalopPart::Suspects,
                MalopPart::Files,
                MalopPart::Network,
                MalopPart::Sensors
            ]
        );
        let s = &m.suspects[0];
        assert_eq!((s.guid.as_str(), s.name.as_str()), ("p1", "x.exe"));
        assert!(s.machine_guid.is_empty() && s.image_sha1.is_none() && s.autorun_keys.is_empty());
        let f = &m.files[0];
        assert!(f.machine_guid.is_empty() && f.hashes().is_empty());
        assert!(m.ip_addresses.is_empty() && m.domains.is_empty());
        for machine in &m.machines {
            assert!(!machine.connected && !machine.isolated && machine.os.is_empty());
            assert_eq!(machine.pylum_id, None);
        }
    }

    #[test]
    fn with_one_machine_unreadable_items_are_placed_on_it() {
        let m = MalopBuilder::new("11.1")
            .machine(MachineBuilder::new("m1", "a"))
            .suspect(SuspectBuilder::new("p1", "x.exe", "elsewhere"))
            .file(FileBuilder::new("f1", "x.exe", ""))
            .unreadable([MalopPart::Suspects, MalopPart::Files])
            .build();
        assert_eq!(m.suspects[0].machine_guid, "m1");
        assert_eq!(m.files[0].machine_guid, "m1");
        assert!(m.machines[0].connected, "the sensors were read");
    }
}
