//! The simulated world: machines, Malops with suspects, files, users and connections,
//! generated from a seed.

use super::rng::Rng;
use riposte_domain::{ElementKind, ManagementStatus, RootCause};

/// A sensor-equipped machine.
#[derive(Clone, Debug)]
pub struct SimMachine {
    /// Element guid `<i32>.<i64>`.
    pub guid: String,
    /// Host name.
    pub name: String,
    /// The sensor's `PYLUMCLIENT_<ORG>_<HOST>_<MAC>`; `None` for a machine without a sensor
    /// (absent from `sensors/query`, never connected).
    pub pylum_id: Option<String>,
    /// OS type as the server spells it.
    pub os: String,
    /// Whether the sensor is connected.
    pub online: bool,
    /// Whether the machine is isolated.
    pub isolated: bool,
    /// A queued (Primed) isolation change applied when the sensor comes online.
    pub primed: Option<bool>,
    /// Internal IP.
    pub ip: String,
    /// The sensor group (`groupName`), if any.
    pub group: Option<String>,
}

impl SimMachine {
    /// Whether this machine's sensor has `pylum_id`.
    pub fn has_pylum_id(&self, pylum_id: &str) -> bool {
        self.pylum_id.as_deref() == Some(pylum_id)
    }

    /// Whether `key` names this machine: its sensor's pylumId, its guid or its host name (any
    /// case), as the control API takes them.
    pub(crate) fn is_named(&self, key: &str) -> bool {
        self.has_pylum_id(key) || self.guid == key || self.name.eq_ignore_ascii_case(key)
    }
}

/// A network connection of a process.
#[derive(Clone, Debug)]
pub struct SimConnection {
    /// Element guid.
    pub guid: String,
    /// Remote IP.
    pub remote_ip: String,
    /// Resolved domain, if any.
    pub domain: Option<String>,
}

/// A suspect process.
#[derive(Clone, Debug)]
pub struct SimProcess {
    /// Element guid (`<machine i32>.<i64>`).
    pub guid: String,
    /// Image name.
    pub name: String,
    /// Owner machine guid.
    pub machine: String,
    /// Image sha1, when the server knows it.
    pub sha1: Option<String>,
    /// Autorun registry evidence: (guid, name).
    pub autoruns: Vec<(String, String)>,
    /// Connections.
    pub connections: Vec<SimConnection>,
}

/// A file to remediate.
#[derive(Clone, Debug)]
pub struct SimFile {
    /// Element guid.
    pub guid: String,
    /// File name.
    pub name: String,
    /// md5, when known.
    pub md5: Option<String>,
    /// sha1, when known.
    pub sha1: Option<String>,
    /// Owner machine guid.
    pub machine: String,
}

/// A comment on a Malop.
#[derive(Clone, Debug)]
pub struct SimComment {
    /// UUID.
    pub id: String,
    /// Author.
    pub username: String,
    /// Text.
    pub message: String,
    /// ms.
    pub timestamp: i64,
}

/// A Malop.
#[derive(Clone, Debug)]
pub struct SimMalop {
    /// `11.<i64>`.
    pub guid: String,
    /// MalopProcess or MalopLogonSession.
    pub kind: ElementKind,
    /// Display name.
    pub name: String,
    /// `detectionType`.
    pub detection_type: String,
    /// `malopActivityTypes`.
    pub activity_types: Vec<String>,
    /// `managementStatus`.
    pub status: ManagementStatus,
    /// `malopPriority`.
    pub priority: String,
    /// The root causes (`rootCauseElementNames`, `...Types`, `...Hashes`: at most one hash each).
    pub root_causes: Vec<RootCause>,
    /// ms.
    pub creation_time: i64,
    /// ms.
    pub last_update_time: i64,
    /// Affected machine guids.
    pub machines: Vec<String>,
    /// Suspect processes.
    pub suspects: Vec<SimProcess>,
    /// Files to remediate.
    pub files: Vec<SimFile>,
    /// Affected users: (guid, name).
    pub users: Vec<(String, String)>,
    /// Comments.
    pub comments: Vec<SimComment>,
}

const KINDS: [(&str, &str, &str); 4] = [
    ("RANSOMWARE", "RANSOMWARE", "Ransomware"),
    ("KNOWN_MALWARE", "MALICIOUS_INFECTION", "Known malware"),
    ("BLACKLIST", "MALICIOUS_INFECTION", "Blacklisted file"),
    ("LATERAL_MOVEMENT", "LATERAL_MOVEMENT", "Lateral movement"),
];
const IMAGES: [&str; 8] = [
    "wcry.exe",
    "lockbit.exe",
    "emotet.exe",
    "qakbot.dll",
    "payload.exe",
    "svch0st.exe",
    "psexesvc.exe",
    "mimikatz.exe",
];
const USERS: [&str; 5] = [
    "CORP\\jdoe",
    "CORP\\asmith",
    "CORP\\svc_backup",
    "CORP\\mlee",
    "CORP\\admin",
];
const TLDS: [&str; 4] = ["com", "net", "ru", "top"];

/// The org name inside pylumIds.
pub const ORG: &str = "RIPOSTE";

/// Generates `count` machines.
pub fn machines(rng: &mut Rng, count: usize) -> Vec<SimMachine> {
    (0..count)
        .map(|i| {
            let name = if i % 4 == 3 {
                format!("SRV-FIN-{:02}", i)
            } else {
                format!("DESKTOP-{}", rng.hex(7))
            };
            let mac = rng.hex(12);
            SimMachine {
                guid: format!("{}.{}", rng.i32(), rng.i64()),
                pylum_id: Some(format!("PYLUMCLIENT_{ORG}_{name}_{mac}")),
                name,
                os: if i % 4 == 3 {
                    "WINDOWS_SERVER"
                } else {
                    "WINDOWS"
                }
                .into(),
                online: i % 5 != 4,
                isolated: false,
                primed: None,
                ip: format!("10.0.{}.{}", rng.below(250), 1 + rng.below(250)),
                group: Some(
                    if i % 4 == 3 {
                        "Finance Servers"
                    } else {
                        "Default"
                    }
                    .into(),
                ),
            }
        })
        .collect()
}

/// The kinds of Malop the simulator makes (each seeded Malop takes the next in this order).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum MalopKind {
    /// `detectionType` RANSOMWARE, a process Malop.
    Ransomware,
    /// KNOWN_MALWARE, a process Malop.
    KnownMalware,
    /// BLACKLIST (a blacklisted hash), a process Malop.
    Blacklist,
    /// LATERAL_MOVEMENT, a logon-session Malop.
    LateralMovement,
}

impl MalopKind {
    /// Every kind, in the order seeded Malops take them.
    pub const ALL: [Self; 4] = [
        Self::Ransomware,
        Self::KnownMalware,
        Self::Blacklist,
        Self::LateralMovement,
    ];

    /// Malop number `n`'s kind.
    pub(crate) fn nth(n: usize) -> Self {
        Self::ALL[n % Self::ALL.len()]
    }
}

/// Generates Malop number `n` on some of `machines`, created before `now`.
pub fn malop(rng: &mut Rng, n: usize, machines: &[SimMachine], now: i64) -> SimMalop {
    malop_of_kind(rng, MalopKind::nth(n), machines, now)
}

/// Generates a Malop of `kind` on some of `machines`, created before `now`.
pub fn malop_of_kind(
    rng: &mut Rng,
    kind: MalopKind,
    machines: &[SimMachine],
    now: i64,
) -> SimMalop {
    let (detection, activity, label) = KINDS[kind as usize];
    let kind = if detection == "LATERAL_MOVEMENT" {
        ElementKind::LogonSession
    } else {
        ElementKind::Process
    };
    let count = 1 + rng.below(machines.len().min(3) as u64) as usize;
    let start = rng.below(machines.len() as u64) as usize;
    let hosts: Vec<&SimMachine> = (0..count)
        .map(|i| &machines[(start + i) % machines.len()])
        .collect();
    let image = if kind == ElementKind::LogonSession {
        "psexesvc.exe"
    } else {
        *rng.pick(&IMAGES[..6])
    };
    let suspects: Vec<SimProcess> = hosts.iter().map(|m| process(rng, m, image)).collect();
    let files = suspects
        .iter()
        .map(|p| SimFile {
            guid: format!("{}.{}", prefix(&p.machine), rng.i64()),
            name: p.name.clone(),
            md5: Some(rng.hex(32).to_ascii_lowercase()),
            sha1: p.sha1.clone(),
            machine: p.machine.clone(),
        })
        .collect();
    let creation = now - 3_600_000 * (1 + rng.below(72) as i64);
    let mut malop = SimMalop {
        guid: format!("11.{}", rng.i64()),
        kind,
        name: if kind == ElementKind::LogonSession {
            rng.pick(&USERS).to_string()
        } else {
            image.into()
        },
        detection_type: detection.into(),
        activity_types: vec![activity.into()],
        status: ManagementStatus::Unread,
        priority: rng.pick(&["HIGH", "MEDIUM", "LOW"]).to_string(),
        creation_time: creation,
        last_update_time: creation + rng.below(3_600_000) as i64,
        machines: hosts.iter().map(|m| m.guid.clone()).collect(),
        suspects,
        files,
        users: vec![(format!("0.{}", rng.i64()), rng.pick(&USERS).to_string())],
        comments: vec![SimComment {
            id: rng.uuid(),
            username: "sim".into(),
            message: format!("{label} detected by the simulator"),
            timestamp: creation,
        }],
        root_causes: Vec::new(),
    };
    malop.root_causes = vec![RootCause {
        name: malop.name.clone(),
        element_type: root_type(kind).into(),
        hashes: malop
            .suspects
            .first()
            .and_then(|p| p.sha1.clone())
            .into_iter()
            .collect(),
    }];
    malop
}

/// The element type of a Malop's root cause as the server names it.
pub(crate) fn root_type(kind: ElementKind) -> &'static str {
    match kind {
        ElementKind::Process => "Process",
        ElementKind::LogonSession => "LogonSession",
    }
}

fn prefix(machine_guid: &str) -> &str {
    machine_guid.split('.').next().unwrap_or("0")
}

fn process(rng: &mut Rng, machine: &SimMachine, image: &str) -> SimProcess {
    let p = prefix(&machine.guid).to_owned();
    let autoruns = if rng.chance(50) {
        let value = image.trim_end_matches(".exe").trim_end_matches(".dll");
        vec![(
            format!("{p}.{}", rng.i64()),
            format!("HKLM\\Software\\Microsoft\\Windows\\CurrentVersion\\Run\\{value}"),
        )]
    } else {
        Vec::new()
    };
    let connections = (0..1 + rng.below(2))
        .map(|_| SimConnection {
            guid: format!("{p}.{}", rng.i64()),
            remote_ip: format!(
                "185.{}.{}.{}",
                rng.below(256),
                rng.below(256),
                1 + rng.below(254)
            ),
            domain: rng
                .chance(70)
                .then(|| format!("{}.{}", rng.hex(8).to_ascii_lowercase(), rng.pick(&TLDS))),
        })
        .collect();
    SimProcess {
        guid: format!("{p}.{}", rng.i64()),
        name: image.into(),
        machine: machine.guid.clone(),
        sha1: Some(rng.hex(40).to_ascii_lowercase()),
        autoruns,
        connections,
    }
}
